#include "server/etcd_service.h"

#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <chrono>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "etcd/rpc.grpc.pb.h"
#include "kv/sqlite_snapshot.h"
#include "server/grpc_status.h"
#include "server/kv_service.h"
#include "server/replicator.h"

namespace raftkv::server {
namespace {

namespace pb = etcdserverpb;

void FillKv(const kv::KeyValue& in, mvccpb::KeyValue* out) {
  out->set_key(in.key);
  out->set_value(in.value);
  out->set_create_revision(in.create_revision);
  out->set_mod_revision(in.mod_revision);
  out->set_version(in.version);
}

// etcd range rules: empty range_end = just `key`; "\0" = every key >= key; else
// [key, range_end).
bool InRange(const std::string& key, const std::string& range_end, const std::string& k) {
  if (range_end.empty()) return k == key;
  if (range_end == std::string(1, '\0')) return k >= key;
  return k >= key && k < range_end;
}

grpc::Status Unimplemented(std::string what) {
  return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, std::move(what));
}

grpc::Status InvalidArgument(std::string what) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, std::move(what));
}

// Whether the request needs the whole range in memory (sorting other than by key ascending,
// or revision filters), so limit must be applied after sorting/filtering.
bool NeedsFullScan(const pb::RangeRequest& r) {
  bool by_key_ascending = r.sort_target() == pb::RangeRequest::KEY &&
                          r.sort_order() != pb::RangeRequest::DESCEND;
  return !by_key_ascending || r.min_mod_revision() != 0 || r.max_mod_revision() != 0 ||
         r.min_create_revision() != 0 || r.max_create_revision() != 0;
}

bool PassesFilters(const pb::RangeRequest& r, const kv::KeyValue& kv) {
  if (r.min_mod_revision() > 0 && kv.mod_revision < r.min_mod_revision()) return false;
  if (r.max_mod_revision() > 0 && kv.mod_revision > r.max_mod_revision()) return false;
  if (r.min_create_revision() > 0 && kv.create_revision < r.min_create_revision()) return false;
  if (r.max_create_revision() > 0 && kv.create_revision > r.max_create_revision()) return false;
  return true;
}

void SortKvs(const pb::RangeRequest& r, std::vector<kv::KeyValue>* kvs) {
  // As etcd: an order of NONE with a target other than KEY means ascending.
  bool descending = r.sort_order() == pb::RangeRequest::DESCEND;
  auto field_less = [&r](const kv::KeyValue& a, const kv::KeyValue& b) {
    switch (r.sort_target()) {
      case pb::RangeRequest::VERSION: return a.version < b.version;
      case pb::RangeRequest::CREATE: return a.create_revision < b.create_revision;
      case pb::RangeRequest::MOD: return a.mod_revision < b.mod_revision;
      case pb::RangeRequest::VALUE: return a.value < b.value;
      default: return a.key < b.key;
    }
  };
  // Input is in key order; a stable sort keeps key order among equal fields.
  if (descending) {
    std::stable_sort(kvs->begin(), kvs->end(),
                     [&](const kv::KeyValue& a, const kv::KeyValue& b) { return field_less(b, a); });
  } else {
    std::stable_sort(kvs->begin(), kvs->end(), field_less);
  }
}

// What the three services share: the seams, the ids, the error mapping and the blocking wait.
class Shared {
 public:
  Shared(KvService* kv, Replicator* replicator, uint64_t cluster_id, uint64_t member_id,
         EtcdServiceOptions options)
      : kv_(kv), replicator_(replicator), cluster_id_(cluster_id), member_id_(member_id),
        options_(std::move(options)) {}

  KvService* kv() const { return kv_; }
  Replicator* replicator() const { return replicator_; }
  const EtcdServiceOptions& options() const { return options_; }

  void FillHeader(int64_t revision, uint64_t raft_term, pb::ResponseHeader* header) const {
    header->set_cluster_id(cluster_id_);
    header->set_member_id(member_id_);
    header->set_revision(revision);
    header->set_raft_term(raft_term);
  }
  // Header for a response to an operation that saw/produced `revision`.
  void FillHeader(int64_t revision, pb::ResponseHeader* header) const {
    FillHeader(revision, replicator_->Status().term, header);
  }

