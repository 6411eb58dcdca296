// Directives -> fleet rules -> a node's policy text: app expansion, canonical entries, lifts,
// narrowing unblocks split in time, scope filtering, `since` carried across revisions, and shadow
// rules for directives awaiting approval (monitor rules split per target for impact reports).
#include "control/fleet/compile.hpp"

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <sstream>

namespace fleet = sluice::control::fleet;
namespace dir = sluice::control::directive;

namespace {

dir::directive make(const std::string& id, dir::directive_action a, std::int64_t nb,
                    dir::target_set t = {}, std::vector<std::string> lifts = {}) {
  dir::directive d;
  d.id = id;
  d.issuer = "moc";
  d.legal_basis = "Order 1";
  d.action = a;
  d.targets = std::move(t);
  d.lifts = std::move(lifts);
  d.scope.all = true;
  d.not_before = nb;
  return d;
}

fleet::app_table apps() {
  fleet::app_table t;
  t["telegram"] = {"telegram", "", {"91.108.4.0/22", "2001:067c:04e8::/48"}, {"T.me", "*.telegram.org"}};
  return t;
}

}  // namespace

TEST_CASE("apps expand into canonical, deduplicated entries; actions map to rules") {
  auto b = make("B", dir::directive_action::block, 100, {{"telegram"}, {"91.108.4.0/22"}, {"t.me"}});
  b.response = dir::block_response::drop;
  auto m = make("M", dir::directive_action::monitor, 100, {{}, {}, {"example.org"}});
  const auto r = fleet::compile_fleet({m, b}, apps(), false, nullptr, 5);
  REQUIRE(r);
  REQUIRE(r.policy->rules.size() == 2);
  const auto& rb = r.policy->rules[0];  // sorted by key: moc/B before moc/M
  CHECK(rb.id == "moc/B");
  CHECK(rb.act == sluice::match::action::drop);
  CHECK(rb.prefixes == std::vector<std::string>{"91.108.4.0/22", "2001:67c:4e8::/48"});
  CHECK(rb.domains == std::vector<std::string>{"t.me", "*.telegram.org"});
  CHECK(rb.since == 5);
  CHECK(r.policy->rules[1].act == sluice::match::action::monitor);

  auto missing = make("X", dir::directive_action::block, 100, {{"whatsapp"}, {}, {}});
  const auto bad = fleet::compile_fleet({missing}, apps(), false, nullptr, 5);
  CHECK_FALSE(bad);
  CHECK(bad.error.find("whatsapp") != std::string::npos);
}

TEST_CASE("lifts cut the window; narrowing unblocks split the rule in time, never widen") {
  const auto b = make("B", dir::directive_action::block, 100, {{}, {"10.0.0.0/8", "192.0.2.0/24"}, {"t.me"}});
  const auto lift = make("U", dir::directive_action::unblock, 500, {}, {"B"});
  auto r = fleet::compile_fleet({b, lift}, apps(), false, nullptr, 2);
  REQUIRE(r);
  REQUIRE(r.policy->rules.size() == 1);
  CHECK(r.policy->rules[0].not_after == 500);

  // Lifting 192.0.2.0/24 from t=300; 10.0.0.0/16 is not written in B, so it changes nothing.
  const auto narrow = make("N", dir::directive_action::unblock, 300, {{}, {"192.0.2.0/24", "10.0.0.0/16"}, {}});
  r = fleet::compile_fleet({b, narrow}, apps(), false, nullptr, 3);
  REQUIRE(r);
  REQUIRE(r.policy->rules.size() == 2);
  CHECK(r.policy->rules[0].id == "moc/B#1");
  CHECK(r.policy->rules[0].not_after == 300);
  CHECK(r.policy->rules[0].prefixes.size() == 2);
  CHECK(r.policy->rules[1].id == "moc/B#2");
  CHECK(r.policy->rules[1].not_before == 300);
  CHECK(r.policy->rules[1].prefixes == std::vector<std::string>{"10.0.0.0/8"});
  CHECK(r.policy->rules[1].domains == std::vector<std::string>{"t.me"});
}

