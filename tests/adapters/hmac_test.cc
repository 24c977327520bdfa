// HMAC-SHA256: the card tokens and the manifest signature. Checked against the RFC 4231 test
// vectors, and the key file rules (hex, at least 16 bytes, not world-readable).
#include "adapters/crypto/hmac.h"

#include <sys/stat.h>

#include <fstream>
#include <string>

#include "gtest/gtest.h"
#include "tests/support/events.h"

namespace yrd {
namespace {

std::string MacHex(std::string_view key, std::string_view message) {
  auto hmac = HmacSha256::Create(key);
  EXPECT_TRUE(hmac.ok());
  return hmac.ok() ? (*hmac)->MacHex(message) : std::string();
}

TEST(ConstantTimeEquals, MatchesOnlyTheSameBytes) {
  EXPECT_TRUE(ConstantTimeEquals("abcdef0123456789", "abcdef0123456789"));
  EXPECT_FALSE(ConstantTimeEquals("abcdef012345678", "abcdef0123456789"));    // prefix
  EXPECT_FALSE(ConstantTimeEquals("abcdef01234567890", "abcdef0123456789"));  // longer
  EXPECT_FALSE(ConstantTimeEquals("Abcdef0123456789", "abcdef0123456789"));
  EXPECT_FALSE(ConstantTimeEquals("", "abcdef0123456789"));
  EXPECT_FALSE(ConstantTimeEquals(std::string_view("abcdef0123456789\0", 17), "abcdef0123456789"));
  EXPECT_TRUE(ConstantTimeEquals("", ""));
}

TEST(HmacSha256, Rfc4231TestCase1) {
  EXPECT_EQ(MacHex(std::string(20, '\x0b'), "Hi There"),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
}

TEST(HmacSha256, Rfc4231TestCase2ShortKey) {
  EXPECT_EQ(MacHex("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(HmacSha256, Rfc4231TestCase6KeyLongerThanABlockIsHashedFirst) {
  EXPECT_EQ(MacHex(std::string(131, '\xaa'), "Test Using Larger Than Block-Size Key - Hash Key First"),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

TEST(HmacSha256, KeyOfExactlyOneBlockIsUsedAsIs) {
  // HMAC-SHA256 of an empty message under 64 bytes of 'k' (computed with Python's hmac module).
  EXPECT_EQ(MacHex(std::string(64, 'k'), ""), "83026a325aaee70e36cfe607536aa1054104ad1077c36134810d4ccded1ccd3b");
}

TEST(HmacSha256, EmptyKeyAndMessage) {
  EXPECT_EQ(MacHex("", ""), "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
}

TEST(HmacSha256, RepeatedMacsOfOneInstanceAgree) {
  auto hmac = HmacSha256::Create("Jefe");
  ASSERT_TRUE(hmac.ok());
  const std::string first = (*hmac)->MacHex("what do ya want for nothing?");
  (void)(*hmac)->MacHex("something else in between");
  EXPECT_EQ((*hmac)->MacHex("what do ya want for nothing?"), first);
}

TEST(HmacSha256, TokenIsTheMacOfTheCardNumber) {
  auto hmac = HmacSha256::Create("token-key-0123456789");
  ASSERT_TRUE(hmac.ok());
  CardToken token{};
  (*hmac)->Tokenize(test::kCardNumber19, token);
  std::array<uint8_t, 32> mac{};
  (*hmac)->Mac(test::kCardNumber19, mac);
  EXPECT_EQ(token, mac);
  auto other_key = HmacSha256::Create("token-key-0123456780");
  ASSERT_TRUE(other_key.ok());
  CardToken other{};
  (*other_key)->Tokenize(test::kCardNumber19, other);
  EXPECT_NE(other, token);
}

class KeyFileTest : public ::testing::Test {
 protected:
  std::string Write(const std::string& text, mode_t mode = 0600) {
    const std::string path = dir_.path() + "/key" + std::to_string(++count_);
    std::ofstream(path) << text;
    EXPECT_EQ(::chmod(path.c_str(), mode), 0);
    return path;
  }
  test::TempDir dir_;
  int count_ = 0;
};

TEST_F(KeyFileTest, SixteenBytesOfHexWithWhitespaceAreAccepted) {
  auto key = ReadKeyFile(Write("00112233 44556677\n8899aabb ccddeeff\n"));
  ASSERT_TRUE(key.ok()) << key.status();
  ASSERT_EQ(key->size(), 16u);
  EXPECT_EQ(static_cast<uint8_t>((*key)[0]), 0x00);
  EXPECT_EQ(static_cast<uint8_t>((*key)[9]), 0x99);
  EXPECT_EQ(static_cast<uint8_t>((*key)[15]), 0xff);
}

TEST_F(KeyFileTest, FifteenBytesAreRefused) {
  EXPECT_EQ(ReadKeyFile(Write(std::string(30, 'a'))).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(KeyFileTest, OddNumberOfHexDigitsIsRefused) {
  EXPECT_EQ(ReadKeyFile(Write(std::string(33, 'a'))).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(KeyFileTest, NonHexTextIsRefused) {
  EXPECT_EQ(ReadKeyFile(Write(std::string(31, 'a') + "g")).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(KeyFileTest, WorldReadableFileIsRefused) {
  EXPECT_EQ(ReadKeyFile(Write(std::string(32, 'a'), 0644)).status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(ReadKeyFile(Write(std::string(32, 'a'), 0640)).ok());
}

TEST_F(KeyFileTest, MissingFileIsNotFound) {
  EXPECT_EQ(ReadKeyFile(dir_.path() + "/absent").status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace yrd
