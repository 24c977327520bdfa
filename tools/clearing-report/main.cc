// clearing-report: read-only reports for reconciliation staff and the hotline, from the state
// store of a running or stopped clearingd (it opens the store as a secondary instance, so it
// never blocks or changes the daemon). Output as an aligned table, CSV or JSON.
//   positions  positions per window, by province, bank, fund, merchant or institution
//   outcome    a window's counts and positions as the outcome JSON the generator's oracle uses
//   progress   what the store has committed: counts over all windows and partition offsets
//   txn <id>   one transaction's fate
//   exceptions  the rejected messages, by topic, partition and offset (filtered by window, reason)
//   statement <merchant>  a merchant's statement per window: taps, gross, refunds, fee and net per
//              settling bank, as the bank's file carries them
//   match <window-dir> <returned-file>  a bank's or fund's returned file against our detail file
//   card <number>  a card's history for the hotline: its applied events, refunds and
//              cancellations (the number is hashed with the card-token key; output masked)
//   verify <window-dir>  a window's clearing files against their MANIFEST, trailers and the store
#include <unistd.h>

#include <charconv>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>

#include "CLI/CLI.hpp"
#include "adapters/crypto/hmac.h"
#include "adapters/crypto/payload_sealer.h"
#include "adapters/rocksdb/rocks_store.h"
#include "engine/base/money.h"
#include "engine/base/strings.h"
#include "engine/clearing/clearing_files.h"
#include "engine/clearing/positions.h"
#include "engine/ledger/ledger.h"
#include "engine/merge/store_union.h"
#include "engine/readers/store_readers.h"
#include "engine/registry/registry.h"
#include "engine/store/records.h"
#include "nlohmann/json.hpp"
#include "tools/clearing-report/match.h"
#include "tools/clearing-report/verify.h"

