#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "control/store/store.hpp"
#include "store_test_support.hpp"

namespace sluice::control::store {
namespace {

using test::check_same;
using test::make_audit;
using test::make_directive;
using test::make_node;
using test::raw_sql;
using test::temp_dir;

write_batch put(const directive_record& d, std::uint64_t expected) {
  write_batch b;
  b.directives.push_back({d, expected});
  return b;
}

std::uint64_t store_revision_after_noop(store& s) {
  const auto r = s.commit(write_batch{});
  REQUIRE(r.outcome == commit_outcome::ok);
  return r.store_revision;
}

}  // namespace

TEST_CASE("sqlite store: a fresh store is empty") {
  temp_dir dir;
  auto s = open_sqlite_store(dir.file("fresh.db"));
  CHECK_FALSE(s->get_directive("mincom", "d-1").has_value());
  CHECK(s->list_directives().empty());
  CHECK(s->audit_since(0).empty());
  CHECK_FALSE(s->audit_head().has_value());
  CHECK_FALSE(s->latest_revision().has_value());
  CHECK_FALSE(s->get_revision(1).has_value());
  CHECK_FALSE(s->get_meta("rollout").has_value());
  CHECK(s->list_nodes().empty());
}

TEST_CASE("sqlite store: every record type round-trips, versions follow the store revision") {
  temp_dir dir;
  auto s = open_sqlite_store(dir.file("rt.db"));

  directive_record d = make_directive("mincom", "d-1");
  d.approvals = {{"alice", 1700000050}, {"bob", 1700000060}};
  d.end_reason = "";
  d.version = 777;  // ignored: the store assigns versions
  revision_record rev{1, 1700000070, "revision: 1\nrules: []\n", "directive approved: mincom/d-1"};
  const node_record node = make_node("node-1");

  write_batch b = put(d, 0);
  b.audit = {make_audit("directive.submitted", "mincom/d-1", 1),
             make_audit("directive.approved", "mincom/d-1", 2)};
  b.audit[1].detail = R"({"actor":"alice","note":"ünïcode"})";
  b.revisions = {rev};
  b.meta = {{"rollout", R"({"stage":1})"}, {"emergency_stop", ""}};
  b.nodes = {node};

  const auto r1 = s->commit(b);
  REQUIRE(r1.outcome == commit_outcome::ok);
  CHECK(static_cast<bool>(r1));
  CHECK(r1.error.empty());
  CHECK(r1.store_revision == 1);
  CHECK(r1.audit_seqs == std::vector<std::uint64_t>{1, 2});

  const auto got = s->get_directive("mincom", "d-1");
  REQUIRE(got.has_value());
  check_same(*got, d);
  CHECK(got->version == 1);

  const auto audit = s->audit_since(0);
  REQUIRE(audit.size() == 2);
  CHECK(audit[0].seq == 1);
  CHECK(audit[0].at == 1);
  CHECK(audit[0].event == "directive.submitted");
  CHECK(audit[0].actor == "controller");
  CHECK(audit[0].subject == "mincom/d-1");
  CHECK(audit[0].prev_hash == audit::genesis_hash());
  CHECK(audit[1].detail == R"({"actor":"alice","note":"ünïcode"})");
  CHECK(audit[1].prev_hash == audit[0].hash);
  CHECK(audit::verify_chain(audit).ok);
  REQUIRE(s->audit_head().has_value());
  CHECK(s->audit_head()->hash == audit[1].hash);

  const auto latest = s->latest_revision();
  REQUIRE(latest.has_value());
  CHECK(latest->revision == 1);
  CHECK(latest->generated_at == rev.generated_at);
  CHECK(latest->content == rev.content);
  CHECK(latest->reason == rev.reason);

  CHECK(s->get_meta("rollout") == std::optional<std::string>(R"({"stage":1})"));
  CHECK(s->get_meta("emergency_stop") == std::optional<std::string>(""));
  CHECK_FALSE(s->get_meta("other").has_value());

  auto nodes = s->list_nodes();
  REQUIRE(nodes.size() == 1);
  check_same(nodes[0], node);

  // Second commit: CAS update of the directive, next revision, node and meta upserts.
  d.state = "ended";
  d.end_reason = "revoked";
  d.ended_at = 1700000999;
  d.approvals.push_back({"carol", 1700000070, "approve", ""});
  node_record node2 = node;
  node2.labels = {{"site", "b"}};
  node2.nack = false;
  node2.error = "";
  node2.health = "ring full";
  node2.audit_checkpoint_conflict = "{\"count\":12}";
  write_batch b2 = put(d, 1);
  b2.revisions = {{2, 1700000080, "revision: 2\n", "revoked"}};
  b2.meta = {{"rollout", "{}"}};
  b2.nodes = {node2, make_node("node-0")};
  b2.audit = {make_audit("directive.revoked", "mincom/d-1", 3)};
  const auto r2 = s->commit(b2);
  REQUIRE(r2.outcome == commit_outcome::ok);
  CHECK(r2.store_revision == 2);
  CHECK(r2.audit_seqs == std::vector<std::uint64_t>{3});

  const auto got2 = s->get_directive("mincom", "d-1");
  REQUIRE(got2.has_value());
  check_same(*got2, d);
  CHECK(got2->version == 2);
  CHECK(s->latest_revision()->revision == 2);
  CHECK(s->get_revision(1)->content == rev.content);
  CHECK(s->get_revision(2)->reason == "revoked");
  CHECK_FALSE(s->get_revision(3).has_value());
  CHECK_FALSE(s->get_revision(std::numeric_limits<std::uint64_t>::max()).has_value());
  CHECK(s->get_meta("rollout") == std::optional<std::string>("{}"));
  CHECK(s->get_meta("emergency_stop") == std::optional<std::string>(""));  // untouched
  nodes = s->list_nodes();
  REQUIRE(nodes.size() == 2);  // by node_id
  check_same(nodes[0], make_node("node-0"));
  check_same(nodes[1], node2);
  CHECK(s->audit_since(0).size() == 3);
  CHECK(audit::verify_chain(s->audit_since(0)).ok);
}

TEST_CASE("sqlite store: list_directives orders by received_at, then issuer/id") {
  temp_dir dir;
  auto s = open_sqlite_store(dir.file("order.db"));
  write_batch b;
  test::add_order_directives(b);
  REQUIRE(s->commit(b).outcome == commit_outcome::ok);
  test::check_directive_order(*s);
}

TEST_CASE("sqlite store: audit_since pages by seq") {
  temp_dir dir;
  auto s = open_sqlite_store(dir.file("page.db"));
  write_batch b;
  test::add_ten_audit_records(b);
  REQUIRE(s->commit(b).outcome == commit_outcome::ok);
  test::check_audit_paging(*s);
}

TEST_CASE("sqlite store: CAS conflicts and revision gaps are refused and change nothing") {
  struct row {
    const char* description;
    std::function<write_batch()> batch;  // the refused part; the rest is added below
    commit_outcome outcome;
    std::string error;
  };
  // State before each row: mincom/d-1 at version 2 (put at 1, updated at 2), revision 1.
  const std::vector<row> rows = {
      {"insert of an existing directive", [] { return put(make_directive("mincom", "d-1"), 0); },
       commit_outcome::conflict,
       "directive mincom/d-1 already exists (version 2); the batch expected it not to exist"},
      {"stale version", [] { return put(make_directive("mincom", "d-1"), 1); },
       commit_outcome::conflict,
       "directive mincom/d-1 is at version 2; the batch expected version 1"},
      {"future version", [] { return put(make_directive("mincom", "d-1"), 3); },
       commit_outcome::conflict,
       "directive mincom/d-1 is at version 2; the batch expected version 3"},
      {"update of a missing directive", [] { return put(make_directive("mincom", "d-9"), 5); },
       commit_outcome::conflict,
       "directive mincom/d-9 does not exist; the batch expected version 5"},
      {"revision gap",
       [] {
         write_batch b;
         b.revisions = {{3, 1, "r3", "gap"}};
         return b;
       },
       commit_outcome::conflict, "revision 3 is not the next one (latest is 1, so the next is 2)"},
      {"revision replayed",
       [] {
         write_batch b;
         b.revisions = {{1, 1, "r1 again", "replay"}};
         return b;
       },
       commit_outcome::conflict, "revision 1 is not the next one (latest is 1, so the next is 2)"},
      {"revisions out of order within the batch",
       [] {
         write_batch b;
         b.revisions = {{2, 1, "r2", ""}, {4, 1, "r4", ""}};
         return b;
       },
       commit_outcome::conflict, "revision 4 is not the next one (latest is 2, so the next is 3)"},
      {"revision 0",
       [] {
         write_batch b;
         b.revisions = {{0, 1, "r0", ""}};
         return b;
       },
       commit_outcome::failed, "invalid batch: revision number 0 out of range"},
      {"same directive twice in one batch",
       [] {
         write_batch b = put(make_directive("mincom", "d-5"), 0);
         b.directives.push_back({make_directive("mincom", "d-5"), 0});
         return b;
       },
       commit_outcome::failed, "invalid batch: directive mincom/d-5 put twice"},
      {"node revision beyond int64",
       [] {
         write_batch b;
         b.nodes = {make_node("node-big")};
         b.nodes[0].applied_revision = std::numeric_limits<std::uint64_t>::max();
         return b;
       },
       commit_outcome::failed, "invalid batch: node node-big: revision number too large"},
      {"approval actor not UTF-8",
       [] {
         directive_record d = make_directive("mincom", "d-6");
         d.approvals = {{"bad\xff", 1}};
         return put(d, 0);
       },
       commit_outcome::failed, ""},  // nlohmann's message; checked by prefix below
  };
  for (const auto& r : rows) {
    CAPTURE(r.description);
    temp_dir dir;
    auto s = open_sqlite_store(dir.file("cas.db"));
    {
      write_batch setup = put(make_directive("mincom", "d-1"), 0);
      setup.revisions = {{1, 1, "r1", "first"}};
      setup.audit = {make_audit("directive.submitted", "mincom/d-1")};
      setup.nodes = {make_node("node-1")};
      REQUIRE(s->commit(setup).outcome == commit_outcome::ok);
      directive_record upd = make_directive("mincom", "d-1");
      upd.state = "active";
      REQUIRE(s->commit(put(upd, 1)).outcome == commit_outcome::ok);
    }
    const auto head_before = s->audit_head();
    REQUIRE(head_before.has_value());
    const auto d1_before = s->get_directive("mincom", "d-1");
    REQUIRE(d1_before.has_value());
    REQUIRE(d1_before->version == 2);

    // The refused part rides with valid changes of every kind: none of them may land.
    write_batch b = r.batch();
    b.directives.insert(b.directives.begin(), {make_directive("mincom", "d-new"), 0});
    b.audit.push_back(make_audit("directive.submitted", "mincom/d-new"));
    b.meta["rollout"] = "changed";
    node_record n = make_node("node-1");
    n.health = "changed";
    b.nodes.push_back(n);

    const auto res = s->commit(b);
    CHECK(res.outcome == r.outcome);
    CHECK_FALSE(static_cast<bool>(res));
    if (!r.error.empty()) {
      CHECK(res.error == r.error);
    } else {
      CHECK(res.error.rfind("invalid batch: directive mincom/d-6: approvals: ", 0) == 0);
    }
    CHECK(res.store_revision == 0);
    CHECK(res.audit_seqs.empty());

    CHECK(s->audit_head()->hash == head_before->hash);
    CHECK(s->audit_head()->seq == head_before->seq);
    CHECK(s->audit_since(0).size() == 1);
    CHECK_FALSE(s->get_directive("mincom", "d-new").has_value());
    CHECK(s->get_directive("mincom", "d-1")->version == 2);
    CHECK(s->get_directive("mincom", "d-1")->state == "active");
    CHECK(s->latest_revision()->revision == 1);
    CHECK_FALSE(s->get_meta("rollout").has_value());
    CHECK(s->list_nodes().at(0).health == "ok");
    // The store revision did not move either: the next commit is 3.
    CHECK(store_revision_after_noop(*s) == 3);
  }
}

TEST_CASE("sqlite store: the first revision must be 1") {
  temp_dir dir;
  auto s = open_sqlite_store(dir.file("rev.db"));
  write_batch b;
  b.revisions = {{2, 1, "r2", ""}};
  const auto res = s->commit(b);
  CHECK(res.outcome == commit_outcome::conflict);
  CHECK(res.error == "revision 2 is not the next one (none stored yet, so the next is 1)");
  b.revisions = {{1, 1, "r1", ""}, {2, 1, "r2", ""}, {3, 1, "r3", ""}};
  REQUIRE(s->commit(b).outcome == commit_outcome::ok);
  CHECK(s->latest_revision()->revision == 3);
  CHECK(s->get_revision(2)->content == "r2");
}

TEST_CASE("sqlite store: the audit chain across many commits verifies, and edits are caught") {
  temp_dir dir;
  const std::string path = dir.file("chain.db");
  std::uint64_t expected_seq = 0;
  {
    auto s = open_sqlite_store(path);
    for (int c = 0; c < 60; ++c) {
      write_batch b;
      for (int k = 0; k <= c % 3; ++k) {
        b.audit.push_back(make_audit("event." + std::to_string(c), "s" + std::to_string(k), c));
      }
      const auto res = s->commit(b);
      REQUIRE(res.outcome == commit_outcome::ok);
      for (auto seq : res.audit_seqs) CHECK(seq == ++expected_seq);
    }
    const auto all = s->audit_since(0);
    CHECK(all.size() == expected_seq);
    const auto rep = audit::verify_chain(all);
    CHECK(rep.ok);
    CHECK(rep.records == expected_seq);
    CHECK(rep.head_hash == s->audit_head()->hash);
  }
  // Edits made behind the store's back, as the integration test does with python's sqlite3.
  raw_sql(path, "UPDATE audit SET detail = '{\"why\":\"forged\"}' WHERE seq = 17");
  {
    auto s = open_sqlite_store(path);
    const auto rep = audit::verify_chain(s->audit_since(0));
    CHECK_FALSE(rep.ok);
    CHECK(rep.bad_seq == 17);
    CHECK(rep.problem == "record 17: hash does not match its contents (edited)");
  }
  raw_sql(path, "DELETE FROM audit WHERE seq IN (16, 17)");
  {
    auto s = open_sqlite_store(path);
    const auto rep = audit::verify_chain(s->audit_since(0));
    CHECK(rep.bad_seq == 18);
    CHECK(rep.problem == "record 18 follows record 15 (records 16..17 removed)");
  }
}

TEST_CASE("sqlite store: reopening keeps everything and carries on from it") {
  temp_dir dir;
  const std::string path = dir.file("reopen.db");
  {
    auto s = open_sqlite_store(path);
    write_batch b = put(make_directive("mincom", "d-1"), 0);
    b.audit = {make_audit("directive.submitted", "mincom/d-1")};
    b.revisions = {{1, 5, "r1", "first"}};
    b.meta = {{"k", "v"}};
    b.nodes = {make_node("node-1")};
    REQUIRE(s->commit(b).outcome == commit_outcome::ok);
  }
  {
    auto s = open_sqlite_store(path);
    REQUIRE(s->get_directive("mincom", "d-1").has_value());
    check_same(*s->get_directive("mincom", "d-1"), make_directive("mincom", "d-1"));
    CHECK(s->get_directive("mincom", "d-1")->version == 1);
    CHECK(s->audit_since(0).size() == 1);
    CHECK(s->latest_revision()->content == "r1");
    CHECK(s->get_meta("k") == std::optional<std::string>("v"));
    REQUIRE(s->list_nodes().size() == 1);
    check_same(s->list_nodes()[0], make_node("node-1"));

    write_batch b = put(make_directive("mincom", "d-1"), 1);
    b.audit = {make_audit("directive.approved", "mincom/d-1")};
    b.revisions = {{2, 6, "r2", "second"}};
    const auto res = s->commit(b);
    REQUIRE(res.outcome == commit_outcome::ok);
    CHECK(res.store_revision == 2);
    CHECK(res.audit_seqs == std::vector<std::uint64_t>{2});
  }
  auto s = open_sqlite_store(path);
  CHECK(s->get_directive("mincom", "d-1")->version == 2);
  CHECK(audit::verify_chain(s->audit_since(0)).ok);
  CHECK(s->audit_since(0).size() == 2);
  CHECK(s->latest_revision()->revision == 2);
}

TEST_CASE("sqlite store: files that are not a Sluice database of this version are refused") {
  temp_dir dir;
  auto refused = [](const std::string& path) -> std::string {
    try {
      auto s = open_sqlite_store(path);
    } catch (const store_error& e) {
      return e.what();
    }
    return "(opened)";
  };

  SUBCASE("not SQLite at all, and left untouched") {
    const std::string path = dir.file("text.db");
    std::string junk;
    for (int i = 0; i < 400; ++i) junk += "this is not a database\n";
    std::ofstream(path, std::ios::binary) << junk;
    CHECK(refused(path) ==
          "cannot open store " + path + ": not a Sluice database (not an SQLite file at all)");
    std::ifstream in(path, std::ios::binary);
    CHECK(std::string(std::istreambuf_iterator<char>(in), {}) == junk);
  }
  SUBCASE("another program's SQLite database, left in its journal mode") {
    const std::string path = dir.file("other.db");
    raw_sql(path, "CREATE TABLE t (x INTEGER)");
    CHECK(refused(path) == "cannot open store " + path +
                               ": not a Sluice database (it has tables but no Sluice "
                               "application_id)");
    CHECK_FALSE(std::filesystem::exists(path + "-wal"));
  }
  SUBCASE("another application_id") {
    const std::string path = dir.file("appid.db");
    raw_sql(path, "PRAGMA application_id = 42");
    CHECK(refused(path) ==
          "cannot open store " + path + ": not a Sluice database (application_id 42)");
  }
  SUBCASE("a newer schema") {
    const std::string path = dir.file("newer.db");
    { auto s = open_sqlite_store(path); }
    raw_sql(path, "PRAGMA user_version = 4");
    CHECK(refused(path) == "cannot open store " + path +
                               ": schema version 4 is newer than this build's 3; upgrade Sluice");
  }
  SUBCASE("a version 1 store is upgraded in place and keeps its records") {
    const std::string path = dir.file("v1.db");
    {
      auto s = open_sqlite_store(path);
      write_batch b;
      b.directives.push_back({make_directive("moc", "A"), 0});
      REQUIRE(s->commit(b));
    }
    raw_sql(path, "DROP TABLE impacts");
    raw_sql(path, "DROP TABLE inventory");
    raw_sql(path, "ALTER TABLE nodes DROP COLUMN audit_checkpoint");
    raw_sql(path, "ALTER TABLE nodes DROP COLUMN audit_checkpoint_conflict");
    raw_sql(path, "PRAGMA user_version = 1");
    auto s = open_sqlite_store(path);
    CHECK(s->get_directive("moc", "A").has_value());
    write_batch b;
    b.impacts.push_back({"edge-1", 100, 130, 7, "{}"});
    b.inventory.push_back(test::make_inventory("edge-1"));
    b.nodes.push_back(make_node("edge-1"));
    CHECK(s->commit(b));
    CHECK(s->list_impacts(0).size() == 1);
    CHECK(s->list_inventory().size() == 1);
    REQUIRE(s->list_nodes().size() == 1);
    check_same(s->list_nodes()[0], make_node("edge-1"));
  }
  SUBCASE("a version 2 store gains the inventory and the nodes' checkpoint columns, keeping its records") {
    const std::string path = dir.file("v2.db");
    {
      auto s = open_sqlite_store(path);
      write_batch b;
      b.impacts.push_back({"edge-1", 100, 130, 7, "{}"});
      b.nodes.push_back(make_node("edge-1"));
      REQUIRE(s->commit(b));
    }
    raw_sql(path, "DROP TABLE inventory");
    raw_sql(path, "ALTER TABLE nodes DROP COLUMN audit_checkpoint");
    raw_sql(path, "ALTER TABLE nodes DROP COLUMN audit_checkpoint_conflict");
    raw_sql(path, "PRAGMA user_version = 2");
    auto s = open_sqlite_store(path);
    CHECK(s->list_impacts(0).size() == 1);
    CHECK(s->list_inventory().empty());
    REQUIRE(s->list_nodes().size() == 1);
    CHECK(s->list_nodes()[0].audit_checkpoint.empty());
    CHECK(s->list_nodes()[0].applied_revision == 3);
    write_batch b;
    b.inventory.push_back(test::make_inventory("edge-1"));
    b.nodes.push_back(make_node("edge-1"));
    CHECK(s->commit(b));
    CHECK(s->list_inventory().size() == 1);
    check_same(s->list_nodes()[0], make_node("edge-1"));
    s.reset();
    CHECK(refused(path) == "(opened)");  // upgraded once: version 3 now
  }
  SUBCASE("a directory that does not exist") {
    const std::string path = dir.file("missing/dir/x.db");
    CHECK(refused(path).rfind("cannot open store " + path + ": ", 0) == 0);
  }
  SUBCASE("an empty file is a new store") {
    const std::string path = dir.file("empty.db");
    std::ofstream(path, std::ios::binary).flush();
    CHECK(refused(path) == "(opened)");
    auto s = open_sqlite_store(path);
    CHECK(s->commit(write_batch{}).outcome == commit_outcome::ok);
  }
}

TEST_CASE("sqlite store: hand-corrupted rows make reads throw store_error naming the row") {
  temp_dir dir;
  const std::string path = dir.file("corrupt.db");
  {
    auto s = open_sqlite_store(path);
    write_batch b = put(make_directive("mincom", "d-1"), 0);
    b.audit = {make_audit("e", "")};
    b.nodes = {make_node("node-1")};
    REQUIRE(s->commit(b).outcome == commit_outcome::ok);
  }
  auto s = open_sqlite_store(path);
  SUBCASE("approvals not JSON") {
    raw_sql(path, "UPDATE directives SET approvals = 'nope'");
    CHECK_THROWS_WITH_AS(
        (void)s->get_directive("mincom", "d-1"),
        doctest::Contains("corrupt store: directive mincom/d-1: approvals: "), store_error);
    CHECK_THROWS_AS((void)s->list_directives(), store_error);
  }
  SUBCASE("labels not an object") {
    raw_sql(path, "UPDATE nodes SET labels = '[1]'");
    CHECK_THROWS_WITH_AS((void)s->list_nodes(),
                         "corrupt store: node node-1: labels: not an object", store_error);
  }
  SUBCASE("audit time not an integer, audit detail a blob") {
    raw_sql(path, "UPDATE audit SET at = 'yesterday'");
    CHECK_THROWS_WITH_AS((void)s->audit_since(0),
                         "corrupt store: audit record 1: column at is not an integer", store_error);
    CHECK_THROWS_AS((void)s->audit_head(), store_error);
    raw_sql(path, "UPDATE audit SET at = 5, detail = X'00ff'");
    CHECK_THROWS_WITH_AS((void)s->audit_since(0),
                         "corrupt store: audit record 1: column detail is not text", store_error);
  }
  SUBCASE("negative version") {
    raw_sql(path, "UPDATE directives SET version = -1");
    CHECK_THROWS_WITH_AS(
        (void)s->get_directive("mincom", "d-1"),
        "corrupt store: directive mincom/d-1: column version is not a non-negative integer",
        store_error);
  }
  SUBCASE("table dropped") {
    raw_sql(path, "DROP TABLE revisions");
    CHECK_THROWS_WITH_AS((void)s->latest_revision(), doctest::Contains("no such table"),
                         store_error);
    write_batch b;
    b.revisions = {{1, 1, "r", ""}};
    const auto res = s->commit(b);
    CHECK(res.outcome == commit_outcome::failed);
    CHECK(res.error.find("no such table: revisions") != std::string::npos);
  }
}

TEST_CASE("sqlite store: concurrent CAS writers never lose an update") {
  temp_dir dir;
  auto s = open_sqlite_store(dir.file("threads.db"));
  REQUIRE(s->commit(put(make_directive("mincom", "counter"), 0)).outcome == commit_outcome::ok);
  constexpr int threads = 4;
  constexpr int increments = 25;
  std::atomic<int> conflicts{0};
  std::atomic<int> failures{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      for (int i = 0; i < increments;) {
        auto cur = s->get_directive("mincom", "counter");
        if (!cur) {
          ++failures;
          return;
        }
        directive_record next = *cur;
        next.updated_at += 1;  // the counter
        write_batch b = put(next, cur->version);
        b.audit = {make_audit("counter.inc", "mincom/counter")};
        const auto res = s->commit(b);
        if (res.outcome == commit_outcome::ok) {
          ++i;
        } else if (res.outcome == commit_outcome::conflict) {
          ++conflicts;
        } else {
          ++failures;
          return;
        }
      }
    });
  }
  for (auto& th : pool) th.join();
  CHECK(failures.load() == 0);
  const auto final_rec = s->get_directive("mincom", "counter");
  REQUIRE(final_rec.has_value());
  CHECK(final_rec->updated_at == make_directive("mincom", "counter").updated_at +
                                     threads * increments);
  CHECK(final_rec->version == 1 + threads * increments);
  const auto audit = s->audit_since(0);
  CHECK(audit.size() == static_cast<std::size_t>(threads * increments));
  CHECK(audit::verify_chain(audit).ok);
  MESSAGE("CAS conflicts retried: " << conflicts.load());
}

}  // namespace sluice::control::store

