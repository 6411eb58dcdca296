// ICMP / ICMPv6 reader. Choices worth knowing (the header states the contract):
// - The quoted datagram's own lengths bound what is read (a quote longer than the datagram it
//   claims to be is padding), and the bytes present bound it too (quotes are cut by design).
// - Only an IP header whose every byte is present counts; ports need their 4 bytes. A quote
//   whose IPv6 extension chain runs past the bytes present is `truncated`.
// - A non-first fragment quoted has no L4 header: it is `quoted` without ports.
// - A quote of an ICMP error is `nested_error` (no host sends one; a crafted one is not read
//   further), a quote of an informational ICMP message is `quoted` without ports.

#include "dataplane/packet/icmp.hpp"

#include <cstring>

namespace sluice::packet {

const char* to_string(icmp_outcome o) noexcept {
  switch (o) {
#define SLUICE_X(name, str) \
  case icmp_outcome::name:  \
    return str;
    SLUICE_ICMP_OUTCOMES(SLUICE_X)
#undef SLUICE_X
    case icmp_outcome::count:
      break;
  }
  return "?";
}

namespace {

constexpr std::size_t icmp_header = 8;  // type, code, checksum, 4 bytes per type
constexpr int max_ipv6_ext_headers = 8;

constexpr bool has_port_pair(std::uint8_t proto) noexcept {
  return proto == 6 || proto == 17 || proto == 33 || proto == 132 || proto == 136;
}

// The quoted L4 header at `l4` (`avail` bytes of it present).
icmp_outcome read_quoted_l4(quoted_packet& q, const std::uint8_t* l4, std::size_t avail) noexcept {
  if (has_port_pair(q.l4_proto)) {
    if (avail < 4) return icmp_outcome::truncated;
    q.src_port = load_be16(l4);
    q.dst_port = load_be16(l4 + 2);
    q.has_ports = true;
    return icmp_outcome::quoted;
  }
  const bool quoted_icmp = (q.ip_version == 4 && q.l4_proto == ipproto_icmp) ||
                           (q.ip_version == 6 && q.l4_proto == ipproto_icmpv6);
  if (quoted_icmp) {
    if (avail < 1) return icmp_outcome::truncated;
    if (icmp_is_error(q.ip_version, l4[0])) return icmp_outcome::nested_error;
  }
  return icmp_outcome::quoted;
}

icmp_outcome read_quoted_v4(quoted_packet& q, bytes b) noexcept {
  if (b.size() < 20) return icmp_outcome::truncated;
  const std::uint8_t* h = b.data();
  const std::size_t ihl = (h[0] & 0x0fu) * 4u;
  const std::size_t total = load_be16(h + 2);
  if ((h[0] >> 4) != 4 || ihl < 20 || total < ihl) return icmp_outcome::bad_quote;
  if (ihl > b.size()) return icmp_outcome::truncated;
  q.ip_version = 4;
  q.l4_proto = h[9];
  std::memcpy(q.src.bytes.data(), h + 12, 4);
  std::memcpy(q.dst.bytes.data(), h + 16, 4);
  q.src.version = 4;
  q.dst.version = 4;
  if ((load_be16(h + 6) & 0x1fff) != 0) return icmp_outcome::quoted;  // no L4 header here
  const std::size_t end = total < b.size() ? total : b.size();
  return read_quoted_l4(q, h + ihl, end - ihl);
}

icmp_outcome read_quoted_v6(quoted_packet& q, bytes b) noexcept {
  if (b.size() < 40) return icmp_outcome::truncated;
  const std::uint8_t* h = b.data();
  const std::size_t payload = load_be16(h + 4);
  if ((h[0] >> 4) != 6 || payload == 0) return icmp_outcome::bad_quote;
  q.ip_version = 6;
  std::memcpy(q.src.bytes.data(), h + 8, 16);
  std::memcpy(q.dst.bytes.data(), h + 24, 16);
  q.src.version = 6;
  q.dst.version = 6;
  const std::size_t end = 40 + payload < b.size() ? 40 + payload : b.size();
  std::size_t cur = 40;
  std::uint8_t nh = h[6];
  for (int i = 0;; ++i) {
    if (nh != 0 && nh != 43 && nh != 44 && nh != 51 && nh != 60) break;
    if (i >= max_ipv6_ext_headers) return icmp_outcome::bad_quote;
    if (end - cur < 8) return icmp_outcome::truncated;
    const std::uint8_t* x = h + cur;
    if (nh == 44) {
      nh = x[0];
      cur += 8;
      if ((load_be16(x + 2) & 0xfff8) != 0) {  // a later fragment: no L4 header
        q.l4_proto = nh;
        return icmp_outcome::quoted;
      }
      continue;
    }
    const std::size_t len = nh == 51 ? (x[1] + 2u) * 4u : (x[1] + 1u) * 8u;
    if (len > end - cur) return icmp_outcome::truncated;
    nh = x[0];
    cur += len;
  }
  q.l4_proto = nh;
  return read_quoted_l4(q, h + cur, end - cur);
}

}  // namespace

bool icmp_is_error(std::uint8_t ip_version, std::uint8_t type) noexcept {
  if (ip_version == 6) return type >= 1 && type <= 4;
  return type == 3 || type == 4 || type == 5 || type == 11 || type == 12;
}

bool icmpv6_is_neighbour_discovery(std::uint8_t type) noexcept {
  return type >= 133 && type <= 137;
}

icmp_info parse_icmp(bytes message, std::uint8_t ip_version) noexcept {
  icmp_info out;
  if (message.size() < 4 || (ip_version != 4 && ip_version != 6)) return out;  // truncated
  out.type = message[0];
  out.code = message[1];
  out.error = icmp_is_error(ip_version, out.type);
  if (!out.error) {
    out.outcome = icmp_outcome::not_error;
    return out;
  }
  if (message.size() < icmp_header) return out;  // truncated
  const bytes quote = message.subspan(icmp_header);
  if (quote.empty()) return out;
  // ICMP errors quote IPv4, ICMPv6 errors IPv6; anything else is not a datagram they answer.
  const std::uint8_t version = quote[0] >> 4;
  if (version != ip_version) {
    out.outcome = icmp_outcome::bad_quote;
    return out;
  }
  out.outcome =
      ip_version == 4 ? read_quoted_v4(out.quoted, quote) : read_quoted_v6(out.quoted, quote);
  return out;
}

}  // namespace sluice::packet
