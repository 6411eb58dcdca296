// libFuzzer target: QUIC client Initial decryption and frame walking on arbitrary datagrams.
// Even first byte: the rest is the datagram as received. Odd first byte: the rest is an Initial
// plaintext that is sealed first (v1 or v2 by bit 1), so the fuzzer also reaches the frame walker
// behind the AEAD.

#include <cstddef>
#include <cstdint>
#include <vector>

#include "dataplane/packet/quic.hpp"
#include "tests/unit/packet/quic_test_util.hpp"

namespace {

sluice::packet::quic_initial_decryptor& decryptor() {
  static sluice::packet::quic_initial_decryptor d;
  return d;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace sluice::packet;
  if (size == 0) return 0;
  const std::uint8_t mode = data[0];
  std::vector<std::uint8_t> datagram(data + 1, data + size);
  if (mode & 1) {
    if (datagram.size() > 1400) return 0;
    const bool v2 = (mode & 2) != 0;
    const std::vector<std::uint8_t> dcid{mode, 1, 2, 3, 4, 5, 6, 7};
    datagram = quic_test::seal_long(decryptor(), v2 ? 0x6b3343cf : 1, v2 ? 1 : 0, dcid,
                                    static_cast<std::uint8_t>(mode >> 2), datagram);
  }
  (void)looks_like_quic_initial(datagram);
  std::vector<std::uint8_t> scratch(datagram.size());
  quic_initial_result out;
  const quic_outcome o = decryptor().decrypt(datagram, scratch, out);
  (void)to_string(o);
  if ((mode & 1) && out.packets != 1) __builtin_trap();  // a packet we sealed must open
  // Everything reported must lie inside scratch (chunks) or the datagram (dcid).
  if (out.chunk_count > quic_initial_result::max_chunks) __builtin_trap();
  for (std::size_t i = 0; i < out.chunk_count; ++i) {
    const auto& c = out.chunks[i];
    if (c.data.data() < scratch.data() ||
        c.data.data() + c.data.size() > scratch.data() + scratch.size())
      __builtin_trap();
  }
  if (!out.dcid.empty() && (out.dcid.data() < datagram.data() ||
                            out.dcid.data() + out.dcid.size() > datagram.data() + datagram.size()))
    __builtin_trap();
  if (o == quic_outcome::initial && out.packets == 0) __builtin_trap();
  return 0;
}
