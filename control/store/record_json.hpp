#pragma once
// JSON forms of the store's records, shared by the stores that keep records as text (etcd keeps
// every record as one JSON value; SQLite keeps approvals and labels as JSON columns).
//
// Encoders throw store_error when a text field is not valid UTF-8 (JSON cannot carry it), so a
// caller can refuse the batch before writing anything. Decoders throw store_error naming the
// field that is missing or of the wrong type; callers prefix the record's key. Fields a newer
// writer added are ignored; fields an older writer lacked take the struct's defaults only where
// the comment on the decoder says so (approval.kind "approve", approval.reason "",
// node_record.audit_checkpoint and audit_checkpoint_conflict "").
//
// directive_record::version and node_record::expired are not part of the JSON: the store derives
// them (from the key's revision, from the node's liveness key).

#include <nlohmann/json.hpp>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "control/audit/audit.hpp"
#include "control/store/store.hpp"

namespace sluice::control::store {

// [{"actor", "at", "kind", "reason"}, ...]. Decoding accepts entries without kind/reason (written
// before issue 8) as kind "approve", reason "".
[[nodiscard]] nlohmann::json approvals_to_json(const std::vector<approval>& approvals);
[[nodiscard]] std::vector<approval> approvals_from_json(const nlohmann::json& j);

// Whole records as compact JSON text.
[[nodiscard]] std::string directive_to_json(const directive_record& d);
[[nodiscard]] directive_record directive_from_json(std::string_view text);

[[nodiscard]] std::string audit_to_json(const audit::audit_record& r);
[[nodiscard]] audit::audit_record audit_from_json(std::string_view text);

[[nodiscard]] std::string revision_to_json(const revision_record& r);
[[nodiscard]] revision_record revision_from_json(std::string_view text);

[[nodiscard]] std::string node_to_json(const node_record& n);
[[nodiscard]] node_record node_from_json(std::string_view text);

[[nodiscard]] std::string inventory_to_json(const inventory_record& r);
[[nodiscard]] inventory_record inventory_from_json(std::string_view text);
// {"name": "value", ...} -> map; throws store_error when it is not an object of strings.
[[nodiscard]] std::map<std::string, std::string> labels_from_json(const nlohmann::json& labels);

[[nodiscard]] std::string impact_to_json(const impact_record& r);
[[nodiscard]] impact_record impact_from_json(std::string_view text);

// Checks that dump() would succeed (valid UTF-8 throughout) and returns the text; throws
// store_error otherwise. Exposed for callers that build their own JSON values.
[[nodiscard]] std::string dump_json(const nlohmann::json& j);

}  // namespace sluice::control::store
