// The client TCP front end: the text protocol and RESP2 on one port (README.md, "Talking to
// it"), on standalone Asio. One io_context run by a small thread pool; each connection
// is served on its own strand, so its state needs no locks.
//
// Per request the first byte decides the protocol: '*' starts a RESP array, anything else a
// text line (text_protocol.h, resp_protocol.h). Requests of one connection are pipelined:
// parsed ahead, run with the ordering rules of tcp_request.h, answered in request order.
//
// Limits (each a kvd flag, see kvd --help), each enforced per connection:
//   a text line over max_line_bytes       -> "ERR line too long", close
//   a RESP request over max_request_bytes -> "-ERR Protocol error: ...", close
//   more than max_connections open        -> "ERR too many connections", close
//   nothing read or written for idle_timeout_ms while no request of the connection is with
//   the cluster (an idle client, or one that stopped reading its replies) -> close
//   an unfinished request for partial_request_timeout_ms (since its first byte) -> close
//   max_pending_per_conn requests unanswered -> stop reading until replies drain
//   max_pipeline_writes / max_pipeline_write_bytes -> the rest of the writes wait for the
//   next batch
//   a GET/MGET reply over max_reply_bytes -> "ERR reply too large (...)" for that request only
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"

namespace raftkv::server {

class KvService;
struct TcpServerShared;

struct TcpServerOptions {
  int num_io_threads = 2;                       // --tcp-io-threads: threads running Asio
  size_t max_line_bytes = 64 * 1024;            // --max-line-bytes: text line, terminator excluded
  size_t max_request_bytes = 4 * 1024 * 1024;   // --max-request-bytes: one RESP request
  size_t max_request_args = 1 << 20;            // --max-request-args: elements of a RESP array
  size_t max_connections = 10000;               // --max-connections: open client connections
  int64_t idle_timeout_ms = 300000;             // --idle-timeout-ms: 0 = never
  int64_t partial_request_timeout_ms = 30000;   // --partial-request-timeout-ms: 0 = never
  size_t max_pending_per_conn = 1024;           // --max-pending-per-conn: unanswered requests
  // A connection's writes that are parsed and waiting go to the cluster together, in order, as
  // one batch (one Replicator::WriteBatch: consecutive log entries; one Forward from a
  // follower), at most one batch in flight per connection. A batch holds at most
  // max_pipeline_writes writes and stops once its requests add up to
  // max_pipeline_write_bytes (a larger single write goes alone). 1: one write at a time.
  size_t max_pipeline_writes = 64;              // --max-pipeline-writes
  size_t max_pipeline_write_bytes = 1 << 20;    // --max-pipeline-write-bytes
  // --max-reply-bytes: one GET/MGET reply, framing included (the values it may read are
  // bounded by the same number, KvService::Get). At least max_value_bytes + 64.
  size_t max_reply_bytes = 8 * 1024 * 1024;
  // Stop(): wait this long for in-flight requests (--shutdown-tcp-grace-ms).
  int64_t stop_timeout_ms = 5000;
  // After the last reply of a connection we close: how long to read and discard what the
  // client still sends before closing anyway (closing with unread input would send a RST,
  // which can destroy the reply before the client reads it).
  int64_t close_linger_ms = 2000;
  int listen_backlog = 1024;

  // InvalidArgument naming the field if a value is out of range, if a RESP SET of a maximal
  // key and value (the KvLimits passed in) would not fit in max_request_bytes, or if a GET of
  // a maximal value would not fit in max_reply_bytes.
  absl::Status Validate(size_t max_key_bytes, size_t max_value_bytes) const;
};

class TcpServer {
 public:
  // REQUIRES: kv outlives this object and, if Stop() gave up waiting, every callback it
  // still owes.
  TcpServer(KvService* kv, TcpServerOptions options);
  ~TcpServer();  // Stop()s.

  TcpServer(const TcpServer&) = delete;
  TcpServer& operator=(const TcpServer&) = delete;

  // Validates the options, binds host:port (port 0 = an ephemeral port, see port()), starts
  // the io threads. Errors: kInvalidArgument (options, bad host), kUnavailable (bind/listen
  // failed, with the OS reason), kFailedPrecondition (already started).
  absl::Status Start(const std::string& host, uint16_t port);
  // The bound port; 0 before Start.
  uint16_t port() const { return port_; }
  // Open client connections right now.
  size_t num_connections() const;

  // Stops accepting, stops reading, lets every request already read finish and its reply go
  // out, closes every connection, and joins the io threads; after stop_timeout_ms it closes
  // what is left without waiting. Idempotent. REQUIRES: not called from a callback of this
  // server or of the KvService.
  void Stop();

 private:
  KvService* const kv_;
  const TcpServerOptions options_;
  std::shared_ptr<TcpServerShared> shared_;
  std::vector<std::thread> threads_;
  uint16_t port_ = 0;
  bool started_ = false;
  bool stopped_ = false;
};

}  // namespace raftkv::server
