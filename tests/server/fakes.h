// Test doubles and helpers for the text/RESP TCP front end tests:
//   FakeReplicator  a Replicator that applies writes to a real kv::StateMachine on its own
//                   thread (so KvService callbacks arrive on a foreign thread, as in kvd),
//                   and can fail or hold requests;
//   TcpFixture      a temp dir + RocksDB state machine + FakeReplicator + KvService +
//                   TcpServer on 127.0.0.1, port 0;
//   TestClient      a blocking loopback client whose every wait has a deadline (a safety
//                   net that fails the test, never a synchronisation device).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <deque>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "kv/state_machine.h"
#include "server/service/kv_service.h"
#include "server/service/replicator.h"
#include "server/frontend/tcp/tcp_server.h"

namespace raftkv::server::testing {

class FakeReplicator : public Replicator {
 public:
  explicit FakeReplicator(kv::StateMachine* sm) : sm_(sm), worker_([this] { Loop(); }) {}
  ~FakeReplicator() override {
    {
      absl::MutexLock lock(&mu_);
      hold_ = false;
      stopping_ = true;
    }
    worker_.join();
  }

  // Every later Write/ReadBarrier fails with `error` (OkStatus() to stop failing).
  void FailWith(absl::Status error) {
    absl::MutexLock lock(&mu_);
    error_ = std::move(error);
  }
  // While held, requests queue up unanswered; Hold(false) lets them run in order.
  void Hold(bool hold) {
    absl::MutexLock lock(&mu_);
    if (!hold && reverse_held_writes_) {
      // Concurrent writes carry no order (replicator.h): model the worst, the last first.
      std::deque<Item> reversed;
      for (Item& item : queue_) reversed.push_front(std::move(item));
      queue_.swap(reversed);
    }
    hold_ = hold;
  }
  // Hold(false) then runs the queued items in reverse order: writes sent one by one while
  // held (concurrent Write calls) apply last first; a WriteBatch is one item and keeps its
  // order. For queues of writes only.
  void ReverseHeldWrites(bool reverse) {
    absl::MutexLock lock(&mu_);
    reverse_held_writes_ = reverse;
  }
  // Waits (up to `timeout`) until at least `n` writes are queued (a batch counts its writes);
  // returns the number queued.
  size_t AwaitQueuedWrites(size_t n, absl::Duration timeout = absl::Seconds(10)) {
    absl::MutexLock lock(&mu_);
    auto enough = [this, n]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return queued_writes_ >= n; };
    mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
    return queued_writes_;
  }
  size_t queued_writes() {
    absl::MutexLock lock(&mu_);
    return queued_writes_;
  }
  // WriteBatch calls so far.
  size_t batches() {
    absl::MutexLock lock(&mu_);
    return batches_;
  }
  // Waits (up to `timeout`) until at least `n` requests are queued; returns the number queued.
  size_t AwaitQueued(size_t n, absl::Duration timeout = absl::Seconds(10)) {
    absl::MutexLock lock(&mu_);
    auto enough = [this, n]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return queue_.size() >= n; };
    mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
    return queue_.size();
  }
  size_t queued() {
    absl::MutexLock lock(&mu_);
    return queue_.size();
  }
  // The most requests ever queued (received and not yet answered) at one time.
  size_t max_queued() {
    absl::MutexLock lock(&mu_);
    return max_queued_;
  }
  uint64_t writes_applied() {
    absl::MutexLock lock(&mu_);
    return next_index_ - 1;
  }

  void Write(kvpb::Command cmd, WriteDone done) override {
    Push(Request{std::move(cmd), std::move(done)});
  }
  void WriteBatch(std::vector<kvpb::Command> cmds, std::vector<WriteDone> dones) override {
    std::vector<Request> batch;
    for (size_t i = 0; i < cmds.size(); ++i) {
      batch.push_back(Request{std::move(cmds[i]), std::move(dones[i])});
    }
    {
      absl::MutexLock lock(&mu_);
      ++batches_;
    }
    Push(std::move(batch));
  }
  void ReadBarrier(ReadDone done) override {
    {
      absl::MutexLock lock(&mu_);
      ++read_barriers_;
    }
    Push(std::move(done));
  }
  // ReadBarrier calls so far.
  size_t read_barriers() {
    absl::MutexLock lock(&mu_);
    return read_barriers_;
  }
  NodeStatus Status() const override {
    NodeStatus st;
    st.role = "leader";
    st.term = 1;
    st.leader_id = 0;
    st.applied_index = sm_->applied_index();
    st.commit_index = st.applied_index;
    st.revision = sm_->revision();
    return st;
  }
  std::vector<PeerStatus> Members() const override { return {}; }

 private:
  struct Request {
    kvpb::Command cmd;
    WriteDone done;
  };
  using Item = std::variant<Request, ReadDone, std::vector<Request>>;
  static size_t WritesIn(const Item& item) {
    if (std::holds_alternative<Request>(item)) return 1;
    if (auto* b = std::get_if<std::vector<Request>>(&item)) return b->size();
    return 0;
  }

  void Push(Item item) {
    absl::Status error;
    {
      absl::MutexLock lock(&mu_);
      error = error_;
      if (error.ok()) {
        queued_writes_ += WritesIn(item);
        queue_.push_back(std::move(item));
        max_queued_ = std::max(max_queued_, queue_.size());
        return;
      }
    }
    if (auto* w = std::get_if<Request>(&item)) {
      std::move(w->done)(error);
    } else if (auto* b = std::get_if<std::vector<Request>>(&item)) {
      for (Request& r : *b) std::move(r.done)(error);
    } else {
      std::move(std::get<ReadDone>(item))(error);
    }
  }

  // Applies in arrival order, so a barrier answers after every write queued before it.
  void Loop() {
    for (;;) {
      Item item;
      uint64_t index;
      {
        absl::MutexLock lock(&mu_);
        auto ready = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
          return stopping_ || (!hold_ && !queue_.empty());
        };
        mu_.Await(absl::Condition(&ready));
        if (queue_.empty()) return;  // stopping
        item = std::move(queue_.front());
        queue_.pop_front();
        index = next_index_;
        queued_writes_ -= WritesIn(item);
        next_index_ += WritesIn(item);
      }
      if (auto* w = std::get_if<Request>(&item)) {
        std::move(w->done)(sm_->Apply(index, 1, w->cmd));
      } else if (auto* b = std::get_if<std::vector<Request>>(&item)) {
        for (Request& r : *b) std::move(r.done)(sm_->Apply(index++, 1, r.cmd));
      } else {
        std::move(std::get<ReadDone>(item))(absl::OkStatus());
      }
    }
  }

  kv::StateMachine* const sm_;
  absl::Mutex mu_;
  std::deque<Item> queue_ ABSL_GUARDED_BY(mu_);
  size_t max_queued_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  bool hold_ ABSL_GUARDED_BY(mu_) = false;
  bool reverse_held_writes_ ABSL_GUARDED_BY(mu_) = false;
  size_t queued_writes_ ABSL_GUARDED_BY(mu_) = 0;
  size_t batches_ ABSL_GUARDED_BY(mu_) = 0;
  size_t read_barriers_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t next_index_ ABSL_GUARDED_BY(mu_) = 1;
  std::thread worker_;  // last: starts after the members above exist
};