  grpc::Status ToGrpc(const absl::Status& s) const {
    std::string message(s.message());
    if (s.code() == absl::StatusCode::kUnavailable) {
      NodeStatus status = replicator_->Status();
      if (status.leader_id >= 0 && static_cast<uint64_t>(status.leader_id) != status.id) {
        for (const PeerStatus& peer : replicator_->Members()) {
          if (peer.id != static_cast<uint64_t>(status.leader_id)) continue;
          if (message.find(peer.grpc_address) == std::string::npos) {
            absl::StrAppend(&message, " (leader: node ", peer.id, " at ", peer.grpc_address, ")");
          }
        }
      }
    }
    return ToGrpcStatus(absl::Status(s.code(), message));
  }

  // Starts an asynchronous KvService call with `start(done)` and blocks this (gRPC handler)
  // thread until `done` runs, the client's deadline passes, or request_timeout_ms passes.
  // The callback may outlive the wait, so its state is shared.
  template <typename T, typename Start>
  absl::StatusOr<T> Await(grpc::ServerContext* context, Start start) const {
    struct State {
      absl::Notification notification;
      absl::StatusOr<T> result = absl::UnknownError("no result");
    };
    auto state = std::make_shared<State>();
    start(KvService::Done<T>([state](absl::StatusOr<T> result) mutable {
      state->result = std::move(result);
      state->notification.Notify();
    }));
    auto remaining = context->deadline() - std::chrono::system_clock::now();
    std::chrono::nanoseconds wait = std::chrono::milliseconds(options_.request_timeout_ms);
    if (remaining < wait) wait = std::chrono::duration_cast<std::chrono::nanoseconds>(remaining);
    if (!state->notification.WaitForNotificationWithTimeout(absl::FromChrono(wait))) {
      return absl::DeadlineExceededError(absl::StrFormat(
          "request did not complete within its deadline (at most %d ms); a write's outcome "
          "is unknown",
          options_.request_timeout_ms));
    }
    return std::move(state->result);
  }

  // Blocks until replicator->ReadBarrier answers (then the local state machine holds every
  // write acknowledged before this call), with the same deadline rule as Await.
  absl::Status AwaitReadBarrier(grpc::ServerContext* context) const {
    struct State {
      absl::Notification notification;
      absl::Status result;
    };
    auto state = std::make_shared<State>();
    replicator_->ReadBarrier([state](absl::Status result) mutable {
      state->result = std::move(result);
      state->notification.Notify();
    });
    auto remaining = context->deadline() - std::chrono::system_clock::now();
    std::chrono::nanoseconds wait = std::chrono::milliseconds(options_.request_timeout_ms);
    if (remaining < wait) wait = std::chrono::duration_cast<std::chrono::nanoseconds>(remaining);
    if (!state->notification.WaitForNotificationWithTimeout(absl::FromChrono(wait))) {
      return absl::DeadlineExceededError(absl::StrFormat(
          "read barrier did not complete within its deadline (at most %d ms)",
          options_.request_timeout_ms));
    }
    return state->result;
  }

  // The etcd view of the members: ids, names, URLs.
  void FillMember(const PeerStatus& peer, pb::Member* member) const {
    member->set_id(EtcdMemberId(peer.id));
    member->set_name(absl::StrCat("node", peer.id));
    member->add_peerurls(absl::StrCat("http://", peer.grpc_address));
    member->add_clienturls(absl::StrCat("http://", peer.grpc_address));
  }

  uint64_t cluster_id() const { return cluster_id_; }
  uint64_t member_id() const { return member_id_; }

 private:
  KvService* const kv_;
  Replicator* const replicator_;
  const uint64_t cluster_id_;
  const uint64_t member_id_;
  const EtcdServiceOptions options_;
};

