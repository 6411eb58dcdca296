#include "control/api/http_server.hpp"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/socket.h>

#include <algorithm>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <limits>
#include <list>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <type_traits>

#include "control/api/tls_stream.hpp"

namespace sluice::control::api {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// %XX decoded; `plus_is_space` for query components. A malformed escape stays as written.
std::string percent_decode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      const int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out += static_cast<char>(hi * 16 + lo);
        i += 2;
        continue;
      }
    }
    out += plus_is_space && s[i] == '+' ? ' ' : s[i];
  }
  return out;
}

std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> out;
  std::size_t pos = 0;
  while (pos <= path.size()) {
    const std::size_t slash = path.find('/', pos);
    const std::size_t end = slash == std::string_view::npos ? path.size() : slash;
    out.push_back(path.substr(pos, end - pos));
    if (slash == std::string_view::npos) break;
    pos = slash + 1;
  }
  return out;
}

struct route_entry {
  std::string method;
  std::vector<std::string> segments;  // "{...}" matches any one non-empty segment
  std::string label;
  run_on where = run_on::io;
  admission_fn admit;  // empty: admitted with max_body_bytes
  handler h;
};

constexpr std::array<std::string_view, static_cast<std::size_t>(refusal::count)> refusal_names{
#define X(name) #name,
    SLUICE_HTTP_REFUSALS(X)
#undef X
};

std::string openssl_error() {
  std::string out;
  while (const unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "unknown OpenSSL error" : out;
}

// TLS 1.2 suites: ECDHE (forward secrecy) with AEAD ciphers only. TLS 1.3 keeps OpenSSL's
// defaults (all AEAD).
constexpr const char* tls12_ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

std::shared_ptr<net::ssl::context> make_tls_context(const server_options& o) {
  auto ctx = std::make_shared<net::ssl::context>(net::ssl::context::tls_server);
  SSL_CTX* c = ctx->native_handle();
  const auto fail = [&](const std::string& what) -> std::runtime_error {
    return std::runtime_error("TLS: " + what + ": " + openssl_error());
  };
  ERR_clear_error();
  ctx->set_options(net::ssl::context::default_workarounds | net::ssl::context::no_sslv2 |
                   net::ssl::context::no_sslv3 | net::ssl::context::no_tlsv1 |
                   net::ssl::context::no_tlsv1_1);
  SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                             SSL_OP_NO_COMPRESSION);
  if (SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION) != 1) throw fail("minimum version");
  if (SSL_CTX_set_cipher_list(c, tls12_ciphers) != 1) throw fail("cipher list");
  tls_stream::prepare_context(c);
  if (SSL_CTX_use_certificate_chain_file(c, o.tls_cert.c_str()) != 1)
    throw fail("certificate " + o.tls_cert.string());
  if (SSL_CTX_use_PrivateKey_file(c, o.tls_key.c_str(), SSL_FILETYPE_PEM) != 1)
    throw fail("key " + o.tls_key.string());
  if (SSL_CTX_check_private_key(c) != 1)
    throw fail("key " + o.tls_key.string() + " does not match " + o.tls_cert.string());
  if (!o.tls_client_ca.empty()) {
    if (SSL_CTX_load_verify_locations(c, o.tls_client_ca.c_str(), nullptr) != 1)
      throw fail("client CA " + o.tls_client_ca.string());
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(o.tls_client_ca.c_str());
    if (names == nullptr) throw fail("client CA names " + o.tls_client_ca.string());
    SSL_CTX_set_client_CA_list(c, names);
    // Asked for, verified when presented (a bad one fails the handshake), not required.
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER, nullptr);
    SSL_CTX_set_verify_depth(c, 4);
    static constexpr unsigned char sid[] = "sluice-controld";
    SSL_CTX_set_session_id_context(c, sid, sizeof sid - 1);
  }
  return ctx;
}

