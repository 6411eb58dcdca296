// sluice-controld --config FILE: the Sluice controller (control/README.md).
#include <malloc.h>
#include <signal.h>
#include <sys/resource.h>

#include <boost/asio/signal_set.hpp>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "control/api/config.hpp"
#include "control/api/http_api.hpp"
#include "control/controller/controller.hpp"
#include "control/store/store.hpp"

namespace {

// A national fleet holds one connection per node: lift the soft descriptor limit to the hard one.
void raise_fd_limit() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    (void)::setrlimit(RLIMIT_NOFILE, &rl);
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{"sluice-controld: takes signed directives, audits them, compiles and rolls out "
               "per-node snapshots"};
  std::string config_path;
  std::string listen;
  bool check_only = false;
  cli.add_option("--config,-c", config_path, "configuration file (YAML)")->required();
  cli.add_option("--listen", listen, "override the config's listen address (host:port)");
  cli.add_flag("--check", check_only, "load the config, keys and database, then exit");
  cli.footer("Exit codes: 0 clean stop, 1 runtime failure, 2 bad command line or config.");
  CLI11_PARSE(cli, argc, argv);
  raise_fd_limit();
  // A peer that closes first (a node, an operator, an etcd member over TLS) must cost an error
  // on that connection, not the process.
  ::signal(SIGPIPE, SIG_IGN);

  using namespace sluice::control;
  api::daemon_config cfg;
  try {
    cfg = api::load_daemon_config_file(config_path);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sluice-controld: %s\n", e.what());
    return 2;
  }
  // One malloc arena per event-loop thread rather than glibc's up to 8 per core: each arena
  // keeps its own freed memory, and the store's and API's threads allocating beside the event
  // loop during a rollout left a 10,000-node controller at 439 MB peak instead of 341 MB
  // (tools/fleet_bench.py with MALLOC_ARENA_MAX=1). Set before the store's and the server's
  // threads start; MALLOC_ARENA_MAX in the environment still wins.
  if (std::getenv("MALLOC_ARENA_MAX") == nullptr)
    ::mallopt(M_ARENA_MAX, static_cast<int>(std::max(1u, cfg.io_threads)));
  if (!listen.empty()) cfg.listen = listen;
  const auto colon = cfg.listen.rfind(':');
  int port = 0;
  try {
    port = colon == std::string::npos ? -1 : std::stoi(cfg.listen.substr(colon + 1));
  } catch (const std::exception&) {
    port = -1;
  }
  if (port < 0 || port > 65535) {
    std::fprintf(stderr, "sluice-controld: listen '%s' is not host:port\n", cfg.listen.c_str());
    return 2;
  }
  const std::string host = cfg.listen.substr(0, colon);

  std::unique_ptr<store::store> st;
  std::unique_ptr<controller::controller> core;
  controller::system_clock clk;
  const bool etcd = cfg.backend == api::store_kind::etcd;
  if (etcd && cfg.etcd.replica.empty()) cfg.etcd.replica = cfg.listen;
  cfg.core.replica = etcd ? cfg.etcd.replica : cfg.listen;
  const std::string store_name =
      etcd ? "etcd " + cfg.etcd.endpoints.front() + " prefix " + cfg.etcd.prefix : cfg.database.string();
  try {
    st = etcd ? store::open_etcd_store(cfg.etcd) : store::open_sqlite_store(cfg.database.string());
    core = std::make_unique<controller::controller>(cfg.core, *st, clk);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sluice-controld: %s: %s\n", store_name.c_str(), e.what());
    return 1;
  }
  if (check_only) {
    std::printf("sluice-controld: config, keys and database OK (%zu app profiles, %zu issuers)\n",
                cfg.core.apps.size(), cfg.core.issuers.size());
    return 0;
  }

