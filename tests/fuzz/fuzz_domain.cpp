// Fuzzes the domain set's wire-name lookup (hot path: must never read outside the input), its
// bulk form (must answer exactly what find answers) and the rule-name normaliser (libidn2 on
// arbitrary bytes).
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "dataplane/match/domain_name.hpp"
#include "dataplane/match/domain_set.hpp"

namespace {

const sluice::match::domain_set& fixed_set() {
  static const sluice::match::domain_set set = [] {
    std::vector<sluice::match::domain_rule> rules;
    const char* texts[] = {"telegram.org", "*.telegram.org", "t.me", "*.t.me", "*.cdn.telegram.org",
                           "пример.рф", "*.a.b.c.d.e.f.g", "x", "*.x"};
    std::uint32_t value = 0;
    for (const char* t : texts) {
      auto n = sluice::match::normalize_rule_name(t);
      if (n) rules.push_back({n.name, n.subdomain, value++});
    }
    return sluice::match::domain_set(rules);
  }();
  return set;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view name(reinterpret_cast<const char*>(data), size);
  const auto m = fixed_set().find(name);
  if (m.found && (size == 0 || size > 254)) __builtin_trap();  // never found: empty, too long
  // The input and its suffixes after each dot, looked up in one burst, answer as find does.
  std::string_view names[sluice::match::domain_set::bulk_max];
  std::size_t count = 0;
  names[count++] = name;
  for (std::size_t dot = name.find('.'); dot != std::string_view::npos && count < std::size(names);
       dot = name.find('.', dot + 1)) {
    names[count++] = name.substr(dot + 1);
  }
  sluice::match::domain_match bulk[sluice::match::domain_set::bulk_max];
  fixed_set().find_bulk(names, bulk, count);
  for (std::size_t i = 0; i < count; ++i) {
    const auto one = fixed_set().find(names[i]);
    if (one.found != bulk[i].found || one.kind != bulk[i].kind || one.value != bulk[i].value) {
      __builtin_trap();
    }
  }

  const auto n = sluice::match::normalize_rule_name(name);
  if (n) {
    // A normalised rule must be accepted by the set and found again on the wire.
    if (n.name.empty() || n.name.size() > sluice::match::max_name_length) __builtin_trap();
    const std::vector<sluice::match::domain_rule> one = {{n.name, n.subdomain, 7}};
    const sluice::match::domain_set set(one);
    const auto hit = set.find(n.subdomain ? "a." + n.name : n.name);
    if (n.subdomain ? (n.name.size() <= 251 && !hit.found) : !hit.found) __builtin_trap();
    // A pattern never matches its base; an exact name never matches "a" + name (no boundary).
    if (set.find(n.subdomain ? n.name : "a" + n.name).found) __builtin_trap();
  }
  return 0;
}