// The verified client certificate of a finished handshake.
peer_identity peer_of(SSL* ssl) {
  peer_identity p;
  X509* cert = SSL_get0_peer_certificate(ssl);
  if (cert == nullptr || SSL_get_verify_result(ssl) != X509_V_OK) return p;
  p.verified = true;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (X509_digest(cert, EVP_sha256(), md, &len) == 1) {
    static constexpr char hex[] = "0123456789abcdef";
    for (unsigned int i = 0; i < len; ++i) {
      p.fingerprint += hex[md[i] >> 4];
      p.fingerprint += hex[md[i] & 0xf];
    }
  }
  const X509_NAME* subject = X509_get_subject_name(cert);
  const int at = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  if (at < 0 || X509_NAME_get_index_by_NID(subject, NID_commonName, at) >= 0) return p;  // none or two
  const ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, at));
  unsigned char* utf8 = nullptr;
  const int n = ASN1_STRING_to_UTF8(&utf8, data);
  if (n > 0) {
    const std::string cn(reinterpret_cast<const char*>(utf8), static_cast<std::size_t>(n));
    const bool ok = cn.size() <= 64 && std::all_of(cn.begin(), cn.end(), [](char ch) {
      return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
             ch == '_' || ch == '.' || ch == '-';
    });
    if (ok) p.common_name = cn;
  }
  OPENSSL_free(utf8);
  return p;
}

template <class Fields>
void fill_request(request& q, const http::request_header<Fields>& h) {
  q.method = std::string(h.method_string());
  parse_target(std::string_view(h.target().data(), h.target().size()), q.path, q.params);
  for (const auto& f : h) q.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
}

class session_base {
 public:
  virtual ~session_base() = default;
  // Posted by stop(): runs on the session's executor.
  virtual void server_stopping() = 0;
};

}  // namespace

void parse_target(std::string_view target, std::string& path, std::map<std::string, std::string>& params) {
  const auto qmark = target.find('?');
  path = percent_decode(target.substr(0, qmark), false);
  if (qmark == std::string_view::npos) return;
  std::string_view query = target.substr(qmark + 1);
  while (!query.empty()) {
    const auto amp = query.find('&');
    const std::string_view kv = query.substr(0, amp);
    const auto eq = kv.find('=');
    if (!kv.empty())
      params.emplace(percent_decode(kv.substr(0, eq), true),
                     eq == std::string_view::npos ? std::string() : percent_decode(kv.substr(eq + 1), true));
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
}

std::string_view to_string(refusal r) noexcept {
  const auto i = static_cast<std::size_t>(r);
  return i < refusal_names.size() ? refusal_names[i] : std::string_view("unknown");
}

namespace {

// A JSON string's content: quotes, backslashes and control bytes escaped (bytes >= 0x80 pass).
std::string json_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (const char ch : s) {
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (static_cast<unsigned char>(ch) < 0x20) {
      static constexpr char hex[] = "0123456789abcdef";
      out += "\\u00";
      out += hex[(ch >> 4) & 0xf];
      out += hex[ch & 0xf];
    } else {
      out += ch;
    }
  }
  return out;
}

}  // namespace

response error_response(int status, std::string_view code, std::string_view message) {
  response r;
  r.status = status;
  r.set_body("{\"error\":\"" + json_escape(code) + "\",\"message\":\"" + json_escape(message) + "\"}",
             "application/json");
  return r;
}

std::string request::header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (beast::iequals(k, beast::string_view(name.data(), name.size()))) return v;
  return {};
}

std::string request::param(const std::string& name) const {
  const auto it = params.find(name);
  return it == params.end() ? std::string() : it->second;
}

void response::set_body(std::string text, std::string type) {
  body = std::make_shared<const std::string>(std::move(text));
  content_type = std::move(type);
}

struct responder::state {
  std::function<void(response)> deliver;  // hands the answer to the connection's executor
  std::atomic<bool> sent{false};

  ~state() {
    if (!sent.exchange(true) && deliver)
      deliver(error_response(500, "internal", "the request was dropped unanswered"));
  }
};

void responder::send(response r) const {
  if (state_->sent.exchange(true)) return;
  // Only the winner of `sent` touches `deliver`; dropping it here releases the connection
  // (a long poll's responder outlives its answer until its timer ends).
  const auto deliver = std::move(state_->deliver);
  deliver(std::move(r));
}

