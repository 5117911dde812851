// Follower side of the snapshot stream (protocol: snapshot_transfer.h). Included only where
// the gRPC service is built.
#pragma once

#include <functional>
#include <string>

#include "grpcpp/grpcpp.h"
#include "raft_service.grpc.pb.h"

namespace raftkv::server {

class SnapshotReceiver {
 public:
  // `dir`: where received snapshots land (<data-dir>/snapshots/received). `deliver` gets the
  // MSG_SNAP, its snapshot handle set to the received file's path, once the file is
  // complete, verified and durable.
  SnapshotReceiver(std::string dir, std::function<void(raftpb::Message)> deliver)
      : dir_(std::move(dir)), deliver_(std::move(deliver)) {}

  grpc::Status Serve(grpc::ServerContext* context,
                     grpc::ServerReaderWriter<raftpb::SnapshotAck, raftpb::SnapshotChunk>* stream);

 private:
  const std::string dir_;
  const std::function<void(raftpb::Message)> deliver_;
};

}  // namespace raftkv::server
