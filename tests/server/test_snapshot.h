// A real Raft snapshot file for the peer tests: a store holding keys k0..k<keys-1> (200-byte
// values), one entry per key at term 1, written as a kv/sqlite_snapshot.h file at `path`. The
// store lives in `scratch_dir`/db.
#pragma once

#include <filesystem>
#include <string>

#include "gtest/gtest.h"
#include "kv/sqlite_snapshot.h"
#include "kv/state_machine.h"

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

}  // namespace raftkv::server::testing
