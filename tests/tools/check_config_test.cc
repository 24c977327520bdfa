// clearingd --check-config (the unit's ExecStartPre) refuses what a start would refuse, and says
// why: a missing, world-readable or short admin token, an admin address that is a host name, an
// unknown librdkafka property, a secret that cannot be read. Runs the real binary; nothing here
// connects to a broker.
#include <sys/stat.h>

#include <filesystem>
#include <string>
#include <vector>

#include "adapters/crypto/payload_sealer.h"
#include "adapters/rocksdb/rocks_store.h"
#include "gtest/gtest.h"
#include "tests/support/events.h"
#include "tests/support/process.h"

namespace yrd::testing {
namespace {

class CheckConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WriteFile(dir_ / "registry.toml", test::TestRegistryToml());
    WriteFile(dir_ / "card.key", "00112233445566778899aabbccddeeff\n", 0600);
    WriteFile(dir_ / "manifest.key", "ffeeddccbbaa99887766554433221100\n", 0600);
    WriteFile(dir_ / "admin.token", "check-config-admin-token-0123456789\n", 0600);
  }

  // Runs --check-config on the base configuration plus `extra`; the exit code and the log.
  std::pair<int, std::string> Check(const std::string& admin = "close_token_file = \"admin.token\"\n",
                                    const std::string& extra = "",
                                    const std::string& card_key = "card.key") {
    WriteFile(dir_ / "clearingd.toml",
              "[kafka]\nbootstrap_servers = \"127.0.0.1:1\"\n" + extra +
                  "[store]\npath = \"state\"\n[registry]\npath = \"registry.toml\"\n"
                  "[privacy]\ncard_token_key_file = \"" + card_key + "\"\nmanifest_key_file = \"manifest.key\"\n"
                  "[admin]\n" + admin);
    const int code = RunProgram({YRD_CLEARINGD_BINARY, "--config", dir_ / "clearingd.toml", "--check-config"},
                                std::chrono::seconds(60), nullptr, dir_ / "check.log");
    std::string log = ReadFile(dir_ / "check.log");
    std::remove((dir_ / "check.log").c_str());
    return {code, log};
  }

  TempDir dir_;
};

TEST_F(CheckConfigTest, AGoodConfigurationPasses) {
  const auto [code, log] = Check();
  EXPECT_EQ(code, 0) << log;
  EXPECT_NE(log.find("config_ok"), std::string::npos) << log;
}

TEST_F(CheckConfigTest, AMissingAdminTokenFileIsRefused) {
  const auto [code, log] = Check("close_token_file = \"no-such.token\"\n");
  EXPECT_NE(code, 0);
  EXPECT_NE(log.find("admin_config_invalid"), std::string::npos) << log;
  EXPECT_NE(log.find("No such file or directory"), std::string::npos) << log;
}

TEST_F(CheckConfigTest, AWorldReadableAdminTokenIsRefused) {
  ASSERT_EQ(::chmod((dir_ / "admin.token").c_str(), 0644), 0);
  const auto [code, log] = Check();
  EXPECT_NE(code, 0);
  EXPECT_NE(log.find("readable by everyone"), std::string::npos) << log;
}

TEST_F(CheckConfigTest, AFiveByteAdminTokenIsRefused) {
  WriteFile(dir_ / "admin.token", "short\n", 0600);
  const auto [code, log] = Check();
  EXPECT_NE(code, 0);
  EXPECT_NE(log.find("16 to 1024 bytes long, not 5"), std::string::npos) << log;
}

TEST_F(CheckConfigTest, AHostNameAsAdminAddressIsRefused) {
  const auto [code, log] = Check("address = \"localhost\"\n");
  EXPECT_NE(code, 0);
  EXPECT_NE(log.find("is not an IP address"), std::string::npos) << log;
}

TEST_F(CheckConfigTest, AnUnknownLibrdkafkaPropertyIsRefused) {
  const auto [code, log] = Check("", "[kafka.settings]\n\"no.such.property\" = \"1\"\n");
  EXPECT_NE(code, 0);
  EXPECT_NE(log.find("kafka_config_invalid"), std::string::npos) << log;
  EXPECT_NE(log.find("no.such.property"), std::string::npos) << log;
}

TEST_F(CheckConfigTest, AStoreWhoseTokensWereMadeWithAnotherKeyIsRefused) {
  {
    auto store = RocksStore::Open(dir_ / "state");
    ASSERT_TRUE(store.ok()) << store.status();
    absl::StatusOr<std::string> other = DeriveKey("another-card-token-key-0123", kCardTokenKeyCheckLabel);
    ASSERT_TRUE(other.ok());
    std::unique_ptr<StateWriteBatch> write = (*store)->NewWriteBatch();
    write->Put(Table::kMeta, kCardTokenKeyCheckKey, *other);
    ASSERT_TRUE((*store)->Write(*write).ok());
  }
  const auto [code, log] = Check();
  EXPECT_NE(code, 0);
  EXPECT_NE(log.find("another key than the one this store's card tokens were made with"), std::string::npos) << log;
}

// One shard keeps its store at store.path, several in store.path/shard-<k>: a directory laid out
// for the other count is refused before anything opens it.
TEST_F(CheckConfigTest, AStoreLaidOutForAnotherShardCountIsRefused) {
  const std::string group = "assignment = \"group\"\n";
  const std::string two_shards = "close_token_file = \"admin.token\"\n[pipeline]\nshards = 2\n";
  {
    auto store = RocksStore::Open(dir_ / "state");
    ASSERT_TRUE(store.ok()) << store.status();
  }
  const auto [one_code, one_log] = Check(two_shards, group);
  EXPECT_EQ(one_code, 1) << one_log;
  EXPECT_NE(one_log.find("holds the store of one shard"), std::string::npos) << one_log;
  std::filesystem::remove_all(dir_ / "state");
  {
    auto store = RocksStore::Open(dir_ / "state/shard-0");
    ASSERT_TRUE(store.ok()) << store.status();
  }
  const auto [code, log] = Check();
  EXPECT_EQ(code, 1) << log;
  EXPECT_NE(log.find("holds the stores of several shards"), std::string::npos) << log;
  const auto [sharded_code, sharded_log] = Check(two_shards, group);
  EXPECT_EQ(sharded_code, 0) << sharded_log;
}

TEST_F(CheckConfigTest, ASecretThatCannotBeReadSaysWhyNotThatItIsShort) {
  // A path through a regular file: the open fails (as root, a mode 000 file would still open).
  const auto [code, log] = Check("", "", "card.key/inside");
  EXPECT_NE(code, 0);
  EXPECT_NE(log.find("cannot read key file"), std::string::npos) << log;
  EXPECT_NE(log.find("Not a directory"), std::string::npos) << log;
  EXPECT_EQ(log.find("at least 16 bytes"), std::string::npos) << log;
}

}  // namespace
}  // namespace yrd::testing
