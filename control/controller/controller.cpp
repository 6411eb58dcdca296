#include "control/controller/controller.hpp"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <algorithm>
#include <limits>
#include <nlohmann/json.hpp>

#include "control/impact/report.hpp"

namespace sluice::control::controller {
namespace {

using json = nlohmann::json;
using store::directive_record;

constexpr std::string_view state_awaiting = "awaiting_approval";
constexpr std::string_view state_scheduled = "scheduled";
constexpr std::string_view state_active = "active";
constexpr std::string_view state_ended = "ended";
constexpr const char* all_states[] = {"awaiting_approval", "scheduled", "active", "ended"};
constexpr const char* node_states[] = {"converged", "pending", "failing", "stale", "revoked",
                                       "not_enrolled"};

std::string key_of(const std::string& issuer, const std::string& id) { return issuer + "/" + id; }

bool in_force(const directive_record& r) {
  return r.state == state_scheduled || r.state == state_active;
}

// Distinct engineers behind approvals of one kind ("approve" or "override").
std::size_t count_kind(const directive_record& r, std::string_view kind) {
  std::set<std::string> actors;
  for (const auto& a : r.approvals)
    if (a.kind == kind) actors.insert(a.actor);
  return actors.size();
}

bool enforcing_action(directive::directive_action a) {
  return a == directive::directive_action::block || a == directive::directive_action::throttle;
}

std::string labels_text(const std::map<std::string, std::string>& labels) {
  std::string s;
  for (const auto& [k, v] : labels) s += k + "=" + v + ",";
  return s;
}

}  // namespace

std::int64_t system_clock::now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string_view to_string(role r) noexcept {
  switch (r) {
    case role::ministry:
      return "ministry";
    case role::engineer:
      return "engineer";
    case role::viewer:
      return "viewer";
    case role::node:
      return "node";
  }
  return "?";
}

std::optional<role> parse_role(std::string_view s) noexcept {
  for (role r : {role::ministry, role::engineer, role::viewer, role::node})
    if (to_string(r) == s) return r;
  return std::nullopt;
}

int http_status(error_kind k) noexcept {
  switch (k) {
#define X(name, status)  \
  case error_kind::name: \
    return status;
    SLUICE_CONTROL_ERROR_KINDS(X)
#undef X
  }
  return 500;
}

// ---- construction, persistence helpers ----------------------------------------------------

controller::controller(controller_config cfg, store::store& st, clock& clk)
    : cfg_(std::move(cfg)), store_(st), clk_(clk), registry_(std::make_shared<prometheus::Registry>()) {
  directives_gauge_ = &prometheus::BuildGauge()
                           .Name("sluice_control_directives")
                           .Help("Directives by lifecycle state")
                           .Register(*registry_);
  nodes_gauge_ = &prometheus::BuildGauge()
                      .Name("sluice_control_nodes")
                      .Help("Nodes by state (converged, pending, failing, stale)")
                      .Register(*registry_);
  revision_gauge_ = &prometheus::BuildGauge()
                         .Name("sluice_control_revision")
                         .Help("Newest compiled policy revision")
                         .Register(*registry_)
                         .Add({});
  released_gauge_ = &prometheus::BuildGauge()
                         .Name("sluice_control_released_revision")
                         .Help("Revision offered to non-canary nodes")
                         .Register(*registry_)
                         .Add({});
  convergence_ = &prometheus::BuildHistogram()
                      .Name("sluice_control_directive_convergence_seconds")
                      .Help("Time from a revision's creation to the last live node's ACK of it")
                      .Register(*registry_)
                      .Add({}, prometheus::Histogram::BucketBoundaries{0.1, 0.25, 0.5, 1, 2, 5,
                                                                        10, 30, 60, 120, 300});
  signature_failures_ = &prometheus::BuildCounter()
                             .Name("sluice_control_signature_failures_total")
                             .Help("Directives refused for their signature or signing key")
                             .Register(*registry_)
                             .Add({});
  snapshot_bytes_ = &prometheus::BuildCounter()
                         .Name("sluice_control_snapshot_bytes_total")
                         .Help("Bytes of snapshot bodies sent to nodes")
                         .Register(*registry_)
                         .Add({});
  snapshots_served_ = &prometheus::BuildCounter()
                           .Name("sluice_control_snapshots_served_total")
                           .Help("Snapshots sent to nodes (200 answers)")
                           .Register(*registry_)
                           .Add({});
  snapshots_signed_ = &prometheus::BuildCounter()
                           .Name("sluice_control_snapshots_signed_total")
                           .Help("Snapshot bodies compiled and signed (one per revision and scope)")
                           .Register(*registry_)
                           .Add({});
  directive_parses_ = &prometheus::BuildCounter()
                          .Name("sluice_control_directive_parses_total")
                          .Help("Stored directive documents parsed (once each: a document never "
                                "changes once received)")
                          .Register(*registry_)
                          .Add({});
  policy_compiles_ = &prometheus::BuildCounter()
                         .Name("sluice_control_policy_compiles_total")
                         .Help("Fleet policy compiles (directives -> rules); skipped when no "
                               "directive, state or emergency stop changed")
                         .Register(*registry_)
                         .Add({});
  compile_seconds_ = &prometheus::BuildGauge()
                          .Name("sluice_control_policy_compile_seconds")
                          .Help("How long the last fleet policy compile took")
                          .Register(*registry_)
                          .Add({});
  snapshot_sign_seconds_ = &prometheus::BuildGauge()
                                .Name("sluice_control_snapshot_sign_seconds")
                                .Help("How long the last snapshot body took to render, sign "
                                      "and serialise (once per revision and scope)")
                                .Register(*registry_)
                                .Add({});
  validation_failures_ = &prometheus::BuildCounter()
                              .Name("sluice_control_validation_failures_total")
                              .Help("Inputs refused by validation, by error code")
                              .Register(*registry_);
  checkpoints_signed_ = &prometheus::BuildCounter()
                             .Name("sluice_control_audit_checkpoints_signed_total")
                             .Help("Audit checkpoints signed (one per new audit head, at most one "
                                   "per tick)")
                             .Register(*registry_)
                             .Add({});
  checkpoints_refused_ = &prometheus::BuildCounter()
                              .Name("sluice_control_audit_checkpoints_refused_total")
                              .Help("Audit checkpoints reported by nodes that did not parse or "
                                    "verify with the controller's key (not stored)")
                              .Register(*registry_)
                              .Add({});
  checkpoint_records_ = &prometheus::BuildGauge()
                             .Name("sluice_control_audit_checkpoint_records")
                             .Help("Records covered by the latest signed audit checkpoint")
                             .Register(*registry_)
                             .Add({});
  // The secret key holds its public half (seed | public key), under the same key id.
  public_key_.id = cfg_.signing_key.id;
  std::copy(cfg_.signing_key.key.begin() + 32, cfg_.signing_key.key.end(), public_key_.key.begin());
  for (const char* s : all_states) directives_gauge_->Add({{"state", s}});
  for (const char* s : node_states) nodes_gauge_->Add({{"state", s}});

  node_refusals_total_ = &prometheus::BuildCounter()
                             .Name("sluice_control_node_refusals_total")
                             .Help("Node requests refused by identity: not_enrolled, revoked, "
                                   "certificate_not_current, wrong_node")
                             .Register(*registry_);
  for (const char* c : {"not_enrolled", "revoked", "certificate_not_current", "wrong_node"})
    node_refusals_total_->Add({{"code", c}});
  labels_ignored_ = &prometheus::BuildCounter()
                         .Name("sluice_control_node_labels_ignored_total")
                         .Help("Node requests whose self-declared labels differed from the "
                               "inventory's (ignored: labels come from the inventory)")
                         .Register(*registry_)
                         .Add({});
  inventory_gauge_ = &prometheus::BuildGauge()
                          .Name("sluice_control_inventory_nodes")
                          .Help("Nodes in the inventory by state (enrolled, revoked)")
                          .Register(*registry_);

  is_leader_gauge_ = &prometheus::BuildGauge()
                         .Name("sluice_control_is_leader")
                         .Help("1 while this replica runs the time-driven work (always 1 with "
                               "SQLite)")
                         .Register(*registry_)
                         .Add({});

  std::lock_guard lock(mutex_);
  load_meta_locked();
  for (auto& n : store_.list_nodes()) nodes_[n.node_id].record = std::move(n);
  apply_configured_nodes_locked();

  if (auto latest = store_.latest_revision()) {
    auto p = fleet::fleet_policy::from_json(latest->content);
    if (!p) throw store::store_error("revision " + std::to_string(latest->revision) +
                                     " in the store is unreadable");
    policy_ = std::move(*p);
    revision_ = latest->revision;
    revision_at_ = latest->generated_at;
    revision_at_ms_ = revision_at_ * 1000;
  } else {
    store::write_batch batch;
    revision_ = 1;
    revision_at_ms_ = clk_.now_ms();
    revision_at_ = revision_at_ms_ / 1000;
    batch.revisions.push_back({1, revision_at_, policy_.to_json(), "initial: no rules"});
    batch.audit.push_back(event({"controller", role::engineer}, "controller.initialised", "",
                                json{{"revision", 1}}.dump()));
    rollout_ = {};
    start_rollout_locked(1, batch, true);
    if (auto e = commit_locked(batch)) {
      // Another replica initialised the shared store first: take what it wrote.
      if (!cfg_.replicated || e->kind != error_kind::conflict) throw store::store_error(e->message);
      refresh_locked(true);
    }
  }
  if (cfg_.replicated) synced_store_rev_ = store_.store_revision();
  refresh_checkpoint_locked();
  update_gauges_locked();
}

void controller::load_meta_locked() {
  rollout_ = {};
  if (auto meta = store_.get_meta("rollout")) {
    meta_seen_["rollout"] = *meta;
    const json j = json::parse(*meta, nullptr, false);
    if (j.is_object()) {
      rollout_.target = j.value("target", std::uint64_t{0});
      rollout_.released = j.value("released", std::uint64_t{0});
      rollout_.stage = j.value("stage", std::string("done"));
      rollout_.paused = j.value("paused", false);
      rollout_.reason = j.value("reason", std::string());
      rollout_.stage_since = j.value("stage_since", std::int64_t{0});
      rollout_.canary_acked_at = j.value("canary_acked_at", std::int64_t{0});
    }
  } else {
    meta_seen_["rollout"].clear();
  }
  const auto stop = store_.get_meta("emergency_stop");
  meta_seen_["emergency_stop"] = stop.value_or("");
  emergency_stop_ = stop && *stop == "on";
  const auto inventory_generation = store_.get_meta("inventory");
  meta_seen_["inventory"] = inventory_generation.value_or("");
  if (inventory_.generation != meta_seen_["inventory"] || inventory_.size() == 0)
    reload_inventory_locked(meta_seen_["inventory"]);
  removed_in_.clear();
  const auto removed = store_.get_meta("removed_in");
  meta_seen_["removed_in"] = removed.value_or("");
  if (removed) {
    const json j = json::parse(*removed, nullptr, false);
    if (j.is_object()) removed_in_ = j.get<std::map<std::string, std::uint64_t>>();
  }
}

void controller::refresh_locked(bool force) {
  if (!cfg_.replicated) return;
  const std::uint64_t rev = store_.store_revision();
  if (!force && rev == synced_store_rev_) return;
  const std::uint64_t target = rollout_.target, released = rollout_.released;
  if (auto latest = store_.latest_revision(); latest && (force || latest->revision != revision_)) {
    auto p = fleet::fleet_policy::from_json(latest->content);
    if (!p) throw store::store_error("revision " + std::to_string(latest->revision) +
                                     " in the store is unreadable");
    policy_ = std::move(*p);
    revision_ = latest->revision;
    revision_at_ = latest->generated_at;
    revision_at_ms_ = revision_at_ * 1000;
    last_compiled_.reset();
  }
  load_meta_locked();
  synced_store_rev_ = rev;
  if (rollout_.target != target || rollout_.released != released) offers_changed_locked();
}

// Other replicas' node reports reach this one through the store: from its change feed when it
// has one (cheap, so on every call), else by listing every node, at most once a second. A full
// list at least every 5 s also brings what a feed does not carry: liveness that expired.
void controller::refresh_nodes_locked(bool full) {
  if (!cfg_.replicated) return;
  const std::int64_t now_ms = clk_.now_ms();
  full = full || now_ms - nodes_listed_ms_ >= 5000;
  std::optional<std::vector<store::node_record>> recs;
  if (!full) recs = store_.take_node_changes();
  if (!recs) {
    if (!full && now_ms - nodes_listed_ms_ < 1000) return;
    recs = store_.list_nodes();
    nodes_listed_ms_ = now_ms;
  }
  for (auto& rec : *recs) {
    auto [it, fresh] = nodes_.try_emplace(rec.node_id);
    node_entry& n = it->second;
    // A report this replica took and has not flushed yet is newer than the store's copy.
    if (!fresh && (n.dirty || rec.last_seen < n.record.last_seen)) continue;
    // Another replica's ACK: its time is known to the refresh's granularity only.
    if (rec.applied_revision > n.record.applied_revision) n.applied_at_ms = now_ms;
    n.record = std::move(rec);
  }
}

controller::~controller() = default;

audit::audit_record controller::event(const principal& who, std::string name, std::string subject,
                                      std::string detail_json) {
  audit::audit_record r;
  r.at = clk_.now_ms();
  r.actor = who.name;
  r.event = std::move(name);
  r.subject = std::move(subject);
  r.detail = detail_json.empty() ? "{}" : std::move(detail_json);
  return r;
}

std::optional<op_error> controller::commit_locked(store::write_batch& batch) {
  if (batch.empty()) return std::nullopt;
  if (cfg_.replicated)  // shared values change only from what this replica last saw
    for (const auto& [k, v] : batch.meta) batch.meta_expect.try_emplace(k, meta_seen_[k]);
  const auto res = store_.commit(batch);
  if (res) {
    if (!res.audit_seqs.empty()) audit_appended_ = true;
    for (const auto& [k, v] : batch.meta) meta_seen_[k] = v;
    if (cfg_.replicated && res.store_revision == synced_store_rev_ + 1)
      synced_store_rev_ = res.store_revision;  // nobody else wrote in between
    return std::nullopt;
  }
  if (cfg_.replicated) {
    synced_store_rev_ = 0;
    try {
      refresh_locked(true);
    } catch (const store::store_error&) {
    }
  }
  op_error e{res.outcome == store::commit_outcome::conflict ? error_kind::conflict
                                                            : error_kind::unavailable,
             res.outcome == store::commit_outcome::conflict ? "conflict" : "store_failed",
             "store: " + res.error};
  // Memory may be ahead of the store now; re-read what the store holds.
  last_compiled_.reset();
  try {
    if (auto latest = store_.latest_revision()) {
      if (auto p = fleet::fleet_policy::from_json(latest->content)) policy_ = std::move(*p);
      revision_ = latest->revision;
      revision_at_ = latest->generated_at;
    }
  } catch (const store::store_error&) {
  }
  return e;
}

op_error controller::refuse(const principal& who, error_kind kind, std::string code,
                            std::string message, const std::string& subject,
                            const std::string& document, int line, int column) {
  validation_failures_->Add({{"code", code}}).Increment();
  // One caller's repeats of one code are counted, and summarised by the tick (refusal_log.hpp).
  if (operator_refusals_.note(who.name, code, clk_.now_ms())) {
    store::write_batch batch;
    json detail{{"code", code},
                {"message", message},
                {"document_sha256", audit::sha256_hex(document)},
                {"aggregation", operator_refusals_.aggregation_note()}};
    if (line > 0) {
      detail["line"] = line;
      detail["column"] = column;
    }
    batch.audit.push_back(event(who, "request.refused", subject, detail.dump()));
    (void)commit_locked(batch);  // the refusal stands even if it could not be written
  }
  return {kind, std::move(code), std::move(message), line, column};
}

void controller::audit_refused(const principal& who, const std::string& request,
                               const std::string& code, const std::string& message) {
  std::lock_guard lock(mutex_);
  if (!operator_refusals_.note(who.name, code, clk_.now_ms())) return;  // counted, summarised later
  store::write_batch batch;
  batch.audit.push_back(event(who, "request.refused", "",
                              json{{"request", request},
                                   {"role", to_string(who.r)},
                                   {"code", code},
                                   {"message", message},
                                   {"aggregation", operator_refusals_.aggregation_note()}}
                                  .dump()));
  (void)commit_locked(batch);
}

void controller::audit_session(const principal& who, bool opened) {
  std::lock_guard lock(mutex_);
  store::write_batch batch;
  batch.audit.push_back(event(who, opened ? "session.opened" : "session.closed", "",
                              json{{"role", to_string(who.r)}}.dump()));
  (void)commit_locked(batch);  // the session stands even if it could not be written
}

directive::validation_context controller::validation(std::int64_t now) const {
  directive::validation_context ctx;
  ctx.now = now;
  for (const auto& [name, profile] : cfg_.apps) ctx.known_apps.insert(name);
  ctx.known_sites = cfg_.known_sites;
  ctx.known_labels = cfg_.known_labels;
  ctx.max_document_bytes = cfg_.max_directive_bytes;
  ctx.max_entries = cfg_.max_directive_entries;
  return ctx;
}

// ---- directives ---------------------------------------------------------------------------

// A stored document parsed as it was judged when received (its own receipt time), so time
// does not make an accepted directive unreadable. Parsed once per document: the lifecycle pass
// of every tick, every recompile and every view read the same stored documents, and a
// national blocklist's YAML (1,000,000 names) takes yaml-cpp tens of seconds to read, under the
// lock the nodes' requests wait on.
std::shared_ptr<const directive::directive> controller::parsed_locked(
    const directive_record& rec) const {
  const std::string key = key_of(rec.issuer, rec.id);
  if (auto it = parsed_.find(key);
      it != parsed_.end() && it->second.received_at == rec.received_at &&
      it->second.document == rec.document)
    return it->second.parsed;
  directive::validation_context ctx = validation(rec.received_at);
  // Accepted once: the size limits of the day it was received held then.
  ctx.max_document_bytes = std::numeric_limits<std::size_t>::max();
  ctx.max_entries = std::numeric_limits<std::size_t>::max();
  auto r = directive::parse_directive(rec.document, ctx);
  directive_parses_->Increment();
  std::shared_ptr<const directive::directive> d;
  if (r) d = std::make_shared<const directive::directive>(std::move(*r.value));
  parsed_[key] = {rec.document, rec.received_at, d, ++parse_generation_};
  return d;
}

void controller::remember_parsed_locked(const directive_record& rec, directive::directive d) {
  parsed_[key_of(rec.issuer, rec.id)] = {
      rec.document, rec.received_at, std::make_shared<const directive::directive>(std::move(d)),
      ++parse_generation_};
}

std::uint64_t controller::parse_generation_locked(const directive_record& rec) const {
  const auto it = parsed_.find(key_of(rec.issuer, rec.id));
  return it == parsed_.end() ? 0 : it->second.generation;
}

void controller::forget_parsed_locked(const std::vector<directive_record>& all) {
  std::set<std::string> keep;
  for (const auto& r : all) keep.insert(key_of(r.issuer, r.id));
  std::erase_if(parsed_, [&](const auto& kv) { return !keep.contains(kv.first); });
}

std::string controller::desired_state(const directive_record& rec, const directive::directive& d,
                                      const std::vector<directive_record>& all, std::int64_t now,
                                      std::string& end_reason) const {
  if (rec.state == state_ended) return rec.state;
  const bool approved = count_kind(rec, "approve") >= cfg_.approvals_required;
  if (d.not_after && now >= *d.not_after) {
    end_reason = "expired";
    return std::string(state_ended);
  }
  if (!approved) return std::string(state_awaiting);
  if (d.action != directive::directive_action::unblock) {
    for (const auto& u : all) {
      if (u.issuer != rec.issuer || u.action != "unblock" || !in_force(u)) continue;
      const auto ud = parsed_locked(u);
      if (!ud || now < ud->not_before) continue;
      if (std::find(ud->lifts.begin(), ud->lifts.end(), rec.id) != ud->lifts.end()) {
        end_reason = "lifted";
        return std::string(state_ended);
      }
    }
  }
  return std::string(now < d.not_before ? state_scheduled : state_active);
}

bool controller::advance_locked(std::vector<directive_record>& all, store::write_batch& batch,
                                const std::string& reason) {
  const std::int64_t now = now_s();
  bool changed = false;
  for (int pass = 0; pass < 2; ++pass) {  // a lift depends on its unblock's state
    for (auto& rec : all) {
      const auto d = parsed_locked(rec);
      if (!d) continue;
      std::string end_reason;
      const std::string next = desired_state(rec, *d, all, now, end_reason);
      if (next == rec.state) continue;
      const std::string from = rec.state;
      rec.state = next;
      rec.updated_at = now;
      if (next == state_ended) {
        rec.end_reason = end_reason;
        rec.ended_at = now;
      }
      auto put = std::find_if(batch.directives.begin(), batch.directives.end(), [&](auto& p) {
        return p.record.issuer == rec.issuer && p.record.id == rec.id;
      });
      if (put != batch.directives.end())
        put->record = rec;
      else
        batch.directives.push_back({rec, rec.version});
      batch.audit.push_back(event({"controller", role::engineer}, "directive." + next,
                                  key_of(rec.issuer, rec.id),
                                  json{{"from", from}, {"to", next}, {"reason", end_reason}}.dump()));
      changed = true;
    }
  }
  return recompile_locked(all, batch, reason) || changed;
}

bool controller::recompile_locked(const std::vector<directive_record>& all,
                                  store::write_batch& batch, const std::string& reason) {
  // compile_fleet is pure: the same directives (the same parsed documents, in the same roles),
  // the same emergency stop and the policy it last compiled or matched still in force give the
  // same answer, so every tick need not copy and recompile a million names to learn that.
  compile_inputs inputs;
  inputs.emergency_stop = emergency_stop_;
  inputs.revision = revision_;
  std::vector<std::shared_ptr<const directive::directive>> effective_parsed, shadowed_parsed;
  for (const auto& rec : all) {
    if (in_force(rec)) {
      if (auto d = parsed_locked(rec)) {
        effective_parsed.push_back(d);
        inputs.directives.emplace_back(parse_generation_locked(rec), false);
      }
    } else if (rec.state == state_awaiting) {
      if (auto d = parsed_locked(rec); d && enforcing_action(d->action)) {
        shadowed_parsed.push_back(d);
        inputs.directives.emplace_back(parse_generation_locked(rec), true);
      }
    }
  }
  if (last_compiled_ && *last_compiled_ == inputs) return false;
  std::vector<directive::directive> effective;
  std::vector<directive::directive> shadowed;  // awaiting approval: counted, not enforced
  effective.reserve(effective_parsed.size());
  shadowed.reserve(shadowed_parsed.size());
  for (const auto& d : effective_parsed) effective.push_back(*d);
  for (const auto& d : shadowed_parsed) shadowed.push_back(*d);
  const auto compile_start = std::chrono::steady_clock::now();
  auto compiled = fleet::compile_fleet(effective, cfg_.apps, emergency_stop_, &policy_,
                                       revision_ + 1, shadowed);
  policy_compiles_->Increment();
  compile_seconds_->Set(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - compile_start).count());
  if (!compiled) {
    // Fail static: the revision in force stays; the failure is on record.
    last_compiled_.reset();
    batch.audit.push_back(event({"controller", role::engineer}, "revision.compile_failed", "",
                                json{{"error", compiled.error}, {"reason", reason}}.dump()));
    return false;
  }
  if (compiled.policy->same_as(policy_)) {
    last_compiled_ = std::move(inputs);
    return false;
  }

