// Tables of originals (L2 prefixes x IP versions x TCP segment kinds) answered by the reset and
// notice builders; every answer is re-parsed by the frame parser and checked field by field.

#include "dataplane/engine/response.hpp"

#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "dataplane/packet/dns.hpp"
#include "tests/unit/support/packet_builder.hpp"

namespace {

namespace pk = sluice::packet;
namespace en = sluice::engine;
using namespace sluice::test;

const pk::ip_address client4 = v4(10, 0, 0, 1);
const pk::ip_address server4 = v4(149, 154, 167, 99);
const pk::ip_address client6 = v6(0x2001, 0x1);
const pk::ip_address server6 = v6(0x2001, 0x67c);
const pk::ip_address tun_a = v4(198, 51, 100, 1);
const pk::ip_address tun_b = v4(203, 0, 113, 9);

constexpr std::uint16_t client_port = 51000;
constexpr std::uint16_t server_port = 80;

// ---- L2 prefixes ------------------------------------------------------------------------------

struct l2_kind {
  const char* name;
  std::function<buf(const buf& ip_packet)> wrap;
  std::uint16_t encap;
};

std::uint16_t ethertype(const buf& ip_packet) { return (ip_packet[0] >> 4) == 6 ? 0x86dd : 0x0800; }
std::uint16_t ppp_proto(const buf& ip_packet) { return (ip_packet[0] >> 4) == 6 ? 0x0057 : 0x0021; }

const std::vector<l2_kind>& l2_kinds() {
  static const std::vector<l2_kind> kinds{
      {"plain Ethernet", [](const buf& p) { return eth_ip(p); }, 0},
      {"VLAN",
       [](const buf& p) {
         return eth_tagged({{0x8100, 100}}, ethertype(p), p);
       },
       pk::encap_vlan},
      {"QinQ",
       [](const buf& p) {
         return eth_tagged({{0x88a8, 200}, {0x8100, 100}}, ethertype(p), p);
       },
       pk::encap_vlan | pk::encap_qinq},
      {"MPLS x2",
       [](const buf& p) {
         return eth(0x8847, mpls({16, 17}, p));
       },
       pk::encap_mpls},
      {"PPPoE", [](const buf& p) { return eth(0x8864, pppoe(ppp_proto(p), p)); }, pk::encap_pppoe},
      {"QinQ + PPPoE",
       [](const buf& p) {
         return eth_tagged({{0x88a8, 9}, {0x8100, 10}}, 0x8864, pppoe(ppp_proto(p), p));
       },
       pk::encap_vlan | pk::encap_qinq | pk::encap_pppoe},
  };
  return kinds;
}

// ---- originals ----------------------------------------------------------------------------------

struct segment_kind {
  const char* name;
  std::uint8_t flags;
  std::uint32_t seq;
  std::uint32_t ack;
  std::size_t payload;
  // Expected answers.
  std::uint32_t sender_seq, sender_ack;      // to_sender
  std::uint32_t receiver_seq, receiver_ack;  // to_receiver
  std::uint8_t receiver_flags;
};

constexpr std::uint8_t rst_ack = pk::tcp_rst | pk::tcp_ack;
const std::vector<segment_kind> segment_kinds{
    {"SYN", pk::tcp_syn, 1000, 0, 0, 0, 1001, 1001, 0, pk::tcp_rst},
    {"data", pk::tcp_psh | pk::tcp_ack, 5000, 9000, 100, 9000, 5100, 5100, 9000, rst_ack},
    {"FIN", pk::tcp_fin | pk::tcp_ack, 7000, 9000, 0, 9000, 7001, 7001, 9000, rst_ack},
    {"FIN with data", pk::tcp_fin | pk::tcp_psh | pk::tcp_ack, 7000, 9000, 10, 9000, 7011, 7011,
     9000, rst_ack},
    {"seq wraps", pk::tcp_psh | pk::tcp_ack, 0xfffffff0u, 1, 0x20, 1, 0x10, 0x10, 1, rst_ack},
};

buf tcp_packet(bool v6, const segment_kind& k, const buf& options = {}) {
  const buf seg =
      tcp(client_port, server_port, buf(k.payload, 'x'), k.flags, options, k.seq, k.ack);
  return v6 ? ip(client6, server6, 6, seg) : ip(client4, server4, 6, seg);
}

// ---- checks -------------------------------------------------------------------------------------

bool ipv4_header_ok(const buf& f, const pk::frame_info& fi) {
  return ref_checksum({}, slice(f, fi.l3_offset, fi.l3_offset + 20u)) == 0;
}

// Checks the L2 prefix of `answer` against the original's.
void check_l2(const buf& original, const pk::frame_info& ofi, const buf& answer,
              const pk::frame_info& afi, bool reverse) {
  REQUIRE(afi.l3_offset == ofi.l3_offset);
  if (reverse) {
    CHECK(slice(answer, 0, 6) == slice(original, 6, 12));
    CHECK(slice(answer, 6, 12) == slice(original, 0, 6));
  } else {
    CHECK(slice(answer, 0, 12) == slice(original, 0, 12));
  }
  const std::size_t l2 = ofi.l3_offset;
  if (ofi.encap & pk::encap_pppoe) {
    // Everything equal but the PPPoE length, which counts PPP protocol + IP datagram.
    CHECK(slice(answer, 12, l2 - 4) == slice(original, 12, l2 - 4));
    CHECK(pk::load_be16(answer.data() + l2 - 4) == afi.l3_length + 2u);
    CHECK(slice(answer, l2 - 2, l2) == slice(original, l2 - 2, l2));
  } else {
    CHECK(slice(answer, 12, l2) == slice(original, 12, l2));
  }
}

// Common to every answer: parses, right addresses, checksums, camouflage fields in range.
pk::frame_info check_answer(const buf& original, const buf& answer, bool reverse) {
  const pk::frame_info ofi = pk::parse_frame(original);
  const pk::frame_info afi = pk::parse_frame(answer);
  REQUIRE(afi.outcome == pk::frame_outcome::ok);
  CHECK(afi.encap == ofi.encap);
  CHECK(afi.l4_proto == 6);
  CHECK(afi.ip_version == ofi.ip_version);
  CHECK(std::size_t{afi.l3_offset} + afi.l3_length == answer.size());
  CHECK(afi.l4_offset == afi.l3_offset + (afi.ip_version == 4 ? 20 : 40));
  CHECK(afi.payload_offset == afi.l4_offset + 20);
  CHECK(pk::l4_checksum_ok(answer, afi));
  CHECK(afi.src == (reverse ? ofi.dst : ofi.src));
  CHECK(afi.dst == (reverse ? ofi.src : ofi.dst));
  CHECK(afi.src_port == (reverse ? ofi.dst_port : ofi.src_port));
  CHECK(afi.dst_port == (reverse ? ofi.src_port : ofi.dst_port));
  CHECK(afi.ttl >= en::response_ttl_min);
  CHECK(afi.ttl <= en::response_ttl_max);
  if (afi.ip_version == 4) {
    CHECK(ipv4_header_ok(answer, afi));
    CHECK(answer[afi.l3_offset + 6] == 0x40);  // DF, no fragment offset
    CHECK(answer[afi.l3_offset + 7] == 0);
    CHECK(!afi.is_fragment);
  }
  check_l2(original, ofi, answer, afi, reverse);
  return afi;
}

buf reset(const buf& original, en::reset_target t, en::response_entropy& e,
          std::size_t room = 256) {
  buf out(room, 0xee);
  const std::size_t n = en::build_tcp_reset(original, pk::parse_frame(original), t, e, out);
  out.resize(n);
  return out;
}

}  // namespace

