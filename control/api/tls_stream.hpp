#pragma once
// A TLS stream for Asio/Beast that runs OpenSSL directly on the socket (SSL_set_fd) and waits
// for readiness with the reactor (socket::async_wait), instead of asio::ssl::stream's memory
// BIO pair. Why (issue 13): asio::ssl::stream keeps two 17 KiB buffers of its own per
// connection plus the BIO pair's two 17 KiB rings, whether the connection is busy or idle, and
// copies every byte through them; 10,000 waiting long polls held ~1.2 GB that way. Here each
// connection holds its SSL object only: with SSL_MODE_RELEASE_BUFFERS OpenSSL frees its record
// buffers whenever they are empty (nginx runs OpenSSL the same way), and records go straight
// between OpenSSL and the kernel.
//
// It is Beast's AsyncStream (get_executor, async_read_some, async_write_some), so
// http::async_read/async_write and net::async_write use it as they use beast::ssl_stream, and
// it is its own lowest layer with beast::tcp_stream's timeout interface (expires_after,
// expires_never; an operation in progress when the time runs out, or started after, fails with
// beast::error::timeout) and socket().
//
// OpenSSL talks to the socket through a small BIO of our own rather than SSL_set_fd's, only
// so that its writes are send(MSG_NOSIGNAL): a peer that went away is an EPIPE error, not a
// SIGPIPE that kills a process which did not ignore it (Asio's own sends do the same).
//
// One read and one write may be in progress at a time (as on a socket); a handshake alone.
// An operation that completes without waiting is still completed through a post, never inside
// its initiating call (Asio's rule). Errors: a close_notify reads as net::error::eof, an EOF
// without it as net::ssl::error::stream_truncated (as asio::ssl reports them), TLS failures in
// net::error::get_ssl_category(), socket failures as the system's errno.
//
// The SSL_CTX must carry the modes of prepare_context() (partial writes, a write buffer that may
// move, buffers released): the server's and the simulator's contexts call it.

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#include <utility>  // before Asio: Boost 1.74's awaitable.hpp uses std::exchange

#include <algorithm>
#include <boost/asio.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/beast/core/error.hpp>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <vector>

namespace sluice::control::api {

class tls_stream {
 public:
  using executor_type = boost::asio::any_io_executor;
  using socket_type = boost::asio::ip::tcp::socket;
  enum class role : std::uint8_t { client, server };

  // The SSL_CTX modes this stream relies on (and RELEASE_BUFFERS, which is why it exists).
  // Read-ahead: one recv takes whatever the kernel holds (several records) instead of one for
  // each record's 5-byte header and one for its body.
  static void prepare_context(SSL_CTX* ctx) {
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_read_ahead(ctx, 1);
  }

  // Takes the connected (or to be connected) socket; a new SSL object of `ctx`. Throws
  // std::runtime_error when OpenSSL cannot make one.
  tls_stream(socket_type socket, SSL_CTX* ctx) : core_(std::make_shared<core>(std::move(socket))) {
    core_->ssl = SSL_new(ctx);
    if (core_->ssl == nullptr) throw std::runtime_error("TLS: SSL_new failed");
  }
  tls_stream(tls_stream&&) noexcept = default;
  tls_stream& operator=(tls_stream&&) noexcept = default;
  tls_stream(const tls_stream&) = delete;
  tls_stream& operator=(const tls_stream&) = delete;
  ~tls_stream() = default;

  [[nodiscard]] executor_type get_executor() noexcept { return core_->socket.get_executor(); }
  [[nodiscard]] socket_type& socket() noexcept { return core_->socket; }
  [[nodiscard]] SSL* native_handle() noexcept { return core_->ssl; }

