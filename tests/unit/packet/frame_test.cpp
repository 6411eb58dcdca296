// Table-driven tests of the L2-L4 parser over frames built byte by byte below.

#include "dataplane/packet/frame.hpp"

#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "tests/unit/support/packet_builder.hpp"

namespace {

namespace pk = sluice::packet;
using pk::frame_outcome;

// ---- builders ---------------------------------------------------------------------------------

using namespace sluice::test;

const pk::ip_address a4 = v4(10, 0, 0, 1);
const pk::ip_address b4 = v4(192, 0, 2, 7);
const pk::ip_address c4 = v4(198, 51, 100, 1);  // tunnel endpoints
const pk::ip_address d4 = v4(203, 0, 113, 9);
const pk::ip_address a6 = v6(0x2001, 0x1);
const pk::ip_address b6 = v6(0x2a00, 0x99);

// ---- cases ----------------------------------------------------------------------------------

struct expect {
  frame_outcome outcome = frame_outcome::ok;
  std::uint16_t encap = 0;
  std::uint16_t outer_vlan = 0;
  std::uint8_t ip_version = 4;
  std::uint8_t l4_proto = 6;
  pk::ip_address src = a4;
  pk::ip_address dst = b4;
  std::uint16_t src_port = 1234;
  std::uint16_t dst_port = 443;
  int payload_length = 5;  // -1: not checked
  bool is_fragment = false;
  bool more_fragments = false;
  std::uint16_t frag_offset = 0;
  std::uint32_t frag_id = 0;
  std::uint32_t tunnel_id = 0;
  std::uint32_t tenant_id = 0;
};

struct frame_case {
  const char* description;
  buf frame;
  expect e;
};

const buf hello = text("hello");

buf v4_tcp() { return ipv4(a4, b4, 6, tcp(1234, 443, hello)); }
buf v4_udp() { return ipv4(a4, b4, 17, udp(5353, 53, hello)); }
buf v6_tcp() { return ipv6(a6, b6, 6, {}, tcp(1234, 443, hello), 6); }
buf v6_udp() { return ipv6(a6, b6, 17, {}, udp(5353, 53, hello), 17); }

const expect udp_e{.l4_proto = 17, .src_port = 5353, .dst_port = 53};
constexpr std::uint16_t qinq_bits = pk::encap_vlan | pk::encap_qinq;

expect with(expect e, auto f) {
  f(e);
  return e;
}
expect v6e(expect e) {
  e.ip_version = 6;
  e.src = a6;
  e.dst = b6;
  return e;
}

// UDP tunnel frames: outer IPv4 c4 -> d4 (or v6 a6 -> b6 when outer_v6), UDP 40000 -> port.
buf over_udp(std::uint16_t port, const buf& payload, bool outer_v6 = false) {
  return outer_v6 ? eth(0x86dd, ipv6(a6, b6, 17, {}, udp(40000, port, payload), 17))
                  : eth(0x0800, ipv4(c4, d4, 17, udp(40000, port, payload)));
}
buf in_vxlan(std::uint32_t vni, const buf& inner_frame, bool outer_v6 = false) {
  return over_udp(4789, vxlan(vni, inner_frame), outer_v6);
}
buf in_gtpu(std::uint32_t teid, const buf& ip_packet, std::uint8_t flags = 0x30,
            const buf& optional = {}) {
  return over_udp(2152, gtpu(teid, ip_packet, flags, 0xff, optional));
}
// A GTP-U extension header of `words` 4-byte units (content filler 0x5a).
gtpu_ext ext_of(std::uint8_t type, std::size_t words = 1) { return {type, buf(words * 4 - 2, 0x5a)}; }

// What a datagram to a tunnel port that is not a tunnel gives: the outer UDP flow.
expect plain_udp(std::uint16_t port, int payload_length) {
  return {.l4_proto = 17,
          .src = c4,
          .dst = d4,
          .src_port = 40000,
          .dst_port = port,
          .payload_length = payload_length};
}
expect tunnelled(expect e, std::uint16_t encap, std::uint32_t id) {
  e.encap = static_cast<std::uint16_t>(e.encap | encap);
  e.tunnel_id = id;
  // The innermost tunnel here is the VXLAN/Geneve one whenever there is one.
  if (encap & (pk::encap_vxlan | pk::encap_geneve)) e.tenant_id = id;
  return e;
}

std::vector<frame_case> tunnel_cases() {
  const buf pdu_session = buf{0x00, 0x09};  // PDU session container (0x85): UL, QFI 9
  return {
      {"VXLAN IPv4 in IPv4", in_vxlan(42, eth(0x0800, v4_tcp())),
       tunnelled({}, pk::encap_vxlan, 42)},
      {"VXLAN IPv6 inner", in_vxlan(0xabcdef, eth(0x86dd, v6_udp())),
       tunnelled(v6e(udp_e), pk::encap_vxlan, 0xabcdef)},
      {"VXLAN over IPv6", in_vxlan(7, eth(0x0800, v4_tcp()), true),
       tunnelled({}, pk::encap_vxlan, 7)},
      {"VXLAN with VLAN inside", in_vxlan(5, eth_tagged({{0x8100, 42}}, 0x0800, v4_tcp())),
       tunnelled({.outer_vlan = 42}, pk::encap_vxlan | pk::encap_vlan, 5)},
      {"VXLAN group-policy flag (G)", over_udp(4789, vxlan(9, eth(0x0800, v4_tcp()), 0x88)),
       tunnelled({}, pk::encap_vxlan, 9)},
      {"VXLAN VNI 0", in_vxlan(0, eth(0x0800, v4_tcp())), tunnelled({}, pk::encap_vxlan, 0)},
      {"GTP-U minimal header", in_gtpu(0x01020304, v4_tcp()),
       tunnelled({}, pk::encap_gtpu, 0x01020304)},
      {"GTP-U IPv6 T-PDU", in_gtpu(0xfffffffe, v6_udp()),
       tunnelled(v6e(udp_e), pk::encap_gtpu, 0xfffffffe)},
      {"GTP-U sequence number (S)", in_gtpu(77, v4_tcp(), 0x32, gtpu_optional({})),
       tunnelled({}, pk::encap_gtpu, 77)},
      {"GTP-U N-PDU number (PN)", in_gtpu(77, v4_tcp(), 0x31, gtpu_optional({})),
       tunnelled({}, pk::encap_gtpu, 77)},
      {"GTP-U E with next type 0 (empty chain)", in_gtpu(78, v4_tcp(), 0x34, gtpu_optional({})),
       tunnelled({}, pk::encap_gtpu, 78)},
      {"GTP-U PDU session container (5G)",
       in_gtpu(79, v4_tcp(), 0x34, gtpu_optional({{0x85, pdu_session}})),
       tunnelled({}, pk::encap_gtpu, 79)},
      {"GTP-U three extension headers, one of 3 words",
       in_gtpu(80, v6_udp(), 0x36,
               gtpu_optional({ext_of(0x40), ext_of(0xc0, 3), {0x85, pdu_session}})),
       tunnelled(v6e(udp_e), pk::encap_gtpu, 80)},
      {"GTP-U eight extension headers is the limit",
       in_gtpu(81, v4_tcp(), 0x34,
               gtpu_optional({ext_of(1), ext_of(2), ext_of(3), ext_of(4), ext_of(5), ext_of(6),
                              ext_of(7), ext_of(8)})),
       tunnelled({}, pk::encap_gtpu, 81)},
      {"GTP-U spare bit set (ignored)", in_gtpu(82, v4_tcp(), 0x38),
       tunnelled({}, pk::encap_gtpu, 82)},
      {"GTP-U length shorter than the UDP payload: the rest is not T-PDU",
       over_udp(2152, cat({gtpu(83, v4_tcp()), buf(6, 0xee)})),
       tunnelled({}, pk::encap_gtpu, 83)},
      {"Geneve Ethernet with an option", over_udp(6081, geneve(0x123456, 0x6558,
                                                                 eth(0x0800, v4_tcp()),
                                                                 buf(8, 0x01))),
       tunnelled({}, pk::encap_geneve, 0x123456)},
      {"Geneve IPv6 directly", over_udp(6081, geneve(3, 0x86dd, v6_udp())),
       tunnelled(v6e(udp_e), pk::encap_geneve, 3)},
      {"VXLAN inside GTP-U: the innermost tunnel's id",
       in_gtpu(1000, ipv4(c4, d4, 17, udp(40001, 4789, vxlan(2000, eth(0x0800, v4_tcp()))))),
       tunnelled({}, pk::encap_gtpu | pk::encap_vxlan, 2000)},
      {"GTP-U inside VXLAN: the TEID is the tunnel, the VNI the tenant",
       in_vxlan(3000, eth(0x0800, ipv4(c4, d4, 17, udp(2152, 2152, gtpu(4000, v4_tcp()))))),
       with(tunnelled({}, pk::encap_vxlan | pk::encap_gtpu, 4000),
            [](expect& e) { e.tenant_id = 3000; })},
      {"GRE inside VXLAN",
       in_vxlan(11, eth(0x0800, ipv4(c4, d4, 47, gre(0, 0x0800, {}, v4_tcp())))),
       tunnelled({}, pk::encap_vxlan | pk::encap_gre, 11)},
      {"first fragment of a GTP-U datagram needs reassembly",
       eth(0x0800, ipv4(c4, d4, 17, slice(udp(40000, 2152, gtpu(5, v4_tcp())), 0, 32),
                        {.frag = 0x2000, .id = 0x77})),
       {.outcome = frame_outcome::fragment,
        .l4_proto = 17,
        .src = c4,
        .dst = d4,
        .payload_length = -1,
        .is_fragment = true,
        .more_fragments = true,
        .frag_id = 0x77}},
      {"first fragment of a VXLAN datagram needs reassembly",
       eth(0x0800, ipv4(c4, d4, 17, slice(udp(40000, 4789, vxlan(5, eth(0x0800, v4_tcp()))), 0, 48),
                        {.frag = 0x2000, .id = 0x78})),
       {.outcome = frame_outcome::fragment,
        .l4_proto = 17,
        .src = c4,
        .dst = d4,
        .payload_length = -1,
        .is_fragment = true,
        .more_fragments = true,
        .frag_id = 0x78}},
      // Not tunnels: the outer UDP flow, outcome ok, never a drop.
      {"VXLAN I flag clear", over_udp(4789, vxlan(1, eth(0x0800, v4_tcp()), 0x00)),
       plain_udp(4789, 8 + 14 + 45)},
      {"VXLAN reserved flag set", over_udp(4789, vxlan(1, eth(0x0800, v4_tcp()), 0x0c)),
       plain_udp(4789, 8 + 14 + 45)},
      {"VXLAN port, 5 bytes", over_udp(4789, hello), plain_udp(4789, 5)},
      {"VXLAN port, empty datagram", over_udp(4789, {}), plain_udp(4789, 0)},
      {"VXLAN source port only", eth(0x0800, ipv4(c4, d4, 17, udp(4789, 40000,
                                                                    vxlan(1, eth(0x0800, v4_tcp()))))),
       with(plain_udp(40000, 8 + 14 + 45), [](expect& e) { e.src_port = 4789; })},
      {"GTP-U echo request", over_udp(2152, gtpu(0, {}, 0x32, 0x01, buf(4, 0))),
       plain_udp(2152, 12)},
      {"GTP-U end marker", over_udp(2152, gtpu(9, {}, 0x30, 0xfe)), plain_udp(2152, 8)},
      {"GTP-U error indication", over_udp(2152, gtpu(0, buf(12, 0), 0x32, 0x1a)),
       plain_udp(2152, 20)},
      {"GTP version 2 on 2152", over_udp(2152, gtpu(9, v4_tcp(), 0x48)),
       plain_udp(2152, 8 + 45)},
      {"GTP' (PT 0)", over_udp(2152, gtpu(9, v4_tcp(), 0x20)), plain_udp(2152, 8 + 45)},
      {"GTP-U port, 7 bytes", over_udp(2152, buf{0x30, 0xff, 0, 0, 0, 0, 1}),
       plain_udp(2152, 7)},
      {"Geneve control packet (O)", over_udp(6081, geneve(3, 0x0800, v4_tcp(), {}, 0x80)),
       plain_udp(6081, 8 + 45)},
      {"Geneve version 1", over_udp(6081, cat({{0x40}, slice(geneve(3, 0x0800, v4_tcp()), 1, 99)})),
       plain_udp(6081, 8 + 45)},
      {"Geneve protocol we do not read (NSH)", over_udp(6081, geneve(3, 0x894f, buf(20, 0))),
       plain_udp(6081, 28)},
  };
}

std::vector<frame_case> valid_cases() {
  const buf udp_100 = udp(5353, 53, buf(92, 0xab));  // UDP length 100
  const buf first_part(udp_100.begin(), udp_100.begin() + 40);
  const buf ppp_ip = cat({{0xff, 0x03, 0x00, 0x21}, v4_tcp()});
  const buf ppp_compressed = cat({{0x21}, v4_tcp()});
  return {
      {"IPv4 TCP", eth(0x0800, v4_tcp()), {}},
      {"IPv4 UDP", eth(0x0800, v4_udp()), udp_e},
      {"IPv6 TCP", eth(0x86dd, v6_tcp()), v6e({})},
      {"IPv6 UDP", eth(0x86dd, v6_udp()), v6e(udp_e)},
      {"TCP SYN with options, no payload",
       eth(0x0800, ipv4(a4, b4, 6, tcp(1234, 443, {}, pk::tcp_syn, buf(20, 1)))),
       {.payload_length = 0}},
      {"802.1Q",
       eth_tagged({{0x8100, 100}}, 0x0800, v4_tcp()),
       {.encap = pk::encap_vlan, .outer_vlan = 100}},
      {"QinQ 88a8/8100",
       eth_tagged({{0x88a8, 200}, {0x8100, 100}}, 0x0800, v4_tcp()),
       {.encap = qinq_bits, .outer_vlan = 200}},
      {"QinQ 9100/8100 IPv6", eth_tagged({{0x9100, 300}, {0x8100, 100}}, 0x86dd, v6_udp()),
       v6e(with(udp_e,
                [](expect& e) {
                  e.encap = qinq_bits;
                  e.outer_vlan = 300;
                }))},
      {"single 88a8 tag",
       eth_tagged({{0x88a8, 7}}, 0x0800, v4_tcp()),
       {.encap = pk::encap_qinq, .outer_vlan = 7}},
      {"three tags",
       eth_tagged({{0x88a8, 1}, {0x8100, 2}, {0x8100, 3}}, 0x0800, v4_tcp()),
       {.encap = qinq_bits, .outer_vlan = 1}},
      {"MPLS 1 label IPv4 UDP", eth(0x8847, mpls({16}, v4_udp())),
       with(udp_e, [](expect& e) { e.encap = pk::encap_mpls; })},
      {"MPLS 3 labels IPv6 TCP", eth(0x8847, mpls({16, 17, 18}, v6_tcp())),
       v6e({.encap = pk::encap_mpls})},
      {"MPLS multicast in VLAN",
       eth_tagged({{0x8100, 5}}, 0x8848, mpls({100, 3}, v4_tcp())),
       {.encap = pk::encap_vlan | pk::encap_mpls, .outer_vlan = 5}},
      {"PPPoE IPv4", eth(0x8864, pppoe(0x0021, v4_tcp())), {.encap = pk::encap_pppoe}},
      {"PPPoE IPv4, protocol field compressed to one byte",
       [] {
         buf f = eth(0x8864, pppoe(0x0021, v4_tcp()));
         f.erase(f.begin() + 14 + 6);  // drop the protocol's zero high byte
         return f;
       }(),
       {.encap = pk::encap_pppoe}},
      {"PPPoE IPv6 in QinQ",
       eth_tagged({{0x88a8, 9}, {0x8100, 10}}, 0x8864, pppoe(0x0057, v6_udp())),
       v6e(with(udp_e,
                [](expect& e) {
                  e.encap = qinq_bits | pk::encap_pppoe;
                  e.outer_vlan = 9;
                }))},
      {"IPv4 options (IHL 7)",
       eth(0x0800, ipv4(a4, b4, 6, tcp(1234, 443, hello), {.options = {1, 1, 1, 1, 1, 1, 1, 0}})),
       {}},
      {"Ethernet padding not payload (UDP)",
       pad_to(eth(0x0800, ipv4(a4, b4, 17, udp(5353, 53, {0x42}))), 60),
       with(udp_e, [](expect& e) { e.payload_length = 1; })},
      {"Ethernet padding not payload (TCP ACK)",
       pad_to(eth(0x0800, ipv4(a4, b4, 6, tcp(1234, 443, {}, pk::tcp_ack))), 60),
       {.payload_length = 0}},
      {"Ethernet padding after IPv6", cat({eth(0x86dd, v6_udp()), buf(10, 0xee)}), v6e(udp_e)},
      {"IPv4 first fragment parses L4",
       eth(0x0800, ipv4(a4, b4, 17, first_part, {.frag = 0x2000, .id = 0xbeef})),
       with(udp_e,
            [](expect& e) {
              e.payload_length = 32;
              e.is_fragment = true;
              e.more_fragments = true;
              e.frag_id = 0xbeef;
            })},
      {"IPv4 middle fragment",
       eth(0x0800, ipv4(a4, b4, 17, buf(64, 0xab), {.frag = 0x2000 | 5, .id = 0xbeef})),
       with(udp_e,
            [](expect& e) {
              e.outcome = frame_outcome::fragment;
              e.payload_length = -1;
              e.is_fragment = true;
              e.more_fragments = true;
              e.frag_offset = 40;
              e.frag_id = 0xbeef;
            })},
      {"IPv4 last fragment",
       eth(0x0800, ipv4(a4, b4, 6, buf(16, 0xab), {.frag = 185, .id = 7})),
       {.outcome = frame_outcome::fragment,
        .payload_length = -1,
        .is_fragment = true,
        .frag_offset = 1480,
        .frag_id = 7}},
      {"IPv4 DF is not a fragment",
       eth(0x0800, ipv4(a4, b4, 6, tcp(1234, 443, hello), {.frag = 0x4000})),
       {}},
      {"IPv6 hop-by-hop + fragment, first",
       eth(0x86dd, ipv6(a6, b6, 0, cat({opts_header(44), frag6(17, 0, true, 0xdeadbeef)}),
                        first_part, 17, false)),
       v6e(with(udp_e,
                [](expect& e) {
                  e.payload_length = 32;
                  e.is_fragment = true;
                  e.more_fragments = true;
                  e.frag_id = 0xdeadbeef;
                }))},
      {"IPv6 hop-by-hop + fragment, non-first",
       eth(0x86dd, ipv6(a6, b6, 0, cat({opts_header(44), frag6(17, 1232, false, 0xdeadbeef)}),
                        buf(100, 0xab), 17, false)),
       v6e(with(udp_e,
                [](expect& e) {
                  e.outcome = frame_outcome::fragment;
                  e.payload_length = -1;
                  e.is_fragment = true;
                  e.frag_offset = 1232;
                  e.frag_id = 0xdeadbeef;
                }))},
      {"IPv6 atomic fragment is whole",
       eth(0x86dd, ipv6(a6, b6, 44, frag6(6, 0, false, 1), tcp(1234, 443, hello), 6)), v6e({})},
      {"IPv6 routing + destination options",
       eth(0x86dd,
           ipv6(a6, b6, 43, cat({routing_header(60), opts_header(6)}), tcp(1234, 443, hello), 6)),
       v6e({})},
      {"IPv6 AH",
       eth(0x86dd, ipv6(a6, b6, 51, cat({{17, 4, 0, 0}, buf(20, 0)}), udp(5353, 53, hello), 17)),
       v6e(udp_e)},
      {"GRE plain",
       eth(0x0800, ipv4(c4, d4, 47, gre(0, 0x0800, {}, v4_tcp()))),
       {.encap = pk::encap_gre}},
      {"GRE key + sequence, IPv6 inside",
       eth(0x0800, ipv4(c4, d4, 47, gre(0x3000, 0x86dd, buf(8, 0x11), v6_udp()))),
       v6e(with(udp_e, [](expect& e) { e.encap = pk::encap_gre; }))},
      {"GRE checksum + key over IPv6",
       eth(0x86dd, ipv6(a6, b6, 47, {}, gre(0xa000, 0x0800, buf(8, 0), v4_tcp()), 47)),
       {.encap = pk::encap_gre}},
      {"GRE v1 (PPTP) PPP IPv4",
       eth(0x0800, ipv4(c4, d4, 47, gre(0x3081, 0x880b, buf(12, 0), ppp_ip))),
       {.encap = pk::encap_gre}},
      {"GRE v1 PPP compressed address and protocol",
       eth(0x0800, ipv4(c4, d4, 47, gre(0x2001, 0x880b, buf(4, 0), ppp_compressed))),
       {.encap = pk::encap_gre}},
      {"GRE transparent Ethernet bridging with inner VLAN",
       eth(0x0800,
           ipv4(c4, d4, 47,
                gre(0x2000, 0x6558, buf(4, 0), eth_tagged({{0x8100, 42}}, 0x0800, v4_tcp())))),
       {.encap = pk::encap_gre | pk::encap_vlan, .outer_vlan = 42}},
      {"MPLS over GRE",
       eth(0x0800, ipv4(c4, d4, 47, gre(0, 0x8847, {}, mpls({20}, v4_tcp())))),
       {.encap = pk::encap_gre | pk::encap_mpls}},
      {"IPIP", eth(0x0800, ipv4(c4, d4, 4, v4_tcp())), {.encap = pk::encap_ip_in_ip}},
      {"6in4", eth(0x0800, ipv4(c4, d4, 41, v6_udp())),
       v6e(with(udp_e, [](expect& e) { e.encap = pk::encap_ip_in_ip; }))},
      {"4in6", eth(0x86dd, ipv6(a6, b6, 4, {}, v4_udp(), 4)),
       with(udp_e, [](expect& e) { e.encap = pk::encap_ip_in_ip; })},
      {"ICMP is other_l4",
       eth(0x0800, ipv4(a4, b4, 1, buf(8, 0))),
       {.outcome = frame_outcome::other_l4, .l4_proto = 1, .payload_length = -1}},
      {"IPv6 ESP is other_l4", eth(0x86dd, ipv6(a6, b6, 0, opts_header(50), buf(24, 0), 50)),
       v6e({.outcome = frame_outcome::other_l4, .l4_proto = 50, .payload_length = -1})},
      {"IPv6 no next header", eth(0x86dd, ipv6(a6, b6, 59, {}, buf(8, 0), 59)),
       v6e({.outcome = frame_outcome::other_l4, .l4_proto = 59, .payload_length = -1})},
      {"UDP length shorter than IP payload",
       eth(0x0800, ipv4(a4, b4, 17, cat({udp(5353, 53, hello), buf(4, 0)}))), udp_e},
      {"fragmented GRE needs reassembly",
       eth(0x0800, ipv4(c4, d4, 47, gre(0, 0x0800, {}, v4_tcp()), {.frag = 0x2000, .id = 3})),
       {.outcome = frame_outcome::fragment,
        .l4_proto = 47,
        .src = c4,
        .dst = d4,
        .payload_length = -1,
        .is_fragment = true,
        .more_fragments = true,
        .frag_id = 3}},
      {"first fragment cut inside TCP header",
       eth(0x0800, ipv4(a4, b4, 6, buf(16, 0), {.frag = 0x2000, .id = 4})),
       {.outcome = frame_outcome::fragment,
        .payload_length = -1,
        .is_fragment = true,
        .more_fragments = true,
        .frag_id = 4}},
  };
}

std::vector<frame_case> all_valid_cases() {
  auto v = valid_cases();
  for (auto& c : tunnel_cases()) v.push_back(std::move(c));
  return v;
}

struct bad_case {
  const char* description;
  buf frame;
  frame_outcome outcome;
};

buf nested_ipip(int ip_headers) {
  buf b = v4_tcp();
  for (int i = 1; i < ip_headers; ++i) b = ipv4(c4, d4, 4, b);
  return eth(0x0800, b);
}

// Each VXLAN level spends 3 headers (VXLAN, Ethernet, IPv4), each GTP-U level 2 (GTP-U, IPv4),
// on top of the outer IPv4: 1 + 3 * 3 and 1 + 2 * 5 fit in 12, one more level does not.
buf nested_vxlan(int levels) {
  buf b = v4_tcp();
  for (int i = 1; i < levels; ++i) b = ipv4(c4, d4, 17, udp(40000, 4789, vxlan(1, eth(0x0800, b))));
  return in_vxlan(1, eth(0x0800, b));
}
buf nested_gtpu(int levels) {
  buf b = v4_tcp();
  for (int i = 1; i < levels; ++i) b = ipv4(c4, d4, 17, udp(40000, 2152, gtpu(1, b)));
  return in_gtpu(1, b);
}

std::vector<bad_case> bad_cases() {
  buf tcp_doff4 = tcp(1, 2, hello);
  tcp_doff4[12] = 0x40;
  buf tcp_doff15 = tcp(1, 2, hello);
  tcp_doff15[12] = 0xf0;
  buf udp_len7 = udp(1, 2, hello);
  set16(udp_len7, 4, 7);
  buf udp_len_long = udp(1, 2, hello);
  set16(udp_len_long, 4, 200);
  return {
      {"empty", {}, frame_outcome::truncated},
      {"13 bytes", buf(13, 0), frame_outcome::truncated},
      {"ARP", eth(0x0806, buf(28, 0)), frame_outcome::unsupported_l2},
      {"802.3 length field", eth(0x0040, buf(64, 0)), frame_outcome::unsupported_l2},
      {"PPPoE discovery", eth(0x8863, buf(20, 0)), frame_outcome::unsupported_l2},
      {"PPPoE LCP", eth(0x8864, pppoe(0xc021, buf(10, 0))), frame_outcome::unsupported_l2},
      {"MPLS pseudowire control word", eth(0x8847, mpls({16}, cat({buf(4, 0), v4_tcp()}))),
       frame_outcome::unsupported_l2},
      {"IPv4 version 5", eth(0x0800, ipv4(a4, b4, 6, tcp(1, 2, hello), {.version_ihl = 0x55})),
       frame_outcome::bad_ipv4},
      {"IPv4 IHL 4", eth(0x0800, ipv4(a4, b4, 6, tcp(1, 2, hello), {.version_ihl = 0x44})),
       frame_outcome::bad_ipv4},
      {"IPv4 total length < header",
       eth(0x0800, ipv4(a4, b4, 6, tcp(1, 2, hello), {.total_length = 19})),
       frame_outcome::bad_ipv4},
      {"IPv4 total length beyond frame",
       eth(0x0800, ipv4(a4, b4, 6, tcp(1, 2, hello), {.total_length = 1500})),
       frame_outcome::truncated},
      {"IPv6 under 0x0800", eth(0x0800, v6_tcp()), frame_outcome::bad_ipv4},
      {"IPv4 under 0x86dd", eth(0x86dd, pad_to(v4_tcp(), 60)), frame_outcome::bad_ipv6},
      {"IPv6 jumbogram (payload length 0)",
       eth(0x86dd, ipv6(a6, b6, 0, opts_header(6), tcp(1, 2, hello), 6, true, 0)),
       frame_outcome::bad_ipv6},
      {"IPv6 payload length beyond frame",
       eth(0x86dd, ipv6(a6, b6, 6, {}, tcp(1, 2, hello), 6, true, 400)), frame_outcome::truncated},
      {"IPv6 hop-by-hop not first",
       eth(0x86dd, ipv6(a6, b6, 60, cat({opts_header(0), opts_header(6)}), tcp(1, 2, hello), 6)),
       frame_outcome::bad_ipv6},
      {"IPv6 extension header past datagram",
       eth(0x86dd, ipv6(a6, b6, 60, {6, 9, 1, 4, 0, 0, 0, 0}, tcp(1, 2, hello), 6)),
       frame_outcome::bad_ipv6},
      {"IPv6 two fragment headers",
       eth(0x86dd, ipv6(a6, b6, 44, cat({frag6(44, 0, true, 1), frag6(6, 0, true, 1)}),
                        tcp(1, 2, hello), 6)),
       frame_outcome::bad_ipv6},
      {"IPv6 nine extension headers",
       eth(0x86dd, ipv6(a6, b6, 60,
                        cat({opts_header(60), opts_header(60), opts_header(60), opts_header(60),
                             opts_header(60), opts_header(60), opts_header(60), opts_header(60),
                             opts_header(6)}),
                        tcp(1, 2, hello), 6)),
       frame_outcome::bad_ipv6},
      {"TCP data offset 4", eth(0x0800, ipv4(a4, b4, 6, tcp_doff4)), frame_outcome::bad_l4},
      {"TCP data offset past datagram", eth(0x0800, ipv4(a4, b4, 6, tcp_doff15)),
       frame_outcome::bad_l4},
      {"TCP datagram shorter than a header", eth(0x0800, ipv4(a4, b4, 6, buf(12, 0))),
       frame_outcome::bad_l4},
      {"UDP length 7", eth(0x0800, ipv4(a4, b4, 17, udp_len7)), frame_outcome::bad_l4},
      {"UDP length beyond IP payload", eth(0x0800, ipv4(a4, b4, 17, udp_len_long)),
       frame_outcome::bad_l4},
      {"UDP length beyond IP payload but within padding",
       pad_to(eth(0x0800, ipv4(a4, b4, 17, udp_len_long)), 400), frame_outcome::bad_l4},
      {"GRE routing bit", eth(0x0800, ipv4(c4, d4, 47, gre(0x4000, 0x0800, buf(4, 0), v4_tcp()))),
       frame_outcome::unsupported_tunnel},
      {"GRE version 2", eth(0x0800, ipv4(c4, d4, 47, gre(0x0002, 0x0800, {}, v4_tcp()))),
       frame_outcome::unsupported_tunnel},
      {"GRE v1 without key", eth(0x0800, ipv4(c4, d4, 47, gre(0x0001, 0x880b, {}, v4_tcp()))),
       frame_outcome::unsupported_tunnel},
      {"GRE ERSPAN", eth(0x0800, ipv4(c4, d4, 47, gre(0x1000, 0x88be, buf(4, 0), buf(40, 0)))),
       frame_outcome::unsupported_tunnel},
      {"GRE PPP LCP",
       eth(0x0800, ipv4(c4, d4, 47, gre(0x2001, 0x880b, buf(4, 0), {0xff, 0x03, 0xc0, 0x21}))),
       frame_outcome::unsupported_tunnel},
      {"GRE header cut by outer length", eth(0x0800, ipv4(c4, d4, 47, gre(0x3000, 0x0800, {}, {}))),
       frame_outcome::truncated},
      {"VXLAN inner frame shorter than 14", over_udp(4789, vxlan(1, buf(13, 0))),
       frame_outcome::truncated},
      {"VXLAN inner ARP", over_udp(4789, vxlan(1, eth(0x0806, buf(28, 0)))),
       frame_outcome::unsupported_l2},
      {"VXLAN inner IPv4 version 5",
       in_vxlan(1, eth(0x0800, ipv4(a4, b4, 6, tcp(1, 2, hello), {.version_ihl = 0x55}))),
       frame_outcome::bad_ipv4},
      {"VXLAN inner IPv4 length beyond the datagram",
       in_vxlan(1, eth(0x0800, ipv4(a4, b4, 6, tcp(1, 2, hello), {.total_length = 1500}))),
       frame_outcome::truncated},
      {"GTP-U extension header of length 0",
       in_gtpu(1, v4_tcp(), 0x34, gtpu_optional({{0x85, buf{}}})),  // writes length (0+2)/4 = 0
       frame_outcome::unsupported_tunnel},
      {"GTP-U nine extension headers",
       in_gtpu(1, v4_tcp(), 0x34,
               gtpu_optional({ext_of(1), ext_of(2), ext_of(3), ext_of(4), ext_of(5), ext_of(6),
                              ext_of(7), ext_of(8), ext_of(9)})),
       frame_outcome::unsupported_tunnel},
      {"GTP-U extension header past the datagram",
       over_udp(2152, gtpu(1, {}, 0x34, 0xff, buf{0x12, 0x34, 0, 0x85, 3, 0})),  // 12 claimed
       frame_outcome::truncated},
      {"GTP-U length beyond the datagram", over_udp(2152, gtpu(1, v4_tcp(), 0x30, 0xff, {}, 200)),
       frame_outcome::truncated},
      {"GTP-U optional field cut by the length",
       over_udp(2152, gtpu(1, {}, 0x32, 0xff, buf(3, 0))), frame_outcome::truncated},
      {"GTP-U G-PDU without T-PDU", over_udp(2152, gtpu(1, {})), frame_outcome::truncated},
      {"GTP-U Ethernet PDU (not IP)", in_gtpu(1, eth(0x0800, v4_tcp())),
       frame_outcome::unsupported_tunnel},
      {"GTP-U inner IPv6 payload past the datagram",
       in_gtpu(1, ipv6(a6, b6, 6, {}, tcp(1, 2, hello), 6, true, 400)), frame_outcome::truncated},
      {"Geneve options past the datagram",
       over_udp(6081, cat({{0x3f, 0}, slice(geneve(1, 0x0800, {}), 2, 8)})),
       frame_outcome::truncated},
      {"12 IP headers is the limit", nested_ipip(12), frame_outcome::ok},
      {"3 nested VXLAN fit the budget", nested_vxlan(3), frame_outcome::ok},
      {"4 nested VXLAN", nested_vxlan(4), frame_outcome::too_deep},
      {"5 nested GTP-U fit the budget", nested_gtpu(5), frame_outcome::ok},
      {"6 nested GTP-U", nested_gtpu(6), frame_outcome::too_deep},
      {"13 IP headers", nested_ipip(13), frame_outcome::too_deep},
      {"12 VLAN tags",
       eth_tagged({{0x8100, 1},
                   {0x8100, 1},
                   {0x8100, 1},
                   {0x8100, 1},
                   {0x8100, 1},
                   {0x8100, 1},
                   {0x8100, 1},
                   {0x8100, 1},
                   {0x8100, 1},
                   {0x8100, 1},
                   {0x8100, 1},
                   {0x8100, 1}},
                  0x0800, v4_tcp()),
       frame_outcome::too_deep},
  };
}

void check_bounds(const pk::frame_info& fi, std::size_t n) {
  CHECK(fi.outcome < frame_outcome::count);
  if (fi.outcome == frame_outcome::ok) {
    CHECK(std::size_t{fi.l3_offset} + fi.l3_length <= n);
    CHECK(fi.l4_offset >= fi.l3_offset);
    CHECK(fi.payload_offset >= fi.l4_offset);
    CHECK(std::size_t{fi.payload_offset} + fi.payload_length <= n);
  }
}

}  // namespace

