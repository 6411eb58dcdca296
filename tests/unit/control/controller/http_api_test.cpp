// control/api/http_api's admission (issue 14) on a real server and controller (SQLite in a temp
// dir): credentials checked on the head, per-route body caps, 429 with Retry-After per token,
// per node id and per address, node certificates bound to their node id, refusals in /metrics,
// waiting long polls answered at stop, the status body decoder, and reports carried on polls.
#include "control/api/http_api.hpp"

#include <doctest/doctest.h>
#include <httplib.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "control/audit/checkpoint.hpp"
#include "http_test_support.hpp"

namespace ctl = sluice::control::controller;
namespace crypto = sluice::control::crypto;
namespace store = sluice::control::store;
using namespace sluice::control::api;
using namespace sluice_test;

namespace {

const std::string ministry_token = "tok-ministry", engineer_token = "tok-engineer",
                  viewer_token = "tok-viewer", node_token = "tok-node";

struct api_fixture {
  std::filesystem::path dir;
  ctl::system_clock clk;
  std::unique_ptr<store::store> st;
  std::unique_ptr<ctl::controller> core;
  std::unique_ptr<http_api> api;
  std::unique_ptr<http_server> server;
  std::thread thread;

  explicit api_fixture(api_limits limits = {}, server_options o = loopback(), console_config console = {}) {
    char tmpl[] = "/tmp/sluice-api-XXXXXX";
    dir = ::mkdtemp(tmpl);
    st = store::open_sqlite_store((dir / "c.db").string());
    ctl::controller_config cfg;
    cfg.issuers.push_back({"ministry", crypto::generate_key_pair()->pub});
    cfg.signing_key = crypto::generate_key_pair()->sec;
    // Only the inventory's nodes are served (issue 14).
    for (int i = 0; i < 30; ++i) cfg.nodes.push_back({"n" + std::to_string(i), {}});
    cfg.nodes.push_back({"edge-1", {}});
    cfg.nodes.push_back({"edge-2", {}});
    core = std::make_unique<ctl::controller>(cfg, *st, clk);
    api = std::make_unique<http_api>(
        *core,
        std::vector<token_entry>{{"moc", ctl::role::ministry, token_hash(ministry_token)},
                                 {"eng", ctl::role::engineer, token_hash(engineer_token)},
                                 {"noc", ctl::role::viewer, token_hash(viewer_token)},
                                 {"fleet", ctl::role::node, token_hash(node_token)}},
        limits, console);
    server = std::make_unique<http_server>(std::move(o));
    api->attach(*server);
    thread = std::thread([this] { server->run(); });
  }
  ~api_fixture() {
    stop();
    server.reset();
    api.reset();
    core.reset();
    st.reset();
    std::filesystem::remove_all(dir);
  }
  void stop() {
    if (!thread.joinable()) return;
    server->stop();
    thread.join();
  }
  int port() const { return server->port(); }
  std::uint64_t refused(refusal r) const { return server->counters().refused_by(r); }
  // The sample `name{labels}` in GET /metrics, -1 when absent.
  double metric(const std::string& sample) {
    httplib::Client c("127.0.0.1", port());
    auto r = c.Get("/metrics");
    if (!r || r->status != 200) return -1;
    const auto at = r->body.find("\n" + sample + " ");
    if (at == std::string::npos) return -1;
    return std::stod(r->body.substr(at + sample.size() + 2));
  }
};

httplib::Headers bearer(const std::string& token) { return {{"Authorization", "Bearer " + token}}; }

std::string status_json(std::size_t pad = 0) {
  return "{\"revision\": 1, \"offered\": 1, \"result\": \"ack\", \"error\": \"" + std::string(pad, 'e') + "\"}";
}

}  // namespace