  const std::uint64_t rev = revision_ + 1;
  std::set<std::string> before, after;
  for (const auto& r : policy_.rules)
    if (!r.shadow) before.insert(r.directive);
  for (const auto& r : compiled.policy->rules)
    if (!r.shadow) after.insert(r.directive);
  for (const auto& k : before)
    if (!after.contains(k)) removed_in_[k] = rev;
  for (const auto& k : after) removed_in_.erase(k);
  batch.meta["removed_in"] = json(removed_in_).dump();

  policy_ = std::move(*compiled.policy);
  revision_ = rev;
  inputs.revision = rev;
  last_compiled_ = std::move(inputs);
  revision_at_ms_ = clk_.now_ms();
  revision_at_ = revision_at_ms_ / 1000;
  batch.revisions.push_back({rev, revision_at_, policy_.to_json(), reason});
  batch.audit.push_back(event({"controller", role::engineer}, "revision.created", "",
                              json{{"revision", rev},
                                   {"rules", policy_.rules.size()},
                                   {"directives", after},
                                   {"emergency_stop", emergency_stop_},
                                   {"reason", reason}}
                                  .dump()));
  start_rollout_locked(rev, batch, emergency_stop_);  // an emergency stop goes to all at once
  return true;
}

op_result<directive_view> controller::submit(const principal& who, const std::string& document,
                                             const std::string& signature) {
  std::lock_guard lock(mutex_);
  return with_retry([&] { return submit_locked(who, document, signature, false); });
}

