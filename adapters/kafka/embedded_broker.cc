#include "adapters/kafka/embedded_broker.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <string_view>

#include "adapters/kafka/log_route.h"
#include "engine/base/assert.h"
#include "fmt/format.h"

// How a fixed port is given to the mock cluster.
//
// librdkafka 2.0.2 has no API or property for the mock's listen address: each mock broker binds
// a socket to 127.0.0.1 port 0 inside rd_kafka_mock_cluster_new, on the calling thread, asks the
// kernel which port it got, and advertises that port in its metadata. A forwarder from a fixed
// port would not do, because clients follow the advertised port. So this file defines bind()
// itself: while Start() is inside rd_kafka_mock_cluster_new on this thread, a bind of an IPv4
// socket to 127.0.0.1 port 0 is given the next requested port instead. Any other bind, on any
// thread or at any other time, goes straight to the C library. The mock then listens on, and
// advertises, the requested port, and Start() checks that every broker got its port before it
// reports success, so a librdkafka that binds differently fails loudly rather than quietly
// listening elsewhere.

namespace {

using BindFunction = int (*)(int, const sockaddr*, socklen_t);

// The ports to hand out, armed only on the thread inside rd_kafka_mock_cluster_new.
struct FixedPortRequest {
  uint16_t next_port = 0;
  int remaining_count = 0;
  int placed_count = 0;
  // The first fixed port that could not be bound, and why; 0 when none failed.
  uint16_t failed_port = 0;
  int failed_errno = 0;
};

thread_local FixedPortRequest* t_fixed_port_request = nullptr;

BindFunction LibraryBind() {
  static const BindFunction library_bind =
      reinterpret_cast<BindFunction>(dlsym(RTLD_NEXT, "bind"));
  YRD_ASSERT(library_bind != nullptr);
  return library_bind;
}

// Arms the fixed-port request for the current scope on this thread.
class ScopedFixedPortRequest {
 public:
  explicit ScopedFixedPortRequest(FixedPortRequest* request) { t_fixed_port_request = request; }
  ~ScopedFixedPortRequest() { t_fixed_port_request = nullptr; }
  ScopedFixedPortRequest(const ScopedFixedPortRequest&) = delete;
  ScopedFixedPortRequest& operator=(const ScopedFixedPortRequest&) = delete;
};

}  // namespace

extern "C" int bind(int socket_fd, const sockaddr* address, socklen_t address_bytes) noexcept {
  const BindFunction library_bind = LibraryBind();
  FixedPortRequest* request = t_fixed_port_request;
  if (request == nullptr || address == nullptr || address_bytes < sizeof(sockaddr_in) ||
      address->sa_family != AF_INET) {
    return library_bind(socket_fd, address, address_bytes);
  }
  // A mock broker's listener: the connections it accepts inherit TCP_NODELAY. The mock writes a
  // response in more than one segment, and with Nagle's algorithm the last one waited for the
  // client's delayed ACK: every acknowledged produce took about 44 ms here instead of 0.2.
  const int no_delay = 1;
  (void)::setsockopt(socket_fd, IPPROTO_TCP, TCP_NODELAY, &no_delay, sizeof(no_delay));
  if (request->remaining_count == 0) return library_bind(socket_fd, address, address_bytes);
  sockaddr_in wanted;
  std::memcpy(&wanted, address, sizeof(wanted));
  if (wanted.sin_port != 0 || wanted.sin_addr.s_addr != htonl(INADDR_LOOPBACK)) {
    return library_bind(socket_fd, address, address_bytes);
  }
  const uint16_t port = request->next_port;
  ++request->next_port;
  --request->remaining_count;
  wanted.sin_port = htons(port);
  if (library_bind(socket_fd, reinterpret_cast<const sockaddr*>(&wanted), sizeof(wanted)) == 0) {
    ++request->placed_count;
    return 0;
  }
  // librdkafka 2.0.2 destroys a half-built mock cluster unsafely when a listener fails to bind,
  // so the failure is recorded and the listener takes a kernel-chosen port; Start() then tears
  // the complete cluster down and reports the port that was in use.
  if (request->failed_port == 0) {
    request->failed_port = port;
    request->failed_errno = errno;
  }
  return library_bind(socket_fd, address, address_bytes);
}

