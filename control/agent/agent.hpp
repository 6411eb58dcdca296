#pragma once
// The node agent: pulls this node's policy snapshot from the controller (long-poll), verifies it,
// has it applied, persists it, and reports (control/README.md, "Node protocol").
//
// The core (`agent`) takes its collaborators as interfaces: a `transport` (HTTP in
// http_transport.hpp; tests pass fakes or a loopback server), an `applier` (the dataplane's
// policy holder, or the fleet simulator's parser) and a `clock`. It owns no thread: run() loops
// on the caller's thread (see runner.hpp for one that owns it), run_once() does one iteration
// (tests drive it step by step).
//
// Acceptance (every check before anything changes). The 200 body is {"revision": N, "scope": S,
// "policy": TEXT, "signature": MINISIG}; the signature verifies with the controller's key over
// the bytes of `policy`; `policy` parses as a self-contained policy (no apps:) whose `revision:`
// is N; N is above the held revision. The signature's trusted comment binds the bytes to the
// nodes they are for, in one of two forms:
//   "sluice-snapshot revision=N scope=S" - signed once per (scope, revision), the same bytes for
//       every node in the scope. S is `all` (every node) or comma-separated terms, each `+SCOPE`
//       (nodes in SCOPE) or `!SCOPE` (nodes not in it); SCOPE is parts joined by `&`: optionally
//       first `site:` and site names joined by `|`, then zero or more `key=value` parts, at
//       least one part. A node is in SCOPE when (there is no site part or its label `site` is
//       one of the sites) and it has every key=value label (control/directive's
//       scope_spec::covers). Names and values are [A-Za-z0-9_.-]{1,64} (parse_labels' charset),
//       anything else is malformed. The node takes the snapshot only when, for EVERY term, its
//       membership (by agent_config.labels) equals the term's sign: else wrong_scope.
//   "sluice-snapshot node=ID revision=N" - legacy (controllers before issue 13, and snapshots
//       persisted by them): ID must be this node.
// A body's "node", when present (legacy controllers, and the persisted file, which snapshot_json
// writes with node = this node's id), must be this node (wrong_node); a body's "scope", when
// present (legacy bodies have none), must be the signed one (wrong_trusted_comment). N in the comment must be the body's revision.
// Then apply; only once the apply succeeded is the snapshot persisted (atomically: temp file,
// fsync, rename, fsync of the directory) and acknowledged. Any failure is NACKed with a
// "<code>: <detail>" error and the policy in force stays.
//
// Held revision: the revision of the last snapshot accepted from a controller (persisted or
// received), 0 if none. A policy the applier had before any snapshot (sluice-dataplane
// --policy) is a bootstrap: the first valid snapshot replaces it whatever its revision.
//
// Audit checkpoints (issue 14; control/audit/checkpoint.hpp). The 200 body's "checkpoint"
// member and the 304's X-Sluice-Audit-Checkpoint header carry the controller's latest signed
// checkpoint of its audit log. The agent keeps the newest it saw: one that verifies with the
// controller key and covers more records than the held one is persisted (state dir,
// audit_checkpoint.json, atomically) and then held; a lower count is ignored (never backwards);
// the same count with another head is a conflict (the key signed two histories), persisted as
// audit_checkpoint_conflict.json (the first one only) and reported beside the held one. Every
// status report carries both ("audit_checkpoint", "audit_checkpoint_conflict": the serialised
// form). A checkpoint is independent of the snapshot it came with: a refused snapshot's
// checkpoint may still be taken, and checking one never changes the policy in force.
//
// Fail static: with no controller reachable the agent keeps what is in force and retries with a
// capped exponential backoff; at start it re-verifies the persisted snapshot (a tampered file is
// refused, not applied) and applies it before contacting anyone. The re-check uses the labels
// configured now: a node relabelled out of its persisted snapshot's scope refuses the file.
//
// Steps: run_once() is the composition of public steps that do no network I/O (report_due,
// report_sent, poll_wait, handle_fetch, backoff_after) with the blocking transport; an
// event-driven driver (tools/sluice_fleet_sim.cpp) calls the same steps around its own
// non-blocking requests, so both run the same protocol code.
//
// Threads: start(), run(), run_once() and the steps from one thread (the agent's); stop(),
// stopping() and state() from any thread. Nothing here throws except std::bad_alloc.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "control/audit/checkpoint.hpp"
#include "control/common/node_protocol.hpp"
#include "control/crypto/minisign.hpp"

