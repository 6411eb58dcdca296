#pragma once
// sluice-controld's HTTP/1.1 server: event-driven (Boost.Beast over Boost.Asio), so a waiting
// long poll costs a socket and a few kilobytes, not a thread (issue 13; control/README.md says
// why Beast). Plain TCP or TLS (OpenSSL through asio::ssl), keep-alive, bounded input.
//
// Threads: `io_threads` run the event loop (accepting, TLS, parsing, admission, writing, and
// the handlers routed `run_on::io`: cheap, never waiting on the store); `blocking_threads` run
// the handlers routed `run_on::blocking` (anything that may wait on the store or the
// controller's lock for long: the operators' API). Nothing else: the thread count does not grow
// with connections.
//
// A request, in order (issue 14: nothing is read that its sender may not send):
//   1. its head, within `header_timeout` of its first byte (of the connection's start for the
//      first request; between requests a connection may sit idle `idle_timeout`), at most
//      `max_header_bytes` (431);
//   2. the route: none -> 404/405, the body not read;
//   3. the route's admission, with the head only (on an io thread): it authenticates, checks
//      the role, applies rate limits and either refuses (its answer is sent at once, the body
//      is never read, the connection is closed after it) or admits with a body limit;
//   4. a Content-Length over that limit (or over `max_body_bytes`) -> 413 without reading; a
//      chunked body is cut at the limit (413); the body must arrive within `body_timeout` of
//      the head ("Expect: 100-continue" is answered once admitted);
//   5. the handler, with the admitted principal in request::admitted.
// Every refusal is counted by reason (server_counters::refused). A connection must take its
// answer within `write_timeout`. At most `max_connections` are open (more are accepted and
// closed at once). Timeouts close the connection without an answer.
//
// Routes are "METHOD" + a path pattern whose "{name}" segments match any one non-empty segment
// (no regex: matching is a few string compares on the hot node routes). A handler answers
// through its `responder`, once, from any thread, now or later (a long poll answers when its
// revision moves or its wait ends).
//
// TLS: 1.2 minimum; TLS 1.2 suites ECDHE with AES-GCM or ChaCha20-Poly1305 only, TLS 1.3's
// defaults; no renegotiation. With `tls_client_ca` the server asks for a client certificate and
// verifies it against that CA but does not require one (operators use bearer tokens); a
// presented certificate that does not verify fails the handshake. reload_tls() re-reads the
// files for new handshakes.
//
// Stop: stop() stops accepting, closes idle connections, answers requests still waiting for an
// io-side handler (long polls) 503 shutting_down, lets answers in progress (blocking handlers
// included) finish for up to `stop_grace`, then ends run().

#include <any>
#include <array>
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
  // A ceiling over every route's own limit (admission's body_limit).
  std::size_t max_body_bytes = 8 * 1024 * 1024;
  std::chrono::milliseconds handshake_timeout{10000};
  std::chrono::milliseconds header_timeout{10000};
  std::chrono::milliseconds body_timeout{30000};
  std::chrono::milliseconds idle_timeout{120000};
  std::chrono::milliseconds write_timeout{30000};
  std::chrono::milliseconds stop_grace{500};
  std::filesystem::path tls_cert;  // both set: TLS only (PEM chain and key)
  std::filesystem::path tls_key;
  std::filesystem::path tls_client_ca;  // optional (TLS only): verify client certificates
};

// The TLS client certificate, when one was presented and verified against tls_client_ca.
struct peer_identity {
  bool verified = false;
  std::string common_name;  // the subject's one CN when it is 1-64 of [A-Za-z0-9_.-], else ""
  std::string fingerprint;  // lowercase hex SHA-256 of the certificate (DER)
};

struct request {
  std::string method;
  std::string path;  // percent-decoded, without the query
  std::map<std::string, std::string> params;  // the query, percent-decoded
  std::vector<std::string> matches;           // the route's {name} segments, in order
  std::vector<std::pair<std::string, std::string>> headers;  // as sent
  std::string remote_address;  // the peer's IP address, as text
  peer_identity peer;
  std::any admitted;  // what the route's admission returned (the principal), for the handler
  std::string body;   // empty during admission

  // The first header of that name (any case), "" when absent.
  [[nodiscard]] std::string header(std::string_view name) const;
  [[nodiscard]] bool has_param(const std::string& name) const { return params.contains(name); }
  [[nodiscard]] std::string param(const std::string& name) const;
};

// The request target (origin form) -> percent-decoded path and query parameters ('+' is a space
// in the query; a malformed escape stays as written; a repeated name keeps its first value).
// Pure (tests/fuzz/fuzz_http_request.cpp).
void parse_target(std::string_view target, std::string& path,
                  std::map<std::string, std::string>& params);

struct response {
  int status = 200;
  std::string content_type;
  // Shared: one signed snapshot's bytes go to every node of its scope without a copy.
  std::shared_ptr<const std::string> body;
  std::vector<std::pair<std::string, std::string>> headers;

  void set_body(std::string text, std::string type);
};

