// libFuzzer target: TLS record walker + ClientHello parser. Checks the contracts the fast path
// relies on: views stay inside their buffer, message_len fits the scratch, outcomes are valid.
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "dataplane/packet/tls.hpp"

using namespace sluice::packet;

namespace {

bool inside(std::string_view v, const std::uint8_t* base, std::size_t size) {
  const auto* p = reinterpret_cast<const std::uint8_t*>(v.data());
  return v.empty() || (p >= base && p + v.size() <= base + size);
}

void check_hello(bytes message) {
  client_hello_info info;
  const tls_outcome o = parse_client_hello(message, info);
  if (o >= tls_outcome::count) std::abort();
  if (o != tls_outcome::client_hello && (info.has_sni || !info.sni.empty() || info.has_ech)) std::abort();
  if (!inside(info.sni, message.data(), message.size())) std::abort();
  if (!inside(info.alpn, message.data(), message.size())) std::abort();
  if (info.has_sni && info.sni.empty()) std::abort();
  (void)to_string(o);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const bytes input{data, size};
  check_hello(input);
  (void)looks_like_tls_handshake(input);

  static std::array<std::uint8_t, 4096> scratch;
  std::size_t len = 0;
  const tls_outcome o = tls_handshake_from_records(input, scratch, len);
  if (o == tls_outcome::client_hello) {
    if (len < 4 || len > scratch.size()) std::abort();
    check_hello(bytes{scratch.data(), len});
  } else if (len != 0) {
    std::abort();
  }
  // A small scratch exercises too_large at every boundary.
  std::array<std::uint8_t, 40> small{};
  if (tls_handshake_from_records(input, small, len) == tls_outcome::client_hello && len > small.size()) {
    std::abort();
  }
  return 0;
}
