// sluice-controld --config FILE: the Sluice controller (control/README.md).
#include <httplib.h>
#include <signal.h>
#include <sys/socket.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <memory>
#include <mutex>
#include <thread>

#include "control/api/config.hpp"
#include "control/api/http_api.hpp"
#include "control/controller/controller.hpp"
#include "control/store/store.hpp"

namespace {

std::atomic<httplib::Server*> g_server{nullptr};

void on_signal(int) {
  if (auto* s = g_server.load()) s->stop();
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

  using namespace sluice::control;
  api::daemon_config cfg;
  try {
    cfg = api::load_daemon_config_file(config_path);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sluice-controld: %s\n", e.what());
    return 2;
  }
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

  std::unique_ptr<httplib::Server> server;
  if (!cfg.tls_cert.empty())
    server = std::make_unique<httplib::SSLServer>(cfg.tls_cert.c_str(), cfg.tls_key.c_str());
  else
    server = std::make_unique<httplib::Server>();
  if (!server->is_valid()) {
    std::fprintf(stderr, "sluice-controld: cannot set up TLS with %s / %s\n", cfg.tls_cert.c_str(),
                 cfg.tls_key.c_str());
    return 2;
  }
  const unsigned threads = cfg.http_threads;
  server->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  // Long polls hold their connection; the read timeout must outlast the longest wait.
  server->set_read_timeout(cfg.core.max_wait_s + 10, 0);
  server->set_write_timeout(30, 0);
  api::http_api routes(*core, cfg.tokens);
  routes.attach(*server);

  // Debian's libcpp-httplib listens with a backlog of 5 (CPPHTTPLIB_LISTEN_BACKLOG, compiled
  // in): when a revision goes out, every node reconnects at once (its ACK, then its next long
  // poll) and the kernel drops SYNs past the backlog, delaying ACKs by a retransmit or more. So
  // note the listening socket as httplib creates it and listen() again with the system's limit.
  socket_t listen_fd = INVALID_SOCKET;
  server->set_socket_options([&listen_fd](socket_t sock) {
    httplib::default_socket_options(sock);
    listen_fd = sock;
  });
  if (!server->bind_to_port(host.c_str(), port)) {
    std::fprintf(stderr, "sluice-controld: cannot listen on %s\n", cfg.listen.c_str());
    return 1;
  }
  if (listen_fd == INVALID_SOCKET || ::listen(listen_fd, SOMAXCONN) != 0) {
    std::fprintf(stderr, "sluice-controld: cannot raise the listen backlog on %s\n",
                 cfg.listen.c_str());
    return 1;
  }
  g_server = server.get();
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);

  std::mutex m;
  std::condition_variable stop_cv;
  bool stopping = false;
  // Ticks every 250 ms, and at once when the store moves (another replica's commit reaches a
  // follower through the store's watch, so its long-polling nodes hear of a revision promptly).
  std::thread ticker([&] {
    std::uint64_t seen = 0;
    std::unique_lock lock(m);
    while (!stopping) {
      lock.unlock();
      const auto started = std::chrono::steady_clock::now();
      core->tick();
      seen = st->wait_for_change(seen, std::chrono::milliseconds(250));
      // At most 20 ticks a second however busy the store is.
      std::this_thread::sleep_until(started + std::chrono::milliseconds(50));
      lock.lock();
    }
  });
  std::fprintf(stderr, "sluice-controld: listening on %s%s (store %s, replica %s)\n",
               cfg.listen.c_str(), cfg.tls_cert.empty() ? "" : " (TLS)", store_name.c_str(),
               cfg.core.replica.c_str());
  const bool ok = server->listen_after_bind();
  {
    std::lock_guard lock(m);
    stopping = true;
  }
  stop_cv.notify_all();
  ticker.join();
  g_server = nullptr;
  std::fprintf(stderr, "sluice-controld: stopped\n");
  return ok ? 0 : 1;
}