namespace sluice::control::agent {

using label_map = std::map<std::string, std::string>;

// "k=v,k=v" -> map. Keys and values: [A-Za-z0-9_.-]+, keys unique; "" is the empty map.
[[nodiscard]] std::optional<label_map> parse_labels(std::string_view text, std::string& error);
// The X-Sluice-Labels form, "k=v,k=v" in key order.
[[nodiscard]] std::string format_labels(const label_map& labels);
// Node ids: [A-Za-z0-9_.-]{1,64} (they go into URL paths and trusted comments unescaped).
[[nodiscard]] bool valid_node_id(std::string_view id) noexcept;

// ---- snapshots --------------------------------------------------------------------------------

struct snapshot {
  std::string node;       // this node's id (what the persisted file names)
  std::string scope;      // the signed scope, "" for a legacy node-bound snapshot
  std::uint64_t revision = 0;
  std::string policy;     // policy document text (the signed bytes)
  std::string signature;  // minisign signature file text

  bool operator==(const snapshot&) const = default;
};

#define SLUICE_AGENT_REFUSALS(X)                                                      \
  X(malformed_snapshot, "the body is not {revision, scope, policy, signature}")        \
  X(wrong_node, "the snapshot is for another node")                                   \
  X(bad_signature, "the signature does not verify with the controller key")           \
  X(wrong_trusted_comment, "the trusted comment is not a binding of this revision")   \
  X(wrong_scope, "the snapshot is for nodes of another scope")                        \
  X(invalid_policy, "the policy text does not parse")                                 \
  X(revision_mismatch, "the policy's revision: differs from the snapshot's")          \
  X(stale_revision, "the revision is not above the held one")                         \
  X(apply_failed, "the dataplane refused the policy")

enum class refusal : std::uint8_t {
#define SLUICE_X(name, text) name,
  SLUICE_AGENT_REFUSALS(SLUICE_X)
#undef SLUICE_X
      count
};
[[nodiscard]] std::string_view to_string(refusal r) noexcept;

struct snapshot_check {
  std::optional<snapshot> accepted;
  refusal code = refusal::malformed_snapshot;  // when !accepted
  std::string detail;                          // when !accepted
  std::uint64_t offered = 0;  // the body's revision when it had one (what a NACK answers)
  // The body's "checkpoint" member as JSON text ("" when absent or the body is not JSON),
  // accepted or not: the checkpoint is checked on its own (agent::handle_fetch).
  std::string checkpoint;

  [[nodiscard]] explicit operator bool() const noexcept { return accepted.has_value(); }
  // "<code>: <detail>", the NACK error.
  [[nodiscard]] std::string error_text() const;
};

// A snapshot scope (the S of "sluice-snapshot revision=N scope=S", header comment) against a
// node's labels. The whole text is validated before anything is evaluated.
enum class scope_match : std::uint8_t { in, out, malformed };
struct scope_result {
  scope_match match = scope_match::malformed;
  std::string detail;  // out: the first term the node fails; malformed: why
};
[[nodiscard]] scope_result match_snapshot_scope(std::string_view scope, const label_map& labels);

// The parts of check_snapshot that are pure functions of the bytes (not of the node): the
// signature and the policy's parse. Injectable so that a simulator of many nodes receiving
// identical bytes can share them (tools/sluice_fleet_sim.cpp); the default is the real thing.
// Called from the agent's thread; an instance shared by agents of several threads must lock.
class snapshot_verifier {
 public:
  virtual ~snapshot_verifier() = default;
  [[nodiscard]] virtual crypto::verify_result verify(const crypto::public_key& key,
                                                     std::string_view policy,
                                                     std::string_view signature);
  // The `revision:` of `policy` when it parses as a self-contained policy, else nullopt and
  // `error`.
  [[nodiscard]] virtual std::optional<std::uint64_t> policy_revision(const std::string& policy,
                                                                     std::string& error);
  // audit::verify_checkpoint (a pure function of the key and the checkpoint's bytes).
  [[nodiscard]] virtual audit::checkpoint_check verify_checkpoint(const crypto::public_key& key,
                                                                  const audit::checkpoint& c);
};
// crypto::verify and match::load_policy (stateless, thread-safe).
[[nodiscard]] snapshot_verifier& real_verifier();

// Every acceptance check but applying (see the header comment). `labels` are this node's (for
// the scope), `held` is the held revision.
[[nodiscard]] snapshot_check check_snapshot(std::string_view body, std::string_view node_id,
                                            const label_map& labels,
                                            const crypto::public_key& controller_key,
                                            std::uint64_t held,
                                            snapshot_verifier& verifier = real_verifier());

// The persisted form, {"node", "revision", "policy", "signature"} (and "scope" when set).
[[nodiscard]] std::string snapshot_json(const snapshot& s);
// Writes `dir`/snapshot.json atomically (temp file + fsync + rename + fsync of `dir`). False
// and `error` on failure; the previous file is then untouched.
[[nodiscard]] bool persist_snapshot(const std::filesystem::path& dir, const snapshot& s,
                                    std::string& error);
// The same for any file of the state dir: `dir`/`name` holds `text` afterwards, or is untouched.
[[nodiscard]] bool persist_file(const std::filesystem::path& dir, std::string_view name,
                                std::string_view text, std::string& error);
inline constexpr std::string_view snapshot_file_name = "snapshot.json";
// audit::checkpoint_json + "\n" of the held checkpoint, and of a conflicting one.
inline constexpr std::string_view checkpoint_file_name = "audit_checkpoint.json";
inline constexpr std::string_view checkpoint_conflict_file_name = "audit_checkpoint_conflict.json";

// ---- status reports ---------------------------------------------------------------------------

struct status_report {
  std::uint64_t revision = 0;  // in force
  std::uint64_t offered = 0;   // the revision this answers, 0 for a periodic report
  std::string ruleset_sha256;  // of the policy in force
  bool ack = true;
  std::string error;           // why a NACK refused `offered`
  std::string health = "ok";
  label_map labels;
  // audit::checkpoint_json of the held checkpoint and of a conflicting one; "" when none.
  std::string audit_checkpoint;
  std::string audit_checkpoint_conflict;

