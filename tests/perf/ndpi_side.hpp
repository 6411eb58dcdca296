#pragma once
// nDPI 4.2 (Debian's libndpi) doing what one Sluice worker does, for bench_ndpi: its own flow
// table, nDPI's dissectors until a flow has a name, and the same block list.
//
// Per frame: strip Ethernet / VLAN / QinQ / GRE / VXLAN to the innermost IP header
// (perf::locate_l3; nDPI parses from L3), read the 5-tuple, find or insert the flow in an
// open-addressing table keyed by the direction-independent 5-tuple (hashed with DPDK's
// rte_hash_crc, as Sluice's flow table is), and
//   - on a flow's first packet: look its destination (the server) up in the IP block list, an
//     nDPI patricia tree (ndpi_ptree_*, IPv4 and IPv6);
//   - until the flow is decided: ndpi_detection_process_packet; the flow is decided as soon as
//     nDPI has a name (flow->host_server_name: TLS/QUIC SNI, HTTP Host, DNS question), checked
//     against the domain list (an unordered_set of exact names and one of "*." suffixes, walked
//     label by label: the same semantics as Sluice's domain rules); or when nDPI has detected a
//     protocol with no extra dissection pending; or after 32 packets (ndpi_detection_giveup).
//     This is generous to nDPI: ndpiReader keeps dissecting for certificates and more;
//   - counts the frame forwarded or dropped by the flow's verdict.
// Flow structs are allocated (zeroed) up front for `max_flows` flows and reset between passes
// by reset(), outside the timed region.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace sluice::perf {

struct ndpi_stats {
  std::uint64_t packets = 0, forwarded = 0, dropped = 0, unparsed = 0, table_full = 0;
  std::uint64_t flows = 0, flows_blocked = 0, flows_blocked_ip = 0, flows_blocked_name = 0;
  std::uint64_t flows_named = 0, flows_gave_up = 0, dissected_packets = 0;
};

// One flow as the side saw it, for per-kind tallies after a pass: `client` is the low 32 bits
// (IPv6) or low 24 bits (IPv4) of the flow's first source address (the mix's flow number).
struct ndpi_flow_summary {
  std::uint32_t client = 0;
  bool named = false;
  bool blocked = false;
};

class ndpi_side {
 public:
  // `domains` as in a policy ("x", "*.x"); `prefixes` "a.b.c.d/n" or IPv6. Throws
  // std::runtime_error when nDPI refuses to start or a prefix does not parse.
  ndpi_side(const std::vector<std::string>& domains, const std::vector<std::string>& prefixes,
            std::uint32_t max_flows);
  ~ndpi_side();
  ndpi_side(const ndpi_side&) = delete;
  ndpi_side& operator=(const ndpi_side&) = delete;

  void process(const std::uint8_t* frame, std::uint32_t len, std::uint64_t time_ms) noexcept;

  [[nodiscard]] const ndpi_stats& stats() const noexcept;
  [[nodiscard]] std::vector<ndpi_flow_summary> summaries() const;
  // Forgets every flow (frees what nDPI allocated in them) and zeroes the counters. Untimed.
  void reset();

  // Memory: sizeof(ndpi_flow_struct); the table's bytes per flow at max_flows; what nDPI had
  // allocated inside flows (ndpi_malloc, counted by usable size) at the last reset, per flow.
  [[nodiscard]] static std::size_t flow_struct_bytes() noexcept;
  [[nodiscard]] double table_bytes_per_flow() const noexcept;
  [[nodiscard]] double dynamic_bytes_per_flow() const noexcept;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace sluice::perf
