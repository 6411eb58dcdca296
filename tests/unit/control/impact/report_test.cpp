// Impact report bodies (every refusal, as a table) and the fleet-wide per-directive view:
// shares, summing across nodes and windows, the window filter, rule attribution by id.
#include "control/impact/report.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

namespace impact = sluice::control::impact;
namespace fleet = sluice::control::fleet;
namespace dir = sluice::control::directive;
namespace store = sluice::control::store;
using json = nlohmann::json;

namespace {

// A valid body with one rule; tests patch it to make each error.
json valid_body() {
  return json::parse(R"({"window_start": 1000, "window_end": 2000, "revision": 7,
    "rules": [{"rule": "moc/X@149.154.160.0/20", "directive": "moc/X", "flows": 45,
               "unnamed": 5, "other": 0,
               "names": [{"name": "telegram.org", "flows": 30, "error": 0},
                         {"name": "drive.example.com", "flows": 10, "error": 2}]}]})");
}

std::string with(const std::string& pointer, const json& value) {
  json b = valid_body();
  b[json::json_pointer(pointer)] = value;
  return b.dump();
}

std::string without(const std::string& parent, const std::string& key) {
  json b = valid_body();
  b[json::json_pointer(parent)].erase(key);
  return b.dump();
}

dir::directive make_directive(const std::string& id, dir::target_set t) {
  dir::directive d;
  d.issuer = "moc";
  d.id = id;
  d.action = dir::directive_action::block;
  d.targets = std::move(t);
  d.scope.all = true;
  d.not_before = 100;
  return d;
}

fleet::app_table apps() {
  fleet::app_table t;
  t["telegram"] = {"telegram", "", {"91.108.4.0/22"}, {"t.me", "*.telegram.org"}};
  return t;
}

struct named {
  std::string name;
  std::uint64_t flows;
};

json rule(const std::string& id, const std::string& directive, std::vector<named> names,
          std::uint64_t unnamed, std::uint64_t other = 0) {
  json j{{"rule", id}, {"directive", directive}, {"unnamed", unnamed}, {"other", other}};
  std::uint64_t flows = unnamed + other;
  j["names"] = json::array();
  for (const auto& n : names) {
    j["names"].push_back({{"name", n.name}, {"flows", n.flows}, {"error", 0}});
    flows += n.flows;
  }
  j["flows"] = flows;
  return j;
}

store::impact_record record(const std::string& node, std::int64_t start, std::int64_t end,
                            std::vector<json> rules) {
  json b{{"window_start", start}, {"window_end", end}, {"revision", 3}, {"rules", rules}};
  return {node, start, end, 3, b.dump()};
}

const json& prefix_row(const json& report, const std::string& prefix) {
  for (const auto& p : report.at("prefixes"))
    if (p.at("prefix") == prefix) return p;
  FAIL("no row for " << prefix);
  static const json none;
  return none;
}

}  // namespace

