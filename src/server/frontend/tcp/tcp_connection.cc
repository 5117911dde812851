#include "server/frontend/tcp/tcp_connection.h"

#include <memory>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

#include "base/check.h"
#include "server/frontend/tcp/text_protocol.h"
#include "spdlog/spdlog.h"

namespace raftkv::server {
namespace {

using Clock = TcpConnection::Clock;

Clock::time_point After(Clock::time_point t, int64_t ms) {
  return t + std::chrono::milliseconds(ms);
}

// Gathers the writes that the requests of one batch make through KvService (validated,
// sessions stamped) and hands them to the real Replicator in one WriteBatch, in order.
// Only writes are gathered: a kWrite request never reads (tcp_request.h).
class WriteCollector final : public Replicator {
 public:
  explicit WriteCollector(Replicator* real) : real_(real) {}

  void Write(kvpb::Command cmd, WriteDone done) override {
    cmds_.push_back(std::move(cmd));
    dones_.push_back(std::move(done));
  }
  void ReadBarrier(ReadDone done) override { real_->ReadBarrier(std::move(done)); }
  NodeStatus Status() const override { return real_->Status(); }
  std::vector<PeerStatus> Members() const override { return real_->Members(); }

  // One write goes as a plain Write (a follower then forwards it in the single form).
  void Flush() {
    if (cmds_.size() == 1) {
      real_->Write(std::move(cmds_[0]), std::move(dones_[0]));
    } else if (!cmds_.empty()) {
      real_->WriteBatch(std::move(cmds_), std::move(dones_));
    }
    cmds_.clear();
    dones_.clear();
  }

 private:
  Replicator* const real_;
  std::vector<kvpb::Command> cmds_;
  std::vector<WriteDone> dones_;
};

// Gathers the read barriers that one run of reads (the reads StartRunnable starts in one
// call: a pipeline of GETs) takes through KvService, and asks the real Replicator for one
// barrier for all of them: one event for the raft loop and one reader pool task for the run,
// instead of one of each per read. The reads' callbacks then run in request order on that
// pool thread. A barrier asked for after Flush (none of today's reads does) goes alone.
class ReadCollector final : public Replicator {
 public:
  explicit ReadCollector(Replicator* real) : real_(real) {}

  void Write(kvpb::Command cmd, WriteDone done) override {
    real_->Write(std::move(cmd), std::move(done));
  }
  void ReadBarrier(ReadDone done) override {
    if (flushed_) {
      real_->ReadBarrier(std::move(done));
      return;
    }
    dones_.push_back(std::move(done));
  }
  NodeStatus Status() const override { return real_->Status(); }
  std::vector<PeerStatus> Members() const override { return real_->Members(); }

  // `keep` (what owns this collector and the KvService the callbacks belong to) lives until
  // the callbacks have run.
  void Flush(std::shared_ptr<void> keep) {
    flushed_ = true;
    if (dones_.empty()) return;
    real_->ReadBarrier([dones = std::move(dones_), keep = std::move(keep)](
                           absl::Status s) mutable {
      for (ReadDone& d : dones) std::move(d)(s);
    });
    dones_.clear();
  }

 private:
  Replicator* const real_;
  std::vector<ReadDone> dones_;
  bool flushed_ = false;
};

}  // namespace

// The replies of the requests started together (a run of reads, or a batch of writes): they
// go to the strand in one task once the last is in (a pipeline of 16 GETs or SETs: one post
// and one Pump, not 16; for writes, the posts are made by the raft loop's thread, which
// answers them). Replies leave the connection in request order anyway, and the requests of
// one group are answered together (one barrier; writes applied in one batch, mostly), so
// holding the first until the last is in costs next to nothing.
struct TcpConnection::ReplyGroup {
  absl::Mutex mu;
  std::vector<std::pair<uint64_t, std::string>> replies ABSL_GUARDED_BY(mu);
  size_t started ABSL_GUARDED_BY(mu) = 0;
  bool closed ABSL_GUARDED_BY(mu) = false;  // every request of the group has started

  // Adds a reply; returns the group's replies once every request has replied and the group
  // is closed (then exactly once).
  std::vector<std::pair<uint64_t, std::string>> Add(uint64_t seq, std::string reply) {
    absl::MutexLock lock(&mu);
    replies.emplace_back(seq, std::move(reply));
    return TakeIfCompleteLocked();
  }
  std::vector<std::pair<uint64_t, std::string>> Close(size_t requests) {
    absl::MutexLock lock(&mu);
    started = requests;
    closed = true;
    return TakeIfCompleteLocked();
  }
  std::vector<std::pair<uint64_t, std::string>> TakeIfCompleteLocked()
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (!closed || replies.size() != started) return {};
    return std::move(replies);
  }
};

