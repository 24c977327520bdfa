#include "tests/golden/golden_window.h"

#include <map>
#include <utility>
#include <vector>

#include "adapters/crypto/hmac.h"
#include "engine/base/strings.h"
#include "engine/batch/batch.h"
#include "engine/ledger/ledger.h"
#include "engine/store/records.h"
#include "tests/support/events.h"

namespace yrd::test {
namespace {

struct Message {
  SourceTopic topic;
  int32_t partition;
  std::string payload;
};

Message Tap(int32_t partition, std::string txn_id, std::string card_no, std::string issuer_bank,
            std::string issuer_province, std::string merchant, std::string terminal, int64_t amount_fen,
            int64_t occurred_at_ms, uint8_t carrier = 1) {
  TapFields tap;
  tap.txn_id = std::move(txn_id);
  tap.card_no = std::move(card_no);
  tap.carrier = carrier;
  tap.issuer_bank_id = std::move(issuer_bank);
  tap.issuer_province = std::move(issuer_province);
  tap.merchant_id = std::move(merchant);
  tap.terminal_id = std::move(terminal);
  tap.amount_fen = amount_fen;
  tap.occurred_at_ms = occurred_at_ms;
  return {SourceTopic::kTaps, partition, TapBytes(tap)};
}

Message Refund(std::string txn_id, std::string original, int64_t amount_fen, int64_t occurred_at_ms) {
  RefundFields refund;
  refund.txn_id = std::move(txn_id);
  refund.original_txn_id = std::move(original);
  refund.amount_fen = amount_fen;
  refund.occurred_at_ms = occurred_at_ms;
  return {SourceTopic::kTaps, 0, RefundBytes(refund)};
}

Message Settlement(std::string txn_id, std::string card_no, std::string insured_fund, std::string institution,
                   int64_t fund_pay_fen, int64_t account_pay_fen, int64_t cash_pay_fen, int64_t occurred_at_ms) {
  SettlementFields s;
  s.txn_id = std::move(txn_id);
  s.card_no = std::move(card_no);
  s.insured_fund_id = std::move(insured_fund);
  s.institution_id = std::move(institution);
  s.fund_pay_fen = fund_pay_fen;
  s.account_pay_fen = account_pay_fen;
  s.cash_pay_fen = cash_pay_fen;
  s.total_fen = fund_pay_fen + account_pay_fen + cash_pay_fen;
  s.occurred_at_ms = occurred_at_ms;
  return {SourceTopic::kMedical, 0, SettlementBytes(s)};
}

Message Cancellation(std::string txn_id, std::string original, int64_t occurred_at_ms) {
  CancellationFields c;
  c.txn_id = std::move(txn_id);
  c.original_txn_id = std::move(original);
  c.occurred_at_ms = occurred_at_ms;
  return {SourceTopic::kMedical, 0, CancellationBytes(c)};
}

int64_t At(int32_t hour, int32_t minute, int32_t second = 0, int32_t millisecond = 0) {
  return ChinaTimeMs(2026, 11, 27, hour, minute, second, millisecond);
}

}  // namespace

std::string GoldenDir() { return YRD_GOLDEN_DIR; }

absl::StatusOr<GoldenWindow> BuildGoldenWindow(StateStore& store) {
  GoldenWindow golden;
  absl::StatusOr<std::shared_ptr<const Registry>> registry = Registry::FromFile(GoldenDir() + "/registry.toml");
  if (!registry.ok()) return registry.status();
  golden.registry = *std::move(registry);
  absl::StatusOr<std::unique_ptr<HmacSha256>> tokenizer = HmacSha256::Create(kGoldenCardTokenKey);
  if (!tokenizer.ok()) return tokenizer.status();

  const WindowCalendar calendar;
  const int64_t now_ms = At(12, 0);
  Ledger ledger(store, LedgerOptions{calendar});
  if (absl::Status s = ledger.Load(now_ms); !s.ok()) return s;

  const std::vector<std::vector<Message>> batches = {
      {
          Tap(0, "TAP_A1", "6217001234567890123", "B3301", "330000", "M_SH_METRO", "GATE_07", 300, At(8, 1, 0, 250)),
          Tap(0, "TAP_A2", "6222020000001111", "B3101", "310000", "M_SH_METRO", "GATE_12", 200, At(8, 5)),
          Tap(0, "TAP_B1", "6217009876543210", "B3101", "310000", "M_HZ_BUS", "BUS_0451", 400, At(7, 30), 2),
          Settlement("SETTLE_1", "310101199001011234", "310100", "H_HZ_1", 6'000, 1'000, 3'000, At(9, 10)),
          Settlement("SETTLE_2", "330102198505052345", "330100", "H_HZ_1", 3'500, 500, 1'000, At(9, 20)),
      },
      {
          // Partition 1 first: commit order differs from the files' (partition, offset) order.
          Tap(1, "TAP_B2", "6228480000002222", "B3201", "320000", "M_HZ_BUS", "BUS_0733", 300, At(7, 45)),
          // Occurred before the 26th closed; applied now, it goes to the 27th marked late.
          Tap(1, "TAP_L1", "6228480000003333", "B3201", "320000", "M_SH_METRO", "GATE_03", 500,
              ChinaTimeMs(2026, 11, 26, 23, 50)),
          Refund("R_A1", "TAP_A1", 150, At(9, 0)),
          // Redelivered as it was: an exact duplicate. Then the same id with another amount: a conflict.
          Tap(0, "TAP_B1", "6217009876543210", "B3101", "310000", "M_HZ_BUS", "BUS_0451", 400, At(7, 30), 2),
          Tap(0, "TAP_B1", "6217009876543210", "B3101", "310000", "M_HZ_BUS", "BUS_0451", 450, At(7, 30), 2),
          Tap(0, "TAP_C1", "A12345678", "B3301", "330000", "M_NJ_MUSEUM", "GATE_1", 0, At(10, 0), 3),
          Settlement("SETTLE_3", "330102198505052345", "330100", "P_SH_1", 1'200, 300, 500, At(10, 30)),
          Settlement("SETTLE_4", "330106197003033456", "330100", "P_SH_1", 600, 0, 200, At(10, 40)),
      },
      {
          Cancellation("CANCEL_3", "SETTLE_3", At(11, 0)),
          Refund("R_X", "NEVER_SEEN", 100, At(11, 5)),
      },
  };

  std::map<std::pair<SourceTopic, int32_t>, int64_t> next_offsets;
  for (const std::vector<Message>& messages : batches) {
    Batch batch(BatchLimits{.messages_max = 64, .arena_bytes_max = 1 << 20});
    batch.now_ms = now_ms;
    batch.registry = golden.registry;
    const DecodeLimits limits;
    for (const Message& message : messages) {
      int64_t& next = next_offsets[{message.topic, message.partition}];
      batch.Add(message.topic, message.partition, next++, "key", message.payload, limits.message_bytes_max);
    }
    DecodeBatch(batch, **tokenizer, limits);
    BatchResult result;
    if (absl::Status s = ledger.Apply(batch, result); !s.ok()) return s;
  }

  // The daemon's clock reaches the window's cutoff plus grace: the ledger closes it, freezing the
  // registry's fee schedule with it.
  Batch tick(BatchLimits{.messages_max = 1, .arena_bytes_max = 64});
  tick.now_ms = calendar.CloseInstantMs(kGoldenDay);
  tick.registry = golden.registry;
  BatchResult result;
  if (absl::Status s = ledger.Apply(tick, result); !s.ok()) return s;
  absl::StatusOr<ClosedWindow> window = LoadClosedWindow(store, kGoldenDay, *golden.registry);
  if (!window.ok()) return absl::InternalError(Cat("the ledger did not close the golden window: ", window.status().message()));
  golden.window = *std::move(window);
  return golden;
}

}  // namespace yrd::test
