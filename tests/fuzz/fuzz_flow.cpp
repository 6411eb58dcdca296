// libFuzzer target for the flow classifier: the input is a script of packets of one TCP or UDP
// flow (direction, flags, sequence offset, payload), wrapped into real Ethernet/IPv4 frames, so
// reassembly, protocol guessing and every reader behind them are driven with arbitrary streams:
// out of order, overlapping, beyond the cap, switching direction. A small pool makes the
// give-up paths reachable. Checks: no crash or over-read (ASan/UBSan), results in range, and
// every reassembly buffer back in the pool once the flow is released.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "dataplane/flow/classifier.hpp"

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
                                  : isn + 1 + offset;
    const auto frame = make_frame(tcp, server_port, reverse, flags, seq, data + pos, len);
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
