#include "control/controller/node_inventory.hpp"

#include <algorithm>
#include <cctype>
#include <set>

namespace sluice::control::controller {

std::string_view to_string(admission a) noexcept {
  switch (a) {
#define SLUICE_X(name, text) \
  case admission::name:      \
    return #name;
    SLUICE_NODE_ADMISSIONS(SLUICE_X)
#undef SLUICE_X
  }
  return "?";
}

std::string_view describe(admission a) noexcept {
  switch (a) {
#define SLUICE_X(name, text) \
  case admission::name:      \
    return text;
    SLUICE_NODE_ADMISSIONS(SLUICE_X)
#undef SLUICE_X
  }
  return "?";
}

std::string normalise_fingerprint(std::string_view f) {
  std::string out;
  out.reserve(f.size());
  for (const char c : f)
    if (c != ':') out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

admission node_inventory::admit(const std::string& node, std::string_view fingerprint) const {
  const auto it = records_.find(node);
  if (it == records_.end()) return admission::not_enrolled;
  const store::inventory_record& r = it->second;
  if (r.state != "enrolled") return admission::revoked;
  if (!r.fingerprint.empty()) {
    // Fingerprints arrive from the TLS layer in lower-case hex already; normalise only when not.
    const bool plain = std::none_of(fingerprint.begin(), fingerprint.end(), [](char c) {
      return c == ':' || std::isupper(static_cast<unsigned char>(c));
    });
    if ((plain ? std::string(fingerprint) : normalise_fingerprint(fingerprint)) != r.fingerprint)
      return admission::certificate_not_current;
  }
  return admission::admitted;
}

const store::inventory_record* node_inventory::find(const std::string& node) const {
  const auto it = records_.find(node);
  return it == records_.end() ? nullptr : &it->second;
}

bool node_inventory::enrolled(const std::string& node) const {
  const auto* r = find(node);
  return r != nullptr && r->state == "enrolled";
}

void node_inventory::put(store::inventory_record r) {
  std::string id = r.node_id;
  records_.insert_or_assign(std::move(id), std::move(r));
}

std::vector<std::string> node_inventory::replace(std::vector<store::inventory_record> all) {
  std::unordered_map<std::string, store::inventory_record> next;
  next.reserve(all.size());
  for (auto& r : all) {
    std::string id = r.node_id;
    next.insert_or_assign(std::move(id), std::move(r));
  }
  std::set<std::string> changed;
  for (const auto& [id, r] : next) {
    const auto* old = find(id);
    if (!old || old->state != r.state || old->labels != r.labels || old->fingerprint != r.fingerprint)
      changed.insert(id);
  }
  for (const auto& [id, r] : records_)
    if (!next.contains(id)) changed.insert(id);
  records_ = std::move(next);
  return {changed.begin(), changed.end()};
}

std::size_t node_inventory::enrolled_count() const noexcept {
  std::size_t n = 0;
  for (const auto& [id, r] : records_) n += r.state == "enrolled" ? 1 : 0;
  return n;
}

std::vector<store::inventory_record> node_inventory::list() const {
  std::vector<store::inventory_record> out;
  out.reserve(records_.size());
  for (const auto& [id, r] : records_) out.push_back(r);
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.node_id < b.node_id; });
  return out;
}

}  // namespace sluice::control::controller