std::vector<op_error> controller::check(const principal& who, const std::string& document,
                                        const std::string& signature,
                                        std::optional<directive_view>& checked) {
  std::lock_guard lock(mutex_);
  auto r = submit_locked(who, document, signature, true);
  if (r) {
    checked = std::move(r.value);
    return {};
  }
  std::vector<op_error> problems{r.error};
  // The signature is checked first and a submission stops there; a dry run goes on to the
  // document, so one check lists what is wrong with both.
  static const std::set<std::string> signature_codes{"malformed_signature", "unknown_issuer_key",
                                                     "bad_signature"};
  if (signature_codes.contains(r.error.code)) {
    const auto parsed = directive::parse_directive(document, validation(now_s()));
    if (!parsed)
      problems.push_back({error_kind::invalid, std::string(directive::to_string(parsed.error.code)),
                          parsed.error.message, parsed.error.line, parsed.error.column});
  }
  return problems;
}

op_result<directive_view> controller::approve(const principal& who, const std::string& issuer,
                                              const std::string& id, const std::string& note) {
  std::lock_guard lock(mutex_);
  return with_retry([&] { return approve_locked(who, issuer, id, note); });
}

op_result<directive_view> controller::revoke(const principal& who, const std::string& issuer,
                                             const std::string& id, const std::string& reason) {
  std::lock_guard lock(mutex_);
  return with_retry([&] { return revoke_locked(who, issuer, id, reason, false); });
}

op_result<directive_view> controller::reject(const principal& who, const std::string& issuer,
                                             const std::string& id, const std::string& reason) {
  std::lock_guard lock(mutex_);
  return with_retry([&] { return revoke_locked(who, issuer, id, reason, true); });
}

std::vector<impact::overlap> controller::overlaps_of(const directive::directive& d) const {
  if (!enforcing_action(d.action) || cfg_.protected_targets.entries.empty()) return {};
  return impact::find_overlaps(d, cfg_.apps, cfg_.protected_targets);
}

op_result<directive_view> controller::override_protection(const principal& who,
                                                          const std::string& issuer,
                                                          const std::string& id,
                                                          const std::string& reason) {
  std::lock_guard lock(mutex_);
  return with_retry([&]() -> op_result<directive_view> {
    const std::string key_name = key_of(issuer, id);
    std::vector<directive_record> all;
    directive_record* it = nullptr;
    if (auto e = find_awaiting_locked(who, issuer, id, all, it)) return {std::nullopt, *e};
    if (reason.empty())
      return {std::nullopt, refuse(who, error_kind::invalid, "missing_reason",
                                   "an override needs a reason", key_name, "")};
    const auto d = parsed_locked(*it);
    const auto overlaps = d ? overlaps_of(*d) : std::vector<impact::overlap>{};
    if (overlaps.empty())
      return {std::nullopt, refuse(who, error_kind::conflict, "no_protected_overlap",
                                   "directive " + key_name +
                                       " overlaps no protected range or name; nothing to override",
                                   key_name, "")};
    if (it->submitted_by == who.name)
      return {std::nullopt, refuse(who, error_kind::forbidden, "self_override",
                                   who.name + " submitted " + key_name +
                                       " and may not also override its protection",
                                   key_name, "")};
    for (const auto& a : it->approvals)
      if (a.kind == "override" && a.actor == who.name)
        return {std::nullopt, refuse(who, error_kind::conflict, "already_overridden",
                                     who.name + " already consented to override " + key_name,
                                     key_name, "")};
    const std::int64_t now = now_s();
    it->approvals.push_back({who.name, now, "override", reason});
    it->updated_at = now;
    json listed = json::array();
    for (const auto& o : overlaps) listed.push_back(o.message);
    store::write_batch batch;
    batch.directives.push_back({*it, it->version});
    batch.audit.push_back(event(who, "directive.override_approved", key_name,
                                json{{"reason", reason},
                                     {"overlaps", listed},
                                     {"overrides", count_kind(*it, "override")},
                                     {"required", cfg_.overrides_required}}
                                    .dump()));
    if (auto e = commit_locked(batch)) return {std::nullopt, *e};
    auto stored = store_.get_directive(issuer, id);
    return {view_locked(stored ? *stored : *it), {}};
  });
}

