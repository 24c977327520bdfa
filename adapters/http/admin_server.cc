#include "adapters/http/admin_server.h"

#include <array>
#include <exception>
#include <unordered_set>
#include <utility>
#include <vector>

#include "adapters/crypto/hmac.h"
#include "adapters/http/prometheus.h"
#include "adapters/log/log.h"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"
#include "engine/base/strings.h"

namespace yrd::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using Request = bhttp::request<bhttp::string_body>;
using Response = bhttp::response<bhttp::string_body>;

namespace {

constexpr std::string_view kTextContentType = "text/plain; charset=utf-8";
constexpr std::string_view kJsonContentType = "application/json";
constexpr std::string_view kWindowsPrefix = "/v1/windows/";
constexpr std::string_view kCloseSuffix = "/close";
// Bytes read from the socket at a time while discarding a request before closing.
constexpr size_t kLingerReadBytes = 4096;

std::string_view View(beast::string_view text) { return {text.data(), text.size()}; }

bool IsHttpParserError(const beast::error_code& error) {
  return error.category() == bhttp::make_error_code(bhttp::error::bad_method).category();
}

Response MakeResponse(bhttp::status status, unsigned version, std::string_view content_type, std::string body) {
  Response response{status, version};
  response.set(bhttp::field::content_type, beast::string_view(content_type.data(), content_type.size()));
  response.set(bhttp::field::cache_control, "no-store");
  response.body() = std::move(body);
  return response;
}

Response TextResponse(bhttp::status status, unsigned version, std::string body) {
  return MakeResponse(status, version, kTextContentType, std::move(body));
}

Response JsonResponse(bhttp::status status, unsigned version, const nlohmann::json& body) {
  std::string text = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  text.push_back('\n');
  return MakeResponse(status, version, kJsonContentType, std::move(text));
}

Response JsonError(bhttp::status status, unsigned version, std::string_view message) {
  return JsonResponse(status, version, nlohmann::json{{"error", message}});
}

Response MethodNotAllowed(unsigned version, std::string_view allowed) {
  Response response = TextResponse(bhttp::status::method_not_allowed, version, "method not allowed\n");
  response.set(bhttp::field::allow, beast::string_view(allowed.data(), allowed.size()));
  return response;
}

bhttp::status HttpStatusOf(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kNotFound: return bhttp::status::not_found;
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kAlreadyExists: return bhttp::status::conflict;
    case absl::StatusCode::kInvalidArgument: return bhttp::status::bad_request;
    case absl::StatusCode::kUnavailable: return bhttp::status::service_unavailable;
    default: return bhttp::status::internal_server_error;
  }
}

// The token of an `Authorization: Bearer <token>` header (the scheme is case-insensitive, as
// RFC 7235 says); empty for any other header.
std::string_view BearerToken(std::string_view authorization) {
  constexpr std::string_view kScheme = "bearer";
  if (authorization.size() <= kScheme.size() || authorization[kScheme.size()] != ' ') return {};
  for (size_t i = 0; i < kScheme.size(); ++i) {
    const char c = authorization[i];
    const char lower = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    if (lower != kScheme[i]) return {};
  }
  std::string_view token = authorization.substr(kScheme.size());
  while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
  while (!token.empty() && token.back() == ' ') token.remove_suffix(1);
  return token;
}

}  // namespace

