#pragma once
// Prometheus exporter for dataplane_stats: serves GET /metrics (prometheus-cpp's Exposer, its
// own civetweb threads) and maps each snapshot onto metric families declared once, at
// construction. Names follow DESIGN.md: sluice_dataplane_<what>_<unit>, `_total` on counters.
//
// Threading: construct, update() and destroy from one thread (the control thread, about once a
// second). Workers never call in; they only bump their own counter fields, which the control
// thread sums into a dataplane_stats. Scrapes run concurrently on the Exposer's threads;
// prometheus-cpp's families and metrics are thread-safe for that.
//
// Counters: prometheus-cpp counters only go up, so the exporter keeps the last source value per
// series and increments by the difference. A source value that goes DOWN (port stats cleared
// by rte_eth_stats_reset, a worker restarted) is taken as a reset of the source: the whole new
// value counts as new since the reset (what Prometheus' rate() assumes about a counter that
// drops), so the exported counter stays monotonic and loses at most the increments between the
// last update and the reset.
//
// Series are never removed: a rule gone after a policy swap keeps its last value (the snapshot
// is cumulative by rule id), a port or worker missing from one snapshot keeps its last value.
// The one exception is sluice_dataplane_policy_info{sha256}: only the current digest's series
// exists.

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "dataplane/telemetry/stats.hpp"

namespace sluice::telemetry {

// Constant labels put on every series, e.g. {{"node", "edge-msk-1"}}. Names must be valid
// Prometheus label names and must not clash with the per-metric labels (port, dir, kind, name,
// worker, outcome, event, reason, rule, directive, action, sha256).
using label_set = std::map<std::string, std::string>;

class metrics_exporter {
 public:
  // Binds `listen_address` ("127.0.0.1:9469"; port 0 picks a free port, see port()) and starts
  // serving /metrics at once; metrics appear after the first update(). Throws
  // std::runtime_error (civetweb's) if the address cannot be bound, std::invalid_argument if a
  // node label name is invalid or clashes with a metric label.
  metrics_exporter(const std::string& listen_address, const label_set& node_labels);
  ~metrics_exporter();
  metrics_exporter(const metrics_exporter&) = delete;
  metrics_exporter& operator=(const metrics_exporter&) = delete;

  // The TCP port actually listened on (the chosen one when constructed with port 0).
  [[nodiscard]] std::uint16_t port() const;

  // Sets every metric from `stats`. Gauges take the snapshot's values; counters advance by the
  // difference to the previous snapshot (see the reset rule above);
  // sluice_dataplane_worker_cycles_per_packet is busy cycles / packets over the interval since
  // the previous update (0 when the worker saw no packets in it). Also stamps
  // sluice_dataplane_last_update_timestamp_seconds with the wall clock, so a control thread
  // that stops updating shows up as a stale timestamp rather than as frozen "healthy" data.
  void update(const dataplane_stats& stats);

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace sluice::telemetry
