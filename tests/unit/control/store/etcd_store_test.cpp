#include <doctest/doctest.h>

#include <atomic>
#include <functional>
#include <limits>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "control/store/etcd_store.hpp"
#include "control/store/record_json.hpp"
#include "etcd_test_support.hpp"
#include "store_test_support.hpp"

namespace sluice::control::store {
namespace {

using namespace std::chrono_literals;
using test::make_audit;
using test::check_same;
using test::make_directive;
using test::make_node;
using test::shared_etcd;

etcd_options options_for(const std::string& prefix, const std::string& replica = "r1") {
  etcd_options o;
  o.endpoints = {shared_etcd().endpoint()};
  o.prefix = "/sluice-test/" + prefix;
  o.replica = replica;
  o.leader_ttl = 2s;
  o.node_ttl = 2s;
  return o;
}

std::unique_ptr<store> open(const std::string& prefix, const std::string& replica = "r1") {
  return open_etcd_store(options_for(prefix, replica));
}

// A replica that reaches etcd only through `proxy`, so the test can cut it off.
std::unique_ptr<store> open_through(test::tcp_proxy& proxy, const std::string& prefix,
                                    const std::string& replica) {
  etcd_options o = options_for(prefix, replica);
  o.endpoints = {proxy.endpoint()};
  return open_etcd_store(o);
}

write_batch put(const directive_record& d, std::uint64_t expected) {
  write_batch b;
  b.directives.push_back({d, expected});
  return b;
}

// Polls `pred` every 50 ms until it holds or `limit` passes; returns how long it took.
std::chrono::milliseconds until(const std::function<bool()>& pred, std::chrono::milliseconds limit) {
  const auto start = std::chrono::steady_clock::now();
  while (!pred()) {
    if (std::chrono::steady_clock::now() - start > limit) break;
    std::this_thread::sleep_for(50ms);
  }
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                               start);
}

}  // namespace

TEST_CASE("record_json: approvals keep kind and reason; old entries default to approve") {
  const std::vector<approval> in = {{"alice", 1, "approve", ""},
                                    {"bob", 2, "override", "overlap with 10.0.0.0/8 is wanted"}};
  const auto out = approvals_from_json(approvals_to_json(in));
  REQUIRE(out.size() == 2);
  CHECK(out[1].kind == "override");
  CHECK(out[1].reason == "overlap with 10.0.0.0/8 is wanted");
  const auto old = approvals_from_json(nlohmann::json::parse(R"([{"actor":"a","at":5}])"));
  REQUIRE(old.size() == 1);
  CHECK(old[0].kind == "approve");
  CHECK(old[0].reason.empty());
  CHECK_THROWS_WITH_AS(approvals_from_json(nlohmann::json::parse(R"([{"actor":"a"}])")),
                       "approvals[0]: field \"at\" missing", store_error);
  CHECK_THROWS_AS(approvals_from_json(nlohmann::json::parse("{}")), store_error);
  CHECK_THROWS_AS((void)directive_to_json(make_directive("x", std::string("\xff\xfe", 2))),
                  store_error);
}

