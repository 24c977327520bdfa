#include "adapters/fs/file_set.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <utility>

#include "adapters/crypto/hmac.h"
#include "adapters/crypto/sha256.h"
#include "engine/base/strings.h"

namespace yrd {
namespace {

absl::Status IoError(std::string_view operation, const std::string& path, int error_number) {
  return absl::ErrnoToStatus(error_number, Cat(operation, " ", path));
}

absl::Status WriteAll(int fd, std::string_view bytes, const std::string& path) {
  while (!bytes.empty()) {
    const ssize_t written = ::write(fd, bytes.data(), bytes.size());
    if (written < 0) {
      if (errno == EINTR) continue;
      return IoError("write", path, errno);
    }
    bytes.remove_prefix(static_cast<size_t>(written));
  }
  return absl::OkStatus();
}

// Reads up to `size` bytes, fewer only at the end of the file.
absl::StatusOr<size_t> ReadFull(int fd, char* data, size_t size, const std::string& path) {
  size_t done = 0;
  while (done < size) {
    const ssize_t got = ::read(fd, data + done, size - done);
    if (got < 0) {
      if (errno == EINTR) continue;
      return IoError("read", path, errno);
    }
    if (got == 0) break;
    done += static_cast<size_t>(got);
  }
  return done;
}

absl::Status SyncDirectory(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return IoError("open directory", path, errno);
  const int result = ::fsync(fd);
  const int sync_errno = errno;
  ::close(fd);
  if (result != 0) return IoError("fsync directory", path, sync_errno);
  return absl::OkStatus();
}

// Creates `path` as a directory of kClearingDirectoryMode unless it is one already.
absl::Status MakeDirectory(const std::string& path) {
  if (::mkdir(path.c_str(), kClearingDirectoryMode) == 0) {
    if (::chmod(path.c_str(), kClearingDirectoryMode) != 0) return IoError("chmod", path, errno);
    return absl::OkStatus();
  }
  if (errno != EEXIST) return IoError("mkdir", path, errno);
  struct stat status {};
  if (::stat(path.c_str(), &status) != 0) return IoError("stat", path, errno);
  if (!S_ISDIR(status.st_mode)) return absl::FailedPreconditionError(Cat(path, " exists and is not a directory"));
  return absl::OkStatus();
}

// True when the two files hold the same bytes.
absl::StatusOr<bool> SameContent(const std::string& a_path, const std::string& b_path) {
  const int a = ::open(a_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (a < 0) return IoError("open", a_path, errno);
  const int b = ::open(b_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (b < 0) {
    const int open_errno = errno;
    ::close(a);
    return IoError("open", b_path, open_errno);
  }
  absl::StatusOr<bool> same = true;
  struct stat a_status {
  }, b_status{};
  if (::fstat(a, &a_status) != 0 || ::fstat(b, &b_status) != 0) {
    same = IoError("fstat", a_path, errno);
  } else if (!S_ISREG(a_status.st_mode) || a_status.st_size != b_status.st_size) {
    same = false;
  } else {
    std::string a_chunk(kFileBufferBytes, '\0'), b_chunk(kFileBufferBytes, '\0');
    while (true) {
      absl::StatusOr<size_t> a_got = ReadFull(a, a_chunk.data(), a_chunk.size(), a_path);
      absl::StatusOr<size_t> b_got = ReadFull(b, b_chunk.data(), b_chunk.size(), b_path);
      if (!a_got.ok() || !b_got.ok()) {
        same = !a_got.ok() ? a_got.status() : b_got.status();
        break;
      }
      if (*a_got != *b_got || std::memcmp(a_chunk.data(), b_chunk.data(), *a_got) != 0) {
        same = false;
        break;
      }
      if (*a_got < a_chunk.size()) break;
    }
  }
  ::close(a);
  ::close(b);
  return same;
}

bool IsValidComponent(std::string_view component) {
  if (component.empty() || component.front() == '.') return false;
  for (const char c : component) {
    const bool ok =
        (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

// One file of the set: its buffer and temporary file.
class DirectoryFileSet::File final : public OutputFile {
 public:
  File(DirectoryFileSet& set, std::string relative_path, std::string final_path, std::string temporary_path,
       std::string directory)
      : set_(set),
        relative_path_(std::move(relative_path)),
        final_path_(std::move(final_path)),
        temporary_path_(std::move(temporary_path)),
        directory_(std::move(directory)) {}

  absl::Status Append(std::string_view bytes) override {
    if (!set_.failure_.ok()) return set_.failure_;
    if (set_.committed_) return absl::FailedPreconditionError(Cat(relative_path_, ": the set is committed"));
    buffer_.append(bytes);
    if (buffer_.size() < kFileBufferBytes) return absl::OkStatus();
    return set_.Fail(Flush(false));
  }

  // Writes the buffer to the temporary file and, with `sync`, makes it durable. The first time,
  // a temporary file a killed run left behind is unlinked, never opened: a kill between a
  // publication's link and unlink leaves that name on the published file's inode, and opening it
  // to truncate would empty the published file under the bank's eyes. The file is then created
  // anew (O_EXCL), a fresh inode no other name shares.
  [[nodiscard]] absl::Status Flush(bool sync) {
    if (!started_ && ::unlink(temporary_path_.c_str()) != 0 && errno != ENOENT) {
      return IoError("unlink", temporary_path_, errno);
    }
    const int flags = O_WRONLY | O_CLOEXEC | O_NOFOLLOW | (started_ ? O_APPEND : (O_CREAT | O_EXCL));
    const int fd = ::open(temporary_path_.c_str(), flags, kClearingFileMode);
    if (fd < 0) return IoError("open", temporary_path_, errno);
    absl::Status status;
    if (!started_ && ::fchmod(fd, kClearingFileMode) != 0) status = IoError("fchmod", temporary_path_, errno);
    started_ = true;
    if (status.ok()) status = WriteAll(fd, buffer_, temporary_path_);
    if (status.ok() && sync && ::fsync(fd) != 0) status = IoError("fsync", temporary_path_, errno);
    if (::close(fd) != 0 && status.ok()) status = IoError("close", temporary_path_, errno);
    buffer_.clear();
    return status;
  }

  DirectoryFileSet& set_;
  const std::string relative_path_;
  const std::string final_path_;
  const std::string temporary_path_;
  const std::string directory_;
  std::string buffer_;
  bool started_ = false;
  bool identical_ = false;  // the final name already holds these bytes
  bool published_ = false;
};

DirectoryFileSet::DirectoryFileSet(std::string window_dir) : window_dir_(std::move(window_dir)) {}

DirectoryFileSet::~DirectoryFileSet() {
  if (!committed_) RemoveTemporaryFiles();
}

absl::StatusOr<std::unique_ptr<DirectoryFileSet>> DirectoryFileSet::Open(const std::string& output_dir, WindowDay day) {
  if (output_dir.empty()) return absl::InvalidArgumentError("the output directory is not set");
  std::error_code error;
  const std::filesystem::path output = std::filesystem::absolute(output_dir, error);
  if (error) return absl::InvalidArgumentError(Cat("bad output directory ", output_dir, ": ", error.message()));
  if (!std::filesystem::exists(output, error)) {
    std::filesystem::create_directories(output, error);
    if (error) return absl::PermissionDeniedError(Cat("cannot create ", output.string(), ": ", error.message()));
    if (absl::Status s = SyncDirectory(output.parent_path().string()); !s.ok()) return s;
  }
  const std::string window_dir = (output / FormatWindowDay(day)).string();
  if (absl::Status s = MakeDirectory(window_dir); !s.ok()) return s;
  if (absl::Status s = SyncDirectory(output.string()); !s.ok()) return s;
  return std::unique_ptr<DirectoryFileSet>(new DirectoryFileSet(window_dir));
}

absl::Status DirectoryFileSet::Fail(absl::Status status) {
  if (!status.ok() && failure_.ok()) failure_ = status;
  return status;
}

absl::StatusOr<OutputFile*> DirectoryFileSet::Create(std::string relative_path) {
  if (!failure_.ok()) return failure_;
  if (committed_) return absl::FailedPreconditionError("the file set is already committed");
  std::vector<std::string_view> components;
  std::string_view rest = relative_path;
  while (true) {
    const size_t slash = rest.find('/');
    components.push_back(rest.substr(0, slash));
    if (slash == std::string_view::npos) break;
    rest.remove_prefix(slash + 1);
  }
  bool valid = components.size() <= kRelativePathDepthMax;
  for (const std::string_view component : components) valid = valid && IsValidComponent(component);
  if (!valid) return absl::InvalidArgumentError(Cat("'", relative_path, "' is not a valid file-set path"));
  if (!paths_.insert(relative_path).second) {
    return absl::AlreadyExistsError(Cat("file ", relative_path, " was created twice"));
  }
  std::string directory = window_dir_;
  for (size_t i = 0; i + 1 < components.size(); ++i) {
    directory = Cat(directory, "/", components[i]);
    if (absl::Status s = MakeDirectory(directory); !s.ok()) return Fail(s);
  }
  directories_.insert(directory);
  const std::string_view name = components.back();
  files_.push_back(std::make_unique<File>(*this, relative_path, Cat(directory, "/", name),
                                          Cat(directory, "/.", name, ".tmp"), directory));
  return files_.back().get();
}

absl::Status DirectoryFileSet::Publish(File& file) {
  if (file.identical_) {
    if (::unlink(file.temporary_path_.c_str()) != 0) return IoError("unlink", file.temporary_path_, errno);
    file.published_ = true;
    return absl::OkStatus();
  }
  if (::link(file.temporary_path_.c_str(), file.final_path_.c_str()) != 0) {
    if (errno != EEXIST) return IoError("link", file.final_path_, errno);
    // Someone wrote the final name since the comparison.
    absl::StatusOr<bool> same = SameContent(file.final_path_, file.temporary_path_);
    if (!same.ok()) return same.status();
    if (!*same) {
      return absl::AlreadyExistsError(Cat(file.final_path_,
                                          " appeared with different content while the set was being "
                                          "committed; it was not overwritten"));
    }
  }
  if (::unlink(file.temporary_path_.c_str()) != 0) return IoError("unlink", file.temporary_path_, errno);
  file.published_ = true;
  return absl::OkStatus();
}

absl::Status DirectoryFileSet::Commit() {
  if (!failure_.ok()) return failure_;
  if (committed_) return absl::FailedPreconditionError("the file set is already committed");
  for (const auto& file : files_) {
    if (absl::Status s = file->Flush(true); !s.ok()) return Fail(s);
  }
  // Every conflict is found before any name changes, so a refused set changes nothing.
  for (const auto& file : files_) {
    struct stat status {};
    if (::lstat(file->final_path_.c_str(), &status) != 0) {
      if (errno != ENOENT) return Fail(IoError("stat", file->final_path_, errno));
      continue;
    }
    absl::StatusOr<bool> same = SameContent(file->final_path_, file->temporary_path_);
    if (!same.ok()) return Fail(same.status());
    if (!*same) {
      RemoveTemporaryFiles();
      return Fail(
          absl::AlreadyExistsError(Cat(file->final_path_,
                                       " already exists with different content; it is never overwritten: move it away "
                                       "to write the window's files again")));
    }
    file->identical_ = true;
  }
  // Every file but the last (the MANIFEST), the directories, then the last, so that a reader who
  // sees the MANIFEST finds every file it lists.
  for (size_t i = 0; i + 1 < files_.size(); ++i) {
    if (absl::Status s = Publish(*files_[i]); !s.ok()) return Fail(s);
  }
  for (auto it = directories_.rbegin(); it != directories_.rend(); ++it) {
    if (absl::Status s = SyncDirectory(*it); !s.ok()) return Fail(s);
  }
  if (!files_.empty()) {
    File& last = *files_.back();
    if (absl::Status s = Publish(last); !s.ok()) return Fail(s);
    if (absl::Status s = SyncDirectory(last.directory_); !s.ok()) return Fail(s);
  }
  committed_ = true;
  return absl::OkStatus();
}

void DirectoryFileSet::RemoveTemporaryFiles() {
  for (const auto& file : files_) {
    if (file->started_ && !file->published_) ::unlink(file->temporary_path_.c_str());
  }
}

absl::StatusOr<Digests> MakeFileSetDigests(std::string_view manifest_key) {
  if (manifest_key.size() < kHmacKeyBytesMin) {
    return absl::InvalidArgumentError(
        Cat("the manifest key has ", manifest_key.size(), " bytes, fewer than ", kHmacKeyBytesMin));
  }
  absl::StatusOr<std::unique_ptr<HmacSha256>> hmac = HmacSha256::Create(manifest_key);
  if (!hmac.ok()) return hmac.status();
  std::shared_ptr<HmacSha256> shared_hmac = *std::move(hmac);
  Digests digests;
  digests.new_sha256 = []() -> std::unique_ptr<Sha256Stream> {
    absl::StatusOr<std::unique_ptr<Sha256>> hash = Sha256::Create();
    if (!hash.ok()) return nullptr;
    return *std::move(hash);
  };
  digests.hmac_hex = [shared_hmac](std::string_view message) { return shared_hmac->MacHex(message); };
  return digests;
}

}  // namespace yrd
