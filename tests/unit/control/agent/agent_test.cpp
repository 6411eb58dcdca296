// The node agent against a fake controller (httplib::Server on 127.0.0.1, ephemeral port) that
// serves snapshots signed with a test key, and a fake applier.

#include <doctest/doctest.h>
#include <httplib.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "control/agent/agent.hpp"
#include "control/agent/http_transport.hpp"
#include "control/agent/runner.hpp"
#include "control/crypto/minisign.hpp"
#include "tests/unit/support/net.hpp"
#include "tests/unit/support/temp_dir.hpp"

namespace agent = sluice::control::agent;
namespace crypto = sluice::control::crypto;
using namespace std::chrono_literals;

namespace {

using sluice::test::read_text;

// A scratch directory per test.
struct temp_dir : sluice::test::temp_dir {
  temp_dir() : sluice::test::temp_dir("sluice-agent") {}
};

const crypto::key_pair& controller_keys() {
  static const crypto::key_pair k = [] {
    auto p = crypto::generate_key_pair();
    REQUIRE(p.has_value());
    return *p;
  }();
  return k;
}
const crypto::key_pair& other_keys() {
  static const crypto::key_pair k = [] {
    auto p = crypto::generate_key_pair();
    REQUIRE(p.has_value());
    return *p;
  }();
  return k;
}

std::string policy_text(std::uint64_t revision, const std::string& domain = "t.me") {
  return "revision: " + std::to_string(revision) +
         "\nrules:\n  - id: r1\n    directive: D-1\n    action: drop\n    domains: [" + domain +
         "]\n";
}

// The legacy trusted comment (controllers before issue 13): bound to one node.
std::string comment_for(const std::string& node, std::uint64_t revision) {
  return "sluice-snapshot node=" + node + " revision=" + std::to_string(revision);
}
// The scoped trusted comment: the same bytes for every node of `scope`.
std::string scoped_comment(std::uint64_t revision, const std::string& scope) {
  return "sluice-snapshot revision=" + std::to_string(revision) + " scope=" + scope;
}

std::string sign_with(const crypto::key_pair& k, const std::string& text, const std::string& comment) {
  auto sig = crypto::sign(k.sec, text, comment);
  REQUIRE(sig.has_value());
  return *sig;
}

// A legacy 200 body: node, revision, policy, signed by `k` with `comment`.
std::string snapshot_body(const std::string& node, std::uint64_t revision, const std::string& policy,
                          const crypto::key_pair& k, const std::string& comment) {
  nlohmann::json j;
  j["node"] = node;
  j["revision"] = revision;
  j["policy"] = policy;
  j["signature"] = sign_with(k, policy, comment);
  return j.dump();
}
std::string good_body(const std::string& node, std::uint64_t revision) {
  return snapshot_body(node, revision, policy_text(revision), controller_keys(),
                       comment_for(node, revision));
}
// A 200 body of the scoped protocol: revision, scope, policy (no node), signed by `k`.
std::string scoped_body(std::uint64_t revision, const std::string& scope, const std::string& policy,
                        const crypto::key_pair& k, const std::string& comment) {
  nlohmann::json j;
  j["revision"] = revision;
  j["scope"] = scope;
  j["policy"] = policy;
  j["signature"] = sign_with(k, policy, comment);
  return j.dump();
}
// Scope +site:a takes the rig's nodes (site=a, group=canary).
std::string good_scoped(std::uint64_t revision, const std::string& scope = "+site:a") {
  return scoped_body(revision, scope, policy_text(revision), controller_keys(),
                     scoped_comment(revision, scope));
}
agent::label_map n1_labels() { return {{"site", "a"}, {"group", "canary"}}; }

// The fake controller: offers `body` with ETag `revision`; 304 (after `hold`) when the agent's
// If-None-Match names that revision or there is nothing to offer. Records what it saw.
class fake_controller {
 public:
  fake_controller() {
    server_.Get(R"(/v1/nodes/([^/]+)/snapshot)", [this](const httplib::Request& req,
                                                       httplib::Response& res) {
      std::string body;
      std::uint64_t revision = 0;
      std::chrono::milliseconds hold{};
      {
        std::lock_guard lock(mutex_);
        fetches.push_back({req.matches[1], req.get_header_value("If-None-Match"),
                           req.get_header_value("X-Sluice-Labels"),
                           req.get_header_value("Authorization"), req.get_param_value("wait")});
        body = body_;
        revision = revision_;
        hold = hold_;
      }
      const std::string etag = "\"" + std::to_string(revision) + "\"";
      if (body.empty() || req.get_header_value("If-None-Match") == etag) {
        std::unique_lock lock(mutex_);
        closing_cv_.wait_for(lock, hold, [&] { return closing_; });
        res.status = 304;
        return;
      }
      res.set_header("ETag", etag);
      res.set_content(body, "application/json");
    });
    server_.Post(R"(/v1/nodes/([^/]+)/status)", [this](const httplib::Request& req,
                                                      httplib::Response& res) {
      std::lock_guard lock(mutex_);
      if (failing_status_ > 0) {
        --failing_status_;
        res.status = 503;
        return;
      }
      reports.push_back(nlohmann::json::parse(req.body));
      res.status = 204;
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    REQUIRE(port_ > 0);
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::sleep_for(1ms);
  }
  ~fake_controller() {
    {
      std::lock_guard lock(mutex_);
      closing_ = true;
    }
    closing_cv_.notify_all();
    server_.stop();
    thread_.join();
  }
  [[nodiscard]] std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  void offer(std::string body, std::uint64_t revision) {
    std::lock_guard lock(mutex_);
    body_ = std::move(body);
    revision_ = revision;
  }
  // The next `n` status reports are answered 503 (and not recorded).
  void fail_status(int n) {
    std::lock_guard lock(mutex_);
    failing_status_ = n;
  }
  void hold_304(std::chrono::milliseconds h) {
    std::lock_guard lock(mutex_);
    hold_ = h;
  }
  // Reports that answer an offer (offered != 0).
  std::vector<nlohmann::json> offer_reports() {
    std::lock_guard lock(mutex_);
    std::vector<nlohmann::json> out;
    for (const auto& r : reports) {
      if (r["offered"].get<std::uint64_t>() != 0) out.push_back(r);
    }
    return out;
  }

  struct fetch_seen {
    std::string node, if_none_match, labels, authorization, wait;
  };
  std::mutex mutex_;
  std::vector<fetch_seen> fetches;
  std::vector<nlohmann::json> reports;

 private:
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
  std::string body_;
  std::uint64_t revision_ = 0;
  std::chrono::milliseconds hold_{0};
  int failing_status_ = 0;
  std::condition_variable closing_cv_;
  bool closing_ = false;
};

// A loopback port nobody listens on (bound, then closed: connections are refused).
std::string dead_url() { return "http://127.0.0.1:" + std::to_string(sluice::test::free_port()); }

class fake_applier final : public agent::applier {
 public:
  agent::apply_result apply(const std::string& text, std::uint64_t revision) override {
    calls.push_back({text, revision});
    if (refuse) return {false, current_.ruleset_sha256, "compile: rule 1 (r1): bad_prefix"};
    current_ = {revision, "sha-of-" + std::to_string(revision)};
    return {true, current_.ruleset_sha256, ""};
  }
  agent::applied_policy current() const override { return current_; }

  struct call {
    std::string text;
    std::uint64_t revision;
  };
  std::vector<call> calls;
  bool refuse = false;
  agent::applied_policy current_{0, "sha-empty"};
};

class fake_clock final : public agent::clock {
 public:
  std::chrono::steady_clock::time_point steady_now() override { return steady; }
  std::int64_t unix_now() override { return unix; }
  std::chrono::steady_clock::time_point steady{std::chrono::hours(1)};
  std::int64_t unix = 1'800'000'000;
};

// One agent with its transport, applier and clock, on `state`.
struct rig {
  rig(std::vector<std::string> urls, const std::filesystem::path& state, std::string node = "n1",
      agent::label_map labels = n1_labels()) {
    agent::http_transport_config tc;
    tc.urls = std::move(urls);
    tc.node_id = node;
    tc.token = "node-token";
    tc.labels = std::move(labels);
    tc.connect_timeout = 1s;
    tc.request_timeout = 2s;
    std::string error;
    transport = agent::http_transport::create(tc, error);
    REQUIRE_MESSAGE(transport != nullptr, error);
    agent::agent_config ac;
    ac.node_id = node;
    ac.labels = tc.labels;
    ac.controller_key = controller_keys().pub;
    ac.state_dir = state;
    ac.wait = 1s;
    ac.backoff_initial = 10ms;
    ac.backoff_max = 40ms;
    core = std::make_unique<agent::agent>(ac, *transport, applier, clock);
  }
  std::unique_ptr<agent::http_transport> transport;
  fake_applier applier;
  fake_clock clock;
  std::unique_ptr<agent::agent> core;
};

}  // namespace

TEST_CASE("parse_labels: table") {
  struct row {
    const char* desc;
    const char* input;
    bool ok;
    agent::label_map expected;
    const char* error_part;
  };
  const row rows[] = {
      {"empty", "", true, {}, ""},
      {"two", "site=a,region=north", true, {{"region", "north"}, {"site", "a"}}, ""},
      {"no equals", "site", false, {}, "not key=value"},
      {"empty value", "site=", false, {}, "1-64 of"},
      {"bad char", "si te=a", false, {}, "1-64 of"},
      {"duplicate", "a=1,a=2", false, {}, "given twice"},
      {"trailing comma", "a=1,", false, {}, "not key=value"},
  };
  for (const row& r : rows) {
    CAPTURE(r.desc);
    std::string error;
    const auto got = agent::parse_labels(r.input, error);
    REQUIRE(got.has_value() == r.ok);
    if (r.ok) {
      CHECK(*got == r.expected);
    } else {
      CHECK(error.find(r.error_part) != std::string::npos);
    }
  }
  CHECK(agent::format_labels({{"site", "a"}, {"group", "canary"}}) == "group=canary,site=a");
}

TEST_CASE("status_json carries every field of the node protocol") {
  agent::status_report r;
  r.revision = 4;
  r.offered = 5;
  r.ruleset_sha256 = "abc";
  r.ack = false;
  r.error = "stale_revision: x";
  r.labels = {{"site", "a"}};
  const auto j = nlohmann::json::parse(agent::status_json(r));
  CHECK(j == nlohmann::json{{"revision", 4}, {"offered", 5}, {"ruleset_sha256", "abc"},
                            {"result", "nack"}, {"error", "stale_revision: x"},
                            {"health", "ok"}, {"labels", {{"site", "a"}}}});
}

TEST_CASE("check_snapshot: each refusal with its code") {
  const auto& ck = controller_keys();
  struct row {
    const char* desc;
    std::string body;
    std::uint64_t held;
    agent::refusal code;
    const char* detail_part;
    std::uint64_t offered;
  };
  const row rows[] = {
      {"not JSON", "{", 0, agent::refusal::malformed_snapshot, "not a JSON object", 0},
      {"no signature", R"({"node":"n1","revision":3,"policy":"x"})", 0,
       agent::refusal::malformed_snapshot, "\"signature\" missing", 3},
      {"negative revision", R"({"node":"n1","revision":-3,"policy":"x","signature":"y"})", 0,
       agent::refusal::malformed_snapshot, "unsigned integer", 0},
      {"another node's snapshot", good_body("n2", 3), 0, agent::refusal::wrong_node,
       "for node 'n2', this is 'n1'", 3},
      {"signed by another key", snapshot_body("n1", 3, policy_text(3), other_keys(), comment_for("n1", 3)),
       0, agent::refusal::bad_signature, "wrong_key", 3},
      {"garbage signature", R"({"node":"n1","revision":3,"policy":"revision: 3\nrules: []\n","signature":"nope"})",
       0, agent::refusal::bad_signature, "malformed_signature", 3},
      {"comment names another node", snapshot_body("n1", 3, policy_text(3), ck, comment_for("n2", 3)),
       0, agent::refusal::wrong_trusted_comment, "or 'sluice-snapshot node=n1 revision=3'", 3},
      {"comment names another revision", snapshot_body("n1", 3, policy_text(3), ck, comment_for("n1", 4)),
       0, agent::refusal::wrong_trusted_comment, "node=n1 revision=4", 3},
      {"policy does not parse", snapshot_body("n1", 3, "revision: 3\nrules: [\n", ck, comment_for("n1", 3)),
       0, agent::refusal::invalid_policy, ":", 3},
      {"policy uses apps:", snapshot_body("n1", 3, "revision: 3\nrules:\n  - id: r\n    action: drop\n    apps: [telegram]\n",
                                          ck, comment_for("n1", 3)),
       0, agent::refusal::invalid_policy, "", 3},
      {"policy revision differs", snapshot_body("n1", 3, policy_text(2), ck, comment_for("n1", 3)), 0,
       agent::refusal::revision_mismatch, "policy says revision: 2, snapshot revision is 3", 3},
      {"revision equal to held", good_body("n1", 3), 3, agent::refusal::stale_revision,
       "revision 3 is not above held revision 3", 3},
      {"revision below held", good_body("n1", 3), 7, agent::refusal::stale_revision,
       "not above held revision 7", 3},
      {"scoped: another site", good_scoped(3, "+site:b|c"), 0, agent::refusal::wrong_scope,
       "fails term '+site:b|c' of scope '+site:b|c'", 3},
      {"scoped: excluded group", good_scoped(3, "+site:a,!group=canary"), 0,
       agent::refusal::wrong_scope, "fails term '!group=canary'", 3},
      {"scoped: malformed scope", good_scoped(3, "+site:a,"), 0,
       agent::refusal::wrong_trusted_comment, "scope: empty term", 3},
      {"scoped: comment names another revision",
       scoped_body(3, "all", policy_text(3), ck, scoped_comment(4, "all")), 0,
       agent::refusal::wrong_trusted_comment, "names revision 4, the snapshot is revision 3", 3},
      {"scoped: body scope is not the signed one",
       scoped_body(3, "all", policy_text(3), ck, scoped_comment(3, "+site:a")), 0,
       agent::refusal::wrong_trusted_comment, "body scope 'all' is not the signed scope '+site:a'", 3},
      {"scoped: body names another node", [&] {
         auto j = nlohmann::json::parse(good_scoped(3));
         j["node"] = "n2";
         return j.dump();
       }(), 0, agent::refusal::wrong_node, "for node 'n2', this is 'n1'", 3},
      {"scoped: signed by another key",
       scoped_body(3, "all", policy_text(3), other_keys(), scoped_comment(3, "all")), 0,
       agent::refusal::bad_signature, "wrong_key", 3},
      {"scoped: stale", good_scoped(3), 3, agent::refusal::stale_revision, "not above held", 3},
      {"comment of neither form", snapshot_body("n1", 3, policy_text(3), ck, "sluice-snapshot 3"),
       0, agent::refusal::wrong_trusted_comment, "expected 'sluice-snapshot revision=3 scope=S'", 3},
  };
  for (const row& r : rows) {
    CAPTURE(r.desc);
    const agent::snapshot_check c = agent::check_snapshot(r.body, "n1", n1_labels(), ck.pub, r.held);
    REQUIRE_FALSE(c);
    CHECK(c.code == r.code);
    CHECK(c.offered == r.offered);
    CHECK_MESSAGE(c.detail.find(r.detail_part) != std::string::npos, c.detail);
    CHECK(c.error_text().rfind(std::string(agent::to_string(r.code)) + ": ", 0) == 0);
  }
  const agent::snapshot_check ok = agent::check_snapshot(good_body("n1", 3), "n1", n1_labels(), ck.pub, 2);
  REQUIRE(ok);
  CHECK(ok.accepted->revision == 3);
  CHECK(ok.accepted->policy == policy_text(3));
  CHECK(ok.accepted->node == "n1");
  CHECK(ok.accepted->scope == "");
  const agent::snapshot_check scoped = agent::check_snapshot(good_scoped(3), "n1", n1_labels(), ck.pub, 2);
  REQUIRE(scoped);
  CHECK(scoped.accepted->node == "n1");
  CHECK(scoped.accepted->scope == "+site:a");
}

TEST_CASE("check_snapshot: +region=north is for north nodes only; one body serves every one") {
  const auto& ck = controller_keys();
  const std::string body = good_scoped(5, "+region=north");
  const agent::snapshot_check south =
      agent::check_snapshot(body, "n1", {{"region", "south"}}, ck.pub, 0);
  REQUIRE_FALSE(south);
  CHECK(south.code == agent::refusal::wrong_scope);
  CHECK(south.error_text().rfind("wrong_scope: ", 0) == 0);
  CHECK(agent::check_snapshot(body, "n1", {{"region", "north"}}, ck.pub, 0));
  // The same bytes for two nodes of the scope: no node id in them.
  const agent::snapshot_check a =
      agent::check_snapshot(body, "edge-a", {{"region", "north"}, {"site", "x"}}, ck.pub, 0);
  const agent::snapshot_check b =
      agent::check_snapshot(body, "edge-b", {{"region", "north"}, {"site", "y"}}, ck.pub, 4);
  REQUIRE(a);
  REQUIRE(b);
  CHECK(a.accepted->node == "edge-a");
  CHECK(b.accepted->node == "edge-b");
  CHECK(a.accepted->policy == b.accepted->policy);
  // The legacy form stays bound to its node.
  CHECK(agent::check_snapshot(good_body("edge-a", 5), "edge-a", {}, ck.pub, 0));
  CHECK(agent::check_snapshot(good_body("edge-a", 5), "edge-b", {}, ck.pub, 0).code ==
        agent::refusal::wrong_node);
}

TEST_CASE("a good snapshot is applied, persisted and ACKed with the applier's sha; then 304") {
  fake_controller ctl;
  temp_dir state;
  rig r({ctl.url()}, state.path);
  const std::string body = good_scoped(5);
  ctl.offer(body, 5);

  CHECK(r.core->run_once() == agent::poll_outcome::applied);
  REQUIRE(r.applier.calls.size() == 1);
  CHECK(r.applier.calls[0].revision == 5);
  CHECK(r.applier.calls[0].text == policy_text(5));

  const auto reports = ctl.offer_reports();
  REQUIRE(reports.size() == 1);
  CHECK(reports[0]["result"] == "ack");
  CHECK(reports[0]["offered"] == 5);
  CHECK(reports[0]["revision"] == 5);
  CHECK(reports[0]["ruleset_sha256"] == "sha-of-5");
  CHECK(reports[0]["error"] == "");
  CHECK(reports[0]["labels"] == nlohmann::json{{"group", "canary"}, {"site", "a"}});

  // What was persisted is the snapshot as received, plus this node's id.
  const auto persisted = nlohmann::json::parse(read_text(state.path / "snapshot.json"));
  auto expected = nlohmann::json::parse(body);
  expected["node"] = "n1";
  CHECK(persisted == expected);
  CHECK_FALSE(std::filesystem::exists(state.path / "snapshot.json.tmp"));

  {
    std::lock_guard lock(ctl.mutex_);
    REQUIRE(ctl.fetches.size() == 1);
    CHECK(ctl.fetches[0].node == "n1");
    CHECK(ctl.fetches[0].if_none_match == "");
    CHECK(ctl.fetches[0].labels == "group=canary,site=a");
    CHECK(ctl.fetches[0].authorization == "Bearer node-token");
    // The first report went out before the fetch: a periodic one (offered 0).
    REQUIRE(ctl.reports.size() == 2);
    CHECK(ctl.reports[0]["offered"] == 0);
    CHECK(ctl.reports[0]["revision"] == 0);
  }

  CHECK(r.core->run_once() == agent::poll_outcome::not_modified);
  {
    std::lock_guard lock(ctl.mutex_);
    REQUIRE(ctl.fetches.size() == 2);
    CHECK(ctl.fetches[1].if_none_match == "\"5\"");
  }
  const agent::agent_state s = r.core->state();
  CHECK(s.held_revision == 5);
  CHECK(s.applied_revision == 5);
  CHECK(s.ruleset_sha256 == "sha-of-5");
  CHECK(s.fetches == 2);
  CHECK(s.not_modified == 1);
  CHECK(s.applied == 1);
  CHECK(s.acks == 1);
  CHECK(s.nacks == 0);
  CHECK(s.fetch_failures == 0);
  CHECK(s.last_contact == r.clock.unix);
  CHECK(s.controller == ctl.url());
  CHECK(r.applier.calls.size() == 1);
}

TEST_CASE("refused offers are NACKed, keep the old policy and are not persisted") {
  const auto& ck = controller_keys();
  struct row {
    const char* desc;
    std::string body;
    std::uint64_t offered;
    bool applier_refuses;
    const char* error_prefix;
  };
  const row rows[] = {
      {"bad signature", snapshot_body("n1", 6, policy_text(6), other_keys(), comment_for("n1", 6)), 6,
       false, "bad_signature: "},
      {"tampered policy", [&] {
         auto j = nlohmann::json::parse(good_body("n1", 6));
         j["policy"] = policy_text(6, "x.me");
         return j.dump();
       }(), 6, false, "bad_signature: bad_signature"},
      {"signed for another node id", good_body("n2", 6), 6, false, "wrong_node: "},
      {"comment for another node", snapshot_body("n1", 6, policy_text(6), ck, comment_for("n2", 6)), 6,
       false, "wrong_trusted_comment: "},
      {"revision not above the held one", good_body("n1", 4), 4, false,
       "stale_revision: revision 4 is not above held revision 4"},
      {"policy does not parse", snapshot_body("n1", 6, "revision: 6\nrules: 7\n", ck, comment_for("n1", 6)),
       6, false, "invalid_policy: "},
      {"dataplane refuses it", good_scoped(6), 6, true,
       "apply_failed: compile: rule 1 (r1): bad_prefix"},
      {"scope of another site", good_scoped(6, "+site:b"), 6, false, "wrong_scope: "},
      {"scoped, revision not above the held one", good_scoped(4), 4, false, "stale_revision: "},
  };
  for (const row& rw : rows) {
    CAPTURE(rw.desc);
    fake_controller ctl;
    temp_dir state;
    rig r({ctl.url()}, state.path);
    ctl.offer(good_scoped(4), 4);
    REQUIRE(r.core->run_once() == agent::poll_outcome::applied);
    const std::string persisted_before = read_text(state.path / "snapshot.json");

    r.applier.refuse = rw.applier_refuses;
    ctl.offer(rw.body, rw.offered + 100);  // an ETag the agent does not hold
    CHECK(r.core->run_once() == agent::poll_outcome::refused);

    CHECK(r.applier.current().revision == 4);
    CHECK(r.applier.calls.size() == (rw.applier_refuses ? 2u : 1u));
    CHECK(read_text(state.path / "snapshot.json") == persisted_before);
    const auto reports = ctl.offer_reports();
    REQUIRE(reports.size() == 2);
    const auto& nack = reports[1];
    CHECK(nack["result"] == "nack");
    CHECK(nack["offered"] == rw.offered);
    CHECK(nack["revision"] == 4);
    CHECK(nack["ruleset_sha256"] == "sha-of-4");
    CHECK_MESSAGE(nack["error"].get<std::string>().rfind(rw.error_prefix, 0) == 0,
                  nack["error"].get<std::string>());
    const agent::agent_state s = r.core->state();
    CHECK(s.held_revision == 4);
    CHECK(s.applied_revision == 4);
    CHECK(s.nacks == 1);
    CHECK(s.last_error == nack["error"].get<std::string>());

    // Still holding 4: the next fetch says so.
    ctl.offer(good_scoped(4), 4);
    CHECK(r.core->run_once() == agent::poll_outcome::not_modified);
    std::lock_guard lock(ctl.mutex_);
    CHECK(ctl.fetches.back().if_none_match == "\"4\"");
  }
}

TEST_CASE("restart: the persisted snapshot is re-verified and applied with the controller down") {
  temp_dir state;
  {
    fake_controller ctl;
    rig r({ctl.url()}, state.path);
    ctl.offer(good_scoped(3), 3);
    REQUIRE(r.core->run_once() == agent::poll_outcome::applied);
  }
  const std::string down = dead_url();
  {
    rig r({down}, state.path);
    CHECK(r.core->start());
    REQUIRE(r.applier.calls.size() == 1);
    CHECK(r.applier.calls[0].revision == 3);
    CHECK(r.applier.calls[0].text == policy_text(3));
    CHECK(r.core->state().startup == "persisted snapshot revision 3 in force");
    CHECK(r.core->run_once() == agent::poll_outcome::fetch_failed);
    const agent::agent_state s = r.core->state();
    CHECK(s.held_revision == 3);
    CHECK(s.applied_revision == 3);
    CHECK(s.fetch_failures == 1);
    CHECK(s.status_failures == 1);
    CHECK(s.last_contact == 0);
    CHECK(s.last_error.find(down) != std::string::npos);
  }
  SUBCASE("tampered policy in the file") {
    auto j = nlohmann::json::parse(read_text(state.path / "snapshot.json"));
    j["policy"] = policy_text(3, "x.me");
    std::ofstream(state.path / "snapshot.json", std::ios::trunc) << j.dump();
    rig r({down}, state.path);
    CHECK_FALSE(r.core->start());
    CHECK(r.applier.calls.empty());
    CHECK(r.core->state().startup.rfind("persisted snapshot refused: bad_signature: ", 0) == 0);
    CHECK(r.core->state().held_revision == 0);
  }
  SUBCASE("file for another node") {
    rig r({down}, state.path, "n9");
    CHECK_FALSE(r.core->start());
    CHECK(r.applier.calls.empty());
    CHECK(r.core->state().startup.rfind("persisted snapshot refused: wrong_node: ", 0) == 0);
  }
  SUBCASE("labels changed: the persisted scope no longer takes this node") {
    rig r({down}, state.path, "n1", {{"site", "b"}});
    CHECK_FALSE(r.core->start());
    CHECK(r.applier.calls.empty());
    CHECK(r.core->state().startup.rfind("persisted snapshot refused: wrong_scope: ", 0) == 0);
  }
  SUBCASE("truncated file") {
    const std::string text = read_text(state.path / "snapshot.json");
    std::ofstream(state.path / "snapshot.json", std::ios::trunc) << text.substr(0, text.size() / 2);
    rig r({down}, state.path);
    CHECK_FALSE(r.core->start());
    CHECK(r.applier.calls.empty());
    CHECK(r.core->state().startup.rfind("persisted snapshot refused: malformed_snapshot: ", 0) == 0);
  }
}

TEST_CASE("no persisted snapshot: start() applies nothing") {
  temp_dir state;
  rig r({dead_url()}, state.path);
  CHECK_FALSE(r.core->start());
  CHECK(r.applier.calls.empty());
  CHECK(r.core->state().startup == "no persisted snapshot");
}

TEST_CASE("failover: the second controller URL serves when the first is down") {
  fake_controller ctl;
  temp_dir state;
  const std::string down = dead_url();
  rig r({down, ctl.url()}, state.path);
  ctl.offer(good_body("n1", 2), 2);
  CHECK(r.core->run_once() == agent::poll_outcome::applied);
  CHECK(r.core->state().controller == ctl.url());
  CHECK(ctl.offer_reports().size() == 1);
  // Sticks with the one that answered.
  CHECK(r.core->run_once() == agent::poll_outcome::not_modified);
  CHECK(r.core->state().fetch_failures == 0);
}

TEST_CASE("every controller down: the failure names each one") {
  temp_dir state;
  const std::string a = dead_url(), b = dead_url();
  rig r({a, b}, state.path);
  CHECK(r.core->run_once() == agent::poll_outcome::fetch_failed);
  const std::string err = r.core->state().last_error;
  CHECK(err.rfind("fetch: ", 0) == 0);
  CHECK(err.find(a + ": ") != std::string::npos);
  CHECK(err.find(b + ": ") != std::string::npos);
}

TEST_CASE("periodic status: reports again once the interval has passed") {
  fake_controller ctl;
  temp_dir state;
  rig r({ctl.url()}, state.path);
  CHECK(r.core->run_once() == agent::poll_outcome::not_modified);
  CHECK(r.core->run_once() == agent::poll_outcome::not_modified);
  {
    std::lock_guard lock(ctl.mutex_);
    CHECK(ctl.reports.size() == 1);  // the first one only: 30 s have not passed
  }
  r.clock.steady += 31s;
  CHECK(r.core->run_once() == agent::poll_outcome::not_modified);
  std::lock_guard lock(ctl.mutex_);
  REQUIRE(ctl.reports.size() == 2);
  CHECK(ctl.reports[1]["offered"] == 0);
  CHECK(ctl.reports[1]["result"] == "ack");
  CHECK(ctl.reports[1]["health"] == "ok");
}

TEST_CASE("run on a runner thread: applies, then stop() ends a long-poll in progress") {
  fake_controller ctl;
  temp_dir state;
  rig r({ctl.url()}, state.path);
  ctl.hold_304(10s);
  ctl.offer(good_body("n1", 8), 8);
  std::chrono::steady_clock::time_point stop_at;
  {
    agent::runner run(*r.core);
    REQUIRE(run.started());
    for (int i = 0; i < 200 && r.core->state().applied_revision != 8; ++i) {
      std::this_thread::sleep_for(10ms);
    }
    CHECK(r.core->state().applied_revision == 8);
    std::this_thread::sleep_for(100ms);  // now in the held long-poll
    stop_at = std::chrono::steady_clock::now();
  }
  CHECK(std::chrono::steady_clock::now() - stop_at < 3s);
  CHECK(ctl.offer_reports().size() == 1);
}

TEST_CASE("a lost ACK is re-sent before the next long poll, not after it") {
  fake_controller ctl;
  temp_dir state;
  rig r({ctl.url()}, state.path);
  ctl.offer(good_body("n1", 5), 5);
  ctl.fail_status(3);  // the first periodic report, the ACK, and the ACK's first retry

  CHECK(r.core->run_once() == agent::poll_outcome::applied);
  CHECK(ctl.offer_reports().empty());
  CHECK(r.core->run_once() == agent::poll_outcome::report_failed);
  {
    std::lock_guard lock(ctl.mutex_);
    CHECK(ctl.fetches.size() == 1);  // no long poll while the ACK is owed
  }
  ctl.hold_304(0ms);
  CHECK(r.core->run_once() == agent::poll_outcome::not_modified);
  const auto acks = ctl.offer_reports();
  REQUIRE(acks.size() == 1);
  CHECK(acks[0]["result"] == "ack");
  CHECK(acks[0]["offered"] == 5);
  std::lock_guard lock(ctl.mutex_);
  CHECK(ctl.fetches.size() == 2);
  CHECK(r.core->state().status_failures == 3);
}

namespace {

// A transport the step-driven agent must never use.
class no_transport final : public agent::transport {
 public:
  agent::fetch_result fetch(std::uint64_t, std::chrono::seconds, std::string_view) override {
    ++calls;
    return {};
  }
  agent::post_result post_status(const agent::status_report&) override {
    ++calls;
    return {};
  }
  void interrupt() override {}
  int calls = 0;
};

agent::fetch_result answered(agent::fetch_status status, std::string body = "") {
  agent::fetch_result f;
  f.status = status;
  f.body = std::move(body);
  f.controller = "http://ctl";
  return f;
}

}  // namespace

TEST_CASE("steps: a driver that is not run_once goes through report, poll, apply, ACK, backoff") {
  temp_dir state;
  no_transport none;
  fake_applier applier;
  fake_clock clock;
  agent::agent_config ac;
  ac.node_id = "n1";
  ac.labels = n1_labels();
  ac.controller_key = controller_keys().pub;
  ac.state_dir = state.path;
  ac.backoff_initial = 10ms;
  ac.backoff_max = 40ms;
  agent::agent a(ac, none, applier, clock);

  // First: the periodic report is due at once (start() is implied).
  auto due = a.report_due();
  REQUIRE(due);
  CHECK_FALSE(due->retry);
  CHECK(due->report.offered == 0);
  CHECK(due->report.labels == n1_labels());
  CHECK(a.state().startup == "no persisted snapshot");
  CHECK(a.report_sent(due->report, {true, ""}));
  CHECK_FALSE(a.report_due());
  CHECK(a.held_revision() == 0);
  CHECK(a.poll_wait() == 25s);  // the configured wait: the next report is 30 s away
  clock.steady += 20s;
  CHECK(a.poll_wait() == 10s);  // cut so the periodic report keeps its interval

  // A snapshot: applied, persisted, ACK to send.
  agent::agent::fetch_handling h = a.handle_fetch(answered(agent::fetch_status::snapshot, good_scoped(5)));
  CHECK(h.outcome == agent::poll_outcome::applied);
  REQUIRE(h.report);
  CHECK(h.report->ack);
  CHECK(h.report->offered == 5);
  CHECK(h.report->ruleset_sha256 == "sha-of-5");
  CHECK(a.held_revision() == 5);
  CHECK(std::filesystem::exists(state.path / "snapshot.json"));
  CHECK(a.backoff_after(h.outcome) == 0ms);

  // The ACK is lost: it is owed, as a retry, before the next poll.
  CHECK_FALSE(a.report_sent(*h.report, {false, "503"}));
  due = a.report_due();
  REQUIRE(due);
  CHECK(due->retry);
  CHECK(due->report == *h.report);
  CHECK(a.backoff_after(agent::poll_outcome::report_failed) == 10ms);
  CHECK(a.report_sent(due->report, {true, ""}));
  CHECK_FALSE(a.report_due());

  // 304, then failures back off (capped), and an answer resets it.
  h = a.handle_fetch(answered(agent::fetch_status::not_modified));
  CHECK(h.outcome == agent::poll_outcome::not_modified);
  CHECK_FALSE(h.report);
  CHECK(a.backoff_after(h.outcome) == 0ms);
  agent::fetch_result down;
  down.error = "http://ctl: connection refused";
  down.controller = "http://ctl";
  for (auto expected : {10ms, 20ms, 40ms, 40ms}) {
    h = a.handle_fetch(down);
    CHECK(h.outcome == agent::poll_outcome::fetch_failed);
    CHECK(a.backoff_after(h.outcome) == expected);
  }
  CHECK(a.backoff_after(agent::poll_outcome::not_modified) == 0ms);

  // A refused offer: NACK, held revision unchanged.
  h = a.handle_fetch(answered(agent::fetch_status::snapshot, good_scoped(6, "+site:b")));
  CHECK(h.outcome == agent::poll_outcome::refused);
  REQUIRE(h.report);
  CHECK_FALSE(h.report->ack);
  CHECK(h.report->error.rfind("wrong_scope: ", 0) == 0);
  CHECK(a.report_sent(*h.report, {true, ""}));
  CHECK(a.held_revision() == 5);

  const agent::agent_state s = a.state();
  CHECK(s.held_revision == 5);
  CHECK(s.applied_revision == 5);
  CHECK(s.fetches == 3);
  CHECK(s.not_modified == 1);
  CHECK(s.fetch_failures == 4);
  CHECK(s.applied == 1);
  CHECK(s.acks == 1);
  CHECK(s.nacks == 1);
  CHECK(s.status_posts == 3);
  CHECK(s.status_failures == 1);
  CHECK(s.controller == "http://ctl");
  CHECK(none.calls == 0);
}

TEST_CASE("steps: once the controller says it takes them, ACKs ride on the next poll") {
  temp_dir state;
  no_transport none;
  fake_applier applier;
  fake_clock clock;
  agent::agent_config ac;
  ac.node_id = "n1";
  ac.labels = n1_labels();
  ac.controller_key = controller_keys().pub;
  ac.state_dir = state.path;
  ac.backoff_initial = 10ms;
  agent::agent a(ac, none, applier, clock);
  const auto carrying = [](agent::fetch_result f) {
    f.status_carry = true;
    return f;
  };

  // Nothing is known of the controller yet: the first report is POSTed.
  auto due = a.report_due();
  REQUIRE(due);
  CHECK(due->carry.empty());
  CHECK(a.report_sent(due->report, {true, ""}));

  // The answer says it takes reports: the ACK of 5 is owed, not handed out to POST...
  agent::agent::fetch_handling h =
      a.handle_fetch(carrying(answered(agent::fetch_status::snapshot, good_scoped(5))));
  CHECK(h.outcome == agent::poll_outcome::applied);
  CHECK_FALSE(h.report);
  CHECK_FALSE(h.taken);
  // ...but to carry on the next poll, which is not cut short for it.
  due = a.report_due();
  REQUIRE(due);
  CHECK(due->retry);
  CHECK(due->report.offered == 5);
  CHECK(due->carry == "ack revision=5 offered=5 ruleset=sha-of-5");
  CHECK(a.poll_wait() == 25s);
  CHECK_FALSE(a.report_due());  // in flight: not handed out twice
  CHECK(a.state().acks == 0);   // not taken yet
  h = a.handle_fetch(carrying(answered(agent::fetch_status::not_modified)));
  REQUIRE(h.taken);
  CHECK(h.taken->offered == 5);
  CHECK(a.state().acks == 1);
  CHECK_FALSE(a.report_due());

  // A carried report whose poll failed is owed, and POSTed next (no controller is known to
  // take it).
  h = a.handle_fetch(carrying(answered(agent::fetch_status::snapshot, good_scoped(6))));
  due = a.report_due();
  REQUIRE(due);
  CHECK_FALSE(due->carry.empty());
  agent::fetch_result down;
  down.error = "http://ctl: connection refused";
  h = a.handle_fetch(down);
  CHECK(h.outcome == agent::poll_outcome::fetch_failed);
  CHECK_FALSE(h.taken);
  due = a.report_due();
  REQUIRE(due);
  CHECK(due->retry);
  CHECK(due->report.offered == 6);
  CHECK(due->carry.empty());
  CHECK(a.report_sent(due->report, {true, ""}));
  CHECK(a.state().acks == 2);

  // Carried, but answered by a controller that does not take reports (an older replica): owed,
  // and POSTed.
  h = a.handle_fetch(carrying(answered(agent::fetch_status::snapshot, good_scoped(7))));
  due = a.report_due();
  REQUIRE(due);
  CHECK_FALSE(due->carry.empty());
  h = a.handle_fetch(answered(agent::fetch_status::not_modified));
  CHECK_FALSE(h.taken);
  due = a.report_due();
  REQUIRE(due);
  CHECK(due->report.offered == 7);
  CHECK(due->carry.empty());
  CHECK(a.report_sent(due->report, {true, ""}));

  // A NACK is never carried: its error text is for the POST body.
  h = a.handle_fetch(carrying(answered(agent::fetch_status::not_modified)));
  h = a.handle_fetch(carrying(answered(agent::fetch_status::snapshot, good_scoped(8, "+site:b"))));
  CHECK(h.outcome == agent::poll_outcome::refused);
  REQUIRE(h.report);
  CHECK_FALSE(h.report->ack);
  CHECK(a.report_sent(*h.report, {true, ""}));

  // The periodic report rides too, and the interval runs from when it left.
  clock.steady += 30s;
  due = a.report_due();
  REQUIRE(due);
  CHECK_FALSE(due->retry);
  CHECK(due->carry == "ack revision=7 offered=0 ruleset=sha-of-7");
  CHECK(a.poll_wait() == 25s);
  h = a.handle_fetch(carrying(answered(agent::fetch_status::not_modified)));
  REQUIRE(h.taken);
  CHECK(h.taken->offered == 0);
  const agent::agent_state s = a.state();
  CHECK(s.acks == 3);
  CHECK(s.nacks == 1);
  CHECK(s.status_posts == 6);  // reports taken, by POST or on a poll
  CHECK(none.calls == 0);
}

TEST_CASE("status_header: the carried form; only ACKs in good health without a conflict carry") {
  agent::status_report r;
  r.revision = 12;
  r.offered = 12;
  r.ruleset_sha256 = std::string(64, 'a');
  CHECK(agent::carriable(r));
  CHECK(agent::status_header(r, "") == "ack revision=12 offered=12 ruleset=" + std::string(64, 'a'));
  CHECK(agent::status_header(r, "eyJ9") ==
        "ack revision=12 offered=12 ruleset=" + std::string(64, 'a') + " checkpoint=eyJ9");
  agent::status_report nack = r;
  nack.ack = false;
  nack.error = "apply_failed: no";
  CHECK_FALSE(agent::carriable(nack));
  agent::status_report sick = r;
  sick.health = "snapshot not persisted: disk full";
  CHECK_FALSE(agent::carriable(sick));
  agent::status_report conflict = r;
  conflict.audit_checkpoint_conflict = "{}";
  CHECK_FALSE(agent::carriable(conflict));
}

TEST_CASE("steps: the same answers reach the same state as run_once over HTTP") {
  fake_controller ctl;
  temp_dir run_state, step_state;
  rig r({ctl.url()}, run_state.path);
  no_transport none;
  fake_applier applier;
  fake_clock clock;
  agent::agent_config ac;
  ac.node_id = "n1";
  ac.labels = n1_labels();
  ac.controller_key = controller_keys().pub;
  ac.state_dir = step_state.path;
  agent::agent stepped(ac, none, applier, clock);

  const std::string bodies[] = {good_scoped(3), good_scoped(4, "+site:b"), good_body("n1", 5)};
  for (const std::string& body : bodies) {
    const std::uint64_t offered = nlohmann::json::parse(body)["revision"].get<std::uint64_t>();
    ctl.offer(body, offered);
    const agent::poll_outcome by_run = r.core->run_once();
    if (auto due = stepped.report_due()) (void)stepped.report_sent(due->report, {true, ""});
    const agent::agent::fetch_handling h =
        stepped.handle_fetch(answered(agent::fetch_status::snapshot, body));
    if (h.report) (void)stepped.report_sent(*h.report, {true, ""});
    CHECK(h.outcome == by_run);
  }
  agent::agent_state a = r.core->state(), b = stepped.state();
  a.controller = b.controller = "";
  CHECK(a.held_revision == b.held_revision);
  CHECK(a.applied == b.applied);
  CHECK(a.acks == b.acks);
  CHECK(a.nacks == b.nacks);
  CHECK(a.status_posts == b.status_posts);
  CHECK(a.last_error == b.last_error);
  CHECK(read_text(run_state.path / "snapshot.json") == read_text(step_state.path / "snapshot.json"));
}