TEST_CASE("API admission: no credential, wrong role, bodies over each route's cap: refused unread") {
  api_fixture f;
  httplib::Client c("127.0.0.1", f.port());

  CHECK(c.Get("/v1/rollout")->status == 401);
  CHECK(c.Get("/v1/rollout", bearer("not-a-token"))->status == 401);
  CHECK(c.Get("/v1/rollout", bearer(viewer_token))->status == 200);
  CHECK(c.Get("/v1/health")->status == 200);

  // 300 MB to /v1/directives: without a token 401 on the head; with the ministry's, 413 (the
  // document cap, 4 MiB by default); both answered before any body byte is sent.
  for (const auto& [auth, want] : {std::pair{std::string(), "HTTP/1.1 401 "},
                                   std::pair{"Authorization: Bearer " + ministry_token + "\r\n", "HTTP/1.1 413 "}}) {
    const int fd = connect_to(f.port());
    REQUIRE(send_all(fd, "POST /v1/directives HTTP/1.1\r\nHost: t\r\n" + auth +
                             "Content-Type: application/json\r\nContent-Length: 314572800\r\n\r\n"));
    CHECK(recv_until(fd, "\r\n\r\n").rfind(want, 0) == 0);
    ::close(fd);
  }
  // Just under the cap is read (and refused by the core as a bad body, not by size).
  auto doc = c.Post("/v1/directives", bearer(ministry_token), std::string((std::size_t{4} << 20) - 10, ' ') + "{}",
                    "application/json");
  REQUIRE(doc);
  CHECK(doc->status == 400);

  // A viewer may not approve: 403 on the head, and the refusal is audited.
  CHECK(c.Post("/v1/directives/ministry/X-1/approve", bearer(viewer_token), "{}", "application/json")->status == 403);
  CHECK(eventually([&] {
    const auto records = f.core->audit(0, 0);
    for (const auto& r : *records.value)
      if (r.event == "request.refused" && r.actor == "noc") return true;
    return false;
  }));
  // A GET reads no body; a {"reason"} call a few KiB.
  CHECK(raw_exchange(f.port(), "GET /v1/rollout HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer " + viewer_token +
                                   "\r\nContent-Length: 10\r\n\r\n0123456789")
            .rfind("HTTP/1.1 413 ", 0) == 0);
  CHECK(c.Post("/v1/rollout/pause", bearer(engineer_token), "{\"reason\": \"" + std::string(20000, 'r') + "\"}",
               "application/json")
            ->status == 413);

  // The node feed: status capped at 16 KiB, impact reports at 1 MiB.
  CHECK(c.Post("/v1/nodes/n1/status", bearer(node_token), status_json(100), "application/json")->status == 204);
  CHECK(c.Post("/v1/nodes/n1/status", bearer(node_token), status_json(20000), "application/json")->status == 413);
  CHECK(c.Post("/v1/nodes/n1/impact", bearer(node_token), std::string((std::size_t{1} << 20) + 1, ' '),
               "application/json")
            ->status == 413);
  CHECK(c.Post("/v1/nodes/n1/status", bearer(viewer_token), status_json(), "application/json")->status == 403);
  auto snap = c.Get("/v1/nodes/n1/snapshot", bearer(node_token));
  REQUIRE(snap);
  CHECK(snap->status == 200);

  // Bytes that are not UTF-8 in a path echoed by a message: replaced, not a 500.
  auto odd = c.Get("/v1/directives/%FF%FE/x", bearer(viewer_token));
  REQUIRE(odd);
  CHECK(odd->status == 404);

  CHECK(f.refused(refusal::unauthenticated) == 3);
  CHECK(f.refused(refusal::forbidden) == 2);
  CHECK(f.refused(refusal::too_large) == 5);
  CHECK(f.metric("sluice_control_http_refused_total{reason=\"unauthenticated\"}") == 3);
  CHECK(f.metric("sluice_control_http_refused_total{reason=\"too_large\"}") == 5);
  CHECK(f.metric("sluice_control_http_refused_total{reason=\"header_timeout\"}") == 0);
  CHECK(f.metric("sluice_control_http_connections_refused_total") == 0);  // the issue-13 name stays
}

