// Fuzzes the directive parser: text from outside (the ministry's HTTP submissions) must never
// crash it, throw, or yield a struct that breaks the documented invariants.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "control/directive/directive.hpp"
#include "dataplane/match/domain_name.hpp"

namespace d = sluice::control::directive;

namespace {

const d::validation_context& context() {
  static const d::validation_context ctx = [] {
    d::validation_context c;
    c.now = 1795867200;  // 2026-11-28T12:00:00Z
    c.known_apps = {"telegram", "whatsapp"};
    c.known_sites = {"msk-1", "spb-1"};
    c.known_labels = {{"region", {"north", "south"}}, {"tier", {"edge"}}};
    return c;
  }();
  return ctx;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const d::parse_result res = d::parse_directive(text, context());
  if (!res) {
    if (res.error.code >= d::error_code::count || res.error.message.empty()) __builtin_trap();
    if ((res.error.line == 0) != (res.error.column == 0)) __builtin_trap();
    return 0;
  }
  const d::directive& v = *res.value;
  if (v.id.empty() || v.issuer.empty() || v.legal_basis.empty()) __builtin_trap();
  if (v.not_after && *v.not_after <= v.not_before) __builtin_trap();
  if (v.not_after && *v.not_after <= context().now) __builtin_trap();
  if (v.throttle.has_value() != (v.action == d::directive_action::throttle)) __builtin_trap();
  if (v.action == d::directive_action::unblock) {
    if (v.targets.empty() == v.lifts.empty()) __builtin_trap();
  } else if (v.targets.empty() || !v.lifts.empty()) {
    __builtin_trap();
  }
  if (!v.scope.all && v.scope.sites.empty() && v.scope.labels.empty()) __builtin_trap();
  // Canonical domains are fixed points of the normaliser.
  for (const auto& dom : v.targets.domains) {
    const auto n = sluice::match::normalize_rule_name(dom);
    if (!n || n.text() != dom) __builtin_trap();
  }
  return 0;
}
