#include "control/directive/directive.hpp"

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "dataplane/match/policy_config.hpp"

namespace d = sluice::control::directive;
using d::error_code;

namespace {

std::int64_t t(const char* text) {
  const auto v = sluice::match::parse_rfc3339(text);
  REQUIRE(v.has_value());
  return *v;
}

d::validation_context context() {
  d::validation_context ctx;
  ctx.now = t("2026-11-28T12:00:00Z");
  ctx.known_apps = {"telegram", "whatsapp"};
  ctx.known_sites = {"msk-1", "spb-1"};
  ctx.known_labels = {{"region", {"north", "south"}}, {"tier", {"edge"}}};
  return ctx;
}

// Lines 1..4 of most documents below; what follows starts on line 5.
const std::string head =
    "id: T-1\n"
    "issuer: ministry\n"
    "issued_at: 2026-11-28T00:00:00Z\n"
    "legal_basis: Order 1\n";

// A valid block, lines 5..8.
const std::string block_tail =
    "action: block\n"
    "targets: {apps: [telegram]}\n"
    "scope: all\n"
    "not_before: 2026-11-28T00:00:00Z\n";

}  // namespace

TEST_CASE("directive: every error code, with its line and column") {
  struct row {
    const char* what;
    std::string yaml;
    error_code code;
    int line;
    int column;
    const char* message_part;  // must appear in the message
  };
  const row rows[] = {
      {"unterminated quoted scalar", "id: \"abc", error_code::malformed_yaml, 1, 9, "EOF"},
      {"undefined alias", head + "action: *nope\n", error_code::malformed_yaml, 5, 9, "anchor"},
      {"second document", head + block_tail + "---\nid: T-2\n", error_code::malformed_yaml, 9, 1,
       "more than one"},
      // yaml-cpp 0.7's LoadAll never returns on these (found by fuzz_directive).
      {"stray comma after a document", head + block_tail + "...\n, a\n", error_code::malformed_yaml,
       10, 1, "more than one"},
      {"a list", "- id\n- issuer\n", error_code::not_a_mapping, 1, 1, "mapping"},
      {"a scalar", "block telegram\n", error_code::not_a_mapping, 1, 1, "mapping"},
      {"a stray comma", ", a\n", error_code::not_a_mapping, 1, 1, "empty"},
      {"empty", "", error_code::not_a_mapping, 0, 0, "empty"},
      {"unknown top-level key", head + block_tail + "colour: red\n", error_code::unknown_key, 9, 1,
       "'colour'"},
      {"unknown key in targets", head + "action: block\ntargets: {apps: [telegram], ips: []}\n",
       error_code::unknown_key, 6, 29, "'targets.ips'"},
      {"unknown key in throttle",
       head + "action: throttle\nthrottle: {rate_bps: 1, burst_bytes: 2, ceil: 3}\n",
       error_code::unknown_key, 6, 41, "'throttle.ceil'"},
      {"unknown key in scope",
       head + "action: block\ntargets: {apps: [telegram]}\nscope: {site: [msk-1]}\n",
       error_code::unknown_key, 7, 9, "'scope.site'"},
      {"repeated id", "id: T-1\nid: T-2\n", error_code::duplicate_key, 2, 1, "'id'"},
      {"repeated label",
       head + "action: block\ntargets: {apps: [telegram]}\n"
              "scope: {labels: {region: north, region: south}}\n",
       error_code::duplicate_key, 7, 33, "scope.labels.region"},
      {"no legal_basis",
       "id: T-1\nissuer: ministry\nissued_at: 2026-11-28T00:00:00Z\naction: block\n",
       error_code::missing_field, 1, 1, "legal_basis"},
      {"no action", head + "scope: all\n", error_code::missing_field, 1, 1, "action"},
      {"no scope",
       head + "action: block\ntargets: {apps: [telegram]}\n"
              "not_before: 2026-11-28T00:00:00Z\n",
       error_code::missing_field, 1, 1, "scope"},
      {"no not_before", head + "action: block\ntargets: {apps: [telegram]}\nscope: all\n",
       error_code::missing_field, 1, 1, "not_before"},
      {"throttle action without throttle", head + "action: throttle\ntargets: {apps: [telegram]}\n",
       error_code::missing_field, 1, 1, "throttle"},
      {"throttle without burst", head + "action: throttle\nthrottle: {rate_bps: 64000}\n",
       error_code::missing_field, 6, 11, "throttle.burst_bytes"},
      {"id is a list", "id: [a]\n", error_code::bad_type, 1, 5, "id"},
      {"id has no value", "id:\nissuer: ministry\n", error_code::bad_type, 1, 1, "no value"},
      {"apps is a string", head + "action: block\ntargets: {apps: telegram}\n",
       error_code::bad_type, 6, 17, "targets.apps"},
      {"targets is a list", head + "action: block\ntargets: [telegram]\n", error_code::bad_type, 6,
       10, "targets"},
      {"scope is a list", head + block_tail.substr(0, 42) + "scope: [all]\n", error_code::bad_type,
       7, 8, "scope"},
      {"rate is not a number",
       head + "action: throttle\nthrottle: {rate_bps: fast, burst_bytes: 1}\n",
       error_code::bad_type, 6, 22, "integer"},
      {"non-scalar key", "? [a]\n: b\n", error_code::bad_type, 1, 3, "keys"},
      {"id with a space", "id: T 1\n", error_code::bad_value, 1, 5, "not an id"},
      {"issuer upper case", "id: T-1\nissuer: Ministry\n", error_code::bad_value, 2, 9, "issuer"},
      {"legal_basis too long",
       "id: T-1\nissuer: m\nissued_at: 2026-11-28T00:00:00Z\nlegal_basis: " +
           std::string(201, 'x') + "\n",
       error_code::bad_value, 4, 14, "1..200"},
      {"legal_basis with a newline",
       "id: T-1\nissuer: m\nissued_at: 2026-11-28T00:00:00Z\nlegal_basis: \"a\\nb\"\n",
       error_code::bad_value, 4, 14, "control"},
      {"unknown action", head + "action: ban\n", error_code::bad_value, 5, 9, "ban"},
      {"unknown response", head + "action: block\nresponse: tarpit\n", error_code::bad_value, 6, 11,
       "tarpit"},
      {"zero rate", head + "action: throttle\nthrottle: {rate_bps: 0, burst_bytes: 1}\n",
       error_code::bad_value, 6, 22, "greater than 0"},
      {"burst above 16 MiB",
       head + "action: throttle\nthrottle: {rate_bps: 1, burst_bytes: 16777216}\n",
       error_code::bad_value, 6, 38, "16 MiB"},
      {"app twice", head + "action: block\ntargets: {apps: [telegram, telegram]}\n",
       error_code::bad_value, 6, 28, "repeats"},
      {"prefix twice, written differently",
       head + "action: block\ntargets:\n  prefixes: [2001:db8::/32, \"2001:0DB8::/32\"]\n",
       error_code::bad_value, 7, 29, "repeats"},
      {"domain twice, written differently",
       head + "action: block\ntargets:\n  domains: [t.me, T.ME.]\n", error_code::bad_value, 7, 19,
       "repeats"},
      {"site twice",
       head + "action: block\ntargets: {apps: [telegram]}\nscope: {sites: [msk-1, msk-1]}\n",
       error_code::bad_value, 7, 24, "repeats"},
      {"lifts itself", head + "action: unblock\nlifts: [T-1]\n", error_code::bad_value, 6, 9,
       "itself"},
      {"lift with a bad id", head + "action: unblock\nlifts: [\"a b\"]\n", error_code::bad_value, 6,
       9, "lifts[0]"},
      {"unblock with targets and lifts",
       head + "action: unblock\ntargets: {apps: [telegram]}\nlifts: [T-0]\n", error_code::bad_value,
       7, 1, "not both"},
      {"scope other than all", head + "action: block\ntargets: {apps: [telegram]}\nscope: some\n",
       error_code::bad_value, 7, 8, "some"},
      {"empty scope mapping",
       head + "action: block\ntargets: {apps: [telegram]}\nscope: {sites: []}\n",
       error_code::bad_value, 7, 8, "no sites"},
      {"bad issued_at", "id: T-1\nissuer: m\nissued_at: 2026-11-28\n", error_code::bad_time, 3, 12,
       "RFC 3339"},
      {"bad not_after", head + block_tail + "not_after: tomorrow\n", error_code::bad_time, 9, 12,
       "tomorrow"},
      {"issued an hour ahead", "id: T-1\nissuer: m\nissued_at: 2026-11-28T13:00:00Z\n",
       error_code::issued_in_future, 3, 12, "3600"},
      {"not_after before not_before", head + block_tail + "not_after: 2026-11-27T00:00:00Z\n",
       error_code::bad_window, 9, 12, "later than not_before"},
      {"not_after equal to not_before", head + block_tail + "not_after: 2026-11-28T00:00:00Z\n",
       error_code::bad_window, 9, 12, "later than not_before"},
      {"not_before too far ahead",
       head + "action: block\ntargets: {apps: [telegram]}\nscope: all\nnot_before: "
              "2028-01-01T00:00:00Z\n",
       error_code::bad_window, 8, 13, "ahead"},
      {"window too long", head + block_tail + "not_after: 2037-01-01T00:00:00Z\n",
       error_code::bad_window, 9, 12, "longer"},
      {"already ended",
       head + "action: block\ntargets: {apps: [telegram]}\nscope: all\nnot_before: "
              "2026-11-01T00:00:00Z\n"
              "not_after: 2026-11-28T12:00:00Z\n",
       error_code::expired, 9, 12, "ended"},
      {"unknown app", head + "action: block\ntargets: {apps: [telegram, signal]}\n",
       error_code::unknown_app, 6, 28, "targets.apps[1]: no app profile named 'signal'"},
      {"host bits set",
       head + "action: block\ntargets:\n  prefixes:\n    - 91.108.4.0/22\n    - 10.0.0.1/8\n",
       error_code::bad_prefix, 9, 7, "targets.prefixes[1]: '10.0.0.1/8' has host bits set"},
      {"not an address", head + "action: block\ntargets: {prefixes: [91.108.4/22]}\n",
       error_code::bad_prefix, 6, 22, "not an IPv4/IPv6 prefix"},
      {"prefix length too long",
       head + "action: block\ntargets: {prefixes: [\"2001:db8::/129\"]}\n", error_code::bad_prefix,
       6, 22, "length"},
      {"wildcard in the middle", head + "action: block\ntargets: {domains: [a.*.org]}\n",
       error_code::bad_domain, 6, 21, "misplaced_wildcard"},
      {"empty label", head + "action: block\ntargets: {domains: [a..org]}\n",
       error_code::bad_domain, 6, 21, "empty_label"},
      {"unknown site",
       head + "action: block\ntargets: {apps: [telegram]}\nscope: {sites: [msk-1, ekb-1]}\n",
       error_code::unknown_site, 7, 24, "ekb-1"},
      {"unknown label",
       head + "action: block\ntargets: {apps: [telegram]}\nscope: {labels: {city: x}}\n",
       error_code::unknown_label, 7, 18, "city"},
      {"unknown label value",
       head + "action: block\ntargets: {apps: [telegram]}\n"
              "scope: {labels: {region: east}}\n",
       error_code::unknown_label, 7, 26, "east"},
      {"block without targets", head + "action: block\nscope: all\n", error_code::no_targets, 1, 1,
       "at least one target"},
      {"block with empty targets", head + "action: block\ntargets: {apps: [], domains: []}\n",
       error_code::no_targets, 6, 10, "at least one target"},
      {"monitor with empty targets", head + "action: monitor\ntargets: {}\n",
       error_code::no_targets, 6, 10, "monitor"},
      {"unblock with nothing", head + "action: unblock\nscope: all\n", error_code::no_targets, 1, 1,
       "targets or lifts"},
      {"unblock with empty lifts", head + "action: unblock\nlifts: []\n", error_code::no_targets, 6,
       8, "targets or lifts"},
      {"response on monitor", head + "action: monitor\nresponse: drop\n",
       error_code::field_not_allowed, 6, 1, "response"},
      {"throttle on block", head + "action: block\nthrottle: {rate_bps: 1, burst_bytes: 1}\n",
       error_code::field_not_allowed, 6, 1, "throttle"},
      {"lifts on block", head + "action: block\ntargets: {apps: [telegram]}\nlifts: [T-0]\n",
       error_code::field_not_allowed, 7, 1, "lifts"},
      {"an anchor", head + "action: block\ntargets: {apps: &x [telegram]}\n",
       error_code::anchor_not_allowed, 6, 17, "anchors"},
      {"an alias", head + "action: &a block\nresponse: *a\n", error_code::anchor_not_allowed, 5, 9,
       "anchors"},
      {"nested too deep", head + "action: block\ntargets: {domains: [[[[[[[a]]]]]]]}\n",
       error_code::nesting_too_deep, 6, 26, "nested more than 8"},
      {"too large", head + block_tail + "# " + std::string(4 * 1024 * 1024, 'x') + "\n",
       error_code::document_too_large, 0, 0, "over the limit"},
  };

  const auto ctx = context();
  std::set<error_code> seen;
  {
    // Entries are counted over the whole stream: the limit is a parameter.
    auto small = ctx;
    small.max_entries = 12;
    const auto res = d::parse_directive(head + block_tail, small);
    REQUIRE_FALSE(res);
    CHECK(res.error.code == error_code::too_many_entries);
    CHECK(res.error.line == 6);  // the 13th node: the targets mapping on line 6
    CHECK(res.error.message.find("more than 12") != std::string::npos);
    seen.insert(error_code::too_many_entries);
  }
  for (const auto& r : rows) {
    const std::string what = r.what;
    CAPTURE(what);
    CAPTURE(r.yaml);
    const auto res = d::parse_directive(r.yaml, ctx);
    REQUIRE_FALSE(res);
    CHECK(to_string(res.error.code) == to_string(r.code));
    CHECK(res.error.line == r.line);
    CHECK(res.error.column == r.column);
    CHECK_MESSAGE(res.error.message.find(r.message_part) != std::string::npos, res.error.message);
    seen.insert(r.code);
  }
  // The table reaches every code.
  CHECK(seen.size() == static_cast<std::size_t>(error_code::count));
}

