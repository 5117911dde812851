#include "server/frontend/tcp/resp_protocol.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/service/kv_service.h"

namespace raftkv::server {
namespace {

// A length line ("*<n>\r\n" or "$<n>\r\n") longer than this is not a length.
constexpr size_t kMaxHeaderBytes = 32;

// Parses the header line starting at buf[pos] (which holds `type`). Returns the header's end
// (after "\r\n") and the number, nullopt if more bytes are needed, or an error string.
struct Header {
  size_t end = 0;
  int64_t value = 0;
};
enum class HeaderStatus { kOk, kIncomplete, kBad };

HeaderStatus ParseHeader(std::string_view buf, size_t pos, Header* out) {
  size_t cr = buf.find("\r\n", pos + 1);
  if (cr == std::string_view::npos || cr - pos > kMaxHeaderBytes) {
    // Maybe the "\r\n" has not arrived yet; but a header this long is garbage.
    return buf.size() - pos > kMaxHeaderBytes ? HeaderStatus::kBad : HeaderStatus::kIncomplete;
  }
  std::string_view digits = buf.substr(pos + 1, cr - pos - 1);
  bool negative = !digits.empty() && digits[0] == '-';
  if (negative) digits.remove_prefix(1);
  if (digits.empty() || digits.size() > 18) return HeaderStatus::kBad;
  int64_t v = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return HeaderStatus::kBad;
    v = v * 10 + (c - '0');
  }
  out->end = cr + 2;
  out->value = negative ? -v : v;
  return HeaderStatus::kOk;
}

std::string Ok() { return "+OK\r\n"; }
std::string Err(std::string_view msg) { return RespError("ERR " + std::string(msg)); }
std::string StatusErr(const absl::Status& s) { return Err(ErrorText(s)); }
std::string WrongArgs(std::string_view lower_name) {
  return Err("wrong number of arguments for '" + std::string(lower_name) + "' command");
}

std::string UnknownCommand(const std::vector<std::string>& args) {
  // Redis 7's wording, which some clients match on.
  std::string msg = absl::StrCat("unknown command '", PrintableExcerpt(args[0], 128),
                                 "', with args beginning with: ");
  for (size_t i = 1; i < args.size() && msg.size() < 256; ++i) {
    absl::StrAppend(&msg, "'", PrintableExcerpt(args[i], 128), "' ");
  }
  return Err(msg);
}

// A kRead/kWrite request whose `run` calls `start(kv, reply)`.
template <typename F>
TcpRequest Async(RequestKind kind, F start) {
  TcpRequest req;
  req.kind = kind;
  req.run = std::move(start);
  return req;
}

using GetResult = absl::StatusOr<std::vector<std::optional<kv::KeyValue>>>;

TcpRequest Get(std::vector<std::string> keys, bool as_array, size_t max_reply_bytes) {
  return Async(RequestKind::kRead, [keys = std::move(keys), as_array, max_reply_bytes](
                                       KvService* kv, ReplyFn reply) mutable {
    kv->Get(std::move(keys), max_reply_bytes, [reply = std::move(reply), as_array,
                                               max_reply_bytes](GetResult r) mutable {
      if (!r.ok()) return std::move(reply)(StatusErr(r.status()));
      size_t bytes = as_array ? RespArrayHeader(r->size()).size() : 0;
      for (const std::optional<kv::KeyValue>& v : *r) {
        bytes += v ? RespBulkBytes(v->value.size()) : RespNull().size();
      }
      if (bytes > max_reply_bytes) {
        return std::move(reply)(StatusErr(ReplyTooLarge(bytes, max_reply_bytes)));
      }
      std::string out = as_array ? RespArrayHeader(r->size()) : "";
      out.reserve(bytes);
      for (const std::optional<kv::KeyValue>& v : *r) {
        out += v ? RespBulk(v->value) : RespNull();
      }
      std::move(reply)(std::move(out));
    });
  });
}

TcpRequest Exists(std::vector<std::string> keys) {
  return Async(RequestKind::kRead, [keys = std::move(keys)](KvService* kv,
                                                            ReplyFn reply) mutable {
    // The reply is one integer, so --max-reply-bytes does not apply; the values are still
    // read (KvService has no keys-only Get), bounded only by --max-ops-per-request.
    kv->Get(std::move(keys), SIZE_MAX, [reply = std::move(reply)](GetResult r) mutable {
      if (!r.ok()) return std::move(reply)(StatusErr(r.status()));
      int64_t n = std::count_if(r->begin(), r->end(), [](const auto& v) { return v.has_value(); });
      std::move(reply)(RespInteger(n));
    });
  });
}

TcpRequest PutMany(std::vector<std::pair<std::string, std::string>> kvs,
                   WriteSession session) {
  return Async(RequestKind::kWrite, [kvs = std::move(kvs), session](KvService* kv,
                                                                    ReplyFn reply) mutable {
    kv->PutMany(
        std::move(kvs),
        [reply = std::move(reply)](absl::StatusOr<kv::ApplyResult> r) mutable {
          std::move(reply)(r.ok() ? Ok() : StatusErr(r.status()));
        },
        session);
  });
}

TcpRequest Del(std::vector<std::string> keys, WriteSession session) {
  return Async(RequestKind::kWrite, [keys = std::move(keys), session](KvService* kv,
                                                                      ReplyFn reply) mutable {
    kv->DeleteMany(
        std::move(keys),
        [reply = std::move(reply)](absl::StatusOr<kv::ApplyResult> r) mutable {
          if (!r.ok()) return std::move(reply)(StatusErr(r.status()));
          int64_t n = 0;
          for (const kv::OpResult& op : r->ops) n += op.deleted;
          std::move(reply)(RespInteger(n));
        },
        session);
  });
}

TcpRequest DbSize() {
  return Async(RequestKind::kRead, [](KvService* kv, ReplyFn reply) mutable {
    // Every key: etcd's "from key \0 to the end" range; keys are never empty.
    kv->Range(std::string(1, '\0'), std::string(1, '\0'), 0, /*keys_only=*/true,
              /*count_only=*/true,
              [reply = std::move(reply)](absl::StatusOr<kv::RangeResult> r) mutable {
                std::move(reply)(r.ok() ? RespInteger(r->count) : StatusErr(r.status()));
              });
  });
}

TcpRequest Info() {
  return Async(RequestKind::kRead, [](KvService* kv, ReplyFn reply) mutable {
    NodeStatus st = kv->replicator()->Status();
    std::string text = absl::StrCat(
        "# Server\r\nredis_version:7.0.0\r\nserver_name:raftkv\r\nredis_mode:standalone\r\n",
        "\r\n# Replication\r\nrole:", st.role == "leader" ? "master" : "slave",
        "\r\nraft_role:", st.role, "\r\nraft_term:", st.term, "\r\nraft_leader_id:",
        st.leader_id, "\r\nraft_commit_index:", st.commit_index, "\r\nraft_applied_index:",
        st.applied_index, "\r\nraft_forward_calls:", st.forward_calls,
        "\r\nraft_forwarded_writes:", st.forwarded_writes, "\r\nraft_forward_lanes:",
        st.forward_lanes, "\r\nraft_forward_lane_max_span:", st.forward_lane_max_span,
        "\r\nraft_read_barriers_released:", st.read_barriers_released, "\r\nraft_read_handoffs:",
        st.read_handoffs,
        "\r\n\r\n# Backup\r\nbackup_applied_index:", st.backup_applied_index,
        "\r\nbackup_evaluated_entries:", st.backup_evaluated_entries,
        "\r\nbackup_rows_written:", st.backup_rows_written,
        "\r\nbackup_waiting_writes:", st.backup_waiting_writes,
        "\r\n\r\n# Store\r\nrecord_cache_hits:", st.record_cache_hits,
        "\r\nrecord_cache_misses:", st.record_cache_misses,
        "\r\nrecord_cache_bytes:", st.record_cache_bytes, "\r\n");
    std::move(reply)(RespBulk(text));
  });
}

std::string HelloReply(const RespSession& session) {
  std::string out = RespArrayHeader(14);
  out += RespBulk("server") + RespBulk("redis");
  out += RespBulk("version") + RespBulk("7.0.0");
  out += RespBulk("proto") + RespInteger(2);
  out += RespBulk("id") + RespInteger(static_cast<int64_t>(session.client_id));
  out += RespBulk("mode") + RespBulk("standalone");
  out += RespBulk("role") + RespBulk("master");
  out += RespBulk("modules") + RespArrayHeader(0);
  return out;
}

TcpRequest Config(const std::vector<std::string>& args) {
  if (args.size() < 2) return TcpRequest::Immediate(WrongArgs("config"));
  std::string sub = absl::AsciiStrToUpper(args[1]);
  if (sub != "GET") {
    return TcpRequest::Immediate(
        Err(absl::StrCat("CONFIG ", PrintableExcerpt(args[1], 64), " is not supported")));
  }
  if (args.size() < 3) return TcpRequest::Immediate(WrongArgs("config|get"));
  // redis-benchmark asks for these two; nothing is persisted the Redis way, so report that.
  std::vector<std::pair<std::string, std::string>> found;
  for (size_t i = 2; i < args.size(); ++i) {
    std::string name = absl::AsciiStrToLower(args[i]);
    if (name == "save") found.emplace_back("save", "");
    if (name == "appendonly") found.emplace_back("appendonly", "no");
  }
  std::string out = RespArrayHeader(found.size() * 2);
  for (const auto& [k, v] : found) out += RespBulk(k) + RespBulk(v);
  return TcpRequest::Immediate(std::move(out));
}

TcpRequest Client(const std::vector<std::string>& args, RespSession* session) {
  if (args.size() < 2) return TcpRequest::Immediate(WrongArgs("client"));
  std::string sub = absl::AsciiStrToUpper(args[1]);
  if (sub == "SETNAME" && args.size() == 3) {
    session->name = args[2];
    return TcpRequest::Immediate(Ok());
  }
  if (sub == "GETNAME" && args.size() == 2) {
    return TcpRequest::Immediate(session->name.empty() ? RespNull() : RespBulk(session->name));
  }
  if (sub == "ID" && args.size() == 2) {
    return TcpRequest::Immediate(RespInteger(static_cast<int64_t>(session->client_id)));
  }
  if (sub == "INFO" && args.size() == 2) {
    return TcpRequest::Immediate(RespBulk(absl::StrCat(
        "id=", session->client_id, " name=", PrintableExcerpt(session->name, 64), " db=0\n")));
  }
  if (sub == "SETINFO") return TcpRequest::Immediate(Ok());  // redis-py 5 sends it
  return TcpRequest::Immediate(
      Err(absl::StrCat("CLIENT ", PrintableExcerpt(args[1], 64), " is not supported")));
}

}  // namespace

