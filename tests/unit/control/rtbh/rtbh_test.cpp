// sluice-rtbh's pure core (prefixes, windows, reconcile plans) and the enforcer against a fake
// kernel table. The netlink side is covered by tests/integration/rtbh_test.py (namespaces).

#include <doctest/doctest.h>
#include <prometheus/metric_family.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "control/rtbh/enforcer.hpp"
#include "control/rtbh/metrics.hpp"
#include "control/rtbh/reconcile.hpp"
#include "control/rtbh/route_table.hpp"

namespace rtbh = sluice::control::rtbh;
namespace agent = sluice::control::agent;

namespace {

rtbh::prefix P(const std::string& text) {
  std::string error;
  const auto p = rtbh::parse_prefix(text, error);
  REQUIRE_MESSAGE(p, text << ": " << error);
  return *p;
}

std::vector<rtbh::prefix> Ps(std::initializer_list<const char*> texts) {
  std::vector<rtbh::prefix> out;
  for (const char* t : texts) out.push_back(P(t));
  return out;
}

// A kernel table: ours (prefix -> right kind?) and foreign routes list() never reports.
class fake_table final : public rtbh::route_table {
 public:
  std::map<rtbh::prefix, bool> ours;
  std::set<rtbh::prefix> foreign;  // same table, another protocol
  int refuse_errno = 0;            // every add/remove refused with this (EPERM: no CAP_NET_ADMIN)
  bool list_fails = false;
  int lists = 0, add_calls = 0, remove_calls = 0;

  rtbh::list_result list() override {
    ++lists;
    rtbh::list_result r;
    if (list_fails) {
      r.error = "netlink: route dump: boom";
      r.error_number = EIO;
      return r;
    }
    r.ok = true;
    for (const auto& [p, right] : ours) r.routes.push_back({p, right});
    return r;
  }
  rtbh::batch_result add(std::span<const rtbh::prefix> ps) override {
    ++add_calls;
    rtbh::batch_result r;
    for (const auto& p : ps) {
      if (refuse_errno) {
        fail(r, "add", p, refuse_errno);
      } else if (foreign.count(p) || ours.count(p)) {
        fail(r, "add", p, EEXIST);
      } else {
        ours[p] = true;
        ++r.done;
      }
    }
    return r;
  }
  rtbh::batch_result remove(std::span<const rtbh::prefix> ps) override {
    ++remove_calls;
    rtbh::batch_result r;
    for (const auto& p : ps) {
      if (refuse_errno) {
        fail(r, "delete", p, refuse_errno);
      } else {
        ours.erase(p);  // foreign routes are never matched: deletes carry our protocol
        ++r.done;
      }
    }
    return r;
  }
  std::vector<rtbh::prefix> our_prefixes() const {
    std::vector<rtbh::prefix> out;
    for (const auto& [p, right] : ours) out.push_back(p);
    return out;
  }

 private:
  static void fail(rtbh::batch_result& r, const char* what, const rtbh::prefix& p, int e) {
    ++r.failed;
    if (r.error.empty()) {
      r.error = std::string(what) + " " + rtbh::to_string(p) + ": " + std::strerror(e);
      r.error_number = e;
    }
  }
};

class fake_clock final : public agent::clock {
 public:
  std::int64_t now = 1'800'000'000;
  std::chrono::steady_clock::time_point steady_now() override { return {}; }
  std::int64_t unix_now() override { return now; }
};

// 1'800'000'000 is 2027-01-15T08:00:00Z.
const std::string block_policy = R"(revision: 5
rules:
  - id: r1
    action: drop
    prefixes: [198.51.100.0/24, 2001:db8:1::/48]
  - id: r2
    action: reset
    not_before: 2027-01-15T09:00:00Z
    not_after: 2027-01-15T10:00:00Z
    prefixes: [203.0.113.0/25]
  - id: m1
    action: monitor
    prefixes: [192.0.2.0/24]
)";
const std::string lift_policy = "revision: 6\nrules: []\n";

}  // namespace