TEST_CASE("directive: a valid block, every field read") {
  const std::string yaml = head +
                           "action: block\n"
                           "response: notice\n"
                           "targets:\n"
                           "  apps: [telegram]\n"
                           "  prefixes: [91.108.4.0/22, 2001:67c:4e8::/48]\n"
                           "  domains: [telegram.org, \"*.telegram.org\"]\n"
                           "scope: all\n"
                           "not_before: 2026-11-21T00:00:00Z\n"
                           "not_after: 2026-12-21T00:00:00Z\n";
  const auto res = d::parse_directive(yaml, context());
  REQUIRE_MESSAGE(res, res.error.text());
  const auto& v = *res.value;
  CHECK(v.id == "T-1");
  CHECK(v.issuer == "ministry");
  CHECK(v.issued_at == t("2026-11-28T00:00:00Z"));
  CHECK(v.legal_basis == "Order 1");
  CHECK(v.action == d::directive_action::block);
  CHECK(v.response == d::block_response::notice);
  CHECK_FALSE(v.throttle.has_value());
  CHECK(v.targets.apps == std::vector<std::string>{"telegram"});
  CHECK(v.targets.prefixes == std::vector<std::string>{"91.108.4.0/22", "2001:67c:4e8::/48"});
  CHECK(v.targets.domains == std::vector<std::string>{"telegram.org", "*.telegram.org"});
  CHECK(v.lifts.empty());
  CHECK(v.scope.all);
  CHECK(v.not_before == t("2026-11-21T00:00:00Z"));
  REQUIRE(v.not_after.has_value());
  CHECK(*v.not_after == t("2026-12-21T00:00:00Z"));
}

