#include "dataplane/engine/policy_holder.hpp"

#include <rte_rcu_qsbr.h>

#include <chrono>
#include <ctime>
#include <sstream>
#include <utility>

#include "dataplane/match/action.hpp"
#include "dataplane/match/policy_config.hpp"

namespace sluice::engine {
namespace {

std::int64_t unix_now() { return static_cast<std::int64_t>(std::time(nullptr)); }

void free_snapshot(const active_policy* a) { delete a; }

}  // namespace

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// `parse_seconds`: what reading `spec` took (before this call).
std::optional<prepared_policy> compile_prepared(match::policy_spec spec, const std::string& origin,
                                                double parse_seconds, std::string& error) {
  const auto start = std::chrono::steady_clock::now();
  match::compile_result compiled = match::compile_policy(spec);
  if (!compiled) {
    error = (origin.empty() ? std::string("(empty policy)") : origin) + ": rule " +
            std::to_string(compiled.error.rule_index + 1) + " (" + compiled.error.rule_id +
            "): " + match::to_string(compiled.error.code) + ": " + compiled.error.message;
    return std::nullopt;
  }
  prepared_policy p;
  p.policy = std::move(compiled.policy);
  p.path = origin;
  p.parse_seconds = parse_seconds;
  p.compile_seconds = seconds_since(start);
  p.load_seconds = p.parse_seconds + p.compile_seconds;
  return p;
}

}  // namespace

std::optional<prepared_policy> prepare_policy(const std::filesystem::path& path,
                                              const std::filesystem::path& apps_dir,
                                              std::string& error) {
  const auto start = std::chrono::steady_clock::now();
  match::policy_spec spec;
  if (!path.empty()) {
    match::policy_load_result loaded = match::load_policy_file(path, apps_dir);
    if (!loaded) {
      error = loaded.error.text();
      if (loaded.error.file.empty()) error = path.string() + ":" + error;
      return std::nullopt;
    }
    spec = std::move(*loaded.spec);
  }
  return compile_prepared(std::move(spec), path.string(), seconds_since(start), error);
}

std::optional<prepared_policy> prepare_policy_text(const std::string& text,
                                                   const std::string& origin,
                                                   std::string& error) {
  const auto start = std::chrono::steady_clock::now();
  std::istringstream in(text);
  match::policy_load_result loaded = match::load_policy(in, {});
  if (!loaded) {
    error = origin + ":" + loaded.error.text();
    return std::nullopt;
  }
  return compile_prepared(std::move(*loaded.spec), origin, seconds_since(start), error);
}

std::optional<prepared_policy> prepare_policy_spec(match::policy_spec spec,
                                                   const std::string& origin,
                                                   double parse_seconds, std::string& error) {
  return compile_prepared(std::move(spec), origin, parse_seconds, error);
}

policy_holder::policy_holder(worker_shared& shared, std::uint32_t workers,
                             std::filesystem::path apps_dir)
    : shared_(shared), workers_(workers), apps_dir_(std::move(apps_dir)) {}

policy_holder::~policy_holder() {
  shared_.policy.store(nullptr, std::memory_order_release);
  free_snapshot(active_);
  for (const retired& r : retired_) free_snapshot(r.snapshot);
}

// RCU ordering. The new snapshot (compiled policy + zeroed counters) is fully built before the
// release store below, so a worker's acquire load that sees the new pointer also sees every
// byte of it. rte_rcu_qsbr_start() is called after the store: a worker reports quiescence
// (rte_rcu_qsbr_quiescent, a release store of its counter) only between bursts, where it holds
// no policy pointer, so once every worker has reported a quiescent state with a counter at or
// past the token (rte_rcu_qsbr_check, acquire), its next burst loads the new pointer and no
// worker can still read the old snapshot; its last counter increments are visible to us too
// (release/acquire through the QSBR counters), so folding them then loses nothing.
void policy_holder::publish_locked(prepared_policy p) {
  auto next = std::make_unique<active_policy>();
  const std::uint32_t rules = p.policy->rule_count();
  next->workers = workers_;
  next->generation = ++generation_;
  const std::size_t slots = std::size_t{workers_} * rules;
  next->rule_counters = std::make_unique<rule_counter[]>(slots == 0 ? 1 : slots);
  status_.revision = p.policy->revision();
  status_.sha256 = p.policy->ruleset_sha256();
  status_.rules = rules;
  status_.path = p.path;
  status_.load_seconds = p.load_seconds;
  status_.parse_seconds = p.parse_seconds;
  status_.compile_seconds = p.compile_seconds;
  status_.loaded_at = unix_now();
  status_.last_error.clear();
  next->policy = std::move(p.policy);

  const active_policy* old = active_;
  active_ = next.release();
  shared_.policy.store(active_, std::memory_order_release);
  if (old != nullptr) {
    const std::uint64_t token =
        shared_.qsbr != nullptr ? rte_rcu_qsbr_start(shared_.qsbr) : 0;
    retired_.push_back({old, token});
  }
}

