// sluice-fleet-sim: N node agents (control/agent) in one process, against a controller, for
// rollout benchmarks without DPDK. Each simulated node is a real agent::agent (acceptance,
// apply, persist, reports, backoff: the same code as sluice-dataplane's agent) with its own id,
// labels and state directory, driven through the agent's step API (agent.hpp, "Steps") by an
// event loop instead of a thread: one Boost.Asio io_context on one thread (--threads N: N loops,
// the nodes dealt round-robin), one HTTP/1.1 keep-alive connection per node. Its "dataplane"
// parses the policy (load_policy) and computes its ruleset SHA-256, nothing more.
//
//   sluice-fleet-sim --controller http://127.0.0.1:8443 --nodes 100 --labels site=sim
//       --canary 5 --controller-key ctl.pub --node-token-file node.token --state-root /tmp/fleet
//
// Node ids are PREFIX + a 4-digit index from 1 (sim-0001 ...); the first --canary nodes get the
// label group=canary. stdout carries one JSON object per line:
//   {"event":"started","nodes":N,"at":T}
//   {"event":"applied","node":ID,"revision":N,"sha256":HEX,"at":T,"since_start":S}
//   {"event":"stopped","at":T,"cpu_s":C, "nodes":[{"node":ID,"revision":N,"nacks":K,
//                                        "fetch_failures":F,"status_failures":P}...]}
// and with --report-windows also
//   {"event":"enforcing","node":ID,"revision":N,"rules_in_force":K,"at":T}
// and with --report-acks also, when the controller took a node's ACK of revision N,
//   {"event":"acked","node":ID,"revision":N,"at":T}
// (T: when the simulator learnt it: the POST's answer, or for an ACK carried on a long poll
// (agent.hpp, "Reports carried on the long poll") that poll's answer, which may come a whole
// wait after the controller took it; the controller's own time is applied_at_ms in /v1/nodes)
// "enforcing" comes whenever K, the number of rules of the node's policy whose window
// (not_before <= now < not_after, unix seconds, as the dataplane decides) holds now, changes:
// after an apply, and as time crosses a window's edge (checked every 100 ms, so `at` is at most
// ~0.1 s late). Each node starts at K = 0 (no policy). This is what shows a node stopping a
// block on time by itself. T is unix seconds (microsecond precision), S seconds since start, C
// the process's user+system CPU seconds. Lines are written in batches, once per turn of the
// event loop (`at` is when the event happened). Logs go to stderr. SIGINT/SIGTERM stop every
// node (connections are closed, long-polls end at once) and exit 0.
//
// The requests are http_transport's (control/agent/http_transport.cpp): GET
// /v1/nodes/ID/snapshot?wait=S with If-None-Match "R" (none while nothing is held) and
// X-Sluice-Status when it carries a report, POST /v1/nodes/ID/status with agent::status_json
// (reports the controller does not take on polls), both with `Authorization: Bearer TOKEN` and
// `X-Sluice-Labels`; timeouts: connect 3 s, status 10 s, fetch its wait + 10 s. Several
// --controller URLs: a request goes to the one that answered last and, when that one fails
// (no connection, timeout, an answer but 200/304 for a fetch or 2xx for a status), to the next
// at once, each at most once per request. A kept-alive connection the server closed while idle
// is reopened once before that counts as a failure. https:// URLs are verified (peer
// certificate against --ca-file, else the system's CAs, and the host name or address), over
// the controller's own tls_stream (control/api/tls_stream.hpp: OpenSSL on the socket, no
// per-connection buffers while idle).
//
// Node identity (issue 14; test and benchmark only): with --node-ca-cert and --node-ca-key the
// simulator mints each node its own EC P-256 key and a client certificate (CN = node id, valid
// one day) from that CA at start, and every https:// connection of the node presents it, as
// sluice-dataplane --node-cert does; the bearer token is then optional. Minting 10,000 takes a
// few seconds (one key generation and one ECDSA signature per node). --write-inventory FILE
// writes the simulated nodes (ids and labels, as --nodes, --node-prefix, --labels and --canary
// make them) as a YAML list for controld's `nodes_file:`, and exits.
//
// Start-up: the nodes connect spread over --ramp-ms (default N/5 ms: 10,000 nodes in 2 s), not
// as one SYN flood; RLIMIT_NOFILE is raised to its hard limit (one socket per node).
//
// Cost. The simulator shares the machine with the controller under test, so its CPU per node
// per revision is kept small, and is kept apart from the controller's by being its own process:
// fleet_bench.py reads each PID's /proc/PID/stat (utime+stime) separately, and may run it at a
// lower priority (nice). What is shared between nodes, all of it pure functions of the bytes:
//   - the policy parse (load_policy + ruleset SHA-256 + the rules' windows), memoized by the
//     exact policy text (hash map keyed by the text itself), for the applier and for
//     check_snapshot's "parses, and its revision: is N" (agent::snapshot_verifier);
//   - the audit checkpoints' verification (always: every node gets the same bytes), memoized
//     by the exact (controller key, checkpoint) and done only when a node sees a checkpoint
//     it does not hold yet (agent::receive_checkpoint);
//   - with --share-verify only, crypto::verify's result (outcome and trusted comment),
//     memoized by the exact (controller key, policy bytes, signature bytes). Off by default:
//     every node then checks its signature itself (two Ed25519 verifications, ~130 us each on
//     a slow core; with the legacy per-node comment no two nodes get the same signature, so
//     sharing would never hit anyway).
// Never shared: the body's JSON parse, the node/scope/revision/held checks (each node's own id
// and labels), apply bookkeeping, persist_snapshot (a real write + fsync + rename + fsync per
// node: put --state-root on tmpfs, /dev/shm, for large N) and the same for each new audit
// checkpoint a node takes (at most one per answer), the reports and their HTTP.
// Measured (2-core VM, tools/fleet_bench.py --sim-cost: a fake controller serving one scoped
// body to all, state on /dev/shm), CPU per node per revision: ~150 us with --share-verify,
// ~450 us verifying each signature; against a controller that signs per node (legacy comment)
// ~600 us. What is left with --share-verify is mostly the kernel's (loopback TCP: the sender's
// sendmsg also runs the receiver's softirq; persist's open/write/rename), then JSON and malloc.

