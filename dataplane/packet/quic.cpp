#include "dataplane/packet/quic.hpp"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <algorithm>
#include <cstring>
#include <iterator>
#include <stdexcept>

namespace sluice::packet {

const char* to_string(quic_outcome o) noexcept {
  switch (o) {
#define SLUICE_X(name, str) \
  case quic_outcome::name:  \
    return str;
    SLUICE_QUIC_OUTCOMES(SLUICE_X)
#undef SLUICE_X
    case quic_outcome::count:
      break;
  }
  return "unknown";
}

namespace {

constexpr std::size_t max_cid_len = 20;
constexpr std::size_t aead_tag_len = 16;
constexpr std::size_t hp_sample_len = 16;
constexpr std::size_t key_len = 16;
constexpr std::size_t iv_len = 12;

using salt_t = std::array<std::uint8_t, 20>;

// RFC 9001 §5.2 (v1; also drafts 33-34, which reused it), RFC 9369 §3.3.1 (v2), the salt of
// the v2 drafts' codepoint 0x709a50c4 (draft-ietf-quic-v2-01; what Debian 12's ngtcp2 0.12 sends
// for "v2draft", read off its libngtcp2_crypto and checked on its packets),
// draft-ietf-quic-tls-29 §5.2 (drafts 29-32), draft-ietf-quic-tls-23 §5.2 (drafts 23-28; its
// Appendix A.1 keys are checked in the tests) and the draft-22 salt (mvfst's kQuicDraft22Salt,
// Wireshark's and nDPI's draft-22 salt).
constexpr salt_t salt_v1 = {0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17,
                            0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad, 0xcc, 0xbb, 0x7f, 0x0a};
constexpr salt_t salt_v2 = {0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93,
                            0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb, 0xf9, 0xbd, 0x2e, 0xd9};
constexpr salt_t salt_v2_draft = {0xa7, 0x07, 0xc2, 0x03, 0xa5, 0x9b, 0x47, 0x18, 0x4a, 0x1d,
                                  0x62, 0xca, 0x57, 0x04, 0x06, 0xea, 0x7a, 0xe3, 0xe5, 0xd3};
constexpr salt_t salt_draft29 = {0xaf, 0xbf, 0xec, 0x28, 0x99, 0x93, 0xd2, 0x4c, 0x9e, 0x97,
                                 0x86, 0xf1, 0x9c, 0x61, 0x11, 0xe0, 0x43, 0x90, 0xa8, 0x99};
constexpr salt_t salt_draft23 = {0xc3, 0xee, 0xf7, 0x12, 0xc7, 0x2e, 0xbb, 0x5a, 0x11, 0xa7,
                                 0xd2, 0x43, 0x2b, 0xb4, 0x63, 0x65, 0xbe, 0xf9, 0xf5, 0x02};
constexpr salt_t salt_draft22 = {0x7f, 0xbc, 0xdb, 0x0e, 0x7c, 0x66, 0xbb, 0xe9, 0x19, 0x3a,
                                 0x96, 0xcd, 0x21, 0x51, 0x9e, 0xbd, 0x7a, 0x02, 0x64, 0x4a};
// Google's Initial obfuscation salts: quiche quic/core/crypto/crypto_utils.cc (kQ050Salt,
// kT050Salt, kT051Salt), the same bytes in nDPI's protocols/quic.c.
constexpr salt_t salt_q050 = {0x50, 0x45, 0x74, 0xef, 0xd0, 0x66, 0xfe, 0x2f, 0x9d, 0x94,
                              0x5c, 0xfc, 0xdb, 0xd3, 0xa7, 0xf0, 0xd3, 0xb5, 0x6b, 0x45};
constexpr salt_t salt_t050 = {0x7f, 0xf5, 0x79, 0xe5, 0xac, 0xd0, 0x72, 0x91, 0x55, 0x80,
                              0x30, 0x4c, 0x43, 0xa2, 0x36, 0x7c, 0x60, 0x48, 0x83, 0x10};
constexpr salt_t salt_t051 = {0x7a, 0x4e, 0xde, 0xf4, 0xe7, 0xcc, 0xee, 0x5f, 0xa4, 0x50,
                              0x6c, 0x19, 0x12, 0x4f, 0xc8, 0xcc, 0xda, 0x6e, 0x03, 0x3d};

constexpr std::uint32_t version_1 = 0x00000001;
constexpr std::uint32_t version_2 = 0x6b3343cf;
constexpr std::uint32_t version_2_draft = 0x709a50c4;  // v2 before RFC 9369 gave it its number
constexpr std::uint32_t google_q050 = 0x51303530;      // 'Q050'
constexpr std::uint32_t google_t050 = 0x54303530;      // 'T050'
constexpr std::uint32_t google_t051 = 0x54303531;      // 'T051'

enum salt_id : std::uint8_t {
  s_v1,
  s_v2,
  s_v2_draft,
  s_draft29,
  s_draft23,
  s_draft22,
  s_q050,
  s_t050,
  s_t051
};
constexpr const salt_t* salts[] = {&salt_v1,      &salt_v2,      &salt_v2_draft,
                                   &salt_draft29, &salt_draft23, &salt_draft22,
                                   &salt_q050,    &salt_t050,    &salt_t051};
constexpr std::size_t salt_count = std::size(salts);
static_assert(salt_count == s_t051 + 1);

struct version_params {
  bool known = false;
  std::uint8_t salt_index = 0;  // into `salts`
  bool v2 = false;              // "quicv2 " labels and the RFC 9369 long-header type numbering
  bool gquic_frames = false;    // Google QUIC frame encoding (Q050, T050, T051)
  quic_handshake handshake = quic_handshake::tls;
};

[[nodiscard]] constexpr version_params ietf(salt_id salt) noexcept {
  return {true, salt, false, false, quic_handshake::tls};
}

[[nodiscard]] constexpr version_params params_for(std::uint32_t version) noexcept {
  switch (version) {
    case version_1:
      return ietf(s_v1);
    case version_2:
      return {true, s_v2, true, false, quic_handshake::tls};
    case version_2_draft:  // v2's labels and packet types, its own salt
      return {true, s_v2_draft, true, false, quic_handshake::tls};
    // Facebook mvfst (quic/QuicConstants.h, getQuicVersionSalt): MVFST_D24 kept the draft-22
    // salt; QUIC_V1_ALIAS uses v1's; every other mvfst version falls to its default, draft-23.
    case 0xfaceb001:
      return ietf(s_draft22);
    case 0xfaceb003:
      return ietf(s_v1);
    case 0xfaceb002:  // MVFST
    case 0xfaceb00e:  // MVFST_EXPERIMENTAL
    case 0xfaceb010:  // MVFST_ALIAS
    case 0xfaceb011:  // MVFST_EXPERIMENTAL2
    case 0xfaceb012:  // in deployed version lists (Zeek, mercury); mvfst's default salt
    case 0xfaceb013:  // MVFST_EXPERIMENTAL3
      return ietf(s_draft23);
    case google_q050:
      return {true, s_q050, false, true, quic_handshake::gquic_crypto};
    case google_t050:
      return {true, s_t050, false, true, quic_handshake::tls};
    case google_t051:
      return {true, s_t051, false, true, quic_handshake::tls};
    default:
      break;
  }
  if ((version >> 8) == 0xff0000) {
    const auto draft = version & 0xff;
    if (draft == 22) return ietf(s_draft22);
    if (draft >= 23 && draft <= 28) return ietf(s_draft23);
    if (draft >= 29 && draft <= 32) return ietf(s_draft29);
    if (draft >= 33 && draft <= 34) return ietf(s_v1);
  }
  return {};
}

// 'Q' and three digits: a Google QUIC version label.
[[nodiscard]] constexpr bool gquic_q_label(std::uint32_t version) noexcept {
  if ((version >> 24) != 'Q') return false;
  for (int shift = 16; shift >= 0; shift -= 8) {
    const auto c = (version >> shift) & 0xff;
    if (c < '0' || c > '9') return false;
  }
  return true;
}

// Long-header packet types in the v1 numbering; v2 rotates them (RFC 9369 §3.2).
enum class long_type : std::uint8_t { initial, zero_rtt, handshake, retry };

[[nodiscard]] constexpr long_type decode_type(std::uint8_t first, bool v2) noexcept {
  const auto bits = static_cast<std::uint8_t>((first >> 4) & 3);
  if (!v2) return static_cast<long_type>(bits);
  switch (bits) {
    case 1:
      return long_type::initial;
    case 2:
      return long_type::zero_rtt;
    case 3:
      return long_type::handshake;
    default:
      return long_type::retry;
  }
}

// RFC 9000 §16 variable-length integer.
[[nodiscard]] constexpr bool read_varint(reader& r, std::uint64_t& v) noexcept {
  const std::uint8_t first = r.u8();
  if (!r.ok()) return false;
  const std::size_t extra = (std::size_t{1} << (first >> 6)) - 1;
  bytes rest = r.take(extra);
  if (!r.ok()) return false;
  v = first & 0x3f;
  for (std::uint8_t b : rest) v = (v << 8) | b;
  return true;
}

enum class frames_result : std::uint8_t { ok, malformed, too_many_chunks };

[[nodiscard]] frames_result add_chunk(std::uint64_t offset, bytes data,
                                      quic_initial_result& out) noexcept {
  if (out.chunk_count >= quic_initial_result::max_chunks) return frames_result::too_many_chunks;
  out.chunks[out.chunk_count++] = quic_crypto_chunk{offset, data};
  return frames_result::ok;
}

// Walks an Initial packet's IETF frames (RFC 9000 §19; drafts 22-34 use the same codes for the
// frames an Initial carries: PADDING, PING, ACK, CRYPTO, CONNECTION_CLOSE), appending CRYPTO
// data to `out`. Anything else is malformed.
[[nodiscard]] frames_result walk_ietf_frames(bytes plaintext, quic_initial_result& out) noexcept {
  reader r(plaintext);
  while (r.remaining() > 0) {
    const std::uint8_t type = r.u8();
    std::uint64_t a = 0, b = 0, c = 0;
    switch (type) {
      case 0x00:  // PADDING
      case 0x01:  // PING
        break;
      case 0x02:    // ACK
      case 0x03: {  // ACK with ECN counts
        std::uint64_t ranges = 0;
        if (!read_varint(r, a) || !read_varint(r, b) || !read_varint(r, ranges) ||
            !read_varint(r, c))
          return frames_result::malformed;
        // Each range costs at least two bytes, so a huge count fails on the bytes, not the loop.
        for (std::uint64_t i = 0; i < ranges; ++i) {
          if (!read_varint(r, a) || !read_varint(r, b)) return frames_result::malformed;
        }
        if (type == 0x03 && (!read_varint(r, a) || !read_varint(r, b) || !read_varint(r, c)))
          return frames_result::malformed;
        break;
      }
      case 0x06: {  // CRYPTO
        if (!read_varint(r, a) || !read_varint(r, b)) return frames_result::malformed;
        if (b > r.remaining()) return frames_result::malformed;
        bytes data = r.take(static_cast<std::size_t>(b));
        if (add_chunk(a, data, out) != frames_result::ok) return frames_result::too_many_chunks;
        break;
      }
      case 0x1c:    // CONNECTION_CLOSE (transport)
      case 0x1d: {  // CONNECTION_CLOSE (application)
        if (!read_varint(r, a)) return frames_result::malformed;
        if (type == 0x1c && !read_varint(r, b)) return frames_result::malformed;
        if (!read_varint(r, c) || c > r.remaining()) return frames_result::malformed;
        r.skip(static_cast<std::size_t>(c));
        break;
      }
      default:
        return frames_result::malformed;
    }
  }
  return frames_result::ok;
}

// Google QUIC ACK frame, type 01MLLBB (quiche QuicFramer::ProcessAckFrame): largest acked
// (LL-coded length), ack delay (ufloat16), [block count if M], first block (BB-coded length),
// blocks (1-byte gap + block), timestamp count, timestamps (1 + 4 bytes, then 1 + 2 each).
[[nodiscard]] bool skip_gquic_ack(reader& r, std::uint8_t type) noexcept {
  static constexpr std::size_t lengths[] = {1, 2, 4, 6};
  const std::size_t block_len = lengths[type & 3u];
  const std::size_t largest_len = lengths[(type >> 2) & 3u];
  r.skip(largest_len + 2);
  const std::size_t blocks = (type & 0x20) ? r.u8() : 0;
  r.skip(block_len + blocks * (1 + block_len));
  const std::size_t stamps = r.u8();
  if (stamps > 0) r.skip(1 + 4 + (stamps - 1) * 3);
  return r.ok();
}

// Walks an Initial packet's Google QUIC frames (Q050, T050, T051: transport versions before
// quiche's VersionHasIetfQuicFrames), appending CRYPTO data to `out`.
[[nodiscard]] frames_result walk_gquic_frames(bytes plaintext, quic_initial_result& out) noexcept {
  reader r(plaintext);
  while (r.remaining() > 0) {
    const std::uint8_t type = r.u8();
    if (type == 0x00) break;     // PADDING: the rest of the packet
    if (type == 0x07) continue;  // PING
    if (type == 0x08) {          // CRYPTO: varint offset, varint length, data
      std::uint64_t offset = 0, length = 0;
      if (!read_varint(r, offset) || !read_varint(r, length) || length > r.remaining())
        return frames_result::malformed;
      const bytes data = r.take(static_cast<std::size_t>(length));
      if (add_chunk(offset, data, out) != frames_result::ok) return frames_result::too_many_chunks;
      continue;
    }
    if ((type & 0xc0) == 0x40) {  // ACK
      if (!skip_gquic_ack(r, type)) return frames_result::malformed;
      continue;
    }
    return frames_result::malformed;  // STREAM, CONNECTION_CLOSE, ...: not in a client Initial
  }
  return frames_result::ok;
}

[[nodiscard]] frames_result walk_frames(bytes plaintext, const version_params& vp,
                                        quic_initial_result& out) noexcept {
  return vp.gquic_frames ? walk_gquic_frames(plaintext, out) : walk_ietf_frames(plaintext, out);
}

}  // namespace

bool quic_version_supported(std::uint32_t version) noexcept { return params_for(version).known; }

bool looks_like_quic_initial(bytes datagram) noexcept {
  if (datagram.size() < 7) return false;
  const std::uint8_t first = datagram[0];
  if ((first & 0x80) == 0) return false;
  const std::uint32_t version = load_be32(datagram.data() + 1);
  if (datagram[5] > max_cid_len) return false;
  if (version == 0) return true;  // Version Negotiation: every other first-byte bit is random
  if ((first & 0x40) == 0) return false;
  const auto p = params_for(version);
  if (!p.known) return !gquic_q_label(version);  // reserved or unknown: decrypt() says which
  return decode_type(first, p.v2) == long_type::initial;
}

struct quic_initial_decryptor::impl {
  EVP_MAC* mac = nullptr;
  EVP_MAC_CTX* hmac = nullptr;
  // HMAC keyed once with each salt: HKDF-Extract then only resets it (EVP_MAC_init, NULL key).
  std::array<EVP_MAC_CTX*, salt_count> extract{};
  EVP_CIPHER* ecb = nullptr;
  EVP_CIPHER* gcm = nullptr;
  EVP_CIPHER_CTX* hp_ctx = nullptr;
  EVP_CIPHER_CTX* aead_ctx = nullptr;