absl::Status CheckAdminServerOptions(const AdminServerOptions& options) {
  boost::system::error_code address_error;
  (void)asio::ip::make_address(options.address, address_error);
  if (address_error) {
    return absl::InvalidArgumentError(Cat("admin address \"", options.address,
                                          "\" is not an IP address (a host name such as localhost is not taken)"));
  }
  if (options.connections_max < 1 || options.connections_max > kAdminConnectionsMaxLimit) {
    return absl::InvalidArgumentError(Cat("admin connections_max must be 1 to ", kAdminConnectionsMaxLimit, ", not ",
                                          options.connections_max));
  }
  if (options.request_body_bytes_max > kAdminRequestBodyBytesMaxLimit) {
    return absl::InvalidArgumentError(Cat("admin request_body_bytes_max must be 0 to ", kAdminRequestBodyBytesMaxLimit,
                                          ", not ", options.request_body_bytes_max));
  }
  if (options.request_header_bytes_max < kAdminRequestHeaderBytesMaxMin ||
      options.request_header_bytes_max > kAdminRequestHeaderBytesMaxLimit) {
    return absl::InvalidArgumentError(Cat("admin request_header_bytes_max must be ", kAdminRequestHeaderBytesMaxMin,
                                          " to ", kAdminRequestHeaderBytesMaxLimit, ", not ",
                                          options.request_header_bytes_max));
  }
  if (options.request_timeout < kAdminRequestTimeoutMin || options.request_timeout > kAdminRequestTimeoutMax) {
    return absl::InvalidArgumentError(Cat("admin request_timeout must be ", kAdminRequestTimeoutMin.count(), " to ",
                                          kAdminRequestTimeoutMax.count(), " ms, not ",
                                          options.request_timeout.count(), " ms"));
  }
  if (!options.close_token.empty()) {
    // The token itself never appears in a message.
    if (options.close_token.size() < kCloseTokenBytesMin || options.close_token.size() > kCloseTokenBytesMax) {
      return absl::InvalidArgumentError(Cat("admin close_token must be ", kCloseTokenBytesMin, " to ",
                                            kCloseTokenBytesMax, " bytes long, not ", options.close_token.size()));
    }
    for (char c : options.close_token) {
      if (c < 0x21 || c > 0x7e) {
        return absl::InvalidArgumentError("admin close_token may hold only visible ASCII characters (no space)");
      }
    }
  }
  return absl::OkStatus();
}

class Session;

// The listener and the registry of live connections. Shared by the AdminServer and every
// Session, so a connection that outlives the AdminServer object (its last handler still queued)
// never points at freed memory. Used on the io_context's thread only.
class AdminServer::Impl : public std::enable_shared_from_this<AdminServer::Impl> {
 public:
  Impl(asio::io_context& io, AdminServerOptions options, AdminHandler& handler)
      : options_(std::move(options)), handler_(handler), acceptor_(io), accept_retry_timer_(io) {}

  [[nodiscard]] absl::StatusOr<uint16_t> Listen(const asio::ip::address& address);
  void DoAccept();
  void OnAccept(const beast::error_code& error, tcp::socket socket);
  void OnAcceptRetry(const beast::error_code& error);
  void Stop();
  void Forget(Session* session) {
    serving_.erase(session);
    refusing_.erase(session);
  }
  // The response to one complete request. Calls the handler only for a well-formed, authorized
  // request of a known route.
  [[nodiscard]] Response Handle(const Request& request, std::string_view peer);

  const AdminServerOptions& options() const { return options_; }
  bool stopped() const { return stopped_; }

 private:
  [[nodiscard]] Response HandleWindow(const Request& request, std::string_view date);
  [[nodiscard]] Response HandleClose(const Request& request, std::string_view date, std::string_view peer);

  const AdminServerOptions options_;
  AdminHandler& handler_;
  tcp::acceptor acceptor_;
  asio::steady_timer accept_retry_timer_;
  // Connections being served (at most options_.connections_max) and connections being refused
  // with a 503 (at most as many again; beyond that a connection is closed at once).
  std::unordered_set<Session*> serving_;
  std::unordered_set<Session*> refusing_;
  bool stopped_ = false;
};