TEST_CASE("TCP reset: every L2 prefix x IP version x segment kind, both directions") {
  en::response_entropy e{42};
  for (const auto& l2 : l2_kinds()) {
    for (bool v6 : {false, true}) {
      for (const auto& k : segment_kinds) {
        const buf original = l2.wrap(tcp_packet(v6, k));
        INFO(l2.name);
        CAPTURE(v6);
        INFO(k.name);
        REQUIRE(pk::parse_frame(original).outcome == pk::frame_outcome::ok);
        REQUIRE(pk::parse_frame(original).encap == l2.encap);

        const buf to_sender = reset(original, en::reset_target::to_sender, e);
        REQUIRE(!to_sender.empty());
        const pk::frame_info s = check_answer(original, to_sender, true);
        CHECK(s.tcp_seq == k.sender_seq);
        CHECK(s.tcp_ack == k.sender_ack);
        CHECK(s.tcp_flags == rst_ack);
        CHECK(s.tcp_window == 0);
        CHECK(s.payload_length == 0);

        const buf to_receiver = reset(original, en::reset_target::to_receiver, e);
        REQUIRE(!to_receiver.empty());
        const pk::frame_info r = check_answer(original, to_receiver, false);
        CHECK(r.tcp_seq == k.receiver_seq);
        CHECK(r.tcp_ack == k.receiver_ack);
        CHECK(r.tcp_flags == k.receiver_flags);
        CHECK(r.payload_length == 0);

        // In place of a dropped original, the receiver still expects the original's seq.
        const buf instead = reset(original, en::reset_target::to_receiver_instead, e);
        REQUIRE(!instead.empty());
        const pk::frame_info ri = check_answer(original, instead, false);
        CHECK(ri.tcp_seq == k.seq);
        CHECK(ri.tcp_ack == k.receiver_ack);
        CHECK(ri.tcp_flags == k.receiver_flags);
      }
    }
  }
}