  // Keys of the last two (version, DCID) pairs. entries[current] is the one the cipher contexts
  // hold; switching to the other costs two AES key set-ups instead of a derivation, so a flow
  // whose Initials alternate between two DCIDs (after a Retry, or the server's first Initial)
  // or two interleaved flows derive nothing per packet.
  struct cache_entry {
    bool valid = false;
    std::uint32_t version = 0;
    std::uint8_t dcid_len = 0;
    std::array<std::uint8_t, max_cid_len> dcid{};
    quic_initial_keys keys;

    [[nodiscard]] bool matches(std::uint32_t v, bytes id) const noexcept {
      return valid && version == v && dcid_len == id.size() &&
             std::equal(id.begin(), id.end(), dcid.begin());
    }
  };
  std::array<cache_entry, 2> entries{};
  std::size_t current = 0;
  bool installed = false;  // the cipher contexts hold entries[current].keys
  std::array<std::uint8_t, iv_len> iv{};

  impl() {
    mac = EVP_MAC_fetch(nullptr, OSSL_MAC_NAME_HMAC, nullptr);
    ecb = EVP_CIPHER_fetch(nullptr, "AES-128-ECB", nullptr);
    gcm = EVP_CIPHER_fetch(nullptr, "AES-128-GCM", nullptr);
    hp_ctx = EVP_CIPHER_CTX_new();
    aead_ctx = EVP_CIPHER_CTX_new();
    if (mac != nullptr) hmac = EVP_MAC_CTX_new(mac);
    bool extract_ok = mac != nullptr;
    for (auto*& ctx : extract) {
      if (mac != nullptr) ctx = EVP_MAC_CTX_new(mac);
      extract_ok = extract_ok && ctx != nullptr;
    }
    if (!extract_ok || hmac == nullptr || ecb == nullptr || gcm == nullptr || hp_ctx == nullptr ||
        aead_ctx == nullptr) {
      release();
      throw std::runtime_error("quic_initial_decryptor: OpenSSL lacks HMAC/AES-128-ECB/GCM");
    }
    char digest[] = "SHA256";
    const OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                                 OSSL_PARAM_END};
    // Prime both cipher contexts with their cipher so per-packet calls only change keys/IVs.
    const std::uint8_t zero[key_len] = {};
    for (std::size_t i = 0; i < salt_count; ++i) {
      if (EVP_MAC_CTX_set_params(extract[i], params) != 1 ||
          EVP_MAC_init(extract[i], salts[i]->data(), salts[i]->size(), nullptr) != 1) {
        release();
        throw std::runtime_error("quic_initial_decryptor: OpenSSL HMAC initialisation failed");
      }
    }
    if (EVP_MAC_CTX_set_params(hmac, params) != 1 ||
        EVP_EncryptInit_ex2(hp_ctx, ecb, zero, nullptr, nullptr) != 1 ||
        EVP_CIPHER_CTX_set_padding(hp_ctx, 0) != 1 ||
        EVP_DecryptInit_ex2(aead_ctx, gcm, zero, nullptr, nullptr) != 1) {
      release();
      throw std::runtime_error("quic_initial_decryptor: OpenSSL initialisation failed");
    }
  }
  ~impl() { release(); }
  impl(const impl&) = delete;
  impl& operator=(const impl&) = delete;