  api::server_options so;
  so.host = host;
  so.port = static_cast<std::uint16_t>(port);
  so.io_threads = cfg.io_threads;
  so.blocking_threads = cfg.api_threads;
  so.max_connections = cfg.max_connections;
  so.max_body_bytes = cfg.max_body_bytes;
  so.header_timeout = cfg.header_timeout;
  so.body_timeout = cfg.body_timeout;
  so.tls_cert = cfg.tls_cert;
  so.tls_key = cfg.tls_key;
  so.tls_client_ca = cfg.node_ca_cert.empty() ? cfg.tls_client_ca : cfg.node_ca_cert;
  std::unique_ptr<api::http_server> server;
  try {
    server = std::make_unique<api::http_server>(so);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sluice-controld: %s\n", e.what());
    return 1;
  }
  if (cfg.obsolete_http_threads)
    std::fprintf(stderr, "sluice-controld: http_threads is obsolete and ignored (the server holds no "
                         "thread per long poll; see server.io_threads)\n");
  // The console's files: the config's, else the build tree's (BUILD/console beside the binary),
  // else an installed tree's (PREFIX/share/sluice/console beside PREFIX/bin).
  if (cfg.console_enabled && cfg.console.assets.empty()) {
    std::error_code ec;
    const auto bin = std::filesystem::read_symlink("/proc/self/exe", ec).parent_path();
    for (const auto& dir : {bin / "console", bin.parent_path() / "share" / "sluice" / "console"})
      if (!ec && std::filesystem::is_regular_file(dir / "index.html", ec)) {
        cfg.console.assets = dir;
        break;
      }
    if (cfg.console.assets.empty())
      std::fprintf(stderr, "sluice-controld: no console files found beside the binary; /ui/ is not served\n");
  }
  if (!cfg.console_enabled) cfg.console.assets.clear();
  std::unique_ptr<api::http_api> routes;
  try {
    routes = std::make_unique<api::http_api>(*core, cfg.tokens, cfg.api, cfg.console);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sluice-controld: console: %s\n", e.what());
    return 1;
  }
  if (!cfg.console.assets.empty())
    std::fprintf(stderr, "sluice-controld: console at /ui/ from %s\n", cfg.console.assets.c_str());
  routes->attach(*server);
  // SIGTERM/SIGINT: the server's clean stop (no new connections, long polls answered 503,
  // answers in progress finished), run() returns, then the ticker's last flush below. Handled on
  // the event loop itself (no work in a signal handler).
  boost::asio::signal_set signals(server->context(), SIGTERM, SIGINT);
  signals.async_wait([&server](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    std::fprintf(stderr, "sluice-controld: %s: stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    server->stop();
  });
  // SIGHUP: re-read the TLS certificate, key and client CA for new connections.
  boost::asio::signal_set hangup(server->context(), SIGHUP);
  std::function<void()> wait_hangup = [&] {
    hangup.async_wait([&](const boost::system::error_code& ec, int) {
      if (ec) return;
      if (cfg.tls_cert.empty())
        std::fprintf(stderr, "sluice-controld: SIGHUP: no TLS configured, nothing to reload\n");
      else if (const auto err = server->reload_tls())
        std::fprintf(stderr, "sluice-controld: SIGHUP: TLS reload failed, keeping the old certificate: %s\n",
                     err->c_str());
      else
        std::fprintf(stderr, "sluice-controld: SIGHUP: TLS certificate reloaded from %s\n",
                     cfg.tls_cert.c_str());
      wait_hangup();
    });
  };
  wait_hangup();

  std::mutex m;
  std::condition_variable stop_cv;
  bool stopping = false;
  // Ticks every 250 ms, and at once when the store moves (another replica's commit reaches a
  // follower through the store's watch, so its long-polling nodes hear of a revision promptly).
  std::thread ticker([&] {
    std::uint64_t seen = 0;
    auto trimmed = std::chrono::steady_clock::now();
    std::unique_lock lock(m);
    while (!stopping) {
      lock.unlock();
      const auto started = std::chrono::steady_clock::now();
      core->tick();
      // A fleet reconnecting or answered at once leaves a third of the heap free but resident
      // (glibc returns only the top of the heap by itself; measured at 5,000 TLS nodes: 246 MB
      // resident, 158 MB after a trim). Every 30 s, off the event loop, give it back.
      if (started - trimmed >= std::chrono::seconds(30)) {
        ::malloc_trim(0);
        trimmed = started;
      }
      // Only replicas need the store's news early; a single controller's own commits (node
      // status flushes) would otherwise wake the ticker again at once, 20 times a second.
      if (etcd)
        seen = st->wait_for_change(seen, std::chrono::milliseconds(250));
      lock.lock();
      // At most 20 ticks a second however busy the store is; a stop wakes it at once.
      stop_cv.wait_until(lock, started + std::chrono::milliseconds(etcd ? 50 : 250),
                         [&] { return stopping; });
    }
  });
  std::fprintf(stderr, "sluice-controld: listening on %s%s (store %s, replica %s)\n",
               cfg.listen.c_str(), cfg.tls_cert.empty() ? "" : " (TLS)", store_name.c_str(),
               cfg.core.replica.c_str());
  server->run();
  const auto stop_started = std::chrono::steady_clock::now();
  {
    std::lock_guard lock(m);
    stopping = true;
  }
  stop_cv.notify_all();
  ticker.join();
  // The last flush: node status and impact reports the ticker had not written yet, and any
  // time-driven transition due by now (what a tick does; it commits before returning).
  core->tick();
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - stop_started);
  std::fprintf(stderr, "sluice-controld: stopped (flushed in %lld ms)\n",
               static_cast<long long>(took.count()));
  return 0;
}
