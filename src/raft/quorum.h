// Majority quorums of a voter set (etcd's quorum.MajorityConfig): every decision the core
// takes by counting nodes goes through these two pure functions, so a change of membership
// only has to change which voter set is passed in.
//
// A voter set is a list of distinct node ids (Config::peers today). Nodes outside it never
// count, whatever the caller reports for them. A majority of n voters is n / 2 + 1.
//
// Membership changes: a joint configuration (Raft thesis §4.3) is two voter sets, and a
// decision needs a majority of each. Its committed index is the smaller of the two
// CommittedIndex results; its vote is kWon when both sets say kWon, kLost when either says
// kLost, kPending otherwise. That is why the empty set commits everything and wins every vote:
// a joint configuration with an empty half behaves like the other half alone. A single-server
// change needs nothing new: the next voter set is passed in.
#pragma once

#include <cstdint>
#include <optional>

#include "absl/functional/function_ref.h"
#include "absl/types/span.h"

namespace raftkv::raft::quorum {

// The highest index that a majority of `voters` has acknowledged, where `acked_index(id)` is
// what voter `id` has acknowledged (0: nothing known). Uses: the leader's commit index from
// match indexes (itself counted only for what it has persisted), and the highest ReadIndex
// heartbeat round a majority has echoed. An empty `voters` gives UINT64_MAX (see above).
uint64_t CommittedIndex(absl::Span<const uint64_t> voters,
                        absl::FunctionRef<uint64_t(uint64_t id)> acked_index);

enum class VoteResult {
  kPending,  // neither outcome is certain yet: some voters have not answered
  kLost,     // a majority can no longer say yes
  kWon,      // a majority said yes
};

// How a vote among `voters` stands, where `vote(id)` is voter `id`'s answer (nullopt: none
// yet). Uses: elections and pre-elections (granted votes), CheckQuorum (a voter "says yes"
// when the leader heard from it recently). An empty `voters` gives kWon (see above).
VoteResult TallyVotes(absl::Span<const uint64_t> voters,
                      absl::FunctionRef<std::optional<bool>(uint64_t id)> vote);

}  // namespace raftkv::raft::quorum
