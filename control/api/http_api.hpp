#pragma once
// The controller's HTTP API (control/README.md): thin edges. Each route's admission (run by
// the server on the request head, before any body is read) authenticates the caller, applies
// the rate limits, checks the role and states the route's body limit; the handler parses the
// body, calls the controller and maps the result to a status code and JSON. No logic of its
// own, but for the long poll's wait (http_api.cpp).

#include <cstddef>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "control/api/console.hpp"
#include "control/api/http_server.hpp"
#include "control/api/rate_limit.hpp"
#include "control/controller/controller.hpp"
#include "control/impact/report.hpp"

namespace sluice::control::api {

struct token_entry {
  std::string name;       // the audit's actor
  controller::role r = controller::role::viewer;
  std::string sha256;     // lowercase hex SHA-256 of the token; the token itself is never stored
};

// Lowercase hex SHA-256 (what the config holds for a token).
[[nodiscard]] std::string token_hash(const std::string& token);

// Per-route body limits and rate limits (config `server:`, control/README.md "The server").
struct api_limits {
  std::size_t max_document_bytes = std::size_t{4} << 20;  // POST /v1/directives
  std::size_t max_impact_bytes = impact::max_body_bytes;  // node impact reports
  std::size_t max_small_body_bytes = 16 * 1024;           // node status, {"reason"} calls, approve
  // Per credential: an operator's token (by name) or a node (by node id, whatever credential it
  // used). Per remote address: requests that carry no valid credential (and /metrics).
  bucket_config per_token{100, 200};
  bucket_config per_address{20, 100};
  std::size_t max_rate_keys = 65536;  // buckets per limiter (least recently used evicted)
  // A node CA is configured (issue 14): node routes admit only a node's own client certificate;
  // the fleet-wide node token is refused (401 no_client_certificate). Without one, node tokens
  // still work, for enrolled nodes only.
  bool node_certificates_required = false;
};

// The body of POST /v1/nodes/{node}/status: {"revision": n, "result": "ack"|"nack", "offered",
// "ruleset_sha256", "error", "health", "labels"}; nullopt when it is not that. Pure (fuzzed:
// tests/fuzz/fuzz_node_status.cpp).
struct status_body {
  controller::status_report report;
  std::map<std::string, std::string> labels;
};
[[nodiscard]] std::optional<status_body> parse_status_body(std::string_view body);
// A report carried on a long poll, the X-Sluice-Status value (agent::status_header): "ack
// revision=N offered=N ruleset=HEX [checkpoint=BASE64]", each part once, in that order,
// separated by one space; N decimal without leading zeros, HEX 64 lowercase hex digits (or empty), BASE64 at most
// audit::max_checkpoint_bytes decoded. nullopt for anything else. Pure (fuzzed with the body).
[[nodiscard]] std::optional<controller::status_report> parse_status_header(std::string_view value);

class http_api {
 public:
  // With console.assets set, the console's files are read now (throws std::runtime_error when
  // they cannot be) and served under /ui/. Browser sessions (POST /v1/session) work either way.
  http_api(controller::controller& core, const std::vector<token_entry>& tokens, api_limits limits = {},
           console_config console = {});
  // Registers every route on `server`, and its metrics in the controller's registry. Routes
  // capture `this` and `server`: both must outlive the server's run(). Operators' routes run on
  // the server's blocking threads, the node feed on its io threads (a long poll waits on a
  // timer and the controller's wake, not on a thread).
  void attach(http_server& server);

 private:
  // What a route admits: the roles, the body limit, and whether {node} is the caller's node id.
  struct route_rule {
    std::string method;
    std::string route;
    std::vector<controller::role> roles;
    std::size_t body_limit = 0;
    bool node = false;
  };
  [[nodiscard]] admission admit(http_server& server, const route_rule& rule, const request& req);
  [[nodiscard]] admission admit_public(const request& req);
  // The operator a request's credential names: its bearer token, else its session cookie (a
  // state-changing request with a cookie must carry the session's CSRF token). Refusals as
  // admission's.
  [[nodiscard]] std::variant<controller::principal, admission> operator_of(const request& req);
  void attach_console(http_server& server);

  controller::controller& core_;
  std::map<std::string, token_entry> by_hash_;
  api_limits limits_;
  rate_limiter per_token_;
  rate_limiter per_address_;
  session_store sessions_;
  std::map<std::string, console_asset> assets_;  // by URL path; empty: no console
};

}  // namespace sluice::control::api
