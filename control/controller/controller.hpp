#pragma once
// The controller's core: directives in (verified, checked, audited), approvals, the lifecycle's
// time-driven transitions, compiling the fleet's policy into revisions, the staged rollout, and
// the node protocol's two calls. Store and clock are injected (tests pass a fake clock); the
// HTTP layer (control/api) only maps requests to these calls and results to status codes.
//
// Every call is thread-safe (one mutex: the control path is simple, not fast). Every accepted
// or refused input leaves an audit record, written in the same store transaction as the change
// it describes; a refused input changes nothing else. Nothing here throws except
// std::bad_alloc; a failing store becomes an `unavailable` error.

#include <chrono>
#include <condition_variable>
#include <functional>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "control/audit/checkpoint.hpp"
#include "control/controller/node_inventory.hpp"
#include "control/controller/refusal_log.hpp"
#include "control/crypto/minisign.hpp"
#include "control/directive/directive.hpp"
#include "control/fleet/compile.hpp"
#include "control/impact/protected.hpp"
#include "control/pki/pki.hpp"
#include "control/store/store.hpp"

namespace prometheus {
class Registry;
class Counter;
class Histogram;
template <typename T>
class Family;
class Gauge;
}  // namespace prometheus

namespace sluice::control::controller {

class clock {
 public:
  virtual ~clock() = default;
  [[nodiscard]] virtual std::int64_t now_ms() = 0;  // unix milliseconds
};

class system_clock final : public clock {
 public:
  [[nodiscard]] std::int64_t now_ms() override;
};

enum class role : std::uint8_t { ministry, engineer, viewer, node };
[[nodiscard]] std::string_view to_string(role r) noexcept;
[[nodiscard]] std::optional<role> parse_role(std::string_view s) noexcept;

struct principal {
  std::string name;  // the token's name: the audit's actor
  role r = role::viewer;
};

struct issuer_key {
  std::string issuer;
  crypto::public_key key;
};

// A node listed in the config (`nodes:`, `nodes_file:`): enrolled at start (issue 14).
struct configured_node {
  std::string id;
  std::map<std::string, std::string> labels;
};

struct controller_config {
  std::vector<issuer_key> issuers;
  std::uint32_t approvals_required = 1;  // distinct engineers, none the submitter; 0 = none
  std::set<std::string> known_sites;
  std::map<std::string, std::set<std::string>> known_labels;
  fleet::app_table apps;
  crypto::secret_key signing_key;
  std::int64_t stale_after_s = 90;
  std::map<std::string, std::string> canary_labels;  // nodes with all of these go first
  std::int64_t canary_soak_s = 10;  // canary healthy this long after its ACKs -> the rest
  std::int64_t max_wait_s = 60;     // long-poll cap
  // Submitted documents (issue 14): bytes, and YAML entries (each target is one); stored
  // documents are read whatever these say now.
  std::size_t max_directive_bytes = 4 * 1024 * 1024;
  std::size_t max_directive_entries = 200000;

  // Several replicas share the store (etcd, issue 7): re-read shared state when the store
  // moved, run the time-driven work only while the store says this replica leads.
  bool replicated = false;
  std::string replica = "controller";  // this replica's name (audit, views)
  std::size_t max_nodes_per_commit = 0;  // node status chunks per store commit; 0 = one commit

  // Issue 8. Enforcing directives whose targets overlap these are not approved until two
  // engineers (not the submitter) consent with an override.
  impact::protected_set protected_targets;
  std::uint32_t overrides_required = 2;
  // > 0: approving an enforcing directive with address targets needs an impact report (from
  // its shadow rules) whose window ended at most this long ago.
  std::int64_t impact_max_age_s = 0;
  std::int64_t impact_retention_s = 7 * 86400;  // reports older than this are pruned

