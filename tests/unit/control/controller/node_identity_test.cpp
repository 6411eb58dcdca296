// Node identity (issue 14): the inventory decides which nodes are served and with which labels;
// enrolment signs a CSR and pins the certificate; revocation answers a waiting long poll at
// once; refusals are audited without one record per attempt (refusal_log).
#include <doctest/doctest.h>
#include <prometheus/registry.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <thread>
#include <nlohmann/json.hpp>

#include "control/controller/controller.hpp"
#include "control/controller/refusal_log.hpp"
#include "tests/unit/support/openssl_certs.hpp"

namespace ctl = sluice::control::controller;
namespace crypto = sluice::control::crypto;
namespace pki = sluice::control::pki;
namespace store = sluice::control::store;
using nlohmann::json;
using labels_t = std::map<std::string, std::string>;

namespace {

constexpr std::int64_t t0 = 1795867200;

struct fake_clock final : ctl::clock {
  std::int64_t ms = t0 * 1000;
  std::int64_t now_ms() override { return ms; }
  void advance(std::int64_t s) { ms += s * 1000; }
};

const ctl::principal alice{"eng-alice", ctl::role::engineer};
const ctl::principal ministry{"moc", ctl::role::ministry};

std::string rfc(std::int64_t t) {
  char buf[32];
  const std::time_t tt = t;
  std::tm tm{};
  gmtime_r(&tt, &tm);
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string block_doc(const std::string& id) {
  return "id: " + id + "\nissuer: ministry\nissued_at: " + rfc(t0 - 60) +
         "\nlegal_basis: \"Order 1\"\naction: block\nresponse: notice\ntargets:\n  apps: [telegram]\n"
         "scope: all\nnot_before: " + rfc(t0) + "\n";
}

struct fixture {
  sluice::test::cert_dir dir;
  fake_clock clk;
  crypto::key_pair issuer = *crypto::generate_key_pair();
  crypto::key_pair controller_key = *crypto::generate_key_pair();
  std::unique_ptr<store::store> st = store::open_sqlite_store(dir.file("c.db"));
  ctl::controller_config cfg;
  std::unique_ptr<ctl::controller> core;

  explicit fixture(std::function<void(ctl::controller_config&, sluice::test::cert_dir&)> tweak = {}) {
    cfg.issuers.push_back({"ministry", issuer.pub});
    cfg.signing_key = controller_key.sec;
    cfg.apps["telegram"] = {"telegram", "", {"91.108.4.0/22"}, {"telegram.org"}};
    cfg.known_labels = {{"group", {"canary", "main"}}};
    cfg.canary_labels = {{"group", "canary"}};
    cfg.canary_soak_s = 10;
    cfg.stale_after_s = 60;
    dir.make_ca("ca");
    std::string error;
    auto ca = pki::certificate_authority::load(dir.read("ca.crt"), dir.read("ca.key"), error);
    REQUIRE_MESSAGE(ca, error);
    cfg.node_ca = std::make_shared<const pki::certificate_authority>(std::move(*ca));
    if (tweak) tweak(cfg, dir);
    core = std::make_unique<ctl::controller>(cfg, *st, clk);
  }
  void restart() {
    core.reset();
    core = std::make_unique<ctl::controller>(cfg, *st, clk);
  }
  ctl::op_result<ctl::directive_view> submit(const std::string& doc) {
    return core->submit(ministry, doc, *crypto::sign(issuer.sec, doc, "timestamp:0"));
  }
  std::vector<sluice::control::audit::audit_record> records(const std::string& event) {
    std::vector<sluice::control::audit::audit_record> out;
    const auto all = core->audit(0, 0);
    for (const auto& r : *all.value)
      if (r.event == event) out.push_back(r);
    return out;
  }
  double metric(const std::string& name, const std::string& code = "") {
    for (const auto& family : core->registry()->Collect()) {
      if (family.name != name) continue;
      for (const auto& m : family.metric) {
        if (!code.empty() &&
            std::none_of(m.label.begin(), m.label.end(), [&](const auto& l) { return l.value == code; }))
          continue;
        return m.counter.value;
      }
    }
    return -1;
  }
  ctl::snapshot_poll poll(const std::string& node, std::optional<std::uint64_t> held,
                          std::function<void()> wake = [] {}, const labels_t& declared = {}) {
    return core->poll_snapshot(node, declared, held, std::move(wake));
  }
  void ack(const std::string& node, std::uint64_t rev, const labels_t& declared = {}) {
    ctl::status_report rep;
    rep.revision = rev;
    rep.offered = rev;
    REQUIRE(core->node_status(node, declared, rep));
  }
};

}  // namespace

TEST_CASE("refusal_log: the first refusal in full, repeats counted per window, bounded keys") {
  ctl::refusal_log log(ctl::refusal_log::options{60'000, 3});
  CHECK(log.note("node:a", "revoked", 1000));
  for (int i = 0; i < 500; ++i) CHECK_FALSE(log.note("node:a", "revoked", 2000 + i));
  CHECK(log.note("node:a", "not_enrolled", 3000));  // another code: its own key
  CHECK(log.due(60'999).empty());                    // the window has not ended
  auto due = log.due(61'000);
  REQUIRE(due.size() == 1);
  CHECK(due[0].actor == "node:a");
  CHECK(due[0].count == 500);
  CHECK(due[0].first_ms == 2000);
  CHECK(due[0].last_ms == 2499);
  const json detail = json::parse(log.detail_json(due[0]));
  CHECK(detail["aggregated"] == true);
  CHECK(detail["window_seconds"] == 60);
  CHECK(log.keys() == 2);
  // A key quiet for a whole window is forgotten; its next refusal is written in full again.
  CHECK(log.due(63'000).empty());                  // not_enrolled: no repeats -> forgotten
  CHECK(log.keys() == 1);
  CHECK(log.due(121'000).empty());                 // node:a quiet since 61 s -> forgotten
  CHECK(log.keys() == 0);
  CHECK(log.note("node:a", "revoked", 122'000));
  // Beyond max_keys, new callers share one overflow key per code.
  CHECK(log.note("node:b", "revoked", 122'000));
  CHECK(log.note("node:c", "revoked", 122'000));
  CHECK(log.note("node:d", "revoked", 122'000));  // first of the overflow key
  for (int i = 0; i < 1000; ++i) CHECK_FALSE(log.note("node:x" + std::to_string(i), "revoked", 122'001));
  CHECK(log.keys() == 4);
  auto drained = log.drain();
  REQUIRE(drained.size() == 1);
  CHECK(drained[0].actor == std::string(ctl::refusal_log::overflow_actor));
  CHECK(drained[0].count == 1000);
}

TEST_CASE("enrolment with a CSR: the certificate is the node's, pinned; re-enrolling replaces it") {
  fixture f;
  std::string error;
  const auto kc = pki::make_key_and_csr("edge-1", error);
  REQUIRE(kc);
  const auto e = f.core->enroll_node(alice, "edge-1", {{"site", "msk"}}, kc->csr_pem);
  REQUIRE_MESSAGE(e, e.error.message);
  const auto cert = pki::certificate::parse(e.value->certificate_pem, error);
  REQUIRE(cert);
  CHECK(cert->common_name() == "edge-1");
  CHECK(f.cfg.node_ca->verify(*cert).empty());
  CHECK(e.value->ca_pem == f.cfg.node_ca->cert().pem());
  CHECK(e.value->record.fingerprint == cert->fingerprint());
  CHECK(e.value->record.enrolled_by == "eng-alice");

  CHECK_FALSE(f.core->admit_node("edge-1", cert->fingerprint()));
  const auto wrong = f.core->admit_node("edge-1", std::string(64, '0'));
  REQUIRE(wrong);
  CHECK(wrong->code == "certificate_not_current");
  CHECK(ctl::http_status(wrong->kind) == 403);
  // openssl's way of printing it is accepted too.
  std::string upper;
  for (std::size_t i = 0; i < 64; i += 2)
    upper += (i ? ":" : "") + std::string(1, static_cast<char>(std::toupper(cert->fingerprint()[i]))) +
             static_cast<char>(std::toupper(cert->fingerprint()[i + 1]));
  CHECK_FALSE(f.core->admit_node("edge-1", upper));

  const auto enrolled = f.records("node.enrolled");
  REQUIRE(enrolled.size() == 1);
  CHECK(enrolled[0].actor == "eng-alice");
  CHECK(enrolled[0].subject == "edge-1");
  CHECK(json::parse(enrolled[0].detail)["fingerprint"] == cert->fingerprint());

  // A lost key: enrol again; the old certificate stops working at once.
  const auto kc2 = pki::make_key_and_csr("edge-1", error);
  const auto e2 = f.core->enroll_node(alice, "edge-1", {{"site", "msk"}}, kc2->csr_pem);
  REQUIRE(e2);
  CHECK(f.core->admit_node("edge-1", cert->fingerprint())->code == "certificate_not_current");
  CHECK_FALSE(f.core->admit_node("edge-1", e2.value->record.fingerprint));
  CHECK(json::parse(f.records("node.enrolled").back().detail)["previous"]["fingerprint"] ==
        cert->fingerprint());

  // Without a CSR (an ISP CA issues certificates): any certificate with the CN is admitted.
  REQUIRE(f.core->enroll_node(alice, "edge-2", {}, ""));
  CHECK_FALSE(f.core->admit_node("edge-2", ""));
  CHECK_FALSE(f.core->admit_node("edge-2", std::string(64, 'f')));

  // The inventory survives a restart (it is the store's).
  f.restart();
  CHECK_FALSE(f.core->admit_node("edge-1", e2.value->record.fingerprint));
  CHECK(f.core->inventory().size() == 2);
}

TEST_CASE("enrolment refusals are audited and change nothing") {
  fixture f([](ctl::controller_config&, sluice::test::cert_dir&) {});
  std::string error;
  const auto kc = pki::make_key_and_csr("edge-1", error);
  struct row {
    const char* what;
    std::string node;
    labels_t labels;
    std::string csr;
    const char* code;
    int status;
  };
  const row rows[] = {
      {"bad node id", "edge/1", {}, "", "invalid_node_id", 400},
      {"bad label", "edge-1", {{"site", "a,b"}}, "", "invalid_labels", 400},
      {"garbage CSR", "edge-1", {}, "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n", "bad_csr", 400},
  };
  for (const auto& r : rows) {
    CAPTURE(r.what);
    const auto before = f.core->audit(0, 0).value->size();
    const auto e = f.core->enroll_node(alice, r.node, r.labels, r.csr);
    REQUIRE_FALSE(e);
    CHECK(e.error.code == r.code);
    CHECK(ctl::http_status(e.error.kind) == r.status);
    CHECK(f.core->inventory().empty());
    REQUIRE(f.core->audit(0, 0).value->size() == before + 1);
    CHECK(f.core->audit(before, 0).value->back().event == "request.refused");
  }
  // An ISP CA (no key here) cannot sign.
  fixture isp([](ctl::controller_config& c, sluice::test::cert_dir& d) {
    std::string err;
    c.node_ca = std::make_shared<const pki::certificate_authority>(
        *pki::certificate_authority::load(d.read("ca.crt"), "", err));
  });
  const auto no_key = isp.core->enroll_node(alice, "edge-1", {}, kc->csr_pem);
  REQUIRE_FALSE(no_key);
  CHECK(no_key.error.code == "no_ca_key");
  CHECK(isp.core->enroll_node(alice, "edge-1", {}, ""));

  // Bulk: all or nothing.
  std::vector<ctl::configured_node> bulk{{"sim-1", {{"site", "sim"}}}, {"sim-2", {}}};
  REQUIRE(f.core->enroll_nodes(alice, bulk));
  CHECK(f.core->inventory().size() == 2);
  bulk.push_back({"sim-1", {}});
  CHECK(f.core->enroll_nodes(alice, bulk).error.code == "duplicate_node");
  CHECK(f.core->enroll_nodes(alice, std::vector<ctl::configured_node>(1001, {"x", {}})).error.code ==
        "too_many");
  CHECK(f.records("node.enrolled").size() == 2);
}

TEST_CASE("only enrolled nodes are served; refusals are counted and audited once per window") {
  fixture f;
  for (int i = 0; i < 50; ++i) {
    const auto p = f.poll("intruder", std::nullopt);
    REQUIRE(p.k == ctl::snapshot_poll::kind::failed);
    CHECK(p.error.code == "not_enrolled");
    CHECK(ctl::http_status(p.error.kind) == 403);
  }
  ctl::status_report rep;
  CHECK(f.core->node_status("intruder", {}, rep).error.code == "not_enrolled");
  CHECK(f.core->node_impact("intruder", "{}").error.code == "not_enrolled");
  CHECK(f.core->admit_node("intruder", "")->code == "not_enrolled");
  CHECK(f.metric("sluice_control_node_refusals_total", "not_enrolled") == 53);
  CHECK(f.core->nodes().empty());  // a refused node leaves no record behind

  f.core->tick();
  auto first = f.records("request.refused");
  REQUIRE(first.size() == 1);
  CHECK(first[0].actor == "node:intruder");
  const json d = json::parse(first[0].detail);
  CHECK(d["code"] == "not_enrolled");
  CHECK(d["aggregation"].get<std::string>().find("request.refused.repeated") != std::string::npos);
  CHECK(f.records("request.refused.repeated").empty());
  f.clk.advance(61);
  f.core->tick();
  const auto repeated = f.records("request.refused.repeated");
  REQUIRE(repeated.size() == 1);
  CHECK(repeated[0].actor == "node:intruder");
  CHECK(json::parse(repeated[0].detail)["count"] == 52);
  CHECK(f.records("request.refused").size() == 1);
}

TEST_CASE("labels and canary membership come from the inventory, never from the node") {
  fixture f;
  REQUIRE(f.core->enroll_node(alice, "m1", {{"group", "main"}}, ""));
  REQUIRE(f.core->enroll_node(alice, "c1", {{"group", "canary"}}, ""));
  const auto r0 = f.core->rollout().target;
  f.ack("c1", r0);
  f.ack("m1", r0, {{"group", "canary"}});  // m1 claims to be canary in its status
  f.core->tick();
  REQUIRE(f.submit(block_doc("B-1")));  // shadow rules: a canary stage
  REQUIRE(f.core->rollout().stage == "canary");
  const auto r1 = f.core->rollout().target;
  // m1 says "group=canary" in its poll (X-Sluice-Labels): still offered what main nodes get.
  const auto m1 = f.poll("m1", std::nullopt, [] {}, {{"group", "canary"}});
  REQUIRE(m1.k == ctl::snapshot_poll::kind::offer);
  CHECK(m1.offer.revision == r0);
  const auto c1 = f.poll("c1", std::nullopt);
  REQUIRE(c1.k == ctl::snapshot_poll::kind::offer);
  CHECK(c1.offer.revision == r1);
  CHECK(f.metric("sluice_control_node_labels_ignored_total") == 2);
  for (const auto& n : f.core->nodes()) {
    CHECK(n.record.labels.at("group") == (n.record.node_id == "c1" ? "canary" : "main"));
    CHECK(n.canary == (n.record.node_id == "c1"));
  }
  // Nothing the node sent was stored: the store's record carries the inventory's labels.
  f.core->tick();
  for (const auto& n : f.st->list_nodes()) CHECK(n.labels.at("group") == (n.node_id == "c1" ? "canary" : "main"));

  // An engineer relabels m1 into the canary group: its waiting poll is answered again at once,
  // with the canary's revision.
  int woken = 0;
  const auto waiting = f.poll("m1", r0, [&] { ++woken; });
  REQUIRE(waiting.k == ctl::snapshot_poll::kind::waiting);
  REQUIRE(f.core->relabel_node(alice, "m1", {{"group", "canary"}}));
  CHECK(woken == 1);
  CHECK(f.core->waiting_polls() == 0);
  const auto again = f.poll("m1", r0);
  REQUIRE(again.k == ctl::snapshot_poll::kind::offer);
  CHECK(again.offer.revision == r1);
  CHECK(f.records("node.relabelled").size() == 1);
}

TEST_CASE("revocation: the node's waiting long poll is answered 403 at once, then every request") {
  fixture f;
  REQUIRE(f.core->enroll_node(alice, "edge-1", {{"group", "main"}}, ""));
  REQUIRE(f.core->enroll_node(alice, "edge-2", {{"group", "main"}}, ""));
  const auto r0 = f.core->rollout().target;
  f.ack("edge-1", r0);
  f.ack("edge-2", r0);
  int woken1 = 0, woken2 = 0;
  const auto p1 = f.poll("edge-1", r0, [&] { ++woken1; });
  const auto p2 = f.poll("edge-2", r0, [&] { ++woken2; });
  REQUIRE(p1.k == ctl::snapshot_poll::kind::waiting);
  REQUIRE(p2.k == ctl::snapshot_poll::kind::waiting);

  CHECK(f.core->revoke_node(alice, "edge-1", "").error.code == "missing_reason");
  CHECK(f.core->revoke_node(alice, "nobody", "x").error.code == "not_found");
  const auto r = f.core->revoke_node(alice, "edge-1", "host stolen from the PoP");
  REQUIRE(r);
  CHECK(r.value->state == "revoked");
  CHECK(r.value->revoked_by == "eng-alice");
  CHECK(woken1 == 1);  // answered at once: the server calls poll_snapshot again...
  CHECK(woken2 == 0);  // ...and no other node's poll moved
  const auto again = f.poll("edge-1", r0);
  REQUIRE(again.k == ctl::snapshot_poll::kind::failed);
  CHECK(again.error.code == "revoked");
  CHECK(ctl::http_status(again.error.kind) == 403);
  CHECK(f.core->admit_node("edge-1", "")->code == "revoked");
  ctl::status_report rep;
  CHECK(f.core->node_status("edge-1", {}, rep).error.code == "revoked");
  CHECK(f.core->revoke_node(alice, "edge-1", "again").error.code == "already_revoked");
  CHECK(f.core->relabel_node(alice, "edge-1", {}).error.code == "revoked");
  const auto revoked = f.records("node.revoked");
  REQUIRE(revoked.size() == 1);
  CHECK(json::parse(revoked[0].detail)["reason"] == "host stolen from the PoP");
  f.core->tick();
  const auto refused = f.records("request.refused");  // the engineer's four, the node's one
  CHECK(std::count_if(refused.begin(), refused.end(),
                      [](const auto& r) { return r.actor == "node:edge-1"; }) == 1);

  // A revoked node holds no rollout and counts nowhere: it shows as revoked.
  for (const auto& n : f.core->nodes())
    CHECK(n.state == (n.record.node_id == "edge-1" ? "revoked" : "converged"));
  REQUIRE(f.submit(block_doc("B-1")));
  f.clk.advance(11);
  f.core->tick();
  f.ack("edge-2", f.core->rollout().target);
  f.core->tick();
  CHECK(f.core->rollout().stage == "done");

  // Enrolling it again (a new host) serves it again.
  REQUIRE(f.core->enroll_node(alice, "edge-1", {{"group", "main"}}, ""));
  CHECK(f.poll("edge-1", std::nullopt).k == ctl::snapshot_poll::kind::offer);
}

TEST_CASE("admission of a TLS peer: no certificate 401, another node's certificate 403 wrong_node") {
  fixture f;
  REQUIRE(f.core->enroll_node(alice, "edge-1", {}, ""));
  REQUIRE(f.core->enroll_node(alice, "edge-2", {}, ""));
  const auto none = f.core->admit_node_peer("edge-1", false, "", "");
  REQUIRE(none);
  CHECK(none->code == "no_client_certificate");
  CHECK(ctl::http_status(none->kind) == 401);
  const auto other = f.core->admit_node_peer("edge-1", true, "edge-2", std::string(64, 'a'));
  REQUIRE(other);
  CHECK(other->code == "wrong_node");
  CHECK(ctl::http_status(other->kind) == 403);
  CHECK_FALSE(f.core->admit_node_peer("edge-1", true, "edge-1", std::string(64, 'a')));
  CHECK(f.metric("sluice_control_node_refusals_total", "wrong_node") == 1);
  f.core->tick();
  const auto refused = f.records("request.refused");
  REQUIRE(refused.size() == 1);
  CHECK(refused[0].actor == "node:edge-2");  // the certificate's node is who asked
  CHECK(f.core->node_labels("edge-1") == labels_t{});
  CHECK_FALSE(f.core->node_labels("edge-3"));
}

TEST_CASE("nodes from the config are enrolled at start; the config relabels, never un-revokes") {
  fixture f([](ctl::controller_config& c, sluice::test::cert_dir&) {
    c.nodes = {{"edge-1", {{"group", "canary"}}}, {"edge-2", {{"group", "main"}}}};
  });
  auto inv = f.core->inventory();
  REQUIRE(inv.size() == 2);
  CHECK(inv[0].source == "config");
  CHECK(inv[0].enrolled_by == "config");
  CHECK(f.records("node.enrolled").size() == 2);
  CHECK(f.poll("edge-1", std::nullopt).k == ctl::snapshot_poll::kind::offer);

  f.restart();  // the same config: nothing to do
  CHECK(f.records("node.enrolled").size() == 2);
  REQUIRE(f.core->revoke_node(alice, "edge-2", "decommissioned"));
  f.cfg.nodes[0].labels = {{"group", "main"}};
  f.restart();
  CHECK(f.records("node.relabelled").size() == 1);
  CHECK(f.core->node_labels("edge-1") == labels_t{{"group", "main"}});
  CHECK_FALSE(f.core->node_labels("edge-2"));  // still revoked
}

TEST_CASE("replicas share the inventory: a revocation on one is enforced by the other") {
  fixture f([](ctl::controller_config& c, sluice::test::cert_dir&) { c.replicated = true; });
  auto st2 = store::open_sqlite_store(f.dir.file("c.db"));
  ctl::controller_config cfg2 = f.cfg;
  cfg2.replica = "b";
  ctl::controller second(cfg2, *st2, f.clk);
  REQUIRE(f.core->enroll_node(alice, "edge-1", {{"group", "main"}}, ""));
  second.tick();  // hears of it through the store
  const auto r0 = second.rollout().target;
  int woken = 0;
  const auto p = second.poll_snapshot("edge-1", {}, r0, [&] { ++woken; });
  REQUIRE(p.k == ctl::snapshot_poll::kind::waiting);
  REQUIRE(f.core->revoke_node(alice, "edge-1", "stolen"));
  second.tick();
  CHECK(woken == 1);
  CHECK(second.admit_node("edge-1", "")->code == "revoked");
  // Concurrent enrolments on both replicas: neither is lost (the generation is a CAS).
  REQUIRE(f.core->enroll_node(alice, "edge-2", {}, ""));
  REQUIRE(second.enroll_node(alice, "edge-3", {}, ""));
  f.core->tick();
  CHECK(f.core->inventory().size() == 3);
  CHECK(second.inventory().size() == 3);
}

TEST_CASE("replicas started together with one long nodes list all start; each node enrolled once") {
  // Four chunks each (max_bulk is 1,000), three replicas interleaving their CAS commits: each
  // conflict used to count as a failed attempt, and the third ended start-up.
  fixture f([](ctl::controller_config& c, sluice::test::cert_dir&) { c.replicated = true; });
  ctl::controller_config cfg = f.cfg;
  for (int i = 0; i < 4000; ++i) cfg.nodes.push_back({"edge-" + std::to_string(i), {{"group", "main"}}});
  std::vector<std::unique_ptr<store::store>> stores;
  for (int r = 0; r < 3; ++r) stores.push_back(store::open_sqlite_store(f.dir.file("c.db")));
  std::vector<std::string> errors(3);
  std::vector<std::thread> threads;
  for (int r = 0; r < 3; ++r)
    threads.emplace_back([&, r] {
      ctl::controller_config c = cfg;
      c.replica = "r" + std::to_string(r);
      try {
        ctl::controller replica(c, *stores[static_cast<std::size_t>(r)], f.clk);
      } catch (const std::exception& e) {
        errors[static_cast<std::size_t>(r)] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  for (const auto& e : errors) CHECK_MESSAGE(e.empty(), e);
  f.core->tick();
  CHECK(f.core->inventory().size() == 4000);
  const auto all = f.core->audit(0, 0);
  REQUIRE(all);
  CHECK(std::count_if(all.value->begin(), all.value->end(),
                      [](const auto& a) { return a.event == "node.enrolled"; }) == 4000);
}
