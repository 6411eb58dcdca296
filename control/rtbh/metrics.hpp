#pragma once
// sluice-rtbh's Prometheus metrics (prometheus-cpp), declared once at construction:
//   sluice_rtbh_routes                  gauge: our routes in the kernel after the last reconcile
//   sluice_rtbh_reconcile_runs_total    counter
//   sluice_rtbh_reconcile_seconds       histogram: duration of each reconcile (list + batches)
//   sluice_rtbh_netlink_errors_total    counter: requests the kernel refused, failed dumps/sends
//   sluice_rtbh_applied_revision        gauge: revision in force
// serve() binds an Exposer (its own threads) on "host:port"; without it the registry is only
// readable through collect() (tests).
//
// Threads: the sink calls come under the enforcer's lock; scrapes run on the Exposer's threads
// (prometheus-cpp's metrics are thread-safe). Constructor and serve() throw on failure (start-up).

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "control/rtbh/enforcer.hpp"

namespace prometheus {
class Exposer;
class Registry;
class Gauge;
class Counter;
class Histogram;
struct MetricFamily;
}  // namespace prometheus

namespace sluice::control::rtbh {

class rtbh_metrics final : public metrics_sink {
 public:
  explicit rtbh_metrics(const std::string& node_id);
  ~rtbh_metrics() override;
  rtbh_metrics(const rtbh_metrics&) = delete;
  rtbh_metrics& operator=(const rtbh_metrics&) = delete;

  // Throws std::runtime_error when `listen_address` cannot be bound.
  void serve(const std::string& listen_address);
  [[nodiscard]] std::vector<prometheus::MetricFamily> collect() const;

  void reconciled(double seconds, std::size_t routes, std::size_t netlink_errors) override;
  void applied(std::uint64_t revision) override;

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  prometheus::Gauge* routes_ = nullptr;
  prometheus::Counter* runs_ = nullptr;
  prometheus::Histogram* seconds_ = nullptr;
  prometheus::Counter* errors_ = nullptr;
  prometheus::Gauge* revision_ = nullptr;
};

}  // namespace sluice::control::rtbh