TEST_CASE("TCP reset: IP options, IPv6 extension headers and TCP options are not reproduced") {
  en::response_entropy e{7};
  const segment_kind& k = segment_kinds[1];
  const buf seg = tcp(client_port, server_port, buf(k.payload, 'x'), k.flags,
                      {1, 1, 1, 0 /* NOP NOP NOP EOL */, 2, 4, 5, 0xb4, 1, 1, 1, 1}, k.seq, k.ack);
  struct row {
    const char* description;
    buf original;
  };
  const std::vector<row> rows{
      {"IPv4 with options", eth_ip(ipv4(client4, server4, 6, seg, {.options = {1, 1, 1, 0}}))},
      {"IPv6 hop-by-hop + destination options",
       eth_ip(ipv6(client6, server6, 0, cat({opts_header(60), opts_header(6)}), seg, 6))},
      {"IPv6 routing header", eth_ip(ipv6(client6, server6, 43, routing_header(6), seg, 6))},
      {"IPv6 atomic fragment header",
       eth_ip(ipv6(client6, server6, 44, frag6(6, 0, false, 77), seg, 6))},
  };
  for (const auto& r : rows) {
    INFO(r.description);
    REQUIRE(pk::parse_frame(r.original).outcome == pk::frame_outcome::ok);
    for (auto t : {en::reset_target::to_sender, en::reset_target::to_receiver}) {
      const buf answer = reset(r.original, t, e);
      REQUIRE(!answer.empty());
      const pk::frame_info a = check_answer(r.original, answer, t == en::reset_target::to_sender);
      CHECK(answer.size() == a.l3_offset + (a.ip_version == 4 ? 20u : 40u) + 20u);
      CHECK(a.tcp_seq == (t == en::reset_target::to_sender ? k.sender_seq : k.receiver_seq));
    }
  }
}

TEST_CASE("TCP reset: TTL, IP ID and flow label vary across calls and stay in range") {
  en::response_entropy e{1};
  const buf o4 = eth_ip(tcp_packet(false, segment_kinds[1]));
  const buf o6 = eth_ip(tcp_packet(true, segment_kinds[1]));
  std::set<int> ttls4, ttls6, ids, labels;
  for (int i = 0; i < 200; ++i) {
    const buf a4 = reset(o4, en::reset_target::to_sender, e);
    const buf a6 = reset(o6, en::reset_target::to_receiver, e);
    const pk::frame_info f4 = pk::parse_frame(a4);
    const pk::frame_info f6 = pk::parse_frame(a6);
    REQUIRE(f4.outcome == pk::frame_outcome::ok);
    REQUIRE(f6.outcome == pk::frame_outcome::ok);
    ttls4.insert(f4.ttl);
    ttls6.insert(f6.ttl);
    ids.insert(pk::load_be16(a4.data() + 14 + 4));
    labels.insert(static_cast<int>(pk::load_be32(a6.data() + 14) & 0xfffff));
  }
  CHECK(*ttls4.begin() >= en::response_ttl_min);
  CHECK(*ttls4.rbegin() <= en::response_ttl_max);
  CHECK(*ttls6.begin() >= en::response_ttl_min);
  CHECK(*ttls6.rbegin() <= en::response_ttl_max);
  CHECK(ttls4.size() >= 10);  // 17 values possible, 200 draws
  CHECK(ttls6.size() >= 10);
  CHECK(ids.size() >= 190);
  CHECK(labels.size() >= 190);

  // Same seed, same answers: the builders are deterministic given the entropy state.
  en::response_entropy x{99}, y{99};
  CHECK(reset(o4, en::reset_target::to_sender, x) == reset(o4, en::reset_target::to_sender, y));
  en::response_entropy zero{0};
  CHECK(zero.next() != 0);
}

