// ICMP / ICMPv6 reader: which messages are errors, the quoted datagram's addresses and ports
// (whole, cut to IP header + 8 bytes, cut shorter), and the hostile quotes that must not be read.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "dataplane/packet/frame.hpp"
#include "dataplane/packet/icmp.hpp"
#include "tests/unit/support/packet_builder.hpp"

using namespace sluice;
using namespace sluice::test;
using packet::icmp_outcome;

namespace {

const packet::ip_address client4 = v4(10, 0, 0, 1);
const packet::ip_address server4 = v4(149, 154, 167, 91);
const packet::ip_address router4 = v4(192, 0, 2, 1);
const packet::ip_address client6 = v6(0x2001, 1);
const packet::ip_address server6 = v6(0x2001, 0x67c);
const packet::ip_address router6 = v6(0x2001, 0xfe);

// The ICMP message of an IP packet built by icmp_packet, found through the frame parser (as the
// worker finds it).
packet::icmp_info read(const buf& ip_packet) {
  const buf frame = eth_ip(ip_packet);
  const auto fi = packet::parse_frame(frame);
  REQUIRE(fi.outcome == packet::frame_outcome::other_l4);
  const std::size_t end = std::size_t{fi.l3_offset} + fi.l3_length;
  REQUIRE(fi.l4_offset <= end);
  return packet::parse_icmp(packet::bytes(frame).subspan(fi.l4_offset, end - fi.l4_offset),
                            fi.ip_version);
}

buf syn4() { return ipv4(client4, server4, 6, tcp(40000, 443, {}, packet::tcp_syn)); }
buf syn6() { return ipv6(client6, server6, 6, {}, tcp(40000, 443, {}, packet::tcp_syn), 6); }

}  // namespace

TEST_CASE("ICMP: error types per version") {
  for (std::uint8_t t : {3, 4, 5, 11, 12}) CHECK(packet::icmp_is_error(4, t));
  for (std::uint8_t t : {0, 8, 13, 14, 1, 2}) CHECK_FALSE(packet::icmp_is_error(4, t));
  for (std::uint8_t t : {1, 2, 3, 4}) CHECK(packet::icmp_is_error(6, t));
  for (std::uint8_t t : {0, 128, 129, 133, 134, 135, 136, 137, 143}) {
    CHECK_FALSE(packet::icmp_is_error(6, t));
  }
  for (std::uint8_t t : {133, 134, 135, 136, 137}) CHECK(packet::icmpv6_is_neighbour_discovery(t));
  for (std::uint8_t t : {1, 128, 130, 138, 143}) {
    CHECK_FALSE(packet::icmpv6_is_neighbour_discovery(t));
  }
}

TEST_CASE("ICMP: the frame parser says where an ICMP message starts (other_l4)") {
  // IPv6 with a hop-by-hop header before ICMPv6 (MLD reports look like this).
  const buf m{143, 0, 0, 0, 0, 0, 0, 0};
  const buf frame = eth_ip(ipv6(client6, router6, 0, opts_header(58), m, 58));
  const auto fi = packet::parse_frame(frame);
  REQUIRE(fi.outcome == packet::frame_outcome::other_l4);
  CHECK(fi.l4_proto == 58);
  CHECK(fi.l4_offset == 14 + 40 + 8);
  const buf frame4 = eth_ip(icmp_echo(client4, server4));
  const auto fi4 = packet::parse_frame(frame4);
  CHECK(fi4.l4_offset == 14 + 20);
}