  void release() noexcept {
    EVP_CIPHER_CTX_free(aead_ctx);
    EVP_CIPHER_CTX_free(hp_ctx);
    EVP_CIPHER_free(gcm);
    EVP_CIPHER_free(ecb);
    EVP_MAC_CTX_free(hmac);
    for (auto*& ctx : extract) {
      EVP_MAC_CTX_free(ctx);
      ctx = nullptr;
    }
    EVP_MAC_free(mac);
    aead_ctx = hp_ctx = nullptr;
    gcm = ecb = nullptr;
    hmac = nullptr;
    mac = nullptr;
  }

  // HMAC-SHA256 on `ctx`; an empty `key` reuses the context's current key, which skips the
  // key schedule (the costly part of OpenSSL 3's HMAC init).
  [[nodiscard]] static bool hmac_sha256(EVP_MAC_CTX* ctx, bytes key, bytes message,
                                        std::array<std::uint8_t, 32>& out) noexcept {
    std::size_t out_len = 0;
    return EVP_MAC_init(ctx, key.empty() ? nullptr : key.data(), key.size(), nullptr) == 1 &&
           EVP_MAC_update(ctx, message.data(), message.size()) == 1 &&
           EVP_MAC_final(ctx, out.data(), &out_len, out.size()) == 1 && out_len == out.size();
  }

