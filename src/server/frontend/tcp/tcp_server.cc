#include "server/frontend/tcp/tcp_server.h"

#include <future>
#include <utility>

#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "server/service/kv_service.h"
#include "server/frontend/tcp/tcp_connection.h"
#include "spdlog/spdlog.h"

namespace raftkv::server {
namespace {

// Retry delay after accept() fails (EMFILE and friends), so the loop does not spin.
constexpr auto kAcceptRetryDelay = std::chrono::milliseconds(50);

void DoAccept(std::shared_ptr<TcpServerShared> s);

// Tells a client over max_connections why it goes, then closes. Owns the socket until done.
void Reject(asio::ip::tcp::socket socket) {
  auto sock = std::make_shared<asio::ip::tcp::socket>(std::move(socket));
  static const std::string kMsg = "ERR too many connections\r\n";
  asio::async_write(*sock, asio::buffer(kMsg), [sock](asio::error_code, size_t) {
    asio::error_code ec;
    sock->shutdown(asio::ip::tcp::socket::shutdown_both, ec);
    sock->close(ec);
  });
}

void OnAccept(std::shared_ptr<TcpServerShared> s, asio::error_code ec,
              asio::ip::tcp::socket socket) {
  if (!s->accepting) return;
  if (ec) {
    if (ec == asio::error::operation_aborted) return;
    spdlog::warn("tcp accept failed: {}; retrying", ec.message());
    s->accept_retry_timer.expires_after(kAcceptRetryDelay);
    s->accept_retry_timer.async_wait(asio::bind_executor(
        s->accept_strand, [s](asio::error_code tec) {
          if (!tec && s->accepting) DoAccept(s);
        }));
    return;
  }
  asio::error_code opt_ec;
  socket.set_option(asio::ip::tcp::no_delay(true), opt_ec);
  std::shared_ptr<TcpConnection> conn;
  {
    absl::MutexLock lock(&s->mu);
    if (s->conns.size() >= s->options.max_connections) {
      // Rejected below, outside the lock.
    } else {
      uint64_t id = s->next_conn_id++;
      conn = std::make_shared<TcpConnection>(s, std::move(socket), id);
      s->conns.emplace(id, conn);
    }
  }
  if (conn) {
    conn->Start();
  } else {
    Reject(std::move(socket));
  }
  DoAccept(std::move(s));
}

void DoAccept(std::shared_ptr<TcpServerShared> s) {
  s->acceptor.async_accept(asio::bind_executor(
      s->accept_strand, [s](asio::error_code ec, asio::ip::tcp::socket socket) mutable {
        OnAccept(std::move(s), ec, std::move(socket));
      }));
}

}  // namespace

absl::Status TcpServerOptions::Validate(size_t max_key_bytes, size_t max_value_bytes) const {
  auto bad = [](const char* what) { return absl::InvalidArgumentError(what); };
  if (num_io_threads < 1 || num_io_threads > 256) return bad("tcp io threads must be 1..256");
  if (max_line_bytes < 16) return bad("max_line_bytes must be at least 16");
  if (max_request_args < 3) return bad("max_request_args must be at least 3");
  if (max_connections < 1) return bad("max_connections must be at least 1");
  if (stop_timeout_ms < 0) return bad("--shutdown-tcp-grace-ms must not be negative");
  if (max_pending_per_conn < 1) return bad("max_pending_per_conn must be at least 1");
  if (max_pipeline_writes < 1) return bad("max_pipeline_writes must be at least 1");
  if (max_pipeline_write_bytes < 1) return bad("max_pipeline_write_bytes must be at least 1");
  if (idle_timeout_ms < 0 || partial_request_timeout_ms < 0 || stop_timeout_ms < 0 ||
      close_linger_ms < 0) {
    return bad("tcp timeouts must not be negative");
  }
  // "*3\r\n$3\r\nSET\r\n$<k>\r\n<key>\r\n$<v>\r\n<value>\r\n" with up to 20-digit lengths.
  size_t max_set_bytes = max_key_bytes + max_value_bytes + 80;
  if (max_request_bytes < max_set_bytes) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "max_request_bytes (%d) must be at least max_key_bytes + max_value_bytes + 80 (%d) "
        "so that the largest allowed SET fits",
        max_request_bytes, max_set_bytes));
  }
  // "*1\r\n$<v>\r\n<value>\r\n" (an MGET of one key) with a 20-digit length, or a text line.
  size_t max_get_bytes = max_value_bytes + 64;
  if (max_reply_bytes < max_get_bytes) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "max_reply_bytes (%d) must be at least max_value_bytes + 64 (%d) so that a GET of the "
        "largest allowed value fits",
        max_reply_bytes, max_get_bytes));
  }
  return absl::OkStatus();
}

