#include "server/service/kv_service.h"

#include <memory>
#include <utility>

#include "absl/strings/str_format.h"

namespace raftkv::server {
namespace {

kvpb::Command PutCommand(std::vector<std::pair<std::string, std::string>> kvs) {
  kvpb::Command cmd;
  for (auto& [key, value] : kvs) {
    kvpb::Put* put = cmd.add_ops()->mutable_put();
    put->set_key(std::move(key));
    put->set_value(std::move(value));
  }
  return cmd;
}

}  // namespace

ErrorKind KindOf(const absl::Status& error) {
  switch (error.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kResourceExhausted:
      return ErrorKind::kNotApplied;
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kUnknown:
      return ErrorKind::kOutcomeUnknown;
    default:
      return ErrorKind::kRefused;
  }
}

absl::Status KvService::ValidateSession(const WriteSession& session) {
  if (session.client_id == 0) {
    if (session.sequence != 0 || session.first_unacked != 0) {
      return absl::InvalidArgumentError("a sequence without a session id");
    }
    return absl::OkStatus();
  }
  if (session.sequence == 0) return absl::InvalidArgumentError("session sequence must be >= 1");
  if (session.first_unacked > session.sequence) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "session first_unacked %d is past the sequence %d", session.first_unacked,
        session.sequence));
  }
  return absl::OkStatus();
}

absl::Status KvService::ValidateKey(const std::string& key) const {
  if (key.empty()) return absl::InvalidArgumentError("empty key");
  if (key.size() > limits_.max_key_bytes) {
    return absl::InvalidArgumentError(absl::StrFormat("key too long (%d bytes, limit %d)",
                                                      key.size(), limits_.max_key_bytes));
  }
  return absl::OkStatus();
}

absl::Status KvService::ValidateCommand(const kvpb::Command& cmd) const {
  if (cmd.ops_size() == 0) return absl::InvalidArgumentError("empty command");
  if (static_cast<size_t>(cmd.ops_size()) > limits_.max_ops_per_request) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "too many operations (%d, limit %d)", cmd.ops_size(), limits_.max_ops_per_request));
  }
  for (const kvpb::Op& op : cmd.ops()) {
    if (op.has_put()) {
      if (absl::Status s = ValidateKey(op.put().key()); !s.ok()) return s;
      if (op.put().value().size() > limits_.max_value_bytes) {
        return absl::InvalidArgumentError(
            absl::StrFormat("value too large (%d bytes, limit %d)", op.put().value().size(),
                            limits_.max_value_bytes));
      }
    } else if (op.has_delete_()) {
      if (absl::Status s = ValidateKey(op.delete_().key()); !s.ok()) return s;
      if (op.delete_().range_end().size() > limits_.max_key_bytes) {
        return absl::InvalidArgumentError("range end too long");
      }
    } else {
      return absl::InvalidArgumentError("operation with neither put nor delete");
    }
  }
  return absl::OkStatus();
}

void KvService::Write(kvpb::Command cmd, Done<kv::ApplyResult> done, WriteSession session) {
  if (absl::Status s = ValidateCommand(cmd); !s.ok()) {
    std::move(done)(s);
    return;
  }
  if (absl::Status s = ValidateSession(session); !s.ok()) {
    std::move(done)(s);
    return;
  }
  if (session.client_id != 0) {
    cmd.set_client_id(session.client_id);
    cmd.set_sequence(session.sequence);
    cmd.set_first_unacked(session.first_unacked);
    cmd.set_session_keeps_prev(session.keep_prev);
  }
  replicator_->Write(std::move(cmd), [done = std::move(done)](
                                         absl::StatusOr<kv::ApplyResult> r) mutable {
    // (Also a forwarding node's own session, raft_loop.h, can meet this.)
    if (r.ok() && r->session_refused) {
      std::move(done)(absl::UnknownError(
          "outcome unknown: the write's sequence is below its session's window (already "
          "acknowledged, or pushed out by newer writes); its first result is no longer kept"));
      return;
    }
    std::move(done)(std::move(r));
  });
}

