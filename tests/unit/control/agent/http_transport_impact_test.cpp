// http_transport::post_impact on loopback: path, bearer token, content type and body; failover
// past a dead controller; a non-2xx answer is a failure naming every controller tried.
#include <doctest/doctest.h>
#include <httplib.h>

#include <mutex>
#include <string>
#include <thread>

#include "control/agent/http_transport.hpp"

using namespace sluice::control::agent;

namespace {

struct impact_server {
  httplib::Server server;
  std::thread thread;
  int port = 0;
  int answer = 204;
  std::mutex mutex;
  std::string auth, type, body, path;
  impact_server() {
    server.Post(R"(/v1/nodes/([^/]+)/impact)", [this](const httplib::Request& q, httplib::Response& r) {
      std::lock_guard lock(mutex);
      auth = q.get_header_value("Authorization");
      type = q.get_header_value("Content-Type");
      body = q.body;
      path = q.path;
      r.status = answer;
    });
    port = server.bind_to_any_port("127.0.0.1");
    thread = std::thread([this] { server.listen_after_bind(); });
  }
  ~impact_server() {
    server.stop();
    thread.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port); }
};

int closed_port() {
  httplib::Server s;
  return s.bind_to_any_port("127.0.0.1");  // bound, then closed when s goes
}

}  // namespace

TEST_CASE("post_impact: POSTs the body to /v1/nodes/{node}/impact, fails over, 2xx only") {
  impact_server srv;
  const int dead = closed_port();
  http_transport_config c;
  c.urls = {"http://127.0.0.1:" + std::to_string(dead), srv.url()};
  c.node_id = "edge-1";
  c.token = "tok123";
  c.connect_timeout = std::chrono::seconds(1);
  c.request_timeout = std::chrono::seconds(2);
  std::string error;
  auto t = http_transport::create(c, error);
  REQUIRE_MESSAGE(t, error);
  const std::string body = R"({"window_start":1,"window_end":2,"revision":3,"rules":[]})";
  const post_result ok = t->post_impact(body);
  CHECK_MESSAGE(ok.ok, ok.error);
  {
    std::lock_guard lock(srv.mutex);
    CHECK(srv.path == "/v1/nodes/edge-1/impact");
    CHECK(srv.auth == "Bearer tok123");
    CHECK(srv.type == "application/json");
    CHECK(srv.body == body);
  }
  {
    std::lock_guard lock(srv.mutex);
    srv.answer = 500;
  }
  const post_result bad = t->post_impact(body);
  CHECK_FALSE(bad.ok);
  CHECK(bad.error.find(srv.url() + ": 500") != std::string::npos);
  CHECK(bad.error.find("127.0.0.1:" + std::to_string(dead)) != std::string::npos);
}