TEST_CASE("frame: valid frames") {
  for (const auto& c : all_valid_cases()) {
    CAPTURE(c.description);
    const auto fi = pk::parse_frame(c.frame);
    const auto& e = c.e;
    CHECK(pk::to_string(fi.outcome) == std::string(pk::to_string(e.outcome)));
    CHECK(fi.encap == e.encap);
    CHECK(fi.outer_vlan == e.outer_vlan);
    CHECK(fi.ip_version == e.ip_version);
    CHECK(fi.l4_proto == e.l4_proto);
    CHECK(fi.src == e.src);
    CHECK(fi.dst == e.dst);
    CHECK(fi.is_fragment == e.is_fragment);
    CHECK(fi.more_fragments == e.more_fragments);
    CHECK(fi.frag_offset == e.frag_offset);
    CHECK(fi.frag_id == e.frag_id);
    CHECK(fi.tunnel_id == e.tunnel_id);
    CHECK(fi.tenant_id == e.tenant_id);
    if (e.outcome == frame_outcome::ok) {
      CHECK(fi.src_port == e.src_port);
      CHECK(fi.dst_port == e.dst_port);
      CHECK(int{fi.payload_length} == e.payload_length);
      // The payload view is exactly the bytes the builder put after the L4 header.
      if (e.payload_length == 5) CHECK(pk::as_chars(fi.payload(c.frame)) == "hello");
    }
    check_bounds(fi, c.frame.size());
  }
}

