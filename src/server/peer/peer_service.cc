#include "server/peer/peer_service.h"

#include <algorithm>
#include <memory>

#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
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

grpc::Status RaftPeerService::Forward(grpc::ServerContext* context,
                                      const raftpb::ForwardRequest* request,
                                      raftpb::ForwardResponse* response) {
  // Every answer from here on is this handler's own (forwarder.h, kForwardAnsweredKey).
  context->AddTrailingMetadata(kForwardAnsweredKey, "1");
  kvpb::Command cmd;
  if (!cmd.ParseFromString(request->command())) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "unparseable command");
  }
  // Shared with the callback: it may run after this handler gave up and returned.
  struct Wait {
    absl::Mutex mu;
    bool answered ABSL_GUARDED_BY(mu) = false;
    absl::StatusOr<ForwardResult> result ABSL_GUARDED_BY(mu);
  };
  auto wait = std::make_shared<Wait>();
  handler_->WriteFromPeer(std::move(cmd), [wait](absl::StatusOr<ForwardResult> r) {
    absl::MutexLock lock(&wait->mu);
    wait->result = std::move(r);
    wait->answered = true;
  });
  // The follower's deadline, never past our own bound (a leaked wait would hold a gRPC
  // thread and block Server::Shutdown).
  const absl::Time deadline =
      std::min(absl::Now() + max_forward_wait_, absl::FromChrono(context->deadline()));
  absl::MutexLock lock(&wait->mu);
  if (!wait->mu.AwaitWithDeadline(absl::Condition(&wait->answered), deadline)) {
    return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                        "the leader did not answer the forwarded write in time; outcome unknown");
  }
  if (!wait->result.ok()) return ToGrpcStatus(wait->result.status());
  ToWire(wait->result->index, wait->result->result, response);
  return grpc::Status::OK;
}

}  // namespace raftkv::server
