// The embedded store: one SQLite connection in WAL mode, serialised by a mutex.
//
// Schema version 3 (PRAGMA user_version = 3, PRAGMA application_id = sluice_app_id; older files
// are upgraded in place: version 1 gains the impacts table, versions 1 and 2 the inventory
// table and the nodes' audit checkpoint columns). Table and
// column names are a contract with tooling and integration tests that edit the file directly;
// rename nothing without bumping the version. All uint64 values are stored as INTEGER and must
// fit int64 (checked before writing). JSON columns (directives.approvals, nodes.labels) hold
// text written by nlohmann-json.
//
// Why BEGIN IMMEDIATE: the write lock is taken before the CAS reads, so nothing can change the
// rows (or the audit head) between the check and the write, even with other processes on the
// same file; busy_timeout makes a second writer wait instead of failing at once.
//
// Every successful commit, an empty batch included, adds 1 to the store revision (table
// store_revision, one row). A batch refused before the transaction (invalid input: duplicate
// keys, numbers above int64, JSON that cannot be written) is `failed`; a CAS or revision check
// that fails inside it is `conflict`; either way nothing changes.

#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "control/store/batch_check.hpp"
#include "control/store/record_json.hpp"
#include "control/store/store.hpp"

namespace sluice::control::store {

namespace {

constexpr int schema_version = 3;
constexpr std::int32_t sluice_app_id = 0x534c5543;  // "SLUC": marks a Sluice database
constexpr int busy_timeout_ms = 5000;

constexpr const char* schema_sql = R"sql(
CREATE TABLE directives (
  issuer TEXT NOT NULL,
  id TEXT NOT NULL,
  document TEXT NOT NULL,
  signature TEXT NOT NULL,
  action TEXT NOT NULL,
  state TEXT NOT NULL,
  end_reason TEXT NOT NULL,
  submitted_by TEXT NOT NULL,
  received_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  ended_at INTEGER NOT NULL,
  approvals TEXT NOT NULL,
  version INTEGER NOT NULL,
  PRIMARY KEY (issuer, id)
);
CREATE TABLE audit (
  seq INTEGER PRIMARY KEY,
  at INTEGER NOT NULL,
  actor TEXT NOT NULL,
  event TEXT NOT NULL,
  subject TEXT NOT NULL,
  detail TEXT NOT NULL,
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL
);
CREATE TABLE revisions (
  revision INTEGER PRIMARY KEY,
  generated_at INTEGER NOT NULL,
  content TEXT NOT NULL,
  reason TEXT NOT NULL
);
CREATE TABLE meta (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE nodes (
  node_id TEXT PRIMARY KEY,
  labels TEXT NOT NULL,
  first_seen INTEGER NOT NULL,
  last_seen INTEGER NOT NULL,
  applied_revision INTEGER NOT NULL,
  ruleset_sha256 TEXT NOT NULL,
  nack INTEGER NOT NULL,
  nack_revision INTEGER NOT NULL,
  error TEXT NOT NULL,
  health TEXT NOT NULL
);
CREATE TABLE store_revision (
  only_row INTEGER PRIMARY KEY CHECK (only_row = 1),
  revision INTEGER NOT NULL
);
INSERT INTO store_revision (only_row, revision) VALUES (1, 0);
)sql";

// Added in schema version 2 (issue 8).
constexpr const char* impacts_sql = R"sql(
CREATE TABLE impacts (
  node_id TEXT NOT NULL,
  window_end INTEGER NOT NULL,
  window_start INTEGER NOT NULL,
  revision INTEGER NOT NULL,
  body TEXT NOT NULL,
  PRIMARY KEY (window_end, node_id)
);
)sql";

// Added in schema version 3 (issue 14): the node inventory.
constexpr const char* inventory_sql = R"sql(
CREATE TABLE inventory (
  node_id TEXT PRIMARY KEY,
  labels TEXT NOT NULL,
  state TEXT NOT NULL,
  fingerprint TEXT NOT NULL,
  certificate_not_after INTEGER NOT NULL,
  source TEXT NOT NULL,
  enrolled_at INTEGER NOT NULL,
  enrolled_by TEXT NOT NULL,
  revoked_at INTEGER NOT NULL,
  revoked_by TEXT NOT NULL,
  revoked_reason TEXT NOT NULL
);
)sql";

