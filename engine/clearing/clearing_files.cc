#include "engine/clearing/clearing_files.h"

#include <algorithm>
#include <charconv>
#include <set>
#include <utility>

#include "engine/base/money.h"
#include "engine/base/strings.h"
#include "engine/clearing/outcome.h"
#include "engine/readers/store_readers.h"

namespace yrd {
namespace {

// ---- checked sums --------------------------------------------------------------------------------

// Adds `delta` to `total`; on int64 overflow leaves `total` and sets `overflowed`, so a long run
// of sums can be checked once at its end.
void Add(int64_t& total, int64_t delta, bool& overflowed) {
  const std::optional<int64_t> sum = CheckedAddFen(total, delta);
  if (sum) {
    total = *sum;
  } else {
    overflowed = true;
  }
}
int64_t Sub(int64_t a, int64_t b, bool& overflowed) {
  const std::optional<int64_t> difference = CheckedSubFen(a, b);
  if (!difference) overflowed = true;
  return difference.value_or(0);
}

// ---- record text ---------------------------------------------------------------------------------

void AppendInt(std::string& out, int64_t value) {
  char buffer[24];
  const auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
  out.append(buffer, result.ptr);
}
void Field(std::string& out, std::string_view value) {
  out.push_back('|');
  out.append(value);
}
void Field(std::string& out, int64_t value) {
  out.push_back('|');
  AppendInt(out, value);
}
// One whole record: its tag, each field after a '|', and the line end.
template <typename... Fields>
void Record(std::string& out, char tag, const Fields&... fields) {
  out.push_back(tag);
  (Field(out, fields), ...);
  out.push_back('\n');
}
void Pair(std::string& out, std::string_view key, std::string_view value) {
  out.push_back('|');
  out.append(key);
  out.push_back('=');
  out.append(value);
}
void Pair(std::string& out, std::string_view key, int64_t value) {
  out.push_back('|');
  out.append(key);
  out.push_back('=');
  AppendInt(out, value);
}

// A field written into a file must not contain the separator or a line end. Ids pass the id rule
// at decode time; this guards against a damaged record.
bool IsFieldSafe(std::string_view value) { return value.find_first_of("|\r\n") == std::string_view::npos; }

void AppendHeader(std::string& out, std::string_view format, const ClosedWindow& window, std::string_view id_key,
                  std::string_view id) {
  out.push_back('H');
  Pair(out, "format", format);
  Pair(out, "version", kClearingFileFormatVersion);
  Pair(out, "window_date", FormatWindowDay(window.day));
  if (!id_key.empty()) Pair(out, id_key, id);
  Pair(out, "closed_at", FormatChinaTime(window.closed_at_ms));
  out.push_back('\n');
}

std::string_view KindName(EventKind kind) {
  switch (kind) {
    case EventKind::kTap:
      return "TAP";
    case EventKind::kTapRefund:
      return "REFUND";
    case EventKind::kMedicalSettlement:
      return "SETTLEMENT";
    case EventKind::kMedicalCancellation:
      return "CANCELLATION";
  }
  return "UNKNOWN";
}

// ---- statements: what each bank's and fund's file says, from the netting lines ------------------

struct MerchantCredit {
  int64_t count = 0;
  int64_t gross_fen = 0;
  int64_t refund_count = 0;
  int64_t refunds_fen = 0;
  int64_t fee_fen = 0;
  int64_t net_fen = 0;  // gross - refunds - fee
  Category category = Category::kBus;
};
struct IssuerDebit {
  int64_t count = 0;
  int64_t gross_fen = 0;
  int64_t refund_count = 0;
  int64_t refunds_fen = 0;
  int64_t net_fen = 0;  // gross - refunds
};
struct FeeCredit {
  int64_t merchant_count = 0;
  int64_t base_fen = 0;  // the merchants' nets the fees were charged on
  int32_t basis_points = 0;
  int64_t fee_fen = 0;
};
struct BankStatement {
  std::map<std::string, MerchantCredit> merchant_credits;  // by merchant id
  std::map<std::string, IssuerDebit> issuer_debits;        // by acquiring (merchant) province
  std::map<std::string, FeeCredit> fee_credits;            // by category name, fee bank only
  int64_t total_debit_fen = 0;
  int64_t total_credit_fen = 0;
  int64_t net_position_fen = 0;
  [[nodiscard]] int64_t record_count() const {
    return static_cast<int64_t>(merchant_credits.size() + issuer_debits.size() + fee_credits.size());
  }
};

struct FundFlow {
  int64_t count = 0;
  int64_t cancelled_count = 0;
  int64_t fund_pay_fen = 0;  // net of cancellations, as every amount here
  int64_t account_pay_fen = 0;
  int64_t cash_pay_fen = 0;
  int64_t cleared_fen = 0;  // fund pay + account pay
};
struct FundStatement {
  std::map<std::string, FundFlow> payable_to_fund;         // by the institution's fund
  std::map<std::string, FundFlow> receivable_from_fund;    // by the insured fund
  std::map<std::string, FundFlow> payable_to_institution;  // by institution (merchant) id
  int64_t total_payable_fen = 0;
  int64_t total_receivable_fen = 0;
  int64_t net_position_fen = 0;
  int64_t payable_fund_pay_fen = 0;
  int64_t payable_account_pay_fen = 0;
  int64_t receivable_fund_pay_fen = 0;
  int64_t receivable_account_pay_fen = 0;
  [[nodiscard]] int64_t record_count() const {
    return static_cast<int64_t>(payable_to_fund.size() + receivable_from_fund.size() + payable_to_institution.size());
  }
};

// Window-wide totals for the summary.
struct WindowTotals {
  int64_t tap_count = 0;
  int64_t tap_gross_fen = 0;
  int64_t refund_count = 0;
  int64_t refund_fen = 0;
  int64_t fee_fen = 0;
  int64_t settlement_count = 0;
  int64_t cancellation_count = 0;
  int64_t cleared_fen = 0;
  int64_t cash_pay_fen = 0;
};

struct Statements {
  std::map<std::string, BankStatement> banks;
  std::map<std::string, FundStatement> funds;
  WindowTotals totals;
};

void AddFlow(FundFlow& into, const FundFlow& flow, bool& overflowed) {
  Add(into.count, flow.count, overflowed);
  Add(into.cancelled_count, flow.cancelled_count, overflowed);
  Add(into.fund_pay_fen, flow.fund_pay_fen, overflowed);
  Add(into.account_pay_fen, flow.account_pay_fen, overflowed);
  Add(into.cash_pay_fen, flow.cash_pay_fen, overflowed);
  Add(into.cleared_fen, flow.cleared_fen, overflowed);
}

// Builds every bank's and fund's statement from the lines; the merchants' credits and fees are
// ChargeMerchants', as the positions' are.
absl::StatusOr<Statements> BuildStatements(const std::vector<WindowLine>& lines, const FeeSchedule& fees) {
  Statements s;
  bool overflowed = false;
  for (const WindowLine& line : lines) {
    const LineTotals& t = line.totals;
    if (line.line_key.starts_with("T|")) {
      const std::optional<TapLineParts> parts = ParseTapLineKey(line.line_key);
      if (!parts) return absl::DataLossError(Cat("netting line '", line.line_key, "' is damaged"));
      const int64_t net_fen = Sub(t.amount_fen, t.reversed_amount_fen, overflowed);
      IssuerDebit& debit =
          s.banks[std::string(parts->issuer_bank)].issuer_debits[std::string(parts->merchant_province)];
      Add(debit.count, t.count, overflowed);
      Add(debit.gross_fen, t.amount_fen, overflowed);
      Add(debit.refund_count, t.reversal_count, overflowed);
      Add(debit.refunds_fen, t.reversed_amount_fen, overflowed);
      Add(debit.net_fen, net_fen, overflowed);
      Add(s.totals.tap_count, t.count, overflowed);
      Add(s.totals.tap_gross_fen, t.amount_fen, overflowed);
      Add(s.totals.refund_count, t.reversal_count, overflowed);
      Add(s.totals.refund_fen, t.reversed_amount_fen, overflowed);
    } else if (line.line_key.starts_with("M|")) {
      const std::optional<SettlementLineParts> parts = ParseSettlementLineKey(line.line_key);
      if (!parts) return absl::DataLossError(Cat("netting line '", line.line_key, "' is damaged"));
      FundFlow flow;
      flow.count = t.count;
      flow.cancelled_count = t.reversal_count;
      flow.fund_pay_fen = Sub(t.fund_pay_fen, t.reversed_fund_pay_fen, overflowed);
      flow.account_pay_fen = Sub(t.account_pay_fen, t.reversed_account_pay_fen, overflowed);
      flow.cash_pay_fen = Sub(t.cash_pay_fen, t.reversed_cash_pay_fen, overflowed);
      Add(flow.cleared_fen, flow.fund_pay_fen, overflowed);
      Add(flow.cleared_fen, flow.account_pay_fen, overflowed);
      const std::string insured(parts->insured_fund);
      const std::string institution_fund(parts->institution_fund);
      FundStatement& insured_statement = s.funds[insured];
      if (insured != institution_fund) {
        AddFlow(insured_statement.payable_to_fund[institution_fund], flow, overflowed);
        AddFlow(s.funds[institution_fund].receivable_from_fund[insured], flow, overflowed);
      }
      AddFlow(s.funds[institution_fund].payable_to_institution[std::string(parts->institution)], flow, overflowed);
      Add(s.totals.settlement_count, t.count, overflowed);
      Add(s.totals.cancellation_count, t.reversal_count, overflowed);
      Add(s.totals.cleared_fen, flow.cleared_fen, overflowed);
      Add(s.totals.cash_pay_fen, flow.cash_pay_fen, overflowed);
    } else {
      return absl::DataLossError(Cat("netting line '", line.line_key, "' has an unknown type"));
    }
  }
  if (overflowed) return absl::DataLossError("a bank or fund total of the window overflows int64 fen");

  absl::StatusOr<MerchantCharges> charges = ChargeMerchants(lines, fees);
  if (!charges.ok()) return charges.status();
  std::map<std::string, FeeCredit> fee_credits;
  for (const auto& [merchant_and_bank, charge] : *charges) {
    const auto& [merchant_id, bank_id] = merchant_and_bank;
    s.banks[bank_id].merchant_credits[merchant_id] =
        MerchantCredit{.count = charge.count,
                       .gross_fen = charge.gross_fen,
                       .refund_count = charge.refund_count,
                       .refunds_fen = charge.refunds_fen,
                       .fee_fen = charge.fee_fen,
                       .net_fen = charge.net_fen - charge.fee_fen,  // |fee| <= |net|: no overflow
                       .category = charge.category};
    if (charge.fee_fen == 0) continue;
    FeeCredit& fee_credit = fee_credits[std::string(CategoryName(charge.category))];
    Add(fee_credit.merchant_count, 1, overflowed);
    Add(fee_credit.base_fen, charge.net_fen, overflowed);
    Add(fee_credit.fee_fen, charge.fee_fen, overflowed);
    fee_credit.basis_points = charge.basis_points;
    Add(s.totals.fee_fen, charge.fee_fen, overflowed);
  }
  if (!fee_credits.empty()) s.banks[fees.fee_bank_id].fee_credits = std::move(fee_credits);

  for (auto& [bank_id, bank] : s.banks) {
    for (const auto& [merchant_id, credit] : bank.merchant_credits)
      Add(bank.total_credit_fen, credit.net_fen, overflowed);
    for (const auto& [category, fee] : bank.fee_credits) Add(bank.total_credit_fen, fee.fee_fen, overflowed);
    for (const auto& [province, debit] : bank.issuer_debits) Add(bank.total_debit_fen, debit.net_fen, overflowed);
    bank.net_position_fen = Sub(bank.total_credit_fen, bank.total_debit_fen, overflowed);
  }
  for (auto& [fund_id, fund] : s.funds) {
    for (const auto* flows : {&fund.payable_to_fund, &fund.payable_to_institution}) {
      for (const auto& [id, flow] : *flows) {
        Add(fund.total_payable_fen, flow.cleared_fen, overflowed);
        Add(fund.payable_fund_pay_fen, flow.fund_pay_fen, overflowed);
        Add(fund.payable_account_pay_fen, flow.account_pay_fen, overflowed);
      }
    }
    for (const auto& [id, flow] : fund.receivable_from_fund) {
      Add(fund.total_receivable_fen, flow.cleared_fen, overflowed);
      Add(fund.receivable_fund_pay_fen, flow.fund_pay_fen, overflowed);
      Add(fund.receivable_account_pay_fen, flow.account_pay_fen, overflowed);
    }
    fund.net_position_fen = Sub(fund.total_receivable_fen, fund.total_payable_fen, overflowed);
  }
  if (overflowed) return absl::DataLossError("a bank or fund total of the window overflows int64 fen");
  return s;
}

// ---- reading and checking the window ------------------------------------------------------------

struct LineField {
  const char* name;
  int64_t LineTotals::*member;
};
constexpr LineField kLineFields[] = {
    {"count", &LineTotals::count},
    {"amount_fen", &LineTotals::amount_fen},
    {"fund_pay_fen", &LineTotals::fund_pay_fen},
    {"account_pay_fen", &LineTotals::account_pay_fen},
    {"cash_pay_fen", &LineTotals::cash_pay_fen},
    {"reversal_count", &LineTotals::reversal_count},
    {"reversed_amount_fen", &LineTotals::reversed_amount_fen},
    {"reversed_fund_pay_fen", &LineTotals::reversed_fund_pay_fen},
    {"reversed_account_pay_fen", &LineTotals::reversed_account_pay_fen},
    {"reversed_cash_pay_fen", &LineTotals::reversed_cash_pay_fen},
};

struct WindowData {
  std::vector<WindowLine> lines;  // key order
  WindowCounters counters;
  WindowOutcome outcome;
  Statements statements;
  std::set<int32_t> partitions;  // of the applied records
  std::vector<std::string> violations;
  WindowRecord record;           // the window's close record (frozen fees and participants)
  LineIds line_ids;              // what the applied records' line numbers stand for
};

// Adds one applied record to the line totals it should have netted into, by the ledger's own
// netting rule (NetIntoLine): the check is of what the store holds (checkpoints, replays,
// commits), not of the rule.
void AddApplied(const AppliedRecord& record, LineTotals& line, bool& overflowed) {
  if (!NetIntoLine(record.kind, record.amount_fen, record.fund_pay_fen, record.account_pay_fen, record.cash_pay_fen,
                   line)) {
    overflowed = true;
  }
}

absl::Status CheckClosed(StateStore& store, const ClosedWindow& window, WindowRecord& record) {
  const std::string date = FormatWindowDay(window.day);
  absl::StatusOr<std::optional<WindowRecord>> stored = ReadWindowRecord(store, window.day);
  if (!stored.ok()) return stored.status();
  if (!stored->has_value()) {
    return absl::FailedPreconditionError(Cat("window ", date, " is open: the store has no close record"));
  }
  record = **std::move(stored);
  if (record.state != WindowState::kClosed && record.state != WindowState::kFilesWritten) {
    return absl::FailedPreconditionError(Cat("window ", date, " is ", WindowStateName(record.state), ", not closed"));
  }
  if (record.retired_at_ms != 0) {
    return absl::FailedPreconditionError(
        Cat("window ", date, " was retired at ", FormatChinaTime(record.retired_at_ms),
            ": its applied records, lines and exceptions are no longer in the store (its files and counters are)"));
  }
  if (record.closed_at_ms != window.closed_at_ms) {
    return absl::FailedPreconditionError(Cat("window ", date, " closed at ", FormatChinaTime(record.closed_at_ms),
                                             " by the store, not at ", FormatChinaTime(window.closed_at_ms)));
  }
  // A record written before fee schedules were frozen with the window has no fee bank.
  if (!record.fee_bank_id.empty() &&
      (record.fee_bank_id != window.fees.fee_bank_id || record.fee_basis_points != window.fees.basis_points)) {
    return absl::FailedPreconditionError(
        Cat("window ", date, " was closed with fee bank ", record.fee_bank_id,
            " and its own fee rates; the files must be rendered with those, not with the schedule given"));
  }
  return absl::OkStatus();
}

absl::Status ReadWindow(StateStore& store, const ClosedWindow& window, WindowData& data) {
  if (absl::Status s = CheckClosed(store, window, data.record); !s.ok()) return s;
  const std::string date = FormatWindowDay(window.day);
  std::vector<std::string>& violations = data.violations;

  absl::StatusOr<WindowCounters> counters = ReadWindowCounters(store, window.day);
  if (!counters.ok()) return counters.status();
  data.counters = *counters;

  absl::StatusOr<LineIds> line_ids = LoadLineIds(store);
  if (!line_ids.ok()) return line_ids.status();
  data.line_ids = *std::move(line_ids);
  // A closed window's lines were checkpointed by the commit that closed it.
  absl::StatusOr<std::vector<WindowLine>> lines = ReadWindowLines(store, window.day, nullptr, &data.line_ids);
  if (!lines.ok()) return lines.status();
  data.lines = *std::move(lines);
  absl::StatusOr<WindowOutcome> outcome = ComputeWindowOutcome(data.lines, data.counters, window.fees);
  if (!outcome.ok()) return outcome.status();
  data.outcome = *std::move(outcome);
  absl::StatusOr<Statements> statements = BuildStatements(data.lines, window.fees);
  if (!statements.ok()) return statements.status();
  data.statements = *std::move(statements);

  // One pass over the applied records: their sums per line, counts and offset order. The sums
  // are kept by line number (a realistic registry makes nearly a line per event), by key text
  // only for a line without one.
  std::vector<LineTotals> applied_by_id(data.line_ids.size());
  std::vector<uint8_t> applied_seen(data.line_ids.size(), 0);
  std::map<std::string, LineTotals, std::less<>> applied_by_text;
  std::map<std::pair<Family, int32_t>, int64_t> last_offsets;
  int64_t record_count = 0, late_count = 0;
  bool overflowed = false;
  auto check = [&](SourcePartition owner, const AppliedRecord& record) {
    ++record_count;
    if (record.late) ++late_count;
    const Family family = FamilyOf(record.kind);
    const std::string_view topic = family == Family::kTaps ? kTapsTopic : kMedicalTopic;
    data.partitions.insert(record.partition);
    if (owner.partition != record.partition || owner.topic != TopicOf(family)) {
      violations.push_back(Cat("applied record ", record.txn_id, " of ", topic, " partition ", record.partition,
                               " is kept as ", FormatOwner(owner), "'s"));
    }
    auto [last, inserted] = last_offsets.try_emplace({family, record.partition}, record.offset);
    if (!inserted) {
      if (record.offset <= last->second) {
        violations.push_back(Cat("applied record ", record.txn_id, " of ", topic, " partition ", record.partition,
                                 " has offset ", record.offset, ", not after offset ", last->second));
      }
      last->second = record.offset;
    }
    const bool line_matches_kind =
        family == Family::kTaps ? record.line_key.starts_with("T|") : record.line_key.starts_with("M|");
    if (!line_matches_kind) {
      violations.push_back(Cat("applied ", KindName(record.kind), " ", record.txn_id, " names netting line '",
                               record.line_key, "' of the other family"));
    }
    if (!IsFieldSafe(record.txn_id) || !IsFieldSafe(record.original_txn_id) || !IsFieldSafe(record.terminal_id) ||
        !IsFieldSafe(record.card_masked)) {
      violations.push_back(Cat("applied record at ", topic, " partition ", record.partition, " offset ",
                               record.offset, " has a field with '|' or a line end"));
    }
    std::optional<uint32_t> line_id;
    if (record.line_id < applied_by_id.size()) {
      line_id = record.line_id;
    } else if (record.line_id == kNoLineId) {
      line_id = data.line_ids.Find(record.line_key);  // a record written before line numbers
    }
    if (line_id) {
      applied_seen[*line_id] = 1;
      AddApplied(record, applied_by_id[*line_id], overflowed);
    } else {
      auto line = applied_by_text.find(record.line_key);
      if (line == applied_by_text.end()) line = applied_by_text.emplace(std::string(record.line_key), LineTotals{}).first;
      AddApplied(record, line->second, overflowed);
    }
    return true;
  };
  absl::Status s = VisitAppliedRecords(store, window.day, data.line_ids, check);
  if (!s.ok()) return s;
  if (overflowed) return absl::DataLossError(Cat("the applied records of window ", date, " overflow int64 fen"));

  // Zero sums.
  for (std::string& violation : CheckZeroSums(data.outcome)) violations.push_back(std::move(violation));

  // Every line equals the sum of its applied records, and a settlement's parts add up.
  const LineTotals none;
  for (const WindowLine& line : data.lines) {
    const std::optional<uint32_t> line_id = data.line_ids.Find(line.line_key);
    const auto by_text = line_id ? applied_by_text.end() : applied_by_text.find(line.line_key);
    const LineTotals* applied = nullptr;
    if (line_id && applied_seen[*line_id] != 0) {
      applied = &applied_by_id[*line_id];
      applied_seen[*line_id] = 0;  // matched
    } else if (by_text != applied_by_text.end()) {
      applied = &by_text->second;
    }
    const LineTotals& sums = applied == nullptr ? none : *applied;
    for (const LineField& field : kLineFields) {
      if (line.totals.*field.member != sums.*field.member) {
        violations.push_back(Cat("netting line '", line.line_key, "' ", field.name, " is ", line.totals.*field.member,
                                 " but its applied records add up to ", sums.*field.member));
      }
    }
    if (line.line_key.starts_with("M|")) {
      const LineTotals& t = line.totals;
      if (static_cast<__int128>(t.fund_pay_fen) + t.account_pay_fen + t.cash_pay_fen != t.amount_fen) {
        violations.push_back(Cat("netting line '", line.line_key, "' amount_fen ", t.amount_fen,
                                 " is not fund_pay_fen + account_pay_fen + cash_pay_fen"));
      }
      if (static_cast<__int128>(t.reversed_fund_pay_fen) + t.reversed_account_pay_fen + t.reversed_cash_pay_fen !=
          t.reversed_amount_fen) {
        violations.push_back(Cat("netting line '", line.line_key, "' reversed_amount_fen ", t.reversed_amount_fen,
                                 " is not the sum of its reversed parts"));
      }
    }
    if (by_text != applied_by_text.end()) applied_by_text.erase(by_text);
  }
  auto unmatched = [&](std::string_view line_key, const LineTotals& sums) {
    violations.push_back(Cat("applied records net into line '", line_key, "' (count ", sums.count, ", reversal_count ",
                             sums.reversal_count, ") which the window does not have"));
  };
  for (uint32_t id = 0; id < applied_seen.size(); ++id) {
    if (applied_seen[id] != 0) unmatched(*data.line_ids.KeyOf(id), applied_by_id[id]);
  }
  for (const auto& [line_key, sums] : applied_by_text) unmatched(line_key, sums);
  if (data.counters.applied_count != record_count) {
    violations.push_back(Cat("counter applied_count is ", data.counters.applied_count, " but the window has ",
                             record_count, " applied records"));
  }
  if (data.counters.late_count != late_count) {
    violations.push_back(Cat("counter late_count is ", data.counters.late_count, " but the window has ", late_count,
                             " late applied records"));
  }

  // Each file's net position is the participant's position.
  auto check_positions = [&](const char* kind, const PositionMap& positions, const auto& statements) {
    for (const auto& [id, statement] : statements) {
      const auto position = positions.find(id);
      const int64_t expected_fen = position == positions.end() ? 0 : position->second;
      if (statement.net_position_fen != expected_fen) {
        violations.push_back(Cat(kind, " ", id, " file net_position_fen is ", statement.net_position_fen,
                                 " but its position is ", expected_fen));
      }
    }
    for (const auto& [id, fen] : positions) {
      if (!statements.contains(id))
        violations.push_back(Cat(kind, " ", id, " has position ", fen, " but no file line"));
    }
  };
  check_positions("bank", data.outcome.bank_scheme_bank, data.statements.banks);
  check_positions("fund", data.outcome.fund_scheme_fund, data.statements.funds);
  return absl::OkStatus();
}

// ---- rendering -----------------------------------------------------------------------------------

// A file being written, with its running size and SHA-256 for the MANIFEST.
class TrackedFile {
 public:
  TrackedFile(std::string path, OutputFile* file, std::unique_ptr<Sha256Stream> hash)
      : path_(std::move(path)), file_(file), hash_(std::move(hash)) {}

