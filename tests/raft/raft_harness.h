// A hand-driven cluster of Raft cores for readable scenario tests: every node has a
// MemoryStorage and a trivial state machine (the list of applied entries); messages sit in
// one queue until the test delivers them, subject to cut links and a drop filter.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <utility>
#include <vector>

#include "raft/memory_storage.h"
#include "raft/raft.h"

namespace raftkv::raft::testing {

struct HarnessNode {
  uint64_t id = 0;
  std::unique_ptr<MemoryStorage> storage;
  std::unique_ptr<Raft> raft;
  std::vector<raftpb::Entry> applied;  // in index order (entries covered by a snapshot absent)
  uint64_t applied_index = 0;
  uint64_t snapshots_installed = 0;
  std::vector<ReadState> read_states;
};

class Harness {
 public:
  // n nodes with ids 1..n; `tweak` adjusts each node's config (pre_vote, check_quorum, ...).
  explicit Harness(int n, std::function<void(Config&)> tweak = {});

  Raft& raft(uint64_t id) { return *nodes_.at(id - 1).raft; }
  HarnessNode& node(uint64_t id) { return nodes_.at(id - 1); }
  int size() const { return static_cast<int>(nodes_.size()); }

  // Handles every Ready of `id` (all nodes if 0) in the order of the caller contract: queues
  // messages_before_persist, persists (synced), queues messages, applies, Advances.
  void ProcessReady(uint64_t id = 0);
  // Delivers queued messages and processes Readies until no message is left.
  void Stabilize();
  // Ticks `id` n times, then stabilizes.
  void Tick(uint64_t id, int n = 1);
  // Ticks every node n times, stabilizing after each round.
  void TickAll(int n = 1);
  // Ticks `id` alone until it starts a new election (or wins one), then stabilizes.
  void Campaign(uint64_t id);
  // The leader according to a majority of nodes' role, or 0.
  uint64_t Leader() const;

  // A new node (id size() + 1) joining the running cluster: empty storage, kNewCluster (a
  // fresh id promised nothing), the bootstrap peers (itself not among them). It is no member
  // until a leader adds it (ProposeConfChange). Returns its id.
  uint64_t AddNode();
  // Proposes `type` for `node_id` on `leader`.
  absl::StatusOr<EntryId> Change(uint64_t leader, raftpb::ConfChangeType type, uint64_t node_id);

  // Takes a state-machine snapshot at `id`'s applied index and compacts its log to it.
  void SnapshotAndCompact(uint64_t id);
  // Crash: the node's storage reverts to its last Sync() and the core restarts from it.
  void Restart(uint64_t id);
  // An operator wiped the node's data: it restarts with an empty log and no hard state, a
  // new incarnation, and `start` (kvd's default: ask the peers whether the cluster exists).
  void Wipe(uint64_t id, Config::EmptyStart start = Config::EmptyStart::kAskPeers);

  // Network control: links are directed.
  void Cut(uint64_t from, uint64_t to) { cut_.insert({from, to}); }
  void CutBoth(uint64_t a, uint64_t b) {
    Cut(a, b);
    Cut(b, a);
  }
  void Isolate(uint64_t id);
  void Heal() { cut_.clear(); }
  // Messages for which `drop` returns true are dropped at delivery (null: none).
  void SetDropFilter(std::function<bool(const raftpb::Message&)> drop) { drop_ = std::move(drop); }
  // Every message delivered or dropped so far, in order (for assertions on traffic).
  const std::vector<raftpb::Message>& sent() const { return sent_; }
  // Removes and returns the queued (undelivered) messages; DeliverNow() steps one directly.
  std::vector<raftpb::Message> TakeQueued() {
    std::vector<raftpb::Message> q = std::move(queue_);
    queue_.clear();
    return q;
  }
  void DeliverNow(const raftpb::Message& m) { Deliver(m); }
  void ClearSent() { sent_.clear(); }

 private:
  Config MakeConfig(uint64_t id) const;
  void StartNode(uint64_t id, const Config& config);
  void Deliver(const raftpb::Message& m);

  int n_;  // the bootstrap voters: 1..n_
  uint64_t incarnations_ = 1000;  // the last incarnation handed to a wiped node
  std::function<void(Config&)> tweak_;
  std::vector<HarnessNode> nodes_;  // nodes_[id - 1]
  std::vector<raftpb::Message> queue_;
  std::vector<raftpb::Message> sent_;
  std::set<std::pair<uint64_t, uint64_t>> cut_;
  std::function<bool(const raftpb::Message&)> drop_;
};

// An entry for tests.
raftpb::Entry MakeEntry(uint64_t index, uint64_t term, std::string data = "");

}  // namespace raftkv::raft::testing