op_result<directive_view> controller::submit_locked(const principal& who,
                                                    const std::string& document,
                                                    const std::string& signature, bool dry_run) {
  const std::int64_t now = now_s();
  // A dry run (check()) refuses exactly as a submission would, but counts and audits nothing.
  const auto refuse = [&](const principal& p, error_kind kind, std::string code, std::string message,
                          const std::string& subject, const std::string& doc, int line = 0,
                          int column = 0) {
    if (dry_run) return op_error{kind, std::move(code), std::move(message), line, column};
    return this->refuse(p, kind, std::move(code), std::move(message), subject, doc, line, column);
  };
  const auto signature_failed = [&] {
    if (!dry_run) signature_failures_->Increment();
  };
  const auto id = crypto::signature_key_id(signature);
  if (!id) {
    signature_failed();
    return {std::nullopt, refuse(who, error_kind::invalid, "malformed_signature",
                                 "the signature is not a minisign signature file", "", document)};
  }
  const issuer_key* key = nullptr;
  for (const auto& k : cfg_.issuers)
    if (k.key.id == *id) key = &k;
  if (!key) {
    signature_failed();
    return {std::nullopt,
            refuse(who, error_kind::invalid, "unknown_issuer_key",
                   "signing key " + crypto::to_hex(*id) + " is not a trusted issuer key", "",
                   document)};
  }
  const auto verified = crypto::verify(key->key, document, signature);
  if (!verified) {
    signature_failed();
    return {std::nullopt,
            refuse(who, error_kind::invalid, "bad_signature",
                   std::string(crypto::describe(verified.outcome)) + " (key " +
                       crypto::to_hex(*id) + " of issuer " + key->issuer + ")",
                   "", document)};
  }
  auto parsed = directive::parse_directive(document, validation(now));
  if (!parsed)
    return {std::nullopt, refuse(who, error_kind::invalid,
                                 std::string(directive::to_string(parsed.error.code)),
                                 parsed.error.message, "", document, parsed.error.line,
                                 parsed.error.column)};
  const directive::directive& d = *parsed.value;
  const std::string key_name = key_of(d.issuer, d.id);
  if (d.issuer != key->issuer)
    return {std::nullopt, refuse(who, error_kind::invalid, "issuer_mismatch",
                                 "the document names issuer '" + d.issuer +
                                     "' but is signed with the key of issuer '" + key->issuer + "'",
                                 key_name, document)};

  std::vector<directive_record> all;
  try {
    all = store_.list_directives();
  } catch (const store::store_error& e) {
    return {std::nullopt, {error_kind::unavailable, "store_failed", e.what()}};
  }
  for (const auto& r : all)
    if (r.issuer == d.issuer && r.id == d.id)
      return {std::nullopt,
              refuse(who, error_kind::conflict, "replayed_id",
                     "directive " + key_name + " was already received (at unix time " +
                         std::to_string(r.received_at) + "); a new order needs a new id",
                     key_name, document)};

  if (d.action == directive::directive_action::unblock) {
    for (const auto& lifted : d.lifts) {
      auto it = std::find_if(all.begin(), all.end(), [&](const directive_record& r) {
        return r.issuer == d.issuer && r.id == lifted;
      });
      if (it == all.end() || it->state == state_ended || it->action == "unblock")
        return {std::nullopt,
                refuse(who, error_kind::invalid, "unknown_lifted_directive",
                       "lifts: " + key_of(d.issuer, lifted) +
                           (it == all.end() ? " was never received"
                            : it->action == "unblock" ? " is itself an unblock"
                                                      : " has already ended"),
                       key_name, document)};
    }
    // An unblock by targets must name entries some open directive of the issuer blocks.
    std::set<std::string> blocked;
    for (const auto& r : all) {
      if (r.issuer != d.issuer || r.state == state_ended || r.action == "unblock") continue;
      if (auto od = parsed_locked(r)) {
        for (const auto& a : od->targets.apps) blocked.insert("app:" + a);
        for (const auto& p : od->targets.prefixes) blocked.insert("prefix:" + p);
        for (const auto& n : od->targets.domains) blocked.insert("domain:" + n);
      }
    }
    auto check = [&](const std::vector<std::string>& list, const char* kind) -> std::optional<op_error> {
      for (const auto& t : list)
        if (!blocked.contains(std::string(kind) + ":" + t))
          return refuse(who, error_kind::invalid, "target_not_blocked",
                        std::string("targets: ") + kind + " '" + t +
                            "' is not a target of any open directive of issuer " + d.issuer,
                        key_name, document);
      return std::nullopt;
    };
    if (auto e = check(d.targets.apps, "app")) return {std::nullopt, *e};
    if (auto e = check(d.targets.prefixes, "prefix")) return {std::nullopt, *e};
    if (auto e = check(d.targets.domains, "domain")) return {std::nullopt, *e};
  }

  directive_record rec;
  rec.issuer = d.issuer;
  rec.id = d.id;
  rec.document = document;
  rec.signature = signature;
  rec.action = std::string(directive::to_string(d.action));
  rec.state = std::string(state_awaiting);
  rec.submitted_by = who.name;
  rec.received_at = now;
  rec.updated_at = now;
  json detail{{"action", rec.action},
              {"document_sha256", audit::sha256_hex(document)},
              {"key_id", crypto::to_hex(*id)},
              {"trusted_comment", verified.trusted_comment},
              {"not_before", fleet::format_rfc3339(d.not_before)}};
  if (d.not_after) detail["not_after"] = fleet::format_rfc3339(*d.not_after);
  remember_parsed_locked(rec, std::move(*parsed.value));  // `d` is moved from from here on
  if (dry_run) {  // what would be stored, unstored
    rec.state = "checked";
    return {view_locked(std::move(rec)), {}};
  }
  store::write_batch batch;
  batch.directives.push_back({rec, 0});
  batch.audit.push_back(event(who, "directive.received", key_name, detail.dump()));
  all.push_back(rec);
  advance_locked(all, batch, "directive received: " + key_name);
  if (auto e = commit_locked(batch)) return {std::nullopt, *e};
  offers_changed_locked();
  update_gauges_locked();
  auto stored = store_.get_directive(rec.issuer, rec.id);
  return {view_locked(stored ? *stored : rec), {}};
}

std::optional<op_error> controller::find_locked(const principal& who, const std::string& issuer,
                                               const std::string& id,
                                               std::vector<directive_record>& all,
                                               directive_record*& found) {
  try {
    all = store_.list_directives();
  } catch (const store::store_error& e) {
    return op_error{error_kind::unavailable, "store_failed", e.what()};
  }
  for (auto& r : all)
    if (r.issuer == issuer && r.id == id) found = &r;
  if (!found)
    return refuse(who, error_kind::not_found, "not_found", "no directive " + key_of(issuer, id),
                  key_of(issuer, id), "");
  return std::nullopt;
}

std::optional<op_error> controller::find_awaiting_locked(const principal& who,
                                                        const std::string& issuer,
                                                        const std::string& id,
                                                        std::vector<directive_record>& all,
                                                        directive_record*& found) {
  if (auto e = find_locked(who, issuer, id, all, found)) return e;
  if (found->state == state_awaiting) return std::nullopt;
  return refuse(who, error_kind::conflict, "not_awaiting_approval",
                "directive " + key_of(issuer, id) + " is " + found->state +
                    ", not awaiting approval",
                key_of(issuer, id), "");
}

op_result<directive_view> controller::approve_locked(const principal& who,
                                                     const std::string& issuer,
                                                     const std::string& id,
                                                     const std::string& note) {
  const std::string key_name = key_of(issuer, id);
  std::vector<directive_record> all;
  directive_record* it = nullptr;
  if (auto e = find_awaiting_locked(who, issuer, id, all, it)) return {std::nullopt, *e};
  if (it->submitted_by == who.name)
    return {std::nullopt, refuse(who, error_kind::forbidden, "self_approval",
                                 who.name + " submitted " + key_name +
                                     " and may not also approve it (four eyes)",
                                 key_name, "")};
  for (const auto& a : it->approvals)
    if (a.kind == "approve" && a.actor == who.name)
      return {std::nullopt, refuse(who, error_kind::conflict, "already_approved",
                                   who.name + " already approved " + key_name, key_name, "")};
  const std::int64_t now = now_s();
  if (const auto d = parsed_locked(*it); d && enforcing_action(d->action)) {
    // Issue 8: address blocks need a fresh impact report (from the shadow rules the directive
    // has had on the fleet since it arrived), so engineers see the collateral before they
    // consent to anything; then protected targets need their override.
    bool has_addresses = !d->targets.prefixes.empty();
    for (const auto& app : d->targets.apps)
      if (auto p = cfg_.apps.find(app); p != cfg_.apps.end() && !p->second.prefixes.empty())
        has_addresses = true;
    if (cfg_.impact_max_age_s > 0 && has_addresses) {
      bool fresh = false;
      try {
        for (const auto& r : store_.list_impacts(now - cfg_.impact_max_age_s)) {
          std::string ignored;
          const auto body = impact::parse_impact_body(r.body, ignored);
          if (!body) continue;
          for (const auto& rule : body->rules)
            if (rule.directive == key_name) fresh = true;
        }
      } catch (const store::store_error& e) {
        return {std::nullopt, {error_kind::unavailable, "store_failed", e.what()}};
      }
      if (!fresh)
        return {std::nullopt,
                refuse(who, error_kind::conflict, "impact_report_required",
                       "directive " + key_name + " targets addresses and no node has reported " +
                           "its impact in the last " + std::to_string(cfg_.impact_max_age_s) +
                           " s; its shadow rules count traffic while it awaits approval "
                           "(sluicectl directive impact " + key_name + ")",
                       key_name, "")};
    }
    const auto overlaps = overlaps_of(*d);
    const std::size_t overrides = count_kind(*it, "override");
    if (!overlaps.empty() && overrides < cfg_.overrides_required) {
      std::string listed;
      for (const auto& o : overlaps) listed += (listed.empty() ? "" : "; ") + o.message;
      return {std::nullopt,
              refuse(who, error_kind::forbidden, "protected_overlap",
                     "directive " + key_name + ": " + listed + " (override consent from " +
                         std::to_string(overrides) + " of " +
                         std::to_string(cfg_.overrides_required) +
                         " engineers: sluicectl directive override)",
                     key_name, "")};
    }
  }
  it->approvals.push_back({who.name, now, "approve", note});
  it->updated_at = now;
  store::write_batch batch;
  batch.directives.push_back({*it, it->version});
  json detail{{"approvals", count_kind(*it, "approve")}, {"required", cfg_.approvals_required}};
  if (!note.empty()) detail["note"] = note;
  batch.audit.push_back(event(who, "directive.approved", key_name, detail.dump()));
  advance_locked(all, batch, "directive approved: " + key_name);
  if (auto e = commit_locked(batch)) return {std::nullopt, *e};
  offers_changed_locked();
  update_gauges_locked();
  auto stored = store_.get_directive(issuer, id);
  return {view_locked(stored ? *stored : *it), {}};
}

