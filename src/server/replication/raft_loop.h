// RaftLoop: the raft loop. Implements the Replicator seam (service/replicator.h) with the
// Raft core, the WAL, the peer links and the state machine, for any cluster size (one node
// included), and the PeerHandler the RaftPeer service hands inbound work to.
//
// One thread (the loop) owns the core, the WAL and the applying of entries. Other threads
// (front ends, gRPC handlers, the transport, the backup worker) hand it work through an inbox
// and never touch the core. Each iteration, in this enforced order:
//   1. take the inbox: Step() peer messages, Propose() writes, one ReadIndex() for every
//      read barrier that arrived (batching), report unreachable peers; Tick() when due;
//   2. for each Ready: send the messages the core allows before the persist step
//      (Ready::messages_before_persist: a leader's replication of its term; its own fsync
//      runs in parallel with the followers'), then
//      persist entries + hard state with one fsync (group commit: every proposal taken in
//      step 1 shares it; a failed fsync exits the process), then send the other messages
//      (votes and acks depend on what was just persisted); apply committed entries to the
//      state machine (all of this Ready's in one store write: StateMachine::ApplyBatch) and
//      answer their writers; release reads whose index is applied; Advance().
//
// Nothing else runs on the loop (issue 10 item 4): read barriers are answered on the reader
// pool (reader_pool.h), which then reads the state machine; the db-size figure is taken there
// too; a snapshot received from the leader is installed on an install thread (the store's
// restore, the backup's reset) while the loop goes on appending, acknowledging, ticking and
// heartbeating, with the core's apply paused (Raft::PauseApply) until the install is done.
// The loop records its longest iteration and tick gap (NodeStatus).
//
// Writes on a follower are forwarded to the leader (Forwarder); the follower answers its
// client only after it has applied the entry itself, so a read on the same node sees it.
// Writes and reads not answered within --request-timeout-ms fail with kDeadlineExceeded
// (outcome unknown for writes). The requests waiting live in PendingRequests.
//
// Leadership transfer (TransferLeadership, HandOverLeadership; issue 13): the core refuses
// proposals while it hands over (raft.h). The loop makes that invisible to clients: writes
// arriving meanwhile (a client's or a follower's forwarded one) are held, then proposed if
// the transfer aborted or forwarded to the new leader once it is known (a follower's write is
// relayed: the follower learns of the new leader a moment later). Writes this node proposed
// before the transfer began are not failed when it steps down (the target holds all of them
// before it campaigns): they are answered when they apply here (PendingRequests::
// OnLeadership's handed_over_term).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <variant>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "kv/state_machine.h"
#include "raft.pb.h"
#include "raft/config.h"
#include "server/data_dir.h"
#include "server/node_address.h"
#include "server/node_id.h"
#include "server/peer/peer_channels.h"
#include "server/peer/peer_service.h"
#include "server/replication/member_table.h"
#include "server/replication/pending_requests.h"
#include "server/replication/reader_pool.h"
#include "server/service/replicator.h"
#include "server/snapshots/snapshot_store.h"

namespace raftkv::raft {
class LogStorage;
class Raft;
struct Ready;
namespace wal {
class WalEnv;
class WalStorage;
}  // namespace wal
}  // namespace raftkv::raft

