#pragma once
// Reading a packet's bytes across a chained mbuf (scattered rx, frames larger than one mbuf),
// for the worker and IP reassembly. The parsers take one contiguous view; these put a chain's
// bytes into caller-owned memory, or compare them, segment by segment. No allocation, no
// logging; callable from any thread on mbufs it owns.

#include <rte_mbuf.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <span>

#include "dataplane/packet/bytes.hpp"

namespace sluice::engine {

// The whole frame of `m`: its data when it is one segment (no copy), else the chain copied into
// `scratch` (the view lives as long as `scratch` is not rewritten). Empty when the chain does
// not fit `scratch`, or claims more bytes than its segments hold.
[[nodiscard]] inline packet::bytes whole_frame(const rte_mbuf* m,
                                               std::span<std::uint8_t> scratch) noexcept {
  if (m->nb_segs == 1) [[likely]] {
    return {rte_pktmbuf_mtod(m, const std::uint8_t*), m->data_len};
  }
  const std::uint32_t len = rte_pktmbuf_pkt_len(m);
  if (len == 0 || len > scratch.size()) return {};
  std::uint32_t held = 0;
  for (const rte_mbuf* s = m; s != nullptr; s = s->next) held += s->data_len;
  if (held < len) return {};  // a broken chain: rte_pktmbuf_read would walk off its end
  const void* p = rte_pktmbuf_read(m, 0, len, scratch.data());
  if (p == nullptr) return {};
  return {static_cast<const std::uint8_t*>(p), len};
}

// Calls `f(const uint8_t* chunk, uint32_t n)` for bytes [off, off + len) of `m` in order, one
// call per segment they touch. False (and no call past the end) when the chain holds fewer.
template <typename F>
[[nodiscard]] bool for_each_chunk(const rte_mbuf* m, std::uint32_t off, std::uint32_t len,
                                  F&& f) noexcept {
  const rte_mbuf* s = m;
  while (s != nullptr && off >= s->data_len) {
    off -= s->data_len;
    s = s->next;
  }
  while (len != 0) {
    if (s == nullptr) return false;
    const std::uint32_t n = std::min<std::uint32_t>(len, s->data_len - off);
    if (!f(rte_pktmbuf_mtod_offset(s, const std::uint8_t*, off), n)) return true;
    len -= n;
    off = 0;
    s = s->next;
  }
  return true;
}

// Copies bytes [off, off + len) of `m` to `out`. False when the chain holds fewer.
[[nodiscard]] inline bool copy_bytes(const rte_mbuf* m, std::uint32_t off, std::uint32_t len,
                                     std::uint8_t* out) noexcept {
  return for_each_chunk(m, off, len, [&out](const std::uint8_t* p, std::uint32_t n) {
    std::memcpy(out, p, n);
    out += n;
    return true;
  });
}

// True when bytes [off, off + len) of `m` equal `with` (false also when the chain holds fewer).
[[nodiscard]] inline bool bytes_equal(const rte_mbuf* m, std::uint32_t off, std::uint32_t len,
                                      const std::uint8_t* with) noexcept {
  bool same = true;
  const bool read = for_each_chunk(m, off, len, [&](const std::uint8_t* p, std::uint32_t n) {
    same = std::memcmp(p, with, n) == 0;
    with += n;
    return same;
  });
  return read && same;
}

}  // namespace sluice::engine