struct http_server::impl {
  // Declared first, destroyed last: sessions torn down with the io_context still count.
  server_counters counters;
  server_options opt;
  std::vector<route_entry> routes;
  std::function<void(const std::string&, int)> observer;
  std::atomic<bool> stopping{false};

  std::mutex tls_mutex;
  std::shared_ptr<net::ssl::context> tls;  // for new handshakes; sessions hold theirs

  std::mutex sessions_mutex;
  std::list<std::weak_ptr<session_base>> sessions;

  net::io_context ioc;
  tcp::acceptor acceptor{ioc};
  net::steady_timer retry{ioc};
  net::steady_timer stop_timer{ioc};
  std::chrono::steady_clock::time_point stop_deadline;
  std::uint16_t bound_port = 0;
  net::thread_pool blocking;

  explicit impl(server_options o)
      : opt(std::move(o)), ioc(static_cast<int>(std::max(1u, opt.io_threads))),
        blocking(std::max(1u, opt.blocking_threads)) {}

  ~impl() {
    blocking.stop();
    blocking.join();
  }

  void count(refusal r) {
    ++counters.refused[static_cast<std::size_t>(r)];
    if (r != refusal::connection_limit) ++counters.requests_refused;
  }

  std::shared_ptr<net::ssl::context> current_tls() {
    std::lock_guard lock(tls_mutex);
    return tls;
  }

  const route_entry* match(std::string_view method, std::string_view path,
                           std::vector<std::string>& matches, bool& path_known) const {
    const auto parts = split_path(path);
    path_known = false;
    for (const auto& r : routes) {
      if (r.segments.size() != parts.size()) continue;
      std::vector<std::string> m;
      bool ok = true;
      for (std::size_t i = 0; ok && i < parts.size(); ++i) {
        const std::string& seg = r.segments[i];
        if (seg.size() >= 2 && seg.front() == '{' && seg.back() == '}') {
          ok = !parts[i].empty();
          if (ok) m.emplace_back(parts[i]);
        } else {
          ok = seg == parts[i];
        }
      }
      if (!ok) continue;
      path_known = true;
      if (r.method != method) continue;
      matches = std::move(m);
      return &r;
    }
    return nullptr;
  }

  // Route, admission and the declared body's size, on a request whose head only was read.
  struct head_outcome {
    const route_entry* route = nullptr;
    std::optional<response> refused;
    bool close_after = true;  // refused: close the connection after the answer
    std::size_t body_limit = 0;
  };
  head_outcome admit_head(request& q, std::optional<std::uint64_t> content_length) {
    head_outcome out;
    bool path_known = false;
    out.route = match(q.method, q.path, q.matches, path_known);
    if (out.route == nullptr) {
      count(refusal::not_found);
      out.refused = path_known ? error_response(405, "method_not_allowed", "method not allowed")
                               : error_response(404, "not_found", "no such path");
      out.close_after = false;  // the caller closes when a body is pending
      return out;
    }
    admission a;
    try {
      a = out.route->admit ? out.route->admit(q) : admission::admit(opt.max_body_bytes);
    } catch (const std::exception&) {
      out.refused = error_response(500, "internal", "the request failed");
      return out;
    }
    if (a.refused) {
      count(a.reason);
      out.refused = std::move(a.refused);
      return out;
    }
    out.body_limit = std::min(a.body_limit, opt.max_body_bytes);
    if (content_length && *content_length > out.body_limit) {
      count(refusal::too_large);
      out.refused = error_response(413, "too_large",
                                   "request body over this route's limit of " +
                                       std::to_string(out.body_limit) + " bytes");
      return out;
    }
    q.admitted = std::move(a.principal);
    return out;
  }

  void accept();
  void begin_stop();
  void wait_drained();
};

namespace {

template <class Stream>
class session final : public session_base, public std::enable_shared_from_this<session<Stream>> {
  static constexpr bool tls = !std::is_same_v<Stream, beast::tcp_stream>;
  enum class phase : std::uint8_t { handshake, idle, head, body, handling, writing, lingering, closed };

