// The file-system sink of the clearing files (atomic, never overwriting a different file,
// idempotent on identical ones), its SHA-256, and `clearing-report verify` on a window written to
// a temporary directory: it accepts the files as written and catches one changed byte in any
// file, a removed line, a change re-signed with the key, and a file the MANIFEST does not list.
#include "adapters/fs/file_set.h"

#include <sys/stat.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "adapters/crypto/hmac.h"
#include "adapters/crypto/payload_sealer.h"
#include "adapters/crypto/sha256.h"
#include "adapters/rocksdb/rocks_store.h"
#include "engine/base/strings.h"
#include "engine/readers/store_readers.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/golden/golden_window.h"
#include "tests/support/events.h"
#include "tools/clearing-report/match.h"
#include "tools/clearing-report/verify.h"

namespace yrd {
namespace {

namespace fs = std::filesystem;

std::string ReadWhole(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}
void WriteWhole(const fs::path& path, std::string_view bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// Every regular file under `dir`, by path relative to it, hidden ones included.
std::map<std::string, std::string> FilesUnder(const fs::path& dir) {
  std::map<std::string, std::string> files;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (entry.is_regular_file()) files[fs::relative(entry.path(), dir).generic_string()] = ReadWhole(entry.path());
  }
  return files;
}

absl::Status Write(DirectoryFileSet& set, const std::string& path, std::string_view bytes) {
  absl::StatusOr<OutputFile*> file = set.Create(path);
  if (!file.ok()) return file.status();
  return (*file)->Append(bytes);
}

class DirectoryFileSetTest : public ::testing::Test {
 protected:
  std::unique_ptr<DirectoryFileSet> Open() {
    auto set = DirectoryFileSet::Open(output_dir_, test::kGoldenDay);
    EXPECT_TRUE(set.ok()) << set.status();
    return set.ok() ? *std::move(set) : nullptr;
  }

