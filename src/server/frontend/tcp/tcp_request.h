// The unit of work a client connection hands to the KV layer: one parsed request of either
// wire protocol (text or RESP2), ready to run, plus what the connection must know to order it.
//
// A connection runs its requests in arrival order with these rules (see tcp_connection.h):
//   kImmediate  needs no state: the reply is known at parse time;
//   kRead       runs only after every earlier write of the connection has completed
//               (read-your-writes within a pipeline); the reads that start together (up to
//               the next write) share one read barrier and run one after another, in order,
//               on one reader pool thread (so a DBSIZE among GETs delays the GETs after it,
//               whose replies wait for its reply anyway, and the replies before it: the
//               group's replies go out together); a read alone takes its own barrier;
//   kWrite      runs after every earlier request completed; the writes that follow it (up to
//               --max-pipeline-writes, reads ending the run) go with it as one
//               Replicator::WriteBatch, which keeps their order; no later request starts
//               before all of them completed. Its `run` only writes through `kv` (it may be
//               a KvService over a collecting Replicator that lives only during the call).
// Replies always leave in request order, whatever order the work completes in.
#pragma once

#include <string>
#include <string_view>
#include <utility>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "server/service/kv_service.h"

namespace raftkv::server {

class KvService;

enum class RequestKind { kImmediate, kRead, kWrite };

// Receives the complete encoded reply (possibly several lines). May be called on any thread,
// exactly once.
using ReplyFn = absl::AnyInvocable<void(std::string reply) &&>;

struct TcpRequest {
  RequestKind kind = RequestKind::kImmediate;
  // kImmediate: the reply bytes (may be empty, e.g. QUIT in the text protocol).
  std::string reply;
  // After this request's reply is written, the connection closes (QUIT, protocol errors).
  bool close_after = false;
  // kRead/kWrite: starts the operation on `kv`; calls `reply` exactly once, on any thread.
  absl::AnyInvocable<void(KvService* kv, ReplyFn reply) &&> run;

  static TcpRequest Immediate(std::string reply, bool close_after = false) {
    TcpRequest r;
    r.reply = std::move(reply);
    r.close_after = close_after;
    return r;
  }
};

// The optional write session of one connection, shared by text and RESP (README.md,
// "Sessions"): after `SESSION <id> <seq>`, the writes parsed on the connection take the
// sequences seq, seq + 1, ... in parse order (which is the order they apply: a connection's
// writes go in order, one batch at a time).
// Read and written by the parser only.
struct ConnectionSession {
  uint64_t client_id = 0;      // 0: no session
  uint64_t next_sequence = 0;
  // The session of the next write (none if no SESSION was given), advancing the sequence.
  // first_unacked stays unset: the window (--session-window) keeps the results a pipelining
  // client may still retry.
  WriteSession Take() {
    if (client_id == 0) return {};
    return WriteSession{client_id, next_sequence++, 0};
  }
};

// Parses SESSION's two arguments (decimal client id >= 1, next sequence >= 1) into
// `session`; false (and `session` unchanged) if they are not that.
bool ParseSessionArgs(std::string_view id, std::string_view sequence,
                      ConnectionSession* session);

// The words a failed request's reply starts with, after "ERR" (text) or "-ERR" (RESP),
// telling the kind of failure (kv_service.h, ErrorKind; README.md, "Errors"):
//   "UNAVAILABLE "  not applied, safe to retry (no leader, not the leader, over a limit, ...)
//   "UNKNOWN "      outcome unknown (timed out or interrupted after it was proposed or
//                   forwarded): retry only with a session
//   ""              refused as given (invalid request): not applied
std::string_view ErrorKindWord(const absl::Status& status);

// ErrorKindWord + StatusReason: what follows "ERR " or "-ERR ".
std::string ErrorText(const absl::Status& status);

// The reason of a failed status as one printable line for "ERR <reason>" / "-ERR <reason>":
// the message (or the code's name if empty) with CR, LF and other control bytes replaced by
// spaces and cut to 200 bytes, so it cannot break the framing of either protocol.
std::string StatusReason(const absl::Status& status);

// kResourceExhausted "reply too large (N bytes, limit M): ask for fewer keys", for a reply of
// `bytes` over --max-reply-bytes (`limit`); the same words as KvService::Get's early stop.
absl::Status ReplyTooLarge(size_t bytes, size_t limit);

// `text` with control bytes replaced by '?' and cut to `max_bytes`, for echoing client input
// in an error line.
std::string PrintableExcerpt(std::string_view text, size_t max_bytes);

}  // namespace raftkv::server
