// Clearing files: the golden window of tests/golden/golden_window.h rendered into memory and
// compared with the hand-checked files of tests/golden/20261127/, the figures that matter checked
// one by one, and the invariants that keep a damaged window from being written at all.
#include "engine/clearing/clearing_files.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "adapters/crypto/hmac.h"
#include "adapters/crypto/sha256.h"
#include "adapters/fs/file_set.h"
#include "adapters/rocksdb/rocks_store.h"
#include "engine/base/strings.h"
#include "engine/readers/store_readers.h"
#include "engine/store/records.h"
#include "gtest/gtest.h"
#include "tests/golden/golden_window.h"
#include "tests/support/events.h"

namespace yrd {
namespace {

constexpr std::string_view kMetroLineFromHangzhouCards = "T|B3301|330000|M_SH_METRO|B3101|310000|metro";

std::vector<std::string> Lines(std::string_view text) {
  std::vector<std::string> lines;
  std::istringstream in{std::string(text)};
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// A line diff (longest common subsequence) of two small files: "-" lines only in `expected`,
// "+" lines only in `actual`, each with its line number, and one line of context around them.
std::string Diff(std::string_view expected, std::string_view actual) {
  const std::vector<std::string> a = Lines(expected), b = Lines(actual);
  std::vector<std::vector<int>> common(a.size() + 1, std::vector<int>(b.size() + 1, 0));
  for (size_t i = a.size(); i-- > 0;) {
    for (size_t j = b.size(); j-- > 0;) {
      common[i][j] = a[i] == b[j] ? common[i + 1][j + 1] + 1 : std::max(common[i + 1][j], common[i][j + 1]);
    }
  }
  struct Op {
    char tag;
    size_t line;
    const std::string* text;
  };
  std::vector<Op> ops;
  size_t i = 0, j = 0;
  while (i < a.size() || j < b.size()) {
    if (i < a.size() && j < b.size() && a[i] == b[j]) {
      ops.push_back({' ', i + 1, &a[i]});
      ++i, ++j;
    } else if (j < b.size() && (i == a.size() || common[i][j + 1] >= common[i + 1][j])) {
      ops.push_back({'+', j + 1, &b[j]});
      ++j;
    } else {
      ops.push_back({'-', i + 1, &a[i]});
      ++i;
    }
  }
  std::string out;
  for (size_t k = 0; k < ops.size(); ++k) {
    const bool near_change =
        (ops[k].tag != ' ') || (k > 0 && ops[k - 1].tag != ' ') || (k + 1 < ops.size() && ops[k + 1].tag != ' ');
    if (!near_change) continue;
    out += Cat(ops[k].tag, " ", ops[k].line, ": ", *ops[k].text, "\n");
  }
  if (out.empty() && expected != actual) out = "(the files differ only in line ends or a final line feed)\n";
  return out;
}

std::string ReadWhole(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

class ClearingFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = RocksStore::Open(dir_.path() + "/state");
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    auto golden = test::BuildGoldenWindow(*store_);
    ASSERT_TRUE(golden.ok()) << golden.status();
    golden_ = *std::move(golden);
    auto digests = MakeFileSetDigests(test::kGoldenManifestKey);
    ASSERT_TRUE(digests.ok()) << digests.status();
    digests_ = *std::move(digests);
  }

  absl::Status RenderInto(MemoryFileSet& sink) {
    return RenderWindowFiles(*store_, golden_.window, sink, digests_);
  }

  std::map<std::string, std::string> Render() {
    MemoryFileSet sink;
    const absl::Status status = RenderInto(sink);
    EXPECT_TRUE(status.ok()) << status;
    EXPECT_TRUE(sink.committed());
    return sink.files();
  }

  void Put(Table table, const std::string& key, const std::string& value) {
    std::unique_ptr<StateWriteBatch> write = store_->NewWriteBatch();
    write->Put(table, key, value);
    ASSERT_TRUE(store_->Write(*write).ok());
  }

  LineTotals StoredLine(std::string_view line_key) {
    std::string key, value;
    bool found = false;
    LineStoreKey(test::kGoldenDay, line_key, key);
    EXPECT_TRUE(store_->Get(Table::kLines, key, value, found).ok());
    LineTotals totals;
    EXPECT_TRUE(found && DecodeLineTotals(value, totals));
    return totals;
  }

  void PutLine(std::string_view line_key, const LineTotals& totals) {
    std::string key, value;
    LineStoreKey(test::kGoldenDay, line_key, key);
    EncodeLineTotals(totals, value);
    Put(Table::kLines, key, value);
  }

  // The window's counters summed over its owners, and a way to make them other ones.
  WindowCounters StoredCounters() {
    absl::StatusOr<WindowCounters> counters = ReadWindowCounters(*store_, test::kGoldenDay);
    EXPECT_TRUE(counters.ok()) << counters.status();
    return counters.ok() ? *counters : WindowCounters{};
  }
  void PutCounters(const WindowCounters& counters) {
    std::string prefix(kCountersKeyPrefix), end, key, value;
    AppendBigEndian32(prefix, WindowKeyBits(test::kGoldenDay));
    end = prefix + std::string(kOwnerKeyBytes, '\xff');
    std::unique_ptr<StateWriteBatch> write = store_->NewWriteBatch();
    write->DeleteRange(Table::kMeta, prefix, end);
    CountersKey(test::kGoldenDay, {SourceTopic::kTaps, 0}, key);
    EncodeWindowCounters(counters, value);
    write->Put(Table::kMeta, key, value);
    ASSERT_TRUE(store_->Write(*write).ok());
  }

  // Rewrites the window's stored state, keeping its close instant and fees.
  void PutWindowState(WindowState state) {
    std::string key, value;
    bool found = false;
    WindowStateKey(test::kGoldenDay, key);
    ASSERT_TRUE(store_->Get(Table::kMeta, key, value, found).ok());
    WindowRecord record;
    ASSERT_TRUE(found && DecodeWindowRecord(value, record));
    record.state = state;
    EncodeWindowRecord(record, value);
    Put(Table::kMeta, key, value);
  }

  // The renderer must refuse and create no file.
  std::string ExpectRefused(absl::StatusCode code) {
    MemoryFileSet sink;
    const absl::Status status = RenderInto(sink);
    EXPECT_EQ(status.code(), code) << status;
    EXPECT_TRUE(sink.files().empty());
    EXPECT_FALSE(sink.committed());
    return std::string(status.message());
  }

  test::TempDir dir_;
  std::unique_ptr<RocksStore> store_;
  test::GoldenWindow golden_;
  Digests digests_;
};

// ---- golden files ------------------------------------------------------------------------------

TEST_F(ClearingFilesTest, GoldenWindowGivesTheHandCheckedFiles) {
  const std::map<std::string, std::string> files = Render();
  const std::filesystem::path golden_dir = std::filesystem::path(test::GoldenDir()) / test::kGoldenDate;
  if (std::getenv("YRD_UPDATE_GOLDEN") != nullptr) {
    std::filesystem::remove_all(golden_dir);
    for (const auto& [path, bytes] : files) {
      std::filesystem::create_directories((golden_dir / path).parent_path());
      std::ofstream(golden_dir / path, std::ios::binary) << bytes;
    }
    GTEST_SKIP() << "rewrote " << golden_dir << ": check every changed line by hand before committing";
  }
  std::map<std::string, std::string> golden;
  ASSERT_TRUE(std::filesystem::is_directory(golden_dir)) << golden_dir;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(golden_dir)) {
    if (!entry.is_regular_file()) continue;
    golden[std::filesystem::relative(entry.path(), golden_dir).generic_string()] = ReadWhole(entry.path());
  }
  for (const auto& [path, bytes] : golden) {
    const auto rendered = files.find(path);
    if (rendered == files.end()) {
      ADD_FAILURE() << path << " is a golden file but was not rendered";
      continue;
    }
    EXPECT_TRUE(rendered->second == bytes) << path << " differs from its golden file (- golden, + rendered):\n"
                                           << Diff(bytes, rendered->second);
  }
  for (const auto& [path, bytes] : files) {
    EXPECT_TRUE(golden.contains(path)) << path << " was rendered but has no golden file:\n" << bytes;
  }
}

TEST_F(ClearingFilesTest, EveryRegisteredBankAndFundGetsBothFiles) {
  const std::map<std::string, std::string> files = Render();
  std::vector<std::string> paths;
  for (const auto& [path, bytes] : files) paths.push_back(path);
  const std::vector<std::string> expected = {
      "MANIFEST",         "banks/B3101.detail.txt",  "banks/B3101.txt",  "banks/B3201.detail.txt",
      "banks/B3201.txt",  "banks/B3301.detail.txt",  "banks/B3301.txt",  "banks/B3401.detail.txt",
      "banks/B3401.txt",  "funds/310100.detail.txt", "funds/310100.txt", "funds/320100.detail.txt",
      "funds/320100.txt", "funds/330100.detail.txt", "funds/330100.txt", "summary.txt"};
  EXPECT_EQ(paths, expected);
}

TEST_F(ClearingFilesTest, IdleBankAndFundGetFilesWithZeroTotals) {
  const std::map<std::string, std::string> files = Render();
  const std::string closed = "closed_at=2026-11-28T00:15:00.000+08:00";
  EXPECT_EQ(files.at("banks/B3401.txt"),
            Cat("H|format=YRD-BANK|version=1|window_date=20261127|bank_id=B3401|", closed, "\n",
                "T|record_count=0|total_debit_fen=0|total_credit_fen=0|net_position_fen=0\n"));
  EXPECT_EQ(files.at("banks/B3401.detail.txt"),
            Cat("H|format=YRD-BANK-DETAIL|version=1|window_date=20261127|bank_id=B3401|", closed, "\n",
                "T|record_count=0|issuer_tap_count=0|issuer_tap_fen=0|issuer_refund_count=0|issuer_refund_fen=0|"
                "acquirer_tap_count=0|acquirer_tap_fen=0|acquirer_refund_count=0|acquirer_refund_fen=0\n"));
  EXPECT_EQ(files.at("funds/320100.txt"),
            Cat("H|format=YRD-FUND|version=1|window_date=20261127|fund_id=320100|", closed, "\n",
                "T|record_count=0|total_payable_fen=0|total_receivable_fen=0|net_position_fen=0|"
                "payable_fund_pay_fen=0|payable_account_pay_fen=0|receivable_fund_pay_fen=0|"
                "receivable_account_pay_fen=0\n"));
}

// ---- figures checked by hand -------------------------------------------------------------------

TEST_F(ClearingFilesTest, FeeIsRoundedHalfUpAtExactlyHalfAFen) {
  // Metro: 300 + 200 + 500 gross, 150 refunded: net 850 fen at 100 bp is 8.5 fen, charged 9.
  const std::string bank = Render().at("banks/B3101.txt");
  EXPECT_NE(bank.find("\nD|MERCHANT_CREDIT|M_SH_METRO|3|1000|1|150|9|841\n"), std::string::npos) << bank;
  EXPECT_NE(bank.find("\nD|FEE_CREDIT|metro|1|850|100|9\n"), std::string::npos) << bank;
}

TEST_F(ClearingFilesTest, FeeBelowHalfAFenIsRoundedDown) {
  // Bus: 400 + 300 fen at 15 bp is 1.05 fen, charged 1; credited to the fee bank B3101.
  const std::map<std::string, std::string> files = Render();
  EXPECT_NE(files.at("banks/B3301.txt").find("\nD|MERCHANT_CREDIT|M_HZ_BUS|2|700|0|0|1|699\n"), std::string::npos);
  EXPECT_NE(files.at("banks/B3101.txt").find("\nD|FEE_CREDIT|bus|1|700|15|1\n"), std::string::npos);
}

TEST_F(ClearingFilesTest, BankNetPositionsAreTheBankSchemePositions) {
  const std::map<std::string, std::string> files = Render();
  EXPECT_NE(files.at("banks/B3101.txt")
                .find("T|record_count=5|total_debit_fen=600|total_credit_fen=851|net_position_fen=251\n"),
            std::string::npos);
  EXPECT_NE(files.at("banks/B3201.txt")
                .find("T|record_count=3|total_debit_fen=800|total_credit_fen=0|net_position_fen=-800\n"),
            std::string::npos);
  EXPECT_NE(files.at("banks/B3301.txt")
                .find("T|record_count=3|total_debit_fen=150|total_credit_fen=699|net_position_fen=549\n"),
            std::string::npos);
  const std::string summary = files.at("summary.txt");
  for (const char* line : {"D|POSITION|BANK_SCHEME|BANK|B3101|251", "D|POSITION|BANK_SCHEME|BANK|B3201|-800",
                           "D|POSITION|BANK_SCHEME|BANK|B3301|549", "D|POSITION|BANK_SCHEME|BANK|B3401|0",
                           "D|POSITION|BANK_SCHEME|PROVINCE|310000|250", "D|POSITION|BANK_SCHEME|PROVINCE|320000|-800",
                           "D|POSITION|BANK_SCHEME|PROVINCE|330000|550", "D|POSITION|BANK_SCHEME|PROVINCE|340000|0"}) {
    EXPECT_NE(summary.find(Cat("\n", line, "\n")), std::string::npos) << line;
  }
}

TEST_F(ClearingFilesTest, SettlementAtTheInsuredFundsOwnInstitutionIsOwedOnlyToTheInstitution) {
  const std::map<std::string, std::string> files = Render();
  const std::string fund = files.at("funds/330100.txt");
  // SETTLE_1 (insured by 310100, 7000 cleared) and SETTLE_2 (its own insured, 4000 cleared).
  EXPECT_NE(fund.find("\nD|PAYABLE_TO_INSTITUTION|H_HZ_1|2|0|9500|1500|4000|11000\n"), std::string::npos) << fund;
  EXPECT_EQ(fund.find("D|PAYABLE_TO_FUND|330100|"), std::string::npos) << fund;
  EXPECT_EQ(fund.find("D|RECEIVABLE_FROM_FUND|330100|"), std::string::npos) << fund;
  EXPECT_NE(fund.find("net_position_fen=-4600|"), std::string::npos) << fund;
  EXPECT_NE(files.at("funds/330100.detail.txt").find("\nD|SETTLE_2|SETTLEMENT|BOTH|"), std::string::npos);
}

TEST_F(ClearingFilesTest, CancellationIsListedAndTakesItsSettlementOutOfTheTotals) {
  const std::map<std::string, std::string> files = Render();
  // SETTLE_3 (1500 cleared) cancelled, SETTLE_4 (600 cleared) stands.
  EXPECT_NE(files.at("funds/330100.txt").find("\nD|PAYABLE_TO_FUND|310100|2|1|600|0|200|600\n"), std::string::npos);
  EXPECT_NE(files.at("funds/310100.txt").find("\nD|RECEIVABLE_FROM_FUND|330100|2|1|600|0|200|600\n"),
            std::string::npos);
  for (const char* path : {"funds/330100.detail.txt", "funds/310100.detail.txt"}) {
    const std::string detail = files.at(path);
    EXPECT_NE(detail.find("\nD|SETTLE_3|SETTLEMENT|"), std::string::npos) << path;
    EXPECT_NE(detail.find("\nD|CANCEL_3|CANCELLATION|"), std::string::npos) << path;
    EXPECT_NE(detail.find("|330100|P_SH_1|310100|2026-11-27T11:00:00.000+08:00|2000|1200|300|500|N|SETTLE_3|0|4\n"),
              std::string::npos)
        << path;
  }
}

TEST_F(ClearingFilesTest, LateTapIsMarkedLateWithItsOriginalTime) {
  const std::string detail = Render().at("banks/B3101.detail.txt");
  EXPECT_NE(detail.find("\nD|TAP_L1|TAP|ACQUIRER|622848******3333|M_SH_METRO|GATE_03|2026-11-26T23:50:00.000+08:00|"
                        "500|Y||1|1\n"),
            std::string::npos)
      << detail;
}

TEST_F(ClearingFilesTest, DetailLinesFollowPartitionThenOffset) {
  const std::string detail = Render().at("banks/B3101.detail.txt");
  std::vector<std::pair<int64_t, int64_t>> keys;
  for (const std::string& line : Lines(detail)) {
    if (!line.starts_with("D|")) continue;
    std::vector<std::string> fields;
    std::istringstream in(line);
    for (std::string field; std::getline(in, field, '|');) fields.push_back(field);
    ASSERT_EQ(fields.size(), 13u) << line;
    keys.emplace_back(std::stoll(fields[11]), std::stoll(fields[12]));
  }
  // TAP_A1, TAP_A2, TAP_B1, R_A1 on partition 0, then TAP_L1 on partition 1, though TAP_L1 was
  // committed before R_A1 (earlier in the same batch).
  const std::vector<std::pair<int64_t, int64_t>> expected = {{0, 0}, {0, 1}, {0, 2}, {0, 3}, {1, 1}};
  EXPECT_EQ(keys, expected) << detail;
}

TEST_F(ClearingFilesTest, ManifestListsEveryFileWithItsHashAndSizeAndIsSigned) {
  const std::map<std::string, std::string> files = Render();
  const std::vector<std::string> lines = Lines(files.at("MANIFEST"));
  ASSERT_EQ(lines.size(), files.size());  // one per other file, plus the signature
  std::string signed_part;
  size_t index = 0;
  for (const auto& [path, bytes] : files) {
    if (path == "MANIFEST") continue;
    EXPECT_EQ(lines[index], Cat(Sha256Hex(bytes), " ", bytes.size(), " ", path));
    signed_part += lines[index] + "\n";
    ++index;
  }
  auto hmac = HmacSha256::Create(test::kGoldenManifestKey);
  ASSERT_TRUE(hmac.ok());
  EXPECT_EQ(lines.back(), Cat("HMAC-SHA256 ", (*hmac)->MacHex(signed_part)));
}

TEST_F(ClearingFilesTest, RenderingAgainGivesIdenticalBytes) {
  const std::map<std::string, std::string> first = Render();
  const std::map<std::string, std::string> second = Render();
  EXPECT_TRUE(first == second);
  // And from the store reopened, as after a restart of the daemon.
  store_.reset();
  auto store = RocksStore::Open(dir_.path() + "/state");
  ASSERT_TRUE(store.ok()) << store.status();
  store_ = *std::move(store);
  EXPECT_TRUE(Render() == first);
}

TEST_F(ClearingFilesTest, BankRemovedFromTheRegistryStillGetsItsFiles) {
  // Nanjing's bank and museum leave the registry after the window moved money through them.
  std::vector<Bank> banks;
  for (const Bank& bank : golden_.registry->banks()) {
    if (bank.bank_id != "B3201") banks.push_back(bank);
  }
  std::vector<Merchant> merchants;
  for (const Merchant& merchant : golden_.registry->merchants()) {
    if (merchant.bank_id != "B3201") merchants.push_back(merchant);
  }
  std::array<int32_t, kCategoryCount> fee_bps{};
  for (size_t i = 0; i < kCategoryCount; ++i) fee_bps[i] = golden_.registry->fee_bps(static_cast<Category>(i));
  auto smaller =
      Registry::FromParts(golden_.registry->provinces(), banks, golden_.registry->funds(), merchants, fee_bps);
  ASSERT_TRUE(smaller.ok()) << smaller.status();
  MemoryFileSet sink;
  absl::StatusOr<ClosedWindow> window = LoadClosedWindow(*store_, test::kGoldenDay, **smaller);
  ASSERT_TRUE(window.ok()) << window.status();
  ASSERT_TRUE(RenderWindowFiles(*store_, *window, sink, digests_).ok());
  EXPECT_TRUE(sink.files() == Render());
}

TEST_F(ClearingFilesTest, RegistryChangedAfterTheCloseRendersTheSameFiles) {
  // After the close the idle bank B3401 and the idle fund 320100 leave, a new bank and a new
  // fund join: the window's files are those of the registry it closed with.
  std::vector<Bank> banks;
  for (const Bank& bank : golden_.registry->banks()) {
    if (bank.bank_id != "B3401") banks.push_back(bank);
  }
  banks.push_back(Bank{.bank_id = "B3109", .name = "Joined later", .province = "310000"});
  std::vector<Fund> funds;
  for (const Fund& fund : golden_.registry->funds()) {
    if (fund.fund_id != "320100") funds.push_back(fund);
  }
  Fund joined = funds.front();
  joined.fund_id = "310199";
  funds.push_back(joined);
  std::array<int32_t, kCategoryCount> fee_bps{};
  for (size_t i = 0; i < kCategoryCount; ++i) fee_bps[i] = golden_.registry->fee_bps(static_cast<Category>(i));
  auto changed = Registry::FromParts(golden_.registry->provinces(), banks, funds, golden_.registry->merchants(), fee_bps);
  ASSERT_TRUE(changed.ok()) << changed.status();
  MemoryFileSet sink;
  absl::StatusOr<ClosedWindow> window = LoadClosedWindow(*store_, test::kGoldenDay, **changed);
  ASSERT_TRUE(window.ok()) << window.status();
  ASSERT_TRUE(RenderWindowFiles(*store_, *window, sink, digests_).ok());
  const std::map<std::string, std::string> golden = Render();
  EXPECT_TRUE(sink.files() == golden);
  EXPECT_TRUE(golden.contains("banks/B3401.txt"));
  EXPECT_FALSE(sink.files().contains("banks/B3109.txt"));
}

// ---- invariants ----------------------------------------------------------------------------------

TEST_F(ClearingFilesTest, GoldenWindowHoldsEveryInvariant) {
  const absl::StatusOr<std::vector<std::string>> violations = CheckWindowInvariants(*store_, golden_.window);
  ASSERT_TRUE(violations.ok()) << violations.status();
  EXPECT_TRUE(violations->empty()) << (*violations)[0];
}

TEST_F(ClearingFilesTest, LineThatDisagreesWithItsAppliedRecordsStopsEveryFile) {
  // One fen more on a tap line: every position still sums to zero, only the details show it.
  LineTotals line = StoredLine(kMetroLineFromHangzhouCards);
  line.amount_fen += 1;
  PutLine(kMetroLineFromHangzhouCards, line);
  const std::string message = ExpectRefused(absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(message.find("netting line 'T|B3301|330000|M_SH_METRO|B3101|310000|metro' amount_fen is 301 but its "
                         "applied records add up to 300"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("no file was written"), std::string::npos) << message;
}

// The applied records are summed by line number: records whose line the window lacks, and a line
// no record names (its key has no number at all), are both found.
TEST_F(ClearingFilesTest, AppliedRecordsOfALineTheWindowLacksAndALineWithoutRecordsAreRefused) {
  std::string key;
  LineStoreKey(test::kGoldenDay, kMetroLineFromHangzhouCards, key);
  std::unique_ptr<StateWriteBatch> write = store_->NewWriteBatch();
  write->Delete(Table::kLines, key);
  ASSERT_TRUE(store_->Write(*write).ok());
  const std::string unnumbered = "T|B3301|330000|M_NOBODY|B3101|310000|metro";
  PutLine(unnumbered, LineTotals{.count = 5, .amount_fen = 700});
  const std::string message = ExpectRefused(absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(message.find(Cat("applied records net into line '", kMetroLineFromHangzhouCards,
                             "' (count 1, reversal_count 1) which the window does not have")),
            std::string::npos)
      << message;
  EXPECT_NE(message.find(Cat("netting line '", unnumbered, "' count is 5 but its applied records add up to 0")),
            std::string::npos)
      << message;
}

TEST_F(ClearingFilesTest, SettlementLineWhosePartsDoNotAddUpIsRefused) {
  const std::string line_key = "M|310100|310000|H_HZ_1|330100|330000";
  LineTotals line = StoredLine(line_key);
  line.cash_pay_fen -= 1;
  PutLine(line_key, line);
  const std::string message = ExpectRefused(absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(message.find("cash_pay_fen is 2999 but its applied records add up to 3000"), std::string::npos) << message;
  EXPECT_NE(message.find("amount_fen 10000 is not fund_pay_fen + account_pay_fen + cash_pay_fen"), std::string::npos)
      << message;
}

TEST_F(ClearingFilesTest, ReversalWithoutItsAppliedCancellationIsRefused) {
  // The line says SETTLE_1's fund pay was cancelled, but no cancellation of it was applied.
  const std::string line_key = "M|310100|310000|H_HZ_1|330100|330000";
  LineTotals line = StoredLine(line_key);
  line.reversal_count = 1;
  line.reversed_amount_fen = 6'000;
  line.reversed_fund_pay_fen = 6'000;
  PutLine(line_key, line);
  const std::string message = ExpectRefused(absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(message.find("reversal_count is 1 but its applied records add up to 0"), std::string::npos) << message;
  EXPECT_NE(message.find("reversed_fund_pay_fen is 6000 but its applied records add up to 0"), std::string::npos)
      << message;
}

TEST_F(ClearingFilesTest, CounterThatDisagreesWithTheAppliedRecordsIsRefused) {
  WindowCounters counters = StoredCounters();
  EXPECT_EQ(counters.applied_count, 12);
  counters.late_count = 0;
  PutCounters(counters);
  const std::string message = ExpectRefused(absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(message.find("counter late_count is 0 but the window has 1 late applied records"), std::string::npos)
      << message;
}

TEST_F(ClearingFilesTest, WindowStillOpenIsNotRendered) {
  PutWindowState(WindowState::kClosing);
  const std::string message = ExpectRefused(absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(message.find("window 20261127 is closing, not closed"), std::string::npos) << message;
}

TEST_F(ClearingFilesTest, CloseTimeOtherThanTheStoredOneIsRefused) {
  golden_.window.closed_at_ms += 1;
  const std::string message = ExpectRefused(absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(message.find("closed at 2026-11-28T00:15:00.000+08:00 by the store, not at 2026-11-28T00:15:00.001+08:00"),
            std::string::npos)
      << message;
}

TEST_F(ClearingFilesTest, FeesOtherThanTheFrozenOnesAreRefused) {
  // A registry reloaded after the close must not change the window's fees.
  golden_.window.fees.basis_points[static_cast<size_t>(Category::kBus)] = 16;
  const std::string message = ExpectRefused(absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(message.find("was closed with fee bank B3101 and its own fee rates"), std::string::npos) << message;
}

TEST_F(ClearingFilesTest, FilesWrittenStateStillRendersTheSameBytes) {
  const std::map<std::string, std::string> before = Render();
  PutWindowState(WindowState::kFilesWritten);
  EXPECT_TRUE(Render() == before);
}

}  // namespace
}  // namespace yrd