TEST_CASE("API rate limits: 429 with Retry-After per token, per node id, per address without a credential") {
  api_limits limits;
  limits.per_token = {0.5, 3};
  limits.per_address = {0.5, 2};
  api_fixture f(limits);
  httplib::Client c("127.0.0.1", f.port());

  for (int i = 0; i < 3; ++i) CHECK(c.Get("/v1/rollout", bearer(engineer_token))->status == 200);
  auto limited = c.Get("/v1/rollout", bearer(engineer_token));
  REQUIRE(limited);
  CHECK(limited->status == 429);
  CHECK(limited->get_header_value("Retry-After") == "2");
  CHECK(c.Get("/v1/rollout", bearer(viewer_token))->status == 200);  // another token

  // The fleet-wide node token: one bucket per node id.
  for (int i = 0; i < 3; ++i)
    CHECK(c.Post("/v1/nodes/n1/status", bearer(node_token), status_json(), "application/json")->status == 204);
  CHECK(c.Post("/v1/nodes/n1/status", bearer(node_token), status_json(), "application/json")->status == 429);
  CHECK(c.Post("/v1/nodes/n2/status", bearer(node_token), status_json(), "application/json")->status == 204);

  // No or bad credential: the address's bucket (2), then 429 rather than 401; good tokens from
  // the same address are unaffected.
  CHECK(c.Get("/v1/rollout", bearer("guess-1"))->status == 401);
  CHECK(c.Get("/v1/rollout")->status == 401);
  CHECK(c.Get("/v1/rollout", bearer("guess-2"))->status == 429);
  CHECK(c.Get("/v1/nodes", bearer(ministry_token))->status == 200);
  CHECK(f.refused(refusal::rate_limited) == 3);
  CHECK(f.refused(refusal::unauthenticated) == 2);
}

TEST_CASE("API node certificates: a node's certificate speaks for its own node id only") {
  tls_files files;
  if (!files.ok) {
    MESSAGE("openssl not available: TLS case skipped");
    return;
  }
  server_options o = loopback();
  o.tls_cert = files.path("tls.crt");
  o.tls_key = files.path("tls.key");
  o.tls_client_ca = files.path("ca.crt");
  api_limits limits;
  limits.per_token = {0.01, 5};  // five requests per node, then 429
  api_fixture f(limits, o);
  auto node_client = [&] {
    auto c = std::make_unique<httplib::SSLClient>("127.0.0.1", f.port(), files.path("edge-1.crt"),
                                                  files.path("edge-1.key"));
    c->set_ca_cert_path(files.path("ca.crt").c_str());
    c->enable_server_certificate_verification(true);
    return c;
  };
  auto c = node_client();
  auto own = c->Get("/v1/nodes/edge-1/snapshot");  // no token: the certificate is the credential
  REQUIRE(own);
  CHECK(own->status == 200);
  CHECK(c->Post("/v1/nodes/edge-1/status", status_json(), "application/json")->status == 204);
  // Another node's snapshot: 403, even with the fleet's node token beside the certificate.
  CHECK(c->Get("/v1/nodes/edge-2/snapshot")->status == 403);
  CHECK(c->Get("/v1/nodes/edge-2/snapshot", bearer(node_token))->status == 403);
  // Operators' routes still need a token.
  CHECK(c->Get("/v1/rollout")->status == 401);
  CHECK(c->Get("/v1/rollout", bearer(viewer_token))->status == 200);
  // Without a certificate the node token works as before (until every node has one).
  httplib::SSLClient anon("127.0.0.1", f.port());
  anon.set_ca_cert_path(files.path("ca.crt").c_str());
  anon.enable_server_certificate_verification(true);
  CHECK(anon.Get("/v1/nodes/edge-2/snapshot", bearer(node_token))->status == 200);
  CHECK(anon.Get("/v1/nodes/edge-2/snapshot")->status == 401);
  CHECK(f.refused(refusal::forbidden) == 2);
  // The certificate's own bucket: four requests so far (asking for edge-2 counted too).
  CHECK(c->Get("/v1/nodes/edge-1/snapshot")->status == 200);
  CHECK(c->Get("/v1/nodes/edge-1/snapshot")->status == 429);
  CHECK(c->Get("/v1/nodes/edge-2/snapshot")->status == 429);
}

