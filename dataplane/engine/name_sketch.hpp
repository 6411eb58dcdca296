#pragma once
// Impact sketches (issue 8): for each rule a flow matched, which names the matched flows carried,
// as a bounded streaming heavy-hitters summary (Space-Saving, Metwally et al. 2005) per rule per
// worker, merged across workers and exported as JSON for the controller.
//
// Privacy: a sketch holds rule ids, names the clients asked for and counts. No address, no port,
// no per-flow record: a flow contributes one increment and is forgotten.
//
// Memory (fixed, allocated once per worker at start; insert never allocates):
//   sketch_entry  = 88 bytes (64-byte name, its length, a truncation mark, hash, count, error)
//   rule_sketch   = 32 x 88 + 24 = 2,840 bytes (flows, unnamed, K = 32 entries)
//   sketch_slot   = rule_sketch + 2 x 96-byte ids (rule, directive) = 3,040 bytes
//   sketch_set    = 512 slots + a touched list = ~1.56 MB; a worker holds two (double buffer),
//                   ~3.1 MB per worker whatever the traffic (static_asserts below keep these true).
// Rules whose index in the policy is >= 512, or whose id is longer than 96 bytes, are not
// sketched: their flows are counted in sketch_set::overflow_flows.
//
// Names are normalised before counting: ASCII lowercase, one trailing dot dropped, bytes outside
// 0x21..0x7e replaced by '?'. A name longer than 64 bytes keeps its LAST 64 bytes (the registrable
// domain is at the end) and is marked truncated; it is exported as "..." + those 64 bytes, so two
// long names that share their last 64 bytes are counted together — deterministically.
//
// Space-Saving guarantee per worker: every name with more than flows/K of a rule's named flows
// is in the sketch; a reported count overestimates the true count by at most `error`
// (true in [count - error, count]). With at most K distinct names, counts are exact (error 0).
//
// Threads: rule_sketch / sketch_set are written by one worker only (no locks, no atomics);
// the control side reads and clears a set only after the worker stopped writing it (see
// worker.hpp, drain_impact). impact_merger and impact_json are control-side (they allocate).

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace sluice::engine {

inline constexpr std::size_t sketch_name_cap = 64;
inline constexpr std::size_t sketch_id_cap = 96;
inline constexpr std::uint32_t sketch_top_k = 32;
inline constexpr std::uint32_t sketch_rule_slots = 512;

// A normalised name (see above). `hash` is FNV-1a over the stored bytes.
struct sketch_name {
  std::array<char, sketch_name_cap> bytes{};
  std::uint8_t len = 0;
  bool truncated = false;
  std::uint32_t hash = 0;

  [[nodiscard]] std::string_view view() const noexcept { return {bytes.data(), len}; }
  [[nodiscard]] bool same(const sketch_name& o) const noexcept {
    return hash == o.hash && len == o.len && truncated == o.truncated &&
           std::memcmp(bytes.data(), o.bytes.data(), len) == 0;
  }
  // What the export shows: the name, or "..." + its last 64 bytes when truncated.
  [[nodiscard]] std::string exported() const {
    return truncated ? "..." + std::string(view()) : std::string(view());
  }
};

[[nodiscard]] inline sketch_name normalise_name(std::string_view in) noexcept {
  sketch_name n;
  if (!in.empty() && in.back() == '.') in.remove_suffix(1);
  if (in.size() > sketch_name_cap) {
    in.remove_prefix(in.size() - sketch_name_cap);
    n.truncated = true;
  }
  std::uint32_t h = 2166136261u;
  for (std::size_t i = 0; i < in.size(); ++i) {
    auto c = static_cast<unsigned char>(in[i]);
    if (c >= 'A' && c <= 'Z') c = static_cast<unsigned char>(c - 'A' + 'a');
    if (c < 0x21 || c > 0x7e) c = '?';
    n.bytes[i] = static_cast<char>(c);
    h = (h ^ c) * 16777619u;
  }
  n.len = static_cast<std::uint8_t>(in.size());
  n.hash = h ^ (n.truncated ? 0x9e3779b9u : 0u);
  return n;
}

struct sketch_entry {
  sketch_name name;
  std::uint64_t count = 0;
  std::uint64_t error = 0;  // count may exceed the true count by at most this
};
static_assert(sizeof(sketch_entry) == 88);

// One rule's flows in one window on one worker.
struct rule_sketch {
  std::uint64_t flows = 0;    // flows recorded for the rule (named + unnamed)
  std::uint64_t unnamed = 0;  // flows whose classification ended without a name
  std::uint32_t used = 0;     // entries in use (<= K)
  std::array<sketch_entry, sketch_top_k> entries{};

  void add_unnamed() noexcept {
    ++flows;
    ++unnamed;
  }
  void add_name(std::string_view name) noexcept { add_name(normalise_name(name)); }
  // Space-Saving: a known name counts one more; a new one takes a free entry, or replaces the
  // entry with the smallest count c and starts at c + 1 with error c. O(K), no allocation.
  void add_name(const sketch_name& n) noexcept {
    ++flows;
    std::uint32_t min_at = 0;
    for (std::uint32_t i = 0; i < used; ++i) {
      if (entries[i].name.same(n)) {
        ++entries[i].count;
        return;
      }
      if (entries[i].count < entries[min_at].count) min_at = i;
    }
    if (used < sketch_top_k) {
      entries[used++] = {n, 1, 0};
      return;
    }
    sketch_entry& e = entries[min_at];
    e.error = e.count;
    e.count += 1;
    e.name = n;
  }
  [[nodiscard]] bool full() const noexcept { return used == sketch_top_k; }
  [[nodiscard]] std::uint64_t min_count() const noexcept {
    std::uint64_t m = UINT64_MAX;
    for (std::uint32_t i = 0; i < used; ++i) m = std::min(m, entries[i].count);
    return used == 0 ? 0 : m;
  }
  void clear() noexcept {
    flows = 0;
    unnamed = 0;
    used = 0;
  }
};
static_assert(sizeof(rule_sketch) <= 2848);

struct sketch_slot {
  rule_sketch sketch;
  std::array<char, sketch_id_cap> rule{};
  std::array<char, sketch_id_cap> directive{};
  std::uint8_t rule_len = 0;
  std::uint8_t directive_len = 0;
  bool in_use = false;

  [[nodiscard]] std::string_view rule_id() const noexcept { return {rule.data(), rule_len}; }
  [[nodiscard]] std::string_view directive_id() const noexcept {
    return {directive.data(), directive_len};
  }
};

// One window's sketches of one worker: a slot per rule index of the policy it was filled under.
struct sketch_set {
  std::uint64_t generation = 0;      // of the policy whose rule indices the slots use
  std::uint64_t overflow_flows = 0;  // flows of rules beyond the pool (or with too long ids)
  std::uint64_t swap_dropped_flows = 0;  // dropped on a policy swap (see retag)
  std::uint32_t touched_n = 0;
  std::array<std::uint16_t, sketch_rule_slots> touched{};
  std::array<sketch_slot, sketch_rule_slots> slots{};

  // The slot of rule `index` (its id and directive copied on first use in the window), or null
  // (and the flow counted in overflow_flows) when the pool has no slot for it.
  [[nodiscard]] rule_sketch* slot_for(std::uint32_t index, std::string_view rule_id,
                                      std::string_view directive) noexcept {
    if (index >= sketch_rule_slots || rule_id.size() > sketch_id_cap) [[unlikely]] {
      ++overflow_flows;
      return nullptr;
    }
    sketch_slot& s = slots[index];
    if (!s.in_use) [[unlikely]] {
      s.in_use = true;
      s.sketch.clear();
      s.rule_len = static_cast<std::uint8_t>(rule_id.size());
      std::memcpy(s.rule.data(), rule_id.data(), rule_id.size());
      s.directive_len = static_cast<std::uint8_t>(std::min(directive.size(), sketch_id_cap));
      std::memcpy(s.directive.data(), directive.data(), s.directive_len);
      touched[touched_n++] = static_cast<std::uint16_t>(index);
    }
    return &s.sketch;
  }

  // A policy swap in the middle of a window: slot i was filled for the old policy's rule i. Each
  // slot keeps its rule id, so what it holds stays attributed to that id; but new flows of the
  // new policy's rule i must not land in it when rule i is now another rule. Such slots are
  // dropped (their flows counted in swap_dropped_flows); slots whose index still names the same
  // rule id carry on. `id_of(i)` is the new policy's id of rule i ("" past its end).
  template <typename IdOf>
  void retag(std::uint64_t new_generation, IdOf&& id_of) noexcept {
    std::uint32_t kept = 0;
    for (std::uint32_t t = 0; t < touched_n; ++t) {
      sketch_slot& s = slots[touched[t]];
      if (std::string_view(id_of(touched[t])) == s.rule_id()) {
        touched[kept++] = touched[t];
      } else {
        swap_dropped_flows += s.sketch.flows;
        s.in_use = false;
        s.sketch.clear();
      }
    }
    touched_n = kept;
    generation = new_generation;
  }

  [[nodiscard]] bool empty() const noexcept { return touched_n == 0; }

  // Clears only what was touched: O(rules used), not O(pool).
  void clear() noexcept {
    for (std::uint32_t t = 0; t < touched_n; ++t) {
      slots[touched[t]].in_use = false;
      slots[touched[t]].sketch.clear();
    }
    touched_n = 0;
    overflow_flows = 0;
    swap_dropped_flows = 0;
  }
};

// ---- control side: merge and export (allocates; never on a worker) ---------------------------

struct impact_name {
  std::string name;
  std::uint64_t flows = 0;
  std::uint64_t error = 0;
};

struct impact_rule {
  std::string rule;
  std::string directive;
  std::uint64_t flows = 0;
  std::uint64_t unnamed = 0;
  std::vector<impact_name> names;  // top K by flows (then name), descending
};

struct impact_window {
  std::int64_t window_start = 0;  // unix seconds
  std::int64_t window_end = 0;
  std::uint64_t revision = 0;     // policy revision in force when drained
  std::vector<impact_rule> rules; // ordered by rule id, only rules with flows > 0
  std::uint64_t overflow_flows = 0;
  std::uint64_t swap_dropped_flows = 0;
};

// Merges several workers' sets by rule id. Per name, `flows` sums the workers' counts and, for
// a worker whose sketch for the rule is full but lacks the name, that sketch's minimum count
// (the most the name can have had there), and `error` grows accordingly, so the merged
// [flows - error, flows] still holds the true count. Exact when every worker was exact.
class impact_merger {
 public:
  void add(const sketch_set& s) {
    overflow_ += s.overflow_flows;
    swap_dropped_ += s.swap_dropped_flows;
    for (std::uint32_t t = 0; t < s.touched_n; ++t) {
      const sketch_slot& slot = s.slots[s.touched[t]];
      if (slot.sketch.flows == 0) continue;
      accum& a = rules_[std::string(slot.rule_id())];
      a.directive = std::string(slot.directive_id());
      a.flows += slot.sketch.flows;
      a.unnamed += slot.sketch.unnamed;
      a.parts.push_back(slot.sketch);
    }
  }

  [[nodiscard]] impact_window finish(std::int64_t start, std::int64_t end,
                                     std::uint64_t revision) const {
    impact_window w;
    w.window_start = start;
    w.window_end = end;
    w.revision = revision;
    w.overflow_flows = overflow_;
    w.swap_dropped_flows = swap_dropped_;
    for (const auto& [id, a] : rules_) {
      if (a.flows == 0) continue;
      impact_rule r{id, a.directive, a.flows, a.unnamed, {}};
      struct bounds {
        sketch_name name;
        std::uint64_t upper = 0;
        std::uint64_t lower = 0;
      };
      std::map<std::string, bounds> names;  // keyed by the exported form
      for (const rule_sketch& p : a.parts) {
        for (std::uint32_t i = 0; i < p.used; ++i) {
          bounds& b = names[p.entries[i].name.exported()];
          b.name = p.entries[i].name;
          b.upper += p.entries[i].count;
          b.lower += p.entries[i].count - p.entries[i].error;
        }
      }
      for (auto& [text, b] : names) {
        for (const rule_sketch& p : a.parts) {
          if (!p.full()) continue;
          const bool present = std::any_of(p.entries.begin(), p.entries.begin() + p.used,
                                           [&](const sketch_entry& e) { return e.name.same(b.name); });
          if (!present) b.upper += p.min_count();
        }
        r.names.push_back({text, b.upper, b.upper - b.lower});
      }
      std::sort(r.names.begin(), r.names.end(), [](const impact_name& x, const impact_name& y) {
        return x.flows != y.flows ? x.flows > y.flows : x.name < y.name;
      });
      if (r.names.size() > sketch_top_k) r.names.resize(sketch_top_k);
      w.rules.push_back(std::move(r));
    }
    return w;
  }

 private:
  struct accum {
    std::string directive;
    std::uint64_t flows = 0;
    std::uint64_t unnamed = 0;
    std::vector<rule_sketch> parts;
  };
  std::map<std::string, accum> rules_;
  std::uint64_t overflow_ = 0;
  std::uint64_t swap_dropped_ = 0;
};

// The controller's format (issue 8):
//   {"window_start": S, "window_end": E, "revision": R, "rules": [{"rule": ID, "directive": D,
//    "flows": F, "unnamed": U, "names": [{"name": N, "flows": n, "error": e}, ...],
//    "other": max(0, F - U - sum(n))}, ...]}
// Returns "" when no rule has flows (nothing to send). Never throws except bad_alloc (names are
// printable ASCII after normalisation; ids are dumped with invalid UTF-8 replaced).
[[nodiscard]] inline std::string impact_json(const impact_window& w) {
  if (w.rules.empty()) return {};
  nlohmann::json rules = nlohmann::json::array();
  for (const impact_rule& r : w.rules) {
    nlohmann::json names = nlohmann::json::array();
    std::uint64_t named = 0;
    for (const impact_name& n : r.names) {
      names.push_back({{"name", n.name}, {"flows", n.flows}, {"error", n.error}});
      named += n.flows;
    }
    const std::uint64_t accounted = r.unnamed + named;
    rules.push_back({{"rule", r.rule},
                     {"directive", r.directive},
                     {"flows", r.flows},
                     {"unnamed", r.unnamed},
                     {"names", std::move(names)},
                     {"other", r.flows > accounted ? r.flows - accounted : 0}});
  }
  nlohmann::json j;
  j["window_start"] = w.window_start;
  j["window_end"] = w.window_end;
  j["revision"] = w.revision;
  j["rules"] = std::move(rules);
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace sluice::engine
