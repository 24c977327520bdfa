// No card number at rest (SPEC section 5): after a generated day whose rejected messages carry
// card numbers, run with dead-letter copies in their original form (the harder case: the store
// keeps each copy until it is delivered), no generated card number is in the store directory
// (table files, write-ahead log, MANIFEST, RocksDB's own log), in any value the store holds, in
// the daemon's log, in the clearing files, or in any report's output.
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <vector>

#include "adapters/rocksdb/rocks_store.h"
#include "engine/event/event_file.h"
#include "gtest/gtest.h"
#include "schemas/events_generated.h"
#include "tests/integration/scenario.h"

namespace yrd::testing {
namespace {

namespace fs = std::filesystem;

// Every card number of the generated day: read from its event file.
std::set<std::string> CardNumbers(const std::string& event_file) {
  std::set<std::string> cards;
  absl::StatusOr<EventFileReader> reader = EventFileReader::Open(event_file);
  EXPECT_TRUE(reader.ok()) << reader.status();
  if (!reader.ok()) return cards;
  absl::StatusOr<std::vector<EventRecord>> records = reader->ReadAll();
  EXPECT_TRUE(records.ok()) << records.status();
  if (!records.ok()) return cards;
  for (const EventRecord& record : *records) {
    const auto* bytes = reinterpret_cast<const uint8_t*>(record.payload.data());
    flatbuffers::Verifier verifier(bytes, record.payload.size());
    if (record.payload.size() < 8 || !schema::EnvelopeBufferHasIdentifier(bytes) ||
        !schema::VerifyEnvelopeBuffer(verifier)) {
      continue;
    }
    const schema::Envelope* envelope = schema::GetEnvelope(bytes);
    const flatbuffers::String* card = nullptr;
    if (const auto* tap = envelope->event_as_Tap()) card = tap->card_no();
    if (const auto* settlement = envelope->event_as_MedicalSettlement()) card = settlement->card_no();
    if (card != nullptr && card->size() >= 12) cards.emplace(card->str());
  }
  return cards;
}

// The card numbers found in `bytes`, at most a few.
std::vector<std::string> CardsIn(std::string_view bytes, const std::set<std::string>& cards, size_t length) {
  std::vector<std::string> found;
  for (size_t i = 0; i + length <= bytes.size() && found.size() < 3; ++i) {
    if (bytes[i] < '0' || bytes[i] > '9') continue;
    const std::string window(bytes.substr(i, length));
    if (cards.contains(window)) found.push_back(window);
  }
  return found;
}

std::string ReadAll(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Fails the test for every card number in a file under `dir`; returns how many files it read.
int64_t ExpectNoCardInFiles(const fs::path& dir, const std::set<std::string>& cards, const std::set<size_t>& lengths,
                            std::string_view when) {
  int64_t files_scanned = 0;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    const std::string bytes = ReadAll(entry.path());
    ++files_scanned;
    for (const size_t length : lengths) {
      for (const std::string& card : CardsIn(bytes, cards, length)) {
        ADD_FAILURE() << when << ": card number " << card.substr(0, 6) << "... in " << entry.path().string();
      }
    }
  }
  return files_scanned;
}

TEST(Privacy, NoCardNumberIsAtRestAnywhereAfterADayWithRejections) {
  Scenario scenario;
  scenario.StartBroker(4);
  scenario.Prepare(/*merchants=*/200, /*seed=*/53, "", "");
  // Original copies on yrd.dlq: the store must still hold them sealed.
  std::string config = ReadFile(scenario.dir() / "clearingd.toml");
  config.replace(config.find("[kafka]\n"), 8, "[kafka]\ndead_letter_payload = \"original\"\n");
  WriteFile(scenario.dir() / "clearingd.toml", config);
  const std::vector<std::string> shares = {"--conflict-share", "0.02", "--invalid-share", "0.02",
                                           "--malformed-share", "0.01"};
  scenario.Generate(20'000, /*seed=*/59, shares);
  // The same day again into a file, to know its card numbers.
  std::vector<std::string> argv = {YRD_GEN_BINARY, "day", "--registry", scenario.dir() / "registry.toml", "--date",
                                   "20261127", "--events", "20000", "--seed", "59", "--out",
                                   scenario.dir() / "day.events"};
  argv.insert(argv.end(), shares.begin(), shares.end());
  ASSERT_EQ(RunProgram(argv, std::chrono::minutes(2)), 0);
  const std::set<std::string> cards = CardNumbers(scenario.dir() / "day.events");
  ASSERT_GT(cards.size(), 100u);
  std::set<size_t> lengths;
  for (const std::string& card : cards) lengths.insert(card.size());
  fs::remove(scenario.dir() / "day.events");

  auto daemon = scenario.StartDaemon();
  ASSERT_NO_FATAL_FAILURE(scenario.CatchUpThenStop(*daemon));
  ASSERT_GT(OracleExceptionTotal(scenario.oracle()), 500);
  // As the first life left it: its write-ahead log still holds every commit, the dead-letter
  // copies' included (written, then deleted once delivered).
  EXPECT_GT(ExpectNoCardInFiles(scenario.dir().path(), cards, lengths, "after ingest"), 5);
  // The copies on yrd.dlq are the originals, as configured, and say so.
  const auto copies = scenario.DeadLetters(std::chrono::seconds(60));
  ASSERT_TRUE(copies.has_value());
  ASSERT_EQ(static_cast<int64_t>(copies->size()), OracleExceptionTotal(scenario.oracle()));
  for (const Scenario::DeadLetter& copy : *copies) {
    EXPECT_EQ(copy.headers.at("payload"), "original");
    EXPECT_FALSE(copy.headers.at("detail").empty()) << copy.headers.at("reason");
  }
  ASSERT_TRUE(scenario.CloseDayAndWriteFiles(std::chrono::minutes(2))) << ReadFile(scenario.daemon_log());

  // Every report a clerk or the hotline would run, its output kept in the directory.
  const std::string some_card = *cards.begin();
  const std::vector<std::vector<std::string>> reports = {
      {"exceptions", "--limit", "0"},
      {"positions", "--registry", scenario.dir() / "registry.toml"},
      {"outcome", "--registry", scenario.dir() / "registry.toml"},
      {"progress"},
      {"card", some_card, "--key-file", scenario.dir() / "card.key"},
  };
  int index = 0;
  for (const std::vector<std::string>& report : reports) {
    for (const std::string format : {"table", "json"}) {
      std::vector<std::string> report_argv = {YRD_REPORT_BINARY, "--store", scenario.dir() / "state", "--format", format};
      report_argv.insert(report_argv.end(), report.begin(), report.end());
      std::string output;
      EXPECT_EQ(RunProgram(report_argv, std::chrono::minutes(1), &output, scenario.dir() / "report.log"), 0)
          << report[0] << ": " << ReadFile(scenario.dir() / "report.log");
      WriteFile(scenario.dir() / ("report-" + std::to_string(index++) + ".out"), output);
    }
  }

  // Every byte of every file under the scenario's directory: store, logs, files, reports.
  EXPECT_GT(ExpectNoCardInFiles(scenario.dir().path(), cards, lengths, "after the close"), 20);
  // And every key and value the store holds, compressed table files included.
  auto store = RocksStore::Open(scenario.dir() / "state");
  ASSERT_TRUE(store.ok()) << store.status();
  for (size_t table = 0; table < kTableCount; ++table) {
    const absl::Status status =
        (*store)->Scan(static_cast<Table>(table), {}, {}, [&](std::string_view key, std::string_view value) {
          for (const size_t length : lengths) {
            EXPECT_TRUE(CardsIn(key, cards, length).empty()) << "a key of table " << table;
            EXPECT_TRUE(CardsIn(value, cards, length).empty()) << "a value of table " << table;
          }
          return true;
        });
    EXPECT_TRUE(status.ok()) << status;
  }
}

}  // namespace
}  // namespace yrd::testing
