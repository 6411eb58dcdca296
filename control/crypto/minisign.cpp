#include "control/crypto/minisign.hpp"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cstddef>
#include <memory>
#include <vector>

namespace sluice::control::crypto {

namespace {

// ---- OpenSSL handles ---------------------------------------------------------------------------

struct pkey_free {
  void operator()(EVP_PKEY* p) const noexcept { EVP_PKEY_free(p); }
};
struct pkey_ctx_free {
  void operator()(EVP_PKEY_CTX* p) const noexcept { EVP_PKEY_CTX_free(p); }
};
struct md_ctx_free {
  void operator()(EVP_MD_CTX* p) const noexcept { EVP_MD_CTX_free(p); }
};
struct md_free {
  void operator()(EVP_MD* p) const noexcept { EVP_MD_free(p); }
};
struct bio_free {
  void operator()(BIO* p) const noexcept { BIO_free(p); }
};
using pkey_ptr = std::unique_ptr<EVP_PKEY, pkey_free>;
using pkey_ctx_ptr = std::unique_ptr<EVP_PKEY_CTX, pkey_ctx_free>;
using md_ctx_ptr = std::unique_ptr<EVP_MD_CTX, md_ctx_free>;
using md_ptr = std::unique_ptr<EVP_MD, md_free>;
using bio_ptr = std::unique_ptr<BIO, bio_free>;

// Secret material we copy out of OpenSSL or a file is wiped when it goes out of scope.
struct wiped_vector {
  std::vector<std::uint8_t> v;
  ~wiped_vector() { OPENSSL_cleanse(v.data(), v.size()); }
};

constexpr std::size_t seed_size = 32;
constexpr std::size_t pk_size = 32;
constexpr std::size_t sig_size = 64;
constexpr std::size_t digest_size = 64;
constexpr std::size_t alg_size = 2;
constexpr std::size_t id_size = 8;

constexpr std::size_t pk_blob_size = alg_size + id_size + pk_size;                // 42
constexpr std::size_t sig_blob_size = alg_size + id_size + sig_size;              // 74
constexpr std::size_t sk_blob_size = 2 + 2 + 2 + 32 + 8 + 8 + id_size + 64 + 32;  // 158

constexpr std::string_view untrusted_prefix = "untrusted comment: ";
constexpr std::string_view trusted_prefix = "trusted comment: ";
constexpr std::string_view key_id_prefix = "# sluice key id: ";
constexpr std::string_view pem_begin = "-----BEGIN ";

// A pointer OpenSSL accepts even for an empty message (some paths dislike NULL).
const std::uint8_t* data_or_dummy(std::span<const std::uint8_t> s) noexcept {
  static const std::uint8_t dummy = 0;
  return s.empty() ? &dummy : s.data();
}

std::span<const std::uint8_t> as_bytes(std::string_view s) noexcept {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

// ---- base64 (OpenSSL does the coding; we only insist on the canonical shape) -------------------

std::string b64_encode(std::span<const std::uint8_t> in) {
  std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), in.data(),
                                static_cast<int>(in.size()));
  out.resize(n < 0 ? 0 : static_cast<std::size_t>(n));
  return out;
}

bool is_b64_char(char c) noexcept {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
         c == '/';
}

// EVP_DecodeBlock skips surrounding blanks and counts padding as zero bytes; check the shape
// first so that only a clean "xxxx...==" line decodes, then drop the padding bytes.
std::optional<std::vector<std::uint8_t>> b64_decode(std::string_view in) {
  if (in.empty() || in.size() % 4 != 0) return std::nullopt;
  std::size_t pad = 0;
  while (pad < 2 && in[in.size() - 1 - pad] == '=') ++pad;
  for (std::size_t i = 0; i < in.size() - pad; ++i) {
    if (!is_b64_char(in[i])) return std::nullopt;
  }
  std::vector<std::uint8_t> out(in.size() / 4 * 3);
  const int n = EVP_DecodeBlock(out.data(), reinterpret_cast<const unsigned char*>(in.data()),
                                static_cast<int>(in.size()));
  if (n < 0 || static_cast<std::size_t>(n) != out.size()) {
    OPENSSL_cleanse(out.data(), out.size());
    return std::nullopt;
  }
  out.resize(out.size() - pad);
  // Only the canonical text (unused low bits zero), as libsodium insists: one file, one text.
  if (b64_encode(out) != in) {
    OPENSSL_cleanse(out.data(), out.size());
    return std::nullopt;
  }
  return out;
}

// ---- text lines
// ----------------------------------------------------------------------------------

// Lines without their "\n" (or "\r\n"); trailing empty lines (the file's final newline) dropped.
std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  while (!text.empty()) {
    const auto nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.push_back(line);
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
  while (!lines.empty() && lines.back().empty()) lines.pop_back();
  return lines;
}

std::string one_line(std::string_view s) {
  std::string out(s);
  std::replace_if(
      out.begin(), out.end(), [](char c) { return c == '\n' || c == '\r'; }, ' ');
  return out;
}

void set_error(std::string* error, std::string_view why) {
  if (error != nullptr) *error = why;
}

// ---- Ed25519 and BLAKE2b via EVP -------------------------------------------------------------

pkey_ptr private_from_seed(const std::uint8_t* seed) {
  return pkey_ptr(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, seed, seed_size));
}

