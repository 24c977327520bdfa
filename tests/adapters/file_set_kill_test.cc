// A published clearing file is never shown incomplete and never replaced, even when the writer
// dies between a file's two publication steps (link to the final name, unlink of the temporary):
// that leaves both names on one inode, and the next writer must not write through the temporary
// name. Tested by building that state by hand, with the same and with other bytes, and by
// killing a writer (a forked child) right after its link. This binary defines link(2) itself,
// over the system call, so that it can kill the child at that instant; only this test links it.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "adapters/fs/file_set.h"
#include "gtest/gtest.h"
#include "tests/support/events.h"

namespace {

// The final path whose link kills the process; empty: link behaves as always.
char g_kill_after_linking[4096] = {};

}  // namespace

extern "C" int link(const char* from, const char* to) {
  const int result = static_cast<int>(::syscall(SYS_linkat, AT_FDCWD, from, AT_FDCWD, to, 0));
  if (result == 0 && g_kill_after_linking[0] != '\0' && std::strcmp(to, g_kill_after_linking) == 0) {
    ::raise(SIGKILL);
  }
  return result;
}

namespace yrd {
namespace {

namespace fs = std::filesystem;

constexpr WindowDay kDay = 20784;  // 2026-11-27

std::string ReadWhole(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

ino_t Inode(const fs::path& path) {
  struct stat status {};
  return ::stat(path.c_str(), &status) == 0 ? status.st_ino : 0;
}

class FileSetKillTest : public ::testing::Test {
 protected:
  // Writes `bank` and a MANIFEST as one set; the bank file is larger than the buffer, so its
  // temporary file is written to before Commit.
  absl::Status WriteSet(const std::string& bank) {
    auto set = DirectoryFileSet::Open(output_dir_, kDay);
    if (!set.ok()) return set.status();
    absl::StatusOr<OutputFile*> file = (*set)->Create("banks/B1.txt");
    if (!file.ok()) return file.status();
    if (absl::Status s = (*file)->Append(bank); !s.ok()) return s;
    // Before the commit: whatever the temporary name was, the published file is intact.
    if (fs::exists(final_) && ReadWhole(final_) != published_) {
      return absl::InternalError("the published file changed while the set was being written");
    }
    absl::StatusOr<OutputFile*> manifest = (*set)->Create("MANIFEST");
    if (!manifest.ok()) return manifest.status();
    if (absl::Status s = (*manifest)->Append("manifest\n"); !s.ok()) return s;
    return (*set)->Commit();
  }

  // As a killed run leaves it: the final name published, the temporary name on the same inode.
  void PublishWithTheTemporaryNameLeftOn(const std::string& bytes) {
    fs::create_directories(final_.parent_path());
    std::ofstream(final_, std::ios::binary) << bytes;
    ASSERT_EQ(::syscall(SYS_linkat, AT_FDCWD, final_.c_str(), AT_FDCWD, temporary_.c_str(), 0), 0);
    published_ = bytes;
  }

  test::TempDir dir_;
  const std::string output_dir_ = dir_.path() + "/out";
  const fs::path final_ = fs::path(output_dir_) / "20261127/banks/B1.txt";
  const fs::path temporary_ = fs::path(output_dir_) / "20261127/banks/.B1.txt.tmp";
  const std::string bytes_ = std::string(3 * kFileBufferBytes, 'a') + "end\n";
  const std::string other_bytes_ = std::string(3 * kFileBufferBytes, 'b') + "end\n";
  std::string published_;
};

TEST_F(FileSetKillTest, BothNamesOnOneInodeWithTheSameBytesIsFinishedAndTheFileKept) {
  PublishWithTheTemporaryNameLeftOn(bytes_);
  const ino_t inode = Inode(final_);
  const absl::Status status = WriteSet(bytes_);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(ReadWhole(final_), bytes_);
  EXPECT_EQ(Inode(final_), inode);  // left as it was, not replaced
  EXPECT_FALSE(fs::exists(temporary_));
}

TEST_F(FileSetKillTest, BothNamesOnOneInodeWithOtherBytesIsRefusedAndTheFileKept) {
  PublishWithTheTemporaryNameLeftOn(other_bytes_);
  const absl::Status status = WriteSet(bytes_);
  EXPECT_EQ(status.code(), absl::StatusCode::kAlreadyExists) << status;
  EXPECT_EQ(ReadWhole(final_), other_bytes_);
  EXPECT_FALSE(fs::exists(fs::path(output_dir_) / "20261127/MANIFEST"));
}

TEST_F(FileSetKillTest, AWriterKilledBetweenLinkAndUnlinkLeavesAFileTheNextOneNeverTouches) {
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    std::strncpy(g_kill_after_linking, final_.c_str(), sizeof g_kill_after_linking - 1);
    (void)WriteSet(bytes_);
    ::_exit(3);  // not reached: the link killed the process
  }
  int wait_status = 0;
  ASSERT_EQ(::waitpid(child, &wait_status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(wait_status) && WTERMSIG(wait_status) == SIGKILL) << wait_status;
  // The state the issue found: both names on one inode, the bytes whole.
  ASSERT_EQ(ReadWhole(final_), bytes_);
  ASSERT_EQ(Inode(temporary_), Inode(final_));
  published_ = bytes_;

  // A writer with other bytes is refused and changes nothing; the same bytes finish the set.
  EXPECT_EQ(WriteSet(other_bytes_).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(ReadWhole(final_), bytes_);
  const absl::Status status = WriteSet(bytes_);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(ReadWhole(final_), bytes_);
  EXPECT_EQ(ReadWhole(fs::path(output_dir_) / "20261127/MANIFEST"), "manifest\n");
  EXPECT_FALSE(fs::exists(temporary_));
}

}  // namespace
}  // namespace yrd
