// LatencyHistogram: a log-linear histogram of non-negative integer values (kvbench records
// nanoseconds) that keeps the tail, in the manner of HdrHistogram.
//
// Layout: values below 2^kSubBucketBits are counted exactly (one bucket per value). Above
// that, every power-of-two range [2^k, 2^(k+1)) is split into 2^(kSubBucketBits-1) buckets of
// equal width 2^(k-kSubBucketBits+1), so a bucket's width is at most 1/2^(kSubBucketBits-1)
// of the values in it (0.2% with 10 bits), at any magnitude: a 1 s outlier is kept as
// precisely, relatively, as a 100 us median. Values at or above kMaxTrackable are counted in
// the last bucket; the exact minimum and maximum are kept beside the buckets.
//
// Percentiles use the nearest-rank definition: the value at rank ceil(p/100 * count) of the
// sorted values. The histogram reports the highest value its bucket could hold, clamped to
// the recorded [min, max], so a reported percentile is never below the true one and above it
// by at most RelativeError() of it (histogram_test.cc checks both).
//
// Not thread-safe: each worker records into its own histogram and the results are Merge()d.
#pragma once

#include <cstdint>
#include <vector>

namespace raftkv::bench {

class LatencyHistogram {
 public:
  static constexpr int kSubBucketBits = 10;
  static constexpr int64_t kMaxTrackable = int64_t{1} << 44;  // ns: about 4.9 hours

  LatencyHistogram();

  // Counts `value` once. Negative values count as 0.
  void Record(int64_t value);
  // Adds every count of `other` to this one.
  void Merge(const LatencyHistogram& other);

  int64_t count() const { return count_; }
  // 0 when empty.
  int64_t min() const { return count_ == 0 ? 0 : min_; }
  int64_t max() const { return max_; }
  double Mean() const;
  // The value at percentile p in [0, 100] (nearest rank); 0 when empty. p <= 0 gives min(),
  // p >= 100 gives max().
  int64_t Percentile(double p) const;

  // The largest relative overstatement of a Percentile() (bucket width / bucket start).
  static constexpr double RelativeError() { return 1.0 / (1 << (kSubBucketBits - 1)); }

  // Exposed for the tests: the bucket a value falls in and the value range of a bucket.
  static int BucketIndex(int64_t value);
  static int64_t BucketLowest(int index);
  static int64_t BucketHighest(int index);
  static int BucketCount();

 private:
  std::vector<int64_t> counts_;
  int64_t count_ = 0;
  int64_t min_ = 0;
  int64_t max_ = 0;
  double sum_ = 0;  // for the mean; a double so that hours of nanoseconds cannot overflow
};

}  // namespace raftkv::bench
