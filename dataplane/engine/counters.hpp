#pragma once
// Every counter the fast path keeps, defined once. Workers own one `worker_counters` each
// (cache-aligned, written only by that worker, stored once per burst); the control thread
// sums workers and turns the sums into telemetry (names below become metric label values).

#include <array>
#include <cstddef>
#include <cstdint>

#include "dataplane/flow/classifier.hpp"
#include "dataplane/packet/frame.hpp"

namespace sluice::engine {

#define SLUICE_ENGINE_EVENTS(X)                                                          \
  X(packets_in, "packets_in")                 /* from a subscriber-side port */          \
  X(packets_out, "packets_out")               /* from an internet-side port */           \
  X(forwarded, "forwarded")                   /* sent on to the peer port */             \
  X(dropped_by_rule, "dropped_by_rule")       /* drop/reset/notice/throttle discards */  \
  X(tx_refused, "tx_refused")                 /* the NIC's tx queue was full: freed */   \
  X(flows_created, "flows_created")                                                      \
  X(flows_expired, "flows_expired")                                                      \
  X(flow_table_full, "flow_table_full")       /* passed unclassified: table full */      \
  X(fragments_held, "fragments_held")         /* IP fragments taken for reassembly */    \
  X(fragments_reassembled, "fragments_reassembled")                                      \
  X(fragments_passed, "fragments_passed")     /* could not reassemble: forwarded */      \
  X(fake_ignored_checksum, "fake_ignored_checksum") /* bad-checksum request bytes */     \
  X(fake_ignored_ttl, "fake_ignored_ttl")     /* TTL below the handshake's */            \
  X(resets_sent, "resets_sent")                                                          \
  X(notices_sent, "notices_sent")                                                        \
  X(dns_answers_sent, "dns_answers_sent")     /* NXDOMAIN to a blocked name's query */   \
  X(response_failed, "response_failed")       /* no mbuf, or tx refused it */            \
  X(response_unanswerable, "response_unanswerable") /* in a tunnel &c: unsent */         \
  X(throttled_drops, "throttled_drops")                                                  \
  X(monitor_hits, "monitor_hits")                                                        \
  X(policy_unmatched_flows, "policy_unmatched_flows")                                    \
  X(mirror_consumed, "mirror_consumed")       /* mirror mode: inspected, not enforced */ \
  X(mirror_unenforceable, "mirror_unenforceable") /* mirror: UDP verdict, no answer */   \
  X(dns_flows_pinned, "dns_flows_pinned")     /* DNS/SSDP flow blocked for its life */   \
  X(throttle_flowless, "throttle_flowless")   /* throttle matched, no flow: passed */    \
  X(icmp_errors_quoted, "icmp_errors_quoted") /* judged also by what they quote */       \
  X(icmp_errors_unread, "icmp_errors_unread") /* quote unreadable: own addresses only */ \
  X(multiseg_gathered, "multiseg_gathered")   /* chained mbuf read whole, classified */  \
  X(multiseg_too_long, "multiseg_too_long")   /* chained, over gather_bytes: passed */

enum class engine_event : std::uint8_t {
#define SLUICE_X(name, str) name,
  SLUICE_ENGINE_EVENTS(SLUICE_X)
#undef SLUICE_X
      count
};

inline constexpr const char* engine_event_names[] = {
#define SLUICE_X(name, str) str,
    SLUICE_ENGINE_EVENTS(SLUICE_X)
#undef SLUICE_X
};
static_assert(std::size(engine_event_names) == static_cast<std::size_t>(engine_event::count));

struct alignas(64) worker_counters {
  std::array<std::uint64_t, static_cast<std::size_t>(engine_event::count)> events{};
  std::array<std::uint64_t, static_cast<std::size_t>(packet::frame_outcome::count)> parse{};
  std::array<std::uint64_t, static_cast<std::size_t>(flow::give_up_reason::count)> give_ups{};
  std::uint64_t packets = 0;
  std::uint64_t busy_cycles = 0;
  std::uint64_t bursts = 0;
  std::uint64_t heartbeat_tsc = 0;  // last loop iteration (watchdog)
};

// Per worker, per rule of the active policy.
struct alignas(16) rule_counter {
  std::uint64_t flows = 0;
  std::uint64_t packets = 0;
};

}  // namespace sluice::engine