// One accepted connection: reads requests one at a time (do_read/on_read), answers each
// (do_write/on_write), keeps the connection alive when the client asks, and before closing after
// an error response reads and discards what the client still sends (do_linger/on_linger), within
// the same timeout. Owned by the shared_ptr its pending operation holds; io_context thread only.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, std::shared_ptr<AdminServer::Impl> server)
      : stream_(std::move(socket)),
        buffer_(server->options().request_header_bytes_max + server->options().request_body_bytes_max),
        server_(std::move(server)) {
    beast::error_code error;
    const tcp::endpoint remote = stream_.socket().remote_endpoint(error);
    if (!error) peer_ = Cat(remote.address().to_string(), ":", remote.port());
  }
  ~Session() { server_->Forget(this); }

  void Serve() { DoRead(); }
  void Refuse() {
    Response response = TextResponse(bhttp::status::service_unavailable, 11,
                                      "too many admin connections; retry shortly\n");
    response.set(bhttp::field::retry_after, "1");
    DoWrite(std::move(response), /*close_after=*/true);
  }
  // Server stopping: a response being written finishes first (bounded by the timeout).
  void StopGracefully() {
    if (writing_) {
      close_after_write_ = true;
    } else {
      Close();
    }
  }

 private:
  std::chrono::milliseconds timeout() const { return server_->options().request_timeout; }

  void DoRead() {
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(server_->options().request_header_bytes_max));
    parser_->body_limit(server_->options().request_body_bytes_max);
    stream_.expires_after(timeout());
    bhttp::async_read(stream_, buffer_, *parser_, beast::bind_front_handler(&Session::OnRead, shared_from_this()));
  }

  void OnRead(const beast::error_code& error, size_t /*bytes*/) {
    if (server_->stopped()) return Close();
    if (error == bhttp::error::end_of_stream) return Close();  // the client closed between requests
    if (error) {
      // Timeouts and socket errors: nobody to answer.
      if (!IsHttpParserError(error)) return Close();
      if (error == bhttp::error::body_limit ||
          (error == bhttp::error::buffer_overflow && parser_->is_header_done())) {
        return DoWrite(TextResponse(bhttp::status::payload_too_large, 11,
                                    Cat("request body larger than ", server_->options().request_body_bytes_max,
                                        " bytes\n")),
                       /*close_after=*/true);
      }
      if (error == bhttp::error::header_limit || error == bhttp::error::buffer_overflow) {
        return DoWrite(TextResponse(bhttp::status::request_header_fields_too_large, 11,
                                    Cat("request header larger than ", server_->options().request_header_bytes_max,
                                        " bytes\n")),
                       /*close_after=*/true);
      }
      return DoWrite(TextResponse(bhttp::status::bad_request, 11, Cat("malformed request: ", error.message(), "\n")),
                     /*close_after=*/true);
    }
    const Request request = parser_->release();
    Response response = server_->Handle(request, peer_);
    DoWrite(std::move(response), /*close_after=*/!request.keep_alive());
  }

  void DoWrite(Response response, bool close_after) {
    response_ = std::move(response);
    close_after_write_ = close_after_write_ || close_after;
    response_.keep_alive(!close_after_write_);
    response_.prepare_payload();
    writing_ = true;
    stream_.expires_after(timeout());
    bhttp::async_write(stream_, response_, beast::bind_front_handler(&Session::OnWrite, shared_from_this()));
  }

  void OnWrite(const beast::error_code& error, size_t /*bytes*/) {
    writing_ = false;
    if (error || server_->stopped()) return Close();
    if (close_after_write_) return DoLinger();
    DoRead();
  }

  void DoLinger() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.expires_after(timeout());
    DoLingerRead();
  }
  void DoLingerRead() {
    stream_.async_read_some(asio::buffer(linger_buffer_),
                            beast::bind_front_handler(&Session::OnLinger, shared_from_this()));
  }
  void OnLinger(const beast::error_code& error, size_t bytes) {
    lingered_bytes_ += bytes;
    if (error || server_->stopped() || lingered_bytes_ >= kAdminLingerBytesMax) return Close();
    DoLingerRead();
  }

  void Close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  Response response_;
  std::shared_ptr<AdminServer::Impl> server_;
  std::string peer_;
  bool writing_ = false;
  bool close_after_write_ = false;
  size_t lingered_bytes_ = 0;
  std::array<char, kLingerReadBytes> linger_buffer_{};
};

