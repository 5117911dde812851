// kvbench: a load generator for raftkv and its peers. See --help, and docs/benchmarks.md for
// how bench/compare.sh uses it.
#include "kvbench/kvbench.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <thread>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace raftkv::bench {

OpGenerator::OpGenerator(const Options& opts, int worker)
    : opts_(opts),
      rng_(opts.seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(worker)),
      key_dist_(0, std::max<int64_t>(opts.keys, 1) - 1),
      read_dist_(std::clamp(opts.read_ratio, 0.0, 1.0)) {
  // Keys are padded to key_bytes; a key whose number needs more digits is longer.
  digits_ = opts.key_bytes > static_cast<int>(opts.key_prefix.size())
                ? opts.key_bytes - opts.key_prefix.size()
                : 0;
  // Values: letters drawn once per worker (not compressible to nothing, cheap to send).
  value_.resize(opts.value_bytes);
  for (char& c : value_) c = static_cast<char>('a' + rng_() % 26);
}

bool OpGenerator::NextIsRead() { return opts_.read_ratio > 0 && read_dist_(rng_); }

const std::string& OpGenerator::Key(int64_t op_index) {
  const int64_t k = opts_.sequential_keys ? op_index % std::max<int64_t>(opts_.keys, 1)
                                          : key_dist_(rng_);
  std::string digits = std::to_string(k);
  key_ = opts_.key_prefix;
  key_.append(digits_ - std::min(digits_, digits.size()), '0');
  key_.append(digits);
  return key_;
}