namespace raftkv::server {

class BackupWorker;
class Forwarder;
class PeerTransport;
class SnapshotSender;
struct SnapshotReport;

struct RaftLoopOptions {
  uint32_t node_index = 0;            // this node's NodeId position (raft id - 1)
  // node_config.json: bootstraps the member table (ids position + 1) when `members` is unset.
  std::vector<NodeAddress> cluster;
  // The member table to start from (member_table.h): <data-dir>/members, or what a joining
  // node fetched from the cluster. Unset: bootstrapped from `cluster`.
  std::optional<MemberTable> members;
  // The core's bootstrap configuration (raft::Config::peers). Empty: the ids of `cluster`.
  std::vector<uint64_t> bootstrap_voters;
  // Called (on the loop thread) once this node applied its own removal: the process should
  // stop (raft.h, contract item 7). Null: nothing.
  std::function<void()> on_removed;
  uint64_t cluster_id = 0;
  uint32_t tick_ms = 100;             // --tick-ms
  uint32_t election_ticks = 10;       // --election-ticks
  uint32_t heartbeat_ticks = 1;       // --heartbeat-ticks
  uint64_t max_msg_bytes = 1 << 20;   // --max-append-bytes: entry bytes per AppendEntries
  uint32_t max_inflight_msgs = 256;   // --max-inflight-msgs: AppendEntries in flight/follower
  uint32_t request_timeout_ms = 5000; // --request-timeout-ms
  size_t max_pending_writes = 100000; // --max-pending-writes
  // Client sessions (docs/architecture.md, "Sessions"): stamped into every entry this node
  // proposes, so the state machine of every replica applies the leader's values.
  uint64_t session_expiry_entries = 100000;  // --session-expiry-entries
  uint64_t session_window = 64;              // --session-window
  // A follower forwards the single writes it took in one loop iteration (from any number of
  // connections) to the leader in one Forward call of at most this many writes and, unless
  // one write alone is larger, bytes (each is still answered on its own).
  size_t max_forward_batch_writes = 256;        // --max-forward-batch-writes
  uint64_t max_forward_batch_bytes = 1 << 20;   // --max-forward-batch-bytes
  // A follower's writes in flight on one of its forwarding sessions (lanes, below) before it
  // takes another: the leader rewrites a lane's whole session record, one result per write in
  // flight, on every write of the lane. At most session_window.
  uint64_t forward_lane_writes = 16;            // --forward-lane-writes
  size_t peer_queue_msgs = 4096;      // --peer-queue-msgs
  PeerChannelOptions peer;            // --peer-keepalive-ms, --peer-connect-timeout-ms, ...
  uint64_t wal_segment_bytes = 64ull << 20;  // --wal-segment-bytes
  uint64_t wal_cache_bytes = 32ull << 20;    // --wal-cache-bytes (0: read every entry back)
  // --initial-cluster-state: what an empty data dir means (raft::Config::EmptyStart).
  raft::Config::EmptyStart empty_start = raft::Config::EmptyStart::kAskPeers;

  // Backup and snapshots (docs/architecture.md, "Backup, snapshots and compaction").
  std::string backup_path;            // --backup-path (default <data-dir>/backup.db)
  uint32_t backup_interval_ms = 2000; // --backup-interval-ms
  uint64_t snapshot_entries = 10000;  // --snapshot-entries
  uint32_t snapshot_time_share_pct = 10;  // --snapshot-time-share-pct (SnapshotPacer)
  uint32_t snapshots_retained = 3;    // --snapshots-retained
  uint64_t log_retained_entries = 5000;  // --log-retained-entries: kept before a snapshot
  uint64_t snapshot_chunk_bytes = 1 << 20;        // --snapshot-chunk-bytes
  uint64_t snapshot_rate_bytes_per_sec = 0;       // --snapshot-rate-bytes-per-sec (0: none)
  // --max-backup-lag-entries: past this many applied entries not yet in the backup, writes
  // wait (the log, held in memory, is not compacted past the backup)...
  uint64_t max_backup_lag_entries = 50000;
  // --backup-lag-wait-ms: ...up to this long (at most half of --request-timeout-ms, so a
  // write held on a follower and again on the leader is still answered in time) for the
  // backup to come back under the limit, in order; then they are refused. 0: refused at once.
  uint32_t backup_lag_wait_ms = 1000;
  // --snapshot-copy-busy-retries: a snapshot copy that finds the backup busy or locked (another
  // SQLite connection) is retried this many times, 50 ms apart, then fails (and is retried
  // at the next snapshot).
  uint32_t snapshot_copy_busy_retries = 10;
  // --reader-threads: threads that answer read barriers and then read the state machine
  // (GET, MGET, Range, DBSIZE), off the raft loop.
  uint32_t reader_threads = 4;

  // The state machine was just restored from a snapshot file (kvd --restore-from) and the
  // WAL is new: start the log after the store's applied index.
  bool restored = false;

