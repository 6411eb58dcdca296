#include "control/agent/http_transport.hpp"

#include <httplib.h>

#include <cctype>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <utility>

#include "control/common/sigpipe.hpp"
#include "control/pki/pki.hpp"

namespace sluice::control::agent {
namespace {

// "401 unauthorized: unknown token" from an error body of the API, else the status alone.
std::string describe_answer(const httplib::Response& res) {
  std::string text = std::to_string(res.status);
  const nlohmann::json j = nlohmann::json::parse(res.body, nullptr, false);
  if (j.is_object()) {
    if (auto e = j.find("error"); e != j.end() && e->is_string())
      text += " " + e->get<std::string>();
    if (auto m = j.find("message"); m != j.end() && m->is_string()) {
      text += ": " + m->get<std::string>();
    }
  }
  return text;
}

std::optional<std::string> read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// "" when the certificate and key files make an identity for `node_id`, else why not.
std::string check_identity(const http_transport_config& c) {
  if (c.client_cert_file.empty() != c.client_key_file.empty())
    return "a client certificate needs its key, and a key its certificate";
  if (c.client_cert_file.empty()) return "";
  const auto cert_text = read_text(c.client_cert_file);
  if (!cert_text) return "cannot read the node certificate " + c.client_cert_file;
  const auto key_text = read_text(c.client_key_file);
  if (!key_text) return "cannot read the node key " + c.client_key_file;
  std::string error;
  const auto cert = pki::certificate::parse(*cert_text, error);
  if (!cert) return c.client_cert_file + ": " + error;
  const auto key = pki::private_key::parse(*key_text, error);
  if (!key) return c.client_key_file + ": " + error;
  if (!cert->matches(*key))
    return c.client_key_file + " is not the key of the certificate " + c.client_cert_file;
  const auto cn = cert->common_name();
  if (!cn) return c.client_cert_file + " has no single subject CN (it must be the node id)";
  if (*cn != c.node_id)
    return "the node certificate " + c.client_cert_file + " is for node '" + *cn +
           "' (its CN), not for node id '" + c.node_id + "'";
  for (const std::string& url : c.urls)
    if (url.rfind("https://", 0) != 0)
      return "a client certificate is sent over TLS only: controller URL '" + url +
             "' is not https://";
  return "";
}

}  // namespace

std::string set_credentials(http_transport_config& c, const std::string& token_file,
                            const std::string& cert_file, const std::string& key_file,
                            const std::string& ca_file) {
  if (token_file.empty() && cert_file.empty())
    return "the node needs a credential: --node-cert and --node-key (mutual TLS), or "
           "--node-token-file";
  if (!token_file.empty()) {
    auto token = read_text(token_file);
    if (token) {
      while (!token->empty() && std::isspace(static_cast<unsigned char>(token->back()))) token->pop_back();
      while (!token->empty() && std::isspace(static_cast<unsigned char>(token->front()))) token->erase(0, 1);
    }
    if (!token || token->empty()) return "--node-token-file " + token_file + " is unreadable or empty";
    c.token = *token;
  }
  c.client_cert_file = cert_file;
  c.client_key_file = key_file;
  c.ca_file = ca_file;
  if (std::string why = check_identity(c); !why.empty()) return why;
  if (!ca_file.empty() && !read_text(ca_file)) return "cannot read --controller-ca " + ca_file;
  return "";
}

std::unique_ptr<http_transport> http_transport::create(http_transport_config config,
                                                       std::string& error) {
  if (config.urls.empty()) {
    error = "no controller URL";
    return nullptr;
  }
  if (!valid_node_id(config.node_id)) {
    error = "invalid node id '" + config.node_id + "'";
    return nullptr;
  }
  if (std::string why = check_identity(config); !why.empty()) {
    error = std::move(why);
    return nullptr;
  }
  if (!config.ca_file.empty() && !read_text(config.ca_file)) {
    error = "cannot read the controller CA file " + config.ca_file;
    return nullptr;
  }
  std::unique_ptr<http_transport> t(new http_transport(std::move(config)));
  for (const std::string& url : t->config_.urls) {
    if (url.rfind("https://", 0) == 0) ignore_sigpipe_unless_handled();  // a controller may close first
    const bool scheme = url.rfind("http://", 0) == 0 || url.rfind("https://", 0) == 0;
    const std::size_t host_at = url.find("://") + 3;
    if (!scheme || url.find('/', host_at) != std::string::npos) {
      error = "controller URL '" + url + "' is not http(s)://HOST[:PORT]";
      return nullptr;
    }
    const auto& cfg = t->config_;
    auto c = cfg.client_cert_file.empty()
                 ? std::make_unique<httplib::Client>(url)
                 : std::make_unique<httplib::Client>(url, cfg.client_cert_file, cfg.client_key_file);
    if (!c->is_valid()) {
      error = cfg.client_cert_file.empty()
                  ? "controller URL '" + url + "' is not http(s)://HOST[:PORT]"
                  : "controller URL '" + url + "': cannot use the node certificate and key";
      return nullptr;
    }
    if (!cfg.ca_file.empty()) c->set_ca_cert_path(cfg.ca_file);
    c->enable_server_certificate_verification(true);
    t->clients_.push_back(std::move(c));
  }
  return t;
}

http_transport::http_transport(http_transport_config config) : config_(std::move(config)) {}

http_transport::~http_transport() = default;

httplib::Client& http_transport::client(std::size_t i) {
  httplib::Client& c = *clients_[i];
  c.set_connection_timeout(static_cast<time_t>(config_.connect_timeout.count()));
  if (!config_.token.empty()) c.set_bearer_token_auth(config_.token);
  return c;
}

std::string http_transport::try_each(std::chrono::seconds read_timeout,
                                     const std::function<httplib::Result(httplib::Client&)>& send,
                                     const std::function<bool(const httplib::Result&)>& accept,
                                     std::string& last_url) {
  std::string errors;
  for (std::size_t attempt = 0; attempt < clients_.size(); ++attempt) {
    if (interrupted_.load()) return "interrupted";
    const std::size_t i = (current_ + attempt) % clients_.size();
    last_url = config_.urls[i];
    httplib::Client& c = client(i);
    c.set_read_timeout(static_cast<time_t>(read_timeout.count()));
    const httplib::Result res = send(c);
    if (res && accept(res)) {
      current_ = i;
      return {};
    }
    if (!errors.empty()) errors += "; ";
    errors +=
        config_.urls[i] + ": " + (res ? describe_answer(*res) : httplib::to_string(res.error()));
  }
  current_ = (current_ + 1) % clients_.size();  // start with another one next time
  return interrupted_.load() ? "interrupted" : errors;
}

fetch_result http_transport::fetch(std::uint64_t held, std::chrono::seconds wait,
                                   std::string_view status) {
  fetch_result out;
  const std::string path =
      "/v1/nodes/" + config_.node_id + "/snapshot?wait=" + std::to_string(wait.count());
  httplib::Headers headers{{"X-Sluice-Labels", format_labels(config_.labels)}};
  if (held != 0) headers.emplace("If-None-Match", "\"" + std::to_string(held) + "\"");
  if (!status.empty()) headers.emplace(std::string(status_header_name), std::string(status));
  out.error = try_each(
      wait + config_.request_timeout, [&](httplib::Client& c) { return c.Get(path, headers); },
      [&](const httplib::Result& res) {
        if (res->status != 200 && res->status != 304) return false;
        out.status = res->status == 200 ? fetch_status::snapshot : fetch_status::not_modified;
        out.body = res->body;
        out.checkpoint = res->get_header_value("X-Sluice-Audit-Checkpoint");
        out.status_carry =
            res->get_header_value(std::string(status_carry_header_name).c_str()) == "yes";
        return true;
      },
      out.controller);
  return out;
}

post_result http_transport::post_status(const status_report& report) {
  return post_node_json("status", status_json(report));
}

post_result http_transport::post_impact(const std::string& body) {
  return post_node_json("impact", body);
}

post_result http_transport::post_node_json(const char* what, const std::string& body) {
  post_result out;
  const std::string path = "/v1/nodes/" + config_.node_id + "/" + what;
  const httplib::Headers headers{{"X-Sluice-Labels", format_labels(config_.labels)}};
  std::string last_url;
  out.error = try_each(
      config_.request_timeout,
      [&](httplib::Client& c) { return c.Post(path, headers, body, "application/json"); },
      [](const httplib::Result& res) { return res->status >= 200 && res->status < 300; }, last_url);
  out.ok = out.error.empty();
  return out;
}

void http_transport::interrupt() {
  interrupted_.store(true);
  // Client::stop() shuts the socket of a request in flight down, which is what makes a
  // long-poll return now rather than after its wait.
  std::lock_guard lock(client_mutex_);
  for (auto& c : clients_) c->stop();
}

}  // namespace sluice::control::agent
