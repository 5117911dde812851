// LatencyHistogram: percentiles against the exact nearest-rank values of the same samples.
#include "kvbench/histogram.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace raftkv::bench {
namespace {

// The exact nearest-rank percentile of sorted samples.
int64_t Exact(const std::vector<int64_t>& sorted, double p) {
  if (p >= 100) return sorted.back();
  int64_t rank = static_cast<int64_t>(std::ceil(p / 100 * sorted.size() - 1e-9));
  rank = std::clamp<int64_t>(rank, 1, sorted.size());
  return sorted[rank - 1];
}

// Every reported percentile is at least the exact one and above it by at most the
// histogram's relative resolution.
void ExpectAccurate(std::vector<int64_t> samples, const char* what) {
  LatencyHistogram h;
  for (int64_t v : samples) h.Record(v);
  std::sort(samples.begin(), samples.end());
  ASSERT_EQ(h.count(), static_cast<int64_t>(samples.size()));
  EXPECT_EQ(h.min(), samples.front()) << what;
  EXPECT_EQ(h.max(), samples.back()) << what;
  for (double p : {1.0, 10.0, 25.0, 50.0, 75.0, 90.0, 99.0, 99.5, 99.9, 99.99, 99.999, 100.0}) {
    const int64_t exact = Exact(samples, p);
    const int64_t got = h.Percentile(p);
    EXPECT_GE(got, exact) << what << " p" << p;
    EXPECT_LE(got, exact + static_cast<int64_t>(exact * LatencyHistogram::RelativeError()))
        << what << " p" << p;
  }
}

TEST(LatencyHistogramTest, BucketsTileTheRangeWithBoundedRelativeWidth) {
  int64_t expect_lowest = 0;
  for (int i = 0; i < LatencyHistogram::BucketCount(); ++i) {
    const int64_t lo = LatencyHistogram::BucketLowest(i), hi = LatencyHistogram::BucketHighest(i);
    ASSERT_EQ(lo, expect_lowest) << "bucket " << i;  // no gap, no overlap
    ASSERT_LE(lo, hi);
    ASSERT_EQ(LatencyHistogram::BucketIndex(lo), i);
    ASSERT_EQ(LatencyHistogram::BucketIndex(hi), i);
    if (lo > 0) {
      ASSERT_LE(static_cast<double>(hi - lo) / lo, LatencyHistogram::RelativeError());
    }
    expect_lowest = hi + 1;
  }
  EXPECT_EQ(expect_lowest, LatencyHistogram::kMaxTrackable);
}

TEST(LatencyHistogramTest, SmallValuesAreExact) {
  LatencyHistogram h;
  for (int v = 1; v <= 1000; ++v) h.Record(v);
  EXPECT_EQ(h.Percentile(50), 500);
  EXPECT_EQ(h.Percentile(99), 990);
  EXPECT_EQ(h.Percentile(99.9), 999);
  EXPECT_EQ(h.Percentile(100), 1000);
  EXPECT_DOUBLE_EQ(h.Mean(), 500.5);
}

TEST(LatencyHistogramTest, UniformMicrosecondsToSeconds) {
  std::mt19937_64 rng(1);
  std::uniform_int_distribution<int64_t> d(1000, 1000000000);
  std::vector<int64_t> s(200000);
  for (auto& v : s) v = d(rng);
  ExpectAccurate(s, "uniform");
}

TEST(LatencyHistogramTest, LogNormalLatencies) {
  std::mt19937_64 rng(2);
  std::lognormal_distribution<double> d(std::log(500000.0), 1.0);  // median 0.5 ms
  std::vector<int64_t> s(200000);
  for (auto& v : s) v = static_cast<int64_t>(d(rng));
  ExpectAccurate(s, "lognormal");
}

// The point of the histogram: a rare stall shows in p99.9 and max instead of averaging out.
TEST(LatencyHistogramTest, KeepsARareTail) {
  std::vector<int64_t> s(100000, 1000000);       // 1 ms
  for (int i = 0; i < 200; ++i) s[i * 500] = 1500000000;  // 0.2% at 1.5 s
  ExpectAccurate(s, "tail");
  LatencyHistogram h;
  for (int64_t v : s) h.Record(v);
  EXPECT_LE(h.Percentile(99), 1000000 + 1000000 / 512);
  EXPECT_GE(h.Percentile(99.9), 1500000000);
  EXPECT_EQ(h.max(), 1500000000);
}

TEST(LatencyHistogramTest, MergeEqualsRecordingEverythingInOne) {
  std::mt19937_64 rng(3);
  std::exponential_distribution<double> d(1.0 / 2e6);
  LatencyHistogram a, b, all;
  for (int i = 0; i < 50000; ++i) {
    int64_t v = static_cast<int64_t>(d(rng));
    (i % 3 == 0 ? a : b).Record(v);
    all.Record(v);
  }
  a.Merge(b);
  EXPECT_EQ(a.count(), all.count());
  EXPECT_EQ(a.min(), all.min());
  EXPECT_EQ(a.max(), all.max());
  for (double p : {50.0, 90.0, 99.0, 99.9}) EXPECT_EQ(a.Percentile(p), all.Percentile(p));
}

TEST(LatencyHistogramTest, EmptyAndHugeValues) {
  LatencyHistogram h;
  EXPECT_EQ(h.Percentile(99), 0);
  EXPECT_EQ(h.max(), 0);
  h.Record(LatencyHistogram::kMaxTrackable * 4);  // clamped into the last bucket
  h.Record(-5);                                    // counted as 0
  EXPECT_EQ(h.count(), 2);
  EXPECT_EQ(h.min(), 0);
  EXPECT_EQ(h.max(), LatencyHistogram::kMaxTrackable * 4);
  EXPECT_EQ(h.Percentile(100), LatencyHistogram::kMaxTrackable * 4);
}

}  // namespace
}  // namespace raftkv::bench
