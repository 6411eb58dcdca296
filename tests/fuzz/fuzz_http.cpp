// libFuzzer target: HTTP/1.x request reader. Views must stay inside the input; a Host is only
// reported for something that looks like a request; prefixes of a need_more input stay need_more;
// the names a request routes by are distinct, port-free and inside the input.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "dataplane/packet/http.hpp"

using namespace sluice::packet;

namespace {

bool inside(std::string_view v, const std::uint8_t* base, std::size_t size) {
  const auto* p = reinterpret_cast<const std::uint8_t*>(v.data());
  return v.empty() || (p >= base && p + v.size() <= base + size);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const bytes input{data, size};
  const bool looks = looks_like_http_request(input);
  http_request_info info;
  const http_outcome o = parse_http_request(input, info);
  if (o >= http_outcome::count) std::abort();
  if (!inside(info.method, data, size) || !inside(info.host, data, size) ||
      !inside(info.host2, data, size) || !inside(info.target, data, size) ||
      info.head_length > size) {
    std::abort();
  }
  std::string_view names[3];
  const std::size_t n = info.names(names);
  if (n > 3 || (o != http_outcome::host && o != http_outcome::need_more && n != 0)) std::abort();
  for (std::size_t i = 0; i < n; ++i) {
    if (names[i].empty() || !inside(names[i], data, size)) std::abort();
    if (authority_host(names[i]) != names[i]) std::abort();  // ports are stripped
  }
  if ((o == http_outcome::host || o == http_outcome::no_host) && !looks) std::abort();
  (void)to_string(o);

  // The reader is monotone in the stream prefix: once it has an answer, more bytes don't change
  // it, and a prefix of a need_more input is need_more.
  if (size > 0) {
    http_request_info shorter;
    const http_outcome p = parse_http_request(input.first(size - 1), shorter);
    if (o == http_outcome::need_more && p != http_outcome::need_more) std::abort();
    if (p == http_outcome::host &&
        (o != http_outcome::host || shorter.host != info.host || shorter.host2 != info.host2 ||
         shorter.target != info.target)) {
      std::abort();
    }
    if (p == http_outcome::no_host && o != http_outcome::no_host) std::abort();
  }
  return 0;
}