TEST_CASE("TCP reset: originals that cannot be answered give 0") {
  en::response_entropy e{3};
  const segment_kind& k = segment_kinds[1];
  const buf seg = tcp(client_port, server_port, buf(k.payload, 'x'), k.flags, {}, k.seq, k.ack);
  const buf v4_tcp = ipv4(client4, server4, 6, seg);
  buf first_fragment = ipv4(client4, server4, 6, seg, {.frag = 0x2000});  // MF, offset 0
  struct row {
    const char* description;
    buf original;
  };
  const std::vector<row> rows{
      {"GRE tunnel", eth(0x0800, ipv4(tun_a, tun_b, 47, gre(0, 0x0800, {}, v4_tcp)))},
      {"IP-in-IP", eth(0x0800, ipv4(tun_a, tun_b, 4, v4_tcp))},
      {"IPv6-in-IPv4", eth(0x0800, ipv4(tun_a, tun_b, 41, tcp_packet(true, k)))},
      {"first fragment (TCP header complete)", eth_ip(first_fragment)},
      {"UDP", eth_ip(ipv4(client4, server4, 17, udp(5353, 53, text("hello"))))},
      {"truncated", slice(eth_ip(v4_tcp), 0, 30)},
      {"ICMP", eth_ip(ipv4(client4, server4, 1, buf(8, 0)))},
  };
  for (const auto& r : rows) {
    INFO(r.description);
    const pk::frame_info fi = pk::parse_frame(r.original);
    buf out(512);
    CHECK(en::build_tcp_reset(r.original, fi, en::reset_target::to_sender, e, out) == 0);
    CHECK(en::build_tcp_reset(r.original, fi, en::reset_target::to_receiver, e, out) == 0);
    CHECK(en::build_http_notice(r.original, fi, "law", "t.me", e, out) == 0);
  }
  // The fragment row really is the "parsed but fragmented" case.
  CHECK(pk::parse_frame(eth_ip(first_fragment)).outcome == pk::frame_outcome::ok);
  CHECK(pk::parse_frame(eth_ip(first_fragment)).is_fragment);
}

TEST_CASE("TCP reset: output buffer exactly large enough, one byte short") {
  en::response_entropy e{5};
  for (const auto& l2 : l2_kinds()) {
    for (bool v6 : {false, true}) {
      INFO(l2.name);
      CAPTURE(v6);
      const buf original = l2.wrap(tcp_packet(v6, segment_kinds[1]));
      const pk::frame_info fi = pk::parse_frame(original);
      const std::size_t need = fi.l3_offset + (v6 ? 40u : 20u) + 20u;
      buf exact(need);
      buf short_by_one(need - 1);
      CHECK(en::build_tcp_reset(original, fi, en::reset_target::to_sender, e, exact) == need);
      CHECK(en::build_tcp_reset(original, fi, en::reset_target::to_sender, e, short_by_one) == 0);
      CHECK(en::build_tcp_reset(original, fi, en::reset_target::to_receiver, e, short_by_one) == 0);
      CHECK(en::build_tcp_reset(original, fi, en::reset_target::to_sender, e, {}) == 0);
    }
  }
}

TEST_CASE("TCP reset: never from a group MAC address") {
  en::response_entropy e{5};
  buf original = eth_ip(tcp_packet(false, segment_kinds[1]));
  original[0] = 0xff;  // sent to broadcast: answering it would need a broadcast source MAC
  const pk::frame_info fi = pk::parse_frame(original);
  buf out(256);
  CHECK(en::build_tcp_reset(original, fi, en::reset_target::to_sender, e, out) == 0);
  CHECK(en::build_tcp_reset(original, fi, en::reset_target::to_receiver, e, out) != 0);
}

