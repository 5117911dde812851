// WAL append throughput, with and without fsync, at batch sizes 1, 8, 64 and 512 entries per
// Sync(): shows how group commit amortises one fsync over a batch.
//
//   wal_bench [--benchmark_filter=...]        (WAL_BENCH_DIR=/path picks the disk; default /tmp)
//
// "fsync:0" uses an Env whose file Sync() does nothing (records are still written with
// write(2) at every Sync()), so it measures encoding + CRC + write; "fsync:1" is the real path.
// Entries carry a 100-byte payload. Every 4096 batches the log is compacted to its end so old
// segments are deleted and the disk use stays bounded. BM_WalOpen measures recovery time.
#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "raft/wal/wal_env.h"
#include "raft/wal/wal_storage.h"

namespace raftkv::raft::wal {
namespace {

// Forwards everything to the default Env but makes file fsync a no-op.
class NoSyncEnv final : public WalEnv {
 public:
  absl::Status CreateDirIfMissing(const std::string& d) override {
    return base_->CreateDirIfMissing(d);
  }
  absl::StatusOr<std::vector<std::string>> ListDir(const std::string& d) override {
    return base_->ListDir(d);
  }
  absl::StatusOr<std::string> ReadFile(const std::string& p) override { return base_->ReadFile(p); }
  absl::StatusOr<std::unique_ptr<WalFile>> OpenForAppend(const std::string& p,
                                                         bool truncate) override {
    auto f = base_->OpenForAppend(p, truncate);
    if (!f.ok()) return f.status();
    return std::unique_ptr<WalFile>(new File(std::move(*f)));
  }
  absl::StatusOr<std::unique_ptr<WalReadableFile>> OpenForRead(const std::string& p) override {
    return base_->OpenForRead(p);
  }
  absl::Status TruncateFile(const std::string& p, uint64_t n) override {
    return base_->TruncateFile(p, n);
  }
  absl::Status RenameFile(const std::string& a, const std::string& b) override {
    return base_->RenameFile(a, b);
  }
  absl::Status RemoveFile(const std::string& p) override { return base_->RemoveFile(p); }
  absl::Status SyncDir(const std::string&) override { return absl::OkStatus(); }
  absl::StatusOr<std::unique_ptr<FileLock>> LockFile(const std::string& p) override {
    return base_->LockFile(p);
  }

 private:
  class File final : public WalFile {
   public:
    explicit File(std::unique_ptr<WalFile> f) : f_(std::move(f)) {}
    absl::Status Append(absl::string_view d) override { return f_->Append(d); }
    absl::Status Sync() override { return absl::OkStatus(); }

   private:
    std::unique_ptr<WalFile> f_;
  };
  WalEnv* const base_ = WalEnv::Default();
};

std::string MakeTempDir() {
  const char* root = std::getenv("WAL_BENCH_DIR");
  std::string tmpl = std::string(root != nullptr ? root : "/tmp") + "/wal_bench_XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
  return tmpl;
}

void BM_WalAppendSync(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0));
  const bool fsync = state.range(1) != 0;
  const std::string dir = MakeTempDir();
  NoSyncEnv nosync;
  WalOptions opts;
  if (!fsync) opts.env = &nosync;
  auto wal = WalStorage::Open(dir + "/wal", opts);
  if (!wal.ok()) {
    state.SkipWithError(std::string(wal.status().message()).c_str());
    return;
  }
  WalStorage& w = **wal;
  std::vector<raftpb::Entry> entries(batch);
  for (auto& e : entries) {
    e.set_term(1);
    e.set_data(std::string(100, 'x'));
  }
  uint64_t next = 1;
  uint64_t batches = 0;
  const uint64_t fsyncs_before = w.fsync_count();
  for (auto _ : state) {
    for (auto& e : entries) e.set_index(next++);
    if (!w.Append(entries).ok() || !w.Sync().ok()) {
      state.SkipWithError("append/sync failed");
      break;
    }
    if (++batches % 4096 == 0 && !w.Compact(w.LastIndex()).ok()) {
      state.SkipWithError("compact failed");
      break;
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(next - 1));
  state.SetBytesProcessed(static_cast<int64_t>((next - 1) * entries[0].ByteSizeLong()));
  state.counters["fsyncs"] = static_cast<double>(w.fsync_count() - fsyncs_before);
  state.counters["batches_per_s"] =
      benchmark::Counter(static_cast<double>(batches), benchmark::Counter::kIsRate);
  wal->reset();
  std::filesystem::remove_all(dir);
}

BENCHMARK(BM_WalAppendSync)
    ->ArgNames({"batch", "fsync"})
    ->ArgsProduct({{1, 8, 64, 512}, {0, 1}})
    ->MinTime(1.0)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

// Start-up cost: Open() (read, CRC-check and replay every segment) of a WAL holding
// state.range(0) entries of 100 bytes, across 4 MiB segments.
void BM_WalOpen(benchmark::State& state) {
  const uint64_t n = static_cast<uint64_t>(state.range(0));
  const std::string dir = MakeTempDir();
  WalOptions opts;
  opts.max_segment_bytes = 4 << 20;
  uint64_t file_bytes = 0;
  {
    auto wal = WalStorage::Open(dir + "/wal", opts);
    if (!wal.ok()) {
      state.SkipWithError(std::string(wal.status().message()).c_str());
      return;
    }
    std::vector<raftpb::Entry> batch;
    for (uint64_t i = 1; i <= n; ++i) {
      raftpb::Entry e;
      e.set_index(i);
      e.set_term(1);
      e.set_data(std::string(100, 'r'));
      batch.push_back(std::move(e));
      if (batch.size() == 1024 || i == n) {
        if (!(*wal)->Append(batch).ok()) std::abort();
        batch.clear();
      }
    }
    if (!(*wal)->Sync().ok()) std::abort();
  }
  for (const auto& f : std::filesystem::directory_iterator(dir + "/wal")) {
    file_bytes += f.is_regular_file() ? f.file_size() : 0;
  }
  for (auto _ : state) {
    auto wal = WalStorage::Open(dir + "/wal", opts);
    if (!wal.ok() || (*wal)->LastIndex() != n) {
      state.SkipWithError("reopen failed");
      break;
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * n));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * file_bytes));
  std::filesystem::remove_all(dir);
}

BENCHMARK(BM_WalOpen)->ArgName("entries")->Arg(100000)->Arg(1000000)->UseRealTime()->Unit(
    benchmark::kMillisecond);

}  // namespace
}  // namespace raftkv::raft::wal

BENCHMARK_MAIN();
