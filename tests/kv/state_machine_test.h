// Shared helpers for the state-machine tests: command builders and a fixture that owns a
// store in a temporary directory and applies entries with consecutive indexes.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "kv/state_machine.h"
#include "kv/temp_dir.h"

namespace raftkv::kv::testing {

inline kvpb::Command Cmd() { return kvpb::Command(); }

inline kvpb::Command& AddPut(kvpb::Command& cmd, std::string key, std::string value) {
  kvpb::Put* put = cmd.add_ops()->mutable_put();
  put->set_key(std::move(key));
  put->set_value(std::move(value));
  return cmd;
}

inline kvpb::Command& AddDelete(kvpb::Command& cmd, std::string key, std::string range_end = "") {
  kvpb::Delete* del = cmd.add_ops()->mutable_delete_();
  del->set_key(std::move(key));
  del->set_range_end(std::move(range_end));
  return cmd;
}

inline kvpb::Command PutCmd(std::string key, std::string value) {
  kvpb::Command cmd;
  AddPut(cmd, std::move(key), std::move(value));
  return cmd;
}

inline kvpb::Command DeleteCmd(std::string key, std::string range_end = "") {
  kvpb::Command cmd;
  AddDelete(cmd, std::move(key), std::move(range_end));
  return cmd;
}

class StateMachineTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }

  StateMachineOptions Options() const {
    StateMachineOptions o;
    o.db_path = dir_.Sub("db");
    o.sync_writes = sync_writes_;
    return o;
  }

  // Closes the store (if open) and opens it again from disk.
  void Reopen() {
    sm_.reset();
    absl::StatusOr<std::unique_ptr<StateMachine>> sm = StateMachine::Open(Options());
    ASSERT_TRUE(sm.ok()) << sm.status();
    sm_ = std::move(*sm);
  }

  // Applies cmd as the next entry (term 1) and returns its result; fails the test on error.
  ApplyResult Next(const kvpb::Command& cmd, uint64_t term = 1) {
    absl::StatusOr<ApplyResult> r = sm_->Apply(sm_->applied_index() + 1, term, cmd);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : ApplyResult{};
  }

  std::optional<KeyValue> MustGet(std::string_view key) {
    absl::StatusOr<std::optional<KeyValue>> kv = sm_->Get(key);
    EXPECT_TRUE(kv.ok()) << kv.status();
    return kv.ok() ? *kv : std::nullopt;
  }

  RangeResult MustRange(std::string_view key, std::string_view end, int64_t limit = 0,
                        bool keys_only = false, bool count_only = false) {
    absl::StatusOr<RangeResult> r = sm_->Range(key, end, limit, keys_only, count_only);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : RangeResult{};
  }

  static std::vector<std::string> Keys(const RangeResult& r) {
    std::vector<std::string> keys;
    for (const KeyValue& kv : r.kvs) keys.push_back(kv.key);
    return keys;
  }

  TempDir dir_;
  bool sync_writes_ = false;
  std::unique_ptr<StateMachine> sm_;
};

}  // namespace raftkv::kv::testing