void KvService::Put(std::string key, std::string value, Done<kv::ApplyResult> done,
                    WriteSession session) {
  std::vector<std::pair<std::string, std::string>> kvs;
  kvs.emplace_back(std::move(key), std::move(value));
  Write(PutCommand(std::move(kvs)), std::move(done), session);
}

void KvService::PutMany(std::vector<std::pair<std::string, std::string>> kvs,
                        Done<kv::ApplyResult> done, WriteSession session) {
  Write(PutCommand(std::move(kvs)), std::move(done), session);
}

void KvService::Delete(std::string key, std::string range_end, Done<kv::ApplyResult> done,
                       WriteSession session) {
  kvpb::Command cmd;
  kvpb::Delete* del = cmd.add_ops()->mutable_delete_();
  del->set_key(std::move(key));
  del->set_range_end(std::move(range_end));
  Write(std::move(cmd), std::move(done), session);
}

void KvService::DeleteMany(std::vector<std::string> keys, Done<kv::ApplyResult> done,
                           WriteSession session) {
  kvpb::Command cmd;
  for (std::string& key : keys) cmd.add_ops()->mutable_delete_()->set_key(std::move(key));
  Write(std::move(cmd), std::move(done), session);
}

void KvService::Get(std::vector<std::string> keys, size_t max_total_value_bytes,
                    Done<std::vector<std::optional<kv::KeyValue>>> done) {
  if (keys.empty()) {
    std::move(done)(absl::InvalidArgumentError("no keys"));
    return;
  }
  if (keys.size() > limits_.max_ops_per_request) {
    std::move(done)(absl::InvalidArgumentError(absl::StrFormat(
        "too many keys (%d, limit %d)", keys.size(), limits_.max_ops_per_request)));
    return;
  }
  for (const std::string& key : keys) {
    if (absl::Status s = ValidateKey(key); !s.ok()) {
      std::move(done)(s);
      return;
    }
  }
  replicator_->ReadBarrier([this, keys = std::move(keys), max_total_value_bytes,
                            done = std::move(done)](absl::Status barrier) mutable {
    if (!barrier.ok()) {
      std::move(done)(barrier);
      return;
    }
    std::vector<std::optional<kv::KeyValue>> values;
    values.reserve(keys.size());
    size_t value_bytes = 0;
    for (const std::string& key : keys) {
      absl::StatusOr<std::optional<kv::KeyValue>> kv = sm_->Get(key);
      if (!kv.ok()) {
        std::move(done)(kv.status());
        return;
      }
      if (*kv) value_bytes += (*kv)->value.size();
      if (value_bytes > max_total_value_bytes) {
        std::move(done)(absl::ResourceExhaustedError(
            absl::StrFormat("reply too large (over %d bytes, limit %d): ask for fewer keys",
                            value_bytes, max_total_value_bytes)));
        return;
      }
      values.push_back(*std::move(kv));
    }
    std::move(done)(std::move(values));
  });
}

void KvService::Range(std::string key, std::string range_end, int64_t limit, bool keys_only,
                      bool count_only, Done<kv::RangeResult> done) {
  if (key.size() > limits_.max_key_bytes || range_end.size() > limits_.max_key_bytes) {
    std::move(done)(absl::InvalidArgumentError(
        absl::StrFormat("key too long (limit %d bytes)", limits_.max_key_bytes)));
    return;
  }
  if (limit < 0) {
    std::move(done)(absl::InvalidArgumentError("negative limit"));
    return;
  }
  replicator_->ReadBarrier([this, key = std::move(key), range_end = std::move(range_end), limit,
                            keys_only, count_only,
                            done = std::move(done)](absl::Status barrier) mutable {
    if (!barrier.ok()) {
      std::move(done)(barrier);
      return;
    }
    std::move(done)(sm_->Range(key, range_end, limit, keys_only, count_only));
  });
}

}  // namespace raftkv::server
