// PendingRequests: the writes and reads the raft loop has taken and not yet answered, with
// their deadlines. No threads and no clock of its own: the loop passes `now` in, so tests
// drive it with a fake clock. Every callback is run exactly once, by one of the calls below,
// on the calling (loop) thread.
//
// The life of a request:
//   write proposed here        AddWrite -> OnApplied (answered: applied, or "not applied" if
//                              another leader's entry took the index) | Expire |
//                              OnLeadership (no longer leading its term) | a later AddWrite
//                              at its index | FailAll
//   write applied elsewhere    AddAppliedElsewhere (the leader answered a forwarded write)
//                              -> ReleaseApplied once this node applied it too | Expire |
//                              FailAll
//
// The answers (issue 10's two kinds): OK = applied; kUnavailable = not applied (provable: the
// index was applied with another term's entry), safe to retry; kDeadlineExceeded = outcome
// unknown (deadline passed, or leadership lost after proposing); other codes come from the
// state machine (kInvalidArgument) or FailAll's caller.
//   read barrier               AddReads (waiting for the read index) -> OnReadState (waiting
//                              for the local apply) -> ReleaseApplied | Expire |
//                              OnTermChange (an old term's read index may never come) | FailAll
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "kv/state_machine.h"
#include "server/peer/forwarder.h"
#include "server/service/replicator.h"

namespace raftkv::server {

class PendingRequests {
 public:
  // How a write of this node ends: applied at an index (ForwardResult), or an error.
  using WriteDone = absl::AnyInvocable<void(absl::StatusOr<ForwardResult>) &&>;
  using ReadDone = Replicator::ReadDone;

  // `timeout`: --request-timeout-ms, from when the loop took the request.
  explicit PendingRequests(absl::Duration timeout);

  // A write proposed at (index, term). Answered by OnApplied of that index. A write of an
  // earlier term still waiting at `index` is answered first: kDeadlineExceeded, outcome
  // unknown (see the .cc for why "not applied" is not provable there).
  void AddWrite(uint64_t index, uint64_t term, absl::Time now, WriteDone done);
  // The entry at `index` (of `term`) was applied with `result`: answers the write proposed
  // there, if any (an entry of another term means the proposal was never committed).
  void OnApplied(uint64_t index, uint64_t term, const absl::StatusOr<kv::ApplyResult>& result);

  // A write the leader applied at `index`: answered with `result` once this node's applied
  // index reaches `index` (so a read here right after sees it). `taken`: when this node took
  // the write from its client; it expires at taken + timeout (see Expire).
  void AddAppliedElsewhere(uint64_t index, kv::ApplyResult result, absl::Time taken,
                           Replicator::WriteDone done);

  // Read barriers sharing one ReadIndex request identified by `context`.
  void AddReads(std::string context, absl::Time now, std::vector<ReadDone> dones);
  // The core confirmed `context` at `index`: its reads wait for the local apply of `index`.
  // An unknown context (expired meanwhile) is ignored.
  void OnReadState(const std::string& context, uint64_t index);

  // Answers every read and forwarded write whose index is at most `applied`.
  void ReleaseApplied(uint64_t applied);
  // Fails what passed its deadline with kDeadlineExceeded: writes (outcome unknown), writes
  // applied elsewhere (applied on the leader, not yet here: the message says so) and reads.
  void Expire(absl::Time now);
  // The term changed: reads still waiting for a read index fail (retry at the new leader).
  void OnTermChange();
  // This node now leads `led_term` (0: it leads no term). Writes proposed in any other term
  // are answered at once with kDeadlineExceeded, outcome unknown: the entry may or may not
  // survive in the next leader's log. Called by the loop whenever the term or leader changed.
  // Except writes of `handed_over_term` (0: none), the term this node led when it handed
  // leadership over (RaftLoop::TransferLeadership): the target held every entry of it before
  // it campaigned, so they commit under the new leader; they wait for their apply here
  // (OnApplied: applied, or "not applied" if another entry took the index) or their deadline.
  void OnLeadership(uint64_t led_term, uint64_t handed_over_term = 0);
  // Fails everything with `status` (shutting down).
  void FailAll(const absl::Status& status) { FailAll(status, status); }
  // Fails the writes with `write_status` (proposed: outcome unknown) and the reads with
  // `read_status`.
  void FailAll(const absl::Status& write_status, const absl::Status& read_status);

  size_t writes() const { return writes_.size(); }
  size_t reads_waiting_index() const { return reads_.size(); }
  size_t reads_waiting_apply() const { return reads_waiting_apply_.size(); }
  size_t writes_waiting_apply() const { return writes_waiting_apply_.size(); }

 private:
  struct Write {
    uint64_t term = 0;  // the proposal's term: committed iff the entry has it
    absl::Time deadline;
    WriteDone done;
  };
  struct Reads {
    absl::Time deadline;
    std::vector<ReadDone> dones;
  };
  struct AppliedElsewhere {
    absl::Time deadline;
    kv::ApplyResult result;
    Replicator::WriteDone done;
  };

  absl::Status LeadershipLost(uint64_t index, uint64_t term) const;

  const absl::Duration timeout_;
  const std::string after_;  // " not answered within N ms (--request-timeout-ms)"
  std::map<uint64_t, Write> writes_;                  // by log index
  std::map<std::string, Reads> reads_;                // by ReadIndex context
  std::multimap<uint64_t, Reads> reads_waiting_apply_;  // by read index
  std::multimap<uint64_t, AppliedElsewhere> writes_waiting_apply_;  // by log index
};

}  // namespace raftkv::server
