#pragma once
// For the etcd store tests: a real single-member etcd on loopback (one per test binary, shared
// by the test cases, each using its own key prefix), a small TCP proxy that a test can cut to
// break a store's connections, and raw gateway calls for what the store does not expose
// (compaction, foreign keys). A second member can be started with TLS (issue 14): https://,
// --client-cert-auth, certificates made with the openssl command line.

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "control/store/etcd_client.hpp"
#include "tests/unit/support/net.hpp"
#include "tests/unit/support/openssl_certs.hpp"

extern char** environ;

namespace sluice::control::store::test {

inline constexpr const char* etcd_binary = "/usr/bin/etcd";

using sluice::test::free_port;

// A gateway client for `endpoint`; over TLS with `tls`'s ca.crt and client.crt/key.
inline std::unique_ptr<httplib::Client> gateway_client(const std::string& endpoint,
                                                       const sluice::test::cert_dir* tls) {
  auto c = tls ? std::make_unique<httplib::Client>(endpoint, tls->file("client.crt"),
                                                   tls->file("client.key"))
               : std::make_unique<httplib::Client>(endpoint);
  if (tls) c->set_ca_cert_path(tls->file("ca.crt"));
  return c;
}

inline nlohmann::json etcd_post(const std::string& endpoint, const std::string& path,
                                const nlohmann::json& body,
                                const sluice::test::cert_dir* tls = nullptr) {
  auto c = gateway_client(endpoint, tls);
  c->set_connection_timeout(2, 0);
  c->set_read_timeout(5, 0);
  auto res = c->Post(path.c_str(), body.dump(), "application/json");
  REQUIRE_MESSAGE(res, endpoint << path << ": " << httplib::to_string(res.error()));
  REQUIRE_MESSAGE(res->status == 200, path << ": HTTP " << res->status << " " << res->body);
  return nlohmann::json::parse(res->body);
}

class etcd_server {
 public:
  // tls: https:// with --client-cert-auth; tls_files() holds ca.crt (signed the member's
  // server.crt and client.crt/key, a client certificate it accepts) and other.crt (a CA that
  // signed nothing).
  explicit etcd_server(bool tls = false) {
    if (::access(etcd_binary, X_OK) != 0) {
      FAIL("etcd is not installed at " << etcd_binary
                                        << ": run tools/setup.sh (Debian package etcd-server)");
    }
    std::string tmpl = (std::filesystem::temp_directory_path() / "sluice-etcd-XXXXXX").string();
    REQUIRE(mkdtemp(tmpl.data()) != nullptr);
    dir_ = tmpl;
    const int client_port = free_port();
    int peer_port = free_port();
    while (peer_port == client_port) peer_port = free_port();
    endpoint_ = (tls ? "https://127.0.0.1:" : "http://127.0.0.1:") + std::to_string(client_port);
    const std::string peer = "http://127.0.0.1:" + std::to_string(peer_port);
    std::vector<std::string> args = {etcd_binary,
                                     "--name", "sluice-test",
                                     "--data-dir", (dir_ / "data").string(),
                                     "--listen-client-urls", endpoint_,
                                     "--advertise-client-urls", endpoint_,
                                     "--listen-peer-urls", peer,
                                     "--initial-advertise-peer-urls", peer,
                                     "--initial-cluster", "sluice-test=" + peer,
                                     "--max-txn-ops", "10000",
                                     "--max-request-bytes", "10485760",
                                     "--log-level", "error"};
    if (tls) {
      // cpp-httplib writes TLS with write(2): a member closing a connection mid-start (the
      // probe below) must not kill the test binary with SIGPIPE (etcd::client ignores it too).
      ::signal(SIGPIPE, SIG_IGN);
      certs_ = std::make_unique<sluice::test::cert_dir>();
      certs_->make_ca("ca", "Sluice test etcd CA");
      certs_->make_ca("other", "Sluice test other CA");
      // clientAuth too: etcd 3.4's gateway presents the server certificate to the member's own
      // gRPC port, which --client-cert-auth checks.
      certs_->make_leaf("server", "ca", "etcd",
                        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                        "extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:127.0.0.1\n");
      certs_->make_client("client", "ca", "sluice-controller");
      args.insert(args.end(), {"--cert-file", certs_->file("server.crt"), "--key-file",
                               certs_->file("server.key"), "--client-cert-auth",
                               "--trusted-ca-file", certs_->file("ca.crt")});
    }
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    const std::string log = (dir_ / "etcd.log").string();
    posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    const int rc = posix_spawn(&pid_, etcd_binary, &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    REQUIRE_MESSAGE(rc == 0, "posix_spawn etcd: " << rc);

    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
    for (;;) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        FAIL("etcd exited at start; see " << log);
      }
      auto c = gateway_client(endpoint_, certs_.get());
      c->set_connection_timeout(0, 200000);
      auto res = c->Post("/v3/kv/range", R"({"key":"AA=="})", "application/json");
      if (res && res->status == 200) break;
      REQUIRE_MESSAGE(std::chrono::steady_clock::now() < deadline,
                      "etcd did not answer within 15 s; see " << log);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  etcd_server(const etcd_server&) = delete;
  etcd_server& operator=(const etcd_server&) = delete;
  ~etcd_server() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
      int status = 0;
      while (::waitpid(pid_, &status, WNOHANG) == 0) {
        if (std::chrono::steady_clock::now() > deadline) {
          ::kill(pid_, SIGKILL);
          ::waitpid(pid_, &status, 0);
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    }
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  [[nodiscard]] const std::string& endpoint() const { return endpoint_; }
  [[nodiscard]] const sluice::test::cert_dir& tls_files() const { return *certs_; }

  // The cluster's current revision.
  [[nodiscard]] std::int64_t revision() const {
    return etcd::int_field(etcd_post(endpoint_, "/v3/kv/range", {{"key", "AA=="}}, certs_.get())["header"],
                           "revision");
  }

  void compact(std::int64_t revision) const {
    (void)etcd_post(endpoint_, "/v3/kv/compaction", {{"revision", revision}, {"physical", true}},
                    certs_.get());
  }

  void put(const std::string& key, const std::string& value) const {
    (void)etcd_post(endpoint_, "/v3/kv/put",
                    {{"key", etcd::base64_encode(key)}, {"value", etcd::base64_encode(value)}},
                    certs_.get());
  }

 private:
  std::unique_ptr<sluice::test::cert_dir> certs_;  // with tls
  std::filesystem::path dir_;
  std::string endpoint_;
  pid_t pid_ = -1;
};

// One etcd for the whole binary: started by the first test that needs it, stopped at exit.
inline etcd_server& shared_etcd() {
  static etcd_server server;
  return server;
}
inline etcd_server& shared_tls_etcd() {
  static etcd_server server(true);
  return server;
}

// A loopback TCP proxy to `target_port`. cut() drops every connection and refuses new ones
// until resume(): what a store sees when the network to its etcd member breaks.
class tcp_proxy {
 public:
  explicit tcp_proxy(int target_port) : target_port_(target_port), port_(free_port()) {
    listen_fd_ = open_listener();
    thread_ = std::thread([this] { run(); });
  }
  tcp_proxy(const tcp_proxy&) = delete;
  tcp_proxy& operator=(const tcp_proxy&) = delete;
  ~tcp_proxy() {
    stop_ = true;
    thread_.join();
    close_all();
    if (listen_fd_ >= 0) ::close(listen_fd_);
  }

  [[nodiscard]] std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }

  void cut() {
    std::lock_guard lock(mutex_);
    cut_ = true;
  }
  void resume() {
    std::lock_guard lock(mutex_);
    cut_ = false;
  }

 private:
  int open_listener() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<std::uint16_t>(port_));
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(fd, 64) == 0);
    return fd;
  }

  int connect_target() const {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<std::uint16_t>(target_port_));
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd);
      return -1;
    }
    return fd;
  }

  void close_all() {
    for (auto& [a, b] : pairs_) {
      ::close(a);
      ::close(b);
    }
    pairs_.clear();
  }

  // One thread, poll() over the listener and every pair; bounded by the test's lifetime.
  void run() {
    char buf[16384];
    while (!stop_) {
      bool cut = false;
      {
        std::lock_guard lock(mutex_);
        cut = cut_;
      }
      if (cut) {
        close_all();
        // Accept and drop at once: the client sees its connection refused or reset.
        pollfd p{listen_fd_, POLLIN, 0};
        if (::poll(&p, 1, 20) > 0) {
          const int c = ::accept(listen_fd_, nullptr, nullptr);
          if (c >= 0) ::close(c);
        }
        continue;
      }
      std::vector<pollfd> fds;
      fds.push_back({listen_fd_, POLLIN, 0});
      for (const auto& [a, b] : pairs_) {
        fds.push_back({a, POLLIN, 0});
        fds.push_back({b, POLLIN, 0});
      }
      if (::poll(fds.data(), fds.size(), 20) <= 0) continue;
      if (fds[0].revents & POLLIN) {
        const int c = ::accept(listen_fd_, nullptr, nullptr);
        if (c >= 0) {
          const int t = connect_target();
          if (t < 0) {
            ::close(c);
          } else {
            pairs_.emplace_back(c, t);
          }
        }
      }
      std::vector<std::size_t> dead;
      for (std::size_t i = 1; i < fds.size(); ++i) {
        if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        const std::size_t pair = (i - 1) / 2;
        const int from = fds[i].fd;
        const int to = (i % 2 == 1) ? pairs_[pair].second : pairs_[pair].first;
        const ssize_t n = ::read(from, buf, sizeof buf);
        if (n <= 0 || ::send(to, buf, static_cast<std::size_t>(n), MSG_NOSIGNAL) != n) {
          dead.push_back(pair);
        }
      }
      std::sort(dead.begin(), dead.end());
      dead.erase(std::unique(dead.begin(), dead.end()), dead.end());
      for (auto it = dead.rbegin(); it != dead.rend(); ++it) {
        ::close(pairs_[*it].first);
        ::close(pairs_[*it].second);
        pairs_.erase(pairs_.begin() + static_cast<std::ptrdiff_t>(*it));
      }
    }
  }

  int target_port_;
  int port_;
  int listen_fd_ = -1;
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  bool cut_ = false;
  std::vector<std::pair<int, int>> pairs_;
  std::thread thread_;
};

inline int port_of(const std::string& endpoint) {
  return std::stoi(endpoint.substr(endpoint.rfind(':') + 1));
}

}  // namespace sluice::control::store::test