#include <sys/resource.h>

#include <utility>  // before Asio: Boost 1.74's awaitable.hpp uses std::exchange

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <limits>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "control/agent/agent.hpp"
#include "control/api/tls_stream.hpp"
#include "control/crypto/minisign.hpp"
#include "control/pki/pki.hpp"
#include "dataplane/match/policy.hpp"
#include "dataplane/match/policy_config.hpp"

namespace agent = sluice::control::agent;
namespace crypto = sluice::control::crypto;
namespace pki = sluice::control::pki;
namespace match = sluice::match;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

// Beast (Boost 1.74) takes header names as its own string_view.
const beast::string_view status_header{agent::status_header_name.data(),
                                       agent::status_header_name.size()};
const beast::string_view status_carry_header{agent::status_carry_header_name.data(),
                                             agent::status_carry_header_name.size()};

namespace {

constexpr auto connect_timeout = 3s;
constexpr auto request_timeout = 10s;  // status posts; fetches get wait + this

double unix_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// stdout, shared by every loop: lines are buffered and written once per turn of the loop that
// wrote the first of them (a flush posted behind the handlers already queued), so 10,000
// events of one revision cost a few writes, not 10,000.
class event_log {
 public:
  void write(const nlohmann::json& j, const asio::any_io_executor& ex) {
    std::lock_guard lock(mutex_);
    buffer_ += j.dump();
    buffer_ += '\n';
    if (flush_posted_) return;
    flush_posted_ = true;
    asio::post(ex, [this] { flush(); });
  }
  void flush() {
    std::lock_guard lock(mutex_);
    flush_posted_ = false;
    if (buffer_.empty()) return;
    std::fwrite(buffer_.data(), 1, buffer_.size(), stdout);
    std::fflush(stdout);
    buffer_.clear();
  }

 private:
  std::mutex mutex_;
  std::string buffer_;
  bool flush_posted_ = false;
};

using window = std::pair<std::int64_t, std::int64_t>;  // [not_before, not_after)

// What a node's dataplane makes of a policy text: a pure function of the text.
struct parsed_policy {
  std::optional<std::uint64_t> revision;  // nullopt: does not parse
  std::string error;
  std::string sha256;
  std::vector<window> windows;
};

// Parses each distinct policy text once (many nodes get identical bytes). Any thread.
class policy_cache {
 public:
  std::shared_ptr<const parsed_policy> get(const std::string& text) {
    std::lock_guard lock(mutex_);
    if (auto it = cache_.find(text); it != cache_.end()) return it->second;
    auto p = std::make_shared<parsed_policy>();
    std::istringstream in(text);
    const match::policy_load_result loaded = match::load_policy(in, {});
    if (!loaded) {
      p->error = loaded.error.text();
    } else {
      p->revision = loaded.spec->revision;
      p->sha256 = match::ruleset_sha256(*loaded.spec);
      p->windows.reserve(loaded.spec->rules.size());
      for (const match::rule_spec& r : loaded.spec->rules)
        p->windows.push_back({r.not_before.value_or(std::numeric_limits<std::int64_t>::min()),
                              r.not_after.value_or(std::numeric_limits<std::int64_t>::max())});
    }
    if (cache_.size() >= 64) cache_.clear();  // revisions come and go; keep it small
    cache_.emplace(text, p);
    return p;
  }

 private:
  std::mutex mutex_;
  std::unordered_map<std::string, std::shared_ptr<const parsed_policy>> cache_;
};

// check_snapshot's byte-only work, shared (see the header comment). Any thread.
class shared_verifier final : public agent::snapshot_verifier {
 public:
  shared_verifier(policy_cache& policies, bool share_signatures)
      : policies_(policies), share_signatures_(share_signatures) {}

