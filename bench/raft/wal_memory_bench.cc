// Peak memory of the WAL with large entries (issue 9): WalOptions::max_cached_bytes (kvd
// --wal-cache-bytes) bounds the entry payloads the WAL keeps in RAM; older entries are read
// back from the segment files.
//
//   wal_memory_bench --cache-bytes N|unlimited [--entries 2000] [--value-bytes 1048576]
//                    [--batch 8] [--no-fsync]
//
// One configuration per process, since peak RSS (ru_maxrss) is per process. Phases:
//   append  --entries entries of --value-bytes each through Append, one Sync() per --batch
//           entries, never compacted (a log whose compaction waits, e.g. for the backup);
//   read    every entry read back through Entries() in 1 MiB batches, as the leader's send
//           path does for a follower that is far behind (evicted entries: pread + CRC check);
//   reopen  Open() of the same directory (recovery) and one more full read. Recovery reads
//           one whole segment at a time (64 MiB by default), so it has a peak of its own.
// "unlimited" is the behaviour before the bound: every uncompacted entry stays in RAM.
// WAL_BENCH_DIR picks the disk (default /tmp); the WAL is deleted at the end.
// Prints one line: key=value ...
#include <stdlib.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "raft/wal/wal_storage.h"

#include "../bench_util.h"

namespace {

namespace raftpb = raftkv::raftpb;
using raftkv::raft::wal::WalOptions;
using raftkv::raft::wal::WalStorage;
using raftkv::bench::Clock;
using raftkv::bench::PeakRssMib;
using raftkv::bench::Seconds;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "wal_memory_bench: %s\n", what.c_str());
  std::exit(2);
}

struct Flags {
  uint64_t cache_bytes = 64ull << 20;
  uint64_t entries = 2000;
  uint64_t value_bytes = 1ull << 20;
  uint64_t batch = 8;
  bool fsync = true;
};

uint64_t ParseCount(const std::string& flag, const std::string& value) {
  uint64_t n = 0;
  if (!absl::SimpleAtoi(value, &n)) Die(flag + " needs a non-negative integer, got '" + value + "'");
  return n;
}

Flags ParseFlags(int argc, char** argv) {
  Flags f;
  bool have_cache = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--no-fsync") {
      f.fsync = false;
      continue;
    }
    if (i + 1 >= argc) Die("missing value for " + a + " (usage: see the top of wal_memory_bench.cc)");
    const std::string v = argv[++i];
    if (a == "--cache-bytes") {
      f.cache_bytes = v == "unlimited" ? ~0ull : ParseCount(a, v);
      have_cache = true;
    } else if (a == "--entries") {
      f.entries = ParseCount(a, v);
    } else if (a == "--value-bytes") {
      f.value_bytes = ParseCount(a, v);
    } else if (a == "--batch") {
      f.batch = ParseCount(a, v);
    } else {
      Die("unknown flag " + a);
    }
  }
  if (!have_cache) Die("--cache-bytes N|unlimited is required");
  if (f.entries == 0 || f.batch == 0) Die("--entries and --batch must be > 0");
  return f;
}

std::unique_ptr<WalStorage> OpenOrDie(const std::string& dir, const WalOptions& opts) {
  auto w = WalStorage::Open(dir, opts);
  if (!w.ok()) Die(w.status().ToString());
  return std::move(*w);
}

// Reads [FirstIndex, LastIndex] back in 1 MiB batches; returns the bytes read.
uint64_t ReadAll(const WalStorage& w) {
  uint64_t bytes = 0;
  for (uint64_t next = w.FirstIndex(); next <= w.LastIndex();) {
    auto batch = w.Entries(next, w.LastIndex() + 1, 1 << 20);
    if (!batch.ok()) Die(batch.status().ToString());
    for (const raftpb::Entry& e : *batch) bytes += e.data().size();
    next = batch->back().index() + 1;
  }
  return bytes;
}

}  // namespace

int main(int argc, char** argv) {
  const Flags f = ParseFlags(argc, argv);
  const char* root = std::getenv("WAL_BENCH_DIR");
  std::string tmpl = std::string(root != nullptr ? root : "/tmp") + "/wal_memory_bench_XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) Die("mkdtemp " + tmpl);
  const std::string dir = tmpl + "/wal";
  WalOptions opts;
  opts.max_cached_bytes = f.cache_bytes;
  opts.max_record_bytes = std::max<uint64_t>(opts.max_record_bytes, f.value_bytes + 1024);

  std::string value(f.value_bytes, '\0');
  uint64_t rng = 0x9e3779b97f4a7c15ULL;  // xorshift64, fixed seed: incompressible values
  for (char& c : value) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    c = static_cast<char>(rng);
  }

  const long rss_start = PeakRssMib();
  double append_s = 0, read_s = 0, reopen_s = 0;
  long rss_append = 0, rss_read = 0;
  {
    auto w = OpenOrDie(dir, opts);
    const auto start = Clock::now();
    std::vector<raftpb::Entry> batch;
    for (uint64_t i = 1; i <= f.entries; ++i) {
      raftpb::Entry e;
      e.set_index(i);
      e.set_term(1);
      value[0] = static_cast<char>(i);  // entries differ
      e.set_data(value);
      batch.push_back(std::move(e));
      if (batch.size() == f.batch || i == f.entries) {
        if (absl::Status s = w->Append(batch); !s.ok()) Die(s.ToString());
        if (f.fsync) {
          if (absl::Status s = w->Sync(); !s.ok()) Die(s.ToString());
        }
        batch.clear();
      }
    }
    if (absl::Status s = w->Sync(); !s.ok()) Die(s.ToString());
    append_s = Seconds(start);
    rss_append = PeakRssMib();

    const auto read_start = Clock::now();
    if (ReadAll(*w) != f.entries * f.value_bytes) Die("read back the wrong number of bytes");
    read_s = Seconds(read_start);
    rss_read = PeakRssMib();
  }
  {
    const auto start = Clock::now();
    auto w = OpenOrDie(dir, opts);
    if (w->LastIndex() != f.entries) Die("reopened log has the wrong last index");
    if (ReadAll(*w) != f.entries * f.value_bytes) Die("read back the wrong number of bytes");
    reopen_s = Seconds(start);
  }
  std::filesystem::remove_all(tmpl);

  const double mib = static_cast<double>(f.entries * f.value_bytes) / (1 << 20);
  std::printf(
      "cache_bytes=%s entries=%llu value_bytes=%llu fsync=%d log_mib=%.0f "
      "append_s=%.2f append_mib_per_s=%.0f read_s=%.2f read_mib_per_s=%.0f "
      "reopen_and_read_s=%.2f rss_start_mib=%ld peak_rss_after_append_mib=%ld "
      "peak_rss_after_read_mib=%ld peak_rss_with_reopen_mib=%ld\n",
      f.cache_bytes == ~0ull ? "unlimited" : std::to_string(f.cache_bytes).c_str(),
      static_cast<unsigned long long>(f.entries), static_cast<unsigned long long>(f.value_bytes),
      f.fsync ? 1 : 0, mib, append_s, mib / append_s, read_s, mib / read_s, reopen_s, rss_start,
      rss_append, rss_read, PeakRssMib());
  return 0;
}
