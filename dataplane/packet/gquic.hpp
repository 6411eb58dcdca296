#pragma once
// Google QUIC: SNI from the client's CHLO (QUIC-crypto handshake message: tag/value pairs).
//
// parse_gquic_chlo reads whole datagrams of the versions whose CHLO travels in plaintext on
// stream 1: Q039-Q043 (legacy public header) and Q044-Q046 (IETF-invariant long header).
// parse_gquic_chlo_message reads a CHLO message from bytes the caller reassembled: Q050 sends it
// in CRYPTO frames of protected Initials (quic.hpp decrypts them and says gquic_crypto).
// Deliberately not read: Q047-Q049 (short-lived experiments: plaintext CRYPTO frames in long
// headers), Q038 and older (little-endian fields, long gone from clients), and a CHLO split over
// several Q04x packets (clients pad it into one). T050/T051 carry TLS, read through quic.hpp.
// Pure; the SNI view points into the bytes given.

#include <cstdint>
#include <string_view>

#include "dataplane/packet/bytes.hpp"

namespace sluice::packet {

#define SLUICE_GQUIC_OUTCOMES(X)                                                    \
  X(chlo, "chlo")                   /* CHLO found (sni may be empty) */             \
  X(not_gquic, "not_gquic")         /* not a gQUIC packet of a known version */     \
  X(no_chlo, "no_chlo")             /* gQUIC, but no CHLO in this packet */         \
  X(need_more, "need_more")         /* a CHLO message prefix: more bytes to come */ \
  X(malformed, "malformed")

enum class gquic_outcome : std::uint8_t {
#define SLUICE_X(name, str) name,
  SLUICE_GQUIC_OUTCOMES(SLUICE_X)
#undef SLUICE_X
      count
};
[[nodiscard]] const char* to_string(gquic_outcome o) noexcept;

struct gquic_info {
  std::uint32_t version = 0;  // e.g. 'Q046' as a big-endian 32-bit value
  std::string_view sni;
};

// A whole datagram: chlo, not_gquic, no_chlo or malformed (never need_more).
[[nodiscard]] gquic_outcome parse_gquic_chlo(bytes datagram, gquic_info& out) noexcept;

// A CHLO message ("CHLO", LE16 tag count, 2 bytes padding, (tag, LE32 end offset) pairs, values)
// starting at message[0]: chlo (out.sni set, possibly empty; version left 0), need_more
// (`message` is a consistent prefix of a longer CHLO), no_chlo (another message tag) or
// malformed (offsets decrease or run past the declared end).
[[nodiscard]] gquic_outcome parse_gquic_chlo_message(bytes message, gquic_info& out) noexcept;

}  // namespace sluice::packet
