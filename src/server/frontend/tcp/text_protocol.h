// The seed-compatible line protocol (README.md, "Text protocol"): one command per line, verbs
// case-insensitive, keys without spaces, the value of SET/PUT is the rest of the line after
// one space (so it may contain spaces, and may be empty).
//
//   SET k v | PUT k v   -> OK | ERR value has a CR: ... (a CR in v is refused, see below)
//   GET k               -> the value | KEY NOT FOUND | ERR value has a line break (CR or LF): ...
//   DELETE k | DEL k    -> OK | KEY NOT FOUND
//   MGET k1 k2 ...      -> one line per key, in order: the value | KEY NOT FOUND |
//                          VALUE HAS LINE BREAK
//   PING                -> PONG
//   QUIT                -> (no reply) the connection closes
//   SESSION id seq      -> OK: later writes of this connection carry session `id` and the
//                          sequences seq, seq+1, ... (exactly-once retries; README.md,
//                          "Sessions"); not two decimal numbers >= 1 -> INVALID COMMAND
//   anything else, missing or extra arguments, a NUL byte in the line -> INVALID COMMAND
//   not applied, safe to retry (no leader, not the leader, over a limit) ->
//                          ERR UNAVAILABLE <reason>
//   outcome unknown (timed out or interrupted after it was proposed) -> ERR UNKNOWN <reason>
//   refused as given (key too long, value too large, ...) -> ERR <reason>
//   a GET/MGET reply over --max-reply-bytes -> ERR reply too large (N bytes, limit M): ...
//
// Reply lines end the way the request line ended ("\r\n" or "\n"). One exception: "PING\r\n"
// is answered "+PONG\r\n", the RESP reply to an inline PING, because redis-benchmark's
// PING_INLINE test sends exactly that and parses the reply as RESP; "PING\n" gets "PONG\n".
// Line breaks in values. A reply line never holds CR or LF besides its terminator, so a client
// that reads one line per key stays in step. A value written over RESP or gRPC may hold them;
// over text it is not sent: GET answers "ERR value has a line break (CR or LF): read it with
// RESP GET on this port", and MGET answers "VALUE HAS LINE BREAK" in that key's place (an
// "ERR" line there would read as the error of the whole request). RESP GET on the same
// connection is the length-prefixed form that returns the exact bytes. Not escaped: any
// escaped form is itself a possible value, so escaping would change how some ordinary values
// (those that look escaped) read back, and a seed client gets every value without CR or LF
// byte for byte. SET refuses a CR in its value (LF ends the line), so whatever the text
// protocol writes it reads back unchanged.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "server/frontend/tcp/tcp_request.h"

namespace raftkv::server {

enum class TextVerb { kSet, kGet, kDelete, kMget, kPing, kQuit, kSession, kInvalid };

struct TextCommand {
  TextVerb verb = TextVerb::kInvalid;
  // kSet: {key, value}; kGet/kDelete: {key}; kMget: the keys; kSession: {id, seq};
  // otherwise empty.
  std::vector<std::string> args;
};

// Parses one line WITHOUT its terminator (no '\n'; a trailing '\r' is already removed).
// Pure; never fails: malformed lines come back as kInvalid.
TextCommand ParseTextLine(std::string_view line);

// Turns one line (without terminator) into a runnable request. `crlf` says how the line
// ended, which decides how reply lines end. A GET/MGET reply over `max_reply_bytes`
// (--max-reply-bytes, terminators included) is answered "ERR reply too large (...)" instead.
// SET/PUT and DELETE/DEL take the next sequence of `session` (SESSION sets it).
TcpRequest PrepareTextRequest(std::string_view line, bool crlf, size_t max_reply_bytes,
                              ConnectionSession* session);

}  // namespace raftkv::server
