#include "control/store/batch_check.hpp"

#include <cstdint>
#include <limits>
#include <set>
#include <utility>

namespace sluice::control::store {

std::string check_batch(const write_batch& b) {
  constexpr std::uint64_t max_i64 =
      static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  std::set<std::pair<std::string, std::string>> directives;
  for (const auto& p : b.directives) {
    const auto& d = p.record;
    const std::string key = d.issuer + "/" + d.id;
    if (d.issuer.empty() || d.id.empty()) return "directive with empty issuer or id";
    if (!directives.emplace(d.issuer, d.id).second) return "directive " + key + " put twice";
    if (p.expected_version > max_i64) return "directive " + key + ": expected_version too large";
  }
  for (const auto& r : b.revisions)
    if (r.revision == 0 || r.revision > max_i64)
      return "revision number " + std::to_string(r.revision) + " out of range";
  std::set<std::string> nodes;
  for (const auto& n : b.nodes) {
    if (n.node_id.empty()) return "node with empty node_id";
    if (!nodes.insert(n.node_id).second) return "node " + n.node_id + " put twice";
    if (n.applied_revision > max_i64 || n.nack_revision > max_i64)
      return "node " + n.node_id + ": revision number too large";
  }
  std::set<std::pair<std::string, std::int64_t>> impacts;
  for (const auto& r : b.impacts) {
    const std::string key = r.node_id + "@" + std::to_string(r.window_end);
    if (r.node_id.empty()) return "impact with empty node_id";
    if (r.window_end < 0) return "impact " + key + ": negative window_end";
    if (r.revision > max_i64) return "impact " + key + ": revision number too large";
    if (!impacts.emplace(r.node_id, r.window_end).second) return "impact " + key + " put twice";
  }
  std::set<std::string> inventory;
  for (const auto& r : b.inventory) {
    if (r.node_id.empty()) return "inventory record with empty node_id";
    if (!inventory.insert(r.node_id).second) return "inventory " + r.node_id + " put twice";
    if (r.state != "enrolled" && r.state != "revoked")
      return "inventory " + r.node_id + ": state '" + r.state + "' is not enrolled or revoked";
  }
  return "";
}

std::string check_directive_version(const write_batch::directive_put& p,
                                    std::optional<std::uint64_t> stored) {
  const std::string name = p.record.issuer + "/" + p.record.id;
  if (p.expected_version == 0 && stored)
    return "directive " + name + " already exists (version " + std::to_string(*stored) +
           "); the batch expected it not to exist";
  if (p.expected_version != 0 && !stored)
    return "directive " + name + " does not exist; the batch expected version " +
           std::to_string(p.expected_version);
  if (stored && *stored != p.expected_version)
    return "directive " + name + " is at version " + std::to_string(*stored) +
           "; the batch expected version " + std::to_string(p.expected_version);
  return "";
}

std::string check_revision_sequence(const write_batch& b, std::uint64_t latest) {
  for (const auto& r : b.revisions) {
    if (r.revision != latest + 1)
      return "revision " + std::to_string(r.revision) + " is not the next one (" +
             (latest == 0 ? std::string("none stored yet")
                          : "latest is " + std::to_string(latest)) +
             ", so the next is " + std::to_string(latest + 1) + ")";
    latest = r.revision;
  }
  return "";
}

}  // namespace sluice::control::store
