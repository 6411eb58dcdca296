#pragma once
// Ministry directives: the YAML document (DESIGN.md "Directive") -> a checked plain struct.
// Pure: no I/O, no clock (the caller passes `now`), no globals. Signature, issuer trust and
// replay checks are the controller's (they need keys and the store); everything that can be
// judged from the document alone is here, and every refusal has a code and, where it applies,
// the 1-based line and column of the offending YAML node.
//
//   id: MINCOM-2026-001                  # [A-Za-z0-9._-]{1,64}, unique per issuer
//   issuer: ministry-of-communications   # [a-z0-9._-]{1,64}; must name a trusted key
//   issued_at: 2026-11-20T09:00:00Z
//   legal_basis: "Order 123 of 2026-11-20"      # 1..200 chars, shown on HTTP 451 notices
//   action: block                        # block | unblock | monitor | throttle
//   response: reset                      # block only: drop | reset | notice (default reset)
//   throttle: { rate_bps: 64000, burst_bytes: 16384 }   # throttle only, required there
//   targets:                             # block/monitor/throttle: at least one entry;
//     apps: [telegram]                   #   unblock: targets or lifts (not both)
//     prefixes: [91.108.4.0/22, 2001:67c:4e8::/48]
//     domains: [telegram.org, "*.telegram.org"]
//   lifts: [MINCOM-2026-001]             # unblock only: ids (same issuer) it lifts
//   scope: all                           # or { sites: [a, b] } or { labels: { region: north } }
//   not_before: 2026-11-21T00:00:00Z     # required
//   not_after: 2026-12-21T00:00:00Z      # optional, exclusive; must be after not_before
//
// Anchors, aliases, more than ctx.max_entries nodes, nesting deeper than ctx.max_depth and
// documents over ctx.max_document_bytes are refused before anything else is read.
// Unknown or repeated keys are errors. Domains are normalised (lower case, no trailing dot,
// IDN -> A-labels) and prefixes must have no host bits set, so the struct holds canonical text.

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::control::directive {

enum class directive_action : std::uint8_t { block, unblock, monitor, throttle };
enum class block_response : std::uint8_t { drop, reset, notice };
[[nodiscard]] std::string_view to_string(directive_action a) noexcept;
[[nodiscard]] std::string_view to_string(block_response r) noexcept;

struct throttle_spec {
  std::uint64_t rate_bps = 0;
  std::uint64_t burst_bytes = 0;
};

struct target_set {
  std::vector<std::string> apps;      // profile names, as written
  std::vector<std::string> prefixes;  // canonical ("91.108.4.0/22", "2001:67c:4e8::/48")
  std::vector<std::string> domains;   // canonical ("telegram.org", "*.telegram.org")
  [[nodiscard]] bool empty() const noexcept {
    return apps.empty() && prefixes.empty() && domains.empty();
  }
};

struct scope_spec {
  bool all = false;
  std::vector<std::string> sites;
  std::map<std::string, std::string> labels;  // a node matches when it has every one

  // Whether a node with these labels is in scope. A node's site is its label "site".
  [[nodiscard]] bool covers(const std::map<std::string, std::string>& node_labels) const;
};

struct directive {
  std::string id;
  std::string issuer;
  std::int64_t issued_at = 0;  // unix seconds
  std::string legal_basis;
  directive_action action = directive_action::block;
  block_response response = block_response::reset;  // block only
  std::optional<throttle_spec> throttle;            // throttle only
  target_set targets;
  std::vector<std::string> lifts;  // unblock only
  scope_spec scope;
  std::int64_t not_before = 0;
  std::optional<std::int64_t> not_after;
};

// What the document is judged against.
struct validation_context {
  std::int64_t now = 0;                                  // unix seconds
  std::set<std::string> known_apps;                      // profile names
  std::set<std::string> known_sites;                     // for scope.sites
  std::map<std::string, std::set<std::string>> known_labels;  // label -> allowed values
  std::int64_t max_clock_skew = 300;        // issued_at may be at most this far in the future
  std::int64_t max_lead = 366LL * 86400;    // not_before at most this far ahead of now
  std::int64_t max_duration = 3660LL * 86400;  // not_after - not_before at most this
  // Bounds checked before the document is built into a tree, so neither a huge nor a crafted
  // document (a YAML bomb) costs more than one linear pass over its bytes (issue 14).
  std::size_t max_document_bytes = 4 * 1024 * 1024;
  std::size_t max_entries = 200000;  // YAML nodes in the stream (each target is one)
  int max_depth = 8;                 // nested collections (a directive needs 3)
};

#define SLUICE_DIRECTIVE_ERRORS(X)                                                          \
  X(malformed_yaml, "document is not valid YAML")                                           \
  X(not_a_mapping, "document is not a YAML mapping")                                        \
  X(unknown_key, "unknown key")                                                             \
  X(duplicate_key, "key given twice")                                                       \
  X(missing_field, "required field missing")                                                \
  X(bad_type, "wrong type")                                                                 \
  X(bad_value, "invalid value")                                                             \
  X(bad_time, "invalid RFC 3339 time")                                                      \
  X(issued_in_future, "issued_at is in the future")                                         \
  X(bad_window, "validity window is not sane")                                              \
  X(expired, "validity window has already ended")                                           \
  X(unknown_app, "unknown app profile")                                                     \
  X(bad_prefix, "invalid prefix")                                                           \
  X(bad_domain, "invalid domain name")                                                      \
  X(unknown_site, "scope names an unknown site")                                            \
  X(unknown_label, "scope names an unknown label or value")                                 \
  X(no_targets, "directive has no targets")                                                 \
  X(field_not_allowed, "field not allowed for this action")                                \
  X(document_too_large, "document is over the size limit")                                  \
  X(too_many_entries, "document has more entries than allowed")                             \
  X(nesting_too_deep, "document nests deeper than allowed")                                 \
  X(anchor_not_allowed, "YAML anchors and aliases are not allowed")

enum class error_code : std::uint8_t {
#define X(name, text) name,
  SLUICE_DIRECTIVE_ERRORS(X)
#undef X
      count
};
[[nodiscard]] std::string_view to_string(error_code c) noexcept;
// The one-line description from the table above ("unknown app profile").
[[nodiscard]] std::string_view describe(error_code c) noexcept;

struct parse_error {
  error_code code = error_code::malformed_yaml;
  int line = 0;    // 1-based; 0 when not tied to a node
  int column = 0;  // 1-based
  std::string message;  // precise: names the key/value, e.g. "targets.prefixes[2]: '10.0.0.1/8'
                        // has host bits set"
  // "line:column: message" (or just the message when line == 0)
  [[nodiscard]] std::string text() const;
};

struct parse_result {
  std::optional<directive> value;
  parse_error error;
  [[nodiscard]] explicit operator bool() const noexcept { return value.has_value(); }
};

// Parses and checks the whole document. Never throws (except std::bad_alloc).
[[nodiscard]] parse_result parse_directive(std::string_view yaml, const validation_context& ctx);

}  // namespace sluice::control::directive