// Validates one put of a Put or Txn request against what we support.
grpc::Status CheckPut(const pb::PutRequest& put) {
  if (put.lease() != 0) return Unimplemented("leases are not supported");
  if (put.ignore_value() || put.ignore_lease()) {
    return Unimplemented("ignore_value / ignore_lease are not supported");
  }
  return grpc::Status::OK;
}

grpc::Status CheckDelete(const pb::DeleteRangeRequest& del) {
  if (del.key().empty()) return InvalidArgument("key is not provided");
  if (del.prev_kv() && !del.range_end().empty()) {
    return Unimplemented("prev_kv is supported only for single-key deletes");
  }
  return grpc::Status::OK;
}

void FillDeleteResponse(const pb::DeleteRangeRequest& req, const kv::OpResult& op,
                        pb::DeleteRangeResponse* resp) {
  resp->set_deleted(op.deleted);
  if (req.prev_kv() && op.prev.has_value()) FillKv(*op.prev, resp->add_prev_kvs());
}

class KvImpl final : public pb::KV::Service {
 public:
  explicit KvImpl(const Shared* shared) : s_(shared) {}

  grpc::Status Range(grpc::ServerContext* context, const pb::RangeRequest* req,
                     pb::RangeResponse* resp) override {
    if (req->key().empty()) return InvalidArgument("key is not provided");
    if (req->limit() < 0) return InvalidArgument("limit must not be negative");
    const bool full_scan = NeedsFullScan(*req);
    const bool reads_kvs = full_scan || !req->count_only();
    // A sorted/filtered range is read whole (limit applies afterwards). Either way read at
    // most max_range_keys + 1 so an over-large answer is refused without loading all of it.
    const int64_t max_keys = s_->options().max_range_keys;
    int64_t read_limit = full_scan ? 0 : req->limit();
    if (reads_kvs && (read_limit == 0 || read_limit > max_keys)) read_limit = max_keys + 1;
    absl::StatusOr<kv::RangeResult> result =
        s_->Await<kv::RangeResult>(context, [&](KvService::Done<kv::RangeResult> done) {
          s_->kv()->Range(req->key(), req->range_end(), read_limit, req->keys_only(),
                          !reads_kvs, std::move(done));
        });
    if (!result.ok()) return s_->ToGrpc(result.status());
    if (reads_kvs && result->kvs.size() > static_cast<size_t>(max_keys)) {
      return grpc::Status(
          grpc::StatusCode::RESOURCE_EXHAUSTED,
          absl::StrFormat("range holds %d keys, more than one response may carry (%d, "
                          "max_range_keys); set a limit or narrow the range",
                          result->count, max_keys));
    }
    if (req->revision() > 0 && req->revision() != result->revision) {
      if (req->revision() > result->revision) {
        return grpc::Status(grpc::StatusCode::OUT_OF_RANGE,
                            absl::StrFormat("required revision %d is a future revision "
                                            "(current revision %d)",
                                            req->revision(), result->revision));
      }
      return grpc::Status(grpc::StatusCode::OUT_OF_RANGE,
                          absl::StrFormat("historical reads not supported (requested revision "
                                          "%d, current revision %d)",
                                          req->revision(), result->revision));
    }
    s_->FillHeader(result->revision, resp->mutable_header());
    resp->set_count(result->count);
    if (!full_scan) {
      resp->set_more(result->more);
      if (!req->count_only()) {
        for (const kv::KeyValue& kv : result->kvs) FillKv(kv, resp->add_kvs());
      }
      return grpc::Status::OK;
    }
    std::vector<kv::KeyValue> kvs;
    for (kv::KeyValue& kv : result->kvs) {
      if (PassesFilters(*req, kv)) kvs.push_back(std::move(kv));
    }
    SortKvs(*req, &kvs);
    if (req->limit() > 0 && kvs.size() > static_cast<size_t>(req->limit())) {
      kvs.resize(req->limit());
      resp->set_more(true);
    }
    if (!req->count_only()) {
      for (const kv::KeyValue& kv : kvs) FillKv(kv, resp->add_kvs());
    }
    return grpc::Status::OK;
  }

