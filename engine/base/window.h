// Clearing windows: a window is a business day in China Standard Time (UTC+8). With the cutoff
// at local time C (config `cutoff_local`, default 00:00), the window dated D holds the events of
// local time [D 00:00 + C - 24h, D 00:00 + C) when C > 0, and [D 00:00, D+1 00:00) when C = 0,
// so that with a 23:00 cutoff the evening of D-1 already belongs to D, as banks count it.
// A window closes by the clock at its cutoff instant plus the grace period (`grace_ms`).
// Pure arithmetic on epoch milliseconds; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace yrd {

inline constexpr int64_t kDayMs = 86'400'000;
inline constexpr int64_t kChinaStandardTimeOffsetMs = 8 * 3'600'000;

// Days since 1970-01-01 of a business date; formatted as YYYYMMDD at the boundary.
using WindowDay = int32_t;

struct WindowCalendar {
  int64_t cutoff_ms_of_day = 0;   // local time of the cutoff, [0, 86400000)
  int64_t grace_ms = 900'000;     // 15 minutes

  // The business day of an instant.
  [[nodiscard]] WindowDay DayOf(int64_t epoch_ms) const;
  // The instant (UTC epoch ms) at which window `day` stops taking new events by its date.
  [[nodiscard]] int64_t CutoffInstantMs(WindowDay day) const;
  // Cutoff plus grace: when the daemon's clock closes the window.
  [[nodiscard]] int64_t CloseInstantMs(WindowDay day) const { return CutoffInstantMs(day) + grace_ms; }
};

// "20261127" <-> day number. ParseWindowDate rejects anything but a valid 8-digit date.
[[nodiscard]] std::string FormatWindowDay(WindowDay day);
[[nodiscard]] std::optional<WindowDay> ParseWindowDate(std::string_view yyyymmdd);
// Days since epoch of a civil date, and back.
[[nodiscard]] int32_t DaysFromCivil(int32_t year, uint32_t month, uint32_t day);
// "2026-11-27T08:15:00.000+08:00" style local CST time, for files and reports.
[[nodiscard]] std::string FormatChinaTime(int64_t epoch_ms);
// Parses "HH:MM" into milliseconds of the day.
[[nodiscard]] std::optional<int64_t> ParseLocalTimeOfDay(std::string_view hh_mm);

}  // namespace yrd
