// kvload: N client threads, each with its own gRPC channel, issuing sequential etcd v3 Put
// (or Range) requests against a list of endpoints for a fixed number of operations; prints
// throughput and latency percentiles as one line of key=value pairs.
//
// Usage: kvload --endpoints=127.0.0.1:6000,... --clients=50 --ops=20000 [--op=put|get]
//               [--value-bytes=100] [--keys=10000]
// Client i talks to endpoint i % len(endpoints).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "etcd/rpc.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace {

struct Flags {
  std::vector<std::string> endpoints = {"127.0.0.1:6000"};
  int clients = 1;
  int64_t ops = 10000;
  std::string op = "put";
  int value_bytes = 100;
  int64_t keys = 10000;
};

bool Parse(int argc, char** argv, Flags* f) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto eq = a.find('=');
    if (a.rfind("--", 0) != 0 || eq == std::string::npos) return false;
    std::string name = a.substr(2, eq - 2), value = a.substr(eq + 1);
    bool ok = true;
    if (name == "endpoints") {
      f->endpoints = absl::StrSplit(value, ',', absl::SkipEmpty());
    } else if (name == "clients") {
      ok = absl::SimpleAtoi(value, &f->clients) && f->clients > 0;
    } else if (name == "ops") {
      ok = absl::SimpleAtoi(value, &f->ops) && f->ops > 0;
    } else if (name == "op") {
      f->op = value;
      ok = value == "put" || value == "get";
    } else if (name == "value-bytes") {
      ok = absl::SimpleAtoi(value, &f->value_bytes) && f->value_bytes >= 0;
    } else if (name == "keys") {
      ok = absl::SimpleAtoi(value, &f->keys) && f->keys > 0;
    } else {
      ok = false;
    }
    if (!ok) {
      std::fprintf(stderr, "kvload: bad flag %s\n", a.c_str());
      return false;
    }
  }
  return !f->endpoints.empty();
}

}  // namespace

int main(int argc, char** argv) {
  Flags f;
  if (!Parse(argc, argv, &f)) {
    std::fprintf(stderr,
                 "usage: kvload --endpoints=host:port,... --clients=N --ops=N [--op=put|get] "
                 "[--value-bytes=N] [--keys=N]\n");
    return 2;
  }
  const std::string value(f.value_bytes, 'x');
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> errors{0};
  std::vector<std::vector<double>> latencies_us(f.clients);
  std::vector<std::thread> threads;
  auto start = std::chrono::steady_clock::now();
  for (int c = 0; c < f.clients; ++c) {
    threads.emplace_back([&, c] {
      grpc::ChannelArguments args;
      args.SetInt(GRPC_ARG_ENABLE_HTTP_PROXY, 0);
      args.SetInt("grpc.use_local_subchannel_pool", 1);  // one connection per client
      auto channel = grpc::CreateCustomChannel(f.endpoints[c % f.endpoints.size()],
                                               grpc::InsecureChannelCredentials(), args);
      auto stub = etcdserverpb::KV::NewStub(channel);
      std::vector<double>& lat = latencies_us[c];
      for (;;) {
        int64_t i = next.fetch_add(1);
        if (i >= f.ops) break;
        std::string key = "bench-" + std::to_string(i % f.keys);
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
        auto t0 = std::chrono::steady_clock::now();
        grpc::Status s;
        if (f.op == "put") {
          etcdserverpb::PutRequest req;
          etcdserverpb::PutResponse resp;
          req.set_key(key);
          req.set_value(value);
          s = stub->Put(&ctx, req, &resp);
        } else {
          etcdserverpb::RangeRequest req;
          etcdserverpb::RangeResponse resp;
          req.set_key(key);
          s = stub->Range(&ctx, req, &resp);
        }
        auto t1 = std::chrono::steady_clock::now();
        if (!s.ok()) {
          if (errors.fetch_add(1) < 5) {
            std::fprintf(stderr, "kvload: %s\n", s.error_message().c_str());
          }
          continue;
        }
        lat.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
      }
    });
  }
  for (auto& t : threads) t.join();
  double elapsed_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::vector<double> all;
  for (auto& v : latencies_us) all.insert(all.end(), v.begin(), v.end());
  std::sort(all.begin(), all.end());
  auto pct = [&](double p) {
    return all.empty() ? 0.0 : all[std::min(all.size() - 1, static_cast<size_t>(p * all.size()))];
  };
  std::printf("op=%s clients=%d ops=%zu errors=%lld seconds=%.2f ops_per_sec=%.0f p50_us=%.0f "
              "p99_us=%.0f max_us=%.0f\n",
              f.op.c_str(), f.clients, all.size(), static_cast<long long>(errors.load()),
              elapsed_s, all.size() / elapsed_s, pct(0.50), pct(0.99),
              all.empty() ? 0.0 : all.back());
  return errors.load() == 0 ? 0 : 1;
}