// {"error": code, "message": message} with that status.
[[nodiscard]] response error_response(int status, std::string_view code, std::string_view message);

// Why a request or connection was refused before a handler saw it: the label of
// sluice_control_http_refused_total{reason}.
#define SLUICE_HTTP_REFUSALS(X)                                                 \
  X(unauthenticated) /* no or unknown credential (401) */                      \
  X(forbidden)       /* the credential may not (403) */                        \
  X(rate_limited)    /* 429 */                                                 \
  X(too_large)       /* body over the route's limit (413) */                   \
  X(header_too_large) /* head over max_header_bytes (431) */                   \
  X(malformed)       /* not HTTP/1.x (400) */                                  \
  X(not_found)       /* no route for the path (404) or method (405) */         \
  X(header_timeout)  /* head not complete in time (closed) */                  \
  X(body_timeout)    /* body not complete in time (closed) */                  \
  X(tls_handshake)   /* failed or timed-out TLS handshake */                   \
  X(connection_limit) /* over max_connections (closed at once) */              \
  X(shutting_down)   /* answered 503 by stop() */

enum class refusal : std::uint8_t {
#define X(name) name,
  SLUICE_HTTP_REFUSALS(X)
#undef X
      count
};
[[nodiscard]] std::string_view to_string(refusal r) noexcept;

// A route's admission verdict on a request head.
struct admission {
  std::optional<response> refused;  // set: sent at once, body unread, connection closed after
  refusal reason = refusal::forbidden;
  std::size_t body_limit = 0;  // admitted: the most body bytes this route reads
  std::any principal;          // admitted: handed to the handler as request::admitted

  [[nodiscard]] static admission admit(std::size_t body_limit, std::any principal = {}) {
    admission a;
    a.body_limit = body_limit;
    a.principal = std::move(principal);
    return a;
  }
  [[nodiscard]] static admission refuse(refusal why, response answer) {
    admission a;
    a.refused = std::move(answer);
    a.reason = why;
    return a;
  }
};

// Runs on an io thread with the head only (request::body empty): must be cheap and must not
// block (no store I/O). May be called concurrently with itself.
using admission_fn = std::function<admission(const request&)>;

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
  std::atomic<std::uint64_t> requests_refused{0};     // every refusal below but connection_limit
  std::array<std::atomic<std::uint64_t>, static_cast<std::size_t>(refusal::count)> refused{};
  std::atomic<std::uint64_t> tls_reloads{0};
  std::atomic<std::uint64_t> tls_reload_failures{0};

  [[nodiscard]] std::uint64_t refused_by(refusal r) const {
    return refused[static_cast<std::size_t>(r)].load();
  }
};

// What the server would do with a request head, without a socket (inspect_head()).
struct head_verdict {
  int status = 0;             // the refusal's status; 0 when admitted
  std::size_t body_limit = 0;  // admitted: the route's body limit (under max_body_bytes)
  std::string route;          // the route's label, "" when none matched
};

class http_server {
 public:
  // Binds and listens (backlog SOMAXCONN); loads the TLS files. Throws std::runtime_error with
  // the reason.
  explicit http_server(server_options options);
  ~http_server();
  http_server(const http_server&) = delete;
  http_server& operator=(const http_server&) = delete;

  // Before run(). `route` is the metrics label, e.g. "GET /v1/nodes/{node}/snapshot". Without
  // `admit` every request is admitted with max_body_bytes.
  void route(std::string method, std::string pattern, run_on where, admission_fn admit, handler h);
  void route(std::string method, std::string pattern, run_on where, handler h);
  // Called once per answered request with its route ("" when none matched) and status.
  void on_answer(std::function<void(const std::string& route, int status)> observer);

  // Serves until stop(): the calling thread is one of the io threads. Returns when every
  // thread has stopped and the blocking handlers in progress have returned.
  void run();
  // From any thread (or a signal handler through asio::signal_set): the clean stop above.
  void stop();

  // Re-reads tls_cert, tls_key and tls_client_ca into a new TLS context for new handshakes
  // (connections already open keep theirs). On failure the old context stays and the reason is
  // returned. Any thread. nullopt: reloaded (or the server is plain TCP: nothing to do).
  [[nodiscard]] std::optional<std::string> reload_tls();

  // Runs `work` on a blocking thread (admission's follow-ups that write the store).
  void post_blocking(std::function<void()> work);

  // Parses `raw` as a request head (bytes after the head are ignored), matches a route and runs
  // its admission, as a connection would, without a socket; admission's effects (rate limits,
  // counters) happen. For tests and fuzzing; any thread.
  [[nodiscard]] head_verdict inspect_head(std::string_view raw, const std::string& remote_address,
                                          const peer_identity& peer = {});

  [[nodiscard]] std::uint16_t port() const;
  [[nodiscard]] const server_counters& counters() const;
  // Timers of handlers that answer later (long polls) run on this context.
  [[nodiscard]] boost::asio::io_context& context();

  struct impl;

 private:
  std::unique_ptr<impl> impl_;
};

}  // namespace sluice::control::api
