#include "sim/simulation.h"

#include <algorithm>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "raft/membership.h"
#include "raft/memory_storage.h"
#include "raft/raft.h"
#include "raft/wal/crash_env.h"
#include "raft/wal/wal_storage.h"

namespace raftkv::raft::sim {
namespace {

// A write a client submitted on node `node`; acknowledged when that node applies
// (index, term).
struct Proposal {
  uint64_t term = 0;
  std::string data;
};

struct PendingRead {
  uint64_t required = 0;  // highest acknowledged write index when the read started
  std::optional<uint64_t> index;  // confirmed read index (ReadState), once known
  std::string key;        // the key read
  // The index of the newest write to `key` acknowledged when the read started: the value
  // read must be that write's or a later one's (linearizability, by value).
  uint64_t key_required = 0;
};

// A client write whose outcome the client does not know yet (SimOptions: clients retry).
struct ClientWrite {
  uint64_t deadline = 0;  // give up waiting and propose again at this tick
  int attempts = 1;
};

// A write command is "key=value"; values are unique ("w<N>"). Anything else (the liveness
// marker, configuration entries, empty entries) leaves the key/value state alone.
bool ParseWrite(const raftpb::Entry& e, std::string* key, std::string* value) {
  if (e.type() != raftpb::ENTRY_NORMAL || e.data().empty() || e.data()[0] != 'k') return false;
  const size_t eq = e.data().find('=');
  if (eq == std::string::npos) return false;
  *key = e.data().substr(0, eq);
  *value = e.data().substr(eq + 1);
  return true;
}

struct SimNode {
  uint64_t id = 0;
  bool up = false;
  // Membership runs: ids past the bootstrap voters start when a leader accepts their
  // addition; a node whose removal committed is shut down for good (retired).
  bool started = false;
  bool retired = false;
  bool was_member = false;  // in a committed configuration once
  uint64_t restart_at = 0;
  bool restart_empty = false;  // the crash lost the whole disk
  // What the node does whenever it starts with empty storage (kvd's --initial-cluster-state,
  // which an operator sets once): the run's first start, kAskPeers once it lost its disk.
  Config::EmptyStart empty_start = Config::EmptyStart::kNewCluster;
  // The node's disk: a MemoryStorage, or (SimOptions::wal) a WalStorage over `env`.
  std::unique_ptr<LogStorage> storage;
  std::unique_ptr<wal::testing::CrashEnv> env;
  std::unique_ptr<Raft> raft;
  uint64_t starts = 0;  // process starts (a restart forgets the election timer)
  // Its clock (SimOptions::drift): ticks per simulated tick, the fraction carried over, and
  // the ticks it has taken so far (its own time).
  double clock_rate = 1;
  double clock_phase = 0;
  uint64_t stalled_until = 0;  // no ticks before this simulated tick (a stall)
  uint64_t local_ticks = 0;
  // The last commit index the checker saw on this node (commit safety), this process.
  uint64_t seen_commit = 0;
  uint64_t applied = 0;  // the state machine's applied index
  std::map<uint64_t, Proposal> proposals;      // index -> proposal awaiting apply
  std::map<std::string, PendingRead> reads;    // context -> read
  // A leader's Ready whose fsync is still "running" (its messages_before_persist already
  // went out): the rest (sync, rd.messages, apply, Advance) completes later; a crash
  // meanwhile loses it.
  std::optional<Ready> deferred;
  raftpb::VoterState logged_state = raftpb::VOTER;  // for the verbose log
  // The state machine: applied writes, key -> value.
  std::map<std::string, std::string> kv;
};

struct CommittedEntry {
  bool known = false;
  uint64_t term = 0;
  std::string data;
  // An upper bound on the term in which the entry was committed: the lowest term of any node
  // when it saw the entry committed (a node only learns commit indexes from its own term).
  uint64_t commit_term = 0;
  bool applied = false;  // applied somewhere (known may come first, from a commit index)
  raftpb::EntryType type = raftpb::ENTRY_NORMAL;
};

// A snapshot being streamed (SimOptions::slow_snapshots): MSG_SNAP delivered to the
// receiver's transport at `done_at`, if nothing broke it meanwhile.
struct SnapshotStream {
  uint64_t done_at = 0;
  uint64_t receiver_starts = 0;  // the receiver's process when the stream began
  uint64_t sender_starts = 0;    // the sender's
  raftpb::Message msg;
};

// kLeaseRead: when a follower last took a message from a leader, in the leader's own time.
struct LeaseMark {
  uint64_t leader_local_tick = 0;
  uint64_t follower_starts = 0;
};

struct InFlight {
  uint64_t deliver_at = 0;
  raftpb::Message msg;
};

enum class PartitionKind { kNone, kSymmetric, kOneWay, kBridge, kLeaderIsolated };

class Simulation {
 public:
  Simulation(const SimOptions& options, SimStats* stats)
      : opt_(options), rng_(options.seed), stats_(stats) {}

  absl::Status Run();

 private:
  // ---- setup ----
  Config MakeConfig(uint64_t id) const;
  void StartNode(SimNode& n);
  // A new empty disk for `n` (MemoryStorage, or a WalStorage on a new file system).
  void NewDisk(SimNode& n);
  // What a crash leaves of n's disk now: what was synced, and with torn_crashes a random
  // prefix of what was not. A WAL is reopened (recovered) from that.
  void CrashDisk(SimNode& n);
  // The hard state a crash that keeps nothing unsynced would leave.
  raftpb::HardState DurableHardState(const SimNode& n) const;
  // Opens the WAL on n.env (a crash's file system); Fail()s on error.
  bool OpenWal(SimNode& n);

  // ---- events ----
  void Tick();
  void ChangeFaults();
  void Crash(SimNode& n, const char* why, bool lose_disk = false);
  // Whether `n` may lose its disk now: the nodes without their data (down with a lost disk,
  // or not yet voters again, by what is durable) would remain a minority.
  bool MayLoseDisk(const SimNode& n) const;
  // Membership runs: whether node `id` is without its data (down with a lost disk, never
  // started, or not a voter by its durable state).
  bool WithoutData(uint64_t id) const;
  // Whether the voters of `cs` keep a majority with their data even if every learner of `cs`
  // were promoted, and `lost` (if not 0) lost its data too (the operator's rule: a minority
  // at most, in every configuration in play).
  bool MajorityKeepsData(const raftpb::ConfState& cs, uint64_t lost) const;
  // Whether some node's log (up: in memory; down: its storage) holds a change of the voter
  // set that is not known committed.
  bool VoterChangeInFlight() const;
  void MaybeCrashOrRestart();
  void ClientOps();
  void DeliverDue();
  // `streamed`: a MSG_SNAP whose stream finished (SimOptions::slow_snapshots).
  void Deliver(const raftpb::Message& m, bool streamed = false);
  void Send(raftpb::Message m);
  void ProcessReady(SimNode& n);
  // Steps 1 (sync) to 4 of a Ready whose writes were issued: sync, send rd.messages, apply,
  // Advance.
  void CompleteReady(SimNode& n, Ready rd);
  // `early`: kApplyBeforeCommit applying an entry not known to be committed (no client is
  // answered for it, so only the state machine check can notice).
  void Apply(SimNode& n, const raftpb::Entry& e, bool early = false);
  void MaybeSnapshot(SimNode& n);
  // The key/value state after the committed entries 1..index (what a snapshot at `index`
  // holds); Fail()s if one of them is not known.
  std::map<std::string, std::string> StateAt(uint64_t index);
  // Clients: writes whose outcome is unknown are proposed again after a timeout.
  void RetryWrites();
  // Proposes `data` on `n`, following the leader hint once; records the proposal.
  void ProposeWrite(SimNode* n, const std::string& data);

  // ---- membership (SimOptions::membership) ----
  // Random additions, promotions, removals and transfers on the leader; retires removed
  // nodes some time after their removal committed.
  void MembershipOps();
  void Retire(SimNode& n);
  std::vector<uint64_t> StartedIds() const;
  SimNode* RandomStarted();
  // The configuration in force on `n`, derived by the checker from n's log and storage
  // (independently of the core's bookkeeping).
  raftpb::ConfState ConfInForce(const SimNode& n) const;

