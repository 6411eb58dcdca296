#include <doctest/doctest.h>
#include <arpa/inet.h>

#include <algorithm>
#include <string>
#include <vector>

#include "dataplane/match/policy.hpp"

using namespace sluice::match;
using sluice::packet::ip_address;

namespace {

ip_address ip(const char* s) {
  ip_address a;
  if (inet_pton(AF_INET, s, a.bytes.data()) == 1) {
    a.version = 4;
  } else {
    REQUIRE(inet_pton(AF_INET6, s, a.bytes.data()) == 1);
    a.version = 6;
  }
  return a;
}

rule_spec rule(std::string id, action act, std::vector<std::string> prefixes,
               std::vector<std::string> domains = {}) {
  rule_spec r;
  r.id = std::move(id);
  r.directive = "D-" + r.id;
  r.act = act;
  r.prefixes = std::move(prefixes);
  r.domains = std::move(domains);
  if (act == action::notice) r.legal_basis = "Order 1";
  if (act == action::throttle) r.throttle = {64000, 16384};
  return r;
}

std::vector<std::string> rule_ids(const compiled_policy& p, std::optional<std::uint32_t> g) {
  std::vector<std::string> out;
  if (!g) return out;
  for (auto r : p.group(*g).rules) out.push_back(p.rule(r).id);
  return out;
}

using ids = std::vector<std::string>;

}  // namespace

TEST_CASE("compile_policy: errors name the rule and the item") {
  struct row {
    const char* what;
    rule_spec bad;
    compile_error_code code;
    std::string item;
  };
  rule_spec no_id = rule("", action::drop, {"10.0.0.0/8"});
  rule_spec dup = rule("ok", action::drop, {"10.0.0.0/8"});
  rule_spec notice = rule("n", action::notice, {"10.0.0.0/8"});
  notice.legal_basis.clear();
  rule_spec throttle = rule("t", action::throttle, {"10.0.0.0/8"});
  throttle.throttle.rate_bps = 0;
  rule_spec window = rule("w", action::drop, {"10.0.0.0/8"});
  window.not_before = 100;
  window.not_after = 100;
  rule_spec bad_action = rule("a", action::drop, {"10.0.0.0/8"});
  bad_action.act = action::count;
  const row rows[] = {
      {"empty id", no_id, compile_error_code::empty_rule_id, ""},
      {"duplicate id", dup, compile_error_code::duplicate_rule_id, "ok"},
      {"host bits", rule("h", action::drop, {"10.0.0.0/8", "10.0.0.1/8"}),
       compile_error_code::bad_prefix, "10.0.0.1/8"},
      {"bad prefix", rule("p", action::drop, {"10.0.0/8"}), compile_error_code::bad_prefix,
       "10.0.0/8"},
      {"bad domain", rule("d", action::drop, {}, {"t.me", "a.*.me"}),
       compile_error_code::bad_domain, "a.*.me"},
      {"no targets", rule("e", action::drop, {}), compile_error_code::no_targets, ""},
      {"notice without basis", notice, compile_error_code::missing_legal_basis, "legal_basis"},
      {"throttle without rate", throttle, compile_error_code::bad_throttle, "throttle"},
      {"empty window", window, compile_error_code::bad_window, "not_after"},
      {"bad action", bad_action, compile_error_code::bad_action, ""},
  };
  for (const auto& r : rows) {
    const std::string label = r.what;
    CAPTURE(label);
    policy_spec spec;
    spec.rules.push_back(rule("ok", action::drop, {"192.0.2.0/24"}));
    spec.rules.push_back(r.bad);
    const compile_result res = compile_policy(spec);
    CHECK_FALSE(res);
    CHECK(res.error.code == r.code);
    CHECK(res.error.rule_index == 1);
    CHECK(res.error.rule_id == r.bad.id);
    CHECK(res.error.item == r.item);
    CHECK(res.error.message.find("rule '" + r.bad.id + "'") != std::string::npos);
  }
}