// One run of reads: their shared barrier (ReadCollector), the KvService they run against
// (its callbacks use it after StartRunnable returned), and their replies.
struct TcpConnection::ReadRun : ReplyGroup {
  explicit ReadRun(KvService* service)
      : collector(service->replicator()), kv(service->WithReplicator(&collector)) {}

  ReadCollector collector;
  KvService kv;
};

TcpConnection::TcpConnection(std::shared_ptr<TcpServerShared> shared,
                             asio::ip::tcp::socket socket, uint64_t id)
    : shared_(std::move(shared)),
      opts_(shared_->options),
      id_(id),
      strand_(asio::make_strand(shared_->io)),
      socket_(std::move(socket)),
      timer_(strand_),
      resp_parser_(RespLimits{opts_.max_request_args, opts_.max_request_bytes}) {
  session_.client_id = id;
}

void TcpConnection::Start() {
  asio::post(strand_, [self = shared_from_this()] {
    self->last_activity_ = Clock::now();
    self->Pump();
  });
}

void TcpConnection::Drain() {
  asio::post(strand_, [self = shared_from_this()] {
    if (self->closed_) return;
    self->draining_ = true;
    // Wake a pending read so nothing more is taken in; it completes with EOF.
    asio::error_code ec;
    self->socket_.shutdown(asio::ip::tcp::socket::shutdown_receive, ec);
    self->Pump();
  });
}

void TcpConnection::ForceClose() {
  asio::post(strand_, [self = shared_from_this()] { self->Close(); });
}

void TcpConnection::Pump() {
  if (closed_ || lingering_) return;
  if (!draining_ && !stop_parsing_) ProcessInput();
  StartRunnable();
  MaybeWrite();
  if (closed_ || lingering_) return;
  MaybeRead();
  if ((eof_ || draining_) && pending_.empty() && !writing_) {
    FinishGracefully();
    return;
  }
  ArmTimer();
}

void TcpConnection::ProcessInput() {
  size_t off = 0;
  bool partial = false;
  while (!stop_parsing_ && pending_.size() < opts_.max_pending_per_conn && off < in_.size()) {
    std::string_view buf = std::string_view(in_).substr(off);
    if (buf[0] == '*') {
      RespRequestParser::Result r = resp_parser_.Parse(buf);
      if (r.status == RespRequestParser::Status::kIncomplete) {
        partial = true;
        break;
      }
      if (r.status == RespRequestParser::Status::kError) {
        Enqueue(TcpRequest::Immediate(RespError("ERR Protocol error: " + r.error),
                                      /*close_after=*/true));
        off = in_.size();
        break;
      }
      off += r.consumed;
      if (!r.args.empty()) {
        Enqueue(PrepareRespRequest(std::move(r.args), &session_, opts_.max_reply_bytes),
                r.consumed);
      }
      continue;
    }
    size_t nl = buf.find('\n', text_scanned_);
    if (nl == std::string_view::npos) {
      // "+ 1": the '\r' of a line of exactly max_line_bytes may be here before its '\n'.
      if (buf.size() > opts_.max_line_bytes + 1) {
        Enqueue(TcpRequest::Immediate("ERR line too long\r\n", /*close_after=*/true));
        off = in_.size();
      } else {
        text_scanned_ = buf.size();
        partial = true;
      }
      break;
    }
    text_scanned_ = 0;
    bool crlf = nl > 0 && buf[nl - 1] == '\r';
    size_t len = crlf ? nl - 1 : nl;
    if (len > opts_.max_line_bytes) {
      // "\r\n" as above: whether the '\n' was in the buffer yet must not change the reply.
      Enqueue(TcpRequest::Immediate("ERR line too long\r\n", /*close_after=*/true));
      off = in_.size();
      break;
    }
    Enqueue(PrepareTextRequest(buf.substr(0, len), crlf, opts_.max_reply_bytes,
                               &session_.writes),
            nl + 1);
    off += nl + 1;
  }
  in_.erase(0, off);
  if (partial) {
    if (!partial_since_) partial_since_ = Clock::now();
  } else {
    partial_since_.reset();
  }
}

void TcpConnection::Enqueue(TcpRequest req, size_t bytes) {
  Slot& slot = pending_.emplace_back();
  slot.kind = req.kind;
  slot.bytes = bytes;
  slot.close_after = req.close_after;
  if (req.kind == RequestKind::kImmediate) {
    slot.done = true;
    slot.reply = std::move(req.reply);
  } else {
    RAFTKV_CHECK(req.run != nullptr);
    slot.run = std::move(req.run);
  }
  // Nothing after QUIT or a fatal error is read or run.
  if (req.close_after) stop_parsing_ = true;
}