  // ---- checks ----
  // No commit without a quorum of the configuration in force: run after every step of a
  // leader (see simulation.h).
  void CheckCommitQuorum(SimNode& n);
  // Every check that looks at one node's state, run after each thing that can change it (a
  // message stepped, a tick, a proposal, an Advance), so that a state that lasts less than a
  // tick is seen too: election safety and leader completeness (CheckLeader), commit safety
  // (CheckCommits), the commit quorum.
  void AfterChange(SimNode& n);
  void CheckLeader(SimNode& n);
  void CheckLeaders();
  // Entries below a node's commit index are committed: the first node to say so records
  // each (index, term) as committed; every later one must agree.
  void CheckCommits(SimNode& n);
  // Snapshot streams that finished (or broke) by now (SimOptions::slow_snapshots).
  void StreamSnapshots();
  // Per-node clocks (SimOptions::drift): new rates, and sometimes a stall.
  void ChangeClocks();
  // kLeaseRead: serve read `ctx` on leader `n` from its lease if it holds one.
  bool LeaseRead(SimNode& n);
  void BridgePhase();
  void CheckLogMatching();
  void Fail(std::string what);

  // ---- helpers ----
  bool Chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng_) < p; }
  uint64_t Uniform(uint64_t lo, uint64_t hi) {  // inclusive
    return std::uniform_int_distribution<uint64_t>(lo, hi)(rng_);
  }
  SimNode& node(uint64_t id) { return nodes_[id - 1]; }
  bool Linked(uint64_t from, uint64_t to) const { return !blocked_.count({from, to}); }
  uint64_t CurrentLeader() const;
  // One line per node (role, term, leader, log, voter state), for failure messages.
  std::string NodeStates() const;
  void Log(const std::string& s) {
    if (opt_.verbose) std::fprintf(stderr, "[t=%llu] %s\n", (unsigned long long)now_, s.c_str());
  }

  const SimOptions opt_;
  std::mt19937_64 rng_;
  SimStats* stats_;
  int n_ = 3;
  bool pre_vote_ = true;
  bool check_quorum_ = true;
  uint64_t max_msg_bytes_ = 1 << 20;
  size_t max_inflight_ = 256;
  int heartbeat_tick_ = 1;
  uint64_t snapshot_every_ = 20;  // entries between snapshots (0: never)
  uint64_t retain_entries_ = 5;   // log tail kept after compaction
  // Harsh runs change faults every few ticks and crash often: many short terms with partly
  // replicated logs (where commit-rule and leader-completeness bugs show).
  bool harsh_ = false;
  Config::EmptyStart first_start_ = Config::EmptyStart::kNewCluster;
  uint64_t incarnations_ = 0;
  uint64_t next_new_id_ = 0;  // membership: the next id to add (ids are never reused)
  // The newest configuration known committed (applied somewhere), and its entry's index.
  raftpb::ConfState committed_conf_;
  uint64_t committed_conf_index_ = 0;
  // (leader, term) -> voter -> highest index it acknowledged (MSG_APP_RESP delivered).
  std::map<std::pair<uint64_t, uint64_t>, std::map<uint64_t, uint64_t>> acks_;
  // leader -> (term, commit index) last checked by CheckCommitQuorum.
  std::map<uint64_t, std::pair<uint64_t, uint64_t>> checked_commit_;

  std::vector<SimNode> nodes_;
  std::vector<InFlight> pool_;
  std::vector<SnapshotStream> streams_;
  wal::WalOptions wal_options_;
  // kLeaseRead: (leader, term) -> follower -> when it last took an append or heartbeat.
  std::map<std::pair<uint64_t, uint64_t>, std::map<uint64_t, LeaseMark>> lease_;
  uint64_t now_ = 0;
  bool faults_on_ = true;
  // Fault configuration of the current phase.
  double drop_prob_ = 0, dup_prob_ = 0, delay_prob_ = 0;
  uint64_t max_delay_ = 0;
  std::set<std::pair<uint64_t, uint64_t>> blocked_;
  uint64_t next_fault_change_ = 0;

  // Global truth.
  std::vector<CommittedEntry> committed_;  // by index
  std::map<uint64_t, uint64_t> leader_of_term_;
  std::vector<std::pair<uint64_t, uint64_t>> new_leaders_;  // (id, term) first seen this tick
  std::set<std::string> applied_data_;     // proposals applied (each at most once...)
  std::set<std::string> retried_;          // (... unless a client retried it)
  std::map<std::string, ClientWrite> unknown_;  // client writes awaiting their outcome
  std::map<std::string, uint64_t> write_index_;  // value -> newest index it was applied at
  std::map<std::string, uint64_t> acked_key_index_;  // key -> newest acknowledged write
  uint64_t max_acked_index_ = 0;
  uint64_t next_client_id_ = 0;
  std::optional<std::string> failure_;
};

constexpr int kElectionTick = 10;

Config Simulation::MakeConfig(uint64_t id) const {
  Config c;
  c.id = id;
  for (int i = 1; i <= n_; ++i) c.peers.push_back(i);
  c.election_tick = kElectionTick;
  c.heartbeat_tick = heartbeat_tick_;
  c.max_msg_bytes = max_msg_bytes_;
  c.max_inflight_msgs = max_inflight_;
  c.pre_vote = pre_vote_;
  c.check_quorum = check_quorum_;
  c.seed = opt_.seed;
  c.check_invariants = true;
  return c;
}

void Simulation::StartNode(SimNode& n) {
  Config c = MakeConfig(n.id);
  // Used only if the storage is empty: the first start, or after a lost disk.
  c.incarnation = ++incarnations_;
  if (n.restart_empty && opt_.membership && committed_conf_.voters_size() > 0) {
    // The operator restarts a node that lost its disk with the current members (its storage
    // no longer knows them); see rejoin.cc on what that relies on.
    c.peers = VotersOf(committed_conf_);
  }
  if (n.restart_empty) {
    n.empty_start = opt_.bug == SimOptions::Bug::kLostDiskVotes
                        ? Config::EmptyStart::kNewCluster
                        : Config::EmptyStart::kAskPeers;
    n.restart_empty = false;
  }
  c.empty_start = n.empty_start;
  // The state machine restarts from the snapshot the storage starts after.
  c.applied = n.storage->FirstIndex() - 1;
  n.applied = c.applied;
  n.kv = StateAt(n.applied);
  absl::StatusOr<std::unique_ptr<Raft>> r = Raft::Create(c, n.storage.get());
  if (!r.ok()) {
    Fail(absl::StrCat("node ", n.id, " failed to start: ", r.status().ToString()));
    return;
  }
  n.raft = std::move(*r);
  const raftpb::SnapshotMetadata meta = n.storage->snapshot_metadata();
  if (meta.index() > 0) {
    raftpb::Snapshot snap;
    *snap.mutable_metadata() = meta;
    snap.set_handle(absl::StrCat(meta.index()));
    n.raft->SetSnapshot(snap);
  }
  n.up = true;
  ++n.starts;
  n.seen_commit = 0;
}

constexpr char kWalDir[] = "/wal";

bool Simulation::OpenWal(SimNode& n) {
  wal::WalOptions o = wal_options_;
  o.env = n.env.get();
  absl::StatusOr<std::unique_ptr<wal::WalStorage>> w = wal::WalStorage::Open(kWalDir, o);
  if (!w.ok()) {
    Fail(absl::StrCat("node ", n.id, ": the WAL does not open: ", w.status().ToString()));
    return false;
  }
  n.storage = std::move(*w);
  return true;
}

void Simulation::NewDisk(SimNode& n) {
  if (!opt_.wal) {
    n.storage = std::make_unique<MemoryStorage>(/*track_durable=*/true);
    return;
  }
  n.storage.reset();
  n.env = std::make_unique<wal::testing::CrashEnv>();
  OpenWal(n);
}

void Simulation::CrashDisk(SimNode& n) {
  if (!opt_.wal) {
    auto* mem = static_cast<MemoryStorage*>(n.storage.get());
    const size_t unsynced = mem->unsynced_records();
    const size_t keep = opt_.torn_crashes && unsynced > 0 ? Uniform(0, unsynced) : 0;
    if (keep > 0) {
      Log(absl::StrCat("node ", n.id, " keeps ", keep, " of ", unsynced, " unsynced records"));
      if (stats_) ++stats_->torn_crashes;
    }
    n.storage = mem->CrashCopy(keep);
    return;
  }
  n.storage.reset();  // drops the WAL's unwritten buffer, as a crash does
  n.env = n.env->Crash([&](size_t unsynced) -> size_t {
    const size_t keep = opt_.torn_crashes && unsynced > 0 ? Uniform(0, unsynced) : 0;
    if (keep > 0) {
      Log(absl::StrCat("node ", n.id, " keeps ", keep, " of ", unsynced, " unsynced bytes"));
      if (stats_) ++stats_->torn_crashes;
    }
    return keep;
  });
  OpenWal(n);
}