  test::TempDir dir_;
  const std::string output_dir_ = dir_.path() + "/out";
  const fs::path window_dir_ = fs::path(output_dir_) / "20261127";
};

TEST_F(DirectoryFileSetTest, WritesEveryFileUnderTheWindowDirectoryWithMode0640) {
  std::unique_ptr<DirectoryFileSet> set = Open();
  ASSERT_NE(set, nullptr);
  EXPECT_EQ(set->window_dir(), window_dir_.string());
  ASSERT_TRUE(Write(*set, "banks/B3101.txt", "H|bank\n").ok());
  ASSERT_TRUE(Write(*set, "summary.txt", "H|summary\n").ok());
  ASSERT_TRUE(Write(*set, "MANIFEST", "signed\n").ok());
  // Nothing is visible under a final name before the commit.
  EXPECT_FALSE(fs::exists(window_dir_ / "MANIFEST"));
  ASSERT_TRUE(set->Commit().ok());
  const std::map<std::string, std::string> expected = {
      {"MANIFEST", "signed\n"}, {"banks/B3101.txt", "H|bank\n"}, {"summary.txt", "H|summary\n"}};
  EXPECT_EQ(FilesUnder(window_dir_), expected);  // no temporary file is left
  for (const auto& [path, bytes] : expected) {
    struct stat status {};
    ASSERT_EQ(::stat((window_dir_ / path).c_str(), &status), 0);
    EXPECT_EQ(status.st_mode & 0777, 0640u) << path;
  }
}

TEST_F(DirectoryFileSetTest, FileLargerThanTheBufferIsWrittenWhole) {
  std::string bytes;
  for (size_t i = 0; bytes.size() < 3 * kFileBufferBytes + 17; ++i) bytes += Cat("D|line|", i, "\n");
  std::unique_ptr<DirectoryFileSet> set = Open();
  ASSERT_NE(set, nullptr);
  absl::StatusOr<OutputFile*> file = set->Create("banks/B3101.detail.txt");
  ASSERT_TRUE(file.ok());
  for (size_t at = 0; at < bytes.size(); at += 1000) ASSERT_TRUE((*file)->Append(bytes.substr(at, 1000)).ok());
  ASSERT_TRUE(set->Commit().ok());
  EXPECT_EQ(ReadWhole(window_dir_ / "banks/B3101.detail.txt"), bytes);
}

TEST_F(DirectoryFileSetTest, RefusesToOverwriteAFileWithDifferentContentAndChangesNothing) {
  fs::create_directories(window_dir_);
  WriteWhole(window_dir_ / "summary.txt", "the bank already fetched this\n");
  std::unique_ptr<DirectoryFileSet> set = Open();
  ASSERT_NE(set, nullptr);
  ASSERT_TRUE(Write(*set, "banks/B3101.txt", "new bank file\n").ok());
  ASSERT_TRUE(Write(*set, "summary.txt", "a different summary\n").ok());
  ASSERT_TRUE(Write(*set, "MANIFEST", "new manifest\n").ok());
  const absl::Status status = set->Commit();
  EXPECT_EQ(status.code(), absl::StatusCode::kAlreadyExists) << status;
  EXPECT_NE(std::string(status.message()).find((window_dir_ / "summary.txt").string()), std::string::npos) << status;
  // The old file stands; no other file of the refused set appeared; no temporary file is left.
  const std::map<std::string, std::string> expected = {{"summary.txt", "the bank already fetched this\n"}};
  EXPECT_EQ(FilesUnder(window_dir_), expected);
  EXPECT_EQ(set->Commit().code(), absl::StatusCode::kAlreadyExists);  // a failed set stays failed
}

TEST_F(DirectoryFileSetTest, AcceptsAnIdenticalFileAndLeavesItInPlace) {
  fs::create_directories(window_dir_);
  WriteWhole(window_dir_ / "summary.txt", "same bytes\n");
  struct stat before {};
  ASSERT_EQ(::stat((window_dir_ / "summary.txt").c_str(), &before), 0);
  std::unique_ptr<DirectoryFileSet> set = Open();
  ASSERT_NE(set, nullptr);
  ASSERT_TRUE(Write(*set, "summary.txt", "same bytes\n").ok());
  ASSERT_TRUE(Write(*set, "MANIFEST", "manifest\n").ok());
  ASSERT_TRUE(set->Commit().ok());
  struct stat after {};
  ASSERT_EQ(::stat((window_dir_ / "summary.txt").c_str(), &after), 0);
  EXPECT_EQ(after.st_ino, before.st_ino);
  const std::map<std::string, std::string> expected = {{"MANIFEST", "manifest\n"}, {"summary.txt", "same bytes\n"}};
  EXPECT_EQ(FilesUnder(window_dir_), expected);
}

TEST_F(DirectoryFileSetTest, SetDestroyedUncommittedLeavesNoFile) {
  {
    std::unique_ptr<DirectoryFileSet> set = Open();
    ASSERT_NE(set, nullptr);
    // Larger than the buffer, so that a temporary file exists before the set goes away.
    ASSERT_TRUE(Write(*set, "banks/B3101.detail.txt", std::string(2 * kFileBufferBytes, 'x')).ok());
    ASSERT_TRUE(Write(*set, "MANIFEST", "manifest\n").ok());
  }
  EXPECT_TRUE(FilesUnder(window_dir_).empty());
}

TEST_F(DirectoryFileSetTest, RefusesPathsOutsideTheWindowDirectoryAndTwiceTheSamePath) {
  std::unique_ptr<DirectoryFileSet> set = Open();
  ASSERT_NE(set, nullptr);
  for (const char* path : {"", "../summary.txt", "/etc/passwd", ".MANIFEST.tmp", "banks/.B3101.txt.tmp", "banks/../x",
                           "a/b/c.txt", "banks//x.txt", "banks/", "sp ace.txt", "banks\\x.txt"}) {
    EXPECT_EQ(set->Create(path).status().code(), absl::StatusCode::kInvalidArgument) << "'" << path << "'";
  }
  ASSERT_TRUE(set->Create("summary.txt").ok());
  EXPECT_EQ(set->Create("summary.txt").status().code(), absl::StatusCode::kAlreadyExists);
}

TEST(Sha256, MatchesTheStandardVectorsWholeAndInPieces) {
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  auto hash = Sha256::Create();
  ASSERT_TRUE(hash.ok());
  (*hash)->Update("ab");
  (*hash)->Update("");
  (*hash)->Update("c");
  EXPECT_EQ((*hash)->FinishHex(), Sha256Hex("abc"));
}

TEST(FileSetDigests, RefuseAKeyShorterThanTheMinimum) {
  EXPECT_EQ(MakeFileSetDigests(std::string(kHmacKeyBytesMin - 1, 'k')).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MakeFileSetDigests(std::string(kHmacKeyBytesMin, 'k')).ok());
}

// ---- the golden window on disk, and verify -----------------------------------------------------

class WindowOnDiskTest : public DirectoryFileSetTest {
 protected:
  void SetUp() override {
    auto store = RocksStore::Open(store_path_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    auto golden = test::BuildGoldenWindow(*store_);
    ASSERT_TRUE(golden.ok()) << golden.status();
    golden_ = *std::move(golden);
    auto digests = MakeFileSetDigests(test::kGoldenManifestKey);
    ASSERT_TRUE(digests.ok());
    digests_ = *std::move(digests);
    const absl::Status status = WriteWindow(golden_.window);
    ASSERT_TRUE(status.ok()) << status;
  }

  absl::Status WriteWindow(const ClosedWindow& window) {
    auto set = DirectoryFileSet::Open(output_dir_, window.day);
    if (!set.ok()) return set.status();
    return RenderWindowFiles(*store_, window, **set, digests_);
  }

  absl::StatusOr<std::string> Verify(std::string_view key = test::kGoldenManifestKey) {
    return VerifyWindowFiles(window_dir_.string(), store_.get(), *golden_.registry, key);
  }

  // Rewrites the MANIFEST for the files as they are now, signed with the right key: what a
  // tamperer who holds the key, or a broken writer, would leave.
  void Resign() {
    std::string body;
    for (const auto& [path, bytes] : FilesUnder(window_dir_)) {
      if (path == "MANIFEST") continue;
      body += Cat(Sha256Hex(bytes), " ", bytes.size(), " ", path, "\n");
    }
    auto hmac = HmacSha256::Create(test::kGoldenManifestKey);
    ASSERT_TRUE(hmac.ok());
    WriteWhole(window_dir_ / "MANIFEST", Cat(body, "HMAC-SHA256 ", (*hmac)->MacHex(body), "\n"));
  }

  // Replaces the first occurrence of `from` in a file.
  void Edit(const std::string& path, std::string_view from, std::string_view to) {
    std::string bytes = ReadWhole(window_dir_ / path);
    const size_t at = bytes.find(from);
    ASSERT_NE(at, std::string::npos) << from << " not in " << path;
    bytes.replace(at, from.size(), to);
    WriteWhole(window_dir_ / path, bytes);
  }

  void ExpectMismatch(std::string_view expected_message) {
    const absl::StatusOr<std::string> result = Verify();
    ASSERT_FALSE(result.ok()) << "verify accepted a changed window: " << *result;
    EXPECT_EQ(result.status().code(), absl::StatusCode::kDataLoss) << result.status();
    EXPECT_NE(std::string(result.status().message()).find(expected_message), std::string::npos) << result.status();
  }

  const std::string store_path_ = dir_.path() + "/state";
  std::unique_ptr<RocksStore> store_;
  test::GoldenWindow golden_;
  Digests digests_;
};

TEST_F(WindowOnDiskTest, FilesOnDiskAreTheFilesRenderedInMemory) {
  MemoryFileSet memory;
  ASSERT_TRUE(RenderWindowFiles(*store_, golden_.window, memory, digests_).ok());
  EXPECT_TRUE(FilesUnder(window_dir_) == memory.files());
}

TEST_F(WindowOnDiskTest, WritingTheWindowAgainIsIdempotent) {
  const std::map<std::string, std::string> before = FilesUnder(window_dir_);
  const absl::Status status = WriteWindow(golden_.window);
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_TRUE(FilesUnder(window_dir_) == before);
}

TEST_F(WindowOnDiskTest, WritingOtherBytesUnderTheSameNamesIsRefusedAndTheFilesStand) {
  const std::map<std::string, std::string> before = FilesUnder(window_dir_);
  // Signed with another manifest key: every file is the same except the MANIFEST's signature.
  auto other_key = MakeFileSetDigests("another-manifest-key-not-a-secret");
  ASSERT_TRUE(other_key.ok()) << other_key.status();
  auto set = DirectoryFileSet::Open(output_dir_, test::kGoldenDay);
  ASSERT_TRUE(set.ok());
  const absl::Status status = RenderWindowFiles(*store_, golden_.window, **set, *other_key);
  EXPECT_EQ(status.code(), absl::StatusCode::kAlreadyExists) << status;
  EXPECT_NE(std::string(status.message()).find("/20261127/MANIFEST already exists with different content"),
            std::string::npos)
      << status;
  EXPECT_TRUE(FilesUnder(window_dir_) == before);
}

TEST_F(WindowOnDiskTest, RenderingAgainWithAChangedRegistryFindsTheSameFiles) {
  // The registry lost bank B3401 since the close; the window's files were frozen with it.
  const std::map<std::string, std::string> before = FilesUnder(window_dir_);
  std::vector<Bank> banks;
  for (const Bank& bank : golden_.registry->banks()) {
    if (bank.bank_id != "B3401") banks.push_back(bank);
  }
  std::array<int32_t, kCategoryCount> fee_bps{};
  for (size_t i = 0; i < kCategoryCount; ++i) fee_bps[i] = golden_.registry->fee_bps(static_cast<Category>(i));
  auto smaller = Registry::FromParts(golden_.registry->provinces(), banks, golden_.registry->funds(),
                                     golden_.registry->merchants(), fee_bps);
  ASSERT_TRUE(smaller.ok()) << smaller.status();
  auto set = DirectoryFileSet::Open(output_dir_, test::kGoldenDay);
  ASSERT_TRUE(set.ok());
  absl::StatusOr<ClosedWindow> window = LoadClosedWindow(*store_, test::kGoldenDay, **smaller);
  ASSERT_TRUE(window.ok()) << window.status();
  const absl::Status status = RenderWindowFiles(*store_, *window, **set, digests_);
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_TRUE(FilesUnder(window_dir_) == before);
}

TEST_F(WindowOnDiskTest, VerifyAcceptsTheFilesAsWritten) {
  const absl::StatusOr<std::string> result = Verify();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->starts_with("window 20261127: 15 files match the MANIFEST")) << *result;
  EXPECT_TRUE(result->ends_with("and the store gives the same bytes")) << *result;
}

TEST_F(WindowOnDiskTest, VerifyWithoutAStoreChecksTheFilesOnTheirOwn) {
  absl::StatusOr<std::string> result =
      VerifyWindowFiles(window_dir_.string(), nullptr, *golden_.registry, test::kGoldenManifestKey);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->ends_with("not compared with a store (none given)")) << *result;
  Edit("banks/B3101.txt", "|841\n", "|842\n");
  result = VerifyWindowFiles(window_dir_.string(), nullptr, *golden_.registry, test::kGoldenManifestKey);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kDataLoss) << result.status();
}

