// control/api/http_server on loopback: routing, keep-alive, answers from another thread and
// later, a dropped request answered 500, the input bounds (413, 431, 400, max_connections),
// admission on the head before any body is read (issue 14), deadlines against slow clients,
// the clean stop, and TLS (versions, suites, client certificates, reload). Clients: cpp-httplib
// for well-formed requests, raw sockets (and raw OpenSSL) for the rest.
#include "control/api/http_server.hpp"

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "http_test_support.hpp"

using namespace sluice::control::api;
using namespace sluice_test;

namespace {

response text(int status, std::string body) {
  response r;
  r.status = status;
  r.set_body(std::move(body), "text/plain");
  return r;
}

void demo_routes(http_server& s) {
  s.route("GET", "/v1/things/{a}/{b}", run_on::io, [](const request& q, const responder& out) {
    out.send(text(200, q.matches.at(0) + "|" + q.matches.at(1) + "|" + q.param("x") + "|" +
                           q.header("x-TEST")));
  });
  s.route("POST", "/v1/echo", run_on::blocking, [](const request& q, const responder& out) {
    out.send(text(201, q.body));
  });
  // Answers 50 ms later from another thread, as a long poll does.
  s.route("GET", "/v1/later", run_on::io, [](const request&, const responder& out) {
    std::thread([out] {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      out.send(text(200, "later"));
    }).detach();
  });
  s.route("GET", "/v1/dropped", run_on::io, [](const request&, const responder&) {});
  // Larger than a TLS record and a socket buffer: written in several rounds.
  s.route("GET", "/v1/big", run_on::blocking, [](const request&, const responder& out) {
    std::string body(300000, 'b');
    body.back() = 'e';
    out.send(text(200, std::move(body)));
  });
  s.route("GET", "/v1/throws", run_on::blocking,
          [](const request&, const responder&) { throw std::runtime_error("boom"); });
}

}  // namespace

TEST_CASE("routes: {name} segments, query, headers any case; 404, 405; keep-alive") {
  running_server s(loopback(), demo_routes);
  httplib::Client c("127.0.0.1", s.port());
  c.set_keep_alive(true);
  auto r = c.Get("/v1/things/one/two%20b?x=a%2Cb&y", {{"X-Test", "hdr"}});
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->body == "one|two b|a,b|hdr");
  CHECK(r->get_header_value("Content-Type") == "text/plain");
  auto e = c.Post("/v1/echo", "payload", "text/plain");
  REQUIRE(e);
  CHECK(e->status == 201);
  CHECK(e->body == "payload");
  CHECK(s.server.counters().connections_accepted.load() == 1);  // both on one connection

  CHECK(c.Get("/v1/things/one")->status == 404);
  CHECK(c.Get("/v1/things//two")->status == 404);  // an empty segment is no match
  CHECK(c.Post("/v1/things/a/b", "", "text/plain")->status == 405);
  CHECK(c.Get("/v1/later")->body == "later");
  CHECK(c.Get("/v1/dropped")->status == 500);  // dropped unanswered: 500, the connection lives
  CHECK(c.Get("/v1/throws")->status == 500);
  CHECK(c.Get("/v1/things/a/b")->status == 200);
  auto big = c.Get("/v1/big");
  REQUIRE(big);
  CHECK(big->body.size() == 300000);
  CHECK(big->body.back() == 'e');
}

TEST_CASE("bounds: body and header limits, malformed requests, too many connections") {
  server_options o = loopback();
  o.max_body_bytes = 1024;
  o.max_header_bytes = 2048;
  o.max_connections = 2;
  running_server s(o, demo_routes);

  const std::string big(2000, 'x');
  const std::string over_body = raw_exchange(
      s.port(), "POST /v1/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2000\r\n\r\n" + big);
  CHECK(over_body.rfind("HTTP/1.1 413 ", 0) == 0);
  const std::string over_head = raw_exchange(
      s.port(), "GET /v1/things/a/b HTTP/1.1\r\nHost: t\r\nX-Big: " + big + big + "\r\n\r\n");
  CHECK(over_head.rfind("HTTP/1.1 431 ", 0) == 0);
  const std::string garbage = raw_exchange(s.port(), "NOT HTTP AT ALL\r\n\r\n");
  CHECK(garbage.rfind("HTTP/1.1 400 ", 0) == 0);
  CHECK(s.server.counters().requests_refused.load() == 3);

  // Two connections held open; the third is closed without an answer.
  httplib::Client a("127.0.0.1", s.port()), b("127.0.0.1", s.port());
  a.set_keep_alive(true);
  b.set_keep_alive(true);
  REQUIRE(a.Get("/v1/things/a/b"));
  REQUIRE(b.Get("/v1/things/a/b"));
  CHECK(raw_exchange(s.port(), "GET /v1/things/a/b HTTP/1.1\r\nHost: t\r\n\r\n").empty());
  CHECK(s.server.counters().connections_refused.load() >= 1);
  CHECK(s.server.counters().connections_open.load() == 2);
}

