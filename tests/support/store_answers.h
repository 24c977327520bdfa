// Test support: everything a store answers about its source partitions' state, one line per
// fact, so that two stores (a writer's and one restored from its changelog) are compared whole.
#pragma once

#include <string>
#include <vector>

#include "engine/store/state_store.h"

namespace yrd::test {

// The netting lines, counters and applied records of 2026-11-26 to 28, the exceptions, the
// offsets and partition gross, and every partition's transaction record of each of `txn_ids`.
// A read that fails is a test failure.
[[nodiscard]] std::vector<std::string> StoreAnswers(StateStore& store, const std::vector<std::string>& txn_ids);

}  // namespace yrd::test
