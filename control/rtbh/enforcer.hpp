#pragma once
// The sluice-rtbh core: the agent's applier, and the reconcile loop that keeps the kernel's
// routes (ours: our table, our protocol) equal to the prefixes the policy in force wants now.
//
// apply(): parse and validate the whole policy first (nothing changes on a bad one), then
// reconcile the kernel to it, adds before removes (a changed block never has a gap). If the
// kernel refuses anything (no CAP_NET_ADMIN, a foreign route in the way) the apply fails with
// that error, the previous policy stays in force and the routes are reconciled back to it, so
// the agent NACKs and the previous routes stay.
//
// reconcile(): list our routes, add what is missing, remove what is not wanted. At start-up
// (after the agent's start() applied the persisted snapshot, or before any policy) the first
// one adopts leftovers of a previous run: wanted ones are kept as they are, others removed.
// tick(): reconciles when a rule's window opened or closed since the last reconcile.
//
// Threads: every member may be called from any thread; one mutex serialises them (the agent's
// thread applies, the main thread ticks and reconciles). Nothing throws except std::bad_alloc.

#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>

#include "control/agent/agent.hpp"
#include "control/rtbh/reconcile.hpp"
#include "control/rtbh/route_table.hpp"

namespace sluice::control::rtbh {

// Where the enforcer reports, for metrics (see metrics.hpp). Called under the enforcer's lock.
class metrics_sink {
 public:
  virtual ~metrics_sink() = default;
  virtual void reconciled(double seconds, std::size_t routes, std::size_t netlink_errors) = 0;
  virtual void applied(std::uint64_t revision) = 0;
};

struct reconcile_report {
  bool ok = false;
  std::size_t added = 0;
  std::size_t removed = 0;
  std::size_t kept = 0;    // found, wanted, left alone (the adopted ones on the first run)
  std::size_t routes = 0;  // ours in the kernel afterwards (as far as the acks tell)
  std::size_t netlink_errors = 0;
  double seconds = 0;
  std::string error;  // the first failure
  int error_number = 0;
};

struct enforcer_options {
  metrics_sink* metrics = nullptr;              // optional
  std::function<void(const std::string&)> log;  // optional, one line per call
};

class enforcer final : public agent::applier {
 public:
  // `table` and `clock` must outlive the enforcer.
  enforcer(route_table& table, agent::clock& clock, enforcer_options options = {});

  [[nodiscard]] agent::apply_result apply(const std::string& policy_text,
                                          std::uint64_t revision) override;
  [[nodiscard]] agent::applied_policy current() const override;

  reconcile_report reconcile();
  // Reconciles if a window edge passed since the last reconcile; nullopt when nothing was due.
  std::optional<reconcile_report> tick();
  // "ok", or the last reconcile's error (the agent's health).
  [[nodiscard]] std::string health() const;

 private:
  reconcile_report reconcile_locked(const rtbh_policy& p, bool adds_first_stop_on_error);
  void log(const std::string& line) const;

  route_table& table_;
  agent::clock& clock_;
  enforcer_options options_;
  mutable std::mutex mutex_;
  rtbh_policy policy_;
  std::optional<std::int64_t> next_change_;
  std::string health_ = "ok";
};

}  // namespace sluice::control::rtbh