bool raw_public(EVP_PKEY* pkey, std::uint8_t* out) {
  std::size_t len = pk_size;
  return EVP_PKEY_get_raw_public_key(pkey, out, &len) == 1 && len == pk_size;
}

bool raw_seed(EVP_PKEY* pkey, std::uint8_t* out) {
  std::size_t len = seed_size;
  return EVP_PKEY_get_raw_private_key(pkey, out, &len) == 1 && len == seed_size;
}

bool blake2b_512(std::span<const std::uint8_t> in, std::uint8_t* out) {
  const md_ptr md(EVP_MD_fetch(nullptr, "BLAKE2B-512", nullptr));
  if (!md) return false;
  unsigned int len = 0;
  return EVP_Digest(data_or_dummy(in), in.size(), out, &len, md.get(), nullptr) == 1 &&
         len == digest_size;
}

bool ed25519_sign(EVP_PKEY* pkey, std::span<const std::uint8_t> msg, std::uint8_t* sig) {
  const md_ctx_ptr ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, pkey) != 1) return false;
  std::size_t len = sig_size;
  return EVP_DigestSign(ctx.get(), sig, &len, data_or_dummy(msg), msg.size()) == 1 &&
         len == sig_size;
}

enum class check { good, bad, failed };

check ed25519_verify(EVP_PKEY* pkey, std::span<const std::uint8_t> msg,
                     std::span<const std::uint8_t> sig) {
  const md_ctx_ptr ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, pkey) != 1) {
    return check::failed;
  }
  const int r = EVP_DigestVerify(ctx.get(), sig.data(), sig.size(), data_or_dummy(msg), msg.size());
  if (r == 1) return check::good;
  // A wrong signature leaves reasons on the error queue; they are not ours to report later.
  ERR_clear_error();
  return r == 0 ? check::bad : check::failed;
}

// ---- hex key ids -------------------------------------------------------------------------------

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// ---- signature files ---------------------------------------------------------------------------

struct parsed_signature {
  std::array<std::uint8_t, alg_size> alg{};
  key_id id{};
  std::array<std::uint8_t, sig_size> sig{};
  std::string_view trusted_comment;
  std::array<std::uint8_t, sig_size> global_sig{};
};

