#include "raft/wal/wal_format.h"

#include <string>

#include "base/coding.h"
#include "base/crc32c.h"
#include "gtest/gtest.h"

namespace raftkv::raft::wal {
namespace {

TEST(WalFormatTest, SegmentFileNames) {
  EXPECT_EQ("00000000000000000042.wal", SegmentFileName(42));
  EXPECT_EQ(42u, ParseSegmentFileName("00000000000000000042.wal").value());
  EXPECT_EQ(18446744073709551615u, ParseSegmentFileName(SegmentFileName(~0ull)).value());
  EXPECT_FALSE(ParseSegmentFileName("00000000000000000042.wal.tmp").has_value());
  EXPECT_FALSE(ParseSegmentFileName("42.wal").has_value());
  EXPECT_FALSE(ParseSegmentFileName("0000000000000000004x.wal").has_value());
  EXPECT_FALSE(ParseSegmentFileName("LOCK").has_value());
}

TEST(WalFormatTest, HeaderLayout) {
  const std::string h = EncodeSegmentHeader(7);
  ASSERT_EQ(kSegmentHeaderBytes, h.size());
  EXPECT_EQ(std::string("RKVWAL\r\n"), h.substr(0, 8));
  EXPECT_EQ(kFormatVersion, base::DecodeFixed32(h.data() + 8));
  EXPECT_EQ(7u, base::DecodeFixed64(h.data() + 12));
  EXPECT_EQ(base::crc32c::Value(h.data(), 20), base::DecodeFixed32(h.data() + 20));
}

// The documented grammar, byte for byte: length u32 LE, type u8, crc32c(type ++ length ++
// payload) u32 LE, payload.
TEST(WalFormatTest, RecordLayout) {
  std::string r;
  AppendRecord(&r, RecordType::kHardState, "abc");
  ASSERT_EQ(kRecordHeaderBytes + 3, r.size());
  EXPECT_EQ(std::string("\x03\x00\x00\x00", 4), r.substr(0, 4));
  EXPECT_EQ(2, r[4]);
  const std::string covered = std::string("\x02\x03\x00\x00\x00", 5) + "abc";
  EXPECT_EQ(base::crc32c::Value(covered.data(), covered.size()), base::DecodeFixed32(r.data() + 5));
  EXPECT_EQ("abc", r.substr(9));
}

std::string ValidSegment(uint64_t seq, int body_records, bool sealed) {
  std::string s = EncodeSegmentHeader(seq);
  AppendRecord(&s, RecordType::kHardState, "");
  AppendRecord(&s, RecordType::kCompact, "");
  for (int i = 0; i < body_records; ++i) AppendRecord(&s, RecordType::kHardState, "xyz");
  if (sealed) AppendRecord(&s, RecordType::kSeal, "");
  return s;
}

TEST(WalFormatTest, ParsesValidSegment) {
  const std::string s = ValidSegment(3, 2, /*sealed=*/true);
  absl::StatusOr<ParsedSegment> p = ParseSegment(s, "f", /*is_newest=*/false);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(3u, p->seq);
  EXPECT_EQ(5u, p->records.size());
  EXPECT_TRUE(p->sealed);
  EXPECT_FALSE(p->torn);
  EXPECT_EQ(s.size(), p->valid_bytes);
  EXPECT_EQ("xyz", p->records[2].payload);
  EXPECT_EQ(kSegmentHeaderBytes + 2 * kRecordHeaderBytes, p->records[2].offset);
}

TEST(WalFormatTest, GarbageTailOfNewestSegmentIsTorn) {
  const std::string good = ValidSegment(1, 2, false);
  for (const std::string& tail : {std::string(1, '\0'), std::string(8, '\0'),
                                  std::string(100, '\0'), std::string("\xff\xff\xff\xff\x01")}) {
    absl::StatusOr<ParsedSegment> p = ParseSegment(good + tail, "f", /*is_newest=*/true);
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_TRUE(p->torn);
    EXPECT_EQ(good.size(), p->valid_bytes);
    EXPECT_EQ(4u, p->records.size());
  }
}

TEST(WalFormatTest, BadRecordFollowedByValidRecordIsDataLoss) {
  std::string s = ValidSegment(1, 3, false);
  const size_t third = kSegmentHeaderBytes + 2 * kRecordHeaderBytes + (kRecordHeaderBytes + 3);
  s[third + kRecordHeaderBytes] ^= 1;  // payload byte of body record 2 of 3
  absl::StatusOr<ParsedSegment> p = ParseSegment(s, "seg-name", /*is_newest=*/true);
  ASSERT_EQ(absl::StatusCode::kDataLoss, p.status().code());
  EXPECT_NE(std::string::npos, p.status().message().find("seg-name"));
  EXPECT_NE(std::string::npos, p.status().message().find("offset " + std::to_string(third)));
}

TEST(WalFormatTest, OlderSegmentMustBeCompleteAndSealed) {
  EXPECT_EQ(absl::StatusCode::kDataLoss,
            ParseSegment(ValidSegment(1, 2, false), "f", false).status().code());
  const std::string sealed = ValidSegment(1, 2, true);
  EXPECT_EQ(absl::StatusCode::kDataLoss,
            ParseSegment(sealed + std::string(3, '\0'), "f", false).status().code());
  EXPECT_EQ(absl::StatusCode::kDataLoss,
            ParseSegment(sealed.substr(0, sealed.size() - 1), "f", false).status().code());
}

TEST(WalFormatTest, NothingMayFollowTheSeal) {
  std::string s = ValidSegment(1, 1, true);
  AppendRecord(&s, RecordType::kHardState, "");
  EXPECT_EQ(absl::StatusCode::kDataLoss, ParseSegment(s, "f", true).status().code());
  EXPECT_EQ(absl::StatusCode::kDataLoss,
            ParseSegment(ValidSegment(1, 1, true) + std::string(1, '\0'), "f", true).status().code());
}

TEST(WalFormatTest, StartRecordsAreRequired) {
  std::string s = EncodeSegmentHeader(1);
  EXPECT_EQ(absl::StatusCode::kDataLoss, ParseSegment(s, "f", true).status().code());
  AppendRecord(&s, RecordType::kHardState, "");
  EXPECT_EQ(absl::StatusCode::kDataLoss, ParseSegment(s, "f", true).status().code());
  std::string wrong = EncodeSegmentHeader(1);
  AppendRecord(&wrong, RecordType::kCompact, "");
  AppendRecord(&wrong, RecordType::kHardState, "");
  EXPECT_EQ(absl::StatusCode::kDataLoss, ParseSegment(wrong, "f", true).status().code());
}

TEST(WalFormatTest, BadHeaderIsDataLoss) {
  const std::string good = ValidSegment(1, 0, false);
  for (size_t i = 0; i < kSegmentHeaderBytes; ++i) {
    std::string s = good;
    s[i] ^= 0x10;
    EXPECT_EQ(absl::StatusCode::kDataLoss, ParseSegment(s, "f", true).status().code()) << i;
  }
  EXPECT_EQ(absl::StatusCode::kDataLoss, ParseSegment("", "f", true).status().code());
}


// A record read back from its known location (WalStorage::Entries below the cache).
TEST(WalFormatTest, DecodeRecordNeedsExactlyOneValidRecord) {
  std::string r;
  AppendRecord(&r, RecordType::kEntry, "payload");
  absl::StatusOr<Record> ok = DecodeRecord(r, "x.wal", 100);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(RecordType::kEntry, ok->type);
  EXPECT_EQ("payload", ok->payload);
  EXPECT_EQ(100u, ok->offset);
  EXPECT_EQ(absl::StatusCode::kDataLoss, DecodeRecord(r + "z", "x.wal", 100).status().code());
  EXPECT_EQ(absl::StatusCode::kDataLoss,
            DecodeRecord(r.substr(0, r.size() - 1), "x.wal", 100).status().code());
  std::string flipped = r;
  flipped.back() ^= 0x01;
  const absl::Status bad = DecodeRecord(flipped, "x.wal", 100).status();
  EXPECT_EQ(absl::StatusCode::kDataLoss, bad.code());
  EXPECT_NE(std::string::npos, bad.message().find("x.wal at offset 100")) << bad;
}

}  // namespace
}  // namespace raftkv::raft::wal
