// tls_stream (control/api/tls_stream.hpp): OpenSSL on the socket under Asio, as the
// controller's server and the fleet simulator use it. A real handshake on loopback between two
// of them, then what Beast relies on: whole transfers through short ones, a gather write
// coalesced into one call, deadlines, the peer going away (no SIGPIPE), a certificate the
// client does not trust.

#include "control/api/tls_stream.hpp"

#include <doctest/doctest.h>
#include <openssl/ssl.h>

#include <boost/asio.hpp>
#include <boost/beast/core/error.hpp>
#include <chrono>
#include <csignal>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "http_test_support.hpp"

namespace {

namespace net = boost::asio;
using sluice::control::api::tls_stream;
using tcp = net::ip::tcp;

struct ctx_deleter {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
using ctx_ptr = std::unique_ptr<SSL_CTX, ctx_deleter>;

ctx_ptr server_context(const sluice_test::tls_files& f) {
  ctx_ptr c(SSL_CTX_new(TLS_server_method()));
  REQUIRE(SSL_CTX_use_certificate_chain_file(c.get(), f.path("tls.crt").c_str()) == 1);
  REQUIRE(SSL_CTX_use_PrivateKey_file(c.get(), f.path("tls.key").c_str(), SSL_FILETYPE_PEM) == 1);
  tls_stream::prepare_context(c.get());
  return c;
}

ctx_ptr client_context(const std::string& ca_file) {
  ctx_ptr c(SSL_CTX_new(TLS_client_method()));
  REQUIRE(SSL_CTX_load_verify_locations(c.get(), ca_file.c_str(), nullptr) == 1);
  SSL_CTX_set_verify(c.get(), SSL_VERIFY_PEER, nullptr);
  tls_stream::prepare_context(c.get());
  return c;
}

// An io_context on its own thread and a connected pair of streams, not yet shaken hands.
struct pair_fixture {
  net::io_context ioc;
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work{ioc.get_executor()};
  std::thread runner;
  std::optional<tls_stream> server, client;

