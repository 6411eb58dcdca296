#pragma once
// Node identity (issue 14): the X.509 pieces of mutual TLS between nodes and the controller,
// with OpenSSL 3 (EVP and X509 APIs).
//
//   - certificate_authority: the node CA, its certificate and (for a controller that issues
//     certificates itself) its key. It signs a node's CSR into a node certificate: subject
//     CN = node id (whatever the CSR's subject said: only its public key is taken), issuer = the
//     CA's subject, serial 128 random bits, valid from 5 minutes ago (clock skew) for `days`,
//     basicConstraints CA:FALSE, keyUsage digitalSignature, extendedKeyUsage clientAuth, subject
//     and authority key identifiers. Signed with SHA-256 (Ed25519 CAs: no digest).
//   - certificate / private_key: owning wrappers with the queries the controller and the agents
//     need: PEM and DER, SHA-256 fingerprint (lowercase hex of the DER, what the inventory pins),
//     the subject's one CN, notAfter, whether a key belongs to a certificate.
//   - make_key_and_csr (sluicectl nodes enroll: the key never leaves the node's host),
//     make_ca (sluicectl ca init).
//
// Keys made here are EC P-256. CSRs are accepted with EC (P-256, P-384, P-521), Ed25519 or RSA of
// at least 2048 bits, and must carry a valid self-signature.
//
// Thread-safe: objects are immutable after construction (OpenSSL's X509 and EVP_PKEY are
// reference-counted and safe to use from several threads for these read-only calls). Nothing
// here throws except std::bad_alloc; failures come back as nullopt with `error` set.

#include <openssl/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace sluice::control::pki {

// Node ids, as certificate CNs: [A-Za-z0-9_.-]{1,64} (they go into URL paths unescaped).
[[nodiscard]] bool valid_node_id(std::string_view id) noexcept;

// Days a node certificate is valid by default (the CA/Browser Forum's former maximum: long
// enough that a fleet is not re-enrolled every year, short enough to age out lost keys).
inline constexpr int default_certificate_days = 825;

class private_key {
 public:
  // A new EC P-256 key.
  [[nodiscard]] static std::optional<private_key> generate_ec(std::string& error);
  // PKCS#8 or traditional PEM, unencrypted.
  [[nodiscard]] static std::optional<private_key> parse(std::string_view pem, std::string& error);
  // PKCS#8 PEM, unencrypted (the caller writes it 0600).
  [[nodiscard]] std::string pem() const;
  [[nodiscard]] EVP_PKEY* native() const noexcept { return key_.get(); }

 private:
  explicit private_key(std::shared_ptr<EVP_PKEY> k) : key_(std::move(k)) {}
  std::shared_ptr<EVP_PKEY> key_;
  friend class certificate_authority;
};

class certificate {
 public:
  // The first certificate of a PEM text.
  [[nodiscard]] static std::optional<certificate> parse(std::string_view pem, std::string& error);
  [[nodiscard]] std::string pem() const;
  [[nodiscard]] std::string der() const;
  // Lowercase hex SHA-256 of the DER encoding (64 characters).
  [[nodiscard]] std::string fingerprint() const;
  // The subject's CN when there is exactly one; nullopt otherwise (none, several, not UTF-8).
  [[nodiscard]] std::optional<std::string> common_name() const;
  [[nodiscard]] std::int64_t not_after() const;  // unix seconds; 0 when unreadable
  // The private key is the one this certificate's public key belongs to.
  [[nodiscard]] bool matches(const private_key& k) const;
  [[nodiscard]] X509* native() const noexcept { return cert_.get(); }

 private:
  explicit certificate(std::shared_ptr<X509> c) : cert_(std::move(c)) {}
  std::shared_ptr<X509> cert_;
  friend class certificate_authority;
};

class certificate_authority {
 public:
  // `cert_pem`: the CA certificate (must be a CA: basicConstraints CA:TRUE). `key_pem`: its
  // private key, or empty when certificates are issued elsewhere (an ISP CA): then sign_csr()
  // and issue() fail, verify() works. The key must belong to the certificate.
  [[nodiscard]] static std::optional<certificate_authority> load(std::string_view cert_pem,
                                                                 std::string_view key_pem,
                                                                 std::string& error);
  [[nodiscard]] bool can_issue() const noexcept { return key_ != nullptr; }
  [[nodiscard]] const certificate& cert() const noexcept { return cert_; }

  // The node certificate for `node_id` over the CSR's public key (see the header comment).
  [[nodiscard]] std::optional<certificate> sign_csr(std::string_view csr_pem,
                                                    std::string_view node_id, int days,
                                                    std::string& error) const;
  // The same over a key the caller holds (the fleet simulator mints its nodes' certificates).
  [[nodiscard]] std::optional<certificate> issue(const private_key& subject_key,
                                                 std::string_view node_id, int days,
                                                 std::string& error) const;
  // Whether `c` chains to this CA, is within its validity now and fits a TLS client
  // (extendedKeyUsage clientAuth when present). "" when it does, else OpenSSL's reason.
  [[nodiscard]] std::string verify(const certificate& c) const;

 private:
  certificate_authority(certificate c, std::shared_ptr<EVP_PKEY> k)
      : cert_(std::move(c)), key_(std::move(k)) {}
  [[nodiscard]] std::optional<certificate> issue_for(EVP_PKEY* subject_public,
                                                     std::string_view node_id, int days,
                                                     std::string& error) const;
  certificate cert_;
  std::shared_ptr<EVP_PKEY> key_;  // nullptr: verify only
};

struct key_and_csr {
  std::string key_pem;  // PKCS#8, unencrypted
  std::string csr_pem;
};
// A new EC P-256 key and a CSR for it with subject CN = node_id, signed with SHA-256.
[[nodiscard]] std::optional<key_and_csr> make_key_and_csr(std::string_view node_id,
                                                          std::string& error);

struct new_ca {
  std::string cert_pem;
  std::string key_pem;  // PKCS#8, unencrypted
};
// A self-signed CA (EC P-256, SHA-256) with subject CN = common_name, basicConstraints critical
// CA:TRUE pathlen:0, keyUsage critical keyCertSign and cRLSign, valid for `days`.
[[nodiscard]] std::optional<new_ca> make_ca(std::string_view common_name, int days,
                                            std::string& error);

}  // namespace sluice::control::pki
