// One-shot measurements of the state machine and its SQLite snapshots, one phase per process
// so each phase reports its own peak memory (ru_maxrss). Usage (see run.sh):
//   kv_bench load     --db DIR --keys N [--value-bytes B] [--keys-per-entry K] [--sync]
//   kv_bench snapshot --db DIR --snap FILE
//   kv_bench verify   --snap FILE
//   kv_bench restore  --snap FILE --db DIR
//   kv_bench install  --db DIR --snap FILE   (StateMachine::InstallSnapshot into an open store)
//   kv_bench backup   --db DIR --backup FILE --keys N [--entries-per-round E] [--rounds R]
//     (seeds the backup from the store, then per round applies E single-put entries to the
//      store and the same entries to the backup in one transaction; then one CopyTo)
// Each prints one line: phase=... key=value ...
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "kv/sqlite_backup.h"
#include "kv/sqlite_snapshot.h"
#include "kv/state_machine.h"

#include "../bench_util.h"

namespace {

using raftkv::bench::Clock;
using raftkv::bench::PeakRssMib;
using raftkv::bench::Seconds;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "kv_bench: %s\n", what.c_str());
  std::exit(1);
}

std::map<std::string, std::string> ParseFlags(int argc, char** argv) {
  std::map<std::string, std::string> flags;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) != 0) Die("unexpected argument " + a);
    if (a == "--sync") {
      flags["sync"] = "1";
    } else if (i + 1 < argc) {
      flags[a.substr(2)] = argv[++i];
    } else {
      Die("missing value for " + a);
    }
  }
  return flags;
}

std::string Need(const std::map<std::string, std::string>& f, const std::string& name) {
  auto it = f.find(name);
  if (it == f.end()) Die("--" + name + " is required");
  return it->second;
}

int64_t IntFlag(const std::map<std::string, std::string>& f, const std::string& name,
                int64_t def) {
  auto it = f.find(name);
  return it == f.end() ? def : std::stoll(it->second);
}

std::unique_ptr<raftkv::kv::StateMachine> OpenOrDie(const std::string& db, bool sync) {
  raftkv::kv::StateMachineOptions o;
  o.db_path = db;
  o.sync_writes = sync;
  auto sm = raftkv::kv::StateMachine::Open(o);
  if (!sm.ok()) Die(sm.status().ToString());
  return std::move(*sm);
}

int Load(const std::map<std::string, std::string>& f) {
  const int64_t keys = IntFlag(f, "keys", 1'000'000);
  const int64_t value_bytes = IntFlag(f, "value-bytes", 100);
  const int64_t per_entry = IntFlag(f, "keys-per-entry", 1);
  const bool sync = f.count("sync") > 0;
  auto sm = OpenOrDie(Need(f, "db"), sync);
  std::string value(static_cast<size_t>(value_bytes), 'v');
  char key[32];
  uint64_t rng = 0x9e3779b97f4a7c15ULL;  // xorshift64, fixed seed
  const auto start = Clock::now();
  int64_t entries = 0;
  for (int64_t k = 0; k < keys;) {
    raftkv::kvpb::Command cmd;
    for (int64_t j = 0; j < per_entry && k < keys; ++j, ++k) {
      std::snprintf(key, sizeof(key), "key/%012lld", static_cast<long long>(k));
      auto* put = cmd.add_ops()->mutable_put();
      put->set_key(key);
      // Incompressible values, so RocksDB's compression does not flatter the figures.
      for (char& c : value) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        c = static_cast<char>(rng);
      }
      put->set_value(value);
    }
    auto r = sm->Apply(sm->applied_index() + 1, 1, cmd);
    if (!r.ok()) Die(r.status().ToString());
    ++entries;
  }
  const double apply_s = Seconds(start);
  const auto flush_start = Clock::now();
  if (auto s = sm->Flush(); !s.ok()) Die(s.ToString());
  std::printf(
      "phase=load keys=%lld value_bytes=%lld keys_per_entry=%lld sync=%d entries=%lld "
      "seconds=%.2f entries_per_s=%.0f keys_per_s=%.0f flush_s=%.2f peak_rss_mib=%ld\n",
      static_cast<long long>(keys), static_cast<long long>(value_bytes),
      static_cast<long long>(per_entry), sync ? 1 : 0, static_cast<long long>(entries), apply_s,
      entries / apply_s, keys / apply_s, Seconds(flush_start), PeakRssMib());
  return 0;
}

int Snapshot(const std::map<std::string, std::string>& f) {
  auto sm = OpenOrDie(Need(f, "db"), false);
  const std::string snap = Need(f, "snap");
  const auto start = Clock::now();
  auto meta = raftkv::kv::WriteSnapshot(*sm, snap);
  if (!meta.ok()) Die(meta.status().ToString());
  std::printf("phase=snapshot keys=%lld seconds=%.2f file_mib=%.1f peak_rss_mib=%ld\n",
              static_cast<long long>(meta->kv_count), Seconds(start),
              std::filesystem::file_size(snap) / 1048576.0, PeakRssMib());
  return 0;
}