  pair_fixture(SSL_CTX* server_ctx, SSL_CTX* client_ctx) {
    tcp::acceptor acceptor(ioc, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
    tcp::socket c(ioc), s(ioc);
    c.connect(acceptor.local_endpoint());
    acceptor.accept(s);
    server.emplace(std::move(s), server_ctx);
    client.emplace(std::move(c), client_ctx);
    runner = std::thread([this] { ioc.run(); });
  }
  ~pair_fixture() {
    // Streams are destroyed on the loop's thread (their timers live there), then the loop ends.
    net::post(ioc, [this] {
      server.reset();
      client.reset();
      work.reset();
    });
    runner.join();
  }

  // Both handshakes; the server's error and the client's.
  std::pair<boost::system::error_code, boost::system::error_code> handshake() {
    std::promise<boost::system::error_code> s, c;
    net::post(ioc, [&] {
      server->async_handshake(tls_stream::role::server, [&](boost::system::error_code ec) { s.set_value(ec); });
      client->async_handshake(tls_stream::role::client, [&](boost::system::error_code ec) { c.set_value(ec); });
    });
    return {s.get_future().get(), c.get_future().get()};
  }

  // Runs `start(done)` on the loop; waits for done(ec, n).
  template <class Start>
  std::pair<boost::system::error_code, std::size_t> run(Start start) {
    std::promise<std::pair<boost::system::error_code, std::size_t>> p;
    net::post(ioc, [&] {
      start([&](boost::system::error_code ec, std::size_t n) { p.set_value({ec, n}); });
    });
    return p.get_future().get();
  }
};

// A pair that trusts each other's certificate, hands shaken; nullptr (the case skipped) without
// openssl to make the certificates. Members end in reverse: the streams before their contexts.
struct connected_pair {
  sluice_test::tls_files files;
  ctx_ptr server_ctx, client_ctx;
  std::optional<pair_fixture> pair;
};

std::unique_ptr<connected_pair> connected() {
  auto c = std::make_unique<connected_pair>();
  if (!c->files.ok) {
    MESSAGE("openssl not available: TLS case skipped");
    return nullptr;
  }
  c->server_ctx = server_context(c->files);
  c->client_ctx = client_context(c->files.path("ca.crt"));
  c->pair.emplace(c->server_ctx.get(), c->client_ctx.get());
  const auto [server_ec, client_ec] = c->pair->handshake();
  REQUIRE_FALSE(server_ec);
  REQUIRE_FALSE(client_ec);
  return c;
}

}  // namespace

TEST_CASE("tls_stream: handshake, a megabyte each way through short transfers, a gather write coalesced") {
  const auto c = connected();
  if (!c) return;
  pair_fixture& p = *c->pair;
  CHECK(SSL_version(p.server->native_handle()) >= TLS1_2_VERSION);

  // 1 MiB from the client, read by the server in whatever pieces arrive (net::async_read loops
  // over async_read_some, as Beast does), and back the other way.
  std::string sent(1 << 20, '\0');
  for (std::size_t i = 0; i < sent.size(); ++i) sent[i] = static_cast<char>((i * 131) ^ (i >> 7));
  std::string got(sent.size(), '\0');
  std::promise<std::pair<boost::system::error_code, std::size_t>> wrote;
  net::post(p.ioc, [&] {
    net::async_write(*p.client, net::buffer(sent), [&](boost::system::error_code ec, std::size_t n) {
      wrote.set_value({ec, n});
    });
  });
  const auto [read_ec, read_n] = p.run([&](auto done) { net::async_read(*p.server, net::buffer(got), done); });
  const auto [write_ec, write_n] = wrote.get_future().get();
  CHECK_FALSE(write_ec);
  CHECK(write_n == sent.size());
  CHECK_FALSE(read_ec);
  CHECK(read_n == sent.size());
  CHECK(got == sent);

  // Beast's serializer hands a head over as many small buffers: one async_write_some takes them
  // all (one record), not the first one only.
  std::vector<std::string> parts;
  for (int i = 0; i < 40; ++i) parts.push_back("Header-" + std::to_string(i) + ": value\r\n");
  std::vector<net::const_buffer> gather;
  std::string joined;
  for (const auto& s : parts) {
    gather.push_back(net::buffer(s));
    joined += s;
  }
  const auto [gather_ec, gather_n] = p.run([&](auto done) { p.server->async_write_some(gather, done); });
  CHECK_FALSE(gather_ec);
  CHECK(gather_n == joined.size());
  std::string echo(joined.size(), '\0');
  const auto [echo_ec, echo_n] = p.run([&](auto done) {
    p.client->expires_after(std::chrono::seconds(5));  // a short write must fail the case, not hang it
    net::async_read(*p.client, net::buffer(echo), done);
  });
  CHECK_FALSE(echo_ec);
  CHECK(echo == joined);

  // An empty read completes at once with nothing.
  const auto [empty_ec, empty_n] = p.run([&](auto done) { p.client->async_read_some(net::mutable_buffer(), done); });
  CHECK_FALSE(empty_ec);
  CHECK(empty_n == 0);
}

TEST_CASE("tls_stream: a deadline ends a read that waits; the peer gone is eof or truncation, never SIGPIPE") {
  const auto c = connected();
  if (!c) return;
  pair_fixture& p = *c->pair;

  // Nothing comes: the read ends with beast's timeout after ~100 ms, not before.
  char byte = 0;
  const auto t0 = std::chrono::steady_clock::now();
  const auto [timeout_ec, timeout_n] = p.run([&](auto done) {
    p.server->expires_after(std::chrono::milliseconds(100));
    p.server->async_read_some(net::buffer(&byte, 1), done);
  });
  const auto waited = std::chrono::steady_clock::now() - t0;
  CHECK(timeout_ec == boost::beast::error::timeout);
  CHECK(timeout_n == 0);
  CHECK(waited >= std::chrono::milliseconds(90));
  CHECK(waited < std::chrono::seconds(5));
  // Disarmed, the stream reads again (the client sends one byte).
  const auto [again_ec, again_n] = p.run([&](auto done) {
    p.server->expires_never();
    p.server->async_read_some(net::buffer(&byte, 1), done);
    net::async_write(*p.client, net::buffer("x", 1), [](boost::system::error_code, std::size_t) {});
  });
  CHECK_FALSE(again_ec);
  CHECK(again_n == 1);
  CHECK(byte == 'x');

  // The client's socket closes without close_notify: the server's read sees a truncated stream.
  const auto [cut_ec, cut_n] = p.run([&](auto done) {
    boost::system::error_code ignored;
    p.client->socket().close(ignored);
    p.server->async_read_some(net::buffer(&byte, 1), done);
  });
  CHECK((cut_ec == net::ssl::error::stream_truncated || cut_ec == net::error::connection_reset));
  CHECK(cut_n == 0);

  // Writing on to the dead peer fails with an error; with SIGPIPE at its default (fatal) this
  // process would die if OpenSSL wrote with write(2).
  struct sigaction old {};
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  REQUIRE(::sigaction(SIGPIPE, &dfl, &old) == 0);
  const std::string big(256 * 1024, 'y');
  const auto [dead_ec, dead_n] = p.run([&](auto done) { net::async_write(*p.server, net::buffer(big), done); });
  ::sigaction(SIGPIPE, &old, nullptr);
  CHECK(dead_ec);
  CHECK(dead_n < big.size());
}

TEST_CASE("tls_stream: a server certificate the client does not trust fails the client's handshake") {
  sluice_test::tls_files f;
  if (!f.ok) {
    MESSAGE("openssl not available: TLS case skipped");
    return;
  }
  const auto sctx = server_context(f);
  const auto cctx = client_context(f.path("rogue.crt"));  // a CA that did not sign tls.crt
  pair_fixture p(sctx.get(), cctx.get());
  const auto [server_ec, client_ec] = p.handshake();
  CHECK(client_ec);
  CHECK(client_ec.category() == net::error::get_ssl_category());
  CHECK(server_ec);  // the client's alert, or the connection gone
}

TEST_CASE("tls_stream: once its socket is closed, OpenSSL is not called on the old descriptor") {
  const auto c = connected();
  if (!c) return;
  pair_fixture& p = *c->pair;
  // A full one-byte read (the socket is not known to be drained), then the owner closes it: the
  // descriptor's number is free for the next accepted connection, so a read started now must
  // end without a recv on it (before the guard: EBADF from OpenSSL's recv).
  char byte = 0;
  const auto [first_ec, first_n] = p.run([&](auto done) {
    net::async_write(*p.client, net::buffer("z", 1), [](boost::system::error_code, std::size_t) {});
    net::async_read(*p.server, net::buffer(&byte, 1), done);
  });
  REQUIRE_FALSE(first_ec);
  REQUIRE(first_n == 1);
  const auto [closed_ec, closed_n] = p.run([&](auto done) {
    boost::system::error_code ignored;
    p.server->socket().close(ignored);
    p.server->async_read_some(net::buffer(&byte, 1), done);
  });
  CHECK(closed_ec == net::error::operation_aborted);
  CHECK(closed_n == 0);
}
