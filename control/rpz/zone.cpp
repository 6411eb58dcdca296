#include "control/rpz/zone.hpp"

#include <algorithm>
#include <charconv>
#include <sstream>

#include "dataplane/match/domain_name.hpp"
#include "dataplane/match/policy.hpp"
#include "dataplane/match/policy_config.hpp"

namespace sluice::control::rpz {

const char* to_string(response r) noexcept {
  switch (r) {
#define SLUICE_X(name, text) \
  case response::name:       \
    return text;
    SLUICE_RPZ_RESPONSES(SLUICE_X)
#undef SLUICE_X
    case response::count:
      break;
  }
  return "?";
}

std::optional<response> parse_response(std::string_view text) noexcept {
#define SLUICE_X(name, str) \
  if (text == str) return response::name;
  SLUICE_RPZ_RESPONSES(SLUICE_X)
#undef SLUICE_X
  return std::nullopt;
}

response response_config::for_rule(std::string_view rule_id, match::action act) const {
  if (const auto it = by_rule.find(rule_id); it != by_rule.end()) return it->second;
  const auto i = static_cast<std::size_t>(act);
  return i < by_action.size() ? by_action[i] : response::none;
}

bool response_config::uses_notice() const {
  for (std::size_t i = 0; i < by_action.size(); ++i) {
    if (match::is_enforcing(static_cast<match::action>(i)) && by_action[i] == response::notice)
      return true;
  }
  return std::any_of(by_rule.begin(), by_rule.end(),
                     [](const auto& kv) { return kv.second == response::notice; });
}

bool parse_response_setting(std::string_view text, response_config& c, std::string& error) {
  const auto eq = text.find('=');
  if (eq == std::string_view::npos || eq == 0) {
    error = "'" + std::string(text) + "': expected ACTION=ANSWER or rule:ID=ANSWER";
    return false;
  }
  const std::string_view key = text.substr(0, eq);
  const std::optional<response> r = parse_response(text.substr(eq + 1));
  if (!r) {
    error = "'" + std::string(text) + "': the answer is one of nxdomain, nodata, notice, none";
    return false;
  }
  if (key.starts_with("rule:")) {
    const std::string_view id = key.substr(5);
    if (id.empty()) {
      error = "'" + std::string(text) + "': empty rule id";
      return false;
    }
    c.by_rule[std::string(id)] = *r;
    return true;
  }
  const std::optional<match::action> a = match::parse_action(key);
  if (!a) {
    error = "'" + std::string(text) + "': '" + std::string(key) +
            "' is neither an action (drop, reset, notice, throttle, monitor) nor rule:ID";
    return false;
  }
  if (*a == match::action::monitor) {
    error = "'" + std::string(text) + "': monitor rules never enforce";
    return false;
  }
  c.by_action[static_cast<std::size_t>(*a)] = *r;
  return true;
}

namespace {

// A name given in configuration (zone, notice host): no wildcard.
bool normalize_plain(std::string& name, const char* what, std::string& error) {
  const match::rule_name n = match::normalize_rule_name(name);
  if (!n || n.subdomain) {
    error = std::string(what) + " '" + name +
            "': " + (n ? "a wildcard is not a name" : match::to_string(n.error));
    return false;
  }
  name = n.name;
  return true;
}

// The last label of `name` (normalised).
std::string_view last_label(std::string_view name) {
  const auto dot = name.rfind('.');
  return dot == std::string_view::npos ? name : name.substr(dot + 1);
}

bool is_trigger_label(std::string_view label) {
  // RPZ (draft-vixie-dnsop-dns-rpz) reads owners ending in these labels, right above the
  // zone's name, as IP and name-server triggers.
  return label == "rpz-ip" || label == "rpz-nsip" || label == "rpz-nsdname" ||
         label == "rpz-client-ip";
}

}  // namespace

bool normalize_config(zone_config& c, std::string& error) {
  if (!normalize_plain(c.zone, "zone", error)) return false;
  if (!c.notice_host.empty() && !normalize_plain(c.notice_host, "notice host", error)) return false;
  if (c.notice_host.empty() && c.responses.uses_notice()) {
    error = "a response is 'notice' but no notice host is set";
    return false;
  }
  return true;
}

std::optional<rpz_policy> parse_policy(std::string_view text, const zone_config& c,
                                       std::string& error) {
  std::istringstream in{std::string(text)};
  const match::policy_load_result loaded = match::load_policy(in, {});
  if (!loaded) {
    error = loaded.error.text();
    return std::nullopt;
  }
  rpz_policy out;
  out.revision = loaded.spec->revision;
  out.ruleset_sha256 = match::ruleset_sha256(*loaded.spec);
  out.rules.reserve(loaded.spec->rules.size());
  for (const match::rule_spec& r : loaded.spec->rules) {
    rule_names t;
    t.id = r.id;
    t.act = r.act;
    t.answer = c.responses.for_rule(r.id, r.act);
    if (r.not_before) t.not_before = *r.not_before;
    if (r.not_after) t.not_after = *r.not_after;
    t.owners.reserve(r.domains.size());
    for (const std::string& d : r.domains) {
      const match::rule_name n = match::normalize_rule_name(d);
      const auto bad = [&](const std::string& why) {
        error = "bad_name: rule " + r.id + ": '" + d + "': " + why;
        return std::nullopt;
      };
      if (!n) return bad(match::to_string(n.error));
      std::string owner = n.text();
      // The owner below the zone's name must still be a name (RFC 1035: 253 in text form).
      if (owner.size() + 1 + c.zone.size() > match::max_name_length)
        return bad("too long for zone " + c.zone + " (" + std::to_string(owner.size()) + " + " +
                   std::to_string(c.zone.size() + 1) + " > 253 characters)");
      if (is_trigger_label(last_label(n.name)))
        return bad("ends in the RPZ trigger label '" + std::string(last_label(n.name)) +
                   "' (a resolver would read it as an IP or name-server trigger)");
      t.owners.push_back(std::move(owner));
    }
    out.rules.push_back(std::move(t));
  }
  return out;
}

rpz_policy empty_policy() {
  rpz_policy p;
  p.ruleset_sha256 = match::ruleset_sha256(match::policy_spec{});
  return p;
}

namespace {
bool active(const rule_names& r, std::int64_t now) {
  return match::is_enforcing(r.act) && r.answer != response::none && r.not_before <= now &&
         now < r.not_after;
}
}  // namespace

std::vector<zone_entry> entries_at(const rpz_policy& p, std::int64_t now) {
  std::size_t n = 0;
  for (const rule_names& r : p.rules) {
    if (active(r, now)) n += r.owners.size();
  }
  std::vector<zone_entry> out;
  out.reserve(n);
  for (const rule_names& r : p.rules) {
    if (!active(r, now)) continue;
    for (const std::string& o : r.owners) out.push_back({o, r.answer});
  }
  // By owner, strongest answer first; then one per owner.
  std::sort(out.begin(), out.end(), [](const zone_entry& a, const zone_entry& b) {
    return a.owner != b.owner ? a.owner < b.owner : a.answer > b.answer;
  });
  out.erase(
      std::unique(out.begin(), out.end(),
                  [](const zone_entry& a, const zone_entry& b) { return a.owner == b.owner; }),
      out.end());
  return out;
}

std::optional<std::int64_t> next_change(const rpz_policy& p, std::int64_t now) {
  std::optional<std::int64_t> next;
  const auto consider = [&](std::int64_t t) {
    if (t > now && (!next || t < *next)) next = t;
  };
  for (const rule_names& r : p.rules) {
    if (!match::is_enforcing(r.act) || r.answer == response::none || r.owners.empty()) continue;
    if (r.not_before != std::numeric_limits<std::int64_t>::min()) consider(r.not_before);
    if (r.not_after != std::numeric_limits<std::int64_t>::max()) consider(r.not_after);
  }
  return next;
}

namespace {
constexpr std::string_view soa_prefix = "@ IN SOA localhost. nobody.invalid. ";
}  // namespace

std::string render_zone(const zone_config& c, const std::vector<zone_entry>& entries,
                        std::uint32_t serial, const zone_origin& origin) {
  const std::string ttl = std::to_string(c.ttl);
  const std::string notice = " CNAME " + c.notice_host + ".\n";
  std::string out;
  out.reserve(256 + entries.size() * 32);
  out += "; Response Policy Zone written by sluice-rpz from policy revision ";
  out += std::to_string(origin.revision);
  out += "\n; ruleset sha256 ";
  out += origin.ruleset_sha256.empty() ? "-" : origin.ruleset_sha256;
  out += ", ";
  out += std::to_string(entries.size());
  out += " names. Rewritten on every change: do not edit.\n$ORIGIN ";
  out += c.zone;
  out += ".\n$TTL ";
  out += ttl;
  out += '\n';
  out += soa_prefix;
  out += std::to_string(serial);
  out += " 3600 600 86400 ";
  out += ttl;
  out += "\n@ IN NS localhost.\n";
  for (const zone_entry& e : entries) {
    out += e.owner;
    switch (e.answer) {
      case response::nxdomain:
        out += " CNAME .\n";
        break;
      case response::nodata:
        out += " CNAME *.\n";
        break;
      case response::notice:
        out += notice;
        break;
      case response::none:
      case response::count:
        out.resize(out.size() - e.owner.size());  // never given by entries_at
        break;
    }
  }
  return out;
}

std::uint32_t next_serial(std::uint32_t previous, std::int64_t now) noexcept {
  const auto t = static_cast<std::uint32_t>(now);
  // RFC 1982: t is above previous when their difference, as a signed 32-bit value, is positive.
  const auto diff = static_cast<std::int32_t>(t - previous);
  std::uint32_t s = now > 0 && diff > 0 ? t : previous + 1;
  if (s == 0) s = 1;
  return s;
}

namespace {
// The position and length of the serial in `text`'s "@ IN SOA" line, if any.
std::optional<std::pair<std::size_t, std::size_t>> find_serial(std::string_view text) {
  std::size_t at = 0;
  while (at < text.size()) {
    const auto eol = text.find('\n', at);
    const std::string_view line =
        text.substr(at, eol == std::string_view::npos ? std::string_view::npos : eol - at);
    if (line.starts_with(soa_prefix)) {
      const std::size_t start = at + soa_prefix.size();
      std::size_t end = start;
      while (end < text.size() && text[end] >= '0' && text[end] <= '9') ++end;
      if (end == start || end - start > 10) return std::nullopt;
      return std::pair{start, end - start};
    }
    if (eol == std::string_view::npos) break;
    at = eol + 1;
  }
  return std::nullopt;
}
}  // namespace

std::optional<std::uint32_t> read_serial(std::string_view zone_text) {
  const auto pos = find_serial(zone_text);
  if (!pos) return std::nullopt;
  std::uint64_t v = 0;
  const char* b = zone_text.data() + pos->first;
  const auto [end, ec] = std::from_chars(b, b + pos->second, v);
  if (ec != std::errc{} || v > 0xffffffffu) return std::nullopt;
  return static_cast<std::uint32_t>(v);
}

std::optional<std::string> with_serial(std::string_view zone_text, std::uint32_t serial) {
  const auto pos = find_serial(zone_text);
  if (!pos) return std::nullopt;
  std::string out(zone_text.substr(0, pos->first));
  out += std::to_string(serial);
  out += zone_text.substr(pos->first + pos->second);
  return out;
}

}  // namespace sluice::control::rpz