void TcpConnection::StartRunnable() {
  std::shared_ptr<ReadRun> reads;  // the reads this call starts, from the first one
  size_t started = 0;
  while (next_start_ < first_seq_ + pending_.size()) {
    Slot& slot = pending_[next_start_ - first_seq_];
    if (slot.kind == RequestKind::kImmediate) {
      ++next_start_;
      continue;
    }
    if (slot.kind == RequestKind::kWrite) {
      // A write waits for every earlier request: a read before it must not see it.
      if (inflight_reads_ + inflight_writes_ > 0) break;
      StartWriteBatch();
      continue;
    }
    // A read waits for the writes before it (read-your-writes within a pipeline).
    if (inflight_writes_ > 0) break;
    uint64_t seq = next_start_++;
    inflight_reads_++;
    auto run = std::move(slot.run);
    if (!reads && !ReadAt(next_start_)) {
      // A read alone (no pipeline): nothing to share a barrier with.
      std::move(run)(shared_->kv, [self = shared_from_this(), seq](std::string reply) {
        std::vector<std::pair<uint64_t, std::string>> one;
        one.emplace_back(seq, std::move(reply));
        self->PostReplies(std::move(one));
      });
      continue;
    }
    if (!reads) reads = std::make_shared<ReadRun>(shared_->kv);
    ++started;
    std::move(run)(&reads->kv, ReplyIn(reads, seq));
  }
  if (!reads) return;
  reads->collector.Flush(reads);
  PostReplies(reads->Close(started));  // all of them answered already (errors, INFO)
}

bool TcpConnection::ReadAt(uint64_t seq) const {
  for (; seq < first_seq_ + pending_.size(); ++seq) {
    const RequestKind kind = pending_[seq - first_seq_].kind;
    if (kind != RequestKind::kImmediate) return kind == RequestKind::kRead;
  }
  return false;
}

ReplyFn TcpConnection::ReplyIn(std::shared_ptr<ReplyGroup> group, uint64_t seq) {
  return [self = shared_from_this(), group = std::move(group), seq](std::string reply) {
    self->PostReplies(group->Add(seq, std::move(reply)));
  };
}

void TcpConnection::PostReplies(std::vector<std::pair<uint64_t, std::string>> replies) {
  if (replies.empty()) return;
  // KvService callbacks may run on any thread; connection state lives on the strand.
  asio::post(strand_, [self = shared_from_this(), replies = std::move(replies)]() mutable {
    self->OnReplies(std::move(replies));
  });
}

void TcpConnection::StartWriteBatch() {
  WriteCollector collector(shared_->kv->replicator());
  KvService kv = shared_->kv->WithReplicator(&collector);
  auto replies = std::make_shared<ReplyGroup>();
  size_t writes = 0;
  size_t bytes = 0;
  while (next_start_ < first_seq_ + pending_.size()) {
    Slot& slot = pending_[next_start_ - first_seq_];
    if (slot.kind == RequestKind::kImmediate) {
      ++next_start_;
      continue;
    }
    if (slot.kind == RequestKind::kRead) break;
    if (writes > 0 && (writes >= opts_.max_pipeline_writes ||
                       bytes + slot.bytes > opts_.max_pipeline_write_bytes)) {
      break;
    }
    ++writes;
    bytes += slot.bytes;
    uint64_t seq = next_start_++;
    inflight_writes_++;
    auto run = std::move(slot.run);
    std::move(run)(&kv, ReplyIn(replies, seq));
  }
  RAFTKV_CHECK(writes > 0);
  collector.Flush();
  PostReplies(replies->Close(writes));  // all of them answered already (refused, errors)
}

void TcpConnection::OnReplies(std::vector<std::pair<uint64_t, std::string>> replies) {
  if (closed_) return;
  for (auto& [seq, reply] : replies) SetReply(seq, std::move(reply));
  Pump();
}

void TcpConnection::SetReply(uint64_t seq, std::string reply) {
  RAFTKV_CHECK(seq >= first_seq_ && seq < next_start_);
  Slot& slot = pending_[seq - first_seq_];
  RAFTKV_CHECK(!slot.done);
  slot.done = true;
  slot.reply = std::move(reply);
  (slot.kind == RequestKind::kWrite ? inflight_writes_ : inflight_reads_)--;
}

