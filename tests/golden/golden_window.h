// The golden clearing-file window: a small, hand-checked day (2026-11-27) built with the real
// Ledger on a real RocksStore, from which tests/golden/20261127/ was rendered and checked by hand.
// It holds, on purpose: a fee rounded half up at exactly half a fen (metro net 850 fen at 100 bp:
// 8.5 -> 9), a fee rounded down (bus net 700 fen at 15 bp: 1.05 -> 1), a refund, a free entry of
// 0 fen, a late tap from the 26th, an exact duplicate, a conflict, a refund of an unknown tap,
// a settlement where the insured fund is the institution's own fund, a cancelled settlement, taps
// from two Kafka partitions, an idle bank (B3401) and an idle fund (320100).
//
// Expected positions (fen). Bank scheme: B3101 +251, B3201 -800, B3301 +549, B3401 0;
// provinces 310000 +250, 320000 -800, 330000 +550. Fund scheme: 310100 -7000, 330100 -4600,
// 320100 0, H_HZ_1 +11000, P_SH_1 +600; provinces 310000 -6400, 330000 +6400.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "engine/clearing/clearing_files.h"
#include "engine/registry/registry.h"
#include "engine/store/state_store.h"

namespace yrd::test {

inline constexpr WindowDay kGoldenDay = 20784;  // 2026-11-27
inline constexpr std::string_view kGoldenDate = "20261127";
// The MANIFEST key of the golden files (not a secret: it signs test data only).
inline constexpr std::string_view kGoldenManifestKey = "golden-manifest-key-not-a-secret";
// The card-token key the golden day's cards were hashed with (not a secret either).
inline constexpr std::string_view kGoldenCardTokenKey = "golden-card-token-key-not-a-secret";

// tests/golden in the source tree.
[[nodiscard]] std::string GoldenDir();

struct GoldenWindow {
  std::shared_ptr<const Registry> registry;
  ClosedWindow window;
};

// Applies the golden day's messages to `store` through a Ledger, as the daemon would, and marks
// the window closed at its clock close instant (2026-11-28 00:15 CST).
[[nodiscard]] absl::StatusOr<GoldenWindow> BuildGoldenWindow(StateStore& store);

}  // namespace yrd::test
