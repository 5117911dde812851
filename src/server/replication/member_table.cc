#include "server/replication/member_table.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "base/file_util.h"
#include "raft/membership.h"

namespace raftkv::server {

MemberTable MemberTable::Bootstrap(const std::vector<NodeAddress>& cluster) {
  MemberTable t;
  for (size_t i = 0; i < cluster.size(); ++i) t.Set(i + 1, MemberEntry{cluster[i], false});
  return t;
}

absl::StatusOr<std::optional<MemberTable>> MemberTable::Load(const std::string& path) {
  if (!std::filesystem::exists(path)) return std::optional<MemberTable>();
  absl::StatusOr<std::string> data = base::ReadFileToString(path);
  absl::StatusOr<MemberTable> t =
      data.ok() ? Parse(*data) : absl::StatusOr<MemberTable>(data.status());
  if (!t.ok()) {
    return absl::DataLossError(
        absl::StrCat("member table ", path, " is unreadable or corrupt: ", t.status().message()));
  }
  return std::optional<MemberTable>(*std::move(t));
}

absl::StatusOr<MemberTable> MemberTable::Parse(const std::string& data) {
  memberpb::MemberTableFile file;
  if (!file.ParseFromString(data)) return absl::DataLossError("not a member table");
  MemberTable t;
  t.index_ = file.index();
  t.max_id_ = file.max_id();
  t.removed_.insert(file.removed().begin(), file.removed().end());
  for (const memberpb::Member& m : file.members()) {
    t.Set(m.id(), MemberEntry{AddressOf(m.info()), m.learner()});
  }
  return t;
}

absl::Status MemberTable::Save(const std::string& path) const {
  return base::WriteFileDurably(path, Serialize());
}

std::string MemberTable::Serialize() const {
  memberpb::MemberTableFile file;
  file.set_index(index_);
  file.set_max_id(max_id_);
  for (uint64_t id : removed_) file.add_removed(id);
  for (const auto& [id, m] : members_) {
    memberpb::Member* out = file.add_members();
    out->set_id(id);
    *out->mutable_info() = InfoOf(m.address);
    out->set_learner(m.learner);
  }
  return file.SerializeAsString();
}

absl::StatusOr<bool> MemberTable::Apply(const raftpb::Entry& e) {
  if (e.index() <= index_) return false;
  raftpb::ConfChange cc;
  if (!cc.ParseFromString(e.data())) {
    return absl::DataLossError(absl::StrCat("entry ", e.index(), ": unparseable ConfChange"));
  }
  memberpb::MemberInfo info;
  if (!cc.context().empty() && !info.ParseFromString(cc.context())) {
    return absl::DataLossError(absl::StrCat("entry ", e.index(), ": unparseable member context"));
  }
  const uint64_t id = cc.node_id();
  max_id_ = std::max(max_id_, id);
  switch (cc.type()) {
    case raftpb::CONF_ADD_LEARNER:
      members_[id].address = AddressOf(info);
      break;
    case raftpb::CONF_UPDATE:
    case raftpb::CONF_PROMOTE:
      if (!cc.context().empty()) {
        const uint16_t known_port = members_[id].address.port;
        members_[id].address = AddressOf(info);
        if (info.port() == 0) members_[id].address.port = known_port;
      }
      break;
    case raftpb::CONF_REMOVE:
      members_.erase(id);
      removed_.insert(id);
      break;
    default:
      break;
  }
  for (auto& [mid, m] : members_) m.learner = raft::IsLearnerIn(cc.conf_state(), mid);
  index_ = e.index();
  return true;
}

const MemberEntry* MemberTable::Find(uint64_t raft_id) const {
  auto it = members_.find(raft_id);
  return it == members_.end() ? nullptr : &it->second;
}

std::vector<uint64_t> MemberTable::Voters() const {
  std::vector<uint64_t> v;
  for (const auto& [id, m] : members_) {
    if (!m.learner) v.push_back(id);
  }
  return v;
}

std::map<uint64_t, std::string> MemberTable::PeerAddresses(uint64_t self) const {
  std::map<uint64_t, std::string> out;
  for (const auto& [id, m] : members_) {
    if (id != self) out[id] = m.address.grpc_address();
  }
  return out;
}

std::string MemberTable::Json() const {
  std::string out = "[";
  bool first = true;
  for (const auto& [id, m] : members_) {
    absl::StrAppend(&out, first ? "" : ",", "{\"id\":", id, ",\"ip\":\"", m.address.ip,
                    "\",\"port\":", m.address.port, ",\"grpc_port\":", m.address.grpc_port,
                    ",\"learner\":", m.learner ? "true" : "false", "}");
    first = false;
  }
  return out + "]";
}

memberpb::MemberInfo MemberTable::InfoOf(const NodeAddress& a) {
  memberpb::MemberInfo info;
  info.set_ip(a.ip);
  info.set_port(a.port);
  info.set_grpc_port(a.grpc_port);
  return info;
}

NodeAddress MemberTable::AddressOf(const memberpb::MemberInfo& info) {
  NodeAddress a;
  a.ip = info.ip();
  a.port = static_cast<uint16_t>(info.port());
  a.grpc_port = static_cast<uint16_t>(info.grpc_port());
  return a;
}

bool MemberTable::AdoptIfNewer(MemberTable theirs, uint64_t self) {
  if (theirs.index() <= index_) return false;
  theirs.removed_.insert(removed_.begin(), removed_.end());
  if (theirs.Find(self) == nullptr) {
    // Ours came from --join, after theirs was taken: the members added since (ids above
    // every id theirs has seen) are members still, until the log says otherwise.
    for (const auto& [id, m] : members_) {
      if (id == self || (id > theirs.max_id_ && !theirs.removed_.count(id))) {
        theirs.members_.emplace(id, m);
      }
    }
  }
  theirs.max_id_ = std::max(theirs.max_id_, max_id_);
  *this = std::move(theirs);
  return true;
}

}  // namespace raftkv::server
