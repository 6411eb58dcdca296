#include <doctest/doctest.h>
#include <arpa/inet.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "dataplane/match/policy_config.hpp"

using namespace sluice::match;

namespace {

// This file is tests/unit/match/policy_config_test.cpp; the repository root is three up.
const std::filesystem::path repo_root =
    std::filesystem::path(__FILE__).parent_path().parent_path().parent_path().parent_path();
const std::filesystem::path apps_dir = repo_root / "config" / "apps";

policy_load_result load(const std::string& yaml, const std::filesystem::path& apps = apps_dir) {
  std::istringstream in(yaml);
  return load_policy(in, apps);
}

sluice::packet::ip_address ip(const char* s) {
  sluice::packet::ip_address a;
  if (inet_pton(AF_INET, s, a.bytes.data()) == 1) {
    a.version = 4;
  } else {
    REQUIRE(inet_pton(AF_INET6, s, a.bytes.data()) == 1);
    a.version = 6;
  }
  return a;
}

}  // namespace

TEST_CASE("parse_rfc3339: table") {
  struct row {
    const char* text;
    std::optional<std::int64_t> value;
  };
  const row rows[] = {
      {"1970-01-01T00:00:00Z", 0},
      {"2026-11-28T12:00:00Z", 1795867200},
      {"2026-11-28T15:00:00+03:00", 1795867200},
      {"2026-11-28T11:30:00-00:30", 1795867200},
      {"2026-11-28t12:00:00.250z", 1795867200},
      {"2024-02-29T00:00:00Z", 1709164800},
      {"2026-02-29T00:00:00Z", std::nullopt},  // not a leap year
      {"2026-13-01T00:00:00Z", std::nullopt},
      {"2026-11-28T24:00:00Z", std::nullopt},
      {"2026-11-28T12:00:00", std::nullopt},   // no zone
      {"2026-11-28", std::nullopt},
      {"2026-11-28T12:00:00Zjunk", std::nullopt},
      {"tomorrow", std::nullopt},
  };
  for (const auto& r : rows) {
    const std::string label = r.text;
    CAPTURE(label);
    CHECK(parse_rfc3339(r.text) == r.value);
  }
}

TEST_CASE("load_policy: the DESIGN.md example") {
  const auto res = load(R"(revision: 7
generated_at: 2026-11-28T12:00:00Z
rules:
  - id: r1
    directive: MINCOM-2026-001
    action: reset            # drop | reset | notice | throttle | monitor
    legal_basis: "Order 123 of 2026-11-20"
    not_before: 2026-11-28T00:00:00Z
    not_after: 2026-12-05T00:00:00Z
    prefixes: [91.108.4.0/22, 2001:67c:4e8::/48]
    domains: [telegram.org, "*.telegram.org", t.me]
  - id: r2
    action: throttle
    throttle: { rate_bps: 64000 }
    domains: [example.org]
)");
  REQUIRE_MESSAGE(res, res.error.text());
  const policy_spec& s = *res.spec;
  CHECK(s.revision == 7);
  CHECK(s.generated_at == 1795867200);
  REQUIRE(s.rules.size() == 2);
  const rule_spec& r = s.rules[0];
  CHECK(r.id == "r1");
  CHECK(r.directive == "MINCOM-2026-001");
  CHECK(r.act == action::reset);
  CHECK(r.legal_basis == "Order 123 of 2026-11-20");
  CHECK(r.not_before == 1795824000);
  CHECK(r.not_after == 1796428800);
  CHECK(r.prefixes == std::vector<std::string>{"91.108.4.0/22", "2001:67c:4e8::/48"});
  CHECK(r.domains == std::vector<std::string>{"telegram.org", "*.telegram.org", "t.me"});
  CHECK(s.rules[1].act == action::throttle);
  CHECK(s.rules[1].throttle.rate_bps == 64000);
  CHECK(s.rules[1].throttle.burst_bytes == 16384);  // default
  CHECK_FALSE(s.rules[1].not_before.has_value());
  CHECK(compile_policy(s));
}