  // The deadline of the operations from now on (beast::tcp_stream's interface).
  template <class Rep, class Period>
  void expires_after(std::chrono::duration<Rep, Period> d) {
    core& c = *core_;
    c.expired = false;
    const std::uint64_t armed = ++c.generation;
    c.timer.expires_after(d);
    c.timer.async_wait([weak = std::weak_ptr<core>(core_), armed](const boost::system::error_code& ec) {
      if (ec) return;
      const auto c = weak.lock();
      if (!c || c->generation != armed) return;  // re-armed or disarmed since
      c->expired = true;
      boost::system::error_code ignored;
      c->socket.cancel(ignored);  // a waiting operation ends; it sees `expired`
    });
  }
  void expires_never() {
    ++core_->generation;
    core_->expired = false;
    core_->timer.cancel();
  }

  template <class Token>
  auto async_handshake(role r, Token&& token) {
    return boost::asio::async_compose<Token, void(boost::system::error_code)>(
        handshake_op{core_, r, false, false, {}}, token, core_->socket);
  }

  template <class MutableBuffers, class Token>
  auto async_read_some(const MutableBuffers& buffers, Token&& token) {
    return boost::asio::async_compose<Token, void(boost::system::error_code, std::size_t)>(
        transfer_op<true>{core_, first_of<boost::asio::mutable_buffer>(buffers), false, false, {}, 0, {}},
        token, core_->socket);
  }

  // A sequence of several buffers (Beast's serializer gives a request's head as dozens of small
  // ones) is copied into one of up to a record's size first: one record and one send, not one
  // per buffer (what beast::flat_stream does for asio::ssl::stream).
  template <class ConstBuffers, class Token>
  auto async_write_some(const ConstBuffers& buffers, Token&& token) {
    namespace net = boost::asio;
    transfer_op<false> op{core_, first_of<net::const_buffer>(buffers), false, false, {}, 0, {}};
    if (op.buffer.size() < coalesce_limit && net::buffer_size(buffers) > op.buffer.size()) {
      op.copy.resize(std::min(net::buffer_size(buffers), coalesce_limit));
      op.buffer = net::buffer(op.copy.data(), net::buffer_copy(net::buffer(op.copy), buffers));
    }
    return net::async_compose<Token, void(boost::system::error_code, std::size_t)>(std::move(op), token,
                                                                                  core_->socket);
  }

 private:
  // Shared with the timer's handler, which may run after the stream is gone.
  struct core {
    explicit core(socket_type s) : socket(std::move(s)), timer(socket.get_executor()) {}
    ~core() {
      if (ssl != nullptr) SSL_free(ssl);  // the socket is closed by its own destructor
    }
    core(const core&) = delete;
    core& operator=(const core&) = delete;
    socket_type socket;
    boost::asio::steady_timer timer;
    SSL* ssl = nullptr;
    bool bound = false;  // the socket BIO set (at the first operation: the socket may connect later)
    bool expired = false;
    // The last read took all the socket had (a short read, nothing left inside OpenSSL): the
    // next one waits for the socket before asking OpenSSL, instead of a recv that would block.
    bool drained = false;
    std::uint64_t generation = 0;
  };

  // The first non-empty buffer of a sequence (OpenSSL reads or writes one at a time; a short
  // transfer is what *_some promises).
  template <class Buffer, class Buffers>
  static Buffer first_of(const Buffers& buffers) {
    for (auto it = boost::asio::buffer_sequence_begin(buffers); it != boost::asio::buffer_sequence_end(buffers);
         ++it) {
      const Buffer b(*it);
      if (b.size() > 0) return b;
    }
    return Buffer();
  }

  // What one OpenSSL call left us to do.
  enum class step : std::uint8_t { done, want_read, want_write };

  // The error of a failed SSL call whose SSL_get_error was `err`.
  static boost::system::error_code error_of(int err) {
    namespace net = boost::asio;
    if (err == SSL_ERROR_ZERO_RETURN) return net::error::eof;
    if (err == SSL_ERROR_SYSCALL) {
      const int e = errno;
      if (ERR_peek_error() == 0 && e == 0) return net::ssl::error::stream_truncated;
      if (ERR_peek_error() == 0) return {e, boost::system::system_category()};
    }
    const unsigned long e = ERR_get_error();
    if (ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING) return net::ssl::error::stream_truncated;
    return {static_cast<int>(e != 0 ? e : 1), net::error::get_ssl_category()};
  }