// Also added in schema version 3 (issue 14): the signed audit checkpoints nodes report.
constexpr const char* checkpoint_columns_sql = R"sql(
ALTER TABLE nodes ADD COLUMN audit_checkpoint TEXT NOT NULL DEFAULT '';
ALTER TABLE nodes ADD COLUMN audit_checkpoint_conflict TEXT NOT NULL DEFAULT '';
)sql";

constexpr std::uint64_t max_i64 = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());

// A batch the store refuses because of what it says (not because SQLite failed).
struct batch_refused {
  commit_outcome outcome;
  std::string error;
};

struct db_closer {
  void operator()(sqlite3* db) const noexcept { sqlite3_close_v2(db); }
};
using db_ptr = std::unique_ptr<sqlite3, db_closer>;

[[noreturn]] void throw_sqlite(sqlite3* db, std::string_view doing) {
  throw store_error("sqlite: " + std::string(doing) + ": " + sqlite3_errmsg(db));
}

// One prepared statement; every value goes through a bound parameter.
class statement {
 public:
  statement(sqlite3* db, std::string_view sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &stmt_, nullptr) !=
        SQLITE_OK) {
      throw_sqlite(db, "prepare \"" + std::string(sql.substr(0, 60)) + "\"");
    }
  }
  statement(const statement&) = delete;
  statement& operator=(const statement&) = delete;
  ~statement() { sqlite3_finalize(stmt_); }

  statement& bind(int i, std::int64_t v) {
    check(sqlite3_bind_int64(stmt_, i, v), "bind");
    return *this;
  }
  statement& bind_u(int i, std::uint64_t v) {
    // Callers validated the range; a violation here is a bug, refused rather than wrapped.
    if (v > max_i64) throw store_error("value " + std::to_string(v) + " does not fit int64");
    return bind(i, static_cast<std::int64_t>(v));
  }
  statement& bind(int i, std::string_view s) {
    check(sqlite3_bind_text64(stmt_, i, s.data(), s.size(), SQLITE_TRANSIENT, SQLITE_UTF8),
          "bind");
    return *this;
  }

  // true: a row is ready; false: done.
  bool step() {
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    throw_sqlite(db_, "step \"" + std::string(sql_head()) + "\"");
  }
  void run() {
    while (step()) {
    }
  }
  // Ready to run again with new bindings: one statement prepared once serves every row of a
  // batch (preparing dominated writing a fleet's node records, issue 13).
  void reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }

  [[nodiscard]] bool is_null(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }

  // Typed reads: a value of the wrong type means someone edited the file by hand; say where.
  [[nodiscard]] std::int64_t i64(int col, std::string_view what) const {
    if (sqlite3_column_type(stmt_, col) != SQLITE_INTEGER) corrupt(col, what, "an integer");
    return sqlite3_column_int64(stmt_, col);
  }
  [[nodiscard]] std::uint64_t u64(int col, std::string_view what) const {
    const std::int64_t v = i64(col, what);
    if (v < 0) corrupt(col, what, "a non-negative integer");
    return static_cast<std::uint64_t>(v);
  }
  [[nodiscard]] std::string text(int col, std::string_view what) const {
    if (sqlite3_column_type(stmt_, col) != SQLITE_TEXT) corrupt(col, what, "text");
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
    const int n = sqlite3_column_bytes(stmt_, col);
    return p ? std::string(p, static_cast<std::size_t>(n)) : std::string();
  }

 private:
  void check(int rc, std::string_view doing) const {
    if (rc != SQLITE_OK) throw_sqlite(db_, doing);
  }
  [[nodiscard]] std::string_view sql_head() const {
    const char* s = sqlite3_sql(stmt_);
    return s ? std::string_view(s).substr(0, 60) : std::string_view();
  }
  [[noreturn]] void corrupt(int col, std::string_view what, std::string_view expected) const {
    const char* name = sqlite3_column_name(stmt_, col);
    throw store_error("corrupt store: " + std::string(what) + ": column " +
                      (name ? name : "?") + " is not " + std::string(expected));
  }

  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
};

void exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errmsg(db);
    sqlite3_free(err);
    throw store_error("sqlite: " + std::string(sql).substr(0, 40) + ": " + msg);
  }
}

