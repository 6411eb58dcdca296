// kill -9 in the middle of a stream of commits: every batch commit() acknowledged must be there
// after reopening, whole, and the audit chain must verify.

#include <doctest/doctest.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <random>
#include <set>
#include <string>

#include "control/store/store.hpp"
#include "store_test_support.hpp"

namespace sluice::control::store {
namespace {

std::string batch_id(std::uint64_t n) { return "b-" + std::to_string(n); }

// The child: commits batch first, first+1, ... and writes each number to the pipe only after
// commit() returned ok. Never returns.
[[noreturn]] void writer_child(const std::string& path, std::uint64_t first, int ack_fd) {
  try {
    auto s = open_sqlite_store(path);
    for (std::uint64_t n = first;; ++n) {
      write_batch b;
      directive_record d = test::make_directive("crash", batch_id(n), static_cast<std::int64_t>(n));
      b.directives.push_back({d, 0});
      b.audit.push_back(test::make_audit("batch.committed", batch_id(n), static_cast<std::int64_t>(n)));
      b.audit.push_back(test::make_audit("batch.second", batch_id(n), static_cast<std::int64_t>(n)));
      b.revisions.push_back({n, static_cast<std::int64_t>(n), "content " + std::to_string(n), ""});
      b.meta["last_batch"] = std::to_string(n);
      if (s->commit(b).outcome != commit_outcome::ok) _exit(3);
      if (write(ack_fd, &n, sizeof n) != static_cast<ssize_t>(sizeof n)) _exit(4);
    }
  } catch (...) {
    _exit(5);
  }
}

}  // namespace

TEST_CASE("sqlite store: acknowledged commits survive SIGKILL at a random moment") {
  test::temp_dir dir;
  const std::string path = dir.file("crash.db");
  const auto seed = std::random_device{}();
  MESSAGE("seed " << seed);
  std::mt19937 rng(seed);

  std::set<std::uint64_t> acked;
  std::uint64_t next_batch = 1;
  for (int round = 0; round < 5; ++round) {
    CAPTURE(round);
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      close(fds[0]);
      writer_child(path, next_batch, fds[1]);
    }
    close(fds[1]);

    // Let it get some acks in, then kill it at a random point of whatever it is doing.
    const std::size_t wait_for = std::uniform_int_distribution<std::size_t>(3, 40)(rng);
    std::size_t got = 0;
    std::uint64_t n = 0;
    while (got < wait_for) {
      const ssize_t r = read(fds[0], &n, sizeof n);
      if (r < 0 && errno == EINTR) continue;
      REQUIRE(r == static_cast<ssize_t>(sizeof n));  // 0: the child died on its own
      acked.insert(n);
      ++got;
    }
    const timespec pause{0, std::uniform_int_distribution<long>(0, 3'000'000)(rng)};
    nanosleep(&pause, nullptr);
    REQUIRE(kill(pid, SIGKILL) == 0);
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(WIFSIGNALED(status));
    if (WIFEXITED(status)) MESSAGE("child exited with " << WEXITSTATUS(status));
    // Acks written before the kill are still in the pipe: they count too.
    for (;;) {
      const ssize_t r = read(fds[0], &n, sizeof n);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;
      REQUIRE(r == static_cast<ssize_t>(sizeof n));
      acked.insert(n);
    }
    close(fds[0]);

    auto s = open_sqlite_store(path);
    const auto latest = s->latest_revision();
    REQUIRE(latest.has_value());
    CHECK(latest->revision >= *acked.rbegin());
    for (const auto a : acked) {
      CAPTURE(a);
      CHECK(s->get_directive("crash", batch_id(a)).has_value());
      const auto rev = s->get_revision(a);
      REQUIRE(rev.has_value());
      CHECK(rev->content == "content " + std::to_string(a));
    }
    // Whole batches or nothing: one directive, two audit records and one revision each.
    const auto audit = s->audit_since(0);
    const auto report = audit::verify_chain(audit);
    CHECK_MESSAGE(report.ok, report.problem);
    CHECK(s->list_directives().size() == latest->revision);
    CHECK(audit.size() == 2 * latest->revision);
    CHECK(s->get_meta("last_batch") == std::optional<std::string>(std::to_string(latest->revision)));
    next_batch = latest->revision + 1;
  }
  MESSAGE("acknowledged batches checked: " << acked.size() << ", committed: " << next_batch - 1);
}

}  // namespace sluice::control::store