 public:
  session(http_server::impl& srv, Stream stream, std::shared_ptr<net::ssl::context> ctx)
      : srv_(srv), stream_(std::move(stream)), tls_(std::move(ctx)) {}
  ~session() override {
    if (registered_) {
      std::lock_guard lock(srv_.sessions_mutex);
      srv_.sessions.erase(*registered_);
    }
    --srv_.counters.connections_open;
  }

  void start() {
    {
      std::lock_guard lock(srv_.sessions_mutex);
      registered_ = srv_.sessions.insert(srv_.sessions.end(), this->weak_from_this());
    }
    beast::error_code ec;
    const auto ep = beast::get_lowest_layer(stream_).socket().remote_endpoint(ec);
    if (!ec) remote_ = ep.address().to_string();
    if constexpr (!tls) {
      read_next();
    } else {
      phase_ = phase::handshake;
      beast::get_lowest_layer(stream_).expires_after(srv_.opt.handshake_timeout);
      stream_.async_handshake(tls_stream::role::server,
                              [self = this->shared_from_this()](beast::error_code e) {
                                beast::get_lowest_layer(self->stream_).expires_never();
                                if (e) {
                                  if (!self->srv_.stopping) self->srv_.count(refusal::tls_handshake);
                                  return self->close();
                                }
                                self->peer_ = peer_of(self->stream_.native_handle());
                                self->read_next();
                              });
    }
  }

  void server_stopping() override {
    net::post(stream_.get_executor(), [self = this->shared_from_this()] { self->on_stopping(); });
  }

 private:
  // The next request: its first byte within idle_timeout (the first request's head is timed
  // from the connection's start), then its head within header_timeout.
  void read_next() {
    if (srv_.stopping) return close();
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(srv_.opt.max_header_bytes));
    // Admission sets the limit; the declared Content-Length is checked there. (Not boost::none:
    // Beast 1.74 compares a Content-Length against an empty limit as over it.)
    parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
    request_.reset();
    route_ = nullptr;
    label_.clear();
    if (first_ || buffer_.size() > 0) {
      first_ = false;
      return read_head();
    }
    phase_ = phase::idle;
    beast::get_lowest_layer(stream_).expires_after(srv_.opt.idle_timeout);
    stream_.async_read_some(buffer_.prepare(4096),
                            [self = this->shared_from_this()](beast::error_code ec, std::size_t n) {
                              beast::get_lowest_layer(self->stream_).expires_never();
                              if (ec || n == 0) return self->close();  // idle end: no refusal
                              self->buffer_.commit(n);
                              self->read_head();
                            });
  }

  void read_head() {
    phase_ = phase::head;
    beast::get_lowest_layer(stream_).expires_after(srv_.opt.header_timeout);
    http::async_read_header(stream_, buffer_, *parser_,
                            [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
                              self->on_head(ec);
                            });
  }

  // Refusals before a route is known, or with the body unread: answered, then closed.
  void refuse_and_close(response r) {
    keep_alive_ = false;
    linger_ = true;
    write(std::move(r));
  }

