#include "raft/quorum.h"

#include <algorithm>
#include <functional>
#include <limits>

#include "absl/container/inlined_vector.h"

namespace raftkv::raft::quorum {
namespace {

size_t Majority(size_t voters) { return voters / 2 + 1; }

}  // namespace

uint64_t CommittedIndex(absl::Span<const uint64_t> voters,
                        absl::FunctionRef<uint64_t(uint64_t id)> acked_index) {
  if (voters.empty()) return std::numeric_limits<uint64_t>::max();
  absl::InlinedVector<uint64_t, 7> acked;  // clusters have a handful of voters
  acked.reserve(voters.size());
  for (uint64_t id : voters) acked.push_back(acked_index(id));
  // Sorted high to low, the majority-th value is acknowledged by at least a majority (it and
  // everyone before it) and no higher value is.
  std::sort(acked.begin(), acked.end(), std::greater<uint64_t>());
  return acked[Majority(voters.size()) - 1];
}

VoteResult TallyVotes(absl::Span<const uint64_t> voters,
                      absl::FunctionRef<std::optional<bool>(uint64_t id)> vote) {
  if (voters.empty()) return VoteResult::kWon;
  size_t yes = 0, missing = 0;
  for (uint64_t id : voters) {
    const std::optional<bool> v = vote(id);
    if (!v) {
      ++missing;
    } else if (*v) {
      ++yes;
    }
  }
  const size_t majority = Majority(voters.size());
  if (yes >= majority) return VoteResult::kWon;
  // Lost once even every missing answer turning yes could not make a majority.
  if (yes + missing >= majority) return VoteResult::kPending;
  return VoteResult::kLost;
}

}  // namespace raftkv::raft::quorum
