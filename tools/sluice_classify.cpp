// sluice-classify: replays capture files through the classifier and a policy, and says flow by
// flow which name each flow asked for and what the policy would do with it. Offline only: this
// is the per-flow verdict log DESIGN.md allows for capture replay, never for live traffic.
//
//   sluice-classify --policy config/policy.example.yaml [--at 2026-11-28T12:00:00Z] [--flows]
//                   CAPTURE...
//
// Exit status: 0 on success, 1 on a usage, policy or capture error.

#include <rte_eal.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "dataplane/flow/classifier.hpp"
#include "dataplane/match/offline_eal.hpp"
#include "dataplane/match/policy.hpp"
#include "dataplane/match/policy_config.hpp"
#include "dataplane/offline/capture_flows.hpp"

namespace {

using sluice::match::compiled_policy;
using sluice::match::verdict;

enum class show_mode { summary, stopped, named };

struct flow_verdict {
  verdict v;
  const char* by = "-";  // "ip", "name" or "-"
  std::string name;      // the name that decided, if any
};

// The flow's server is the side its client talks to; when the client is unknown (a protocol we
// do not read), either endpoint may be the one a rule names.
flow_verdict judge(const compiled_policy& policy, const sluice::offline::flow_record& rec,
                   std::int64_t now) {
  flow_verdict best;
  auto consider = [&](verdict v, const char* by, const std::string& name) {
    if (!v.enforce() && v.monitors == 0) return;
    const bool better = !best.v.enforce() && (v.enforce() || best.v.monitors == 0);
    if (better || (v.enforce() && best.v.enforce() && policy.stronger(v.rule, best.v.rule))) {
      best = {v, by, name};
    }
  };
  const auto client_dir = rec.state.client_dir;
  if (client_dir != 2) consider(policy.decide(policy.match_ip(rec.key.b), {}, now), "ip", "");
  if (client_dir != 1) consider(policy.decide(policy.match_ip(rec.key.a), {}, now), "ip", "");
  for (const auto& name : rec.names) {
    consider(policy.decide({}, policy.match_name(name), now), "name", name);
  }
  return best;
}

std::string endpoint(const sluice::packet::ip_address& a, std::uint16_t port) {
  const std::string addr = sluice::offline::to_string(a);
  return (a.version == 6 ? "[" + addr + "]" : addr) + ":" + std::to_string(port);
}

}  // namespace

