// The RESP backend: SET and GET over raw non-blocking TCP sockets and one epoll set per worker
// thread. Replies on a connection come in request order, so each connection keeps a FIFO of
// what it sent; several clients may share one connection (their requests interleave), and a
// client with pipeline P sends P commands in one write and waits for all P replies, as
// redis-benchmark -P does.
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>

#include "kvbench/kvbench.h"
#include "kvbench/resp_reply.h"

namespace raftkv::bench {
namespace {

bool SplitHostPort(const std::string& ep, std::string* host, std::string* port) {
  size_t colon = ep.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == ep.size()) return false;
  *host = ep.substr(0, colon);
  *port = ep.substr(colon + 1);
  if (host->size() > 2 && host->front() == '[' && host->back() == ']') {
    *host = host->substr(1, host->size() - 2);
  }
  return true;
}

// A connected blocking socket with TCP_NODELAY, or -1 with *error set.
int Dial(const std::string& ep, int timeout_ms, std::string* error) {
  std::string host, port;
  if (!SplitHostPort(ep, &host, &port)) {
    *error = "bad endpoint " + ep + " (want host:port)";
    return -1;
  }
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res); rc != 0) {
    *error = ep + ": " + gai_strerror(rc);
    return -1;
  }
  int fd = -1;
  for (addrinfo* a = res; a != nullptr; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);  // bounds connect()
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) break;
    *error = "cannot connect to " + ep + ": " + std::strerror(errno);
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  if (fd >= 0) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  return fd;
}

struct Pending {
  int client;  // index into the worker's clients, or -1 (open loop)
  bool is_read;
  Clock::time_point start;  // intended start (open loop) or send time: latency counts from it
  Clock::time_point sent;   // when it was queued for writing: the time-out counts from it
};

struct Conn {
  int fd = -1;
  std::string endpoint;
  std::string out;  // bytes not yet written
  size_t out_off = 0;
  std::string in;  // bytes read, not yet parsed
  std::deque<Pending> pending;
  bool writable_armed = false;
};

struct Client {
  int conn;
  int outstanding = 0;
};

}  // namespace

bool CheckResp(const Options& opts, std::string* error) {
  for (const std::string& ep : opts.endpoints) {
    int fd = Dial(ep, opts.connect_timeout_ms, error);
    if (fd < 0) return false;
    std::string ping;
    AppendCommand({"PING"}, &ping);
    bool ok = write(fd, ping.data(), ping.size()) == static_cast<ssize_t>(ping.size());
    std::string in;
    char buf[512];
    size_t used = 0;
    ReplyParse r = ReplyParse::kIncomplete;
    while (ok && r == ReplyParse::kIncomplete) {
      ssize_t n = read(fd, buf, sizeof buf);  // bounded by SO_RCVTIMEO
      if (n <= 0) break;
      in.append(buf, n);
      r = ParseReply(in, &used);
    }
    close(fd);
    if (r != ReplyParse::kOk) {
      *error = ep + " did not answer PING with a RESP reply within " +
               std::to_string(opts.connect_timeout_ms) + " ms";
      if (!in.empty()) *error += " (got: " + in.substr(0, 80) + ")";
      return false;
    }
  }
  return true;
}