TEST_CASE("parse_prefix: valid forms and exact errors") {
  struct row {
    const char* input;
    const char* canonical;  // nullptr: refused
    const char* error;
  };
  const row rows[] = {
      {"91.108.4.0/22", "91.108.4.0/22", ""},
      {"203.0.113.7", "203.0.113.7/32", ""},
      {"0.0.0.0/0", "0.0.0.0/0", ""},
      {"2001:67c:4e8::/48", "2001:67c:4e8::/48", ""},
      {"2001:DB8::1", "2001:db8::1/128", ""},
      {"91.108.4.1/22", nullptr, "host bits set"},
      {"2001:db8::1/64", nullptr, "host bits set"},
      {"10.0.0.0/33", nullptr, "bad prefix length"},
      {"10.0.0.0/", nullptr, "bad prefix length"},
      {"10.0.0.0/8x", nullptr, "bad prefix length"},
      {"2001:db8::/129", nullptr, "bad prefix length"},
      {"10.0.0/8", nullptr, "not an IPv4 address"},
      {"telegram.org", nullptr, "not an IPv4 address"},
      {"2001:db8:::/48", nullptr, "not an IPv6 address"},
  };
  for (const row& r : rows) {
    CAPTURE(r.input);
    std::string error;
    const auto p = rtbh::parse_prefix(r.input, error);
    if (r.canonical) {
      REQUIRE(p);
      CHECK(rtbh::to_string(*p) == r.canonical);
    } else {
      CHECK_FALSE(p);
      CHECK(error == r.error);
    }
  }
}

TEST_CASE("make_plan: adds, removes, kept, wrong kind, duplicates") {
  struct row {
    const char* description;
    std::vector<rtbh::prefix> wanted;
    std::vector<rtbh::found_route> found;
    std::vector<rtbh::prefix> adds, removes;
    std::size_t kept;
  };
  const auto a = P("10.0.0.0/8"), b = P("10.1.0.0/16"), c = P("2001:db8::/32"),
             d = P("192.0.2.1/32");
  const row rows[] = {
      {"empty kernel: everything added", {a, b, c}, {}, {a, b, c}, {}, 0},
      {"lift: everything removed", {}, {{a, true}, {c, true}}, {}, {a, c}, 0},
      {"adopt leftovers: wanted kept, stale removed", {a, b}, {{a, true}, {d, true}}, {b}, {d}, 1},
      {"converged: nothing to do", {a, c}, {{c, true}, {a, true}}, {}, {}, 2},
      {"deleted by hand: re-added", {a, b, c}, {{a, true}, {c, true}}, {b}, {}, 2},
      {"wrong kind and wanted: removed and re-added", {a}, {{a, false}}, {a}, {a}, 0},
      {"wrong kind, not wanted: removed", {}, {{b, false}}, {}, {b}, 0},
      {"duplicates in the dump", {a}, {{a, true}, {a, true}, {d, true}, {d, true}}, {}, {d}, 1},
  };
  for (const row& r : rows) {
    CAPTURE(r.description);
    const rtbh::plan pl = rtbh::make_plan(r.wanted, r.found);
    CHECK(pl.adds == r.adds);
    CHECK(pl.removes == r.removes);
    CHECK(pl.kept == r.kept);
  }
}

TEST_CASE("wanted_at and next_change: windows, monitor rules install nothing") {
  std::string error;
  const auto p = rtbh::parse_policy(block_policy, error);
  REQUIRE_MESSAGE(p, error);
  CHECK(p->revision == 5);
  CHECK(p->ruleset_sha256.size() == 64);
  const std::int64_t t0 = 1'800'000'000;  // 08:00: r2 not yet
  const std::int64_t opens = t0 + 3600;   // 09:00
  const std::int64_t closes = t0 + 7200;  // 10:00
  struct row {
    std::int64_t now;
    std::vector<rtbh::prefix> wanted;
    std::optional<std::int64_t> next;
  };
  const row rows[] = {
      {t0, Ps({"198.51.100.0/24", "2001:db8:1::/48"}), opens},
      {opens - 1, Ps({"198.51.100.0/24", "2001:db8:1::/48"}), opens},
      {opens, Ps({"198.51.100.0/24", "203.0.113.0/25", "2001:db8:1::/48"}), closes},
      {closes - 1, Ps({"198.51.100.0/24", "203.0.113.0/25", "2001:db8:1::/48"}), closes},
      {closes, Ps({"198.51.100.0/24", "2001:db8:1::/48"}), std::nullopt},
  };
  for (const row& r : rows) {
    CAPTURE(r.now);
    CHECK(rtbh::wanted_at(*p, r.now) == r.wanted);
    CHECK(rtbh::next_change(*p, r.now) == r.next);
  }
}

