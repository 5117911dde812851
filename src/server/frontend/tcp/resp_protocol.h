// RESP2 on the client port (README.md, "Talking to it"). A request that starts with
// '*' is an array of bulk strings: "*<n>\r\n" then n times "$<len>\r\n<len bytes>\r\n".
// Anything malformed in that framing (non-numeric, negative or over-limit lengths, an
// element that is not a bulk string, a bulk whose bytes do not end where its length says)
// is answered "-ERR Protocol error: <what>" and the connection closes, as Redis does: after a
// framing error the rest of the stream cannot be trusted.
//
// Commands (case-insensitive):
//   PING [msg]  ECHO msg  SET k v  GET k  DEL k...  EXISTS k...  MGET k...  MSET k v [k v...]
//   DBSIZE  INFO [section]  SELECT 0  QUIT
//   SESSION id seq -> +OK: the writes that follow (SET, MSET, DEL, UNLINK) take the session
//     id and the sequences seq, seq+1, ... (exactly-once retries; README.md, "Sessions")
//   Handshakes of redis-cli 7 / redis-benchmark / client libraries:
//     COMMAND [DOCS|COUNT|...] -> empty array (redis-cli then works without its hints)
//     CONFIG GET save|appendonly -> the pair with "" / "no" (redis-benchmark reads both);
//       any other CONFIG GET -> empty array; other CONFIG subcommands -> error
//     CLIENT SETNAME/GETNAME/ID/INFO -> answered; other CLIENT subcommands -> error
//     HELLO [2 ...] -> the RESP2 server-info array; HELLO 3 -> "-NOPROTO", which clients
//       take as "fall back to RESP2"
// SET options (EX, PX, NX, XX, GET, KEEPTTL ...) are rejected with an error, not ignored.
// Errors from the cluster or the limits: "-ERR UNAVAILABLE <reason>" (not applied, safe to
// retry), "-ERR UNKNOWN <reason>" (outcome unknown), "-ERR <reason>" (refused as given;
// tcp_request.h, ErrorKindWord); a GET/MGET reply over
// --max-reply-bytes: "-ERR reply too large (N bytes, limit M): ask for fewer keys".
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "server/frontend/tcp/tcp_request.h"

namespace raftkv::server {

struct RespLimits {
  size_t max_args = 1 << 20;            // elements in one request array
  size_t max_request_bytes = 4 << 20;   // bytes of one whole request, framing included
};

// Incremental parser for one request at a time. Feed it the bytes of the current request
// from its first byte ('*'); call again with the same bytes plus whatever arrived since, until
// it returns kComplete (then `consumed` bytes form the request) or kError. It remembers the
// elements already parsed, so a large request arriving in many reads is scanned once.
class RespRequestParser {
 public:
  enum class Status { kIncomplete, kComplete, kError };
  struct Result {
    Status status = Status::kIncomplete;
    size_t consumed = 0;             // kComplete: bytes of the request
    std::vector<std::string> args;   // kComplete: the elements (may be empty for "*0\r\n")
    std::string error;               // kError: what was wrong, for "-ERR Protocol error: ..."
  };

  explicit RespRequestParser(RespLimits limits) : limits_(limits) {}

  // REQUIRES: buf starts with '*' and begins with every byte passed on the previous call
  // since the last kComplete/kError (the parser resets itself after those).
  Result Parse(std::string_view buf);
  void Reset();

 private:
  Result Error(std::string what);

  RespLimits limits_;
  int64_t expected_args_ = -1;    // -1: header not parsed yet
  size_t pos_ = 0;                // bytes of the request consumed by parsed elements
  std::vector<std::string> args_;
};

// Per-connection state that a few handshake commands keep.
struct RespSession {
  uint64_t client_id = 0;
  std::string name;               // CLIENT SETNAME
  ConnectionSession writes;       // SESSION (text and RESP share it)
};

// Turns one parsed request into a runnable one. `session` is read and written here only.
// A GET/MGET reply over `max_reply_bytes` (--max-reply-bytes, framing included) is answered
// "-ERR reply too large (...)" instead.
TcpRequest PrepareRespRequest(std::vector<std::string> args, RespSession* session,
                              size_t max_reply_bytes);

// Reply encoders.
std::string RespSimple(std::string_view s);       // "+s\r\n"
std::string RespError(std::string_view msg);      // "-msg\r\n"; msg must carry its prefix (ERR)
std::string RespBulk(std::string_view s);         // "$len\r\ns\r\n"
size_t RespBulkBytes(size_t len);                 // RespBulk(s).size() for s.size() == len
std::string RespNull();                           // "$-1\r\n"
std::string RespInteger(int64_t n);               // ":n\r\n"
std::string RespArrayHeader(size_t n);            // "*n\r\n"

}  // namespace raftkv::server
