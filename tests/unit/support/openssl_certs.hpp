#pragma once
// Certificates made with the `openssl` command line (EC P-256), so the code under test is
// checked against what an operator's own tooling makes, not only against itself. For the
// node-identity tests (issue 14): CAs, node client certificates (CN = node id, clientAuth) and
// loopback server certificates (SAN IP:127.0.0.1, DNS:localhost).

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>

namespace sluice::test {

class cert_dir {
 public:
  cert_dir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "sluice-certs-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  cert_dir(const cert_dir&) = delete;
  cert_dir& operator=(const cert_dir&) = delete;
  ~cert_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }
  [[nodiscard]] std::string file(const std::string& name) const { return (path_ / name).string(); }
  [[nodiscard]] std::string read(const std::string& name) const {
    std::ifstream in(path_ / name, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
  }
  void write(const std::string& name, const std::string& text) const {
    std::ofstream out(path_ / name, std::ios::binary | std::ios::trunc);
    out << text;
  }

  // Runs a shell command in this directory; throws with the command when it fails.
  void sh(const std::string& cmd) const {
    const std::string full = "cd '" + path_.string() + "' && (" + cmd + ") >>openssl.log 2>&1";
    if (std::system(full.c_str()) != 0)
      throw std::runtime_error("command failed: " + cmd + "\n" + read("openssl.log"));
  }

  // NAME.key, NAME.crt: a self-signed CA.
  void make_ca(const std::string& name, const std::string& cn = "Sluice test node CA") const {
    sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout " + name +
       ".key -out " + name + ".crt -days 30 -subj '/CN=" + cn +
       "' -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign");
  }
  // NAME.key, NAME.csr, NAME.crt: a certificate signed by CA with subject CN=cn and `ext`
  // (extendedKeyUsage etc., openssl x509 -extfile syntax, one per line).
  void make_leaf(const std::string& name, const std::string& ca, const std::string& cn,
                 const std::string& ext) const {
    write(name + ".ext", ext);
    sh("openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout " + name +
       ".key -out " + name + ".csr -subj '/CN=" + cn + "'");
    sh("openssl x509 -req -in " + name + ".csr -CA " + ca + ".crt -CAkey " + ca + ".key -CAcreateserial -out " +
       name + ".crt -days 30 -extfile " + name + ".ext");
  }
  // A node's client certificate.
  void make_client(const std::string& name, const std::string& ca, const std::string& node) const {
    make_leaf(name, ca, node, "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n");
  }
  // A server certificate for loopback.
  void make_server(const std::string& name, const std::string& ca) const {
    make_leaf(name, ca, "localhost",
              "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
              "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n");
  }

 private:
  std::filesystem::path path_;
};

}  // namespace sluice::test
