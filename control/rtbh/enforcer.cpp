#include "control/rtbh/enforcer.hpp"

#include <algorithm>
#include <chrono>

namespace sluice::control::rtbh {

enforcer::enforcer(route_table& table, agent::clock& clock, enforcer_options options)
    : table_(table), clock_(clock), options_(std::move(options)), policy_(empty_policy()) {}

void enforcer::log(const std::string& line) const {
  if (options_.log) options_.log(line);
}

reconcile_report enforcer::reconcile_locked(const rtbh_policy& p, bool stop_on_error) {
  const auto start = std::chrono::steady_clock::now();
  reconcile_report rep;
  const std::int64_t now = clock_.unix_now();
  const auto finish = [&]() {
    rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    next_change_ = next_change(p, now);
    if (options_.metrics) options_.metrics->reconciled(rep.seconds, rep.routes, rep.netlink_errors);
    return rep;
  };
  list_result found = table_.list();
  if (!found.ok) {
    rep.error = found.error;
    rep.error_number = found.error_number;
    rep.netlink_errors = 1;
    return finish();
  }
  const plan pl = make_plan(wanted_at(p, now), std::move(found.routes));
  rep.kept = pl.kept;
  // Wrong-typed leftovers are removed before the adds re-create them as the configured kind.
  std::vector<prefix> retyped;
  for (const prefix& r : pl.removes) {
    if (std::binary_search(pl.adds.begin(), pl.adds.end(), r)) retyped.push_back(r);
  }
  std::size_t retyped_done = 0;
  if (!retyped.empty()) {
    const batch_result b = table_.remove(retyped);
    retyped_done = b.done;
    rep.netlink_errors += b.failed + (b.ok() || b.failed ? 0 : 1);
    if (!b.ok()) {
      rep.error = b.error;
      rep.error_number = b.error_number;
    }
  }
  const batch_result a = table_.add(pl.adds);
  rep.added = a.done;
  rep.netlink_errors += a.failed + (a.ok() || a.failed ? 0 : 1);
  if (!a.ok() && rep.error.empty()) {
    rep.error = a.error;
    rep.error_number = a.error_number;
  }
  std::size_t removes_left = pl.removes.size() - retyped.size();
  if (rep.error.empty() || !stop_on_error) {
    std::vector<prefix> rest;
    rest.reserve(removes_left);
    for (const prefix& r : pl.removes) {
      if (!std::binary_search(pl.adds.begin(), pl.adds.end(), r)) rest.push_back(r);
    }
    const batch_result d = table_.remove(rest);
    rep.removed = d.done;
    removes_left -= d.done;
    rep.netlink_errors += d.failed + (d.ok() || d.failed ? 0 : 1);
    if (!d.ok() && rep.error.empty()) {
      rep.error = d.error;
      rep.error_number = d.error_number;
    }
  }
  rep.removed += retyped_done;
  rep.routes = pl.kept + rep.added + removes_left;
  rep.ok = rep.error.empty();
  return finish();
}

agent::apply_result enforcer::apply(const std::string& policy_text, std::uint64_t revision) {
  agent::apply_result out;
  std::string error;
  std::optional<rtbh_policy> parsed = parse_policy(policy_text, error);
  std::lock_guard lock(mutex_);
  out.ruleset_sha256 = policy_.ruleset_sha256;
  if (!parsed) {
    out.error = "invalid policy: " + error;
    log("revision " + std::to_string(revision) + " refused, previous stays: " + out.error);
    return out;
  }
  const reconcile_report rep = reconcile_locked(*parsed, true);
  if (!rep.ok) {
    out.error = "netlink: " + rep.error;
    log("revision " + std::to_string(revision) + " refused, previous stays: " + out.error);
    // Put back what the previous policy had (whatever part of the new one got in goes again).
    const reconcile_report back = reconcile_locked(policy_, false);
    health_ = back.ok ? "ok" : "netlink: " + back.error;
    return out;
  }
  policy_ = std::move(*parsed);
  policy_.revision = revision;
  health_ = "ok";
  out.ok = true;
  out.ruleset_sha256 = policy_.ruleset_sha256;
  if (options_.metrics) options_.metrics->applied(revision);
  log("revision " + std::to_string(revision) + " in force (sha256 " + policy_.ruleset_sha256 +
      "): " + std::to_string(rep.routes) + " routes, +" + std::to_string(rep.added) + " -" +
      std::to_string(rep.removed) + " in " + std::to_string(rep.seconds) + " s");
  return out;
}

agent::applied_policy enforcer::current() const {
  std::lock_guard lock(mutex_);
  return {policy_.revision, policy_.ruleset_sha256};
}

reconcile_report enforcer::reconcile() {
  std::lock_guard lock(mutex_);
  reconcile_report rep = reconcile_locked(policy_, false);
  health_ = rep.ok ? "ok" : "netlink: " + rep.error;
  return rep;
}

std::optional<reconcile_report> enforcer::tick() {
  std::lock_guard lock(mutex_);
  if (!next_change_ || clock_.unix_now() < *next_change_) return std::nullopt;
  reconcile_report rep = reconcile_locked(policy_, false);
  health_ = rep.ok ? "ok" : "netlink: " + rep.error;
  return rep;
}

std::string enforcer::health() const {
  std::lock_guard lock(mutex_);
  return health_;
}

}  // namespace sluice::control::rtbh
