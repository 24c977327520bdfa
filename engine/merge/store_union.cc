#include "engine/merge/store_union.h"

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
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

// Copies each owner either store holds into `into` from the one with its later commit (`first`
// on a tie); returns every owner and whether it came from `second`.
absl::StatusOr<std::map<SourcePartition, bool>> CopyEachOwnerFromTheLater(StateStore& first, StateStore& second,
                                                                        StateStore& into) {
  absl::StatusOr<std::map<SourcePartition, ChangelogProgress>> first_progress = ReadChangelogProgress(first);
  if (!first_progress.ok()) return first_progress.status();
  absl::StatusOr<std::map<SourcePartition, ChangelogProgress>> second_progress = ReadChangelogProgress(second);
  if (!second_progress.ok()) return second_progress.status();
  std::map<SourcePartition, bool> from_second;
  for (const auto& [owner, progress] : *first_progress) from_second[owner] = false;
  for (const auto& [owner, progress] : *second_progress) {
    const auto held = first_progress->find(owner);
    from_second[owner] = held == first_progress->end() || progress.number > held->second.number;
  }
  for (const auto& [owner, second_is_later] : from_second) {
    absl::StatusOr<bool> copied = CopyOwnerState(second_is_later ? second : first, into, owner);
    if (!copied.ok()) return copied.status();
    // An owner with nothing to copy (no later commit than an empty store's) counts as not taken.
    if (!*copied) from_second[owner] = false;
  }
  return from_second;
}

// Puts into `write` what `from` says it lacks of the owners the union took from it
// (`from_second[owner] == taken_from_second`).
absl::Status PutLackingShares(StateStore& from, const std::map<SourcePartition, bool>& from_second,
                              bool taken_from_second, StateWriteBatch& write) {
  absl::StatusOr<std::map<WindowDay, std::vector<SourcePartition>>> lacking = ReadLackingShares(from);
  if (!lacking.ok()) return lacking.status();
  std::string key;
  for (const auto& [day, owners] : *lacking) {
    for (const SourcePartition owner : owners) {
      const auto it = from_second.find(owner);
      if ((it != from_second.end() && it->second) != taken_from_second) continue;
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

}  // namespace

absl::Status BuildShardUnion(StateStore& first, StateStore& second, StateStore& into) {
  absl::StatusOr<std::optional<Ownership>> first_ownership = ReadOwnership(first);
  if (!first_ownership.ok()) return first_ownership.status();
  absl::StatusOr<std::optional<Ownership>> second_ownership = ReadOwnership(second);
  if (!second_ownership.ok()) return second_ownership.status();

  if (absl::Status s = UpgradeStore(into); !s.ok()) return s;  // a new store: its format marker
  std::unique_ptr<StateWriteBatch> write = into.NewWriteBatch();
  if (absl::Status s = CopyMetaRecords(first, {kWindowKeyPrefix, kCardTokenKeyCheckKey}, *write); !s.ok()) return s;
  if (absl::Status s = into.Write(*write); !s.ok()) return s;
  write->Clear();
  // A window only the second shard had activity in (or closed so far).
  if (absl::Status s = CopyMissingMetaRecords(second, into, kWindowKeyPrefix, *write); !s.ok()) return s;
  if (absl::Status s = into.Write(*write); !s.ok()) return s;

  absl::StatusOr<std::map<SourcePartition, bool>> from_second = CopyEachOwnerFromTheLater(first, second, into);
  if (!from_second.ok()) return from_second.status();

  // What each says it lacks of the owners taken from it, and whose partitions the two own.
  write->Clear();
  for (const bool second_side : {false, true}) {
    if (absl::Status s = PutLackingShares(second_side ? second : first, *from_second, second_side, *write); !s.ok()) {
      return s;
    }
  }
  if (first_ownership->has_value() || second_ownership->has_value()) {
    const Ownership both = !first_ownership->has_value()  ? **second_ownership
                           : !second_ownership->has_value() ? **first_ownership
                                                            : Widened(**first_ownership, (*second_ownership)->owned);
    std::string value;
    EncodeOwnership(both, value);
    write->Put(Table::kMeta, kOwnershipKey, value);
  }
  return into.Write(*write);
}

absl::StatusOr<std::vector<SourcePartition>> BuildStoreUnion(StateStore& own, StateStore& standby, StateStore& into) {
  absl::StatusOr<std::map<SourcePartition, ChangelogProgress>> standby_progress = ReadChangelogProgress(standby);
  if (!standby_progress.ok()) return standby_progress.status();
  absl::StatusOr<std::optional<Ownership>> ownership = ReadOwnership(own);
  if (!ownership.ok()) return ownership.status();

  if (absl::Status s = UpgradeStore(into); !s.ok()) return s;  // a new store: its format marker
  // The window records first: a copy then leaves out what `own` retired.
  std::unique_ptr<StateWriteBatch> write = into.NewWriteBatch();
  if (absl::Status s = CopyMetaRecords(own, {kWindowKeyPrefix, kCardTokenKeyCheckKey}, *write); !s.ok()) return s;
  if (absl::Status s = into.Write(*write); !s.ok()) return s;

  absl::StatusOr<std::map<SourcePartition, bool>> from_standby = CopyEachOwnerFromTheLater(own, standby, into);
  if (!from_standby.ok()) return from_standby.status();
  std::vector<SourcePartition> taken;
  for (const auto& [owner, other] : *from_standby) {
    if (other) taken.push_back(owner);
  }

  // What `own` says it lacks of the owners taken from it, and whose partitions the union holds.
  write->Clear();
  if (absl::Status s = PutLackingShares(own, *from_standby, /*taken_from_second=*/false, *write); !s.ok()) return s;
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
