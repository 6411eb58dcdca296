// libFuzzer target for the L2-L4 parser: parse_frame, parse_ip and l4_checksum_ok over arbitrary
// bytes. Beyond "no crash, no over-read" (ASan/UBSan), it checks the result's own invariants.
//
// The corpus starts empty (tools/test.sh), and a random input rarely reaches a UDP tunnel (it
// needs a consistent IPv4 + UDP header first), so the input is also parsed as the payload of a
// well-formed Ethernet + IPv4 + UDP datagram to each tunnel port (VXLAN, GTP-U, Geneve): the
// fuzzer then explores the tunnel headers and what they carry directly.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "dataplane/packet/frame.hpp"

namespace {

void check(const sluice::packet::frame_info& fi, sluice::packet::bytes input) {
  using sluice::packet::frame_outcome;
  if (fi.outcome >= frame_outcome::count) std::abort();
  if (fi.outcome == frame_outcome::ok) {
    if (std::size_t{fi.l3_offset} + fi.l3_length > input.size()) std::abort();
    if (fi.l4_offset < fi.l3_offset || fi.payload_offset < fi.l4_offset) std::abort();
    if (std::size_t{fi.payload_offset} + fi.payload_length > input.size()) std::abort();
    if (fi.ip_version != 4 && fi.ip_version != 6) std::abort();
    const auto payload = fi.payload(input);
    if (payload.size() != fi.payload_length) std::abort();
  }
  if (fi.outcome == frame_outcome::other_l4) {  // where e.g. an ICMP message starts
    if (fi.l4_offset < fi.l3_offset || fi.l4_offset > std::size_t{fi.l3_offset} + fi.l3_length) {
      std::abort();
    }
  }
  const bool sum_ok = sluice::packet::l4_checksum_ok(input, fi);
  if (sum_ok && (fi.outcome != frame_outcome::ok || fi.is_fragment)) std::abort();
  if (sluice::packet::to_string(fi.outcome) == nullptr) std::abort();
}

constexpr std::size_t max_tunnel_payload = 0xffff - 20 - 8;

// Ethernet + IPv4 (198.51.100.1 -> 198.51.100.2) + UDP to `port` around `payload`, exactly as
// long as that (ASan sees any read past it).
std::vector<std::uint8_t> in_udp(std::uint16_t port, sluice::packet::bytes payload) {
  const std::size_t n = payload.size() < max_tunnel_payload ? payload.size() : max_tunnel_payload;
  const std::size_t ip_len = 20 + 8 + n;
  const std::size_t udp_len = 8 + n;
  std::vector<std::uint8_t> f = {
      2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00,  // Ethernet
      0x45, 0, static_cast<std::uint8_t>(ip_len >> 8), static_cast<std::uint8_t>(ip_len), 0, 1,
      0, 0, 64, 17, 0, 0, 198, 51, 100, 1, 198, 51, 100, 2,  // IPv4, checksum not set
      0xc3, 0x50, static_cast<std::uint8_t>(port >> 8), static_cast<std::uint8_t>(port),
      static_cast<std::uint8_t>(udp_len >> 8), static_cast<std::uint8_t>(udp_len), 0, 0};  // UDP
  f.insert(f.end(), payload.begin(), payload.begin() + static_cast<std::ptrdiff_t>(n));
  return f;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const sluice::packet::bytes input{data, size};
  check(sluice::packet::parse_frame(input), input);
  check(sluice::packet::parse_ip(input), input);
  for (std::uint16_t port : {4789, 2152, 6081}) {
    const std::vector<std::uint8_t> f = in_udp(port, input);
    const sluice::packet::bytes frame{f.data(), f.size()};
    check(sluice::packet::parse_frame(frame), frame);
    check(sluice::packet::parse_ip(frame.subspan(14)), frame.subspan(14));
  }
  return 0;
}
