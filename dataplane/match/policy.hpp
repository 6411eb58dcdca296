#pragma once
// The compiled policy: an immutable snapshot built from a plain `policy_spec` (what a policy file
// or a controller snapshot says) into lookup structures for the fast path.
//
// Threads: `compile_policy` runs off the hot path (control thread; needs an initialised EAL when
// the spec has prefixes). The resulting `compiled_policy` is never modified, so any number of
// workers may call its const members concurrently; those do not allocate, throw or log. It is
// published to workers by RCU (see dataplane/engine) and freed after a grace period.
//
// Matching: an address or a name maps to a *match group* id: the sorted list of every rule that
// matches it (a /24 inside a blocked /16 carries both rules; an exact name carries the rules of
// every "*." pattern above it). `decide` turns the groups a flow hit into a verdict at time
// `now`. Precedence is documented in dataplane/match/README.md.

#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dataplane/match/action.hpp"
#include "dataplane/match/domain_set.hpp"
#include "dataplane/match/prefix_set.hpp"
#include "dataplane/packet/frame.hpp"

namespace sluice::match {

// ---- input ------------------------------------------------------------------------------------

struct throttle_spec {
  std::uint64_t rate_bps = 0;     // bits per second, > 0 for throttle rules
  std::uint64_t burst_bytes = 0;  // token bucket depth, > 0 for throttle rules
};

struct rule_spec {
  std::string id;                     // unique within the policy
  std::string directive;              // the directive this rule implements (may be empty)
  action act = action::drop;
  std::string legal_basis;            // shown on notices; required for action::notice
  throttle_spec throttle;             // only for action::throttle
  std::vector<std::string> prefixes;  // "91.108.4.0/22", "2001:67c:4e8::/48"
  std::vector<std::string> domains;   // "t.me", "*.t.me", U-labels allowed
  std::optional<std::int64_t> not_before;  // unix seconds, inclusive
  std::optional<std::int64_t> not_after;   // unix seconds, exclusive
};

struct policy_spec {
  std::uint64_t revision = 0;
  std::int64_t generated_at = 0;  // unix seconds
  std::vector<rule_spec> rules;
};

// SHA-256 (lowercase hex) over a canonical, length-prefixed serialization of the rules (ids,
// directives, actions, responses, targets as written, windows), in order. Revision and generation
// time are not part of it: equal rulesets hash equally across revisions. Off the hot path.
[[nodiscard]] std::string ruleset_sha256(const policy_spec& spec);

// ---- compile errors ---------------------------------------------------------------------------

#define SLUICE_COMPILE_ERRORS(X)                                                          \
  X(ok, "ok")                                                                             \
  X(empty_rule_id, "empty_rule_id")                                                       \
  X(duplicate_rule_id, "duplicate_rule_id")                                               \
  X(bad_action, "bad_action")                                                             \
  X(no_targets, "no_targets")                   /* no prefixes and no domains */          \
  X(bad_prefix, "bad_prefix")                   /* syntax, length or host bits set */     \
  X(bad_domain, "bad_domain")                                                             \
  X(bad_window, "bad_window")                   /* not_after <= not_before */             \
  X(missing_legal_basis, "missing_legal_basis") /* notice without legal basis */          \
  X(bad_throttle, "bad_throttle")               /* throttle rate or burst of 0 */         \
  X(too_many_rules, "too_many_rules")                                                     \
  X(build_failed, "build_failed")               /* DPDK refused (EAL, memory) */

enum class compile_error_code : std::uint8_t {
#define SLUICE_X(name, str) name,
  SLUICE_COMPILE_ERRORS(SLUICE_X)
#undef SLUICE_X
      count
};
[[nodiscard]] const char* to_string(compile_error_code c) noexcept;

struct compile_error {
  compile_error_code code = compile_error_code::ok;
  std::size_t rule_index = 0;  // position in policy_spec::rules
  std::string rule_id;
  std::string item;     // the offending prefix / domain / field, as written
  std::string message;  // human-readable, names rule and item
};

// ---- compiled policy --------------------------------------------------------------------------

struct compiled_rule {
  std::string id;
  std::string directive;
  action act = action::drop;
  std::string legal_basis;
  std::uint64_t rate_bps = 0;
  std::uint64_t burst_bytes = 0;
  std::int64_t not_before = std::numeric_limits<std::int64_t>::min();
  std::int64_t not_after = std::numeric_limits<std::int64_t>::max();
};

struct verdict {
  static constexpr std::uint32_t no_rule = UINT32_MAX;
  std::uint32_t rule = no_rule;  // strongest active enforcing rule, or no_rule (forward)
  action act = action::monitor;  // that rule's action (monitor when rule == no_rule)
  std::uint32_t monitors = 0;    // active monitor rules that matched (counted, not enforced)

