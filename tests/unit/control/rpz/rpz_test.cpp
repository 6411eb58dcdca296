// sluice-rpz's pure core (names, answers, windows, the zone text, serials), the command runner,
// and the enforcer's install / failure / rollback path against a fake reload command. The real
// resolver is covered by tests/integration/rpz_test.py (Unbound in a namespace).

#include <doctest/doctest.h>
#include <prometheus/metric_family.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "control/rpz/command.hpp"
#include "control/rpz/enforcer.hpp"
#include "control/rpz/metrics.hpp"
#include "control/rpz/zone.hpp"

namespace rpz = sluice::control::rpz;
namespace agent = sluice::control::agent;
namespace fs = std::filesystem;

namespace {

rpz::zone_config config(std::string notice_host = "") {
  rpz::zone_config c;
  c.notice_host = std::move(notice_host);
  // Without a notice host, sluice-rpz answers the notice action with NXDOMAIN (as its main does).
  if (c.notice_host.empty())
    c.responses.by_action[static_cast<std::size_t>(sluice::match::action::notice)] =
        rpz::response::nxdomain;
  std::string error;
  REQUIRE_MESSAGE(rpz::normalize_config(c, error), error);
  return c;
}

rpz::rpz_policy parse(const std::string& text, const rpz::zone_config& c) {
  std::string error;
  auto p = rpz::parse_policy(text, c, error);
  REQUIRE_MESSAGE(p, error);
  return *p;
}

std::string refused(const std::string& text, const rpz::zone_config& c) {
  std::string error;
  const auto p = rpz::parse_policy(text, c, error);
  CHECK_FALSE(p);
  return error;
}

// The record lines of a zone (after the SOA and NS).
std::vector<std::string> records(const std::string& zone) {
  std::vector<std::string> out;
  std::istringstream in(zone);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == ';' || line[0] == '$' || line[0] == '@') continue;
    out.push_back(line);
  }
  return out;
}

std::string render(const rpz::rpz_policy& p, const rpz::zone_config& c, std::int64_t now = 1000) {
  return rpz::render_zone(c, rpz::entries_at(p, now), 7, {p.revision, p.ruleset_sha256});
}

const char* const telegram = R"(revision: 3
rules:
  - id: tg
    directive: D1
    action: reset
    domains: [telegram.org, "*.telegram.org", "T.ME.", "пример.рф"]
)";

}  // namespace

TEST_CASE("zone: exact names, *. patterns as RPZ wildcards, IDN as A-labels, NXDOMAIN") {
  const rpz::zone_config c = config();
  const rpz::rpz_policy p = parse(telegram, c);
  CHECK(p.revision == 3);
  const std::string zone = render(p, c);
  CHECK(records(zone) == std::vector<std::string>{"*.telegram.org CNAME .", "t.me CNAME .",
                                                  "telegram.org CNAME .",
                                                  "xn--e1afmkfd.xn--p1ai CNAME ."});
  CHECK(zone.find("$ORIGIN sluice.rpz.\n") != std::string::npos);
  CHECK(zone.find("$TTL 60\n") != std::string::npos);
  CHECK(zone.find("@ IN SOA localhost. nobody.invalid. 7 3600 600 86400 60\n") !=
        std::string::npos);
  CHECK(zone.find("@ IN NS localhost.\n") != std::string::npos);
  CHECK(zone.find("revision 3") != std::string::npos);
  CHECK(zone.find(p.ruleset_sha256) != std::string::npos);
  // A lookalike is not in the zone: labels are whole.
  CHECK(zone.find("nottelegram") == std::string::npos);
}

