// Decode: every reason a message can be rejected for, and the fixed order of the checks (a
// message that breaks two rules gets the reason of the earlier check). Also the card privacy
// rules: a token and a masked form, never the number itself.
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>

#include "adapters/crypto/hmac.h"
#include "engine/base/strings.h"
#include "engine/event/event.h"
#include "gtest/gtest.h"
#include "tests/support/events.h"

namespace yrd {
namespace {

using test::CancellationFields;
using test::RefundFields;
using test::SettlementFields;
using test::TapFields;

constexpr int64_t kMax = std::numeric_limits<int64_t>::max();

class DecodeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto hmac = HmacSha256::Create("decode-test-key-not-a-secret");
    ASSERT_TRUE(hmac.ok());
    tokenizer_ = *std::move(hmac);
    context_.registry = registry_.get();
    context_.tokenizer = tokenizer_.get();
    context_.now_ms = now_ms_;
  }

  // The payload is kept in the fixture: the decoded event's views point into it, as they point
  // into the batch arena in the pipeline.
  std::optional<Reason> DecodeTaps(std::string payload) {
    payload_ = std::move(payload);
    return Decode(SourceTopic::kTaps, payload_, context_, event_);
  }
  std::optional<Reason> DecodeMedical(std::string payload) {
    payload_ = std::move(payload);
    return Decode(SourceTopic::kMedical, payload_, context_, event_);
  }
  TapFields Tap() const {
    TapFields tap;
    tap.occurred_at_ms = now_ms_ - 60'000;
    return tap;
  }
  SettlementFields Settlement() const {
    SettlementFields settlement;
    settlement.occurred_at_ms = now_ms_ - 60'000;
    return settlement;
  }

  const int64_t now_ms_ = test::ChinaTimeMs(2026, 11, 27, 10, 0);
  std::shared_ptr<const Registry> registry_ = test::TestRegistry();
  std::unique_ptr<HmacSha256> tokenizer_;
  DecodeContext context_;
  std::string payload_;
  DecodedEvent event_;
};

// ---- accepted events ---------------------------------------------------------------------------

TEST_F(DecodeTest, ValidTapResolvesItsParticipants) {
  TapFields tap = Tap();
  ASSERT_EQ(DecodeTaps(test::TapBytes(tap)), std::nullopt);
  EXPECT_EQ(event_.kind, EventKind::kTap);
  EXPECT_EQ(event_.txn_id, "TAP1");
  EXPECT_EQ(event_.terminal_id, "GATE_07");
  EXPECT_EQ(event_.amount_fen, 300);
  EXPECT_EQ(event_.occurred_at_ms, tap.occurred_at_ms);
  ASSERT_NE(event_.issuer_bank, nullptr);
  EXPECT_EQ(event_.issuer_bank->bank_id, test::kBankHangzhou);
  ASSERT_NE(event_.merchant, nullptr);
  EXPECT_EQ(event_.merchant->merchant_id, test::kMetroShanghai);
  ASSERT_NE(event_.merchant_bank, nullptr);
  EXPECT_EQ(event_.merchant_bank->bank_id, test::kBankShanghai);
}

TEST_F(DecodeTest, FreeEntryOfAmountZeroIsAccepted) {
  TapFields tap = Tap();
  tap.merchant_id = test::kMuseumNanjing;
  tap.amount_fen = 0;
  EXPECT_EQ(DecodeTaps(test::TapBytes(tap)), std::nullopt);
  EXPECT_EQ(event_.amount_fen, 0);
}

