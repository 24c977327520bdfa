// clearing-report match: compares a bank's or fund's returned file with our detail file of the
// same window. The returned file is the participant's record of what it settled, in the layout
// of our detail files (docs/file-format.md): a header naming the format, window and participant,
// then one D record per event; a trailer is optional and not read. Records are matched by
// (txn_id, kind); a matched pair whose amounts differ is mismatched, one field per difference.
// Pure text in, result out: the caller reads the files.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace yrd {

// Largest returned file read, bytes (a busy bank's detail file of a day is a few hundred MB).
inline constexpr size_t kReturnedFileBytesMax = size_t{2} << 30;

struct MatchDifference {
  enum class Kind : uint8_t { kMissing = 0, kUnexpected = 1, kMismatched = 2 };
  Kind kind = Kind::kMissing;  // missing: ours only; unexpected: theirs only
  std::string txn_id;
  std::string event_kind;  // TAP, REFUND, SETTLEMENT, CANCELLATION
  std::string field;       // the amount field compared (amount_fen, total_fen, ...)
  std::string ours;        // empty when unexpected
  std::string theirs;      // empty when missing
};

struct MatchResult {
  std::string format;          // YRD-BANK-DETAIL or YRD-FUND-DETAIL
  std::string window_date;     // YYYYMMDD
  std::string participant_id;  // bank_id or fund_id
  int64_t matched_count = 0;
  std::vector<MatchDifference> differences;  // in our file's order, then theirs
};

// The header fields of a detail file: format, window date and participant id. InvalidArgument
// when the first line is not a detail file's header.
struct DetailHeader {
  std::string format;
  std::string window_date;
  std::string participant_id;
};
[[nodiscard]] absl::StatusOr<DetailHeader> ParseDetailHeader(std::string_view text);

// Compares `theirs` (the returned file) with `ours` (our detail file). InvalidArgument when a
// file is not a detail file, their headers name another format, window or participant, a D
// record has the wrong number of fields, or a file holds one (txn_id, kind) twice.
[[nodiscard]] absl::StatusOr<MatchResult> MatchReturnedFile(std::string_view ours, std::string_view theirs);

}  // namespace yrd
