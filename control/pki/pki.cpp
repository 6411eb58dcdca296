#include "control/pki/pki.hpp"

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cctype>
#include <ctime>
#include <memory>

namespace sluice::control::pki {
namespace {

template <class T, void (*F)(T*)>
struct deleter {
  void operator()(T* p) const noexcept { F(p); }
};
using bio_ptr = std::unique_ptr<BIO, deleter<BIO, BIO_free_all>>;
using x509_ptr = std::unique_ptr<X509, deleter<X509, X509_free>>;
using req_ptr = std::unique_ptr<X509_REQ, deleter<X509_REQ, X509_REQ_free>>;
using name_ptr = std::unique_ptr<X509_NAME, deleter<X509_NAME, X509_NAME_free>>;
using ext_ptr = std::unique_ptr<X509_EXTENSION, deleter<X509_EXTENSION, X509_EXTENSION_free>>;
using bn_ptr = std::unique_ptr<BIGNUM, deleter<BIGNUM, BN_free>>;
using store_ptr = std::unique_ptr<X509_STORE, deleter<X509_STORE, X509_STORE_free>>;
using store_ctx_ptr = std::unique_ptr<X509_STORE_CTX, deleter<X509_STORE_CTX, X509_STORE_CTX_free>>;

// OpenSSL's queued errors as text (and the queue emptied), after `what`.
std::string ssl_error(std::string_view what) {
  std::string out(what);
  unsigned long e = 0;
  bool first = true;
  while ((e = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    out += first ? ": " : "; ";
    out += buf;
    first = false;
  }
  return out;
}

bio_ptr mem_bio(std::string_view text) {
  return bio_ptr(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

std::string bio_text(BIO* b) {
  char* data = nullptr;
  const long n = BIO_get_mem_data(b, &data);
  return n > 0 && data ? std::string(data, static_cast<std::size_t>(n)) : std::string();
}

std::shared_ptr<EVP_PKEY> share(EVP_PKEY* k) { return std::shared_ptr<EVP_PKEY>(k, EVP_PKEY_free); }
std::shared_ptr<X509> share(X509* c) { return std::shared_ptr<X509>(c, X509_free); }

std::string key_pem_of(EVP_PKEY* k) {
  bio_ptr b(BIO_new(BIO_s_mem()));
  if (!b || PEM_write_bio_PrivateKey(b.get(), k, nullptr, nullptr, 0, nullptr, nullptr) != 1)
    return {};
  return bio_text(b.get());
}

// A P-256 key from a context kept per thread: EVP_EC_gen() looks the algorithm up again on every
// call, which costs several times the key generation itself (the fleet simulator makes 10,000).
EVP_PKEY* new_ec_key() {
  struct ctx_holder {
    EVP_PKEY_CTX* ctx = nullptr;
    ~ctx_holder() { EVP_PKEY_CTX_free(ctx); }
  };
  thread_local ctx_holder h;
  if (!h.ctx) {
    EVP_PKEY_CTX* c = EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr);
    if (!c || EVP_PKEY_keygen_init(c) <= 0 || EVP_PKEY_CTX_set_group_name(c, "P-256") <= 0) {
      EVP_PKEY_CTX_free(c);
      return nullptr;
    }
    h.ctx = c;
  }
  EVP_PKEY* k = nullptr;
  return EVP_PKEY_keygen(h.ctx, &k) > 0 ? k : nullptr;
}

// The subject public key of `x`. For EC keys it is set from the key's point directly: OpenSSL
// 3.0's X509_set_pubkey() runs the generic encoder machinery, about 1 ms per call, which would
// make minting a fleet's certificates take minutes.
bool set_public_key(X509* x, EVP_PKEY* k) {
  if (EVP_PKEY_get_base_id(k) == EVP_PKEY_EC) {
    char group[64] = {};
    std::size_t glen = 0;
    unsigned char point[256];
    std::size_t plen = 0;
    const int curve = EVP_PKEY_get_group_name(k, group, sizeof group, &glen) == 1 ? OBJ_sn2nid(group) : NID_undef;
    if (curve != NID_undef &&
        EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof point, &plen) == 1) {
      auto* enc = static_cast<unsigned char*>(OPENSSL_memdup(point, plen));
      if (enc && X509_PUBKEY_set0_param(X509_get_X509_PUBKEY(x), OBJ_nid2obj(NID_X9_62_id_ecPublicKey),
                                        V_ASN1_OBJECT, OBJ_nid2obj(curve), enc,
                                        static_cast<int>(plen)) == 1)
        return true;
      // set0_param took ownership of enc only on success
      OPENSSL_free(enc);
      ERR_clear_error();
    }
  }
  return X509_set_pubkey(x, k) == 1;
}

bool set_cn(X509_NAME* name, std::string_view cn) {
  return X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                    reinterpret_cast<const unsigned char*>(cn.data()),
                                    static_cast<int>(cn.size()), -1, 0) == 1;
}

// 128 random bits, positive (top bit clear), never zero.
bool set_random_serial(X509* x) {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof bytes) != 1) return false;
  bytes[0] &= 0x7f;
  bytes[0] |= 0x01;
  bn_ptr bn(BN_bin2bn(bytes, sizeof bytes, nullptr));
  if (!bn) return false;
  ASN1_INTEGER* serial = X509_get_serialNumber(x);
  return BN_to_ASN1_INTEGER(bn.get(), serial) != nullptr;
}

