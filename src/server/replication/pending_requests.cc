#include "server/replication/pending_requests.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace raftkv::server {

PendingRequests::PendingRequests(absl::Duration timeout)
    : timeout_(timeout),
      after_(absl::StrCat(" not answered within ", absl::ToInt64Milliseconds(timeout),
                          " ms (--request-timeout-ms)")) {}

absl::Status PendingRequests::LeadershipLost(uint64_t index, uint64_t term) const {
  return absl::DeadlineExceededError(absl::StrFormat(
      "leadership changed after the write was proposed (index %d, term %d); outcome unknown: "
      "it may still commit",
      index, term));
}

void PendingRequests::AddWrite(uint64_t index, uint64_t term, absl::Time now, WriteDone done) {
  auto it = writes_.find(index);
  if (it != writes_.end()) {
    // A proposal of an earlier term is still waiting here: this node lost leadership, its
    // entry was truncated and it leads again. "Not applied" is not provable yet: another
    // node may still hold the old entry and, in a cluster of five or more, win a later
    // election with it and commit it (its voters need only not have seen a newer term's
    // entry). Only the apply of this index would tell (OnApplied); we answer now, honestly.
    Write old = std::move(it->second);
    writes_.erase(it);
    std::move(old.done)(LeadershipLost(index, old.term));
  }
  writes_.emplace(index, Write{term, now + timeout_, std::move(done)});
}

void PendingRequests::OnLeadership(uint64_t led_term, uint64_t handed_over_term) {
  for (auto it = writes_.begin(); it != writes_.end();) {
    if (it->second.term == led_term ||
        (handed_over_term != 0 && it->second.term == handed_over_term)) {
      ++it;
      continue;
    }
    // Proposed under a leadership this node no longer holds: the next leader may or may
    // not have the entry, so the outcome is unknown until that index applies here, which
    // can take long (or never, on a partitioned node): answer at once.
    WriteDone done = std::move(it->second.done);
    const uint64_t index = it->first, term = it->second.term;
    it = writes_.erase(it);
    std::move(done)(LeadershipLost(index, term));
  }
}

void PendingRequests::OnApplied(uint64_t index, uint64_t term,
                                const absl::StatusOr<kv::ApplyResult>& result) {
  auto it = writes_.find(index);
  if (it == writes_.end()) return;
  Write w = std::move(it->second);
  writes_.erase(it);
  if (w.term != term) {
    // Another leader's entry took this index: our proposal was never committed.
    std::move(w.done)(absl::UnavailableError(
        "leadership changed before the write committed; it was not applied"));
    return;
  }
  if (!result.ok()) {
    std::move(w.done)(result.status());
  } else {
    std::move(w.done)(ForwardResult{index, *result});
  }
}

void PendingRequests::AddAppliedElsewhere(uint64_t index, kv::ApplyResult result,
                                          absl::Time taken, Replicator::WriteDone done) {
  writes_waiting_apply_.emplace(
      index, AppliedElsewhere{taken + timeout_, std::move(result), std::move(done)});
}

void PendingRequests::AddReads(std::string context, absl::Time now,
                               std::vector<ReadDone> dones) {
  reads_[std::move(context)] = Reads{now + timeout_, std::move(dones)};
}

void PendingRequests::OnReadState(const std::string& context, uint64_t index) {
  auto it = reads_.find(context);
  if (it == reads_.end()) return;  // expired meanwhile
  reads_waiting_apply_.emplace(index, std::move(it->second));
  reads_.erase(it);
}

void PendingRequests::ReleaseApplied(uint64_t applied) {
  while (!reads_waiting_apply_.empty() && reads_waiting_apply_.begin()->first <= applied) {
    for (ReadDone& d : reads_waiting_apply_.begin()->second.dones) {
      std::move(d)(absl::OkStatus());
    }
    reads_waiting_apply_.erase(reads_waiting_apply_.begin());
  }
  while (!writes_waiting_apply_.empty() && writes_waiting_apply_.begin()->first <= applied) {
    AppliedElsewhere& a = writes_waiting_apply_.begin()->second;
    std::move(a.done)(std::move(a.result));
    writes_waiting_apply_.erase(writes_waiting_apply_.begin());
  }
}

namespace {

// Fails and removes every entry of `reads` whose deadline is not after `now`.
template <typename Map>
void ExpireReads(Map* reads, absl::Time now, const absl::Status& status) {
  for (auto it = reads->begin(); it != reads->end();) {
    if (it->second.deadline > now) {
      ++it;
      continue;
    }
    for (auto& d : it->second.dones) std::move(d)(status);
    it = reads->erase(it);
  }
}

}  // namespace

void PendingRequests::Expire(absl::Time now) {
  for (auto it = writes_.begin(); it != writes_.end();) {
    if (it->second.deadline > now) {
      ++it;
      continue;
    }
    std::move(it->second.done)(
        absl::DeadlineExceededError(absl::StrCat("write", after_, "; outcome unknown")));
    it = writes_.erase(it);
  }
  for (auto it = writes_waiting_apply_.begin(); it != writes_waiting_apply_.end();) {
    if (it->second.deadline > now) {
      ++it;
      continue;
    }
    // Committed and applied on the leader, so it is not "not applied"; but this node has not
    // applied it, so a read here may not show it yet, which is what a follower's OK
    // promises. The "outcome unknown" kind, with what is known in the message.
    std::move(it->second.done)(absl::DeadlineExceededError(absl::StrFormat(
        "write applied on the leader at index %d (revision %d) but not yet on this node: "
        "not answered within %d ms (--request-timeout-ms); outcome unknown here",
        it->first, it->second.result.revision, absl::ToInt64Milliseconds(timeout_))));
    it = writes_waiting_apply_.erase(it);
  }
  const absl::Status read_late = absl::DeadlineExceededError(absl::StrCat("read", after_));
  ExpireReads(&reads_, now, read_late);
  ExpireReads(&reads_waiting_apply_, now, read_late);
}

void PendingRequests::OnTermChange() {
  for (auto& [context, reads] : reads_) {
    for (ReadDone& d : reads.dones) {
      std::move(d)(absl::UnavailableError("leader changed while confirming the read; retry"));
    }
  }
  reads_.clear();
}

void PendingRequests::FailAll(const absl::Status& write_status,
                              const absl::Status& read_status) {
  for (auto& [index, w] : writes_) std::move(w.done)(write_status);
  writes_.clear();
  for (auto& [context, reads] : reads_) {
    for (ReadDone& d : reads.dones) std::move(d)(read_status);
  }
  reads_.clear();
  for (auto& [index, reads] : reads_waiting_apply_) {
    for (ReadDone& d : reads.dones) std::move(d)(read_status);
  }
  reads_waiting_apply_.clear();
  // Applied by the leader (committed): that is the answer.
  for (auto& [index, a] : writes_waiting_apply_) std::move(a.done)(std::move(a.result));
  writes_waiting_apply_.clear();
}

}  // namespace raftkv::server