  // RFC 8446 §7.1 HKDF-Expand-Label with an empty context; every length used here fits one
  // SHA-256 block of output, so HKDF-Expand is a single HMAC over info || 0x01.
  // An empty `secret` reuses the key of the previous expand_label.
  [[nodiscard]] bool expand_label(bytes secret, const char* prefix, const char* label,
                                  std::size_t length, std::array<std::uint8_t, 32>& out) noexcept {
    std::array<std::uint8_t, 64> info{};
    const std::size_t prefix_len = std::strlen(prefix);
    const std::size_t label_len = std::strlen(label);
    const std::size_t full = 6 + prefix_len + label_len;
    std::size_t n = 0;
    info[n++] = 0;
    info[n++] = static_cast<std::uint8_t>(length);
    info[n++] = static_cast<std::uint8_t>(full);
    std::memcpy(&info[n], "tls13 ", 6);
    n += 6;
    std::memcpy(&info[n], prefix, prefix_len);
    n += prefix_len;
    std::memcpy(&info[n], label, label_len);
    n += label_len;
    info[n++] = 0;  // empty context
    info[n++] = 1;  // HKDF-Expand block counter
    return hmac_sha256(hmac, secret, bytes{info.data(), n}, out);
  }

  [[nodiscard]] bool derive(const version_params& vp, bytes dcid,
                            quic_initial_keys& keys) noexcept {
    std::array<std::uint8_t, 32> initial{}, client{}, key{}, iv_out{}, hp{};
    const char* prefix = vp.v2 ? "quicv2 " : "quic ";
    if (!hmac_sha256(extract[vp.salt_index], {}, dcid, initial) ||
        !expand_label(initial, "", "client in", 32, client) ||
        !expand_label(client, prefix, "key", key_len, key) ||
        !expand_label({}, prefix, "iv", iv_len, iv_out) ||
        !expand_label({}, prefix, "hp", key_len, hp))
      return false;
    std::copy_n(key.begin(), key_len, keys.key.begin());
    std::copy_n(iv_out.begin(), iv_len, keys.iv.begin());
    std::copy_n(hp.begin(), key_len, keys.hp.begin());
    return true;
  }