TEST_CASE("API stop: waiting long polls are answered 503 shutting_down at once") {
  api_fixture f;
  httplib::Client c("127.0.0.1", f.port());
  auto first = c.Get("/v1/nodes/n1/snapshot", bearer(node_token));
  REQUIRE(first);
  const std::string etag = first->get_header_value("ETag");
  REQUIRE_FALSE(etag.empty());
  std::vector<int> fds;
  for (int i = 0; i < 20; ++i) {
    fds.push_back(connect_to(f.port()));
    REQUIRE(send_all(fds.back(), "GET /v1/nodes/n" + std::to_string(i) + "/snapshot?wait=60 HTTP/1.1\r\nHost: t\r\n"
                                 "Authorization: Bearer " + node_token + "\r\nIf-None-Match: " + etag + "\r\n\r\n"));
  }
  REQUIRE(eventually([&] { return f.core->waiting_polls() == 20; }));
  const auto t0 = clk::now();
  f.stop();
  CHECK(ms_since(t0) < 1000);
  int answered = 0;
  for (const int fd : fds) {
    answered += recv_until(fd, "}").rfind("HTTP/1.1 503 ", 0) == 0;
    ::close(fd);
  }
  CHECK(answered == 20);
}

TEST_CASE("node status bodies: decoded, or refused whole") {
  const auto ok = parse_status_body(
      R"({"revision": 7, "offered": 8, "result": "nack", "error": "bad", "health": "degraded",
          "ruleset_sha256": "ab", "labels": {"site": "a"}})");
  REQUIRE(ok);
  CHECK(ok->report.revision == 7);
  CHECK(ok->report.offered == 8);
  CHECK_FALSE(ok->report.ack);
  CHECK(ok->report.error == "bad");
  CHECK(ok->report.health == "degraded");
  CHECK(ok->labels.at("site") == "a");
  CHECK(parse_status_body(R"({"revision": 1, "result": "ack"})")->report.ack);
  for (const char* bad : {"", "[]", "{", R"({"result": "ack"})", R"({"revision": -1, "result": "ack"})",
                          R"({"revision": 1, "result": "maybe"})", R"({"revision": 1, "result": "ack", "labels": [1]})",
                          R"({"revision": "1", "result": "ack"})", R"({"revision": 1, "result": "ack", "error": 5})"})
    CHECK_MESSAGE(!parse_status_body(bad), std::string(bad));
}

TEST_CASE("a report carried on a poll is recorded before the poll waits; a malformed one is 400") {
  api_fixture f;
  const std::string sha(64, 'c');
  httplib::Client c("127.0.0.1", f.port());
  auto first = c.Get("/v1/nodes/n1/snapshot", bearer(node_token));
  REQUIRE(first);
  REQUIRE(first->status == 200);
  CHECK(first->get_header_value("X-Sluice-Status-Carry") == "yes");  // says it takes them
  const std::string etag = first->get_header_value("ETag");
  const std::uint64_t revision = std::stoull(etag.substr(1, etag.size() - 2));
  const auto checkpoint = f.core->audit_checkpoint();
  REQUIRE(checkpoint);

  // The ACK rides on the next poll, which waits (nothing new to offer) with the ACK on record.
  const int fd = connect_to(f.port());
  REQUIRE(send_all(fd, "GET /v1/nodes/n1/snapshot?wait=60 HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer " +
                           node_token + "\r\nIf-None-Match: " + etag + "\r\nX-Sluice-Status: ack revision=" +
                           std::to_string(revision) + " offered=" + std::to_string(revision) + " ruleset=" + sha +
                           " checkpoint=" + sluice::control::audit::checkpoint_header(*checkpoint) + "\r\n\r\n"));
  const auto n1 = [&]() -> std::optional<ctl::node_view> {
    for (const auto& n : f.core->nodes())
      if (n.record.node_id == "n1") return n;
    return std::nullopt;
  };
  REQUIRE(eventually([&] { return f.core->waiting_polls() == 1; }));
  REQUIRE(n1());
  CHECK(n1()->record.applied_revision == revision);
  CHECK(n1()->record.ruleset_sha256 == sha);
  CHECK(n1()->state == "converged");
  CHECK(n1()->record.audit_checkpoint == sluice::control::audit::checkpoint_json(*checkpoint));
  ::close(fd);

  // A checkpoint that does not verify (another key signed it) is not recorded; the ACK is.
  const auto other = sluice::control::audit::make_checkpoint(crypto::generate_key_pair()->sec,
                                                              checkpoint->count + 5, checkpoint->head,
                                                              checkpoint->at, "forger");
  REQUIRE(other);
  auto forged = c.Get("/v1/nodes/n1/snapshot?wait=0",
                      {{"Authorization", "Bearer " + node_token}, {"If-None-Match", etag},
                       {"X-Sluice-Status", "ack revision=" + std::to_string(revision) + " offered=0 ruleset=" +
                                               sha + " checkpoint=" +
                                               sluice::control::audit::checkpoint_header(*other)}});
  REQUIRE(forged);
  CHECK(forged->status == 304);
  CHECK(forged->get_header_value("X-Sluice-Status-Carry") == "yes");
  CHECK(n1()->record.audit_checkpoint == sluice::control::audit::checkpoint_json(*checkpoint));
  CHECK(f.metric("sluice_control_audit_checkpoints_refused_total") == 1);

  // Malformed: refused whole, nothing recorded, no poll parked.
  auto bad = c.Get("/v1/nodes/n2/snapshot?wait=0",
                   {{"Authorization", "Bearer " + node_token}, {"X-Sluice-Status", "nack revision=1"}});
  REQUIRE(bad);
  CHECK(bad->status == 400);
  for (const auto& n : f.core->nodes()) CHECK(n.record.node_id != "n2");
}