  // Issue 14: node identity (control/README.md, "Node identity"). The node CA whose client
  // certificates identify nodes (nullptr: none configured); with its key, enroll_node() signs
  // nodes' CSRs for node_certificate_days.
  std::shared_ptr<const pki::certificate_authority> node_ca;
  int node_certificate_days = pki::default_certificate_days;
  // Applied to the inventory at start: an absent node is enrolled (unpinned: any certificate of
  // the node CA with its CN), an enrolled one takes these labels; a revoked one stays revoked.
  std::vector<configured_node> nodes;
};

#define SLUICE_CONTROL_ERROR_KINDS(X) \
  X(invalid, 400)                     \
  X(unauthorized, 401)                \
  X(forbidden, 403)                   \
  X(not_found, 404)                   \
  X(conflict, 409)                    \
  X(unavailable, 503)

enum class error_kind : std::uint8_t {
#define X(name, status) name,
  SLUICE_CONTROL_ERROR_KINDS(X)
#undef X
};
[[nodiscard]] int http_status(error_kind k) noexcept;

struct op_error {
  error_kind kind = error_kind::invalid;
  std::string code;     // machine-readable: "bad_signature", "replayed_id", a directive error...
  std::string message;  // precise, for humans
  int line = 0;         // document errors: 1-based line and column
  int column = 0;
};

template <class T>
struct op_result {
  std::optional<T> value;
  op_error error;
  [[nodiscard]] explicit operator bool() const noexcept { return value.has_value(); }
};

struct directive_view {
  store::directive_record record;
  std::optional<directive::directive> parsed;
  std::uint32_t in_scope = 0;   // live (not stale) nodes in its scope
  std::uint32_t enforcing = 0;  // of those: applied a revision holding its current rules (for an
                                // ended directive: one without them)
  std::uint32_t failing = 0;    // of the others: refused (NACKed) the revision offered to them
  std::uint32_t pending = 0;    // the rest of in_scope (not there yet)
  std::uint32_t stale = 0;      // in scope but silent for stale_after (not in in_scope)
  std::uint32_t approvals_required = 0;  // the config's, for the view
  std::uint32_t overrides_required = 0;  // when it overlaps protected targets
  std::vector<impact::overlap> overlaps;  // with protected targets (enforcing actions only)
};

struct node_view {
  store::node_record record;
  std::string state;  // converged | pending | failing | stale
  std::uint64_t offered_revision = 0;
  bool canary = false;
  // Unix ms when this replica learnt that applied_revision rose (the ACK taken here, or seen in
  // the store); 0 when not since this replica started.
  std::int64_t applied_at_ms = 0;
};

struct rollout_view {
  std::uint64_t target = 0;    // newest revision
  std::uint64_t released = 0;  // what non-canary nodes are offered
  std::string stage;           // canary | fleet | done | halted
  bool paused = false;
  std::string reason;          // why halted or paused
  std::int64_t stage_since = 0;  // unix ms
  bool emergency_stop = false;
  std::string leader;       // the replica running the time-driven work ("" when unknown)
  bool is_leader = true;    // this replica is it
};

// enroll_node's answer.
struct enrolment {
  store::inventory_record record;
  std::string certificate_pem;  // the node's certificate; "" when enrolled without a CSR
  std::string ca_pem;           // the node CA's certificate; "" when none is configured
};

struct status_report {
  std::uint64_t revision = 0;  // in force
  std::uint64_t offered = 0;   // the revision this report answers (0: none)
  std::string ruleset_sha256;
  bool ack = true;
  std::string error;
  std::string health = "ok";
  // The signed audit checkpoint the node holds and one that conflicts with it, as the node sent
  // them (JSON text; "" when none). Stored only when they verify with the controller's key.
  std::string audit_checkpoint;
  std::string audit_checkpoint_conflict;
  // A report carried on a long poll (X-Sluice-Status) names the held checkpoint in its header
  // form instead (audit::checkpoint_header, base64), then audit_checkpoint is "".
  std::string audit_checkpoint_header;
};

struct snapshot_offer {
  std::uint64_t revision = 0;
  // JSON: {"revision", "scope", "policy", "signature", "checkpoint"}; one signed body per
  // (revision, scope), shared by every node of the scope (control/README.md, "Node protocol"),
  // with the latest audit checkpoint appended to it (not covered by the snapshot's signature:
  // the checkpoint carries its own).
  std::shared_ptr<const std::string> body;
};

// poll_snapshot's answer: an offer now, a registered wait, or an error.
struct snapshot_poll {
  enum class kind : std::uint8_t { offer, waiting, failed };
  kind k = kind::failed;
  snapshot_offer offer;   // k == offer
  op_error error;         // k == failed
  std::uint64_t ticket = 0;  // k == waiting: for cancel_poll
};

class controller {
 public:
  // Reads the store; starts revision 1 (no rules) on a fresh store. Throws store::store_error
  // when the store cannot be read (start-up).
  controller(controller_config cfg, store::store& st, clock& clk);
  ~controller();
  controller(const controller&) = delete;
  controller& operator=(const controller&) = delete;

