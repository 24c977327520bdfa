#include "tools/clearing-gen/reference_model.h"

#include <algorithm>
#include <utility>

#include "engine/base/assert.h"
#include "engine/base/money.h"
#include "xxhash.h"

namespace yrd::gen {
namespace {

template <typename T>
uint32_t IndexIn(const std::vector<T>& items, const T* item) {
  YRD_ASSERT(item != nullptr);
  return static_cast<uint32_t>(item - items.data());
}

// Checked update of an accumulator: a model position never wraps around.
void Add(int64_t& accumulator_fen, int64_t delta_fen) {
  const std::optional<int64_t> sum = CheckedAddFen(accumulator_fen, delta_fen);
  YRD_ASSERT(sum.has_value());
  accumulator_fen = *sum;
}

// Adds an expected position; the model's sums never overflow on the days it judges (an overflow
// is a bug in this model, not in the input).
void Expect(PositionMap& map, const std::string& id, int64_t delta_fen) {
  const bool added = AddPosition(map, id, delta_fen);
  YRD_ASSERT(added);
}

bool ValidId(const OptionalString& id) { return id.has_value() && IsValidId(*id); }

// Canonical content of an event for the exact-duplicate test: every field, in schema order, with
// its presence and length, so two events compare equal exactly when all their fields do.
class ContentWriter {
 public:
  explicit ContentWriter(std::string& out) : out_(out) { out_.clear(); }
  void Put(const OptionalString& value) {
    if (!value) {
      out_.push_back('\0');
      return;
    }
    out_.push_back('\1');
    PutInteger(static_cast<int64_t>(value->size()));
    out_.append(*value);
  }
  void PutInteger(int64_t value) { out_.append(reinterpret_cast<const char*>(&value), sizeof value); }

