// One client connection of TcpServer (internal to tcp_server.cc; in a header for its size).
//
// Every member is touched only on `strand_`: reads, writes, the timer and the callbacks of
// KvService (which may run on any thread) are all posted there first.
//
// Life of a request: bytes -> in_ -> parsed into a Slot at the back of pending_ (at most
// max_pending_per_conn; more and we stop reading) -> started when the ordering rules of
// tcp_request.h allow -> its reply fills the slot -> the completed prefix of pending_ is
// written in one async_write. So replies leave in request order.
//
// Writes go in batches (issue 14): when the next request to start is a write and nothing of
// the connection is with the cluster, the writes waiting from there on (immediates between
// them are passed over; a read ends the batch) up to --max-pipeline-writes and
// --max-pipeline-write-bytes are handed to the Replicator as ONE WriteBatch, which applies
// them in request order (consecutive entries on the leader, one Forward from a follower).
// The batch is the connection's only work with the cluster until every write of it is
// answered; then the reads after it start (they see its writes), or the next batch.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "asio.hpp"
#include "server/frontend/tcp/resp_protocol.h"
#include "server/frontend/tcp/tcp_request.h"
#include "server/frontend/tcp/tcp_server.h"

namespace raftkv::server {

class TcpConnection;

// What the server and its connections share. Owned by shared_ptr so that a KvService
// callback arriving after Stop() gave up waiting finds a live (stopped) io_context.
struct TcpServerShared {
  TcpServerShared(KvService* kv_in, TcpServerOptions options_in)
      : kv(kv_in), options(options_in) {}

  KvService* const kv;
  const TcpServerOptions options;
  asio::io_context io;
  asio::strand<asio::io_context::executor_type> accept_strand{asio::make_strand(io)};
  asio::ip::tcp::acceptor acceptor{io};
  asio::steady_timer accept_retry_timer{io};
  bool accepting = false;  // on accept_strand
  // Keeps the io threads in run() until Stop() has closed every connection; then they return
  // once the last handler (the cancelled operations of closed sockets) has run, so no handler
  // holding a connection is left behind in the queue.
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;

  absl::Mutex mu;
  absl::flat_hash_map<uint64_t, std::weak_ptr<TcpConnection>> conns ABSL_GUARDED_BY(mu);
  uint64_t next_conn_id ABSL_GUARDED_BY(mu) = 1;
  int threads_running ABSL_GUARDED_BY(mu) = 0;

  void Remove(uint64_t id) {
    absl::MutexLock lock(&mu);
    conns.erase(id);
  }
};

class TcpConnection : public std::enable_shared_from_this<TcpConnection> {
 public:
  using Clock = std::chrono::steady_clock;

  TcpConnection(std::shared_ptr<TcpServerShared> shared, asio::ip::tcp::socket socket,
                uint64_t id);

  void Start();       // begins reading (posted to the strand)
  void Drain();       // stop reading; finish what was read; close gracefully (posted)
  void ForceClose();  // close now (posted)

 private:
  struct Slot {
    RequestKind kind = RequestKind::kImmediate;
    bool done = false;          // reply is final
    bool close_after = false;
    size_t bytes = 0;           // of the request on the wire (bounds a write batch)
    std::string reply;
    absl::AnyInvocable<void(KvService*, ReplyFn) &&> run;  // until started
  };

  // Runs after every event: parse, start, write, read, finish, re-arm the timer.
  void Pump();
  void ProcessInput();
  void Enqueue(TcpRequest req, size_t bytes = 0);
  void StartRunnable();
  // REQUIRES: the slot at next_start_ is a write, and nothing is in flight.
  void StartWriteBatch();
  // The replies of one group of requests (ReplyGroup), in one strand task.
  void OnReplies(std::vector<std::pair<uint64_t, std::string>> replies);
  void SetReply(uint64_t seq, std::string reply);
  // Posts OnReplies to the strand, if `replies` is not empty. Any thread.
  void PostReplies(std::vector<std::pair<uint64_t, std::string>> replies);
  struct ReplyGroup;  // tcp_connection.cc
  struct ReadRun;     // tcp_connection.cc
  // The reply function of request `seq`, one of `group`'s.
  ReplyFn ReplyIn(std::shared_ptr<ReplyGroup> group, uint64_t seq);
  // Whether the first request at or after `seq` that is not answered already is a read.
  bool ReadAt(uint64_t seq) const;
  void MaybeWrite();
  void MaybeRead();
  // Nothing of this connection is with the cluster. Then the idle timeout runs from the last
  // byte read or written: it also ends a client that stopped reading its replies (our write
  // makes no progress) while it has requests queued.
  bool Idle() const { return inflight_reads_ + inflight_writes_ == 0; }
  void ArmTimer();
  void OnTimer();
  // After the last reply: FIN, discard input until the peer closes (so unread input does not
  // turn our close into a RST that could destroy the reply in flight), then close.
  void FinishGracefully();
  void DiscardRead();
  void Close();  // immediate; idempotent

  const std::shared_ptr<TcpServerShared> shared_;
  const TcpServerOptions& opts_;
  const uint64_t id_;
  asio::strand<asio::io_context::executor_type> strand_;
  asio::ip::tcp::socket socket_;
  asio::steady_timer timer_;

  std::array<char, 8192> read_buf_;
  std::string in_;                  // received, not yet parsed
  size_t text_scanned_ = 0;         // prefix of in_ known to hold no '\n'
  RespRequestParser resp_parser_;
  RespSession session_;

  std::deque<Slot> pending_;        // parsed, not yet written; front = oldest
  uint64_t first_seq_ = 0;          // sequence number of pending_.front()
  uint64_t next_start_ = 0;         // first slot not yet started
  int inflight_reads_ = 0;
  int inflight_writes_ = 0;
  std::string out_;                 // bytes of the write in progress
  bool close_after_write_ = false;

  bool reading_ = false;
  bool writing_ = false;
  bool eof_ = false;                // peer closed its side (or the read failed)
  bool draining_ = false;           // Drain(): no more reading or parsing
  bool stop_parsing_ = false;       // after QUIT or a fatal error reply
  bool lingering_ = false;          // FinishGracefully() in progress
  bool closed_ = false;

  Clock::time_point last_activity_;
  std::optional<Clock::time_point> partial_since_;  // an unfinished request began then
  Clock::time_point linger_deadline_;
  Clock::time_point armed_deadline_ = Clock::time_point::max();
};

}  // namespace raftkv::server