  [[nodiscard]] op_result<directive_view> submit(const principal& who, const std::string& document,
                                                 const std::string& signature);
  // Every check submit() makes (signature, issuer key, document, replayed id, what an unblock
  // lifts), with nothing counted, audited or stored: the console's dry run. Passed: no
  // problems, and `checked` is what would be stored, in state "checked". Refused: submit()'s
  // refusal (with line and column), and when that is the signature's, the document's own first
  // problem too (the parser stops at its first). An unavailable store is one problem of kind
  // unavailable.
  [[nodiscard]] std::vector<op_error> check(const principal& who, const std::string& document,
                                            const std::string& signature,
                                            std::optional<directive_view>& checked);
  // `note`: the engineer's optional words with the approval (kept with it, audited).
  [[nodiscard]] op_result<directive_view> approve(const principal& who, const std::string& issuer,
                                                  const std::string& id, const std::string& note = "");
  // An engineer turns down a directive awaiting approval: it ends ("rejected", with a reason,
  // audited directive.rejected) and its shadow rules leave the fleet. Refusals as revoke's, and
  // not_awaiting_approval (409).
  [[nodiscard]] op_result<directive_view> reject(const principal& who, const std::string& issuer,
                                                 const std::string& id, const std::string& reason);
  // An engineer's consent to enforce a directive whose targets overlap protected ones
  // (issue 8); `overrides_required` distinct engineers, none the submitter, unlock approval.
  [[nodiscard]] op_result<directive_view> override_protection(const principal& who,
                                                              const std::string& issuer,
                                                              const std::string& id,
                                                              const std::string& reason);
  [[nodiscard]] op_result<directive_view> revoke(const principal& who, const std::string& issuer,
                                                 const std::string& id, const std::string& reason);
  [[nodiscard]] op_result<rollout_view> set_emergency_stop(const principal& who, bool on,
                                                           const std::string& reason);
  [[nodiscard]] op_result<rollout_view> set_paused(const principal& who, bool paused,
                                                   const std::string& reason);
  // Records a request refused before it reached the core (wrong role, malformed body) in the
  // audit log as request.refused with `code`.
  void audit_refused(const principal& who, const std::string& request, const std::string& code,
                     const std::string& message);
  // A browser session (the console) opened or closed by `who`: session.opened / session.closed.
  void audit_session(const principal& who, bool opened);

  // ---- node identity (issue 14) ----------------------------------------------------------
  // Enrols `node` with `labels` (an engineer's call). With a CSR (PEM), signs it with the node
  // CA (CN = node, whatever the CSR says) and pins the new certificate's fingerprint: from now
  // on only that certificate is admitted for the node (re-enrolling replaces it). Without one,
  // the node is admitted with any certificate of the node CA whose CN is its id (an ISP CA
  // issues them). A revoked node may be enrolled again. Writes the inventory record and a
  // `node.enrolled` audit record in one commit. Refusals (audited): invalid_node_id,
  // invalid_labels (400), bad_csr (400), no_ca_key (409: no CA key configured to sign with).
  [[nodiscard]] op_result<enrolment> enroll_node(const principal& who, const std::string& node,
                                                 const std::map<std::string, std::string>& labels,
                                                 const std::string& csr_pem);
  // Many nodes at once, without CSRs (ISP CAs, benchmarks): all or none, at most 1000 per call
  // (too_many: 400). Each gets its `node.enrolled` record.
  [[nodiscard]] op_result<std::vector<store::inventory_record>> enroll_nodes(
      const principal& who, const std::vector<configured_node>& nodes);
  // Marks `node` revoked (with a reason) and audits `node.revoked` in one commit; its waiting
  // long polls are answered at once (403 revoked), and every later request of it is refused.
  // Refusals: not_found (404), already_revoked (409), missing_reason (400).
  [[nodiscard]] op_result<store::inventory_record> revoke_node(const principal& who,
                                                               const std::string& node,
                                                               const std::string& reason);
  // New labels for an enrolled node (`node.relabelled`); its waiting polls are answered again
  // with the offer for its new labels. The node's own --labels must follow (its agent checks a
  // snapshot's scope against them). Refusals: not_found, revoked (409), invalid_labels.
  [[nodiscard]] op_result<store::inventory_record> relabel_node(
      const principal& who, const std::string& node, const std::map<std::string, std::string>& labels);
  [[nodiscard]] std::vector<store::inventory_record> inventory();

