// libFuzzer target for the ICMP / ICMPv6 reader: parse_icmp over arbitrary bytes as ICMP and as
// ICMPv6 (the first byte picks which of the two runs first). Beyond "no crash, no over-read"
// (ASan/UBSan), it checks the result's own invariants.

#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "dataplane/packet/icmp.hpp"

namespace {

void check(const sluice::packet::icmp_info& m, sluice::packet::bytes input, std::uint8_t version) {
  using sluice::packet::icmp_outcome;
  if (m.outcome >= icmp_outcome::count) std::abort();
  if (sluice::packet::to_string(m.outcome) == nullptr) std::abort();
  if (input.size() >= 4 && m.error != sluice::packet::icmp_is_error(version, input[0]))
    std::abort();
  if (m.outcome == icmp_outcome::not_error && m.error) std::abort();
  if (m.outcome == icmp_outcome::quoted) {
    const auto& q = m.quoted;
    // A quote is at least an IP header past the 8-byte ICMP header, of the message's version.
    if (q.ip_version != version) std::abort();
    if (input.size() < 8 + (version == 4 ? 20u : 40u)) std::abort();
    if (q.src.version != version || q.dst.version != version) std::abort();
    if (q.has_ports && input.size() < 8 + (version == 4 ? 24u : 44u)) std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const sluice::packet::bytes input{data, size};
  for (std::uint8_t version : {std::uint8_t{4}, std::uint8_t{6}}) {
    check(sluice::packet::parse_icmp(input, version), input, version);
  }
  return 0;
}