// ---- HTTP notice --------------------------------------------------------------------------------

namespace {

struct http_answer {
  pk::frame_info fi;
  std::string payload;
  std::string headers;  // up to and including the blank line
  std::string body;
};

http_answer notice(const buf& original, std::string_view legal, std::string_view name,
                   std::string_view url = {}) {
  en::response_entropy e{11};
  buf out(2048);
  const std::size_t n =
      en::build_http_notice(original, pk::parse_frame(original), legal, name, e, out, url);
  REQUIRE(n != 0);
  out.resize(n);
  http_answer a;
  a.fi = check_answer(original, out, true);
  a.payload = std::string(pk::as_chars(a.fi.payload(out)));
  const std::size_t end = a.payload.find("\r\n\r\n");
  REQUIRE(end != std::string::npos);
  a.headers = a.payload.substr(0, end + 4);
  a.body = a.payload.substr(end + 4);
  return a;
}

std::size_t content_length(const std::string& headers) {
  const std::string key = "\r\nContent-Length: ";
  const std::size_t at = headers.find(key);
  REQUIRE(at != std::string::npos);
  return std::stoul(headers.substr(at + key.size()));
}

// Structural UTF-8 check (lead byte and continuation count), independent of the builder's.
bool valid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = 0;
    if (c < 0x80) {
      n = 0;
    } else if (c >= 0xc2 && c <= 0xdf) {
      n = 1;
    } else if (c >= 0xe0 && c <= 0xef) {
      n = 2;
    } else if (c >= 0xf0 && c <= 0xf4) {
      n = 3;
    } else {
      return false;
    }
    if (s.size() - i <= n) return false;
    for (std::size_t k = 1; k <= n; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) return false;
    }
    i += n + 1;
  }
  return true;
}

bool has_control(std::string_view s) {
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if ((c < 0x20 && c != '\n') || c == 0x7f) return true;
  }
  return false;
}

const buf http_request_v4 =
    eth_tagged({{0x8100, 12}}, 0x0800,
               ipv4(client4, server4, 6,
                    tcp(client_port, server_port, http_get("t.me", "/durov"),
                        pk::tcp_psh | pk::tcp_ack, {}, 123456, 654321, 501)));
const buf http_request_v6 =
    eth(0x8864, pppoe(0x0057, ipv6(client6, server6, 6, {},
                                   tcp(client_port, server_port, http_get("telegram.org"),
                                       pk::tcp_psh | pk::tcp_ack, {}, 0xfffffff0u, 77, 4000),
                                   6)));

}  // namespace

TEST_CASE("HTTP notice: segment, status line, headers, Content-Length") {
  struct row {
    const char* description;
    const buf* original;
    std::uint32_t seq, ack;
    std::uint16_t window;
  };
  const std::size_t len4 = http_get("t.me", "/durov").size();
  const std::size_t len6 = http_get("telegram.org").size();
  const std::vector<row> rows{
      {"VLAN IPv4", &http_request_v4, 654321, static_cast<std::uint32_t>(123456 + len4), 501},
      {"PPPoE IPv6, seq wraps", &http_request_v6, 77,
       static_cast<std::uint32_t>(0xfffffff0u + len6), 4000},
  };
  for (const auto& r : rows) {
    INFO(r.description);
    const http_answer a = notice(*r.original, "Order 42-FZ of 2024-01-01", "t.me");
    CHECK(a.fi.tcp_flags == (pk::tcp_psh | pk::tcp_ack | pk::tcp_fin));
    CHECK(a.fi.tcp_seq == r.seq);
    CHECK(a.fi.tcp_ack == r.ack);
    CHECK(a.fi.tcp_window == r.window);
    CHECK(a.payload.size() <= en::notice_max_payload);
    CHECK(a.headers.rfind("HTTP/1.1 451 Unavailable For Legal Reasons\r\n", 0) == 0);
    CHECK(a.headers.find("\r\nContent-Type: text/html; charset=utf-8\r\n") != std::string::npos);
    CHECK(a.headers.find("\r\nConnection: close\r\n") != std::string::npos);
    CHECK(a.headers.find("\r\nCache-Control: no-store\r\n") != std::string::npos);
    CHECK(a.headers.find("Link:") == std::string::npos);
    CHECK(content_length(a.headers) == a.body.size());
    CHECK(a.body.find("<strong>t.me</strong>") != std::string::npos);
    CHECK(a.body.find("Legal basis: Order 42-FZ of 2024-01-01</p>") != std::string::npos);
    CHECK(a.body.rfind("<!DOCTYPE html>", 0) == 0);
    CHECK(a.body.find("</html>") != std::string::npos);
  }
}