  // ---- Test seams (not flags) ----
  // Called with the step's name after each step of installing a snapshot from the leader
  // (StartInstall, InstallStore, FinishInstall: the loop's and the install thread's steps,
  // in order), so a test can end the process there
  // (tests/server/snapshot_install_crash_test.cc). Empty: the environment's
  // RAFTKV_CRASH_AFTER_INSTALL_STEP, if set (raft_loop.cc), else nothing.
  std::function<void(std::string_view step)> install_crash_point;
  // The file system the WAL uses; null: the real one (raft::wal::WalEnv::Default()).
  raft::wal::WalEnv* wal_env = nullptr;
};

// The answer to a write whose Propose() failed on this node and that is not forwarded:
// kUnavailable "no leader" / "not the leader; the leader is N" (not applied), or
// kResourceExhausted "not applied: the leader's uncommitted log is over its limit".
absl::Status RefusedProposal(const absl::Status& propose_error);

// Where the log may be compacted to after a snapshot (0: nowhere yet): never past the
// snapshot (the oldest thing a follower can be sent instead of entries), what RocksDB has
// flushed (a crash loses the rest of the store, which the log must replay) or the backup
// (which follows the log), keeping `retained_entries` before that for followers that are
// only a little behind.
uint64_t CompactionBound(uint64_t snapshot_index, uint64_t flushed_index,
                         uint64_t backup_index, uint64_t retained_entries);

// One Ready through the core's caller contract (raft/raft.h), in its order: take
// core.GetReady(); send rd.messages_before_persist; persist(rd); send rd.messages (votes and
// acknowledgements promise what persist made durable); apply(rd); core.Advance(rd) (the
// leader counts its own new entries in a commit quorum from here on, so only after its
// sync). RaftLoop::ProcessReady is this with the WAL, the peer transport and the state
// machine; tests/server/ready_order_test.cc drives it with a recording log and transport.
void ProcessReadyInOrder(raft::Raft& core,
                         absl::FunctionRef<void(std::vector<raftpb::Message>)> send,
                         absl::FunctionRef<void(const raft::Ready&)> persist,
                         absl::FunctionRef<void(const raft::Ready&)> apply);

// The log part of the persist step (the snapshot, if any, is installed before it): appends
// rd.entries, records rd.hard_state, then makes both durable with one log.Sync() (group
// commit) when rd.must_sync: a hard state whose only change is the commit index is written
// but not synced (the core leaves it out of must_sync, as etcd does; OpenLog copes with a
// durable commit index behind the store). A failed write or sync exits the process (exit
// code 70): never retried.
void PersistReady(const raft::Ready& rd, raft::LogStorage& log);

class RaftLoop : public Replicator, public PeerHandler {
 public:
  // Opens the WAL under data_dir.wal(), recovers the core from it (recovery.h), and starts
  // the loop, the peer links and the backup worker. REQUIRES: sm outlives the loop.
  // Errors: kDataLoss (corrupt WAL, store and log that cannot agree), kInvalidArgument,
  // kFailedPrecondition, kInternal (I/O), each naming the path.
  static absl::StatusOr<std::unique_ptr<RaftLoop>> Start(kv::StateMachine* sm,
                                                         const DataDir& data_dir,
                                                         RaftLoopOptions options);
  ~RaftLoop() override;  // Stop()s.

  // Stops the loop and the peer links; pending requests fail with kUnavailable. Idempotent.
  void Stop();

  // PeerHandler (any thread).
  void Deliver(raftpb::Message m) override;
  void WriteFromPeer(kvpb::Command cmd, ForwardDone done) override;
  bool IsRemovedMember(uint64_t raft_id) override;
  // A follower's batch (one Forward): proposed in order as consecutive entries.
  void WritesFromPeer(std::vector<kvpb::Command> cmds, std::vector<ForwardDone> dones) override;

  // Replicator (any thread).
  void Write(kvpb::Command cmd, WriteDone done) override;
  // One event for the loop: proposed in order as consecutive entries here, or (on a follower)
  // sent to the leader in one Forward, which proposes them in order.
  void WriteBatch(std::vector<kvpb::Command> cmds, std::vector<WriteDone> dones) override;
  void ReadBarrier(ReadDone done) override;
  NodeStatus Status() const override;
  std::vector<PeerStatus> Members() const override;
  // Runs on the loop. Answers OK once a leader other than this node is known (the target,
  // else kAborted naming the winner); errors as documented in Replicator, and kUnavailable
  // when the node stops meanwhile. `to` = nullopt picks the voter with the highest match
  // among those heard from within an election timeout. A second request while a transfer
  // is in progress joins it (same target or none), else kFailedPrecondition.
  void TransferLeadership(std::optional<uint64_t> to, uint64_t timeout_ms,
                          TransferDone done) override;

