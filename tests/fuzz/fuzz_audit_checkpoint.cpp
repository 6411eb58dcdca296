// libFuzzer target: audit checkpoints from outside (a node's status report to the controller,
// the X-Sluice-Audit-Checkpoint header and the body member to a node, files given to sluicectl).
// The input is read as the JSON form and as the header form. Checks: no crash or leak; a parsed
// checkpoint re-serialises and re-parses to itself; nothing verifies with a key that never
// signed; comparing with a small log names what it must.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "control/audit/checkpoint.hpp"

using namespace sluice::control;

namespace {

const crypto::key_pair& fixed_pair() {
  static const crypto::key_pair kp = [] {
    auto k = crypto::generate_key_pair();
    if (!k) std::abort();
    return *k;
  }();
  return kp;
}

const std::vector<audit::audit_record>& small_log() {
  static const std::vector<audit::audit_record> log = [] {
    std::vector<audit::audit_record> out;
    for (int i = 0; i < 5; ++i) {
      audit::audit_record r;
      r.event = "e";
      r.detail = "{}";
      audit::seal(r, out.empty() ? nullptr : &out.back());
      out.push_back(r);
    }
    return out;
  }();
  return log;
}

void exercise(const audit::checkpoint& c) {
  std::string error;
  const auto again = audit::parse_checkpoint(audit::checkpoint_json(c), error);
  if (!again || !(*again == c)) std::abort();
  const auto header = audit::parse_checkpoint_header(audit::checkpoint_header(c), error);
  if (!header || !(*header == c)) std::abort();
  // The fixed key signed nothing the fuzzer could have seen.
  if (audit::verify_checkpoint(fixed_pair().pub, c)) std::abort();
  const auto cmp = audit::compare_with_log(c, small_log(), "fuzz");
  if (cmp.ok() != (c.count == 0 || (c.count <= 5 && small_log()[c.count - 1].hash == c.head)))
    std::abort();
  if (!cmp.ok() && cmp.problem.empty()) std::abort();
  if (audit::order(c, c) != audit::checkpoint_order::same) std::abort();
  (void)audit::describe(c);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  std::string error;
  if (const auto c = audit::parse_checkpoint(input, error))
    exercise(*c);
  else if (error.empty())
    std::abort();
  error.clear();
  if (const auto c = audit::parse_checkpoint_header(input, error))
    exercise(*c);
  else if (error.empty())
    std::abort();
  return 0;
}
