// compile_policy on names: rule lists of names given by several rules, patterns and exact names
// of the same base, covering patterns, blocks of many names, first-error-wins with names; and
// the borrowed-name domain_set constructor the compiler feeds.
#include <doctest/doctest.h>

#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "dataplane/match/domain_set.hpp"
#include "dataplane/match/policy.hpp"

using namespace sluice::match;

namespace {

rule_spec name_rule(std::string id, action act, std::vector<std::string> domains) {
  rule_spec r;
  r.id = std::move(id);
  r.act = act;
  r.domains = std::move(domains);
  if (act == action::notice) r.legal_basis = "Order 1";
  if (act == action::throttle) r.throttle = {64000, 16384};
  return r;
}

using ids = std::vector<std::string>;

ids rule_ids(const compiled_policy& p, std::string_view name) {
  ids out;
  const auto g = p.match_name(name);
  if (!g) return out;
  for (auto r : p.group(*g).rules) out.push_back(p.rule(r).id);
  return out;
}

std::size_t distinct_groups(const compiled_policy& p) {
  std::set<std::vector<std::uint32_t>> lists;
  for (std::uint32_t g = 0; g < p.group_count(); ++g) {
    lists.insert({p.group(g).rules.begin(), p.group(g).rules.end()});
  }
  return lists.size();
}

}  // namespace

TEST_CASE("compile_policy: names given by several rules, patterns and exact names of one base") {
  policy_spec spec;
  spec.rules = {
      // "t.me" three times (twice here, once with another spelling), and its pattern.
      name_rule("r0", action::monitor, {"t.me", "T.ME.", "*.t.me", "x.a.t.me"}),
      name_rule("r1", action::drop, {"*.me", " t.me "}),
      name_rule("r2", action::throttle, {"t.me", "*.a.t.me", "*.a.t.me"}),
      name_rule("r3", action::reset, {"*.t.me", "*.a.t.me", "only.exact"}),
      name_rule("r4", action::notice, {"*.only.exact", "deep.x.a.t.me"}),
  };
  const auto res = compile_policy(spec);
  REQUIRE(res);
  const compiled_policy& p = *res.policy;
  struct row {
    const char* name;
    ids rules;
  };
  const row rows[] = {
      {"t.me", {"r0", "r1", "r2"}},            // exact from 3 rules + "*.me"; not "*.t.me"
      {"y.t.me", {"r0", "r1", "r3"}},          // "*.t.me" (r0, r3) + "*.me"
      {"a.t.me", {"r0", "r1", "r3"}},          // "*.a.t.me" matches strictly below only
      {"b.a.t.me", {"r0", "r1", "r2", "r3"}},  // "*.a.t.me" (r2, r3) + "*.t.me" + "*.me"
      {"x.a.t.me", {"r0", "r1", "r2", "r3"}},  // exact (r0) + every pattern above
      {"deep.x.a.t.me", {"r0", "r1", "r2", "r3", "r4"}},
      {"z.x.a.t.me", {"r0", "r1", "r2", "r3"}},  // no pattern at x.a.t.me: "*.a.t.me"
      {"me", {}},
      {"other.me", {"r1"}},
      {"only.exact", {"r3"}},
      {"w.only.exact", {"r4"}},
      {"exact", {}},
  };
  for (const auto& r : rows) {
    const std::string label = r.name;
    CAPTURE(label);
    CHECK(rule_ids(p, r.name) == r.rules);
  }
  // t.me, x.a.t.me, only.exact, deep.x.a.t.me, me, a.t.me: a name's exact rule and its "*."
  // pattern share one entry.
  CHECK(p.domains().size() == 6);
  CHECK(distinct_groups(p) == p.group_count());  // every list interned once
}

TEST_CASE("compile_policy: names without any pattern, and one rule listing a name twice") {
  policy_spec spec;
  spec.rules = {
      name_rule("a", action::drop, {"x.org", "y.org", "x.org"}),
      name_rule("b", action::monitor, {"y.org", "z.org"}),
      name_rule("c", action::monitor, {"y.org", "Y.org"}),
  };
  const auto res = compile_policy(spec);
  REQUIRE(res);
  const compiled_policy& p = *res.policy;
  CHECK(rule_ids(p, "x.org") == ids{"a"});
  CHECK(rule_ids(p, "y.org") == ids{"a", "b", "c"});
  CHECK(rule_ids(p, "z.org") == ids{"b"});
  CHECK(rule_ids(p, "w.x.org").empty());
  CHECK(p.group_count() == 3);
}

