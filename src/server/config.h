// kvd configuration: the cluster file (node_config.json) plus the node's own flags.
// One Validate() checks the whole thing; main() turns any error into one line on stderr and
// exit code 2.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kv/state_machine.h"
#include "server/service/kv_service.h"
#include "server/node_address.h"
#include "server/replication/raft_loop.h"
#include "server/frontend/tcp/tcp_server.h"

namespace raftkv::server {

// Parses node_config.json (README.md, "Running a node"): a JSON array of
// {"ip": ..., "port": ..., "grpc_port": ...}; a node's id is its position.
// Errors: kInvalidArgument naming the file and the problem.
absl::StatusOr<std::vector<NodeAddress>> ParseClusterJson(const std::string& json,
                                                          const std::string& source_name);
absl::StatusOr<std::vector<NodeAddress>> LoadClusterFile(const std::string& path);

// The single-node cluster used when kvd runs with no --config.
std::vector<NodeAddress> DefaultCluster();

// The cluster's id, made from --cluster-token and its member addresses when it is first
// bootstrapped (and then kept in each data dir's identity file: server/identity.h). etcd
// headers carry it; peers refuse messages from another cluster.
uint64_t ClusterIdOf(const std::vector<NodeAddress>& nodes, const std::string& token);

struct NodeConfig {
  uint32_t id = 0;                    // --id: position in the cluster file
  std::vector<NodeAddress> cluster;   // from --config, or DefaultCluster()
  std::string data_dir = "./data";    // --data-dir
  std::string log_level = "info";     // --log-level
  std::string restore_from;           // --restore-from: snapshot or backup file (new cluster)
  // --listen-ip: the address the client and gRPC ports bind to; empty: this node's "ip" in
  // the cluster file. The cluster file says where peers and clients reach a node; a node
  // behind NAT or in a container binds another address (0.0.0.0) than the one it is
  // reached at (its service name).
  std::string listen_ip;
  // --initial-cluster-state: what an empty data dir means. "auto": ask the peers (a new
  // cluster if every peer answers with an empty log, else rejoin); "new": a new cluster,
  // vote at once (first start only); "existing": rejoin, never bootstrap.
  std::string initial_cluster_state = "auto";
  std::string cluster_token = "raftkv";  // --cluster-token: tells clusters apart
  // Joining a running cluster (README, "Adding a node"): --join is the gRPC address of any
  // member; --member-id the id `kvctl member add` / `etcdctl member add` gave this node;
  // --advertise-ip, --port, --grpc-port where this node is reached. On the first start the
  // member table comes from the cluster (Cluster.MemberList); afterwards from the data dir.
  // node_config.json is not used.
  std::string join;                   // --join
  uint64_t member_id = 0;             // --member-id (raft id = etcd member id)
  NodeAddress advertise;              // --advertise-ip, --port, --grpc-port
  uint32_t join_timeout_ms = 30000;   // --join-timeout-ms: how long to try reaching --join

  // Each part's options carry their own defaults; flags overwrite them.
  KvLimits kv;                        // key/value/op-count limits (every protocol)
  TcpServerOptions tcp;               // text + RESP front end limits and timeouts
  RaftLoopOptions raft;               // raft loop tuning (cluster, node_index, cluster_id
                                      // are filled in from the fields above at start)
  uint64_t grpc_max_message_bytes = 4 * 1024 * 1024;  // --grpc-max-message-bytes
  // --record-cache-bytes: the state machine's cache of recently written records
  uint64_t record_cache_bytes = kv::StateMachineOptions{}.record_cache_bytes;
  // --store-memtable-bytes: the state machine's memtables, all together
  uint64_t memtable_bytes = kv::StateMachineOptions{}.memtable_bytes;
  uint64_t max_range_keys = 100000;   // --max-range-keys: keys in one etcd Range answer
  uint64_t max_range_bytes = 3 << 20; // --max-range-bytes: key-value bytes in one answer
  // On SIGTERM: how long in-flight gRPC calls may take before they are cancelled. Peer
  // streams never end by themselves, so this also bounds how long a stopping leader keeps
  // heartbeating (the rest of the cluster elects a new one only after it stops).
  uint32_t shutdown_grpc_grace_ms = 1000;  // --shutdown-grpc-grace-ms
  // On SIGTERM/SIGINT, a leader first hands leadership to the most up-to-date follower and
  // waits this long at most for it (and for its proposed writes to be answered). -1: twice
  // the election timeout (--election-ticks x --tick-ms); 0: stop without handing over.
  int64_t shutdown_transfer_timeout_ms = -1;  // --shutdown-transfer-timeout-ms
  int64_t ShutdownTransferTimeoutMs() const {
    return shutdown_transfer_timeout_ms >= 0
               ? shutdown_transfer_timeout_ms
               : 2 * static_cast<int64_t>(raft.election_ticks) * raft.tick_ms;
  }

  bool joining() const { return !join.empty(); }
  const NodeAddress& self() const { return joining() ? advertise : cluster.at(id); }
  const std::string& listen_host() const { return listen_ip.empty() ? self().ip : listen_ip; }
  // Checks every field and their combinations. Errors: kInvalidArgument, one line.
  absl::Status Validate() const;
};

}  // namespace raftkv::server
