// Raft: the consensus core as a deterministic state machine (etcd-raft's RawNode shape).
// No threads, clocks, sockets or files: time enters as Tick(), network input as Step(),
// client input as Propose()/ReadIndex(); everything the caller must do leaves as a Ready.
//
// CALLER CONTRACT (the raft loop, src/server; the simulator in tests/raft/sim):
//   loop {
//     Tick() every tick interval; Step() each message received; Propose()/ReadIndex().
//     if (HasReady()) {
//       Ready rd = GetReady();
//       0. send rd.messages_before_persist: they may leave at once, while step 1 runs
//          (or not at all, if the process dies first).
//       1. persist: storage.ApplySnapshot(rd.snapshot->metadata()) and install the state
//          machine from it (if set); storage.Append(rd.entries);
//          storage.SetHardState(*rd.hard_state) (if set); storage.Sync() if rd.must_sync.
//       2. send rd.messages, only once step 1 is durable: votes, vote answers and append
//          answers promise what step 1 wrote.
//       3. apply rd.committed_entries in order (after the snapshot, if any); serve
//          rd.read_states once the applied index reaches their index.
//       4. Advance(rd): tells the core that rd.entries are durable (the leader's own match
//          index advances here, and only here) and that rd.committed_entries are applied.
//     }
//   }
// GetReady() may not be called again before Advance() of the previous Ready; Tick/Step/
// Propose/ReadIndex may be called in between. Replication of proposals is emitted at the next
// GetReady(), so a caller that drains its queue of proposals first sends them batched.
//
// Outputs besides Ready: Propose() on a non-leader fails with kUnavailable carrying the
// leader's id as a status payload (LeaderHint()); lead() says the same. ReadIndex(ctx) is
// answered by a ReadState{ctx, index} in a later Ready of the node it was called on.
//
// Membership (membership.h has the rules): Config::peers is only the bootstrap configuration;
// afterwards the members live in the log. ProposeConfChange() appends an ENTRY_CONF entry on
// the leader; every node uses a configuration from the moment the entry is in its log and
// drops it if the entry is truncated. The caller:
//   5. applies committed ENTRY_CONF entries in order with the others, but not as commands:
//      their data is a raftpb::ConfChange (the core has already acted on them; the server
//      updates its member table and peer addresses from it). The configuration in force is
//      configuration() / Status().conf_state; SetSnapshot() fills a snapshot's conf_state;
//   6. restarts a node with the same bootstrap Config::peers (or any: the storage's snapshot
//      conf_state and log override it). A node joining an existing cluster starts with empty
//      storage, Config::empty_start = kNewCluster (a fresh id promised nothing) and peers that
//      need not include itself: it campaigns for nothing until a leader's log makes it a
//      voter;
//   7. stops a node once its removal is committed. (A node that holds its removal stops
//      campaigning once it knows the entry committed -- until then the others may need it to
//      lead, thesis §4.2.2; PreVote and CheckQuorum keep one that missed it from disrupting.)
// Leadership transfer: TransferLeadership(to) on the leader; proposals are refused until the
// transfer ends (the target won, or an election timeout passed: the old leader serves again).
//
// Snapshots: the caller reports each state-machine snapshot with SetSnapshot() (metadata +
// opaque handle) and then may compact its LogStorage up to that index. A follower that needs
// compacted entries gets MSG_SNAP carrying that Snapshot; the transport streams the data and
// reports the outcome with ReportSnapshot(). A follower receiving MSG_SNAP returns it in
// Ready::snapshot (its conflicting log is discarded; install it before applying entries).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "raft.pb.h"
#include "raft/config.h"
#include "raft/membership.h"
#include "raft/progress.h"
#include "raft/quorum.h"
#include "raft/raft_log.h"
#include "raft/read_index.h"
#include "raft/storage.h"