  // Admission of a node's request (cheap: the in-memory inventory under the lock, no store
  // I/O). `fingerprint`: lowercase hex SHA-256 of the DER certificate the TLS peer presented
  // (verified against the node CA by the server), "" when none. Refusals, 403: not_enrolled,
  // revoked, certificate_not_current (the node's record pins another certificate). Refusals are
  // counted (sluice_control_node_refusals_total{code}) and audited aggregated (refusal_log.hpp).
  [[nodiscard]] std::optional<op_error> admit_node(const std::string& node,
                                                   const std::string& fingerprint);
  // The whole admission of a request on /v1/nodes/{node}/...: the TLS peer must have presented
  // a certificate the server verified (else 401 no_client_certificate, not audited here), its CN
  // must be {node} (else 403 wrong_node: a node asking for another node's snapshot, audited as
  // the CN's refusal), then admit_node().
  [[nodiscard]] std::optional<op_error> admit_node_peer(const std::string& node, bool verified,
                                                        const std::string& common_name,
                                                        const std::string& fingerprint);
  // The node's labels from the inventory (nullopt: not enrolled).
  [[nodiscard]] std::optional<std::map<std::string, std::string>> node_labels(const std::string& node);

  [[nodiscard]] op_result<std::vector<directive_view>> directives();
  [[nodiscard]] op_result<directive_view> get(const std::string& issuer, const std::string& id);
  [[nodiscard]] std::vector<node_view> nodes();
  [[nodiscard]] rollout_view rollout();
  [[nodiscard]] op_result<std::vector<audit::audit_record>> audit(std::uint64_t after,
                                                                  std::size_t limit);
  // The newest `limit` records, oldest first (the console opens its audit page on them).
  [[nodiscard]] op_result<std::vector<audit::audit_record>> audit_last(std::size_t limit);
  // The records about `subject` ("issuer/id", a node id), oldest first, at most `limit`: a
  // directive's own timeline. Reads the whole log in pages.
  [[nodiscard]] op_result<std::vector<audit::audit_record>> audit_of(const std::string& subject,
                                                                     std::size_t limit);
  // The stored chain checked from genesis (audit::verify_chain over every page): ok, how many
  // records, the head's hash (the last good record's when broken), the first bad one.
  [[nodiscard]] op_result<audit::chain_report> verify_audit();

  // The node calls below serve enrolled nodes only (else 403 not_enrolled / revoked, audited
  // aggregated). Their `labels` (what the node declared: X-Sluice-Labels, status `labels`) are
  // ignored: a node's labels are the inventory's. Declared labels that differ are counted
  // (sluice_control_node_labels_ignored_total), never stored.
  //
  // The node's snapshot when its offered revision differs from `held`, waiting up to `wait`
  // (capped at max_wait_s) for that; nullopt value with error.code "not_modified" after the wait.
  [[nodiscard]] op_result<snapshot_offer> snapshot(const std::string& node,
                                                   const std::map<std::string, std::string>& labels,
                                                   std::optional<std::uint64_t> held,
                                                   std::chrono::milliseconds wait);
  // The event-driven form of snapshot() (issue 13): never blocks. When the node's offer is
  // newer than `held` (or there is no `held`), answers it; otherwise registers `wake` and
  // answers `waiting`. `wake` is called at most once, when the node's offer may have moved past
  // `held` (call poll_snapshot again then), from whichever thread moved it and with the
  // controller's lock held: it must only hand the work to another thread (post), never call
  // back into the controller. Waiters are kept per (canary or not, held revision), so a new
  // offer touches exactly the waiters it answers, whatever the fleet's size.
  [[nodiscard]] snapshot_poll poll_snapshot(const std::string& node,
                                            const std::map<std::string, std::string>& labels,
                                            std::optional<std::uint64_t> held,
                                            std::function<void()> wake);
  // The longest wait a long poll may ask for (max_wait_s).
  [[nodiscard]] std::chrono::seconds max_wait() const { return std::chrono::seconds(cfg_.max_wait_s); }
  // Forgets a waiting poll (its wait ran out); false when its wake was already called.
  bool cancel_poll(std::uint64_t ticket);
  // Polls registered and not yet woken or cancelled.
  [[nodiscard]] std::size_t waiting_polls();

