// Batch: a group of consumed messages that travels through the pipeline together and is
// committed in one atomic store write with the offsets it advances. A batch owns copies of its
// payloads in a fixed arena, so after warm-up no stage allocates per message. Batches are
// pooled: the ingest thread fills and decodes one, hands it to the ledger thread through a
// lock-free queue and gets it back when it is committed. Only one thread touches a batch at a
// time; the queue hand-over orders the accesses.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/base/window.h"
#include "engine/event/event.h"
#include "engine/registry/registry.h"
#include "engine/store/records.h"

namespace yrd {

enum class Fate : uint8_t { kPending = 0, kApplied, kExactDuplicate, kRejected };

// Per-batch figures for metrics and the commit log line, set when the ledger prepares it.
struct BatchResult {
  size_t applied_count = 0;
  size_t exact_duplicate_count = 0;
  size_t rejected_count = 0;
  size_t late_count = 0;
  size_t store_bytes = 0;
};

// An operator's or the file writer's request about a window, carried by a batch so that it is
// applied in order with the events and committed in the same atomic write.
struct WindowCommand {
  // kReportClosed: the window is closed here already; a member of a group reports it in the
  // changelog of every partition it owns (one it claimed since the close has no report yet).
  enum class Kind : uint8_t { kClose = 0, kMarkFilesWritten = 1, kRetire = 2, kReportClosed = 3 };
  WindowCommand() = default;
  WindowCommand(Kind command_kind, WindowDay command_day, std::vector<std::string> keys = {})
      : kind(command_kind), day(command_day), exception_keys(std::move(keys)) {}
  // A close the region decided at `at_ms` (an operator's close read from the control topic, or
  // one found in a restored partition's changelog): the window closes at that instant, whether
  // or not this instance saw activity in it, so every instance closes it with the same header.
  static WindowCommand RegionClose(WindowDay command_day, int64_t at_ms) {
    WindowCommand command(Kind::kClose, command_day);
    command.closed_at_ms = at_ms;
    return command;
  }
  Kind kind = Kind::kClose;
  WindowDay day = 0;
  // kClose: 0 for a close at the batch's clock (only a window with activity or state closes);
  // otherwise a region close at this instant (RegionClose).
  int64_t closed_at_ms = 0;
  // kRetire: the window's exception keys (ExceptionKey) to delete with its records.
  std::vector<std::string> exception_keys;
};

struct MessageSlot {
  SourceTopic topic = SourceTopic::kTaps;
  int32_t partition = 0;
  int64_t offset = 0;
  std::string_view key;      // in the batch arena
  std::string_view payload;  // in the batch arena; empty for an oversized message
  size_t payload_size_bytes = 0;
  Fate fate = Fate::kPending;
  std::optional<Reason> reason;
  DecodedEvent event;
  Digest first_digest;       // duplicate_conflict: the digest of the content that stands
  WindowDay window = 0;      // where it was applied or counted
  bool late = false;
};

struct BatchLimits {
  size_t messages_max = 16'384;          // config batch_messages_max
  size_t arena_bytes_max = 16u << 20;    // config batch_bytes_max
};

// Bytes a dead-letter copy refers to besides the batch's: the redacted payload, the detail text.
struct DeadLetterScratch {
  std::string payload;
  std::string detail;
};

// The dead-letter copy of a rejected slot with its payload in the form `form` asks for
// (kOriginal or kRedacted; a redaction that cannot find the card numbers withholds the bytes).
// Its views point into the slot's batch and into `scratch`.
[[nodiscard]] inline DeadLetterCopy DeadLetterCopyOf(const MessageSlot& slot, uint64_t commit_sequence,
                                                     DeadLetterPayload form, DeadLetterScratch& scratch) {
  DeadLetterCopy copy;
  copy.commit_sequence = commit_sequence;
  copy.topic = slot.topic;
  copy.partition = slot.partition;
  copy.offset = slot.offset;
  copy.reason = slot.reason.value_or(Reason::kMalformed);
  copy.window = slot.window;
  copy.digest = slot.event.digest;
  copy.key = slot.key;
  scratch.detail = FormatRejectionDetail(slot.event.rejection);
  copy.detail = scratch.detail;
  copy.payload_form = form;
  copy.payload = slot.payload;
  if (form == DeadLetterPayload::kRedacted) {
    if (RedactCardNumbers(slot.payload, scratch.payload)) {
      copy.payload = scratch.payload;
    } else {
      copy.payload_form = DeadLetterPayload::kWithheld;
      copy.payload = {};
    }
  }
  return copy;
}

class Batch {
 public:
  explicit Batch(BatchLimits limits) : limits_(limits) {
    slots_.reserve(limits.messages_max);
    arena_.reset(new char[limits.arena_bytes_max]);
  }

