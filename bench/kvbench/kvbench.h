// kvbench's shared pieces: the options, the per-run state its worker threads share, what a
// worker reports, and the two drivers (etcd v3 gRPC, RESP) that run one worker thread each.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "kvbench/histogram.h"

namespace grpc {
class Channel;
}

namespace raftkv::bench {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string backend = "etcd";  // "etcd" (v3 gRPC KV.Put / KV.Range) or "resp" (SET / GET)
  std::vector<std::string> endpoints = {"127.0.0.1:6000"};  // host:port; conn i -> i % size
  int clients = 1;         // concurrent requesters (closed loop) or most ops in flight (open)
  int conns = 1;           // connections the clients share (client i uses conn i % conns)
  int pipeline = 1;        // RESP: commands a client sends before it waits for their replies
  int threads = 1;         // worker threads; each owns conns w, w + threads, ...
  double rate = 0;         // ops/s over all threads; 0 = closed loop
  double duration_s = 10;  // the run stops issuing after this long (warm-up included)
  double warmup_s = 0;     // ops started in the first warmup_s are not recorded
  int64_t max_ops = 0;     // the run also stops after this many ops; 0 = no count limit
  int64_t keys = 10000;    // key space: keys are drawn uniformly from [0, keys)
  int key_bytes = 16;      // key length (at least what the prefix and the index need)
  int value_bytes = 256;
  double read_ratio = 0;   // fraction of ops that are reads (Range / GET), drawn per op
  bool serializable = false;  // etcd: Range with serializable=true (default linearizable)
  bool preload = false;       // write every key once (not measured) before the run
  bool sequential_keys = false;  // key of op i is i % keys (a load of every key, in order)
  int timeout_ms = 5000;      // deadline of one request; also how long the end drains
  int connect_timeout_ms = 5000;
  double max_error_ratio = 0;  // exit 1 when (errors + timeouts) / attempts exceed this
  uint64_t seed = 1;
  std::string key_prefix = "kvbench-";
  std::string format = "text";  // text, json or tsv
  std::string label;            // copied into the output, for scripts that collect runs
};

// The state the worker threads of one run share.
struct RunState {
  Options opts;
  Clock::time_point start, warmup_end, end;
  std::atomic<int64_t> issued{0};
  // etcd backend: one channel per connection, opened and checked before the run.
  std::vector<std::shared_ptr<grpc::Channel>> channels;

  // Claims the next op: its sequence number, or -1 when the run must stop issuing (past
  // `end`, or max_ops reached).
  int64_t TakeOp(Clock::time_point now) {
    if (now >= end) return -1;
    int64_t i = issued.fetch_add(1, std::memory_order_relaxed);
    if (opts.max_ops > 0 && i >= opts.max_ops) return -1;
    return i;
  }
};

// What one worker thread measured. Only ops whose (intended) start is at or after
// warmup_end are counted.
struct WorkerResult {
  LatencyHistogram all, reads, writes;  // nanoseconds, from (intended) start to reply
  int64_t errors = 0;    // error replies, failed RPCs, lost connections
  int64_t timeouts = 0;  // no reply within timeout_ms (or still pending when the run ended)
  int64_t unsent = 0;    // open loop: ops that were due before the end but never sent
  std::string first_error;
  Clock::time_point last_reply{};  // of a recorded op

  void Error(const std::string& what) {
    ++errors;
    if (first_error.empty()) first_error = what;
  }
};

// Draws the ops of one worker: which key, read or write, and the value bytes.
class OpGenerator {
 public:
  OpGenerator(const Options& opts, int worker);
  bool NextIsRead();
  // The key of op number `op_index` (random unless opts.sequential_keys); valid until the
  // next call.
  const std::string& Key(int64_t op_index);
  const std::string& value() const { return value_; }

 private:
  const Options& opts_;
  std::mt19937_64 rng_;
  std::uniform_int_distribution<int64_t> key_dist_;
  std::bernoulli_distribution read_dist_;
  std::string key_;
  std::string value_;
  size_t digits_;
};

// Each runs one worker thread of a run to its end (stopped issuing and drained) and fills
// *result. `worker` is in [0, opts.threads).
void RunEtcdWorker(RunState& run, int worker, WorkerResult* result);
void RunRespWorker(RunState& run, int worker, WorkerResult* result);

// Opens the etcd backend's channels into run->channels and waits until each is connected;
// false with *error set when one cannot connect within connect_timeout_ms.
bool ConnectEtcd(RunState* run, std::string* error);
// Checks that every RESP endpoint accepts a connection and answers PING.
bool CheckResp(const Options& opts, std::string* error);

// Records one finished op in *result if it started inside the measured window.
inline void RecordOp(const RunState& run, WorkerResult* result, bool is_read,
                     Clock::time_point start, Clock::time_point done) {
  if (start < run.warmup_end) return;
  const int64_t ns = std::chrono::duration_cast<std::chrono::nanoseconds>(done - start).count();
  result->all.Record(ns);
  (is_read ? result->reads : result->writes).Record(ns);
  if (done > result->last_reply) result->last_reply = done;
}

}  // namespace raftkv::bench
