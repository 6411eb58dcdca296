#pragma once
// Helpers for the HTTP server and API tests on loopback: a server on its own thread, raw
// sockets (for what a well-behaved client would never send), a throwaway CA and certificates
// made with openssl, and a raw OpenSSL handshake.

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>

#include "control/api/http_server.hpp"
#include "control/common/sigpipe.hpp"

namespace sluice_test {

using namespace sluice::control::api;
using clk = std::chrono::steady_clock;

struct running_server {
  http_server server;
  std::thread thread;

  template <class F>
  explicit running_server(server_options o, F&& routes) : server(std::move(o)) {
    routes(server);
    thread = std::thread([this] { server.run(); });
  }
  ~running_server() {
    server.stop();
    thread.join();
  }
  int port() { return server.port(); }
};

inline server_options loopback() {
  server_options o;
  o.host = "127.0.0.1";
  o.port = 0;
  return o;
}


// Sends `raw` on a fresh connection and returns what comes back until the server closes.
inline std::string raw_exchange(int port, const std::string& raw) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return "connect failed";
  }
  (void)::send(fd, raw.data(), raw.size(), MSG_NOSIGNAL);
  std::string got;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    got.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return got;
}


inline double ms_since(clk::time_point t) {
  return std::chrono::duration<double, std::milli>(clk::now() - t).count();
}

inline int connect_to(int port, int timeout_s = 5) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{timeout_s, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

inline bool send_all(int fd, const std::string& s) {
  return ::send(fd, s.data(), s.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(s.size());
}

// Reads until `until` is in what arrived (or the peer closes, or the receive timeout).
inline std::string recv_until(int fd, const std::string& until) {
  std::string got;
  char buf[4096];
  while (got.find(until) == std::string::npos) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    got.append(buf, static_cast<std::size_t>(n));
  }
  return got;
}

// True when the peer closed (recv 0 or reset) within the socket's receive timeout.
inline bool closed_by_peer(int fd) {
  char buf[4096];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n == 0) return true;
    if (n < 0) return errno == ECONNRESET;
  }
}

// The server counts a refusal just after the client sees its effect (a close): wait a little.
inline bool eventually(const std::function<bool()>& pred) {
  for (int i = 0; i < 200; ++i) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return pred();
}

inline std::size_t rss_bytes() {
  std::ifstream statm("/proc/self/statm");
  std::size_t pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}


struct tls_files {
  std::filesystem::path dir;
  bool ok = false;

  tls_files() {
    // The tests' httplib TLS clients write with write(2): a server that refuses a handshake
    // and closes must fail their request, not kill the test binary.
    sluice::control::ignore_sigpipe_unless_handled();
    char tmpl[] = "/tmp/sluice-tls-XXXXXX";
    dir = ::mkdtemp(tmpl);
    const std::string d = dir.string();
    const std::string ec = " -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 ";
    // A CA, the server's certificate (two of them, for reload), a node's client certificate
    // from the CA, and a client certificate nobody signed.
    ok = run("openssl req -x509" + ec + "-subj /CN=test-ca -keyout " + d + "/ca.key -out " + d + "/ca.crt "
             "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign") &&
         sign("server-a", "/CN=127.0.0.1", "subjectAltName=IP:127.0.0.1\\nextendedKeyUsage=serverAuth") &&
         sign("server-b", "/CN=127.0.0.1", "subjectAltName=IP:127.0.0.1\\nextendedKeyUsage=serverAuth") &&
         sign("edge-1", "/CN=edge-1", "extendedKeyUsage=clientAuth") &&
         sign("bad-cn", "/CN=bad cn!", "extendedKeyUsage=clientAuth") &&
         run("openssl req -x509" + ec + "-subj /CN=edge-1 -keyout " + d + "/rogue.key -out " + d + "/rogue.crt");
    if (ok) {
      std::filesystem::copy_file(dir / "server-a.crt", dir / "tls.crt");
      std::filesystem::copy_file(dir / "server-a.key", dir / "tls.key");
    }
  }
  ~tls_files() { std::filesystem::remove_all(dir); }

  static bool run(const std::string& cmd) { return std::system((cmd + " >/dev/null 2>&1").c_str()) == 0; }
  bool sign(const std::string& name, const std::string& subject, const std::string& ext) {
    const std::string d = dir.string();
    return run("openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj '" + subject +
               "' -keyout " + d + "/" + name + ".key -out " + d + "/" + name + ".csr") &&
           run("printf '" + ext + "\\n' > " + d + "/" + name + ".ext") &&
           run("openssl x509 -req -in " + d + "/" + name + ".csr -CA " + d + "/ca.crt -CAkey " + d +
               "/ca.key -CAcreateserial -days 1 -extfile " + d + "/" + name + ".ext -out " + d + "/" + name + ".crt");
  }
  std::string path(const std::string& name) const { return (dir / name).string(); }
  // openssl's SHA-256 fingerprint, as the server reports it (lowercase hex, no colons).
  std::string fingerprint(const std::string& cert) const {
    std::string out;
    if (FILE* p = ::popen(("openssl x509 -noout -fingerprint -sha256 -in " + path(cert)).c_str(), "r")) {
      char buf[512];
      while (std::fgets(buf, sizeof buf, p) != nullptr) out += buf;
      ::pclose(p);
    }
    out = out.substr(out.find('=') + 1);
    std::string hex;
    for (const char ch : out)
      if (std::isxdigit(static_cast<unsigned char>(ch)) != 0) hex += static_cast<char>(std::tolower(ch));
    return hex;
  }
};


// A raw OpenSSL handshake: the server certificate's SHA-256 (lowercase hex), "" when it failed.
inline std::string handshake(int port, int min_version, int max_version, const char* tls12_ciphers) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_security_level(ctx, 0);  // let the client offer what the server must refuse
  SSL_CTX_set_min_proto_version(ctx, min_version);
  SSL_CTX_set_max_proto_version(ctx, max_version);
  if (tls12_ciphers != nullptr) SSL_CTX_set_cipher_list(ctx, tls12_ciphers);
  std::string fp;
  const int fd = connect_to(port);
  SSL* ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  if (SSL_connect(ssl) == 1) {
    X509* cert = SSL_get1_peer_certificate(ssl);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    X509_digest(cert, EVP_sha256(), md, &len);
    static constexpr char hex[] = "0123456789abcdef";
    for (unsigned int i = 0; i < len; ++i) {
      fp += hex[md[i] >> 4];
      fp += hex[md[i] & 0xf];
    }
    X509_free(cert);
    SSL_shutdown(ssl);
  }
  SSL_free(ssl);
  ::close(fd);
  SSL_CTX_free(ctx);
  return fp;
}

}  // namespace sluice_test