absl::StatusOr<uint16_t> AdminServer::Impl::Listen(const asio::ip::address& address) {
  const tcp::endpoint endpoint(address, options_.port);
  const std::string where = Cat(address.to_string(), ":", options_.port);
  beast::error_code error;
  acceptor_.open(endpoint.protocol(), error);
  if (!error) acceptor_.set_option(asio::socket_base::reuse_address(true), error);
  if (!error) acceptor_.bind(endpoint, error);
  if (!error) acceptor_.listen(asio::socket_base::max_listen_connections, error);
  if (error) return absl::UnavailableError(Cat("admin endpoint cannot listen on ", where, ": ", error.message()));
  const tcp::endpoint local = acceptor_.local_endpoint(error);
  if (error) return absl::UnavailableError(Cat("admin endpoint on ", where, ": ", error.message()));
  return local.port();
}

void AdminServer::Impl::DoAccept() {
  acceptor_.async_accept(beast::bind_front_handler(&Impl::OnAccept, shared_from_this()));
}

void AdminServer::Impl::OnAccept(const beast::error_code& error, tcp::socket socket) {
  if (stopped_) return;
  if (error) {
    // Out of file descriptors, for instance: try again a little later rather than spin.
    log::Warning("admin_accept_failed", {{"error", error.message()},
                                         {"action", "none if it clears; raise the file-descriptor limit if it repeats"}});
    accept_retry_timer_.expires_after(kAdminAcceptRetryDelay);
    accept_retry_timer_.async_wait(beast::bind_front_handler(&Impl::OnAcceptRetry, shared_from_this()));
    return;
  }
  if (serving_.size() < options_.connections_max) {
    auto session = std::make_shared<Session>(std::move(socket), shared_from_this());
    serving_.insert(session.get());
    session->Serve();
  } else if (refusing_.size() < options_.connections_max) {
    auto session = std::make_shared<Session>(std::move(socket), shared_from_this());
    refusing_.insert(session.get());
    session->Refuse();
  } else {
    beast::error_code ignored;
    socket.close(ignored);
  }
  DoAccept();
}

void AdminServer::Impl::OnAcceptRetry(const beast::error_code& error) {
  if (error || stopped_) return;
  DoAccept();
}

void AdminServer::Impl::Stop() {
  if (stopped_) return;
  stopped_ = true;
  beast::error_code ignored;
  acceptor_.close(ignored);
  accept_retry_timer_.cancel();
  // Hold every session while stopping them: Close may complete their operations.
  std::vector<std::shared_ptr<Session>> sessions;
  for (Session* session : serving_) sessions.push_back(session->shared_from_this());
  for (Session* session : refusing_) sessions.push_back(session->shared_from_this());
  for (const auto& session : sessions) session->StopGracefully();
}

Response AdminServer::Impl::Handle(const Request& request, std::string_view peer) {
  const unsigned version = request.version();
  const std::string_view target = View(request.target());
  const std::string_view path = target.substr(0, target.find('?'));
  const bool is_get = request.method() == bhttp::verb::get;
  try {
    if (path == "/metrics") {
      if (!is_get) return MethodNotAllowed(version, "GET");
      return MakeResponse(bhttp::status::ok, version, kPrometheusContentType, handler_.MetricsText());
    }
    if (path == "/healthz") {
      if (!is_get) return MethodNotAllowed(version, "GET");
      if (handler_.Healthy()) return TextResponse(bhttp::status::ok, version, "ok\n");
      return TextResponse(bhttp::status::service_unavailable, version, "unhealthy\n");
    }
    if (path == "/readyz") {
      if (!is_get) return MethodNotAllowed(version, "GET");
      std::string why_not;
      if (handler_.Ready(why_not)) return TextResponse(bhttp::status::ok, version, "ready\n");
      return TextResponse(bhttp::status::service_unavailable, version, Cat("not ready: ", why_not, "\n"));
    }
    if (path == "/v1/windows") {
      if (!is_get) return MethodNotAllowed(version, "GET");
      return JsonResponse(bhttp::status::ok, version, handler_.Windows());
    }
    if (path.starts_with(kWindowsPrefix)) {
      const std::string_view rest = path.substr(kWindowsPrefix.size());
      const size_t slash = rest.find('/');
      if (slash == std::string_view::npos) return HandleWindow(request, rest);
      if (rest.substr(slash) == kCloseSuffix) return HandleClose(request, rest.substr(0, slash), peer);
    }
    return TextResponse(bhttp::status::not_found, version, "not found\n");
  } catch (const std::exception& e) {
    log::Error("admin_handler_failed", {{"path", path},
                                        {"error", e.what()},
                                        {"action", "report this line to the maintainers; the daemon goes on"}});
    return TextResponse(bhttp::status::internal_server_error, version, "internal error\n");
  }
}

