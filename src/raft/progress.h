// Progress: the leader's view of one follower's log (etcd's tracker.Progress).
//
// States:
//   kProbe:     we do not know where the follower's log matches ours; send one MsgApp at a
//               time (probe_sent pauses until a response or heartbeat response arrives).
//   kReplicate: the follower is keeping up; MsgApps are pipelined optimistically
//               (next advances on send), at most max_inflight_msgs unacknowledged.
//   kSnapshot:  the follower needs entries we compacted; a snapshot is being streamed to it,
//               nothing else is sent until ReportSnapshot or an ack past the snapshot.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>

namespace raftkv::raft {

class Progress {
 public:
  enum class State { kProbe, kReplicate, kSnapshot };

  Progress(uint64_t next, size_t max_inflight) : next_(next), max_inflight_(max_inflight) {}

  uint64_t match() const { return match_; }
  uint64_t next() const { return next_; }
  State state() const { return state_; }
  uint64_t pending_snapshot() const { return pending_snapshot_; }
  bool recent_active() const { return recent_active_; }
  // Heard from in this CheckQuorum round or the one before it: within the last one to two
  // election timeouts. What the membership check counts: right after a round clears the
  // marks, before any answer came back, every voter would look down.
  bool active_lately() const { return recent_active_ || active_last_round_; }
  // A new CheckQuorum round: this round's mark becomes the last round's, and is cleared.
  void StartActivityRound() {
    active_last_round_ = recent_active_;
    recent_active_ = false;
  }
  // Whether the follower's acknowledgements count (commit, reads, CheckQuorum): false while
  // its latest incarnation says it is not a voter (it lost its data and is catching up).
  bool counts() const { return counts_; }
  void set_counts(bool v) { counts_ = v; }
  // The follower's latest incarnation seen in this term (messages from earlier ones are
  // dropped: they come from before a data loss).
  uint64_t incarnation() const { return incarnation_; }
  void set_incarnation(uint64_t v) { incarnation_ = v; }
  void set_recent_active(bool v) { recent_active_ = v; }
  size_t inflight() const { return inflights_.size(); }
  static const char* StateName(State s);

  // Whether the leader must not send MsgApp now (see the state comment above).
  bool IsPaused() const;

  void BecomeProbe();
  void BecomeReplicate();
  void BecomeSnapshot(uint64_t snapshot_index);
  // Streaming the snapshot failed: probe again from match.
  void SnapshotFailed() {
    pending_snapshot_ = 0;
    BecomeProbe();
  }

  // The follower acknowledged entries up to `index`. Returns whether match advanced.
  bool MaybeUpdate(uint64_t index);
  // The follower rejected a MsgApp whose preceding index was `rejected`; `match_hint` is the
  // highest index where our logs may agree. Returns false for a stale rejection.
  bool MaybeDecrTo(uint64_t rejected, uint64_t match_hint);

  // A MsgApp was sent whose last entry is `last_index` (count > 0 entries).
  void SentEntries(uint64_t last_index);
  // A probe (MsgApp or snapshot-less append) was sent: wait for an answer.
  void PauseProbe() { probe_sent_ = true; }
  // A heartbeat response arrived: the follower is alive; let one more message go.
  void OnHeartbeatResponse();
  // The follower lost entries it had acknowledged (its data dir was wiped or its log
  // truncated by an operator): forget its match and probe again from its last index.
  // Lowering match is always safe: commit only ever counts matches.
  void ResetAfterDataLoss(uint64_t follower_last_index);

 private:
  uint64_t match_ = 0;  // highest index known replicated on the follower
  uint64_t next_;       // index of the next entry to send
  State state_ = State::kProbe;
  bool probe_sent_ = false;
  uint64_t pending_snapshot_ = 0;  // index of the snapshot being sent (kSnapshot only)
  bool recent_active_ = false;     // heard from since the last CheckQuorum round
  bool active_last_round_ = false; // heard from in the round before that
  bool counts_ = true;
  uint64_t incarnation_ = 0;
  std::deque<uint64_t> inflights_;  // last index of each unacknowledged MsgApp (kReplicate)
  size_t max_inflight_;
};

}  // namespace raftkv::raft