TEST_CASE("TLS: the same routes over TLS, verified against the server's certificate") {
  char tmpl[] = "/tmp/sluice-tls-XXXXXX";
  const std::filesystem::path dir = ::mkdtemp(tmpl);
  const std::string cmd = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
                          "-days 1 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 "
                          "-keyout " + (dir / "k.pem").string() + " -out " +
                          (dir / "c.pem").string() + " >/dev/null 2>&1";
  if (std::system(cmd.c_str()) != 0) {
    MESSAGE("openssl not available: TLS case skipped");
    return;
  }
  server_options o = loopback();
  o.tls_cert = dir / "c.pem";
  o.tls_key = dir / "k.pem";
  running_server s(o, demo_routes);
  httplib::SSLClient c("127.0.0.1", s.port());
  c.set_ca_cert_path((dir / "c.pem").c_str());
  c.enable_server_certificate_verification(true);
  auto r = c.Get("/v1/things/x/y?x=1");
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->body == "x|y|1|");
  // A body of many TLS records (a gather write of head and body once stalled here).
  c.set_read_timeout(5, 0);
  auto big = c.Get("/v1/big");
  REQUIRE(big);
  CHECK(big->body.size() == 300000);
  CHECK(big->body.back() == 'e');
  // Plain HTTP to the TLS port gets no answer.
  CHECK(raw_exchange(s.port(), "GET /v1/things/a/b HTTP/1.1\r\nHost: t\r\n\r\n").find("200") ==
        std::string::npos);
  std::filesystem::remove_all(dir);

  server_options bad = loopback();
  bad.tls_cert = dir / "missing.pem";
  bad.tls_key = dir / "missing.pem";
  CHECK_THROWS_AS(http_server{bad}, std::runtime_error);
}

// ---- issue 14: admission on the head, deadlines, the clean stop, TLS -----------------------

namespace {

// Admitted with a 1024-byte body limit and principal "alice" when X-Key is "ok"; else 401.
struct guarded {
  std::atomic<int> handled{0};
  void operator()(http_server& s) {
    s.route(
        "POST", "/v1/guarded", run_on::blocking,
        [](const request& q) {
          if (q.header("X-Key") != "ok")
            return admission::refuse(refusal::unauthenticated, error_response(401, "unauthorized", "no"));
          return admission::admit(1024, std::string("alice"));
        },
        [this](const request& q, const responder& out) {
          ++handled;
          out.send(text(201, std::any_cast<std::string>(q.admitted) + "|" + std::to_string(q.body.size()) +
                                 "|" + q.remote_address));
        });
    s.route("GET", "/v1/things/{a}/{b}", run_on::io, [](const request& q, const responder& out) {
      out.send(text(200, q.matches.at(0)));
    });
  }
};

}  // namespace