raftpb::HardState Simulation::DurableHardState(const SimNode& n) const {
  if (!opt_.wal) return static_cast<MemoryStorage*>(n.storage.get())->DurableCopy()->hard_state();
  std::unique_ptr<wal::testing::CrashEnv> env = n.env->Crash([](size_t) { return 0; });
  wal::WalOptions o = wal_options_;
  o.env = env.get();
  absl::StatusOr<std::unique_ptr<wal::WalStorage>> w = wal::WalStorage::Open(kWalDir, o);
  return w.ok() ? (*w)->hard_state() : raftpb::HardState();
}

void Simulation::Fail(std::string what) {
  if (!failure_) {
    failure_ = absl::StrCat("t=", now_, ": ", what);
    Log("FAIL " + *failure_);
  }
}

uint64_t Simulation::CurrentLeader() const {
  uint64_t best = 0, best_term = 0;
  for (const SimNode& n : nodes_) {
    if (n.up && n.raft->role() == Role::kLeader && n.raft->term() >= best_term) {
      best = n.id;
      best_term = n.raft->term();
    }
  }
  return best;
}

std::string Simulation::NodeStates() const {
  std::string states;
  for (const SimNode& n : nodes_) {
    if (!n.started) continue;
    if (!n.up) {
      absl::StrAppend(&states, " [", n.id, n.retired ? ": retired]" : ": down]");
      continue;
    }
    const RaftStatus s = n.raft->Status();
    absl::StrAppend(&states, " [", n.id, ": ", RoleName(s.role), " term ", s.term, " lead ",
                    s.lead, " commit ", s.commit, " last ", s.last_index, "/",
                    n.raft->log().LastTerm(), " ", raftpb::VoterState_Name(s.voter_state), " ",
                    DescribeConfState(s.conf_state), "@", s.conf_index,
                    s.rejoin_detail.empty() ? "" : ": ", s.rejoin_detail, "]");
  }
  return states;
}

// ---------------------------------------------------------------- faults

void Simulation::ChangeClocks() {
  for (SimNode& n : nodes_) {
    n.clock_rate = Chance(0.5) ? 1.0 : std::uniform_real_distribution<double>(0.6, 1.5)(rng_);
    if (Chance(harsh_ ? 0.1 : 0.03)) {
      // A stall (a paused process, a long GC, a swapped-out page): no ticks for a while.
      n.stalled_until = now_ + Uniform(2, 15);
      Log(absl::StrCat("node ", n.id, " stalls until t=", n.stalled_until));
      if (stats_) ++stats_->stalls;
    }
  }
}

void Simulation::ChangeFaults() {
  if (opt_.drift) ChangeClocks();
  next_fault_change_ = now_ + (harsh_ ? Uniform(3, 12) : Uniform(10, 40));
  blocked_.clear();
  drop_prob_ = dup_prob_ = delay_prob_ = 0;
  max_delay_ = 0;
  if (Chance(0.25)) {
    Log("faults: none");
    return;
  }
  const double drops[] = {0, 0.02, 0.1, 0.3};
  drop_prob_ = drops[Uniform(0, 3)];
  dup_prob_ = Chance(0.3) ? 0.05 : 0;
  if (Chance(0.5)) {
    delay_prob_ = 0.3;
    // Harsh runs sometimes delay messages past an election timeout.
    max_delay_ = harsh_ && Chance(0.3) ? Uniform(5, 15) : Uniform(1, 4);
  }
  PartitionKind kind = static_cast<PartitionKind>(Uniform(0, 4));
  if (harsh_ && Chance(0.4)) kind = PartitionKind::kLeaderIsolated;
  std::vector<uint64_t> ids = StartedIds();
  std::shuffle(ids.begin(), ids.end(), rng_);
  auto cut_both = [&](uint64_t a, uint64_t b) {
    blocked_.insert({a, b});
    blocked_.insert({b, a});
  };
  switch (kind) {
    case PartitionKind::kNone:
      break;
    case PartitionKind::kSymmetric: {
      const size_t k = Uniform(1, ids.size() / 2);  // minority side size
      for (size_t i = 0; i < k; ++i)
        for (size_t j = k; j < ids.size(); ++j) cut_both(ids[i], ids[j]);
      break;
    }
    case PartitionKind::kOneWay: {
      const std::vector<uint64_t> sorted = StartedIds();
      const int cuts = static_cast<int>(Uniform(1, sorted.size()));
      for (int i = 0; i < cuts; ++i) {
        const uint64_t a = sorted[Uniform(1, sorted.size()) - 1];
        const uint64_t b = sorted[Uniform(1, sorted.size()) - 1];
        if (a != b) blocked_.insert({a, b});
      }
      break;
    }
    case PartitionKind::kBridge: {
      // ids[0] sees everyone; the rest split into two halves that cannot see each other.
      const size_t half = 1 + (ids.size() - 1) / 2;
      for (size_t i = 1; i < half; ++i)
        for (size_t j = half; j < ids.size(); ++j) cut_both(ids[i], ids[j]);
      break;
    }
    case PartitionKind::kLeaderIsolated: {
      const uint64_t l = CurrentLeader();
      if (l != 0) {
        for (uint64_t i : ids)
          if (i != l) cut_both(l, i);
      }
      break;
    }
  }
  Log(absl::StrFormat("faults: drop=%.2f dup=%.2f delay=%.1f/%d partition=%d blocked=%d",
                      drop_prob_, dup_prob_, delay_prob_, max_delay_, static_cast<int>(kind),
                      blocked_.size()));
}

bool Simulation::WithoutData(uint64_t id) const {
  const SimNode& n = nodes_[id - 1];
  if (!n.started || (!n.up && n.restart_empty)) return true;
  const raftpb::HardState hs = DurableHardState(n);
  return hs.voter_state() != raftpb::VOTER || (hs.incarnation() == 0 && hs.term() == 0);
}

bool Simulation::MajorityKeepsData(const raftpb::ConfState& cs, uint64_t lost) const {
  int without_data = 0;
  for (uint64_t id : MembersOf(cs)) {
    if (id == lost || WithoutData(id)) ++without_data;
  }
  return without_data <= (cs.voters_size() - 1) / 2;
}

bool Simulation::VoterChangeInFlight() const {
  for (const SimNode& n : nodes_) {
    if (!n.started || n.retired || !n.storage) continue;
    raftpb::ConfState cs;
    if (n.up) {
      if (n.raft->log().LastConfIndex() <= committed_conf_index_) continue;
      cs = n.raft->configuration();
    } else {
      // The newest ENTRY_CONF in its storage above the committed one.
      absl::StatusOr<std::vector<raftpb::Entry>> entries = n.storage->Entries(
          std::max(n.storage->FirstIndex(), committed_conf_index_ + 1),
          n.storage->LastIndex() + 1, std::numeric_limits<uint64_t>::max());
      bool found = false;
      if (entries.ok()) {
        for (auto it = entries->rbegin(); it != entries->rend() && !found; ++it) {
          if (it->type() != raftpb::ENTRY_CONF) continue;
          absl::StatusOr<raftpb::ConfState> c = ConfStateOfEntry(*it);
          if (c.ok()) {
            cs = *c;
            found = true;
          }
        }
      }
      if (!found) continue;
    }
    if (VotersOf(cs) != VotersOf(committed_conf_)) return true;
  }
  return false;
}

bool Simulation::MayLoseDisk(const SimNode& x) const {
  if (opt_.membership) {
    // Liveness with lost disks needs no voter change in flight (architecture.md: an
    // uncommitted change can leave the nodes that would elect a leader split between two
    // configurations, one of them a learner with a newer log that cannot campaign; with a
    // minority without data on top there may be no leader at all).
    if (VoterChangeInFlight()) return false;
    // Every configuration in play: the committed one, and what each node has in force.
    if (!MajorityKeepsData(committed_conf_, x.id)) return false;
    for (const SimNode& n : nodes_) {
      if (n.up && !MajorityKeepsData(n.raft->configuration(), x.id)) return false;
    }
    return true;
  }
  int without_data = 1;  // x itself
  for (const SimNode& n : nodes_) {
    if (n.id == x.id) continue;
    if (!n.up && n.restart_empty) {
      ++without_data;
      continue;
    }
    const raftpb::HardState hs = DurableHardState(n);
    if (hs.voter_state() != raftpb::VOTER || (hs.incarnation() == 0 && hs.term() == 0)) {
      ++without_data;  // not a voter, or never decided anything durable
    }
  }
  return without_data <= (n_ - 1) / 2;
}

void Simulation::Crash(SimNode& n, const char* why, bool lose_disk) {
  Log(absl::StrCat(lose_disk ? "crash and lose the disk of node " : "crash node ", n.id, " (",
                   why, ")"));
  if (stats_) ++stats_->crashes;
  n.up = false;
  n.restart_at = now_ + Uniform(3, 40);
  n.raft.reset();
  CrashDisk(n);  // unsynced writes are lost (with torn_crashes: some of them)
  if (lose_disk) {
    if (stats_) ++stats_->disks_lost;
    NewDisk(n);
    n.restart_empty = true;
  }
  n.proposals.clear();  // outcome unknown to those clients
  n.reads.clear();
  n.deferred.reset();
}

