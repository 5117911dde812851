// The receiving side of the peer transport: the RaftPeer gRPC service. Includes gRPC
// headers, so only the file that builds the gRPC server includes it.
#pragma once

#include <functional>

#include "raft_service.grpc.pb.h"

namespace raftkv::server {

class RaftPeerService final : public raftpb::RaftPeer::Service {
 public:
  // `deliver` gets every message of every inbound stream, in stream order; it must not
  // block for long (it enqueues into the raft loop's inbox).
  explicit RaftPeerService(std::function<void(raftpb::Message)> deliver)
      : deliver_(std::move(deliver)) {}

  grpc::Status Send(grpc::ServerContext* context,
                    grpc::ServerReader<raftpb::MessageBatch>* reader,
                    raftpb::PeerEmpty* response) override {
    raftpb::MessageBatch batch;
    while (reader->Read(&batch)) {
      for (raftpb::Message& m : *batch.mutable_messages()) deliver_(std::move(m));
    }
    return grpc::Status::OK;
  }

 private:
  std::function<void(raftpb::Message)> deliver_;
};

}  // namespace raftkv::server