namespace raftkv::raft {

enum class Role { kFollower, kPreCandidate, kCandidate, kLeader };
const char* RoleName(Role r);

// A confirmed read index: once the local state machine has applied `index`, a read for the
// request identified by `context` is linearizable.
struct ReadState {
  std::string context;
  uint64_t index = 0;
};

struct Ready {
  // Set when term, vote or commit changed: persist before sending messages.
  std::optional<raftpb::HardState> hard_state;
  // Entries to append to storage (they may replace a stale suffix) before sending messages.
  std::vector<raftpb::Entry> entries;
  // A snapshot received from the leader: install before applying committed_entries.
  std::optional<raftpb::Snapshot> snapshot;
  // Entries known committed, to apply in order after persisting.
  std::vector<raftpb::Entry> committed_entries;
  // Messages that may be sent before (or while) this Ready is persisted: exactly a leader's
  // MSG_APP, MSG_HEARTBEAT and MSG_SNAP of its current term. Sending them early is safe
  // because they promise nothing about the leader's own disk: the leader counts itself in a
  // commit quorum only for entries reported durable by Advance (Raft thesis §10.2.1), and
  // followers answer only after persisting what they received.
  std::vector<raftpb::Message> messages_before_persist;
  // Every other message (votes, vote answers, append and heartbeat answers, read-index
  // traffic, a stepped-down leader's leftovers): send only after step 1 of the contract is
  // durable, since each may promise what this Ready persists.
  std::vector<raftpb::Message> messages;
  // Confirmed reads (for ReadIndex calls made on this node).
  std::vector<ReadState> read_states;
  // Whether step 1 needs an fsync (entries or a changed term/vote were written).
  bool must_sync = false;
};

struct ProgressStatus {
  uint64_t id = 0;
  uint64_t match = 0;
  uint64_t next = 0;
  const char* state = "";
  bool recent_active = false;
  size_t inflight = 0;
  bool learner = false;  // a learner of the configuration in force (never counted)
};

struct RaftStatus {
  uint64_t id = 0;
  Role role = Role::kFollower;
  uint64_t term = 0;
  uint64_t vote = 0;
  uint64_t lead = 0;  // 0 = unknown
  uint64_t commit = 0;
  uint64_t applied = 0;
  uint64_t last_index = 0;
  std::vector<ProgressStatus> progress;  // leader only: one per peer, self included
  // A node that started with empty storage and is not (yet) a voter: what it waits for.
  raftpb::VoterState voter_state = raftpb::VOTER;
  uint64_t incarnation = 0;
  std::string rejoin_detail;  // "" for a voter
  // The configuration in force (the newest ENTRY_CONF in this node's log, maybe uncommitted)
  // and the index of its entry (0: from the snapshot or the bootstrap Config::peers).
  raftpb::ConfState conf_state;
  uint64_t conf_index = 0;
  uint64_t lead_transferee = 0;  // leader: the target of a transfer in progress, else 0
};

// Where a proposal landed: it is committed iff the entry at `index` has `term` when applied.
struct EntryId {
  uint64_t index = 0;
  uint64_t term = 0;
};

// The type URL of the payload a kUnavailable "not leader" status carries: the decimal id of
// the leader this node knows of (absent when it knows none).
inline constexpr char kLeaderHintPayload[] = "raftkv/leader_hint";
// The leader hint of a Propose/ReadIndex error, if any.
std::optional<uint64_t> LeaderHint(const absl::Status& status);
// The type URL of the payload a kUnavailable "not leader" status carries when no leader is
// known and this node itself is why it cannot serve (it lost its data and does not vote yet:
// rejoin.cc): what it waits for, one sentence (RaftStatus::rejoin_detail).
inline constexpr char kRejoinDetailPayload[] = "raftkv/rejoin_detail";
// That sentence, if the status carries it.
std::optional<std::string> RejoinDetailOf(const absl::Status& status);
// The type URL of the payload (empty) a kFailedPrecondition of ProposeConfChange carries when
// the refusal is transient and the same change may succeed in a moment: an earlier change not
// committed yet, a new leader that has not committed an entry of its term, a learner not
// heard from since this leader was elected.
inline constexpr char kRetryShortlyPayload[] = "raftkv/retry_shortly";

class Raft {
 public:
  // `storage` holds what was persisted before (hard state, snapshot, entries) and must
  // outlive the node; the node only reads it. Errors: kInvalidArgument from Config::Validate.
  static absl::StatusOr<std::unique_ptr<Raft>> Create(const Config& config,
                                                      const LogStorage* storage);

