// control/api/http_server on loopback: routing, keep-alive, answers from another thread and
// later, a dropped request answered 500, the input bounds (413, 431, 400, max_connections) and
// TLS. Clients: cpp-httplib for well-formed requests, raw sockets for the malformed ones.
#include "control/api/http_server.hpp"

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>

using namespace sluice::control::api;

namespace {

struct running_server {
  http_server server;
  std::thread thread;

  explicit running_server(server_options o, void (*routes)(http_server&)) : server(std::move(o)) {
    routes(server);
    thread = std::thread([this] { server.run(); });
  }
  ~running_server() {
    server.stop();
    thread.join();
  }
  int port() { return server.port(); }
};

server_options loopback() {
  server_options o;
  o.host = "127.0.0.1";
  o.port = 0;
  return o;
}

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

// Sends `raw` on a fresh connection and returns what comes back until the server closes.
std::string raw_exchange(int port, const std::string& raw) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return "connect failed";
  }
  (void)::send(fd, raw.data(), raw.size(), MSG_NOSIGNAL);
  std::string got;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    got.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return got;
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
