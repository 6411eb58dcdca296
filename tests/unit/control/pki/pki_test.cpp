// Node certificates (control/pki): CSRs signed into client certificates with the right subject
// and extensions, fingerprints and CNs as `openssl` computes them, verification that refuses
// another CA's certificates, and the refusals (bad CSR, weak key, wrong CA key, not a CA).
#include "control/pki/pki.hpp"

#include <doctest/doctest.h>

#include <ctime>
#include <string>

#include "tests/unit/support/openssl_certs.hpp"

namespace pki = sluice::control::pki;
using sluice::test::cert_dir;

namespace {

pki::certificate_authority ca_from(const cert_dir& d, const std::string& name, bool with_key = true) {
  std::string error;
  auto ca = pki::certificate_authority::load(d.read(name + ".crt"), with_key ? d.read(name + ".key") : "", error);
  REQUIRE_MESSAGE(ca, error);
  return *ca;
}

pki::certificate cert_from(const std::string& pem) {
  std::string error;
  auto c = pki::certificate::parse(pem, error);
  REQUIRE_MESSAGE(c, error);
  return *c;
}

}  // namespace

TEST_CASE("a CSR made by openssl becomes a client certificate for the node id that openssl verifies") {
  cert_dir d;
  d.make_ca("ca");
  d.sh("openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout n.key -out n.csr "
       "-subj '/CN=ignored/O=whatever'");
  const auto ca = ca_from(d, "ca");
  REQUIRE(ca.can_issue());
  std::string error;
  const auto cert = ca.sign_csr(d.read("n.csr"), "edge-1.msk", 825, error);
  REQUIRE_MESSAGE(cert, error);
  CHECK(cert->common_name() == "edge-1.msk");  // the node id, never the CSR's subject
  const std::int64_t days = (cert->not_after() - std::time(nullptr)) / 86400;
  CHECK((days == 824 || days == 825));
  CHECK(ca.verify(*cert).empty());

  d.write("n.crt", cert->pem());
  d.sh("openssl verify -CAfile ca.crt -purpose sslclient n.crt");
  d.sh("openssl x509 -in n.crt -noout -text > n.txt");
  const std::string text = d.read("n.txt");
  CHECK(text.find("Subject: CN = edge-1.msk") != std::string::npos);
  CHECK(text.find("TLS Web Client Authentication") != std::string::npos);
  CHECK(text.find("CA:FALSE") != std::string::npos);
  CHECK(text.find("Digital Signature") != std::string::npos);
  CHECK(text.find("X509v3 Authority Key Identifier") != std::string::npos);
  // The key openssl made belongs to the certificate we issued.
  const auto key = pki::private_key::parse(d.read("n.key"), error);
  REQUIRE(key);
  CHECK(cert->matches(*key));

  // Fingerprint: lowercase hex SHA-256 of the DER, as openssl prints it (upper case, colons).
  d.sh("openssl x509 -in n.crt -noout -fingerprint -sha256 > fp.txt");
  std::string fp = d.read("fp.txt");
  fp = fp.substr(fp.find('=') + 1);
  std::string expected;
  for (const char c : fp)
    if (std::isxdigit(static_cast<unsigned char>(c))) expected += static_cast<char>(std::tolower(c));
  CHECK(cert->fingerprint() == expected);
  CHECK(cert->fingerprint().size() == 64);

  // Serial numbers are random: two certificates for the same node differ.
  const auto again = ca.sign_csr(d.read("n.csr"), "edge-1.msk", 825, error);
  REQUIRE(again);
  CHECK(again->fingerprint() != cert->fingerprint());
}

TEST_CASE("a certificate signed by another CA (even one of the same name), or for servers only, does not verify") {
  cert_dir d;
  d.make_ca("ca");
  d.make_ca("other", "Another CA");
  d.make_client("foreign", "other", "edge-1");
  d.make_server("server", "ca");
  const auto ca = ca_from(d, "ca", /*with_key=*/false);
  CHECK_FALSE(ca.can_issue());
  const std::string foreign = ca.verify(cert_from(d.read("foreign.crt")));
  CHECK_FALSE(foreign.empty());
  CHECK(foreign.find("issuer") != std::string::npos);
  CHECK_FALSE(ca.verify(cert_from(d.read("server.crt"))).empty());  // no clientAuth

  // Same subject name, different key: a look-alike CA does not pass for the real one.
  d.make_ca("twin");  // CN "Sluice test node CA" too
  d.make_client("twin-node", "twin", "edge-1");
  CHECK_FALSE(ca.verify(cert_from(d.read("twin-node.crt"))).empty());

  // The control case: the same CA's client certificate verifies.
  d.make_client("own", "ca", "edge-2");
  CHECK(ca.verify(cert_from(d.read("own.crt"))).empty());
}