TEST_CASE("compile_policy: overlapping prefixes carry every covering rule") {
  policy_spec spec;
  spec.revision = 42;
  spec.rules = {
      rule("block16", action::drop, {"10.1.0.0/16", "2001:db8::/32"}),
      rule("monitor24", action::monitor, {"10.1.2.0/24", "2001:db8:1::/48"}),
      rule("all", action::monitor, {"0.0.0.0/0"}),
      rule("host", action::reset, {"10.1.2.3/32", "10.1.0.0/16"}),
  };
  const auto res = compile_policy(spec);
  REQUIRE(res);
  const compiled_policy& p = *res.policy;
  CHECK(p.revision() == 42);
  CHECK(p.rule_count() == 4);
  struct row {
    const char* addr;
    ids rules;
  };
  const row rows[] = {
      {"10.1.2.3", {"block16", "monitor24", "all", "host"}},
      {"10.1.2.4", {"block16", "monitor24", "all", "host"}},
      {"10.1.3.1", {"block16", "all", "host"}},
      {"8.8.8.8", {"all"}},
      {"2001:db8:1::1", {"block16", "monitor24"}},
      {"2001:db8:2::1", {"block16"}},
      {"2001:db9::1", {}},
  };
  for (const auto& r : rows) {
    const std::string label = r.addr;
    CAPTURE(label);
    CHECK(rule_ids(p, p.match_ip(ip(r.addr))) == r.rules);
  }
  ip_address unset;
  CHECK_FALSE(p.match_ip(unset).has_value());
}

TEST_CASE("compile_policy: names carry the rules of every pattern above them") {
  policy_spec spec;
  spec.rules = {
      rule("tg", action::drop, {}, {"t.me", "*.t.me"}),
      rule("mon", action::monitor, {}, {"*.me"}),
      rule("web", action::notice, {}, {"web.t.me", "T.ME."}),
      rule("idn", action::reset, {}, {"пример.рф"}),
  };
  const auto res = compile_policy(spec);
  REQUIRE(res);
  const compiled_policy& p = *res.policy;
  struct row {
    const char* name;
    ids rules;
  };
  const row rows[] = {
      {"t.me", {"tg", "mon", "web"}},
      {"web.t.me", {"tg", "mon", "web"}},
      {"x.t.me", {"tg", "mon"}},
      {"at.me", {"mon"}},
      {"me", {}},
      {"t.me.evil.com", {}},
      {"XN--E1AFMKFD.xn--p1ai.", {"idn"}},
  };
  for (const auto& r : rows) {
    const std::string label = r.name;
    CAPTURE(label);
    CHECK(rule_ids(p, p.match_name(r.name)) == r.rules);
  }
}

TEST_CASE("decide: precedence and time windows") {
  policy_spec spec;
  rule_spec mon = rule("mon", action::monitor, {"10.0.0.0/8"});
  rule_spec thr_fast = rule("thr_fast", action::throttle, {"10.0.0.0/8"});
  thr_fast.throttle.rate_bps = 1000000;
  rule_spec thr_slow = rule("thr_slow", action::throttle, {"10.0.0.0/8"});
  thr_slow.throttle.rate_bps = 8000;
  rule_spec notice = rule("notice", action::notice, {"10.0.0.0/8"});
  notice.not_before = 1000;
  rule_spec reset = rule("reset", action::reset, {"10.0.0.0/8"});
  reset.not_before = 2000;
  reset.not_after = 3000;
  rule_spec drop = rule("drop", action::drop, {"10.0.0.0/8"});
  drop.not_before = 5000;
  rule_spec mon2 = rule("mon2", action::monitor, {"10.0.0.0/8"});
  mon2.not_after = 1500;
  spec.rules = {mon, thr_fast, thr_slow, notice, reset, drop, mon2};
  const auto res = compile_policy(spec);
  REQUIRE(res);
  const compiled_policy& p = *res.policy;
  const auto g = p.match_ip(ip("10.9.9.9"));
  REQUIRE(g);
  struct row {
    std::int64_t now;
    const char* winner;  // nullptr: forward
    action act;
    std::uint32_t monitors;
  };
  const row rows[] = {
      {0, "thr_slow", action::throttle, 2},     // lowest rate wins among throttles
      {999, "thr_slow", action::throttle, 2},
      {1000, "notice", action::notice, 2},      // not_before inclusive
      {1500, "notice", action::notice, 1},      // mon2's not_after is exclusive
      {2000, "reset", action::reset, 1},
      {2999, "reset", action::reset, 1},
      {3000, "notice", action::notice, 1},      // reset expired
      {5000, "drop", action::drop, 1},
  };
  for (const auto& r : rows) {
    CAPTURE(r.now);
    const verdict v = p.decide(p.group(*g), r.now);
    REQUIRE(v.enforce());
    CHECK(p.rule(v.rule).id == r.winner);
    CHECK(v.act == r.act);
    CHECK(v.monitors == r.monitors);
    std::uint32_t counted = 0;
    p.for_each_active_monitor(p.group(*g), r.now, [&](std::uint32_t i) {
      CHECK(p.rule(i).act == action::monitor);
      ++counted;
    });
    CHECK(counted == r.monitors);
  }
  CHECK(p.rule_active(4, 2000));
  CHECK_FALSE(p.rule_active(4, 1999));
  CHECK_FALSE(p.rule_active(4, 3000));
}

