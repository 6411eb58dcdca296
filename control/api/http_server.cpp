#include "control/api/http_server.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <stdexcept>
#include <thread>
#include <type_traits>

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

response error_response(int status, std::string_view code, std::string_view message) {
  response r;
  r.status = status;
  r.set_body("{\"error\":\"" + std::string(code) + "\",\"message\":\"" + std::string(message) + "\"}",
             "application/json");
  return r;
}

struct route_entry {
  std::string method;
  std::vector<std::string> segments;  // "{...}" matches any one non-empty segment
  std::string label;
  run_on where = run_on::io;
  handler h;
};

}  // namespace

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
  std::function<void(response)> deliver;  // hands the answer to the connection's strand
  std::atomic<bool> sent{false};

  ~state() {
    if (!sent.exchange(true) && deliver)
      deliver(error_response(500, "internal", "the request was dropped unanswered"));
  }
};

void responder::send(response r) const {
  if (state_->sent.exchange(true)) return;
  state_->deliver(std::move(r));
}

struct http_server::impl {
  // Declared first, destroyed last: sessions torn down with the io_context still count.
  server_counters counters;
  server_options opt;
  std::vector<route_entry> routes;
  std::function<void(const std::string&, int)> observer;
  std::atomic<bool> stopping{false};

  net::io_context ioc;
  std::optional<net::ssl::context> tls;
  tcp::acceptor acceptor{ioc};
  net::steady_timer retry{ioc};
  net::thread_pool blocking;

  explicit impl(server_options o)
      : opt(std::move(o)), ioc(static_cast<int>(std::max(1u, opt.io_threads))),
        blocking(std::max(1u, opt.blocking_threads)) {}

  ~impl() {
    blocking.stop();
    blocking.join();
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

  void accept();
};

namespace {

template <class Stream>
class session : public std::enable_shared_from_this<session<Stream>> {
 public:
  session(http_server::impl& srv, Stream stream) : srv_(srv), stream_(std::move(stream)) {}
  ~session() { --srv_.counters.connections_open; }

  void start() {
    if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
      read();
    } else {
      beast::get_lowest_layer(stream_).expires_after(srv_.opt.handshake_timeout);
      stream_.async_handshake(net::ssl::stream_base::server,
                              [self = this->shared_from_this()](beast::error_code ec) {
                                if (ec) return self->close();
                                self->read();
                              });
    }
  }

 private:
  void read() {
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(srv_.opt.max_header_bytes));
    parser_->body_limit(srv_.opt.max_body_bytes);
    beast::get_lowest_layer(stream_).expires_after(first_ ? srv_.opt.read_timeout
                                                          : srv_.opt.idle_timeout);
    first_ = false;
    http::async_read(stream_, buffer_, *parser_,
                     [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
                       self->on_read(ec);
                     });
  }

  void on_read(beast::error_code ec) {
    beast::get_lowest_layer(stream_).expires_never();
    if (ec) {
      if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
          ec == net::error::operation_aborted || ec == net::error::eof ||
          ec == net::error::connection_reset || buffer_.size() == 0)
        return close();
      ++srv_.counters.requests_refused;
      keep_alive_ = false;
      version_ = 11;
      route_ = "";
      if (ec == http::error::body_limit)
        return write(error_response(413, "too_large", "request body over the limit"));
      if (ec == http::error::header_limit)
        return write(error_response(431, "too_large", "request headers over the limit"));
      return write(error_response(400, "bad_request", "malformed HTTP request"));
    }
    auto msg = parser_->release();
    keep_alive_ = msg.keep_alive();
    version_ = msg.version();
    request q;
    q.method = std::string(msg.method_string());
    const std::string_view target(msg.target().data(), msg.target().size());
    const auto qmark = target.find('?');
    q.path = percent_decode(target.substr(0, qmark), false);
    if (qmark != std::string_view::npos) {
      std::string_view query = target.substr(qmark + 1);
      while (!query.empty()) {
        const auto amp = query.find('&');
        const std::string_view kv = query.substr(0, amp);
        const auto eq = kv.find('=');
        if (!kv.empty())
          q.params.emplace(percent_decode(kv.substr(0, eq), true),
                           eq == std::string_view::npos ? std::string()
                                                        : percent_decode(kv.substr(eq + 1), true));
        if (amp == std::string_view::npos) break;
        query.remove_prefix(amp + 1);
      }
    }
    for (const auto& f : msg)
      q.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
    q.body = std::move(msg.body());

