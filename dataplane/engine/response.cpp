// Reset and notice builders. The header states the contract; RESPONSES.md the reasoning.
//
// Shape: `emit_ip` writes L2 prefix + IPv4/IPv6 header of an answer; `emit` adds a 20-byte TCP
// header + payload and the checksum, `emit_udp` a UDP header + payload. The public builders only
// choose direction, sequence numbers, flags and payload.

#include "dataplane/engine/response.hpp"

#include <array>
#include <cstring>

namespace sluice::engine {

namespace {

using packet::bytes;
using packet::frame_info;
using packet::frame_outcome;

constexpr std::uint8_t ipproto_tcp = 6;
constexpr std::uint8_t ipproto_udp = 17;
constexpr std::size_t udp_header = 8;
constexpr std::size_t dns_header = 12;
constexpr std::size_t eth_header = 14;
constexpr std::size_t pppoe_header = 8;  // PPPoE session header (6) + PPP protocol (2)
constexpr std::size_t tcp_header = 20;

inline void store_be16(std::uint8_t* p, std::uint32_t v) noexcept {
  p[0] = static_cast<std::uint8_t>(v >> 8);
  p[1] = static_cast<std::uint8_t>(v);
}
inline void store_be32(std::uint8_t* p, std::uint32_t v) noexcept {
  store_be16(p, v >> 16);
  store_be16(p + 2, v & 0xffff);
}

// Ones' complement sum of big-endian 16-bit words (odd tail padded with zero), unfolded.
inline std::uint64_t sum_words(const std::uint8_t* p, std::size_t n) noexcept {
  std::uint64_t sum = 0;
  std::size_t i = 0;
  for (; i + 2 <= n; i += 2) sum += packet::load_be16(p + i);
  if (i < n) sum += std::uint32_t{p[i]} << 8;
  return sum;
}
inline std::uint16_t checksum(std::uint64_t sum) noexcept {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<std::uint16_t>(~sum & 0xffff);
}

// What the TCP header of the answer says; everything else follows from the original.
struct segment {
  bool reverse;  // toward the original's sender
  std::uint32_t seq;
  std::uint32_t ack;
  std::uint8_t flags;
  std::uint16_t window;
};

// Sequence space the original occupies: payload, plus one each for SYN and FIN.
inline std::uint32_t seg_len(const frame_info& info) noexcept {
  return std::uint32_t{info.payload_length} + ((info.tcp_flags & packet::tcp_syn) ? 1u : 0u) +
         ((info.tcp_flags & packet::tcp_fin) ? 1u : 0u);
}

inline bool answerable(bytes original, const frame_info& info,
                       std::uint8_t proto = ipproto_tcp) noexcept {
  if (info.outcome != frame_outcome::ok || info.l4_proto != proto || info.is_fragment) {
    return false;
  }
  // Inside a tunnel the answer would need new outer headers (lengths, checksums, tunnel
  // fields, swapped endpoints): refused, so the caller drops instead.
  if (info.encap & packet::encap_tunnels) return false;
  if (info.ip_version != 4 && info.ip_version != 6) return false;
  if (info.l3_offset < eth_header || info.l3_offset > original.size()) return false;
  if ((info.encap & packet::encap_pppoe) && info.l3_offset < eth_header + pppoe_header) {
    return false;
  }
  return true;
}

inline std::uint8_t draw_ttl(response_entropy& e) noexcept {
  constexpr std::uint64_t span = response_ttl_max - response_ttl_min + 1;
  return static_cast<std::uint8_t>(response_ttl_min + e.next() % span);
}

// The answer's L2 prefix and IP header for an L4 segment of `l4_len` bytes of `proto`, toward the
// original's sender (`reverse`) or on to its receiver. Returns the L4 header's place in `out` and
// the pseudo-header sum, or nullptr when the original cannot be answered or `out` is too small.
struct ip_answer {
  std::uint8_t* l4 = nullptr;
  std::uint64_t pseudo = 0;
  std::size_t total = 0;  // the whole frame
};

ip_answer emit_ip(bytes original, const frame_info& info, bool reverse, std::uint8_t proto,
                  std::size_t l4_len, response_entropy& e, std::span<std::uint8_t> out) noexcept {
  if (!answerable(original, info, proto)) return {};
  const std::size_t l2 = info.l3_offset;
  const bool v4 = info.ip_version == 4;
  const std::size_t ip_header = v4 ? 20 : 40;
  const std::size_t total = l2 + ip_header + l4_len;
  if (total > out.size() || ip_header + l4_len > 0xffff) return {};
  // Our source MAC is the original's destination: never answer from a group address.
  if (reverse && (original[0] & 0x01)) return {};

  std::uint8_t* o = out.data();
  std::memcpy(o, original.data(), l2);
  if (reverse) {
    std::memcpy(o, original.data() + 6, 6);
    std::memcpy(o + 6, original.data(), 6);
  }
  if (info.encap & packet::encap_pppoe) {
    // PPPoE only ever sits right before the IP header (the parser accepts nothing in between);
    // its length counts the PPP protocol field and the IP datagram.
    store_be16(o + l2 - pppoe_header + 4, static_cast<std::uint32_t>(ip_header + l4_len + 2));
  }

  const packet::ip_address& src = reverse ? info.dst : info.src;
  const packet::ip_address& dst = reverse ? info.src : info.dst;
  std::uint8_t* ip = o + l2;
  std::uint64_t pseudo = 0;
  if (v4) {
    ip[0] = 0x45;
    ip[1] = 0;
    store_be16(ip + 2, static_cast<std::uint32_t>(ip_header + l4_len));
    store_be16(ip + 4, static_cast<std::uint32_t>(e.next() & 0xffff));
    store_be16(ip + 6, 0x4000);  // DF
    ip[8] = draw_ttl(e);
    ip[9] = proto;
    store_be16(ip + 10, 0);
    std::memcpy(ip + 12, src.bytes.data(), 4);
    std::memcpy(ip + 16, dst.bytes.data(), 4);
    store_be16(ip + 10, checksum(sum_words(ip, 20)));
    pseudo = sum_words(ip + 12, 8);
  } else {
    // Version 6, traffic class 0, random flow label (a constant one would fingerprint us).
    const auto label = static_cast<std::uint32_t>(e.next() & 0xfffff);
    store_be32(ip, (6u << 28) | label);
    store_be16(ip + 4, static_cast<std::uint32_t>(l4_len));
    ip[6] = proto;
    ip[7] = draw_ttl(e);
    std::memcpy(ip + 8, src.bytes.data(), 16);
    std::memcpy(ip + 24, dst.bytes.data(), 16);
    pseudo = sum_words(ip + 8, 32);
  }
  pseudo += proto + l4_len;
  return {ip + ip_header, pseudo, total};
}

std::size_t emit(bytes original, const frame_info& info, const segment& sg, response_entropy& e,
                 bytes payload, std::span<std::uint8_t> out) noexcept {
  const std::size_t l4_len = tcp_header + payload.size();
  const ip_answer a = emit_ip(original, info, sg.reverse, ipproto_tcp, l4_len, e, out);
  if (a.l4 == nullptr) return 0;
  std::uint8_t* tcp = a.l4;
  store_be16(tcp, sg.reverse ? info.dst_port : info.src_port);
  store_be16(tcp + 2, sg.reverse ? info.src_port : info.dst_port);
  store_be32(tcp + 4, sg.seq);
  store_be32(tcp + 8, sg.ack);
  tcp[12] = 5 << 4;
  tcp[13] = sg.flags;
  store_be16(tcp + 14, sg.window);
  store_be32(tcp + 16, 0);  // checksum, urgent pointer
  if (!payload.empty()) std::memcpy(tcp + tcp_header, payload.data(), payload.size());
  store_be16(tcp + 16, checksum(a.pseudo + sum_words(tcp, l4_len)));
  return a.total;
}

// Bytes of the first question (QNAME labels, QTYPE, QCLASS) at the start of `q`, or 0 when it is
// not a plain uncompressed name within 255 bytes (a query's question never points elsewhere).
std::size_t first_question_length(bytes q) noexcept {
  std::size_t i = 0;
  while (i < q.size() && i <= 255) {
    const std::uint8_t len = q[i];
    if (len == 0) return i + 1 + 4 <= q.size() ? i + 1 + 4 : 0;
    if (len > 63) return 0;  // compression pointer or reserved label type
    i += 1 + len;
  }
  return 0;
}

// ---- the notice's text ----------------------------------------------------------------------

// One input character as it appears in the HTML body.
struct html_char {
  std::size_t in;        // input bytes consumed
  std::string_view out;  // its escaped form
};

// Well-formed UTF-8 sequences pass through; markup characters become entities; control
// characters and malformed bytes become '?', so wire bytes can neither inject markup nor make the
// page invalid UTF-8.
inline html_char next_html_char(std::string_view s, std::size_t i) noexcept {
  const auto c = static_cast<unsigned char>(s[i]);
  switch (c) {
    case '&':
      return {1, "&amp;"};
    case '<':
      return {1, "&lt;"};
    case '>':
      return {1, "&gt;"};
    case '"':
      return {1, "&quot;"};
    case '\'':
      return {1, "&#39;"};
    default:
      break;
  }
  if (c < 0x20 || c == 0x7f) return {1, "?"};
  if (c < 0x80) return {1, s.substr(i, 1)};
  std::size_t n = 0;
  unsigned char lo = 0x80;
  unsigned char hi = 0xbf;  // allowed range of the first continuation byte
  if (c >= 0xc2 && c <= 0xdf) {
    n = 1;
  } else if (c >= 0xe0 && c <= 0xef) {
    n = 2;
    if (c == 0xe0) lo = 0xa0;  // overlong
    if (c == 0xed) hi = 0x9f;  // surrogates
  } else if (c >= 0xf0 && c <= 0xf4) {
    n = 3;
    if (c == 0xf0) lo = 0x90;  // overlong
    if (c == 0xf4) hi = 0x8f;  // above U+10FFFF
  } else {
    return {1, "?"};
  }
  if (s.size() - i <= n) return {1, "?"};
  for (std::size_t k = 1; k <= n; ++k) {
    const auto d = static_cast<unsigned char>(s[i + k]);
    const unsigned char min = k == 1 ? lo : 0x80;
    const unsigned char max = k == 1 ? hi : 0xbf;
    if (d < min || d > max) return {1, "?"};
  }
  return {n + 1, s.substr(i, n + 1)};
}

struct fit {
  std::size_t in;   // input bytes that fit
  std::size_t out;  // their escaped size
  bool complete;    // the whole input fits
};

// The longest prefix of `s`, in whole characters, whose escaped form fits `budget` bytes.
inline fit escaped_fit(std::string_view s, std::size_t budget) noexcept {
  fit f{0, 0, true};
  while (f.in < s.size()) {
    const html_char ch = next_html_char(s, f.in);
    if (f.out + ch.out.size() > budget) {
      f.complete = false;
      break;
    }
    f.in += ch.in;
    f.out += ch.out.size();
  }
  return f;
}

class text_writer {
 public:
  explicit text_writer(std::span<std::uint8_t> out) noexcept : out_(out) {}
  void put(std::string_view s) noexcept {
    // Sizes were computed before writing; the check only guards against a sizing bug.
    if (s.size() > out_.size() - pos_) return;
    std::memcpy(out_.data() + pos_, s.data(), s.size());
    pos_ += s.size();
  }
  void put_escaped(std::string_view s, std::size_t in) noexcept {
    for (std::size_t i = 0; i < in;) {
      const html_char ch = next_html_char(s, i);
      put(ch.out);
      i += ch.in;
    }
  }
  void put_decimal(std::size_t v) noexcept {
    char digits[20];
    std::size_t n = 0;
    do {
      digits[n++] = static_cast<char>('0' + v % 10);
      v /= 10;
    } while (v != 0);
    char rev[20];
    for (std::size_t k = 0; k < n; ++k) rev[k] = digits[n - 1 - k];
    put({rev, n});
  }
  [[nodiscard]] std::size_t size() const noexcept { return pos_; }