namespace yrd {
namespace {

// What a column holds. Cells are text in every format; JSON gives each its type: a number, a
// boolean ("yes"/"no" in tables and CSV), or a string, and null for an empty cell.
enum class Column : uint8_t { kText, kNumber, kFlag };
constexpr Column kText = Column::kText;
constexpr Column kNumber = Column::kNumber;
constexpr Column kFlag = Column::kFlag;

struct TableOut {
  std::vector<std::string> headers;
  std::vector<std::vector<std::string>> rows;
  std::vector<Column> types;  // numbers are right-aligned in tables
};

std::string Flag(bool value) { return value ? "yes" : "no"; }

std::string CsvField(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out.push_back('"');
    out.push_back(c);
  }
  return out + "\"";
}

void Print(const TableOut& t, const std::string& format) {
  if (format == "json") {
    nlohmann::json rows = nlohmann::json::array();
    for (const auto& row : t.rows) {
      nlohmann::json object = nlohmann::json::object();
      for (size_t i = 0; i < t.headers.size(); ++i) {
        const Column type = i < t.types.size() ? t.types[i] : kText;
        nlohmann::json& cell = object[t.headers[i]];
        int64_t number = 0;
        const char* const end = row[i].data() + row[i].size();
        const std::from_chars_result parsed = std::from_chars(row[i].data(), end, number);
        if (row[i].empty()) {
          cell = nullptr;
        } else if (type == kNumber && parsed.ec == std::errc() && parsed.ptr == end) {
          cell = number;
        } else if (type == kNumber) {
          cell = row[i];  // a figure read from a file that is not an integer (match): shown as it was
        } else if (type == kFlag) {
          cell = row[i] == "yes";
        } else {
          cell = row[i];
        }
      }
      rows.push_back(object);
    }
    std::cout << rows.dump(2) << "\n";
    return;
  }
  if (format == "csv") {
    for (size_t i = 0; i < t.headers.size(); ++i) std::cout << (i ? "," : "") << CsvField(t.headers[i]);
    std::cout << "\n";
    for (const auto& row : t.rows) {
      for (size_t i = 0; i < row.size(); ++i) std::cout << (i ? "," : "") << CsvField(row[i]);
      std::cout << "\n";
    }
    return;
  }
  std::vector<size_t> widths(t.headers.size());
  for (size_t i = 0; i < t.headers.size(); ++i) widths[i] = t.headers[i].size();
  for (const auto& row : t.rows) {
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  auto line = [&](const std::vector<std::string>& cells) {
    for (size_t i = 0; i < cells.size(); ++i) {
      const bool right = i < t.types.size() && t.types[i] == kNumber;
      const std::string pad(widths[i] - cells[i].size(), ' ');
      std::cout << (i ? "  " : "") << (right ? pad + cells[i] : cells[i] + (i + 1 < cells.size() ? pad : ""));
    }
    std::cout << "\n";
  };
  line(t.headers);
  std::vector<std::string> rule;
  for (size_t w : widths) rule.push_back(std::string(w, '-'));
  line(rule);
  for (const auto& row : t.rows) line(row);
}

// The shard stores a reader looks for in one store directory (shard-0 up to this).
constexpr int kShardStoresMax = 64;

// A secondary instance in a scratch directory that is removed on exit.
class StoreReader {
 public:
  static absl::StatusOr<std::unique_ptr<StoreReader>> Open(const std::string& path) {
    const bool sharded = !std::filesystem::exists(std::filesystem::path(path) / "CURRENT") &&
                         std::filesystem::exists(std::filesystem::path(path) / "shard-0" / "CURRENT");
    if (!sharded && !std::filesystem::exists(std::filesystem::path(path) / "CURRENT")) {
      return absl::NotFoundError(Cat("no state store at ", path));
    }
    auto reader = std::unique_ptr<StoreReader>(new StoreReader());
    char pattern[] = "/tmp/clearing-report-XXXXXX";
    if (::mkdtemp(pattern) == nullptr) return absl::InternalError("cannot create a scratch directory in /tmp");
    reader->scratch_ = pattern;
    if (sharded) {
      if (absl::Status s = reader->JoinShards(path); !s.ok()) return s;
    } else {
      auto store = RocksStore::OpenSecondary(path, reader->scratch_);
      if (!store.ok()) return store.status();
      reader->store_ = *std::move(store);
      if (absl::Status s = reader->store_->CatchUp(); !s.ok()) return s;
      if (absl::Status s = RequireCurrentStoreFormat(*reader->store_); !s.ok()) return s;
      if (absl::Status s = reader->JoinStandby(path); !s.ok()) return s;
    }
    // Never a silently partial answer: a store of a group member that consumes only some of the
    // partitions says which ones its answers lack.
    absl::StatusOr<std::optional<Ownership>> ownership = ReadOwnership(*reader->store_);
    if (!ownership.ok()) return ownership.status();
    if (ownership->has_value()) {
      if (const std::string lacking = DescribeMissingPartitions(**ownership); !lacking.empty()) {
        std::cerr << "clearing-report: warning: " << lacking << "\n";
      }
    }
    // Nor for a window whose records of a partition this store never got (its state came from a
    // changelog snapshot taken after the window's files were written).
    absl::StatusOr<std::map<WindowDay, std::vector<SourcePartition>>> shares = ReadLackingShares(*reader->store_);
    if (!shares.ok()) return shares.status();
    if (const std::string lacking = DescribeLackingShares(*shares); !lacking.empty()) {
      std::cerr << "clearing-report: warning: " << lacking << "\n";
    }
    return reader;
  }
  ~StoreReader() {
    store_.reset();
    std::error_code ignored;
    if (!scratch_.empty()) std::filesystem::remove_all(scratch_, ignored);
  }
  RocksStore& store() { return *store_; }

  // A group member with a standby (kafka.standby) holds the partitions it does not own in
  // <store>.standby: the answers are then those of the union, each partition from whichever store
  // holds its later commit, copied into a store in the scratch directory.
  absl::Status JoinStandby(const std::string& path) {
    std::filesystem::path standby_path(path);
    if (!standby_path.has_filename()) standby_path = standby_path.parent_path();
    standby_path += ".standby";
    if (!std::filesystem::exists(standby_path / "CURRENT")) return absl::OkStatus();
    auto standby = RocksStore::OpenSecondary(standby_path.string(), scratch_ + "/standby");
    if (!standby.ok()) return standby.status();
    if (absl::Status s = (*standby)->CatchUp(); !s.ok()) return s;
    auto joined = RocksStore::Open(scratch_ + "/union", {});
    if (!joined.ok()) return joined.status();
    absl::StatusOr<std::vector<SourcePartition>> taken = BuildStoreUnion(*store_, **standby, **joined);
    if (!taken.ok()) return taken.status();
    if (!taken->empty()) {
      std::string names;
      for (const SourcePartition owner : *taken) names += Cat(names.empty() ? "" : ", ", FormatOwner(owner));
      std::cerr << "clearing-report: " << taken->size() << " partitions answered from the standby store "
                << standby_path.string() << " (as of its last pass): " << names << "\n";
    }
    store_ = *std::move(joined);
    return absl::OkStatus();
  }

  // A process of several ledger shards (pipeline.shards) keeps a store per shard in
  // <store>/shard-<k>: the answers are then those of their union, each partition from the shard
  // with its later commit, built in the scratch directory.
  absl::Status JoinShards(const std::string& path) {
    std::vector<std::unique_ptr<RocksStore>> shards;
    for (int shard = 0; shard < kShardStoresMax; ++shard) {
      const std::filesystem::path shard_path = std::filesystem::path(path) / Cat("shard-", shard);
      if (!std::filesystem::exists(shard_path / "CURRENT")) break;
      auto store = RocksStore::OpenSecondary(shard_path.string(), Cat(scratch_, "/shard-", shard));
      if (!store.ok()) return store.status();
      if (absl::Status s = (*store)->CatchUp(); !s.ok()) return s;
      if (absl::Status s = RequireCurrentStoreFormat(**store); !s.ok()) return s;
      shards.push_back(*std::move(store));
    }
    std::vector<StateStore*> stores;
    for (const std::unique_ptr<RocksStore>& shard : shards) stores.push_back(shard.get());
    auto joined = RocksStore::Open(scratch_ + "/union", {});
    if (!joined.ok()) return joined.status();
    if (absl::Status s = BuildShardUnion(stores, **joined); !s.ok()) return s;
    store_ = *std::move(joined);
    return absl::OkStatus();
  }

  // Windows that have counters, in order.
  absl::StatusOr<std::map<WindowDay, WindowCounters>> Counters() { return ReadAllWindowCounters(*store_); }

  absl::StatusOr<std::vector<WindowLine>> Lines(WindowDay day) { return ReadWindowLines(*store_, day); }

 private:
  StoreReader() = default;
  std::string scratch_;
  std::unique_ptr<RocksStore> store_;
};

int Fail(const absl::Status& status) {
  std::cerr << "clearing-report: " << status.message() << "\n";
  return 1;
}

// How a reader charges one window: a closed one at the schedule frozen with it (LoadClosedWindow,
// as its files do), an open one at the registry's (its figures move until the close).
struct WindowCharging {
  FeeSchedule fees;
  bool closed = false;
  int64_t retired_at_ms = 0;  // its records left the store: nothing to compute from
};
absl::StatusOr<WindowCharging> ChargingOf(StoreReader& reader, const Registry& registry, WindowDay day) {
  absl::StatusOr<ClosedWindow> closed = LoadClosedWindow(reader.store(), day, registry);
  if (closed.ok()) return WindowCharging{closed->fees, true, closed->retired_at_ms};
  if (closed.status().code() != absl::StatusCode::kFailedPrecondition) return closed.status();
  return WindowCharging{FeeSchedule::FromRegistry(registry), false, 0};
}

absl::Status RetiredError(WindowDay day, int64_t retired_at_ms) {
  return absl::FailedPreconditionError(Cat("window ", FormatWindowDay(day), " was retired from the store at ",
                                           FormatChinaTime(retired_at_ms),
                                           " (store.window_retention_days): read its clearing files instead"));
}

absl::StatusOr<Outcome> ReadOutcome(StoreReader& reader, const Registry& registry, const std::string& window) {
  auto counters = reader.Counters();
  if (!counters.ok()) return counters.status();
  std::optional<WindowDay> only;
  if (!window.empty()) {
    only = ParseWindowDate(window);
    if (!only) return absl::InvalidArgumentError(Cat("--window must be YYYYMMDD, got ", window));
  }
  Outcome outcome;
  for (const auto& [day, c] : *counters) {
    if (only && day != *only) continue;
    absl::StatusOr<WindowCharging> charging = ChargingOf(reader, registry, day);
    if (!charging.ok()) return charging.status();
    if (charging->retired_at_ms != 0) {
      if (only) return RetiredError(day, charging->retired_at_ms);
      std::cerr << "clearing-report: " << RetiredError(day, charging->retired_at_ms).message() << "\n";
      continue;
    }
    auto lines = reader.Lines(day);
    if (!lines.ok()) return lines.status();
    auto window_outcome = ComputeWindowOutcome(*lines, c, charging->fees);
    if (!window_outcome.ok()) return window_outcome.status();
    outcome.windows[day] = *std::move(window_outcome);
  }
  return outcome;
}

int Positions(StoreReader& reader, const Registry& registry, const std::string& window, const std::string& by,
              const std::string& scheme, const std::string& format) {
  auto outcome = ReadOutcome(reader, registry, window);
  if (!outcome.ok()) return Fail(outcome.status());
  TableOut t{{"window", "scheme", "kind", "id", "name", "position_fen"}, {}, {kText, kText, kText, kText, kText, kNumber}};
  auto name_of = [&](const std::string& kind, const std::string& id) -> std::string {
    if (kind == "province") {
      const Province* p = registry.FindProvince(id);
      return p ? p->name : "";
    }
    if (kind == "bank") {
      const Bank* b = registry.FindBank(id);
      return b ? b->name : "";
    }
    if (kind == "fund") {
      const Fund* f = registry.FindFund(id);
      return f ? f->name : "";
    }
    const Merchant* m = registry.FindMerchant(id);
    return m ? m->name : "";
  };
  for (const auto& [day, w] : outcome->windows) {
    const std::pair<const char*, std::vector<std::pair<const char*, const PositionMap*>>> schemes[] = {
        {"bank", {{"province", &w.bank_scheme_province}, {"bank", &w.bank_scheme_bank}, {"merchant", &w.bank_scheme_merchant}}},
        {"fund", {{"province", &w.fund_scheme_province}, {"fund", &w.fund_scheme_fund}, {"institution", &w.fund_scheme_institution}}},
    };
    for (const auto& [scheme_name, kinds] : schemes) {
      if (!scheme.empty() && scheme != scheme_name) continue;
      for (const auto& [kind, map] : kinds) {
        if (!by.empty() && by != kind) continue;
        for (const auto& [id, fen] : *map) {
          t.rows.push_back({FormatWindowDay(day), scheme_name, kind, id, name_of(kind, id), std::to_string(fen)});
        }
      }
    }
  }
  Print(t, format);
  return 0;
}

int Progress(StoreReader& reader, const std::string& format) {
  auto counters = reader.Counters();
  if (!counters.ok()) return Fail(counters.status());
  int64_t applied = 0, duplicates = 0, exceptions = 0, late = 0;
  for (const auto& [day, c] : *counters) {
    applied += c.applied_count;
    duplicates += c.exact_duplicate_count;
    late += c.late_count;
    for (int64_t n : c.exception_counts) exceptions += n;
  }
  std::string value;
  bool found = false;
  if (absl::Status s = reader.store().Get(Table::kMeta, kCommitSequenceKey, value, found); !s.ok()) return Fail(s);
  const uint64_t sequence = found && value.size() == 8 ? ReadBigEndian64(value.data()) : 0;
  if (format == "json") {
    nlohmann::json j = {{"messages", applied + duplicates + exceptions}, {"applied", applied},
                        {"exact_duplicates", duplicates},           {"exceptions", exceptions},
                        {"late", late},                             {"commit_sequence", sequence}};
    std::cout << j.dump() << "\n";
    return 0;
  }
  TableOut t{{"messages", "applied", "exact_duplicates", "exceptions", "late", "commit_sequence"}, {}, {kNumber, kNumber, kNumber, kNumber, kNumber, kNumber}};
  t.rows.push_back({std::to_string(applied + duplicates + exceptions), std::to_string(applied), std::to_string(duplicates),
                    std::to_string(exceptions), std::to_string(late), std::to_string(sequence)});
  Print(t, format);
  return 0;
}

// Visits every exception record in key order (topic, partition, offset); DataLoss if one is
// damaged.
absl::Status ForEachException(StoreReader& reader, const std::function<void(const ExceptionRecord&)>& visit) {
  absl::Status damaged;
  absl::Status s = reader.store().Scan(Table::kExceptions, {}, {}, [&](std::string_view key, std::string_view v) {
    ExceptionRecord e;
    if (!DecodeExceptionRecord(key, v, e)) {
      damaged = absl::DataLossError("an exception record is damaged");
      return false;
    }
    visit(e);
    return true;
  });
  return s.ok() ? damaged : s;
}

// One transaction's fate: its record in each family, and every rejected message that carried the
// id (as its txn_id, as the original it named, or as its Kafka key, which finds a message whose
// id could not be read or broke the id rule).
int Txn(StoreReader& reader, const std::string& txn_id, const std::string& format) {
  if (txn_id.empty() || txn_id.size() > kExceptionTextBytesMax) {
    return Fail(absl::InvalidArgumentError(Cat("a txn id or Kafka key is 1 to ", kExceptionTextBytesMax, " bytes")));
  }
  TableOut t{{"txn_id", "family", "kind", "fate", "window", "late", "partition", "offset", "amount_fen", "refunded_fen",
              "cancelled", "exact_duplicates", "original_txn_id", "message_key", "detail"},
             {},
             {kText, kText, kText, kText, kText, kFlag, kNumber, kNumber, kNumber, kNumber, kFlag, kNumber, kText, kText,
              kText}};
  absl::StatusOr<LineIds> line_ids = LoadLineIds(reader.store());
  if (!line_ids.ok()) return Fail(line_ids.status());
  for (const Family family : {Family::kTaps, Family::kMedical}) {
    if (!IsValidId(txn_id)) break;  // no record is kept under an id that breaks the rule
    // One record per partition that holds the id (more than one only from a producer that keyed
    // the id's messages to several partitions).
    absl::StatusOr<std::vector<OwnedTxnRecord>> found = FindTxnRecordsOfId(reader.store(), family, txn_id);
    if (!found.ok()) return Fail(found.status());
    for (const OwnedTxnRecord& owned : *found) {
      TxnRecord r;
      if (!DecodeTxnRecord(owned.value, *line_ids, r)) {
        return Fail(absl::DataLossError(Cat("the record of ", txn_id, " is damaged")));
      }
      std::string fate = "applied";
      if (r.kind == EventKind::kTap && r.refunded_fen > 0) fate = r.refunded_fen == r.amount_fen ? "refunded" : "partly_refunded";
      if (r.cancelled) fate = "cancelled";
      t.rows.push_back({txn_id, family == Family::kTaps ? "taps" : "medical", std::string(EventKindName(r.kind)), fate,
                        FormatWindowDay(r.window), Flag(r.late), std::to_string(r.partition),
                        std::to_string(r.offset), std::to_string(r.amount_fen), std::to_string(r.refunded_fen),
                        Flag(r.cancelled), std::to_string(r.duplicate_count), std::string(r.original_txn_id), "",
                        std::string(r.line_key)});
    }
  }
  const absl::Status s = ForEachException(reader, [&](const ExceptionRecord& e) {
    if (e.txn_id != txn_id && e.original_txn_id != txn_id && e.message_key != txn_id) return;
    std::string detail = Cat(e.detail, e.detail.empty() ? "" : "; ", "digest ", DigestHex(e.message_digest));
    if (e.reason == Reason::kDuplicateConflict) detail += Cat(", first digest ", DigestHex(e.first_digest));
    t.rows.push_back({std::string(e.txn_id), e.topic == SourceTopic::kTaps ? "taps" : "medical", "",
                      Cat("rejected:", ReasonName(e.reason)), FormatWindowDay(e.window), "",
                      std::to_string(e.partition), std::to_string(e.offset), "", "", "", "",
                      std::string(e.original_txn_id), std::string(e.message_key), detail});
  });
  if (!s.ok()) return Fail(s);
  if (t.rows.empty()) {
    std::cerr << "clearing-report: no transaction or rejected message with id or key " << txn_id << "\n";
    return 3;
  }
  Print(t, format);
  return 0;
}

// A merchant's statement: per window (the one given or every one) and bank it settles at, the
// MERCHANT_CREDIT line of that bank's file. A closed window charges the fees frozen at its close,
// an open one the registry's (its figures are provisional until it closes).
int Statement(StoreReader& reader, const Registry& registry, const std::string& merchant_id, const std::string& window,
              const std::string& format) {
  std::optional<WindowDay> only;
  if (!window.empty()) {
    only = ParseWindowDate(window);
    if (!only) return Fail(absl::InvalidArgumentError(Cat("--window must be YYYYMMDD, got '", window, "'")));
  }
  absl::StatusOr<std::map<WindowDay, WindowCounters>> counters = reader.Counters();
  if (!counters.ok()) return Fail(counters.status());
  const Merchant* merchant = registry.FindMerchant(merchant_id);
  TableOut t{{"window", "state", "merchant", "name", "bank", "category", "count", "gross_fen", "refund_count",
              "refunds_fen", "fee_fen", "net_fen"},
             {},
             {kText, kText, kText, kText, kText, kText, kNumber, kNumber, kNumber, kNumber, kNumber, kNumber}};
  for (const auto& [day, c] : *counters) {
    if (only && day != *only) continue;
    absl::StatusOr<WindowCharging> charging = ChargingOf(reader, registry, day);
    if (!charging.ok()) return Fail(charging.status());
    const bool closed = charging->closed;
    if (charging->retired_at_ms != 0) {
      if (only) return Fail(RetiredError(day, charging->retired_at_ms));
      continue;
    }
    absl::StatusOr<std::vector<WindowLine>> lines = reader.Lines(day);
    if (!lines.ok()) return Fail(lines.status());
    absl::StatusOr<std::vector<MerchantStatementLine>> statement =
        MerchantStatement(*lines, charging->fees, merchant_id);
    if (!statement.ok()) return Fail(statement.status());
    for (const MerchantStatementLine& line : *statement) {
      t.rows.push_back({FormatWindowDay(day), closed ? "closed" : "open", merchant_id, merchant ? merchant->name : "",
                        line.bank_id, std::string(CategoryName(line.category)), std::to_string(line.count),
                        std::to_string(line.gross_fen), std::to_string(line.refund_count),
                        std::to_string(line.refunds_fen), std::to_string(line.fee_fen), std::to_string(line.net_fen)});
    }
  }
  if (t.rows.empty() && merchant == nullptr) {
    std::cerr << "clearing-report: merchant " << merchant_id << " is not in the registry and has no taps in the store\n";
    return 3;
  }
  Print(t, format);
  return 0;
}

// A card's history: the applied records whose card token is the number's, found by hashing the
// number with the daemon's card-token key, and the refunds and cancellations of those (which
// carry no card of their own), in the window given or in every window. Only the masked number
// is printed; the number itself is never echoed, not even in an error.
int Card(StoreReader& reader, const std::string& typed_card_no, const std::string& key_file, const std::string& window,
         const std::string& format) {
  // As a caller reads it out: "6217 0012 3456 7890 123" or with dashes is the same number.
  std::string card_no;
  for (const char c : typed_card_no) {
    if (c != ' ' && c != '-' && c != '\t') card_no.push_back(c);
  }
  if (!IsValidId(card_no)) {
    (void)Fail(absl::InvalidArgumentError("a card number is 1 to 64 characters of [A-Za-z0-9_] (spaces and dashes are ignored)"));
    return 2;
  }
  std::vector<WindowDay> days;
  if (!window.empty()) {
    const std::optional<WindowDay> day = ParseWindowDate(window);
    if (!day) return Fail(absl::InvalidArgumentError(Cat("--window must be YYYYMMDD, got '", window, "'")));
    days.push_back(*day);
  } else {
    absl::StatusOr<std::map<WindowDay, WindowCounters>> counters = reader.Counters();
    if (!counters.ok()) return Fail(counters.status());
    for (const auto& [day, c] : *counters) days.push_back(day);
  }
  absl::StatusOr<std::string> key = ReadKeyFile(key_file);
  if (!key.ok()) return Fail(key.status());
  absl::StatusOr<std::unique_ptr<HmacSha256>> tokenizer = HmacSha256::Create(*key);
  if (!tokenizer.ok()) return Fail(tokenizer.status());
  // Another key would give an empty history that looks like a card with no events.
  absl::StatusOr<std::string> key_check = DeriveKey(*key, kCardTokenKeyCheckLabel);
  if (!key_check.ok()) return Fail(key_check.status());
  std::string stored_check;
  bool check_found = false;
  if (absl::Status s = reader.store().Get(Table::kMeta, kCardTokenKeyCheckKey, stored_check, check_found); !s.ok()) {
    return Fail(s);
  }
  if (check_found && stored_check != *key_check) {
    (void)Fail(absl::InvalidArgumentError(
        Cat(key_file, " is not the card-token key this store's tokens were made with (its check value differs): "
                      "give clearingd's privacy.card_token_key_file")));
    return 2;
  }
  if (!check_found) {
    std::cerr << "clearing-report: the store has no card-token key check (written by an earlier version): an empty "
                 "history may also mean another key\n";
  }
  CardToken token{};
  (*tokenizer)->Tokenize(card_no, token);
  absl::StatusOr<LineIds> line_ids = LoadLineIds(reader.store());
  if (!line_ids.ok()) return Fail(line_ids.status());

  struct Row {
    WindowDay day;
    int64_t occurred_at_ms;
    std::vector<std::string> cells;
  };
  std::vector<Row> rows;
  absl::flat_hash_set<std::string, StringHash, StringEq> card_txn_ids;  // the card's own events, whose refunds and cancellations follow them
  for (const WindowDay day : days) {
    absl::StatusOr<std::optional<WindowRecord>> record = ReadWindowRecord(reader.store(), day);
    if (!record.ok()) return Fail(record.status());
    if (record->has_value() && (*record)->retired_at_ms != 0) {
      std::cerr << "clearing-report: " << RetiredError(day, (*record)->retired_at_ms).message() << "\n";
      continue;
    }
    // The card's own events first, then every record of the window again for them and for the
    // refunds and cancellations of them (of this window or an earlier one), whichever partition
    // they came from.
    auto collect = [&](SourcePartition, const AppliedRecord& r) {
      if (r.card_token == token) card_txn_ids.emplace(r.txn_id);
      return true;
    };
    if (const absl::Status s = VisitAppliedRecords(reader.store(), day, *line_ids, collect); !s.ok()) return Fail(s);
    auto visit = [&](SourcePartition, const AppliedRecord& r) {
      const bool own = r.card_token == token;
      if (!own && (r.original_txn_id.empty() || !card_txn_ids.contains(r.original_txn_id))) return true;
      std::string merchant;
      if (const std::optional<TapLineParts> tap = ParseTapLineKey(r.line_key)) {
        merchant = std::string(tap->merchant);
      } else if (const std::optional<SettlementLineParts> settlement = ParseSettlementLineKey(r.line_key)) {
        merchant = std::string(settlement->institution);
      }
      rows.push_back({day, r.occurred_at_ms,
                      {FormatWindowDay(day), FormatChinaTime(r.occurred_at_ms), std::string(r.txn_id),
                       std::string(EventKindName(r.kind)), std::to_string(r.amount_fen), Flag(r.late),
                       std::string(r.card_masked), merchant, std::string(r.terminal_id),
                       std::string(r.original_txn_id)}});
      return true;
    };
    const absl::Status s = VisitAppliedRecords(reader.store(), day, *line_ids, visit);
    if (!s.ok()) return Fail(s);
  }
  std::stable_sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
    return a.day != b.day ? a.day < b.day : a.occurred_at_ms < b.occurred_at_ms;
  });
  TableOut t{{"window", "occurred", "txn_id", "kind", "amount_fen", "late", "card", "merchant", "terminal",
              "original_txn_id"},
             {},
             {kText, kText, kText, kText, kNumber, kFlag, kText, kText, kText, kText}};
  for (Row& row : rows) t.rows.push_back(std::move(row.cells));
  Print(t, format);
  return 0;
}

