#pragma once
// Impact reports (issue 8): what the flows a node's rules matched were called, and the fleet-wide
// view of one directive built from them. Pure: no clock, no store, no I/O. Thread-compatible.
//
// A report body, as the node agent POSTs it (stored verbatim as store::impact_record::body):
//   {"window_start": <unix s>, "window_end": <unix s>, "revision": N,
//    "rules": [{"rule": "<rule id>", "directive": "ISSUER/ID" or "", "flows": F, "unnamed": U,
//               "names": [{"name": "telegram.org", "flows": n, "error": e}, ...], "other": O}]}
// `names` is the node's top-K (SNI / HTTP Host) with each count and its possible overcount
// (`error`, as a Space-Saving sketch reports it); `other` counts named flows outside the top-K.
//
// Rule ids follow control/fleet/compile.hpp: "ISSUER/ID[#N][@SUFFIX]", where SUFFIX is a canonical
// prefix (the rule counts that prefix alone) or "names" (the directive's domains). A rule
// without a suffix counts under the pseudo-prefix "*" (all of the directive's targets).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "control/directive/directive.hpp"
#include "control/fleet/compile.hpp"
#include "control/store/store.hpp"

namespace sluice::control::impact {

// Limits on one body; a body over any of them is refused whole.
inline constexpr std::size_t max_body_bytes = std::size_t{1} << 20;
inline constexpr std::size_t max_rules = 4096;
inline constexpr std::size_t max_names_per_rule = 64;
inline constexpr std::size_t max_rule_id_bytes = 512;
// Larger than any flow count one node sees in one window; keeps fleet-wide sums far from
// overflowing and every value exact in a JSON double.
inline constexpr std::uint64_t max_count = std::uint64_t{1} << 40;

struct name_count {
  std::string name;  // folded: ASCII lower case, no trailing dot
  std::uint64_t flows = 0;
  std::uint64_t error = 0;  // <= flows
};

struct rule_report {
  std::string rule;       // non-empty, unique within the body
  std::string directive;  // "ISSUER/ID" or ""
  std::uint64_t flows = 0;
  std::uint64_t unnamed = 0;
  std::vector<name_count> names;  // unique names (case variants merged), as sent otherwise
  std::uint64_t other = 0;
};

struct parsed_body {
  std::int64_t window_start = 0;
  std::int64_t window_end = 0;  // >= window_start
  std::uint64_t revision = 0;
  std::vector<rule_report> rules;
};

// Parses and checks a whole body: JSON object with every key above present and of its type
// (integers only, none negative, counts <= max_count, error <= flows), the size limits above,
// rule ids non-empty printable ASCII without spaces, `directive` empty or "ISSUER/ID", names
// non-empty DNS-ish text ([A-Za-z0-9_-] labels of 1..63 bytes, <= 253 bytes, one trailing dot
// allowed) and window_start <= window_end. Unknown keys are ignored (newer agents). On failure
// returns nullopt and sets `error` to a one-line reason naming the offending field
// ("rules[3].names[0].flows: must be a non-negative integer"). Never throws (but bad_alloc).
[[nodiscard]] std::optional<parsed_body> parse_impact_body(std::string_view text,
                                                           std::string& error);

// Fleet-wide impact of directive `d` from the reports whose window lies in [since, until]
// (window_start >= since and window_end <= until); others, bodies that do not parse, and rules of
// other directives are ignored. A rule belongs to `d` when its `directive` is d's key, or, when
// that is empty, when its id up to '#'/'@' is. At most `top` names are listed per entry.
//   {"directive": "ISSUER/ID", "since", "until", "reports": n (records used),
//    "nodes": distinct node ids, "newest_window_end": ts or 0,
//    "prefixes": [{"prefix", "flows", "unnamed", "own_flows", "own_share", "unnamed_share",
//                  "other_flows", "top_other": [{"name", "flows", "share"}]}],
//    "domains": [{"domain", "flows", "names": [{"name", "flows"}]}]}
// "prefixes": every target prefix of `d` (apps expanded), plus any other suffix prefix seen in a
// report, plus "*" when unsuffixed rules reported; by flows descending, then target order.
// flows = named + unnamed + the reports' `other`; a name is own when d's domain targets match
// it as the dataplane's domain set does (exact name, or strictly under a "*." base);
// other_flows = flows - own_flows - unnamed (non-own names and names outside the nodes' top-K).
// Shares are of `flows`, rounded to 4 decimals (0 when flows is 0). top_other: non-own names by
// flows descending, then name.
// "domains": every domain target of `d`, in target order, with the named flows of the "@names"
// and unsuffixed rules whose name it matches (each name goes to its best match: the exact rule,
// else the longest "*." base), names by flows descending, then name.
// An app profile missing from `apps` contributes nothing and adds "warnings": [text].
// Never throws (but bad_alloc).
[[nodiscard]] nlohmann::json impact_report(const directive::directive& d,
                                           const fleet::app_table& apps,
                                           const std::vector<store::impact_record>& records,
                                           std::int64_t since, std::int64_t until,
                                           std::size_t top);

}  // namespace sluice::control::impact
