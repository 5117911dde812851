// Configuration of one Raft node. Every limit has a default; Validate() checks them all.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"

namespace raftkv::raft {

struct Config {
  // This node's id, 1-based (0 means "none" in messages and hard state).
  uint64_t id = 0;
  // The bootstrap configuration: the voters of a new cluster. Ids are 1-based and distinct.
  // Once the storage holds a snapshot with a conf_state or an ENTRY_CONF entry, those decide
  // (membership.h) and this is ignored. A node joining an existing cluster is not among them.
  std::vector<uint64_t> peers;
  // A learner is promoted only when its match index is within this many entries of the
  // leader's last index (etcd's "learner not ready"), so a new voter does not make the
  // quorum wait for it to catch up.
  uint64_t max_promote_lag_entries = 1000;
  // A follower that hears nothing from a leader for a random number of ticks in
  // [election_tick, 2 * election_tick) starts an election. A CheckQuorum leader steps down if
  // it has not heard from a quorum for election_tick ticks.
  int election_tick = 10;
  // A leader sends heartbeats every heartbeat_tick ticks. Must be < election_tick.
  int heartbeat_tick = 1;
  // Upper bound on the entry bytes of one MsgApp (one entry is always allowed, so a single
  // larger entry still replicates).
  uint64_t max_msg_bytes = 1 << 20;
  // Upper bound on unacknowledged MsgApps per follower in the replicate state.
  size_t max_inflight_msgs = 256;
  // Upper bound on the entry bytes in one Ready's committed_entries (at least one entry).
  uint64_t max_apply_bytes = 64 << 20;
  // A leader refuses proposals (kResourceExhausted) while the data of its uncommitted
  // proposals exceeds this (one proposal is always accepted), so a leader cut off from its
  // followers does not grow its log without bound.
  uint64_t max_uncommitted_bytes = 64 << 20;
  // PreVote (Raft thesis §9.6): a node first asks whether it could win before bumping its
  // term, so a partitioned node rejoining does not depose a healthy leader.
  bool pre_vote = true;
  // CheckQuorum: a leader steps down without contact with a quorum for election_tick ticks,
  // and followers that heard from a leader within election_tick ignore vote requests.
  bool check_quorum = true;
  // Seed of the generator that randomizes election timeouts (mixed with id).
  uint64_t seed = 0;
  // What a node whose storage is empty (no hard state, no entries, no snapshot: a first start,
  // or a data dir that was lost) does; rejoin.cc has the rules and why they are safe.
  enum class EmptyStart {
    // Vote at once: the operator says this is the first start of a new cluster. Unsafe for a
    // node that lost its data (it may vote twice in a term, or help elect a leader that lacks
    // writes it had acknowledged).
    kNewCluster,
    // Ask the peers: if every peer answers and none holds a log, this is a new cluster (vote
    // at once); if any peer holds a log, rejoin as below.
    kAskPeers,
    // The cluster exists: neither vote nor count in a quorum until caught up with a leader
    // that a majority of intact voters elected.
    kRejoin,
  };
  EmptyStart empty_start = EmptyStart::kNewCluster;
  // Identifies this start of an empty storage (persisted in the hard state); must differ
  // from every earlier incarnation of this node id and should grow over time (kvd uses the
  // clock in nanoseconds). Used only when the storage is empty.
  uint64_t incarnation = 1;
  // On restart: the last index the state machine has applied (entries after it are handed
  // out again as committed entries).
  uint64_t applied = 0;
  // Run CheckInvariants() after every Step/Tick/Advance (aborts on a broken invariant). On by
  // default in debug builds; tests and the simulator turn it on in every build.
#ifdef NDEBUG
  bool check_invariants = false;
#else
  bool check_invariants = true;
#endif

  // kInvalidArgument naming the first bad field.
  absl::Status Validate() const;
};

}  // namespace raftkv::raft