TEST_CASE("admission: refused on the head, a 1 GB body never read; over the limit 413 unread") {
  guarded g;
  running_server s(loopback(), [&g](http_server& srv) { g(srv); });
  const std::size_t rss0 = rss_bytes();

  for (const bool authorised : {false, true}) {
    CAPTURE(authorised);
    const int fd = connect_to(s.port());
    REQUIRE(fd >= 0);
    const auto t0 = clk::now();
    REQUIRE(send_all(fd, std::string("POST /v1/guarded HTTP/1.1\r\nHost: t\r\n") +
                             (authorised ? "X-Key: ok\r\n" : "") + "Content-Length: 1073741824\r\n\r\n"));
    // The answer comes before a byte of the body is sent.
    const std::string answer = recv_until(fd, "\r\n\r\n");
    CHECK(answer.rfind(authorised ? "HTTP/1.1 413 " : "HTTP/1.1 401 ", 0) == 0);
    CHECK(answer.find("Connection: close") != std::string::npos);
    CHECK(ms_since(t0) < 1000);
    // Then the client tries to send its 1 GB: the server drains a little and closes, so the
    // sender fails long before (kernel buffers on both ends are a few MB).
    const std::string chunk(64 * 1024, 'x');
    std::size_t sent = 0;
    while (sent < (std::size_t{1} << 30)) {
      const ssize_t n = ::send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL);
      if (n <= 0) break;
      sent += static_cast<std::size_t>(n);
    }
    ::close(fd);
    MESSAGE("bytes the client got out before the close: " << sent);
    CHECK(sent < (std::size_t{64} << 20));
  }
  CHECK(g.handled.load() == 0);
  CHECK(s.server.counters().refused_by(refusal::unauthenticated) == 1);
  CHECK(s.server.counters().refused_by(refusal::too_large) == 1);
  CHECK(rss_bytes() < rss0 + (std::size_t{32} << 20));

  // A chunked body is cut at the limit (1024): 413 after the third 512-byte chunk.
  {
    const int fd = connect_to(s.port());
    REQUIRE(fd >= 0);
    std::string req = "POST /v1/guarded HTTP/1.1\r\nHost: t\r\nX-Key: ok\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (int i = 0; i < 3; ++i) req += "200\r\n" + std::string(512, 'c') + "\r\n";
    REQUIRE(send_all(fd, req));
    CHECK(recv_until(fd, "\r\n\r\n").rfind("HTTP/1.1 413 ", 0) == 0);
    ::close(fd);
  }
  CHECK(s.server.counters().refused_by(refusal::too_large) == 2);
  CHECK(g.handled.load() == 0);

  // Within the limit: the handler has the body and the admitted principal.
  httplib::Client c("127.0.0.1", s.port());
  auto r = c.Post("/v1/guarded", {{"X-Key", "ok"}}, std::string(1000, 'b'), "text/plain");
  REQUIRE(r);
  CHECK(r->status == 201);
  CHECK(r->body == "alice|1000|127.0.0.1");
  auto chunked = raw_exchange(s.port(),
                              "POST /v1/guarded HTTP/1.1\r\nHost: t\r\nX-Key: ok\r\nConnection: close\r\n"
                              "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
  CHECK(chunked.rfind("HTTP/1.1 201 ", 0) == 0);
  CHECK(chunked.find("alice|3|") != std::string::npos);

  // Expect: 100-continue is answered only once admitted.
  {
    const int fd = connect_to(s.port());
    REQUIRE(send_all(fd, "POST /v1/guarded HTTP/1.1\r\nHost: t\r\nX-Key: ok\r\nExpect: 100-continue\r\n"
                         "Content-Length: 5\r\n\r\n"));
    CHECK(recv_until(fd, "\r\n\r\n") == "HTTP/1.1 100 Continue\r\n\r\n");
    REQUIRE(send_all(fd, "hello"));
    CHECK(recv_until(fd, "alice|5").find("HTTP/1.1 201 ") == 0);
    ::close(fd);
    const std::string refused = raw_exchange(
        s.port(), "POST /v1/guarded HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    CHECK(refused.rfind("HTTP/1.1 401 ", 0) == 0);
  }
  // No route: 404 without reading the body; a GET route's default limit (no admission) holds.
  CHECK(raw_exchange(s.port(), "POST /v1/nothing HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000000\r\n\r\n")
            .rfind("HTTP/1.1 404 ", 0) == 0);
  CHECK(s.server.counters().refused_by(refusal::not_found) == 1);
  CHECK(g.handled.load() == 3);  // the three admitted within the limit
}

TEST_CASE("deadlines: a slowloris head is cut at header_timeout while others are served") {
  server_options o = loopback();
  o.header_timeout = std::chrono::milliseconds(600);
  o.body_timeout = std::chrono::milliseconds(600);
  guarded g;
  running_server s(o, [&g](http_server& srv) { g(srv); });

  // One byte every 100 ms of a head that never ends.
  std::atomic<double> cut_after_ms{-1};
  std::thread slowloris([&] {
    const int fd = connect_to(s.port());
    const auto t0 = clk::now();
    const std::string head = "GET /v1/things/a/b HTTP/1.1\r\nHost: t\r\nX-Slow: ";
    for (std::size_t i = 0; ms_since(t0) < 5000; ++i) {
      if (::send(fd, i < head.size() ? &head[i] : "a", 1, MSG_NOSIGNAL) != 1) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      char b;
      const ssize_t n = ::recv(fd, &b, 1, MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) break;
    }
    cut_after_ms = ms_since(t0);
    ::close(fd);
  });
  // Meanwhile a normal client is answered promptly, again and again.
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  httplib::Client c("127.0.0.1", s.port());
  double worst = 0;
  for (int i = 0; i < 10; ++i) {
    const auto t0 = clk::now();
    auto r = c.Get("/v1/things/x/y");
    REQUIRE(r);
    CHECK(r->status == 200);
    worst = std::max(worst, ms_since(t0));
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
  }
  slowloris.join();
  MESSAGE("slowloris cut after " << cut_after_ms.load() << " ms; worst normal request " << worst << " ms");
  CHECK(worst < 100);
  CHECK(cut_after_ms.load() >= 550);
  CHECK(cut_after_ms.load() < 1500);
  CHECK(eventually([&] { return s.server.counters().refused_by(refusal::header_timeout) == 1; }));

  // Between requests a connection may be idle longer than header_timeout; the next head is
  // timed from its first byte.
  {
    const int fd = connect_to(s.port());
    REQUIRE(send_all(fd, "GET /v1/things/a/b HTTP/1.1\r\nHost: t\r\n\r\n"));
    CHECK(recv_until(fd, "\r\n\r\na").rfind("HTTP/1.1 200 ", 0) == 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(900));
    REQUIRE(send_all(fd, "GET /v1/things/b/c HTTP/1.1\r\nHost: t\r\n\r\n"));
    CHECK(recv_until(fd, "\r\n\r\nb").rfind("HTTP/1.1 200 ", 0) == 0);
    const auto t0 = clk::now();
    REQUIRE(send_all(fd, "GET /v1/things/b/c HTTP/1.1\r\n"));  // and no more
    CHECK(closed_by_peer(fd));
    CHECK(ms_since(t0) >= 550);
    CHECK(ms_since(t0) < 1500);
    ::close(fd);
  }
  CHECK(eventually([&] { return s.server.counters().refused_by(refusal::header_timeout) == 2; }));

  // A body that stops arriving is cut at body_timeout; the handler never runs.
  {
    const int fd = connect_to(s.port());
    const auto t0 = clk::now();
    REQUIRE(send_all(fd, "POST /v1/guarded HTTP/1.1\r\nHost: t\r\nX-Key: ok\r\nContent-Length: 100\r\n\r\n0123456789"));
    CHECK(closed_by_peer(fd));
    CHECK(ms_since(t0) >= 550);
    CHECK(ms_since(t0) < 1500);
    ::close(fd);
  }
  CHECK(eventually([&] { return s.server.counters().refused_by(refusal::body_timeout) == 1; }));
  CHECK(g.handled.load() == 0);
}

TEST_CASE("head inspection without a socket: routing, admission, declared length, malformed") {
  guarded g;
  http_server s(loopback());
  g(s);
  auto v = s.inspect_head("POST /v1/guarded HTTP/1.1\r\nX-Key: ok\r\nContent-Length: 10\r\n\r\nbody", "10.0.0.1");
  CHECK(v.status == 0);
  CHECK(v.body_limit == 1024);
  CHECK(v.route == "POST /v1/guarded");
  CHECK(s.inspect_head("POST /v1/guarded HTTP/1.1\r\nX-Key: ok\r\nContent-Length: 2000\r\n\r\n", "").status == 413);
  CHECK(s.inspect_head("POST /v1/guarded HTTP/1.1\r\nContent-Length: 10\r\n\r\n", "").status == 401);
  CHECK(s.inspect_head("GET /v1/guarded HTTP/1.1\r\n\r\n", "").status == 405);
  CHECK(s.inspect_head("GET /nope HTTP/1.1\r\n\r\n", "").status == 404);
  CHECK(s.inspect_head("GET /v1/things/a HTTP/1.1\r\n", "").status == 400);  // incomplete
  CHECK(s.inspect_head("\x01\x02 nonsense\r\n\r\n", "").status == 400);
  CHECK(s.inspect_head("GET / HTTP/1.1\r\nX: " + std::string(20000, 'a') + "\r\n\r\n", "").status == 431);
  std::string path;
  std::map<std::string, std::string> params;
  parse_target("/a%2Fb/c%zz?x=1+2&y=%41&x=3&&z", path, params);
  CHECK(path == "/a/b/c%zz");
  CHECK(params.at("x") == "1 2");  // the first of a repeated name
  CHECK(params.at("y") == "A");
  CHECK(params.at("z").empty());
}

TEST_CASE("stop: waiting long polls answered 503, a blocking answer in progress finishes, fast") {
  auto parked = std::make_shared<std::pair<std::mutex, std::vector<responder>>>();
  std::atomic<int> slow_started{0};
  server_options o = loopback();
  o.stop_grace = std::chrono::milliseconds(800);
  auto server = std::make_unique<http_server>(o);
  server->route("GET", "/v1/wait", run_on::io, [parked](const request&, const responder& out) {
    std::lock_guard lock(parked->first);
    parked->second.push_back(out);  // never answered by the handler
  });
  server->route("GET", "/v1/slow", run_on::blocking, [&slow_started](const request&, const responder& out) {
    ++slow_started;
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    out.send(text(200, "finished"));
  });
  std::thread runner([&] { server->run(); });
  constexpr int polls = 50;
  std::vector<int> fds;
  for (int i = 0; i < polls; ++i) {
    fds.push_back(connect_to(server->port()));
    REQUIRE(send_all(fds.back(), "GET /v1/wait HTTP/1.1\r\nHost: t\r\n\r\n"));
  }
  const int idle = connect_to(server->port());  // connected, never sends
  const int slow = connect_to(server->port());
  REQUIRE(send_all(slow, "GET /v1/slow HTTP/1.1\r\nHost: t\r\n\r\n"));
  for (int i = 0; i < 200 && (slow_started.load() == 0 || parked->second.size() < polls); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  REQUIRE(parked->second.size() == polls);

  const auto t0 = clk::now();
  server->stop();
  runner.join();
  const double took = ms_since(t0);
  MESSAGE("run() returned " << took << " ms after stop()");
  CHECK(took < 1000);
  int answered = 0;
  for (const int fd : fds) {
    const std::string got = recv_until(fd, "}");
    answered += got.rfind("HTTP/1.1 503 ", 0) == 0 && got.find("shutting_down") != std::string::npos &&
                got.find("Connection: close") != std::string::npos;
    ::close(fd);
  }
  CHECK(answered == polls);
  CHECK(recv_until(slow, "finished").find("HTTP/1.1 200 ") == 0);
  CHECK(closed_by_peer(idle));
  ::close(slow);
  ::close(idle);
  CHECK(server->counters().refused_by(refusal::shutting_down) == polls);
  {
    std::lock_guard lock(parked->first);
    parked->second.clear();  // already answered: dropping them does nothing
  }
  server.reset();
}

// ---- TLS -----------------------------------------------------------------------------------

namespace {

void peer_routes(http_server& s) {
  s.route("GET", "/v1/peer", run_on::io, [](const request& q, const responder& out) {
    out.send(text(200, std::string(q.peer.verified ? "verified" : "anonymous") + "|" + q.peer.common_name +
                           "|" + q.peer.fingerprint));
  });
}


}  // namespace

TEST_CASE("TLS: 1.2+ with ECDHE and AEAD suites only; client certificates asked for, not required") {
  tls_files f;
  if (!f.ok) {
    MESSAGE("openssl not available: TLS case skipped");
    return;
  }
  server_options o = loopback();
  o.tls_cert = f.path("tls.crt");
  o.tls_key = f.path("tls.key");
  o.tls_client_ca = f.path("ca.crt");
  running_server s(o, peer_routes);
  const std::string server_fp = f.fingerprint("server-a.crt");

  CHECK(handshake(s.port(), TLS1_3_VERSION, TLS1_3_VERSION, nullptr) == server_fp);
  CHECK(handshake(s.port(), TLS1_2_VERSION, TLS1_2_VERSION, "ECDHE-ECDSA-AES128-GCM-SHA256") == server_fp);
  CHECK(handshake(s.port(), TLS1_2_VERSION, TLS1_2_VERSION, "ECDHE-ECDSA-CHACHA20-POLY1305") == server_fp);
  CHECK(handshake(s.port(), TLS1_2_VERSION, TLS1_2_VERSION, "ECDHE-ECDSA-AES128-SHA256").empty());  // CBC
  CHECK(handshake(s.port(), TLS1_2_VERSION, TLS1_2_VERSION, "ECDHE-ECDSA-AES256-SHA").empty());
  CHECK(handshake(s.port(), TLS1_VERSION, TLS1_1_VERSION, "ALL:@SECLEVEL=0").empty());
  CHECK(eventually([&] { return s.server.counters().refused_by(refusal::tls_handshake) == 3; }));

  // No client certificate: served, anonymous (operators use bearer tokens).
  {
    httplib::SSLClient c("127.0.0.1", s.port());
    c.set_ca_cert_path(f.path("ca.crt").c_str());
    c.enable_server_certificate_verification(true);
    auto r = c.Get("/v1/peer");
    REQUIRE(r);
    CHECK(r->body == "anonymous||");
  }
  // A node's certificate from the CA: verified, its CN and fingerprint.
  {
    httplib::SSLClient c("127.0.0.1", s.port(), f.path("edge-1.crt"), f.path("edge-1.key"));
    c.set_ca_cert_path(f.path("ca.crt").c_str());
    c.enable_server_certificate_verification(true);
    auto r = c.Get("/v1/peer");
    REQUIRE(r);
    CHECK(r->body == "verified|edge-1|" + f.fingerprint("edge-1.crt"));
  }
  // A CN outside the node-id charset: verified, no usable CN.
  {
    httplib::SSLClient c("127.0.0.1", s.port(), f.path("bad-cn.crt"), f.path("bad-cn.key"));
    c.enable_server_certificate_verification(false);
    auto r = c.Get("/v1/peer");
    REQUIRE(r);
    CHECK(r->body == "verified||" + f.fingerprint("bad-cn.crt"));
  }
  // A certificate nobody we trust signed (same CN): the handshake fails.
  {
    const auto before = s.server.counters().refused_by(refusal::tls_handshake);
    httplib::SSLClient c("127.0.0.1", s.port(), f.path("rogue.crt"), f.path("rogue.key"));
    c.enable_server_certificate_verification(false);
    auto r = c.Get("/v1/peer");
    CHECK_FALSE(r);
    CHECK(eventually([&] { return s.server.counters().refused_by(refusal::tls_handshake) == before + 1; }));
  }
}

TEST_CASE("TLS reload: new handshakes get the new certificate; a bad file keeps the old one") {
  tls_files f;
  if (!f.ok) {
    MESSAGE("openssl not available: TLS case skipped");
    return;
  }
  server_options o = loopback();
  o.tls_cert = f.path("tls.crt");
  o.tls_key = f.path("tls.key");
  running_server s(o, peer_routes);
  const std::string a = f.fingerprint("server-a.crt"), b = f.fingerprint("server-b.crt");
  REQUIRE(a != b);
  CHECK(handshake(s.port(), TLS1_2_VERSION, TLS1_3_VERSION, nullptr) == a);

  // An open connection keeps its session; new handshakes see B after the reload.
  httplib::SSLClient kept("127.0.0.1", s.port());
  kept.set_keep_alive(true);
  kept.enable_server_certificate_verification(false);
  REQUIRE(kept.Get("/v1/peer"));
  std::filesystem::copy_file(f.dir / "server-b.crt", f.dir / "tls.crt", std::filesystem::copy_options::overwrite_existing);
  std::filesystem::copy_file(f.dir / "server-b.key", f.dir / "tls.key", std::filesystem::copy_options::overwrite_existing);
  CHECK_FALSE(s.server.reload_tls().has_value());
  CHECK(handshake(s.port(), TLS1_2_VERSION, TLS1_3_VERSION, nullptr) == b);
  auto r = kept.Get("/v1/peer");
  REQUIRE(r);
  CHECK(r->status == 200);

  // A key that does not match: refused with the reason, B stays.
  std::filesystem::copy_file(f.dir / "server-a.key", f.dir / "tls.key", std::filesystem::copy_options::overwrite_existing);
  const auto err = s.server.reload_tls();
  REQUIRE(err.has_value());
  MESSAGE("reload error: " << *err);
  CHECK(err->find("tls.key") != std::string::npos);
  CHECK(handshake(s.port(), TLS1_2_VERSION, TLS1_3_VERSION, nullptr) == b);
  CHECK(s.server.counters().tls_reloads.load() == 1);
  CHECK(s.server.counters().tls_reload_failures.load() == 1);
}
