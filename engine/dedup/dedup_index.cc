#include "engine/dedup/dedup_index.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <span>

#include "engine/base/assert.h"

namespace yrd {

DedupIndex::DedupIndex(StateStore& store, uint64_t recent_records_max, const CommitProgress& progress)
    : store_(store), recent_records_max_(recent_records_max), progress_(progress) {
  YRD_ASSERT(recent_records_max_ > 0);
}

DedupIndex::~DedupIndex() {
  stopping_.store(true, std::memory_order_release);
  Wake();
  if (sort_thread_.joinable()) sort_thread_.join();
}

void DedupIndex::Wake() {
  wake_.fetch_add(1, std::memory_order_release);
  wake_.notify_all();
}

bool DedupIndex::Index(Recent& recent, std::unique_ptr<std::string> blob) {
  const std::string_view bytes = *blob;
  size_t position = 0;
  std::string_view key, record;
  bool damaged = false;
  // Keys are read kPrefetchAhead entries before they are inserted, and their slots prefetched.
  std::array<std::pair<std::string_view, std::string_view>, kPrefetchAhead> ahead;
  size_t read = 0, inserted = 0;
  auto insert_oldest = [&] {
    const auto& [k, r] = ahead[inserted++ % kPrefetchAhead];
    recent.index.insert_or_assign(k, r);
    ++recent.records_written;
  };
  while (NextRecentTxnEntry(bytes, position, key, record, damaged)) {
    if (read - inserted == kPrefetchAhead) insert_oldest();
    recent.index.prefetch(key);
    ahead[read++ % kPrefetchAhead] = {key, record};
  }
  while (inserted < read) insert_oldest();
  recent.blobs.push_back(std::move(blob));
  return !damaged;
}

absl::Status DedupIndex::Load(int64_t now_ms) {
  bool damaged = false;
  const absl::Status s = store_.Scan(Table::kRecentTxn, {}, {}, [&](std::string_view key, std::string_view value) {
    if (key.size() != 8 || !Index(recent_, std::make_unique<std::string>(value))) {
      damaged = true;
      return false;
    }
    recent_.through_sequence = ReadBigEndian64(key.data());
    return true;
  });
  if (!s.ok()) return s;
  if (damaged) return absl::DataLossError("a value of recent transaction records (kRecentTxn) is damaged");
  recent_.started_at_ms = now_ms;
  records_held_.store(recent_.index.size(), std::memory_order_relaxed);
  return absl::OkStatus();
}

// ---- one batch ----------------------------------------------------------------------------------

void DedupIndex::BeginBatch(size_t slot_count) {
  for (auto& index : batch_index_) {
    // clear() gives a large table's memory back; sized again at once, it does not grow (and
    // rehash) many times during the batch.
    index.clear();
    index.reserve(slot_count);
  }
  batch_index_by_key_.clear();
  states_used_ = 0;
  pending_.clear();
}

uint32_t DedupIndex::StateFor(SourcePartition owner, Family family, std::string_view txn_id) {
  auto& index = batch_index_[static_cast<size_t>(family)];
  const auto [it, inserted] = index.try_emplace(txn_id, static_cast<uint32_t>(states_used_));
  if (!inserted) {
    if (states_[it->second].owner == owner) return it->second;
    // The same txn_id from another partition: another owner's transaction.
    TxnKey(owner, family, txn_id, key_scratch_);
    if (const auto found = batch_index_by_key_.find(std::string_view(key_scratch_)); found != batch_index_by_key_.end()) {
      return found->second;
    }
    batch_index_by_key_.emplace(key_scratch_, static_cast<uint32_t>(states_used_));
  }
  if (states_used_ == states_.size()) states_.emplace_back();
  TxnState& state = states_[states_used_];
  state.owner = owner;
  TxnKey(owner, family, txn_id, state.key);
  state.exists = false;
  state.dirty = false;
  pending_.push_back(static_cast<uint32_t>(states_used_));
  return static_cast<uint32_t>(states_used_++);
}

const std::string_view* DedupIndex::FindRecent(std::string_view key) const {
  if (const auto it = recent_.index.find(key); it != recent_.index.end()) return &it->second;
  if (sorting_ != nullptr) {
    if (const auto it = sorting_->index.find(key); it != sorting_->index.end()) return &it->second;
  }
  return nullptr;
}

bool DedupIndex::Adopt(TxnState& state, std::string_view bytes, int64_t horizon_start_ms, LineIds& line_ids,
                       std::vector<uint32_t>& new_line_ids) {
  if (!DecodeTxnRecord(bytes, line_ids, state.record)) return false;
  // Past the dedup horizon: as if purged already (state.exists stays false).
  if (state.record.occurred_at_ms < horizon_start_ms) return true;
  if (state.record.line_id == kNoLineId && !state.record.line_key.empty()) {
    // A record written before line ids: its line gets one, stored with this batch.
    bool added = false;
    state.record.line_id = line_ids.IdOf(state.record.line_key, added);
    if (added) new_line_ids.push_back(state.record.line_id);
  }
  // A tap or a settlement has a line: its refunds and cancellations net into it.
  const bool has_line = state.record.kind == EventKind::kTap || state.record.kind == EventKind::kMedicalSettlement;
  if (has_line && state.record.line_id == kNoLineId) return false;
  // The record's views must outlive `bytes`. The ledger goes by the line's number only; the
  // original's id moves into the state's own string.
  state.record.line_key = {};
  state.original_txn_id.assign(state.record.original_txn_id);
  state.record.original_txn_id = state.original_txn_id;
  state.exists = true;
  return true;
}

absl::Status DedupIndex::LookUp(int64_t horizon_start_ms, LineIds& line_ids, std::vector<uint32_t>& new_line_ids) {
  // A recent record (of a batch committed or still waiting for its commit) is newer than kTxn's.
  lookup_keys_.clear();
  lookup_states_.clear();
  for (size_t k = 0; k < pending_.size(); ++k) {
    // The index is large and read at random: ask for the slots a few keys ahead.
    if (k + kPrefetchAhead < pending_.size()) {
      recent_.index.prefetch(std::string_view(states_[pending_[k + kPrefetchAhead]].key));
    }
    const uint32_t index = pending_[k];
    TxnState& state = states_[index];
    const std::string_view* recent = FindRecent(state.key);
    if (recent == nullptr) {
      lookup_keys_.push_back(state.key);
      lookup_states_.push_back(index);
    } else if (!Adopt(state, *recent, horizon_start_ms, line_ids, new_line_ids)) {
      return absl::DataLossError(Cat("transaction record ", state.key.substr(kOwnerKeyBytes + 1), " of ", FormatOwner(state.owner),
                                    " is damaged"));
    }
  }
  pending_.clear();
  const size_t count = lookup_keys_.size();
  if (count == 0) return absl::OkStatus();
  if (lookup_values_.size() < count) lookup_values_.resize(count);
  lookup_found_.assign(count, 0);
  if (absl::Status s = store_.MultiGet(Table::kTxn, lookup_keys_, std::span(lookup_values_.data(), count),
                                       lookup_found_);
      !s.ok()) {
    return s;
  }
  for (size_t i = 0; i < count; ++i) {
    if (!lookup_found_[i]) continue;
    TxnState& state = states_[lookup_states_[i]];
    if (!Adopt(state, lookup_values_[i], horizon_start_ms, line_ids, new_line_ids)) {
      return absl::DataLossError(Cat("transaction record ", state.key.substr(kOwnerKeyBytes + 1), " of ", FormatOwner(state.owner),
                                    " is damaged"));
    }
  }
  return absl::OkStatus();
}

void DedupIndex::AppendRecords(uint64_t sequence, int64_t now_ms, StateWriteBatch& write) {
  // The batch's transaction records go into one kRecentTxn value, which the index then keeps and
  // looks records up in until a sort moves them into kTxn.
  auto blob = std::make_unique<std::string>();
  blob->reserve(blob_bytes_);  // about the last one's size: it does not grow by copies
  StartRecentTxnBlob(*blob);
  bool records_written = false;
  for (size_t i = 0; i < states_used_; ++i) {
    TxnState& state = states_[i];
    if (!state.dirty) continue;
    state.record.original_txn_id = state.original_txn_id;
    EncodeTxnRecord(state.record, value_scratch_);
    AppendRecentTxnEntry(state.key, value_scratch_, *blob);
    records_written = true;
  }
  if (records_written) {
    blob_bytes_ = blob->size();
    RecentTxnKey(sequence, key_scratch_);
    write.Put(Table::kRecentTxn, key_scratch_, *blob);
    if (recent_.records_written == 0) {
      recent_.started_at_ms = now_ms;
      // Sized once for the records it will hold, instead of rehashing as it grows.
      recent_.index.reserve(std::min<uint64_t>(recent_records_max_, kIndexReserveMax));
    }
    const bool indexed = Index(recent_, std::move(blob));
    YRD_ASSERT(indexed);
    recent_.through_sequence = sequence;
  }
  if (sorted_through_ > deleted_through_) {
    RecentTxnKey(sorted_through_ + 1, key_scratch_);
    write.DeleteRange(Table::kRecentTxn, std::string_view(), key_scratch_);
    deleted_through_ = sorted_through_;
  }
}

// ---- the sort into kTxn -----------------------------------------------------------------------

absl::Status DedupIndex::BeforeBatch() {
  if (sorting_ != nullptr && (sort_done_.load(std::memory_order_acquire) ||
                              recent_.records_written >= recent_records_max_)) {
    return TakeSort();
  }
  return absl::OkStatus();
}

void DedupIndex::AfterBatch(int64_t now_ms) {
  records_held_.store(recent_.index.size() + (sorting_ != nullptr ? sorting_->index.size() : 0),
                      std::memory_order_relaxed);
  if (sorting_ != nullptr || recent_.records_written == 0) return;
  const bool enough = recent_.records_written >= recent_records_max_;
  if (!enough && now_ms - recent_.started_at_ms < kRecentAgeMaxMs) return;
  sorting_ = std::make_unique<Recent>(std::move(recent_));
  recent_ = Recent{};
  sort_done_.store(false, std::memory_order_relaxed);
  sort_thread_ = std::thread([this] { Sort(); });
}

void DedupIndex::Sort() {
  // Background work: the ledger and commit threads come first on a busy machine.
  (void)::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), kSortThreadNice);
  const Recent& recent = *sorting_;
  // Sorted by the keys' first bytes held inline (OrderPrefix), then by the whole keys.
  struct Sortable {
    OrderPrefix prefix;
    std::string_view key, record;
  };
  std::vector<Sortable> sortable;
  sortable.reserve(recent.index.size());
  for (const auto& [key, record] : recent.index) sortable.push_back({OrderPrefixOf(key), key, record});
  std::sort(sortable.begin(), sortable.end(), [](const Sortable& a, const Sortable& b) {
    if (a.prefix != b.prefix) return a.prefix < b.prefix;
    return a.key < b.key;
  });
  std::vector<std::pair<std::string_view, std::string_view>> records;
  records.reserve(sortable.size());
  for (const Sortable& entry : sortable) records.emplace_back(entry.key, entry.record);
  sortable = {};
  // Only committed records may reach kTxn: wait for the commit of the last batch in the set.
  absl::Status status;
  for (;;) {
    const uint32_t seen = wake_.load(std::memory_order_acquire);
    if (progress_.committed_sequence() >= recent.through_sequence) break;
    if (progress_.failed()) {
      status = progress_.Failure();
      break;
    }
    if (stopping_.load(std::memory_order_acquire)) {
      status = absl::AbortedError("the ledger stopped before the recent transaction records were committed");
      break;
    }
    wake_.wait(seen, std::memory_order_acquire);
  }
  if (status.ok()) status = store_.IngestSorted(Table::kTxn, records);
  sort_status_ = std::move(status);
  sort_done_.store(true, std::memory_order_release);
}

absl::Status DedupIndex::TakeSort() {
  if (!sort_thread_.joinable()) return progress_.Failure();  // a failed sort was taken before
  sort_thread_.join();
  absl::Status status = std::move(sort_status_);
  sort_status_ = absl::OkStatus();
  if (!status.ok()) return status;  // the set stays frozen: the ledger fails
  // The next write deletes the kRecentTxn values the sort stored into kTxn.
  sorted_through_ = sorting_->through_sequence;
  sorting_.reset();
  sorts_.fetch_add(1, std::memory_order_relaxed);
  records_held_.store(recent_.index.size(), std::memory_order_relaxed);
  return absl::OkStatus();
}

absl::Status DedupIndex::AwaitSort() {
  if (sorting_ == nullptr) return progress_.failed() ? progress_.Failure() : absl::OkStatus();
  return TakeSort();
}

}  // namespace yrd