 private:
  std::span<std::uint8_t> out_;
  std::size_t pos_ = 0;
};

constexpr std::string_view status_and_headers =
    "HTTP/1.1 451 Unavailable For Legal Reasons\r\n"
    "Content-Type: text/html; charset=utf-8\r\n"
    "Connection: close\r\n"
    "Cache-Control: no-store\r\n"
    "Content-Length: ";
constexpr std::string_view link_open = "\r\nLink: <";
constexpr std::string_view link_close = ">; rel=\"blocked-by\"";
constexpr std::string_view headers_end = "\r\n\r\n";
constexpr std::string_view body_open =
    "<!DOCTYPE html>\n"
    "<html><head><meta charset=\"utf-8\"><title>451 Unavailable For Legal Reasons</title></head>\n"
    "<body><h1>451 Unavailable For Legal Reasons</h1>\n"
    "<p>Access to <strong>";
constexpr std::string_view body_middle =
    "</strong> is blocked by order of the competent authority.</p>\n"
    "<p>Legal basis: ";
constexpr std::string_view body_close = "</p>\n</body></html>\n";
constexpr std::string_view ellipsis = "...";
constexpr std::size_t max_name_out = 512;
constexpr std::size_t max_url = 512;
constexpr std::size_t content_length_digits = 4;  // the body is under notice_max_payload
static_assert(notice_max_payload < 10000);

inline bool url_ok(std::string_view url) noexcept {
  if (url.empty() || url.size() > max_url) return false;
  for (char ch : url) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x21 || c > 0x7e || c == '<' || c == '>' || c == '"') return false;
  }
  return true;
}