  void on_head(beast::error_code ec) {
    beast::get_lowest_layer(stream_).expires_never();
    if (ec) {
      if (ec == beast::error::timeout) {
        srv_.count(refusal::header_timeout);
        return close();
      }
      if (ec == http::error::end_of_stream || ec == net::error::operation_aborted ||
          ec == net::error::eof || ec == net::error::connection_reset || srv_.stopping)
        return close();
      version_ = 11;
      if (ec == http::error::header_limit) {
        srv_.count(refusal::header_too_large);
        return refuse_and_close(error_response(431, "too_large", "request headers over the limit"));
      }
      srv_.count(refusal::malformed);
      return refuse_and_close(error_response(400, "bad_request", "malformed HTTP request"));
    }
    const auto& head = parser_->get();
    keep_alive_ = head.keep_alive();
    version_ = head.version();
    request_.emplace();
    request& q = *request_;
    fill_request(q, head.base());
    q.remote_address = remote_;
    q.peer = peer_;
    const bool body_pending = !parser_->is_done();
    auto verdict = srv_.admit_head(q, parser_->content_length() ? std::optional<std::uint64_t>(*parser_->content_length())
                                                                : std::nullopt);
    route_ = verdict.route;
    label_ = route_ != nullptr ? route_->label : std::string();
    if (verdict.refused) {
      if (verdict.close_after || body_pending) return refuse_and_close(std::move(*verdict.refused));
      return write(std::move(*verdict.refused));
    }
    if (!body_pending) return dispatch();
    parser_->body_limit(verdict.body_limit);
    if (version_ >= 11 && beast::iequals(head[http::field::expect], "100-continue")) {
      // The client waits for this before sending its body: only now that it is admitted.
      phase_ = phase::writing;
      static constexpr std::string_view go = "HTTP/1.1 100 Continue\r\n\r\n";
      beast::get_lowest_layer(stream_).expires_after(srv_.opt.write_timeout);
      return net::async_write(stream_, net::buffer(go.data(), go.size()),
                              [self = this->shared_from_this()](beast::error_code e, std::size_t) {
                                beast::get_lowest_layer(self->stream_).expires_never();
                                if (e || self->srv_.stopping) return self->close();
                                self->read_body();
                              });
    }
    read_body();
  }

  void read_body() {
    phase_ = phase::body;
    beast::get_lowest_layer(stream_).expires_after(srv_.opt.body_timeout);
    http::async_read(stream_, buffer_, *parser_,
                     [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
                       self->on_body(ec);
                     });
  }

  void on_body(beast::error_code ec) {
    beast::get_lowest_layer(stream_).expires_never();
    if (ec) {
      if (ec == beast::error::timeout) {
        srv_.count(refusal::body_timeout);
        return close();
      }
      if (ec == http::error::end_of_stream || ec == net::error::operation_aborted ||
          ec == net::error::eof || ec == net::error::connection_reset || srv_.stopping)
        return close();
      if (ec == http::error::body_limit) {
        srv_.count(refusal::too_large);
        return refuse_and_close(error_response(413, "too_large", "request body over this route's limit"));
      }
      srv_.count(refusal::malformed);
      return refuse_and_close(error_response(400, "bad_request", "malformed HTTP request body"));
    }
    request_->body = std::move(parser_->get().body());
    dispatch();
  }

  void dispatch() {
    phase_ = phase::handling;
    auto st = std::make_shared<responder::state>();
    st->deliver = [self = this->shared_from_this()](response r) {
      net::post(self->stream_.get_executor(),
                [self, r = std::move(r)]() mutable { self->write(std::move(r)); });
    };
    pending_ = st;
    const responder out(std::move(st));
    const route_entry* r = route_;
    if (r->where == run_on::io) run_handler(*r, *request_, out);
    else net::post(srv_.blocking, [r, q = std::move(*request_), out] { run_handler(*r, q, out); });
    // A long poll waits in this state for minutes: keep no more than the connection needs
    // (the parsed head and an empty read buffer are a few KiB per waiting node).
    request_.reset();
    parser_.reset();
    if (buffer_.size() == 0) buffer_.shrink_to_fit();
  }

  static void run_handler(const route_entry& r, const request& q, const responder& out) {
    try {
      r.h(q, out);
    } catch (const std::exception&) {
      out.send(error_response(500, "internal", "the request failed"));
    }
  }

  void on_stopping() {
    switch (phase_) {
      case phase::handshake:
      case phase::idle:
      case phase::head:
      case phase::body:
      case phase::lingering:
        return close();
      case phase::handling:
        if (route_ != nullptr && route_->where == run_on::io) {
          // A long poll: answered now. A blocking handler in progress finishes (write() closes).
          const auto st = pending_.lock();
          if (st && !st->sent.exchange(true)) {
            st->deliver = nullptr;
            srv_.count(refusal::shutting_down);
            response r = error_response(503, "shutting_down", "the controller is stopping; retry");
            r.headers.emplace_back("Retry-After", "1");
            write(std::move(r));
          }
        }
        return;
      case phase::writing:
      case phase::closed:
        return;
    }
  }

