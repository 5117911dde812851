#include "base/crc32c.h"

#include <cstring>
#include <random>
#include <string>

#include "gtest/gtest.h"

namespace raftkv::base::crc32c {
namespace {

// RFC 3720, appendix B.4 (iSCSI CRC32C test vectors).
TEST(Crc32cTest, Rfc3720Vectors) {
  char buf[32];
  std::memset(buf, 0, sizeof(buf));
  EXPECT_EQ(0x8a9136aau, Value(buf, sizeof(buf)));

  std::memset(buf, 0xff, sizeof(buf));
  EXPECT_EQ(0x62a8ab43u, Value(buf, sizeof(buf)));

  for (int i = 0; i < 32; ++i) buf[i] = static_cast<char>(i);
  EXPECT_EQ(0x46dd794eu, Value(buf, sizeof(buf)));

  for (int i = 0; i < 32; ++i) buf[i] = static_cast<char>(31 - i);
  EXPECT_EQ(0x113fdb5cu, Value(buf, sizeof(buf)));

  const unsigned char scsi_read[48] = {
      0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,
      0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18, 0x28, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
  EXPECT_EQ(0xd9963a56u, Value(reinterpret_cast<const char*>(scsi_read), sizeof(scsi_read)));
}

TEST(Crc32cTest, CheckValue) {
  // The standard "123456789" check value of CRC-32C.
  EXPECT_EQ(0xe3069283u, Value("123456789", 9));
  EXPECT_EQ(0u, Value("", 0));
}

TEST(Crc32cTest, ExtendEqualsWhole) {
  const std::string s = "hello, write-ahead log";
  for (size_t cut = 0; cut <= s.size(); ++cut) {
    EXPECT_EQ(Value(s.data(), s.size()), Extend(Value(s.data(), cut), s.data() + cut, s.size() - cut));
  }
}

// The hardware path (when present) and the portable slicing-by-8 path agree on every length
// and alignment, including the tails shorter than 8 bytes.
TEST(Crc32cTest, PortableAndHardwareAgree) {
  std::mt19937 rng(42);
  std::string data(4096 + 16, '\0');
  for (char& c : data) c = static_cast<char>(rng());
  for (size_t offset = 0; offset < 8; ++offset) {
    for (size_t n : {0, 1, 3, 7, 8, 9, 15, 16, 17, 63, 64, 65, 1000, 4096}) {
      const uint32_t portable = ExtendPortable(0x12345678u, data.data() + offset, n);
      // The portable path also matches a bit-at-a-time reference.
      uint32_t ref = ~0x12345678u;
      for (size_t i = 0; i < n; ++i) {
        ref ^= static_cast<unsigned char>(data[offset + i]);
        for (int k = 0; k < 8; ++k) ref = (ref & 1) ? (ref >> 1) ^ 0x82F63B78u : ref >> 1;
      }
      EXPECT_EQ(~ref, portable) << "offset " << offset << " n " << n;
      if (HardwareAvailable()) {
        EXPECT_EQ(portable, ExtendHardware(0x12345678u, data.data() + offset, n))
            << "offset " << offset << " n " << n;
      }
    }
  }
  if (!HardwareAvailable()) GTEST_SKIP() << "no SSE4.2 on this CPU: only the portable path ran";
}

}  // namespace
}  // namespace raftkv::base::crc32c
