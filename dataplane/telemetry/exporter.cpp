#include "dataplane/telemetry/exporter.hpp"

#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <chrono>
#include <stdexcept>
#include <string_view>
#include <utility>
#include <vector>

namespace sluice::telemetry {
namespace {

using prometheus::Labels;

// Label names the metrics below use themselves; a node label with one of these names would
// make two labels of the same name on a series.
constexpr std::string_view metric_label_names[] = {
    "port",  "dir",    "kind", "name",      "worker", "outcome",
    "event", "reason", "rule", "directive", "action", "sha256",
};

// A counter family whose series follow cumulative source values (see exporter.hpp for the
// reset rule). The map is touched by the control thread only.
class counter_family {
 public:
  counter_family(prometheus::Registry& registry, const char* name, const char* help,
                 const label_set& node_labels)
      : family_(&prometheus::BuildCounter()
                     .Name(name)
                     .Help(help)
                     .Labels(node_labels)
                     .Register(registry)) {}

  void set(const Labels& labels, std::uint64_t value) {
    auto [it, fresh] = series_.try_emplace(labels);
    if (fresh) it->second.counter = &family_->Add(labels);
    auto& s = it->second;
    const std::uint64_t delta = value >= s.last ? value - s.last : value;
    if (delta != 0) s.counter->Increment(static_cast<double>(delta));
    s.last = value;
  }

  // One series per entry, the entry's key as the label `label`.
  void set_all(const char* label, const labelled_counts& counts) {
    for (const auto& [key, value] : counts) set({{label, key}}, value);
  }

 private:
  struct series {
    prometheus::Counter* counter = nullptr;
    std::uint64_t last = 0;
  };
  prometheus::Family<prometheus::Counter>* family_;
  std::map<Labels, series> series_;
};

class gauge_family {
 public:
  gauge_family(prometheus::Registry& registry, const char* name, const char* help,
               const label_set& node_labels)
      : family_(&prometheus::BuildGauge()
                     .Name(name)
                     .Help(help)
                     .Labels(node_labels)
                     .Register(registry)) {}

  void set(const Labels& labels, double value) { family_->Add(labels).Set(value); }

  // Keeps `labels` as the family's only series (an "info" metric whose label value changes).
  void set_only(const Labels& labels, double value) {
    for (auto it = current_.begin(); it != current_.end();) {
      if (it->first == labels) {
        ++it;
      } else {
        family_->Remove(it->second);
        it = current_.erase(it);
      }
    }
    auto& g = family_->Add(labels);
    current_[labels] = &g;
    g.Set(value);
  }

