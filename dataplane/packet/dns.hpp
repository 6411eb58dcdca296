#pragma once
// DNS question reader (RFC 1035 §4.1.2) for UDP messages and TCP (2-byte length prefixed)
// streams. Pure; names are decoded (dotted, no trailing dot, case as sent) into caller storage.

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "dataplane/packet/bytes.hpp"

namespace sluice::packet {

#define SLUICE_DNS_OUTCOMES(X)                                                   \
  X(question, "question")       /* at least one question decoded */              \
  X(no_question, "no_question") /* well-formed header with QDCOUNT 0 */          \
  X(need_more, "need_more")     /* TCP: the length-prefixed message is partial */ \
  X(truncated, "truncated")     /* message ends inside the question section */  \
  X(malformed, "malformed")     /* bad label, pointer loop, name too long */

enum class dns_outcome : std::uint8_t {
#define SLUICE_X(name, str) name,
  SLUICE_DNS_OUTCOMES(SLUICE_X)
#undef SLUICE_X
      count
};
[[nodiscard]] const char* to_string(dns_outcome o) noexcept;

struct dns_name {
  std::array<char, 256> text{};  // dotted form, at most 253 characters
  std::uint8_t length = 0;
  std::uint16_t qtype = 0;
  std::uint16_t qclass = 0;
  [[nodiscard]] std::string_view view() const noexcept { return {text.data(), length}; }
};

struct dns_questions {
  // Unicast DNS carries one question (resolvers refuse more); mDNS / DNS-SD queries carry many
  // (an Apple device asks for a dozen service types in one message). Questions past this many
  // are not decoded (the flow is still named by the first ones).
  static constexpr std::size_t max_questions = 16;
  std::array<dns_name, max_questions> names{};
  std::uint8_t count = 0;        // decoded questions (<= max_questions)
  std::uint16_t qdcount = 0;     // as the header says
  bool is_response = false;
};

// A DNS message as carried in one UDP datagram.
[[nodiscard]] dns_outcome parse_dns_message(bytes message, dns_questions& out) noexcept;

// The start of a DNS-over-TCP stream: 2-byte length, then the message.
[[nodiscard]] dns_outcome parse_dns_tcp(bytes stream_prefix, dns_questions& out) noexcept;

}  // namespace sluice::packet