RespRequestParser::Result RespRequestParser::Error(std::string what) {
  Reset();
  Result r;
  r.status = Status::kError;
  r.error = std::move(what);
  return r;
}

void RespRequestParser::Reset() {
  expected_args_ = -1;
  pos_ = 0;
  args_.clear();
}

RespRequestParser::Result RespRequestParser::Parse(std::string_view buf) {
  Result incomplete;
  if (expected_args_ < 0) {
    Header h;
    switch (ParseHeader(buf, 0, &h)) {
      case HeaderStatus::kIncomplete:
        return incomplete;
      case HeaderStatus::kBad:
        return Error("invalid multibulk length");
      case HeaderStatus::kOk:
        break;
    }
    if (h.value < 0 || static_cast<uint64_t>(h.value) > limits_.max_args) {
      return Error("invalid multibulk length");
    }
    expected_args_ = h.value;
    pos_ = h.end;
    // Reserve what the bytes could hold at most, not what the header claims.
    args_.reserve(std::min<size_t>(expected_args_, 1024));
  }
  while (args_.size() < static_cast<size_t>(expected_args_)) {
    if (pos_ >= buf.size()) return incomplete;
    if (buf[pos_] != '$') {
      return Error(absl::StrCat("expected '$', got '", PrintableExcerpt(buf.substr(pos_, 1), 1),
                                "'"));
    }
    Header h;
    switch (ParseHeader(buf, pos_, &h)) {
      case HeaderStatus::kIncomplete:
        return incomplete;
      case HeaderStatus::kBad:
        return Error("invalid bulk length");
      case HeaderStatus::kOk:
        break;
    }
    if (h.value < 0 || static_cast<uint64_t>(h.value) > limits_.max_request_bytes) {
      return Error("invalid bulk length");
    }
    size_t end = h.end + static_cast<size_t>(h.value);  // where "\r\n" must be
    if (end + 2 > limits_.max_request_bytes) return Error("request too large");
    if (end + 2 > buf.size()) return incomplete;
    if (buf[end] != '\r' || buf[end + 1] != '\n') {
      return Error("bulk string longer than its declared length");
    }
    args_.emplace_back(buf.substr(h.end, h.value));
    pos_ = end + 2;
  }
  Result done;
  done.status = Status::kComplete;
  done.consumed = pos_;
  done.args = std::move(args_);
  Reset();
  return done;
}