  crypto::verify_result verify(const crypto::public_key& key, std::string_view policy,
                               std::string_view signature) override {
    if (!share_signatures_) return crypto::verify(key, policy, signature);
    std::string k(reinterpret_cast<const char*>(key.key.data()), key.key.size());
    k.append(reinterpret_cast<const char*>(key.id.data()), key.id.size());
    k += std::to_string(policy.size()) + ':';
    k += policy;
    k += signature;
    {
      std::lock_guard lock(mutex_);
      if (auto it = verified_.find(k); it != verified_.end()) return it->second;
    }
    crypto::verify_result r = crypto::verify(key, policy, signature);
    std::lock_guard lock(mutex_);
    if (verified_.size() >= 1024) verified_.clear();
    verified_.emplace(std::move(k), r);
    return r;
  }
  std::optional<std::uint64_t> policy_revision(const std::string& policy,
                                               std::string& error) override {
    const std::shared_ptr<const parsed_policy> p = policies_.get(policy);
    if (!p->revision) error = p->error;
    return p->revision;
  }
  // Always shared: every node gets the same few checkpoints, each would otherwise cost every
  // node two Ed25519 verifications whenever the controller's audit head moves.
  sluice::control::audit::checkpoint_check verify_checkpoint(
      const crypto::public_key& key, const sluice::control::audit::checkpoint& c) override {
    std::string k(reinterpret_cast<const char*>(key.key.data()), key.key.size());
    k.append(reinterpret_cast<const char*>(key.id.data()), key.id.size());
    k += sluice::control::audit::checkpoint_json(c);
    {
      std::lock_guard lock(mutex_);
      if (auto it = checkpoints_.find(k); it != checkpoints_.end()) return it->second;
    }
    auto r = sluice::control::audit::verify_checkpoint(key, c);
    std::lock_guard lock(mutex_);
    if (checkpoints_.size() >= 256) checkpoints_.clear();
    checkpoints_.emplace(std::move(k), r);
    return r;
  }

 private:
  policy_cache& policies_;
  bool share_signatures_;
  std::mutex mutex_;
  std::unordered_map<std::string, crypto::verify_result> verified_;
  std::unordered_map<std::string, sluice::control::audit::checkpoint_check> checkpoints_;
};

// The simulated dataplane: parse (shared) and digest, as the real one would before compiling;
// with `report_windows`, also report how many of the rules' windows hold now. Its node's loop
// thread only.
class sim_applier final : public agent::applier {
 public:
  sim_applier(const std::string& node, event_log& log, policy_cache& policies, double started,
              bool report_windows, const std::string& empty_sha256)
      : node_(node),
        log_(log),
        policies_(policies),
        started_(started),
        report_windows_(report_windows) {
    current_.ruleset_sha256 = empty_sha256;
  }
  void bind(asio::any_io_executor ex) { ex_ = std::move(ex); }

  agent::apply_result apply(const std::string& text, std::uint64_t revision) override {
    std::shared_ptr<const parsed_policy> p = policies_.get(text);
    if (!p->revision) return {false, current_.ruleset_sha256, p->error};
    current_ = {*p->revision, p->sha256};
    const double now = unix_seconds();
    log_.write({{"event", "applied"}, {"node", node_}, {"revision", revision},
                {"sha256", current_.ruleset_sha256}, {"at", now}, {"since_start", now - started_}},
               ex_);
    if (report_windows_) {
      policy_ = std::move(p);
      windows_revision_ = revision;
      report_windows();
    }
    return {true, current_.ruleset_sha256, ""};
  }
  agent::applied_policy current() const override { return current_; }

  // Logs an "enforcing" event when the count of rules in force changed since the last one.
  // The dataplane's clock is whole unix seconds, and so is this one.
  void report_windows() {
    if (!policy_) return;
    const double now = unix_seconds();
    const auto now_s = static_cast<std::int64_t>(std::floor(now));
    std::size_t in_force = 0;
    for (const window& w : policy_->windows)
      if (w.first <= now_s && now_s < w.second) ++in_force;
    if (in_force == reported_in_force_) return;
    reported_in_force_ = in_force;
    log_.write({{"event", "enforcing"}, {"node", node_}, {"revision", windows_revision_},
                {"rules_in_force", in_force}, {"at", now}},
               ex_);
  }