 private:
  prometheus::Family<prometheus::Gauge>* family_;
  std::map<Labels, prometheus::Gauge*> current_;
};

const label_set& checked(const label_set& node_labels) {
  for (const auto& [name, value] : node_labels) {
    for (auto reserved : metric_label_names) {
      if (name == reserved) {
        throw std::invalid_argument("metrics_exporter: node label '" + name +
                                    "' clashes with a metric label");
      }
    }
  }
  return node_labels;
}

}  // namespace

struct metrics_exporter::impl {
  explicit impl(const std::string& listen_address, const label_set& nl)
      : registry(std::make_shared<prometheus::Registry>()),
        port_packets(*registry, "sluice_dataplane_port_packets_total",
                     "Packets received (dir=rx) and sent (dir=tx) by the NIC port", nl),
        port_bytes(*registry, "sluice_dataplane_port_bytes_total",
                   "Bytes received (dir=rx) and sent (dir=tx) by the NIC port", nl),
        port_errors(*registry, "sluice_dataplane_port_errors_total",
                    "NIC port errors: rx_missed, rx_errors, tx_errors, rx_nombuf", nl),
        port_xstats(*registry, "sluice_dataplane_port_xstat_total",
                    "DPDK extended port statistics, named as the driver names them", nl),
        packets(*registry, "sluice_dataplane_packets_total",
                "Packets seen by the engine by direction (in: subscriber to internet)", nl),
        worker_packets(*registry, "sluice_dataplane_worker_packets_total",
                       "Packets processed by the worker", nl),
        worker_busy_cycles(*registry, "sluice_dataplane_worker_busy_cycles_total",
                           "TSC cycles the worker spent on non-empty bursts", nl),
        worker_bursts(*registry, "sluice_dataplane_worker_bursts_total",
                      "Non-empty rx bursts the worker processed", nl),
        worker_cycles_per_packet(*registry, "sluice_dataplane_worker_cycles_per_packet",
                                 "Busy TSC cycles per packet over the last update interval "
                                 "(0 when the worker saw no packets)",
                                 nl),
        worker_stalled(*registry, "sluice_dataplane_worker_stalled",
                       "1 when the watchdog found the worker's heartbeat stalled", nl),
        parse_outcomes(*registry, "sluice_dataplane_parse_outcomes_total",
                       "Frames by L2-L4 parse outcome", nl),
        engine_events(*registry, "sluice_dataplane_engine_events_total",
                      "Engine events: flows created/expired, flow-table-full passes, ...", nl),
        reassembly_give_ups(*registry, "sluice_dataplane_reassembly_give_ups_total",
                            "Flows whose stream reassembly gave up, by reason", nl),
        responses(*registry, "sluice_dataplane_responses_total",
                  "Responses the dataplane sent (TCP resets, notices), by kind", nl),
        impact_reports(*registry, "sluice_dataplane_impact_reports_total",
                       "Impact windows sent to the controller, by result (delivered, failed)",
                       nl),
        impact_unrecorded_flows(*registry, "sluice_dataplane_impact_unrecorded_flows_total",
                                "Flows the impact sketches could not record, by reason "
                                "(rule_overflow, policy_swap)",
                                nl),
        verdicts(*registry, "sluice_dataplane_verdicts_total",
                 "Flows decided (or counted, for monitor) by a policy rule", nl),
        rule_packets(*registry, "sluice_dataplane_rule_packets_total",
                     "Packets a policy rule acted on", nl),
        flow_table_entries(*registry, "sluice_dataplane_flow_table_entries",
                           "Flows in the flow tables (all workers)", nl),
        flow_table_capacity(*registry, "sluice_dataplane_flow_table_capacity",
                            "Capacity of the flow tables (all workers)", nl),
        reassembly_buffers_in_use(*registry, "sluice_dataplane_reassembly_buffers_in_use",
                                  "Reassembly buffers flows hold now (all workers)", nl),
        reassembly_buffers(*registry, "sluice_dataplane_reassembly_buffers",
                           "Reassembly buffers in the pools (all workers)", nl),
        policy_revision(*registry, "sluice_dataplane_policy_revision",
                        "Revision of the policy in force", nl),
        policy_info(*registry, "sluice_dataplane_policy_info",
                    "Always 1; sha256 is the digest of the policy in force", nl),
        policy_load_seconds(*registry, "sluice_dataplane_policy_load_seconds",
                            "Time it took to compile the policy in force", nl),
        policy_loaded_timestamp(*registry, "sluice_dataplane_policy_loaded_timestamp_seconds",
                                "Unix time the policy in force was loaded", nl),
        policy_reload_failures(*registry, "sluice_dataplane_policy_reload_failures_total",
                               "Policy reloads rejected (the previous policy stayed)", nl),
        controller_held_revision(*registry, "sluice_dataplane_controller_held_revision",
                                 "Revision of the last snapshot accepted from a controller", nl),
        controller_last_contact(*registry,
                                "sluice_dataplane_controller_last_contact_timestamp_seconds",
                                "Unix time a controller last answered (0: never)", nl),
        controller_fetch_failures(*registry, "sluice_dataplane_controller_fetch_failures_total",
                                  "Snapshot long-polls no controller answered", nl),
        controller_nacks(*registry, "sluice_dataplane_controller_nacks_total",
                         "Snapshots refused (NACKed); the previous policy stayed", nl),
        controller_status_failures(*registry, "sluice_dataplane_controller_status_failures_total",
                                   "Status reports no controller took", nl),
        healthy(*registry, "sluice_dataplane_healthy",
                "1 unless the watchdog found a stalled worker", nl),
        last_update(*registry, "sluice_dataplane_last_update_timestamp_seconds",
                    "Unix time of the exporter's last update from the dataplane", nl),
        exposer(listen_address) {
    exposer.RegisterCollectable(registry);
  }

  struct worker_prev {
    std::uint64_t packets = 0;
    std::uint64_t busy_cycles = 0;
  };

  void update(const dataplane_stats& s);