TEST_CASE("load_policy: errors carry line and column") {
  struct row {
    const char* what;
    std::string yaml;
    int line;
    int column;
    const char* message_part;
  };
  const row rows[] = {
      {"unknown top-level key", "revison: 7\nrules: []\n", 1, 1, "unknown key 'revison'"},
      {"unknown rule key",
       "rules:\n  - id: r1\n    action: drop\n    domain: [t.me]\n", 4, 5, "unknown key 'domain'"},
      {"bad prefix",
       "rules:\n  - id: r1\n    action: drop\n    prefixes: [91.108.4.0/22, 10.0.0.1/8]\n", 4, 31,
       "host_bits_set"},
      {"bad prefix, block list",
       "rules:\n  - id: r1\n    action: drop\n    prefixes:\n      - 1.2.3.0/24\n      - 1.2.3/24\n",
       6, 9, "bad prefix '1.2.3/24'"},
      {"bad domain",
       "rules:\n  - id: r1\n    action: drop\n    domains: [\"t.*.me\"]\n", 4, 15,
       "misplaced_wildcard"},
      {"bad time",
       "rules:\n  - id: r1\n    action: drop\n    not_before: 2026-11-31T00:00:00Z\n    domains: [t.me]\n",
       4, 17, "bad time"},
      {"window reversed",
       "rules:\n  - id: r1\n    action: drop\n    not_before: 2026-11-28T00:00:00Z\n"
       "    not_after: 2026-11-27T00:00:00Z\n    domains: [t.me]\n",
       5, 16, "later than"},
      {"unknown action", "rules:\n  - id: r1\n    action: block\n    domains: [t.me]\n", 3, 13,
       "unknown action 'block'"},
      {"missing action", "rules:\n  - id: r1\n    domains: [t.me]\n", 2, 5, "needs an action"},
      {"no targets", "rules:\n  - id: r1\n    action: drop\n", 2, 5, "no prefixes"},
      {"notice without basis", "rules:\n  - id: r1\n    action: notice\n    domains: [t.me]\n", 2,
       5, "legal_basis"},
      {"throttle on drop",
       "rules:\n  - id: r1\n    action: drop\n    throttle: {rate_bps: 1}\n    domains: [t.me]\n", 4,
       15, "non-throttle"},
      {"throttle rate zero",
       "rules:\n  - id: r1\n    action: throttle\n    throttle: {rate_bps: 0}\n    domains: [t.me]\n",
       4, 26, "rate_bps must be > 0"},
      {"throttle burst beyond the token bucket",
       "rules:\n  - id: r1\n    action: throttle\n    throttle: {rate_bps: 1, burst_bytes: 16777216}\n"
       "    domains: [t.me]\n",
       4, 42, "at most 16777215"},
      {"negative revision", "revision: -1\nrules: []\n", 1, 11, "non-negative integer"},
      {"repeated key", "rules: []\nrules: []\n", 2, 1, "repeated key"},
      {"duplicate rule id",
       "rules:\n  - id: r1\n    action: drop\n    domains: [t.me]\n"
       "  - id: r1\n    action: drop\n    domains: [t.me]\n",
       5, 5, "duplicate rule id"},
      {"rules not a list", "rules: {a: 1}\n", 1, 8, "must be a list"},
      {"syntax error", "rules:\n  - id: r1\n    action: [drop\n", 4, 1, ""},
      {"unknown app",
       "rules:\n  - id: r1\n    action: drop\n    apps: [telegram, nosuchapp]\n", 4, 22,
       "nosuchapp"},
      {"bad app name", "rules:\n  - id: r1\n    action: drop\n    apps: [../etc]\n", 4, 12,
       "bad app name"},
      {"missing rules", "revision: 1\n", 1, 1, "needs 'rules'"},
  };
  for (const auto& r : rows) {
    const std::string label = r.what;
    CAPTURE(label);
    const auto res = load(r.yaml);
    REQUIRE_FALSE(res);
    const std::string error_text = res.error.text();
    CAPTURE(error_text);
    CHECK(res.error.line == r.line);
    CHECK(res.error.column == r.column);
    CHECK(res.error.message.find(r.message_part) != std::string::npos);
  }
  const auto empty = load("");
  CHECK_FALSE(empty);
  CHECK(empty.error.message == "empty document");
}

