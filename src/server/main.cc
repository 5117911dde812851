// kvd: one raftkv node. See `kvd --help`, README.md and docs/architecture.md.
//
// Start-up order: parse and validate flags (exit 2 on any error), open the state machine,
// start consensus, then the client front ends. Shutdown on SIGINT/SIGTERM: a leader hands
// leadership over first (--shutdown-transfer-timeout-ms), then in reverse: stop accepting
// clients, let in-flight requests finish, stop consensus, close RocksDB, exit 0.
#include <signal.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#ifdef RAFTKV_JEMALLOC
#include <jemalloc/jemalloc.h>
#endif

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "server/config.h"
#include "server/node.h"

namespace {

using raftkv::server::NodeConfig;

// Adds `flag`, bound to `value`, with its default shown in --help, to `group`.
template <typename T>
void AddTuning(CLI::App* app, const char* flag, T* value, const char* help, const char* group) {
  app->add_option(flag, *value, help)->capture_default_str()->group(group);
}

void AddNodeFlags(CLI::App* app, NodeConfig* config, std::string* config_path) {
  app->add_option("--id", config->id, "This node's position in the config file (0-based)")
      ->capture_default_str();
  app->add_option("--config", *config_path, "Cluster file (node_config.json); default: one "
                                            "node on 127.0.0.1:5000/6000");
  app->add_option("--data-dir", config->data_dir,
                  "Directory for this node's data (created if missing)")
      ->capture_default_str();
  app->add_option("--restore-from", config->restore_from,
                  "Disaster recovery: start this node (in a new, empty --data-dir) from a "
                  "snapshot or backup file; start every node of the new cluster from the same "
                  "file")
      ->check(CLI::ExistingFile);
  app->add_option("--listen-ip", config->listen_ip,
                  "Address the client and gRPC ports bind to (a numeric address such as "
                  "0.0.0.0); default: this node's \"ip\" in the config file");
  app->add_option("--log-level", config->log_level, "trace, debug, info, warn or error")
      ->capture_default_str();
  app->add_option(
         "--initial-cluster-state", config->initial_cluster_state,
         "What an empty --data-dir means (a first start, or a lost disk). auto: ask the "
         "peers; if every peer answers and none holds data, start a new cluster, else rejoin. "
         "existing: rejoin, never start a new cluster. new: start a new cluster without "
         "asking (first start only: on a lost disk it can lose acknowledged writes). A "
         "rejoining node catches up and votes only once that is safe (README, \"Replacing a "
         "lost disk\")")
      ->capture_default_str();
  app->add_option("--join", config->join,
                  "Join a running cluster through this member's gRPC address (host:port): add "
                  "this node first (kvctl member add / etcdctl member add --learner), then "
                  "start it with an empty --data-dir and --member-id, --advertise-ip, --port, "
                  "--grpc-port; it starts as a learner (README, \"Adding a node\"). Keep the "
                  "flags on restarts (the member table then comes from the data dir)");
  app->add_option("--member-id", config->member_id,
                  "With --join: this node's member id, as member add printed it (decimal, or "
                  "hex with 0x)");
  app->add_option("--advertise-ip", config->advertise.ip,
                  "With --join: the address peers and clients reach this node at");
  app->add_option("--port", config->advertise.port, "With --join: the text/RESP client port");
  app->add_option("--grpc-port", config->advertise.grpc_port,
                  "With --join: the gRPC port (etcd API and peers)");
  app->add_option("--join-timeout-ms", config->join_timeout_ms,
                  "With --join: how long to keep trying to reach the --join member")
      ->capture_default_str();
  app->add_option("--cluster-token", config->cluster_token,
                  "Part of the cluster id; give each cluster its own, so that nodes of two "
                  "clusters never take each other's messages or data dirs")
      ->capture_default_str();
}

void AddLimitFlags(CLI::App* app, NodeConfig* config) {
  const char* limits = "Limits (over a limit: a clear error to that client only)";
  auto add = [&](const char* flag, auto* value, const char* help) {
    AddTuning(app, flag, value, help, limits);
  };
  add("--max-key-bytes", &config->kv.max_key_bytes, "Largest key accepted");
  add("--max-value-bytes", &config->kv.max_value_bytes, "Largest value accepted");
  add("--max-ops-per-request", &config->kv.max_ops_per_request,
      "Most keys in one MGET/MSET/DEL or operations in one etcd Txn");
  add("--max-line-bytes", &config->tcp.max_line_bytes,
      "Longest text-protocol line (terminator excluded)");
  add("--max-request-bytes", &config->tcp.max_request_bytes, "Largest RESP request");
  add("--max-request-args", &config->tcp.max_request_args,
      "Most elements in one RESP request array");
  add("--max-connections", &config->tcp.max_connections,
      "Most open connections on the client port; more are refused");
  add("--max-pending-per-conn", &config->tcp.max_pending_per_conn,
      "Unanswered requests per connection before kvd stops reading from it");
  add("--max-pipeline-writes", &config->tcp.max_pipeline_writes,
      "Most pipelined writes of one client connection sent to the cluster as one batch (in "
      "order: consecutive log entries, one forward from a follower); one batch in flight per "
      "connection. 1 = one write at a time");
  add("--max-pipeline-write-bytes", &config->tcp.max_pipeline_write_bytes,
      "A connection's write batch stops growing once its requests add up to this many bytes "
      "(a larger single write goes alone)");
  add("--max-reply-bytes", &config->tcp.max_reply_bytes,
      "Largest GET/MGET reply on the client port (text or RESP, framing included); a larger "
      "one is refused with an error (at least --max-value-bytes + 64)");
  add("--idle-timeout-ms", &config->tcp.idle_timeout_ms,
      "Close a client connection idle this long (0 = never)");
  add("--partial-request-timeout-ms", &config->tcp.partial_request_timeout_ms,
      "Close a client that started a request and did not finish it in this time (0 = never)");
  add("--max-pending-writes", &config->raft.max_pending_writes,
      "Writes waiting for consensus on this node before new ones are refused");
  add("--session-expiry-entries", &config->raft.session_expiry_entries,
      "A client session (exactly-once writes) idle for this many log entries is forgotten, "
      "which bounds the session table (the leader stamps it into each entry, so every node "
      "expires alike)");
  add("--session-window", &config->raft.session_window,
      "First results a client session keeps for retries: its newest unacknowledged writes "
      "(stamped into each entry by the leader)");
  add("--max-forward-batch-writes", &config->raft.max_forward_batch_writes,
      "Most writes a follower sends to the leader in one Forward call (the single writes "
      "it took from all its clients in one loop iteration go together)");
  add("--max-forward-batch-bytes", &config->raft.max_forward_batch_bytes,
      "Most bytes of writes in one Forward call, unless one write alone is larger");
  add("--forward-lane-writes", &config->raft.forward_lane_writes,
      "Writes a follower keeps in flight on one of the sessions it forwards under before it "
      "opens another (the leader rewrites a session's record, a result per write in flight, "
      "on each of its writes); capped at --session-window");
  add("--request-timeout-ms", &config->raft.request_timeout_ms,
      "A write or linearizable read not done in this time fails (a write's outcome is then "
      "unknown)");
  add("--max-range-bytes", &config->max_range_bytes,
      "Most key-value bytes one etcd Range answer carries; a range over more answers the "
      "first ones with more=true, for the client to page (below --grpc-max-message-bytes)");
  add("--max-range-keys", &config->max_range_keys,
      "Most keys one etcd Range may return (count_only is exempt)");
  add("--shutdown-grpc-grace-ms", &config->shutdown_grpc_grace_ms,
      "On SIGTERM, how long in-flight gRPC calls may finish before they are cancelled");
  add("--shutdown-tcp-grace-ms", &config->tcp.stop_timeout_ms,
      "On SIGTERM, how long the text/RESP connections may finish their requests in flight "
      "before they are closed");
  add("--shutdown-transfer-timeout-ms", &config->shutdown_transfer_timeout_ms,
      "On SIGTERM/SIGINT, a leader first hands leadership to the most up-to-date follower "
      "(so clients see no election) and waits at most this long for it; then it stops as "
      "usual. -1 = twice the election timeout, 0 = stop without handing over");
  add("--grpc-max-message-bytes", &config->grpc_max_message_bytes,
      "Largest gRPC message accepted or sent");
}

void AddRaftFlags(CLI::App* app, NodeConfig* config) {
  auto add = [&](const char* flag, auto* value, const char* help) {
    AddTuning(app, flag, value, help, "Raft");
  };
  add("--tick-ms", &config->raft.tick_ms, "Length of one Raft tick");
  add("--election-ticks", &config->raft.election_ticks,
      "Ticks without a leader before an election (randomized in [N, 2N))");
  add("--heartbeat-ticks", &config->raft.heartbeat_ticks, "Ticks between leader heartbeats");
  add("--max-append-bytes", &config->raft.max_msg_bytes,
      "Entry bytes in one AppendEntries message (one entry is always allowed)");
  add("--max-inflight-msgs", &config->raft.max_inflight_msgs,
      "AppendEntries messages in flight to one follower");
  add("--peer-queue-msgs", &config->raft.peer_queue_msgs,
      "Messages queued for one peer before new ones to it are dropped");
  add("--wal-segment-bytes", &config->raft.wal_segment_bytes,
      "Size at which the write-ahead log rolls to a new segment file");
  add("--reader-threads", &config->raft.reader_threads,
      "Threads that serve reads (GET, MGET, Range, DBSIZE) once their read barrier is "
      "reached, off the raft loop");
  add("--wal-cache-bytes", &config->raft.wal_cache_bytes,
      "Bytes of the newest log entries the WAL keeps in memory; older ones (for followers "
      "that lag behind, or entries not yet applied) are read back from the WAL files. "
      "0 = keep none");
  add("--record-cache-bytes", &config->record_cache_bytes,
      "Bytes of the records and sessions of recently written keys that applying a write "
      "reads from memory instead of RocksDB (3/4 records, 1/4 sessions). 0 = keep none");
  add("--store-memtable-bytes", &config->memtable_bytes,
      "Bytes of recent writes the state machine (RocksDB) keeps in memtables before it "
      "flushes them to its files. 0 = RocksDB's own limit (64 MiB per column family)");
}

void AddPeerFlags(CLI::App* app, NodeConfig* config) {
  auto add = [&](const char* flag, auto* value, const char* help) {
    AddTuning(app, flag, value, help, "Peer links (how soon a dead link is noticed and redialled)");
  };
  raftkv::server::PeerChannelOptions* peer = &config->raft.peer;
  add("--peer-keepalive-ms", &peer->keepalive_ms,
      "An HTTP/2 PING on each peer connection when nothing arrived on it for this long; a dead "
      "or black-holed link is then noticed within this plus --peer-keepalive-timeout-ms and "
      "re-dialled (0 = off: a dead connection lingers until TCP gives up; else >= 100)");
  add("--peer-keepalive-timeout-ms", &peer->keepalive_timeout_ms,
      "Close a peer connection whose PING (or any data sent, by TCP_USER_TIMEOUT) goes "
      "unacknowledged this long");
  add("--peer-connect-timeout-ms", &peer->connect_timeout_ms,
      "How long one dial of a peer may take before it is abandoned and retried");
  add("--peer-reconnect-backoff-max-ms", &peer->reconnect_backoff_max_ms,
      "Longest wait between dials of an unreachable peer (jittered, doubling from 20 ms); "
      "also caps the waits before re-opening a broken Raft stream or snapshot transfer");
}

void AddSnapshotFlags(CLI::App* app, NodeConfig* config) {
  auto add = [&](const char* flag, auto* value, const char* help) {
    AddTuning(app, flag, value, help, "Backup and snapshots");
  };
  add("--backup-path", &config->raft.backup_path,
      "SQLite backup that follows the log (default <data-dir>/backup.db)");
  add("--backup-interval-ms", &config->raft.backup_interval_ms,
      "The backup trails the state machine by at most this long");
  add("--snapshot-entries", &config->raft.snapshot_entries,
      "Entries between Raft snapshots (copies of the backup in <data-dir>/snapshots)");
  add("--snapshot-time-share-pct", &config->raft.snapshot_time_share_pct,
      "Snapshots are spaced so that making them (a copy of the whole backup) takes at most "
      "this percentage of the time: a large store snapshots less often than "
      "--snapshot-entries says; 100: every --snapshot-entries");
  add("--snapshots-retained", &config->raft.snapshots_retained,
      "Snapshot files kept (own and received from a leader)");
  add("--max-backup-lag-entries", &config->raft.max_backup_lag_entries,
      "Writes wait while the backup lags the state machine by more entries");
  add("--backup-lag-wait-ms", &config->raft.backup_lag_wait_ms,
      "How long a write waits for the backup to lag less than --max-backup-lag-entries "
      "before it is refused (at most half of --request-timeout-ms; 0 = refused at once)");
  add("--snapshot-copy-busy-retries", &config->raft.snapshot_copy_busy_retries,
      "Retries (50 ms apart) of a snapshot copy that finds the backup locked");
  add("--log-retained-entries", &config->raft.log_retained_entries,
      "Log entries kept before the newest snapshot, for followers a little behind");
  add("--snapshot-chunk-bytes", &config->raft.snapshot_chunk_bytes,
      "Chunk size when streaming a snapshot to a follower");
  add("--snapshot-rate-bytes-per-sec", &config->raft.snapshot_rate_bytes_per_sec,
      "Cap on snapshot streaming to one follower (0 = no cap)");
}

// Which malloc serves this process, checked rather than assumed: with jemalloc linked in,
// a block from malloc must show in jemalloc's count of this thread's allocations.
std::string MallocName() {
#ifdef RAFTKV_JEMALLOC
  const char* version = nullptr;
  size_t size = sizeof(version);
  if (mallctl("version", &version, &size, nullptr, 0) != 0) return "jemalloc (version unknown)";
  uint64_t before = 0, after = 0;
  size = sizeof(before);
  mallctl("thread.allocated", &before, &size, nullptr, 0);
  void* volatile block = std::malloc(1 << 20);
  mallctl("thread.allocated", &after, &size, nullptr, 0);
  std::free(block);
  if (after < before + (1 << 20)) return "not jemalloc (it is linked but does not serve malloc)";
  return absl::StrCat("jemalloc ", version);
#else
  return "the system's";
#endif
}

// Parses the command line into `config`. Returns an exit code if kvd should exit now
// (0 after --help, 2 after a usage error), or -1 to go on.
int ParseFlags(int argc, char** argv, NodeConfig* config) {
  CLI::App app{
      "kvd: a raftkv node. A Raft-replicated key-value store serving the text protocol and\n"
      "RESP2 (redis-cli) on the client port, and etcd's v3 gRPC API (etcdctl, kvctl) on the\n"
      "gRPC port.\n\n"
      "With no flags: a single-node cluster on 127.0.0.1 (client port 5000, gRPC port 6000)\n"
      "with data in ./data. With --config: the node at position --id of node_config.json\n"
      "([{\"ip\": \"127.0.0.1\", \"port\": 5000, \"grpc_port\": 6000}, ...]).",
      "kvd"};
  std::string config_path;
  AddNodeFlags(&app, config, &config_path);
  AddLimitFlags(&app, config);
  AddRaftFlags(&app, config);
  AddPeerFlags(&app, config);
  AddSnapshotFlags(&app, config);
  AddTuning(&app, "--tcp-io-threads", &config->tcp.num_io_threads,
            "Threads serving the client port", "Tuning");
  bool version = false;
  app.add_flag("--version", version, "Print what this kvd is built with (its malloc) and exit");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::fputs(app.help().c_str(), stdout);
    return 0;
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "kvd: %s (see kvd --help)\n", e.what());
    return 2;
  }
  if (version) {
    std::printf("kvd (raftkv), malloc: %s\n", MallocName().c_str());
    return 0;
  }
  if (config_path.empty()) {
    config->cluster = raftkv::server::DefaultCluster();
  } else {
    auto cluster = raftkv::server::LoadClusterFile(config_path);
    if (!cluster.ok()) {
      std::fprintf(stderr, "kvd: %s\n", std::string(cluster.status().message()).c_str());
      return 2;
    }
    config->cluster = *std::move(cluster);
  }
  if (config->joining() && config->member_id != 0) {
    config->id = static_cast<uint32_t>(config->member_id - 1);  // NodeId position
  }
  if (absl::Status s = config->Validate(); !s.ok()) {
    std::fprintf(stderr, "kvd: %s\n", std::string(s.message()).c_str());
    return 2;
  }
  return -1;
}

}  // namespace

int main(int argc, char** argv) {
  raftkv::server::NodeConfig config;
  if (int code = ParseFlags(argc, argv, &config); code >= 0) return code;
  // Debian's abseil is built without NDEBUG, so every absl::Mutex::Lock records the lock in
  // a global deadlock graph: about 4% of a busy leader's CPU. The tests keep the check on.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  // Every thread started from here on inherits the blocked mask; main waits for the signal.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  auto node = raftkv::server::Node::Start(config);
  if (!node.ok()) {
    std::fprintf(stderr, "kvd: %s\n", std::string(node.status().message()).c_str());
    return 1;
  }
  int sig = 0;
  sigwait(&signals, &sig);
  (*node)->Shutdown(absl::StrCat("signal ", sig));
  return 0;
}