TEST_CASE("ICMP: quoted datagrams, whole and cut") {
  const buf udp4 = ipv4(client4, server4, 17, udp(5353, 53, dns_message({"t.me"})));
  v4_opts opts;
  opts.options = {1, 1, 1, 0};  // NOP NOP NOP EOL: a 24-byte header
  const buf opt4 = ipv4(client4, server4, 6, tcp(40001, 80, {}, packet::tcp_syn), opts);
  v4_opts later;
  later.frag = 185;
  const buf frag4 = ipv4(client4, server4, 17, buf(64, 1), later);
  const buf ext6 = ipv6(client6, server6, 60, opts_header(17), udp(40002, 443, buf(20, 2)), 17);
  const buf frag6_later =
      ipv6(client6, server6, 44, frag6(17, 1280, false, 9), buf(40, 3), 17, false);
  const buf echo4 = icmp_echo(client4, server4);
  struct row {
    const char* desc;
    buf packet;
    icmp_outcome outcome;
    std::uint8_t proto;
    bool ports;
    std::uint16_t sport;
    std::uint16_t dport;
  };
  const row rows[] = {
      {"v4 port unreachable, IP + 8", icmp_error(router4, client4, 3, 3, udp4, 28),
       icmp_outcome::quoted, 17, true, 5353, 53},
      {"v4 time exceeded, whole datagram", icmp_error(router4, client4, 11, 0, udp4, 1000),
       icmp_outcome::quoted, 17, true, 5353, 53},
      {"v4 frag needed (MTU in rest), TCP", icmp_error(router4, client4, 3, 4, syn4(), 28, 1400),
       icmp_outcome::quoted, 6, true, 40000, 443},
      {"v4 quoted header with options", icmp_error(router4, client4, 12, 0, opt4, 32),
       icmp_outcome::quoted, 6, true, 40001, 80},
      {"v4 quoted later fragment: no ports", icmp_error(router4, client4, 11, 1, frag4, 28),
       icmp_outcome::quoted, 17, false, 0, 0},
      {"v4 quoted echo request (traceroute)", icmp_error(router4, client4, 11, 0, echo4, 28),
       icmp_outcome::quoted, 1, false, 0, 0},
      {"v6 packet too big", icmp_error(router6, client6, 2, 0, syn6(), 1232, 1280),
       icmp_outcome::quoted, 6, true, 40000, 443},
      {"v6 dest unreachable, IP + 8", icmp_error(router6, client6, 1, 4, syn6(), 48),
       icmp_outcome::quoted, 6, true, 40000, 443},
      {"v6 quoted extension header", icmp_error(router6, client6, 3, 0, ext6, 60),
       icmp_outcome::quoted, 17, true, 40002, 443},
      {"v6 quoted later fragment: no ports", icmp_error(router6, client6, 4, 0, frag6_later, 56),
       icmp_outcome::quoted, 17, false, 0, 0},
  };
  for (const row& r : rows) {
    CAPTURE(r.desc);
    const auto info = read(r.packet);
    CHECK(info.error);
    REQUIRE(info.outcome == r.outcome);
    const bool six = info.quoted.ip_version == 6;
    CHECK(info.quoted.src == (six ? client6 : client4));
    CHECK(info.quoted.dst == (six ? server6 : server4));
    CHECK(info.quoted.l4_proto == r.proto);
    CHECK(info.quoted.has_ports == r.ports);
    CHECK(info.quoted.src_port == r.sport);
    CHECK(info.quoted.dst_port == r.dport);
  }
}

TEST_CASE("ICMP: informational messages quote nothing") {
  const auto echo = read(icmp_echo(client4, server4));
  CHECK(echo.outcome == icmp_outcome::not_error);
  CHECK(echo.type == 8);
  CHECK_FALSE(echo.error);
  const auto echo6 = read(icmp_echo(client6, server6));
  CHECK(echo6.outcome == icmp_outcome::not_error);
  CHECK(echo6.type == 128);
  // Router advertisement, link-local to all-nodes.
  packet::ip_address ll = v6(0xfe80, 1);
  packet::ip_address all = v6(0xff02, 1);
  const auto ra = read(icmp_packet(ll, all, 134, 0, buf(8, 0)));
  CHECK(ra.outcome == icmp_outcome::not_error);
  CHECK(ra.type == 134);
}