TEST_CASE("etcd store: fresh, then every record type round-trips; versions are etcd revisions") {
  auto s = open("roundtrip");
  CHECK_FALSE(s->get_directive("mincom", "d-1").has_value());
  CHECK(s->list_directives().empty());
  CHECK(s->audit_since(0).empty());
  CHECK_FALSE(s->audit_head().has_value());
  CHECK_FALSE(s->latest_revision().has_value());
  CHECK(s->list_nodes().empty());
  CHECK(s->list_impacts(0).empty());
  CHECK_FALSE(s->get_meta("rollout").has_value());

  directive_record d = make_directive("min/com", "d-1%x");  // '/' and '%' in key parts
  d.approvals = {{"alice", 1700000050, "approve", ""}, {"bob", 1700000060, "override", "why"}};
  d.version = 777;  // ignored
  const revision_record rev{1, 1700000070, "revision: 1\nrules: []\n", "directive approved"};
  const node_record node = make_node("node/1");
  const impact_record imp{"node/1", 1700000000, 1700000060, 1, R"({"bytes":12})"};

  const std::uint64_t before = s->store_revision();
  write_batch b = put(d, 0);
  b.audit = {make_audit("directive.submitted", "min/com/d-1%x", 1),
             make_audit("directive.approved", "min/com/d-1%x", 2)};
  b.audit[1].detail = R"({"actor":"alice","note":"ünïcode"})";
  b.revisions = {rev};
  b.meta = {{"rollout", R"({"stage":1})"}, {"emergency_stop", ""}};
  b.nodes = {node};
  b.impacts = {imp};
  const auto r1 = s->commit(b);
  REQUIRE_MESSAGE(r1.outcome == commit_outcome::ok, r1.error);
  CHECK(r1.store_revision > before);
  CHECK(r1.audit_seqs == std::vector<std::uint64_t>{1, 2});
  CHECK(s->store_revision() >= r1.store_revision);

  const auto got = s->get_directive("min/com", "d-1%x");
  REQUIRE(got.has_value());
  check_same(*got, d);
  CHECK(got->version == r1.store_revision);
  CHECK_FALSE(s->get_directive("min", "com/d-1%x").has_value());

  const auto audit = s->audit_since(0);
  REQUIRE(audit.size() == 2);
  CHECK(audit[0].seq == 1);
  CHECK(audit[0].prev_hash == audit::genesis_hash());
  CHECK(audit[1].detail == R"({"actor":"alice","note":"ünïcode"})");
  CHECK(audit::verify_chain(audit).ok);
  REQUIRE(s->audit_head().has_value());
  CHECK(s->audit_head()->hash == audit[1].hash);

  REQUIRE(s->latest_revision().has_value());
  CHECK(s->latest_revision()->content == rev.content);
  CHECK(s->latest_revision()->generated_at == rev.generated_at);
  CHECK(s->get_revision(1)->reason == rev.reason);
  CHECK_FALSE(s->get_revision(2).has_value());
  CHECK_FALSE(s->get_revision(std::numeric_limits<std::uint64_t>::max()).has_value());
  CHECK(s->get_meta("rollout") == std::optional<std::string>(R"({"stage":1})"));
  CHECK(s->get_meta("emergency_stop") == std::optional<std::string>(""));
  auto nodes = s->list_nodes();
  REQUIRE(nodes.size() == 1);
  check_same(nodes[0], node);
  CHECK_FALSE(nodes[0].expired);
  const auto imps = s->list_impacts(0);
  REQUIRE(imps.size() == 1);
  CHECK(imps[0].node_id == imp.node_id);
  CHECK(imps[0].window_start == imp.window_start);
  CHECK(imps[0].window_end == imp.window_end);
  CHECK(imps[0].revision == imp.revision);
  CHECK(imps[0].body == imp.body);

  // Second commit: CAS update, next revision; the version is the new etcd revision.
  d.state = "ended";
  d.approvals.push_back({"carol", 1700000070, "approve", ""});
  write_batch b2 = put(d, got->version);
  b2.revisions = {{2, 1700000080, "revision: 2\n", "revoked"}};
  b2.audit = {make_audit("directive.revoked", "min/com/d-1%x", 3)};
  const auto r2 = s->commit(b2);
  REQUIRE_MESSAGE(r2.outcome == commit_outcome::ok, r2.error);
  CHECK(r2.store_revision > r1.store_revision);
  CHECK(r2.audit_seqs == std::vector<std::uint64_t>{3});
  check_same(*s->get_directive("min/com", "d-1%x"), d);
  CHECK(s->get_directive("min/com", "d-1%x")->version == r2.store_revision);
  CHECK(s->latest_revision()->revision == 2);
  CHECK(audit::verify_chain(s->audit_since(0)).ok);

  // An empty batch still moves the revision.
  const auto r3 = s->commit(write_batch{});
  REQUIRE(r3.outcome == commit_outcome::ok);
  CHECK(r3.store_revision > r2.store_revision);

  // Reopening sees the same state.
  auto again = open("roundtrip", "r2");
  CHECK(again->audit_since(0).size() == 3);
  CHECK(again->get_directive("min/com", "d-1%x")->version == r2.store_revision);
}

TEST_CASE("etcd store: list order and audit paging match the SQLite store") {
  auto s = open("order");
  write_batch b;
  test::add_order_directives(b);
  test::add_ten_audit_records(b);
  b.nodes = {make_node("n-b"), make_node("n-a"), make_node("n-c")};
  REQUIRE(s->commit(b).outcome == commit_outcome::ok);
  test::check_directive_order(*s);
  std::vector<std::string> ids;
  for (const auto& n : s->list_nodes()) ids.push_back(n.node_id);
  CHECK(ids == std::vector<std::string>{"n-a", "n-b", "n-c"});
  test::check_audit_paging(*s);
}