// Reads a whole file of at most `bytes_max` bytes.
absl::StatusOr<std::string> ReadWholeFile(const std::string& path, size_t bytes_max) {
  std::error_code error;
  const uintmax_t size = std::filesystem::file_size(path, error);
  if (error) return absl::NotFoundError(Cat("cannot read ", path, ": ", error.message()));
  if (size > bytes_max) return absl::InvalidArgumentError(Cat(path, " is larger than ", bytes_max, " bytes"));
  std::ifstream in(path, std::ios::binary);
  std::string text(static_cast<size_t>(size), '\0');
  if (!in.read(text.data(), static_cast<std::streamsize>(text.size()))) {
    return absl::UnavailableError(Cat("cannot read ", path));
  }
  return text;
}

// The `match` subcommand: the returned file against our detail file of its header's window and
// participant under `window_dir`. Prints the differences; exit 0 when every record matches, 1
// when some do not, 2 when a file cannot be read or is not a detail file.
int Match(const std::string& window_dir, const std::string& returned_path, const std::string& format) {
  auto cannot_compare = [](const absl::Status& status) {
    (void)Fail(status);
    return 2;
  };
  absl::StatusOr<std::string> theirs = ReadWholeFile(returned_path, kReturnedFileBytesMax);
  if (!theirs.ok()) return cannot_compare(theirs.status());
  absl::StatusOr<DetailHeader> header = ParseDetailHeader(*theirs);
  if (!header.ok()) return cannot_compare(absl::InvalidArgumentError(Cat(returned_path, ": ", header.status().message())));
  const std::string our_path = Cat(window_dir, header->format == "YRD-BANK-DETAIL" ? "/banks/" : "/funds/",
                                   header->participant_id, ".detail.txt");
  absl::StatusOr<std::string> ours = ReadWholeFile(our_path, kReturnedFileBytesMax);
  if (!ours.ok()) return cannot_compare(ours.status());
  absl::StatusOr<MatchResult> result = MatchReturnedFile(*ours, *theirs);
  if (!result.ok()) return cannot_compare(result.status());
  TableOut t{{"status", "txn_id", "kind", "field", "ours", "theirs"}, {}, {kText, kText, kText, kText, kNumber, kNumber}};
  int64_t missing = 0, unexpected = 0, mismatched = 0;
  for (const MatchDifference& d : result->differences) {
    const char* status = "mismatched";
    if (d.kind == MatchDifference::Kind::kMissing) {
      status = "missing";
      ++missing;
    } else if (d.kind == MatchDifference::Kind::kUnexpected) {
      status = "unexpected";
      ++unexpected;
    } else {
      ++mismatched;
    }
    t.rows.push_back({status, d.txn_id, d.event_kind, d.field, d.ours, d.theirs});
  }
  Print(t, format);
  std::cerr << "clearing-report match: " << result->participant_id << " " << result->window_date << ": "
            << result->matched_count << " matched, " << missing << " missing from the returned file, " << unexpected
            << " not in ours, " << mismatched << " amounts differ\n";
  return result->differences.empty() ? 0 : 1;
}