  // Before an orderly stop (kvd's SIGTERM): if this node leads, transfers leadership to the
  // most up-to-date follower and waits until it is done and the writes this node had
  // proposed are answered, at most `timeout`. Returns at once (OK) when it does not lead;
  // kFailedPrecondition when it is the only voter; other errors as TransferLeadership.
  // Blocks the caller; the loop goes on serving.
  absl::Status HandOverLeadership(absl::Duration timeout);
  void ChangeMembership(MembershipChange change, ChangeDone done) override;

 private:
  struct WriteEvent {
    kvpb::Command cmd;
    PendingRequests::WriteDone done;
    bool may_forward = true;
    // A forwarded write whose Forward broke (outcome unknown), sent again under this node's
    // session: not before `not_before`, and answered "outcome unknown" once `taken` +
    // --request-timeout-ms passed.
    bool retry = false;
    absl::Time taken;
    absl::Time not_before;
    // Held while this node hands leadership over (`taken` is set): proposed if the transfer
    // aborts, else sent to the new leader, a follower's forwarded write included.
    bool held = false;
    // Waiting for the backup to come back under --max-backup-lag-entries (`taken` is set).
    bool lag_held = false;
    // The writes of one WriteBatch (or one single write) share a group: they are forwarded in
    // one call, never split or reordered (held and retried ones included).
    uint64_t group = 0;
  };
  // Several writes to handle in one go, in order (WriteBatch, WritesFromPeer, a retry).
  struct WriteBatchEvent {
    std::vector<WriteEvent> writes;
  };
  struct ReadEvent {
    ReadDone done;
  };
  struct UnreachableEvent {
    uint64_t peer = 0;
  };
  // A write the leader applied at `index`: answer once this node has applied it too, or
  // when its deadline (taken + --request-timeout-ms) passes.
  struct AppliedElsewhereEvent {
    uint64_t index = 0;
    kv::ApplyResult result;
    absl::Time taken;  // when this node took the write from its client
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
  // The install thread finished the store and backup steps of a snapshot install.
  struct InstallDoneEvent {};
  // A leadership transfer request (TransferLeadership; `drain`: HandOverLeadership's, which
  // also waits for the writes this node proposed to be answered).
  struct TransferEvent {
    std::optional<uint64_t> to;  // position; nullopt: the most up-to-date follower
    absl::Duration timeout;
    bool drain = false;
    TransferDone done;
  };
  // A membership change to propose (ChangeMembership).
  struct MembershipEvent {
    MembershipChange change;
    ChangeDone done;
  };
  using Event = std::variant<raftpb::Message, WriteEvent, WriteBatchEvent, ReadEvent, UnreachableEvent,
                             AppliedElsewhereEvent, SnapshotMadeEvent, SnapshotSentEvent,
                             InstallDoneEvent, TransferEvent, MembershipEvent>;

  RaftLoop(kv::StateMachine* sm, const DataDir& data_dir, RaftLoopOptions options);
  // The parts of Start, in order.
  absl::Status CreateCore();
  void StartPeerLinks();
  absl::Status StartBackup();