TEST_CASE("parse_impact_body refuses every malformed body with a precise reason") {
  json many_rules = valid_body();
  for (int i = 1; i <= 4096; ++i)  // small rules, so the body stays under 1 MiB
    many_rules["rules"].push_back({{"rule", std::to_string(i)}, {"directive", ""}, {"flows", 0},
                                   {"unnamed", 0}, {"other", 0}, {"names", json::array()}});
  REQUIRE(many_rules.dump().size() < impact::max_body_bytes);
  json many_names = valid_body();
  many_names["rules"][0]["names"] = json::array();
  for (int i = 0; i < 65; ++i)
    many_names["rules"][0]["names"].push_back(
        {{"name", "n" + std::to_string(i) + ".example"}, {"flows", 1}, {"error", 0}});
  json twice = valid_body();
  twice["rules"].push_back(twice["rules"][0]);

  struct row {
    const char* what;
    std::string body;
    std::string error;
  };
  const std::vector<row> rows{
      {"not JSON", "{\"window_start\": ", "body is not valid JSON"},
      {"not an object", "[1, 2]", "body is not a JSON object"},
      {"too large", std::string(impact::max_body_bytes + 1, ' '),
       "body is larger than 1048576 bytes"},
      {"missing window_start", without("", "window_start"), "window_start: missing"},
      {"negative window_end", with("/window_end", -5),
       "window_end: must be a non-negative integer"},
      {"float revision", with("/revision", 1.5), "revision: must be a non-negative integer"},
      {"string window", with("/window_start", "1000"),
       "window_start: must be a non-negative integer"},
      {"inverted window", with("/window_start", 3000), "window_start: is after window_end"},
      {"rules not an array", with("/rules", json::object()), "rules: must be an array"},
      {"too many rules", many_rules.dump(), "rules: more than 4096 rules"},
      {"rule not an object", with("/rules/0", 5), "rules[0]: must be an object"},
      {"empty rule id", with("/rules/0/rule", ""),
       "rules[0].rule: must be 1..512 printable characters without spaces"},
      {"rule id with a space", with("/rules/0/rule", "moc/X @names"),
       "rules[0].rule: must be 1..512 printable characters without spaces"},
      {"rule id twice", twice.dump(), "rules[1].rule: 'moc/X@149.154.160.0/20' is given twice"},
      {"directive without slash", with("/rules/0/directive", "moc"),
       "rules[0].directive: must be empty or ISSUER/ID"},
      {"directive not a string", with("/rules/0/directive", 3),
       "rules[0].directive: must be a string"},
      {"missing unnamed", without("/rules/0", "unnamed"), "rules[0].unnamed: missing"},
      {"negative other", with("/rules/0/other", -1),
       "rules[0].other: must be a non-negative integer"},
      {"count too large", with("/rules/0/flows", impact::max_count + 1),
       "rules[0].flows: is larger than 1099511627776"},
      {"names not an array", with("/rules/0/names", "telegram.org"),
       "rules[0].names: must be an array"},
      {"too many names", many_names.dump(), "rules[0].names: more than 64 names"},
      {"name entry not an object", with("/rules/0/names/1", "x"),
       "rules[0].names[1]: must be an object"},
      {"name missing error", without("/rules/0/names/0", "error"),
       "rules[0].names[0].error: missing"},
      {"negative name flows", with("/rules/0/names/0/flows", -30),
       "rules[0].names[0].flows: must be a non-negative integer"},
      {"error above flows", with("/rules/0/names/1/error", 11),
       "rules[0].names[1].error: is larger than flows"},
  };
  const std::string bad_name =
      "rules[0].names[0].name: not a valid DNS name (labels of 1..63 [A-Za-z0-9_-], at most 253 "
      "bytes)";
  const std::vector<std::string> bad_names{"", ".", "a..b", ".a", "te legram.org", "t\xc3\xa9.org",
                                           "*.telegram.org", std::string(64, 'a') + ".org",
                                           std::string(250, 'a') + ".org"};
  for (const auto& r : rows) {
    CAPTURE(r.what);
    std::string error;
    CHECK_FALSE(impact::parse_impact_body(r.body, error));
    CHECK(error == r.error);
  }
  for (const auto& n : bad_names) {
    CAPTURE(n);
    std::string error;
    CHECK_FALSE(impact::parse_impact_body(with("/rules/0/names/0/name", n), error));
    CHECK(error == bad_name);
  }
}

