#include "raft_harness.h"

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"

namespace raftkv::raft::testing {

raftpb::Entry MakeEntry(uint64_t index, uint64_t term, std::string data) {
  raftpb::Entry e;
  e.set_index(index);
  e.set_term(term);
  e.set_data(std::move(data));
  return e;
}

Harness::Harness(int n, std::function<void(Config&)> tweak) : n_(n), tweak_(std::move(tweak)) {
  for (int i = 1; i <= n; ++i) {
    HarnessNode node;
    node.id = i;
    node.storage = std::make_unique<MemoryStorage>(/*track_durable=*/true);
    auto raft = Raft::Create(MakeConfig(i), node.storage.get());
    EXPECT_TRUE(raft.ok()) << raft.status();
    node.raft = std::move(*raft);
    nodes_.push_back(std::move(node));
  }
}

Config Harness::MakeConfig(uint64_t id) const {
  Config c;
  c.id = id;
  for (int i = 1; i <= n_; ++i) c.peers.push_back(i);
  c.election_tick = 10;
  c.heartbeat_tick = 1;
  c.seed = 42;
  c.check_invariants = true;
  if (tweak_) tweak_(c);
  return c;
}

void Harness::ProcessReady(uint64_t id) {
  if (id == 0) {
    for (auto& n : nodes_) ProcessReady(n.id);
    return;
  }
  HarnessNode& n = node(id);
  while (n.raft->HasReady()) {
    Ready rd = n.raft->GetReady();
    // The order of the caller contract (raft.h): early messages, persist, the rest.
    for (auto& m : rd.messages_before_persist) queue_.push_back(std::move(m));
    if (rd.snapshot) {
      ASSERT_TRUE(n.storage->ApplySnapshot(rd.snapshot->metadata()).ok());
      n.applied_index = rd.snapshot->metadata().index();
      ++n.snapshots_installed;
    }
    ASSERT_TRUE(n.storage->Append(rd.entries).ok());
    if (rd.hard_state) {
      ASSERT_TRUE(n.storage->SetHardState(*rd.hard_state).ok());
    }
    ASSERT_TRUE(n.storage->Sync().ok());
    for (auto& m : rd.messages) queue_.push_back(std::move(m));
    for (const auto& e : rd.committed_entries) {
      ASSERT_EQ(e.index(), n.applied_index + 1) << "node " << id << " applies out of order";
      n.applied.push_back(e);
      n.applied_index = e.index();
    }
    for (auto& rs : rd.read_states) n.read_states.push_back(std::move(rs));
    n.raft->Advance(rd);
  }
}

uint64_t Harness::AddNode() {
  HarnessNode node;
  node.id = nodes_.size() + 1;
  node.storage = std::make_unique<MemoryStorage>(/*track_durable=*/true);
  Config c = MakeConfig(node.id);
  c.empty_start = Config::EmptyStart::kNewCluster;
  auto raft = Raft::Create(c, node.storage.get());
  EXPECT_TRUE(raft.ok()) << raft.status();
  node.raft = std::move(*raft);
  nodes_.push_back(std::move(node));
  return nodes_.back().id;
}

absl::StatusOr<EntryId> Harness::Change(uint64_t leader, raftpb::ConfChangeType type,
                                        uint64_t node_id) {
  raftpb::ConfChange cc;
  cc.set_type(type);
  cc.set_node_id(node_id);
  return raft(leader).ProposeConfChange(cc);
}

void Harness::Deliver(const raftpb::Message& m) {
  sent_.push_back(m);
  if (m.to() == 0 || m.to() > nodes_.size()) return;  // a member that was never started
  const bool ok = cut_.count({m.from(), m.to()}) == 0 && !(drop_ && drop_(m));
  if (m.type() == raftpb::MSG_SNAP) {
    // The transport streams the snapshot and reports the outcome to the sender.
    if (ok) raft(m.to()).Step(m);
    raft(m.from()).ReportSnapshot(m.to(), ok);
    return;
  }
  if (ok) raft(m.to()).Step(m);
}

void Harness::Stabilize() {
  for (int round = 0; round < 10000; ++round) {
    ProcessReady();
    if (queue_.empty()) return;
    std::vector<raftpb::Message> batch = std::move(queue_);
    queue_.clear();
    for (const auto& m : batch) Deliver(m);
  }
  ADD_FAILURE() << "Stabilize did not converge";
}

void Harness::Tick(uint64_t id, int n) {
  for (int i = 0; i < n; ++i) {
    raft(id).Tick();
    Stabilize();
  }
}

void Harness::TickAll(int n) {
  for (int i = 0; i < n; ++i) {
    for (auto& node : nodes_) node.raft->Tick();
    Stabilize();
  }
}

void Harness::Campaign(uint64_t id) {
  // Tick until the node starts a new election: it becomes a (pre-)candidate, or, already
  // one, it moves to a new term or back to pre-voting.
  const Role start_role = raft(id).role();
  const uint64_t start_term = raft(id).term();
  for (int i = 0; i < 1000; ++i) {
    raft(id).Tick();
    const Role r = raft(id).role();
    if (r == Role::kLeader) break;
    if (r != Role::kFollower && (r != start_role || raft(id).term() != start_term)) break;
  }
  Stabilize();
}

uint64_t Harness::Leader() const {
  uint64_t best = 0, best_term = 0;
  for (const auto& n : nodes_) {
    if (n.raft->role() == Role::kLeader && n.raft->term() >= best_term) {
      best = n.id;
      best_term = n.raft->term();
    }
  }
  return best;
}

void Harness::Isolate(uint64_t id) {
  for (const auto& n : nodes_) {
    if (n.id != id) CutBoth(id, n.id);
  }
}

void Harness::SnapshotAndCompact(uint64_t id) {
  HarnessNode& n = node(id);
  raftpb::Snapshot snap;
  snap.mutable_metadata()->set_index(n.applied_index);
  snap.mutable_metadata()->set_term(*n.storage->Term(n.applied_index));
  snap.set_handle(absl::StrCat("snap-", id, "-", n.applied_index));
  n.raft->SetSnapshot(snap);
  ASSERT_TRUE(n.storage->Compact(n.applied_index).ok());
  ASSERT_TRUE(n.storage->Sync().ok());
}

void Harness::Wipe(uint64_t id, Config::EmptyStart start) {
  node(id).storage = std::make_unique<MemoryStorage>(/*track_durable=*/true);
  ASSERT_TRUE(node(id).storage->Sync().ok());
  Config c = MakeConfig(id);
  c.empty_start = start;
  c.incarnation = ++incarnations_;
  StartNode(id, c);
}

void Harness::Restart(uint64_t id) { StartNode(id, MakeConfig(id)); }

void Harness::StartNode(uint64_t id, const Config& config) {
  HarnessNode& n = node(id);
  n.storage = n.storage->DurableCopy();
  // The state machine is volatile here: it restarts from the snapshot and replays.
  n.applied_index = n.storage->FirstIndex() - 1;
  n.applied.clear();
  n.read_states.clear();
  auto raft = Raft::Create(config, n.storage.get());
  ASSERT_TRUE(raft.ok()) << raft.status();
  n.raft = std::move(*raft);
  // Messages in flight to or from the old incarnation are lost.
  std::vector<raftpb::Message> keep;
  for (auto& m : queue_) {
    if (m.to() != id && m.from() != id) keep.push_back(std::move(m));
  }
  queue_ = std::move(keep);
}

}  // namespace raftkv::raft::testing