TEST_CASE("scope decides which nodes get a rule; the policy text is what nodes load") {
  auto north = make("N", dir::directive_action::block, 100, {{}, {}, {"t.me"}});
  north.scope = {};
  north.scope.labels = {{"region", "north"}};
  const auto all = make("A", dir::directive_action::block, 100, {{}, {}, {"telegram.org"}});
  const auto r = fleet::compile_fleet({north, all}, apps(), false, nullptr, 7);
  REQUIRE(r);
  CHECK(fleet::rules_for(*r.policy, {{"region", "north"}}).size() == 2);
  CHECK(fleet::rules_for(*r.policy, {{"region", "south"}}).size() == 1);
  const std::string text = fleet::node_policy_text(*r.policy, {{"region", "south"}}, 7, 1795867200);
  std::istringstream in(text);
  const auto spec = sluice::match::load_policy(in);
  REQUIRE_MESSAGE(spec, spec.error.text());
  CHECK(spec.spec->revision == 7);
  REQUIRE(spec.spec->rules.size() == 1);
  CHECK(spec.spec->rules[0].id == "moc/A");
  CHECK(spec.spec->rules[0].legal_basis == "Order 1");

  const auto stopped = fleet::compile_fleet({north, all}, apps(), true, nullptr, 8);
  CHECK(stopped.policy->rules.empty());
  CHECK(stopped.policy->emergency_stop);
}

TEST_CASE("unchanged rules keep their revision; JSON round trip is exact") {
  const auto a = make("A", dir::directive_action::block, 100, {{}, {"10.0.0.0/8"}, {}});
  const auto b = make("B", dir::directive_action::block, 100, {{}, {"192.0.2.0/24"}, {}});
  const auto first = fleet::compile_fleet({a}, apps(), false, nullptr, 2);
  const auto second = fleet::compile_fleet({a, b}, apps(), false, &*first.policy, 3);
  REQUIRE(second);
  CHECK(second.policy->rules[0].since == 2);
  CHECK(second.policy->rules[1].since == 3);
  const auto back = fleet::fleet_policy::from_json(second.policy->to_json());
  REQUIRE(back);
  CHECK(back->same_as(*second.policy));
  CHECK(back->rules[1].since == 3);
  CHECK_FALSE(fleet::fleet_policy::from_json("{\"rules\": 5}"));
  CHECK(fleet::canonical_prefix("2001:0db8::/32") == "2001:db8::/32");
  CHECK_FALSE(fleet::canonical_prefix("10.0.0.0/33"));
  CHECK_FALSE(fleet::canonical_prefix("10.0.0.0"));
}

