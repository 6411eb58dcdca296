#pragma once
// The names a flow revealed, and which of them decides it.
//
// A flow may name itself more than once: a proxy's `CONNECT host:443` and then the TLS
// ClientHello inside the tunnel, or a DNS flow asking many names. The flow's verdict is the
// strongest over every name it revealed — a rule naming any of them stops it; a later, weaker
// name never downgrades it. The names are kept (as many as fit the flow's fixed slot) so a
// policy swap re-decides from all of them, not only the one that decided under the old policy.
//
// Pure: no allocation, no logging, no DPDK. The worker that owns the slot is its only user.

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string_view>

#include "dataplane/match/policy.hpp"

namespace sluice::engine {

// A group index of the compiled policy (address or name group) that is none.
inline constexpr std::uint32_t no_group = UINT32_MAX;
[[nodiscard]] inline std::optional<std::uint32_t> opt_group(std::uint32_t g) noexcept {
  return g == no_group ? std::nullopt : std::optional<std::uint32_t>(g);
}

// True when `a` should decide a flow over `b`, the verdict it already has from a name: `a`
// enforces, and `b` does not or `a`'s rule is stronger (drop > reset > notice > throttle, see
// dataplane/match/README.md). A tie keeps `b`, the earlier name.
[[nodiscard]] inline bool outranks(const match::compiled_policy& p, const match::verdict& a,
                                   const match::verdict& b) noexcept {
  return a.enforce() && (!b.enforce() || p.stronger(a.rule, b.rule));
}

// Which of a set of names decides a flow whose address matched `ip_group`.
struct name_pick {
  int index = -1;  // into the names given; -1: none matched a rule
  std::uint32_t group = no_group;
  match::verdict v;  // decide(ip_group, group): the flow's verdict
};

// Strongest of `names` (a range of string_view-convertibles) at `now`. The first name that
// matches an enforcing or monitor rule is taken, then replaced only by one that outranks it,
// so ties keep the earliest. With no matching name, v is the address's verdict alone.
template <typename Names>
[[nodiscard]] name_pick pick_strongest(const match::compiled_policy& p,
                                       std::optional<std::uint32_t> ip_group, const Names& names,
                                       std::int64_t now) noexcept {
  name_pick best;
  best.v = p.decide(ip_group, std::nullopt, now);
  int i = 0;
  for (const auto& n : names) {
    const auto g = p.match_name(std::string_view(n));
    if (g) {
      const match::verdict vi = p.decide(ip_group, g, now);
      const bool better =
          best.index < 0 ? (vi.enforce() || vi.monitors != 0) : outranks(p, vi, best.v);
      if (better) {
        best.index = i;
        best.group = *g;
        best.v = vi;
      }
    }
    ++i;
  }
  return best;
}

// A flow's names packed into its fixed slot as [length][bytes]...; the first one decides the
// flow. `used` (the flow entry's field) is how many bytes of the slot are filled, 0 = none.
class name_list {
 public:
  static constexpr std::size_t slot_bytes = 256;
  static constexpr std::size_t max_name = slot_bytes - 1;  // longer names are cut (never match)

  name_list(char* slot, std::uint16_t& used) noexcept : slot_(slot), used_(used) {}

  [[nodiscard]] bool empty() const noexcept { return used_ == 0; }
  [[nodiscard]] std::string_view first() const noexcept {
    return empty() ? std::string_view() : at(0);
  }

  // Iterates the names, deciding one first.
  class iterator {
   public:
    iterator(const name_list* l, std::size_t off) noexcept : l_(l), off_(off) {}
    std::string_view operator*() const noexcept { return l_->at(off_); }
    iterator& operator++() noexcept {
      off_ += 1 + static_cast<std::uint8_t>(l_->slot_[off_]);
      return *this;
    }
    bool operator!=(const iterator& o) const noexcept { return off_ != o.off_; }

   private:
    const name_list* l_;
    std::size_t off_;
  };
  [[nodiscard]] iterator begin() const noexcept { return {this, 0}; }
  [[nodiscard]] iterator end() const noexcept { return {this, used_}; }

  // The i-th name (i < size()).
  [[nodiscard]] std::string_view nth(std::size_t i) const noexcept {
    auto it = begin();
    for (; i != 0 && it != end(); --i) ++it;
    return *it;
  }

  [[nodiscard]] std::size_t size() const noexcept {
    std::size_t n = 0;
    for (auto it = begin(); it != end(); ++it) ++n;
    return n;
  }

