#include "server/node.h"

#include <atomic>
#include <filesystem>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpcpp/grpcpp.h"
#include "kv/sqlite_snapshot.h"
#include "kv/state_machine.h"
#include "base/file_util.h"
#include "server/backup_worker.h"
#include "server/etcd_service.h"
#include "server/kv_service.h"
#include "server/peer_service.h"
#include "server/raft_replicator.h"
#include "server/tcp_server.h"
#include "spdlog/spdlog.h"

namespace raftkv::server {

Node::Node(NodeConfig config) : config_(std::move(config)) {}

Node::~Node() { Shutdown("destroyed"); }

absl::StatusOr<std::unique_ptr<Node>> Node::Start(const NodeConfig& config) {
  spdlog::set_level(spdlog::level::from_str(config.log_level));
  std::unique_ptr<Node> node(new Node(config));
  const NodeAddress& self = config.self();
  const std::filesystem::path data_dir(config.data_dir);

  std::error_code ec;
  std::filesystem::create_directories(data_dir, ec);
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot create data dir ", config.data_dir, ": ", ec.message()));
  }
  kv::StateMachineOptions sm_options;
  sm_options.db_path = (data_dir / "db").string();
  if (!config.restore_from.empty()) {
    if (std::filesystem::exists(sm_options.db_path) || std::filesystem::exists(data_dir / "wal")) {
      return absl::FailedPreconditionError(absl::StrCat(
          "--restore-from needs a new data dir, but ", config.data_dir, " already holds a store"));
    }
    spdlog::info("node {}: restoring from {}", config.id, config.restore_from);
    auto meta = kv::RestoreSnapshot(config.restore_from, sm_options.db_path);
    if (!meta.ok()) return meta.status();
    spdlog::info("node {}: restored {} keys at index {} (term {}, revision {})", config.id,
                 meta->kv_count, meta->applied_index, meta->applied_term, meta->revision);

  }
  // No RocksDB fsync: the Raft WAL is the source of truth and entries after the store's
  // applied index are replayed from it on start-up.
  sm_options.sync_writes = false;
  auto sm = kv::StateMachine::Open(sm_options);
  if (!sm.ok() && sm.status().code() == absl::StatusCode::kDataLoss &&
      std::filesystem::exists(data_dir / "wal")) {
    // A corrupt store is rebuilt from the newest snapshot plus the log (the replicator
    // loads the snapshot when the store is behind the log). Keep the corrupt copy aside.
    const std::string aside = absl::StrCat(sm_options.db_path, ".corrupt-", absl::ToUnixSeconds(absl::Now()));
    spdlog::error("node {}: {}; moving it to {} and rebuilding from snapshot + log", config.id,
                  sm.status().ToString(), aside);
    std::filesystem::rename(sm_options.db_path, aside, ec);
    if (ec) return sm.status();
    sm = kv::StateMachine::Open(sm_options);
  }
  if (!sm.ok()) return sm.status();
  node->sm_ = *std::move(sm);
  if (!config.restore_from.empty()) {
    // This node's first snapshot, for peers that need one before it cuts its own. Written
    // from the restored store (the file given may be a live backup with a -wal companion).
    const std::string snapshot_dir = (data_dir / "snapshots").string();
    absl::Status s = base::CreateDirIfMissing(snapshot_dir);
    if (!s.ok()) return s;
    auto written = kv::WriteSnapshot(
        *node->sm_, absl::StrCat(snapshot_dir, "/",
                                 SnapshotFileName(node->sm_->applied_index(),
                                                  node->sm_->applied_term())));
    if (!written.ok()) return written.status();
  }
  spdlog::info("node {}: state machine at {} (applied index {}, revision {})", config.id,
               sm_options.db_path, node->sm_->applied_index(), node->sm_->revision());

