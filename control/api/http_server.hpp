#pragma once
// sluice-controld's HTTP/1.1 server: event-driven (Boost.Beast over Boost.Asio), so a waiting
// long poll costs a socket and a few kilobytes, not a thread (issue 13; control/README.md says
// why Beast). Plain TCP or TLS (OpenSSL through asio::ssl), keep-alive, bounded input.
//
// Threads: `io_threads` run the event loop (accepting, TLS, parsing, writing, and the handlers
// routed `run_on::io`: cheap, never waiting on the store); `blocking_threads` run the handlers
// routed `run_on::blocking` (anything that may wait on the store or the controller's lock for
// long: the operators' API). Nothing else: the thread count does not grow with connections.
//
// Bounds: at most `max_connections` open connections (more are accepted and closed at once, and
// counted); request headers at most `max_header_bytes` (431), bodies at most `max_body_bytes`
// (413); a connection must deliver each request within `read_timeout` of its first byte
// (TLS handshake: `handshake_timeout`), may sit idle between requests for `idle_timeout`, and
// must take its answer within `write_timeout`; then it is closed.
//
// Routes are "METHOD" + a path pattern whose "{name}" segments match any one non-empty segment
// (no regex: matching is a few string compares on the hot node routes). A handler answers
// through its `responder`, once, from any thread, now or later (a long poll answers when its
// revision moves or its wait ends).

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace boost::asio {
class io_context;
}

namespace sluice::control::api {

struct server_options {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;  // 0: any free port (port() tells which)
  unsigned io_threads = 1;
  unsigned blocking_threads = 2;
  std::size_t max_connections = 20000;
  std::size_t max_header_bytes = 16 * 1024;
  std::size_t max_body_bytes = 8 * 1024 * 1024;
  std::chrono::seconds handshake_timeout{10};
  std::chrono::seconds read_timeout{30};
  std::chrono::seconds idle_timeout{120};
  std::chrono::seconds write_timeout{30};
  std::filesystem::path tls_cert;  // both set: TLS only (PEM chain and key)
  std::filesystem::path tls_key;
};

struct request {
  std::string method;
  std::string path;  // percent-decoded, without the query
  std::map<std::string, std::string> params;  // the query, percent-decoded
  std::vector<std::string> matches;           // the route's {name} segments, in order
  std::vector<std::pair<std::string, std::string>> headers;  // as sent
  std::string body;

  // The first header of that name (any case), "" when absent.
  [[nodiscard]] std::string header(std::string_view name) const;
  [[nodiscard]] bool has_param(const std::string& name) const { return params.contains(name); }
  [[nodiscard]] std::string param(const std::string& name) const;
};

struct response {
  int status = 200;
  std::string content_type;
  // Shared: one signed snapshot's bytes go to every node of its scope without a copy.
  std::shared_ptr<const std::string> body;
  std::vector<std::pair<std::string, std::string>> headers;

  void set_body(std::string text, std::string type);
};

// Answers one request, once, from any thread; later calls do nothing. The last copy dropped
// without an answer answers 500, so a lost request never hangs its connection.
class responder {
 public:
  struct state;
  explicit responder(std::shared_ptr<state> s) : state_(std::move(s)) {}
  void send(response r) const;

 private:
  std::shared_ptr<state> state_;
};

using handler = std::function<void(const request&, const responder&)>;
enum class run_on : std::uint8_t { io, blocking };

// What the server has seen, for metrics (read from any thread).
struct server_counters {
  std::atomic<std::uint64_t> connections_open{0};
  std::atomic<std::uint64_t> connections_accepted{0};
  std::atomic<std::uint64_t> connections_refused{0};  // over max_connections
  std::atomic<std::uint64_t> requests_refused{0};     // too large, malformed, timed out
};

class http_server {
 public:
  // Binds and listens (backlog SOMAXCONN); loads the TLS files. Throws std::runtime_error with
  // the reason.
  explicit http_server(server_options options);
  ~http_server();
  http_server(const http_server&) = delete;
  http_server& operator=(const http_server&) = delete;

  // Before run(). `route` is the metrics label, e.g. "GET /v1/nodes/{node}/snapshot".
  void route(std::string method, std::string pattern, run_on where, handler h);
  // Called once per answered request with its route ("" when none matched) and status.
  void on_answer(std::function<void(const std::string& route, int status)> observer);

  // Serves until stop(): the calling thread is one of the io threads. Returns when every
  // thread has stopped.
  void run();
  // From any thread (or a signal handler through asio::signal_set): stops accepting and
  // ends run() soon.
  void stop();

  [[nodiscard]] std::uint16_t port() const;
  [[nodiscard]] const server_counters& counters() const;
  // Timers of handlers that answer later (long polls) run on this context.
  [[nodiscard]] boost::asio::io_context& context();

  struct impl;

 private:
  std::unique_ptr<impl> impl_;
};

}  // namespace sluice::control::api
