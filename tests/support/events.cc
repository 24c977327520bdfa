#include "tests/support/events.h"

#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <system_error>

#include "engine/base/window.h"
#include "engine/pipeline/pipeline.h"
#include "schemas/events_generated.h"

namespace yrd::test {
namespace {

namespace fb = ::yrd::schema;

flatbuffers::Offset<flatbuffers::String> OptionalString(flatbuffers::FlatBufferBuilder& builder,
                                                        const std::string& text) {
  return text.empty() ? flatbuffers::Offset<flatbuffers::String>() : builder.CreateString(text);
}

std::string Finish(flatbuffers::FlatBufferBuilder& builder, fb::Event type, flatbuffers::Offset<void> event,
                   const char* file_identifier) {
  builder.Finish(fb::CreateEnvelope(builder, 1, type, event), file_identifier);
  return std::string(reinterpret_cast<const char*>(builder.GetBufferPointer()), builder.GetSize());
}

}  // namespace

std::string TestRegistryToml() {
  return R"toml([[province]]
code = "310000"
name = "Shanghai"

[[province]]
code = "320000"
name = "Jiangsu"

[[province]]
code = "330000"
name = "Zhejiang"

[[bank]]
bank_id = "B3101"
name = "Bank of Shanghai"
province = "310000"
fee_account = true

[[bank]]
bank_id = "B3201"
name = "Bank of Nanjing"
province = "320000"

[[bank]]
bank_id = "B3301"
name = "Bank of Hangzhou"
province = "330000"

[[fund]]
fund_id = "310100"
name = "Shanghai medical insurance fund"
province = "310000"

[[fund]]
fund_id = "330100"
name = "Hangzhou medical insurance fund"
province = "330000"

[[merchant]]
merchant_id = "M_SH_METRO"
name = "Shanghai Metro"
province = "310000"
category = "metro"
bank_id = "B3101"

[[merchant]]
merchant_id = "M_HZ_BUS"
name = "Hangzhou Bus"
province = "330000"
category = "bus"
bank_id = "B3301"

[[merchant]]
merchant_id = "M_NJ_MUSEUM"
name = "Nanjing Museum"
province = "320000"
category = "museum"
bank_id = "B3201"

[[merchant]]
merchant_id = "H_HZ_1"
name = "Hangzhou First Hospital"
province = "330000"
category = "hospital"
bank_id = "B3301"
fund_id = "330100"

[[merchant]]
merchant_id = "P_SH_1"
name = "Shanghai Pharmacy"
province = "310000"
category = "pharmacy"
bank_id = "B3101"
fund_id = "310100"

[fee_bps]
metro = 100
)toml";
}

std::shared_ptr<const Registry> TestRegistry() {
  auto registry = Registry::FromToml(TestRegistryToml(), "test_registry.toml");
  if (!registry.ok()) {
    std::fprintf(stderr, "the test registry is refused: %s\n", registry.status().ToString().c_str());
    std::abort();
  }
  return *std::move(registry);
}

int64_t ChinaTimeMs(int32_t year, uint32_t month, uint32_t day, int32_t hour, int32_t minute, int32_t second,
                    int32_t millisecond) {
  const int64_t local_ms = static_cast<int64_t>(DaysFromCivil(year, month, day)) * kDayMs +
                           ((static_cast<int64_t>(hour) * 60 + minute) * 60 + second) * 1000 + millisecond;
  return local_ms - kChinaStandardTimeOffsetMs;
}

std::string TapBytes(const TapFields& tap, const char* file_identifier) {
  flatbuffers::FlatBufferBuilder builder;
  const auto event = fb::CreateTap(
      builder, OptionalString(builder, tap.txn_id), OptionalString(builder, tap.card_no),
      static_cast<fb::Carrier>(tap.carrier), OptionalString(builder, tap.issuer_province),
      OptionalString(builder, tap.issuer_bank_id), OptionalString(builder, tap.merchant_id),
      OptionalString(builder, tap.terminal_id), tap.amount_fen, tap.occurred_at_ms);
  return Finish(builder, fb::Event::Tap, event.Union(), file_identifier);
}

