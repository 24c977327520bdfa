// RocksStore: the state store over RocksDB, in a temporary directory. Atomic writes across
// tables, point and batched reads, ordered scans, the single-writer lock and the read-only
// follower the report tools use.
#include "adapters/rocksdb/rocks_store.h"

#include <array>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "tests/support/events.h"

namespace yrd {
namespace {

using KeyValues = std::vector<std::pair<std::string, std::string>>;

class RocksStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = RocksStore::Open(path_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
  }

  void Put(const KeyValues& entries, Table table) {
    std::unique_ptr<StateWriteBatch> batch = store_->NewWriteBatch();
    for (const auto& [key, value] : entries) batch->Put(table, key, value);
    const absl::Status status = store_->Write(*batch);
    ASSERT_TRUE(status.ok()) << status;
  }

  KeyValues ScanAll(StateStore& store, Table table, std::string_view prefix, std::string_view start,
                    size_t stop_after = SIZE_MAX) {
    KeyValues out;
    const absl::Status status = store.Scan(table, prefix, start, [&](std::string_view key, std::string_view value) {
      out.emplace_back(std::string(key), std::string(value));
      return out.size() < stop_after;
    });
    EXPECT_TRUE(status.ok()) << status;
    return out;
  }

  test::TempDir dir_;
  const std::string path_ = dir_.path() + "/state";
  std::unique_ptr<RocksStore> store_;
};

TEST_F(RocksStoreTest, WriteThenMultiGetFindsWhatWasWrittenAndNothingElse) {
  Put({{"1TAP1", "one"}, {"1TAP2", "two"}, {"0SETTLE1", std::string("\0with\0zeros", 11)}}, Table::kTxn);
  const std::array<std::string_view, 4> keys = {"1TAP2", "1MISSING", "0SETTLE1", "1TAP1"};
  std::array<std::string, 4> values;
  std::array<uint8_t, 4> found{};
  ASSERT_TRUE(store_->MultiGet(Table::kTxn, keys, values, found).ok());
  EXPECT_EQ(found, (std::array<uint8_t, 4>{1, 0, 1, 1}));
  EXPECT_EQ(values[0], "two");
  EXPECT_EQ(values[2], std::string("\0with\0zeros", 11));
  EXPECT_EQ(values[3], "one");
}

// Keys that share their first 16 bytes or are prefixes of each other, asked in no order: each
// answer comes back in the place of its key.
TEST_F(RocksStoreTest, MultiGetAnswersEachKeyInItsPlaceWhateverTheirOrder) {
  Put({{"1T11270000000000019", "a"}, {"1T1127000000000001", "b"}, {"1T11270000000000010", "c"},
       {std::string("1T1127000000000001\0", 19), "d"}},
      Table::kTxn);
  const std::array<std::string_view, 6> keys = {"1T11270000000000019", "1T1127000000000001",
                                                "1T11270000000000011", std::string_view("1T1127000000000001\0", 19),
                                                "1T11270000000000010", "1T112700000000000"};
  std::array<std::string, 6> values;
  std::array<uint8_t, 6> found{};
  ASSERT_TRUE(store_->MultiGet(Table::kTxn, keys, values, found).ok());
  EXPECT_EQ(found, (std::array<uint8_t, 6>{1, 1, 0, 1, 1, 0}));
  EXPECT_EQ(values[0], "a");
  EXPECT_EQ(values[1], "b");
  EXPECT_EQ(values[3], "d");
  EXPECT_EQ(values[4], "c");
}

TEST_F(RocksStoreTest, MultiGetOfNoKeysIsFine) {
  ASSERT_TRUE(store_->MultiGet(Table::kTxn, {}, {}, {}).ok());
}

TEST_F(RocksStoreTest, TablesAreSeparateKeySpaces) {
  Put({{"same", "in txn"}}, Table::kTxn);
  Put({{"same", "in lines"}}, Table::kLines);
  std::string value;
  bool found = false;
  ASSERT_TRUE(store_->Get(Table::kLines, "same", value, found).ok());
  EXPECT_TRUE(found);
  EXPECT_EQ(value, "in lines");
  ASSERT_TRUE(store_->Get(Table::kMeta, "same", value, found).ok());
  EXPECT_FALSE(found);
}

TEST_F(RocksStoreTest, OneWriteSpansTablesAndDeletes) {
  Put({{"gone", "x"}}, Table::kExceptions);
  std::unique_ptr<StateWriteBatch> batch = store_->NewWriteBatch();
  batch->Put(Table::kMeta, "offset", "8");
  batch->Put(Table::kApplied, "blob", "records");
  batch->Delete(Table::kExceptions, "gone");
  EXPECT_GT(batch->size_bytes(), 0u);
  ASSERT_TRUE(store_->Write(*batch).ok());
  std::string value;
  bool found = false;
  ASSERT_TRUE(store_->Get(Table::kMeta, "offset", value, found).ok());
  EXPECT_TRUE(found);
  ASSERT_TRUE(store_->Get(Table::kApplied, "blob", value, found).ok());
  EXPECT_TRUE(found);
  ASSERT_TRUE(store_->Get(Table::kExceptions, "gone", value, found).ok());
  EXPECT_FALSE(found);
}

TEST_F(RocksStoreTest, ClearedBatchWritesNothing) {
  std::unique_ptr<StateWriteBatch> batch = store_->NewWriteBatch();
  batch->Put(Table::kMeta, "k", "v");
  batch->Clear();
  ASSERT_TRUE(store_->Write(*batch).ok());
  std::string value;
  bool found = true;
  ASSERT_TRUE(store_->Get(Table::kMeta, "k", value, found).ok());
  EXPECT_FALSE(found);
}

TEST_F(RocksStoreTest, ScanVisitsPrefixInKeyOrderFromStart) {
  Put({{"window|b", "2"}, {"offset|1", "o1"}, {"window|a", "1"}, {"window|c", "3"}, {"windowz", "not"},
       {"x", "after"}},
      Table::kMeta);
  EXPECT_EQ(ScanAll(*store_, Table::kMeta, "window|", {}),
            (KeyValues{{"window|a", "1"}, {"window|b", "2"}, {"window|c", "3"}}));
  EXPECT_EQ(ScanAll(*store_, Table::kMeta, "window|", "window|b"), (KeyValues{{"window|b", "2"}, {"window|c", "3"}}));
  EXPECT_EQ(ScanAll(*store_, Table::kMeta, "window|", "window|bb"), (KeyValues{{"window|c", "3"}}));
  EXPECT_TRUE(ScanAll(*store_, Table::kMeta, "nothing|", {}).empty());
}

TEST_F(RocksStoreTest, ScanWithoutPrefixVisitsTheWholeTableFromStart) {
  Put({{"a", "1"}, {"b", "2"}, {"c", "3"}}, Table::kLines);
  EXPECT_EQ(ScanAll(*store_, Table::kLines, {}, "b"), (KeyValues{{"b", "2"}, {"c", "3"}}));
  EXPECT_EQ(ScanAll(*store_, Table::kLines, {}, {}).size(), 3u);
}

TEST_F(RocksStoreTest, ScanStopsWhenTheVisitorSaysSo) {
  Put({{"p1", "1"}, {"p2", "2"}, {"p3", "3"}}, Table::kMeta);
  EXPECT_EQ(ScanAll(*store_, Table::kMeta, "p", {}, 2), (KeyValues{{"p1", "1"}, {"p2", "2"}}));
}

using Records = std::vector<std::pair<std::string_view, std::string_view>>;

TEST_F(RocksStoreTest, IngestedSortedRecordsReplaceOlderValuesAndSurviveAReopen) {
  Put({{"1TAP1", "written"}, {"1TAP3", "written"}}, Table::kTxn);
  const Records records = {{"0SETTLE1", "ingested"}, {"1TAP1", "ingested"}, {"1TAP2", "ingested"}};
  ASSERT_TRUE(store_->IngestSorted(Table::kTxn, records).ok());
  const std::array<std::string_view, 4> keys = {"0SETTLE1", "1TAP1", "1TAP2", "1TAP3"};
  std::array<std::string, 4> values;
  std::array<uint8_t, 4> found{};
  ASSERT_TRUE(store_->MultiGet(Table::kTxn, keys, values, found).ok());
  EXPECT_EQ(found, (std::array<uint8_t, 4>{1, 1, 1, 1}));
  EXPECT_EQ(values, (std::array<std::string, 4>{"ingested", "ingested", "ingested", "written"}));
  // The staged file was handed over, not left behind.
  EXPECT_TRUE(std::filesystem::is_empty(path_ + "/ingest"));

  store_.reset();
  auto reopened = RocksStore::Open(path_);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_EQ(ScanAll(**reopened, Table::kTxn, "1", {}),
            (KeyValues{{"1TAP1", "ingested"}, {"1TAP2", "ingested"}, {"1TAP3", "written"}}));
}

TEST_F(RocksStoreTest, IngestingUnsortedRecordsIsRefusedAndAddsNothing) {
  const Records unsorted = {{"1TAP2", "b"}, {"1TAP1", "a"}};
  EXPECT_FALSE(store_->IngestSorted(Table::kTxn, unsorted).ok());
  const Records repeated = {{"1TAP1", "a"}, {"1TAP1", "a"}};
  EXPECT_FALSE(store_->IngestSorted(Table::kTxn, repeated).ok());
  EXPECT_TRUE(ScanAll(*store_, Table::kTxn, {}, {}).empty());
  // The store goes on: writes and a good ingestion still work.
  Put({{"1TAP3", "c"}}, Table::kTxn);
  ASSERT_TRUE(store_->IngestSorted(Table::kTxn, Records{{"1TAP1", "a"}}).ok());
  EXPECT_EQ(ScanAll(*store_, Table::kTxn, {}, {}), (KeyValues{{"1TAP1", "a"}, {"1TAP3", "c"}}));
}

TEST_F(RocksStoreTest, IngestionBelowTheFreeSpaceReserveIsRefused) {
  store_.reset();
  RocksStoreOptions options;
  options.min_free_bytes = uint64_t{1} << 62;
  auto store = RocksStore::Open(path_, options);
  ASSERT_TRUE(store.ok()) << store.status();
  const absl::Status refused = (*store)->IngestSorted(Table::kTxn, Records{{"1TAP1", "a"}});
  EXPECT_EQ(refused.code(), absl::StatusCode::kUnavailable) << refused;
  EXPECT_TRUE(ScanAll(**store, Table::kTxn, {}, {}).empty());
}

TEST_F(RocksStoreTest, SecondarySeesIngestedRecordsAfterCatchUp) {
  auto secondary = RocksStore::OpenSecondary(path_, dir_.path() + "/follower");
  ASSERT_TRUE(secondary.ok()) << secondary.status();
  ASSERT_TRUE(store_->IngestSorted(Table::kTxn, Records{{"1TAP1", "a"}}).ok());
  ASSERT_TRUE((*secondary)->CatchUp().ok());
  EXPECT_EQ(ScanAll(**secondary, Table::kTxn, {}, {}), (KeyValues{{"1TAP1", "a"}}));
}

TEST_F(RocksStoreTest, SecondWriterOnTheSamePathIsRefusedWhileTheFirstIsOpen) {
  auto second = RocksStore::Open(path_);
  EXPECT_FALSE(second.ok());
  store_.reset();
  auto after_close = RocksStore::Open(path_);
  EXPECT_TRUE(after_close.ok()) << after_close.status();
}

TEST_F(RocksStoreTest, DataSurvivesCloseAndReopen) {
  Put({{"offset|x", "42"}}, Table::kMeta);
  store_.reset();
  auto reopened = RocksStore::Open(path_);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  std::string value;
  bool found = false;
  ASSERT_TRUE((*reopened)->Get(Table::kMeta, "offset|x", value, found).ok());
  EXPECT_TRUE(found);
  EXPECT_EQ(value, "42");
}

TEST_F(RocksStoreTest, WriteBelowTheFreeSpaceReserveIsRefusedAndWritesNothing) {
  store_.reset();
  const absl::StatusOr<uint64_t> free_bytes = FreeBytesAt(path_);
  ASSERT_TRUE(free_bytes.ok()) << free_bytes.status();
  ASSERT_GT(*free_bytes, 0u);
  RocksStoreOptions options;
  options.min_free_bytes = *free_bytes + (uint64_t{1} << 40);  // more than this disk will have
  auto guarded = RocksStore::Open(path_, std::move(options));
  ASSERT_TRUE(guarded.ok()) << guarded.status();
  std::unique_ptr<StateWriteBatch> batch = (*guarded)->NewWriteBatch();
  batch->Put(Table::kMeta, "offset|x", "42");
  const absl::Status refused = (*guarded)->Write(*batch);
  EXPECT_EQ(refused.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(refused.message().find("store.min_free_mib"), std::string_view::npos) << refused;
  // Like any failed write, it is final for this instance: nothing later is written over it.
  EXPECT_EQ((*guarded)->Write(*batch).code(), absl::StatusCode::kUnavailable);
  guarded->reset();

  auto reopened = RocksStore::Open(path_);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  std::string value;
  bool found = true;
  ASSERT_TRUE((*reopened)->Get(Table::kMeta, "offset|x", value, found).ok());
  EXPECT_FALSE(found);
}

TEST_F(RocksStoreTest, FreeBytesOfAPathNotYetCreatedIsThatOfItsParent) {
  const absl::StatusOr<uint64_t> parent = FreeBytesAt(dir_.path());
  const absl::StatusOr<uint64_t> missing = FreeBytesAt(dir_.path() + "/not/yet/created");
  ASSERT_TRUE(parent.ok() && missing.ok());
  // The same file system; other writers may move it a little between the two reads.
  EXPECT_NEAR(static_cast<double>(*parent), static_cast<double>(*missing), 64.0 * (1 << 20));
}

TEST_F(RocksStoreTest, RocksDbDiagnosticsGoToTheStoreLogFile) {
  store_.reset();  // closing logs a line
  EXPECT_TRUE(std::filesystem::exists(path_ + "/LOG"));
  EXPECT_GT(std::filesystem::file_size(path_ + "/LOG"), 0u);
}

TEST_F(RocksStoreTest, SecondarySeesNewWritesOnlyAfterCatchUp) {
  Put({{"before", "1"}}, Table::kMeta);
  auto secondary = RocksStore::OpenSecondary(path_, dir_.path() + "/secondary");
  ASSERT_TRUE(secondary.ok()) << secondary.status();
  std::string value;
  bool found = false;
  ASSERT_TRUE((*secondary)->Get(Table::kMeta, "before", value, found).ok());
  EXPECT_TRUE(found);

  Put({{"after", "2"}}, Table::kMeta);
  ASSERT_TRUE((*secondary)->Get(Table::kMeta, "after", value, found).ok());
  EXPECT_FALSE(found);
  const absl::Status caught_up = (*secondary)->CatchUp();
  ASSERT_TRUE(caught_up.ok()) << caught_up;
  ASSERT_TRUE((*secondary)->Get(Table::kMeta, "after", value, found).ok());
  EXPECT_TRUE(found);
  EXPECT_EQ(value, "2");
  EXPECT_EQ(ScanAll(**secondary, Table::kMeta, {}, {}), (KeyValues{{"after", "2"}, {"before", "1"}}));
}

TEST_F(RocksStoreTest, SecondaryRefusesWrites) {
  auto secondary = RocksStore::OpenSecondary(path_, dir_.path() + "/secondary");
  ASSERT_TRUE(secondary.ok()) << secondary.status();
  std::unique_ptr<StateWriteBatch> batch = (*secondary)->NewWriteBatch();
  batch->Put(Table::kMeta, "k", "v");
  EXPECT_EQ((*secondary)->Write(*batch).code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(RocksStoreTest, SecondaryOfAMissingStoreIsRefused) {
  auto secondary = RocksStore::OpenSecondary(dir_.path() + "/no_such_store", dir_.path() + "/secondary");
  EXPECT_FALSE(secondary.ok());
}

// Writes a key, flushes it to a table file, reads it back with MultiGet and closes the store;
// exits 0 when all of it went through, another code naming the step that failed.
[[noreturn]] void ReadFlushedDataThenClose(const std::string& path) {
  auto store = RocksStore::Open(path);
  if (!store.ok()) std::_Exit(2);
  std::unique_ptr<StateWriteBatch> batch = (*store)->NewWriteBatch();
  batch->Put(Table::kTxn, "1TAP1", "one");
  if (!(*store)->Write(*batch).ok() || !(*store)->Flush().ok()) std::_Exit(3);
  const std::array<std::string_view, 1> keys = {"1TAP1"};
  std::array<std::string, 1> values;
  std::array<uint8_t, 1> found{};
  if (!(*store)->MultiGet(Table::kTxn, keys, values, found).ok() || found[0] != 1) std::_Exit(4);
  batch.reset();
  store->reset();
  std::_Exit(0);
}

// Closing the store must be safe whatever was read last. The daemon reads the dedup state with
// MultiGet, then stops on SIGTERM; a crash here turns every clean stop into an abort. Run in a
// child process so that a crash fails this test only.
TEST(RocksStoreDeathTest, ClosingAfterAMultiGetOfFlushedDataDoesNotCrash) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  test::TempDir dir;
  EXPECT_EXIT(ReadFlushedDataThenClose(dir.path() + "/state"), ::testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace yrd
