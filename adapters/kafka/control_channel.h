// ControlChannel: the commands every instance of a consumer group must see, carried by partition 0
// of the control topic (`yrd.control`), so that an operator's close posted to any instance closes
// the window on every one, and the file set written by one reaches the window state of all
// (docs/scale-out.md, section 5).
//
// Publish produces one command and returns once the broker has it. Every instance reads the
// partition from its oldest record in a thread of its own and hands each command to `on_command`
// in order: a command is a fact (the region closed a window at an instant, a window's files are
// written), applying one twice changes nothing, so a reader starts from the oldest each time.
// A record that is not a command is logged through `on_warning` and skipped: a bad record never
// stops the channel.
//
// Thread-safe: Publish from any thread; the callbacks run on the reader thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/base/window.h"

namespace yrd::kafka {

struct ControlCommand {
  enum class Kind : uint8_t { kClose = 0, kFilesWritten = 1 };
  Kind kind = Kind::kClose;
  WindowDay day = 0;
  int64_t at_ms = 0;   // kClose: the instant the window closes at; kFilesWritten: when written
  std::string from;    // the instance that published it (its group_instance_id), for the log
  bool operator==(const ControlCommand&) const = default;
};
// One line of JSON: {"command":"close","window":"20261127","at_ms":...,"from":"..."}.
[[nodiscard]] std::string EncodeControlCommand(const ControlCommand& command);
// nullopt for anything else (the reason in `error`).
[[nodiscard]] std::optional<ControlCommand> DecodeControlCommand(std::string_view bytes, std::string& error);

struct ControlChannelOptions {
  std::string bootstrap_servers;
  std::string topic = "yrd.control";  // config kafka.control_topic
  // How long a Publish waits for the broker's acknowledgement.
  std::chrono::milliseconds publish_timeout{30'000};
  std::function<void(const ControlCommand&)> on_command;
  std::function<void(const std::string&)> on_warning;
};

class ControlChannel {
 public:
  // Starts the reader. Fails when the producer or the consumer cannot be made.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<ControlChannel>> Start(ControlChannelOptions options);
  ~ControlChannel();  // stops the reader
  ControlChannel(const ControlChannel&) = delete;
  ControlChannel& operator=(const ControlChannel&) = delete;

  [[nodiscard]] absl::Status Publish(const ControlCommand& command);
  // Commands handed to on_command so far, and records skipped as not commands.
  [[nodiscard]] uint64_t commands_read() const;
  [[nodiscard]] uint64_t records_skipped() const;

 private:
  struct Impl;
  explicit ControlChannel(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace yrd::kafka
