// The controller's audit checkpoints (issue 14): signed when the audit head moves (at most once
// per tick, and before new offers), carried by every 200 body (the shared, cached body with the
// checkpoint appended: no snapshot is re-signed for it) and by the 304's header; nodes' reported
// checkpoints verified and stored in their records, shown by GET /v1/nodes; GET
// /v1/audit/checkpoint. The core with a fake clock, then the real HTTP edge on loopback.
#include <doctest/doctest.h>
#include <httplib.h>
#include <prometheus/registry.h>
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "control/api/http_api.hpp"
#include "control/audit/checkpoint.hpp"
#include "control/controller/controller.hpp"
#include "control/fleet/compile.hpp"
#include "tests/unit/support/temp_dir.hpp"

namespace ctl = sluice::control::controller;
namespace api = sluice::control::api;
namespace audit = sluice::control::audit;
namespace crypto = sluice::control::crypto;
namespace store = sluice::control::store;
using nlohmann::json;

namespace {

constexpr std::int64_t t0 = 1795867200;  // 2026-11-28T12:00:00Z

struct fake_clock final : ctl::clock {
  std::int64_t ms = t0 * 1000;
  std::int64_t now_ms() override { return ms; }
};

struct temp_dir : sluice::test::temp_dir {
  temp_dir() : sluice::test::temp_dir("sluice-ctl-cp") {}
};

std::string rfc(std::int64_t t) { return sluice::control::fleet::format_rfc3339(t); }

std::string block_doc(const std::string& id) {
  return "id: " + id + "\nissuer: ministry\nissued_at: " + rfc(t0 - 60) +
         "\nlegal_basis: \"Order 123\"\naction: block\nresponse: notice\ntargets:\n"
         "  domains: [t.me]\nscope: all\nnot_before: " +
         rfc(t0) + "\n";
}

const ctl::principal ministry{"moc-operator", ctl::role::ministry};

struct fixture {
  temp_dir dir;
  fake_clock clk;
  crypto::key_pair issuer = *crypto::generate_key_pair();
  crypto::key_pair controller_key = *crypto::generate_key_pair();
  std::unique_ptr<store::store> st = store::open_sqlite_store((dir.path / "c.db").string());
  ctl::controller_config cfg;
  std::unique_ptr<ctl::controller> core;

  explicit fixture(bool replicated = false) {
    cfg.issuers.push_back({"ministry", issuer.pub});
    cfg.signing_key = controller_key.sec;
    cfg.replica = "ctl-a";
    cfg.replicated = replicated;
    // Only the inventory's nodes are served (issue 14).
    for (const char* id : {"n1", "n2", "n3", "good", "forged", "edited", "junk", "witness"})
      cfg.nodes.push_back({id, {}});
    core = std::make_unique<ctl::controller>(cfg, *st, clk);
  }
  void submit(const std::string& id) {
    const std::string doc = block_doc(id);
    REQUIRE(core->submit(ministry, doc, *crypto::sign(issuer.sec, doc, "timestamp:0")));
  }
  // The log's head as the store has it.
  std::pair<std::uint64_t, std::string> head() {
    const auto h = st->audit_head();
    REQUIRE(h);
    return {h->seq, h->hash};
  }
  double metric(const std::string& name) {
    for (const auto& family : core->registry()->Collect())
      if (family.name == name) {
        const auto& m = family.metric.at(0);
        return family.type == prometheus::MetricType::Counter ? m.counter.value : m.gauge.value;
      }
    return -1;
  }
};

// The checkpoint a 200 body carries, verified with `key`.
audit::checkpoint body_checkpoint(const std::string& body, const crypto::public_key& key) {
  const json j = json::parse(body);
  REQUIRE(j.contains("checkpoint"));
  std::string error;
  const auto c = audit::parse_checkpoint(j["checkpoint"].dump(), error);
  REQUIRE_MESSAGE(c, error);
  CHECK(audit::verify_checkpoint(key, *c));
  // The snapshot's own signature still covers its policy, untouched.
  CHECK(crypto::verify(key, j["policy"].get<std::string>(), j["signature"].get<std::string>()));
  return *c;
}

}  // namespace

