#include "control/store/record_json.hpp"

#include <cstdint>
#include <map>
#include <new>
#include <string>
#include <utility>

namespace sluice::control::store {

namespace {

using json = nlohmann::json;

const json& field(const json& j, const char* name) {
  const auto it = j.find(name);
  if (it == j.end()) throw store_error(std::string("field \"") + name + "\" missing");
  return *it;
}

std::string text(const json& j, const char* name) {
  const json& v = field(j, name);
  if (!v.is_string()) throw store_error(std::string("field \"") + name + "\" is not text");
  return v.get<std::string>();
}

std::int64_t i64(const json& j, const char* name) {
  const json& v = field(j, name);
  if (v.is_number_unsigned()) {
    if (v.get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX)) {
      throw store_error(std::string("field \"") + name + "\" is out of range");
    }
    return static_cast<std::int64_t>(v.get<std::uint64_t>());
  }
  if (!v.is_number_integer()) {
    throw store_error(std::string("field \"") + name + "\" is not an integer");
  }
  return v.get<std::int64_t>();
}

std::uint64_t u64(const json& j, const char* name) {
  const json& v = field(j, name);
  if (!v.is_number_unsigned()) {
    throw store_error(std::string("field \"") + name + "\" is not a non-negative integer");
  }
  return v.get<std::uint64_t>();
}

bool boolean(const json& j, const char* name) {
  const json& v = field(j, name);
  if (!v.is_boolean()) throw store_error(std::string("field \"") + name + "\" is not a boolean");
  return v.get<bool>();
}

json parse_object(std::string_view s) {
  json j;
  try {
    j = json::parse(s);
  } catch (const json::exception& e) {
    throw store_error(std::string("not JSON: ") + e.what());
  }
  if (!j.is_object()) throw store_error("not a JSON object");
  return j;
}

}  // namespace

std::string dump_json(const json& j) {
  try {
    return j.dump();
  } catch (const json::exception& e) {
    // type_error 316: a string that is not UTF-8. JSON cannot hold it, and replacing bytes
    // would store something else than we were given.
    throw store_error(std::string("cannot encode as JSON: ") + e.what());
  }
}

json approvals_to_json(const std::vector<approval>& approvals) {
  json a = json::array();
  for (const auto& ap : approvals) {
    a.push_back({{"actor", ap.actor}, {"at", ap.at}, {"kind", ap.kind}, {"reason", ap.reason}});
  }
  return a;
}

std::vector<approval> approvals_from_json(const json& j) {
  if (!j.is_array()) throw store_error("approvals: not an array");
  std::vector<approval> out;
  std::size_t i = 0;
  for (const auto& e : j) {
    try {
      if (!e.is_object()) throw store_error("not an object");
      approval ap;
      ap.actor = text(e, "actor");
      ap.at = i64(e, "at");
      if (e.contains("kind")) ap.kind = text(e, "kind");
      if (e.contains("reason")) ap.reason = text(e, "reason");
      out.push_back(std::move(ap));
    } catch (const store_error& err) {
      throw store_error("approvals[" + std::to_string(i) + "]: " + err.what());
    }
    ++i;
  }
  return out;
}

std::string directive_to_json(const directive_record& d) {
  return dump_json({{"issuer", d.issuer},
                    {"id", d.id},
                    {"document", d.document},
                    {"signature", d.signature},
                    {"action", d.action},
                    {"state", d.state},
                    {"end_reason", d.end_reason},
                    {"submitted_by", d.submitted_by},
                    {"received_at", d.received_at},
                    {"updated_at", d.updated_at},
                    {"ended_at", d.ended_at},
                    {"approvals", approvals_to_json(d.approvals)}});
}

directive_record directive_from_json(std::string_view s) {
  const json j = parse_object(s);
  directive_record d;
  d.issuer = text(j, "issuer");
  d.id = text(j, "id");
  d.document = text(j, "document");
  d.signature = text(j, "signature");
  d.action = text(j, "action");
  d.state = text(j, "state");
  d.end_reason = text(j, "end_reason");
  d.submitted_by = text(j, "submitted_by");
  d.received_at = i64(j, "received_at");
  d.updated_at = i64(j, "updated_at");
  d.ended_at = i64(j, "ended_at");
  d.approvals = approvals_from_json(field(j, "approvals"));
  return d;
}

std::string audit_to_json(const audit::audit_record& r) {
  return dump_json({{"seq", r.seq},
                    {"at", r.at},
                    {"actor", r.actor},
                    {"event", r.event},
                    {"subject", r.subject},
                    {"detail", r.detail},
                    {"prev_hash", r.prev_hash},
                    {"hash", r.hash}});
}

