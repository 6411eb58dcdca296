// Client Initials taken from real captures (see quic_vectors.hpp for the frames), decrypted and
// reassembled into a ClientHello whose SNI must match the capture's ground truth.

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "dataplane/packet/quic.hpp"
#include "dataplane/packet/tls.hpp"
#include "tests/unit/packet/quic_test_util.hpp"
#include "tests/unit/packet/quic_vectors.hpp"

namespace sluice::packet {

TEST_CASE("quic captures: client Initials give the SNI") {
  struct row {
    const char* what;
    std::vector<const char*> datagrams;  // in capture order
    std::uint32_t version;
    const char* sni;
  };
  const row rows[] = {
      {"msquic v1 (sv__quic-ietf)", {quic_vectors::ietf_msquic}, 0x00000001, "msquic.net"},
      {"draft-29 (quic-29)", {quic_vectors::draft29_localhost}, 0xff00001d, "localhost"},
      {"v2 (quic-v2)", {quic_vectors::v2_test}, 0x6b3343cf, "test"},
      {"curl v1 (zeek www.google.de)", {quic_vectors::curl_google_de}, 0x00000001,
       "www.google.de"},
      {"ClientHello over two Initials (sv__quic-frag)",
       {quic_vectors::frag_mozilla_1, quic_vectors::frag_mozilla_2}, 0x00000001,
       "token.services.mozilla.com"},
      {"same, second datagram first",
       {quic_vectors::frag_mozilla_2, quic_vectors::frag_mozilla_1}, 0x00000001,
       "token.services.mozilla.com"},
      {"ngtcp2 0.12 v2 draft codepoint", {quic_vectors::ngtcp2_v2draft}, 0x709a50c4,
       "telegram.org"},
      {"Chromium 156, post-quantum ClientHello shuffled over two Initials",
       {quic_vectors::chromium_pq_1, quic_vectors::chromium_pq_2}, 0x00000001, "telegram.org"},
  };
  quic_initial_decryptor d;
  for (const auto& r : rows) {
    INFO(std::string(r.what));
    quic_test::crypto_stream stream;
    std::vector<quic_test::byte_vector> scratches;  // chunks point into these
    for (const char* hex : r.datagrams) {
      const auto datagram = quic_test::from_hex(hex);
      CHECK(looks_like_quic_initial(datagram));
      scratches.emplace_back(datagram.size());
      quic_initial_result result;
      REQUIRE(d.decrypt(datagram, scratches.back(), result) == quic_outcome::initial);
      CHECK(result.version == r.version);
      CHECK(result.packets == 1);
      CHECK(result.chunk_count >= 1);
      stream.add(result);
    }
    client_hello_info info;
    REQUIRE(parse_client_hello(stream.prefix(), info) == tls_outcome::client_hello);
    CHECK(info.sni == r.sni);
  }
}

TEST_CASE("quic captures: one datagram of a split ClientHello is not enough") {
  quic_initial_decryptor d;
  const auto datagram = quic_test::from_hex(quic_vectors::frag_mozilla_1);
  quic_test::byte_vector scratch(datagram.size());
  quic_initial_result result;
  REQUIRE(d.decrypt(datagram, scratch, result) == quic_outcome::initial);
  quic_test::crypto_stream stream;
  stream.add(result);
  CHECK(stream.prefix().size() == 1209);
  client_hello_info info;
  CHECK(parse_client_hello(stream.prefix(), info) == tls_outcome::need_more);
}

TEST_CASE("quic captures: a flipped bit anywhere in the protected payload fails the AEAD") {
  quic_initial_decryptor d;
  const auto good = quic_test::from_hex(quic_vectors::curl_google_de);
  quic_test::byte_vector scratch(good.size());
  // curl pads the datagram with zeros after a 334-byte Initial (Length 0x120 at offset 44).
  constexpr std::size_t packet_end = 46 + 0x120;
  REQUIRE(good.size() == 1200);
  // Header bytes change the keys or the AAD; payload bytes the ciphertext, sample or tag; bytes
  // after the packet are ignored.
  for (std::size_t i = 0; i < good.size(); i += 7) {
    INFO(i);
    auto bad = good;
    bad[i] ^= 0x10;
    quic_initial_result result;
    const auto o = d.decrypt(bad, scratch, result);
    if (i < packet_end) {
      CHECK(o != quic_outcome::initial);
      CHECK(result.chunk_count == 0);
    } else {
      CHECK(o == quic_outcome::initial);
    }
  }
}

}  // namespace sluice::packet