op_result<directive_view> controller::revoke_locked(const principal& who,
                                                    const std::string& issuer,
                                                    const std::string& id,
                                                    const std::string& reason, bool rejecting) {
  const std::string key_name = key_of(issuer, id);
  std::vector<directive_record> all;
  directive_record* it = nullptr;
  if (rejecting) {
    if (auto e = find_awaiting_locked(who, issuer, id, all, it)) return {std::nullopt, *e};
  } else if (auto e = find_locked(who, issuer, id, all, it)) {
    return {std::nullopt, *e};
  }
  if (it->state == state_ended)
    return {std::nullopt, refuse(who, error_kind::conflict, "already_ended",
                                 "directive " + key_name + " already ended (" + it->end_reason + ")",
                                 key_name, "")};
  if (reason.empty())
    return {std::nullopt, refuse(who, error_kind::invalid, "missing_reason",
                                 rejecting ? "a rejection needs a reason" : "a revocation needs a reason",
                                 key_name, "")};
  const std::int64_t now = now_s();
  const std::string from = it->state;
  it->state = std::string(state_ended);
  it->end_reason = rejecting ? "rejected" : "revoked";
  it->ended_at = now;
  it->updated_at = now;
  store::write_batch batch;
  batch.directives.push_back({*it, it->version});
  batch.audit.push_back(event(who, rejecting ? "directive.rejected" : "directive.revoked", key_name,
                              json{{"from", from}, {"reason", reason}}.dump()));
  advance_locked(all, batch, "directive " + it->end_reason + ": " + key_name);
  if (auto e = commit_locked(batch)) return {std::nullopt, *e};
  offers_changed_locked();
  update_gauges_locked();
  return {view_locked(*it), {}};
}

op_result<rollout_view> controller::set_emergency_stop(const principal& who, bool on,
                                                       const std::string& reason) {
  std::lock_guard lock(mutex_);
  try {
    refresh_locked(false);
  } catch (const store::store_error& e) {
    return {std::nullopt, {error_kind::unavailable, "store_failed", e.what()}};
  }
  if (reason.empty())
    return {std::nullopt, refuse(who, error_kind::invalid, "missing_reason",
                                 "an emergency stop needs a reason", "", "")};
  if (on == emergency_stop_)
    return {std::nullopt, refuse(who, error_kind::conflict, "no_change",
                                 on ? "the emergency stop is already on" : "no emergency stop is on",
                                 "", "")};
  std::vector<directive_record> all;
  try {
    all = store_.list_directives();
  } catch (const store::store_error& e) {
    return {std::nullopt, {error_kind::unavailable, "store_failed", e.what()}};
  }
  emergency_stop_ = on;
  store::write_batch batch;
  batch.meta["emergency_stop"] = on ? "on" : "off";
  batch.audit.push_back(event(who, on ? "emergency_stop.set" : "emergency_stop.cleared", "",
                              json{{"reason", reason}}.dump()));
  recompile_locked(all, batch, on ? "emergency stop: " + reason : "emergency stop cleared: " + reason);
  if (auto e = commit_locked(batch)) {
    emergency_stop_ = !on;
    return {std::nullopt, *e};
  }
  offers_changed_locked();
  update_gauges_locked();
  return {rollout_locked(), {}};
}

op_result<rollout_view> controller::set_paused(const principal& who, bool paused,
                                               const std::string& reason) {
  std::lock_guard lock(mutex_);
  try {
    refresh_locked(false);
  } catch (const store::store_error& e) {
    return {std::nullopt, {error_kind::unavailable, "store_failed", e.what()}};
  }
  if (reason.empty())
    return {std::nullopt, refuse(who, error_kind::invalid, "missing_reason",
                                 "pausing or resuming a rollout needs a reason", "", "")};
  const rollout_state before = rollout_;
  store::write_batch batch;
  if (paused) {
    rollout_.paused = true;
    rollout_.reason = reason;
  } else {
    rollout_.paused = false;
    rollout_.reason.clear();
    if (rollout_.stage == "halted") {  // an engineer's resume overrides a halt
      rollout_.stage = "fleet";
      rollout_.released = rollout_.target;
      rollout_.stage_since = clk_.now_ms();
    }
  }
  batch.meta["rollout"] = rollout_json();
  batch.audit.push_back(event(who, paused ? "rollout.paused" : "rollout.resumed", "",
                              json{{"reason", reason}, {"revision", rollout_.target}}.dump()));
  if (auto e = commit_locked(batch)) {
    rollout_ = before;
    return {std::nullopt, *e};
  }
  offers_changed_locked();
  return {rollout_locked(), {}};
}

// ---- rollout ------------------------------------------------------------------------------

std::string controller::rollout_json() const {
  return json{{"target", rollout_.target},       {"released", rollout_.released},
              {"stage", rollout_.stage},         {"paused", rollout_.paused},
              {"reason", rollout_.reason},       {"stage_since", rollout_.stage_since},
              {"canary_acked_at", rollout_.canary_acked_at}}
      .dump();
}

// Canary membership is the inventory's labels matching canary.labels: no separate flag, so a
// node moves in or out of the canary group by being relabelled, and nothing it sends counts.
bool controller::is_canary(const store::node_record& n) const {
  if (cfg_.canary_labels.empty()) return false;
  const auto& labels = labels_of(n);
  for (const auto& [k, v] : cfg_.canary_labels) {
    auto it = labels.find(k);
    if (it == labels.end() || it->second != v) return false;
  }
  return true;
}

// A node no longer enrolled counts as stale: it holds no rollout and enforces nothing on record.
bool controller::is_stale(const store::node_record& n, std::int64_t now) const {
  return n.expired || now - n.last_seen > cfg_.stale_after_s || !inventory_.enrolled(n.node_id);
}

const std::map<std::string, std::string>& controller::labels_of(const store::node_record& n) const {
  const store::inventory_record* r = inventory_.find(n.node_id);
  return r ? r->labels : n.labels;
}

std::uint64_t controller::offered_locked(const store::node_record& n) const {
  return is_canary(n) ? rollout_.target : rollout_.released;
}

std::string controller::node_state_locked(const store::node_record& n, std::int64_t now) const {
  if (const auto* r = inventory_.find(n.node_id); !r)
    return "not_enrolled";
  else if (r->state != "enrolled")
    return "revoked";
  if (is_stale(n, now)) return "stale";
  const std::uint64_t offered = offered_locked(n);
  if (n.nack && n.nack_revision == offered) return "failing";
  if (n.applied_revision >= offered) return "converged";
  return "pending";
}

void controller::start_rollout_locked(std::uint64_t revision, store::write_batch& batch,
                                      bool skip_canary) {
  rollout_.target = revision;
  rollout_.canary_acked_at = 0;
  rollout_.stage_since = clk_.now_ms();
  rollout_.reason.clear();
  if (skip_canary || cfg_.canary_labels.empty()) {
    rollout_.released = revision;
    rollout_.stage = "fleet";
  } else {
    rollout_.stage = "canary";
  }
  batch.meta["rollout"] = rollout_json();
  batch.audit.push_back(event({"controller", role::engineer}, "rollout.started", "",
                              json{{"revision", revision}, {"stage", rollout_.stage}}.dump()));
}