int Verify(const std::map<std::string, std::string>& f) {
  const auto start = Clock::now();
  auto meta = raftkv::kv::VerifySnapshot(Need(f, "snap"));
  if (!meta.ok()) Die(meta.status().ToString());
  std::printf("phase=verify keys=%lld seconds=%.2f peak_rss_mib=%ld\n",
              static_cast<long long>(meta->kv_count), Seconds(start), PeakRssMib());
  return 0;
}

int Restore(const std::map<std::string, std::string>& f) {
  const auto start = Clock::now();
  auto meta = raftkv::kv::RestoreSnapshot(Need(f, "snap"), Need(f, "db"));
  if (!meta.ok()) Die(meta.status().ToString());
  std::printf("phase=restore keys=%lld seconds=%.2f peak_rss_mib=%ld\n",
              static_cast<long long>(meta->kv_count), Seconds(start), PeakRssMib());
  return 0;
}

int Install(const std::map<std::string, std::string>& f) {
  auto sm = OpenOrDie(Need(f, "db"), false);
  const auto start = Clock::now();
  if (auto s = sm->InstallSnapshot(Need(f, "snap")); !s.ok()) Die(s.ToString());
  std::printf("phase=install applied_index=%llu seconds=%.2f peak_rss_mib=%ld\n",
              static_cast<unsigned long long>(sm->applied_index()), Seconds(start),
              PeakRssMib());
  return 0;
}

int Backup(const std::map<std::string, std::string>& f) {
  const int64_t keys = IntFlag(f, "keys", 1'000'000);
  const int64_t per_round = IntFlag(f, "entries-per-round", 10'000);
  const int64_t rounds = IntFlag(f, "rounds", 5);
  auto sm = OpenOrDie(Need(f, "db"), false);
  raftkv::kv::BackupOptions options;
  options.path = Need(f, "backup");
  auto start = Clock::now();
  auto backup = raftkv::kv::SqliteBackup::CreateFrom(*sm, options);
  if (!backup.ok()) Die(backup.status().ToString());
  std::printf("phase=backup_seed keys=%lld seconds=%.2f\n",
              static_cast<long long>((*backup)->meta().kv_count), Seconds(start));
  uint64_t rng = 0x2545f4914f6cdd1dULL;
  char key[32];
  for (int64_t r = 0; r < rounds; ++r) {
    std::vector<raftkv::kvpb::Command> cmds(static_cast<size_t>(per_round));
    std::vector<raftkv::kv::BackupEntry> entries;
    for (auto& cmd : cmds) {
      rng ^= rng << 13;
      rng ^= rng >> 7;
      rng ^= rng << 17;
      std::snprintf(key, sizeof(key), "key/%012lld",
                    static_cast<long long>(rng % static_cast<uint64_t>(keys + keys / 10)));
      auto* put = cmd.add_ops()->mutable_put();
      put->set_key(key);
      put->set_value(std::string(100, static_cast<char>('a' + r)));
      const uint64_t index = sm->applied_index() + 1;
      auto applied = sm->Apply(index, 1, cmd);
      if (!applied.ok()) Die(applied.status().ToString());
      entries.push_back({index, 1, &cmd});
    }
    start = Clock::now();
    if (auto s = (*backup)->Apply(entries); !s.ok()) Die(s.ToString());
    const double sec = Seconds(start);
    std::printf("phase=backup_round keys=%lld entries=%lld seconds=%.3f us_per_entry=%.1f\n",
                static_cast<long long>((*backup)->meta().kv_count),
                static_cast<long long>(per_round), sec, sec * 1e6 / per_round);
  }
  start = Clock::now();
  auto copy = (*backup)->CopyTo(options.path + ".copy");
  if (!copy.ok()) Die(copy.status().ToString());
  std::printf("phase=backup_copy keys=%lld seconds=%.2f peak_rss_mib=%ld\n",
              static_cast<long long>(copy->kv_count), Seconds(start), PeakRssMib());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) Die("usage: kv_bench load|snapshot|verify|restore --flags (see source)");
  const std::string phase = argv[1];
  const auto flags = ParseFlags(argc, argv);
  if (phase == "load") return Load(flags);
  if (phase == "snapshot") return Snapshot(flags);
  if (phase == "verify") return Verify(flags);
  if (phase == "restore") return Restore(flags);
  if (phase == "backup") return Backup(flags);
  if (phase == "install") return Install(flags);
  Die("unknown phase " + phase);
}