TEST_CASE("HTTP notice: Link header only for a well-formed configured URL") {
  struct row {
    const char* description;
    std::string url;
    bool expect_link;
  };
  const std::vector<row> rows{
      {"none", "", false},
      {"https URL", "https://registry.example/orders/42", true},
      {"header injection", "https://x.example/\r\nSet-Cookie: a=b", false},
      {"closes the angle bracket", "https://x.example/>; rel=evil", false},
      {"space", "https://x.example/a b", false},
      {"too long", "https://x.example/" + std::string(600, 'a'), false},
  };
  for (const auto& r : rows) {
    INFO(r.description);
    const http_answer a = notice(http_request_v4, "Order 1", "t.me", r.url);
    if (r.expect_link) {
      CHECK(a.headers.find("\r\nLink: <" + r.url + ">; rel=\"blocked-by\"\r\n") !=
            std::string::npos);
    } else {
      CHECK(a.headers.find("Link:") == std::string::npos);
      CHECK(a.headers.find("Set-Cookie") == std::string::npos);
    }
    CHECK(content_length(a.headers) == a.body.size());
  }
}

TEST_CASE("HTTP notice: both inputs are HTML-escaped and sanitised") {
  struct row {
    const char* description;
    std::string legal;
    std::string name;
    std::string legal_out;
    std::string name_out;
  };
  const std::vector<row> rows{
      {"markup", "<script>&\"'", "<script>&\"'", "&lt;script&gt;&amp;&quot;&#39;",
       "&lt;script&gt;&amp;&quot;&#39;"},
      {"Cyrillic passes", "Приказ № 7", "т.рф", "Приказ № 7", "т.рф"},
      {"control characters", std::string("a\r\nb\0c", 6), "x\x1by\x7f", "a??b?c", "x?y?"},
      {"malformed UTF-8", "\xc3(\xe2\x82\xf0\x9f\x98", "\xc0\xaf\xed\xa0\x80", "?(?????", "?????"},
      {"4-byte UTF-8", "\xf0\x9f\x98\x80", "ok", "\xf0\x9f\x98\x80", "ok"},
  };
  for (const auto& r : rows) {
    INFO(r.description);
    const http_answer a = notice(http_request_v4, r.legal, r.name);
    CHECK(a.body.find("<strong>" + r.name_out + "</strong>") != std::string::npos);
    CHECK(a.body.find("Legal basis: " + r.legal_out + "</p>") != std::string::npos);
    CHECK(a.body.find("<script") == std::string::npos);
    CHECK(valid_utf8(a.payload));
    CHECK(!has_control(a.body));
    CHECK(content_length(a.headers) == a.body.size());
  }
}

