// StoreMaintenance on a real RocksDB store with a real ledger: the dedup horizon follows the
// clock and the dedup table loses the records past it, and a window whose files were written the
// retention ago gives up its applied records, lines and exceptions, and only that window.
#include "tools/clearingd/maintenance.h"

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "adapters/crypto/hmac.h"
#include "engine/pipeline/pipeline.h"
#include "engine/readers/store_readers.h"
#include "engine/store/records.h"
#include "gtest/gtest.h"
#include "tests/support/events.h"

namespace yrd {
namespace {

constexpr int64_t kHourMs = 3'600'000;

class MaintenanceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto hmac = HmacSha256::Create("maintenance-test-key-not-a-secret");
    ASSERT_TRUE(hmac.ok());
    tokenizer_ = *std::move(hmac);
    auto store = RocksStore::Open(dir_.path() + "/state");
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    // Every batch's records are sorted into the dedup table, where the filter works.
    LedgerOptions options;
    options.recent_txn_records_max = 1;
    ledger_ = std::make_unique<Ledger>(*store_, options);
    ASSERT_TRUE(ledger_->Load(clock_.NowMs()).ok());
    MakeMaintenance();
  }

  void MakeMaintenance() {
    maintenance_ = std::make_unique<StoreMaintenance>(
        *store_, clock_, options_, [this] { return ledger_->windows(); },
        [this](WindowCommand command) {
          submitted_.push_back(std::move(command));
          return true;
        },
        nullptr, /*start_thread=*/false);
  }