TEST_F(WindowOnDiskTest, VerifyOfARetiredWindowChecksTheFilesAndSaysTheStoreHasNoneLeft) {
  absl::StatusOr<std::optional<WindowRecord>> stored = ReadWindowRecord(*store_, test::kGoldenDay);
  ASSERT_TRUE(stored.ok() && stored->has_value());
  WindowRecord retired = **stored;
  retired.retired_at_ms = retired.closed_at_ms + 93 * kDayMs;
  std::string key, value;
  WindowStateKey(test::kGoldenDay, key);
  EncodeWindowRecord(retired, value);
  std::unique_ptr<StateWriteBatch> write = store_->NewWriteBatch();
  write->Put(Table::kMeta, key, value);
  ASSERT_TRUE(store_->Write(*write).ok());
  const absl::StatusOr<std::string> result = Verify();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_NE(result->find("not compared with the store, which retired the window's records at"), std::string::npos)
      << *result;
}

TEST_F(WindowOnDiskTest, VerifyCatchesOneChangedByteInAnyFile) {
  const std::map<std::string, std::string> files = FilesUnder(window_dir_);
  ASSERT_EQ(files.size(), 16u);  // 15 files and the MANIFEST
  for (const auto& [path, bytes] : files) {
    for (const size_t at : {size_t{0}, bytes.size() / 2, bytes.size() - 2, bytes.size() - 1}) {
      std::string changed = bytes;
      changed[at] = static_cast<char>(changed[at] ^ 0x01);
      WriteWhole(window_dir_ / path, changed);
      const absl::StatusOr<std::string> result = Verify();
      EXPECT_FALSE(result.ok()) << "byte " << at << " of " << path << " changed, yet verify said: " << *result;
      WriteWhole(window_dir_ / path, bytes);
    }
  }
  EXPECT_TRUE(Verify().ok());
}

