#include "server/peer/peer_service.h"

#include <algorithm>
#include <memory>

#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "server/grpc_async_unary.h"
#include "server/grpc_status.h"
#include "server/node_id.h"
#include "server/peer/peer_channels.h"
#include "server/peer/peer_transport.h"
#include "spdlog/spdlog.h"

namespace raftkv::server {

void ApplyPeerServerOptions(grpc::ServerBuilder* builder) {
  // Half the smallest interval a peer may use: pings arrive up to a scheduling delay early.
  builder->AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                              static_cast<int>(kMinPeerKeepaliveMs / 2));
  builder->AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder->AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
  builder->AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20000);
}

RaftPeerService::RaftPeerService(PeerHandler* handler, std::string snapshot_dir,
                                 absl::Duration max_forward_wait, uint64_t cluster_id)
    : handler_(handler),
      cluster_id_(cluster_id),
      max_forward_wait_(max_forward_wait),
      receiver_(std::move(snapshot_dir),
                [handler](raftpb::Message m) { handler->Deliver(std::move(m)); }) {}

grpc::Status RaftPeerService::InstallSnapshot(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<raftpb::SnapshotAck, raftpb::SnapshotChunk>* stream) {
  return receiver_.Serve(context, stream);
}

grpc::Status RaftPeerService::Send(grpc::ServerContext* context,
                                   grpc::ServerReader<raftpb::MessageBatch>* reader,
                                   raftpb::PeerEmpty* response) {
  raftpb::MessageBatch batch;
  while (reader->Read(&batch)) {
    if (cluster_id_ != 0 && batch.cluster_id() != 0 && batch.cluster_id() != cluster_id_) {
      const std::string why = absl::StrFormat(
          "refusing peer messages from %s: they come from cluster %#018x, this node is in "
          "cluster %#018x (check that both use the same node_config.json and --cluster-token)",
          context->peer(), batch.cluster_id(), cluster_id_);
      spdlog::error("{}", why);
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, why);
    }
    const uint64_t from = batch.from() != 0             ? batch.from()
                          : batch.messages_size() != 0 ? batch.messages(0).from()
                                                       : 0;
    if (from != 0 && handler_->IsRemovedMember(from)) {
      const std::string why = absl::StrFormat(
          "member %d (node %d, %s) was removed from the cluster; its messages are refused (to "
          "bring that host back, wipe its data dir and add it again as a new member)",
          from, NodeId::FromRaftId(from).position(), context->peer());
      spdlog::warn("{}", why);
      context->AddTrailingMetadata(kMemberRemovedKey, "1");
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, why);
    }
    for (raftpb::Message& m : *batch.mutable_messages()) handler_->Deliver(std::move(m));
  }
  return grpc::Status::OK;
}

grpc::ServerUnaryReactor* RaftPeerService::Forward(grpc::CallbackServerContext* context,
                                                   const raftpb::ForwardRequest* request,
                                                   raftpb::ForwardResponse* response) {
  // Every answer from here on is this handler's own (forwarder.h, kForwardAnsweredKey).
  context->AddTrailingMetadata(kForwardAnsweredKey, "1");
  const size_t n = 1 + static_cast<size_t>(request->more_commands_size());
  std::vector<kvpb::Command> cmds(n);
  // All or nothing: a batch with a command we cannot read proposes none of it.
  for (size_t i = 0; i < n; ++i) {
    const std::string& bytes =
        i == 0 ? request->command() : request->more_commands(static_cast<int>(i - 1));
    if (!cmds[i].ParseFromString(bytes)) {
      return AsyncUnary::FinishNow(
          context, grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "unparseable command"));
    }
  }
  // The answers so far. Shared with the callbacks and the timeout: whichever comes last (the
  // last answer) or first (the timeout) ends the call.
  struct Answers {
    absl::Mutex mu;
    size_t unanswered ABSL_GUARDED_BY(mu) = 0;
    std::vector<absl::StatusOr<ForwardResult>> results ABSL_GUARDED_BY(mu);
    std::vector<bool> answered ABSL_GUARDED_BY(mu);
  };
  auto answers = std::make_shared<Answers>();
  {
    absl::MutexLock lock(&answers->mu);
    answers->unanswered = n;
    answers->results.assign(n, absl::UnknownError("not answered"));
    answers->answered.assign(n, false);
  }
  // Writes the response from the answers; those not answered are outcome unknown (the
  // answered ones are final, and their followers may go on waiting for their apply).
  // REQUIRES: the call is claimed.
  auto respond = [answers, response, n]() -> grpc::Status {
    constexpr char kLate[] =
        "the leader did not answer the forwarded write in time; outcome unknown";
    absl::MutexLock lock(&answers->mu);
    if (n == 1) {
      if (!answers->answered[0]) return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, kLate);
      const absl::StatusOr<ForwardResult>& r = answers->results[0];
      if (!r.ok()) return ToGrpcStatus(r.status());
      ToWire(r->index, r->result, response);
      return grpc::Status::OK;
    }
    for (size_t i = 0; i < n; ++i) {
      raftpb::ForwardedResult* out = response->add_results();
      const absl::StatusOr<ForwardResult>& r = answers->results[i];
      if (r.ok()) {
        ToWire(r->index, r->result, out->mutable_response());
        continue;
      }
      grpc::Status g = answers->answered[i]
                           ? ToGrpcStatus(r.status())
                           : grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, kLate);
      out->set_code(static_cast<int32_t>(g.error_code()));
      out->set_message(g.error_message());
    }
    return grpc::Status::OK;
  };
  std::shared_ptr<AsyncUnary> call =
      AsyncUnary::Start(absl::ToChronoMilliseconds(max_forward_wait_), respond);
  std::vector<PeerHandler::ForwardDone> dones;
  dones.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    dones.push_back([answers, call, respond, i](absl::StatusOr<ForwardResult> r) {
      {
        absl::MutexLock lock(&answers->mu);
        answers->results[i] = std::move(r);
        answers->answered[i] = true;
        if (--answers->unanswered != 0) return;
      }
      if (call->Claim()) call->Finish(respond());
    });
  }
  if (n == 1) {
    handler_->WriteFromPeer(std::move(cmds[0]), std::move(dones[0]));
  } else {
    handler_->WritesFromPeer(std::move(cmds), std::move(dones));
  }
  return call->reactor();
}

}  // namespace raftkv::server