  // Adds `name` (cut to max_name). `deciding`: it goes first (moved there if already held;
  // the others follow in their order while they fit). Otherwise it is appended when it fits
  // and is not held yet (exact bytes), else dropped.
  void add(std::string_view name, bool deciding) noexcept {
    if (name.size() > max_name) name = name.substr(0, max_name);
    const std::size_t held = find(name);
    if (!deciding) {
      if (held != npos || used_ + 1 + name.size() > slot_bytes) return;
      put(used_, name);
      used_ = static_cast<std::uint16_t>(used_ + 1 + name.size());
      return;
    }
    if (held == 0) return;
    std::array<char, slot_bytes> out;
    std::size_t n = 0;
    auto emit = [&](std::string_view s) {
      out[n] = static_cast<char>(s.size());
      std::memcpy(out.data() + n + 1, s.data(), s.size());
      n += 1 + s.size();
    };
    emit(name);
    for (auto it = begin(); it != end(); ++it) {
      const std::string_view s = *it;
      if (s == name || n + 1 + s.size() > slot_bytes) continue;
      emit(s);
    }
    std::memcpy(slot_, out.data(), n);
    used_ = static_cast<std::uint16_t>(n);
  }

  void clear() noexcept { used_ = 0; }

 private:
  static constexpr std::size_t npos = SIZE_MAX;

  [[nodiscard]] std::string_view at(std::size_t off) const noexcept {
    return {slot_ + off + 1, static_cast<std::uint8_t>(slot_[off])};
  }
  [[nodiscard]] std::size_t find(std::string_view name) const noexcept {
    for (std::size_t off = 0; off < used_; off += 1 + static_cast<std::uint8_t>(slot_[off])) {
      if (at(off) == name) return off;
    }
    return npos;
  }
  void put(std::size_t off, std::string_view s) noexcept {
    slot_[off] = static_cast<char>(s.size());
    std::memcpy(slot_ + off + 1, s.data(), s.size());
  }

  char* slot_;
  std::uint16_t& used_;
};

// What one packet's names do to its flow. `flow_group` and `held` are the flow's (updated);
// `p` null = no policy (names are kept, nothing matches).
//
// Per-message flows (DNS, SSDP: a resolver's 5-tuple asks many names) are judged message by
// message until a message's name enforces; from then on the flow is pinned to that verdict
// (both ways, every later message and response) until it expires or a policy swap lifts it
// (the worker re-picks from `held` on a swap and clears it when no name enforces any more). A
// stronger name re-pins it; a weaker one is kept for later swaps. Monitor-only messages are
// judged (and counted) per message while the flow is not pinned.
//
// Other flows keep every name; the strongest decides and a later weaker one never downgrades
// the flow.
struct names_outcome {
  bool judged = false;  // `v` decides this packet; else decide(ip_group, flow_group)
  match::verdict v;
  std::uint32_t name_group = no_group;  // the name group this packet is counted under
  std::size_t best = 0;                      // the strongest of the packet's names (index)
  std::uint32_t best_group = no_group;  // its group (no_group: none matched)
  bool pinned = false;  // a per-message flow was pinned by this packet (not before)
};

[[nodiscard]] inline names_outcome apply_names(const match::compiled_policy* p,
                                               std::optional<std::uint32_t> ip_group,
                                               std::uint32_t& flow_group, name_list& held,
                                               std::span<const std::string_view> revealed,
                                               bool per_message, std::int64_t now) noexcept {
  names_outcome out;
  name_pick pick;
  if (p != nullptr) pick = pick_strongest(*p, ip_group, revealed, now);
  out.best = pick.index < 0 ? 0 : static_cast<std::size_t>(pick.index);
  out.best_group = pick.group;
  const match::verdict current = p != nullptr && !held.empty() && flow_group != no_group
                                     ? p->decide(ip_group, opt_group(flow_group), now)
                                     : match::verdict{};
  if (per_message) {
    const bool pins = pick.group != no_group && pick.v.enforce();
    const bool repin = pins && (!current.enforce() || outranks(*p, pick.v, current));
    if (pins) {
      out.pinned = held.empty();
      held.add(revealed[out.best], repin);
      if (repin) flow_group = pick.group;
    }
    if (!current.enforce() || repin) {  // else the pin decides
      out.judged = true;
      out.v = pick.v;
      out.name_group = pick.group;
    } else {
      out.name_group = flow_group;
    }
    return out;
  }
  bool takes = held.empty();
  if (!takes && pick.group != no_group) {
    takes = flow_group == no_group || outranks(*p, pick.v, current);
  }
  for (std::size_t i = 0; i < revealed.size(); ++i) held.add(revealed[i], takes && i == out.best);
  if (takes) flow_group = pick.group;
  out.name_group = flow_group;
  return out;
}

}  // namespace sluice::engine
