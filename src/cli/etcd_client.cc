#include "cli/etcd_client.h"

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <functional>
#include <algorithm>
#include <memory>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "etcd/rpc.grpc.pb.h"

namespace raftkv::cli {
namespace {

namespace pb = etcdserverpb;

KeyValue FromProto(const mvccpb::KeyValue& kv) {
  return KeyValue{kv.key(), kv.value(), kv.create_revision(), kv.mod_revision(), kv.version()};
}

// A transport error says little by itself ("failed to connect to all addresses"); name the
// endpoint and the gRPC code.
std::string Describe(const std::string& endpoint, const grpc::Status& s) {
  return absl::StrCat(endpoint, ": ", s.error_message().empty() ? "(no message)" : s.error_message(),
                      " [gRPC code ", static_cast<int>(s.error_code()), "]");
}

// gRPC's UNAVAILABLE for a call that never left: the channel could not connect.
bool NeverSent(const grpc::Status& s) {
  const std::string& m = s.error_message();
  return m.find("failed to connect") != std::string::npos ||
         m.find("Connection refused") != std::string::npos ||
         m.find("DNS resolution failed") != std::string::npos;
}

}  // namespace

class EtcdClient::Impl {
 public:
  explicit Impl(ClientOptions options) : options_(std::move(options)) {
    grpc::ChannelArguments args;
    // gRPC honours http_proxy even for loopback addresses (build-notes.md).
    args.SetInt(GRPC_ARG_ENABLE_HTTP_PROXY, 0);
    args.SetMaxReceiveMessageSize(static_cast<int>(options_.max_receive_message_bytes));
    session_id_ = options_.session_id;
    std::random_device rd;
    while (session_id_ == 0) session_id_ = (static_cast<uint64_t>(rd()) << 32) ^ rd();
    for (const std::string& endpoint : options_.endpoints) {
      auto channel = grpc::CreateCustomChannel(endpoint, grpc::InsecureChannelCredentials(), args);
      endpoints_.push_back(Endpoint{endpoint, pb::KV::NewStub(channel),
                                    pb::Maintenance::NewStub(channel),
                                    pb::Cluster::NewStub(channel)});
    }
  }

  struct Endpoint {
    std::string address;
    std::unique_ptr<pb::KV::Stub> kv;
    std::unique_ptr<pb::Maintenance::Stub> maintenance;
    std::unique_ptr<pb::Cluster::Stub> cluster;
  };

  std::unique_ptr<grpc::ClientContext> NewContext() const {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(std::chrono::system_clock::now() +
                          std::chrono::milliseconds(options_.timeout_ms));
    return context;
  }

  // A write: every attempt carries the session and the same new sequence (see header).
  absl::StatusOr<size_t> WriteFailover(
      const std::function<grpc::Status(Endpoint&, grpc::ClientContext*)>& call) {
    const uint64_t sequence = next_sequence_++;
    std::vector<std::string> errors;
    bool maybe_applied = false;
    grpc::StatusCode unknown_code = grpc::StatusCode::UNKNOWN;
    for (int round = 0; round < std::max(1, options_.write_rounds); ++round) {
      if (round > 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(options_.write_round_pause_ms));
      }
      for (Endpoint& endpoint : endpoints_) {
        std::unique_ptr<grpc::ClientContext> context = NewContext();
        context->AddMetadata("raftkv-session-id", absl::StrCat(session_id_));
        context->AddMetadata("raftkv-session-sequence", absl::StrCat(sequence));
        grpc::Status s = call(endpoint, context.get());
        if (s.ok()) return static_cast<size_t>(&endpoint - endpoints_.data());
        const grpc::StatusCode code = s.error_code();
        const auto& trailers = context->GetServerTrailingMetadata();
        const bool server_said_not_applied =
            trailers.find("raftkv-error-kind") != trailers.end() &&
            trailers.find("raftkv-error-kind")->second == "not-applied";
        if (code == grpc::StatusCode::DEADLINE_EXCEEDED || code == grpc::StatusCode::UNKNOWN ||
            (code == grpc::StatusCode::UNAVAILABLE && !server_said_not_applied &&
             !NeverSent(s))) {
          // It may have run: the server said so, or the call broke after it was sent.
          maybe_applied = true;
          unknown_code = code == grpc::StatusCode::UNAVAILABLE ? grpc::StatusCode::UNKNOWN : code;
        } else if (code != grpc::StatusCode::UNAVAILABLE) {
          return absl::Status(static_cast<absl::StatusCode>(code),
                              Describe(endpoint.address, s));
        }
        errors.push_back(Describe(endpoint.address, s));
      }
    }
    const std::string all = absl::StrJoin(errors, "; ");
    if (maybe_applied) {
      return absl::Status(static_cast<absl::StatusCode>(unknown_code),
                          absl::StrCat("outcome unknown (session ", session_id_, ", sequence ",
                                       sequence, "): ", all));
    }
    return absl::UnavailableError(absl::StrCat("not applied: no endpoint could serve it: ", all));
  }

