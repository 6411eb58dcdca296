// L2-L4 frame parser. One loop walks the header chain; each step reads one header, fills what it
// knows into `frame_info`, and either names the next header or stops with an outcome.
//
// Choices worth knowing (the header states the contract):
// - Buffers longer than 65535 bytes are parsed as their first 65535 bytes (offsets are 16-bit).
// - An IP datagram whose header length runs past the bytes we have is `truncated` (IP fields are
//   still filled); one shorter than the frame (Ethernet padding) is clamped to its own length, so
//   padding is never payload.
// - `fragment` means "needs reassembly before L4 can be classified": a non-first fragment, a first
//   fragment too short to hold the whole TCP/UDP header, or a fragmented tunnel packet (the inner
//   header is only complete after reassembly; feed the datagram to parse_ip then).
// - Every encapsulation header (VLAN tag, MPLS label, PPPoE, PPP, GRE, inner Ethernet, IP header)
//   spends one unit of a budget of `max_headers`; running out is `too_deep`, so a crafted frame
//   costs a bounded amount of work. IPv6 extension headers have their own limit (bad_ipv6).
// - UDP tunnels (VXLAN 4789, GTP-U 2152, Geneve 6081) are recognised by destination port, then
//   by their header's fixed fields. A datagram to such a port whose header does not pass (too
//   short, wrong flags/version/type, a GTP-U message other than a G-PDU, a Geneve control
//   packet or protocol type we do not read) is NOT a tunnel: the result is the outer UDP flow, outcome ok, never a drop. Once the
//   header passes, what follows is the tunnel's: a cut or malformed inner packet gives the inner
//   outcome (forwarded, fail open). A first fragment to a tunnel port is `fragment` (the tunnel
//   header and the inner packet are only whole after reassembly). Tunnel headers spend one unit
//   of the budget each; GTP-U extension headers have their own limit (unsupported_tunnel).
//   `tunnel_id` is the innermost tunnel's VNI/TEID; `tenant_id` the innermost VNI only, since a
//   GTP-U TEID names a direction of a bearer, not the bearer (the two ends pick one each).

#include "dataplane/packet/frame.hpp"

#include <cstring>

