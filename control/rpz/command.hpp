#pragma once
// Running the resolver's commands (reload, check) without a shell: argv as configured, each word
// one argument, "{zone}" and "{file}" in a word replaced by the zone's name and file.
//
// command_runner is the seam the enforcer takes (tests pass a fake); spawn_runner is the real one:
// posix_spawnp with the default signal mask and dispositions (sluice-rpz blocks its signals),
// stdin from /dev/null, stdout and stderr captured together (the first 4 KiB), killed (SIGKILL)
// when it outlives the timeout.
//
// Threads: run() may be called from any thread; spawn_runner holds no state.

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::control::rpz {

struct command_result {
  bool ok = false;       // started, exited, status 0
  int exit_status = -1;  // the exit status when it exited, else -1
  std::string output;    // stdout + stderr, trimmed, at most 4 KiB
  std::string error;     // why it is not ok: "exit 1", "killed by signal 9", "timed out", ...
  double seconds = 0;

  // "ok" or "<error>: <output, lines joined by " / ", at most 512 characters>" (what a NACK
  // says).
  [[nodiscard]] std::string describe() const;
};

class command_runner {
 public:
  virtual ~command_runner() = default;
  [[nodiscard]] virtual command_result run(const std::vector<std::string>& argv) = 0;
};

class spawn_runner final : public command_runner {
 public:
  explicit spawn_runner(std::chrono::milliseconds timeout = std::chrono::seconds(60))
      : timeout_(timeout) {}
  [[nodiscard]] command_result run(const std::vector<std::string>& argv) override;

 private:
  std::chrono::milliseconds timeout_;
};

// "unbound-control -c /etc/unbound/unbound.conf auth_zone_reload {zone}" -> its words (split on
// blanks; no quoting, no shell). Empty for blank text.
[[nodiscard]] std::vector<std::string> split_command(std::string_view text);
// `argv` with "{zone}" and "{file}" replaced in every word.
[[nodiscard]] std::vector<std::string> substitute(const std::vector<std::string>& argv,
                                                  std::string_view zone, std::string_view file);

}  // namespace sluice::control::rpz