namespace yrd::kafka {
namespace {

bool IsValidTopicName(std::string_view name) {
  if (name.empty() || name.size() > static_cast<size_t>(EmbeddedBroker::kTopicNameBytesMax)) return false;
  if (name == "." || name == "..") return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
  });
}

absl::Status ValidateOptions(const EmbeddedBrokerOptions& options) {
  if (options.broker_count < 1 || options.broker_count > EmbeddedBroker::kBrokerCountMax) {
    return absl::InvalidArgumentError(fmt::format("broker_count {} is outside 1..{}",
                                                  options.broker_count, EmbeddedBroker::kBrokerCountMax));
  }
  if (options.partition_count < 1 || options.partition_count > EmbeddedBroker::kPartitionCountMax) {
    return absl::InvalidArgumentError(fmt::format("partition_count {} is outside 1..{}",
                                                  options.partition_count,
                                                  EmbeddedBroker::kPartitionCountMax));
  }
  if (options.port != 0 && int{options.port} + options.broker_count - 1 > 65535) {
    return absl::InvalidArgumentError(fmt::format(
        "port {} with {} brokers runs past port 65535", options.port, options.broker_count));
  }
  for (size_t index = 0; index < options.topics.size(); ++index) {
    const std::string& topic = options.topics[index];
    if (std::find(options.topics.begin(), options.topics.begin() + index, topic) !=
        options.topics.begin() + index) {
      return absl::InvalidArgumentError(fmt::format("topic \"{}\" is listed twice", topic));
    }
    if (!IsValidTopicName(topic)) {
      return absl::InvalidArgumentError(fmt::format(
          "topic name \"{}\" is not 1..{} characters of [a-zA-Z0-9._-]", topic,
          EmbeddedBroker::kTopicNameBytesMax));
    }
  }
  return absl::OkStatus();
}

// Parses "127.0.0.1:PORT,127.0.0.1:PORT" into ports, insisting on the loopback address.
absl::StatusOr<std::vector<uint16_t>> ParseLoopbackPorts(std::string_view bootstrap_servers) {
  constexpr std::string_view kLoopbackPrefix = "127.0.0.1:";
  std::vector<uint16_t> ports;
  while (!bootstrap_servers.empty()) {
    const size_t comma = bootstrap_servers.find(',');
    const std::string_view entry = bootstrap_servers.substr(0, comma);
    bootstrap_servers = comma == std::string_view::npos ? std::string_view() : bootstrap_servers.substr(comma + 1);
    uint16_t port = 0;
    if (!entry.starts_with(kLoopbackPrefix)) {
      return absl::InternalError(
          fmt::format("mock broker address \"{}\" is not on 127.0.0.1", entry));
    }
    const std::string_view port_text = entry.substr(kLoopbackPrefix.size());
    const auto [end, error] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (error != std::errc() || end != port_text.data() + port_text.size() || port == 0) {
      return absl::InternalError(fmt::format("mock broker address \"{}\" has no valid port", entry));
    }
    ports.push_back(port);
  }
  return ports;
}

}  // namespace

struct EmbeddedBroker::Impl {
  rd_kafka_t* handle = nullptr;
  rd_kafka_mock_cluster_t* cluster = nullptr;
  std::string bootstrap_servers;
  std::vector<uint16_t> ports;

  ~Impl() {
    // The cluster must go before the handle it was created on.
    if (cluster != nullptr) rd_kafka_mock_cluster_destroy(cluster);
    if (handle != nullptr) rd_kafka_destroy(handle);
  }
};

