// sluice-rpz: enforces the domain targets of this node's policy snapshot on the ISP's recursive
// resolvers, as a Response Policy Zone file that the resolver is told to reload (Unbound:
// `unbound-control auth_zone_reload {zone}`, BIND: `rndc reload {zone}`; deploy/unbound,
// deploy/bind).
//
// Controller mode (--controller ...): the node agent fetches, verifies, applies, persists and
// reports, exactly as sluice-dataplane and sluice-rtbh do. Standalone (--policy FILE): the file
// is applied at start and again on SIGHUP. Either way the zone is rewritten when a rule's window
// opens or closes, and a failed reload is retried every --retry-interval seconds. SIGTERM/SIGINT
// stop (the zone file stays: the resolver keeps enforcing it, a restart takes it over).

#include <signal.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
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
#include "control/rpz/command.hpp"
#include "control/rpz/enforcer.hpp"
#include "control/rpz/metrics.hpp"
#include "control/rpz/zone.hpp"

namespace {

namespace agent = sluice::control::agent;
namespace rpz = sluice::control::rpz;

void log_line(const std::string& s) {
  std::fprintf(stderr, "sluice-rpz: %s\n", s.c_str());
  std::fflush(stderr);
}

std::string describe(const rpz::install_report& r) {
  std::string s = std::to_string(r.names) + " names, serial " + std::to_string(r.serial);
  if (!r.ok) s += "; error: " + r.error;
  return s;
}

struct options {
  agent::node_options node;
  std::string zone = "sluice.rpz";
  std::string zone_file;
  std::string reload_command;
  std::string check_command;
  double command_timeout = 60;
  std::string notice_host;
  std::vector<std::string> responses;
  std::uint32_t ttl = 60;
  std::string metrics;
  std::string policy;
  double retry_interval = 10;
};

// Standalone: (re)load the policy file. Its revision is the file's own `revision:`.
bool apply_file(rpz::enforcer& e, const std::string& path, const rpz::zone_config& zc) {
  const std::optional<std::string> text = agent::read_text_file(path);
  if (!text) {
    log_line("--policy " + path + ": cannot read; previous zone stays");
    return false;
  }
  std::string error;
  const std::optional<rpz::rpz_policy> p = rpz::parse_policy(*text, zc, error);
  return e.apply(*text, p ? p->revision : 0).ok;  // the enforcer logs a refusal and why
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{"sluice-rpz: domain targets of Sluice policy snapshots as a Response Policy Zone"};
  options o;
  agent::add_node_options(cli, o.node);
  cli.add_option("--zone", o.zone, "the RPZ zone's name (default sluice.rpz)");
  cli.add_option("--zone-file", o.zone_file, "the zone file the resolver loads")->required();
  cli.add_option("--reload-command", o.reload_command,
                 "run (no shell; words split on blanks, {zone} and {file} replaced) after each "
                 "write, e.g. \"unbound-control auth_zone_reload {zone}\"; non-zero exit = the "
                 "resolver refused the zone")
      ->required();
  cli.add_option("--check-command", o.check_command,
                 "optional, run on the new zone before it replaces the old ({file} = the new "
                 "file), e.g. \"named-checkzone {zone} {file}\"; non-zero exit refuses it");
  cli.add_option("--command-timeout", o.command_timeout,
                 "seconds a reload or check may take before it is killed (default 60)")
      ->check(CLI::Range(0.1, 3600.0));
  cli.add_option("--notice-host", o.notice_host,
                 "the ISP's notice host: the CNAME target of the 'notice' answer");
  cli.add_option("--response", o.responses,
                 "ACTION=ANSWER or rule:ID=ANSWER, ANSWER one of nxdomain, nodata, notice, none "
                 "(repeat; defaults drop=nxdomain reset=nxdomain notice=notice throttle=none)");
  cli.add_option("--ttl", o.ttl, "TTL of the zone's records (default 60)")
      ->check(CLI::Range(1u, 86400u));
  cli.add_option("--metrics", o.metrics, "Prometheus /metrics listen address, host:port");
  cli.add_option("--policy", o.policy, "standalone: policy file (no controller); SIGHUP reloads");
  cli.add_option("--retry-interval", o.retry_interval,
                 "seconds between reload retries after a failed reload (default 10)")
      ->check(CLI::Range(0.1, 3600.0));
  CLI11_PARSE(cli, argc, argv);

  const auto usage = [](const std::string& m) {
    std::fprintf(stderr, "sluice-rpz: %s\n", m.c_str());
    return 2;
  };
  if (o.node.controllers.empty() == o.policy.empty()) {
    return usage(
        "give either --controller (with --controller-key, --node-id, --state-dir and "
        "--node-cert/--node-key or --node-token-file) or --policy FILE");
  }
  rpz::enforcer_config ec;
  ec.zone.zone = o.zone;
  ec.zone.notice_host = o.notice_host;
  ec.zone.ttl = o.ttl;
  std::string error;
  for (const std::string& r : o.responses) {
    if (!rpz::parse_response_setting(r, ec.zone.responses, error))
      return usage("--response " + error);
  }
  // Without a notice host, the notice action answers NXDOMAIN unless told otherwise.
  const auto notice_index = static_cast<std::size_t>(sluice::match::action::notice);
  bool notice_set = false;
  for (const std::string& r : o.responses) notice_set = notice_set || r.starts_with("notice=");
  if (o.notice_host.empty() && !notice_set)
    ec.zone.responses.by_action[notice_index] = rpz::response::nxdomain;
  if (!rpz::normalize_config(ec.zone, error)) return usage(error);
  ec.zone_file = o.zone_file;
  ec.reload = rpz::split_command(o.reload_command);
  ec.check = rpz::split_command(o.check_command);
  if (ec.reload.empty()) return usage("--reload-command is empty");
  {
    std::error_code fe;
    const std::filesystem::path dir =
        ec.zone_file.has_parent_path() ? ec.zone_file.parent_path() : std::filesystem::path(".");
    if (!std::filesystem::is_directory(dir, fe))
      return usage("--zone-file: directory " + dir.string() + " does not exist");
  }

  agent::node_identity id;
  if (!o.node.controllers.empty()) {
    if (std::string why = agent::resolve_node_options(o.node, id); !why.empty()) {
      return usage(why);
    }
  }

  // Signals are taken by sigtimedwait on this thread; every thread started below inherits the
  // mask, so none of them gets SIGHUP/SIGTERM/SIGINT (the commands we run get a clean mask).
  const sigset_t signals = agent::block_node_signals();

  std::unique_ptr<rpz::rpz_metrics> metrics;
  try {
    metrics = std::make_unique<rpz::rpz_metrics>(o.node.node_id);
    if (!o.metrics.empty()) metrics->serve(o.metrics);
  } catch (const std::exception& e) {
    log_line("--metrics " + o.metrics + ": " + e.what());
    return 1;
  }
  rpz::spawn_runner runner(std::chrono::milliseconds(static_cast<long>(o.command_timeout * 1000)));
  agent::system_clock clock;
  rpz::enforcer_options eo;
  eo.metrics = metrics.get();
  eo.log = log_line;
  const rpz::zone_config zc = ec.zone;
  rpz::enforcer enforcer(std::move(ec), runner, clock, eo);
  log_line("zone " + zc.zone + " in " + o.zone_file + " (serial " +
           std::to_string(enforcer.serial()) + " on disk), reload: " + o.reload_command);

  std::unique_ptr<agent::http_transport> transport;
  std::unique_ptr<agent::agent> core;
  std::unique_ptr<agent::runner> thread;
  if (!o.node.controllers.empty()) {
    transport = agent::http_transport::create(id.transport, error);
    if (!transport) return usage("--controller: " + error);
    agent::agent_config ac = id.agent_config_for(o.node);
    ac.health = [&enforcer] { return enforcer.health(); };
    core = std::make_unique<agent::agent>(std::move(ac), *transport, enforcer, clock);
    if (!core->start()) {
      log_line("no persisted snapshot in force (" + core->state().startup + ")");
      if (enforcer.reload_pending()) {
        // A verified snapshot the resolver did not take (not running yet?): its zone stays on
        // disk and the reload is retried.
        log_line("the zone file stays; the reload is retried every " +
                 std::to_string(o.retry_interval) + " s");
      } else {
        // Nothing verified is in force: the zone is emptied (a leftover is not enforced).
        log_line("start-up: empty zone: " + describe(enforcer.install_current()));
      }
    }
    thread = std::make_unique<agent::runner>(*core);
    if (!thread->started()) {
      log_line("cannot start the agent thread");
      return 1;
    }
  } else if (!apply_file(enforcer, o.policy, zc)) {
    return 1;  // standalone: a policy that cannot be enforced at start is fatal
  }

  const auto interval = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(o.retry_interval));
  auto next_retry = std::chrono::steady_clock::now() + interval;
  for (;;) {
    timespec wait{0, 200 * 1000 * 1000};  // window edges are honoured within 0.2 s
    siginfo_t info{};
    const int sig = sigtimedwait(&signals, &info, &wait);
    if (sig == SIGTERM || sig == SIGINT) {
      log_line("stopping (the zone file stays; a restart takes it over)");
      break;
    }
    if (sig == SIGHUP && !o.policy.empty()) {
      log_line("SIGHUP: reloading " + o.policy);
      (void)apply_file(enforcer, o.policy, zc);
      continue;
    }
    if (const std::optional<rpz::install_report> r = enforcer.tick()) {
      log_line("window edge: " + describe(*r));
      continue;
    }
    if (std::chrono::steady_clock::now() >= next_retry) {
      if (const std::optional<rpz::command_result> r = enforcer.retry())
        log_line("reload retried: " + r->describe());
      next_retry = std::chrono::steady_clock::now() + interval;
    }
  }
  thread.reset();  // stop and join the agent before the enforcer goes
  return 0;
}
