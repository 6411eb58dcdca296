#include "control/rpz/command.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

extern char** environ;

namespace sluice::control::rpz {

namespace {

constexpr std::size_t max_output = 4096;

std::string trim(std::string s) {
  const auto blank = [](char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; };
  while (!s.empty() && blank(s.back())) s.pop_back();
  std::size_t i = 0;
  while (i < s.size() && blank(s[i])) ++i;
  return s.substr(i);
}

}  // namespace

std::string command_result::describe() const {
  if (ok) return "ok";
  if (output.empty()) return error;
  // Every line (a resolver's tool may say "ok" before the line that matters), at most 512.
  std::string said;
  for (const char c : output) {
    if (said.size() >= 512) break;
    if (c == '\n') {
      said += " / ";
    } else if (c != '\r') {
      said += c;
    }
  }
  return error + ": " + said;
}

std::vector<std::string> split_command(std::string_view text) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && (text[i] == ' ' || text[i] == '\t')) ++i;
    std::size_t j = i;
    while (j < text.size() && text[j] != ' ' && text[j] != '\t') ++j;
    if (j > i) out.emplace_back(text.substr(i, j - i));
    i = j;
  }
  return out;
}

std::vector<std::string> substitute(const std::vector<std::string>& argv, std::string_view zone,
                                    std::string_view file) {
  std::vector<std::string> out;
  out.reserve(argv.size());
  for (std::string w : argv) {
    for (const auto& [key, value] : {std::pair{std::string_view("{zone}"), zone},
                                     std::pair{std::string_view("{file}"), file}}) {
      for (std::size_t at = w.find(key); at != std::string::npos;
           at = w.find(key, at + value.size())) {
        w.replace(at, key.size(), value);
      }
    }
    out.push_back(std::move(w));
  }
  return out;
}

command_result spawn_runner::run(const std::vector<std::string>& argv) {
  command_result r;
  const auto start = std::chrono::steady_clock::now();
  const auto finish = [&]() -> command_result {
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    r.output = trim(std::move(r.output));
    return r;
  };
  if (argv.empty()) {
    r.error = "no command configured";
    return finish();
  }
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    r.error = std::string("pipe: ") + std::strerror(errno);
    return finish();
  }
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&attr);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
  // The child starts with nothing blocked and default dispositions, whatever this thread has.
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  const int rc = posix_spawnp(&pid, args[0], &fa, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  close(fds[1]);
  if (rc != 0) {
    close(fds[0]);
    r.error = argv[0] + ": " + std::strerror(rc);
    return finish();
  }
  const auto deadline = start + timeout_;
  bool timed_out = false;
  char buf[1024];
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    const int n = poll(&p, 1, static_cast<int>(std::min<long long>(left.count(), 1000)));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) continue;
    const ssize_t got = read(fds[0], buf, sizeof buf);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;  // EOF: every writer (the child, its children) is gone
    if (r.output.size() < max_output)
      r.output.append(
          buf, std::min<std::size_t>(static_cast<std::size_t>(got), max_output - r.output.size()));
  }
  close(fds[0]);
  if (timed_out) kill(pid, SIGKILL);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    r.error = "timed out after " + std::to_string(timeout_.count()) + " ms (killed)";
  } else if (WIFEXITED(status)) {
    r.exit_status = WEXITSTATUS(status);
    r.ok = r.exit_status == 0;
    if (!r.ok) r.error = "exit " + std::to_string(r.exit_status);
  } else if (WIFSIGNALED(status)) {
    r.error = "killed by signal " + std::to_string(WTERMSIG(status));
  } else {
    r.error = "ended abnormally";
  }
  return finish();
}

}  // namespace sluice::control::rpz