  // Advances logical time by one tick (elections, heartbeats, CheckQuorum).
  void Tick();
  // Processes a message from a peer (or a local one: MSG_SNAP_STATUS, MSG_UNREACHABLE).
  // Messages from stale terms and unknown peers are ignored; never fails.
  void Step(const raftpb::Message& m);
  // Appends `data` as a new entry if this node is the leader.
  // Errors: kUnavailable "not leader" carrying the leader hint (see LeaderHint());
  // kResourceExhausted when uncommitted proposals exceed config.max_uncommitted_bytes.
  absl::StatusOr<EntryId> Propose(std::string data);
  // Proposes a membership change (its type and node_id; the core fills conf_state) on the
  // leader; it is in force on this node at once (the returned entry is appended), on others
  // as they append it. Errors (nothing was appended):
  //   kUnavailable: not leader (with the hint), or a leadership transfer is in progress;
  //   kFailedPrecondition: an earlier change is not committed yet (one at a time), or this
  //     leader has not yet committed an entry of its own term (both: retry shortly); or a
  //     promotion of a learner that has acknowledged nothing yet, or more than
  //     config.max_promote_lag_entries behind the leader's last index (the message says how
  //     far behind); or a promotion/removal after which
  //     fewer than a majority of the voters would be up with their data (heard from in the
  //     last one to two election timeouts, not recovering a lost disk);
  //   kAlreadyExists / kNotFound / kInvalidArgument from ApplyConfChange (membership.h).
  // A leader that removes itself keeps leading until the entry commits, then steps down.
  absl::StatusOr<EntryId> ProposeConfChange(raftpb::ConfChange change);
  // Leadership transfer (Raft thesis §3.10): stops accepting proposals, brings `to` up to
  // date and sends it MSG_TIMEOUT_NOW; it campaigns at once (no PreVote, and voters answer
  // despite CheckQuorum's lease). The transfer ends when this node stops leading, or aborts
  // after election_tick ticks. `to` = 0 picks the voter with the highest match. A second call
  // replaces the target. Errors: kUnavailable not leader; kFailedPrecondition when `to` is
  // not a voter of the configuration in force, is this node, or lost its data (recovering),
  // or (to = 0) no other voter exists.
  absl::Status TransferLeadership(uint64_t to);

  // Requests a linearizable read index for `context` (an id unique among pending reads). The
  // answer arrives as a ReadState in a later Ready, possibly never (leader change, lost
  // message): callers time out. Reads are batched: one heartbeat round confirms every read
  // that was waiting for it. Works on a follower (forwarded to the leader).
  // Errors: kUnavailable when no leader is known (with the hint payload absent).
  absl::Status ReadIndex(std::string context);

  bool HasReady() const;
  // REQUIRES: no Ready outstanding (Advance called on the previous one).
  Ready GetReady();
  // REQUIRES: `rd` is the outstanding Ready, fully persisted and applied.
  void Advance(const Ready& rd);

  // The state machine holds a snapshot at snap.metadata().index() (<= applied). It becomes
  // the snapshot sent to followers that need compacted entries; afterwards the caller may
  // compact its storage up to that index. Call it again after a restart: without it, a
  // needed MSG_SNAP carries the storage's snapshot metadata and an empty handle.
  // A follower that installed a received snapshot uses that one until told otherwise.
  void SetSnapshot(const raftpb::Snapshot& snap);
  // While paused, Ready carries no committed entries (and HasReady() ignores them); all else
  // goes on: entries are appended and acknowledged, the commit index advances and is
  // persisted, heartbeats and votes are answered, reads are confirmed. For a caller whose
  // state machine cannot apply for a while: kvd's raft loop pauses while it installs a
  // received snapshot off the loop (the Ready carrying the snapshot was advanced, so the
  // core counts it applied; what commits after it is handed out, in order, once resumed).
  // Any time, between or during Readies; takes effect at the next HasReady()/GetReady().
  void PauseApply(bool paused) { apply_paused_ = paused; }
  bool apply_paused() const { return apply_paused_; }
  // The transport finished (ok) or failed (!ok) to stream a snapshot to `id`.
  void ReportSnapshot(uint64_t id, bool ok);
  // The transport could not reach `id`: stop pipelining to it until it answers.
  void ReportUnreachable(uint64_t id);

  RaftStatus Status() const;
  uint64_t id() const { return config_.id; }
  Role role() const { return role_; }
  uint64_t term() const { return term_; }
  uint64_t lead() const { return lead_; }
  uint64_t vote() const { return vote_; }
  const RaftLog& log() const { return log_; }
  // The configuration in force (see the contract above).
  const raftpb::ConfState& configuration() const { return log_.conf(); }

  // Aborts if a local invariant is broken: term, commit and applied never decrease; the vote
  // of a term never changes; applied <= commit <= last index; a leader leads its own term and
  // moves commit only onto an entry of its own term (Figure 8).
  // Runs after every Step/Tick/Advance when config.check_invariants is set.
  void CheckInvariants();

