#pragma once
// ICMP and ICMPv6 messages: which ones are errors, and the packet an error quotes (RFC 792,
// RFC 4443 §2.4 and §3). An error carries the start of the datagram that caused it: its IP
// header and at least the first 8 bytes of its L4 header (IPv4 routers may send only that; IPv6
// sends as much as fits in 1280 bytes), so the quoted datagram is cut short by design and
// `parse_ip` (which wants whole datagrams) cannot read it.
//
// Pure: bytes in, `icmp_info` out. No allocation, no logging, no globals; safe from any thread.
// Anything unreadable gets a typed outcome; the fast path then judges the message by its own
// addresses only (fail open for the quote).

#include <cstdint>

#include "dataplane/packet/bytes.hpp"
#include "dataplane/packet/frame.hpp"

namespace sluice::packet {

#define SLUICE_ICMP_OUTCOMES(X)                                                           \
  X(not_error, "not_error")       /* informational (echo, ND, ...): quotes nothing */     \
  X(quoted, "quoted")             /* an error; the quoted IP header (+ ports) was read */ \
  X(truncated, "truncated")       /* ICMP header, quoted IP header or quoted ports cut */ \
  X(bad_quote, "bad_quote")       /* quoted version/IHL/length/extension chain bogus */   \
  X(nested_error, "nested_error") /* quotes an ICMP error (never sent: RFC 1122, 4443) */

enum class icmp_outcome : std::uint8_t {
#define SLUICE_X(name, str) name,
  SLUICE_ICMP_OUTCOMES(SLUICE_X)
#undef SLUICE_X
      count
};
[[nodiscard]] const char* to_string(icmp_outcome o) noexcept;

inline constexpr std::uint8_t ipproto_icmp = 1;
inline constexpr std::uint8_t ipproto_icmpv6 = 58;

// The datagram an error quotes, as its sender sent it.
struct quoted_packet {
  std::uint8_t ip_version = 0;  // 4 or 6
  std::uint8_t l4_proto = 0;    // after any IPv6 extension headers
  ip_address src;
  ip_address dst;
  bool has_ports = false;  // TCP/UDP/SCTP/UDP-Lite, first fragment: ports read
  std::uint16_t src_port = 0;
  std::uint16_t dst_port = 0;
};

struct icmp_info {
  icmp_outcome outcome = icmp_outcome::truncated;
  std::uint8_t type = 0;
  std::uint8_t code = 0;
  bool error = false;    // the type is an error message (whatever became of its quote)
  quoted_packet quoted;  // valid when outcome == quoted
};

// True for the error types: ICMP destination unreachable (3), source quench (4), redirect (5),
// time exceeded (11), parameter problem (12); ICMPv6 destination unreachable (1), packet too big
// (2), time exceeded (3), parameter problem (4).
[[nodiscard]] bool icmp_is_error(std::uint8_t ip_version, std::uint8_t type) noexcept;

// True for ICMPv6 neighbour discovery (RFC 4861: router/neighbour solicitation and
// advertisement, redirect; types 133..137): link-scoped, never to be enforced on.
[[nodiscard]] bool icmpv6_is_neighbour_discovery(std::uint8_t type) noexcept;

// Reads one ICMP (`ip_version` 4) or ICMPv6 (6) message: `message` starts at its type byte and
// ends where its IP datagram ends. Does not check the ICMP checksum (a router's error with a
// wrong one is dropped by its receiver anyway).
[[nodiscard]] icmp_info parse_icmp(bytes message, std::uint8_t ip_version) noexcept;

}  // namespace sluice::packet
