#include "dataplane/engine/app.hpp"

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_pause.h>
#include <rte_rcu_qsbr.h>
#include <rte_ring.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>

#include "control/agent/agent.hpp"
#include "control/agent/http_transport.hpp"
#include "control/agent/runner.hpp"
#include "control/crypto/minisign.hpp"
#include "dataplane/engine/policy_holder.hpp"
#include "dataplane/engine/snapshot_applier.hpp"
#include "dataplane/engine/worker.hpp"
#include "dataplane/match/policy_config.hpp"
#include "dataplane/port/dispatch.hpp"
#include "dataplane/port/ports.hpp"
#include "dataplane/telemetry/exporter.hpp"
#include "dataplane/telemetry/json.hpp"

namespace sluice::engine {
namespace {

constexpr std::uint16_t rx_desc = 1024;
constexpr std::uint16_t tx_desc = 1024;
constexpr unsigned ring_size = 4096;          // per worker rx ring
constexpr unsigned funnel_size = 4 * 4096;     // > 2 x what two workers' rings hold
constexpr double watchdog_seconds = 1.0;
constexpr double drain_quiet_seconds = 0.3;

std::atomic<bool> g_stop{false};
std::atomic<bool> g_reload{false};

extern "C" void on_stop_signal(int) { g_stop.store(true); }
extern "C" void on_hup_signal(int) { g_reload.store(true); }

template <typename... A>
void log_line(const A&... parts) {
  // Control path only; never per packet, never a subscriber address.
  std::ostringstream s;
  s << "sluice-dataplane: ";
  (s << ... << parts);
  s << '\n';
  std::cerr << s.str() << std::flush;
}

struct port_plan {
  std::uint16_t port = 0;
  port_role role = port_role::subscriber;
  std::string name;      // role as a metric label ("inject" for a tx-only port)
  bool rx = true;        // polled for traffic
  std::uint16_t rx_queues = 1;
  std::uint16_t tx_queues = 1;
  bool rss = false;
  bool funnel = false;   // workers transmit through a net_ring alias drained by the dispatcher
  std::uint16_t tx_target = 0;  // where workers send packets meant for this port
  rte_ring* funnel_ring = nullptr;
};

// Status the management endpoint serves, refreshed by the control loop.
struct status_view {
  bool healthy = true;
  std::vector<telemetry::worker_stats> workers;
  std::uint64_t flow_entries = 0;
  std::uint64_t flow_capacity = 0;
};

class reloader {
 public:
  explicit reloader(policy_holder& h) : holder_(h), thread_([this] { loop(); }) {}
  ~reloader() {
    {
      std::lock_guard lock(mutex_);
      quit_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  void request() {
    {
      std::lock_guard lock(mutex_);
      pending_ = true;
    }
    cv_.notify_all();
  }

 private:
  void loop() {
    std::unique_lock lock(mutex_);
    while (true) {
      cv_.wait(lock, [&] { return quit_ || pending_; });
      if (quit_) return;
      pending_ = false;
      lock.unlock();
      const load_result r = holder_.reload();
      if (r.ok) {
        log_line("SIGHUP: policy revision ", r.revision, " in force (sha256 ", r.sha256, ")");
      } else {
        log_line("SIGHUP: policy refused, previous stays in force: ", r.error);
      }
      lock.lock();
    }
  }
  policy_holder& holder_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool pending_ = false;
  bool quit_ = false;
  std::thread thread_;
};

int launch_worker(void* arg) { return static_cast<worker*>(arg)->run(); }

namespace agent = control::agent;
namespace crypto = control::crypto;

nlohmann::json last_snapshot_json(const snapshot_figures& f) {
  return {{"revision", f.revision},           {"bytes", f.bytes},
          {"verify_seconds", f.verify_seconds}, {"parse_seconds", f.parse_seconds},
          {"compile_seconds", f.compile_seconds}, {"parsed_once", f.parsed_once},
          {"ok", f.ok},                       {"at", f.at}};
}

std::optional<std::string> read_small_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Controller mode: the agent and what it needs, built from validated options.
struct controller_link {
  std::unique_ptr<agent::http_transport> transport;
  std::unique_ptr<agent::http_transport> impact_transport;  // the impact thread's own
  snapshot_reader reader;  // the agent's checks; keeps the parse for the applier
  holder_applier applier;
  agent::system_clock clock;
  std::unique_ptr<agent::agent> core;
  std::unique_ptr<agent::runner> thread;
  explicit controller_link(policy_holder& h)
      : applier(h, reader, [](const std::string& line) { log_line(line); }) {}
  ~controller_link() { thread.reset(); }  // stop and join before the rest goes
};

// nullptr and `error` when a file went missing or bad since the options were checked.
std::unique_ptr<controller_link> make_controller_link(const app_options& o, policy_holder& h,
                                                      std::function<std::string()> health,
                                                      std::string& error) {
  auto link = std::make_unique<controller_link>(h);
  const std::optional<std::string> key_text = read_small_file(o.controller_key);
  if (!key_text) {
    error = "cannot read --controller-key";
    return nullptr;
  }
  const std::optional<crypto::public_key> key = crypto::parse_public_key(*key_text, &error);
  const std::optional<agent::label_map> labels = agent::parse_labels(o.labels, error);
  if (!key || !labels) return nullptr;
  agent::http_transport_config tc;
  tc.urls = o.controllers;
  tc.node_id = o.node_id;
  tc.labels = *labels;
  error = agent::set_credentials(tc, o.node_token_file, o.node_cert, o.node_key, o.controller_ca);
  if (!error.empty()) return nullptr;
  link->transport = agent::http_transport::create(tc, error);
  if (!link->transport) return nullptr;
  link->impact_transport = agent::http_transport::create(tc, error);
  if (!link->impact_transport) return nullptr;
  agent::agent_config ac;
  ac.node_id = o.node_id;
  ac.labels = *labels;
  ac.controller_key = *key;
  ac.state_dir = o.state_dir;
  ac.health = std::move(health);
  ac.verifier = &link->reader;
  link->core = std::make_unique<agent::agent>(std::move(ac), *link->transport, link->applier,
                                              link->clock);
  return link;
}

// Impact windows (issue 8) on a low-priority thread of their own: every `interval` it ends the
// window (drain_impact: flip, grace period, merge, clear) and, with a transport, POSTs the body
// when a rule saw flows. A failed post is counted, not retried (the transport already walked
// every controller); the window is gone either way, so memory stays bounded. The last body is
// kept for GET /impact. Counters and last_body() may be read from any thread.
class impact_reporter {
 public:
  impact_reporter(worker_shared& shared, std::vector<worker*> workers, policy_holder& holder,
                  agent::http_transport* transport, std::chrono::seconds interval)
      : shared_(shared),
        workers_(std::move(workers)),
        holder_(holder),
        transport_(transport),
        interval_(interval),
        thread_([this] { loop(); }) {}
  ~impact_reporter() {
    {
      std::lock_guard lock(mutex_);
      quit_.store(true);
    }
    cv_.notify_all();
    if (transport_ != nullptr) transport_->interrupt();
    thread_.join();
  }
  impact_reporter(const impact_reporter&) = delete;
  impact_reporter& operator=(const impact_reporter&) = delete;

  [[nodiscard]] std::uint64_t reports_ok() const { return ok_.load(); }
  [[nodiscard]] std::uint64_t reports_failed() const { return failed_.load(); }
  [[nodiscard]] std::uint64_t overflow_flows() const { return overflow_.load(); }
  [[nodiscard]] std::uint64_t swap_dropped_flows() const { return swap_dropped_.load(); }
  [[nodiscard]] std::string last_body() const {
    std::lock_guard lock(mutex_);
    return last_body_;
  }

 private:
  static std::int64_t unix_now() { return static_cast<std::int64_t>(std::time(nullptr)); }

  void loop() {
    // Below the control loop and the agent: a late impact report harms no one.
    (void)setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), 10);
    std::int64_t start = unix_now();
    std::unique_lock lock(mutex_);
    while (!quit_.load()) {
      cv_.wait_for(lock, interval_, [&] { return quit_.load(); });
      if (quit_.load()) return;
      lock.unlock();
      const std::int64_t end = unix_now();
      const std::optional<impact_window> w =
          drain_impact(shared_, workers_, start, end, holder_.status().revision, &quit_);
      if (w) {
        start = end;
        overflow_ += w->overflow_flows;
        swap_dropped_ += w->swap_dropped_flows;
        std::string body = impact_json(*w);
        if (!body.empty() && transport_ != nullptr) {
          const agent::post_result r = transport_->post_impact(body);
          if (r.ok) {
            ++ok_;
          } else {
            ++failed_;
            log_line("impact report not delivered: ", r.error);
          }
        }
        lock.lock();
        if (!body.empty()) last_body_ = std::move(body);
      } else {
        lock.lock();
      }
    }
  }