void Simulation::MaybeCrashOrRestart() {
  for (SimNode& n : nodes_) {
    if (!n.up && n.started && !n.retired && (now_ >= n.restart_at || !faults_on_)) {
      Log(absl::StrCat("restart node ", n.id));
      StartNode(n);
    }
  }
  if (faults_on_ && Chance(harsh_ ? 0.04 : 0.01)) {
    SimNode& n = *RandomStarted();
    if (n.up) Crash(n, "between steps", Chance(0.3) && MayLoseDisk(n));
  }
}

// ---------------------------------------------------------------- clients

void Simulation::ClientOps() {
  if (Chance(0.4)) {
    SimNode* n = RandomStarted();
    if (n->up) {
      const std::string data = absl::StrCat("k", Uniform(0, 4), "=w", ++next_client_id_);
      ProposeWrite(n, data);
    }
  }
  RetryWrites();
  if (Chance(0.3)) {
    SimNode& n = *RandomStarted();
    if (n.up && opt_.bug == SimOptions::Bug::kLeaseRead && LeaseRead(n)) {
      // Served at once from the leader's state machine, at its commit index.
      const uint64_t index = n.raft->log().committed();
      Log(absl::StrCat("node ", n.id, " reads from its lease at ", index));
      if (stats_) ++stats_->reads_served;
      if (index < max_acked_index_) {
        return Fail(absl::StrCat("node ", n.id, " read from its lease at index ", index,
                                 " but write at ", max_acked_index_,
                                 " was acknowledged before the read started"));
      }
    } else if (n.up) {
      std::string ctx = absl::StrCat("r", ++next_client_id_);
      const std::string key = absl::StrCat("k", Uniform(0, 4));
      if (n.raft->ReadIndex(ctx).ok()) {
        n.reads[ctx] = PendingRead{max_acked_index_, {}, key, acked_key_index_[key]};
      }
      AfterChange(n);
      ProcessReady(n);
    }
  }
}

void Simulation::ProposeWrite(SimNode* n, const std::string& data) {
  absl::StatusOr<EntryId> r = n->raft->Propose(data);
  if (!r.ok()) {
    // Follow the leader hint once, as a client library would.
    std::optional<uint64_t> hint = LeaderHint(r.status());
    if (hint && node(*hint).up) {
      n = &node(*hint);
      r = n->raft->Propose(data);
    }
  }
  if (r.ok()) {
    n->proposals[r->index] = Proposal{r->term, data};
    // The client waits for the answer, then (a timeout, a lost leader) tries again.
    ClientWrite& w = unknown_[data];
    w.deadline = now_ + Uniform(15, 40);
  }
  AfterChange(*n);
  ProcessReady(*n);
}

void Simulation::RetryWrites() {
  std::vector<std::string> due;
  for (auto it = unknown_.begin(); it != unknown_.end();) {
    if (it->second.deadline > now_) {
      ++it;
    } else if (it->second.attempts >= 3) {  // the client gives up: the outcome stays unknown
      it = unknown_.erase(it);
    } else {
      ++it->second.attempts;
      it->second.deadline = now_ + Uniform(15, 40);
      due.push_back(it->first);
      ++it;
    }
  }
  for (const std::string& data : due) {
    // (Acknowledged meanwhile, by an earlier attempt applied while retrying another.)
    if (!unknown_.count(data) || failure_) continue;
    SimNode* n = RandomStarted();
    if (!n->up) continue;
    Log(absl::StrCat("client retries ", data, " on node ", n->id));
    retried_.insert(data);
    if (stats_) ++stats_->retries;
    ProposeWrite(n, data);
  }
}

bool Simulation::LeaseRead(SimNode& n) {
  if (n.raft->role() != Role::kLeader) return false;
  const uint64_t term = n.raft->term();
  const RaftLog& log = n.raft->log();
  if (log.TermOrZero(log.committed()) != term) return false;  // nothing committed yet
  const std::map<uint64_t, LeaseMark>& marks = lease_[{n.id, term}];
  size_t held = 0;
  const std::vector<uint64_t> voters = VotersOf(n.raft->configuration());
  for (uint64_t v : voters) {
    if (v == n.id) {
      ++held;
      continue;
    }
    auto it = marks.find(v);
    // The follower's timer restarted at `leader_local_tick` of our clock; it refuses votes
    // for election_tick ticks of ITS clock (the CheckQuorum lease), unless it restarted.
    if (it != marks.end() && it->second.follower_starts == node(v).starts &&
        n.local_ticks + 1 < it->second.leader_local_tick + kElectionTick) {
      ++held;
    }
  }
  return held >= voters.size() / 2 + 1;
}

// ---------------------------------------------------------------- network

void Simulation::Send(raftpb::Message m) {
  InFlight f;
  f.deliver_at = now_;
  if (faults_on_ && Chance(delay_prob_)) f.deliver_at += Uniform(1, max_delay_);
  f.msg = std::move(m);
  pool_.push_back(std::move(f));
}

void Simulation::DeliverDue() {
  for (int guard = 0; guard < 100000 && !failure_; ++guard) {
    // Pick a random due message: delivery order within a tick is random (reordering).
    std::vector<size_t> due;
    for (size_t i = 0; i < pool_.size(); ++i) {
      if (pool_[i].deliver_at <= now_) due.push_back(i);
    }
    if (due.empty()) return;
    const size_t pick = due[Uniform(0, due.size() - 1)];
    raftpb::Message m = std::move(pool_[pick].msg);
    pool_[pick] = std::move(pool_.back());
    pool_.pop_back();
    Deliver(m);
    if (faults_on_ && Chance(dup_prob_)) Deliver(m);
  }
}

void Simulation::Deliver(const raftpb::Message& m, bool streamed) {
  if (m.to() == 0 || m.to() > nodes_.size()) return;
  SimNode& to = node(m.to());
  SimNode& from = node(m.from());
  const bool ok = to.up && Linked(m.from(), m.to()) && !(faults_on_ && Chance(drop_prob_));
  if (ok && m.type() == raftpb::MSG_SNAP && opt_.slow_snapshots && !streamed && from.up) {
    // The receiver's transport starts streaming the snapshot's data; the message reaches
    // the receiver's core when the stream completes (StreamSnapshots).
    streams_.push_back(SnapshotStream{now_ + Uniform(1, 8), to.starts, from.starts, m});
    Log(absl::StrCat("snapshot ", m.snapshot().metadata().index(), " streams from ", m.from(),
                     " to ", m.to(), " until t=", streams_.back().done_at));
    return;
  }
  if (ok) {
    if (stats_) ++stats_->messages_delivered;
    const bool ack_to_leader = m.type() == raftpb::MSG_APP_RESP && !m.reject() &&
                               to.raft->role() == Role::kLeader && m.term() == to.raft->term();
    if (ack_to_leader) {
      uint64_t& acked = acks_[{to.id, m.term()}][m.from()];
      acked = std::max(acked, m.index());
    }
    if (opt_.bug == SimOptions::Bug::kLearnerAckCounted && ack_to_leader &&
        IsLearnerIn(to.raft->configuration(), m.from())) {
      // The lie: the same acknowledgement, as from a voter that did not send it.
      std::vector<uint64_t> others;
      for (uint64_t v : to.raft->configuration().voters()) {
        if (v != to.id && node(v).up) others.push_back(v);
      }
      if (!others.empty()) {
        raftpb::Message lie = m;
        const uint64_t v = others[Uniform(0, others.size() - 1)];
        lie.set_from(v);
        lie.set_incarnation(node(v).raft->Status().incarnation);
        lie.set_voter_state(raftpb::VOTER);
        to.raft->Step(lie);
      }
    }
    if (opt_.bug == SimOptions::Bug::kAcceptAnyPrev && m.type() == raftpb::MSG_APP &&
        m.index() > m.commit()) {
      raftpb::Message lie = m;
      lie.set_log_term(to.raft->log().TermOrZero(m.index()));
      to.raft->Step(lie);
    } else if (opt_.bug == SimOptions::Bug::kVoteIgnoresLog &&
               (m.type() == raftpb::MSG_VOTE || m.type() == raftpb::MSG_PRE_VOTE)) {
      raftpb::Message lie = m;
      lie.set_log_term(m.term());  // no voter's last entry is of a later term
      lie.set_index(uint64_t{1} << 40);
      to.raft->Step(lie);
    } else {
      to.raft->Step(m);
    }
    // At once, not at the end of the tick: a leader elected and deposed within a tick is
    // seen, and a second leader of a term would confuse the next message it gets (an ack for
    // entries it never had) before a later check ran.
    AfterChange(to);
    if (failure_) return;
    if (opt_.bug == SimOptions::Bug::kLeaseRead &&
        (m.type() == raftpb::MSG_APP || m.type() == raftpb::MSG_HEARTBEAT) &&
        to.raft->lead() == m.from() && to.raft->term() == m.term() && from.up) {
      // The follower's election timer restarted now: the leader's lease runs from its own
      // clock's reading at this moment.
      lease_[{m.from(), m.term()}][to.id] = LeaseMark{from.local_ticks, to.starts};
    }
    if (to.deferred && faults_on_ && Chance(0.02)) {
      Crash(to, "leader before its fsync completed");
    } else {
      ProcessReady(to);
    }
  }
  if (m.type() == raftpb::MSG_SNAP && from.up) {
    // The transport streamed (or failed to stream) the snapshot: tell the sender.
    from.raft->ReportSnapshot(m.to(), ok);
    AfterChange(from);
    ProcessReady(from);
  } else if (!ok && from.up && Chance(0.1)) {
    from.raft->ReportUnreachable(m.to());
    AfterChange(from);
    ProcessReady(from);
  }
}

