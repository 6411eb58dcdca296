#pragma once
// The controller's durable state behind one interface, with revision semantics a distributed
// backend (etcd, issue 7) implements as well as the embedded default (SQLite in WAL mode):
//  - every change goes through commit(): all of a batch or nothing, durable when it returns ok;
//  - directive records carry `version` (the store revision of their last change); a batch can
//    require a record to still be at the version it read (compare-and-swap), so two writers
//    never silently overwrite each other;
//  - audit records are appended in the same transaction as the change they describe, sealed
//    into the hash chain by the store (append = CAS on the chain's head);
//  - policy revisions are dense and monotonic: a batch may add revision N+1 only.
// Implementations are thread-safe. Reads throw store_error on I/O failure or corruption (the
// API answers 503); commit() never throws (except std::bad_alloc).

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "control/audit/audit.hpp"

namespace sluice::control::store {

struct store_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct approval {
  approval() = default;
  approval(std::string actor_, std::int64_t at_, std::string kind_ = "approve",
           std::string reason_ = {})
      : actor(std::move(actor_)), at(at_), kind(std::move(kind_)), reason(std::move(reason_)) {}
  std::string actor;
  std::int64_t at = 0;  // unix seconds
  // "approve": an engineer's approval of the directive; "override": an engineer's consent to
  // enforce it although its targets overlap protected ranges or names (issue 8), with why.
  std::string kind = "approve";
  std::string reason;
};

struct directive_record {
  std::string issuer;
  std::string id;              // key: issuer + "/" + id
  std::string document;        // the signed YAML, byte-exact as received
  std::string signature;       // minisign signature file text
  std::string action;          // block | unblock | monitor | throttle (for listing)
  std::string state;           // awaiting_approval | scheduled | active | ended
  std::string end_reason;      // "" | expired | lifted | revoked
  std::string submitted_by;
  std::int64_t received_at = 0;
  std::int64_t updated_at = 0;
  std::int64_t ended_at = 0;   // 0 while not ended
  std::vector<approval> approvals;
  std::uint64_t version = 0;   // store revision of the last change; 0 = not stored
};

// One compiled fleet-wide policy revision (the controller defines `content`'s format).
struct revision_record {
  std::uint64_t revision = 0;
  std::int64_t generated_at = 0;  // unix seconds
  std::string content;
  std::string reason;             // what caused it ("directive approved: ...")
};

struct node_record {
  std::string node_id;
  std::map<std::string, std::string> labels;
  std::int64_t first_seen = 0;
  std::int64_t last_seen = 0;          // unix seconds
  std::uint64_t applied_revision = 0;
  std::string ruleset_sha256;
  bool nack = false;                   // last report refused the offered revision
  std::uint64_t nack_revision = 0;
  std::string error;                   // of the last NACK
  std::string health;                  // "ok" or what the node says is wrong
  // The newest signed audit checkpoint the node holds (control/audit/checkpoint.hpp, serialised
  // form) and one it received that conflicts with it (same count, another head); "" when none.
  // Kept as the node last reported them (verified by the controller before storing).
  std::string audit_checkpoint;
  std::string audit_checkpoint_conflict;
  // Set by list_nodes() of a shared store: the node's liveness key (written with a lease on every
  // upsert) has expired, so it is stale whatever last_seen says. Not written by commit().
  bool expired = false;
};

// One node of the inventory (issue 14): which node ids exist, their labels (the only source of a
// node's scope and canary membership), whether they are enrolled, and the certificate they must
// present. Key: node_id.
struct inventory_record {
  std::string node_id;
  std::map<std::string, std::string> labels;
  std::string state = "enrolled";      // enrolled | revoked
  // Lowercase hex SHA-256 of the DER certificate the controller issued at enrolment: only that
  // certificate is accepted for the node. "" = any certificate of the node CA whose CN is node_id
  // (an ISP CA issues them, or the node was enrolled from the config).
  std::string fingerprint;
  std::int64_t certificate_not_after = 0;  // unix seconds; 0 when not issued here
  std::string source = "api";          // api | config
  std::int64_t enrolled_at = 0;        // unix seconds, of the latest enrolment
  std::string enrolled_by;
  std::int64_t revoked_at = 0;         // 0 while enrolled
  std::string revoked_by;
  std::string revoked_reason;
};

// One node's impact report (issue 8): what its address-matched rules saw in one window, as the
// agent sent it (JSON, the controller defines the format). Key: node_id + window_end.
struct impact_record {
  std::string node_id;
  std::int64_t window_start = 0;  // unix seconds
  std::int64_t window_end = 0;
  std::uint64_t revision = 0;     // the policy revision in force at the node
  std::string body;
};

struct write_batch {
  struct directive_put {
    directive_record record;
    std::uint64_t expected_version = 0;  // 0: must not exist yet; else must equal stored version
  };
  std::vector<directive_put> directives;
  std::vector<audit::audit_record> audit;      // seq/prev_hash/hash are assigned on commit
  std::vector<revision_record> revisions;      // each must be latest + 1, in order
  std::map<std::string, std::string> meta;     // small named values (rollout state, ...)
  std::vector<node_record> nodes;              // upserts
  std::vector<impact_record> impacts;          // upserts by (node_id, window_end)
  std::vector<inventory_record> inventory;     // upserts by node_id
  std::int64_t prune_impacts_before = 0;       // > 0: delete impacts with window_end < this
  // Compare-and-swap on meta: each key must currently hold exactly this value ("" = absent),
  // else the batch is a conflict. Lets replicas update shared state (the rollout) safely.
  std::map<std::string, std::string> meta_expect;
  // Shared stores: commit only while this replica holds leadership (fences a leader that lost
  // its lease but does not know yet); conflict otherwise. Ignored by single-replica stores.
  bool require_leadership = false;
  [[nodiscard]] bool empty() const noexcept {
    return directives.empty() && audit.empty() && revisions.empty() && meta.empty() &&
           nodes.empty() && impacts.empty() && prune_impacts_before == 0 && inventory.empty();
  }
};

enum class commit_outcome : std::uint8_t { ok, conflict, failed };

struct commit_result {
  commit_outcome outcome = commit_outcome::failed;
  std::string error;                    // for conflict/failed: which record or what failed
  std::uint64_t store_revision = 0;     // ok: the revision this commit produced
  std::vector<std::uint64_t> audit_seqs;  // ok: seq of each appended audit record
  [[nodiscard]] explicit operator bool() const noexcept { return outcome == commit_outcome::ok; }
};

class store {
 public:
  virtual ~store() = default;