std::string RefundBytes(const RefundFields& refund) {
  flatbuffers::FlatBufferBuilder builder;
  const auto event =
      fb::CreateTapRefund(builder, OptionalString(builder, refund.txn_id),
                          OptionalString(builder, refund.original_txn_id), refund.amount_fen, refund.occurred_at_ms);
  return Finish(builder, fb::Event::TapRefund, event.Union(), kFileIdentifier);
}

std::string SettlementBytes(const SettlementFields& s) {
  flatbuffers::FlatBufferBuilder builder;
  const auto event = fb::CreateMedicalSettlement(
      builder, OptionalString(builder, s.txn_id), OptionalString(builder, s.card_no),
      OptionalString(builder, s.insured_fund_id), OptionalString(builder, s.institution_id),
      static_cast<fb::VisitType>(s.visit_type), s.total_fen, s.fund_pay_fen, s.account_pay_fen, s.cash_pay_fen,
      s.occurred_at_ms);
  return Finish(builder, fb::Event::MedicalSettlement, event.Union(), kFileIdentifier);
}

std::string CancellationBytes(const CancellationFields& c) {
  flatbuffers::FlatBufferBuilder builder;
  const auto event = fb::CreateMedicalCancellation(builder, OptionalString(builder, c.txn_id),
                                                   OptionalString(builder, c.original_txn_id), c.occurred_at_ms);
  return Finish(builder, fb::Event::MedicalCancellation, event.Union(), kFileIdentifier);
}

std::string UnknownEventBytes() {
  flatbuffers::FlatBufferBuilder builder;
  const auto card = builder.CreateString(std::string(kCardNumber19));
  const auto start = builder.StartTable();
  builder.AddOffset(4, card);
  const flatbuffers::Offset<void> table(builder.EndTable(start));
  return Finish(builder, static_cast<fb::Event>(42), table, kFileIdentifier);
}

std::string EmptyEnvelopeBytes() {
  flatbuffers::FlatBufferBuilder builder;
  return Finish(builder, fb::Event::NONE, 0, kFileIdentifier);
}

void DecodeBatch(Batch& batch, CardTokenizer& tokenizer, const DecodeLimits& limits) {
  yrd::DecodeBatch(batch, tokenizer, limits);
}

TempDir::TempDir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "yrd_test_XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) {
    std::perror("mkdtemp");
    std::abort();
  }
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

std::string Version2TxnRecord(const TxnRecord& record) {
  TxnRecord without_line = record;
  without_line.line_id = kNoLineId;
  std::string bytes;
  EncodeTxnRecord(without_line, bytes);
  // Version 3 ends with the line's number (0, one byte: none) and the original's text.
  const std::string original =
      std::string(1, static_cast<char>(record.original_txn_id.size())) + std::string(record.original_txn_id);
  bytes.resize(bytes.size() - 1 - original.size());
  bytes[0] = 2;
  bytes.push_back(static_cast<char>(record.line_key.size()));
  bytes.append(record.line_key);
  return bytes + original;
}

std::string Version2AppliedBlob(const AppliedRecord& record) {
  AppliedRecord without_line = record;
  without_line.line_id = kNoLineId;
  std::string blob;
  AppendAppliedRecord(without_line, blob);
  std::string bytes = blob.substr(2);  // after the record's length
  // Version 3 ends with the line's number (0, one byte: none), the terminal and the masked card.
  const size_t line_at = bytes.size() - (2 + record.terminal_id.size() + record.card_masked.size()) - 1;
  bytes.replace(line_at, 1, std::string(1, static_cast<char>(record.line_key.size())) + std::string(record.line_key));
  bytes[0] = 2;
  std::string out;
  out.push_back(static_cast<char>(bytes.size() & 0xFF));
  out.push_back(static_cast<char>(bytes.size() >> 8));
  return out + bytes;
}

}  // namespace yrd::test
