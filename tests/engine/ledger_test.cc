// Ledger: dedup, refunds and cancellations against their originals, window routing of late
// events, and the offsets committed with the state, all on a real RocksDB store in a temporary
// directory. Batches are built by hand and decoded as the pipeline's ingest stage does.
#include "engine/ledger/ledger.h"
#include "engine/merge/store_union.h"

#include <algorithm>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/escaping.h"
#include "adapters/crypto/hmac.h"
#include "adapters/crypto/payload_sealer.h"
#include "adapters/crypto/sha256.h"
#include "adapters/rocksdb/rocks_store.h"
#include "engine/base/strings.h"
#include "engine/batch/batch.h"
#include "engine/changelog/changelog.h"
#include "engine/clearing/clearing_files.h"
#include "engine/readers/store_readers.h"
#include "engine/store/records.h"
#include "gtest/gtest.h"
#include "tests/support/events.h"
#include "tests/support/store_answers.h"

namespace yrd {
namespace {

using test::CancellationFields;
using test::StoreAnswers;
using test::RefundFields;
using test::SettlementFields;
using test::TapFields;

constexpr int64_t kMinuteMs = 60'000;
// 2026-11-27 and its neighbours (days since 1970-01-01).
constexpr WindowDay kNov26 = 20783;
constexpr WindowDay kNov27 = 20784;
constexpr WindowDay kNov28 = 20785;

// The lines the default test events net into (see tests/support/events.h).
constexpr std::string_view kMetroLine = "T|B3301|330000|M_SH_METRO|B3101|310000|metro";
constexpr std::string_view kSettlementLine = "M|310100|310000|H_HZ_1|330100|330000";

struct Message {
  SourceTopic topic;
  std::string payload;
};
Message TapMessage(const TapFields& tap) { return {SourceTopic::kTaps, test::TapBytes(tap)}; }
Message RefundMessage(const RefundFields& refund) { return {SourceTopic::kTaps, test::RefundBytes(refund)}; }
Message SettlementMessage(const SettlementFields& s) { return {SourceTopic::kMedical, test::SettlementBytes(s)}; }
Message CancellationMessage(const CancellationFields& c) {
  return {SourceTopic::kMedical, test::CancellationBytes(c)};
}

// An exception record with its strings copied out of the store.
struct StoredException {
  Reason reason;
  SourceTopic topic;
  int32_t partition;
  int64_t offset;
  WindowDay window;
  Digest message_digest;
  Digest first_digest;
  std::string txn_id;
  std::string detail;
  std::string message_key;
};

// An applied record with its strings copied out of the store.
struct StoredApplied {
  EventKind kind;
  bool late;
  int64_t amount_fen;
  std::string txn_id;
  std::string card_masked;
};

class LedgerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto hmac = HmacSha256::Create("ledger-test-key-not-a-secret");
    ASSERT_TRUE(hmac.ok());
    tokenizer_ = *std::move(hmac);
    auto sealer = AesGcmSealer::Create(std::string(kSealKeyBytes, 'k'));
    ASSERT_TRUE(sealer.ok());
    sealer_ = *std::move(sealer);
    Open();
  }

  void Open(RocksStoreOptions options = {}) {
    auto store = RocksStore::Open(store_path_, std::move(options));
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    ledger_ = std::make_unique<Ledger>(*store_, LedgerOptions{
                                                    .calendar = calendar_,
                                                    .keep_dead_letters = keep_dead_letters_,
                                                    .dead_letter_sealer = sealer_.get(),
                                                    .dead_letter_payload = dead_letter_payload_,
                                                    .recent_txn_records_max = recent_txn_records_max_,
                                                    .lines_checkpoint_applied_max = lines_checkpoint_applied_max_,
                                                    .changelog = changelog_,
                                                });
    const absl::Status status = ledger_->Load(now_ms_);
    ASSERT_TRUE(status.ok()) << status;
  }

  // Closes the store as a stopped daemon would and opens it again with a fresh Ledger.
  void Reopen(RocksStoreOptions options = {}) {
    ledger_.reset();
    store_.reset();
    Open(std::move(options));
  }

  // Adds the messages to a new batch at the offsets that follow the last ones of `partition`,
  // decodes the batch and applies it. The batch lives until the end of the test.
  Batch& Apply(const std::vector<Message>& messages, int32_t partition = 0,
               std::vector<WindowCommand> commands = {}) {
    Batch& batch = Decoded(messages, partition, std::move(commands));
    const absl::Status status = ledger_->Apply(batch, result_);
    EXPECT_TRUE(status.ok()) << status;
    return batch;
  }

  // The first half of Apply only, as the pipeline's ledger thread does it.
  Batch& Prepare(const std::vector<Message>& messages, int32_t partition = 0) {
    Batch& batch = Decoded(messages, partition, {});
    const absl::Status status = ledger_->Prepare(batch);
    EXPECT_TRUE(status.ok()) << status;
    return batch;
  }

  Batch& Decoded(const std::vector<Message>& messages, int32_t partition, std::vector<WindowCommand> commands) {
    batches_.push_back(std::make_unique<Batch>(BatchLimits{.messages_max = 64, .arena_bytes_max = 1 << 20}));
    Batch& batch = *batches_.back();
    batch.now_ms = now_ms_;
    batch.registry = registry_;
    batch.commands = std::move(commands);
    for (const Message& message : messages) {
      int64_t& next = next_offsets_[{message.topic, partition}];
      batch.Add(message.topic, partition, next++, "key", message.payload, limits_.message_bytes_max);
    }
    test::DecodeBatch(batch, *tokenizer_, limits_);
    return batch;
  }

  // Another instance, on a store of its own, applies `messages` of `partition` with `changelog`.
  void ConsumeElsewhere(const std::vector<Message>& messages, int32_t partition, ChangelogSink& changelog) {
    auto other_store = RocksStore::Open(dir_.path() + "/other", {});
    ASSERT_TRUE(other_store.ok()) << other_store.status();
    Ledger other(**other_store, LedgerOptions{.calendar = calendar_, .changelog = &changelog});
    ASSERT_TRUE(other.Load(now_ms_).ok());
    BatchResult result;
    ASSERT_TRUE(other.Apply(Decoded(messages, partition, {}), result).ok());
  }

  TapFields Tap(std::string txn_id = "TAP1", int64_t amount_fen = 300) const {
    TapFields tap;
    tap.txn_id = std::move(txn_id);
    tap.amount_fen = amount_fen;
    tap.occurred_at_ms = now_ms_ - kMinuteMs;
    return tap;
  }
  RefundFields Refund(std::string txn_id, int64_t amount_fen, std::string original = "TAP1") const {
    RefundFields refund;
    refund.txn_id = std::move(txn_id);
    refund.original_txn_id = std::move(original);
    refund.amount_fen = amount_fen;
    refund.occurred_at_ms = now_ms_ - kMinuteMs / 2;
    return refund;
  }
  SettlementFields Settlement(std::string txn_id = "SETTLE1") const {
    SettlementFields settlement;
    settlement.txn_id = std::move(txn_id);
    settlement.occurred_at_ms = now_ms_ - kMinuteMs;
    return settlement;
  }
  CancellationFields Cancellation(std::string txn_id, std::string original = "SETTLE1") const {
    CancellationFields cancellation;
    cancellation.txn_id = std::move(txn_id);
    cancellation.original_txn_id = std::move(original);
    cancellation.occurred_at_ms = now_ms_ - kMinuteMs / 2;
    return cancellation;
  }

  // ---- reading the store back --------------------------------------------------------------

  // A line as committed (kLines as of the last checkpoint, completed from kApplied).
  LineTotals Line(WindowDay day, std::string_view line_key) {
    absl::StatusOr<std::vector<WindowLine>> lines = ReadWindowLines(*store_, day);
    EXPECT_TRUE(lines.ok()) << lines.status();
    if (!lines.ok()) return {};
    for (const WindowLine& line : *lines) {
      if (line.line_key == line_key) return line.totals;
    }
    return {};
  }

  // A line as kLines alone holds it (the last checkpoint).
  std::optional<LineTotals> CheckpointedLine(WindowDay day, std::string_view line_key) {
    std::string key, value;
    LineStoreKey(day, line_key, key);
    bool found = false;
    EXPECT_TRUE(store_->Get(Table::kLines, key, value, found).ok());
    if (!found) return std::nullopt;
    LineTotals totals;
    EXPECT_TRUE(DecodeLineTotals(value, totals));
    return totals;
  }

  // The stored record of `txn_id`, wherever it is (recent or sorted into kTxn); `storage`
  // keeps the bytes its views point into.
  std::optional<TxnRecord> Txn(Family family, std::string_view txn_id, std::string& storage) {
    absl::StatusOr<std::vector<OwnedTxnRecord>> found = FindTxnRecordsOfId(*store_, family, txn_id);
    EXPECT_TRUE(found.ok()) << found.status();
    if (!found.ok() || found->empty()) return std::nullopt;
    EXPECT_EQ(found->size(), 1u) << txn_id << " is held by more than one partition";
    storage = found->front().value;
    TxnRecord record;
    EXPECT_TRUE(DecodeTxnRecord(storage, LoadedLineIds(), record));
    return record;
  }

  // The store's line ids as of now; kept for the test, as records read with them view them.
  const LineIds& LoadedLineIds() {
    absl::StatusOr<LineIds> ids = LoadLineIds(*store_);
    EXPECT_TRUE(ids.ok()) << ids.status();
    return loaded_line_ids_.emplace_back(ids.ok() ? *std::move(ids) : LineIds());
  }

  // Summed over the owners.
  WindowCounters Counters(WindowDay day) {
    absl::StatusOr<WindowCounters> counters = ReadWindowCounters(*store_, day);
    EXPECT_TRUE(counters.ok()) << counters.status();
    return counters.ok() ? *counters : WindowCounters{};
  }

  std::vector<StoredException> Exceptions() {
    std::vector<StoredException> out;
    const absl::Status status = store_->Scan(Table::kExceptions, {}, {}, [&](std::string_view k, std::string_view v) {
      ExceptionRecord record;
      EXPECT_TRUE(DecodeExceptionRecord(k, v, record));
      out.push_back({record.reason, record.topic, record.partition, record.offset, record.window,
                     record.message_digest, record.first_digest, std::string(record.txn_id),
                     std::string(record.detail), std::string(record.message_key)});
      return true;
    });
    EXPECT_TRUE(status.ok()) << status;
    return out;
  }

  std::vector<StoredApplied> Applied(WindowDay day) {
    std::vector<StoredApplied> out;
    const absl::Status status =
        VisitAppliedRecords(*store_, day, LoadedLineIds(), [&](SourcePartition, const AppliedRecord& record) {
          out.push_back({record.kind, record.late, record.amount_fen, std::string(record.txn_id),
                         std::string(record.card_masked)});
          return true;
        });
    EXPECT_TRUE(status.ok()) << status;
    return out;
  }

  test::TempDir dir_;
  std::string store_path_ = dir_.path() + "/state";
  std::deque<LineIds> loaded_line_ids_;
  WindowCalendar calendar_;
  DecodeLimits limits_;
  int64_t now_ms_ = test::ChinaTimeMs(2026, 11, 27, 10, 0);
  std::shared_ptr<const Registry> registry_ = test::TestRegistry();
  std::unique_ptr<HmacSha256> tokenizer_;
  std::unique_ptr<RocksStore> store_;
  std::unique_ptr<Ledger> ledger_;
  std::map<std::pair<SourceTopic, int32_t>, int64_t> next_offsets_;
  std::vector<std::unique_ptr<Batch>> batches_;
  BatchResult result_;
  bool keep_dead_letters_ = false;
  DeadLetterPayload dead_letter_payload_ = DeadLetterPayload::kOriginal;
  std::unique_ptr<AesGcmSealer> sealer_;
  uint64_t recent_txn_records_max_ = LedgerOptions{}.recent_txn_records_max;
  uint64_t lines_checkpoint_applied_max_ = LedgerOptions{}.lines_checkpoint_applied_max;
  ChangelogSink* changelog_ = nullptr;
};

// ---- taps --------------------------------------------------------------------------------------

TEST_F(LedgerTest, TapIsAppliedToItsWindowAndNetsIntoItsLine) {
  const Batch& batch = Apply({TapMessage(Tap())});
  const MessageSlot& slot = batch.slots()[0];
  EXPECT_EQ(slot.fate, Fate::kApplied);
  EXPECT_EQ(slot.window, kNov27);
  EXPECT_FALSE(slot.late);
  EXPECT_EQ(result_.applied_count, 1u);
  EXPECT_EQ(result_.rejected_count, 0u);

  const LineTotals line = Line(kNov27, kMetroLine);
  EXPECT_EQ(line.count, 1);
  EXPECT_EQ(line.amount_fen, 300);
  EXPECT_EQ(line.reversal_count, 0);

  std::string storage;
  const std::optional<TxnRecord> record = Txn(Family::kTaps, "TAP1", storage);
  ASSERT_TRUE(record.has_value());
  EXPECT_EQ(record->kind, EventKind::kTap);
  EXPECT_EQ(record->window, kNov27);
  EXPECT_EQ(record->amount_fen, 300);
  EXPECT_EQ(record->refunded_fen, 0);
  EXPECT_EQ(record->offset, 0);
  EXPECT_EQ(record->digest, slot.event.digest);
  EXPECT_EQ(record->line_key, kMetroLine);

  EXPECT_EQ(Counters(kNov27).applied_count, 1);
  const std::vector<StoredApplied> applied = Applied(kNov27);
  ASSERT_EQ(applied.size(), 1u);
  EXPECT_EQ(applied[0].txn_id, "TAP1");
  EXPECT_EQ(applied[0].amount_fen, 300);
  EXPECT_EQ(applied[0].card_masked, "621700*********0123");
  EXPECT_TRUE(Exceptions().empty());
}

TEST_F(LedgerTest, FreeEntryOfAmountZeroIsApplied) {
  TapFields entry = Tap("ENTRY1", 0);
  entry.merchant_id = test::kMuseumNanjing;
  const Batch& batch = Apply({TapMessage(entry)});
  EXPECT_EQ(batch.slots()[0].fate, Fate::kApplied);
  const LineTotals line = Line(kNov27, "T|B3301|330000|M_NJ_MUSEUM|B3201|320000|museum");
  EXPECT_EQ(line.count, 1);
  EXPECT_EQ(line.amount_fen, 0);
  EXPECT_EQ(Counters(kNov27).applied_count, 1);
}