  bool operator==(const status_report&) const = default;
};
// The POST /v1/nodes/{node}/status body.
[[nodiscard]] std::string status_json(const status_report& r);

// Reports carried on the long poll (issue 13). A controller that takes them says so on every
// answer to a snapshot poll (header X-Sluice-Status-Carry: yes); the agent then puts its next
// report, when carriable(), on the next poll instead of POSTing it:
//     X-Sluice-Status: ack revision=N offered=N ruleset=HEX [checkpoint=BASE64]
// (offered 0 for a periodic report; checkpoint: audit::checkpoint_header of the held one). The
// controller records it before the poll waits, as it would a POST, and answers the poll as
// usual; an answer with the carry header is the proof it was taken. Anything else (NACKs, a
// health other than "ok", a conflicting checkpoint) is POSTed as before, and so is any report
// to a controller that did not say it takes them (older versions, mid-upgrade replicas).
using control::status_carry_header_name;
using control::status_header_name;
[[nodiscard]] bool carriable(const status_report& r) noexcept;
// The X-Sluice-Status value of a carriable report; `checkpoint_header` is the header form of
// r.audit_checkpoint ("" when none).
[[nodiscard]] std::string status_header(const status_report& r, std::string_view checkpoint_header);

// ---- collaborators ----------------------------------------------------------------------------

enum class fetch_status : std::uint8_t { snapshot, not_modified, failed };

struct fetch_result {
  fetch_status status = fetch_status::failed;
  std::string body;        // status == snapshot: the 200 body
  std::string checkpoint;  // status == not_modified: the X-Sluice-Audit-Checkpoint header ("")
  std::string error;       // status == failed: why (every controller tried)
  std::string controller;  // the controller that answered (or the last one tried)
  // The answer had X-Sluice-Status-Carry: yes (that controller takes reports on polls, and took
  // the one this fetch carried, if any).
  bool status_carry = false;
};

struct post_result {
  bool ok = false;
  std::string error;
};

class transport {
 public:
  virtual ~transport() = default;
  // GET the snapshot, If-None-Match the held revision (none when `held` is 0), waiting up to
  // `wait` for a change, with X-Sluice-Status: `status` when it is not empty. Blocks at most
  // about `wait` plus the transport's timeouts.
  [[nodiscard]] virtual fetch_result fetch(std::uint64_t held, std::chrono::seconds wait,
                                           std::string_view status) = 0;
  [[nodiscard]] virtual post_result post_status(const status_report& report) = 0;
  // From any thread: makes a blocked fetch/post return (failed) soon, and later ones at once.
  virtual void interrupt() = 0;
};

struct apply_result {
  bool ok = false;
  std::string ruleset_sha256;  // of the policy now in force (the new one when ok)
  std::string error;           // why it was refused (the old policy stays)
};

struct applied_policy {
  std::uint64_t revision = 0;
  std::string ruleset_sha256;
};

class applier {
 public:
  virtual ~applier() = default;
  // Compiles and swaps `policy_text` in; on failure the policy in force must stay. Called from
  // the agent's thread only.
  [[nodiscard]] virtual apply_result apply(const std::string& policy_text,
                                           std::uint64_t revision) = 0;
  // The policy in force (revision 0 and the empty policy's digest when none was given).
  [[nodiscard]] virtual applied_policy current() const = 0;
};

class clock {
 public:
  virtual ~clock() = default;
  [[nodiscard]] virtual std::chrono::steady_clock::time_point steady_now() = 0;
  [[nodiscard]] virtual std::int64_t unix_now() = 0;  // seconds
};
// The real clocks.
class system_clock final : public clock {
 public:
  [[nodiscard]] std::chrono::steady_clock::time_point steady_now() override;
  [[nodiscard]] std::int64_t unix_now() override;
};

// ---- the agent --------------------------------------------------------------------------------

struct agent_config {
  std::string node_id;
  label_map labels;
  crypto::public_key controller_key;
  std::filesystem::path state_dir;  // must exist; holds snapshot.json
  std::chrono::seconds wait{25};    // long-poll wait asked of the controller (at most 60)
  std::chrono::seconds status_interval{30};
  std::chrono::milliseconds backoff_initial{1000};
  std::chrono::milliseconds backoff_max{30000};
  // The "health" of status reports; "ok" when not set. Called from the agent's thread.
  std::function<std::string()> health;
  // check_snapshot's byte-only work; null: real_verifier(). Must outlive the agent.
  snapshot_verifier* verifier = nullptr;
};

// Counters and state for metrics and /status: a copy, taken under the agent's lock.
struct agent_state {
  std::uint64_t held_revision = 0;     // last snapshot accepted from a controller
  std::uint64_t applied_revision = 0;  // revision in force (the applier's)
  std::string ruleset_sha256;          // of the policy in force
  std::uint64_t fetches = 0;           // answered fetches (200 or 304)
  std::uint64_t fetch_failures = 0;    // no controller answered
  std::uint64_t not_modified = 0;      // 304s
  std::uint64_t applied = 0;           // snapshots accepted and applied (start-up included)
  std::uint64_t acks = 0;              // ACK reports sent
  std::uint64_t nacks = 0;             // offers refused (each reported as a NACK)
  std::uint64_t status_posts = 0;      // reports a controller took (POSTed or carried on a poll)
  std::uint64_t status_failures = 0;   // reports no controller took
  std::uint64_t persist_failures = 0;
  std::int64_t last_contact = 0;       // unix seconds of the last controller answer, 0 never
  std::int64_t last_applied_at = 0;    // unix seconds of the last accepted snapshot
  std::string controller;              // the controller last talked to
  std::string last_error;              // the last refusal or failure ("" when none yet)
  std::string startup;                 // what happened to the persisted snapshot at start
  // Audit checkpoints: the held one's count and head (0, "" when none), whether a conflicting
  // one is held, how many were taken (held after verifying) and refused (did not verify).
  std::uint64_t checkpoint_count = 0;
  std::string checkpoint_head;
  bool checkpoint_conflict = false;
  std::uint64_t checkpoints_taken = 0;
  std::uint64_t checkpoints_refused = 0;
};

// report_failed: a status report (an ACK or NACK) could not be delivered; it is retried, with
// backoff, before the next long poll rather than after it, so a lost ACK is late by the backoff,
// not by a whole poll.
enum class poll_outcome : std::uint8_t {
  applied,
  refused,
  not_modified,
  fetch_failed,
  report_failed,
  stopped
};
[[nodiscard]] std::string_view to_string(poll_outcome o) noexcept;

class agent {
 public:
  // Collaborators must outlive the agent.
  agent(agent_config config, transport& t, applier& a, clock& c);
  agent(const agent&) = delete;
  agent& operator=(const agent&) = delete;

