#include <doctest/doctest.h>

#include <array>
#include <stdexcept>
#include <string>
#include <vector>

#include "dataplane/match/domain_name.hpp"
#include "dataplane/match/domain_set.hpp"

using sluice::match::domain_match_kind;
using sluice::match::domain_rule;
using sluice::match::domain_set;

namespace {

domain_set make(const std::vector<std::pair<std::string, std::uint32_t>>& rules) {
  std::vector<domain_rule> v;
  for (const auto& [text, value] : rules) {
    const auto n = sluice::match::normalize_rule_name(text);
    REQUIRE(n);
    v.push_back({n.name, n.subdomain, value});
  }
  return domain_set(v);
}

constexpr auto none = domain_match_kind::none;
constexpr auto exact = domain_match_kind::exact;
constexpr auto sub = domain_match_kind::subdomain;

}  // namespace

TEST_CASE("domain_set: label boundaries, case, trailing dot, precedence") {
  const domain_set set = make({
      {"t.me", 1},
      {"*.t.me", 2},
      {"telegram.org", 3},
      {"*.telegram.org", 4},
      {"*.cdn.telegram.org", 5},
      {"exact.cdn.telegram.org", 6},
      {"*.only-pattern.com", 7},
      {"пример.рф", 8},
      {"*.a.b.c.d.e.f", 9},
  });
  CHECK(set.size() == 7);  // t.me and *.t.me share a slot, as do telegram.org's two

  struct row {
    const char* what;
    std::string wire;
    domain_match_kind kind;
    std::uint32_t value;
  };
  const row rows[] = {
      {"exact", "t.me", exact, 1},
      {"exact wins over pattern of parent", "telegram.org", exact, 3},
      {"not a label boundary", "at.me", none, 0},
      {"rule as prefix of wire", "t.me.evil.com", none, 0},
      {"rule inside wire", "xt.me.com", none, 0},
      {"subdomain", "sub.t.me", sub, 2},
      {"deep subdomain", "a.b.c.t.me", sub, 2},
      {"uppercase wire", "T.ME", exact, 1},
      {"mixed case sub", "Sub.T.Me", sub, 2},
      {"trailing dot", "t.me.", exact, 1},
      {"trailing dot sub", "web.telegram.org.", sub, 4},
      {"two trailing dots", "t.me..", none, 0},
      {"leading dot", ".t.me", none, 0},
      {"empty label", "sub..t.me", none, 0},
      {"longest pattern wins", "x.cdn.telegram.org", sub, 5},
      {"longest pattern, deep", "y.x.cdn.telegram.org", sub, 5},
      {"pattern base itself is under parent pattern", "cdn.telegram.org", sub, 4},
      {"exact inside pattern", "exact.cdn.telegram.org", exact, 6},
      {"pattern does not match its base", "only-pattern.com", none, 0},
      {"pattern matches under base", "www.only-pattern.com", sub, 7},
      {"suffix without boundary", "wwwonly-pattern.com", none, 0},
      {"IDN rule, punycode wire", "xn--e1afmkfd.xn--p1ai", exact, 8},
      {"IDN rule, punycode wire upper", "XN--E1AFMKFD.XN--P1AI", exact, 8},
      {"IDN rule, raw UTF-8 wire", "пример.рф", none, 0},
      {"deep pattern", "z.a.b.c.d.e.f", sub, 9},
      {"deep pattern base", "a.b.c.d.e.f", none, 0},
      {"empty", "", none, 0},
      {"just a dot", ".", none, 0},
      {"unrelated", "example.com", none, 0},
      {"TLD only", "me", none, 0},
      {"NUL inside", std::string("t.m\0e", 5), none, 0},
      {"NUL label before rule", std::string("\0.t.me", 6), sub, 2},
      {"high bytes", "\xff\xfe.t.me", sub, 2},
      {"high bytes no match", "t.m\xc3\xa9", none, 0},
      {"space", "t.me ", none, 0},
  };
  for (const auto& r : rows) {
    const std::string label = r.what;
    CAPTURE(label);
    const auto m = set.find(r.wire);
    CHECK(m.kind == r.kind);
    CHECK(m.found == (r.kind != none));
    if (m.found) CHECK(m.value == r.value);
  }
}

TEST_CASE("domain_set: length limits on the wire") {
  const std::string label63(63, 'a');
  const std::string base = label63 + "." + label63 + "." + label63;  // 191
  const domain_set set = make({{"*." + base, 1}, {std::string(61, 'b') + "." + base, 2}});
  const std::string ok253 = std::string(61, 'b') + "." + base;
  REQUIRE(ok253.size() == 253);
  CHECK(set.find(ok253).kind == exact);
  CHECK(set.find(ok253 + ".").kind == exact);
  CHECK(set.find(std::string(61, 'c') + "." + base).kind == sub);
  // 254 characters: never found, even though a pattern would cover it.
  CHECK_FALSE(set.find(std::string(62, 'c') + "." + base).found);
  CHECK_FALSE(set.find(std::string(1000, 'a') + "." + base).found);
  // The most labels a name can have: 127 one-character labels = 253 characters.
  const domain_set x = make({{"*.x", 1}});
  std::string many = "y";
  for (int i = 0; i < 126; ++i) many += ".x";
  REQUIRE(many.size() == 253);
  CHECK(x.find(many).kind == sub);
  CHECK_FALSE(x.find("y." + many).found);
}