  worker_shared& shared_;
  std::vector<worker*> workers_;
  policy_holder& holder_;
  agent::http_transport* transport_;
  std::chrono::seconds interval_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::atomic<bool> quit_{false};
  std::atomic<std::uint64_t> ok_{0}, failed_{0}, overflow_{0}, swap_dropped_{0};
  std::string last_body_;
  std::thread thread_;  // last: starts once everything above is built
};

}  // namespace

bool split_listen_address(const std::string& addr, std::string& host, std::uint16_t& port) {
  const auto colon = addr.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 >= addr.size()) return false;
  host = addr.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  const std::string p = addr.substr(colon + 1);
  if (p.size() > 5 || !std::all_of(p.begin(), p.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return false;
  }
  const unsigned long v = std::stoul(p);
  if (v > 65535) return false;
  port = static_cast<std::uint16_t>(v);
  return true;
}

int parse_app_options(int argc, char** argv, app_options& o) {
  CLI::App cli{"sluice-dataplane: enforce a blocking policy on live traffic (DPDK).\n"
               "Usage: sluice-dataplane [EAL options] -- [options]"};
  cli.add_option("--mode", o.mode, "inline | mirror")->check(CLI::IsMember({"inline", "mirror"}));
  cli.add_option("--subscriber-port", o.subscriber_port, "inline: subscriber-side port id")
      ->check(CLI::Range(0, RTE_MAX_ETHPORTS - 1));
  cli.add_option("--internet-port", o.internet_port, "inline: internet-side port id")
      ->check(CLI::Range(0, RTE_MAX_ETHPORTS - 1));
  cli.add_option("--mirror-port", o.mirror_port, "mirror: port receiving the copy")
      ->check(CLI::Range(0, RTE_MAX_ETHPORTS - 1));
  cli.add_option("--inject-port", o.inject_port, "mirror: port for injected resets")
      ->check(CLI::Range(0, RTE_MAX_ETHPORTS - 1));
  cli.add_option("--policy", o.policy, "policy file (YAML); none = forward everything")
      ->check(CLI::ExistingFile);
  cli.add_option("--apps", o.apps, "app profile directory (default: apps beside the policy)")
      ->check(CLI::ExistingDirectory);
  cli.add_option("--metrics", o.metrics, "Prometheus listen address, or none");
  cli.add_option("--mgmt", o.mgmt, "management HTTP listen address, or none");
  cli.add_flag("--offline", o.offline, "net_pcap replay: exit when the input is drained");
  cli.add_option("--stats-json", o.stats_json, "write the final counters as JSON on exit");
  cli.add_option("--node-id", o.node_id, "node label on every metric; the node's id for --controller");
  cli.add_option("--controller", o.controllers,
                 "controller URL (http://HOST:PORT); repeat for replicas, tried in order")
      ->take_all();
  cli.add_option("--labels", o.labels, "controller mode: node labels, k=v,k=v");
  cli.add_option("--controller-key", o.controller_key,
                 "controller mode: the controller's minisign public key (snapshot signatures)")
      ->check(CLI::ExistingFile);
  cli.add_option("--state-dir", o.state_dir,
                 "controller mode: directory for the last good snapshot (snapshot.json)")
      ->check(CLI::ExistingDirectory);
  cli.add_option("--node-token-file", o.node_token_file,
                 "controller mode: file holding this node's bearer token (optional with --node-cert)")
      ->check(CLI::ExistingFile);
  cli.add_option("--node-cert", o.node_cert,
                 "controller mode: this node's client certificate, PEM (CN = --node-id; "
                 "sluicectl nodes enroll writes it)")
      ->check(CLI::ExistingFile);
  cli.add_option("--node-key", o.node_key, "controller mode: the key of --node-cert, PEM")
      ->check(CLI::ExistingFile);
  cli.add_option("--controller-ca", o.controller_ca,
                 "controller mode: CA certificates that vouch for the controller's (https://)")
      ->check(CLI::ExistingFile);
  cli.add_flag("--no-checksum-check", o.no_checksum_check,
               "do not ignore packets with bad L4 checksums (endpoint captures)");
  cli.add_flag("--test-hooks", o.test_hooks, "enable test-only management routes");
  cli.add_option("--flow-table-size", o.flow_table_size, "flows per worker")
      ->check(CLI::Range(64u, 1u << 26));
  cli.add_option("--reassembly-buffers", o.reassembly_buffers, "reassembly buffers per worker")
      ->check(CLI::Range(1u, 1u << 22));
  cli.add_option("--reassembly-buffer-bytes", o.reassembly_buffer_bytes,
                 "bytes per reassembly buffer")
      ->check(CLI::Range(512u, 1u << 20));
  cli.add_option("--frag-table-size", o.frag_table_size, "IP reassembly flows per worker")
      ->check(CLI::Range(16u, 1u << 22));
  cli.add_option("--idle-timeout", o.idle_timeout, "flow idle timeout, seconds")
      ->check(CLI::Range(1u, 86400u));
  cli.add_option("--burst", o.burst, "rx/tx burst size")->check(CLI::Range(1, 64));
  cli.add_option("--impact-interval", o.impact_interval,
                 "seconds per impact window (per-rule name sketches, posted to the controller); "
                 "0 = off")
      ->check(CLI::Range(0u, 86400u));
  cli.add_option("--mbufs", o.mbufs, "mbuf pool size (default: sized from the queues)");
  cli.add_option("--mbuf-size", o.mbuf_size,
                 "mbuf data room, bytes (default 2048, offline 10240); larger frames are "
                 "chained where the port can scatter, and judged whole up to " +
                     std::to_string(worker_config{}.gather_bytes) + " bytes")
      ->check(CLI::Range(1024u, 65000u));
  try {
    cli.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    std::cout << cli.help();
    return exit_ok;
  } catch (const CLI::ParseError& e) {
    std::cerr << "sluice-dataplane: " << e.what() << "\n(run with -- --help for usage)\n";
    return exit_usage;
  }
  auto usage = [](const std::string& msg) {
    std::cerr << "sluice-dataplane: " << msg << '\n';
    return exit_usage;
  };
  if (o.mode == "inline") {
    if (o.subscriber_port < 0 || o.internet_port < 0) {
      return usage("inline mode needs --subscriber-port and --internet-port");
    }
    if (o.subscriber_port == o.internet_port) {
      return usage("--subscriber-port and --internet-port must differ");
    }
    if (o.mirror_port >= 0 || o.inject_port >= 0) {
      return usage("--mirror-port/--inject-port are for --mode mirror");
    }
  } else {
    if (o.mirror_port < 0 || o.inject_port < 0) {
      return usage("mirror mode needs --mirror-port and --inject-port");
    }
    if (o.subscriber_port >= 0 || o.internet_port >= 0) {
      return usage("--subscriber-port/--internet-port are for --mode inline");
    }
  }
  for (const std::string* a : {&o.metrics, &o.mgmt}) {
    std::string host;
    std::uint16_t port = 0;
    if (*a != "none" && !split_listen_address(*a, host, port)) {
      return usage("bad listen address '" + *a + "' (want HOST:PORT or none)");
    }
  }
  if (!o.node_id.empty() &&
      !std::all_of(o.node_id.begin(), o.node_id.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
      })) {
    return usage("--node-id may hold letters, digits, '-', '_' and '.' only");
  }
  if (!o.stats_json.empty()) {
    std::ofstream probe(o.stats_json, std::ios::app);
    if (!probe) return usage("cannot write --stats-json " + o.stats_json);
  }
  if (o.test_hooks && o.mgmt == "none") return usage("--test-hooks needs --mgmt");
  if (o.controllers.empty()) {
    if (!o.labels.empty() || !o.controller_key.empty() || !o.state_dir.empty() ||
        !o.node_token_file.empty() || !o.node_cert.empty() || !o.node_key.empty() ||
        !o.controller_ca.empty()) {
      return usage("--labels, --controller-key, --state-dir, --node-token-file, --node-cert, "
                   "--node-key and --controller-ca need --controller");
    }
  } else {
    if (o.node_id.empty()) return usage("--controller needs --node-id");
    if (o.controller_key.empty() || o.state_dir.empty()) {
      return usage("--controller needs --controller-key and --state-dir");
    }
    for (const std::string& url : o.controllers) {
      if (url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0) {
        return usage("--controller '" + url + "' is not http(s)://HOST:PORT");
      }
    }
    std::string error;
    if (!agent::parse_labels(o.labels, error)) return usage("--labels: " + error);
    const std::optional<std::string> key_text = read_small_file(o.controller_key);
    if (!key_text || !crypto::parse_public_key(*key_text, &error)) {
      return usage("--controller-key " + o.controller_key + ": " + error);
    }
    // The credential, checked now: a certificate must be this node's (its CN is --node-id).
    agent::http_transport_config tc;
    tc.urls = o.controllers;
    tc.node_id = o.node_id;
    if (std::string why = agent::set_credentials(tc, o.node_token_file, o.node_cert, o.node_key,
                                                 o.controller_ca);
        !why.empty())
      return usage(why);
  }
  // The policy file is parsed now, before EAL start-up, so a YAML error costs nothing; it is
  // compiled (rte_fib needs the EAL) in run_app.
  if (!o.policy.empty()) {
    match::policy_load_result r = match::load_policy_file(o.policy, o.apps);
    if (!r) {
      std::string text = r.error.text();
      if (r.error.file.empty()) text = o.policy + ":" + text;
      return usage("invalid policy: " + text);
    }
  }
  return -1;
}

