#pragma once
// QUIC client Initial decryption. Removes header protection, decrypts with AES-128-GCM through
// OpenSSL 3, walks the frames and returns the CRYPTO frames (offset + data) of every Initial
// packet coalesced in one datagram. Reassembling the handshake message from those chunks is the
// caller's job (see dataplane/flow/stream_buffer.hpp); parse it with parse_client_hello
// (tls.hpp) or, when `handshake` says gquic_crypto, parse_gquic_chlo_message (gquic.hpp).
//
// Versions read (salt; all use the "client in" / "quic key|iv|hp" labels unless noted):
//   1 (RFC 9001), 2 (RFC 9369, "quicv2 " labels and rotated long-header types), 0x709a50c4
//   (the v2 drafts' codepoint: v2's labels and types, the draft salt; Debian 12's ngtcp2 0.12),
//   drafts 22 (draft-22 salt), 23-28 (draft-23 salt), 29-32 (draft-29 salt), 33-34 (v1 salt);
//   Facebook mvfst: 0xfaceb001 (its draft-22-era version, draft-22 salt), 0xfaceb002 MVFST,
//   0xfaceb00e EXPERIMENTAL, 0xfaceb010 ALIAS, 0xfaceb011 EXPERIMENTAL2, 0xfaceb012,
//   0xfaceb013 EXPERIMENTAL3 (draft-23 salt: mvfst's default), 0xfaceb003 V1_ALIAS (v1 salt);
//   Google Q050 (QUIC-crypto CHLO in CRYPTO frames), T050, T051 (TLS) with Google's salts.
// All of them share the v1 Initial layout: long header with separate DCID/SCID length bytes
// (draft-22 onwards, and gQUIC versions after Q048), token and varint Length in Initials,
// header protection sampled 4 bytes after the packet number offset, packet-number length from
// the unmasked first byte, AEAD over the unprotected header. What differs for Q050/T050/T051 is
// the frame encoding inside: Google QUIC frames (PADDING 0x00 runs to the end, PING 0x07,
// CRYPTO 0x08 with varint offset/length, ACK 0x40-0x7f in gQUIC's layout), not IETF frames.
//
// Deliberately not read, each reported as a typed outcome:
//   - reserved versions 0x?a?a?a?a (RFC 9000 §15; `reserved_version`): they exist to force
//     version negotiation and carry nothing a server would accept; the client's real Initial
//     follows the server's Version Negotiation;
//   - other versions (`unsupported_version`): drafts before 22 (4-bit CID lengths, other
//     salts) and after 34, mvfst 0xfaceb00f (MVFST_INVALID, a VN trigger) and aliases seen
//     only in ports of mvfst with no salt mapping we could confirm (0xfaceb004, 0xfaceb014,
//     0xfaceb015, 0xfacefeed), T048 and Q048/Q049 (short-lived experiments), private versions
//     (picoquic, quic-go, MsQuic test versions) whose salts are not published;
//   - Q043/Q046 carry a plaintext CHLO and are read by gquic.hpp, not here.
//
// The decryptor owns pre-fetched OpenSSL objects: create one per worker thread, at start-up, and
// use it from that thread only. `decrypt` does not log and allocates nothing itself; with keys
// cached for the (version, DCID) it makes no OpenSSL allocation either, while deriving keys
// for a new DCID costs ~16 small allocations inside OpenSSL 3's HMAC (EVP_MAC context copies).
// The cache holds the last two (version, DCID) pairs: Initials alternating between two DCIDs
// (a client after a Retry or the server's first Initial, two interleaved flows) cost two AES key
// set-ups per switch, not a derivation (5 HMAC-SHA256, ~3 us); a third DCID evicts the older.

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
  X(reserved_version, "reserved_version") /* 0x?a?a?a?a: forces version negotiation */    \
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

// What the CRYPTO stream carries: a TLS ClientHello, or (Google Q050) a QUIC-crypto CHLO.
enum class quic_handshake : std::uint8_t { tls, gquic_crypto };

struct quic_initial_result {
  static constexpr std::size_t max_chunks = 32;
  std::uint32_t version = 0;
  std::uint8_t packets = 0;  // Initial packets decrypted in this datagram
  std::uint8_t chunk_count = 0;
  // Coalesced packets skipped because their DCID differs from the first packet's: a server
  // ignores them (RFC 9000 §12.2), so reading them would let a decoy decide the name.
  std::uint8_t other_dcid_packets = 0;
  quic_handshake handshake = quic_handshake::tls;
  std::array<quic_crypto_chunk, max_chunks> chunks{};
  bytes dcid;                // view into the datagram (first packet's DCID; every chunk's)
};

// Client Initial keys (RFC 9001 §5.1-5.2 / RFC 9369 §3.3); exposed for tests and tools.
struct quic_initial_keys {
  std::array<std::uint8_t, 16> key{};
  std::array<std::uint8_t, 12> iv{};
  std::array<std::uint8_t, 16> hp{};
};

// Cheap test: a long header (fixed bit set, DCID length <= 20) that a QUIC client's first
// flight or the server's answer to it may start with: an Initial of a version this module
// reads, Version Negotiation (version 0), or any other version the client may try first
// (reserved or unknown; decrypt says which). False for gQUIC 'Q' versions this module does not
// decrypt (Q046 and older are parse_gquic_chlo's).
[[nodiscard]] bool looks_like_quic_initial(bytes datagram) noexcept;
[[nodiscard]] bool quic_version_supported(std::uint32_t version) noexcept;
// RFC 9000 §15: versions of the form 0x?a?a?a?a are reserved to exercise version negotiation.
[[nodiscard]] constexpr bool quic_version_reserved(std::uint32_t version) noexcept {
  return (version & 0x0f0f0f0fu) == 0x0a0a0a0au;
}

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