  // A membership change: like a write, passes over the endpoints up to write_rounds times
  // while every answer is a sure "not applied" (the server's mark, or never connected); any
  // other error is final, an UNAVAILABLE without the mark as "outcome unknown" (a change has
  // no session: sending it again could make it twice).
  absl::Status ChangeFailover(
      const std::function<grpc::Status(Endpoint&, grpc::ClientContext*)>& call) {
    std::vector<std::string> errors;
    for (int round = 0; round < std::max(1, options_.write_rounds); ++round) {
      if (round > 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(options_.write_round_pause_ms));
      }
      for (Endpoint& endpoint : endpoints_) {
        std::unique_ptr<grpc::ClientContext> context = NewContext();
        grpc::Status s = call(endpoint, context.get());
        if (s.ok()) return absl::OkStatus();
        const auto& trailers = context->GetServerTrailingMetadata();
        auto kind = trailers.find("raftkv-error-kind");
        const bool not_applied = kind != trailers.end() && kind->second == "not-applied";
        if (s.error_code() == grpc::StatusCode::UNAVAILABLE && !not_applied && !NeverSent(s)) {
          return absl::UnknownError(absl::StrCat(
              "outcome unknown (check with kvctl member list): ",
              Describe(endpoint.address, s)));
        }
        if (s.error_code() != grpc::StatusCode::UNAVAILABLE) {
          return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                              Describe(endpoint.address, s));
        }
        errors.push_back(Describe(endpoint.address, s));
      }
    }
    return absl::UnavailableError(absl::StrCat("not applied: no endpoint could make the change: ",
                                               absl::StrJoin(errors, "; ")));
  }

  // Runs `call` against each endpoint in order until one gives a final answer (see header).
  // Returns the index of the endpoint that answered OK.
  absl::StatusOr<size_t> Failover(bool is_read,
                                  const std::function<grpc::Status(Endpoint&)>& call) {
    std::vector<std::string> errors;
    for (size_t i = 0; i < endpoints_.size(); ++i) {
      grpc::Status s = call(endpoints_[i]);
      if (s.ok()) return i;
      bool try_next = s.error_code() == grpc::StatusCode::UNAVAILABLE ||
                      (is_read && (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ||
                                   s.error_code() == grpc::StatusCode::UNKNOWN));
      if (!try_next) {
        return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                            Describe(endpoints_[i].address, s));
      }
      errors.push_back(Describe(endpoints_[i].address, s));
    }
    return absl::UnavailableError(
        absl::StrCat("no endpoint could serve the request: ", absl::StrJoin(errors, "; ")));
  }

  EndpointStatus StatusOf(Endpoint& endpoint) {
    EndpointStatus out;
    out.endpoint = endpoint.address;
    pb::StatusResponse resp;
    grpc::Status s = endpoint.maintenance->Status(NewContext().get(), pb::StatusRequest(), &resp);
    if (!s.ok()) {
      out.error = Describe(endpoint.address, s);
      return out;
    }
    out.member_id = resp.header().member_id();
    out.leader_member_id = resp.leader();
    out.term = resp.raftterm();
    out.raft_index = resp.raftindex();
    out.applied_index = resp.raftappliedindex();
    out.revision = resp.header().revision();
    out.db_size_bytes = resp.dbsize();
    out.loop_max_iteration_us = resp.raftkv_loop_max_iteration_us();
    out.loop_max_tick_gap_us = resp.raftkv_loop_max_tick_gap_us();
    out.version = resp.version();
    out.alarms.assign(resp.errors().begin(), resp.errors().end());
    return out;
  }

  // One endpoint's snapshot stream into `sink`. grpc::Status so Failover can judge it; a
  // sink error comes back as ABORTED carrying the sink's message (final, not retried),
  // with the original code in *sink_error.
  grpc::Status SnapshotFrom(Endpoint& endpoint, SnapshotSink* sink, SnapshotDownload* out,
                            absl::Status* sink_error) {
    if (absl::Status s = sink->Begin(); !s.ok()) {
      *sink_error = s;
      return grpc::Status(grpc::StatusCode::ABORTED, std::string(s.message()));
    }
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::milliseconds(options_.snapshot_timeout_ms));
    auto reader = endpoint.maintenance->Snapshot(&context, pb::SnapshotRequest());
    pb::SnapshotResponse resp;
    bool any = false;
    uint64_t expected_remaining = 0;
    uint64_t received = 0;
    while (reader->Read(&resp)) {
      const uint64_t blob_size = resp.blob().size();
      if (any && (blob_size > expected_remaining ||
                  resp.remaining_bytes() != expected_remaining - blob_size)) {
        context.TryCancel();
        reader->Finish();
        // UNAVAILABLE so the next endpoint is tried.
        return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                            absl::StrCat("snapshot stream inconsistent: ", blob_size,
                                         " bytes with remaining_bytes ", resp.remaining_bytes(),
                                         " after ", expected_remaining, " were announced"));
      }
      if (!any) {
        out->revision = resp.header().revision();
        out->raft_term = resp.header().raft_term();
      }
      any = true;
      expected_remaining = resp.remaining_bytes();
      received += blob_size;
      if (absl::Status s = sink->Append(resp.blob()); !s.ok()) {
        context.TryCancel();
        reader->Finish();
        *sink_error = s;
        return grpc::Status(grpc::StatusCode::ABORTED, std::string(s.message()));
      }
    }
    grpc::Status s = reader->Finish();
    if (!s.ok()) {
      // A stream broken after some bytes is worth retrying elsewhere, whatever the code.
      if (any && s.error_code() != grpc::StatusCode::UNAVAILABLE) {
        return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                            absl::StrCat("snapshot stream broke after ", received,
                                         " bytes: ", s.error_message(), " [gRPC code ",
                                         static_cast<int>(s.error_code()), "]"));
      }
      return s;
    }
    if (!any || expected_remaining != 0) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                          absl::StrCat("snapshot stream ended after ", received, " bytes with ",
                                       expected_remaining, " bytes still announced"));
    }
    out->endpoint = endpoint.address;
    out->size_bytes = received;
    return grpc::Status::OK;
  }

  ClientOptions options_;
  std::vector<Endpoint> endpoints_;
  uint64_t session_id_ = 0;
  uint64_t next_sequence_ = 1;
};

