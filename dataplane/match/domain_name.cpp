#include "dataplane/match/domain_name.hpp"

#include <idn2.h>

#include <cstdlib>
#include <memory>

namespace sluice::match {

const char* to_string(name_error e) noexcept {
  switch (e) {
#define SLUICE_X(name, str) \
  case name_error::name:    \
    return str;
    SLUICE_NAME_ERRORS(SLUICE_X)
#undef SLUICE_X
    case name_error::count:
      break;
  }
  return "?";
}

namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

bool all_ascii(std::string_view s) {
  for (unsigned char c : s) {
    if (c >= 0x80) return false;
  }
  return true;
}

// Checks an ASCII, already lowercased name label by label.
name_error check_ascii(std::string_view s) {
  if (s.empty()) return name_error::empty;
  if (s.size() > max_name_length) return name_error::too_long;
  std::size_t start = 0;
  while (true) {
    std::size_t dot = s.find('.', start);
    std::string_view label = s.substr(start, dot == std::string_view::npos ? s.npos : dot - start);
    if (label.empty()) return name_error::empty_label;
    if (label.size() > max_label_length) return name_error::label_too_long;
    for (char c : label) {
      bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
      if (!ok) return c == '*' ? name_error::misplaced_wildcard : name_error::invalid_char;
    }
    if (label.front() == '-' || label.back() == '-') return name_error::bad_hyphen;
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return name_error::ok;
}

}  // namespace

rule_name normalize_rule_name(std::string_view input) {
  rule_name out;
  std::string_view s = trim(input);
  if (s.size() >= 2 && s[0] == '*' && s[1] == '.') {
    out.subdomain = true;
    s.remove_prefix(2);
  }
  if (!s.empty() && s.back() == '.') s.remove_suffix(1);
  if (s.empty()) {
    out.error = name_error::empty;
    return out;
  }
  if (s.find('*') != std::string_view::npos) {
    out.error = name_error::misplaced_wildcard;
    return out;
  }
  // Bound the work handed to libidn2; a U-label name cannot be shorter than its A-label form
  // by more than a few characters per label, but anything this long is wrong anyway.
  if (s.size() > 4 * max_name_length) {
    out.error = name_error::too_long;
    return out;
  }

  std::string name;
  if (all_ascii(s)) {
    name.assign(s);
    for (char& c : name) {
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + ('a' - 'A'));
    }
  } else {
    // idn2 needs a NUL-terminated string; embedded NULs would truncate silently, so refuse them.
    if (s.find('\0') != std::string_view::npos) {
      out.error = name_error::invalid_char;
      return out;
    }
    std::string z(s);
    char* converted = nullptr;
    int rc = idn2_to_ascii_8z(z.c_str(), &converted, IDN2_NONTRANSITIONAL | IDN2_NFC_INPUT);
    std::unique_ptr<char, decltype(&idn2_free)> guard(converted, &idn2_free);
    if (rc != IDN2_OK || converted == nullptr) {
      out.error = rc == IDN2_TOO_BIG_DOMAIN  ? name_error::too_long
                  : rc == IDN2_TOO_BIG_LABEL ? name_error::label_too_long
                                             : name_error::idn_error;
      return out;
    }
    name.assign(converted);
    for (char& c : name) {
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + ('a' - 'A'));
    }
    if (!name.empty() && name.back() == '.') name.pop_back();
  }
  out.error = check_ascii(name);
  if (out.error == name_error::ok) out.name = std::move(name);
  return out;
}

}  // namespace sluice::match
