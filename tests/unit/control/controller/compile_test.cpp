// Directives -> fleet rules -> a node's policy text: app expansion, canonical entries, lifts,
// narrowing unblocks split in time, scope filtering, and `since` carried across revisions.
#include "control/fleet/compile.hpp"

#include <doctest/doctest.h>

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
