#pragma once
// The controller's HTTP API (control/README.md): thin edges. Each route authenticates the
// bearer token, checks its role, parses the body, calls the controller and maps the result to a
// status code and JSON. No logic of its own, but for the long poll's wait (http_api.cpp).

#include <map>
#include <string>
#include <vector>

#include "control/api/http_server.hpp"
#include "control/controller/controller.hpp"

namespace sluice::control::api {

struct token_entry {
  std::string name;       // the audit's actor
  controller::role r = controller::role::viewer;
  std::string sha256;     // lowercase hex SHA-256 of the token; the token itself is never stored
};

// Lowercase hex SHA-256 (what the config holds for a token).
[[nodiscard]] std::string token_hash(const std::string& token);

class http_api {
 public:
  http_api(controller::controller& core, const std::vector<token_entry>& tokens);
  // Registers every route on `server`, and its metrics in the controller's registry. Routes
  // capture `this` and `server`: both must outlive the server's run(). Operators' routes run on
  // the server's blocking threads, the node feed on its io threads (a long poll waits on a
  // timer and the controller's wake, not on a thread).
  void attach(http_server& server);

 private:
  controller::controller& core_;
  std::map<std::string, token_entry> by_hash_;
};

}  // namespace sluice::control::api
