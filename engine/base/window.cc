#include "engine/base/window.h"

#include <cstdio>

namespace yrd {
namespace {

int64_t FloorDiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

// Howard Hinnant's civil-from-days algorithm (public domain description).
void CivilFromDays(int64_t z, int32_t& year, uint32_t& month, uint32_t& day) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const uint32_t doe = static_cast<uint32_t>(z - era * 146097);
  const uint32_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t y = static_cast<int64_t>(yoe) + era * 400;
  const uint32_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const uint32_t mp = (5 * doy + 2) / 153;
  day = doy - (153 * mp + 2) / 5 + 1;
  month = mp < 10 ? mp + 3 : mp - 9;
  year = static_cast<int32_t>(y + (month <= 2));
}

}  // namespace

int32_t DaysFromCivil(int32_t year, uint32_t month, uint32_t day) {
  year -= month <= 2;
  const int32_t era = (year >= 0 ? year : year - 399) / 400;
  const uint32_t yoe = static_cast<uint32_t>(year - era * 400);
  const uint32_t doy = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1;
  const uint32_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int32_t>(doe) - 719468;
}

WindowDay WindowCalendar::DayOf(int64_t epoch_ms) const {
  // Shift local time so that the cutoff lands on midnight of the following day.
  const int64_t shift_ms = (kDayMs - cutoff_ms_of_day) % kDayMs;
  return static_cast<WindowDay>(FloorDiv(epoch_ms + kChinaStandardTimeOffsetMs + shift_ms, kDayMs));
}

int64_t WindowCalendar::CutoffInstantMs(WindowDay day) const {
  const int64_t shift_ms = (kDayMs - cutoff_ms_of_day) % kDayMs;
  return (static_cast<int64_t>(day) + 1) * kDayMs - shift_ms - kChinaStandardTimeOffsetMs;
}

std::string FormatWindowDay(WindowDay day) {
  int32_t year = 0;
  uint32_t month = 0, dom = 0;
  CivilFromDays(day, year, month, dom);
  char buffer[16];
  std::snprintf(buffer, sizeof buffer, "%04d%02u%02u", year, month, dom);
  return buffer;
}

std::optional<WindowDay> ParseWindowDate(std::string_view text) {
  if (text.size() != 8) return std::nullopt;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
  }
  const int32_t year = std::stoi(std::string(text.substr(0, 4)));
  const uint32_t month = static_cast<uint32_t>(std::stoi(std::string(text.substr(4, 2))));
  const uint32_t dom = static_cast<uint32_t>(std::stoi(std::string(text.substr(6, 2))));
  if (month < 1 || month > 12 || dom < 1 || dom > 31) return std::nullopt;
  const WindowDay day = DaysFromCivil(year, month, dom);
  if (FormatWindowDay(day) != text) return std::nullopt;  // e.g. 20261131
  return day;
}

std::string FormatChinaTime(int64_t epoch_ms) {
  const int64_t local_ms = epoch_ms + kChinaStandardTimeOffsetMs;
  const int64_t days = FloorDiv(local_ms, kDayMs);
  const int64_t ms_of_day = local_ms - days * kDayMs;
  int32_t year = 0;
  uint32_t month = 0, dom = 0;
  CivilFromDays(days, year, month, dom);
  char buffer[48];
  std::snprintf(buffer, sizeof buffer, "%04d-%02u-%02uT%02d:%02d:%02d.%03d+08:00", year, month, dom,
                static_cast<int>(ms_of_day / 3'600'000), static_cast<int>(ms_of_day / 60'000 % 60),
                static_cast<int>(ms_of_day / 1000 % 60), static_cast<int>(ms_of_day % 1000));
  return buffer;
}

std::optional<int64_t> ParseLocalTimeOfDay(std::string_view text) {
  if (text.size() != 5 || text[2] != ':') return std::nullopt;
  auto digit = [&](size_t i) { return text[i] >= '0' && text[i] <= '9'; };
  if (!digit(0) || !digit(1) || !digit(3) || !digit(4)) return std::nullopt;
  const int hours = (text[0] - '0') * 10 + (text[1] - '0');
  const int minutes = (text[3] - '0') * 10 + (text[4] - '0');
  if (hours > 23 || minutes > 59) return std::nullopt;
  return (hours * 60 + minutes) * 60'000LL;
}

}  // namespace yrd
