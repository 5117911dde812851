#include "server/config.h"

#include <arpa/inet.h>

#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "config.pb.h"
#include "google/protobuf/util/json_util.h"

namespace raftkv::server {

absl::StatusOr<std::vector<NodeAddress>> ParseClusterJson(const std::string& json,
                                                          const std::string& source_name) {
  configpb::ClusterFile file;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  auto status = google::protobuf::util::JsonStringToMessage(
      absl::StrCat("{\"nodes\": ", json, "}"), &file, options);
  if (!status.ok()) {
    // The parser's message may span lines (it draws a caret); errors here are one line.
    std::string why(status.message());
    why = why.substr(0, why.find('\n'));
    return absl::InvalidArgumentError(absl::StrCat(
        source_name, ": not a JSON array of {\"ip\", \"port\", \"grpc_port\"}: ", why));
  }
  if (file.nodes_size() == 0) {
    return absl::InvalidArgumentError(absl::StrCat(source_name, ": no nodes"));
  }
  std::vector<NodeAddress> nodes;
  std::set<std::pair<std::string, uint32_t>> seen;
  for (int i = 0; i < file.nodes_size(); ++i) {
    const configpb::NodeAddress& n = file.nodes(i);
    auto where = [&] { return absl::StrFormat("%s: node %d", source_name, i); };
    if (n.ip().empty()) return absl::InvalidArgumentError(where() + ": missing \"ip\"");
    for (uint32_t port : {n.port(), n.grpc_port()}) {
      if (port == 0 || port > 65535) {
        return absl::InvalidArgumentError(
            absl::StrFormat("%s: port %d out of range 1..65535", where(), port));
      }
      if (!seen.insert({n.ip(), port}).second) {
        return absl::InvalidArgumentError(
            absl::StrFormat("%s: %s:%d is used twice", where(), n.ip(), port));
      }
    }
    nodes.push_back(NodeAddress{n.ip(), static_cast<uint16_t>(n.port()),
                                static_cast<uint16_t>(n.grpc_port())});
  }
  return nodes;
}

absl::StatusOr<std::vector<NodeAddress>> LoadClusterFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::InvalidArgumentError(absl::StrCat("cannot read config file ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseClusterJson(ss.str(), path);
}

std::vector<NodeAddress> DefaultCluster() { return {NodeAddress{"127.0.0.1", 5000, 6000}}; }

uint64_t ClusterIdOf(const std::vector<NodeAddress>& nodes, const std::string& token) {
  // FNV-1a over the token and the member addresses: every node computes the same id.
  uint64_t h = 1469598103934665603ull;
  std::string text = token + "|";
  for (const NodeAddress& n : nodes) text += n.grpc_address() + ";";
  for (char c : text) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ull;
  }
  return h;
}

absl::Status NodeConfig::Validate() const {
  if (joining()) {
    if (member_id == 0) {
      return absl::InvalidArgumentError(
          "--join needs --member-id (the id `kvctl member add` printed for this node)");
    }
    if (advertise.ip.empty() || advertise.port == 0 || advertise.grpc_port == 0) {
      return absl::InvalidArgumentError(
          "--join needs --advertise-ip, --port and --grpc-port (where this node is reached)");
    }
    if (id != member_id - 1) {
      return absl::InvalidArgumentError("--id and --member-id disagree (give only --member-id)");
    }
    if (!restore_from.empty()) {
      return absl::InvalidArgumentError("--restore-from starts a new cluster; --join joins one");
    }
    if (join_timeout_ms == 0) return absl::InvalidArgumentError("--join-timeout-ms must be > 0");
  } else if (member_id != 0 || !advertise.ip.empty() || advertise.port != 0 ||
             advertise.grpc_port != 0) {
    return absl::InvalidArgumentError(
        "--member-id, --advertise-ip, --port and --grpc-port are for --join only");
  }
  if (cluster.empty()) return absl::InvalidArgumentError("cluster has no nodes");
  if (!joining() && id >= cluster.size()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "--id=%d is out of range: the cluster has %d node(s), ids 0..%d", id, cluster.size(),
        cluster.size() - 1));
  }
  if (data_dir.empty()) return absl::InvalidArgumentError("--data-dir is empty");
  if (!listen_ip.empty()) {
    unsigned char addr[sizeof(struct in6_addr)];
    if (inet_pton(AF_INET, listen_ip.c_str(), addr) != 1 &&
        inet_pton(AF_INET6, listen_ip.c_str(), addr) != 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--listen-ip=", listen_ip, " is not a numeric IPv4 or IPv6 address"));
    }
  }
  static const std::set<std::string> kStates = {"auto", "new", "existing"};
  if (!kStates.count(initial_cluster_state)) {
    return absl::InvalidArgumentError(absl::StrCat("--initial-cluster-state=",
                                                   initial_cluster_state,
                                                   " must be one of auto, new, existing"));
  }
  if (cluster_token.empty()) return absl::InvalidArgumentError("--cluster-token is empty");
  static const std::set<std::string> kLevels = {"trace", "debug", "info", "warn", "error"};
  if (!kLevels.count(log_level)) {
    return absl::InvalidArgumentError(
        "--log-level must be one of trace, debug, info, warn, error");
  }
  struct Positive {
    const char* flag;
    uint64_t value;
  };
  for (const Positive& p : {Positive{"--max-key-bytes", kv.max_key_bytes},
                            Positive{"--max-value-bytes", kv.max_value_bytes},
                            Positive{"--max-ops-per-request", kv.max_ops_per_request},
                            Positive{"--tick-ms", raft.tick_ms},
                            Positive{"--heartbeat-ticks", raft.heartbeat_ticks},
                            Positive{"--max-append-bytes", raft.max_msg_bytes},
                            Positive{"--max-inflight-msgs", raft.max_inflight_msgs},
                            Positive{"--request-timeout-ms", raft.request_timeout_ms},
                            Positive{"--max-pending-writes", raft.max_pending_writes},
                            Positive{"--reader-threads", raft.reader_threads},
                            Positive{"--session-window", raft.session_window},
                            Positive{"--max-forward-batch-writes",
                                     raft.max_forward_batch_writes},
                            Positive{"--max-forward-batch-bytes", raft.max_forward_batch_bytes},
                            Positive{"--forward-lane-writes", raft.forward_lane_writes},
                            Positive{"--session-expiry-entries", raft.session_expiry_entries},
                            Positive{"--peer-queue-msgs", raft.peer_queue_msgs},
                            Positive{"--peer-keepalive-timeout-ms",
                                     raft.peer.keepalive_timeout_ms},
                            Positive{"--peer-connect-timeout-ms", raft.peer.connect_timeout_ms},
                            Positive{"--peer-reconnect-backoff-max-ms",
                                     raft.peer.reconnect_backoff_max_ms},
                            Positive{"--wal-segment-bytes", raft.wal_segment_bytes},
                            Positive{"--max-range-keys", max_range_keys},
                            Positive{"--max-range-bytes", max_range_bytes},
                            Positive{"--backup-interval-ms", raft.backup_interval_ms},
                            Positive{"--snapshot-entries", raft.snapshot_entries},
                            Positive{"--snapshots-retained", raft.snapshots_retained},
                            Positive{"--max-backup-lag-entries", raft.max_backup_lag_entries},
                            Positive{"--snapshot-chunk-bytes", raft.snapshot_chunk_bytes},
                            Positive{"--grpc-max-message-bytes", grpc_max_message_bytes}}) {
    if (p.value == 0) return absl::InvalidArgumentError(absl::StrCat(p.flag, " must be > 0"));
  }
  if (raft.peer.keepalive_ms != 0 && raft.peer.keepalive_ms < kMinPeerKeepaliveMs) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--peer-keepalive-ms must be 0 (off) or at least ", kMinPeerKeepaliveMs));
  }
  if (shutdown_transfer_timeout_ms < -1) {
    return absl::InvalidArgumentError(
        "--shutdown-transfer-timeout-ms must be -1 (twice the election timeout), 0 (off) or "
        "a number of milliseconds");
  }
  if (raft.snapshot_time_share_pct == 0 || raft.snapshot_time_share_pct > 100) {
    return absl::InvalidArgumentError("--snapshot-time-share-pct must be between 1 and 100");
  }
  if (raft.election_ticks <= raft.heartbeat_ticks) {
    return absl::InvalidArgumentError("--election-ticks must be greater than --heartbeat-ticks");
  }
  if (absl::Status s = tcp.Validate(kv.max_key_bytes, kv.max_value_bytes); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("client port options: ", s.message()));
  }
  // Note: --max-line-bytes (64 KiB) is below --max-value-bytes (1 MiB) by design: a text
  // line is bounded by the former, a RESP request by --max-request-bytes.
  if (max_range_bytes + 65536 > grpc_max_message_bytes) {
    return absl::InvalidArgumentError(
        "--max-range-bytes must be at least 64 KiB below --grpc-max-message-bytes");
  }
  if (kv.max_key_bytes + kv.max_value_bytes + 1024 > grpc_max_message_bytes) {
    return absl::InvalidArgumentError(
        "--grpc-max-message-bytes must exceed --max-key-bytes + --max-value-bytes + 1024");
  }
  return absl::OkStatus();
}

}  // namespace raftkv::server
