// Test support for the etcd gRPC services and kvctl: a real single-node stack (RocksDB state
// machine + LocalReplicator + KvService + EtcdServices) on an in-process gRPC server bound to
// 127.0.0.1:0, with a replicator wrapper that can inject errors, hold requests, and pretend
// another node leads.
#pragma once

#include <grpcpp/grpcpp.h>
#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "etcd/rpc.grpc.pb.h"
#include "gtest/gtest.h"
#include "kv/sqlite_snapshot.h"
#include "kv/state_machine.h"
#include "server/frontend/etcd/etcd_service.h"
#include "server/service/kv_service.h"
#include "server/local_replicator.h"
#include "server/service/replicator.h"

namespace raftkv::server::testing {

// Forwards to a real replicator unless told otherwise.
class InjectingReplicator : public Replicator {
 public:
  explicit InjectingReplicator(Replicator* inner) : inner_(inner) {}
  ~InjectingReplicator() override { ReleaseHeld(); }

  // Every later Write/ReadBarrier fails with `error` (OkStatus() to stop).
  void FailWith(absl::Status error) {
    absl::MutexLock lock(&mu_);
    error_ = std::move(error);
  }
  // Every later Write/ReadBarrier is held (never answered) until ReleaseHeld().
  void Hold(bool hold) {
    absl::MutexLock lock(&mu_);
    hold_ = hold;
  }
  // Blocks until at least `n` writes are held.
  void AwaitHeldWrites(size_t n) {
    absl::MutexLock lock(&mu_);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return held_writes_.size() >= n;
    };
    mu_.Await(absl::Condition(&enough));
  }
  // Answers every held request with kUnavailable.
  void ReleaseHeld() {
    std::vector<WriteDone> writes;
    std::vector<ReadDone> reads;
    {
      absl::MutexLock lock(&mu_);
      writes.swap(held_writes_);
      reads.swap(held_reads_);
    }
    for (WriteDone& d : writes) std::move(d)(absl::UnavailableError("released"));
    for (ReadDone& d : reads) std::move(d)(absl::UnavailableError("released"));
  }
  // Status()/Members() report `leader` as leader and add it as a member at `grpc_address`.
  void PretendLeader(uint64_t leader, std::string grpc_address) {
    absl::MutexLock lock(&mu_);
    fake_leader_ = leader;
    fake_leader_address_ = std::move(grpc_address);
  }
  // Status() reports these alarms.
  void SetAlarms(std::vector<std::string> alarms) {
    absl::MutexLock lock(&mu_);
    alarms_ = std::move(alarms);
  }
  // The address Members() reports for this node (known only after the server started).
  void SetGrpcAddress(std::string address) {
    absl::MutexLock lock(&mu_);
    grpc_address_ = std::move(address);
  }

  void Write(kvpb::Command cmd, WriteDone done) override {
    absl::Status error;
    {
      absl::MutexLock lock(&mu_);
      if (hold_) {
        held_writes_.push_back(std::move(done));
        return;
      }
      error = error_;
    }
    if (!error.ok()) {
      std::move(done)(error);
      return;
    }
    inner_->Write(std::move(cmd), std::move(done));
  }
  void ReadBarrier(ReadDone done) override {
    absl::Status error;
    {
      absl::MutexLock lock(&mu_);
      if (hold_) {
        held_reads_.push_back(std::move(done));
        return;
      }
      error = error_;
    }
    if (!error.ok()) {
      std::move(done)(error);
      return;
    }
    inner_->ReadBarrier(std::move(done));
  }
  NodeStatus Status() const override {
    NodeStatus s = inner_->Status();
    absl::MutexLock lock(&mu_);
    s.alarms = alarms_;
    if (fake_leader_ >= 0) {
      s.leader_id = fake_leader_;
      s.role = "follower";
    }
    return s;
  }
  std::vector<PeerStatus> Members() const override {
    std::vector<PeerStatus> members = inner_->Members();
    absl::MutexLock lock(&mu_);
    for (PeerStatus& p : members) p.grpc_address = grpc_address_;
    if (fake_leader_ >= 0) {
      PeerStatus leader;
      leader.id = static_cast<uint64_t>(fake_leader_);
      leader.grpc_address = fake_leader_address_;
      leader.role = "leader";
      members.push_back(leader);
    }
    return members;
  }

 private:
  Replicator* const inner_;
  mutable absl::Mutex mu_;
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> alarms_ ABSL_GUARDED_BY(mu_);
  bool hold_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<WriteDone> held_writes_ ABSL_GUARDED_BY(mu_);
  std::vector<ReadDone> held_reads_ ABSL_GUARDED_BY(mu_);
  int64_t fake_leader_ ABSL_GUARDED_BY(mu_) = -1;
  std::string fake_leader_address_ ABSL_GUARDED_BY(mu_);
  std::string grpc_address_ ABSL_GUARDED_BY(mu_);
};