TEST_CASE("zone: each answer kind, by action and by rule id, strongest per name") {
  rpz::zone_config c;
  c.notice_host = "Notice.ISP.example.";
  std::string error;
  REQUIRE(rpz::parse_response_setting("rule:quiet=nodata", c.responses, error));
  REQUIRE(rpz::parse_response_setting("throttle=nodata", c.responses, error));
  REQUIRE(rpz::normalize_config(c, error));
  CHECK(c.notice_host == "notice.isp.example");
  const rpz::rpz_policy p = parse(R"(revision: 1
rules:
  - id: hard
    action: drop
    domains: [a.example, both.example]
  - id: quiet
    action: drop
    domains: [b.example]
  - id: page
    action: notice
    legal_basis: "Order 1"
    domains: [c.example, both.example]
  - id: slow
    action: throttle
    throttle: { rate_bps: 64000, burst_bytes: 16384 }
    domains: [d.example]
  - id: shadow
    action: monitor
    domains: [e.example]
)",
                                  c);
  CHECK(records(render(p, c)) ==
        std::vector<std::string>{"a.example CNAME .", "b.example CNAME *.",
                                 "both.example CNAME .",  // NXDOMAIN beats the notice
                                 "c.example CNAME notice.isp.example.", "d.example CNAME *."});

  // Defaults: throttle is not DNS's to enforce; monitor never is.
  rpz::zone_config d = config("notice.isp.example");
  CHECK(records(render(parse(R"(revision: 1
rules:
  - id: slow
    action: throttle
    throttle: { rate_bps: 64000, burst_bytes: 16384 }
    domains: [d.example]
  - id: shadow
    action: monitor
    domains: [e.example]
)",
                             d),
                       d))
            .empty());
}

TEST_CASE("zone: response settings and configuration errors") {
  rpz::response_config r;
  std::string error;
  CHECK(rpz::parse_response_setting("reset=nodata", r, error));
  CHECK(r.for_rule("x", sluice::match::action::reset) == rpz::response::nodata);
  CHECK(rpz::parse_response_setting("rule:x=none", r, error));
  CHECK(r.for_rule("x", sluice::match::action::reset) == rpz::response::none);
  CHECK_FALSE(rpz::parse_response_setting("reset", r, error));
  CHECK_FALSE(rpz::parse_response_setting("reset=blackhole", r, error));
  CHECK(error.find("nxdomain, nodata, notice, none") != std::string::npos);
  CHECK_FALSE(rpz::parse_response_setting("kill=nodata", r, error));
  CHECK_FALSE(rpz::parse_response_setting("monitor=nxdomain", r, error));
  CHECK_FALSE(rpz::parse_response_setting("rule:=nodata", r, error));

  rpz::zone_config c;  // the notice action answers with the notice host by default
  CHECK_FALSE(rpz::normalize_config(c, error));
  CHECK(error == "a response is 'notice' but no notice host is set");
  c.notice_host = "*.isp.example";
  CHECK_FALSE(rpz::normalize_config(c, error));
  c.notice_host = "bad name.example";
  CHECK_FALSE(rpz::normalize_config(c, error));
  CHECK(error.find("invalid_char") != std::string::npos);
  c.notice_host = "notice.isp.example";
  c.zone = "RPZ.Example.";
  CHECK(rpz::normalize_config(c, error));
  CHECK(c.zone == "rpz.example");
}

TEST_CASE("zone: odd names are refused whole, with the rule and the name") {
  const rpz::zone_config c = config("n.example");
  // Zone-file syntax in a name never reaches the zone: the policy does not parse.
  for (const char* name : {"a;b.example", "a b.example", "$INCLUDE", "a\\\\.example", "a(.example",
                           "web.*.example", "-a.example", "a..example"}) {
    const std::string e = refused(std::string("revision: 1\nrules:\n  - id: r\n    action: drop\n"
                                              "    domains: [\"") +
                                      name + "\"]\n",
                                  c);
    CHECK_MESSAGE(e.find("bad domain") != std::string::npos, name << ": " << e);
  }
  // Names a resolver would read as IP / name-server triggers.
  CHECK(refused("revision: 1\nrules:\n  - id: r\n    action: drop\n    domains: [x.rpz-ip]\n", c) ==
        "bad_name: rule r: 'x.rpz-ip': ends in the RPZ trigger label 'rpz-ip' (a resolver would "
        "read it as an IP or name-server trigger)");
  CHECK(refused("revision: 1\nrules:\n  - id: r\n    action: drop\n    domains: [rpz-nsdname]\n", c)
            .find("rpz-nsdname") != std::string::npos);
  // rpz-ip as an inner label is a name like any other.
  CHECK(records(render(parse("revision: 1\nrules:\n  - id: r\n    action: drop\n"
                             "    domains: [rpz-ip.example]\n",
                             c),
                       c)) == std::vector<std::string>{"rpz-ip.example CNAME ."});
  // A valid 253-character name does not fit below the zone's name.
  std::string longest;
  for (int i = 0; i < 4; ++i) longest += std::string(62, 'a') + ".";
  longest += "b";  // 4 * 63 + 1 = 253
  CHECK(refused(
            "revision: 1\nrules:\n  - id: r\n    action: drop\n    domains: [" + longest + "]\n", c)
            .find("too long for zone sluice.rpz") != std::string::npos);
}

