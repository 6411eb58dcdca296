#include "control/impact/report.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <stdexcept>
#include <utility>

#include "dataplane/match/domain_name.hpp"
#include "dataplane/match/domain_set.hpp"

namespace sluice::control::impact {
namespace {

using json = nlohmann::json;

// Fleet-wide sums of bounded counts: saturate rather than wrap if a store ever holds absurdly
// many records.
std::uint64_t add_sat(std::uint64_t a, std::uint64_t b) {
  return b > std::numeric_limits<std::uint64_t>::max() - a
             ? std::numeric_limits<std::uint64_t>::max()
             : a + b;
}

double share(std::uint64_t part, std::uint64_t whole) {
  if (whole == 0) return 0.0;
  return std::round(static_cast<double>(part) / static_cast<double>(whole) * 10000.0) / 10000.0;
}

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_';
}

// Wire names as nodes saw them: the dataplane folds case and one trailing dot while matching, so
// the same folding makes one key per name across nodes. Empty on invalid input.
std::string fold_wire_name(const std::string& raw) {
  std::string_view v = raw;
  if (!v.empty() && v.back() == '.') v.remove_suffix(1);
  if (v.empty() || v.size() > match::max_name_length) return {};
  std::size_t label = 0;
  for (char c : v) {
    if (c == '.') {
      if (label == 0) return {};
      label = 0;
      continue;
    }
    if (!is_name_char(c) || ++label > match::max_label_length) return {};
  }
  if (label == 0) return {};
  std::string out(v);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

bool is_token(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

bool valid_directive_key(std::string_view s) {
  if (s.empty()) return true;
  const auto slash = s.find('/');
  return s.size() <= 129 && is_token(s) && slash != std::string_view::npos && slash > 0 &&
         slash + 1 < s.size() && s.find('/', slash + 1) == std::string_view::npos;
}

// Each reader sets `error` to "<path>: <reason>" and returns false on failure.
struct reader {
  std::string& error;

  bool fail(const std::string& path, const std::string& why) {
    error = path + ": " + why;
    return false;
  }
  const json* field(const json& obj, const char* key, const std::string& path) {
    const auto it = obj.find(key);
    if (it == obj.end()) {
      fail(path.empty() ? std::string(key) : path + "." + key, "missing");
      return nullptr;
    }
    return &*it;
  }
  static std::string join(const std::string& path, const char* key) {
    return path.empty() ? std::string(key) : path + "." + key;
  }
  bool unsigned_field(const json& obj, const char* key, const std::string& path,
                      std::uint64_t limit, std::uint64_t& out) {
    const json* v = field(obj, key, path);
    if (!v) return false;
    if (!v->is_number_unsigned()) return fail(join(path, key), "must be a non-negative integer");
    out = v->get<std::uint64_t>();
    if (out > limit) return fail(join(path, key), "is larger than " + std::to_string(limit));
    return true;
  }
  bool string_field(const json& obj, const char* key, const std::string& path, std::string& out) {
    const json* v = field(obj, key, path);
    if (!v) return false;
    if (!v->is_string()) return fail(join(path, key), "must be a string");
    out = v->get<std::string>();
    return true;
  }
};

std::nullopt_t refuse(std::string& error, std::string why) {
  error = std::move(why);
  return std::nullopt;
}

std::optional<parsed_body> parse_checked(std::string_view text, std::string& error) {
  if (text.size() > max_body_bytes)
    return refuse(error, "body is larger than " + std::to_string(max_body_bytes) + " bytes");
  const json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return refuse(error, "body is not valid JSON");
  if (!j.is_object()) return refuse(error, "body is not a JSON object");

  reader rd{error};
  parsed_body out;
  constexpr auto max_time = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  std::uint64_t ws = 0, we = 0;
  if (!rd.unsigned_field(j, "window_start", "", max_time, ws) ||
      !rd.unsigned_field(j, "window_end", "", max_time, we) ||
      !rd.unsigned_field(j, "revision", "", std::numeric_limits<std::uint64_t>::max(),
                         out.revision))
    return std::nullopt;
  out.window_start = static_cast<std::int64_t>(ws);
  out.window_end = static_cast<std::int64_t>(we);
  if (out.window_start > out.window_end)
    return refuse(error, "window_start: is after window_end");

  const json* rules = rd.field(j, "rules", "");
  if (!rules) return std::nullopt;
  if (!rules->is_array()) return refuse(error, "rules: must be an array");
  if (rules->size() > max_rules)
    return refuse(error, "rules: more than " + std::to_string(max_rules) + " rules");

  std::set<std::string> rule_ids;
  out.rules.reserve(rules->size());
  for (std::size_t i = 0; i < rules->size(); ++i) {
    const json& jr = (*rules)[i];
    const std::string path = "rules[" + std::to_string(i) + "]";
    if (!jr.is_object()) return refuse(error, path + ": must be an object");
    rule_report r;
    if (!rd.string_field(jr, "rule", path, r.rule)) return std::nullopt;
    if (r.rule.empty() || r.rule.size() > max_rule_id_bytes || !is_token(r.rule))
      return refuse(error, path + ".rule: must be 1.." + std::to_string(max_rule_id_bytes) +
                     " printable characters without spaces");
    if (!rule_ids.insert(r.rule).second)
      return refuse(error, path + ".rule: '" + r.rule + "' is given twice");
    if (!rd.string_field(jr, "directive", path, r.directive)) return std::nullopt;
    if (!valid_directive_key(r.directive))
      return refuse(error, path + ".directive: must be empty or ISSUER/ID");
    if (!rd.unsigned_field(jr, "flows", path, max_count, r.flows) ||
        !rd.unsigned_field(jr, "unnamed", path, max_count, r.unnamed) ||
        !rd.unsigned_field(jr, "other", path, max_count, r.other))
      return std::nullopt;

    const json* names = rd.field(jr, "names", path);
    if (!names) return std::nullopt;
    if (!names->is_array()) return refuse(error, path + ".names: must be an array");
    if (names->size() > max_names_per_rule)
      return refuse(error, path + ".names: more than " + std::to_string(max_names_per_rule) + " names");
    for (std::size_t k = 0; k < names->size(); ++k) {
      const json& jn = (*names)[k];
      const std::string npath = path + ".names[" + std::to_string(k) + "]";
      if (!jn.is_object()) return refuse(error, npath + ": must be an object");
      name_count n;
      std::string raw;
      if (!rd.string_field(jn, "name", npath, raw) ||
          !rd.unsigned_field(jn, "flows", npath, max_count, n.flows) ||
          !rd.unsigned_field(jn, "error", npath, max_count, n.error))
        return std::nullopt;
      n.name = fold_wire_name(raw);
      if (n.name.empty())
        return refuse(error, npath + ".name: not a valid DNS name (labels of 1..63 [A-Za-z0-9_-], at "
                               "most 253 bytes)");
      if (n.error > n.flows) return refuse(error, npath + ".error: is larger than flows");
      const auto same = std::find_if(r.names.begin(), r.names.end(),
                                     [&](const name_count& o) { return o.name == n.name; });
      if (same == r.names.end()) {
        r.names.push_back(std::move(n));
      } else {  // the node did not fold case; its counts still belong together
        same->flows += n.flows;
        same->error += n.error;
      }
    }
    out.rules.push_back(std::move(r));
  }
  return out;
}

// ---- aggregation --------------------------------------------------------------------------

struct counts {
  std::uint64_t unnamed = 0;
  std::uint64_t other = 0;
  std::map<std::string, std::uint64_t> names;

  void add(const rule_report& r) {
    unnamed = add_sat(unnamed, r.unnamed);
    other = add_sat(other, r.other);
    for (const auto& n : r.names) names[n.name] = add_sat(names[n.name], n.flows);
  }
};

// Names by flows descending, then name; at most `top`.
std::vector<std::pair<std::string, std::uint64_t>> ranked(
    const std::map<std::string, std::uint64_t>& names, std::size_t top) {
  std::vector<std::pair<std::string, std::uint64_t>> v(names.begin(), names.end());
  std::stable_sort(v.begin(), v.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  if (v.size() > top) v.resize(top);
  return v;
}

// The directive's own domain targets, matched as the dataplane matches them: the same
// normaliser's output fed to the same domain_set, the value being the target's index.
class own_names {
 public:
  explicit own_names(const std::vector<std::string>& domains) {
    std::vector<match::domain_rule> rules;
    for (std::size_t i = 0; i < domains.size(); ++i) {
      const auto n = match::normalize_rule_name(domains[i]);
      if (!n) continue;  // expand_targets only yields normalised text; defensive
      rules.push_back({n.name, n.subdomain, static_cast<std::uint32_t>(i)});
    }
    try {
      set_ = match::domain_set(std::span<const match::domain_rule>(rules));
    } catch (const std::invalid_argument&) {
      // Only on duplicate or over-long names, which expansion already excludes.
    }
  }
  // Index of the best matching domain target, if any.
  [[nodiscard]] std::optional<std::size_t> match(const std::string& name) const {
    const auto m = set_.find(name);
    if (!m.found) return std::nullopt;
    return m.value;
  }

 private:
  match::domain_set set_;
};

struct rule_target {
  enum class kind : std::uint8_t { all, prefix, names } k = kind::all;
  std::string prefix;  // canonical, for kind::prefix
};

// Which part of the directive a rule id stands for ("ISSUER/ID[#N][@SUFFIX]").
rule_target target_of(const std::string& rule_id) {
  const auto at = rule_id.find('@');
  if (at == std::string::npos) return {};
  const std::string suffix = rule_id.substr(at + 1);
  if (suffix == "names") return {rule_target::kind::names, {}};
  if (auto p = fleet::canonical_prefix(suffix)) return {rule_target::kind::prefix, *p};
  return {};  // unknown suffix: attributable to the directive, not to one of its prefixes
}

bool belongs_to(const rule_report& r, const std::string& key) {
  if (!r.directive.empty()) return r.directive == key;
  return r.rule.substr(0, r.rule.find_first_of("#@")) == key;
}

}  // namespace

std::optional<parsed_body> parse_impact_body(std::string_view text, std::string& error) {
  try {
    return parse_checked(text, error);
  } catch (const json::exception& e) {  // not expected: every access is type-checked first
    error = std::string("body could not be read: ") + e.what();
    return std::nullopt;
  }
}

json impact_report(const directive::directive& d, const fleet::app_table& apps,
                   const std::vector<store::impact_record>& records, std::int64_t since,
                   std::int64_t until, std::size_t top) {
  const std::string key = fleet::directive_key(d);
  json out{{"directive", key}, {"since", since}, {"until", until}};

  json warnings = json::array();
  auto expanded = fleet::expand_targets(d, apps);
  if (!expanded) {
    warnings.push_back(expanded.error);
    directive::directive loaded = d;
    std::erase_if(loaded.targets.apps, [&](const std::string& a) { return !apps.contains(a); });
    expanded = fleet::expand_targets(loaded, apps);
    if (!expanded) {  // an invalid entry in a loaded profile: nothing to attribute names to
      warnings.push_back(expanded.error);
      expanded.targets.emplace();
    }
  }
  const fleet::expanded_targets& targets = *expanded.targets;
  const own_names own(targets.domains);

  std::map<std::string, counts> by_prefix;  // "*" for unsuffixed rules
  std::map<std::size_t, std::map<std::string, std::uint64_t>> by_domain;
  std::set<std::string> nodes;
  std::uint64_t reports = 0;
  std::int64_t newest = 0;
  std::string ignored;
  for (const auto& rec : records) {
    if (rec.window_start < since || rec.window_end > until) continue;
    const auto body = parse_impact_body(rec.body, ignored);
    if (!body) continue;
    // Only reports that carry this directive's rules speak for it (one from before its shadow
    // rules reached the node, or from a node out of its scope, says nothing of it).
    if (std::none_of(body->rules.begin(), body->rules.end(),
                     [&](const auto& r) { return belongs_to(r, key); }))
      continue;
    ++reports;
    nodes.insert(rec.node_id);
    newest = std::max(newest, rec.window_end);
    for (const auto& r : body->rules) {
      if (!belongs_to(r, key)) continue;
      const rule_target t = target_of(r.rule);
      if (t.k == rule_target::kind::prefix) by_prefix[t.prefix].add(r);
      if (t.k == rule_target::kind::all) by_prefix["*"].add(r);
      if (t.k == rule_target::kind::prefix) continue;
      for (const auto& n : r.names)
        if (const auto i = own.match(n.name))
          by_domain[*i][n.name] = add_sat(by_domain[*i][n.name], n.flows);
    }
  }
  out["reports"] = reports;
  out["nodes"] = nodes.size();
  out["newest_window_end"] = newest;

  // Target prefixes first (in target order), then other prefixes seen, then "*".
  std::vector<std::string> order = targets.prefixes;
  const std::set<std::string> target_set(order.begin(), order.end());
  for (const auto& [p, c] : by_prefix)
    if (p != "*" && !target_set.contains(p)) order.push_back(p);
  if (by_prefix.contains("*")) order.push_back("*");

  struct row {
    json j;
    std::uint64_t flows;
  };
  std::vector<row> rows;
  const counts none;
  for (const auto& p : order) {
    const auto it = by_prefix.find(p);
    const counts& c = it == by_prefix.end() ? none : it->second;
    std::uint64_t named = 0, own_flows = 0;
    std::map<std::string, std::uint64_t> others;
    for (const auto& [name, flows] : c.names) {
      named = add_sat(named, flows);
      if (own.match(name))
        own_flows = add_sat(own_flows, flows);
      else
        others.emplace(name, flows);
    }
    const std::uint64_t flows = add_sat(add_sat(named, c.unnamed), c.other);
    json top_other = json::array();
    for (const auto& [name, n] : ranked(others, top))
      top_other.push_back({{"name", name}, {"flows", n}, {"share", share(n, flows)}});
    rows.push_back({json{{"prefix", p},
                         {"flows", flows},
                         {"unnamed", c.unnamed},
                         {"own_flows", own_flows},
                         {"own_share", share(own_flows, flows)},
                         {"unnamed_share", share(c.unnamed, flows)},
                         {"other_flows", flows - own_flows - c.unnamed},
                         {"top_other", std::move(top_other)}},
                    flows});
  }
  std::stable_sort(rows.begin(), rows.end(),
                   [](const row& a, const row& b) { return a.flows > b.flows; });
  out["prefixes"] = json::array();
  for (auto& r : rows) out["prefixes"].push_back(std::move(r.j));

  out["domains"] = json::array();
  for (std::size_t i = 0; i < targets.domains.size(); ++i) {
    const auto it = by_domain.find(i);
    std::uint64_t flows = 0;
    json names = json::array();
    if (it != by_domain.end()) {
      for (const auto& [name, n] : it->second) flows = add_sat(flows, n);
      for (const auto& [name, n] : ranked(it->second, top))
        names.push_back({{"name", name}, {"flows", n}});
    }
    out["domains"].push_back({{"domain", targets.domains[i]}, {"flows", flows}, {"names", names}});
  }
  if (!warnings.empty()) out["warnings"] = std::move(warnings);
  return out;
}

}  // namespace sluice::control::impact
