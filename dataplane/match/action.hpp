#pragma once
// Enforcement actions, defined once. The name strings are used in policy files, metrics labels
// and logs. Order is significant: `stronger()` in policy.hpp ranks by it (see README.md).

#include <cstdint>
#include <optional>
#include <string_view>

namespace sluice::match {

#define SLUICE_ACTIONS(X)                                                            \
  X(drop, "drop")         /* silently discard the flow's packets */                 \
  X(reset, "reset")       /* TCP RST both ways (UDP: drop) */                        \
  X(notice, "notice")     /* HTTP 451 naming the legal basis; RST for TLS */         \
  X(throttle, "throttle") /* rate-limit the flow */                                  \
  X(monitor, "monitor")   /* count only (shadow mode) */

// The largest token-bucket depth the fast path holds (engine/token_bucket.hpp): policies and
// directives asking for more are refused rather than silently clamped.
inline constexpr std::uint64_t max_throttle_burst_bytes = (std::uint64_t{1} << 24) - 1;

enum class action : std::uint8_t {
#define SLUICE_X(name, str) name,
  SLUICE_ACTIONS(SLUICE_X)
#undef SLUICE_X
      count
};

inline constexpr std::string_view action_names[] = {
#define SLUICE_X(name, str) str,
    SLUICE_ACTIONS(SLUICE_X)
#undef SLUICE_X
};
static_assert(std::size(action_names) == static_cast<std::size_t>(action::count));

[[nodiscard]] constexpr const char* to_string(action a) noexcept {
  switch (a) {
#define SLUICE_X(name, str) \
  case action::name:        \
    return str;
    SLUICE_ACTIONS(SLUICE_X)
#undef SLUICE_X
    case action::count:
      break;
  }
  return "?";
}

// Exact, case-sensitive match on the names above; nullopt otherwise.
[[nodiscard]] constexpr std::optional<action> parse_action(std::string_view s) noexcept {
  for (std::size_t i = 0; i < std::size(action_names); ++i) {
    if (action_names[i] == s) return static_cast<action>(i);
  }
  return std::nullopt;
}

// True for actions that change what happens to traffic (everything but monitor).
[[nodiscard]] constexpr bool is_enforcing(action a) noexcept {
  return a != action::monitor && a != action::count;
}

}  // namespace sluice::match
