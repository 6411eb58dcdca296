#pragma once
// QUIC client Initial decryption: versions 1 (RFC 9000/9001), 2 (RFC 9369) and drafts 27-34
// (their salts). Removes header protection, decrypts with AES-128-GCM through OpenSSL 3, walks
// the frames and returns the CRYPTO frames (offset + data) of every Initial packet coalesced in
// one datagram. Reassembling the ClientHello from those chunks is the caller's job (see
// dataplane/flow/stream_buffer.hpp); parse it with parse_client_hello (tls.hpp).
//
// The decryptor owns pre-fetched OpenSSL objects: create one per worker thread, at start-up, and
// use it from that thread only. `decrypt` does not log and allocates nothing itself; with keys
// cached for the last (version, DCID) it makes no OpenSSL allocation either, while deriving keys
// for a new DCID costs ~16 small allocations inside OpenSSL 3's HMAC (EVP_MAC context copies).

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "dataplane/packet/bytes.hpp"

namespace sluice::packet {

#define SLUICE_QUIC_OUTCOMES(X)                                                          \
  X(initial, "initial")                 /* >= 1 Initial decrypted */                      \
  X(not_quic, "not_quic")               /* not a QUIC long header */                      \
  X(not_initial, "not_initial")         /* long header, but no client Initial in it */    \
  X(unsupported_version, "unsupported_version") /* version we hold no salt for */         \
  X(truncated, "truncated")             /* lengths run past the datagram */               \
  X(decrypt_failed, "decrypt_failed")   /* AEAD tag mismatch (not a client Initial) */    \
  X(malformed, "malformed")             /* bad frame inside the payload */                \
  X(too_many_chunks, "too_many_chunks") /* more CRYPTO frames than the result holds */

enum class quic_outcome : std::uint8_t {
#define SLUICE_X(name, str) name,
  SLUICE_QUIC_OUTCOMES(SLUICE_X)
#undef SLUICE_X
      count
};
[[nodiscard]] const char* to_string(quic_outcome o) noexcept;

struct quic_crypto_chunk {
  std::uint64_t offset = 0;
  bytes data;  // view into the caller's scratch
};

struct quic_initial_result {
  static constexpr std::size_t max_chunks = 32;
  std::uint32_t version = 0;
  std::uint8_t packets = 0;  // Initial packets decrypted in this datagram
  std::uint8_t chunk_count = 0;
  std::array<quic_crypto_chunk, max_chunks> chunks{};
  bytes dcid;                // view into the datagram (first packet's DCID)
};

// Client Initial keys (RFC 9001 §5.1-5.2 / RFC 9369 §3.3); exposed for tests and tools.
struct quic_initial_keys {
  std::array<std::uint8_t, 16> key{};
  std::array<std::uint8_t, 12> iv{};
  std::array<std::uint8_t, 16> hp{};
};

// Cheap test: QUIC long header with a version this module knows (or 0 = version negotiation)?
[[nodiscard]] bool looks_like_quic_initial(bytes datagram) noexcept;
[[nodiscard]] bool quic_version_supported(std::uint32_t version) noexcept;

class quic_initial_decryptor {
 public:
  quic_initial_decryptor();  // throws std::runtime_error if OpenSSL lacks AES-128-GCM/ECB, HMAC
  ~quic_initial_decryptor();
  quic_initial_decryptor(const quic_initial_decryptor&) = delete;
  quic_initial_decryptor& operator=(const quic_initial_decryptor&) = delete;

  // `scratch` must hold at least datagram.size() bytes (else `truncated`); plaintexts are written
  // there. On `malformed` and `too_many_chunks` the chunks found before the problem are valid.
  // An Initial whose AEAD fails is skipped; `decrypt_failed` only when none opened.
  [[nodiscard]] quic_outcome decrypt(bytes datagram, std::span<std::uint8_t> scratch,
                                     quic_initial_result& out) noexcept;

  // Derives the client Initial keys for `version` and the client's first DCID. False for an
  // unsupported version or a DCID over 20 bytes. Leaves the decryptor's key cache alone.
  [[nodiscard]] bool derive_client_keys(std::uint32_t version, bytes dcid,
                                        quic_initial_keys& out) noexcept;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace sluice::packet