// Rows `exceptions` prints unless told otherwise (--limit).
constexpr int64_t kExceptionsListedDefault = 1000;

int Exceptions(StoreReader& reader, const std::string& window, const std::string& reason_name, int64_t limit,
               const std::string& format) {
  std::optional<WindowDay> only_window;
  if (!window.empty()) {
    only_window = ParseWindowDate(window);
    if (!only_window) return Fail(absl::InvalidArgumentError(Cat("--window must be YYYYMMDD, got '", window, "'")));
  }
  std::optional<Reason> only_reason;
  if (!reason_name.empty()) {
    only_reason = ReasonFromName(reason_name);
    if (!only_reason) return Fail(absl::InvalidArgumentError(Cat("unknown reason '", reason_name, "'")));
  }
  TableOut t{{"topic", "partition", "offset", "reason", "detail", "window", "txn_id", "original_txn_id", "message_key",
              "digest", "first_digest"},
             {},
             {kText, kNumber, kNumber, kText, kText, kText, kText, kText, kText, kText, kText}};
  int64_t matched = 0;
  const absl::Status s = ForEachException(reader, [&](const ExceptionRecord& e) {
    if (only_window && e.window != *only_window) return;
    if (only_reason && e.reason != *only_reason) return;
    if (limit == 0 || matched < limit) {
      t.rows.push_back({std::string(e.topic == SourceTopic::kTaps ? kTapsTopic : kMedicalTopic),
                        std::to_string(e.partition), std::to_string(e.offset), std::string(ReasonName(e.reason)),
                        std::string(e.detail), FormatWindowDay(e.window), std::string(e.txn_id),
                        std::string(e.original_txn_id), std::string(e.message_key), DigestHex(e.message_digest),
                        e.reason == Reason::kDuplicateConflict ? DigestHex(e.first_digest) : std::string()});
    }
    ++matched;
  });
  if (!s.ok()) return Fail(s);
  Print(t, format);
  if (limit != 0 && matched > limit) {
    std::cerr << "clearing-report: " << matched - limit << " more not shown (--limit " << limit
              << "; --limit 0 lists all)\n";
  }
  return 0;
}

}  // namespace
}  // namespace yrd