TEST_CASE("controller checkpoints: signed at start and on every head change, in 200s and 304s") {
  fixture f;
  const auto pub = f.controller_key.pub;

  // At start: a checkpoint of the head as it is (controller.initialised and its rollout).
  auto cp = f.core->audit_checkpoint();
  REQUIRE(cp);
  CHECK(audit::verify_checkpoint(pub, *cp));
  CHECK(std::make_pair(cp->count, cp->head) == f.head());
  CHECK(cp->replica == "ctl-a");

  // A 200 carries it.
  auto first = f.core->poll_snapshot("n1", {}, std::nullopt, [] {});
  REQUIRE(first.k == ctl::snapshot_poll::kind::offer);
  CHECK(body_checkpoint(*first.offer.body, pub) == *cp);
  const std::uint64_t r1 = first.offer.revision;

  // Another node registers: audited with the next tick, which moves the head and signs again.
  ctl::status_report rep;
  rep.revision = r1;
  rep.offered = r1;
  REQUIRE(f.core->node_status("n3", {}, rep));
  const double signed_before = f.metric("sluice_control_snapshots_signed_total");
  f.core->tick();
  cp = f.core->audit_checkpoint();
  REQUIRE(cp);
  CHECK(std::make_pair(cp->count, cp->head) == f.head());
  CHECK(f.metric("sluice_control_audit_checkpoint_records") == static_cast<double>(cp->count));

  // 304: the node's revision did not move, its wait is registered (a checkpoint wakes nobody),
  // and the answer's header carries the new checkpoint.
  const auto waiting = f.core->poll_snapshot("n1", {}, r1, [] { FAIL("woken by a checkpoint"); });
  CHECK(waiting.k == ctl::snapshot_poll::kind::waiting);
  CHECK(f.core->cancel_poll(waiting.ticket));
  const auto header = f.core->audit_checkpoint_header();
  REQUIRE(header);
  std::string error;
  const auto from_header = audit::parse_checkpoint_header(*header, error);
  REQUIRE_MESSAGE(from_header, error);
  CHECK(*from_header == *cp);

  // A node asking again for the same revision gets the same snapshot with the new checkpoint:
  // the body was rebuilt by concatenation, not signed again.
  auto again = f.core->poll_snapshot("n2", {}, std::nullopt, [] {});
  REQUIRE(again.k == ctl::snapshot_poll::kind::offer);
  CHECK(again.offer.revision == r1);
  CHECK(body_checkpoint(*again.offer.body, pub) == *cp);
  CHECK(f.metric("sluice_control_snapshots_signed_total") == signed_before);
  // The first node's cached body moves on too.
  auto n1_again = f.core->poll_snapshot("n1", {}, std::nullopt, [] {});
  CHECK(body_checkpoint(*n1_again.offer.body, pub) == *cp);
  CHECK(n1_again.offer.body == again.offer.body);  // one shared body per (revision, scope)

  // Nothing new in the log: no new checkpoint however often it ticks.
  const double checkpoints = f.metric("sluice_control_audit_checkpoints_signed_total");
  f.core->tick();
  f.core->tick();
  CHECK(f.metric("sluice_control_audit_checkpoints_signed_total") == checkpoints);

  // A submission moves the head and makes a revision (its shadow rules): the node woken for it
  // gets a checkpoint that already covers the submission's records.
  bool woken = false;
  const auto w = f.core->poll_snapshot("n1", {}, r1, [&woken] { woken = true; });
  REQUIRE(w.k == ctl::snapshot_poll::kind::waiting);
  f.submit("B-1");
  CHECK(woken);
  const auto offer = f.core->poll_snapshot("n1", {}, r1, [] {});
  REQUIRE(offer.k == ctl::snapshot_poll::kind::offer);
  CHECK(offer.offer.revision == r1 + 1);
  const audit::checkpoint with_b1 = body_checkpoint(*offer.offer.body, pub);
  CHECK(std::make_pair(with_b1.count, with_b1.head) == f.head());
  CHECK(with_b1.count > cp->count);
}

