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

}  // namespace yrd