TEST_CASE("HTTP notice: long inputs are cut at a character boundary, segment <= 1400 bytes") {
  struct row {
    const char* description;
    std::string legal;
    std::string name;
    bool legal_cut;
    bool name_cut;
  };
  std::string cyrillic;
  for (int i = 0; i < 1000; ++i) cyrillic += "Ж";
  const std::vector<row> rows{
      {"long ASCII legal basis", std::string(5000, 'A'), "t.me", true, false},
      {"legal basis of entities", std::string(3000, '&'), "t.me", true, false},
      {"long Cyrillic legal basis", cyrillic, "t.me", true, false},
      {"long name too", std::string(3000, 'L'), std::string(3000, '<'), true, true},
      {"long name, short legal basis", "Order 1", std::string(600, 'n'), false, true},
      {"fits exactly enough", std::string(400, 'A'), "t.me", false, false},
  };
  for (const auto& r : rows) {
    INFO(r.description);
    const http_answer a = notice(http_request_v4, r.legal, r.name, "https://registry.example/x");
    CHECK(a.payload.size() <= en::notice_max_payload);
    CHECK(content_length(a.headers) == a.body.size());
    CHECK(valid_utf8(a.payload));
    CHECK(a.body.find("</html>\n") == a.body.size() - 8);
    CHECK((a.body.find("...</p>") != std::string::npos) == r.legal_cut);
    CHECK((a.body.find("...</strong>") != std::string::npos) == r.name_cut);
    // No entity is split: every '&' in the body starts a whole entity.
    for (std::size_t at = a.body.find('&'); at != std::string::npos;
         at = a.body.find('&', at + 1)) {
      const std::size_t semi = a.body.find(';', at);
      REQUIRE(semi != std::string::npos);
      CHECK(semi - at <= 5);
    }
    if (r.legal_cut) CHECK(a.payload.size() >= en::notice_max_payload - 8);
  }
}

TEST_CASE("HTTP notice: unanswerable originals and small buffers give 0") {
  en::response_entropy e{13};
  const buf syn =
      eth_ip(ipv4(client4, server4, 6, tcp(client_port, server_port, {}, pk::tcp_syn, {}, 1, 0)));
  buf out(2048);
  CHECK(en::build_http_notice(syn, pk::parse_frame(syn), "law", "t.me", e, out) == 0);

  const pk::frame_info fi = pk::parse_frame(http_request_v4);
  const std::size_t n = en::build_http_notice(http_request_v4, fi, "law", "t.me", e, out);
  REQUIRE(n != 0);
  buf exact(n);
  buf short_by_one(n - 1);
  CHECK(en::build_http_notice(http_request_v4, fi, "law", "t.me", e, exact) == n);
  CHECK(en::build_http_notice(http_request_v4, fi, "law", "t.me", e, short_by_one) == 0);
}

// ---- DNS answer -----------------------------------------------------------------------------

namespace {

buf dns_query_packet(bool v6, const buf& message, std::uint16_t sport = 40123) {
  const buf dgram = udp(sport, 53, message);
  return v6 ? ip(client6, server6, 17, dgram) : ip(client4, server4, 17, dgram);
}

buf dns_answer(const buf& original, en::dns_rcode rcode, en::response_entropy& e,
               std::size_t room = 512) {
  buf out(room, 0xee);
  const std::size_t n = en::build_dns_answer(original, pk::parse_frame(original), rcode, e, out);
  out.resize(n);
  return out;
}

}  // namespace

TEST_CASE("DNS answer: every L2 prefix x IP version, toward the client, question echoed") {
  en::response_entropy e{11};
  for (const auto& l2 : l2_kinds()) {
    for (bool v6 : {false, true}) {
      INFO(l2.name);
      CAPTURE(v6);
      buf query = dns_message({"web.telegram.org"}, false, 0xbeef);  // RD set
      query[3] |= 0x10;                                               // CD: echoed
      const buf original = l2.wrap(dns_query_packet(v6, query));
      const pk::frame_info ofi = pk::parse_frame(original);
      const buf answer = dns_answer(original, en::dns_rcode::nxdomain, e);
      REQUIRE(!answer.empty());
      const pk::frame_info afi = pk::parse_frame(answer);
      REQUIRE(afi.outcome == pk::frame_outcome::ok);
      CHECK(afi.l4_proto == 17);
      CHECK(afi.encap == ofi.encap);
      CHECK(std::size_t{afi.l3_offset} + afi.l3_length == answer.size());
      CHECK(pk::l4_checksum_ok(answer, afi));
      CHECK(afi.src == ofi.dst);
      CHECK(afi.dst == ofi.src);
      CHECK(afi.src_port == 53);
      CHECK(afi.dst_port == 40123);
      CHECK(afi.ttl >= en::response_ttl_min);
      CHECK(afi.ttl <= en::response_ttl_max);
      if (!v6) CHECK(ipv4_header_ok(answer, afi));
      check_l2(original, ofi, answer, afi, true);

      const buf msg(answer.begin() + afi.payload_offset, answer.end());
      REQUIRE(msg.size() == query.size());  // header + the one question, nothing more
      CHECK(pk::load_be16(msg.data()) == 0xbeef);
      // QR, opcode 0, AA 0, TC 0, RD (as asked); RA, Z 0, AD 0, CD (as asked), RCODE 3.
      CHECK(msg[2] == 0x81);
      CHECK(msg[3] == 0x93);
      CHECK(pk::load_be16(msg.data() + 4) == 1);
      CHECK(pk::load_be16(msg.data() + 6) == 0);
      CHECK(pk::load_be16(msg.data() + 8) == 0);
      CHECK(pk::load_be16(msg.data() + 10) == 0);
      CHECK(slice(msg, 12, msg.size()) == slice(query, 12, query.size()));
      pk::dns_questions q;
      REQUIRE(pk::parse_dns_message(msg, q) == pk::dns_outcome::question);
      CHECK(q.is_response);
      CHECK(q.names[0].view() == "web.telegram.org");
    }
  }
}