  grpc::Status Put(grpc::ServerContext* context, const pb::PutRequest* req,
                   pb::PutResponse* resp) override {
    if (grpc::Status s = CheckPut(*req); !s.ok()) return s;
    absl::StatusOr<kv::ApplyResult> result =
        s_->Await<kv::ApplyResult>(context, [&](KvService::Done<kv::ApplyResult> done) {
          s_->kv()->Put(req->key(), req->value(), std::move(done));
        });
    if (!result.ok()) return s_->ToGrpc(result.status());
    s_->FillHeader(result->revision, resp->mutable_header());
    if (req->prev_kv() && !result->ops.empty() && result->ops[0].prev.has_value()) {
      FillKv(*result->ops[0].prev, resp->mutable_prev_kv());
    }
    return grpc::Status::OK;
  }

  grpc::Status DeleteRange(grpc::ServerContext* context, const pb::DeleteRangeRequest* req,
                           pb::DeleteRangeResponse* resp) override {
    if (grpc::Status s = CheckDelete(*req); !s.ok()) return s;
    absl::StatusOr<kv::ApplyResult> result =
        s_->Await<kv::ApplyResult>(context, [&](KvService::Done<kv::ApplyResult> done) {
          s_->kv()->Delete(req->key(), req->range_end(), std::move(done));
        });
    if (!result.ok()) return s_->ToGrpc(result.status());
    if (result->ops.size() != 1) {
      return grpc::Status(grpc::StatusCode::INTERNAL, "state machine returned no op result");
    }
    s_->FillHeader(result->revision, resp->mutable_header());
    FillDeleteResponse(*req, result->ops[0], resp);
    return grpc::Status::OK;
  }

  // Only compare-free transactions of puts and deletes: they map onto one atomic command.
  grpc::Status Txn(grpc::ServerContext* context, const pb::TxnRequest* req,
                   pb::TxnResponse* resp) override {
    if (req->compare_size() > 0) {
      return Unimplemented(
          "Txn with compare is not supported: compares are not evaluated inside the state "
          "machine, so compare-then-write would not be atomic");
    }
    // With no compares the success branch always runs.
    kvpb::Command cmd;
    std::set<std::string> put_keys;
    for (const pb::RequestOp& op : req->success()) {
      if (op.has_request_put()) {
        const pb::PutRequest& put = op.request_put();
        if (grpc::Status s = CheckPut(put); !s.ok()) return s;
        if (!put_keys.insert(put.key()).second) {
          return InvalidArgument("duplicate key given in txn request");
        }
        kvpb::Put* out = cmd.add_ops()->mutable_put();
        out->set_key(put.key());
        out->set_value(put.value());
      } else if (op.has_request_delete_range()) {
        const pb::DeleteRangeRequest& del = op.request_delete_range();
        if (grpc::Status s = CheckDelete(del); !s.ok()) return s;
        kvpb::Delete* out = cmd.add_ops()->mutable_delete_();
        out->set_key(del.key());
        out->set_range_end(del.range_end());
      } else {
        return Unimplemented("Txn supports only put and delete_range operations");
      }
    }
    // etcd forbids a txn that writes one key twice; a delete range covering a put key counts.
    for (const pb::RequestOp& op : req->success()) {
      if (!op.has_request_delete_range()) continue;
      const pb::DeleteRangeRequest& del = op.request_delete_range();
      for (const std::string& key : put_keys) {
        if (InRange(del.key(), del.range_end(), key)) {
          return InvalidArgument("duplicate key given in txn request");
        }
      }
    }
    resp->set_succeeded(true);
    if (cmd.ops_size() == 0) {
      s_->FillHeader(s_->replicator()->Status().revision, resp->mutable_header());
      return grpc::Status::OK;
    }
    absl::StatusOr<kv::ApplyResult> result =
        s_->Await<kv::ApplyResult>(context, [&](KvService::Done<kv::ApplyResult> done) {
          s_->kv()->Write(std::move(cmd), std::move(done));
        });
    if (!result.ok()) return s_->ToGrpc(result.status());
    if (result->ops.size() != static_cast<size_t>(req->success_size())) {
      return grpc::Status(grpc::StatusCode::INTERNAL,
                          "state machine returned a result count unlike the op count");
    }
    const uint64_t term = s_->replicator()->Status().term;
    s_->FillHeader(result->revision, term, resp->mutable_header());
    for (int i = 0; i < req->success_size(); ++i) {
      const pb::RequestOp& op = req->success(i);
      const kv::OpResult& op_result = result->ops[i];
      pb::ResponseOp* out = resp->add_responses();
      if (op.has_request_put()) {
        pb::PutResponse* put = out->mutable_response_put();
        s_->FillHeader(result->revision, term, put->mutable_header());
        if (op.request_put().prev_kv() && op_result.prev.has_value()) {
          FillKv(*op_result.prev, put->mutable_prev_kv());
        }
      } else {
        pb::DeleteRangeResponse* del = out->mutable_response_delete_range();
        s_->FillHeader(result->revision, term, del->mutable_header());
        FillDeleteResponse(op.request_delete_range(), op_result, del);
      }
    }
    return grpc::Status::OK;
  }