TEST_CASE("zone: windows are honoured at render time") {
  const rpz::zone_config c = config("n.example");
  // 1000..2000 and from 1500.
  const rpz::rpz_policy p = parse(R"(revision: 1
rules:
  - id: w
    action: drop
    not_before: 1970-01-01T00:16:40Z
    not_after: 1970-01-01T00:33:20Z
    domains: [w.example]
  - id: later
    action: drop
    not_before: 1970-01-01T00:25:00Z
    domains: [l.example]
)",
                                  c);
  CHECK(rpz::entries_at(p, 999).empty());
  CHECK(records(render(p, c, 1000)) == std::vector<std::string>{"w.example CNAME ."});
  CHECK(records(render(p, c, 1500)).size() == 2);
  CHECK(records(render(p, c, 2000)) == std::vector<std::string>{"l.example CNAME ."});
  CHECK(rpz::next_change(p, 999) == 1000);
  CHECK(rpz::next_change(p, 1000) == 1500);
  CHECK(rpz::next_change(p, 1500) == 2000);
  CHECK_FALSE(rpz::next_change(p, 2000));
}

TEST_CASE("zone: serials rise strictly, survive in the text, and are re-stamped") {
  CHECK(rpz::next_serial(0, 1700000000) == 1700000000u);
  CHECK(rpz::next_serial(1700000000, 1700000000) == 1700000001u);  // twice in a second
  CHECK(rpz::next_serial(1700000005, 1700000000) == 1700000006u);  // clock set back
  CHECK(rpz::next_serial(1699999999, 1700000000) == 1700000000u);
  CHECK(rpz::next_serial(0xffffffffu, 5) == 5u);  // RFC 1982: 5 is above 0xffffffff
  CHECK(rpz::next_serial(0xffffffffu, 0) == 1u);  // never 0
  const rpz::zone_config c = config("n.example");
  const std::string z = rpz::render_zone(c, {}, 4242, {});
  CHECK(rpz::read_serial(z) == 4242u);
  const auto z2 = rpz::with_serial(z, 4300);
  REQUIRE(z2);
  CHECK(rpz::read_serial(*z2) == 4300u);
  CHECK(z2->size() == z.size());
  CHECK_FALSE(rpz::read_serial("$TTL 60\n@ SOA a. b. 1 2 3 4 5\n"));
  CHECK_FALSE(rpz::with_serial("foreign zone\n", 1));
}

TEST_CASE("command: argv without a shell, placeholders, exit status, output, timeout") {
  CHECK(rpz::split_command("  unbound-control -c /etc/u.conf\tauth_zone_reload {zone} ") ==
        std::vector<std::string>{"unbound-control", "-c", "/etc/u.conf", "auth_zone_reload",
                                 "{zone}"});
  CHECK(rpz::split_command("   ").empty());
  CHECK(rpz::substitute({"rndc", "reload", "{zone}", "--file={file}"}, "z.rpz", "/x/z") ==
        std::vector<std::string>{"rndc", "reload", "z.rpz", "--file=/x/z"});

  rpz::spawn_runner runner(std::chrono::milliseconds(2000));
  rpz::command_result r = runner.run({"sh", "-c", "echo hello; echo err >&2; exit 0"});
  CHECK(r.ok);
  CHECK(r.output == "hello\nerr");
  // No shell between us and the command: a ';' is an argument.
  r = runner.run({"echo", "a;", "exit", "3"});
  CHECK(r.ok);
  CHECK(r.output == "a; exit 3");
  r = runner.run({"sh", "-c", "echo error failed to read sluice.rpz; exit 1"});
  CHECK_FALSE(r.ok);
  CHECK(r.exit_status == 1);
  CHECK(r.describe() == "exit 1: error failed to read sluice.rpz");
  r = runner.run({"sh", "-c", "echo ok; echo refused >&2; exit 2"});
  CHECK(r.describe() == "exit 2: ok / refused");
  r = runner.run({"/nonexistent/reload"});
  CHECK_FALSE(r.ok);
  CHECK(r.describe().find("/nonexistent/reload") != std::string::npos);
  rpz::spawn_runner quick(std::chrono::milliseconds(200));
  r = quick.run({"sleep", "5"});
  CHECK_FALSE(r.ok);
  CHECK(r.error.find("timed out") != std::string::npos);
  CHECK(r.seconds < 2);
}