TEST_CASE("ICMP: hostile and cut quotes are not read") {
  const buf udp4 = ipv4(client4, server4, 17, udp(5353, 53, dns_message({"t.me"})));
  buf bad_version = udp4;
  bad_version[0] = 0x55;
  buf bad_ihl = udp4;
  bad_ihl[0] = 0x43;
  buf short_total = udp4;
  short_total[2] = 0;
  short_total[3] = 12;  // total length below the header length
  buf long_ihl = ipv4(client4, server4, 17, udp(5353, 53, buf(100, 0)));
  long_ihl[0] = 0x4f;  // 60-byte header (the datagram is longer), only 28 bytes quoted
  buf zero_payload6 = syn6();
  zero_payload6[4] = 0;
  zero_payload6[5] = 0;
  // A v6 quote whose extension header claims more bytes than were quoted.
  buf long_ext6 = ipv6(client6, server6, 60, buf{17, 30, 1, 4, 0, 0, 0, 0}, buf(8, 0), 17, false);
  // Nine hop-by-hop-like headers: past the extension limit.
  buf chain;
  for (int i = 0; i < 9; ++i) append(chain, opts_header(60));
  const buf deep6 = ipv6(client6, server6, 60, chain, udp(1, 2, {}), 17, false);
  const buf nested4 = icmp_error(router4, client4, 3, 3, udp4, 28);
  const buf nested6 = icmp_error(router6, client6, 1, 0, syn6(), 48);
  struct row {
    const char* desc;
    buf packet;
    icmp_outcome outcome;
  };
  const row rows[] = {
      {"v4 header only, no quote", icmp_packet(router4, client4, 3, 3, {}),
       icmp_outcome::truncated},
      {"v4 quote shorter than an IP header", icmp_error(router4, client4, 3, 3, udp4, 19),
       icmp_outcome::truncated},
      {"v4 quote without its ports", icmp_error(router4, client4, 3, 3, udp4, 23),
       icmp_outcome::truncated},
      {"v4 quote of a v6 datagram", icmp_error(router4, client4, 3, 3, syn6(), 48),
       icmp_outcome::bad_quote},
      {"v4 quoted version 5", icmp_error(router4, client4, 3, 3, bad_version, 28),
       icmp_outcome::bad_quote},
      {"v4 quoted IHL 3", icmp_error(router4, client4, 3, 3, bad_ihl, 28), icmp_outcome::bad_quote},
      {"v4 quoted total below IHL", icmp_error(router4, client4, 3, 3, short_total, 28),
       icmp_outcome::bad_quote},
      {"v4 quoted IHL past the quote", icmp_error(router4, client4, 3, 3, long_ihl, 28),
       icmp_outcome::truncated},
      {"v4 error quoting an error", icmp_error(router4, client4, 11, 0, nested4, 28),
       icmp_outcome::nested_error},
      {"v6 quote shorter than an IP header", icmp_error(router6, client6, 1, 0, syn6(), 39),
       icmp_outcome::truncated},
      {"v6 quote of a v4 datagram", icmp_error(router6, client6, 1, 0, udp4, 28),
       icmp_outcome::bad_quote},
      {"v6 quoted payload length 0", icmp_error(router6, client6, 1, 0, zero_payload6, 48),
       icmp_outcome::bad_quote},
      {"v6 quoted extension past the quote", icmp_error(router6, client6, 1, 0, long_ext6, 56),
       icmp_outcome::truncated},
      {"v6 quoted extension chain too long", icmp_error(router6, client6, 1, 0, deep6, 200),
       icmp_outcome::bad_quote},
      {"v6 error quoting an error", icmp_error(router6, client6, 3, 0, nested6, 200),
       icmp_outcome::nested_error},
  };
  for (const row& r : rows) {
    CAPTURE(r.desc);
    const auto info = read(r.packet);
    CHECK(info.error);
    CHECK(info.outcome == r.outcome);
  }
  // Bare bytes: shorter than an ICMP header, or an unknown IP version.
  const buf three{3, 3, 0};
  CHECK(packet::parse_icmp(three, 4).outcome == icmp_outcome::truncated);
  const buf six_bytes{3, 3, 0, 0, 0, 0};
  CHECK(packet::parse_icmp(six_bytes, 4).outcome == icmp_outcome::truncated);
  const buf echo{8, 0, 0, 0, 0, 0, 0, 0};
  CHECK(packet::parse_icmp(echo, 5).outcome == icmp_outcome::truncated);
  CHECK(packet::parse_icmp({}, 6).outcome == icmp_outcome::truncated);
}
