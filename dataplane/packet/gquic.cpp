#include "dataplane/packet/gquic.hpp"

#include <algorithm>

namespace sluice::packet {

const char* to_string(gquic_outcome o) noexcept {
  switch (o) {
#define SLUICE_X(name, str) \
  case gquic_outcome::name: \
    return str;
    SLUICE_GQUIC_OUTCOMES(SLUICE_X)
#undef SLUICE_X
    case gquic_outcome::count:
      break;
  }
  return "unknown";
}

namespace {

// Unencrypted gQUIC packets (the client's CHLO) carry a 12-byte FNV-1a-128 message hash in place
// of an AEAD tag, right after the packet number.
constexpr std::size_t message_hash_len = 12;
constexpr std::uint32_t crypto_stream_id = 1;

[[nodiscard]] constexpr std::uint32_t tag(char a, char b, char c, char d) noexcept {
  // Tags are compared as they sit on the wire, read big-endian.
  return (std::uint32_t{static_cast<std::uint8_t>(a)} << 24) |
         (std::uint32_t{static_cast<std::uint8_t>(b)} << 16) |
         (std::uint32_t{static_cast<std::uint8_t>(c)} << 8) | static_cast<std::uint8_t>(d);
}
constexpr std::uint32_t tag_chlo = tag('C', 'H', 'L', 'O');
constexpr std::uint32_t tag_sni = tag('S', 'N', 'I', '\0');

[[nodiscard]] constexpr std::uint32_t load_le32(const std::uint8_t* p) noexcept {
  return std::uint32_t{p[0]} | (std::uint32_t{p[1]} << 8) | (std::uint32_t{p[2]} << 16) |
         (std::uint32_t{p[3]} << 24);
}

[[nodiscard]] constexpr std::uint64_t read_be(reader& r, std::size_t n) noexcept {
  std::uint64_t v = 0;
  for (std::uint8_t b : r.take(n)) v = (v << 8) | b;
  return v;
}

// 'Q' followed by three digits, as a number (Q046 -> 46); -1 otherwise.
[[nodiscard]] constexpr int q_number(std::uint32_t version) noexcept {
  if ((version >> 24) != 'Q') return -1;
  int n = 0;
  for (int shift = 16; shift >= 0; shift -= 8) {
    const auto c = static_cast<int>((version >> shift) & 0xff);
    if (c < '0' || c > '9') return -1;
    n = n * 10 + (c - '0');
  }
  return n;
}

// Q039-Q043 use the legacy public header (big-endian fields since Q039); Q044-Q046 the
// IETF-invariant long header. Q047+ carry their handshake in CRYPTO frames, Q050 encrypts it.
[[nodiscard]] constexpr bool legacy_version(int q) noexcept { return q >= 39 && q <= 43; }
[[nodiscard]] constexpr bool long_header_version(int q) noexcept { return q >= 44 && q <= 46; }

// A handshake message (QUIC crypto, "CHLO" + LE16 tag count + 2 padding bytes + a table of
// (tag, LE32 end offset) + values) that starts at the beginning of `data`. The last end offset
// is the length of the values, so a prefix is told from a bad message.
[[nodiscard]] gquic_outcome parse_chlo(bytes data, gquic_info& out) noexcept {
  if (data.size() < 4) return gquic_outcome::need_more;
  if (load_be32(data.data()) != tag_chlo) return gquic_outcome::no_chlo;
  if (data.size() < 8) return gquic_outcome::need_more;
  const std::size_t tags = std::size_t{data[4]} | (std::size_t{data[5]} << 8);
  const std::size_t values_at = 8 + 8 * tags;
  // Offsets must not decrease; check the part of the table we hold before waiting for more.
  const std::size_t held = std::min(tags, (data.size() - 8) / 8);
  std::uint32_t previous_end = 0;
  for (std::size_t i = 0; i < held; ++i) {
    const std::uint32_t end = load_le32(data.data() + 8 + 8 * i + 4);
    if (end < previous_end) return gquic_outcome::malformed;
    previous_end = end;
  }
  if (values_at > data.size()) return gquic_outcome::need_more;
  if (values_at + previous_end > data.size()) return gquic_outcome::need_more;
  const bytes values = data.subspan(values_at);
  previous_end = 0;
  for (std::size_t i = 0; i < tags; ++i) {
    const std::uint8_t* entry = data.data() + 8 + 8 * i;
    const std::uint32_t end = load_le32(entry + 4);
    if (load_be32(entry) == tag_sni) {
      out.sni = as_chars(values.subspan(previous_end, end - previous_end));
      return gquic_outcome::chlo;
    }
    previous_end = end;
  }
  return gquic_outcome::chlo;  // a CHLO without SNI
}

}  // namespace

gquic_outcome parse_gquic_chlo(bytes datagram, gquic_info& out) noexcept {
  out = gquic_info{};
  reader r(datagram);
  const std::uint8_t flags = r.u8();
  if (!r.ok()) return gquic_outcome::not_gquic;

  std::size_t pn_len = 0;
  if (flags & 0x80) {
    // Long header: flags, version, DCIL|SCIL nibbles (+3 when non-zero), CIDs, packet number.
    const std::uint32_t version = r.u32();
    const std::uint8_t cil = r.u8();
    if (!r.ok() || !long_header_version(q_number(version))) return gquic_outcome::not_gquic;
    out.version = version;
    if ((flags & 0x40) == 0) return gquic_outcome::malformed;
    const std::size_t dcil = (cil >> 4) ? (cil >> 4) + 3u : 0u;
    const std::size_t scil = (cil & 0x0f) ? (cil & 0x0f) + 3u : 0u;
    r.skip(dcil + scil);
    if (((flags >> 4) & 3) != 0) return gquic_outcome::no_chlo;  // only Initial carries CHLO
    pn_len = (flags & 3u) + 1;
  } else {
    // Legacy public header: a client's first packets carry the version flag (0x01).
    if ((flags & 0x01) == 0 || (flags & 0x02) != 0) return gquic_outcome::not_gquic;
    if (flags & 0x08) r.skip(8);
    const std::uint32_t version = r.u32();
    if (!r.ok() || !legacy_version(q_number(version))) return gquic_outcome::not_gquic;
    out.version = version;
    if (flags & 0x04) r.skip(32);  // diversification nonce (server-sent, but harmless)
    static constexpr std::size_t pn_lengths[] = {1, 2, 4, 6};
    pn_len = pn_lengths[(flags >> 4) & 3];
  }
  r.skip(pn_len + message_hash_len);
  if (!r.ok()) return gquic_outcome::malformed;

  while (r.remaining() > 0) {
    const std::uint8_t type = r.u8();
    if (type == 0x00) break;      // PADDING runs to the end of the packet
    if (type == 0x07) continue;   // PING
    if ((type & 0x80) == 0) return gquic_outcome::no_chlo;  // ACK etc.: CHLO packets lead with it
    // STREAM: 1 F D OOO SS.
    const bool has_length = (type & 0x20) != 0;
    const std::size_t offset_code = (type >> 2) & 7;
    const std::size_t offset_len = offset_code == 0 ? 0 : offset_code + 1;
    const std::size_t id_len = (type & 3u) + 1;
    const auto stream_id = static_cast<std::uint32_t>(read_be(r, id_len));
    const std::uint64_t offset = read_be(r, offset_len);
    const std::size_t length = has_length ? r.u16() : r.remaining();
    if (!r.ok() || length > r.remaining()) return gquic_outcome::malformed;
    const bytes data = r.take(length);
    if (stream_id == crypto_stream_id && offset == 0) {
      // The CHLO must be whole in this one packet; a cut one is damaged, not pending.
      const auto o = parse_chlo(data, out);
      return o == gquic_outcome::need_more ? gquic_outcome::malformed : o;
    }
  }
  return gquic_outcome::no_chlo;
}

gquic_outcome parse_gquic_chlo_message(bytes message, gquic_info& out) noexcept {
  out = gquic_info{};
  return parse_chlo(message, out);
}

}  // namespace sluice::packet