void TcpConnection::MaybeWrite() {
  if (writing_ || closed_) return;
  // Replies are gathered and written from the front only: that is what keeps them in order.
  while (!pending_.empty() && pending_.front().done) {
    Slot& front = pending_.front();
    out_ += front.reply;
    bool close = front.close_after;
    pending_.pop_front();
    ++first_seq_;
    if (close) {
      close_after_write_ = true;
      break;
    }
  }
  if (out_.empty()) {
    if (close_after_write_) FinishGracefully();
    return;
  }
  writing_ = true;
  asio::async_write(
      socket_, asio::buffer(out_),
      asio::bind_executor(strand_, [self = shared_from_this()](asio::error_code ec, size_t) {
        self->writing_ = false;
        self->out_.clear();
        if (self->closed_) return;
        if (ec) {
          self->Close();
          return;
        }
        self->last_activity_ = Clock::now();
        if (self->close_after_write_) {
          self->FinishGracefully();
          return;
        }
        self->Pump();
      }));
}

void TcpConnection::MaybeRead() {
  if (reading_ || eof_ || draining_ || stop_parsing_ || closed_) return;
  // Backpressure: a client with max_pending_per_conn unanswered requests waits for replies.
  if (pending_.size() >= opts_.max_pending_per_conn) return;
  reading_ = true;
  socket_.async_read_some(
      asio::buffer(read_buf_),
      asio::bind_executor(strand_, [self = shared_from_this()](asio::error_code ec, size_t n) {
        self->reading_ = false;
        if (self->closed_) return;
        if (self->lingering_) {  // FinishGracefully() began while this read was out
          if (ec) {
            self->Close();
          } else {
            self->DiscardRead();
          }
          return;
        }
        if (ec) {
          // EOF or a reset: serve what was read; a broken socket fails the write and closes.
          self->eof_ = true;
        } else {
          self->in_.append(self->read_buf_.data(), n);
          self->last_activity_ = Clock::now();
        }
        self->Pump();
      }));
}

void TcpConnection::ArmTimer() {
  if (closed_) return;
  Clock::time_point deadline = Clock::time_point::max();
  if (lingering_) {
    deadline = linger_deadline_;
  } else if (partial_since_ && opts_.partial_request_timeout_ms > 0) {
    deadline = After(*partial_since_, opts_.partial_request_timeout_ms);
  } else if (Idle() && opts_.idle_timeout_ms > 0) {
    deadline = After(last_activity_, opts_.idle_timeout_ms);
  }
  if (deadline == armed_deadline_) return;
  armed_deadline_ = deadline;
  if (deadline == Clock::time_point::max()) {
    timer_.cancel();
    return;
  }
  timer_.expires_at(deadline);  // cancels the previous wait, if any
  timer_.async_wait(asio::bind_executor(strand_, [self = shared_from_this()](asio::error_code ec) {
    if (ec == asio::error::operation_aborted || self->closed_) return;
    self->OnTimer();
  }));
}

void TcpConnection::OnTimer() {
  armed_deadline_ = Clock::time_point::max();
  Clock::time_point now = Clock::now();
  if (lingering_) {
    if (now >= linger_deadline_) {
      Close();
      return;
    }
  } else if (partial_since_ && opts_.partial_request_timeout_ms > 0 &&
             now >= After(*partial_since_, opts_.partial_request_timeout_ms)) {
    spdlog::debug("tcp conn {}: request unfinished for {} ms, closing", id_,
                  opts_.partial_request_timeout_ms);
    Close();
    return;
  } else if (Idle() && opts_.idle_timeout_ms > 0 &&
             now >= After(last_activity_, opts_.idle_timeout_ms)) {
    spdlog::debug("tcp conn {}: idle for {} ms, closing", id_, opts_.idle_timeout_ms);
    Close();
    return;
  }
  ArmTimer();
}

void TcpConnection::FinishGracefully() {
  if (closed_ || lingering_) return;
  lingering_ = true;
  asio::error_code ec;
  socket_.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
  if (ec || eof_) {
    Close();
    return;
  }
  linger_deadline_ = After(Clock::now(), opts_.close_linger_ms);
  ArmTimer();
  // An outstanding read continues as the discard loop when it completes.
  if (!reading_) DiscardRead();
}

void TcpConnection::DiscardRead() {
  if (closed_) return;
  reading_ = true;
  socket_.async_read_some(
      asio::buffer(read_buf_),
      asio::bind_executor(strand_, [self = shared_from_this()](asio::error_code ec, size_t) {
        self->reading_ = false;
        if (self->closed_) return;
        if (ec) {
          self->Close();
          return;
        }
        self->DiscardRead();
      }));
}

void TcpConnection::Close() {
  if (closed_) return;
  closed_ = true;
  timer_.cancel();
  asio::error_code ec;
  socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ec);
  socket_.close(ec);
  shared_->Remove(id_);
}

}  // namespace raftkv::server
