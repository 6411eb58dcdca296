// The store on etcd v3 (see etcd_store.hpp for how the contract maps onto etcd).
//
// Layout under PREFIX (key parts that are names are percent-escaped for '%' and '/', numbers are
// zero-padded to 20 digits so key order is numeric order):
//   format                      "sluice-store-v1": marks the prefix as a Sluice store
//   directives/<issuer>/<id>    directive JSON (record_json.hpp); version = the key's mod_revision
//   audit/<seq>, audit_head     audit record JSON; {"seq", "hash"} of the newest record
//   revisions/<n>, revision_latest
//   meta/<key>                  the value as given (raw bytes)
//   nodes/<id>, alive/<id>      node JSON; empty value with a node_ttl lease
//   impacts/<window_end>/<node> impact JSON
//   inventory/<id>              inventory JSON (issue 14)
//   leader                      replica name, with the leader's lease
//   touch                       rewritten by an empty batch, so every commit moves the revision
//
// commit() reads what its compares depend on in one Txn (a consistent snapshot), checks the batch
// against it locally (so a conflict is reported precisely and nothing is sent), then sends one
// Txn whose compares pin every key read at the mod_revision seen. A failed Txn is re-read and
// re-checked: if the batch's own conditions still hold, only something it re-derives moved (the
// audit head: another replica appended) and it retries with the new head; otherwise the re-check
// reports the conflict. Retries are bounded.

#include "control/store/etcd_store.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <map>
#include <mutex>
#include <new>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <unistd.h>
#include <utility>
#include <vector>

#include "control/store/batch_check.hpp"
#include "control/store/etcd_client.hpp"
#include "control/store/record_json.hpp"

namespace sluice::control::store {

namespace {

using json = nlohmann::json;
using etcd::base64_encode;
using etcd::int_field;
using etcd::key_value;
using etcd::reply;
using steady = std::chrono::steady_clock;

constexpr const char* format_marker = "sluice-store-v1";
constexpr std::uint64_t max_i64 = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
constexpr int commit_attempts = 32;
constexpr std::size_t page_size = 1000;
constexpr std::size_t per_op_overhead = 16;  // protobuf framing of one op, roughly
constexpr int grpc_not_found = 5;
constexpr int grpc_out_of_range = 11;  // "required revision has been compacted"

std::string escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (const char c : s) {
    if (c == '%' || c == '/') {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", static_cast<unsigned char>(c));
      out += buf;
    } else {
      out += c;
    }
  }
  return out;
}

std::string pad20(std::uint64_t n) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%020llu", static_cast<unsigned long long>(n));
  return buf;
}

json b64(std::string_view s) { return base64_encode(s); }

json range_request(const std::string& key, const std::string& range_end = {},
                   std::size_t limit = 0, std::int64_t revision = 0, bool keys_only = false) {
  json r = {{"key", b64(key)}};
  if (!range_end.empty()) r["range_end"] = b64(range_end);
  if (limit != 0) r["limit"] = static_cast<std::int64_t>(limit);
  if (revision != 0) r["revision"] = revision;
  if (keys_only) r["keys_only"] = true;
  return r;
}

json put_op(const std::string& key, std::string_view value, std::int64_t lease = 0) {
  json p = {{"key", b64(key)}, {"value", b64(value)}};
  if (lease != 0) p["lease"] = lease;
  return {{"request_put", std::move(p)}};
}

json compare(const std::string& key, const char* target, const char* field, std::int64_t v) {
  return {{"key", b64(key)}, {"target", target}, {"result", "EQUAL"}, {field, v}};
}

std::int64_t header_revision(const json& body) {
  const auto it = body.find("header");
  return it == body.end() ? 0 : int_field(*it, "revision");
}

std::vector<key_value> kvs_of(const json& range_response) {
  std::vector<key_value> out;
  const auto it = range_response.find("kvs");
  if (it == range_response.end() || it->is_null()) return out;
  if (!it->is_array()) throw store_error("etcd: range response kvs is not an array");
  for (const auto& kv : *it) out.push_back(etcd::parse_kv(kv));
  return out;
}

bool flag(const json& body, const char* name) {
  const auto it = body.find(name);
  return it != body.end() && it->is_boolean() && it->get<bool>();
}

// A read that failed to decode is corruption of what the key holds: name the key.
template <class F>
auto decode(const key_value& kv, F&& f) {
  try {
    return f(kv.value);
  } catch (const store_error& e) {
    throw store_error("corrupt store: " + kv.key + ": " + e.what());
  }
}

std::string default_replica_name() {
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
  return std::string(host[0] ? host : "replica") + ":" + std::to_string(getpid());
}

// What one commit attempt read.
struct snapshot {
  std::map<std::string, key_value> keys;  // by key; absent keys are not in it
  [[nodiscard]] const key_value* find(const std::string& k) const {
    const auto it = keys.find(k);
    return it == keys.end() ? nullptr : &it->second;
  }
  [[nodiscard]] std::int64_t mod(const std::string& k) const {
    const key_value* kv = find(k);
    return kv ? kv->mod_revision : 0;
  }
};

struct refused {
  commit_outcome outcome;
  std::string error;
};

class etcd_store final : public store {
 public:
  explicit etcd_store(const etcd_options& o)
      : options_(o),
        prefix_(strip_slash(o.prefix)),
        replica_(o.replica.empty() ? default_replica_name() : o.replica),
        client_(make_client(o, o.request_timeout)),
        campaign_client_(make_client(o, o.request_timeout)),
        watch_client_(make_client(o, std::chrono::seconds(30))) {
    if (o.leader_ttl.count() < 2) throw store_error("etcd store: leader_ttl must be >= 2 s");
    if (o.node_ttl.count() < 2) throw store_error("etcd store: node_ttl must be >= 2 s");
    known_revision_ = check_format();
    watch_thread_ = std::thread([this] { watch_loop(); });
    campaign_thread_ = std::thread([this] { campaign_loop(); });
  }