TEST_CASE("frame: offsets and TCP fields of a plain frame") {
  const buf f = eth(0x0800, ipv4(a4, b4, 6, tcp(1234, 443, hello, pk::tcp_syn | pk::tcp_ack),
                                 {.options = buf(4, 1)}));
  const auto fi = pk::parse_frame(f);
  REQUIRE(fi.outcome == frame_outcome::ok);
  CHECK(fi.l3_offset == 14);
  CHECK(fi.outer_l3_offset == 14);
  CHECK(fi.l3_length == 24 + 20 + 5);
  CHECK(fi.l4_offset == 14 + 24);
  CHECK(fi.payload_offset == 14 + 24 + 20);
  CHECK(fi.ttl == 64);
  CHECK(fi.tcp_seq == 0x01020304u);
  CHECK(fi.tcp_ack == 0x05060708u);
  CHECK(fi.tcp_window == 0xfaf0);
  CHECK(fi.tcp_flags == (pk::tcp_syn | pk::tcp_ack));
}

TEST_CASE("frame: tunnels report the innermost header's offsets") {
  const buf f = eth(0x0800, ipv4(c4, d4, 47, gre(0x2000, 0x0800, buf(4, 0), v4_tcp())));
  const auto fi = pk::parse_frame(f);
  REQUIRE(fi.outcome == frame_outcome::ok);
  CHECK(fi.l3_offset == 14 + 20 + 8);
  CHECK(fi.outer_l3_offset == 14);
  CHECK(fi.l4_offset == 14 + 20 + 8 + 20);
}

