#pragma once
// Byte builders shared by the unit tests: frames (Ethernet, VLAN tags, MPLS, PPPoE, GRE, VXLAN,
// GTP-U, Geneve, IPv4, IPv6 with extension headers, TCP, UDP, all with correct checksums), TLS
// ClientHellos with extensions and their records, DNS queries, and hex.
//
// Test-only and deliberately simple: every function allocates and returns a fresh vector. The
// checksum code is an independent reference (one 16-bit word at a time), not the parser's, so a
// frame built here checks the parser rather than agreeing with it by construction.

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dataplane/packet/bytes.hpp"
#include "dataplane/packet/frame.hpp"

namespace sluice::test {

using buf = std::vector<std::uint8_t>;

// ---- bytes --------------------------------------------------------------------------------------

inline buf cat(std::initializer_list<buf> parts) {
  buf out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}
inline void append(buf& b, std::string_view s) { b.insert(b.end(), s.begin(), s.end()); }
inline void append(buf& b, const buf& s) { b.insert(b.end(), s.begin(), s.end()); }
inline buf text(std::string_view s) { return {s.begin(), s.end()}; }

// Big-endian appends; the value is truncated to the field's width.
inline void put16(buf& b, std::uint64_t v) {
  b.push_back(static_cast<std::uint8_t>(v >> 8));
  b.push_back(static_cast<std::uint8_t>(v));
}
inline void put24(buf& b, std::uint64_t v) {
  b.push_back(static_cast<std::uint8_t>(v >> 16));
  put16(b, v & 0xffff);
}
inline void put32(buf& b, std::uint64_t v) {
  put16(b, (v >> 16) & 0xffff);
  put16(b, v & 0xffff);
}
inline void set16(buf& b, std::size_t at, std::uint16_t v) {
  b[at] = static_cast<std::uint8_t>(v >> 8);
  b[at + 1] = static_cast<std::uint8_t>(v);
}
inline buf pad_to(buf b, std::size_t n) {
  if (b.size() < n) b.resize(n, 0);
  return b;
}
// [from, to) of `b`, clamped to its size.
inline buf slice(const buf& b, std::size_t from, std::size_t to) {
  if (to > b.size()) to = b.size();
  if (from > to) from = to;
  return buf(b.begin() + static_cast<std::ptrdiff_t>(from),
             b.begin() + static_cast<std::ptrdiff_t>(to));
}

// Hex digits to bytes; anything that is not a hex digit (spaces, newlines) is skipped.
inline buf from_hex(std::string_view hex) {
  buf out;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  int high = -1;
  for (char c : hex) {
    const int v = nibble(c);
    if (v < 0) continue;
    if (high < 0) {
      high = v;
    } else {
      out.push_back(static_cast<std::uint8_t>(high << 4 | v));
      high = -1;
    }
  }
  return out;
}

inline std::string to_hex(packet::bytes b) {
  static constexpr const char* digits = "0123456789abcdef";
  std::string s;
  for (std::uint8_t v : b) {
    s += digits[v >> 4];
    s += digits[v & 15];
  }
  return s;
}

// ---- addresses and checksums
// ----------------------------------------------------------------------

inline packet::ip_address v4(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d) {
  packet::ip_address r;
  r.bytes = {a, b, c, d};
  r.version = 4;
  return r;
}
// An IPv6 address with only its first and last 16-bit groups set: first::last.
inline packet::ip_address v6(std::uint16_t first, std::uint16_t last) {
  packet::ip_address r;
  r.bytes[0] = static_cast<std::uint8_t>(first >> 8);
  r.bytes[1] = static_cast<std::uint8_t>(first);
  r.bytes[14] = static_cast<std::uint8_t>(last >> 8);
  r.bytes[15] = static_cast<std::uint8_t>(last);
  r.version = 6;
  return r;
}

// Internet checksum over `pseudo` then `l4`, each padded to an even length on its own.
inline std::uint16_t ref_checksum(const buf& pseudo, const buf& l4) {
  std::uint32_t sum = 0;
  auto add = [&](const buf& b) {
    for (std::size_t i = 0; i < b.size(); i += 2) {
      sum += static_cast<std::uint32_t>(b[i] << 8) + (i + 1 < b.size() ? b[i + 1] : 0);
    }
  };
  add(pseudo);
  add(l4);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<std::uint16_t>(~sum);
}

// Fills in the TCP (proto 6) or UDP (17) checksum of a complete segment.
inline void fix_l4_checksum(buf& l4, std::uint8_t proto, const packet::ip_address& src,
                            const packet::ip_address& dst) {
  const std::size_t at = proto == 6 ? 16 : 6;
  if (l4.size() < at + 2) return;
  buf pseudo;
  const std::size_t alen = src.version == 6 ? 16 : 4;
  pseudo.insert(pseudo.end(), src.bytes.begin(),
                src.bytes.begin() + static_cast<std::ptrdiff_t>(alen));
  pseudo.insert(pseudo.end(), dst.bytes.begin(),
                dst.bytes.begin() + static_cast<std::ptrdiff_t>(alen));
  put32(pseudo, proto);
  put32(pseudo, l4.size());
  set16(l4, at, 0);
  std::uint16_t c = ref_checksum(pseudo, l4);
  if (proto == 17 && c == 0) c = 0xffff;
  set16(l4, at, c);
}

// ---- L4 -----------------------------------------------------------------------------------------

// A TCP segment (checksum left 0: ipv4()/ipv6() fill it in). `options` must be a multiple of 4.
inline buf tcp(std::uint16_t sp, std::uint16_t dp, const buf& payload,
               std::uint8_t flags = packet::tcp_ack | packet::tcp_psh, const buf& options = {},
               std::uint32_t seq = 0x01020304, std::uint32_t ack = 0x05060708,
               std::uint16_t window = 0xfaf0) {
  buf b;
  put16(b, sp);
  put16(b, dp);
  put32(b, seq);
  put32(b, ack);
  b.push_back(static_cast<std::uint8_t>((5 + options.size() / 4) << 4));
  b.push_back(flags);
  put16(b, window);
  put32(b, 0);  // checksum, urgent pointer
  return cat({b, options, payload});
}

inline buf udp(std::uint16_t sp, std::uint16_t dp, const buf& payload) {
  buf b;
  put16(b, sp);
  put16(b, dp);
  put16(b, 8 + payload.size());
  put16(b, 0);
  return cat({b, payload});
}

// ---- L3 -----------------------------------------------------------------------------------------

struct v4_opts {
  buf options{};
  std::uint16_t frag = 0;  // flags + offset field as on the wire
  std::uint16_t id = 0x1234;
  int total_length = -1;         // override
  std::uint8_t version_ihl = 0;  // override
};

// IPv4 header (with its checksum) + `l4`, whose TCP/UDP checksum is filled in unless fragmented.
inline buf ipv4(const packet::ip_address& src, const packet::ip_address& dst, std::uint8_t proto,
                buf l4, const v4_opts& o = {}) {
  if ((proto == 6 || proto == 17) && o.frag == 0) fix_l4_checksum(l4, proto, src, dst);
  const std::size_t hl = 20 + o.options.size();
  buf h;
  h.push_back(o.version_ihl ? o.version_ihl : static_cast<std::uint8_t>(0x40 | (hl / 4)));
  h.push_back(0);
  put16(h, o.total_length >= 0 ? static_cast<std::size_t>(o.total_length) : hl + l4.size());
  put16(h, o.id);
  put16(h, o.frag);
  h.push_back(64);
  h.push_back(proto);
  put16(h, 0);
  h.insert(h.end(), src.bytes.begin(), src.bytes.begin() + 4);
  h.insert(h.end(), dst.bytes.begin(), dst.bytes.begin() + 4);
  h.insert(h.end(), o.options.begin(), o.options.end());
  set16(h, 10, ref_checksum({}, h));
  return cat({h, l4});
}

// `exts` is a ready chain of extension headers; `l4_proto` is the upper layer after it.
inline buf ipv6(const packet::ip_address& src, const packet::ip_address& dst, std::uint8_t next,
                const buf& exts, buf l4, std::uint8_t l4_proto, bool checksum = true,
                int payload_length = -1) {
  if (checksum && (l4_proto == 6 || l4_proto == 17)) fix_l4_checksum(l4, l4_proto, src, dst);
  buf h{0x60, 0, 0, 0};
  put16(h,
        payload_length >= 0 ? static_cast<std::size_t>(payload_length) : exts.size() + l4.size());
  h.push_back(next);
  h.push_back(57);
  h.insert(h.end(), src.bytes.begin(), src.bytes.end());
  h.insert(h.end(), dst.bytes.begin(), dst.bytes.end());
  return cat({h, exts, l4});
}
// IPv4 or IPv6 (by the source's version), no options or extension headers.
inline buf ip(const packet::ip_address& src, const packet::ip_address& dst, std::uint8_t proto,
              buf l4) {
  return src.version == 6 ? ipv6(src, dst, proto, {}, std::move(l4), proto)
                          : ipv4(src, dst, proto, std::move(l4));
}
// Hop-by-hop or destination options with one PadN option (8 bytes in all).
inline buf opts_header(std::uint8_t next) { return {next, 0, 1, 4, 0, 0, 0, 0}; }
inline buf routing_header(std::uint8_t next) {  // type 4 (SRH-like), 24 bytes, segments left 0
  buf b{next, 2, 4, 0, 0, 0, 0, 0};
  b.resize(24);
  return b;
}
inline buf frag6(std::uint8_t next, std::uint16_t offset, bool more, std::uint32_t id) {
  buf b{next, 0};
  put16(b, offset | (more ? 1u : 0u));
  put32(b, id);
  return b;
}

// ---- ICMP ---------------------------------------------------------------------------------------

// An ICMP (v4 source) or ICMPv6 (v6 source) message inside its IP packet, checksum filled in
// (ICMPv6 over the pseudo-header). `rest` is the 4 bytes after the checksum (id + sequence for
// echo, MTU for packet too big, 0 for most errors).
inline buf icmp_packet(const packet::ip_address& src, const packet::ip_address& dst,
                       std::uint8_t type, std::uint8_t code, const buf& body,
                       std::uint32_t rest = 0) {
  const bool six = src.version == 6;
  buf m{type, code, 0, 0};
  put32(m, rest);
  append(m, body);
  buf pseudo;
  if (six) {
    pseudo.insert(pseudo.end(), src.bytes.begin(), src.bytes.end());
    pseudo.insert(pseudo.end(), dst.bytes.begin(), dst.bytes.end());
    put32(pseudo, m.size());
    put32(pseudo, 58);
  }
  set16(m, 2, ref_checksum(pseudo, m));
  return six ? ipv6(src, dst, 58, {}, m, 58) : ipv4(src, dst, 1, m);
}
// Echo request (ICMP type 8, ICMPv6 type 128).
inline buf icmp_echo(const packet::ip_address& src, const packet::ip_address& dst,
                     std::uint16_t id = 7, std::uint16_t seq = 1) {
  return icmp_packet(src, dst, src.version == 6 ? 128 : 8, 0, text("ping payload"),
                     (std::uint32_t{id} << 16) | seq);
}
// An error from `src` to `dst` quoting the first `quote_bytes` of the IP packet `offending`
// (RFC 792 quotes IP header + 8 bytes; RFC 4443 as much as fits).
inline buf icmp_error(const packet::ip_address& src, const packet::ip_address& dst,
                      std::uint8_t type, std::uint8_t code, const buf& offending,
                      std::size_t quote_bytes = 28, std::uint32_t rest = 0) {
  return icmp_packet(src, dst, type, code, slice(offending, 0, quote_bytes), rest);
}

// ---- L2 and tunnels
// -------------------------------------------------------------------------------

inline buf eth(std::uint16_t type, const buf& payload) {
  buf b{0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02};
  put16(b, type);
  return cat({b, payload});
}
// Ethernet with the ethertype that fits the IP version of `ip_packet`'s first nibble.
inline buf eth_ip(const buf& ip_packet) {
  return eth(!ip_packet.empty() && (ip_packet[0] >> 4) == 6 ? 0x86dd : 0x0800, ip_packet);
}
struct tag {
  std::uint16_t tpid;
  std::uint16_t id;
};
inline buf eth_tagged(std::initializer_list<tag> tags, std::uint16_t type, const buf& payload) {
  buf b{0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02};
  for (const auto& t : tags) {
    put16(b, t.tpid);
    put16(b, 0x2000u | t.id);  // PCP 1
  }
  put16(b, type);
  return cat({b, payload});
}
inline buf mpls(std::initializer_list<std::uint32_t> labels, const buf& payload) {
  buf b;
  std::size_t i = 0;
  for (auto l : labels) {
    ++i;
    put32(b, (l << 12) | (i == labels.size() ? 0x100u : 0u) | 64u);
  }
  return cat({b, payload});
}
inline buf pppoe(std::uint16_t ppp_proto, const buf& payload) {
  buf b{0x11, 0x00};
  put16(b, 0x4d2);
  put16(b, payload.size() + 2);
  put16(b, ppp_proto);
  return cat({b, payload});
}
inline buf gre(std::uint16_t flags, std::uint16_t proto, const buf& fields, const buf& payload) {
  buf b;
  put16(b, flags);
  put16(b, proto);
  return cat({b, fields, payload});
}

// UDP tunnels: the bytes of the UDP payload (wrap with udp(sport, 4789/2152/6081, ...)).

// VXLAN (RFC 7348): flags (I = 0x08), 24 reserved bits, VNI, 8 reserved bits, inner frame.
inline buf vxlan(std::uint32_t vni, const buf& inner_frame, std::uint8_t flags = 0x08) {
  buf b{flags, 0, 0, 0};
  put32(b, vni << 8);
  return cat({b, inner_frame});
}

// GTP-U (3GPP TS 29.281) header + T-PDU. `flags` as on the wire (0x30: version 1, PT 1; |0x04 E,
// |0x02 S, |0x01 PN); `optional` is everything between the mandatory 8 bytes and the T-PDU (use
// gtpu_optional). The length field counts it and the T-PDU unless `length` overrides it.
inline buf gtpu(std::uint32_t teid, const buf& tpdu, std::uint8_t flags = 0x30,
                std::uint8_t type = 0xff, const buf& optional = {}, int length = -1) {
  buf b{flags, type};
  put16(b, length >= 0 ? static_cast<std::size_t>(length) : optional.size() + tpdu.size());
  put32(b, teid);
  return cat({b, optional, tpdu});
}
struct gtpu_ext {
  std::uint8_t type;  // this header's type (named by the previous one)
  buf content;        // between the length byte and the next-type byte; size 4n + 2
};
// Sequence number, N-PDU number, next extension type, then the extension headers chained.
inline buf gtpu_optional(std::initializer_list<gtpu_ext> exts, std::uint16_t seq = 0x1234) {
  buf b;
  put16(b, seq);
  b.push_back(0);  // N-PDU number
  b.push_back(exts.size() == 0 ? 0 : exts.begin()->type);
  std::size_t i = 0;
  for (const auto& e : exts) {
    ++i;
    b.push_back(static_cast<std::uint8_t>((e.content.size() + 2) / 4));
    append(b, e.content);
    b.push_back(i == exts.size() ? 0 : (exts.begin() + i)->type);
  }
  return b;
}

// Geneve (RFC 8926): version 0, `options` (a multiple of 4 bytes), protocol type, VNI.
inline buf geneve(std::uint32_t vni, std::uint16_t proto, const buf& payload,
                  const buf& options = {}, std::uint8_t flags = 0) {
  buf b{static_cast<std::uint8_t>(options.size() / 4), flags};
  put16(b, proto);
  put32(b, vni << 8);
  return cat({b, options, payload});
}

// ---- TLS ----------------------------------------------------------------------------------------

struct tls_ext {
  std::uint16_t type;
  buf data;
};
inline tls_ext grease_ext(std::uint16_t type) { return {type, {}}; }
inline tls_ext filler_ext(std::uint16_t type, std::size_t n) { return {type, buf(n, 0x11)}; }

// server_name extension data with the given (type 0) host names.
inline buf sni_data(std::initializer_list<std::string_view> names) {
  buf list;
  for (auto n : names) {
    list.push_back(0);
    put16(list, n.size());
    append(list, n);
  }
  buf d;
  put16(d, list.size());
  append(d, list);
  return d;
}

inline buf alpn_data(std::initializer_list<std::string_view> protos) {
  buf list;
  for (auto p : protos) {
    list.push_back(static_cast<std::uint8_t>(p.size()));
    append(list, p);
  }
  buf d;
  put16(d, list.size());
  append(d, list);
  return d;
}

// A TLS 1.3-style ClientHello handshake message (type byte included). `exts` empty and
// `with_extensions` false gives a pre-extension hello.
inline buf tls_client_hello(const std::vector<tls_ext>& exts, bool with_extensions = true) {
  buf body;
  put16(body, 0x0303);
  for (int i = 0; i < 32; ++i) body.push_back(static_cast<std::uint8_t>(i * 7));  // random
  body.push_back(32);
  for (int i = 0; i < 32; ++i) body.push_back(static_cast<std::uint8_t>(0xa0 + i));
  put16(body, 6);  // GREASE, TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384
  put16(body, 0x2a2a);
  put16(body, 0x1301);
  put16(body, 0x1302);
  body.push_back(1);
  body.push_back(0);
  if (with_extensions) {
    buf block;
    for (const auto& e : exts) {
      put16(block, e.type);
      put16(block, e.data.size());
      append(block, e.data);
    }
    put16(body, block.size());
    append(body, block);
  }
  buf msg{1};
  put24(msg, body.size());
  append(msg, body);
  return msg;
}

// A typical hello naming `sni` (SNI, ALPN h2, key_share-sized filler), `pad` bytes of padding
// extension on top.
inline buf tls_client_hello_for(std::string_view sni, std::size_t pad = 0) {
  std::vector<tls_ext> exts{
      grease_ext(0x0a0a), {0, sni_data({sni})}, {16, alpn_data({"h2"})}, filler_ext(51, 38)};
  if (pad != 0) exts.push_back(filler_ext(21, pad));
  return tls_client_hello(exts);
}

// Wraps a handshake message into `n` handshake records of near-equal size.
inline buf tls_records(const buf& message, std::size_t n) {
  buf out;
  std::size_t pos = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t len = (message.size() - pos) / (n - i);
    out.push_back(22);
    put16(out, i == 0 ? 0x0301 : 0x0303);
    put16(out, len);
    out.insert(out.end(), message.begin() + static_cast<std::ptrdiff_t>(pos),
               message.begin() + static_cast<std::ptrdiff_t>(pos + len));
    pos += len;
  }
  return out;
}

