#pragma once
// Shared by the store tests: a temp directory that cleans up after itself, and record builders.

#include <doctest/doctest.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <filesystem>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include "control/store/store.hpp"

namespace sluice::control::store::test {

class temp_dir {
 public:
  temp_dir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "sluice-store-XXXXXX").string();
    REQUIRE(mkdtemp(tmpl.data()) != nullptr);
    path_ = tmpl;
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  [[nodiscard]] std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

inline directive_record make_directive(const std::string& issuer, const std::string& id,
                                       std::int64_t received_at = 1700000000) {
  directive_record d;
  d.issuer = issuer;
  d.id = id;
  d.document = "id: " + id + "\r\nissuer: " + issuer + "\naction: block\n# Блокировка\n";
  d.signature = "untrusted comment: sig\nRWQ...\ntrusted comment: t\nabc\n";
  d.action = "block";
  d.state = "awaiting_approval";
  d.submitted_by = "ministry-token";
  d.received_at = received_at;
  d.updated_at = received_at + 1;
  return d;
}

inline inventory_record make_inventory(const std::string& id, const std::string& state = "enrolled") {
  inventory_record r;
  r.node_id = id;
  r.labels = {{"site", "msk-1"}, {"group", "canary"}};
  r.state = state;
  r.fingerprint = std::string(64, 'a');
  r.certificate_not_after = 1800000000;
  r.source = "api";
  r.enrolled_at = 1700000000;
  r.enrolled_by = "eng-alice";
  if (state == "revoked") {
    r.revoked_at = 1700000100;
    r.revoked_by = "eng-bob";
    r.revoked_reason = "stolen — украден";
  }
  return r;
}

inline void check_same(const inventory_record& a, const inventory_record& b) {
  CHECK(a.node_id == b.node_id);
  CHECK(a.labels == b.labels);
  CHECK(a.state == b.state);
  CHECK(a.fingerprint == b.fingerprint);
  CHECK(a.certificate_not_after == b.certificate_not_after);
  CHECK(a.source == b.source);
  CHECK(a.enrolled_at == b.enrolled_at);
  CHECK(a.enrolled_by == b.enrolled_by);
  CHECK(a.revoked_at == b.revoked_at);
  CHECK(a.revoked_by == b.revoked_by);
  CHECK(a.revoked_reason == b.revoked_reason);
}

inline audit::audit_record make_audit(const std::string& event, const std::string& subject,
                                      std::int64_t at = 1700000000000) {
  audit::audit_record r;
  r.at = at;
  r.actor = "controller";
  r.event = event;
  r.subject = subject;
  r.detail = R"({"why":"test"})";
  return r;
}

// Runs one SQL statement on the file through a separate connection, as an operator (or an
// attacker) editing the database by hand would.
inline void raw_sql(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                          nullptr) == SQLITE_OK);
  char* err = nullptr;
  const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  const std::string msg = err ? err : "";
  sqlite3_free(err);
  sqlite3_close(db);
  REQUIRE_MESSAGE(rc == SQLITE_OK, sql << ": " << msg);
}

inline node_record make_node(const std::string& id) {
  node_record n;
  n.node_id = id;
  n.labels = {{"site", "a"}, {"region", "north"}};
  n.first_seen = 1700000000;
  n.last_seen = 1700000100;
  n.applied_revision = 3;
  n.ruleset_sha256 = std::string(64, 'c');
  n.nack = true;
  n.nack_revision = 4;
  n.error = "line 3: unknown key \"x\"";
  n.health = "ok";
  // Opaque to the store (the controller checks them): any text round-trips.
  n.audit_checkpoint = R"({"count":12,"head":")" + std::string(64, 'a') + R"(","signature":"x\ny"})";
  n.audit_checkpoint_conflict = "";
  return n;
}

// Field-by-field equality of records as a store returns them (version and expired excluded:
// the store derives those).
inline void check_same(const directive_record& a, const directive_record& b) {
  CHECK(a.issuer == b.issuer);
  CHECK(a.id == b.id);
  CHECK(a.document == b.document);
  CHECK(a.signature == b.signature);
  CHECK(a.action == b.action);
  CHECK(a.state == b.state);
  CHECK(a.end_reason == b.end_reason);
  CHECK(a.submitted_by == b.submitted_by);
  CHECK(a.received_at == b.received_at);
  CHECK(a.updated_at == b.updated_at);
  CHECK(a.ended_at == b.ended_at);
  REQUIRE(a.approvals.size() == b.approvals.size());
  for (std::size_t i = 0; i < a.approvals.size(); ++i) {
    CHECK(a.approvals[i].actor == b.approvals[i].actor);
    CHECK(a.approvals[i].at == b.approvals[i].at);
    CHECK(a.approvals[i].kind == b.approvals[i].kind);
    CHECK(a.approvals[i].reason == b.approvals[i].reason);
  }
}

// Five directives whose list order (received_at, then issuer/id) every store must give, and
// that order.
inline void add_order_directives(write_batch& b) {
  for (const auto& [issuer, id, at] : std::vector<std::tuple<std::string, std::string, int>>{
           {"z", "late", 300}, {"b", "tie", 200}, {"a", "tie-2", 200}, {"a", "tie-1", 200},
           {"m", "early", 100}}) {
    b.directives.push_back({make_directive(issuer, id, at), 0});
  }
}
inline void check_directive_order(store& s) {
  std::vector<std::string> keys;
  for (const auto& d : s.list_directives()) keys.push_back(d.issuer + "/" + d.id);
  CHECK(keys == std::vector<std::string>{"m/early", "a/tie-1", "a/tie-2", "b/tie", "z/late"});
}

// Ten audit records (seqs 1-10 in an empty store), and how audit_since must page over them.
inline void add_ten_audit_records(write_batch& b) {
  for (int i = 0; i < 10; ++i) b.audit.push_back(make_audit("e" + std::to_string(i), ""));
}
inline void check_audit_paging(store& s) {
  auto seqs = [](const std::vector<audit::audit_record>& v) {
    std::vector<std::uint64_t> out;
    for (const auto& r : v) out.push_back(r.seq);
    return out;
  };
  CHECK(seqs(s.audit_since(0, 3)) == std::vector<std::uint64_t>{1, 2, 3});
  CHECK(seqs(s.audit_since(7)) == std::vector<std::uint64_t>{8, 9, 10});
  CHECK(seqs(s.audit_since(7, 2)) == std::vector<std::uint64_t>{8, 9});
  CHECK(s.audit_since(10).empty());
  CHECK(s.audit_since(std::numeric_limits<std::uint64_t>::max()).empty());
  CHECK(audit::verify_chain_after(s.audit_since(4, 3), 4, s.audit_since(3, 1)[0].hash).ok);
}

inline void check_same(const node_record& a, const node_record& b) {
  CHECK(a.node_id == b.node_id);
  CHECK(a.labels == b.labels);
  CHECK(a.first_seen == b.first_seen);
  CHECK(a.last_seen == b.last_seen);
  CHECK(a.applied_revision == b.applied_revision);
  CHECK(a.ruleset_sha256 == b.ruleset_sha256);
  CHECK(a.nack == b.nack);
  CHECK(a.nack_revision == b.nack_revision);
  CHECK(a.error == b.error);
  CHECK(a.health == b.health);
  CHECK(a.audit_checkpoint == b.audit_checkpoint);
  CHECK(a.audit_checkpoint_conflict == b.audit_checkpoint_conflict);
}

}  // namespace sluice::control::store::test