void controller::advance_rollout_locked(store::write_batch& batch) {
  const std::int64_t now = now_s();
  const std::int64_t now_ms = clk_.now_ms();
  const rollout_state before = rollout_;
  if (rollout_.stage == "canary" && !rollout_.paused) {
    bool any = false, all_acked = true;
    std::string failed;
    for (const auto& [id, n] : nodes_) {
      if (!is_canary(n.record) || is_stale(n.record, now)) continue;
      any = true;
      if (n.record.nack && n.record.nack_revision == rollout_.target)
        failed = "canary node " + id + " refused revision " + std::to_string(rollout_.target) +
                 ": " + n.record.error;
      else if (n.record.applied_revision >= rollout_.target && n.record.health != "ok")
        failed = "canary node " + id + " unhealthy after applying revision " +
                 std::to_string(rollout_.target) + ": " + n.record.health;
      if (n.record.applied_revision < rollout_.target) all_acked = false;
    }
    if (!failed.empty()) {
      rollout_.stage = "halted";
      rollout_.reason = failed;
      rollout_.stage_since = now_ms;
      batch.audit.push_back(event({"controller", role::engineer}, "rollout.halted", "",
                                  json{{"revision", rollout_.target}, {"reason", failed}}.dump()));
    } else if (!any || all_acked) {
      if (any && rollout_.canary_acked_at == 0) rollout_.canary_acked_at = now_ms;
      if (!any || now_ms - rollout_.canary_acked_at >= cfg_.canary_soak_s * 1000) {
        rollout_.stage = "fleet";
        rollout_.released = rollout_.target;
        rollout_.stage_since = now_ms;
        batch.audit.push_back(event({"controller", role::engineer}, "rollout.promoted", "",
                                    json{{"revision", rollout_.target},
                                         {"reason", any ? "canary acknowledged and stayed healthy"
                                                        : "no live canary node"}}
                                        .dump()));
      }
    }
  }
  if (rollout_.stage == "fleet") {
    bool all_done = true;
    std::int64_t last_ack_ms = 0;
    std::string failed;
    for (const auto& [id, n] : nodes_) {
      const bool refused = n.record.nack && n.record.nack_revision == rollout_.target;
      const bool behind = n.record.applied_revision < rollout_.target;
      // A node that has it and refused nothing counts whether stale or not: only its ACK time
      // matters, and the staleness check (an inventory lookup) is skipped for most of the fleet.
      if ((refused || behind) && is_stale(n.record, now)) continue;
      if (refused)
        failed = "node " + id + " refused revision " + std::to_string(rollout_.target) + ": " +
                 n.record.error;
      if (behind) all_done = false;
      last_ack_ms = std::max(last_ack_ms, n.applied_at_ms);
    }
    if (!failed.empty()) {
      rollout_.stage = "halted";
      rollout_.reason = failed;
      rollout_.stage_since = now_ms;
      batch.audit.push_back(event({"controller", role::engineer}, "rollout.halted", "",
                                  json{{"revision", rollout_.target}, {"reason", failed}}.dump()));
    } else if (all_done) {
      rollout_.stage = "done";
      rollout_.stage_since = now_ms;
      // From the revision's creation to the last live node's ACK of it (ACK times are kept to
      // the millisecond, so the tick's granularity does not blur the figure).
      const double seconds =
          static_cast<double>((last_ack_ms > 0 ? last_ack_ms : now_ms) - revision_at_ms_) / 1000.0;
      convergence_->Observe(std::max(0.0, seconds));
      batch.audit.push_back(event({"controller", role::engineer}, "rollout.completed", "",
                                  json{{"revision", rollout_.target},
                                       {"seconds_since_revision", seconds}}
                                      .dump()));
    }
  }
  if (rollout_.stage != before.stage || rollout_.released != before.released ||
      rollout_.canary_acked_at != before.canary_acked_at)
    batch.meta["rollout"] = rollout_json();
}

void controller::tick() {
  std::unique_lock lock(mutex_);
  bool lead = true;
  store::write_batch batch;
  std::vector<store::directive_record> all;
  bool listed = false;
  try {
    if (cfg_.replicated) {
      const auto l = store_.leadership_state();
      lead = l.leader;
      leader_name_ = l.holder;
      const bool gained = lead && (!leading_ || l.term != leader_term_);
      refresh_locked(gained);
      if (lead) refresh_nodes_locked(gained);
      if (gained)
        batch.audit.push_back(event({"controller:" + cfg_.replica, role::engineer},
                                    "controller.leader", cfg_.replica,
                                    json{{"term", l.term}}.dump()));
      leading_ = lead;
      leader_term_ = l.term;
      is_leader_gauge_->Set(lead ? 1 : 0);
    }
    if (lead) {
      all = store_.list_directives();
      forget_parsed_locked(all);
      advance_locked(all, batch, "time");
      listed = true;
    }
  } catch (const store::store_error&) {
    return;  // fail static; the next tick tries again
  }
  const rollout_state before = rollout_;
  if (lead) {
    advance_rollout_locked(batch);
    // A replica that lost its lease without knowing yet must not move the shared state.
    batch.require_leadership = cfg_.replicated && !batch.empty();
  }
  // Node status goes in bounded chunks (an etcd Txn has op and byte limits), in batches of
  // their own, written after the lock is released: a fleet's records take the store a while
  // (seconds for 10,000 on etcd), and nodes' requests wait on this lock.
  std::vector<store::write_batch> more;
  // Replicas wake each other on every commit; node status still goes out at most every 250 ms
  // per replica, or the replicas' flushes would chase each other.
  const std::int64_t now_ms = clk_.now_ms();
  const bool flush_nodes = !cfg_.replicated || now_ms - nodes_flushed_ms_ >= 250;
  for (auto& [id, n] : nodes_) {
    if (!n.dirty || !flush_nodes) continue;
    store::write_batch* target = &batch;
    if (cfg_.max_nodes_per_commit > 0) {
      if (more.empty() || more.back().nodes.size() >= cfg_.max_nodes_per_commit) more.emplace_back();
      target = &more.back();
    }
    target->nodes.push_back(n.record);
  }
  for (const auto& r : node_refusals_.due(now_ms))
    pending_audit_.push_back(event({r.actor, role::node}, "request.refused.repeated", "",
                                   node_refusals_.detail_json(r)));
  for (const auto& r : operator_refusals_.due(now_ms))
    pending_audit_.push_back(event({r.actor, role::viewer}, "request.refused.repeated", "",
                                   operator_refusals_.detail_json(r)));
  for (const auto& a : pending_audit_) batch.audit.push_back(a);
  if (!pending_impacts_.empty()) {
    batch.impacts = pending_impacts_;
    batch.prune_impacts_before = now_s() - cfg_.impact_retention_s;
  }
  if (commit_locked(batch)) {
    rollout_ = before;
    if (cfg_.replicated) leading_ = false;  // re-read everything as a new leader next time
    return;
  }
  pending_impacts_.clear();
  pending_audit_.clear();
  refresh_checkpoint_locked();
  if (flush_nodes) {
    nodes_flushed_ms_ = now_ms;
    for (auto& [id, n] : nodes_) {
      if (n.dirty) n.persisted_seen = n.record.last_seen;
      n.dirty = false;
    }
  }
  if (rollout_.released != before.released || rollout_.target != before.target)
    offers_changed_locked();
  // The directives read at the top, unless this tick's own batch changed some.
  update_gauges_locked(listed && batch.directives.empty() ? &all : nullptr, /*ticking=*/true);
  if (more.empty()) return;

  // Node-only batches need no leadership and no shared state: the store is thread-safe, and
  // ticks run one at a time, so no older record of a node can overtake a newer one.
  lock.unlock();
  std::vector<store::commit_result> results;
  for (auto& extra : more) results.push_back(store_.commit(extra));
  lock.lock();
  for (std::size_t i = 0; i < more.size(); ++i) {
    if (results[i]) {
      if (cfg_.replicated && results[i].store_revision == synced_store_rev_ + 1)
        synced_store_rev_ = results[i].store_revision;  // nobody else wrote in between
      continue;
    }
    for (const auto& rec : more[i].nodes) nodes_[rec.node_id].dirty = true;  // the next tick
  }
}

// ---- node protocol ------------------------------------------------------------------------

std::pair<controller::node_entry&, bool> controller::node_entry_locked(const std::string& node) {
  if (cfg_.replicated && nodes_.count(node) == 0) {
    try {
      refresh_nodes_locked(false);
    } catch (const store::store_error&) {
    }
  }
  auto [it, fresh] = nodes_.try_emplace(node);
  return {it->second, fresh};
}

controller::node_entry& controller::polled_locked(const std::string& node) {
  auto [n, fresh] = node_entry_locked(node);
  if (fresh) {
    n.record.node_id = node;
    n.record.first_seen = now_s();
  }
  // The inventory's labels (serve_node_locked admitted the node, so it has a record).
  const auto& labels = labels_of(n.record);
  const bool relabelled = n.record.labels != labels;
  const bool revived = n.record.expired;
  if (relabelled) n.record.labels = labels;
  n.record.last_seen = now_s();
  n.record.expired = false;
  // A poll changes nothing but liveness unless the labels moved: written back when the stored
  // last_seen is a third of stale_after old (etcd expires a node key after stale_after), not
  // at every poll (10,000 nodes polling would rewrite 10,000 rows per revision for nothing).
  const bool seen_news = n.record.last_seen - n.persisted_seen >= std::max<std::int64_t>(1, cfg_.stale_after_s / 3);
  // With replicas, a node that has just moved here is known to this replica only from an old
  // copy (or not at all): writing it back could set its applied revision back in the store.
  // Its status reports (periodic, and after each apply) make it ours to write.
  if ((relabelled || seen_news || revived) && (!cfg_.replicated || n.reported)) n.dirty = true;
  return n;
}

op_result<snapshot_offer> controller::offer_locked(node_entry& n) {
  const auto& labels = labels_of(n.record);
  const std::uint64_t offered = offered_locked(n.record);
  std::string lt = labels_text(labels);
  const bool same_offer = n.cached_body && n.cached_revision == offered && n.cached_labels == lt;
  if (same_offer && n.cached_checkpoint != checkpoint_gen_) {
    // Only the checkpoint moved: the node's entry in bodies_ is known, no scope to work out.
    if (const auto it = bodies_.find(n.cached_key); it != bodies_.end()) {
      n.cached_body = served_locked(it->second);
      n.cached_checkpoint = checkpoint_gen_;
    } else {
      n.cached_body.reset();
    }
  }
  if (!n.cached_body || !same_offer) {
    auto entry = signed_body_locked(labels, offered);
    if (!entry) return {std::nullopt, entry.error};
    n.cached_revision = offered;
    n.cached_labels = std::move(lt);
    n.cached_key = (*entry.value)->first;
    n.cached_body = served_locked((*entry.value)->second);
    n.cached_checkpoint = checkpoint_gen_;
  }
  snapshot_bytes_->Increment(static_cast<double>(n.cached_body->size()));
  snapshots_served_->Increment();
  return {snapshot_offer{offered, n.cached_body}, {}};
}

