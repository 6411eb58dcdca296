// sluice-fleet-sim: N real node agents (control/agent) in one process, against a controller, for
// rollout benchmarks without DPDK. Each simulated node has its own id, labels, state directory,
// HTTP transport and thread (small stack: one long-poll connection per node); its "dataplane"
// parses the policy (load_policy) and computes its ruleset SHA-256, nothing more.
//
//   sluice-fleet-sim --controller http://127.0.0.1:8443 --nodes 100 --labels site=sim
//       --canary 5 --controller-key ctl.pub --node-token-file node.token --state-root /tmp/fleet
//
// Node ids are PREFIX + a 4-digit index from 1 (sim-0001 ...); the first --canary nodes get the
// label group=canary. stdout carries one JSON object per line:
//   {"event":"started","nodes":N,"at":T}
//   {"event":"applied","node":ID,"revision":N,"sha256":HEX,"at":T,"since_start":S}
//   {"event":"stopped","at":T, "nodes":[{"node":ID,"revision":N,"nacks":K,"fetch_failures":F}...]}
// with T unix seconds (microsecond precision) and S seconds since start. Logs go to stderr.
// SIGINT/SIGTERM stop every agent (long-polls are interrupted) and exit 0.

#include <pthread.h>
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <cctype>
#include <optional>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "control/agent/agent.hpp"
#include "control/agent/http_transport.hpp"
#include "control/agent/runner.hpp"
#include "control/crypto/minisign.hpp"
#include "dataplane/match/policy.hpp"
#include "dataplane/match/policy_config.hpp"

namespace agent = sluice::control::agent;
namespace crypto = sluice::control::crypto;
namespace match = sluice::match;

namespace {

double unix_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// stdout is shared by every node thread: one line per write, under a lock.
class event_log {
 public:
  void write(const nlohmann::json& j) {
    const std::string line = j.dump() + "\n";
    std::lock_guard lock(mutex_);
    std::fwrite(line.data(), 1, line.size(), stdout);
    std::fflush(stdout);
  }

 private:
  std::mutex mutex_;
};

// The simulated dataplane: parse and digest, as the real one would before compiling.
class sim_applier final : public agent::applier {
 public:
  sim_applier(std::string node, event_log& log, double started)
      : node_(std::move(node)), log_(log), started_(started) {
    current_.ruleset_sha256 = match::ruleset_sha256(match::policy_spec{});
  }
  agent::apply_result apply(const std::string& text, std::uint64_t revision) override {
    std::istringstream in(text);
    const match::policy_load_result loaded = match::load_policy(in, {});
    if (!loaded) return {false, current_.ruleset_sha256, loaded.error.text()};
    current_ = {loaded.spec->revision, match::ruleset_sha256(*loaded.spec)};
    const double now = unix_seconds();
    log_.write({{"event", "applied"}, {"node", node_}, {"revision", revision},
                {"sha256", current_.ruleset_sha256}, {"at", now}, {"since_start", now - started_}});
    return {true, current_.ruleset_sha256, ""};
  }
  agent::applied_policy current() const override { return current_; }

 private:
  std::string node_;
  event_log& log_;
  double started_;
  agent::applied_policy current_;
};

struct sim_node {
  std::string id;
  std::unique_ptr<agent::http_transport> transport;
  std::unique_ptr<sim_applier> applier;
  std::unique_ptr<agent::agent> core;
  std::unique_ptr<agent::runner> thread;
};

std::optional<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{"sluice-fleet-sim: N node agents in one process (rollout benchmarks)"};
  std::vector<std::string> controllers;
  unsigned nodes = 10, canary = 0, wait = 25, status_interval = 30, stack_kib = 256;
  std::string prefix = "sim-", labels_text, key_file, token_file, state_root;
  cli.add_option("--controller", controllers, "controller URL; repeat for replicas")
      ->required()
      ->take_all();
  cli.add_option("--nodes", nodes, "simulated nodes")->check(CLI::Range(1u, 10000u));
  cli.add_option("--node-prefix", prefix, "node id prefix (ids are PREFIX0001...)");
  cli.add_option("--labels", labels_text, "labels of every node, k=v,k=v");
  cli.add_option("--canary", canary, "the first N nodes also get group=canary");
  cli.add_option("--controller-key", key_file, "controller's minisign public key")
      ->required()
      ->check(CLI::ExistingFile);
  cli.add_option("--node-token-file", token_file, "bearer token (role node) for every node")
      ->required()
      ->check(CLI::ExistingFile);
  cli.add_option("--state-root", state_root, "state directories go to STATE_ROOT/ID")->required();
  cli.add_option("--wait", wait, "long-poll wait, seconds")->check(CLI::Range(1u, 60u));
  cli.add_option("--status-interval", status_interval, "periodic status, seconds")
      ->check(CLI::Range(1u, 3600u));
  cli.add_option("--stack-kib", stack_kib, "stack per node thread, KiB")
      ->check(CLI::Range(64u, 65536u));
  CLI11_PARSE(cli, argc, argv);

