#pragma once
// TLS ClientHello reader (RFC 8446 §4.1.2, SNI per RFC 6066 §3).
//
// Two layers, both pure (no allocation, no logging, no globals):
//  - `tls_handshake_from_records` walks TLS records (content type 22) at the start of a client's
//    byte stream and copies the first handshake message's bytes, which may span several records,
//    into a caller-owned scratch buffer;
//  - `parse_client_hello` reads a complete ClientHello handshake message (type byte included)
//    and reports SNI host_name, the first ALPN protocol and whether ECH (0xfe0d) or draft ESNI
//    (0xffce) extensions are present.
// QUIC calls `parse_client_hello` directly on the CRYPTO stream (no record layer there).
// Returned views point into the input (or scratch) and live as long as it does.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "dataplane/packet/bytes.hpp"

namespace sluice::packet {

#define SLUICE_TLS_OUTCOMES(X)                                                       \
  X(client_hello, "client_hello")   /* complete ClientHello parsed */                \
  X(need_more, "need_more")         /* a valid prefix; more bytes needed */          \
  X(not_tls, "not_tls")             /* does not start like a TLS handshake record */ \
  X(not_client_hello, "not_client_hello") /* handshake, but not type 1 */            \
  X(malformed, "malformed")         /* lengths or extensions inconsistent */         \
  X(too_large, "too_large")         /* message larger than the scratch/cap */

enum class tls_outcome : std::uint8_t {
#define SLUICE_X(name, str) name,
  SLUICE_TLS_OUTCOMES(SLUICE_X)
#undef SLUICE_X
      count
};
[[nodiscard]] const char* to_string(tls_outcome o) noexcept;

struct client_hello_info {
  std::string_view sni;          // first host_name entry, as sent (empty when none)
  std::string_view alpn;         // first ALPN protocol (empty when none)
  std::uint16_t legacy_version = 0;
  bool has_sni = false;
  bool has_ech = false;          // extension 0xfe0d (may be GREASE ECH)
  bool has_esni = false;         // extension 0xffce
};

// `message` starts at the handshake type byte. Returns need_more when the 4-byte header says
// the body is longer than what is given.
[[nodiscard]] tls_outcome parse_client_hello(bytes message, client_hello_info& out) noexcept;

// Cheap test on the first bytes of a TCP payload: could this be a TLS handshake record?
[[nodiscard]] bool looks_like_tls_handshake(bytes stream_prefix) noexcept;

// An SSL 2.0-framed ClientHello (2-byte record header with the top bit set, message type 1,
// version 3.x), as old clients send to reach TLS servers. It has no extensions, hence no SNI.
[[nodiscard]] bool is_sslv2_client_hello(bytes stream_prefix) noexcept;

// `stream` is the contiguous start of the client's TCP byte stream. Copies the first handshake
// message across however many records it spans into `scratch`, setting `message_len`.
// Returns client_hello when a full message was assembled (its type is checked by
// parse_client_hello, not here), need_more, not_tls, malformed, or too_large when the message
// announced does not fit in `scratch`.
[[nodiscard]] tls_outcome tls_handshake_from_records(bytes stream, std::span<std::uint8_t> scratch,
                                                     std::size_t& message_len) noexcept;

}  // namespace sluice::packet
