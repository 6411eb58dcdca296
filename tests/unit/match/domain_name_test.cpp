#include <doctest/doctest.h>

#include <string>

#include "dataplane/match/domain_name.hpp"

using sluice::match::name_error;
using sluice::match::normalize_rule_name;

TEST_CASE("normalize_rule_name: table") {
  struct row {
    const char* what;
    std::string input;
    name_error error;
    std::string name;
    bool subdomain;
  };
  const std::string label63(63, 'a');
  const std::string label64(64, 'a');
  // 4 labels of 63 + 3 dots = 255 > 253; 3*63 + 61 + 3 = 253.
  const std::string long254 = label63 + "." + label63 + "." + label63 + "." + std::string(62, 'a');
  const std::string ok253 = label63 + "." + label63 + "." + label63 + "." + std::string(61, 'a');
  const row rows[] = {
      {"plain", "telegram.org", name_error::ok, "telegram.org", false},
      {"uppercase folded", "Telegram.ORG", name_error::ok, "telegram.org", false},
      {"trailing dot stripped", "t.me.", name_error::ok, "t.me", false},
      {"whitespace trimmed", "  t.me\t", name_error::ok, "t.me", false},
      {"pattern", "*.telegram.org", name_error::ok, "telegram.org", true},
      {"pattern, upper, dot", "*.T.ME.", name_error::ok, "t.me", true},
      {"IDN to A-label", "пример.рф", name_error::ok, "xn--e1afmkfd.xn--p1ai", false},
      {"IDN uppercase", "ПРИМЕР.РФ", name_error::ok, "xn--e1afmkfd.xn--p1ai", false},
      {"IDN pattern", "*.пример.рф", name_error::ok, "xn--e1afmkfd.xn--p1ai", true},
      {"A-label kept", "xn--e1afmkfd.xn--p1ai", name_error::ok, "xn--e1afmkfd.xn--p1ai", false},
      {"underscore allowed", "_dmarc.example.com", name_error::ok, "_dmarc.example.com", false},
      {"single label", "localhost", name_error::ok, "localhost", false},
      {"63-char label", label63 + ".com", name_error::ok, label63 + ".com", false},
      {"253 chars", ok253, name_error::ok, ok253, false},
      {"empty", "", name_error::empty, "", false},
      {"only spaces", "   ", name_error::empty, "", false},
      {"only dot", ".", name_error::empty, "", false},
      {"bare star-dot", "*.", name_error::empty, "", false},
      {"64-char label", label64 + ".com", name_error::label_too_long, "", false},
      {"254 chars", long254, name_error::too_long, "", false},
      {"empty label", "a..b", name_error::empty_label, "", false},
      {"leading dot", ".t.me", name_error::empty_label, "", false},
      {"two trailing dots", "t.me..", name_error::empty_label, "", false},
      {"space inside", "t .me", name_error::invalid_char, "", false},
      {"slash", "t.me/x", name_error::invalid_char, "", false},
      {"NUL byte", std::string("t.m\0e", 5), name_error::invalid_char, "", false},
      {"leading hyphen", "-t.me", name_error::bad_hyphen, "", false},
      {"trailing hyphen", "t-.me", name_error::bad_hyphen, "", false},
      {"star inside", "a.*.me", name_error::misplaced_wildcard, "", false},
      {"star suffix", "t.me*", name_error::misplaced_wildcard, "", false},
      {"star without dot", "*t.me", name_error::misplaced_wildcard, "", false},
      {"double pattern", "*.*.t.me", name_error::misplaced_wildcard, "", false},
      {"bare star", "*", name_error::misplaced_wildcard, "", false},
      {"invalid UTF-8", "\xff\xfe.com", name_error::idn_error, "", false},
  };
  for (const auto& r : rows) {
    const std::string label = r.what;
    CAPTURE(label);
    const auto n = normalize_rule_name(r.input);
    CHECK(n.error == r.error);
    CHECK(n.name == r.name);
    if (r.error == name_error::ok) {
      CHECK(n.subdomain == r.subdomain);
      CHECK(n.text() == (r.subdomain ? "*." : "") + r.name);
    }
  }
}

TEST_CASE("name_error names") {
  CHECK(std::string(to_string(name_error::ok)) == "ok");
  CHECK(std::string(to_string(name_error::misplaced_wildcard)) == "misplaced_wildcard");
}