  etcd_store(const etcd_store&) = delete;
  etcd_store& operator=(const etcd_store&) = delete;

  ~etcd_store() override {
    {
      std::lock_guard lock(state_mutex_);
      stopping_ = true;
    }
    state_cv_.notify_all();
    campaign_thread_.join();
    resign();
    // The watch blocks in a read; stop() shuts its socket. It may be between two requests when
    // we call it, so repeat until the thread has seen stopping_.
    while (!watch_done_.load()) {
      watch_client_->stop();
      std::unique_lock lock(state_mutex_);
      state_cv_.wait_for(lock, std::chrono::milliseconds(20), [this] { return watch_done_.load(); });
    }
    watch_thread_.join();
  }

  commit_result commit(const write_batch& batch) override {
    try {
      return commit_impl(batch);
    } catch (const std::bad_alloc&) {
      throw;
    } catch (const std::exception& e) {
      commit_result r;
      r.outcome = commit_outcome::failed;
      r.error = e.what();
      return r;
    }
  }

  std::optional<directive_record> get_directive(const std::string& issuer,
                                                const std::string& id) override {
    const json body = read("/v3/kv/range", range_request(directive_key(issuer, id)));
    const auto kvs = kvs_of(body);
    if (kvs.empty()) return std::nullopt;
    return to_directive(kvs.front());
  }

  std::vector<directive_record> list_directives() override {
    std::vector<directive_record> out;
    for (const auto& kv : range_all(key("directives/"), 0)) out.push_back(to_directive(kv));
    std::sort(out.begin(), out.end(), [](const directive_record& a, const directive_record& b) {
      return std::tie(a.received_at, a.issuer, a.id) < std::tie(b.received_at, b.issuer, b.id);
    });
    return out;
  }

  std::vector<audit::audit_record> audit_since(std::uint64_t after_seq,
                                               std::size_t limit) override {
    if (after_seq >= max_i64) return {};
    std::int64_t rev = 0;
    const auto kvs = range_all(audit_key(after_seq + 1), prefix_end_of("audit/"), rev, limit);
    std::vector<audit::audit_record> out;
    out.reserve(kvs.size());
    for (const auto& kv : kvs) out.push_back(decode(kv, audit_from_json));
    return out;
  }

  std::optional<audit::audit_record> audit_head() override {
    auto kv = last_in("audit/");
    if (!kv) return std::nullopt;
    return decode(*kv, audit_from_json);
  }

  std::optional<revision_record> latest_revision() override {
    auto kv = last_in("revisions/");
    if (!kv) return std::nullopt;
    return decode(*kv, revision_from_json);
  }

  std::optional<revision_record> get_revision(std::uint64_t revision) override {
    if (revision == 0 || revision > max_i64) return std::nullopt;
    const auto kvs = kvs_of(read("/v3/kv/range", range_request(revision_key(revision))));
    if (kvs.empty()) return std::nullopt;
    return decode(kvs.front(), revision_from_json);
  }

  std::optional<std::string> get_meta(const std::string& k) override {
    const auto kvs = kvs_of(read("/v3/kv/range", range_request(meta_key(k))));
    if (kvs.empty()) return std::nullopt;
    return kvs.front().value;
  }

  std::vector<node_record> list_nodes() override {
    {
      // Whole from here, unless the watch loses events while this list is read.
      std::lock_guard lock(state_mutex_);
      node_feed_whole_ = true;
    }
    // Both ranges at one revision, so a node and its liveness are judged at the same moment.
    std::int64_t rev = 0;
    const auto nodes = range_all(key("nodes/"), prefix_end_of("nodes/"), rev, 0);
    {
      // What the feed holds up to this list's revision, and what the watch still delivers up to
      // there (it may trail this read), is in the list already or older than it: never newer.
      std::lock_guard lock(state_mutex_);
      std::erase_if(node_feed_, [rev](const auto& kv) { return kv.second.first <= rev; });
      node_feed_listed_ = std::max(node_feed_listed_, rev);
    }
    std::set<std::string> alive;
    if (!nodes.empty()) {
      const std::string alive_prefix = key("alive/");
      for (const auto& kv : range_all(alive_prefix, prefix_end_of("alive/"), rev, 0, true)) {
        alive.insert(kv.key.substr(alive_prefix.size()));
      }
    }
    const std::string node_prefix = key("nodes/");
    std::vector<node_record> out;
    for (const auto& kv : nodes) {
      node_record n = decode(kv, node_from_json);
      n.expired = alive.count(kv.key.substr(node_prefix.size())) == 0;
      out.push_back(std::move(n));
    }
    std::sort(out.begin(), out.end(),
              [](const node_record& a, const node_record& b) { return a.node_id < b.node_id; });
    return out;
  }

  std::optional<std::vector<node_record>> take_node_changes() override {
    std::map<std::string, std::pair<std::int64_t, std::string>> feed;
    {
      std::lock_guard lock(state_mutex_);
      if (!node_feed_whole_) return std::nullopt;
      feed.swap(node_feed_);
    }
    std::vector<node_record> out;
    out.reserve(feed.size());
    for (const auto& [id, change] : feed) {
      const std::string& value = change.second;
      try {
        out.push_back(node_from_json(value));
      } catch (const std::exception&) {
        std::lock_guard lock(state_mutex_);
        node_feed_whole_ = false;  // a record we cannot read: list them all instead
        return std::nullopt;
      }
    }
    return out;
  }

