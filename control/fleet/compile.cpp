#include "control/fleet/compile.hpp"

#include <arpa/inet.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstring>
#include <ctime>
#include <nlohmann/json.hpp>
#include <map>
#include <set>
#include <string_view>
#include <tuple>
#include <unordered_set>

#include "dataplane/match/domain_name.hpp"

namespace sluice::control::fleet {
namespace {

using directive::directive_action;
using json = nlohmann::json;

match::action rule_action(const directive::directive& d) {
  switch (d.action) {
    case directive_action::throttle:
      return match::action::throttle;
    case directive_action::monitor:
      return match::action::monitor;
    default:
      break;
  }
  switch (d.response) {
    case directive::block_response::drop:
      return match::action::drop;
    case directive::block_response::notice:
      return match::action::notice;
    case directive::block_response::reset:
      break;
  }
  return match::action::reset;
}

using expanded = expanded_targets;

// The directive's targets with apps expanded, canonical and deduplicated (order kept).
std::optional<std::string> expand(const directive::directive& d, const directive::target_set& t,
                                  const app_table& apps, expanded& out) {
  std::set<std::string> seen_p, seen_d;
  auto add_prefix = [&](const std::string& text) -> bool {
    const auto c = canonical_prefix(text);
    if (!c) return false;
    if (seen_p.insert(*c).second) out.prefixes.push_back(*c);
    return true;
  };
  auto add_domain = [&](const std::string& text) -> bool {
    const auto n = match::normalize_rule_name(text);
    if (!n) return false;
    if (seen_d.insert(n.text()).second) out.domains.push_back(n.text());
    return true;
  };
  for (const auto& name : t.apps) {
    const auto it = apps.find(name);
    if (it == apps.end())
      return "directive " + directive_key(d) + ": app profile '" + name + "' is not loaded";
    for (const auto& p : it->second.prefixes)
      if (!add_prefix(p))
        return "app profile '" + name + "': invalid prefix '" + p + "'";
    for (const auto& n : it->second.domains)
      if (!add_domain(n))
        return "app profile '" + name + "': invalid domain '" + n + "'";
  }
  for (const auto& p : t.prefixes)
    if (!add_prefix(p)) return "directive " + directive_key(d) + ": invalid prefix '" + p + "'";
  for (const auto& n : t.domains)
    if (!add_domain(n)) return "directive " + directive_key(d) + ": invalid domain '" + n + "'";
  return std::nullopt;
}

bool same_scope(const directive::scope_spec& a, const directive::scope_spec& b) {
  return a.all == b.all && a.sites == b.sites && a.labels == b.labels;
}

void remove_entries(std::vector<std::string>& from, const std::vector<std::string>& what) {
  if (what.empty()) return;
  // A set, not a scan of `what` per entry: an unblock of 100,000 names from a rule of 1,000,000.
  const std::unordered_set<std::string_view> drop(what.begin(), what.end());
  std::erase_if(from, [&](const std::string& s) { return drop.contains(s); });
}

json scope_json(const directive::scope_spec& s) {
  if (s.all) return "all";
  json j = json::object();
  if (!s.sites.empty()) j["sites"] = s.sites;
  if (!s.labels.empty()) j["labels"] = s.labels;
  return j;
}

std::optional<directive::scope_spec> scope_from_json(const json& j) {
  directive::scope_spec s;
  if (j.is_string()) {
    if (j.get<std::string>() != "all") return std::nullopt;
    s.all = true;
    return s;
  }
  if (!j.is_object()) return std::nullopt;
  if (j.contains("sites")) s.sites = j.at("sites").get<std::vector<std::string>>();
  if (j.contains("labels")) s.labels = j.at("labels").get<std::map<std::string, std::string>>();
  return s;
}

// Monitor rules split per target so that nodes count (and report) each prefix on its own. Each
// part is made from the rule without its lists: copying them into every part made a shadow
// directive of P prefixes and D names cost P * (P + D) strings (100,000 prefixes and 1,000,000
// names: 10^11).
void push_split_monitor(fleet_rule&& r, std::vector<fleet_rule>& out) {
  std::vector<std::string> prefixes = std::move(r.prefixes);
  std::vector<std::string> domains = std::move(r.domains);
  r.prefixes.clear();
  r.domains.clear();
  out.reserve(out.size() + prefixes.size() + 1);
  for (auto& p : prefixes) {
    fleet_rule one = r;
    one.id = r.id + "@" + p;
    one.prefixes.push_back(std::move(p));
    out.push_back(std::move(one));
  }
  if (!domains.empty()) {
    r.id += "@names";
    r.domains = std::move(domains);
    out.push_back(std::move(r));
  }
}

}  // namespace

expand_result expand_targets(const directive::directive& d, const app_table& apps) {
  expand_result r;
  expanded_targets t;
  if (auto e = expand(d, d.targets, apps, t)) {
    r.error = std::move(*e);
    return r;
  }
  r.targets = std::move(t);
  return r;
}

std::string directive_key(const directive::directive& d) { return d.issuer + "/" + d.id; }

std::optional<std::string> canonical_prefix(const std::string& text) {
  const auto slash = text.find('/');
  if (slash == std::string::npos || slash + 1 >= text.size()) return std::nullopt;
  const std::string addr = text.substr(0, slash);
  int len = 0;
  for (std::size_t i = slash + 1; i < text.size(); ++i) {
    if (text[i] < '0' || text[i] > '9' || i - slash > 3) return std::nullopt;
    len = len * 10 + (text[i] - '0');
  }
  unsigned char buf[16];
  char out[INET6_ADDRSTRLEN];
  const int family = addr.find(':') == std::string::npos ? AF_INET : AF_INET6;
  if (inet_pton(family, addr.c_str(), buf) != 1) return std::nullopt;
  if (len > (family == AF_INET ? 32 : 128)) return std::nullopt;
  if (!inet_ntop(family, buf, out, sizeof out)) return std::nullopt;
  return std::string(out) + "/" + std::to_string(len);
}

std::string format_rfc3339(std::int64_t unix_seconds) {
  const std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

bool fleet_rule::same_as(const fleet_rule& o) const {
  return std::tie(id, directive, act, legal_basis, throttle.rate_bps, throttle.burst_bytes,
                  prefixes, domains, not_before, not_after, shadow) ==
             std::tie(o.id, o.directive, o.act, o.legal_basis, o.throttle.rate_bps,
                      o.throttle.burst_bytes, o.prefixes, o.domains, o.not_before,
                      o.not_after, o.shadow) &&
         same_scope(scope, o.scope);
}

bool fleet_policy::same_as(const fleet_policy& o) const {
  if (emergency_stop != o.emergency_stop || rules.size() != o.rules.size()) return false;
  for (std::size_t i = 0; i < rules.size(); ++i)
    if (!rules[i].same_as(o.rules[i])) return false;
  return true;
}

std::string fleet_policy::to_json() const {
  json j;
  j["emergency_stop"] = emergency_stop;
  j["rules"] = json::array();
  for (const auto& r : rules) {
    json jr{{"id", r.id},
            {"directive", r.directive},
            {"action", match::to_string(r.act)},
            {"legal_basis", r.legal_basis},
            {"prefixes", r.prefixes},
            {"domains", r.domains},
            {"scope", scope_json(r.scope)},
            {"since", r.since}};
    if (r.act == match::action::throttle)
      jr["throttle"] = {{"rate_bps", r.throttle.rate_bps},
                        {"burst_bytes", r.throttle.burst_bytes}};
    if (r.not_before) jr["not_before"] = *r.not_before;
    if (r.not_after) jr["not_after"] = *r.not_after;
    if (r.shadow) jr["shadow"] = true;  // absent = false keeps older stored policies readable
    j["rules"].push_back(std::move(jr));
  }
  return j.dump();
}

std::optional<fleet_policy> fleet_policy::from_json(const std::string& text) {
  try {
    const json j = json::parse(text);
    fleet_policy p;
    p.emergency_stop = j.at("emergency_stop").get<bool>();
    for (const auto& jr : j.at("rules")) {
      fleet_rule r;
      r.id = jr.at("id").get<std::string>();
      r.directive = jr.at("directive").get<std::string>();
      const auto act = match::parse_action(jr.at("action").get<std::string>());
      if (!act) return std::nullopt;
      r.act = *act;
      r.legal_basis = jr.at("legal_basis").get<std::string>();
      r.prefixes = jr.at("prefixes").get<std::vector<std::string>>();
      r.domains = jr.at("domains").get<std::vector<std::string>>();
      auto scope = scope_from_json(jr.at("scope"));
      if (!scope) return std::nullopt;
      r.scope = std::move(*scope);
      r.since = jr.at("since").get<std::uint64_t>();
      if (jr.contains("throttle")) {
        r.throttle.rate_bps = jr["throttle"].at("rate_bps").get<std::uint64_t>();
        r.throttle.burst_bytes = jr["throttle"].at("burst_bytes").get<std::uint64_t>();
      }
      if (jr.contains("not_before")) r.not_before = jr["not_before"].get<std::int64_t>();
      if (jr.contains("not_after")) r.not_after = jr["not_after"].get<std::int64_t>();
      if (jr.contains("shadow")) r.shadow = jr["shadow"].get<bool>();
      p.rules.push_back(std::move(r));
    }
    return p;
  } catch (const json::exception&) {
    return std::nullopt;
  }
}

compile_result compile_fleet(const std::vector<directive::directive>& effective,
                             const app_table& apps, bool emergency_stop,
                             const fleet_policy* previous, std::uint64_t next_revision,
                             const std::vector<directive::directive>& shadowed) {
  compile_result result;
  fleet_policy out;
  out.emergency_stop = emergency_stop;

  auto by_key = [](const auto* a, const auto* b) {
    return std::tie(a->issuer, a->id) < std::tie(b->issuer, b->id);
  };
  std::vector<const directive::directive*> sorted;
  for (const auto& d : effective) sorted.push_back(&d);
  std::sort(sorted.begin(), sorted.end(), by_key);

  // Only what would enforce is worth shadowing; a key that is also effective would give two
  // rules the same id, which nodes refuse.
  std::set<std::string> effective_keys;
  for (const auto* d : sorted) effective_keys.insert(directive_key(*d));
  std::vector<const directive::directive*> shadows;
  for (const auto& d : shadowed) {
    if (d.action != directive_action::block && d.action != directive_action::throttle) continue;
    if (d.targets.empty() || effective_keys.contains(directive_key(d))) continue;
    shadows.push_back(&d);
  }
  std::sort(shadows.begin(), shadows.end(), by_key);
  // Two shadowed copies of one key: keep the first, for the same reason.
  shadows.erase(std::unique(shadows.begin(), shadows.end(),
                            [](const auto* a, const auto* b) {
                              return a->issuer == b->issuer && a->id == b->id;
                            }),
                shadows.end());

  // Unblocks by what they do, each with its expanded targets.
  struct narrowing {
    const directive::directive* by;
    expanded targets;
  };
  std::vector<narrowing> narrowings;
  for (const auto* d : sorted) {
    if (d->action != directive_action::unblock || d->targets.empty()) continue;
    narrowing n{d, {}};
    if (auto e = expand(*d, d->targets, apps, n.targets)) {
      result.error = *e;
      return result;
    }
    narrowings.push_back(std::move(n));
  }
  std::sort(narrowings.begin(), narrowings.end(),
            [](const auto& a, const auto& b) { return a.by->not_before < b.by->not_before; });

  if (!emergency_stop) {
    // Merge effective and shadowed directives by key, so rules stay ordered by directive key.
    std::vector<std::pair<const directive::directive*, bool>> all;
    for (const auto* d : sorted) all.emplace_back(d, false);
    for (const auto* d : shadows) all.emplace_back(d, true);
    std::stable_sort(all.begin(), all.end(),
                     [&](const auto& a, const auto& b) { return by_key(a.first, b.first); });
    for (const auto& [d, is_shadow] : all) {
      if (d->action == directive_action::unblock) continue;
      if (is_shadow) {
        fleet_rule r;
        r.directive = directive_key(*d);
        r.id = r.directive;
        r.act = match::action::monitor;
        r.legal_basis = d->legal_basis;
        r.scope = d->scope;
        r.not_after = d->not_after;
        r.shadow = true;
        // A directive nobody approved must not stall the fleet's rollout: one whose apps are
        // no longer loaded is left unshadowed (approving it fails to compile, visibly).
        expanded targets;
        if (expand(*d, d->targets, apps, targets)) continue;
        r.prefixes = std::move(targets.prefixes);
        r.domains = std::move(targets.domains);
        push_split_monitor(std::move(r), out.rules);
        continue;
      }
      fleet_rule base;
      base.directive = directive_key(*d);
      base.id = base.directive;
      base.act = rule_action(*d);
      base.legal_basis = d->legal_basis;
      if (d->throttle) base.throttle = {d->throttle->rate_bps, d->throttle->burst_bytes};
      base.scope = d->scope;
      base.not_before = d->not_before;
      base.not_after = d->not_after;
      expanded targets;
      if (auto e = expand(*d, d->targets, apps, targets)) {
        result.error = *e;
        return result;
      }
      base.prefixes = std::move(targets.prefixes);
      base.domains = std::move(targets.domains);

      for (const auto* u : sorted) {
        if (u->action != directive_action::unblock || u->issuer != d->issuer) continue;
        if (std::find(u->lifts.begin(), u->lifts.end(), d->id) == u->lifts.end()) continue;
        if (!base.not_after || u->not_before < *base.not_after) base.not_after = u->not_before;
      }

      // Split in time at each narrowing unblock that applies to this rule.
      std::vector<fleet_rule> parts{base};
      for (const auto& n : narrowings) {
        if (n.by->issuer != d->issuer) continue;
        if (!n.by->scope.all && !same_scope(n.by->scope, d->scope)) continue;
        fleet_rule& last = parts.back();
        const std::int64_t at = n.by->not_before;
        if (last.not_after && at >= *last.not_after) continue;
        fleet_rule after = last;
        remove_entries(after.prefixes, n.targets.prefixes);
        remove_entries(after.domains, n.targets.domains);
        if (after.prefixes == last.prefixes && after.domains == last.domains) continue;
        after.not_before = std::max(at, last.not_before.value_or(at));
        last.not_after = after.not_before;
        parts.push_back(std::move(after));
      }
      std::size_t kept = 0;
      for (auto& p : parts) {
        if (p.prefixes.empty() && p.domains.empty()) continue;
        if (p.not_before && p.not_after && *p.not_after <= *p.not_before) continue;
        if (parts.size() > 1) p.id = base.id + "#" + std::to_string(++kept);
        if (p.act == match::action::monitor)
          push_split_monitor(std::move(p), out.rules);
        else
          out.rules.push_back(std::move(p));
      }
    }
  }

  // same_as compares ids first: look the previous rules up by id (a shadow directive is one
  // rule per prefix, so a scan of every previous rule for every new one was 10^10 comparisons
  // with 100,000 prefixes on both sides). The last equal one gives `since`, as the scan did.
  std::map<std::string_view, std::vector<const fleet_rule*>> previous_by_id;
  if (previous)
    for (const auto& old : previous->rules) previous_by_id[old.id].push_back(&old);
  for (auto& r : out.rules) {
    r.since = next_revision;
    const auto same_id = previous_by_id.find(r.id);
    if (same_id == previous_by_id.end()) continue;
    for (const fleet_rule* old : same_id->second)
      if (old->same_as(r)) r.since = old->since;
  }
  result.policy = std::move(out);
  return result;
}

std::vector<const fleet_rule*> rules_for(const fleet_policy& p,
                                         const std::map<std::string, std::string>& labels) {
  std::vector<const fleet_rule*> out;
  for (const auto& r : p.rules)
    if (r.scope.covers(labels)) out.push_back(&r);
  return out;
}

std::string scope_term(const directive::scope_spec& s) {
  std::string out;
  if (!s.sites.empty()) {
    out = "site:";
    for (std::size_t i = 0; i < s.sites.size(); ++i) out += (i ? "|" : "") + s.sites[i];
  }
  for (const auto& [key, value] : s.labels) out += (out.empty() ? "" : "&") + key + "=" + value;
  return out;
}

std::string snapshot_scope(const fleet_policy& p, const std::map<std::string, std::string>& labels) {
  std::string out;
  std::vector<const directive::scope_spec*> seen;
  for (const auto& r : p.rules) {
    if (r.scope.all) continue;
    const bool repeat = std::any_of(seen.begin(), seen.end(), [&](const directive::scope_spec* s) {
      return s->sites == r.scope.sites && s->labels == r.scope.labels;
    });
    if (repeat) continue;
    seen.push_back(&r.scope);
    out += (out.empty() ? "" : ",") + std::string(r.scope.covers(labels) ? "+" : "!") +
           scope_term(r.scope);
  }
  return out.empty() ? "all" : out;
}

std::string node_policy_text(const fleet_policy& p,
                             const std::map<std::string, std::string>& labels,
                             std::uint64_t revision, std::int64_t generated_at) {
  YAML::Emitter e;
  e << YAML::BeginMap;
  e << YAML::Key << "revision" << YAML::Value << revision;
  e << YAML::Key << "generated_at" << YAML::Value << format_rfc3339(generated_at);
  e << YAML::Key << "rules" << YAML::Value << YAML::BeginSeq;
  for (const fleet_rule* r : rules_for(p, labels)) {
    e << YAML::BeginMap;
    e << YAML::Key << "id" << YAML::Value << YAML::DoubleQuoted << r->id;
    e << YAML::Key << "directive" << YAML::Value << YAML::DoubleQuoted << r->directive;
    e << YAML::Key << "action" << YAML::Value << match::to_string(r->act);
    e << YAML::Key << "legal_basis" << YAML::Value << YAML::DoubleQuoted << r->legal_basis;
    if (r->act == match::action::throttle) {
      e << YAML::Key << "throttle" << YAML::Value << YAML::Flow << YAML::BeginMap;
      e << YAML::Key << "rate_bps" << YAML::Value << r->throttle.rate_bps;
      e << YAML::Key << "burst_bytes" << YAML::Value << r->throttle.burst_bytes;
      e << YAML::EndMap;
    }
    if (r->not_before)
      e << YAML::Key << "not_before" << YAML::Value << format_rfc3339(*r->not_before);
    if (r->not_after)
      e << YAML::Key << "not_after" << YAML::Value << format_rfc3339(*r->not_after);
    e << YAML::Key << "prefixes" << YAML::Value << YAML::Flow << r->prefixes;
    e << YAML::Key << "domains" << YAML::Value << YAML::Flow << YAML::BeginSeq;
    for (const auto& d : r->domains) e << YAML::DoubleQuoted << d;
    e << YAML::EndSeq;
    e << YAML::EndMap;
  }
  e << YAML::EndSeq << YAML::EndMap;
  return std::string(e.c_str()) + "\n";
}

}  // namespace sluice::control::fleet