TEST_CASE("parse_policy refuses bad documents whole, with line and column") {
  struct row {
    const char* description;
    std::string text;
    const char* error_prefix;
  };
  const row rows[] = {
      {"host bits set",
       "revision: 1\nrules:\n  - id: r1\n    action: drop\n    prefixes: [10.0.0.1/8]\n", ":5:"},
      {"not an address",
       "revision: 1\nrules:\n  - id: r1\n    action: drop\n    prefixes: [nope]\n", ":5:"},
      {"apps need a profile dir",
       "revision: 1\nrules:\n  - id: r1\n    action: drop\n    apps: [telegram]\n", ":5:"},
  };
  for (const row& r : rows) {
    CAPTURE(r.description);
    std::string error;
    CHECK_FALSE(rtbh::parse_policy(r.text, error));
    CAPTURE(error);
    CHECK(error.find(r.error_prefix) != std::string::npos);
  }
}

TEST_CASE("enforcer: block, lift, adoption, hand deletion, foreign routes, windows") {
  fake_table table;
  fake_clock clock;
  rtbh::rtbh_metrics metrics("edge-1");
  rtbh::enforcer_options eo;
  eo.metrics = &metrics;
  rtbh::enforcer e(table, clock, eo);
  CHECK(e.current().revision == 0);
  CHECK(e.current().ruleset_sha256 == rtbh::empty_policy().ruleset_sha256);

  SUBCASE("block then lift") {
    table.foreign.insert(P("198.51.100.0/25"));  // another protocol's route: never touched
    const agent::apply_result r = e.apply(block_policy, 5);
    REQUIRE_MESSAGE(r.ok, r.error);
    CHECK(table.our_prefixes() == Ps({"198.51.100.0/24", "2001:db8:1::/48"}));
    CHECK(e.current().revision == 5);
    CHECK(e.current().ruleset_sha256 == r.ruleset_sha256);

    const agent::apply_result l = e.apply(lift_policy, 6);
    REQUIRE(l.ok);
    CHECK(table.our_prefixes().empty());
    CHECK(table.foreign == std::set<rtbh::prefix>{P("198.51.100.0/25")});
    CHECK(e.current().revision == 6);
  }
  SUBCASE("leftovers of a previous run are adopted or removed") {
    table.ours[P("198.51.100.0/24")] = true;   // still wanted: kept as it is
    table.ours[P("10.66.0.0/16")] = true;      // not wanted any more
    table.ours[P("2001:db8:1::/48")] = false;  // wanted, but of the other kind
    REQUIRE(e.apply(block_policy, 5).ok);
    CHECK(table.our_prefixes() == Ps({"198.51.100.0/24", "2001:db8:1::/48"}));
    CHECK(table.ours.at(P("2001:db8:1::/48")) == true);
  }
  SUBCASE("a route deleted by hand comes back on the next reconcile") {
    REQUIRE(e.apply(block_policy, 5).ok);
    table.ours.erase(P("198.51.100.0/24"));
    const rtbh::reconcile_report rep = e.reconcile();
    CHECK(rep.ok);
    CHECK(rep.added == 1);
    CHECK(rep.kept == 1);
    CHECK(rep.routes == 2);
    CHECK(table.our_prefixes() == Ps({"198.51.100.0/24", "2001:db8:1::/48"}));
  }
  SUBCASE("windows open and close by themselves") {
    REQUIRE(e.apply(block_policy, 5).ok);
    CHECK_FALSE(e.tick());  // nothing due
    clock.now += 3600;      // r2 opens
    const auto opened = e.tick();
    REQUIRE(opened);
    CHECK(opened->added == 1);
    CHECK(table.ours.count(P("203.0.113.0/25")) == 1);
    clock.now += 3600;  // r2 closes (not_after is exclusive)
    const auto closed = e.tick();
    REQUIRE(closed);
    CHECK(closed->removed == 1);
    CHECK(table.ours.count(P("203.0.113.0/25")) == 0);
    CHECK_FALSE(e.tick());
  }
  SUBCASE("an invalid prefix is refused whole: previous routes and policy stay") {
    REQUIRE(e.apply(block_policy, 5).ok);
    const int adds_before = table.add_calls, removes_before = table.remove_calls;
    const agent::apply_result r = e.apply(
        "revision: 6\nrules:\n  - id: r1\n    action: drop\n    prefixes: [10.0.0.0/8, "
        "10.0.0.1/8]\n",
        6);
    CHECK_FALSE(r.ok);
    CHECK(r.error.rfind("invalid policy: ", 0) == 0);
    CHECK(r.error.find(":5:") != std::string::npos);
    CHECK(table.add_calls == adds_before);  // nothing reached the kernel
    CHECK(table.remove_calls == removes_before);
    CHECK(table.our_prefixes() == Ps({"198.51.100.0/24", "2001:db8:1::/48"}));
    CHECK(e.current().revision == 5);
  }
  SUBCASE("no CAP_NET_ADMIN: the apply fails with EPERM, previous routes stay") {
    REQUIRE(e.apply(block_policy, 5).ok);
    table.refuse_errno = EPERM;
    const agent::apply_result lift = e.apply(lift_policy, 6);
    CHECK_FALSE(lift.ok);
    CHECK(lift.error == "netlink: delete 198.51.100.0/24: Operation not permitted");
    const agent::apply_result more = e.apply(
        "revision: 7\nrules:\n  - id: r1\n    action: drop\n    prefixes: [10.0.0.0/8]\n", 7);
    CHECK_FALSE(more.ok);
    CHECK(more.error == "netlink: add 10.0.0.0/8: Operation not permitted");
    CHECK(table.our_prefixes() == Ps({"198.51.100.0/24", "2001:db8:1::/48"}));
    CHECK(e.current().revision == 5);
    CHECK(e.health() == "ok");               // the kernel still matches the policy in force
    table.ours.erase(P("198.51.100.0/24"));  // now it does not, and cannot be repaired
    CHECK_FALSE(e.reconcile().ok);
    CHECK(e.health() == "netlink: add 198.51.100.0/24: Operation not permitted");
  }
  SUBCASE("a refused add rolls back the part of the new policy that got in") {
    REQUIRE(e.apply(block_policy, 5).ok);
    table.foreign.insert(P("10.2.0.0/16"));  // the kernel refuses ours there (EEXIST)
    const agent::apply_result r = e.apply(
        "revision: 6\nrules:\n  - id: r1\n    action: drop\n    prefixes: [10.1.0.0/16, "
        "10.2.0.0/16]\n",
        6);
    CHECK_FALSE(r.ok);
    CHECK(r.error == "netlink: add 10.2.0.0/16: File exists");
    CHECK(table.our_prefixes() == Ps({"198.51.100.0/24", "2001:db8:1::/48"}));
    CHECK(e.current().revision == 5);
  }
  SUBCASE("a failed route dump refuses the apply") {
    table.list_fails = true;
    const agent::apply_result r = e.apply(block_policy, 5);
    CHECK_FALSE(r.ok);
    CHECK(r.error == "netlink: netlink: route dump: boom");
    CHECK(table.ours.empty());
    CHECK(e.current().revision == 0);
  }
}

