#pragma once
// L2-L4 frame parser: Ethernet, 802.1Q / QinQ (0x88a8, 0x9100), MPLS label stacks, PPPoE session,
// IPv4 (options, fragments), IPv6 (extension headers, fragment header), GRE, IP-in-IP /
// IPv6-in-IP, and the UDP tunnels VXLAN (dst port 4789), GTP-U (2152) and Geneve (6081): the
// innermost IP flow is the one classified. TCP, UDP.
//
// Pure: bytes in, `frame_info` out. No allocation, no logging, no globals; safe from any thread.
// A frame the parser does not understand gets a typed outcome and is forwarded by the fast path.

#include <array>
#include <compare>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "dataplane/packet/bytes.hpp"

namespace sluice::packet {

// Outcomes, defined once. `ok` means L4 (TCP/UDP) was parsed; the rest say why it was not.
#define SLUICE_FRAME_OUTCOMES(X)                                                  \
  X(ok, "ok")                                   /* TCP or UDP header parsed */   \
  X(other_l4, "other_l4")                       /* IP fine, L4 not TCP/UDP */    \
  X(fragment, "fragment")                       /* needs IP reassembly first */  \
  X(truncated, "truncated")                     /* ran out of bytes */           \
  X(unsupported_l2, "unsupported_l2")           /* ethertype we do not parse */  \
  X(bad_ipv4, "bad_ipv4")                       /* bad version/IHL/length */     \
  X(bad_ipv6, "bad_ipv6")                       /* bad version/ext chain */      \
  X(bad_l4, "bad_l4")                           /* bad TCP data offset, UDP len */ \
  X(unsupported_tunnel, "unsupported_tunnel")   /* GRE flags/proto we skip */    \
  X(too_deep, "too_deep")                       /* encapsulation nesting limit */

enum class frame_outcome : std::uint8_t {
#define SLUICE_X(name, str) name,
  SLUICE_FRAME_OUTCOMES(SLUICE_X)
#undef SLUICE_X
      count
};
[[nodiscard]] const char* to_string(frame_outcome o) noexcept;

// Encapsulations seen on the way to the innermost IP header (bit set).
enum encap_flag : std::uint16_t {
  encap_vlan = 1u << 0,
  encap_qinq = 1u << 1,
  encap_mpls = 1u << 2,
  encap_pppoe = 1u << 3,
  encap_gre = 1u << 4,
  encap_ip_in_ip = 1u << 5,  // IPv4/IPv6 inside IPv4/IPv6
  encap_vxlan = 1u << 6,     // RFC 7348, UDP dst port 4789
  encap_gtpu = 1u << 7,      // 3GPP TS 29.281 G-PDU, UDP dst port 2152
  encap_geneve = 1u << 8,    // RFC 8926, UDP dst port 6081
};

// Encapsulations an answer (TCP RST, HTTP notice) cannot be built inside: the answer's outer
// headers would have to be rewritten too (lengths, checksums, tunnel fields, direction).
inline constexpr std::uint16_t encap_udp_tunnels = encap_vxlan | encap_gtpu | encap_geneve;
inline constexpr std::uint16_t encap_tunnels = encap_gre | encap_ip_in_ip | encap_udp_tunnels;

// An IPv4 address is stored as ::ffff:a.b.c.d is NOT used: v4 lives in bytes[0..3], rest zero.
struct ip_address {
  std::array<std::uint8_t, 16> bytes{};
  std::uint8_t version = 0;  // 4 or 6, 0 when unset

  [[nodiscard]] std::uint32_t v4() const noexcept { return load_be32(bytes.data()); }
  friend auto operator<=>(const ip_address&, const ip_address&) = default;
};

enum tcp_flag : std::uint8_t {
  tcp_fin = 0x01,
  tcp_syn = 0x02,
  tcp_rst = 0x04,
  tcp_psh = 0x08,
  tcp_ack = 0x10,
  tcp_urg = 0x20,
};

// Default-constructed: every field zero, except `outcome` (truncated).
struct frame_info {
  // Two memsets, not member initialisers: GCC clears the whole 92-byte struct with `rep stos`
  // under DPDK's -march=corei7 (tens of cycles to start, for every frame parsed), each half
  // with a few vector stores.
  frame_info() noexcept {
    constexpr std::size_t half = 48;
    static_assert(sizeof(frame_info) > half);
    std::memset(static_cast<void*>(this), 0, half);
    std::memset(reinterpret_cast<char*>(this) + half, 0, sizeof(frame_info) - half);
    outcome = frame_outcome::truncated;
  }

  frame_outcome outcome;
  std::uint16_t encap;       // encap_flag bits
  std::uint16_t outer_vlan;  // first VLAN id seen (0 if none)
  // VNI (VXLAN, Geneve) or TEID (GTP-U) of the innermost UDP tunnel passed, as on the wire; 0 if
  // none. A GTP-U TEID differs per direction (each end picks the TEID it receives on), so it
  // keys a datagram's fragments but not a flow.
  std::uint32_t tunnel_id;
  // VNI of the innermost VXLAN/Geneve tunnel passed (0 if none): the same in both directions, so
  // flow keys carry it and two tenants' overlays with the same inner addresses stay apart.
  std::uint32_t tenant_id;

  // Innermost IP header.
  std::uint8_t ip_version;        // 4 or 6 (0 when L3 not reached)
  std::uint8_t l4_proto;          // IPPROTO_* of the innermost header
  std::uint8_t ttl;               // TTL / hop limit
  std::uint16_t l3_offset;        // offset of the innermost IP header in the frame
  std::uint16_t l3_length;        // IP datagram length per its header (clamped to the frame)
  std::uint16_t outer_l3_offset;  // offset of the outermost IP header (tunnels: its outer one)
  ip_address src;
  ip_address dst;

  // Fragmentation of the innermost IP datagram.
  bool is_fragment;  // MF set or offset != 0
  bool more_fragments;
  std::uint16_t frag_offset;  // in bytes
  std::uint32_t frag_id;      // IPv4 id or IPv6 fragment identification

  // L4 (valid when outcome == ok; l4_offset also for other_l4, where the L4 header starts).
  std::uint16_t l4_offset;
  std::uint16_t src_port;
  std::uint16_t dst_port;
  std::uint8_t tcp_flags;
  std::uint32_t tcp_seq;
  std::uint32_t tcp_ack;
  std::uint16_t tcp_window;
  std::uint16_t payload_offset;  // start of TCP/UDP payload in the frame
  std::uint16_t payload_length;  // bounded by both the IP length and the frame

  [[nodiscard]] bytes payload(bytes frame) const noexcept {
    return frame.subspan(payload_offset, payload_length);
  }
};
static_assert(std::is_trivially_copyable_v<frame_info>, "the constructor clears it with memset");

// Parses an Ethernet frame down to the innermost L4 header.
[[nodiscard]] frame_info parse_frame(bytes frame) noexcept;

// Parses starting at an IP header (version from the first nibble): for tunnels' inner packets and
// for reassembled datagrams (a reassembled UDP datagram to a tunnel port is decapsulated here
// like in parse_frame). Offsets in the result are relative to `packet`.
[[nodiscard]] frame_info parse_ip(bytes packet) noexcept;

// True when the TCP/UDP checksum of a parsed (non-fragment) frame is correct. A UDP checksum of 0
// over IPv4 counts as correct (not computed). Used to ignore injected fakes with bad checksums.
[[nodiscard]] bool l4_checksum_ok(bytes frame, const frame_info& info) noexcept;

}  // namespace sluice::packet
