// Records: the byte layout of everything the engine keeps in its state store, and the keys they
// live under. One place defines them so the daemon, the report tool and the tests agree.
// Integers are stored little-endian (the engine runs on x86-64 and arm64 little-endian hosts);
// keys use big-endian so that the store's order is numeric order. Every value starts with a
// format version byte; a reader refuses versions it does not know instead of guessing.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/base/reason.h"
#include "engine/base/strings.h"
#include "engine/base/window.h"
#include "engine/event/event.h"

namespace yrd {

// The store's tables (RocksDB column families in the adapter).
enum class Table : uint8_t {
  kMeta = 0,        // offsets, window states, per-window counters, commit sequence
  kTxn = 1,         // dedup and refund/cancellation state per txn_id, purged after the horizon
  kLines = 2,       // netting lines per window (the positions derive from them)
  kApplied = 3,     // applied events per window, in commit order (for the detail files)
  kExceptions = 4,  // rejected messages, by topic, partition and offset
  kRecentTxn = 5,   // transaction records not yet sorted into kTxn, one value per commit
};
inline constexpr size_t kTableCount = 6;

// ---- keys ------------------------------------------------------------------------------------

void AppendBigEndian32(std::string& out, uint32_t value);
void AppendBigEndian64(std::string& out, uint64_t value);
[[nodiscard]] uint32_t ReadBigEndian32(const char* data);
[[nodiscard]] uint64_t ReadBigEndian64(const char* data);
// Window days are stored biased so that negative days still sort before positive ones.
[[nodiscard]] inline uint32_t WindowKeyBits(WindowDay day) { return static_cast<uint32_t>(day) ^ 0x8000'0000u; }
[[nodiscard]] inline WindowDay WindowFromKeyBits(uint32_t bits) { return static_cast<WindowDay>(bits ^ 0x8000'0000u); }

// ---- partition-owned keys ----------------------------------------------------------------------
//
// Store format 4: what the ledger keeps of a source partition's messages is keyed by that
// partition (its owner), so that one partition's state can be read, moved or rebuilt without
// touching another's: transaction records, applied records, window counters, the marker of what
// the line checkpoint includes of it, exceptions, partition gross and the next offset. A window's
// totals are the sum over its owners (engine/readers). The netting lines are derived state, the
// sum of the owners' applied records (a checkpoint of that sum in kLines plus each owner's applied
// records after its marker), and the line ids number them for the whole store; the ledger's own
// bookkeeping (the commit sequence, the recent transaction records' values, dead-letter copies)
// and the window state records are the store's too (docs/scale-out.md, section 1). A store of
// format 3 is upgraded when the ledger opens it (engine/upgrade).
inline constexpr uint8_t kStoreFormat = 4;
inline constexpr std::string_view kStoreFormatKey = "store_format";

// A source partition, the owner of partition-owned state.
struct SourcePartition {
  SourceTopic topic = SourceTopic::kTaps;
  int32_t partition = 0;
  auto operator<=>(const SourcePartition&) const = default;
  template <typename H>
  friend H AbslHashValue(H h, const SourcePartition& owner) {
    return H::combine(std::move(h), owner.topic, owner.partition);
  }
};
// An owner in keys: the topic byte, then the partition in big-endian.
inline constexpr size_t kOwnerKeyBytes = 5;
void AppendOwner(std::string& out, SourcePartition owner);
[[nodiscard]] SourcePartition ReadOwner(const char* data);
// The topic that carries a family's events (the numbering is shared).
[[nodiscard]] constexpr SourceTopic TopicOf(Family family) { return static_cast<SourceTopic>(family); }
// "yrd.taps/3", for messages.
[[nodiscard]] std::string FormatOwner(SourcePartition owner);

// The next offset to consume per source partition.
using PartitionOffsets = std::map<std::pair<SourceTopic, int32_t>, int64_t>;

// kTxn: owner, family digit, then the txn_id.
void TxnKey(SourcePartition owner, Family family, std::string_view txn_id, std::string& out);
// kMeta keys.
inline constexpr std::string_view kOffsetKeyPrefix = "offset|";
inline constexpr std::string_view kCountersKeyPrefix = "counters|";
inline constexpr std::string_view kWindowKeyPrefix = "window|";
inline constexpr std::string_view kCommitSequenceKey = "commit_sequence";
// Per owner: the number (below) of the owner's last commit whose applied records the lines in
// kLines include; its applied records of later commits complete them (ReadWindowLines).
inline constexpr std::string_view kLinesThroughKeyPrefix = "lines_through|";
// Per owner: how much of the owner's changelog this store holds (engine/changelog).
inline constexpr std::string_view kChangelogKeyPrefix = "changelog|";
// Dead-letter copies not yet known delivered: commit sequence, then the exception key.
inline constexpr std::string_view kDeadLetterKeyPrefix = "dlq|";
// A check value of the card-token key (HMAC-SHA256 of a fixed label under it), written by the
// first start: a later start or a report tool with another key is refused instead of making
// tokens that match nothing.
inline constexpr std::string_view kCardTokenKeyCheckKey = "card_token_key_check";
// Line ids (see LineIds): the prefix, then the id in big-endian.
inline constexpr std::string_view kLineIdKeyPrefix = "line_id|";
// The gross of one source partition in one window (see kPartitionWindowGrossFenMax): the prefix,
// the window, the topic and the partition.
inline constexpr std::string_view kGrossKeyPrefix = "gross|";
// A window whose records of one owner this store lacks: the owner's state came from a changelog
// snapshot, which carries only the windows whose files are not written yet (engine/changelog).
// The prefix, the window, the owner; the value is empty.
inline constexpr std::string_view kLackingShareKeyPrefix = "lacking|";
void OffsetKey(SourceTopic topic, int32_t partition, std::string& out);
// The counters of one owner in one window: the prefix, the window, the owner.
void CountersKey(WindowDay day, SourcePartition owner, std::string& out);
void WindowStateKey(WindowDay day, std::string& out);
void LinesThroughKey(SourcePartition owner, std::string& out);
void ChangelogProgressKey(SourcePartition owner, std::string& out);
void LackingShareKey(WindowDay day, SourcePartition owner, std::string& out);
// kLines: window, then the line key. kApplied: window, owner, then the commit's number for the
// owner: the owner's next offset once the commit is written (so an owner's applied records are in
// offset order, and numbered the same whichever instance or shard wrote them).
void LineStoreKey(WindowDay day, std::string_view line_key, std::string& out);
void AppliedKey(WindowDay day, SourcePartition owner, uint64_t number, std::string& out);
// The prefix of every kLines and kApplied key of `day` (and, with `owner`, of that owner).
void WindowKeyPrefix(WindowDay day, std::string& out);
void WindowOwnerKeyPrefix(WindowDay day, SourcePartition owner, std::string& out);
// kRecentTxn: commit sequence.
void RecentTxnKey(uint64_t commit_sequence, std::string& out);
// kExceptions: topic, partition, offset.
void ExceptionKey(SourceTopic topic, int32_t partition, int64_t offset, std::string& out);
void DeadLetterKey(uint64_t commit_sequence, SourceTopic topic, int32_t partition, int64_t offset, std::string& out);
// The first key after every dead-letter copy of commits up to `commit_sequence`.
void DeadLetterKeyLimit(uint64_t commit_sequence, std::string& out);
void LineIdKey(uint32_t id, std::string& out);
void GrossKey(WindowDay day, SourceTopic topic, int32_t partition, std::string& out);

// ---- ownership -------------------------------------------------------------------------------------
//
// Which source partitions the instance writing this store consumes, and how many the topics have
// (kMeta kOwnershipKey), written with the first batch after a start and after every change of its
// consumer group's assignment, so that a reader of the store knows whose answers it lacks.
inline constexpr std::string_view kOwnershipKey = "ownership";
struct Ownership {
  std::array<uint32_t, 2> partition_counts{};  // of yrd.taps and of yrd.medical
  std::vector<SourcePartition> owned;          // in order
};
void EncodeOwnership(const Ownership& ownership, std::string& out);
[[nodiscard]] bool DecodeOwnership(std::string_view bytes, Ownership& out);

// ---- partition gross ---------------------------------------------------------------------------
//
// The sum of the amounts one source partition applied to one window (taps, refunds, settlement
// and cancelled totals), held against kPartitionWindowGrossFenMax (engine/base/money.h).
struct PartitionGross {
  WindowDay day = 0;
  SourceTopic topic = SourceTopic::kTaps;
  int32_t partition = 0;
  int64_t gross_fen = 0;
};
void EncodeGross(int64_t gross_fen, std::string& out);
[[nodiscard]] bool DecodeGross(std::string_view key, std::string_view value, PartitionGross& out);

// ---- netting lines ---------------------------------------------------------------------------
//
// A line aggregates the events of one window between one set of participants; every position
// of SPEC section 4 is a sum over lines. The line key holds the participants as they were
// registered when the event was applied, so a later registry change never moves past money.
//   tap line:        "T|<issuer_bank>|<issuer_province>|<merchant>|<merchant_bank>|<merchant_province>|<category>"
//   settlement line: "M|<insured_fund>|<insured_province>|<institution>|<institution_fund>|<institution_province>"

void TapLineKey(const DecodedEvent& tap, std::string& out);
void SettlementLineKey(const DecodedEvent& settlement, std::string& out);

struct TapLineParts {
  std::string_view issuer_bank, issuer_province, merchant, merchant_bank, merchant_province, category;
};
struct SettlementLineParts {
  std::string_view insured_fund, insured_province, institution, institution_fund, institution_province;
};
[[nodiscard]] std::optional<TapLineParts> ParseTapLineKey(std::string_view line_key);
[[nodiscard]] std::optional<SettlementLineParts> ParseSettlementLineKey(std::string_view line_key);

struct LineTotals {
  int64_t count = 0;                 // taps or settlements
  int64_t amount_fen = 0;            // tap gross, or settlement total
  int64_t fund_pay_fen = 0;          // settlement lines only
  int64_t account_pay_fen = 0;
  int64_t cash_pay_fen = 0;
  int64_t reversal_count = 0;        // refunds or cancellations
  int64_t reversed_amount_fen = 0;   // refunded, or cancelled total
  int64_t reversed_fund_pay_fen = 0;
  int64_t reversed_account_pay_fen = 0;
  int64_t reversed_cash_pay_fen = 0;
  bool operator==(const LineTotals&) const = default;
};
// One netting line of a window: its key (without the window) and totals.
struct WindowLine {
  std::string line_key;
  LineTotals totals;
};
void EncodeLineTotals(const LineTotals& totals, std::string& out);
// The netting rule: what one applied event adds to the line it nets into (its own for a tap or
// a settlement, its original's for a refund or a cancellation, whose amounts are the whole
// settlement's). The ledger applies it and the readers of kLines replay it from kApplied, so
// both come from here. False on an overflow (the line is then unchanged).
[[nodiscard]] bool NetIntoLine(EventKind kind, int64_t amount_fen, int64_t fund_pay_fen, int64_t account_pay_fen,
                               int64_t cash_pay_fen, LineTotals& line);
[[nodiscard]] bool DecodeLineTotals(std::string_view bytes, LineTotals& out);
// Takes `part` (a share NetIntoLine built) out of `line`, every field; false on an overflow or a
// field that would go below zero (the share is not in the line), and the line is then unchanged.
[[nodiscard]] bool SubtractLineTotals(const LineTotals& part, LineTotals& line);
// Adds `add` into `into` (a window's lines merged over its owners); false on an overflow (`into`
// is then unchanged).
[[nodiscard]] bool AddLineTotals(const LineTotals& add, LineTotals& into);

// ---- per-window counters ---------------------------------------------------------------------

struct WindowCounters {
  int64_t applied_count = 0;
  int64_t exact_duplicate_count = 0;
  int64_t late_count = 0;
  std::array<int64_t, kReasonCount> exception_counts{};
  bool operator==(const WindowCounters&) const = default;
};
void EncodeWindowCounters(const WindowCounters& counters, std::string& out);
[[nodiscard]] bool DecodeWindowCounters(std::string_view bytes, WindowCounters& out);
// Adds `add` into `into`; false on an overflow (`into` is then unchanged).
[[nodiscard]] bool AddWindowCounters(const WindowCounters& add, WindowCounters& into);

// ---- window state ----------------------------------------------------------------------------

enum class WindowState : uint8_t { kOpen = 0, kClosing = 1, kClosed = 2, kFilesWritten = 3 };
[[nodiscard]] std::string_view WindowStateName(WindowState state);
// Persisted when a window closes (and again when its files are written). Open and closing are
// not persisted: they follow from the clock. The fee schedule is frozen at close, so a later
// registry change never changes a closed window's files.
struct WindowRecord {
  WindowState state = WindowState::kOpen;
  int64_t closed_at_ms = 0;  // the instant the window closed (clock or operator), 0 while open
  std::array<int32_t, kCategoryCount> fee_basis_points{};
  std::string fee_bank_id;
  // The participants registered when the window closed, so that its files (one per bank and
  // fund, positions per province) come out the same whatever the registry is when they are
  // rendered. Empty in records written before they were frozen.
  std::vector<std::string> registered_bank_ids;
  std::vector<std::string> registered_fund_ids;
  std::vector<std::string> registered_province_codes;
  // When the files were written (the batch clock of the commit that marked them), 0 before; a
  // window's records are retired store.window_retention_days after it.
  int64_t files_written_at_ms = 0;
  // When the window's applied records, netting lines and exceptions were deleted from the store
  // (its counters, this record and its files stay), 0 while they are kept.
  int64_t retired_at_ms = 0;
};
void EncodeWindowRecord(const WindowRecord& record, std::string& out);
[[nodiscard]] bool DecodeWindowRecord(std::string_view bytes, WindowRecord& out);

// ---- line ids --------------------------------------------------------------------------------
//
// Transaction and applied records name their line by a number instead of its key text (about
// 50 bytes, which every event would otherwise store twice). kMeta holds each number's key under
// LineIdKey, written in the commit that first uses the number and never changed or removed;
// numbers are given in order from 0. A line key names participants, not a window, so one
// number serves every window.
inline constexpr uint32_t kNoLineId = UINT32_MAX;

class LineIds {
 public:
  LineIds() = default;
  // Not copied: the index views the keys where they are. A move keeps them in place.
  LineIds(const LineIds&) = delete;
  LineIds& operator=(const LineIds&) = delete;
  LineIds(LineIds&&) = default;
  LineIds& operator=(LineIds&&) = default;

  // The key of `id`; nullopt when the number is not known.
  [[nodiscard]] std::optional<std::string_view> KeyOf(uint32_t id) const {
    if (id >= keys_.size()) return std::nullopt;
    return keys_[id];
  }
  // The number of `key`, given now (the next one) if it has none; `added` tells which.
  uint32_t IdOf(std::string_view key, bool& added);
  // The number of `key`; nullopt when it has none.
  [[nodiscard]] std::optional<uint32_t> Find(std::string_view key) const;
  // Takes a stored number; false unless it is the next one and its key is new.
  [[nodiscard]] bool Add(uint32_t id, std::string_view key);
  [[nodiscard]] size_t size() const { return keys_.size(); }

  // The keys are copied into blocks of this size (a longer key into a block of its own).
  static constexpr size_t kKeyBlockBytes = 64 * 1024;

 private:
  // A key with its hash, so that growing the index rehashes without reading any key's text (a
  // realistic registry makes a million lines a day, their texts far beyond the caches).
  struct HashedKey {
    std::string_view text;
    size_t hash = 0;
  };
  struct HashedKeyHash {
    size_t operator()(const HashedKey& key) const { return key.hash; }
  };
  struct HashedKeyEq {
    bool operator()(const HashedKey& a, const HashedKey& b) const { return a.hash == b.hash && a.text == b.text; }
  };
  // A copy of `key` that stays where it is for the life of this object.
  [[nodiscard]] std::string_view Keep(std::string_view key);
  uint32_t Insert(std::string_view key, size_t hash);

  std::vector<std::unique_ptr<char[]>> key_blocks_;
  size_t key_block_used_ = 0;                // bytes of the last block in use
  std::vector<std::string_view> keys_;       // by number, into key_blocks_
  absl::flat_hash_map<HashedKey, uint32_t, HashedKeyHash, HashedKeyEq> ids_;
};

// ---- dedup / transaction state ---------------------------------------------------------------

struct TxnRecord {
  EventKind kind = EventKind::kTap;
  bool late = false;
  bool cancelled = false;            // settlement: a cancellation was applied
  WindowDay window = 0;              // the window it was applied to
  int32_t partition = 0;             // where it was applied from
  int64_t offset = 0;
  int64_t occurred_at_ms = 0;
  Digest digest;
  int64_t amount_fen = 0;            // tap/refund amount, settlement total
  int64_t fund_pay_fen = 0;
  int64_t account_pay_fen = 0;
  int64_t cash_pay_fen = 0;
  int64_t refunded_fen = 0;          // tap: sum of applied refunds
  int64_t duplicate_count = 0;       // exact duplicates seen since
  // Tap/settlement: its line (without window). The encoder stores line_id; the decoder sets
  // both, line_key from `line_ids` (or, for a record written before line ids, from its text,
  // with line_id kNoLineId).
  uint32_t line_id = kNoLineId;
  std::string_view line_key;
  std::string_view original_txn_id;  // refund/cancellation
};
void EncodeTxnRecord(const TxnRecord& record, std::string& out);
// The same record with its line named by its key in text (the layout of version 2), for a record
// that leaves the store's line numbering: the changelog (engine/changelog).
void EncodeTxnRecordWithLineKey(const TxnRecord& record, std::string& out);
// The views of `out` point into `bytes` and `line_ids`. False if the record is damaged or
// names a line number `line_ids` does not know.
[[nodiscard]] bool DecodeTxnRecord(std::string_view bytes, const LineIds& line_ids, TxnRecord& out);
// Reads only the occurrence time (for the horizon purge), or nullopt if the bytes are not a record.
[[nodiscard]] std::optional<int64_t> TxnRecordOccurredAt(std::string_view bytes);

// ---- recent transaction records ----------------------------------------------------------------
//
// A commit writes its transaction records to kRecentTxn, all in one value under its sequence,
// each with its kTxn key; the ledger keeps them in memory and later sorts many commits' worth
// into kTxn at once (see Ledger). A record found here is newer than the one in kTxn.

// Clears `blob` and starts a commit's value.
void StartRecentTxnBlob(std::string& blob);
void AppendRecentTxnEntry(std::string_view txn_key, std::string_view record, std::string& blob);
// Reads the entry at `position` (0 at the start) and advances it; false at the end or on
// damage (`damaged` tells which). The views point into `blob`.
[[nodiscard]] bool NextRecentTxnEntry(std::string_view blob, size_t& position, std::string_view& txn_key,
                                      std::string_view& record, bool& damaged);

// ---- applied events (detail file material) ---------------------------------------------------

struct AppliedRecord {
  EventKind kind = EventKind::kTap;
  bool late = false;
  int64_t occurred_at_ms = 0;
  int32_t partition = 0;
  int64_t offset = 0;
  int64_t amount_fen = 0;        // tap/refund amount; settlement or cancelled total
  int64_t fund_pay_fen = 0;
  int64_t account_pay_fen = 0;
  int64_t cash_pay_fen = 0;
  std::string_view txn_id;
  std::string_view original_txn_id;
  // Its line; for refunds/cancellations the original's. Stored as line_id; the reader sets
  // both, as for TxnRecord.
  uint32_t line_id = kNoLineId;
  std::string_view line_key;
  std::string_view terminal_id;
  std::string_view card_masked;
  CardToken card_token{};        // zero for refunds/cancellations
};
// Appends one record to a window's blob.
void AppendAppliedRecord(const AppliedRecord& record, std::string& blob);
// The same with its line named by its key in text, as for EncodeTxnRecordWithLineKey.
void AppendAppliedRecordWithLineKey(const AppliedRecord& record, std::string& blob);
// Reads the record at `position` of a blob and advances it; false at the end or on damage
// (`damaged` tells which; a line number `line_ids` does not know is damage too).
[[nodiscard]] bool NextAppliedRecord(std::string_view blob, size_t& position, const LineIds& line_ids,
                                     AppliedRecord& out, bool& damaged);

// ---- exceptions ------------------------------------------------------------------------------

struct ExceptionRecord {
  Reason reason = Reason::kMalformed;
  SourceTopic topic = SourceTopic::kTaps;
  int32_t partition = 0;
  int64_t offset = 0;
  WindowDay window = 0;             // where its count went
  Digest message_digest;            // of the message's content (or raw bytes if it did not decode)
  Digest first_digest;              // duplicate_conflict: the content that stands
  std::string_view txn_id;          // empty when unreadable
  std::string_view original_txn_id;
  // What was wrong (FormatRejectionDetail), at most kExceptionTextBytesMax bytes; empty in records
  // written before details were kept.
  std::string_view detail;
  // The Kafka message key as consumed, at most kExceptionTextBytesMax bytes, so that a message
  // whose txn_id cannot be read is found by its key.
  std::string_view message_key;
};
inline constexpr size_t kExceptionTextBytesMax = 255;
void EncodeExceptionRecord(const ExceptionRecord& record, std::string& out);
[[nodiscard]] bool DecodeExceptionRecord(std::string_view key, std::string_view bytes, ExceptionRecord& out);

// ---- dead-letter copies ------------------------------------------------------------------------
//
// A rejected message's copy for yrd.dlq, kept in the store (kMeta, DeadLetterKey) from the
// commit that rejected it until its delivery is known, so a crash between the commit and the
// delivery only delays the copy: the next start produces it again (at least once; the copy's
// headers name its origin, by which a consumer of yrd.dlq drops a repeat).

// What a dead-letter copy carries of the rejected message's bytes (config
// kafka.dead_letter_payload): the message as consumed (kOriginal, for reprocessing), or a copy
// with every card number masked (kRedacted); a message that does not verify, where no card
// number can be found, then carries none of its bytes (kWithheld).
enum class DeadLetterPayload : uint8_t { kOriginal = 0, kRedacted = 1, kWithheld = 2 };
[[nodiscard]] std::string_view DeadLetterPayloadName(DeadLetterPayload form);

struct DeadLetterCopy {
  uint64_t commit_sequence = 0;
  SourceTopic topic = SourceTopic::kTaps;
  int32_t partition = 0;
  int64_t offset = 0;
  Reason reason = Reason::kMalformed;
  WindowDay window = 0;
  Digest digest;
  DeadLetterPayload payload_form = DeadLetterPayload::kOriginal;
  std::string_view key;      // the Kafka message key
  // The bytes to produce, in the form payload_form names. In the store they are sealed
  // (PayloadSealer): a card number is never stored in clear.
  std::string_view payload;
  std::string_view detail;   // FormatRejectionDetail of the rejection
};
// Encodes with `payload` as given: the caller seals it first.
void EncodeDeadLetterCopy(const DeadLetterCopy& copy, std::string& out);
// The views of `out` point into `value`. `sealed` tells whether the payload is sealed (records
// of this version) or in clear (records written before payloads were sealed).
[[nodiscard]] bool DecodeDeadLetterCopy(std::string_view key, std::string_view value, DeadLetterCopy& out,
                                        bool& sealed);

// Encrypts what the store must keep of a message that may hold a card number (a dead-letter
// copy's payload) and decrypts it again, so the store never holds a card number in clear
// (SPEC section 5). Implemented with AES-256-GCM in adapters/crypto. Not thread-safe.
class PayloadSealer {
 public:
  virtual ~PayloadSealer() = default;
  virtual void Seal(std::string_view plain, std::string& sealed_out) = 0;
  // False when `sealed` is damaged or was sealed under another key.
  [[nodiscard]] virtual bool Open(std::string_view sealed, std::string& plain_out) = 0;
};

}  // namespace yrd