  std::vector<inventory_record> list_inventory() override {
    std::vector<inventory_record> out;
    for (const auto& kv : range_all(key("inventory/"), 0)) out.push_back(decode(kv, inventory_from_json));
    std::sort(out.begin(), out.end(), [](const inventory_record& a, const inventory_record& b) {
      return a.node_id < b.node_id;
    });
    return out;
  }

  std::vector<impact_record> list_impacts(std::int64_t since) override {
    std::int64_t rev = 0;
    const auto kvs = range_all(impact_prefix(since < 0 ? 0 : static_cast<std::uint64_t>(since)),
                               prefix_end_of("impacts/"), rev, 0);
    std::vector<impact_record> out;
    for (const auto& kv : kvs) out.push_back(decode(kv, impact_from_json));
    std::sort(out.begin(), out.end(), [](const impact_record& a, const impact_record& b) {
      return std::tie(a.window_end, a.node_id) < std::tie(b.window_end, b.node_id);
    });
    return out;
  }

  std::uint64_t store_revision() override {
    const json body = read("/v3/kv/range", range_request(key("format")));
    return static_cast<std::uint64_t>(header_revision(body));
  }

  std::uint64_t wait_for_change(std::uint64_t after, std::chrono::milliseconds timeout) override {
    std::unique_lock lock(state_mutex_);
    state_cv_.wait_for(lock, timeout, [&] { return known_revision_ > after || stopping_; });
    return known_revision_;
  }

  leadership leadership_state() override {
    std::lock_guard lock(state_mutex_);
    leadership l;
    l.leader = i_lead_locked();
    l.holder = holder_;
    l.term = term_;
    return l;
  }

 private:
  static std::string strip_slash(std::string p) {
    while (!p.empty() && p.back() == '/') p.pop_back();
    return p;
  }

  static std::unique_ptr<etcd::client> make_client(const etcd_options& o,
                                                   std::chrono::milliseconds timeout) {
    try {
      return std::make_unique<etcd::client>(o.endpoints, timeout,
                                            etcd::tls_files{o.tls_ca, o.tls_cert, o.tls_key});
    } catch (const std::invalid_argument& e) {
      throw store_error(std::string("etcd store: ") + e.what());
    }
  }

  // ---- keys ----
  [[nodiscard]] std::string key(std::string_view suffix) const {
    return prefix_ + "/" + std::string(suffix);
  }
  [[nodiscard]] std::string prefix_end_of(std::string_view suffix) const {
    return etcd::prefix_end(key(suffix));
  }
  [[nodiscard]] std::string directive_key(const std::string& issuer, const std::string& id) const {
    return key("directives/") + escape(issuer) + "/" + escape(id);
  }
  [[nodiscard]] std::string audit_key(std::uint64_t seq) const { return key("audit/") + pad20(seq); }
  [[nodiscard]] std::string revision_key(std::uint64_t n) const {
    return key("revisions/") + pad20(n);
  }
  [[nodiscard]] std::string meta_key(const std::string& k) const { return key("meta/") + escape(k); }
  [[nodiscard]] std::string node_key(const std::string& id) const { return key("nodes/") + escape(id); }
  [[nodiscard]] std::string alive_key(const std::string& id) const { return key("alive/") + escape(id); }
  [[nodiscard]] std::string inventory_key(const std::string& id) const {
    return key("inventory/") + escape(id);
  }
  [[nodiscard]] std::string impact_prefix(std::uint64_t window_end) const {
    return key("impacts/") + pad20(window_end);
  }
  [[nodiscard]] std::string impact_key(const impact_record& r) const {
    return impact_prefix(static_cast<std::uint64_t>(r.window_end)) + "/" + escape(r.node_id);
  }

  // ---- reads ----
  void note_revision(std::int64_t rev) {
    if (rev <= 0) return;
    bool moved = false;
    {
      std::lock_guard lock(state_mutex_);
      if (static_cast<std::uint64_t>(rev) > known_revision_) {
        known_revision_ = static_cast<std::uint64_t>(rev);
        moved = true;
      }
    }
    if (moved) state_cv_.notify_all();
  }

  json read(const std::string& path, const json& body) {
    reply r = client_->post(path, body, true);
    if (!r.ok()) throw store_error("etcd: " + r.error);
    note_revision(header_revision(r.body));
    return std::move(r.body);
  }

  std::vector<key_value> range_all(const std::string& prefix_key, std::int64_t) {
    std::int64_t rev = 0;
    return range_all(prefix_key, etcd::prefix_end(prefix_key), rev, 0);
  }

  // [start, end) in pages at one revision (rev: 0 = the current one, set to it on return).
  std::vector<key_value> range_all(const std::string& start, const std::string& end,
                                   std::int64_t& rev, std::size_t limit, bool keys_only = false) {
    std::vector<key_value> out;
    std::string from = start;
    for (;;) {
      std::size_t want = page_size;
      if (limit != 0) want = std::min(want, limit - out.size());
      reply r = client_->post("/v3/kv/range", range_request(from, end, want, rev, keys_only), true);
      if (!r.ok()) {
        if (r.code == grpc_out_of_range && rev != 0) {
          // Compacted while paging: start over at the current revision.
          out.clear();
          from = start;
          rev = 0;
          continue;
        }
        throw store_error("etcd: " + r.error);
      }
      if (rev == 0) rev = header_revision(r.body);
      note_revision(header_revision(r.body));
      auto kvs = kvs_of(r.body);
      for (auto& kv : kvs) out.push_back(std::move(kv));
      if (!flag(r.body, "more") || kvs.empty() || (limit != 0 && out.size() >= limit)) break;
      from = out.back().key + std::string(1, '\0');
    }
    return out;
  }