void RunRespWorker(RunState& run, int worker, WorkerResult* result) {
  const Options& o = run.opts;
  OpGenerator gen(o, worker);
  int ep = epoll_create1(EPOLL_CLOEXEC);

  // This worker's connections: j = worker, worker + threads, ...; client c uses conn c % conns.
  std::vector<Conn> conns;
  std::vector<int> conn_of_global(o.conns, -1);
  for (int j = worker; j < o.conns; j += o.threads) {
    Conn c;
    c.endpoint = o.endpoints[j % o.endpoints.size()];
    std::string err;
    c.fd = Dial(c.endpoint, o.connect_timeout_ms, &err);
    if (c.fd < 0) {
      result->Error(err);
      continue;
    }
    conn_of_global[j] = static_cast<int>(conns.size());
    conns.push_back(std::move(c));
  }
  for (size_t i = 0; i < conns.size(); ++i) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = i;
    epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev);
    int fl = 1;
    ioctl(conns[i].fd, FIONBIO, &fl);
  }
  std::vector<Client> clients;
  for (int c = 0; c < o.clients; ++c) {
    int j = conn_of_global[c % o.conns];
    if ((c % o.conns) % o.threads == worker && j >= 0) clients.push_back(Client{j});
  }
  int live = static_cast<int>(conns.size());
  int64_t inflight = 0;

  auto kill_conn = [&](Conn& c, const std::string& why, bool as_timeout) {
    if (c.fd < 0) return;
    for (const Pending& p : c.pending) {
      if (p.start >= run.warmup_end) {
        if (as_timeout) {
          ++result->timeouts;
        } else {
          result->Error(c.endpoint + ": " + why);
        }
      }
      if (p.client >= 0) clients[p.client].outstanding = 0;
    }
    inflight -= c.pending.size();
    c.pending.clear();
    epoll_ctl(ep, EPOLL_CTL_DEL, c.fd, nullptr);
    close(c.fd);
    c.fd = -1;
    --live;
  };
  auto enqueue = [&](Conn& c, int client, int64_t op, Clock::time_point start) {
    const bool is_read = gen.NextIsRead();
    if (is_read) {
      AppendCommand({"GET", gen.Key(op)}, &c.out);
    } else {
      AppendCommand({"SET", gen.Key(op), gen.value()}, &c.out);
    }
    c.pending.push_back(Pending{client, is_read, start, Clock::now()});
    ++inflight;
  };
  auto flush = [&](size_t i) {
    Conn& c = conns[i];
    while (c.fd >= 0 && c.out_off < c.out.size()) {
      ssize_t n = write(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off);
      if (n > 0) {
        c.out_off += n;
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        break;
      } else {
        kill_conn(c, std::string("write: ") + std::strerror(errno), false);
        return;
      }
    }
    if (c.fd < 0) return;
    if (c.out_off == c.out.size()) {
      c.out.clear();
      c.out_off = 0;
    }
    const bool want = !c.out.empty();
    if (want != c.writable_armed) {
      epoll_event ev{};
      ev.events = EPOLLIN | (want ? uint32_t{EPOLLOUT} : uint32_t{0});
      ev.data.u64 = i;
      epoll_ctl(ep, EPOLL_CTL_MOD, c.fd, &ev);
      c.writable_armed = want;
    }
  };

  const bool open = o.rate > 0;
  const auto interval = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(o.threads / std::max(o.rate, 1e-9)));
  Clock::time_point next_due =
      run.start + std::chrono::duration_cast<Clock::duration>(
                      std::chrono::duration<double>(worker / std::max(o.rate, 1e-9)));
  // Open loop: most commands in flight on this worker (its clients times the pipeline).
  const int64_t window = static_cast<int64_t>(clients.size()) * o.pipeline;
  size_t rr = 0;  // open loop: the next connection to send on
  bool stopping = conns.empty();
  bool draining = false;  // stopped issuing; waiting (until drain_deadline) for replies
  Clock::time_point drain_deadline{};
  std::vector<bool> dirty(conns.size(), false);
  auto issue_batch = [&](int ci, Clock::time_point now) {
    Client& cl = clients[ci];
    if (conns[cl.conn].fd < 0) return true;
    for (int k = 0; k < o.pipeline; ++k) {
      int64_t op = run.TakeOp(now);
      if (op < 0) return false;
      enqueue(conns[cl.conn], ci, op, now);
      ++cl.outstanding;
      dirty[cl.conn] = true;
    }
    return true;
  };
  if (!open && !stopping) {
    Clock::time_point now = Clock::now();
    for (size_t ci = 0; ci < clients.size() && !stopping; ++ci) {
      if (!issue_batch(static_cast<int>(ci), now)) stopping = true;
    }
  }

  std::vector<epoll_event> events(std::max<size_t>(conns.size(), 1));
  for (;;) {
    Clock::time_point now = Clock::now();
    if (!stopping && open) {
      while (next_due <= now && inflight < window && live > 0) {
        int64_t op = run.TakeOp(next_due);
        if (op < 0) {
          stopping = true;
          break;
        }
        while (conns[rr].fd < 0) rr = (rr + 1) % conns.size();
        enqueue(conns[rr], -1, op, next_due);
        dirty[rr] = true;
        rr = (rr + 1) % conns.size();
        next_due += interval;
      }
    }
    if (!stopping && (now >= run.end || live == 0)) stopping = true;
    if (stopping && !draining) {
      draining = true;
      drain_deadline = now + std::chrono::milliseconds(o.timeout_ms);
    }
    for (size_t i = 0; i < conns.size(); ++i) {
      if (dirty[i]) {
        dirty[i] = false;
        flush(i);
      }
    }
    // A connection whose oldest command was sent more than timeout_ms ago is given up.
    for (Conn& c : conns) {
      if (c.fd >= 0 && !c.pending.empty() &&
          now - c.pending.front().sent > std::chrono::milliseconds(o.timeout_ms)) {
        kill_conn(c, "no reply within timeout", true);
      }
    }
    if (stopping && inflight == 0) break;
    if (stopping && now > drain_deadline) {
      for (Conn& c : conns) kill_conn(c, "still pending at the end", true);
      break;
    }
    if (live == 0) break;

    Clock::time_point wake = stopping ? std::min(drain_deadline, now + std::chrono::milliseconds(100))
                                      : run.end;
    if (!stopping && open && inflight < window) wake = std::min(next_due, run.end);
    const auto wait_ns = std::max<int64_t>(
        0, std::chrono::duration_cast<std::chrono::nanoseconds>(wake - now).count());
    timespec ts{static_cast<time_t>(wait_ns / 1000000000), static_cast<long>(wait_ns % 1000000000)};
    int n = epoll_pwait2(ep, events.data(), static_cast<int>(events.size()), &ts, nullptr);
    if (n < 0) {
      if (errno == EINTR) continue;
      result->Error(std::string("epoll: ") + std::strerror(errno));
      break;
    }
    const Clock::time_point done = Clock::now();
    for (int e = 0; e < n; ++e) {
      const size_t i = events[e].data.u64;
      Conn& c = conns[i];
      if (c.fd < 0) continue;
      if (events[e].events & EPOLLOUT) flush(i);
      if (c.fd < 0 || !(events[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
      char buf[64 * 1024];
      for (;;) {
        ssize_t r = read(c.fd, buf, sizeof buf);
        if (r > 0) {
          c.in.append(buf, r);
          if (r < static_cast<ssize_t>(sizeof buf)) break;
        } else if (r == 0) {
          kill_conn(c, "connection closed by the server", false);
          break;
        } else if (errno == EINTR) {
          continue;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
          break;
        } else {
          kill_conn(c, std::string("read: ") + std::strerror(errno), false);
          break;
        }
      }
      size_t off = 0;
      while (c.fd >= 0 && !c.pending.empty()) {
        size_t used = 0;
        std::string_view rest(c.in.data() + off, c.in.size() - off);
        ReplyParse r = ParseReply(rest, &used);
        if (r == ReplyParse::kIncomplete) break;
        if (r == ReplyParse::kMalformed) {
          kill_conn(c, "malformed reply: " + std::string(rest.substr(0, 40)), false);
          break;
        }
        const Pending p = c.pending.front();
        c.pending.pop_front();
        --inflight;
        if (r == ReplyParse::kOk) {
          RecordOp(run, result, p.is_read, p.start, done);
        } else if (p.start >= run.warmup_end) {
          result->Error(c.endpoint + ": " + std::string(rest.substr(0, std::min(used, size_t{120}) - 2)));
        }
        off += used;
        if (p.client >= 0 && --clients[p.client].outstanding == 0 && !stopping) {
          if (!issue_batch(p.client, Clock::now())) stopping = true;
        }
      }
      if (c.fd >= 0) {
        c.in.erase(0, off);
        if (c.pending.empty() && !c.in.empty()) {
          kill_conn(c, "reply to nothing: " + c.in.substr(0, 40), false);
        }
      }
    }
  }
  if (open && next_due < run.end && (o.max_ops == 0 || run.issued.load() < o.max_ops)) {
    result->unsent += (run.end - next_due) / interval + 1;
  }
  for (Conn& c : conns) {
    if (c.fd >= 0) close(c.fd);
  }
  close(ep);
}

}  // namespace raftkv::bench
