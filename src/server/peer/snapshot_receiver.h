// Follower side of the snapshot stream (protocol: peer/snapshot_sender.h). Included only where
// the gRPC service is built.
#pragma once

#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

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

  // One stream. At most one stream writes a snapshot's part file at a time: a newer stream
  // of the same snapshot (same name and size) cancels the older one and waits until it has
  // let go of the file, then resumes at what the file holds. (A sender retries a broken
  // stream while this side may still be serving the old one; two leaders may send a snapshot
  // of the same name.) Without that, the older stream could complete and rename the file
  // while the newer one still held it open for writing.
  grpc::Status Serve(grpc::ServerContext* context, Stream* stream);

 private:
  class PartFile;
  // Waits until no other stream serves `part_path`, cancelling the one that does, and
  // records `context` as its server. Release() ends that.
  void Claim(const std::string& part_path, grpc::ServerContext* context);
  void Release(const std::string& part_path);
  // Serve() once the part file is this stream's alone.
  grpc::Status ServeClaimed(const raftpb::SnapshotChunk& header, const std::string& part_path,
                            Stream* stream);
  // Appends the stream's chunks to `part` until the one marked last. CANCELLED if the
  // stream ends first (the part file is kept for a resumed attempt).
  grpc::Status ReceiveChunks(const raftpb::SnapshotChunk& header, PartFile* part,
                             Stream* stream);
  // Makes the complete part file durable, verifies it as the announced snapshot and renames
  // it into place. Returns the final path.
  absl::StatusOr<std::string> Complete(const raftpb::SnapshotChunk& header, PartFile* part);

  const std::string dir_;
  const Deliver deliver_;
  absl::Mutex mu_;
  // The stream serving each part file, by its path.
  std::map<std::string, grpc::ServerContext*> serving_ ABSL_GUARDED_BY(mu_);
};

}  // namespace raftkv::server