TEST_CASE("etcd store: conflicts, gaps and invalid batches change nothing") {
  struct row {
    const char* description;
    std::function<write_batch(std::uint64_t version)> batch;  // version: d-1's current one
    commit_outcome outcome;
    std::string error;  // a part of it
  };
  const std::vector<row> rows = {
      {"directive expected absent but exists",
       [](std::uint64_t) { return put(make_directive("mincom", "d-1"), 0); },
       commit_outcome::conflict, "directive mincom/d-1 already exists"},
      {"directive expected at an old version",
       [](std::uint64_t v) { return put(make_directive("mincom", "d-1"), v - 1); },
       commit_outcome::conflict, "the batch expected version"},
      {"directive expected but absent",
       [](std::uint64_t v) { return put(make_directive("mincom", "nope"), v); },
       commit_outcome::conflict, "directive mincom/nope does not exist"},
      {"revision gap",
       [](std::uint64_t) {
         write_batch b;
         b.revisions = {{3, 1, "x", "gap"}};
         return b;
       },
       commit_outcome::conflict, "revision 3 is not the next one (latest is 1, so the next is 2)"},
      {"revision repeated",
       [](std::uint64_t) {
         write_batch b;
         b.revisions = {{1, 1, "x", "again"}};
         return b;
       },
       commit_outcome::conflict, "revision 1 is not the next one"},
      {"meta_expect value differs",
       [](std::uint64_t) {
         write_batch b;
         b.meta_expect = {{"rollout", "stage-2"}};
         b.meta = {{"rollout", "stage-3"}};
         return b;
       },
       commit_outcome::conflict, "meta rollout is \"stage-1\"; the batch expected \"stage-2\""},
      {"meta_expect absent but present",
       [](std::uint64_t) {
         write_batch b;
         b.meta_expect = {{"rollout", ""}};
         b.meta = {{"rollout", "stage-3"}};
         return b;
       },
       commit_outcome::conflict, "the batch expected it absent"},
      {"meta_expect present but absent",
       [](std::uint64_t) {
         write_batch b;
         b.meta_expect = {{"other", "x"}};
         b.meta = {{"rollout", "stage-3"}};
         return b;
       },
       commit_outcome::conflict, "meta other is absent"},
      {"one bad part spoils the whole batch",
       [](std::uint64_t v) {
         write_batch b = put(make_directive("mincom", "d-1"), v);
         b.audit = {make_audit("x", "y")};
         b.revisions = {{2, 1, "x", "fine"}};
         b.meta = {{"rollout", "stage-9"}};
         b.directives.push_back({make_directive("mincom", "d-2"), 5});
         return b;
       },
       commit_outcome::conflict, "directive mincom/d-2 does not exist"},
      {"directive put twice",
       [](std::uint64_t v) {
         write_batch b = put(make_directive("mincom", "d-1"), v);
         b.directives.push_back({make_directive("mincom", "d-1"), v});
         return b;
       },
       commit_outcome::failed, "invalid batch: directive mincom/d-1 put twice"},
      {"text that is not UTF-8",
       [](std::uint64_t) {
         write_batch b;
         b.audit = {make_audit("x", std::string("\xc3\x28", 2))};
         return b;
       },
       commit_outcome::failed, "invalid batch: audit record x: cannot encode as JSON"},
      {"impact with negative window_end",
       [](std::uint64_t) {
         write_batch b;
         b.impacts = {{"n", -5, -1, 1, "{}"}};
         return b;
       },
       commit_outcome::failed, "invalid batch: impact n@-1: negative window_end"},
  };
  auto s = open("conflicts");
  write_batch setup = put(make_directive("mincom", "d-1"), 0);
  setup.revisions = {{1, 1, "r1", "first"}};
  setup.meta = {{"rollout", "stage-1"}};
  setup.audit = {make_audit("directive.submitted", "mincom/d-1")};
  REQUIRE(s->commit(setup).outcome == commit_outcome::ok);
  const auto version = s->get_directive("mincom", "d-1")->version;
  const auto head = s->audit_head()->hash;

  for (const auto& r : rows) {
    CAPTURE(r.description);
    const auto res = s->commit(r.batch(version));
    CHECK(res.outcome == r.outcome);
    CHECK_MESSAGE(res.error.find(r.error) != std::string::npos, res.error);
    CHECK(res.store_revision == 0);
    CHECK(res.audit_seqs.empty());
    CHECK(s->get_directive("mincom", "d-1")->version == version);
    CHECK_FALSE(s->get_directive("mincom", "d-2").has_value());
    CHECK(s->audit_head()->hash == head);
    CHECK(s->latest_revision()->revision == 1);
    CHECK(s->get_meta("rollout") == std::optional<std::string>("stage-1"));
    CHECK(s->list_impacts(std::numeric_limits<std::int64_t>::min()).empty());
  }

  // The first revision of a fresh store must be 1.
  auto fresh = open("conflicts-fresh");
  write_batch two;
  two.revisions = {{2, 1, "x", "skip"}};
  const auto r = fresh->commit(two);
  CHECK(r.outcome == commit_outcome::conflict);
  CHECK(r.error == "revision 2 is not the next one (none stored yet, so the next is 1)");

  // meta_expect that holds lets the write through.
  write_batch ok;
  ok.meta_expect = {{"rollout", "stage-1"}, {"fresh", ""}};
  ok.meta = {{"rollout", "stage-2"}};
  REQUIRE(s->commit(ok).outcome == commit_outcome::ok);
  CHECK(s->get_meta("rollout") == std::optional<std::string>("stage-2"));
}

