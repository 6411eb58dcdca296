// IP fragment reassembly (contract in the header).
#include "dataplane/engine/ip_fragments.hpp"

#include <algorithm>
#include <cstring>

#include "dataplane/engine/mbuf_bytes.hpp"

namespace sluice::engine {
namespace {

std::uint16_t ipv4_header_checksum(const std::uint8_t* h, std::size_t len) noexcept {
  std::uint32_t sum = 0;
  for (std::size_t i = 0; i + 1 < len; i += 2) sum += packet::load_be16(h + i);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<std::uint16_t>(~sum);
}

inline void put_be16(std::uint8_t* p, std::uint32_t v) noexcept {
  p[0] = static_cast<std::uint8_t>(v >> 8);
  p[1] = static_cast<std::uint8_t>(v);
}

}  // namespace

bool locate_fragment(packet::bytes frame, const packet::frame_info& info, frag_piece& p) noexcept {
  const std::size_t l3 = info.l3_offset;
  const std::size_t end = l3 + info.l3_length;
  if (end > frame.size()) return false;
  p.l3_at = static_cast<std::uint16_t>(l3);
  if (info.ip_version == 4) {
    if (end - l3 < 20) return false;
    const std::size_t ihl = (frame[l3] & 0x0fu) * 4u;
    if (ihl < 20 || ihl > end - l3) return false;
    p.data_at = static_cast<std::uint16_t>(l3 + ihl);
    p.data_len = static_cast<std::uint16_t>(end - l3 - ihl);
    p.offset = info.frag_offset;
    p.more = info.more_fragments;
    return true;
  }
  if (info.ip_version != 6 || end - l3 < 40) return false;
  std::size_t nh_at = l3 + 6;
  std::size_t cur = l3 + 40;
  for (int i = 0; i < 8; ++i) {
    const std::uint8_t nh = frame[nh_at];
    if (end - cur < 8) return false;
    if (nh == ipproto_fragment) {
      p.next_hdr_at = static_cast<std::uint16_t>(nh_at);
      p.frag_hdr_at = static_cast<std::uint16_t>(cur);
      p.data_at = static_cast<std::uint16_t>(cur + 8);
      p.data_len = static_cast<std::uint16_t>(end - cur - 8);
      p.offset = info.frag_offset;
      p.more = info.more_fragments;
      return true;
    }
    std::size_t len = 0;
    if (nh == 0 || nh == 43 || nh == 60) {
      len = (frame[cur + 1] + 1u) * 8u;
    } else if (nh == 51) {
      len = (frame[cur + 1] + 2u) * 4u;
    } else {
      return false;
    }
    if (len > end - cur) return false;
    nh_at = cur;
    cur += len;
  }
  return false;
}

reassembly reassemble(const frag_slot& s, std::span<std::uint8_t> out, std::size_t& len) noexcept {
  std::array<std::uint8_t, frag_max_pieces> order{};
  std::uint32_t total = 0;
  bool have_last = false;
  for (std::uint8_t i = 0; i < s.n; ++i) {
    order[i] = i;
    const frag_piece& p = s.pieces[i];
    const std::uint32_t p_end = p.offset + p.data_len;
    if (!p.more) {
      if (have_last && p_end != total) return reassembly::invalid;
      have_last = true;
      total = p_end;
    }
  }
  if (!have_last) return reassembly::incomplete;
  for (std::uint8_t i = 0; i < s.n; ++i) {
    if (s.pieces[i].offset + s.pieces[i].data_len > total) return reassembly::invalid;
  }
  // Stable (insertion) sort by offset: among equal offsets the earliest arrival comes first,
  // which is also the piece judge_datagram takes the headers from. No allocation.
  for (std::uint8_t i = 1; i < s.n; ++i) {
    const std::uint8_t v = order[i];
    std::uint8_t j = i;
    for (; j > 0 && s.pieces[order[j - 1]].offset > s.pieces[v].offset; --j) {
      order[j] = order[j - 1];
    }
    order[j] = v;
  }
  std::uint32_t covered = 0;
  for (std::uint8_t i = 0; i < s.n; ++i) {
    const frag_piece& p = s.pieces[order[i]];
    if (p.offset > covered) return reassembly::incomplete;
    covered = std::max(covered, p.offset + p.data_len);
  }
  if (covered < total) return reassembly::incomplete;

  // The pieces' bytes are read through their mbuf chains (mbuf_bytes.hpp): a scattered
  // fragment's data may span segments. locate_fragment checked each range against its frame.
  const frag_piece& first = s.pieces[order[0]];
  const bool v6 = s.key.version == 6;
  const std::size_t prefix = v6 ? first.frag_hdr_at : first.data_at;
  if (prefix > frag_max_prefix || prefix + total > out.size()) return reassembly::invalid;
  std::uint8_t* o = out.data();
  if (!copy_bytes(first.m, 0, static_cast<std::uint32_t>(prefix), o)) return reassembly::invalid;
  std::uint8_t* data = o + prefix;
  covered = 0;
  for (std::uint8_t i = 0; i < s.n; ++i) {
    const frag_piece& p = s.pieces[order[i]];
    const std::uint32_t p_end = p.offset + p.data_len;
    const std::uint32_t overlap_end = std::min(covered, p_end);
    if (overlap_end > p.offset &&
        !bytes_equal(p.m, p.data_at, overlap_end - p.offset, data + p.offset)) {
      return reassembly::invalid;  // a later copy would change what we judged
    }
    if (p_end > covered) {
      const std::uint32_t from = std::max(covered, p.offset);
      if (!copy_bytes(p.m, p.data_at + (from - p.offset), p_end - from, data + from)) {
        return reassembly::invalid;
      }
      covered = p_end;
    }
  }
  std::uint8_t* ip = o + first.l3_at;
  if (!v6) {
    const std::size_t ihl = first.data_at - first.l3_at;
    if (ihl + total > 65535) return reassembly::invalid;
    put_be16(ip + 2, static_cast<std::uint32_t>(ihl + total));
    put_be16(ip + 6, packet::load_be16(ip + 6) & 0x4000u);  // keep DF, clear MF + offset
    put_be16(ip + 10, 0);
    put_be16(ip + 10, ipv4_header_checksum(ip, ihl));
  } else {
    const std::size_t payload = first.frag_hdr_at - first.l3_at - 40 + total;
    if (payload > 65535) return reassembly::invalid;
    put_be16(ip + 4, static_cast<std::uint32_t>(payload));
    // The fragment header's next-header byte (its first) takes its place in the header chain.
    if (!copy_bytes(first.m, first.frag_hdr_at, 1, o + first.next_hdr_at)) {
      return reassembly::invalid;
    }
  }
  len = prefix + total;
  return reassembly::complete;
}

}  // namespace sluice::engine