  // Families point into the registry; the exposer (declared last) stops serving before they go.
  std::shared_ptr<prometheus::Registry> registry;
  counter_family port_packets, port_bytes, port_errors, port_xstats, packets;
  counter_family worker_packets, worker_busy_cycles, worker_bursts;
  gauge_family worker_cycles_per_packet, worker_stalled;
  counter_family parse_outcomes, engine_events, reassembly_give_ups, responses;
  counter_family impact_reports, impact_unrecorded_flows;
  counter_family verdicts, rule_packets;
  gauge_family flow_table_entries, flow_table_capacity;
  gauge_family reassembly_buffers_in_use, reassembly_buffers;
  gauge_family policy_revision, policy_info, policy_load_seconds, policy_loaded_timestamp;
  counter_family policy_reload_failures;
  gauge_family controller_held_revision, controller_last_contact;
  counter_family controller_fetch_failures, controller_nacks, controller_status_failures;
  gauge_family healthy, last_update;
  std::map<unsigned, worker_prev> prev_workers;
  prometheus::Exposer exposer;
};

void metrics_exporter::impl::update(const dataplane_stats& s) {
  for (const auto& p : s.ports) {
    port_packets.set({{"port", p.name}, {"dir", "rx"}}, p.rx_packets);
    port_packets.set({{"port", p.name}, {"dir", "tx"}}, p.tx_packets);
    port_bytes.set({{"port", p.name}, {"dir", "rx"}}, p.rx_bytes);
    port_bytes.set({{"port", p.name}, {"dir", "tx"}}, p.tx_bytes);
    port_errors.set({{"port", p.name}, {"kind", "rx_missed"}}, p.rx_missed);
    port_errors.set({{"port", p.name}, {"kind", "rx_errors"}}, p.rx_errors);
    port_errors.set({{"port", p.name}, {"kind", "tx_errors"}}, p.tx_errors);
    port_errors.set({{"port", p.name}, {"kind", "rx_nombuf"}}, p.rx_nombuf);
    for (const auto& [name, value] : p.xstats) {
      port_xstats.set({{"port", p.name}, {"name", name}}, value);
    }
  }

  packets.set_all("dir", s.packets_by_direction);

  for (const auto& w : s.workers) {
    const Labels labels{{"worker", std::to_string(w.lcore)}};
    worker_packets.set(labels, w.packets);
    worker_busy_cycles.set(labels, w.busy_cycles);
    worker_bursts.set(labels, w.bursts);
    worker_stalled.set(labels, w.stalled ? 1 : 0);

    // Same reset rule as the counters: a value that went down starts a new interval from 0.
    auto& prev = prev_workers[w.lcore];
    const std::uint64_t dp = w.packets >= prev.packets ? w.packets - prev.packets : w.packets;
    const std::uint64_t dc =
        w.busy_cycles >= prev.busy_cycles ? w.busy_cycles - prev.busy_cycles : w.busy_cycles;
    worker_cycles_per_packet.set(labels,
                                 dp == 0 ? 0.0 : static_cast<double>(dc) / static_cast<double>(dp));
    prev = {w.packets, w.busy_cycles};
  }

  parse_outcomes.set_all("outcome", s.parse_outcomes);
  engine_events.set_all("event", s.engine_events);
  reassembly_give_ups.set_all("reason", s.reassembly_give_ups);
  responses.set_all("kind", s.responses_sent);
  impact_reports.set_all("result", s.impact_reports);
  impact_unrecorded_flows.set_all("reason", s.impact_unrecorded_flows);

  for (const auto& r : s.rules) {
    const Labels labels{{"rule", r.rule}, {"directive", r.directive}, {"action", r.action}};
    verdicts.set(labels, r.flows);
    rule_packets.set(labels, r.packets);
  }

  flow_table_entries.set({}, static_cast<double>(s.flow_table_entries));
  flow_table_capacity.set({}, static_cast<double>(s.flow_table_capacity));
  reassembly_buffers_in_use.set({}, static_cast<double>(s.reassembly_buffers_in_use));
  reassembly_buffers.set({}, static_cast<double>(s.reassembly_buffers));

  policy_revision.set({}, static_cast<double>(s.policy_revision));
  if (!s.policy_sha256.empty()) policy_info.set_only({{"sha256", s.policy_sha256}}, 1);
  policy_load_seconds.set({}, s.policy_load_seconds);
  policy_loaded_timestamp.set({}, static_cast<double>(s.policy_loaded_at));
  policy_reload_failures.set({}, s.policy_reload_failures);

  if (s.controller_enabled) {  // no series at all for a node without a controller
    controller_held_revision.set({}, static_cast<double>(s.controller_held_revision));
    controller_last_contact.set({}, static_cast<double>(s.controller_last_contact));
    controller_fetch_failures.set({}, s.controller_fetch_failures);
    controller_nacks.set({}, s.controller_nacks);
    controller_status_failures.set({}, s.controller_status_failures);
  }

  healthy.set({}, s.healthy ? 1 : 0);
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  last_update.set({}, std::chrono::duration<double>(now).count());
}

metrics_exporter::metrics_exporter(const std::string& listen_address, const label_set& node_labels)
    : impl_(std::make_unique<impl>(listen_address, checked(node_labels))) {}

metrics_exporter::~metrics_exporter() = default;

std::uint16_t metrics_exporter::port() const {
  const auto ports = impl_->exposer.GetListeningPorts();
  return ports.empty() ? 0 : static_cast<std::uint16_t>(ports.front());
}

void metrics_exporter::update(const dataplane_stats& stats) { impl_->update(stats); }

}  // namespace sluice::telemetry
