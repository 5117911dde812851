// The "propose and wait" seam between the client front ends and consensus.
//
// Front ends never write to the state machine themselves: every write goes through
// Replicator::Write, and every linearizable read waits for Replicator::ReadBarrier before it
// reads the local state machine. Implementation: RaftLoop (the raft loop, any cluster
// size); tests use doubles (tests/server/fakes.h, tests/server/local_replicator.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kv.pb.h"
#include "kv/state_machine.h"

namespace raftkv::server {

struct PeerStatus {
  uint64_t id = 0;               // NodeId position: raft id - 1 (server/node_id.h)
  std::string address;           // ip:client_port
  std::string grpc_address;      // ip:grpc_port
  std::string role;              // "leader", "follower", "candidate", "pre-candidate", "unknown"
  uint64_t term = 0;
  uint64_t commit_index = 0;
  uint64_t applied_index = 0;
  bool learner = false;          // receives the log, does not vote (yet)
  uint32_t client_port = 0;      // the port of `address`; 0: not known
};

// A membership change (etcd's MemberAdd/Promote/Remove/Update, kvctl member ...).
struct MembershipChange {
  enum class Kind { kAddLearner, kPromote, kRemove, kUpdate };
  Kind kind = Kind::kAddLearner;
  uint64_t raft_id = 0;          // kAddLearner: 0 = pick the next free id
  // kAddLearner, kUpdate: where the member is reached (port 0: the client port is not known).
  std::string ip;
  uint32_t port = 0;
  uint32_t grpc_port = 0;
};

struct NodeStatus {
  uint64_t id = 0;
  std::string role;
  uint64_t term = 0;
  int64_t leader_id = -1;        // -1 = unknown
  uint64_t commit_index = 0;
  uint64_t applied_index = 0;
  int64_t revision = 0;
  uint64_t cluster_id = 0;
  uint64_t db_size_bytes = 0;
  // The raft loop since this node started: its longest iteration (the work between two waits
  // for input: stepping, persisting, sending, applying) and the longest gap between two ticks
  // (--tick-ms when healthy). Either near the election timeout means the loop, not the
  // network, is what delays heartbeats and elections.
  uint64_t loop_max_iteration_us = 0;
  uint64_t loop_max_tick_gap_us = 0;
  // Forward calls this node made to a leader since it started, and the writes they carried
  // (a follower sends the writes of one loop iteration in one call).
  uint64_t forward_calls = 0;
  uint64_t forwarded_writes = 0;
  // The sessions (lanes) this node forwards writes under, and the most writes one of them
  // had in flight (from its lowest unanswered one), at most --forward-lane-writes.
  uint64_t forward_lanes = 0;
  uint64_t forward_lane_max_span = 0;
  // Read barriers this node released to its reader pool since it started, and the hand-offs
  // that carried them (the barriers one loop iteration releases go together). A barrier is
  // not a client read: the reads of one pipeline on the client port share one.
  uint64_t read_barriers_released = 0;
  uint64_t read_handoffs = 0;
  // The SQLite backup (server/snapshots/backup_worker.h): its durable applied index, and since
  // this node started, the entries it evaluated itself (queued by command: at start-up, those
  // the state machine had applied before it; otherwise it is handed their effects) and the
  // rows it wrote (fewer than the entries' writes: a round writes each changed row once).
  uint64_t backup_applied_index = 0;
  uint64_t backup_evaluated_entries = 0;
  uint64_t backup_rows_written = 0;
  // Writes waiting now for the backup to lag less than --max-backup-lag-entries.
  uint64_t backup_waiting_writes = 0;
  // The state machine's record cache (kv::StateMachine::record_cache_stats).
  uint64_t record_cache_hits = 0;
  uint64_t record_cache_misses = 0;
  uint64_t record_cache_bytes = 0;
  // Conditions an operator must act on, one sentence each (etcd Maintenance.Status `errors`;
  // kvctl status shows them). Empty when all is well.
  std::vector<std::string> alarms;
};

class Replicator {
 public:
  using WriteDone = absl::AnyInvocable<void(absl::StatusOr<kv::ApplyResult>) &&>;
  using ReadDone = absl::AnyInvocable<void(absl::Status) &&>;
  // The position of the node that leads after a leadership transfer.
  using TransferDone = absl::AnyInvocable<void(absl::StatusOr<uint64_t>) &&>;

  virtual ~Replicator() = default;

  // Replicates `cmd`, applies it, then calls `done` exactly once with the apply result.
  // `done` may run on an internal thread: it must not block (post work elsewhere).
  // Errors: kUnavailable (no leader; shutting down), kDeadlineExceeded (outcome unknown),
  // kResourceExhausted (too many pending writes), kInvalidArgument (malformed command).
  virtual void Write(kvpb::Command cmd, WriteDone done) = 0;

  // Several writes of one client, replicated and applied in this order (consecutive entries
  // where this node proposes them; one Forward from a follower); dones[i] answers cmds[i],
  // each exactly once. A write that fails is not applied, or its outcome is unknown, as for
  // Write; one that is applied is applied after every earlier write of the batch that is.
  // The default calls Write in order, which keeps the order only for an implementation that
  // applies concurrent writes in call order (the test doubles do).
  // REQUIRES: cmds.size() == dones.size().
  virtual void WriteBatch(std::vector<kvpb::Command> cmds, std::vector<WriteDone> dones) {
    for (size_t i = 0; i < cmds.size(); ++i) Write(std::move(cmds[i]), std::move(dones[i]));
  }

  // Calls `done` with OK once the local state machine reflects every write acknowledged
  // (by any node) before this call, so a read made after it is linearizable.
  // Errors as for Write.
  virtual void ReadBarrier(ReadDone done) = 0;

  virtual NodeStatus Status() const = 0;
  // Every member as configured, with what this node knows of it.
  virtual std::vector<PeerStatus> Members() const = 0;

  // Leadership transfer (etcd Maintenance.MoveLeader, kvctl transfer-leader): hands this
  // node's leadership to the member at position `to` (nullopt: the most up-to-date follower)
  // and calls `done` once it is over, within `timeout_ms`, with the new leader's position.
  // `done` may run on an internal thread. Errors: kUnavailable (this node does not lead: the
  // message names the leader), kNotFound / kFailedPrecondition (`to` is no member, not a
  // voter, or this node), kDeadlineExceeded (not done in time; the old leader serves again
  // once the core gives up, after an election timeout), kAborted (another node won).
  // Doubles that do not replicate answer kUnimplemented.
  virtual void TransferLeadership(std::optional<uint64_t> /*to*/, uint64_t /*timeout_ms*/,
                                  TransferDone done) {
    std::move(done)(absl::UnimplementedError("leadership transfer is not supported here"));
  }

  // Proposes `change` (on the leader only) and calls `done` once it is applied here, with the
  // member's raft id. Errors: kUnavailable (not the leader: the message names it; a transfer
  // in progress; a transient refusal, surely not made: another change is not committed yet,
  // a new leader has not committed an entry of its term, a learner not heard from yet),
  // kFailedPrecondition (a learner too far behind to promote, saying how far; the change
  // would leave too few voters up),
  // kAlreadyExists (the id or address is a member), kNotFound (no such member),
  // kInvalidArgument, kDeadlineExceeded (outcome unknown).
  using ChangeDone = absl::AnyInvocable<void(absl::StatusOr<uint64_t>) &&>;
  virtual void ChangeMembership(MembershipChange change, ChangeDone done) {
    std::move(done)(absl::UnimplementedError("membership changes are not supported here"));
  }
};

}  // namespace raftkv::server