std::optional<parsed_signature> parse_signature(std::string_view text) {
  const auto lines = split_lines(text);
  if (lines.size() != 4) return std::nullopt;
  if (!lines[0].starts_with(untrusted_prefix) || !lines[2].starts_with(trusted_prefix)) {
    return std::nullopt;
  }
  const auto blob = b64_decode(lines[1]);
  const auto global = b64_decode(lines[3]);
  if (!blob || blob->size() != sig_blob_size || !global || global->size() != sig_size) {
    return std::nullopt;
  }
  parsed_signature p;
  auto it = blob->begin();
  std::copy_n(it, alg_size, p.alg.begin());
  std::copy_n(it + alg_size, id_size, p.id.begin());
  std::copy_n(it + alg_size + id_size, sig_size, p.sig.begin());
  std::copy_n(global->begin(), sig_size, p.global_sig.begin());
  p.trusted_comment = lines[2].substr(trusted_prefix.size());
  return p;
}

bool alg_is(const std::array<std::uint8_t, alg_size>& alg, std::string_view name) noexcept {
  return alg[0] == static_cast<std::uint8_t>(name[0]) &&
         alg[1] == static_cast<std::uint8_t>(name[1]);
}

// ---- secret keys -------------------------------------------------------------------------------

std::optional<secret_key> parse_minisign_secret(std::string_view b64, std::string* error) {
  auto decoded = b64_decode(b64);
  if (!decoded) {
    set_error(error, "secret key: not valid base64");
    return std::nullopt;
  }
  wiped_vector blob{std::move(*decoded)};
  const auto& v = blob.v;
  if (v.size() != sk_blob_size) {
    set_error(error, "secret key: must decode to 158 bytes (minisign format)");
    return std::nullopt;
  }
  if (v[0] != 'E' || v[1] != 'd') {
    set_error(error, "secret key: unsupported signature algorithm (want Ed25519, \"Ed\")");
    return std::nullopt;
  }
  if (v[2] == 'S' && v[3] == 'c') {
    set_error(error,
              "secret key: encrypted with a password (scrypt); make an unencrypted key with "
              "`minisign -G -W` or `sluicectl keygen`");
    return std::nullopt;
  }
  if (v[2] != 0 || v[3] != 0) {
    set_error(error, "secret key: unknown key derivation algorithm");
    return std::nullopt;
  }
  if (v[4] != 'B' || v[5] != '2') {
    set_error(error, "secret key: unknown checksum algorithm (want BLAKE2b, \"B2\")");
    return std::nullopt;
  }
  constexpr std::size_t id_at = 2 + 2 + 2 + 32 + 8 + 8;
  constexpr std::size_t key_at = id_at + id_size;
  secret_key k;
  std::copy_n(v.begin() + id_at, id_size, k.id.begin());
  std::copy_n(v.begin() + key_at, k.key.size(), k.key.begin());
  // Stands in for the BLAKE2b-256 checksum OpenSSL 3.0 cannot compute (see the header).
  const pkey_ptr pkey = private_from_seed(k.key.data());
  std::array<std::uint8_t, pk_size> derived{};
  if (!pkey || !raw_public(pkey.get(), derived.data())) {
    OPENSSL_cleanse(k.key.data(), k.key.size());
    set_error(error, "secret key: cryptographic library failure");
    return std::nullopt;
  }
  if (!std::equal(derived.begin(), derived.end(), k.key.begin() + seed_size)) {
    OPENSSL_cleanse(k.key.data(), k.key.size());
    set_error(error, "secret key: corrupt (its seed does not yield its public key)");
    return std::nullopt;
  }
  return k;
}

int no_password(char*, int, int, void*) { return -1; }