op_result<snapshot_offer> controller::snapshot(const std::string& node,
                                               const std::map<std::string, std::string>& labels,
                                               std::optional<std::uint64_t> held,
                                               std::chrono::milliseconds wait) {
  std::unique_lock lock(mutex_);
  if (auto refused = serve_node_locked(node, &labels)) return {std::nullopt, *refused};
  node_entry& n = polled_locked(node);
  const auto cap = std::chrono::seconds(cfg_.max_wait_s);
  const auto deadline = std::chrono::steady_clock::now() + std::min<std::chrono::milliseconds>(wait, cap);
  // Only ever offer a newer revision than the node holds (nodes refuse older ones, and answering
  // at once with one would make the long poll spin).
  while (held && offered_locked(n.record) <= *held) {
    if (offers_changed_.wait_until(lock, deadline) == std::cv_status::timeout &&
        offered_locked(n.record) <= *held)
      return {std::nullopt, {error_kind::not_found, "not_modified", "revision unchanged"}};
    // Revoked while it waited.
    if (auto refused = serve_node_locked(node, nullptr)) return {std::nullopt, *refused};
  }
  return offer_locked(n);
}

snapshot_poll controller::poll_snapshot(const std::string& node,
                                        const std::map<std::string, std::string>& labels,
                                        std::optional<std::uint64_t> held,
                                        std::function<void()> wake) {
  std::lock_guard lock(mutex_);
  snapshot_poll out;
  if (auto refused = serve_node_locked(node, &labels)) {
    out.error = std::move(*refused);
    return out;
  }
  node_entry& n = polled_locked(node);
  if (held && offered_locked(n.record) <= *held) {
    const int canary = is_canary(n.record) ? 1 : 0;
    out.k = snapshot_poll::kind::waiting;
    out.ticket = next_ticket_++;
    const auto it = waiters_[canary].emplace(*held, poll_waiter{out.ticket, std::move(wake), node});
    tickets_.emplace(out.ticket, std::make_pair(canary, it));
    return out;
  }
  auto offer = offer_locked(n);
  if (!offer) {
    out.error = std::move(offer.error);
    return out;
  }
  out.k = snapshot_poll::kind::offer;
  out.offer = std::move(*offer.value);
  return out;
}

bool controller::cancel_poll(std::uint64_t ticket) {
  std::lock_guard lock(mutex_);
  const auto it = tickets_.find(ticket);
  if (it == tickets_.end()) return false;
  waiters_[it->second.first].erase(it->second.second);
  tickets_.erase(it);
  return true;
}

std::size_t controller::waiting_polls() {
  std::lock_guard lock(mutex_);
  return tickets_.size();
}

void controller::offers_changed_locked() {
  // New offers carry a checkpoint that covers the change that made them.
  refresh_checkpoint_locked(/*soon=*/true);
  offers_changed_.notify_all();
  // Canary nodes are offered the target, the rest the released revision: wake exactly the
  // waiters holding less than that (the multimap is ordered by held revision).
  const std::uint64_t offered[2] = {rollout_.released, rollout_.target};
  for (int canary = 0; canary < 2; ++canary) {
    auto& w = waiters_[canary];
    const auto end = w.lower_bound(offered[canary]);
    for (auto it = w.begin(); it != end; ++it) {
      tickets_.erase(it->second.ticket);
      it->second.wake();
    }
    w.erase(w.begin(), end);
  }
  // Nodes are only ever offered the target or the released revision (released <= target).
  const std::uint64_t lowest = std::min(rollout_.released, rollout_.target);
  std::erase_if(bodies_, [&](const auto& kv) { return kv.first.first < lowest; });
  std::erase_if(older_policies_, [&](const auto& kv) { return kv.first < lowest; });
}

op_result<controller::body_map::iterator> controller::signed_body_locked(
    const std::map<std::string, std::string>& labels, std::uint64_t offered) {
  const fleet::fleet_policy* p = &policy_;
  std::int64_t generated_at = revision_at_;
  if (offered != revision_) {
    auto older = older_policies_.find(offered);
    if (older == older_policies_.end()) {
      std::optional<store::revision_record> rec;
      try {
        rec = store_.get_revision(offered);
      } catch (const store::store_error& e) {
        return {std::nullopt, {error_kind::unavailable, "store_failed", e.what()}};
      }
      auto parsed = rec ? fleet::fleet_policy::from_json(rec->content) : std::nullopt;
      if (!parsed)
        return {std::nullopt, {error_kind::unavailable, "store_failed",
                               "revision " + std::to_string(offered) + " is missing or unreadable"}};
      older = older_policies_.emplace(offered, std::make_pair(std::move(*parsed), rec->generated_at)).first;
    }
    p = &older->second.first;
    generated_at = older->second.second;
  }
  std::string scope = fleet::snapshot_scope(*p, labels);
  auto cached = bodies_.find({offered, scope});
  if (cached != bodies_.end()) return {cached, {}};

  const auto sign_start = std::chrono::steady_clock::now();
  const std::string text = fleet::node_policy_text(*p, labels, offered, generated_at);
  const auto sig = crypto::sign(cfg_.signing_key, text,
                                "sluice-snapshot revision=" + std::to_string(offered) + " scope=" + scope,
                                "sluice-controld snapshot");
  if (!sig) return {std::nullopt, {error_kind::unavailable, "crypto_failed", "signing failed"}};
  auto body = std::make_shared<const std::string>(
      json{{"revision", offered}, {"scope", scope}, {"policy", text}, {"signature", *sig}}.dump());
  snapshots_signed_->Increment();
  snapshot_sign_seconds_->Set(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - sign_start).count());
  cached_body entry;
  entry.signed_size = body->size();
  entry.served = std::move(body);
  // Generation 0 is "no checkpoint appended": served_locked appends the latest.
  return {bodies_.emplace(std::make_pair(offered, std::move(scope)), std::move(entry)).first, {}};
}

std::shared_ptr<const std::string> controller::served_locked(cached_body& b) {
  if (b.checkpoint == checkpoint_gen_) return b.served;
  // The signed JSON object is reopened at its final '}' and the checkpoint member appended: a
  // copy of the body per (revision, scope) and checkpoint, never a signature. The snapshot's
  // signature covers `policy` only, so the bytes it covers are untouched.
  std::string text;
  text.reserve(b.signed_size + checkpoint_member_.size());
  if (checkpoint_member_.empty()) {
    text.assign(*b.served, 0, b.signed_size);
  } else {
    text.assign(*b.served, 0, b.signed_size - 1);
    text += checkpoint_member_;
  }
  b.served = std::make_shared<const std::string>(std::move(text));
  b.checkpoint = checkpoint_gen_;
  return b.served;
}

op_result<bool> controller::node_status(const std::string& node,
                                        const std::map<std::string, std::string>& labels,
                                        const status_report& report) {
  // Checked before the lock: a signature check is the costliest step of a report.
  const std::string checkpoint = report.audit_checkpoint.empty()
                                     ? checked_checkpoint(report.audit_checkpoint_header, true)
                                     : checked_checkpoint(report.audit_checkpoint);
  const std::string conflict = checked_checkpoint(report.audit_checkpoint_conflict);
  std::lock_guard lock(mutex_);
  if (auto refused = serve_node_locked(node, &labels)) return {std::nullopt, *refused};
  auto [n, fresh] = node_entry_locked(node);
  const std::int64_t now = now_s();
  store::write_batch batch;
  if (fresh || n.record.first_seen == 0) {
    n.record.node_id = node;
    n.record.first_seen = now;
    n.record.labels = labels_of(n.record);
    batch.audit.push_back(event({"node:" + node, role::node}, "node.registered", node,
                                json{{"labels", n.record.labels}, {"replica", cfg_.replica}}.dump()));
  }
  n.record.labels = labels_of(n.record);
  n.record.last_seen = now;
  n.record.expired = false;
  n.reported = true;
  if (report.revision > n.record.applied_revision) n.applied_at_ms = clk_.now_ms();
  n.record.applied_revision = report.revision;
  n.record.ruleset_sha256 = report.ruleset_sha256;
  n.record.health = report.health.empty() ? "ok" : report.health;
  // A node's checkpoint is kept until it reports another valid one (a node that lost its state
  // directory reports none for a while: what it held stays on record).
  if (!checkpoint.empty()) n.record.audit_checkpoint = checkpoint;
  if (!conflict.empty() && conflict != n.record.audit_checkpoint_conflict) {
    n.record.audit_checkpoint_conflict = conflict;
    std::string error;
    const auto held = audit::parse_checkpoint(n.record.audit_checkpoint, error);
    const auto other = audit::parse_checkpoint(conflict, error);
    batch.audit.push_back(event({"node:" + node, role::node}, "node.audit_checkpoint_conflict", node,
                                json{{"count", other->count},
                                     {"held_head", held ? held->head : std::string()},
                                     {"conflicting_head", other->head},
                                     {"conflicting_replica", other->replica}}
                                    .dump()));
  }
  if (!report.ack) {
    const bool news = !n.record.nack || n.record.nack_revision != report.offered;
    n.record.nack = true;
    n.record.nack_revision = report.offered;
    n.record.error = report.error;
    if (news)
      batch.audit.push_back(event({"node:" + node, role::node}, "node.nack", node,
                                  json{{"offered", report.offered},
                                       {"in_force", report.revision},
                                       {"error", report.error}}
                                      .dump()));
  } else if (report.revision >= n.record.nack_revision) {
    n.record.nack = false;
    n.record.error.clear();
  }
  n.dirty = true;
  // Registrations and NACKs are audited with the next tick's batch (at most 250 ms later) rather
  // than one commit each: a fleet registering at once would otherwise contend for the audit
  // head thousands of times (with replicas, across the cluster).
  for (auto& a : batch.audit) pending_audit_.push_back(std::move(a));
  return {true, {}};
}

