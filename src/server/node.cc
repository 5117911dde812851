#include "server/node.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "grpcpp/grpcpp.h"
#include "kv/sqlite_snapshot.h"
#include "kv/state_machine.h"
#include "server/frontend/etcd/etcd_service.h"
#include "server/frontend/tcp/tcp_server.h"
#include "server/identity.h"
#include "server/node_id.h"
#include "server/peer/peer_service.h"
#include "etcd/rpc.grpc.pb.h"
#include "server/replication/member_table.h"
#include "server/replication/raft_loop.h"
#include "server/replication/recovery.h"
#include "server/service/kv_service.h"
#include "server/snapshots/snapshot_store.h"
#include "spdlog/spdlog.h"

namespace raftkv::server {
namespace {

// "http://host:port" -> "host:port" (etcd peer URLs).
std::string HostPortOfUrl(const std::string& url) {
  std::string s = url;
  if (auto p = s.find("://"); p != std::string::npos) s = s.substr(p + 3);
  if (auto p = s.find('/'); p != std::string::npos) s = s.substr(0, p);
  return s;
}

struct Joined {
  MemberTable table;
  uint64_t cluster_id = 0;
};

// kvd --join: the member table and cluster id from a running member (Cluster.MemberList),
// retried while it cannot be reached, for at most --join-timeout-ms. This node must be in it
// (added with member add first), as a learner, at the address it advertises.
absl::StatusOr<Joined> FetchMembers(const NodeConfig& config) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_ENABLE_HTTP_PROXY, 0);
  auto stub = etcdserverpb::Cluster::NewStub(
      grpc::CreateCustomChannel(config.join, grpc::InsecureChannelCredentials(), args));
  const absl::Time deadline = absl::Now() + absl::Milliseconds(config.join_timeout_ms);
  etcdserverpb::MemberListResponse resp;
  for (;;) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    grpc::Status st = stub->MemberList(&ctx, etcdserverpb::MemberListRequest(), &resp);
    if (st.ok()) break;
    if (absl::Now() >= deadline) {
      return absl::UnavailableError(absl::StrCat("--join: cannot reach the member at ",
                                                 config.join, ": ", st.error_message()));
    }
    spdlog::warn("--join: {} not reachable yet ({}); retrying", config.join, st.error_message());
    absl::SleepFor(absl::Milliseconds(500));
  }
  Joined j;
  j.cluster_id = resp.header().cluster_id();
  for (const etcdserverpb::Member& m : resp.members()) {
    if (m.peerurls().empty()) continue;
    const std::string hp = HostPortOfUrl(m.peerurls(0));
    const auto colon = hp.rfind(':');
    MemberEntry e;
    e.address.ip = hp.substr(0, colon);
    e.address.grpc_port = static_cast<uint16_t>(std::atoi(hp.substr(colon + 1).c_str()));
    e.address.port = static_cast<uint16_t>(m.raftkv_client_port());
    e.learner = m.islearner();
    j.table.Set(m.id(), e);
  }
  const MemberEntry* self = j.table.Find(config.member_id);
  if (self == nullptr) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "--join: member %d (0x%x) is not in the cluster's member list at %s: add it first "
        "(kvctl member add --peer-url=http://%s), then start it with the id printed",
        config.member_id, config.member_id, config.join, config.advertise.grpc_address()));
  }
  if (self->address.grpc_address() != config.advertise.grpc_address()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "--join: member ", config.member_id, " was added with peer URL http://",
        self->address.grpc_address(), ", but this node advertises ",
        config.advertise.grpc_address(), " (--advertise-ip, --grpc-port)"));
  }
  // This node knows its client port; the add may not have said it (etcdctl cannot).
  MemberEntry own = *self;
  own.address.port = config.advertise.port;
  j.table.Set(config.member_id, own);
  return j;
}

}  // namespace

Node::Node(NodeConfig config)
    : config_(std::move(config)), data_dir_(config_.data_dir, config_.raft.backup_path) {}

Node::~Node() { Shutdown("destroyed"); }