TEST_F(LedgerTest, CardNumberIsNeverWrittenToTheStore) {
  Apply({TapMessage(Tap()), SettlementMessage(Settlement())});
  ASSERT_EQ(result_.applied_count, 2u);
  // Every byte the store holds on disk so far (the write-ahead log is synced on each commit).
  std::string everything;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(store_path_)) {
    if (!entry.is_regular_file()) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    everything.append(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  // The search can see what was written: the terminal id and the masked card are there.
  ASSERT_NE(everything.find("GATE_07"), std::string::npos);
  ASSERT_NE(everything.find("621700*********0123"), std::string::npos);
  EXPECT_EQ(everything.find(test::kCardNumber19), std::string::npos);
}

// ---- dedup -------------------------------------------------------------------------------------

TEST_F(LedgerTest, ExactDuplicateIsCountedNotNetted) {
  Apply({TapMessage(Tap())});
  const Batch& again = Apply({TapMessage(Tap())});
  EXPECT_EQ(again.slots()[0].fate, Fate::kExactDuplicate);
  EXPECT_EQ(result_.exact_duplicate_count, 1u);
  EXPECT_EQ(result_.applied_count, 0u);
  const LineTotals line = Line(kNov27, kMetroLine);
  EXPECT_EQ(line.count, 1);
  EXPECT_EQ(line.amount_fen, 300);
  const WindowCounters counters = Counters(kNov27);
  EXPECT_EQ(counters.applied_count, 1);
  EXPECT_EQ(counters.exact_duplicate_count, 1);
  std::string storage;
  EXPECT_EQ(Txn(Family::kTaps, "TAP1", storage)->duplicate_count, 1);
  EXPECT_TRUE(Exceptions().empty());
  EXPECT_EQ(Applied(kNov27).size(), 1u);
}

TEST_F(LedgerTest, ExactDuplicateWithinOneBatchIsCountedNotNetted) {
  const Batch& batch = Apply({TapMessage(Tap()), TapMessage(Tap()), TapMessage(Tap())});
  EXPECT_EQ(batch.slots()[0].fate, Fate::kApplied);
  EXPECT_EQ(batch.slots()[1].fate, Fate::kExactDuplicate);
  EXPECT_EQ(batch.slots()[2].fate, Fate::kExactDuplicate);
  EXPECT_EQ(Line(kNov27, kMetroLine).amount_fen, 300);
  EXPECT_EQ(Counters(kNov27).exact_duplicate_count, 2);
}

TEST_F(LedgerTest, SameIdWithDifferentContentIsAConflictAndTheFirstStands) {
  const Batch& first = Apply({TapMessage(Tap("TAP1", 300))});
  const Digest first_digest = first.slots()[0].event.digest;
  const Batch& second = Apply({TapMessage(Tap("TAP1", 500))});
  const MessageSlot& slot = second.slots()[0];
  EXPECT_EQ(slot.fate, Fate::kRejected);
  EXPECT_EQ(slot.reason, Reason::kDuplicateConflict);
  EXPECT_EQ(slot.first_digest, first_digest);
  EXPECT_NE(slot.event.digest, first_digest);

  EXPECT_EQ(Line(kNov27, kMetroLine).amount_fen, 300);
  std::string storage;
  const std::optional<TxnRecord> record = Txn(Family::kTaps, "TAP1", storage);
  ASSERT_TRUE(record.has_value());
  EXPECT_EQ(record->amount_fen, 300);
  EXPECT_EQ(record->digest, first_digest);

  const std::vector<StoredException> exceptions = Exceptions();
  ASSERT_EQ(exceptions.size(), 1u);
  EXPECT_EQ(exceptions[0].reason, Reason::kDuplicateConflict);
  EXPECT_EQ(exceptions[0].txn_id, "TAP1");
  EXPECT_EQ(exceptions[0].offset, 1);
  EXPECT_EQ(exceptions[0].first_digest, first_digest);
  EXPECT_EQ(exceptions[0].message_digest, slot.event.digest);
  EXPECT_EQ(Counters(kNov27).exception_counts[static_cast<size_t>(Reason::kDuplicateConflict)], 1);
}

TEST_F(LedgerTest, ConflictWithinOneBatchLeavesTheFirstStanding) {
  const Batch& batch = Apply({TapMessage(Tap("TAP1", 300)), TapMessage(Tap("TAP1", 500))});
  EXPECT_EQ(batch.slots()[0].fate, Fate::kApplied);
  EXPECT_EQ(batch.slots()[1].reason, Reason::kDuplicateConflict);
  EXPECT_EQ(batch.slots()[1].first_digest, batch.slots()[0].event.digest);
  EXPECT_EQ(Line(kNov27, kMetroLine).amount_fen, 300);
}

TEST_F(LedgerTest, SameIdInTheTwoFamiliesIsTwoTransactions) {
  const Batch& batch = Apply({TapMessage(Tap("X1")), SettlementMessage(Settlement("X1"))});
  EXPECT_EQ(batch.slots()[0].fate, Fate::kApplied);
  EXPECT_EQ(batch.slots()[1].fate, Fate::kApplied);
}

// ---- refunds -----------------------------------------------------------------------------------

// Each source partition owns its transactions (docs/processing.md, the keying contract): the same
// id from another partition is another transaction, and the report finds both.
TEST_F(LedgerTest, TheSameIdFromTwoPartitionsIsTwoTransactions) {
  EXPECT_EQ(Apply({TapMessage(Tap("TAP1", 300))}, 0).slots()[0].fate, Fate::kApplied);
  EXPECT_EQ(Apply({TapMessage(Tap("TAP1", 300))}, 1).slots()[0].fate, Fate::kApplied);
  EXPECT_EQ(Apply({TapMessage(Tap("TAP1", 300))}, 1).slots()[0].fate, Fate::kExactDuplicate);
  EXPECT_EQ(Line(kNov27, kMetroLine).count, 2);
  absl::StatusOr<std::vector<OwnedTxnRecord>> found = FindTxnRecordsOfId(*store_, Family::kTaps, "TAP1");
  ASSERT_TRUE(found.ok()) << found.status();
  ASSERT_EQ(found->size(), 2u);
  EXPECT_EQ((*found)[0].owner, (SourcePartition{SourceTopic::kTaps, 0}));
  EXPECT_EQ((*found)[1].owner, (SourcePartition{SourceTopic::kTaps, 1}));
}

TEST_F(LedgerTest, RefundDownToExactlyZeroIsApplied) {
  Apply({TapMessage(Tap("TAP1", 300))});
  const Batch& batch = Apply({RefundMessage(Refund("R1", 200)), RefundMessage(Refund("R2", 100))});
  EXPECT_EQ(batch.slots()[0].fate, Fate::kApplied);
  EXPECT_EQ(batch.slots()[1].fate, Fate::kApplied);
  const LineTotals line = Line(kNov27, kMetroLine);
  EXPECT_EQ(line.count, 1);
  EXPECT_EQ(line.amount_fen, 300);
  EXPECT_EQ(line.reversal_count, 2);
  EXPECT_EQ(line.reversed_amount_fen, 300);
  std::string storage;
  EXPECT_EQ(Txn(Family::kTaps, "TAP1", storage)->refunded_fen, 300);
  const std::optional<TxnRecord> refund = Txn(Family::kTaps, "R2", storage);
  ASSERT_TRUE(refund.has_value());
  EXPECT_EQ(refund->kind, EventKind::kTapRefund);
  EXPECT_EQ(refund->original_txn_id, "TAP1");
}

TEST_F(LedgerTest, RefundOneFenPastTheOriginalIsRejected) {
  Apply({TapMessage(Tap("TAP1", 300)), RefundMessage(Refund("R1", 300))});
  const Batch& batch = Apply({RefundMessage(Refund("R2", 1))});
  EXPECT_EQ(batch.slots()[0].reason, Reason::kRefundExceedsOriginal);
  const LineTotals line = Line(kNov27, kMetroLine);
  EXPECT_EQ(line.reversal_count, 1);
  EXPECT_EQ(line.reversed_amount_fen, 300);
  std::string storage;
  EXPECT_EQ(Txn(Family::kTaps, "TAP1", storage)->refunded_fen, 300);
  EXPECT_FALSE(Txn(Family::kTaps, "R2", storage).has_value());
}

TEST_F(LedgerTest, SingleRefundLargerThanTheTapIsRejected) {
  const Batch& batch = Apply({TapMessage(Tap("TAP1", 300)), RefundMessage(Refund("R1", 301))});
  EXPECT_EQ(batch.slots()[1].reason, Reason::kRefundExceedsOriginal);
  EXPECT_EQ(Line(kNov27, kMetroLine).reversed_amount_fen, 0);
}

TEST_F(LedgerTest, RefundOfUnknownIdIsUnknownOriginal) {
  const Batch& batch = Apply({RefundMessage(Refund("R1", 100, "NEVER_SEEN"))});
  EXPECT_EQ(batch.slots()[0].reason, Reason::kUnknownOriginal);
  const std::vector<StoredException> exceptions = Exceptions();
  ASSERT_EQ(exceptions.size(), 1u);
  EXPECT_EQ(exceptions[0].reason, Reason::kUnknownOriginal);
  EXPECT_EQ(exceptions[0].txn_id, "R1");
}

TEST_F(LedgerTest, RefundBeforeItsTapInTheSameBatchIsUnknownOriginal) {
  const Batch& batch = Apply({RefundMessage(Refund("R1", 100)), TapMessage(Tap())});
  EXPECT_EQ(batch.slots()[0].reason, Reason::kUnknownOriginal);
  EXPECT_EQ(batch.slots()[1].fate, Fate::kApplied);
}

TEST_F(LedgerTest, RefundOfARefundIsUnknownOriginal) {
  const Batch& batch =
      Apply({TapMessage(Tap()), RefundMessage(Refund("R1", 100)), RefundMessage(Refund("R2", 50, "R1"))});
  EXPECT_EQ(batch.slots()[1].fate, Fate::kApplied);
  EXPECT_EQ(batch.slots()[2].reason, Reason::kUnknownOriginal);
}

TEST_F(LedgerTest, RedeliveredRefundIsAnExactDuplicateNotASecondRefund) {
  Apply({TapMessage(Tap("TAP1", 300)), RefundMessage(Refund("R1", 200))});
  const Batch& batch = Apply({RefundMessage(Refund("R1", 200))});
  EXPECT_EQ(batch.slots()[0].fate, Fate::kExactDuplicate);
  EXPECT_EQ(Line(kNov27, kMetroLine).reversed_amount_fen, 200);
}

// ---- medical -----------------------------------------------------------------------------------

TEST_F(LedgerTest, SettlementAndItsCancellationNetIntoOneLine) {
  Apply({SettlementMessage(Settlement())});
  const Batch& batch = Apply({CancellationMessage(Cancellation("C1"))});
  EXPECT_EQ(batch.slots()[0].fate, Fate::kApplied);
  const LineTotals line = Line(kNov27, kSettlementLine);
  EXPECT_EQ(line.count, 1);
  EXPECT_EQ(line.amount_fen, 10'000);
  EXPECT_EQ(line.fund_pay_fen, 6'000);
  EXPECT_EQ(line.account_pay_fen, 1'000);
  EXPECT_EQ(line.cash_pay_fen, 3'000);
  EXPECT_EQ(line.reversal_count, 1);
  EXPECT_EQ(line.reversed_amount_fen, 10'000);
  EXPECT_EQ(line.reversed_fund_pay_fen, 6'000);
  EXPECT_EQ(line.reversed_account_pay_fen, 1'000);
  EXPECT_EQ(line.reversed_cash_pay_fen, 3'000);
  std::string storage;
  EXPECT_TRUE(Txn(Family::kMedical, "SETTLE1", storage)->cancelled);
}

TEST_F(LedgerTest, SecondCancellationIsAlreadyCancelled) {
  Apply({SettlementMessage(Settlement()), CancellationMessage(Cancellation("C1"))});
  const Batch& batch = Apply({CancellationMessage(Cancellation("C2"))});
  EXPECT_EQ(batch.slots()[0].reason, Reason::kAlreadyCancelled);
  EXPECT_EQ(Line(kNov27, kSettlementLine).reversal_count, 1);
  EXPECT_EQ(Counters(kNov27).exception_counts[static_cast<size_t>(Reason::kAlreadyCancelled)], 1);
}

TEST_F(LedgerTest, RedeliveredCancellationIsAnExactDuplicateNotAlreadyCancelled) {
  Apply({SettlementMessage(Settlement()), CancellationMessage(Cancellation("C1"))});
  const Batch& batch = Apply({CancellationMessage(Cancellation("C1"))});
  EXPECT_EQ(batch.slots()[0].fate, Fate::kExactDuplicate);
}

TEST_F(LedgerTest, CancellationOfATapIdIsUnknownOriginal) {
  const Batch& batch = Apply({TapMessage(Tap("TAP1")), CancellationMessage(Cancellation("C1", "TAP1"))});
  EXPECT_EQ(batch.slots()[1].reason, Reason::kUnknownOriginal);
}

// ---- windows -----------------------------------------------------------------------------------

TEST_F(LedgerTest, EventDuringTheGracePeriodGoesToItsOwnWindow) {
  TapFields tap = Tap();
  tap.occurred_at_ms = test::ChinaTimeMs(2026, 11, 27, 23, 59, 59, 999);
  now_ms_ = calendar_.CloseInstantMs(kNov27) - 1;
  const Batch& batch = Apply({TapMessage(tap)});
  EXPECT_EQ(batch.slots()[0].window, kNov27);
  EXPECT_FALSE(batch.slots()[0].late);
}

TEST_F(LedgerTest, LateEventGoesToTheOldestOpenWindowMarkedLate) {
  TapFields tap = Tap();
  tap.occurred_at_ms = test::ChinaTimeMs(2026, 11, 27, 23, 59, 59, 999);
  now_ms_ = calendar_.CloseInstantMs(kNov27);  // the instant the window closes by the clock
  const Batch& batch = Apply({TapMessage(tap)});
  const MessageSlot& slot = batch.slots()[0];
  EXPECT_EQ(slot.fate, Fate::kApplied);
  EXPECT_EQ(slot.window, kNov28);
  EXPECT_TRUE(slot.late);
  EXPECT_EQ(result_.late_count, 1u);

  EXPECT_EQ(Line(kNov28, kMetroLine).amount_fen, 300);
  EXPECT_EQ(Line(kNov27, kMetroLine).count, 0);
  const WindowCounters counters = Counters(kNov28);
  EXPECT_EQ(counters.applied_count, 1);
  EXPECT_EQ(counters.late_count, 1);
  std::string storage;
  const std::optional<TxnRecord> record = Txn(Family::kTaps, "TAP1", storage);
  ASSERT_TRUE(record.has_value());
  EXPECT_TRUE(record->late);
  EXPECT_EQ(record->window, kNov28);
  EXPECT_EQ(record->occurred_at_ms, tap.occurred_at_ms);  // its original date is kept
  const std::vector<StoredApplied> applied = Applied(kNov28);
  ASSERT_EQ(applied.size(), 1u);
  EXPECT_TRUE(applied[0].late);
}

TEST_F(LedgerTest, EventOfAWindowClosedByTheOperatorIsLate) {
  // An operator closed 27 November ahead of its cutoff (the command survives a restart).
  Apply({TapMessage(Tap("TAP0"))});
  const Batch& close = Apply({}, 0, {WindowCommand{WindowCommand::Kind::kClose, kNov27}});
  EXPECT_EQ(close.windows_closed, std::vector<WindowDay>{kNov27});
  Reopen();

  const Batch& batch = Apply({TapMessage(Tap())});
  EXPECT_EQ(batch.slots()[0].window, kNov28);
  EXPECT_TRUE(batch.slots()[0].late);
}

TEST_F(LedgerTest, MalformedMessageIsCountedInTheOldestOpenWindow) {
  // At 10:00 on 27 November the 26th has closed; the oldest open window is the 27th.
  const Batch& batch = Apply({{SourceTopic::kTaps, "not a flatbuffer"}});
  EXPECT_EQ(batch.slots()[0].reason, Reason::kMalformed);
  EXPECT_EQ(batch.slots()[0].window, kNov27);
  EXPECT_EQ(Counters(kNov27).exception_counts[static_cast<size_t>(Reason::kMalformed)], 1);
  const std::vector<StoredException> exceptions = Exceptions();
  ASSERT_EQ(exceptions.size(), 1u);
  EXPECT_EQ(exceptions[0].txn_id, "");
  EXPECT_EQ(exceptions[0].message_digest, DigestOfBytes("not a flatbuffer"));
}

// The dead-letter copies the store keeps, in key order, with their payloads opened.
std::vector<std::pair<DeadLetterCopy, std::string>> StoredDeadLetters(StateStore& store, PayloadSealer& sealer) {
  std::vector<std::pair<DeadLetterCopy, std::string>> out;
  const absl::Status s = store.Scan(Table::kMeta, kDeadLetterKeyPrefix, {}, [&](std::string_view k, std::string_view v) {
    DeadLetterCopy copy;
    bool sealed = false;
    EXPECT_TRUE(DecodeDeadLetterCopy(k, v, copy, sealed));
    EXPECT_TRUE(sealed);
    std::string payload;
    EXPECT_TRUE(sealer.Open(copy.payload, payload));
    if (!payload.empty()) {
      EXPECT_EQ(std::string(v).find(payload), std::string::npos) << "the payload is in clear in the store";
    }
    out.emplace_back(copy, payload);
    out.back().first.payload = {};
    out.back().first.key = {};
    out.back().first.detail = {};
    return true;
  });
  EXPECT_TRUE(s.ok()) << s;
  return out;
}

TEST_F(LedgerTest, RejectedMessageCopyIsKeptUntilItsDeliveryIsReported) {
  keep_dead_letters_ = true;
  Reopen();
  Apply({TapMessage(Tap("TAP1")), {SourceTopic::kTaps, "not a flatbuffer"}});
  Apply({TapMessage(Tap("TAP1", 999))});  // a conflict, in a second commit
  auto stored = StoredDeadLetters(*store_, *sealer_);
  ASSERT_EQ(stored.size(), 2u);
  EXPECT_EQ(stored[0].first.commit_sequence, 1u);
  EXPECT_EQ(stored[0].first.reason, Reason::kMalformed);
  EXPECT_EQ(stored[0].first.offset, 1);
  EXPECT_EQ(stored[0].second, "not a flatbuffer");
  EXPECT_EQ(stored[1].first.commit_sequence, 2u);
  EXPECT_EQ(stored[1].first.reason, Reason::kDuplicateConflict);
  EXPECT_EQ(stored[1].first.partition, 0);
  EXPECT_EQ(stored[1].first.offset, 2);
  EXPECT_EQ(stored[1].first.window, kNov27);

  // They survive a restart (the daemon produces them again then).
  Reopen();
  EXPECT_EQ(StoredDeadLetters(*store_, *sealer_).size(), 2u);

  // Delivered through commit 1: that copy goes with the next write, the other stays.
  Batch& next = Decoded({TapMessage(Tap("TAP2"))}, 0, {});
  next.dead_letters_delivered_through = 1;
  ASSERT_TRUE(ledger_->Apply(next, result_).ok());
  stored = StoredDeadLetters(*store_, *sealer_);
  ASSERT_EQ(stored.size(), 1u);
  EXPECT_EQ(stored[0].first.commit_sequence, 2u);

  // A batch with no message still carries the news: nothing else to write is not idle here.
  const uint64_t sequence = ledger_->commit_sequence();
  Batch& empty = Decoded({}, 0, {});
  empty.dead_letters_delivered_through = sequence;
  ASSERT_TRUE(ledger_->Apply(empty, result_).ok());
  EXPECT_EQ(ledger_->commit_sequence(), sequence + 1);
  EXPECT_TRUE(StoredDeadLetters(*store_, *sealer_).empty());
}

TEST_F(LedgerTest, NoCopyIsKeptWithoutADeadLetterTopic) {
  Apply({{SourceTopic::kTaps, "not a flatbuffer"}});
  EXPECT_EQ(Exceptions().size(), 1u);
  EXPECT_TRUE(StoredDeadLetters(*store_, *sealer_).empty());
}

TEST_F(LedgerTest, DuringGraceTheOldestOpenWindowIsYesterday) {
  now_ms_ = test::ChinaTimeMs(2026, 11, 27, 0, 5);
  EXPECT_EQ(ledger_->OldestOpenWindow(now_ms_), kNov26);
  EXPECT_EQ(ledger_->OldestOpenWindow(calendar_.CloseInstantMs(kNov26)), kNov27);
}


// ---- totals that would pass int64 --------------------------------------------------------------

TEST_F(LedgerTest, TapsPastThePartitionGrossAreRejectedAndEverythingAroundThemApplied) {
  limits_.amount_fen_max = kPartitionWindowGrossFenMax;
  const Batch& batch = Apply({TapMessage(Tap("TAP1", 1'000)),
                              TapMessage(Tap("TAP2", kPartitionWindowGrossFenMax - 1'000)),  // exactly the bound
                              TapMessage(Tap("TAP3", 1)),                                     // one fen past it
                              TapMessage(Tap("TAP4", 0)),                                     // a free entry
                              TapMessage(Tap("TAP5", kPartitionWindowGrossFenMax))});
  EXPECT_EQ(batch.slots()[0].fate, Fate::kApplied);
  EXPECT_EQ(batch.slots()[1].fate, Fate::kApplied);
  EXPECT_EQ(batch.slots()[2].fate, Fate::kRejected);
  EXPECT_EQ(batch.slots()[2].reason, Reason::kAmountInvalid);
  EXPECT_EQ(batch.slots()[3].fate, Fate::kApplied);
  EXPECT_EQ(batch.slots()[4].reason, Reason::kAmountInvalid);
  // Another partition has a gross of its own: the same line takes its tap.
  const Batch& other = Apply({TapMessage(Tap("TAP6", 500))}, 1);
  EXPECT_EQ(other.slots()[0].fate, Fate::kApplied);
  EXPECT_EQ(Line(kNov27, kMetroLine).amount_fen, kPartitionWindowGrossFenMax + 500);
  EXPECT_EQ(Line(kNov27, kMetroLine).count, 4);
  const std::vector<StoredException> exceptions = Exceptions();
  ASSERT_EQ(exceptions.size(), 2u);
  EXPECT_EQ(exceptions[0].txn_id, "TAP3");
  EXPECT_EQ(exceptions[0].detail,
            "amount_fen 1: would take this source partition's gross of the window past 2^48 - 1 fen");
  EXPECT_EQ(Counters(kNov27).exception_counts[static_cast<size_t>(Reason::kAmountInvalid)], 2);
  // A refund moves money too, and counts: the partition is full.
  const Batch& refund = Apply({RefundMessage(Refund("REFUND1", 1, "TAP1"))});
  EXPECT_EQ(refund.slots()[0].reason, Reason::kAmountInvalid);
}

TEST_F(LedgerTest, SettlementsAndTheirCancellationsCountInThePartitionGross) {
  limits_.amount_fen_max = kPartitionWindowGrossFenMax;
  SettlementFields big = Settlement("SETTLE1");
  big.total_fen = kPartitionWindowGrossFenMax / 2 + 1;
  big.fund_pay_fen = big.total_fen;
  big.account_pay_fen = 0;
  big.cash_pay_fen = 0;
  SettlementFields second = big;
  second.txn_id = "SETTLE2";
  second.total_fen = second.fund_pay_fen = kPartitionWindowGrossFenMax / 2 - 1;
  const Batch& batch = Apply({SettlementMessage(big), SettlementMessage(second),
                              CancellationMessage(Cancellation("CANCEL1", "SETTLE1"))},
                             2);
  EXPECT_EQ(batch.slots()[0].fate, Fate::kApplied);
  EXPECT_EQ(batch.slots()[1].fate, Fate::kApplied);  // the two fill the bound exactly
  ASSERT_EQ(batch.slots()[2].fate, Fate::kRejected);
  EXPECT_EQ(batch.slots()[2].reason, Reason::kAmountInvalid);
  EXPECT_EQ(Exceptions()[0].detail.substr(0, 26), "original_txn_id 'SETTLE1' ");
  // The rejected cancellation changed nothing: the settlement stands, not cancelled.
  std::string storage;
  const std::optional<TxnRecord> settlement = Txn(Family::kMedical, "SETTLE1", storage);
  ASSERT_TRUE(settlement.has_value());
  EXPECT_FALSE(settlement->cancelled);
  EXPECT_EQ(Line(kNov27, kSettlementLine).reversal_count, 0);
}

TEST_F(LedgerTest, ThePartitionGrossSurvivesARestart) {
  limits_.amount_fen_max = kPartitionWindowGrossFenMax;
  Apply({TapMessage(Tap("TAP1", kPartitionWindowGrossFenMax))});
  Reopen();
  const Batch& batch = Apply({TapMessage(Tap("TAP2", 1)), TapMessage(Tap("TAP3", 0))});
  EXPECT_EQ(batch.slots()[0].reason, Reason::kAmountInvalid);
  EXPECT_EQ(batch.slots()[1].fate, Fate::kApplied);
}

TEST_F(LedgerTest, ThePartitionGrossIsStoredPerPartitionAndGoesWithTheClose) {
  Apply({TapMessage(Tap("TAP1", 300)), TapMessage(Tap("TAP2", 200))}, 0);
  Apply({TapMessage(Tap("TAP3", 50)), SettlementMessage(Settlement("SETTLE1"))}, 1);
  std::map<std::tuple<WindowDay, SourceTopic, int32_t>, int64_t> stored;
  auto read_gross = [&] {
    stored.clear();
    EXPECT_TRUE(store_
                    ->Scan(Table::kMeta, kGrossKeyPrefix, {},
                           [&](std::string_view key, std::string_view value) {
                             PartitionGross gross;
                             EXPECT_TRUE(DecodeGross(key, value, gross));
                             stored[{gross.day, gross.topic, gross.partition}] = gross.gross_fen;
                             return true;
                           })
                    .ok());
  };
  read_gross();
  EXPECT_EQ(stored, (std::map<std::tuple<WindowDay, SourceTopic, int32_t>, int64_t>{
                        {{kNov27, SourceTopic::kTaps, 0}, 500},
                        {{kNov27, SourceTopic::kTaps, 1}, 50},
                        {{kNov27, SourceTopic::kMedical, 1}, 10'000}}));
  Apply({}, 0, {WindowCommand{WindowCommand::Kind::kClose, kNov27}});
  read_gross();
  EXPECT_TRUE(stored.empty());
}

TEST_F(LedgerTest, AStoreWithoutGrossRecordsRebuildsThemFromTheAppliedRecords) {
  limits_.amount_fen_max = kPartitionWindowGrossFenMax;
  Apply({TapMessage(Tap("TAP1", kPartitionWindowGrossFenMax - 1))});
  // As an earlier version left it: the gross records gone.
  std::string begin(kGrossKeyPrefix), end(kGrossKeyPrefix);
  end.push_back('\xff');
  std::unique_ptr<StateWriteBatch> write = store_->NewWriteBatch();
  write->DeleteRange(Table::kMeta, begin, end);
  ASSERT_TRUE(store_->Write(*write).ok());
  Reopen();
  const Batch& batch = Apply({TapMessage(Tap("TAP2", 1)), TapMessage(Tap("TAP3", 1))});
  EXPECT_EQ(batch.slots()[0].fate, Fate::kApplied);  // exactly the bound
  EXPECT_EQ(batch.slots()[1].reason, Reason::kAmountInvalid);
}

TEST_F(LedgerTest, AWindowFullToTheBoundClosesAndItsFilesCheck) {
  limits_.amount_fen_max = kPartitionWindowGrossFenMax;
  for (int32_t partition = 0; partition < 4; ++partition) {
    Apply({TapMessage(Tap(Cat("TAP", partition), kPartitionWindowGrossFenMax)),
           TapMessage(Tap(Cat("MORE", partition), 1))},
          partition);
  }
  Apply({}, 0, {WindowCommand{WindowCommand::Kind::kClose, kNov27}});
  const absl::StatusOr<ClosedWindow> window = LoadClosedWindow(*store_, kNov27, *registry_);
  ASSERT_TRUE(window.ok()) << window.status();
  const absl::StatusOr<std::vector<std::string>> violations = CheckWindowInvariants(*store_, *window);
  ASSERT_TRUE(violations.ok()) << violations.status();
  EXPECT_TRUE(violations->empty());
  MemoryFileSet files;
  const Digests digests{.new_sha256 = [] { return std::unique_ptr<Sha256Stream>(*Sha256::Create()); },
                        .hmac_hex = [](std::string_view) { return std::string(64, '0'); }};
  EXPECT_TRUE(RenderWindowFiles(*store_, *window, files, digests).ok());
  EXPECT_TRUE(files.committed());
}

// ---- what a rejection says ---------------------------------------------------------------------

TEST_F(LedgerTest, EveryRejectionOfTheLedgerSaysWhatWasWrong) {
  Apply({TapMessage(Tap("TAP1", 300)), SettlementMessage(Settlement("SETTLE1"))});
  Apply({TapMessage(Tap("TAP1", 301)), RefundMessage(Refund("R1", 1, "NO_SUCH_TAP")),
         RefundMessage(Refund("R2", 301, "TAP1")), CancellationMessage(Cancellation("C1", "SETTLE1")),
         CancellationMessage(Cancellation("C2", "SETTLE1"))});
  std::vector<std::string> details;
  for (const StoredException& exception : Exceptions()) details.push_back(exception.detail);
  EXPECT_EQ(details, (std::vector<std::string>{
                         "txn_id 'TAP1' (4 bytes): was applied before with other content",
                         "original_txn_id 'NO_SUCH_TAP' (11 bytes): names no applied tap",
                         "amount_fen 301: would take the refunds of the original tap past its amount",
                         "original_txn_id 'SETTLE1' (7 bytes): was cancelled before",
                     }));
}

TEST_F(LedgerTest, AnExceptionKeepsTheMessageKeyAndTheDecodersDetail) {
  TapFields tap = Tap();
  tap.txn_id = std::string(65, 'x');
  Apply({TapMessage(tap)});
  const std::vector<StoredException> exceptions = Exceptions();
  ASSERT_EQ(exceptions.size(), 1u);
  EXPECT_EQ(exceptions[0].txn_id, "");  // not a valid id, so not kept as one
  EXPECT_EQ(exceptions[0].message_key, "key");
  EXPECT_EQ(exceptions[0].detail.substr(0, 8), "txn_id '");
}

// ---- dead-letter copies hold no card number --------------------------------------------------

TEST_F(LedgerTest, ARedactedCopyMasksTheCardNumberAndAMalformedOneIsWithheld) {
  keep_dead_letters_ = true;
  dead_letter_payload_ = DeadLetterPayload::kRedacted;
  Reopen();
  Apply({TapMessage(Tap("TAP1")), TapMessage(Tap("TAP1", 999)), {SourceTopic::kTaps, "not a flatbuffer"}});
  const auto stored = StoredDeadLetters(*store_, *sealer_);
  ASSERT_EQ(stored.size(), 2u);
  EXPECT_EQ(stored[0].first.payload_form, DeadLetterPayload::kRedacted);
  EXPECT_EQ(stored[0].second.find(test::kCardNumber19), std::string::npos);
  EXPECT_NE(stored[0].second.find("621700*********0123"), std::string::npos);
  // Still a valid envelope, but not a message to apply as it is: its card number is masked.
  DecodeContext context{.registry = registry_.get(), .tokenizer = tokenizer_.get(), .limits = limits_, .now_ms = now_ms_};
  DecodedEvent event;
  EXPECT_EQ(Decode(SourceTopic::kTaps, stored[0].second, context, event), Reason::kInvalidField);
  EXPECT_EQ(event.rejection.field, "card_no");
  EXPECT_EQ(stored[1].first.payload_form, DeadLetterPayload::kWithheld);
  EXPECT_EQ(stored[1].second, "");
}

TEST_F(LedgerTest, NoCardNumberIsInTheStoreInClear) {
  keep_dead_letters_ = true;
  Reopen();
  // Original copies: the card number is in the message, sealed in the store.
  Apply({TapMessage(Tap("TAP1")), TapMessage(Tap("TAP1", 999)), SettlementMessage(Settlement("SETTLE1")),
         SettlementMessage([&] {
           SettlementFields conflict = Settlement("SETTLE1");
           conflict.cash_pay_fen += 1;
           conflict.total_fen += 1;
           return conflict;
         }())});
  EXPECT_EQ(StoredDeadLetters(*store_, *sealer_).size(), 2u);
  for (size_t table = 0; table < kTableCount; ++table) {
    const absl::Status status =
        store_->Scan(static_cast<Table>(table), {}, {}, [&](std::string_view key, std::string_view value) {
          EXPECT_EQ(key.find(test::kCardNumber19), std::string_view::npos) << "table " << table;
          EXPECT_EQ(value.find(test::kCardNumber19), std::string_view::npos) << "table " << table;
          return true;
        });
    EXPECT_TRUE(status.ok()) << status;
  }
}

// ---- offsets and restart -----------------------------------------------------------------------

TEST_F(LedgerTest, OffsetsAdvancePastAppliedAndRejectedMessages) {
  Apply({TapMessage(Tap("TAP1")), {SourceTopic::kTaps, "garbage"}, TapMessage(Tap("TAP2"))}, 0);
  Apply({SettlementMessage(Settlement())}, 3);
  const PartitionOffsets& offsets = ledger_->offsets();
  ASSERT_EQ(offsets.size(), 2u);
  EXPECT_EQ(offsets.at({SourceTopic::kTaps, 0}), 3);
  EXPECT_EQ(offsets.at({SourceTopic::kMedical, 3}), 1);
  EXPECT_EQ(ledger_->commit_sequence(), 2u);
}

TEST_F(LedgerTest, OffsetsAndStateSurviveAReopenTogether) {
  Apply({TapMessage(Tap("TAP1", 300)), TapMessage(Tap("TAP2", 200)), RefundMessage(Refund("R1", 100))}, 0);
  Apply({SettlementMessage(Settlement())}, 3);
  const PartitionOffsets before = ledger_->offsets();
  const uint64_t sequence_before = ledger_->commit_sequence();

  Reopen();
  EXPECT_EQ(ledger_->offsets(), before);
  EXPECT_EQ(ledger_->commit_sequence(), sequence_before);

  // The reopened ledger gives the same answers as the one that never stopped.
  const Batch& batch = Apply({TapMessage(Tap("TAP1", 300)), TapMessage(Tap("TAP2", 999)),
                              RefundMessage(Refund("R2", 201)), RefundMessage(Refund("R3", 200)),
                              TapMessage(Tap("TAP3", 50))},
                             0);
  EXPECT_EQ(batch.slots()[0].fate, Fate::kExactDuplicate);
  EXPECT_EQ(batch.slots()[1].reason, Reason::kDuplicateConflict);
  EXPECT_EQ(batch.slots()[2].reason, Reason::kRefundExceedsOriginal);
  EXPECT_EQ(batch.slots()[3].fate, Fate::kApplied);
  EXPECT_EQ(batch.slots()[4].fate, Fate::kApplied);
  EXPECT_EQ(ledger_->offsets().at({SourceTopic::kTaps, 0}), 8);
  EXPECT_EQ(ledger_->commit_sequence(), sequence_before + 1);

  // Lines continue from the stored totals instead of starting again.
  const LineTotals line = Line(kNov27, kMetroLine);
  EXPECT_EQ(line.count, 3);
  EXPECT_EQ(line.amount_fen, 550);
  EXPECT_EQ(line.reversal_count, 2);
  EXPECT_EQ(line.reversed_amount_fen, 300);
  const WindowCounters counters = Counters(kNov27);
  EXPECT_EQ(counters.applied_count, 6);
  EXPECT_EQ(counters.exact_duplicate_count, 1);
  EXPECT_EQ(counters.exception_counts[static_cast<size_t>(Reason::kDuplicateConflict)], 1);
  EXPECT_EQ(counters.exception_counts[static_cast<size_t>(Reason::kRefundExceedsOriginal)], 1);

  // A cancellation after the reopen still finds its settlement, once.
  const Batch& medical =
      Apply({CancellationMessage(Cancellation("C1")), CancellationMessage(Cancellation("C2"))}, 3);
  EXPECT_EQ(medical.slots()[0].fate, Fate::kApplied);
  EXPECT_EQ(medical.slots()[1].reason, Reason::kAlreadyCancelled);
}

// The pipeline prepares a batch while the one before it is still being written: the second
// batch must be decided exactly as if the first were already in the store.
TEST_F(LedgerTest, PreparedBatchIsDecidedAsIfThePreviousOneWereCommitted) {
  Batch& first = Prepare({TapMessage(Tap("TAP1", 300)), SettlementMessage(Settlement())});
  Batch& second = Prepare({TapMessage(Tap("TAP1", 300)), TapMessage(Tap("TAP1", 500)),
                           RefundMessage(Refund("R1", 100)), RefundMessage(Refund("R2", 201)),
                           CancellationMessage(Cancellation("C1"))});
  std::string storage;
  EXPECT_FALSE(Txn(Family::kTaps, "TAP1", storage).has_value()) << "nothing is stored before Commit";
  EXPECT_EQ(ledger_->commit_sequence(), 0u);

  ASSERT_TRUE(ledger_->Commit(first).ok());
  EXPECT_EQ(ledger_->commit_sequence(), 1u);
  ASSERT_TRUE(ledger_->Commit(second).ok());
  EXPECT_EQ(ledger_->commit_sequence(), 2u);
  EXPECT_EQ(second.slots()[0].fate, Fate::kExactDuplicate);
  EXPECT_EQ(second.slots()[1].reason, Reason::kDuplicateConflict);
  EXPECT_EQ(second.slots()[2].fate, Fate::kApplied);
  EXPECT_EQ(second.slots()[3].reason, Reason::kRefundExceedsOriginal);
  EXPECT_EQ(second.slots()[4].fate, Fate::kApplied);
  EXPECT_EQ(second.ledger_result.applied_count, 2u);
  EXPECT_EQ(second.ledger_result.exact_duplicate_count, 1u);
  EXPECT_EQ(second.ledger_result.rejected_count, 2u);

  const std::optional<TxnRecord> tap = Txn(Family::kTaps, "TAP1", storage);
  ASSERT_TRUE(tap.has_value());
  EXPECT_EQ(tap->refunded_fen, 100);
  EXPECT_EQ(tap->duplicate_count, 1);
  const LineTotals line = Line(kNov27, kMetroLine);
  EXPECT_EQ(line.count, 1);
  EXPECT_EQ(line.amount_fen, 300);
  EXPECT_EQ(line.reversed_amount_fen, 100);
  EXPECT_EQ(ledger_->offsets().at({SourceTopic::kTaps, 0}), 5);  // taps at offsets 0 to 4
  EXPECT_EQ(ledger_->offsets().at({SourceTopic::kMedical, 0}), 2);

  // After a reopen the same store gives the same answers.
  Reopen();
  const Batch& third = Apply({RefundMessage(Refund("R3", 200)), CancellationMessage(Cancellation("C2"))});
  EXPECT_EQ(third.slots()[0].fate, Fate::kApplied);
  EXPECT_EQ(third.slots()[1].reason, Reason::kAlreadyCancelled);
}

// A failed write leaves the ledger failed: the batch prepared after it is not written either,
// though it was built on the failed one, and nothing of either is in the store.
TEST_F(LedgerTest, BatchPreparedBehindAFailedCommitIsNotWritten) {
  recent_txn_records_max_ = 1;  // the first batch's records go to the sort thread at once
  RocksStoreOptions no_room;
  no_room.min_free_bytes = uint64_t{1} << 62;  // every write finds the disk "full"
  Reopen(std::move(no_room));
  Batch& first = Prepare({TapMessage(Tap("TAP1", 300))});
  Batch& second = Prepare({RefundMessage(Refund("R1", 100))});
  EXPECT_EQ(ledger_->Commit(first).code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(ledger_->failed());
  EXPECT_EQ(ledger_->Commit(second).code(), absl::StatusCode::kUnavailable);
  Batch& third = Decoded({TapMessage(Tap("TAP2", 300))}, 0, {});
  EXPECT_EQ(ledger_->Prepare(third).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ledger_->Commit(third).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ledger_->commit_sequence(), 0u);
  // The sort of the first batch's records waited for its commit, which failed: nothing of it
  // reached kTxn.
  EXPECT_EQ(ledger_->AwaitRecentTxnSort().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ledger_->recent_txn_sorts(), 0u);

  Reopen();
  std::string storage;
  EXPECT_FALSE(Txn(Family::kTaps, "TAP1", storage).has_value());
  EXPECT_FALSE(Txn(Family::kTaps, "R1", storage).has_value());
  EXPECT_TRUE(ledger_->offsets().empty());
  EXPECT_EQ(ledger_->commit_sequence(), 0u);
}

// ---- recent transaction records ------------------------------------------------------------

// The kRecentTxn values under their commit sequences.
std::vector<uint64_t> RecentTxnCommits(StateStore& store) {
  std::vector<uint64_t> sequences;
  const absl::Status status = store.Scan(Table::kRecentTxn, {}, {}, [&](std::string_view key, std::string_view) {
    sequences.push_back(ReadBigEndian64(key.data()));
    return true;
  });
  EXPECT_TRUE(status.ok()) << status;
  return sequences;
}

bool InSortedTable(StateStore& store, Family family, std::string_view txn_id) {
  std::string key, value;
  TxnKey({TopicOf(family), 0}, family, txn_id, key);
  bool found = false;
  EXPECT_TRUE(store.Get(Table::kTxn, key, value, found).ok());
  return found;
}

TEST_F(LedgerTest, RecordsSortedIntoTheStoreStillDecideDuplicatesAndRefunds) {
  recent_txn_records_max_ = 3;
  Reopen();
  Apply({TapMessage(Tap("TAP1", 300)), TapMessage(Tap("TAP2", 500))});
  EXPECT_EQ(ledger_->recent_txn_records(), 2u);
  Apply({SettlementMessage(Settlement("SETTLE1"))});  // the third record: the sort starts
  ASSERT_TRUE(ledger_->AwaitRecentTxnSort().ok());
  EXPECT_EQ(ledger_->recent_txn_sorts(), 1u);
  EXPECT_EQ(ledger_->recent_txn_records(), 0u);
  EXPECT_TRUE(InSortedTable(*store_, Family::kTaps, "TAP1"));
  EXPECT_TRUE(InSortedTable(*store_, Family::kMedical, "SETTLE1"));
  // Sorted, but their kRecentTxn values go only with the next write.
  EXPECT_EQ(RecentTxnCommits(*store_), (std::vector<uint64_t>{1, 2}));

  const Batch& batch = Apply({TapMessage(Tap("TAP1", 300)), TapMessage(Tap("TAP2", 999)),
                              RefundMessage(Refund("R1", 100, "TAP1")), CancellationMessage(Cancellation("C1"))});
  EXPECT_EQ(batch.slots()[0].fate, Fate::kExactDuplicate);
  EXPECT_EQ(batch.slots()[1].reason, Reason::kDuplicateConflict);
  EXPECT_EQ(batch.slots()[2].fate, Fate::kApplied);
  EXPECT_EQ(batch.slots()[3].fate, Fate::kApplied);
  EXPECT_EQ(RecentTxnCommits(*store_), (std::vector<uint64_t>{3}));
  std::string storage;
  // The newer record (in kRecentTxn) wins over the sorted one.
  EXPECT_EQ(Txn(Family::kTaps, "TAP1", storage)->refunded_fen, 100);
  EXPECT_EQ(Txn(Family::kTaps, "TAP1", storage)->duplicate_count, 1);
  EXPECT_TRUE(Txn(Family::kMedical, "SETTLE1", storage)->cancelled);

  // A second refund sees the first, whether the record is found recent or after a restart.
  Reopen();
  const Batch& more = Apply({RefundMessage(Refund("R2", 201, "TAP1")), RefundMessage(Refund("R3", 200, "TAP1"))});
  EXPECT_EQ(more.slots()[0].reason, Reason::kRefundExceedsOriginal);
  EXPECT_EQ(more.slots()[1].fate, Fate::kApplied);
  EXPECT_EQ(Txn(Family::kTaps, "TAP1", storage)->refunded_fen, 300);
  const LineTotals line = Line(kNov27, kMetroLine);
  EXPECT_EQ(line.count, 2);
  EXPECT_EQ(line.amount_fen, 800);
  EXPECT_EQ(line.reversal_count, 2);
  EXPECT_EQ(line.reversed_amount_fen, 300);
}

// A store written before line numbers holds each record's line as text. A refund of such a tap
// nets into that line, and the line's new number is stored with the refund, so its applied
// record reads back after a restart.
TEST_F(LedgerTest, RecordWithTheLineKeyInTextIsRefundedIntoItsLine) {
  constexpr std::string_view kEarlierLine = "T|B3301|330000|M_EARLIER|B3101|310000|bus";
  TxnRecord earlier;
  earlier.kind = EventKind::kTap;
  earlier.window = kNov27;
  earlier.occurred_at_ms = now_ms_ - kMinuteMs;
  earlier.amount_fen = 500;
  earlier.line_key = kEarlierLine;
  std::string key;
  TxnKey({SourceTopic::kTaps, 0}, Family::kTaps, "TAPEARLIER", key);
  std::unique_ptr<StateWriteBatch> write = store_->NewWriteBatch();
  write->Put(Table::kTxn, key, test::Version2TxnRecord(earlier));
  ASSERT_TRUE(store_->Write(*write).ok());
  Apply({TapMessage(Tap("TAP1"))});  // the first commit checkpoints the lines; the refund is replayed

  EXPECT_EQ(Apply({RefundMessage(Refund("R1", 200, "TAPEARLIER"))}).slots()[0].fate, Fate::kApplied);
  Reopen();
  const LineTotals line = Line(kNov27, kEarlierLine);
  EXPECT_EQ(line.reversal_count, 1);
  EXPECT_EQ(line.reversed_amount_fen, 200);
  std::string storage;
  const std::optional<TxnRecord> record = Txn(Family::kTaps, "TAPEARLIER", storage);
  ASSERT_TRUE(record.has_value());
  EXPECT_EQ(record->refunded_fen, 200);
  EXPECT_EQ(record->line_key, kEarlierLine);
  EXPECT_NE(record->line_id, kNoLineId);
  EXPECT_EQ(Apply({RefundMessage(Refund("R2", 301, "TAPEARLIER"))}).slots()[0].reason,
            Reason::kRefundExceedsOriginal);
}

// A registry that moves a merchant to another bank moves its new taps to another line; taps
// under the earlier registry, before and after, stay on theirs.
TEST_F(LedgerTest, RegistryThatMovesAMerchantMovesItsNewTapsToAnotherLine) {
  Apply({TapMessage(Tap("TAP1", 300))});
  std::string toml = test::TestRegistryToml();
  const size_t merchant = toml.find("merchant_id = \"M_SH_METRO\"");
  ASSERT_NE(merchant, std::string::npos);
  const size_t bank = toml.find("bank_id = \"B3101\"", merchant);
  ASSERT_NE(bank, std::string::npos);
  toml.replace(bank, std::string_view("bank_id = \"B3101\"").size(), "bank_id = \"B3201\"");
  absl::StatusOr<std::shared_ptr<const Registry>> moved = Registry::FromToml(toml, "moved.toml");
  ASSERT_TRUE(moved.ok()) << moved.status();
  const std::shared_ptr<const Registry> earlier = registry_;
  registry_ = *moved;
  Apply({TapMessage(Tap("TAP2", 500))});
  registry_ = earlier;
  Apply({TapMessage(Tap("TAP3", 700))});
  constexpr std::string_view kMovedLine = "T|B3301|330000|M_SH_METRO|B3201|310000|metro";
  EXPECT_EQ(Line(kNov27, kMetroLine).amount_fen, 1000);
  EXPECT_EQ(Line(kNov27, kMovedLine).amount_fen, 500);
  Reopen();
  EXPECT_EQ(Line(kNov27, kMetroLine).amount_fen, 1000);
  EXPECT_EQ(Line(kNov27, kMovedLine).amount_fen, 500);
}

// A line number given to a batch that was never committed is not stored; after the reopen the
// numbers are given again, to whichever line comes first, and every record reads back.
TEST_F(LedgerTest, LineNumbersOfABatchNeverCommittedAreGivenAgain) {
  RocksStoreOptions no_room;
  no_room.min_free_bytes = uint64_t{1} << 62;  // every write is refused
  Reopen(std::move(no_room));
  Batch& first = Prepare({TapMessage(Tap("TAP1", 300))});
  Batch& second = Prepare({SettlementMessage(Settlement("SETTLE1"))});
  EXPECT_FALSE(ledger_->Commit(first).ok());
  EXPECT_FALSE(ledger_->Commit(second).ok());
  Reopen();
  EXPECT_EQ(LoadedLineIds().size(), 0u);
  Apply({SettlementMessage(Settlement("SETTLE1"))});
  Apply({TapMessage(Tap("TAP1", 300)), RefundMessage(Refund("R1", 100))});
  Reopen();
  const LineIds& ids = LoadedLineIds();
  EXPECT_EQ(ids.size(), 2u);
  EXPECT_EQ(ids.KeyOf(0), kSettlementLine);
  EXPECT_EQ(ids.KeyOf(1), kMetroLine);
  EXPECT_EQ(Line(kNov27, kMetroLine).reversed_amount_fen, 100);
  EXPECT_EQ(Line(kNov27, kSettlementLine).count, 1);
}

// Applied records of a store written before line numbers hold the line key as text; a start
// after such a commit replays them into their lines, and the close checkpoints those whole.
TEST_F(LedgerTest, AppliedRecordsWithTheLineKeyInTextAreReplayedAtStart) {
  Apply({TapMessage(Tap("TAP1", 300))});  // the first commit checkpoints the lines
  AppliedRecord earlier;
  earlier.kind = EventKind::kTap;
  earlier.occurred_at_ms = now_ms_ - kMinuteMs;
  earlier.partition = 1;
  earlier.offset = 99;
  earlier.amount_fen = 700;
  earlier.txn_id = "TAPV2";
  earlier.line_key = kMetroLine;
  earlier.terminal_id = "TERM";
  earlier.card_masked = "6217**1234";
  {
    // As the earlier version would have committed it, by partition 1 of yrd.taps.
    std::string key, value;
    std::unique_ptr<StateWriteBatch> write = store_->NewWriteBatch();
    AppliedKey(kNov27, {SourceTopic::kTaps, 1}, 100, key);
    write->Put(Table::kApplied, key, test::Version2AppliedBlob(earlier));
    OffsetKey(SourceTopic::kTaps, 1, key);
    AppendBigEndian64(value, 100);
    write->Put(Table::kMeta, key, value);
    ASSERT_TRUE(store_->Write(*write).ok());
  }
  Reopen();
  EXPECT_EQ(Line(kNov27, kMetroLine).amount_fen, 1000);
  Apply({TapMessage(Tap("TAP2", 5))});
  now_ms_ = test::ChinaTimeMs(2026, 11, 28, 1, 0);  // past the cutoff and the grace of the 27th
  EXPECT_EQ(Apply({}).windows_closed, std::vector<WindowDay>{kNov27});
  EXPECT_EQ(CheckpointedLine(kNov27, kMetroLine)->amount_fen, 1005);
  EXPECT_EQ(Applied(kNov27).size(), 3u);
}

// Line numbers are given once per line key, also across restarts: a store whose numbers
// repeated a key would not load.
TEST_F(LedgerTest, LineNumbersAreGivenOncePerLineAcrossRestarts) {
  Apply({TapMessage(Tap("TAP1")), SettlementMessage(Settlement("SETTLE1"))});
  Reopen();
  Apply({TapMessage(Tap("TAP2")), SettlementMessage(Settlement("SETTLE2")), RefundMessage(Refund("R1", 100))});
  const absl::StatusOr<LineIds> ids = LoadLineIds(*store_);
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_EQ(ids->size(), 2u);
  EXPECT_EQ(ids->KeyOf(0), kMetroLine);
  const LineTotals line = Line(kNov27, kMetroLine);
  EXPECT_EQ(line.count, 2);
  EXPECT_EQ(line.reversal_count, 1);
}

// The sort waits for the commits whose records it stores: a ledger stopped before its batch was
// committed leaves nothing of that batch in kTxn.
TEST_F(LedgerTest, SortNeverStoresRecordsOfABatchNotCommitted) {
  recent_txn_records_max_ = 1;
  Reopen();
  Prepare({TapMessage(Tap("TAP1", 300))});  // the sort starts and waits for this commit
  EXPECT_EQ(ledger_->recent_txn_records(), 1u);
  ledger_.reset();  // never committed
  EXPECT_FALSE(InSortedTable(*store_, Family::kTaps, "TAP1"));
  EXPECT_EQ(RecentTxnCommits(*store_), std::vector<uint64_t>{});
  Reopen();
  const Batch& batch = Apply({TapMessage(Tap("TAP1", 300))});
  EXPECT_EQ(batch.slots()[0].fate, Fate::kApplied);
}

// A failed sort is taken once; asking again reports the failure again.
TEST_F(LedgerTest, AFailedSortIsReportedEachTimeItIsAsked) {
  recent_txn_records_max_ = 1;
  RocksStoreOptions no_room;
  no_room.min_free_bytes = uint64_t{1} << 62;
  Reopen(std::move(no_room));
  Batch& batch = Prepare({TapMessage(Tap("TAP1", 300))});
  EXPECT_EQ(ledger_->Commit(batch).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ledger_->AwaitRecentTxnSort().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ledger_->AwaitRecentTxnSort().code(), absl::StatusCode::kUnavailable);
}

TEST_F(LedgerTest, RecentRecordsAreReadBackAtStart) {
  Apply({TapMessage(Tap("TAP1", 300))});
  Apply({RefundMessage(Refund("R1", 100, "TAP1"))});
  EXPECT_EQ(RecentTxnCommits(*store_), (std::vector<uint64_t>{1, 2}));
  EXPECT_FALSE(InSortedTable(*store_, Family::kTaps, "TAP1"));
  Reopen();
  EXPECT_EQ(ledger_->recent_txn_records(), 2u);
  const Batch& batch = Apply({TapMessage(Tap("TAP1", 300)), RefundMessage(Refund("R1", 100, "TAP1")),
                              RefundMessage(Refund("R2", 201, "TAP1"))});
  EXPECT_EQ(batch.slots()[0].fate, Fate::kExactDuplicate);
  EXPECT_EQ(batch.slots()[1].fate, Fate::kExactDuplicate);
  EXPECT_EQ(batch.slots()[2].reason, Reason::kRefundExceedsOriginal);
}

// A stop (or crash) after the sort stored the records and before a write deleted their
// kRecentTxn values leaves them in both places, with the same content: nothing counts twice.
TEST_F(LedgerTest, RecordsBothSortedAndRecentAfterAStopCountOnce) {
  recent_txn_records_max_ = 1;
  Reopen();
  Apply({TapMessage(Tap("TAP1", 300))});
  ASSERT_TRUE(ledger_->AwaitRecentTxnSort().ok());
  EXPECT_TRUE(InSortedTable(*store_, Family::kTaps, "TAP1"));
  EXPECT_EQ(RecentTxnCommits(*store_), (std::vector<uint64_t>{1}));
  Reopen();
  EXPECT_EQ(ledger_->recent_txn_records(), 1u);
  const Batch& batch = Apply({TapMessage(Tap("TAP1", 300)), RefundMessage(Refund("R1", 300, "TAP1"))});
  EXPECT_EQ(batch.slots()[0].fate, Fate::kExactDuplicate);
  EXPECT_EQ(batch.slots()[1].fate, Fate::kApplied);
  // That batch started the next sort (of TAP1 again and R1); once it is done and a write
  // followed, kRecentTxn is empty and kTxn holds the newest records.
  ASSERT_TRUE(ledger_->AwaitRecentTxnSort().ok());
  const Batch& last = Apply({RefundMessage(Refund("R2", 1, "TAP1"))});
  EXPECT_EQ(last.slots()[0].reason, Reason::kRefundExceedsOriginal);
  EXPECT_EQ(RecentTxnCommits(*store_), std::vector<uint64_t>{});
  std::string value;
  std::string key;
  TxnKey({SourceTopic::kTaps, 0}, Family::kTaps, "TAP1", key);
  bool found = false;
  ASSERT_TRUE(store_->Get(Table::kTxn, key, value, found).ok());
  ASSERT_TRUE(found);
  TxnRecord sorted;
  ASSERT_TRUE(DecodeTxnRecord(value, LoadedLineIds(), sorted));
  EXPECT_EQ(sorted.refunded_fen, 300);
  EXPECT_EQ(sorted.duplicate_count, 1);
  EXPECT_EQ(Line(kNov27, kMetroLine).count, 1);
}

TEST_F(LedgerTest, RecentRecordsOlderThanTheAgeLimitAreSortedThoughFew) {
  Apply({TapMessage(Tap("TAP1", 300))});
  ASSERT_TRUE(ledger_->AwaitRecentTxnSort().ok());
  EXPECT_EQ(ledger_->recent_txn_sorts(), 0u);
  now_ms_ += Ledger::kRecentTxnAgeMaxMs;
  Apply({TapMessage(Tap("TAP2", 300))});
  ASSERT_TRUE(ledger_->AwaitRecentTxnSort().ok());
  EXPECT_EQ(ledger_->recent_txn_sorts(), 1u);
  EXPECT_TRUE(InSortedTable(*store_, Family::kTaps, "TAP1"));
  EXPECT_TRUE(InSortedTable(*store_, Family::kTaps, "TAP2"));
}

TEST_F(LedgerTest, AppliedRecordsOfEveryCommitSurviveAReopen) {
  Apply({TapMessage(Tap("TAP1"))});
  Reopen();
  Apply({TapMessage(Tap("TAP2"))});
  const std::vector<StoredApplied> applied = Applied(kNov27);
  ASSERT_EQ(applied.size(), 2u);
  EXPECT_EQ(applied[0].txn_id, "TAP1");
  EXPECT_EQ(applied[1].txn_id, "TAP2");
}

TEST_F(LedgerTest, OversizedMessageIsRejectedAndItsOffsetCommitted) {
  limits_.message_bytes_max = 16;
  const Batch& batch = Apply({TapMessage(Tap())});
  EXPECT_EQ(batch.slots()[0].reason, Reason::kOversized);
  EXPECT_EQ(ledger_->offsets().at({SourceTopic::kTaps, 0}), 1);
  const std::vector<StoredException> exceptions = Exceptions();
  ASSERT_EQ(exceptions.size(), 1u);
  EXPECT_EQ(exceptions[0].reason, Reason::kOversized);
  EXPECT_EQ(exceptions[0].offset, 0);
}

}  // namespace
}  // namespace yrd

namespace yrd {
namespace {

// ---- netting lines: checkpoints ----------------------------------------------------------------

TEST_F(LedgerTest, LinesBetweenCheckpointsAreCompletedFromTheAppliedRecords) {
  lines_checkpoint_applied_max_ = 3;
  Reopen();
  Apply({TapMessage(Tap("TAP1", 300))});  // a new store checkpoints with its first commit
  EXPECT_EQ(CheckpointedLine(kNov27, kMetroLine)->count, 1);
  Apply({TapMessage(Tap("TAP2", 500))});
  EXPECT_EQ(CheckpointedLine(kNov27, kMetroLine)->count, 1);  // not rewritten
  EXPECT_EQ(Line(kNov27, kMetroLine).count, 2);
  EXPECT_EQ(Line(kNov27, kMetroLine).amount_fen, 800);

  // A restart between checkpoints rebuilds the lines from the same records.
  Reopen();
  Apply({RefundMessage(Refund("R1", 100, "TAP1")), SettlementMessage(Settlement("SETTLE1"))});
  LineTotals expected_metro;
  expected_metro.count = 2;
  expected_metro.amount_fen = 800;
  expected_metro.reversal_count = 1;
  expected_metro.reversed_amount_fen = 100;
  EXPECT_EQ(Line(kNov27, kMetroLine), expected_metro);
  EXPECT_EQ(Line(kNov27, kSettlementLine).count, 1);
  // Four applied since the first checkpoint: that commit wrote the lines again.
  EXPECT_EQ(CheckpointedLine(kNov27, kMetroLine), expected_metro);
  EXPECT_EQ(CheckpointedLine(kNov27, kSettlementLine), Line(kNov27, kSettlementLine));

  Apply({CancellationMessage(Cancellation("C1"))});
  EXPECT_FALSE(CheckpointedLine(kNov27, kSettlementLine)->reversal_count);
  const LineTotals settlement = Line(kNov27, kSettlementLine);
  EXPECT_EQ(settlement.reversal_count, 1);
  EXPECT_EQ(settlement.reversed_amount_fen, settlement.amount_fen);
  EXPECT_EQ(settlement.reversed_fund_pay_fen, settlement.fund_pay_fen);
  EXPECT_EQ(settlement.reversed_cash_pay_fen, settlement.cash_pay_fen);
  Reopen();
  EXPECT_EQ(Line(kNov27, kSettlementLine), settlement);
  const Batch& again = Apply({CancellationMessage(Cancellation("C2"))});
  EXPECT_EQ(again.slots()[0].reason, Reason::kAlreadyCancelled);
  EXPECT_EQ(Line(kNov27, kSettlementLine), settlement);
}

// A line first netted after the last checkpoint is not in kLines at all: the reader adds it from
// the applied records, in key order with the others.
TEST_F(LedgerTest, LineNewSinceTheCheckpointIsReadInKeyOrder) {
  Apply({TapMessage(Tap("TAP1", 300))});  // checkpoint: the metro line
  Apply({SettlementMessage(Settlement("SETTLE1"))});
  EXPECT_FALSE(CheckpointedLine(kNov27, kSettlementLine).has_value());
  absl::StatusOr<std::vector<WindowLine>> lines = ReadWindowLines(*store_, kNov27);
  ASSERT_TRUE(lines.ok()) << lines.status();
  ASSERT_EQ(lines->size(), 2u);
  EXPECT_EQ((*lines)[0].line_key, kSettlementLine);  // "M|..." sorts before "T|..."
  EXPECT_EQ((*lines)[0].totals.count, 1);
  EXPECT_EQ((*lines)[1].line_key, kMetroLine);
  EXPECT_EQ((*lines)[1].totals.amount_fen, 300);
}

TEST_F(LedgerTest, ClosingAWindowCheckpointsItsLines) {
  Apply({TapMessage(Tap("TAP1", 300))});
  Apply({TapMessage(Tap("TAP2", 500))});
  EXPECT_EQ(CheckpointedLine(kNov27, kMetroLine)->count, 1);
  Apply({}, 0, {WindowCommand{WindowCommand::Kind::kClose, kNov27}});
  EXPECT_EQ(CheckpointedLine(kNov27, kMetroLine)->count, 2);
  EXPECT_EQ(CheckpointedLine(kNov27, kMetroLine)->amount_fen, 800);
}

// A closed window's lines leave memory with the commit that closes it; the open windows' stay
// and go on netting, also a refund whose tap was in the closed window.
TEST_F(LedgerTest, AClosedWindowsLinesLeaveMemory) {
  Apply({TapMessage(Tap("TAP1", 300)), SettlementMessage(Settlement("SETTLE1"))});
  EXPECT_EQ(ledger_->lines_held(), 2u);
  now_ms_ = test::ChinaTimeMs(2026, 11, 28, 1, 0);  // past the cutoff and the grace of the 27th
  const Batch& next = Apply({TapMessage(Tap("TAP2", 500))});
  EXPECT_EQ(next.windows_closed, std::vector<WindowDay>{kNov27});
  EXPECT_EQ(next.slots()[0].window, kNov28);
  EXPECT_EQ(ledger_->lines_held(), 1u);
  EXPECT_EQ(Apply({RefundMessage(Refund("R1", 100, "TAP1")), TapMessage(Tap("TAP3", 700))}).slots()[0].fate,
            Fate::kApplied);
  EXPECT_EQ(ledger_->lines_held(), 1u);
  EXPECT_EQ(Line(kNov27, kMetroLine).count, 1);
  EXPECT_EQ(Line(kNov27, kSettlementLine).count, 1);
  const LineTotals line = Line(kNov28, kMetroLine);
  EXPECT_EQ(line.count, 2);
  EXPECT_EQ(line.amount_fen, 1200);
  EXPECT_EQ(line.reversed_amount_fen, 100);
}

// A window in its grace period is still open: closing another window keeps its lines, which
// go on netting and are checkpointed whole when it closes.
TEST_F(LedgerTest, ClosingAWindowKeepsTheLinesOfAWindowInItsGrace) {
  now_ms_ = test::ChinaTimeMs(2026, 11, 28, 0, 5);  // the 27th is in its grace period
  TapFields yesterday = Tap("TAP1", 300);
  yesterday.occurred_at_ms = test::ChinaTimeMs(2026, 11, 27, 23, 50);
  TapFields today = Tap("TAP2", 400);
  today.occurred_at_ms = test::ChinaTimeMs(2026, 11, 28, 0, 1);
  Apply({TapMessage(yesterday), TapMessage(today)});
  const Batch& closing = Apply({}, 0, {WindowCommand{WindowCommand::Kind::kClose, kNov28}});
  EXPECT_EQ(closing.windows_closed, std::vector<WindowDay>{kNov28});
  EXPECT_EQ(ledger_->lines_held(), 1u);
  TapFields later = Tap("TAP3", 500);
  later.occurred_at_ms = test::ChinaTimeMs(2026, 11, 27, 23, 55);
  EXPECT_EQ(Apply({TapMessage(later), RefundMessage(Refund("R1", 100, "TAP2"))}).slots()[0].window, kNov27);
  now_ms_ = test::ChinaTimeMs(2026, 11, 28, 0, 30);  // the 27th closes with the next batch
  EXPECT_EQ(Apply({TapMessage(Tap("TAP4", 1))}).windows_closed, std::vector<WindowDay>{kNov27});
  EXPECT_EQ(CheckpointedLine(kNov27, kMetroLine), Line(kNov27, kMetroLine));
  EXPECT_EQ(Line(kNov27, kMetroLine).amount_fen, 800);
  EXPECT_EQ(Line(kNov27, kMetroLine).reversed_amount_fen, 100);
  EXPECT_EQ(Line(kNov28, kMetroLine).amount_fen, 400);
}

// A window the clock closes with the first batch after a restart still has lines changed
// since the last checkpoint: the restart rebuilt them, and the close writes them whole.
TEST_F(LedgerTest, WindowClosedByTheClockAfterARestartCheckpointsItsWholeLines) {
  Apply({TapMessage(Tap("TAP1", 300))});
  Apply({TapMessage(Tap("TAP2", 500))});
  EXPECT_EQ(CheckpointedLine(kNov27, kMetroLine)->count, 1);
  now_ms_ = test::ChinaTimeMs(2026, 11, 28, 1, 0);  // past the cutoff and the grace of the 27th
  Reopen();
  const Batch& tick = Apply({});
  EXPECT_EQ(tick.windows_closed, std::vector<WindowDay>{kNov27});
  EXPECT_EQ(CheckpointedLine(kNov27, kMetroLine)->count, 2);
  EXPECT_EQ(CheckpointedLine(kNov27, kMetroLine)->amount_fen, 800);
}

// A store of format 3 kept one set of lines, line ids and counters for every partition; the
// ledger's start upgrades it so that each partition owns its share, and the window's sums stay.
TEST_F(LedgerTest, AStoreOfFormat3IsUpgradedToPartitionOwnedState) {
  ledger_.reset();
  {
    std::unique_ptr<StateWriteBatch> write = store_->NewWriteBatch();
    write->Delete(Table::kMeta, kStoreFormatKey);
    std::string key, value;
    // One line id, two taps of partitions 0 and 3 in one commit, one more of partition 0 later.
    key.assign(kLineIdKeyPrefix);
    AppendBigEndian32(key, 0);
    write->Put(Table::kMeta, key, kMetroLine);
    LineIds v3_ids;
    ASSERT_TRUE(v3_ids.Add(0, kMetroLine));
    std::string blob1, blob2;
    for (const auto& [partition, offset, amount, txn_id] :
         std::vector<std::tuple<int32_t, int64_t, int64_t, std::string>>{
             {0, 4, 300, "TAPA"}, {3, 7, 500, "TAPB"}, {0, 5, 200, "TAPC"}}) {
      AppliedRecord record;
      record.kind = EventKind::kTap;
      record.occurred_at_ms = now_ms_ - kMinuteMs;
      record.partition = partition;
      record.offset = offset;
      record.amount_fen = amount;
      record.txn_id = txn_id;
      record.line_id = 0;
      record.terminal_id = "TERM";
      record.card_masked = "6217**1234";
      AppendAppliedRecord(record, txn_id == "TAPC" ? blob2 : blob1);
      TxnRecord txn;
      txn.kind = EventKind::kTap;
      txn.window = kNov27;
      txn.partition = partition;
      txn.offset = offset;
      txn.occurred_at_ms = record.occurred_at_ms;
      txn.amount_fen = amount;
      txn.line_id = 0;
      EncodeTxnRecord(txn, value);
      write->Put(Table::kTxn, "0" + txn_id, value);
    }
    for (const auto& [sequence, blob] : {std::pair<uint64_t, std::string>{1, blob1}, {2, blob2}}) {
      WindowKeyPrefix(kNov27, key);
      AppendBigEndian64(key, sequence);
      write->Put(Table::kApplied, key, blob);
    }
    // kLines checkpointed after commit 1; commit 2's tap completes it.
    LineTotals checkpoint;
    checkpoint.count = 2;
    checkpoint.amount_fen = 800;
    WindowKeyPrefix(kNov27, key);
    key.append(kMetroLine);
    EncodeLineTotals(checkpoint, value);
    write->Put(Table::kLines, key, value);
    value.clear();
    AppendBigEndian64(value, 1);
    write->Put(Table::kMeta, "lines_through", value);
    WindowCounters counters;
    counters.applied_count = 3;
    counters.exact_duplicate_count = 4;
    key.assign(kCountersKeyPrefix);
    AppendBigEndian32(key, WindowKeyBits(kNov27));
    EncodeWindowCounters(counters, value);
    write->Put(Table::kMeta, key, value);
    for (const auto& [partition, next] : {std::pair<int32_t, int64_t>{0, 6}, {3, 8}}) {
      OffsetKey(SourceTopic::kTaps, partition, key);
      value.clear();
      AppendBigEndian64(value, static_cast<uint64_t>(next));
      write->Put(Table::kMeta, key, value);
    }
    value.clear();
    AppendBigEndian64(value, 2);
    write->Put(Table::kMeta, kCommitSequenceKey, value);
    ASSERT_TRUE(store_->Write(*write).ok());
  }
  next_offsets_[{SourceTopic::kTaps, 0}] = 6;
  Reopen();
  std::string value;
  bool found = false;
  ASSERT_TRUE(store_->Get(Table::kMeta, kStoreFormatKey, value, found).ok());
  ASSERT_TRUE(found);
  EXPECT_EQ(value, std::string(1, static_cast<char>(kStoreFormat)));
  EXPECT_EQ(Line(kNov27, kMetroLine).count, 3);
  EXPECT_EQ(Line(kNov27, kMetroLine).amount_fen, 1000);
  const WindowCounters counters = Counters(kNov27);
  EXPECT_EQ(counters.applied_count, 3);
  EXPECT_EQ(counters.exact_duplicate_count, 4);
  // Each partition owns its applied records, and the checkpoint is whole.
  std::map<int32_t, int64_t> applied_fen;
  ASSERT_TRUE(VisitAppliedRecords(*store_, kNov27, LoadedLineIds(), [&](SourcePartition owner, const AppliedRecord& r) {
                EXPECT_EQ(owner.partition, r.partition);
                applied_fen[owner.partition] += r.amount_fen;
                return true;
              }).ok());
  EXPECT_EQ(applied_fen, (std::map<int32_t, int64_t>{{0, 500}, {3, 500}}));
  EXPECT_EQ(CheckpointedLine(kNov27, kMetroLine)->amount_fen, 1000);
  std::string storage;
  const std::optional<TxnRecord> tap_b = Txn(Family::kTaps, "TAPB", storage);
  ASSERT_TRUE(tap_b.has_value());
  EXPECT_EQ(tap_b->partition, 3);
  // The ledger goes on from there: a redelivered tap is a duplicate, a refund nets into its line.
  const Batch& batch = Apply({TapMessage(Tap("TAPD", 100))});
  EXPECT_EQ(batch.slots()[0].fate, Fate::kApplied);
  EXPECT_EQ(Line(kNov27, kMetroLine).amount_fen, 1100);
  EXPECT_EQ(Apply({RefundMessage(Refund("R1", 50, "TAPA"))}).slots()[0].fate, Fate::kApplied);
  EXPECT_EQ(Line(kNov27, kMetroLine).reversed_amount_fen, 50);
}

TEST_F(LedgerTest, ClosingADayThatNeverWasChangesNothing) {
  Apply({TapMessage(Tap())});
  const uint64_t sequence = ledger_->commit_sequence();
  const Batch& batch = Apply({}, 0, {WindowCommand{WindowCommand::Kind::kClose, kNov26 - 11}});
  EXPECT_TRUE(batch.windows_closed.empty());
  EXPECT_EQ(ledger_->commit_sequence(), sequence);  // an idle tick: nothing written
  EXPECT_FALSE(ledger_->windows()->contains(kNov26 - 11));
  absl::StatusOr<std::optional<WindowRecord>> record = ReadWindowRecord(*store_, kNov26 - 11);
  ASSERT_TRUE(record.ok());
  EXPECT_FALSE(record->has_value());
}

TEST_F(LedgerTest, ClosingAWindowTwiceIsANoOp) {
  Apply({TapMessage(Tap())});
  const Batch& first = Apply({}, 0, {WindowCommand{WindowCommand::Kind::kClose, kNov27}});
  EXPECT_EQ(first.windows_closed, std::vector<WindowDay>{kNov27});
  const Batch& second = Apply({}, 0, {WindowCommand{WindowCommand::Kind::kClose, kNov27}});
  EXPECT_TRUE(second.windows_closed.empty());
  const std::shared_ptr<const WindowTable> windows = ledger_->windows();
  ASSERT_TRUE(windows->contains(kNov27));
  EXPECT_EQ(windows->at(kNov27).state, WindowState::kClosed);
  EXPECT_EQ(windows->at(kNov27).closed_at_ms, now_ms_);
}

TEST_F(LedgerTest, TheClockClosesAWindowWithActivityAtCutoffPlusGraceWithThatInstant) {
  Apply({TapMessage(Tap())});
  const WindowDay day = WindowCalendar{}.DayOf(now_ms_);
  const int64_t close_at_ms = WindowCalendar{}.CloseInstantMs(day);
  now_ms_ = close_at_ms - 1;
  EXPECT_TRUE(Apply({}).windows_closed.empty());
  now_ms_ = close_at_ms;
  const Batch& batch = Apply({});
  EXPECT_EQ(batch.windows_closed, std::vector<WindowDay>{day});
  EXPECT_EQ(ledger_->windows()->at(day).closed_at_ms, close_at_ms);
  EXPECT_EQ(ledger_->WindowsAwaitingFiles(), std::vector<WindowDay>{day});
}

TEST_F(LedgerTest, FilesWrittenIsPersistedOnlyAfterClose) {
  Apply({TapMessage(Tap())});
  const WindowDay day = WindowCalendar{}.DayOf(now_ms_);
  EXPECT_TRUE(Apply({}, 0, {WindowCommand{WindowCommand::Kind::kMarkFilesWritten, day}}).windows_files_marked.empty());
  Apply({}, 0, {WindowCommand{WindowCommand::Kind::kClose, day}});
  EXPECT_EQ(Apply({}, 0, {WindowCommand{WindowCommand::Kind::kMarkFilesWritten, day}}).windows_files_marked,
            std::vector<WindowDay>{day});
  Reopen();
  EXPECT_EQ(ledger_->windows()->at(day).state, WindowState::kFilesWritten);
  EXPECT_TRUE(ledger_->WindowsAwaitingFiles().empty());
}

}  // namespace
}  // namespace yrd

namespace yrd {
namespace {

TEST_F(LedgerTest, ARejectionDecidedAfterTheTimestampCountsInTheEventsOwnWindow) {
  // 00:05 on 28 November: the 27th is in its grace period (the oldest open window), the 28th open.
  now_ms_ = test::ChinaTimeMs(2026, 11, 28, 0, 5);
  TapFields tap = Tap("MISMATCH1");
  tap.occurred_at_ms = test::ChinaTimeMs(2026, 11, 28, 0, 1);
  tap.issuer_province = std::string(test::kShanghai);  // the bank is a Zhejiang bank
  Apply({TapMessage(tap)});
  const size_t invalid = static_cast<size_t>(Reason::kInvalidField);
  EXPECT_EQ(Counters(kNov28).exception_counts[invalid], 1);
  EXPECT_EQ(Counters(kNov27).exception_counts[invalid], 0);
  // A rejection decided before the timestamp is trusted goes to the oldest open window.
  TapFields bad_id = Tap("BAD|ID");
  bad_id.occurred_at_ms = test::ChinaTimeMs(2026, 11, 28, 0, 1);
  Apply({TapMessage(bad_id)});
  EXPECT_EQ(Counters(kNov27).exception_counts[invalid], 1);
}

// ---- the changelog -------------------------------------------------------------------------------

// A changelog kept in memory: each owner's records in the order they were appended.
class MemoryChangelog final : public ChangelogSink {
 public:
  [[nodiscard]] uint64_t EpochOf(SourcePartition) const override { return epoch; }
  [[nodiscard]] std::vector<SourcePartition> Owned() const override { return owned; }
  absl::Status Append(std::span<const ChangelogRecord> records) override {
    if (!failure.ok()) return failure;
    for (const ChangelogRecord& record : records) {
      ChangelogHeader header;
      EXPECT_TRUE(DecodeChangelogHeader(record.bytes, header));
      EXPECT_EQ(header.number, record.number);
      EXPECT_EQ(header.owner, record.owner);
      std::vector<std::string>& of_owner = records_of[record.owner];
      if (!of_owner.empty()) {
        ChangelogHeader last;
        EXPECT_TRUE(DecodeChangelogHeader(of_owner.back(), last));
        EXPECT_EQ(record.number, last.number + 1) << "numbered consecutively (a snapshot after commit N is numbered N)";
      }
      of_owner.push_back(record.bytes);
      ++commits_since_snapshot[record.owner];
    }
    return absl::OkStatus();
  }
  [[nodiscard]] bool SnapshotDue(SourcePartition owner) const override {
    const auto it = commits_since_snapshot.find(owner);
    return snapshot_every_commits != 0 && it != commits_since_snapshot.end() && it->second >= snapshot_every_commits;
  }
  absl::Status AppendSnapshot(SourcePartition owner, std::span<const std::string> chunks) override {
    if (!failure.ok()) return failure;
    for (const std::string& chunk : chunks) records_of[owner].push_back(chunk);
    commits_since_snapshot[owner] = 0;
    ++snapshots_of[owner];
    return absl::OkStatus();
  }
  uint64_t epoch = 1;
  uint64_t snapshot_every_commits = 0;  // 0: never
  std::map<SourcePartition, uint64_t> commits_since_snapshot;
  std::map<SourcePartition, uint64_t> snapshots_of;
  absl::Status failure;
  std::vector<SourcePartition> owned;  // what a close reports for
  std::map<SourcePartition, std::vector<std::string>> records_of;
};

constexpr SourcePartition kTaps0{SourceTopic::kTaps, 0};
constexpr SourcePartition kTaps1{SourceTopic::kTaps, 1};
constexpr SourcePartition kMedical0{SourceTopic::kMedical, 0};

// Applies every record of `owners` in `changelog` to the store at `path` and flushes.
absl::Status RestoreInto(StateStore& store, const MemoryChangelog& changelog, const std::vector<SourcePartition>& owners) {
  absl::StatusOr<std::unique_ptr<ChangelogRestore>> restore = ChangelogRestore::Open(store);
  if (!restore.ok()) return restore.status();
  for (const SourcePartition owner : owners) {
    const auto it = changelog.records_of.find(owner);
    if (it == changelog.records_of.end()) continue;
    for (const std::string& record : it->second) {
      absl::StatusOr<RestoreStep> step = (*restore)->Apply(record);
      if (!step.ok()) return step.status();
    }
  }
  return (*restore)->Finish();
}

// The union tests' day in two stores as a union finds them: `stale_` holds yrd.taps/0 as of its
// first commit and yrd.medical/0 whole, `whole_` both taps partitions whole; `written_` is what
// the writer answers for `ids_`.
class StoreUnionTest : public LedgerTest {
 protected:
  ~StoreUnionTest() override { ledger_.reset(); }  // before the changelog it writes to

  void PrepareStores() {
    changelog_ = &day_changelog_;
    Reopen();
    Apply({TapMessage(Tap("TAP1", 300)), TapMessage(Tap("TAP2", 500))});
    Apply({TapMessage(Tap("TAP3", 700))}, 1);
    Apply({RefundMessage(Refund("R1", 120, "TAP1")), {SourceTopic::kTaps, "not a message"}});
    Apply({SettlementMessage(Settlement("SETTLE1"))});
    written_ = StoreAnswers(*store_, ids_);
    auto stale = RocksStore::Open(dir_.path() + "/stale", {});
    auto whole = RocksStore::Open(dir_.path() + "/whole", {});
    auto joined = RocksStore::Open(dir_.path() + "/union", {});
    ASSERT_TRUE(stale.ok() && whole.ok() && joined.ok());
    stale_ = *std::move(stale);
    whole_ = *std::move(whole);
    joined_ = *std::move(joined);
    MemoryChangelog stale_part;
    stale_part.records_of[kTaps0] = {day_changelog_.records_of[kTaps0][0]};
    stale_part.records_of[kMedical0] = day_changelog_.records_of[kMedical0];
    ASSERT_TRUE(RestoreInto(*stale_, stale_part, {kTaps0, kMedical0}).ok());
    ASSERT_TRUE(RestoreInto(*whole_, day_changelog_, {kTaps0, kTaps1}).ok());
    EXPECT_NE(StoreAnswers(*stale_, ids_), written_);
  }

  MemoryChangelog day_changelog_;
  std::unique_ptr<RocksStore> stale_, whole_, joined_;
  const std::vector<std::string> ids_ = {"TAP1", "TAP2", "TAP3", "R1", "SETTLE1"};
  std::vector<std::string> written_;
};

const std::vector<std::string> kChangelogTxnIds = {"TAP1", "TAP2", "TAP3", "TAPM", "R1", "SETTLE1", "CANCEL1", "SETTLE2"};

TEST_F(LedgerTest, AStoreRestoredFromTheChangelogAnswersAsTheStoreThatWroteIt) {
  MemoryChangelog changelog;
  changelog_ = &changelog;
  recent_txn_records_max_ = 3;  // some records are sorted into kTxn, some stay recent
  Reopen();
  TapFields museum = Tap("TAPM", 2000);
  museum.merchant_id = "M_NJ_MUSEUM";
  Apply({TapMessage(Tap("TAP1", 300)), TapMessage(Tap("TAP2", 500))});
  Apply({TapMessage(museum), TapMessage(Tap("TAP1", 300)), TapMessage(Tap("TAP2", 999))}, 1);
  ASSERT_TRUE(ledger_->AwaitRecentTxnSort().ok());
  Apply({RefundMessage(Refund("R1", 120, "TAP1")), {SourceTopic::kTaps, "not a message"}});
  Apply({SettlementMessage(Settlement("SETTLE1")), SettlementMessage(Settlement("SETTLE2"))});
  Apply({CancellationMessage(Cancellation("CANCEL1", "SETTLE1"))});
  Apply({TapMessage(Tap("TAP3", 700))}, 1);
  EXPECT_EQ(changelog.records_of.size(), 3u);
  EXPECT_EQ(changelog.records_of[kTaps0].size(), 2u);
  EXPECT_EQ(changelog.records_of[kMedical0].size(), 2u);
  const std::vector<std::string> written = StoreAnswers(*store_, kChangelogTxnIds);

  // A store that never saw a message of these partitions, restored from the changelog alone.
  {
    auto restored = RocksStore::Open(dir_.path() + "/restored", {});
    ASSERT_TRUE(restored.ok()) << restored.status();
    ASSERT_TRUE(RestoreInto(**restored, changelog, {kTaps0, kTaps1, kMedical0}).ok());
    EXPECT_EQ(StoreAnswers(**restored, kChangelogTxnIds), written);
  }

  // The restored store's ledger goes on exactly as the writer's: the next batch, applied to each.
  const auto offsets_before = next_offsets_;
  const std::vector<Message> next = {TapMessage(Tap("TAP1", 300)), RefundMessage(Refund("R2", 180, "TAP1")),
                                     RefundMessage(Refund("R3", 1, "TAP1")), TapMessage(Tap("TAP4", 50))};
  std::vector<Fate> fates_written;
  for (const MessageSlot& slot : Apply(next).slots()) fates_written.push_back(slot.fate);
  EXPECT_EQ(fates_written, (std::vector<Fate>{Fate::kExactDuplicate, Fate::kApplied, Fate::kRejected, Fate::kApplied}));
  EXPECT_EQ(changelog.records_of[kTaps0].size(), 3u);
  const std::vector<std::string> written_after = StoreAnswers(*store_, kChangelogTxnIds);

  MemoryChangelog restored_changelog;
  changelog_ = &restored_changelog;
  ledger_.reset();
  store_.reset();
  store_path_ = dir_.path() + "/restored";
  next_offsets_ = offsets_before;
  Open();
  std::vector<Fate> fates_restored;
  for (const MessageSlot& slot : Apply(next).slots()) fates_restored.push_back(slot.fate);
  EXPECT_EQ(fates_restored, fates_written);
  EXPECT_EQ(StoreAnswers(*store_, kChangelogTxnIds), written_after);
  // It numbers its commit record of partition 0 on from what it restored.
  ASSERT_EQ(restored_changelog.records_of[kTaps0].size(), 1u);
  ChangelogHeader header;
  ASSERT_TRUE(DecodeChangelogHeader(restored_changelog.records_of[kTaps0][0], header));
  EXPECT_EQ(header.number, 3u);
  EXPECT_EQ(header.next_offset, (next_offsets_[{SourceTopic::kTaps, 0}]));
}

// What the broker keeps of a changelog once it dropped everything before its last complete
// snapshot (with `skip` more records dropped after that snapshot's start).
std::vector<std::string> FromLastSnapshot(const std::vector<std::string>& records, size_t skip = 0) {
  size_t start = records.size();
  for (size_t i = 0; i < records.size(); ++i) {
    SnapshotChunk chunk;
    if (DecodeSnapshotChunk(records[i], chunk) && chunk.index == 0) start = i;
  }
  start = std::min(records.size(), start + skip);
  return {records.begin() + static_cast<std::ptrdiff_t>(start), records.end()};
}

// `changelog` with only what FromLastSnapshot keeps of each owner's records.
MemoryChangelog TruncatedToLastSnapshot(const MemoryChangelog& changelog, size_t skip = 0) {
  MemoryChangelog truncated;
  for (const auto& [owner, records] : changelog.records_of) truncated.records_of[owner] = FromLastSnapshot(records, skip);
  return truncated;
}

TEST_F(LedgerTest, AStoreRestoredFromTheLastSnapshotAndTheCommitsAfterItAnswersAsTheStoreThatWroteIt) {
  MemoryChangelog changelog;
  changelog.snapshot_every_commits = 2;
  changelog_ = &changelog;
  recent_txn_records_max_ = 3;  // the snapshots read records sorted into kTxn and recent ones
  Reopen();
  TapFields museum = Tap("TAPM", 2000);
  museum.merchant_id = "M_NJ_MUSEUM";
  Apply({TapMessage(Tap("TAP1", 300)), TapMessage(Tap("TAP2", 500))});
  Apply({TapMessage(museum), TapMessage(Tap("TAP1", 300)), TapMessage(Tap("TAP2", 999))}, 1);
  Apply({RefundMessage(Refund("R1", 120, "TAP1")), {SourceTopic::kTaps, "not a message"}});
  ASSERT_TRUE(ledger_->AwaitRecentTxnSort().ok());
  Apply({SettlementMessage(Settlement("SETTLE1")), SettlementMessage(Settlement("SETTLE2"))});
  Apply({CancellationMessage(Cancellation("CANCEL1", "SETTLE1"))});
  Apply({TapMessage(Tap("TAP3", 700))});
  Apply({TapMessage(Tap("TAP3", 700)), TapMessage(Tap("TAP4", 40))}, 1);
  Apply({TapMessage(Tap("TAP5", 90))});
  Apply({TapMessage(Tap("TAP7", 60))});
  // Every second commit of an owner is followed by a snapshot of it, numbered as that commit.
  EXPECT_EQ(changelog.snapshots_of[kTaps0], 2u);
  EXPECT_EQ(changelog.snapshots_of[kMedical0], 1u);
  ASSERT_EQ(changelog.records_of[kTaps0].size(), 7u);
  ChangelogHeader snapshot;
  ASSERT_TRUE(DecodeChangelogHeader(changelog.records_of[kTaps0][2], snapshot));
  EXPECT_EQ(snapshot.kind, ChangelogKind::kSnapshot);
  EXPECT_EQ(snapshot.number, 2u);
  const std::vector<std::string> ids = {"TAP1", "TAP2", "TAP3", "TAP4", "TAP5", "TAP7", "TAPM",
                                        "R1",   "SETTLE1", "CANCEL1", "SETTLE2"};
  const std::vector<std::string> written = StoreAnswers(*store_, ids);

  // The broker dropped everything before each owner's last snapshot.
  const MemoryChangelog truncated = TruncatedToLastSnapshot(changelog);
  ASSERT_EQ(truncated.records_of.at(kTaps0).size(), 2u) << "the snapshot after commit 4 and commit 5";
  const std::vector<SourcePartition> owners = {kTaps0, kTaps1, kMedical0};
  {  // A new store.
    auto restored = RocksStore::Open(dir_.path() + "/restored", {});
    ASSERT_TRUE(restored.ok()) << restored.status();
    ASSERT_TRUE(RestoreInto(**restored, truncated, owners).ok());
    EXPECT_EQ(StoreAnswers(**restored, ids), written);
  }
  {  // A store that holds an owner's first commits (it owned the partition once): behind the
     // changelog's start, it drops what it holds of the owner and takes the snapshot.
    auto restored = RocksStore::Open(dir_.path() + "/behind", {});
    ASSERT_TRUE(restored.ok()) << restored.status();
    MemoryChangelog first;
    first.records_of[kTaps0] = {changelog.records_of[kTaps0][0]};
    ASSERT_TRUE(RestoreInto(**restored, first, {kTaps0}).ok());
    auto restore = ChangelogRestore::Open(**restored);
    ASSERT_TRUE(restore.ok());
    for (const SourcePartition owner : owners) {
      for (const std::string& record : truncated.records_of.at(owner)) ASSERT_TRUE((*restore)->Apply(record).ok());
    }
    ASSERT_TRUE((*restore)->Finish().ok());
    EXPECT_EQ((*restore)->snapshots_applied(), 3u);
    EXPECT_EQ(StoreAnswers(**restored, ids), written);
  }
  {  // Without the snapshot (dropped as well) the commits after it cannot be restored.
    auto restored = RocksStore::Open(dir_.path() + "/refused", {});
    ASSERT_TRUE(restored.ok()) << restored.status();
    const absl::Status refused = RestoreInto(**restored, TruncatedToLastSnapshot(changelog, 1), {kTaps0});
    EXPECT_EQ(refused.code(), absl::StatusCode::kDataLoss);
    EXPECT_NE(refused.message().find("changelog_truncated: the changelog of yrd.taps/0 begins at commit 5"),
              std::string_view::npos)
        << refused;
    EXPECT_NE(refused.message().find("no complete snapshot"), std::string_view::npos) << refused;
  }

  // The restored store's ledger goes on exactly as the writer's.
  const auto offsets_before = next_offsets_;
  const std::vector<Message> next = {TapMessage(Tap("TAP1", 300)), RefundMessage(Refund("R2", 180, "TAP1")),
                                     RefundMessage(Refund("R3", 1, "TAP1")), TapMessage(Tap("TAP6", 50))};
  std::vector<Fate> fates_written;
  for (const MessageSlot& slot : Apply(next).slots()) fates_written.push_back(slot.fate);
  EXPECT_EQ(fates_written, (std::vector<Fate>{Fate::kExactDuplicate, Fate::kApplied, Fate::kRejected, Fate::kApplied}));
  const std::vector<std::string> written_after = StoreAnswers(*store_, ids);
  MemoryChangelog restored_changelog;
  changelog_ = &restored_changelog;
  ledger_.reset();
  store_.reset();
  store_path_ = dir_.path() + "/restored";
  next_offsets_ = offsets_before;
  Open();
  std::vector<Fate> fates_restored;
  for (const MessageSlot& slot : Apply(next).slots()) fates_restored.push_back(slot.fate);
  EXPECT_EQ(fates_restored, fates_written);
  EXPECT_EQ(StoreAnswers(*store_, ids), written_after);
}

TEST_F(LedgerTest, ASnapshotInChunksIsRestoredOnlyWhole) {
  MemoryChangelog changelog;
  changelog_ = &changelog;
  recent_txn_records_max_ = 2;
  Reopen();
  Apply({TapMessage(Tap("TAP1", 300)), TapMessage(Tap("TAP2", 500)), TapMessage(Tap("TAP3", 700))});
  Apply({RefundMessage(Refund("R1", 120, "TAP1")), {SourceTopic::kTaps, "not a message"}});
  const std::vector<std::string> ids = {"TAP1", "TAP2", "TAP3", "R1"};
  const std::vector<std::string> written = StoreAnswers(*store_, ids);
  // The snapshot as of commit 2, cut into chunks of one entry or so.
  std::vector<std::string> chunks;
  ASSERT_TRUE(BuildOwnerSnapshot(*store_, kTaps0, 1, 2, chunks, /*chunk_bytes=*/1).ok());
  ASSERT_GE(chunks.size(), 5u);
  {  // Whole: the store answers as the writer.
    auto restored = RocksStore::Open(dir_.path() + "/whole", {});
    ASSERT_TRUE(restored.ok());
    auto restore = ChangelogRestore::Open(**restored);
    ASSERT_TRUE(restore.ok());
    for (size_t i = 0; i < chunks.size(); ++i) {
      EXPECT_EQ(*(*restore)->Apply(chunks[i]), i + 1 < chunks.size() ? RestoreStep::kSnapshotPart : RestoreStep::kApplied);
    }
    ASSERT_TRUE((*restore)->Finish().ok());
    EXPECT_EQ((*restore)->progress(kTaps0).number, 2u);
    EXPECT_EQ(StoreAnswers(**restored, ids), written);
  }
  {  // Its first chunk dropped, or its last never written: nothing of it, and the commit after it
     // cannot be restored.
    Apply({TapMessage(Tap("TAP4", 40))});
    const std::string commit_3 = changelog.records_of[kTaps0].back();
    for (const bool first_dropped : {true, false}) {
      auto restored = RocksStore::Open(dir_.path() + (first_dropped ? "/headless" : "/tailless"), {});
      ASSERT_TRUE(restored.ok());
      auto restore = ChangelogRestore::Open(**restored);
      ASSERT_TRUE(restore.ok());
      for (size_t i = first_dropped ? 1 : 0; i + (first_dropped ? 0 : 1) < chunks.size(); ++i) {
        EXPECT_EQ(*(*restore)->Apply(chunks[i]), RestoreStep::kSnapshotPart);
      }
      EXPECT_EQ((*restore)->AwaitingSnapshotChunks(), false) << "nobody is behind yet";
      EXPECT_EQ(*(*restore)->Apply(commit_3), RestoreStep::kBehind);
      EXPECT_EQ((*restore)->AwaitingSnapshotChunks(), !first_dropped);
      const absl::Status refused = (*restore)->Finish();
      EXPECT_NE(refused.message().find("changelog_truncated"), std::string_view::npos) << refused;
      for (const std::string& answer : StoreAnswers(**restored, ids)) {
        EXPECT_FALSE(answer.starts_with("txn") || answer.starts_with("applied")) << answer;
      }
      bool any_offset = false;
      ASSERT_TRUE((*restored)->Scan(Table::kMeta, kOffsetKeyPrefix, {}, [&](std::string_view, std::string_view) {
                             any_offset = true;
                             return false;
                           }).ok());
      EXPECT_FALSE(any_offset);
    }
  }
}

TEST_F(LedgerTest, ASnapshotCarriesOnlyWindowsWithoutFilesAndTheRestoredStoreSaysWhatItLacks) {
  MemoryChangelog changelog;
  changelog.owned = {kTaps0};
  changelog_ = &changelog;
  Reopen();
  Apply({TapMessage(Tap("TAP1", 300)), TapMessage(Tap("TAP2", 500))});
  Apply({}, 0, {WindowCommand{WindowCommand::Kind::kClose, kNov27}});
  Apply({}, 0, {WindowCommand{WindowCommand::Kind::kMarkFilesWritten, kNov27}});
  now_ms_ = test::ChinaTimeMs(2026, 11, 28, 10, 0);
  TapFields next_day = Tap("TAP3", 700);
  next_day.occurred_at_ms = now_ms_ - 60'000;
  Apply({TapMessage(next_day), RefundMessage(Refund("R1", 120, "TAP1"))});
  changelog.snapshot_every_commits = 1;
  TapFields another = Tap("TAP4", 40);
  another.occurred_at_ms = now_ms_ - 30'000;
  Apply({TapMessage(another)});
  ASSERT_EQ(changelog.snapshots_of[kTaps0], 1u);

  auto restored = RocksStore::Open(dir_.path() + "/restored", {});
  ASSERT_TRUE(restored.ok());
  ASSERT_TRUE(RestoreInto(**restored, TruncatedToLastSnapshot(changelog), {kTaps0}).ok());
  // Nov 28 whole, the dedup state whole (TAP1 of Nov 27 is still a duplicate there).
  auto lines_of = [](StateStore& store, WindowDay day) {
    absl::StatusOr<std::vector<WindowLine>> lines = ReadWindowLines(store, day);
    EXPECT_TRUE(lines.ok()) << lines.status();
    std::vector<std::string> out;
    if (!lines.ok()) return out;
    for (const WindowLine& line : *lines) out.push_back(Cat(line.line_key, " ", line.totals.count, " ", line.totals.amount_fen));
    std::sort(out.begin(), out.end());
    return out;
  };
  EXPECT_EQ(lines_of(**restored, kNov28), lines_of(*store_, kNov28));
  EXPECT_FALSE(lines_of(*store_, kNov28).empty());
  auto counters = ReadWindowCounters(**restored, kNov28);
  ASSERT_TRUE(counters.ok());
  EXPECT_EQ(counters->applied_count, 3);
  auto found = FindTxnRecordsOfId(**restored, Family::kTaps, "TAP1");
  ASSERT_TRUE(found.ok());
  ASSERT_EQ(found->size(), 1u);
  auto line_ids = LoadLineIds(**restored);
  ASSERT_TRUE(line_ids.ok());
  TxnRecord tap1;
  ASSERT_TRUE(DecodeTxnRecord(found->front().value, *line_ids, tap1));
  EXPECT_EQ(tap1.refunded_fen, 120);
  // Nov 27 (files written) is not carried, and the store says so.
  EXPECT_TRUE(lines_of(**restored, kNov27).empty());
  auto lacking = ReadLackingShares(**restored);
  ASSERT_TRUE(lacking.ok());
  EXPECT_EQ(*lacking, (std::map<WindowDay, std::vector<SourcePartition>>{{kNov27, {kTaps0}}}));
  EXPECT_EQ(DescribeLackingShares(*lacking),
            "window 20261127 lacks the records of yrd.taps/0 (restored from a changelog snapshot after the window's "
            "files were written): read its clearing files");
  // Rebuilt from the changelog's start, it lacks nothing.
  ASSERT_TRUE(DropOwnerState(**restored, kTaps0).ok());
  ASSERT_TRUE(RestoreInto(**restored, changelog, {kTaps0}).ok());
  lacking = ReadLackingShares(**restored);
  ASSERT_TRUE(lacking.ok());
  EXPECT_TRUE(lacking->empty());
  EXPECT_EQ(lines_of(**restored, kNov27), lines_of(*store_, kNov27));
}

// The member's own store owned yrd.taps/0 once and owns yrd.medical/0; its standby follows both
// taps partitions.
TEST_F(StoreUnionTest, TheUnionOfAStoreAndItsStandbyTakesEachPartitionFromTheStoreWithItsLaterCommit) {
  ASSERT_NO_FATAL_FAILURE(PrepareStores());
  absl::StatusOr<std::vector<SourcePartition>> taken = BuildStoreUnion(*stale_, *whole_, *joined_);
  ASSERT_TRUE(taken.ok()) << taken.status();
  EXPECT_EQ(*taken, (std::vector<SourcePartition>{kTaps0, kTaps1}));
  EXPECT_EQ(StoreAnswers(*joined_, ids_), written_);
}

// Two shards of one process (pipeline.shards): shard 0 owned yrd.taps/0 once (it moved to shard 1
// since) and owns yrd.medical/0, shard 1 owns both taps partitions. Their union answers as the one
// writer did, each partition from the shard with its later commit, and owns what both own.
TEST_F(StoreUnionTest, TheUnionOfTwoShardsTakesEachPartitionFromTheShardWithItsLaterCommit) {
  ASSERT_NO_FATAL_FAILURE(PrepareStores());
  for (auto& [store, owned] : {std::pair{stale_.get(), std::vector<SourcePartition>{kMedical0}},
                               std::pair{whole_.get(), std::vector<SourcePartition>{kTaps0, kTaps1}}}) {
    std::string value;
    EncodeOwnership(Ownership{.partition_counts = {2, 1}, .owned = owned}, value);
    std::unique_ptr<StateWriteBatch> write = store->NewWriteBatch();
    write->Put(Table::kMeta, kOwnershipKey, value);
    ASSERT_TRUE(store->Write(*write).ok());
  }
  EXPECT_NE(StoreAnswers(*whole_, ids_), written_);
  StateStore* const shards[] = {stale_.get(), whole_.get()};
  ASSERT_TRUE(BuildShardUnion(shards, *joined_).ok());
  EXPECT_EQ(StoreAnswers(*joined_, ids_), written_);
  absl::StatusOr<std::optional<Ownership>> both = ReadOwnership(*joined_);
  ASSERT_TRUE(both.ok() && both->has_value());
  EXPECT_EQ((*both)->owned, (std::vector<SourcePartition>{kTaps0, kTaps1, kMedical0}));
  EXPECT_EQ(DescribeMissingPartitions(**both), "");
}

TEST_F(LedgerTest, AWindowClosedIsReportedInTheChangelogOfEveryPartitionOwnedIdleOnesIncluded) {
  MemoryChangelog changelog;
  changelog.owned = {kTaps0, kTaps1, kMedical0};
  changelog_ = &changelog;
  Reopen();
  Apply({TapMessage(Tap("TAP1", 300))});
  EXPECT_FALSE(changelog.records_of.contains(kTaps1)) << "an idle partition has no commit to report";
  // The region closed the day at an instant of its own (an operator's close on another
  // instance): this instance has no activity in Nov 28 and still closes it, with that instant.
  const int64_t closed_at_ms = test::ChinaTimeMs(2026, 11, 28, 2, 0);
  const Batch& close = Apply({}, 0, {WindowCommand::RegionClose(kNov27, closed_at_ms),
                                     WindowCommand::RegionClose(kNov28, closed_at_ms + 1)});
  EXPECT_EQ(close.windows_closed, (std::vector<WindowDay>{kNov27, kNov28}));
  EXPECT_EQ(ledger_->windows()->at(kNov27).closed_at_ms, closed_at_ms);
  for (const SourcePartition owner : changelog.owned) {
    ASSERT_FALSE(changelog.records_of[owner].empty()) << FormatOwner(owner);
  }
  ChangelogHeader idle;
  ASSERT_TRUE(DecodeChangelogHeader(changelog.records_of[kTaps1].back(), idle));
  EXPECT_EQ(idle.next_offset, kNoNextOffset) << "partition 1 was never consumed";

  // A restore of the idle partition alone learns the closes and writes no offset for it.
  auto restored = RocksStore::Open(dir_.path() + "/restored", {});
  ASSERT_TRUE(restored.ok()) << restored.status();
  auto restore = ChangelogRestore::Open(**restored);
  ASSERT_TRUE(restore.ok()) << restore.status();
  for (const std::string& record : changelog.records_of[kTaps1]) ASSERT_TRUE((*restore)->Apply(record).ok());
  ASSERT_TRUE((*restore)->Flush().ok());
  EXPECT_TRUE((*restore)->Closed(kTaps1, kNov27));
  EXPECT_TRUE((*restore)->Closed(kTaps1, kNov28));
  EXPECT_FALSE((*restore)->Closed(kTaps0, kNov27)) << "partition 0's records were not read";
  EXPECT_EQ((*restore)->windows_closed(), (std::map<WindowDay, int64_t>{{kNov27, closed_at_ms}, {kNov28, closed_at_ms + 1}}));
  bool offset_found = true;
  std::string key, value;
  OffsetKey(SourceTopic::kTaps, 1, key);
  ASSERT_TRUE((*restored)->Get(Table::kMeta, key, value, offset_found).ok());
  EXPECT_FALSE(offset_found);

  // A close at the batch's clock of a day without activity still invents no window.
  EXPECT_TRUE(Apply({}, 0, {WindowCommand{WindowCommand::Kind::kClose, kNov28 + 1}}).windows_closed.empty());

  // A partition claimed after the close is reported closed with the next kReportClosed; a window
  // not closed is not reported.
  constexpr SourcePartition kMedical1{SourceTopic::kMedical, 1};
  changelog.owned.push_back(kMedical1);
  const Batch& report = Apply({}, 0, {WindowCommand{WindowCommand::Kind::kReportClosed, kNov27},
                                      WindowCommand{WindowCommand::Kind::kReportClosed, kNov28 + 2}});
  EXPECT_EQ(report.windows_reported, (std::vector<WindowDay>{kNov27}));
  ASSERT_EQ(changelog.records_of[kMedical1].size(), 1u);
  auto medical1 = ChangelogRestore::Open(**restored);
  ASSERT_TRUE(medical1.ok()) << medical1.status();
  ASSERT_TRUE((*medical1)->Apply(changelog.records_of[kMedical1][0]).ok());
  EXPECT_TRUE((*medical1)->Closed(kMedical1, kNov27));
  EXPECT_FALSE((*medical1)->Closed(kMedical1, kNov28));
}

TEST_F(LedgerTest, ARestoreIntoAStoreWithLinesOfItsOwnRenumbersThem) {
  TapFields museum = Tap("TAPM", 2000);
  museum.merchant_id = "M_NJ_MUSEUM";
  const std::vector<Message> partition0 = {TapMessage(Tap("TAP1", 300)), TapMessage(Tap("TAP2", 500))};
  const std::vector<Message> partition1 = {TapMessage(museum), TapMessage(Tap("TAP3", 700))};
  // The writer sees partition 0 first (the metro line is its number 0); the other store consumes
  // partition 1 itself (the museum line is its number 0) and takes partition 0 from the changelog.
  MemoryChangelog changelog;
  changelog_ = &changelog;
  Reopen();
  Apply(partition0);
  Apply(partition1, 1);
  Apply({RefundMessage(Refund("R1", 120, "TAP1"))});
  const std::vector<std::string> written = StoreAnswers(*store_, kChangelogTxnIds);

  MemoryChangelog own_changelog;
  changelog_ = &own_changelog;
  ledger_.reset();
  store_.reset();
  store_path_ = dir_.path() + "/other";
  next_offsets_.clear();
  Open();
  Apply(partition1, 1);
  ledger_.reset();
  ASSERT_TRUE(RestoreInto(*store_, changelog, {kTaps0}).ok());
  EXPECT_EQ(StoreAnswers(*store_, kChangelogTxnIds), written);
  ASSERT_TRUE(LoadedLineIds().KeyOf(0).has_value());
  EXPECT_EQ(*LoadedLineIds().KeyOf(0), "T|B3301|330000|M_NJ_MUSEUM|B3201|320000|museum");
  // Its ledger nets a refund of a restored tap into the restored line, at the restored offset.
  Reopen();
  EXPECT_EQ(ledger_->offsets().at({SourceTopic::kTaps, 0}), 3);
  next_offsets_[{SourceTopic::kTaps, 0}] = 3;
  EXPECT_EQ(Apply({RefundMessage(Refund("R2", 180, "TAP1"))}).slots()[0].fate, Fate::kApplied);
  EXPECT_EQ(Line(kNov27, kMetroLine).reversed_amount_fen, 300);
  EXPECT_EQ(Line(kNov27, kMetroLine).amount_fen, 1500);
}

TEST_F(LedgerTest, AChangelogThatSkipsACommitIsRefusedAndARepeatIsSkipped) {
  MemoryChangelog changelog;
  changelog_ = &changelog;
  Reopen();
  for (int i = 1; i <= 3; ++i) Apply({TapMessage(Tap(Cat("TAP", i), 100 * i))});
  const std::vector<std::string>& records = changelog.records_of[kTaps0];
  ASSERT_EQ(records.size(), 3u);
  auto restored = RocksStore::Open(dir_.path() + "/restored", {});
  ASSERT_TRUE(restored.ok()) << restored.status();
  auto offsets_of = [&](StateStore& store) {
    std::vector<std::string> out;
    EXPECT_TRUE(store.Scan(Table::kMeta, kOffsetKeyPrefix, {}, [&](std::string_view k, std::string_view v) {
                      out.push_back(Cat(k.size(), ":", v.size() == 8 ? ReadBigEndian64(v.data()) : 0));
                      return true;
                    }).ok());
    return out;
  };
  {  // The broker dropped the first commit: the changelog begins at commit 2.
    auto restore = ChangelogRestore::Open(**restored);
    ASSERT_TRUE(restore.ok());
    EXPECT_EQ(*(*restore)->Apply(records[1]), RestoreStep::kBehind);
    EXPECT_EQ(*(*restore)->Apply(records[2]), RestoreStep::kBehind);
    const absl::Status finished = (*restore)->Finish();
    EXPECT_EQ(finished.code(), absl::StatusCode::kDataLoss);
    EXPECT_NE(finished.message().find("changelog_truncated"), std::string_view::npos) << finished;
    EXPECT_NE(finished.message().find("yrd.taps/0 begins at commit 2"), std::string_view::npos) << finished;
    EXPECT_FALSE((*restore)->Flush().ok()) << "a refused restore writes nothing more";
    EXPECT_TRUE(offsets_of(**restored).empty());
  }
  {  // Commit 2 is missing between 1 and 3; a repeat of 1 is skipped.
    auto restore = ChangelogRestore::Open(**restored);
    ASSERT_TRUE(restore.ok());
    EXPECT_EQ(*(*restore)->Apply(records[0]), RestoreStep::kApplied);
    EXPECT_EQ(*(*restore)->Apply(records[0]), RestoreStep::kRepeat);
    ASSERT_TRUE((*restore)->Flush().ok());
    EXPECT_EQ(*(*restore)->Apply(records[2]), RestoreStep::kBehind);
    const absl::Status finished = (*restore)->Finish();
    EXPECT_NE(finished.message().find("changelog_gap"), std::string_view::npos) << finished;
    EXPECT_NE(finished.message().find("commits 2 to 2 are missing"), std::string_view::npos) << finished;
    // What was flushed before the gap stands: commit 1, at the offset after it.
    EXPECT_EQ(offsets_of(**restored), (std::vector<std::string>{"12:1"}));
    EXPECT_EQ((*restore)->progress(kTaps0).number, 1u);
  }
  {  // A later restore goes on from the store's progress: 1 is a repeat, 2 and 3 are applied.
    auto restore = ChangelogRestore::Open(**restored);
    ASSERT_TRUE(restore.ok());
    EXPECT_EQ(*(*restore)->Apply(records[0]), RestoreStep::kRepeat);
    EXPECT_EQ(*(*restore)->Apply(records[1]), RestoreStep::kApplied);
    EXPECT_EQ(*(*restore)->Apply(records[2]), RestoreStep::kApplied);
    ASSERT_TRUE((*restore)->Flush().ok());
  }
  EXPECT_EQ(offsets_of(**restored), (std::vector<std::string>{"12:3"}));
  EXPECT_EQ(StoreAnswers(**restored, {"TAP1", "TAP2", "TAP3"}), StoreAnswers(*store_, {"TAP1", "TAP2", "TAP3"}));
}

TEST_F(LedgerTest, AChangelogRecordDamagedAnywhereIsRefusedAndChangesNothing) {
  MemoryChangelog changelog;
  changelog_ = &changelog;
  Reopen();
  Apply({TapMessage(Tap("TAP1", 300)), RefundMessage(Refund("R1", 100, "TAP1")), {SourceTopic::kTaps, "junk"}});
  const std::string record = changelog.records_of[kTaps0].at(0);
  auto restored = RocksStore::Open(dir_.path() + "/restored", {});
  ASSERT_TRUE(restored.ok()) << restored.status();
  // Cut short at every length, and every byte flipped in turn: refused or (where the byte is a
  // free value such as an amount) applied, never a crash; a refused one leaves no offset behind.
  for (size_t length = 0; length < record.size(); ++length) {
    auto restore = ChangelogRestore::Open(**restored);
    ASSERT_TRUE(restore.ok());
    absl::StatusOr<RestoreStep> step = (*restore)->Apply(std::string_view(record).substr(0, length));
    EXPECT_FALSE(step.ok()) << "cut at " << length;
    if (step.ok()) break;
    EXPECT_EQ(step.status().code(), absl::StatusCode::kDataLoss);
  }
  for (size_t i = 0; i < record.size(); ++i) {
    std::string flipped = record;
    flipped[i] = static_cast<char>(flipped[i] ^ 0x5A);
    auto restore = ChangelogRestore::Open(**restored);
    ASSERT_TRUE(restore.ok());
    static_cast<void>((*restore)->Apply(flipped));  // not flushed: the store must stay as it was
  }
  bool any_offset = false;
  ASSERT_TRUE((*restored)->Scan(Table::kMeta, kOffsetKeyPrefix, {}, [&](std::string_view, std::string_view) {
                         any_offset = true;
                         return false;
                       }).ok());
  EXPECT_FALSE(any_offset);
}

TEST_F(LedgerTest, ACommitOfAnEpochAFenceClosedChangesNothing) {
  MemoryChangelog changelog;
  changelog_ = &changelog;
  Reopen();
  Apply({TapMessage(Tap("TAP1", 300))});
  Apply({TapMessage(Tap("TAP2", 500))});
  const std::vector<std::string> records = changelog.records_of[kTaps0];
  auto restored = RocksStore::Open(dir_.path() + "/restored", {});
  ASSERT_TRUE(restored.ok()) << restored.status();
  auto restore = ChangelogRestore::Open(**restored);
  ASSERT_TRUE(restore.ok());
  ASSERT_EQ(*(*restore)->Apply(records[0]), RestoreStep::kApplied);
  // A new owner of epoch 2 took the partition after commit 1; the old owner (a zombie) still
  // appended its commit 2 of epoch 1 after the fence.
  std::string fence;
  EncodeChangelogFence(kTaps0, 2, fence);
  EXPECT_EQ(*(*restore)->Apply(fence), RestoreStep::kFence);
  EXPECT_EQ(*(*restore)->Apply(records[1]), RestoreStep::kFencedOut);
  EXPECT_EQ((*restore)->progress(kTaps0), (ChangelogProgress{.number = 1, .epoch = 1, .fence_epoch = 2}));
  // The new owner's commit 2 (an empty one: it only moved the offset) is applied.
  ChangelogRecordBuilder builder;
  builder.Start({.kind = ChangelogKind::kCommit, .owner = kTaps0, .epoch = 2, .number = 2, .next_offset = 5});
  std::string commit;
  builder.Finish(commit);
  EXPECT_EQ(*(*restore)->Apply(commit), RestoreStep::kApplied);
  ASSERT_TRUE((*restore)->Flush().ok());
  const std::vector<std::string> answers = StoreAnswers(**restored, {"TAP1", "TAP2"});
  EXPECT_EQ(std::count_if(answers.begin(), answers.end(), [](const std::string& a) { return a.starts_with("txn TAP2"); }), 0);
  EXPECT_EQ(std::count_if(answers.begin(), answers.end(), [](const std::string& a) { return a.starts_with("txn TAP1"); }), 1);
  auto progress = ReadChangelogProgress(**restored);
  ASSERT_TRUE(progress.ok());
  EXPECT_EQ(progress->at(kTaps0), (ChangelogProgress{.number = 2, .epoch = 2, .fence_epoch = 2}));
}

// The broker dropped the changelog's oldest records, the new owner's fence among them: its commits
// still fence the zombie's, which come after them.
TEST_F(LedgerTest, AZombiesCommitAfterANewOwnersIsFencedOutWhenTheFenceIsGone) {
  MemoryChangelog changelog;
  changelog_ = &changelog;
  Reopen();
  Apply({TapMessage(Tap("TAP1", 300))});
  Apply({TapMessage(Tap("TAP2", 500))});
  Apply({TapMessage(Tap("TAP3", 700))});
  const std::vector<std::string> records = changelog.records_of[kTaps0];
  ASSERT_EQ(records.size(), 3u);
  auto restored = RocksStore::Open(dir_.path() + "/restored", {});
  ASSERT_TRUE(restored.ok()) << restored.status();
  {
    auto restore = ChangelogRestore::Open(**restored);
    ASSERT_TRUE(restore.ok());
    ASSERT_EQ(*(*restore)->Apply(records[0]), RestoreStep::kApplied);
    ASSERT_TRUE((*restore)->Flush().ok());
  }
  // A new owner of epoch 2 took the partition after commit 1 and committed 2 and 3 (empty ones:
  // they only moved the offset); the zombie appended its commit 3 of epoch 1 between them. What
  // is left of the changelog begins after the fence.
  auto new_owners_commit = [](uint64_t number) {
    ChangelogRecordBuilder builder;
    builder.Start({.kind = ChangelogKind::kCommit, .owner = kTaps0, .epoch = 2, .number = number,
                   .next_offset = static_cast<int64_t>(number) + 4});
    std::string commit;
    builder.Finish(commit);
    return commit;
  };
  // The step Apply took, or kRefused for a refusal (named as a failure).
  constexpr auto kRefused = static_cast<RestoreStep>(0xFF);
  auto step = [&](ChangelogRestore& restore, std::string_view record) {
    absl::StatusOr<RestoreStep> applied = restore.Apply(record);
    EXPECT_TRUE(applied.ok()) << applied.status();
    return applied.value_or(kRefused);
  };
  // A store that lacks commit 1 skips the new owner's commit 2 (it waits for a snapshot), and the
  // zombie's commit 3 after it changes nothing.
  {
    auto behind = RocksStore::Open(dir_.path() + "/behind", {});
    ASSERT_TRUE(behind.ok()) << behind.status();
    auto restore = ChangelogRestore::Open(**behind);
    ASSERT_TRUE(restore.ok());
    EXPECT_EQ(step(**restore, new_owners_commit(2)), RestoreStep::kBehind);
    EXPECT_EQ(step(**restore, records[2]), RestoreStep::kFencedOut);
  }
  // The store that holds commit 1 takes the new owner's commit 2; read on from there, the
  // zombie's commit 3 is fenced out by the epoch the store holds, and the new owner's applied.
  {
    auto restore = ChangelogRestore::Open(**restored);
    ASSERT_TRUE(restore.ok());
    EXPECT_EQ(step(**restore, new_owners_commit(2)), RestoreStep::kApplied);
    ASSERT_TRUE((*restore)->Flush().ok());
  }
  {
    auto restore = ChangelogRestore::Open(**restored);
    ASSERT_TRUE(restore.ok());
    EXPECT_EQ(step(**restore, records[2]), RestoreStep::kFencedOut);
    EXPECT_EQ(step(**restore, new_owners_commit(3)), RestoreStep::kApplied);
    EXPECT_EQ((*restore)->diverged(), std::nullopt);
    ASSERT_TRUE((*restore)->Flush().ok());
  }
  const std::vector<std::string> answers = StoreAnswers(**restored, {"TAP1", "TAP2", "TAP3"});
  EXPECT_EQ(std::count_if(answers.begin(), answers.end(), [](const std::string& a) { return a.starts_with("txn TAP3"); }), 0);
  EXPECT_EQ(std::count_if(answers.begin(), answers.end(), [](const std::string& a) { return a.starts_with("txn TAP1"); }), 1);
  auto progress = ReadChangelogProgress(**restored);
  ASSERT_TRUE(progress.ok());
  EXPECT_EQ(progress->at(kTaps0), (ChangelogProgress{.number = 3, .epoch = 2, .fence_epoch = 0}));
  std::string offset;
  bool found = false;
  OffsetKey(SourceTopic::kTaps, 0, offset);
  std::string value;
  ASSERT_TRUE((*restored)->Get(Table::kMeta, offset, value, found).ok());
  ASSERT_TRUE(found);
  EXPECT_EQ(ReadBigEndian64(value.data()), 7u);
}

TEST_F(LedgerTest, ABatchTheChangelogDidNotTakeIsNotWritten) {
  MemoryChangelog changelog;
  changelog_ = &changelog;
  Reopen();
  Apply({TapMessage(Tap("TAP1", 300))});
  changelog.failure = absl::UnavailableError("the changelog is unreachable");
  Batch& batch = Decoded({TapMessage(Tap("TAP2", 500))}, 0, {});
  const absl::Status status = ledger_->Apply(batch, result_);
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(ledger_->failed());
  changelog.failure = absl::OkStatus();
  Reopen();
  EXPECT_EQ(ledger_->offsets().at({SourceTopic::kTaps, 0}), 1);
  std::string storage;
  EXPECT_FALSE(Txn(Family::kTaps, "TAP2", storage).has_value());
  EXPECT_EQ(changelog.records_of[kTaps0].size(), 1u);
}

TEST_F(LedgerTest, AfterARestoreIntoItsStoreTheLedgerReloadsAndDecidesWithTheRestoredState) {
  MemoryChangelog own_changelog;
  changelog_ = &own_changelog;
  Reopen();
  Apply({TapMessage(Tap("TAP1", 300))});
  // Another instance consumed partition 1.
  MemoryChangelog other_changelog;
  ASSERT_NO_FATAL_FAILURE(ConsumeElsewhere({TapMessage(Tap("TAP9", 900))}, 1, other_changelog));
  // Its state comes to this store while this ledger is idle, and the ledger reads it back.
  ASSERT_TRUE(RestoreInto(*store_, other_changelog, {kTaps1}).ok());
  ASSERT_TRUE(ledger_->Reload(now_ms_).ok());
  EXPECT_EQ(ledger_->CommittedOffset(SourceTopic::kTaps, 1), std::optional<int64_t>(1));
  const Batch& batch = Apply({TapMessage(Tap("TAP9", 900)), RefundMessage(Refund("R9", 400, "TAP9"))}, 1);
  EXPECT_EQ(batch.slots()[0].fate, Fate::kExactDuplicate);
  EXPECT_EQ(batch.slots()[1].fate, Fate::kApplied);
  EXPECT_EQ(Line(kNov27, kMetroLine).amount_fen, 1200);
  EXPECT_EQ(Line(kNov27, kMetroLine).reversed_amount_fen, 400);
  EXPECT_EQ(Counters(kNov27).exact_duplicate_count, 1);
  // Its commit record of partition 1 follows the other instance's.
  ASSERT_EQ(own_changelog.records_of[kTaps1].size(), 1u);
  ChangelogHeader header;
  ASSERT_TRUE(DecodeChangelogHeader(own_changelog.records_of[kTaps1][0], header));
  EXPECT_EQ(header.number, 2u);
}

TEST_F(LedgerTest, APartitionRestoredAfterAWindowClosedHereIsInThatWindowsLinesAfterTheNextCheckpoint) {
  MemoryChangelog own_changelog;
  own_changelog.owned = {kTaps0};
  changelog_ = &own_changelog;
  lines_checkpoint_applied_max_ = 1;  // every commit checkpoints and moves every partition's marker
  Reopen();
  Apply({TapMessage(Tap("TAP1", 300))});
  // Another instance consumed partition 1 of the same day.
  MemoryChangelog other_changelog;
  ASSERT_NO_FATAL_FAILURE(ConsumeElsewhere({TapMessage(Tap("TAP9", 900))}, 1, other_changelog));
  // This instance closes the day, then takes partition 1 over (its state restored) and goes on
  // with the next day, whose checkpoints move partition 1's marker past its records of the 27th.
  Apply({}, 0, {WindowCommand::RegionClose(kNov27, now_ms_)});
  ASSERT_TRUE(RestoreInto(*store_, other_changelog, {kTaps1}).ok());
  ASSERT_TRUE(ledger_->Reload(now_ms_).ok());
  TapFields next_day = Tap("TAP2", 500);
  next_day.occurred_at_ms = test::ChinaTimeMs(2026, 11, 28, 9, 0);
  now_ms_ = test::ChinaTimeMs(2026, 11, 28, 9, 5);
  Apply({TapMessage(next_day)}, 1);
  Apply({TapMessage(Tap("TAP3", 100))}, 0);  // late: to the 28th
  EXPECT_EQ(Line(kNov27, kMetroLine).amount_fen, 1200) << "partition 0's 300 and partition 1's 900";
  EXPECT_EQ(Line(kNov27, kMetroLine).count, 2);
  EXPECT_EQ(Line(kNov28, kMetroLine).amount_fen, 600);
}

TEST_F(LedgerTest, ARestoreDoesNotBringBackTheRecordsOfARetiredWindow) {
  MemoryChangelog changelog;
  changelog.owned = {kTaps0};
  changelog_ = &changelog;
  Reopen();
  Apply({TapMessage(Tap("TAP1", 300)), {SourceTopic::kTaps, "not a message"}});
  Apply({}, 0, {WindowCommand::RegionClose(kNov27, now_ms_)});
  Apply({}, 0, {WindowCommand{WindowCommand::Kind::kMarkFilesWritten, kNov27}});
  std::string exception_key;
  ExceptionKey(SourceTopic::kTaps, 0, 1, exception_key);
  Apply({}, 0, {WindowCommand(WindowCommand::Kind::kRetire, kNov27, {exception_key})});
  ledger_.reset();
  auto applied_of_nov27 = [&] {
    std::string prefix;
    WindowKeyPrefix(kNov27, prefix);
    int records = 0;
    EXPECT_TRUE(store_->Scan(Table::kApplied, prefix, {}, [&](std::string_view, std::string_view) {
                  ++records;
                  return true;
                }).ok());
    return records;
  };
  auto exceptions = [&] {
    int records = 0;
    EXPECT_TRUE(store_->Scan(Table::kExceptions, {}, {}, [&](std::string_view, std::string_view) {
                  ++records;
                  return true;
                }).ok());
    return records;
  };
  ASSERT_EQ(applied_of_nov27(), 0);
  ASSERT_EQ(exceptions(), 0);
  // The partition's state dropped and restored from its whole changelog: the retired window's
  // applied records and exception stay gone, its counters are as they were.
  ASSERT_TRUE(DropOwnerState(*store_, kTaps0).ok());
  ASSERT_TRUE(RestoreInto(*store_, changelog, {kTaps0}).ok());
  EXPECT_EQ(applied_of_nov27(), 0);
  EXPECT_EQ(exceptions(), 0);
  EXPECT_EQ(Counters(kNov27).applied_count, 1);
  EXPECT_EQ(Counters(kNov27).exception_counts[static_cast<size_t>(Reason::kMalformed)], 1);
}

TEST_F(LedgerTest, ALedgerWithABatchInFlightDoesNotReload) {
  Prepare({TapMessage(Tap("TAP1", 300))});
  EXPECT_EQ(ledger_->Reload(now_ms_).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(ledger_->failed());
}

TEST_F(LedgerTest, AStoreThatWentOnAsAZombieIsRefusedByTheChangelogsHistory) {
  MemoryChangelog changelog;
  changelog_ = &changelog;
  Reopen();
  Apply({TapMessage(Tap("TAP1", 300))});
  Apply({TapMessage(Tap("TAP2", 500))});  // commit 2, made after another owner's fence
  ledger_.reset();
  const std::vector<std::string> own = changelog.records_of[kTaps0];
  std::string fence;
  EncodeChangelogFence(kTaps0, 2, fence);
  ChangelogRecordBuilder builder;
  builder.Start({.kind = ChangelogKind::kCommit, .owner = kTaps0, .epoch = 2, .number = 2, .next_offset = 1});
  std::string new_owners_commit;
  builder.Finish(new_owners_commit);
  // The changelog as every reader sees it: its own commit 2 came after the fence.
  for (const std::vector<std::string>& history :
       {std::vector<std::string>{own[0], fence, own[1]}, std::vector<std::string>{own[0], fence, own[1], new_owners_commit},
        std::vector<std::string>{own[0], fence, new_owners_commit}}) {
    auto restore = ChangelogRestore::Open(*store_);
    ASSERT_TRUE(restore.ok()) << restore.status();
    absl::Status status;
    for (const std::string& record : history) {
      status = (*restore)->Apply(record).status();
      if (!status.ok()) break;
    }
    EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
    EXPECT_NE(status.message().find("changelog_diverged"), std::string_view::npos) << status;
  }
  // The new owner's own store takes the same history: its commit 2 stands.
  auto other = RocksStore::Open(dir_.path() + "/other", {});
  ASSERT_TRUE(other.ok()) << other.status();
  auto restore = ChangelogRestore::Open(**other);
  ASSERT_TRUE(restore.ok());
  for (const std::string& record : {own[0], fence, new_owners_commit, own[1]}) ASSERT_TRUE((*restore)->Apply(record).ok());
  EXPECT_EQ((*restore)->progress(kTaps0), (ChangelogProgress{.number = 2, .epoch = 2, .fence_epoch = 2}));
}

TEST_F(LedgerTest, AStoreThatDivergedDropsThePartitionsStateAndTakesTheChangelogsHistory) {
  MemoryChangelog changelog;
  changelog.owned = {kTaps0, kTaps1};
  changelog_ = &changelog;
  recent_txn_records_max_ = 2;       // some of partition 0's records are sorted into kTxn, some recent
  lines_checkpoint_applied_max_ = 1;  // every commit checkpoints: partition 0's share is in the lines
  Reopen();
  TapFields museum = Tap("TAPM", 2000);
  museum.merchant_id = "M_NJ_MUSEUM";
  Apply({TapMessage(Tap("TAP1", 300)), TapMessage(Tap("TAP2", 500))});
  Apply({TapMessage(museum), TapMessage(Tap("TAP5", 100))}, 1);  // partition 1's state stays as it is
  ASSERT_TRUE(ledger_->AwaitRecentTxnSort().ok());
  Apply({RefundMessage(Refund("R1", 120, "TAP1")), {SourceTopic::kTaps, "not a message"}});
  MemoryChangelog history;  // what the changelog of partition 0 holds, as every reader reads it
  history.records_of[kTaps0] = changelog.records_of[kTaps0];
  ASSERT_EQ(history.records_of[kTaps0].size(), 2u);
  const auto offsets_after_two = next_offsets_;
  // This store goes on as a zombie: its commit 3 of partition 0 comes after another owner's fence.
  Apply({TapMessage(Tap("TAP3", 700)), RefundMessage(Refund("R2", 50, "TAP2"))});
  ledger_.reset();
  const std::string zombies_commit = changelog.records_of[kTaps0].back();

  // The new owner restored commits 1 and 2, fenced with epoch 2, and made a commit 3 of its own.
  MemoryChangelog new_owner;
  new_owner.epoch = 2;
  {
    auto other = RocksStore::Open(dir_.path() + "/other", {});
    ASSERT_TRUE(other.ok()) << other.status();
    ASSERT_TRUE(RestoreInto(**other, history, {kTaps0}).ok());
    Ledger other_ledger(**other, LedgerOptions{.calendar = calendar_, .changelog = &new_owner});
    ASSERT_TRUE(other_ledger.Load(now_ms_).ok());
    next_offsets_ = offsets_after_two;
    BatchResult result;
    ASSERT_TRUE(other_ledger.Apply(Decoded({TapMessage(Tap("TAP4", 900)), RefundMessage(Refund("R3", 70, "TAP2"))}, 0, {}),
                                   result)
                    .ok());
  }
  std::string fence;
  EncodeChangelogFence(kTaps0, 2, fence);
  history.records_of[kTaps0].push_back(fence);
  history.records_of[kTaps0].push_back(new_owner.records_of[kTaps0].at(0));
  history.records_of[kTaps0].push_back(zombies_commit);  // appended late: fenced out
  history.records_of[kTaps1] = changelog.records_of[kTaps1];

  // This store is refused as it is; once it drops partition 0's state it takes the history.
  absl::Status refused = RestoreInto(*store_, history, {kTaps0});
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition) << refused;
  ASSERT_TRUE(DropOwnerState(*store_, kTaps0).ok());
  ASSERT_TRUE(RestoreInto(*store_, history, {kTaps0}).ok());
  const std::vector<std::string> ids = {"TAP1", "TAP2", "TAP3", "TAP4", "TAP5", "TAPM", "R1", "R2", "R3"};
  auto expected = RocksStore::Open(dir_.path() + "/expected", {});
  ASSERT_TRUE(expected.ok()) << expected.status();
  ASSERT_TRUE(RestoreInto(**expected, history, {kTaps0, kTaps1}).ok());
  EXPECT_EQ(StoreAnswers(*store_, ids), StoreAnswers(**expected, ids));

  // Its ledger goes on from the history: the zombie's tap is new to it, the new owner's a duplicate.
  MemoryChangelog after;
  after.epoch = 3;
  changelog_ = &after;
  Reopen();
  const Batch& batch = Apply({TapMessage(Tap("TAP4", 900)), TapMessage(Tap("TAP3", 700))});
  EXPECT_EQ(batch.slots()[0].fate, Fate::kExactDuplicate);
  EXPECT_EQ(batch.slots()[1].fate, Fate::kApplied);
  // Metro line: 300 + 500 + 900 + 700 + 100 (partition 1's), refunds 120 + 70.
  EXPECT_EQ(Line(kNov27, kMetroLine).amount_fen, 2500);
  EXPECT_EQ(Line(kNov27, kMetroLine).reversed_amount_fen, 190);
}

TEST_F(LedgerTest, ARestoreReadsAChangelogAgainWithoutTakingTheFormerOwnersCommitsForAZombies) {
  MemoryChangelog changelog;
  changelog_ = &changelog;
  Reopen();
  Apply({TapMessage(Tap("TAP1", 300))});
  Apply({TapMessage(Tap("TAP2", 500))});
  std::vector<std::string> history = changelog.records_of[kTaps0];
  std::string fence;
  EncodeChangelogFence(kTaps0, 2, fence);
  history.push_back(fence);
  auto restored = RocksStore::Open(dir_.path() + "/restored", {});
  ASSERT_TRUE(restored.ok()) << restored.status();
  // Claimed once (the store then holds the fence of epoch 2), then again from the changelog's
  // start, as every claim reads it: the commits before the fence are repeats, not a zombie's.
  for (int claim = 0; claim < 2; ++claim) {
    auto restore = ChangelogRestore::Open(**restored);
    ASSERT_TRUE(restore.ok());
    for (const std::string& record : history) {
      absl::StatusOr<RestoreStep> step = (*restore)->Apply(record);
      ASSERT_TRUE(step.ok()) << "claim " << claim << ": " << step.status();
    }
    ASSERT_TRUE((*restore)->Flush().ok());
    EXPECT_EQ((*restore)->progress(kTaps0), (ChangelogProgress{.number = 2, .epoch = 1, .fence_epoch = 2}));
  }
  EXPECT_EQ(test::StoreAnswers(**restored, {"TAP1", "TAP2"}), test::StoreAnswers(*store_, {"TAP1", "TAP2"}));
}

}  // namespace
}  // namespace yrd