void Simulation::StreamSnapshots() {
  for (size_t i = 0; i < streams_.size() && !failure_;) {
    if (streams_[i].done_at > now_) {
      ++i;
      continue;
    }
    SnapshotStream st = std::move(streams_[i]);
    streams_[i] = std::move(streams_.back());
    streams_.pop_back();
    SimNode& to = node(st.msg.to());
    SimNode& from = node(st.msg.from());
    if (!from.up || from.starts != st.sender_starts) continue;  // the sender died: no report
    if (to.starts != st.receiver_starts || (faults_on_ && Chance(0.1))) {
      // The receiver restarted meanwhile, or the stream broke.
      Log(absl::StrCat("snapshot stream from ", from.id, " to ", to.id, " broke"));
      if (stats_) ++stats_->snapshot_streams_broken;
      from.raft->ReportSnapshot(to.id, false);
      AfterChange(from);
      ProcessReady(from);
      continue;
    }
    Deliver(st.msg, /*streamed=*/true);  // fails too if the receiver is down or cut off now
  }
}

// ---------------------------------------------------------------- the raft loop

void Simulation::ProcessReady(SimNode& n) {
  while (n.up && !failure_) {
    if (n.deferred) {
      // The background fsync completes at a random later point (at the latest at the end of
      // the tick).
      if (faults_on_ && !Chance(0.3)) return;
      Ready rd = std::move(*n.deferred);
      n.deferred.reset();
      CompleteReady(n, std::move(rd));
      continue;
    }
    if (!n.raft->HasReady()) return;
    Ready rd = n.raft->GetReady();
    if (opt_.verbose && rd.hard_state && rd.hard_state->voter_state() != n.logged_state) {
      n.logged_state = rd.hard_state->voter_state();
      Log(absl::StrCat("node ", n.id, " is ", raftpb::VoterState_Name(n.logged_state),
                       " at term ", rd.hard_state->term(), " vote ", rd.hard_state->vote(),
                       " commit ", rd.hard_state->commit(), " last ",
                       n.raft->log().LastIndex()));
    }
    // kvd's order (the caller contract in raft.h). 0. What the core lets go before the
    // persist step leaves now.
    const bool sent_early = !rd.messages_before_persist.empty();
    for (raftpb::Message& m : rd.messages_before_persist) Send(std::move(m));
    // 1. Persist (issue the writes; the fsync follows).
    if (rd.snapshot) {
      const raftpb::SnapshotMetadata& meta = rd.snapshot->metadata();
      if (!n.storage->ApplySnapshot(meta).ok()) return Fail("ApplySnapshot failed");
      const CommittedEntry* c = meta.index() < committed_.size() ? &committed_[meta.index()]
                                                                 : nullptr;
      if (c == nullptr || !c->known || c->term != meta.term()) {
        return Fail(absl::StrCat("node ", n.id, " installs snapshot ", meta.index(), "/",
                                 meta.term(), " that is not a committed prefix"));
      }
      if (meta.index() < n.applied) {
        return Fail(absl::StrCat("node ", n.id, " snapshot moves applied back"));
      }
      n.applied = meta.index();
      n.kv = StateAt(meta.index());
      if (stats_) ++stats_->snapshots_installed;
    }
    const bool hs_first = opt_.bug == SimOptions::Bug::kHardStateFirst;
    if (hs_first && rd.hard_state && !n.storage->SetHardState(*rd.hard_state).ok()) {
      return Fail("SetHardState failed");
    }
    if (!n.storage->Append(rd.entries).ok()) return Fail("storage Append failed");
    if (!hs_first && rd.hard_state && opt_.bug != SimOptions::Bug::kForgetVotes &&
        !n.storage->SetHardState(*rd.hard_state).ok()) {
      return Fail("SetHardState failed");
    }
    // Any node may die between its write and its fsync (with torn_crashes a crash keeps part
    // of what it wrote; else none of it, and nothing depended on it yet).
    if (rd.must_sync && faults_on_ && Chance(0.003)) {
      Crash(n, "after writing, before fsync");
      return;
    }
    // Messages went out ahead of entries not yet synced: sometimes the node crashes before
    // the fsync, or the fsync finishes later (deferred) while the cluster moves on.
    if (sent_early && faults_on_ && !rd.entries.empty()) {
      if (Chance(0.01)) {
        Crash(n, "leader after sending, before fsync");
        return;
      }
      if (Chance(0.25)) {
        n.deferred = std::move(rd);
        return;
      }
    }
    CompleteReady(n, std::move(rd));
  }
}

void Simulation::CompleteReady(SimNode& n, Ready rd) {
  // A Ready that only moved the commit index needs no fsync; skipping it sometimes means a
  // crash can lose the commit index (and compactions) since the last sync.
  if (opt_.bug != SimOptions::Bug::kNoFsync && (rd.must_sync || Chance(0.5)) &&
      !n.storage->Sync().ok()) {
    return Fail("Sync failed");
  }
  // 2. Send what waited for the persist step.
  for (raftpb::Message& m : rd.messages) Send(std::move(m));
  // 3. Apply.
  if (opt_.bug == SimOptions::Bug::kApplyBeforeCommit) {
    for (const raftpb::Entry& e : rd.entries) {
      if (e.index() == n.applied + 1) Apply(n, e, /*early=*/true);
    }
  }
  for (const raftpb::Entry& e : rd.committed_entries) {
    if (opt_.bug == SimOptions::Bug::kApplyBeforeCommit && e.index() <= n.applied) continue;
    Apply(n, e);
  }
  if (failure_) return;
  for (const ReadState& rs : rd.read_states) {
    auto it = n.reads.find(rs.context);
    if (it == n.reads.end() || it->second.index) continue;  // duplicate answer
    const uint64_t index =
        opt_.bug == SimOptions::Bug::kReadTooEarly ? rs.index / 2 : rs.index;
    if (index < it->second.required) {
      return Fail(absl::StrCat("node ", n.id, " read ", rs.context, " confirmed at index ",
                               index, " but write at ", it->second.required,
                               " was acknowledged before the read started"));
    }
    it->second.index = index;
  }
  // 4. Advance.
  n.raft->Advance(rd);
  AfterChange(n);
  // Reads are served once the state machine caught up with their index, from its state.
  for (auto it = n.reads.begin(); it != n.reads.end();) {
    if (it->second.index && (*it->second.index <= n.applied ||
                             opt_.bug == SimOptions::Bug::kServeBeforeApplied)) {
      if (stats_) ++stats_->reads_served;
      const PendingRead& r = it->second;
      auto kv = n.kv.find(r.key);
      const std::string value = kv == n.kv.end() ? "" : kv->second;
      const uint64_t written_at = value.empty() ? 0 : write_index_[value];
      if (written_at < r.key_required) {
        return Fail(absl::StrCat("node ", n.id, " read ", it->first, " of ", r.key, " = '",
                                 value, "' (written at ", written_at, ") but the write at ",
                                 r.key_required, " to ", r.key,
                                 " was acknowledged before the read started"));
      }
      it = n.reads.erase(it);
    } else {
      ++it;
    }
  }
  MaybeSnapshot(n);
}

