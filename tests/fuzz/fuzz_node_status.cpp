// Fuzzes the node status body decoder (POST /v1/nodes/{node}/status, control/api/http_api.hpp):
// bytes from any node must never crash it or throw out of it, and decoding is a function of the
// bytes alone.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "control/api/http_api.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto body = sluice::control::api::parse_status_body(text);
  const auto again = sluice::control::api::parse_status_body(text);
  if (body.has_value() != again.has_value()) __builtin_trap();
  if (!body) return 0;
  const auto& a = body->report;
  const auto& b = again->report;
  if (a.revision != b.revision || a.offered != b.offered || a.ack != b.ack || a.error != b.error ||
      a.health != b.health || a.ruleset_sha256 != b.ruleset_sha256 || body->labels != again->labels)
    __builtin_trap();
  return 0;
}
