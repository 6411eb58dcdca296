#include "dataplane/packet/tls.hpp"

#include <algorithm>
#include <array>
#include <cstring>

namespace sluice::packet {

namespace {

constexpr std::array<const char*, static_cast<std::size_t>(tls_outcome::count)> tls_outcome_names{
#define SLUICE_X(name, str) str,
    SLUICE_TLS_OUTCOMES(SLUICE_X)
#undef SLUICE_X
};

constexpr std::uint8_t content_handshake = 22;
constexpr std::uint8_t handshake_client_hello = 1;
constexpr std::size_t record_header_len = 5;
constexpr std::size_t handshake_header_len = 4;
// TLSCiphertext may carry 2^14 + 2048 bytes; that is the widest a first record can look.
constexpr std::size_t max_ciphertext_len = (1u << 14) + 2048;
// A client's handshake records are plaintext: 2^14 per RFC 8446 §5.1, plus the slack older
// stacks (TLSCompressed, 2^14 + 1024) were allowed. Anything larger is not a real client.
constexpr std::size_t max_plaintext_record_len = (1u << 14) + 256;

constexpr std::uint16_t ext_server_name = 0;
constexpr std::uint16_t ext_alpn = 16;
constexpr std::uint16_t ext_ech = 0xfe0d;
constexpr std::uint16_t ext_esni = 0xffce;
constexpr std::uint8_t name_type_host_name = 0;

// ServerNameList (RFC 6066 §3): the list must exactly fill the extension, every entry must fit
// the list, and HostName is <1..2^16-1>. The first host_name wins.
bool read_server_name(bytes data, client_hello_info& out) noexcept {
  reader r{data};
  const std::uint16_t list_len = r.u16();
  if (!r.ok() || list_len == 0 || list_len != r.remaining()) return false;
  while (r.remaining() != 0) {
    const std::uint8_t type = r.u8();
    const std::uint16_t len = r.u16();
    const bytes name = r.take(len);
    if (!r.ok()) return false;
    if (type == name_type_host_name) {
      if (len == 0) return false;
      if (!out.has_sni) {
        out.sni = as_chars(name);
        out.has_sni = true;
      }
    }
  }
  return true;
}

// ProtocolNameList (RFC 7301 §3.1): ProtocolName is <1..2^8-1>; report the first.
bool read_alpn(bytes data, client_hello_info& out) noexcept {
  reader r{data};
  const std::uint16_t list_len = r.u16();
  if (!r.ok() || list_len < 2 || list_len != r.remaining()) return false;
  bool first = true;
  while (r.remaining() != 0) {
    const std::uint8_t len = r.u8();
    const bytes proto = r.take(len);
    if (!r.ok() || len == 0) return false;
    if (first) {
      out.alpn = as_chars(proto);
      first = false;
    }
  }
  return true;
}

// Duplicate detection without a 64 Kibit table: a 256-bit filter, and a rescan of the earlier
// extensions only when the filter says "maybe seen" (rare: real hellos carry ~20 extensions).
constexpr unsigned ext_hash(std::uint16_t type) noexcept {
  return static_cast<unsigned>((type * 0x9e37u) >> 8) & 0xffu;
}

bool seen_before(bytes block, std::size_t end, std::uint16_t type) noexcept {
  reader r{block.first(end)};
  while (r.remaining() != 0) {
    const std::uint16_t t = r.u16();
    const std::uint16_t len = r.u16();
    r.skip(len);
    if (t == type) return true;
  }
  return false;
}

tls_outcome parse_client_hello_body(bytes message, client_hello_info& out) noexcept {
  if (message.empty()) return tls_outcome::need_more;
  if (message[0] != handshake_client_hello) return tls_outcome::not_client_hello;
  if (message.size() < handshake_header_len) return tls_outcome::need_more;
  const std::uint32_t body_len = load_be24(message.data() + 1);
  if (body_len > message.size() - handshake_header_len) return tls_outcome::need_more;

  // From here the whole body is present: running short is an inconsistency, not need_more.
  reader r{message.subspan(handshake_header_len, body_len)};
  const std::uint16_t legacy_version = r.u16();
  r.skip(32);  // random
  const std::uint8_t session_id_len = r.u8();
  if (session_id_len > 32) return tls_outcome::malformed;
  r.skip(session_id_len);
  const std::uint16_t suites_len = r.u16();
  if (r.ok() && (suites_len < 2 || (suites_len & 1u) != 0)) return tls_outcome::malformed;
  r.skip(suites_len);
  const std::uint8_t compression_len = r.u8();
  if (r.ok() && compression_len < 1) return tls_outcome::malformed;
  r.skip(compression_len);
  if (!r.ok()) return tls_outcome::malformed;
  out.legacy_version = legacy_version;
  if (r.remaining() == 0) return tls_outcome::client_hello;  // pre-extension hello (SSL 3.0)

  const std::uint16_t block_len = r.u16();
  // Nothing may follow the extensions (servers reject "extra data"), so the block fills the body.
  if (!r.ok() || block_len != r.remaining()) return tls_outcome::malformed;
  const bytes block = r.rest();

  std::array<std::uint64_t, 4> filter{};
  reader ext{block};
  while (ext.remaining() != 0) {
    const std::size_t start = ext.position();
    const std::uint16_t type = ext.u16();
    const std::uint16_t len = ext.u16();
    const bytes data = ext.take(len);
    if (!ext.ok()) return tls_outcome::malformed;

    const unsigned h = ext_hash(type);
    const std::uint64_t bit = std::uint64_t{1} << (h & 63u);
    if ((filter[h >> 6] & bit) != 0 && seen_before(block, start, type)) {
      return tls_outcome::malformed;
    }
    filter[h >> 6] |= bit;

    switch (type) {
      case ext_server_name:
        if (!read_server_name(data, out)) return tls_outcome::malformed;
        break;
      case ext_alpn:
        if (!read_alpn(data, out)) return tls_outcome::malformed;
        break;
      case ext_ech:
        out.has_ech = true;
        break;
      case ext_esni:
        out.has_esni = true;
        break;
      default:
        break;
    }
  }
  return tls_outcome::client_hello;
}

}  // namespace

const char* to_string(tls_outcome o) noexcept {
  const auto i = static_cast<std::size_t>(o);
  return i < tls_outcome_names.size() ? tls_outcome_names[i] : "unknown";
}

tls_outcome parse_client_hello(bytes message, client_hello_info& out) noexcept {
  out = client_hello_info{};
  const tls_outcome o = parse_client_hello_body(message, out);
  // A refused hello reports nothing: a name seen before the fault must not be acted on.
  if (o != tls_outcome::client_hello) out = client_hello_info{};
  return o;
}

bool looks_like_tls_handshake(bytes stream_prefix) noexcept {
  const std::size_t n = stream_prefix.size();
  if (n == 0 || stream_prefix[0] != content_handshake) return false;
  if (n >= 2 && stream_prefix[1] != 3) return false;
  if (n >= 3 && stream_prefix[2] > 4) return false;
  if (n >= record_header_len) {
    const std::uint16_t len = load_be16(stream_prefix.data() + 3);
    if (len == 0 || len > max_ciphertext_len) return false;
  }
  return true;
}

tls_outcome tls_handshake_from_records(bytes stream, std::span<std::uint8_t> scratch,
                                       std::size_t& message_len) noexcept {
  message_len = 0;
  if (stream.empty()) return tls_outcome::need_more;
  if (!looks_like_tls_handshake(stream)) return tls_outcome::not_tls;

  std::size_t pos = 0;
  std::size_t filled = 0;
  std::size_t total = 0;  // whole message length once its 4-byte header is in
  while (true) {
    if (stream.size() - pos < record_header_len) {
      // A partial next header must still be a handshake record header.
      if (pos < stream.size() && stream[pos] != content_handshake) return tls_outcome::malformed;
      if (pos + 1 < stream.size() && stream[pos + 1] != 3) return tls_outcome::malformed;
      return tls_outcome::need_more;
    }
    const std::uint8_t* hdr = stream.data() + pos;
    // Before the first handshake message is complete only handshake records may appear
    // (a ChangeCipherSpec or alert here is not a client opening a connection).
    if (hdr[0] != content_handshake || hdr[1] != 3) return tls_outcome::malformed;
    const std::size_t len = load_be16(hdr + 3);
    if (len == 0 || len > max_plaintext_record_len) return tls_outcome::malformed;

    const std::size_t frag_start = pos + record_header_len;
    const std::size_t avail = std::min(len, stream.size() - frag_start);
    const std::uint8_t* frag = stream.data() + frag_start;
    std::size_t used = 0;

    if (filled < handshake_header_len) {
      if (scratch.size() < handshake_header_len) return tls_outcome::too_large;
      const std::size_t n = std::min(handshake_header_len - filled, avail);
      std::memcpy(scratch.data() + filled, frag, n);
      filled += n;
      used = n;
      if (filled == handshake_header_len) {
        total = handshake_header_len + load_be24(scratch.data() + 1);
        if (total > scratch.size()) return tls_outcome::too_large;
      }
    }
    if (filled >= handshake_header_len) {
      const std::size_t n = std::min(total - filled, avail - used);
      std::memcpy(scratch.data() + filled, frag + used, n);
      filled += n;
      if (filled == total) {
        message_len = total;
        return tls_outcome::client_hello;
      }
    }
    if (avail < len) return tls_outcome::need_more;
    pos = frag_start + len;
  }
}

bool is_sslv2_client_hello(bytes stream_prefix) noexcept {
  // RFC 6101 Appendix E.2: [0x80 | len_hi, len_lo, msg_type = 1, version major 3, minor].
  return stream_prefix.size() >= 5 && (stream_prefix[0] & 0x80) != 0 && stream_prefix[2] == 1 &&
         stream_prefix[3] == 3 && stream_prefix[4] <= 4;
}

}  // namespace sluice::packet
