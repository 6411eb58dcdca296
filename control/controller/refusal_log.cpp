#include "control/controller/refusal_log.hpp"

#include <nlohmann/json.hpp>

namespace sluice::control::controller {

bool refusal_log::note(std::string_view actor, std::string_view code, std::int64_t now_ms) {
  auto key = std::make_pair(std::string(actor), std::string(code));
  auto it = entries_.find(key);
  if (it == entries_.end()) {
    if (entries_.size() >= options_.max_keys) {
      key.first = std::string(overflow_actor);
      it = entries_.find(key);
    }
    if (it == entries_.end()) {
      // The overflow key may itself be new while the map is full: one over the bound, once
      // per code.
      entries_.emplace(std::move(key), entry{now_ms, 0, 0, 0});
      return true;
    }
  }
  entry& e = it->second;
  if (e.count == 0) e.first_ms = now_ms;
  ++e.count;
  e.last_ms = now_ms;
  return false;
}

std::vector<refusal_log::repeated> refusal_log::due(std::int64_t now_ms) {
  std::vector<repeated> out;
  for (auto it = entries_.begin(); it != entries_.end();) {
    entry& e = it->second;
    if (now_ms - e.window_start < options_.window_ms) {
      ++it;
      continue;
    }
    if (e.count == 0) {
      it = entries_.erase(it);
      continue;
    }
    out.push_back({it->first.first, it->first.second, e.count, e.first_ms, e.last_ms});
    e = entry{now_ms, 0, 0, 0};
    ++it;
  }
  return out;
}

std::vector<refusal_log::repeated> refusal_log::drain() {
  std::vector<repeated> out;
  for (const auto& [key, e] : entries_)
    if (e.count > 0) out.push_back({key.first, key.second, e.count, e.first_ms, e.last_ms});
  entries_.clear();
  return out;
}

std::string refusal_log::detail_json(const repeated& r) const {
  return nlohmann::json{{"code", r.code},
                        {"count", r.count},
                        {"first_at", r.first_ms},
                        {"last_at", r.last_ms},
                        {"window_seconds", options_.window_ms / 1000},
                        {"aggregated", true}}
      .dump();
}

std::string refusal_log::aggregation_note() const {
  return "repeats of this code by this caller within " + std::to_string(options_.window_ms / 1000) +
         " s are counted and written as one request.refused.repeated record";
}

}  // namespace sluice::control::controller