TEST_F(WindowOnDiskTest, VerifyCatchesARemovedLine) {
  Edit("banks/B3101.txt", "D|ISSUER_DEBIT|330000|1|400|0|0|400\n", "");
  ExpectMismatch("banks/B3101.txt: has ");  // the size the MANIFEST lists
}

TEST_F(WindowOnDiskTest, VerifyCatchesARemovedLineEvenUnderAResignedManifest) {
  Edit("banks/B3101.txt", "D|ISSUER_DEBIT|330000|1|400|0|0|400\n", "");
  Resign();
  ExpectMismatch("banks/B3101.txt line 6: trailer record_count is 5 but the file has 4 D records");
}

TEST_F(WindowOnDiskTest, VerifyCatchesATrailerThatIsNotTheSumOfItsRecords) {
  Edit("banks/B3101.txt", "D|ISSUER_DEBIT|330000|1|400|0|0|400\n", "D|ISSUER_DEBIT|330000|1|401|0|0|401\n");
  Resign();
  ExpectMismatch("banks/B3101.txt: trailer total_debit_fen is 600 but its records add up to 601");
}

TEST_F(WindowOnDiskTest, VerifyCatchesASignedChangeThatOnlyTheStoreContradicts) {
  Edit("banks/B3101.detail.txt", "|GATE_07|", "|GATE_08|");
  Resign();
  ExpectMismatch(
      "banks/B3101.detail.txt line 2: differs from what the store gives: the file has "
      "'D|TAP_A1|TAP|ACQUIRER|621700*********0123|M_SH_METRO|GATE_08|");
}

TEST_F(WindowOnDiskTest, VerifyCatchesAManifestSignedWithAnotherKey) {
  const absl::StatusOr<std::string> result = Verify("another-key-of-sufficient-length");
  ASSERT_FALSE(result.ok());
  EXPECT_NE(std::string(result.status().message()).find("MANIFEST: the HMAC-SHA256 of its lines does not match"),
            std::string::npos)
      << result.status();
}

