#include "engine/merge/window_merge.h"

#include "engine/base/strings.h"
#include "engine/batch/batch.h"
#include "engine/ledger/ledger.h"

namespace yrd {

absl::StatusOr<ClosedWindow> CloseMergedWindow(StateStore& store, const WindowCalendar& calendar, WindowDay day,
                                               int64_t closed_at_ms, std::shared_ptr<const Registry> registry,
                                               int64_t now_ms) {
  const std::string date = FormatWindowDay(day);
  {
    Ledger ledger(store, LedgerOptions{.calendar = calendar});
    if (absl::Status s = ledger.Load(now_ms); !s.ok()) return s;
    const std::shared_ptr<const WindowTable> windows = ledger.windows();
    const auto window = windows->find(day);
    if (window == windows->end()) {
      return absl::FailedPreconditionError(
          Cat("window ", date, " has no activity in any partition: there is no file set to write"));
    }
    if (window->second.state >= WindowState::kClosed && window->second.closed_at_ms != closed_at_ms) {
      return absl::FailedPreconditionError(Cat("window ", date, " is closed in the merge store at ",
                                               FormatChinaTime(window->second.closed_at_ms), ", not at ",
                                               FormatChinaTime(closed_at_ms)));
    }
    // One batch with nothing but the close: the commit that closes it checkpoints its lines.
    Batch close(BatchLimits{.messages_max = 1, .arena_bytes_max = 1 << 20});
    close.now_ms = now_ms;
    close.registry = registry;
    close.commands.push_back(WindowCommand::RegionClose(day, closed_at_ms));
    BatchResult ignored;
    if (absl::Status s = ledger.Apply(close, ignored); !s.ok()) return s;
  }
  return LoadClosedWindow(store, day, *registry);
}

absl::Status CopyWindowShare(StateStore& from, const LineIds& line_ids, WindowDay day, SourcePartition owner,
                             ChangelogRestore& into) {
  // The owner's next offset goes too: a store replays into the lines the applied records of the
  // owners it has an offset for.
  std::string prefix, key, value;
  OffsetKey(owner.topic, owner.partition, key);
  bool consumed = false;
  if (absl::Status s = from.Get(Table::kMeta, key, value, consumed); !s.ok()) return s;
  if (!consumed) return absl::OkStatus();
  if (value.size() != 8) return absl::DataLossError(Cat("the offset record of ", FormatOwner(owner), " is damaged"));
  ChangelogRecordBuilder builder;
  builder.Start({.kind = ChangelogKind::kCommit,
                 .owner = owner,
                 .epoch = 1,
                 .number = into.progress(owner).number + 1,
                 .next_offset = static_cast<int64_t>(ReadBigEndian64(value.data()))});
  WindowOwnerKeyPrefix(day, owner, prefix);
  bool named = true;
  absl::Status s = from.Scan(Table::kApplied, prefix, {}, [&](std::string_view applied_key, std::string_view blob) {
    named = applied_key.size() >= 8 &&
            builder.AddApplied(day, ReadBigEndian64(applied_key.data() + applied_key.size() - 8), blob, line_ids);
    return named;
  });
  if (!s.ok()) return s;
  if (!named) {
    return absl::DataLossError(Cat("an applied record of ", FormatOwner(owner), " in window ", FormatWindowDay(day),
                                   " is damaged or names a line its store does not number"));
  }
  CountersKey(day, owner, key);
  bool found = false;
  if (s = from.Get(Table::kMeta, key, value, found); !s.ok()) return s;
  if (found) {
    WindowCounters counters;
    if (!DecodeWindowCounters(value, counters)) {
      return absl::DataLossError(Cat("the counters of ", FormatOwner(owner), " in window ", FormatWindowDay(day),
                                     " are damaged"));
    }
    builder.AddCounters(day, counters);
  }
  std::string record;
  builder.Finish(record);
  return into.Apply(record).status();
}

}  // namespace yrd
