// The controller's node identity calls (issue 14): enrolment, revocation, relabelling, the
// inventory's in-memory copy and node admission. Split from controller.cpp (the node registry
// part of the core); same class, same lock.
#include <prometheus/counter.h>
#include <prometheus/family.h>

#include <algorithm>
#include <cctype>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "control/controller/controller.hpp"

namespace sluice::control::controller {
namespace {

using json = nlohmann::json;

constexpr std::size_t max_labels = 64;
constexpr std::size_t max_bulk = 1000;            // enroll_nodes, and config chunks per commit
constexpr std::size_t max_pending_audit = 100000;  // node events kept while the store is down

bool label_token(const std::string& s) { return pki::valid_node_id(s); }  // same charset

// "" when every label is 1-64 of [A-Za-z0-9_.-] (keys and values), else what is wrong.
std::string check_labels(const std::map<std::string, std::string>& labels) {
  if (labels.size() > max_labels)
    return "at most " + std::to_string(max_labels) + " labels per node";
  for (const auto& [k, v] : labels)
    if (!label_token(k) || !label_token(v))
      return "label '" + k + "=" + v + "': names and values are 1-64 of [A-Za-z0-9_.-]";
  return "";
}

const principal config_actor{"config", role::engineer};

}  // namespace

// ---- admission and the node feed ----------------------------------------------------------

op_error controller::refuse_node_locked(const std::string& node, error_kind kind,
                                        const std::string& code, const std::string& message) {
  node_refusals_total_->Add({{"code", code}}).Increment();
  const bool named = pki::valid_node_id(node);
  const std::string actor = "node:" + (named ? node : std::string("(invalid id)"));
  if (node_refusals_.note(actor, code, clk_.now_ms()) && pending_audit_.size() < max_pending_audit)
    pending_audit_.push_back(event({actor, role::node}, "request.refused", named ? node : "",
                                   json{{"request", "node"},
                                        {"code", code},
                                        {"message", message},
                                        {"aggregation", node_refusals_.aggregation_note()}}
                                       .dump()));
  return {kind, code, message};
}

std::optional<op_error> controller::serve_node_locked(
    const std::string& node, const std::map<std::string, std::string>* declared) {
  const store::inventory_record* r = inventory_.find(node);
  if (!r)
    return refuse_node_locked(node, error_kind::forbidden, "not_enrolled",
                              "node " + node + " is not in the inventory");
  if (r->state != "enrolled")
    return refuse_node_locked(node, error_kind::forbidden, "revoked", "node " + node + " was revoked");
  if (declared && !declared->empty() && *declared != r->labels) labels_ignored_->Increment();
  return std::nullopt;
}

std::optional<op_error> controller::admit_node(const std::string& node,
                                               const std::string& fingerprint) {
  std::lock_guard lock(mutex_);
  const admission a = inventory_.admit(node, fingerprint);
  if (a == admission::admitted) return std::nullopt;
  return refuse_node_locked(node, error_kind::forbidden, std::string(to_string(a)),
                            "node " + node + ": " + std::string(describe(a)));
}

std::optional<op_error> controller::admit_node_peer(const std::string& node, bool verified,
                                                    const std::string& common_name,
                                                    const std::string& fingerprint) {
  if (!verified)
    return op_error{error_kind::unauthorized, "no_client_certificate",
                    "node requests need a client certificate issued by the node CA"};
  if (common_name != node) {
    std::lock_guard lock(mutex_);
    return refuse_node_locked(common_name, error_kind::forbidden, "wrong_node",
                              "the certificate of node " + common_name +
                                  " may not act for node " + node);
  }
  return admit_node(node, fingerprint);
}

std::optional<std::map<std::string, std::string>> controller::node_labels(const std::string& node) {
  std::lock_guard lock(mutex_);
  const store::inventory_record* r = inventory_.find(node);
  if (!r || r->state != "enrolled") return std::nullopt;
  return r->labels;
}

// ---- the in-memory copy ---------------------------------------------------------------------

void controller::inventory_changed_locked(const std::vector<std::string>& ids) {
  if (ids.empty()) return;
  const std::set<std::string> changed(ids.begin(), ids.end());
  for (const auto& id : changed) {
    const auto it = nodes_.find(id);
    if (it == nodes_.end()) continue;
    node_entry& n = it->second;
    if (n.record.labels != labels_of(n.record)) {
      n.record.labels = labels_of(n.record);
      if (!cfg_.replicated || n.reported) n.dirty = true;
    }
  }
  // Their polls are answered again: refused when revoked, else re-registered as canary or not
  // and offered what their new labels get. One pass over the waiters, whatever the count.
  for (auto& w : waiters_) {
    for (auto it = w.begin(); it != w.end();) {
      if (!changed.contains(it->second.node)) {
        ++it;
        continue;
      }
      tickets_.erase(it->second.ticket);
      it->second.wake();
      it = w.erase(it);
    }
  }
}

void controller::reload_inventory_locked(const std::string& generation) {
  const std::vector<std::string> changed = inventory_.replace(store_.list_inventory());
  inventory_.generation = generation;
  inventory_changed_locked(changed);
}

std::optional<op_error> controller::commit_inventory_locked(store::write_batch& batch) {
  std::uint64_t generation = 0;
  try {
    if (!inventory_.generation.empty()) generation = std::stoull(inventory_.generation);
  } catch (const std::exception&) {
    generation = 0;  // unreadable: any new value moves replicas to re-read
  }
  const std::string next = std::to_string(generation + 1);
  batch.meta["inventory"] = next;  // replicas: a CAS on the value last read (commit_locked)
  if (auto e = commit_locked(batch)) return e;
  std::vector<std::string> ids;
  for (const auto& r : batch.inventory) {
    ids.push_back(r.node_id);
    inventory_.put(r);
  }
  inventory_.generation = next;
  inventory_changed_locked(ids);
  return std::nullopt;
}

void controller::apply_configured_nodes_locked() {
  if (cfg_.nodes.empty()) return;
  // Replicas started together apply the same list, chunk by chunk, each chunk a CAS on the
  // inventory's generation: a replica that loses one re-reads and judges again against what the
  // others wrote. That is progress as long as what is left to write shrinks; only three
  // conflicts in a row with nothing gained from the others end it (three replicas with 5,000
  // nodes each used to give up after three conflicts, when they were merely interleaving).
  std::size_t left = std::numeric_limits<std::size_t>::max();
  for (int stalls = 0;;) {
    const std::int64_t now = now_s();
    std::vector<store::inventory_record> records;
    std::vector<audit::audit_record> events;
    for (const auto& c : cfg_.nodes) {
      const store::inventory_record* old = inventory_.find(c.id);
      if (!old) {
        store::inventory_record r;
        r.node_id = c.id;
        r.labels = c.labels;
        r.source = "config";
        r.enrolled_at = now;
        r.enrolled_by = config_actor.name;
        records.push_back(r);
        events.push_back(event(config_actor, "node.enrolled", c.id,
                               json{{"labels", c.labels}, {"fingerprint", ""}, {"source", "config"}}.dump()));
      } else if (old->state == "enrolled" && old->labels != c.labels) {
        store::inventory_record r = *old;
        r.labels = c.labels;
        records.push_back(r);
        events.push_back(event(config_actor, "node.relabelled", c.id,
                               json{{"from", old->labels}, {"to", c.labels}, {"source", "config"}}.dump()));
      }
      // A revoked node stays revoked: the config cannot undo an engineer's revocation.
    }
    if (records.empty()) return;
    stalls = records.size() < left ? 0 : stalls + 1;
    if (stalls == 3) break;
    left = records.size();
    bool conflict = false;
    for (std::size_t at = 0; at < records.size() && !conflict; at += max_bulk) {
      const std::size_t end = std::min(records.size(), at + max_bulk);
      store::write_batch batch;
      batch.inventory.assign(records.begin() + static_cast<std::ptrdiff_t>(at),
                             records.begin() + static_cast<std::ptrdiff_t>(end));
      batch.audit.assign(events.begin() + static_cast<std::ptrdiff_t>(at),
                         events.begin() + static_cast<std::ptrdiff_t>(end));
      if (auto e = commit_inventory_locked(batch)) {
        if (!cfg_.replicated || e->kind != error_kind::conflict)
          throw store::store_error("applying the config's nodes: " + e->message);
        conflict = true;  // another replica wrote first: judge again against what it wrote
      } else {
        left -= end - at;
      }
    }
    if (!conflict) return;
    refresh_locked(true);
  }
  throw store::store_error("applying the config's nodes: other replicas kept writing the inventory");
}

// ---- engineers' calls -----------------------------------------------------------------------

op_result<enrolment> controller::enroll_node(const principal& who, const std::string& node,
                                             const std::map<std::string, std::string>& labels,
                                             const std::string& csr_pem) {
  std::lock_guard lock(mutex_);
  return with_retry([&]() -> op_result<enrolment> {
    if (!pki::valid_node_id(node))
      return {std::nullopt, refuse(who, error_kind::invalid, "invalid_node_id",
                                   "node ids are 1-64 of [A-Za-z0-9_.-]", "", "")};
    if (const std::string why = check_labels(labels); !why.empty())
      return {std::nullopt, refuse(who, error_kind::invalid, "invalid_labels", why, node, "")};
    const std::int64_t now = now_s();
    const store::inventory_record* old = inventory_.find(node);
    store::inventory_record rec;
    rec.node_id = node;
    rec.labels = labels;
    rec.source = "api";
    rec.enrolled_at = now;
    rec.enrolled_by = who.name;
    enrolment out;
    if (!csr_pem.empty()) {
      if (!cfg_.node_ca || !cfg_.node_ca->can_issue())
        return {std::nullopt, refuse(who, error_kind::conflict, "no_ca_key",
                                     "this controller has no node CA key to sign with (node_ca.key "
                                     "in its config); enrol without a CSR for an ISP CA",
                                     node, "")};
      std::string error;
      const auto cert = cfg_.node_ca->sign_csr(csr_pem, node, cfg_.node_certificate_days, error);
      if (!cert) return {std::nullopt, refuse(who, error_kind::invalid, "bad_csr", error, node, csr_pem)};
      rec.fingerprint = cert->fingerprint();
      rec.certificate_not_after = cert->not_after();
      out.certificate_pem = cert->pem();
    }
    if (cfg_.node_ca) out.ca_pem = cfg_.node_ca->cert().pem();
    json detail{{"labels", labels},
                {"fingerprint", rec.fingerprint},
                {"certificate_not_after", rec.certificate_not_after},
                {"source", "api"}};
    if (old)
      detail["previous"] = {{"state", old->state}, {"labels", old->labels}, {"fingerprint", old->fingerprint}};
    store::write_batch batch;
    batch.inventory.push_back(rec);
    batch.audit.push_back(event(who, "node.enrolled", node, detail.dump()));
    if (auto e = commit_inventory_locked(batch)) return {std::nullopt, *e};
    out.record = std::move(rec);
    return {std::move(out), {}};
  });
}

op_result<std::vector<store::inventory_record>> controller::enroll_nodes(
    const principal& who, const std::vector<configured_node>& nodes) {
  std::lock_guard lock(mutex_);
  return with_retry([&]() -> op_result<std::vector<store::inventory_record>> {
    if (nodes.empty() || nodes.size() > max_bulk)
      return {std::nullopt, refuse(who, error_kind::invalid, "too_many",
                                   "enrol 1.." + std::to_string(max_bulk) + " nodes per request", "", "")};
    std::set<std::string> seen;
    for (const auto& c : nodes) {
      if (!pki::valid_node_id(c.id))
        return {std::nullopt, refuse(who, error_kind::invalid, "invalid_node_id",
                                     "node ids are 1-64 of [A-Za-z0-9_.-]", "", "")};
      if (!seen.insert(c.id).second)
        return {std::nullopt, refuse(who, error_kind::invalid, "duplicate_node",
                                     "node " + c.id + " is listed twice", c.id, "")};
      if (const std::string why = check_labels(c.labels); !why.empty())
        return {std::nullopt, refuse(who, error_kind::invalid, "invalid_labels", why, c.id, "")};
    }
    const std::int64_t now = now_s();
    store::write_batch batch;
    for (const auto& c : nodes) {
      store::inventory_record rec;
      rec.node_id = c.id;
      rec.labels = c.labels;
      rec.source = "api";
      rec.enrolled_at = now;
      rec.enrolled_by = who.name;
      json detail{{"labels", c.labels}, {"fingerprint", ""}, {"source", "api"}};
      if (const auto* old = inventory_.find(c.id))
        detail["previous"] = {{"state", old->state}, {"labels", old->labels}, {"fingerprint", old->fingerprint}};
      batch.inventory.push_back(std::move(rec));
      batch.audit.push_back(event(who, "node.enrolled", c.id, detail.dump()));
    }
    if (auto e = commit_inventory_locked(batch)) return {std::nullopt, *e};
    return {std::move(batch.inventory), {}};
  });
}

op_result<store::inventory_record> controller::revoke_node(const principal& who,
                                                           const std::string& node,
                                                           const std::string& reason) {
  std::lock_guard lock(mutex_);
  return with_retry([&]() -> op_result<store::inventory_record> {
    const store::inventory_record* old = inventory_.find(node);
    if (!old)
      return {std::nullopt, refuse(who, error_kind::not_found, "not_found",
                                   "node " + node + " is not in the inventory", node, "")};
    if (old->state != "enrolled")
      return {std::nullopt, refuse(who, error_kind::conflict, "already_revoked",
                                   "node " + node + " was already revoked", node, "")};
    if (reason.empty())
      return {std::nullopt, refuse(who, error_kind::invalid, "missing_reason",
                                   "a revocation needs a reason", node, "")};
    store::inventory_record rec = *old;
    rec.state = "revoked";
    rec.revoked_at = now_s();
    rec.revoked_by = who.name;
    rec.revoked_reason = reason;
    store::write_batch batch;
    batch.inventory.push_back(rec);
    batch.audit.push_back(event(who, "node.revoked", node,
                                json{{"reason", reason},
                                     {"fingerprint", rec.fingerprint},
                                     {"labels", rec.labels}}
                                    .dump()));
    if (auto e = commit_inventory_locked(batch)) return {std::nullopt, *e};
    return {std::move(rec), {}};
  });
}

op_result<store::inventory_record> controller::relabel_node(
    const principal& who, const std::string& node, const std::map<std::string, std::string>& labels) {
  std::lock_guard lock(mutex_);
  return with_retry([&]() -> op_result<store::inventory_record> {
    const store::inventory_record* old = inventory_.find(node);
    if (!old)
      return {std::nullopt, refuse(who, error_kind::not_found, "not_found",
                                   "node " + node + " is not in the inventory", node, "")};
    if (old->state != "enrolled")
      return {std::nullopt, refuse(who, error_kind::conflict, "revoked",
                                   "node " + node + " was revoked; enrol it again", node, "")};
    if (const std::string why = check_labels(labels); !why.empty())
      return {std::nullopt, refuse(who, error_kind::invalid, "invalid_labels", why, node, "")};
    store::inventory_record rec = *old;
    rec.labels = labels;
    store::write_batch batch;
    batch.inventory.push_back(rec);
    batch.audit.push_back(event(who, "node.relabelled", node,
                                json{{"from", old->labels}, {"to", labels}}.dump()));
    if (auto e = commit_inventory_locked(batch)) return {std::nullopt, *e};
    return {std::move(rec), {}};
  });
}

std::vector<store::inventory_record> controller::inventory() {
  std::lock_guard lock(mutex_);
  try {
    refresh_locked(false);  // replicas: another one's enrolments
  } catch (const store::store_error&) {
  }
  return inventory_.list();
}

}  // namespace sluice::control::controller