class TempDir {
 public:
  TempDir() {
    std::string tmpl = ::testing::TempDir() + "/raftkv_tcp_XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) ADD_FAILURE() << "mkdtemp failed for " << tmpl;
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A live front end over a real state machine. Options may be changed before Start().
class TcpFixture {
 public:
  TcpFixture() {
    kv::StateMachineOptions sm_options;
    sm_options.db_path = dir_.path() + "/db";
    auto sm = kv::StateMachine::Open(sm_options);
    if (!sm.ok()) ADD_FAILURE() << sm.status();
    sm_ = *std::move(sm);
    replicator_ = std::make_unique<FakeReplicator>(sm_.get());
  }
  ~TcpFixture() {
    if (server_) server_->Stop();
  }

  TcpServerOptions options;
  KvLimits limits;

  // Starts the server on 127.0.0.1:0; returns the port (0 and a test failure on error).
  uint16_t Start() {
    kv_ = std::make_unique<KvService>(replicator_.get(), sm_.get(), limits);
    server_ = std::make_unique<TcpServer>(kv_.get(), options);
    absl::Status s = server_->Start("127.0.0.1", 0);
    EXPECT_TRUE(s.ok()) << s;
    return s.ok() ? server_->port() : 0;
  }

  uint16_t port() const { return server_->port(); }
  TcpServer& server() { return *server_; }
  FakeReplicator& replicator() { return *replicator_; }
  kv::StateMachine& state_machine() { return *sm_; }

 private:
  TempDir dir_;
  std::unique_ptr<kv::StateMachine> sm_;
  std::unique_ptr<FakeReplicator> replicator_;
  std::unique_ptr<KvService> kv_;
  std::unique_ptr<TcpServer> server_;
};

// Length of the first complete RESP value in `buf`, or 0 if it is not complete yet.
inline size_t RespValueLength(std::string_view buf, size_t pos = 0) {
  if (pos >= buf.size()) return 0;
  size_t eol = buf.find("\r\n", pos);
  if (eol == std::string_view::npos) return 0;
  char type = buf[pos];
  size_t after = eol + 2;
  if (type == '+' || type == '-' || type == ':') return after - pos;
  long long n = std::stoll(std::string(buf.substr(pos + 1, eol - pos - 1)));
  if (type == '$') {
    if (n < 0) return after - pos;
    if (buf.size() < after + n + 2) return 0;
    return after + n + 2 - pos;
  }
  if (type == '*') {
    size_t p = after;
    for (long long i = 0; i < n; ++i) {
      size_t len = RespValueLength(buf, p);
      if (len == 0) return 0;
      p += len;
    }
    return p - pos;
  }
  ADD_FAILURE() << "not RESP: " << buf.substr(pos, 40);
  return buf.size() - pos;
}

class TestClient {
 public:
  static constexpr int kDefaultTimeoutMs = 10000;

  explicit TestClient(uint16_t port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd_ < 0 || connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      ADD_FAILURE() << "connect to 127.0.0.1:" << port << " failed: " << strerror(errno);
      Close();
    }
  }
  ~TestClient() { Close(); }
  TestClient(TestClient&& other) noexcept : fd_(other.fd_), buf_(std::move(other.buf_)) {
    other.fd_ = -1;
  }

  bool ok() const { return fd_ >= 0; }
  int fd() const { return fd_; }

  bool Send(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(n);
    }
    return true;
  }
  void ShutdownWrite() { shutdown(fd_, SHUT_WR); }
  void Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