op_result<bool> controller::node_impact(const std::string& node, const std::string& body) {
  std::string error;
  const auto parsed = impact::parse_impact_body(body, error);
  std::lock_guard lock(mutex_);
  if (auto refused = serve_node_locked(node, nullptr)) return {std::nullopt, *refused};
  if (!parsed) return {std::nullopt, {error_kind::invalid, "bad_impact_report", error}};
  // Bounded: a controller whose store is down keeps at most this many reports in memory.
  if (pending_impacts_.size() >= 50000)
    return {std::nullopt, {error_kind::unavailable, "impact_backlog", "too many unsaved reports"}};
  pending_impacts_.push_back({node, parsed->window_start, parsed->window_end, parsed->revision, body});
  return {true, {}};
}

op_result<std::string> controller::impact(const std::string& issuer, const std::string& id,
                                          std::int64_t window_s, std::size_t top) {
  std::lock_guard lock(mutex_);
  const std::int64_t now = now_s();
  try {
    const auto rec = store_.get_directive(issuer, id);
    if (!rec) return {std::nullopt, {error_kind::not_found, "not_found", "no directive " + key_of(issuer, id)}};
    const auto d = parsed_locked(*rec);
    if (!d) return {std::nullopt, {error_kind::unavailable, "store_failed", "stored document unreadable"}};
    json report = impact::impact_report(*d, cfg_.apps, store_.list_impacts(now - window_s),
                                        now - window_s, now, top);
    report["state"] = rec->state;
    bool shadow = false;
    for (const auto& r : policy_.rules)
      if (r.shadow && r.directive == key_of(issuer, id)) shadow = true;
    report["shadow_rules"] = shadow;
    json overlaps = json::array();
    for (const auto& o : overlaps_of(*d)) overlaps.push_back(o.message);
    report["protected_overlaps"] = overlaps;
    return {report.dump(), {}};
  } catch (const store::store_error& e) {
    return {std::nullopt, {error_kind::unavailable, "store_failed", e.what()}};
  }
}

// ---- views --------------------------------------------------------------------------------

directive_view controller::view_locked(directive_record rec) {
  directive_view v;
  v.approvals_required = cfg_.approvals_required;
  v.overrides_required = cfg_.overrides_required;
  if (const auto parsed = parsed_locked(rec)) v.parsed = *parsed;
  const std::string key_name = key_of(rec.issuer, rec.id);
  const std::int64_t now = now_s();
  std::uint64_t since = 0;
  for (const auto& r : policy_.rules)
    if (r.directive == key_name && !r.shadow) since = std::max(since, r.since);
  // An unblock has no rules of its own: a node enforces it once it holds the lifted directives'
  // rules with their new end (the revision that gave it them), or without them once removed.
  if (v.parsed && v.parsed->action == directive::directive_action::unblock) {
    for (const auto& lifted : v.parsed->lifts) {
      const std::string lk = key_of(rec.issuer, lifted);
      for (const auto& r : policy_.rules)
        if (r.directive == lk && !r.shadow) since = std::max(since, r.since);
      if (const auto gone = removed_in_.find(lk); gone != removed_in_.end())
        since = std::max(since, gone->second);
    }
  }
  if (v.parsed) v.overlaps = overlaps_of(*v.parsed);
  const auto removed = removed_in_.find(key_name);
  for (const auto& [id, n] : nodes_) {
    if (!v.parsed || !v.parsed->scope.covers(labels_of(n.record))) continue;
    if (is_stale(n.record, now)) {
      ++v.stale;
      continue;
    }
    ++v.in_scope;
    const bool enforcing =
        (in_force(rec) && since > 0 && n.record.applied_revision >= since) ||
        (rec.state == state_ended && removed != removed_in_.end() &&
         n.record.applied_revision >= removed->second);
    if (enforcing)
      ++v.enforcing;
    else if (n.record.nack && n.record.nack_revision == offered_locked(n.record))
      ++v.failing;
    else
      ++v.pending;
  }
  v.record = std::move(rec);
  return v;
}

op_result<std::vector<directive_view>> controller::directives() {
  std::lock_guard lock(mutex_);
  std::vector<directive_view> out;
  try {
    for (auto& r : store_.list_directives()) out.push_back(view_locked(std::move(r)));
  } catch (const store::store_error& e) {
    return {std::nullopt, {error_kind::unavailable, "store_failed", e.what()}};
  }
  return {std::move(out), {}};
}

op_result<directive_view> controller::get(const std::string& issuer, const std::string& id) {
  std::lock_guard lock(mutex_);
  try {
    auto r = store_.get_directive(issuer, id);
    if (!r) return {std::nullopt, {error_kind::not_found, "not_found", "no directive " + key_of(issuer, id)}};
    return {view_locked(std::move(*r)), {}};
  } catch (const store::store_error& e) {
    return {std::nullopt, {error_kind::unavailable, "store_failed", e.what()}};
  }
}

std::vector<node_view> controller::nodes() {
  std::lock_guard lock(mutex_);
  // A follower hears of nodes served by other replicas only through the store.
  try {
    refresh_nodes_locked(false);
  } catch (const store::store_error&) {
  }
  std::vector<node_view> out;
  const std::int64_t now = now_s();
  for (const auto& [id, n] : nodes_) {
    out.push_back({n.record, node_state_locked(n.record, now), offered_locked(n.record),
                   is_canary(n.record), n.applied_at_ms});
    out.back().record.labels = labels_of(n.record);
  }
  return out;
}

rollout_view controller::rollout_locked() const {
  return {rollout_.target, rollout_.released, rollout_.stage,       rollout_.paused,
          rollout_.reason, rollout_.stage_since, emergency_stop_,
          cfg_.replicated ? leader_name_ : cfg_.replica, !cfg_.replicated || leading_};
}

rollout_view controller::rollout() {
  std::lock_guard lock(mutex_);
  return rollout_locked();
}

op_result<std::vector<audit::audit_record>> controller::audit(std::uint64_t after,
                                                              std::size_t limit) {
  try {
    return {store_.audit_since(after, limit), {}};
  } catch (const store::store_error& e) {
    return {std::nullopt, {error_kind::unavailable, "store_failed", e.what()}};
  }
}

op_result<std::vector<audit::audit_record>> controller::audit_last(std::size_t limit) {
  try {
    const auto head = store_.audit_head();
    const std::uint64_t seq = head ? head->seq : 0;
    return {store_.audit_since(seq > limit ? seq - limit : 0, limit), {}};
  } catch (const store::store_error& e) {
    return {std::nullopt, {error_kind::unavailable, "store_failed", e.what()}};
  }
}

op_result<std::vector<audit::audit_record>> controller::audit_of(const std::string& subject,
                                                                 std::size_t limit) {
  constexpr std::size_t page = 1000;
  std::vector<audit::audit_record> out;
  try {
    for (std::uint64_t after = 0;;) {
      auto records = store_.audit_since(after, page);
      for (auto& r : records)
        if (r.subject == subject && out.size() < limit) out.push_back(std::move(r));
      if (records.size() < page || out.size() >= limit) return {std::move(out), {}};
      after = records.back().seq;
    }
  } catch (const store::store_error& e) {
    return {std::nullopt, {error_kind::unavailable, "store_failed", e.what()}};
  }
}

op_result<audit::chain_report> controller::verify_audit() {
  constexpr std::size_t page = 1000;
  audit::chain_report whole;
  whole.head_hash = audit::genesis_hash();
  try {
    for (std::uint64_t after = 0;;) {
      const auto records = store_.audit_since(after, page);
      auto part = audit::verify_chain_after(records, after, whole.head_hash);
      whole.records += part.records;
      if (!part.ok || records.empty()) {
        whole.ok = part.ok;
        whole.bad_seq = part.bad_seq;
        whole.problem = part.problem;
        if (!part.ok) whole.head_hash = part.head_hash;
        return {std::move(whole), {}};
      }
      whole.head_hash = part.head_hash;
      after = records.back().seq;
      if (records.size() < page) return {std::move(whole), {}};
    }
  } catch (const store::store_error& e) {
    return {std::nullopt, {error_kind::unavailable, "store_failed", e.what()}};
  }
}

void controller::update_gauges_locked(const std::vector<store::directive_record>* all,
                                      bool ticking) {
  revision_gauge_->Set(static_cast<double>(revision_));
  released_gauge_->Set(static_cast<double>(rollout_.released));
  std::map<std::string, double> by_state;
  try {
    std::vector<store::directive_record> read;
    if (all == nullptr) {
      read = store_.list_directives();
      all = &read;
    }
    for (const auto& r : *all) by_state[r.state] += 1;
  } catch (const store::store_error&) {
    return;
  }
  for (const char* s : all_states) directives_gauge_->Add({{"state", s}}).Set(by_state[s]);
  const std::int64_t now_ms = clk_.now_ms();
  if (ticking && now_ms - node_gauges_ms_ < 1000) return;
  node_gauges_ms_ = now_ms;
  // A follower's tick does not follow the others' node reports (the leader's does): without
  // this its gauges counted every node served elsewhere as stale, and the NOC's stale-node
  // alert fired on each follower of a healthy fleet.
  try {
    refresh_nodes_locked(false);
  } catch (const store::store_error&) {
  }
  std::map<std::string, double> nodes_by;
  const std::int64_t now = now_ms / 1000;
  for (const auto& [id, n] : nodes_) nodes_by[node_state_locked(n.record, now)] += 1;
  for (const char* s : node_states) nodes_gauge_->Add({{"state", s}}).Set(nodes_by[s]);
  const std::size_t enrolled = inventory_.enrolled_count();
  inventory_gauge_->Add({{"state", "enrolled"}}).Set(static_cast<double>(enrolled));
  inventory_gauge_->Add({{"state", "revoked"}}).Set(static_cast<double>(inventory_.size() - enrolled));
}

}  // namespace sluice::control::controller
