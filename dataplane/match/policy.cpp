#include "dataplane/match/policy.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <bit>
#include <charconv>
#include <cstring>
#include <functional>
#include <iterator>
#include <map>
#include <stdexcept>
#include <unordered_set>

#include "dataplane/match/domain_name.hpp"

namespace sluice::match {

const char* to_string(compile_error_code c) noexcept {
  switch (c) {
#define SLUICE_X(name, str)      \
  case compile_error_code::name: \
    return str;
    SLUICE_COMPILE_ERRORS(SLUICE_X)
#undef SLUICE_X
    case compile_error_code::count:
      break;
  }
  return "?";
}

// ---- canonical serialization + SHA-256 ---------------------------------------------------------

namespace {

// Feeds the canonical serialization to SHA-256 through a small buffer: a million-name policy
// serializes to tens of MiB that never need to exist all at once.
class sha256_stream {
 public:
  sha256_stream() : ctx_(EVP_MD_CTX_new(), &EVP_MD_CTX_free) {
    if (!ctx_ || EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr) != 1) {
      throw std::runtime_error("EVP_DigestInit(SHA-256) failed");
    }
    buf_.reserve(buffer_bytes);
  }
  void append(std::string_view s) {
    if (buf_.size() + s.size() > buffer_bytes) flush();
    if (s.size() > buffer_bytes) {
      update(s);
    } else {
      buf_.append(s);
    }
  }
  void append_number(std::uint64_t v) {
    char digits[24];
    const auto end = std::to_chars(digits, digits + sizeof digits, v).ptr;
    append(std::string_view(digits, static_cast<std::size_t>(end - digits)));
  }
  // Lowercase hex of the digest; the stream is finished after this.
  std::string hex() {
    flush();
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (EVP_DigestFinal_ex(ctx_.get(), md, &md_len) != 1) {
      throw std::runtime_error("EVP_DigestFinal(SHA-256) failed");
    }
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    out.reserve(md_len * 2);
    for (unsigned i = 0; i < md_len; ++i) {
      out.push_back(digits[md[i] >> 4]);
      out.push_back(digits[md[i] & 15]);
    }
    return out;
  }

 private:
  static constexpr std::size_t buffer_bytes = 64 * 1024;
  void update(std::string_view s) {
    if (EVP_DigestUpdate(ctx_.get(), s.data(), s.size()) != 1) {
      throw std::runtime_error("EVP_DigestUpdate(SHA-256) failed");
    }
  }
  void flush() {
    if (!buf_.empty()) update(buf_);
    buf_.clear();
  }
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx_;
  std::string buf_;
};

// key=<length>:<value>\n
void put(sha256_stream& out, std::string_view key, std::string_view value) {
  out.append(key);
  out.append("=");
  out.append_number(value.size());
  out.append(":");
  out.append(value);
  out.append("\n");
}
void put(sha256_stream& out, std::string_view key, std::uint64_t value) {
  char digits[24];
  const auto end = std::to_chars(digits, digits + sizeof digits, value).ptr;
  put(out, key, std::string_view(digits, static_cast<std::size_t>(end - digits)));
}
void put_opt(sha256_stream& out, std::string_view key, const std::optional<std::int64_t>& v) {
  put(out, key, v ? std::to_string(*v) : std::string("-"));
}

}  // namespace

std::string ruleset_sha256(const policy_spec& spec) {
  sha256_stream s;
  s.append("sluice-ruleset-v1\n");
  put(s, "rules", spec.rules.size());
  for (const auto& r : spec.rules) {
    put(s, "id", r.id);
    put(s, "directive", r.directive);
    put(s, "action", to_string(r.act));
    put(s, "legal_basis", r.legal_basis);
    put(s, "rate_bps", r.throttle.rate_bps);
    put(s, "burst_bytes", r.throttle.burst_bytes);
    put_opt(s, "not_before", r.not_before);
    put_opt(s, "not_after", r.not_after);
    put(s, "prefixes", r.prefixes.size());
    for (const auto& p : r.prefixes) put(s, "p", p);
    put(s, "domains", r.domains.size());
    for (const auto& d : r.domains) put(s, "d", d);
  }
  return s.hex();
}