namespace {

struct Summary {
  WorkerResult merged;
  double seconds = 0;  // the measured window: warm-up end to the last recorded reply
  int64_t ok() const { return merged.all.count(); }
  double throughput() const { return seconds > 0 ? ok() / seconds : 0; }
};

Summary RunPhase(const Options& opts, RunState* run) {
  std::vector<WorkerResult> results(opts.threads);
  run->start = Clock::now();
  auto secs = [](double s) {
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
  };
  run->warmup_end = run->start + secs(opts.warmup_s);
  run->end = run->start + secs(opts.duration_s);
  run->issued = 0;
  std::vector<std::thread> threads;
  for (int w = 0; w < opts.threads; ++w) {
    threads.emplace_back([&, w] {
      if (opts.backend == "etcd") {
        RunEtcdWorker(*run, w, &results[w]);
      } else {
        RunRespWorker(*run, w, &results[w]);
      }
    });
  }
  for (auto& t : threads) t.join();
  Summary s;
  Clock::time_point last{};
  for (WorkerResult& r : results) {
    s.merged.all.Merge(r.all);
    s.merged.reads.Merge(r.reads);
    s.merged.writes.Merge(r.writes);
    s.merged.errors += r.errors;
    s.merged.timeouts += r.timeouts;
    s.merged.unsent += r.unsent;
    if (s.merged.first_error.empty()) s.merged.first_error = r.first_error;
    last = std::max(last, r.last_reply);
  }
  if (last > run->warmup_end) s.seconds = std::chrono::duration<double>(last - run->warmup_end).count();
  return s;
}

std::string JsonEscape(const std::string& in) {
  std::string out;
  for (unsigned char c : in) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      out += absl::StrFormat("\\u%04x", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

struct Pct {
  const char* name;
  double p;
};
constexpr Pct kPercentiles[] = {{"p50", 50}, {"p90", 90}, {"p99", 99}, {"p999", 99.9}};

double Us(int64_t ns) { return ns / 1000.0; }

std::string HistJson(const LatencyHistogram& h) {
  std::string s = absl::StrFormat("{\"count\":%d,\"min\":%.1f,\"mean\":%.1f", h.count(),
                                  Us(h.min()), h.Mean() / 1000.0);
  for (const Pct& p : kPercentiles) s += absl::StrFormat(",\"%s\":%.1f", p.name, Us(h.Percentile(p.p)));
  s += absl::StrFormat(",\"max\":%.1f}", Us(h.max()));
  return s;
}

std::string Mode(const Options& o) { return o.rate > 0 ? "open" : "closed"; }

void PrintJson(const Options& o, const Summary& s) {
  const WorkerResult& r = s.merged;
  absl::PrintF(
      "{\"label\":\"%s\",\"backend\":\"%s\",\"mode\":\"%s\",\"endpoints\":\"%s\","
      "\"clients\":%d,\"conns\":%d,\"pipeline\":%d,\"threads\":%d,\"rate\":%.1f,"
      "\"read_ratio\":%.3f,\"serializable\":%s,\"keys\":%d,\"key_bytes\":%d,"
      "\"value_bytes\":%d,\"duration_s\":%.3f,\"warmup_s\":%.3f,\"measured_s\":%.3f,"
      "\"ok\":%d,\"errors\":%d,\"timeouts\":%d,\"unsent\":%d,\"throughput\":%.1f,"
      "\"first_error\":\"%s\",\"latency_us\":{\"all\":%s,\"read\":%s,\"write\":%s}}\n",
      JsonEscape(o.label), o.backend, Mode(o), JsonEscape(absl::StrJoin(o.endpoints, ",")),
      o.clients, o.conns, o.pipeline, o.threads, o.rate, o.read_ratio,
      o.serializable ? "true" : "false", o.keys, o.key_bytes, o.value_bytes, o.duration_s,
      o.warmup_s, s.seconds, s.ok(), r.errors, r.timeouts, r.unsent, s.throughput(),
      JsonEscape(r.first_error), HistJson(r.all), HistJson(r.reads), HistJson(r.writes));
}

void PrintTsv(const Options& o, const Summary& s, bool header) {
  const WorkerResult& r = s.merged;
  if (header) {
    absl::PrintF("label\tbackend\tmode\tclients\tconns\tpipeline\trate\tread_ratio\tvalue_bytes\t"
                "measured_s\tok\terrors\ttimeouts\tunsent\tthroughput\tmin_us\tmean_us\t"
                "p50_us\tp90_us\tp99_us\tp999_us\tmax_us\n");
  }
  absl::PrintF("%s\t%s\t%s\t%d\t%d\t%d\t%.1f\t%.3f\t%d\t%.3f\t%d\t%d\t%d\t%d\t%.1f\t%.1f\t%.1f",
              o.label.empty() ? "-" : o.label, o.backend, Mode(o), o.clients, o.conns,
              o.pipeline, o.rate, o.read_ratio, o.value_bytes, s.seconds, s.ok(), r.errors,
              r.timeouts, r.unsent, s.throughput(), Us(r.all.min()), r.all.Mean() / 1000.0);
  for (const Pct& p : kPercentiles) absl::PrintF("\t%.1f", Us(r.all.Percentile(p.p)));
  absl::PrintF("\t%.1f\n", Us(r.all.max()));
}

void PrintText(const Options& o, const Summary& s) {
  const WorkerResult& r = s.merged;
  absl::PrintF("kvbench %s%s: %s loop%s, %d clients over %d connection(s) to %s, %d thread(s)\n",
              o.backend, o.label.empty() ? "" : " [" + o.label + "]", Mode(o),
              o.rate > 0 ? absl::StrFormat(" at %.0f ops/s", o.rate) : "", o.clients, o.conns,
              absl::StrJoin(o.endpoints, ","), o.threads);
  absl::PrintF("  workload: %.0f%% reads%s, %d keys, %d-byte keys, %d-byte values%s\n",
              o.read_ratio * 100,
              o.read_ratio > 0 ? (o.serializable ? " (serializable)" : " (linearizable)") : "",
              o.keys, std::max<int>(o.key_bytes, 0), o.value_bytes,
              o.pipeline > 1 ? absl::StrFormat(", pipeline %d", o.pipeline) : "");
  absl::PrintF("  measured %.2f s: %d ok, %d errors, %d timeouts -> %.1f ops/s\n", s.seconds,
              s.ok(), r.errors, r.timeouts, s.throughput());
  if (r.unsent > 0) {
    absl::PrintF("  open loop fell behind: %d ops were due but never sent (the target cannot "
                "sustain %.0f ops/s with %d clients)\n", r.unsent, o.rate, o.clients);
  }
  if (!r.first_error.empty()) absl::PrintF("  first error: %s\n", r.first_error);
  absl::PrintF("  latency (ms)%9s%9s%9s%9s%9s%9s%9s%10s\n", "count", "min", "mean", "p50",
              "p90", "p99", "p99.9", "max");
  auto row = [&](const char* name, const LatencyHistogram& h) {
    if (h.count() == 0) return;
    absl::PrintF("  %-12s%9d%9.3f%9.3f", name, h.count(), h.min() / 1e6, h.Mean() / 1e6);
    for (const Pct& p : kPercentiles) absl::PrintF("%9.3f", h.Percentile(p.p) / 1e6);
    absl::PrintF("%10.3f\n", h.max() / 1e6);
  };
  row("all", r.all);
  if (r.reads.count() > 0 && r.writes.count() > 0) {
    row(o.backend == "etcd" ? "put" : "set", r.writes);
    row(o.backend == "etcd" ? "range" : "get", r.reads);
  }
}

constexpr char kDescription[] = R"(kvbench: load generator for raftkv, etcd and Redis.

Backends:
  etcd   etcd's v3 gRPC API: KV.Put (writes) and KV.Range of one key (reads, linearizable
         unless --serializable), so raftkv's etcd API and etcd itself get the same load.
  resp   RESP over raw TCP: SET key value and GET key (raftkv's client port, redis-server).

Loops:
  closed (default)  --clients requesters, each with one op in flight (RESP: --pipeline ops,
                    sent in one write, all awaited), over --conns shared connections. Latency
                    is from send to reply.
  open (--rate R)   ops are due at fixed times, R per second in total, whatever the server
                    does; at most --clients (x --pipeline) in flight. Latency is measured from
                    the time an op was due, not when it could be sent, so a stalled server
                    shows in the tail (no coordinated omission). Ops still unsent when the
                    run ends are reported as "unsent".

The run stops issuing after --duration seconds or --ops ops, whichever comes first, waits at
most --timeout-ms for replies in flight, and prints ops/s and latency percentiles from a
log-linear histogram (0.2% resolution at any magnitude; p99.9 and max are kept).

Exit status: 0 ok; 1 the target could not be reached, no op succeeded, or errors and time-outs
exceeded --max-error-ratio of the ops; 2 bad flags.

Examples:
  kvbench --backend etcd --endpoints 127.0.0.1:6000,127.0.0.1:6001,127.0.0.1:6002 \
          --clients 1000 --conns 100 --duration 10 --value-bytes 256
  kvbench --backend etcd --endpoints 127.0.0.1:2379 --read-ratio 1 --clients 100 --conns 100
  kvbench --backend resp --endpoints 127.0.0.1:5000 --clients 50 --conns 50 --pipeline 16
  kvbench --backend resp --endpoints 127.0.0.1:5000 --rate 5000 --clients 64 --format json)";

}  // namespace
}  // namespace raftkv::bench