 private:
  const Shared* s_;
};

class MaintenanceImpl final : public pb::Maintenance::Service {
 public:
  explicit MaintenanceImpl(const Shared* shared) : s_(shared) {}

  grpc::Status Status(grpc::ServerContext*, const pb::StatusRequest*,
                      pb::StatusResponse* resp) override {
    NodeStatus status = s_->replicator()->Status();
    s_->FillHeader(status.revision, status.term, resp->mutable_header());
    resp->set_version(s_->options().version);
    resp->set_dbsize(static_cast<int64_t>(status.db_size_bytes));
    resp->set_dbsizeinuse(static_cast<int64_t>(status.db_size_bytes));
    resp->set_leader(status.leader_id >= 0 ? EtcdMemberId(status.leader_id) : 0);
    resp->set_raftindex(status.commit_index);
    resp->set_raftterm(status.term);
    resp->set_raftappliedindex(status.applied_index);
    return grpc::Status::OK;
  }

  grpc::Status Snapshot(grpc::ServerContext* context, const pb::SnapshotRequest*,
                        grpc::ServerWriter<pb::SnapshotResponse>* writer) override {
    const EtcdServiceOptions& o = s_->options();
    if (!o.make_snapshot) return Unimplemented("Snapshot is not enabled on this server");
    SnapshotSlot slot(&in_progress_);
    if (slot.count() > o.max_concurrent_snapshots) {
      return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                          absl::StrFormat("%d snapshots are already being streamed "
                                          "(max_concurrent_snapshots); retry later",
                                          o.max_concurrent_snapshots));
    }
    // Fresh, not just consistent: the copy holds every write acknowledged before this call
    // (a follower that cannot serve the barrier answers UNAVAILABLE; clients try the next).
    if (absl::Status s = s_->AwaitReadBarrier(context); !s.ok()) return s_->ToGrpc(s);
    absl::StatusOr<std::string> path = o.make_snapshot();
    if (!path.ok()) return s_->ToGrpc(path.status());
    RemoveOnExit remove(*path);
    absl::StatusOr<kv::SnapshotMeta> meta = kv::ReadSnapshotMeta(*path);
    if (!meta.ok()) return s_->ToGrpc(meta.status());
    return StreamFile(context, *path, *meta, writer);
  }

 private:
  // Counts this call in `counter` for its lifetime; count() includes it.
  class SnapshotSlot {
   public:
    explicit SnapshotSlot(std::atomic<int64_t>* counter)
        : counter_(counter), count_(counter->fetch_add(1) + 1) {}
    ~SnapshotSlot() { counter_->fetch_sub(1); }
    int64_t count() const { return count_; }

   private:
    std::atomic<int64_t>* counter_;
    int64_t count_;
  };

  // The exported file is a temporary copy: it goes whatever the outcome.
  class RemoveOnExit {
   public:
    explicit RemoveOnExit(std::string path) : path_(std::move(path)) {}
    ~RemoveOnExit() { ::unlink(path_.c_str()); }

   private:
    std::string path_;
  };

  // Sends the file at `path` in chunks of at most snapshot_chunk_bytes. The file is private
  // to this call, so its size cannot change while it is read; a short read is an error.
  grpc::Status StreamFile(grpc::ServerContext* context, const std::string& path,
                          const kv::SnapshotMeta& meta,
                          grpc::ServerWriter<pb::SnapshotResponse>* writer) const {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      return grpc::Status(grpc::StatusCode::INTERNAL,
                          absl::StrCat("cannot open snapshot ", path, ": ", std::strerror(errno)));
    }
    struct CloseOnExit {
      int fd;
      ~CloseOnExit() { ::close(fd); }
    } close_fd{fd};
    struct stat st;
    if (::fstat(fd, &st) != 0) {
      return grpc::Status(grpc::StatusCode::INTERNAL,
                          absl::StrCat("cannot stat snapshot ", path, ": ", std::strerror(errno)));
    }
    uint64_t remaining = static_cast<uint64_t>(st.st_size);
    const uint64_t chunk_max =
        static_cast<uint64_t>(std::max<int64_t>(1, s_->options().snapshot_chunk_bytes));
    std::string buffer;
    bool first = true;
    while (first || remaining > 0) {
      if (context->IsCancelled()) {
        return grpc::Status(grpc::StatusCode::CANCELLED, "client cancelled the snapshot");
      }
      const size_t want = static_cast<size_t>(std::min(remaining, chunk_max));
      buffer.resize(want);
      size_t got = 0;
      while (got < want) {
        ssize_t n = ::read(fd, buffer.data() + got, want - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
          return grpc::Status(grpc::StatusCode::INTERNAL,
                              absl::StrCat("cannot read snapshot ", path, ": ",
                                           n < 0 ? std::strerror(errno) : "unexpected end"));
        }
        got += static_cast<size_t>(n);
      }
      remaining -= want;
      pb::SnapshotResponse resp;
      s_->FillHeader(meta.revision, meta.applied_term, resp.mutable_header());
      first = false;
      resp.set_remaining_bytes(remaining);
      resp.set_blob(std::move(buffer));
      buffer = std::string();
      if (!writer->Write(resp)) {
        return grpc::Status(grpc::StatusCode::CANCELLED, "client went away during the snapshot");
      }
    }
    return grpc::Status::OK;
  }

  const Shared* s_;
  std::atomic<int64_t> in_progress_{0};  // Snapshot calls running now
};