std::int64_t pragma_int(sqlite3* db, const char* sql) {
  statement st(db, sql);
  if (!st.step()) throw store_error(std::string("sqlite: ") + sql + " returned no row");
  return st.i64(0, sql);
}

std::string labels_json(const std::map<std::string, std::string>& labels) {
  return nlohmann::json(labels).dump();
}

std::vector<approval> parse_approvals(const std::string& text, const std::string& key) {
  try {
    return approvals_from_json(nlohmann::json::parse(text));
  } catch (const std::bad_alloc&) {
    throw;
  } catch (const std::exception& e) {
    throw store_error("corrupt store: directive " + key + ": approvals: " + e.what());
  }
}

std::map<std::string, std::string> parse_labels(const std::string& text, const std::string& node) {
  std::map<std::string, std::string> out;
  try {
    const auto j = nlohmann::json::parse(text);
    if (!j.is_object()) throw store_error("not an object");
    for (const auto& [k, v] : j.items()) {
      if (!v.is_string()) throw store_error("label " + k + " is not text");
      out.emplace(k, v.get<std::string>());
    }
  } catch (const std::bad_alloc&) {
    throw;
  } catch (const std::exception& e) {
    throw store_error("corrupt store: node " + node + ": labels: " + e.what());
  }
  return out;
}

constexpr const char* directive_columns =
    "issuer, id, document, signature, action, state, end_reason, submitted_by, received_at, "
    "updated_at, ended_at, approvals, version";

directive_record read_directive(const statement& st) {
  directive_record d;
  d.issuer = st.text(0, "directive");
  d.id = st.text(1, "directive");
  const std::string key = d.issuer + "/" + d.id;
  const std::string what = "directive " + key;
  d.document = st.text(2, what);
  d.signature = st.text(3, what);
  d.action = st.text(4, what);
  d.state = st.text(5, what);
  d.end_reason = st.text(6, what);
  d.submitted_by = st.text(7, what);
  d.received_at = st.i64(8, what);
  d.updated_at = st.i64(9, what);
  d.ended_at = st.i64(10, what);
  d.approvals = parse_approvals(st.text(11, what), key);
  d.version = st.u64(12, what);
  return d;
}

constexpr const char* audit_columns = "seq, at, actor, event, subject, detail, prev_hash, hash";

audit::audit_record read_audit(const statement& st) {
  audit::audit_record r;
  r.seq = st.u64(0, "audit record");
  const std::string what = "audit record " + std::to_string(r.seq);
  r.at = st.i64(1, what);
  r.actor = st.text(2, what);
  r.event = st.text(3, what);
  r.subject = st.text(4, what);
  r.detail = st.text(5, what);
  r.prev_hash = st.text(6, what);
  r.hash = st.text(7, what);
  return r;
}

revision_record read_revision(const statement& st) {
  revision_record r;
  r.revision = st.u64(0, "revision");
  const std::string what = "revision " + std::to_string(r.revision);
  r.generated_at = st.i64(1, what);
  r.content = st.text(2, what);
  r.reason = st.text(3, what);
  return r;
}

// Everything about a batch that can be judged without the database, so a refusal never
// starts a transaction. Also pre-renders the JSON columns.
struct prepared_batch {
  std::vector<std::string> approvals;  // per directive put
  std::vector<std::string> labels;     // per node
  std::vector<std::string> inventory_labels;  // per inventory record
};

std::optional<batch_refused> prepare(const write_batch& b, prepared_batch& out) {
  auto refuse = [](std::string msg) {
    return batch_refused{commit_outcome::failed, "invalid batch: " + std::move(msg)};
  };
  if (std::string e = check_batch(b); !e.empty()) return refuse(std::move(e));
  for (const auto& p : b.directives) {
    try {
      out.approvals.push_back(dump_json(approvals_to_json(p.record.approvals)));
    } catch (const store_error& e) {
      return refuse("directive " + p.record.issuer + "/" + p.record.id + ": approvals: " + e.what());
    }
  }
  for (const auto& n : b.nodes) {
    try {
      out.labels.push_back(labels_json(n.labels));
    } catch (const nlohmann::json::exception& e) {
      return refuse("node " + n.node_id + ": labels: " + e.what());
    }
  }
  for (const auto& r : b.inventory) {
    try {
      out.inventory_labels.push_back(labels_json(r.labels));
    } catch (const nlohmann::json::exception& e) {
      return refuse("inventory " + r.node_id + ": labels: " + e.what());
    }
  }
  return std::nullopt;
}