TEST_CASE("etcd store: batches over the configured limits are refused before sending") {
  etcd_options o = options_for("limits");
  o.max_txn_ops = 10;
  auto s = open_etcd_store(o);
  write_batch b;
  for (int i = 0; i < 6; ++i) b.nodes.push_back(make_node("n" + std::to_string(i)));
  auto r = s->commit(b);  // 2 puts per node
  CHECK(r.outcome == commit_outcome::failed);
  CHECK(r.error.find("batch too large: it needs 12 operations in one etcd transaction, over the "
                     "limit of 10") == 0);
  CHECK(s->list_nodes().empty());
  b.nodes.pop_back();
  r = s->commit(b);
  CHECK_MESSAGE(r.outcome == commit_outcome::ok, r.error);

  o.prefix += "-bytes";
  o.max_txn_ops = 10000;
  o.max_request_bytes = 4096;
  auto t = open_etcd_store(o);
  write_batch big;
  big.meta = {{"blob", std::string(5000, 'x')}};
  r = t->commit(big);
  CHECK(r.outcome == commit_outcome::failed);
  CHECK(r.error.find("etcd_options::max_request_bytes") != std::string::npos);
  CHECK_FALSE(t->get_meta("blob").has_value());
}

TEST_CASE("etcd store: a fleet-sized node batch (5000 nodes) commits in one transaction") {
  etcd_options o = options_for("fleet");
  o.max_request_bytes = 10 * 1024 * 1024;  // the test etcd runs with --max-request-bytes 10 MiB
  o.request_timeout = 10s;
  // Not a test of expiry: writing and listing 5,000 nodes can take longer than the suite's 2 s
  // liveness lease on a loaded machine under the sanitizers (seen: the last node expired).
  o.node_ttl = 60s;
  auto s = open_etcd_store(o);
  write_batch b;
  for (int i = 0; i < 5001; ++i) {
    node_record n = make_node("node-" + std::to_string(10000 + i));
    n.error.clear();
    b.nodes.push_back(std::move(n));
  }
  const auto r = s->commit(b);  // 5001 nodes: 10002 puts, over 10000
  CHECK(r.outcome == commit_outcome::failed);
  CHECK(r.error.find("10002 operations") != std::string::npos);
  b.nodes.pop_back();  // 5000 nodes: 10000 puts
  const auto r2 = s->commit(b);
  REQUIRE_MESSAGE(r2.outcome == commit_outcome::ok, r2.error);
  const auto nodes = s->list_nodes();  // pages of 1000 at one revision
  REQUIRE(nodes.size() == 5000);
  CHECK(nodes.front().node_id == "node-10000");
  CHECK(nodes.back().node_id == "node-14999");
  CHECK_FALSE(nodes.back().expired);
}

TEST_CASE("etcd store: two replicas appending concurrently keep one audit chain") {
  auto a = open("chain", "a");
  auto b = open("chain", "b");
  constexpr int commits = 20;
  std::vector<std::uint64_t> seqs_a, seqs_b;
  std::atomic<int> failures{0};
  auto writer = [&](store& s, const std::string& who, std::vector<std::uint64_t>& seqs) {
    for (int i = 0; i < commits; ++i) {
      write_batch w;
      w.audit = {make_audit("test." + who, std::to_string(i)), make_audit("test." + who, "2")};
      w.meta = {{"last-" + who, std::to_string(i)}};
      const auto r = s.commit(w);
      if (r.outcome != commit_outcome::ok) {
        MESSAGE(who << ": " << r.error);
        ++failures;
        continue;
      }
      seqs.insert(seqs.end(), r.audit_seqs.begin(), r.audit_seqs.end());
    }
  };
  std::thread ta([&] { writer(*a, "a", seqs_a); });
  std::thread tb([&] { writer(*b, "b", seqs_b); });
  ta.join();
  tb.join();
  CHECK(failures == 0);
  const auto all = a->audit_since(0);
  CHECK(all.size() == 4 * commits);
  const auto report = audit::verify_chain(all);
  CHECK_MESSAGE(report.ok, report.problem);
  std::set<std::uint64_t> seen(seqs_a.begin(), seqs_a.end());
  seen.insert(seqs_b.begin(), seqs_b.end());
  CHECK(seen.size() == 4 * commits);  // no seq handed out twice
  CHECK(b->audit_head()->hash == all.back().hash);
}

