// Clearing files: renders the file set of SPEC section 6 for one closed window from the state
// store, after checking every invariant of SPEC section 4 on what the store holds. The byte
// layout of every file is documented in docs/file-format.md; this header is its only producer.
//
// The files are a deterministic function of the window's store content, the registry's list of
// banks and funds, and the ClosedWindow (close instant and frozen fee rates): no wall clock, no
// commit order. Summary files are built from the netting lines; detail files stream the applied
// records, one line per record, ordered by Kafka (partition, offset), which a replay after a crash
// reproduces exactly. Hashing is injected (Digests), so this module links no crypto library, and
// output goes to a FileSetSink, so it touches no file system.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/base/window.h"
#include "engine/clearing/positions.h"
#include "engine/registry/registry.h"
#include "engine/store/state_store.h"

namespace yrd {

// The format version written in every header; a reader refuses versions it does not know.
inline constexpr int kClearingFileFormatVersion = 1;
// Name of the manifest file at the root of a window's file set.
inline constexpr std::string_view kManifestPath = "MANIFEST";
// Tag of the manifest's last line, followed by a space and the HMAC-SHA256 in lowercase hex.
inline constexpr std::string_view kManifestSignatureTag = "HMAC-SHA256";
// At most this many invariant violations are spelled out in a FailedPrecondition message; the
// rest are counted.
inline constexpr size_t kViolationsReportedMax = 20;

// A window the daemon closed, as its WindowRecord in the store says: the files carry
// `closed_at_ms` in their headers, charge fees at `fees`, the schedule frozen at close, and go to
// the banks, funds and provinces registered then. Made by LoadClosedWindow.
struct ClosedWindow {
  WindowDay day = 0;
  int64_t closed_at_ms = 0;  // UTC epoch ms; must equal the record's closed_at_ms
  FeeSchedule fees;          // must equal the record's fee_basis_points and fee_bank_id
  // Every one of them gets files (or positions in the summary), active or not; the renderer adds
  // any other one the window's lines name.
  std::vector<std::string> bank_ids;
  std::vector<std::string> fund_ids;
  std::vector<std::string> province_codes;
  int64_t retired_at_ms = 0;  // its records left the store then (WindowRecord::retired_at_ms)
};

// The closed window every reader uses (the file writer, clearing-report's verify, statement,
// positions and outcome): the state record of `day` made a ClosedWindow. A record written before
// fee schedules and participants were frozen with the close takes them from `fallback`, the
// registry given, as the files of that version did. FailedPrecondition when the window is not
// closed, DataLoss when its record is damaged. The one place a window record becomes the
// schedule and the participants a reader charges and lists.
[[nodiscard]] absl::StatusOr<ClosedWindow> LoadClosedWindow(StateStore& store, WindowDay day,
                                                           const Registry& fallback);

// One file of a set being written. Created and owned by a FileSetSink; valid until the sink is
// destroyed. Not thread-safe.
class OutputFile {
 public:
  virtual ~OutputFile() = default;
  // Appends `bytes` at the end of the file. After a failure every later call on the sink fails.
  [[nodiscard]] virtual absl::Status Append(std::string_view bytes) = 0;
};

// Where a window's file set goes: a directory (adapters/fs), memory (tests, the report tool).
// The renderer creates every file, appends to them in any interleaving, and calls Commit once at
// the end; a set that is never committed must leave nothing visible. Not thread-safe.
class FileSetSink {
 public:
  virtual ~FileSetSink() = default;
  // Starts the file `relative_path` ("banks/B3101.txt", "MANIFEST"): '/'-separated, no "..".
  // Fails with AlreadyExists if this set created that path before.
  [[nodiscard]] virtual absl::StatusOr<OutputFile*> Create(std::string relative_path) = 0;
  // Makes every created file durable and visible under its final name, the one created last
  // (the MANIFEST) last. Fails with AlreadyExists, changing nothing, if a file of that name
  // already exists with different content.
  [[nodiscard]] virtual absl::Status Commit() = 0;
};

// An incremental SHA-256 over the bytes given to Update. One per file; not thread-safe.
class Sha256Stream {
 public:
  virtual ~Sha256Stream() = default;
  virtual void Update(std::string_view bytes) = 0;
  // The digest of everything updated so far, 64 lowercase hex characters; call once.
  [[nodiscard]] virtual std::string FinishHex() = 0;
};

// Hash functions for the MANIFEST, injected by the caller (adapters/fs/file_set.h builds them
// over OpenSSL). Both are called on the rendering thread only.
struct Digests {
  std::function<std::unique_ptr<Sha256Stream>()> new_sha256;
  // HMAC-SHA256 under the manifest key, 64 lowercase hex characters.
  std::function<std::string(std::string_view message)> hmac_hex;
};

// A FileSetSink that keeps the files in memory, for tests and for re-rendering a window to
// compare it with files on disk. Holds every byte: meant for small windows only.
class MemoryFileSet final : public FileSetSink {
 public:
  MemoryFileSet();
  ~MemoryFileSet() override;

