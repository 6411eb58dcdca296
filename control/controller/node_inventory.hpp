#pragma once
// The controller's in-memory copy of the node inventory (issue 14; records in store.hpp): what
// node admission and the node feed consult on every request, so it is a hash map and nothing
// here does I/O. The controller owns one, under its lock, and keeps it equal to the store's
// (its own changes are applied after they commit; other replicas' are re-read when the store's
// `inventory` meta generation moved).

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "control/store/store.hpp"

namespace sluice::control::controller {

#define SLUICE_NODE_ADMISSIONS(X)                                                         \
  X(admitted, "")                                                                         \
  X(not_enrolled, "node is not in the inventory (enrol it with sluicectl nodes enroll)")  \
  X(revoked, "node was revoked")                                                          \
  X(certificate_not_current, "the certificate is not the one issued at the node's latest enrolment")

enum class admission : std::uint8_t {
#define SLUICE_X(name, text) name,
  SLUICE_NODE_ADMISSIONS(SLUICE_X)
#undef SLUICE_X
};
[[nodiscard]] std::string_view to_string(admission a) noexcept;
[[nodiscard]] std::string_view describe(admission a) noexcept;

class node_inventory {
 public:
  // Whether `node` may be served: enrolled, and when its record pins a certificate, presenting
  // exactly that one (`fingerprint`: hex SHA-256 of the DER, any case, ':' separators allowed;
  // "" when the caller has no certificate, which only unpinned records admit).
  [[nodiscard]] admission admit(const std::string& node, std::string_view fingerprint) const;
  [[nodiscard]] const store::inventory_record* find(const std::string& node) const;
  [[nodiscard]] bool enrolled(const std::string& node) const;

  void put(store::inventory_record r);
  // Replaces everything; returns the ids whose state, labels or fingerprint changed (or that
  // appeared or went), whose waiting polls must be answered again.
  std::vector<std::string> replace(std::vector<store::inventory_record> all);

  // Every record, by node id.
  [[nodiscard]] std::vector<store::inventory_record> list() const;
  [[nodiscard]] std::size_t size() const noexcept { return records_.size(); }
  [[nodiscard]] std::size_t enrolled_count() const noexcept;

  // The store's `inventory` meta value this copy reflects ("" = none yet).
  std::string generation;

 private:
  std::unordered_map<std::string, store::inventory_record> records_;
};

// Lower-case hex without ':' (what fingerprints are compared as).
[[nodiscard]] std::string normalise_fingerprint(std::string_view f);

}  // namespace sluice::control::controller
