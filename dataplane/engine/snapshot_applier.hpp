#pragma once
// Controller mode: the node agent's (control/agent) collaborators that reach the policy holder.
//
// The agent accepts a snapshot only when its policy text parses and names the signed revision
// (agent.hpp, "Acceptance"), then has it applied, which parses the same text again to compile
// it. For a national blocklist (1,000,000 names, ~30 MB of YAML) each parse takes seconds, so
// snapshot_reader keeps what the check parsed, keyed by the exact text, and holder_applier
// compiles that when it is handed the same bytes (anything else is parsed afresh). Both also
// time their part, so /status can say what the last snapshot cost this node.
//
// Threads: snapshot_reader's verifier calls and holder_applier::apply() from the agent's thread
// only; last_snapshot() and current() from any thread.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "control/agent/agent.hpp"
#include "dataplane/engine/policy_holder.hpp"
#include "dataplane/match/policy_config.hpp"

namespace sluice::engine {

// What the last snapshot offered to apply cost (all zero before the first).
struct snapshot_figures {
  std::uint64_t revision = 0;
  std::size_t bytes = 0;          // the policy text
  double verify_seconds = 0;      // the controller's signature over it
  double parse_seconds = 0;       // reading the YAML (once: the check's parse is reused)
  double compile_seconds = 0;     // lookup structures, RCU swap
  bool parsed_once = false;       // the apply reused the check's parse
  bool ok = false;                // in force
  std::int64_t at = 0;            // unix seconds of the apply
};

class snapshot_reader final : public control::agent::snapshot_verifier {
 public:
  [[nodiscard]] control::crypto::verify_result verify(const control::crypto::public_key& key,
                                                      std::string_view policy,
                                                      std::string_view signature) override;
  // Parses `policy` (match::load_policy, no app profiles), keeps the result for take().
  [[nodiscard]] std::optional<std::uint64_t> policy_revision(const std::string& policy,
                                                             std::string& error) override;
  // The policy the last policy_revision() read, when it was given exactly `text`; forgotten
  // either way (one apply per check).
  [[nodiscard]] std::optional<match::policy_spec> take(const std::string& text,
                                                       double& parse_seconds);
  [[nodiscard]] double last_verify_seconds() const noexcept { return verify_seconds_; }

 private:
  std::string text_;
  std::optional<match::policy_spec> spec_;
  double parse_seconds_ = 0;
  double verify_seconds_ = 0;
  std::thread::id creator_ = std::this_thread::get_id();
  bool lowered_ = false;  // the agent's thread runs at nice 5 from its first snapshot on
};

// The agent's applier: snapshots go through policy_holder (compile off the hot path, RCU swap,
// the old policy stays on error).
class holder_applier final : public control::agent::applier {
 public:
  // `log` gets one line per snapshot applied or refused (the control path's log).
  holder_applier(policy_holder& h, snapshot_reader& reader,
                 std::function<void(const std::string&)> log)
      : holder_(h), reader_(reader), log_(std::move(log)) {}
  [[nodiscard]] control::agent::apply_result apply(const std::string& text,
                                                   std::uint64_t revision) override;
  [[nodiscard]] control::agent::applied_policy current() const override;
  [[nodiscard]] snapshot_figures last_snapshot() const;

 private:
  policy_holder& holder_;
  snapshot_reader& reader_;
  std::function<void(const std::string&)> log_;
  mutable std::mutex mutex_;
  snapshot_figures last_;
};

}  // namespace sluice::engine
