// The etcd v3 gRPC backend: KV.Put and KV.Range over the asynchronous gRPC client API, so one
// worker thread keeps many clients' requests in flight over shared connections (as etcd's
// own benchmark tool does with goroutines).
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>

#include "etcd/rpc.grpc.pb.h"
#include "kvbench/kvbench.h"

namespace raftkv::bench {
namespace {

std::chrono::system_clock::time_point ToSystem(Clock::time_point t) {
  return std::chrono::system_clock::now() +
         std::chrono::duration_cast<std::chrono::system_clock::duration>(t - Clock::now());
}

// One client: at most one request in flight.
struct Call {
  etcdserverpb::KV::Stub* stub = nullptr;
  bool busy = false;
  bool is_read = false;
  Clock::time_point start;  // intended start in the open loop, actual send in the closed
  std::unique_ptr<grpc::ClientContext> ctx;
  etcdserverpb::PutRequest put_req;
  etcdserverpb::RangeRequest range_req;
  etcdserverpb::PutResponse put_resp;
  etcdserverpb::RangeResponse range_resp;
  std::unique_ptr<grpc::ClientAsyncResponseReader<etcdserverpb::PutResponse>> put_rpc;
  std::unique_ptr<grpc::ClientAsyncResponseReader<etcdserverpb::RangeResponse>> range_rpc;
  grpc::Status status;
};

}  // namespace

bool ConnectEtcd(RunState* run, std::string* error) {
  const Options& o = run->opts;
  run->channels.clear();
  for (int i = 0; i < o.conns; ++i) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_ENABLE_HTTP_PROXY, 0);
    // A channel of its own per connection: without these, gRPC shares one subchannel (one
    // TCP connection) among channels with equal arguments.
    args.SetInt("grpc.use_local_subchannel_pool", 1);
    args.SetInt("kvbench.conn", i);
    args.SetMaxReceiveMessageSize(64 << 20);
    const std::string& ep = o.endpoints[i % o.endpoints.size()];
    run->channels.push_back(
        grpc::CreateCustomChannel(ep, grpc::InsecureChannelCredentials(), args));
  }
  const auto deadline =
      std::chrono::system_clock::now() + std::chrono::milliseconds(o.connect_timeout_ms);
  for (int i = 0; i < o.conns; ++i) {
    if (!run->channels[i]->WaitForConnected(deadline)) {
      *error = "cannot connect to " + o.endpoints[i % o.endpoints.size()] + " within " +
               std::to_string(o.connect_timeout_ms) + " ms";
      return false;
    }
  }
  return true;
}

void RunEtcdWorker(RunState& run, int worker, WorkerResult* result) {
  const Options& o = run.opts;
  OpGenerator gen(o, worker);
  std::vector<std::unique_ptr<etcdserverpb::KV::Stub>> stubs;
  for (auto& ch : run.channels) stubs.push_back(etcdserverpb::KV::NewStub(ch));

  // This worker's clients: c = worker, worker + threads, ...; client c uses conn c % conns.
  std::vector<std::unique_ptr<Call>> calls;
  for (int c = worker; c < o.clients; c += o.threads) {
    auto call = std::make_unique<Call>();
    call->stub = stubs[c % o.conns].get();
    calls.push_back(std::move(call));
  }
  std::vector<Call*> idle;
  for (auto& c : calls) idle.push_back(c.get());

  grpc::CompletionQueue cq;
  int inflight = 0;
  auto issue = [&](Call* c, int64_t op, Clock::time_point start) {
    c->busy = true;
    c->is_read = gen.NextIsRead();
    c->start = start;
    c->ctx = std::make_unique<grpc::ClientContext>();
    c->ctx->set_deadline(std::chrono::system_clock::now() +
                         std::chrono::milliseconds(o.timeout_ms));
    if (c->is_read) {
      c->range_req.set_key(gen.Key(op));
      c->range_req.set_serializable(o.serializable);
      c->range_rpc = c->stub->AsyncRange(c->ctx.get(), c->range_req, &cq);
      c->range_rpc->Finish(&c->range_resp, &c->status, c);
    } else {
      c->put_req.set_key(gen.Key(op));
      c->put_req.set_value(gen.value());
      c->put_rpc = c->stub->AsyncPut(c->ctx.get(), c->put_req, &cq);
      c->put_rpc->Finish(&c->put_resp, &c->status, c);
    }
    ++inflight;
  };

  const bool open = o.rate > 0;
  // Open loop: this worker's share of the rate, its ops offset so the workers interleave.
  const auto interval = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(o.threads / std::max(o.rate, 1e-9)));
  Clock::time_point next_due =
      run.start + std::chrono::duration_cast<Clock::duration>(
                      std::chrono::duration<double>(worker / std::max(o.rate, 1e-9)));
  bool stopping = false;
  Clock::time_point drain_deadline{};
  for (;;) {
    Clock::time_point now = Clock::now();
    if (!stopping) {
      if (open) {
        while (next_due <= now && !idle.empty()) {
          int64_t op = run.TakeOp(next_due);
          if (op < 0) {
            stopping = true;
            break;
          }
          issue(idle.back(), op, next_due);
          idle.pop_back();
          next_due += interval;
        }
        if (!stopping && now >= run.end) stopping = true;
      } else {
        while (!idle.empty()) {
          int64_t op = run.TakeOp(now);
          if (op < 0) {
            stopping = true;
            break;
          }
          issue(idle.back(), op, now);
          idle.pop_back();
        }
        if (now >= run.end) stopping = true;
      }
      if (stopping) {
        drain_deadline = now + std::chrono::milliseconds(o.timeout_ms);
        if (open && next_due < run.end &&
            (o.max_ops == 0 || run.issued.load() < o.max_ops)) {
          result->unsent += (run.end - next_due) / interval + 1;
        }
      }
    }
    if (stopping && inflight == 0) break;
    Clock::time_point wake = run.end;
    if (stopping) {
      wake = now + std::chrono::milliseconds(100);
      if (now > drain_deadline) {
        for (auto& c : calls) {
          if (c->busy) c->ctx->TryCancel();  // completes as CANCELLED, counted a time-out
        }
      }
    } else if (open && !idle.empty()) {
      wake = std::min(next_due, run.end);
    }
    void* tag = nullptr;
    bool ok = false;
    grpc::CompletionQueue::NextStatus st = cq.AsyncNext(&tag, &ok, ToSystem(wake));
    if (st == grpc::CompletionQueue::SHUTDOWN) break;
    if (st != grpc::CompletionQueue::GOT_EVENT) continue;
    Call* c = static_cast<Call*>(tag);
    const Clock::time_point done = Clock::now();
    --inflight;
    c->busy = false;
    if (c->status.ok()) {
      RecordOp(run, result, c->is_read, c->start, done);
    } else if (c->start >= run.warmup_end) {
      const auto code = c->status.error_code();
      if (code == grpc::StatusCode::DEADLINE_EXCEEDED || code == grpc::StatusCode::CANCELLED) {
        ++result->timeouts;
      } else {
        result->Error(std::string(c->is_read ? "Range" : "Put") + ": code " +
                      std::to_string(static_cast<int>(code)) + ": " +
                      c->status.error_message());
      }
    }
    idle.push_back(c);
  }
  cq.Shutdown();
  void* tag;
  bool ok;
  while (cq.Next(&tag, &ok)) {
  }
}

}  // namespace raftkv::bench