  // Loads, re-verifies and applies the persisted snapshot, if any; contacts nobody. Returns
  // true when a persisted snapshot is now in force. Idempotent (the second call does nothing).
  bool start();
  // One iteration: resend a report that could not be sent, send the periodic report when due,
  // then one long-poll and its handling (apply + ACK, or NACK). Calls start() first if needed.
  poll_outcome run_once();
  // start(), then run_once() until stop(), sleeping a capped exponential backoff after failed
  // fetches and refused offers (the controller keeps offering a refused revision).
  void run();
  // From any thread; idempotent. run() returns soon after.
  void stop();
  [[nodiscard]] bool stopping() const;

  // ---- the steps (no network I/O; the agent's thread) --------------------------------------
  // One iteration is: report_due() -> if any and its `carry` is empty, post it, report_sent()
  // (a failed `retry` ends the iteration: report_failed, no long poll) ->
  // fetch(held_revision(), poll_wait(), carry) -> handle_fetch() -> if it gave a report, post
  // it, report_sent() -> backoff_after(outcome).
  struct due_report {
    status_report report;
    // An ACK/NACK no controller took yet (else a periodic report): when it fails again the
    // iteration ends with report_failed, so that it is retried before the next long poll.
    bool retry = false;
    // Not empty: the report goes on the next long poll as this X-Sluice-Status value instead of
    // a POST (the controller takes them and carriable()); handle_fetch() records what became
    // of it, report_sent() is not called.
    std::string carry;
  };
  // The report to send before the next long poll: the owed one, else the periodic one when it
  // is due; nullopt when none. Calls start() first if needed. A report it hands out to carry is
  // in flight until the next handle_fetch().
  [[nodiscard]] std::optional<due_report> report_due();
  // Records what became of `report` (from report_due() or handle_fetch()): a failed one is owed
  // (report_due() returns it next). Returns result.ok.
  bool report_sent(const status_report& report, const post_result& result);
  // What the long poll asks: If-None-Match this revision (0: none), waiting up to poll_wait()
  // (the configured wait, cut so the next periodic report keeps its interval; at least 1 s).
  [[nodiscard]] std::uint64_t held_revision() const noexcept { return held_; }
  [[nodiscard]] std::chrono::seconds poll_wait();
  struct fetch_handling {
    poll_outcome outcome = poll_outcome::fetch_failed;
    // The ACK/NACK to POST now (applied or refused). An ACK for a controller that takes reports
    // on polls is not here: it is owed, and report_due() hands it out to carry.
    std::optional<status_report> report;
    // The report this fetch carried, when the answer says the controller took it.
    std::optional<status_report> taken;
  };
  // Settles a carried report (taken when the answer says so; owed otherwise, and POSTed next
  // time), counts the answer; for a 200, checks, applies and persists the snapshot and builds
  // the ACK (applied) or NACK (refused). Never returns stopped or report_failed.
  [[nodiscard]] fetch_handling handle_fetch(const fetch_result& f);
  // The wait before the next iteration: 0 after applied / not_modified / stopped, else a capped
  // exponential backoff (fetch_failed, refused, report_failed).
  [[nodiscard]] std::chrono::milliseconds backoff_after(poll_outcome o);