  std::optional<key_value> last_in(std::string_view suffix) {
    json req = range_request(key(suffix), prefix_end_of(suffix), 1);
    req["sort_order"] = "DESCEND";
    req["sort_target"] = "KEY";
    auto kvs = kvs_of(read("/v3/kv/range", req));
    if (kvs.empty()) return std::nullopt;
    return std::move(kvs.front());
  }

  directive_record to_directive(const key_value& kv) {
    directive_record d = decode(kv, directive_from_json);
    d.version = static_cast<std::uint64_t>(kv.mod_revision);
    return d;
  }

  // Marks an empty prefix as a store; refuses a prefix holding anything else. Returns the
  // cluster's revision.
  std::uint64_t check_format() {
    const std::string fk = key("format");
    for (int attempt = 0; attempt < 3; ++attempt) {
      json body = read("/v3/kv/range", range_request(fk));
      auto kvs = kvs_of(body);
      if (!kvs.empty()) {
        if (kvs.front().value != format_marker) {
          throw store_error("etcd prefix " + prefix_ + " is not a Sluice store (format \"" +
                            kvs.front().value + "\")");
        }
        return static_cast<std::uint64_t>(header_revision(body));
      }
      json count = range_request(key(""), prefix_end_of(""));
      count["count_only"] = true;
      const json counted = read("/v3/kv/range", count);
      if (int_field(counted, "count") != 0) {
        // Replicas starting together on a fresh prefix: another one may have marked it (and
        // written more) between our two reads. Read the marker again before refusing.
        if (attempt + 1 < 3 && !kvs_of(read("/v3/kv/range", range_request(fk))).empty()) continue;
        throw store_error("etcd prefix " + prefix_ + " holds keys but is not a Sluice store");
      }
      const json txn = {{"compare", json::array({compare(fk, "CREATE", "create_revision", 0)})},
                        {"success", json::array({put_op(fk, format_marker)})}};
      reply r = client_->post("/v3/kv/txn", txn, false);
      if (!r.ok()) throw store_error("etcd: " + r.error);
      if (flag(r.body, "succeeded")) return static_cast<std::uint64_t>(header_revision(r.body));
      // Another replica created it first: read it again.
    }
    throw store_error("etcd prefix " + prefix_ + ": cannot create the format marker");
  }

  // ---- commit ----
  struct prepared {
    std::vector<std::string> directives;  // JSON per directive put
    std::vector<std::string> nodes;       // JSON per node
    std::vector<std::string> impacts;     // JSON per impact ("" = pruned in the same batch)
    std::vector<std::string> inventory;   // JSON per inventory record
    std::size_t ops = 0;
    std::size_t compares = 0;
    std::size_t bytes = 0;
  };

  std::optional<refused> prepare(const write_batch& b, prepared& out) const {
    auto refuse = [](std::string msg) {
      return refused{commit_outcome::failed, "invalid batch: " + std::move(msg)};
    };
    if (std::string e = check_batch(b); !e.empty()) return refuse(std::move(e));
    for (const auto& p : b.directives) {
      const auto& d = p.record;
      const std::string k = d.issuer + "/" + d.id;
      try {
        out.directives.push_back(directive_to_json(d));
      } catch (const store_error& e) {
        return refuse("directive " + k + ": " + e.what());
      }
      out.bytes += out.directives.back().size() + directive_key(d.issuer, d.id).size();
    }
    for (const auto& a : b.audit) {
      try {
        out.bytes += audit_to_json(a).size() + 200;  // + seq, hashes and key
      } catch (const store_error& e) {
        return refuse("audit record " + a.event + ": " + e.what());
      }
    }
    for (const auto& r : b.revisions) {
      try {
        out.bytes += revision_to_json(r).size() + 64;
      } catch (const store_error& e) {
        return refuse("revision " + std::to_string(r.revision) + ": " + e.what());
      }
    }
    for (const auto& [k, v] : b.meta) out.bytes += meta_key(k).size() + v.size();
    for (const auto& n : b.nodes) {
      try {
        out.nodes.push_back(node_to_json(n));
      } catch (const store_error& e) {
        return refuse("node " + n.node_id + ": " + e.what());
      }
      out.bytes += out.nodes.back().size() + node_key(n.node_id).size() +
                   alive_key(n.node_id).size() + 2 * per_op_overhead;
    }
    for (const auto& r : b.impacts) {
      const std::string k = r.node_id + "@" + std::to_string(r.window_end);
      // Pruned by this same batch: etcd refuses a Txn whose puts fall in its delete range,
      // and the outcome (not kept) is the same as writing it and pruning it.
      if (b.prune_impacts_before > 0 && r.window_end < b.prune_impacts_before) {
        out.impacts.emplace_back();
        continue;
      }
      try {
        out.impacts.push_back(impact_to_json(r));
      } catch (const store_error& e) {
        return refuse("impact " + k + ": " + e.what());
      }
      out.bytes += out.impacts.back().size() + impact_key(r).size();
    }
    for (const auto& r : b.inventory) {
      try {
        out.inventory.push_back(inventory_to_json(r));
      } catch (const store_error& e) {
        return refuse("inventory " + r.node_id + ": " + e.what());
      }
      out.bytes += out.inventory.back().size() + inventory_key(r.node_id).size();
    }
    // Everything the Txn will hold (see build_txn).
    out.ops = b.directives.size() + b.audit.size() + (b.audit.empty() ? 0 : 1) +
              b.revisions.size() + (b.revisions.empty() ? 0 : 1) + b.meta.size() +
              2 * b.nodes.size() + b.impacts.size() + (b.prune_impacts_before > 0 ? 1 : 0) +
              b.inventory.size();
    if (out.ops == 0) out.ops = 1;  // the "touch" put of an empty batch
    out.compares = b.directives.size() + (b.audit.empty() ? 0 : 1) +
                   (b.revisions.empty() ? 0 : 1) + b.meta_expect.size() +
                   (b.require_leadership ? 2 : 0);
    out.bytes += per_op_overhead * (out.ops + out.compares);
    for (const auto& [k, v] : b.meta_expect) out.bytes += meta_key(k).size() + per_op_overhead;
    const std::size_t reads = b.directives.size() + b.meta_expect.size() + 3;
    const std::size_t worst = std::max({out.ops, out.compares, reads});
    if (worst > options_.max_txn_ops) {
      return refused{commit_outcome::failed,
                     "batch too large: it needs " + std::to_string(worst) +
                         " operations in one etcd transaction, over the limit of " +
                         std::to_string(options_.max_txn_ops) +
                         " (etcd_options::max_txn_ops; the cluster's --max-txn-ops must be at "
                         "least as high)"};
    }
    if (out.bytes > options_.max_request_bytes) {
      return refused{commit_outcome::failed,
                     "batch too large: about " + std::to_string(out.bytes) +
                         " bytes in one etcd transaction, over the limit of " +
                         std::to_string(options_.max_request_bytes) +
                         " (etcd_options::max_request_bytes; the cluster's --max-request-bytes "
                         "must be at least as high)"};
    }
    return std::nullopt;
  }