namespace {

class fake_clock final : public agent::clock {
 public:
  std::int64_t now = 1000;
  std::chrono::steady_clock::time_point steady_now() override {
    return std::chrono::steady_clock::time_point(std::chrono::seconds(now));
  }
  std::int64_t unix_now() override { return now; }
};

// The resolver: each reload reads the zone file (what it would serve from now on) unless told to
// fail; `refuse_if` makes it fail after reading, as a resolver that refused a zone would.
class fake_resolver final : public rpz::command_runner {
 public:
  std::vector<std::vector<std::string>> calls;
  std::string loaded;  // the zone text in force
  bool fail = false;
  std::function<bool(const std::string&)> refuse_if;
  std::function<bool(const std::string&)> check_refuses;

  rpz::command_result run(const std::vector<std::string>& argv) override {
    calls.push_back(argv);
    rpz::command_result r;
    if (argv.at(0) == "check") {
      std::ifstream in(argv.at(1));
      std::stringstream s;
      s << in.rdbuf();
      r.ok = !(check_refuses && check_refuses(s.str()));
      if (!r.ok) r.error = "exit 1", r.output = "zone has errors";
      return r;
    }
    if (fail) {
      r.error = "exit 1";
      r.output = "error connect: Connection refused";
      return r;
    }
    std::ifstream in(argv.at(2));
    std::stringstream s;
    s << in.rdbuf();
    if (refuse_if && refuse_if(s.str())) {
      loaded = s.str();  // it read it...
      r.error = "exit 1";
      r.output = "error zone refused";
      return r;
    }
    loaded = s.str();
    r.ok = true;
    return r;
  }
};

struct recorder final : public rpz::metrics_sink {
  std::size_t names = 0, bytes = 0, reload_ok = 0, reload_failed = 0;
  std::uint32_t serial = 0;
  std::uint64_t revision = 0;
  std::vector<std::string> failures;
  void zone_written(std::size_t n, std::uint32_t s, std::size_t b) override {
    names = n, serial = s, bytes = b;
  }
  void reloaded(bool ok, double) override { ++(ok ? reload_ok : reload_failed); }
  void failed(const char* stage) override { failures.emplace_back(stage); }
  void applied(std::uint64_t r) override { revision = r; }
};

struct temp_dir {
  fs::path path;
  temp_dir() {
    char tmpl[] = "/tmp/sluice-rpz-unit-XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~temp_dir() { fs::remove_all(path); }
};

std::string read(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string policy(int revision, const std::string& domains, const std::string& extra = "") {
  return "revision: " + std::to_string(revision) +
         "\nrules:\n  - id: r1\n    action: drop\n    domains: [" + domains + "]\n" + extra;
}

rpz::enforcer_config enforcer_config(const temp_dir& d, bool check = false) {
  rpz::enforcer_config c;
  c.zone = config("notice.isp.example");
  c.zone_file = d.path / "sluice.rpz.zone";
  c.reload = {"reload", "{zone}", "{file}"};
  if (check) c.check = {"check", "{file}"};
  return c;
}

}  // namespace

TEST_CASE("enforcer: apply writes the zone atomically, reloads it, serial rising") {
  temp_dir d;
  fake_resolver resolver;
  fake_clock clock;
  recorder m;
  std::vector<std::string> logs;
  rpz::enforcer e(enforcer_config(d), resolver, clock,
                  {&m, [&](const std::string& l) { logs.push_back(l); }});
  CHECK(e.current().revision == 0);

  auto r = e.apply(policy(1, "telegram.org, \"*.telegram.org\""), 1);
  REQUIRE_MESSAGE(r.ok, r.error);
  CHECK(resolver.calls.back() ==
        std::vector<std::string>{"reload", "sluice.rpz", (d.path / "sluice.rpz.zone").string()});
  CHECK(resolver.loaded == read(d.path / "sluice.rpz.zone"));
  CHECK(records(resolver.loaded) ==
        std::vector<std::string>{"*.telegram.org CNAME .", "telegram.org CNAME ."});
  CHECK(rpz::read_serial(resolver.loaded) == 1000u);
  CHECK_FALSE(fs::exists(d.path / "sluice.rpz.zone.tmp"));
  CHECK((fs::status(d.path / "sluice.rpz.zone").permissions() & fs::perms::others_read) !=
        fs::perms::none);  // the resolver's user reads it
  CHECK(e.current().revision == 1);
  CHECK(r.ruleset_sha256 == e.current().ruleset_sha256);
  CHECK(m.names == 2);
  CHECK(m.serial == 1000u);
  CHECK(m.revision == 1);
  CHECK(m.reload_ok == 1);
  CHECK(logs.back().find("revision 1 in force") != std::string::npos);

  // Same second: the serial still rises.
  r = e.apply(policy(2, "telegram.org"), 2);
  REQUIRE(r.ok);
  CHECK(rpz::read_serial(resolver.loaded) == 1001u);
  CHECK(e.health() == "ok");

  // A restart reads the serial back from the file: the next one is above it.
  fake_resolver resolver2;
  rpz::enforcer again(enforcer_config(d), resolver2, clock);
  CHECK(again.serial() == 1001u);
  REQUIRE(again.apply(policy(3, "t.me"), 3).ok);
  CHECK(rpz::read_serial(resolver2.loaded) == 1002u);
}

TEST_CASE("enforcer: a failed reload is NACKed, the previous zone restored and reloaded") {
  temp_dir d;
  fake_resolver resolver;
  fake_clock clock;
  recorder m;
  rpz::enforcer e(enforcer_config(d), resolver, clock, {&m, {}});
  REQUIRE(e.apply(policy(1, "telegram.org"), 1).ok);
  const std::string before = records(read(d.path / "sluice.rpz.zone")).at(0);

  // The resolver reads the new zone, then says no: the previous comes back, in the file and in
  // the resolver, with a serial above both.
  resolver.refuse_if = [](const std::string& z) { return z.find("bad.example") != z.npos; };
  clock.now = 1100;
  auto r = e.apply(policy(2, "telegram.org, bad.example"), 2);
  CHECK_FALSE(r.ok);
  CHECK(r.error ==
        "rpz reload: the resolver did not take zone sluice.rpz (serial 1100): exit 1: error zone "
        "refused");
  CHECK(e.current().revision == 1);
  const std::string disk = read(d.path / "sluice.rpz.zone");
  CHECK(records(disk) == std::vector<std::string>{before});
  CHECK(resolver.loaded == disk);
  CHECK(rpz::read_serial(disk) == 1101u);
  CHECK(e.health() == "ok");
  CHECK(m.failures == std::vector<std::string>{"reload"});
  CHECK(m.names == 1);  // the restored zone's
  CHECK(m.revision == 1);

  // The resolver is down: NACKed, the file is the previous one again, and the reload is owed.
  resolver.refuse_if = {};
  resolver.fail = true;
  r = e.apply(policy(3, "t.me"), 3);
  CHECK_FALSE(r.ok);
  CHECK(r.error.find("error connect: Connection refused") != std::string::npos);
  CHECK(records(read(d.path / "sluice.rpz.zone")) == std::vector<std::string>{before});
  CHECK(e.reload_pending());
  CHECK(e.health().find("Connection refused") != std::string::npos);
  // retry() reloads the file on disk once the resolver is back.
  resolver.fail = false;
  const auto again = e.retry();
  REQUIRE(again);
  CHECK(again->ok);
  CHECK(records(resolver.loaded) == std::vector<std::string>{before});
  CHECK_FALSE(e.retry());
  CHECK(e.health() == "ok");
  // And the next good snapshot goes in.
  REQUIRE(e.apply(policy(4, "t.me"), 4).ok);
  CHECK(records(resolver.loaded) == std::vector<std::string>{"t.me CNAME ."});
}

TEST_CASE("enforcer: bad input changes nothing") {
  temp_dir d;
  fake_resolver resolver;
  fake_clock clock;
  rpz::enforcer e(enforcer_config(d, true), resolver, clock);
  REQUIRE(e.apply(policy(1, "telegram.org"), 1).ok);
  const std::string disk = read(d.path / "sluice.rpz.zone");
  const std::size_t calls = resolver.calls.size();

  auto r = e.apply(policy(2, "x.rpz-nsip"), 2);
  CHECK_FALSE(r.ok);
  CHECK(r.error.find("invalid policy: bad_name: rule r1: 'x.rpz-nsip'") == 0);
  r = e.apply("revision: 2\nrules: [\n", 2);
  CHECK_FALSE(r.ok);
  CHECK(r.error.find("invalid policy: ") == 0);
  CHECK(resolver.calls.size() == calls);

  // The check command refuses the new zone: it never replaces the old one, no reload is run.
  resolver.check_refuses = [](const std::string& z) { return z.find("t.me") != z.npos; };
  r = e.apply(policy(3, "t.me"), 3);
  CHECK_FALSE(r.ok);
  CHECK(r.error.find("rpz check: the check command refused the zone: exit 1: zone has errors") ==
        0);
  CHECK(resolver.calls.back().at(0) == "check");
  CHECK(resolver.calls.back().at(1) == (d.path / "sluice.rpz.zone.tmp").string());
  CHECK(read(d.path / "sluice.rpz.zone") == disk);
  CHECK_FALSE(fs::exists(d.path / "sluice.rpz.zone.tmp"));
  CHECK(e.current().revision == 1);

  // An unwritable directory: refused, nothing half-written.
  rpz::enforcer_config gone = enforcer_config(d);
  gone.zone_file = d.path / "missing" / "z.zone";
  rpz::enforcer g(gone, resolver, clock);
  r = g.apply(policy(1, "telegram.org"), 1);
  CHECK_FALSE(r.ok);
  CHECK(r.error.find("rpz write: open ") == 0);
}

TEST_CASE("enforcer: window edges rewrite the zone without a controller") {
  temp_dir d;
  fake_resolver resolver;
  fake_clock clock;
  rpz::enforcer e(enforcer_config(d), resolver, clock);
  // not_after 1970-01-01T00:20:00Z = 1200.
  REQUIRE(e.apply(policy(1, "telegram.org", "    not_after: 1970-01-01T00:20:00Z\n"), 1).ok);
  CHECK(records(resolver.loaded).size() == 1);
  CHECK_FALSE(e.tick());
  clock.now = 1199;
  CHECK_FALSE(e.tick());
  clock.now = 1200;
  const auto t = e.tick();
  REQUIRE(t);
  CHECK(t->ok);
  CHECK(records(resolver.loaded).empty());
  CHECK(e.current().revision == 1);  // the policy in force is the same; its window closed
  CHECK_FALSE(e.tick());

  // Start-up without a verified snapshot: the zone is emptied.
  REQUIRE(e.apply(policy(2, "t.me"), 2).ok);
  const auto before = rpz::read_serial(read(d.path / "sluice.rpz.zone"));
  REQUIRE(before);
  rpz::enforcer fresh(enforcer_config(d), resolver, clock);
  const rpz::install_report rep = fresh.install_current();
  CHECK(rep.ok);
  CHECK(records(resolver.loaded).empty());
  CHECK(rep.serial == *before + 1);
}

TEST_CASE("metrics: names, serial, reloads, failures, revision") {
  rpz::rpz_metrics m("rpz-1");
  m.zone_written(3, 1700000000u, 512);
  m.reloaded(true, 0.01);
  m.reloaded(false, 0.02);
  m.failed("reload");
  m.failed("check");
  m.applied(9);
  std::map<std::string, double> got;
  for (const auto& f : m.collect()) {
    for (const auto& s : f.metric) {
      std::string key = f.name;
      for (const auto& l : s.label) {
        if (l.name != "node") key += "{" + l.name + "=" + l.value + "}";
      }
      got[key] = s.gauge.value + s.counter.value;
    }
  }
  CHECK(got["sluice_rpz_zone_names"] == 3);
  CHECK(got["sluice_rpz_zone_serial"] == 1700000000.0);
  CHECK(got["sluice_rpz_zone_bytes"] == 512);
  CHECK(got["sluice_rpz_reloads_total{result=ok}"] == 1);
  CHECK(got["sluice_rpz_reloads_total{result=failed}"] == 1);
  CHECK(got["sluice_rpz_failures_total{stage=reload}"] == 1);
  CHECK(got["sluice_rpz_failures_total{stage=check}"] == 1);
  CHECK(got["sluice_rpz_failures_total{stage=write}"] == 0);
  CHECK(got["sluice_rpz_applied_revision"] == 9);
}
