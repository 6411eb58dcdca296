#include "control/store/etcd_client.hpp"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509_vfy.h>

#include <functional>
#include <stdexcept>
#include <utility>

#include "control/common/sigpipe.hpp"

namespace sluice::control::store::etcd {

std::string base64_encode(std::string_view data) {
  std::string out(4 * ((data.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(data.data()),
                                static_cast<int>(data.size()));
  out.resize(n < 0 ? 0 : static_cast<std::size_t>(n));
  return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  if (text.empty()) return std::string();
  std::string out(3 * (text.size() / 4), '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(text.data()),
                                static_cast<int>(text.size()));
  if (n < 0) return std::nullopt;
  // EVP_DecodeBlock counts the padding as zero bytes of output; drop them.
  std::size_t pad = 0;
  if (text.back() == '=') ++pad;
  if (text.size() >= 2 && text[text.size() - 2] == '=') ++pad;
  out.resize(static_cast<std::size_t>(n) - pad);
  return out;
}

std::string prefix_end(const std::string& prefix) {
  std::string end = prefix;
  while (!end.empty()) {
    auto& c = reinterpret_cast<unsigned char&>(end.back());
    if (c < 0xff) {
      ++c;
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');  // every key
}

std::int64_t int_field(const nlohmann::json& obj, const char* name) {
  const auto it = obj.find(name);
  if (it == obj.end() || it->is_null()) return 0;
  if (it->is_number_integer()) return it->get<std::int64_t>();
  if (it->is_string()) {
    const std::string& s = it->get_ref<const std::string&>();
    std::size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(s, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == s.size() && !s.empty()) return v;
  }
  throw std::runtime_error(std::string("field \"") + name + "\" is not an integer");
}

key_value parse_kv(const nlohmann::json& kv) {
  if (!kv.is_object()) throw std::runtime_error("key-value is not an object");
  key_value out;
  auto bytes = [&](const char* name) -> std::string {
    const auto it = kv.find(name);
    if (it == kv.end() || it->is_null()) return {};
    if (!it->is_string()) throw std::runtime_error(std::string(name) + " is not text");
    auto d = base64_decode(it->get_ref<const std::string&>());
    if (!d) throw std::runtime_error(std::string(name) + " is not base64");
    return std::move(*d);
  };
  out.key = bytes("key");
  out.value = bytes("value");
  out.create_revision = int_field(kv, "create_revision");
  out.mod_revision = int_field(kv, "mod_revision");
  out.version = int_field(kv, "version");
  out.lease = int_field(kv, "lease");
  return out;
}

namespace {

constexpr int grpc_unavailable = 14;

void set_timeouts(httplib::Client& c, std::chrono::milliseconds timeout) {
  const auto sec = static_cast<time_t>(timeout.count() / 1000);
  const auto usec = static_cast<time_t>((timeout.count() % 1000) * 1000);
  c.set_connection_timeout(sec, usec);
  c.set_read_timeout(sec, usec);
  c.set_write_timeout(sec, usec);
  c.set_keep_alive(true);
  c.set_tcp_nodelay(true);  // small request/answer pairs: no 40 ms delayed-ACK stalls
}

// Not sent at all: no connection, or no TLS session (handshake failed, the server's certificate
// did not verify, the CA file could not be loaded).
bool not_connected(httplib::Error e) {
  return e == httplib::Error::Connection || e == httplib::Error::ConnectionTimeout ||
         e == httplib::Error::BindIPAddress || e == httplib::Error::SSLConnection ||
         e == httplib::Error::SSLLoadingCerts || e == httplib::Error::SSLServerVerification;
}

// The CA file as the handshake loads it (SSL_CTX_load_verify_locations): at least one
// certificate, checked here so a bad file is a clear error at start, not SSLLoadingCerts later.
bool usable_ca_file(const std::string& path) {
  X509_STORE* store = X509_STORE_new();
  const bool ok = store != nullptr && X509_STORE_load_file(store, path.c_str()) == 1;
  X509_STORE_free(store);
  ERR_clear_error();
  return ok;
}

}  // namespace

client::client(const std::vector<std::string>& endpoints, std::chrono::milliseconds timeout,
               const tls_files& tls) {
  if (endpoints.empty()) throw std::invalid_argument("no etcd endpoints");
  if (tls.cert.empty() != tls.key.empty())
    throw std::invalid_argument("etcd client certificate and key go together");
  if (!tls.ca.empty() && !usable_ca_file(tls.ca))
    throw std::invalid_argument("etcd CA file " + tls.ca + ": cannot read a certificate from it");
  for (const auto& e : endpoints) {
    // All https:// (with a CA) or all http://: TLS files with an http:// endpoint would mean a
    // plaintext connection where the operator asked for a verified one.
    const bool https = e.rfind("https://", 0) == 0;
    if ((!https && e.rfind("http://", 0) != 0) || e.size() <= (https ? 8U : 7U)) {
      throw std::invalid_argument("etcd endpoint \"" + e + "\" is not http(s)://host:port");
    }
    if (https && tls.ca.empty()) {
      throw std::invalid_argument("etcd endpoint \"" + e +
                                  "\" is https:// but no CA file verifies the members");
    }
    if (!https && (!tls.ca.empty() || !tls.cert.empty())) {
      throw std::invalid_argument("etcd endpoint \"" + e + "\" is http:// but TLS files are given");
    }
    auto c = https && !tls.cert.empty() ? std::make_unique<httplib::Client>(e, tls.cert, tls.key)
                                        : std::make_unique<httplib::Client>(e);
    if (!c->is_valid()) {
      throw std::invalid_argument(
          https && !tls.cert.empty()
              ? "etcd client certificate " + tls.cert + " and key " + tls.key + ": cannot use them"
              : "etcd endpoint \"" + e + "\" is not valid");
    }
    if (https) {
      sluice::control::ignore_sigpipe_unless_handled();
      c->set_ca_cert_path(tls.ca);
      c->enable_server_certificate_verification(true);
    }
    set_timeouts(*c, timeout);
    clients_.push_back(std::move(c));
    names_.push_back(e);
  }
}

reply client::post(const std::string& path, const nlohmann::json& body, bool idempotent) {
  const std::string text = body.dump();
  reply last;
  last.outcome = reply::status::unreachable;
  std::string errors;
  const std::size_t n = clients_.size();
  const std::size_t start = current_.load();
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t idx = (start + i) % n;
    auto res = clients_[idx]->Post(path.c_str(), text, "application/json");
    if (!res) {
      const httplib::Error e = res.error();
      errors += (errors.empty() ? "" : "; ") + names_[idx] + ": " + httplib::to_string(e);
      if (not_connected(e) || idempotent) continue;
      last.outcome = reply::status::unknown;
      last.error = "outcome unknown: " + names_[idx] + ": " + httplib::to_string(e);
      return last;
    }
    current_.store(idx);
    nlohmann::json j = nlohmann::json::parse(res->body, nullptr, false);
    if (res->status == 200 && !j.is_discarded() && j.is_object()) {
      last.outcome = reply::status::ok;
      last.body = std::move(j);
      return last;
    }
    std::string message = "HTTP " + std::to_string(res->status);
    int code = 0;
    if (!j.is_discarded() && j.is_object()) {
      if (j.contains("message") && j["message"].is_string()) {
        message += ": " + j["message"].get<std::string>();
      }
      if (j.contains("code") && j["code"].is_number_integer()) code = j["code"].get<int>();
    }
    errors += (errors.empty() ? "" : "; ") + names_[idx] + ": " + message;
    if (code == grpc_unavailable) {
      // "no leader" on a member cut off from the others (try the next one), or "request timed
      // out", after which a write may still be applied.
      if (idempotent) continue;
      last.outcome = reply::status::unknown;
      last.error = "outcome unknown: " + names_[idx] + ": " + message;
      last.code = code;
      return last;
    }
    last.outcome = reply::status::error;
    last.error = names_[idx] + ": " + message;
    last.code = code;
    return last;
  }
  last.error = "no etcd endpoint answered: " + errors;
  return last;
}

bool client::stream(const std::string& path, const nlohmann::json& body,
                    const std::function<bool(const char*, std::size_t)>& on_data,
                    std::string& error) {
  const std::size_t idx = current_.load() % clients_.size();
  httplib::Request req;
  req.method = "POST";
  req.path = path;
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");
  int status = 0;
  req.response_handler = [&status](const httplib::Response& r) {
    status = r.status;
    return r.status == 200;
  };
  req.content_receiver = [&on_data](const char* data, std::size_t len, std::uint64_t,
                                    std::uint64_t) { return on_data(data, len); };
  auto res = clients_[idx]->send(req);
  if (!res) {
    if (not_connected(res.error())) current_.store((idx + 1) % clients_.size());
    error = names_[idx] + ": " + httplib::to_string(res.error());
    return false;
  }
  if (status != 200) {
    error = names_[idx] + ": HTTP " + std::to_string(status);
    current_.store((idx + 1) % clients_.size());
    return false;
  }
  return true;
}

void client::stop() {
  for (auto& c : clients_) c->stop();
}

}  // namespace sluice::control::store::etcd
