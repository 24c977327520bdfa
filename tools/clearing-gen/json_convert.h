// JsonConverter: turns one event written by hand, in flatc's JSON form of an Envelope, into the
// Kafka message the generator would produce for it, e.g.
//   {"event_type":"Tap","event":{"txn_id":"T1","card_no":"6217...","carrier":"physical",...}}
// The schema is the one compiled into the program (schemas/events.fbs), so enum names, field
// names and the union are checked by flatbuffers' own parser; unknown fields are refused. The
// event's content is not judged here: the engine does that. One thread at a time.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace flatbuffers {
class Parser;
}

namespace yrd::gen {

// The longest JSON line accepted.
inline constexpr size_t kJsonLineBytesMax = 1u << 20;

struct ConvertedMessage {
  std::string_view topic;  // yrd.taps or yrd.medical, by event type
  std::string key;         // txn_id, or original_txn_id for refunds and cancellations; may be empty
  std::string payload;     // the Envelope with the file identifier
};

class JsonConverter {
 public:
  // Loads the compiled-in schema. Internal if it does not parse (a build defect).
  [[nodiscard]] static absl::StatusOr<JsonConverter> Create();
  JsonConverter(JsonConverter&&) noexcept;
  JsonConverter& operator=(JsonConverter&&) noexcept;
  ~JsonConverter();

  // Converts one line. InvalidArgument with the parser's message when the line is not a valid
  // Envelope in JSON, or when it names no event.
  [[nodiscard]] absl::StatusOr<ConvertedMessage> Convert(std::string_view line);

 private:
  explicit JsonConverter(std::unique_ptr<flatbuffers::Parser> parser);
  std::unique_ptr<flatbuffers::Parser> parser_;
};

}  // namespace yrd::gen