  // The socket BIO: the descriptor in the BIO's data; send/recv, retry on EAGAIN/EINTR, EOF
  // recorded for BIO_eof (how OpenSSL tells an unexpected EOF from an error).
  static int fd_of(BIO* b) { return static_cast<int>(reinterpret_cast<std::intptr_t>(BIO_get_data(b))); }
  static bool again(int e) { return e == EAGAIN || e == EWOULDBLOCK || e == EINTR; }
  static int bio_write(BIO* b, const char* data, size_t len, size_t* written) {
    BIO_clear_retry_flags(b);
    const ssize_t n = ::send(fd_of(b), data, len, MSG_NOSIGNAL);
    if (n < 0) {
      if (again(errno)) BIO_set_retry_write(b);
      return 0;
    }
    *written = static_cast<size_t>(n);
    return 1;
  }
  static int bio_read(BIO* b, char* data, size_t len, size_t* read) {
    BIO_clear_retry_flags(b);
    const ssize_t n = ::recv(fd_of(b), data, len, 0);
    if (n < 0) {
      if (again(errno)) BIO_set_retry_read(b);
      return 0;
    }
    if (n == 0) {
      BIO_set_flags(b, BIO_FLAGS_IN_EOF);
      return 0;
    }
    *read = static_cast<size_t>(n);
    return 1;
  }
  static long bio_ctrl(BIO* b, int cmd, long, void*) {
    if (cmd == BIO_CTRL_FLUSH) return 1;
    if (cmd == BIO_CTRL_EOF) return BIO_test_flags(b, BIO_FLAGS_IN_EOF) != 0 ? 1 : 0;
    return 0;
  }
  static int bio_create(BIO* b) {
    BIO_set_init(b, 1);
    return 1;
  }
  // Made once; nullptr when OpenSSL could not (out of memory): operations then fail, nothing
  // throws out of an event-loop handler.
  static BIO_METHOD* bio_method() {
    static BIO_METHOD* const method = []() -> BIO_METHOD* {
      BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "sluice socket");
      if (m != nullptr && BIO_meth_set_write_ex(m, bio_write) == 1 &&
          BIO_meth_set_read_ex(m, bio_read) == 1 && BIO_meth_set_ctrl(m, bio_ctrl) == 1 &&
          BIO_meth_set_create(m, bio_create) == 1)
        return m;
      if (m != nullptr) BIO_meth_free(m);
      return nullptr;
    }();
    return method;
  }

  // Runs `call` (an SSL_* returning 1 on success) once: done (with `ec` set on failure), or what
  // to wait for.
  template <class Call>
  static step attempt(core& c, Call&& call, boost::system::error_code& ec) {
    // Closed (by its owner, while a wait's success was already on its way): the descriptor's
    // number may belong to a new connection by now, so OpenSSL must not touch it.
    if (!c.socket.is_open()) {
      ec = boost::asio::error::operation_aborted;
      return step::done;
    }
    if (!c.bound) {
      BIO_METHOD* method = bio_method();
      BIO* bio = method != nullptr ? BIO_new(method) : nullptr;
      if (bio == nullptr) {
        ec = boost::asio::error::no_memory;
        return step::done;
      }
      BIO_set_data(bio, reinterpret_cast<void*>(static_cast<std::intptr_t>(c.socket.native_handle())));
      SSL_set_bio(c.ssl, bio, bio);  // one reference, owned by the SSL object from now on
      c.bound = true;
      if (!c.socket.non_blocking()) {
        c.socket.non_blocking(true, ec);
        if (ec) return step::done;
      }
    }
    ERR_clear_error();
    errno = 0;
    const int r = call();
    if (r == 1) return step::done;
    const int err = SSL_get_error(c.ssl, r);
    if (err == SSL_ERROR_WANT_READ) return step::want_read;
    if (err == SSL_ERROR_WANT_WRITE) return step::want_write;
    ec = error_of(err);
    return step::done;
  }