bool add_ext(X509* x, X509V3_CTX* ctx, int nid, const char* value) {
  ext_ptr ext(X509V3_EXT_conf_nid(nullptr, ctx, nid, value));
  return ext && X509_add_ext(x, ext.get(), -1) == 1;
}

// Ed25519 and Ed448 sign without a separate digest.
const EVP_MD* digest_for(EVP_PKEY* signer) {
  const int id = EVP_PKEY_get_base_id(signer);
  return id == EVP_PKEY_ED25519 || id == EVP_PKEY_ED448 ? nullptr : EVP_sha256();
}

// The key types a CSR may carry: "" when acceptable, else why not.
std::string check_key_type(EVP_PKEY* k) {
  switch (EVP_PKEY_get_base_id(k)) {
    case EVP_PKEY_EC: {
      char group[64] = {};
      std::size_t len = 0;
      if (EVP_PKEY_get_group_name(k, group, sizeof group, &len) != 1) return "EC key of unknown curve";
      const std::string_view g(group, len);
      if (g == "prime256v1" || g == "secp384r1" || g == "secp521r1") return "";
      return "EC curve " + std::string(g) + " is not P-256, P-384 or P-521";
    }
    case EVP_PKEY_ED25519:
      return "";
    case EVP_PKEY_RSA:
      return EVP_PKEY_get_bits(k) >= 2048 ? "" : "RSA key shorter than 2048 bits";
    default:
      return "key type is not EC, Ed25519 or RSA";
  }
}

}  // namespace

bool valid_node_id(std::string_view id) noexcept {
  return !id.empty() && id.size() <= 64 && std::all_of(id.begin(), id.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '.' || c == '-';
  });
}

// ---- private_key --------------------------------------------------------------------------

std::optional<private_key> private_key::generate_ec(std::string& error) {
  EVP_PKEY* k = new_ec_key();
  if (!k) {
    error = ssl_error("cannot generate an EC P-256 key");
    return std::nullopt;
  }
  return private_key(share(k));
}

std::optional<private_key> private_key::parse(std::string_view pem, std::string& error) {
  bio_ptr b = mem_bio(pem);
  EVP_PKEY* k = b ? PEM_read_bio_PrivateKey(b.get(), nullptr, nullptr, nullptr) : nullptr;
  if (!k) {
    error = ssl_error("not an unencrypted PEM private key");
    return std::nullopt;
  }
  return private_key(share(k));
}

std::string private_key::pem() const { return key_pem_of(key_.get()); }

// ---- certificate --------------------------------------------------------------------------

std::optional<certificate> certificate::parse(std::string_view pem, std::string& error) {
  bio_ptr b = mem_bio(pem);
  X509* c = b ? PEM_read_bio_X509(b.get(), nullptr, nullptr, nullptr) : nullptr;
  if (!c) {
    error = ssl_error("not a PEM certificate");
    return std::nullopt;
  }
  return certificate(share(c));
}

std::string certificate::pem() const {
  bio_ptr b(BIO_new(BIO_s_mem()));
  if (!b || PEM_write_bio_X509(b.get(), cert_.get()) != 1) return {};
  return bio_text(b.get());
}

std::string certificate::der() const {
  unsigned char* out = nullptr;
  const int n = i2d_X509(cert_.get(), &out);
  if (n <= 0) return {};
  std::string s(reinterpret_cast<const char*>(out), static_cast<std::size_t>(n));
  OPENSSL_free(out);
  return s;
}

std::string certificate::fingerprint() const {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (X509_digest(cert_.get(), EVP_sha256(), md, &len) != 1) return {};
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * len);
  for (unsigned int i = 0; i < len; ++i) {
    out += hex[md[i] >> 4];
    out += hex[md[i] & 0x0f];
  }
  return out;
}

std::optional<std::string> certificate::common_name() const {
  const X509_NAME* name = X509_get_subject_name(cert_.get());
  if (!name) return std::nullopt;
  const int at = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
  if (at < 0 || X509_NAME_get_index_by_NID(name, NID_commonName, at) >= 0) return std::nullopt;
  const ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, at));
  unsigned char* utf8 = nullptr;
  const int n = ASN1_STRING_to_UTF8(&utf8, data);
  if (n < 0) return std::nullopt;
  std::string cn(reinterpret_cast<const char*>(utf8), static_cast<std::size_t>(n));
  OPENSSL_free(utf8);
  if (cn.find('\0') != std::string::npos) return std::nullopt;  // "a\0b" must not pass for "a"
  return cn;
}