  [[nodiscard]] bool enforce() const noexcept { return rule != no_rule; }
};

class compiled_policy {
 public:
  struct match_group {
    std::span<const std::uint32_t> rules;  // rule indices, ascending, no duplicates
  };

  compiled_policy(const compiled_policy&) = delete;
  compiled_policy& operator=(const compiled_policy&) = delete;

  [[nodiscard]] std::uint64_t revision() const noexcept { return revision_; }
  [[nodiscard]] std::int64_t generated_at() const noexcept { return generated_at_; }
  [[nodiscard]] const std::string& ruleset_sha256() const noexcept { return sha256_; }

  [[nodiscard]] std::uint32_t rule_count() const noexcept {
    return static_cast<std::uint32_t>(rules_.size());
  }
  [[nodiscard]] const compiled_rule& rule(std::uint32_t index) const noexcept {
    return rules_[index];
  }
  // Window: not_before <= now < not_after.
  [[nodiscard]] bool rule_active(std::uint32_t index, std::int64_t now) const noexcept {
    const auto& r = rules_[index];
    return r.not_before <= now && now < r.not_after;
  }

  [[nodiscard]] std::uint32_t group_count() const noexcept {
    return static_cast<std::uint32_t>(groups_.size());
  }
  [[nodiscard]] const match_group& group(std::uint32_t id) const noexcept { return groups_[id]; }

  // Longest-prefix match of an address (version 4: bytes[0..3]); nullopt when none matches or
  // the version is neither 4 nor 6.
  [[nodiscard]] std::optional<std::uint32_t> match_ip(
      const packet::ip_address& addr) const noexcept;
  // Wire name (SNI, Host, DNS qname), any case, optional trailing dot.
  [[nodiscard]] std::optional<std::uint32_t> match_name(std::string_view name) const noexcept;

  // The verdict for one group, or for a flow that hit an address group and/or a name group.
  [[nodiscard]] verdict decide(const match_group& g, std::int64_t now) const noexcept;
  [[nodiscard]] verdict decide(std::optional<std::uint32_t> ip_group,
                               std::optional<std::uint32_t> name_group,
                               std::int64_t now) const noexcept;
  // True when rule a should win over rule b (both enforcing): see README.md.
  [[nodiscard]] bool stronger(std::uint32_t a, std::uint32_t b) const noexcept;

  // Calls f(rule_index) for each active monitor rule of the group (per-rule counters).
  template <typename F>
  void for_each_active_monitor(const match_group& g, std::int64_t now, F&& f) const {
    for (std::uint32_t r : g.rules) {
      if (rules_[r].act == action::monitor && rule_active(r, now)) f(r);
    }
  }

  // The lookup structures, for bulk lookups in the burst loop.
  [[nodiscard]] const prefix_set& prefixes() const noexcept { return prefixes_; }
  [[nodiscard]] const domain_set& domains() const noexcept { return domains_; }

 private:
  friend struct compile_access;
  compiled_policy() = default;

  std::uint64_t revision_ = 0;
  std::int64_t generated_at_ = 0;
  std::string sha256_;
  std::vector<compiled_rule> rules_;
  std::vector<std::uint32_t> group_rules_;  // all groups' rule lists, back to back
  std::vector<match_group> groups_;         // spans into group_rules_
  prefix_set prefixes_;
  domain_set domains_;
};

struct compile_result {
  std::unique_ptr<const compiled_policy> policy;  // null on error
  compile_error error;
  [[nodiscard]] explicit operator bool() const noexcept { return policy != nullptr; }
};

// Validates the whole spec first (first error wins, in rule order), then builds. Never throws
// except std::bad_alloc; DPDK failures come back as build_failed.
[[nodiscard]] compile_result compile_policy(const policy_spec& spec);

}  // namespace sluice::match
