// RecordCache: a bounded LRU map of stored records (kv/record_cache.h).
#include "kv/record_cache.h"

#include <string>

#include "gtest/gtest.h"

namespace raftkv::kv {
namespace {

std::optional<std::string> Cached(RecordCache& c, std::string_view key) {
  const std::optional<std::string>* v = c.Find(key);
  return v == nullptr ? std::optional<std::string>("<not cached>") : *v;
}

TEST(RecordCacheTest, KeepsValuesAndAbsenceAndReplacesThem) {
  RecordCache c(1 << 20);
  EXPECT_EQ(c.Find("a"), nullptr);
  c.Put("a", "1");
  c.Put("b", std::nullopt);
  EXPECT_EQ(Cached(c, "a"), "1");
  EXPECT_EQ(Cached(c, "b"), std::nullopt);
  c.Put("a", "22");
  c.Put("b", "3");
  EXPECT_EQ(Cached(c, "a"), "22");
  EXPECT_EQ(Cached(c, "b"), "3");
  EXPECT_EQ(c.size(), 2u);
  EXPECT_EQ(c.bytes(), 2 * RecordCache::kEntryOverhead + 2 + 2 + 1);
  c.Clear();
  EXPECT_EQ(c.Find("a"), nullptr);
  EXPECT_EQ(c.bytes(), 0u);
}

TEST(RecordCacheTest, TheLeastRecentlyUsedGoFirstOnceOverCapacity) {
  const size_t entry = RecordCache::kEntryOverhead + 1 + 3;  // key "a".."d", value "xyz"
  RecordCache c(3 * entry);
  c.Put("a", "xyz");
  c.Put("b", "xyz");
  c.Put("c", "xyz");
  ASSERT_NE(c.Find("a"), nullptr);  // a is now the most recent; b the least
  c.Put("d", "xyz");
  EXPECT_EQ(c.Find("b"), nullptr);
  EXPECT_NE(c.Find("a"), nullptr);
  EXPECT_NE(c.Find("c"), nullptr);
  EXPECT_NE(c.Find("d"), nullptr);
  EXPECT_LE(c.bytes(), c.capacity());
  // A value that grows pushes out others to fit.
  c.Put("d", std::string(entry, 'v'));
  EXPECT_LE(c.bytes(), c.capacity());
  EXPECT_EQ(Cached(c, "d"), std::string(entry, 'v'));
  // One larger than the whole cache is not kept, and pushes nothing else out.
  const size_t kept = c.size();
  c.Put("e", std::string(4 * entry, 'v'));
  EXPECT_EQ(c.Find("e"), nullptr);
  EXPECT_EQ(c.size(), kept);
  EXPECT_NE(c.Find("d"), nullptr);
  // Nor when it replaces a cached value: the old one goes (it is not what the store holds).
  c.Put("d", std::string(4 * entry, 'v'));
  EXPECT_EQ(c.Find("d"), nullptr);
  EXPECT_EQ(c.size(), kept - 1);
  EXPECT_LE(c.bytes(), c.capacity());
}

TEST(RecordCacheTest, CapacityZeroKeepsNothing) {
  RecordCache c(0);
  c.Put("a", "1");
  EXPECT_EQ(c.Find("a"), nullptr);
  EXPECT_EQ(c.size(), 0u);
}

}  // namespace
}  // namespace raftkv::kv