TEST_CASE("directives awaiting approval compile to shadow monitor rules, one per target") {
  auto b = make("B", dir::directive_action::block, 100, {{"telegram"}, {"10.0.0.0/8"}, {"t.me"}});
  b.not_after = 900;
  b.scope = {};
  b.scope.labels = {{"region", "north"}};
  auto t = make("T", dir::directive_action::throttle, 100, {{}, {}, {"example.org"}});
  t.throttle = dir::throttle_spec{64000, 16384};
  const auto u = make("U", dir::directive_action::unblock, 100, {}, {"A"});
  const auto pending_monitor = make("P", dir::directive_action::monitor, 100, {{}, {"192.0.2.0/24"}, {}});
  const auto a = make("A", dir::directive_action::block, 100, {{}, {"198.51.100.0/24"}, {}});
  auto m = make("M", dir::directive_action::monitor, 100, {{}, {"192.0.2.0/24"}, {}});
  const auto r = fleet::compile_fleet({m, a}, apps(), false, nullptr, 4,
                                      {t, b, u, pending_monitor, /*also effective*/ a});
  REQUIRE(r);
  std::vector<std::string> ids;
  for (const auto& rule : r.policy->rules) ids.push_back(rule.id);
  CHECK(ids == std::vector<std::string>{"moc/A", "moc/B@91.108.4.0/22", "moc/B@2001:67c:4e8::/48",
                                        "moc/B@10.0.0.0/8", "moc/B@names", "moc/M@192.0.2.0/24",
                                        "moc/T@names"});
  const auto& rules = r.policy->rules;
  CHECK_FALSE(rules[0].shadow);
  CHECK(rules[0].act == sluice::match::action::reset);
  CHECK(rules[0].prefixes == std::vector<std::string>{"198.51.100.0/24"});  // enforcing: unsplit
  for (std::size_t i = 1; i <= 4; ++i) {
    CAPTURE(rules[i].id);
    CHECK(rules[i].shadow);
    CHECK(rules[i].directive == "moc/B");
    CHECK(rules[i].act == sluice::match::action::monitor);
    CHECK_FALSE(rules[i].not_before);
    CHECK(rules[i].not_after == 900);
    CHECK(rules[i].scope.labels == std::map<std::string, std::string>{{"region", "north"}});
    CHECK(rules[i].legal_basis == "Order 1");
  }
  CHECK(rules[1].prefixes == std::vector<std::string>{"91.108.4.0/22"});
  CHECK(rules[1].domains.empty());
  CHECK(rules[4].prefixes.empty());
  CHECK(rules[4].domains == std::vector<std::string>{"t.me", "*.telegram.org"});
  // An approved monitor directive is split the same way but is no shadow and keeps its window.
  CHECK_FALSE(rules[5].shadow);
  CHECK(rules[5].not_before == 100);
  CHECK(rules[6].shadow);
  CHECK(rules[6].act == sluice::match::action::monitor);
  CHECK(rules[6].throttle.rate_bps == 0);  // a monitor rule carries no throttle
  CHECK(rules[6].domains == std::vector<std::string>{"example.org"});

  // Nodes load these ids: a north node gets every rule, its ruleset hash is stable, and the
  // name-only rules compile into the dataplane's structures.
  const std::string text = fleet::node_policy_text(*r.policy, {{"region", "north"}}, 4, 1795867200);
  std::istringstream in(text);
  const auto spec = sluice::match::load_policy(in);
  REQUIRE_MESSAGE(spec, (spec.error.text() + "\n" + text));
  REQUIRE(spec.spec->rules.size() == 7);
  CHECK(spec.spec->rules[4].id == "moc/B@names");
  CHECK(spec.spec->rules[4].directive == "moc/B");
  CHECK(spec.spec->rules[4].act == sluice::match::action::monitor);
  CHECK_FALSE(spec.spec->rules[4].not_before);
  CHECK(spec.spec->rules[4].not_after == 900);
  const std::string sha = sluice::match::ruleset_sha256(*spec.spec);
  CHECK(sha.size() == 64);
  std::istringstream again(fleet::node_policy_text(*r.policy, {{"region", "north"}}, 5, 1795870000));
  CHECK(sluice::match::ruleset_sha256(*sluice::match::load_policy(again).spec) == sha);
  auto names_only = *spec.spec;
  std::erase_if(names_only.rules, [](const auto& rule) { return !rule.prefixes.empty(); });
  REQUIRE(names_only.rules.size() == 2);
  const auto compiled = sluice::match::compile_policy(names_only);
  REQUIRE_MESSAGE(compiled, sluice::match::to_string(compiled.error.code));
  CHECK(compiled.policy->rule(0).id == "moc/B@names");
  // A south node is out of B's scope.
  CHECK(fleet::rules_for(*r.policy, {{"region", "south"}}).size() == 3);

  // The emergency stop leaves nothing, shadow rules included.
  const auto stopped = fleet::compile_fleet({m, a}, apps(), true, nullptr, 5, {b, t});
  REQUIRE(stopped);
  CHECK(stopped.policy->rules.empty());

  // A pending directive naming an app that is not loaded is not shadowed and stalls nothing.
  const auto no_apps = fleet::compile_fleet({a}, {}, false, nullptr, 6, {b});
  REQUIRE(no_apps);
  CHECK(no_apps.policy->rules.size() == 1);
}