// Escaped prefix of `s` that fits `budget`, leaving room for the ellipsis when cut.
inline fit fit_with_ellipsis(std::string_view s, std::size_t budget) noexcept {
  fit f = escaped_fit(s, budget);
  if (!f.complete) f = escaped_fit(s, budget >= ellipsis.size() ? budget - ellipsis.size() : 0);
  return f;
}

std::size_t write_notice(std::span<std::uint8_t, notice_max_payload> out,
                         std::string_view legal_basis, std::string_view blocked_name,
                         std::string_view blocked_by_url) noexcept {
  const bool link = url_ok(blocked_by_url);
  const std::size_t header_len =
      status_and_headers.size() + content_length_digits +
      (link ? link_open.size() + blocked_by_url.size() + link_close.size() : 0) +
      headers_end.size();
  const std::size_t fixed = header_len + body_open.size() + body_middle.size() + body_close.size();
  static_assert(status_and_headers.size() + content_length_digits + link_open.size() + max_url +
                    link_close.size() + headers_end.size() + body_open.size() + body_middle.size() +
                    body_close.size() + 2 * ellipsis.size() <
                notice_max_payload);
  std::size_t room = notice_max_payload - fixed;

  const fit name = fit_with_ellipsis(blocked_name, room < max_name_out ? room : max_name_out);
  room -= name.out + (name.complete ? 0 : ellipsis.size());
  const fit legal = fit_with_ellipsis(legal_basis, room);

  const std::size_t body_len = body_open.size() + name.out + (name.complete ? 0 : ellipsis.size()) +
                               body_middle.size() + legal.out +
                               (legal.complete ? 0 : ellipsis.size()) + body_close.size();
  text_writer w{out};
  w.put(status_and_headers);
  w.put_decimal(body_len);
  if (link) {
    w.put(link_open);
    w.put(blocked_by_url);
    w.put(link_close);
  }
  w.put(headers_end);
  const std::size_t body_start = w.size();
  w.put(body_open);
  w.put_escaped(blocked_name, name.in);
  if (!name.complete) w.put(ellipsis);
  w.put(body_middle);
  w.put_escaped(legal_basis, legal.in);
  if (!legal.complete) w.put(ellipsis);
  w.put(body_close);
  // A sizing bug would make Content-Length lie; refuse rather than send that.
  return w.size() - body_start == body_len ? w.size() : 0;
}

}  // namespace

