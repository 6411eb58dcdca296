// Signed audit checkpoints (control/audit/checkpoint.hpp): the form round-trips, every forgery
// is refused, and comparing with a log names the missing tail, a rewritten head and conflicts.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "control/audit/checkpoint.hpp"

namespace sluice::control::audit {
namespace {

std::vector<audit_record> make_log(std::size_t n) {
  std::vector<audit_record> log;
  for (std::size_t i = 0; i < n; ++i) {
    audit_record r;
    r.at = 1795867200000 + static_cast<std::int64_t>(i);
    r.actor = "controller";
    r.event = "directive.received";
    r.subject = "ministry/d-" + std::to_string(i);
    r.detail = R"({"n":)" + std::to_string(i) + "}";
    seal(r, log.empty() ? nullptr : &log.back());
    log.push_back(r);
  }
  return log;
}

struct keys {
  crypto::key_pair controller = *crypto::generate_key_pair();
  crypto::key_pair other = *crypto::generate_key_pair();
};

checkpoint signed_at(const crypto::key_pair& k, const std::vector<audit_record>& log,
                     std::uint64_t count, std::string replica = "ctl-a") {
  const auto c = make_checkpoint(k.sec, count, count == 0 ? genesis_hash() : log[count - 1].hash,
                                 1795867260123, replica);
  REQUIRE(c);
  return *c;
}

}  // namespace

TEST_CASE("checkpoint: signed, serialised, parsed back and verified; the text binds the fields") {
  keys k;
  const auto log = make_log(43);
  const checkpoint c = signed_at(k.controller, log, 43);
  CHECK(checkpoint_text(c) == "sluice-audit-checkpoint count=43 head=" + log[42].hash +
                                  " at=1795867260123 replica=ctl-a");
  CHECK(verify_checkpoint(k.controller.pub, c));
  // The trusted comment is the same text, so `minisign -V` shows the fields too.
  const auto v = crypto::verify(k.controller.pub, checkpoint_text(c), c.signature);
  CHECK(v.trusted_comment == checkpoint_text(c));

  std::string error;
  const auto back = parse_checkpoint(checkpoint_json(c) + "\n", error);
  REQUIRE_MESSAGE(back, error);
  CHECK(*back == c);
  const auto from_header = parse_checkpoint_header(checkpoint_header(c), error);
  REQUIRE_MESSAGE(from_header, error);
  CHECK(*from_header == c);
  CHECK(checkpoint_header(c).find_first_of("\r\n \"") == std::string::npos);
  CHECK(describe(c).find("count=43") != std::string::npos);

  // An empty log has a checkpoint too: 0 records, the genesis hash.
  const checkpoint empty = signed_at(k.controller, log, 0);
  CHECK(verify_checkpoint(k.controller.pub, empty));
  CHECK(compare_with_log(empty, {}, "node n").ok());
}

TEST_CASE("checkpoint: forgeries are refused") {
  keys k;
  const auto log = make_log(10);
  const checkpoint c = signed_at(k.controller, log, 10);

  SUBCASE("another key") {
    const checkpoint forged = signed_at(k.other, log, 10);
    const auto r = verify_checkpoint(k.controller.pub, forged);
    CHECK_FALSE(r);
    CHECK(r.problem.find("different key") != std::string::npos);
  }
  SUBCASE("a field changed after signing") {
    for (auto change : std::vector<void (*)(checkpoint&)>{
             [](checkpoint& x) { x.count = 9; },
             [](checkpoint& x) { x.count = 11; },
             [](checkpoint& x) { x.head[0] = x.head[0] == 'a' ? 'b' : 'a'; },
             [](checkpoint& x) { x.at += 1; },
             [](checkpoint& x) { x.replica = "ctl-b"; },
         }) {
      checkpoint x = c;
      change(x);
      CHECK_FALSE(verify_checkpoint(k.controller.pub, x));
    }
  }
  SUBCASE("the right key, but a trusted comment that is not the checkpoint's text") {
    checkpoint x = c;
    x.signature = *crypto::sign(k.controller.sec, checkpoint_text(c),
                                "sluice-audit-checkpoint count=99 head=" + c.head);
    const auto r = verify_checkpoint(k.controller.pub, x);
    CHECK_FALSE(r);
    CHECK(r.problem.find("trusted comment") != std::string::npos);
  }
  SUBCASE("a snapshot signature is not a checkpoint") {
    checkpoint x = c;
    x.signature = *crypto::sign(k.controller.sec, "revision: 3\n", "sluice-snapshot revision=3 scope=all");
    CHECK_FALSE(verify_checkpoint(k.controller.pub, x));
  }
  SUBCASE("a garbled signature") {
    checkpoint x = c;
    x.signature = "untrusted comment: x\nnot base64\n";
    CHECK_FALSE(verify_checkpoint(k.controller.pub, x));
  }
}

TEST_CASE("checkpoint: malformed forms are refused before any signature work") {
  keys k;
  const auto log = make_log(3);
  const checkpoint c = signed_at(k.controller, log, 3);
  std::string error;
  auto refused = [&](const std::string& text) {
    error.clear();
    const bool r = !parse_checkpoint(text, error);
    CHECK_MESSAGE(!error.empty(), text);
    return r;
  };
  CHECK(refused("not json"));
  CHECK(refused("[]"));
  CHECK(refused(R"({"count":3})"));
  auto with = [&](const char* key, nlohmann::json v) {
    nlohmann::json j = nlohmann::json::parse(checkpoint_json(c));
    j[key] = std::move(v);
    return j.dump();
  };
  CHECK(refused(with("count", -1)));
  CHECK(refused(with("count", "3")));
  CHECK(refused(with("head", "ABC")));
  CHECK(refused(with("head", std::string(64, 'G'))));
  CHECK(refused(with("at", 1.5)));
  CHECK(refused(with("replica", "")));
  CHECK(refused(with("replica", "a\nb")));
  CHECK(refused(with("replica", std::string(200, 'r'))));
  CHECK(refused(with("signature", 5)));
  CHECK(refused(with("count", 0)));  // 0 records name the genesis hash, nothing else
  CHECK(refused(with("signature", std::string(5000, 's'))));
  CHECK_FALSE(parse_checkpoint_header("%%%", error));
  CHECK_FALSE(parse_checkpoint_header("", error));
  CHECK_FALSE(parse_checkpoint_header(std::string(8000, 'A'), error));
  CHECK_FALSE(make_checkpoint(k.controller.sec, 1, "short", 0, "r"));
  CHECK_FALSE(make_checkpoint(k.controller.sec, 1, log[0].hash, 0, "bad\nname"));
  CHECK(checkpoint_replica_name("a\nb") == "a_b");
  CHECK(checkpoint_replica_name("") == "controller");
  CHECK(make_checkpoint(k.controller.sec, 1, log[0].hash, 0, checkpoint_replica_name("127.0.0.1:9480")));
}

TEST_CASE("checkpoint against a log: covered, missing tail, missing record, rewritten head") {
  keys k;
  const auto log = make_log(43);
  const checkpoint c = signed_at(k.controller, log, 43);

  CHECK(compare_with_log(c, log, "node edge-7").ok());
  auto longer = make_log(50);  // the same first 43 records, then more
  CHECK(compare_with_log(signed_at(k.controller, longer, 43), longer, "node edge-7").ok());
  CHECK(compare_with_log(signed_at(k.controller, longer, 43), log, "node edge-7").ok());

  SUBCASE("the newest 3 records deleted") {
    const std::vector<audit_record> cut(log.begin(), log.begin() + 40);
    CHECK(verify_chain(cut).ok);  // the chain alone cannot see it
    const auto r = compare_with_log(c, cut, "node edge-7");
    CHECK(r.verdict == log_verdict::missing_tail);
    CHECK(r.first_missing == 41);
    CHECK(r.last_missing == 43);
    CHECK(r.log_end == 40);
    CHECK(r.problem.rfind("records 41-43 missing: the log ends at 40, checkpoint held by node "
                          "edge-7 names 43 with head " + c.head.substr(0, 12), 0) == 0);
  }
  SUBCASE("only the newest record deleted; and all of them") {
    const std::vector<audit_record> cut(log.begin(), log.begin() + 42);
    CHECK(compare_with_log(c, cut, "file cp.json").problem.rfind("record 43 missing: the log ends at 42", 0) == 0);
    const auto none = compare_with_log(c, {}, "file cp.json");
    CHECK(none.verdict == log_verdict::missing_tail);
    CHECK(none.problem.rfind("records 1-43 missing: the log is empty", 0) == 0);
  }
  SUBCASE("record 43 itself removed from the middle of a longer log") {
    std::vector<audit_record> gap = longer;
    gap.erase(gap.begin() + 42);
    const auto r = compare_with_log(signed_at(k.controller, longer, 43), gap, "node a");
    CHECK(r.verdict == log_verdict::missing_record);
    CHECK(r.problem.rfind("record 43 missing (the log ends at 50)", 0) == 0);
  }
  SUBCASE("the tail rewritten and re-chained (the chain verifies; the head does not)") {
    std::vector<audit_record> rewritten(log.begin(), log.begin() + 41);
    for (int i = 0; i < 2; ++i) {
      audit_record r = log[41 + static_cast<std::size_t>(i)];
      r.detail = R"({"forged":true})";
      seal(r, &rewritten.back());
      rewritten.push_back(r);
    }
    CHECK(verify_chain(rewritten).ok);
    const auto r = compare_with_log(c, rewritten, "node edge-7");
    CHECK(r.verdict == log_verdict::head_differs);
    CHECK(r.problem.rfind("record 43 differs", 0) == 0);
  }
}

TEST_CASE("checkpoints against each other: order, conflicts, the longest missing tail") {
  keys k;
  const auto log = make_log(43);
  const checkpoint c40 = signed_at(k.controller, log, 40);
  const checkpoint c43 = signed_at(k.controller, log, 43);
  const checkpoint c43b = signed_at(k.controller, log, 43, "ctl-b");  // same head, other replica
  auto forked_log = make_log(42);
  {
    audit_record r = log[42];
    r.detail = R"({"other":1})";
    seal(r, &forked_log.back());
    forked_log.push_back(r);
  }
  const checkpoint fork43 = signed_at(k.controller, forked_log, 43);

  CHECK(order(c40, c43) == checkpoint_order::newer);
  CHECK(order(c43, c40) == checkpoint_order::older);
  CHECK(order(c43, c43b) == checkpoint_order::same);
  CHECK(order(c43, fork43) == checkpoint_order::conflict);

  SUBCASE("all covered") {
    const std::vector<held_checkpoint> held{{"node a", c40}, {"node b", c43}, {"node c", c43b}};
    const auto rep = check_log(log, held);
    CHECK(rep.ok);
    CHECK(rep.covered == 3);
    CHECK(rep.highest == 43);
    CHECK(rep.missing_tail.empty());
  }
  SUBCASE("a truncated log: the highest checkpoint names the tail, the lower one still passes") {
    const std::vector<audit_record> cut(log.begin(), log.begin() + 40);
    const std::vector<held_checkpoint> held{{"node a", c40}, {"node b", c43}, {"file m.json", c43b}};
    const auto rep = check_log(cut, held);
    CHECK_FALSE(rep.ok);
    CHECK(rep.covered == 1);
    REQUIRE(rep.problems.size() == 1);  // node b's and the file's: one count, one head
    CHECK(rep.missing_tail == rep.problems[0]);
    CHECK(rep.missing_tail.find("records 41-43 missing: the log ends at 40, checkpoint held by "
                                "node b and 1 other names 43") == 0);
  }
  SUBCASE("two histories signed for the same count: a conflict, whichever the log holds") {
    const std::vector<held_checkpoint> held{{"node a", c43}, {"node b", fork43}};
    const auto rep = check_log(log, held);
    CHECK_FALSE(rep.ok);
    bool conflict = false;
    for (const auto& p : rep.problems)
      conflict = conflict || p.rfind("conflicting checkpoints for 43 records", 0) == 0;
    CHECK(conflict);
    CHECK(rep.covered == 1);  // node a's matches the log, node b's does not
  }
}

}  // namespace sluice::control::audit
