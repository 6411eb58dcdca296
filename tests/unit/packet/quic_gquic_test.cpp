#include "dataplane/packet/gquic.hpp"

#include <doctest/doctest.h>

#include <string>

#include "tests/unit/packet/quic_test_util.hpp"
#include "tests/unit/packet/quic_vectors.hpp"

namespace sluice::packet {
namespace {

using quic_test::byte_vector;
using quic_test::from_hex;

constexpr std::uint32_t q046 = 0x51303436;
constexpr std::uint32_t q043 = 0x51303433;

byte_vector operator+(byte_vector a, const byte_vector& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

void put_le(byte_vector& v, std::uint32_t x, int n) {
  for (int i = 0; i < n; ++i) v.push_back(static_cast<std::uint8_t>(x >> (8 * i)));
}

// A CHLO message with the given (tag, value) pairs, in order.
byte_vector chlo(std::initializer_list<std::pair<const char*, std::string>> tags) {
  byte_vector m{'C', 'H', 'L', 'O'};
  put_le(m, static_cast<std::uint32_t>(tags.size()), 2);
  put_le(m, 0, 2);
  std::uint32_t end = 0;
  for (const auto& [tag, value] : tags) {
    m.insert(m.end(), tag, tag + 4);
    end += static_cast<std::uint32_t>(value.size());
    put_le(m, end, 4);
  }
  for (const auto& t : tags) m.insert(m.end(), t.second.begin(), t.second.end());
  return m;
}

// Q046 Initial: flags c3, version, DCIL 8, CID, 4-byte packet number, 12-byte hash, frames.
byte_vector q046_packet(const byte_vector& frames, std::uint8_t flags = 0xc3) {
  byte_vector p = from_hex("00" "51303436" "50" "0102030405060708" "00000001" "000000000000000000000000");
  p[0] = flags;
  p.insert(p.end(), frames.begin(), frames.end());
  return p;
}

// Q043 legacy header: flags 0x09 (version + 8-byte CID, 1-byte packet number), CID, version.
byte_vector q043_packet(const byte_vector& frames) {
  byte_vector p = from_hex("09" "0102030405060708" "51303433" "01" "000000000000000000000000");
  p.insert(p.end(), frames.begin(), frames.end());
  return p;
}

byte_vector cut_to(byte_vector v, std::size_t n) {
  v.resize(n);
  return v;
}

// STREAM frame 0xa0 (data length present, no offset, 1-byte stream id).
byte_vector stream_frame(std::uint8_t stream_id, const byte_vector& data) {
  byte_vector f{0xa0, stream_id, static_cast<std::uint8_t>(data.size() >> 8),
                static_cast<std::uint8_t>(data.size())};
  f.insert(f.end(), data.begin(), data.end());
  return f;
}

}  // namespace

TEST_CASE("gquic: outcome names") {
  CHECK(std::string(to_string(gquic_outcome::chlo)) == "chlo");
  CHECK(std::string(to_string(gquic_outcome::no_chlo)) == "no_chlo");
  CHECK(std::string(to_string(gquic_outcome::count)) == "unknown");
}

TEST_CASE("gquic: table") {
  const auto good = chlo({{"PAD\0", std::string(20, '-')},
                          {"SNI\0", "i.ytimg.com"},
                          {"VER\0", "Q046"}});
  const auto no_sni = chlo({{"PAD\0", "--"}, {"VER\0", "Q046"}});
  auto cut = [](byte_vector v, std::size_t n) {
    v.resize(n);
    return v;
  };
  byte_vector bad_order = good;
  bad_order[8 + 4] = 0xff;  // first end offset larger than the second
  byte_vector sni_past_end = chlo({{"SNI\0", "abc"}});
  sni_past_end[12] = 0x40;  // SNI end offset 64, past the values

  struct row {
    const char* what;
    byte_vector datagram;
    gquic_outcome outcome;
    std::uint32_t version;
    const char* sni;
  };
  const row rows[] = {
      {"quic046.pcap frame 1 (CHLO)", from_hex(quic_vectors::gquic_q046_chlo), gquic_outcome::chlo,
       q046, "i.ytimg.com"},
      {"quic046.pcap frame 2 (0-RTT)", from_hex(quic_vectors::gquic_q046_zero_rtt),
       gquic_outcome::no_chlo, q046, ""},
      {"Q046 built", q046_packet(stream_frame(1, good)), gquic_outcome::chlo, q046, "i.ytimg.com"},
      {"Q046 PING first", q046_packet(byte_vector{0x07} + stream_frame(1, good)),
       gquic_outcome::chlo, q046, "i.ytimg.com"},
      {"Q046 other stream first", q046_packet(stream_frame(3, no_sni) + stream_frame(1, good)),
       gquic_outcome::chlo, q046, "i.ytimg.com"},
      {"Q046 CHLO without SNI", q046_packet(stream_frame(1, no_sni)), gquic_outcome::chlo, q046,
       ""},
      {"Q043 legacy header", q043_packet(stream_frame(1, good)), gquic_outcome::chlo, q043,
       "i.ytimg.com"},
      {"Q046 stream 1 not a CHLO", q046_packet(stream_frame(1, from_hex("52454a0000000000"))),
       gquic_outcome::no_chlo, q046, ""},
      {"Q046 stream 1 at offset 4", q046_packet(from_hex("a40100040004") + good),
       gquic_outcome::no_chlo, q046, ""},
      {"Q046 padding only", q046_packet(byte_vector(30, 0)), gquic_outcome::no_chlo, q046, ""},
      {"Q046 ACK frame first", q046_packet(from_hex("40010000") + stream_frame(1, good)),
       gquic_outcome::no_chlo, q046, ""},
      {"Q046 Handshake type", q046_packet(stream_frame(1, good), 0xe3), gquic_outcome::no_chlo,
       q046, ""},
      {"Q046 stream length past the end", cut(q046_packet(stream_frame(1, good)), 80),
       gquic_outcome::malformed, q046, ""},
      {"Q046 tag table cut", q046_packet(stream_frame(1, cut(good, 20))), gquic_outcome::malformed,
       q046, ""},
      {"Q046 offsets decrease", q046_packet(stream_frame(1, bad_order)), gquic_outcome::malformed,
       q046, ""},
      {"Q046 SNI past the values", q046_packet(stream_frame(1, sni_past_end)),
       gquic_outcome::malformed, q046, ""},
      {"Q046 header cut", cut(q046_packet({}), 20), gquic_outcome::malformed, q046, ""},
      {"IETF v1 Initial", from_hex(quic_vectors::rfc9001_a2), gquic_outcome::not_gquic, 0, ""},
      {"Q050 (encrypted Initial)", from_hex("c35130353050010203040506070800"),
       gquic_outcome::not_gquic, 0, ""},
      {"Q099", from_hex("c35130393950010203040506070800"), gquic_outcome::not_gquic, 0, ""},
      {"short header", from_hex("40b4a4f9f5f42edd390c58ae290a6a5ecb4e"), gquic_outcome::not_gquic,
       0, ""},
      {"empty", {}, gquic_outcome::not_gquic, 0, ""},
      {"garbage", from_hex("deadbeefcafebabe"), gquic_outcome::not_gquic, 0, ""},
      {"legacy without version flag", from_hex("080102030405060708"), gquic_outcome::not_gquic, 0,
       ""},
  };
  for (const auto& r : rows) {
    INFO(std::string(r.what));
    gquic_info info;
    CHECK(parse_gquic_chlo(r.datagram, info) == r.outcome);
    CHECK(info.version == r.version);
    CHECK(info.sni == r.sni);
  }
}

TEST_CASE("gquic: every truncation of the CHLO packet is handled") {
  const auto pkt = from_hex(quic_vectors::gquic_q046_chlo);
  for (std::size_t n = 0; n < pkt.size(); ++n) {
    INFO(n);
    gquic_info info;
    const auto o = parse_gquic_chlo(bytes{pkt.data(), n}, info);
    // 30 header bytes, a 4-byte STREAM frame header, then 1024 bytes of CHLO; zeros after that.
    if (n < 30 + 4 + 1024) {
      CHECK(o != gquic_outcome::chlo);
    } else {
      CHECK(o == gquic_outcome::chlo);
      CHECK(info.sni == "i.ytimg.com");
    }
  }
}

TEST_CASE("gquic: CHLO messages from reassembled bytes (Q050 CRYPTO stream)") {
  const auto good = chlo({{"PAD\0", std::string(300, '-')},
                          {"SNI\0", "www.youtube.com"},
                          {"VER\0", "Q050"}});
  // Every proper prefix is a CHLO still arriving; the whole message names the host.
  for (std::size_t n = 0; n < good.size(); ++n) {
    INFO(n);
    gquic_info info;
    CHECK(parse_gquic_chlo_message(bytes{good.data(), n}, info) == gquic_outcome::need_more);
    CHECK(info.sni.empty());
  }
  gquic_info info;
  REQUIRE(parse_gquic_chlo_message(good, info) == gquic_outcome::chlo);
  CHECK(info.sni == "www.youtube.com");
  CHECK(info.version == 0);
  // Bytes after the message (the next CRYPTO data, padding) are not its business.
  const byte_vector followed = good + byte_vector(50, 0);
  REQUIRE(parse_gquic_chlo_message(followed, info) == gquic_outcome::chlo);
  CHECK(info.sni == "www.youtube.com");

  byte_vector bad_order = good;
  bad_order[8 + 4] = 0xff;  // first end offset larger than the second
  byte_vector huge = chlo({{"SNI\0", "x"}});
  huge[12] = 0xff;
  huge[13] = 0xff;
  huge[14] = 0xff;  // SNI ends 16 MB in: a message that never completes within any cap
  struct row {
    const char* what;
    byte_vector message;
    gquic_outcome outcome;
    const char* sni;
  };
  const row rows[] = {
      {"no SNI", chlo({{"PAD\0", "--"}, {"VER\0", "Q050"}}), gquic_outcome::chlo, ""},
      {"no tags", chlo({}), gquic_outcome::chlo, ""},
      {"empty SNI value", chlo({{"SNI\0", ""}, {"VER\0", "Q050"}}), gquic_outcome::chlo, ""},
      {"REJ, not a CHLO", from_hex("52454a0000000000"), gquic_outcome::no_chlo, ""},
      {"TLS ClientHello bytes", from_hex("010000c00303"), gquic_outcome::no_chlo, ""},
      {"offsets decrease", bad_order, gquic_outcome::malformed, ""},
      {"offsets decrease, table still arriving", cut_to(bad_order, 8 + 8 * 2),
       gquic_outcome::malformed, ""},
      {"end offset far away", huge, gquic_outcome::need_more, ""},
  };
  for (const auto& r : rows) {
    INFO(std::string(r.what));
    gquic_info i;
    CHECK(parse_gquic_chlo_message(r.message, i) == r.outcome);
    CHECK(i.sni == r.sni);
  }
}

}  // namespace sluice::packet