TEST_CASE("frame: UDP tunnels report the innermost offsets and keep the outer frame") {
  const buf inner = eth(0x0800, v4_tcp());
  const buf f = in_vxlan(42, inner);
  const auto fi = pk::parse_frame(f);
  REQUIRE(fi.outcome == frame_outcome::ok);
  CHECK(fi.outer_l3_offset == 14);
  CHECK(fi.l3_offset == 14 + 20 + 8 + 8 + 14);
  CHECK(fi.l4_offset == fi.l3_offset + 20);
  CHECK(pk::l4_checksum_ok(f, fi));  // the inner segment's checksum, inner pseudo-header

  const buf optional = gtpu_optional({ext_of(0x85), ext_of(0x40, 2)});
  const buf g = in_gtpu(9, v4_tcp(), 0x36, optional);
  const auto gi = pk::parse_frame(g);
  REQUIRE(gi.outcome == frame_outcome::ok);
  CHECK(gi.l3_offset == 14 + 20 + 8 + 8 + optional.size());
  CHECK(pk::as_chars(gi.payload(g)) == "hello");
}

// A tunnel header cut short inside a datagram whose own lengths agree (a short datagram, not a
// short frame): never taken for the inner flow. Below the fixed header it is plain UDP; past it,
// the tunnel's length fields or the inner headers say the rest is missing.
TEST_CASE("frame: every cut of a UDP tunnel's payload inside a consistent datagram") {
  struct row {
    const char* description;
    std::uint16_t port;
    buf payload;
    std::size_t fixed;  // below this many bytes it is not a tunnel
  };
  const row rows[] = {
      {"VXLAN", 4789, vxlan(1, eth_tagged({{0x8100, 3}}, 0x0800, v4_tcp())), 8},
      {"GTP-U", 2152, gtpu(2, v4_tcp()), 8},
      {"GTP-U with extension headers", 2152,
       gtpu(3, v6_udp(), 0x37, 0xff, gtpu_optional({ext_of(0x85), ext_of(0x40, 2)})), 8},
      {"Geneve", 6081, geneve(4, 0x6558, eth(0x86dd, v6_tcp()), buf(12, 1)), 8},
  };
  for (const auto& r : rows) {
    CAPTURE(r.description);
    for (std::size_t n = 0; n < r.payload.size(); ++n) {
      CAPTURE(n);
      const buf f = over_udp(r.port, slice(r.payload, 0, n));
      const auto fi = pk::parse_frame(f);
      check_bounds(fi, f.size());
      if (n < r.fixed) {
        CHECK(fi.outcome == frame_outcome::ok);
        CHECK(fi.encap == 0);
        CHECK(fi.dst_port == r.port);
        CHECK(fi.payload_length == n);
      } else {
        CHECK(fi.outcome != frame_outcome::ok);
        CHECK(fi.encap != 0);
      }
    }
    CHECK(pk::parse_frame(over_udp(r.port, r.payload)).outcome == frame_outcome::ok);
  }
}

