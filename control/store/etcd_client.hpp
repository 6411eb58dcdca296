#pragma once
// A small client for etcd v3's JSON gateway (grpc-gateway, etcd 3.4: paths under /v3/), used by
// the etcd store. Not a general etcd client: unary calls, JSON in and out, failover across the
// cluster's client URLs. Keys and values are base64 in that API; int64 fields come back as JSON
// strings (and are accepted as numbers too).
//
// TLS (issue 14): https:// endpoints are reached with cpp-httplib's SSLClient, verifying each
// member's server certificate (chain to tls_files::ca, name = the endpoint's host, an IP SAN
// for an address) and presenting the client certificate for etcd's --client-cert-auth.
//
// Thread-safety: post() may be called from several threads; calls on one client are serialised
// per endpoint by cpp-httplib. Each long-lived thread of the store uses a client of its own so a
// slow call never delays another thread's (the leadership keepalive above all).

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::control::store::etcd {

[[nodiscard]] std::string base64_encode(std::string_view data);
// nullopt when `text` is not canonical base64 (length not a multiple of 4, bad characters).
[[nodiscard]] std::optional<std::string> base64_decode(std::string_view text);

// The first key after every key that starts with `prefix` (etcd's range_end for a prefix).
[[nodiscard]] std::string prefix_end(const std::string& prefix);

// An int64 field of a gateway response: absent = 0 (proto3 omits defaults), a JSON string or a
// number. Throws std::runtime_error when present but neither.
[[nodiscard]] std::int64_t int_field(const nlohmann::json& obj, const char* name);

struct key_value {
  std::string key;
  std::string value;
  std::int64_t create_revision = 0;
  std::int64_t mod_revision = 0;
  std::int64_t version = 0;
  std::int64_t lease = 0;
};
// Throws std::runtime_error when the entry is malformed (bad base64, wrong types).
[[nodiscard]] key_value parse_kv(const nlohmann::json& kv);

struct reply {
  enum class status : std::uint8_t {
    ok,        // HTTP 200; body holds the response
    error,     // etcd answered with an error: the request was not applied
    unknown,   // the request may or may not have been applied (lost answer, server timeout)
    unreachable,  // no endpoint accepted a connection: not applied
  };
  status outcome = status::unreachable;
  nlohmann::json body;
  std::string error;  // for anything but ok
  int code = 0;       // gRPC code when etcd answered with an error
  [[nodiscard]] bool ok() const noexcept { return outcome == status::ok; }
};

// PEM files for https:// endpoints; all empty for http:// ones.
struct tls_files {
  std::string ca;    // required: the CA(s) the members' server certificates chain to
  std::string cert;  // optional, with key: this client's certificate (etcd --client-cert-auth)
  std::string key;
};

class client {
 public:
  // endpoints: "http://host:port" each, or "https://host:port" each with tls.ca; throws
  // std::invalid_argument for anything else (also TLS files for http://, a CA file without a
  // certificate, a client certificate or key that cannot be used).
  client(const std::vector<std::string>& endpoints, std::chrono::milliseconds timeout,
         const tls_files& tls = {});

  // POSTs `body` to `path`, starting at the endpoint that answered last. An endpoint that cannot
  // be connected to is skipped. `idempotent` requests (reads, lease grants and keepalives) also
  // go on to the next endpoint after a lost answer or an "unavailable" error; others report
  // `unknown` then, since replaying a write that did land would be wrong.
  [[nodiscard]] reply post(const std::string& path, const nlohmann::json& body, bool idempotent);

  // For the watch: a streaming POST to one endpoint (the current one); `on_data` gets the body
  // as it arrives and returns false to end the stream. Returns when the stream ends, breaks or
  // stop() is called; moves on to the next endpoint for the next call when it could not connect.
  // Returns false when the stream could not be opened or ended with an error.
  bool stream(const std::string& path, const nlohmann::json& body,
              const std::function<bool(const char*, std::size_t)>& on_data, std::string& error);

  // Interrupts the request in flight on every endpoint (from another thread).
  void stop();

  [[nodiscard]] std::size_t endpoint_count() const noexcept { return clients_.size(); }

 private:
  std::vector<std::unique_ptr<httplib::Client>> clients_;
  std::vector<std::string> names_;
  std::atomic<std::size_t> current_{0};
};

}  // namespace sluice::control::store::etcd