  // Everything the batch's conditions depend on, read in one Txn (one revision).
  std::optional<snapshot> read_snapshot(const write_batch& b, std::string& error) {
    json ops = json::array();
    for (const auto& p : b.directives) {
      ops.push_back({{"request_range", range_request(directive_key(p.record.issuer, p.record.id))}});
    }
    if (!b.audit.empty()) ops.push_back({{"request_range", range_request(key("audit_head"))}});
    if (!b.revisions.empty()) {
      ops.push_back({{"request_range", range_request(key("revision_latest"))}});
    }
    for (const auto& [k, v] : b.meta_expect) {
      ops.push_back({{"request_range", range_request(meta_key(k))}});
    }
    if (b.require_leadership) ops.push_back({{"request_range", range_request(key("leader"))}});
    snapshot s;
    if (ops.empty()) return s;
    reply r = client_->post("/v3/kv/txn", {{"success", std::move(ops)}}, true);
    if (!r.ok()) {
      error = r.error;
      return std::nullopt;
    }
    note_revision(header_revision(r.body));
    const auto it = r.body.find("responses");
    if (it != r.body.end() && it->is_array()) {
      for (const auto& resp : *it) {
        const auto rr = resp.find("response_range");
        if (rr == resp.end()) continue;
        for (auto& kv : kvs_of(*rr)) s.keys.emplace(kv.key, std::move(kv));
      }
    }
    return s;
  }

  struct audit_head_value {
    std::uint64_t seq = 0;
    std::string hash;
  };

  audit_head_value parse_head(const key_value* kv) const {
    if (!kv) return {};
    try {
      const json j = json::parse(kv->value);
      audit_head_value h;
      h.seq = j.at("seq").get<std::uint64_t>();
      h.hash = j.at("hash").get<std::string>();
      return h;
    } catch (const json::exception& e) {
      throw store_error("corrupt store: " + kv->key + ": " + e.what());
    }
  }

  std::uint64_t parse_latest(const key_value* kv) const {
    if (!kv) return 0;
    try {
      std::size_t used = 0;
      const unsigned long long v = std::stoull(kv->value, &used);
      if (used != kv->value.size()) throw std::invalid_argument("trailing text");
      return v;
    } catch (const std::exception&) {
      throw store_error("corrupt store: " + kv->key + ": not a number");
    }
  }

  // The batch's own conditions against what was read: a conflict, or nothing.
  std::optional<refused> check(const write_batch& b, const snapshot& s) {
    auto conflict = [](std::string msg) { return refused{commit_outcome::conflict, std::move(msg)}; };
    for (const auto& p : b.directives) {
      const key_value* kv = s.find(directive_key(p.record.issuer, p.record.id));
      std::optional<std::uint64_t> stored;
      if (kv) stored = static_cast<std::uint64_t>(kv->mod_revision);
      if (auto e = check_directive_version(p, stored); !e.empty()) return conflict(std::move(e));
    }
    if (!b.revisions.empty()) {
      const std::uint64_t latest = parse_latest(s.find(key("revision_latest")));
      if (auto e = check_revision_sequence(b, latest); !e.empty()) return conflict(std::move(e));
    }
    for (const auto& [k, want] : b.meta_expect) {
      const key_value* kv = s.find(meta_key(k));
      const bool matches = want.empty() ? (!kv || kv->value.empty()) : (kv && kv->value == want);
      if (!matches) {
        return conflict("meta " + k + " is " + (kv ? "\"" + kv->value + "\"" : "absent") +
                        "; the batch expected " + (want.empty() ? "it absent" : "\"" + want + "\""));
      }
    }
    if (b.require_leadership) {
      const key_value* kv = s.find(key("leader"));
      std::int64_t lease = 0;
      {
        std::lock_guard lock(state_mutex_);
        lease = i_lead_locked() ? leader_lease_ : 0;
      }
      if (lease == 0 || !kv || kv->lease != lease) {
        return conflict("replica " + replica_ + " is not the leader (leader: " +
                        (kv ? kv->value : std::string("none")) + ")");
      }
    }
    return std::nullopt;
  }

