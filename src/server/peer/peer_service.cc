#include "server/peer/peer_service.h"

#include "absl/synchronization/notification.h"
#include "server/grpc_status.h"

namespace raftkv::server {

RaftPeerService::RaftPeerService(PeerHandler* handler, std::string snapshot_dir)
    : handler_(handler),
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
    for (raftpb::Message& m : *batch.mutable_messages()) handler_->Deliver(std::move(m));
  }
  return grpc::Status::OK;
}

grpc::Status RaftPeerService::Forward(grpc::ServerContext* context,
                                      const raftpb::ForwardRequest* request,
                                      raftpb::ForwardResponse* response) {
  kvpb::Command cmd;
  if (!cmd.ParseFromString(request->command())) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "unparseable command");
  }
  absl::Notification done;
  absl::Status status;
  handler_->WriteFromPeer(std::move(cmd), [&](absl::StatusOr<ForwardResult> r) {
    if (r.ok()) {
      ToWire(r->index, r->result, response);
    } else {
      status = r.status();
    }
    done.Notify();
  });
  done.WaitForNotification();
  return ToGrpcStatus(status);
}

}  // namespace raftkv::server
