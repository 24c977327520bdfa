// Tests of clearing-gen: the registry and day generators, the reference model behind the
// oracle, the JSON converter, and the command line (run as a child process).
#include <stdlib.h>
#include <sys/wait.h>

#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "engine/base/window.h"
#include "engine/clearing/outcome.h"
#include "engine/event/event_file.h"
#include "engine/registry/registry.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "schemas/events_generated.h"
#include "tools/clearing-gen/day_gen.h"
#include "tools/clearing-gen/json_convert.h"
#include "tools/clearing-gen/messages.h"
#include "tools/clearing-gen/reference_model.h"
#include "tools/clearing-gen/registry_gen.h"

namespace yrd::gen {
namespace {

namespace fbs = ::yrd::schema;

constexpr char kDate[] = "20261127";

WindowDay TestDay() { return *ParseWindowDate(kDate); }

std::string MakeTempDir() {
  std::string pattern = ::testing::TempDir() + "gen_test.XXXXXX";
  EXPECT_NE(mkdtemp(pattern.data()), nullptr);
  return pattern;
}

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
}

// Runs clearing-gen with `arguments` (already quoted where needed); returns its exit status.
int RunGenerator(const std::string& arguments) {
  const std::string command = std::string("'") + CLEARING_GEN_BINARY + "' " + arguments + " >/dev/null 2>&1";
  const int status = std::system(command.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::shared_ptr<const Registry> DefaultRegistry() {
  absl::StatusOr<std::shared_ptr<const Registry>> registry = GenerateRegistry(RegistryOptions{});
  EXPECT_TRUE(registry.ok()) << registry.status();
  return *registry;
}

struct CollectedMessage {
  std::string topic;
  std::string key;
  std::string payload;
};

class CollectingSink final : public MessageSink {
 public:
  absl::Status Accept(std::string_view topic, std::string_view key, std::string_view payload) override {
    messages.push_back({std::string(topic), std::string(key), std::string(payload)});
    return absl::OkStatus();
  }
  std::vector<CollectedMessage> messages;
};

class CountingSink final : public MessageSink {
 public:
  absl::Status Accept(std::string_view, std::string_view, std::string_view) override {
    ++count;
    return absl::OkStatus();
  }
  uint64_t count = 0;
};

DayOptions Options(uint64_t event_count, uint64_t seed) {
  DayOptions options;
  options.day = TestDay();
  options.now_ms = DefaultNowMs(options.day);
  options.event_count = event_count;
  options.seed = seed;
  return options;
}

OptionalString Text(const flatbuffers::String* text) {
  return text == nullptr ? OptionalString() : OptionalString(text->str());
}

// Decodes a payload as the engine would see it; nullopt when it holds no event.
std::optional<EventFields> Decode(const std::string& payload) {
  if (!PassesEnvelopeVerifier(payload)) return std::nullopt;
  const fbs::Envelope* envelope = fbs::GetEnvelope(payload.data());
  if (const fbs::Tap* tap = envelope->event_as_Tap()) {
    return TapFields{Text(tap->txn_id()), Text(tap->card_no()), static_cast<int8_t>(tap->carrier()),
                     Text(tap->issuer_province()), Text(tap->issuer_bank_id()), Text(tap->merchant_id()),
                     Text(tap->terminal_id()), tap->amount_fen(), tap->occurred_at_ms()};
  }
  if (const fbs::TapRefund* refund = envelope->event_as_TapRefund()) {
    return TapRefundFields{Text(refund->txn_id()), Text(refund->original_txn_id()), refund->amount_fen(),
                           refund->occurred_at_ms()};
  }
  if (const fbs::MedicalSettlement* settlement = envelope->event_as_MedicalSettlement()) {
    return MedicalSettlementFields{Text(settlement->txn_id()), Text(settlement->card_no()),
                                   Text(settlement->insured_fund_id()), Text(settlement->institution_id()),
                                   static_cast<int8_t>(settlement->visit_type()), settlement->total_fen(),
                                   settlement->fund_pay_fen(), settlement->account_pay_fen(),
                                   settlement->cash_pay_fen(), settlement->occurred_at_ms()};
  }
  if (const fbs::MedicalCancellation* cancellation = envelope->event_as_MedicalCancellation()) {
    return MedicalCancellationFields{Text(cancellation->txn_id()), Text(cancellation->original_txn_id()),
                                     cancellation->occurred_at_ms()};
  }
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------------
// Registry generation

TEST(RegistryGen, SameSeedGivesSameRegistryAndItParsesBack) {
  RegistryOptions options;
  options.seed = 42;
  absl::StatusOr<std::shared_ptr<const Registry>> first = GenerateRegistry(options);
  absl::StatusOr<std::shared_ptr<const Registry>> second = GenerateRegistry(options);
  ASSERT_TRUE(first.ok() && second.ok());
  const std::string toml = (*first)->ToToml();
  EXPECT_EQ(toml, (*second)->ToToml());
  options.seed = 43;
  EXPECT_NE(toml, (*GenerateRegistry(options))->ToToml());
  absl::StatusOr<std::shared_ptr<const Registry>> parsed = Registry::FromToml(toml, "generated.toml");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ((*parsed)->ToToml(), toml);
}

TEST(RegistryGen, CoversEveryCategoryWithMedicalMerchantsInTheirOwnProvince) {
  const std::shared_ptr<const Registry> registry = DefaultRegistry();
  ASSERT_EQ(registry->provinces().size(), 4u);
  EXPECT_EQ(registry->banks().size(), 12u);
  EXPECT_EQ(registry->funds().size(), 10u);
  EXPECT_EQ(registry->merchants().size(), 2000u);
  EXPECT_EQ(registry->fee_bank().province, "310000");
  std::map<Category, int> per_category;
  int medical_count = 0;
  for (const Merchant& merchant : registry->merchants()) {
    ++per_category[merchant.category];
    if (IsMedical(merchant.category)) {
      ++medical_count;
      EXPECT_EQ(registry->FindFund(merchant.fund_id)->province, merchant.province) << merchant.merchant_id;
    }
    EXPECT_EQ(registry->FindBank(merchant.bank_id)->province, merchant.province) << merchant.merchant_id;
  }
  EXPECT_EQ(per_category.size(), kCategoryCount);
  EXPECT_GT(per_category[Category::kBus] + per_category[Category::kMetro], 1000);
  EXPECT_GT(medical_count, 40);
  EXPECT_LT(medical_count, 200);
  for (const Fund& fund : registry->funds()) {
    EXPECT_EQ(fund.fund_id.size(), 6u);
    EXPECT_EQ(fund.fund_id.substr(0, 2), fund.province.substr(0, 2));
  }
  EXPECT_EQ(registry->fee_bps(Category::kScenic), 60);
  EXPECT_EQ(registry->fee_bps(Category::kPharmacy), 30);
  EXPECT_EQ(registry->fee_bps(Category::kMetro), 5);
  EXPECT_EQ(registry->fee_bps(Category::kBus), 0);
}

TEST(RegistryGen, CountsOutOfRangeAreRefused) {
  RegistryOptions options;
  options.bank_count = 0;
  EXPECT_FALSE(GenerateRegistry(options).ok());
  options = RegistryOptions{};
  options.fund_count = kFundCountMax + 1;
  EXPECT_FALSE(GenerateRegistry(options).ok());
  options.fund_count = kFundCountMax;
  EXPECT_TRUE(GenerateRegistry(options).ok());
}

// ---------------------------------------------------------------------------------------------
// Reference model: a hand-computed day

class ReferenceModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::array<int32_t, kCategoryCount> fee_bps{};
    fee_bps[static_cast<size_t>(Category::kScenic)] = 60;
    fee_bps[static_cast<size_t>(Category::kMetro)] = 5;
    absl::StatusOr<std::shared_ptr<const Registry>> registry = Registry::FromParts(
        {{"310000", "Shanghai"}, {"330000", "Zhejiang"}},
        {{"B1", "Bank One", "310000", true}, {"B2", "Bank Two", "330000", false}},
        {{"310100", "Shanghai fund", "310000"}, {"330100", "Hangzhou fund", "330000"}},
        {{"MS", "West Lake", "330000", Category::kScenic, "B2", ""},
         {"MM", "People's Square", "310000", Category::kMetro, "B1", ""},
         {"H1", "Ruijin Hospital", "310000", Category::kHospital, "B1", "310100"}},
        fee_bps);
    ASSERT_TRUE(registry.ok()) << registry.status();
    registry_ = *registry;
    now_ms_ = DefaultNowMs(TestDay());
    ModelSettings settings;
    settings.now_ms = now_ms_;
    model_ = std::make_unique<ReferenceModel>(registry_, settings);
  }

  TapFields Tap(std::string txn_id, std::string bank, std::string province, std::string merchant, int64_t amount_fen,
                int64_t occurred_at_ms) {
    return TapFields{txn_id, "6217000011112222333", 1, province, bank, merchant, "TERM-1", amount_fen, occurred_at_ms};
  }

  Verdict Judge(const EventFields& event, std::string_view topic = {}, size_t payload_bytes = 200) {
    return model_->Judge(topic.empty() ? TopicOf(event) : topic, payload_bytes, &event);
  }

  void ExpectException(const Verdict& verdict, Reason reason) {
    EXPECT_EQ(verdict.kind, VerdictKind::kException);
    EXPECT_EQ(ReasonName(verdict.reason), ReasonName(reason));
  }

  std::shared_ptr<const Registry> registry_;
  int64_t now_ms_ = 0;
  std::unique_ptr<ReferenceModel> model_;
};

TEST_F(ReferenceModelTest, HandComputedDayNetsPositionsFeesAndCounts) {
  const int64_t t = now_ms_ - 3'600'000;  // 22:59 on the day
  const int64_t yesterday = now_ms_ - kDayMs;

  EXPECT_EQ(Judge(Tap("T1", "B1", "310000", "MS", 12'750, t)).kind, VerdictKind::kApplied);
  EXPECT_EQ(Judge(Tap("T1", "B1", "310000", "MS", 12'750, t)).kind, VerdictKind::kExactDuplicate);
  ExpectException(Judge(Tap("T1", "B1", "310000", "MS", 100, t)), Reason::kDuplicateConflict);
  EXPECT_EQ(Judge(TapRefundFields{"R1", "T1", 2'750, t}).kind, VerdictKind::kApplied);
  ExpectException(Judge(TapRefundFields{"R2", "T1", 10'001, t}), Reason::kRefundExceedsOriginal);
  ExpectException(Judge(TapRefundFields{"R3", "T9", 100, t}), Reason::kUnknownOriginal);
  ExpectException(Judge(TapRefundFields{"R4", "R1", 100, t}), Reason::kUnknownOriginal);  // not a tap
  const Verdict late = Judge(Tap("T2", "B2", "330000", "MM", 1'000, yesterday));
  EXPECT_EQ(late.kind, VerdictKind::kApplied);
  EXPECT_TRUE(late.late);
  EXPECT_EQ(late.window, TestDay());

  EXPECT_EQ(Judge(MedicalSettlementFields{"S1", "6217000011112222333", "330100", "H1", 1, 10'000, 6'000, 1'000,
                                          3'000, t})
                .kind,
            VerdictKind::kApplied);
  EXPECT_EQ(Judge(MedicalCancellationFields{"C1", "S1", t}).kind, VerdictKind::kApplied);
  ExpectException(Judge(MedicalCancellationFields{"C2", "S1", t}), Reason::kAlreadyCancelled);
  EXPECT_EQ(
      Judge(MedicalSettlementFields{"S2", "6217000011112222333", "330100", "H1", 1, 5'000, 2'000, 0, 3'000, t}).kind,
      VerdictKind::kApplied);
  // The medical family has its own id space: "T1" is new there.
  EXPECT_EQ(
      Judge(MedicalSettlementFields{"T1", "6217000011112222333", "310100", "H1", 3, 0, 0, 0, 0, t}).kind,
      VerdictKind::kApplied);

  ExpectException(Judge(Tap("T3", "B1", "310000", "MS", -1, t)), Reason::kAmountInvalid);
  ExpectException(Judge(Tap("T4", "B1", "330000", "MS", 100, t)), Reason::kInvalidField);  // not B1's province
  ExpectException(Judge(Tap("T5", "B1", "310000", "NOPE", 100, t)), Reason::kUnknownParticipant);
  ExpectException(Judge(Tap("T6", "B1", "310000", "MS", 100, now_ms_ - 40 * kDayMs - 1)), Reason::kStale);
  EXPECT_EQ(Judge(Tap("T7", "B1", "310000", "MS", 0, now_ms_ - 40 * kDayMs)).kind, VerdictKind::kApplied);
  ExpectException(Judge(Tap("T8", "B1", "310000", "MS", 100, now_ms_ + 300'001)), Reason::kFutureTimestamp);
  ExpectException(Judge(Tap("T9", "B1", "310000", "MS", 100, t), kMedicalTopic), Reason::kInvalidField);
  ExpectException(Judge(Tap("T10", "B1", "310000", "MS", 100, t), kTapsTopic, 65'537), Reason::kOversized);
  EXPECT_EQ(Judge(Tap("T11", "B1", "310000", "MS", 0, t), kTapsTopic, 65'536).kind, VerdictKind::kApplied);
  ExpectException(model_->Judge(kTapsTopic, 10, nullptr), Reason::kMalformed);
  ExpectException(Judge(MedicalSettlementFields{"S3", "6217000011112222333", "330100", "MM", 1, 10, 10, 0, 0, t}),
                  Reason::kInvalidField);  // a metro station is no institution
  ExpectException(Judge(MedicalSettlementFields{"S4", "6217000011112222333", "330100", "H1", 1, 10, 5, 5, 1, t}),
                  Reason::kAmountInvalid);
  TapFields bad_id = Tap("T 12", "B1", "310000", "MS", 100, t);
  ExpectException(Judge(bad_id), Reason::kInvalidField);

  const Outcome outcome = model_->Finish();
  ASSERT_EQ(outcome.windows.size(), 1u);
  const WindowOutcome& w = outcome.windows.at(TestDay());
  EXPECT_EQ(w.applied_count, 9);  // T1 R1 T2 S1 C1 S2, T1 of the medical family, T7 and T11
  EXPECT_EQ(w.late_count, 2);     // T2 and T7, both dated in closed windows
  EXPECT_EQ(w.exact_duplicate_count, 1);
  auto count = [&](Reason reason) { return w.exception_counts[static_cast<size_t>(reason)]; };
  EXPECT_EQ(count(Reason::kDuplicateConflict), 1);
  EXPECT_EQ(count(Reason::kRefundExceedsOriginal), 1);
  EXPECT_EQ(count(Reason::kUnknownOriginal), 2);
  EXPECT_EQ(count(Reason::kAlreadyCancelled), 1);
  EXPECT_EQ(count(Reason::kAmountInvalid), 2);
  EXPECT_EQ(count(Reason::kInvalidField), 4);
  EXPECT_EQ(count(Reason::kUnknownParticipant), 1);
  EXPECT_EQ(count(Reason::kStale), 1);
  EXPECT_EQ(count(Reason::kFutureTimestamp), 1);
  EXPECT_EQ(count(Reason::kOversized), 1);
  EXPECT_EQ(count(Reason::kMalformed), 1);

  // Taps: T1 12750 SH card at ZJ scenic, refund 2750; T2 1000 ZJ card at SH metro.
  EXPECT_EQ(w.bank_scheme_province, (PositionMap{{"310000", -9'000}, {"330000", 9'000}}));
  // Fees on the window's net: scenic 10000 * 60 bp = 60; metro 1000 * 5 bp = 0.5, rounded up to 1.
  EXPECT_EQ(w.bank_scheme_merchant, (PositionMap{{"MS", 9'940}, {"MM", 999}}));
  // B1: -12750 + 2750 (refund) + 999 (MM settles at B1) + 61 (fees); B2: -1000 + 9940.
  EXPECT_EQ(w.bank_scheme_bank, (PositionMap{{"B1", -8'940}, {"B2", 8'940}}));
  // S1 (7000 cleared) was cancelled; S2 clears 2000 from the Hangzhou fund to H1.
  EXPECT_EQ(w.fund_scheme_fund, (PositionMap{{"330100", -2'000}}));
  EXPECT_EQ(w.fund_scheme_institution, (PositionMap{{"H1", 2'000}}));
  EXPECT_EQ(w.fund_scheme_province, (PositionMap{{"310000", 2'000}, {"330000", -2'000}}));
}

TEST_F(ReferenceModelTest, RejectedMessageDoesNotRegisterItsId) {
  const int64_t t = now_ms_ - 60'000;
  ExpectException(Judge(Tap("T1", "B1", "310000", "NOPE", 100, t)), Reason::kUnknownParticipant);
  EXPECT_EQ(Judge(Tap("T1", "B1", "310000", "MS", 100, t)).kind, VerdictKind::kApplied);
  ExpectException(Judge(TapRefundFields{"R1", "T1", 101, t}), Reason::kRefundExceedsOriginal);
  EXPECT_EQ(Judge(TapRefundFields{"R1", "T1", 100, t}).kind, VerdictKind::kApplied);
  EXPECT_EQ(model_->RefundableFen("T1"), 0);
}

TEST_F(ReferenceModelTest, RefundInALaterWindowCanMakeThatWindowsNetNegative) {
  // The clock at 00:05 the next day: the day's window is in its grace period, still open, and
  // the refund dated after midnight belongs to the next window.
  ModelSettings settings;
  settings.now_ms = DefaultNowMs(TestDay()) + 6 * 60'000;
  ReferenceModel model(registry_, settings);
  const int64_t on_day = DefaultNowMs(TestDay()) - 3'600'000;
  const int64_t next_day = settings.now_ms - 1;
  const EventFields tap = Tap("T1", "B1", "310000", "MS", 12'750, on_day);
  const EventFields refund = TapRefundFields{"R1", "T1", 2'750, next_day};
  EXPECT_EQ(model.Judge(kTapsTopic, 200, &tap).window, TestDay());
  EXPECT_EQ(model.Judge(kTapsTopic, 200, &refund).window, TestDay() + 1);
  const Outcome outcome = model.Finish();
  ASSERT_EQ(outcome.windows.size(), 2u);
  // Next window: MS's net is -2750; its fee mirrors the positive one: -16.5 -> -17.
  const WindowOutcome& next = outcome.windows.at(TestDay() + 1);
  EXPECT_EQ(next.bank_scheme_merchant, (PositionMap{{"MS", -2'733}}));
  EXPECT_EQ(next.bank_scheme_bank, (PositionMap{{"B1", 2'750 - 17}, {"B2", -2'733}}));
  EXPECT_EQ(outcome.windows.at(TestDay()).bank_scheme_merchant, (PositionMap{{"MS", 12'750 - 77}}));
}

// ---------------------------------------------------------------------------------------------
// Day generation

TEST(DayGenerator, SharesAreRoughlyRespected) {
  constexpr uint64_t kEvents = 200'000;
  DayGenerator generator(DefaultRegistry(), Options(kEvents, 5));
  CountingSink sink;
  ASSERT_TRUE(generator.Run(sink).ok());
  EXPECT_EQ(sink.count, kEvents);
  const DayStats& stats = generator.stats();
  EXPECT_EQ(stats.message_count, kEvents);
  const Outcome outcome = generator.ExpectedOutcome();
  ASSERT_EQ(outcome.windows.size(), 1u);
  const WindowOutcome& w = outcome.windows.begin()->second;
  auto near = [](double actual, double expected, double tolerance) {
    return actual >= expected * (1 - tolerance) && actual <= expected * (1 + tolerance);
  };
  const double n = static_cast<double>(kEvents);
  auto exceptions = [&](Reason reason) { return static_cast<double>(w.exception_counts[static_cast<size_t>(reason)]); };
  EXPECT_PRED3(near, static_cast<double>(w.exact_duplicate_count), 0.05 * n, 0.1);
  EXPECT_PRED3(near, exceptions(Reason::kDuplicateConflict), 0.001 * n, 0.35);
  EXPECT_PRED3(near, exceptions(Reason::kMalformed), 0.001 * n, 0.35);
  EXPECT_PRED3(near, static_cast<double>(w.late_count), 0.002 * n, 0.3);
  EXPECT_PRED3(near, static_cast<double>(stats.refund_count), 0.01 * n, 0.15);
  EXPECT_PRED3(near, static_cast<double>(stats.invalid_count), 0.0005 * n, 0.4);
  EXPECT_PRED3(near, static_cast<double>(stats.medical_settlement_count), 0.03 * n, 0.1);
  EXPECT_PRED3(near, static_cast<double>(stats.cancellation_count),
               0.05 * static_cast<double>(stats.medical_settlement_count), 0.3);
  EXPECT_PRED3(near, static_cast<double>(stats.cross_province_count),
               0.25 * static_cast<double>(stats.tap_count + stats.medical_settlement_count), 0.1);
  // Everything not rejected or duplicated is applied.
  int64_t exception_total = 0;
  for (const int64_t count : w.exception_counts) exception_total += count;
  EXPECT_EQ(w.applied_count + w.exact_duplicate_count + exception_total, static_cast<int64_t>(kEvents));
}

TEST(DayGenerator, KeysFollowTheSpecAndOriginalsComeFirst) {
  DayOptions options = Options(60'000, 9);
  options.refund_share = 0.05;
  options.medical_share = 0.1;
  options.cancellation_share = 0.3;
  options.invalid_share = 0.01;
  DayGenerator generator(DefaultRegistry(), options);
  CollectingSink sink;
  ASSERT_TRUE(generator.Run(sink).ok());

  std::set<std::string> all_taps;
  std::set<std::string> all_settlements;
  std::vector<std::optional<EventFields>> decoded;
  for (const CollectedMessage& message : sink.messages) {
    decoded.push_back(Decode(message.payload));
    if (!decoded.back()) continue;
    if (const auto* tap = std::get_if<TapFields>(&*decoded.back()); tap && tap->txn_id) all_taps.insert(*tap->txn_id);
    if (const auto* settlement = std::get_if<MedicalSettlementFields>(&*decoded.back());
        settlement && settlement->txn_id) {
      all_settlements.insert(*settlement->txn_id);
    }
  }
  std::set<std::string> seen_taps;
  std::set<std::string> seen_settlements;
  size_t refunds = 0;
  size_t cancellations = 0;
  for (size_t i = 0; i < sink.messages.size(); ++i) {
    const CollectedMessage& message = sink.messages[i];
    ASSERT_TRUE(message.topic == kTapsTopic || message.topic == kMedicalTopic);
    if (!decoded[i]) continue;
    const EventFields& event = *decoded[i];
    EXPECT_EQ(message.key, KeyOf(event)) << "message " << i;
    if (const auto* tap = std::get_if<TapFields>(&event); tap && tap->txn_id) seen_taps.insert(*tap->txn_id);
    if (const auto* settlement = std::get_if<MedicalSettlementFields>(&event); settlement && settlement->txn_id) {
      seen_settlements.insert(*settlement->txn_id);
    }
    if (const auto* refund = std::get_if<TapRefundFields>(&event); refund && refund->original_txn_id) {
      ++refunds;
      if (all_taps.contains(*refund->original_txn_id)) {
        EXPECT_TRUE(seen_taps.contains(*refund->original_txn_id)) << "refund before its tap at message " << i;
      }
    }
    if (const auto* cancellation = std::get_if<MedicalCancellationFields>(&event);
        cancellation && cancellation->original_txn_id) {
      ++cancellations;
      if (all_settlements.contains(*cancellation->original_txn_id)) {
        EXPECT_TRUE(seen_settlements.contains(*cancellation->original_txn_id))
            << "cancellation before its settlement at message " << i;
      }
    }
  }
  EXPECT_GT(refunds, 2000u);
  EXPECT_GT(cancellations, 1000u);
}

TEST(DayGenerator, OracleEqualsTheModelRunOnTheDecodedBytes) {
  // Judging what was actually encoded gives the same outcome as judging what was meant: the
  // bytes carry exactly the fields the oracle was computed from.
  DayOptions options = Options(40'000, 21);
  options.invalid_share = 0.02;
  options.malformed_share = 0.01;
  options.late_share = 0.01;
  const std::shared_ptr<const Registry> registry = DefaultRegistry();
  DayGenerator generator(registry, options);
  CollectingSink sink;
  ASSERT_TRUE(generator.Run(sink).ok());
  ModelSettings settings;
  settings.now_ms = options.now_ms;
  ReferenceModel model(registry, settings);
  for (const CollectedMessage& message : sink.messages) {
    const std::optional<EventFields> event = Decode(message.payload);
    (void)model.Judge(message.topic, message.payload.size(), event ? &*event : nullptr);
  }
  const std::vector<std::string> differences = DiffOutcomes(generator.ExpectedOutcome(), model.Finish());
  EXPECT_TRUE(differences.empty()) << differences.front();
}

TEST(DayGenerator, RegistryWithoutInstitutionsNeedsMedicalShareZero) {
  RegistryOptions registry_options;
  registry_options.fund_count = 0;
  registry_options.merchant_count = 50;
  absl::StatusOr<std::shared_ptr<const Registry>> registry = GenerateRegistry(registry_options);
  ASSERT_TRUE(registry.ok());
  CountingSink sink;
  DayGenerator refused(*registry, Options(1'000, 1));
  EXPECT_EQ(refused.Run(sink).code(), absl::StatusCode::kFailedPrecondition);
  DayOptions options = Options(1'000, 1);
  options.medical_share = 0;
  DayGenerator generator(*registry, options);
  EXPECT_TRUE(generator.Run(sink).ok());
  EXPECT_EQ(sink.count, 1'000u);
}

TEST(DayGenerator, SharesAddingUpToMoreThanOneAreRefused) {
  DayOptions options = Options(10, 1);
  options.duplicate_share = 0.9;
  options.medical_share = 0.2;
  EXPECT_FALSE(ValidateDayOptions(options).ok());
  options.duplicate_share = -0.1;
  EXPECT_FALSE(ValidateDayOptions(options).ok());
  EXPECT_TRUE(ValidateDayOptions(Options(10, 1)).ok());
}

// ---------------------------------------------------------------------------------------------
// JSON conversion

constexpr char kTapLine[] =
    R"({"event_type":"Tap","event":{"txn_id":"T1","card_no":"6217000011112222333","carrier":"qr",)"
    R"("issuer_province":"310000","issuer_bank_id":"B31001","merchant_id":"M310000001",)"
    R"("terminal_id":"M310000001-001","amount_fen":300,"occurred_at_ms":1795708835095}})";

TEST(JsonConverter, ValidTapBecomesAnEnvelopeOnTheTapsTopicKeyedByTxnId) {
  absl::StatusOr<JsonConverter> converter = JsonConverter::Create();
  ASSERT_TRUE(converter.ok()) << converter.status();
  absl::StatusOr<ConvertedMessage> message = converter->Convert(kTapLine);
  ASSERT_TRUE(message.ok()) << message.status();
  EXPECT_EQ(message->topic, kTapsTopic);
  EXPECT_EQ(message->key, "T1");
  ASSERT_TRUE(PassesEnvelopeVerifier(message->payload));
  EXPECT_TRUE(fbs::EnvelopeBufferHasIdentifier(message->payload.data()));
  const std::optional<EventFields> event = Decode(message->payload);
  ASSERT_TRUE(event.has_value());
  const TapFields& tap = std::get<TapFields>(*event);
  EXPECT_EQ(tap.carrier, static_cast<int8_t>(fbs::Carrier::qr));
  EXPECT_EQ(tap.amount_fen, 300);
  EXPECT_EQ(tap.occurred_at_ms, 1795708835095);
  EXPECT_EQ(*tap.terminal_id, "M310000001-001");
}

TEST(JsonConverter, RefundAndCancellationAreKeyedByTheirOriginal) {
  absl::StatusOr<JsonConverter> converter = JsonConverter::Create();
  ASSERT_TRUE(converter.ok());
  absl::StatusOr<ConvertedMessage> refund = converter->Convert(
      R"({"event_type":"TapRefund","event":{"txn_id":"R1","original_txn_id":"T1","amount_fen":100}})");
  ASSERT_TRUE(refund.ok()) << refund.status();
  EXPECT_EQ(refund->topic, kTapsTopic);
  EXPECT_EQ(refund->key, "T1");
  absl::StatusOr<ConvertedMessage> cancellation = converter->Convert(
      R"({"event_type":"MedicalCancellation","event":{"txn_id":"C1","original_txn_id":"S1"}})");
  ASSERT_TRUE(cancellation.ok()) << cancellation.status();
  EXPECT_EQ(cancellation->topic, kMedicalTopic);
  EXPECT_EQ(cancellation->key, "S1");
}

TEST(JsonConverter, BadLineIsRejectedWithTheParsersMessageAndTheNextLineStillConverts) {
  absl::StatusOr<JsonConverter> converter = JsonConverter::Create();
  ASSERT_TRUE(converter.ok());
  absl::StatusOr<ConvertedMessage> bad_enum =
      converter->Convert(R"({"event_type":"Tap","event":{"txn_id":"T2","carrier":"bogus"}})");
  ASSERT_FALSE(bad_enum.ok());
  EXPECT_EQ(bad_enum.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(bad_enum.status().message()).find("bogus"), std::string::npos) << bad_enum.status();

  absl::StatusOr<ConvertedMessage> unknown_field =
      converter->Convert(R"({"event_type":"Tap","event":{"txn_id":"T2","amount_yuan":3}})");
  ASSERT_FALSE(unknown_field.ok());
  EXPECT_NE(std::string(unknown_field.status().message()).find("amount_yuan"), std::string::npos)
      << unknown_field.status();

  EXPECT_FALSE(converter->Convert(R"({"event_type":"Tap","event":{)").ok());
  EXPECT_FALSE(converter->Convert("{}").ok());  // no event to pick a topic from

  absl::StatusOr<ConvertedMessage> good = converter->Convert(kTapLine);
  ASSERT_TRUE(good.ok()) << good.status();
  EXPECT_EQ(good->key, "T1");
}

// ---------------------------------------------------------------------------------------------
// The command line

class GenCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    ASSERT_EQ(RunGenerator("registry --out '" + dir_ + "/reg.toml' --merchants 500 --seed 3"), 0);
  }

  int Day(const std::string& name, uint64_t seed, uint64_t events = 20'000) {
    return RunGenerator("day --registry '" + dir_ + "/reg.toml' --date " + kDate + " --events " +
                        std::to_string(events) + " --seed " + std::to_string(seed) + " --out '" + dir_ + "/" +
                        name + ".bin' --oracle '" + dir_ + "/" + name + ".json'");
  }

  std::string dir_;
};

TEST_F(GenCliTest, SameSeedGivesIdenticalBytesAndAnotherSeedDoesNot) {
  ASSERT_EQ(Day("first", 7), 0);
  ASSERT_EQ(Day("second", 7), 0);
  ASSERT_EQ(Day("other", 8), 0);
  const std::string events = ReadBytes(dir_ + "/first.bin");
  EXPECT_GT(events.size(), 20'000u * 100);
  EXPECT_TRUE(events == ReadBytes(dir_ + "/second.bin"));
  EXPECT_EQ(ReadBytes(dir_ + "/first.json"), ReadBytes(dir_ + "/second.json"));
  EXPECT_FALSE(events == ReadBytes(dir_ + "/other.bin"));

  absl::StatusOr<EventFileReader> reader = EventFileReader::Open(dir_ + "/first.bin");
  ASSERT_TRUE(reader.ok());
  absl::StatusOr<std::vector<EventRecord>> records = reader->ReadAll();
  ASSERT_TRUE(records.ok()) << records.status();
  EXPECT_EQ(records->size(), 20'000u);
}

TEST_F(GenCliTest, OracleHoldsTheZeroSumInvariantsAndCountsEveryMessage) {
  ASSERT_EQ(Day("day", 11, 30'000), 0);
  const nlohmann::json oracle = nlohmann::json::parse(ReadBytes(dir_ + "/day.json"));
  EXPECT_EQ(oracle.at("clock_fixed_ms").get<int64_t>(), DefaultNowMs(TestDay()));
  EXPECT_EQ(oracle.at("clock_fixed_ms").get<int64_t>(), 1795795140000);  // 2026-11-27 23:59 +08:00
  EXPECT_EQ(oracle.at("messages").get<int64_t>(), 30'000);
  EXPECT_EQ(oracle.at("engine_settings").at("message_bytes_max").get<int64_t>(), 65'536);
  absl::StatusOr<Outcome> outcome = OutcomeFromJson(oracle);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  ASSERT_EQ(outcome->windows.size(), 1u);
  ASSERT_TRUE(outcome->windows.contains(TestDay()));
  auto sum = [](const PositionMap& map) {
    int64_t total_fen = 0;
    for (const auto& [id, fen] : map) total_fen += fen;
    return total_fen;
  };
  const WindowOutcome& w = outcome->windows.at(TestDay());
  EXPECT_EQ(sum(w.bank_scheme_province), 0);
  EXPECT_EQ(sum(w.bank_scheme_bank), 0);
  EXPECT_EQ(sum(w.fund_scheme_province), 0);
  EXPECT_EQ(sum(w.fund_scheme_fund) + sum(w.fund_scheme_institution), 0);
  EXPECT_FALSE(w.bank_scheme_merchant.empty());
  EXPECT_FALSE(w.fund_scheme_institution.empty());
  int64_t counted = w.applied_count + w.exact_duplicate_count;
  for (const int64_t count : w.exception_counts) counted += count;
  EXPECT_EQ(counted, 30'000);
  EXPECT_GT(w.late_count, 0);
}

TEST_F(GenCliTest, JsonCommandProducesGoodLinesAndExitsOneForABadLine) {
  WriteBytes(dir_ + "/in.jsonl", std::string(kTapLine) + "\n\n" +
                                     R"({"event_type":"Tap","event":{"carrier":"bogus"}})" + "\n" +
                                     R"({"event_type":"TapRefund","event":{"txn_id":"R1","original_txn_id":"T1",)" +
                                     R"("amount_fen":100}})" + "\n");
  EXPECT_EQ(RunGenerator("json --out '" + dir_ + "/json.bin' < '" + dir_ + "/in.jsonl'"), 1);
  absl::StatusOr<EventFileReader> reader = EventFileReader::Open(dir_ + "/json.bin");
  ASSERT_TRUE(reader.ok()) << reader.status();
  absl::StatusOr<std::vector<EventRecord>> records = reader->ReadAll();
  ASSERT_TRUE(records.ok());
  ASSERT_EQ(records->size(), 2u);
  EXPECT_EQ((*records)[0].key, "T1");
  EXPECT_EQ((*records)[1].topic, kTapsTopic);
  EXPECT_EQ((*records)[1].key, "T1");

  WriteBytes(dir_ + "/good.jsonl", std::string(kTapLine) + "\n");
  EXPECT_EQ(RunGenerator("json --out '" + dir_ + "/good.bin' < '" + dir_ + "/good.jsonl'"), 0);
}

TEST_F(GenCliTest, DayNeedsAnOutput) {
  EXPECT_EQ(RunGenerator("day --registry '" + dir_ + "/reg.toml' --date " + kDate + " --events 10"), 2);
  EXPECT_EQ(RunGenerator("day --registry '" + dir_ + "/reg.toml' --date 20261131 --events 10 --out '" + dir_ +
                         "/x.bin'"),
            2);
}

}  // namespace
}  // namespace yrd::gen