TEST_CASE("etcd store: impacts list by window then node, and prune by window_end") {
  auto s = open("impacts");
  write_batch b;
  b.impacts = {{"n2", 100, 160, 1, "a"}, {"n1", 100, 160, 1, "b"}, {"n1", 40, 100, 1, "c"},
               {"n1", 160, 220, 2, "d"}};
  REQUIRE(s->commit(b).outcome == commit_outcome::ok);
  auto keys = [&](std::int64_t since) {
    std::vector<std::string> out;
    for (const auto& i : s->list_impacts(since)) out.push_back(i.node_id + "@" + std::to_string(i.window_end));
    return out;
  };
  CHECK(keys(0) == std::vector<std::string>{"n1@100", "n1@160", "n2@160", "n1@220"});
  CHECK(keys(160) == std::vector<std::string>{"n1@160", "n2@160", "n1@220"});
  CHECK(keys(221).empty());

  // Upsert by (node, window_end).
  write_batch up;
  up.impacts = {{"n1", 100, 160, 1, "b2"}};
  REQUIRE(s->commit(up).outcome == commit_outcome::ok);
  CHECK(s->list_impacts(160)[0].body == "b2");

  write_batch prune;
  prune.prune_impacts_before = 160;
  prune.impacts = {{"n3", 0, 150, 1, "pruned at once"}, {"n3", 200, 260, 1, "kept"}};
  const auto r = s->commit(prune);
  REQUIRE_MESSAGE(r.outcome == commit_outcome::ok, r.error);
  CHECK(keys(0) == std::vector<std::string>{"n1@160", "n2@160", "n1@220", "n3@260"});
}

TEST_CASE("etcd store: the inventory round-trips, upserts by node id, is shared by replicas") {
  auto a = open("inventory", "a");
  auto b = open("inventory", "b");
  CHECK(a->list_inventory().empty());
  write_batch enrol;
  enrol.inventory = {test::make_inventory("edge/2"), test::make_inventory("edge-1")};  // '/' escaped
  enrol.audit = {make_audit("node.enrolled", "edge-1"), make_audit("node.enrolled", "edge/2")};
  enrol.meta["inventory"] = "1";
  enrol.meta_expect["inventory"] = "";
  REQUIRE(a->commit(enrol));
  auto all = b->list_inventory();
  REQUIRE(all.size() == 2);
  check_same(all[0], test::make_inventory("edge-1"));
  check_same(all[1], test::make_inventory("edge/2"));

  // Replicas serialise inventory changes through the meta generation: b's stale write loses.
  write_batch stale;
  stale.inventory = {test::make_inventory("edge-1", "revoked")};
  stale.meta["inventory"] = "1";
  stale.meta_expect["inventory"] = "";
  CHECK(b->commit(stale).outcome == commit_outcome::conflict);
  stale.meta["inventory"] = "2";
  stale.meta_expect["inventory"] = "1";
  REQUIRE(b->commit(stale));
  check_same(a->list_inventory()[0], test::make_inventory("edge-1", "revoked"));

  write_batch bad;
  bad.inventory = {test::make_inventory("x", "lost")};
  CHECK(a->commit(bad).outcome == commit_outcome::failed);
}

TEST_CASE("etcd store: a node that stops reporting expires after node_ttl") {
  auto s = open("expiry");
  write_batch b;
  b.nodes = {make_node("n1"), make_node("n2")};
  REQUIRE(s->commit(b).outcome == commit_outcome::ok);
  auto expired = [&](const std::string& id) {
    for (const auto& n : s->list_nodes()) {
      if (n.node_id == id) return n.expired;
    }
    FAIL("node " << id << " missing");
    return false;
  };
  CHECK_FALSE(expired("n1"));
  // n2 keeps reporting; n1 does not. node_ttl 2 s: n1's key goes within 2-3 s (+ etcd's
  // expiry check).
  const auto start = std::chrono::steady_clock::now();
  bool n1_expired = false;
  while (std::chrono::steady_clock::now() - start < 5s) {
    write_batch keep;
    keep.nodes = {make_node("n2")};
    REQUIRE(s->commit(keep).outcome == commit_outcome::ok);
    if (expired("n1")) {
      n1_expired = true;
      break;
    }
    std::this_thread::sleep_for(200ms);
  }
  const auto took = std::chrono::steady_clock::now() - start;
  CHECK(n1_expired);
  CHECK(took >= 1900ms);
  CHECK_FALSE(expired("n2"));
  REQUIRE(s->list_nodes().size() == 2);  // the record stays; only liveness went
  write_batch back;
  back.nodes = {make_node("n1")};
  REQUIRE(s->commit(back).outcome == commit_outcome::ok);
  CHECK_FALSE(expired("n1"));
}

