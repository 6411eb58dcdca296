#pragma once
// The pure core of sluice-rpz: which names a policy wants answered by the resolver at a given
// time, with which answer, and the Response Policy Zone text that says so (README.md beside).
//
// Names come from the rules' `domains:` through match::normalize_rule_name, the same
// normalisation the fast path compiles (lowercase, no trailing dot, U-labels to A-labels), so
// the zone holds exactly what the fast path would match: "telegram.org" is the name itself,
// "*.telegram.org" every name strictly under it (an RPZ wildcard owner has that meaning too).
// A rule's names are wanted while it enforces (never monitor) and `now` is inside its window
// (not_before <= now < not_after), as in sluice-rtbh: windows are honoured here, not by the
// controller.
//
// The answer of a rule is its response (NXDOMAIN `CNAME .`, NODATA `CNAME *.`, or a CNAME to the
// ISP's notice host), chosen by rule id first, then by the rule's action (response_config). A
// name several active rules want gets the strongest: NXDOMAIN over NODATA over the notice.
//
// Nothing here does I/O, and nothing throws except std::bad_alloc.

#include <array>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dataplane/match/action.hpp"

namespace sluice::control::rpz {

// Answers, weakest first (the order ranks them, see above). `none` keeps a rule's names out of
// the zone (DNS cannot throttle).
#define SLUICE_RPZ_RESPONSES(X) \
  X(none, "none")               \
  X(notice, "notice")           \
  X(nodata, "nodata")           \
  X(nxdomain, "nxdomain")

enum class response : std::uint8_t {
#define SLUICE_X(name, text) name,
  SLUICE_RPZ_RESPONSES(SLUICE_X)
#undef SLUICE_X
      count
};
[[nodiscard]] const char* to_string(response r) noexcept;
[[nodiscard]] std::optional<response> parse_response(std::string_view text) noexcept;

struct response_config {
  // By action (index: match::action). drop/reset: NXDOMAIN; notice: the notice CNAME;
  // throttle: none (DNS cannot slow a flow); monitor never enforces whatever is set here.
  std::array<response, static_cast<std::size_t>(match::action::count)> by_action{
      response::nxdomain, response::nxdomain, response::notice, response::none, response::none};
  std::map<std::string, response, std::less<>> by_rule;  // rule id -> answer; wins over by_action

  [[nodiscard]] response for_rule(std::string_view rule_id, match::action act) const;
  // True when some rule could be answered with the notice CNAME (then a notice host is needed).
  [[nodiscard]] bool uses_notice() const;
};

// "drop=nxdomain" (an action) or "rule:R1=nodata" (a rule id) into `c`. False and `error` when
// malformed.
[[nodiscard]] bool parse_response_setting(std::string_view text, response_config& c,
                                          std::string& error);

struct zone_config {
  std::string zone = "sluice.rpz";  // the zone's name (normalised, no trailing dot)
  std::string notice_host;          // the notice CNAME's target (normalised), "" when none
  std::uint32_t ttl = 60;           // of every record ($TTL), and the SOA minimum
  response_config responses;
};

// Checks and normalises the zone name and notice host of `c` in place. False and `error` when
// one is not a valid name, or when a response may be the notice and no notice host is set.
[[nodiscard]] bool normalize_config(zone_config& c, std::string& error);

struct rule_names {
  std::string id;
  match::action act = match::action::drop;
  response answer = response::nxdomain;
  std::int64_t not_before = std::numeric_limits<std::int64_t>::min();  // inclusive
  std::int64_t not_after = std::numeric_limits<std::int64_t>::max();   // exclusive
  std::vector<std::string> owners;  // "telegram.org", "*.telegram.org": zone-relative owners
};

// A policy reduced to what sluice-rpz enforces.
struct rpz_policy {
  std::uint64_t revision = 0;
  std::string ruleset_sha256;  // match::ruleset_sha256 of the whole policy (what nodes report)
  std::vector<rule_names> rules;
};

// Parses a self-contained policy document (the --policy schema, no apps:) and every name in it
// for the zone of `c` (normalize_config'd). nullopt and `error` ("line:column: message" for the
// document, "bad_name: rule R: 'NAME': why" for a name the zone cannot carry) when anything is
// wrong; nothing is half-parsed. Names the zone cannot carry: longer than 253 characters once
// the zone's name is appended, and names under the RPZ trigger labels (rpz-ip, rpz-nsip,
// rpz-nsdname, rpz-client-ip as the last label), which a resolver would read as IP or
// name-server triggers instead of a name.
[[nodiscard]] std::optional<rpz_policy> parse_policy(std::string_view text, const zone_config& c,
                                                     std::string& error);

// The policy in force before any was given: no rules, revision 0, the empty ruleset's digest.
[[nodiscard]] rpz_policy empty_policy();

struct zone_entry {
  std::string_view owner;  // into the rpz_policy it came from
  response answer = response::nxdomain;

  bool operator==(const zone_entry&) const = default;
};

// The owners wanted at `now` with their answers: sorted by owner, one per owner. The views
// point into `p`, which must outlive them.
[[nodiscard]] std::vector<zone_entry> entries_at(const rpz_policy& p, std::int64_t now);

// The first time after `now` at which entries_at() may change, nullopt when it never will.
[[nodiscard]] std::optional<std::int64_t> next_change(const rpz_policy& p, std::int64_t now);

// What the zone's header comment says about where it came from.
struct zone_origin {
  std::uint64_t revision = 0;
  std::string ruleset_sha256;
};

// The zone file: a comment header, $ORIGIN, $TTL, "@ IN SOA ..." on one line with `serial`,
// "@ IN NS localhost.", then one CNAME per entry (owners relative to $ORIGIN).
[[nodiscard]] std::string render_zone(const zone_config& c, const std::vector<zone_entry>& entries,
                                      std::uint32_t serial, const zone_origin& origin);

// The serial after `previous`: `now` (unix seconds, what operators read) when that is above
// `previous` in RFC 1982 serial arithmetic, else previous + 1 (more than one change a second,
// or a clock set back). Never 0.
[[nodiscard]] std::uint32_t next_serial(std::uint32_t previous, std::int64_t now) noexcept;
// The serial of a zone render_zone wrote (its "@ IN SOA" line); nullopt for other text.
[[nodiscard]] std::optional<std::uint32_t> read_serial(std::string_view zone_text);
// `zone_text` with the serial of its "@ IN SOA" line replaced; nullopt when it has none.
[[nodiscard]] std::optional<std::string> with_serial(std::string_view zone_text,
                                                     std::uint32_t serial);

}  // namespace sluice::control::rpz