TEST_CASE("parse_impact_body accepts a valid body, folds names and merges case variants") {
  json b = valid_body();
  b["rules"][0]["names"].push_back({{"name", "Telegram.ORG."}, {"flows", 4}, {"error", 1}});
  b["rules"][0]["directive"] = "";
  b["extension"] = "ignored";  // newer agents may add keys
  std::string error;
  const auto p = impact::parse_impact_body(b.dump(), error);
  REQUIRE_MESSAGE(p, error);
  CHECK(p->window_start == 1000);
  CHECK(p->window_end == 2000);
  CHECK(p->revision == 7);
  REQUIRE(p->rules.size() == 1);
  const auto& r = p->rules[0];
  CHECK(r.rule == "moc/X@149.154.160.0/20");
  CHECK(r.directive.empty());
  CHECK(r.flows == 45);
  CHECK(r.unnamed == 5);
  REQUIRE(r.names.size() == 2);
  CHECK(r.names[0].name == "telegram.org");
  CHECK(r.names[0].flows == 34);
  CHECK(r.names[0].error == 1);
  CHECK(r.names[1].name == "drive.example.com");
  CHECK(r.names[1].error == 2);

  // Exactly at the limits: 253-byte name, 64 names.
  const std::string longest = std::string(63, 'a') + "." + std::string(63, 'b') + "." +
                              std::string(63, 'c') + "." + std::string(61, 'd');
  REQUIRE(longest.size() == 253);
  CHECK(impact::parse_impact_body(with("/rules/0/names/0/name", longest), error));
  CHECK(impact::parse_impact_body(with("/rules", json::array()), error));
}

TEST_CASE("impact_report: shares per prefix, summed over nodes and windows") {
  const auto d = make_directive("X", {{}, {"149.154.160.0/20", "2001:db8::/32"}, {"telegram.org"}});
  const std::string p = "moc/X@149.154.160.0/20";
  std::vector<store::impact_record> recs{
      record("node-a", 1000, 2000,
             {rule(p, "moc/X", {{"telegram.org", 20}, {"drive.example.com", 6}}, 3),
              // another directive's rule on the same prefix: ignored
              rule("moc/Y@149.154.160.0/20", "moc/Y", {{"drive.example.com", 900}}, 900)}),
      record("node-a", 2000, 3000, {rule(p, "moc/X", {{"Telegram.org", 5}}, 0)}),
      record("node-b", 1500, 2500,
             {rule(p, "moc/X", {{"telegram.org", 5}, {"drive.example.com", 4}}, 2)}),
      // outside [1000, 3000]: ignored
      record("node-c", 2500, 3500, {rule(p, "moc/X", {{"drive.example.com", 1000}}, 0)}),
      record("node-c", 500, 1500, {rule(p, "moc/X", {{"drive.example.com", 1000}}, 0)}),
      // a body that does not parse: ignored, not counted
      {"node-d", 1000, 2000, 3, "{\"rules\": 1}"},
      // only another directive's rules (this one's had not reached node-e): not counted
      record("node-e", 2000, 3000, {rule("moc/Y@149.154.160.0/20", "moc/Y", {{"x.org", 1}}, 0)}),
  };
  const json r = impact::impact_report(d, apps(), recs, 1000, 3000, 10);
  CHECK(r["directive"] == "moc/X");
  CHECK(r["since"] == 1000);
  CHECK(r["until"] == 3000);
  CHECK(r["reports"] == 3);
  CHECK(r["nodes"] == 2);
  CHECK(r["newest_window_end"] == 3000);
  REQUIRE(r["prefixes"].size() == 2);  // both targets, the hit one first
  const json& row = r["prefixes"][0];
  CHECK(row["prefix"] == "149.154.160.0/20");
  CHECK(row["flows"] == 45);
  CHECK(row["unnamed"] == 5);
  CHECK(row["own_flows"] == 30);
  CHECK(row["own_share"].get<double>() == doctest::Approx(0.6667).epsilon(1e-9));
  CHECK(row["unnamed_share"].get<double>() == doctest::Approx(0.1111).epsilon(1e-9));
  CHECK(row["other_flows"] == 10);
  REQUIRE(row["top_other"].size() == 1);
  CHECK(row["top_other"][0]["name"] == "drive.example.com");
  CHECK(row["top_other"][0]["flows"] == 10);
  CHECK(row["top_other"][0]["share"].get<double>() == doctest::Approx(0.2222).epsilon(1e-9));
  const json& quiet = r["prefixes"][1];
  CHECK(quiet["prefix"] == "2001:db8::/32");
  CHECK(quiet["flows"] == 0);
  CHECK(quiet["own_share"] == 0.0);
  CHECK(quiet["top_other"].empty());
  REQUIRE(r["domains"].size() == 1);
  CHECK(r["domains"][0]["domain"] == "telegram.org");
  CHECK(r["domains"][0]["flows"] == 0);  // prefix rules do not feed the domain view
  CHECK_FALSE(r.contains("warnings"));

  const json empty = impact::impact_report(d, apps(), recs, 5000, 6000, 10);
  CHECK(empty["reports"] == 0);
  CHECK(empty["nodes"] == 0);
  CHECK(empty["newest_window_end"] == 0);
  CHECK(empty["prefixes"][0]["flows"] == 0);
}

