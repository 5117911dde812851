// The user-level operations every front end (text, RESP, etcd gRPC) shares: validation of
// sizes against the limits, writes through the Replicator, linearizable reads through
// ReadBarrier then the local state machine. One place, so the protocols cannot drift apart.
//
// Callbacks run on an internal thread and must not block.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "kv/state_machine.h"
#include "server/service/replicator.h"

namespace raftkv::server {

struct KvLimits {
  size_t max_key_bytes = 1024;             // --max-key-bytes
  size_t max_value_bytes = 1024 * 1024;    // --max-value-bytes
  size_t max_ops_per_request = 10000;      // --max-ops-per-request (MGET/MSET keys, Txn ops)
};

class KvService {
 public:
  template <typename T>
  using Done = absl::AnyInvocable<void(absl::StatusOr<T>) &&>;

  KvService(Replicator* replicator, const kv::StateMachine* state_machine, KvLimits limits)
      : replicator_(replicator), sm_(state_machine), limits_(limits) {}

  const KvLimits& limits() const { return limits_; }
  Replicator* replicator() const { return replicator_; }

  // Errors (besides the Replicator's): kInvalidArgument "key too long (N bytes, limit M)",
  // "value too large ...", "empty key", "too many keys ...".
  void Put(std::string key, std::string value, Done<kv::ApplyResult> done);
  // Several puts applied atomically as one entry (MSET).
  void PutMany(std::vector<std::pair<std::string, std::string>> kvs, Done<kv::ApplyResult> done);
  // Deletes `key`, or [key, range_end) with etcd's range rules when range_end is set.
  // result.ops[0].deleted says how many keys were removed.
  void Delete(std::string key, std::string range_end, Done<kv::ApplyResult> done);
  // Deletes several keys atomically as one entry (DEL k1 k2 ...); ops in key order given.
  void DeleteMany(std::vector<std::string> keys, Done<kv::ApplyResult> done);
  // Any prepared command (etcd Txn without compares, etc.), after validation.
  void Write(kvpb::Command cmd, Done<kv::ApplyResult> done);

  // Linearizable reads.
  // Get stops reading once the values read add up to more than `max_total_value_bytes` and
  // fails with kResourceExhausted "reply too large (over N bytes, limit M): ask for fewer
  // keys", so one request holds at most that much plus one value (--max-reply-bytes).
  void Get(std::vector<std::string> keys, size_t max_total_value_bytes,
           Done<std::vector<std::optional<kv::KeyValue>>> done);
  void Range(std::string key, std::string range_end, int64_t limit, bool keys_only,
             bool count_only, Done<kv::RangeResult> done);

  absl::Status ValidateKey(const std::string& key) const;
  absl::Status ValidateCommand(const kvpb::Command& cmd) const;

 private:
  Replicator* replicator_;
  const kv::StateMachine* sm_;
  KvLimits limits_;
};

}  // namespace raftkv::server