void Simulation::Apply(SimNode& n, const raftpb::Entry& e, bool early) {
  if (e.index() != n.applied + 1) {
    return Fail(absl::StrCat("node ", n.id, " applies ", e.index(), " after ", n.applied));
  }
  n.applied = e.index();
  if (committed_.size() <= e.index()) committed_.resize(e.index() + 1);
  CommittedEntry& c = committed_[e.index()];
  const uint64_t term_now = n.raft->term();
  if (c.known && (c.term != e.term() || c.data != e.data())) {
    return Fail(absl::StrCat("state machine safety: node ", n.id, " applies ", e.index(), "/",
                             e.term(), " '", e.data(), "' but ", c.term, " '", c.data,
                             "' was ", c.applied ? "applied" : "committed", " there before"));
  }
  if (!c.known) {
    c.known = true;
    c.term = e.term();
    c.data = e.data();
    c.type = e.type();
    // (An early apply is no proof of commitment: leader completeness does not count it.)
    c.commit_term = early ? std::numeric_limits<uint64_t>::max() : term_now;
  } else if (!early) {
    c.commit_term = std::min(c.commit_term, term_now);
  }
  if (!c.applied) {
    c.applied = true;
    if (e.type() == raftpb::ENTRY_CONF && !early && e.index() > committed_conf_index_) {
      absl::StatusOr<raftpb::ConfState> cs = ConfStateOfEntry(e);
      if (!cs.ok()) return Fail(std::string(cs.status().message()));
      committed_conf_ = *cs;
      committed_conf_index_ = e.index();
      for (uint64_t id : MembersOf(committed_conf_)) node(id).was_member = true;
      Log(absl::StrCat("committed configuration ", DescribeConfState(committed_conf_), " at ",
                       e.index()));
    }
    if (e.type() == raftpb::ENTRY_NORMAL && !e.data().empty() &&
        !applied_data_.insert(e.data()).second) {
      // Without client sessions in the core, a write whose outcome was unknown and that the
      // client proposed again may be applied twice (the same value both times): allowed for
      // retried writes only.
      if (!retried_.count(e.data())) {
        return Fail(absl::StrCat("write ", e.data(), " applied twice (index ", e.index(), ")"));
      }
      if (stats_) ++stats_->applied_twice;
    }
  }
  std::string key, value;
  if (ParseWrite(e, &key, &value)) {
    n.kv[key] = value;
    uint64_t& at = write_index_[value];
    at = std::max(at, e.index());
  }
  if (stats_) stats_->commit_index = std::max<uint64_t>(stats_->commit_index, e.index());
  auto p = n.proposals.find(e.index());
  if (p != n.proposals.end() && !early) {
    if (p->second.term == e.term() || opt_.bug == SimOptions::Bug::kAckByIndexOnly) {
      if (p->second.data != e.data() && opt_.bug != SimOptions::Bug::kAckByIndexOnly) {
        return Fail(absl::StrCat("proposal at ", e.index(), "/", e.term(), " changed data"));
      }
      // The client is told its write succeeded.
      max_acked_index_ = std::max(max_acked_index_, e.index());
      std::string pkey, pvalue;
      raftpb::Entry proposed;
      proposed.set_data(p->second.data);
      if (ParseWrite(proposed, &pkey, &pvalue)) {
        uint64_t& at = acked_key_index_[pkey];
        at = std::max(at, e.index());
      }
      unknown_.erase(p->second.data);
      if (stats_) ++stats_->writes_acked;
    }
    n.proposals.erase(p);
  }
}

std::map<std::string, std::string> Simulation::StateAt(uint64_t index) {
  std::map<std::string, std::string> kv;
  for (uint64_t i = 1; i <= index; ++i) {
    if (i >= committed_.size() || !committed_[i].known) {
      Fail(absl::StrCat("snapshot at ", index, " covers entry ", i, " not known committed"));
      return kv;
    }
    raftpb::Entry e;
    e.set_type(committed_[i].type);
    e.set_data(committed_[i].data);
    std::string key, value;
    if (ParseWrite(e, &key, &value)) kv[key] = value;
  }
  return kv;
}

void Simulation::MaybeSnapshot(SimNode& n) {
  // (kApplyBeforeCommit: what is applied may not be committed, so no snapshot covers it.)
  if (snapshot_every_ == 0 || opt_.bug == SimOptions::Bug::kApplyBeforeCommit) return;
  const uint64_t snap_index = n.storage->FirstIndex() - 1;
  if (n.applied < snap_index + snapshot_every_) return;
  // Only what is durable may be covered (the state machine's snapshot covers applied
  // entries, which are all persisted after Advance).
  raftpb::Snapshot snap;
  snap.mutable_metadata()->set_index(n.applied);
  absl::StatusOr<uint64_t> term = n.storage->Term(n.applied);
  if (!term.ok()) return Fail("snapshot: no term for applied index");
  snap.mutable_metadata()->set_term(*term);
  snap.set_handle(absl::StrCat(n.applied));
  n.raft->SetSnapshot(snap);
  const uint64_t compact_to = n.applied > retain_entries_ ? n.applied - retain_entries_ : 0;
  if (compact_to > snap_index && !n.storage->Compact(compact_to).ok()) {
    return Fail("Compact failed");
  }
}

// ---------------------------------------------------------------- membership

std::vector<uint64_t> Simulation::StartedIds() const {
  std::vector<uint64_t> ids;
  for (const SimNode& n : nodes_) {
    if (n.started && !n.retired) ids.push_back(n.id);
  }
  return ids;
}

SimNode* Simulation::RandomStarted() {
  const std::vector<uint64_t> ids = StartedIds();
  // Like Uniform(1, n_) when the started nodes are 1..n_ (runs without membership).
  return &node(ids[Uniform(1, ids.size()) - 1]);
}

void Simulation::Retire(SimNode& n) {
  Log(absl::StrCat("shut down removed node ", n.id));
  n.up = false;
  n.retired = true;
  n.raft.reset();
  n.proposals.clear();
  n.reads.clear();
  n.deferred.reset();
}

void Simulation::MembershipOps() {
  if (!opt_.membership) return;
  // An operator stops a removed node some time after its removal committed (at once when
  // the faults are over).
  for (SimNode& n : nodes_) {
    if (n.started && !n.retired && n.was_member && !IsMemberIn(committed_conf_, n.id) &&
        (!faults_on_ || Chance(0.05))) {
      Retire(n);
    }
  }
  if (!faults_on_ || !Chance(harsh_ ? 0.05 : 0.03)) return;
  const uint64_t l = CurrentLeader();
  if (l == 0) return;
  SimNode& leader = node(l);
  const raftpb::ConfState cs = leader.raft->configuration();
  auto pick = [&](const auto& ids) { return ids[Uniform(0, ids.size() - 1)]; };
  auto change = [&](raftpb::ConfChangeType type, uint64_t id) {
    raftpb::ConfChange cc;
    cc.set_type(type);
    cc.set_node_id(id);
    // The operator keeps a majority of every configuration with its data (as for lost
    // disks): no removal of a voter or promotion that would break it.
    // And no voter change while a node is without its data (the same liveness argument).
    bool any_without_data = false;
    for (uint64_t id : StartedIds()) any_without_data = any_without_data || WithoutData(id);
    absl::StatusOr<raftpb::ConfState> next = ApplyConfChange(cs, cc);
    const bool voter_change =
        type == raftpb::CONF_PROMOTE || (type == raftpb::CONF_REMOVE && IsVoterIn(cs, id));
    if (next.ok() && voter_change && (any_without_data || !MajorityKeepsData(*next, 0))) {
      Log(absl::StrCat("leader ", l, ": not ", raftpb::ConfChangeType_Name(type), " ", id,
                       ": too many nodes without their data"));
      return false;
    }
    absl::StatusOr<EntryId> r = leader.raft->ProposeConfChange(cc);
    Log(absl::StrCat("leader ", l, ": ", raftpb::ConfChangeType_Name(type), " ", id, ": ",
                     r.ok() ? absl::StrCat("at ", r->index) : r.status().ToString()));
    if (r.ok() && stats_) ++stats_->conf_changes;
    return r.ok();
  };
  switch (Uniform(0, 3)) {
    case 0:  // add a learner: a new node that starts empty and joins
      if (next_new_id_ <= nodes_.size() && cs.voters_size() + cs.learners_size() < 7 &&
          change(raftpb::CONF_ADD_LEARNER, next_new_id_)) {
        SimNode& n = node(next_new_id_++);
        n.started = true;
        NewDisk(n);
        n.empty_start = Config::EmptyStart::kNewCluster;  // a fresh id promised nothing
        StartNode(n);
      }
      break;
    case 1:  // promote a learner (refused while it lags)
      if (cs.learners_size() > 0) change(raftpb::CONF_PROMOTE, pick(cs.learners()));
      break;
    case 2: {  // remove a learner, or a voter (the leader too) while more than 3 remain
      const std::vector<uint64_t> members = MembersOf(cs);
      const uint64_t id = pick(members);
      if (IsLearnerIn(cs, id) || cs.voters_size() > 3) change(raftpb::CONF_REMOVE, id);
      break;
    }
    case 3: {  // leadership transfer, to a chosen voter or the most up-to-date one
      const uint64_t to = Chance(0.3) ? 0 : pick(cs.voters());
      absl::Status s = leader.raft->TransferLeadership(to);
      Log(absl::StrCat("leader ", l, ": transfer to ", to, ": ", s.ToString()));
      if (s.ok() && stats_) ++stats_->transfers;
      break;
    }
  }
  AfterChange(leader);
  ProcessReady(leader);
}