namespace sluice::packet {

const char* to_string(frame_outcome o) noexcept {
  switch (o) {
#define SLUICE_X(name, str) \
  case frame_outcome::name: \
    return str;
    SLUICE_FRAME_OUTCOMES(SLUICE_X)
#undef SLUICE_X
    case frame_outcome::count:
      break;
  }
  return "?";
}

namespace {

constexpr std::uint32_t max_buffer = 0xffff;
constexpr int max_headers = 12;
constexpr int max_ipv6_ext_headers = 8;

// Ethertypes, plus internal header kinds above 0xffff so no ethertype on the wire aliases them.
constexpr std::uint32_t eth_ipv4 = 0x0800;
constexpr std::uint32_t eth_ipv6 = 0x86dd;
constexpr std::uint32_t eth_vlan = 0x8100;
constexpr std::uint32_t eth_qinq = 0x88a8;
constexpr std::uint32_t eth_qinq_legacy = 0x9100;
constexpr std::uint32_t eth_mpls_uc = 0x8847;
constexpr std::uint32_t eth_mpls_mc = 0x8848;
constexpr std::uint32_t eth_pppoe_session = 0x8864;
constexpr std::uint16_t gre_teb = 0x6558;
constexpr std::uint16_t gre_ppp = 0x880b;
constexpr std::uint32_t hdr_ethernet = 0x10000;  // inner Ethernet (GRE transparent bridging)
constexpr std::uint32_t hdr_gre = 0x10001;
constexpr std::uint32_t hdr_ppp = 0x10002;  // PPP inside GRE (PPTP), address/control optional
constexpr std::uint32_t hdr_vxlan = 0x10003;
constexpr std::uint32_t hdr_gtpu = 0x10004;
constexpr std::uint32_t hdr_geneve = 0x10005;

constexpr std::uint16_t port_vxlan = 4789;   // RFC 7348 §5
constexpr std::uint16_t port_gtpu = 2152;    // 3GPP TS 29.281 §4.4.2
constexpr std::uint16_t port_geneve = 6081;  // RFC 8926 §3.3
constexpr int max_gtpu_ext_headers = 8;

constexpr std::uint16_t ppp_ipv4 = 0x0021;
constexpr std::uint16_t ppp_ipv6 = 0x0057;

constexpr std::uint8_t ipproto_hopopts = 0;
constexpr std::uint8_t ipproto_ipip = 4;
constexpr std::uint8_t ipproto_tcp = 6;
constexpr std::uint8_t ipproto_udp = 17;
constexpr std::uint8_t ipproto_ipv6 = 41;
constexpr std::uint8_t ipproto_routing = 43;
constexpr std::uint8_t ipproto_fragment = 44;
constexpr std::uint8_t ipproto_gre = 47;
constexpr std::uint8_t ipproto_ah = 51;
constexpr std::uint8_t ipproto_dstopts = 60;

struct walk_state {
  const std::uint8_t* p;  // start of the buffer; all offsets are relative to it
  std::uint32_t off;      // offset of the header to read next
  std::uint32_t end;      // end of the enclosing unit (frame, or tunnel's outer datagram)
  std::uint32_t next;     // kind of the header at `off`
  int budget;
};

inline bool stop(frame_info& fi, frame_outcome o) noexcept {
  fi.outcome = o;
  return false;
}

// TCP/UDP header at s.off, datagram ends at s.end (all bytes present). UDP to a tunnel port
// names the tunnel header as the next step.
inline bool step_l4(frame_info& fi, walk_state& s) noexcept {
  const std::uint32_t avail = s.end - s.off;
  const std::uint8_t* h = s.p + s.off;
  // A first fragment cut inside the L4 header is a reassembly job, not a malformed header.
  const frame_outcome short_header =
      fi.is_fragment ? frame_outcome::fragment : frame_outcome::bad_l4;
  fi.l4_offset = static_cast<std::uint16_t>(s.off);
  if (fi.l4_proto == ipproto_tcp) {
    if (avail < 20) return stop(fi, short_header);
    const std::uint32_t hl = (h[12] >> 4) * 4u;
    if (hl < 20) return stop(fi, frame_outcome::bad_l4);
    if (hl > avail) return stop(fi, short_header);
    fi.src_port = load_be16(h);
    fi.dst_port = load_be16(h + 2);
    fi.tcp_seq = load_be32(h + 4);
    fi.tcp_ack = load_be32(h + 8);
    fi.tcp_flags = h[13] & 0x3f;
    fi.tcp_window = load_be16(h + 14);
    fi.payload_offset = static_cast<std::uint16_t>(s.off + hl);
    fi.payload_length = static_cast<std::uint16_t>(avail - hl);
  } else {
    if (avail < 8) return stop(fi, short_header);
    const std::uint32_t udp_len = load_be16(h + 4);
    // The UDP length covers the whole datagram, which a first fragment does not hold.
    if (udp_len < 8 || (!fi.is_fragment && udp_len > avail)) return stop(fi, frame_outcome::bad_l4);
    fi.src_port = load_be16(h);
    fi.dst_port = load_be16(h + 2);
    fi.payload_offset = static_cast<std::uint16_t>(s.off + 8);
    fi.payload_length =
        static_cast<std::uint16_t>(udp_len - 8 < avail - 8 ? udp_len - 8 : avail - 8);
    const std::uint32_t tunnel = fi.dst_port == port_vxlan    ? hdr_vxlan
                                 : fi.dst_port == port_gtpu   ? hdr_gtpu
                                 : fi.dst_port == port_geneve ? hdr_geneve
                                                              : 0;
    if (tunnel != 0) {
      // The tunnel header and the inner packet are whole only after reassembly.
      if (fi.is_fragment) return stop(fi, frame_outcome::fragment);
      // `ok` stays if the tunnel header does not pass: then this is a plain UDP flow.
      fi.outcome = frame_outcome::ok;
      s.off = fi.payload_offset;
      s.end = s.off + fi.payload_length;
      s.next = tunnel;
      return true;
    }
  }
  fi.outcome = frame_outcome::ok;
  return false;
}

// Dispatch on the upper-layer protocol of the IP header just read; s.off is past it.
inline bool after_ip(frame_info& fi, walk_state& s, std::uint8_t proto) noexcept {
  fi.l4_proto = proto;
  switch (proto) {
    case ipproto_tcp:
    case ipproto_udp:
      return step_l4(fi, s);
    case ipproto_ipip:
    case ipproto_ipv6:
      if (fi.is_fragment) return stop(fi, frame_outcome::fragment);
      fi.encap |= encap_ip_in_ip;
      s.next = proto == ipproto_ipip ? eth_ipv4 : eth_ipv6;
      return true;
    case ipproto_gre:
      if (fi.is_fragment) return stop(fi, frame_outcome::fragment);
      s.next = hdr_gre;
      return true;
    default:
      fi.l4_offset = static_cast<std::uint16_t>(s.off);  // e.g. where an ICMP message starts
      return stop(fi, frame_outcome::other_l4);
  }
}

inline bool step_ipv4(frame_info& fi, walk_state& s) noexcept {
  const std::uint32_t avail = s.end - s.off;
  if (avail < 20) return stop(fi, frame_outcome::truncated);
  const std::uint8_t* h = s.p + s.off;
  const std::uint32_t hl = (h[0] & 0x0fu) * 4u;
  const std::uint32_t total = load_be16(h + 2);
  if (fi.ip_version == 0) fi.outer_l3_offset = static_cast<std::uint16_t>(s.off);
  fi.ip_version = 4;
  fi.l3_offset = static_cast<std::uint16_t>(s.off);
  fi.ttl = h[8];
  fi.l4_proto = h[9];
  // Whole-address stores: an outer IPv6 header of a tunnel may have filled all 16 bytes.
  fi.src = ip_address{};
  fi.dst = ip_address{};
  std::memcpy(fi.src.bytes.data(), h + 12, 4);
  std::memcpy(fi.dst.bytes.data(), h + 16, 4);
  fi.src.version = 4;
  fi.dst.version = 4;
  if ((h[0] >> 4) != 4 || hl < 20 || total < hl) return stop(fi, frame_outcome::bad_ipv4);
  fi.l3_length = static_cast<std::uint16_t>(total < avail ? total : avail);
  if (total > avail) return stop(fi, frame_outcome::truncated);
  const std::uint16_t frag = load_be16(h + 6);
  if (frag & 0x3fff) [[unlikely]] {
    fi.is_fragment = true;
    fi.more_fragments = (frag & 0x2000) != 0;
    fi.frag_offset = static_cast<std::uint16_t>((frag & 0x1fff) * 8u);
    fi.frag_id = load_be16(h + 4);
    if (fi.frag_offset != 0) return stop(fi, frame_outcome::fragment);
  }
  s.end = s.off + total;
  s.off += hl;
  return after_ip(fi, s, h[9]);
}

inline bool step_ipv6(frame_info& fi, walk_state& s) noexcept {
  const std::uint32_t avail = s.end - s.off;
  if (avail < 40) return stop(fi, frame_outcome::truncated);
  const std::uint8_t* h = s.p + s.off;
  if (fi.ip_version == 0) fi.outer_l3_offset = static_cast<std::uint16_t>(s.off);
  fi.ip_version = 6;
  fi.l3_offset = static_cast<std::uint16_t>(s.off);
  fi.ttl = h[7];
  fi.l4_proto = h[6];
  std::memcpy(fi.src.bytes.data(), h + 8, 16);
  std::memcpy(fi.dst.bytes.data(), h + 24, 16);
  fi.src.version = 6;
  fi.dst.version = 6;
  const std::uint32_t payload = load_be16(h + 4);
  // Payload length 0 announces a jumbogram (hop-by-hop option); we do not carry those.
  if ((h[0] >> 4) != 6 || payload == 0) return stop(fi, frame_outcome::bad_ipv6);
  const std::uint32_t total = 40 + payload;
  fi.l3_length = static_cast<std::uint16_t>(total < avail ? total : avail);
  if (total > avail) return stop(fi, frame_outcome::truncated);
  s.end = s.off + total;
  std::uint32_t cur = s.off + 40;
  std::uint8_t nh = h[6];
  bool seen_fragment_header = false;
  for (int i = 0;; ++i) {
    if (nh != ipproto_hopopts && nh != ipproto_routing && nh != ipproto_dstopts &&
        nh != ipproto_ah && nh != ipproto_fragment) {
      break;
    }
    // Every extension header is at least 8 bytes, and the first fragment must hold the chain.
    if (i >= max_ipv6_ext_headers || s.end - cur < 8) return stop(fi, frame_outcome::bad_ipv6);
    const std::uint8_t* x = s.p + cur;
    if (nh == ipproto_fragment) {
      if (seen_fragment_header) return stop(fi, frame_outcome::bad_ipv6);
      seen_fragment_header = true;
      const std::uint16_t offset = load_be16(x + 2) & 0xfff8;
      const bool more = (x[3] & 1) != 0;
      // An atomic fragment (offset 0, M 0) is a whole datagram (RFC 6946).
      if (offset != 0 || more) {
        fi.is_fragment = true;
        fi.more_fragments = more;
        fi.frag_offset = offset;
        fi.frag_id = load_be32(x + 4);
      }
      nh = x[0];
      cur += 8;
      if (offset != 0) {
        fi.l4_proto = nh;
        return stop(fi, frame_outcome::fragment);
      }
      continue;
    }
    if (nh == ipproto_hopopts && i != 0) return stop(fi, frame_outcome::bad_ipv6);
    const std::uint32_t len = nh == ipproto_ah ? (x[1] + 2u) * 4u : (x[1] + 1u) * 8u;
    if (len > s.end - cur) return stop(fi, frame_outcome::bad_ipv6);
    nh = x[0];
    cur += len;
  }
  s.off = cur;
  return after_ip(fi, s, nh);
}

inline bool step_vlan(frame_info& fi, walk_state& s) noexcept {
  if (s.end - s.off < 4) return stop(fi, frame_outcome::truncated);
  const std::uint8_t* h = s.p + s.off;
  const bool first = (fi.encap & (encap_vlan | encap_qinq)) == 0;
  if (first) fi.outer_vlan = load_be16(h) & 0x0fff;
  std::uint16_t bits = s.next == eth_vlan ? encap_vlan : encap_qinq;
  if (!first) bits |= encap_qinq;
  fi.encap |= bits;
  s.next = load_be16(h + 2);
  s.off += 4;
  return true;
}

// One label per call; after bottom of stack the payload type is guessed from its first nibble
// (there is no protocol field). A pseudowire control word (nibble 0) or Ethernet-over-MPLS is
// not parsed.
inline bool step_mpls(frame_info& fi, walk_state& s) noexcept {
  if (s.end - s.off < 4) return stop(fi, frame_outcome::truncated);
  fi.encap |= encap_mpls;
  const bool bottom = (s.p[s.off + 2] & 0x01) != 0;
  s.off += 4;
  if (!bottom) return true;
  if (s.end == s.off) return stop(fi, frame_outcome::truncated);
  switch (s.p[s.off] >> 4) {
    case 4:
      s.next = eth_ipv4;
      return true;
    case 6:
      s.next = eth_ipv6;
      return true;
    default:
      return stop(fi, frame_outcome::unsupported_l2);
  }
}

// The PPP protocol field: two bytes, or one when protocol-field compression (RFC 1661 §6.5)
// dropped the high byte (a protocol's low byte is odd, its high byte even). Endpoints that
// negotiate it exist on PPPoE too; not reading it would let such traffic pass unclassified.
// Returns the field's length (0 when `avail` is too short).
inline std::uint32_t read_ppp_protocol(const std::uint8_t* h, std::uint32_t avail,
                                       std::uint16_t& proto) noexcept {
  if (avail < 1) return 0;
  if (h[0] & 1) {
    proto = h[0];
    return 1;
  }
  if (avail < 2) return 0;
  proto = load_be16(h);
  return 2;
}

inline bool step_ppp_payload(frame_info& fi, walk_state& s, std::uint16_t proto,
                             frame_outcome otherwise) noexcept {
  if (proto == ppp_ipv4) {
    s.next = eth_ipv4;
  } else if (proto == ppp_ipv6) {
    s.next = eth_ipv6;
  } else {
    return stop(fi, otherwise);
  }
  return true;
}

inline bool step_pppoe(frame_info& fi, walk_state& s) noexcept {
  if (s.end - s.off < 7) return stop(fi, frame_outcome::truncated);
  const std::uint8_t* h = s.p + s.off;
  // Version 1, type 1, code 0 (session data); the IP length bounds the payload, not PPPoE's.
  if (h[0] != 0x11 || h[1] != 0x00) return stop(fi, frame_outcome::unsupported_l2);
  fi.encap |= encap_pppoe;
  std::uint16_t proto = 0;
  const std::uint32_t proto_len = read_ppp_protocol(h + 6, s.end - s.off - 6, proto);
  if (proto_len == 0) return stop(fi, frame_outcome::truncated);
  s.off += 6 + proto_len;
  return step_ppp_payload(fi, s, proto, frame_outcome::unsupported_l2);
}

inline bool step_ethernet(frame_info& fi, walk_state& s) noexcept {
  if (s.end - s.off < 14) return stop(fi, frame_outcome::truncated);
  s.next = load_be16(s.p + s.off + 12);
  s.off += 14;
  return true;
}

// GRE version 0 (RFC 2784/2890: optional checksum, key, sequence) and version 1 (PPTP, RFC 2637:
// key always, optional sequence and acknowledgment, PPP payload). Source routing is not parsed.
inline bool step_gre(frame_info& fi, walk_state& s) noexcept {
  if (s.end - s.off < 4) return stop(fi, frame_outcome::truncated);
  const std::uint8_t* h = s.p + s.off;
  const std::uint16_t flags = load_be16(h);
  const std::uint16_t proto = load_be16(h + 2);
  std::uint32_t hl = 4;
  switch (flags & 0x7) {
    case 0:
      if (flags & 0x4000) return stop(fi, frame_outcome::unsupported_tunnel);
      hl += ((flags & 0x8000) ? 4 : 0) + ((flags & 0x2000) ? 4 : 0) + ((flags & 0x1000) ? 4 : 0);
      break;
    case 1:
      if ((flags & 0xc000) || !(flags & 0x2000) || proto != gre_ppp) {
        return stop(fi, frame_outcome::unsupported_tunnel);
      }
      hl += 4 + ((flags & 0x1000) ? 4 : 0) + ((flags & 0x0080) ? 4 : 0);
      break;
    default:
      return stop(fi, frame_outcome::unsupported_tunnel);
  }
  if (s.end - s.off < hl) return stop(fi, frame_outcome::truncated);
  fi.encap |= encap_gre;
  s.off += hl;
  switch (proto) {
    case eth_ipv4:
    case eth_ipv6:
    case eth_mpls_uc:
    case eth_mpls_mc:
      s.next = proto;
      return true;
    case gre_teb:
      s.next = hdr_ethernet;
      return true;
    case gre_ppp:
      s.next = hdr_ppp;
      return true;
    default:
      return stop(fi, frame_outcome::unsupported_tunnel);
  }
}

// PPP frame inside GRE: address/control (ff 03) may be compressed away, and so may the high byte
// of the protocol.
inline bool step_ppp(frame_info& fi, walk_state& s) noexcept {
  std::uint32_t avail = s.end - s.off;
  const std::uint8_t* h = s.p + s.off;
  if (avail < 1) return stop(fi, frame_outcome::truncated);
  if (h[0] == 0xff) {
    if (avail < 2) return stop(fi, frame_outcome::truncated);
    if (h[1] != 0x03) return stop(fi, frame_outcome::unsupported_tunnel);
    h += 2;
    avail -= 2;
  }
  std::uint16_t proto = 0;
  const std::uint32_t proto_len = read_ppp_protocol(h, avail, proto);
  if (proto_len == 0) return stop(fi, frame_outcome::truncated);
  s.off = static_cast<std::uint32_t>(h - s.p) + proto_len;
  return step_ppp_payload(fi, s, proto, frame_outcome::unsupported_tunnel);
}

// The UDP tunnels below start at s.off = the outer UDP payload, s.end = its end, with
// fi.outcome == ok and the outer UDP fields filled: returning stop(fi, ok) leaves the datagram a
// plain UDP flow.

// VXLAN (RFC 7348 §5): flags(8) reserved(24) VNI(24) reserved(8), then an Ethernet frame. The
// RFC has receivers ignore the reserved bits; we accept only the flags a VXLAN sender writes
// (I, and G of the group-policy extension) so that other UDP to port 4789 (an ephemeral port
// that happens to be 4789) is not taken for a tunnel.
inline bool step_vxlan(frame_info& fi, walk_state& s) noexcept {
  if (s.end - s.off < 8) return stop(fi, frame_outcome::ok);
  const std::uint8_t* h = s.p + s.off;
  if (h[0] != 0x08 && h[0] != 0x88) return stop(fi, frame_outcome::ok);
  fi.encap |= encap_vxlan;
  fi.tunnel_id = load_be32(h + 4) >> 8;
  fi.tenant_id = fi.tunnel_id;
  s.off += 8;
  s.next = hdr_ethernet;
  return true;
}

// GTP-U (3GPP TS 29.281 §5.1): flags (version 1, PT 1, E/S/PN), message type, length (of what
// follows the first 8 bytes), TEID; then, when any of E/S/PN is set, sequence number(16),
// N-PDU number(8) and next extension header type(8); then the extension headers (length in
// 4-byte units, next type in their last byte); then the T-PDU. Only a G-PDU (0xff) carries user
// traffic: echo, error indication, end marker and the rest stay plain UDP.
inline bool step_gtpu(frame_info& fi, walk_state& s) noexcept {
  if (s.end - s.off < 8) return stop(fi, frame_outcome::ok);
  const std::uint8_t* h = s.p + s.off;
  if ((h[0] & 0xf0) != 0x30 || h[1] != 0xff) return stop(fi, frame_outcome::ok);
  fi.encap |= encap_gtpu;
  fi.tunnel_id = load_be32(h + 4);
  const std::uint32_t length = load_be16(h + 2);
  if (length > s.end - s.off - 8) return stop(fi, frame_outcome::truncated);
  s.end = s.off + 8 + length;  // bytes past the GTP-U length are not the T-PDU
  std::uint32_t cur = s.off + 8;
  if (h[0] & 0x07) {
    if (s.end - cur < 4) return stop(fi, frame_outcome::truncated);
    std::uint8_t next = h[11];
    cur += 4;
    for (int i = 0; next != 0; ++i) {
      if (i >= max_gtpu_ext_headers) return stop(fi, frame_outcome::unsupported_tunnel);
      if (s.end - cur < 1) return stop(fi, frame_outcome::truncated);
      const std::uint32_t len = s.p[cur] * 4u;
      if (len == 0) return stop(fi, frame_outcome::unsupported_tunnel);
      if (len > s.end - cur) return stop(fi, frame_outcome::truncated);
      next = s.p[cur + len - 1];
      cur += len;
    }
  }
  if (cur == s.end) return stop(fi, frame_outcome::truncated);
  s.off = cur;
  switch (s.p[cur] >> 4) {
    case 4:
      s.next = eth_ipv4;
      return true;
    case 6:
      s.next = eth_ipv6;
      return true;
    default:  // Ethernet or unstructured PDU sessions: not parsed
      return stop(fi, frame_outcome::unsupported_tunnel);
  }
}

// Geneve (RFC 8926 §3.4): version(2) option length(6, in 4-byte units) O C reserved(6),
// protocol type(16), VNI(24), reserved(8), options. The O bit marks a control message, not
// tunnelled traffic.
inline bool step_geneve(frame_info& fi, walk_state& s) noexcept {
  if (s.end - s.off < 8) return stop(fi, frame_outcome::ok);
  const std::uint8_t* h = s.p + s.off;
  if ((h[0] >> 6) != 0 || (h[1] & 0x80)) return stop(fi, frame_outcome::ok);
  const std::uint16_t proto = load_be16(h + 2);
  if (proto != gre_teb && proto != eth_ipv4 && proto != eth_ipv6) {
    return stop(fi, frame_outcome::ok);
  }
  fi.encap |= encap_geneve;
  fi.tunnel_id = load_be32(h + 4) >> 8;
  fi.tenant_id = fi.tunnel_id;
  const std::uint32_t hl = 8 + (h[0] & 0x3fu) * 4u;
  if (hl > s.end - s.off) return stop(fi, frame_outcome::truncated);
  s.off += hl;
  s.next = proto == gre_teb ? hdr_ethernet : proto;
  return true;
}

inline void walk(frame_info& fi, walk_state& s) noexcept {
  for (;;) {
    if (--s.budget < 0) [[unlikely]] {
      fi.outcome = frame_outcome::too_deep;
      return;
    }
    bool more;
    switch (s.next) {
      case eth_ipv4:
        more = step_ipv4(fi, s);
        break;
      case eth_ipv6:
        more = step_ipv6(fi, s);
        break;
      case eth_vlan:
      case eth_qinq:
      case eth_qinq_legacy:
        more = step_vlan(fi, s);
        break;
      case eth_mpls_uc:
      case eth_mpls_mc:
        more = step_mpls(fi, s);
        break;
      case eth_pppoe_session:
        more = step_pppoe(fi, s);
        break;
      case hdr_gre:
        more = step_gre(fi, s);
        break;
      case hdr_ppp:
        more = step_ppp(fi, s);
        break;
      case hdr_ethernet:
        more = step_ethernet(fi, s);
        break;
      case hdr_vxlan:
        more = step_vxlan(fi, s);
        break;
      case hdr_gtpu:
        more = step_gtpu(fi, s);
        break;
      case hdr_geneve:
        more = step_geneve(fi, s);
        break;
      default:
        fi.outcome = frame_outcome::unsupported_l2;
        return;
    }
    if (!more) return;
  }
}

inline std::uint32_t clamp_size(std::size_t n) noexcept {
  return n < max_buffer ? static_cast<std::uint32_t>(n) : max_buffer;
}

// Ones' complement sum of big-endian 16-bit words, as 32-bit words in a wide accumulator
// (congruent modulo 0xffff); the caller folds.
inline std::uint64_t sum_words(const std::uint8_t* p, std::size_t n) noexcept {
  std::uint64_t sum = 0;
  std::size_t i = 0;
  for (; i + 4 <= n; i += 4) sum += load_be32(p + i);
  if (i + 2 <= n) {
    sum += load_be16(p + i);
    i += 2;
  }
  if (i < n) sum += std::uint32_t{p[i]} << 8;
  return sum;
}

inline std::uint16_t fold(std::uint64_t sum) noexcept {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<std::uint16_t>(sum);
}

}  // namespace

frame_info parse_frame(bytes frame) noexcept {
  frame_info fi;
  const std::uint32_t size = clamp_size(frame.size());
  if (size < 14) return fi;  // truncated
  walk_state s{frame.data(), 14, size, load_be16(frame.data() + 12), max_headers};
  walk(fi, s);
  return fi;
}

frame_info parse_ip(bytes packet) noexcept {
  frame_info fi;
  const std::uint32_t size = clamp_size(packet.size());
  if (size == 0) return fi;  // truncated
  const std::uint32_t next = (packet[0] >> 4) == 6 ? eth_ipv6 : eth_ipv4;
  walk_state s{packet.data(), 0, size, next, max_headers};
  walk(fi, s);
  return fi;
}

bool l4_checksum_ok(bytes frame, const frame_info& info) noexcept {
  if (info.outcome != frame_outcome::ok || info.is_fragment) return false;
  if (info.l4_proto != ipproto_tcp && info.l4_proto != ipproto_udp) return false;
  const std::size_t l3_end = std::size_t{info.l3_offset} + info.l3_length;
  if (l3_end > frame.size() || info.l4_offset >= l3_end) return false;
  const std::uint8_t* l4 = frame.data() + info.l4_offset;
  std::size_t len = l3_end - info.l4_offset;
  if (info.l4_proto == ipproto_udp) {
    if (len < 8) return false;
    const std::size_t udp_len = load_be16(l4 + 4);
    if (udp_len < 8 || udp_len > len) return false;
    len = udp_len;
    // Zero means "not computed", allowed over IPv4 only (RFC 768 vs RFC 8200 section 8.1).
    if (load_be16(l4 + 6) == 0) return info.ip_version == 4;
  } else if (len < 20) {
    return false;
  }
  const std::size_t addr_len = info.ip_version == 6 ? 16 : 4;
  std::uint64_t sum = sum_words(info.src.bytes.data(), addr_len) +
                      sum_words(info.dst.bytes.data(), addr_len) + info.l4_proto + len;
  sum += sum_words(l4, len);
  return fold(sum) == 0xffff;
}

}  // namespace sluice::packet
