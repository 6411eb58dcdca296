#pragma once
// Packets that are IP but not TCP/UDP (frame outcome other_l4: ICMP, ICMPv6, ESP, SCTP, ...):
// they have no flow entry, so address rules are all that can stop them, and an ICMP error is
// judged also by the packet it quotes (the flow it belongs to, or that packet's addresses).
//
// Decisions (reasons in dataplane/engine/FLOW_SEMANTICS.md):
// - drop / reset / notice drop the packet (there is nothing to reset or answer).
// - throttle needs a flow's token bucket: the packet passes (counted as throttle_flowless and
//   in the rule's packets), so ICMP never outranks what the directive asked for.
// - ICMPv6 neighbour discovery (types 133..137) is never enforced: it is link-scoped, and the
//   subscriber link stops working without it. (No prefix rule matches link-local or multicast
//   addresses anyway.)
// - An error whose quote cannot be read (cut, bogus lengths, an error quoting an error) is
//   judged by its own addresses only: fail open for the quote, counted as icmp_errors_unread.
//
// Pure over the compiled policy; the worker passes a callback that looks the quoted flow up in
// its own table (no allocation, no logging).

#include <cstdint>
#include <optional>

#include "dataplane/engine/flow_names.hpp"
#include "dataplane/match/policy.hpp"
#include "dataplane/packet/frame.hpp"
#include "dataplane/packet/icmp.hpp"

namespace sluice::engine {

// Which side of the node the packet's sender is on (the port role, reduced).
enum class sender_side : std::uint8_t { subscriber, internet, either /* mirror */ };

// What an other_l4 packet gets, and what decided it.
struct other_l4_judgement {
  match::verdict v;                        // forward unless v.enforce()
  std::uint32_t ip_group = no_group;  // for per-rule counters
  std::uint32_t name_group = no_group;
  bool icmp_error = false;
  bool quote_read = false;  // the quoted packet took part in the decision
};

// The address rules' verdict for a packet between `src` and `dst`: the internet side's address
// (`dst` when the subscriber sent it, `src` when the internet did; on a mirror, whichever of
// the two matches, `dst` first).
[[nodiscard]] inline std::optional<std::uint32_t> internet_group(const match::compiled_policy& p,
                                                                 const packet::ip_address& src,
                                                                 const packet::ip_address& dst,
                                                                 sender_side side) noexcept {
  switch (side) {
    case sender_side::subscriber:
      return p.match_ip(dst);
    case sender_side::internet:
      return p.match_ip(src);
    case sender_side::either:
      break;
  }
  if (auto g = p.match_ip(dst)) return g;
  return p.match_ip(src);
}

// The verdict of a flow the fast path holds (its groups are the current policy's).
struct quoted_flow {
  std::uint32_t ip_group = no_group;
  std::uint32_t name_group = no_group;
};

// Judges an other_l4 packet parsed as `info` from `frame`. `find_flow(const packet::frame_info&)`
// returns std::optional<quoted_flow> for the TCP/UDP flow a quoted packet belongs to (the
// argument is `info` with the quoted addresses, ports and protocol; nullopt when there is none).
template <typename FindFlow>
[[nodiscard]] other_l4_judgement judge_other_l4(const match::compiled_policy& p,
                                                packet::bytes frame, const packet::frame_info& info,
                                                sender_side side, std::int64_t now,
                                                FindFlow&& find_flow) noexcept {
  other_l4_judgement out;
  const bool icmp = (info.ip_version == 4 && info.l4_proto == packet::ipproto_icmp) ||
                    (info.ip_version == 6 && info.l4_proto == packet::ipproto_icmpv6);
  packet::icmp_info msg;
  if (icmp) {
    const std::size_t end = std::size_t{info.l3_offset} + info.l3_length;
    if (info.l4_offset <= end && end <= frame.size() && !(info.is_fragment && info.frag_offset)) {
      msg =
          packet::parse_icmp(frame.subspan(info.l4_offset, end - info.l4_offset), info.ip_version);
    }
    if (info.ip_version == 6 && msg.outcome == packet::icmp_outcome::not_error &&
        packet::icmpv6_is_neighbour_discovery(msg.type)) {
      return out;  // link-scoped: never enforced
    }
    out.icmp_error = msg.error;
  }
  if (auto g = internet_group(p, info.src, info.dst, side)) {
    out.ip_group = *g;
    out.v = p.decide(g, std::nullopt, now);
  }
  if (!out.icmp_error || msg.outcome != packet::icmp_outcome::quoted) return out;

  // The quoted packet went the other way: the subscriber sent what an error from the internet
  // side quotes, and the other way round.
  out.quote_read = true;
  const packet::quoted_packet& q = msg.quoted;
  const sender_side quoted_side = side == sender_side::subscriber ? sender_side::internet
                                  : side == sender_side::internet ? sender_side::subscriber
                                                                  : sender_side::either;
  other_l4_judgement quoted;
  std::optional<quoted_flow> flow;
  if (q.has_ports && (q.l4_proto == 6 || q.l4_proto == 17)) {  // TCP, UDP: flows we hold
    packet::frame_info qi = info;  // keeps what keys a flow besides the tuple (VLAN, ...)
    qi.ip_version = q.ip_version;
    qi.l4_proto = q.l4_proto;
    qi.src = q.src;
    qi.dst = q.dst;
    qi.src_port = q.src_port;
    qi.dst_port = q.dst_port;
    qi.tcp_flags = 0;
    flow = find_flow(static_cast<const packet::frame_info&>(qi));
  }
  if (flow) {
    quoted.ip_group = flow->ip_group;
    quoted.name_group = flow->name_group;
  } else if (auto g = internet_group(p, q.src, q.dst, quoted_side)) {
    quoted.ip_group = *g;
  }
  const auto opt_group = [](std::uint32_t g) {
    return g == no_group ? std::nullopt : std::optional<std::uint32_t>(g);
  };
  if (quoted.ip_group != no_group || quoted.name_group != no_group) {
    quoted.v = p.decide(opt_group(quoted.ip_group), opt_group(quoted.name_group), now);
  }
  const bool quoted_decides =
      outranks(p, quoted.v, out.v) ||
      (!out.v.enforce() && !quoted.v.enforce() && out.v.monitors == 0 && quoted.v.monitors != 0);
  if (quoted_decides) {
    out.v = quoted.v;
    out.ip_group = quoted.ip_group;
    out.name_group = quoted.name_group;
  }
  return out;
}

}  // namespace sluice::engine