  // Decodes and applies `payloads` (topic, bytes) and then any submitted commands, at the clock.
  const Batch& Apply(const std::vector<std::pair<SourceTopic, std::string>>& payloads,
                     std::vector<WindowCommand> commands = {}) {
    batches_.push_back(std::make_unique<Batch>(BatchLimits{.messages_max = 64, .arena_bytes_max = 1 << 20}));
    Batch& batch = *batches_.back();
    batch.now_ms = clock_.NowMs();
    batch.registry = registry_;
    for (WindowCommand& command : submitted_) commands.push_back(std::move(command));
    submitted_.clear();
    batch.commands = std::move(commands);
    for (const auto& [topic, payload] : payloads) batch.Add(topic, 0, next_offset_++, "key", payload, 65'536);
    test::DecodeBatch(batch, *tokenizer_);
    BatchResult result;
    const absl::Status status = ledger_->Apply(batch, result);
    EXPECT_TRUE(status.ok()) << status;
    EXPECT_TRUE(ledger_->AwaitRecentTxnSort().ok());
    return batch;
  }

  std::pair<SourceTopic, std::string> Tap(const std::string& txn_id, int64_t amount_fen = 300) {
    test::TapFields tap;
    tap.txn_id = txn_id;
    tap.amount_fen = amount_fen;
    tap.occurred_at_ms = clock_.NowMs() - 60'000;
    return {SourceTopic::kTaps, test::TapBytes(tap)};
  }
  std::pair<SourceTopic, std::string> Refund(const std::string& txn_id, const std::string& original) {
    test::RefundFields refund;
    refund.txn_id = txn_id;
    refund.original_txn_id = original;
    refund.amount_fen = 100;
    refund.occurred_at_ms = clock_.NowMs() - 60'000;
    return {SourceTopic::kTaps, test::RefundBytes(refund)};
  }

  bool InDedupTable(const std::string& txn_id) {
    std::string key, value;
    TxnKey({SourceTopic::kTaps, 0}, Family::kTaps, txn_id, key);  // the scenario's taps come from partition 0
    bool found = false;
    EXPECT_TRUE(store_->Get(Table::kTxn, key, value, found).ok());
    return found;
  }
  size_t Count(Table table, WindowDay day) {
    std::string prefix;
    AppendBigEndian32(prefix, WindowKeyBits(day));
    size_t count = 0;
    EXPECT_TRUE(store_->Scan(table, prefix, {}, [&](std::string_view, std::string_view) { return ++count > 0; }).ok());
    return count;
  }
  size_t ExceptionsOf(WindowDay day) {
    size_t count = 0;
    EXPECT_TRUE(store_
                    ->Scan(Table::kExceptions, {}, {},
                           [&](std::string_view key, std::string_view value) {
                             ExceptionRecord record;
                             EXPECT_TRUE(DecodeExceptionRecord(key, value, record));
                             count += record.window == day ? 1 : 0;
                             return true;
                           })
                    .ok());
    return count;
  }
  // Closes `day` and marks its files written, at the clock.
  void CloseAndMarkFilesWritten(WindowDay day) {
    Apply({}, {WindowCommand(WindowCommand::Kind::kClose, day)});
    Apply({}, {WindowCommand(WindowCommand::Kind::kMarkFilesWritten, day)});
  }

  test::TempDir dir_;
  ManualClock clock_{test::ChinaTimeMs(2026, 11, 27, 10, 0)};
  StoreMaintenanceOptions options_ = [] {
    StoreMaintenanceOptions options;
    options.dedup_horizon_ms = 40 * kDayMs;
    options.window_retention_ms = 30 * kDayMs;
    return options;
  }();
  std::shared_ptr<const Registry> registry_ = test::TestRegistry();
  std::unique_ptr<HmacSha256> tokenizer_;
  std::unique_ptr<RocksStore> store_;
  std::unique_ptr<Ledger> ledger_;
  std::unique_ptr<StoreMaintenance> maintenance_;
  std::vector<WindowCommand> submitted_;
  std::deque<std::unique_ptr<Batch>> batches_;
  int64_t next_offset_ = 0;
};

TEST_F(MaintenanceTest, TheDedupTableLosesTheRecordsPastTheHorizonAsTheClockMoves) {
  Apply({Tap("TAP_OLD")});
  clock_.Advance(20 * kDayMs);
  Apply({Tap("TAP_NEW")});
  Apply({});  // the recent records' values go
  ASSERT_TRUE(InDedupTable("TAP_OLD"));
  MaintenanceRound round;
  ASSERT_TRUE(maintenance_->RunOnce(round).ok());
  EXPECT_TRUE(round.dedup_table_compacted);
  EXPECT_TRUE(InDedupTable("TAP_OLD"));  // 20 days old: within the horizon

  // 40 days and an hour after TAP_OLD: past the horizon. The ledger treats it as gone at once,
  // while the store's filter, a day behind, still keeps it...
  clock_.Advance(20 * kDayMs + kHourMs);
  EXPECT_EQ(Apply({Refund("R_OLD", "TAP_OLD")}).slots()[0].reason, Reason::kUnknownOriginal);
  ASSERT_TRUE(maintenance_->RunOnce(round = {}).ok());
  EXPECT_TRUE(round.dedup_table_compacted);
  EXPECT_TRUE(InDedupTable("TAP_OLD"));
  // ...and a day later the next compaction drops it from the table.
  clock_.Advance(kDayMs);
  ASSERT_TRUE(maintenance_->RunOnce(round = {}).ok());
  EXPECT_TRUE(round.dedup_table_compacted);
  EXPECT_FALSE(InDedupTable("TAP_OLD"));
  EXPECT_TRUE(InDedupTable("TAP_NEW"));
  EXPECT_EQ(Apply({Refund("R_NEW", "TAP_NEW")}).slots()[0].fate, Fate::kApplied);
  // An hour later the horizon has not moved a day: no compaction.
  clock_.Advance(kHourMs);
  ASSERT_TRUE(maintenance_->RunOnce(round = {}).ok());
  EXPECT_FALSE(round.dedup_table_compacted);
  EXPECT_EQ(round.horizon_start_ms, clock_.NowMs() - options_.dedup_horizon_ms);
}

TEST_F(MaintenanceTest, AWindowIsRetiredTheRetentionAfterItsFilesAndOnlyThatWindow) {
  const WindowDay day = WindowCalendar{}.DayOf(clock_.NowMs());
  Apply({Tap("TAP1"), Tap("TAP2"), {SourceTopic::kTaps, "not a flatbuffer"}});
  clock_.Advance(kDayMs);
  Apply({Tap("TAP3"), {SourceTopic::kTaps, "garbage"}});
  CloseAndMarkFilesWritten(day);
  const int64_t written_at_ms = clock_.NowMs();
  ASSERT_EQ(Count(Table::kApplied, day), 1u);
  ASSERT_GT(Count(Table::kLines, day), 0u);
  ASSERT_EQ(ExceptionsOf(day), 1u);

  clock_.Set(written_at_ms + options_.window_retention_ms - 1);
  MaintenanceRound round;
  ASSERT_TRUE(maintenance_->RunOnce(round).ok());
  EXPECT_TRUE(round.windows_retiring.empty());

  clock_.Set(written_at_ms + options_.window_retention_ms);
  ASSERT_TRUE(maintenance_->RunOnce(round = {}).ok());
  EXPECT_EQ(round.windows_retiring, std::vector<WindowDay>{day});
  EXPECT_EQ(round.exception_keys_submitted, 1u);
  const Batch& retiring = Apply({});
  EXPECT_EQ(retiring.windows_retired, std::vector<WindowDay>{day});
  EXPECT_EQ(Count(Table::kApplied, day), 0u);
  EXPECT_EQ(Count(Table::kLines, day), 0u);
  EXPECT_EQ(ExceptionsOf(day), 0u);
  // The next day's window keeps everything; the retired one keeps its counters and record.
  EXPECT_EQ(Count(Table::kApplied, day + 1), 1u);
  EXPECT_EQ(ExceptionsOf(day + 1), 1u);
  const WindowInfo& info = ledger_->windows()->at(day);
  EXPECT_EQ(info.retired_at_ms, clock_.NowMs());
  EXPECT_EQ(info.counters.applied_count, 2);
  absl::StatusOr<std::optional<WindowRecord>> record = ReadWindowRecord(*store_, day);
  ASSERT_TRUE(record.ok() && record->has_value());
  EXPECT_EQ((*record)->retired_at_ms, clock_.NowMs());
  EXPECT_EQ((*record)->files_written_at_ms, written_at_ms);

  // Then its ranges are compacted, once, and nothing more is asked of the ledger.
  ASSERT_TRUE(maintenance_->RunOnce(round = {}).ok());
  EXPECT_EQ(round.windows_compacted, std::vector<WindowDay>{day});
  EXPECT_TRUE(round.windows_retiring.empty());
  ASSERT_TRUE(maintenance_->RunOnce(round = {}).ok());
  EXPECT_TRUE(round.windows_compacted.empty());
}

TEST_F(MaintenanceTest, ManyExceptionsAreRetiredOverSeveralRounds) {
  options_.exception_keys_per_command_max = 2;
  MakeMaintenance();  // again, with the smaller command
  const WindowDay day = WindowCalendar{}.DayOf(clock_.NowMs());
  Apply({Tap("TAP1"), {SourceTopic::kTaps, "bad 1"}, {SourceTopic::kTaps, "bad 2"}, {SourceTopic::kTaps, "bad 3"},
         {SourceTopic::kTaps, "bad 4"}, {SourceTopic::kTaps, "bad 5"}});
  clock_.Advance(kDayMs);
  CloseAndMarkFilesWritten(day);
  clock_.Advance(options_.window_retention_ms);
  for (const size_t left : {3u, 1u, 0u}) {
    MaintenanceRound round;
    ASSERT_TRUE(maintenance_->RunOnce(round).ok());
    EXPECT_EQ(round.exception_keys_submitted, 2u - (left == 0 ? 1u : 0u));
    Apply({});
    EXPECT_EQ(ExceptionsOf(day), left);
  }
  MaintenanceRound round;
  ASSERT_TRUE(maintenance_->RunOnce(round).ok());
  EXPECT_TRUE(round.windows_retiring.empty());
}

TEST_F(MaintenanceTest, AnOpenOrClosedWindowIsNeverRetired) {
  const WindowDay day = WindowCalendar{}.DayOf(clock_.NowMs());
  Apply({Tap("TAP1")});
  Apply({}, {WindowCommand(WindowCommand::Kind::kRetire, day)});
  EXPECT_EQ(Count(Table::kApplied, day), 1u);
  Apply({}, {WindowCommand(WindowCommand::Kind::kClose, day)});
  clock_.Advance(options_.window_retention_ms * 2);
  MaintenanceRound round;
  ASSERT_TRUE(maintenance_->RunOnce(round).ok());
  EXPECT_TRUE(round.windows_retiring.empty());  // closed, files not written
  Apply({}, {WindowCommand(WindowCommand::Kind::kRetire, day)});
  EXPECT_EQ(Count(Table::kApplied, day), 1u);
}

}  // namespace
}  // namespace yrd
