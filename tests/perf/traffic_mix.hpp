#pragma once
// A generated, realistic traffic mix for the engine benchmarks (bench_engine, bench_ndpi), held
// in memory as a few thousand frame templates plus a schedule, so that millions of concurrent
// flows cost megabytes, not gigabytes.
//
// Flows: TCP with a handshake (SYN, SYN-ACK, ACK) then a TLS ClientHello (a plain one, or a
// post-quantum one of ~1.8 KB with an X25519MLKEM768 key share split over two TCP segments, as
// Chromium sends it), an HTTP GET, or opaque bytes (MTProto-like); DNS queries and answers; QUIC
// v1/v2 and Telegram flows taken whole from real captures (../shared/testdata/captures). Every
// TCP flow then carries established data both ways (most packets, as on a real link). A quarter
// of the generated flows are IPv6; a third are encapsulated (802.1Q, QinQ, VXLAN, GRE). About
// one flow in ten goes to a Telegram prefix and one in twenty names a Telegram domain; with a
// generated block list, one in twenty names one of its domains.
//
// Flow f is template script s(f) with f's own client address and port (and, for most scripts,
// its own server address) patched in, checksums updated incrementally (RFC 1624); the frames
// are therefore valid, and every flow is distinct. Schedule: flow f starts in round d(f) (0..7)
// and sends its k-th frame in round d(f)+k; within a round flows come in a pseudo-random order
// that changes every round, so all flows are open at once, the packet kinds are interleaved and
// a flow's consecutive packets are about one round (the number of open flows) apart.
//
// Deterministic for a given config (seed). Not thread-safe; the fill functions allocate nothing.

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "tests/unit/support/packet_builder.hpp"

namespace sluice::perf {

using test::buf;

// Every whole Ethernet frame of a capture up to 1,514 bytes (a truncated or longer frame, or a
// capture of another link type, is left out); a capture that cannot be opened gives none, and
// says so on stderr.
std::vector<buf> read_capture(const std::string& path);

// Where a frame's innermost IP packet starts: Ethernet, 802.1Q / 802.1ad tags, GRE (IPv4 or
// IPv6 payload) and VXLAN (UDP 4789) are stripped, no more. This is how the nDPI side of
// bench_ndpi finds its L3 header (nDPI parses from L3), and how the mix finds patch points.
struct l3_view {
  std::uint16_t l3 = 0;  // offset of the IP header
  std::uint16_t l4 = 0;  // offset of the TCP/UDP header (0: not reached)
  std::uint8_t version = 0;
  std::uint8_t proto = 0;
  bool ok = false;
};

inline std::uint16_t rd16(const std::uint8_t* p) noexcept {
  return static_cast<std::uint16_t>(p[0] << 8 | p[1]);
}

inline l3_view locate_l3(const std::uint8_t* f, std::uint32_t len) noexcept {
  l3_view v;
  std::uint32_t at = 0;
  for (int depth = 0; depth < 3; ++depth) {
    // Ethernet and its tags.
    if (at + 14 > len) return v;
    std::uint16_t type = rd16(f + at + 12);
    at += 14;
    while ((type == 0x8100 || type == 0x88a8) && at + 4 <= len) {
      type = rd16(f + at + 2);
      at += 4;
    }
    bool again = false;
    for (int ip_depth = 0; ip_depth < 2; ++ip_depth) {
      if (type == 0x0800) {
        if (at + 20 > len || (f[at] >> 4) != 4) return v;
        const std::uint32_t ihl = (f[at] & 15u) * 4;
        v = {static_cast<std::uint16_t>(at), 0, 4, f[at + 9], true};
        const bool first_fragment = (rd16(f + at + 6) & 0x1fff) == 0;
        if (first_fragment) v.l4 = static_cast<std::uint16_t>(at + ihl);
      } else if (type == 0x86dd) {
        if (at + 40 > len) return v;
        v = {static_cast<std::uint16_t>(at), static_cast<std::uint16_t>(at + 40), 6, f[at + 6],
             true};
      } else {
        return v;
      }
      if (v.l4 == 0) return v;
      // GRE (flags C K S only, version 0) carrying IP: go round with its protocol type.
      if (v.proto == 47 && v.l4 + 4u <= len) {
        const std::uint16_t flags = rd16(f + v.l4);
        const std::uint16_t proto = rd16(f + v.l4 + 2);
        if ((flags & 0x0007) != 0 || (proto != 0x0800 && proto != 0x86dd)) return v;
        at = v.l4 + 4u + ((flags & 0x8000) ? 4 : 0) + ((flags & 0x2000) ? 4 : 0) +
             ((flags & 0x1000) ? 4 : 0);
        type = proto;
        continue;
      }
      // VXLAN: an Ethernet frame again.
      if (v.proto == 17 && v.l4 + 16u <= len && rd16(f + v.l4 + 2) == 4789) {
        at = v.l4 + 16u;
        again = true;
      }
      break;
    }
    if (!again) return v;
  }
  return v;
}

enum class flow_kind : std::uint8_t { tls, tls_pq_split, http, opaque, dns, capture, count };
inline constexpr const char* flow_kind_names[] = {"tls",    "tls_pq_split", "http",
                                                  "opaque", "dns",          "capture"};

struct mix_config {
  std::uint32_t flows = 8192;  // concurrent flows in one epoch
  std::uint64_t seed = 42;
  std::uint32_t variants = 16384;  // generated scripts (each with its own name); capped by flows
  std::string capture_dir;         // QUIC / Telegram captures; empty = generated flows only
  // Which flow kinds the mix holds (bit 1 << flow_kind); all by default. For per-kind costs.
  std::uint32_t kinds = ~0u;
  // Names some flows ask for, so that a generated block list is hit (see block_list.hpp).
  std::vector<std::string> blocked_names;
};

// One frame of a script, with where to patch a flow's identity into it.
struct frame_tpl {
  buf bytes;
  bool from_client = true;
  bool established = false;  // data on a flow whose name was already seen
  l3_view at;
  std::uint16_t l4_csum = 0;  // offset of the TCP/UDP checksum, 0 = none to update
};

enum class server_patch : std::uint8_t { none, v4_any, v4_telegram, v6_any, v6_telegram };

struct script {
  flow_kind kind = flow_kind::tls;
  std::vector<std::uint32_t> head;  // template indices: handshake, request, capture frames
  // head is sent in slots, one per round: slot i is head[slot_end[i-1] .. slot_end[i]) (frames
  // that go back to back: a ClientHello's two segments, a client's first flight).
  std::vector<std::uint8_t> slot_end;
  std::int32_t data_shape = -1;  // established data pair (server data, client ack), or none
  server_patch server = server_patch::none;
  bool telegram_addr = false;
  bool telegram_name = false;
  bool listed_name = false;  // names a domain of the generated block list
  std::string name;          // what the flow asks for ("" = nothing readable)
};

enum class phase : std::uint8_t { all, setup, established };

class traffic_mix {
 public:
  explicit traffic_mix(const mix_config& cfg);

