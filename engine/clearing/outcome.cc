#include "engine/clearing/outcome.h"

#include <cstdlib>

#include "engine/base/money.h"
#include "engine/base/strings.h"

namespace yrd {
namespace {

struct PositionSection {
  const char* scheme;
  const char* kind;
  PositionMap WindowOutcome::*member;
};

constexpr PositionSection kSections[] = {
    {"bank_scheme", "province", &WindowOutcome::bank_scheme_province},
    {"bank_scheme", "bank", &WindowOutcome::bank_scheme_bank},
    {"bank_scheme", "merchant", &WindowOutcome::bank_scheme_merchant},
    {"fund_scheme", "province", &WindowOutcome::fund_scheme_province},
    {"fund_scheme", "fund", &WindowOutcome::fund_scheme_fund},
    {"fund_scheme", "institution", &WindowOutcome::fund_scheme_institution},
};

void DropZeros(PositionMap& map) {
  std::erase_if(map, [](const auto& entry) { return entry.second == 0; });
}

}  // namespace

void WindowOutcome::DropZeroPositions() {
  for (const PositionSection& section : kSections) DropZeros(this->*section.member);
}

bool AddPosition(PositionMap& map, const std::string& id, int64_t delta_fen) {
  int64_t& position_fen = map[id];
  const std::optional<int64_t> sum = CheckedAddFen(position_fen, delta_fen);
  if (!sum) return false;
  position_fen = *sum;
  return true;
}

nlohmann::json OutcomeToJson(const Outcome& outcome) {
  nlohmann::json windows = nlohmann::json::object();
  for (const auto& [day, window] : outcome.windows) {
    nlohmann::json exceptions = nlohmann::json::object();
    for (size_t i = 0; i < kReasonCount; ++i) {
      if (window.exception_counts[i] != 0) exceptions[std::string(kReasonNames[i])] = window.exception_counts[i];
    }
    nlohmann::json w = {
        {"counts",
         {{"applied", window.applied_count},
          {"exact_duplicates", window.exact_duplicate_count},
          {"late", window.late_count},
          {"exceptions", exceptions}}},
    };
    for (const PositionSection& section : kSections) {
      nlohmann::json positions = nlohmann::json::object();
      for (const auto& [id, fen] : window.*section.member) {
        if (fen != 0) positions[id] = fen;
      }
      w[section.scheme][section.kind] = positions;
    }
    windows[FormatWindowDay(day)] = std::move(w);
  }
  return {{"windows", windows}};
}

absl::StatusOr<Outcome> OutcomeFromJson(const nlohmann::json& json) {
  Outcome outcome;
  try {
    for (const auto& [date, w] : json.at("windows").items()) {
      const std::optional<WindowDay> day = ParseWindowDate(date);
      if (!day) return absl::InvalidArgumentError(Cat("bad window date '", date, "'"));
      WindowOutcome window;
      const nlohmann::json& counts = w.at("counts");
      window.applied_count = counts.at("applied").get<int64_t>();
      window.exact_duplicate_count = counts.at("exact_duplicates").get<int64_t>();
      window.late_count = counts.at("late").get<int64_t>();
      for (const auto& [name, count] : counts.at("exceptions").items()) {
        const std::optional<Reason> reason = ReasonFromName(name);
        if (!reason) return absl::InvalidArgumentError(Cat("unknown exception reason '", name, "'"));
        window.exception_counts[static_cast<size_t>(*reason)] = count.get<int64_t>();
      }
      for (const PositionSection& section : kSections) {
        if (!w.contains(section.scheme) || !w.at(section.scheme).contains(section.kind)) continue;
        for (const auto& [id, fen] : w.at(section.scheme).at(section.kind).items()) {
          (window.*section.member)[id] = fen.get<int64_t>();
        }
      }
      window.DropZeroPositions();
      outcome.windows[*day] = std::move(window);
    }
  } catch (const nlohmann::json::exception& error) {
    return absl::InvalidArgumentError(Cat("outcome JSON: ", error.what()));
  }
  return outcome;
}

std::vector<std::string> DiffOutcomes(const Outcome& expected, const Outcome& actual, size_t lines_max) {
  std::vector<std::string> lines;
  auto note = [&](std::string line) {
    if (lines.size() < lines_max) lines.push_back(std::move(line));
  };
  std::map<WindowDay, std::pair<const WindowOutcome*, const WindowOutcome*>> all;
  for (const auto& [day, w] : expected.windows) all[day].first = &w;
  for (const auto& [day, w] : actual.windows) all[day].second = &w;
  const WindowOutcome empty;
  for (const auto& [day, pair] : all) {
    const std::string date = FormatWindowDay(day);
    const WindowOutcome& e = pair.first ? *pair.first : empty;
    const WindowOutcome& a = pair.second ? *pair.second : empty;
    auto count = [&](const char* name, int64_t x, int64_t y) {
      if (x != y) note(Cat(date, " counts.", name, ": expected ", x, ", got ", y));
    };
    count("applied", e.applied_count, a.applied_count);
    count("exact_duplicates", e.exact_duplicate_count, a.exact_duplicate_count);
    count("late", e.late_count, a.late_count);
    for (size_t i = 0; i < kReasonCount; ++i) {
      count(Cat("exceptions.", kReasonNames[i]).c_str(), e.exception_counts[i], a.exception_counts[i]);
    }
    for (const PositionSection& section : kSections) {
      const PositionMap& em = e.*section.member;
      const PositionMap& am = a.*section.member;
      std::map<std::string, std::pair<int64_t, int64_t>> ids;
      for (const auto& [id, fen] : em) ids[id].first = fen;
      for (const auto& [id, fen] : am) ids[id].second = fen;
      for (const auto& [id, values] : ids) {
        if (values.first != values.second) {
          note(Cat(date, " ", section.scheme, ".", section.kind, "[", id, "]: expected ", values.first,
                            " fen, got ", values.second, " fen"));
        }
      }
    }
  }
  return lines;
}

}  // namespace yrd
