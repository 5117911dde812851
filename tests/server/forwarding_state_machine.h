// A kv::StateMachine that passes every call to a real store: the base of the tests' decorators,
// which override only the calls they hold up, count or lock.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "kv/state_machine.h"

namespace raftkv::server::testing {

class ForwardingStateMachine : public kv::StateMachine {
 public:
  explicit ForwardingStateMachine(std::unique_ptr<kv::StateMachine> inner)
      : inner_(std::move(inner)) {}

  absl::StatusOr<kv::ApplyResult> Apply(uint64_t index, uint64_t term,
                                        const kvpb::Command& cmd) override {
    return inner_->Apply(index, term, cmd);
  }
  absl::Status ApplyEmpty(uint64_t index, uint64_t term) override {
    return inner_->ApplyEmpty(index, term);
  }
  absl::Status InstallSnapshot(const std::string& path) override {
    return inner_->InstallSnapshot(path);
  }
  absl::StatusOr<std::optional<kv::KeyValue>> Get(std::string_view key) const override {
    return inner_->Get(key);
  }
  absl::StatusOr<kv::RangeResult> Range(std::string_view key, std::string_view range_end,
                                        int64_t limit, bool keys_only,
                                        bool count_only) const override {
    return inner_->Range(key, range_end, limit, keys_only, count_only);
  }
  uint64_t applied_index() const override { return inner_->applied_index(); }
  uint64_t applied_term() const override { return inner_->applied_term(); }
  int64_t revision() const override { return inner_->revision(); }
  absl::Status Flush() override { return inner_->Flush(); }
  uint64_t ApproximateSizeBytes() const override { return inner_->ApproximateSizeBytes(); }
  absl::Status Export(kv::ExportSink& sink) const override { return inner_->Export(sink); }

 protected:
  kv::StateMachine& inner() const { return *inner_; }

 private:
  std::unique_ptr<kv::StateMachine> inner_;
};

}  // namespace raftkv::server::testing
