#include "dataplane/packet/http.hpp"

#include <array>
#include <cstring>

namespace sluice::packet {

namespace {

constexpr std::array<const char*, static_cast<std::size_t>(http_outcome::count)> http_outcome_names{
#define SLUICE_X(name, str) str,
    SLUICE_HTTP_OUTCOMES(SLUICE_X)
#undef SLUICE_X
};

constexpr std::size_t min_method_len = 3;
constexpr std::size_t max_method_len = 16;
// Servers cap the request line and the header block near 8 KiB (nginx, Apache); past that a
// server would answer 414/431, so nothing larger is a request that can succeed.
constexpr std::size_t max_line_block = 8192;

constexpr bool is_method_char(std::uint8_t c) noexcept { return (c >= 'A' && c <= 'Z') || c == '-'; }
constexpr bool is_ws(char c) noexcept { return c == ' ' || c == '\t'; }
constexpr char lower(char c) noexcept { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c | 0x20) : c; }

bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

std::string_view trim(std::string_view v) noexcept {
  while (!v.empty() && is_ws(v.front())) v.remove_prefix(1);
  while (!v.empty() && is_ws(v.back())) v.remove_suffix(1);
  return v;
}

// Length of the method token (0 when the prefix is not [A-Z-]{3,16} followed by SP).
// `partial` is set when the prefix ends while still a possible method token.
std::size_t method_length(bytes b, bool& partial) noexcept {
  partial = false;
  std::size_t i = 0;
  while (i < b.size() && i <= max_method_len && is_method_char(b[i])) ++i;
  if (i == b.size() && i <= max_method_len) {
    partial = true;
    return 0;
  }
  if (i < min_method_len || i > max_method_len || b[i] != ' ') return 0;
  return i;
}

// A line ends at LF; a CR before it is dropped (bare LF tolerated as servers do).
// Returns false when no LF is within [from, limit).
bool next_line(std::string_view text, std::size_t from, std::size_t limit, std::string_view& line,
               std::size_t& next) noexcept {
  const std::size_t end = limit < text.size() ? limit : text.size();
  if (from >= end) return false;
  const void* lf = std::memchr(text.data() + from, '\n', end - from);
  if (lf == nullptr) return false;
  const std::size_t at = static_cast<std::size_t>(static_cast<const char*>(lf) - text.data());
  line = text.substr(from, at - from);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  next = at + 1;
  return true;
}

// Absolute-form targets (RFC 9112 §3.2.2) make the server ignore Host and use the target's
// authority, so that authority is the name the request really goes to.
bool absolute_form_authority(std::string_view target, std::string_view& authority) noexcept {
  std::size_t scheme = 0;
  if (target.size() >= 7 && iequals(target.substr(0, 7), "http://")) {
    scheme = 7;
  } else if (target.size() >= 8 && iequals(target.substr(0, 8), "https://")) {
    scheme = 8;
  } else {
    return false;
  }
  std::string_view rest = target.substr(scheme);
  const std::size_t end = rest.find_first_of("/?#");
  if (end != std::string_view::npos) rest = rest.substr(0, end);
  const std::size_t at = rest.rfind('@');
  if (at != std::string_view::npos) rest.remove_prefix(at + 1);
  authority = rest;
  return true;
}

}  // namespace

const char* to_string(http_outcome o) noexcept {
  const auto i = static_cast<std::size_t>(o);
  return i < http_outcome_names.size() ? http_outcome_names[i] : "unknown";
}

bool looks_like_http_request(bytes stream_prefix) noexcept {
  bool partial = false;
  return method_length(stream_prefix, partial) != 0;
}

http_outcome parse_http_request(bytes stream_prefix, http_request_info& out) noexcept {
  out = http_request_info{};
  bool partial = false;
  const std::size_t mlen = method_length(stream_prefix, partial);
  if (mlen == 0) return partial ? http_outcome::need_more : http_outcome::not_http;
  const std::string_view text = as_chars(stream_prefix);
  out.method = text.substr(0, mlen);

  // Request line: METHOD SP request-target SP HTTP/1.x
  std::string_view line;
  std::size_t pos = 0;
  if (!next_line(text, 0, max_line_block, line, pos)) {
    return text.size() >= max_line_block ? http_outcome::malformed : http_outcome::need_more;
  }
  const std::string_view after_method = line.substr(mlen + 1);
  const std::size_t sp = after_method.find(' ');
  if (sp == 0 || sp == std::string_view::npos) return http_outcome::not_http;
  const std::string_view target = after_method.substr(0, sp);
  const std::string_view version = after_method.substr(sp + 1);
  if (version.size() != 8 || version.substr(0, 7) != "HTTP/1." || version[7] < '0' ||
      version[7] > '9') {
    return http_outcome::not_http;
  }
  std::string_view authority;
  if (absolute_form_authority(target, authority)) {
    out.target = authority;
  } else if (out.method == "CONNECT") {
    out.target = target;  // authority-form: the host:port the tunnel goes to
  }

  // Past the cap or at a malformed line a server answers 4xx; a name already read still names
  // the attempt (blocking it costs nobody anything), otherwise the request is refused unread.
  const auto stop = [&out](http_outcome why) noexcept {
    return out.target.empty() && !out.has_host ? why : http_outcome::host;
  };
  const std::size_t headers_start = pos;
  const std::size_t headers_limit = headers_start + max_line_block;
  while (true) {
    if (!next_line(text, pos, headers_limit, line, pos)) {
      return text.size() >= headers_limit ? stop(http_outcome::malformed) : http_outcome::need_more;
    }
    if (line.empty()) break;
    // obs-fold continues the previous field; it never starts one.
    if (is_ws(line.front())) continue;
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) return stop(http_outcome::malformed);
    const std::string_view name = line.substr(0, colon);
    // RFC 9112 §5.1: whitespace between name and colon must be rejected by servers.
    if (name.empty() || is_ws(name.back())) return stop(http_outcome::malformed);
    if (!iequals(name, "host")) continue;
    const std::string_view value = trim(line.substr(colon + 1));
    if (!out.has_host) {
      out.has_host = true;
      out.host = value;
    } else if (out.host2.empty() && !iequals(value, out.host)) {
      out.host2 = value;
    }
  }
  out.head_length = pos;
  return out.target.empty() && !out.has_host ? http_outcome::no_host : http_outcome::host;
}

std::size_t http_request_info::names(std::string_view (&out)[3]) const noexcept {
  std::size_t n = 0;
  const auto add = [&](std::string_view v) noexcept {
    v = authority_host(v);
    if (v.empty()) return;
    for (std::size_t i = 0; i < n; ++i) {
      if (iequals(out[i], v)) return;
    }
    out[n++] = v;
  };
  add(target);
  add(host);
  add(host2);
  return n;
}

std::string_view authority_host(std::string_view authority) noexcept {
  std::size_t end = authority.size();
  if (!authority.empty() && authority.front() == '[') {
    const std::size_t close = authority.find(']');
    if (close == std::string_view::npos) return authority;
    end = close + 1;
  } else {
    end = authority.find(':');
    if (end == std::string_view::npos) return authority;
  }
  if (end == authority.size()) return authority;
  if (authority[end] != ':') return authority;
  // The port is digits only (possibly none: "name:" is valid authority syntax).
  for (std::size_t i = end + 1; i < authority.size(); ++i) {
    if (authority[i] < '0' || authority[i] > '9') return authority;
  }
  return authority.substr(0, end);
}

}  // namespace sluice::packet
