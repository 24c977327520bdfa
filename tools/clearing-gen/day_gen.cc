#include "tools/clearing-gen/day_gen.h"

#include <algorithm>
#include <span>
#include <utility>
#include <vector>

#include "engine/base/assert.h"
#include "engine/base/money.h"
#include "engine/base/strings.h"
#include "flatbuffers/flatbuffers.h"
#include "tools/clearing-gen/messages.h"
#include "tools/clearing-gen/rng.h"

namespace yrd::gen {
namespace {

// How many earlier events the generator remembers to pick originals from. Redeliveries,
// refunds and cancellations refer to recent events, as they do in the field.
constexpr size_t kRecentEventsMax = 1u << 15;
constexpr size_t kRefundableTapsMax = 1u << 15;
constexpr size_t kSettlementsMax = 1u << 13;
constexpr size_t kCancelledSettlementsMax = 1u << 10;
// Attempts to find a still-refundable tap or a not yet cancelled settlement before falling back.
constexpr int kPickAttemptsMax = 8;
// Each bank issues at least this many cards; more for big days, so that a card taps about
// kTapsPerCard times.
constexpr uint64_t kCardsPerBankMin = 64;
constexpr uint64_t kTapsPerCard = 3;
// Terminals per merchant of each category (Category order); hospitals and pharmacies take no taps.
constexpr std::array<int64_t, kCategoryCount> kTerminalsPerMerchant = {400, 60, 8, 4, 6, 16, 1, 1};
// Random malformed payloads are 1 to this many bytes.
constexpr int64_t kRandomPayloadBytesMax = 256;
// An oversized message carries a terminal id of this many bytes, beyond message_bytes_max.
constexpr int64_t kOversizedFieldBytesMin = 66'000;
constexpr int64_t kOversizedFieldBytesMax = 90'000;
// Late events are dated 1 day back, or up to this many days back for a few.
constexpr int64_t kLateDaysMax = 7;
// The model's id tables are sized up front for at most this many ids per family; beyond, they grow.
constexpr double kReservedIdsMax = 1 << 24;
constexpr int64_t kHourMs = 3'600'000;
constexpr int64_t kMinuteMs = 60'000;

// Relative traffic per local hour (China Standard Time): morning 07-09 and evening 17-19 rush.
constexpr std::array<int32_t, 24> kHourWeights = {2,  1,  1,  1,  2,  6,  20, 60, 70, 35, 25, 25,
                                                   28, 25, 25, 28, 35, 62, 66, 38, 25, 18, 10, 5};

// Province codes tried, in order, for an unregistered issuer province.
constexpr std::array<std::string_view, 6> kForeignProvinceCodes = {"350000", "360000", "370000",
                                                                   "110000", "440000", "990000"};
// Pooling-region codes tried for an unregistered insured fund.
constexpr std::array<std::string_view, 6> kForeignFundIds = {"350100", "360100", "370100",
                                                             "110100", "440100", "990100"};

template <typename T>
class Ring {
 public:
  explicit Ring(size_t capacity) : capacity_(capacity) { items_.reserve(std::min<size_t>(capacity, 1024)); }
  void Push(T value) {
    if (items_.size() < capacity_) {
      items_.push_back(std::move(value));
    } else {
      items_[next_] = std::move(value);
      next_ = (next_ + 1) % capacity_;
    }
  }
  [[nodiscard]] bool empty() const { return items_.empty(); }
  [[nodiscard]] const T& Pick(Rng& rng) const { return items_[rng.Below(items_.size())]; }

 private:
  size_t capacity_;
  size_t next_ = 0;
  std::vector<T> items_;
};

// Piecewise-constant traffic density over an interval; At() maps a quantile to an instant.
class TimeProfile {
 public:
  // The hours of the local day starting at `day_start_ms`, clipped to [range_start_ms, range_end_ms).
  TimeProfile(int64_t day_start_ms, int64_t range_start_ms, int64_t range_end_ms) {
    for (int64_t hour = 0; hour < 24; ++hour) {
      const int64_t start_ms = std::max(day_start_ms + hour * kHourMs, range_start_ms);
      const int64_t end_ms = std::min(day_start_ms + (hour + 1) * kHourMs, range_end_ms);
      if (end_ms <= start_ms) continue;
      const double density = kHourWeights[static_cast<size_t>(hour)];
      segments_.push_back({start_ms, end_ms, total_mass_, density});
      total_mass_ += density * static_cast<double>(end_ms - start_ms);
    }
    YRD_ASSERT(!segments_.empty());
  }

  // `quantile` in [0, 1); monotone: a larger quantile never gives an earlier instant.
  [[nodiscard]] int64_t At(double quantile) const {
    const double target = quantile * total_mass_;
    size_t i = 0;
    while (i + 1 < segments_.size() && segments_[i + 1].mass_before <= target) ++i;
    const Segment& segment = segments_[i];
    const int64_t offset_ms = static_cast<int64_t>((target - segment.mass_before) / segment.density);
    return std::clamp(segment.start_ms + offset_ms, segment.start_ms, segment.end_ms - 1);
  }

 private:
  struct Segment {
    int64_t start_ms;
    int64_t end_ms;
    double mass_before;
    double density;
  };
  std::vector<Segment> segments_;
  double total_mass_ = 0;
};

// Zipf-skewed choice among `count` items: item ranks are a seeded permutation, weight 1/rank.
class ZipfPicker {
 public:
  ZipfPicker() = default;
  ZipfPicker(size_t count, Rng& rng) {
    std::vector<size_t> rank(count);
    for (size_t i = 0; i < count; ++i) rank[i] = i;
    for (size_t i = count; i > 1; --i) std::swap(rank[i - 1], rank[rng.Below(i)]);
    double total = 0;
    cumulative_.resize(count);
    for (size_t i = 0; i < count; ++i) {
      total += 1.0 / static_cast<double>(rank[i] + 1);
      cumulative_[i] = total;
    }
  }
  [[nodiscard]] bool empty() const { return cumulative_.empty(); }
  [[nodiscard]] size_t Pick(Rng& rng) const {
    const double target = rng.Unit() * cumulative_.back();
    const auto it = std::upper_bound(cumulative_.begin(), cumulative_.end(), target);
    return std::min<size_t>(static_cast<size_t>(it - cumulative_.begin()), cumulative_.size() - 1);
  }

