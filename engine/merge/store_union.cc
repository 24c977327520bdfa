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

}  // namespace

absl::Status BuildShardUnion(StateStore& first, StateStore& second, StateStore& into) {
  absl::StatusOr<std::map<SourcePartition, ChangelogProgress>> first_progress = ReadChangelogProgress(first);
  if (!first_progress.ok()) return first_progress.status();
  absl::StatusOr<std::map<SourcePartition, ChangelogProgress>> second_progress = ReadChangelogProgress(second);
  if (!second_progress.ok()) return second_progress.status();
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

  std::map<SourcePartition, bool> from_second;  // every owner either store holds
  for (const auto& [owner, progress] : *first_progress) from_second[owner] = false;
  for (const auto& [owner, progress] : *second_progress) {
    const auto held = first_progress->find(owner);
    from_second[owner] = held == first_progress->end() || progress.number > held->second.number;
  }
  for (const auto& [owner, second_is_later] : from_second) {
    if (absl::StatusOr<bool> copied = CopyOwnerState(second_is_later ? second : first, into, owner); !copied.ok()) {
      return copied.status();
    }
  }

  // What each says it lacks of the owners taken from it, and whose partitions the two own.
  write->Clear();
  std::string key, value;
  for (const bool second_lacks : {false, true}) {
    absl::StatusOr<std::map<WindowDay, std::vector<SourcePartition>>> lacking =
        ReadLackingShares(second_lacks ? second : first);
    if (!lacking.ok()) return lacking.status();
    for (const auto& [day, owners] : *lacking) {
      for (const SourcePartition owner : owners) {
        if (from_second[owner] != second_lacks) continue;
        LackingShareKey(day, owner, key);
        write->Put(Table::kMeta, key, {});
      }
    }
  }
  if (first_ownership->has_value() || second_ownership->has_value()) {
    Ownership both = first_ownership->has_value() ? **first_ownership : **second_ownership;
    if (first_ownership->has_value() && second_ownership->has_value()) {
      for (const SourcePartition owner : (*second_ownership)->owned) {
        if (std::find(both.owned.begin(), both.owned.end(), owner) == both.owned.end()) both.owned.push_back(owner);
      }
      std::sort(both.owned.begin(), both.owned.end());
    }
    EncodeOwnership(both, value);
    write->Put(Table::kMeta, kOwnershipKey, value);
  }
  return into.Write(*write);
}

absl::StatusOr<std::vector<SourcePartition>> BuildStoreUnion(StateStore& own, StateStore& standby, StateStore& into) {
  absl::StatusOr<std::map<SourcePartition, ChangelogProgress>> own_progress = ReadChangelogProgress(own);
  if (!own_progress.ok()) return own_progress.status();
  absl::StatusOr<std::map<SourcePartition, ChangelogProgress>> standby_progress = ReadChangelogProgress(standby);
  if (!standby_progress.ok()) return standby_progress.status();
  absl::StatusOr<std::optional<Ownership>> ownership = ReadOwnership(own);
  if (!ownership.ok()) return ownership.status();

  if (absl::Status s = UpgradeStore(into); !s.ok()) return s;  // a new store: its format marker
  // The window records first: a copy then leaves out what `own` retired.
  std::unique_ptr<StateWriteBatch> write = into.NewWriteBatch();
  if (absl::Status s = CopyMetaRecords(own, {kWindowKeyPrefix, kCardTokenKeyCheckKey}, *write); !s.ok()) return s;
  if (absl::Status s = into.Write(*write); !s.ok()) return s;

  std::map<SourcePartition, bool> from_standby;  // every owner either store holds
  for (const auto& [owner, progress] : *own_progress) from_standby[owner] = false;
  for (const auto& [owner, progress] : *standby_progress) {
    const auto held = own_progress->find(owner);
    from_standby[owner] = held == own_progress->end() || progress.number > held->second.number;
  }
  std::vector<SourcePartition> taken;
  for (const auto& [owner, other] : from_standby) {
    absl::StatusOr<bool> copied = CopyOwnerState(other ? standby : own, into, owner);
    if (!copied.ok()) return copied.status();
    if (other && *copied) taken.push_back(owner);
  }

  // What `own` says it lacks of the owners taken from it, and whose partitions the union holds.
  absl::StatusOr<std::map<WindowDay, std::vector<SourcePartition>>> lacking = ReadLackingShares(own);
  if (!lacking.ok()) return lacking.status();
  write->Clear();
  std::string key, value;
  for (const auto& [day, owners] : *lacking) {
    for (const SourcePartition owner : owners) {
      if (from_standby[owner]) continue;
      LackingShareKey(day, owner, key);
      write->Put(Table::kMeta, key, {});
    }
  }
  if (ownership->has_value()) {
    // The standby follows every partition the member does not own: each one it holds is current
    // as of its last pass, whichever store the union took it from.
    Ownership widened = **ownership;
    for (const auto& [owner, progress] : *standby_progress) {
      if (std::find(widened.owned.begin(), widened.owned.end(), owner) == widened.owned.end()) {
        widened.owned.push_back(owner);
      }
    }
    std::sort(widened.owned.begin(), widened.owned.end());
    EncodeOwnership(widened, value);
    write->Put(Table::kMeta, kOwnershipKey, value);
  }
  if (absl::Status s = into.Write(*write); !s.ok()) return s;
  return taken;
}

}  // namespace yrd
