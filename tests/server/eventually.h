// Eventually: waits for a condition another thread brings about, polling until a deadline.
// For conditions with no event to wait on (a background thread's retry succeeding, a handler
// deleting its file after the stream ended); the deadline only bounds a failing test.
#pragma once

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace raftkv::server::testing {

template <typename F>
bool Eventually(F condition, absl::Duration timeout = absl::Seconds(10)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (condition()) return true;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return condition();
}

}  // namespace raftkv::server::testing