 private:
  std::string& out_;
};

std::pair<uint64_t, uint64_t> ContentDigest(const EventFields& event, std::string& scratch) {
  ContentWriter writer(scratch);
  writer.PutInteger(static_cast<int64_t>(event.index()));
  std::visit(
      [&](const auto& fields) {
        using T = std::decay_t<decltype(fields)>;
        writer.Put(fields.txn_id);
        if constexpr (std::is_same_v<T, TapFields>) {
          writer.Put(fields.card_no);
          writer.PutInteger(fields.carrier);
          writer.Put(fields.issuer_province);
          writer.Put(fields.issuer_bank_id);
          writer.Put(fields.merchant_id);
          writer.Put(fields.terminal_id);
          writer.PutInteger(fields.amount_fen);
        } else if constexpr (std::is_same_v<T, TapRefundFields>) {
          writer.Put(fields.original_txn_id);
          writer.PutInteger(fields.amount_fen);
        } else if constexpr (std::is_same_v<T, MedicalSettlementFields>) {
          writer.Put(fields.card_no);
          writer.Put(fields.insured_fund_id);
          writer.Put(fields.institution_id);
          writer.PutInteger(fields.visit_type);
          writer.PutInteger(fields.total_fen);
          writer.PutInteger(fields.fund_pay_fen);
          writer.PutInteger(fields.account_pay_fen);
          writer.PutInteger(fields.cash_pay_fen);
        } else {
          writer.Put(fields.original_txn_id);
        }
        writer.PutInteger(fields.occurred_at_ms);
      },
      event);
  const XXH128_hash_t hash = XXH3_128bits(scratch.data(), scratch.size());
  return {hash.high64, hash.low64};
}

// Step 2 for one event, without the topic check.
bool FieldsValid(const EventFields& event) {
  return std::visit(
      [](const auto& fields) {
        using T = std::decay_t<decltype(fields)>;
        if (!ValidId(fields.txn_id)) return false;
        if constexpr (std::is_same_v<T, TapFields>) {
          return ValidId(fields.card_no) && ValidId(fields.issuer_province) && ValidId(fields.issuer_bank_id) &&
                 ValidId(fields.merchant_id) && ValidId(fields.terminal_id) && fields.carrier >= 1 &&
                 fields.carrier <= 3;
        } else if constexpr (std::is_same_v<T, MedicalSettlementFields>) {
          return ValidId(fields.card_no) && ValidId(fields.insured_fund_id) && ValidId(fields.institution_id) &&
                 fields.visit_type >= 1 && fields.visit_type <= 3;
        } else {
          return ValidId(fields.original_txn_id);
        }
      },
      event);
}

// Step 3, with the per-event ceiling.
bool AmountsValid(const EventFields& event, int64_t amount_fen_max) {
  if (const auto* tap = std::get_if<TapFields>(&event)) return tap->amount_fen >= 0 && tap->amount_fen <= amount_fen_max;
  if (const auto* refund = std::get_if<TapRefundFields>(&event)) {
    return refund->amount_fen > 0 && refund->amount_fen <= amount_fen_max;
  }
  if (const auto* settlement = std::get_if<MedicalSettlementFields>(&event)) {
    if (settlement->total_fen < 0 || settlement->total_fen > amount_fen_max || settlement->fund_pay_fen < 0 || settlement->account_pay_fen < 0 ||
        settlement->cash_pay_fen < 0) {
      return false;
    }
    const std::optional<int64_t> cleared = CheckedAddFen(settlement->fund_pay_fen, settlement->account_pay_fen);
    if (!cleared) return false;
    const std::optional<int64_t> sum = CheckedAddFen(*cleared, settlement->cash_pay_fen);
    return sum.has_value() && *sum == settlement->total_fen;
  }
  return true;
}

}  // namespace

ReferenceModel::ReferenceModel(std::shared_ptr<const Registry> registry, ModelSettings settings)
    : registry_(std::move(registry)), settings_(settings) {
  const Registry& r = *registry_;
  // The oldest open window: the first day whose close instant is still ahead of the clock.
  oldest_open_window_ = settings_.calendar.DayOf(settings_.now_ms) - 1;
  while (settings_.calendar.CloseInstantMs(oldest_open_window_) <= settings_.now_ms) ++oldest_open_window_;

  auto province_index = [&](const std::string& code) { return IndexIn(r.provinces(), r.FindProvince(code)); };
  for (const Bank& bank : r.banks()) bank_province_index_.push_back(province_index(bank.province));
  for (const Fund& fund : r.funds()) fund_province_index_.push_back(province_index(fund.province));
  for (const Merchant& merchant : r.merchants()) {
    merchant_bank_index_.push_back(IndexIn(r.banks(), r.FindBank(merchant.bank_id)));
    merchant_province_index_.push_back(province_index(merchant.province));
    merchant_fund_index_.push_back(IsMedical(merchant.category) ? IndexIn(r.funds(), r.FindFund(merchant.fund_id))
                                                                : -1);
  }
  fee_bank_index_ = IndexIn(r.banks(), &r.fee_bank());
}

void ReferenceModel::ReserveIds(size_t tap_family_ids, size_t medical_family_ids) {
  applied_[static_cast<size_t>(Family::kTaps)].reserve(tap_family_ids);
  applied_[static_cast<size_t>(Family::kMedical)].reserve(medical_family_ids);
}

ReferenceModel::Routed ReferenceModel::Route(int64_t occurred_at_ms) const {
  const WindowDay natural = settings_.calendar.DayOf(occurred_at_ms);
  if (settings_.calendar.CloseInstantMs(natural) <= settings_.now_ms) return {oldest_open_window_, true};
  return {natural, false};
}

ReferenceModel::WindowState& ReferenceModel::Window(WindowDay day) {
  auto [it, inserted] = windows_.try_emplace(day);
  if (inserted) {
    const Registry& r = *registry_;
    WindowState& w = it->second;
    w.bank_province_fen.assign(r.provinces().size(), 0);
    w.bank_fen.assign(r.banks().size(), 0);
    w.merchant_net_fen.assign(r.merchants().size(), 0);
    w.fund_province_fen.assign(r.provinces().size(), 0);
    w.fund_fen.assign(r.funds().size(), 0);
    w.institution_fen.assign(r.merchants().size(), 0);
  }
  return it->second;
}

Verdict ReferenceModel::Reject(Reason reason, WindowDay window) {
  ++Window(window).exception_counts[static_cast<size_t>(reason)];
  return Verdict{VerdictKind::kException, reason, window, false};
}

Verdict ReferenceModel::Judge(std::string_view topic, size_t payload_bytes, const EventFields* event) {
  ++message_count_;
  const Registry& r = *registry_;
  // Steps 1 to 4 do not depend on the event's date: counted in the oldest open window.
  if (payload_bytes > settings_.message_bytes_max) return Reject(Reason::kOversized, oldest_open_window_);
  if (event == nullptr) return Reject(Reason::kMalformed, oldest_open_window_);
  const Family family = event->index() <= 1 ? Family::kTaps : Family::kMedical;
  const std::string_view expected_topic = family == Family::kTaps ? kTapsTopic : kMedicalTopic;
  if (!FieldsValid(*event) || topic != expected_topic) return Reject(Reason::kInvalidField, oldest_open_window_);
  if (!AmountsValid(*event, settings_.amount_fen_max)) return Reject(Reason::kAmountInvalid, oldest_open_window_);
  const int64_t occurred_at_ms = OccurredAtMsOf(*event);
  if (occurred_at_ms < settings_.now_ms - settings_.dedup_horizon_ms) {
    return Reject(Reason::kStale, oldest_open_window_);
  }
  if (occurred_at_ms > settings_.now_ms + settings_.clock_skew_ms_max) {
    return Reject(Reason::kFutureTimestamp, oldest_open_window_);
  }

  // From step 5 on, the message counts in the window its own timestamp routes to.
  const Routed routed = Route(occurred_at_ms);

  // Step 5: participants.
  const Bank* issuer_bank = nullptr;
  const Merchant* merchant = nullptr;
  const Fund* insured_fund = nullptr;
  if (const auto* tap = std::get_if<TapFields>(event)) {
    issuer_bank = r.FindBank(*tap->issuer_bank_id);
    merchant = r.FindMerchant(*tap->merchant_id);
    const Province* province = r.FindProvince(*tap->issuer_province);
    if (issuer_bank == nullptr || merchant == nullptr || province == nullptr) {
      return Reject(Reason::kUnknownParticipant, routed.window);
    }
    if (issuer_bank->province != *tap->issuer_province) return Reject(Reason::kInvalidField, routed.window);
  } else if (const auto* settlement = std::get_if<MedicalSettlementFields>(event)) {
    insured_fund = r.FindFund(*settlement->insured_fund_id);
    merchant = r.FindMerchant(*settlement->institution_id);
    if (insured_fund == nullptr || merchant == nullptr) return Reject(Reason::kUnknownParticipant, routed.window);
    if (!IsMedical(merchant->category)) return Reject(Reason::kInvalidField, routed.window);
  }

  // Step 6: dedup within the family.
  StringMap<AppliedId>& applied = applied_[static_cast<size_t>(family)];
  const std::string& txn_id = *TxnIdOf(*event);
  const auto [digest_high, digest_low] = ContentDigest(*event, scratch_);
  if (const auto it = applied.find(txn_id); it != applied.end()) {
    if (it->second.digest_high == digest_high && it->second.digest_low == digest_low) {
      ++Window(routed.window).exact_duplicate_count;
      return Verdict{VerdictKind::kExactDuplicate, Reason::kMalformed, routed.window, false};
    }
    return Reject(Reason::kDuplicateConflict, routed.window);
  }

  AppliedId record;
  record.digest_high = digest_high;
  record.digest_low = digest_low;
  record.variant_index = static_cast<uint8_t>(event->index());

  // Step 7, then the effect on the routed window. The original's entry is updated before the new
  // id is inserted, since inserting may move the map's entries.
  if (const auto* tap = std::get_if<TapFields>(event)) {
    const uint32_t bank_index = IndexIn(r.banks(), issuer_bank);
    const uint32_t merchant_index = IndexIn(r.merchants(), merchant);
    WindowState& w = Window(routed.window);
    const int64_t amount_fen = tap->amount_fen;
    Add(w.bank_province_fen[bank_province_index_[bank_index]], -amount_fen);
    Add(w.bank_province_fen[merchant_province_index_[merchant_index]], amount_fen);
    Add(w.bank_fen[bank_index], -amount_fen);
    Add(w.merchant_net_fen[merchant_index], amount_fen);
    record.party_a = bank_index;
    record.party_b = merchant_index;
    record.amount_fen = amount_fen;
  } else if (const auto* refund = std::get_if<TapRefundFields>(event)) {
    const auto original = applied.find(*refund->original_txn_id);
    if (original == applied.end() || original->second.variant_index != 0) {
      return Reject(Reason::kUnknownOriginal, routed.window);
    }
    AppliedId& tap = original->second;
    const std::optional<int64_t> refunded_fen = CheckedAddFen(tap.refunded_fen, refund->amount_fen);
    if (!refunded_fen || *refunded_fen > tap.amount_fen) {
      return Reject(Reason::kRefundExceedsOriginal, routed.window);
    }
    tap.refunded_fen = *refunded_fen;
    WindowState& w = Window(routed.window);
    const int64_t amount_fen = refund->amount_fen;
    Add(w.bank_province_fen[bank_province_index_[tap.party_a]], amount_fen);
    Add(w.bank_province_fen[merchant_province_index_[tap.party_b]], -amount_fen);
    Add(w.bank_fen[tap.party_a], amount_fen);
    Add(w.merchant_net_fen[tap.party_b], -amount_fen);
  } else if (const auto* settlement = std::get_if<MedicalSettlementFields>(event)) {
    const uint32_t fund_index = IndexIn(r.funds(), insured_fund);
    const uint32_t institution_index = IndexIn(r.merchants(), merchant);
    const int64_t institution_fund_index = merchant_fund_index_[institution_index];
    YRD_ASSERT(institution_fund_index >= 0);
    // Step 3 proved that the parts are non-negative and sum without overflow.
    const int64_t cleared_fen = settlement->fund_pay_fen + settlement->account_pay_fen;
    WindowState& w = Window(routed.window);
    Add(w.fund_fen[fund_index], -cleared_fen);
    Add(w.institution_fen[institution_index], cleared_fen);
    Add(w.fund_province_fen[fund_province_index_[fund_index]], -cleared_fen);
    Add(w.fund_province_fen[fund_province_index_[static_cast<size_t>(institution_fund_index)]], cleared_fen);
    record.party_a = fund_index;
    record.party_b = institution_index;
    record.amount_fen = cleared_fen;
  } else {
    const auto& cancellation = std::get<MedicalCancellationFields>(*event);
    const auto original = applied.find(*cancellation.original_txn_id);
    if (original == applied.end() || original->second.variant_index != 2) {
      return Reject(Reason::kUnknownOriginal, routed.window);
    }
    AppliedId& original_settlement = original->second;
    if (original_settlement.cancelled) return Reject(Reason::kAlreadyCancelled, routed.window);
    original_settlement.cancelled = true;
    const int64_t institution_fund_index = merchant_fund_index_[original_settlement.party_b];
    YRD_ASSERT(institution_fund_index >= 0);
    WindowState& w = Window(routed.window);
    const int64_t cleared_fen = original_settlement.amount_fen;
    Add(w.fund_fen[original_settlement.party_a], cleared_fen);
    Add(w.institution_fen[original_settlement.party_b], -cleared_fen);
    Add(w.fund_province_fen[fund_province_index_[original_settlement.party_a]], cleared_fen);
    Add(w.fund_province_fen[fund_province_index_[static_cast<size_t>(institution_fund_index)]], -cleared_fen);
  }

  WindowState& w = Window(routed.window);
  ++w.applied_count;
  if (routed.late) ++w.late_count;
  applied.emplace(txn_id, record);
  return Verdict{VerdictKind::kApplied, Reason::kMalformed, routed.window, routed.late};
}

std::optional<int64_t> ReferenceModel::RefundableFen(std::string_view txn_id) const {
  const StringMap<AppliedId>& taps = applied_[static_cast<size_t>(Family::kTaps)];
  const auto it = taps.find(txn_id);
  if (it == taps.end() || it->second.variant_index != 0) return std::nullopt;
  return it->second.amount_fen - it->second.refunded_fen;
}

std::optional<bool> ReferenceModel::SettlementCancelled(std::string_view txn_id) const {
  const StringMap<AppliedId>& medical = applied_[static_cast<size_t>(Family::kMedical)];
  const auto it = medical.find(txn_id);
  if (it == medical.end() || it->second.variant_index != 2) return std::nullopt;
  return it->second.cancelled;
}

Outcome ReferenceModel::Finish() const {
  const Registry& r = *registry_;
  Outcome outcome;
  uint64_t counted_messages = 0;
  for (const auto& [day, state] : windows_) {
    WindowOutcome& window = outcome.windows[day];
    window.applied_count = state.applied_count;
    window.exact_duplicate_count = state.exact_duplicate_count;
    window.late_count = state.late_count;
    window.exception_counts = state.exception_counts;
    counted_messages += static_cast<uint64_t>(state.applied_count + state.exact_duplicate_count);
    for (const int64_t count : state.exception_counts) counted_messages += static_cast<uint64_t>(count);

    // Fees per merchant on the window's net; the merchant's line and its settlement bank get the
    // net minus the fee, the clearing center's bank gets the fee.
    std::vector<int64_t> bank_fen = state.bank_fen;
    for (size_t m = 0; m < r.merchants().size(); ++m) {
      const int64_t net_fen = state.merchant_net_fen[m];
      if (net_fen == 0) continue;
      const Merchant& merchant = r.merchants()[m];
      const std::optional<int64_t> fee_fen = FeeFen(net_fen, r.fee_bps(merchant.category));
      YRD_ASSERT(fee_fen.has_value());
      Expect(window.bank_scheme_merchant, merchant.merchant_id, net_fen - *fee_fen);
      Add(bank_fen[merchant_bank_index_[m]], net_fen - *fee_fen);
      Add(bank_fen[fee_bank_index_], *fee_fen);
    }
    for (size_t p = 0; p < r.provinces().size(); ++p) {
      Expect(window.bank_scheme_province, r.provinces()[p].code, state.bank_province_fen[p]);
      Expect(window.fund_scheme_province, r.provinces()[p].code, state.fund_province_fen[p]);
    }
    for (size_t b = 0; b < r.banks().size(); ++b) {
      Expect(window.bank_scheme_bank, r.banks()[b].bank_id, bank_fen[b]);
    }
    for (size_t f = 0; f < r.funds().size(); ++f) {
      Expect(window.fund_scheme_fund, r.funds()[f].fund_id, state.fund_fen[f]);
    }
    for (size_t m = 0; m < r.merchants().size(); ++m) {
      Expect(window.fund_scheme_institution, r.merchants()[m].merchant_id, state.institution_fen[m]);
    }
    window.DropZeroPositions();

    // Zero-sum invariants of SPEC section 4.
    auto sum = [](const PositionMap& map) {
      int64_t total_fen = 0;
      for (const auto& [id, fen] : map) Add(total_fen, fen);
      return total_fen;
    };
    YRD_ASSERT(sum(window.bank_scheme_province) == 0);
    YRD_ASSERT(sum(window.bank_scheme_bank) == 0);
    YRD_ASSERT(sum(window.fund_scheme_province) == 0);
    int64_t fund_scheme_fen = sum(window.fund_scheme_fund);
    Add(fund_scheme_fen, sum(window.fund_scheme_institution));
    YRD_ASSERT(fund_scheme_fen == 0);
  }
  // Every message is counted exactly once, in exactly one window.
  YRD_ASSERT(counted_messages == message_count_);
  return outcome;
}

}  // namespace yrd::gen