std::int64_t certificate::not_after() const {
  const ASN1_TIME* t = X509_get0_notAfter(cert_.get());
  std::tm tm{};
  if (!t || ASN1_TIME_to_tm(t, &tm) != 1) return 0;
  return static_cast<std::int64_t>(timegm(&tm));
}

bool certificate::matches(const private_key& k) const {
  const bool ok = X509_check_private_key(cert_.get(), k.native()) == 1;
  ERR_clear_error();
  return ok;
}

// ---- certificate_authority ----------------------------------------------------------------

std::optional<certificate_authority> certificate_authority::load(std::string_view cert_pem,
                                                                 std::string_view key_pem,
                                                                 std::string& error) {
  auto cert = certificate::parse(cert_pem, error);
  if (!cert) return std::nullopt;
  if (X509_check_ca(cert->native()) < 1) {
    error = "the certificate is not a CA certificate (basicConstraints CA:TRUE)";
    return std::nullopt;
  }
  std::shared_ptr<EVP_PKEY> key;
  if (!key_pem.empty()) {
    auto k = private_key::parse(key_pem, error);
    if (!k) return std::nullopt;
    if (!cert->matches(*k)) {
      error = "the CA key does not belong to the CA certificate";
      return std::nullopt;
    }
    key = k->key_;
  }
  return certificate_authority(std::move(*cert), std::move(key));
}

std::optional<certificate> certificate_authority::sign_csr(std::string_view csr_pem,
                                                           std::string_view node_id, int days,
                                                           std::string& error) const {
  bio_ptr b = mem_bio(csr_pem);
  req_ptr req(b ? PEM_read_bio_X509_REQ(b.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!req) {
    error = ssl_error("not a PEM certificate signing request");
    return std::nullopt;
  }
  EVP_PKEY* pub = X509_REQ_get0_pubkey(req.get());
  if (!pub) {
    error = ssl_error("the CSR carries no readable public key");
    return std::nullopt;
  }
  if (std::string why = check_key_type(pub); !why.empty()) {
    error = "the CSR's key is refused: " + why;
    return std::nullopt;
  }
  if (X509_REQ_verify(req.get(), pub) != 1) {
    error = ssl_error("the CSR's signature does not verify with its own key");
    return std::nullopt;
  }
  return issue_for(pub, node_id, days, error);
}

std::optional<certificate> certificate_authority::issue(const private_key& subject_key,
                                                        std::string_view node_id, int days,
                                                        std::string& error) const {
  return issue_for(subject_key.native(), node_id, days, error);
}

std::optional<certificate> certificate_authority::issue_for(EVP_PKEY* subject_public,
                                                            std::string_view node_id, int days,
                                                            std::string& error) const {
  if (!key_) {
    error = "the node CA has no key here (certificates are issued elsewhere)";
    return std::nullopt;
  }
  if (!valid_node_id(node_id)) {
    error = "node id '" + std::string(node_id) + "' is not 1-64 of [A-Za-z0-9_.-]";
    return std::nullopt;
  }
  if (days < 1 || days > 3650) {
    error = "certificate validity must be 1..3650 days";
    return std::nullopt;
  }
  x509_ptr x(X509_new());
  name_ptr subject(X509_NAME_new());
  X509* ca = cert_.native();
  bool ok = x && subject && X509_set_version(x.get(), 2) == 1 && set_random_serial(x.get()) &&
            X509_gmtime_adj(X509_getm_notBefore(x.get()), -300) != nullptr &&
            X509_time_adj_ex(X509_getm_notAfter(x.get()), days, 0, nullptr) != nullptr &&
            set_cn(subject.get(), node_id) && X509_set_subject_name(x.get(), subject.get()) == 1 &&
            X509_set_issuer_name(x.get(), X509_get_subject_name(ca)) == 1 &&
            set_public_key(x.get(), subject_public);
  if (ok) {
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, ca, x.get(), nullptr, nullptr, 0);
    ok = add_ext(x.get(), &ctx, NID_basic_constraints, "critical,CA:FALSE") &&
         add_ext(x.get(), &ctx, NID_key_usage, "critical,digitalSignature") &&
         add_ext(x.get(), &ctx, NID_ext_key_usage, "clientAuth") &&
         add_ext(x.get(), &ctx, NID_subject_key_identifier, "hash");
    // An ISP's CA may lack a subject key identifier; then there is no keyid to point at.
    if (ok && X509_get0_subject_key_id(ca) != nullptr)
      ok = add_ext(x.get(), &ctx, NID_authority_key_identifier, "keyid:always");
  }
  if (!ok || X509_sign(x.get(), key_.get(), digest_for(key_.get())) <= 0) {
    error = ssl_error("cannot issue the certificate");
    return std::nullopt;
  }
  // Read back from its DER: the object as built keeps a half-made public key (see
  // set_public_key) that key checks and verification would trip over.
  unsigned char* der = nullptr;
  const int n = i2d_X509(x.get(), &der);
  const unsigned char* p = der;
  X509* parsed = n > 0 ? d2i_X509(nullptr, &p, n) : nullptr;
  OPENSSL_free(der);
  if (!parsed) {
    error = ssl_error("cannot read the issued certificate back");
    return std::nullopt;
  }
  return certificate(share(parsed));
}

