#include "raft/membership.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace raftkv::raft {
namespace {

bool Contains(const google::protobuf::RepeatedField<uint64_t>& ids, uint64_t id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

void Erase(google::protobuf::RepeatedField<uint64_t>* ids, uint64_t id) {
  ids->erase(std::remove(ids->begin(), ids->end(), id), ids->end());
}

void Sort(google::protobuf::RepeatedField<uint64_t>* ids) { std::sort(ids->begin(), ids->end()); }

}  // namespace

raftpb::ConfState ConfStateOf(const std::vector<uint64_t>& voters) {
  raftpb::ConfState cs;
  for (uint64_t id : voters) cs.add_voters(id);
  Sort(cs.mutable_voters());
  return cs;
}

bool IsVoterIn(const raftpb::ConfState& cs, uint64_t id) { return Contains(cs.voters(), id); }
bool IsLearnerIn(const raftpb::ConfState& cs, uint64_t id) {
  return Contains(cs.learners(), id);
}
bool IsMemberIn(const raftpb::ConfState& cs, uint64_t id) {
  return IsVoterIn(cs, id) || IsLearnerIn(cs, id);
}

std::vector<uint64_t> VotersOf(const raftpb::ConfState& cs) {
  return std::vector<uint64_t>(cs.voters().begin(), cs.voters().end());
}

std::vector<uint64_t> MembersOf(const raftpb::ConfState& cs) {
  std::vector<uint64_t> ids(cs.voters().begin(), cs.voters().end());
  ids.insert(ids.end(), cs.learners().begin(), cs.learners().end());
  std::sort(ids.begin(), ids.end());
  return ids;
}

absl::StatusOr<raftpb::ConfState> ApplyConfChange(const raftpb::ConfState& cs,
                                                  const raftpb::ConfChange& change) {
  const uint64_t id = change.node_id();
  if (id == 0) return absl::InvalidArgumentError("membership: node id 0");
  raftpb::ConfState next = cs;
  switch (change.type()) {
    case raftpb::CONF_ADD_LEARNER:
      if (IsMemberIn(cs, id)) {
        return absl::AlreadyExistsError(absl::StrCat("node ", id, " is already a member (",
                                                     DescribeConfState(cs), ")"));
      }
      next.add_learners(id);
      Sort(next.mutable_learners());
      return next;
    case raftpb::CONF_PROMOTE:
      if (IsVoterIn(cs, id)) {
        return absl::FailedPreconditionError(absl::StrCat("node ", id, " is already a voter"));
      }
      if (!IsLearnerIn(cs, id)) {
        return absl::NotFoundError(absl::StrCat("node ", id, " is not a learner (",
                                                DescribeConfState(cs), ")"));
      }
      Erase(next.mutable_learners(), id);
      next.add_voters(id);
      Sort(next.mutable_voters());
      return next;
    case raftpb::CONF_REMOVE:
      if (!IsMemberIn(cs, id)) {
        return absl::NotFoundError(absl::StrCat("node ", id, " is not a member (",
                                                DescribeConfState(cs), ")"));
      }
      if (IsVoterIn(cs, id) && cs.voters_size() == 1) {
        return absl::FailedPreconditionError(
            absl::StrCat("node ", id, " is the last voter: a cluster needs one"));
      }
      Erase(next.mutable_voters(), id);
      Erase(next.mutable_learners(), id);
      return next;
    case raftpb::CONF_UPDATE:
      if (!IsMemberIn(cs, id)) {
        return absl::NotFoundError(absl::StrCat("node ", id, " is not a member (",
                                                DescribeConfState(cs), ")"));
      }
      return next;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("membership: unknown change type ", change.type()));
  }
}

absl::StatusOr<raftpb::ConfState> ConfStateOfEntry(const raftpb::Entry& e) {
  raftpb::ConfChange cc;
  if (e.type() != raftpb::ENTRY_CONF || !cc.ParseFromString(e.data()) ||
      cc.conf_state().voters_size() == 0) {
    return absl::DataLossError(
        absl::StrCat("entry ", e.index(), " is not a valid configuration change"));
  }
  return cc.conf_state();
}

std::string DescribeConfState(const raftpb::ConfState& cs) {
  std::string s = absl::StrCat("voters {", absl::StrJoin(cs.voters(), ","), "}");
  if (cs.learners_size() > 0) absl::StrAppend(&s, " learners {", absl::StrJoin(cs.learners(), ","), "}");
  return s;
}

}  // namespace raftkv::raft
