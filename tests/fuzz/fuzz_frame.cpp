// libFuzzer target for the L2-L4 parser: parse_frame, parse_ip and l4_checksum_ok over arbitrary
// bytes. Beyond "no crash, no over-read" (ASan/UBSan), it checks the result's own invariants.

#include <cstddef>
#include <cstdint>
#include <cstdlib>

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

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const sluice::packet::bytes input{data, size};
  check(sluice::packet::parse_frame(input), input);
  check(sluice::packet::parse_ip(input), input);
  return 0;
}