  [[nodiscard]] virtual commit_result commit(const write_batch& batch) = 0;

  [[nodiscard]] virtual std::optional<directive_record> get_directive(const std::string& issuer,
                                                                      const std::string& id) = 0;
  // By received_at, then issuer/id.
  [[nodiscard]] virtual std::vector<directive_record> list_directives() = 0;

  // Records with seq > after_seq, by seq, at most `limit` (0 = all).
  [[nodiscard]] virtual std::vector<audit::audit_record> audit_since(std::uint64_t after_seq,
                                                                     std::size_t limit = 0) = 0;
  [[nodiscard]] virtual std::optional<audit::audit_record> audit_head() = 0;

  [[nodiscard]] virtual std::optional<revision_record> latest_revision() = 0;
  [[nodiscard]] virtual std::optional<revision_record> get_revision(std::uint64_t revision) = 0;

  [[nodiscard]] virtual std::optional<std::string> get_meta(const std::string& key) = 0;

  [[nodiscard]] virtual std::vector<node_record> list_nodes() = 0;

  // The whole inventory, by node_id.
  [[nodiscard]] virtual std::vector<inventory_record> list_inventory() = 0;

  // Impact reports with window_end >= since, by window_end then node_id.
  [[nodiscard]] virtual std::vector<impact_record> list_impacts(std::int64_t since) = 0;

  // ---- replication (issue 7) -------------------------------------------------------------
  // A revision of the store's whole state that rises with every commit (by anyone, any
  // replica): the controller re-reads shared state when it moved.
  [[nodiscard]] virtual std::uint64_t store_revision() = 0;
  // Blocks until store_revision() > after or `timeout` passes; returns store_revision(). A shared
  // store learns about other replicas' commits through a watch. Never throws.
  virtual std::uint64_t wait_for_change(std::uint64_t after, std::chrono::milliseconds timeout) = 0;

  // Node records stored since the last call (by any replica, this one included), newest per
  // node, from the store's change feed; nullopt when there is no feed, or when it may have
  // missed something (not started yet, compacted away, a node deleted) until list_nodes() has
  // been called. Lets a replica follow the others' node reports without re-reading every
  // record. `expired` is false (the writer renews liveness with the record). Never throws.
  [[nodiscard]] virtual std::optional<std::vector<node_record>> take_node_changes() {
    return std::nullopt;
  }

  struct leadership {
    bool leader = true;   // this replica may run the time-driven work now
    std::string holder;   // the leader's replica name ("" when unknown or single-replica)
    std::uint64_t term = 0;  // changes whenever leadership is (re)acquired by anyone
  };
  // Single-replica stores: always {true, "", 0}. Shared stores campaign in the background (etcd
  // lease + a key created only if absent) and answer from their last known state.
  [[nodiscard]] virtual leadership leadership_state() { return {}; }
};

// SQLite in WAL mode (synchronous=FULL: an acknowledged commit survives kill -9 and power loss).
// Creates the schema on first open. Throws store_error when the file cannot be opened, is not
// a Sluice database, or has a newer schema.
[[nodiscard]] std::unique_ptr<store> open_sqlite_store(const std::string& path);

// etcd v3 (issue 7): see etcd_store.hpp.

}  // namespace sluice::control::store