  // The head is written by hand and sent with the (shared) body in one gather write: Beast's
  // serializer cost more than the rest of answering a node (issue 13's profile).
  void write(response r) {
    if (phase_ == phase::closed) return;
    phase_ = phase::writing;
    pending_.reset();
    if (srv_.observer) srv_.observer(label_, r.status);
    if (srv_.stopping) keep_alive_ = false;
    const bool bodiless = r.status == 204 || r.status == 304 || (r.status >= 100 && r.status < 200);
    body_ = bodiless ? nullptr : std::move(r.body);
    head_.clear();
    head_ += version_ == 10 ? "HTTP/1.0 " : "HTTP/1.1 ";
    head_ += std::to_string(r.status);
    head_ += ' ';
    const auto reason = http::obsolete_reason(http::int_to_status(static_cast<unsigned>(r.status)));
    head_.append(reason.data(), reason.size());
    head_ += "\r\nServer: sluice-controld\r\n";
    if (!r.content_type.empty() && !bodiless) head_ += "Content-Type: " + r.content_type + "\r\n";
    for (const auto& [k, v] : r.headers) head_ += k + ": " + v + "\r\n";
    if (!bodiless) head_ += "Content-Length: " + std::to_string(body_ ? body_->size() : 0) + "\r\n";
    if (version_ == 10 && keep_alive_) head_ += "Connection: keep-alive\r\n";
    if (version_ != 10 && !keep_alive_) head_ += "Connection: close\r\n";
    head_ += "\r\n";
    // Over TLS, tls_stream coalesces the two buffers into one record (no copy kept here: a
    // waiting connection holds only its short head string).
    const std::array<net::const_buffer, 2> out{
        net::buffer(head_), body_ ? net::buffer(*body_) : net::const_buffer()};
    beast::get_lowest_layer(stream_).expires_after(srv_.opt.write_timeout);
    net::async_write(stream_, out, [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
      beast::get_lowest_layer(self->stream_).expires_never();
      self->body_.reset();
      if (ec) return self->close();
      if (self->linger_ && !self->srv_.stopping) return self->linger();
      if (!self->keep_alive_ || self->srv_.stopping) return self->close();
      self->read_next();
    });
  }

  // After a refusal whose body was not read: stop sending, then discard what the client is
  // still sending for a little while (at most linger_bytes, linger_time) before closing, so
  // that a client which writes its whole body before reading sees the answer rather than a
  // reset. Bounded: a 1 GB sender is cut after linger_bytes.
  static constexpr std::size_t linger_bytes = 256 * 1024;
  static constexpr std::chrono::milliseconds linger_time{1000};
  void linger() {
    phase_ = phase::lingering;
    beast::error_code ignored;
    auto& tcp_layer = beast::get_lowest_layer(stream_);
    tcp_layer.socket().shutdown(tcp::socket::shutdown_send, ignored);
    buffer_.clear();
    tcp_layer.expires_after(linger_time);
    drain();
  }
  void drain() {
    auto& tcp_layer = beast::get_lowest_layer(stream_);
    tcp_layer.async_read_some(buffer_.prepare(16384),
                              [self = this->shared_from_this()](beast::error_code ec, std::size_t n) {
                                self->lingered_ += n;
                                if (ec || self->lingered_ >= linger_bytes) {
                                  beast::get_lowest_layer(self->stream_).expires_never();
                                  return self->close();
                                }
                                self->drain();
                              });
  }

  void close() {
    phase_ = phase::closed;
    pending_.reset();
    beast::error_code ignored;
    beast::get_lowest_layer(stream_).socket().shutdown(tcp::socket::shutdown_both, ignored);
    beast::get_lowest_layer(stream_).socket().close(ignored);
  }

