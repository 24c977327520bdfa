// Money and id primitives: the fee's rounding at exactly half a fen, its mirror for negative
// nets, overflow at the int64 edges, and the id rule of SPEC section 3.
#include "engine/base/money.h"

#include <cstdint>
#include <limits>
#include <string>

#include "gtest/gtest.h"

namespace yrd {
namespace {

constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
constexpr int64_t kMin = std::numeric_limits<int64_t>::min();

TEST(FeeFen, ExactlyHalfAFenRoundsUp) {
  // 50 fen at 100 bp is 0.5 fen.
  EXPECT_EQ(FeeFen(50, 100), 1);
  // 150 fen at 100 bp is 1.5 fen.
  EXPECT_EQ(FeeFen(150, 100), 2);
}

TEST(FeeFen, JustBelowHalfAFenRoundsDown) {
  // 49 fen at 100 bp is 0.49 fen.
  EXPECT_EQ(FeeFen(49, 100), 0);
  // 1249 fen at 100 bp is 12.49 fen; 1250 is 12.5.
  EXPECT_EQ(FeeFen(1249, 100), 12);
  EXPECT_EQ(FeeFen(1250, 100), 13);
}

TEST(FeeFen, NegativeNetIsTheExactMirror) {
  EXPECT_EQ(FeeFen(-50, 100), -1);
  EXPECT_EQ(FeeFen(-49, 100), 0);
  EXPECT_EQ(FeeFen(-1250, 100), -13);
  for (const int64_t net : {1, 49, 50, 51, 99, 150, 12345, 999'999'999}) {
    for (const int32_t bps : {0, 1, 5, 100, 9999, 10000}) {
      EXPECT_EQ(*FeeFen(-net, bps), -*FeeFen(net, bps)) << "net " << net << " bps " << bps;
    }
  }
}

TEST(FeeFen, ZeroNetOrZeroRateChargesNothing) {
  EXPECT_EQ(FeeFen(0, 100), 0);
  EXPECT_EQ(FeeFen(123'456, 0), 0);
}

TEST(FeeFen, FullRateChargesTheWholeNet) {
  EXPECT_EQ(FeeFen(777, 10000), 777);
  // The fee never exceeds the net, so even the largest net has a representable fee.
  EXPECT_EQ(FeeFen(kMax, 10000), kMax);
  EXPECT_EQ(FeeFen(-kMax, 10000), -kMax);
}

TEST(FeeFen, NetWhoseMagnitudeOverflowsIsRefused) {
  // -INT64_MIN is not an int64: there is no exact mirror to return.
  EXPECT_EQ(FeeFen(kMin, 100), std::nullopt);
  EXPECT_EQ(FeeFen(kMin, 0), std::nullopt);
}

TEST(FeeFen, RateOutsideZeroToTenThousandIsRefused) {
  EXPECT_EQ(FeeFen(100, -1), std::nullopt);
  EXPECT_EQ(FeeFen(100, 10001), std::nullopt);
  EXPECT_EQ(FeeFen(100, 10000), 100);
}

TEST(CheckedAddFen, SumReachingInt64MaxIsExact) {
  EXPECT_EQ(CheckedAddFen(kMax - 1, 1), kMax);
  EXPECT_EQ(CheckedAddFen(kMax, 0), kMax);
}

TEST(CheckedAddFen, OneFenPastInt64MaxIsRefused) {
  EXPECT_EQ(CheckedAddFen(kMax, 1), std::nullopt);
  EXPECT_EQ(CheckedAddFen(kMax, kMax), std::nullopt);
  EXPECT_EQ(CheckedAddFen(kMin, -1), std::nullopt);
}

TEST(CheckedAddFen, OppositeSignsNeverOverflow) {
  EXPECT_EQ(CheckedAddFen(kMax, kMin), -1);
  EXPECT_EQ(CheckedAddFen(kMin, kMax), -1);
}

TEST(CheckedSubFen, OnePastTheEdgesIsRefused) {
  EXPECT_EQ(CheckedSubFen(kMin, 1), std::nullopt);
  EXPECT_EQ(CheckedSubFen(0, kMin), std::nullopt);
  EXPECT_EQ(CheckedSubFen(kMin + 1, 1), kMin);
  EXPECT_EQ(CheckedSubFen(-1, kMax), kMin);
}

TEST(IsValidId, SixtyFourCharactersIsTheLongestAccepted) {
  EXPECT_TRUE(IsValidId(std::string(64, 'a')));
  EXPECT_FALSE(IsValidId(std::string(65, 'a')));
}

TEST(IsValidId, EmptyIsRefused) { EXPECT_FALSE(IsValidId("")); }

TEST(IsValidId, OneCharacterIsAccepted) { EXPECT_TRUE(IsValidId("x")); }

TEST(IsValidId, EveryAllowedCharacterClassIsAccepted) {
  EXPECT_TRUE(IsValidId("AZaz09_-"));
  EXPECT_TRUE(IsValidId("-"));
  EXPECT_TRUE(IsValidId("_"));
}

TEST(IsValidId, FieldSeparatorIsRefused) {
  // '|' separates fields in the clearing files and the netting line keys.
  EXPECT_FALSE(IsValidId("A|B"));
  EXPECT_FALSE(IsValidId("|"));
}

TEST(IsValidId, CharactersOutsideTheRuleAreRefused) {
  for (const char* id : {"a b", "a.b", "a/b", "a\nb", "a:b", "\xE5\x8C\x97"}) {
    EXPECT_FALSE(IsValidId(id)) << id;
  }
  EXPECT_FALSE(IsValidId(std::string_view("a\0b", 3)));
}

}  // namespace
}  // namespace yrd
