#pragma once
// A point-in-time copy of everything the dataplane counts, assembled off the hot path by the
// control thread (summing per-worker counters, reading rte_eth stats) and handed to the
// exporters: Prometheus (exporter.hpp) and the offline JSON dump (json.hpp). Plain data: no
// DPDK types, so exporters and their tests need no EAL.
//
// Privacy: nothing here identifies a subscriber — ports, workers, rules and outcome kinds only.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace sluice::telemetry {

struct port_stats {
  std::string name;  // "subscriber", "internet", "mirror", ... (configured role, not a MAC)
  std::uint64_t rx_packets = 0, tx_packets = 0, rx_bytes = 0, tx_bytes = 0;
  std::uint64_t rx_missed = 0, rx_errors = 0, tx_errors = 0, rx_nombuf = 0;
  std::vector<std::pair<std::string, std::uint64_t>> xstats;  // rte_eth_xstats, as named by DPDK

  bool operator==(const port_stats&) const = default;
};

struct worker_stats {
  unsigned lcore = 0;
  std::uint64_t packets = 0;       // packets this worker processed
  std::uint64_t busy_cycles = 0;   // TSC cycles spent on bursts that had packets
  std::uint64_t bursts = 0;        // non-empty rx bursts
  std::uint64_t last_beat_tsc = 0; // watchdog heartbeat
  bool stalled = false;            // watchdog verdict

  bool operator==(const worker_stats&) const = default;
};

// One labelled counter (label value -> count), e.g. parse outcomes by outcome name.
using labelled_counts = std::vector<std::pair<std::string, std::uint64_t>>;

struct rule_stats {
  std::string rule;       // rule id
  std::string directive;  // directive id
  std::string action;     // drop | reset | notice | throttle | monitor
  std::uint64_t flows = 0;    // flows the rule decided (or, for monitor, counted)
  std::uint64_t packets = 0;  // packets the rule acted on

  bool operator==(const rule_stats&) const = default;
};

struct dataplane_stats {
  std::vector<port_stats> ports;
  std::vector<worker_stats> workers;

  // Packets by direction as the engine saw them ("in": subscriber->internet, "out": back).
  labelled_counts packets_by_direction;
  labelled_counts parse_outcomes;      // frame_outcome names
  labelled_counts engine_events;       // flows created/expired, table full passes, fragments...
  labelled_counts reassembly_give_ups; // give_up_reason names
  labelled_counts responses_sent;      // resets, notices
  // Impact windows (--impact-interval): reports by result ("delivered", "failed"), and flows the
  // sketches could not record by reason ("rule_overflow": past the rule slots; "policy_swap":
  // the rule moved slots mid-window). Empty when impact windows are off.
  labelled_counts impact_reports;
  labelled_counts impact_unrecorded_flows;

  std::vector<rule_stats> rules;       // cumulative per rule id, across policy swaps

  std::uint64_t flow_table_entries = 0;
  std::uint64_t flow_table_capacity = 0;
  std::uint64_t reassembly_buffers_in_use = 0;  // held by flows now (all workers)
  std::uint64_t reassembly_buffers = 0;         // the pools' size (all workers)

  std::uint64_t policy_revision = 0;
  std::string policy_sha256;
  double policy_load_seconds = 0;      // compile time of the current policy
  std::int64_t policy_loaded_at = 0;   // unix seconds
  std::uint64_t policy_reload_failures = 0;

  // Node agent (--controller); all zero and not exported without one.
  bool controller_enabled = false;
  std::uint64_t controller_held_revision = 0;     // last snapshot accepted from a controller
  std::uint64_t controller_fetch_failures = 0;    // long-polls no controller answered
  std::uint64_t controller_nacks = 0;             // offers refused
  std::uint64_t controller_status_failures = 0;   // status reports no controller took
  std::int64_t controller_last_contact = 0;       // unix seconds, 0 never

  bool healthy = true;                 // false when the watchdog saw a stalled worker

  // Member-wise, exact (doubles too): for round-trip tests of the JSON dump.
  bool operator==(const dataplane_stats&) const = default;
};

}  // namespace sluice::telemetry
