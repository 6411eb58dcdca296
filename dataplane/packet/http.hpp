#pragma once
// HTTP/1.x request reader: method and Host header from the start of a client's byte stream
// (TCP, or an SSDP-style datagram over UDP). Pure; returned views point into the input.

#include <cstdint>
#include <string_view>

#include "dataplane/packet/bytes.hpp"

namespace sluice::packet {

#define SLUICE_HTTP_OUTCOMES(X)                                                        \
  X(host, "host")             /* request line and Host header found */                 \
  X(need_more, "need_more")   /* valid so far, headers not complete and no Host yet */ \
  X(not_http, "not_http")     /* first line is not an HTTP/1.x request line */         \
  X(no_host, "no_host")       /* headers complete without a Host header */             \
  X(malformed, "malformed")

enum class http_outcome : std::uint8_t {
#define SLUICE_X(name, str) name,
  SLUICE_HTTP_OUTCOMES(SLUICE_X)
#undef SLUICE_X
      count
};
[[nodiscard]] const char* to_string(http_outcome o) noexcept;

struct http_request_info {
  std::string_view method;
  std::string_view host;  // Host header value with surrounding whitespace trimmed (port kept)
};

// Cheap test on the first bytes: does this start like an HTTP request line (token then SP)?
[[nodiscard]] bool looks_like_http_request(bytes stream_prefix) noexcept;

[[nodiscard]] http_outcome parse_http_request(bytes stream_prefix, http_request_info& out) noexcept;

}  // namespace sluice::packet
