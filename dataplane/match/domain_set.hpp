#pragma once
// An immutable set of domain rules (exact names and "*." subdomain patterns), each carrying a
// uint32 value (the compiled policy stores a match-group id there).
//
// Lookup (`find`) is the hot path: no allocation, no exceptions, no logging, no globals; safe
// from any number of threads at once (the set is never modified after construction). The wire
// name is folded (ASCII lowercase, one trailing dot ignored) while it is hashed, never copied.
//
// Semantics: an exact rule for the name wins; otherwise the longest "*." pattern whose base is a
// proper suffix of the name at a label boundary. "t.me" never matches "at.me", "*.t.me" never
// matches "t.me" or "at.me". Wire names that are empty, longer than 253 characters (after the
// trailing dot) or contain an empty label are never found.
//
// Cost: one right-to-left pass over the name computes the hash of every label-boundary suffix;
// each is probed once in one open-addressing table (power-of-two capacity, load <= 0.5, the
// 64-bit hash stored beside the string so a miss never compares strings). A dense array of
// 16-bit tags beside the slots (2 bytes per slot, small enough to stay in the last-level cache)
// answers most misses without touching a slot. The number of probes is bounded by the label
// count of the name, not by the rule count. See README.md.

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sluice::match {

namespace detail {
// Zero-filled anonymous memory for the big read-only tables, aligned to 2 MiB and advised for
// transparent huge pages, so a lookup in a million-rule set does not also miss the TLB.
// Throws std::bad_alloc.
class table_memory {
 public:
  table_memory() = default;
  explicit table_memory(std::size_t bytes);
  ~table_memory();
  table_memory(table_memory&& other) noexcept;
  table_memory& operator=(table_memory&& other) noexcept;
  table_memory(const table_memory&) = delete;
  table_memory& operator=(const table_memory&) = delete;
  [[nodiscard]] void* data() const noexcept { return data_; }

 private:
  void* data_ = nullptr;
  std::size_t bytes_ = 0;
};
}  // namespace detail

struct domain_rule {
  std::string name;        // normalised (normalize_rule_name), without "*."
  bool subdomain = false;  // "*." pattern
  std::uint32_t value = 0;
};

// The same rule with the name borrowed (it must outlive the constructor call only): lets a
// builder holding a million names in one buffer feed the set without a string per name.
struct domain_rule_ref {
  std::string_view name;   // normalised (normalize_rule_name), without "*."
  bool subdomain = false;  // "*." pattern
  std::uint32_t value = 0;
};

enum class domain_match_kind : std::uint8_t { none, exact, subdomain };

struct domain_match {
  std::uint32_t value = 0;
  domain_match_kind kind = domain_match_kind::none;
  bool found = false;
};

class domain_set {
 public:
  // Decides the value of a (name, kind) given more than once: combine(existing, incoming).
  using combine_fn = std::function<std::uint32_t(std::uint32_t, std::uint32_t)>;

  domain_set() = default;  // empty: finds nothing

  // Builds from rules whose names are already normalised (the builder does not re-validate;
  // a non-normalised name simply never matches). A name given twice with the same kind is one
  // entry; without `combine` that throws std::invalid_argument. Throws std::invalid_argument for
  // names longer than 253, std::bad_alloc.
  explicit domain_set(std::span<const domain_rule> rules, const combine_fn& combine = {});
  // Same contract, names borrowed; copies every name into the set's own arena.
  explicit domain_set(std::span<const domain_rule_ref> rules, const combine_fn& combine = {});

  [[nodiscard]] domain_match find(std::string_view wire_name) const noexcept;

  // out[i] = find(names[i]) for i < n, with the cache misses of the names overlapped (stages
  // with software prefetch, bulk_max names at a time, as rte_hash_lookup_bulk does): in a table
  // larger than the caches this costs a fraction of n separate finds. Same thread-safety.
  static constexpr std::size_t bulk_max = 32;
  void find_bulk(const std::string_view* names, domain_match* out, std::size_t n) const noexcept;

  [[nodiscard]] std::size_t size() const noexcept { return entries_; }
  [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }
  [[nodiscard]] std::size_t memory_bytes() const noexcept {
    return capacity_ * (sizeof(slot) + sizeof(std::uint16_t)) + arena_size_;
  }

 private:
  enum : std::uint8_t { has_exact = 1, has_pattern = 2 };
  struct slot {
    std::uint64_t hash;     // finalised hash of the name; 0 with flags == 0 means empty
    std::uint32_t offset;   // into arena_
    std::uint8_t length;    // <= 253
    std::uint8_t flags;     // has_exact | has_pattern
    std::uint16_t labels;   // label count of the name
    std::uint32_t exact_value;
    std::uint32_t pattern_value;
  };
  static_assert(sizeof(slot) == 24);

  // One suffix of a wire name to probe: its finalised hash and its bytes within the name.
  struct candidate {
    std::uint64_t hash;
    const char* name;
    std::uint32_t length;
  };
  static constexpr unsigned bulk_candidates = 6;  // per name in find_bulk; more: find() alone

  template <typename Rule>
  void build(std::span<const Rule> rules, const combine_fn& combine);
  [[nodiscard]] const slot* probe(std::uint64_t hash, const char* name, std::size_t length,
                                  std::uint8_t want) const noexcept;
  // The first slot on the probe sequence whose tag is this hash's (nothing else compared).
  [[nodiscard]] const slot* probe_tag(std::uint64_t hash) const noexcept;
  bool candidates(std::string_view wire_name, candidate* out, unsigned cap, unsigned& count,
                  bool& exact_first) const noexcept;
  void find_bulk_chunk(const std::string_view* names, domain_match* out,
                       std::size_t n) const noexcept;

  detail::table_memory slot_memory_;
  detail::table_memory tag_memory_;
  detail::table_memory arena_memory_;
  const slot* slots_ = nullptr;          // capacity_ slots in slot_memory_
  const std::uint16_t* tags_ = nullptr;  // capacity_ tags in tag_memory_ (0: slot empty)
  const char* arena_ = nullptr;          // every name, back to back, in arena_memory_
  std::size_t capacity_ = 0;
  std::size_t arena_size_ = 0;
  std::uint64_t mask_ = 0;
  std::size_t entries_ = 0;
  // Bit n set when some exact rule / pattern base has n labels (names have at most 127 labels),
  // so lookups skip suffixes no rule can have.
  std::uint64_t exact_labels_[2] = {0, 0};
  std::uint64_t pattern_labels_[2] = {0, 0};
};

}  // namespace sluice::match