 private:
  std::vector<double> cumulative_;
};

template <typename T>
uint32_t IndexIn(const std::vector<T>& items, const T* item) {
  YRD_ASSERT(item != nullptr);
  return static_cast<uint32_t>(item - items.data());
}

// Writes `value` as exactly `width` decimal digits (the low ones) at `out`.
void PutDigits(char* out, uint64_t value, size_t width) {
  for (size_t i = width; i > 0; --i) {
    out[i - 1] = static_cast<char>('0' + value % 10);
    value /= 10;
  }
}

}  // namespace

int64_t DefaultNowMs(WindowDay day) {
  return static_cast<int64_t>(day) * kDayMs - kChinaStandardTimeOffsetMs + 23 * kHourMs + 59 * kMinuteMs;
}

absl::Status ValidateDayOptions(const DayOptions& options) {
  if (options.event_count > kEventCountMax) {
    return absl::InvalidArgumentError(Cat("--events must be at most ", kEventCountMax));
  }
  const std::pair<const char*, double> shares[] = {
      {"--duplicate-share", options.duplicate_share},       {"--conflict-share", options.conflict_share},
      {"--malformed-share", options.malformed_share},       {"--refund-share", options.refund_share},
      {"--cancellation-share", options.cancellation_share}, {"--late-share", options.late_share},
      {"--medical-share", options.medical_share},           {"--invalid-share", options.invalid_share},
      {"--cross-province-share", options.cross_province_share},
  };
  for (const auto& [flag, share] : shares) {
    if (!(share >= 0.0 && share <= 1.0)) return absl::InvalidArgumentError(Cat(flag, " must be from 0 to 1"));
  }
  const double total = options.duplicate_share + options.conflict_share + options.malformed_share +
                       options.refund_share + options.medical_share * options.cancellation_share +
                       options.late_share + options.medical_share + options.invalid_share;
  if (total > 1.0) {
    return absl::InvalidArgumentError(
        "the shares of duplicates, conflicts, malformed, refunds, cancellations, late, medical and invalid "
        "messages add up to more than 1");
  }
  return absl::OkStatus();
}

class DayGenerator::Impl {
 public:
  Impl(std::shared_ptr<const Registry> registry, const DayOptions& options)
      : registry_(std::move(registry)),
        options_(options),
        rng_(options.seed),
        model_(registry_, SettingsFor(options)),
        model_settings_(SettingsFor(options)),
        recent_events_(kRecentEventsMax),
        refundable_taps_(kRefundableTapsMax),
        settlements_(kSettlementsMax),
        cancelled_settlements_(kCancelledSettlementsMax),
        slot_profile_(DayStartMs(options.day), SlotRangeStartMs(options), SlotRangeEndMs(options)),
        full_day_profile_(0, 0, kDayMs) {
    const Registry& r = *registry_;
    const size_t province_count = r.provinces().size();
    banks_of_province_.resize(province_count);
    funds_of_province_.resize(province_count);
    for (const Bank& bank : r.banks()) {
      banks_of_province_[ProvinceIndex(bank.province)].push_back(IndexIn(r.banks(), &bank));
    }
    for (const Fund& fund : r.funds()) {
      funds_of_province_[ProvinceIndex(fund.province)].push_back(IndexIn(r.funds(), &fund));
    }
    for (size_t p = 0; p < province_count; ++p) {
      if (!banks_of_province_[p].empty()) provinces_with_banks_.push_back(static_cast<uint32_t>(p));
      if (!funds_of_province_[p].empty()) provinces_with_funds_.push_back(static_cast<uint32_t>(p));
    }
    for (const Merchant& merchant : r.merchants()) {
      merchant_province_.push_back(ProvinceIndex(merchant.province));
      (IsMedical(merchant.category) ? institutions_ : transit_merchants_).push_back(IndexIn(r.merchants(), &merchant));
    }
    transit_picker_ = ZipfPicker(transit_merchants_.size(), rng_);
    institution_picker_ = ZipfPicker(institutions_.size(), rng_);
    cards_per_bank_ = std::max<uint64_t>(kCardsPerBankMin,
                                         options_.event_count / (kTapsPerCard * std::max<size_t>(1, r.banks().size())));
    // Nearly every message applies a new id: size the model's tables once.
    const double count = static_cast<double>(options_.event_count);
    const double medical_ids = count * options_.medical_share * (1.0 + options_.cancellation_share);
    model_.ReserveIds(static_cast<size_t>(std::min(kReservedIdsMax, count * (1.0 - options_.medical_share))),
                      static_cast<size_t>(std::min(kReservedIdsMax, medical_ids)));
    const std::string date = FormatWindowDay(options_.day);
    date_tag_ = date.substr(4, 4);
  }