  // Counts a write (a client's or a follower's forwarded one) against --max-pending-writes;
  // over it: kResourceExhausted, not applied. The caller gives the slot back when answered.
  absl::Status TakeWriteSlot();
  // kResourceExhausted (not applied) while the backup lags the state machine by more than
  // --max-backup-lag-entries: the log cannot be compacted past the backup. Any thread.
  absl::Status CheckBackupLag() const;
  // What an operator must act on (NodeStatus::alarms).
  std::vector<std::string> Alarms() const;
  // Takes a --max-pending-writes slot (or answers `done` with kResourceExhausted) and posts
  // the write; the slot is released when `done` runs.
  void PostWrite(kvpb::Command cmd, bool may_forward, PendingRequests::WriteDone done);
  // The same for a batch: every write takes a slot or none does (kResourceExhausted for all).
  void PostWrites(std::vector<kvpb::Command> cmds, bool may_forward,
                  std::vector<PendingRequests::WriteDone> dones);
  void Post(Event e);
  // Answers the request an event carries (if any) with `status`: it will not be handled.
  static void Refuse(Event& e, const absl::Status& status);
  void Loop();
  // The events of one iteration in order; runs of single writes go through HandleWrites
  // together (a follower forwards each run in one call).
  void HandleEvents(std::vector<Event>& events, std::vector<ReadDone>* new_reads);
  void HandleEvent(Event& e, std::vector<ReadDone>* new_reads);
  // The loop's side of a read barrier: `done` is queued in released_reads_ when the barrier
  // is released (on the loop thread), not run.
  ReadDone ReleaseToReaders(ReadDone done);
  void SubmitReleasedReads();
  void HandleWrite(WriteEvent& w);
  // Writes in order: each proposed here (or held, or refused); the runs of them that must go
  // to the leader are forwarded one run per call (ForwardWrites), so they keep their order.
  void HandleWrites(std::vector<WriteEvent>& ws);
  // HandleWrites for each group of `ws` (consecutive writes of one group), in order; single
  // writes that are not retries go together in runs (below).
  void HandleWriteGroups(std::vector<WriteEvent>& ws);
  // Consecutive single writes (each its own group, from any connection), handled in one
  // HandleWrites call so that a follower forwards them in one call; cut at the batch limits
  // (--max-forward-batch-writes, --max-forward-batch-bytes).
  struct WriteRun {
    std::vector<WriteEvent> writes;
    uint64_t bytes = 0;
  };
  void AddToRun(WriteRun& run, WriteEvent w);
  void FlushRun(WriteRun& run);
  // Proposes `w` here, holds it, or answers it; returns the leader (raft id) it must be
  // forwarded to instead, if any (then `w` is untouched for the caller to forward).
  std::optional<uint64_t> ProposeOrRoute(WriteEvent& w);
  // Leadership transfer (on the loop): starts or joins one; after each iteration (and tick),
  // answers the requests whose transfer ended or whose deadline passed and sends the held
  // writes on; the raft id of the voter to hand over to when none was named (0: none).
  void HandleTransfer(TransferEvent& t);
  void CheckTransfers(absl::Time now);
  // A draining hand-over is done: no write this node took is still proposed, held, waiting
  // to be sent again, forwarded or waiting for its apply here.
  bool WritesDrained();
  uint64_t PickTransferTarget(absl::Time now) const;
  // Whether a write the core refused must be held: a transfer this node started is in
  // progress, or it just stepped down for it and no leader is known yet.
  bool HoldingWrites() const;
  // Proposes the writes held for the backup's lag once it is under the limit again, or
  // refuses those that waited --backup-lag-wait-ms (BackupLagWait()); while the backup is
  // behind, it looks at them only once lag_held_expiry_ passed.
  void ReleaseWritesHeldForBackup(absl::Time now);
  absl::Duration BackupLagWait() const;
  // Sends writes this node cannot propose to the leader `leader` (a raft id) in one Forward,
  // in order; the leader proposes them in that order. Those without a client session go
  // under one of this node's own sessions (lanes, below), so a Forward that broke can be
  // sent again, whole and in order, (to the next leader) without being applied twice.
  void ForwardWrites(std::vector<WriteEvent> ws, uint64_t leader);
  void StartRead(std::vector<ReadDone> reads);
  void ProcessReady();
  void Persist(const raft::Ready& rd);
  // Applies committed entries to the state machine in one write (ApplyBatch), then answers
  // their writers and queues them for the backup. A store failure exits the process.
  void ApplyEntries(const std::vector<raftpb::Entry>& entries);
  // ApplyEntries' parts: a run of commands as one store write; one ENTRY_CONF
  // (ApplyMembership, then an empty entry for the store and the backup).
  void ApplyCommands(absl::Span<const raftpb::Entry> entries);
  void ApplyConfEntry(const raftpb::Entry& e);
  // RAFTKV_CRASH_AFTER_APPLYING_KEY (a test seam): ends the process if this leader just
  // applied the put, proposed in its term, that created that key.
  void MaybeCrashAfterApplying(const raftpb::Entry& e, const kvpb::Command& cmd,
                               const kv::ApplyResult& result);
  // A committed ENTRY_CONF: the member table (saved before the entry counts as applied), then
  // the peer links follow it; this node's own removal calls options_.on_removed.
  void ApplyMembership(const raftpb::Entry& e);
  // After the member table changed: the peer links follow it; a node no longer in it stops.
  void MembersChanged(bool removed_self);
  // Logs why, once, and stops the node (options_.on_removed). Any thread.
  void StopRemoved(const std::string& how);
  // Channels and senders for exactly the table's other members.
  void SyncPeerLinks();
  // Hands the core a snapshot to send to followers, with this node's member table as its
  // context; a follower installing one adopts the table when it is newer than its own.
  void OfferSnapshot(raftpb::Snapshot snap);
  void AdoptSnapshotMembers(const raftpb::SnapshotMetadata& meta);
  void HandleMembership(MembershipEvent& m);
  // Starts installing a snapshot from the leader, durably and in an order start-up can
  // finish from any point: restarts the WAL after it (on the loop, before returning), then
  // pauses the core's apply and starts the install thread (InstallStore) for the store and
  // the backup. `hs`: the hard state to persist with it. REQUIRES: no install in flight.
  void StartInstall(const raftpb::Snapshot& snap, raftpb::HardState hs);
  // The install thread: the store, then the backup, then posts InstallDoneEvent.
  void InstallStore(std::string path);
  // On the loop, after InstallDoneEvent: prunes snapshots, applies the entries that committed
  // with the snapshot's Ready, resumes the core's apply, steps a snapshot message held back.
  void FinishInstall();
  // Refreshes NodeStatus::db_size_bytes on the reader pool (RocksDB's size look-up can wait
  // for the store's lock, which an install holds).
  void RefreshDbSize();
  // Calls options_.install_crash_point, if set, with `step`.
  void InstallStepDone(std::string_view step) const;
  void OnSnapshotMade(const SnapshotReport& report);
  void SendMessages(std::vector<raftpb::Message> msgs);
  void OnTermOrRoleChange();
  void PublishStatus();
  // Raft ids of the members (the configuration the core and snapshots record).
  std::vector<uint64_t> Voters() const;