TEST_CASE("metrics follow reconciles and applies") {
  fake_table table;
  fake_clock clock;
  rtbh::rtbh_metrics metrics("edge-1");
  rtbh::enforcer_options eo;
  eo.metrics = &metrics;
  rtbh::enforcer e(table, clock, eo);
  REQUIRE(e.apply(block_policy, 5).ok);
  table.refuse_errno = EPERM;
  table.ours.clear();
  (void)e.reconcile();  // two adds refused
  std::map<std::string, double> values;
  for (const auto& f : metrics.collect()) {
    REQUIRE(f.metric.size() == 1);
    const auto& m = f.metric[0];
    switch (f.type) {
      case prometheus::MetricType::Gauge:
        values[f.name] = m.gauge.value;
        break;
      case prometheus::MetricType::Counter:
        values[f.name] = m.counter.value;
        break;
      case prometheus::MetricType::Histogram:
        values[f.name] = static_cast<double>(m.histogram.sample_count);
        break;
      default:
        break;
    }
    CHECK(m.label.at(0).name == "node");
  }
  CHECK(values["sluice_rtbh_applied_revision"] == 5);
  CHECK(values["sluice_rtbh_reconcile_runs_total"] == 2);
  CHECK(values["sluice_rtbh_reconcile_seconds"] == 2);
  CHECK(values["sluice_rtbh_netlink_errors_total"] == 2);
  CHECK(values["sluice_rtbh_routes"] == 0);
}
