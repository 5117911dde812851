// ReaderPool: a fixed number of threads that run what the raft loop hands off and must not run
// itself: the callbacks of read barriers (which read the state machine: a GET, an MGET of
// 10,000 keys, a Range of 100,000, a count of the whole keyspace) and other slow look-ups.
// The loop only queues (cheap, never blocks); the pool's threads do the work, so no read
// delays a heartbeat (docs/architecture.md, "The raft loop").
//
// Bounds: --reader-threads threads. The queue itself is not capped here: what enters it is
// already bounded by its sources (pending requests per connection and connections per node
// on the client port, gRPC threads for the etcd API), each waiting for its answer.
#pragma once

#include <cstddef>
#include <deque>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"

namespace raftkv::server {

class ReaderPool {
 public:
  using Task = absl::AnyInvocable<void() &&>;

  // Starts `threads` threads (at least one).
  explicit ReaderPool(size_t threads);
  ~ReaderPool();  // Stop()s.

  ReaderPool(const ReaderPool&) = delete;
  ReaderPool& operator=(const ReaderPool&) = delete;

  // Runs `task` on a pool thread (tasks start in the order submitted). After Stop() began,
  // runs it on the calling thread instead, so every task runs exactly once. Any thread.
  void Submit(Task task);
  // Submit() of each task in `tasks`, in order, under one lock: a loop iteration that
  // releases many reads wakes the pool once, not once per read.
  void SubmitMany(std::vector<Task> tasks);
  // Runs every task already queued, then joins the threads. Idempotent. Not from a pool thread.
  void Stop();

  size_t threads() const { return threads_.size(); }

 private:
  void Run();

  absl::Mutex mu_;
  std::deque<Task> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace raftkv::server
