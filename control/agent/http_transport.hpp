#pragma once
// The agent's transport over HTTP (cpp-httplib): GET /v1/nodes/{node}/snapshot?wait=S and
// POST /v1/nodes/{node}/status with `Authorization: Bearer TOKEN` (when a token is given) and
// `X-Sluice-Labels` (informational: the controller takes labels from its inventory).
//
// Node identity (issue 14): with `client_cert_file` and `client_key_file`, every https://
// controller is asked over mutual TLS with this node's certificate; `ca_file` verifies the
// controller's certificate (and host name) instead of the system's CAs. create() refuses a
// certificate whose CN is not the node id, a key that is not the certificate's, and client
// certificates with http:// URLs. The files are read once, at create(): a re-enrolled node
// restarts its agent to use its new certificate.
//
// Several controller URLs may be given (replicas): requests go to the one that answered last;
// when it fails (no connection, timeout, or any answer but 200/304 for a fetch and 2xx for a
// status) the next one is tried at once, each at most once per call. The error of a failed
// call names every controller tried and why.
//
// Threads: fetch(), post_status() and post_impact() from one thread (the owner's); interrupt()
// from any.
// Nothing throws except std::bad_alloc.

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "control/agent/agent.hpp"

namespace httplib {
class Client;
class Result;
}  // namespace httplib

namespace sluice::control::agent {

struct http_transport_config {
  std::vector<std::string> urls;  // "http://host:port" (https:// too), no path
  std::string node_id;
  std::string token;  // bearer token of role node; "" for none (mutual TLS alone)
  std::string client_cert_file;  // PEM: this node's certificate (CN = node_id)
  std::string client_key_file;   // PEM: its private key
  std::string ca_file;           // PEM: CA certificates for the controller's certificate
  label_map labels;
  std::chrono::seconds connect_timeout{3};
  std::chrono::seconds request_timeout{10};  // status posts; fetches get wait + this
};

// The node's credentials as sluice-dataplane and sluice-rtbh take them (--node-token-file,
// --node-cert, --node-key, --controller-ca) into `c` (c.urls and c.node_id set first), checked
// as create() checks them, so a misfit is a usage error at start. At least a token or a
// certificate is required. "" when usable, else why not.
[[nodiscard]] std::string set_credentials(http_transport_config& c, const std::string& token_file,
                                          const std::string& cert_file, const std::string& key_file,
                                          const std::string& ca_file);

class http_transport final : public transport {
 public:
  // nullopt and `error` when a URL is not http(s)://host[:port], there is none, the node id is
  // invalid, or the TLS files are unreadable or do not fit (see above).
  [[nodiscard]] static std::unique_ptr<http_transport> create(http_transport_config config,
                                                              std::string& error);
  ~http_transport() override;

  [[nodiscard]] fetch_result fetch(std::uint64_t held, std::chrono::seconds wait,
                                   std::string_view status) override;
  [[nodiscard]] post_result post_status(const status_report& report) override;
  // POST /v1/nodes/{node}/impact with `body` (the dataplane's impact window JSON, content-type
  // application/json), same token, labels header and failover walk as post_status; ok on 2xx.
  // Not part of `transport`: the dataplane's impact thread uses its own http_transport
  // instance, so it never shares a client with the agent's long-poll.
  [[nodiscard]] post_result post_impact(const std::string& body);
  void interrupt() override;

 private:
  explicit http_transport(http_transport_config config);
  httplib::Client& client(std::size_t i);
  // The failover walk both requests share: `send(client, read_timeout)` on each controller in
  // turn, starting with the one that answered last, until `accept(result)` takes an answer
  // (that controller becomes the current one). Returns "" then, else why every one failed
  // ("interrupted" after interrupt()); `last_url` is the controller tried last.
  [[nodiscard]] std::string try_each(std::chrono::seconds read_timeout,
                                     const std::function<httplib::Result(httplib::Client&)>& send,
                                     const std::function<bool(const httplib::Result&)>& accept,
                                     std::string& last_url);
  // POST /v1/nodes/{node}/{what} with a JSON body and the labels header, over try_each; ok on 2xx.
  [[nodiscard]] post_result post_node_json(const char* what, const std::string& body);

  http_transport_config config_;
  std::vector<std::unique_ptr<httplib::Client>> clients_;
  std::size_t current_ = 0;
  std::atomic<bool> interrupted_{false};
  std::mutex client_mutex_;  // clients_ vs interrupt()
};

}  // namespace sluice::control::agent