  [[nodiscard]] bool key_contexts(const quic_initial_keys& keys) noexcept {
    iv = keys.iv;
    return EVP_EncryptInit_ex2(hp_ctx, nullptr, keys.hp.data(), nullptr, nullptr) == 1 &&
           EVP_DecryptInit_ex2(aead_ctx, nullptr, keys.key.data(), nullptr, nullptr) == 1;
  }

  // Installs the client Initial keys for (version, dcid): already there, from the other cache
  // entry, or derived into the entry not used last.
  [[nodiscard]] bool install_keys(std::uint32_t version, const version_params& vp,
                                  bytes dcid) noexcept {
    if (installed && entries[current].matches(version, dcid)) return true;
    installed = false;
    const std::size_t other = current ^ 1u;
    if (entries[other].matches(version, dcid)) {
      current = other;
      installed = key_contexts(entries[current].keys);
      return installed;
    }
    cache_entry& e = entries[other];
    e.valid = false;
    if (!derive(vp, dcid, e.keys)) return false;
    e.version = version;
    e.dcid_len = static_cast<std::uint8_t>(dcid.size());
    std::copy(dcid.begin(), dcid.end(), e.dcid.begin());
    e.valid = true;
    current = other;
    installed = key_contexts(e.keys);
    return installed;
  }

