#include "engine/ledger/ledger.h"

#include <algorithm>

#include "engine/base/assert.h"
#include "engine/base/money.h"
#include "engine/readers/store_readers.h"
#include "engine/rules/rules.h"
#include "engine/upgrade/store_upgrade.h"

namespace yrd {
namespace {

void AddChecked(int64_t& total, int64_t delta) {
  const std::optional<int64_t> sum = CheckedAddFen(total, delta);
  // A count or a refunded total is bounded by what was applied; an overflow here means state
  // this process produced is broken.
  YRD_ASSERT(sum.has_value());
  total = *sum;
}

}  // namespace

Ledger::Ledger(StateStore& store, LedgerOptions options)
    : store_(store),
      options_(options) {
  dedup_.emplace(store, options.recent_txn_records_max, static_cast<const CommitProgress&>(*this));
  lines_.emplace(options.lines_checkpoint_applied_max);
  windows_.emplace(options.calendar);
  YRD_ASSERT(!options_.keep_dead_letters || options_.dead_letter_sealer != nullptr);
  YRD_ASSERT(options_.dead_letter_payload != DeadLetterPayload::kWithheld);
  for (PreparedWrite& prepared : prepared_) prepared.write = store.NewWriteBatch();
}

Ledger::~Ledger() = default;

void Ledger::Fail(const absl::Status& status) {
  {
    std::lock_guard<std::mutex> lock(failure_mutex_);
    if (failure_.ok()) failure_ = status;
    failed_.store(true, std::memory_order_release);
  }
  dedup_->Wake();
}

absl::Status Ledger::Failure() const {
  std::lock_guard<std::mutex> lock(failure_mutex_);
  return failure_.ok() ? absl::InternalError("the ledger failed") : failure_;
}

// ---- start ------------------------------------------------------------------------------------------

absl::Status Ledger::Load(int64_t now_ms) {
  // A store of an earlier format is brought to this one first (engine/upgrade).
  if (absl::Status s = UpgradeStore(store_); !s.ok()) return s;
  return LoadParts(now_ms);
}

absl::Status Ledger::Reload(int64_t now_ms) {
  if (prepared_count_ != finished_count_.load(std::memory_order_acquire)) {
    return absl::FailedPreconditionError("the ledger reloads only while no batch is prepared and not committed");
  }
  if (absl::Status s = AwaitRecentTxnSort(); !s.ok()) return s;
  {
    std::unique_lock<std::shared_mutex> lock(parts_mutex_);
    dedup_.emplace(store_, options_.recent_txn_records_max, static_cast<const CommitProgress&>(*this));
    lines_.emplace(options_.lines_checkpoint_applied_max);
    windows_.emplace(options_.calendar);
  }
  applied_blobs_.clear();
  applied_cache_.Clear();
  absl::Status status = LoadParts(now_ms);
  if (!status.ok()) Fail(status);
  return status;
}

absl::Status Ledger::LoadParts(int64_t now_ms) {
  if (absl::Status s = LoadOffsets(); !s.ok()) return s;
  // The line ids first: the window book's gross rebuild and the dedup records read with them.
  if (absl::Status s = lines_->LoadIds(store_); !s.ok()) return s;
  if (absl::Status s = windows_->Load(store_, lines_->line_ids()); !s.ok()) return s;
  // The lines of every window not closed yet, the ones the clock closes with the first batch
  // included: a close checkpoints them, so they must be whole in memory. And those of a closed
  // window with records its checkpoint lacks (a partition restored from its changelog after the
  // close): the next checkpoint moves every partition's marker past them, so it writes these
  // lines whole too.
  std::vector<WindowDay> line_days = windows_->DaysNotClosed();
  absl::StatusOr<std::vector<WindowDay>> incomplete = DaysWithRecordsAfterMarkers(store_, windows_->DaysClosedNotRetired());
  if (!incomplete.ok()) return incomplete.status();
  line_days.insert(line_days.end(), incomplete->begin(), incomplete->end());
  if (absl::Status s = lines_->LoadLines(store_, line_days); !s.ok()) return s;
  if (absl::Status s = dedup_->Load(now_ms); !s.ok()) return s;
  absl::StatusOr<std::map<SourcePartition, ChangelogProgress>> progress = ReadChangelogProgress(store_);
  if (!progress.ok()) return progress.status();
  changelog_progress_ = *std::move(progress);
  prepared_sequence_ = commit_sequence_.load();
  prepared_offsets_ = offsets_;
  published_windows_.store(windows_->BuildTable(now_ms));
  return absl::OkStatus();
}

absl::Status Ledger::LoadOffsets() {
  std::string value;
  bool found = false;
  if (absl::Status s = store_.Get(Table::kMeta, kCommitSequenceKey, value, found); !s.ok()) return s;
  if (found) {
    if (value.size() != 8) return absl::DataLossError("commit_sequence record is damaged");
    commit_sequence_.store(ReadBigEndian64(value.data()));
  }
  absl::Status damaged;
  PartitionOffsets offsets;
  absl::Status s = store_.Scan(Table::kMeta, kOffsetKeyPrefix, {}, [&](std::string_view key, std::string_view v) {
    if (key.size() != kOffsetKeyPrefix.size() + 5 || v.size() != 8) {
      damaged = absl::DataLossError("an offset record is damaged");
      return false;
    }
    const auto topic = static_cast<SourceTopic>(key[kOffsetKeyPrefix.size()]);
    const auto partition = static_cast<int32_t>(ReadBigEndian32(key.data() + kOffsetKeyPrefix.size() + 1));
    offsets[{topic, partition}] = static_cast<int64_t>(ReadBigEndian64(v.data()));
    return true;
  });
  if (!s.ok()) return s;
  if (!damaged.ok()) return damaged;
  std::lock_guard<std::mutex> lock(offsets_mutex_);
  offsets_.swap(offsets);
  return absl::OkStatus();
}

std::optional<int64_t> Ledger::CommittedOffset(SourceTopic topic, int32_t partition) const {
  std::lock_guard<std::mutex> lock(offsets_mutex_);
  const auto it = offsets_.find({topic, partition});
  if (it == offsets_.end()) return std::nullopt;
  return it->second;
}

absl::Status Ledger::AwaitRecentTxnSort() {
  absl::Status status = dedup_->AwaitSort();
  if (!status.ok()) Fail(status);
  return status;
}

// ---- one batch ----------------------------------------------------------------------------------------

absl::Status Ledger::Apply(Batch& batch, BatchResult& result) {
  if (absl::Status s = Prepare(batch); !s.ok()) return s;
  result = batch.ledger_result;
  return Commit(batch);
}

absl::Status Ledger::WaitForPreparedRoom() {
  for (;;) {
    const uint64_t finished = finished_count_.load(std::memory_order_acquire);
    // Checked after the load: a commit that failed before it finished is seen here.
    if (failed()) return Failure();
    if (prepared_count_ - finished < kPreparedAheadMax) return absl::OkStatus();
    finished_count_.wait(finished, std::memory_order_acquire);
  }
}

absl::Status Ledger::Prepare(Batch& batch) {
  batch.ledger_prepared = false;
  if (absl::Status s = WaitForPreparedRoom(); !s.ok()) return s;
  if (absl::Status s = dedup_->BeforeBatch(); !s.ok()) {
    Fail(s);
    return s;
  }
  BatchResult& result = batch.ledger_result;
  result = BatchResult{};
  PreparedWrite& prepared = prepared_[prepared_count_ % kPreparedAheadMax];
  const int64_t now_ms = batch.now_ms;
  horizon_start_ms_ = now_ms - options_.dedup_horizon_ms;
  applied_cache_.Clear();
  windows_->BeginBatch(prepared_sequence_ + 1);
  windows_->ApplyCommands(batch);
  const WindowDay oldest_open = windows_->OldestOpenWindow(now_ms);
  const bool dead_letters_to_drop = batch.dead_letters_delivered_through > dead_letters_dropped_through_;
  const bool closes_to_report = options_.changelog != nullptr && !batch.windows_reported.empty();
  if (batch.empty() && !windows_->changed() && !dead_letters_to_drop && !batch.ownership &&
      !closes_to_report) {  // an idle tick
    prepared.write_needed = false;
    batch.ledger_prepared_number = prepared_count_++;
    batch.ledger_prepared = true;
    dedup_->AfterBatch(now_ms);  // a quiet hour still ages the recent records out
    return absl::OkStatus();
  }

  for (auto& [index, blob] : applied_blobs_) blob.clear();
  lines_->BeginBatch(batch.registry);
  if (absl::Status s = LookUpBatch(batch); !s.ok()) {
    Fail(s);
    return s;
  }
  for (size_t i = 0; i < batch.size(); ++i) ApplySlot(batch.slots()[i], i, oldest_open, now_ms, result);

  BuildWrite(batch, prepared);
  result.store_bytes = prepared.write->size_bytes();
  prepared.write_needed = true;
  prepared.sequence = ++prepared_sequence_;
  batch.commit_sequence = prepared.sequence;
  prepared.windows = windows_->BuildTable(now_ms);
  batch.ledger_prepared_number = prepared_count_++;
  batch.ledger_prepared = true;
  dedup_->AfterBatch(now_ms);
  return absl::OkStatus();
}

absl::Status Ledger::LookUpBatch(Batch& batch) {
  dedup_->BeginBatch(batch.size());
  slot_states_.resize(batch.size());
  for (size_t i = 0; i < batch.size(); ++i) {
    const MessageSlot& slot = batch.slots()[i];
    if (slot.fate != Fate::kPending) continue;
    const Family family = FamilyOf(slot.event.kind);
    const SourcePartition owner{slot.topic, slot.partition};
    slot_states_[i] = {dedup_->StateFor(owner, family, slot.event.txn_id),
                       slot.event.original_txn_id.empty() ? DedupIndex::kNoState
                                                          : dedup_->StateFor(owner, family, slot.event.original_txn_id)};
  }
  return dedup_->LookUp(horizon_start_ms_, lines_->line_ids(), lines_->new_line_ids());
}

void Ledger::Reject(MessageSlot& slot, Reason reason, RejectionDetail detail, WindowDay oldest_open, int64_t now_ms) {
  slot.fate = Fate::kRejected;
  slot.reason = reason;
  slot.event.rejection = detail;
  // A rejection decided before the timestamp was checked counts in the oldest open window,
  // a later one in the event's own (routed) window.
  if (!slot.event.timestamp_checked) {
    slot.window = oldest_open;
    slot.late = false;
  } else {
    std::tie(slot.window, slot.late) = windows_->RouteWindow(slot.event.occurred_at_ms, now_ms);
  }
  AddChecked(windows_->TouchCounters(slot.window, {slot.topic, slot.partition}).exception_counts[static_cast<size_t>(reason)],
             1);
}

void Ledger::ApplySlot(MessageSlot& slot, size_t slot_index, WindowDay oldest_open, int64_t now_ms,
                       BatchResult& result) {
  if (slot.fate == Fate::kRejected) {  // by the decoder
    Reject(slot, *slot.reason, slot.event.rejection, oldest_open, now_ms);
    ++result.rejected_count;
    return;
  }
  DecodedEvent& e = slot.event;
  const auto [self_state, original_state] = slot_states_[slot_index];
  TxnState& self = dedup_->state(self_state);
  TxnState* original = original_state == DedupIndex::kNoState ? nullptr : &dedup_->state(original_state);
  const TxnRecord* original_record = original != nullptr && original->exists ? &original->record : nullptr;
  Decision decision = JudgeAgainstRecords(e, self.exists ? &self.record : nullptr, original_record);
  if (decision.verdict == Verdict::kExactDuplicate) {
    slot.fate = Fate::kExactDuplicate;
    std::tie(slot.window, slot.late) = windows_->RouteWindow(e.occurred_at_ms, now_ms);
    AddChecked(windows_->TouchCounters(slot.window, {slot.topic, slot.partition}).exact_duplicate_count, 1);
    AddChecked(self.record.duplicate_count, 1);
    self.dirty = true;
    ++result.exact_duplicate_count;
    return;
  }
  if (decision.verdict == Verdict::kApply) {
    std::tie(slot.window, slot.late) = windows_->RouteWindow(e.occurred_at_ms, now_ms);
    // Every total of the window stays within int64 (engine/base/money.h): the last check, so a
    // rejected event changes nothing.
    const int64_t moved_fen = MovedFen(e, original_record);
    if (!windows_->AddPartitionGross(slot.window, slot.topic, slot.partition, moved_fen)) {
      decision = PastPartitionGross(e, moved_fen);
    }
  }
  if (decision.verdict == Verdict::kReject) {
    if (decision.reason == Reason::kDuplicateConflict) slot.first_digest = self.record.digest;
    Reject(slot, decision.reason, decision.detail, oldest_open, now_ms);
    ++result.rejected_count;
    return;
  }
  slot.fate = Fate::kApplied;
  const uint32_t line = ApplyEffects(slot, self, original);
  WindowCounters& counters = windows_->TouchCounters(slot.window, {slot.topic, slot.partition});
  AddChecked(counters.applied_count, 1);
  if (slot.late) AddChecked(counters.late_count, 1);
  ++result.applied_count;
  if (slot.late) ++result.late_count;
  RecordApplied(slot, line);
}

uint32_t Ledger::ApplyEffects(MessageSlot& slot, TxnState& self, TxnState* original) {
  DecodedEvent& e = slot.event;
  TxnRecord& record = self.record;
  record = TxnRecord{};
  record.kind = e.kind;
  record.late = slot.late;
  record.window = slot.window;
  record.partition = slot.partition;
  record.offset = slot.offset;
  record.occurred_at_ms = e.occurred_at_ms;
  record.digest = e.digest;
  record.amount_fen = e.amount_fen;
  self.original_txn_id.clear();

  uint32_t line = 0;
  switch (e.kind) {
    case EventKind::kTap:
      line = lines_->RouteLine(slot.window, e);
      record.line_id = lines_->line_id(line);
      break;
    case EventKind::kMedicalSettlement:
      line = lines_->RouteLine(slot.window, e);
      record.line_id = lines_->line_id(line);
      record.fund_pay_fen = e.fund_pay_fen;
      record.account_pay_fen = e.account_pay_fen;
      record.cash_pay_fen = e.cash_pay_fen;
      break;
    case EventKind::kTapRefund:
      // A refund or a cancellation nets into its original's line.
      line = lines_->LineOfId(slot.window, original->record.line_id);
      self.original_txn_id.assign(e.original_txn_id);
      AddChecked(original->record.refunded_fen, e.amount_fen);
      original->dirty = true;
      break;
    case EventKind::kMedicalCancellation:
      line = lines_->LineOfId(slot.window, original->record.line_id);
      self.original_txn_id.assign(e.original_txn_id);
      original->record.cancelled = true;
      original->dirty = true;
      // A cancellation carries the whole settlement's amounts, for the detail files.
      e.amount_fen = original->record.amount_fen;
      e.fund_pay_fen = original->record.fund_pay_fen;
      e.account_pay_fen = original->record.account_pay_fen;
      e.cash_pay_fen = original->record.cash_pay_fen;
      record.amount_fen = e.amount_fen;
      break;
  }
  // The partition gross bounds every line (engine/base/money.h): an overflow here means state
  // this process produced is broken.
  const bool netted =
      NetIntoLine(e.kind, e.amount_fen, e.fund_pay_fen, e.account_pay_fen, e.cash_pay_fen, lines_->Touch(line));
  YRD_ASSERT(netted);
  record.original_txn_id = self.original_txn_id;
  self.exists = true;
  self.dirty = true;
  return line;
}

void Ledger::RecordApplied(const MessageSlot& slot, uint32_t line) {
  const DecodedEvent& e = slot.event;
  AppliedRecord record;
  record.kind = e.kind;
  record.late = slot.late;
  record.occurred_at_ms = e.occurred_at_ms;
  record.partition = slot.partition;
  record.offset = slot.offset;
  record.amount_fen = e.amount_fen;
  record.fund_pay_fen = e.fund_pay_fen;
  record.account_pay_fen = e.account_pay_fen;
  record.cash_pay_fen = e.cash_pay_fen;
  record.txn_id = e.txn_id;
  record.original_txn_id = e.original_txn_id;
  record.line_id = lines_->line_id(line);
  record.terminal_id = e.terminal_id;
  record.card_masked = e.card_masked_view();
  record.card_token = e.card_token;
  const SourcePartition owner{slot.topic, slot.partition};
  std::string* blob = applied_cache_.Find(slot.window, owner);
  if (blob == nullptr) {
    blob = &applied_blobs_[{slot.window, owner}];  // a map's entries stay where they are
    applied_cache_.Put(slot.window, owner, blob);
  }
  AppendAppliedRecord(record, *blob);
}

// ---- the write ------------------------------------------------------------------------------------------

void Ledger::BuildWrite(const Batch& batch, PreparedWrite& prepared) {
  StateWriteBatch& write = *prepared.write;
  write.Clear();
  const uint64_t sequence = prepared_sequence_ + 1;
  // The offsets first: a line checkpoint and the applied records are numbered by them.
  AppendOffsets(batch, sequence, prepared);
  dedup_->AppendRecords(sequence, batch.now_ms, write);
  const bool closed_some = !batch.windows_closed.empty();
  const bool checkpointed =
      lines_->AppendWrites(batch.ledger_result.applied_count, closed_some, prepared_offsets_, write);
  windows_->AppendWrites(batch, write);
  if (closed_some) {
    // A closed window's lines (checkpointed now), applied-record buffer and gross leave memory.
    YRD_ASSERT(checkpointed);
    auto is_open = [this](WindowDay day) { return windows_->PersistedState(day) == WindowState::kOpen; };
    lines_->ForgetClosed(is_open);
    std::erase_if(applied_blobs_, [&](const auto& entry) { return !is_open(entry.first.first); });
    applied_cache_.Clear();
    windows_->ForgetClosed();
  }
  for (auto& [index, blob] : applied_blobs_) {
    if (blob.empty()) continue;
    // Numbered by the owner's next offset once this write is stored: its applied records are in
    // offset order, and a line checkpoint names the same number.
    const SourcePartition owner = index.second;
    AppliedKey(index.first, owner, static_cast<uint64_t>(prepared_offsets_.at({owner.topic, owner.partition})),
               key_scratch_);
    write.Put(Table::kApplied, key_scratch_, blob);
  }
  AppendRejections(batch, sequence, write);
  if (options_.changelog != nullptr) BuildChangelog(batch, prepared);
  if (batch.ownership) {
    EncodeOwnership(*batch.ownership, value_scratch_);
    write.Put(Table::kMeta, kOwnershipKey, value_scratch_);
  }
}

void Ledger::AppendRejections(const Batch& batch, uint64_t sequence, StateWriteBatch& write) {
  if (batch.dead_letters_delivered_through > dead_letters_dropped_through_) {
    DeadLetterKeyLimit(batch.dead_letters_delivered_through, key_scratch_);
    write.DeleteRange(Table::kMeta, kDeadLetterKeyPrefix, key_scratch_);
    dead_letters_dropped_through_ = batch.dead_letters_delivered_through;
  }
  for (const MessageSlot& slot : batch.slots()) {
    if (slot.fate != Fate::kRejected) continue;
    DeadLetterCopy copy = DeadLetterCopyOf(slot, sequence, options_.dead_letter_payload, dead_letter_scratch_);
    if (options_.keep_dead_letters) {
      // The copy may hold a card number: the store keeps it sealed.
      options_.dead_letter_sealer->Seal(copy.payload, sealed_scratch_);
      copy.payload = sealed_scratch_;
      DeadLetterKey(sequence, slot.topic, slot.partition, slot.offset, key_scratch_);
      EncodeDeadLetterCopy(copy, value_scratch_);
      write.Put(Table::kMeta, key_scratch_, value_scratch_);
    }
    ExceptionRecord exception;
    exception.reason = *slot.reason;
    exception.topic = slot.topic;
    exception.partition = slot.partition;
    exception.offset = slot.offset;
    exception.window = slot.window;
    exception.message_digest = slot.event.digest;
    exception.first_digest = slot.first_digest;
    exception.txn_id = IsValidId(slot.event.txn_id) ? slot.event.txn_id : std::string_view();
    exception.original_txn_id = IsValidId(slot.event.original_txn_id) ? slot.event.original_txn_id : std::string_view();
    exception.detail = copy.detail;
    exception.message_key = slot.key;
    ExceptionKey(slot.topic, slot.partition, slot.offset, key_scratch_);
    EncodeExceptionRecord(exception, value_scratch_);
    write.Put(Table::kExceptions, key_scratch_, value_scratch_);
    if (options_.changelog != nullptr) {
      ChangelogBuilderOf({slot.topic, slot.partition}).AddException(key_scratch_, value_scratch_);
    }
  }
}

void Ledger::AppendOffsets(const Batch& batch, uint64_t sequence, PreparedWrite& prepared) {
  StateWriteBatch& write = *prepared.write;
  // The committed offsets move only once the write returned OK (Commit moves them in).
  for (const MessageSlot& slot : batch.slots()) {
    int64_t& next = prepared_offsets_[{slot.topic, slot.partition}];
    // The source delivers each partition in order, without gaps it has not reported, and only
    // partitions below the bound the totals rely on (engine/base/money.h).
    YRD_ASSERT(slot.offset >= next);
    YRD_ASSERT(slot.partition >= 0 && slot.partition < kSourcePartitionsPerTopicMax);
    next = slot.offset + 1;
  }
  prepared.offsets = prepared_offsets_;
  for (const auto& [topic_partition, next] : prepared.offsets) {
    OffsetKey(topic_partition.first, topic_partition.second, key_scratch_);
    value_scratch_.clear();
    AppendBigEndian64(value_scratch_, static_cast<uint64_t>(next));
    write.Put(Table::kMeta, key_scratch_, value_scratch_);
  }
  value_scratch_.clear();
  AppendBigEndian64(value_scratch_, sequence);
  write.Put(Table::kMeta, kCommitSequenceKey, value_scratch_);
}

ChangelogRecordBuilder& Ledger::ChangelogBuilderOf(SourcePartition owner) {
  // Most calls in a row are for one owner (a batch's slots of a partition are together).
  if (last_changelog_ != nullptr && last_changelog_owner_ == owner) return last_changelog_->builder;
  ChangelogBuild& build = changelog_builds_[owner];  // a map's entries stay where they are
  const uint64_t sequence = prepared_sequence_ + 1;
  if (build.started_for != sequence) {
    build.started_for = sequence;
    changelog_owners_.push_back(owner);
    const auto next = prepared_offsets_.find({owner.topic, owner.partition});
    build.builder.Start({.kind = ChangelogKind::kCommit,
                         .owner = owner,
                         .epoch = options_.changelog->EpochOf(owner),
                         .number = changelog_progress_[owner].number + 1,
                         .next_offset = next == prepared_offsets_.end() ? kNoNextOffset : next->second});
  }
  last_changelog_owner_ = owner;
  last_changelog_ = &build;
  return build.builder;
}

void Ledger::BuildChangelog(const Batch& batch, PreparedWrite& prepared) {
  // Exceptions were added as the rejections were written; every owner with a message in the
  // batch gets a record (its offset moved), whatever else it changed.
  for (const MessageSlot& slot : batch.slots()) static_cast<void>(ChangelogBuilderOf({slot.topic, slot.partition}));
  // A window closed closes for every partition owned, idle ones included: each one's changelog
  // says its share of the window is complete (docs/scale-out.md, section 5).
  if (!batch.windows_closed.empty() || !batch.windows_reported.empty()) {
    for (const SourcePartition owner : options_.changelog->Owned()) {
      ChangelogRecordBuilder& builder = ChangelogBuilderOf(owner);
      for (const std::vector<WindowDay>* days : {&batch.windows_closed, &batch.windows_reported}) {
        for (const WindowDay day : *days) builder.AddWindowClosed(day, windows_->ClosedAtMs(day));
      }
    }
  }
  const LineIds& line_ids = lines_->line_ids();
  dedup_->VisitWritten([&](const TxnState& state) {
    const bool named = ChangelogBuilderOf(state.owner).AddTxnRecord(state.key, state.record, line_ids);
    YRD_ASSERT(named);  // the ledger numbered the line it gave the record
  });
  windows_->VisitWritten(
      [&](WindowDay day, SourcePartition owner, const WindowCounters& counters) {
        ChangelogBuilderOf(owner).AddCounters(day, counters);
      },
      [&](WindowDay day, SourcePartition owner, int64_t gross_fen) { ChangelogBuilderOf(owner).AddGross(day, gross_fen); });
  for (const auto& [index, blob] : applied_blobs_) {
    if (blob.empty()) continue;
    const SourcePartition owner = index.second;
    const uint64_t number = static_cast<uint64_t>(prepared_offsets_.at({owner.topic, owner.partition}));
    const bool named = ChangelogBuilderOf(owner).AddApplied(index.first, number, blob, line_ids);
    YRD_ASSERT(named);  // the ledger wrote the blob with its own line numbers
  }
  prepared.changelog.resize(changelog_owners_.size());
  for (size_t i = 0; i < changelog_owners_.size(); ++i) {
    const SourcePartition owner = changelog_owners_[i];
    ChangelogProgress& progress = changelog_progress_[owner];
    ++progress.number;
    progress.epoch = options_.changelog->EpochOf(owner);
    ChangelogRecord& record = prepared.changelog[i];
    record.owner = owner;
    record.number = progress.number;
    changelog_builds_[owner].builder.Finish(record.bytes);
    ChangelogProgressKey(owner, key_scratch_);
    EncodeChangelogProgress(progress, value_scratch_);
    prepared.write->Put(Table::kMeta, key_scratch_, value_scratch_);
  }
  changelog_owners_.clear();
  last_changelog_ = nullptr;
}

absl::Status Ledger::AppendDueSnapshots(std::span<const ChangelogRecord> records) {
  // Right after the commit: the store holds exactly its state of each owner, and no later commit
  // reaches the changelog before the snapshot. One per commit at most, so that partitions that
  // grow alike do not stall one commit with all their snapshots: the others follow with the next.
  for (const ChangelogRecord& record : records) {
    if (!options_.changelog->SnapshotDue(record.owner)) continue;
    absl::Status s = BuildOwnerSnapshot(store_, record.owner, options_.changelog->EpochOf(record.owner), record.number,
                                        snapshot_chunks_);
    if (s.ok()) s = options_.changelog->AppendSnapshot(record.owner, snapshot_chunks_);
    if (!s.ok()) Fail(s);
    return s;
  }
  return absl::OkStatus();
}

absl::Status Ledger::Commit(Batch& batch) {
  if (!batch.ledger_prepared) return Failure();  // Prepare failed and said why
  const uint64_t number = finished_count_.load(std::memory_order_relaxed);
  YRD_ASSERT(batch.ledger_prepared_number == number && "batches are committed in the order they were prepared");
  PreparedWrite& prepared = prepared_[number % kPreparedAheadMax];
  absl::Status status = failed() ? Failure() : absl::OkStatus();
  if (status.ok() && prepared.write_needed && !prepared.changelog.empty()) {
    // The changelog first: the local store is never ahead of it.
    status = options_.changelog->Append(prepared.changelog);
    if (!status.ok()) Fail(status);
  }
  if (status.ok() && prepared.write_needed) {
    status = store_.Write(*prepared.write);
    if (status.ok()) {
      {
        std::lock_guard<std::mutex> lock(offsets_mutex_);
        offsets_.swap(prepared.offsets);  // the slot's copy is rebuilt when it is reused
      }
      commit_sequence_.store(prepared.sequence, std::memory_order_release);
      dedup_->Wake();
      published_windows_.store(prepared.windows);
      if (!prepared.changelog.empty()) status = AppendDueSnapshots(prepared.changelog);
    } else {
      Fail(status);
    }
  }
  finished_count_.store(number + 1, std::memory_order_release);
  finished_count_.notify_all();
  return status;
}

}  // namespace yrd