TEST_CASE("decide: monitor only, nothing active, ip and name groups merged") {
  policy_spec spec;
  rule_spec late = rule("late", action::drop, {"10.0.0.0/8"});
  late.not_before = 100;
  spec.rules = {
      rule("mon", action::monitor, {"10.0.0.0/8"}, {"t.me"}),
      late,
      rule("name_reset", action::reset, {}, {"t.me"}),
  };
  const auto res = compile_policy(spec);
  REQUIRE(res);
  const compiled_policy& p = *res.policy;
  const auto ipg = p.match_ip(ip("10.0.0.1"));
  const auto nameg = p.match_name("t.me");
  REQUIRE(ipg);
  REQUIRE(nameg);
  verdict v = p.decide(p.group(*ipg), 0);
  CHECK_FALSE(v.enforce());
  CHECK(v.monitors == 1);
  v = p.decide(ipg, nameg, 0);  // "mon" is in both groups and counts once
  CHECK(v.enforce());
  CHECK(p.rule(v.rule).id == "name_reset");
  CHECK(v.monitors == 1);
  v = p.decide(ipg, nameg, 100);
  CHECK(p.rule(v.rule).id == "late");
  CHECK(v.act == action::drop);
  v = p.decide(std::nullopt, std::nullopt, 100);
  CHECK_FALSE(v.enforce());
  CHECK(v.monitors == 0);
  v = p.decide(std::nullopt, nameg, 100);
  CHECK(p.rule(v.rule).id == "name_reset");
}

TEST_CASE("ruleset_sha256: stable, sensitive to rules, not to revision") {
  policy_spec a;
  a.revision = 1;
  a.rules = {rule("r1", action::drop, {"10.0.0.0/8"}, {"t.me"})};
  policy_spec b = a;
  b.revision = 2;
  b.generated_at = 12345;
  CHECK(ruleset_sha256(a) == ruleset_sha256(b));
  CHECK(ruleset_sha256(a).size() == 64);
  policy_spec c = a;
  c.rules[0].act = action::reset;
  CHECK(ruleset_sha256(a) != ruleset_sha256(c));
  policy_spec d = a;
  d.rules[0].domains = {"t.m", "e"};  // length prefixes keep list boundaries distinct
  policy_spec e = a;
  e.rules[0].domains = {"t.me"};
  CHECK(ruleset_sha256(a) == ruleset_sha256(e));
  CHECK(ruleset_sha256(d) != ruleset_sha256(a));
  const auto res = compile_policy(a);
  REQUIRE(res);
  CHECK(res.policy->ruleset_sha256() == ruleset_sha256(a));
  // Empty ruleset: SHA-256 of the fixed header, and compiles to a policy that matches nothing.
  policy_spec empty;
  const auto res2 = compile_policy(empty);
  REQUIRE(res2);
  CHECK_FALSE(res2.policy->match_ip(ip("10.0.0.1")).has_value());
  CHECK_FALSE(res2.policy->match_name("t.me").has_value());
}