// ---- matching -----------------------------------------------------------------------------------

std::optional<std::uint32_t> compiled_policy::match_ip(
    const packet::ip_address& addr) const noexcept {
  if (addr.version == 4) return prefixes_.lookup_v4(addr.v4());
  if (addr.version == 6) return prefixes_.lookup_v6(addr.bytes.data());
  return std::nullopt;
}

std::optional<std::uint32_t> compiled_policy::match_name(std::string_view name) const noexcept {
  const domain_match m = domains_.find(name);
  if (!m.found) return std::nullopt;
  return m.value;
}

namespace {
// Higher wins. Blocking actions outrank throttle; see README.md for the order within a tier.
constexpr int strength(action a) noexcept {
  switch (a) {
    case action::drop:
      return 4;
    case action::reset:
      return 3;
    case action::notice:
      return 2;
    case action::throttle:
      return 1;
    default:
      return 0;
  }
}
}  // namespace

bool compiled_policy::stronger(std::uint32_t a, std::uint32_t b) const noexcept {
  const compiled_rule& ra = rules_[a];
  const compiled_rule& rb = rules_[b];
  if (strength(ra.act) != strength(rb.act)) return strength(ra.act) > strength(rb.act);
  if (ra.act == action::throttle && ra.rate_bps != rb.rate_bps) return ra.rate_bps < rb.rate_bps;
  return a < b;  // earlier rule in the snapshot wins a tie
}

verdict compiled_policy::decide(const match_group& g, std::int64_t now) const noexcept {
  verdict v;
  for (std::uint32_t r : g.rules) {
    if (!rule_active(r, now)) continue;
    const action a = rules_[r].act;
    if (a == action::monitor) {
      ++v.monitors;
    } else if (is_enforcing(a) && (v.rule == verdict::no_rule || stronger(r, v.rule))) {
      v.rule = r;
      v.act = a;
    }
  }
  return v;
}

verdict compiled_policy::decide(std::optional<std::uint32_t> ip_group,
                                std::optional<std::uint32_t> name_group,
                                std::int64_t now) const noexcept {
  if (!ip_group && !name_group) return {};
  if (!ip_group) return decide(groups_[*name_group], now);
  if (!name_group || *ip_group == *name_group) return decide(groups_[*ip_group], now);
  // A rule listing both the address and the name must count once: merge the two sorted lists.
  verdict v;
  const auto a = groups_[*ip_group].rules;
  const auto b = groups_[*name_group].rules;
  std::size_t i = 0, j = 0;
  while (i < a.size() || j < b.size()) {
    std::uint32_t r;
    if (j == b.size() || (i < a.size() && a[i] < b[j])) {
      r = a[i++];
    } else if (i == a.size() || b[j] < a[i]) {
      r = b[j++];
    } else {
      r = a[i++];
      ++j;
    }
    if (!rule_active(r, now)) continue;
    const action act = rules_[r].act;
    if (act == action::monitor) {
      ++v.monitors;
    } else if (is_enforcing(act) && (v.rule == verdict::no_rule || stronger(r, v.rule))) {
      v.rule = r;
      v.act = act;
    }
  }
  return v;
}

// ---- compile ------------------------------------------------------------------------------------

struct compile_access {
  static compiled_policy* make() { return new compiled_policy(); }
  static compiled_policy& mut(compiled_policy& p) { return p; }
  static auto& rules(compiled_policy& p) { return p.rules_; }
  static auto& group_rules(compiled_policy& p) { return p.group_rules_; }
  static auto& groups(compiled_policy& p) { return p.groups_; }
  static auto& prefixes(compiled_policy& p) { return p.prefixes_; }
  static auto& domains(compiled_policy& p) { return p.domains_; }
  static void header(compiled_policy& p, const policy_spec& s, std::string sha) {
    p.revision_ = s.revision;
    p.generated_at_ = s.generated_at;
    p.sha256_ = std::move(sha);
  }
};

