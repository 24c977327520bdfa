// The daemon's admin endpoint: a small HTTP/1.1 server (Boost.Beast) for Prometheus, health
// checks, window status and the operator's close command. See docs/operations.md for the routes.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "boost/asio/io_context.hpp"
#include "engine/base/window.h"
#include "nlohmann/json.hpp"

namespace yrd::http {

// Ranges the options must fall in; Start refuses anything outside with InvalidArgument.
inline constexpr size_t kAdminConnectionsMaxLimit = 1024;
inline constexpr size_t kAdminRequestBodyBytesMaxLimit = 1024 * 1024;
inline constexpr size_t kAdminRequestHeaderBytesMaxMin = 1024;
inline constexpr size_t kAdminRequestHeaderBytesMaxLimit = 64 * 1024;
inline constexpr std::chrono::milliseconds kAdminRequestTimeoutMin{100};
inline constexpr std::chrono::milliseconds kAdminRequestTimeoutMax{600'000};
// A configured close token must be at least this long (a short token can be guessed) and at
// most this long (it travels in a header).
inline constexpr size_t kCloseTokenBytesMin = 16;
inline constexpr size_t kCloseTokenBytesMax = 1024;
// After a response that closes the connection (413, 431, 400), the server reads and discards at
// most this many bytes, within request_timeout, before closing, so that the client receives the
// response instead of a reset caused by its unread request bytes.
inline constexpr size_t kAdminLingerBytesMax = 64 * 1024;
// When accepting fails (out of file descriptors, for instance), the next accept waits this long.
inline constexpr std::chrono::milliseconds kAdminAcceptRetryDelay{100};

// Options of the admin endpoint. Read once by Start: none of them changes while it runs (a
// reload of the daemon's configuration does not pick them up).
struct AdminServerOptions {
  // IP address to listen on. Default loopback only; anything else exposes the endpoint to the
  // network, so Start logs a warning for a non-loopback address.
  std::string address = "127.0.0.1";
  // TCP port, 0 to 65535; 0 picks a free port (read it back with AdminServer::port()).
  uint16_t port = 9464;
  // Bearer token that POST /v1/windows/{date}/close must present. Empty (the default) disables
  // the command (403); otherwise kCloseTokenBytesMin to kCloseTokenBytesMax bytes of visible
  // ASCII (0x21 to 0x7e). Never logged.
  std::string close_token;
  // Connections served at once, 1 to kAdminConnectionsMaxLimit; default 64. A connection beyond
  // it is accepted, answered 503 with `Connection: close`, and closed.
  size_t connections_max = 64;
  // Largest request body in bytes, 0 to kAdminRequestBodyBytesMaxLimit; default 4096. A larger
  // body gets 413 and the connection is closed.
  size_t request_body_bytes_max = 4096;
  // Largest request line plus header fields in bytes, kAdminRequestHeaderBytesMaxMin to
  // kAdminRequestHeaderBytesMaxLimit; default 8192. Larger gets 431 and the connection is closed.
  size_t request_header_bytes_max = 8192;
  // Time a client has to send a whole request (from the connection's start, or from the end of
  // the previous response on a kept-alive connection) and then to receive the response;
  // kAdminRequestTimeoutMin to kAdminRequestTimeoutMax, default 5000 ms. When it passes the
  // connection is closed.
  std::chrono::milliseconds request_timeout{5000};
};

// What the admin endpoint serves, implemented by the daemon. Every method is called on the
// thread running the io_context given to AdminServer::Start, one request at a time, and must
// return quickly (it holds up every other admin request): read atomics and published snapshots,
// queue commands, never wait for the pipeline. An exception thrown by a method becomes a 500
// and a log line; it never leaves the io_context.
class AdminHandler {
 public:
  virtual ~AdminHandler() = default;
  // The body of GET /metrics in the Prometheus text format (build it with PrometheusText).
  virtual std::string MetricsText() = 0;
  // GET /healthz: false when the process should be restarted.
  virtual bool Healthy() = 0;
  // GET /readyz: true when the store is writable and consumption is caught up; otherwise false,
  // with `why_not` set to one line for the operator (it is sent in the 503 body).
  virtual bool Ready(std::string& why_not) = 0;
  // GET /v1/windows: a JSON document of every window the daemon knows.
  virtual nlohmann::json Windows() = 0;
  // GET /v1/windows/{date}: one window, or nullopt for a window the daemon does not know (404).
  // `day` was parsed from a valid YYYYMMDD.
  virtual std::optional<nlohmann::json> Window(WindowDay day) = 0;
  // POST /v1/windows/{date}/close, called only after the bearer token matched. Queues the close
  // and returns at once: OK becomes 202 Accepted with the returned JSON as body. An error becomes
  // NotFound 404, FailedPrecondition or AlreadyExists 409, InvalidArgument 400, Unavailable 503,
  // anything else 500, with {"error": message, "code": ...} as body.
  virtual absl::StatusOr<nlohmann::json> CloseWindow(WindowDay day) = 0;
};

// AdminServer: listens on AdminServerOptions::address and port and serves AdminHandler over
// HTTP/1.1 with keep-alive, on the io_context given to Start, which the caller runs (the daemon's
// main io_context, next to its signal_set). Every connection is bounded in header and body size
// and in time, and their number is bounded; see AdminServerOptions. The server owns its
// connections; the handler must outlive the server and is never called after Stop.
//
// Start, port, Stop and the destructor must be called on the io_context's thread, or while the
// io_context is not running. Stop stops accepting, closes idle connections and lets a response
// being written finish (bounded by request_timeout); after it the io_context has no more work from
// this server once those complete, so io_context::run can return. The destructor calls Stop.
// What Start would refuse of `options` before it listens: an address that is not an IP address,
// a limit out of its range, a close token of the wrong length or with other than visible ASCII.
[[nodiscard]] absl::Status CheckAdminServerOptions(const AdminServerOptions& options);

class AdminServer {
 public:
  // Checks the options, binds and listens (synchronously, so a taken port or a bad address is
  // reported here: InvalidArgument for options, Unavailable for a bind or listen failure, which a
  // retry later may fix), then starts accepting on `io`.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<AdminServer>> Start(boost::asio::io_context& io,
                                                                          AdminServerOptions options,
                                                                          AdminHandler& handler);
  ~AdminServer();
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // The port listened on (the chosen one when options.port was 0).
  [[nodiscard]] uint16_t port() const { return port_; }
  // Idempotent.
  void Stop();

  class Impl;

 private:
  AdminServer(std::shared_ptr<Impl> impl, uint16_t port) : impl_(std::move(impl)), port_(port) {}
  std::shared_ptr<Impl> impl_;
  uint16_t port_;
};

}  // namespace yrd::http