std::string certificate_authority::verify(const certificate& c) const {
  store_ptr store(X509_STORE_new());
  store_ctx_ptr ctx(X509_STORE_CTX_new());
  if (!store || !ctx || X509_STORE_add_cert(store.get(), cert_.native()) != 1 ||
      X509_STORE_CTX_init(ctx.get(), store.get(), c.native(), nullptr) != 1 ||
      X509_STORE_CTX_set_purpose(ctx.get(), X509_PURPOSE_SSL_CLIENT) != 1)
    return ssl_error("cannot set up verification");
  if (X509_verify_cert(ctx.get()) == 1) return "";
  const int e = X509_STORE_CTX_get_error(ctx.get());
  ERR_clear_error();
  return X509_verify_cert_error_string(e);
}

// ---- making keys, CSRs and CAs ------------------------------------------------------------

std::optional<key_and_csr> make_key_and_csr(std::string_view node_id, std::string& error) {
  if (!valid_node_id(node_id)) {
    error = "node id '" + std::string(node_id) + "' is not 1-64 of [A-Za-z0-9_.-]";
    return std::nullopt;
  }
  auto key = private_key::generate_ec(error);
  if (!key) return std::nullopt;
  req_ptr req(X509_REQ_new());
  name_ptr subject(X509_NAME_new());
  bio_ptr out(BIO_new(BIO_s_mem()));
  if (!req || !subject || !out || X509_REQ_set_version(req.get(), 0) != 1 ||
      !set_cn(subject.get(), node_id) || X509_REQ_set_subject_name(req.get(), subject.get()) != 1 ||
      X509_REQ_set_pubkey(req.get(), key->native()) != 1 ||
      X509_REQ_sign(req.get(), key->native(), EVP_sha256()) <= 0 ||
      PEM_write_bio_X509_REQ(out.get(), req.get()) != 1) {
    error = ssl_error("cannot make the CSR");
    return std::nullopt;
  }
  return key_and_csr{key->pem(), bio_text(out.get())};
}

std::optional<new_ca> make_ca(std::string_view common_name, int days, std::string& error) {
  if (common_name.empty() || common_name.size() > 64) {
    error = "the CA's common name must be 1-64 characters";
    return std::nullopt;
  }
  if (days < 1 || days > 36500) {
    error = "CA validity must be 1..36500 days";
    return std::nullopt;
  }
  auto key = private_key::generate_ec(error);
  if (!key) return std::nullopt;
  x509_ptr x(X509_new());
  name_ptr subject(X509_NAME_new());
  bool ok = x && subject && X509_set_version(x.get(), 2) == 1 && set_random_serial(x.get()) &&
            X509_gmtime_adj(X509_getm_notBefore(x.get()), -300) != nullptr &&
            X509_time_adj_ex(X509_getm_notAfter(x.get()), days, 0, nullptr) != nullptr &&
            set_cn(subject.get(), common_name) && X509_set_subject_name(x.get(), subject.get()) == 1 &&
            X509_set_issuer_name(x.get(), subject.get()) == 1 &&
            X509_set_pubkey(x.get(), key->native()) == 1;
  if (ok) {
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, x.get(), x.get(), nullptr, nullptr, 0);
    ok = add_ext(x.get(), &ctx, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") &&
         add_ext(x.get(), &ctx, NID_key_usage, "critical,keyCertSign,cRLSign") &&
         add_ext(x.get(), &ctx, NID_subject_key_identifier, "hash") &&
         add_ext(x.get(), &ctx, NID_authority_key_identifier, "keyid:always");
  }
  if (!ok || X509_sign(x.get(), key->native(), EVP_sha256()) <= 0) {
    error = ssl_error("cannot make the CA certificate");
    return std::nullopt;
  }
  bio_ptr out(BIO_new(BIO_s_mem()));
  if (!out || PEM_write_bio_X509(out.get(), x.get()) != 1) {
    error = ssl_error("cannot write the CA certificate");
    return std::nullopt;
  }
  return new_ca{bio_text(out.get()), key->pem()};
}

}  // namespace sluice::control::pki
