#pragma once
// Policy files and app profiles (YAML) -> plain structs. Off the hot path (start-up, reloads,
// snapshot intake). The schema is DESIGN.md's snapshot schema, unsigned:
//
//   revision: 7
//   generated_at: 2026-11-28T12:00:00Z
//   rules:
//     - id: r1
//       directive: MINCOM-2026-001
//       action: reset                  # drop | reset | notice | throttle | monitor
//       legal_basis: "Order 123 of 2026-11-20"
//       throttle: { rate_bps: 64000, burst_bytes: 16384 }   # throttle only (and required there)
//       not_before: 2026-11-28T00:00:00Z                     # optional, inclusive
//       not_after: 2026-12-05T00:00:00Z                      # optional, exclusive
//       prefixes: [91.108.4.0/22, 2001:67c:4e8::/48]
//       domains: [telegram.org, "*.telegram.org", t.me]
//       apps: [telegram]                # optional: adds config/apps/telegram.yaml's targets
//
// Unknown or repeated keys are errors (typo protection); so are bad prefixes (including host
// bits set), bad domain names, bad times and wrong types. Every error carries the 1-based line
// and column of the offending node and, for errors inside an app profile, that file's name.
// The API does not throw (except std::bad_alloc).

#include <cstdint>
#include <filesystem>
#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dataplane/match/policy.hpp"

namespace sluice::match {

struct config_error {
  std::string file;  // empty for the stream given to the loader
  int line = 0;      // 1-based; 0 when unknown
  int column = 0;    // 1-based; 0 when unknown
  std::string message;

  // "file:line:column: message"
  [[nodiscard]] std::string text() const;
};

struct app_profile {
  std::string name;
  std::string description;
  std::vector<std::string> prefixes;
  std::vector<std::string> domains;
};

struct app_load_result {
  std::optional<app_profile> profile;
  config_error error;
  [[nodiscard]] explicit operator bool() const noexcept { return profile.has_value(); }
};

struct policy_load_result {
  std::optional<policy_spec> spec;
  config_error error;
  [[nodiscard]] explicit operator bool() const noexcept { return spec.has_value(); }
};

// App profile: keys name (required), description, prefixes, domains.
[[nodiscard]] app_load_result load_app_profile(std::istream& in);
[[nodiscard]] app_load_result load_app_profile_file(const std::filesystem::path& path);

// `apps_dir` resolves `apps: [name]` to apps_dir/name.yaml (names are [a-z0-9_-]+). An empty
// apps_dir makes any `apps:` an error.
[[nodiscard]] policy_load_result load_policy(std::istream& in,
                                             const std::filesystem::path& apps_dir = {});
// As above; an empty apps_dir defaults to "apps" beside the policy file.
[[nodiscard]] policy_load_result load_policy_file(const std::filesystem::path& path,
                                                  const std::filesystem::path& apps_dir = {});

// RFC 3339 date-time ("2026-11-28T12:00:00Z", "...+03:00", fractional seconds ignored) to unix
// seconds; nullopt when malformed or out of range.
[[nodiscard]] std::optional<std::int64_t> parse_rfc3339(std::string_view text);

}  // namespace sluice::match