Response AdminServer::Impl::HandleWindow(const Request& request, std::string_view date) {
  const unsigned version = request.version();
  if (request.method() != bhttp::verb::get) return MethodNotAllowed(version, "GET");
  const std::optional<WindowDay> day = ParseWindowDate(date);
  if (!day) return JsonError(bhttp::status::bad_request, version, "the window date must be YYYYMMDD");
  std::optional<nlohmann::json> window = handler_.Window(*day);
  if (!window) return JsonError(bhttp::status::not_found, version, Cat("no window ", FormatWindowDay(*day)));
  return JsonResponse(bhttp::status::ok, version, *window);
}

Response AdminServer::Impl::HandleClose(const Request& request, std::string_view date, std::string_view peer) {
  const unsigned version = request.version();
  if (request.method() != bhttp::verb::post) return MethodNotAllowed(version, "POST");
  if (options_.close_token.empty()) {
    return JsonError(bhttp::status::forbidden, version, "the close command is disabled: no admin close token is configured");
  }
  // The token is checked before anything else about the request, so an unauthorized client
  // learns nothing from the answer.
  const std::string_view presented = BearerToken(View(request[bhttp::field::authorization]));
  if (!ConstantTimeEquals(presented, options_.close_token)) {
    log::Warning("admin_close_unauthorized",
                 {{"peer", peer},
                  {"action", "none if this was a typo; otherwise find who calls the admin endpoint from this address"}});
    Response response = JsonError(bhttp::status::unauthorized, version, "a valid bearer token is required");
    response.set(bhttp::field::www_authenticate, "Bearer realm=\"clearingd\"");
    return response;
  }
  const std::optional<WindowDay> day = ParseWindowDate(date);
  if (!day) return JsonError(bhttp::status::bad_request, version, "the window date must be YYYYMMDD");
  absl::StatusOr<nlohmann::json> accepted = handler_.CloseWindow(*day);
  const std::string window = FormatWindowDay(*day);
  if (!accepted.ok()) {
    log::Warning("admin_close_refused", {{"window", window},
                                         {"peer", peer},
                                         {"error", accepted.status().ToString()},
                                         {"action", "read the error; GET /v1/windows shows each window's state"}});
    return JsonResponse(HttpStatusOf(accepted.status().code()), version,
                        nlohmann::json{{"error", std::string(accepted.status().message())},
                                       {"code", absl::StatusCodeToString(accepted.status().code())}});
  }
  log::Info("admin_close_accepted", {{"window", window}, {"peer", peer}});
  return JsonResponse(bhttp::status::accepted, version, *accepted);
}

absl::StatusOr<std::unique_ptr<AdminServer>> AdminServer::Start(asio::io_context& io, AdminServerOptions options,
                                                                AdminHandler& handler) {
  if (absl::Status status = CheckAdminServerOptions(options); !status.ok()) return status;
  beast::error_code error;
  const asio::ip::address address = asio::ip::make_address(options.address, error);
  if (error) return absl::InvalidArgumentError(Cat("admin address \"", options.address, "\" is not an IP address"));
  if (!address.is_loopback()) {
    log::Warning("admin_endpoint_not_loopback",
                 {{"address", options.address},
                  {"action", "bind the admin endpoint to 127.0.0.1 unless a firewall restricts who reaches this port"}});
  }
  auto impl = std::make_shared<Impl>(io, std::move(options), handler);
  absl::StatusOr<uint16_t> port = impl->Listen(address);
  if (!port.ok()) return port.status();
  impl->DoAccept();
  return std::unique_ptr<AdminServer>(new AdminServer(std::move(impl), *port));
}

AdminServer::~AdminServer() { Stop(); }

void AdminServer::Stop() { impl_->Stop(); }

}  // namespace yrd::http