TEST_CASE("common names: exactly one CN, as text") {
  cert_dir d;
  d.make_ca("ca");
  d.make_client("one", "ca", "node-7");
  CHECK(cert_from(d.read("one.crt")).common_name() == "node-7");
  d.write("two.ext", "extendedKeyUsage=clientAuth\n");
  d.sh("openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout two.key -out two.csr "
       "-subj '/CN=node-7/CN=node-8' && openssl x509 -req -in two.csr -CA ca.crt -CAkey ca.key "
       "-CAcreateserial -out two.crt -days 1 -extfile two.ext");
  CHECK_FALSE(cert_from(d.read("two.crt")).common_name());  // ambiguous: which node?
  d.sh("openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout none.key -out none.csr "
       "-subj '/O=Sluice' && openssl x509 -req -in none.csr -CA ca.crt -CAkey ca.key "
       "-CAcreateserial -out none.crt -days 1 -extfile two.ext");
  CHECK_FALSE(cert_from(d.read("none.crt")).common_name());
}

TEST_CASE("refusals: not a CSR, a tampered CSR, a weak key, a bad node id, no CA key, wrong CA key, not a CA") {
  cert_dir d;
  d.make_ca("ca");
  d.make_ca("other");
  d.make_client("leaf", "ca", "edge-1");
  const auto ca = ca_from(d, "ca");
  std::string error;
  CHECK_FALSE(ca.sign_csr("not a csr", "edge-1", 10, error));
  CHECK(error.find("certificate signing request") != std::string::npos);

  // A CSR whose self-signature does not verify: the signature bytes flipped in the DER.
  d.sh("openssl req -in leaf.csr -outform DER -out leaf.der");
  std::string der = d.read("leaf.der");
  der[der.size() - 5] = static_cast<char>(der[der.size() - 5] ^ 0x01);
  d.write("bad.der", der);
  d.sh("openssl req -inform DER -in bad.der -out bad.csr");
  error.clear();
  CHECK_FALSE(ca.sign_csr(d.read("bad.csr"), "edge-1", 10, error));
  CHECK(error.find("signature") != std::string::npos);

  d.sh("openssl req -newkey rsa:1024 -nodes -keyout weak.key -out weak.csr -subj /CN=edge-1");
  error.clear();
  CHECK_FALSE(ca.sign_csr(d.read("weak.csr"), "edge-1", 10, error));
  CHECK(error.find("2048") != std::string::npos);

  error.clear();
  CHECK_FALSE(ca.sign_csr(d.read("leaf.csr"), "edge 1/../x", 10, error));
  CHECK(error.find("node id") != std::string::npos);
  CHECK_FALSE(ca.sign_csr(d.read("leaf.csr"), "edge-1", 0, error));

  const auto verify_only = ca_from(d, "ca", false);
  error.clear();
  CHECK_FALSE(verify_only.sign_csr(d.read("leaf.csr"), "edge-1", 10, error));
  CHECK(error.find("no key") != std::string::npos);

  error.clear();
  CHECK_FALSE(pki::certificate_authority::load(d.read("ca.crt"), d.read("other.key"), error));
  CHECK(error.find("does not belong") != std::string::npos);
  error.clear();
  CHECK_FALSE(pki::certificate_authority::load(d.read("leaf.crt"), d.read("leaf.key"), error));
  CHECK(error.find("not a CA") != std::string::npos);
}

TEST_CASE("make_ca and make_key_and_csr: what sluicectl writes works with openssl and with itself") {
  cert_dir d;
  std::string error;
  const auto made = pki::make_ca("ISP node CA", 3650, error);
  REQUIRE_MESSAGE(made, error);
  d.write("ca.crt", made->cert_pem);
  d.write("ca.key", made->key_pem);
  d.sh("openssl x509 -in ca.crt -noout -text | grep -q 'CA:TRUE, pathlen:0'");
  d.sh("openssl pkey -in ca.key -noout");

  const auto kc = pki::make_key_and_csr("edge-9", error);
  REQUIRE_MESSAGE(kc, error);
  d.write("n.csr", kc->csr_pem);
  d.sh("openssl req -in n.csr -noout -verify -subject | grep -q 'CN = edge-9'");
  const auto ca = pki::certificate_authority::load(made->cert_pem, made->key_pem, error);
  REQUIRE_MESSAGE(ca, error);
  const auto cert = ca->sign_csr(kc->csr_pem, "edge-9", 30, error);
  REQUIRE_MESSAGE(cert, error);
  CHECK(ca->verify(*cert).empty());
  const auto key = pki::private_key::parse(kc->key_pem, error);
  REQUIRE(key);
  CHECK(cert->matches(*key));
  d.write("n.crt", cert->pem());
  d.sh("openssl verify -CAfile ca.crt -purpose sslclient n.crt");

  // The simulator's path: a key held in memory, a certificate issued for it directly.
  const auto sim_key = pki::private_key::generate_ec(error);
  REQUIRE(sim_key);
  const auto sim_cert = ca->issue(*sim_key, "sim-0001", 1, error);
  REQUIRE_MESSAGE(sim_cert, error);
  CHECK(sim_cert->common_name() == "sim-0001");
  CHECK(sim_cert->matches(*sim_key));
  CHECK_FALSE(sim_cert->matches(*key));
  CHECK(ca->verify(*sim_cert).empty());

  CHECK_FALSE(pki::make_key_and_csr("", error));
  CHECK_FALSE(pki::make_key_and_csr(std::string(65, 'a'), error));
  CHECK(pki::valid_node_id(std::string(64, 'a')));
  CHECK_FALSE(pki::valid_node_id("a/b"));
}
