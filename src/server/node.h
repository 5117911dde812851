// Node: one kvd process's parts, wired together in start-up order and torn down in reverse.
// The composition root: the only place that knows every room (frontend/tcp, frontend/etcd,
// service, replication, peer, snapshots).
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/config.h"
#include "server/data_dir.h"

namespace grpc {
class Server;
}

namespace raftkv::kv {
class StateMachine;
}

namespace raftkv::server {

class EtcdServices;
class KvService;
class RaftPeerService;
class RaftLoop;
class TcpServer;

class Node {
 public:
  // Opens the data directory and starts serving. Errors: kInvalidArgument / kUnavailable
  // (port in use, data dir locked by another kvd) / kDataLoss (corrupt data), each with a
  // message that names the path or address.
  static absl::StatusOr<std::unique_ptr<Node>> Start(const NodeConfig& config);
  ~Node();

  // Stops accepting clients, finishes in-flight requests, stops consensus and closes the
  // store. Idempotent.
  void Shutdown(const std::string& reason);

  uint16_t client_port() const;
  uint16_t grpc_port() const;

 private:
  explicit Node(NodeConfig config);
  // The parts of Start, in order.
  absl::Status OpenData();
  absl::Status StartGrpc();
  // ClusterIdOf the configuration (and --cluster-token); a joined node's from its identity.
  uint64_t cluster_id() const { return cluster_id_; }

  const NodeConfig config_;
  const DataDir data_dir_;
  std::unique_ptr<kv::StateMachine> sm_;
  std::unique_ptr<RaftLoop> raft_;
  std::unique_ptr<KvService> kv_;
  std::unique_ptr<EtcdServices> etcd_;
  std::unique_ptr<RaftPeerService> peer_service_;
  std::unique_ptr<grpc::Server> grpc_server_;
  std::unique_ptr<TcpServer> tcp_;
  uint16_t grpc_port_ = 0;
  uint64_t cluster_id_ = 0;
  bool shut_down_ = false;
};

}  // namespace raftkv::server