TEST_CASE("etcd store: one leader among replicas; a clean stop hands over; followers are fenced") {
  auto a = open("lead", "a");
  auto b = open("lead", "b");
  auto leader_count = [&] {
    return int(a->leadership_state().leader) + int(b->leadership_state().leader);
  };
  until([&] { return leader_count() == 1; }, 3s);
  REQUIRE(leader_count() == 1);
  store* leader = a->leadership_state().leader ? a.get() : b.get();
  store* follower = leader == a.get() ? b.get() : a.get();
  const auto ls = leader->leadership_state();
  const std::string leader_name = ls.holder;
  CHECK((leader_name == "a" || leader_name == "b"));
  CHECK(ls.term > 0);
  until([&] { return follower->leadership_state().holder == leader_name; }, 2s);
  CHECK(follower->leadership_state().holder == leader_name);
  CHECK(follower->leadership_state().term == ls.term);

  write_batch fenced;
  fenced.meta = {{"tick", "follower"}};
  fenced.require_leadership = true;
  const auto rf = follower->commit(fenced);
  CHECK(rf.outcome == commit_outcome::conflict);
  CHECK(rf.error.find("is not the leader") != std::string::npos);
  CHECK_FALSE(leader->get_meta("tick").has_value());
  fenced.meta = {{"tick", "leader"}};
  const auto rl = leader->commit(fenced);
  CHECK_MESSAGE(rl.outcome == commit_outcome::ok, rl.error);

  // Destroy the leader: the other takes over well within leader_ttl (2 s), in a new term.
  if (leader == a.get()) a.reset(); else b.reset();
  store* survivor = a ? a.get() : b.get();
  const auto took = until([&] { return survivor->leadership_state().leader; }, 3s);
  CHECK(survivor->leadership_state().leader);
  CHECK(took < 2500ms);
  CHECK(survivor->leadership_state().term != ls.term);
  CHECK(survivor->leadership_state().holder != leader_name);
}

TEST_CASE("etcd store: a leader cut off from etcd stops leading before its key expires") {
  test::tcp_proxy proxy(test::port_of(shared_etcd().endpoint()));
  auto a = open_through(proxy, "cutoff", "a");
  REQUIRE(until([&] { return a->leadership_state().leader; }, 3s) < 3s);
  auto b = open("cutoff", "b");
  until([&] { return b->leadership_state().holder == "a"; }, 2s);
  REQUIRE(b->leadership_state().holder == "a");
  const auto term = b->leadership_state().term;

  proxy.cut();
  const auto start = std::chrono::steady_clock::now();
  const auto a_gave_up = until([&] { return !a->leadership_state().leader; }, 4s);
  until([&] { return b->leadership_state().leader; }, 5s);
  const auto b_took = std::chrono::steady_clock::now() - start;
  CHECK_FALSE(a->leadership_state().leader);
  CHECK(a_gave_up <= 2100ms);  // leader_ttl after its last refresh, at most
  CHECK(b->leadership_state().leader);
  CHECK(b_took < 4500ms);
  CHECK(b->leadership_state().term != term);
  proxy.resume();
  until([&] { return a->leadership_state().holder == "b"; }, 3s);
  CHECK(a->leadership_state().holder == "b");
  CHECK_FALSE(a->leadership_state().leader);
}

TEST_CASE("etcd store: wait_for_change wakes on another replica's commit, also after compaction") {
  test::tcp_proxy proxy(test::port_of(shared_etcd().endpoint()));
  auto a = open_through(proxy, "watch", "a");
  auto b = open("watch", "b");

  // Nothing happens: the wait times out with the revision it had.
  const std::uint64_t start = a->store_revision();
  std::this_thread::sleep_for(300ms);  // let the leader campaign settle its writes
  const std::uint64_t quiet = a->wait_for_change(0, 0ms);
  CHECK(quiet >= start);

  std::uint64_t woke = 0;
  std::thread waiter([&] { woke = a->wait_for_change(quiet, 5000ms); });
  std::this_thread::sleep_for(100ms);
  write_batch w;
  w.meta = {{"k", "1"}};
  const auto r = b->commit(w);
  REQUIRE(r.outcome == commit_outcome::ok);
  waiter.join();
  CHECK(woke >= r.store_revision);

  // Break a's watch, commit and compact meanwhile, then reconnect: the watch cannot resume from
  // where it was; it re-reads and wakes its waiters anyway, then follows new commits again.
  proxy.cut();
  std::this_thread::sleep_for(200ms);
  const std::uint64_t before_cut = a->wait_for_change(0, 0ms);
  w.meta = {{"k", "2"}};
  const auto r2 = b->commit(w);
  REQUIRE(r2.outcome == commit_outcome::ok);
  w.meta = {{"k", "3"}};
  const auto r3 = b->commit(w);
  REQUIRE(r3.outcome == commit_outcome::ok);
  shared_etcd().compact(static_cast<std::int64_t>(r3.store_revision));
  CHECK(a->wait_for_change(before_cut, 300ms) < r2.store_revision);  // cut off: no news
  proxy.resume();
  CHECK(a->wait_for_change(before_cut, 5000ms) >= r3.store_revision);
  const std::uint64_t now = a->wait_for_change(0, 0ms);
  std::uint64_t woke2 = 0;
  std::thread waiter2([&] { woke2 = a->wait_for_change(now, 5000ms); });
  std::this_thread::sleep_for(100ms);
  w.meta = {{"k", "4"}};
  const auto r4 = b->commit(w);
  REQUIRE(r4.outcome == commit_outcome::ok);
  waiter2.join();
  CHECK(woke2 >= r4.store_revision);
}

