#pragma once
// Builders of the packets the fast path sends to enforce a verdict: TCP resets (either direction
// of a flow), the HTTP 451 notice (RFC 7725) that answers a blocked plain-HTTP request, and the
// DNS answer (NXDOMAIN) to a blocked name's query.
//
// Pure: the original frame (as received, already parsed into `frame_info`) in, one complete
// Ethernet frame out into a caller buffer. No allocation, no logging, no globals, no DPDK; safe
// from any thread as long as each thread uses its own `response_entropy`.
//
// Every builder returns the length of the frame written to `out`, or 0 when the original cannot
// be answered; the caller then drops instead. 0 is returned when:
// - the original is not a parsed TCP segment (`info.outcome != ok` or not TCP; UDP for the DNS
//   answer), or is an IP fragment;
// - it arrived through a tunnel (GRE, IP-in-IP, VXLAN, GTP-U, Geneve: `encap_tunnels`; the
//   answer would need re-encapsulation);
// - the answer would carry a group (multicast/broadcast) source MAC;
// - `out` is too small for the answer.
// `out` must not overlap `original_frame`; bytes of `out` past the returned length are untouched.
// The answer keeps the original's L2 prefix (Ethernet, VLAN/QinQ tags, MPLS labels, PPPoE session
// header with its length fixed up); toward the sender the MAC addresses are swapped. IP options
// and IPv6 extension headers are not reproduced. See RESPONSES.md for the reasoning.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "dataplane/packet/bytes.hpp"
#include "dataplane/packet/frame.hpp"

namespace sluice::engine {

// Per-worker pseudo-random source for the fields that would otherwise fingerprint our answers
// (IPv4 ID, TTL / hop limit, IPv6 flow label). xorshift64*: fast and deterministic, not
// cryptographic (nothing here needs secrecy). One per worker; not thread-safe.
struct response_entropy {
  std::uint64_t state_;

  // Any seed works (0 included): it is mixed by splitmix64 into a non-zero state.
  explicit constexpr response_entropy(std::uint64_t seed) noexcept : state_(mix(seed)) {}

  constexpr std::uint64_t next() noexcept {
    state_ ^= state_ >> 12;
    state_ ^= state_ << 25;
    state_ ^= state_ >> 27;
    return state_ * 0x2545f4914f6cdd1dull;
  }

 private:
  static constexpr std::uint64_t mix(std::uint64_t z) noexcept {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return z != 0 ? z : 0x9e3779b97f4a7c15ull;
  }
};

// TTL (IPv4) and hop limit (IPv6) of every answer are drawn uniformly from this range.
inline constexpr std::uint8_t response_ttl_min = 48;
inline constexpr std::uint8_t response_ttl_max = 64;

// Largest TCP payload of the HTTP notice (fits one segment on any path we expect, PPPoE and
// IPv6 included).
inline constexpr std::size_t notice_max_payload = 1400;

// Which end of the flow the reset goes to, relative to the original packet.
enum class reset_target : std::uint8_t {
  to_sender,            // back to the original's source, as if from its destination
  to_receiver,          // on to the original's destination, after the original (which reached
                        // it: mirror mode)
  to_receiver_instead,  // on to the original's destination in place of the original (which is
                        // dropped: inline mode)
};

// A TCP RST with no payload and no options.
// to_sender:   MACs, IPs, ports swapped; seq = original ack (0 if the original lacks ACK, as
//              RFC 793 says), flags RST|ACK, ack = original seq + payload length (+1 for SYN,
//              +1 for FIN): the exact sequence number the sender expects next, so an
//              RFC 5961 receiver accepts it.
// to_receiver: L2 copied as is, same IPs and ports; seq = original seq + payload length (+1 SYN,
//              +1 FIN); flags RST|ACK with ack = original ack (plain RST, ack 0, when the
//              original lacks ACK).
// to_receiver_instead: as to_receiver but seq = original seq: the receiver never got the
//              original, so that is the one sequence number it accepts for a RST (RFC 5961
//              §3.2: anything else only draws a challenge ACK and the connection stays open).
// IPv4: DF set, random ID. Window 0.
[[nodiscard]] std::size_t build_tcp_reset(packet::bytes original_frame,
                                          const packet::frame_info& info, reset_target target,
                                          response_entropy& e,
                                          std::span<std::uint8_t> out) noexcept;

// The server's answer to the client's HTTP request segment `original_frame`: one TCP segment
// toward the sender (seq = original ack, ack = original seq + payload length (+1 SYN/FIN),
// flags PSH|ACK|FIN, window = the original's) carrying a complete
// `HTTP/1.1 451 Unavailable For Legal Reasons` response with `Content-Type: text/html;
// charset=utf-8`, `Content-Length`, `Connection: close`, `Cache-Control: no-store` and, when
// `blocked_by_url` is non-empty and printable ASCII without `<`, `>`, `"` or spaces, a
// `Link: <URL>; rel="blocked-by"` header (otherwise the header is omitted).
//
// The HTML body names `legal_basis` and `blocked_name`, both HTML-escaped (`& < > " '`), with
// control characters and malformed UTF-8 replaced by `?`. The whole HTTP response is at most
// `notice_max_payload` bytes: the escaped blocked name is cut to 512 bytes, then the escaped
// legal basis to what still fits; both at a character boundary and marked with "..." when cut.
// Returns 0 also when the original lacks ACK (not an established connection's request). The engine
// drops the original and sends build_tcp_reset(..., to_receiver_instead, ...) to the server.
[[nodiscard]] std::size_t build_http_notice(packet::bytes original_frame,
                                            const packet::frame_info& info,
                                            std::string_view legal_basis,
                                            std::string_view blocked_name, response_entropy& e,
                                            std::span<std::uint8_t> out,
                                            std::string_view blocked_by_url = {}) noexcept;

// DNS response codes the fast path answers with (RFC 1035 §4.1.1).
enum class dns_rcode : std::uint8_t { nxdomain = 3, refused = 5 };

// The resolver's answer to the client's DNS query `original_frame` (UDP): toward the sender, from
// the address and port it asked, the query's ID, flags QR|RA plus the query's RD and CD, `rcode`,
// the first question echoed and no records (no SOA: nothing for a resolver or stub to cache, so a
// lift takes effect at the next query). Returns 0 unless the original is a standard query
// (QR 0, opcode 0) with exactly one uncompressed question. UDP checksum filled in.
[[nodiscard]] std::size_t build_dns_answer(packet::bytes original_frame,
                                           const packet::frame_info& info, dns_rcode rcode,
                                           response_entropy& e,
                                           std::span<std::uint8_t> out) noexcept;

}  // namespace sluice::engine
