#include "tools/clearing-gen/json_convert.h"

#include <utility>

#include "absl/status/status.h"
#include "engine/base/strings.h"
#include "flatbuffers/idl.h"
#include "schemas/events_generated.h"
#include "schemas/events_schema_text.h"
#include "tools/clearing-gen/messages.h"

namespace yrd::gen {
namespace {

namespace fbs = ::yrd::schema;

absl::StatusOr<std::unique_ptr<flatbuffers::Parser>> LoadSchema() {
  auto parser = std::make_unique<flatbuffers::Parser>();
  if (!parser->Parse(yrd::schema_text::kEventsFbs)) {
    return absl::InternalError(Cat("the compiled-in events schema does not parse: ", parser->error_));
  }
  return parser;
}

std::string KeyString(const flatbuffers::String* key) { return key == nullptr ? std::string() : key->str(); }

// The parser's messages start with "error: :<line>: <column>: error: ..." or similar: keep what
// follows the last "error: ".
std::string CleanParserError(const std::string& error) {
  const std::string marker = "error: ";
  const size_t at = error.rfind(marker);
  std::string text = at == std::string::npos ? error : error.substr(at + marker.size());
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

}  // namespace

JsonConverter::JsonConverter(std::unique_ptr<flatbuffers::Parser> parser) : parser_(std::move(parser)) {}
JsonConverter::JsonConverter(JsonConverter&&) noexcept = default;
JsonConverter& JsonConverter::operator=(JsonConverter&&) noexcept = default;
JsonConverter::~JsonConverter() = default;

absl::StatusOr<JsonConverter> JsonConverter::Create() {
  absl::StatusOr<std::unique_ptr<flatbuffers::Parser>> parser = LoadSchema();
  if (!parser.ok()) return parser.status();
  return JsonConverter(*std::move(parser));
}

absl::StatusOr<ConvertedMessage> JsonConverter::Convert(std::string_view line) {
  if (line.size() > kJsonLineBytesMax) {
    return absl::InvalidArgumentError(Cat("the line is longer than ", kJsonLineBytesMax, " bytes"));
  }
  const std::string text(line);  // the parser needs a terminating NUL
  if (!parser_->ParseJson(text.c_str())) {
    const std::string message = CleanParserError(parser_->error_);
    // A parser that failed half-way may keep partial state: start the next line from a fresh one.
    absl::StatusOr<std::unique_ptr<flatbuffers::Parser>> fresh = LoadSchema();
    if (!fresh.ok()) return fresh.status();
    parser_ = *std::move(fresh);
    return absl::InvalidArgumentError(message);
  }
  const flatbuffers::FlatBufferBuilder& builder = parser_->builder_;
  ConvertedMessage message;
  message.payload.assign(reinterpret_cast<const char*>(builder.GetBufferPointer()), builder.GetSize());
  if (!PassesEnvelopeVerifier(message.payload)) {
    return absl::InvalidArgumentError("the converted event does not pass the FlatBuffers verifier");
  }
  const fbs::Envelope* envelope = fbs::GetEnvelope(message.payload.data());
  if (envelope->event_type() != fbs::Event::NONE && envelope->event() == nullptr) {
    return absl::InvalidArgumentError("\"event_type\" is given but \"event\" is missing");
  }
  switch (envelope->event_type()) {
    case fbs::Event::Tap:
      message.topic = kTapsTopic;
      message.key = KeyString(envelope->event_as_Tap()->txn_id());
      break;
    case fbs::Event::TapRefund:
      message.topic = kTapsTopic;
      message.key = KeyString(envelope->event_as_TapRefund()->original_txn_id());
      break;
    case fbs::Event::MedicalSettlement:
      message.topic = kMedicalTopic;
      message.key = KeyString(envelope->event_as_MedicalSettlement()->txn_id());
      break;
    case fbs::Event::MedicalCancellation:
      message.topic = kMedicalTopic;
      message.key = KeyString(envelope->event_as_MedicalCancellation()->original_txn_id());
      break;
    default:
      return absl::InvalidArgumentError(
          "no event: give \"event_type\" (Tap, TapRefund, MedicalSettlement or MedicalCancellation) and \"event\"");
  }
  return message;
}

}  // namespace yrd::gen
