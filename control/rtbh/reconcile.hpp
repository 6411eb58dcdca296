#pragma once
// The pure core of sluice-rtbh: which prefixes a policy wants blackholed at a given time, and
// what to add and remove so that the routes found in the kernel match.
//
// A rule's prefixes are wanted while the rule enforces (drop, reset, notice or throttle; never
// monitor) and `now` is inside its window (not_before <= now < not_after, the fast path's rule).
// Windows are honoured here, not by the controller: a node that lost its controller still starts
// and stops on time.
//
// Nothing here does I/O, and nothing throws except std::bad_alloc.

#include <array>
#include <compare>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dataplane/match/action.hpp"

namespace sluice::control::rtbh {

// An IPv4 or IPv6 prefix in binary form, host bits clear. Ordered (family, bytes, length) so
// that sorted vectors can be merged.
struct prefix {
  std::uint8_t family = 4;               // 4 or 6
  std::array<std::uint8_t, 16> bytes{};  // IPv4 in bytes[0..3], the rest zero
  std::uint8_t length = 0;

  auto operator<=>(const prefix&) const = default;
  bool operator==(const prefix&) const = default;
};

// "91.108.4.0/22", "2001:67c:4e8::/48" (a bare address is a host route). nullopt and `error` on
// bad syntax, a length out of range or host bits set.
[[nodiscard]] std::optional<prefix> parse_prefix(std::string_view text, std::string& error);
// The canonical text ("91.108.4.0/22", "2001:67c:4e8::/48").
[[nodiscard]] std::string to_string(const prefix& p);

struct rule_targets {
  std::string id;
  match::action act = match::action::drop;
  std::int64_t not_before = std::numeric_limits<std::int64_t>::min();  // inclusive
  std::int64_t not_after = std::numeric_limits<std::int64_t>::max();   // exclusive
  std::vector<prefix> prefixes;
};

// A policy reduced to what sluice-rtbh enforces.
struct rtbh_policy {
  std::uint64_t revision = 0;
  std::string ruleset_sha256;  // match::ruleset_sha256 of the whole policy (what nodes report)
  std::vector<rule_targets> rules;
};

// Parses a self-contained policy document (the --policy schema, no apps:) and every prefix in it.
// nullopt and `error` ("line:column: message", or "bad_prefix: rule R: 'P': why") when anything
// is wrong; nothing is half-parsed.
[[nodiscard]] std::optional<rtbh_policy> parse_policy(std::string_view text, std::string& error);

// The policy in force before any was given: no rules, revision 0, the empty ruleset's digest.
[[nodiscard]] rtbh_policy empty_policy();

// The prefixes wanted at `now`: sorted, without duplicates.
[[nodiscard]] std::vector<prefix> wanted_at(const rtbh_policy& p, std::int64_t now);

// The first time after `now` at which wanted_at() may change (a window opening or closing of an
// enforcing rule), nullopt when it never will.
[[nodiscard]] std::optional<std::int64_t> next_change(const rtbh_policy& p, std::int64_t now);

// A route found in our table with our protocol.
struct found_route {
  prefix dst;
  bool right_type = true;  // false: ours, but of the other route type (configuration changed)

  bool operator==(const found_route&) const = default;
};

struct plan {
  std::vector<prefix> adds;     // sorted
  std::vector<prefix> removes;  // sorted; removed before `adds` re-adds a wrong-typed one
  std::size_t kept = 0;         // found, wanted and right: left alone

  bool operator==(const plan&) const = default;
};

// Adds: wanted and not found with the right type. Removes: found and not wanted, or found with
// the wrong type. `wanted` must be sorted and unique (wanted_at's output); `found` may be in any
// order and hold duplicates.
[[nodiscard]] plan make_plan(const std::vector<prefix>& wanted, std::vector<found_route> found);

}  // namespace sluice::control::rtbh
