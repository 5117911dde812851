// RaftReplicator: the raft loop. Implements the Replicator seam with the Raft core, the WAL,
// the peer transport and the state machine, for any cluster size (one node included).
//
// One thread (the loop) owns the core, the WAL and the applying of entries. Other threads
// (front ends, gRPC handlers, the transport) hand it work through an inbox and never touch
// the core. Each iteration, in this enforced order:
//   1. take the inbox: Step() peer messages, Propose() writes, one ReadIndex() for every
//      read barrier that arrived (batching), report unreachable peers; Tick() when due;
//   2. if the core has a Ready: a leader sends its replication messages first (its own
//      fsync runs in parallel with the followers'; the core counts the leader only for
//      entries it has persisted), then persist entries + hard state with one fsync (group
//      commit: every proposal taken in step 1 shares it); a failed fsync exits the process;
//      then send the remaining messages; apply committed entries to the state machine and
//      answer their writers; release reads whose index is applied; Advance().
//
// Writes on a follower are forwarded to the leader (Forwarder); the follower answers its
// client only after it has applied the entry itself, so a read on the same node sees it.
// Writes and reads not answered within --request-timeout-ms fail with kDeadlineExceeded
// (outcome unknown for writes).
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "kv/state_machine.h"
#include "raft.pb.h"
#include "server/node_address.h"
#include "server/replicator.h"

namespace raftkv::raft {
class Raft;
namespace wal {
class WalStorage;
}  // namespace wal
}  // namespace raftkv::raft

namespace raftkv::server {

class BackupWorker;
class Forwarder;
class PeerTransport;
class SnapshotSender;
struct ForwardResult;
struct SnapshotReport;

struct RaftReplicatorOptions {
  uint32_t node_index = 0;            // position in `cluster` (the core id is this + 1)
  std::vector<NodeAddress> cluster;
  uint64_t cluster_id = 0;
  std::string wal_dir;
  uint32_t tick_ms = 100;             // --tick-ms
  uint32_t election_ticks = 10;       // --election-ticks
  uint32_t heartbeat_ticks = 1;       // --heartbeat-ticks
  uint64_t max_msg_bytes = 1 << 20;   // --max-append-bytes: entry bytes per AppendEntries
  uint32_t max_inflight_msgs = 256;   // --max-inflight-msgs: AppendEntries in flight/follower
  uint32_t request_timeout_ms = 5000; // --request-timeout-ms
  size_t max_pending_writes = 100000; // --max-pending-writes
  size_t peer_queue_msgs = 4096;      // --peer-queue-msgs
  uint64_t wal_segment_bytes = 64ull << 20;  // --wal-segment-bytes

  // Backup and snapshots (design.md "Snapshots to SQLite").
  std::string backup_path;            // --backup-path (default <data-dir>/backup.db)
  std::string snapshot_dir;           // <data-dir>/snapshots
  uint32_t backup_interval_ms = 2000; // --backup-interval-ms
  uint64_t snapshot_entries = 10000;  // --snapshot-entries
  uint32_t snapshots_retained = 3;    // --snapshots-retained
  uint64_t log_retained_entries = 5000;  // --log-retained-entries: kept before a snapshot
  uint64_t snapshot_chunk_bytes = 1 << 20;        // --snapshot-chunk-bytes
  uint64_t snapshot_rate_bytes_per_sec = 0;       // --snapshot-rate-bytes-per-sec (0: none)

  // The state machine was just restored from a snapshot file (kvd --restore-from) and the
  // WAL is new: start the log after the store's applied index.
  bool restored = false;
};

class RaftReplicator : public Replicator {
 public:
  // Opens the WAL under options.wal_dir, recovers the core from it, and starts the loop and
  // the peer transport. REQUIRES: sm outlives the replicator.
  // Errors: kDataLoss (corrupt WAL), kInvalidArgument, kInternal (I/O), each naming the path.
  static absl::StatusOr<std::unique_ptr<RaftReplicator>> Start(kv::StateMachine* sm,
                                                               RaftReplicatorOptions options);
  ~RaftReplicator() override;  // Stop()s.

  // Stops the loop and the transport; pending requests fail with kUnavailable. Idempotent.
  void Stop();