TEST_CASE("directive: valid documents for every action") {
  struct row {
    const char* what;
    std::string yaml;
    d::directive_action action;
  };
  const row rows[] = {
      {"block, default response", head + block_tail, d::directive_action::block},
      {"unblock by lifts",
       head + "action: unblock\nlifts: [T-0, MINCOM-2026-001]\nscope: all\n"
              "not_before: 2026-11-28T00:00:00Z\n",
       d::directive_action::unblock},
      {"unblock by targets",
       head + "action: unblock\ntargets: {domains: [t.me]}\nlifts: []\n"
              "scope: {sites: [msk-1]}\nnot_before: 2026-11-28T00:00:00Z\n",
       d::directive_action::unblock},
      {"monitor",
       head + "action: monitor\ntargets: {prefixes: [149.154.160.0/20]}\n"
              "scope: {labels: {region: north}}\nnot_before: 2026-12-01T00:00:00Z\n",
       d::directive_action::monitor},
      {"throttle",
       head + "action: throttle\nthrottle: {rate_bps: 64000, burst_bytes: 16777215}\n"
              "targets: {apps: [whatsapp]}\nscope: {sites: [spb-1], labels: {tier: edge}}\n"
              "not_before: 2026-11-28T00:00:00Z\n",
       d::directive_action::throttle},
  };
  for (const auto& r : rows) {
    const std::string what = r.what;
    CAPTURE(what);
    const auto res = d::parse_directive(r.yaml, context());
    REQUIRE_MESSAGE(res, res.error.text());
    CHECK(res.value->action == r.action);
  }
  const auto block = d::parse_directive(rows[0].yaml, context());
  CHECK(block.value->response == d::block_response::reset);
  const auto lifts = d::parse_directive(rows[1].yaml, context());
  CHECK(lifts.value->lifts == std::vector<std::string>{"T-0", "MINCOM-2026-001"});
  CHECK(lifts.value->targets.empty());
  const auto by_targets = d::parse_directive(rows[2].yaml, context());
  CHECK(by_targets.value->targets.domains == std::vector<std::string>{"t.me"});
  CHECK(by_targets.value->scope.sites == std::vector<std::string>{"msk-1"});
  CHECK_FALSE(by_targets.value->scope.all);
  const auto monitor = d::parse_directive(rows[3].yaml, context());
  CHECK(monitor.value->scope.labels == std::map<std::string, std::string>{{"region", "north"}});
  const auto throttle = d::parse_directive(rows[4].yaml, context());
  REQUIRE(throttle.value->throttle.has_value());
  CHECK(throttle.value->throttle->rate_bps == 64000);
  CHECK(throttle.value->throttle->burst_bytes == (16u << 20) - 1);
}

