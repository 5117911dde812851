// Membership: the configuration of a cluster (raftpb::ConfState: voters and learners) and
// the ENTRY_CONF entries that change it (raftpb::ConfChange). Pure functions, shared by the
// core (raft.cc, raft_log.cc), both storages (storage.h: Compact keeps the configuration)
// and the simulator's checker.
//
// Rules (Raft thesis ch. 4, single-server changes):
//   - A configuration takes effect on a node as soon as its ENTRY_CONF entry is in the log,
//     committed or not, and reverts if the entry is truncated (§4.1). The configuration in
//     force is that of the newest ENTRY_CONF entry in the log, else the snapshot's conf_state,
//     else the bootstrap configuration (Config::peers).
//   - One change of the voter set at a time: a leader refuses a change while an earlier one
//     is uncommitted. Adding or removing one voter keeps any majority of the old set and any
//     majority of the new one intersecting, so two leaders cannot be elected in one term.
//   - Learners receive the log and snapshots but never count: not in commit, elections,
//     CheckQuorum or ReadIndex quorums.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "raft.pb.h"

namespace raftkv::raft {

// A configuration of `voters` and no learners (the bootstrap one, from Config::peers).
raftpb::ConfState ConfStateOf(const std::vector<uint64_t>& voters);
bool IsVoterIn(const raftpb::ConfState& cs, uint64_t id);
bool IsLearnerIn(const raftpb::ConfState& cs, uint64_t id);
bool IsMemberIn(const raftpb::ConfState& cs, uint64_t id);
// Voters and learners, sorted.
std::vector<uint64_t> MembersOf(const raftpb::ConfState& cs);
std::vector<uint64_t> VotersOf(const raftpb::ConfState& cs);

// `cs` with `change` applied (its type and node id; its conf_state is ignored).
// Errors: kAlreadyExists (adding a member), kNotFound (promoting or removing a non-member),
// kFailedPrecondition (promoting a voter, removing the last voter), kInvalidArgument (id 0).
// CONF_UPDATE of a member leaves `cs` as it is (only the context changes).
absl::StatusOr<raftpb::ConfState> ApplyConfChange(const raftpb::ConfState& cs,
                                                  const raftpb::ConfChange& change);

// The configuration an ENTRY_CONF entry establishes. kDataLoss if its data does not parse
// or carries no voter (a corrupt entry: the configuration would be unknowable).
absl::StatusOr<raftpb::ConfState> ConfStateOfEntry(const raftpb::Entry& e);

// "voters {1,2,3} learners {4}", for errors and logs.
std::string DescribeConfState(const raftpb::ConfState& cs);

}  // namespace raftkv::raft