EtcdClient::EtcdClient(ClientOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
EtcdClient::~EtcdClient() = default;

absl::StatusOr<int64_t> EtcdClient::Put(const std::string& key, const std::string& value) {
  pb::PutRequest req;
  req.set_key(key);
  req.set_value(value);
  pb::PutResponse resp;
  absl::StatusOr<size_t> served =
      impl_->WriteFailover([&](Impl::Endpoint& e, grpc::ClientContext* context) {
        return e.kv->Put(context, req, &resp);
      });
  if (!served.ok()) return served.status();
  return resp.header().revision();
}

absl::StatusOr<std::optional<KeyValue>> EtcdClient::Get(const std::string& key) {
  pb::RangeRequest req;
  req.set_key(key);
  pb::RangeResponse resp;
  absl::StatusOr<size_t> served = impl_->Failover(true, [&](Impl::Endpoint& e) {
    return e.kv->Range(impl_->NewContext().get(), req, &resp);
  });
  if (!served.ok()) return served.status();
  if (resp.kvs_size() == 0) return std::nullopt;
  return FromProto(resp.kvs(0));
}

absl::StatusOr<int64_t> EtcdClient::Delete(const std::string& key) {
  pb::DeleteRangeRequest req;
  req.set_key(key);
  pb::DeleteRangeResponse resp;
  absl::StatusOr<size_t> served =
      impl_->WriteFailover([&](Impl::Endpoint& e, grpc::ClientContext* context) {
        return e.kv->DeleteRange(context, req, &resp);
      });
  if (!served.ok()) return served.status();
  return resp.deleted();
}

uint64_t EtcdClient::session_id() const { return impl_->session_id_; }

namespace {
Member FromProto(const pb::Member& m) {
  return Member{m.id(),
                m.name(),
                {m.peerurls().begin(), m.peerurls().end()},
                {m.clienturls().begin(), m.clienturls().end()},
                m.islearner(),
                m.raftkv_client_port()};
}
}  // namespace

absl::StatusOr<std::vector<Member>> EtcdClient::Members() {
  pb::MemberListResponse resp;
  absl::StatusOr<size_t> served = impl_->Failover(true, [&](Impl::Endpoint& e) {
    return e.cluster->MemberList(impl_->NewContext().get(), pb::MemberListRequest(), &resp);
  });
  if (!served.ok()) return served.status();
  std::vector<Member> members;
  for (const pb::Member& m : resp.members()) members.push_back(FromProto(m));
  return members;
}

absl::StatusOr<Member> EtcdClient::MemberAdd(const std::string& peer_url,
                                             uint32_t client_port) {
  pb::MemberAddRequest req;
  req.add_peerurls(peer_url);
  req.set_islearner(true);
  req.set_raftkv_client_port(client_port);
  pb::MemberAddResponse resp;
  absl::Status changed =
      impl_->ChangeFailover([&](Impl::Endpoint& e, grpc::ClientContext* context) {
        return e.cluster->MemberAdd(context, req, &resp);
      });
  if (!changed.ok()) return changed;
  return FromProto(resp.member());
}

absl::Status EtcdClient::MemberPromote(uint64_t member_id) {
  pb::MemberPromoteRequest req;
  req.set_id(member_id);
  pb::MemberPromoteResponse resp;
  return impl_->ChangeFailover([&](Impl::Endpoint& e, grpc::ClientContext* context) {
    return e.cluster->MemberPromote(context, req, &resp);
  });
}

absl::Status EtcdClient::MemberRemove(uint64_t member_id) {
  pb::MemberRemoveRequest req;
  req.set_id(member_id);
  pb::MemberRemoveResponse resp;
  return impl_->ChangeFailover([&](Impl::Endpoint& e, grpc::ClientContext* context) {
    return e.cluster->MemberRemove(context, req, &resp);
  });
}

absl::Status EtcdClient::MemberUpdate(uint64_t member_id, const std::string& peer_url,
                                      uint32_t client_port) {
  pb::MemberUpdateRequest req;
  req.set_id(member_id);
  req.add_peerurls(peer_url);
  req.set_raftkv_client_port(client_port);
  pb::MemberUpdateResponse resp;
  return impl_->ChangeFailover([&](Impl::Endpoint& e, grpc::ClientContext* context) {
    return e.cluster->MemberUpdate(context, req, &resp);
  });
}

std::vector<EndpointStatus> EtcdClient::StatusAll() {
  std::vector<EndpointStatus> out;
  for (Impl::Endpoint& endpoint : impl_->endpoints_) out.push_back(impl_->StatusOf(endpoint));
  return out;
}

EndpointStatus EtcdClient::StatusOf(size_t index) {
  return impl_->StatusOf(impl_->endpoints_.at(index));
}

absl::Status EtcdClient::MoveLeader(size_t index, uint64_t target_member_id) {
  Impl::Endpoint& endpoint = impl_->endpoints_.at(index);
  pb::MoveLeaderRequest req;
  req.set_targetid(target_member_id);
  pb::MoveLeaderResponse resp;
  grpc::Status s = endpoint.maintenance->MoveLeader(impl_->NewContext().get(), req, &resp);
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      Describe(endpoint.address, s));
}

absl::StatusOr<SnapshotDownload> EtcdClient::Snapshot(SnapshotSink* sink) {
  SnapshotDownload download;
  absl::Status sink_error;
  // A snapshot is a read: after DEADLINE_EXCEEDED the next endpoint may do better.
  absl::StatusOr<size_t> served = impl_->Failover(true, [&](Impl::Endpoint& e) {
    return impl_->SnapshotFrom(e, sink, &download, &sink_error);
  });
  if (!sink_error.ok()) return sink_error;
  if (!served.ok()) return served.status();
  return download;
}

}  // namespace raftkv::cli