TEST_CASE("node status headers: decoded, or refused whole") {
  const std::string sha(64, 'a');
  const auto ok = parse_status_header("ack revision=7 offered=8 ruleset=" + sha + " checkpoint=eyJ9");
  REQUIRE(ok);
  CHECK(ok->revision == 7);
  CHECK(ok->offered == 8);
  CHECK(ok->ack);
  CHECK(ok->ruleset_sha256 == sha);
  CHECK(ok->audit_checkpoint_header == "eyJ9");
  CHECK(ok->audit_checkpoint.empty());
  const auto bare = parse_status_header("ack revision=0 offered=0 ruleset=");
  REQUIRE(bare);
  CHECK(bare->ruleset_sha256.empty());
  CHECK(bare->audit_checkpoint_header.empty());
  const std::string r = " ruleset=" + sha;
  for (const std::string& bad : std::vector<std::string>{
           "", "ack", "nack revision=1 offered=1" + r, "ack revision=1" + r,
        "ack offered=1 revision=1" + r, "ack revision=-1 offered=1" + r, "ack revision=1 offered=1",
        "ack revision=1 offered=x" + r, "ack revision=01 offered=1" + r, "ack revision=1 offered=1" + r + " ",
        "ack revision=1 offered=1" + r + " checkpoint=eyJ9 ", "ack revision=123456789012345678901 offered=1" + r,
        "ack revision=1 offered=1 ruleset=ABC", "ack revision=1 offered=1 ruleset=" + std::string(63, 'a'),
        "ack revision=1 offered=1" + r + " checkpoint=", "ack revision=1 offered=1" + r + " health=ok",
        "ack revision=1 offered=1" + r + " checkpoint=eyJ9 x=1", "ack  revision=1 offered=1" + r,
        "ack revision=1 offered=1" + r + " checkpoint=" + std::string(8000, 'A')})
    CHECK_MESSAGE(!parse_status_header(bad), bad);
}

namespace {

// The value of the first Set-Cookie of an answer, and its attributes.
std::string set_cookie(const httplib::Result& r) { return r ? r->get_header_value("Set-Cookie") : ""; }

httplib::Headers with_cookie(const std::string& cookie, const std::string& csrf = "") {
  httplib::Headers h{{"Cookie", "other=1; " + cookie}};
  if (!csrf.empty()) h.emplace("X-CSRF-Token", csrf);
  return h;
}

}  // namespace