  kv::StateMachine* const sm_;
  const DataDir data_dir_;
  const RaftLoopOptions options_;
  const NodeId self_;
  const SnapshotStore snapshots_;

  // ---- Owned by the loop thread only ----
  std::unique_ptr<raft::wal::WalStorage> wal_;
  std::unique_ptr<raft::Raft> raft_;
  PendingRequests pending_;
  uint64_t next_read_id_ = 1;
  uint64_t last_term_ = 0;
  uint64_t last_lead_ = 0;
  // A snapshot install in flight (StartInstall .. FinishInstall): its thread, the committed
  // entries of the snapshot's Ready (applied once the store is in), and a newer MSG_SNAP that
  // arrived meanwhile (stepped once this one is done).
  bool installing_ = false;
  std::thread install_thread_;
  std::vector<raftpb::Entry> entries_after_install_;
  std::optional<raftpb::Message> held_snapshot_msg_;
  // A snapshot the backup cut beyond the core's applied index (see the SnapshotMadeEvent
  // case): offered, and the log compacted behind it, once this node applied through it.
  std::shared_ptr<SnapshotReport> deferred_snapshot_;
  // Leadership transfer: the requests waiting for it, the raft id of its target (0: none in
  // progress), the term this node led when it began (its proposals are spared when it steps
  // down: PendingRequests::OnLeadership), the writes held meanwhile, and when each peer was
  // last heard from (the target when none is named must be up).
  struct PendingTransfer {
    uint64_t target = 0;  // raft id of a named target (0: any other leader will do)
    absl::Time deadline;
    absl::Duration timeout;
    bool drain = false;
    TransferDone done;
  };
  std::vector<PendingTransfer> transfers_;
  uint64_t transfer_target_ = 0;
  uint64_t transfer_term_ = 0;
  absl::Time transfer_give_up_;
  std::vector<WriteEvent> held_writes_;
  std::map<uint64_t, absl::Time> last_heard_;
  absl::Time iteration_start_;