  // Removes header protection and opens one Initial packet. `packet` spans the whole packet
  // (Length included), `pn_offset` is relative to it; the unprotected header and the plaintext
  // go to the same offsets in `out` (same size as `packet`). False when the packet is too short
  // or the AEAD tag does not verify.
  [[nodiscard]] bool open(bytes packet, std::size_t pn_offset, std::uint8_t* out,
                          bytes& plaintext) noexcept {
    if (packet.size() < pn_offset + 4 + hp_sample_len) return false;
    std::array<std::uint8_t, 32> mask{};
    int mask_len = 0;
    if (EVP_EncryptUpdate(hp_ctx, mask.data(), &mask_len, packet.data() + pn_offset + 4,
                          static_cast<int>(hp_sample_len)) != 1 ||
        mask_len != static_cast<int>(hp_sample_len))
      return false;
    const std::uint8_t first = packet[0] ^ (mask[0] & 0x0f);
    const std::size_t pn_len = (first & 3u) + 1;
    std::memcpy(out, packet.data(), pn_offset);
    out[0] = first;
    std::uint64_t pn = 0;
    for (std::size_t i = 0; i < pn_len; ++i) {
      out[pn_offset + i] = packet[pn_offset + i] ^ mask[1 + i];
      pn = (pn << 8) | out[pn_offset + i];
    }
    const std::size_t header_len = pn_offset + pn_len;
    if (packet.size() < header_len + aead_tag_len) return false;
    const std::size_t ct_len = packet.size() - header_len - aead_tag_len;

    std::array<std::uint8_t, iv_len> nonce = iv;
    for (std::size_t i = 0; i < 8; ++i)
      nonce[iv_len - 1 - i] ^= static_cast<std::uint8_t>(pn >> (8 * i));

    int len = 0;
    std::uint8_t* pt = out + header_len;
    // The tag is copied by OpenSSL; the cast only satisfies the ctrl() signature.
    void* tag = const_cast<std::uint8_t*>(packet.data() + header_len + ct_len);
    if (EVP_DecryptInit_ex2(aead_ctx, nullptr, nullptr, nonce.data(), nullptr) != 1 ||
        EVP_DecryptUpdate(aead_ctx, nullptr, &len, out, static_cast<int>(header_len)) != 1 ||
        EVP_DecryptUpdate(aead_ctx, pt, &len, packet.data() + header_len,
                          static_cast<int>(ct_len)) != 1 ||
        EVP_CIPHER_CTX_ctrl(aead_ctx, EVP_CTRL_AEAD_SET_TAG, static_cast<int>(aead_tag_len), tag) !=
            1)
      return false;
    int final_len = 0;
    if (EVP_DecryptFinal_ex(aead_ctx, pt + len, &final_len) != 1) return false;
    plaintext = bytes{pt, ct_len};
    return true;
  }
};

