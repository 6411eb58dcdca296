// libFuzzer target: QUIC client Initial decryption and frame walking on arbitrary datagrams.
// Even first byte: the rest is the datagram as received. Odd first byte: the second byte picks
// the version (every one the decryptor reads, so each salt, label set, type numbering and frame
// encoding is reached) and the rest is an Initial plaintext that is sealed first, so the fuzzer
// also reaches the IETF and Google QUIC frame walkers behind the AEAD. Decrypted CRYPTO data is
// handed to the handshake parser the result names (TLS ClientHello or QUIC-crypto CHLO).

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <vector>

#include "dataplane/packet/gquic.hpp"
#include "dataplane/packet/quic.hpp"
#include "dataplane/packet/tls.hpp"
#include "tests/unit/packet/quic_test_util.hpp"

namespace {

sluice::packet::quic_initial_decryptor& decryptor() {
  static sluice::packet::quic_initial_decryptor d;
  return d;
}

// Every version quic.hpp reads.
constexpr std::uint32_t versions[] = {
    0x00000001, 0x6b3343cf, 0x709a50c4, 0xff000016, 0xff000017, 0xff000018, 0xff000019,
    0xff00001a,
    0xff00001b, 0xff00001d, 0xff000020, 0xff000021, 0xff000022, 0xfaceb001, 0xfaceb002,
    0xfaceb003, 0xfaceb00e, 0xfaceb010, 0xfaceb011, 0xfaceb012, 0xfaceb013, 0x51303530,
    0x54303530, 0x54303531,
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace sluice::packet;
  if (size == 0) return 0;
  const std::uint8_t mode = data[0];
  std::vector<std::uint8_t> datagram(data + 1, data + size);
  std::uint32_t sealed_version = 0;
  if (mode & 1) {
    if (datagram.empty() || datagram.size() > 1400) return 0;
    sealed_version = versions[datagram[0] % std::size(versions)];
    datagram.erase(datagram.begin());
    const std::vector<std::uint8_t> dcid{mode, 1, 2, 3, 4, 5, 6, 7};
    datagram = quic_test::seal_initial(decryptor(), sealed_version, dcid,
                                       static_cast<std::uint8_t>(mode >> 1), datagram);
  }
  (void)looks_like_quic_initial(datagram);
  std::vector<std::uint8_t> scratch(datagram.size());
  quic_initial_result out;
  const quic_outcome o = decryptor().decrypt(datagram, scratch, out);
  (void)to_string(o);
  if ((mode & 1) && (out.packets != 1 || out.version != sealed_version))
    __builtin_trap();  // a packet we sealed must open, as its own version
  // Everything reported must lie inside scratch (chunks) or the datagram (dcid).
  if (out.chunk_count > quic_initial_result::max_chunks) __builtin_trap();
  for (std::size_t i = 0; i < out.chunk_count; ++i) {
    const auto& c = out.chunks[i];
    if (c.data.data() < scratch.data() ||
        c.data.data() + c.data.size() > scratch.data() + scratch.size())
      __builtin_trap();
    if (c.offset != 0) continue;
    if (out.handshake == quic_handshake::gquic_crypto) {
      gquic_info g;
      (void)parse_gquic_chlo_message(c.data, g);
      const auto* p = reinterpret_cast<const std::uint8_t*>(g.sni.data());
      const auto* end = c.data.data() + c.data.size();
      if (!g.sni.empty() && (p < c.data.data() || p + g.sni.size() > end)) __builtin_trap();
    } else {
      client_hello_info ch;
      (void)parse_client_hello(c.data, ch);
    }
  }
  if (!out.dcid.empty() && (out.dcid.data() < datagram.data() ||
                            out.dcid.data() + out.dcid.size() > datagram.data() + datagram.size()))
    __builtin_trap();
  if (o == quic_outcome::initial && out.packets == 0) __builtin_trap();
  if (o == quic_outcome::reserved_version && !quic_version_reserved(out.version))
    __builtin_trap();
  return 0;
}
