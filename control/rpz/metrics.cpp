#include "control/rpz/metrics.hpp"

#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <cstring>

namespace sluice::control::rpz {

rpz_metrics::rpz_metrics(const std::string& node_id)
    : registry_(std::make_shared<prometheus::Registry>()) {
  prometheus::Labels labels;
  if (!node_id.empty()) labels["node"] = node_id;
  const auto gauge = [&](const char* name, const char* help) {
    return &prometheus::BuildGauge()
                .Name(name)
                .Help(help)
                .Labels(labels)
                .Register(*registry_)
                .Add({});
  };
  names_ =
      gauge("sluice_rpz_zone_names", "Names (owners) in the Response Policy Zone last written");
  serial_ = gauge("sluice_rpz_zone_serial", "SOA serial of the zone last written");
  bytes_ = gauge("sluice_rpz_zone_bytes", "Size of the zone file last written");
  revision_ = gauge("sluice_rpz_applied_revision", "Revision of the policy in force");
  auto& reloads = prometheus::BuildCounter()
                      .Name("sluice_rpz_reloads_total")
                      .Help("Reload commands run, by result")
                      .Labels(labels)
                      .Register(*registry_);
  reloads_ok_ = &reloads.Add({{"result", "ok"}});
  reloads_failed_ = &reloads.Add({{"result", "failed"}});
  reload_seconds_ = &prometheus::BuildHistogram()
                         .Name("sluice_rpz_reload_seconds")
                         .Help("Duration of a reload command (the resolver loading the zone)")
                         .Labels(labels)
                         .Register(*registry_)
                         .Add({}, prometheus::Histogram::BucketBoundaries{0.01, 0.05, 0.1, 0.5, 1,
                                                                          2, 5, 10, 30, 60});
  auto& failures = prometheus::BuildCounter()
                       .Name("sluice_rpz_failures_total")
                       .Help("Zone installs that failed, by stage (write, check, reload)")
                       .Labels(labels)
                       .Register(*registry_);
  failed_write_ = &failures.Add({{"stage", "write"}});
  failed_check_ = &failures.Add({{"stage", "check"}});
  failed_reload_ = &failures.Add({{"stage", "reload"}});
}

rpz_metrics::~rpz_metrics() = default;

void rpz_metrics::serve(const std::string& listen_address) {
  exposer_ = std::make_unique<prometheus::Exposer>(listen_address);
  exposer_->RegisterCollectable(registry_);
}

std::vector<prometheus::MetricFamily> rpz_metrics::collect() const { return registry_->Collect(); }

void rpz_metrics::zone_written(std::size_t names, std::uint32_t serial, std::size_t bytes) {
  names_->Set(static_cast<double>(names));
  serial_->Set(static_cast<double>(serial));
  bytes_->Set(static_cast<double>(bytes));
}

void rpz_metrics::reloaded(bool ok, double seconds) {
  (ok ? reloads_ok_ : reloads_failed_)->Increment();
  reload_seconds_->Observe(seconds);
}

void rpz_metrics::failed(const char* stage) {
  if (std::strcmp(stage, "write") == 0) {
    failed_write_->Increment();
  } else if (std::strcmp(stage, "check") == 0) {
    failed_check_->Increment();
  } else {
    failed_reload_->Increment();
  }
}

void rpz_metrics::applied(std::uint64_t revision) { revision_->Set(static_cast<double>(revision)); }

}  // namespace sluice::control::rpz
