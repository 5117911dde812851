#include "server/replication/reader_pool.h"

#include <algorithm>
#include <utility>

namespace raftkv::server {

ReaderPool::ReaderPool(size_t threads) {
  threads = std::max<size_t>(1, threads);
  threads_.reserve(threads);
  for (size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { Run(); });
}

ReaderPool::~ReaderPool() { Stop(); }

void ReaderPool::Submit(Task task) {
  std::vector<Task> one;
  one.push_back(std::move(task));
  SubmitMany(std::move(one));
}

void ReaderPool::SubmitMany(std::vector<Task> tasks) {
  if (tasks.empty()) return;
  {
    absl::MutexLock lock(&mu_);
    if (!stopping_) {
      for (Task& t : tasks) queue_.push_back(std::move(t));
      return;
    }
  }
  for (Task& t : tasks) std::move(t)();
}

void ReaderPool::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  for (std::thread& t : threads_) t.join();
}

void ReaderPool::Run() {
  for (;;) {
    Task task;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || !queue_.empty();
      };
      mu_.Await(absl::Condition(&ready));
      if (queue_.empty()) return;  // stopping, and everything queued has run
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    std::move(task)();
  }
}

}  // namespace raftkv::server