TEST_CASE("impact_report: own names match like the dataplane; attribution by rule id") {
  // Apps expand: 91.108.4.0/22, t.me, *.telegram.org; own domain telegram.org.
  const auto d = make_directive("X", {{"telegram"}, {}, {"telegram.org"}});
  std::vector<store::impact_record> recs{record(
      "n1", 0, 100,
      {rule("moc/X@91.108.4.0/22", "moc/X",
            {{"web.telegram.org", 8}, {"telegram.org", 4}, {"t.me", 2}, {"at.me", 3},
             {"telegram.org.evil.com", 3}, {"a.t.me", 1}, {"xtelegram.org", 2}},
            0, 7),
       // no directive field: attributed by the id, split part "#2" included
       rule("moc/X#2@names", "", {{"telegram.org", 6}, {"a.b.telegram.org", 1}, {"t.me", 9}}, 0),
       // unsuffixed (an enforcing rule): pseudo-prefix "*" and the domain view
       rule("moc/X", "moc/X", {{"t.me", 1}, {"example.net", 1}}, 2),
       // id names another directive, no directive field: ignored
       rule("moc/XY@91.108.4.0/22", "", {{"example.com", 50}}, 50)})};
  const json r = impact::impact_report(d, apps(), recs, 0, 100, 2);
  REQUIRE(r["prefixes"].size() == 2);
  const json& p = prefix_row(r, "91.108.4.0/22");
  CHECK(p["flows"] == 30);
  CHECK(p["own_flows"] == 14);  // web.telegram.org 8, telegram.org 4, t.me 2
  CHECK(p["other_flows"] == 16);
  REQUIRE(p["top_other"].size() == 2);  // top = 2, ties by name
  CHECK(p["top_other"][0]["name"] == "at.me");
  CHECK(p["top_other"][1]["name"] == "telegram.org.evil.com");
  CHECK(r["prefixes"][0]["prefix"] == "91.108.4.0/22");  // more flows than "*"
  const json& star = prefix_row(r, "*");
  CHECK(star["flows"] == 4);
  CHECK(star["own_flows"] == 1);
  CHECK(star["unnamed_share"].get<double>() == doctest::Approx(0.5));

  // Domains in target order: t.me, *.telegram.org (app), then telegram.org.
  REQUIRE(r["domains"].size() == 3);
  CHECK(r["domains"][0]["domain"] == "t.me");
  CHECK(r["domains"][0]["flows"] == 10);  // 9 (@names) + 1 ("*"); a.t.me matches nothing
  CHECK(r["domains"][1]["domain"] == "*.telegram.org");
  CHECK(r["domains"][1]["flows"] == 1);
  CHECK(r["domains"][1]["names"] == json::parse(R"([{"name":"a.b.telegram.org","flows":1}])"));
  CHECK(r["domains"][2]["domain"] == "telegram.org");
  CHECK(r["domains"][2]["flows"] == 6);

  // A profile that is not loaded: reported, the rest still works.
  const json w = impact::impact_report(d, {}, recs, 0, 100, 2);
  REQUIRE(w.contains("warnings"));
  CHECK(w["warnings"][0].get<std::string>().find("telegram") != std::string::npos);
  CHECK(prefix_row(w, "91.108.4.0/22")["own_flows"] == 4);  // only telegram.org is own now
}
