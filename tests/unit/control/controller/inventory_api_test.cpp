// The inventory routes of the API (issue 14) on a loopback server, with the real controller:
// enrol with a CSR (certificate and CA back), bulk enrol, relabel, list, revoke; a node's
// waiting long poll answered 403 as soon as it is revoked; labels a node declares ignored.
#include <doctest/doctest.h>
#include <httplib.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <thread>

#include "control/api/http_api.hpp"
#include "control/api/http_server.hpp"
#include "control/controller/controller.hpp"
#include "tests/unit/support/openssl_certs.hpp"

namespace api = sluice::control::api;
namespace ctl = sluice::control::controller;
namespace crypto = sluice::control::crypto;
namespace pki = sluice::control::pki;
namespace store = sluice::control::store;
using nlohmann::json;

namespace {

struct system_world {
  sluice::test::cert_dir dir;
  ctl::system_clock clk;
  std::unique_ptr<store::store> st = store::open_sqlite_store(dir.file("c.db"));
  std::unique_ptr<ctl::controller> core;
  std::unique_ptr<api::http_api> routes;
  std::unique_ptr<api::http_server> server;
  std::thread thread;
  std::thread ticker;
  std::atomic<bool> stop{false};

  system_world() {
    dir.make_ca("ca");
    ctl::controller_config cfg;
    cfg.issuers.push_back({"ministry", crypto::generate_key_pair()->pub});
    cfg.signing_key = crypto::generate_key_pair()->sec;
    cfg.max_wait_s = 20;
    std::string error;
    auto ca = pki::certificate_authority::load(dir.read("ca.crt"), dir.read("ca.key"), error);
    REQUIRE(ca);
    cfg.node_ca = std::make_shared<const pki::certificate_authority>(std::move(*ca));
    cfg.nodes = {{"edge-1", {{"site", "msk"}}}};
    core = std::make_unique<ctl::controller>(cfg, *st, clk);
    routes = std::make_unique<api::http_api>(
        *core, std::vector<api::token_entry>{{"eng-alice", ctl::role::engineer, api::token_hash("eng")},
                                             {"viewer", ctl::role::viewer, api::token_hash("view")},
                                             {"nodes", ctl::role::node, api::token_hash("node")}});
    api::server_options o;
    o.host = "127.0.0.1";
    server = std::make_unique<api::http_server>(o);
    routes->attach(*server);
    thread = std::thread([this] { server->run(); });
    ticker = std::thread([this] {
      while (!stop) {
        core->tick();
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    });
  }
  ~system_world() {
    stop = true;
    ticker.join();
    server->stop();
    thread.join();
  }
  httplib::Client client(const std::string& token) {
    httplib::Client c("127.0.0.1", server->port());
    c.set_bearer_token_auth(token);
    c.set_read_timeout(30, 0);
    return c;
  }
};

}  // namespace

TEST_CASE("inventory API: enrol, list, relabel, revoke; a revoked node's long poll ends at once") {
  system_world w;
  auto eng = w.client("eng");
  auto viewer = w.client("view");
  auto node = w.client("node");

  std::string error;
  const auto kc = pki::make_key_and_csr("edge-2", error);
  auto res = eng.Post("/v1/inventory/edge-2/enroll",
                      json{{"labels", {{"site", "spb"}}}, {"csr", kc->csr_pem}}.dump(), "application/json");
  REQUIRE(res);
  REQUIRE_MESSAGE(res->status == 200, res->body);
  const json enrolled = json::parse(res->body);
  const auto cert = pki::certificate::parse(enrolled["certificate"].get<std::string>(), error);
  REQUIRE(cert);
  CHECK(cert->common_name() == "edge-2");
  CHECK(enrolled["ca"] == w.dir.read("ca.crt"));
  CHECK(enrolled["node"]["fingerprint"] == cert->fingerprint());

  res = eng.Post("/v1/inventory", json{{"nodes", {{{"node", "sim-1"}, {"labels", {{"site", "sim"}}}}}}}.dump(),
                 "application/json");
  REQUIRE(res);
  CHECK(res->status == 200);
  res = eng.Post("/v1/inventory/edge-2/enroll", R"({"labels": ["not", "a", "map"]})", "application/json");
  CHECK(res->status == 400);
  res = viewer.Post("/v1/inventory/edge-2/revoke", R"({"reason": "x"})", "application/json");
  CHECK(res->status == 403);  // a viewer may not

  res = viewer.Get("/v1/inventory");
  REQUIRE(res);
  const json inv = json::parse(res->body);
  REQUIRE(inv["nodes"].size() == 3);
  CHECK(inv["nodes"][0]["node"] == "edge-1");
  CHECK(inv["nodes"][0]["source"] == "config");
  CHECK(inv["nodes"][1]["node"] == "edge-2");
  CHECK(inv["nodes"][1]["labels"]["site"] == "spb");

  res = eng.Post("/v1/inventory/edge-1/labels", R"({"labels": {"site": "msk", "group": "canary"}})",
                 "application/json");
  REQUIRE(res);
  CHECK(res->status == 200);
  CHECK(json::parse(res->body)["labels"]["group"] == "canary");

  // The node feed: labels it declares are ignored; an unknown node is refused.
  res = node.Get("/v1/nodes/edge-1/snapshot", {{"X-Sluice-Labels", "site=spb"}});
  REQUIRE(res);
  CHECK(res->status == 200);
  const std::string held = res->get_header_value("ETag");
  res = node.Get("/v1/nodes/nobody/snapshot");
  REQUIRE(res);
  CHECK(res->status == 403);
  CHECK(json::parse(res->body)["error"] == "not_enrolled");

  // edge-1 waits for a new revision; revoking it answers the wait with 403 at once.
  std::optional<httplib::Result> waited;
  std::chrono::steady_clock::duration took{};
  std::thread poller([&] {
    auto c = w.client("node");
    const auto start = std::chrono::steady_clock::now();
    waited.emplace(c.Get("/v1/nodes/edge-1/snapshot?wait=15", {{"If-None-Match", held}}));
    took = std::chrono::steady_clock::now() - start;
  });
  for (int i = 0; i < 100 && w.core->waiting_polls() == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  REQUIRE(w.core->waiting_polls() == 1);
  res = eng.Post("/v1/inventory/edge-1/revoke", R"({"reason": "decommissioned"})", "application/json");
  REQUIRE(res);
  CHECK(res->status == 200);
  CHECK(json::parse(res->body)["state"] == "revoked");
  poller.join();
  REQUIRE(waited);
  REQUIRE(*waited);
  CHECK((*waited)->status == 403);
  CHECK(json::parse((*waited)->body)["error"] == "revoked");
  CHECK(took < std::chrono::seconds(5));
  res = node.Post("/v1/nodes/edge-1/status", R"({"revision": 1, "result": "ack"})", "application/json");
  CHECK(res->status == 403);
}