class ClusterImpl final : public pb::Cluster::Service {
 public:
  explicit ClusterImpl(const Shared* shared) : s_(shared) {}

  grpc::Status MemberList(grpc::ServerContext*, const pb::MemberListRequest*,
                          pb::MemberListResponse* resp) override {
    NodeStatus status = s_->replicator()->Status();
    s_->FillHeader(status.revision, status.term, resp->mutable_header());
    for (const PeerStatus& peer : s_->replicator()->Members()) {
      s_->FillMember(peer, resp->add_members());
    }
    return grpc::Status::OK;
  }

 private:
  const Shared* s_;
};

}  // namespace

class EtcdServices::Impl {
 public:
  Impl(KvService* kv, Replicator* replicator, uint64_t cluster_id, uint64_t member_id,
       EtcdServiceOptions options)
      : shared(kv, replicator, cluster_id, member_id, std::move(options)),
        kv_service(&shared),
        maintenance(&shared),
        cluster(&shared) {}

  Shared shared;
  KvImpl kv_service;
  MaintenanceImpl maintenance;
  ClusterImpl cluster;
};

EtcdServices::EtcdServices(KvService* kv, Replicator* replicator, uint64_t cluster_id,
                           uint64_t member_id, EtcdServiceOptions options)
    : impl_(std::make_unique<Impl>(kv, replicator, cluster_id, member_id, std::move(options))) {}

EtcdServices::~EtcdServices() = default;

void EtcdServices::Register(grpc::ServerBuilder* builder) {
  builder->RegisterService(&impl_->kv_service);
  builder->RegisterService(&impl_->maintenance);
  builder->RegisterService(&impl_->cluster);
}

}  // namespace raftkv::server