  json build_txn(const write_batch& b, const prepared& pre, const snapshot& s,
                 const std::vector<audit::audit_record>& sealed, std::int64_t node_lease) {
    json cmp = json::array();
    json ops = json::array();
    for (std::size_t i = 0; i < b.directives.size(); ++i) {
      const auto& p = b.directives[i];
      const std::string k = directive_key(p.record.issuer, p.record.id);
      // mod_revision of an absent key compares as 0, so 0 means "must not exist".
      cmp.push_back(compare(k, "MOD", "mod_revision", static_cast<std::int64_t>(p.expected_version)));
      ops.push_back(put_op(k, pre.directives[i]));
    }
    if (!b.audit.empty()) {
      const std::string hk = key("audit_head");
      cmp.push_back(compare(hk, "MOD", "mod_revision", s.mod(hk)));
      for (const auto& r : sealed) ops.push_back(put_op(audit_key(r.seq), audit_to_json(r)));
      ops.push_back(
          put_op(hk, json{{"seq", sealed.back().seq}, {"hash", sealed.back().hash}}.dump()));
    }
    if (!b.revisions.empty()) {
      const std::string lk = key("revision_latest");
      cmp.push_back(compare(lk, "MOD", "mod_revision", s.mod(lk)));
      for (const auto& r : b.revisions) ops.push_back(put_op(revision_key(r.revision), revision_to_json(r)));
      ops.push_back(put_op(lk, std::to_string(b.revisions.back().revision)));
    }
    for (const auto& [k, v] : b.meta_expect) {
      const std::string mk = meta_key(k);
      cmp.push_back(compare(mk, "MOD", "mod_revision", s.mod(mk)));
    }
    if (b.require_leadership) {
      const std::string lk = key("leader");
      const key_value* kv = s.find(lk);
      cmp.push_back(compare(lk, "CREATE", "create_revision", kv ? kv->create_revision : 0));
      cmp.push_back(compare(lk, "LEASE", "lease", kv ? kv->lease : 0));
    }
    for (const auto& [k, v] : b.meta) ops.push_back(put_op(meta_key(k), v));
    for (std::size_t i = 0; i < b.nodes.size(); ++i) {
      ops.push_back(put_op(node_key(b.nodes[i].node_id), pre.nodes[i]));
      ops.push_back(put_op(alive_key(b.nodes[i].node_id), "", node_lease));
    }
    for (std::size_t i = 0; i < b.impacts.size(); ++i) {
      if (pre.impacts[i].empty()) continue;
      ops.push_back(put_op(impact_key(b.impacts[i]), pre.impacts[i]));
    }
    for (std::size_t i = 0; i < b.inventory.size(); ++i)
      ops.push_back(put_op(inventory_key(b.inventory[i].node_id), pre.inventory[i]));
    if (b.prune_impacts_before > 0) {
      ops.push_back({{"request_delete_range",
                      {{"key", b64(key("impacts/"))},
                       {"range_end", b64(impact_prefix(static_cast<std::uint64_t>(
                                         b.prune_impacts_before)))}}}});
    }
    if (ops.empty()) ops.push_back(put_op(key("touch"), ""));
    return {{"compare", std::move(cmp)}, {"success", std::move(ops)}};
  }

  commit_result commit_impl(const write_batch& b) {
    commit_result res;
    auto fail = [&res](commit_outcome o, std::string e) {
      res = commit_result{};
      res.outcome = o;
      res.error = std::move(e);
      return res;
    };
    prepared pre;
    if (auto r = prepare(b, pre)) return fail(r->outcome, std::move(r->error));
    if (b.require_leadership && !leadership_state().leader) {
      return fail(commit_outcome::conflict, "replica " + replica_ + " is not the leader");
    }
    bool lease_retried = false;
    for (int attempt = 0; attempt < commit_attempts; ++attempt) {
      std::string error;
      auto snap = read_snapshot(b, error);
      if (!snap) return fail(commit_outcome::failed, "etcd: " + error);
      if (auto r = check(b, *snap)) return fail(r->outcome, std::move(r->error));

      std::vector<audit::audit_record> sealed;
      if (!b.audit.empty()) {
        const audit_head_value head = parse_head(snap->find(key("audit_head")));
        audit::audit_record prev;
        prev.seq = head.seq;
        prev.hash = head.hash;
        const audit::audit_record* p = head.seq == 0 ? nullptr : &prev;
        for (const auto& in : b.audit) {
          audit::audit_record r = in;
          audit::seal(r, p);
          sealed.push_back(std::move(r));
          p = &sealed.back();
        }
        if (sealed.back().seq > max_i64) return fail(commit_outcome::failed, "audit seq exhausted");
      }
      std::int64_t lease = 0;
      if (!b.nodes.empty()) {
        lease = node_lease(error);
        if (lease == 0) return fail(commit_outcome::failed, "etcd: node lease: " + error);
      }

      reply r = client_->post("/v3/kv/txn", build_txn(b, pre, *snap, sealed, lease), false);
      if (r.outcome == reply::status::error && r.code == grpc_not_found && lease != 0 &&
          !lease_retried) {
        // The node lease expired under us (a paused process): take a new one, once.
        drop_node_lease(lease);
        lease_retried = true;
        --attempt;
        continue;
      }
      if (!r.ok()) return fail(commit_outcome::failed, "etcd: " + r.error);
      const std::int64_t rev = header_revision(r.body);
      note_revision(rev);
      if (flag(r.body, "succeeded")) {
        res.outcome = commit_outcome::ok;
        res.store_revision = static_cast<std::uint64_t>(rev);
        for (const auto& s : sealed) res.audit_seqs.push_back(s.seq);
        return res;
      }
      // A compare failed: re-read; the check reports a real conflict, or only the audit head
      // moved and the next round re-seals on top of it. A random pause first, so two replicas
      // appending in lockstep do not keep beating one of them.
      backoff(attempt);
    }
    return fail(commit_outcome::failed,
                "gave up after " + std::to_string(commit_attempts) +
                    " attempts: the audit chain head kept moving (other replicas appending)");
  }

