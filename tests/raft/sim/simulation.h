// A seeded, randomized simulation of a Raft cluster in one process (deterministic: the seed
// alone decides every event, so a failing seed replays exactly).
//
// Each simulated tick: the fault configuration may change (message drops, duplicates,
// delays/reordering, partitions: symmetric, one-way, bridge, leader isolated); nodes may
// crash (losing whatever was not fsynced, sometimes in the middle of a Ready after a leader
// sent its messages_before_persist) and restart, some with their whole disk lost (they
// restart empty, as kvd does by default: asking their peers; never more than a minority of
// nodes without their data at once); clients propose writes and linearizable
// reads on random nodes; every node ticks; due messages are delivered in random order. Each
// Ready is handled in kvd's order (raft.h): messages_before_persist, persist (the fsync may
// finish later), messages, apply, Advance.
//
// Also (issue 16; see SimOptions): 2 to 6 nodes, per-node clocks with stalls, snapshot
// streams that take ticks and can break, crashes that keep a prefix of the unsynced writes,
// nodes on the real WalStorage, and clients that retry writes whose outcome is unknown.
//
// Checked after every step (each message, tick, proposal, Advance): election safety (one
// leader per term), leader completeness, commit safety (what is under any node's commit index
// agrees with what was committed there); log matching every 10 ticks; state machine safety
// (same entry applied at each index everywhere, each proposal at most once unless a client
// retried it, in order); linearizable reads by index (a read confirmed at index R comes after
// every write acknowledged before the read started) and by value (the state machine applies
// "key=value" writes; a read returns the newest write to its key acknowledged before it
// started, or a later one), plus the core's own CheckInvariants(). After the faults heal: a
// leader known to all within a bounded number of ticks, and a new write commits and is applied
// everywhere.
//
// With SimOptions::membership, the cluster also changes while it runs: learners are added
// (new nodes that start empty and join), promoted and removed, voters removed, leadership
// transferred, all under the same partitions and crashes; removed nodes are shut down some
// time after their removal commits. Extra check: every commit is backed by acknowledgements
// (MSG_APP_RESP actually delivered, the leader's own persisted log) of a majority of the
// voters of the configuration in force on the leader at that moment, which the checker
// derives itself from the leader's log (the newest ENTRY_CONF entry, else the snapshot's).
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace raftkv::raft::sim {

struct SimOptions {
  uint64_t seed = 1;
  int nodes = 0;          // 0: 3 or 5, chosen by the seed
  int chaos_ticks = 300;  // ticks with faults
  // After healing: ticks allowed for a leader to emerge and a write to reach every node.
  int liveness_ticks = 200;
  bool verbose = false;   // print events to stderr
  bool membership = false;  // membership changes and leadership transfers as faults
  // Nodes store their log in the real WalStorage over an in-memory file system that knows
  // what a power cut keeps (tests/raft/wal/crash_env.h); a crash reopens the WAL (its
  // recovery: torn tail, segments, markers). Default: MemoryStorage.
  bool wal = false;
  // Faults added by issue 16 (each on by default; off replays the older fault model):
  // per-node clocks: every node ticks at its own rate (0.6x to 1.5x, redrawn with the faults)
  // and sometimes stalls for a few ticks, instead of all nodes ticking in lockstep;
  bool drift = true;
  // a snapshot takes 1 to 8 ticks to stream and fails (reported to the leader) if the
  // receiver crashes, the link is cut or the stream breaks meanwhile, instead of arriving
  // with its MSG_SNAP;
  bool slow_snapshots = true;
  // a crash keeps a random prefix of the records written since the last sync (a torn
  // write), not just what was synced (with `wal`: a random prefix of the unsynced bytes,
  // so the last record may be torn). Synced data always survives.
  bool torn_crashes = true;
  // Commit safety: entries under any node's commit index are checked against what was
  // committed there, at every step (before anything applies them). Off only to show that
  // the older checks still fire on their own (sim_test.cc).
  bool check_commits = true;
  // Deliberate caller bugs, to show the checks catch them (tests of the simulator itself).
  enum class Bug {
    kNone,
    kNoFsync,        // never fsync: a crash loses acknowledged entries and votes
    kForgetVotes,    // never persist the hard state: a restarted node may vote twice
    kReadTooEarly,   // serve reads at half the confirmed read index
    kLostDiskVotes,  // a node that lost its disk restarts as a voter at once (no rejoin)
    // One per safety check, so each is shown to fire with its own message:
    kAcceptAnyPrev,      // the network rewrites the previous-entry term of AppendEntries
                         // beyond the leader's commit to the receiver's own: the consistency
                         // check passes, logs diverge below the appended entries (log
                         // matching)
    kVoteIgnoresLog,     // the network rewrites vote requests to claim the longest log: a
                         // candidate missing committed entries can win (leader completeness)
    kApplyBeforeCommit,  // apply entries once persisted, before they commit (state machine
                         // safety)
    // Membership (with `membership`): the network turns a learner's append acknowledgement
    // into one from a voter that did not send it, so the leader counts a learner toward
    // commit (no commit without a quorum of the configuration in force).
    kLearnerAckCounted,
    // Drift: a leader serves reads from its own state while it holds a lease: a majority
    // heard from it within election_tick of its own ticks (and CheckQuorum is on). Safe
    // only while clocks run at the same rate: a faster follower times out early, a new
    // leader commits writes, the old one still answers from its lease.
    kLeaseRead,
    // Torn crashes: the raft loop writes the hard state before the entries of a Ready
    // (both before one sync): a crash that keeps a prefix can leave a commit index or a
    // vote that the log on disk does not back.
    kHardStateFirst,
    // Reads by value: a read is answered from the state machine as soon as its read index is
    // confirmed, before the node applied up to it (the index is right, the value stale).
    kServeBeforeApplied,
    // Reads by value: the client library takes a write as acknowledged when the entry at its
    // index is applied, whatever its term (a write a new leader overwrote looks done).
    kAckByIndexOnly,
  };
  Bug bug = Bug::kNone;
};

struct SimStats {
  uint64_t ticks = 0;
  uint64_t messages_delivered = 0;
  uint64_t writes_acked = 0;
  uint64_t reads_served = 0;
  uint64_t leaders_elected = 0;
  uint64_t crashes = 0;
  uint64_t disks_lost = 0;
  uint64_t snapshots_installed = 0;
  uint64_t commit_index = 0;
  uint64_t conf_changes = 0;  // membership changes the leader accepted
  uint64_t transfers = 0;     // leadership transfers started
  // Leaders deposed (or crashed) within the tick that elected them: only checks after every
  // step see them (AfterChange in simulation.cc).
  uint64_t brief_leaders = 0;
  uint64_t torn_crashes = 0;       // crashes that kept part of what was not synced
  uint64_t snapshot_streams_broken = 0;
  uint64_t stalls = 0;             // clock stalls (drift)
  uint64_t retries = 0;            // writes a client proposed again (outcome unknown)
  uint64_t applied_twice = 0;      // retried writes that were applied twice
};

// Runs one seed. Returns OK, or kInternal describing the first violated property.
absl::Status RunSimulation(const SimOptions& options, SimStats* stats = nullptr);

}  // namespace raftkv::raft::sim