 private:
  Raft(const Config& config, const LogStorage* storage);

  // ---- A node without its data: probes, recovery, the leader's bookkeeping (rejoin.cc) ----
  // Sets voter_state_/incarnation_ from the hard state, or by the empty-start rule.
  void InitVoterState(const raftpb::HardState& hs);
  bool IsVoter() const { return voter_state_ == raftpb::VOTER; }
  // Whether entries and commit indexes from a leader may be taken: not while UNDECIDED, and
  // not before the RECOVERING state is durable (else a crash could leave entries that look
  // like a voter's log).
  bool AcceptsLog() const;
  // Non-voter: resends probes / the recovery read every few ticks.
  void TickRejoin();
  void SendProbes();
  void SendRecoveryRead();
  // Any node: answers a MSG_STATE_PROBE with its voter state, term and last index.
  void AnswerProbe(const raftpb::Message& m);
  void HandleProbeAnswer(const raftpb::Message& m);
  // Handles the answer to the recovery read; false if `m` is an ordinary read answer.
  bool HandleRecoveryReadAnswer(const raftpb::Message& m);
  void BecomeRecovering();
  // After hearing the terms of enough peers: never vote in a term <= floor (see rejoin.cc).
  void SetTermFloor(uint64_t floor);
  void MaybeFinishRecovery();
  std::string RejoinContext(const char* what) const;
  // Leader: notes the sender's voter state; false when `m` comes from an earlier
  // incarnation of that node (a message from before it lost its data): drop it.
  bool TrackVoterState(const raftpb::Message& m, Progress& pr);
  std::string RejoinDetail() const;

  // ---- Roles and elections (raft.cc) ----
  void BecomeFollower(uint64_t term, uint64_t lead);
  void BecomePreCandidate();
  void BecomeCandidate();
  void BecomeLeader();
  void Reset(uint64_t term);
  // `transfer`: answering MSG_TIMEOUT_NOW (skips PreVote, flags the vote requests).
  void Campaign(bool pre_vote, bool transfer = false);
  bool Promotable() const;
  // The voters of the configuration in force (the only nodes that count anywhere).
  std::vector<uint64_t> Voters() const { return VotersOf(log_.conf()); }
  bool SelfIsVoter() const { return IsVoterIn(log_.conf(), config_.id); }
  // Who a leader replicates to: the members of the configuration in force, those of the
  // committed one (a removed node keeps receiving until its removal commits, so it learns it
  // is removed and stops campaigning), and itself.
  std::vector<uint64_t> Tracked() const;
  // After anything that may have changed the log or the commit index: the leader tracks
  // Tracked() (new members get a Progress, others lose theirs), a transfer to a node that
  // is no longer a voter aborts, and a smaller voter set may commit more.
  void MaybeApplyConf();
  // A leader removed by a committed ENTRY_CONF steps down (Raft thesis §4.2.2).
  void MaybeStepDownRemoved();
  void SendTimeoutNow(uint64_t to);
  void AbortTransfer() { lead_transferee_ = 0; transfer_elapsed_ = 0; }
  void ResetRandomizedElectionTimeout();
  // Counts a vote; returns how the election stands among the voters.
  quorum::VoteResult Poll(uint64_t id, bool granted);

  // ---- Message handling: every role, candidates, followers (raft.cc) ----
  void StepInner(const raftpb::Message& m);
  void StepCandidate(const raftpb::Message& m);
  void StepFollower(const raftpb::Message& m);
  void HandleAppendEntries(const raftpb::Message& m);
  void HandleHeartbeat(const raftpb::Message& m);
  void HandleSnapshot(const raftpb::Message& m);
  void HandleVoteRequest(const raftpb::Message& m);
  // Queues `m` for the next Ready, stamped with our id (and our term unless it has one).
  void Send(raftpb::Message m);