class sqlite_store final : public store {
 public:
  explicit sqlite_store(const std::string& path) {
    sqlite3* raw = nullptr;
    const int rc = sqlite3_open_v2(path.c_str(), &raw,
                                   SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                                       SQLITE_OPEN_NOMUTEX,  // serialised by mutex_
                                   nullptr);
    db_.reset(raw);  // even on failure, so the handle is closed
    if (rc != SQLITE_OK) {
      throw store_error("cannot open store " + path + ": " +
                        (raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc)));
    }
    try {
      init();
    } catch (const store_error& e) {
      throw store_error("cannot open store " + path + ": " + e.what());
    }
  }

  commit_result commit(const write_batch& batch) override {
    commit_result res;
    prepared_batch pre;
    if (auto refused = prepare(batch, pre)) {
      res.outcome = refused->outcome;
      res.error = std::move(refused->error);
      return res;
    }
    std::lock_guard lock(mutex_);
    sqlite3* db = db_.get();
    try {
      exec(db, "BEGIN IMMEDIATE");
    } catch (const store_error& e) {
      res.outcome = commit_outcome::failed;
      res.error = e.what();
      return res;
    }
    try {
      if (auto refused = apply(batch, pre, res)) {
        rollback();
        res = commit_result{};
        res.outcome = refused->outcome;
        res.error = std::move(refused->error);
        return res;
      }
      exec(db, "COMMIT");
      res.outcome = commit_outcome::ok;
      changed_.notify_all();
      return res;
    } catch (const std::bad_alloc&) {
      rollback();
      throw;
    } catch (const std::exception& e) {
      rollback();
      res = commit_result{};
      res.outcome = commit_outcome::failed;
      res.error = e.what();
      return res;
    }
  }

  std::optional<directive_record> get_directive(const std::string& issuer,
                                                const std::string& id) override {
    std::lock_guard lock(mutex_);
    statement st(db_.get(), std::string("SELECT ") + directive_columns +
                                " FROM directives WHERE issuer = ?1 AND id = ?2");
    st.bind(1, issuer).bind(2, id);
    if (!st.step()) return std::nullopt;
    return read_directive(st);
  }

  std::vector<directive_record> list_directives() override {
    std::lock_guard lock(mutex_);
    statement st(db_.get(), std::string("SELECT ") + directive_columns +
                                " FROM directives ORDER BY received_at, issuer, id");
    std::vector<directive_record> out;
    while (st.step()) out.push_back(read_directive(st));
    return out;
  }

  std::vector<audit::audit_record> audit_since(std::uint64_t after_seq,
                                               std::size_t limit) override {
    std::lock_guard lock(mutex_);
    statement st(db_.get(), std::string("SELECT ") + audit_columns +
                                " FROM audit WHERE seq > ?1 ORDER BY seq LIMIT ?2");
    st.bind(1, static_cast<std::int64_t>(std::min(after_seq, max_i64)));
    st.bind(2, limit == 0 || limit > max_i64 ? std::int64_t{-1} : static_cast<std::int64_t>(limit));
    std::vector<audit::audit_record> out;
    while (st.step()) out.push_back(read_audit(st));
    return out;
  }

  std::optional<audit::audit_record> audit_head() override {
    std::lock_guard lock(mutex_);
    return read_audit_head();
  }

  std::optional<revision_record> latest_revision() override {
    std::lock_guard lock(mutex_);
    statement st(db_.get(),
                 "SELECT revision, generated_at, content, reason FROM revisions "
                 "ORDER BY revision DESC LIMIT 1");
    if (!st.step()) return std::nullopt;
    return read_revision(st);
  }

  std::optional<revision_record> get_revision(std::uint64_t revision) override {
    if (revision > max_i64) return std::nullopt;
    std::lock_guard lock(mutex_);
    statement st(db_.get(),
                 "SELECT revision, generated_at, content, reason FROM revisions "
                 "WHERE revision = ?1");
    st.bind_u(1, revision);
    if (!st.step()) return std::nullopt;
    return read_revision(st);
  }

  std::optional<std::string> get_meta(const std::string& key) override {
    std::lock_guard lock(mutex_);
    statement st(db_.get(), "SELECT value FROM meta WHERE key = ?1");
    st.bind(1, key);
    if (!st.step()) return std::nullopt;
    return st.text(0, "meta " + key);
  }

  std::vector<node_record> list_nodes() override {
    std::lock_guard lock(mutex_);
    statement st(db_.get(),
                 "SELECT node_id, labels, first_seen, last_seen, applied_revision, "
                 "ruleset_sha256, nack, nack_revision, error, health, audit_checkpoint, "
                 "audit_checkpoint_conflict FROM nodes ORDER BY node_id");
    std::vector<node_record> out;
    while (st.step()) {
      node_record n;
      n.node_id = st.text(0, "node");
      const std::string what = "node " + n.node_id;
      n.labels = parse_labels(st.text(1, what), n.node_id);
      n.first_seen = st.i64(2, what);
      n.last_seen = st.i64(3, what);
      n.applied_revision = st.u64(4, what);
      n.ruleset_sha256 = st.text(5, what);
      n.nack = st.i64(6, what) != 0;
      n.nack_revision = st.u64(7, what);
      n.error = st.text(8, what);
      n.health = st.text(9, what);
      n.audit_checkpoint = st.text(10, what);
      n.audit_checkpoint_conflict = st.text(11, what);
      out.push_back(std::move(n));
    }
    return out;
  }

  std::vector<inventory_record> list_inventory() override {
    std::lock_guard lock(mutex_);
    statement st(db_.get(),
                 "SELECT node_id, labels, state, fingerprint, certificate_not_after, source, "
                 "enrolled_at, enrolled_by, revoked_at, revoked_by, revoked_reason FROM inventory "
                 "ORDER BY node_id");
    std::vector<inventory_record> out;
    while (st.step()) {
      inventory_record r;
      r.node_id = st.text(0, "inventory");
      const std::string what = "inventory " + r.node_id;
      r.labels = parse_labels(st.text(1, what), r.node_id);
      r.state = st.text(2, what);
      r.fingerprint = st.text(3, what);
      r.certificate_not_after = st.i64(4, what);
      r.source = st.text(5, what);
      r.enrolled_at = st.i64(6, what);
      r.enrolled_by = st.text(7, what);
      r.revoked_at = st.i64(8, what);
      r.revoked_by = st.text(9, what);
      r.revoked_reason = st.text(10, what);
      out.push_back(std::move(r));
    }
    return out;
  }

  std::vector<impact_record> list_impacts(std::int64_t since) override {
    std::lock_guard lock(mutex_);
    statement st(db_.get(),
                 "SELECT node_id, window_end, window_start, revision, body FROM impacts "
                 "WHERE window_end >= ?1 ORDER BY window_end, node_id");
    st.bind(1, since);
    std::vector<impact_record> out;
    while (st.step()) {
      impact_record r;
      r.node_id = st.text(0, "impact");
      const std::string what = "impact " + r.node_id;
      r.window_end = st.i64(1, what);
      r.window_start = st.i64(2, what);
      r.revision = st.u64(3, what);
      r.body = st.text(4, what);
      out.push_back(std::move(r));
    }
    return out;
  }

  std::uint64_t store_revision() override {
    std::lock_guard lock(mutex_);
    return read_store_revision();
  }

  // One process owns the file in production, so commits through this object wake waiters at
  // once; another process's commits are noticed by re-reading at least every 200 ms.
  std::uint64_t wait_for_change(std::uint64_t after, std::chrono::milliseconds timeout) override {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::unique_lock lock(mutex_);
    for (;;) {
      std::uint64_t now_rev = 0;
      try {
        now_rev = read_store_revision();
      } catch (const store_error&) {
        return after;
      }
      const auto now = std::chrono::steady_clock::now();
      if (now_rev > after || now >= deadline) return now_rev;
      changed_.wait_until(lock, std::min(deadline, now + std::chrono::milliseconds(200)));
    }
  }

 private:
  std::uint64_t read_store_revision() {
    statement st(db_.get(), "SELECT revision FROM store_revision WHERE only_row = 1");
    if (!st.step()) throw store_error("corrupt store: store_revision row missing");
    return st.u64(0, "store_revision");
  }

  void init() {
    sqlite3* db = db_.get();
    sqlite3_extended_result_codes(db, 1);
    if (sqlite3_busy_timeout(db, busy_timeout_ms) != SQLITE_OK) throw_sqlite(db, "busy_timeout");

    // Identify the file before changing anything in it (journal mode included): a foreign
    // database is refused untouched. A file that is not SQLite at all fails right here
    // ("file is not a database").
    std::int64_t app_id = 0;
    std::int64_t version = 0;
    try {
      app_id = pragma_int(db, "PRAGMA application_id");
      version = pragma_int(db, "PRAGMA user_version");
    } catch (const store_error& e) {
      if (sqlite3_errcode(db) == SQLITE_NOTADB) {
        throw store_error("not a Sluice database (not an SQLite file at all)");
      }
      throw;
    }
    if (app_id == 0 && version == 0) {
      if (pragma_int(db, "SELECT count(*) FROM sqlite_master") != 0) {
        throw store_error("not a Sluice database (it has tables but no Sluice application_id)");
      }
    } else if (app_id != sluice_app_id) {
      throw store_error("not a Sluice database (application_id " + std::to_string(app_id) + ")");
    } else if (version > schema_version) {
      throw store_error("schema version " + std::to_string(version) +
                        " is newer than this build's " + std::to_string(schema_version) +
                        "; upgrade Sluice");
    } else if (version < 1) {
      throw store_error("schema version " + std::to_string(version) + " is not supported");
    }

    {
      statement st(db, "PRAGMA journal_mode=WAL");
      if (!st.step() || st.text(0, "journal_mode") != "wal") {
        throw store_error("cannot switch to WAL journal mode");
      }
    }
    exec(db, "PRAGMA synchronous=FULL");
    exec(db, "PRAGMA foreign_keys=ON");

    if (version == 0) create_schema();
    if (version >= 1 && version < schema_version) upgrade_schema();
  }

  void upgrade_schema() {
    sqlite3* db = db_.get();
    exec(db, "BEGIN IMMEDIATE");
    try {
      // Read again under the write lock: another process may have upgraded it meanwhile.
      const std::int64_t from = pragma_int(db, "PRAGMA user_version");
      if (from < schema_version) {
        if (from < 2) exec(db, impacts_sql);
        if (from < 3) {
          exec(db, inventory_sql);
          exec(db, checkpoint_columns_sql);
        }
        exec(db, ("PRAGMA user_version=" + std::to_string(schema_version)).c_str());
      }
      exec(db, "COMMIT");
    } catch (...) {
      rollback();
      throw;
    }
  }

  void create_schema() {
    sqlite3* db = db_.get();
    exec(db, "BEGIN IMMEDIATE");
    try {
      // Another process may have created it between our check and the write lock.
      if (pragma_int(db, "PRAGMA user_version") == 0) {
        exec(db, schema_sql);
        exec(db, impacts_sql);
        exec(db, inventory_sql);
        exec(db, checkpoint_columns_sql);
        exec(db, ("PRAGMA application_id=" + std::to_string(sluice_app_id)).c_str());
        exec(db, ("PRAGMA user_version=" + std::to_string(schema_version)).c_str());
      }
      exec(db, "COMMIT");
    } catch (...) {
      rollback();
      throw;
    }
  }

  void rollback() noexcept {
    if (sqlite3_get_autocommit(db_.get()) == 0) {
      sqlite3_exec(db_.get(), "ROLLBACK", nullptr, nullptr, nullptr);
    }
  }

  std::optional<audit::audit_record> read_audit_head() {
    statement st(db_.get(),
                 std::string("SELECT ") + audit_columns + " FROM audit ORDER BY seq DESC LIMIT 1");
    if (!st.step()) return std::nullopt;
    return read_audit(st);
  }

  // Inside the transaction: CAS checks first (nothing written yet when one fails), then all
  // writes. Returns a refusal, or fills res (store_revision, audit_seqs).
  std::optional<batch_refused> apply(const write_batch& b, const prepared_batch& pre,
                                     commit_result& res) {
    sqlite3* db = db_.get();
    auto conflict = [](std::string msg) {
      return batch_refused{commit_outcome::conflict, std::move(msg)};
    };

    std::uint64_t store_rev = 0;
    {
      statement st(db, "SELECT revision FROM store_revision WHERE only_row = 1");
      if (!st.step()) throw store_error("corrupt store: store_revision row missing");
      store_rev = st.u64(0, "store_revision");
    }
    if (store_rev >= max_i64) throw store_error("store revision exhausted");
    const std::uint64_t new_rev = store_rev + 1;

    for (const auto& p : b.directives) {
      const std::string key = p.record.issuer + "/" + p.record.id;
      statement st(db, "SELECT version FROM directives WHERE issuer = ?1 AND id = ?2");
      st.bind(1, p.record.issuer).bind(2, p.record.id);
      std::optional<std::uint64_t> stored;
      if (st.step()) stored = st.u64(0, "directive " + key);
      if (auto e = check_directive_version(p, stored); !e.empty()) return conflict(std::move(e));
    }

    if (!b.revisions.empty()) {
      std::uint64_t latest = 0;
      {
        statement st(db, "SELECT max(revision) FROM revisions");
        if (st.step() && !st.is_null(0)) latest = st.u64(0, "revisions");
      }
      if (auto e = check_revision_sequence(b, latest); !e.empty()) return conflict(std::move(e));
    }

    for (const auto& [k, expected] : b.meta_expect) {
      statement st(db, "SELECT value FROM meta WHERE key = ?1");
      st.bind(1, k);
      const std::string stored = st.step() ? st.text(0, "meta " + k) : std::string();
      if (stored != expected) return conflict("meta " + k + " changed since it was read");
    }

    // Writes.
    for (std::size_t i = 0; i < b.directives.size(); ++i) {
      const auto& d = b.directives[i].record;
      statement st(db,
                   "INSERT INTO directives (issuer, id, document, signature, action, state, "
                   "end_reason, submitted_by, received_at, updated_at, ended_at, approvals, "
                   "version) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) "
                   "ON CONFLICT (issuer, id) DO UPDATE SET document = excluded.document, "
                   "signature = excluded.signature, action = excluded.action, "
                   "state = excluded.state, end_reason = excluded.end_reason, "
                   "submitted_by = excluded.submitted_by, received_at = excluded.received_at, "
                   "updated_at = excluded.updated_at, ended_at = excluded.ended_at, "
                   "approvals = excluded.approvals, version = excluded.version");
      st.bind(1, d.issuer).bind(2, d.id).bind(3, d.document).bind(4, d.signature);
      st.bind(5, d.action).bind(6, d.state).bind(7, d.end_reason).bind(8, d.submitted_by);
      st.bind(9, d.received_at).bind(10, d.updated_at).bind(11, d.ended_at);
      st.bind(12, pre.approvals[i]).bind_u(13, new_rev);
      st.run();
    }

    if (!b.audit.empty()) {
      // The head is read under the write lock, so appending is a CAS on it.
      std::optional<audit::audit_record> prev = read_audit_head();
      statement st(db,
                   "INSERT INTO audit (seq, at, actor, event, subject, detail, prev_hash, hash) "
                   "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
      for (const auto& in : b.audit) {
        audit::audit_record r = in;
        audit::seal(r, prev ? &*prev : nullptr);
        st.reset();
        st.bind_u(1, r.seq).bind(2, r.at).bind(3, r.actor).bind(4, r.event);
        st.bind(5, r.subject).bind(6, r.detail).bind(7, r.prev_hash).bind(8, r.hash);
        st.run();
        res.audit_seqs.push_back(r.seq);
        prev = std::move(r);
      }
    }

    for (const auto& r : b.revisions) {
      statement st(db,
                   "INSERT INTO revisions (revision, generated_at, content, reason) "
                   "VALUES (?1, ?2, ?3, ?4)");
      st.bind_u(1, r.revision).bind(2, r.generated_at).bind(3, r.content).bind(4, r.reason);
      st.run();
    }

    for (const auto& [k, v] : b.meta) {
      statement st(db,
                   "INSERT INTO meta (key, value) VALUES (?1, ?2) "
                   "ON CONFLICT (key) DO UPDATE SET value = excluded.value");
      st.bind(1, k).bind(2, v);
      st.run();
    }

    std::optional<statement> node_upsert;
    if (!b.nodes.empty())
      node_upsert.emplace(db,
                          "INSERT INTO nodes (node_id, labels, first_seen, last_seen, applied_revision, "
                          "ruleset_sha256, nack, nack_revision, error, health, audit_checkpoint, "
                          "audit_checkpoint_conflict) "
                          "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) "
                          "ON CONFLICT (node_id) DO UPDATE SET labels = excluded.labels, "
                          "first_seen = excluded.first_seen, last_seen = excluded.last_seen, "
                          "applied_revision = excluded.applied_revision, "
                          "ruleset_sha256 = excluded.ruleset_sha256, nack = excluded.nack, "
                          "nack_revision = excluded.nack_revision, error = excluded.error, "
                          "health = excluded.health, audit_checkpoint = excluded.audit_checkpoint, "
                          "audit_checkpoint_conflict = excluded.audit_checkpoint_conflict");
    for (std::size_t i = 0; i < b.nodes.size(); ++i) {
      const auto& n = b.nodes[i];
      statement& st = *node_upsert;
      st.reset();
      st.bind(1, n.node_id).bind(2, pre.labels[i]).bind(3, n.first_seen).bind(4, n.last_seen);
      st.bind_u(5, n.applied_revision).bind(6, n.ruleset_sha256);
      st.bind(7, std::int64_t{n.nack ? 1 : 0}).bind_u(8, n.nack_revision);
      st.bind(9, n.error).bind(10, n.health);
      st.bind(11, n.audit_checkpoint).bind(12, n.audit_checkpoint_conflict);
      st.run();
    }

    for (const auto& r : b.impacts) {
      statement st(db,
                   "INSERT INTO impacts (node_id, window_end, window_start, revision, body) "
                   "VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (window_end, node_id) DO UPDATE SET "
                   "window_start = excluded.window_start, revision = excluded.revision, "
                   "body = excluded.body");
      st.bind(1, r.node_id).bind(2, r.window_end).bind(3, r.window_start);
      st.bind_u(4, r.revision).bind(5, r.body);
      st.run();
    }
    if (b.prune_impacts_before > 0) {
      statement st(db, "DELETE FROM impacts WHERE window_end < ?1");
      st.bind(1, b.prune_impacts_before);
      st.run();
    }

    std::optional<statement> inventory_upsert;
    if (!b.inventory.empty())
      inventory_upsert.emplace(
          db,
          "INSERT INTO inventory (node_id, labels, state, fingerprint, certificate_not_after, "
          "source, enrolled_at, enrolled_by, revoked_at, revoked_by, revoked_reason) "
          "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) "
          "ON CONFLICT (node_id) DO UPDATE SET labels = excluded.labels, state = excluded.state, "
          "fingerprint = excluded.fingerprint, "
          "certificate_not_after = excluded.certificate_not_after, source = excluded.source, "
          "enrolled_at = excluded.enrolled_at, enrolled_by = excluded.enrolled_by, "
          "revoked_at = excluded.revoked_at, revoked_by = excluded.revoked_by, "
          "revoked_reason = excluded.revoked_reason");
    for (std::size_t i = 0; i < b.inventory.size(); ++i) {
      const auto& r = b.inventory[i];
      statement& st = *inventory_upsert;
      st.reset();
      st.bind(1, r.node_id).bind(2, pre.inventory_labels[i]).bind(3, r.state);
      st.bind(4, r.fingerprint).bind(5, r.certificate_not_after).bind(6, r.source);
      st.bind(7, r.enrolled_at).bind(8, r.enrolled_by).bind(9, r.revoked_at);
      st.bind(10, r.revoked_by).bind(11, r.revoked_reason);
      st.run();
    }

    {
      statement st(db, "UPDATE store_revision SET revision = ?1 WHERE only_row = 1");
      st.bind_u(1, new_rev);
      st.run();
    }
    res.store_revision = new_rev;
    return std::nullopt;
  }

  std::mutex mutex_;
  std::condition_variable changed_;  // notified after every commit
  db_ptr db_;
};

}  // namespace

std::unique_ptr<store> open_sqlite_store(const std::string& path) {
  return std::make_unique<sqlite_store>(path);
}

}  // namespace sluice::control::store