TEST_F(WindowOnDiskTest, VerifyCatchesAFileTheManifestDoesNotList) {
  WriteWhole(window_dir_ / "banks" / "B9999.txt", "H|format=YRD-BANK\n");
  ExpectMismatch("banks/B9999.txt: is in the window directory but not in the MANIFEST");
}

TEST_F(WindowOnDiskTest, VerifyCommandExitsZeroOnGoodFilesAndOneOnAChangedByte) {
  // The report tool opens the store as a secondary instance; the daemon's store stays open here.
  std::string key_hex;
  for (const unsigned char c : test::kGoldenManifestKey)
    key_hex += Cat("0123456789abcdef"[c >> 4], "0123456789abcdef"[c & 15]);
  const fs::path key_file = fs::path(dir_.path()) / "manifest.key";
  WriteWhole(key_file, key_hex + "\n");
  fs::permissions(key_file, fs::perms::owner_read | fs::perms::owner_write);
  const std::string command =
      Cat(YRD_REPORT_BINARY, " verify ", window_dir_.string(), " --store ", store_path_, " --registry ",
          test::GoldenDir(), "/registry.toml --key-file ", key_file.string(), " > ", dir_.path(), "/verify.out 2>&1");
  int status = std::system(command.c_str());
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << ReadWhole(fs::path(dir_.path()) / "verify.out");
  EXPECT_TRUE(ReadWhole(fs::path(dir_.path()) / "verify.out").starts_with("window 20261127: 15 files match"));

  // As JSON: one object, typed.
  const std::string json_command =
      Cat(YRD_REPORT_BINARY, " --format json verify ", window_dir_.string(), " --store ", store_path_, " --registry ",
          test::GoldenDir(), "/registry.toml --key-file ", key_file.string(), " > ", dir_.path(), "/verify.json");
  status = std::system(json_command.c_str());
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  nlohmann::json verdict = nlohmann::json::parse(ReadWhole(fs::path(dir_.path()) / "verify.json"));
  EXPECT_EQ(verdict.at("verified"), true);
  EXPECT_TRUE(verdict.at("summary").get<std::string>().starts_with("window 20261127: 15 files match"));

  Edit("funds/330100.txt", "11000", "11001");
  status = std::system(command.c_str());
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);
  EXPECT_NE(ReadWhole(fs::path(dir_.path()) / "verify.out").find("funds/330100.txt: sha256 is "), std::string::npos)
      << ReadWhole(fs::path(dir_.path()) / "verify.out");
  status = std::system(json_command.c_str());
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);
  verdict = nlohmann::json::parse(ReadWhole(fs::path(dir_.path()) / "verify.json"));
  EXPECT_EQ(verdict.at("verified"), false);
  EXPECT_EQ(verdict.at("code"), "DATA_LOSS");
  EXPECT_NE(verdict.at("error").get<std::string>().find("funds/330100.txt: sha256 is "), std::string::npos);
}

