// Event file: a recorded stream of Kafka messages (topic, key, payload), so that a workload can be
// replayed without a broker, e.g. by the in-memory benchmark.
//
// Format (all lengths unsigned 32-bit little-endian):
//
//   "YRDEVT1\n"                                   8 bytes of magic, once
//   then per record, in production order:
//   topic_length  topic bytes
//   key_length    key bytes
//   payload_length payload bytes
//
// A record is at most kEventFileRecordBytesMax bytes including its three length fields. The file
// carries no checksum: it is a test and benchmark artifact, not durable state.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace yrd {

inline constexpr std::string_view kEventFileMagic{"YRDEVT1\n", 8};
// The largest record, length fields included. Far above message_bytes_max (64 KiB) so that
// oversized messages can still be recorded and replayed.
inline constexpr size_t kEventFileRecordBytesMax = 16u << 20;
// Bytes of the three u32 length fields of one record.
inline constexpr size_t kEventFileRecordOverheadBytes = 12;

// One message of an event file. The views point into the EventFileReader that returned it.
struct EventRecord {
  std::string_view topic;
  std::string_view key;
  std::string_view payload;
};

// EventFileWriter appends records to a new event file. Created by Create(), owned by the caller;
// one thread at a time. Writes are buffered: call Close() and check its status to learn whether
// the file is complete. After any failed write every later Append() and Close() fails, so a file
// with a hole in it is never reported as written.
class EventFileWriter {
 public:
  // Creates (or truncates) `path` and writes the magic. Fails with the OS error text.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<EventFileWriter>> Create(const std::string& path);
  ~EventFileWriter();
  EventFileWriter(const EventFileWriter&) = delete;
  EventFileWriter& operator=(const EventFileWriter&) = delete;

  // Appends one record. InvalidArgument when the record exceeds kEventFileRecordBytesMax (nothing
  // is written); Internal on a write error (the writer is then failed for good).
  [[nodiscard]] absl::Status Append(std::string_view topic, std::string_view key, std::string_view payload);

  // Flushes and closes the file. Returns the first error seen by any write, or the close error.
  // Calling Close() again returns the same status.
  [[nodiscard]] absl::Status Close();

  [[nodiscard]] uint64_t record_count() const { return record_count_; }

 private:
  EventFileWriter(std::FILE* file, std::string path);
  [[nodiscard]] absl::Status Write(const void* data, size_t size_bytes);

  std::FILE* file_;
  std::string path_;
  absl::Status status_;
  bool closed_ = false;
  uint64_t record_count_ = 0;
  std::vector<char> buffer_;
};

// EventFileReader holds a whole event file in memory and yields its records in order. Records
// are views into the reader's buffer and stay valid while the reader lives. One thread at a time.
class EventFileReader {
 public:
  // Loads `path`. NotFound when it cannot be opened; DataLoss when the magic is wrong.
  [[nodiscard]] static absl::StatusOr<EventFileReader> Open(const std::string& path);
  // Takes the bytes of an event file (used by tests and by callers that already hold the file).
  [[nodiscard]] static absl::StatusOr<EventFileReader> FromBytes(std::string bytes, std::string source_name);

  EventFileReader(EventFileReader&&) = default;
  EventFileReader& operator=(EventFileReader&&) = default;

  // The next record, or nullopt at a clean end of file. DataLoss naming the record number and
  // byte offset when the file ends inside a record or a length exceeds kEventFileRecordBytesMax;
  // after an error every later call returns the same error.
  [[nodiscard]] absl::StatusOr<std::optional<EventRecord>> Next();

  // Reads every remaining record; fails as Next() does, returning no records.
  [[nodiscard]] absl::StatusOr<std::vector<EventRecord>> ReadAll();

  [[nodiscard]] size_t size_bytes() const { return bytes_->size(); }

 private:
  EventFileReader(std::unique_ptr<std::string> bytes, std::string source_name);

  // Owned through a pointer so that moving the reader keeps the records' views valid.
  std::unique_ptr<std::string> bytes_;
  std::string source_name_;
  size_t offset_ = 0;
  uint64_t record_index_ = 0;
  absl::Status status_;
};

}  // namespace yrd
