#include "engine/event/event_file.h"

#include <stdlib.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace yrd {
namespace {

std::string MakeTempDir() {
  std::string pattern = ::testing::TempDir() + "event_file_test.XXXXXX";
  const char* dir = mkdtemp(pattern.data());
  EXPECT_NE(dir, nullptr);
  return pattern;
}

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

struct Record {
  std::string topic;
  std::string key;
  std::string payload;
};

// Writes `records` to a new file and returns its bytes.
std::string WriteFile(const std::string& path, const std::vector<Record>& records) {
  absl::StatusOr<std::unique_ptr<EventFileWriter>> writer = EventFileWriter::Create(path);
  EXPECT_TRUE(writer.ok()) << writer.status();
  for (const Record& record : records) {
    EXPECT_TRUE((*writer)->Append(record.topic, record.key, record.payload).ok());
  }
  EXPECT_EQ((*writer)->record_count(), records.size());
  EXPECT_TRUE((*writer)->Close().ok());
  return ReadBytes(path);
}

std::vector<Record> SampleRecords() {
  return {
      {"yrd.taps", "T1", std::string("\x10\0\0\0YRD1 binary \0 bytes", 22)},
      {"yrd.medical", "", "no key"},
      {"yrd.taps", "T3", ""},
      {"yrd.taps", "T4", std::string(1u << 20, 'x')},
  };
}

TEST(EventFile, RoundTripKeepsRecordsAndOrder) {
  const std::string path = MakeTempDir() + "/events.bin";
  const std::vector<Record> records = SampleRecords();
  const std::string bytes = WriteFile(path, records);
  EXPECT_EQ(bytes.substr(0, 8), "YRDEVT1\n");

  absl::StatusOr<EventFileReader> reader = EventFileReader::Open(path);
  ASSERT_TRUE(reader.ok()) << reader.status();
  absl::StatusOr<std::vector<EventRecord>> read = reader->ReadAll();
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_EQ(read->size(), records.size());
  for (size_t i = 0; i < records.size(); ++i) {
    EXPECT_EQ((*read)[i].topic, records[i].topic);
    EXPECT_EQ((*read)[i].key, records[i].key);
    EXPECT_EQ((*read)[i].payload, records[i].payload);
  }
  // A clean end of file stays a clean end.
  absl::StatusOr<std::optional<EventRecord>> after_end = reader->Next();
  ASSERT_TRUE(after_end.ok());
  EXPECT_FALSE(after_end->has_value());
}

TEST(EventFile, LengthsAreLittleEndian) {
  const std::string path = MakeTempDir() + "/events.bin";
  const std::string bytes = WriteFile(path, {{"ab", "k", std::string(258, 'p')}});
  const std::string expected_prefix = std::string("YRDEVT1\n") + std::string("\x02\0\0\0", 4) + "ab" +
                                      std::string("\x01\0\0\0", 4) + "k" + std::string("\x02\x01\0\0", 4);
  EXPECT_EQ(bytes.substr(0, expected_prefix.size()), expected_prefix);
  EXPECT_EQ(bytes.size(), expected_prefix.size() + 258);
}

TEST(EventFile, FileWithOnlyTheMagicHasNoRecords) {
  const std::string path = MakeTempDir() + "/empty.bin";
  EXPECT_EQ(WriteFile(path, {}), "YRDEVT1\n");
  absl::StatusOr<EventFileReader> reader = EventFileReader::Open(path);
  ASSERT_TRUE(reader.ok());
  absl::StatusOr<std::vector<EventRecord>> read = reader->ReadAll();
  ASSERT_TRUE(read.ok());
  EXPECT_TRUE(read->empty());
}

TEST(EventFile, EveryTruncationInsideARecordIsDataLossNamingTheRecord) {
  const std::string path = MakeTempDir() + "/events.bin";
  const std::vector<Record> records = {{"yrd.taps", "T1", "payload-one"}, {"yrd.medical", "S2", "payload-two"}};
  const std::string bytes = WriteFile(path, records);
  const size_t first_record_end = 8 + 12 + 8 + 2 + 11;
  for (size_t length = 8; length < bytes.size(); ++length) {
    absl::StatusOr<EventFileReader> reader = EventFileReader::FromBytes(bytes.substr(0, length), "cut.bin");
    ASSERT_TRUE(reader.ok());
    absl::StatusOr<std::vector<EventRecord>> read = reader->ReadAll();
    if (length == 8 || length == first_record_end) {
      ASSERT_TRUE(read.ok()) << "cut at " << length << ": " << read.status();
      EXPECT_EQ(read->size(), length == 8 ? 0u : 1u);
      continue;
    }
    ASSERT_FALSE(read.ok()) << "cut at " << length << " was read as complete";
    EXPECT_EQ(read.status().code(), absl::StatusCode::kDataLoss);
    const std::string message(read.status().message());
    EXPECT_NE(message.find("cut.bin: truncated record"), std::string::npos) << message;
    const std::string record_number = length < first_record_end ? "record 0 " : "record 1 ";
    EXPECT_NE(message.find(record_number), std::string::npos) << message;
  }
}

TEST(EventFile, ErrorIsStickyAfterTruncation) {
  const std::string path = MakeTempDir() + "/events.bin";
  const std::string bytes = WriteFile(path, {{"yrd.taps", "T1", "abc"}, {"yrd.taps", "T2", "def"}});
  absl::StatusOr<EventFileReader> reader = EventFileReader::FromBytes(bytes.substr(0, bytes.size() - 1), "cut.bin");
  ASSERT_TRUE(reader.ok());
  absl::StatusOr<std::optional<EventRecord>> first = reader->Next();
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(first->has_value());
  EXPECT_EQ((*first)->key, "T1");
  const absl::StatusOr<std::optional<EventRecord>> second = reader->Next();
  const absl::StatusOr<std::optional<EventRecord>> third = reader->Next();
  EXPECT_EQ(second.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(third.status(), second.status());
}

TEST(EventFile, WrongMagicIsRejected) {
  absl::StatusOr<EventFileReader> short_file = EventFileReader::FromBytes("YRD", "short.bin");
  EXPECT_EQ(short_file.status().code(), absl::StatusCode::kDataLoss);
  absl::StatusOr<EventFileReader> other = EventFileReader::FromBytes("YRDEVT2\n", "other.bin");
  EXPECT_EQ(other.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(std::string(other.status().message()).find("other.bin is not an event file"), std::string::npos);
}

TEST(EventFile, MissingFileIsNotFound) {
  absl::StatusOr<EventFileReader> reader = EventFileReader::Open(MakeTempDir() + "/absent.bin");
  EXPECT_EQ(reader.status().code(), absl::StatusCode::kNotFound);
}

TEST(EventFile, RecordAtTheMaximumRoundTripsAndOneByteMoreIsRefused) {
  const std::string path = MakeTempDir() + "/big.bin";
  absl::StatusOr<std::unique_ptr<EventFileWriter>> writer = EventFileWriter::Create(path);
  ASSERT_TRUE(writer.ok());
  const std::string topic = "yrd.taps";
  const std::string key = "K";
  const size_t payload_bytes_max = kEventFileRecordBytesMax - kEventFileRecordOverheadBytes - topic.size() - key.size();
  const std::string largest(payload_bytes_max, 'z');
  EXPECT_TRUE((*writer)->Append(topic, key, largest).ok());
  const absl::Status too_large = (*writer)->Append(topic, key, std::string(payload_bytes_max + 1, 'z'));
  EXPECT_EQ(too_large.code(), absl::StatusCode::kInvalidArgument);
  // A refused record writes nothing and does not fail the writer.
  EXPECT_TRUE((*writer)->Append(topic, key, "after").ok());
  ASSERT_TRUE((*writer)->Close().ok());

  absl::StatusOr<EventFileReader> reader = EventFileReader::Open(path);
  ASSERT_TRUE(reader.ok());
  absl::StatusOr<std::vector<EventRecord>> read = reader->ReadAll();
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_EQ(read->size(), 2u);
  EXPECT_EQ((*read)[0].payload.size(), payload_bytes_max);
  EXPECT_EQ((*read)[1].payload, "after");
}

TEST(EventFile, LengthBeyondTheMaximumIsCorruptNotAnAllocation) {
  std::string bytes = "YRDEVT1\n";
  bytes += std::string("\x08\0\0\0", 4) + "yrd.taps" + std::string("\0\0\0\0", 4) + std::string("\xff\xff\xff\xff", 4);
  absl::StatusOr<EventFileReader> reader = EventFileReader::FromBytes(bytes, "corrupt.bin");
  ASSERT_TRUE(reader.ok());
  absl::StatusOr<std::optional<EventRecord>> record = reader->Next();
  EXPECT_EQ(record.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(std::string(record.status().message()).find("larger than the maximum"), std::string::npos)
      << record.status();
}

TEST(EventFile, CloseTwiceReturnsTheSameStatusAndAppendAfterCloseFails) {
  const std::string path = MakeTempDir() + "/events.bin";
  absl::StatusOr<std::unique_ptr<EventFileWriter>> writer = EventFileWriter::Create(path);
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE((*writer)->Close().ok());
  EXPECT_TRUE((*writer)->Close().ok());
  EXPECT_FALSE((*writer)->Append("yrd.taps", "T1", "x").ok());
}

TEST(EventFile, CreateInMissingDirectoryFails) {
  absl::StatusOr<std::unique_ptr<EventFileWriter>> writer =
      EventFileWriter::Create(MakeTempDir() + "/no/such/dir/events.bin");
  EXPECT_FALSE(writer.ok());
}

}  // namespace
}  // namespace yrd