namespace {

int replay(const std::string& policy_path, const sluice::match::policy_spec& spec,
           const std::vector<std::string>& captures, std::int64_t now, show_mode show,
           bool verify_checksums) {
  const auto compiled = sluice::match::compile_policy(spec);
  if (!compiled) {
    std::fprintf(stderr, "sluice-classify: %s: %s\n", policy_path.c_str(),
                 compiled.error.message.c_str());
    return 1;
  }
  const compiled_policy& policy = *compiled.policy;
  std::printf("policy %s: revision %llu, %u rules, ruleset sha256 %s\n", policy_path.c_str(),
              static_cast<unsigned long long>(policy.revision()), policy.rule_count(),
              policy.ruleset_sha256().c_str());

  sluice::flow::buffer_pool pool(4096, 16384);
  sluice::flow::classifier::config cfg;
  cfg.verify_checksums = verify_checksums;
  sluice::flow::classifier cls(pool, cfg);
  int status = 0;
  for (const auto& path : captures) {
    const auto result = sluice::offline::classify_capture(path, cls);
    if (!result.error.empty()) {
      std::fprintf(stderr, "sluice-classify: %s: %s\n", path.c_str(), result.error.c_str());
      status = 1;
      continue;
    }
    std::size_t named = 0, by_ip = 0, by_name = 0, monitored = 0;
    std::uint64_t enforced_packets = 0;
    std::printf("\n%s: %llu frames, %zu flows\n", std::filesystem::path(path).filename().c_str(),
                static_cast<unsigned long long>(result.stats.frames), result.flows.size());
    for (const auto& [key, rec] : result.flows) {
      const flow_verdict fv = judge(policy, rec, now);
      named += !rec.names.empty();
      if (fv.v.enforce()) {
        (*fv.by == 'i' ? by_ip : by_name) += 1;
        enforced_packets += rec.packets;
      } else if (fv.v.monitors > 0) {
        ++monitored;
      }
      const bool stopped = fv.v.enforce() || fv.v.monitors > 0;
      if (show == show_mode::summary || (show == show_mode::stopped && !stopped) ||
          (rec.names.empty() && !stopped)) {
        continue;
      }
      std::string names;
      for (const auto& n : rec.names) names += (names.empty() ? "" : ",") + n;
      if (names.size() > 48) names = names.substr(0, 45) + "...";
      std::string decision = "forward";
      if (fv.v.enforce()) {
        decision = std::string(to_string(fv.v.act)) + " by " + fv.by + " (rule " +
                   policy.rule(fv.v.rule).id + ")";
      } else if (fv.v.monitors > 0) {
        decision = std::string("monitor by ") + fv.by;
      }
      std::printf("  %-3s %-44s %-44s %-9s %-48s %s\n", key.proto == 6 ? "tcp" : "udp",
                  endpoint(key.a, key.port_a).c_str(), endpoint(key.b, key.port_b).c_str(),
                  to_string(rec.kind), names.empty() ? "-" : names.c_str(), decision.c_str());
    }
    std::printf("  => %zu flows named; enforced: %zu by address, %zu by name (%llu packets); "
                "%zu monitored\n",
                named, by_ip, by_name, static_cast<unsigned long long>(enforced_packets),
                monitored);
  }
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Replay captures through Sluice's classifier and a policy (offline)"};
  std::string policy_path;
  std::string apps_dir = "config/apps";
  std::string at;
  bool show_named = false;
  bool show_stopped = false;
  std::vector<std::string> captures;
  app.add_option("--policy", policy_path, "policy file (the dataplane's --policy schema)")
      ->required()
      ->check(CLI::ExistingFile);
  app.add_option("--apps", apps_dir, "directory of app profiles named by `apps:`");
  app.add_option("--at", at, "evaluate time windows at this RFC 3339 time (default: now)");
  app.add_flag("--flows", show_named, "print every flow with a name or a verdict");
  app.add_flag("--stopped", show_stopped, "print the flows the policy stops or monitors");
  bool verify_checksums = false;
  app.add_flag("--verify-checksums", verify_checksums,
               "ignore packets with wrong TCP/UDP checksums, as the live fast path does (off by "
               "default: captures taken on an endpoint carry checksum-offload artefacts)");
  app.add_option("captures", captures, "pcap/pcapng files")->required()->check(CLI::ExistingFile);
  CLI11_PARSE(app, argc, argv);

  std::int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
  if (!at.empty()) {
    const auto t = sluice::match::parse_rfc3339(at);
    if (!t) {
      std::fprintf(stderr, "sluice-classify: --at: not an RFC 3339 time: %s\n", at.c_str());
      return 1;
    }
    now = *t;
  }

  const show_mode show = show_named     ? show_mode::named
                         : show_stopped ? show_mode::stopped
                                        : show_mode::summary;
  const auto loaded = sluice::match::load_policy_file(policy_path, apps_dir);
  if (!loaded) {
    std::fprintf(stderr, "sluice-classify: %s\n", loaded.error.text().c_str());
    return 1;
  }
  // The EAL hosts the prefix sets' memory; offline, no hugepages or devices are needed.
  std::string eal_error;
  if (!sluice::match::init_offline_eal(argv[0], 1024, eal_error)) {
    std::fprintf(stderr, "sluice-classify: EAL init failed: %s\n", eal_error.c_str());
    return 1;
  }
  // The policy's prefix sets live in EAL memory: free them before the EAL goes.
  int status = replay(policy_path, *loaded.spec, captures, now, show, verify_checksums);
  rte_eal_cleanup();
  return status;
}
