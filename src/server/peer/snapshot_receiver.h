// Follower side of the snapshot stream (protocol: peer/snapshot_sender.h). Included only where
// the gRPC service is built.
#pragma once

#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"

#include "grpcpp/grpcpp.h"
#include "raft_service.grpc.pb.h"

namespace raftkv::server {

class SnapshotReceiver {
 public:
  // `dir`: where received snapshots land (<data-dir>/snapshots/received). `deliver` gets the
  // MSG_SNAP, its snapshot handle set to the received file's path, once the file is
  // complete, verified and durable.
  using Deliver = absl::AnyInvocable<void(raftpb::Message) const>;
  using Stream = grpc::ServerReaderWriter<raftpb::SnapshotAck, raftpb::SnapshotChunk>;

  SnapshotReceiver(std::string dir, Deliver deliver)
      : dir_(std::move(dir)), deliver_(std::move(deliver)) {}

  grpc::Status Serve(grpc::ServerContext* context, Stream* stream);

 private:
  class PartFile;
  // Appends the stream's chunks to `part` until the one marked last. CANCELLED if the
  // stream ends first (the part file is kept for a resumed attempt).
  grpc::Status ReceiveChunks(const raftpb::SnapshotChunk& header, PartFile* part,
                             Stream* stream);
  // Makes the complete part file durable, verifies it as the announced snapshot and renames
  // it into place. Returns the final path.
  absl::StatusOr<std::string> Complete(const raftpb::SnapshotChunk& header, PartFile* part);

  const std::string dir_;
  const Deliver deliver_;
};

}  // namespace raftkv::server
