// MemberTable: who the members are and where they are reached (raft id -> addresses, learner
// or voter). The Raft core knows only ids (raftpb::ConfState); every ENTRY_CONF entry carries
// the member's addresses in ConfChange.context (memberpb::MemberInfo), and applying it updates
// this table, which the peer channels follow (RaftLoop::ApplyMembership).
//
// Where the table lives (so that it survives log compaction):
//   - <data-dir>/members, written durably (temporary file, fsync, rename) by the raft loop
//     when it applies an ENTRY_CONF entry, before the state machine records that entry as
//     applied, with the index it reflects. A restart loads it and skips the ENTRY_CONF entries
//     at or below that index (replayed entries after it bring it up to date).
//   - node_config.json bootstraps it when the data dir has none: member at position p gets
//     raft id p + 1, a voter (server/node_id.h), as before membership changes existed.
//   - A node that joins (kvd --join) fetches it from a member (Cluster.MemberList).
//   - Raft snapshots carry the leader's table (SnapshotMetadata.context): a node that
//     installs one adopts it when it is newer than its own, since it never applies the
//     ENTRY_CONF entries the snapshot covers (RaftLoop::AdoptSnapshotMembers).
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "membership.pb.h"
#include "raft.pb.h"
#include "server/node_address.h"

namespace raftkv::server {

struct MemberEntry {
  NodeAddress address;
  bool learner = false;
};

class MemberTable {
 public:
  MemberTable() = default;
  // node_config.json's members: ids position + 1, all voters.
  static MemberTable Bootstrap(const std::vector<NodeAddress>& cluster);
  // nullopt when `path` does not exist. Errors: kDataLoss naming the file.
  static absl::StatusOr<std::optional<MemberTable>> Load(const std::string& path);
  // Durably (see above). Errors: kInternal naming the path.
  absl::Status Save(const std::string& path) const;
  // The table as bytes (memberpb::MemberTableFile), as Save writes it and as snapshots carry
  // it (SnapshotMetadata.context); Parse reads them back. Errors: kDataLoss.
  std::string Serialize() const;
  static absl::StatusOr<MemberTable> Parse(const std::string& data);

  // Applies a committed ENTRY_CONF entry at `index`: an add or update sets the member's
  // addresses from the context (an update keeps the known client port when the context has
  // none), a removal drops it, and every member's learner flag follows the entry's
  // configuration. Returns false (nothing changed) for an entry at or below index().
  // Errors: kDataLoss when the entry's data or context does not parse.
  absl::StatusOr<bool> Apply(const raftpb::Entry& e);

  // A Raft snapshot's table (`theirs`, from SnapshotMetadata.context) replaces this one if
  // it reflects a later index; returns whether it did. It may still lack `self`: a joining
  // node (its table came from --join, at index 0) can get a snapshot from before the entry
  // that added it, which it then applies from the log. So `self`'s own entry is kept, and
  // adopting a table never removes this node (only applying its removal does); so are the
  // members added after theirs was taken (ids above its max_id_seen), which the join's
  // table knew. The removed ids are the union of both.
  bool AdoptIfNewer(MemberTable theirs, uint64_t self);

  uint64_t index() const { return index_; }
  // The highest raft id that was ever a member here (ids are never reused).
  uint64_t max_id_seen() const { return max_id_; }
  const std::map<uint64_t, MemberEntry>& members() const { return members_; }
  // Ids whose removal this table applied (or took from a snapshot's table). A node that
  // joined does not know the removals before its join until it applies or adopts them.
  const std::set<uint64_t>& removed() const { return removed_; }
  const MemberEntry* Find(uint64_t raft_id) const;
  void Set(uint64_t raft_id, MemberEntry m) {
    members_[raft_id] = std::move(m);
    max_id_ = std::max(max_id_, raft_id);
  }
  // Raft ids of the voters, sorted.
  std::vector<uint64_t> Voters() const;
  // peer id -> "ip:grpc_port", without `self`.
  std::map<uint64_t, std::string> PeerAddresses(uint64_t self) const;
  // The JSON stored in SQLite snapshots' meta "members":
  // [{"id":1,"ip":"...","port":P,"grpc_port":G,"learner":false},...].
  std::string Json() const;

  static memberpb::MemberInfo InfoOf(const NodeAddress& a);
  static NodeAddress AddressOf(const memberpb::MemberInfo& info);

 private:
  uint64_t index_ = 0;
  uint64_t max_id_ = 0;
  std::map<uint64_t, MemberEntry> members_;
  std::set<uint64_t> removed_;
};

}  // namespace raftkv::server