TEST_CASE("controller checkpoints: nodes' reports are verified before they are stored") {
  fixture f;
  const auto cp = *f.core->audit_checkpoint();
  ctl::status_report rep;
  rep.revision = 1;
  rep.audit_checkpoint = audit::checkpoint_json(cp);
  REQUIRE(f.core->node_status("good", {}, rep));

  auto other = *crypto::generate_key_pair();
  rep.audit_checkpoint = audit::checkpoint_json(
      *audit::make_checkpoint(other.sec, cp.count + 5, cp.head, cp.at, "mallory"));
  REQUIRE(f.core->node_status("forged", {}, rep));  // the report counts; the checkpoint does not
  audit::checkpoint edited = cp;
  edited.count += 3;
  rep.audit_checkpoint = audit::checkpoint_json(edited);
  REQUIRE(f.core->node_status("edited", {}, rep));
  rep.audit_checkpoint = "{\"count\": \"lots\"}";
  REQUIRE(f.core->node_status("junk", {}, rep));
  CHECK(f.metric("sluice_control_audit_checkpoints_refused_total") == 3);

  // A conflict a node holds: stored and audited once.
  auto fork = *audit::make_checkpoint(f.cfg.signing_key, cp.count, audit::sha256_hex("fork"), cp.at, "ctl-b");
  rep.audit_checkpoint = audit::checkpoint_json(cp);
  rep.audit_checkpoint_conflict = audit::checkpoint_json(fork);
  REQUIRE(f.core->node_status("witness", {}, rep));
  REQUIRE(f.core->node_status("witness", {}, rep));
  f.core->tick();

  std::map<std::string, ctl::node_view> by_id;
  for (auto& n : f.core->nodes()) by_id.emplace(n.record.node_id, n);
  CHECK(by_id.at("good").record.audit_checkpoint == audit::checkpoint_json(cp));
  CHECK(by_id.at("forged").record.audit_checkpoint.empty());
  CHECK(by_id.at("edited").record.audit_checkpoint.empty());
  CHECK(by_id.at("junk").record.audit_checkpoint.empty());
  CHECK(by_id.at("witness").record.audit_checkpoint_conflict == audit::checkpoint_json(fork));
  int conflicts = 0;
  const auto records = f.core->audit(0, 0);
  REQUIRE(records);
  for (const auto& r : *records.value)
    if (r.event == "node.audit_checkpoint_conflict") ++conflicts;
  CHECK(conflicts == 1);

  // Persisted with the node records: a restarted controller shows them.
  f.core.reset();
  f.core = std::make_unique<ctl::controller>(f.cfg, *f.st, f.clk);
  for (auto& n : f.core->nodes())
    if (n.record.node_id == "good") CHECK(n.record.audit_checkpoint == audit::checkpoint_json(cp));
  // A report without one keeps what the node reported before.
  rep.audit_checkpoint.clear();
  rep.audit_checkpoint_conflict.clear();
  REQUIRE(f.core->node_status("good", {}, rep));
  for (auto& n : f.core->nodes())
    if (n.record.node_id == "good") CHECK(n.record.audit_checkpoint == audit::checkpoint_json(cp));
}