  // ---- Replication (leader.cc) ----
  void AppendEntry(raftpb::Entry e);
  // Sends the next MsgApp (or MSG_SNAP) to `to` unless paused; with !send_if_empty only when
  // there are entries to send. Returns whether a message was sent.
  bool MaybeSendAppend(uint64_t to, bool send_if_empty);
  void BroadcastAppend();
  void BroadcastHeartbeat();
  void SendHeartbeat(uint64_t to);
  void StepLeader(const raftpb::Message& m);
  void HandleAppendResponse(const raftpb::Message& m, Progress& pr);
  void HandleHeartbeatResponse(const raftpb::Message& m, Progress& pr);
  // Commit rule (Raft §5.4.2): the highest index a quorum has persisted, if its entry is of
  // the current term. Returns whether commit advanced.
  bool MaybeCommit();
  // CheckQuorum: whether a quorum of voters was heard from in this election timeout.
  bool QuorumActive() const;
  // Whether the leader's own say is a quorum (a single-voter cluster).
  bool LeaderAloneIsQuorum() const;
  bool CommittedInCurrentTerm() const;

  // ---- ReadIndex (leader.cc; the bookkeeping is ReadIndexTracker) ----
  // A read request from `from` (this node or a follower) reached the leader.
  void LeaderReadIndex(std::string context, uint64_t from);
  // A confirmed read: a ReadState if it is ours, else MSG_READ_INDEX_RESP to the follower.
  void AnswerRead(const ReadIndexTracker::Read& r);
  // After a commit: admits the reads that waited for the first commit of this term.
  void ReleaseReadsWaitingForCommit();

  // ---- The caller's side (ready.cc) ----
  // Whether `m` goes into Ready::messages_before_persist (the rule is documented there).
  bool MayLeaveBeforePersist(const raftpb::Message& m) const;
  raftpb::HardState CurrentHardState() const;

  const Config config_;
  const LogStorage* storage_;
  RaftLog log_;
  std::mt19937_64 rng_;

  // Persistent state (Figure 2), persisted by the caller via Ready::hard_state.
  uint64_t term_ = 0;
  uint64_t vote_ = 0;
  raftpb::VoterState voter_state_ = raftpb::VOTER;
  uint64_t incarnation_ = 0;

  // A node that is not a voter (rejoin.cc).
  bool voter_state_durable_ = true;  // RECOVERING: persisted (AcceptsLog)
  struct ProbeAnswer {
    raftpb::VoterState state = raftpb::VOTER;
    uint64_t term = 0;
    uint64_t last_index = 0;
  };
  std::map<uint64_t, ProbeAnswer> probe_answers_;  // peer -> its answer, this incarnation
  int rejoin_elapsed_ = 0;                          // ticks since the last probe/read sent
  bool term_floor_set_ = false;                     // heard from enough voters
  std::optional<uint64_t> recovery_index_;          // the leader's confirmed commit index

  Role role_ = Role::kFollower;
  uint64_t lead_ = 0;
  int election_elapsed_ = 0;   // ticks since the last election reset / leader contact
  int heartbeat_elapsed_ = 0;  // leader: ticks since the last heartbeat broadcast
  int randomized_election_timeout_ = 0;
  std::map<uint64_t, bool> votes_;  // candidate: id -> granted (this election)
  std::map<uint64_t, Progress> progress_;  // leader: every peer, self included

  // Leader: reads waiting for their heartbeat round or for this term's first commit.
  // Emptied by every role change (Reset).
  ReadIndexTracker reads_;

  std::optional<raftpb::Snapshot> snapshot_;  // latest snapshot to send (SetSnapshot)

  uint64_t seen_conf_version_ = 0;  // log_.conf_version() that progress_ reflects
  uint64_t seen_commit_ = 0;        // ... and the commit index it reflects
  // Leader: the target of a leadership transfer (0: none) and ticks since it began.
  uint64_t lead_transferee_ = 0;
  int transfer_elapsed_ = 0;

  // Output accumulated for the next Ready.
  std::vector<raftpb::Message> msgs_;
  std::vector<ReadState> read_states_;
  raftpb::HardState prev_hard_state_;  // last hard state handed out in a Ready
  bool ready_outstanding_ = false;
  bool broadcast_pending_ = false;  // proposals appended since the last GetReady
  // Leader: data bytes proposed in this term and not yet handed out as committed (an
  // estimate: reduced by the committed entries of each Ready, never below 0).
  uint64_t uncommitted_bytes_ = 0;

  // For CheckInvariants (invariants.cc): the values it saw last time.
  Role inv_role_ = Role::kFollower;
  uint64_t inv_term_ = 0;
  uint64_t inv_vote_ = 0;
  uint64_t inv_commit_ = 0;
  uint64_t inv_applied_ = 0;
  bool apply_paused_ = false;  // PauseApply(): the caller takes no committed entries now
};

}  // namespace raftkv::raft
