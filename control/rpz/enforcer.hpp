#pragma once
// The sluice-rpz core: the agent's applier, which keeps the resolver's Response Policy Zone equal
// to what the policy in force wants now.
//
// Installing a zone: the next serial (next_serial: rising across restarts, since the one in the
// file on disk is read at construction, and across failures, since a serial once written is
// never reused), the text rendered, written to ZONE_FILE.tmp and fsynced, checked by the check
// command when one is configured (it reads {file} = the temp file), renamed over the zone file,
// the directory fsynced, then the reload command run. The resolver takes the file by name, so it
// only ever sees a whole zone.
//
// apply(): parse and validate the whole policy first (nothing changes on a bad one), then
// install. If the write, the check or the reload fails, the snapshot is refused with that error
// (the agent NACKs it) and the previous zone stays in force: the file is put back as it was
// before (with a new serial) and the resolver told to reload it again, since a resolver whose
// reload "failed" may still have taken the new file.
//
// tick(): installs the zone again when a rule's window opened or closed (no rollback: the file
// then says what the policy wants now). retry(): when the last reload failed (resolver down),
// runs the reload again for the file on disk.
//
// Threads: every member may be called from any thread; one mutex serialises them (the agent's
// thread applies, the main thread ticks). Nothing throws except std::bad_alloc.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "control/agent/agent.hpp"
#include "control/rpz/command.hpp"
#include "control/rpz/zone.hpp"

namespace sluice::control::rpz {

// Where the enforcer reports, for metrics (see metrics.hpp). Called under the enforcer's lock.
class metrics_sink {
 public:
  virtual ~metrics_sink() = default;
  // A zone file written (and renamed into place): its names, serial and size.
  virtual void zone_written(std::size_t names, std::uint32_t serial, std::size_t bytes) = 0;
  virtual void reloaded(bool ok, double seconds) = 0;
  // An install that failed, by stage: "write", "check" or "reload".
  virtual void failed(const char* stage) = 0;
  virtual void applied(std::uint64_t revision) = 0;
};

struct enforcer_config {
  zone_config zone;                 // normalize_config'd
  std::filesystem::path zone_file;  // the resolver's zonefile
  std::vector<std::string> reload;  // argv; {zone}, {file} replaced
  std::vector<std::string> check;   // argv or empty; {file} is the temp file
};

struct install_report {
  bool ok = false;
  std::size_t names = 0;
  std::uint32_t serial = 0;
  std::size_t bytes = 0;
  double render_seconds = 0;
  double write_seconds = 0;
  double reload_seconds = 0;
  std::string error;  // "write: ...", "check: ...", "reload: ..."
};

struct enforcer_options {
  metrics_sink* metrics = nullptr;              // optional
  std::function<void(const std::string&)> log;  // optional, one line per call
};

class enforcer final : public agent::applier {
 public:
  // `runner` and `clock` must outlive the enforcer. Reads the zone file if there is one (its
  // serial, and its text as the zone to restore).
  enforcer(enforcer_config config, command_runner& runner, agent::clock& clock,
           enforcer_options options = {});

  [[nodiscard]] agent::apply_result apply(const std::string& policy_text,
                                          std::uint64_t revision) override;
  [[nodiscard]] agent::applied_policy current() const override;

  // Installs the zone of the policy in force (at start without a persisted snapshot: the empty
  // zone; nothing unverified stays in force).
  install_report install_current();
  // Installs again if a window edge passed since the last install; nullopt when nothing was due.
  std::optional<install_report> tick();
  // Reloads the file on disk again if the last reload failed; nullopt when it did not.
  std::optional<command_result> retry();
  // "ok", or the last failure (the agent's health).
  [[nodiscard]] std::string health() const;
  [[nodiscard]] std::uint32_t serial() const;
  // The last reload failed (retry() is due).
  [[nodiscard]] bool reload_pending() const;

 private:
  install_report install_locked(const rpz_policy& p, const std::string& text_or_empty);
  bool write_file(const std::string& text, install_report& rep);
  command_result reload_locked();
  void log(const std::string& line) const;

  enforcer_config config_;
  command_runner& runner_;
  agent::clock& clock_;
  enforcer_options options_;
  mutable std::mutex mutex_;
  rpz_policy policy_;
  std::optional<std::int64_t> next_change_;
  std::uint32_t serial_ = 0;
  std::optional<std::string> on_disk_;  // the zone file's text as we last wrote or found it
  std::size_t names_on_disk_ = 0;       // its names
  bool reload_pending_ = false;         // the last reload failed
  std::string health_ = "ok";
};

}  // namespace sluice::control::rpz