  // A node's impact report (body format: control/impact/report.hpp); kept until the next tick
  // writes it (with the other pending reports) to the store.
  [[nodiscard]] op_result<bool> node_impact(const std::string& node, const std::string& body);
  // The fleet-wide impact of a directive over the last `window_s` seconds (JSON text).
  [[nodiscard]] op_result<std::string> impact(const std::string& issuer, const std::string& id,
                                              std::int64_t window_s, std::size_t top);

  [[nodiscard]] op_result<bool> node_status(const std::string& node,
                                            const std::map<std::string, std::string>& labels,
                                            const status_report& report);

  // Time-driven work: lifecycle transitions, recompiling, rollout stages, stale nodes, flushing
  // node status, signing an audit checkpoint when the head moved. Call about once a second.
  void tick();

  // The latest signed audit checkpoint (issue 14): signed at start, then whenever the audit
  // head moved, at most once per tick and before new offers go out. nullopt only when signing
  // or reading the head has failed since start.
  [[nodiscard]] std::optional<audit::checkpoint> audit_checkpoint();
  // The same as the X-Sluice-Audit-Checkpoint header value of 304 answers (base64), made once
  // per checkpoint; null when there is none.
  [[nodiscard]] std::shared_ptr<const std::string> audit_checkpoint_header();

  [[nodiscard]] std::shared_ptr<prometheus::Registry> registry() const { return registry_; }

 private:
  struct rollout_state {
    std::uint64_t target = 0;
    std::uint64_t released = 0;
    std::string stage = "done";
    bool paused = false;
    std::string reason;
    std::int64_t stage_since = 0;
    std::int64_t canary_acked_at = 0;
  };
  // A node request refused: counted, audited (the first of its node and code in full, repeats
  // summarised by the next ticks), answered with `kind`.
  [[nodiscard]] op_error refuse_node_locked(const std::string& actor_node, error_kind kind,
                                            const std::string& code, const std::string& message);
  // Refuses a node the inventory does not have enrolled; counts declared labels that differ.
  [[nodiscard]] std::optional<op_error> serve_node_locked(const std::string& node,
                                                         const std::map<std::string, std::string>* declared);
  // The inventory changed for `ids` (this replica's commit or another's): node entries take the
  // new labels, their waiting polls are woken to be answered again.
  void inventory_changed_locked(const std::vector<std::string>& ids);
  // Reloads the inventory when the store's generation is not the one held. Throws store_error.
  void reload_inventory_locked(const std::string& generation);
  // Commits inventory records with their audit records and the next generation; applies them
  // in memory once committed.
  [[nodiscard]] std::optional<op_error> commit_inventory_locked(store::write_batch& batch);
  // The config's nodes (controller_config::nodes) applied at start. Throws store_error.
  void apply_configured_nodes_locked();
  // The labels a node is judged by: the inventory's (its record's for a node no longer in it).
  [[nodiscard]] const std::map<std::string, std::string>& labels_of(const store::node_record& n) const;

  struct node_entry {
    store::node_record record;
    bool dirty = false;
    std::uint64_t cached_revision = 0;  // the offer last answered (a shortcut into bodies_)
    std::string cached_labels;
    std::shared_ptr<const std::string> cached_body;
    std::pair<std::uint64_t, std::string> cached_key;  // its entry in bodies_
    std::uint64_t cached_checkpoint = 0;               // the checkpoint_gen_ it carries
    std::int64_t applied_at_ms = 0;  // when applied_revision last rose
    std::int64_t persisted_seen = 0;  // last_seen as last flushed to the store
    bool reported = false;           // sent a status report to this replica
  };