TEST_CASE("etcd store: the node feed carries another replica's reports; a gap asks for a list") {
  test::tcp_proxy proxy(test::port_of(shared_etcd().endpoint()));
  auto a = open_through(proxy, "feed", "a");
  auto b = open("feed", "b");
  auto node = [](const std::string& id, std::uint64_t applied) {
    node_record n = make_node(id);
    n.applied_revision = applied;
    return n;
  };
  auto commit_nodes = [&](std::vector<node_record> nodes) {
    write_batch w;
    w.nodes = std::move(nodes);
    const auto r = b->commit(w);
    REQUIRE_MESSAGE(r.outcome == commit_outcome::ok, r.error);
    return r.store_revision;
  };
  auto seen_by_a = [&](std::uint64_t rev) { return a->wait_for_change(rev - 1, 5000ms) >= rev; };

  // Before a has listed the nodes once, its feed cannot stand for them.
  CHECK_FALSE(a->take_node_changes().has_value());
  REQUIRE(seen_by_a(commit_nodes({node("n1", 1), node("n2", 1)})));
  CHECK_FALSE(a->take_node_changes().has_value());
  REQUIRE(a->list_nodes().size() == 2);
  auto none = a->take_node_changes();
  REQUIRE(none.has_value());
  CHECK(none->empty());

  // One report: exactly that record, once, live.
  REQUIRE(seen_by_a(commit_nodes({node("n2", 7)})));
  auto one = a->take_node_changes();
  REQUIRE(one.has_value());
  REQUIRE(one->size() == 1);
  check_same(one->front(), node("n2", 7));
  CHECK_FALSE(one->front().expired);
  auto again = a->take_node_changes();
  REQUIRE(again.has_value());
  CHECK(again->empty());

  // Reports of one node between two takes: the newest only.
  commit_nodes({node("n1", 8)});
  REQUIRE(seen_by_a(commit_nodes({node("n1", 9)})));
  auto newest = a->take_node_changes();
  REQUIRE(newest.has_value());
  REQUIRE(newest->size() == 1);
  CHECK(newest->front().node_id == "n1");
  CHECK(newest->front().applied_revision == 9);

  // a's watch is cut while n1 reports and the history is compacted: events are lost, so the
  // feed refuses until the next full list, which has n1's report.
  proxy.cut();
  std::this_thread::sleep_for(200ms);
  const std::uint64_t lost = commit_nodes({node("n1", 10)});
  const std::uint64_t after = commit_nodes({node("n2", 10)});
  shared_etcd().compact(static_cast<std::int64_t>(after));
  proxy.resume();
  CHECK(lost < after);
  // a's other requests may bring it the new revision before its watch finds the gap.
  bool refused = false;
  until([&] { return refused = !a->take_node_changes().has_value(); }, 5000ms);
  CHECK(refused);
  for (const auto& n : a->list_nodes()) CHECK(n.applied_revision == 10);
  auto whole = a->take_node_changes();
  REQUIRE(whole.has_value());
  CHECK(whole->empty());
}

TEST_CASE("etcd store: an unreachable endpoint first in the list is skipped") {
  etcd_options o = options_for("failover");
  o.endpoints = {"http://127.0.0.1:" + std::to_string(test::free_port()),
                 shared_etcd().endpoint()};
  auto s = open_etcd_store(o);
  write_batch b = put(make_directive("mincom", "d-1"), 0);
  const auto r = s->commit(b);
  REQUIRE_MESSAGE(r.outcome == commit_outcome::ok, r.error);
  CHECK(s->get_directive("mincom", "d-1")->version == r.store_revision);

  etcd_options none = options_for("failover");
  none.endpoints = {"http://127.0.0.1:" + std::to_string(test::free_port())};
  CHECK_THROWS_AS(open_etcd_store(none), store_error);
  none.endpoints = {"ftp://127.0.0.1:1"};
  CHECK_THROWS_WITH_AS(open_etcd_store(none),
                       "etcd store: etcd endpoint \"ftp://127.0.0.1:1\" is not http(s)://host:port",
                       store_error);
  none.endpoints = {"https://127.0.0.1:1"};
  CHECK_THROWS_WITH_AS(
      open_etcd_store(none),
      "etcd store: etcd endpoint \"https://127.0.0.1:1\" is https:// but no CA file verifies the members",
      store_error);
}