// Record header (version 3.3) + fragment.
inline buf tls_record(std::uint8_t type, const buf& fragment) {
  buf out{type, 3, 3};
  put16(out, fragment.size());
  append(out, fragment);
  return out;
}

// ---- DNS and HTTP
// ---------------------------------------------------------------------------------

// Wire form of a dotted name (no compression), root label included.
inline void put_dns_name(buf& b, std::string_view dotted) {
  while (!dotted.empty()) {
    const std::size_t dot = dotted.find('.');
    const std::string_view label = dotted.substr(0, dot);
    b.push_back(static_cast<std::uint8_t>(label.size()));
    b.insert(b.end(), label.begin(), label.end());
    dotted = dot == std::string_view::npos ? std::string_view{} : dotted.substr(dot + 1);
  }
  b.push_back(0);
}

// A DNS message with the given questions (type A, class IN) and no records; a response only
// sets QR (it echoes the questions, as real ones do).
inline buf dns_message(std::initializer_list<std::string_view> names, bool response = false,
                       std::uint16_t id = 0x1234) {
  buf b;
  put16(b, id);
  b.push_back(static_cast<std::uint8_t>(response ? 0x81 : 0x01));
  b.push_back(response ? 0x80 : 0x00);
  put16(b, names.size());
  put16(b, 0);
  put16(b, 0);
  put16(b, 0);
  for (auto n : names) {
    put_dns_name(b, n);
    put16(b, 1);
    put16(b, 1);
  }
  return b;
}
// DNS over TCP: 2-byte length prefix.
inline buf dns_tcp(const buf& message) {
  buf b;
  put16(b, message.size());
  append(b, message);
  return b;
}

inline buf http_get(std::string_view host, std::string_view path = "/") {
  std::string s = "GET ";
  s += path;
  s += " HTTP/1.1\r\nHost: ";
  s += host;
  s += "\r\nUser-Agent: test\r\nAccept: */*\r\n\r\n";
  return text(s);
}

}  // namespace sluice::test
