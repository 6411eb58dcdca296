#include "control/impact/protected.hpp"

#include <arpa/inet.h>

#include <array>
#include <cstdint>
#include <optional>
#include <set>
#include <tuple>

#include "dataplane/match/domain_name.hpp"

namespace sluice::control::impact {
namespace {

struct ip_range {
  int family = AF_INET;
  std::array<std::uint8_t, 16> bytes{};
  int length = 0;
};

bool bit(const ip_range& r, int i) { return (r.bytes[i / 8] >> (7 - i % 8)) & 1; }

// From text fleet::canonical_prefix accepts (it has already checked the syntax).
std::optional<ip_range> parse_range(const std::string& text) {
  const auto canonical = fleet::canonical_prefix(text);
  if (!canonical) return std::nullopt;
  const auto slash = canonical->find('/');
  ip_range r;
  const std::string addr = canonical->substr(0, slash);
  r.family = addr.find(':') == std::string::npos ? AF_INET : AF_INET6;
  if (inet_pton(r.family, addr.c_str(), r.bytes.data()) != 1) return std::nullopt;
  r.length = std::stoi(canonical->substr(slash + 1));
  return r;
}

bool has_host_bits(const ip_range& r) {
  const int bits = r.family == AF_INET ? 32 : 128;
  for (int i = r.length; i < bits; ++i)
    if (bit(r, i)) return true;
  return false;
}

// Two prefixes intersect exactly when one contains the other: compare the shorter one's bits.
bool ranges_overlap(const ip_range& a, const ip_range& b) {
  if (a.family != b.family) return false;
  const int n = std::min(a.length, b.length);
  for (int i = 0; i < n; ++i)
    if (bit(a, i) != bit(b, i)) return false;
  return true;
}

bool is_under(const std::string& child, const std::string& parent) {
  return child.size() > parent.size() && child.ends_with(parent) &&
         child[child.size() - parent.size() - 1] == '.';
}

bool names_overlap(const match::rule_name& a, const match::rule_name& b) {
  return a.name == b.name || is_under(a.name, b.name) || is_under(b.name, a.name);
}

struct source_target {
  std::string text;  // canonical
  std::string app;   // "" for the directive's own entries
};

}  // namespace

bool validate_protected(const protected_set& p, std::string& error) {
  std::set<std::string> names;
  for (std::size_t i = 0; i < p.entries.size(); ++i) {
    const auto& e = p.entries[i];
    const std::string who = "protected '" + e.name + "'";
    if (e.name.empty()) {
      error = "protected[" + std::to_string(i) + "]: name is empty";
      return false;
    }
    if (!names.insert(e.name).second) {
      error = who + ": name given twice";
      return false;
    }
    if (e.prefixes.empty() && e.domains.empty()) {
      error = who + ": has no prefixes and no domains";
      return false;
    }
    for (const auto& pre : e.prefixes) {
      const auto r = parse_range(pre);
      if (!r) {
        error = who + ": invalid prefix '" + pre + "'";
        return false;
      }
      if (has_host_bits(*r)) {
        error = who + ": prefix '" + pre + "' has host bits set";
        return false;
      }
    }
    for (const auto& dom : e.domains) {
      const auto n = match::normalize_rule_name(dom);
      if (!n) {
        error = who + ": invalid domain '" + dom + "' (" + match::to_string(n.error) + ")";
        return false;
      }
    }
  }
  return true;
}

std::vector<overlap> find_overlaps(const directive::directive& d, const fleet::app_table& apps,
                                   const protected_set& p) {
  std::vector<source_target> prefixes, domains;
  std::set<std::string> seen_p, seen_d;
  auto add_prefix = [&](const std::string& text, const std::string& app) {
    if (const auto c = fleet::canonical_prefix(text); c && seen_p.insert(*c).second)
      prefixes.push_back({*c, app});
  };
  auto add_domain = [&](const std::string& text, const std::string& app) {
    if (const auto n = match::normalize_rule_name(text); n && seen_d.insert(n.text()).second)
      domains.push_back({n.text(), app});
  };
  // Per source, so that each target keeps the app it came from (fleet::expand_targets merges).
  std::vector<std::pair<std::vector<source_target>, std::vector<source_target>>> groups;
  for (const auto& app : d.targets.apps) {
    const auto it = apps.find(app);
    if (it == apps.end()) continue;
    prefixes.clear();
    domains.clear();
    for (const auto& x : it->second.prefixes) add_prefix(x, app);
    for (const auto& x : it->second.domains) add_domain(x, app);
    groups.emplace_back(prefixes, domains);
  }
  prefixes.clear();
  domains.clear();
  for (const auto& x : d.targets.prefixes) add_prefix(x, "");
  for (const auto& x : d.targets.domains) add_domain(x, "");
  groups.emplace_back(std::move(prefixes), std::move(domains));

  auto label = [](const source_target& t) {
    return "target " + t.text + (t.app.empty() ? "" : " (app " + t.app + ")");
  };
  std::vector<overlap> out;
  std::set<std::tuple<std::string, std::string, std::string>> reported;
  auto report = [&](const source_target& t, const std::string& entry, const std::string& item,
                    const char* kind) {
    if (!reported.emplace(t.text, entry, item).second) return;
    out.push_back({t.text, entry, item,
                   label(t) + " overlaps protected " + kind + " '" + entry + "' (" + item + ")"});
  };
  for (const auto& [gp, gd] : groups) {
    for (const auto& t : gp) {
      const auto tr = parse_range(t.text);
      if (!tr) continue;
      for (const auto& e : p.entries)
        for (const auto& item : e.prefixes) {
          const auto pr = parse_range(item);
          if (!pr || !ranges_overlap(*tr, *pr)) continue;
          report(t, e.name, *fleet::canonical_prefix(item), "range");
        }
    }
    for (const auto& t : gd) {
      const auto tn = match::normalize_rule_name(t.text);
      for (const auto& e : p.entries)
        for (const auto& item : e.domains) {
          const auto pn = match::normalize_rule_name(item);
          if (!pn || !names_overlap(tn, pn)) continue;
          report(t, e.name, pn.text(), "name");
        }
    }
  }
  return out;
}

}  // namespace sluice::control::impact