  [[nodiscard]] agent_state state() const;

 private:
  bool apply_snapshot(const snapshot& s, status_report& report);
  // Takes a received checkpoint (see the header comment): verify, order, persist, hold.
  void receive_checkpoint(const audit::checkpoint& c);
  // Reads and re-verifies the persisted checkpoint files (start()).
  void load_checkpoints();
  [[nodiscard]] snapshot_verifier& verifier() const;
  [[nodiscard]] status_report periodic_report();
  void sleep_for(std::chrono::milliseconds d);
  void set_error(std::string text);

  agent_config config_;
  transport& transport_;
  applier& applier_;
  clock& clock_;
  bool started_ = false;
  std::uint64_t held_ = 0;
  std::optional<status_report> pending_;  // a report no controller took yet
  std::optional<audit::checkpoint> checkpoint_;           // the held one
  std::optional<audit::checkpoint> checkpoint_conflict_;  // the first conflicting one
  std::optional<audit::checkpoint> checkpoint_refused_;   // the last that did not verify
  std::string checkpoint_text_, checkpoint_conflict_text_;  // their checkpoint_json
  std::string checkpoint_header_;  // audit::checkpoint_header of the held one
  // The last answer said its controller takes reports on polls; the report carried now.
  bool controller_carries_ = false;
  std::optional<status_report> carried_;
  std::chrono::steady_clock::time_point next_status_{};
  std::chrono::milliseconds backoff_{0};

  mutable std::mutex mutex_;  // guards state_ and stop_
  std::condition_variable wake_;
  bool stop_ = false;
  agent_state state_;
};

}  // namespace sluice::control::agent