TEST_CASE("DNS answer: REFUSED, and a query without RD gets none back") {
  en::response_entropy e{12};
  buf query = dns_message({"t.me"}, false, 7);
  query[2] = 0x00;  // RD clear
  const buf answer = dns_answer(eth_ip(dns_query_packet(false, query)), en::dns_rcode::refused, e);
  REQUIRE(!answer.empty());
  const pk::frame_info afi = pk::parse_frame(answer);
  CHECK(answer[afi.payload_offset + 2] == 0x80);
  CHECK(answer[afi.payload_offset + 3] == 0x85);
}

TEST_CASE("DNS answer: what is not one plain standard query gives 0") {
  en::response_entropy e{13};
  const buf one = dns_message({"t.me"});
  buf response = dns_message({"t.me"}, true);
  buf notify = one;
  notify[2] |= 0x20;  // opcode 4 (NOTIFY)
  buf compressed = one;
  compressed[12] = 0xc0;  // the question's name as a pointer
  buf long_label = one;
  long_label[12] = 64;
  const buf no_end = slice(one, 0, one.size() - 5);  // the root label and QTYPE/QCLASS cut off
  struct row {
    const char* what;
    buf original;
  };
  const std::vector<row> rows{
      {"a response", eth_ip(dns_query_packet(false, response))},
      {"opcode NOTIFY", eth_ip(dns_query_packet(false, notify))},
      {"two questions", eth_ip(dns_query_packet(false, dns_message({"t.me", "a.org"})))},
      {"no question", eth_ip(dns_query_packet(false, dns_message({})))},
      {"compressed question", eth_ip(dns_query_packet(false, compressed))},
      {"label over 63 bytes", eth_ip(dns_query_packet(false, long_label))},
      {"question cut short", eth_ip(dns_query_packet(false, no_end))},
      {"header only", eth_ip(dns_query_packet(false, slice(one, 0, 12)))},
      {"shorter than a header", eth_ip(dns_query_packet(false, slice(one, 0, 11)))},
      {"TCP", eth_ip(ipv4(client4, server4, 6, tcp(40123, 53, one, pk::tcp_ack, {}, 1, 1)))},
      {"GRE tunnel", eth(0x0800, ipv4(tun_a, tun_b, 47,
                                      gre(0, 0x0800, {}, dns_query_packet(false, one))))},
      {"to a broadcast MAC", [&] {
         buf f = eth_ip(dns_query_packet(false, one));
         f[0] = 0xff;
         return f;
       }()},
  };
  for (const auto& r : rows) {
    INFO(r.what);
    buf out(512);
    CHECK(en::build_dns_answer(r.original, pk::parse_frame(r.original), en::dns_rcode::nxdomain,
                               e, out) == 0);
  }
  // Exactly large enough, one byte short.
  const buf original = eth_ip(dns_query_packet(true, one));
  const std::size_t need = 14 + 40 + 8 + one.size();
  buf exact(need);
  buf short_by_one(need - 1);
  const pk::frame_info fi = pk::parse_frame(original);
  CHECK(en::build_dns_answer(original, fi, en::dns_rcode::nxdomain, e, exact) == need);
  CHECK(en::build_dns_answer(original, fi, en::dns_rcode::nxdomain, e, short_by_one) == 0);
}