TEST_CASE("frame: malformed and unsupported frames") {
  for (const auto& c : bad_cases()) {
    CAPTURE(c.description);
    const auto fi = pk::parse_frame(c.frame);
    CHECK(pk::to_string(fi.outcome) == std::string(pk::to_string(c.outcome)));
    check_bounds(fi, c.frame.size());
  }
}

TEST_CASE("frame: IP fields are filled when L4 is not reached") {
  const auto fi =
      pk::parse_frame(eth(0x0800, ipv4(a4, b4, 6, tcp(1, 2, hello), {.total_length = 1500})));
  CHECK(fi.outcome == frame_outcome::truncated);
  CHECK(fi.src == a4);
  CHECK(fi.dst == b4);
  CHECK(fi.l3_length == 20 + 20 + 5);  // clamped to the frame
}

TEST_CASE("frame: every truncation of every valid frame gives a typed outcome") {
  for (const auto& c : all_valid_cases()) {
    CAPTURE(c.description);
    for (std::size_t n = 0; n < c.frame.size(); ++n) {
      CAPTURE(n);
      const buf cut(c.frame.begin(), c.frame.begin() + static_cast<std::ptrdiff_t>(n));
      const auto fi = pk::parse_frame(cut);  // exact-size copy: ASan sees any over-read
      check_bounds(fi, n);
      // A cut inside the headers is never taken for a whole datagram.
      if (n < std::size_t{14} + 20) CHECK(fi.outcome != frame_outcome::ok);
    }
  }
}