std::optional<secret_key> parse_pem_secret(std::string_view text, std::string* error) {
  std::optional<key_id> id;
  const auto begin = text.find(pem_begin);
  for (const auto line : split_lines(text.substr(0, begin))) {
    if (!line.starts_with(key_id_prefix)) continue;
    id = parse_key_id_hex(line.substr(key_id_prefix.size()));
    if (!id) {
      set_error(error, "secret key: bad \"# sluice key id:\" line (want 16 hex digits)");
      return std::nullopt;
    }
  }
  if (text.find("-----BEGIN ENCRYPTED PRIVATE KEY-----") != std::string_view::npos) {
    set_error(error,
              "secret key: PEM key is encrypted; make an unencrypted key with `sluicectl keygen`");
    return std::nullopt;
  }
  const bio_ptr bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
  if (!bio) {
    set_error(error, "secret key: cryptographic library failure");
    return std::nullopt;
  }
  const pkey_ptr pkey(PEM_read_bio_PrivateKey(bio.get(), nullptr, no_password, nullptr));
  ERR_clear_error();
  if (!pkey) {
    set_error(error, "secret key: not a readable PEM private key");
    return std::nullopt;
  }
  if (EVP_PKEY_get_base_id(pkey.get()) != EVP_PKEY_ED25519) {
    set_error(error, "secret key: PEM key is not an Ed25519 key");
    return std::nullopt;
  }
  secret_key k;
  if (!raw_seed(pkey.get(), k.key.data()) || !raw_public(pkey.get(), k.key.data() + seed_size)) {
    OPENSSL_cleanse(k.key.data(), k.key.size());
    set_error(error, "secret key: cryptographic library failure");
    return std::nullopt;
  }
  if (id) {
    k.id = *id;
  } else {
    std::array<std::uint8_t, digest_size> digest{};
    if (!blake2b_512({k.key.data() + seed_size, pk_size}, digest.data())) {
      OPENSSL_cleanse(k.key.data(), k.key.size());
      set_error(error, "secret key: cryptographic library failure");
      return std::nullopt;
    }
    std::copy_n(digest.begin(), id_size, k.id.begin());
  }
  return k;
}

}  // namespace

// ---- public API
// ----------------------------------------------------------------------------------

std::string_view to_string(verify_outcome o) noexcept {
  switch (o) {
#define X(name, text)        \
  case verify_outcome::name: \
    return #name;
    SLUICE_VERIFY_OUTCOMES(X)
#undef X
    case verify_outcome::count:
      break;
  }
  return "unknown";
}

std::string_view describe(verify_outcome o) noexcept {
  switch (o) {
#define X(name, text)        \
  case verify_outcome::name: \
    return text;
    SLUICE_VERIFY_OUTCOMES(X)
#undef X
    case verify_outcome::count:
      break;
  }
  return "unknown outcome";
}

std::optional<key_pair> generate_key_pair() {
  const pkey_ctx_ptr ctx(EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, nullptr));
  EVP_PKEY* raw = nullptr;
  if (!ctx || EVP_PKEY_keygen_init(ctx.get()) != 1 || EVP_PKEY_keygen(ctx.get(), &raw) != 1) {
    ERR_clear_error();
    return std::nullopt;
  }
  const pkey_ptr pkey(raw);
  key_pair kp;
  if (RAND_bytes(kp.sec.id.data(), static_cast<int>(kp.sec.id.size())) != 1 ||
      !raw_seed(pkey.get(), kp.sec.key.data()) ||
      !raw_public(pkey.get(), kp.sec.key.data() + seed_size)) {
    OPENSSL_cleanse(kp.sec.key.data(), kp.sec.key.size());
    ERR_clear_error();
    return std::nullopt;
  }
  kp.pub.id = kp.sec.id;
  std::copy_n(kp.sec.key.begin() + seed_size, pk_size, kp.pub.key.begin());
  return kp;
}

std::string format_public_key(const public_key& k, std::string_view untrusted_comment) {
  std::array<std::uint8_t, pk_blob_size> blob{};
  blob[0] = 'E';
  blob[1] = 'd';
  std::copy(k.id.begin(), k.id.end(), blob.begin() + alg_size);
  std::copy(k.key.begin(), k.key.end(), blob.begin() + alg_size + id_size);
  std::string out(untrusted_prefix);
  out += untrusted_comment.empty() ? "minisign public key " + to_hex(k.id)
                                   : one_line(untrusted_comment);
  out += '\n';
  out += b64_encode(blob);
  out += '\n';
  return out;
}