    auto st = std::make_shared<responder::state>();
    st->deliver = [self = this->shared_from_this()](response r) {
      net::post(self->stream_.get_executor(),
                [self, r = std::move(r)]() mutable { self->write(std::move(r)); });
    };
    const responder out(std::move(st));
    bool path_known = false;
    const route_entry* r = srv_.match(q.method, q.path, q.matches, path_known);
    if (r == nullptr) {
      route_ = "";
      return out.send(path_known ? error_response(405, "method_not_allowed", "method not allowed")
                                 : error_response(404, "not_found", "no such path"));
    }
    route_ = r->label;
    if (r->where == run_on::io) return run_handler(*r, q, out);
    net::post(srv_.blocking, [r, q = std::move(q), out] { run_handler(*r, q, out); });
  }

  static void run_handler(const route_entry& r, const request& q, const responder& out) {
    try {
      r.h(q, out);
    } catch (const std::exception&) {
      out.send(error_response(500, "internal", "the request failed"));
    }
  }

  // The head is written by hand and sent with the (shared) body in one gather write: Beast's
  // serializer cost more than the rest of answering a node (issue 13's profile).
  void write(response r) {
    if (srv_.observer) srv_.observer(route_, r.status);
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
    // Over TLS head and body go as one buffer: the gather write of two stalled after the head
    // (a body past one TLS record never left; tests/unit/control/controller/http_server_test).
    if constexpr (!std::is_same_v<Stream, beast::tcp_stream>) {
      if (body_) head_.append(*body_);
      body_.reset();
    }
    const std::array<net::const_buffer, 2> out{
        net::buffer(head_), body_ ? net::buffer(*body_) : net::const_buffer()};
    beast::get_lowest_layer(stream_).expires_after(srv_.opt.write_timeout);
    net::async_write(stream_, out, [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
      beast::get_lowest_layer(self->stream_).expires_never();
      self->body_.reset();
      if (ec || !self->keep_alive_ || self->srv_.stopping) return self->close();
      self->read();
    });
  }

  void close() {
    beast::error_code ignored;
    beast::get_lowest_layer(stream_).socket().shutdown(tcp::socket::shutdown_both, ignored);
    beast::get_lowest_layer(stream_).socket().close(ignored);
  }

  http_server::impl& srv_;
  Stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::string head_;
  std::shared_ptr<const std::string> body_;
  std::string route_;
  bool keep_alive_ = false;
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
        if (!e) accept();
      });
      return;
    }
    if (counters.connections_open.load() >= opt.max_connections) {
      ++counters.connections_refused;
      beast::error_code ignored;
      sock.close(ignored);
    } else {
      ++counters.connections_open;
      ++counters.connections_accepted;
      beast::error_code ignored;
      sock.set_option(tcp::no_delay(true), ignored);
      if (tls)
        std::make_shared<session<beast::ssl_stream<beast::tcp_stream>>>(
            *this, beast::ssl_stream<beast::tcp_stream>(std::move(sock), *tls))
            ->start();
      else
        std::make_shared<session<beast::tcp_stream>>(*this, beast::tcp_stream(std::move(sock)))
            ->start();
    }
    accept();
  });
}

http_server::http_server(server_options options) : impl_(std::make_unique<impl>(std::move(options))) {
  impl& s = *impl_;
  try {
    if (!s.opt.tls_cert.empty() || !s.opt.tls_key.empty()) {
      s.tls.emplace(net::ssl::context::tls_server);
      s.tls->set_options(net::ssl::context::default_workarounds | net::ssl::context::no_sslv2 |
                         net::ssl::context::no_sslv3 | net::ssl::context::no_tlsv1 |
                         net::ssl::context::no_tlsv1_1);
      s.tls->use_certificate_chain_file(s.opt.tls_cert.string());
      s.tls->use_private_key_file(s.opt.tls_key.string(), net::ssl::context::pem);
    }
  } catch (const boost::system::system_error& e) {
    throw std::runtime_error("TLS with " + s.opt.tls_cert.string() + " / " + s.opt.tls_key.string() +
                             ": " + e.what());
  }
  try {
    const tcp::endpoint ep(net::ip::make_address(s.opt.host), s.opt.port);
    s.acceptor.open(ep.protocol());
    s.acceptor.set_option(tcp::acceptor::reuse_address(true));
    s.acceptor.bind(ep);
    s.acceptor.listen(SOMAXCONN);  // a revision brings every node back at once
  } catch (const boost::system::system_error& e) {
    throw std::runtime_error("cannot listen on " + s.opt.host + ":" + std::to_string(s.opt.port) +
                             ": " + e.what());
  }
}

http_server::~http_server() = default;

void http_server::route(std::string method, std::string pattern, run_on where, handler h) {
  route_entry r;
  r.label = method + " " + pattern;
  r.method = std::move(method);
  for (auto seg : split_path(pattern)) r.segments.emplace_back(seg);
  r.where = where;
  r.h = std::move(h);
  impl_->routes.push_back(std::move(r));
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
  impl_->stopping = true;
  impl_->ioc.stop();
}

std::uint16_t http_server::port() const { return impl_->acceptor.local_endpoint().port(); }
const server_counters& http_server::counters() const { return impl_->counters; }
boost::asio::io_context& http_server::context() { return impl_->ioc; }

}  // namespace sluice::control::api
