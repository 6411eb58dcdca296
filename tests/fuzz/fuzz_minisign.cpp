// libFuzzer target: minisign key and signature files from outside (ministry uploads, key files).
// The input is split at the first NUL into a signature text and a message; it is also read as
// a public and a secret key. Checks: no crash or leak, outcomes in range, `ok` only with the
// one key that verifies, parsed keys re-format and re-parse to themselves.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include "control/crypto/minisign.hpp"

using namespace sluice::control::crypto;

namespace {

const key_pair& fixed_pair() {
  static const key_pair kp = [] {
    auto k = generate_key_pair();
    if (!k) std::abort();
    return *k;
  }();
  return kp;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const auto nul = input.find('\0');
  const std::string_view sig_text = input.substr(0, nul);
  const std::string_view message =
      nul == std::string_view::npos ? std::string_view{} : input.substr(nul + 1);

  std::string error;
  if (const auto pub = parse_public_key(input, &error)) {
    const auto again = parse_public_key(format_public_key(*pub));
    if (!again || again->id != pub->id || again->key != pub->key) std::abort();
  } else if (error.empty()) {
    std::abort();
  }
  error.clear();
  if (const auto sec = parse_secret_key(input, &error)) {
    const auto text = format_secret_key(*sec);
    const auto again = parse_secret_key(text);
    if (!again || again->id != sec->id || again->key != sec->key) std::abort();
  } else if (error.empty()) {
    std::abort();
  }

  const auto id = signature_key_id(sig_text);
  auto key = fixed_pair().pub;
  if (id) key.id = *id;  // reach the signature checks, not only the key id comparison
  const auto r = verify(key, message, sig_text);
  if (r.outcome >= verify_outcome::count) std::abort();
  (void)to_string(r.outcome);
  (void)describe(r.outcome);
  if (!id && r.outcome != verify_outcome::malformed_signature) std::abort();
  // A fixed key nobody outside this process has: a fuzzed signature must never pass.
  if (r.outcome == verify_outcome::ok) std::abort();
  if (r.outcome != verify_outcome::ok && !r.trusted_comment.empty()) std::abort();
  return 0;
}