  // One line without its "\n" (a "\r" before it stays); nullopt on EOF or timeout.
  std::optional<std::string> ReadLine(int timeout_ms = kDefaultTimeoutMs) {
    auto deadline = Deadline(timeout_ms);
    for (;;) {
      size_t nl = buf_.find('\n');
      if (nl != std::string::npos) {
        std::string line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return line;
      }
      if (!Fill(deadline)) return std::nullopt;
    }
  }
  // One complete RESP reply, raw; nullopt on EOF or timeout.
  std::optional<std::string> ReadResp(int timeout_ms = kDefaultTimeoutMs) {
    auto deadline = Deadline(timeout_ms);
    for (;;) {
      if (size_t len = RespValueLength(buf_); len > 0) {
        std::string reply = buf_.substr(0, len);
        buf_.erase(0, len);
        return reply;
      }
      if (!Fill(deadline)) return std::nullopt;
    }
  }
  // Reads until the server closes; returns everything not yet consumed, or nullopt if the
  // connection is still open at the deadline.
  std::optional<std::string> ReadUntilClosed(int timeout_ms = kDefaultTimeoutMs) {
    auto deadline = Deadline(timeout_ms);
    while (Fill(deadline)) {
    }
    if (!eof_) return std::nullopt;
    return std::exchange(buf_, "");
  }
  bool eof() const { return eof_; }

 private:
  using Clock = std::chrono::steady_clock;
  static Clock::time_point Deadline(int ms) { return Clock::now() + std::chrono::milliseconds(ms); }

  // Appends what arrives before the deadline; false on EOF, error or timeout.
  bool Fill(Clock::time_point deadline) {
    if (fd_ < 0 || eof_) return false;
    int left_ms = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now())
                      .count();
    if (left_ms <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, left_ms) <= 0) return false;
    char tmp[65536];
    ssize_t n = recv(fd_, tmp, sizeof(tmp), 0);
    if (n <= 0) {
      eof_ = true;  // EOF, or a reset: either way the server closed
      return false;
    }
    buf_.append(tmp, n);
    return true;
  }

  int fd_ = -1;
  std::string buf_;
  bool eof_ = false;
};

// Polls `cond` (every millisecond) until it holds or `timeout_ms` passes; returns the last
// value. For conditions the test cannot be notified of, such as the server's connection count.
template <typename F>
bool AwaitTrue(F cond, int timeout_ms = TestClient::kDefaultTimeoutMs) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!cond()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

// "*N\r\n$..." for a command.
inline std::string RespCommand(const std::vector<std::string>& args) {
  std::string out = "*" + std::to_string(args.size()) + "\r\n";
  for (const std::string& a : args) {
    out += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
  }
  return out;
}

}  // namespace raftkv::server::testing