  static void backoff(int attempt) {
    thread_local std::minstd_rand rng{std::random_device{}()};
    const int cap_ms = std::min(2 << std::min(attempt, 5), 50);
    std::uniform_int_distribution<int> pause(0, cap_ms);
    std::this_thread::sleep_for(std::chrono::milliseconds(pause(rng)));
  }

  // ---- node liveness leases: one per time bucket ----
  std::int64_t node_lease(std::string& error) {
    std::lock_guard lock(lease_mutex_);
    const auto now = steady::now();
    if (node_lease_id_ != 0 && now < node_lease_use_until_) return node_lease_id_;
    // Keys put during [grant, grant + bucket) expire node_ttl to node_ttl + bucket after their
    // last put; a bucket of a tenth of the ttl bounds the lateness and the number of leases.
    const std::int64_t ttl = options_.node_ttl.count();
    const std::int64_t bucket = std::max<std::int64_t>(1, (ttl + 9) / 10);
    reply r = client_->post("/v3/lease/grant", {{"TTL", ttl + bucket}, {"ID", 0}}, true);
    if (!r.ok()) {
      error = r.error;
      return 0;
    }
    const std::int64_t id = int_field(r.body, "ID");
    if (id == 0) {
      error = "lease grant returned no ID";
      return 0;
    }
    node_lease_id_ = id;
    node_lease_use_until_ = now + std::chrono::seconds(bucket);
    return id;
  }

  void drop_node_lease(std::int64_t id) {
    std::lock_guard lock(lease_mutex_);
    if (node_lease_id_ == id) node_lease_id_ = 0;
  }

  // ---- leadership ----
  [[nodiscard]] bool i_lead_locked() const {
    return leader_lease_ != 0 && i_lead_ && steady::now() < lease_valid_until_;
  }

  void campaign_loop() {
    const auto ttl = std::chrono::duration_cast<steady::duration>(options_.leader_ttl);
    const auto refresh_every = ttl / 3;
    const auto tick = std::min<steady::duration>(refresh_every, std::chrono::milliseconds(250));
    steady::time_point last_refresh{};
    for (;;) {
      {
        std::unique_lock lock(state_mutex_);
        if (stopping_) return;
      }
      std::int64_t lease = 0;
      {
        std::lock_guard lock(state_mutex_);
        lease = leader_lease_;
      }
      const auto sent = steady::now();
      if (lease == 0) {
        reply r = campaign_client_->post(
            "/v3/lease/grant", {{"TTL", options_.leader_ttl.count()}, {"ID", 0}}, true);
        if (r.ok() && int_field(r.body, "ID") != 0) {
          std::lock_guard lock(state_mutex_);
          leader_lease_ = lease = int_field(r.body, "ID");
          lease_valid_until_ = sent + std::chrono::seconds(int_field(r.body, "TTL"));
          last_refresh = sent;
        }
      } else if (sent - last_refresh >= refresh_every) {
        reply r = campaign_client_->post("/v3/lease/keepalive", {{"ID", lease}}, true);
        if (r.ok()) {
          const auto it = r.body.find("result");
          const std::int64_t granted = it == r.body.end() ? 0 : int_field(*it, "TTL");
          std::lock_guard lock(state_mutex_);
          if (granted > 0) {
            // etcd restarts the ttl when it receives the keepalive, after we sent it.
            lease_valid_until_ = sent + std::chrono::seconds(granted);
            last_refresh = sent;
          } else {
            leader_lease_ = lease = 0;  // expired: campaign again with a new one
            i_lead_ = false;
          }
        }
      }
      if (lease != 0) campaign_once(lease);
      std::unique_lock lock(state_mutex_);
      state_cv_.wait_for(lock, tick, [this] { return stopping_ || leader_key_changed_; });
      leader_key_changed_ = false;
    }
  }

  // Creates the leader key if absent, else learns who holds it.
  void campaign_once(std::int64_t lease) {
    const std::string lk = key("leader");
    const json txn = {
        {"compare", json::array({compare(lk, "CREATE", "create_revision", 0)})},
        {"success", json::array({put_op(lk, replica_, lease)})},
        {"failure", json::array({{{"request_range", range_request(lk)}}})}};
    reply r = campaign_client_->post("/v3/kv/txn", txn, false);
    if (!r.ok()) return;  // keep the last known state; i_lead_locked() times it out
    try {
      std::lock_guard lock(state_mutex_);
      if (flag(r.body, "succeeded")) {
        holder_ = replica_;
        term_ = static_cast<std::uint64_t>(header_revision(r.body));
        i_lead_ = true;
        return;
      }
      const auto& responses = r.body.at("responses");
      std::vector<key_value> kvs;
      if (responses.is_array() && !responses.empty() && responses[0].contains("response_range")) {
        kvs = kvs_of(responses[0]["response_range"]);
      }
      if (kvs.empty()) {  // deleted between compare and range: next round creates it
        holder_.clear();
        i_lead_ = false;
        return;
      }
      holder_ = kvs.front().value;
      term_ = static_cast<std::uint64_t>(kvs.front().create_revision);
      i_lead_ = kvs.front().lease == lease;
    } catch (const std::exception&) {
      // A malformed answer: keep the last known state.
    }
  }

  // A clean stop hands over at once: revoking the lease deletes the leader key with it.
  void resign() {
    std::int64_t lease = 0;
    {
      std::lock_guard lock(state_mutex_);
      lease = leader_lease_;
      leader_lease_ = 0;
      i_lead_ = false;
    }
    if (lease != 0) {
      (void)campaign_client_->post("/v3/lease/revoke", {{"ID", lease}}, true);
    }
  }

