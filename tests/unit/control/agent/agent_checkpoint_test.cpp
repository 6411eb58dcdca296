// The agent's audit checkpoints (issue 14), through its steps (no HTTP): taken from a 200's
// "checkpoint" member and a 304's header, verified, persisted beside snapshot.json, never
// regressed, a conflict kept, all of it reported; re-verified from the state dir at start.

#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "control/agent/agent.hpp"
#include "control/audit/checkpoint.hpp"
#include "tests/unit/support/temp_dir.hpp"

namespace agent = sluice::control::agent;
namespace audit = sluice::control::audit;
namespace crypto = sluice::control::crypto;

namespace {

using sluice::test::read_text;

// A scratch directory per test.
struct temp_dir : sluice::test::temp_dir {
  temp_dir() : sluice::test::temp_dir("sluice-agent-cp") {}
};

const crypto::key_pair& controller_keys() {
  static const crypto::key_pair k = *crypto::generate_key_pair();
  return k;
}
const crypto::key_pair& other_keys() {
  static const crypto::key_pair k = *crypto::generate_key_pair();
  return k;
}

// A head hash that differs per (count, history).
std::string head_of(std::uint64_t count, char history = 'a') {
  return audit::sha256_hex(std::string(1, history) + std::to_string(count));
}

audit::checkpoint cp(std::uint64_t count, char history = 'a',
                     const crypto::key_pair& k = controller_keys()) {
  auto c = audit::make_checkpoint(k.sec, count, head_of(count, history), 1795867200000 + 7, "ctl-a");
  REQUIRE(c);
  return *c;
}

// The controller's 200 body: the signed snapshot JSON, its final '}' reopened for the
// checkpoint member (what controller::served_locked builds).
std::string body_with(std::uint64_t revision, const std::string& scope,
                      const std::optional<audit::checkpoint>& c) {
  const std::string policy = "revision: " + std::to_string(revision) + "\nrules: []\n";
  nlohmann::json j;
  j["revision"] = revision;
  j["scope"] = scope;
  j["policy"] = policy;
  j["signature"] = *crypto::sign(controller_keys().sec, policy,
                                 "sluice-snapshot revision=" + std::to_string(revision) +
                                     " scope=" + scope);
  std::string body = j.dump();
  if (c) {
    body.pop_back();
    body += ",\"checkpoint\":" + audit::checkpoint_json(*c) + "}";
  }
  return body;
}

agent::fetch_result answer_200(std::string body) {
  agent::fetch_result f;
  f.status = agent::fetch_status::snapshot;
  f.body = std::move(body);
  f.controller = "http://ctl";
  return f;
}
agent::fetch_result answer_304(const std::optional<audit::checkpoint>& c) {
  agent::fetch_result f;
  f.status = agent::fetch_status::not_modified;
  if (c) f.checkpoint = audit::checkpoint_header(*c);
  f.controller = "http://ctl";
  return f;
}

class no_transport final : public agent::transport {
 public:
  agent::fetch_result fetch(std::uint64_t, std::chrono::seconds, std::string_view) override { return {}; }
  agent::post_result post_status(const agent::status_report&) override { return {}; }
  void interrupt() override {}
};

class fake_applier final : public agent::applier {
 public:
  agent::apply_result apply(const std::string&, std::uint64_t revision) override {
    current_ = {revision, "sha-of-" + std::to_string(revision)};
    return {true, current_.ruleset_sha256, ""};
  }
  agent::applied_policy current() const override { return current_; }
  agent::applied_policy current_{0, "sha-empty"};
};

class fake_clock final : public agent::clock {
 public:
  std::chrono::steady_clock::time_point steady_now() override { return steady; }
  std::int64_t unix_now() override { return 1'800'000'000; }
  std::chrono::steady_clock::time_point steady{std::chrono::hours(1)};
};

// Counts the checkpoint verifications the agent asks for.
class counting_verifier final : public agent::snapshot_verifier {
 public:
  audit::checkpoint_check verify_checkpoint(const crypto::public_key& key,
                                            const audit::checkpoint& c) override {
    ++checkpoint_checks;
    return snapshot_verifier::verify_checkpoint(key, c);
  }
  int checkpoint_checks = 0;
};

struct node {
  explicit node(const std::filesystem::path& state) {
    agent::agent_config ac;
    ac.node_id = "edge-7";
    ac.labels = {{"site", "a"}};
    ac.controller_key = controller_keys().pub;
    ac.state_dir = state;
    ac.verifier = &verifier;
    core = std::make_unique<agent::agent>(ac, none, applier, clock);
    core->start();
  }
  // The periodic report, as sent.
  nlohmann::json report() {
    auto due = core->report_due();
    if (!due) {
      clock.steady += std::chrono::seconds(31);
      due = core->report_due();
    }
    REQUIRE(due);
    REQUIRE(core->report_sent(due->report, {true, ""}));
    return nlohmann::json::parse(agent::status_json(due->report));
  }
  no_transport none;
  fake_applier applier;
  fake_clock clock;
  counting_verifier verifier;
  std::unique_ptr<agent::agent> core;
};

std::uint64_t reported_count(const nlohmann::json& status) {
  return status.contains("audit_checkpoint") ? status["audit_checkpoint"]["count"].get<std::uint64_t>()
                                             : 0;
}

}  // namespace

TEST_CASE("agent checkpoints: taken from 200s and 304s, persisted, reported, never backwards") {
  temp_dir state;
  node n(state.path);
  const auto file = state.path / agent::checkpoint_file_name;
  const auto conflict_file = state.path / agent::checkpoint_conflict_file_name;
  CHECK_FALSE(n.report().contains("audit_checkpoint"));  // nothing held yet: nothing reported

  // A snapshot with checkpoint 5: applied, and the checkpoint persisted and in the ACK.
  auto h = n.core->handle_fetch(answer_200(body_with(3, "all", cp(5))));
  CHECK(h.outcome == agent::poll_outcome::applied);
  REQUIRE(h.report);
  CHECK(h.report->audit_checkpoint == audit::checkpoint_json(cp(5)));
  CHECK(read_text(file) == audit::checkpoint_json(cp(5)) + "\n");
  const auto ack = nlohmann::json::parse(agent::status_json(*h.report));
  CHECK(ack["audit_checkpoint"]["count"] == 5);
  CHECK(ack["audit_checkpoint"]["head"] == head_of(5));
  CHECK(ack["audit_checkpoint"]["signature"] == cp(5).signature);  // verifiable by anyone
  CHECK_FALSE(ack.contains("audit_checkpoint_conflict"));
  CHECK(n.core->state().checkpoint_count == 5);

  // A 304 carries a newer one: taken.
  h = n.core->handle_fetch(answer_304(cp(7)));
  CHECK(h.outcome == agent::poll_outcome::not_modified);
  CHECK(read_text(file) == audit::checkpoint_json(cp(7)) + "\n");
  CHECK(reported_count(n.report()) == 7);

  // An older one (another replica lagging, or a shortened log's): ignored, not even verified.
  const int checks = n.verifier.checkpoint_checks;
  (void)n.core->handle_fetch(answer_304(cp(6)));
  (void)n.core->handle_fetch(answer_200(body_with(4, "all", cp(2))));
  CHECK(n.verifier.checkpoint_checks == checks);
  CHECK(read_text(file) == audit::checkpoint_json(cp(7)) + "\n");
  CHECK(reported_count(n.report()) == 7);

  // The same one again, on every 304 of a quiet fleet: no signature work.
  for (int i = 0; i < 5; ++i) (void)n.core->handle_fetch(answer_304(cp(7)));
  CHECK(n.verifier.checkpoint_checks == checks);

  // Forged (another key, or a field changed): refused, counted, nothing changes.
  (void)n.core->handle_fetch(answer_304(cp(9, 'a', other_keys())));
  audit::checkpoint edited = cp(8);
  edited.count = 12;
  (void)n.core->handle_fetch(answer_304(edited));
  CHECK(n.core->state().checkpoints_refused == 2);
  CHECK(n.core->state().checkpoint_count == 7);
  CHECK(read_text(file) == audit::checkpoint_json(cp(7)) + "\n");
  // Garbage in the header or the body member: ignored.
  agent::fetch_result junk = answer_304(std::nullopt);
  junk.checkpoint = "not base64!";
  (void)n.core->handle_fetch(junk);
  CHECK(n.core->state().checkpoint_count == 7);

  // The same count with another head: the key signed two histories. Kept (the first one) and
  // reported beside the held one, which stays.
  (void)n.core->handle_fetch(answer_304(cp(7, 'b')));
  CHECK(read_text(conflict_file) == audit::checkpoint_json(cp(7, 'b')) + "\n");
  CHECK(read_text(file) == audit::checkpoint_json(cp(7)) + "\n");
  (void)n.core->handle_fetch(answer_304(cp(7, 'c')));
  CHECK(read_text(conflict_file) == audit::checkpoint_json(cp(7, 'b')) + "\n");
  auto status = n.report();
  CHECK(status["audit_checkpoint"]["head"] == head_of(7));
  CHECK(status["audit_checkpoint_conflict"]["head"] == head_of(7, 'b'));
  CHECK(n.core->state().checkpoint_conflict);

  // Newer ones are still taken after a conflict; the conflict stays on record.
  (void)n.core->handle_fetch(answer_304(cp(11)));
  status = n.report();
  CHECK(reported_count(status) == 11);
  CHECK(status["audit_checkpoint_conflict"]["count"] == 7);
  CHECK(n.core->state().checkpoints_taken == 3);
}

TEST_CASE("agent checkpoints: a refused snapshot's checkpoint is still taken") {
  temp_dir state;
  node n(state.path);
  const auto h = n.core->handle_fetch(answer_200(body_with(3, "+site:b", cp(4))));
  CHECK(h.outcome == agent::poll_outcome::refused);
  REQUIRE(h.report);
  CHECK_FALSE(h.report->ack);
  CHECK(h.report->audit_checkpoint == audit::checkpoint_json(cp(4)));
  CHECK(n.core->held_revision() == 0);
  CHECK(std::filesystem::exists(state.path / agent::checkpoint_file_name));
  CHECK_FALSE(std::filesystem::exists(state.path / agent::snapshot_file_name));
}

TEST_CASE("agent checkpoints: restart re-verifies the persisted files; a tampered one is refused") {
  temp_dir state;
  {
    node n(state.path);
    (void)n.core->handle_fetch(answer_200(body_with(3, "all", cp(9))));
    (void)n.core->handle_fetch(answer_304(cp(9, 'z')));
    CHECK(n.core->state().checkpoint_conflict);
  }
  {
    node again(state.path);  // the controller is gone: the files alone
    const auto s = again.core->state();
    CHECK(s.checkpoint_count == 9);
    CHECK(s.checkpoint_head == head_of(9));
    CHECK(s.checkpoint_conflict);
    const auto status = again.report();
    CHECK(reported_count(status) == 9);
    CHECK(status["audit_checkpoint_conflict"]["head"] == head_of(9, 'z'));
    // Held after the restart: an older one is still not taken.
    (void)again.core->handle_fetch(answer_304(cp(8)));
    CHECK(again.core->state().checkpoint_count == 9);
  }
  // Someone edits the held file to claim fewer records: the signature no longer verifies.
  const auto file = state.path / agent::checkpoint_file_name;
  auto j = nlohmann::json::parse(read_text(file));
  j["count"] = 3;
  std::ofstream(file, std::ios::binary | std::ios::trunc) << j.dump() << "\n";
  node tampered(state.path);
  CHECK(tampered.core->state().checkpoint_count == 0);
  CHECK(tampered.core->state().last_error.find("persisted audit checkpoint") != std::string::npos);
  CHECK_FALSE(tampered.report().contains("audit_checkpoint"));
  // It is left in place (it may be evidence) until a valid newer one replaces it.
  CHECK(read_text(file) == j.dump() + "\n");
  (void)tampered.core->handle_fetch(answer_304(cp(10)));
  CHECK(read_text(file) == audit::checkpoint_json(cp(10)) + "\n");
}
