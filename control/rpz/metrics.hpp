#pragma once
// sluice-rpz's Prometheus metrics (prometheus-cpp), declared once at construction:
//   sluice_rpz_zone_names             gauge: names (owners) in the zone file last written
//   sluice_rpz_zone_serial            gauge: its SOA serial
//   sluice_rpz_zone_bytes             gauge: its size
//   sluice_rpz_reloads_total          counter{result="ok"|"failed"}: reload commands run
//   sluice_rpz_reload_seconds         histogram: duration of each reload command
//   sluice_rpz_failures_total         counter{stage="write"|"check"|"reload"}: failed installs
//   sluice_rpz_applied_revision       gauge: revision in force
// serve() binds an Exposer (its own threads) on "host:port"; without it the registry is only
// readable through collect() (tests).
//
// Threads: the sink calls come under the enforcer's lock; scrapes run on the Exposer's threads
// (prometheus-cpp's metrics are thread-safe). Constructor and serve() throw on failure (start-up).

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "control/rpz/enforcer.hpp"

namespace prometheus {
class Exposer;
class Registry;
class Gauge;
class Counter;
class Histogram;
struct MetricFamily;
}  // namespace prometheus

namespace sluice::control::rpz {

class rpz_metrics final : public metrics_sink {
 public:
  explicit rpz_metrics(const std::string& node_id);
  ~rpz_metrics() override;
  rpz_metrics(const rpz_metrics&) = delete;
  rpz_metrics& operator=(const rpz_metrics&) = delete;

  // Throws std::runtime_error when `listen_address` cannot be bound.
  void serve(const std::string& listen_address);
  [[nodiscard]] std::vector<prometheus::MetricFamily> collect() const;

  void zone_written(std::size_t names, std::uint32_t serial, std::size_t bytes) override;
  void reloaded(bool ok, double seconds) override;
  void failed(const char* stage) override;
  void applied(std::uint64_t revision) override;

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  prometheus::Gauge* names_ = nullptr;
  prometheus::Gauge* serial_ = nullptr;
  prometheus::Gauge* bytes_ = nullptr;
  prometheus::Counter* reloads_ok_ = nullptr;
  prometheus::Counter* reloads_failed_ = nullptr;
  prometheus::Histogram* reload_seconds_ = nullptr;
  prometheus::Counter* failed_write_ = nullptr;
  prometheus::Counter* failed_check_ = nullptr;
  prometheus::Counter* failed_reload_ = nullptr;
  prometheus::Gauge* revision_ = nullptr;
};

}  // namespace sluice::control::rpz