TEST_CASE("frame: every single-byte corruption gives a typed outcome") {
  for (const auto& c : all_valid_cases()) {
    CAPTURE(c.description);
    for (std::size_t i = 0; i < c.frame.size() && i < 160; ++i) {
      for (std::uint8_t v : {0x00, 0x01, 0x0f, 0x45, 0x60, 0x80, 0xff}) {
        buf f = c.frame;
        f[i] = v;
        check_bounds(pk::parse_frame(f), f.size());
      }
    }
  }
}

TEST_CASE("frame: pseudo-random garbage behind each ethertype") {
  std::uint32_t x = 12345;
  auto rnd = [&x] {
    x = x * 1664525u + 1013904223u;
    return x >> 8;
  };
  const std::uint16_t types[] = {0x0800, 0x86dd, 0x8100, 0x88a8, 0x9100,
                                 0x8847, 0x8848, 0x8864, 0x0806, 0x1234};
  for (int i = 0; i < 20000; ++i) {
    buf body(rnd() % 200);
    for (auto& b : body) b = static_cast<std::uint8_t>(rnd());
    if (!body.empty() && (rnd() & 1)) body[0] = static_cast<std::uint8_t>(0x40 | (rnd() & 0x2f));
    const buf f = eth(types[rnd() % std::size(types)], body);
    check_bounds(pk::parse_frame(f), f.size());
    check_bounds(pk::parse_ip(body), body.size());
  }
}

