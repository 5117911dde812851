// raft_sim: runs seeded Raft simulations (simulation.h).
//   raft_sim --seeds=N --start=S [--nodes=2..7] [--chaos_ticks=T] [--membership] [--wal]
//            [--drift=0|1] [--slow_snapshots=0|1] [--torn_crashes=0|1] [--verbose]
// --membership: membership changes and leadership transfers as faults (simulation.h).
// --wal: nodes on the real WalStorage (over an in-memory file system that a crash tears).
// --drift, --slow_snapshots, --torn_crashes: the faults of SimOptions (default 1 each).
// --bug=NAME: a planted bug of SimOptions::Bug (lease_read, hard_state_first, ...), to replay
// a seed of the checker tests (sim_test.cc).
// Exit status 0 when every seed passed, 1 otherwise. A failing seed prints one line with the
// command that replays it (also when the core aborts on a broken invariant).
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unistd.h>

#include <chrono>

#include "sim/simulation.h"

namespace {

char g_replay[256];  // the replay line of the seed being run, for the abort handler

void OnAbort(int) {
  // Only async-signal-safe calls here.
  const char prefix[] = "\nraft_sim: aborted (broken invariant). Replay: ";
  (void)!write(2, prefix, sizeof(prefix) - 1);
  (void)!write(2, g_replay, strlen(g_replay));
  (void)!write(2, "\n", 1);
  signal(SIGABRT, SIG_DFL);
  abort();
}

bool Flag(const char* arg, const char* name, long long* value) {
  const size_t n = strlen(name);
  if (strncmp(arg, name, n) != 0 || arg[n] != '=') return false;
  *value = atoll(arg + n + 1);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  long long seeds = 1000, start = 1, nodes = 0, chaos_ticks = 300;
  long long drift = 1, slow_snapshots = 1, torn_crashes = 1;
  bool verbose = false, membership = false, wal = false;
  std::string bug;  // a planted bug (SimOptions::Bug), to replay a seed of the checker tests
  for (int i = 1; i < argc; ++i) {
    if (Flag(argv[i], "--seeds", &seeds) || Flag(argv[i], "--start", &start) ||
        Flag(argv[i], "--nodes", &nodes) || Flag(argv[i], "--chaos_ticks", &chaos_ticks) ||
        Flag(argv[i], "--drift", &drift) || Flag(argv[i], "--slow_snapshots", &slow_snapshots) ||
        Flag(argv[i], "--torn_crashes", &torn_crashes)) {
      continue;
    }
    if (strncmp(argv[i], "--bug=", 6) == 0) {
      bug = argv[i] + 6;
      continue;
    }
    if (strcmp(argv[i], "--wal") == 0) {
      wal = true;
      continue;
    }
    if (strcmp(argv[i], "--verbose") == 0) {
      verbose = true;
      continue;
    }
    if (strcmp(argv[i], "--membership") == 0) {
      membership = true;
      continue;
    }
    fprintf(stderr,
            "usage: %s --seeds=N --start=S [--nodes=2..7] [--chaos_ticks=T] [--membership] "
            "[--wal] [--drift=0|1] [--slow_snapshots=0|1] [--torn_crashes=0|1] [--bug=NAME] "
            "[--verbose]\n",
            argv[0]);
    return 2;
  }
  if (nodes != 0 && (nodes < 2 || nodes > 7)) {
    fprintf(stderr, "%s: --nodes must be in [2, 7] (or 0: chosen by the seed)\n", argv[0]);
    return 2;
  }
  using Bug = raftkv::raft::sim::SimOptions::Bug;
  const std::pair<const char*, Bug> kBugs[] = {
      {"", Bug::kNone},
      {"no_fsync", Bug::kNoFsync},
      {"forget_votes", Bug::kForgetVotes},
      {"read_too_early", Bug::kReadTooEarly},
      {"lost_disk_votes", Bug::kLostDiskVotes},
      {"accept_any_prev", Bug::kAcceptAnyPrev},
      {"vote_ignores_log", Bug::kVoteIgnoresLog},
      {"apply_before_commit", Bug::kApplyBeforeCommit},
      {"learner_ack_counted", Bug::kLearnerAckCounted},
      {"lease_read", Bug::kLeaseRead},
      {"hard_state_first", Bug::kHardStateFirst},
      {"serve_before_applied", Bug::kServeBeforeApplied},
      {"ack_by_index_only", Bug::kAckByIndexOnly},
  };
  Bug planted = Bug::kNone;
  bool known_bug = false;
  for (const auto& [name, b] : kBugs) {
    if (bug == name) {
      planted = b;
      known_bug = true;
    }
  }
  if (!known_bug) {
    fprintf(stderr, "%s: unknown --bug=%s (see SimOptions::Bug in simulation.h)\n", argv[0],
            bug.c_str());
    return 2;
  }
  std::string extra;  // the fault flags, for the replay line
  if (!bug.empty()) extra += " --bug=" + bug;
  if (wal) extra += " --wal";
  if (drift != 1) extra += " --drift=" + std::to_string(drift);
  if (slow_snapshots != 1) extra += " --slow_snapshots=" + std::to_string(slow_snapshots);
  if (torn_crashes != 1) extra += " --torn_crashes=" + std::to_string(torn_crashes);
  signal(SIGABRT, OnAbort);
  const auto t0 = std::chrono::steady_clock::now();
  long long failed = 0;
  raftkv::raft::sim::SimStats total;
  for (long long s = start; s < start + seeds; ++s) {
    snprintf(g_replay, sizeof(g_replay), "%s --seeds=1 --start=%lld%s%s%s%s --verbose", argv[0],
             s, membership ? " --membership" : "", extra.c_str(),
             nodes ? (" --nodes=" + std::to_string(nodes)).c_str() : "",
             chaos_ticks != 300 ? (" --chaos_ticks=" + std::to_string(chaos_ticks)).c_str()
                                : "");
    raftkv::raft::sim::SimOptions opt;
    opt.seed = static_cast<uint64_t>(s);
    opt.nodes = static_cast<int>(nodes);
    opt.chaos_ticks = static_cast<int>(chaos_ticks);
    opt.verbose = verbose;
    opt.membership = membership;
    opt.wal = wal;
    opt.bug = planted;
    opt.drift = drift != 0;
    opt.slow_snapshots = slow_snapshots != 0;
    opt.torn_crashes = torn_crashes != 0;
    raftkv::raft::sim::SimStats stats;
    absl::Status st = raftkv::raft::sim::RunSimulation(opt, &stats);
    total.ticks += stats.ticks;
    total.messages_delivered += stats.messages_delivered;
    total.writes_acked += stats.writes_acked;
    total.reads_served += stats.reads_served;
    total.leaders_elected += stats.leaders_elected;
    total.crashes += stats.crashes;
    total.disks_lost += stats.disks_lost;
    total.snapshots_installed += stats.snapshots_installed;
    total.conf_changes += stats.conf_changes;
    total.transfers += stats.transfers;
    total.brief_leaders += stats.brief_leaders;
    total.torn_crashes += stats.torn_crashes;
    total.snapshot_streams_broken += stats.snapshot_streams_broken;
    total.stalls += stats.stalls;
    total.retries += stats.retries;
    total.applied_twice += stats.applied_twice;
    if (!st.ok()) {
      ++failed;
      fprintf(stderr, "FAIL seed=%lld: %s\n  replay: %s\n", s, std::string(st.message()).c_str(),
              g_replay);
    }
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  printf("raft_sim: %lld seeds from %lld in %.1f s: ticks=%llu msgs=%llu writes_acked=%llu "
         "reads=%llu leaders=%llu crashes=%llu disks_lost=%llu snapshots=%llu "
         "conf_changes=%llu transfers=%llu brief_leaders=%llu torn_crashes=%llu "
         "snapshot_streams_broken=%llu stalls=%llu retries=%llu applied_twice=%llu\n",
         seeds, start, secs, (unsigned long long)total.ticks,
         (unsigned long long)total.messages_delivered, (unsigned long long)total.writes_acked,
         (unsigned long long)total.reads_served, (unsigned long long)total.leaders_elected,
         (unsigned long long)total.crashes, (unsigned long long)total.disks_lost,
         (unsigned long long)total.snapshots_installed, (unsigned long long)total.conf_changes,
         (unsigned long long)total.transfers, (unsigned long long)total.brief_leaders,
         (unsigned long long)total.torn_crashes,
         (unsigned long long)total.snapshot_streams_broken, (unsigned long long)total.stalls,
         (unsigned long long)total.retries, (unsigned long long)total.applied_twice);
  printf("%lld passed, %lld failed\n", seeds - failed, failed);
  return failed == 0 ? 0 : 1;
}