  http_server::impl& srv_;
  Stream stream_;
  std::shared_ptr<net::ssl::context> tls_;  // the context this connection's handshake used
  std::optional<std::list<std::weak_ptr<session_base>>::iterator> registered_;
  std::string remote_;
  peer_identity peer_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::optional<request> request_;
  const route_entry* route_ = nullptr;
  std::string label_;
  std::weak_ptr<responder::state> pending_;  // the request's answer, while a handler has it
  std::string head_;
  std::shared_ptr<const std::string> body_;
  phase phase_ = phase::idle;
  bool keep_alive_ = false;
  bool linger_ = false;
  std::size_t lingered_ = 0;
  unsigned version_ = 11;
  bool first_ = true;
};

}  // namespace

void http_server::impl::accept() {
  // One io thread needs no strand (every handler already runs on it, in order); strands
  // cost a noticeable share of serving a node (issue 13's profile).
  const net::any_io_executor ex =
      opt.io_threads <= 1 ? net::any_io_executor(ioc.get_executor()) : net::any_io_executor(net::make_strand(ioc));
  acceptor.async_accept(ex, [this](beast::error_code ec, tcp::socket sock) {
    if (stopping || ec == net::error::operation_aborted) return;
    if (ec) {
      // Out of file descriptors, most likely: try again shortly rather than spin.
      retry.expires_after(std::chrono::milliseconds(100));
      retry.async_wait([this](beast::error_code e) {
        if (!e && !stopping) accept();
      });
      return;
    }
    if (counters.connections_open.load() >= opt.max_connections) {
      ++counters.connections_refused;
      count(refusal::connection_limit);
      beast::error_code ignored;
      sock.close(ignored);
    } else {
      ++counters.connections_open;
      ++counters.connections_accepted;
      beast::error_code ignored;
      sock.set_option(tcp::no_delay(true), ignored);
      if (auto ctx = current_tls()) {
        auto& c = *ctx;
        std::shared_ptr<session<tls_stream>> s;
        try {
          s = std::make_shared<session<tls_stream>>(*this, tls_stream(std::move(sock), c.native_handle()),
                                                    std::move(ctx));
        } catch (const std::exception&) {  // out of memory in OpenSSL: this connection only
          --counters.connections_open;
          count(refusal::tls_handshake);
        }
        if (s) s->start();
      } else {
        std::make_shared<session<beast::tcp_stream>>(*this, beast::tcp_stream(std::move(sock)), nullptr)
            ->start();
      }
    }
    accept();
  });
}

// On the event loop: no new connections; every open one is told (on its own executor); run()
// ends once all are closed or stop_grace has passed.
void http_server::impl::begin_stop() {
  beast::error_code ignored;
  acceptor.close(ignored);
  retry.cancel();
  std::vector<std::shared_ptr<session_base>> live;
  {
    std::lock_guard lock(sessions_mutex);
    live.reserve(sessions.size());
    for (const auto& w : sessions)
      if (auto s = w.lock()) live.push_back(std::move(s));
  }
  for (const auto& s : live) s->server_stopping();
  live.clear();
  stop_deadline = std::chrono::steady_clock::now() + opt.stop_grace;
  wait_drained();
}

void http_server::impl::wait_drained() {
  if (counters.connections_open.load() == 0 || std::chrono::steady_clock::now() >= stop_deadline) {
    ioc.stop();
    return;
  }
  stop_timer.expires_after(std::chrono::milliseconds(5));
  stop_timer.async_wait([this](beast::error_code) { wait_drained(); });
}

http_server::http_server(server_options options) : impl_(std::make_unique<impl>(std::move(options))) {
  impl& s = *impl_;
  if (!s.opt.tls_cert.empty() || !s.opt.tls_key.empty()) s.tls = make_tls_context(s.opt);
  else if (!s.opt.tls_client_ca.empty())
    throw std::runtime_error("TLS: a client CA needs a server certificate and key");
  try {
    const tcp::endpoint ep(net::ip::make_address(s.opt.host), s.opt.port);
    s.acceptor.open(ep.protocol());
    s.acceptor.set_option(tcp::acceptor::reuse_address(true));
    s.acceptor.bind(ep);
    s.acceptor.listen(SOMAXCONN);  // a revision brings every node back at once
    s.bound_port = s.acceptor.local_endpoint().port();
  } catch (const boost::system::system_error& e) {
    throw std::runtime_error("cannot listen on " + s.opt.host + ":" + std::to_string(s.opt.port) +
                             ": " + e.what());
  }
}

