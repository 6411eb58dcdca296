#pragma once
// Directives -> the fleet's policy (every rule with its scope), and the fleet's policy -> one
// node's self-contained policy text (DESIGN.md "Snapshot"; the `--policy` schema, no `apps:`).
// Pure: no clock, no store, no I/O.
//
// How directives become rules:
//  - block -> drop | reset | notice (its response), throttle -> throttle, monitor -> monitor;
//    unblock makes no rule of its own: it ends or narrows others.
//  - App profiles are expanded into prefixes and domains; every entry is canonical text
//    (prefixes through inet_pton/inet_ntop, domains through normalize_rule_name), deduplicated.
//  - An unblock that `lifts` a directive ends its rule at the unblock's not_before (the earlier
//    of that and the directive's own not_after), so a node cut off from the controller still
//    lifts on time.
//  - An unblock with `targets` (same issuer) removes exactly those entries, from its not_before
//    on, from every rule whose scope equals the unblock's (or from every rule when the unblock's
//    scope is `all`): the rule is split in time into a part before and a part after. Nothing is
//    widened: an entry is removed only when it is written identically (after canonicalisation).
//  - Shadow rules (issue 8): a block/throttle directive still awaiting approval (`shadowed`)
//    compiles to `monitor` rules with shadow = true, no not_before, its own not_after and scope,
//    so nodes count what it would hit before anyone approves it. Lifts and narrowing unblocks do
//    not apply to them (they describe the directive as submitted).
//  - Every monitor rule (shadow or from a monitor directive) is split per target: one rule
//    "<base id>@<canonical prefix>" per prefix and one "<base id>@names" holding all domains
//    (when there are any), so impact reports (control/impact) are per prefix. `directive`
//    stays "ISSUER/ID". Enforcing rules are not split.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "control/directive/directive.hpp"
#include "dataplane/match/policy.hpp"
#include "dataplane/match/policy_config.hpp"

namespace sluice::control::fleet {

struct fleet_rule {
  // "ISSUER/ID", or "ISSUER/ID#N" for the N-th part of a split rule; monitor rules add
  // "@<canonical prefix>" or "@names" (see above).
  std::string id;
  std::string directive;  // "ISSUER/ID"
  match::action act = match::action::drop;
  std::string legal_basis;
  match::throttle_spec throttle;
  std::vector<std::string> prefixes;
  std::vector<std::string> domains;
  std::optional<std::int64_t> not_before;
  std::optional<std::int64_t> not_after;
  directive::scope_spec scope;
  std::uint64_t since = 0;  // the revision in which this rule first appeared in this form
  bool shadow = false;      // monitor rule of a directive awaiting approval (JSON: absent = false)

  // Everything but `since`.
  [[nodiscard]] bool same_as(const fleet_rule& o) const;
};

struct fleet_policy {
  bool emergency_stop = false;  // engineers' kill switch: every node gets no rules
  std::vector<fleet_rule> rules;

  [[nodiscard]] bool same_as(const fleet_policy& o) const;  // ignoring `since`
  [[nodiscard]] std::string to_json() const;
  // nullopt when `text` is not what to_json() writes.
  [[nodiscard]] static std::optional<fleet_policy> from_json(const std::string& text);
};

using app_table = std::map<std::string, match::app_profile>;

struct compile_result {
  std::optional<fleet_policy> policy;
  std::string error;  // e.g. "directive moc/X: app profile 'telegram' is not loaded"
  [[nodiscard]] explicit operator bool() const noexcept { return policy.has_value(); }
};

// `effective`: the directives in force or scheduled (approved, not ended), any order; the
// result's rules are ordered by directive key, so equal inputs compile equally. Rules that equal
// one of `previous` keep its `since`; others get `next_revision`. `shadowed`: directives awaiting
// approval; block/throttle ones become shadow monitor rules (others, any whose key is also in
// `effective`, and any naming an app profile not in `apps` are skipped, never an error: a
// directive nobody approved must not stall the rollout). An emergency stop compiles no rules at all, shadow ones included.
[[nodiscard]] compile_result compile_fleet(const std::vector<directive::directive>& effective,
                                           const app_table& apps, bool emergency_stop,
                                           const fleet_policy* previous,
                                           std::uint64_t next_revision,
                                           const std::vector<directive::directive>& shadowed = {});

// A target set with app profiles expanded: canonical prefixes (canonical_prefix) and domains
// (match::normalize_rule_name text, "*." kept), deduplicated, in order: each app's prefixes and
// domains, then the set's own. The same expansion compile_fleet uses.
struct expanded_targets {
  std::vector<std::string> prefixes;
  std::vector<std::string> domains;
};
struct expand_result {
  std::optional<expanded_targets> targets;
  std::string error;  // e.g. "directive moc/X: app profile 'telegram' is not loaded"
  [[nodiscard]] explicit operator bool() const noexcept { return targets.has_value(); }
};
[[nodiscard]] expand_result expand_targets(const directive::directive& d, const app_table& apps);

// The rules whose scope covers a node with `labels`.
[[nodiscard]] std::vector<const fleet_rule*> rules_for(const fleet_policy& p,
                                                       const std::map<std::string, std::string>& labels);

// Which nodes a snapshot is for (issue 13): the controller signs one snapshot per (revision,
// scope) and sends the same bytes to every node of the scope, so the signature names the scope
// rather than a node. The text is "all" when no rule of `p` has a scope other than `all` (every
// node gets the same document); otherwise one term per distinct non-`all` scope among p's rules,
// in the order they first appear, joined by ',': "+SCOPE" when `labels` are in it, "!SCOPE" when
// not. SCOPE is scope_term(). Two nodes get equal texts exactly when the same rules cover them,
// i.e. when node_policy_text() gives them the same document; a node checks the text against its
// own labels (control/agent), so a snapshot cannot be replayed to a node of another scope.
[[nodiscard]] std::string snapshot_scope(const fleet_policy& p,
                                         const std::map<std::string, std::string>& labels);
// A scope's canonical text: "site:" + sites joined by '|' (when it names sites), then
// "key=value" per label in key order, joined by '&' ("site:msk-1|msk-2&region=north").
// Names and values are [A-Za-z0-9_.-] (config and directive checks), so the separators are
// unambiguous.
[[nodiscard]] std::string scope_term(const directive::scope_spec& s);

// The node's policy document (YAML), as sluice::match::load_policy reads it.
[[nodiscard]] std::string node_policy_text(const fleet_policy& p,
                                           const std::map<std::string, std::string>& labels,
                                           std::uint64_t revision, std::int64_t generated_at);

// "ISSUER/ID".
[[nodiscard]] std::string directive_key(const directive::directive& d);

// Canonical prefix text ("2001:67c:4e8::/48"); nullopt when not a valid prefix.
[[nodiscard]] std::optional<std::string> canonical_prefix(const std::string& text);

// RFC 3339 UTC ("2026-11-28T12:00:00Z").
[[nodiscard]] std::string format_rfc3339(std::int64_t unix_seconds);

}  // namespace sluice::control::fleet