TEST_CASE("domain_set: duplicates, combine, empty set") {
  std::vector<domain_rule> dup = {{"t.me", false, 1}, {"t.me", false, 2}};
  CHECK_THROWS_AS(domain_set{dup}, std::invalid_argument);
  const domain_set combined(dup, [](std::uint32_t a, std::uint32_t b) { return a * 10 + b; });
  CHECK(combined.size() == 1);
  CHECK(combined.find("t.me").value == 12);

  const domain_set empty;
  CHECK_FALSE(empty.find("t.me").found);
  const domain_set from_nothing(std::vector<domain_rule>{});
  CHECK_FALSE(from_nothing.find("t.me").found);
  CHECK_FALSE(from_nothing.find("").found);

  std::vector<domain_rule> bad = {{"", false, 1}};
  CHECK_THROWS_AS(domain_set{bad}, std::invalid_argument);
}

TEST_CASE("domain_set: many rules, every rule found, near misses not") {
  std::vector<domain_rule> rules;
  for (std::uint32_t i = 0; i < 20000; ++i) {
    rules.push_back({"host" + std::to_string(i) + ".example" + std::to_string(i % 97) + ".com",
                     i % 3 == 0, i});
  }
  const domain_set set(rules);
  CHECK(set.size() == rules.size());
  CHECK(set.capacity() >= 2 * set.size());
  for (const auto& r : rules) {
    if (r.subdomain) {
      const auto m = set.find("www." + r.name);
      CHECK(m.kind == sub);
      CHECK(m.value == r.value);
      CHECK_FALSE(set.find(r.name).found);
    } else {
      const auto m = set.find(r.name);
      CHECK(m.kind == exact);
      CHECK(m.value == r.value);
      CHECK_FALSE(set.find("x" + r.name).found);
    }
  }
}

TEST_CASE("domain_set: find_bulk answers exactly what find answers") {
  // Patterns at every depth from 2 to 9 labels, so deep names have more candidates than one
  // bulk slot holds and take the find() path; exact rules at several depths.
  std::vector<domain_rule> rules;
  std::string base = "telegram.org";
  for (std::uint32_t depth = 2; depth <= 9; ++depth) {
    rules.push_back({base, true, depth});
    rules.push_back({"exact." + base, false, 100 + depth});
    base = "l" + std::to_string(depth) + "." + base;
  }
  for (std::uint32_t i = 0; i < 5000; ++i) {
    rules.push_back({"n" + std::to_string(i) + ".example.com", i % 2 == 0, 1000 + i});
  }
  const domain_set set(rules);

  std::vector<std::string> names = {"", ".", "a..b", "TELEGRAM.ORG.", "www.Telegram.org",
                                    "nottelegram.org", "exact.telegram.org", base,
                                    "x." + base, "deep.x." + base, std::string(254, 'a'),
                                    "exact.l2.telegram.org", "n77.example.com",
                                    "www.n78.example.com", "www.n77.example.com"};
  for (std::uint32_t i = 0; i < 300; ++i) {
    names.push_back((i % 3 == 0 ? "w." : "") + std::string("n") + std::to_string(i * 17) +
                    ".example.com");
  }
  std::vector<std::string_view> views(names.begin(), names.end());
  // Every length of burst, including more than bulk_max (split in chunks).
  for (std::size_t n : {std::size_t{1}, std::size_t{7}, domain_set::bulk_max, views.size()}) {
    std::vector<sluice::match::domain_match> out(n);
    set.find_bulk(views.data(), out.data(), n);
    for (std::size_t i = 0; i < n; ++i) {
      const auto want = set.find(views[i]);
      CAPTURE(names[i]);
      CHECK(out[i].found == want.found);
      CHECK(out[i].kind == want.kind);
      CHECK(out[i].value == want.value);
    }
  }
  // Spot checks that the comparison above is not between two empty answers.
  const std::string deep = "x." + base;
  const std::array<std::string_view, 3> three = {deep, "www.n78.example.com", "nottelegram.org"};
  std::array<sluice::match::domain_match, 3> got;
  set.find_bulk(three.data(), got.data(), 3);
  CHECK(got[0].kind == sub);
  CHECK(got[0].value == 9);
  CHECK(got[1].kind == sub);
  CHECK(got[1].value == 1078);
  CHECK_FALSE(got[2].found);
}
