// Controller mode's applier (dataplane/engine/snapshot_applier.hpp): the agent's acceptance
// check reads a snapshot's policy text once and the apply compiles that reading, but only for
// the very bytes that were checked; anything else is read afresh. And the figures /status shows.
#include "dataplane/engine/snapshot_applier.hpp"

#include <doctest/doctest.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <string>
#include <thread>
#include <vector>

namespace engine = sluice::engine;

namespace {

std::string policy(unsigned revision, const std::string& domain) {
  return "revision: " + std::to_string(revision) +
         "\ngenerated_at: 2026-01-01T00:00:00Z\nrules:\n"
         "  - id: r1\n    directive: D-1\n    action: drop\n"
         "    prefixes: [\"149.154.160.0/20\"]\n    domains: [\"" + domain + "\"]\n";
}

}  // namespace

TEST_CASE("snapshot applier: the checked reading is compiled once, and only for its own bytes") {
  engine::worker_shared shared;  // no workers, no QSBR: swaps retire at once
  engine::policy_holder holder(shared, 1, {});
  engine::snapshot_reader reader;
  std::vector<std::string> log;
  engine::holder_applier applier(holder, reader, [&](const std::string& l) { log.push_back(l); });
  CHECK(applier.last_snapshot().revision == 0);

  const std::string a = policy(7, "telegram.org");
  std::string error;
  REQUIRE(reader.policy_revision(a, error) == 7u);
  const auto r = applier.apply(a, 7);
  REQUIRE(r.ok);
  CHECK(holder.status().revision == 7);
  CHECK(applier.current().revision == 7);
  auto f = applier.last_snapshot();
  CHECK(f.revision == 7);
  CHECK(f.bytes == a.size());
  CHECK(f.parsed_once);
  CHECK(f.ok);
  CHECK(f.parse_seconds > 0);
  CHECK(f.compile_seconds > 0);
  CHECK(holder.status().parse_seconds == f.parse_seconds);
  REQUIRE(log.size() == 1);
  CHECK(log[0].find("policy revision 7 in force") != std::string::npos);

  // The reading is taken once: the same bytes again are read again.
  REQUIRE(applier.apply(a, 7).ok);
  CHECK_FALSE(applier.last_snapshot().parsed_once);

  // Checked one text, handed another: the other is read and compiled, never the checked one.
  const std::string b = policy(8, "t.me");
  const std::string c = policy(9, "telegram.me");
  REQUIRE(reader.policy_revision(b, error) == 8u);
  REQUIRE(applier.apply(c, 9).ok);
  f = applier.last_snapshot();
  CHECK_FALSE(f.parsed_once);
  CHECK(holder.status().revision == 9);
  double ignored = 0;
  CHECK_FALSE(reader.take(b, ignored));  // forgotten by the apply

  // A text that does not parse leaves nothing to take, and its apply is refused.
  CHECK_FALSE(reader.policy_revision("revision: [", error));
  CHECK_FALSE(error.empty());
  const auto bad = applier.apply("revision: [", 10);
  CHECK_FALSE(bad.ok);
  CHECK_FALSE(applier.last_snapshot().ok);
  CHECK(holder.status().revision == 9);
}

// The agent's thread reads and compiles snapshots for up to a minute on cores the workers may
// share (issue 16: workers missed their 1 s heartbeat during a 1,000,000-name parse); it runs
// below them. The thread that built the reader (start-up check, then the control loop) does not.
TEST_CASE("snapshot reader: the agent's thread runs at nice 5, the thread that built it stays") {
  const auto nice_of_this_thread = [] {
    return getpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)));
  };
  const int before = nice_of_this_thread();
  engine::snapshot_reader reader;
  std::string error;
  REQUIRE(reader.policy_revision(policy(1, "telegram.org"), error) == 1u);
  CHECK(nice_of_this_thread() == before);
  int agent_nice = -100;
  std::thread agent([&] {
    std::string e;
    (void)reader.policy_revision(policy(2, "t.me"), e);
    agent_nice = nice_of_this_thread();
  });
  agent.join();
  if (before <= 5) CHECK(agent_nice == 5);  // (run under a higher nice, it may stay there)
  CHECK(nice_of_this_thread() == before);
}