absl::StatusOr<std::unique_ptr<Node>> Node::Start(const NodeConfig& config) {
  spdlog::set_level(spdlog::level::from_str(config.log_level));
  std::unique_ptr<Node> node(new Node(config));
  if (absl::Status s = node->OpenData(); !s.ok()) return s;
  node->kv_ = std::make_unique<KvService>(node->raft_.get(), node->sm_.get(), config.kv);
  if (absl::Status s = node->StartGrpc(); !s.ok()) return s;
  node->tcp_ = std::make_unique<TcpServer>(node->kv_.get(), config.tcp);
  const NodeAddress& self = config.self();
  if (absl::Status s = node->tcp_->Start(config.listen_host(), self.port); !s.ok()) return s;
  spdlog::info("node {}: serving text/RESP on {}:{}, etcd gRPC and peers on {}:{} ({} node "
               "cluster; reached at {})",
               config.id, config.listen_host(), self.port, config.listen_host(), self.grpc_port,
               config.cluster.size(), self.grpc_address());
  return node;
}

absl::Status Node::OpenData() {
  std::error_code ec;
  std::filesystem::create_directories(data_dir_.root(), ec);
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot create data dir ", data_dir_.root(), ": ", ec.message()));
  }
  // The member table: the data dir's (written at each applied membership change), else a
  // join's (from the cluster), else node_config.json's (in RaftLoop).
  absl::StatusOr<std::optional<MemberTable>> members = MemberTable::Load(data_dir_.members());
  if (!members.ok()) return members.status();
  std::vector<uint64_t> bootstrap_voters;
  cluster_id_ = ClusterIdOf(config_.cluster, config_.cluster_token);
  bool fetched = false;
  if (config_.joining()) {
    absl::StatusOr<Identity> existing = ReadIdentity(data_dir_.identity());
    if (existing.ok() && members->has_value()) {
      cluster_id_ = existing->cluster_id;  // a restart of a joined node
    } else {
      spdlog::info("node {}: joining the cluster through {}", config_.id, config_.join);
      absl::StatusOr<Joined> joined = FetchMembers(config_);
      if (!joined.ok()) return joined.status();
      cluster_id_ = joined->cluster_id;
      *members = std::move(joined->table);
      fetched = true;
    }
    bootstrap_voters = (*members)->Voters();
  }
  // Whose data is this? Refuse another node's or another cluster's before touching it.
  Identity expected;
  expected.cluster_id = cluster_id_;
  expected.node_id = config_.id;
  if (config_.joining()) {
    for (const auto& [id, m] : (*members)->members()) {
      expected.members.push_back(m.address.grpc_address());
    }
  } else {
    for (const NodeAddress& a : config_.cluster) expected.members.push_back(a.grpc_address());
  }
  if (absl::Status s = CheckOrWriteIdentity(data_dir_.identity(), data_dir_.root(), expected);
      !s.ok()) {
    return s;
  }
  if (fetched) {
    if (absl::Status s = (*members)->Save(data_dir_.members()); !s.ok()) return s;
  }
  kv::StateMachineOptions store;
  store.record_cache_bytes = config_.record_cache_bytes;
  store.memtable_bytes = config_.memtable_bytes;
  auto sm = OpenStateMachine(data_dir_, config_.restore_from, std::move(store));
  if (!sm.ok()) return sm.status();
  sm_ = *std::move(sm);
  spdlog::info("node {}: state machine at {} (applied index {}, revision {})", config_.id,
               data_dir_.db(), sm_->applied_index(), sm_->revision());

  RaftLoopOptions raft_options = config_.raft;
  raft_options.node_index = config_.id;
  raft_options.cluster = config_.cluster;
  raft_options.members = *members;
  raft_options.bootstrap_voters = bootstrap_voters;
  // Contract item 7 (raft.h): a removed node stops, as on SIGTERM (main waits for it).
  raft_options.on_removed = [] { kill(getpid(), SIGTERM); };
  raft_options.cluster_id = cluster_id_;
  raft_options.empty_start = config_.initial_cluster_state == "new"
                                 ? raft::Config::EmptyStart::kNewCluster
                             : config_.initial_cluster_state == "existing"
                                 ? raft::Config::EmptyStart::kRejoin
                                 : raft::Config::EmptyStart::kAskPeers;
  // A joining node's id promised nothing before: it may vote once the log makes it a voter
  // (raft.h, contract item 6).
  if (fetched) raft_options.empty_start = raft::Config::EmptyStart::kNewCluster;
  raft_options.restored = !config_.restore_from.empty();
  auto raft = RaftLoop::Start(sm_.get(), data_dir_, raft_options);
  if (!raft.ok()) return raft.status();
  raft_ = *std::move(raft);
  return absl::OkStatus();
}