TEST_CASE("directive: time limits come from the context") {
  auto ctx = context();
  const std::string ahead =
      "id: T-1\nissuer: m\nissued_at: 2026-11-28T12:05:00Z\n"
      "legal_basis: x\n" +
      block_tail;
  CHECK(d::parse_directive(ahead, ctx));  // 300 s of skew allowed by default
  ctx.max_clock_skew = 299;
  CHECK(d::parse_directive(ahead, ctx).error.code == error_code::issued_in_future);
  // Extreme context values do not overflow into acceptance or refusal.
  ctx = context();
  ctx.max_clock_skew = std::numeric_limits<std::int64_t>::max();
  ctx.max_lead = std::numeric_limits<std::int64_t>::max();
  CHECK(d::parse_directive(ahead, ctx));
  // The window may end one second after now.
  const std::string ends_soon = head + block_tail + "not_after: 2026-11-28T12:00:01Z\n";
  CHECK(d::parse_directive(ends_soon, context()));
}

TEST_CASE("directive: targets are canonical") {
  const std::string yaml =
      head +
      "action: block\n"
      "targets:\n"
      "  domains: [Telegram.ORG., \"*.T.Me\", \"  web.telegram.org  \", пример.рф]\n"
      "  prefixes: [\"2001:067C:04E8::/48\", 91.108.4.1, \"::/0\"]\n"
      "scope: all\n"
      "not_before: 2026-11-28T00:00:00Z\n";
  const auto res = d::parse_directive(yaml, context());
  REQUIRE_MESSAGE(res, res.error.text());
  CHECK(res.value->targets.domains == std::vector<std::string>{"telegram.org", "*.t.me",
                                                               "web.telegram.org",
                                                               "xn--e1afmkfd.xn--p1ai"});
  CHECK(res.value->targets.prefixes ==
        std::vector<std::string>{"2001:67c:4e8::/48", "91.108.4.1/32", "::/0"});
}

