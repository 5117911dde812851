// kvd configuration: the cluster file (node_config.json) plus the node's own flags.
// One Validate() checks the whole thing; main() turns any error into one line on stderr and
// exit code 2.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace raftkv::server {

struct NodeAddress {
  std::string ip;
  uint16_t port = 0;        // text + RESP
  uint16_t grpc_port = 0;   // etcd API + peer Raft service

  std::string client_address() const;  // "ip:port"
  std::string grpc_address() const;     // "ip:grpc_port"
};

// Parses node_config.json (design.md, Configuration): a JSON array of
// {"ip": ..., "port": ..., "grpc_port": ...}; a node's id is its position.
// Errors: kInvalidArgument naming the file and the problem.
absl::StatusOr<std::vector<NodeAddress>> ParseClusterJson(const std::string& json,
                                                          const std::string& source_name);
absl::StatusOr<std::vector<NodeAddress>> LoadClusterFile(const std::string& path);

// The single-node cluster used when kvd runs with no --config.
std::vector<NodeAddress> DefaultCluster();

// A stable id for the cluster derived from its member addresses (etcd headers need one).
uint64_t ClusterIdOf(const std::vector<NodeAddress>& nodes);

struct NodeConfig {
  uint32_t id = 0;                    // --id: position in the cluster file
  std::vector<NodeAddress> cluster;   // from --config, or DefaultCluster()
  std::string data_dir = "./data";    // --data-dir
  std::string log_level = "info";     // --log-level

  // Client limits (design.md, Limits).
  uint64_t max_line_bytes = 64 * 1024;
  uint64_t max_key_bytes = 1024;
  uint64_t max_value_bytes = 1024 * 1024;
  uint64_t max_ops_per_request = 10000;
  uint64_t max_connections = 10000;
  uint64_t max_pending_per_conn = 1024;
  uint64_t max_pending_writes = 100000;
  uint64_t idle_timeout_ms = 300000;
  uint64_t partial_line_timeout_ms = 30000;
  uint32_t io_threads = 2;
  uint64_t grpc_max_message_bytes = 4 * 1024 * 1024;

  const NodeAddress& self() const { return cluster.at(id); }
  // Checks every field and their combinations. Errors: kInvalidArgument, one line.
  absl::Status Validate() const;
};

}  // namespace raftkv::server