std::size_t build_tcp_reset(bytes original_frame, const frame_info& info, reset_target target,
                            response_entropy& e, std::span<std::uint8_t> out) noexcept {
  const bool acked = (info.tcp_flags & packet::tcp_ack) != 0;
  const std::uint32_t next_seq = info.tcp_seq + seg_len(info);
  segment sg{};
  if (target == reset_target::to_sender) {
    sg = {true, acked ? info.tcp_ack : 0u, next_seq,
          static_cast<std::uint8_t>(packet::tcp_rst | packet::tcp_ack), 0};
  } else {
    const std::uint32_t seq = target == reset_target::to_receiver_instead ? info.tcp_seq : next_seq;
    sg = {false, seq, acked ? info.tcp_ack : 0u,
          static_cast<std::uint8_t>(acked ? packet::tcp_rst | packet::tcp_ack : packet::tcp_rst),
          0};
  }
  return emit(original_frame, info, sg, e, {}, out);
}

std::size_t build_http_notice(bytes original_frame, const frame_info& info,
                              std::string_view legal_basis, std::string_view blocked_name,
                              response_entropy& e, std::span<std::uint8_t> out,
                              std::string_view blocked_by_url) noexcept {
  if (!(info.tcp_flags & packet::tcp_ack) || !answerable(original_frame, info)) return 0;
  std::array<std::uint8_t, notice_max_payload> text;  // only the written prefix is read
  const std::size_t n = write_notice(text, legal_basis, blocked_name, blocked_by_url);
  if (n == 0) return 0;
  const segment sg{true, info.tcp_ack, info.tcp_seq + seg_len(info),
                   static_cast<std::uint8_t>(packet::tcp_psh | packet::tcp_ack | packet::tcp_fin),
                   info.tcp_window};
  return emit(original_frame, info, sg, e, bytes{text.data(), n}, out);
}