 private:
  const std::string& node_;
  event_log& log_;
  policy_cache& policies_;
  double started_;
  bool report_windows_;
  asio::any_io_executor ex_;
  agent::applied_policy current_;
  std::shared_ptr<const parsed_policy> policy_;
  std::uint64_t windows_revision_ = 0;
  std::size_t reported_in_force_ = 0;
};

// The agent wants a transport; a step-driven one never calls it.
class no_transport final : public agent::transport {
 public:
  agent::fetch_result fetch(std::uint64_t, std::chrono::seconds, std::string_view) override {
    agent::fetch_result f;
    f.error = "driven by steps";
    return f;
  }
  agent::post_result post_status(const agent::status_report&) override {
    return {false, "driven by steps"};
  }
  void interrupt() override {}
};

struct controller_url {
  std::string text;  // as given, for errors and agent_state::controller
  bool tls = false;
  std::string host;  // without brackets
  std::string host_header;
  std::vector<tcp::endpoint> endpoints;
};

// "http(s)://HOST[:PORT]", no path; resolved once, here.
std::optional<controller_url> parse_url(const std::string& text, std::string& error) {
  controller_url u;
  u.text = text;
  std::string_view rest = text;
  if (rest.rfind("http://", 0) == 0) {
    rest.remove_prefix(7);
  } else if (rest.rfind("https://", 0) == 0) {
    rest.remove_prefix(8);
    u.tls = true;
  } else {
    error = "controller URL '" + text + "' is not http(s)://HOST[:PORT]";
    return std::nullopt;
  }
  if (rest.empty() || rest.find('/') != std::string_view::npos) {
    error = "controller URL '" + text + "' is not http(s)://HOST[:PORT]";
    return std::nullopt;
  }
  std::string port = u.tls ? "443" : "80";
  std::string_view host = rest;
  if (rest.front() == '[') {
    const std::size_t close = rest.find(']');
    if (close == std::string_view::npos) {
      error = "controller URL '" + text + "': unclosed [";
      return std::nullopt;
    }
    host = rest.substr(1, close - 1);
    if (close + 1 < rest.size()) {
      if (rest[close + 1] != ':') {
        error = "controller URL '" + text + "' is not http(s)://HOST[:PORT]";
        return std::nullopt;
      }
      port = std::string(rest.substr(close + 2));
    }
  } else if (const std::size_t colon = rest.rfind(':'); colon != std::string_view::npos) {
    host = rest.substr(0, colon);
    port = std::string(rest.substr(colon + 1));
  }
  u.host = std::string(host);
  u.host_header = std::string(rest);
  asio::io_context ioc;
  tcp::resolver resolver(ioc);
  boost::system::error_code ec;
  const auto results = resolver.resolve(u.host, port, ec);
  if (ec) {
    error = "controller URL '" + text + "': " + ec.message();
    return std::nullopt;
  }
  for (const auto& r : results) u.endpoints.push_back(r.endpoint());
  return u;
}

// "401 unauthorized: unknown token" from an error body of the API, else the status alone (as
// http_transport says it).
std::string describe_answer(const http::response<http::string_body>& res) {
  std::string text = std::to_string(res.result_int());
  const nlohmann::json j = nlohmann::json::parse(res.body(), nullptr, false);
  if (j.is_object()) {
    if (auto e = j.find("error"); e != j.end() && e->is_string()) text += " " + e->get<std::string>();
    if (auto m = j.find("message"); m != j.end() && m->is_string())
      text += ": " + m->get<std::string>();
  }
  return text;
}

struct sim_config {
  std::vector<controller_url> urls;
  std::string authorization;  // "Bearer TOKEN", "" for none
  bool report_acks = false;
  std::unique_ptr<ssl::context> tls;  // when any URL is https
};

struct sim_node {
  std::string id;
  agent::label_map labels;
  std::string labels_header;
  std::unique_ptr<sim_applier> applier;
  std::unique_ptr<agent::agent> core;
  // Its client certificate (--node-ca-cert/--node-ca-key), presented on every TLS connection.
  std::optional<pki::private_key> key;
  std::optional<pki::certificate> cert;
  // The connection: one of the two, to urls[connected] (npos: none).
  std::optional<beast::tcp_stream> plain;
  std::optional<sluice::control::api::tls_stream> secure;
  std::size_t connected = std::string::npos;
  std::size_t current = 0;  // the controller that answered last
  beast::flat_buffer buffer;
  std::optional<asio::steady_timer> timer;  // ramp and backoff
  std::string carry;  // the X-Sluice-Status of the poll in flight ("" when none)
};

// One event loop and the nodes it drives.
class shard {
 public:
  shard(const sim_config& config, event_log& log) : config_(config), log_(log) {}
  asio::io_context& ioc() { return ioc_; }
  void add(sim_node& n) { nodes_.push_back(&n); }

  void spawn(std::chrono::milliseconds ramp, std::size_t total, std::size_t first_index,
             std::size_t stride, bool watch_windows) {
    for (std::size_t k = 0; k < nodes_.size(); ++k) {
      sim_node& n = *nodes_[k];
      n.timer.emplace(ioc_);
      n.applier->bind(ioc_.get_executor());
      const std::size_t index = first_index + k * stride;
      const auto delay = std::chrono::milliseconds(
          total > 1 ? ramp.count() * static_cast<std::int64_t>(index) /
                          static_cast<std::int64_t>(total)
                    : 0);
      asio::co_spawn(ioc_, run_node(n, delay), asio::detached);
    }
    if (watch_windows) {
      windows_timer_.emplace(ioc_);
      asio::co_spawn(ioc_, watch(), asio::detached);
    }
  }

  // From any thread: every node ends soon (its connection closed, its timer cancelled).
  void stop() {
    asio::post(ioc_, [this] {
      stopping_ = true;
      for (sim_node* n : nodes_) {
        if (n->timer) n->timer->cancel();
        shut(*n);
      }
      if (windows_timer_) windows_timer_->cancel();
    });
  }

 private:
  using response = http::response<http::string_body>;

  // Closes the node's socket, which ends its pending operations (operation_aborted), but keeps
  // the stream: a pending read still uses it until its handler has run, so only the node's own
  // coroutine, once that handler returned, may destroy it (close()).
  static void shut(sim_node& n) {
    boost::system::error_code ec;
    if (n.plain) n.plain->socket().close(ec);
    if (n.secure) n.secure->socket().close(ec);
  }

  static void close(sim_node& n) {
    boost::system::error_code ec;
    if (n.plain) n.plain->socket().close(ec);
    if (n.secure) n.secure->socket().close(ec);
    n.plain.reset();
    n.secure.reset();
    n.connected = std::string::npos;
  }

  static void expire_after(sim_node& n, std::chrono::steady_clock::duration d) {
    if (n.plain) n.plain->expires_after(d);
    if (n.secure) n.secure->expires_after(d);
  }

