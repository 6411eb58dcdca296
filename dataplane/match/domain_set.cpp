#include "dataplane/match/domain_set.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>

static_assert(std::endian::native == std::endian::little, "hash_label assumes little-endian");
#include <new>
#include <stdexcept>
#include <vector>

#include <sys/mman.h>

#include "dataplane/match/domain_name.hpp"

namespace sluice::match {

namespace {

constexpr std::array<std::uint8_t, 256> make_fold_table() {
  std::array<std::uint8_t, 256> t{};
  for (unsigned i = 0; i < 256; ++i) {
    t[i] = static_cast<std::uint8_t>(i >= 'A' && i <= 'Z' ? i + ('a' - 'A') : i);
  }
  return t;
}
constexpr std::array<std::uint8_t, 256> fold = make_fold_table();

// Hashing: each label is hashed on its own, 8 folded bytes per multiply (SWAR lowercase), and
// label hashes are chained right to left, so the running value after k labels is the hash of
// the suffix made of the last k labels: one pass over the name yields the hash of every
// label-boundary suffix. The builder hashes rule names with the same functions. The finaliser
// (murmur3 fmix64) spreads the bits before they index the table.
constexpr std::uint64_t k_label = 0x9e3779b97f4a7c15ull;
constexpr std::uint64_t k_chain = 0xd6e8feb86659fd93ull;
constexpr std::uint64_t suffix_seed = 0x243f6a8885a308d3ull;

// ASCII 'A'..'Z' -> 'a'..'z' in all 8 bytes at once; other bytes (including >= 0x80) unchanged.
inline std::uint64_t fold8(std::uint64_t x) noexcept {
  const std::uint64_t heptets = x & 0x7f7f7f7f7f7f7f7full;
  const std::uint64_t above_z = heptets + 0x2525252525252525ull;  // bit 7 set if > 'Z'
  const std::uint64_t from_a = heptets + 0x3f3f3f3f3f3f3f3full;   // bit 7 set if >= 'A'
  const std::uint64_t upper = ~x & (from_a ^ above_z) & 0x8080808080808080ull;
  return x | (upper >> 2);
}

// Hashes the label base[start, end). Reads only bytes of base[0, end): a short tail is taken
// from the 8 bytes that end at `end` (they lie inside the name) and shifted down, which avoids a
// variable-length copy and its store-forwarding stall.
inline std::uint64_t hash_label(const char* base, std::size_t start, std::size_t end) noexcept {
  const std::size_t n = end - start;
  std::uint64_t h = k_label ^ n;
  std::size_t i = start;
  for (; i + 8 <= end; i += 8) {
    std::uint64_t w;
    std::memcpy(&w, base + i, 8);
    h = (h ^ fold8(w)) * k_label;
    h ^= h >> 32;
  }
  if (i < end) {
    const std::size_t rem = end - i;  // 1..7
    std::uint64_t w = 0;
    if (end >= 8) {
      std::memcpy(&w, base + end - 8, 8);
      w >>= 8 * (8 - rem);  // little-endian: drop the bytes before the tail
    } else {
      for (std::size_t j = 0; j < rem; ++j) {
        w |= std::uint64_t{static_cast<unsigned char>(base[i + j])} << (8 * j);
      }
    }
    h = (h ^ fold8(w)) * k_label;
    h ^= h >> 32;
  }
  return h;
}

inline std::uint64_t extend(std::uint64_t suffix, std::uint64_t label) noexcept {
  return (std::rotl(suffix, 27) ^ label) * k_chain;
}

inline std::uint64_t finalize(std::uint64_t h) noexcept {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return h;
}

// Hash of a normalised rule name (no empty labels).
std::uint64_t hash_name(std::string_view s) noexcept {
  std::uint64_t h = suffix_seed;
  std::size_t end = s.size();
  for (std::size_t i = s.size(); i-- > 0;) {
    if (s[i] == '.') {
      h = extend(h, hash_label(s.data(), i + 1, end));
      end = i;
    }
  }
  return finalize(extend(h, hash_label(s.data(), 0, end)));
}

// `stored` is already folded. Eight bytes per compare; a tail re-reads the last eight bytes of
// both names (they lie inside them) rather than looping byte by byte.
inline bool equal_folded(const char* stored, const char* wire, std::size_t n) noexcept {
  if (n >= 8) {
    std::uint64_t a, b;
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      std::memcpy(&a, stored + i, 8);
      std::memcpy(&b, wire + i, 8);
      if (a != fold8(b)) return false;
    }
    if (i == n) return true;
    std::memcpy(&a, stored + n - 8, 8);
    std::memcpy(&b, wire + n - 8, 8);
    return a == fold8(b);
  }
  for (std::size_t i = 0; i < n; ++i) {
    if (static_cast<unsigned char>(stored[i]) != fold[static_cast<unsigned char>(wire[i])]) {
      return false;
    }
  }
  return true;
}

// The 16-bit tag kept for every slot in a dense array of its own: 0 marks an empty slot, so a
// probe walks the tags (4 MiB at a million rules, which stay in the last-level cache) and
// touches a slot only when its tag matches.
inline std::uint16_t tag_of(std::uint64_t hash) noexcept {
  const auto t = static_cast<std::uint16_t>(hash >> 48);
  return t == 0 ? 1 : t;
}

inline bool test_bit(const std::uint64_t (&bits)[2], unsigned n) noexcept {
  return n < 128 && ((bits[n >> 6] >> (n & 63)) & 1u) != 0;
}
inline void set_bit(std::uint64_t (&bits)[2], unsigned n) noexcept {
  if (n < 128) bits[n >> 6] |= std::uint64_t{1} << (n & 63);
}

}  // namespace