  std::unique_ptr<PeerChannels> channels_;
  std::unique_ptr<PeerTransport> transport_;
  std::unique_ptr<Forwarder> forwarder_;
  std::unique_ptr<SnapshotSender> snapshot_sender_;
  std::unique_ptr<BackupWorker> backup_;
  std::unique_ptr<ReaderPool> readers_;
  // Read barriers released in this iteration (their callbacks with the barrier's status),
  // handed to the reader pool together by SubmitReleasedReads.
  std::vector<ReaderPool::Task> released_reads_;
  // Forwarded writes waiting to be sent again (WriteEvent::not_before), oldest first.
  std::vector<WriteEvent> deferred_writes_;
  // Writes waiting for the backup to lag less (WriteEvent::lag_held), in arrival order: while
  // any wait, later writes wait behind them, so a connection's writes keep their order.
  std::vector<WriteEvent> lag_held_writes_;
  // When the first of lag_held_writes_ will have waited BackupLagWait().
  absl::Time lag_held_expiry_ = absl::InfiniteFuture();
  // RAFTKV_CRASH_AFTER_APPLYING_KEY (raft_loop.cc), if set: a test seam.
  const std::optional<std::string> crash_after_applying_key_;
  std::atomic<uint64_t> next_group_{1};

  // ---- Shared with other threads ----
  // Written by the loop thread (ApplyMembership); read by Members() on any thread.
  mutable absl::Mutex members_mu_;
  MemberTable members_ ABSL_GUARDED_BY(members_mu_);
  absl::Mutex mu_;
  std::vector<Event> inbox_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  mutable absl::Mutex status_mu_;
  NodeStatus status_ ABSL_GUARDED_BY(status_mu_);
  std::thread loop_thread_;
  // Writes accepted and not yet answered, this node's clients' and forwarded ones (bounded by
  // max_pending_writes; TakeWriteSlot).
  // Set once this node knows it was removed (applied its removal, or a peer said so).
  std::atomic<bool> removed_{false};
  std::atomic<size_t> outstanding_writes_{0};
  // Forward RPCs whose callback has not run yet; Stop() waits for them (they post here).
  std::atomic<size_t> forwards_in_flight_{0};
  // NodeStatus::forward_calls / forwarded_writes: Forward calls this node made, and the
  // writes they carried, since it started.
  std::atomic<uint64_t> forward_calls_{0};
  std::atomic<uint64_t> forwarded_writes_{0};
  // NodeStatus::forward_lanes / forward_lane_max_span (written under forward_mu_).
  std::atomic<uint64_t> forward_lanes_count_{0};
  std::atomic<uint64_t> forward_lane_max_span_{0};
  // NodeStatus::read_barriers_released / read_handoffs (SubmitReleasedReads).
  std::atomic<uint64_t> read_barriers_released_{0};
  std::atomic<uint64_t> read_handoffs_{0};
  // NodeStatus::db_size_bytes, refreshed on the reader pool at most once per tick.
  std::atomic<uint64_t> db_size_bytes_{0};
  std::atomic<bool> db_size_refreshing_{false};
  // NodeStatus::loop_max_iteration_us / loop_max_tick_gap_us: written by the loop thread.
  std::atomic<uint64_t> loop_max_iteration_us_{0};
  std::atomic<uint64_t> loop_max_tick_gap_us_{0};
  // This node's own client sessions for the writes it forwards without one (random ids per
  // start). The leader keeps session_window results per session, and forwards apply in any
  // order: a session whose in-flight sequences spanned more than the window would see the
  // window pass sequences still in flight, which would then be refused ("outcome unknown")
  // though never applied. So a sequence is taken only from a lane whose span from its
  // lowest unanswered sequence stays within the window, and a new lane opens when none has
  // room (ForwardWrite). Lanes are never dropped: an idle one expires in the store.
  // The span is also kept within --forward-lane-writes, which is smaller: every write of a
  // lane rewrites its session record, which holds a result per write of the span, so a lane
  // of 64 writes in flight cost each of them four times the record of one of 16.
  struct ForwardLane {
    uint64_t session_id = 0;
    uint64_t next = 1;
    std::set<uint64_t> unanswered;  // sent, not yet answered to their client
    uint64_t floor() const { return unanswered.empty() ? next : *unanswered.begin(); }
  };
  absl::Mutex forward_mu_;
  std::vector<ForwardLane> forward_lanes_ ABSL_GUARDED_BY(forward_mu_);
  // MemberTable::removed(), copied after every change of the table (SyncPeerLinks), for
  // IsRemovedMember on the peer service's threads.
  absl::Mutex removed_mu_;
  std::set<uint64_t> removed_ids_ ABSL_GUARDED_BY(removed_mu_);
};

}  // namespace raftkv::server
