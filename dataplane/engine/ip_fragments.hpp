#pragma once
// IP fragment reassembly for the worker (worker.cpp holds the fragment table and decides what
// the fragments get): a datagram's key, the pieces held for it, where a fragment's data sits in
// its frame, and the reassembled copy that is judged. No allocation, no logging; the worker that
// holds the pieces is the only caller.

#include <rte_mbuf.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#include "dataplane/packet/frame.hpp"

namespace sluice::engine {

constexpr std::uint8_t frag_max_pieces = 16;         // per datagram; more: fail open
constexpr std::uint32_t frag_max_prefix = 512;       // L2 + IP header (+ v6 extensions) we copy
constexpr std::uint32_t frag_scratch_bytes = 65535;  // frame_info offsets are 16-bit
constexpr std::uint8_t ipproto_fragment = 44;

// A datagram's identity (RFC 791 / RFC 8200), plus the VLAN and the tunnel (fragments inside a
// VXLAN/GTP-U tunnel) so two subscribers' VLANs or tenants' tunnels never mix.
struct alignas(8) frag_key {
  std::array<std::uint8_t, 16> src;
  std::array<std::uint8_t, 16> dst;
  std::uint32_t id;
  std::uint16_t vlan;
  std::uint8_t proto;
  std::uint8_t version;
  std::uint32_t tunnel;
  std::uint32_t reserved;  // zero (memset); 48 bytes, 8-aligned: rte_hash_crc reads 64-bit words
};
static_assert(sizeof(frag_key) == 48 && alignof(frag_key) == 8);

// Where one fragment's bytes sit in its frame: `l3_at` the IP header, `data_at` the fragment data
// (after the IP header, or after the v6 fragment header), `frag_hdr_at` (v6) the fragment
// header, `next_hdr_at` (v6) the byte that names it.
struct frag_piece {
  rte_mbuf* m = nullptr;
  std::uint16_t rx_port = 0;
  std::uint16_t l3_at = 0;
  std::uint16_t data_at = 0;
  std::uint16_t data_len = 0;
  std::uint16_t frag_hdr_at = 0;
  std::uint16_t next_hdr_at = 0;
  std::uint32_t offset = 0;  // in the datagram's payload
  bool more = false;
};

struct frag_slot {
  frag_key key{};
  std::uint64_t first_tsc = 0;
  std::array<frag_piece, frag_max_pieces> pieces{};  // arrival order
  std::uint8_t n = 0;
  bool in_use = false;
};

// Finds the fragment data of a parsed fragment (`info.is_fragment`). False when the frame does
// not hold what the parser said (never, for a parser-made info) or the v6 chain has no fragment
// header.
[[nodiscard]] bool locate_fragment(packet::bytes frame, const packet::frame_info& info,
                                   frag_piece& p) noexcept;

enum class reassembly : std::uint8_t { incomplete, complete, invalid };

// Checks coverage of the held pieces and, when they cover the datagram, writes L2 + the
// reassembled IP datagram (total length fixed, fragmentation cleared, v6 fragment header
// removed) into `out` and sets `len`. `invalid`: conflicting overlap, data past the last
// fragment's end, two different ends, or too big for `out`. The pieces' mbufs may be chains
// (scattered rx): their bytes are read segment by segment.
[[nodiscard]] reassembly reassemble(const frag_slot& s, std::span<std::uint8_t> out,
                                    std::size_t& len) noexcept;

}  // namespace sluice::engine