  absl::Status Run(MessageSink& sink) {
    sink_ = &sink;
    if (options_.event_count > 0 && transit_merchants_.empty()) {
      return absl::FailedPreconditionError("the registry has no transit or culture merchant to tap at");
    }
    if (institutions_.empty() && options_.medical_share > 0) {
      return absl::FailedPreconditionError(
          "the registry has no hospital or pharmacy; pass --medical-share 0 or a registry with --funds > 0");
    }
    const double thresholds[] = {
        options_.duplicate_share,
        options_.conflict_share,
        options_.malformed_share,
        options_.invalid_share,
        options_.refund_share,
        options_.medical_share * options_.cancellation_share,
        options_.late_share,
        options_.medical_share,
    };
    for (uint64_t slot = 0; slot < options_.event_count; ++slot) {
      // Production order follows the clock: slot k takes the k-th quantile of the day's traffic.
      const double quantile = (static_cast<double>(slot) + rng_.Unit()) / static_cast<double>(options_.event_count);
      const int64_t slot_ms = slot_profile_.At(std::min(quantile, 1.0 - 0x1.0p-53));
      double draw = rng_.Unit();
      size_t choice = 0;
      while (choice < std::size(thresholds) && draw >= thresholds[choice]) {
        draw -= thresholds[choice];
        ++choice;
      }
      absl::Status status;
      switch (choice) {
        case 0: status = Duplicate(slot_ms); break;
        case 1: status = Conflict(slot_ms); break;
        case 2: status = Malformed(); break;
        case 3: status = Invalid(static_cast<InvalidKind>(rng_.Below(kInvalidKindCount)), slot_ms); break;
        case 4: status = Refund(slot_ms); break;
        case 5: status = Cancellation(slot_ms); break;
        case 6: status = Late(); break;
        case 7: status = NewSettlementMessage(slot_ms); break;
        default: status = NewTapMessage(slot_ms); break;
      }
      if (!status.ok()) return status;
    }
    YRD_ASSERT(stats_.message_count == options_.event_count);
    outcome_ = model_.Finish();
    return absl::OkStatus();
  }

  nlohmann::json OracleJson() const {
    nlohmann::json json = OutcomeToJson(outcome_);
    json["clock_fixed_ms"] = options_.now_ms;
    json["messages"] = stats_.message_count;
    json["engine_settings"] = {
        {"dedup_horizon_ms", model_settings_.dedup_horizon_ms},
        {"clock_skew_ms_max", model_settings_.clock_skew_ms_max},
        {"message_bytes_max", model_settings_.message_bytes_max},
        {"cutoff_local", "00:00"},
        {"grace_ms", model_settings_.calendar.grace_ms},
    };
    return json;
  }

  const Outcome& outcome() const { return outcome_; }
  const DayStats& stats() const { return stats_; }

 private:
  // The engine's default settings, with its clock frozen at --now-ms.
  static ModelSettings SettingsFor(const DayOptions& options) {
    ModelSettings settings;
    settings.now_ms = options.now_ms;
    return settings;
  }

  static int64_t DayStartMs(WindowDay day) {
    return static_cast<int64_t>(day) * kDayMs - kChinaStandardTimeOffsetMs;
  }
  // New events are dated within the day, and not after the frozen clock when it stops within it.
  static int64_t SlotRangeStartMs(const DayOptions& options) { return DayStartMs(options.day); }
  static int64_t SlotRangeEndMs(const DayOptions& options) {
    const int64_t start_ms = DayStartMs(options.day);
    const int64_t end_ms = start_ms + kDayMs;
    return options.now_ms > start_ms && options.now_ms < end_ms ? options.now_ms + 1 : end_ms;
  }

  uint32_t ProvinceIndex(std::string_view code) const {
    return IndexIn(registry_->provinces(), registry_->FindProvince(code));
  }

  // Whether an event dated `occurred_at_ms` passes the stale and future checks.
  bool TimeAcceptable(int64_t occurred_at_ms) const {
    return occurred_at_ms >= options_.now_ms - model_settings_.dedup_horizon_ms &&
           occurred_at_ms <= options_.now_ms + model_settings_.clock_skew_ms_max;
  }

  // "T1127" + 10 digits: unique within the run, 15 characters. The digits are the run's counter
  // scrambled by a bijection of [0, 10^10) (multiplication by a number prime to 10), so ids
  // arrive in no particular order, as ids from thousands of terminals and phones do; a counter
  // in order would make the store's sorted inserts unrealistically cheap.
  std::string NextId(char prefix) {
    constexpr unsigned __int128 kModulus = 10'000'000'000ull;
    constexpr unsigned __int128 kMultiplier = 6'364'136'223ull;  // odd, not a multiple of 5
    std::string id(15, '0');
    id[0] = prefix;
    id.replace(1, 4, date_tag_);
    PutDigits(id.data() + 5, static_cast<uint64_t>((++id_counter_ * kMultiplier) % kModulus), 10);
    return id;
  }