quic_initial_decryptor::quic_initial_decryptor() : impl_(std::make_unique<impl>()) {}
quic_initial_decryptor::~quic_initial_decryptor() = default;

bool quic_initial_decryptor::derive_client_keys(std::uint32_t version, bytes dcid,
                                                quic_initial_keys& out) noexcept {
  const version_params vp = params_for(version);
  if (!vp.known || dcid.size() > max_cid_len) return false;
  return impl_->derive(vp, dcid, out);
}

quic_outcome quic_initial_decryptor::decrypt(bytes datagram, std::span<std::uint8_t> scratch,
                                             quic_initial_result& out) noexcept {
  out.version = 0;
  out.packets = 0;
  out.chunk_count = 0;
  out.other_dcid_packets = 0;
  out.handshake = quic_handshake::tls;
  out.dcid = {};
  if (datagram.empty() || (datagram[0] & 0x80) == 0) return quic_outcome::not_quic;
  if (scratch.size() < datagram.size()) return quic_outcome::truncated;

  bool any_initial = false;
  bool malformed = false;
  bool overflow = false;
  std::size_t pos = 0;
  while (pos < datagram.size()) {
    bytes rest = datagram.subspan(pos);
    reader r(rest);
    const std::uint8_t first = r.u8();
    if ((first & 0x80) == 0) break;  // a short-header packet ends the long-header run
    const std::uint32_t version = r.u32();
    if ((first & 0x40) == 0 && !(pos == 0 && version == 0 && r.ok())) {
      if (pos == 0) return quic_outcome::not_quic;  // (Version Negotiation may clear the bit)
      break;
    }
    const std::uint8_t dcid_len = r.u8();
    if (dcid_len > max_cid_len) {
      if (pos == 0) return quic_outcome::not_quic;
      break;
    }
    bytes dcid = r.take(dcid_len);
    const std::uint8_t scid_len = r.u8();
    if (scid_len > max_cid_len) {
      if (pos == 0) return quic_outcome::not_quic;
      break;
    }
    r.take(scid_len);
    if (!r.ok()) {
      if (pos == 0) return quic_outcome::truncated;
      break;
    }
    if (pos == 0) {
      out.version = version;
      out.dcid = dcid;
      if (version == 0) return quic_outcome::not_initial;  // version negotiation
    } else if (version != out.version) {
      break;  // coalesced packets share one version; anything else is trailing junk
    }
    const version_params vp = params_for(version);
    if (!vp.known) {
      return quic_version_reserved(version) ? quic_outcome::reserved_version
                                            : quic_outcome::unsupported_version;
    }
    out.handshake = vp.handshake;
    // RFC 9000 §12.2: a receiver SHOULD ignore coalesced packets whose DCID differs from the
    // first one's. Servers do, so such a packet is skipped by its Length, never opened.
    const bool other_dcid =
        pos != 0 && !std::equal(dcid.begin(), dcid.end(), out.dcid.begin(), out.dcid.end());
    const long_type type = decode_type(first, vp.v2);
    if (type == long_type::retry) break;  // no Length field; never sent by a client anyway

    std::uint64_t token_len = 0, length = 0;
    if (type == long_type::initial) {
      if (!read_varint(r, token_len) || token_len > r.remaining()) {
        if (!any_initial) return quic_outcome::truncated;
        break;
      }
      r.skip(static_cast<std::size_t>(token_len));
    }
    if (!read_varint(r, length) || length > r.remaining()) {
      if (!any_initial) return quic_outcome::truncated;
      break;
    }
    const std::size_t pn_offset = r.position();
    const std::size_t packet_len = pn_offset + static_cast<std::size_t>(length);
    const bytes packet = rest.first(packet_len);

    if (type == long_type::initial && other_dcid) {
      if (out.other_dcid_packets < UINT8_MAX) ++out.other_dcid_packets;
    } else if (type == long_type::initial) {
      if (out.packets == UINT8_MAX) break;
      any_initial = true;
      bytes plaintext;
      if (impl_->install_keys(version, vp, dcid) &&
          impl_->open(packet, pn_offset, scratch.data() + pos, plaintext)) {
        ++out.packets;
        switch (walk_frames(plaintext, vp, out)) {
          case frames_result::ok:
            break;
          case frames_result::malformed:
            malformed = true;
            break;
          case frames_result::too_many_chunks:
            overflow = true;
            break;
        }
        if (overflow) break;
      }
    }
    pos += packet_len;
  }

  if (out.packets == 0) {
    return any_initial ? quic_outcome::decrypt_failed : quic_outcome::not_initial;
  }
  if (overflow) return quic_outcome::too_many_chunks;
  if (malformed) return quic_outcome::malformed;
  return quic_outcome::initial;
}

}  // namespace sluice::packet
