// libFuzzer target: DNS question reader over UDP and TCP framing. Checks decoded names respect
// the limits (<= 253 chars, no NUL) and that TCP agrees with UDP on a whole message.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "dataplane/packet/dns.hpp"

using namespace sluice::packet;

namespace {

void check(dns_outcome o, const dns_questions& q) {
  if (o >= dns_outcome::count) std::abort();
  if (q.count > dns_questions::max_questions || q.count > q.qdcount) std::abort();
  if (o == dns_outcome::question && q.count == 0) std::abort();
  for (std::size_t i = 0; i < q.count; ++i) {
    const auto v = q.names[i].view();
    if (v.size() > 253 || std::memchr(v.data(), 0, v.size()) != nullptr) std::abort();
    // (labels may themselves contain '.' bytes: kept as sent, so no dot checks here)
  }
  (void)to_string(o);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const bytes input{data, size};
  dns_questions udp;
  const dns_outcome u = parse_dns_message(input, udp);
  check(u, udp);

  dns_questions tcp;
  const dns_outcome t = parse_dns_tcp(input, tcp);
  check(t, tcp);
  if (size >= 2) {
    const std::size_t len = load_be16(data);
    if (len != 0 && size - 2 >= len) {
      dns_questions whole;
      if (parse_dns_message(input.subspan(2, len), whole) != t || whole.count != tcp.count) std::abort();
    }
  }
  return 0;
}