http_server::~http_server() = default;

void http_server::route(std::string method, std::string pattern, run_on where, admission_fn admit,
                        handler h) {
  route_entry r;
  r.label = method + " " + pattern;
  r.method = std::move(method);
  for (auto seg : split_path(pattern)) r.segments.emplace_back(seg);
  r.where = where;
  r.admit = std::move(admit);
  r.h = std::move(h);
  impl_->routes.push_back(std::move(r));
}

void http_server::route(std::string method, std::string pattern, run_on where, handler h) {
  route(std::move(method), std::move(pattern), where, admission_fn(), std::move(h));
}

void http_server::on_answer(std::function<void(const std::string&, int)> observer) {
  impl_->observer = std::move(observer);
}

void http_server::run() {
  impl& s = *impl_;
  s.accept();
  std::vector<std::thread> threads;
  for (unsigned i = 1; i < std::max(1u, s.opt.io_threads); ++i)
    threads.emplace_back([&s] { s.ioc.run(); });
  s.ioc.run();
  for (auto& t : threads) t.join();
  // Handlers still running on the blocking threads use what the caller owns (the API, the
  // controller): they finish before run() returns; queued ones are dropped (answered 500).
  s.blocking.stop();
  s.blocking.join();
}

void http_server::stop() {
  if (impl_->stopping.exchange(true)) return;
  net::post(impl_->ioc, [s = impl_.get()] { s->begin_stop(); });
}

std::optional<std::string> http_server::reload_tls() {
  impl& s = *impl_;
  if (!s.current_tls()) return std::nullopt;
  try {
    auto fresh = make_tls_context(s.opt);
    std::lock_guard lock(s.tls_mutex);
    s.tls = std::move(fresh);
  } catch (const std::exception& e) {
    ++s.counters.tls_reload_failures;
    return std::string(e.what());
  }
  ++s.counters.tls_reloads;
  return std::nullopt;
}

void http_server::post_blocking(std::function<void()> work) { net::post(impl_->blocking, std::move(work)); }

head_verdict http_server::inspect_head(std::string_view raw, const std::string& remote_address,
                                       const peer_identity& peer) {
  impl& s = *impl_;
  head_verdict v;
  http::request_parser<http::empty_body> p;
  p.header_limit(static_cast<std::uint32_t>(s.opt.max_header_bytes));
  p.body_limit(std::numeric_limits<std::uint64_t>::max());
  p.eager(false);
  beast::error_code ec;
  std::size_t used = 0;
  while (!p.is_header_done() && used < raw.size()) {
    const std::size_t n = p.put(net::buffer(raw.data() + used, raw.size() - used), ec);
    if (ec == http::error::need_more) ec = {};
    if (ec || n == 0) break;
    used += n;
  }
  if (!p.is_header_done()) {
    v.status = ec == http::error::header_limit ? 431 : 400;
    s.count(ec == http::error::header_limit ? refusal::header_too_large : refusal::malformed);
    return v;
  }
  request q;
  fill_request(q, p.get().base());
  q.remote_address = remote_address;
  q.peer = peer;
  auto out = s.admit_head(q, p.content_length() ? std::optional<std::uint64_t>(*p.content_length())
                                                : std::nullopt);
  v.route = out.route != nullptr ? out.route->label : std::string();
  if (out.refused) {
    v.status = out.refused->status;
    return v;
  }
  v.body_limit = out.body_limit;
  return v;
}

std::uint16_t http_server::port() const { return impl_->bound_port; }
const server_counters& http_server::counters() const { return impl_->counters; }
boost::asio::io_context& http_server::context() { return impl_->ioc; }

}  // namespace sluice::control::api