TEST_CASE("parse_ip: offsets are relative to the IP header") {
  const buf d4tcp = v4_tcp();
  auto fi = pk::parse_ip(d4tcp);
  REQUIRE(fi.outcome == frame_outcome::ok);
  CHECK(fi.l3_offset == 0);
  CHECK(fi.l4_offset == 20);
  CHECK(fi.payload_offset == 40);
  CHECK(fi.dst_port == 443);
  CHECK(pk::l4_checksum_ok(d4tcp, fi));

  const buf d6udp = v6_udp();
  fi = pk::parse_ip(d6udp);
  REQUIRE(fi.outcome == frame_outcome::ok);
  CHECK(fi.ip_version == 6);
  CHECK(fi.l4_offset == 40);
  CHECK(pk::as_chars(fi.payload(d6udp)) == "hello");

  // A reassembled outer datagram (what the worker hands over) is decapsulated here too.
  const buf tunnelled_datagram = ipv4(c4, d4, 17, udp(2152, 2152, gtpu(0x99, v6_tcp())));
  fi = pk::parse_ip(tunnelled_datagram);
  REQUIRE(fi.outcome == frame_outcome::ok);
  CHECK(fi.encap == pk::encap_gtpu);
  CHECK(fi.tunnel_id == 0x99);
  CHECK(fi.src == a6);
  CHECK(fi.dst_port == 443);
  CHECK(fi.l3_offset == 20 + 8 + 8);
  CHECK(pk::as_chars(fi.payload(tunnelled_datagram)) == "hello");

  CHECK(pk::parse_ip({}).outcome == frame_outcome::truncated);
  CHECK(pk::parse_ip(buf(40, 0x50)).outcome == frame_outcome::bad_ipv4);
  CHECK(pk::parse_ip(ipv4(c4, d4, 41, v6_tcp())).outcome == frame_outcome::ok);
}