void policy_holder::install(prepared_policy p) {
  std::lock_guard lock(mutex_);
  file_ = p.path;
  publish_locked(std::move(p));
}

load_result policy_holder::reload(const std::filesystem::path& path) {
  std::lock_guard load_lock(load_mutex_);
  std::filesystem::path file = path;
  if (file.empty()) {
    std::lock_guard lock(mutex_);
    file = file_;
  }
  std::string error;
  std::optional<prepared_policy> p = prepare_policy(file, apps_dir_, error);
  std::lock_guard lock(mutex_);
  if (p) file_ = file;
  return finish_load_locked(std::move(p), std::move(error));
}

load_result policy_holder::load_text(const std::string& text, const std::string& origin) {
  std::lock_guard load_lock(load_mutex_);
  std::string error;
  std::optional<prepared_policy> p = prepare_policy_text(text, origin, error);
  std::lock_guard lock(mutex_);
  return finish_load_locked(std::move(p), std::move(error));
}

load_result policy_holder::load_spec(match::policy_spec spec, const std::string& origin,
                                     double parse_seconds) {
  std::lock_guard load_lock(load_mutex_);
  std::string error;
  std::optional<prepared_policy> p =
      prepare_policy_spec(std::move(spec), origin, parse_seconds, error);
  std::lock_guard lock(mutex_);
  return finish_load_locked(std::move(p), std::move(error));
}

load_result policy_holder::finish_load_locked(std::optional<prepared_policy> p, std::string error) {
  load_result out;
  if (!p) {
    ++status_.reload_failures;
    status_.last_error = error;
    out.error = std::move(error);
  } else {
    publish_locked(std::move(*p));
    out.ok = true;
  }
  out.revision = status_.revision;
  out.sha256 = status_.sha256;
  return out;
}

void policy_holder::fold_locked(const active_policy& a,
                                std::map<std::string, rule_total>& into) const {
  if (!a.policy) return;
  const std::uint32_t rules = a.policy->rule_count();
  for (std::uint32_t r = 0; r < rules; ++r) {
    const match::compiled_rule& rule = a.policy->rule(r);
    rule_total& t = into[rule.id];
    t.directive = rule.directive;
    t.action = match::to_string(rule.act);
    for (std::uint32_t w = 0; w < a.workers; ++w) {
      const rule_counter& c = a.rule_counters[std::size_t{w} * rules + r];
      t.flows += c.flows;
      t.packets += c.packets;
    }
  }
}

void policy_holder::reclaim() {
  std::lock_guard lock(mutex_);
  std::erase_if(retired_, [&](const retired& r) {
    if (shared_.qsbr != nullptr && rte_rcu_qsbr_check(shared_.qsbr, r.token, false) != 1) {
      return false;
    }
    fold_locked(*r.snapshot, totals_);
    free_snapshot(r.snapshot);
    return true;
  });
}

policy_status policy_holder::status() const {
  std::lock_guard lock(mutex_);
  return status_;
}

std::vector<telemetry::rule_stats> policy_holder::rule_stats() const {
  std::lock_guard lock(mutex_);
  std::map<std::string, rule_total> all = totals_;
  for (const retired& r : retired_) fold_locked(*r.snapshot, all);
  if (active_ != nullptr) fold_locked(*active_, all);
  std::vector<telemetry::rule_stats> out;
  out.reserve(all.size());
  for (auto& [id, t] : all) {
    out.push_back({id, t.directive, t.action, t.flows, t.packets});
  }
  return out;
}

}  // namespace sluice::engine
