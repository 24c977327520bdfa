// clearing-report verify: checks one window's clearing files (SPEC section 6) on disk against
// their MANIFEST, against themselves, and against the state store they were rendered from.
// Stops at the first mismatch and names the file, the line and the values that disagree. Reads
// files one line at a time and re-renders the window into a comparing sink, so a window of any
// size is checked in bounded memory. Runs on the caller's thread; touches nothing it reads.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "engine/registry/registry.h"
#include "engine/store/state_store.h"

namespace yrd {

// Largest MANIFEST read, bytes (about 100 bytes a file: far above any registry's file count).
inline constexpr size_t kManifestBytesMax = 64u << 20;

// Checks, in this order:
//   1. the MANIFEST's last line is the HMAC-SHA256 of its other lines under `manifest_key`;
//   2. every listed file has the listed size and SHA-256, and the directory holds no other
//      visible file;
//   3. every file is well formed (header, record layouts, LF line ends), every trailer equals the
//      sums of its file's D records, every detail trailer agrees with its bank's or fund's file,
//      what a fund owes another equals what that one is owed, each file's net position equals its
//      position in summary.txt, and summary.txt's positions sum to 0 in each scheme;
//   4. the window re-rendered from `store` (LoadClosedWindow: its close instant, frozen fee schedule
//      and participants, `registry` for a record from before they were frozen) gives exactly the
//      bytes on disk. Skipped, and said so in the summary, without a store (nullptr) or when the
//      store retired the window's records (store.window_retention_days).
// Returns a one-line summary, or DataLoss naming the first mismatch, or the error that kept it
// from reading a file or the store.
[[nodiscard]] absl::StatusOr<std::string> VerifyWindowFiles(const std::string& window_dir, StateStore* store,
                                                            const Registry& registry, std::string_view manifest_key);

// The `verify` subcommand: reads the key file (ReadKeyFile), runs VerifyWindowFiles and prints the
// verdict: with `format` "json" one object on stdout, {"window_dir", "verified": true|false,
// "summary" or "code" and "error"}; else the summary on stdout or the mismatch on stderr.
// Returns the exit code: 0 when every check holds, 1 otherwise.
[[nodiscard]] int RunVerify(const std::string& window_dir, StateStore* store, const Registry& registry,
                            const std::string& key_file, const std::string& format);

}  // namespace yrd