namespace {

using rule_list = std::vector<std::uint32_t>;  // ascending, unique

// dst = dst ∪ src; `scratch` is reused between calls so merging does not allocate per name.
void merge_into(rule_list& dst, std::span<const std::uint32_t> src, rule_list& scratch) {
  scratch.clear();
  std::set_union(dst.begin(), dst.end(), src.begin(), src.end(), std::back_inserter(scratch));
  dst.swap(scratch);
}

compile_result fail(compile_error_code code, std::size_t index, const rule_spec& r,
                    std::string item, std::string detail) {
  compile_result res;
  res.error.code = code;
  res.error.rule_index = index;
  res.error.rule_id = r.id;
  res.error.item = item;
  res.error.message = "rule '" + r.id + "' (#" + std::to_string(index) + "): " + detail;
  if (!item.empty()) res.error.message += ": '" + item + "'";
  return res;
}

// Interns rule lists as group ids, numbered in first-seen order. A million names mostly carry
// one rule each: those are answered from a table indexed by rule, not the ordered map.
class group_table {
 public:
  explicit group_table(std::size_t rule_count) : single_(rule_count, none) {}

  std::uint32_t intern(std::span<const std::uint32_t> rules) {
    if (rules.size() == 1 && single_[rules[0]] != none) return single_[rules[0]];
    auto it = ids_.find(rules);
    if (it == ids_.end()) {
      lists_.emplace_back(rules.begin(), rules.end());
      it = ids_.emplace(lists_.back(), static_cast<std::uint32_t>(lists_.size() - 1)).first;
    }
    if (rules.size() == 1) single_[rules[0]] = it->second;
    return it->second;
  }
  const std::vector<rule_list>& lists() const { return lists_; }

 private:
  static constexpr std::uint32_t none = UINT32_MAX;
  struct list_less {
    using is_transparent = void;
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const {
      return std::lexicographical_compare(a.begin(), a.end(), b.begin(), b.end());
    }
  };
  std::map<rule_list, std::uint32_t, list_less> ids_;
  std::vector<rule_list> lists_;
  std::vector<std::uint32_t> single_;  // rule -> id of the list {rule}, once interned
};

// One name as one rule wrote it, normalised into the name arena. The first occurrence of each
// distinct (name, kind) is its *key* and also carries the name's own rules: almost every name
// comes from one rule, kept inline in `rule`; a name given by several rules indexes a list of
// all of them (`extra`), so the common case costs no allocation.
struct name_item {
  static constexpr std::uint32_t no_extra = UINT32_MAX;
  std::uint64_t hash;
  std::size_t offset;  // into the name arena
  std::uint32_t rule;  // the rule that wrote it; for a key, the first (lowest) such rule
  std::uint32_t extra = no_extra;
  std::uint8_t length;
  bool pattern;
};

std::uint64_t hash_name(std::string_view s) noexcept { return std::hash<std::string_view>{}(s); }

// Open-addressing index of the keys of one kind, sized once for every name of that kind
// (linear probing, load <= 1/2). A slot holds the top 32 bits of the hash beside item index + 1
// (0 = empty), so a probe only touches the item, and compares names, when those bits agree.
class key_index {
 public:
  explicit key_index(std::size_t names)
      : slots_(std::bit_ceil(std::max<std::size_t>(16, 2 * names)), 0), mask_(slots_.size() - 1) {}

  void prefetch(std::uint64_t hash) const noexcept { __builtin_prefetch(&slots_[hash & mask_]); }

  // The index of the key equal to items[i], or i itself (now a key) when there is none. At most
  // `names` keys may be added.
  std::uint32_t find_or_add(std::uint32_t i, const std::vector<name_item>& items,
                            const char* arena) {
    const name_item& item = items[i];
    std::uint64_t& slot =
        slots_[probe(item.hash, std::string_view(arena + item.offset, item.length), items, arena)];
    if (slot != 0) return static_cast<std::uint32_t>(slot) - 1;
    slot = tag(item.hash) | (std::uint64_t{i} + 1);
    return i;
  }
  // The index of the key equal to (name, hash), or nullopt.
  std::optional<std::uint32_t> find(std::uint64_t hash, std::string_view name,
                                    const std::vector<name_item>& items, const char* arena) const {
    const std::uint64_t slot = slots_[probe(hash, name, items, arena)];
    if (slot == 0) return std::nullopt;
    return static_cast<std::uint32_t>(slot) - 1;
  }

