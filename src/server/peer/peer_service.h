// The receiving side of the peer transport: the RaftPeer gRPC service. Includes gRPC
// headers, so only the file that builds the gRPC server includes it.
#pragma once

#include "absl/synchronization/notification.h"
#include "raft_service.grpc.pb.h"
#include "server/forwarder.h"
#include "server/grpc_status.h"
#include "server/raft_replicator.h"
#include "server/snapshot_receiver.h"

namespace raftkv::server {

class RaftPeerService final : public raftpb::RaftPeer::Service {
 public:
  // REQUIRES: replicator outlives the service (the gRPC server is shut down first).
  // Received snapshots are written under `snapshot_dir`.
  RaftPeerService(RaftReplicator* replicator, std::string snapshot_dir)
      : replicator_(replicator),
        receiver_(std::move(snapshot_dir),
                  [replicator](raftpb::Message m) { replicator->Deliver(std::move(m)); }) {}

  grpc::Status InstallSnapshot(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<raftpb::SnapshotAck, raftpb::SnapshotChunk>* stream) override {
    return receiver_.Serve(context, stream);
  }

  // Every message of every inbound stream goes to the raft loop's inbox, in stream order.
  grpc::Status Send(grpc::ServerContext* context,
                    grpc::ServerReader<raftpb::MessageBatch>* reader,
                    raftpb::PeerEmpty* response) override {
    raftpb::MessageBatch batch;
    while (reader->Read(&batch)) {
      for (raftpb::Message& m : *batch.mutable_messages()) replicator_->Deliver(std::move(m));
    }
    return grpc::Status::OK;
  }

  grpc::Status Forward(grpc::ServerContext* context, const raftpb::ForwardRequest* request,
                       raftpb::ForwardResponse* response) override {
    kvpb::Command cmd;
    if (!cmd.ParseFromString(request->command())) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "unparseable command");
    }
    absl::Notification done;
    absl::Status status;
    replicator_->WriteFromPeer(std::move(cmd), [&](absl::StatusOr<ForwardResult> r) {
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

 private:
  RaftReplicator* replicator_;
  SnapshotReceiver receiver_;
};

}  // namespace raftkv::server
