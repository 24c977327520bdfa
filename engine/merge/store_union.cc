#include "engine/merge/store_union.h"

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "engine/changelog/changelog.h"
#include "engine/readers/store_readers.h"
#include "engine/upgrade/store_upgrade.h"

namespace yrd {
namespace {

// Copies `own`'s kMeta records under each of `prefixes` into `write`.
absl::Status CopyMetaRecords(StateStore& own, std::initializer_list<std::string_view> prefixes, StateWriteBatch& write) {
  for (const std::string_view prefix : prefixes) {
    absl::Status s = own.Scan(Table::kMeta, prefix, {}, [&](std::string_view key, std::string_view value) {
      write.Put(Table::kMeta, key, value);
      return true;
    });
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

// Copies `from`'s kMeta records under `prefix` that `into` does not hold yet into `write`.
absl::Status CopyMissingMetaRecords(StateStore& from, StateStore& into, std::string_view prefix,
                                    StateWriteBatch& write) {
  absl::Status failure;
  absl::Status s = from.Scan(Table::kMeta, prefix, {}, [&](std::string_view key, std::string_view value) {
    std::string held;
    bool found = false;
    failure = into.Get(Table::kMeta, key, held, found);
    if (!failure.ok()) return false;
    if (!found) write.Put(Table::kMeta, key, value);
    return true;
  });
  return s.ok() ? failure : s;
}

// Copies each owner any of `stores` holds into `into` from the store with its latest commit (the
// first of them on a tie); returns every owner with the index of the store it came from.
absl::StatusOr<std::map<SourcePartition, size_t>> CopyEachOwnerFromTheLatest(std::span<StateStore* const> stores,
                                                                           StateStore& into) {
  std::map<SourcePartition, std::pair<size_t, uint64_t>> latest;  // owner -> (store, commit number)
  for (size_t i = 0; i < stores.size(); ++i) {
    absl::StatusOr<std::map<SourcePartition, ChangelogProgress>> progress = ReadChangelogProgress(*stores[i]);
    if (!progress.ok()) return progress.status();
    for (const auto& [owner, held] : *progress) {
      const auto [at, fresh] = latest.try_emplace(owner, i, held.number);
      if (!fresh && held.number > at->second.second) at->second = {i, held.number};
    }
  }
  std::map<SourcePartition, size_t> source;
  for (const auto& [owner, from] : latest) {
    absl::StatusOr<bool> copied = CopyOwnerState(*stores[from.first], into, owner);
    if (!copied.ok()) return copied.status();
    // An owner with nothing to copy (no later commit than an empty store's) counts as the first's.
    source[owner] = *copied ? from.first : 0;
  }
  return source;
}

// Puts into `write` what `stores[index]` says it lacks of the owners the union took from it.
absl::Status PutLackingShares(std::span<StateStore* const> stores, size_t index,
                              const std::map<SourcePartition, size_t>& source, StateWriteBatch& write) {
  absl::StatusOr<std::map<WindowDay, std::vector<SourcePartition>>> lacking = ReadLackingShares(*stores[index]);
  if (!lacking.ok()) return lacking.status();
  std::string key;
  for (const auto& [day, owners] : *lacking) {
    for (const SourcePartition owner : owners) {
      const auto it = source.find(owner);
      if ((it == source.end() ? 0 : it->second) != index) continue;
      LackingShareKey(day, owner, key);
      write.Put(Table::kMeta, key, {});
    }
  }
  return absl::OkStatus();
}

// `ownership` widened by `more`, in order.
Ownership Widened(Ownership ownership, const std::vector<SourcePartition>& more) {
  for (const SourcePartition owner : more) {
    if (std::find(ownership.owned.begin(), ownership.owned.end(), owner) == ownership.owned.end()) {
      ownership.owned.push_back(owner);
    }
  }
  std::sort(ownership.owned.begin(), ownership.owned.end());
  return ownership;
}

// Makes `into` a store (its format marker) holding `first`'s window records and card-token key
// check.
absl::Status StartUnion(StateStore& first, StateStore& into, StateWriteBatch& write) {
  if (absl::Status s = UpgradeStore(into); !s.ok()) return s;
  if (absl::Status s = CopyMetaRecords(first, {kWindowKeyPrefix, kCardTokenKeyCheckKey}, write); !s.ok()) return s;
  if (absl::Status s = into.Write(write); !s.ok()) return s;
  write.Clear();
  return absl::OkStatus();
}

}  // namespace

absl::Status BuildShardUnion(std::span<StateStore* const> shards, StateStore& into) {
  if (shards.empty()) return absl::InvalidArgumentError("a union of no shard stores");
  std::unique_ptr<StateWriteBatch> write = into.NewWriteBatch();
  if (absl::Status s = StartUnion(*shards.front(), into, *write); !s.ok()) return s;
  // A window only a later shard had activity in (or closed so far).
  for (StateStore* const shard : shards.subspan(1)) {
    if (absl::Status s = CopyMissingMetaRecords(*shard, into, kWindowKeyPrefix, *write); !s.ok()) return s;
    if (absl::Status s = into.Write(*write); !s.ok()) return s;
    write->Clear();
  }
  absl::StatusOr<std::map<SourcePartition, size_t>> source = CopyEachOwnerFromTheLatest(shards, into);
  if (!source.ok()) return source.status();

  // What each says it lacks of the owners taken from it, and whose partitions they own together.
  std::optional<Ownership> all;
  for (size_t i = 0; i < shards.size(); ++i) {
    if (absl::Status s = PutLackingShares(shards, i, *source, *write); !s.ok()) return s;
    absl::StatusOr<std::optional<Ownership>> ownership = ReadOwnership(*shards[i]);
    if (!ownership.ok()) return ownership.status();
    if (ownership->has_value()) all = all ? Widened(*std::move(all), (*ownership)->owned) : **ownership;
  }
  if (all) {
    std::string value;
    EncodeOwnership(*all, value);
    write->Put(Table::kMeta, kOwnershipKey, value);
  }
  return into.Write(*write);
}

absl::StatusOr<std::vector<SourcePartition>> BuildStoreUnion(StateStore& own, StateStore& standby, StateStore& into) {
  absl::StatusOr<std::map<SourcePartition, ChangelogProgress>> standby_progress = ReadChangelogProgress(standby);
  if (!standby_progress.ok()) return standby_progress.status();
  absl::StatusOr<std::optional<Ownership>> ownership = ReadOwnership(own);
  if (!ownership.ok()) return ownership.status();

  // The window records first: a copy then leaves out what `own` retired.
  std::unique_ptr<StateWriteBatch> write = into.NewWriteBatch();
  if (absl::Status s = StartUnion(own, into, *write); !s.ok()) return s;
  StateStore* const stores[] = {&own, &standby};
  absl::StatusOr<std::map<SourcePartition, size_t>> source = CopyEachOwnerFromTheLatest(stores, into);
  if (!source.ok()) return source.status();
  std::vector<SourcePartition> taken;
  for (const auto& [owner, from] : *source) {
    if (from == 1) taken.push_back(owner);
  }

  // What `own` says it lacks of the owners taken from it, and whose partitions the union holds.
  if (absl::Status s = PutLackingShares(stores, 0, *source, *write); !s.ok()) return s;
  if (ownership->has_value()) {
    // The standby follows every partition the member does not own: each one it holds is current
    // as of its last pass, whichever store the union took it from.
    std::vector<SourcePartition> followed;
    for (const auto& [owner, progress] : *standby_progress) followed.push_back(owner);
    std::string value;
    EncodeOwnership(Widened(**ownership, followed), value);
    write->Put(Table::kMeta, kOwnershipKey, value);
  }
  if (absl::Status s = into.Write(*write); !s.ok()) return s;
  return taken;
}

}  // namespace yrd