namespace sluice::control::store {
namespace {
using test::make_audit;
using test::make_directive;
using test::temp_dir;

TEST_CASE("sqlite store: meta compare-and-swap, impacts, overrides and change waits") {
  temp_dir dir;
  auto s = open_sqlite_store(dir.file("x.db"));

  SUBCASE("meta_expect: absent, then the value read; a stale expectation changes nothing") {
    write_batch first;
    first.meta["rollout"] = "r1";
    first.meta_expect["rollout"] = "";
    REQUIRE(s->commit(first));
    write_batch stale;
    stale.meta["rollout"] = "r2";
    stale.meta_expect["rollout"] = "";
    stale.audit.push_back(make_audit("x", "y"));
    const auto res = s->commit(stale);
    CHECK(res.outcome == commit_outcome::conflict);
    CHECK(res.error == "meta rollout changed since it was read");
    CHECK(*s->get_meta("rollout") == "r1");
    CHECK_FALSE(s->audit_head().has_value());
    write_batch fresh;
    fresh.meta["rollout"] = "r2";
    fresh.meta_expect["rollout"] = "r1";
    CHECK(s->commit(fresh));
    CHECK(*s->get_meta("rollout") == "r2");
  }
  SUBCASE("impacts: upsert by (node, window_end), listed by window_end, pruned") {
    write_batch b;
    b.impacts.push_back({"edge-2", 100, 160, 3, "{\"a\":1}"});
    b.impacts.push_back({"edge-1", 100, 160, 3, "{\"b\":2}"});
    b.impacts.push_back({"edge-1", 40, 100, 2, "{}"});
    REQUIRE(s->commit(b));
    write_batch again;
    again.impacts.push_back({"edge-1", 110, 160, 4, "{\"c\":3}"});
    REQUIRE(s->commit(again));
    auto all = s->list_impacts(0);
    REQUIRE(all.size() == 3);
    CHECK(all[0].window_end == 100);
    CHECK(all[1].node_id == "edge-1");
    CHECK(all[1].body == "{\"c\":3}");
    CHECK(all[1].window_start == 110);
    CHECK(all[1].revision == 4);
    CHECK(all[2].node_id == "edge-2");
    CHECK(s->list_impacts(101).size() == 2);
    write_batch prune;
    prune.prune_impacts_before = 160;
    REQUIRE(s->commit(prune));
    CHECK(s->list_impacts(0).size() == 2);
    write_batch dup;
    dup.impacts.push_back({"edge-1", 1, 5, 1, "{}"});
    dup.impacts.push_back({"edge-1", 2, 5, 1, "{}"});
    CHECK(s->commit(dup).outcome == commit_outcome::failed);
  }
  SUBCASE("approvals keep their kind and reason") {
    auto d = make_directive("moc", "O");
    d.approvals.push_back({"eng-1", 10, "approve", ""});
    d.approvals.push_back({"eng-2", 11, "override", "CDN range agreed with the CDN"});
    write_batch b;
    b.directives.push_back({d, 0});
    REQUIRE(s->commit(b));
    const auto got = s->get_directive("moc", "O");
    REQUIRE(got);
    REQUIRE(got->approvals.size() == 2);
    CHECK(got->approvals[0].kind == "approve");
    CHECK(got->approvals[0].reason.empty());
    CHECK(got->approvals[1].kind == "override");
    CHECK(got->approvals[1].reason == "CDN range agreed with the CDN");
  }
  SUBCASE("store_revision rises per commit; wait_for_change wakes on a commit, else times out") {
    const std::uint64_t r0 = s->store_revision();
    const auto t0 = std::chrono::steady_clock::now();
    CHECK(s->wait_for_change(r0, std::chrono::milliseconds(150)) == r0);
    CHECK(std::chrono::steady_clock::now() - t0 >= std::chrono::milliseconds(150));
    std::thread writer([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      CHECK(s->commit(write_batch{}));
    });
    const auto t1 = std::chrono::steady_clock::now();
    CHECK(s->wait_for_change(r0, std::chrono::seconds(10)) == r0 + 1);
    CHECK(std::chrono::steady_clock::now() - t1 < std::chrono::seconds(5));
    writer.join();
    CHECK(s->store_revision() == r0 + 1);
    CHECK(s->leadership_state().leader);
  }
}

TEST_CASE("sqlite store: the inventory round-trips, upserts by node id, commits with its audit record") {
  temp_dir dir;
  const std::string path = dir.file("inv.db");
  {
    auto s = open_sqlite_store(path);
    CHECK(s->list_inventory().empty());
    write_batch b;
    b.inventory = {test::make_inventory("edge-2"), test::make_inventory("edge-1")};
    b.audit = {make_audit("node.enrolled", "edge-1"), make_audit("node.enrolled", "edge-2")};
    b.meta["inventory"] = "1";
    REQUIRE(s->commit(b));
    auto all = s->list_inventory();
    REQUIRE(all.size() == 2);
    CHECK(all[0].node_id == "edge-1");  // by node id
    check_same(all[0], test::make_inventory("edge-1"));

    write_batch revoke;
    revoke.inventory = {test::make_inventory("edge-1", "revoked")};
    revoke.audit = {make_audit("node.revoked", "edge-1")};
    REQUIRE(s->commit(revoke));
  }
  auto s = open_sqlite_store(path);  // durable across a reopen
  const auto all = s->list_inventory();
  REQUIRE(all.size() == 2);
  check_same(all[0], test::make_inventory("edge-1", "revoked"));
  CHECK(s->audit_since(0).size() == 3);

  SUBCASE("a record put twice, with no id or with an unknown state refuses the whole batch") {
    for (const auto& bad : std::vector<std::vector<inventory_record>>{
             {test::make_inventory("x"), test::make_inventory("x")},
             {test::make_inventory("")},
             {test::make_inventory("y", "lost")}}) {
      write_batch b;
      b.inventory = bad;
      b.audit = {make_audit("node.enrolled", "x")};
      const auto res = s->commit(b);
      CHECK(res.outcome == commit_outcome::failed);
      CHECK(res.error.rfind("invalid batch: inventory", 0) == 0);
    }
    CHECK(s->list_inventory().size() == 2);
    CHECK(s->audit_since(0).size() == 3);
  }
  SUBCASE("a hand-edited row is reported with its node id") {
    s.reset();
    raw_sql(path, "UPDATE inventory SET labels = 'not json' WHERE node_id = 'edge-2'");
    s = open_sqlite_store(path);
    CHECK_THROWS_WITH_AS((void)s->list_inventory(),
                         doctest::Contains("corrupt store: node edge-2: labels"), store_error);
  }
}

}  // namespace
}  // namespace sluice::control::store