  // The common loop of every operation: try, else wait for readiness and try again. `Self` is
  // async_compose's; `finish(self, ec)` completes it.
  template <class Self, class Call, class Finish>
  static void drive(const std::shared_ptr<core>& cp, bool& started, Self& self,
                    boost::system::error_code waited, Call&& call, Finish&& finish) {
    namespace net = boost::asio;
    core& c = *cp;
    const bool first = !started;
    started = true;
    boost::system::error_code ec;
    step s = step::done;
    if (c.expired) {
      ec = boost::beast::error::timeout;
    } else if (waited) {
      ec = waited;  // the socket was closed or cancelled
    } else {
      s = attempt(c, call, ec);
    }
    if (s == step::want_read) return c.socket.async_wait(socket_type::wait_read, std::move(self));
    if (s == step::want_write) return c.socket.async_wait(socket_type::wait_write, std::move(self));
    finish(self, ec, first);
  }

  struct handshake_op {
    std::shared_ptr<core> c;
    role r;
    bool started = false;
    bool finished = false;
    boost::system::error_code result;

    template <class Self>
    void operator()(Self& self, boost::system::error_code waited = {}) {
      if (finished) return self.complete(result);
      drive(c, started, self, waited,
            [this] { return r == role::server ? SSL_accept(c->ssl) : SSL_connect(c->ssl); },
            [this](Self& s, boost::system::error_code ec, bool first) {
              if (!first) return s.complete(ec);
              finished = true;
              result = ec;
              const auto ex = boost::asio::get_associated_executor(s, c->socket.get_executor());
              boost::asio::post(ex, std::move(s));
            });
    }
  };

  template <bool Read>
  struct transfer_op {
    std::shared_ptr<core> c;
    std::conditional_t<Read, boost::asio::mutable_buffer, boost::asio::const_buffer> buffer;
    bool started = false;
    bool finished = false;
    boost::system::error_code result;
    std::size_t moved = 0;
    std::vector<char> copy;  // writes: the coalesced buffers, when `buffer` points here

    template <class Self>
    void operator()(Self& self, boost::system::error_code waited = {}) {
      if (finished) return self.complete(result, moved);
      if (buffer.size() == 0 && !started) {  // nothing to move: done, through a post
        started = finished = true;
        const auto ex = boost::asio::get_associated_executor(self, c->socket.get_executor());
        return boost::asio::post(ex, std::move(self));
      }
      if constexpr (Read) {
        // (A wait armed on a socket that already has data ends at once: the reactor re-arms
        // the descriptor, which reports what is ready.)
        if (!started && c->drained && !c->expired && SSL_has_pending(c->ssl) == 0) {
          started = true;
          return c->socket.async_wait(socket_type::wait_read, std::move(self));
        }
      }
      drive(c, started, self, waited,
            [this] {
              if constexpr (Read)
                return SSL_read_ex(c->ssl, buffer.data(), buffer.size(), &moved);
              else
                return SSL_write_ex(c->ssl, buffer.data(), buffer.size(), &moved);
            },
            [this](Self& s, boost::system::error_code ec, bool first) {
              if (ec) moved = 0;
              if constexpr (Read) c->drained = !ec && moved < buffer.size() && SSL_has_pending(c->ssl) == 0;
              if (!first) return s.complete(ec, moved);
              finished = true;
              result = ec;
              const auto ex = boost::asio::get_associated_executor(s, c->socket.get_executor());
              boost::asio::post(ex, std::move(s));
            });
    }
  };

  static constexpr std::size_t coalesce_limit = 16384;  // TLS's largest record

  std::shared_ptr<core> core_;
};

}  // namespace sluice::control::api