int main(int argc, char** argv) {
  using namespace raftkv::bench;
  Options o;
  o.threads = static_cast<int>(std::min(4u, std::max(1u, std::thread::hardware_concurrency())));
  std::string endpoints = absl::StrJoin(o.endpoints, ",");
  CLI::App app(kDescription, "kvbench");
  app.get_formatter()->column_width(34);
  app.add_option("--backend", o.backend, "etcd or resp")
      ->check(CLI::IsMember({"etcd", "resp"}))->capture_default_str();
  app.add_option("--endpoints", endpoints, "comma-separated host:port; connection i goes to "
                 "endpoint i % count")->capture_default_str();
  app.add_option("--clients", o.clients, "concurrent clients (closed loop); most ops in "
                 "flight (open loop, times --pipeline for RESP)")
      ->check(CLI::Range(1, 100000))->capture_default_str();
  app.add_option("--conns", o.conns, "connections the clients share (at most --clients)")
      ->check(CLI::Range(1, 100000))->capture_default_str();
  app.add_option("--pipeline", o.pipeline, "RESP: commands per client per round trip")
      ->check(CLI::Range(1, 10000))->capture_default_str();
  app.add_option("--threads", o.threads, "worker threads (default: cores, at most 4)")
      ->check(CLI::Range(1, 256))->capture_default_str();
  app.add_option("--rate", o.rate, "open loop: ops per second in total; 0 = closed loop")
      ->check(CLI::Range(0.0, 1e8))->capture_default_str();
  app.add_option("--duration", o.duration_s, "seconds to issue ops for (warm-up included)")
      ->check(CLI::Range(0.01, 86400.0))->capture_default_str();
  app.add_option("--warmup", o.warmup_s, "seconds at the start whose ops are not recorded")
      ->check(CLI::Range(0.0, 86400.0))->capture_default_str();
  app.add_option("--ops", o.max_ops, "stop after this many ops (0 = only --duration bounds)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 50))->capture_default_str();
  app.add_option("--keys", o.keys, "key space: keys drawn uniformly from this many")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40))->capture_default_str();
  app.add_option("--key-bytes", o.key_bytes, "key length: --key-prefix, then the zero-padded "
                 "key number (longer if the number needs it)")
      ->check(CLI::Range(1, 1 << 20))->capture_default_str();
  app.add_option("--key-prefix", o.key_prefix, "prefix of every key")->capture_default_str();
  app.add_option("--value-bytes", o.value_bytes, "value length of writes")
      ->check(CLI::Range(0, 64 << 20))->capture_default_str();
  app.add_option("--read-ratio", o.read_ratio, "fraction of ops that are reads (0..1)")
      ->check(CLI::Range(0.0, 1.0))->capture_default_str();
  app.add_flag("--serializable", o.serializable,
               "etcd: serializable (local) Range instead of linearizable");
  app.add_flag("--sequential-keys", o.sequential_keys, "op i uses key i % --keys instead of a "
               "random one (with --ops N --keys N: write every key once)");
  app.add_flag("--preload", o.preload, "first write every key once (not measured), so reads "
               "find values");
  app.add_option("--timeout-ms", o.timeout_ms, "deadline of one op; also the most the end of "
                 "the run waits for replies")->check(CLI::Range(1, 3600000))->capture_default_str();
  app.add_option("--connect-timeout-ms", o.connect_timeout_ms, "how long to wait for each "
                 "connection before giving up")->check(CLI::Range(1, 600000))->capture_default_str();
  app.add_option("--max-error-ratio", o.max_error_ratio, "exit 1 when (errors + timeouts) / "
                 "ops exceeds this")->check(CLI::Range(0.0, 1.0))->capture_default_str();
  app.add_option("--seed", o.seed, "seed of the key and read/write draws")->capture_default_str();
  app.add_option("--format", o.format, "text, json (one object) or tsv (header and one row)")
      ->check(CLI::IsMember({"text", "json", "tsv"}))->capture_default_str();
  app.add_option("--label", o.label, "a name copied into the output");
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);  // prints what was wrong
    return 2;
  }

  o.endpoints = absl::StrSplit(endpoints, ',', absl::SkipEmpty());
  if (o.endpoints.empty()) {
    std::fprintf(stderr, "kvbench: --endpoints is empty\n");
    return 2;
  }
  if (o.warmup_s >= o.duration_s) {
    std::fprintf(stderr, "kvbench: --warmup (%.3f s) must be shorter than --duration (%.3f s)\n",
                 o.warmup_s, o.duration_s);
    return 2;
  }
  o.conns = std::min(o.conns, o.clients);
  o.threads = std::min({o.threads, o.conns, o.backend == "etcd" ? o.clients : o.conns});

  std::string error;
  RunState run;
  run.opts = o;
  const bool reachable = o.backend == "etcd" ? ConnectEtcd(&run, &error) : CheckResp(o, &error);
  if (!reachable) {
    std::fprintf(stderr, "kvbench: %s\n", error.c_str());
    return 1;
  }
  if (o.preload) {
    RunState pre;
    pre.opts = o;
    pre.opts.rate = 0;
    pre.opts.read_ratio = 0;
    pre.opts.max_ops = o.keys;
    pre.opts.sequential_keys = true;
    pre.opts.warmup_s = 0;
    pre.opts.duration_s = 3600;
    pre.channels = run.channels;
    Summary p = RunPhase(pre.opts, &pre);
    std::fprintf(stderr, "kvbench: preloaded %lld keys in %.1f s (%lld errors, %lld timeouts)\n",
                 static_cast<long long>(p.ok()), p.seconds,
                 static_cast<long long>(p.merged.errors), static_cast<long long>(p.merged.timeouts));
  }
  Summary s = RunPhase(o, &run);
  if (o.format == "json") {
    PrintJson(o, s);
  } else if (o.format == "tsv") {
    PrintTsv(o, s, true);
  } else {
    PrintText(o, s);
  }
  std::fflush(stdout);
  const int64_t failed = s.merged.errors + s.merged.timeouts;
  const int64_t attempted = s.ok() + failed;
  if (s.ok() == 0) {
    std::fprintf(stderr, "kvbench: no op succeeded%s%s\n",
                 s.merged.first_error.empty() ? "" : ": ", s.merged.first_error.c_str());
    return 1;
  }
  if (failed > o.max_error_ratio * attempted) {
    std::fprintf(stderr, "kvbench: %lld of %lld ops failed (--max-error-ratio %.3f)\n",
                 static_cast<long long>(failed), static_cast<long long>(attempted),
                 o.max_error_ratio);
    return 1;
  }
  return 0;
}
