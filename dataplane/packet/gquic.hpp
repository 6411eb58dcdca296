#pragma once
// Google QUIC (Q046 and the Q04x family with plaintext handshake): SNI from the client's CHLO.
// Pure; the SNI view points into the datagram.

#include <cstdint>
#include <string_view>

#include "dataplane/packet/bytes.hpp"

namespace sluice::packet {

#define SLUICE_GQUIC_OUTCOMES(X)                                                    \
  X(chlo, "chlo")                   /* CHLO found (sni may be empty) */             \
  X(not_gquic, "not_gquic")         /* not a gQUIC packet of a known version */     \
  X(no_chlo, "no_chlo")             /* gQUIC, but no CHLO in this packet */         \
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

[[nodiscard]] gquic_outcome parse_gquic_chlo(bytes datagram, gquic_info& out) noexcept;

}  // namespace sluice::packet
