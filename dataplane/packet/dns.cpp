#include "dataplane/packet/dns.hpp"

#include <algorithm>
#include <cstring>

namespace sluice::packet {

namespace {

constexpr std::array<const char*, static_cast<std::size_t>(dns_outcome::count)> dns_outcome_names{
#define SLUICE_X(name, str) str,
    SLUICE_DNS_OUTCOMES(SLUICE_X)
#undef SLUICE_X
};

constexpr std::size_t header_len = 12;
constexpr std::size_t max_name_text = 253;  // dotted form of the 255-byte wire limit
// Pointers must point backwards, which already rules out loops; the cap bounds the work a
// chain of tiny backward hops can cause.
constexpr unsigned max_pointer_jumps = 32;

enum class name_result : std::uint8_t { ok, truncated, malformed };

// Decodes the name at `pos` into `name`; on ok, `pos` is just past the name in the question.
name_result read_name(bytes msg, std::size_t& pos, dns_name& name) noexcept {
  std::size_t p = pos;
  std::size_t resume = 0;  // position after the first pointer, if any
  unsigned jumps = 0;
  std::size_t len = 0;
  while (true) {
    if (p >= msg.size()) return name_result::truncated;
    const std::uint8_t b = msg[p];
    if (b == 0) {
      ++p;
      break;
    }
    if ((b & 0xc0) == 0xc0) {
      if (p + 1 >= msg.size()) return name_result::truncated;
      const std::size_t target = (std::size_t{b & 0x3fu} << 8) | msg[p + 1];
      if (target >= p || target < header_len || ++jumps > max_pointer_jumps) {
        return name_result::malformed;
      }
      if (jumps == 1) resume = p + 2;
      p = target;
      continue;
    }
    if ((b & 0xc0) != 0) return name_result::malformed;  // 0x40/0x80: labels longer than 63
    if (b > msg.size() - p - 1) return name_result::truncated;
    const std::size_t needed = len + (len != 0 ? 1 : 0) + b;
    if (needed > max_name_text) return name_result::malformed;
    const std::uint8_t* label = msg.data() + p + 1;
    if (std::memchr(label, 0, b) != nullptr) return name_result::malformed;
    if (len != 0) name.text[len++] = '.';
    std::memcpy(name.text.data() + len, label, b);
    len += b;
    p += 1 + std::size_t{b};
  }
  name.length = static_cast<std::uint8_t>(len);
  pos = jumps != 0 ? resume : p;
  return name_result::ok;
}

}  // namespace

const char* to_string(dns_outcome o) noexcept {
  const auto i = static_cast<std::size_t>(o);
  return i < dns_outcome_names.size() ? dns_outcome_names[i] : "unknown";
}

dns_outcome parse_dns_message(bytes message, dns_questions& out) noexcept {
  out.count = 0;
  out.qdcount = 0;
  out.is_response = false;
  if (message.size() < header_len) return dns_outcome::truncated;
  out.is_response = (message[2] & 0x80) != 0;
  out.qdcount = load_be16(message.data() + 4);
  if (out.qdcount == 0) return dns_outcome::no_question;

  const std::size_t wanted = std::min<std::size_t>(out.qdcount, dns_questions::max_questions);
  std::size_t pos = header_len;
  while (out.count < wanted) {
    dns_name& name = out.names[out.count];
    switch (read_name(message, pos, name)) {
      case name_result::ok:
        break;
      case name_result::truncated:
        return dns_outcome::truncated;
      case name_result::malformed:
        return dns_outcome::malformed;
    }
    if (message.size() - pos < 4) return dns_outcome::truncated;
    name.qtype = load_be16(message.data() + pos);
    name.qclass = load_be16(message.data() + pos + 2);
    pos += 4;
    ++out.count;
  }
  return dns_outcome::question;
}

dns_outcome parse_dns_tcp(bytes stream_prefix, dns_questions& out) noexcept {
  out.count = 0;
  out.qdcount = 0;
  out.is_response = false;
  if (stream_prefix.size() < 2) return dns_outcome::need_more;
  const std::size_t len = load_be16(stream_prefix.data());
  if (len == 0) return dns_outcome::malformed;
  const bytes rest = stream_prefix.subspan(2);
  if (rest.size() >= len) return parse_dns_message(rest.first(len), out);

  // Partial message: the questions come first, so they may already be whole.
  const dns_outcome r = parse_dns_message(rest, out);
  if (r == dns_outcome::truncated) return dns_outcome::need_more;
  return r;
}

}  // namespace sluice::packet