TEST_CASE("controller checkpoints over HTTP: the 304 header, GET /v1/nodes, GET /v1/audit/checkpoint") {
  fixture f;
  api::server_options o;
  o.host = "127.0.0.1";
  o.port = 0;
  api::http_server server(o);
  api::http_api routes(*f.core, {{"node-fleet", ctl::role::node, api::token_hash("tok-node")},
                                 {"viewer", ctl::role::viewer, api::token_hash("tok-viewer")}});
  routes.attach(server);
  std::thread loop([&] { server.run(); });
  struct stop_at_exit {
    api::http_server& s;
    std::thread& t;
    ~stop_at_exit() {
      s.stop();
      t.join();
    }
  } stopper{server, loop};
  httplib::Client c("127.0.0.1", server.port());
  c.set_read_timeout(10, 0);
  const auto pub = f.controller_key.pub;

  c.set_bearer_token_auth("tok-node");
  auto res = c.Get("/v1/nodes/n1/snapshot?wait=0");
  REQUIRE(res);
  REQUIRE(res->status == 200);
  const auto in_200 = body_checkpoint(res->body, pub);
  const std::string etag = res->get_header_value("ETag");

  // The node reports what it took; the registration moves the head at the next tick.
  json status{{"revision", 1}, {"offered", 1}, {"ruleset_sha256", ""}, {"result", "ack"},
              {"audit_checkpoint", json::parse(audit::checkpoint_json(in_200))}};
  res = c.Post("/v1/nodes/n1/status", status.dump(), "application/json");
  REQUIRE(res);
  CHECK(res->status == 204);
  f.core->tick();
  const auto now = *f.core->audit_checkpoint();
  CHECK(now.count > in_200.count);

  res = c.Get("/v1/nodes/n1/snapshot?wait=0", {{"If-None-Match", etag}});
  REQUIRE(res);
  CHECK(res->status == 304);
  std::string error;
  const auto in_304 = audit::parse_checkpoint_header(res->get_header_value("X-Sluice-Audit-Checkpoint"), error);
  REQUIRE_MESSAGE(in_304, error);
  CHECK(*in_304 == now);
  CHECK(audit::verify_checkpoint(pub, *in_304));

  c.set_bearer_token_auth("tok-viewer");
  res = c.Get("/v1/nodes");
  REQUIRE(res);
  const json nodes = json::parse(res->body)["nodes"];
  REQUIRE(nodes.size() == 1);
  CHECK(nodes[0]["audit_checkpoint"]["count"] == in_200.count);
  CHECK(nodes[0]["audit_checkpoint"]["signature"] == in_200.signature);
  CHECK(nodes[0]["audit_checkpoint_conflict"].is_null());

  res = c.Get("/v1/audit/checkpoint");
  REQUIRE(res);
  CHECK(res->status == 200);
  const auto exported = audit::parse_checkpoint(res->body, error);
  REQUIRE_MESSAGE(exported, error);
  CHECK(*exported == now);
  c.set_bearer_token_auth("tok-node");
  res = c.Get("/v1/audit/checkpoint");
  REQUIRE(res);
  CHECK(res->status == 403);  // a node token reads no more than its feed
}

TEST_CASE("controller checkpoints with replicas: each signs the head it reads from the store") {
  fixture f(/*replicated=*/true);
  auto st2 = store::open_sqlite_store((f.dir.path / "c.db").string());
  ctl::controller_config cfg2 = f.cfg;
  cfg2.replica = "ctl-b";
  ctl::controller b(cfg2, *st2, f.clk);
  REQUIRE(b.audit_checkpoint());
  CHECK(b.audit_checkpoint()->count == f.head().first);
  CHECK(b.audit_checkpoint()->replica == "ctl-b");

  // Both tick until quiet (each appends its controller.leader record, one the rollout's end).
  for (int i = 0; i < 3; ++i) {
    f.clk.ms += 2000;
    f.core->tick();
    b.tick();
  }
  CHECK(b.audit_checkpoint()->count == f.head().first);

  // The first replica appends without making a revision (refusals): the second sees the store
  // move at its next tick, and reads the head at most once a second.
  f.core->audit_refused(ministry, "POST /v1/directives", "bad_request", "not JSON");
  b.tick();
  CHECK(b.audit_checkpoint()->count == f.head().first);
  // (Another code: a repeat of the same one would only be counted, refusal_log.hpp.)
  f.core->audit_refused(ministry, "POST /v1/directives", "too_large", "over the cap");
  const auto moved = f.head();
  f.clk.ms += 300;
  b.tick();
  CHECK(b.audit_checkpoint()->count == moved.first - 1);
  f.clk.ms += 1000;
  b.tick();
  const auto cp = b.audit_checkpoint();
  REQUIRE(cp);
  CHECK(std::make_pair(cp->count, cp->head) == moved);
  CHECK(audit::verify_checkpoint(f.controller_key.pub, *cp));

  // A revision made by the first is offered by the second at once, with a checkpoint that
  // covers the records that made it (new offers look at the head now).
  const std::uint64_t r = b.rollout().target;
  f.submit("B-9");
  f.clk.ms += 100;
  b.tick();
  const auto offer = b.poll_snapshot("n1", {}, r, [] {});
  REQUIRE(offer.k == ctl::snapshot_poll::kind::offer);
  const auto carried = body_checkpoint(*offer.offer.body, f.controller_key.pub);
  CHECK(std::make_pair(carried.count, carried.head) == f.head());
  CHECK(carried.replica == "ctl-b");
}