TEST_CASE("console sessions: a role token signs in; the cookie is HttpOnly, Secure, SameSite=Strict; changes need the CSRF token") {
  api_fixture f;
  httplib::Client c("127.0.0.1", f.port());

  CHECK(c.Post("/v1/session", R"({"token": "nope"})", "application/json")->status == 401);
  CHECK(c.Post("/v1/session", R"({"token": ")" + node_token + "\"}", "application/json")->status == 401);
  CHECK(c.Post("/v1/session", "not json", "application/json")->status == 401);

  auto in = c.Post("/v1/session", R"({"token": ")" + engineer_token + "\"}", "application/json");
  REQUIRE(in);
  REQUIRE(in->status == 200);
  const auto who = nlohmann::json::parse(in->body);
  CHECK(who["name"] == "eng");
  CHECK(who["role"] == "engineer");
  const std::string csrf = who["csrf"];
  CHECK(csrf.size() == 43);
  const std::string header = set_cookie(in);
  CHECK(header.find("; HttpOnly") != std::string::npos);
  CHECK(header.find("; Secure") != std::string::npos);
  CHECK(header.find("; SameSite=Strict") != std::string::npos);
  CHECK(header.find("; Path=/") != std::string::npos);
  const std::string cookie = header.substr(0, header.find(';'));
  CHECK(cookie.rfind("sluice_session=", 0) == 0);
  CHECK(cookie.size() == std::string("sluice_session=").size() + 43);
  CHECK(cookie.find(csrf) == std::string::npos);

  // Reads with the cookie alone; the session says who and hands the page its CSRF token.
  auto me = c.Get("/v1/session", with_cookie(cookie));
  REQUIRE(me);
  CHECK(me->status == 200);
  CHECK(nlohmann::json::parse(me->body)["csrf"] == csrf);
  CHECK(c.Get("/v1/rollout", with_cookie(cookie))->status == 200);
  // A change without the token, or with another, is refused on the head (a cross-site form
  // carries the cookie but cannot read the token); with it, it goes through.
  const std::string pause = R"({"reason": "maintenance"})";
  for (const auto& bad : {std::string(), csrf.substr(1) + "x", csrf + "x"}) {
    auto r = c.Post("/v1/rollout/pause", with_cookie(cookie, bad), pause, "application/json");
    REQUIRE(r);
    CHECK(r->status == 403);
    CHECK(nlohmann::json::parse(r->body)["error"] == "csrf");
  }
  CHECK(c.Post("/v1/rollout/pause", with_cookie(cookie, csrf), pause, "application/json")->status == 200);
  // The session's role is the token's: an engineer's session may not revoke.
  CHECK(c.Post("/v1/directives/ministry/X/revoke", with_cookie(cookie, csrf), pause, "application/json")->status == 403);
  // A session is for people: the node feed refuses it.
  CHECK(c.Get("/v1/nodes/n1/snapshot", with_cookie(cookie))->status == 401);
  CHECK(c.Get("/v1/rollout", with_cookie("sluice_session=forged"))->status == 401);

  // Sign-in and sign-out are audited under the token's name.
  CHECK(c.Delete("/v1/session", with_cookie(cookie))->status == 403);  // without the token
  auto out = c.Delete("/v1/session", with_cookie(cookie, csrf));
  REQUIRE(out);
  CHECK(out->status == 204);
  CHECK(set_cookie(out).find("Max-Age=0") != std::string::npos);
  auto after = c.Get("/v1/rollout", with_cookie(cookie));
  REQUIRE(after);
  CHECK(after->status == 401);
  CHECK(nlohmann::json::parse(after->body)["error"] == "session_expired");
  std::vector<std::string> events;
  const auto records = f.core->audit(0, 0);
  for (const auto& r : *records.value)
    if (r.actor == "eng") events.push_back(r.event);
  CHECK(std::find(events.begin(), events.end(), "session.opened") != events.end());
  CHECK(std::find(events.begin(), events.end(), "session.closed") != events.end());
}

