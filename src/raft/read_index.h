// ReadIndexTracker: the leader's bookkeeping for linearizable reads (ReadIndex, Raft thesis
// §6.4; etcd's readOnly). The core owns one and acts on what it decides.
//
// A read admitted at the leader's commit index C may be served once the state machine has
// applied C, provided that
//   (1) the leader had committed an entry of its own term when it took C, so C covers every
//       entry any earlier leader committed (until then reads wait: WaitForCommit), and
//   (2) a quorum of voters acknowledged a heartbeat round the leader started after the read
//       arrived, so no newer leader had been elected by then.
//
// Rounds batch reads: at most one round is in flight. A read admitted while one is in flight
// waits for the next round (the heartbeats already sent may predate it), which starts as soon
// as the current one is confirmed. Round numbers travel in heartbeat contexts as 8
// little-endian bytes and increase for the life of the node, so an echo of a round from an
// earlier leadership never confirms a later one.
//
// The tracker only decides. The core broadcasts heartbeats carrying RoundContext() when a
// round starts, and answers each released read (a ReadState for its own reads, a
// MSG_READ_INDEX_RESP to a follower).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/types/span.h"

namespace raftkv::raft {

class ReadIndexTracker {
 public:
  struct Read {
    std::string context;  // the requester's id for the read
    uint64_t from = 0;    // the requesting node: the leader itself or a follower
    uint64_t index = 0;   // the leader's commit index when the read was admitted
  };

  // A read arrived before the leader committed an entry of its term (condition 1). It is
  // kept, in arrival order, until TakeWaitingForCommit.
  void WaitForCommit(std::string context, uint64_t from);
  bool HasWaitingForCommit() const { return !waiting_for_commit_.empty(); }
  // Returns and forgets the reads waiting for commit, in arrival order; the caller admits
  // them once the leader has committed an entry of its term.
  std::vector<Read> TakeWaitingForCommit();

  // Admits `read`, whose index is the leader's commit index (condition 1 holds). It waits for
  // the round after the one in flight, if any. Returns true when that round starts now: the
  // caller must then broadcast heartbeats carrying RoundContext().
  [[nodiscard]] bool Admit(Read read);

  // The context heartbeats carry: the round in flight, or "" when none is.
  std::string RoundContext() const;

  struct AckResult {
    std::vector<Read> released;  // confirmed by this acknowledgement, in arrival order
    bool start_round = false;    // a round started for reads still pending: broadcast it
  };
  // Voter `from` echoed the heartbeat context `context` (anything not naming a round started
  // by this node is ignored). A round is confirmed once a quorum of `voters` has echoed it or
  // a later one; `self`, the leader, counts for every round it started.
  AckResult OnHeartbeatAck(absl::Span<const uint64_t> voters, uint64_t self, uint64_t from,
                           const std::string& context);

  // Leadership ended or began: admitted and waiting reads are dropped (their callers time
  // out) and acknowledgements forgotten; no round is in flight afterwards.
  void Reset();

 private:
  struct Pending {
    Read read;
    uint64_t round = 0;  // the round whose confirmation releases it
  };

  uint64_t round_ = 0;            // highest round started (never decreases)
  uint64_t confirmed_round_ = 0;  // highest round confirmed by a quorum (or abandoned)
  std::map<uint64_t, uint64_t> acks_;  // voter -> highest round it echoed, this leadership
  std::vector<Pending> pending_;        // admitted, in arrival order
  std::vector<Read> waiting_for_commit_;  // in arrival order
};

}  // namespace raftkv::raft