// The hotline's card history: `clearing-report card` hashes the number with the card-token key
// and lists the card's applied events with the refunds and cancellations of them, masked; the
// number itself appears nowhere in the output.
TEST_F(WindowOnDiskTest, CardCommandListsACardsEventsWithTheirRefundsAndCancellationsMasked) {
  std::string key_hex;
  for (const unsigned char c : test::kGoldenCardTokenKey)
    key_hex += Cat("0123456789abcdef"[c >> 4], "0123456789abcdef"[c & 15]);
  const fs::path key_file = fs::path(dir_.path()) / "card-token.key";
  WriteWhole(key_file, key_hex + "\n");
  fs::permissions(key_file, fs::perms::owner_read | fs::perms::owner_write);
  const fs::path out = fs::path(dir_.path()) / "card.out";
  const fs::path errors = fs::path(dir_.path()) / "card.err";
  auto card = [&](std::string_view number, std::string_view more = "") {
    const std::string command = Cat(YRD_REPORT_BINARY, " --store ", store_path_, " --format json card ", number,
                                    " --key-file ", key_file.string(), " ", more, " > ", out.string(), " 2> ",
                                    errors.string());
    const int status = std::system(command.c_str());
    EXPECT_TRUE(WIFEXITED(status));
    return WEXITSTATUS(status);
  };
  auto txn_ids = [&] {
    std::vector<std::string> ids;
    const nlohmann::json rows = nlohmann::json::parse(ReadWhole(out));
    for (const auto& row : rows) ids.push_back(Cat(row.at("txn_id").get<std::string>(), ":", row.at("kind").get<std::string>()));
    return ids;
  };

  ASSERT_EQ(card("6217001234567890123"), 0) << ReadWhole(out);
  EXPECT_EQ(txn_ids(), (std::vector<std::string>{"TAP_A1:tap", "R_A1:refund"}));
  const nlohmann::json rows = nlohmann::json::parse(ReadWhole(out));
  EXPECT_EQ(rows[0].at("amount_fen"), 300);
  EXPECT_EQ(rows[0].at("merchant"), "M_SH_METRO");
  EXPECT_EQ(rows[0].at("card"), "621700*********0123");
  EXPECT_EQ(rows[1].at("amount_fen"), 150);
  EXPECT_EQ(rows[1].at("original_txn_id"), "TAP_A1");
  EXPECT_EQ(ReadWhole(out).find("6217001234567890123"), std::string::npos);

  // Two settlements, one cancelled; the redelivered and the conflicting tap count once.
  ASSERT_EQ(card("330102198505052345", "--window 20261127"), 0) << ReadWhole(out);
  EXPECT_EQ(txn_ids(),
            (std::vector<std::string>{"SETTLE_2:settlement", "SETTLE_3:settlement",
                                      "CANCEL_3:cancellation"}));
  ASSERT_EQ(card("6217009876543210"), 0) << ReadWhole(out);
  EXPECT_EQ(txn_ids(), std::vector<std::string>{"TAP_B1:tap"});
  ASSERT_EQ(card("6217000000000000"), 0) << ReadWhole(out);
  EXPECT_TRUE(txn_ids().empty());
  ASSERT_EQ(card("6217001234567890123", "--window 20261126"), 0) << ReadWhole(out);
  EXPECT_TRUE(txn_ids().empty());

  // Typed with spaces or dashes it is the same number; a malformed one is refused (2) without
  // being echoed.
  ASSERT_EQ(card("'6217 0012 3456 7890 123'"), 0) << ReadWhole(out);
  EXPECT_EQ(txn_ids(), (std::vector<std::string>{"TAP_A1:tap", "R_A1:refund"}));
  ASSERT_EQ(card("6217-0012-3456-7890-123"), 0) << ReadWhole(out);
  EXPECT_EQ(txn_ids(), (std::vector<std::string>{"TAP_A1:tap", "R_A1:refund"}));
  EXPECT_EQ(card("'6217*0012'"), 2);
  EXPECT_EQ(ReadWhole(out).find("6217*0012"), std::string::npos) << ReadWhole(out);
  EXPECT_EQ(ReadWhole(errors).find("6217*0012"), std::string::npos) << ReadWhole(errors);

  // With the store's key check (the daemon writes it), another key is refused instead of giving
  // an empty history.
  absl::StatusOr<std::string> check = DeriveKey(test::kGoldenCardTokenKey, kCardTokenKeyCheckLabel);
  ASSERT_TRUE(check.ok());
  std::unique_ptr<StateWriteBatch> write = store_->NewWriteBatch();
  write->Put(Table::kMeta, kCardTokenKeyCheckKey, *check);
  ASSERT_TRUE(store_->Write(*write).ok());
  ASSERT_EQ(card("6217001234567890123"), 0) << ReadWhole(out);
  EXPECT_EQ(txn_ids().size(), 2u);
  WriteWhole(key_file, "00112233445566778899aabbccddeeff\n");
  EXPECT_EQ(card("6217001234567890123"), 2);
  EXPECT_NE(ReadWhole(errors).find("is not the card-token key this store's tokens were made with"), std::string::npos)
      << ReadWhole(errors);
}

// A merchant's statement: `clearing-report statement` gives, per window and settling bank, the
// MERCHANT_CREDIT line of that bank's file (the closed window's frozen fees), figure for figure.
TEST_F(WindowOnDiskTest, StatementCommandGivesTheMerchantCreditLineOfItsBanksFile) {
  const fs::path out = fs::path(dir_.path()) / "statement.out";
  auto statement = [&](std::string_view merchant) {
    const std::string command = Cat(YRD_REPORT_BINARY, " --store ", store_path_, " --format json statement ", merchant,
                                    " --registry ", test::GoldenDir(), "/registry.toml > ", out.string(), " 2>&1");
    const int status = std::system(command.c_str());
    EXPECT_TRUE(WIFEXITED(status));
    return WEXITSTATUS(status);
  };
  for (const std::string merchant : {"M_SH_METRO", "M_HZ_BUS", "M_NJ_MUSEUM"}) {
    ASSERT_EQ(statement(merchant), 0) << ReadWhole(out);
    const nlohmann::json rows = nlohmann::json::parse(ReadWhole(out));
    ASSERT_EQ(rows.size(), 1u) << rows.dump();
    const nlohmann::json& row = rows[0];
    EXPECT_EQ(row.at("window"), "20261127");
    EXPECT_EQ(row.at("state"), "closed");
    const std::string bank_file = ReadWhole(window_dir_ / "banks" / Cat(row.at("bank").get<std::string>(), ".txt"));
    const std::string line =
        Cat("D|MERCHANT_CREDIT|", merchant, "|", row.at("count").get<int64_t>(), "|", row.at("gross_fen").get<int64_t>(),
            "|", row.at("refund_count").get<int64_t>(), "|", row.at("refunds_fen").get<int64_t>(), "|",
            row.at("fee_fen").get<int64_t>(), "|", row.at("net_fen").get<int64_t>(), "\n");
    EXPECT_NE(bank_file.find(line), std::string::npos) << line << " is not in the bank's file:\n" << bank_file;
  }
  // The metro's fee: 850 fen net at 100 bp is 8.5 fen, rounded half up.
  ASSERT_EQ(statement("M_SH_METRO"), 0);
  EXPECT_EQ(nlohmann::json::parse(ReadWhole(out))[0].at("fee_fen"), 9);
  EXPECT_EQ(statement("M_NOBODY"), 3);
}

