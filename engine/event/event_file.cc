#include "engine/event/event_file.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "engine/base/strings.h"

namespace yrd {
namespace {

// Size of the stdio buffer of a writer: large enough that a record is rarely split over writes.
constexpr size_t kWriterBufferBytes = 1u << 20;

void PutU32(char* out, uint32_t value) {
  out[0] = static_cast<char>(value & 0xff);
  out[1] = static_cast<char>((value >> 8) & 0xff);
  out[2] = static_cast<char>((value >> 16) & 0xff);
  out[3] = static_cast<char>((value >> 24) & 0xff);
}

uint32_t GetU32(const char* in) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(in);
  return static_cast<uint32_t>(bytes[0]) | static_cast<uint32_t>(bytes[1]) << 8 |
         static_cast<uint32_t>(bytes[2]) << 16 | static_cast<uint32_t>(bytes[3]) << 24;
}

}  // namespace

EventFileWriter::EventFileWriter(std::FILE* file, std::string path)
    : file_(file), path_(std::move(path)), buffer_(kWriterBufferBytes) {
  std::setvbuf(file_, buffer_.data(), _IOFBF, buffer_.size());
}

EventFileWriter::~EventFileWriter() {
  // A caller that needs to know whether the file is complete calls Close() and reads its status.
  if (!closed_) std::fclose(file_);
}

absl::StatusOr<std::unique_ptr<EventFileWriter>> EventFileWriter::Create(const std::string& path) {
  std::FILE* file = std::fopen(path.c_str(), "wb");
  if (file == nullptr) {
    return absl::NotFoundError(Cat("cannot create event file ", path, ": ", std::strerror(errno)));
  }
  std::unique_ptr<EventFileWriter> writer(new EventFileWriter(file, path));
  if (absl::Status status = writer->Write(kEventFileMagic.data(), kEventFileMagic.size()); !status.ok()) {
    return status;
  }
  return writer;
}

absl::Status EventFileWriter::Write(const void* data, size_t size_bytes) {
  if (!status_.ok()) return status_;
  if (closed_) return absl::FailedPreconditionError(Cat("event file ", path_, " is already closed"));
  if (size_bytes != 0 && std::fwrite(data, 1, size_bytes, file_) != size_bytes) {
    status_ = absl::InternalError(Cat("cannot write event file ", path_, ": ", std::strerror(errno)));
  }
  return status_;
}

absl::Status EventFileWriter::Append(std::string_view topic, std::string_view key, std::string_view payload) {
  if (!status_.ok()) return status_;
  const size_t record_bytes = kEventFileRecordOverheadBytes + topic.size() + key.size() + payload.size();
  if (topic.size() > kEventFileRecordBytesMax || key.size() > kEventFileRecordBytesMax ||
      payload.size() > kEventFileRecordBytesMax || record_bytes > kEventFileRecordBytesMax) {
    return absl::InvalidArgumentError(Cat("event file record of ", record_bytes, " bytes exceeds the maximum of ",
                                          kEventFileRecordBytesMax, " bytes (topic '", topic, "')"));
  }
  char length[4];
  for (const std::string_view field : {topic, key, payload}) {
    PutU32(length, static_cast<uint32_t>(field.size()));
    if (absl::Status status = Write(length, sizeof length); !status.ok()) return status;
    if (absl::Status status = Write(field.data(), field.size()); !status.ok()) return status;
  }
  ++record_count_;
  return absl::OkStatus();
}

absl::Status EventFileWriter::Close() {
  if (closed_) return status_;
  closed_ = true;
  const bool flushed = std::fflush(file_) == 0;
  const int flush_errno = errno;
  const bool closed = std::fclose(file_) == 0;
  if (status_.ok() && !flushed) {
    status_ = absl::InternalError(Cat("cannot write event file ", path_, ": ", std::strerror(flush_errno)));
  }
  if (status_.ok() && !closed) {
    status_ = absl::InternalError(Cat("cannot close event file ", path_, ": ", std::strerror(errno)));
  }
  return status_;
}

EventFileReader::EventFileReader(std::unique_ptr<std::string> bytes, std::string source_name)
    : bytes_(std::move(bytes)), source_name_(std::move(source_name)), offset_(kEventFileMagic.size()) {}

absl::StatusOr<EventFileReader> EventFileReader::Open(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(Cat("cannot open event file ", path));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) return absl::InternalError(Cat("cannot read event file ", path));
  return FromBytes(std::move(buffer).str(), path);
}

absl::StatusOr<EventFileReader> EventFileReader::FromBytes(std::string bytes, std::string source_name) {
  if (bytes.size() < kEventFileMagic.size() ||
      std::string_view(bytes).substr(0, kEventFileMagic.size()) != kEventFileMagic) {
    return absl::DataLossError(Cat(source_name, " is not an event file: it does not start with \"YRDEVT1\\n\""));
  }
  return EventFileReader(std::make_unique<std::string>(std::move(bytes)), std::move(source_name));
}

absl::StatusOr<std::optional<EventRecord>> EventFileReader::Next() {
  if (!status_.ok()) return status_;
  const std::string& bytes = *bytes_;
  if (offset_ == bytes.size()) return std::nullopt;
  const size_t record_offset = offset_;
  size_t cursor = offset_;
  size_t record_bytes = kEventFileRecordOverheadBytes;
  std::string_view fields[3];
  constexpr const char* kFieldNames[3] = {"topic", "key", "payload"};
  for (size_t i = 0; i < 3; ++i) {
    if (bytes.size() - cursor < 4) {
      status_ = absl::DataLossError(Cat(source_name_, ": truncated record ", record_index_, " at byte offset ",
                                        record_offset, ": the file ends inside the ", kFieldNames[i],
                                        " length (", bytes.size() - cursor, " of 4 bytes present)"));
      return status_;
    }
    const uint32_t length = GetU32(bytes.data() + cursor);
    cursor += 4;
    record_bytes += length;
    if (record_bytes > kEventFileRecordBytesMax) {
      status_ = absl::DataLossError(Cat(source_name_, ": record ", record_index_, " at byte offset ", record_offset,
                                        " is larger than the maximum of ", kEventFileRecordBytesMax,
                                        " bytes (", kFieldNames[i], " length ", length, "); the file is corrupt"));
      return status_;
    }
    if (bytes.size() - cursor < length) {
      status_ = absl::DataLossError(Cat(source_name_, ": truncated record ", record_index_, " at byte offset ",
                                        record_offset, ": the ", kFieldNames[i], " needs ", length, " bytes but ",
                                        bytes.size() - cursor, " remain"));
      return status_;
    }
    fields[i] = std::string_view(bytes.data() + cursor, length);
    cursor += length;
  }
  offset_ = cursor;
  ++record_index_;
  return EventRecord{fields[0], fields[1], fields[2]};
}

absl::StatusOr<std::vector<EventRecord>> EventFileReader::ReadAll() {
  std::vector<EventRecord> records;
  while (true) {
    absl::StatusOr<std::optional<EventRecord>> record = Next();
    if (!record.ok()) return record.status();
    if (!record->has_value()) return records;
    records.push_back(**record);
  }
}

}  // namespace yrd
