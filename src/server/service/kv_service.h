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

// A client's session for exactly-once writes (docs/architecture.md, "Sessions"). client_id 0:
// none (the write is applied each time it is sent). Otherwise sequence >= 1 names this write
// within the session: sent again (to any node), it is applied at most once and answered with
// the first result. first_unacked (0: not given): the client's lowest sequence still waiting
// for its answer; results below it are dropped.
struct WriteSession {
  uint64_t client_id = 0;
  uint64_t sequence = 0;
  uint64_t first_unacked = 0;
  // The first result kept for a duplicate holds the previous key-values (etcd prev_kv).
  bool keep_prev = false;
};

// The two kinds of failed request, the same on every protocol (README.md, "Errors";
// docs/architecture.md, "Errors"):
//   kNotApplied      nothing was proposed: no leader, not the leader, over a limit, shutting
//                    down before proposing (kUnavailable, kResourceExhausted). Safe to retry.
//   kOutcomeUnknown  proposed or forwarded, then timed out or interrupted (kDeadlineExceeded,
//                    kUnknown): it may or may not be applied; retry only with the session.
//   kRefused         the request itself is wrong (kInvalidArgument, ...): not applied, and
//                    sending it again will not help.
enum class ErrorKind { kNotApplied, kOutcomeUnknown, kRefused };
ErrorKind KindOf(const absl::Status& error);

class KvService {
 public:
  template <typename T>
  using Done = absl::AnyInvocable<void(absl::StatusOr<T>) &&>;

  KvService(Replicator* replicator, const kv::StateMachine* state_machine, KvLimits limits)
      : replicator_(replicator), sm_(state_machine), limits_(limits) {}

  const KvLimits& limits() const { return limits_; }
  Replicator* replicator() const { return replicator_; }
  // The same service over another Replicator (same state machine and limits): a front end
  // that gathers the writes of several requests into one Replicator::WriteBatch runs them
  // through a KvService over a collecting Replicator.
  KvService WithReplicator(Replicator* replicator) const {
    return KvService(replicator, sm_, limits_);
  }

  // Errors (besides the Replicator's): kInvalidArgument "key too long (N bytes, limit M)",
  // "value too large ...", "empty key", "too many keys ...".
  // Every write takes an optional session; with one, a duplicate is answered with the first
  // result (result.duplicate set), and a sequence below the session's window fails with
  // kUnknown (outcome unknown: its first result is gone).
  void Put(std::string key, std::string value, Done<kv::ApplyResult> done,
           WriteSession session = {});
  // Several puts applied atomically as one entry (MSET).
  void PutMany(std::vector<std::pair<std::string, std::string>> kvs, Done<kv::ApplyResult> done,
               WriteSession session = {});
  // Deletes `key`, or [key, range_end) with etcd's range rules when range_end is set.
  // result.ops[0].deleted says how many keys were removed.
  void Delete(std::string key, std::string range_end, Done<kv::ApplyResult> done,
              WriteSession session = {});
  // Deletes several keys atomically as one entry (DEL k1 k2 ...); ops in key order given.
  void DeleteMany(std::vector<std::string> keys, Done<kv::ApplyResult> done,
                  WriteSession session = {});
  // Any prepared command (etcd Txn without compares, etc.), after validation.
  void Write(kvpb::Command cmd, Done<kv::ApplyResult> done, WriteSession session = {});

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
  // kInvalidArgument for a session without a sequence, or first_unacked past the sequence.
  static absl::Status ValidateSession(const WriteSession& session);

 private:
  Replicator* replicator_;
  const kv::StateMachine* sm_;
  KvLimits limits_;
};

}  // namespace raftkv::server
