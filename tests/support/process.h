// Test support: child processes (the real programs, really started) and bounded waits.
// Every wait has a deadline; conditions are polled at kPollInterval, nothing sleeps for a
// fixed time hoping something happened.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace yrd::testing {

inline constexpr std::chrono::milliseconds kPollInterval{20};

// Polls `condition` until it holds or `timeout` passes; returns whether it held.
bool WaitFor(const std::function<bool()>& condition, std::chrono::milliseconds timeout);

class ChildProcess {
 public:
  // Starts `argv[0]` with its output appended to `log_path`. Aborts the test on failure.
  ChildProcess(std::vector<std::string> argv, const std::string& log_path);
  ~ChildProcess();  // SIGKILLs a child still running
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  void Signal(int signal);
  // Waits for the exit, at most `timeout`: the wait status, or nullopt when still running.
  std::optional<int> Wait(std::chrono::milliseconds timeout);
  [[nodiscard]] bool running();
  [[nodiscard]] pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int pidfd_ = -1;
  std::optional<int> status_;
};

// Runs a program to completion (bounded by `timeout`) and returns its exit code (-1 when it did
// not exit normally or in time); its stdout is returned through `output` when given.
int RunProgram(const std::vector<std::string>& argv, std::chrono::milliseconds timeout, std::string* output = nullptr,
               const std::string& log_path = "/dev/null");

// A fresh temporary directory, removed with everything below it when destroyed.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  [[nodiscard]] const std::string& path() const { return path_; }
  [[nodiscard]] std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

std::string ReadFile(const std::string& path);
void WriteFile(const std::string& path, const std::string& text, int mode = 0644);

}  // namespace yrd::testing
