#include "control/rtbh/metrics.hpp"

#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

namespace sluice::control::rtbh {

rtbh_metrics::rtbh_metrics(const std::string& node_id)
    : registry_(std::make_shared<prometheus::Registry>()) {
  prometheus::Labels labels;
  if (!node_id.empty()) labels["node"] = node_id;
  routes_ = &prometheus::BuildGauge()
                 .Name("sluice_rtbh_routes")
                 .Help("Sluice blackhole routes in the kernel table after the last reconcile")
                 .Labels(labels)
                 .Register(*registry_)
                 .Add({});
  runs_ = &prometheus::BuildCounter()
               .Name("sluice_rtbh_reconcile_runs_total")
               .Help("Reconciles of the kernel table against the policy in force")
               .Labels(labels)
               .Register(*registry_)
               .Add({});
  seconds_ = &prometheus::BuildHistogram()
                  .Name("sluice_rtbh_reconcile_seconds")
                  .Help("Duration of a reconcile (route dump and netlink batches)")
                  .Labels(labels)
                  .Register(*registry_)
                  .Add({}, prometheus::Histogram::BucketBoundaries{0.001, 0.005, 0.01, 0.05, 0.1,
                                                                   0.5, 1, 2, 5, 10, 30});
  errors_ = &prometheus::BuildCounter()
                 .Name("sluice_rtbh_netlink_errors_total")
                 .Help("Netlink requests the kernel refused, and failed dumps or sends")
                 .Labels(labels)
                 .Register(*registry_)
                 .Add({});
  revision_ = &prometheus::BuildGauge()
                   .Name("sluice_rtbh_applied_revision")
                   .Help("Revision of the policy in force")
                   .Labels(labels)
                   .Register(*registry_)
                   .Add({});
}

rtbh_metrics::~rtbh_metrics() = default;

void rtbh_metrics::serve(const std::string& listen_address) {
  exposer_ = std::make_unique<prometheus::Exposer>(listen_address);
  exposer_->RegisterCollectable(registry_);
}

std::vector<prometheus::MetricFamily> rtbh_metrics::collect() const { return registry_->Collect(); }

void rtbh_metrics::reconciled(double seconds, std::size_t routes, std::size_t netlink_errors) {
  runs_->Increment();
  seconds_->Observe(seconds);
  routes_->Set(static_cast<double>(routes));
  if (netlink_errors > 0) errors_->Increment(static_cast<double>(netlink_errors));
}

void rtbh_metrics::applied(std::uint64_t revision) {
  revision_->Set(static_cast<double>(revision));
}

}  // namespace sluice::control::rtbh