  // Entry points for the peer service (any thread).
  void Deliver(raftpb::Message m);
  // A forwarded write: proposed here only if this node is the leader (never re-forwarded).
  void WriteFromPeer(kvpb::Command cmd,
                     absl::AnyInvocable<void(absl::StatusOr<ForwardResult>) &&> done);

  void Write(kvpb::Command cmd, WriteDone done) override;
  void ReadBarrier(ReadDone done) override;
  NodeStatus Status() const override;
  std::vector<PeerStatus> Members() const override;

 private:
  using LocalWriteDone = absl::AnyInvocable<void(absl::StatusOr<ForwardResult>) &&>;
  struct WriteEvent {
    kvpb::Command cmd;
    LocalWriteDone done;
    bool may_forward = true;
  };
  struct ReadEvent {
    ReadDone done;
  };
  struct UnreachableEvent {
    uint64_t peer = 0;
  };
  // A write the leader applied at `index`: answer once this node has applied it too.
  struct AppliedElsewhereEvent {
    uint64_t index = 0;
    kv::ApplyResult result;
    WriteDone done;
  };
  // The backup worker cut a snapshot: hand it to the core, compact the log.
  struct SnapshotMadeEvent {
    std::shared_ptr<SnapshotReport> report;
  };
  // A snapshot stream to a follower ended.
  struct SnapshotSentEvent {
    uint64_t peer = 0;
    bool ok = false;
  };
  using Event = std::variant<raftpb::Message, WriteEvent, ReadEvent, UnreachableEvent,
                             AppliedElsewhereEvent, SnapshotMadeEvent, SnapshotSentEvent>;

  RaftReplicator(kv::StateMachine* sm, RaftReplicatorOptions options);
  void Post(Event e);
  void Loop();
  void HandleEvent(Event& e, std::vector<ReadDone>* new_reads);
  void HandleWrite(WriteEvent& w);
  void StartRead(std::vector<ReadDone> reads);
  void ProcessReady();
  void ApplyEntry(const raftpb::Entry& e);
  void InstallSnapshot(const raftpb::Snapshot& snap);
  void OnSnapshotMade(const SnapshotReport& report);
  void SendMessages(std::vector<raftpb::Message> msgs);
  void ReleaseApplied();
  void ExpireRequests(absl::Time now);
  void OnTermOrRoleChange();
  void FailAll(const absl::Status& status);
  void PublishStatus();

  kv::StateMachine* const sm_;
  const RaftReplicatorOptions options_;
  const uint64_t self_id_;  // core id

  // ---- Owned by the loop thread only ----
  std::unique_ptr<raft::wal::WalStorage> wal_;
  std::unique_ptr<raft::Raft> raft_;
  struct PendingWrite {
    uint64_t term = 0;        // the proposal's term: committed iff the entry has it
    absl::Time deadline;
    LocalWriteDone done;
  };
  std::map<uint64_t, PendingWrite> pending_writes_;  // by log index
  struct PendingRead {
    absl::Time deadline;
    std::vector<ReadDone> dones;
  };
  std::map<std::string, PendingRead> pending_reads_;  // by ReadIndex context
  uint64_t next_read_id_ = 1;
  // Work waiting for the local applied index to reach a point (confirmed reads, writes the
  // leader applied), by that index.
  struct WaitingRead {
    absl::Time deadline;
    std::vector<ReadDone> dones;
  };
  std::multimap<uint64_t, WaitingRead> reads_waiting_apply_;
  std::multimap<uint64_t, AppliedElsewhereEvent> writes_waiting_apply_;
  uint64_t last_term_ = 0;
  uint64_t last_lead_ = 0;

  std::unique_ptr<PeerTransport> transport_;
  std::unique_ptr<Forwarder> forwarder_;
  std::unique_ptr<SnapshotSender> snapshot_sender_;
  std::unique_ptr<BackupWorker> backup_;

  // ---- Shared with other threads ----
  absl::Mutex mu_;
  std::vector<Event> inbox_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  mutable absl::Mutex status_mu_;
  NodeStatus status_ ABSL_GUARDED_BY(status_mu_);
  std::thread loop_thread_;
  // Writes accepted and not yet answered (bounded by max_pending_writes).
  std::atomic<size_t> outstanding_writes_{0};
  // Forward RPCs whose callback has not run yet; Stop() waits for them (they post here).
  std::atomic<size_t> forwards_in_flight_{0};
};

}  // namespace raftkv::server