  [[nodiscard]] std::int64_t now_s() { return clk_.now_ms() / 1000; }
  // Replicated stores: re-reads the newest revision and the shared meta (rollout, emergency
  // stop, removed_in) when the store moved since the last read (always when `force`). Throws
  // store::store_error.
  void refresh_locked(bool force);
  void load_meta_locked();  // rollout, emergency stop, removed_in (and meta_seen_)
  // Merges the store's node records into nodes_ (local reports not yet flushed win): the
  // changes its feed has, or all of them (`full`, or no feed, or every 5 s). Throws store_error.
  void refresh_nodes_locked(bool full);
  // The entry of a node reporting here, and whether it is new. With replicas, a node this one
  // has not heard from yet is looked for in the store first (it may have moved from another
  // replica): its record carries over and it is not registered twice.
  std::pair<node_entry&, bool> node_entry_locked(const std::string& node);
  // The three mutating calls run under one lock; with a replicated store a conflict (another
  // replica wrote first) re-reads the shared state and tries again.
  template <class F>
  auto with_retry(F&& op) -> decltype(op());
  // dry_run: check() (nothing counted, audited or stored).
  [[nodiscard]] op_result<directive_view> submit_locked(const principal& who,
                                                        const std::string& document,
                                                        const std::string& signature, bool dry_run);
  [[nodiscard]] op_result<directive_view> approve_locked(const principal& who,
                                                         const std::string& issuer,
                                                         const std::string& id,
                                                         const std::string& note);
  // rejecting: reject() (awaiting approval only; "rejected", directive.rejected).
  [[nodiscard]] op_result<directive_view> revoke_locked(const principal& who,
                                                        const std::string& issuer,
                                                        const std::string& id,
                                                        const std::string& reason, bool rejecting);
  [[nodiscard]] std::vector<impact::overlap> overlaps_of(const directive::directive& d) const;
  // find_locked, then refuses (not_awaiting_approval, audited) one that is not awaiting approval.
  [[nodiscard]] std::optional<op_error> find_awaiting_locked(const principal& who,
                                                             const std::string& issuer,
                                                             const std::string& id,
                                                             std::vector<store::directive_record>& all,
                                                             store::directive_record*& found);
  [[nodiscard]] directive::validation_context validation(std::int64_t now) const;
  // A stored directive's document parsed as judged when it was received (nullptr when it does
  // not parse), from parsed_ when the same document was parsed before. Under mutex_.
  [[nodiscard]] std::shared_ptr<const directive::directive> parsed_locked(
      const store::directive_record& rec) const;
  // What submit_locked has just parsed, so the lifecycle pass that follows does not parse it
  // again (the same context: its receipt time, limits that it met).
  void remember_parsed_locked(const store::directive_record& rec, directive::directive d);
  // parsed_'s generation for rec's document (0 when never parsed).
  [[nodiscard]] std::uint64_t parse_generation_locked(const store::directive_record& rec) const;
  // Drops the parses of directives no longer in the store.
  void forget_parsed_locked(const std::vector<store::directive_record>& all);
  [[nodiscard]] op_error refuse(const principal& who, error_kind kind, std::string code,
                                std::string message, const std::string& subject,
                                const std::string& document, int line = 0, int column = 0);
  [[nodiscard]] std::optional<op_error> commit_locked(store::write_batch& batch);
  [[nodiscard]] audit::audit_record event(const principal& who, std::string name,
                                          std::string subject, std::string detail_json);
  [[nodiscard]] std::string desired_state(const store::directive_record& rec,
                                          const directive::directive& d,
                                          const std::vector<store::directive_record>& all,
                                          std::int64_t now, std::string& end_reason) const;
  // Brings lifecycle states up to date and recompiles into `batch`; true if anything changed.
  bool advance_locked(std::vector<store::directive_record>& all, store::write_batch& batch,
                      const std::string& reason);
  bool recompile_locked(const std::vector<store::directive_record>& all, store::write_batch& batch,
                        const std::string& reason);
  // Reads every directive into `all` and points `found` at the one named, or refuses
  // (not_found, audited) / fails (store).
  [[nodiscard]] std::optional<op_error> find_locked(const principal& who, const std::string& issuer,
                                                    const std::string& id,
                                                    std::vector<store::directive_record>& all,
                                                    store::directive_record*& found);
  [[nodiscard]] std::string rollout_json() const;  // the persisted rollout state
  void start_rollout_locked(std::uint64_t revision, store::write_batch& batch, bool skip_canary);
  void advance_rollout_locked(store::write_batch& batch);
  [[nodiscard]] bool is_canary(const store::node_record& n) const;
  [[nodiscard]] bool is_stale(const store::node_record& n, std::int64_t now) const;
  [[nodiscard]] std::uint64_t offered_locked(const store::node_record& n) const;
  [[nodiscard]] std::string node_state_locked(const store::node_record& n, std::int64_t now) const;
  [[nodiscard]] directive_view view_locked(store::directive_record rec);
  // The node's offer, and its entry refreshed (labels from the inventory, last seen). Shared by
  // both poll forms.
  node_entry& polled_locked(const std::string& node);
  [[nodiscard]] op_result<snapshot_offer> offer_locked(node_entry& n);
  // A signed body and, appended to it, the checkpoint of generation `checkpoint`.
  struct cached_body {
    std::shared_ptr<const std::string> served;
    std::size_t signed_size = 0;  // served's first bytes are the signed JSON but its final '}'
    std::uint64_t checkpoint = 0;
  };
  using body_map = std::map<std::pair<std::uint64_t, std::string>, cached_body>;
  // The entry in bodies_ for nodes with `labels` at revision `offered`: found there, or
  // compiled, serialised and signed once and kept there.
  [[nodiscard]] op_result<body_map::iterator> signed_body_locked(
      const std::map<std::string, std::string>& labels, std::uint64_t offered);
  // `b`'s body with the latest checkpoint (rebuilt by concatenation when it moved).
  [[nodiscard]] std::shared_ptr<const std::string> served_locked(cached_body& b);
  // Signs a checkpoint of the audit head when it may have moved (this replica appended, or with
  // replicas the store moved: looked at once a second, or now when `soon`) and differs from
  // the latest. Store failures are left for the next call.
  void refresh_checkpoint_locked(bool soon = false);
  // A node's reported checkpoint in the serialised form when it parses and verifies with the
  // controller's key, else "" (counted). `text` is the serialised form, or with `header_form`
  // audit::checkpoint_header's. Cached by the exact text received and its form (bounded): a
  // fleet reports the few checkpoints this controller signed. Without the controller's lock.
  [[nodiscard]] std::string checked_checkpoint(const std::string& text, bool header_form = false);
  // Wakes the waiters whose offer moved, drops bodies no node can be offered any more; and
  // notifies blocking snapshot() callers. Call after every change of rollout_.target/released.
  void offers_changed_locked();
  [[nodiscard]] rollout_view rollout_locked() const;
  // `all`: the directives when the caller has just read them (else they are read here).
  // `ticking`: from tick(), where the per-node gauges (a pass over every node and its inventory
  // entry) are refreshed at most once a second: scrapes come every few seconds, and at 5,000
  // nodes four passes a second were 5% of the controller's CPU during a rollout.
  void update_gauges_locked(const std::vector<store::directive_record>* all = nullptr,
                            bool ticking = false);