audit::audit_record audit_from_json(std::string_view s) {
  const json j = parse_object(s);
  audit::audit_record r;
  r.seq = u64(j, "seq");
  r.at = i64(j, "at");
  r.actor = text(j, "actor");
  r.event = text(j, "event");
  r.subject = text(j, "subject");
  r.detail = text(j, "detail");
  r.prev_hash = text(j, "prev_hash");
  r.hash = text(j, "hash");
  return r;
}

std::string revision_to_json(const revision_record& r) {
  return dump_json({{"revision", r.revision},
                    {"generated_at", r.generated_at},
                    {"content", r.content},
                    {"reason", r.reason}});
}

revision_record revision_from_json(std::string_view s) {
  const json j = parse_object(s);
  revision_record r;
  r.revision = u64(j, "revision");
  r.generated_at = i64(j, "generated_at");
  r.content = text(j, "content");
  r.reason = text(j, "reason");
  return r;
}

std::map<std::string, std::string> labels_from_json(const nlohmann::json& labels) {
  if (!labels.is_object()) throw store_error("field \"labels\" is not an object");
  std::map<std::string, std::string> out;
  for (const auto& [k, v] : labels.items()) {
    if (!v.is_string()) throw store_error("label \"" + k + "\" is not text");
    out.emplace(k, v.get<std::string>());
  }
  return out;
}

std::string node_to_json(const node_record& n) {
  return dump_json({{"node_id", n.node_id},
                    {"labels", n.labels},
                    {"first_seen", n.first_seen},
                    {"last_seen", n.last_seen},
                    {"applied_revision", n.applied_revision},
                    {"ruleset_sha256", n.ruleset_sha256},
                    {"nack", n.nack},
                    {"nack_revision", n.nack_revision},
                    {"error", n.error},
                    {"health", n.health},
                    {"audit_checkpoint", n.audit_checkpoint},
                    {"audit_checkpoint_conflict", n.audit_checkpoint_conflict}});
}

node_record node_from_json(std::string_view s) {
  const json j = parse_object(s);
  node_record n;
  n.node_id = text(j, "node_id");
  n.labels = labels_from_json(field(j, "labels"));
  n.first_seen = i64(j, "first_seen");
  n.last_seen = i64(j, "last_seen");
  n.applied_revision = u64(j, "applied_revision");
  n.ruleset_sha256 = text(j, "ruleset_sha256");
  n.nack = boolean(j, "nack");
  n.nack_revision = u64(j, "nack_revision");
  n.error = text(j, "error");
  n.health = text(j, "health");
  // Issue 14; records written before it have neither.
  if (j.contains("audit_checkpoint")) n.audit_checkpoint = text(j, "audit_checkpoint");
  if (j.contains("audit_checkpoint_conflict"))
    n.audit_checkpoint_conflict = text(j, "audit_checkpoint_conflict");
  return n;
}

std::string inventory_to_json(const inventory_record& r) {
  return dump_json({{"node_id", r.node_id},
                    {"labels", r.labels},
                    {"state", r.state},
                    {"fingerprint", r.fingerprint},
                    {"certificate_not_after", r.certificate_not_after},
                    {"source", r.source},
                    {"enrolled_at", r.enrolled_at},
                    {"enrolled_by", r.enrolled_by},
                    {"revoked_at", r.revoked_at},
                    {"revoked_by", r.revoked_by},
                    {"revoked_reason", r.revoked_reason}});
}

inventory_record inventory_from_json(std::string_view s) {
  const json j = parse_object(s);
  inventory_record r;
  r.node_id = text(j, "node_id");
  r.labels = labels_from_json(field(j, "labels"));
  r.state = text(j, "state");
  r.fingerprint = text(j, "fingerprint");
  r.certificate_not_after = i64(j, "certificate_not_after");
  r.source = text(j, "source");
  r.enrolled_at = i64(j, "enrolled_at");
  r.enrolled_by = text(j, "enrolled_by");
  r.revoked_at = i64(j, "revoked_at");
  r.revoked_by = text(j, "revoked_by");
  r.revoked_reason = text(j, "revoked_reason");
  return r;
}

std::string impact_to_json(const impact_record& r) {
  return dump_json({{"node_id", r.node_id},
                    {"window_start", r.window_start},
                    {"window_end", r.window_end},
                    {"revision", r.revision},
                    {"body", r.body}});
}

impact_record impact_from_json(std::string_view s) {
  const json j = parse_object(s);
  impact_record r;
  r.node_id = text(j, "node_id");
  r.window_start = i64(j, "window_start");
  r.window_end = i64(j, "window_end");
  r.revision = u64(j, "revision");
  r.body = text(j, "body");
  return r;
}

}  // namespace sluice::control::store