  // Frames in one pass over every flow, in the phase.
  [[nodiscard]] std::uint64_t frames(phase p = phase::all) const noexcept;
  [[nodiscard]] std::uint32_t flows() const noexcept { return n_; }
  [[nodiscard]] const std::vector<script>& scripts() const noexcept { return scripts_; }
  [[nodiscard]] const script& script_of(std::uint32_t flow) const noexcept {
    return scripts_[script_[flow % n_]];
  }
  // Flows per kind, and those to a Telegram prefix / naming a Telegram or listed domain.
  struct census {
    std::uint64_t flows[static_cast<std::size_t>(flow_kind::count)] = {};
    std::uint64_t ipv6 = 0, tunnelled = 0, telegram_addr = 0, telegram_name = 0, listed_name = 0;
    std::uint64_t frames = 0, established_frames = 0, bytes = 0;
  };
  [[nodiscard]] census count() const;

  struct cursor {
    std::uint32_t round = 0;
    std::uint32_t i = 0;
    [[nodiscard]] bool done(const traffic_mix& m) const noexcept { return round >= m.rounds_; }
  };

  // Writes up to `max` (> max_slot) frames of phase `p` from `c` on, in schedule order: for each,
  // calls `dst(len, from_client)` for a buffer of at least `len` bytes, copies the template there
  // and patches it. Returns how many were written (0 = the pass is over).
  template <typename Dst>
  std::uint32_t fill(cursor& c, phase p, std::uint32_t max, Dst&& dst) const {
    std::uint32_t out = 0;
    while (out + max_slot < max && c.round < rounds_) {
      const std::uint32_t f = flow_at(c.round, c.i);
      const std::int64_t k = static_cast<std::int64_t>(c.round) - start_[f];
      if (++c.i == n_) {
        c.i = 0;
        ++c.round;
      }
      if (k < 0 || k >= len_[f]) continue;
      const script& s = scripts_[script_[f]];
      const auto slot = static_cast<std::size_t>(k);
      std::size_t from = 0, to = 0;
      const frame_tpl* data = nullptr;
      if (slot < s.slot_end.size()) {
        from = slot == 0 ? 0 : s.slot_end[slot - 1];
        to = s.slot_end[slot];
      } else {
        data = &templates_[shapes_[static_cast<std::size_t>(s.data_shape)]
                                  [(slot - s.slot_end.size()) % 2]];
      }
      for (std::size_t i = from; i < (data != nullptr ? from + 1 : to); ++i) {
        const frame_tpl& t = data != nullptr ? *data : templates_[s.head[i]];
        if (p == phase::setup && t.established) continue;
        if (p == phase::established && !t.established) continue;
        std::uint8_t* d = dst(static_cast<std::uint32_t>(t.bytes.size()), t.from_client);
        std::memcpy(d, t.bytes.data(), t.bytes.size());
        patch(d, t, f, s.server);
        ++out;
      }
    }
    return out;
  }
  // Most frames one slot holds; fill() writes at most `max` frames.
  static constexpr std::uint32_t max_slot = 8;

 private:
  [[nodiscard]] std::uint32_t flow_at(std::uint32_t round, std::uint32_t i) const noexcept {
    const std::uint64_t j = (std::uint64_t{i} + rot_[round]) % n_;
    return static_cast<std::uint32_t>((j * stride_ + offset_) % n_);
  }
  void patch(std::uint8_t* d, const frame_tpl& t, std::uint32_t f, server_patch sp) const noexcept;

  std::uint32_t n_ = 0;
  std::uint64_t seed_ = 0;
  std::vector<frame_tpl> templates_;
  std::vector<std::array<std::uint32_t, 2>> shapes_;
  std::vector<script> scripts_;
  std::vector<std::uint32_t> script_;  // per flow
  std::vector<std::uint8_t> start_;    // per flow: first round
  std::vector<std::uint8_t> len_;      // per flow: frames
  std::vector<std::uint32_t> rot_;     // per round
  std::uint32_t rounds_ = 0;
  std::uint64_t stride_ = 1, offset_ = 0;
};

// A 64-bit mix (splitmix64's finaliser): flow f's pseudo-random properties.
inline std::uint64_t mix64(std::uint64_t x) noexcept {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

}  // namespace sluice::perf