// Issue 16: a national blocklist awaiting approval. Every per-prefix part used to carry a copy
// of all the directive's names and prefixes (P * (P + D) strings), each new rule was compared
// with every previous one, and a narrowing unblock scanned its list for every entry; at this
// size that was minutes and gigabytes, at 100,000 x 1,000,000 it never finished.
TEST_CASE("a big directive: shadow parts, since and narrowing stay linear") {
  dir::target_set big;
  for (int i = 0; i < 6000; ++i)
    big.prefixes.push_back("10." + std::to_string(i / 256) + "." + std::to_string(i % 256) + ".0/24");
  for (int i = 0; i < 60000; ++i) big.domains.push_back("n" + std::to_string(i) + ".example.com");
  const auto b = make("BIG", dir::directive_action::block, 100, big);
  const auto first = fleet::compile_fleet({}, apps(), false, nullptr, 2, {b});
  REQUIRE(first);
  REQUIRE(first.policy->rules.size() == 6001);
  for (std::size_t i = 0; i < 6000; ++i) {
    CHECK(first.policy->rules[i].id == "moc/BIG@" + big.prefixes[i]);
    CHECK(first.policy->rules[i].prefixes == std::vector<std::string>{big.prefixes[i]});
    CHECK(first.policy->rules[i].domains.empty());
  }
  CHECK(first.policy->rules[6000].id == "moc/BIG@names");
  CHECK(first.policy->rules[6000].prefixes.empty());
  CHECK(first.policy->rules[6000].domains == big.domains);

  // Recompiled (another directive arrives): every shadow part keeps its revision.
  const auto m = make("M", dir::directive_action::monitor, 100, {{}, {"192.0.2.0/24"}, {}});
  const auto second = fleet::compile_fleet({m}, apps(), false, &*first.policy, 3, {b});
  REQUIRE(second);
  REQUIRE(second.policy->rules.size() == 6002);
  for (const auto& r : second.policy->rules) CHECK(r.since == (r.directive == "moc/M" ? 3 : 2));

  // Approved, then narrowed by an unblock of half its names from t = 200.
  auto narrow = make("U", dir::directive_action::unblock, 200);
  for (int i = 0; i < 60000; i += 2) narrow.targets.domains.push_back(big.domains[i]);
  const auto third = fleet::compile_fleet({b, narrow}, apps(), false, &*second.policy, 4);
  REQUIRE(third);
  REQUIRE(third.policy->rules.size() == 2);
  CHECK(third.policy->rules[0].domains.size() == 60000);
  CHECK(third.policy->rules[0].not_after == 200);
  CHECK(third.policy->rules[1].domains.size() == 30000);
  CHECK(third.policy->rules[1].domains.front() == big.domains[1]);
  CHECK(third.policy->rules[1].not_before == 200);
}

TEST_CASE("monitor rules split in time and per target; shadow survives JSON, absent = false") {
  const auto m = make("M", dir::directive_action::monitor, 100, {{}, {"10.0.0.0/8", "192.0.2.0/24"}, {}});
  const auto narrow = make("N", dir::directive_action::unblock, 300, {{}, {"192.0.2.0/24"}, {}});
  auto b = make("B", dir::directive_action::block, 100, {{}, {"203.0.113.0/24"}, {}});
  const auto r = fleet::compile_fleet({m, narrow}, apps(), false, nullptr, 2, {b});
  REQUIRE(r);
  std::vector<std::string> ids;
  for (const auto& rule : r.policy->rules) ids.push_back(rule.id);
  CHECK(ids == std::vector<std::string>{"moc/B@203.0.113.0/24", "moc/M#1@10.0.0.0/8",
                                        "moc/M#1@192.0.2.0/24", "moc/M#2@10.0.0.0/8"});
  CHECK(r.policy->rules[1].not_after == 300);
  CHECK(r.policy->rules[3].not_before == 300);

  const std::string text = r.policy->to_json();
  const auto back = fleet::fleet_policy::from_json(text);
  REQUIRE(back);
  CHECK(back->same_as(*r.policy));
  CHECK(back->rules[0].shadow);
  CHECK_FALSE(back->rules[1].shadow);
  // Only shadow rules carry the key, so policies stored before issue 8 read back unchanged.
  const auto j = nlohmann::json::parse(text);
  CHECK(j["rules"][0]["shadow"] == true);
  CHECK_FALSE(j["rules"][1].contains("shadow"));

  fleet::fleet_policy flipped = *back;
  flipped.rules[0].shadow = false;
  CHECK_FALSE(flipped.same_as(*back));
  const auto again = fleet::compile_fleet({m, narrow}, apps(), false, &*r.policy, 3, {b});
  REQUIRE(again);
  for (const auto& rule : again.policy->rules) CHECK(rule.since == 2);
}