TEST_CASE("console sessions end when idle or old, and the store stays bounded") {
  console_config cfg;
  cfg.session_idle = std::chrono::seconds(60);
  cfg.session_max = std::chrono::seconds(300);
  cfg.max_sessions = 3;
  session_store s(cfg);
  const ctl::principal eng{"eng", ctl::role::engineer};
  auto [a, sa] = s.open(eng, 0);
  CHECK(sa.csrf.size() == 43);
  CHECK(s.find(a, 59'000));
  CHECK(s.find(a, 118'000));  // each use pushes the idle deadline on
  CHECK(s.find(a, 170'000, false));  // a timed refresh does not
  CHECK(s.find(a, 177'000, false));
  CHECK_FALSE(s.find(a, 178'001));
  CHECK_FALSE(s.find(a, 0));  // and it is gone
  auto [b, sb] = s.open(eng, 0);
  for (std::int64_t t = 50'000; t < 300'000; t += 50'000) CHECK(s.find(b, t));
  CHECK_FALSE(s.find(b, 300'000));  // however busy, not past session_max
  // Full: the oldest goes.
  auto first = s.open(eng, 1000).first;
  auto second = s.open(eng, 2000).first;
  auto third = s.open(eng, 3000).first;
  auto fourth = s.open(eng, 4000).first;
  CHECK(s.size() == 3);
  CHECK_FALSE(s.find(first, 5000));
  CHECK(s.find(fourth, 5000));
  CHECK(s.find(second, 5000));
  s.close(third);
  CHECK_FALSE(s.find(third, 5000));
  CHECK(a != b);

  CHECK(cookie_value("a=1; sluice_session=xyz; b=2", "sluice_session") == "xyz");
  CHECK(cookie_value("xsluice_session=1;sluice_session=2", "sluice_session") == "2");
  CHECK(cookie_value("sluice_session", "sluice_session").empty());
  CHECK(cookie_value("", "sluice_session").empty());
  CHECK(same_secret("abc", "abc"));
  CHECK_FALSE(same_secret("abc", "abd"));
  CHECK_FALSE(same_secret("abc", "ab"));
}

TEST_CASE("console files: served by exact path with a strict CSP; nothing else on disk is reachable") {
  const std::filesystem::path dir = std::filesystem::path(::mkdtemp(std::string("/tmp/sluice-console-XXXXXX").data()));
  const auto write = [&](const std::filesystem::path& p, const std::string& text) {
    std::filesystem::create_directories((dir / p).parent_path());
    std::ofstream(dir / p) << text;
  };
  write("index.html", "<!doctype html><title>Sluice</title>");
  write("app.js", "export const x = 1;");
  write("i18n/ar.json", R"({"title": "سلويس"})");
  write("views/deep/too.js", "deep");
  write("notes.txt", "not served");
  console_config cc;
  cc.assets = dir;
  {
    api_fixture f({}, loopback(), cc);
    httplib::Client c("127.0.0.1", f.port());
    auto page = c.Get("/ui/");
    REQUIRE(page);
    CHECK(page->status == 200);
    CHECK(page->body == "<!doctype html><title>Sluice</title>");
    CHECK(page->get_header_value("Content-Type") == "text/html; charset=utf-8");
    const std::string csp = page->get_header_value("Content-Security-Policy");
    CHECK(csp.find("script-src 'self'") != std::string::npos);
    CHECK(csp.find("unsafe-inline") == std::string::npos);
    CHECK(csp.find("frame-ancestors 'none'") != std::string::npos);
    CHECK(page->get_header_value("X-Content-Type-Options") == "nosniff");
    auto js = c.Get("/ui/app.js");
    REQUIRE(js);
    CHECK(js->get_header_value("Content-Type") == "text/javascript; charset=utf-8");
    auto ar = c.Get("/ui/i18n/ar.json");
    REQUIRE(ar);
    CHECK(ar->status == 200);
    CHECK(ar->body.find("سلويس") != std::string::npos);
    for (const char* path : {"/ui/views/deep/too.js", "/ui/notes.txt", "/ui/../secret.js",
                             "/ui/%2e%2e/secret.js", "/ui/i18n/../../secret.js", "/ui/nothing.js"}) {
      auto r = c.Get(path);
      REQUIRE(r);
      CHECK_MESSAGE(r->status == 404, path);
    }
    auto root = c.Get("/");
    REQUIRE(root);
    CHECK(root->status == 302);
    CHECK(root->get_header_value("Location") == "/ui/");
  }
  std::filesystem::remove(dir / "index.html");
  CHECK_THROWS_WITH_AS(load_console_assets(dir), doctest::Contains("no index.html"), std::runtime_error);
  write("index.html", std::string(2000, 'x'));
  CHECK_THROWS_WITH_AS(load_console_assets(dir, 1000), doctest::Contains("more than"), std::runtime_error);
  std::filesystem::remove_all(dir);
}