TEST_CASE("l4_checksum_ok") {
  struct row {
    const char* description;
    buf frame;
    bool ok;
  };
  auto corrupt = [](buf f) {
    f[f.size() - 1] ^= 0x01;  // last payload byte
    return f;
  };
  buf v6_zero = eth(0x86dd, ipv6(a6, b6, 17, {}, udp(5353, 53, hello), 17, false));
  buf v4_zero = eth(0x0800, ipv4(a4, b4, 17, udp(5353, 53, hello)));
  set16(v4_zero, 14 + 20 + 6, 0);
  const row rows[] = {
      {"TCP v4", eth(0x0800, v4_tcp()), true},
      {"TCP v4 corrupted", corrupt(eth(0x0800, v4_tcp())), false},
      {"TCP v4 with options and padding",
       pad_to(eth(0x0800,
                  ipv4(a4, b4, 6, tcp(1, 2, {}, pk::tcp_syn, buf(4, 1)), {.options = buf(4, 1)})),
              64),
       true},
      {"UDP v6", eth(0x86dd, v6_udp()), true},
      {"UDP v6 corrupted", corrupt(eth(0x86dd, v6_udp())), false},
      {"UDP v6 odd length", eth(0x86dd, ipv6(a6, b6, 17, {}, udp(1, 2, text("abc")), 17)), true},
      {"UDP v6 checksum 0 is invalid", v6_zero, false},
      {"UDP v4 checksum 0 is not computed", v4_zero, true},
      {"UDP v4", eth(0x0800, v4_udp()), true},
      {"TCP v6 with extension headers",
       eth(0x86dd, ipv6(a6, b6, 0, opts_header(6), tcp(1, 2, hello), 6)), true},
      {"TCP in GRE (inner pseudo-header)",
       eth(0x0800, ipv4(c4, d4, 47, gre(0, 0x0800, {}, v4_tcp()))), true},
      {"fragment is never verified",
       eth(0x0800, ipv4(a4, b4, 17, udp(1, 2, hello), {.frag = 0x2000})), false},
      {"not L4", eth(0x0800, ipv4(a4, b4, 1, buf(8, 0))), false},
  };
  for (const auto& r : rows) {
    CAPTURE(r.description);
    const auto fi = pk::parse_frame(r.frame);
    CHECK(pk::l4_checksum_ok(r.frame, fi) == r.ok);
  }
  // A frame_info that does not fit the buffer it is paired with is refused, not over-read.
  const buf f = eth(0x0800, v4_tcp());
  const auto fi = pk::parse_frame(f);
  CHECK_FALSE(pk::l4_checksum_ok(pk::bytes(f).first(f.size() - 1), fi));
}

TEST_CASE("frame_outcome names") {
  CHECK(std::string(pk::to_string(frame_outcome::ok)) == "ok");
  CHECK(std::string(pk::to_string(frame_outcome::too_deep)) == "too_deep");
  for (int i = 0; i < static_cast<int>(frame_outcome::count); ++i) {
    CHECK(std::string(pk::to_string(static_cast<frame_outcome>(i))) != "?");
  }
}