std::string format_secret_key(const secret_key& k, std::string_view untrusted_comment) {
  const pkey_ptr pkey = private_from_seed(k.key.data());
  const bio_ptr bio(BIO_new(BIO_s_mem()));
  if (!pkey || !bio ||
      PEM_write_bio_PrivateKey(bio.get(), pkey.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    ERR_clear_error();
    return {};
  }
  char* pem = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &pem);
  if (len <= 0 || pem == nullptr) return {};
  std::string out = "# ";
  out += untrusted_comment.empty() ? "sluice secret key (Ed25519, PKCS#8); keep it secret"
                                   : one_line(untrusted_comment);
  out += '\n';
  out += key_id_prefix;
  out += to_hex(k.id);
  out += '\n';
  out.append(pem, static_cast<std::size_t>(len));
  OPENSSL_cleanse(pem, static_cast<std::size_t>(len));  // the PEM text holds the seed
  return out;
}

std::optional<public_key> parse_public_key(std::string_view text, std::string* error) {
  const auto lines = split_lines(text);
  std::string_view b64;
  if (lines.size() == 1) {
    b64 = lines[0];
  } else if (lines.size() == 2 && lines[0].starts_with(untrusted_prefix)) {
    b64 = lines[1];
  } else {
    set_error(error,
              "public key: want \"untrusted comment: ...\" and a base64 line, or the base64 line "
              "alone");
    return std::nullopt;
  }
  const auto blob = b64_decode(b64);
  if (!blob) {
    set_error(error, "public key: not valid base64");
    return std::nullopt;
  }
  if (blob->size() != pk_blob_size) {
    set_error(error, "public key: must decode to 42 bytes");
    return std::nullopt;
  }
  if ((*blob)[0] != 'E' || (*blob)[1] != 'd') {
    set_error(error, "public key: unsupported signature algorithm (want Ed25519, \"Ed\")");
    return std::nullopt;
  }
  public_key k;
  std::copy_n(blob->begin() + alg_size, id_size, k.id.begin());
  std::copy_n(blob->begin() + alg_size + id_size, pk_size, k.key.begin());
  return k;
}

std::optional<secret_key> parse_secret_key(std::string_view text, std::string* error) {
  if (text.find(pem_begin) != std::string_view::npos) return parse_pem_secret(text, error);
  const auto lines = split_lines(text);
  if (lines.size() == 1) return parse_minisign_secret(lines[0], error);
  if (lines.size() == 2 && lines[0].starts_with(untrusted_prefix)) {
    return parse_minisign_secret(lines[1], error);
  }
  set_error(error,
            "secret key: want a PEM private key, or minisign's \"untrusted comment: ...\" and "
            "base64 lines");
  return std::nullopt;
}

std::optional<std::string> sign(const secret_key& k, std::span<const std::uint8_t> message,
                                std::string_view trusted_comment,
                                std::string_view untrusted_comment) {
  if (trusted_comment.find_first_of("\r\n") != std::string_view::npos) return std::nullopt;
  const pkey_ptr pkey = private_from_seed(k.key.data());
  std::array<std::uint8_t, digest_size> digest{};
  std::array<std::uint8_t, sig_blob_size> blob{};
  blob[0] = 'E';
  blob[1] = 'D';
  std::copy(k.id.begin(), k.id.end(), blob.begin() + alg_size);
  std::uint8_t* sig = blob.data() + alg_size + id_size;
  if (!pkey || !blake2b_512(message, digest.data()) || !ed25519_sign(pkey.get(), digest, sig)) {
    ERR_clear_error();
    return std::nullopt;
  }
  std::vector<std::uint8_t> global_msg(sig, sig + sig_size);
  global_msg.insert(global_msg.end(), trusted_comment.begin(), trusted_comment.end());
  std::array<std::uint8_t, sig_size> global{};
  if (!ed25519_sign(pkey.get(), global_msg, global.data())) {
    ERR_clear_error();
    return std::nullopt;
  }
  std::string out(untrusted_prefix);
  out += untrusted_comment.empty() ? "signature from sluice key " + to_hex(k.id)
                                   : one_line(untrusted_comment);
  out += '\n';
  out += b64_encode(blob);
  out += '\n';
  out += trusted_prefix;
  out += trusted_comment;
  out += '\n';
  out += b64_encode(global);
  out += '\n';
  return out;
}