  // True when a message of `key_bytes` + `payload_bytes` still fits.
  [[nodiscard]] bool HasRoomFor(size_t key_bytes, size_t payload_bytes) const {
    return slots_.size() < limits_.messages_max &&
           arena_used_ + key_bytes + payload_bytes + 2 * kPayloadAlignment <= limits_.arena_bytes_max;
  }
  [[nodiscard]] bool full() const { return slots_.size() >= limits_.messages_max; }
  [[nodiscard]] bool empty() const { return slots_.empty(); }
  [[nodiscard]] size_t room() const { return limits_.messages_max - slots_.size(); }
  [[nodiscard]] size_t size() const { return slots_.size(); }

  // Copies a message in; the caller checked HasRoomFor. A payload over `payload_bytes_max` is
  // not copied and the slot is rejected as oversized.
  MessageSlot& Add(SourceTopic topic, int32_t partition, int64_t offset, std::string_view key,
                   std::string_view payload, size_t payload_bytes_max) {
    MessageSlot& slot = slots_.emplace_back();
    slot.topic = topic;
    slot.partition = partition;
    slot.offset = offset;
    slot.key = Copy(key);
    slot.payload_size_bytes = payload.size();
    if (payload.size() > payload_bytes_max) {
      slot.fate = Fate::kRejected;
      slot.reason = Reason::kOversized;
      slot.event.digest = DigestOfBytes(payload);
      slot.event.rejection = RejectionDetail::Number("payload", kOversizedRule, static_cast<int64_t>(payload.size()));
    } else {
      slot.payload = Copy(payload);
    }
    return slot;
  }

  // Removes the slots `drop` says yes to (messages of a partition let go before the batch left
  // the ingest stage); their bytes stay in the arena until Clear.
  template <typename Predicate>
  void DropSlots(Predicate drop) {
    std::erase_if(slots_, drop);
  }

  [[nodiscard]] std::vector<MessageSlot>& slots() { return slots_; }
  [[nodiscard]] const std::vector<MessageSlot>& slots() const { return slots_; }

  void Clear() {
    slots_.clear();
    arena_used_ = 0;
    registry.reset();
    committed = false;
    ledger_prepared = false;
    ledger_prepared_number = 0;
    ledger_result = BatchResult{};
    commit_sequence = 0;
    dead_letters_delivered_through = 0;
    commands.clear();
    ownership.reset();
    windows_closed.clear();
    windows_reported.clear();
    windows_files_marked.clear();
    windows_retired.clear();
  }

  // Set by the ingest stage before decoding; the ledger uses the same instant.
  int64_t now_ms = 0;
  // Every slot is decoded against this registry: the ledger finds lines by the addresses of its
  // entries (and holds it while it does).
  std::shared_ptr<const Registry> registry;
  std::chrono::steady_clock::time_point sealed_at{};
  std::chrono::steady_clock::time_point committed_at{};
  bool committed = false;  // set by the commit stage when the store write returned OK
  bool ledger_prepared = false;  // set by Ledger::Prepare when the batch's write is built
  uint64_t ledger_prepared_number = 0;  // set by Ledger::Prepare: its place in prepare order
  BatchResult ledger_result;     // set by Ledger::Prepare
  uint64_t commit_sequence = 0;  // set by Ledger::Prepare: the sequence its write stores, 0 if none
  // Set by the ingest stage: the dead-letter copies of every commit up to this sequence were
  // delivered, so the ledger may drop them from the store with this batch.
  uint64_t dead_letters_delivered_through = 0;
  std::vector<WindowCommand> commands;          // applied before the batch's messages
  // Set by the ingest stage when the source's partitions changed (and once after a start): the
  // ledger stores it with the batch.
  std::optional<Ownership> ownership;
  std::vector<WindowDay> windows_closed;        // set by the ledger: closed by this batch
  std::vector<WindowDay> windows_reported;      // set by the ledger: closed earlier, reported again
  std::vector<WindowDay> windows_files_marked;  // set by the ledger: marked files_written
  std::vector<WindowDay> windows_retired;       // set by the ledger: its records deleted

 private:
  // FlatBuffers reads its scalars in place: payloads start on an 8-byte boundary.
  static constexpr size_t kPayloadAlignment = 8;

  std::string_view Copy(std::string_view bytes) {
    arena_used_ = (arena_used_ + kPayloadAlignment - 1) & ~(kPayloadAlignment - 1);
    char* destination = arena_.get() + arena_used_;
    std::copy(bytes.begin(), bytes.end(), destination);
    arena_used_ += bytes.size();
    return {destination, bytes.size()};
  }

  BatchLimits limits_;
  std::vector<MessageSlot> slots_;
  std::unique_ptr<char[]> arena_;
  size_t arena_used_ = 0;
};

}  // namespace yrd