std::size_t build_dns_answer(bytes original_frame, const frame_info& info, dns_rcode rcode,
                             response_entropy& e, std::span<std::uint8_t> out) noexcept {
  if (!answerable(original_frame, info, ipproto_udp)) return 0;
  const bytes query = info.payload(original_frame);
  if (query.size() < dns_header) return 0;
  const std::uint16_t flags = packet::load_be16(query.data() + 2);
  // A standard query (QR 0, opcode 0) asking exactly one question.
  if ((flags & 0x8000) != 0 || ((flags >> 11) & 0xf) != 0) return 0;
  if (packet::load_be16(query.data() + 4) != 1) return 0;
  const std::size_t qlen = first_question_length(query.subspan(dns_header));
  if (qlen == 0) return 0;

  const std::size_t l4_len = udp_header + dns_header + qlen;
  const ip_answer a = emit_ip(original_frame, info, true, ipproto_udp, l4_len, e, out);
  if (a.l4 == nullptr) return 0;
  std::uint8_t* udp = a.l4;
  store_be16(udp, info.dst_port);
  store_be16(udp + 2, info.src_port);
  store_be16(udp + 4, static_cast<std::uint32_t>(l4_len));
  store_be16(udp + 6, 0);
  std::uint8_t* dns = udp + udp_header;
  std::memcpy(dns, query.data(), 2);  // ID
  // QR, the query's opcode (0) and RD, RA, the query's CD; AA, TC, AD, Z clear.
  const std::uint32_t answer_flags =
      0x8000u | (flags & 0x0100u) | 0x0080u | (flags & 0x0010u) | static_cast<std::uint8_t>(rcode);
  store_be16(dns + 2, answer_flags);
  store_be16(dns + 4, 1);   // QDCOUNT
  store_be32(dns + 6, 0);   // ANCOUNT, NSCOUNT
  store_be16(dns + 10, 0);  // ARCOUNT
  std::memcpy(dns + dns_header, query.data() + dns_header, qlen);
  const std::uint16_t sum = checksum(a.pseudo + sum_words(udp, l4_len));
  store_be16(udp + 6, sum == 0 ? 0xffff : sum);  // 0 means "no checksum" in UDP
  return a.total;
}

}  // namespace sluice::engine
