// Proposals per second through a 3-node in-memory cluster: the cost of the Raft core itself
// (no disk, no network): every message is delivered at once, storage is MemoryStorage.
//
//   raft_bench --benchmark_filter=Propose
//
// BM_Propose/B/S: B proposals of S bytes are submitted to the leader, then the cluster runs
// until the leader has applied them all. items_per_second = committed proposals per second.
#include <benchmark/benchmark.h>

#include <memory>
#include <string>
#include <vector>

#include "base/check.h"
#include "raft/memory_storage.h"
#include "raft/raft.h"

namespace raftkv::raft {
namespace {

class Cluster {
 public:
  explicit Cluster(int n) {
    for (int i = 1; i <= n; ++i) {
      storages_.push_back(std::make_unique<MemoryStorage>());
    }
    for (int i = 1; i <= n; ++i) {
      Config c;
      c.id = i;
      for (int j = 1; j <= n; ++j) c.peers.push_back(j);
      c.seed = 7;
      auto r = Raft::Create(c, storages_[i - 1].get());
      RAFTKV_CHECK(r.ok());
      nodes_.push_back(std::move(*r));
      applied_.push_back(0);
    }
    // Elect node 1.
    for (int i = 0; i < 100 && nodes_[0]->role() != Role::kLeader; ++i) {
      nodes_[0]->Tick();
      Run();
    }
    RAFTKV_CHECK(nodes_[0]->role() == Role::kLeader);
  }

  Raft& leader() { return *nodes_[0]; }
  uint64_t leader_applied() const { return applied_[0]; }

  // Processes Readies and delivers messages until the cluster is quiet.
  void Run() {
    bool busy = true;
    while (busy) {
      busy = false;
      for (size_t i = 0; i < nodes_.size(); ++i) {
        Raft& r = *nodes_[i];
        while (r.HasReady()) {
          busy = true;
          Ready rd = r.GetReady();
          for (auto& m : rd.messages_before_persist) queue_.push_back(std::move(m));
          MemoryStorage& s = *storages_[i];
          RAFTKV_CHECK(s.Append(rd.entries).ok());
          if (rd.hard_state) RAFTKV_CHECK(s.SetHardState(*rd.hard_state).ok());
          RAFTKV_CHECK(s.Sync().ok());
          for (auto& m : rd.messages) queue_.push_back(std::move(m));
          if (!rd.committed_entries.empty()) applied_[i] = rd.committed_entries.back().index();
          r.Advance(rd);
        }
      }
      std::vector<raftpb::Message> batch;
      batch.swap(queue_);
      for (const auto& m : batch) {
        busy = true;
        nodes_[m.to() - 1]->Step(m);
      }
    }
  }

 private:
  std::vector<std::unique_ptr<MemoryStorage>> storages_;
  std::vector<std::unique_ptr<Raft>> nodes_;
  std::vector<uint64_t> applied_;
  std::vector<raftpb::Message> queue_;
};

void BM_Propose(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0));
  const std::string payload(static_cast<size_t>(state.range(1)), 'v');
  Cluster cluster(3);
  uint64_t committed = 0;
  for (auto _ : state) {
    uint64_t last = 0;
    for (int i = 0; i < batch; ++i) {
      auto id = cluster.leader().Propose(payload);
      RAFTKV_CHECK(id.ok());
      last = id->index;
    }
    cluster.Run();
    RAFTKV_CHECK(cluster.leader_applied() >= last);
    committed += batch;
    // Keep memory bounded: MemoryStorage never compacts by itself. (Outside the timing.)
  }
  state.SetItemsProcessed(static_cast<int64_t>(committed));
  state.SetBytesProcessed(static_cast<int64_t>(committed * payload.size()));
}
BENCHMARK(BM_Propose)
    ->ArgsProduct({{1, 16, 256}, {100, 1024}})
    ->ArgNames({"batch", "bytes"})
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace raftkv::raft

BENCHMARK_MAIN();
