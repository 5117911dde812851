// The peer tests' snapshot fixtures. WriteTestSnapshot writes a real Raft snapshot file: a
// store holding keys k0..k<keys-1> (200-byte values), one entry per key at term 1, written as
// a kv/sqlite_snapshot.h file at `path`; the store lives in `scratch_dir`/db.
#pragma once

#include <filesystem>
#include <string>

#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "kv/sqlite_snapshot.h"
#include "kv/state_machine.h"
#include "raft_service.grpc.pb.h"
#include "server/peer/snapshot_receiver.h"

namespace raftkv::server::testing {

inline void WriteTestSnapshot(const std::filesystem::path& scratch_dir, int keys,
                              const std::string& path) {
  kv::StateMachineOptions o;
  o.db_path = (scratch_dir / "db").string();
  auto sm = kv::StateMachine::Open(o);
  ASSERT_TRUE(sm.ok()) << sm.status();
  for (int i = 0; i < keys; ++i) {
    kvpb::Command cmd;
    auto* put = cmd.add_ops()->mutable_put();
    put->set_key("k" + std::to_string(i));
    put->set_value(std::string(200, 'v'));
    ASSERT_TRUE((*sm)->Apply(i + 1, 1, cmd).ok());
  }
  ASSERT_TRUE(kv::WriteSnapshot(**sm, path).ok());
}

// Only the snapshot stream of the peer service, served by `r`.
class ReceiverService final : public raftpb::RaftPeer::Service {
 public:
  explicit ReceiverService(SnapshotReceiver* r) : r_(r) {}
  grpc::Status InstallSnapshot(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<raftpb::SnapshotAck, raftpb::SnapshotChunk>* stream) override {
    return r_->Serve(context, stream);
  }

 private:
  SnapshotReceiver* r_;
};

}  // namespace raftkv::server::testing