std::optional<std::string> sign(const secret_key& k, std::string_view message,
                                std::string_view trusted_comment,
                                std::string_view untrusted_comment) {
  return sign(k, as_bytes(message), trusted_comment, untrusted_comment);
}

verify_result verify(const public_key& k, std::span<const std::uint8_t> message,
                     std::string_view signature_text) {
  verify_result r;
  const auto p = parse_signature(signature_text);
  if (!p) {
    r.outcome = verify_outcome::malformed_signature;
    return r;
  }
  const bool prehashed = alg_is(p->alg, "ED");
  if (!prehashed && !alg_is(p->alg, "Ed")) {
    r.outcome = verify_outcome::unsupported_algorithm;
    return r;
  }
  if (p->id != k.id) {
    r.outcome = verify_outcome::wrong_key;
    return r;
  }
  const pkey_ptr pkey(
      EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, k.key.data(), k.key.size()));
  if (!pkey) {
    ERR_clear_error();
    r.outcome = verify_outcome::crypto_failure;
    return r;
  }
  std::array<std::uint8_t, digest_size> digest{};
  std::span<const std::uint8_t> signed_bytes = message;
  if (prehashed) {
    if (!blake2b_512(message, digest.data())) {
      ERR_clear_error();
      r.outcome = verify_outcome::crypto_failure;
      return r;
    }
    signed_bytes = digest;
  }
  switch (ed25519_verify(pkey.get(), signed_bytes, p->sig)) {
    case check::good:
      break;
    case check::bad:
      r.outcome = verify_outcome::bad_signature;
      return r;
    case check::failed:
      r.outcome = verify_outcome::crypto_failure;
      return r;
  }
  std::vector<std::uint8_t> global_msg(p->sig.begin(), p->sig.end());
  global_msg.insert(global_msg.end(), p->trusted_comment.begin(), p->trusted_comment.end());
  switch (ed25519_verify(pkey.get(), global_msg, p->global_sig)) {
    case check::good:
      break;
    case check::bad:
      r.outcome = verify_outcome::bad_trusted_comment;
      return r;
    case check::failed:
      r.outcome = verify_outcome::crypto_failure;
      return r;
  }
  r.outcome = verify_outcome::ok;
  r.trusted_comment = p->trusted_comment;
  return r;
}

verify_result verify(const public_key& k, std::string_view message,
                     std::string_view signature_text) {
  return verify(k, as_bytes(message), signature_text);
}

std::optional<key_id> signature_key_id(std::string_view signature_text) {
  const auto p = parse_signature(signature_text);
  if (!p) return std::nullopt;
  return p->id;
}

std::string to_hex(const key_id& id) {
  static constexpr char digits[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(2 * id.size());
  // minisign prints the id as a little-endian 64-bit number: last byte first.
  for (auto it = id.rbegin(); it != id.rend(); ++it) {
    out += digits[*it >> 4];
    out += digits[*it & 0x0f];
  }
  return out;
}

std::optional<key_id> parse_key_id_hex(std::string_view hex) {
  if (hex.size() != 2 * id_size) return std::nullopt;
  key_id id{};
  for (std::size_t i = 0; i < id_size; ++i) {
    const int hi = hex_value(hex[2 * i]);
    const int lo = hex_value(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    id[id_size - 1 - i] = static_cast<std::uint8_t>(hi << 4 | lo);
  }
  return id;
}

}  // namespace sluice::control::crypto