raftpb::ConfState Simulation::ConfInForce(const SimNode& n) const {
  const RaftLog& log = n.raft->log();
  absl::StatusOr<std::vector<raftpb::Entry>> entries =
      log.Entries(log.FirstIndex(), log.LastIndex() + 1, std::numeric_limits<uint64_t>::max());
  if (entries.ok()) {
    for (auto it = entries->rbegin(); it != entries->rend(); ++it) {
      if (it->type() != raftpb::ENTRY_CONF) continue;
      absl::StatusOr<raftpb::ConfState> cs = ConfStateOfEntry(*it);
      if (cs.ok()) return *cs;
    }
  }
  const raftpb::SnapshotMetadata meta = log.UnstableSnapshot()
                                            ? log.UnstableSnapshot()->metadata()
                                            : n.storage->snapshot_metadata();
  if (meta.conf_state().voters_size() > 0) return meta.conf_state();
  std::vector<uint64_t> bootstrap;
  for (int i = 1; i <= n_; ++i) bootstrap.push_back(i);
  return ConfStateOf(bootstrap);
}

// ---------------------------------------------------------------- checks

void Simulation::CheckCommitQuorum(SimNode& n) {
  if (!n.up || failure_ || n.raft->role() != Role::kLeader) return;
  const uint64_t term = n.raft->term(), commit = n.raft->log().committed();
  auto [it, first] = checked_commit_.try_emplace(n.id, term, commit);
  if (first || it->second.first != term) {
    it->second = {term, commit};  // what it learned before leading is not its doing
    return;
  }
  if (commit <= it->second.second) return;
  it->second.second = commit;
  const raftpb::ConfState cs = ConfInForce(n);
  const std::map<uint64_t, uint64_t>& acks = acks_[{n.id, term}];
  std::vector<uint64_t> backing;
  for (uint64_t v : cs.voters()) {
    auto a = acks.find(v);
    const uint64_t acked =
        v == n.id ? n.raft->log().StableLastIndex() : (a == acks.end() ? 0 : a->second);
    if (acked >= commit) backing.push_back(v);
  }
  if (backing.size() < static_cast<size_t>(cs.voters_size()) / 2 + 1) {
    Fail(absl::StrCat("commit without a quorum: leader ", n.id, " of term ", term,
                      " committed ", commit, " with acknowledgements from {",
                      absl::StrJoin(backing, ","), "} of ", DescribeConfState(cs)));
  }
}

void Simulation::CheckLeaders() {
  for (SimNode& n : nodes_) CheckLeader(n);
}

void Simulation::AfterChange(SimNode& n) {
  if (!n.up || failure_) return;
  CheckLeader(n);
  CheckCommits(n);
  CheckCommitQuorum(n);
}

void Simulation::CheckLeader(SimNode& n) {
  if (!n.up || failure_ || n.raft->role() != Role::kLeader) return;
  const uint64_t term = n.raft->term();
  auto [it, inserted] = leader_of_term_.emplace(term, n.id);
  if (!inserted) {
    if (it->second != n.id) {
      return Fail(absl::StrCat("election safety: nodes ", it->second, " and ", n.id,
                               " both lead term ", term));
    }
    return;
  }
  if (stats_) ++stats_->leaders_elected;
  new_leaders_.push_back({n.id, term});
  Log(absl::StrCat("node ", n.id, " leads term ", term));
  // Leader completeness: every entry committed in an earlier term is in the new leader's
  // log (or below its snapshot).
  const RaftLog& log = n.raft->log();
  for (uint64_t i = log.FirstIndex(); i < committed_.size(); ++i) {
    const CommittedEntry& c = committed_[i];
    if (!c.known || c.commit_term >= term) continue;
    if (log.TermOrZero(i) != c.term) {
      return Fail(absl::StrCat("leader completeness: leader ", n.id, " of term ", term,
                               " lacks committed entry ", i, "/", c.term));
    }
  }
}

void Simulation::CheckCommits(SimNode& n) {
  if (!opt_.check_commits || opt_.bug == SimOptions::Bug::kApplyBeforeCommit) return;
  const RaftLog& log = n.raft->log();
  const uint64_t commit = log.committed();
  if (commit <= n.seen_commit) return;
  const uint64_t from = std::max(n.seen_commit + 1, log.FirstIndex());
  n.seen_commit = commit;
  if (from > commit) return;
  if (committed_.size() <= commit) committed_.resize(commit + 1);
  absl::StatusOr<std::vector<raftpb::Entry>> entries =
      log.Entries(from, commit + 1, std::numeric_limits<uint64_t>::max());
  if (!entries.ok()) return;  // (compacted meanwhile: nothing new to learn)
  const uint64_t term_now = n.raft->term();
  for (const raftpb::Entry& e : *entries) {
    CommittedEntry& c = committed_[e.index()];
    if (!c.known) {
      c.known = true;
      c.term = e.term();
      c.data = e.data();
      c.type = e.type();
      c.commit_term = term_now;
    } else if (c.term != e.term() || c.data != e.data()) {
      return Fail(absl::StrCat("commit safety: node ", n.id, " has commit index ", commit,
                               " over entry ", e.index(), "/", e.term(), " but ", e.index(),
                               "/", c.term, " was committed there before"));
    } else {
      c.commit_term = std::min(c.commit_term, term_now);
    }
  }
}

void Simulation::CheckLogMatching() {
  // If two logs hold an entry with the same index and term, they are identical up to it.
  for (size_t a = 0; a < nodes_.size(); ++a) {
    if (!nodes_[a].up) continue;
    const RaftLog& la = nodes_[a].raft->log();
    for (size_t b = a + 1; b < nodes_.size(); ++b) {
      if (!nodes_[b].up) continue;
      const RaftLog& lb = nodes_[b].raft->log();
      const uint64_t lo = std::max(la.FirstIndex(), lb.FirstIndex());
      const uint64_t hi = std::min(la.LastIndex(), lb.LastIndex());
      bool matched_above = false;
      for (uint64_t i = hi; i >= lo && i > 0; --i) {
        const bool same = la.TermOrZero(i) == lb.TermOrZero(i);
        if (same) matched_above = true;
        if (!same && matched_above) {
          return Fail(absl::StrCat("log matching: nodes ", a + 1, " and ", b + 1,
                                   " agree above index ", i, " but differ at it"));
        }
      }
    }
  }
}

// ---------------------------------------------------------------- main loop

void Simulation::Tick() {
  ++now_;
  if (stats_) ++stats_->ticks;
  if (faults_on_ && now_ >= next_fault_change_) ChangeFaults();
  MaybeCrashOrRestart();
  ClientOps();
  MembershipOps();
  for (SimNode& n : nodes_) {
    if (!n.up) continue;
    // Lockstep, or (drift) as many ticks as the node's own clock took meanwhile.
    int ticks = 1;
    if (opt_.drift) {
      if (now_ < n.stalled_until) {
        ticks = 0;
      } else {
        n.clock_phase += n.clock_rate;
        ticks = static_cast<int>(n.clock_phase);
        n.clock_phase -= ticks;
      }
    }
    for (int i = 0; i < ticks && n.up && !failure_; ++i) {
      n.raft->Tick();
      ++n.local_ticks;
      AfterChange(n);
      ProcessReady(n);
    }
  }
  StreamSnapshots();
  DeliverDue();
  // Background fsyncs finish by the end of the tick.
  for (SimNode& n : nodes_) {
    if (n.up && n.deferred) {
      Ready rd = std::move(*n.deferred);
      n.deferred.reset();
      CompleteReady(n, std::move(rd));
      ProcessReady(n);
    }
  }
  DeliverDue();
  CheckLeaders();
  for (const auto& [id, term] : new_leaders_) {
    const SimNode& n = node(id);
    if (stats_ && (!n.up || n.raft->role() != Role::kLeader || n.raft->term() != term)) {
      ++stats_->brief_leaders;
    }
  }
  new_leaders_.clear();
  if (now_ % 10 == 0) CheckLogMatching();
}

