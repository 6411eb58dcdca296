#pragma once
// Control-thread side of the policy: load a policy file, compile it off the hot path, publish
// it to the workers by RCU, retire the old snapshot after its grace period and keep per-rule
// counters cumulative across swaps (by rule id).
//
// Threads: every member may be called from any non-worker thread (the control loop, the
// management endpoint's threads); a mutex serialises them. Workers only see
// worker_shared::policy. Nothing here blocks on the workers: a retired snapshot is freed by
// reclaim() once every worker has reported quiescence, so a stalled worker delays freeing,
// never a reload.

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "dataplane/engine/worker.hpp"
#include "dataplane/match/policy.hpp"
#include "dataplane/match/policy_config.hpp"
#include "dataplane/telemetry/stats.hpp"

namespace sluice::engine {

struct policy_status {
  std::uint64_t revision = 0;
  std::string sha256;
  std::string path;               // file in force (empty: no policy given), or the origin of
                                  // a text policy ("controller revision N")
  double load_seconds = 0;        // parse + compile time of the policy in force
  double parse_seconds = 0;       //   of which reading the text (YAML -> policy_spec)
  double compile_seconds = 0;     //   and building the lookup structures
  std::int64_t loaded_at = 0;     // unix seconds
  std::uint64_t reload_failures = 0;
  std::uint32_t rules = 0;
  std::string last_error;         // of the last refused load ("" after a success)
};

struct load_result {
  bool ok = false;
  std::uint64_t revision = 0;     // of the policy in force after the call
  std::string sha256;
  std::string error;              // "file:line:column: message" or the compile error
};

// Loads and compiles without publishing: the validation step of start-up and of reloads.
struct prepared_policy {
  std::unique_ptr<const match::compiled_policy> policy;
  std::string path;
  double load_seconds = 0;     // parse + compile
  double parse_seconds = 0;
  double compile_seconds = 0;
};
// Empty `path` = the empty policy (forward everything). Never throws except bad_alloc.
[[nodiscard]] std::optional<prepared_policy> prepare_policy(const std::filesystem::path& path,
                                                            const std::filesystem::path& apps_dir,
                                                            std::string& error);
// As above from a self-contained policy document (a controller snapshot: no `apps:`). `origin`
// names it in errors and in policy_status::path (e.g. "controller revision 7").
[[nodiscard]] std::optional<prepared_policy> prepare_policy_text(const std::string& text,
                                                                 const std::string& origin,
                                                                 std::string& error);

// As above from a policy already read (`parse_seconds`: what reading it took, for the status):
// the controller agent's acceptance check reads a snapshot's text once, and applying it should
// not read a million names again.
[[nodiscard]] std::optional<prepared_policy> prepare_policy_spec(match::policy_spec spec,
                                                                 const std::string& origin,
                                                                 double parse_seconds,
                                                                 std::string& error);

class policy_holder {
 public:
  // `shared.qsbr` must be initialised for `workers` threads.
  policy_holder(worker_shared& shared, std::uint32_t workers, std::filesystem::path apps_dir);
  // Workers must have stopped: frees the active and every retired snapshot.
  ~policy_holder();
  policy_holder(const policy_holder&) = delete;
  policy_holder& operator=(const policy_holder&) = delete;

  // Publishes an already prepared policy (start-up); `p.path` becomes the file reload() re-reads.
  void install(prepared_policy p);
  // Loads `path` (or, when empty, the path in force) and swaps it in. On error the policy in
  // force stays, reload_failures is bumped and the error returned.
  [[nodiscard]] load_result reload(const std::filesystem::path& path = {});
  // Compiles a self-contained policy document (a controller snapshot) off the hot path and
  // swaps it in like reload(); on error the policy in force stays and reload_failures is
  // bumped. A later reload() without a path re-reads the last file, not this text.
  [[nodiscard]] load_result load_text(const std::string& text, const std::string& origin);
  // load_text for a policy already read from its text (prepare_policy_spec).
  [[nodiscard]] load_result load_spec(match::policy_spec spec, const std::string& origin,
                                      double parse_seconds);

  // Frees retired snapshots whose grace period has ended, folding their rule counters into the
  // cumulative totals. Call from the control loop.
  void reclaim();

  [[nodiscard]] policy_status status() const;
  // Cumulative per-rule counters: retired snapshots folded + live ones of every snapshot still
  // held. Ordered by rule id.
  [[nodiscard]] std::vector<telemetry::rule_stats> rule_stats() const;

 private:
  struct retired {
    const active_policy* snapshot;
    std::uint64_t token;
  };
  struct rule_total {
    std::string directive;
    std::string action;
    std::uint64_t flows = 0;
    std::uint64_t packets = 0;
  };
  void publish_locked(prepared_policy p);
  [[nodiscard]] load_result finish_load_locked(std::optional<prepared_policy> p, std::string error);
  void fold_locked(const active_policy& a, std::map<std::string, rule_total>& into) const;

  worker_shared& shared_;
  std::uint32_t workers_;
  std::filesystem::path apps_dir_;
  mutable std::mutex mutex_;
  std::mutex load_mutex_;  // one load at a time, so the last one started is the one in force
  const active_policy* active_ = nullptr;
  std::vector<retired> retired_;
  std::map<std::string, rule_total> totals_;
  std::uint64_t generation_ = 0;
  policy_status status_;
  std::filesystem::path file_;  // the last policy file in force, what reload() re-reads
};

}  // namespace sluice::engine
