// Impact sketches through the worker: which names the flows of an address rule carried, drained
// as the controller's JSON; unnamed flows (no SNI, dropped at the SYN and expired); domain rules;
// a policy swap in the middle of a window.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "tests/unit/engine_worker/harness.hpp"

using namespace sluice;
using namespace sluice::test;
using match::action;

namespace {

// Drains the harness's worker (no QSBR: the test thread is the worker) and parses the body.
nlohmann::json drain_json(harness& h, std::uint64_t revision) {
  engine::worker* w = h.w.get();
  const auto window =
      engine::drain_impact(h.shared, std::span<engine::worker* const>(&w, 1), 1000, 1030, revision);
  REQUIRE(window.has_value());
  const std::string body = engine::impact_json(*window);
  if (body.empty()) return nlohmann::json();
  return nlohmann::json::parse(body);
}

const nlohmann::json* rule_of(const nlohmann::json& j, const std::string& id) {
  for (const auto& r : j["rules"]) {
    if (r["rule"] == id) return &r;
  }
  return nullptr;
}

// A ClientHello with no SNI extension (ALPN only): classification ends "nameless".
buf client_hello_without_sni() { return tls_records(tls_client_hello({{16, alpn_data({"h2"})}}), 1); }

std::uint16_t next_port = 20000;

// One TLS flow from the client to `server`: handshake, then the ClientHello (in two TCP
// segments when `split`), then some data.
std::vector<buf> tls_flow(const packet::ip_address& server, const buf& hello, bool split = false) {
  tcp_conv c;
  c.server = server;
  c.cport = next_port++;
  std::vector<buf> out{c.syn(), c.ack()};
  if (split) {
    out.push_back(c.data(slice(hello, 0, hello.size() / 2)));
    out.push_back(c.data(slice(hello, hello.size() / 2, hello.size())));
  } else {
    out.push_back(c.data(hello));
  }
  out.push_back(c.data(text("more data of the same flow")));
  return out;
}

}  // namespace

TEST_CASE("impact: names of an address rule's flows, in exact counts, once per flow") {
  harness h;
  next_port = 20000;
  h.set_policy(policy_of({rule("tg-addr", action::monitor, {"149.154.160.0/20"}),
                          rule("tg-name", action::monitor, {}, {"telegram.org"})},
                         4));
  std::vector<buf> frames;
  for (int i = 0; i < 30; ++i) {
    for (auto& f : tls_flow(tg_ip(), client_hello("Telegram.org"))) frames.push_back(f);
  }
  for (int i = 0; i < 10; ++i) {  // ClientHello split across two segments
    for (auto& f : tls_flow(tg_ip(), client_hello("drive.example.com"), true)) frames.push_back(f);
  }
  for (int i = 0; i < 5; ++i) {
    for (auto& f : tls_flow(tg_ip(), client_hello_without_sni())) frames.push_back(f);
  }
  for (int i = 0; i < 3; ++i) {  // not the rule's address: only the domain rule sees these
    for (auto& f : tls_flow(other_ip(), client_hello("telegram.org"))) frames.push_back(f);
  }
  for (int i = 0; i < 2; ++i) {  // neither rule: nothing recorded
    for (auto& f : tls_flow(other_ip(), client_hello("example.net"))) frames.push_back(f);
  }
  for (std::size_t at = 0; at < frames.size(); at += 32) {
    const auto end = frames.begin() + static_cast<std::ptrdiff_t>(std::min(frames.size(), at + 32));
    h.from_client(std::vector<buf>(frames.begin() + static_cast<std::ptrdiff_t>(at), end));
  }
  drain(h.inet());
  h.check_accounting();

  const nlohmann::json j = drain_json(h, 4);
  CHECK(j["window_start"] == 1000);
  CHECK(j["window_end"] == 1030);
  CHECK(j["revision"] == 4);
  REQUIRE(j["rules"].size() == 2);
  const nlohmann::json* addr = rule_of(j, "tg-addr");
  REQUIRE(addr != nullptr);
  CHECK(*addr == nlohmann::json::parse(R"({"rule": "tg-addr", "directive": "D-tg-addr",
      "flows": 45, "unnamed": 5, "other": 0,
      "names": [{"name": "telegram.org", "flows": 30, "error": 0},
                {"name": "drive.example.com", "flows": 10, "error": 0}]})"));
  const nlohmann::json* name = rule_of(j, "tg-name");
  REQUIRE(name != nullptr);
  CHECK(*name == nlohmann::json::parse(R"({"rule": "tg-name", "directive": "D-tg-name",
      "flows": 33, "unnamed": 0, "other": 0,
      "names": [{"name": "telegram.org", "flows": 33, "error": 0}]})"));

  // The window was cleared; more packets of the same (already recorded) flows add nothing.
  tcp_conv again;
  again.cport = 20000;  // the first telegram.org flow
  again.cseq = 999999;
  h.from_client({again.data(text("late"))});
  CHECK(drain_json(h, 4).is_null());
}

