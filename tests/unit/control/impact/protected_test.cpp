// Protected ranges and names: validation, and which directive targets overlap them (address
// containment both ways per family, label-boundary parents, app targets named in the message).
#include "control/impact/protected.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

namespace impact = sluice::control::impact;
namespace fleet = sluice::control::fleet;
namespace dir = sluice::control::directive;

namespace {

dir::directive make_directive(dir::target_set t) {
  dir::directive d;
  d.issuer = "moc";
  d.id = "X";
  d.targets = std::move(t);
  d.scope.all = true;
  return d;
}

}  // namespace

TEST_CASE("validate_protected names the entry and item it refuses") {
  struct row {
    const char* what;
    impact::protected_set set;
    std::string error;  // "" = valid
  };
  const std::vector<row> rows{
      {"valid", {{{"cdn-x", {"149.154.167.0/24", "2001:DB8::/32"}, {"Drive.Google.com."}}}}, ""},
      {"empty set", {}, ""},
      {"empty name", {{{"", {"10.0.0.0/8"}, {}}}}, "protected[0]: name is empty"},
      {"name twice", {{{"a", {"10.0.0.0/8"}, {}}, {"a", {}, {"x.org"}}}},
       "protected 'a': name given twice"},
      {"nothing protected", {{{"a", {}, {}}}}, "protected 'a': has no prefixes and no domains"},
      {"bad prefix", {{{"a", {"10.0.0.0/33"}, {}}}}, "protected 'a': invalid prefix '10.0.0.0/33'"},
      {"no length", {{{"a", {"10.0.0.0"}, {}}}}, "protected 'a': invalid prefix '10.0.0.0'"},
      {"host bits v4", {{{"a", {"10.0.0.1/8"}, {}}}},
       "protected 'a': prefix '10.0.0.1/8' has host bits set"},
      {"host bits v6", {{{"a", {"2001:db8::1/64"}, {}}}},
       "protected 'a': prefix '2001:db8::1/64' has host bits set"},
      {"bad domain", {{{"a", {}, {"a..b"}}}}, "protected 'a': invalid domain 'a..b' (empty_label)"},
      {"misplaced wildcard", {{{"a", {}, {"a.*.b"}}}},
       "protected 'a': invalid domain 'a.*.b' (misplaced_wildcard)"},
  };
  for (const auto& r : rows) {
    CAPTURE(r.what);
    std::string error;
    CHECK(impact::validate_protected(r.set, error) == r.error.empty());
    CHECK(error == r.error);
  }
}

TEST_CASE("find_overlaps: address containment both ways, per family") {
  const impact::protected_set p{{
      {"cdn-x", {"149.154.167.0/24"}, {}},
      {"wide", {"149.0.0.0/8"}, {}},
      {"v6", {"2001:67c:4e8:f004::/64"}, {}},
      {"v6-wide", {"2001:600::/23"}, {}},
      {"elsewhere", {"10.0.0.0/8", "2001:db8::/32"}, {}},
  }};
  struct row {
    const char* what;
    std::string target;
    std::vector<std::string> entries;  // protected entries it overlaps, in order
  };
  const std::vector<row> rows{
      {"v4 target contains protected", "149.154.160.0/20", {"cdn-x", "wide"}},
      {"v4 protected contains target", "149.154.167.128/25", {"cdn-x", "wide"}},
      {"v4 equal", "149.154.167.0/24", {"cdn-x", "wide"}},
      {"v4 disjoint", "91.108.4.0/22", {}},
      {"v4 adjacent", "149.154.168.0/24", {"wide"}},
      {"v6 target contains protected", "2001:67c:4e8::/48", {"v6", "v6-wide"}},
      {"v6 protected contains target", "2001:67c:4e8:f004::/96", {"v6", "v6-wide"}},
      {"v6 disjoint", "2a0a:f280::/32", {}},
      {"v4 default route never meets v6", "0.0.0.0/0", {"cdn-x", "wide", "elsewhere"}},
      {"v6 default route never meets v4", "::/0", {"v6", "v6-wide", "elsewhere"}},
  };
  for (const auto& r : rows) {
    CAPTURE(r.what);
    const auto found = impact::find_overlaps(make_directive({{}, {r.target}, {}}), {}, p);
    std::vector<std::string> entries;
    for (const auto& o : found) {
      entries.push_back(o.entry);
      CHECK(o.target == r.target);
    }
    CHECK(entries == r.entries);
  }
  const auto one = impact::find_overlaps(make_directive({{}, {"149.154.160.0/20"}, {}}), {}, p);
  REQUIRE(one.size() == 2);
  CHECK(one[0].item == "149.154.167.0/24");
  CHECK(one[0].message ==
        "target 149.154.160.0/20 overlaps protected range 'cdn-x' (149.154.167.0/24)");
}

TEST_CASE("find_overlaps: domains overlap at label boundaries, apps are named") {
  const impact::protected_set p{{
      {"gsuite", {}, {"drive.google.com", "*.docs.google.com"}},
      {"ms", {}, {"microsoft.com"}},
      {"cdn-x", {"149.154.167.0/24"}, {"cdn.Example.NET"}},
  }};
  struct row {
    const char* what;
    std::string target;
    std::vector<std::string> items;
  };
  const std::vector<row> rows{
      {"parent of protected", "google.com", {"drive.google.com", "*.docs.google.com"}},
      {"child of protected", "a.drive.google.com", {"drive.google.com"}},
      {"pattern below protected base", "*.docs.google.com", {"*.docs.google.com"}},
      {"equal", "microsoft.com", {"microsoft.com"}},
      {"not at a label boundary", "t.co", {}},
      {"suffix but not a label", "osoft.com", {}},
      {"sibling", "mail.google.com", {}},
      {"protected written differently", "example.net", {"cdn.example.net"}},
  };
  for (const auto& r : rows) {
    CAPTURE(r.what);
    const auto found = impact::find_overlaps(make_directive({{}, {}, {r.target}}), {}, p);
    std::vector<std::string> items;
    for (const auto& o : found) items.push_back(o.item);
    CHECK(items == r.items);
  }

  fleet::app_table apps;
  apps["telegram"] = {"telegram", "", {"149.154.160.0/20", "91.108.4.0/22"},
                      {"telegram.org", "*.example.net"}};
  // The app and the directive both name 149.154.160.0/20: reported once, for the app.
  const auto found = impact::find_overlaps(
      make_directive({{"telegram", "missing-app"}, {"149.154.160.0/20"}, {"example.net"}}), apps,
      p);
  std::vector<std::string> messages;
  for (const auto& o : found) messages.push_back(o.message);
  CHECK(messages == std::vector<std::string>{
                        "target 149.154.160.0/20 (app telegram) overlaps protected range 'cdn-x' "
                        "(149.154.167.0/24)",
                        "target *.example.net (app telegram) overlaps protected name 'cdn-x' "
                        "(cdn.example.net)",
                        "target example.net overlaps protected name 'cdn-x' (cdn.example.net)",
                    });
}
