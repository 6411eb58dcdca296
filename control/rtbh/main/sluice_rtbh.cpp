// sluice-rtbh: enforces the IP targets of this node's policy snapshot as kernel blackhole routes
// (our table, our protocol) for BIRD to export with the BLACKHOLE community (deploy/bird/).
//
// Controller mode (--controller ...): the node agent fetches, verifies, applies, persists and
// reports, exactly as sluice-dataplane does. Standalone (--policy FILE): the file is applied at
// start and again on SIGHUP. Either way the routes are reconciled every --reconcile-interval
// seconds and whenever a rule's window opens or closes. SIGTERM/SIGINT stop (routes stay: a
// restart adopts them).

#include <signal.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "control/agent/agent.hpp"
#include "control/agent/http_transport.hpp"
#include "control/agent/node_cli.hpp"
#include "control/agent/runner.hpp"
#include "control/crypto/minisign.hpp"
#include "control/rtbh/enforcer.hpp"
#include "control/rtbh/metrics.hpp"
#include "control/rtbh/route_table.hpp"

namespace {

namespace agent = sluice::control::agent;
namespace rtbh = sluice::control::rtbh;

void log_line(const std::string& s) {
  std::fprintf(stderr, "sluice-rtbh: %s\n", s.c_str());
  std::fflush(stderr);
}

std::string describe(const rtbh::reconcile_report& r) {
  std::string s = std::to_string(r.routes) + " routes (+" + std::to_string(r.added) + " -" +
                  std::to_string(r.removed) + ", " + std::to_string(r.kept) + " kept) in " +
                  std::to_string(r.seconds) + " s";
  if (!r.ok) s += "; error: " + r.error;
  return s;
}

struct options {
  agent::node_options node;
  std::uint32_t table = rtbh::default_table;
  std::string route_type = "blackhole";
  std::string metrics;
  std::string policy;
  double reconcile_interval = 10;
};

// Standalone: (re)load the policy file. Its revision is the file's own `revision:`.
bool apply_file(rtbh::enforcer& e, const std::string& path) {
  const std::optional<std::string> text = agent::read_text_file(path);
  if (!text) {
    log_line("--policy " + path + ": cannot read; previous stays");
    return false;
  }
  std::string error;
  const std::optional<rtbh::rtbh_policy> p = rtbh::parse_policy(*text, error);
  return e.apply(*text, p ? p->revision : 0).ok;  // the enforcer logs a refusal and why
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{"sluice-rtbh: IP targets of Sluice policy snapshots as kernel blackhole routes"};
  options o;
  agent::add_node_options(cli, o.node);
  cli.add_option("--table", o.table, "kernel routing table of our routes (default 4242)")
      ->check(CLI::Range(1u, 0xffffffffu));
  cli.add_option("--route-type", o.route_type, "blackhole (default) or unreachable")
      ->check(CLI::IsMember({"blackhole", "unreachable"}));
  cli.add_option("--metrics", o.metrics, "Prometheus /metrics listen address, host:port");
  cli.add_option("--policy", o.policy, "standalone: policy file (no controller); SIGHUP reloads");
  cli.add_option("--reconcile-interval", o.reconcile_interval,
                 "seconds between reconciles (default 10)")
      ->check(CLI::Range(0.1, 3600.0));
  CLI11_PARSE(cli, argc, argv);

  const auto usage = [](const std::string& m) {
    std::fprintf(stderr, "sluice-rtbh: %s\n", m.c_str());
    return 2;
  };
  if (o.table == 255) return usage("--table 255 is the kernel's local table");
  if (o.node.controllers.empty() == o.policy.empty()) {
    return usage(
        "give either --controller (with --controller-key, --node-id, --state-dir and "
        "--node-cert/--node-key or --node-token-file) or --policy FILE");
  }
  std::string error;
  agent::node_identity id;
  if (!o.node.controllers.empty()) {
    if (std::string why = agent::resolve_node_options(o.node, id); !why.empty()) {
      return usage(why);
    }
  }

  // Signals are taken by sigtimedwait on this thread; every thread started below inherits the
  // mask, so none of them gets SIGHUP/SIGTERM/SIGINT.
  const sigset_t signals = agent::block_node_signals();

  rtbh::route_table_config rc;
  rc.table = o.table;
  rc.kind =
      o.route_type == "unreachable" ? rtbh::route_kind::unreachable : rtbh::route_kind::blackhole;
  std::unique_ptr<rtbh::route_table> table = rtbh::make_netlink_route_table(rc, error);
  if (!table) {
    log_line(error);
    return 1;
  }
  std::unique_ptr<rtbh::rtbh_metrics> metrics;
  try {
    metrics = std::make_unique<rtbh::rtbh_metrics>(o.node.node_id);
    if (!o.metrics.empty()) metrics->serve(o.metrics);
  } catch (const std::exception& e) {
    log_line("--metrics " + o.metrics + ": " + e.what());
    return 1;
  }
  agent::system_clock clock;
  rtbh::enforcer_options eo;
  eo.metrics = metrics.get();
  eo.log = log_line;
  rtbh::enforcer enforcer(*table, clock, eo);
  log_line("table " + std::to_string(rc.table) + ", protocol " + std::to_string(rc.protocol) +
           ", " + std::string(rtbh::to_string(rc.kind)) + " routes");

  std::unique_ptr<agent::http_transport> transport;
  std::unique_ptr<agent::agent> core;
  std::unique_ptr<agent::runner> thread;
  if (!o.node.controllers.empty()) {
    transport = agent::http_transport::create(id.transport, error);
    if (!transport) return usage("--controller: " + error);
    agent::agent_config ac = id.agent_config_for(o.node);
    ac.health = [&enforcer] { return enforcer.health(); };
    core = std::make_unique<agent::agent>(std::move(ac), *transport, enforcer, clock);
    // The persisted snapshot (if any) is applied first, so leftovers it wants are adopted as
    // they are; without one the first reconcile clears them.
    if (!core->start()) {
      log_line("no persisted snapshot in force (" + core->state().startup + ")");
      const rtbh::reconcile_report r = enforcer.reconcile();
      log_line("start-up reconcile: " + describe(r));
    }
    thread = std::make_unique<agent::runner>(*core);
    if (!thread->started()) {
      log_line("cannot start the agent thread");
      return 1;
    }
  } else if (!apply_file(enforcer, o.policy)) {
    return 1;  // standalone: a policy that cannot be enforced at start is fatal
  }

  const auto interval = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(o.reconcile_interval));
  auto next_reconcile = std::chrono::steady_clock::now() + interval;
  for (;;) {
    timespec wait{0, 200 * 1000 * 1000};  // window edges are honoured within 0.2 s
    siginfo_t info{};
    const int sig = sigtimedwait(&signals, &info, &wait);
    if (sig == SIGTERM || sig == SIGINT) {
      log_line("stopping (routes stay; a restart adopts them)");
      break;
    }
    if (sig == SIGHUP && !o.policy.empty()) {
      log_line("SIGHUP: reloading " + o.policy);
      (void)apply_file(enforcer, o.policy);
      next_reconcile = std::chrono::steady_clock::now() + interval;
      continue;
    }
    if (const std::optional<rtbh::reconcile_report> r = enforcer.tick()) {
      log_line("window edge: " + describe(*r));
      continue;
    }
    if (std::chrono::steady_clock::now() >= next_reconcile) {
      const rtbh::reconcile_report r = enforcer.reconcile();
      if (r.added || r.removed || !r.ok) log_line("reconcile: " + describe(r));
      next_reconcile = std::chrono::steady_clock::now() + interval;
    }
  }
  thread.reset();  // stop and join the agent before the enforcer goes
  return 0;
}
