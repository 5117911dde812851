// The pure part of etcd Range (frontend/etcd/etcd_range.h): range rules, filters, sorts and
// the limit of a full scan.
#include "server/frontend/etcd/etcd_range.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace raftkv::server::etcd {
namespace {

namespace pb = etcdserverpb;

kv::KeyValue Kv(std::string key, std::string value, int64_t create, int64_t mod,
                int64_t version) {
  return kv::KeyValue{std::move(key), std::move(value), create, mod, version};
}

std::vector<std::string> Keys(const std::vector<kv::KeyValue>& kvs) {
  std::vector<std::string> out;
  for (const kv::KeyValue& kv : kvs) out.push_back(kv.key);
  return out;
}

// In key order, as the state machine returns them.
std::vector<kv::KeyValue> Sample() {
  return {Kv("a", "3", 1, 7, 2), Kv("b", "1", 2, 2, 1), Kv("c", "2", 3, 9, 5),
          Kv("d", "1", 4, 4, 1)};
}

TEST(EtcdRangeTest, RangeEndRules) {
  EXPECT_TRUE(InRange("b", "", "b"));
  EXPECT_FALSE(InRange("b", "", "ba"));
  EXPECT_TRUE(InRange("b", std::string(1, '\0'), "zzz"));
  EXPECT_FALSE(InRange("b", std::string(1, '\0'), "a"));
  EXPECT_TRUE(InRange("b", "d", "b"));
  EXPECT_TRUE(InRange("b", "d", "cz"));
  EXPECT_FALSE(InRange("b", "d", "d"));  // range_end is exclusive
}

TEST(EtcdRangeTest, OnlyKeyAscendingWithoutFiltersAvoidsTheFullScan) {
  pb::RangeRequest r;
  EXPECT_FALSE(NeedsFullScan(r));
  r.set_sort_order(pb::RangeRequest::ASCEND);
  EXPECT_FALSE(NeedsFullScan(r));
  r.set_sort_order(pb::RangeRequest::DESCEND);
  EXPECT_TRUE(NeedsFullScan(r));
  pb::RangeRequest by_mod;
  by_mod.set_sort_target(pb::RangeRequest::MOD);
  EXPECT_TRUE(NeedsFullScan(by_mod));
  pb::RangeRequest filtered;
  filtered.set_min_create_revision(2);
  EXPECT_TRUE(NeedsFullScan(filtered));
}

TEST(EtcdRangeTest, RevisionFiltersAreInclusiveBounds) {
  pb::RangeRequest r;
  r.set_min_mod_revision(4);
  r.set_max_mod_revision(7);
  std::vector<kv::KeyValue> kvs = Sample();
  EXPECT_FALSE(FilterSortLimit(r, &kvs));
  EXPECT_EQ(Keys(kvs), (std::vector<std::string>{"a", "d"}));

  pb::RangeRequest c;
  c.set_min_create_revision(2);
  c.set_max_create_revision(3);
  kvs = Sample();
  FilterSortLimit(c, &kvs);
  EXPECT_EQ(Keys(kvs), (std::vector<std::string>{"b", "c"}));
}

TEST(EtcdRangeTest, SortByEachTargetKeepsKeyOrderAmongEquals) {
  pb::RangeRequest r;
  r.set_sort_target(pb::RangeRequest::VALUE);  // order NONE: ascending
  std::vector<kv::KeyValue> kvs = Sample();
  SortKvs(r, &kvs);
  EXPECT_EQ(Keys(kvs), (std::vector<std::string>{"b", "d", "c", "a"}));

  r.set_sort_order(pb::RangeRequest::DESCEND);
  kvs = Sample();
  SortKvs(r, &kvs);
  EXPECT_EQ(Keys(kvs), (std::vector<std::string>{"a", "c", "b", "d"}));

  r.set_sort_target(pb::RangeRequest::VERSION);
  r.set_sort_order(pb::RangeRequest::ASCEND);
  kvs = Sample();
  SortKvs(r, &kvs);
  EXPECT_EQ(Keys(kvs), (std::vector<std::string>{"b", "d", "a", "c"}));

  r.set_sort_target(pb::RangeRequest::CREATE);
  r.set_sort_order(pb::RangeRequest::DESCEND);
  kvs = Sample();
  SortKvs(r, &kvs);
  EXPECT_EQ(Keys(kvs), (std::vector<std::string>{"d", "c", "b", "a"}));

  r.set_sort_target(pb::RangeRequest::MOD);
  r.set_sort_order(pb::RangeRequest::ASCEND);
  kvs = Sample();
  SortKvs(r, &kvs);
  EXPECT_EQ(Keys(kvs), (std::vector<std::string>{"b", "d", "a", "c"}));

  r.set_sort_target(pb::RangeRequest::KEY);
  r.set_sort_order(pb::RangeRequest::DESCEND);
  kvs = Sample();
  SortKvs(r, &kvs);
  EXPECT_EQ(Keys(kvs), (std::vector<std::string>{"d", "c", "b", "a"}));
}

TEST(EtcdRangeTest, LimitAppliesAfterFilterAndSortAndReportsMore) {
  pb::RangeRequest r;
  r.set_sort_target(pb::RangeRequest::MOD);
  r.set_sort_order(pb::RangeRequest::DESCEND);
  r.set_min_mod_revision(3);
  r.set_limit(2);
  std::vector<kv::KeyValue> kvs = Sample();
  EXPECT_TRUE(FilterSortLimit(r, &kvs));
  EXPECT_EQ(Keys(kvs), (std::vector<std::string>{"c", "a"}));

  r.set_limit(3);  // exactly what passes: nothing cut
  kvs = Sample();
  EXPECT_FALSE(FilterSortLimit(r, &kvs));
  EXPECT_EQ(Keys(kvs), (std::vector<std::string>{"c", "a", "d"}));
}

TEST(EtcdRangeTest, KvsAreCutAtTheByteBoundWithMore) {
  std::vector<kv::KeyValue> kvs;
  for (int i = 0; i < 10; ++i) {
    kv::KeyValue kv;
    kv.key = "k" + std::to_string(i);
    kv.value = std::string(100, 'v');
    kvs.push_back(kv);
  }
  pb::RangeResponse all;
  EXPECT_FALSE(AddKvsWithinBytes(kvs, 1 << 20, &all));
  EXPECT_EQ(all.kvs_size(), 10);
  pb::RangeResponse cut;
  EXPECT_TRUE(AddKvsWithinBytes(kvs, 350, &cut));  // about 110 bytes each
  ASSERT_EQ(cut.kvs_size(), 3);
  EXPECT_EQ(cut.kvs(2).key(), "k2");
  EXPECT_LE(static_cast<int64_t>(cut.ByteSizeLong()), 350);
  pb::RangeResponse one;  // a bound below one key-value still carries one
  EXPECT_TRUE(AddKvsWithinBytes(kvs, 10, &one));
  EXPECT_EQ(one.kvs_size(), 1);
}

}  // namespace
}  // namespace raftkv::server::etcd
