// Streaming a snapshot file to a follower (RaftPeer.InstallSnapshot), resumable and
// checksummed.
//
// Protocol on one bidirectional stream:
//   1. the sender opens with a header chunk: metadata, file name, total_size, no data;
//   2. the receiver answers next_offset: how much of this very snapshot (same name, index
//      and size) it already holds from an earlier, broken attempt (0 for none);
//   3. the sender streams chunks from there, each with the CRC32C of its data; the receiver
//      appends each one after checking offset and CRC and acknowledges the new next_offset;
//   4. after the chunk marked `last`, the receiver fsyncs the file, verifies it end to end as
//      a snapshot (kv::VerifySnapshot), renames it into place, fsyncs the directory, hands the
//      MSG_SNAP to its raft loop (which installs it), and answers done.
// A broken stream is retried with backoff, resuming at the receiver's next_offset. Any
// rejected chunk or failed verification is an error ack; the partial file is discarded.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "raft.pb.h"

namespace raftkv::server {

class PeerChannels;

struct SnapshotTransferOptions {
  uint64_t chunk_bytes = 1 << 20;            // --snapshot-chunk-bytes
  uint64_t rate_bytes_per_sec = 0;           // --snapshot-rate-bytes-per-sec, 0 = unlimited
  uint32_t max_attempts = 10;                // stream (re)starts before giving up
  uint32_t backoff_ms = 200;                 // first retry delay; then PeerChannels' rule
};

// Leader side. One transfer at a time per follower, each on its own thread.
class SnapshotSender {
 public:
  using OnDone = absl::AnyInvocable<void(uint64_t peer, bool ok) const>;

  // Streams over `channels` (which must outlive this object). `on_done(peer, ok)` runs on
  // the transfer's thread when it ends; it must not block.
  SnapshotSender(const PeerChannels* channels, SnapshotTransferOptions options,
                 OnDone on_done);
  ~SnapshotSender();  // Stop()s.

  // Streams the file at `path` for the MSG_SNAP `msg` (msg.to() is the follower). Returns
  // false (and does nothing) if a transfer to that follower is still running.
  bool Start(const raftpb::Message& msg, const std::string& path);
  // Cancels running transfers (reported as failed) and joins their threads. Idempotent.
  void Stop();

 private:
  struct Transfer;
  // How one stream attempt ended.
  enum class Attempt { kDone, kBroken, kStopped, kFailed };
  void Run(Transfer* t);
  Attempt SendOnce(Transfer* t, std::string* error);
  // Waits until `deadline`; false if Stop() came first.
  bool WaitUntil(absl::Time deadline);

  const PeerChannels* const channels_;
  const SnapshotTransferOptions options_;
  const OnDone on_done_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::map<uint64_t, std::unique_ptr<Transfer>> running_ ABSL_GUARDED_BY(mu_);  // by follower
};

}  // namespace raftkv::server