void Simulation::BridgePhase() {
  faults_on_ = false;  // also restarts crashed nodes
  blocked_.clear();
  std::vector<uint64_t> ids;
  for (int i = 1; i <= n_; ++i) ids.push_back(i);
  std::shuffle(ids.begin(), ids.end(), rng_);
  // The claim holds for a cluster of voters: nodes that lost their data do not vote, so
  // fewer voters must reach each other (with two of five recovering, all three voters must
  // agree, and a bridge may keep two of them apart for good). Let them recover first.
  Log("bridge phase: waiting for every node to be a voter");
  auto all_voters = [&] {
    for (const SimNode& n : nodes_) {
      if (!n.up || n.raft->Status().voter_state != raftpb::VOTER) return false;
    }
    return true;
  };
  for (int t = 0; t < opt_.liveness_ticks && !all_voters() && !failure_; ++t) Tick();
  if (failure_) return;
  if (!all_voters()) {
    Fail(absl::StrCat(
        "liveness: nodes that lost their disk did not become voters again without faults;",
        NodeStates()));
    return;
  }
  const size_t half = 1 + (ids.size() - 1) / 2;
  for (size_t i = 1; i < half; ++i) {
    for (size_t j = half; j < ids.size(); ++j) {
      blocked_.insert({ids[i], ids[j]});
      blocked_.insert({ids[j], ids[i]});
    }
  }
  Log(absl::StrCat("bridge phase, bridge node ", ids[0]));
  const int kSettleTicks = 100, kStableTicks = 100;
  for (int t = 0; t < kSettleTicks && !failure_; ++t) Tick();
  auto max_term = [&] {
    uint64_t m = 0;
    for (const SimNode& n : nodes_) m = std::max(m, n.raft->term());
    return m;
  };
  // A node cut off from the leader may sit at a higher term it reached before the lease
  // held, but no term may grow once settled, and the leader must stay.
  const uint64_t term_before = max_term();
  const uint64_t leader_before = CurrentLeader();
  const uint64_t leader_term = leader_before ? node(leader_before).raft->term() : 0;
  for (int t = 0; t < kStableTicks && !failure_; ++t) Tick();
  if (failure_) return;
  const uint64_t l = CurrentLeader();
  if (leader_before == 0 || l != leader_before || node(l).raft->term() != leader_term ||
      max_term() != term_before) {
    Fail(absl::StrCat("bridge partition: no stable leader (leader ", leader_before, "@",
                      leader_term, " -> ", l, ", max term ", term_before, " -> ", max_term(),
                      ")"));
  }
  blocked_.clear();
  faults_on_ = true;
}

absl::Status Simulation::Run() {
  // Odd sizes most often; even ones (2, 4, 6: a tie splits no vote, the majority is half
  // plus one) too.
  const int sizes[] = {3, 3, 5, 5, 2, 4, 6};
  n_ = opt_.nodes > 0 ? opt_.nodes : sizes[Uniform(0, 6)];
  pre_vote_ = Chance(0.8);
  check_quorum_ = Chance(0.8) || opt_.bug == SimOptions::Bug::kLeaseRead;
  const uint64_t msg_bytes[] = {40, 200, 1 << 20};
  max_msg_bytes_ = msg_bytes[Uniform(0, 2)];
  const size_t inflight[] = {1, 2, 4, 256};
  max_inflight_ = inflight[Uniform(0, 3)];
  heartbeat_tick_ = static_cast<int>(Uniform(1, 3));
  snapshot_every_ = Chance(0.7) ? Uniform(5, 40) : 0;
  retain_entries_ = Uniform(0, 10);
  harsh_ = Chance(0.3);
  // Half the runs start like kvd by default: empty nodes asking each other.
  first_start_ = Chance(0.5) ? Config::EmptyStart::kAskPeers : Config::EmptyStart::kNewCluster;
  Log(absl::StrFormat("seed=%d n=%d pre_vote=%d check_quorum=%d max_msg_bytes=%d "
                      "max_inflight=%d heartbeat_tick=%d snapshot_every=%d retain=%d harsh=%d "
                      "ask_peers=%d",
                      opt_.seed, n_, pre_vote_, check_quorum_, max_msg_bytes_, max_inflight_,
                      heartbeat_tick_, snapshot_every_, retain_entries_, harsh_,
                      first_start_ == Config::EmptyStart::kAskPeers));
  if (opt_.wal) {
    // Small segments and buffers: rollovers, segment deletions after compaction, records
    // written before their sync (so a crash can tear them), entries read back from disk.
    const uint64_t segment[] = {4096, 16384, 1 << 20};
    wal_options_.max_segment_bytes = segment[Uniform(0, 2)];
    const uint64_t buffer[] = {1, 512, 4 << 20};
    wal_options_.max_buffer_bytes = buffer[Uniform(0, 2)];
    const uint64_t cache[] = {0, 2048, ~uint64_t{0}};
    wal_options_.max_cached_bytes = cache[Uniform(0, 2)];
  }
  // Membership runs have room for four nodes added over the run (ids are never reused).
  nodes_.resize(opt_.membership ? n_ + 4 : n_);
  for (size_t i = 0; i < nodes_.size(); ++i) nodes_[i].id = i + 1;
  for (int i = 0; i < n_; ++i) {
    nodes_[i].started = true;
    nodes_[i].was_member = true;
    NewDisk(nodes_[i]);
    nodes_[i].empty_start = first_start_;
    StartNode(nodes_[i]);
  }
  next_new_id_ = n_ + 1;
  {
    std::vector<uint64_t> bootstrap;
    for (int i = 1; i <= n_; ++i) bootstrap.push_back(i);
    committed_conf_ = ConfStateOf(bootstrap);
  }
  committed_.resize(1);

  for (int t = 0; t < opt_.chaos_ticks && !failure_; ++t) Tick();

  // With PreVote and CheckQuorum, a stable bridge partition (one node sees both halves, the
  // halves not each other) must settle: a leader, and no more elections.
  // (Not with membership changes: the phase assumes a fixed set of voters.)
  if (!opt_.membership && pre_vote_ && check_quorum_ && Chance(0.3) && !failure_) {
    BridgePhase();
  }

  // Heal: no faults, everyone up. Liveness: a leader all nodes follow, then a new write
  // applied everywhere, within the bound.
  faults_on_ = false;
  blocked_.clear();
  Log("heal");
  const uint64_t heal_start = now_;
  std::optional<std::pair<uint64_t, uint64_t>> marker;  // (leader, index)
  std::string marker_data;
  while (!failure_) {
    if (now_ - heal_start > static_cast<uint64_t>(opt_.liveness_ticks)) {
      Fail(absl::StrCat(marker ? "liveness: the write after healing did not reach every node"
                               : "liveness: no leader known to all nodes after healing",
                        ";", NodeStates()));
      break;
    }
    Tick();
    if (failure_) break;
    const uint64_t l = CurrentLeader();
    // Liveness is owed by the members of the leader's configuration (removed nodes are shut
    // down; a node whose addition was truncated away waits idle, owed nothing).
    std::vector<uint64_t> members;
    if (l != 0) {
      members = MembersOf(node(l).raft->configuration());
    } else {
      for (const SimNode& n : nodes_) members.push_back(n.id);
    }
    if (!marker) {
      bool all_follow = l != 0;
      for (uint64_t id : members) {
        const SimNode& n = node(id);
        if (!all_follow) break;
        if (!n.up || n.raft->lead() != l || n.raft->term() != node(l).raft->term()) {
          all_follow = false;
        }
      }
      if (all_follow) {
        marker_data = absl::StrCat("marker", opt_.seed);
        absl::StatusOr<EntryId> r = node(l).raft->Propose(marker_data);
        if (r.ok()) {
          node(l).proposals[r->index] = Proposal{r->term, marker_data};
          marker = {{l, r->index}};
          AfterChange(node(l));
          ProcessReady(node(l));
        }
      }
    } else {
      bool done = true;
      for (uint64_t id : members) {
        const SimNode& n = node(id);
        if (!n.up || n.applied < marker->second) done = false;
      }
      if (done) {
        if (committed_[marker->second].data != marker_data) {
          // The leader lost its term before the write committed: try again.
          marker.reset();
          continue;
        }
        Log(absl::StrCat("live after ", now_ - heal_start, " ticks"));
        break;
      }
    }
  }
  if (!failure_) CheckLogMatching();
  if (failure_) return absl::InternalError(*failure_);
  return absl::OkStatus();
}

}  // namespace

absl::Status RunSimulation(const SimOptions& options, SimStats* stats) {
  Simulation sim(options, stats);
  return sim.Run();
}

}  // namespace raftkv::raft::sim
