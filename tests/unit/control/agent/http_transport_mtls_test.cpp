// http_transport over mutual TLS (issue 14) against a local TLS server that requires a client
// certificate of the node CA: the node's certificate reaches the server (it reads the CN), the
// controller's certificate is verified against --controller-ca, and create() refuses an
// identity that does not fit (CN not the node id, key not the certificate's, http:// URLs).
#include <doctest/doctest.h>
#include <httplib.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <mutex>
#include <string>
#include <thread>

#include "control/agent/http_transport.hpp"
#include "tests/unit/support/openssl_certs.hpp"

using namespace sluice::control::agent;
using sluice::test::cert_dir;

namespace {

// Certificates: the node CA (clients), the server's CA (the controller's certificate), nodes.
struct pki_files {
  cert_dir d;
  pki_files() {
    d.make_ca("node-ca", "Node CA");
    d.make_ca("server-ca", "Server CA");
    d.make_ca("rogue-ca", "Rogue CA");
    d.make_server("server", "server-ca");
    d.make_server("rogue-server", "rogue-ca");
    d.make_client("edge-1", "node-ca", "edge-1");
    d.make_client("rogue-node", "rogue-ca", "edge-1");
  }
};

struct mtls_server {
  httplib::SSLServer server;
  std::thread thread;
  int port = 0;
  std::mutex mutex;
  std::string peer_cn;
  int fetches = 0;
  mtls_server(const cert_dir& d, const std::string& cert)
      : server(d.file(cert + ".crt").c_str(), d.file(cert + ".key").c_str(),
               d.file("node-ca.crt").c_str()) {
    server.Get(R"(/v1/nodes/([^/]+)/snapshot)", [this](const httplib::Request& q, httplib::Response& r) {
      std::lock_guard lock(mutex);
      ++fetches;
      peer_cn.clear();
      if (q.ssl) {
        X509* peer = SSL_get1_peer_certificate(q.ssl);
        if (peer) {
          char cn[256] = {};
          X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, sizeof cn);
          peer_cn = cn;
          X509_free(peer);
        }
      }
      r.status = 304;
    });
    port = server.bind_to_any_port("127.0.0.1");
    thread = std::thread([this] { server.listen_after_bind(); });
  }
  ~mtls_server() {
    server.stop();
    thread.join();
  }
  std::string url() const { return "https://127.0.0.1:" + std::to_string(port); }
};

http_transport_config config_for(const cert_dir& d, const std::string& url, const std::string& node = "edge-1",
                                 const std::string& cert = "edge-1") {
  http_transport_config c;
  c.urls = {url};
  c.node_id = node;
  c.client_cert_file = d.file(cert + ".crt");
  c.client_key_file = d.file(cert + ".key");
  c.ca_file = d.file("server-ca.crt");
  c.connect_timeout = std::chrono::seconds(2);
  c.request_timeout = std::chrono::seconds(2);
  return c;
}

}  // namespace

TEST_CASE("mutual TLS: the node's certificate reaches the controller, which is verified") {
  pki_files p;
  mtls_server srv(p.d, "server");
  std::string error;
  auto t = http_transport::create(config_for(p.d, srv.url()), error);
  REQUIRE_MESSAGE(t, error);
  const fetch_result f = t->fetch(7, std::chrono::seconds(0), {});
  CHECK_MESSAGE(f.error.empty(), f.error);
  CHECK(f.status == fetch_status::not_modified);
  {
    std::lock_guard lock(srv.mutex);
    CHECK(srv.peer_cn == "edge-1");
  }

  SUBCASE("without a client certificate the server refuses the handshake") {
    http_transport_config c = config_for(p.d, srv.url());
    c.client_cert_file.clear();
    c.client_key_file.clear();
    c.token = "tok";
    auto plain = http_transport::create(c, error);
    REQUIRE(plain);
    const fetch_result g = plain->fetch(7, std::chrono::seconds(0), {});
    CHECK_FALSE(g.error.empty());
  }
  SUBCASE("a certificate of another CA is refused by the server") {
    auto rogue = http_transport::create(config_for(p.d, srv.url(), "edge-1", "rogue-node"), error);
    REQUIRE(rogue);
    CHECK_FALSE(rogue->fetch(7, std::chrono::seconds(0), {}).error.empty());
  }
  SUBCASE("the node does not talk to a controller whose certificate the CA file does not vouch for") {
    mtls_server impostor(p.d, "rogue-server");
    auto t2 = http_transport::create(config_for(p.d, impostor.url()), error);
    REQUIRE(t2);
    const fetch_result g = t2->fetch(7, std::chrono::seconds(0), {});
    CHECK_FALSE(g.error.empty());
    std::lock_guard lock(impostor.mutex);
    CHECK(impostor.fetches == 0);
  }
}

TEST_CASE("mutual TLS: create() refuses an identity that does not fit, with a clear reason") {
  pki_files p;
  const std::string url = "https://127.0.0.1:1";
  std::string error;
  CHECK_FALSE(http_transport::create(config_for(p.d, url, "edge-2"), error));
  CHECK(error.find("is for node 'edge-1' (its CN), not for node id 'edge-2'") != std::string::npos);

  http_transport_config wrong_key = config_for(p.d, url);
  wrong_key.client_key_file = p.d.file("rogue-node.key");
  CHECK_FALSE(http_transport::create(wrong_key, error));
  CHECK(error.find("is not the key of the certificate") != std::string::npos);

  http_transport_config half = config_for(p.d, url);
  half.client_key_file.clear();
  CHECK_FALSE(http_transport::create(half, error));
  CHECK(error.find("needs its key") != std::string::npos);

  CHECK_FALSE(http_transport::create(config_for(p.d, "http://127.0.0.1:1"), error));
  CHECK(error.find("not https://") != std::string::npos);

  http_transport_config missing = config_for(p.d, url);
  missing.client_cert_file = p.d.file("nope.crt");
  CHECK_FALSE(http_transport::create(missing, error));
  CHECK(error.find("cannot read") != std::string::npos);

  http_transport_config no_ca = config_for(p.d, url);
  no_ca.ca_file = p.d.file("nope-ca.crt");
  CHECK_FALSE(http_transport::create(no_ca, error));
  CHECK(error.find("controller CA file") != std::string::npos);
}