  [[nodiscard]] absl::StatusOr<OutputFile*> Create(std::string relative_path) override;
  [[nodiscard]] absl::Status Commit() override;

  [[nodiscard]] bool committed() const { return committed_; }
  // Contents by relative path.
  [[nodiscard]] std::map<std::string, std::string> files() const;

 private:
  class File;
  std::map<std::string, std::unique_ptr<File>> files_;
  bool committed_ = false;
};

// A merchant's credit in one window, per bank it settles at, exactly as that bank's file
// carries it (MERCHANT_CREDIT): taps, gross, refunds, the fee at `fees` and the net.
struct MerchantStatementLine {
  std::string bank_id;
  Category category = Category::kBus;
  int64_t count = 0;
  int64_t gross_fen = 0;
  int64_t refund_count = 0;
  int64_t refunds_fen = 0;
  int64_t fee_fen = 0;
  int64_t net_fen = 0;
};
// From a window's netting lines (ReadWindowLines); empty when the merchant had no tap.
// DataLoss for a damaged line or a total that overflows.
[[nodiscard]] absl::StatusOr<std::vector<MerchantStatementLine>> MerchantStatement(const std::vector<WindowLine>& lines,
                                                                                   const FeeSchedule& fees,
                                                                                   std::string_view merchant_id);

// Reads the window's netting lines, counters and applied records from `store` and checks the
// invariants of SPEC section 4: bank-scheme, fund-scheme and province positions each sum to 0
// (CheckZeroSums); every netting line equals the sum of the applied records that netted into it;
// every settlement line's total equals fund pay + account pay + cash pay; the window's applied
// and late counters equal the number of its applied (late) records; offsets increase within each
// partition; and each bank's and fund's file net position equals its position from
// ComputeWindowOutcome. Returns one message per violation naming the total that is off (empty
// when all hold), or the store's error, DataLoss for a damaged record, or FailedPrecondition when
// the window is not closed, or `window` differs from its record (close instant or fee schedule).
[[nodiscard]] absl::StatusOr<std::vector<std::string>> CheckWindowInvariants(StateStore& store,
                                                                             const ClosedWindow& window);

// Renders and commits the file set of `window` to `sink`:
//   banks/<bank_id>.txt, banks/<bank_id>.detail.txt   for every bank of `window`, and any other
//   funds/<fund_id>.txt, funds/<fund_id>.detail.txt   bank or fund the window's lines name
//   summary.txt, MANIFEST
// Checks the invariants first (CheckWindowInvariants) and, if any fails, returns
// FailedPrecondition listing them and creates no file. Reads the applied records once to check
// them and once more per Kafka partition they came from; memory holds the netting lines and
// one record at a time, never a detail file. On error the sink is left uncommitted.
// FailedPrecondition for a window whose records were retired (its files are already written).
[[nodiscard]] absl::Status RenderWindowFiles(StateStore& store, const ClosedWindow& window, FileSetSink& sink,
                                             const Digests& digests);

}  // namespace yrd