TcpRequest PrepareRespRequest(std::vector<std::string> args, RespSession* session,
                              size_t max_reply_bytes) {
  if (args.empty()) return TcpRequest::Immediate("");
  const std::string name = absl::AsciiStrToUpper(args[0]);
  const std::string lower = absl::AsciiStrToLower(args[0]);
  const size_t argc = args.size();

  if (name == "PING") {
    if (argc == 1) return TcpRequest::Immediate("+PONG\r\n");
    if (argc == 2) return TcpRequest::Immediate(RespBulk(args[1]));
    return TcpRequest::Immediate(WrongArgs(lower));
  }
  if (name == "ECHO") {
    return TcpRequest::Immediate(argc == 2 ? RespBulk(args[1]) : WrongArgs(lower));
  }
  if (name == "GET") {
    if (argc != 2) return TcpRequest::Immediate(WrongArgs(lower));
    args.erase(args.begin());
    return Get(std::move(args), /*as_array=*/false, max_reply_bytes);
  }
  if (name == "MGET" || name == "EXISTS") {
    if (argc < 2) return TcpRequest::Immediate(WrongArgs(lower));
    args.erase(args.begin());
    return name == "MGET" ? Get(std::move(args), /*as_array=*/true, max_reply_bytes)
                          : Exists(std::move(args));
  }
  if (name == "SET") {
    if (argc < 3) return TcpRequest::Immediate(WrongArgs(lower));
    if (argc > 3) {
      return TcpRequest::Immediate(
          Err("SET options (EX, PX, NX, XX, GET, KEEPTTL, ...) are not supported"));
    }
    std::vector<std::pair<std::string, std::string>> kvs;
    kvs.emplace_back(std::move(args[1]), std::move(args[2]));
    return PutMany(std::move(kvs), session->writes.Take());
  }
  if (name == "MSET") {
    if (argc < 3 || argc % 2 == 0) return TcpRequest::Immediate(WrongArgs(lower));
    std::vector<std::pair<std::string, std::string>> kvs;
    kvs.reserve(argc / 2);
    for (size_t i = 1; i + 1 < argc; i += 2) {
      kvs.emplace_back(std::move(args[i]), std::move(args[i + 1]));
    }
    return PutMany(std::move(kvs), session->writes.Take());
  }
  if (name == "DEL" || name == "UNLINK") {
    if (argc < 2) return TcpRequest::Immediate(WrongArgs(lower));
    args.erase(args.begin());
    return Del(std::move(args), session->writes.Take());
  }
  if (name == "DBSIZE") return argc == 1 ? DbSize() : TcpRequest::Immediate(WrongArgs(lower));
  if (name == "INFO") return Info();
  if (name == "SELECT") {
    if (argc != 2) return TcpRequest::Immediate(WrongArgs(lower));
    return TcpRequest::Immediate(args[1] == "0" ? Ok() : Err("DB index is out of range"));
  }
  if (name == "SESSION") {
    if (argc != 3) return TcpRequest::Immediate(WrongArgs(lower));
    if (!ParseSessionArgs(args[1], args[2], &session->writes)) {
      return TcpRequest::Immediate(
          Err("SESSION wants a client id >= 1 and a next sequence >= 1, both decimal"));
    }
    return TcpRequest::Immediate(Ok());
  }
  if (name == "QUIT") return TcpRequest::Immediate(Ok(), /*close_after=*/true);
  if (name == "COMMAND") return TcpRequest::Immediate(RespArrayHeader(0));
  if (name == "CONFIG") return Config(args);
  if (name == "CLIENT") return Client(args, session);
  if (name == "HELLO") {
    if (argc >= 2 && args[1] != "2") {
      return TcpRequest::Immediate(RespError("NOPROTO unsupported protocol version"));
    }
    return TcpRequest::Immediate(HelloReply(*session));
  }
  return TcpRequest::Immediate(UnknownCommand(args));
}

std::string RespSimple(std::string_view s) { return "+" + std::string(s) + "\r\n"; }
std::string RespError(std::string_view msg) { return "-" + std::string(msg) + "\r\n"; }
std::string RespBulk(std::string_view s) {
  std::string out = absl::StrCat("$", s.size(), "\r\n");
  out.append(s);
  out.append("\r\n");
  return out;
}
size_t RespBulkBytes(size_t len) { return 1 + absl::StrCat(len).size() + 2 + len + 2; }
std::string RespNull() { return "$-1\r\n"; }
std::string RespInteger(int64_t n) { return absl::StrCat(":", n, "\r\n"); }
std::string RespArrayHeader(size_t n) { return absl::StrCat("*", n, "\r\n"); }

}  // namespace raftkv::server