  // TCP (timed by a beast::tcp_stream), then for https:// the TLS handshake on that socket.
  asio::awaitable<std::string> connect(sim_node& n, std::size_t i) {
    close(n);
    const controller_url& u = config_.urls[i];
    boost::system::error_code ec;
    n.plain.emplace(ioc_);
    n.plain->expires_after(connect_timeout);
    co_await n.plain->async_connect(u.endpoints, asio::redirect_error(asio::use_awaitable, ec));
    if (!ec && u.tls) {
      n.plain->expires_never();
      auto socket = n.plain->release_socket();
      n.plain.reset();
      n.secure.emplace(std::move(socket), config_.tls->native_handle());
      SSL* ssl = n.secure->native_handle();
      // SNI, and the certificate must name the host we asked for (an address: its IP SAN).
      boost::system::error_code not_ip;
      (void)asio::ip::make_address(u.host, not_ip);
      if (!SSL_set_tlsext_host_name(ssl, u.host.c_str()) ||
          (not_ip ? SSL_set1_host(ssl, u.host.c_str())
                  : X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), u.host.c_str())) != 1) {
        close(n);
        co_return "TLS: cannot set the server name";
      }
      SSL_set_verify(ssl, SSL_VERIFY_PEER, nullptr);
      if (n.cert && (SSL_use_certificate(ssl, n.cert->native()) != 1 ||
                     SSL_use_PrivateKey(ssl, n.key->native()) != 1)) {
        close(n);
        co_return "TLS: cannot use the node's certificate";
      }
      n.secure->expires_after(connect_timeout);
      co_await n.secure->async_handshake(sluice::control::api::tls_stream::role::client,
                                         asio::redirect_error(asio::use_awaitable, ec));
    }
    if (ec) {
      close(n);
      co_return ec == beast::error::timeout ? std::string("connection timed out")
                                            : (u.tls ? "TLS/connect: " : "") + ec.message();
    }
    n.connected = i;
    n.buffer.clear();
    co_return "";
  }

  template <class Stream>
  asio::awaitable<boost::system::error_code> write_read(Stream& s, sim_node& n,
                                                        http::request<http::string_body>& req,
                                                        response& res) {
    boost::system::error_code ec;
    co_await http::async_write(s, req, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return ec;
    co_await http::async_read(s, n.buffer, res, asio::redirect_error(asio::use_awaitable, ec));
    co_return ec;
  }

  // One request to urls[i] on the node's connection (opened if needed). "" and `res`, or why
  // it failed.
  asio::awaitable<std::string> exchange(sim_node& n, std::size_t i,
                                        http::request<http::string_body>& req,
                                        std::chrono::steady_clock::duration timeout,
                                        response& res) {
    const controller_url& u = config_.urls[i];
    req.set(http::field::host, u.host_header);
    for (int attempt = 0; attempt < 2; ++attempt) {
      const bool reused = n.connected == i;
      if (!reused) {
        if (std::string e = co_await connect(n, i); !e.empty()) co_return e;
      }
      if (stopping_) co_return "interrupted";
      res = {};
      expire_after(n, timeout);
      const boost::system::error_code ec =
          n.plain ? co_await write_read(*n.plain, n, req, res)
                  : co_await write_read(*n.secure, n, req, res);
      if (!ec) {
        if (!res.keep_alive()) close(n);
        co_return "";
      }
      close(n);
      if (stopping_) co_return "interrupted";
      // A kept-alive connection the server closed while idle: once more on a fresh one.
      if (reused && ec != beast::error::timeout) continue;
      co_return ec == beast::error::timeout ? std::string("read timed out") : ec.message();
    }
    co_return "connection closed";
  }

  // http_transport's failover walk: each controller in turn from the one that answered last,
  // until `accept` takes an answer. "" then, else why every one failed.
  asio::awaitable<std::string> try_each(sim_node& n, http::request<http::string_body>& req,
                                        std::chrono::steady_clock::duration timeout,
                                        const std::function<bool(unsigned)>& accept,
                                        response& res, std::string& last_url) {
    std::string errors;
    const std::size_t count = config_.urls.size();
    for (std::size_t attempt = 0; attempt < count; ++attempt) {
      if (stopping_) co_return "interrupted";
      const std::size_t i = (n.current + attempt) % count;
      last_url = config_.urls[i].text;
      const std::string e = co_await exchange(n, i, req, timeout, res);
      if (e.empty() && accept(res.result_int())) {
        n.current = i;
        co_return "";
      }
      if (!errors.empty()) errors += "; ";
      errors += config_.urls[i].text + ": " + (e.empty() ? describe_answer(res) : e);
    }
    n.current = (n.current + 1) % count;  // start with another one next time
    co_return stopping_ ? std::string("interrupted") : errors;
  }

  http::request<http::string_body> request(const sim_node& n, http::verb verb,
                                           std::string target) {
    http::request<http::string_body> req{verb, target, 11};
    if (!config_.authorization.empty()) req.set(http::field::authorization, config_.authorization);
    req.set("X-Sluice-Labels", n.labels_header);
    req.keep_alive(true);
    return req;
  }

  asio::awaitable<agent::fetch_result> fetch(sim_node& n, std::uint64_t held,
                                             std::chrono::seconds wait, const std::string& status) {
    agent::fetch_result out;
    auto req = request(n, http::verb::get,
                       "/v1/nodes/" + n.id + "/snapshot?wait=" + std::to_string(wait.count()));
    if (held != 0) req.set(http::field::if_none_match, "\"" + std::to_string(held) + "\"");
    if (!status.empty()) req.set(status_header, status);
    response res;
    out.error = co_await try_each(
        n, req, wait + request_timeout,
        [](unsigned status) { return status == 200 || status == 304; }, res, out.controller);
    if (out.error.empty()) {
      out.status =
          res.result_int() == 200 ? agent::fetch_status::snapshot : agent::fetch_status::not_modified;
      out.body = std::move(res.body());
      if (const auto h = res.find("X-Sluice-Audit-Checkpoint"); h != res.end())
        out.checkpoint = std::string(h->value());
      if (const auto h = res.find(status_carry_header); h != res.end())
        out.status_carry = h->value() == "yes";
    }
    co_return out;
  }

  asio::awaitable<agent::post_result> post_status(sim_node& n, const agent::status_report& r) {
    auto req = request(n, http::verb::post, "/v1/nodes/" + n.id + "/status");
    req.set(http::field::content_type, "application/json");
    req.body() = agent::status_json(r);
    req.prepare_payload();
    response res;
    std::string last_url;
    agent::post_result out;
    out.error = co_await try_each(
        n, req, request_timeout, [](unsigned status) { return status >= 200 && status < 300; },
        res, last_url);
    out.ok = out.error.empty();
    co_return out;
  }

  // Logs "acked" when the controller took an ACK (--report-acks).
  void log_taken(const sim_node& n, const agent::status_report& r) {
    if (config_.report_acks && r.ack && r.offered != 0)
      log_.write({{"event", "acked"}, {"node", n.id}, {"revision", r.offered},
                  {"at", unix_seconds()}},
                 ioc_.get_executor());
  }

  // Posts `r` and tells the agent.
  asio::awaitable<bool> report(sim_node& n, const agent::status_report& r) {
    const agent::post_result p = co_await post_status(n, r);
    if (stopping_) co_return false;
    const bool ok = n.core->report_sent(r, p);
    if (ok) log_taken(n, r);
    co_return ok;
  }

  // agent::run()'s loop, over the steps (agent.hpp), with non-blocking requests.
  asio::awaitable<void> run_node(sim_node& n, std::chrono::milliseconds delay) {
    boost::system::error_code ec;
    if (delay.count() > 0) {
      n.timer->expires_after(delay);
      co_await n.timer->async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
    if (stopping_) co_return;
    n.core->start();
    while (!stopping_) {
      agent::poll_outcome outcome = agent::poll_outcome::report_failed;
      bool poll = true;
      const std::optional<agent::agent::due_report> due = n.core->report_due();
      if (due && due->carry.empty()) {
        const bool sent = co_await report(n, due->report);
        if (stopping_) break;
        poll = sent || !due->retry;
      }
      if (poll) {
        // Not a temporary in the co_await expression: GCC 12 destroys such a conditional's
        // temporary wrongly across the suspension (free(): invalid pointer).
        n.carry.clear();
        if (due) n.carry = due->carry;
        const agent::fetch_result f =
            co_await fetch(n, n.core->held_revision(), n.core->poll_wait(), n.carry);
        if (stopping_) break;
        const agent::agent::fetch_handling h = n.core->handle_fetch(f);
        if (h.taken) log_taken(n, *h.taken);
        if (h.report) (void)co_await report(n, *h.report);
        if (stopping_) break;
        outcome = h.outcome;
      }
      const std::chrono::milliseconds backoff = n.core->backoff_after(outcome);
      if (backoff.count() > 0) {
        n.timer->expires_after(backoff);
        co_await n.timer->async_wait(asio::redirect_error(asio::use_awaitable, ec));
      }
    }
    close(n);
  }

  // One timer for every node's windows: a block's end must show without any apply.
  asio::awaitable<void> watch() {
    boost::system::error_code ec;
    while (!stopping_) {
      for (sim_node* n : nodes_) n->applier->report_windows();
      windows_timer_->expires_after(100ms);
      co_await windows_timer_->async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
  }

  const sim_config& config_;
  event_log& log_;
  asio::io_context ioc_{1};
  std::vector<sim_node*> nodes_;
  std::optional<asio::steady_timer> windows_timer_;
  bool stopping_ = false;  // this loop's thread only
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
  unsigned backoff_max_ms = 30000, threads = 1;
  std::optional<unsigned> ramp_ms;
  bool report_windows_flag = false, report_acks_flag = false, share_verify = false;
  std::string prefix = "sim-", labels_text, key_file, token_file, state_root, ca_file;
  std::string node_ca_cert, node_ca_key, inventory_out;
  cli.add_option("--controller", controllers, "controller URL; repeat for replicas")->take_all();
  cli.add_option("--nodes", nodes, "simulated nodes")->check(CLI::Range(1u, 20000u));
  cli.add_option("--node-prefix", prefix, "node id prefix (ids are PREFIX0001...)");
  cli.add_option("--labels", labels_text, "labels of every node, k=v,k=v");
  cli.add_option("--canary", canary, "the first N nodes also get group=canary");
  cli.add_option("--controller-key", key_file, "controller's minisign public key")
      ->check(CLI::ExistingFile);
  cli.add_option("--node-token-file", token_file,
                 "bearer token (role node) for every node (optional with --node-ca-key)")
      ->check(CLI::ExistingFile);
  cli.add_option("--node-ca-cert", node_ca_cert,
                 "test/bench: mint each node a client certificate from this CA (with --node-ca-key)")
      ->check(CLI::ExistingFile);
  cli.add_option("--node-ca-key", node_ca_key, "the key of --node-ca-cert")->check(CLI::ExistingFile);
  cli.add_option("--write-inventory", inventory_out,
                 "write the simulated nodes as a YAML list for controld's nodes_file:, and exit");
  cli.add_option("--state-root", state_root, "state directories go to STATE_ROOT/ID");
  cli.add_option("--wait", wait, "long-poll wait, seconds")->check(CLI::Range(1u, 60u));
  cli.add_option("--status-interval", status_interval, "periodic status, seconds")
      ->check(CLI::Range(1u, 3600u));
  cli.add_option("--stack-kib", stack_kib, "ignored (nodes have no thread of their own now)")
      ->check(CLI::Range(64u, 65536u));
  cli.add_option("--backoff-max-ms", backoff_max_ms,
                 "cap of the retry backoff after failed fetches, milliseconds")
      ->check(CLI::Range(1000u, 3600000u));
  cli.add_option("--threads", threads, "event loops (threads), the nodes dealt round-robin")
      ->check(CLI::Range(1u, 64u));
  cli.add_option("--ramp-ms", ramp_ms,
                 "spread the nodes' first connects over this long (default nodes/5 ms)")
      ->check(CLI::Range(0u, 600000u));
  cli.add_option("--ca-file", ca_file, "CA certificates (PEM) for https:// controllers")
      ->check(CLI::ExistingFile);
  cli.add_flag("--share-verify", share_verify,
               "verify each distinct (policy, signature) once for every node that gets it");
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
  // The nodes' ids and labels: what they are simulated with, and what --write-inventory lists.
  std::vector<std::pair<std::string, agent::label_map>> identities;
  for (unsigned i = 0; i < nodes; ++i) {
    char index[16];
    std::snprintf(index, sizeof index, "%04u", i + 1);
    agent::label_map l = *labels;
    if (i < canary) l["group"] = "canary";
    identities.emplace_back(prefix + index, std::move(l));
    if (!agent::valid_node_id(identities.back().first)) {
      std::cerr << "sluice-fleet-sim: invalid node id '" << identities.back().first << "'\n";
      return 2;
    }
  }
  if (!inventory_out.empty()) {
    // JSON is YAML: controld reads it as such. One node per line.
    std::ofstream out(inventory_out, std::ios::trunc);
    out << "[\n";
    for (std::size_t i = 0; i < identities.size(); ++i)
      out << (i ? ",\n" : "") << nlohmann::json{{"id", identities[i].first}, {"labels", identities[i].second}}.dump();
    out << "\n]\n";
    if (!out) {
      std::cerr << "sluice-fleet-sim: cannot write " << inventory_out << '\n';
      return 1;
    }
    return 0;
  }
  if (controllers.empty() || key_file.empty() || state_root.empty()) {
    std::cerr << "sluice-fleet-sim: --controller, --controller-key and --state-root are required\n";
    return 2;
  }
  if (token_file.empty() && node_ca_key.empty()) {
    std::cerr << "sluice-fleet-sim: the nodes need a credential: --node-ca-cert/--node-ca-key or "
                 "--node-token-file\n";
    return 2;
  }
  if (node_ca_cert.empty() != node_ca_key.empty()) {
    std::cerr << "sluice-fleet-sim: --node-ca-cert and --node-ca-key go together\n";
    return 2;
  }
  const std::optional<std::string> key_text = read_file(key_file);
  const std::optional<crypto::public_key> key =
      key_text ? crypto::parse_public_key(*key_text, &error) : std::nullopt;
  if (!key) {
    std::cerr << "sluice-fleet-sim: --controller-key: " << error << '\n';
    return 2;
  }
  std::optional<std::string> token = token_file.empty() ? std::string() : read_file(token_file);
  if (!token) {
    std::cerr << "sluice-fleet-sim: cannot read " << token_file << '\n';
    return 2;
  }
  while (!token->empty() && std::isspace(static_cast<unsigned char>(token->back()))) token->pop_back();
  std::optional<pki::certificate_authority> node_ca;
  if (!node_ca_cert.empty()) {
    const auto cert_text = read_file(node_ca_cert);
    const auto key_text = read_file(node_ca_key);
    if (cert_text && key_text) node_ca = pki::certificate_authority::load(*cert_text, *key_text, error);
    if (!node_ca) {
      std::cerr << "sluice-fleet-sim: --node-ca-cert/--node-ca-key: "
                << (cert_text && key_text ? error : "cannot read") << '\n';
      return 2;
    }
    for (const std::string& url : controllers)
      if (url.rfind("https://", 0) != 0) {
        std::cerr << "sluice-fleet-sim: client certificates are presented over TLS: '" << url
                  << "' is not https://\n";
        return 2;
      }
  }
  sim_config config;
  config.report_acks = report_acks_flag;
  if (!token->empty()) config.authorization = "Bearer " + *token;
  for (const std::string& text : controllers) {
    std::optional<controller_url> u = parse_url(text, error);
    if (!u) {
      std::cerr << "sluice-fleet-sim: " << error << '\n';
      return 2;
    }
    if (u->tls && !config.tls) {
      config.tls = std::make_unique<ssl::context>(ssl::context::tls_client);
      boost::system::error_code ec;
      if (ca_file.empty()) {
        config.tls->set_default_verify_paths(ec);
      } else {
        config.tls->load_verify_file(ca_file, ec);
      }
      if (ec) {
        std::cerr << "sluice-fleet-sim: CA certificates: " << ec.message() << '\n';
        return 2;
      }
      config.tls->set_verify_mode(ssl::verify_peer);
      sluice::control::api::tls_stream::prepare_context(config.tls->native_handle());
    }
    config.urls.push_back(std::move(*u));
  }

  // One socket per node, plus a few for the next connection while one closes.
  rlimit nofile{};
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0) {
    if (nofile.rlim_cur < nofile.rlim_max) {
      nofile.rlim_cur = nofile.rlim_max;
      (void)setrlimit(RLIMIT_NOFILE, &nofile);
    }
    if (nofile.rlim_cur < nodes + 64u)
      std::cerr << "sluice-fleet-sim: warning: RLIMIT_NOFILE " << nofile.rlim_cur << " < "
                << nodes + 64u << " (one socket per node)\n";
  }
  // The loops' threads inherit this mask; the signals are taken by a signal_set on loop 0.
  std::signal(SIGPIPE, SIG_IGN);

  event_log log;
  policy_cache policies;
  shared_verifier verifier(policies, share_verify);
  no_transport unused;
  agent::system_clock clock;
  const std::string empty_sha256 = match::ruleset_sha256(match::policy_spec{});
  const double started = unix_seconds();
  std::vector<std::unique_ptr<shard>> shards;
  for (unsigned t = 0; t < threads; ++t) shards.push_back(std::make_unique<shard>(config, log));
  std::vector<sim_node> fleet(nodes);
  if (node_ca) {
    // Keys and certificates on every core (each is independent work): 10,000 in seconds.
    const double minting = unix_seconds();
    const unsigned workers = std::max(1u, std::min(8u, std::thread::hardware_concurrency()));
    std::vector<std::thread> minters;
    std::vector<std::string> errors(workers);
    for (unsigned w = 0; w < workers; ++w)
      minters.emplace_back([&, w] {
        for (unsigned i = w; i < nodes && errors[w].empty(); i += workers) {
          sim_node& n = fleet[i];
          n.key = pki::private_key::generate_ec(errors[w]);
          if (n.key) n.cert = node_ca->issue(*n.key, identities[i].first, 1, errors[w]);
          if (!n.cert && errors[w].empty()) errors[w] = "cannot mint";
          if (!n.cert) errors[w] = "node " + identities[i].first + ": " + errors[w];
        }
      });
    for (std::thread& t : minters) t.join();
    for (const std::string& e : errors)
      if (!e.empty()) {
        std::cerr << "sluice-fleet-sim: " << e << '\n';
        return 1;
      }
    std::cerr << "sluice-fleet-sim: minted " << nodes << " node certificates in "
              << unix_seconds() - minting << " s on " << workers << " threads\n";
  }
  for (unsigned i = 0; i < nodes; ++i) {
    sim_node& n = fleet[i];
    n.id = identities[i].first;
    n.labels = identities[i].second;
    n.labels_header = agent::format_labels(n.labels);
    const std::filesystem::path dir = std::filesystem::path(state_root) / n.id;
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) {
      std::cerr << "sluice-fleet-sim: " << dir.string() << ": " << ec.message() << '\n';
      return 1;
    }
    n.applier = std::make_unique<sim_applier>(n.id, log, policies, started, report_windows_flag,
                                              empty_sha256);
    agent::agent_config ac;
    ac.node_id = n.id;
    ac.labels = n.labels;
    ac.controller_key = *key;
    ac.state_dir = dir;
    ac.wait = std::chrono::seconds(wait);
    ac.status_interval = std::chrono::seconds(status_interval);
    ac.backoff_max = std::chrono::milliseconds(backoff_max_ms);
    ac.verifier = &verifier;
    n.core = std::make_unique<agent::agent>(std::move(ac), unused, *n.applier, clock);
    shards[i % threads]->add(n);
  }
  const auto ramp = std::chrono::milliseconds(ramp_ms ? *ramp_ms : nodes / 5);
  for (unsigned t = 0; t < threads; ++t)
    shards[t]->spawn(ramp, nodes, t, threads, report_windows_flag);
  log.write({{"event", "started"}, {"nodes", nodes}, {"at", started}},
            shards[0]->ioc().get_executor());

  asio::signal_set signals(shards[0]->ioc(), SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int) {
    if (ec) return;
    for (auto& s : shards) s->stop();
  });
  std::vector<std::thread> loops;
  for (unsigned t = 1; t < threads; ++t) loops.emplace_back([&, t] { shards[t]->ioc().run(); });
  // Loop 0 ends when its nodes have ended and the signal was taken.
  shards[0]->ioc().run();
  for (std::thread& l : loops) l.join();
  log.flush();

  nlohmann::json summary = nlohmann::json::array();
  for (sim_node& n : fleet) {
    const agent::agent_state s = n.core->state();
    summary.push_back({{"node", n.id}, {"revision", s.applied_revision}, {"nacks", s.nacks},
                       {"fetch_failures", s.fetch_failures},
                       {"status_failures", s.status_failures}});
  }
  const nlohmann::json stopped = {{"event", "stopped"}, {"at", unix_seconds()},
                                  {"cpu_s", cpu_seconds()}, {"nodes", summary}};
  const std::string line = stopped.dump() + "\n";
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fflush(stdout);
  return 0;
}
