#pragma once
// Normalisation of domain names written in RULES (policy files, app profiles, directives).
// Off the hot path: allocates, calls libidn2. Wire names are never normalised this way; the domain
// set folds them while hashing (see domain_set.hpp).
//
// A rule name is: trimmed of ASCII whitespace, one trailing dot removed, ASCII lowercased, every
// U-label converted to its A-label (IDNA2008 non-transitional via libidn2, so "пример.рф" becomes
// "xn--e1afmkfd.xn--p1ai", which is what clients put on the wire), then checked: labels of 1..63
// characters from [a-z0-9_-], not starting or ending with '-', total at most 253.
// A leading "*." makes a subdomain pattern: any name strictly under the base
// ("*.telegram.org" matches "a.telegram.org" and "a.b.telegram.org", not "telegram.org").
// '*' anywhere else is an error.

#include <cstdint>
#include <string>
#include <string_view>

namespace sluice::match {

#define SLUICE_NAME_ERRORS(X)                                                     \
  X(ok, "ok")                                                                     \
  X(empty, "empty")                         /* nothing left after trimming */     \
  X(too_long, "too_long")                   /* more than 253 characters */        \
  X(label_too_long, "label_too_long")       /* a label of more than 63 */         \
  X(empty_label, "empty_label")             /* "a..b", ".a" */                    \
  X(invalid_char, "invalid_char")           /* not [a-z0-9_-] after mapping */    \
  X(bad_hyphen, "bad_hyphen")               /* label starts or ends with '-' */   \
  X(misplaced_wildcard, "misplaced_wildcard") /* '*' other than a leading "*." */ \
  X(idn_error, "idn_error")                 /* libidn2 refused the U-label */

enum class name_error : std::uint8_t {
#define SLUICE_X(name, str) name,
  SLUICE_NAME_ERRORS(SLUICE_X)
#undef SLUICE_X
      count
};
[[nodiscard]] const char* to_string(name_error e) noexcept;

struct rule_name {
  name_error error = name_error::ok;
  std::string name;        // normalised base name (without "*."), empty on error
  bool subdomain = false;  // true for a "*." pattern

  [[nodiscard]] explicit operator bool() const noexcept { return error == name_error::ok; }
  // The rule as written canonically: "*.base" or "base".
  [[nodiscard]] std::string text() const { return subdomain ? "*." + name : name; }
};

// Thread-safe; allocates. Never throws except std::bad_alloc.
[[nodiscard]] rule_name normalize_rule_name(std::string_view input);

// Limits from RFC 1035 (presentation form without the trailing dot).
inline constexpr std::size_t max_name_length = 253;
inline constexpr std::size_t max_label_length = 63;

}  // namespace sluice::match
