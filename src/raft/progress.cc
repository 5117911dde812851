#include "raft/progress.h"

#include <algorithm>

namespace raftkv::raft {

const char* Progress::StateName(State s) {
  switch (s) {
    case State::kProbe:
      return "probe";
    case State::kReplicate:
      return "replicate";
    case State::kSnapshot:
      return "snapshot";
  }
  return "?";
}

bool Progress::IsPaused() const {
  switch (state_) {
    case State::kProbe:
      return probe_sent_;
    case State::kReplicate:
      return inflights_.size() >= max_inflight_;
    case State::kSnapshot:
      return true;
  }
  return true;
}

void Progress::BecomeProbe() {
  // After a snapshot, the follower holds at least the snapshot (if it was installed).
  if (state_ == State::kSnapshot) {
    next_ = std::max(match_ + 1, pending_snapshot_ + 1);
  } else {
    next_ = match_ + 1;
  }
  state_ = State::kProbe;
  probe_sent_ = false;
  pending_snapshot_ = 0;
  inflights_.clear();
}

void Progress::BecomeReplicate() {
  state_ = State::kReplicate;
  next_ = match_ + 1;
  probe_sent_ = false;
  pending_snapshot_ = 0;
  inflights_.clear();
}

void Progress::BecomeSnapshot(uint64_t snapshot_index) {
  state_ = State::kSnapshot;
  pending_snapshot_ = snapshot_index;
  probe_sent_ = false;
  inflights_.clear();
}

bool Progress::MaybeUpdate(uint64_t index) {
  bool updated = false;
  if (match_ < index) {
    match_ = index;
    updated = true;
    probe_sent_ = false;
  }
  next_ = std::max(next_, index + 1);
  // Acknowledged messages leave the window.
  while (!inflights_.empty() && inflights_.front() <= index) inflights_.pop_front();
  return updated;
}

bool Progress::MaybeDecrTo(uint64_t rejected, uint64_t match_hint) {
  if (state_ == State::kReplicate) {
    // A rejection at or below match is stale (duplicated or reordered).
    if (rejected <= match_) return false;
    next_ = match_ + 1;
    return true;
  }
  // In probe only the answer to the probe outstanding (preceding index next-1) counts.
  if (next_ - 1 != rejected) return false;
  next_ = std::max(std::min(rejected, match_hint + 1), match_ + 1);
  probe_sent_ = false;
  return true;
}

void Progress::SentEntries(uint64_t last_index) {
  if (state_ == State::kReplicate) {
    next_ = last_index + 1;
    inflights_.push_back(last_index);
  } else if (state_ == State::kProbe) {
    probe_sent_ = true;
  }
}

void Progress::ResetAfterDataLoss(uint64_t follower_last_index) {
  match_ = 0;
  state_ = State::kProbe;
  next_ = follower_last_index + 1;
  probe_sent_ = false;
  pending_snapshot_ = 0;
  inflights_.clear();
}

void Progress::OnHeartbeatResponse() {
  probe_sent_ = false;
  // Lost MsgApps would otherwise keep a full window closed forever.
  if (state_ == State::kReplicate && inflights_.size() >= max_inflight_) {
    inflights_.pop_front();
  }
}

}  // namespace raftkv::raft
