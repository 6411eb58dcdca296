#include "control/rtbh/reconcile.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <sstream>

#include "dataplane/match/policy.hpp"
#include "dataplane/match/policy_config.hpp"

namespace sluice::control::rtbh {

std::optional<prefix> parse_prefix(std::string_view text, std::string& error) {
  const auto slash = text.find('/');
  const std::string addr(text.substr(0, slash));
  prefix p;
  int max_len = 0;
  if (addr.find(':') != std::string::npos) {
    p.family = 6;
    max_len = 128;
    if (inet_pton(AF_INET6, addr.c_str(), p.bytes.data()) != 1) {
      error = "not an IPv6 address";
      return std::nullopt;
    }
  } else {
    p.family = 4;
    max_len = 32;
    if (inet_pton(AF_INET, addr.c_str(), p.bytes.data()) != 1) {
      error = "not an IPv4 address";
      return std::nullopt;
    }
  }
  int len = max_len;
  if (slash != std::string_view::npos) {
    const std::string_view l = text.substr(slash + 1);
    const auto [end, ec] = std::from_chars(l.data(), l.data() + l.size(), len);
    if (l.empty() || l.size() > 3 || ec != std::errc{} || end != l.data() + l.size() || len < 0 ||
        len > max_len) {
      error = "bad prefix length";
      return std::nullopt;
    }
  }
  p.length = static_cast<std::uint8_t>(len);
  for (int bit = len; bit < max_len; ++bit) {
    if (p.bytes[static_cast<std::size_t>(bit / 8)] & (0x80u >> (bit % 8))) {
      error = "host bits set";
      return std::nullopt;
    }
  }
  return p;
}

std::string to_string(const prefix& p) {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(p.family == 6 ? AF_INET6 : AF_INET, p.bytes.data(), buf, sizeof buf);
  return std::string(buf) + "/" + std::to_string(p.length);
}

std::optional<rtbh_policy> parse_policy(std::string_view text, std::string& error) {
  std::istringstream in{std::string(text)};
  const match::policy_load_result loaded = match::load_policy(in, {});
  if (!loaded) {
    error = loaded.error.text();
    return std::nullopt;
  }
  rtbh_policy out;
  out.revision = loaded.spec->revision;
  out.ruleset_sha256 = match::ruleset_sha256(*loaded.spec);
  out.rules.reserve(loaded.spec->rules.size());
  for (const match::rule_spec& r : loaded.spec->rules) {
    rule_targets t;
    t.id = r.id;
    t.act = r.act;
    if (r.not_before) t.not_before = *r.not_before;
    if (r.not_after) t.not_after = *r.not_after;
    t.prefixes.reserve(r.prefixes.size());
    for (const std::string& s : r.prefixes) {
      std::string why;
      std::optional<prefix> p = parse_prefix(s, why);
      if (!p) {
        error = "bad_prefix: rule " + r.id + ": '" + s + "': " + why;
        return std::nullopt;
      }
      t.prefixes.push_back(*p);
    }
    out.rules.push_back(std::move(t));
  }
  return out;
}

rtbh_policy empty_policy() {
  rtbh_policy p;
  p.ruleset_sha256 = match::ruleset_sha256(match::policy_spec{});
  return p;
}

namespace {
bool active(const rule_targets& r, std::int64_t now) {
  return match::is_enforcing(r.act) && r.not_before <= now && now < r.not_after;
}
}  // namespace

std::vector<prefix> wanted_at(const rtbh_policy& p, std::int64_t now) {
  std::vector<prefix> out;
  for (const rule_targets& r : p.rules) {
    if (active(r, now)) out.insert(out.end(), r.prefixes.begin(), r.prefixes.end());
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::optional<std::int64_t> next_change(const rtbh_policy& p, std::int64_t now) {
  std::optional<std::int64_t> next;
  const auto consider = [&](std::int64_t t) {
    if (t > now && (!next || t < *next)) next = t;
  };
  for (const rule_targets& r : p.rules) {
    if (!match::is_enforcing(r.act) || r.prefixes.empty()) continue;
    if (r.not_before != std::numeric_limits<std::int64_t>::min()) consider(r.not_before);
    if (r.not_after != std::numeric_limits<std::int64_t>::max()) consider(r.not_after);
  }
  return next;
}

plan make_plan(const std::vector<prefix>& wanted, std::vector<found_route> found) {
  plan out;
  std::vector<prefix> right;
  for (const found_route& f : found) {
    if (f.right_type) {
      right.push_back(f.dst);
    } else {
      out.removes.push_back(f.dst);  // ours but the wrong type: replaced if still wanted
    }
  }
  std::sort(right.begin(), right.end());
  right.erase(std::unique(right.begin(), right.end()), right.end());
  std::set_difference(wanted.begin(), wanted.end(), right.begin(), right.end(),
                      std::back_inserter(out.adds));
  const std::size_t wrong_typed = out.removes.size();
  std::set_difference(right.begin(), right.end(), wanted.begin(), wanted.end(),
                      std::back_inserter(out.removes));
  out.kept = right.size() - (out.removes.size() - wrong_typed);
  std::sort(out.removes.begin(), out.removes.end());
  out.removes.erase(std::unique(out.removes.begin(), out.removes.end()), out.removes.end());
  return out;
}

}  // namespace sluice::control::rtbh
