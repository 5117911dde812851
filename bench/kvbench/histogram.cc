#include "kvbench/histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>

namespace raftkv::bench {
namespace {

constexpr int64_t kExact = int64_t{1} << LatencyHistogram::kSubBucketBits;  // exact below
constexpr int64_t kHalf = kExact / 2;  // buckets per power of two above kExact

}  // namespace

int LatencyHistogram::BucketIndex(int64_t value) {
  if (value < 0) value = 0;
  if (value >= kMaxTrackable) value = kMaxTrackable - 1;
  if (value < kExact) return static_cast<int>(value);
  // shift >= 1: how far the top kSubBucketBits bits of value sit above bit 0.
  const int shift = std::bit_width(static_cast<uint64_t>(value)) - kSubBucketBits;
  const int64_t sub = value >> shift;  // in [kHalf, kExact)
  return static_cast<int>(kExact + (shift - 1) * kHalf + (sub - kHalf));
}

int64_t LatencyHistogram::BucketLowest(int index) {
  if (index < kExact) return index;
  const int64_t rel = index - kExact;
  const int shift = static_cast<int>(rel / kHalf) + 1;
  const int64_t sub = kHalf + rel % kHalf;
  return sub << shift;
}

int64_t LatencyHistogram::BucketHighest(int index) {
  if (index < kExact) return index;
  const int shift = static_cast<int>((index - kExact) / kHalf) + 1;
  return BucketLowest(index) + (int64_t{1} << shift) - 1;
}

int LatencyHistogram::BucketCount() { return BucketIndex(kMaxTrackable - 1) + 1; }

LatencyHistogram::LatencyHistogram() : counts_(BucketCount(), 0) {}

void LatencyHistogram::Record(int64_t value) {
  if (value < 0) value = 0;
  ++counts_[BucketIndex(value)];
  if (count_ == 0 || value < min_) min_ = value;
  if (value > max_) max_ = value;
  ++count_;
  sum_ += static_cast<double>(value);
}

void LatencyHistogram::Merge(const LatencyHistogram& other) {
  if (other.count_ == 0) return;
  for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
  min_ = count_ == 0 ? other.min_ : std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
  count_ += other.count_;
  sum_ += other.sum_;
}

double LatencyHistogram::Mean() const { return count_ == 0 ? 0.0 : sum_ / count_; }

int64_t LatencyHistogram::Percentile(double p) const {
  if (count_ == 0) return 0;
  if (p <= 0) return min_;
  if (p >= 100) return max_;
  // Nearest rank, computed in long double so that p = 99.9 of 1000 is rank 999, not 1000.
  int64_t rank = static_cast<int64_t>(std::ceil(static_cast<long double>(p) / 100 * count_ - 1e-9));
  rank = std::clamp<int64_t>(rank, 1, count_);
  int64_t seen = 0;
  for (size_t i = 0; i < counts_.size(); ++i) {
    seen += counts_[i];
    if (seen >= rank) {
      return std::clamp(BucketHighest(static_cast<int>(i)), min_, max_);
    }
  }
  return max_;
}

}  // namespace raftkv::bench