  // 19 digits: a 6-digit BIN of the bank, 12 digits of account, a Luhn check digit.
  static std::string CardNumber(uint32_t bank_index, uint64_t card_index) {
    std::string card(19, '0');
    PutDigits(card.data(), 621000 + bank_index % 1000, 6);
    // A branch code: varies with the card, so numbers do not all look alike.
    PutDigits(card.data() + 6, (card_index * 7919 + bank_index / 1000 * 31) % 10'000, 4);
    PutDigits(card.data() + 10, card_index % 100'000'000, 8);
    int sum = 0;
    for (size_t i = 0; i < 18; ++i) {
      int digit = card[17 - i] - '0';
      if (i % 2 == 0) {
        digit *= 2;
        if (digit > 9) digit -= 9;
      }
      sum += digit;
    }
    card[18] = static_cast<char>('0' + (10 - sum % 10) % 10);
    return card;
  }

  // A card: physical, electronic (in a wallet app) or a QR code, fixed per card.
  static int8_t CarrierOf(uint32_t bank_index, uint64_t card_index) {
    uint64_t x = (static_cast<uint64_t>(bank_index) << 40) ^ card_index;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    const uint64_t percent = x % 100;
    return percent < 55 ? 1 : (percent < 85 ? 2 : 3);
  }

  uint32_t PickBankIn(uint32_t province_index) {
    const std::vector<uint32_t>& banks = banks_of_province_[province_index];
    return banks[rng_.Below(banks.size())];
  }

  uint32_t PickOtherProvince(const std::vector<uint32_t>& candidates, uint32_t excluded) {
    uint32_t province = excluded;
    while (province == excluded) province = candidates[rng_.Below(candidates.size())];
    return province;
  }

  int64_t TapAmountFen(Category category) {
    switch (category) {
      case Category::kBus:
        return rng_.Chance(0.6) ? 200 : rng_.Between(10, 30) * 10;
      case Category::kMetro: {
        const int64_t fare_fen = rng_.Between(2, 9) * 100;
        return rng_.Chance(0.2) ? fare_fen * 9 / 10 : fare_fen;  // 10% off with a monthly pass
      }
      case Category::kFerry: {
        constexpr int64_t kFaresFen[] = {200, 500, 800, 1000, 1500};
        return kFaresFen[rng_.Below(std::size(kFaresFen))];
      }
      case Category::kLibrary:
        return rng_.Chance(0.9) ? 0 : rng_.Between(5, 30) * 100;
      case Category::kMuseum:
        return rng_.Chance(0.6) ? 0 : rng_.Between(20, 60) * 100 + (rng_.Chance(0.3) ? 50 : 0);
      case Category::kScenic: {
        if (rng_.Chance(0.05)) return 0;
        const int64_t ticket_fen = rng_.Between(30, 300) * 100;
        return rng_.Chance(0.3) ? ticket_fen * 85 / 100 : ticket_fen;
      }
      case Category::kHospital:
      case Category::kPharmacy:
        break;
    }
    return 0;
  }

  TapFields NewTap(int64_t occurred_at_ms) {
    const Registry& r = *registry_;
    const uint32_t merchant_index = transit_merchants_[transit_picker_.Pick(rng_)];
    const Merchant& merchant = r.merchants()[merchant_index];
    const uint32_t merchant_province = merchant_province_[merchant_index];
    uint32_t issuer_province = merchant_province;
    if (provinces_with_banks_.size() > 1 && rng_.Chance(options_.cross_province_share)) {
      issuer_province = PickOtherProvince(provinces_with_banks_, merchant_province);
    } else if (banks_of_province_[issuer_province].empty()) {
      issuer_province = provinces_with_banks_[rng_.Below(provinces_with_banks_.size())];
    }
    const uint32_t bank_index = PickBankIn(issuer_province);
    const uint64_t card_index = rng_.Below(cards_per_bank_);

    TapFields tap;
    tap.txn_id = NextId('T');
    tap.card_no = CardNumber(bank_index, card_index);
    tap.carrier = CarrierOf(bank_index, card_index);
    tap.issuer_province = r.provinces()[issuer_province].code;
    tap.issuer_bank_id = r.banks()[bank_index].bank_id;
    tap.merchant_id = merchant.merchant_id;
    const int64_t terminal =
        rng_.Between(1, kTerminalsPerMerchant[static_cast<size_t>(merchant.category)]);
    std::string terminal_id = merchant.merchant_id.size() <= kIdLengthMax - 4
                                  ? Cat(merchant.merchant_id, "-000")
                                  : Cat("T", static_cast<uint64_t>(merchant_index), "-000");
    PutDigits(terminal_id.data() + terminal_id.size() - 3, static_cast<uint64_t>(terminal), 3);
    tap.terminal_id = std::move(terminal_id);
    tap.amount_fen = TapAmountFen(merchant.category);
    tap.occurred_at_ms = occurred_at_ms;
    return tap;
  }

  MedicalSettlementFields NewSettlement(int64_t occurred_at_ms) {
    const Registry& r = *registry_;
    const uint32_t institution_index = institutions_[institution_picker_.Pick(rng_)];
    const Merchant& institution = r.merchants()[institution_index];
    const Fund& institution_fund = *r.FindFund(institution.fund_id);
    const uint32_t institution_province = ProvinceIndex(institution_fund.province);
    uint32_t insured_province = institution_province;
    if (provinces_with_funds_.size() > 1 && rng_.Chance(options_.cross_province_share)) {
      insured_province = PickOtherProvince(provinces_with_funds_, institution_province);
    }
    // Within a province the patient usually comes from another pooling region.
    const std::vector<uint32_t>& regions = funds_of_province_[insured_province];
    uint32_t fund_index = regions[rng_.Below(regions.size())];
    if (regions.size() > 1 && r.funds()[fund_index].fund_id == institution_fund.fund_id && rng_.Chance(0.8)) {
      fund_index = regions[rng_.Below(regions.size())];
    }
    const Fund& insured_fund = r.funds()[fund_index];
    const uint32_t card_province = ProvinceIndex(insured_fund.province);
    const uint32_t bank_index = banks_of_province_[card_province].empty()
                                    ? static_cast<uint32_t>(rng_.Below(r.banks().size()))
                                    : PickBankIn(card_province);

    MedicalSettlementFields settlement;
    settlement.txn_id = NextId('S');
    settlement.card_no = CardNumber(bank_index, rng_.Below(cards_per_bank_));
    settlement.insured_fund_id = insured_fund.fund_id;
    settlement.institution_id = institution.merchant_id;
    int64_t total_fen = 0;
    int64_t fund_percent = 0;
    int64_t account_percent = 0;
    if (institution.category == Category::kPharmacy) {
      settlement.visit_type = 3;
      total_fen = rng_.Between(1'000, 40'000);
      fund_percent = rng_.Between(0, 50);
      account_percent = rng_.Between(30, 100);
    } else if (rng_.Chance(0.85)) {
      settlement.visit_type = 1;
      total_fen = rng_.Between(2'000, 80'000);
      fund_percent = rng_.Between(30, 70);
      account_percent = rng_.Between(0, 60);
    } else {
      settlement.visit_type = 2;
      total_fen = rng_.Between(200'000, 5'000'000);
      fund_percent = rng_.Between(55, 85);
      account_percent = rng_.Between(0, 20);
    }
    if (rng_.Chance(0.02)) fund_percent = account_percent = 0;  // paid all in cash: nothing cleared
    settlement.total_fen = total_fen;
    settlement.fund_pay_fen = total_fen * fund_percent / 100;
    settlement.account_pay_fen = (total_fen - settlement.fund_pay_fen) * account_percent / 100;
    settlement.cash_pay_fen = total_fen - settlement.fund_pay_fen - settlement.account_pay_fen;
    settlement.occurred_at_ms = occurred_at_ms;
    return settlement;
  }

  // Encodes, judges and produces one event message. `topic` defaults to the event's own.
  absl::Status Emit(const EventFields& event, Verdict* verdict_out = nullptr,
                    std::string_view topic = std::string_view()) {
    if (topic.empty()) topic = TopicOf(event);
    EncodeEvent(event, EnvelopeShape::kNormal, builder_);
    const std::string_view payload = BuilderBytes(builder_);
    const Verdict verdict = model_.Judge(topic, payload.size(), &event);
    if (verdict_out != nullptr) *verdict_out = verdict;
    ++stats_.message_count;
    return sink_->Accept(topic, KeyOf(event), payload);
  }

  // Produces a message that holds no decodable event.
  absl::Status EmitMalformed(std::string_view topic, std::string_view key, std::string_view payload) {
    const Verdict verdict = model_.Judge(topic, payload.size(), nullptr);
    YRD_ASSERT(verdict.kind == VerdictKind::kException && verdict.reason == Reason::kMalformed);
    ++stats_.message_count;
    ++stats_.malformed_count;
    return sink_->Accept(topic, key, payload);
  }

  // Remembers an applied event as a possible original for what comes later.
  void Remember(EventFields&& event) {
    if (const auto* tap = std::get_if<TapFields>(&event); tap != nullptr && tap->amount_fen > 0) {
      refundable_taps_.Push(*tap->txn_id);
    } else if (const auto* settlement = std::get_if<MedicalSettlementFields>(&event)) {
      settlements_.Push(*settlement->txn_id);
    } else if (const auto* cancellation = std::get_if<MedicalCancellationFields>(&event)) {
      cancelled_settlements_.Push(*cancellation->original_txn_id);
    }
    recent_events_.Push(std::move(event));
  }

  // Emits a new original event and remembers it when applied.
  absl::Status EmitOriginal(EventFields event) {
    const Registry& r = *registry_;
    if (const auto* tap = std::get_if<TapFields>(&event)) {
      if (*tap->issuer_province != r.FindMerchant(*tap->merchant_id)->province) ++stats_.cross_province_count;
    } else if (const auto* settlement = std::get_if<MedicalSettlementFields>(&event)) {
      const Fund* institution_fund = r.FindFund(r.FindMerchant(*settlement->institution_id)->fund_id);
      if (r.FindFund(*settlement->insured_fund_id)->province != institution_fund->province) {
        ++stats_.cross_province_count;
      }
    }
    Verdict verdict;
    if (absl::Status status = Emit(event, &verdict); !status.ok()) return status;
    if (TimeAcceptable(OccurredAtMsOf(event))) YRD_ASSERT(verdict.kind == VerdictKind::kApplied);
    if (verdict.kind == VerdictKind::kApplied) Remember(std::move(event));
    return absl::OkStatus();
  }

  absl::Status NewTapMessage(int64_t occurred_at_ms) {
    ++stats_.tap_count;
    return EmitOriginal(NewTap(occurred_at_ms));
  }

  absl::Status NewSettlementMessage(int64_t occurred_at_ms) {
    ++stats_.medical_settlement_count;
    return EmitOriginal(NewSettlement(occurred_at_ms));
  }

  // A new event dated in a closed window: yesterday mostly, up to a week back for a few.
  absl::Status Late() {
    const int64_t days_back = rng_.Chance(0.8) ? 1 : rng_.Between(2, kLateDaysMax);
    const int64_t occurred_at_ms = DayStartMs(options_.day) - days_back * kDayMs + full_day_profile_.At(rng_.Unit());
    ++stats_.late_count;
    if (!institutions_.empty() && rng_.Chance(options_.medical_share)) {
      ++stats_.medical_settlement_count;
      return EmitOriginal(NewSettlement(occurred_at_ms));
    }
    ++stats_.tap_count;
    return EmitOriginal(NewTap(occurred_at_ms));
  }

  absl::Status Refund(int64_t occurred_at_ms) {
    for (int attempt = 0; attempt < kPickAttemptsMax && !refundable_taps_.empty(); ++attempt) {
      const std::string& original = refundable_taps_.Pick(rng_);
      const std::optional<int64_t> refundable_fen = model_.RefundableFen(original);
      YRD_ASSERT(refundable_fen.has_value());
      if (*refundable_fen <= 0) continue;
      TapRefundFields refund;
      refund.txn_id = NextId('R');
      refund.original_txn_id = original;
      // Mostly the whole remaining amount (a cancelled ride or ticket), sometimes a part.
      refund.amount_fen = rng_.Chance(0.7) ? *refundable_fen : rng_.Between(1, *refundable_fen);
      refund.occurred_at_ms = occurred_at_ms;
      ++stats_.refund_count;
      return EmitOriginal(std::move(refund));
    }
    return NewTapMessage(occurred_at_ms);
  }

  absl::Status Cancellation(int64_t occurred_at_ms) {
    for (int attempt = 0; attempt < kPickAttemptsMax && !settlements_.empty(); ++attempt) {
      const std::string& original = settlements_.Pick(rng_);
      const std::optional<bool> cancelled = model_.SettlementCancelled(original);
      YRD_ASSERT(cancelled.has_value());
      if (*cancelled) continue;
      MedicalCancellationFields cancellation;
      cancellation.txn_id = NextId('C');
      cancellation.original_txn_id = original;
      cancellation.occurred_at_ms = occurred_at_ms;
      ++stats_.cancellation_count;
      return EmitOriginal(std::move(cancellation));
    }
    return NewTapMessage(occurred_at_ms);
  }

  absl::Status Duplicate(int64_t occurred_at_ms) {
    if (recent_events_.empty()) return NewTapMessage(occurred_at_ms);
    const EventFields& original = recent_events_.Pick(rng_);
    ++stats_.duplicate_count;
    Verdict verdict;
    if (absl::Status status = Emit(original, &verdict); !status.ok()) return status;
    YRD_ASSERT(verdict.kind == VerdictKind::kExactDuplicate);
    return absl::OkStatus();
  }

  absl::Status Conflict(int64_t occurred_at_ms) {
    if (recent_events_.empty()) return NewTapMessage(occurred_at_ms);
    EventFields event = recent_events_.Pick(rng_);
    // Same id and key, different content; every variant stays valid through step 5.
    if (auto* tap = std::get_if<TapFields>(&event)) {
      tap->amount_fen += rng_.Between(1, 300);
    } else if (auto* refund = std::get_if<TapRefundFields>(&event)) {
      refund->amount_fen += 1;
    } else if (auto* settlement = std::get_if<MedicalSettlementFields>(&event)) {
      const int64_t extra_fen = rng_.Between(1, 5'000);
      settlement->total_fen += extra_fen;
      settlement->cash_pay_fen += extra_fen;
    } else {
      std::get<MedicalCancellationFields>(event).occurred_at_ms -= rng_.Between(1'000, 60'000);
    }
    ++stats_.conflict_count;
    Verdict verdict;
    if (absl::Status status = Emit(event, &verdict); !status.ok()) return status;
    if (TimeAcceptable(OccurredAtMsOf(event))) {
      YRD_ASSERT(verdict.kind == VerdictKind::kException && verdict.reason == Reason::kDuplicateConflict);
    }
    return absl::OkStatus();
  }

  std::string_view RandomTopic() { return rng_.Chance(0.5) ? kTapsTopic : kMedicalTopic; }

  absl::Status Malformed() {
    const int64_t variant = rng_.Between(0, 3);
    if (variant == 1 || variant == 2) {
      // A valid event, never produced whole, truncated or finished without the file identifier.
      const int64_t occurred_at_ms = slot_profile_.At(rng_.Unit());
      EventFields event = institutions_.empty() || rng_.Chance(0.7) ? EventFields(NewTap(occurred_at_ms))
                                                                     : EventFields(NewSettlement(occurred_at_ms));
      const std::string key(KeyOf(event));
      if (variant == 1) {
        EncodeEvent(event, EnvelopeShape::kNormal, builder_);
        const std::string_view whole = BuilderBytes(builder_);
        size_t length_bytes = static_cast<size_t>(rng_.Between(1, static_cast<int64_t>(whole.size()) - 1));
        // Cutting only trailing padding would leave a valid buffer: cut further until it is not.
        while (PassesEnvelopeVerifier(whole.substr(0, length_bytes))) --length_bytes;
        YRD_ASSERT(length_bytes > 0);
        return EmitMalformed(TopicOf(event), key, whole.substr(0, length_bytes));
      }
      EncodeEvent(event, EnvelopeShape::kWithoutIdentifier, builder_);
      if (!PassesEnvelopeVerifier(BuilderBytes(builder_))) {
        return EmitMalformed(TopicOf(event), key, BuilderBytes(builder_));
      }
    }
    if (variant == 3) {
      EncodeEmptyEnvelope(builder_);
      return EmitMalformed(RandomTopic(), NextId('X'), BuilderBytes(builder_));
    }
    std::string bytes;
    do {
      bytes.resize(static_cast<size_t>(rng_.Between(1, kRandomPayloadBytesMax)));
      for (char& c : bytes) c = static_cast<char>(rng_.Next() & 0xff);
    } while (PassesEnvelopeVerifier(bytes));
    return EmitMalformed(RandomTopic(), NextId('X'), bytes);
  }

  // An id the registry does not know: the first candidate not registered, else a numbered one.
  template <typename Find>
  std::string Unregistered(std::span<const std::string_view> candidates, std::string_view prefix, Find&& find) {
    for (const std::string_view candidate : candidates) {
      if (find(candidate) == nullptr) return std::string(candidate);
    }
    for (uint64_t n = 1;; ++n) {
      std::string id = Cat(prefix, n);
      if (find(id) == nullptr) return id;
    }
  }

  absl::Status Invalid(InvalidKind kind, int64_t occurred_at_ms) {
    const Registry& r = *registry_;
    const bool medical = !institutions_.empty();
    std::optional<EventFields> event;
    std::string_view topic;
    Reason expected = Reason::kInvalidField;
    bool time_checked = true;  // the event carries a timestamp the generator did not choose
    switch (kind) {
      case InvalidKind::kUnknownBank: {
        TapFields tap = NewTap(occurred_at_ms);
        tap.issuer_bank_id = Unregistered({}, "B99", [&](std::string_view id) { return r.FindBank(id); });
        event = std::move(tap);
        expected = Reason::kUnknownParticipant;
        break;
      }
      case InvalidKind::kUnknownMerchant: {
        TapFields tap = NewTap(occurred_at_ms);
        tap.merchant_id = Unregistered({}, "M990000", [&](std::string_view id) { return r.FindMerchant(id); });
        event = std::move(tap);
        expected = Reason::kUnknownParticipant;
        break;
      }
      case InvalidKind::kUnknownProvince: {
        TapFields tap = NewTap(occurred_at_ms);
        tap.issuer_province = Unregistered(kForeignProvinceCodes, "99", [&](std::string_view id) {
          return r.FindProvince(id);
        });
        event = std::move(tap);
        expected = Reason::kUnknownParticipant;
        break;
      }
      case InvalidKind::kUnknownFund: {
        if (!medical) return Invalid(InvalidKind::kUnknownBank, occurred_at_ms);
        MedicalSettlementFields settlement = NewSettlement(occurred_at_ms);
        settlement.insured_fund_id =
            Unregistered(kForeignFundIds, "99", [&](std::string_view id) { return r.FindFund(id); });
        event = std::move(settlement);
        expected = Reason::kUnknownParticipant;
        break;
      }
      case InvalidKind::kUnknownInstitution: {
        if (!medical) return Invalid(InvalidKind::kUnknownMerchant, occurred_at_ms);
        MedicalSettlementFields settlement = NewSettlement(occurred_at_ms);
        settlement.institution_id =
            Unregistered({}, "H990000", [&](std::string_view id) { return r.FindMerchant(id); });
        event = std::move(settlement);
        expected = Reason::kUnknownParticipant;
        break;
      }
      case InvalidKind::kBadIdCharacters: {
        TapFields tap = NewTap(occurred_at_ms);
        switch (rng_.Between(0, 4)) {
          case 0: (*tap.txn_id)[5] = ' '; break;
          case 1: (*tap.card_no)[8] = '.'; break;
          case 2: tap.terminal_id = std::string(kIdLengthMax + 1, '7'); break;
          case 3: tap.merchant_id = Cat(*tap.merchant_id, "\xe5\x8d\xa1"); break;  // a CJK character
          default: tap.issuer_bank_id = std::string(); break;
        }
        event = std::move(tap);
        break;
      }
      case InvalidKind::kMissingField: {
        if (medical && rng_.Chance(0.3)) {
          MedicalSettlementFields settlement = NewSettlement(occurred_at_ms);
          (rng_.Chance(0.5) ? settlement.institution_id : settlement.card_no).reset();
          event = std::move(settlement);
        } else {
          TapFields tap = NewTap(occurred_at_ms);
          switch (rng_.Between(0, 2)) {
            case 0: tap.terminal_id.reset(); break;
            case 1: tap.card_no.reset(); break;
            default: tap.merchant_id.reset(); break;
          }
          event = std::move(tap);
        }
        break;
      }
      case InvalidKind::kBadEnum: {
        constexpr int8_t kBadValues[] = {0, 4, 9, -1};
        if (medical && rng_.Chance(0.3)) {
          MedicalSettlementFields settlement = NewSettlement(occurred_at_ms);
          settlement.visit_type = kBadValues[rng_.Below(std::size(kBadValues))];
          event = std::move(settlement);
        } else {
          TapFields tap = NewTap(occurred_at_ms);
          tap.carrier = kBadValues[rng_.Below(std::size(kBadValues))];
          event = std::move(tap);
        }
        break;
      }
      case InvalidKind::kWrongTopic: {
        if (medical && rng_.Chance(0.5)) {
          event = NewSettlement(occurred_at_ms);
          topic = kTapsTopic;
        } else {
          event = NewTap(occurred_at_ms);
          topic = kMedicalTopic;
        }
        break;
      }
      case InvalidKind::kProvinceMismatch: {
        if (r.provinces().size() < 2) return Invalid(InvalidKind::kUnknownProvince, occurred_at_ms);
        TapFields tap = NewTap(occurred_at_ms);
        const uint32_t bank_province = ProvinceIndex(r.FindBank(*tap.issuer_bank_id)->province);
        std::vector<uint32_t> all(r.provinces().size());
        for (uint32_t p = 0; p < all.size(); ++p) all[p] = p;
        tap.issuer_province = r.provinces()[PickOtherProvince(all, bank_province)].code;
        event = std::move(tap);
        break;
      }
      case InvalidKind::kInstitutionNotMedical: {
        if (!medical) return Invalid(InvalidKind::kBadEnum, occurred_at_ms);
        MedicalSettlementFields settlement = NewSettlement(occurred_at_ms);
        settlement.institution_id = r.merchants()[transit_merchants_[transit_picker_.Pick(rng_)]].merchant_id;
        event = std::move(settlement);
        break;
      }
      case InvalidKind::kNegativeAmount: {
        expected = Reason::kAmountInvalid;
        const int64_t variant = rng_.Between(0, 2);
        if (variant == 1 && !refundable_taps_.empty()) {
          TapRefundFields refund;
          refund.txn_id = NextId('R');
          refund.original_txn_id = refundable_taps_.Pick(rng_);
          refund.amount_fen = rng_.Chance(0.5) ? 0 : -rng_.Between(1, 500);
          refund.occurred_at_ms = occurred_at_ms;
          event = std::move(refund);
        } else if (variant == 2 && medical) {
          MedicalSettlementFields settlement = NewSettlement(occurred_at_ms);
          // Parts still add up to the total; one part is negative.
          settlement.cash_pay_fen = -rng_.Between(1, 1'000);
          settlement.total_fen = settlement.fund_pay_fen + settlement.account_pay_fen + settlement.cash_pay_fen;
          event = std::move(settlement);
        } else {
          TapFields tap = NewTap(occurred_at_ms);
          tap.amount_fen = -rng_.Between(1, 500);
          event = std::move(tap);
        }
        break;
      }
      case InvalidKind::kMedicalSumMismatch: {
        if (!medical) return Invalid(InvalidKind::kNegativeAmount, occurred_at_ms);
        MedicalSettlementFields settlement = NewSettlement(occurred_at_ms);
        if (rng_.Chance(0.2)) {
          // Parts whose sum overflows int64: the check must be done with overflow detection.
          settlement.fund_pay_fen = INT64_MAX - 10;
          settlement.account_pay_fen = 100;
          settlement.cash_pay_fen = 0;
          settlement.total_fen = INT64_MAX;
        } else {
          settlement.total_fen += rng_.Chance(0.5) ? rng_.Between(1, 100) : -rng_.Between(1, 100);
        }
        event = std::move(settlement);
        expected = Reason::kAmountInvalid;
        break;
      }
      case InvalidKind::kStale:
      case InvalidKind::kFutureTimestamp: {
        const bool stale = kind == InvalidKind::kStale;
        const int64_t t = stale ? options_.now_ms - model_settings_.dedup_horizon_ms - rng_.Between(1, 5 * kDayMs)
                                : options_.now_ms + model_settings_.clock_skew_ms_max + rng_.Between(1, 2 * kHourMs);
        event = medical && rng_.Chance(0.3) ? EventFields(NewSettlement(t)) : EventFields(NewTap(t));
        expected = stale ? Reason::kStale : Reason::kFutureTimestamp;
        time_checked = false;
        break;
      }
      case InvalidKind::kUnknownOriginal: {
        if (medical && rng_.Chance(0.4)) {
          MedicalCancellationFields cancellation;
          cancellation.txn_id = NextId('C');
          cancellation.original_txn_id = NextId('S');  // never produced
          cancellation.occurred_at_ms = occurred_at_ms;
          event = std::move(cancellation);
        } else {
          TapRefundFields refund;
          refund.txn_id = NextId('R');
          refund.original_txn_id = NextId('T');  // never produced
          refund.amount_fen = rng_.Between(100, 500);
          refund.occurred_at_ms = occurred_at_ms;
          event = std::move(refund);
        }
        expected = Reason::kUnknownOriginal;
        break;
      }
      case InvalidKind::kRefundExceedsOriginal: {
        if (refundable_taps_.empty()) return Invalid(InvalidKind::kUnknownOriginal, occurred_at_ms);
        TapRefundFields refund;
        refund.txn_id = NextId('R');
        refund.original_txn_id = refundable_taps_.Pick(rng_);
        const std::optional<int64_t> refundable_fen = model_.RefundableFen(*refund.original_txn_id);
        YRD_ASSERT(refundable_fen.has_value());
        refund.amount_fen = *refundable_fen + rng_.Between(1, 500);
        refund.occurred_at_ms = occurred_at_ms;
        event = std::move(refund);
        expected = Reason::kRefundExceedsOriginal;
        break;
      }
      case InvalidKind::kCancellationTwice: {
        if (cancelled_settlements_.empty()) return Invalid(InvalidKind::kUnknownOriginal, occurred_at_ms);
        MedicalCancellationFields cancellation;
        cancellation.txn_id = NextId('C');
        cancellation.original_txn_id = cancelled_settlements_.Pick(rng_);
        cancellation.occurred_at_ms = occurred_at_ms;
        event = std::move(cancellation);
        expected = Reason::kAlreadyCancelled;
        break;
      }
      case InvalidKind::kOversized: {
        TapFields tap = NewTap(occurred_at_ms);
        const int64_t terminal_id_bytes = rng_.Between(kOversizedFieldBytesMin, kOversizedFieldBytesMax);
        tap.terminal_id = std::string(static_cast<size_t>(terminal_id_bytes), 'A');
        event = std::move(tap);
        expected = Reason::kOversized;
        time_checked = false;
        break;
      }
    }
    ++stats_.invalid_count;
    ++stats_.invalid_kind_counts[static_cast<size_t>(kind)];
    Verdict verdict;
    if (absl::Status status = Emit(*event, &verdict, topic); !status.ok()) return status;
    // The generator meant this reason; the model must agree unless the date decided first.
    if (!time_checked || TimeAcceptable(occurred_at_ms)) {
      YRD_ASSERT(verdict.kind == VerdictKind::kException && verdict.reason == expected);
    }
    return absl::OkStatus();
  }

  const std::shared_ptr<const Registry> registry_;
  const DayOptions options_;
  Rng rng_;
  ReferenceModel model_;
  const ModelSettings model_settings_;
  MessageSink* sink_ = nullptr;
  flatbuffers::FlatBufferBuilder builder_{1024};
  DayStats stats_;
  Outcome outcome_;

  Ring<EventFields> recent_events_;
  Ring<std::string> refundable_taps_;
  Ring<std::string> settlements_;
  Ring<std::string> cancelled_settlements_;

  TimeProfile slot_profile_;
  TimeProfile full_day_profile_;
  std::vector<std::vector<uint32_t>> banks_of_province_;
  std::vector<std::vector<uint32_t>> funds_of_province_;
  std::vector<uint32_t> provinces_with_banks_;
  std::vector<uint32_t> provinces_with_funds_;
  std::vector<uint32_t> merchant_province_;  // by merchant index
  std::vector<uint32_t> transit_merchants_;
  std::vector<uint32_t> institutions_;
  ZipfPicker transit_picker_;
  ZipfPicker institution_picker_;
  uint64_t cards_per_bank_ = kCardsPerBankMin;
  std::string date_tag_;
  uint64_t id_counter_ = 0;
};

DayGenerator::DayGenerator(std::shared_ptr<const Registry> registry, const DayOptions& options)
    : impl_(std::make_unique<Impl>(std::move(registry), options)) {}
DayGenerator::~DayGenerator() = default;
absl::Status DayGenerator::Run(MessageSink& sink) { return impl_->Run(sink); }
nlohmann::json DayGenerator::OracleJson() const { return impl_->OracleJson(); }
Outcome DayGenerator::ExpectedOutcome() const { return impl_->outcome(); }
const DayStats& DayGenerator::stats() const { return impl_->stats(); }

}  // namespace yrd::gen
