#pragma once
// The operators' console's server side (issue 15; control/console/README.md): browser sessions
// and the console's static files. The API's routes stay the API's (http_api.cpp); a browser
// session is one more way to present the same role credential.
//
// Sessions: signing in with a role token opens a session; its id travels in an HttpOnly,
// Secure, SameSite=Strict cookie and is kept here only as a SHA-256, with its principal, its
// CSRF token, and its two deadlines (idle and absolute). In memory, per replica, bounded
// (the oldest is closed when full). Thread-safe.
//
// Assets: the files of the console directory (two levels deep at most, known extensions only,
// bounded in size), read once at start and served by their exact path: no request path is
// ever joined to a directory.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "control/controller/controller.hpp"

namespace sluice::control::api {

struct console_config {
  std::filesystem::path assets;  // the console directory; empty: the console is not served
  std::chrono::seconds session_idle{1800};
  std::chrono::seconds session_max{43200};
  std::size_t max_sessions = 10000;
};

inline constexpr std::string_view session_cookie_name = "sluice_session";
inline constexpr std::string_view csrf_header_name = "X-CSRF-Token";
// Sent by the page on the reads of its timed refreshes: they do not count as activity.
inline constexpr std::string_view poll_header_name = "X-Sluice-Poll";

struct console_session {
  controller::principal who;
  std::string csrf;              // sent back on every state-changing request
  std::int64_t created_ms = 0;   // unix ms
  std::int64_t last_used_ms = 0;
  [[nodiscard]] std::int64_t expires_ms(const console_config& cfg) const;
};

class session_store {
 public:
  explicit session_store(console_config cfg) : cfg_(std::move(cfg)) {}

  // A new session for `who`: {cookie value (43 characters of base64url, 256 random bits), the
  // session}. Throws std::runtime_error when the system's random source fails.
  [[nodiscard]] std::pair<std::string, console_session> open(const controller::principal& who,
                                                             std::int64_t now_ms);
  // The live session of a cookie value; expired ones are removed. `touch`: a person's request,
  // which pushes the idle deadline on (a page's own timed refresh does not).
  [[nodiscard]] std::optional<console_session> find(std::string_view cookie, std::int64_t now_ms,
                                                    bool touch = true);
  void close(std::string_view cookie);
  [[nodiscard]] std::size_t size();
  [[nodiscard]] const console_config& config() const { return cfg_; }

 private:
  console_config cfg_;
  std::mutex mutex_;
  std::map<std::string, console_session> by_hash_;  // SHA-256 hex of the cookie value
};

// The value of cookie `name` in a Cookie header ("a=1; b=2"), "" when absent.
[[nodiscard]] std::string cookie_value(std::string_view header, std::string_view name);
// Equal strings, in time that depends only on their lengths.
[[nodiscard]] bool same_secret(std::string_view a, std::string_view b) noexcept;

struct console_asset {
  std::shared_ptr<const std::string> body;
  std::string content_type;
};

// The files under `dir` by URL path ("/ui/app.js", "/ui/views/fleet.js"; "/ui/" is index.html).
// Throws std::runtime_error when `dir` is not a readable directory with an index.html, or holds
// more than max_bytes of servable files.
[[nodiscard]] std::map<std::string, console_asset> load_console_assets(
    const std::filesystem::path& dir, std::size_t max_bytes = std::size_t{16} << 20);

// Headers every console answer carries (CSP without inline script or style, no sniffing, no
// framing, no referrer).
[[nodiscard]] const std::vector<std::pair<std::string, std::string>>& console_headers();

}  // namespace sluice::control::api