// A window closed by a version that did not freeze its fee schedule and participants: the file
// writer, verify and the statement all charge the registry's fees (LoadClosedWindow), so the
// three give one answer.
TEST_F(WindowOnDiskTest, AWindowClosedBeforeFeesWereFrozenGetsOneFeeAnswerFromEveryReader) {
  absl::StatusOr<std::optional<WindowRecord>> stored = ReadWindowRecord(*store_, test::kGoldenDay);
  ASSERT_TRUE(stored.ok() && stored->has_value());
  WindowRecord earlier = **stored;
  earlier.fee_basis_points = {};
  earlier.fee_bank_id.clear();
  earlier.registered_bank_ids.clear();
  earlier.registered_fund_ids.clear();
  earlier.registered_province_codes.clear();
  std::string key, value;
  WindowStateKey(test::kGoldenDay, key);
  EncodeWindowRecord(earlier, value);
  std::unique_ptr<StateWriteBatch> write = store_->NewWriteBatch();
  write->Put(Table::kMeta, key, value);
  ASSERT_TRUE(store_->Write(*write).ok());
  fs::remove_all(window_dir_);
  absl::StatusOr<ClosedWindow> window = LoadClosedWindow(*store_, test::kGoldenDay, *golden_.registry);
  ASSERT_TRUE(window.ok()) << window.status();
  EXPECT_EQ(window->fees.fee_bank_id, golden_.registry->fee_bank().bank_id);
  ASSERT_TRUE(WriteWindow(*window).ok());
  // The files are those of the frozen schedule, which equalled the registry's.
  MemoryFileSet memory;
  ASSERT_TRUE(RenderWindowFiles(*store_, golden_.window, memory, digests_).ok());
  EXPECT_TRUE(FilesUnder(window_dir_) == memory.files());
  const absl::StatusOr<std::string> verified = Verify();
  EXPECT_TRUE(verified.ok()) << verified.status();
  const fs::path out = fs::path(dir_.path()) / "statement.out";
  const std::string command = Cat(YRD_REPORT_BINARY, " --store ", store_path_, " --format json statement M_SH_METRO",
                                  " --registry ", test::GoldenDir(), "/registry.toml > ", out.string(), " 2>&1");
  ASSERT_EQ(std::system(command.c_str()), 0) << ReadWhole(out);
  const nlohmann::json rows = nlohmann::json::parse(ReadWhole(out));
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].at("fee_fen"), 9);
  const std::string bank_file = ReadWhole(window_dir_ / "banks" / "B3101.txt");
  EXPECT_NE(bank_file.find("D|MERCHANT_CREDIT|M_SH_METRO|"), std::string::npos);
  EXPECT_NE(bank_file.find("|9|841\n"), std::string::npos) << bank_file;
}