TEST_CASE("directive: scope covers") {
  d::scope_spec all;
  all.all = true;
  d::scope_spec sites;
  sites.sites = {"msk-1", "spb-1"};
  d::scope_spec labels;
  labels.labels = {{"region", "north"}, {"tier", "edge"}};
  d::scope_spec both;
  both.sites = {"msk-1"};
  both.labels = {{"region", "north"}};
  const d::scope_spec none;

  using labels_t = std::map<std::string, std::string>;
  struct row {
    const char* what;
    const d::scope_spec* scope;
    labels_t node;
    bool covered;
  };
  const row rows[] = {
      {"all covers a node without labels", &all, {}, true},
      {"all covers any node", &all, {{"site", "x"}}, true},
      {"listed site", &sites, {{"site", "spb-1"}, {"region", "south"}}, true},
      {"unlisted site", &sites, {{"site", "ekb-1"}}, false},
      {"no site label", &sites, {{"region", "north"}}, false},
      {"site is compared exactly", &sites, {{"site", "MSK-1"}}, false},
      {"every label matches",
       &labels,
       {{"region", "north"}, {"tier", "edge"}, {"site", "a"}},
       true},
      {"one label differs", &labels, {{"region", "north"}, {"tier", "core"}}, false},
      {"one label missing", &labels, {{"region", "north"}}, false},
      {"sites and labels both hold", &both, {{"site", "msk-1"}, {"region", "north"}}, true},
      {"site holds, label does not", &both, {{"site", "msk-1"}, {"region", "south"}}, false},
      {"label holds, site does not", &both, {{"site", "spb-1"}, {"region", "north"}}, false},
      {"an empty scope covers nobody", &none, {{"site", "msk-1"}}, false},
  };
  for (const auto& r : rows) {
    const std::string what = r.what;
    CAPTURE(what);
    CHECK(r.scope->covers(r.node) == r.covered);
  }
}