TEST_CASE("load_policy: errors inside an app profile name that file") {
  const auto dir = std::filesystem::temp_directory_path() / "sluice_match_test_apps";
  std::filesystem::create_directories(dir);
  {
    std::ofstream out(dir / "broken.yaml");
    out << "name: broken\ndomains:\n  - ok.example\n  - \"bad..example\"\n";
  }
  const auto res = load("rules:\n  - id: r1\n    action: drop\n    apps: [broken]\n", dir);
  REQUIRE_FALSE(res);
  CHECK(res.error.file == (dir / "broken.yaml").string());
  CHECK(res.error.line == 4);
  CHECK(res.error.column == 5);
  CHECK(res.error.message.find("empty_label") != std::string::npos);
  // No apps directory configured.
  const auto none = load("rules:\n  - id: r1\n    action: drop\n    apps: [telegram]\n", {});
  CHECK_FALSE(none);
  CHECK(none.error.line == 4);
  std::filesystem::remove_all(dir);
}

TEST_CASE("load_app_profile: errors") {
  struct row {
    const char* what;
    const char* yaml;
    int line;
    int column;
  };
  const row rows[] = {
      {"no name", "domains: [t.me]\n", 1, 1},
      {"unknown key", "name: x\ndomain: [t.me]\n", 2, 1},
      {"bad prefix", "name: x\nprefixes: [1.2.3.4/33]\n", 2, 12},
      {"no targets", "name: x\n", 1, 1},
  };
  for (const auto& r : rows) {
    const std::string label = r.what;
    CAPTURE(label);
    std::istringstream in(r.yaml);
    const auto res = load_app_profile(in);
    REQUIRE_FALSE(res);
    CHECK(res.error.line == r.line);
    CHECK(res.error.column == r.column);
  }
}

TEST_CASE("telegram profile and the example policy") {
  const auto app = load_app_profile_file(apps_dir / "telegram.yaml");
  REQUIRE_MESSAGE(app, app.error.text());
  CHECK(app.profile->name == "telegram");
  CHECK(app.profile->prefixes.size() == 12);
  CHECK(app.profile->domains.size() == 20);

  const auto loaded = load_policy_file(repo_root / "config" / "policy.example.yaml");
  REQUIRE_MESSAGE(loaded, loaded.error.text());
  REQUIRE(loaded.spec->rules.size() == 1);
  CHECK(loaded.spec->rules[0].act == action::reset);
  const auto res = compile_policy(*loaded.spec);
  REQUIRE_MESSAGE(res, res.error.message);
  const compiled_policy& p = *res.policy;
  const auto not_before = *loaded.spec->rules[0].not_before;

  struct row {
    const char* addr;
    bool match;
  };
  const row ips[] = {
      {"91.108.4.1", true},       {"149.154.167.91", true}, {"2001:67c:4e8::1", true},
      {"91.105.193.255", true},   {"185.76.151.7", true},   {"2001:b28:f23d::1", true},
      {"8.8.8.8", false},         {"91.108.12.1", true},    {"91.108.24.1", false},
      {"2001:67c:4e9::1", false}, {"1.1.1.1", false},
  };
  for (const auto& r : ips) {
    const std::string label = r.addr;
    CAPTURE(label);
    const auto g = p.match_ip(ip(r.addr));
    CHECK(g.has_value() == r.match);
    if (g) {
      const verdict v = p.decide(p.group(*g), not_before);
      CHECK(v.enforce());
      CHECK(v.act == action::reset);
      CHECK_FALSE(p.decide(p.group(*g), not_before - 1).enforce());
    }
  }
  struct name_row {
    const char* name;
    bool match;
  };
  const name_row names[] = {
      {"telegram.org", true},   {"web.telegram.org", true}, {"T.ME.", true},
      {"x.t.me", true},         {"telegra.ph", true},        {"a.b.tg.dev", true},
      {"at.me", false},         {"t.me.evil.com", false},    {"nottelegram.org", false},
      {"telegram.org.ru", false}, {"example.com", false},
  };
  for (const auto& r : names) {
    const std::string label = r.name;
    CAPTURE(label);
    CHECK(p.match_name(r.name).has_value() == r.match);
  }
}
