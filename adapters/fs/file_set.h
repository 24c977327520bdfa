// DirectoryFileSet: the FileSetSink (engine/clearing/clearing_files.h) that writes one window's clearing
// files under <output_dir>/<YYYYMMDD>/, as SPEC section 6 asks. Each file goes to a hidden
// temporary name in its final directory (".<name>.tmp"), through a buffer of kFileBufferBytes that
// is written with the file opened only for that write, so a registry of any size never runs out of
// file descriptors. Commit syncs every temporary file, compares each with any file already under
// its final name, and only when none differs links them to their final names (link(2) never
// replaces a name, even in a race), the MANIFEST last, syncing the directories before and after
// it. A file already there with the same bytes is left as it is, so regenerating a window is
// idempotent; one with other bytes fails Commit with AlreadyExists naming it, and nothing is
// renamed. Files get mode 0640 and directories 0750, whatever the umask.
//
// A final name only ever shows complete bytes and is never replaced, whatever instant the process
// dies at: a file is linked to its final name only once it is whole and synced, and a temporary
// name a killed run left behind (possibly a second name of a published file) is unlinked, never
// opened, before the file is written again.
//
// One DirectoryFileSet per window directory at a time (nothing locks out a second writer); it is
// owned and called by one thread. After an I/O failure every later call fails with the first
// status, since the temporary files are then in an unknown state. A set destroyed without a
// successful Commit removes its temporary files.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/base/window.h"
#include "engine/clearing/clearing_files.h"

namespace yrd {

// Bytes buffered per file before they are written to its temporary file.
inline constexpr size_t kFileBufferBytes = 64 * 1024;
inline constexpr mode_t kClearingFileMode = 0640;
inline constexpr mode_t kClearingDirectoryMode = 0750;
// Directory levels a relative path may have below the window directory ("banks/B3101.txt").
inline constexpr size_t kRelativePathDepthMax = 2;

class DirectoryFileSet final : public FileSetSink {
 public:
  // Creates <output_dir> (if missing) and <output_dir>/<YYYYMMDD>/, and syncs their parents.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<DirectoryFileSet>> Open(const std::string& output_dir,
                                                                              WindowDay day);
  ~DirectoryFileSet() override;
  DirectoryFileSet(const DirectoryFileSet&) = delete;
  DirectoryFileSet& operator=(const DirectoryFileSet&) = delete;

  // `relative_path` is at most kRelativePathDepthMax components of [A-Za-z0-9_.-], none of them
  // empty, "." or "..", or starting with '.' (hidden names are the temporary files).
  [[nodiscard]] absl::StatusOr<OutputFile*> Create(std::string relative_path) override;
  [[nodiscard]] absl::Status Commit() override;

  [[nodiscard]] const std::string& window_dir() const { return window_dir_; }

 private:
  class File;
  explicit DirectoryFileSet(std::string window_dir);
  // Records the first failure; every later call returns it.
  absl::Status Fail(absl::Status status);
  [[nodiscard]] absl::Status Publish(File& file);
  void RemoveTemporaryFiles();

  std::string window_dir_;
  std::vector<std::unique_ptr<File>> files_;  // in creation order
  std::set<std::string> paths_;
  std::set<std::string> directories_;  // absolute paths of the directories holding files
  absl::Status failure_;
  bool committed_ = false;
};

// The MANIFEST's hash functions over OpenSSL: SHA-256 per file and HMAC-SHA256 under
// `manifest_key` (raw bytes, at least kHmacKeyBytesMin of them; ReadKeyFile reads one).
[[nodiscard]] absl::StatusOr<Digests> MakeFileSetDigests(std::string_view manifest_key);

}  // namespace yrd
