// NodeId: one member's identity at the server's seams, with its three spellings.
//
//   position        its 0-based place in node_config.json: --id, kvctl, logs ("node 2"),
//                   NodeStatus/PeerStatus ids
//   raft id         the Raft core's id (raftpb::Message from/to, Config peers, leader
//                   hints): position + 1, because the core uses 0 for "none"
//   etcd member id  the etcd API's member id: position + 1, because etcd uses 0 for "none"
//
// Every conversion between them is here; no other code adds or subtracts 1 to move between
// id spaces. The membership issue will make ids independent of positions: only this file and
// its callers' choice of spelling change then.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace raftkv::server {

class NodeId {
 public:
  static constexpr NodeId FromPosition(uint64_t position) { return NodeId(position); }
  // REQUIRES: raft_id != 0 (the core's "none").
  static constexpr NodeId FromRaftId(uint64_t raft_id) { return NodeId(raft_id - 1); }
  // REQUIRES: member_id != 0 (etcd's "none").
  static constexpr NodeId FromEtcdMemberId(uint64_t member_id) { return NodeId(member_id - 1); }
  // nullopt for the core's "none" (0): no leader known, no hint.
  static constexpr std::optional<NodeId> FromRaftIdOrNone(uint64_t raft_id) {
    if (raft_id == 0) return std::nullopt;
    return FromRaftId(raft_id);
  }

  constexpr uint64_t position() const { return position_; }
  constexpr uint64_t raft_id() const { return position_ + 1; }
  constexpr uint64_t etcd_member_id() const { return position_ + 1; }
  // "node <position>", as logs and error messages name a node.
  std::string ToString() const { return "node " + std::to_string(position_); }

  constexpr bool operator==(const NodeId& other) const { return position_ == other.position_; }

 private:
  constexpr explicit NodeId(uint64_t position) : position_(position) {}
  uint64_t position_;
};

}  // namespace raftkv::server
