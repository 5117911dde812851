#include "kv/record_coding.h"

#include <string>

#include "gtest/gtest.h"

namespace raftkv::kv::coding {
namespace {

using namespace std::string_literals;

TEST(RecordCodingTest, KeyRecordGoldenBytes) {
  KeyRecord r{.create_revision = 2, .mod_revision = 0x0102030405060708, .version = 3,
              .value = "v\0w"s};
  const std::string expected =
      "\x01"                                 // record format
      "\x02\x00\x00\x00\x00\x00\x00\x00"s    // create_revision
      "\x08\x07\x06\x05\x04\x03\x02\x01"s    // mod_revision, little-endian
      "\x03\x00\x00\x00\x00\x00\x00\x00"s    // version
      "v\0w"s;                               // value, raw
  EXPECT_EQ(EncodeKeyRecord(r), expected);
  absl::StatusOr<KeyRecord> back = DecodeKeyRecord(expected);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, r);
}

TEST(RecordCodingTest, KeyRecordEmptyValueAndKeysOnly) {
  KeyRecord r{.create_revision = 5, .mod_revision = 9, .version = 4, .value = ""};
  std::string enc = EncodeKeyRecord(r);
  EXPECT_EQ(enc.size(), kKeyRecordHeaderBytes);
  ASSERT_TRUE(DecodeKeyRecord(enc).ok());
  EXPECT_EQ(*DecodeKeyRecord(enc), r);

  r.value = "payload";
  absl::StatusOr<KeyRecord> keys_only = DecodeKeyRecord(EncodeKeyRecord(r), /*keys_only=*/true);
  ASSERT_TRUE(keys_only.ok());
  EXPECT_EQ(keys_only->value, "");
  EXPECT_EQ(keys_only->mod_revision, 9);
}

TEST(RecordCodingTest, KeyRecordRejectsShortUnknownFormatAndImpossibleRevisions) {
  std::string enc =
      EncodeKeyRecord({.create_revision = 2, .mod_revision = 3, .version = 1, .value = ""});
  for (size_t n = 0; n < kKeyRecordHeaderBytes; ++n) {
    EXPECT_EQ(DecodeKeyRecord(enc.substr(0, n)).status().code(), absl::StatusCode::kDataLoss)
        << "length " << n;
  }
  std::string bad_format = enc;
  bad_format[0] = 2;
  EXPECT_EQ(DecodeKeyRecord(bad_format).status().code(), absl::StatusCode::kDataLoss);
  // mod_revision < create_revision.
  EXPECT_EQ(DecodeKeyRecord(EncodeKeyRecord({.create_revision = 4, .mod_revision = 3,
                                             .version = 1, .value = ""}))
                .status()
                .code(),
            absl::StatusCode::kDataLoss);
  // version 0.
  EXPECT_EQ(DecodeKeyRecord(EncodeKeyRecord({.create_revision = 2, .mod_revision = 2,
                                             .version = 0, .value = ""}))
                .status()
                .code(),
            absl::StatusCode::kDataLoss);
}

TEST(RecordCodingTest, AppliedRecordGoldenBytesAndExactSize) {
  AppliedRecord r{.applied_index = 7, .applied_term = 2, .revision = 5};
  const std::string expected = "\x01"
                               "\x07\x00\x00\x00\x00\x00\x00\x00"s
                               "\x02\x00\x00\x00\x00\x00\x00\x00"s
                               "\x05\x00\x00\x00\x00\x00\x00\x00"s;
  EXPECT_EQ(EncodeAppliedRecord(r), expected);
  ASSERT_TRUE(DecodeAppliedRecord(expected).ok());
  EXPECT_EQ(*DecodeAppliedRecord(expected), r);
  EXPECT_EQ(DecodeAppliedRecord(expected + "x").status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(DecodeAppliedRecord(expected.substr(0, 24)).status().code(),
            absl::StatusCode::kDataLoss);
  // Revision 0 is impossible: a store starts at 1.
  EXPECT_EQ(DecodeAppliedRecord(EncodeAppliedRecord({1, 1, 0})).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST(RecordCodingTest, SessionRecordAndKey) {
  ApplyResult first;
  first.revision = 7;
  first.ops.push_back(OpResult{.deleted = 1, .prev = KeyValue{"k", "v\0x"s, 2, 5, 3}});
  first.ops.push_back(OpResult{.deleted = 0});
  const std::string result = EncodeApplyResult(first);
  absl::StatusOr<ApplyResult> back = DecodeApplyResult(result);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->revision, 7);
  ASSERT_EQ(back->ops.size(), 2u);
  EXPECT_EQ(back->ops[0].prev->value, "v\0x"s);
  EXPECT_EQ(back->ops[0].prev->version, 3);
  EXPECT_FALSE(back->ops[1].prev.has_value());
  EXPECT_EQ(DecodeApplyResult(result.substr(0, result.size() - 1)).status().code(),
            absl::StatusCode::kDataLoss);

  SessionRecord r{.last_sequence = 42, .last_index = 1000, .first_kept = 40,
                  .results = {{40, result}, {42, EncodeApplyResult(ApplyResult{})}}};
  std::string enc = EncodeSessionRecord(r);
  EXPECT_EQ(enc[0], static_cast<char>(kSessionRecordFormat));
  ASSERT_TRUE(DecodeSessionRecord(enc).ok());
  EXPECT_EQ(*DecodeSessionRecord(enc), r);
  EXPECT_EQ(DecodeSessionRecord(enc.substr(1)).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(DecodeSessionRecord(enc.substr(0, enc.size() - 1)).status().code(),
            absl::StatusCode::kDataLoss);
  // A result outside the window does not decode.
  SessionRecord bad = r;
  bad.first_kept = 41;
  EXPECT_EQ(DecodeSessionRecord(EncodeSessionRecord(bad)).status().code(),
            absl::StatusCode::kDataLoss);

  std::string expiry = SessionExpiryKey(0x0102, 0xfedcba9876543210ULL);
  EXPECT_EQ(expiry, "x\0\0\0\0\0\0\x01\x02\xfe\xdc\xba\x98\x76\x54\x32\x10"s);
  EXPECT_LT(SessionExpiryKey(1, ~0ull), SessionExpiryKey(2, 0));  // ordered by index first
  uint64_t index = 0, client = 0;
  ASSERT_TRUE(ParseSessionExpiryKey(expiry, &index, &client));
  EXPECT_EQ(index, 0x0102u);
  EXPECT_EQ(client, 0xfedcba9876543210ULL);

  std::string key = SessionKey(0xfedcba9876543210ULL);
  EXPECT_EQ(key, "s\x10\x32\x54\x76\x98\xba\xdc\xfe"s);
  uint64_t id = 0;
  ASSERT_TRUE(ParseSessionKey(key, &id));
  EXPECT_EQ(id, 0xfedcba9876543210ULL);
  EXPECT_FALSE(ParseSessionKey(kMetaAppliedKey, &id));
  EXPECT_FALSE(ParseSessionKey(kMetaFormatKey, &id));
}

TEST(RecordCodingTest, StoreFormat) {
  EXPECT_EQ(EncodeStoreFormat(1), "\x01\x00\x00\x00"s);
  ASSERT_TRUE(DecodeStoreFormat(EncodeStoreFormat(kStoreFormat)).ok());
  EXPECT_EQ(*DecodeStoreFormat(EncodeStoreFormat(kStoreFormat)), kStoreFormat);
  EXPECT_EQ(DecodeStoreFormat("abc").status().code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace raftkv::kv::coding