EmbeddedBroker::EmbeddedBroker(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

EmbeddedBroker::~EmbeddedBroker() = default;

const std::string& EmbeddedBroker::bootstrap_servers() const { return impl_->bootstrap_servers; }

const std::vector<uint16_t>& EmbeddedBroker::ports() const { return impl_->ports; }

absl::StatusOr<std::unique_ptr<EmbeddedBroker>> EmbeddedBroker::Start(const EmbeddedBrokerOptions& options) {
  if (absl::Status status = ValidateOptions(options); !status.ok()) return status;

  auto impl = std::make_unique<Impl>();
  char error_text[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  RouteKafkaLogs(conf);
  // The hosting handle never connects anywhere; it only carries the mock's threads and logs.
  // Warnings and worse are logged; its notice that it has no bootstrap.servers is not.
  const std::pair<const char*, const char*> hosting_settings[] = {
      {"client.id", "yrd-embedded-broker"},
      {"log_level", "4"},
  };
  for (const auto& [name, value] : hosting_settings) {
    if (rd_kafka_conf_set(conf, name, value, error_text, sizeof(error_text)) != RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(conf);
      return absl::InternalError(fmt::format("mock broker property \"{}\" refused: {}", name, error_text));
    }
  }
  impl->handle = rd_kafka_new(RD_KAFKA_PRODUCER, conf, error_text, sizeof(error_text));
  if (impl->handle == nullptr) {
    rd_kafka_conf_destroy(conf);
    return absl::InternalError(fmt::format("librdkafka handle for the mock broker: {}", error_text));
  }

  FixedPortRequest request;
  if (options.port != 0) {
    request.next_port = options.port;
    request.remaining_count = options.broker_count;
  }
  {
    ScopedFixedPortRequest armed(&request);  // with no port asked for, it only sets TCP_NODELAY
    impl->cluster = rd_kafka_mock_cluster_new(impl->handle, options.broker_count);
  }
  if (impl->cluster == nullptr) {
    return absl::InternalError("librdkafka could not create the mock cluster (see its log above)");
  }
  impl->bootstrap_servers = rd_kafka_mock_cluster_bootstraps(impl->cluster);
  absl::StatusOr<std::vector<uint16_t>> ports = ParseLoopbackPorts(impl->bootstrap_servers);
  if (!ports.ok()) return ports.status();
  impl->ports = *std::move(ports);
  if (impl->ports.size() != static_cast<size_t>(options.broker_count)) {
    return absl::InternalError(fmt::format("mock cluster reports {} brokers, {} were asked for",
                                           impl->ports.size(), options.broker_count));
  }

  if (options.port != 0) {
    if (request.failed_port != 0) {
      return absl::UnavailableError(fmt::format("cannot listen on 127.0.0.1:{}: {}; choose another "
                                                "port, or 0 for any free port",
                                                request.failed_port, std::strerror(request.failed_errno)));
    }
    for (int index = 0; index < options.broker_count; ++index) {
      if (impl->ports[index] != options.port + index) {
        return absl::FailedPreconditionError(fmt::format(
            "this librdkafka's mock cluster did not take the fixed port (it listens on {}); only "
            "port 0 works with it",
            impl->bootstrap_servers));
      }
    }
    YRD_ASSERT(request.placed_count == options.broker_count);
  }

  const int replication_factor = std::min(options.broker_count, 3);
  for (const std::string& topic : options.topics) {
    const rd_kafka_resp_err_t error =
        rd_kafka_mock_topic_create(impl->cluster, topic.c_str(), options.partition_count, replication_factor);
    if (error != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return absl::InternalError(fmt::format("mock cluster could not create topic \"{}\": {}", topic,
                                             rd_kafka_err2str(error)));
    }
  }
  return std::unique_ptr<EmbeddedBroker>(new EmbeddedBroker(std::move(impl)));
}

}  // namespace yrd::kafka