TEST_CASE("directive: names") {
  std::set<std::string_view> names;
  std::set<std::string_view> descriptions;
  for (int i = 0; i < static_cast<int>(error_code::count); ++i) {
    const auto c = static_cast<error_code>(i);
    names.insert(to_string(c));
    descriptions.insert(d::describe(c));
  }
  CHECK(names.size() == static_cast<std::size_t>(error_code::count));
  CHECK(descriptions.size() == static_cast<std::size_t>(error_code::count));
  CHECK_FALSE(names.contains("?"));
  CHECK(to_string(error_code::bad_prefix) == "bad_prefix");
  CHECK(d::describe(error_code::unknown_app) == "unknown app profile");
  CHECK(to_string(d::directive_action::block) == "block");
  CHECK(to_string(d::directive_action::unblock) == "unblock");
  CHECK(to_string(d::directive_action::monitor) == "monitor");
  CHECK(to_string(d::directive_action::throttle) == "throttle");
  CHECK(to_string(d::block_response::drop) == "drop");
  CHECK(to_string(d::block_response::reset) == "reset");
  CHECK(to_string(d::block_response::notice) == "notice");

  d::parse_error e;
  e.message = "document is empty";
  CHECK(e.text() == "document is empty");
  e.line = 3;
  e.column = 12;
  e.message = "x";
  CHECK(e.text() == "3:12: x");
}

TEST_CASE("directive: hostile input never throws") {
  const std::string inputs[] = {
      std::string(5000, '['),
      std::string(5000, '{'),
      "a: " + std::string(3000, '-') + "\n",
      std::string("id: T-1\0issuer: m\n", 17),
      "\xff\xfe\x00\x01",
      "&a [*a]",
      "!!binary |\n  ////\n",
      head + "action: block\ntargets: {apps: &x [telegram]}\nlifts: *x\n",
      "id: T-1\nissuer: m\nissued_at: 2026-11-28T00:00:00Z\nlegal_basis: \"\\x80\"\n",
      "id: T-1\nissuer: m\nissued_at: 2026-11-28T00:00:00Z\nlegal_basis: \"\xC0\x80\"\n",
  };
  for (const auto& in : inputs) {
    CAPTURE(in.substr(0, 40));
    d::parse_result res;
    CHECK_NOTHROW(res = d::parse_directive(in, context()));
    CHECK_FALSE(res);
    CHECK_FALSE(res.error.message.empty());
  }
}

