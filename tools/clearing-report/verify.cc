#include "tools/clearing-report/verify.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "adapters/crypto/hmac.h"
#include "adapters/crypto/sha256.h"
#include "adapters/fs/file_set.h"
#include "engine/base/money.h"
#include "engine/base/strings.h"
#include "engine/clearing/clearing_files.h"
#include "engine/store/records.h"
#include "nlohmann/json.hpp"
#include "tools/clearing-report/fields.h"

namespace yrd {
namespace {

// Bytes of a file hashed, or compared with the re-rendered window, at a time.
constexpr size_t kChunkBytes = 64 * 1024;
// Characters of a differing line quoted in a message.
constexpr size_t kQuotedLineCharsMax = 200;

absl::Status Mismatch(std::string_view path, int64_t line, std::string_view message) {
  return absl::DataLossError(Cat(path, " line ", line, ": ", message));
}
absl::Status FileMismatch(std::string_view path, std::string_view message) {
  return absl::DataLossError(Cat(path, ": ", message));
}

std::string Quote(std::string_view line) {
  if (line.size() > kQuotedLineCharsMax) return Cat("'", line.substr(0, kQuotedLineCharsMax), "...'");
  return Cat("'", line, "'");
}

std::optional<int64_t> ParseInt(std::string_view text) {
  if (text.empty() || text.front() == '+') return std::nullopt;
  int64_t value = 0;
  const auto result = std::from_chars(text.data(), text.data() + text.size(), value);
  if (result.ec != std::errc() || result.ptr != text.data() + text.size()) return std::nullopt;
  return value;
}

bool IsLowerHex(std::string_view text, size_t length) {
  if (text.size() != length) return false;
  for (const char c : text) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// Checked running sum; the first overflow makes the file's check fail.
struct Sum {
  int64_t value = 0;
  bool overflowed = false;
  void Add(int64_t delta) {
    const std::optional<int64_t> sum = CheckedAddFen(value, delta);
    if (sum) {
      value = *sum;
    } else {
      overflowed = true;
    }
  }
};

// ---- reading a file line by line ---------------------------------------------------------------

class LineReader {
 public:
  LineReader(std::string path, const std::string& full_path)
      : path_(std::move(path)), in_(full_path, std::ios::binary) {}

  [[nodiscard]] bool is_open() const { return in_.is_open(); }
  [[nodiscard]] int64_t line_number() const { return line_number_; }

  // The next line without its LF; false at the end of the file.
  [[nodiscard]] absl::StatusOr<bool> Next(std::string& line) {
    if (!std::getline(in_, line)) {
      if (in_.bad()) return absl::DataLossError(Cat("cannot read ", path_));
      return false;
    }
    ++line_number_;
    if (in_.eof()) return Mismatch(path_, line_number_, "the last line does not end with a line feed");
    if (line.find('\r') != std::string::npos) {
      return Mismatch(path_, line_number_, "has a carriage return: lines end with LF alone");
    }
    return true;
  }

 private:
  std::string path_;
  std::ifstream in_;
  int64_t line_number_ = 0;
};

using Pairs = std::vector<std::pair<std::string, std::string>>;

// "H|k=v|k=v" or "T|k=v|...": the pairs, whose keys must be exactly `keys`, in order.
absl::StatusOr<Pairs> ParsePairs(std::string_view path, int64_t line_number, std::string_view line,
                                 const std::vector<std::string_view>& keys) {
  const std::vector<std::string_view> fields = SplitRecordFields(line);
  Pairs pairs;
  for (size_t i = 1; i < fields.size(); ++i) {
    const size_t equals = fields[i].find('=');
    if (equals == std::string_view::npos)
      return Mismatch(path, line_number, Cat("field ", Quote(fields[i]), " is not key=value"));
    pairs.emplace_back(std::string(fields[i].substr(0, equals)), std::string(fields[i].substr(equals + 1)));
  }
  bool same = pairs.size() == keys.size();
  for (size_t i = 0; same && i < keys.size(); ++i) same = pairs[i].first == keys[i];
  if (!same) {
    std::string expected;
    for (const std::string_view key : keys) expected += Cat(expected.empty() ? "" : ", ", key);
    return Mismatch(path, line_number, Cat("has fields ", Quote(line), " where ", expected, " are expected"));
  }
  return pairs;
}

// What every header of the set must agree on; taken from summary.txt, read first.
struct SetContext {
  std::string window_date;
  std::string closed_at;
};

// Reads one file of the set: the header (format, version, window date, participant, close time),
// each D record through `on_detail`, and the trailer, whose record_count is checked here and
// whose other values are returned in `trailer` by key.
absl::Status ReadFile(
    const std::string& window_dir, const std::string& path, std::string_view format, std::string_view id_key,
    std::string_view id, const std::vector<std::string_view>& trailer_keys, SetContext& context,
    const std::function<absl::Status(int64_t line, const std::vector<std::string_view>& fields)>& on_detail,
    std::map<std::string, int64_t>& trailer) {
  LineReader reader(path, window_dir + "/" + path);
  if (!reader.is_open()) return absl::NotFoundError(Cat("cannot open ", window_dir, "/", path));
  std::string line;
  absl::StatusOr<bool> more = reader.Next(line);
  if (!more.ok()) return more.status();
  if (!*more || !line.starts_with("H|")) return FileMismatch(path, "does not start with a header record (H)");
  std::vector<std::string_view> header_keys = {"format", "version", "window_date"};
  if (!id_key.empty()) header_keys.push_back(id_key);
  header_keys.push_back("closed_at");
  absl::StatusOr<Pairs> header = ParsePairs(path, 1, line, header_keys);
  if (!header.ok()) return header.status();
  const Pairs& h = *header;
  if (h[0].second != format) return Mismatch(path, 1, Cat("format is ", h[0].second, ", not ", format));
  if (h[1].second != std::to_string(kClearingFileFormatVersion)) {
    return Mismatch(path, 1,
                    Cat("version ", h[1].second, " is not one this tool reads (", kClearingFileFormatVersion, ")"));
  }
  const std::string& closed_at = h.back().second;
  if (context.window_date.empty()) {
    context.window_date = h[2].second;
    context.closed_at = closed_at;
  }
  if (h[2].second != context.window_date) {
    return Mismatch(path, 1, Cat("window_date is ", h[2].second, " but summary.txt says ", context.window_date));
  }
  if (closed_at != context.closed_at) {
    return Mismatch(path, 1, Cat("closed_at is ", closed_at, " but summary.txt says ", context.closed_at));
  }
  if (!id_key.empty() && h[3].second != id) {
    return Mismatch(path, 1, Cat(id_key, " is ", h[3].second, " but the file is named for ", id));
  }

  int64_t detail_count = 0;
  bool have_trailer = false;
  while (true) {
    more = reader.Next(line);
    if (!more.ok()) return more.status();
    if (!*more) break;
    const int64_t number = reader.line_number();
    if (have_trailer) return Mismatch(path, number, "follows the trailer");
    if (line.starts_with("D|")) {
      ++detail_count;
      if (absl::Status s = on_detail(number, SplitRecordFields(line)); !s.ok()) return s;
    } else if (line.starts_with("T|")) {
      absl::StatusOr<Pairs> pairs = ParsePairs(path, number, line, trailer_keys);
      if (!pairs.ok()) return pairs.status();
      for (const auto& [key, value] : *pairs) {
        const std::optional<int64_t> parsed = ParseInt(value);
        if (!parsed) return Mismatch(path, number, Cat(key, "=", value, " is not an integer"));
        trailer[key] = *parsed;
      }
      if (trailer["record_count"] != detail_count) {
        return Mismatch(
            path, number,
            Cat("trailer record_count is ", trailer["record_count"], " but the file has ", detail_count, " D records"));
      }
      have_trailer = true;
    } else {
      return Mismatch(path, number, Cat("is neither a D nor a T record: ", Quote(line)));
    }
  }
  if (!have_trailer) return FileMismatch(path, "has no trailer record (T)");
  return absl::OkStatus();
}

// Parses fields [first, fields.size()) as integers into `out`.
absl::Status Ints(std::string_view path, int64_t line, const std::vector<std::string_view>& fields, size_t first,
                  std::vector<int64_t>& out) {
  out.clear();
  for (size_t i = first; i < fields.size(); ++i) {
    const std::optional<int64_t> value = ParseInt(fields[i]);
    if (!value) return Mismatch(path, line, Cat("field ", i + 1, " (", Quote(fields[i]), ") is not an integer"));
    out.push_back(*value);
  }
  return absl::OkStatus();
}

absl::Status ExpectFieldCount(std::string_view path, int64_t line, const std::vector<std::string_view>& fields,
                              size_t count) {
  if (fields.size() == count) return absl::OkStatus();
  return Mismatch(path, line,
                  Cat(fields.size() > 1 ? fields[1] : "record", " has ", fields.size(), " fields, not ", count));
}

absl::Status ExpectTotal(std::string_view path, std::string_view what, int64_t stated, const Sum& sum) {
  if (sum.overflowed) return FileMismatch(path, Cat("the records behind ", what, " overflow int64"));
  if (stated != sum.value) {
    return FileMismatch(path, Cat("trailer ", what, " is ", stated, " but its records add up to ", sum.value));
  }
  return absl::OkStatus();
}

// Records of one kind must come in ascending key order (the renderer's stable order).
absl::Status ExpectAscending(std::string_view path, int64_t line, std::pair<int, std::string>& last,
                             std::pair<int, std::string> key) {
  if (key <= last) return Mismatch(path, line, "is out of order (records are sorted by type, then id)");
  last = std::move(key);
  return absl::OkStatus();
}

// ---- the checks of one window ------------------------------------------------------------------

struct Summary {
  FeeSchedule fees;
  bool have_fee_bank = false;
  std::map<std::string, int64_t> counts, totals;
  std::map<std::pair<std::string, std::string>, std::map<std::string, int64_t>> positions;  // (scheme, kind)
  std::map<std::string, std::pair<int64_t, std::string>> zero_sums;
};

struct BankSums {
  Sum merchant_count, merchant_gross, merchant_refund_count, merchant_refunds, merchant_fee;
  Sum issuer_count, issuer_gross, issuer_refund_count, issuer_refunds;
  Sum fee_credit;
  int64_t net_position_fen = 0;
};

struct Flow {
  std::vector<int64_t> values;  // count, cancelled, fund pay, account pay, cash pay, cleared
  bool operator==(const Flow&) const = default;
};

struct FundSums {
  Sum institution_count, institution_cancelled, institution_cleared, institution_cash;
  std::map<std::string, Flow> payable_to_fund, receivable_from_fund;
  std::map<std::string, int64_t> institution_cleared_by_id;
  int64_t net_position_fen = 0;
};

class Verifier {
 public:
  Verifier(std::string window_dir, StateStore* store, const Registry& registry, std::string_view key)
      : window_dir_(std::move(window_dir)), store_(store), registry_(registry), key_(key) {}

  absl::StatusOr<std::string> Run() {
    absl::StatusOr<Digests> digests = MakeFileSetDigests(key_);
    if (!digests.ok()) return digests.status();
    digests_ = *std::move(digests);
    if (absl::Status s = CheckManifest(); !s.ok()) return s;
    if (absl::Status s = CheckFiles(); !s.ok()) return s;
    if (absl::Status s = CheckStructure(); !s.ok()) return s;
    const std::string checked = Cat("window ", context_.window_date, ": ", manifest_.size(),
                                    " files match the MANIFEST and its signature, every trailer and cross-file total "
                                    "holds, positions sum to 0");
    if (store_ == nullptr) return Cat(checked, "; not compared with a store (none given)");
    absl::StatusOr<std::optional<int64_t>> retired = CheckAgainstStore();
    if (!retired.ok()) return retired.status();
    if (retired->has_value()) {
      return Cat(checked, "; not compared with the store, which retired the window's records at ",
                 FormatChinaTime(**retired));
    }
    return Cat(checked, ", and the store gives the same bytes");
  }

 private:
  struct Entry {
    std::string sha256_hex;
    int64_t size_bytes = 0;
  };

  // 1. The MANIFEST and its signature.
  absl::Status CheckManifest() {
    const std::string path = Cat(window_dir_, "/", kManifestPath);
    std::ifstream in(path, std::ios::binary);
    if (!in) return absl::NotFoundError(Cat("cannot open ", path));
    std::string text;
    char chunk[kChunkBytes];
    while (in.read(chunk, sizeof chunk) || in.gcount() > 0) {
      text.append(chunk, static_cast<size_t>(in.gcount()));
      if (text.size() > kManifestBytesMax)
        return FileMismatch(kManifestPath, Cat("is larger than ", kManifestBytesMax, " bytes"));
    }
    if (text.empty() || text.back() != '\n') return FileMismatch(kManifestPath, "does not end with a line feed");
    const size_t last_start = text.rfind('\n', text.size() - 2);
    const size_t signature_start = last_start == std::string::npos ? 0 : last_start + 1;
    const std::string_view body = std::string_view(text).substr(0, signature_start);
    const std::string_view signature_line =
        std::string_view(text).substr(signature_start, text.size() - 1 - signature_start);
    const std::string tag = Cat(kManifestSignatureTag, " ");
    if (!signature_line.starts_with(tag) || !IsLowerHex(signature_line.substr(tag.size()), 64)) {
      return FileMismatch(kManifestPath, Cat("the last line is not '", kManifestSignatureTag, " <64 hex>'"));
    }
    if (!ConstantTimeEquals(signature_line.substr(tag.size()), digests_.hmac_hex(body))) {
      return FileMismatch(kManifestPath,
                          "the HMAC-SHA256 of its lines does not match its last line under this key: the MANIFEST was "
                          "changed, or the key is not the one it was signed with");
    }
    int64_t number = 0;
    std::string last_path;
    std::string_view rest = body;
    while (!rest.empty()) {
      const size_t end = rest.find('\n');
      const std::string_view line = rest.substr(0, end);
      rest.remove_prefix(end + 1);
      ++number;
      const size_t first_space = line.find(' ');
      const size_t second_space = first_space == std::string_view::npos ? first_space : line.find(' ', first_space + 1);
      if (second_space == std::string_view::npos) return Mismatch(kManifestPath, number, "is not 'sha256 size path'");
      const std::string_view hash = line.substr(0, first_space);
      const std::optional<int64_t> size = ParseInt(line.substr(first_space + 1, second_space - first_space - 1));
      const std::string file_path(line.substr(second_space + 1));
      if (!IsLowerHex(hash, 64) || !size || *size < 0 || file_path.empty() || file_path.front() == '/' ||
          file_path.find("..") != std::string::npos || file_path.find(' ') != std::string::npos) {
        return Mismatch(kManifestPath, number, Cat("is not 'sha256 size path': ", Quote(line)));
      }
      if (!last_path.empty() && file_path <= last_path) {
        return Mismatch(kManifestPath, number, Cat(file_path, " is not after ", last_path, ": paths must be sorted"));
      }
      last_path = file_path;
      manifest_[file_path] = Entry{std::string(hash), *size};
    }
    return absl::OkStatus();
  }

  // 2. Every listed file's size and hash; no file that is not listed.
  absl::Status CheckFiles() {
    for (const auto& [path, entry] : manifest_) {
      const std::string full = Cat(window_dir_, "/", path);
      std::ifstream in(full, std::ios::binary);
      if (!in) return absl::NotFoundError(Cat(path, " is in the MANIFEST but cannot be opened in ", window_dir_));
      absl::StatusOr<std::unique_ptr<Sha256>> hash = Sha256::Create();
      if (!hash.ok()) return hash.status();
      int64_t size_bytes = 0;
      char chunk[kChunkBytes];
      while (in.read(chunk, sizeof chunk) || in.gcount() > 0) {
        (*hash)->Update(std::string_view(chunk, static_cast<size_t>(in.gcount())));
        size_bytes += in.gcount();
      }
      if (in.bad()) return absl::DataLossError(Cat("cannot read ", full));
      if (size_bytes != entry.size_bytes) {
        return FileMismatch(path, Cat("has ", size_bytes, " bytes but the MANIFEST says ", entry.size_bytes));
      }
      const std::string actual = (*hash)->FinishHex();
      if (actual != entry.sha256_hex) {
        return FileMismatch(path, Cat("sha256 is ", actual, " but the MANIFEST says ", entry.sha256_hex));
      }
    }
    std::error_code error;
    for (auto it = std::filesystem::recursive_directory_iterator(window_dir_, error);
         !error && it != std::filesystem::recursive_directory_iterator(); it.increment(error)) {
      const std::string name = it->path().filename().string();
      if (name.starts_with(".")) {
        if (it->is_directory()) it.disable_recursion_pending();
        continue;
      }
      if (it->is_directory()) continue;
      const std::string relative = std::filesystem::relative(it->path(), window_dir_).generic_string();
      if (relative != kManifestPath && !manifest_.contains(relative)) {
        return FileMismatch(relative, "is in the window directory but not in the MANIFEST");
      }
    }
    if (error) return absl::NotFoundError(Cat("cannot list ", window_dir_, ": ", error.message()));
    return absl::OkStatus();
  }

  // 3. Each file against itself, and the files against each other.
  absl::Status CheckStructure() {
    if (!manifest_.contains("summary.txt")) return FileMismatch("summary.txt", "is not in the MANIFEST");
    if (absl::Status s = ReadSummary(); !s.ok()) return s;
    std::set<std::string> bank_ids, fund_ids;
    for (const auto& [path, entry] : manifest_) {
      if (path == "summary.txt") continue;
      std::string_view rest = path;
      std::set<std::string>* ids = nullptr;
      if (rest.starts_with("banks/")) {
        ids = &bank_ids;
      } else if (rest.starts_with("funds/")) {
        ids = &fund_ids;
      } else {
        return FileMismatch(path, "is not a file of a clearing set");
      }
      rest.remove_prefix(6);
      std::string_view id;
      if (rest.ends_with(".detail.txt")) {
        id = rest.substr(0, rest.size() - 11);
      } else if (rest.ends_with(".txt")) {
        id = rest.substr(0, rest.size() - 4);
      }
      if (!IsValidId(id)) return FileMismatch(path, "is not a file of a clearing set");
      ids->insert(std::string(id));
    }
    for (const std::string& id : bank_ids) {
      if (absl::Status s = CheckBank(id); !s.ok()) return s;
    }
    for (const std::string& id : fund_ids) {
      if (absl::Status s = CheckFund(id); !s.ok()) return s;
    }
    return CheckAcrossFiles(bank_ids, fund_ids);
  }

  absl::Status ReadSummary() {
    const std::string path = "summary.txt";
    std::map<std::string, int64_t> trailer;
    std::pair<int, std::string> last_position{-1, ""};
    auto on_detail = [&](int64_t line, const std::vector<std::string_view>& f) -> absl::Status {
      const std::string_view type = f[1];
      if (type == "FEE_BANK") {
        if (absl::Status s = ExpectFieldCount(path, line, f, 3); !s.ok()) return s;
        summary_.fees.fee_bank_id = f[2];
        summary_.have_fee_bank = true;
        return absl::OkStatus();
      }
      if (type == "FEE_RATE") {
        if (absl::Status s = ExpectFieldCount(path, line, f, 4); !s.ok()) return s;
        const std::optional<Category> category = CategoryFromName(f[2]);
        const std::optional<int64_t> bps = ParseInt(f[3]);
        if (!category || !bps || *bps < 0 || *bps > 10000) return Mismatch(path, line, "is not a valid FEE_RATE");
        summary_.fees.basis_points[static_cast<size_t>(*category)] = static_cast<int32_t>(*bps);
        return absl::OkStatus();
      }
      if (type == "COUNT" || type == "TOTAL" || type == "EXCEPTION") {
        if (absl::Status s = ExpectFieldCount(path, line, f, 4); !s.ok()) return s;
        const std::optional<int64_t> value = ParseInt(f[3]);
        if (!value) return Mismatch(path, line, Cat(Quote(f[3]), " is not an integer"));
        if (type == "EXCEPTION" && !ReasonFromName(f[2])) return Mismatch(path, line, Cat("unknown reason ", f[2]));
        (type == "TOTAL" ? summary_.totals : summary_.counts)[std::string(f[2])] = *value;
        return absl::OkStatus();
      }
      if (type == "POSITION") {
        if (absl::Status s = ExpectFieldCount(path, line, f, 6); !s.ok()) return s;
        const std::optional<int64_t> fen = ParseInt(f[5]);
        if (!fen) return Mismatch(path, line, Cat(Quote(f[5]), " is not an integer"));
        auto& map = summary_.positions[{std::string(f[2]), std::string(f[3])}];
        if (!map.emplace(std::string(f[4]), *fen).second) {
          return Mismatch(path, line, Cat("repeats the ", f[2], " ", f[3], " position of ", f[4]));
        }
        return absl::OkStatus();
      }
      if (type == "ZERO_SUM") {
        if (absl::Status s = ExpectFieldCount(path, line, f, 5); !s.ok()) return s;
        const std::optional<int64_t> sum = ParseInt(f[3]);
        if (!sum) return Mismatch(path, line, Cat(Quote(f[3]), " is not an integer"));
        summary_.zero_sums[std::string(f[2])] = {*sum, std::string(f[4])};
        return absl::OkStatus();
      }
      return Mismatch(path, line, Cat("unknown record type ", type));
    };
    if (absl::Status s =
            ReadFile(window_dir_, path, "YRD-SUMMARY", {}, {}, {"record_count"}, context_, on_detail, trailer);
        !s.ok()) {
      return s;
    }
    if (!summary_.have_fee_bank) return FileMismatch(path, "has no FEE_BANK record");
    // The zero sums, recomputed from the positions.
    auto sum_of = [&](std::string_view scheme, std::string_view kind) {
      __int128 sum = 0;
      const auto it = summary_.positions.find({std::string(scheme), std::string(kind)});
      if (it != summary_.positions.end()) {
        for (const auto& [id, fen] : it->second) sum += fen;
      }
      return sum;
    };
    const std::pair<std::string_view, __int128> sums[] = {
        {"BANK_SCHEME_PROVINCE", sum_of("BANK_SCHEME", "PROVINCE")},
        {"BANK_SCHEME_BANK", sum_of("BANK_SCHEME", "BANK")},
        {"FUND_SCHEME_PROVINCE", sum_of("FUND_SCHEME", "PROVINCE")},
        {"FUND_SCHEME_FUND_AND_INSTITUTION", sum_of("FUND_SCHEME", "FUND") + sum_of("FUND_SCHEME", "INSTITUTION")},
    };
    for (const auto& [name, sum] : sums) {
      const auto stated = summary_.zero_sums.find(std::string(name));
      if (stated == summary_.zero_sums.end()) return FileMismatch(path, Cat("has no ZERO_SUM record for ", name));
      if (sum != 0) {
        return FileMismatch(path, Cat(name, " positions sum to ", static_cast<int64_t>(sum), " fen, not 0"));
      }
      if (stated->second.first != 0 || stated->second.second != "OK") {
        return FileMismatch(path, Cat("ZERO_SUM ", name, " says ", stated->second.first, " ", stated->second.second,
                                      " but its positions sum to 0"));
      }
    }
    const int64_t applied = summary_.counts["applied"];
    const __int128 parts = static_cast<__int128>(summary_.totals["tap_count"]) + summary_.totals["refund_count"] +
                           summary_.totals["settlement_count"] + summary_.totals["cancellation_count"];
    if (parts != applied) {
      return FileMismatch(
          path, Cat("COUNT applied is ", applied, " but tap, refund, settlement and cancellation counts add up to ",
                    static_cast<int64_t>(parts)));
    }
    return absl::OkStatus();
  }

  absl::Status CheckBank(const std::string& id) {
    const std::string path = Cat("banks/", id, ".txt");
    if (!manifest_.contains(path)) return FileMismatch(path, "is missing, though the set has the bank's detail file");
    BankSums& b = banks_[id];
    Sum debit, credit;
    std::vector<int64_t> v;
    std::pair<int, std::string> last{-1, ""};
    auto on_detail = [&](int64_t line, const std::vector<std::string_view>& f) -> absl::Status {
      const std::string_view type = f[1];
      if (type == "MERCHANT_CREDIT") {
        if (absl::Status s = ExpectFieldCount(path, line, f, 9); !s.ok()) return s;
        if (absl::Status s = Ints(path, line, f, 3, v); !s.ok()) return s;
        if (absl::Status s = ExpectAscending(path, line, last, {0, std::string(f[2])}); !s.ok()) return s;
        if (static_cast<__int128>(v[1]) - v[3] - v[4] != v[5]) {
          return Mismatch(path, line, "net_fen is not gross_fen - refunds_fen - fee_fen");
        }
        b.merchant_count.Add(v[0]);
        b.merchant_gross.Add(v[1]);
        b.merchant_refund_count.Add(v[2]);
        b.merchant_refunds.Add(v[3]);
        b.merchant_fee.Add(v[4]);
        credit.Add(v[5]);
      } else if (type == "ISSUER_DEBIT") {
        if (absl::Status s = ExpectFieldCount(path, line, f, 8); !s.ok()) return s;
        if (absl::Status s = Ints(path, line, f, 3, v); !s.ok()) return s;
        if (absl::Status s = ExpectAscending(path, line, last, {1, std::string(f[2])}); !s.ok()) return s;
        if (static_cast<__int128>(v[1]) - v[3] != v[4])
          return Mismatch(path, line, "net_fen is not gross_fen - refunds_fen");
        b.issuer_count.Add(v[0]);
        b.issuer_gross.Add(v[1]);
        b.issuer_refund_count.Add(v[2]);
        b.issuer_refunds.Add(v[3]);
        debit.Add(v[4]);
      } else if (type == "FEE_CREDIT") {
        if (absl::Status s = ExpectFieldCount(path, line, f, 7); !s.ok()) return s;
        if (absl::Status s = Ints(path, line, f, 3, v); !s.ok()) return s;
        if (absl::Status s = ExpectAscending(path, line, last, {2, std::string(f[2])}); !s.ok()) return s;
        if (!CategoryFromName(f[2])) return Mismatch(path, line, Cat("unknown category ", f[2]));
        b.fee_credit.Add(v[3]);
        credit.Add(v[3]);
      } else {
        return Mismatch(path, line, Cat("unknown record type ", type));
      }
      return absl::OkStatus();
    };
    std::map<std::string, int64_t> t;
    if (absl::Status s = ReadFile(window_dir_, path, "YRD-BANK", "bank_id", id,
                                  {"record_count", "total_debit_fen", "total_credit_fen", "net_position_fen"}, context_,
                                  on_detail, t);
        !s.ok()) {
      return s;
    }
    if (absl::Status s = ExpectTotal(path, "total_debit_fen", t["total_debit_fen"], debit); !s.ok()) return s;
    if (absl::Status s = ExpectTotal(path, "total_credit_fen", t["total_credit_fen"], credit); !s.ok()) return s;
    if (static_cast<__int128>(t["total_credit_fen"]) - t["total_debit_fen"] != t["net_position_fen"]) {
      return FileMismatch(path, "trailer net_position_fen is not total_credit_fen - total_debit_fen");
    }
    b.net_position_fen = t["net_position_fen"];
    return CheckBankDetail(id, b);
  }

  absl::Status CheckBankDetail(const std::string& id, const BankSums& b) {
    const std::string path = Cat("banks/", id, ".detail.txt");
    if (!manifest_.contains(path)) return FileMismatch(path, "is missing");
    Sum issuer_taps, issuer_tap_fen, issuer_refunds, issuer_refund_fen;
    Sum acquirer_taps, acquirer_tap_fen, acquirer_refunds, acquirer_refund_fen;
    std::pair<int64_t, int64_t> last{-1, -1};
    auto on_detail = [&](int64_t line, const std::vector<std::string_view>& f) -> absl::Status {
      if (absl::Status s = ExpectFieldCount(path, line, f, 13); !s.ok()) return s;
      const std::string_view kind = f[2], role = f[3], late = f[9];
      const std::optional<int64_t> amount = ParseInt(f[8]), partition = ParseInt(f[11]), offset = ParseInt(f[12]);
      if (!IsValidId(f[1]) || (kind != "TAP" && kind != "REFUND") ||
          (role != "ISSUER" && role != "ACQUIRER" && role != "BOTH") || (late != "Y" && late != "N") || !amount ||
          *amount < 0 || !partition || !offset) {
        return Mismatch(path, line, "is not a valid bank detail record");
      }
      if (std::pair{*partition, *offset} <= last) return Mismatch(path, line, "is out of (partition, offset) order");
      last = {*partition, *offset};
      const bool tap = kind == "TAP";
      if (role != "ACQUIRER") {
        (tap ? issuer_taps : issuer_refunds).Add(1);
        (tap ? issuer_tap_fen : issuer_refund_fen).Add(*amount);
      }
      if (role != "ISSUER") {
        (tap ? acquirer_taps : acquirer_refunds).Add(1);
        (tap ? acquirer_tap_fen : acquirer_refund_fen).Add(*amount);
      }
      return absl::OkStatus();
    };
    std::map<std::string, int64_t> t;
    if (absl::Status s =
            ReadFile(window_dir_, path, "YRD-BANK-DETAIL", "bank_id", id,
                     {"record_count", "issuer_tap_count", "issuer_tap_fen", "issuer_refund_count", "issuer_refund_fen",
                      "acquirer_tap_count", "acquirer_tap_fen", "acquirer_refund_count", "acquirer_refund_fen"},
                     context_, on_detail, t);
        !s.ok()) {
      return s;
    }
    const std::tuple<const char*, const Sum*, const Sum*> checks[] = {
        {"issuer_tap_count", &issuer_taps, &b.issuer_count},
        {"issuer_tap_fen", &issuer_tap_fen, &b.issuer_gross},
        {"issuer_refund_count", &issuer_refunds, &b.issuer_refund_count},
        {"issuer_refund_fen", &issuer_refund_fen, &b.issuer_refunds},
        {"acquirer_tap_count", &acquirer_taps, &b.merchant_count},
        {"acquirer_tap_fen", &acquirer_tap_fen, &b.merchant_gross},
        {"acquirer_refund_count", &acquirer_refunds, &b.merchant_refund_count},
        {"acquirer_refund_fen", &acquirer_refund_fen, &b.merchant_refunds},
    };
    for (const auto& [key, details, bank_file] : checks) {
      if (absl::Status s = ExpectTotal(path, key, t[key], *details); !s.ok()) return s;
      if (bank_file->overflowed || t[key] != bank_file->value) {
        return FileMismatch(
            path, Cat("trailer ", key, " is ", t[key], " but banks/", id, ".txt adds up to ", bank_file->value));
      }
    }
    return absl::OkStatus();
  }

  absl::Status CheckFund(const std::string& id) {
    const std::string path = Cat("funds/", id, ".txt");
    if (!manifest_.contains(path)) return FileMismatch(path, "is missing, though the set has the fund's detail file");
    FundSums& fund = funds_[id];
    Sum payable, receivable, payable_fund_pay, payable_account_pay, receivable_fund_pay, receivable_account_pay;
    std::vector<int64_t> v;
    std::pair<int, std::string> last{-1, ""};
    auto on_detail = [&](int64_t line, const std::vector<std::string_view>& f) -> absl::Status {
      if (absl::Status s = ExpectFieldCount(path, line, f, 9); !s.ok()) return s;
      if (absl::Status s = Ints(path, line, f, 3, v); !s.ok()) return s;
      if (static_cast<__int128>(v[2]) + v[3] != v[5]) {
        return Mismatch(path, line, "cleared_fen is not fund_pay_fen + account_pay_fen");
      }
      const std::string_view type = f[1];
      const std::string other(f[2]);
      if (type == "PAYABLE_TO_FUND" || type == "RECEIVABLE_FROM_FUND") {
        const bool pays = type == "PAYABLE_TO_FUND";
        if (absl::Status s = ExpectAscending(path, line, last, {pays ? 0 : 1, other}); !s.ok()) return s;
        if (other == id) return Mismatch(path, line, "names the fund itself as the other fund");
        (pays ? fund.payable_to_fund : fund.receivable_from_fund)[other] = Flow{v};
        (pays ? payable : receivable).Add(v[5]);
        (pays ? payable_fund_pay : receivable_fund_pay).Add(v[2]);
        (pays ? payable_account_pay : receivable_account_pay).Add(v[3]);
      } else if (type == "PAYABLE_TO_INSTITUTION") {
        if (absl::Status s = ExpectAscending(path, line, last, {2, other}); !s.ok()) return s;
        fund.institution_count.Add(v[0]);
        fund.institution_cancelled.Add(v[1]);
        fund.institution_cleared.Add(v[5]);
        fund.institution_cash.Add(v[4]);
        fund.institution_cleared_by_id[other] = v[5];
        payable.Add(v[5]);
        payable_fund_pay.Add(v[2]);
        payable_account_pay.Add(v[3]);
      } else {
        return Mismatch(path, line, Cat("unknown record type ", type));
      }
      return absl::OkStatus();
    };
    std::map<std::string, int64_t> t;
    if (absl::Status s = ReadFile(
            window_dir_, path, "YRD-FUND", "fund_id", id,
            {"record_count", "total_payable_fen", "total_receivable_fen", "net_position_fen", "payable_fund_pay_fen",
             "payable_account_pay_fen", "receivable_fund_pay_fen", "receivable_account_pay_fen"},
            context_, on_detail, t);
        !s.ok()) {
      return s;
    }
    const std::pair<const char*, const Sum*> checks[] = {
        {"total_payable_fen", &payable},
        {"total_receivable_fen", &receivable},
        {"payable_fund_pay_fen", &payable_fund_pay},
        {"payable_account_pay_fen", &payable_account_pay},
        {"receivable_fund_pay_fen", &receivable_fund_pay},
        {"receivable_account_pay_fen", &receivable_account_pay},
    };
    for (const auto& [key, sum] : checks) {
      if (absl::Status s = ExpectTotal(path, key, t[key], *sum); !s.ok()) return s;
    }
    if (static_cast<__int128>(t["total_receivable_fen"]) - t["total_payable_fen"] != t["net_position_fen"]) {
      return FileMismatch(path, "trailer net_position_fen is not total_receivable_fen - total_payable_fen");
    }
    fund.net_position_fen = t["net_position_fen"];
    return CheckFundDetail(id, fund);
  }

  absl::Status CheckFundDetail(const std::string& id, const FundSums& fund) {
    const std::string path = Cat("funds/", id, ".detail.txt");
    if (!manifest_.contains(path)) return FileMismatch(path, "is missing");
    Sum insured_settlements, insured_cleared, insured_cancellations, insured_cancelled;
    Sum institution_settlements, institution_cleared, institution_cancellations, institution_cancelled;
    std::vector<int64_t> v;
    std::pair<int64_t, int64_t> last{-1, -1};
    auto on_detail = [&](int64_t line, const std::vector<std::string_view>& f) -> absl::Status {
      if (absl::Status s = ExpectFieldCount(path, line, f, 17); !s.ok()) return s;
      const std::string_view kind = f[2], role = f[3], insured = f[5], institution_fund = f[7], late = f[13];
      std::vector<std::string_view> numbers = {f[9], f[10], f[11], f[12], f[15], f[16]};
      v.clear();
      for (const std::string_view n : numbers) {
        const std::optional<int64_t> value = ParseInt(n);
        if (!value) return Mismatch(path, line, Cat(Quote(n), " is not an integer"));
        v.push_back(*value);
      }
      const bool role_holds = (role == "BOTH" && insured == id && institution_fund == id) ||
                              (role == "INSURED" && insured == id && institution_fund != id) ||
                              (role == "INSTITUTION" && institution_fund == id && insured != id);
      if (!IsValidId(f[1]) || (kind != "SETTLEMENT" && kind != "CANCELLATION") || (late != "Y" && late != "N")) {
        return Mismatch(path, line, "is not a valid fund detail record");
      }
      if (!role_holds) return Mismatch(path, line, Cat("role ", role, " does not fit its fund ids"));
      if (static_cast<__int128>(v[1]) + v[2] + v[3] != v[0]) {
        return Mismatch(path, line, "total_fen is not fund_pay_fen + account_pay_fen + cash_pay_fen");
      }
      if (std::pair{v[4], v[5]} <= last) return Mismatch(path, line, "is out of (partition, offset) order");
      last = {v[4], v[5]};
      const bool settlement = kind == "SETTLEMENT";
      const int64_t cleared = v[1] + v[2];
      if (role != "INSTITUTION") {
        (settlement ? insured_settlements : insured_cancellations).Add(1);
        (settlement ? insured_cleared : insured_cancelled).Add(cleared);
      }
      if (role != "INSURED") {
        (settlement ? institution_settlements : institution_cancellations).Add(1);
        (settlement ? institution_cleared : institution_cancelled).Add(cleared);
      }
      return absl::OkStatus();
    };
    std::map<std::string, int64_t> t;
    if (absl::Status s =
            ReadFile(window_dir_, path, "YRD-FUND-DETAIL", "fund_id", id,
                     {"record_count", "insured_settlement_count", "insured_cleared_fen", "insured_cancellation_count",
                      "insured_cancelled_fen", "institution_settlement_count", "institution_cleared_fen",
                      "institution_cancellation_count", "institution_cancelled_fen"},
                     context_, on_detail, t);
        !s.ok()) {
      return s;
    }
    const std::pair<const char*, const Sum*> checks[] = {
        {"insured_settlement_count", &insured_settlements},
        {"insured_cleared_fen", &insured_cleared},
        {"insured_cancellation_count", &insured_cancellations},
        {"insured_cancelled_fen", &insured_cancelled},
        {"institution_settlement_count", &institution_settlements},
        {"institution_cleared_fen", &institution_cleared},
        {"institution_cancellation_count", &institution_cancellations},
        {"institution_cancelled_fen", &institution_cancelled},
    };
    for (const auto& [key, sum] : checks) {
      if (absl::Status s = ExpectTotal(path, key, t[key], *sum); !s.ok()) return s;
    }
    const std::string fund_path = Cat("funds/", id, ".txt");
    if (static_cast<__int128>(t["institution_cleared_fen"]) - t["institution_cancelled_fen"] !=
        fund.institution_cleared.value) {
      return FileMismatch(path, Cat("institution cleared less cancelled is not the ", fund.institution_cleared.value,
                                    " fen ", fund_path, " owes its institutions"));
    }
    if (t["institution_settlement_count"] != fund.institution_count.value ||
        t["institution_cancellation_count"] != fund.institution_cancelled.value) {
      return FileMismatch(path, Cat("institution counts differ from the PAYABLE_TO_INSTITUTION counts of ", fund_path));
    }
    if (static_cast<__int128>(t["insured_cleared_fen"]) - t["insured_cancelled_fen"] !=
        -static_cast<__int128>(fund.net_position_fen)) {
      return FileMismatch(path, Cat("insured cleared less cancelled is not minus the net_position_fen ",
                                    fund.net_position_fen, " of ", fund_path));
    }
    return absl::OkStatus();
  }

  absl::Status CheckAcrossFiles(const std::set<std::string>& bank_ids, const std::set<std::string>& fund_ids) {
    const std::string summary = "summary.txt";
    auto expect_positions = [&](std::string_view kind, const std::set<std::string>& ids,
                                const std::function<int64_t(const std::string&)>& net) -> absl::Status {
      const std::string scheme = kind == "BANK" ? "BANK_SCHEME" : "FUND_SCHEME";
      const std::map<std::string, int64_t>& positions = summary_.positions[{scheme, std::string(kind)}];
      for (const std::string& id : ids) {
        const auto it = positions.find(id);
        if (it == positions.end())
          return FileMismatch(summary, Cat("has no ", kind, " position for ", id, ", which has files"));
        if (it->second != net(id)) {
          return FileMismatch(summary, Cat(kind, " position of ", id, " is ", it->second,
                                           " but its file's net_position_fen is ", net(id)));
        }
      }
      for (const auto& [id, fen] : positions) {
        if (!ids.contains(id))
          return FileMismatch(summary, Cat("has a ", kind, " position for ", id, ", which has no files"));
      }
      return absl::OkStatus();
    };
    if (absl::Status s =
            expect_positions("BANK", bank_ids, [&](const std::string& id) { return banks_[id].net_position_fen; });
        !s.ok()) {
      return s;
    }
    if (absl::Status s =
            expect_positions("FUND", fund_ids, [&](const std::string& id) { return funds_[id].net_position_fen; });
        !s.ok()) {
      return s;
    }
    // What one fund owes another, the other is owed.
    for (const auto& [id, fund] : funds_) {
      for (const auto& [other, flow] : fund.payable_to_fund) {
        const auto it = funds_.find(other);
        const Flow* mirror = nullptr;
        if (it != funds_.end()) {
          const auto m = it->second.receivable_from_fund.find(id);
          if (m != it->second.receivable_from_fund.end()) mirror = &m->second;
        }
        if (mirror == nullptr || !(*mirror == flow)) {
          return FileMismatch(
              Cat("funds/", id, ".txt"),
              Cat("PAYABLE_TO_FUND ", other, " differs from RECEIVABLE_FROM_FUND ", id, " of funds/", other, ".txt"));
        }
      }
      for (const auto& [other, flow] : fund.receivable_from_fund) {
        const auto it = funds_.find(other);
        if (it == funds_.end() || !it->second.payable_to_fund.contains(id)) {
          return FileMismatch(Cat("funds/", id, ".txt"), Cat("RECEIVABLE_FROM_FUND ", other, " has no PAYABLE_TO_FUND ",
                                                             id, " in funds/", other, ".txt"));
        }
      }
    }
    // Window totals.
    Sum tap_count, tap_gross, refund_count, refund_fen, fee, fee_credit, settlement_count, cancellation_count, cleared,
        cash;
    for (const auto& [id, b] : banks_) {
      tap_count.Add(b.merchant_count.value);
      tap_gross.Add(b.merchant_gross.value);
      refund_count.Add(b.merchant_refund_count.value);
      refund_fen.Add(b.merchant_refunds.value);
      fee.Add(b.merchant_fee.value);
      fee_credit.Add(b.fee_credit.value);
    }
    std::map<std::string, int64_t> institutions;
    for (const auto& [id, fund] : funds_) {
      settlement_count.Add(fund.institution_count.value);
      cancellation_count.Add(fund.institution_cancelled.value);
      cleared.Add(fund.institution_cleared.value);
      cash.Add(fund.institution_cash.value);
      for (const auto& [institution, fen] : fund.institution_cleared_by_id) {
        if (fen != 0) institutions[institution] += fen;
      }
    }
    const std::pair<const char*, const Sum*> totals[] = {
        {"tap_count", &tap_count},
        {"tap_gross_fen", &tap_gross},
        {"refund_count", &refund_count},
        {"refund_fen", &refund_fen},
        {"fee_fen", &fee},
        {"fee_fen", &fee_credit},
        {"settlement_count", &settlement_count},
        {"cancellation_count", &cancellation_count},
        {"cleared_fen", &cleared},
        {"cash_pay_fen", &cash},
    };
    for (const auto& [key, sum] : totals) {
      const auto stated = summary_.totals.find(key);
      if (stated == summary_.totals.end()) return FileMismatch(summary, Cat("has no TOTAL ", key));
      if (sum->overflowed || stated->second != sum->value) {
        return FileMismatch(
            summary, Cat("TOTAL ", key, " is ", stated->second, " but the bank and fund files add up to ", sum->value));
      }
    }
    std::map<std::string, int64_t> stated_institutions = summary_.positions[{"FUND_SCHEME", "INSTITUTION"}];
    std::erase_if(stated_institutions, [](const auto& entry) { return entry.second == 0; });
    if (stated_institutions != institutions) {
      return FileMismatch(summary, "the INSTITUTION positions differ from what the fund files owe the institutions");
    }
    return absl::OkStatus();
  }

  // 4. The window re-rendered from the store, compared byte by byte. Gives the instant the store
  // retired the window's records instead when it did (there is nothing left to render).
  absl::StatusOr<std::optional<int64_t>> CheckAgainstStore() {
    const std::optional<WindowDay> day = ParseWindowDate(context_.window_date);
    if (!day) return FileMismatch("summary.txt", Cat("window_date ", context_.window_date, " is not a date"));
    absl::StatusOr<ClosedWindow> window = LoadClosedWindow(*store_, *day, registry_);
    if (!window.ok()) {
      if (window.status().code() != absl::StatusCode::kFailedPrecondition) return window.status();
      return absl::FailedPreconditionError(Cat("the store has no closed window ", context_.window_date));
    }
    if (window->retired_at_ms != 0) return std::optional<int64_t>(window->retired_at_ms);
    if (FormatChinaTime(window->closed_at_ms) != context_.closed_at) {
      return FileMismatch("summary.txt",
                          Cat("closed_at is ", context_.closed_at, " but the store closed the window at ",
                              FormatChinaTime(window->closed_at_ms)));
    }
    ComparingFileSet sink(window_dir_);
    absl::Status rendered = RenderWindowFiles(*store_, *window, sink, digests_);
    if (!sink.failure().ok()) return sink.failure();
    if (!rendered.ok()) return absl::DataLossError(Cat("the store cannot render the window: ", rendered.message()));
    for (const auto& [path, entry] : manifest_) {
      if (!sink.paths().contains(path)) {
        return FileMismatch(path, "is in the window directory but the store and registry give no such file");
      }
    }
    return std::optional<int64_t>();
  }

  // A FileSetSink that compares what it is given with the files on disk, a chunk at a time.
  class ComparingFileSet final : public FileSetSink {
   public:
    explicit ComparingFileSet(std::string window_dir) : window_dir_(std::move(window_dir)) {}

    absl::StatusOr<OutputFile*> Create(std::string relative_path) override {
      if (!failure_.ok()) return failure_;
      paths_.insert(relative_path);
      files_.push_back(std::make_unique<File>(*this, std::move(relative_path)));
      return files_.back().get();
    }
    absl::Status Commit() override {
      for (const auto& file : files_) {
        if (absl::Status s = file->Finish(); !s.ok()) return s;
      }
      return failure_;
    }
    [[nodiscard]] const std::set<std::string>& paths() const { return paths_; }
    [[nodiscard]] const absl::Status& failure() const { return failure_; }

   private:
    class File final : public OutputFile {
     public:
      File(ComparingFileSet& set, std::string path) : set_(set), path_(std::move(path)) {}

      absl::Status Append(std::string_view bytes) override {
        if (!set_.failure_.ok()) return set_.failure_;
        pending_.append(bytes);
        if (pending_.size() < kChunkBytes) return absl::OkStatus();
        return Compare();
      }

      absl::Status Finish() {
        if (!set_.failure_.ok()) return set_.failure_;
        if (absl::Status s = Compare(); !s.ok()) return s;
        char extra = 0;
        if (Read(offset_, &extra, 1) != 0) {
          return Fail(Mismatch(path_, line_number_ + 1, "the file goes on past the end the store gives"));
        }
        return absl::OkStatus();
      }

     private:
      absl::Status Fail(absl::Status status) {
        if (set_.failure_.ok()) set_.failure_ = status;
        return status;
      }

      // Reads up to `size` bytes at `offset`; returns how many, or -1 when the file cannot be read.
      int64_t Read(int64_t offset, char* data, size_t size) {
        const std::string full = Cat(set_.window_dir_, "/", path_);
        const int fd = ::open(full.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) return -1;
        size_t done = 0;
        while (done < size) {
          const ssize_t got = ::pread(fd, data + done, size - done, offset + static_cast<int64_t>(done));
          if (got < 0 && errno == EINTR) continue;
          if (got <= 0) break;
          done += static_cast<size_t>(got);
        }
        ::close(fd);
        return static_cast<int64_t>(done);
      }

      absl::Status Compare() {
        if (pending_.empty()) return absl::OkStatus();
        std::string disk(pending_.size(), '\0');
        const int64_t got = Read(offset_, disk.data(), disk.size());
        if (got < 0) return Fail(absl::NotFoundError(Cat("cannot read ", set_.window_dir_, "/", path_)));
        disk.resize(static_cast<size_t>(got));
        size_t same = 0;
        while (same < disk.size() && disk[same] == pending_[same]) ++same;
        if (same < pending_.size()) {
          // The line holding the first difference: its start in this chunk, its number, and the
          // part of it compared in earlier chunks.
          const size_t newline = same == 0 ? std::string::npos : pending_.rfind('\n', same - 1);
          const size_t line_start = newline == std::string::npos ? 0 : newline + 1;
          const int64_t line = line_number_ + 1 + std::count(pending_.begin(), pending_.begin() + line_start, '\n');
          const std::string prefix = line_start == 0 ? line_prefix_ : std::string();
          auto line_of = [&](const std::string& text) {
            const size_t end = text.find('\n', line_start);
            return prefix + text.substr(line_start, end == std::string::npos ? std::string::npos : end - line_start);
          };
          if (same == disk.size()) {
            return Fail(
                Mismatch(path_, line, Cat("the file ends here, but the store gives ", Quote(line_of(pending_)))));
          }
          return Fail(Mismatch(path_, line,
                               Cat("differs from what the store gives: the file has ", Quote(line_of(disk)),
                                   ", the store gives ", Quote(line_of(pending_)))));
        }
        offset_ += static_cast<int64_t>(pending_.size());
        line_number_ += std::count(pending_.begin(), pending_.end(), '\n');
        const size_t last_newline = pending_.rfind('\n');
        line_prefix_ = last_newline == std::string::npos ? line_prefix_ + pending_ : pending_.substr(last_newline + 1);
        pending_.clear();
        return absl::OkStatus();
      }

      ComparingFileSet& set_;
      std::string path_;
      std::string pending_;
      std::string line_prefix_;  // the bytes of the current line already compared
      int64_t offset_ = 0;
      int64_t line_number_ = 0;  // lines completed before `offset_`
    };

    std::string window_dir_;
    std::vector<std::unique_ptr<File>> files_;
    std::set<std::string> paths_;
    absl::Status failure_;
  };

  std::string window_dir_;
  StateStore* store_;  // none: the files are checked on their own
  const Registry& registry_;
  std::string key_;
  Digests digests_;
  std::map<std::string, Entry> manifest_;
  SetContext context_;
  Summary summary_;
  std::map<std::string, BankSums> banks_;
  std::map<std::string, FundSums> funds_;
};

}  // namespace

absl::StatusOr<std::string> VerifyWindowFiles(const std::string& window_dir, StateStore* store,
                                              const Registry& registry, std::string_view manifest_key) {
  Verifier verifier(window_dir, store, registry, manifest_key);
  return verifier.Run();
}

int RunVerify(const std::string& window_dir, StateStore* store, const Registry& registry, const std::string& key_file,
              const std::string& format) {
  absl::StatusOr<std::string> key = ReadKeyFile(key_file);
  absl::StatusOr<std::string> summary = key.ok() ? VerifyWindowFiles(window_dir, store, registry, *key) : key.status();
  if (format == "json") {
    nlohmann::json verdict = {{"window_dir", window_dir}, {"verified", summary.ok()}};
    if (summary.ok()) {
      verdict["summary"] = *summary;
    } else {
      verdict["code"] = absl::StatusCodeToString(summary.status().code());
      verdict["error"] = std::string(summary.status().message());
    }
    std::cout << verdict.dump(2) << "\n";
    return summary.ok() ? 0 : 1;
  }
  if (!summary.ok()) {
    std::cerr << "clearing-report verify: " << window_dir << ": " << summary.status().message() << "\n";
    return 1;
  }
  std::cout << *summary << "\n";
  return 0;
}

}  // namespace yrd