  // ---- watch ----
  void watch_loop() {
    std::int64_t next = static_cast<std::int64_t>(known_revision_) + 1;
    const std::string start = key("");
    const std::string leader = key("leader");
    const std::string node_prefix = key("nodes/");
    std::string buffer;
    while (!stopping_now()) {
      bool compacted = false;
      buffer.clear();
      auto on_data = [&](const char* data, std::size_t len) {
        buffer.append(data, len);
        std::size_t nl;
        while ((nl = buffer.find('\n')) != std::string::npos) {
          const std::string line = buffer.substr(0, nl);
          buffer.erase(0, nl + 1);
          if (!handle_watch_line(line, next, compacted, leader, node_prefix)) return false;
        }
        return !stopping_now();
      };
      const json req = {{"create_request",
                         {{"key", b64(start)},
                          {"range_end", b64(etcd::prefix_end(start))},
                          {"start_revision", next}}}};
      std::string error;
      watch_client_->stream("/v3/watch", req, on_data, error);
      if (stopping_now()) break;
      if (compacted) {
        // Events between `next` and now are gone: re-read the revision, wake every waiter (they
        // re-read state anyway) and go on from there.
        reply r = watch_client_->post("/v3/kv/range", range_request(key("format")), true);
        if (r.ok()) {
          const std::int64_t rev = header_revision(r.body);
          note_revision(rev);
          next = rev + 1;
          {
            std::lock_guard lock(state_mutex_);
            leader_key_changed_ = true;
          }
          state_cv_.notify_all();
          continue;
        }
      }
      std::unique_lock lock(state_mutex_);
      state_cv_.wait_for(lock, std::chrono::milliseconds(200), [this] { return stopping_; });
    }
    watch_done_.store(true);
    state_cv_.notify_all();
  }

  // false: end this stream (compacted, cancelled, or an error from the gateway).
  bool handle_watch_line(const std::string& line, std::int64_t& next, bool& compacted,
                         const std::string& leader, const std::string& node_prefix) {
    if (line.find_first_not_of(" \r\t") == std::string::npos) return true;
    try {
      const json j = json::parse(line);
      const auto it = j.find("result");
      if (it == j.end()) return false;  // {"error": ...}
      const json& res = *it;
      if (int_field(res, "compact_revision") > 0) {
        compacted = true;
        std::lock_guard lock(state_mutex_);
        node_feed_whole_ = false;  // the events in between are gone
        return false;
      }
      if (flag(res, "canceled")) return false;
      std::int64_t rev = header_revision(res);
      bool leader_changed = false;
      bool node_deleted = false;
      std::vector<key_value> node_puts;
      const auto ev = res.find("events");
      if (ev != res.end() && ev->is_array()) {
        for (const auto& e : *ev) {
          key_value kv = etcd::parse_kv(e.at("kv"));
          next = std::max(next, kv.mod_revision + 1);
          rev = std::max(rev, kv.mod_revision);
          if (kv.key == leader) leader_changed = true;
          if (kv.key.compare(0, node_prefix.size(), node_prefix) == 0) {
            if (e.value("type", std::string("PUT")) == "DELETE")
              node_deleted = true;
            else
              node_puts.push_back(std::move(kv));
          }
        }
      }
      if (leader_changed || node_deleted || !node_puts.empty()) {
        std::lock_guard lock(state_mutex_);
        if (leader_changed) leader_key_changed_ = true;
        if (node_deleted) node_feed_whole_ = false;
        // Keyed by the etcd key (one per node); bounded by the fleet's size.
        for (auto& kv : node_puts)
          if (kv.mod_revision > node_feed_listed_)
            node_feed_[kv.key] = {kv.mod_revision, std::move(kv.value)};
      }
      if (leader_changed) state_cv_.notify_all();
      note_revision(rev);
      return true;
    } catch (const std::exception&) {
      // Malformed: reconnect from the last revision seen. Events of this line may be skipped.
      std::lock_guard lock(state_mutex_);
      node_feed_whole_ = false;
      return false;
    }
  }

  bool stopping_now() {
    std::lock_guard lock(state_mutex_);
    return stopping_;
  }

  const etcd_options options_;
  const std::string prefix_;
  const std::string replica_;
  std::unique_ptr<etcd::client> client_;
  std::unique_ptr<etcd::client> campaign_client_;
  std::unique_ptr<etcd::client> watch_client_;

  std::mutex lease_mutex_;
  std::int64_t node_lease_id_ = 0;
  steady::time_point node_lease_use_until_{};

  mutable std::mutex state_mutex_;
  std::condition_variable state_cv_;
  bool stopping_ = false;
  std::uint64_t known_revision_ = 0;
  bool leader_key_changed_ = false;
  // The node change feed (take_node_changes): etcd key -> {mod revision, newest record value}
  // seen by the watch after the last list_nodes() read (its revision: node_feed_listed_);
  // whole = no event lost since that list.
  std::map<std::string, std::pair<std::int64_t, std::string>> node_feed_;
  std::int64_t node_feed_listed_ = 0;
  bool node_feed_whole_ = false;
  std::int64_t leader_lease_ = 0;
  steady::time_point lease_valid_until_{};
  bool i_lead_ = false;
  std::string holder_;
  std::uint64_t term_ = 0;
  std::atomic<bool> watch_done_{false};

  std::thread watch_thread_;
  std::thread campaign_thread_;
};

}  // namespace

std::unique_ptr<store> open_etcd_store(const etcd_options& options) {
  return std::make_unique<etcd_store>(options);
}

}  // namespace sluice::control::store