int main(int argc, char** argv) {
  CLI::App app{"clearing-report: positions, transactions and progress from the clearing store"};
  app.require_subcommand(1);
  std::string store_path, format = "table", registry_path, window, by, scheme, txn_id, window_dir;
  app.add_option("--store", store_path,
                 "the state store directory (store.path of clearingd); every subcommand but match needs it, and "
                 "verify without it checks the files on their own");
  app.add_option("--format", format, "table, csv or json")->check(CLI::IsMember({"table", "csv", "json"}));
  CLI::App* positions = app.add_subcommand("positions", "positions per window, province, bank, fund, merchant");
  positions->add_option("--registry", registry_path, "registry (names and fee rates)")->required();
  positions->add_option("--window", window, "YYYYMMDD (default: every window)");
  positions->add_option("--by", by, "province, bank, merchant, fund or institution")
      ->check(CLI::IsMember({"province", "bank", "merchant", "fund", "institution"}));
  positions->add_option("--scheme", scheme, "bank or fund")->check(CLI::IsMember({"bank", "fund"}));
  CLI::App* outcome = app.add_subcommand("outcome", "counts and positions as outcome JSON (for comparisons)");
  std::string expect_path;
  outcome->add_option("--registry", registry_path, "registry (fee rates)")->required();
  outcome->add_option("--window", window, "YYYYMMDD (default: every window)");
  outcome->add_option("--expect", expect_path,
                      "an expected outcome (the generator's oracle): print the differences instead, exit 1 if any");
  CLI::App* progress = app.add_subcommand("progress", "committed counts over all windows");
  CLI::App* txn = app.add_subcommand("txn", "one transaction's fate");
  txn->add_option("txn_id", txn_id, "the transaction id")->required();
  CLI::App* exceptions = app.add_subcommand("exceptions", "the rejected messages, by topic, partition and offset");
  std::string reason_name;
  int64_t limit = yrd::kExceptionsListedDefault;
  exceptions->add_option("--window", window, "YYYYMMDD: only those counted in this window");
  exceptions->add_option("--reason", reason_name, "only this reason (malformed, duplicate_conflict, ...)");
  exceptions->add_option("--limit", limit, "rows at most (default 1000; 0: all)")->check(CLI::NonNegativeNumber);
  exceptions->fallthrough();  // --store and --format may follow the subcommand
  CLI::App* statement = app.add_subcommand("statement", "a merchant's statement per window and settling bank");
  std::string merchant_id;
  statement->add_option("merchant_id", merchant_id, "the merchant")->required();
  statement->add_option("--registry", registry_path, "registry (names and, for open windows, fee rates)")->required();
  statement->add_option("--window", window, "YYYYMMDD (default: every window)");
  statement->fallthrough();  // --store and --format may follow the subcommand
  CLI::App* match = app.add_subcommand("match", "a bank's or fund's returned file against our detail file");
  std::string returned_path;
  match->add_option("window_dir", window_dir, "the window's directory, <output_dir>/<YYYYMMDD>")->required();
  match->add_option("returned_file", returned_path, "the participant's returned file (our detail layout)")->required();
  match->fallthrough();  // --store and --format may follow the subcommand
  CLI::App* card = app.add_subcommand("card", "a card's history by card number (hashed; printed masked)");
  std::string card_no, card_key_file;
  card->add_option("card_number", card_no, "the card number (never printed)")->required();
  card->add_option("--key-file", card_key_file, "the card-token key file of clearingd (privacy.card_token_key_file)")
      ->required();
  card->add_option("--window", window, "YYYYMMDD (default: every window)");
  card->fallthrough();  // --store and --format may follow the subcommand
  CLI::App* verify = app.add_subcommand("verify", "check a window's files against their MANIFEST, trailers and the store");
  std::string key_file;
  verify->add_option("window_dir", window_dir, "the window's directory, <output_dir>/<YYYYMMDD>")->required();
  verify->add_option("--registry", registry_path, "registry (the banks and funds that get files)")->required();
  verify->add_option("--key-file", key_file, "the MANIFEST key file (hex)")->required();
  verify->fallthrough();  // --store may follow the subcommand
  CLI11_PARSE(app, argc, argv);

  if (*match) return yrd::Match(window_dir, returned_path, format);  // files only: no store needed
  if (*verify && store_path.empty()) {
    auto registry = yrd::Registry::FromFile(registry_path);
    if (!registry.ok()) return yrd::Fail(registry.status());
    return yrd::RunVerify(window_dir, nullptr, **registry, key_file, format);
  }
  if (store_path.empty()) return yrd::Fail(absl::InvalidArgumentError("--store is required for this subcommand"));
  auto reader = yrd::StoreReader::Open(store_path);
  if (!reader.ok()) return yrd::Fail(reader.status());
  if (*progress) return yrd::Progress(**reader, format);
  if (*txn) return yrd::Txn(**reader, txn_id, format);
  if (*exceptions) return yrd::Exceptions(**reader, window, reason_name, limit, format);
  if (*card) return yrd::Card(**reader, card_no, card_key_file, window, format);
  auto registry = yrd::Registry::FromFile(registry_path);
  if (!registry.ok()) return yrd::Fail(registry.status());
  if (*positions) return yrd::Positions(**reader, **registry, window, by, scheme, format);
  if (*statement) return yrd::Statement(**reader, **registry, merchant_id, window, format);
  if (*verify) return yrd::RunVerify(window_dir, &(*reader)->store(), **registry, key_file, format);
  auto result = yrd::ReadOutcome(**reader, **registry, window);
  if (!result.ok()) return yrd::Fail(result.status());
  if (expect_path.empty()) {
    std::cout << yrd::OutcomeToJson(*result).dump(2) << "\n";
    return 0;
  }
  std::ifstream expect_file(expect_path);
  if (!expect_file) return yrd::Fail(absl::NotFoundError(yrd::Cat("cannot read ", expect_path)));
  nlohmann::json expect_json;
  try {
    expect_json = nlohmann::json::parse(expect_file);
  } catch (const nlohmann::json::exception& error) {
    return yrd::Fail(absl::InvalidArgumentError(yrd::Cat(expect_path, ": ", error.what())));
  }
  auto expected = yrd::OutcomeFromJson(expect_json);
  if (!expected.ok()) return yrd::Fail(expected.status());
  const std::vector<std::string> diff = yrd::DiffOutcomes(*expected, *result, 200);
  for (const std::string& line : diff) std::cout << line << "\n";
  if (!diff.empty()) return 1;
  std::cout << "outcome matches " << expect_path << ": " << result->windows.size() << " window(s)\n";
  return 0;
}
