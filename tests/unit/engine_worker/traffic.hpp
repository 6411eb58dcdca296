#pragma once
// Traffic for engine tests and benchmarks: a TCP conversation with real sequence numbers and a
// few well-known addresses. Test-only (allocates per frame). No doctest, so tests/perf can use it.

#include <cstdint>
#include <string_view>

#include "tests/unit/support/packet_builder.hpp"

namespace sluice::test {

inline packet::ip_address client_ip() { return v4(10, 0, 0, 1); }
inline packet::ip_address tg_ip() { return v4(149, 154, 167, 99); }   // in 149.154.160.0/20
inline packet::ip_address other_ip() { return v4(93, 184, 216, 34); }

// A TCP conversation between a client (subscriber side) and a server, with real sequence numbers.
struct tcp_conv {
  packet::ip_address client = client_ip();
  packet::ip_address server = tg_ip();
  std::uint16_t cport = 40000;
  std::uint16_t sport = 443;
  std::uint32_t cseq = 1000;  // client's next sequence number (ISN when no SYN sent yet)
  std::uint32_t sseq = 5000;

  buf syn() { return eth_ip(ip(client, server, 6, tcp(cport, sport, {}, packet::tcp_syn, {}, cseq++, 0))); }
  buf syn_ack() {
    return eth_ip(ip(server, client, 6,
                     tcp(sport, cport, {}, packet::tcp_syn | packet::tcp_ack, {}, sseq++, cseq)));
  }
  buf ack() { return eth_ip(ip(client, server, 6, tcp(cport, sport, {}, packet::tcp_ack, {}, cseq, sseq))); }
  // Client data; `advance` false for a fake (the real one reuses the sequence numbers).
  buf data(const buf& payload, bool advance = true) {
    buf f = eth_ip(ip(client, server, 6,
                      tcp(cport, sport, payload, packet::tcp_ack | packet::tcp_psh, {}, cseq, sseq)));
    if (advance) cseq += static_cast<std::uint32_t>(payload.size());
    return f;
  }
  buf server_data(const buf& payload) {
    buf f = eth_ip(ip(server, client, 6,
                      tcp(sport, cport, payload, packet::tcp_ack | packet::tcp_psh, {}, sseq, cseq)));
    sseq += static_cast<std::uint32_t>(payload.size());
    return f;
  }
};

inline buf client_hello(std::string_view sni) { return tls_records(tls_client_hello_for(sni), 1); }

}  // namespace sluice::test