absl::Status Node::StartGrpc() {
  EtcdServiceOptions etcd_options;
  etcd_options.request_timeout_ms = config_.raft.request_timeout_ms;
  etcd_options.max_range_keys = config_.max_range_keys;
  etcd_options.max_range_bytes = static_cast<int64_t>(config_.max_range_bytes);
  // Maintenance.Snapshot (kvctl snapshot save): a fresh copy per request, removed by the
  // handler after streaming. The sequence number keeps same-millisecond requests apart.
  etcd_options.make_snapshot = [sm = sm_.get(), dir = data_dir_,
                                seq = std::make_shared<std::atomic<uint64_t>>(0)]()
      -> absl::StatusOr<std::string> {
    if (absl::Status s = SnapshotStore(dir.snapshots()).CreateDir(); !s.ok()) return s;
    std::string path = dir.export_snapshot(absl::ToUnixMillis(absl::Now()), seq->fetch_add(1));
    auto written = kv::WriteSnapshot(*sm, path);
    if (!written.ok()) return written.status();
    return path;
  };
  etcd_ = std::make_unique<EtcdServices>(kv_.get(), raft_.get(), cluster_id_,
                                         NodeId::FromPosition(config_.id), etcd_options);
  // A forwarded write is answered by the raft loop within --request-timeout-ms plus one tick
  // (PendingRequests::Expire runs every tick); the wait bound adds one more tick of margin.
  const absl::Duration max_forward_wait =
      absl::Milliseconds(config_.raft.request_timeout_ms + 2 * config_.raft.tick_ms);
  peer_service_ = std::make_unique<RaftPeerService>(
      raft_.get(), data_dir_.received_snapshots(), max_forward_wait, cluster_id_);
  const std::string listen = absl::StrCat(config_.listen_host(), ":", config_.self().grpc_port);
  grpc::ServerBuilder builder;
  int grpc_port = 0;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &grpc_port);
  builder.SetMaxReceiveMessageSize(static_cast<int>(config_.grpc_max_message_bytes));
  builder.SetMaxSendMessageSize(static_cast<int>(config_.grpc_max_message_bytes));
  etcd_->Register(&builder);
  builder.RegisterService(peer_service_.get());
  ApplyPeerServerOptions(&builder);
  grpc_server_ = builder.BuildAndStart();
  if (!grpc_server_ || grpc_port == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen for gRPC on ", listen, " (port in use?)"));
  }
  grpc_port_ = static_cast<uint16_t>(grpc_port);
  return absl::OkStatus();
}

void Node::Shutdown(const std::string& reason) {
  if (shut_down_) return;
  shut_down_ = true;
  spdlog::info("node {}: shutting down ({})", config_.id, reason);
  // A leader hands over first, while it still serves: clients then see a transfer (a few
  // round trips, writes held meanwhile) instead of an election timeout after it is gone.
  if (raft_ && config_.ShutdownTransferTimeoutMs() > 0) {
    absl::Status s =
        raft_->HandOverLeadership(absl::Milliseconds(config_.ShutdownTransferTimeoutMs()));
    if (!s.ok()) {
      spdlog::info("node {}: leadership not handed over before stopping: {}", config_.id,
                   std::string(s.message()));
    }
  }
  // Clients first (no new work; in-flight requests finish or fail), then consensus, then
  // the store.
  if (tcp_) tcp_->Stop();
  if (grpc_server_) {
    grpc_server_->Shutdown(std::chrono::system_clock::now() +
                           std::chrono::milliseconds(config_.shutdown_grpc_grace_ms));
  }
  if (raft_) raft_->Stop();
  tcp_.reset();
  grpc_server_.reset();
  peer_service_.reset();
  etcd_.reset();
  kv_.reset();
  raft_.reset();
  sm_.reset();  // closes RocksDB
  spdlog::info("node {}: stopped", config_.id);
}


uint16_t Node::client_port() const { return tcp_ ? tcp_->port() : 0; }
uint16_t Node::grpc_port() const { return grpc_port_; }

}  // namespace raftkv::server
