#pragma once
// Aggregating refusals for the audit log (issue 14): a caller refused again and again must not
// grow the hash-chained, fsynced log by one record per attempt. Per (actor, code):
//   - the first refusal is written in full (note() answers true);
//   - repeats within the window are only counted (note() answers false);
//   - when the window ends, due() answers one summary per key that counted repeats (the caller
//     writes it as `request.refused.repeated` with count, first and last time), and the key
//     starts a new window; a key with no repeats in a whole window is forgotten, so its next
//     refusal is written in full again.
// So one caller costs at most two records per window and code. Memory is bounded by
// `max_keys`: when full, refusals of new keys are counted under the actor `overflow_actor`
// (with their code), so a flood of invented names costs one key per code, not one per name.
//
// Used for nodes' refusals (controller::admit_node and the node calls) and meant for operators'
// refusals too (controller::audit_refused). Not thread-safe: the owner calls it under its lock.

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sluice::control::controller {

class refusal_log {
 public:
  struct options {
    std::int64_t window_ms = 60'000;
    std::size_t max_keys = 4096;
  };
  // One summary: `count` refusals of `actor` with `code` between first_ms and last_ms (unix
  // ms), after the one written in full (or, for overflow, of any actor beyond max_keys).
  struct repeated {
    std::string actor;
    std::string code;
    std::uint64_t count = 0;
    std::int64_t first_ms = 0;
    std::int64_t last_ms = 0;
  };
  static constexpr std::string_view overflow_actor = "(other callers)";

  refusal_log() : refusal_log(options{}) {}
  explicit refusal_log(options o) : options_(o) {}

  // A refusal at `now_ms`: true when it is to be written in full now, false when counted.
  [[nodiscard]] bool note(std::string_view actor, std::string_view code, std::int64_t now_ms);
  // The summaries whose window has ended by `now_ms` (see above). Call about once a second.
  [[nodiscard]] std::vector<repeated> due(std::int64_t now_ms);
  // Every count not yet summarised, whatever its window (a clean stop); forgets every key.
  [[nodiscard]] std::vector<repeated> drain();

  [[nodiscard]] std::size_t keys() const noexcept { return entries_.size(); }
  [[nodiscard]] std::int64_t window_ms() const noexcept { return options_.window_ms; }

  // The audit detail of a summary (JSON text): {"code", "count", "first_at", "last_at",
  // "window_seconds", "aggregated": true}.
  [[nodiscard]] std::string detail_json(const repeated& r) const;
  // What the full record of a first refusal says about its repeats (put it in its detail).
  [[nodiscard]] std::string aggregation_note() const;

 private:
  struct entry {
    std::int64_t window_start = 0;
    std::uint64_t count = 0;  // repeats since the window started
    std::int64_t first_ms = 0;
    std::int64_t last_ms = 0;
  };
  options options_;
  std::map<std::pair<std::string, std::string>, entry, std::less<>> entries_;
};

}  // namespace sluice::control::controller
