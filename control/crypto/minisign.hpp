#pragma once
// Ed25519 keys and detached signatures in minisign's formats (https://jedisct1.github.io/minisign/),
// made and checked with OpenSSL 3. One format for both documents Sluice signs: ministry
// directives (issuer keys) and policy snapshots (the controller's key), so `minisign -V` checks
// what we sign and we check what `minisign -S` signs.
//
// Formats (all binary fields base64 in the files):
//   public key  "untrusted comment: ...\n" + b64("Ed" | key_id[8] | ed25519_pk[32]) + "\n"
//   secret key  read: minisign's unencrypted format (minisign -G -W): "untrusted comment: ...\n"
//               + b64("Ed" | kdf "\0\0" | "B2" | salt[32] | opslimit[8] | memlimit[8] |
//               key_id[8] | ed25519 seed+pk[64] | checksum[32]); the checksum is BLAKE2b-256,
//               which OpenSSL 3.0 cannot compute (variable digest size arrived in 3.2), so it is
//               not checked; the seed must yield the stored public key instead.
//               written (and read): PKCS#8 PEM (OpenSSL's own format) preceded by a line
//               "# sluice key id: HEX"; without that line the id is the first 8 bytes of
//               BLAKE2b-512(public key).
//   signature   "untrusted comment: ...\n" + b64("ED" | key_id[8] | sig[64]) + "\n" +
//               "trusted comment: TEXT\n" + b64(global_sig[64]) + "\n"
//               sig = Ed25519(BLAKE2b-512(message)) ("ED" = prehashed; legacy "Ed" = Ed25519 over
//               the message itself is verified too, never produced);
//               global_sig = Ed25519(sig[64] | TEXT).
//
// Thread-safe (no shared state). Nothing here throws except std::bad_alloc; OpenSSL failures
// come back as errors.

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace sluice::control::crypto {

using key_id = std::array<std::uint8_t, 8>;

struct public_key {
  key_id id{};
  std::array<std::uint8_t, 32> key{};
};

struct secret_key {
  key_id id{};
  std::array<std::uint8_t, 64> key{};  // Ed25519 seed (32) followed by the public key (32)
};

struct key_pair {
  public_key pub;
  secret_key sec;
};

#define SLUICE_VERIFY_OUTCOMES(X)                                                       \
  X(ok, "signature valid")                                                              \
  X(malformed_signature, "signature file is malformed")                                 \
  X(unsupported_algorithm, "signature algorithm is not Ed25519 (minisign Ed/ED)")       \
  X(wrong_key, "signature was made by a different key (key id mismatch)")               \
  X(bad_signature, "signature does not match the document")                             \
  X(bad_trusted_comment, "trusted comment signature does not match (comment altered)")  \
  X(crypto_failure, "cryptographic library failure")

enum class verify_outcome : std::uint8_t {
#define X(name, text) name,
  SLUICE_VERIFY_OUTCOMES(X)
#undef X
      count
};
[[nodiscard]] std::string_view to_string(verify_outcome o) noexcept;
[[nodiscard]] std::string_view describe(verify_outcome o) noexcept;  // the human text above

struct verify_result {
  verify_outcome outcome = verify_outcome::malformed_signature;
  std::string trusted_comment;  // set when outcome == ok
  [[nodiscard]] explicit operator bool() const noexcept { return outcome == verify_outcome::ok; }
};

// A fresh random key pair with a random key id. nullopt only if OpenSSL fails.
[[nodiscard]] std::optional<key_pair> generate_key_pair();

// File texts in the formats above; comments must not contain '\n'.
[[nodiscard]] std::string format_public_key(const public_key& k,
                                            std::string_view untrusted_comment = {});
// The secret key text is "# COMMENT\n# sluice key id: HEX\n" + PKCS#8 PEM (so `openssl pkey`
// reads it too); empty only if OpenSSL fails. A '\n' in an untrusted comment becomes ' '.
[[nodiscard]] std::string format_secret_key(const secret_key& k,
                                            std::string_view untrusted_comment = {});

// Accept the whole file text or only its base64 line. On failure nullopt and `*error` (if given)
// says why. Encrypted secret keys (minisign's default, scrypt) are refused with an error telling
// to use `minisign -G -W` or `sluicectl keygen`; a seed that does not yield the stored public
// key is refused.
[[nodiscard]] std::optional<public_key> parse_public_key(std::string_view text,
                                                         std::string* error = nullptr);
[[nodiscard]] std::optional<secret_key> parse_secret_key(std::string_view text,
                                                         std::string* error = nullptr);

// Signature file text (prehashed "ED"). nullopt only if OpenSSL fails. `trusted_comment` must not
// contain '\n' (or '\r'): such a comment is refused with nullopt, since no reader could check it.
[[nodiscard]] std::optional<std::string> sign(const secret_key& k,
                                              std::span<const std::uint8_t> message,
                                              std::string_view trusted_comment,
                                              std::string_view untrusted_comment = {});
[[nodiscard]] std::optional<std::string> sign(const secret_key& k, std::string_view message,
                                              std::string_view trusted_comment,
                                              std::string_view untrusted_comment = {});

// Checks `signature_text` (a .minisig file) over `message` with `k`, both signatures.
[[nodiscard]] verify_result verify(const public_key& k, std::span<const std::uint8_t> message,
                                   std::string_view signature_text);
[[nodiscard]] verify_result verify(const public_key& k, std::string_view message,
                                   std::string_view signature_text);

// The key id a signature file names (to pick the key among several trusted ones).
[[nodiscard]] std::optional<key_id> signature_key_id(std::string_view signature_text);

// Upper-case hex, as minisign prints key ids ("5E4A..."): minisign prints the id as a
// little-endian 64-bit number, so the text shows the bytes last first.
[[nodiscard]] std::string to_hex(const key_id& id);
// The inverse of to_hex (either case); nullopt unless exactly 16 hex digits.
[[nodiscard]] std::optional<key_id> parse_key_id_hex(std::string_view hex);

}  // namespace sluice::control::crypto