TEST_F(DecodeTest, ValidSettlementResolvesInsuredAndInstitutionFunds) {
  ASSERT_EQ(DecodeMedical(test::SettlementBytes(Settlement())), std::nullopt);
  EXPECT_EQ(event_.kind, EventKind::kMedicalSettlement);
  EXPECT_EQ(event_.amount_fen, 10'000);
  EXPECT_EQ(event_.fund_pay_fen, 6'000);
  EXPECT_EQ(event_.account_pay_fen, 1'000);
  EXPECT_EQ(event_.cash_pay_fen, 3'000);
  ASSERT_NE(event_.insured_fund, nullptr);
  EXPECT_EQ(event_.insured_fund->fund_id, test::kFundShanghai);
  ASSERT_NE(event_.institution_fund, nullptr);
  EXPECT_EQ(event_.institution_fund->fund_id, test::kFundHangzhou);
}

TEST_F(DecodeTest, RefundAndCancellationAreAcceptedOnTheirTopics) {
  RefundFields refund;
  refund.occurred_at_ms = now_ms_;
  ASSERT_EQ(DecodeTaps(test::RefundBytes(refund)), std::nullopt);
  EXPECT_EQ(event_.kind, EventKind::kTapRefund);
  EXPECT_EQ(event_.original_txn_id, "TAP1");
  CancellationFields cancellation;
  cancellation.occurred_at_ms = now_ms_;
  ASSERT_EQ(DecodeMedical(test::CancellationBytes(cancellation)), std::nullopt);
  EXPECT_EQ(event_.kind, EventKind::kMedicalCancellation);
  EXPECT_EQ(event_.original_txn_id, "SETTLE1");
}

TEST_F(DecodeTest, IdsOfSixtyFourCharactersAreAccepted) {
  TapFields tap = Tap();
  tap.txn_id = std::string(64, 'T');
  tap.terminal_id = std::string(64, 'G');
  EXPECT_EQ(DecodeTaps(test::TapBytes(tap)), std::nullopt);
}

// ---- malformed and oversized -------------------------------------------------------------------

TEST_F(DecodeTest, RandomBytesAreMalformed) {
  std::mt19937_64 random(20261127);
  for (const size_t size : {8u, 9u, 64u, 300u}) {
    std::string bytes(size, '\0');
    for (char& c : bytes) c = static_cast<char>(random());
    EXPECT_EQ(DecodeTaps(bytes), Reason::kMalformed) << size;
  }
}

TEST_F(DecodeTest, EmptyAndShorterThanAHeaderAreMalformed) {
  EXPECT_EQ(DecodeTaps(""), Reason::kMalformed);
  EXPECT_EQ(DecodeTaps(std::string("\x08\0\0\0YRD", 7)), Reason::kMalformed);
}

TEST_F(DecodeTest, WrongFileIdentifierIsMalformed) {
  EXPECT_EQ(DecodeTaps(test::TapBytes(Tap(), "YRD2")), Reason::kMalformed);
  EXPECT_EQ(DecodeTaps(test::TapBytes(Tap(), nullptr)), Reason::kMalformed);
}

TEST_F(DecodeTest, TruncatedMessageIsMalformed) {
  const std::string bytes = test::TapBytes(Tap());
  EXPECT_EQ(DecodeTaps(bytes.substr(0, bytes.size() - 8)), Reason::kMalformed);
}

TEST_F(DecodeTest, EnvelopeWithoutEventIsMalformed) {
  EXPECT_EQ(DecodeTaps(test::EmptyEnvelopeBytes()), Reason::kMalformed);
}

TEST_F(DecodeTest, MessageOneByteOverTheLimitIsOversized) {
  const std::string bytes = test::TapBytes(Tap());
  context_.limits.message_bytes_max = bytes.size();
  EXPECT_EQ(DecodeTaps(bytes), std::nullopt);
  context_.limits.message_bytes_max = bytes.size() - 1;
  EXPECT_EQ(DecodeTaps(bytes), Reason::kOversized);
}

TEST_F(DecodeTest, OversizedIsDecidedBeforeMalformed) {
  context_.limits.message_bytes_max = 16;
  EXPECT_EQ(DecodeTaps(std::string(17, '\x5a')), Reason::kOversized);
}

// ---- invalid fields ----------------------------------------------------------------------------

TEST_F(DecodeTest, IdWithCharacterOutsideTheRuleIsInvalid) {
  TapFields tap = Tap();
  tap.txn_id = "TAP 1";
  EXPECT_EQ(DecodeTaps(test::TapBytes(tap)), Reason::kInvalidField);
  tap = Tap();
  tap.terminal_id = "GATE|07";
  EXPECT_EQ(DecodeTaps(test::TapBytes(tap)), Reason::kInvalidField);
  tap = Tap();
  tap.card_no = "6217-0012 3456";
  EXPECT_EQ(DecodeTaps(test::TapBytes(tap)), Reason::kInvalidField);
}

TEST_F(DecodeTest, IdOfSixtyFiveCharactersIsInvalid) {
  TapFields tap = Tap();
  tap.txn_id = std::string(65, 'T');
  EXPECT_EQ(DecodeTaps(test::TapBytes(tap)), Reason::kInvalidField);
}

TEST_F(DecodeTest, MissingIdIsInvalid) {
  TapFields tap = Tap();
  tap.merchant_id.clear();
  EXPECT_EQ(DecodeTaps(test::TapBytes(tap)), Reason::kInvalidField);
  RefundFields refund;
  refund.occurred_at_ms = now_ms_;
  refund.original_txn_id.clear();
  EXPECT_EQ(DecodeTaps(test::RefundBytes(refund)), Reason::kInvalidField);
}

TEST_F(DecodeTest, UnspecifiedCarrierIsInvalid) {
  TapFields tap = Tap();
  tap.carrier = 0;
  EXPECT_EQ(DecodeTaps(test::TapBytes(tap)), Reason::kInvalidField);
}

TEST_F(DecodeTest, CarrierBeyondTheSchemaIsInvalid) {
  TapFields tap = Tap();
  tap.carrier = 3;  // qr, the last one
  EXPECT_EQ(DecodeTaps(test::TapBytes(tap)), std::nullopt);
  tap.carrier = 4;
  EXPECT_EQ(DecodeTaps(test::TapBytes(tap)), Reason::kInvalidField);
}

TEST_F(DecodeTest, UnspecifiedVisitTypeIsInvalid) {
  SettlementFields settlement = Settlement();
  settlement.visit_type = 0;
  EXPECT_EQ(DecodeMedical(test::SettlementBytes(settlement)), Reason::kInvalidField);
  settlement.visit_type = 4;
  EXPECT_EQ(DecodeMedical(test::SettlementBytes(settlement)), Reason::kInvalidField);
}

TEST_F(DecodeTest, TapOnTheMedicalTopicIsInvalid) {
  EXPECT_EQ(DecodeMedical(test::TapBytes(Tap())), Reason::kInvalidField);
  RefundFields refund;
  refund.occurred_at_ms = now_ms_;
  EXPECT_EQ(DecodeMedical(test::RefundBytes(refund)), Reason::kInvalidField);
}

TEST_F(DecodeTest, SettlementOnTheTapsTopicIsInvalid) {
  EXPECT_EQ(DecodeTaps(test::SettlementBytes(Settlement())), Reason::kInvalidField);
  CancellationFields cancellation;
  cancellation.occurred_at_ms = now_ms_;
  EXPECT_EQ(DecodeTaps(test::CancellationBytes(cancellation)), Reason::kInvalidField);
}

TEST_F(DecodeTest, SettlementAtANonMedicalMerchantIsInvalid) {
  SettlementFields settlement = Settlement();
  settlement.institution_id = test::kMetroShanghai;
  EXPECT_EQ(DecodeMedical(test::SettlementBytes(settlement)), Reason::kInvalidField);
}

TEST_F(DecodeTest, IssuerProvinceOtherThanTheBanksIsInvalid) {
  TapFields tap = Tap();
  tap.issuer_province = test::kShanghai;  // registered, but B3301 is a Zhejiang bank
  EXPECT_EQ(DecodeTaps(test::TapBytes(tap)), Reason::kInvalidField);
}

// ---- what a rejection says ----------------------------------------------------------------------

TEST_F(DecodeTest, AnUnknownParticipantIsNamed) {
  TapFields tap = Tap();
  tap.merchant_id = "M_NOWHERE";
  EXPECT_EQ(DecodeTaps(test::TapBytes(tap)), Reason::kUnknownParticipant);
  EXPECT_EQ(FormatRejectionDetail(event_.rejection), "merchant_id 'M_NOWHERE' (9 bytes): is not in the registry");
  SettlementFields settlement = Settlement();
  settlement.insured_fund_id = "999999";
  EXPECT_EQ(DecodeMedical(test::SettlementBytes(settlement)), Reason::kUnknownParticipant);
  EXPECT_EQ(event_.rejection.field, "insured_fund_id");
  EXPECT_EQ(event_.rejection.value, "999999");
}

TEST_F(DecodeTest, AnInvalidFieldIsNamedWithItsValueEscapedAndCut) {
  TapFields tap = Tap();
  tap.txn_id = std::string(65, 'a');
  EXPECT_EQ(DecodeTaps(test::TapBytes(tap)), Reason::kInvalidField);
  EXPECT_EQ(FormatRejectionDetail(event_.rejection),
            Cat("txn_id '", std::string(65, 'a'), "' (65 bytes): is not 1 to 64 characters of [A-Za-z0-9_-]"));
  tap.txn_id = "T|1\n";
  EXPECT_EQ(DecodeTaps(test::TapBytes(tap)), Reason::kInvalidField);
  EXPECT_EQ(FormatRejectionDetail(event_.rejection),
            "txn_id 'T\\x7c1\\x0a' (4 bytes): is not 1 to 64 characters of [A-Za-z0-9_-]");
  tap.txn_id = std::string(100, 'b');
  EXPECT_EQ(DecodeTaps(test::TapBytes(tap)), Reason::kInvalidField);
  EXPECT_EQ(FormatRejectionDetail(event_.rejection),
            Cat("txn_id '", std::string(65, 'b'), "...' (100 bytes): is not 1 to 64 characters of [A-Za-z0-9_-]"));
}

TEST_F(DecodeTest, AnInvalidCardNumberIsNamedButNeverShown) {
  TapFields tap = Tap();
  tap.card_no = "6217 0012 3456 7890";
  EXPECT_EQ(DecodeTaps(test::TapBytes(tap)), Reason::kInvalidField);
  EXPECT_EQ(FormatRejectionDetail(event_.rejection), "card_no: is not 1 to 64 characters of [A-Za-z0-9_-]");
  tap.card_no.clear();
  EXPECT_EQ(DecodeTaps(test::TapBytes(tap)), Reason::kInvalidField);
  EXPECT_EQ(FormatRejectionDetail(event_.rejection), "card_no: is missing");
}

TEST_F(DecodeTest, AMalformedPayloadSaysWhatFailed) {
  EXPECT_EQ(DecodeTaps("short"), Reason::kMalformed);
  EXPECT_EQ(FormatRejectionDetail(event_.rejection), "payload 5: is shorter than a FlatBuffers header");
  EXPECT_EQ(DecodeTaps(test::TapBytes(Tap(), nullptr)), Reason::kMalformed);
  EXPECT_EQ(event_.rejection.rule, "lacks the file identifier YRD1");
  EXPECT_EQ(DecodeTaps(test::EmptyEnvelopeBytes()), Reason::kMalformed);
  EXPECT_EQ(event_.rejection.rule, "is none of the known event types");
}

TEST_F(DecodeTest, RedactionWithholdsAMessageItCannotReadAndMasksTheOnesItCan) {
  std::string redacted;
  ASSERT_TRUE(RedactCardNumbers(test::TapBytes(Tap()), redacted));
  EXPECT_EQ(redacted.find(test::kCardNumber19), std::string::npos);
  EXPECT_NE(redacted.find("621700*********0123"), std::string::npos);
  EXPECT_FALSE(RedactCardNumbers("not a flatbuffer", redacted));
  EXPECT_TRUE(redacted.empty());
  // An event type this build does not know (a newer producer's) verifies, but where its card
  // number is cannot be known: withheld.
  EXPECT_FALSE(RedactCardNumbers(test::UnknownEventBytes(), redacted));
  EXPECT_TRUE(redacted.empty());
}

TEST_F(DecodeTest, AnAcceptedEventHasNoRejectionDetail) {
  EXPECT_EQ(DecodeTaps(test::TapBytes(Tap())), std::nullopt);
  EXPECT_EQ(FormatRejectionDetail(event_.rejection), "");
}

// ---- amounts -----------------------------------------------------------------------------------

TEST_F(DecodeTest, NegativeTapAmountIsInvalid) {
  TapFields tap = Tap();
  tap.amount_fen = -1;
  EXPECT_EQ(DecodeTaps(test::TapBytes(tap)), Reason::kAmountInvalid);
}

TEST_F(DecodeTest, RefundOfZeroOrLessIsInvalid) {
  RefundFields refund;
  refund.occurred_at_ms = now_ms_;
  refund.amount_fen = 0;
  EXPECT_EQ(DecodeTaps(test::RefundBytes(refund)), Reason::kAmountInvalid);
  refund.amount_fen = -5;
  EXPECT_EQ(DecodeTaps(test::RefundBytes(refund)), Reason::kAmountInvalid);
  refund.amount_fen = 1;
  EXPECT_EQ(DecodeTaps(test::RefundBytes(refund)), std::nullopt);
}

TEST_F(DecodeTest, NegativeSettlementPartIsInvalid) {
  SettlementFields settlement = Settlement();
  settlement.cash_pay_fen = -1;
  settlement.total_fen = 6'999;  // still the sum of the parts
  EXPECT_EQ(DecodeMedical(test::SettlementBytes(settlement)), Reason::kAmountInvalid);
}

TEST_F(DecodeTest, SettlementWhosePartsDoNotSumToTheTotalIsInvalid) {
  SettlementFields settlement = Settlement();
  settlement.total_fen = 10'001;
  EXPECT_EQ(DecodeMedical(test::SettlementBytes(settlement)), Reason::kAmountInvalid);
  settlement.total_fen = 9'999;
  EXPECT_EQ(DecodeMedical(test::SettlementBytes(settlement)), Reason::kAmountInvalid);
}

TEST_F(DecodeTest, AmountAtTheCeilingIsAcceptedAndOneFenMoreIsInvalid) {
  context_.limits.amount_fen_max = 5'000;
  TapFields tap = Tap();
  tap.amount_fen = 5'000;
  EXPECT_EQ(DecodeTaps(test::TapBytes(tap)), std::nullopt);
  tap.amount_fen = 5'001;
  EXPECT_EQ(DecodeTaps(test::TapBytes(tap)), Reason::kAmountInvalid);
  EXPECT_EQ(FormatRejectionDetail(event_.rejection), "amount_fen 5001: is above clearing.amount_fen_max");
  RefundFields refund;
  refund.occurred_at_ms = now_ms_;
  refund.amount_fen = 5'000;
  EXPECT_EQ(DecodeTaps(test::RefundBytes(refund)), std::nullopt);
  refund.amount_fen = 5'001;
  EXPECT_EQ(DecodeTaps(test::RefundBytes(refund)), Reason::kAmountInvalid);
  SettlementFields settlement = Settlement();
  settlement.fund_pay_fen = 5'000;
  settlement.account_pay_fen = 0;
  settlement.cash_pay_fen = 0;
  settlement.total_fen = 5'000;
  EXPECT_EQ(DecodeMedical(test::SettlementBytes(settlement)), std::nullopt);
  settlement.cash_pay_fen = 1;
  settlement.total_fen = 5'001;
  EXPECT_EQ(DecodeMedical(test::SettlementBytes(settlement)), Reason::kAmountInvalid);
  EXPECT_EQ(event_.rejection.field, "total_fen");
}

TEST_F(DecodeTest, TheDefaultCeilingRefusesATapOfFiveTimesTenToTheEighteen) {
  EXPECT_EQ(context_.limits.amount_fen_max, kAmountFenMaxDefault);
  TapFields tap = Tap();
  tap.amount_fen = 5'000'000'000'000'000'000;
  EXPECT_EQ(DecodeTaps(test::TapBytes(tap)), Reason::kAmountInvalid);
  tap.amount_fen = kAmountFenMaxDefault;
  EXPECT_EQ(DecodeTaps(test::TapBytes(tap)), std::nullopt);
}

TEST_F(DecodeTest, SettlementWhosePartsOverflowIsInvalidEvenIfTheWrappedSumMatches) {
  SettlementFields settlement = Settlement();
  // INT64_MAX + INT64_MAX + 2 wraps around to exactly 0.
  settlement.fund_pay_fen = kMax;
  settlement.account_pay_fen = kMax;
  settlement.cash_pay_fen = 2;
  settlement.total_fen = 0;
  EXPECT_EQ(DecodeMedical(test::SettlementBytes(settlement)), Reason::kAmountInvalid);
  // The largest sum that fits is accepted once the per-event ceiling allows it.
  context_.limits.amount_fen_max = kMax;
  settlement.fund_pay_fen = kMax - 2;
  settlement.account_pay_fen = 1;
  settlement.cash_pay_fen = 1;
  settlement.total_fen = kMax;
  EXPECT_EQ(DecodeMedical(test::SettlementBytes(settlement)), std::nullopt);
}

// ---- timestamps --------------------------------------------------------------------------------

TEST_F(DecodeTest, EventOlderThanTheDedupHorizonIsStale) {
  TapFields tap = Tap();
  tap.occurred_at_ms = now_ms_ - context_.limits.dedup_horizon_ms - 1;
  EXPECT_EQ(DecodeTaps(test::TapBytes(tap)), Reason::kStale);
  tap.occurred_at_ms = now_ms_ - context_.limits.dedup_horizon_ms;
  EXPECT_EQ(DecodeTaps(test::TapBytes(tap)), std::nullopt);
}

TEST_F(DecodeTest, EventBeyondTheClockSkewBoundIsInTheFuture) {
  TapFields tap = Tap();
  tap.occurred_at_ms = now_ms_ + context_.limits.clock_skew_ms_max + 1;
  EXPECT_EQ(DecodeTaps(test::TapBytes(tap)), Reason::kFutureTimestamp);
}

TEST_F(DecodeTest, EventExactlyAtTheClockSkewBoundIsAccepted) {
  TapFields tap = Tap();
  tap.occurred_at_ms = now_ms_ + context_.limits.clock_skew_ms_max;
  EXPECT_EQ(DecodeTaps(test::TapBytes(tap)), std::nullopt);
}

TEST_F(DecodeTest, CancellationTimestampIsCheckedToo) {
  CancellationFields cancellation;
  cancellation.occurred_at_ms = now_ms_ + context_.limits.clock_skew_ms_max + 1;
  EXPECT_EQ(DecodeMedical(test::CancellationBytes(cancellation)), Reason::kFutureTimestamp);
  cancellation.occurred_at_ms = now_ms_ - context_.limits.dedup_horizon_ms - 1;
  EXPECT_EQ(DecodeMedical(test::CancellationBytes(cancellation)), Reason::kStale);
}

// ---- participants ------------------------------------------------------------------------------

TEST_F(DecodeTest, UnknownMerchantIsAnUnknownParticipant) {
  TapFields tap = Tap();
  tap.merchant_id = "M_NOWHERE";
  EXPECT_EQ(DecodeTaps(test::TapBytes(tap)), Reason::kUnknownParticipant);
}

TEST_F(DecodeTest, UnknownIssuerBankOrProvinceIsAnUnknownParticipant) {
  TapFields tap = Tap();
  tap.issuer_bank_id = "B9999";
  EXPECT_EQ(DecodeTaps(test::TapBytes(tap)), Reason::kUnknownParticipant);
  tap = Tap();
  tap.issuer_province = test::kUnregisteredProvince;
  EXPECT_EQ(DecodeTaps(test::TapBytes(tap)), Reason::kUnknownParticipant);
}

TEST_F(DecodeTest, UnknownFundOrInstitutionIsAnUnknownParticipant) {
  SettlementFields settlement = Settlement();
  settlement.insured_fund_id = "999999";
  EXPECT_EQ(DecodeMedical(test::SettlementBytes(settlement)), Reason::kUnknownParticipant);
  settlement = Settlement();
  settlement.institution_id = "H_NOWHERE";
  EXPECT_EQ(DecodeMedical(test::SettlementBytes(settlement)), Reason::kUnknownParticipant);
}

// ---- the order of the checks -------------------------------------------------------------------

TEST_F(DecodeTest, WrongTopicIsDecidedBeforeNegativeAmount) {
  TapFields tap = Tap();
  tap.amount_fen = -1;
  EXPECT_EQ(DecodeTaps(test::TapBytes(tap)), Reason::kAmountInvalid);
  EXPECT_EQ(DecodeMedical(test::TapBytes(tap)), Reason::kInvalidField);
}

TEST_F(DecodeTest, InvalidIdIsDecidedBeforeNegativeAmount) {
  TapFields tap = Tap();
  tap.txn_id = "bad id";
  tap.amount_fen = -1;
  EXPECT_EQ(DecodeTaps(test::TapBytes(tap)), Reason::kInvalidField);
}

TEST_F(DecodeTest, UnspecifiedCarrierIsDecidedBeforeNegativeAmount) {
  TapFields tap = Tap();
  tap.carrier = 0;
  tap.amount_fen = -1;
  EXPECT_EQ(DecodeTaps(test::TapBytes(tap)), Reason::kInvalidField);
}

TEST_F(DecodeTest, NegativeAmountIsDecidedBeforeStale) {
  TapFields tap = Tap();
  tap.amount_fen = -1;
  tap.occurred_at_ms = 0;
  EXPECT_EQ(DecodeTaps(test::TapBytes(tap)), Reason::kAmountInvalid);
}

TEST_F(DecodeTest, SumMismatchIsDecidedBeforeFutureTimestamp) {
  SettlementFields settlement = Settlement();
  settlement.total_fen = 1;
  settlement.occurred_at_ms = now_ms_ + 86'400'000;
  EXPECT_EQ(DecodeMedical(test::SettlementBytes(settlement)), Reason::kAmountInvalid);
}

TEST_F(DecodeTest, StaleIsDecidedBeforeUnknownMerchant) {
  TapFields tap = Tap();
  tap.merchant_id = "M_NOWHERE";
  tap.occurred_at_ms = 0;
  EXPECT_EQ(DecodeTaps(test::TapBytes(tap)), Reason::kStale);
}

TEST_F(DecodeTest, FutureTimestampIsDecidedBeforeUnknownMerchant) {
  TapFields tap = Tap();
  tap.merchant_id = "M_NOWHERE";
  tap.occurred_at_ms = now_ms_ + 86'400'000;
  EXPECT_EQ(DecodeTaps(test::TapBytes(tap)), Reason::kFutureTimestamp);
}

TEST_F(DecodeTest, UnknownProvinceIsDecidedBeforeProvinceMismatch) {
  TapFields tap = Tap();
  tap.issuer_province = test::kUnregisteredProvince;
  EXPECT_EQ(DecodeTaps(test::TapBytes(tap)), Reason::kUnknownParticipant);
}

// ---- card privacy ------------------------------------------------------------------------------

TEST(MaskCardNumber, NineteenDigitsKeepFirstSixAndLastFour) {
  char out[kMaskedCardLengthMax];
  const size_t length = MaskCardNumber("6217001234567890123", out);
  EXPECT_EQ(std::string_view(out, length), "621700*********0123");
}

TEST(MaskCardNumber, SixteenIsTheShortestToKeepSixAndFour) {
  char out[kMaskedCardLengthMax];
  size_t length = MaskCardNumber("1234567890123456", out);
  EXPECT_EQ(std::string_view(out, length), "123456******3456");
  length = MaskCardNumber("123456789012345", out);
  EXPECT_EQ(std::string_view(out, length), "1************45");
}

TEST(MaskCardNumber, TwelveCharactersKeepFirstOneAndLastTwo) {
  char out[kMaskedCardLengthMax];
  const size_t length = MaskCardNumber("A12345678901", out);
  EXPECT_EQ(std::string_view(out, length), "A*********01");
}

TEST(MaskCardNumber, VeryShortNumberIsFullyMasked) {
  char out[kMaskedCardLengthMax];
  size_t length = MaskCardNumber("123", out);
  EXPECT_EQ(std::string_view(out, length), "***");
  length = MaskCardNumber("1234", out);
  EXPECT_EQ(std::string_view(out, length), "1*34");
}

TEST_F(DecodeTest, DecodedTapCarriesTokenAndMaskedCardButNotTheNumber) {
  const std::string payload = test::TapBytes(Tap());
  ASSERT_EQ(DecodeTaps(payload), std::nullopt);
  EXPECT_EQ(event_.card_masked_view(), "621700*********0123");
  CardToken expected{};
  tokenizer_->Tokenize(test::kCardNumber19, expected);
  EXPECT_EQ(event_.card_token, expected);
  // No view of the event points at the card number in the payload, and its bytes hold no copy.
  const size_t card_at = payload.find(test::kCardNumber19);
  ASSERT_NE(card_at, std::string::npos);
  for (const std::string_view view : {event_.txn_id, event_.original_txn_id, event_.terminal_id}) {
    EXPECT_EQ(view.find(test::kCardNumber19), std::string_view::npos);
    if (!view.empty()) {
      EXPECT_NE(view.data(), payload.data() + card_at);
    }
  }
  const std::string_view event_bytes(reinterpret_cast<const char*>(&event_), sizeof event_);
  EXPECT_EQ(event_bytes.find(test::kCardNumber19), std::string_view::npos);
  EXPECT_EQ(event_bytes.find(test::kCardNumber19.substr(0, 10)), std::string_view::npos);
}

TEST_F(DecodeTest, DecodedSettlementCarriesMaskedCardOfTwelveCharacters) {
  SettlementFields settlement = Settlement();
  settlement.card_no = "A12345678901";
  ASSERT_EQ(DecodeMedical(test::SettlementBytes(settlement)), std::nullopt);
  EXPECT_EQ(event_.card_masked_view(), "A*********01");
  const std::string_view event_bytes(reinterpret_cast<const char*>(&event_), sizeof event_);
  EXPECT_EQ(event_bytes.find("A12345678901"), std::string_view::npos);
}

// ---- digests -----------------------------------------------------------------------------------

TEST_F(DecodeTest, SameContentGivesTheSameDigestAndAnyFieldChangesIt) {
  const TapFields base = Tap();
  ASSERT_EQ(DecodeTaps(test::TapBytes(base)), std::nullopt);
  const Digest first = event_.digest;
  ASSERT_EQ(DecodeTaps(test::TapBytes(base)), std::nullopt);
  EXPECT_EQ(event_.digest, first);

  std::vector<TapFields> variants(7, base);
  variants[0].amount_fen += 1;
  variants[1].occurred_at_ms += 1;
  variants[2].card_no = "6217001234567890124";
  variants[3].terminal_id = "GATE_08";
  variants[4].merchant_id = test::kBusHangzhou;
  variants[5].carrier = 2;
  variants[6].txn_id = "TAP2";
  for (size_t i = 0; i < variants.size(); ++i) {
    ASSERT_EQ(DecodeTaps(test::TapBytes(variants[i])), std::nullopt) << i;
    EXPECT_NE(event_.digest, first) << "variant " << i;
  }
}

}  // namespace
}  // namespace yrd
