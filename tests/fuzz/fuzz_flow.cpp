// libFuzzer target for the flow classifier: the input is a script of packets of one TCP or UDP
// flow (direction, flags, sequence offset, payload), wrapped into real Ethernet/IPv4 frames, so
// reassembly, protocol guessing and every reader behind them are driven with arbitrary streams:
// out of order, overlapping, beyond the cap, switching direction. A small pool makes the
// give-up paths reachable. Checks: no crash or over-read (ASan/UBSan), results in range, and
// every reassembly buffer back in the pool once the flow is released.
//
// Random bytes never open as a QUIC Initial, so a UDP packet with control bit 4 set is sealed
// first: its bytes become one CRYPTO frame at the script's offset, in a client Initial of one of
// four versions under one of two DCIDs (both picked by the control byte). The classifier's QUIC
// reassembly behind the AEAD — chunks joining across DCIDs, restarts, stale DCIDs — is then
// driven like the TCP stream is. Likewise a TCP flow with bit 2 of the first byte set opens with
// a proxy's CONNECT head, so the script's stream is read inside the tunnel.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "dataplane/flow/classifier.hpp"
#include "tests/unit/packet/quic_test_util.hpp"

namespace {

using sluice::flow::classifier;
using sluice::flow::flow_state;

// Ethernet + IPv4 + TCP/UDP around `payload`. Checksums are left zero and the classifier's
// checksum filter is off: its tests cover it; here the streams behind it are the target.
std::vector<std::uint8_t> make_frame(bool tcp, std::uint16_t sport, bool reverse, std::uint8_t flags,
                                     std::uint32_t seq, const std::uint8_t* payload,
                                     std::size_t len) {
  const std::size_t l4 = tcp ? 20 : 8;
  std::vector<std::uint8_t> f(14 + 20 + l4 + len, 0);
  f[12] = 0x08;  // IPv4
  std::uint8_t* ip = f.data() + 14;
  ip[0] = 0x45;
  const std::size_t total = 20 + l4 + len;
  ip[2] = static_cast<std::uint8_t>(total >> 8);
  ip[3] = static_cast<std::uint8_t>(total);
  ip[8] = 64;
  ip[9] = tcp ? 6 : 17;
  const std::uint8_t client[4] = {10, 0, 0, 1}, server[4] = {192, 0, 2, 1};
  std::memcpy(ip + 12, reverse ? server : client, 4);
  std::memcpy(ip + 16, reverse ? client : server, 4);
  std::uint8_t* l = ip + 20;
  const std::uint16_t cport = 40000;
  const std::uint16_t src = reverse ? sport : cport, dst = reverse ? cport : sport;
  l[0] = static_cast<std::uint8_t>(src >> 8);
  l[1] = static_cast<std::uint8_t>(src);
  l[2] = static_cast<std::uint8_t>(dst >> 8);
  l[3] = static_cast<std::uint8_t>(dst);
  if (tcp) {
    for (int i = 0; i < 4; ++i) l[4 + i] = static_cast<std::uint8_t>(seq >> (24 - 8 * i));
    l[12] = 0x50;
    l[13] = flags;
  } else {
    l[4] = static_cast<std::uint8_t>((8 + len) >> 8);
    l[5] = static_cast<std::uint8_t>(8 + len);
  }
  if (len) std::memcpy(l + l4, payload, len);
  return f;
}

// A client Initial (version and DCID from `ctl`, see the file comment) carrying `len` bytes as
// a CRYPTO frame at `offset`. IETF-frame versions only (Google's T05x/Q050 frames differ).
std::vector<std::uint8_t> sealed_initial(std::uint8_t ctl, std::uint32_t offset,
                                         const std::uint8_t* payload, std::size_t len) {
  namespace quic_test = sluice::packet::quic_test;
  static sluice::packet::quic_initial_decryptor sealer;
  constexpr std::uint32_t versions[] = {0x00000001, 0x6b3343cf, 0xff00001d, 0xfaceb002};
  const std::uint32_t version = versions[(ctl >> 5) & 3];
  const quic_test::byte_vector dcid{0x5a, static_cast<std::uint8_t>(ctl >> 7), 1, 2, 3, 4, 5, 6};
  const std::string_view data(reinterpret_cast<const char*>(payload), len);
  return quic_test::seal_initial(sealer, version, dcid, 0, quic_test::crypto_frame(offset, data));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static sluice::flow::buffer_pool pool(2, 1024);
  static classifier cls(pool, [] {
    classifier::config cfg;
    cfg.verify_checksums = false;  // the frames carry no checksums; see make_frame
    return cfg;
  }());
  if (size < 1) return 0;
  const bool tcp = (data[0] & 1) == 0;
  const std::uint16_t server_port = (data[0] & 2) ? 53 : 443;  // DNS, or TLS/HTTP/QUIC
  std::size_t pos = 1;
  flow_state st;
  const std::uint32_t isn = 0xfffffff0u;  // wraps within the first bytes
  std::uint32_t tunnel_base = 0;  // stream bytes before the script's offset 0
  if (tcp && (data[0] & 4)) {
    static constexpr char head[] = "CONNECT t.me:443 HTTP/1.1\r\nHost: t.me:443\r\n\r\n";
    tunnel_base = sizeof head - 1;
    const auto frame = make_frame(true, server_port, false, sluice::packet::tcp_ack, isn + 1,
                                  reinterpret_cast<const std::uint8_t*>(head), tunnel_base);
    const sluice::packet::bytes fb{frame.data(), frame.size()};
    const auto r = cls.on_packet(st, sluice::packet::parse_frame(fb), fb,
                                 sluice::flow::direction::forward);
    if (r.name_count != 1 || r.names[0] != "t.me") std::abort();
  }
  // Each packet: [ctl][offset lo][offset hi][len] then len payload bytes.
  while (pos + 4 <= size) {
    const std::uint8_t ctl = data[pos];
    const std::uint32_t offset = data[pos + 1] | (std::uint32_t{data[pos + 2]} << 8);
    std::size_t len = data[pos + 3];
    pos += 4;
    if (len > size - pos) len = size - pos;
    const bool reverse = ctl & 1;
    std::uint8_t flags = sluice::packet::tcp_ack;
    if (ctl & 2) flags = sluice::packet::tcp_syn;
    if (ctl & 4) flags |= sluice::packet::tcp_syn;
    if (ctl & 8) flags |= sluice::packet::tcp_rst;
    const std::uint32_t seq = (flags & sluice::packet::tcp_syn) && !(flags & sluice::packet::tcp_ack)
                                  ? isn
                                  : isn + 1 + tunnel_base + offset;
    std::vector<std::uint8_t> sealed;
    if (!tcp && server_port == 443 && (ctl & 0x10)) sealed = sealed_initial(ctl, offset, data + pos, len);
    const auto frame = sealed.empty()
                           ? make_frame(tcp, server_port, reverse, flags, seq, data + pos, len)
                           : make_frame(tcp, server_port, reverse, flags, seq, sealed.data(),
                                        sealed.size());
    pos += len;
    const sluice::packet::bytes fb{frame.data(), frame.size()};
    const auto info = sluice::packet::parse_frame(fb);
    const auto r = cls.on_packet(st, info, fb,
                                 reverse ? sluice::flow::direction::reverse
                                         : sluice::flow::direction::forward);
    if (r.status >= sluice::flow::flow_status::count) std::abort();
    if (r.name_count > r.names.size()) std::abort();
    for (std::size_t i = 0; i < r.name_count; ++i) {
      if (r.names[i].data() == nullptr && !r.names[i].empty()) std::abort();
      volatile char sink = 0;
      for (char c : r.names[i]) sink = static_cast<char>(sink ^ c);  // names must be readable
    }
    if (st.final() && st.stream.attached()) std::abort();  // final flows hold no buffer
  }
  cls.release(st);
  if (pool.available() != pool.capacity()) std::abort();
  return 0;
}
