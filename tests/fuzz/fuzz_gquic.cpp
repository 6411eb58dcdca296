// libFuzzer target: Google QUIC CHLO SNI extraction on arbitrary datagrams.

#include <cstddef>
#include <cstdint>

#include "dataplane/packet/gquic.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace sluice::packet;
  gquic_info info;
  const gquic_outcome o = parse_gquic_chlo(bytes{data, size}, info);
  (void)to_string(o);
  if (!info.sni.empty()) {
    const auto* p = reinterpret_cast<const std::uint8_t*>(info.sni.data());
    if (o != gquic_outcome::chlo || p < data || p + info.sni.size() > data + size)
      __builtin_trap();
  }
  return 0;
}