  RaftReplicatorOptions raft_options = config.raft;
  raft_options.node_index = config.id;
  raft_options.cluster = config.cluster;
  raft_options.cluster_id = ClusterIdOf(config.cluster);
  raft_options.wal_dir = (data_dir / "wal").string();
  if (raft_options.backup_path.empty()) {
    raft_options.backup_path = (data_dir / "backup.db").string();
  }
  raft_options.snapshot_dir = (data_dir / "snapshots").string();
  raft_options.restored = !config.restore_from.empty();
  auto replicator = RaftReplicator::Start(node->sm_.get(), raft_options);
  if (!replicator.ok()) return replicator.status();
  node->replicator_ = *std::move(replicator);

  node->kv_ = std::make_unique<KvService>(node->replicator_.get(), node->sm_.get(), config.kv);

  EtcdServiceOptions etcd_options;
  etcd_options.request_timeout_ms = config.raft.request_timeout_ms;
  etcd_options.max_range_keys = config.max_range_keys;
  // Maintenance.Snapshot (kvctl snapshot save): a fresh copy per request, removed by the
  // handler after streaming. The sequence number keeps same-millisecond requests apart.
  etcd_options.make_snapshot = [sm = node->sm_.get(), dir = (data_dir / "snapshots").string(),
                                seq = std::make_shared<std::atomic<uint64_t>>(0)]()
      -> absl::StatusOr<std::string> {
    if (absl::Status s = base::CreateDirIfMissing(dir); !s.ok()) return s;
    std::string path = absl::StrCat(dir, "/export-", absl::ToUnixMillis(absl::Now()), "-",
                                    seq->fetch_add(1), ".db");
    auto written = kv::WriteSnapshot(*sm, path);
    if (!written.ok()) return written.status();
    return path;
  };
  node->etcd_ = std::make_unique<EtcdServices>(node->kv_.get(), node->replicator_.get(),
                                               raft_options.cluster_id, EtcdMemberId(config.id),
                                               etcd_options);
  node->peer_service_ = std::make_unique<RaftPeerService>(
      node->replicator_.get(), (data_dir / "snapshots" / "received").string());
  grpc::ServerBuilder builder;
  int grpc_port = 0;
  builder.AddListeningPort(self.grpc_address(), grpc::InsecureServerCredentials(), &grpc_port);
  builder.SetMaxReceiveMessageSize(static_cast<int>(config.grpc_max_message_bytes));
  builder.SetMaxSendMessageSize(static_cast<int>(config.grpc_max_message_bytes));
  node->etcd_->Register(&builder);
  builder.RegisterService(node->peer_service_.get());
  node->grpc_server_ = builder.BuildAndStart();
  if (!node->grpc_server_ || grpc_port == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen for gRPC on ", self.grpc_address(), " (port in use?)"));
  }
  node->grpc_port_ = static_cast<uint16_t>(grpc_port);

  node->tcp_ = std::make_unique<TcpServer>(node->kv_.get(), config.tcp);
  if (absl::Status s = node->tcp_->Start(self.ip, self.port); !s.ok()) return s;

  spdlog::info("node {}: serving text/RESP on {}, etcd gRPC and peers on {} ({} node cluster)",
               config.id, self.client_address(), self.grpc_address(), config.cluster.size());
  return node;
}

void Node::Shutdown(const std::string& reason) {
  if (shut_down_) return;
  shut_down_ = true;
  spdlog::info("node {}: shutting down ({})", config_.id, reason);
  // Clients first (no new work; in-flight requests finish or fail), then consensus, then
  // the store.
  if (tcp_) tcp_->Stop();
  if (grpc_server_) {
    grpc_server_->Shutdown(std::chrono::system_clock::now() +
                           std::chrono::milliseconds(config_.shutdown_grpc_grace_ms));
  }
  if (replicator_) replicator_->Stop();
  tcp_.reset();
  grpc_server_.reset();
  peer_service_.reset();
  etcd_.reset();
  kv_.reset();
  replicator_.reset();
  sm_.reset();  // closes RocksDB
  spdlog::info("node {}: stopped", config_.id);
}

uint16_t Node::client_port() const { return tcp_ ? tcp_->port() : 0; }
uint16_t Node::grpc_port() const { return grpc_port_; }

}  // namespace raftkv::server