TEST_CASE("impact: flows an address drop stops at the SYN are unnamed once they expire") {
  harness h;
  h.w.reset();
  h.cfg.flow_idle_seconds = 0;
  h.w = std::make_unique<engine::worker>(h.cfg, h.shared);
  h.set_policy(policy_of({rule("tg", action::drop, {"149.154.160.0/20"})}, 9));
  std::vector<buf> syns;
  for (int i = 0; i < 4; ++i) {
    tcp_conv c;
    c.cport = static_cast<std::uint16_t>(30000 + i);
    syns.push_back(c.syn());
  }
  h.from_client(syns);  // one burst: none of them is idle yet when it ages the table
  CHECK(drain_json(h, 9).is_null());  // still pending: neither named nor over
  h.from_client({});                   // a later burst ages the table
  CHECK(h.w->flow_entries() == 0);
  const nlohmann::json j = drain_json(h, 9);
  REQUIRE(j["rules"].size() == 1);
  CHECK(j["rules"][0] == nlohmann::json::parse(R"({"rule": "tg", "directive": "D-tg",
      "flows": 4, "unnamed": 4, "names": [], "other": 0})"));
  h.check_accounting();
}

TEST_CASE("impact: a policy swap mid-window attributes by the rule id the slot was filled under") {
  harness h;
  h.set_policy(policy_of({rule("tg", action::monitor, {"149.154.160.0/20"}),
                          rule("moving", action::monitor, {"91.108.4.0/22"})},
                         1));
  auto send = [&](const packet::ip_address& server, const char* sni, int n) {
    for (int i = 0; i < n; ++i) h.from_client(tls_flow(server, client_hello(sni)));
    drain(h.inet());
  };
  send(tg_ip(), "telegram.org", 3);
  send(v4(91, 108, 4, 7), "t.me", 2);
  // A flow that is still pending (only its SYN seen) when the policy changes.
  tcp_conv pending;
  pending.cport = 40001;
  h.from_client({pending.syn()});

  // Revision 2: "tg" keeps index 0, "moving" now sits at index 2 and index 1 is a new rule.
  h.set_policy(policy_of({rule("tg", action::monitor, {"149.154.160.0/20"}),
                          rule("fresh", action::monitor, {"91.108.4.0/22"}),
                          rule("moving", action::monitor, {"91.108.4.0/22"})},
                         2));
  send(tg_ip(), "web.telegram.org", 1);
  h.from_client({pending.ack(), pending.data(client_hello("telegram.org"))});
  send(v4(91, 108, 4, 8), "t.me", 1);

  engine::worker* w = h.w.get();
  const auto window =
      engine::drain_impact(h.shared, std::span<engine::worker* const>(&w, 1), 1000, 1030, 2);
  REQUIRE(window.has_value());
  // The 2 flows recorded for "moving" at its old index 1 are dropped (counted); "tg" keeps its
  // revision-1 flows and adds the revision-2 ones; the pending flow is judged under revision 2.
  CHECK(window->swap_dropped_flows == 2);
  const nlohmann::json j = nlohmann::json::parse(engine::impact_json(*window));
  CHECK(j["revision"] == 2);
  const nlohmann::json* tg = rule_of(j, "tg");
  REQUIRE(tg != nullptr);
  CHECK((*tg)["flows"] == 5);
  CHECK((*tg)["names"] == nlohmann::json::parse(R"([{"name": "telegram.org", "flows": 4, "error": 0},
      {"name": "web.telegram.org", "flows": 1, "error": 0}])"));
  for (const char* id : {"fresh", "moving"}) {
    CAPTURE(id);
    const nlohmann::json* r = rule_of(j, id);
    REQUIRE(r != nullptr);
    CHECK((*r)["flows"] == 1);
    CHECK((*r)["names"][0]["name"] == "t.me");
  }
  h.check_accounting();
}