TEST_CASE("directive: a YAML bomb and a huge target list are refused before a tree is built") {
  // Billion laughs: nine levels of nine aliases would be 9^9 scalars if expanded.
  std::string bomb = head + "action: block\nresponse: reset\nscope: all\n"
                            "not_before: 2026-11-28T00:00:00Z\nlol0: &l0 [lol]\n";
  for (int i = 1; i < 9; ++i) {
    bomb += "lol" + std::to_string(i) + ": &l" + std::to_string(i) + " [";
    for (int j = 0; j < 9; ++j) bomb += std::string(j ? ", " : "") + "*l" + std::to_string(i - 1);
    bomb += "]\n";
  }
  auto res = d::parse_directive(bomb, context());
  REQUIRE_FALSE(res);
  CHECK(res.error.code == error_code::anchor_not_allowed);
  CHECK(res.error.line == 9);

  // 300,000 domains: refused by count at the 200,001st entry, whatever the size limit says.
  std::string huge = head + block_tail + "targets:\n  domains:\n";
  huge.erase(huge.find("targets: {apps: [telegram]}\n"), 28);
  huge.reserve(huge.size() + 300000 * 20);
  for (int i = 0; i < 300000; ++i) huge += "    - n" + std::to_string(i) + ".example\n";
  auto ctx = context();
  ctx.max_document_bytes = huge.size();
  res = d::parse_directive(huge, ctx);
  REQUIRE_FALSE(res);
  CHECK(res.error.code == error_code::too_many_entries);
  CHECK(res.error.line > 0);

  // Raised limits take it (a controller configured for a larger policy).
  ctx.max_entries = 400000;
  res = d::parse_directive(huge, ctx);
  REQUIRE(res);
  CHECK(res.value->targets.domains.size() == 300000);
}

TEST_CASE("directive: the sample Telegram directives in config/directives") {
  const auto dir = std::filesystem::path(__FILE__).parent_path() / "../../../../config/directives";
  const auto read = [&](const char* name) {
    std::ifstream in(dir / name);
    REQUIRE_MESSAGE(in.good(), (dir / name).string());
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  };
  d::validation_context ctx;
  ctx.now = t("2026-11-28T12:00:00Z");
  ctx.known_apps = {"telegram"};

  const auto block = d::parse_directive(read("telegram-block.yaml"), ctx);
  REQUIRE_MESSAGE(block, block.error.text());
  CHECK(block.value->id == "MINCOM-2026-001");
  CHECK(block.value->issuer == "ministry-of-communications");
  CHECK(block.value->action == d::directive_action::block);
  CHECK(block.value->response == d::block_response::notice);
  CHECK(block.value->legal_basis == "Order No. 123 of 2026-11-20");
  CHECK(block.value->targets.apps == std::vector<std::string>{"telegram"});
  CHECK(block.value->scope.all);
  CHECK(block.value->not_before == t("2026-11-21T00:00:00Z"));
  CHECK_FALSE(block.value->not_after.has_value());

  const auto unblock = d::parse_directive(read("telegram-unblock.yaml"), ctx);
  REQUIRE_MESSAGE(unblock, unblock.error.text());
  CHECK(unblock.value->id == "MINCOM-2026-002");
  CHECK(unblock.value->issuer == block.value->issuer);
  CHECK(unblock.value->action == d::directive_action::unblock);
  CHECK(unblock.value->lifts == std::vector<std::string>{"MINCOM-2026-001"});
  CHECK(unblock.value->targets.empty());
  CHECK(unblock.value->scope.all);
  CHECK(unblock.value->not_before == t("2026-11-28T00:00:00Z"));
}
