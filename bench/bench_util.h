// What the bench programs share: wall time since a start and the process's peak memory.
#pragma once

#include <sys/resource.h>

#include <chrono>

namespace raftkv::bench {

using Clock = std::chrono::steady_clock;

inline double Seconds(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Peak resident memory of this process so far, in MiB (ru_maxrss is in KiB on Linux).
inline long PeakRssMib() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024;
}

}  // namespace raftkv::bench