int run_app(std::vector<char*> eal_argv, const app_options& o) {
  const int eal_rc = rte_eal_init(static_cast<int>(eal_argv.size()), eal_argv.data());
  if (eal_rc < 0) {
    log_line("EAL start-up failed: ", rte_strerror(rte_errno));
    return exit_usage;
  }
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
  std::signal(SIGHUP, on_hup_signal);

  int rc = exit_ok;
  std::vector<unsigned> lcores;
  unsigned lcore = 0;
  RTE_LCORE_FOREACH_WORKER(lcore) { lcores.push_back(lcore); }
  const auto workers_n = static_cast<std::uint32_t>(lcores.size());
  if (workers_n == 0) {
    log_line("no worker lcore: give the EAL at least two (e.g. -l 0-1); the main lcore runs ",
             "the control loop");
    rte_eal_cleanup();
    return exit_usage;
  }

  // ---- ports ----------------------------------------------------------------------------
  std::vector<port_plan> plans;
  auto add_port = [&](int id, port_role role, const char* name, bool rx) {
    port_plan p;
    p.port = static_cast<std::uint16_t>(id);
    p.role = role;
    p.name = name;
    p.rx = rx;
    plans.push_back(p);
  };
  if (o.mode == "inline") {
    add_port(o.subscriber_port, port_role::subscriber, "subscriber", true);
    add_port(o.internet_port, port_role::internet, "internet", true);
  } else {
    add_port(o.mirror_port, port_role::mirror, "mirror", true);
    if (o.inject_port != o.mirror_port) add_port(o.inject_port, port_role::mirror, "inject", false);
  }
  bool software = false;
  try {
    for (port_plan& p : plans) {
      const port::port_caps caps = port::query_port(p.port);
      const bool rx_spread = workers_n == 1 || (caps.max_rx_queues >= workers_n && caps.rss_ip);
      if (p.rx && !rx_spread) software = true;
      p.rss = p.rx && workers_n > 1 && rx_spread;
      p.rx_queues = p.rss ? static_cast<std::uint16_t>(workers_n) : 1;
      p.funnel = workers_n > 1 && caps.max_tx_queues < workers_n;
      p.tx_queues = p.funnel ? 1 : static_cast<std::uint16_t>(workers_n);
      if (p.funnel) software = true;
      log_line("port ", p.port, " (", p.name, ", ", caps.driver, "): max queues rx ",
               caps.max_rx_queues, " tx ", caps.max_tx_queues, ", RSS ",
               caps.rss_ip ? "yes" : "no");
    }
  } catch (const std::exception& e) {
    log_line(e.what());
    rte_eal_cleanup();
    return exit_usage;
  }
  if (software) {
    // The dispatcher reads queue 0 of every rx port and hashes in software.
    for (port_plan& p : plans) {
      p.rss = false;
      p.rx_queues = 1;
    }
  }

  // ---- policy (compiled before anything starts, so a bad one costs no device) -----------
  std::string policy_error;
  std::optional<prepared_policy> initial = prepare_policy(o.policy, o.apps, policy_error);
  if (!initial) {
    log_line("invalid policy: ", policy_error);
    rte_eal_cleanup();
    return exit_usage;
  }

  // ---- memory ---------------------------------------------------------------------------
  std::uint64_t mbufs = o.mbufs;
  if (mbufs == 0) {
    for (const port_plan& p : plans) mbufs += std::uint64_t{p.rx_queues} * rx_desc +
                                              std::uint64_t{p.tx_queues} * tx_desc;
    if (software) mbufs += std::uint64_t{workers_n} * ring_size;
    for (const port_plan& p : plans) mbufs += p.funnel ? funnel_size : 0;
    mbufs += std::uint64_t{workers_n} * (4u * 64u + o.frag_table_size / 4u) + 4096;
  }
  const std::uint32_t data_room =
      (o.mbuf_size != 0 ? o.mbuf_size : (o.offline ? 10240u : 2048u)) + RTE_PKTMBUF_HEADROOM;
  const unsigned socket = rte_socket_id() == static_cast<unsigned>(SOCKET_ID_ANY) ? 0 : rte_socket_id();
  rte_mempool* pool = rte_pktmbuf_pool_create("sluice_mbufs", static_cast<unsigned>(mbufs), 256, 0,
                                              static_cast<std::uint16_t>(data_room),
                                              static_cast<int>(socket));
  rte_mempool* response_pool = rte_pktmbuf_pool_create(
      "sluice_responses", 1024 * workers_n + 1023, 64, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
      static_cast<int>(socket));
  if (pool == nullptr || response_pool == nullptr) {
    log_line("cannot allocate the mbuf pools (", mbufs, " mbufs): ", rte_strerror(rte_errno),
             "; give the EAL more memory (-m) or fewer --mbufs");
    rte_eal_cleanup();
    return exit_runtime;
  }

  std::vector<std::uint16_t> started;
  auto close_all = [&] {
    for (std::uint16_t p : started) port::close_port(p);
    started.clear();
  };
  std::vector<rte_ring*> rx_rings;
  std::vector<port::dispatcher::funnel> funnels;
  try {
    for (port_plan& p : plans) {
      const port::port_setup s =
          port::start_port(p.port, p.rx_queues, p.tx_queues, p.rss, pool, rx_desc, tx_desc);
      started.push_back(p.port);
      p.tx_target = p.port;
      log_line("port ", p.port, " (", p.name, "): ", s.rx_queues, " rx / ", s.tx_queues,
               " tx queues", s.rss ? ", symmetric RSS" : "", p.funnel ? ", tx funnel" : "");
      if (p.funnel) {
        const std::string name = "sl_fun" + std::to_string(p.port);
        const unsigned fsize = std::max(funnel_size, rte_align32pow2(4 * ring_size * workers_n));
        p.funnel_ring = rte_ring_create(name.c_str(), fsize,
                                        static_cast<int>(socket),
                                        RING_F_SC_DEQ);
        if (p.funnel_ring == nullptr) {
          throw std::runtime_error("rte_ring_create " + name + ": " + rte_strerror(rte_errno));
        }
        std::vector<rte_ring*> txr(workers_n, p.funnel_ring);
        const int alias = rte_eth_from_rings(name.c_str(), &p.funnel_ring, 1, txr.data(),
                                             workers_n, socket);
        if (alias < 0) {
          throw std::runtime_error("rte_eth_from_rings " + name + ": " + rte_strerror(rte_errno));
        }
        p.tx_target = static_cast<std::uint16_t>(alias);
        (void)port::start_port(p.tx_target, 1, static_cast<std::uint16_t>(workers_n), false, pool,
                               rx_desc, tx_desc);
        started.push_back(p.tx_target);
        funnels.push_back({p.funnel_ring, p.port, 0});
      }
    }
    if (software) {
      for (std::uint32_t w = 0; w < workers_n; ++w) {
        const std::string name = "sl_rx" + std::to_string(w);
        rte_ring* r = rte_ring_create(name.c_str(), ring_size, static_cast<int>(socket),
                                      RING_F_SP_ENQ | RING_F_SC_DEQ);
        if (r == nullptr) {
          throw std::runtime_error("rte_ring_create " + name + ": " + rte_strerror(rte_errno));
        }
        rx_rings.push_back(r);
      }
    }
  } catch (const std::exception& e) {
    log_line(e.what());
    close_all();
    rte_eal_cleanup();
    return exit_runtime;
  }

  // ---- workers --------------------------------------------------------------------------
  worker_shared shared;
  const std::size_t qsbr_size = rte_rcu_qsbr_get_memsize(workers_n);
  shared.qsbr = static_cast<rte_rcu_qsbr*>(rte_zmalloc("sluice_qsbr", qsbr_size, RTE_CACHE_LINE_SIZE));
  if (shared.qsbr == nullptr || rte_rcu_qsbr_init(shared.qsbr, workers_n) != 0) {
    log_line("cannot set up RCU");
    close_all();
    rte_eal_cleanup();
    return exit_runtime;
  }
  auto holder = std::make_unique<policy_holder>(shared, workers_n, o.apps);
  {
    const std::uint64_t rev = initial->policy->revision();
    const std::uint32_t rules = initial->policy->rule_count();
    holder->install(std::move(*initial));
    log_line("policy ", o.policy.empty() ? "(none: forward everything)" : o.policy,
             ": revision ", rev, ", ", rules, " rules");
  }

  // ---- controller mode: the persisted snapshot is in force before the workers start ------
  std::atomic<bool> node_healthy{true};
  std::unique_ptr<controller_link> link;
  if (!o.controllers.empty()) {
    std::string error;
    link = make_controller_link(
        o, *holder,
        [&node_healthy] { return node_healthy.load() ? std::string("ok") : std::string("worker stalled"); },
        error);
    if (!link) {
      log_line("controller mode: ", error);
      holder.reset();
      rte_free(shared.qsbr);
      close_all();
      rte_eal_cleanup();
      return exit_usage;
    }
    (void)link->core->start();
    log_line("controller mode: ", link->core->state().startup);
  }

  std::uint16_t max_port = 0;
  for (const port_plan& p : plans) max_port = std::max({max_port, p.port, p.tx_target});
  auto find_plan = [&](int id) -> const port_plan& {
    for (const port_plan& p : plans) {
      if (p.port == id) return p;
    }
    return plans.front();
  };

  std::vector<std::unique_ptr<worker>> workers;
  try {
    for (std::uint32_t w = 0; w < workers_n; ++w) {
      worker_config cfg;
      cfg.id = w;
      const unsigned s = rte_lcore_to_socket_id(lcores[w]);
      cfg.socket = s == static_cast<unsigned>(SOCKET_ID_ANY) ? 0 : s;
      cfg.tx_queue_of_port.assign(std::size_t{max_port} + 1, UINT16_MAX);
      cfg.role_of_port.assign(std::size_t{max_port} + 1, port_role::subscriber);
      for (const port_plan& p : plans) {
        cfg.role_of_port[p.port] = p.role;
        cfg.role_of_port[p.tx_target] = p.role;
        // A funnel alias has one tx queue per worker; a real port too unless it is funnelled,
        // in which case only the dispatcher may touch it.
        cfg.tx_queue_of_port[p.tx_target] = static_cast<std::uint16_t>(w);
        if (p.rx && !software) cfg.rx.push_back({p.port, static_cast<std::uint16_t>(w), p.role});
      }
      if (software) cfg.rx_ring = rx_rings[w];
      if (o.mode == "inline") {
        const port_plan& sub = find_plan(o.subscriber_port);
        const port_plan& inet = find_plan(o.internet_port);
        // In software mode packets arrive tagged with the tx target of their rx port (see
        // dispatcher::rx_source::deliver_as), so that answers to the sender take it too.
        cfg.peer_of_port[sub.port] = inet.tx_target;
        cfg.peer_of_port[inet.port] = sub.tx_target;
        cfg.peer_of_port[sub.tx_target] = inet.tx_target;
        cfg.peer_of_port[inet.tx_target] = sub.tx_target;
      } else {
        cfg.mirror_mode = true;
        cfg.inject_port = find_plan(o.inject_port).tx_target;
      }
      cfg.response_pool = response_pool;
      cfg.flow_table_size = o.flow_table_size;
      cfg.flow_idle_seconds = o.idle_timeout;
      cfg.reassembly_buffers = o.reassembly_buffers;
      cfg.reassembly_buffer_bytes = o.reassembly_buffer_bytes;
      cfg.frag_table_size = o.frag_table_size;
      cfg.burst = o.burst;
      cfg.verify_checksums = !o.no_checksum_check;
      cfg.impact_sketch = o.impact_interval != 0;
      workers.push_back(std::make_unique<worker>(cfg, shared));
    }
  } catch (const std::exception& e) {
    log_line("worker set-up failed: ", e.what(), "; give the EAL more memory (-m) or ",
             "lower --flow-table-size");
    link.reset();
    workers.clear();
    holder.reset();
    rte_free(shared.qsbr);
    close_all();
    rte_eal_cleanup();
    return exit_runtime;
  }

  std::vector<port::dispatcher::rx_source> sources;
  if (software) {
    for (const port_plan& p : plans) {
      if (p.rx) sources.push_back({p.port, 0, p.tx_target});
    }
  }
  port::dispatcher dispatch(sources, rx_rings, funnels, o.burst, o.offline, &g_stop);

  // ---- endpoints (bound before the workers start, so a taken port fails early) ---------
  // Impact windows: drained every --impact-interval s (posted in controller mode); built before
  // the endpoints, which read it, and reset before the workers go.
  std::unique_ptr<impact_reporter> impact;
  if (o.impact_interval != 0) {
    std::vector<worker*> ws;
    for (const auto& w : workers) ws.push_back(w.get());
    impact = std::make_unique<impact_reporter>(
        shared, std::move(ws), *holder, link ? link->impact_transport.get() : nullptr,
        std::chrono::seconds(o.impact_interval));
  }
  std::unique_ptr<telemetry::metrics_exporter> exporter;
  std::mutex status_mutex;
  status_view status;
  httplib::Server mgmt;
  std::thread mgmt_thread;
  auto cleanup_endpoints = [&] {
    if (mgmt_thread.joinable()) {
      mgmt.stop();
      mgmt_thread.join();
    }
    exporter.reset();
    impact.reset();
  };
  try {
    if (o.metrics != "none") {
      telemetry::label_set labels;
      if (!o.node_id.empty()) labels["node"] = o.node_id;
      exporter = std::make_unique<telemetry::metrics_exporter>(o.metrics, labels);
    }
    if (o.mgmt != "none") {
      std::string host;
      std::uint16_t mport = 0;
      (void)split_listen_address(o.mgmt, host, mport);
      mgmt.Get("/status", [&](const httplib::Request&, httplib::Response& res) {
        const policy_status ps = holder->status();
        nlohmann::json j;
        {
          std::lock_guard lock(status_mutex);
          j["healthy"] = status.healthy;
          nlohmann::json ws = nlohmann::json::array();
          for (std::size_t i = 0; i < status.workers.size(); ++i) {
            const auto& w = status.workers[i];
            ws.push_back({{"id", i}, {"lcore", w.lcore}, {"stalled", w.stalled},
                          {"packets", w.packets}});
          }
          j["workers"] = ws;
          j["flow_table"] = {{"entries", status.flow_entries}, {"capacity", status.flow_capacity}};
        }
        j["revision"] = ps.revision;
        j["sha256"] = ps.sha256;
        j["rules"] = ps.rules;
        j["policy_path"] = ps.path;
        j["loaded_at"] = ps.loaded_at;
        j["load_seconds"] = ps.load_seconds;
        j["parse_seconds"] = ps.parse_seconds;
        j["compile_seconds"] = ps.compile_seconds;
        j["reload_failures"] = ps.reload_failures;
        j["last_error"] = ps.last_error;
        j["mode"] = o.mode;
        if (!o.node_id.empty()) j["node"] = o.node_id;
        if (link) {
          const agent::agent_state a = link->core->state();
          j["controller"] = {{"held_revision", a.held_revision},
                             {"applied_revision", a.applied_revision},
                             {"fetches", a.fetches},
                             {"fetch_failures", a.fetch_failures},
                             {"not_modified", a.not_modified},
                             {"applied", a.applied},
                             {"acks", a.acks},
                             {"nacks", a.nacks},
                             {"status_failures", a.status_failures},
                             {"persist_failures", a.persist_failures},
                             {"last_contact", a.last_contact},
                             {"last_applied_at", a.last_applied_at},
                             {"controller", a.controller},
                             {"last_error", a.last_error},
                             {"startup", a.startup},
                             // What the last snapshot cost this node (issue 16: big policies).
                             {"last_snapshot", last_snapshot_json(link->applier.last_snapshot())},
                             // The audit checkpoint this node witnesses (issue 14).
                             {"audit_checkpoint", {{"count", a.checkpoint_count},
                                                   {"head", a.checkpoint_head},
                                                   {"conflict", a.checkpoint_conflict}}}};
        }
        res.set_content(j.dump() + "\n", "application/json");
      });
      // The last impact window drained (what was, or would have been, posted): a read-only
      // peek that never drains. 204 before the first window with flows.
      mgmt.Get("/impact", [&](const httplib::Request&, httplib::Response& res) {
        const std::string body = impact ? impact->last_body() : std::string();
        if (body.empty()) {
          res.status = 204;
          return;
        }
        res.set_content(body + "\n", "application/json");
      });
      mgmt.Post("/policy/reload", [&](const httplib::Request& req, httplib::Response& res) {
        if (link) {
          res.status = 409;
          res.set_content(R"({"error":"controller mode: the policy comes from the controller"})" "\n",
                          "application/json");
          return;
        }
        std::string path;
        if (!req.body.empty()) {
          const nlohmann::json body = nlohmann::json::parse(req.body, nullptr, false);
          if (body.is_discarded() || !body.is_object() ||
              (body.contains("path") && !body["path"].is_string())) {
            res.status = 400;
            res.set_content(R"({"error":"body must be a JSON object like {\"path\": \"...\"}"})" "\n",
                            "application/json");
            return;
          }
          if (body.contains("path")) path = body["path"].get<std::string>();
        }
        const load_result r = holder->reload(path);
        nlohmann::json j;
        j["revision"] = r.revision;
        j["sha256"] = r.sha256;
        if (r.ok) {
          log_line("management: policy revision ", r.revision, " in force");
        } else {
          res.status = 422;
          j["error"] = r.error;
          log_line("management: policy refused, previous stays in force: ", r.error);
        }
        res.set_content(j.dump() + "\n", "application/json");
      });
      if (o.test_hooks) {
        auto stall = [&](const httplib::Request& req, httplib::Response& res, bool on) {
          std::uint32_t w = 0;
          if (req.has_param("worker")) w = static_cast<std::uint32_t>(std::stoul(req.get_param_value("worker")));
          if (w >= workers_n) {
            res.status = 400;
            return;
          }
          shared.stall_worker_for_test.store(on ? w : UINT32_MAX);
          log_line("test hook: worker ", w, on ? " stalled" : " released");
          res.set_content("{}\n", "application/json");
        };
        mgmt.Post("/test/stall", [stall](const httplib::Request& q, httplib::Response& r) { stall(q, r, true); });
        mgmt.Post("/test/unstall", [stall](const httplib::Request& q, httplib::Response& r) { stall(q, r, false); });
      }
      if (!mgmt.bind_to_port(host, mport)) {
        throw std::runtime_error("management endpoint: cannot bind " + o.mgmt);
      }
      mgmt_thread = std::thread([&] { mgmt.listen_after_bind(); });
    }
  } catch (const std::exception& e) {
    log_line(e.what());
    cleanup_endpoints();
    link.reset();
    workers.clear();
    holder.reset();
    rte_free(shared.qsbr);
    close_all();
    rte_eal_cleanup();
    return exit_runtime;
  }

  for (std::uint32_t w = 0; w < workers_n; ++w) {
    const int lrc = rte_eal_remote_launch(launch_worker, workers[w].get(), lcores[w]);
    if (lrc != 0) {
      log_line("cannot launch worker ", w, " on lcore ", lcores[w]);
      g_stop.store(true);
      rc = exit_runtime;
    }
  }
  log_line(workers_n, " workers, ", software ? "software dispatch" : "direct queues",
           o.offline ? ", offline replay" : "");

  // ---- control loop ---------------------------------------------------------------------
  reloader sighup(*holder);
  if (link) {
    link->thread = std::make_unique<agent::runner>(*link->core);
    if (!link->thread->started()) {
      log_line("controller mode: cannot start the agent thread");
      g_stop.store(true);
      rc = exit_runtime;
    }
  }
  const std::uint64_t hz = rte_get_tsc_hz();
  const std::uint64_t tick_tsc = hz / 100;  // 10 ms
  const std::uint64_t stats_tsc = hz;
  const auto watchdog_tsc = static_cast<std::uint64_t>(watchdog_seconds * static_cast<double>(hz));
  const auto quiet_tsc = static_cast<std::uint64_t>(drain_quiet_seconds * static_cast<double>(hz));
  const std::uint64_t started_tsc = rte_rdtsc();
  std::uint64_t next_tick = started_tsc, next_stats = started_tsc;
  std::vector<std::uint64_t> last_beat(workers_n, 0), beat_changed(workers_n, started_tsc);
  std::vector<bool> stalled(workers_n, false);
  std::uint64_t last_rx_total = UINT64_MAX, last_worker_packets = UINT64_MAX, quiet_since = 0;

  auto assemble = [&](bool healthy) {
    telemetry::dataplane_stats st;
    for (const port_plan& p : plans) st.ports.push_back(port::read_port_stats(p.port, p.name));
    std::array<std::uint64_t, static_cast<std::size_t>(engine_event::count)> ev{};
    std::array<std::uint64_t, static_cast<std::size_t>(packet::frame_outcome::count)> parse{};
    std::array<std::uint64_t, static_cast<std::size_t>(flow::give_up_reason::count)> give{};
    for (std::uint32_t w = 0; w < workers_n; ++w) {
      const worker_counters& c = workers[w]->counters();
      for (std::size_t i = 0; i < ev.size(); ++i) ev[i] += c.events[i];
      for (std::size_t i = 0; i < parse.size(); ++i) parse[i] += c.parse[i];
      for (std::size_t i = 0; i < give.size(); ++i) give[i] += c.give_ups[i];
      telemetry::worker_stats ws;
      ws.lcore = lcores[w];
      ws.packets = c.packets;
      ws.busy_cycles = c.busy_cycles;
      ws.bursts = c.bursts;
      ws.last_beat_tsc = c.heartbeat_tsc;
      ws.stalled = stalled[w];
      st.workers.push_back(ws);
      st.flow_table_entries += workers[w]->flow_entries();
      st.flow_table_capacity += o.flow_table_size;
      st.reassembly_buffers_in_use += workers[w]->reassembly_buffers_in_use();
      st.reassembly_buffers += o.reassembly_buffers;
    }
    auto event = [&](engine_event e) { return ev[static_cast<std::size_t>(e)]; };
    st.packets_by_direction = {{"in", event(engine_event::packets_in)},
                               {"out", event(engine_event::packets_out)}};
    for (std::size_t i = 0; i < parse.size(); ++i) {
      st.parse_outcomes.emplace_back(packet::to_string(static_cast<packet::frame_outcome>(i)), parse[i]);
    }
    for (std::size_t i = 0; i < ev.size(); ++i) st.engine_events.emplace_back(engine_event_names[i], ev[i]);
    const port::dispatcher::counters& dc = dispatch.stats();
    st.engine_events.emplace_back("dispatch_ring_full_drops", dc.ring_full_drops);
    st.engine_events.emplace_back("dispatch_tx_refused", dc.tx_refused);
    if (impact) {
      // Counts only: names never become labels.
      if (link) {
        st.impact_reports = {{"delivered", impact->reports_ok()},
                             {"failed", impact->reports_failed()}};
      }
      st.impact_unrecorded_flows = {{"rule_overflow", impact->overflow_flows()},
                                    {"policy_swap", impact->swap_dropped_flows()}};
    }
    for (std::size_t i = 0; i < give.size(); ++i) {
      st.reassembly_give_ups.emplace_back(flow::to_string(static_cast<flow::give_up_reason>(i)), give[i]);
    }
    st.responses_sent = {{"reset", event(engine_event::resets_sent)},
                         {"notice", event(engine_event::notices_sent)},
                         {"dns", event(engine_event::dns_answers_sent)}};
    st.rules = holder->rule_stats();
    const policy_status ps = holder->status();
    st.policy_revision = ps.revision;
    st.policy_sha256 = ps.sha256;
    st.policy_load_seconds = ps.load_seconds;
    st.policy_loaded_at = ps.loaded_at;
    st.policy_reload_failures = ps.reload_failures;
    if (link) {
      const agent::agent_state a = link->core->state();
      st.controller_enabled = true;
      st.controller_held_revision = a.held_revision;
      st.controller_fetch_failures = a.fetch_failures;
      st.controller_nacks = a.nacks;
      st.controller_status_failures = a.status_failures;
      st.controller_last_contact = a.last_contact;
    }
    st.healthy = healthy;
    return st;
  };

  bool healthy = true;
  bool drained = false;
  while (!g_stop.load(std::memory_order_relaxed)) {
    if (software) {
      if (dispatch.poll() == 0) rte_pause();
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    const std::uint64_t now = rte_rdtsc();
    if (now < next_tick) continue;
    next_tick = now + tick_tsc;

    if (g_reload.exchange(false)) {
      if (link) {
        log_line("SIGHUP ignored: controller mode, the policy comes from the controller");
      } else {
        sighup.request();
      }
    }
    holder->reclaim();

    // Watchdog: a worker whose heartbeat has not moved for a second is stalled. DPDK 22.11
    // has no generic bypass API; a NIC with a hardware bypass would be switched here (see
    // README.md, "What fails open").
    bool all_ok = true;
    for (std::uint32_t w = 0; w < workers_n; ++w) {
      const std::uint64_t beat = workers[w]->counters().heartbeat_tsc;
      if (beat != last_beat[w]) {
        last_beat[w] = beat;
        beat_changed[w] = now;
      }
      const bool s = now - beat_changed[w] > watchdog_tsc;
      if (s != stalled[w]) {
        stalled[w] = s;
        if (s) {
          log_line("watchdog: worker ", w, " (lcore ", lcores[w], ") stalled: node unhealthy");
        } else {
          log_line("watchdog: worker ", w, " (lcore ", lcores[w], ") running again");
        }
      }
      all_ok = all_ok && !s;
    }
    healthy = all_ok;
    node_healthy.store(healthy);

    std::uint64_t worker_packets = 0, flow_entries = 0;
    for (const auto& w : workers) {
      worker_packets += w->counters().packets;
      flow_entries += w->flow_entries();
    }
    {
      std::lock_guard lock(status_mutex);
      status.healthy = healthy;
      status.workers.resize(workers_n);
      for (std::uint32_t w = 0; w < workers_n; ++w) {
        status.workers[w].lcore = lcores[w];
        status.workers[w].stalled = stalled[w];
        status.workers[w].packets = workers[w]->counters().packets;
      }
      status.flow_entries = flow_entries;
      status.flow_capacity = std::uint64_t{o.flow_table_size} * workers_n;
    }

    if (o.offline) {
      // Drained: the pcap inputs stopped growing, workers saw nothing new and the rings are
      // empty, for drain_quiet_seconds in a row.
      std::uint64_t rx_total = 0;
      for (const port_plan& p : plans) {
        rte_eth_stats s{};
        if (p.rx && rte_eth_stats_get(p.port, &s) == 0) rx_total += s.ipackets;
      }
      const bool quiet = rx_total == last_rx_total && worker_packets == last_worker_packets &&
                         (!software || dispatch.empty());
      if (!quiet) {
        quiet_since = now;
      } else if (now - quiet_since > quiet_tsc) {
        drained = true;
        break;
      }
      last_rx_total = rx_total;
      last_worker_packets = worker_packets;
    }

    if (now >= next_stats) {
      next_stats = now + stats_tsc;
      if (exporter) exporter->update(assemble(healthy));
    }
  }

  // ---- shutdown -------------------------------------------------------------------------
  g_stop.store(true);
  if (link) link->thread.reset();  // no snapshot swap from here on
  shared.stop.store(true);
  shared.stall_worker_for_test.store(UINT32_MAX);
  rte_eal_mp_wait_lcore();
  // Workers flushed on exit; what they handed to funnels goes out now.
  for (int i = 0; i < 1000 && !dispatch.empty(); ++i) (void)dispatch.drain_funnels();
  (void)dispatch.drain_funnels();
  holder->reclaim();
  const telemetry::dataplane_stats final_stats = assemble(healthy);
  if (exporter) exporter->update(final_stats);
  if (o.offline || !o.stats_json.empty()) {
    const std::string text = telemetry::to_json(final_stats);
    if (o.stats_json.empty()) {
      std::cout << text << std::flush;
    } else {
      std::ofstream out(o.stats_json, std::ios::trunc);
      out << text;
      if (!out) {
        log_line("cannot write ", o.stats_json);
        rc = exit_runtime;
      }
    }
  }
  if (o.offline) {
    log_line(drained ? "input drained" : "stopped", ": ",
             final_stats.packets_by_direction[0].second + final_stats.packets_by_direction[1].second,
             " packets");
  }
  cleanup_endpoints();
  link.reset();
  workers.clear();
  holder.reset();
  rte_free(shared.qsbr);
  close_all();
  for (rte_ring* r : rx_rings) rte_ring_free(r);
  for (const port_plan& p : plans) {
    if (p.funnel_ring != nullptr) rte_ring_free(p.funnel_ring);
  }
  rte_mempool_free(response_pool);
  rte_mempool_free(pool);
  rte_eal_cleanup();
  return rc;
}

}  // namespace sluice::engine
