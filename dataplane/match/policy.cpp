#include "dataplane/match/policy.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <map>
#include <set>
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>

#include "dataplane/match/domain_name.hpp"

namespace sluice::match {

const char* to_string(compile_error_code c) noexcept {
  switch (c) {
#define SLUICE_X(name, str)      \
  case compile_error_code::name: \
    return str;
    SLUICE_COMPILE_ERRORS(SLUICE_X)
#undef SLUICE_X
    case compile_error_code::count:
      break;
  }
  return "?";
}

// ---- canonical serialization + SHA-256 ---------------------------------------------------------

namespace {

void put(std::string& out, std::string_view key, std::string_view value) {
  out.append(key);
  out.push_back('=');
  out.append(std::to_string(value.size()));
  out.push_back(':');
  out.append(value);
  out.push_back('\n');
}
void put_opt(std::string& out, std::string_view key, const std::optional<std::int64_t>& v) {
  put(out, key, v ? std::to_string(*v) : std::string("-"));
}

}  // namespace

std::string ruleset_sha256(const policy_spec& spec) {
  std::string s = "sluice-ruleset-v1\n";
  put(s, "rules", std::to_string(spec.rules.size()));
  for (const auto& r : spec.rules) {
    put(s, "id", r.id);
    put(s, "directive", r.directive);
    put(s, "action", to_string(r.act));
    put(s, "legal_basis", r.legal_basis);
    put(s, "rate_bps", std::to_string(r.throttle.rate_bps));
    put(s, "burst_bytes", std::to_string(r.throttle.burst_bytes));
    put_opt(s, "not_before", r.not_before);
    put_opt(s, "not_after", r.not_after);
    put(s, "prefixes", std::to_string(r.prefixes.size()));
    for (const auto& p : r.prefixes) put(s, "p", p);
    put(s, "domains", std::to_string(r.domains.size()));
    for (const auto& d : r.domains) put(s, "d", d);
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  if (EVP_Digest(s.data(), s.size(), md, &md_len, EVP_sha256(), nullptr) != 1) {
    throw std::runtime_error("EVP_Digest(SHA-256) failed");
  }
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(md_len * 2);
  for (unsigned i = 0; i < md_len; ++i) {
    out.push_back(hex[md[i] >> 4]);
    out.push_back(hex[md[i] & 15]);
  }
  return out;
}

// ---- matching -----------------------------------------------------------------------------------

std::optional<std::uint32_t> compiled_policy::match_ip(
    const packet::ip_address& addr) const noexcept {
  if (addr.version == 4) return prefixes_.lookup_v4(addr.v4());
  if (addr.version == 6) return prefixes_.lookup_v6(addr.bytes.data());
  return std::nullopt;
}

std::optional<std::uint32_t> compiled_policy::match_name(std::string_view name) const noexcept {
  const domain_match m = domains_.find(name);
  if (!m.found) return std::nullopt;
  return m.value;
}

namespace {
// Higher wins. Blocking actions outrank throttle; see README.md for the order within a tier.
constexpr int strength(action a) noexcept {
  switch (a) {
    case action::drop:
      return 4;
    case action::reset:
      return 3;
    case action::notice:
      return 2;
    case action::throttle:
      return 1;
    default:
      return 0;
  }
}
}  // namespace

bool compiled_policy::stronger(std::uint32_t a, std::uint32_t b) const noexcept {
  const compiled_rule& ra = rules_[a];
  const compiled_rule& rb = rules_[b];
  if (strength(ra.act) != strength(rb.act)) return strength(ra.act) > strength(rb.act);
  if (ra.act == action::throttle && ra.rate_bps != rb.rate_bps) return ra.rate_bps < rb.rate_bps;
  return a < b;  // earlier rule in the snapshot wins a tie
}

verdict compiled_policy::decide(const match_group& g, std::int64_t now) const noexcept {
  verdict v;
  for (std::uint32_t r : g.rules) {
    if (!rule_active(r, now)) continue;
    const action a = rules_[r].act;
    if (a == action::monitor) {
      ++v.monitors;
    } else if (is_enforcing(a) && (v.rule == verdict::no_rule || stronger(r, v.rule))) {
      v.rule = r;
      v.act = a;
    }
  }
  return v;
}

verdict compiled_policy::decide(std::optional<std::uint32_t> ip_group,
                                std::optional<std::uint32_t> name_group,
                                std::int64_t now) const noexcept {
  if (!ip_group && !name_group) return {};
  if (!ip_group) return decide(groups_[*name_group], now);
  if (!name_group || *ip_group == *name_group) return decide(groups_[*ip_group], now);
  // A rule listing both the address and the name must count once: merge the two sorted lists.
  verdict v;
  const auto a = groups_[*ip_group].rules;
  const auto b = groups_[*name_group].rules;
  std::size_t i = 0, j = 0;
  while (i < a.size() || j < b.size()) {
    std::uint32_t r;
    if (j == b.size() || (i < a.size() && a[i] < b[j])) {
      r = a[i++];
    } else if (i == a.size() || b[j] < a[i]) {
      r = b[j++];
    } else {
      r = a[i++];
      ++j;
    }
    if (!rule_active(r, now)) continue;
    const action act = rules_[r].act;
    if (act == action::monitor) {
      ++v.monitors;
    } else if (is_enforcing(act) && (v.rule == verdict::no_rule || stronger(r, v.rule))) {
      v.rule = r;
      v.act = act;
    }
  }
  return v;
}

// ---- compile ------------------------------------------------------------------------------------

struct compile_access {
  static compiled_policy* make() { return new compiled_policy(); }
  static compiled_policy& mut(compiled_policy& p) { return p; }
  static auto& rules(compiled_policy& p) { return p.rules_; }
  static auto& group_rules(compiled_policy& p) { return p.group_rules_; }
  static auto& groups(compiled_policy& p) { return p.groups_; }
  static auto& prefixes(compiled_policy& p) { return p.prefixes_; }
  static auto& domains(compiled_policy& p) { return p.domains_; }
  static void header(compiled_policy& p, const policy_spec& s, std::string sha) {
    p.revision_ = s.revision;
    p.generated_at_ = s.generated_at;
    p.sha256_ = std::move(sha);
  }
};

namespace {

using rule_list = std::vector<std::uint32_t>;  // ascending, unique

void merge_into(rule_list& dst, const rule_list& src) {
  rule_list out;
  out.reserve(dst.size() + src.size());
  std::set_union(dst.begin(), dst.end(), src.begin(), src.end(), std::back_inserter(out));
  dst.swap(out);
}

compile_result fail(compile_error_code code, std::size_t index, const rule_spec& r,
                    std::string item, std::string detail) {
  compile_result res;
  res.error.code = code;
  res.error.rule_index = index;
  res.error.rule_id = r.id;
  res.error.item = item;
  res.error.message = "rule '" + r.id + "' (#" + std::to_string(index) + "): " + detail;
  if (!item.empty()) res.error.message += ": '" + item + "'";
  return res;
}

// Interns rule lists as group ids.
class group_table {
 public:
  std::uint32_t intern(const rule_list& rules) {
    auto [it, inserted] = ids_.emplace(rules, static_cast<std::uint32_t>(lists_.size()));
    if (inserted) lists_.push_back(rules);
    return it->second;
  }
  const std::vector<rule_list>& lists() const { return lists_; }

 private:
  std::map<rule_list, std::uint32_t> ids_;
  std::vector<rule_list> lists_;
};

// Lets the name maps be probed with string_views (no std::string per parent lookup).
struct name_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept {
    return std::hash<std::string_view>{}(s);
  }
};
using name_map = std::unordered_map<std::string, rule_list, name_hash, std::equal_to<>>;

// Proper suffixes of a name at label boundaries, longest first ("a.b.c" -> "b.c", "c").
template <typename F>
void for_each_parent(std::string_view name, F&& f) {
  for (std::size_t dot = name.find('.'); dot != std::string_view::npos;
       dot = name.find('.', dot + 1)) {
    f(name.substr(dot + 1));
  }
}

}  // namespace

compile_result compile_policy(const policy_spec& spec) {
  // -- validate everything first; nothing is built from an invalid spec.
  if (spec.rules.size() > prefix_set::max_value) {
    compile_result res;
    res.error.code = compile_error_code::too_many_rules;
    res.error.message = "too many rules: " + std::to_string(spec.rules.size());
    return res;
  }
  std::unordered_set<std::string> ids;
  std::map<ip_prefix, rule_list> prefix_rules;                       // own rules per prefix
  name_map exact_rules, pattern_rules;  // own rules per name
  {
    std::size_t names = 0;
    for (const auto& r : spec.rules) names += r.domains.size();
    exact_rules.reserve(names);  // no rehash storms at a million names
  }
  for (std::size_t i = 0; i < spec.rules.size(); ++i) {
    const rule_spec& r = spec.rules[i];
    const auto index = static_cast<std::uint32_t>(i);
    if (r.id.empty()) return fail(compile_error_code::empty_rule_id, i, r, "", "empty rule id");
    if (!ids.insert(r.id).second) {
      return fail(compile_error_code::duplicate_rule_id, i, r, r.id, "duplicate rule id");
    }
    if (static_cast<unsigned>(r.act) >= static_cast<unsigned>(action::count)) {
      return fail(compile_error_code::bad_action, i, r, "", "unknown action");
    }
    if (r.act == action::notice && r.legal_basis.empty()) {
      return fail(compile_error_code::missing_legal_basis, i, r, "legal_basis",
                  "notice rules must name their legal basis");
    }
    if (r.act == action::throttle && (r.throttle.rate_bps == 0 || r.throttle.burst_bytes == 0)) {
      return fail(compile_error_code::bad_throttle, i, r, "throttle",
                  "throttle needs rate_bps > 0 and burst_bytes > 0");
    }
    if (r.not_before && r.not_after && *r.not_after <= *r.not_before) {
      return fail(compile_error_code::bad_window, i, r, "not_after",
                  "not_after must be later than not_before");
    }
    if (r.prefixes.empty() && r.domains.empty()) {
      return fail(compile_error_code::no_targets, i, r, "", "rule has no prefixes and no domains");
    }
    for (const auto& text : r.prefixes) {
      const prefix_result p = parse_prefix(text);
      if (!p) return fail(compile_error_code::bad_prefix, i, r, text, to_string(p.error));
      auto& list = prefix_rules[p.prefix];
      if (list.empty() || list.back() != index) list.push_back(index);
    }
    for (const auto& text : r.domains) {
      const rule_name n = normalize_rule_name(text);
      if (!n) return fail(compile_error_code::bad_domain, i, r, text, to_string(n.error));
      auto& list = (n.subdomain ? pattern_rules : exact_rules)[n.name];
      if (list.empty() || list.back() != index) list.push_back(index);
    }
  }

  // -- groups.
  group_table groups;
  std::vector<prefix_rule> prefix_entries;
  prefix_entries.reserve(prefix_rules.size());
  {
    // The map orders by (address, version, length); per family that is a pre-order walk of the
    // prefix tree, so a stack of open ancestors gives every covering prefix of each entry.
    for (int version : {4, 6}) {
      std::vector<std::pair<ip_prefix, rule_list>> stack;
      for (const auto& [prefix, own] : prefix_rules) {
        if (prefix.version != version) continue;
        while (!stack.empty() && !stack.back().first.covers(prefix)) stack.pop_back();
        rule_list full = own;
        if (!stack.empty()) merge_into(full, stack.back().second);
        prefix_entries.push_back({prefix, groups.intern(full)});
        stack.emplace_back(prefix, std::move(full));
      }
    }
  }
  std::vector<domain_rule> domain_entries;
  domain_entries.reserve(exact_rules.size() + pattern_rules.size());
  {
    auto add_parent_patterns = [&](std::string_view name, rule_list& full) {
      if (pattern_rules.empty()) return;
      for_each_parent(name, [&](std::string_view parent) {
        auto it = pattern_rules.find(parent);
        if (it != pattern_rules.end()) merge_into(full, it->second);
      });
    };
    for (const auto& [name, own] : exact_rules) {
      rule_list full = own;
      add_parent_patterns(name, full);  // "*.b.c" covers the exact "a.b.c"
      domain_entries.push_back({name, false, groups.intern(full)});
    }
    for (const auto& [name, own] : pattern_rules) {
      rule_list full = own;
      add_parent_patterns(name, full);  // anything under "b.c" is also under "c"
      domain_entries.push_back({name, true, groups.intern(full)});
    }
  }

  // -- build.
  std::unique_ptr<compiled_policy> policy(compile_access::make());
  compiled_policy& p = *policy;
  compile_access::header(p, spec, ruleset_sha256(spec));
  auto& rules = compile_access::rules(p);
  rules.reserve(spec.rules.size());
  for (const auto& r : spec.rules) {
    compiled_rule c;
    c.id = r.id;
    c.directive = r.directive;
    c.act = r.act;
    c.legal_basis = r.legal_basis;
    if (r.act == action::throttle) {
      c.rate_bps = r.throttle.rate_bps;
      c.burst_bytes = r.throttle.burst_bytes;
    }
    if (r.not_before) c.not_before = *r.not_before;
    if (r.not_after) c.not_after = *r.not_after;
    rules.push_back(std::move(c));
  }
  auto& flat = compile_access::group_rules(p);
  std::size_t total = 0;
  for (const auto& l : groups.lists()) total += l.size();
  flat.reserve(total);  // spans below point into it: no reallocation after this
  auto& group_spans = compile_access::groups(p);
  for (const auto& l : groups.lists()) {
    const std::size_t start = flat.size();
    flat.insert(flat.end(), l.begin(), l.end());
    group_spans.push_back({std::span<const std::uint32_t>(flat.data() + start, l.size())});
  }
  try {
    compile_access::prefixes(p) = prefix_set(prefix_entries);
    compile_access::domains(p) = domain_set(domain_entries);
  } catch (const std::exception& e) {
    compile_result res;
    res.error.code = compile_error_code::build_failed;
    res.error.message = e.what();
    return res;
  }
  compile_result res;
  res.policy = std::move(policy);
  return res;
}

}  // namespace sluice::match