TcpServer::TcpServer(KvService* kv, TcpServerOptions options)
    : kv_(kv), options_(options), shared_(std::make_shared<TcpServerShared>(kv, options)) {}

TcpServer::~TcpServer() { Stop(); }

size_t TcpServer::num_connections() const {
  absl::MutexLock lock(&shared_->mu);
  return shared_->conns.size();
}

absl::Status TcpServer::Start(const std::string& host, uint16_t port) {
  if (started_) return absl::FailedPreconditionError("tcp server already started");
  if (absl::Status s = options_.Validate(kv_->limits().max_key_bytes,
                                         kv_->limits().max_value_bytes);
      !s.ok()) {
    return s;
  }
  asio::error_code ec;
  asio::ip::address addr = asio::ip::make_address(host, ec);
  if (ec) return absl::InvalidArgumentError("bad listen address '" + host + "': " + ec.message());
  asio::ip::tcp::endpoint endpoint(addr, port);
  asio::ip::tcp::acceptor& acceptor = shared_->acceptor;
  auto fail = [&](const char* what) {
    asio::error_code ignored;
    acceptor.close(ignored);
    return absl::UnavailableError(
        absl::StrFormat("%s %s:%d: %s", what, host, port, ec.message()));
  };
  acceptor.open(endpoint.protocol(), ec);
  if (ec) return fail("open");
  acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (ec) return fail("setsockopt");
  acceptor.bind(endpoint, ec);
  if (ec) return fail("bind");
  acceptor.listen(options_.listen_backlog, ec);
  if (ec) return fail("listen");
  port_ = acceptor.local_endpoint(ec).port();
  if (ec) return fail("getsockname");

  started_ = true;
  shared_->accepting = true;  // before any thread runs
  DoAccept(shared_);
  // The io threads exit when Stop() has released `work` and the queue is empty.
  auto* s = shared_.get();
  s->work.emplace(asio::make_work_guard(s->io));
  {
    absl::MutexLock lock(&s->mu);
    s->threads_running = options_.num_io_threads;
  }
  for (int i = 0; i < options_.num_io_threads; ++i) {
    threads_.emplace_back([s] {
      s->io.run();
      absl::MutexLock lock(&s->mu);
      --s->threads_running;
    });
  }
  spdlog::info("text/RESP server listening on {}:{}", host, port_);
  return absl::OkStatus();
}

void TcpServer::Stop() {
  if (!started_ || stopped_) return;
  stopped_ = true;
  std::shared_ptr<TcpServerShared> s = shared_;

  // 1. Stop accepting; wait until it is done, so no connection appears after step 2.
  std::promise<void> closed;
  asio::post(s->accept_strand, [s, &closed] {
    s->accepting = false;
    asio::error_code ec;
    s->acceptor.close(ec);
    s->accept_retry_timer.cancel();
    closed.set_value();
  });
  closed.get_future().wait();

  // 2. Drain every connection: finish what was read, reply, close.
  auto for_each_conn = [&s](auto fn) {
    std::vector<std::shared_ptr<TcpConnection>> conns;
    {
      absl::MutexLock lock(&s->mu);
      for (auto& [id, weak] : s->conns) {
        if (auto c = weak.lock()) conns.push_back(std::move(c));
      }
    }
    for (auto& c : conns) fn(*c);
  };
  for_each_conn([](TcpConnection& c) { c.Drain(); });
  auto all_closed = [&s]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return s->conns.empty(); };
  bool drained;
  {
    absl::MutexLock lock(&s->mu);
    drained = s->mu.AwaitWithTimeout(absl::Condition(&all_closed),
                                     absl::Milliseconds(options_.stop_timeout_ms));
  }
  if (!drained) {
    spdlog::warn("tcp server: connections still busy after {} ms; closing them",
                 options_.stop_timeout_ms);
    for_each_conn([](TcpConnection& c) { c.ForceClose(); });
    absl::MutexLock lock(&s->mu);
    s->mu.AwaitWithTimeout(absl::Condition(&all_closed), absl::Seconds(5));
  }

  // 3. Let the threads run what is left (cancelled operations of closed sockets) and return.
  // If something still holds the io_context busy, stop it: handlers left in the queue then
  // keep their connections (and this state) alive; a leak, only after a forced stop.
  s->work.reset();
  auto threads_done = [&s]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return s->threads_running == 0; };
  bool finished;
  {
    absl::MutexLock lock(&s->mu);
    finished = s->mu.AwaitWithTimeout(absl::Condition(&threads_done), absl::Seconds(5));
  }
  if (!finished) {
    spdlog::warn("tcp server: io threads still busy after stop; stopping them");
    s->io.stop();
  }
  for (std::thread& t : threads_) t.join();
  threads_.clear();
}

}  // namespace raftkv::server
