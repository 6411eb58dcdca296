#include <doctest/doctest.h>

#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "control/audit/audit.hpp"

namespace sluice::control::audit {
namespace {

std::vector<audit_record> make_chain(std::size_t n) {
  std::vector<audit_record> chain;
  for (std::size_t i = 0; i < n; ++i) {
    audit_record r;
    r.at = 1700000000000 + static_cast<std::int64_t>(i);
    r.actor = "controller";
    r.event = "directive.submitted";
    r.subject = "mincom/d-" + std::to_string(i);
    r.detail = R"({"n":)" + std::to_string(i) + "}";
    seal(r, chain.empty() ? nullptr : &chain.back());
    chain.push_back(r);
  }
  return chain;
}

// Index of the record with this seq in a freshly made chain.
constexpr std::size_t at_seq(std::uint64_t seq) { return static_cast<std::size_t>(seq - 1); }

}  // namespace

TEST_CASE("record_hash: the canonical form is pinned (known answers computed independently)") {
  audit_record r;
  r.seq = 1;
  r.at = 1700000000000;
  r.actor = "ministry";
  r.event = "directive.submitted";
  r.subject = "mincom/d-1";
  r.detail = R"({"a":1})";
  r.prev_hash = genesis_hash();
  // python3: sha256(b"".join(len(f).to_bytes(8,"big")+f for f in [b"sluice-audit-v1", b"1",
  //   b"1700000000000", b"ministry", b"directive.submitted", b"mincom/d-1", b'{"a":1}', b"0"*64]))
  CHECK(record_hash(r) == "2dcbc672e9566f385540b8174b40e4ee6d7c578b7f07ba0cdf5309c84534d15f");

  audit_record e;  // empty strings and a negative time still hash distinctly
  e.seq = 2;
  e.at = -5;
  std::string ab;
  for (int i = 0; i < 32; ++i) ab += "ab";
  e.prev_hash = ab;
  CHECK(record_hash(e) == "84daf343502260e9234b53e5387a8ae448c3607260b81618514e9abf8268107a");

  CHECK(genesis_hash() == std::string(64, '0'));
}

TEST_CASE("record_hash: field boundaries and every field matter") {
  audit_record a = make_chain(1)[0];
  audit_record b = a;
  a.actor = "ab";
  a.event = "c";
  b.actor = "a";
  b.event = "bc";
  CHECK(record_hash(a) != record_hash(b));

  const audit_record base = make_chain(1)[0];
  const std::vector<std::pair<const char*, std::function<void(audit_record&)>>> edits = {
      {"seq", [](audit_record& r) { r.seq = 2; }},
      {"at", [](audit_record& r) { r.at += 1; }},
      {"actor", [](audit_record& r) { r.actor += "x"; }},
      {"event", [](audit_record& r) { r.event += "x"; }},
      {"subject", [](audit_record& r) { r.subject += "x"; }},
      {"detail", [](audit_record& r) { r.detail += " "; }},
      {"prev_hash", [](audit_record& r) { r.prev_hash[0] = '1'; }},
  };
  for (const auto& [field, edit] : edits) {
    CAPTURE(field);
    audit_record r = base;
    edit(r);
    CHECK(record_hash(r) != base.hash);
  }
  audit_record only_hash = base;
  only_hash.hash = "whatever";
  CHECK(record_hash(only_hash) == base.hash);  // `hash` itself is not part of the form
}

TEST_CASE("seal: seq and prev_hash follow the previous record") {
  const auto chain = make_chain(3);
  CHECK(chain[0].seq == 1);
  CHECK(chain[0].prev_hash == genesis_hash());
  CHECK(chain[1].seq == 2);
  CHECK(chain[1].prev_hash == chain[0].hash);
  CHECK(chain[2].seq == 3);
  CHECK(chain[2].prev_hash == chain[1].hash);
  for (const auto& r : chain) CHECK(r.hash == record_hash(r));

  audit_record stale = chain[2];  // whatever seq/prev/hash it carried is replaced
  stale.seq = 99;
  stale.prev_hash = "junk";
  seal(stale, &chain[0]);
  CHECK(stale.seq == 2);
  CHECK(stale.prev_hash == chain[0].hash);
}

TEST_CASE("verify_chain: intact, edited, removed and reordered chains") {
  struct row {
    const char* description;
    std::function<void(std::vector<audit_record>&)> mutate;
    bool ok;
    std::uint64_t bad_seq;
    std::uint64_t records_checked;
    std::string problem;
  };
  const std::string rehashed =
      " (that record edited and re-hashed, or records removed or reordered before it)";
  const std::vector<row> rows = {
      {"intact", [](auto&) {}, true, 0, 5, ""},
      {"edited detail of record 3", [](auto& c) { c[at_seq(3)].detail = R"({"n":99})"; }, false,
       3, 3, "record 3: hash does not match its contents (edited)"},
      {"edited actor of record 1", [](auto& c) { c[at_seq(1)].actor = "someone"; }, false, 1, 1,
       "record 1: hash does not match its contents (edited)"},
      {"edited hash of record 4", [](auto& c) { c[at_seq(4)].hash[10] ^= 1; }, false, 4, 4,
       "record 4: hash does not match its contents (edited)"},
      {"edited seq of record 5", [](auto& c) { c[at_seq(5)].seq = 6; }, false, 6, 5,
       "record 6: hash does not match its contents (edited)"},
      {"record 3 edited and re-hashed",
       [](auto& c) {
         c[at_seq(3)].detail = "{}";
         c[at_seq(3)].hash = record_hash(c[at_seq(3)]);
       },
       false, 4, 4, "record 4: prev_hash is not record 3's hash" + rehashed},
      {"record 1 re-pointed away from genesis and re-hashed",
       [](auto& c) {
         c[0].prev_hash = std::string(64, 'f');
         c[0].hash = record_hash(c[0]);
       },
       false, 1, 1, "record 1: prev_hash is not the genesis hash" + rehashed},
      {"removed middle record 3", [](auto& c) { c.erase(c.begin() + at_seq(3)); }, false, 4, 3,
       "record 4 follows record 2 (record 3 removed)"},
      {"removed records 2 and 3", [](auto& c) { c.erase(c.begin() + 1, c.begin() + 3); }, false,
       4, 2, "record 4 follows record 1 (records 2..3 removed)"},
      {"removed first record", [](auto& c) { c.erase(c.begin()); }, false, 2, 1,
       "record 2 is the first record (record 1 removed)"},
      {"removed record 3, later ones renumbered and re-hashed",
       [](auto& c) {
         c.erase(c.begin() + at_seq(3));
         for (std::size_t i = 2; i < c.size(); ++i) {
           c[i].seq = i + 1;
           c[i].hash = record_hash(c[i]);
         }
       },
       false, 3, 3, "record 3: prev_hash is not record 2's hash" + rehashed},
      {"swapped records 3 and 4", [](auto& c) { std::swap(c[at_seq(3)], c[at_seq(4)]); }, false,
       4, 3, "record 4 follows record 2 (record 3 out of order: reordered)"},
      {"swapped last two", [](auto& c) { std::swap(c[at_seq(4)], c[at_seq(5)]); }, false, 5, 4,
       "record 5 follows record 3 (record 4 out of order: reordered)"},
      {"record 2 moved to the end",
       [](auto& c) { std::rotate(c.begin() + 1, c.begin() + 2, c.end()); }, false, 3, 2,
       "record 3 follows record 1 (record 2 out of order: reordered)"},
      {"record 2 duplicated", [](auto& c) { c.insert(c.begin() + 2, c[1]); }, false, 2, 3,
       "record 2 follows record 2 (out of order: reordered or duplicated)"},
  };
  const auto pristine = make_chain(5);
  for (const auto& r : rows) {
    CAPTURE(r.description);
    auto chain = pristine;
    r.mutate(chain);
    const chain_report rep = verify_chain(chain);
    CHECK(rep.ok == r.ok);
    CHECK(rep.bad_seq == r.bad_seq);
    CHECK(rep.problem == r.problem);
    CHECK(rep.records == r.records_checked);
    if (r.ok) CHECK(rep.head_hash == pristine.back().hash);
  }
}

TEST_CASE("verify_chain: head_hash is the last good record's") {
  const auto chain = make_chain(5);
  CHECK(verify_chain({}).ok);
  CHECK(verify_chain({}).head_hash == genesis_hash());
  CHECK(verify_chain({}).records == 0);
  auto broken = chain;
  broken[at_seq(4)].detail = "{}";
  CHECK(verify_chain(broken).head_hash == chain[at_seq(3)].hash);
  // Losing the newest record is invisible to the chain itself (documented): the head moves.
  auto truncated = chain;
  truncated.pop_back();
  CHECK(verify_chain(truncated).ok);
  CHECK(verify_chain(truncated).head_hash == chain[at_seq(4)].hash);
}

TEST_CASE("verify_chain_after: a page of a chain anchored on the record before it") {
  const auto chain = make_chain(6);
  const std::vector<audit_record> page(chain.begin() + 2, chain.begin() + 5);  // seqs 3..5
  const auto ok = verify_chain_after(page, 2, chain[at_seq(2)].hash);
  CHECK(ok.ok);
  CHECK(ok.records == 3);
  CHECK(ok.head_hash == chain[at_seq(5)].hash);

  const auto wrong_anchor = verify_chain_after(page, 2, chain[at_seq(1)].hash);
  CHECK_FALSE(wrong_anchor.ok);
  CHECK(wrong_anchor.bad_seq == 3);
  CHECK(wrong_anchor.problem ==
        "record 3: prev_hash is not record 2's hash (that record edited and re-hashed, or "
        "records removed or reordered before it)");

  const std::vector<audit_record> gap(chain.begin() + 3, chain.begin() + 5);  // seqs 4..5
  const auto missing = verify_chain_after(gap, 2, chain[at_seq(2)].hash);
  CHECK(missing.bad_seq == 4);
  CHECK(missing.problem == "record 4 follows record 2 (record 3 removed)");
}

}  // namespace sluice::control::audit
