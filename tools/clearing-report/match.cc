#include "tools/clearing-report/match.h"

#include <map>
#include <span>
#include <utility>

#include "engine/base/money.h"
#include "engine/base/strings.h"
#include "tools/clearing-report/fields.h"

namespace yrd {
namespace {

constexpr std::string_view kBankDetailFormat = "YRD-BANK-DETAIL";
constexpr std::string_view kFundDetailFormat = "YRD-FUND-DETAIL";
// Fields of a D record, the tag included, and where the compared amounts are (0-based).
constexpr size_t kBankDetailFields = 13;
constexpr size_t kFundDetailFields = 17;
struct AmountField {
  size_t index;
  std::string_view name;
};
constexpr AmountField kBankAmounts[] = {{8, "amount_fen"}};
constexpr AmountField kFundAmounts[] = {{9, "total_fen"}, {10, "fund_pay_fen"}, {11, "account_pay_fen"}, {12, "cash_pay_fen"}};

// The value of `key=` among a header's fields, or empty.
std::string_view HeaderValue(const std::vector<std::string_view>& fields, std::string_view key) {
  for (const std::string_view field : fields) {
    if (field.size() > key.size() && field.starts_with(key) && field[key.size()] == '=') {
      return field.substr(key.size() + 1);
    }
  }
  return {};
}

struct Record {
  std::vector<std::string_view> fields;
};

// The D records of a detail file by (txn_id, kind), in file order.
absl::Status ReadRecords(std::string_view text, std::string_view which, size_t field_count,
                         std::vector<std::pair<std::string, Record>>& ordered,
                         std::map<std::string, size_t>& by_key) {
  size_t line_number = 0;
  size_t start = 0;
  while (start < text.size()) {
    const size_t end = text.find('\n', start);
    std::string_view line = text.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
    start = end == std::string_view::npos ? text.size() : end + 1;
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (!line.starts_with("D|")) continue;
    std::vector<std::string_view> fields = SplitRecordFields(line);
    if (fields.size() != field_count) {
      return absl::InvalidArgumentError(Cat(which, " line ", line_number, ": ", fields.size(), " fields, a ",
                                            field_count == kBankDetailFields ? kBankDetailFormat : kFundDetailFormat,
                                            " record has ", field_count));
    }
    std::string key = Cat(fields[1], "|", fields[2]);
    if (!by_key.emplace(key, ordered.size()).second) {
      return absl::InvalidArgumentError(Cat(which, " line ", line_number, ": ", fields[2], " ", fields[1],
                                            " appears twice"));
    }
    ordered.push_back({std::move(key), Record{std::move(fields)}});
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<DetailHeader> ParseDetailHeader(std::string_view text) {
  const std::string_view first = text.substr(0, text.find('\n'));
  const std::vector<std::string_view> fields = SplitRecordFields(first);
  DetailHeader header;
  if (fields.empty() || fields[0] != "H") return absl::InvalidArgumentError("the first line is not a header (H|...)");
  header.format = std::string(HeaderValue(fields, "format"));
  header.window_date = std::string(HeaderValue(fields, "window_date"));
  if (header.format == kBankDetailFormat) {
    header.participant_id = std::string(HeaderValue(fields, "bank_id"));
  } else if (header.format == kFundDetailFormat) {
    header.participant_id = std::string(HeaderValue(fields, "fund_id"));
  } else {
    return absl::InvalidArgumentError(Cat("format '", header.format, "' is not ", kBankDetailFormat, " or ",
                                          kFundDetailFormat));
  }
  if (header.window_date.size() != 8 || !IsValidId(header.window_date) || !IsValidId(header.participant_id)) {
    return absl::InvalidArgumentError("the header's window_date or participant id is missing or malformed");
  }
  return header;
}

absl::StatusOr<MatchResult> MatchReturnedFile(std::string_view ours, std::string_view theirs) {
  absl::StatusOr<DetailHeader> our_header = ParseDetailHeader(ours);
  if (!our_header.ok()) return absl::InvalidArgumentError(Cat("our file: ", our_header.status().message()));
  absl::StatusOr<DetailHeader> their_header = ParseDetailHeader(theirs);
  if (!their_header.ok()) return absl::InvalidArgumentError(Cat("returned file: ", their_header.status().message()));
  if (our_header->format != their_header->format || our_header->window_date != their_header->window_date ||
      our_header->participant_id != their_header->participant_id) {
    return absl::InvalidArgumentError(Cat("the returned file is ", their_header->format, " of ",
                                          their_header->participant_id, " for ", their_header->window_date,
                                          ", ours is ", our_header->format, " of ", our_header->participant_id,
                                          " for ", our_header->window_date));
  }
  const bool bank = our_header->format == kBankDetailFormat;
  const size_t field_count = bank ? kBankDetailFields : kFundDetailFields;
  const std::span<const AmountField> amounts = bank ? std::span<const AmountField>(kBankAmounts)
                                                    : std::span<const AmountField>(kFundAmounts);
  std::vector<std::pair<std::string, Record>> our_records, their_records;
  std::map<std::string, size_t> our_keys, their_keys;
  if (absl::Status s = ReadRecords(ours, "our file", field_count, our_records, our_keys); !s.ok()) return s;
  if (absl::Status s = ReadRecords(theirs, "returned file", field_count, their_records, their_keys); !s.ok()) return s;

  MatchResult result;
  result.format = our_header->format;
  result.window_date = our_header->window_date;
  result.participant_id = our_header->participant_id;
  for (const auto& [key, ours_record] : our_records) {
    const std::vector<std::string_view>& o = ours_record.fields;
    const auto found = their_keys.find(key);
    if (found == their_keys.end()) {
      result.differences.push_back({MatchDifference::Kind::kMissing, std::string(o[1]), std::string(o[2]),
                                    std::string(amounts[0].name), std::string(o[amounts[0].index]), ""});
      continue;
    }
    const std::vector<std::string_view>& t = their_records[found->second].second.fields;
    bool same = true;
    for (const AmountField& amount : amounts) {
      if (o[amount.index] == t[amount.index]) continue;
      same = false;
      result.differences.push_back({MatchDifference::Kind::kMismatched, std::string(o[1]), std::string(o[2]),
                                    std::string(amount.name), std::string(o[amount.index]),
                                    std::string(t[amount.index])});
    }
    if (same) ++result.matched_count;
  }
  for (const auto& [key, their_record] : their_records) {
    if (our_keys.contains(key)) continue;
    const std::vector<std::string_view>& t = their_record.fields;
    result.differences.push_back({MatchDifference::Kind::kUnexpected, std::string(t[1]), std::string(t[2]),
                                  std::string(amounts[0].name), "", std::string(t[amounts[0].index])});
  }
  return result;
}

}  // namespace yrd
