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
//   {"event":"stopped","at":T, "nodes":[{"node":ID,"revision":N,"nacks":K,"fetch_failures":F,
//                                        "status_failures":P}...]}
// and with --report-windows also
//   {"event":"enforcing","node":ID,"revision":N,"rules_in_force":K,"at":T}
// and with --report-acks also, when the controller took a node's ACK of revision N,
//   {"event":"acked","node":ID,"revision":N,"at":T}
// whenever K, the number of rules of the node's policy whose window (not_before <= now <
// not_after, unix seconds, as the dataplane decides) holds now, changes: after an apply, and as
// time crosses a window's edge (checked every 100 ms, so `at` is at most ~0.1 s late). Each node
// starts at K = 0 (no policy). This is what shows a node stopping a block on time by itself.
// T is unix seconds (microsecond precision), S seconds since start. Logs go to stderr.
// SIGINT/SIGTERM stop every agent (long-polls are interrupted) and exit 0.

#include <pthread.h>
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cctype>
#include <cmath>
#include <optional>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
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

// The simulated dataplane: parse and digest, as the real one would before compiling; with
// `report_windows`, also keep the rules' windows and report how many are in force.
class sim_applier final : public agent::applier {
 public:
  sim_applier(std::string node, event_log& log, double started, bool report_windows)
      : node_(std::move(node)), log_(log), started_(started), report_windows_(report_windows) {
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
    if (report_windows_) {
      std::vector<window> windows;
      windows.reserve(loaded.spec->rules.size());
      for (const match::rule_spec& r : loaded.spec->rules)
        windows.push_back({r.not_before.value_or(std::numeric_limits<std::int64_t>::min()),
                           r.not_after.value_or(std::numeric_limits<std::int64_t>::max())});
      {
        std::lock_guard lock(windows_mutex_);
        windows_ = std::move(windows);
        windows_revision_ = revision;
      }
      report_windows();
    }
    return {true, current_.ruleset_sha256, ""};
  }
  agent::applied_policy current() const override { return current_; }

  // From any thread: logs an "enforcing" event when the count of rules in force changed since
  // the last one. The dataplane's clock is whole unix seconds, and so is this one.
  void report_windows() {
    const double now = unix_seconds();
    const auto now_s = static_cast<std::int64_t>(std::floor(now));
    std::lock_guard lock(windows_mutex_);
    std::size_t in_force = 0;
    for (const window& w : windows_)
      if (w.first <= now_s && now_s < w.second) ++in_force;
    if (in_force == reported_in_force_) return;
    reported_in_force_ = in_force;
    // Logged under windows_mutex_ so that a node's events keep their order.
    log_.write({{"event", "enforcing"}, {"node", node_}, {"revision", windows_revision_},
                {"rules_in_force", in_force}, {"at", now}});
  }

 private:
  using window = std::pair<std::int64_t, std::int64_t>;  // [not_before, not_after)

  std::string node_;
  event_log& log_;
  double started_;
  bool report_windows_;
  agent::applied_policy current_;
  std::mutex windows_mutex_;
  std::vector<window> windows_;
  std::uint64_t windows_revision_ = 0;
  std::size_t reported_in_force_ = 0;
};

// The HTTP transport, plus an "acked" event once the controller took an ACK (2xx): the node-side
// end of "approval to ACK" without polling anything.
class reporting_transport final : public agent::transport {
 public:
  reporting_transport(std::unique_ptr<agent::http_transport> inner, std::string node,
                      event_log& log, bool report_acks)
      : inner_(std::move(inner)), node_(std::move(node)), log_(log), report_acks_(report_acks) {}
  agent::fetch_result fetch(std::uint64_t held, std::chrono::seconds wait) override {
    return inner_->fetch(held, wait);
  }
  agent::post_result post_status(const agent::status_report& report) override {
    agent::post_result result = inner_->post_status(report);
    if (report_acks_ && result.ok && report.ack && report.offered != 0)
      log_.write({{"event", "acked"}, {"node", node_}, {"revision", report.offered},
                  {"at", unix_seconds()}});
    return result;
  }
  void interrupt() override { inner_->interrupt(); }

 private:
  std::unique_ptr<agent::http_transport> inner_;
  std::string node_;
  event_log& log_;
  bool report_acks_;
};

struct sim_node {
  std::string id;
  std::unique_ptr<reporting_transport> transport;
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
  unsigned backoff_max_ms = 30000;
  bool report_windows_flag = false, report_acks_flag = false;
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
  cli.add_option("--backoff-max-ms", backoff_max_ms,
                 "cap of the retry backoff after failed fetches, milliseconds")
      ->check(CLI::Range(1000u, 3600000u));
  cli.add_flag("--report-acks", report_acks_flag,
               "log \"acked\" events: the controller took the node's ACK of a revision");
  cli.add_flag("--report-windows", report_windows_flag,
               "log \"enforcing\" events: rules whose time window holds now, per node");
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
    std::unique_ptr<agent::http_transport> http = agent::http_transport::create(tc, error);
    if (!http) {
      std::cerr << "sluice-fleet-sim: " << error << '\n';
      return 2;
    }
    n.transport = std::make_unique<reporting_transport>(std::move(http), n.id, log, report_acks_flag);
    n.applier = std::make_unique<sim_applier>(n.id, log, started, report_windows_flag);
    agent::agent_config ac;
    ac.node_id = n.id;
    ac.labels = node_labels;
    ac.controller_key = *key;
    ac.state_dir = dir;
    ac.wait = std::chrono::seconds(wait);
    ac.status_interval = std::chrono::seconds(status_interval);
    ac.backoff_max = std::chrono::milliseconds(backoff_max_ms);
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

  // One thread watches every node's windows: a block's end must show without any apply.
  std::atomic<bool> watching{report_windows_flag};
  std::thread watcher;
  if (report_windows_flag)
    watcher = std::thread([&] {
      while (watching.load()) {
        for (sim_node& n : fleet) n.applier->report_windows();
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    });
  if (running == nodes) {
    int sig = 0;
    sigwait(&stop_signals, &sig);
  }
  watching = false;
  if (watcher.joinable()) watcher.join();
  // Interrupt every long-poll first, then join: shutdown takes one round trip, not N.
  for (sim_node& n : fleet) n.core->stop();
  nlohmann::json summary = nlohmann::json::array();
  for (sim_node& n : fleet) {
    n.thread.reset();
    const agent::agent_state s = n.core->state();
    summary.push_back({{"node", n.id}, {"revision", s.applied_revision}, {"nacks", s.nacks},
                       {"fetch_failures", s.fetch_failures},
                       {"status_failures", s.status_failures}});
  }
  log.write({{"event", "stopped"}, {"at", unix_seconds()}, {"nodes", summary}});
  return running == nodes ? 0 : 1;
}
