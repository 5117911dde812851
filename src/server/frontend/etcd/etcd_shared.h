// What the etcd services (etcd_kv.h, etcd_maintenance.h, etcd_cluster.h) share: the seams,
// the ids, the error mapping, the callback-API call of the KV service and the blocking wait
// of a sync-server handler (Maintenance, Cluster). Internal to frontend/etcd.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "etcd/rpc.grpc.pb.h"
#include "kv/state_machine.h"
#include "server/frontend/etcd/etcd_range.h"
#include "server/frontend/etcd/etcd_service.h"
#include "server/grpc_async_unary.h"
#include "server/grpc_status.h"
#include "server/node_id.h"
#include "server/service/kv_service.h"
#include "server/service/replicator.h"

namespace raftkv::server::etcd {

namespace pb = etcdserverpb;

inline grpc::Status Unimplemented(std::string what) {
  return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, std::move(what));
}

inline grpc::Status InvalidArgument(std::string what) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, std::move(what));
}

// What the three services share: the seams, the ids, the error mapping and the blocking wait.
class Shared {
 public:
  Shared(KvService* kv, Replicator* replicator, uint64_t cluster_id, NodeId self,
         EtcdServiceOptions options)
      : kv_(kv), replicator_(replicator), cluster_id_(cluster_id),
        member_id_(self.etcd_member_id()), options_(std::move(options)) {}

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

  // The client's session for exactly-once writes, from gRPC metadata (README.md, "etcd
  // API"): raftkv-session-id, raftkv-session-sequence and (optional)
  // raftkv-session-first-unacked, decimal. No raftkv-session-id: no session (etcdctl).
  static absl::StatusOr<WriteSession> SessionOf(const grpc::ServerContextBase* context) {
    const auto& md = context->client_metadata();
    auto number = [&](const char* name, uint64_t* out) -> absl::Status {
      auto it = md.find(name);
      if (it == md.end()) return absl::OkStatus();
      if (!absl::SimpleAtoi(absl::string_view(it->second.data(), it->second.size()), out)) {
        return absl::InvalidArgumentError(absl::StrCat("metadata ", name, " is not a number"));
      }
      return absl::OkStatus();
    };
    WriteSession session;
    for (auto [name, field] : {std::pair{"raftkv-session-id", &session.client_id},
                               std::pair{"raftkv-session-sequence", &session.sequence},
                               std::pair{"raftkv-session-first-unacked",
                                         &session.first_unacked}}) {
      if (absl::Status s = number(name, field); !s.ok()) return s;
    }
    if (absl::Status s = KvService::ValidateSession(session); !s.ok()) return s;
    return session;
  }

  // ToGrpc for a failed write, which also marks the answer with its kind (trailing metadata
  // raftkv-error-kind: "not-applied" or "outcome-unknown"), so a client can tell the
  // server's UNAVAILABLE from a call that broke in transport (also UNAVAILABLE in gRPC).
  grpc::Status WriteError(grpc::ServerContextBase* context, const absl::Status& s) const {
    switch (KindOf(s)) {
      case ErrorKind::kNotApplied:
        context->AddTrailingMetadata("raftkv-error-kind", "not-applied");
        break;
      case ErrorKind::kOutcomeUnknown:
        context->AddTrailingMetadata("raftkv-error-kind", "outcome-unknown");
        break;
      case ErrorKind::kRefused:
        break;
    }
    return ToGrpc(s);
  }

  // A call of the callback API answered by a KvService operation (grpc_async_unary.h), which
  // ends with DEADLINE_EXCEEDED if request_timeout_ms passes first (the raft loop answers
  // every request by then; this is the bound if it cannot). A write's late answer is marked
  // outcome-unknown (WriteError).
  std::shared_ptr<AsyncUnary> StartCall(grpc::CallbackServerContext* context, bool write) const {
    return AsyncUnary::Start(
        std::chrono::milliseconds(options_.request_timeout_ms), [this, context, write] {
          absl::Status late = absl::DeadlineExceededError(absl::StrFormat(
              "request did not complete within its deadline (at most %d ms)%s",
              options_.request_timeout_ms, write ? "; the write's outcome is unknown" : ""));
          return write ? WriteError(context, late) : ToGrpc(late);
        });
  }

  // Blocks until replicator->ReadBarrier answers (then the local state machine holds every
  // write acknowledged before this call), with the deadline rule of Wait (below).
  absl::Status AwaitReadBarrier(grpc::ServerContext* context) const {
    return Wait<absl::Status>(
        context, "read barrier did not complete within its deadline (at most %d ms)",
        [&](auto done) { replicator_->ReadBarrier(std::move(done)); });
  }

  // The etcd view of the members: ids, names, URLs.
  void FillMember(const PeerStatus& peer, pb::Member* member) const {
    member->set_id(NodeId::FromPosition(peer.id).etcd_member_id());
    member->set_name(absl::StrCat("node", peer.id));
    member->add_peerurls(absl::StrCat("http://", peer.grpc_address));
    // The etcd API is served on the gRPC port.
    member->add_clienturls(absl::StrCat("http://", peer.grpc_address));
    member->set_islearner(peer.learner);
    member->set_raftkv_client_port(peer.client_port);
  }

  // Blocks until replicator->ChangeMembership answers (the change applied on this node, the
  // leader), with the deadline rule of Wait (below). Returns the member's raft id.
  absl::StatusOr<uint64_t> AwaitMembership(grpc::ServerContext* context,
                                           MembershipChange change) const {
    return Wait<absl::StatusOr<uint64_t>>(
        context, "the membership change did not complete within its deadline (at most %d "
                 "ms); its outcome is unknown: check with member list",
        [&](auto done) { replicator_->ChangeMembership(std::move(change), std::move(done)); });
  }

  uint64_t cluster_id() const { return cluster_id_; }
  uint64_t member_id() const { return member_id_; }

 private:
  // Calls `start(done)` and waits for `done(Result)` until the client's deadline or
  // request_timeout_ms, whichever comes first; after that, kDeadlineExceeded with
  // `late_format` (%d: request_timeout_ms). The callback may outlive the wait, so its state
  // is shared.
  template <typename Result, typename Start>
  Result Wait(grpc::ServerContext* context, const absl::FormatSpec<int64_t>& late_format,
              Start start) const {
    struct State {
      absl::Notification notification;
      Result result = absl::UnknownError("no result");
    };
    auto state = std::make_shared<State>();
    start([state](Result result) mutable {
      state->result = std::move(result);
      state->notification.Notify();
    });
    auto remaining = context->deadline() - std::chrono::system_clock::now();
    std::chrono::nanoseconds wait = std::chrono::milliseconds(options_.request_timeout_ms);
    if (remaining < wait) wait = std::chrono::duration_cast<std::chrono::nanoseconds>(remaining);
    if (!state->notification.WaitForNotificationWithTimeout(absl::FromChrono(wait))) {
      return absl::DeadlineExceededError(
          absl::StrFormat(late_format, options_.request_timeout_ms));
    }
    return std::move(state->result);
  }

  KvService* const kv_;
  Replicator* const replicator_;
  const uint64_t cluster_id_;
  const uint64_t member_id_;
  const EtcdServiceOptions options_;
};

}  // namespace raftkv::server::etcd