// A bank's returned file matched against our detail file: identical, it all matches; an amount
// changed, a record left out and one added are each reported, with the amounts.
TEST_F(WindowOnDiskTest, MatchCommandReportsMismatchedMissingAndUnexpectedRecords) {
  const fs::path returned = fs::path(dir_.path()) / "returned.txt";
  const fs::path out = fs::path(dir_.path()) / "match.out";
  auto match = [&] {
    const std::string command = Cat(YRD_REPORT_BINARY, " --store ", store_path_, " --format json match ",
                                    window_dir_.string(), " ", returned.string(), " > ", out.string(), " 2>/dev/null");
    const int status = std::system(command.c_str());
    EXPECT_TRUE(WIFEXITED(status));
    return WEXITSTATUS(status);
  };
  const std::string ours = ReadWhole(window_dir_ / "banks" / "B3101.detail.txt");
  WriteWhole(returned, ours);
  ASSERT_EQ(match(), 0) << ReadWhole(out);
  EXPECT_TRUE(nlohmann::json::parse(ReadWhole(out)).empty());

  std::string theirs = ours;
  const size_t tap = theirs.find("D|TAP_A2|");
  ASSERT_NE(tap, std::string::npos);
  theirs.replace(theirs.find("|200|", tap), 5, "|210|");
  const size_t refund = theirs.find("D|R_A1|");
  ASSERT_NE(refund, std::string::npos);
  theirs.erase(refund, theirs.find('\n', refund) + 1 - refund);
  theirs.insert(theirs.find("\nT|") + 1,
                "D|TAP_X|TAP|ACQUIRER|621700******9999|M_SH_METRO|GATE_01|2026-11-27T12:00:00.000+08:00|700|N||0|9\n");
  WriteWhole(returned, theirs);
  ASSERT_EQ(match(), 1) << ReadWhole(out);
  const nlohmann::json rows = nlohmann::json::parse(ReadWhole(out));
  ASSERT_EQ(rows.size(), 3u) << rows.dump();
  auto row = [](std::string status, std::string txn, int64_t ours_fen, std::optional<int64_t> theirs_fen) {
    nlohmann::json r = {{"status", status}, {"txn_id", txn}, {"kind", "TAP"}, {"field", "amount_fen"}};
    r["ours"] = ours_fen < 0 ? nlohmann::json(nullptr) : nlohmann::json(ours_fen);
    r["theirs"] = theirs_fen ? nlohmann::json(*theirs_fen) : nlohmann::json(nullptr);
    return r;
  };
  EXPECT_EQ(rows[0], row("mismatched", "TAP_A2", 200, 210));
  EXPECT_EQ(rows[1].at("status"), "missing");
  EXPECT_EQ(rows[1].at("txn_id"), "R_A1");
  EXPECT_EQ(rows[1].at("ours"), 150);
  EXPECT_EQ(rows[2], row("unexpected", "TAP_X", -1, 700));

  // An amount in their file that is no integer is shown as they wrote it, never a crash.
  std::string odd = ours;
  const size_t odd_tap = odd.find("D|TAP_A2|");
  odd.replace(odd.find("|200|", odd_tap), 5, "|2.00|");
  WriteWhole(returned, odd);
  const int odd_status = match();
  EXPECT_TRUE(odd_status == 1 || odd_status == 2) << ReadWhole(out);
  if (odd_status == 1) {
    const nlohmann::json odd_rows = nlohmann::json::parse(ReadWhole(out));
    ASSERT_EQ(odd_rows.size(), 1u) << odd_rows.dump();
    EXPECT_EQ(odd_rows[0].at("theirs"), "2.00");
  }

  // A fund's file compares every amount.
  std::string fund = ReadWhole(window_dir_ / "funds" / "330100.detail.txt");
  const size_t settle = fund.find("D|SETTLE_2|");
  ASSERT_NE(settle, std::string::npos);
  fund.replace(fund.find("|3500|", settle), 6, "|3400|");
  WriteWhole(returned, fund);
  ASSERT_EQ(match(), 1);
  const nlohmann::json fund_rows = nlohmann::json::parse(ReadWhole(out));
  ASSERT_EQ(fund_rows.size(), 1u) << fund_rows.dump();
  EXPECT_EQ(fund_rows[0].at("field"), "fund_pay_fen");
  EXPECT_EQ(fund_rows[0].at("ours"), 3500);
  EXPECT_EQ(fund_rows[0].at("theirs"), 3400);

  // Not something to compare: exit 2.
  WriteWhole(returned, "H|format=YRD-BANK-DETAIL|version=1|window_date=20261126|bank_id=B3101\n");
  EXPECT_EQ(match(), 2);
  WriteWhole(returned, "not a detail file\n");
  EXPECT_EQ(match(), 2);
}

TEST(MatchReturnedFile, RefusesARepeatedRecordAndARecordOfTheWrongShape) {
  const std::string header = "H|format=YRD-BANK-DETAIL|version=1|window_date=20261127|bank_id=B3101\n";
  const std::string record = "D|TAP_A1|TAP|ACQUIRER|621700******0123|M1|G1|2026-11-27T08:01:00.000+08:00|300|N||0|0\n";
  EXPECT_TRUE(MatchReturnedFile(header + record, header + record).ok());
  const absl::StatusOr<MatchResult> repeated = MatchReturnedFile(header + record, header + record + record);
  EXPECT_EQ(repeated.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(repeated.status().message().find("appears twice"), std::string_view::npos) << repeated.status();
  EXPECT_EQ(MatchReturnedFile(header + record, header + "D|TAP_A1|TAP|300\n").status().code(),
            absl::StatusCode::kInvalidArgument);
  const std::string fund_header = "H|format=YRD-FUND-DETAIL|version=1|window_date=20261127|fund_id=330100\n";
  EXPECT_EQ(MatchReturnedFile(header + record, fund_header).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace yrd