 private:
  static std::uint64_t tag(std::uint64_t hash) noexcept { return hash & 0xffffffff00000000ull; }

  std::size_t probe(std::uint64_t hash, std::string_view name, const std::vector<name_item>& items,
                    const char* arena) const {
    for (std::size_t i = hash & mask_;; i = (i + 1) & mask_) {
      const std::uint64_t s = slots_[i];
      if (s == 0) return i;
      if ((s & 0xffffffff00000000ull) != tag(hash)) continue;
      const name_item& k = items[static_cast<std::uint32_t>(s) - 1];
      if (k.hash == hash && k.length == name.size() &&
          std::memcmp(arena + k.offset, name.data(), name.size()) == 0) {
        return i;
      }
    }
  }

  std::vector<std::uint64_t> slots_;
  std::size_t mask_;
};

// Proper suffixes of a name at label boundaries, longest first ("a.b.c" -> "b.c", "c"), with
// their label counts.
template <typename F>
void for_each_parent(std::string_view name, F&& f) {
  std::size_t labels = 1 + static_cast<std::size_t>(std::count(name.begin(), name.end(), '.'));
  for (std::size_t dot = name.find('.'); dot != std::string_view::npos;
       dot = name.find('.', dot + 1)) {
    f(name.substr(dot + 1), --labels);
  }
}

}  // namespace