  controller_config cfg_;
  store::store& store_;
  clock& clk_;

  std::mutex mutex_;
  std::condition_variable offers_changed_;
  // Stored directives parsed (parsed_locked), by "ISSUER/ID"; each parse gets a generation.
  struct parsed_directive {
    std::string document;
    std::int64_t received_at = 0;
    std::shared_ptr<const directive::directive> parsed;
    std::uint64_t generation = 0;
  };
  mutable std::map<std::string, parsed_directive> parsed_;
  mutable std::uint64_t parse_generation_ = 0;
  // What recompile_locked last compiled into revision_ or found equal to it: the parse
  // generations of the directives in force (false) and shadowed (true), in store order, the
  // emergency stop and the revision then in force. Equal inputs skip the compile.
  struct compile_inputs {
    std::vector<std::pair<std::uint64_t, bool>> directives;
    bool emergency_stop = false;
    std::uint64_t revision = 0;
    bool operator==(const compile_inputs&) const = default;
  };
  std::optional<compile_inputs> last_compiled_;
  fleet::fleet_policy policy_;      // of revision_
  std::uint64_t revision_ = 0;
  std::int64_t revision_at_ = 0;    // unix seconds
  std::int64_t revision_at_ms_ = 0;
  bool emergency_stop_ = false;
  rollout_state rollout_;
  std::map<std::string, node_entry> nodes_;
  std::map<std::string, std::uint64_t> removed_in_;
  // Signed bodies by (revision, snapshot scope), and the policies of offered revisions other
  // than revision_ (during a canary stage the fleet is offered an older one), with their
  // generation time. Pruned below the lowest revision offered.
  body_map bodies_;
  std::map<std::uint64_t, std::pair<fleet::fleet_policy, std::int64_t>> older_policies_;
  // Waiting polls: [canary] held revision -> (ticket, wake); tickets_ finds one to cancel.
  struct poll_waiter {
    std::uint64_t ticket;
    std::function<void()> wake;
    std::string node;  // to answer a node's polls at once when it is revoked or relabelled
  };
  std::multimap<std::uint64_t, poll_waiter> waiters_[2];
  std::map<std::uint64_t, std::pair<int, std::multimap<std::uint64_t, poll_waiter>::iterator>> tickets_;
  std::uint64_t next_ticket_ = 1;  // directive key -> first revision without it
  // Replication: the store revision last read, the meta values last read or written (the
  // expectations of the next CAS), leadership as last seen.
  std::uint64_t synced_store_rev_ = 0;
  std::map<std::string, std::string> meta_seen_;
  bool leading_ = false;
  std::uint64_t leader_term_ = 0;
  std::string leader_name_;
  std::int64_t nodes_listed_ms_ = 0;  // last full list of the store's node records
  std::int64_t nodes_flushed_ms_ = 0;
  std::vector<store::impact_record> pending_impacts_;
  std::vector<audit::audit_record> pending_audit_;  // node events, written by the next tick
  node_inventory inventory_;
  // Keyed by node id and code. 1,024 keys: a fleet's worth of refused nodes is unusual (they are
  // enrolled), and each key costs up to two records a minute.
  refusal_log node_refusals_{refusal_log::options{60'000, 1024}};
  // Operators' refusals (refuse(), audit_refused()): per token name and code.
  refusal_log operator_refusals_{refusal_log::options{60'000, 4096}};

  // Audit checkpoints: the latest, its generation (bodies carry one), the text appended to
  // bodies (`,"checkpoint":{...}}`) and the 304 header; whether this replica appended since the
  // last look and the store revision looked at (replicas).
  std::optional<audit::checkpoint> checkpoint_;
  std::uint64_t checkpoint_gen_ = 0;
  std::string checkpoint_member_;
  std::shared_ptr<const std::string> checkpoint_header_;
  bool audit_appended_ = true;
  std::uint64_t checkpoint_store_rev_ = 0;
  std::int64_t checkpoint_looked_ms_ = 0;
  crypto::public_key public_key_;  // of cfg_.signing_key
  std::mutex verified_mutex_;      // guards verified_ (taken without mutex_, or inside it)
  // Reported checkpoint text, after 'j' (serialised form) or 'h' (header form) -> its
  // serialised form when it verifies, "" when not.
  std::map<std::string, std::string> verified_;

  std::int64_t node_gauges_ms_ = 0;  // when update_gauges_locked last counted the nodes
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Gauge>* directives_gauge_ = nullptr;
  prometheus::Family<prometheus::Gauge>* nodes_gauge_ = nullptr;
  prometheus::Gauge* revision_gauge_ = nullptr;
  prometheus::Gauge* released_gauge_ = nullptr;
  prometheus::Gauge* is_leader_gauge_ = nullptr;
  prometheus::Histogram* convergence_ = nullptr;
  prometheus::Counter* signature_failures_ = nullptr;
  prometheus::Counter* snapshot_bytes_ = nullptr;
  prometheus::Counter* snapshots_served_ = nullptr;
  prometheus::Counter* snapshots_signed_ = nullptr;
  prometheus::Counter* directive_parses_ = nullptr;
  prometheus::Counter* policy_compiles_ = nullptr;
  prometheus::Gauge* compile_seconds_ = nullptr;
  prometheus::Gauge* snapshot_sign_seconds_ = nullptr;
  prometheus::Counter* checkpoints_signed_ = nullptr;
  prometheus::Counter* checkpoints_refused_ = nullptr;
  prometheus::Gauge* checkpoint_records_ = nullptr;
  prometheus::Family<prometheus::Counter>* validation_failures_ = nullptr;
  prometheus::Family<prometheus::Counter>* node_refusals_total_ = nullptr;
  prometheus::Counter* labels_ignored_ = nullptr;
  prometheus::Family<prometheus::Gauge>* inventory_gauge_ = nullptr;
};

// Defined here: the node identity calls (node_identity.cpp) use it too.
template <class F>
auto controller::with_retry(F&& op) -> decltype(op()) {
  for (int attempt = 0;; ++attempt) {
    try {
      refresh_locked(attempt > 0);
    } catch (const store::store_error& e) {
      return {std::nullopt, {error_kind::unavailable, "store_failed", e.what()}};
    }
    auto r = op();
    if (r || !cfg_.replicated || r.error.code != "conflict" || attempt == 2) return r;
  }
}

}  // namespace sluice::control::controller
