#pragma once
// Helpers for the QUIC tests: a client-Initial sealer (the inverse of the decryptor, built on the
// same OpenSSL primitives, to make packets with chosen frames) and a CRYPTO-stream reassembler.
// Generic byte builders (hex, cat, frames) live in tests/unit/support/packet_builder.hpp.

#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dataplane/packet/quic.hpp"
#include "tests/unit/support/packet_builder.hpp"

namespace sluice::packet::quic_test {

using byte_vector = sluice::test::buf;

// Hex helpers are the shared builder's.
using sluice::test::from_hex;
using sluice::test::to_hex;

inline void put_varint(byte_vector& out, std::uint64_t v) {
  if (v < 64) {
    out.push_back(static_cast<std::uint8_t>(v));
  } else if (v < 16384) {
    out.push_back(static_cast<std::uint8_t>(0x40 | (v >> 8)));
    out.push_back(static_cast<std::uint8_t>(v));
  } else {
    out.push_back(static_cast<std::uint8_t>(0x80 | (v >> 24)));
    out.push_back(static_cast<std::uint8_t>(v >> 16));
    out.push_back(static_cast<std::uint8_t>(v >> 8));
    out.push_back(static_cast<std::uint8_t>(v));
  }
}

inline byte_vector crypto_frame(std::uint64_t offset, std::string_view data) {
  byte_vector f{0x06};
  put_varint(f, offset);
  put_varint(f, data.size());
  f.insert(f.end(), data.begin(), data.end());
  return f;
}

// Google QUIC CRYPTO frame (Q050, T050, T051): type 0x08, varint offset and length.
inline byte_vector gquic_crypto_frame(std::uint64_t offset, std::string_view data) {
  byte_vector f = crypto_frame(offset, data);
  f[0] = 0x08;
  return f;
}

// The long-header type bits of an Initial: 1 for v2 (RFC 9369 §3.2) and its draft codepoint, 0 for
// every other version.
inline std::uint8_t initial_type_bits(std::uint32_t version) {
  return version == 0x6b3343cf || version == 0x709a50c4 ? 1 : 0;
}

// Builds a protected long-header packet of `type_bits` (Initial: initial_type_bits) carrying
// `payload`, with a 1-byte packet number, protected with `keys` (which need not match the
// version: that is how a wrong-salt packet is made).
inline byte_vector seal_long_with(const quic_initial_keys& keys, std::uint32_t version,
                                  std::uint8_t type_bits, const byte_vector& dcid, std::uint8_t pn,
                                  byte_vector payload) {
  while (payload.size() < 4) payload.push_back(0);  // room for the header-protection sample
  byte_vector h{static_cast<std::uint8_t>(0xc0 | (type_bits << 4)), 0, 0, 0, 0};
  for (int i = 0; i < 4; ++i) h[1 + i] = static_cast<std::uint8_t>(version >> (24 - 8 * i));
  h.push_back(static_cast<std::uint8_t>(dcid.size()));
  h.insert(h.end(), dcid.begin(), dcid.end());
  h.push_back(0);                                          // SCID length
  if (type_bits == initial_type_bits(version)) h.push_back(0);  // Initial: empty token
  const std::size_t length = 1 + payload.size() + 16;
  h.push_back(static_cast<std::uint8_t>(0x40 | (length >> 8)));
  h.push_back(static_cast<std::uint8_t>(length));
  const std::size_t pn_offset = h.size();
  h.push_back(pn);

  std::array<std::uint8_t, 12> nonce = keys.iv;
  nonce[11] ^= pn;
  byte_vector ct(payload.size() + 16);
  EVP_CIPHER_CTX* c = EVP_CIPHER_CTX_new();
  int len = 0;
  EVP_EncryptInit_ex(c, EVP_aes_128_gcm(), nullptr, keys.key.data(), nonce.data());
  EVP_EncryptUpdate(c, nullptr, &len, h.data(), static_cast<int>(h.size()));
  EVP_EncryptUpdate(c, ct.data(), &len, payload.data(), static_cast<int>(payload.size()));
  EVP_EncryptFinal_ex(c, ct.data() + len, &len);
  EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, 16, ct.data() + payload.size());
  EVP_CIPHER_CTX_free(c);

  byte_vector pkt = h;
  pkt.insert(pkt.end(), ct.begin(), ct.end());
  std::array<std::uint8_t, 16> mask{};
  c = EVP_CIPHER_CTX_new();
  EVP_EncryptInit_ex(c, EVP_aes_128_ecb(), nullptr, keys.hp.data(), nullptr);
  EVP_CIPHER_CTX_set_padding(c, 0);
  EVP_EncryptUpdate(c, mask.data(), &len, pkt.data() + pn_offset + 4, 16);
  EVP_CIPHER_CTX_free(c);
  pkt[0] ^= mask[0] & 0x0f;
  pkt[pn_offset] ^= mask[1];
  return pkt;
}

// As seal_long_with, keyed as a client Initial for (version, dcid).
inline byte_vector seal_long(quic_initial_decryptor& d, std::uint32_t version,
                             std::uint8_t type_bits, const byte_vector& dcid, std::uint8_t pn,
                             byte_vector payload) {
  quic_initial_keys keys;
  if (!d.derive_client_keys(version, dcid, keys)) throw std::runtime_error("derive");
  return seal_long_with(keys, version, type_bits, dcid, pn, std::move(payload));
}

// A client Initial of `version` (type bits from the version) keyed for (version, dcid).
inline byte_vector seal_initial(quic_initial_decryptor& d, std::uint32_t version,
                                const byte_vector& dcid, std::uint8_t pn, byte_vector payload) {
  return seal_long(d, version, initial_type_bits(version), dcid, pn, std::move(payload));
}

// Lays CRYPTO chunks out by offset and returns the contiguous prefix from offset 0.
class crypto_stream {
 public:
  void add(const quic_initial_result& r) {
    for (std::size_t i = 0; i < r.chunk_count; ++i) {
      const auto& c = r.chunks[i];
      const std::size_t end = static_cast<std::size_t>(c.offset) + c.data.size();
      if (end > data_.size()) {
        data_.resize(end);
        have_.resize(end);
      }
      std::copy(c.data.begin(), c.data.end(), data_.begin() + static_cast<long>(c.offset));
      std::fill(have_.begin() + static_cast<long>(c.offset), have_.begin() + static_cast<long>(end),
                true);
    }
  }
  [[nodiscard]] bytes prefix() const {
    const auto gap = std::find(have_.begin(), have_.end(), false);
    return bytes{data_.data(), static_cast<std::size_t>(gap - have_.begin())};
  }

 private:
  byte_vector data_;
  std::vector<bool> have_;
};

}  // namespace sluice::packet::quic_test