  [[nodiscard]] absl::Status Append(std::string_view bytes) {
    hash_->Update(bytes);
    size_bytes_ += static_cast<int64_t>(bytes.size());
    return file_->Append(bytes);
  }
  [[nodiscard]] const std::string& path() const { return path_; }
  [[nodiscard]] int64_t size_bytes() const { return size_bytes_; }
  [[nodiscard]] std::string FinishHex() { return hash_->FinishHex(); }

 private:
  std::string path_;
  OutputFile* file_;
  std::unique_ptr<Sha256Stream> hash_;
  int64_t size_bytes_ = 0;
};

struct BankDetailTotals {
  int64_t record_count = 0;
  int64_t issuer_tap_count = 0;
  int64_t issuer_tap_fen = 0;
  int64_t issuer_refund_count = 0;
  int64_t issuer_refund_fen = 0;
  int64_t acquirer_tap_count = 0;
  int64_t acquirer_tap_fen = 0;
  int64_t acquirer_refund_count = 0;
  int64_t acquirer_refund_fen = 0;
};
struct FundDetailTotals {
  int64_t record_count = 0;
  int64_t insured_settlement_count = 0;
  int64_t insured_cleared_fen = 0;
  int64_t insured_cancellation_count = 0;
  int64_t insured_cancelled_fen = 0;
  int64_t institution_settlement_count = 0;
  int64_t institution_cleared_fen = 0;
  int64_t institution_cancellation_count = 0;
  int64_t institution_cancelled_fen = 0;
};

struct DetailFile {
  TrackedFile* file = nullptr;
  BankDetailTotals bank;
  FundDetailTotals fund;
};

std::string RenderBankFile(const ClosedWindow& window, const std::string& bank_id, const BankStatement& bank) {
  std::string out;
  AppendHeader(out, "YRD-BANK", window, "bank_id", bank_id);
  for (const auto& [merchant_id, c] : bank.merchant_credits) {
    Record(out, 'D', "MERCHANT_CREDIT",
           merchant_id,
           c.count,
           c.gross_fen,
           c.refund_count,
           c.refunds_fen,
           c.fee_fen,
           c.net_fen);
  }
  for (const auto& [province, d] : bank.issuer_debits) {
    Record(out, 'D', "ISSUER_DEBIT", province, d.count, d.gross_fen, d.refund_count, d.refunds_fen, d.net_fen);
  }
  for (const auto& [category, f] : bank.fee_credits) {
    Record(out, 'D', "FEE_CREDIT", category, f.merchant_count, f.base_fen, f.basis_points, f.fee_fen);
  }
  out.push_back('T');
  Pair(out, "record_count", bank.record_count());
  Pair(out, "total_debit_fen", bank.total_debit_fen);
  Pair(out, "total_credit_fen", bank.total_credit_fen);
  Pair(out, "net_position_fen", bank.net_position_fen);
  out.push_back('\n');
  return out;
}

void AppendFlow(std::string& out, std::string_view type, const std::string& id, const FundFlow& f) {
  Record(out, 'D', type,
         id,
         f.count,
         f.cancelled_count,
         f.fund_pay_fen,
         f.account_pay_fen,
         f.cash_pay_fen,
         f.cleared_fen);
}

std::string RenderFundFile(const ClosedWindow& window, const std::string& fund_id, const FundStatement& fund) {
  std::string out;
  AppendHeader(out, "YRD-FUND", window, "fund_id", fund_id);
  for (const auto& [id, flow] : fund.payable_to_fund) AppendFlow(out, "PAYABLE_TO_FUND", id, flow);
  for (const auto& [id, flow] : fund.receivable_from_fund) AppendFlow(out, "RECEIVABLE_FROM_FUND", id, flow);
  for (const auto& [id, flow] : fund.payable_to_institution) AppendFlow(out, "PAYABLE_TO_INSTITUTION", id, flow);
  out.push_back('T');
  Pair(out, "record_count", fund.record_count());
  Pair(out, "total_payable_fen", fund.total_payable_fen);
  Pair(out, "total_receivable_fen", fund.total_receivable_fen);
  Pair(out, "net_position_fen", fund.net_position_fen);
  Pair(out, "payable_fund_pay_fen", fund.payable_fund_pay_fen);
  Pair(out, "payable_account_pay_fen", fund.payable_account_pay_fen);
  Pair(out, "receivable_fund_pay_fen", fund.receivable_fund_pay_fen);
  Pair(out, "receivable_account_pay_fen", fund.receivable_account_pay_fen);
  out.push_back('\n');
  return out;
}

std::string RenderSummary(const ClosedWindow& window, const WindowData& data, const std::set<std::string>& bank_ids,
                          const std::set<std::string>& fund_ids) {
  std::string out;
  AppendHeader(out, "YRD-SUMMARY", window, {}, {});
  int64_t record_count = 0;
  auto begin = [&](std::string_view type) {
    ++record_count;
    out.push_back('D');
    Field(out, type);
  };
  begin("FEE_BANK");
  Field(out, window.fees.fee_bank_id);
  out.push_back('\n');
  for (size_t i = 0; i < kCategoryCount; ++i) {
    begin("FEE_RATE");
    Field(out, kCategoryNames[i]);
    Field(out, window.fees.basis_points[i]);
    out.push_back('\n');
  }
  const WindowCounters& c = data.counters;
  for (const auto& [name, value] : {std::pair<std::string_view, int64_t>{"applied", c.applied_count},
                                    {"exact_duplicates", c.exact_duplicate_count},
                                    {"late", c.late_count}}) {
    begin("COUNT");
    Field(out, name);
    Field(out, value);
    out.push_back('\n');
  }
  for (size_t i = 0; i < kReasonCount; ++i) {
    begin("EXCEPTION");
    Field(out, kReasonNames[i]);
    Field(out, c.exception_counts[i]);
    out.push_back('\n');
  }
  const WindowTotals& t = data.statements.totals;
  for (const auto& [name, value] : {std::pair<std::string_view, int64_t>{"tap_count", t.tap_count},
                                    {"tap_gross_fen", t.tap_gross_fen},
                                    {"refund_count", t.refund_count},
                                    {"refund_fen", t.refund_fen},
                                    {"fee_fen", t.fee_fen},
                                    {"settlement_count", t.settlement_count},
                                    {"cancellation_count", t.cancellation_count},
                                    {"cleared_fen", t.cleared_fen},
                                    {"cash_pay_fen", t.cash_pay_fen}}) {
    begin("TOTAL");
    Field(out, name);
    Field(out, value);
    out.push_back('\n');
  }
  auto positions = [&](std::string_view scheme, std::string_view kind, const PositionMap& map,
                       std::set<std::string> ids) {
    for (const auto& [id, fen] : map) ids.insert(id);
    for (const std::string& id : ids) {
      const auto position = map.find(id);
      begin("POSITION");
      Field(out, scheme);
      Field(out, kind);
      Field(out, id);
      Field(out, position == map.end() ? 0 : position->second);
      out.push_back('\n');
    }
  };
  const std::set<std::string> province_ids(window.province_codes.begin(), window.province_codes.end());
  const WindowOutcome& o = data.outcome;
  positions("BANK_SCHEME", "PROVINCE", o.bank_scheme_province, province_ids);
  positions("BANK_SCHEME", "BANK", o.bank_scheme_bank, bank_ids);
  positions("FUND_SCHEME", "PROVINCE", o.fund_scheme_province, province_ids);
  positions("FUND_SCHEME", "FUND", o.fund_scheme_fund, fund_ids);
  positions("FUND_SCHEME", "INSTITUTION", o.fund_scheme_institution, {});
  auto sum_of = [](const PositionMap& map) {
    __int128 sum = 0;
    for (const auto& [id, fen] : map) sum += fen;
    return static_cast<int64_t>(sum);  // 0: the invariants were checked before rendering
  };
  for (const auto& [name, sum] :
       {std::pair<std::string_view, int64_t>{"BANK_SCHEME_PROVINCE", sum_of(o.bank_scheme_province)},
        {"BANK_SCHEME_BANK", sum_of(o.bank_scheme_bank)},
        {"FUND_SCHEME_PROVINCE", sum_of(o.fund_scheme_province)},
        {"FUND_SCHEME_FUND_AND_INSTITUTION", sum_of(o.fund_scheme_fund) + sum_of(o.fund_scheme_institution)}}) {
    begin("ZERO_SUM");
    Field(out, name);
    Field(out, sum);
    Field(out, sum == 0 ? "OK" : "FAILED");
    out.push_back('\n');
  }
  out.push_back('T');
  Pair(out, "record_count", record_count);
  out.push_back('\n');
  return out;
}

void AppendBankDetail(std::string& out, const AppliedRecord& r, std::string_view role, std::string_view merchant) {
  out.clear();
  Record(out, 'D', r.txn_id,
         KindName(r.kind),
         role,
         r.card_masked,
         merchant,
         r.terminal_id,
         FormatChinaTime(r.occurred_at_ms),
         r.amount_fen,
         r.late ? "Y" : "N",
         r.original_txn_id,
         r.partition,
         r.offset);
}

void AppendFundDetail(std::string& out, const AppliedRecord& r, std::string_view role,
                      const SettlementLineParts& parts) {
  out.clear();
  Record(out, 'D', r.txn_id,
         KindName(r.kind),
         role,
         r.card_masked,
         parts.insured_fund,
         parts.institution,
         parts.institution_fund,
         FormatChinaTime(r.occurred_at_ms),
         r.amount_fen,
         r.fund_pay_fen,
         r.account_pay_fen,
         r.cash_pay_fen,
         r.late ? "Y" : "N",
         r.original_txn_id,
         r.partition,
         r.offset);
}

void CountBankDetail(BankDetailTotals& t, const AppliedRecord& r, bool issuer, bool acquirer, bool& overflowed) {
  ++t.record_count;
  const bool tap = r.kind == EventKind::kTap;
  if (issuer) {
    Add(tap ? t.issuer_tap_count : t.issuer_refund_count, 1, overflowed);
    Add(tap ? t.issuer_tap_fen : t.issuer_refund_fen, r.amount_fen, overflowed);
  }
  if (acquirer) {
    Add(tap ? t.acquirer_tap_count : t.acquirer_refund_count, 1, overflowed);
    Add(tap ? t.acquirer_tap_fen : t.acquirer_refund_fen, r.amount_fen, overflowed);
  }
}

void CountFundDetail(FundDetailTotals& t, const AppliedRecord& r, bool insured, bool institution, bool& overflowed) {
  ++t.record_count;
  const bool settlement = r.kind == EventKind::kMedicalSettlement;
  int64_t cleared_fen = r.fund_pay_fen;
  Add(cleared_fen, r.account_pay_fen, overflowed);
  if (insured) {
    Add(settlement ? t.insured_settlement_count : t.insured_cancellation_count, 1, overflowed);
    Add(settlement ? t.insured_cleared_fen : t.insured_cancelled_fen, cleared_fen, overflowed);
  }
  if (institution) {
    Add(settlement ? t.institution_settlement_count : t.institution_cancellation_count, 1, overflowed);
    Add(settlement ? t.institution_cleared_fen : t.institution_cancelled_fen, cleared_fen, overflowed);
  }
}

std::string BankDetailTrailer(const BankDetailTotals& t) {
  std::string out = "T";
  Pair(out, "record_count", t.record_count);
  Pair(out, "issuer_tap_count", t.issuer_tap_count);
  Pair(out, "issuer_tap_fen", t.issuer_tap_fen);
  Pair(out, "issuer_refund_count", t.issuer_refund_count);
  Pair(out, "issuer_refund_fen", t.issuer_refund_fen);
  Pair(out, "acquirer_tap_count", t.acquirer_tap_count);
  Pair(out, "acquirer_tap_fen", t.acquirer_tap_fen);
  Pair(out, "acquirer_refund_count", t.acquirer_refund_count);
  Pair(out, "acquirer_refund_fen", t.acquirer_refund_fen);
  out.push_back('\n');
  return out;
}

std::string FundDetailTrailer(const FundDetailTotals& t) {
  std::string out = "T";
  Pair(out, "record_count", t.record_count);
  Pair(out, "insured_settlement_count", t.insured_settlement_count);
  Pair(out, "insured_cleared_fen", t.insured_cleared_fen);
  Pair(out, "insured_cancellation_count", t.insured_cancellation_count);
  Pair(out, "insured_cancelled_fen", t.insured_cancelled_fen);
  Pair(out, "institution_settlement_count", t.institution_settlement_count);
  Pair(out, "institution_cleared_fen", t.institution_cleared_fen);
  Pair(out, "institution_cancellation_count", t.institution_cancellation_count);
  Pair(out, "institution_cancelled_fen", t.institution_cancelled_fen);
  out.push_back('\n');
  return out;
}

std::string_view Role(bool first, bool second, std::string_view first_name, std::string_view second_name) {
  if (first && second) return "BOTH";
  return first ? first_name : second_name;
}

// Streams the applied records of `partition` into the detail files, in commit order, which
// within one partition is offset order.
absl::Status StreamPartition(StateStore& store, const LineIds& line_ids, WindowDay day, int32_t partition,
                             StringMap<DetailFile>& bank_details, StringMap<DetailFile>& fund_details) {
  std::string text;
  absl::Status failure;
  bool overflowed = false;
  auto write = [&](DetailFile& detail) {
    if (absl::Status s = detail.file->Append(text); !s.ok()) failure = s;
    return failure.ok();
  };
  auto find = [&](StringMap<DetailFile>& details, std::string_view id) -> DetailFile* {
    const auto it = details.find(id);
    if (it != details.end()) return &it->second;
    failure = absl::InternalError(Cat("no detail file for participant ", id));
    return nullptr;
  };
  // The partition's records of both topics: each detail file holds one family's, in offset order.
  std::string prefix;
  for (const SourceTopic topic : {SourceTopic::kTaps, SourceTopic::kMedical}) {
    WindowOwnerKeyPrefix(day, {topic, partition}, prefix);
    absl::Status s = store.Scan(Table::kApplied, prefix, {}, [&](std::string_view, std::string_view blob) {
      size_t position = 0;
      AppliedRecord r;
      bool damaged = false;
      while (NextAppliedRecord(blob, position, line_ids, r, damaged)) {
        if (FamilyOf(r.kind) == Family::kTaps) {
          const std::optional<TapLineParts> parts = ParseTapLineKey(r.line_key);
          if (!parts) {
            failure = absl::DataLossError(Cat("applied record ", r.txn_id, " names a damaged line"));
            return false;
          }
          const bool same_bank = parts->issuer_bank == parts->merchant_bank;
          DetailFile* issuer = find(bank_details, parts->issuer_bank);
          if (issuer == nullptr) return false;
          AppendBankDetail(text, r, same_bank ? "BOTH" : "ISSUER", parts->merchant);
          CountBankDetail(issuer->bank, r, true, same_bank, overflowed);
          if (!write(*issuer)) return false;
          if (!same_bank) {
            DetailFile* acquirer = find(bank_details, parts->merchant_bank);
            if (acquirer == nullptr) return false;
            AppendBankDetail(text, r, "ACQUIRER", parts->merchant);
            CountBankDetail(acquirer->bank, r, false, true, overflowed);
            if (!write(*acquirer)) return false;
          }
        } else {
          const std::optional<SettlementLineParts> parts = ParseSettlementLineKey(r.line_key);
          if (!parts) {
            failure = absl::DataLossError(Cat("applied record ", r.txn_id, " names a damaged line"));
            return false;
          }
          const bool same_fund = parts->insured_fund == parts->institution_fund;
          DetailFile* insured = find(fund_details, parts->insured_fund);
          if (insured == nullptr) return false;
          AppendFundDetail(text, r, Role(true, same_fund, "INSURED", "INSTITUTION"), *parts);
          CountFundDetail(insured->fund, r, true, same_fund, overflowed);
          if (!write(*insured)) return false;
          if (!same_fund) {
            DetailFile* institution = find(fund_details, parts->institution_fund);
            if (institution == nullptr) return false;
            AppendFundDetail(text, r, "INSTITUTION", *parts);
            CountFundDetail(institution->fund, r, false, true, overflowed);
            if (!write(*institution)) return false;
          }
        }
      }
      if (damaged) {
        failure = absl::DataLossError("an applied-records blob is damaged");
        return false;
      }
      return true;
    });
    if (!s.ok()) return s;
    if (!failure.ok()) return failure;
  }
  if (overflowed) return absl::DataLossError("a detail file's totals overflow int64 fen");
  return absl::OkStatus();
}

std::string JoinViolations(WindowDay day, const std::vector<std::string>& violations) {
  std::string message =
      Cat("window ", FormatWindowDay(day), " breaks ", violations.size(), " invariant(s); no file was written: ");
  for (size_t i = 0; i < violations.size() && i < kViolationsReportedMax; ++i) {
    if (i > 0) message += "; ";
    message += violations[i];
  }
  if (violations.size() > kViolationsReportedMax) {
    message += Cat("; and ", violations.size() - kViolationsReportedMax, " more");
  }
  return message;
}

}  // namespace

// ---- MemoryFileSet -------------------------------------------------------------------------------

class MemoryFileSet::File final : public OutputFile {
 public:
  absl::Status Append(std::string_view bytes) override {
    bytes_.append(bytes);
    return absl::OkStatus();
  }
  std::string bytes_;
};

MemoryFileSet::MemoryFileSet() = default;
MemoryFileSet::~MemoryFileSet() = default;

absl::StatusOr<OutputFile*> MemoryFileSet::Create(std::string relative_path) {
  if (committed_) return absl::FailedPreconditionError("the file set is already committed");
  auto [it, inserted] = files_.try_emplace(std::move(relative_path));
  if (!inserted) return absl::AlreadyExistsError(Cat("file ", it->first, " was created twice"));
  it->second = std::make_unique<File>();
  return it->second.get();
}

absl::Status MemoryFileSet::Commit() {
  committed_ = true;
  return absl::OkStatus();
}

std::map<std::string, std::string> MemoryFileSet::files() const {
  std::map<std::string, std::string> out;
  for (const auto& [path, file] : files_) out.emplace(path, file->bytes_);
  return out;
}

// ---- public functions ----------------------------------------------------------------------------

absl::StatusOr<ClosedWindow> LoadClosedWindow(StateStore& store, WindowDay day, const Registry& fallback) {
  absl::StatusOr<std::optional<WindowRecord>> stored = ReadWindowRecord(store, day);
  if (!stored.ok()) return stored.status();
  if (!stored->has_value() || (**stored).state < WindowState::kClosed) {
    return absl::FailedPreconditionError(Cat("window ", FormatWindowDay(day), " is not closed"));
  }
  const WindowRecord& record = **stored;
  ClosedWindow window;
  window.day = day;
  window.closed_at_ms = record.closed_at_ms;
  window.retired_at_ms = record.retired_at_ms;
  // A record without a fee bank was written before the schedule was frozen with the close.
  if (record.fee_bank_id.empty()) {
    window.fees = FeeSchedule::FromRegistry(fallback);
  } else {
    window.fees.basis_points = record.fee_basis_points;
    window.fees.fee_bank_id = record.fee_bank_id;
  }
  window.bank_ids = record.registered_bank_ids;
  window.fund_ids = record.registered_fund_ids;
  window.province_codes = record.registered_province_codes;
  // Records without them were written before the participants were frozen.
  if (window.bank_ids.empty() && window.fund_ids.empty()) {
    for (const Bank& bank : fallback.banks()) window.bank_ids.push_back(bank.bank_id);
    for (const Fund& fund : fallback.funds()) window.fund_ids.push_back(fund.fund_id);
  }
  if (window.province_codes.empty()) {
    for (const Province& province : fallback.provinces()) window.province_codes.push_back(province.code);
  }
  return window;
}

absl::StatusOr<std::vector<MerchantStatementLine>> MerchantStatement(const std::vector<WindowLine>& lines,
                                                                     const FeeSchedule& fees,
                                                                     std::string_view merchant_id) {
  absl::StatusOr<Statements> statements = BuildStatements(lines, fees);
  if (!statements.ok()) return statements.status();
  std::vector<MerchantStatementLine> out;
  for (const auto& [bank_id, bank] : statements->banks) {
    const auto it = bank.merchant_credits.find(std::string(merchant_id));
    if (it == bank.merchant_credits.end()) continue;
    const MerchantCredit& c = it->second;
    out.push_back({bank_id, c.category, c.count, c.gross_fen, c.refund_count, c.refunds_fen, c.fee_fen, c.net_fen});
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> CheckWindowInvariants(StateStore& store, const ClosedWindow& window) {
  WindowData data;
  if (absl::Status s = ReadWindow(store, window, data); !s.ok()) return s;
  return std::move(data.violations);
}

absl::Status RenderWindowFiles(StateStore& store, const ClosedWindow& window, FileSetSink& sink,
                               const Digests& digests) {
  if (!digests.new_sha256 || !digests.hmac_hex) return absl::InvalidArgumentError("the digests are not set");
  WindowData data;
  if (absl::Status s = ReadWindow(store, window, data); !s.ok()) return s;
  if (!data.violations.empty()) return absl::FailedPreconditionError(JoinViolations(window.day, data.violations));

  // Every bank and fund of the window (registered when it closed) gets its files, and so does any
  // other one the lines name.
  std::set<std::string> bank_ids(window.bank_ids.begin(), window.bank_ids.end());
  std::set<std::string> fund_ids(window.fund_ids.begin(), window.fund_ids.end());
  if (!window.fees.fee_bank_id.empty()) bank_ids.insert(window.fees.fee_bank_id);
  for (const auto& [id, statement] : data.statements.banks) bank_ids.insert(id);
  for (const auto& [id, statement] : data.statements.funds) fund_ids.insert(id);
  for (const std::set<std::string>* ids : {&bank_ids, &fund_ids}) {
    for (const std::string& id : *ids) {
      if (!IsValidId(id)) return absl::DataLossError(Cat("participant id '", id, "' is not a valid file name"));
    }
  }

  std::vector<std::unique_ptr<TrackedFile>> files;
  auto create = [&](std::string path) -> absl::StatusOr<TrackedFile*> {
    absl::StatusOr<OutputFile*> file = sink.Create(path);
    if (!file.ok()) return file.status();
    std::unique_ptr<Sha256Stream> hash = digests.new_sha256();
    if (hash == nullptr) return absl::InternalError("cannot start a SHA-256");
    files.push_back(std::make_unique<TrackedFile>(std::move(path), *file, std::move(hash)));
    return files.back().get();
  };
  auto create_with = [&](std::string path, std::string_view content) -> absl::StatusOr<TrackedFile*> {
    absl::StatusOr<TrackedFile*> file = create(std::move(path));
    if (!file.ok()) return file.status();
    if (absl::Status s = (*file)->Append(content); !s.ok()) return s;
    return *file;
  };

  StringMap<DetailFile> bank_details, fund_details;
  std::string header;
  const BankStatement idle_bank;
  for (const std::string& id : bank_ids) {
    const auto statement = data.statements.banks.find(id);
    const BankStatement& bank = statement == data.statements.banks.end() ? idle_bank : statement->second;
    if (auto file = create_with(Cat("banks/", id, ".txt"), RenderBankFile(window, id, bank)); !file.ok()) {
      return file.status();
    }
    header.clear();
    AppendHeader(header, "YRD-BANK-DETAIL", window, "bank_id", id);
    absl::StatusOr<TrackedFile*> detail = create_with(Cat("banks/", id, ".detail.txt"), header);
    if (!detail.ok()) return detail.status();
    bank_details[id].file = *detail;
  }
  const FundStatement idle_fund;
  for (const std::string& id : fund_ids) {
    const auto statement = data.statements.funds.find(id);
    const FundStatement& fund = statement == data.statements.funds.end() ? idle_fund : statement->second;
    if (auto file = create_with(Cat("funds/", id, ".txt"), RenderFundFile(window, id, fund)); !file.ok()) {
      return file.status();
    }
    header.clear();
    AppendHeader(header, "YRD-FUND-DETAIL", window, "fund_id", id);
    absl::StatusOr<TrackedFile*> detail = create_with(Cat("funds/", id, ".detail.txt"), header);
    if (!detail.ok()) return detail.status();
    fund_details[id].file = *detail;
  }
  if (auto file = create_with("summary.txt", RenderSummary(window, data, bank_ids, fund_ids)); !file.ok()) {
    return file.status();
  }

  // Detail lines ordered by (partition, offset): a replay after a crash commits the same records
  // at the same offsets, though in other batches, so this order, unlike commit order, is the
  // same in every run. One pass per partition keeps one record in memory at a time.
  for (const int32_t partition : data.partitions) {
    if (absl::Status s = StreamPartition(store, data.line_ids, window.day, partition, bank_details, fund_details);
        !s.ok()) {
      return s;
    }
  }
  for (auto& [id, detail] : bank_details) {
    if (absl::Status s = detail.file->Append(BankDetailTrailer(detail.bank)); !s.ok()) return s;
  }
  for (auto& [id, detail] : fund_details) {
    if (absl::Status s = detail.file->Append(FundDetailTrailer(detail.fund)); !s.ok()) return s;
  }

  // The MANIFEST: one line per file sorted by path, then the signature of those lines.
  std::sort(files.begin(), files.end(), [](const auto& a, const auto& b) { return a->path() < b->path(); });
  std::string manifest;
  for (const auto& file : files) {
    manifest += file->FinishHex();
    manifest.push_back(' ');
    AppendInt(manifest, file->size_bytes());
    manifest.push_back(' ');
    manifest += file->path();
    manifest.push_back('\n');
  }
  const std::string signature = digests.hmac_hex(manifest);
  manifest += Cat(kManifestSignatureTag, " ", signature, "\n");
  absl::StatusOr<OutputFile*> manifest_file = sink.Create(std::string(kManifestPath));
  if (!manifest_file.ok()) return manifest_file.status();
  if (absl::Status s = (*manifest_file)->Append(manifest); !s.ok()) return s;
  return sink.Commit();
}

}  // namespace yrd