// gtest's ASSERT_* cannot be used in a constructor; a broken fixture is fatal.
inline void SetUpCheck(bool ok, const char* what) {
  if (!ok) {
    ADD_FAILURE() << "EtcdTestServer set-up failed: " << what;
    std::abort();
  }
}

struct EtcdTestServerOptions {
  KvLimits limits;
  EtcdServiceOptions etcd;
  uint64_t cluster_id = 7;
  uint64_t node_id = 0;
  // Sets etcd.make_snapshot (unless already set) to what kvd does: kv::WriteSnapshot of the
  // state machine into snapshot_dir()/export-<n>.db. `after_write`, if set, runs on each
  // written file before it is returned (tests corrupt it there).
  bool serve_snapshots = false;
  std::function<void(const std::string& path)> after_write;
};

// The whole single-node stack behind a gRPC server on 127.0.0.1:<ephemeral>.
class EtcdTestServer {
 public:
  explicit EtcdTestServer(EtcdTestServerOptions options = {}) {
    std::string tmpl = ::testing::TempDir() + "/raftkv_etcd_XXXXXX";
    SetUpCheck(mkdtemp(tmpl.data()) != nullptr, "mkdtemp(tmpl.data()) != nullptr");
    dir_ = tmpl;
    kv::StateMachineOptions sm_options;
    sm_options.db_path = dir_ + "/db";
    auto sm = kv::StateMachine::Open(sm_options);
    SetUpCheck(sm.ok(), "sm.ok()");
    sm_ = *std::move(sm);
    LocalReplicatorOptions repl_options;
    repl_options.node_id = options.node_id;
    repl_options.cluster_id = options.cluster_id;
    local_ = std::make_unique<LocalReplicator>(sm_.get(), repl_options);
    replicator_ = std::make_unique<InjectingReplicator>(local_.get());
    kv_ = std::make_unique<KvService>(replicator_.get(), sm_.get(), options.limits);
    if (options.serve_snapshots && !options.etcd.make_snapshot) {
      snapshot_dir_ = dir_ + "/snapshots";
      std::filesystem::create_directories(snapshot_dir_);
      options.etcd.make_snapshot = [this, after_write = options.after_write]()
          -> absl::StatusOr<std::string> {
        std::string path =
            absl::StrCat(snapshot_dir_, "/export-", snapshot_seq_.fetch_add(1), ".db");
        auto written = kv::WriteSnapshot(*sm_, path);
        if (!written.ok()) return written.status();
        if (after_write) after_write(path);
        return path;
      };
    }
    services_ = std::make_unique<EtcdServices>(kv_.get(), replicator_.get(), options.cluster_id,
                                               NodeId::FromPosition(options.node_id), options.etcd);
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    services_->Register(&builder);
    server_ = builder.BuildAndStart();
    SetUpCheck(server_ != nullptr && port_ > 0, "server_ != nullptr && port_ > 0");
    address_ = absl::StrCat("127.0.0.1:", port_);
    replicator_->SetGrpcAddress(address_);

    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_ENABLE_HTTP_PROXY, 0);
    channel_ = grpc::CreateCustomChannel(address_, grpc::InsecureChannelCredentials(), args);
  }

  ~EtcdTestServer() {
    replicator_->ReleaseHeld();
    server_->Shutdown();
    server_.reset();
    services_.reset();
    kv_.reset();
    local_->Stop();
    replicator_.reset();
    local_.reset();
    sm_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  const std::string& address() const { return address_; }
  // Where serve_snapshots puts its files (empty without it).
  const std::string& snapshot_dir() const { return snapshot_dir_; }
  InjectingReplicator* replicator() { return replicator_.get(); }
  std::unique_ptr<etcdserverpb::KV::Stub> Kv() { return etcdserverpb::KV::NewStub(channel_); }
  std::unique_ptr<etcdserverpb::Maintenance::Stub> Maintenance() {
    return etcdserverpb::Maintenance::NewStub(channel_);
  }
  std::unique_ptr<etcdserverpb::Cluster::Stub> Cluster() {
    return etcdserverpb::Cluster::NewStub(channel_);
  }

 private:
  std::string dir_;
  std::string snapshot_dir_;
  std::atomic<uint64_t> snapshot_seq_{0};
  std::unique_ptr<kv::StateMachine> sm_;
  std::unique_ptr<LocalReplicator> local_;
  std::unique_ptr<InjectingReplicator> replicator_;
  std::unique_ptr<KvService> kv_;
  std::unique_ptr<EtcdServices> services_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::string address_;
  std::shared_ptr<grpc::Channel> channel_;
};

// A client context with a deadline, so a broken server fails the test instead of hanging it.
inline std::unique_ptr<grpc::ClientContext> Ctx(int timeout_ms = 10000) {
  auto c = std::make_unique<grpc::ClientContext>();
  c->set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(timeout_ms));
  return c;
}

}  // namespace raftkv::server::testing
