#include "base/coding.h"

#include <cstdint>
#include <string>

#include "gtest/gtest.h"

namespace raftkv::base {
namespace {

TEST(CodingTest, Fixed32IsLittleEndian) {
  std::string s;
  PutFixed32(&s, 0x04030201u);
  ASSERT_EQ(4u, s.size());
  EXPECT_EQ(std::string("\x01\x02\x03\x04", 4), s);
  EXPECT_EQ(0x04030201u, DecodeFixed32(s.data()));
}

TEST(CodingTest, Fixed64IsLittleEndian) {
  std::string s;
  PutFixed64(&s, 0x0807060504030201ull);
  ASSERT_EQ(8u, s.size());
  EXPECT_EQ(std::string("\x01\x02\x03\x04\x05\x06\x07\x08", 8), s);
  EXPECT_EQ(0x0807060504030201ull, DecodeFixed64(s.data()));
}

TEST(CodingTest, RoundTripExtremes) {
  for (uint64_t v : {0ull, 1ull, 0xffull, 0x100ull, 0xffffffffull, 0x100000000ull, ~0ull}) {
    char buf[8];
    EncodeFixed64(buf, v);
    EXPECT_EQ(v, DecodeFixed64(buf));
    EncodeFixed32(buf, static_cast<uint32_t>(v));
    EXPECT_EQ(static_cast<uint32_t>(v), DecodeFixed32(buf));
  }
}

}  // namespace
}  // namespace raftkv::base
