// Fuzzes the node status decoders (the POST /v1/nodes/{node}/status body, and the X-Sluice-Status
// header a poll carries; control/api/http_api.hpp): bytes from any node must never crash them or
// throw out of them, decoding is a function of the bytes alone, and a decoded header is one
// the agent could have written (its fields are re-encoded to the same bytes).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "control/api/http_api.hpp"

namespace {

void check_header(std::string_view text) {
  const auto r = sluice::control::api::parse_status_header(text);
  if (!r) return;
  std::string again = "ack revision=" + std::to_string(r->revision) +
                      " offered=" + std::to_string(r->offered) + " ruleset=" + r->ruleset_sha256;
  if (!r->audit_checkpoint_header.empty()) again += " checkpoint=" + r->audit_checkpoint_header;
  if (again != text || !r->ack || !r->audit_checkpoint.empty()) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  check_header(text);
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
