// The controller core with a fake clock and a real SQLite store in a temp dir: every refusal
// path with its exact code, the lifecycle (approval, time-driven activation, expiry, lifting,
// revocation), compiled snapshots, the staged rollout and a restart.
#include "control/controller/controller.hpp"

#include <doctest/doctest.h>
#include <prometheus/registry.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "dataplane/match/policy_config.hpp"
#include "tests/unit/support/temp_dir.hpp"

namespace ctl = sluice::control::controller;
namespace crypto = sluice::control::crypto;
namespace store = sluice::control::store;
using nlohmann::json;

namespace {

constexpr std::int64_t t0 = 1795867200;  // 2026-11-28T12:00:00Z

struct fake_clock final : ctl::clock {
  std::int64_t ms = t0 * 1000;
  std::int64_t now_ms() override { return ms; }
  void advance(std::int64_t s) { ms += s * 1000; }
};

struct temp_dir : sluice::test::temp_dir {
  temp_dir() : sluice::test::temp_dir("sluice-ctl") {}
};

const ctl::principal ministry{"moc-operator", ctl::role::ministry};
const ctl::principal alice{"eng-alice", ctl::role::engineer};
const ctl::principal bob{"eng-bob", ctl::role::engineer};

std::string rfc(std::int64_t t) {
  char buf[32];
  const std::time_t tt = t;
  std::tm tm{};
  gmtime_r(&tt, &tm);
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string block_doc(const std::string& id, std::int64_t not_before,
                      std::optional<std::int64_t> not_after = std::nullopt,
                      const std::string& targets = "  apps: [telegram]\n",
                      const std::string& issuer = "ministry") {
  std::string d = "id: " + id + "\nissuer: " + issuer + "\nissued_at: " + rfc(t0 - 60) +
                  "\nlegal_basis: \"Order 123\"\naction: block\nresponse: notice\ntargets:\n" +
                  targets + "scope: all\nnot_before: " + rfc(not_before) + "\n";
  if (not_after) d += "not_after: " + rfc(*not_after) + "\n";
  return d;
}

std::string unblock_doc(const std::string& id, const std::string& lifts, std::int64_t not_before) {
  return "id: " + id + "\nissuer: ministry\nissued_at: " + rfc(t0 - 60) +
         "\nlegal_basis: \"Order 124\"\naction: unblock\nlifts: [" + lifts +
         "]\nscope: all\nnot_before: " + rfc(not_before) + "\n";
}

struct fixture {
  temp_dir dir;
  fake_clock clk;
  crypto::key_pair issuer = *crypto::generate_key_pair();
  crypto::key_pair other = *crypto::generate_key_pair();
  crypto::key_pair controller_key = *crypto::generate_key_pair();
  std::unique_ptr<store::store> st = store::open_sqlite_store((dir.path / "c.db").string());
  ctl::controller_config cfg;
  std::unique_ptr<ctl::controller> core;

  explicit fixture(std::function<void(ctl::controller_config&)> tweak = {}) {
    cfg.issuers.push_back({"ministry", issuer.pub});
    cfg.signing_key = controller_key.sec;
    cfg.apps["telegram"] = {"telegram", "", {"91.108.4.0/22", "2001:67c:4e8::/48"},
                            {"telegram.org", "*.telegram.org", "t.me"}};
    cfg.known_sites = {"site-a"};
    cfg.known_labels = {{"group", {"canary", "main"}}};
    cfg.stale_after_s = 60;
    if (tweak) tweak(cfg);
    core = std::make_unique<ctl::controller>(cfg, *st, clk);
  }
  std::string sign(const std::string& doc, const crypto::key_pair& k) {
    return *crypto::sign(k.sec, doc, "timestamp:0");
  }
  ctl::op_result<ctl::directive_view> submit(const std::string& doc) {
    return core->submit(ministry, doc, sign(doc, issuer));
  }
  std::vector<std::string> events() {
    std::vector<std::string> out;
    const auto records = core->audit(0, 0);
    for (const auto& r : *records.value) out.push_back(r.event);
    return out;
  }
  std::size_t audit_count() { return core->audit(0, 0).value->size(); }
  // Nodes are served only once in the inventory, with the inventory's labels (issue 14).
  void enroll(const std::string& node, const std::map<std::string, std::string>& labels = {}) {
    const auto have = core->node_labels(node);
    if (have && *have == labels) return;
    REQUIRE(core->enroll_node(alice, node, labels, ""));
  }
  // The node's snapshot: revision and its parsed policy (the node's view).
  std::pair<std::uint64_t, sluice::match::policy_spec> snapshot(const std::string& node,
                                                                std::map<std::string, std::string> labels = {}) {
    enroll(node, labels);
    auto r = core->snapshot(node, labels, std::nullopt, std::chrono::milliseconds(0));
    REQUIRE(r);
    const json body = json::parse(*r.value->body);
    const std::string text = body["policy"];
    CHECK(crypto::verify(controller_key.pub, text, body["signature"].get<std::string>()));
    std::istringstream in(text);
    auto spec = sluice::match::load_policy(in);
    REQUIRE_MESSAGE(spec, spec.error.text());
    return {r.value->revision, *spec.spec};
  }
  void ack(const std::string& node, std::uint64_t rev, std::map<std::string, std::string> labels = {}) {
    ctl::status_report rep;
    rep.revision = rev;
    rep.offered = rev;
    enroll(node, labels);
    REQUIRE(core->node_status(node, labels, rep));
  }
};

// Two replicas of one controller sharing one SQLite file: the fixture's core and `second`.
struct replica_pair {
  fixture f{[](ctl::controller_config& c) { c.replicated = true; }};
  std::unique_ptr<store::store> st2 = store::open_sqlite_store((f.dir.path / "c.db").string());
  ctl::controller_config cfg2 = [this] {
    ctl::controller_config c = f.cfg;
    c.replica = "b";
    return c;
  }();
  ctl::controller second{cfg2, *st2, f.clk};
};

}  // namespace

TEST_CASE("submissions that are refused change nothing but the audit log, each with its code") {
  fixture f;
  const std::string good = block_doc("B-1", t0 + 3600);
  REQUIRE(f.submit(good));

  struct row {
    const char* what;
    std::string document;
    std::string signature;
    const char* code;
    ctl::error_kind kind;
    int line;
  };
  const std::string tampered = good + "# edited\n";
  const std::string expired = block_doc("B-2", t0 - 7200, t0 - 3600);
  const std::string unknown_app = block_doc("B-3", t0 + 60, std::nullopt, "  apps: [whatsapp]\n");
  const std::string foreign = block_doc("B-4", t0 + 60, std::nullopt, "  apps: [telegram]\n", "someone-else");
  const std::string lifts_unknown = unblock_doc("U-9", "NOPE", t0 + 60);
  const row rows[] = {
      {"garbage signature", block_doc("B-5", t0 + 60), "not a signature", "malformed_signature",
       ctl::error_kind::invalid, 0},
      {"signed by an untrusted key", block_doc("B-6", t0 + 60), f.sign(block_doc("B-6", t0 + 60), f.other),
       "unknown_issuer_key", ctl::error_kind::invalid, 0},
      {"document changed after signing", tampered, f.sign(good, f.issuer), "bad_signature",
       ctl::error_kind::invalid, 0},
      {"replayed id", good, f.sign(good, f.issuer), "replayed_id", ctl::error_kind::conflict, 0},
      {"expired window", expired, f.sign(expired, f.issuer), "expired", ctl::error_kind::invalid, 0},
      {"unknown app profile", unknown_app, f.sign(unknown_app, f.issuer), "unknown_app",
       ctl::error_kind::invalid, 8},
      {"issuer not the key's", foreign, f.sign(foreign, f.issuer), "issuer_mismatch",
       ctl::error_kind::invalid, 0},
      {"lifts a directive never received", lifts_unknown, f.sign(lifts_unknown, f.issuer),
       "unknown_lifted_directive", ctl::error_kind::invalid, 0},
  };
  for (const auto& r : rows) {
    CAPTURE(r.what);
    const auto before_directives = f.core->directives().value->size();
    const auto before_audit = f.audit_count();
    const auto before_revision = f.core->rollout().target;
    const auto res = f.core->submit(ministry, r.document, r.signature);
    REQUIRE_FALSE(res);
    CHECK(res.error.code == r.code);
    CHECK(res.error.kind == r.kind);
    if (r.line) CHECK(res.error.line == r.line);
    CHECK_FALSE(res.error.message.empty());
    CHECK(f.core->directives().value->size() == before_directives);
    CHECK(f.core->rollout().target == before_revision);
    REQUIRE(f.audit_count() == before_audit + 1);
    const auto last = f.core->audit(before_audit, 0).value->back();
    CHECK(last.event == "request.refused");
    CHECK(json::parse(last.detail)["code"] == r.code);
  }
}

TEST_CASE("four eyes: the submitter cannot approve, nobody approves twice, then time drives it") {
  fixture f([](ctl::controller_config& c) { c.approvals_required = 2; });
  REQUIRE(f.submit(block_doc("B-1", t0 + 600, t0 + 1200)));
  {  // awaiting approval: only shadow rules, which count and never enforce (issue 8)
    const auto shadow = f.snapshot("n1").second;
    REQUIRE_FALSE(shadow.rules.empty());
    for (const auto& r : shadow.rules) {
      CHECK(r.act == sluice::match::action::monitor);
      CHECK(r.directive == "ministry/B-1");
    }
  }

  const auto self = f.core->approve({"moc-operator", ctl::role::engineer}, "ministry", "B-1");
  CHECK(self.error.code == "self_approval");
  REQUIRE(f.core->approve(alice, "ministry", "B-1"));
  CHECK(f.core->approve(alice, "ministry", "B-1").error.code == "already_approved");
  CHECK(f.core->get("ministry", "B-1").value->record.state == "awaiting_approval");
  const auto approved = f.core->approve(bob, "ministry", "B-1");
  REQUIRE(approved);
  CHECK(approved.value->record.state == "scheduled");
  CHECK(f.core->approve(bob, "ministry", "B-1").error.code == "not_awaiting_approval");

  // Scheduled directives are already in the snapshot, with their window: nodes start on time
  // even when cut off from the controller.
  auto [rev, spec] = f.snapshot("n1");
  REQUIRE(spec.rules.size() == 1);
  CHECK(spec.rules[0].act == sluice::match::action::notice);
  CHECK(spec.rules[0].not_before == t0 + 600);
  CHECK(spec.rules[0].not_after == t0 + 1200);
  CHECK(spec.rules[0].prefixes == std::vector<std::string>{"91.108.4.0/22", "2001:67c:4e8::/48"});
  CHECK(spec.rules[0].domains.size() == 3);
  CHECK(spec.rules[0].legal_basis == "Order 123");

  f.clk.advance(600);
  f.core->tick();
  CHECK(f.core->get("ministry", "B-1").value->record.state == "active");
  f.clk.advance(600);
  f.core->tick();
  const auto ended = f.core->get("ministry", "B-1").value->record;
  CHECK(ended.state == "ended");
  CHECK(ended.end_reason == "expired");
  auto [rev2, spec2] = f.snapshot("n1");
  CHECK(rev2 > rev);
  CHECK(spec2.rules.empty());

  const auto ev = f.events();
  for (const char* e : {"directive.received", "directive.approved", "directive.scheduled",
                        "directive.active", "directive.ended", "revision.created"})
    CHECK_MESSAGE(std::find(ev.begin(), ev.end(), e) != ev.end(), e);
}

TEST_CASE("an unblock lifts on its own time, in the snapshot and in the lifecycle") {
  fixture f;
  REQUIRE(f.submit(block_doc("B-1", t0)));
  REQUIRE(f.core->approve(alice, "ministry", "B-1"));
  CHECK(f.core->get("ministry", "B-1").value->record.state == "active");
  REQUIRE(f.submit(unblock_doc("U-1", "B-1", t0 + 300)));
  REQUIRE(f.core->approve(alice, "ministry", "U-1"));
  auto [rev, spec] = f.snapshot("n1");
  REQUIRE(spec.rules.size() == 1);
  CHECK(spec.rules[0].not_after == t0 + 300);  // the node lifts by itself at the unblock's time
  CHECK(f.core->get("ministry", "B-1").value->record.state == "active");
  // The unblock has no rules of its own: a node enforces it once it holds that revision.
  CHECK(f.core->get("ministry", "U-1").value->pending == 1);
  f.ack("n1", rev);
  const auto lift = f.core->get("ministry", "U-1").value;
  CHECK(lift->enforcing == 1);
  CHECK(lift->in_scope == 1);
  f.clk.advance(300);
  f.core->tick();
  const auto b = f.core->get("ministry", "B-1").value->record;
  CHECK(b.state == "ended");
  CHECK(b.end_reason == "lifted");
  const auto [after, none] = f.snapshot("n1");
  CHECK(none.rules.empty());
  f.ack("n1", after);
  CHECK(f.core->get("ministry", "U-1").value->enforcing == 1);
  // Lifting something already ended is refused.
  const auto again = unblock_doc("U-2", "B-1", t0 + 400);
  CHECK(f.core->submit(ministry, again, f.sign(again, f.issuer)).error.code ==
        "unknown_lifted_directive");
}

TEST_CASE("revocation and emergency stop are immediate, need a reason, and are audited") {
  fixture f;
  REQUIRE(f.submit(block_doc("B-1", t0)));
  REQUIRE(f.core->approve(alice, "ministry", "B-1"));
  CHECK(f.snapshot("n1").second.rules.size() == 1);

  CHECK(f.core->set_emergency_stop(alice, true, "").error.code == "missing_reason");
  REQUIRE(f.core->set_emergency_stop(alice, true, "collateral damage reported"));
  CHECK(f.core->rollout().emergency_stop);
  CHECK(f.snapshot("n1").second.rules.empty());
  REQUIRE(f.core->set_emergency_stop(alice, false, "checked"));
  CHECK(f.snapshot("n1").second.rules.size() == 1);

  CHECK(f.core->revoke(ministry, "ministry", "B-1", "").error.code == "missing_reason");
  REQUIRE(f.core->revoke(ministry, "ministry", "B-1", "court order quashed"));
  CHECK(f.core->get("ministry", "B-1").value->record.end_reason == "revoked");
  CHECK(f.snapshot("n1").second.rules.empty());
  CHECK(f.core->revoke(ministry, "ministry", "B-1", "again").error.code == "already_ended");
  const auto ev = f.events();
  for (const char* e : {"emergency_stop.set", "emergency_stop.cleared", "directive.revoked"})
    CHECK_MESSAGE(std::find(ev.begin(), ev.end(), e) != ev.end(), e);
}

TEST_CASE("long poll: 304 while the offer is what the node holds; an approval wakes it") {
  fixture f;
  f.enroll("n1");
  const auto first = f.core->snapshot("n1", {}, std::nullopt, std::chrono::milliseconds(0));
  REQUIRE(first);
  const auto held = first.value->revision;
  const auto same = f.core->snapshot("n1", {}, held, std::chrono::milliseconds(50));
  CHECK_FALSE(same);
  CHECK(same.error.code == "not_modified");

  REQUIRE(f.submit(block_doc("B-1", t0)));
  std::thread approver([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    REQUIRE(f.core->approve(alice, "ministry", "B-1"));
  });
  const auto woke = f.core->snapshot("n1", {}, held, std::chrono::milliseconds(5000));
  approver.join();
  REQUIRE(woke);
  CHECK(woke.value->revision == held + 1);
}

TEST_CASE("event-driven poll: a new offer wakes exactly the waiters it answers, once") {
  fixture f([](ctl::controller_config& c) {
    c.canary_labels = {{"group", "canary"}};
    c.canary_soak_s = 10;
  });
  const std::map<std::string, std::string> canary{{"group", "canary"}}, main{{"group", "main"}};
  const auto r0 = f.snapshot("c1", canary).first;
  std::map<std::string, int> woken;
  auto poll = [&](const std::string& node, const std::map<std::string, std::string>& labels,
                  std::optional<std::uint64_t> held) {
    f.enroll(node, labels);
    return f.core->poll_snapshot(node, labels, held, [&woken, node] { ++woken[node]; });
  };
  // No held revision: answered at once, nothing registered.
  const auto now = poll("m9", main, std::nullopt);
  REQUIRE(now.k == ctl::snapshot_poll::kind::offer);
  CHECK(now.offer.revision == r0);
  CHECK(f.core->waiting_polls() == 0);

  const auto c1 = poll("c1", canary, r0);
  const auto m1 = poll("m1", main, r0);
  const auto m2 = poll("m2", main, r0);
  const auto m3 = poll("m3", main, r0 + 5);  // holds more than anything offered yet
  for (const auto* p : {&c1, &m1, &m2, &m3}) CHECK(p->k == ctl::snapshot_poll::kind::waiting);
  CHECK(f.core->waiting_polls() == 4);
  CHECK(f.core->cancel_poll(m2.ticket));
  CHECK_FALSE(f.core->cancel_poll(m2.ticket));  // once
  CHECK(f.core->waiting_polls() == 3);

  // Submitting starts a rollout of the shadow rules: the canary is offered it, the rest not yet.
  REQUIRE(f.submit(block_doc("B-1", t0)));
  CHECK(f.core->rollout().stage == "canary");
  CHECK(woken == std::map<std::string, int>{{"c1", 1}});
  CHECK_FALSE(f.core->cancel_poll(c1.ticket));  // already woken: the wake is on its way
  const auto again = poll("c1", canary, r0);
  REQUIRE(again.k == ctl::snapshot_poll::kind::offer);
  CHECK(again.offer.revision == r0 + 1);

  // The canary ACKs and soaks: the release wakes m1 (held r0), never the cancelled m2, and not
  // m3, which holds more than is offered.
  f.ack("c1", r0 + 1, canary);
  f.ack("m1", r0, main);
  f.core->tick();
  f.clk.advance(11);
  f.ack("c1", r0 + 1, canary);
  f.ack("m1", r0, main);
  f.core->tick();
  CHECK(f.core->rollout().released == r0 + 1);
  CHECK(woken == std::map<std::string, int>{{"c1", 1}, {"m1", 1}});
  CHECK(f.core->waiting_polls() == 1);
  CHECK(f.core->cancel_poll(m3.ticket));
  CHECK(f.core->waiting_polls() == 0);
}

TEST_CASE("one signed body per revision and scope, the same bytes for every node of it") {
  fixture f([](ctl::controller_config& c) { c.known_sites = {"site-a", "site-b"}; });
  auto offer = [&](const std::string& node, const std::map<std::string, std::string>& labels) {
    f.enroll(node, labels);
    auto r = f.core->snapshot(node, labels, std::nullopt, std::chrono::milliseconds(0));
    REQUIRE(r);
    return r.value->body;
  };
  auto comment = [&](const std::shared_ptr<const std::string>& body) {
    const json j = json::parse(*body);
    CHECK_FALSE(j.contains("node"));  // nothing in the bytes names a node
    const auto v = crypto::verify(f.controller_key.pub, j["policy"].get<std::string>(),
                                  j["signature"].get<std::string>());
    REQUIRE(v);
    CHECK(j["scope"].get<std::string>() == v.trusted_comment.substr(v.trusted_comment.find("scope=") + 6));
    return v.trusted_comment;
  };
  const std::map<std::string, std::string> a{{"site", "site-a"}}, b{{"site", "site-b"}},
      a2{{"site", "site-a"}, {"group", "main"}};
  // Every rule scoped `all`: one body for the whole fleet.
  const auto first = offer("n1", a);
  CHECK(offer("n2", b) == first);
  CHECK(offer("n3", {}) == first);
  const std::uint64_t r0 = f.core->rollout().target;
  CHECK(comment(first) == "sluice-snapshot revision=" + std::to_string(r0) + " scope=all");

  // A directive scoped to site-a: two scopes, two bodies, each shared by its nodes.
  std::string doc = block_doc("B-1", t0);
  doc.replace(doc.find("scope: all"), 10, "scope: { sites: [site-a] }");
  REQUIRE(f.submit(doc));
  REQUIRE(f.core->approve(alice, "ministry", "B-1"));
  const std::uint64_t r = f.core->rollout().target;
  const auto in = offer("n1", a);
  CHECK(offer("n4", a2) == in);  // other labels do not matter, only the scopes' verdicts
  const auto out = offer("n2", b);
  CHECK(offer("n3", {}) == out);
  CHECK(in != out);
  CHECK(*in != *out);
  CHECK(comment(in) == "sluice-snapshot revision=" + std::to_string(r) + " scope=+site:site-a");
  CHECK(comment(out) == "sluice-snapshot revision=" + std::to_string(r) + " scope=!site:site-a");
  CHECK(json::parse(*in)["policy"].get<std::string>().find("B-1") != std::string::npos);
  CHECK(json::parse(*out)["policy"].get<std::string>().find("B-1") == std::string::npos);
  // Signed once each, however many nodes asked (and asked again).
  for (int i = 0; i < 20; ++i) (void)offer("m" + std::to_string(i), i % 2 ? a : b);
  double signed_total = 0;
  for (const auto& family : f.core->registry()->Collect())
    if (family.name == "sluice_control_snapshots_signed_total") signed_total = family.metric.at(0).counter.value;
  CHECK(signed_total == 3);  // r0's one body, r's two; nobody asked for the shadow revision
}

TEST_CASE("staged rollout: canary first, the rest after it ACKs and soaks; a NACK halts") {
  fixture f([](ctl::controller_config& c) {
    c.canary_labels = {{"group", "canary"}};
    c.canary_soak_s = 10;
  });
  const std::map<std::string, std::string> canary{{"group", "canary"}}, main{{"group", "main"}};
  const auto r0 = f.snapshot("c1", canary).first;
  f.ack("c1", r0, canary);
  CHECK(f.snapshot("m1", main).first == r0);
  f.ack("m1", r0, main);
  f.core->tick();

  REQUIRE(f.submit(block_doc("B-1", t0)));
  CHECK(f.core->rollout().target == r0 + 1);  // its shadow rules
  REQUIRE(f.core->approve(alice, "ministry", "B-1"));
  const auto r1 = f.core->rollout().target;
  CHECK(r1 == r0 + 2);
  CHECK(f.core->rollout().stage == "canary");
  CHECK(f.snapshot("c1", canary).first == r1);
  CHECK(f.snapshot("m1", main).first == r0);  // not yet

  f.ack("c1", r1, canary);
  f.core->tick();
  CHECK(f.core->rollout().stage == "canary");  // soaking
  f.clk.advance(11);
  f.ack("m1", r0, main);
  f.ack("c1", r1, canary);
  f.core->tick();
  CHECK(f.core->rollout().stage == "fleet");
  CHECK(f.snapshot("m1", main).first == r1);
  f.ack("m1", r1, main);
  f.core->tick();
  CHECK(f.core->rollout().stage == "done");
  const auto v = f.core->get("ministry", "B-1").value;
  CHECK(v->in_scope == 2);
  CHECK(v->enforcing == 2);

  // Next revision: the canary refuses it -> halted, the rest keeps r1.
  REQUIRE(f.core->revoke(ministry, "ministry", "B-1", "test"));
  const auto r2 = f.core->rollout().target;
  ctl::status_report nack;
  nack.revision = r1;
  nack.offered = r2;
  nack.ack = false;
  nack.error = "policy: line 3: bad rule";
  REQUIRE(f.core->node_status("c1", canary, nack));
  f.core->tick();
  CHECK(f.core->rollout().stage == "halted");
  CHECK(f.core->rollout().reason.find("c1") != std::string::npos);
  CHECK(f.snapshot("m1", main).first == r1);
  bool failing = false;
  for (const auto& n : f.core->nodes()) failing |= n.record.node_id == "c1" && n.state == "failing";
  CHECK(failing);
  // The ended directive's enforcement (nodes without its rules): the canary refused the
  // revision that removes them, the rest has not been offered it yet.
  const auto ended = f.core->get("ministry", "B-1").value;
  CHECK(ended->in_scope == 2);
  CHECK(ended->enforcing == 0);
  CHECK(ended->failing == 1);
  CHECK(ended->pending == 1);
  CHECK(ended->stale == 0);
  const auto ev = f.events();
  CHECK(std::find(ev.begin(), ev.end(), "node.nack") != ev.end());
  CHECK(std::find(ev.begin(), ev.end(), "rollout.halted") != ev.end());
}

TEST_CASE("a silent node becomes stale; a restarted controller has everything") {
  fixture f;
  REQUIRE(f.submit(block_doc("B-1", t0)));
  REQUIRE(f.core->approve(alice, "ministry", "B-1"));
  const auto [rev, spec] = f.snapshot("n1");
  f.ack("n1", rev);
  f.core->tick();
  f.clk.advance(61);
  f.core->tick();
  REQUIRE(f.core->nodes().size() == 1);
  CHECK(f.core->nodes()[0].state == "stale");
  const auto silent = f.core->get("ministry", "B-1").value;
  CHECK(silent->stale == 1);
  CHECK(silent->in_scope == 0);  // a stale node is counted apart

  const auto audit_before = f.audit_count();
  f.core.reset();
  f.core = std::make_unique<ctl::controller>(f.cfg, *f.st, f.clk);
  CHECK(f.core->rollout().target == rev);
  CHECK(f.core->get("ministry", "B-1").value->record.state == "active");
  CHECK(f.audit_count() == audit_before);
  CHECK(f.snapshot("n1").second.rules.size() == 1);
  CHECK(f.core->nodes().size() == 1);
}

namespace {

double counter(ctl::controller& core, const std::string& name) {
  for (const auto& family : core.registry()->Collect())
    if (family.name == name) return family.metric.at(0).counter.value;
  return -1;
}

}  // namespace

// Issue 16 (a directive of 1,000,000 names): yaml-cpp reads such a document in tens of seconds,
// and every tick used to parse each stored directive three times and recompile the fleet's
// policy, all under the lock the nodes' requests wait on.
TEST_CASE("a stored directive is parsed once, and ticks that change nothing compile nothing") {
  fixture f;
  std::string targets = "  domains:\n";
  for (int i = 0; i < 2000; ++i) targets += "    - name" + std::to_string(i) + ".example.com\n";
  REQUIRE(f.submit(block_doc("B-1", t0 + 60, std::nullopt, targets)));
  const double compiles = counter(*f.core, "sluice_control_policy_compiles_total");
  CHECK(counter(*f.core, "sluice_control_directive_parses_total") == 0);  // submit's own parse
  for (int i = 0; i < 10; ++i) f.core->tick();
  CHECK(f.core->get("ministry", "B-1"));
  CHECK(f.core->directives().value->size() == 1);
  REQUIRE(f.core->approve(alice, "ministry", "B-1"));
  CHECK(f.core->get("ministry", "B-1").value->record.state == "scheduled");
  const std::uint64_t scheduled = f.core->rollout().target;
  for (int i = 0; i < 10; ++i) f.core->tick();
  CHECK(counter(*f.core, "sluice_control_directive_parses_total") == 0);
  CHECK(counter(*f.core, "sluice_control_policy_compiles_total") == compiles + 1);  // the approval
  CHECK(f.core->rollout().target == scheduled);

  // Time still drives the lifecycle; scheduled and active directives compile alike (the rule
  // carries its window), so nothing is compiled for it.
  f.clk.advance(60);
  f.core->tick();
  CHECK(f.core->get("ministry", "B-1").value->record.state == "active");
  CHECK(counter(*f.core, "sluice_control_policy_compiles_total") == compiles + 1);
  CHECK(f.core->rollout().target == scheduled);
  // An emergency stop is an input: compiled, and compiled back.
  REQUIRE(f.core->set_emergency_stop(alice, true, "drill"));
  CHECK(f.core->rollout().target == scheduled + 1);
  REQUIRE(f.core->set_emergency_stop(alice, false, "drill over"));
  CHECK(f.core->rollout().target == scheduled + 2);
  CHECK(counter(*f.core, "sluice_control_policy_compiles_total") == compiles + 3);
  for (int i = 0; i < 10; ++i) f.core->tick();
  CHECK(counter(*f.core, "sluice_control_policy_compiles_total") == compiles + 3);
  CHECK(f.snapshot("n1").second.rules.at(0).domains.size() == 2000);

  // A restarted controller reads the stored document once.
  f.core.reset();
  f.core = std::make_unique<ctl::controller>(f.cfg, *f.st, f.clk);
  for (int i = 0; i < 10; ++i) f.core->tick();
  CHECK(f.core->get("ministry", "B-1").value->record.state == "active");
  CHECK(counter(*f.core, "sluice_control_directive_parses_total") == 1);
  CHECK(f.core->rollout().target == scheduled + 2);
}

namespace {

std::string impact_body(const std::string& rule, const std::string& directive,
                        std::int64_t window_end) {
  return json{{"window_start", window_end - 30},
              {"window_end", window_end},
              {"revision", 2},
              {"rules",
               {{{"rule", rule},
                 {"directive", directive},
                 {"flows", 45},
                 {"unnamed", 5},
                 {"names",
                  {{{"name", "telegram.org"}, {"flows", 30}, {"error", 0}},
                   {{"name", "drive.example.com"}, {"flows", 10}, {"error", 0}}}},
                 {"other", 0}}}}}
      .dump();
}

}  // namespace

TEST_CASE("protected targets: approval refused until two engineers override; all audited") {
  fixture f([](ctl::controller_config& c) {
    c.protected_targets.entries.push_back({"cdn-x", {"91.108.4.0/24"}, {}});
  });
  REQUIRE(f.submit(block_doc("P-1", t0)));
  const auto view = f.core->get("ministry", "P-1");
  REQUIRE(view.value->overlaps.size() == 1);
  CHECK(view.value->overlaps[0].item == "91.108.4.0/24");

  const auto refused = f.core->approve(alice, "ministry", "P-1");
  CHECK(refused.error.code == "protected_overlap");
  CHECK(refused.error.kind == ctl::error_kind::forbidden);
  CHECK(refused.error.message.find("91.108.4.0/22") != std::string::npos);
  CHECK(refused.error.message.find("cdn-x") != std::string::npos);
  CHECK(refused.error.message.find("0 of 2") != std::string::npos);

  CHECK(f.core->override_protection(ministry, "ministry", "P-1", "why").error.code ==
        "self_override");
  CHECK(f.core->override_protection(alice, "ministry", "P-1", "").error.code == "missing_reason");
  REQUIRE(f.core->override_protection(alice, "ministry", "P-1", "CDN agreed, ticket 42"));
  CHECK(f.core->override_protection(alice, "ministry", "P-1", "again").error.code ==
        "already_overridden");
  CHECK(f.core->approve(bob, "ministry", "P-1").error.code == "protected_overlap");
  REQUIRE(f.core->override_protection(bob, "ministry", "P-1", "confirmed with the CDN"));
  const auto approved = f.core->approve(alice, "ministry", "P-1");
  REQUIRE_MESSAGE(approved, approved.error.message);
  CHECK(approved.value->record.state == "active");

  const auto ev = f.events();
  CHECK(std::count(ev.begin(), ev.end(), "directive.override_approved") == 2);
  CHECK(std::count(ev.begin(), ev.end(), "request.refused") >= 5);
  CHECK(std::count(ev.begin(), ev.end(), "directive.approved") == 1);

  // A directive overlapping nothing has nothing to override; monitor directives never need it.
  REQUIRE(f.submit(block_doc("P-2", t0, std::nullopt, "  prefixes: [198.51.100.0/24]\n")));
  CHECK(f.core->override_protection(alice, "ministry", "P-2", "x").error.code ==
        "no_protected_overlap");
}

TEST_CASE("impact: shadow rules while awaiting approval, reports aggregated, fresh report required") {
  fixture f([](ctl::controller_config& c) { c.impact_max_age_s = 600; });
  REQUIRE(f.submit(block_doc("I-1", t0, std::nullopt, "  prefixes: [198.51.100.0/24]\n  domains: [telegram.org]\n")));
  const auto refused = f.core->approve(alice, "ministry", "I-1");
  CHECK(refused.error.code == "impact_report_required");

  // The nodes' shadow rule for the prefix saw telegram.org and an unrelated name.
  const auto rules = f.snapshot("n1").second.rules;
  std::string prefix_rule;
  for (const auto& r : rules)
    if (r.id.find("@198.51.100.0/24") != std::string::npos) prefix_rule = r.id;
  REQUIRE_FALSE(prefix_rule.empty());
  CHECK(f.core->node_impact("n1", "{\"not\": \"a report\"}").error.code == "bad_impact_report");
  REQUIRE(f.core->node_impact("n1", impact_body(prefix_rule, "ministry/I-1", t0)));
  f.core->tick();  // written to the store

  const auto report = f.core->impact("ministry", "I-1", 3600, 10);
  REQUIRE(report);
  const json j = json::parse(*report.value);
  CHECK(j["shadow_rules"] == true);
  CHECK(j["nodes"] == 1);
  REQUIRE(j["prefixes"].size() >= 1);
  const auto& p = j["prefixes"][0];
  CHECK(p["prefix"] == "198.51.100.0/24");
  CHECK(p["flows"] == 45);
  CHECK(p["own_flows"] == 30);
  CHECK(p["own_share"].get<double>() == doctest::Approx(0.6667));
  CHECK(p["top_other"][0]["name"] == "drive.example.com");
  CHECK(p["top_other"][0]["share"].get<double>() == doctest::Approx(0.2222));

  const auto approved = f.core->approve(alice, "ministry", "I-1");
  REQUIRE_MESSAGE(approved, approved.error.message);
  // Once approved the shadow rules give way to the enforcing rule.
  for (const auto& r : f.snapshot("n1").second.rules) CHECK(r.act != sluice::match::action::monitor);

  // Too old: the report no longer counts for another directive on the same prefix.
  REQUIRE(f.submit(block_doc("I-2", t0, std::nullopt, "  prefixes: [198.51.100.0/24]\n")));
  f.clk.advance(700);
  CHECK(f.core->approve(alice, "ministry", "I-2").error.code == "impact_report_required");
}

TEST_CASE("replicated: a second controller on the same store follows the first's changes") {
  replica_pair pair;
  fixture& f = pair.f;
  ctl::controller& second = pair.second;
  const auto r0 = second.rollout().target;

  REQUIRE(f.submit(block_doc("R-1", t0)));
  REQUIRE(second.approve(alice, "ministry", "R-1"));  // approves on the other replica
  const auto target = second.rollout().target;
  CHECK(target == r0 + 2);  // shadow revision by the first, enforcing one by the second
  f.core->tick();
  CHECK(f.core->rollout().target == target);
  CHECK(f.core->get("ministry", "R-1").value->record.state == "active");
  // A node long-polling the first replica is offered what the second compiled.
  f.enroll("n9");
  const auto offer = f.core->snapshot("n9", {}, r0, std::chrono::milliseconds(0));
  REQUIRE(offer);
  CHECK(offer.value->revision == target);
}

TEST_CASE("replicated: a node moving to another replica is not registered twice") {
  replica_pair pair;
  fixture& f = pair.f;
  ctl::controller& second = pair.second;
  auto registrations = [&](const std::string& node) {
    const auto records = f.core->audit(0, 0);
    int n = 0;
    for (const auto& r : *records.value) n += r.event == "node.registered" && r.subject == node;
    return n;
  };

  f.ack("n1", 1, {{"site", "site-a"}});
  f.core->tick();  // registration audited, record flushed
  const std::int64_t first_seen = t0;
  REQUIRE(registrations("n1") == 1);
  f.clk.advance(30);
  second.tick();  // the second replica hears of the enrolment through the store
  // n1's replica fails; it reports to the second (and long-polls there) from now on.
  ctl::status_report rep;
  rep.revision = 1;
  rep.offered = 1;
  REQUIRE(second.node_status("n1", {{"site", "site-a"}}, rep));
  second.tick();
  CHECK(registrations("n1") == 1);
  bool found = false;
  for (const auto& n : second.nodes()) {
    if (n.record.node_id != "n1") continue;
    found = true;
    CHECK(n.record.first_seen == first_seen);
    CHECK(n.record.last_seen == t0 + 30);
  }
  CHECK(found);
  // A node neither replica has seen is registered once, by the one it reports to.
  f.clk.advance(1);
  REQUIRE(second.enroll_node(alice, "n2", {{"site", "site-a"}}, ""));
  REQUIRE(second.node_status("n2", {{"site", "site-a"}}, rep));
  second.tick();
  CHECK(registrations("n2") == 1);
}

TEST_CASE("check: a submission's every refusal, with nothing stored, counted or audited") {
  fixture f;
  const auto audit_before = f.audit_count();
  const auto check = [&](const std::string& doc, const std::string& sig,
                         std::optional<ctl::directive_view>* out = nullptr) {
    std::optional<ctl::directive_view> checked;
    auto problems = f.core->check(ministry, doc, sig, checked);
    CHECK(checked.has_value() == problems.empty());
    if (out) *out = std::move(checked);
    return problems;
  };
  const std::string doc = block_doc("B-1", t0);
  std::optional<ctl::directive_view> ok;
  CHECK(check(doc, f.sign(doc, f.issuer), &ok).empty());
  REQUIRE(ok);
  CHECK(ok->record.state == "checked");
  CHECK(ok->record.id == "B-1");
  CHECK(ok->parsed->legal_basis == "Order 123");
  CHECK_FALSE(f.core->get("ministry", "B-1"));  // not stored
  CHECK(f.audit_count() == audit_before);       // not audited

  // The same refusals as submit(), with the document's line and column.
  const std::string bad = block_doc("B-2", t0, std::nullopt, "  prefixes: [10.0.0.1/8]\n");
  const auto refused = check(bad, f.sign(bad, f.issuer));
  REQUIRE(refused.size() == 1);
  CHECK(refused[0].code == "bad_prefix");
  CHECK(refused[0].line == 8);
  CHECK(refused[0].column > 0);
  CHECK(check(doc, f.sign(doc, f.other)).at(0).code == "unknown_issuer_key");
  // A bad signature and a bad document: both, in one check.
  const auto both = check(bad, f.sign(bad + " ", f.issuer));
  REQUIRE(both.size() == 2);
  CHECK(both[0].code == "bad_signature");
  CHECK(both[1].code == "bad_prefix");
  CHECK(both[1].line == 8);
  CHECK(check(doc, f.sign(doc + " ", f.issuer)).size() == 1);  // the document itself is fine
  CHECK(f.audit_count() == audit_before);

  // Once submitted, checking it again says it would be a replay.
  REQUIRE(f.submit(doc));
  CHECK(check(doc, f.sign(doc, f.issuer)).at(0).code == "replayed_id");
}

TEST_CASE("reject: an engineer turns down a directive awaiting approval, with a reason, audited") {
  fixture f;
  REQUIRE(f.submit(block_doc("B-1", t0)));
  const auto shadow = f.core->rollout().target;  // its shadow rules went out
  CHECK(f.core->reject(alice, "ministry", "B-1", "").error.code == "missing_reason");
  const auto r = f.core->reject(alice, "ministry", "B-1", "the order names the wrong ranges");
  REQUIRE(r);
  CHECK(r.value->record.state == "ended");
  CHECK(r.value->record.end_reason == "rejected");
  CHECK(f.core->rollout().target == shadow + 1);  // and leave again
  CHECK(f.core->approve(bob, "ministry", "B-1").error.code == "not_awaiting_approval");
  CHECK(f.core->reject(bob, "ministry", "B-1", "again").error.code == "not_awaiting_approval");
  CHECK(f.core->reject(bob, "ministry", "NOPE", "x").error.code == "not_found");
  // An active directive is revoked by its issuer, not rejected.
  REQUIRE(f.submit(block_doc("B-2", t0)));
  const auto approved = f.core->approve(alice, "ministry", "B-2", "ranges checked against the order");
  REQUIRE(approved);
  CHECK(approved.value->record.approvals.at(0).reason == "ranges checked against the order");
  bool noted = false;
  const auto b2 = f.core->audit_of("ministry/B-2", 100);
  for (const auto& a : *b2.value)
    noted |= a.event == "directive.approved" && a.detail.find("ranges checked") != std::string::npos;
  CHECK(noted);
  CHECK(f.core->reject(alice, "ministry", "B-2", "late").error.code == "not_awaiting_approval");

  // The directive's own timeline, and the whole chain verified.
  const auto timeline = f.core->audit_of("ministry/B-1", 100);
  REQUIRE(timeline);
  std::vector<std::string> events;
  for (const auto& a : *timeline.value) events.push_back(a.event);
  CHECK(std::find(events.begin(), events.end(), "directive.received") != events.end());
  CHECK(events.back() != "directive.approved");
  CHECK(std::find(events.begin(), events.end(), "directive.rejected") != events.end());
  for (const auto& a : *timeline.value) CHECK(a.subject == "ministry/B-1");
  CHECK(f.core->audit_of("ministry/B-1", 1).value->size() == 1);
  const auto chain = f.core->verify_audit();
  REQUIRE(chain);
  CHECK(chain.value->ok);
  CHECK(chain.value->records == f.audit_count());
  CHECK(chain.value->head_hash == f.core->audit(0, 0).value->back().hash);
}