compile_result compile_policy(const policy_spec& spec) {
  // -- validate everything first; nothing is built from an invalid spec.
  if (spec.rules.size() > prefix_set::max_value) {
    compile_result res;
    res.error.code = compile_error_code::too_many_rules;
    res.error.message = "too many rules: " + std::to_string(spec.rules.size());
    return res;
  }
  std::unordered_set<std::string> ids;
  std::map<ip_prefix, rule_list> prefix_rules;  // own rules per prefix

  // Names, as each rule gives them: normalised back to back in `arena`, in rule order. Kept
  // flat (no string or node per name) because a policy may carry a million names.
  std::string arena;
  std::vector<name_item> items;  // one per name written, in rule order
  std::size_t pattern_items = 0;
  {
    std::size_t names = 0, bytes = 0;
    for (const auto& r : spec.rules) {
      names += r.domains.size();
      for (const auto& d : r.domains) bytes += d.size();
    }
    arena.reserve(bytes);
    items.reserve(names);
  }

  for (std::size_t i = 0; i < spec.rules.size(); ++i) {
    const rule_spec& r = spec.rules[i];
    const auto index = static_cast<std::uint32_t>(i);
    if (r.id.empty()) return fail(compile_error_code::empty_rule_id, i, r, "", "empty rule id");
    if (!ids.insert(r.id).second) {
      return fail(compile_error_code::duplicate_rule_id, i, r, r.id, "duplicate rule id");
    }
    if (static_cast<unsigned>(r.act) >= static_cast<unsigned>(action::count)) {
      return fail(compile_error_code::bad_action, i, r, "", "unknown action");
    }
    if (r.act == action::notice && r.legal_basis.empty()) {
      return fail(compile_error_code::missing_legal_basis, i, r, "legal_basis",
                  "notice rules must name their legal basis");
    }
    if (r.act == action::throttle && (r.throttle.rate_bps == 0 || r.throttle.burst_bytes == 0)) {
      return fail(compile_error_code::bad_throttle, i, r, "throttle",
                  "throttle needs rate_bps > 0 and burst_bytes > 0");
    }
    if (r.not_before && r.not_after && *r.not_after <= *r.not_before) {
      return fail(compile_error_code::bad_window, i, r, "not_after",
                  "not_after must be later than not_before");
    }
    if (r.prefixes.empty() && r.domains.empty()) {
      return fail(compile_error_code::no_targets, i, r, "", "rule has no prefixes and no domains");
    }
    for (const auto& text : r.prefixes) {
      const prefix_result p = parse_prefix(text);
      if (!p) return fail(compile_error_code::bad_prefix, i, r, text, to_string(p.error));
      auto& list = prefix_rules[p.prefix];
      if (list.empty() || list.back() != index) list.push_back(index);
    }
    for (const auto& text : r.domains) {
      const rule_name n = normalize_rule_name(text);
      if (!n) return fail(compile_error_code::bad_domain, i, r, text, to_string(n.error));
      items.push_back({hash_name(n.name), arena.size(), index, name_item::no_extra,
                       static_cast<std::uint8_t>(n.name.size()), n.subdomain});
      arena.append(n.name);
      pattern_items += n.subdomain;
    }
  }

  // -- distinct names and their own rules. A name's key is its first item; `keys` lists them in
  // first-seen order.
  if (items.size() >= UINT32_MAX) throw std::bad_alloc();  // item indices are 32-bit
  std::vector<std::uint32_t> keys;
  keys.reserve(items.size());
  std::vector<rule_list> extra;              // lists of names given by more than one rule
  std::uint64_t pattern_labels[2] = {0, 0};  // bit n: some pattern base has n labels
  key_index exact_index(items.size() - pattern_items);
  key_index pattern_index(pattern_items);
  {
    // A big index misses the cache on nearly every probe: prefetch a few items ahead so the
    // misses overlap.
    constexpr std::size_t ahead = 16;
    for (std::size_t i = 0; i < items.size(); ++i) {
      if (i + ahead < items.size()) {
        const name_item& next = items[i + ahead];
        (next.pattern ? pattern_index : exact_index).prefetch(next.hash);
      }
      const name_item& item = items[i];
      const auto self = static_cast<std::uint32_t>(i);
      const std::uint32_t k =
          (item.pattern ? pattern_index : exact_index).find_or_add(self, items, arena.data());
      if (k == self) {
        keys.push_back(self);
        if (item.pattern) {
          const std::string_view name(arena.data() + item.offset, item.length);
          const auto labels = 1 + static_cast<unsigned>(std::count(name.begin(), name.end(), '.'));
          if (labels < 128) pattern_labels[labels >> 6] |= std::uint64_t{1} << (labels & 63);
        }
        continue;
      }
      // Items are in rule order, so a name's rules arrive ascending; a repeat within one rule
      // is the last one seen.
      name_item& key = items[k];
      if (key.extra == name_item::no_extra) {
        if (key.rule != item.rule) {
          key.extra = static_cast<std::uint32_t>(extra.size());
          extra.push_back({key.rule, item.rule});
        }
      } else if (extra[key.extra].back() != item.rule) {
        extra[key.extra].push_back(item.rule);
      }
    }
  }

  // -- groups.
  group_table groups(spec.rules.size());
  std::vector<prefix_rule> prefix_entries;
  prefix_entries.reserve(prefix_rules.size());
  rule_list scratch;
  {
    // The map orders by (address, version, length); per family that is a pre-order walk of the
    // prefix tree, so a stack of open ancestors gives every covering prefix of each entry.
    for (int version : {4, 6}) {
      std::vector<std::pair<ip_prefix, rule_list>> stack;
      for (const auto& [prefix, own] : prefix_rules) {
        if (prefix.version != version) continue;
        while (!stack.empty() && !stack.back().first.covers(prefix)) stack.pop_back();
        rule_list full = own;
        if (!stack.empty()) merge_into(full, stack.back().second, scratch);
        prefix_entries.push_back({prefix, groups.intern(full)});
        stack.emplace_back(prefix, std::move(full));
      }
    }
  }
  std::vector<domain_rule_ref> domain_entries;
  domain_entries.reserve(keys.size());
  {
    auto own_rules = [&](const name_item& k) {
      return k.extra == name_item::no_extra ? std::span<const std::uint32_t>(&k.rule, 1)
                                            : std::span<const std::uint32_t>(extra[k.extra]);
    };
    auto name_of = [&](const name_item& k) {
      return std::string_view(arena.data() + k.offset, k.length);
    };
    // An exact "a.b.c" is also under "*.b.c" and "*.c"; a pattern "*.b.c" is also under "*.c".
    // Only suffixes with a label count some pattern has are looked up, a block of keys at a
    // time so the lookups can be prefetched.
    struct parent_probe {
      std::uint64_t hash;
      std::uint32_t key;    // position in the block
      std::uint32_t found;  // the pattern's key item, or none
      std::uint16_t start;  // of the suffix in the name
    };
    constexpr std::uint32_t none = UINT32_MAX;
    constexpr std::size_t block = 1024, ahead = 16;
    std::vector<parent_probe> probes;
    rule_list full;
    for (std::size_t first = 0; first < keys.size(); first += block) {
      const std::size_t last = std::min(keys.size(), first + block);
      probes.clear();
      if (pattern_items != 0) {
        for (std::size_t j = first; j < last; ++j) {
          const std::string_view name = name_of(items[keys[j]]);
          for_each_parent(name, [&](std::string_view parent, std::size_t labels) {
            if (labels >= 128 || ((pattern_labels[labels >> 6] >> (labels & 63)) & 1u) == 0) {
              return;
            }
            probes.push_back({hash_name(parent), static_cast<std::uint32_t>(j - first), none,
                              static_cast<std::uint16_t>(name.size() - parent.size())});
          });
        }
        for (std::size_t q = 0; q < probes.size(); ++q) {
          if (q + ahead < probes.size()) pattern_index.prefetch(probes[q + ahead].hash);
          parent_probe& pr = probes[q];
          const std::string_view parent = name_of(items[keys[first + pr.key]]).substr(pr.start);
          pr.found = pattern_index.find(pr.hash, parent, items, arena.data()).value_or(none);
        }
      }
      std::size_t q = 0;
      for (std::size_t j = first; j < last; ++j) {
        const name_item& k = items[keys[j]];
        const auto own = own_rules(k);
        std::uint32_t group;
        if (q == probes.size() || probes[q].key != j - first) {
          group = groups.intern(own);
        } else {
          full.assign(own.begin(), own.end());
          for (; q < probes.size() && probes[q].key == j - first; ++q) {
            if (probes[q].found == none) continue;
            merge_into(full, own_rules(items[probes[q].found]), scratch);
          }
          group = groups.intern(full);
        }
        domain_entries.push_back({name_of(k), k.pattern, group});
      }
    }
  }

  // -- build.
  std::unique_ptr<compiled_policy> policy(compile_access::make());
  compiled_policy& p = *policy;
  compile_access::header(p, spec, ruleset_sha256(spec));
  auto& rules = compile_access::rules(p);
  rules.reserve(spec.rules.size());
  for (const auto& r : spec.rules) {
    compiled_rule c;
    c.id = r.id;
    c.directive = r.directive;
    c.act = r.act;
    c.legal_basis = r.legal_basis;
    if (r.act == action::throttle) {
      c.rate_bps = r.throttle.rate_bps;
      c.burst_bytes = r.throttle.burst_bytes;
    }
    if (r.not_before) c.not_before = *r.not_before;
    if (r.not_after) c.not_after = *r.not_after;
    rules.push_back(std::move(c));
  }
  auto& flat = compile_access::group_rules(p);
  std::size_t total = 0;
  for (const auto& l : groups.lists()) total += l.size();
  flat.reserve(total);  // spans below point into it: no reallocation after this
  auto& group_spans = compile_access::groups(p);
  for (const auto& l : groups.lists()) {
    const std::size_t start = flat.size();
    flat.insert(flat.end(), l.begin(), l.end());
    group_spans.push_back({std::span<const std::uint32_t>(flat.data() + start, l.size())});
  }
  try {
    compile_access::prefixes(p) = prefix_set(prefix_entries);
    compile_access::domains(p) = domain_set(domain_entries);
  } catch (const std::exception& e) {
    compile_result res;
    res.error.code = compile_error_code::build_failed;
    res.error.message = e.what();
    return res;
  }
  compile_result res;
  res.policy = std::move(policy);
  return res;
}

}  // namespace sluice::match
