// Test support: builders for the FlatBuffers events of schemas/events.fbs, a small hand-made
// registry covering three provinces, the clearing center's fee bank, two pooling funds and a
// merchant of each kind the tests need, a temporary directory, and the ingest stage's decoding
// of a Batch (what Pipeline::Decode does), so that tests drive Decode and Ledger the way the
// daemon does without Kafka.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "engine/batch/batch.h"
#include "engine/event/event.h"
#include "engine/registry/registry.h"
#include "engine/store/records.h"

namespace yrd::test {

// ---- the hand-made registry --------------------------------------------------------------------

inline constexpr std::string_view kShanghai = "310000";
inline constexpr std::string_view kJiangsu = "320000";
inline constexpr std::string_view kZhejiang = "330000";
inline constexpr std::string_view kUnregisteredProvince = "340000";

inline constexpr std::string_view kBankShanghai = "B3101";  // holds the fee account
inline constexpr std::string_view kBankNanjing = "B3201";
inline constexpr std::string_view kBankHangzhou = "B3301";

inline constexpr std::string_view kFundShanghai = "310100";
inline constexpr std::string_view kFundHangzhou = "330100";

inline constexpr std::string_view kMetroShanghai = "M_SH_METRO";   // metro, B3101, fee 100 bps
inline constexpr std::string_view kBusHangzhou = "M_HZ_BUS";       // bus, B3301, fee 0
inline constexpr std::string_view kMuseumNanjing = "M_NJ_MUSEUM";  // museum, B3201, fee 0
inline constexpr std::string_view kHospitalHangzhou = "H_HZ_1";    // hospital of fund 330100, B3301
inline constexpr std::string_view kPharmacyShanghai = "P_SH_1";    // pharmacy of fund 310100, B3101

inline constexpr int32_t kMetroFeeBps = 100;

// The registry above as TOML text (source name "test_registry.toml").
[[nodiscard]] std::string TestRegistryToml();
// Parsed; aborts the test binary if the hand-made text is refused (a broken fixture).
[[nodiscard]] std::shared_ptr<const Registry> TestRegistry();

// ---- time ----------------------------------------------------------------------------------------

// UTC epoch milliseconds of a China Standard Time (UTC+8) civil time.
[[nodiscard]] int64_t ChinaTimeMs(int32_t year, uint32_t month, uint32_t day, int32_t hour, int32_t minute,
                                  int32_t second = 0, int32_t millisecond = 0);

// ---- events --------------------------------------------------------------------------------------
//
// An empty string field is left out of the message (the reader sees a missing field). Enum
// fields are raw bytes so that tests can send values outside the schema's range.

inline constexpr std::string_view kCardNumber19 = "6217001234567890123";

struct TapFields {
  std::string txn_id = "TAP1";
  std::string card_no = std::string(kCardNumber19);
  uint8_t carrier = 1;  // physical
  std::string issuer_province = std::string(kZhejiang);
  std::string issuer_bank_id = std::string(kBankHangzhou);
  std::string merchant_id = std::string(kMetroShanghai);
  std::string terminal_id = "GATE_07";
  int64_t amount_fen = 300;
  int64_t occurred_at_ms = 0;
};

struct RefundFields {
  std::string txn_id = "REFUND1";
  std::string original_txn_id = "TAP1";
  int64_t amount_fen = 100;
  int64_t occurred_at_ms = 0;
};

struct SettlementFields {
  std::string txn_id = "SETTLE1";
  std::string card_no = std::string(kCardNumber19);
  std::string insured_fund_id = std::string(kFundShanghai);
  std::string institution_id = std::string(kHospitalHangzhou);
  uint8_t visit_type = 1;  // outpatient
  int64_t total_fen = 10'000;
  int64_t fund_pay_fen = 6'000;
  int64_t account_pay_fen = 1'000;
  int64_t cash_pay_fen = 3'000;
  int64_t occurred_at_ms = 0;
};

struct CancellationFields {
  std::string txn_id = "CANCEL1";
  std::string original_txn_id = "SETTLE1";
  int64_t occurred_at_ms = 0;
};

inline constexpr const char* kFileIdentifier = "YRD1";

// Finished envelopes; `file_identifier` nullptr leaves the identifier out.
[[nodiscard]] std::string TapBytes(const TapFields& tap, const char* file_identifier = kFileIdentifier);
[[nodiscard]] std::string RefundBytes(const RefundFields& refund);
[[nodiscard]] std::string SettlementBytes(const SettlementFields& settlement);
[[nodiscard]] std::string CancellationBytes(const CancellationFields& cancellation);
// A verified envelope that carries no event (union type NONE).
[[nodiscard]] std::string EmptyEnvelopeBytes();
// A verified envelope whose event type this build does not know (a newer schema's), holding a
// table with a string in it.
[[nodiscard]] std::string UnknownEventBytes();

// ---- pipeline stand-ins --------------------------------------------------------------------------

// Decodes every pending slot of `batch` with the batch's registry and clock, exactly as the
// ingest stage does: a rejected message gets its reason and, when it did not decode, the
// digest of its bytes.
void DecodeBatch(Batch& batch, CardTokenizer& tokenizer, const DecodeLimits& limits = {});

// A transaction record as stores written before line numbers hold it (format version 2): the
// line key's text in place of its number.
[[nodiscard]] std::string Version2TxnRecord(const TxnRecord& record);
// An applied-record blob of one record as stores written before line numbers hold it.
[[nodiscard]] std::string Version2AppliedBlob(const AppliedRecord& record);

// A fresh directory under the system's temporary directory, removed with its contents when the
// object goes away.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace yrd::test