TEST_CASE("compile_policy: thousands of names under patterns, across lookup blocks") {
  // More names than one block of parent lookups, with patterns at several depths, so covering
  // rules are found for names on both sides of every block boundary.
  policy_spec spec;
  rule_spec exact = name_rule("exact", action::monitor, {});
  rule_spec pat = name_rule("pat", action::drop, {"*.zone", "*.b.zone"});
  rule_spec odd = name_rule("odd", action::reset, {});
  for (int i = 0; i < 5000; ++i) {
    const std::string base = "n" + std::to_string(i) + (i % 2 ? ".b.zone" : ".a.zone");
    exact.domains.push_back(base);
    if (i % 7 == 0) odd.domains.push_back("*." + base);
  }
  spec.rules = {exact, pat, odd};
  const auto res = compile_policy(spec);
  REQUIRE(res);
  const compiled_policy& p = *res.policy;
  for (int i = 0; i < 5000; ++i) {
    const std::string base = "n" + std::to_string(i) + (i % 2 ? ".b.zone" : ".a.zone");
    CAPTURE(base);
    CHECK(rule_ids(p, base) == ids{"exact", "pat"});
    CHECK(rule_ids(p, "w." + base) == (i % 7 == 0 ? ids{"pat", "odd"} : ids{"pat"}));
  }
  CHECK(rule_ids(p, "a.zone") == ids{"pat"});
  CHECK(rule_ids(p, "zone").empty());
  CHECK(p.domains().size() == 5000 + 2);  // each "*.nI..." shares the entry of exact "nI..."
  CHECK(p.group_count() == 3);            // {exact, pat}, {pat}, {pat, odd}
}

TEST_CASE("compile_policy: with names, the first error in rule order wins") {
  struct row {
    const char* what;
    std::vector<rule_spec> rules;
    compile_error_code code;
    std::size_t index;
    std::string item;
  };
  rule_spec many = name_rule("many", action::drop, {});
  for (int i = 0; i < 3000; ++i) many.domains.push_back("h" + std::to_string(i) + ".example");
  rule_spec prefix_then_name = name_rule("pn", action::drop, {"ok.example", "a..b"});
  prefix_then_name.prefixes = {"10.0.0.1/8"};
  const row rows[] = {
      {"bad name after many good ones",
       {many, name_rule("b", action::drop, {"t.me", "*.t.me", "a.*.me", "-x.me"})},
       compile_error_code::bad_domain,
       1,
       "a.*.me"},
      {"earlier rule's bad name beats a later duplicate id",
       {name_rule("a", action::drop, {"t.me", "x..me"}), name_rule("a", action::drop, {"t.me"})},
       compile_error_code::bad_domain,
       0,
       "x..me"},
      {"prefixes are checked before names",
       {many, prefix_then_name},
       compile_error_code::bad_prefix,
       1,
       "10.0.0.1/8"},
      {"names repeated in good rules do not mask a later rule's error",
       {many, many, name_rule("e", action::drop, {})},
       compile_error_code::duplicate_rule_id,
       1,
       "many"},
  };
  for (const auto& r : rows) {
    const std::string label = r.what;
    CAPTURE(label);
    policy_spec spec;
    spec.rules = r.rules;
    const compile_result res = compile_policy(spec);
    CHECK_FALSE(res);
    CHECK(res.error.code == r.code);
    CHECK(res.error.rule_index == r.index);
    CHECK(res.error.item == r.item);
  }
}

TEST_CASE("domain_set: borrowed names build the same set as owned ones") {
  const std::vector<domain_rule> owned = {
      {"t.me", false, 1}, {"t.me", true, 2}, {"a.t.me", false, 3}, {"org", true, 4}};
  std::vector<domain_rule_ref> refs;
  for (const auto& r : owned) refs.push_back({r.name, r.subdomain, r.value});
  const domain_set a(owned);
  const domain_set b(refs);
  CHECK(a.size() == b.size());
  CHECK(a.capacity() == b.capacity());
  CHECK(a.memory_bytes() == b.memory_bytes());
  for (const char* q : {"t.me", "T.ME.", "x.t.me", "a.t.me", "b.a.t.me", "x.org", "org", "me"}) {
    CAPTURE(std::string(q));
    const auto ma = a.find(q);
    const auto mb = b.find(q);
    CHECK(ma.found == mb.found);
    CHECK(ma.kind == mb.kind);
    CHECK(ma.value == mb.value);
  }
  CHECK(b.find("x.t.me").value == 2);

  const std::vector<domain_rule_ref> dup = {{"t.me", false, 1}, {"t.me", false, 2}};
  CHECK_THROWS_AS(domain_set{dup}, std::invalid_argument);
  const domain_set combined(dup, [](std::uint32_t x, std::uint32_t y) { return x * 10 + y; });
  CHECK(combined.find("t.me").value == 12);  // combine(existing, incoming), in input order
  const std::vector<domain_rule_ref> empty_name = {{"", false, 1}};
  CHECK_THROWS_AS(domain_set{empty_name}, std::invalid_argument);
  const std::string long_name(254, 'a');
  const std::vector<domain_rule_ref> too_long = {{long_name, false, 1}};
  CHECK_THROWS_AS(domain_set{too_long}, std::invalid_argument);
}
