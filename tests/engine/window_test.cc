// Clearing windows: business days in China Standard Time, the cutoff instant, a cutoff other
// than midnight, the grace period, and the YYYYMMDD boundary format. The instants below were
// computed independently of the engine (2026-11-27T00:00:00+08:00 is 1795708800000 ms).
#include "engine/base/window.h"

#include <cstdint>

#include "gtest/gtest.h"

namespace yrd {
namespace {

constexpr int64_t kHourMs = 3'600'000;
constexpr int64_t kMinuteMs = 60'000;
// 2026-11-27 is day 20784 since 1970-01-01.
constexpr WindowDay kNov27 = 20784;
// 2026-11-27T00:00:00.000+08:00.
constexpr int64_t kNov27MidnightMs = 1'795'708'800'000;
// 2026-11-26T23:00:00.000+08:00 and 2026-11-27T23:00:00.000+08:00.
constexpr int64_t kNov26At23Ms = 1'795'705'200'000;
constexpr int64_t kNov27At23Ms = 1'795'791'600'000;

TEST(WindowCalendar, EventAtExactlyMidnightBelongsToTheNewDay) {
  const WindowCalendar calendar;
  EXPECT_EQ(calendar.DayOf(kNov27MidnightMs), kNov27);
}

TEST(WindowCalendar, EventOneMillisecondBeforeMidnightBelongsToTheOldDay) {
  const WindowCalendar calendar;
  EXPECT_EQ(calendar.DayOf(kNov27MidnightMs - 1), kNov27 - 1);
}

TEST(WindowCalendar, DayFollowsChinaTimeNotUtc) {
  const WindowCalendar calendar;
  // Local midnight is 16:00 UTC the day before: the UTC date is still the 26th.
  EXPECT_EQ(kNov27MidnightMs % (24 * kHourMs), 16 * kHourMs);
  EXPECT_EQ(calendar.DayOf(kNov27MidnightMs), kNov27);
  // 23:59 local is 15:59 UTC of the same date; 00:00 the next day moves on.
  EXPECT_EQ(calendar.DayOf(kNov27MidnightMs + 23 * kHourMs + 59 * kMinuteMs), kNov27);
  EXPECT_EQ(calendar.DayOf(kNov27MidnightMs + 24 * kHourMs), kNov27 + 1);
}

TEST(WindowCalendar, MidnightCutoffInstantIsTheNextLocalMidnight) {
  const WindowCalendar calendar;
  EXPECT_EQ(calendar.CutoffInstantMs(kNov27), kNov27MidnightMs + 24 * kHourMs);
  EXPECT_EQ(calendar.DayOf(calendar.CutoffInstantMs(kNov27)), kNov27 + 1);
  EXPECT_EQ(calendar.DayOf(calendar.CutoffInstantMs(kNov27) - 1), kNov27);
}

TEST(WindowCalendar, ElevenPmCutoffPutsTheEveningBeforeIntoTheWindow) {
  WindowCalendar calendar;
  calendar.cutoff_ms_of_day = 23 * kHourMs;
  // The window dated 27 November holds [26 Nov 23:00, 27 Nov 23:00) local time.
  EXPECT_EQ(calendar.DayOf(kNov26At23Ms), kNov27);
  EXPECT_EQ(calendar.DayOf(kNov26At23Ms - 1), kNov27 - 1);
  EXPECT_EQ(calendar.DayOf(kNov27MidnightMs), kNov27);
  EXPECT_EQ(calendar.DayOf(kNov27At23Ms - 1), kNov27);
  EXPECT_EQ(calendar.DayOf(kNov27At23Ms), kNov27 + 1);
  EXPECT_EQ(calendar.CutoffInstantMs(kNov27), kNov27At23Ms);
}

TEST(WindowCalendar, CloseInstantIsCutoffPlusGrace) {
  WindowCalendar calendar;
  EXPECT_EQ(calendar.grace_ms, 15 * kMinuteMs);
  EXPECT_EQ(calendar.CloseInstantMs(kNov27), kNov27MidnightMs + 24 * kHourMs + 15 * kMinuteMs);
  calendar.cutoff_ms_of_day = 23 * kHourMs;
  calendar.grace_ms = 0;
  EXPECT_EQ(calendar.CloseInstantMs(kNov27), kNov27At23Ms);
  calendar.grace_ms = 2 * kHourMs;
  EXPECT_EQ(calendar.CloseInstantMs(kNov27), kNov27At23Ms + 2 * kHourMs);
}

TEST(WindowCalendar, InstantsBeforeTheEpochFloorToTheEarlierDay) {
  const WindowCalendar calendar;
  // 1970-01-01T00:00:00+08:00 is -8 h; one millisecond before it is 1969-12-31.
  EXPECT_EQ(calendar.DayOf(-8 * kHourMs), 0);
  EXPECT_EQ(calendar.DayOf(-8 * kHourMs - 1), -1);
  EXPECT_EQ(FormatWindowDay(-1), "19691231");
}

TEST(WindowDate, FormatsAndParsesAKnownDay) {
  EXPECT_EQ(FormatWindowDay(kNov27), "20261127");
  EXPECT_EQ(ParseWindowDate("20261127"), kNov27);
  EXPECT_EQ(ParseWindowDate("19700101"), 0);
  EXPECT_EQ(DaysFromCivil(2000, 1, 1), 10957);
}

TEST(WindowDate, DayThatDoesNotExistIsRefused) {
  EXPECT_EQ(ParseWindowDate("20261131"), std::nullopt);
  EXPECT_EQ(ParseWindowDate("20270229"), std::nullopt);
  EXPECT_EQ(ParseWindowDate("21000229"), std::nullopt);  // not a leap year
  EXPECT_EQ(ParseWindowDate("20261300"), std::nullopt);
  EXPECT_EQ(ParseWindowDate("20261200"), std::nullopt);
  EXPECT_EQ(ParseWindowDate("20260132"), std::nullopt);
}

TEST(WindowDate, LeapDayIsAccepted) {
  ASSERT_TRUE(ParseWindowDate("20280229").has_value());
  EXPECT_EQ(FormatWindowDay(*ParseWindowDate("20280229")), "20280229");
  ASSERT_TRUE(ParseWindowDate("20000229").has_value());
}

TEST(WindowDate, AnythingButEightDigitsIsRefused) {
  for (const char* text : {"", "2026112", "202611270", "2026-11-27", "2026112a", " 0261127", "+0261127"}) {
    EXPECT_EQ(ParseWindowDate(text), std::nullopt) << text;
  }
}

TEST(ChinaTime, FormatsLocalTimeWithOffset) {
  EXPECT_EQ(FormatChinaTime(kNov27MidnightMs), "2026-11-27T00:00:00.000+08:00");
  EXPECT_EQ(FormatChinaTime(kNov27MidnightMs - 1), "2026-11-26T23:59:59.999+08:00");
}

TEST(LocalTimeOfDay, ParsesHoursAndMinutes) {
  EXPECT_EQ(ParseLocalTimeOfDay("00:00"), 0);
  EXPECT_EQ(ParseLocalTimeOfDay("23:00"), 23 * kHourMs);
  EXPECT_EQ(ParseLocalTimeOfDay("23:59"), 23 * kHourMs + 59 * kMinuteMs);
}

TEST(LocalTimeOfDay, OutOfRangeOrBadlyShapedIsRefused) {
  for (const char* text : {"24:00", "23:60", "9:00", "09:0", "0900", "ab:cd", ""}) {
    EXPECT_EQ(ParseLocalTimeOfDay(text), std::nullopt) << text;
  }
}

}  // namespace
}  // namespace yrd