namespace detail {

namespace {
constexpr std::size_t huge_page = std::size_t{2} << 20;
}

table_memory::table_memory(std::size_t bytes) {
  if (bytes == 0) return;
  if (bytes < huge_page) {  // small sets: plain pages, no 2 MiB reservation
    const std::size_t rounded = (bytes + 4095) & ~std::size_t{4095};
    void* p = mmap(nullptr, rounded, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    data_ = p;
    bytes_ = rounded;
    return;
  }
  const std::size_t rounded = (bytes + huge_page - 1) & ~(huge_page - 1);
  const std::size_t mapped = rounded + huge_page;  // room to align the start
  void* p = mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  const auto base = reinterpret_cast<std::uintptr_t>(p);
  const std::uintptr_t aligned = (base + huge_page - 1) & ~(std::uintptr_t{huge_page} - 1);
  if (aligned > base) munmap(p, aligned - base);
  const std::uintptr_t tail = aligned + rounded;
  if (base + mapped > tail) munmap(reinterpret_cast<void*>(tail), base + mapped - tail);
  data_ = reinterpret_cast<void*>(aligned);
  bytes_ = rounded;
  (void)madvise(data_, bytes_, MADV_HUGEPAGE);  // a hint: fine if THP is off
}

table_memory::~table_memory() {
  if (data_ != nullptr) munmap(data_, bytes_);
}

table_memory::table_memory(table_memory&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}

table_memory& table_memory::operator=(table_memory&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) munmap(data_, bytes_);
    data_ = std::exchange(other.data_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

}  // namespace detail

domain_set::domain_set(std::span<const domain_rule> rules, const combine_fn& combine) {
  build(rules, combine);
}

domain_set::domain_set(std::span<const domain_rule_ref> rules, const combine_fn& combine) {
  build(rules, combine);
}

template <typename Rule>
void domain_set::build(std::span<const Rule> rules, const combine_fn& combine) {
  if (rules.empty()) return;
  const std::size_t capacity = std::bit_ceil(std::max<std::size_t>(16, rules.size() * 2));
  std::size_t arena_bytes = 0;
  for (const auto& r : rules) {
    const std::string_view name = r.name;
    if (name.empty() || name.size() > max_name_length) {
      throw std::invalid_argument("domain_set: bad name length: '" + std::string(name) + "'");
    }
    arena_bytes += name.size();
  }
  if (arena_bytes > UINT32_MAX) throw std::invalid_argument("domain_set: names exceed 4 GiB");
  detail::table_memory slot_memory(capacity * sizeof(slot));
  detail::table_memory tag_memory(capacity * sizeof(std::uint16_t));
  detail::table_memory arena_memory(arena_bytes);
  slot* slots = static_cast<slot*>(slot_memory.data());  // zero-filled: every slot empty
  auto* tags = static_cast<std::uint16_t*>(tag_memory.data());
  char* arena = static_cast<char*>(arena_memory.data());
  std::size_t arena_size = 0;
  const std::uint64_t mask = capacity - 1;
  std::size_t entries = 0;

  // Hash everything first, then insert in input order while prefetching the home slot of a
  // rule a little ahead: a large table misses the cache on nearly every insert, and this lets
  // those misses overlap. The table is the same as inserting one by one.
  std::vector<std::uint64_t> hashes(rules.size());
  for (std::size_t i = 0; i < rules.size(); ++i) hashes[i] = hash_name(rules[i].name);
  constexpr std::size_t ahead = 16;

  for (std::size_t i = 0; i < rules.size(); ++i) {
    if (i + ahead < rules.size()) __builtin_prefetch(&slots[hashes[i + ahead] & mask], 1);
    const Rule& r = rules[i];
    const std::string_view name = r.name;
    const std::uint8_t want = r.subdomain ? has_pattern : has_exact;
    const std::uint64_t h = hashes[i];
    std::size_t idx = h & mask;
    while (true) {
      slot& s = slots[idx];
      if (s.flags == 0) {
        s.hash = h;
        tags[idx] = tag_of(h);
        s.offset = static_cast<std::uint32_t>(arena_size);
        s.length = static_cast<std::uint8_t>(name.size());
        s.labels = 1;
        for (char c : name) s.labels += c == '.';
        std::memcpy(arena + arena_size, name.data(), name.size());
        arena_size += name.size();
        ++entries;
        break;
      }
      if (s.hash == h && s.length == name.size() &&
          equal_folded(arena + s.offset, name.data(), name.size())) {
        break;
      }
      idx = (idx + 1) & mask;
    }
    slot& s = slots[idx];
    std::uint32_t& value = r.subdomain ? s.pattern_value : s.exact_value;
    if (s.flags & want) {
      if (!combine) {
        throw std::invalid_argument("domain_set: duplicate rule '" +
                                    std::string(r.subdomain ? "*." : "") + std::string(name) + "'");
      }
      value = combine(value, r.value);
    } else {
      s.flags |= want;
      value = r.value;
    }
    set_bit(r.subdomain ? pattern_labels_ : exact_labels_, s.labels);
  }
  slot_memory_ = std::move(slot_memory);
  tag_memory_ = std::move(tag_memory);
  arena_memory_ = std::move(arena_memory);
  slots_ = slots;
  tags_ = tags;
  arena_ = arena;
  capacity_ = capacity;
  arena_size_ = arena_size;
  mask_ = mask;
  entries_ = entries;
}

const domain_set::slot* domain_set::probe(std::uint64_t hash, const char* name, std::size_t length,
                                          std::uint8_t want) const noexcept {
  const std::uint16_t tag = tag_of(hash);
  std::size_t idx = hash & mask_;
  while (true) {
    const std::uint16_t t = tags_[idx];
    if (t == 0) return nullptr;
    if (t == tag) {
      const slot& s = slots_[idx];
      if (s.hash == hash && s.length == length && equal_folded(arena_ + s.offset, name, length)) {
        return (s.flags & want) ? &s : nullptr;  // names are unique in the table
      }
    }
    idx = (idx + 1) & mask_;
  }
}

// The candidates of one wire name, in the order they decide: the exact name first (when some
// exact rule has its label count), then each "*." base from the longest proper suffix down (when
// some pattern has its label count). Hashes are finalised. Returns false when the name can never
// match (empty, too long, an empty label) or has more than `cap` candidates.
bool domain_set::candidates(std::string_view wire_name, candidate* out, unsigned cap,
                            unsigned& count, bool& exact_first) const noexcept {
  count = 0;
  exact_first = false;
  std::size_t n = wire_name.size();
  if (n != 0 && wire_name[n - 1] == '.') --n;
  if (n == 0 || n > max_name_length) return false;
  const char* p = wire_name.data();

  // suffix_start[k] / suffix_hash[k]: the suffix made of the last k+1 labels.
  std::uint32_t suffix_start[128];
  std::uint64_t suffix_hash[128];
  unsigned labels = 0;
  std::uint64_t h = suffix_seed;
  std::size_t end = n;  // one past the current label
  // memrchr finds the dots with SIMD instead of a per-byte branch that mispredicts.
  while (const void* dot = memrchr(p, '.', end)) {
    const std::size_t i = static_cast<std::size_t>(static_cast<const char*>(dot) - p);
    if (i + 1 == end) return false;  // empty label: not a valid name
    h = extend(h, hash_label(p, i + 1, end));
    suffix_start[labels] = static_cast<std::uint32_t>(i + 1);
    suffix_hash[labels] = h;
    ++labels;
    end = i;
  }
  if (end == 0) return false;
  suffix_start[labels] = 0;
  suffix_hash[labels] = extend(h, hash_label(p, 0, end));
  ++labels;  // labels in the name (<= 127 because n <= 253)

  if (test_bit(exact_labels_, labels)) {
    out[count++] = {finalize(suffix_hash[labels - 1]), p, static_cast<std::uint32_t>(n)};
    exact_first = true;
  }
  for (unsigned k = labels - 1; k-- > 0;) {  // longest proper suffix first
    if (!test_bit(pattern_labels_, k + 1)) continue;
    if (count == cap) return false;
    const std::size_t start = suffix_start[k];
    out[count++] = {finalize(suffix_hash[k]), p + start, static_cast<std::uint32_t>(n - start)};
  }
  return true;
}

domain_match domain_set::find(std::string_view wire_name) const noexcept {
  if (entries_ == 0) return {};
  candidate c[128];
  unsigned count = 0;
  bool exact_first = false;
  if (!candidates(wire_name, c, 128, count, exact_first)) return {};
  // Prefetch every candidate's home slot first, so the cache misses of a large table overlap
  // instead of queueing one after another.
  for (unsigned i = 0; i < count; ++i) __builtin_prefetch(&tags_[c[i].hash & mask_]);
  for (unsigned i = 0; i < count; ++i) {
    const bool exact = exact_first && i == 0;
    if (const slot* s = probe(c[i].hash, c[i].name, c[i].length, exact ? has_exact : has_pattern)) {
      return exact ? domain_match{s->exact_value, domain_match_kind::exact, true}
                   : domain_match{s->pattern_value, domain_match_kind::subdomain, true};
    }
  }
  return {};
}

const domain_set::slot* domain_set::probe_tag(std::uint64_t hash) const noexcept {
  const std::uint16_t tag = tag_of(hash);
  std::size_t idx = hash & mask_;
  while (true) {
    const std::uint16_t t = tags_[idx];
    if (t == 0) return nullptr;
    if (t == tag) return &slots_[idx];
    idx = (idx + 1) & mask_;
  }
}

void domain_set::find_bulk(const std::string_view* names, domain_match* out,
                           std::size_t n) const noexcept {
  for (std::size_t done = 0; done < n; done += bulk_max) {
    const std::size_t m = std::min(n - done, bulk_max);
    find_bulk_chunk(names + done, out + done, m);
  }
}

// Four stages over the chunk, so that one name's cache misses overlap the others':
//  1. hash every name, prefetch each candidate's home tag;
//  2. walk each candidate's tags to the first that matches, prefetch that slot;
//  3. check the slot's full hash and length, prefetch the stored name;
//  4. compare the names, first candidate in decision order wins.
// Anything unusual (a tag or hash shared with another name, a name with more candidates than
// fit) takes find()'s path for that candidate or name, so the answers are find()'s.
void domain_set::find_bulk_chunk(const std::string_view* names, domain_match* out,
                                 std::size_t n) const noexcept {
  struct pending {
    candidate c[bulk_candidates];
    const slot* hit[bulk_candidates];
    std::uint8_t count;
    bool exact_first;
    bool alone;
  };
  pending q[bulk_max];
  for (std::size_t i = 0; i < n; ++i) {
    out[i] = {};
    pending& e = q[i];
    unsigned count = 0;
    e.alone = false;
    if (entries_ == 0 || !candidates(names[i], e.c, bulk_candidates, count, e.exact_first)) {
      // Either it cannot match or it has too many candidates: only the second needs find().
      e.alone = entries_ != 0 && count == bulk_candidates;
      count = 0;
    }
    e.count = static_cast<std::uint8_t>(count);
    for (unsigned k = 0; k < count; ++k) __builtin_prefetch(&tags_[e.c[k].hash & mask_]);
  }
  for (std::size_t i = 0; i < n; ++i) {
    pending& e = q[i];
    for (unsigned k = 0; k < e.count; ++k) {
      e.hit[k] = probe_tag(e.c[k].hash);
      if (e.hit[k] != nullptr) __builtin_prefetch(e.hit[k]);
    }
  }
  for (std::size_t i = 0; i < n; ++i) {
    pending& e = q[i];
    for (unsigned k = 0; k < e.count; ++k) {
      if (e.hit[k] != nullptr) __builtin_prefetch(arena_ + e.hit[k]->offset);
    }
  }
  for (std::size_t i = 0; i < n; ++i) {
    pending& e = q[i];
    if (e.alone) {
      out[i] = find(names[i]);
      continue;
    }
    for (unsigned k = 0; k < e.count; ++k) {
      if (e.hit[k] == nullptr) continue;
      const bool exact = e.exact_first && k == 0;
      const std::uint8_t want = exact ? has_exact : has_pattern;
      const slot* s = e.hit[k];
      if (s->hash != e.c[k].hash || s->length != e.c[k].length ||
          !equal_folded(arena_ + s->offset, e.c[k].name, e.c[k].length)) {
        // The first tag match was another name: walk on the way find() does.
        s = probe(e.c[k].hash, e.c[k].name, e.c[k].length, want);
        if (s == nullptr) continue;
      }
      if ((s->flags & want) == 0) continue;
      out[i] = exact ? domain_match{s->exact_value, domain_match_kind::exact, true}
                     : domain_match{s->pattern_value, domain_match_kind::subdomain, true};
      break;
    }
  }
}

}  // namespace sluice::match