TEST_CASE("etcd store: over TLS with a client certificate (issue 14); refusals") {
  const auto& etcd = test::shared_tls_etcd();
  const auto& files = etcd.tls_files();
  etcd_options o = options_for("tls", "a");
  o.endpoints = {etcd.endpoint()};
  o.tls_ca = files.file("ca.crt");
  o.tls_cert = files.file("client.crt");
  o.tls_key = files.file("client.key");
  auto a = open_etcd_store(o);
  o.replica = "b";
  auto b = open_etcd_store(o);

  // Commits, reads, the campaign and the watch (a long-lived TLS stream) all work over TLS.
  CHECK(until([&] { return a->leadership_state().leader || b->leadership_state().leader; }, 5s) < 5s);
  const std::uint64_t quiet = a->wait_for_change(0, 0ms);
  std::uint64_t woke = 0;
  std::thread waiter([&] { woke = a->wait_for_change(quiet, 5000ms); });
  std::this_thread::sleep_for(100ms);
  const auto r = b->commit(put(make_directive("mincom", "d-1"), 0));
  REQUIRE_MESSAGE(r.outcome == commit_outcome::ok, r.error);
  waiter.join();
  // The waiter wakes at the first change past `quiet`: the commit, or a campaign key written
  // just before it (seen under load). Either way the watch must go on to deliver the commit.
  for (int i = 0; i < 5 && woke != 0 && woke < r.store_revision; ++i) {
    woke = a->wait_for_change(woke, 5000ms);
  }
  CHECK(woke >= r.store_revision);
  CHECK(a->get_directive("mincom", "d-1")->version == r.store_revision);

  // The member asks for a client certificate: none is refused.
  etcd_options anonymous = o;
  anonymous.tls_cert.clear();
  anonymous.tls_key.clear();
  CHECK_THROWS_AS(open_etcd_store(anonymous), store_error);
  // A CA that did not sign the member's certificate: the handshake fails, nothing is sent.
  etcd_options other_ca = o;
  other_ca.tls_ca = files.file("other.crt");
  CHECK_THROWS_WITH_AS(open_etcd_store(other_ca), doctest::Contains("SSLServerVerification"),
                       store_error);
  // Files that cannot be used, TLS files with http://, a certificate without its key.
  etcd_options bad = o;
  bad.tls_ca = files.file("client.key");
  CHECK_THROWS_WITH_AS(open_etcd_store(bad),
                       doctest::Contains("cannot read a certificate from it"), store_error);
  bad = o;
  bad.tls_key = files.file("other.key");
  CHECK_THROWS_WITH_AS(open_etcd_store(bad), doctest::Contains("cannot use them"), store_error);
  bad = o;
  bad.tls_key.clear();
  CHECK_THROWS_WITH_AS(open_etcd_store(bad),
                       "etcd store: etcd client certificate and key go together", store_error);
  bad = o;
  bad.endpoints = {shared_etcd().endpoint()};
  CHECK_THROWS_WITH_AS(open_etcd_store(bad), doctest::Contains("is http:// but TLS files are given"),
                       store_error);
}

TEST_CASE("etcd store: a prefix holding something else is not a store") {
  shared_etcd().put("/sluice-test/foreign/whatever", "x");
  CHECK_THROWS_WITH_AS(open("foreign"),
                       "etcd prefix /sluice-test/foreign holds keys but is not a Sluice store",
                       store_error);
  shared_etcd().put("/sluice-test/other-format/format", "something-v9");
  CHECK_THROWS_WITH_AS(open("other-format"),
                       "etcd prefix /sluice-test/other-format is not a Sluice store (format "
                       "\"something-v9\")",
                       store_error);
  // A corrupt record is a read error naming its key, not a crash.
  auto s = open("corrupt");
  shared_etcd().put("/sluice-test/corrupt/directives/mincom/d-1", "{not json");
  CHECK_THROWS_AS((void)s->list_directives(), store_error);
  CHECK_THROWS_AS((void)s->get_directive("mincom", "d-1"), store_error);
}

}  // namespace sluice::control::store