  std::string error;
  const std::optional<agent::label_map> labels = agent::parse_labels(labels_text, error);
  if (!labels) {
    std::cerr << "sluice-fleet-sim: --labels: " << error << '\n';
    return 2;
  }
  if (canary > nodes) {
    std::cerr << "sluice-fleet-sim: --canary exceeds --nodes\n";
    return 2;
  }
  const std::optional<std::string> key_text = read_file(key_file);
  const std::optional<crypto::public_key> key =
      key_text ? crypto::parse_public_key(*key_text, &error) : std::nullopt;
  if (!key) {
    std::cerr << "sluice-fleet-sim: --controller-key: " << error << '\n';
    return 2;
  }
  std::optional<std::string> token = read_file(token_file);
  if (!token) {
    std::cerr << "sluice-fleet-sim: cannot read " << token_file << '\n';
    return 2;
  }
  while (!token->empty() && std::isspace(static_cast<unsigned char>(token->back()))) token->pop_back();

  // One long-poll socket per node, plus a few for the next request while one closes.
  rlimit nofile{};
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    (void)setrlimit(RLIMIT_NOFILE, &nofile);
  }
  // Every thread inherits this mask; only main takes the signals, in sigwait below.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  event_log log;
  const double started = unix_seconds();
  agent::system_clock clock;
  std::vector<sim_node> fleet(nodes);
  for (unsigned i = 0; i < nodes; ++i) {
    sim_node& n = fleet[i];
    char index[16];
    std::snprintf(index, sizeof index, "%04u", i + 1);
    n.id = prefix + index;
    agent::label_map node_labels = *labels;
    if (i < canary) node_labels["group"] = "canary";
    const std::filesystem::path dir = std::filesystem::path(state_root) / n.id;
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) {
      std::cerr << "sluice-fleet-sim: " << dir.string() << ": " << ec.message() << '\n';
      return 1;
    }
    agent::http_transport_config tc;
    tc.urls = controllers;
    tc.node_id = n.id;
    tc.token = *token;
    tc.labels = node_labels;
    n.transport = agent::http_transport::create(tc, error);
    if (!n.transport) {
      std::cerr << "sluice-fleet-sim: " << error << '\n';
      return 2;
    }
    n.applier = std::make_unique<sim_applier>(n.id, log, started);
    agent::agent_config ac;
    ac.node_id = n.id;
    ac.labels = node_labels;
    ac.controller_key = *key;
    ac.state_dir = dir;
    ac.wait = std::chrono::seconds(wait);
    ac.status_interval = std::chrono::seconds(status_interval);
    n.core = std::make_unique<agent::agent>(std::move(ac), *n.transport, *n.applier, clock);
  }
  log.write({{"event", "started"}, {"nodes", nodes}, {"at", started}});
  unsigned running = 0;
  for (sim_node& n : fleet) {
    n.thread = std::make_unique<agent::runner>(*n.core, std::size_t{stack_kib} * 1024);
    if (!n.thread->started()) {
      std::cerr << "sluice-fleet-sim: cannot start the thread of " << n.id
                << " (thread limit?); stopping\n";
      break;
    }
    ++running;
  }

  if (running == nodes) {
    int sig = 0;
    sigwait(&stop_signals, &sig);
  }
  // Interrupt every long-poll first, then join: shutdown takes one round trip, not N.
  for (sim_node& n : fleet) n.core->stop();
  nlohmann::json summary = nlohmann::json::array();
  for (sim_node& n : fleet) {
    n.thread.reset();
    const agent::agent_state s = n.core->state();
    summary.push_back({{"node", n.id}, {"revision", s.applied_revision}, {"nacks", s.nacks},
                       {"fetch_failures", s.fetch_failures}});
  }
  log.write({{"event", "stopped"}, {"at", unix_seconds()}, {"nodes", summary}});
  return running == nodes ? 0 : 1;
}
