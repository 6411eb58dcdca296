#pragma once
// HTTP/1.x request reader: method, request-target authority and Host headers from the start of
// a client's byte stream (TCP, or an SSDP-style datagram over UDP). Pure; returned views point
// into the input.
//
// Every name a request can route by is reported, because servers and proxies differ in which
// they use: the authority of an absolute-form target (RFC 9112 §3.2.2: origin servers must use
// it and ignore Host, but not all do), a CONNECT request's authority-form target (the tunnel's
// destination), and the Host header — the first one and, if present, a second, different one
// (RFC 9112 §3.2 says a server must answer 400; lenient servers use either). A policy that names
// any of them must stop the request, so the header block is read to its end before answering.

#include <cstdint>
#include <string_view>

#include "dataplane/packet/bytes.hpp"

namespace sluice::packet {

#define SLUICE_HTTP_OUTCOMES(X)                                                        \
  X(host, "host")             /* header block read; at least one name found */         \
  X(need_more, "need_more")   /* valid so far, header block not complete */            \
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
  std::string_view host;    // first Host header value, whitespace trimmed, port kept as sent
  std::string_view host2;   // a later Host header whose value differs from `host` (else empty)
  std::string_view target;  // authority of an absolute-form or CONNECT target (port kept)
  std::size_t head_length = 0;  // bytes up to and including the blank line ending the headers
                                // (0 when the block did not end in the input)
  bool has_host = false;    // a Host header was present (its value may be empty)

  // The distinct non-empty host names (authority_host of each, compared case-insensitively),
  // target first; returns how many were written (at most 3). These are what a policy matches:
  // "Host: telegram.org:443" names telegram.org.
  std::size_t names(std::string_view (&out)[3]) const noexcept;
};

// Cheap test on the first bytes: does this start like an HTTP request line (token then SP)?
[[nodiscard]] bool looks_like_http_request(bytes stream_prefix) noexcept;

// `host` once the header block has ended (or a name was found before the block overran the
// 8 KiB cap or turned malformed: a server rejects such a request, so naming it overblocks
// nothing); `no_host` when it ended with no name at all.
[[nodiscard]] http_outcome parse_http_request(bytes stream_prefix, http_request_info& out) noexcept;

// The host part of an HTTP authority: "name:port" -> "name", "[v6]:port" -> "[v6]", "name:" ->
// "name". Anything else is returned unchanged. Pure, for the matcher on the hot path.
[[nodiscard]] std::string_view authority_host(std::string_view authority) noexcept;

}  // namespace sluice::packet
