#include "control/agent/agent.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <system_error>
#include <utility>
#include <vector>

#include "dataplane/match/policy_config.hpp"

namespace sluice::control::agent {
namespace {

bool label_char(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '.' || c == '-';
}
bool label_token(std::string_view s) noexcept {
  return !s.empty() && s.size() <= 64 && std::all_of(s.begin(), s.end(), label_char);
}

snapshot_check refuse(refusal code, std::string detail, std::uint64_t offered) {
  snapshot_check c;
  c.code = code;
  c.detail = std::move(detail);
  c.offered = offered;
  return c;
}

std::string errno_text(const std::string& what) {
  return what + ": " + std::strerror(errno);
}

// write() the whole buffer, retrying short writes and EINTR.
bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

}  // namespace

std::optional<label_map> parse_labels(std::string_view text, std::string& error) {
  label_map out;
  if (text.empty()) return out;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    const std::size_t comma = std::min(text.find(',', pos), text.size());
    const std::string_view item = text.substr(pos, comma - pos);
    const std::size_t eq = item.find('=');
    if (eq == std::string_view::npos) {
      error = "label '" + std::string(item) + "' is not key=value";
      return std::nullopt;
    }
    const std::string_view key = item.substr(0, eq), value = item.substr(eq + 1);
    if (!label_token(key) || !label_token(value)) {
      error = "label '" + std::string(item) +
              "': keys and values are 1-64 of [A-Za-z0-9_.-]";
      return std::nullopt;
    }
    if (!out.emplace(std::string(key), std::string(value)).second) {
      error = "label key '" + std::string(key) + "' given twice";
      return std::nullopt;
    }
    pos = comma + 1;
  }
  return out;
}

std::string format_labels(const label_map& labels) {
  std::string out;
  for (const auto& [k, v] : labels) {
    if (!out.empty()) out += ',';
    out += k + '=' + v;
  }
  return out;
}

bool valid_node_id(std::string_view id) noexcept { return label_token(id); }

std::string_view to_string(refusal r) noexcept {
  switch (r) {
#define SLUICE_X(name, text) \
  case refusal::name:        \
    return #name;
    SLUICE_AGENT_REFUSALS(SLUICE_X)
#undef SLUICE_X
    case refusal::count:
      break;
  }
  return "unknown";
}

std::string snapshot_check::error_text() const {
  return std::string(to_string(code)) + ": " + detail;
}

namespace {

// `text` cut at every `sep` (empty pieces kept).
std::vector<std::string_view> split(std::string_view text, char sep) {
  std::vector<std::string_view> out;
  std::size_t pos = 0;
  while (true) {
    const std::size_t at = text.find(sep, pos);
    if (at == std::string_view::npos) {
      out.push_back(text.substr(pos));
      return out;
    }
    out.push_back(text.substr(pos, at - pos));
    pos = at + 1;
  }
}

struct scope_term {
  std::string_view text;
  bool positive = true;
  std::vector<std::string_view> sites;  // empty: no site part
  std::vector<std::pair<std::string_view, std::string_view>> labels;

  [[nodiscard]] bool covers(const label_map& node) const {
    if (!sites.empty()) {
      const auto site = node.find("site");
      if (site == node.end() ||
          std::find(sites.begin(), sites.end(), site->second) == sites.end()) {
        return false;
      }
    }
    for (const auto& [key, value] : labels) {
      const auto it = node.find(std::string(key));
      if (it == node.end() || it->second != value) return false;
    }
    return true;
  }
};

// "" and `out` filled, or why `term` is malformed.
std::string parse_scope_term(std::string_view term, scope_term& out) {
  out.text = term;
  if (term.empty()) return "empty term";
  if (term[0] != '+' && term[0] != '!') {
    return "term '" + std::string(term) + "' does not start with + or !";
  }
  out.positive = term[0] == '+';
  if (term.size() == 1) return "term '" + std::string(term) + "' names no scope";
  const std::vector<std::string_view> parts = split(term.substr(1), '&');
  for (std::size_t i = 0; i < parts.size(); ++i) {
    const std::string_view part = parts[i];
    if (part.empty()) return "term '" + std::string(term) + "' has an empty part";
    if (part.rfind("site:", 0) == 0) {
      if (i != 0) return "term '" + std::string(term) + "': site: must be the first part";
      const std::string_view list = part.substr(5);
      if (list.empty()) return "term '" + std::string(term) + "': empty site list";
      for (const std::string_view site : split(list, '|')) {
        if (!label_token(site)) {
          return "term '" + std::string(term) + "': site '" + std::string(site) +
                 "' is not 1-64 of [A-Za-z0-9_.-]";
        }
        out.sites.push_back(site);
      }
      continue;
    }
    const std::size_t eq = part.find('=');
    if (eq == std::string_view::npos || !label_token(part.substr(0, eq)) ||
        !label_token(part.substr(eq + 1))) {
      return "term '" + std::string(term) + "': part '" + std::string(part) +
             "' is neither site:A|B nor key=value of [A-Za-z0-9_.-]";
    }
    out.labels.emplace_back(part.substr(0, eq), part.substr(eq + 1));
  }
  return {};
}

// "sluice-snapshot revision=N scope=S" -> N and S (unchecked); false when not of that shape.
bool split_scoped_comment(std::string_view comment, std::string_view& revision,
                          std::string_view& scope) {
  constexpr std::string_view head = "sluice-snapshot revision=";
  if (comment.rfind(head, 0) != 0) return false;
  comment.remove_prefix(head.size());
  const std::size_t space = comment.find(' ');
  if (space == std::string_view::npos) return false;
  revision = comment.substr(0, space);
  constexpr std::string_view scope_key = " scope=";
  if (comment.compare(space, scope_key.size(), scope_key) != 0) return false;
  scope = comment.substr(space + scope_key.size());
  return true;
}

}  // namespace

scope_result match_snapshot_scope(std::string_view scope, const label_map& labels) {
  scope_result r;
  if (scope == "all") {
    r.match = scope_match::in;
    return r;
  }
  if (scope.empty()) {
    r.detail = "empty scope";
    return r;
  }
  std::vector<scope_term> terms;
  for (const std::string_view text : split(scope, ',')) {
    scope_term t;
    if (std::string why = parse_scope_term(text, t); !why.empty()) {
      r.detail = std::move(why);
      return r;
    }
    terms.push_back(std::move(t));
  }
  for (const scope_term& t : terms) {
    if (t.covers(labels) != t.positive) {
      r.match = scope_match::out;
      r.detail = std::string(t.text);
      return r;
    }
  }
  r.match = scope_match::in;
  return r;
}

crypto::verify_result snapshot_verifier::verify(const crypto::public_key& key,
                                                std::string_view policy,
                                                std::string_view signature) {
  return crypto::verify(key, policy, signature);
}

std::optional<std::uint64_t> snapshot_verifier::policy_revision(const std::string& policy,
                                                                std::string& error) {
  std::istringstream in(policy);
  const match::policy_load_result loaded = match::load_policy(in, {});
  if (!loaded) {
    error = loaded.error.text();
    return std::nullopt;
  }
  return loaded.spec->revision;
}

audit::checkpoint_check snapshot_verifier::verify_checkpoint(const crypto::public_key& key,
                                                             const audit::checkpoint& c) {
  return audit::verify_checkpoint(key, c);
}

snapshot_verifier& real_verifier() {
  static snapshot_verifier v;
  return v;
}

namespace {

snapshot_check check_snapshot_json(const nlohmann::json& j, std::string_view node_id,
                                   const label_map& labels,
                                   const crypto::public_key& controller_key, std::uint64_t held,
                                   snapshot_verifier& verifier);

}  // namespace

snapshot_check check_snapshot(std::string_view body, std::string_view node_id,
                              const label_map& labels, const crypto::public_key& controller_key,
                              std::uint64_t held, snapshot_verifier& verifier) {
  const nlohmann::json j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return refuse(refusal::malformed_snapshot, "body is not a JSON object", 0);
  }
  snapshot_check c = check_snapshot_json(j, node_id, labels, controller_key, held, verifier);
  if (auto it = j.find("checkpoint"); it != j.end() && it->is_object()) c.checkpoint = it->dump();
  return c;
}

namespace {

snapshot_check check_snapshot_json(const nlohmann::json& j, std::string_view node_id,
                                   const label_map& labels,
                                   const crypto::public_key& controller_key, std::uint64_t held,
                                   snapshot_verifier& verifier) {
  std::uint64_t offered = 0;
  if (auto it = j.find("revision"); it != j.end() && it->is_number_unsigned()) {
    offered = it->get<std::uint64_t>();
  }
  for (const char* key : {"policy", "signature"}) {
    auto it = j.find(key);
    if (it == j.end() || !it->is_string()) {
      return refuse(refusal::malformed_snapshot, std::string("\"") + key + "\" missing or not a string",
                    offered);
    }
  }
  for (const char* key : {"node", "scope"}) {
    if (auto it = j.find(key); it != j.end() && !it->is_string()) {
      return refuse(refusal::malformed_snapshot, std::string("\"") + key + "\" is not a string",
                    offered);
    }
  }
  if (auto it = j.find("revision"); it == j.end() || !it->is_number_unsigned()) {
    return refuse(refusal::malformed_snapshot, "\"revision\" missing or not an unsigned integer",
                  offered);
  }
  snapshot s;
  s.node = std::string(node_id);
  s.revision = offered;
  s.policy = j["policy"].get<std::string>();
  s.signature = j["signature"].get<std::string>();

  if (auto it = j.find("node"); it != j.end() && it->get_ref<const std::string&>() != node_id) {
    return refuse(refusal::wrong_node,
                  "snapshot is for node '" + it->get<std::string>() + "', this is '" +
                      std::string(node_id) + "'",
                  offered);
  }
  const crypto::verify_result v = verifier.verify(controller_key, std::string_view(s.policy),
                                                  std::string_view(s.signature));
  if (!v) {
    return refuse(refusal::bad_signature,
                  std::string(crypto::to_string(v.outcome)) + " (" +
                      std::string(crypto::describe(v.outcome)) + ")",
                  offered);
  }
  const std::string revision_text = std::to_string(s.revision);
  std::string_view comment_revision, comment_scope;
  if (split_scoped_comment(v.trusted_comment, comment_revision, comment_scope)) {
    if (comment_revision != revision_text) {
      return refuse(refusal::wrong_trusted_comment,
                    "trusted comment '" + v.trusted_comment + "' names revision " +
                        std::string(comment_revision) + ", the snapshot is revision " +
                        revision_text,
                    offered);
    }
    const scope_result in = match_snapshot_scope(comment_scope, labels);
    if (in.match == scope_match::malformed) {
      return refuse(refusal::wrong_trusted_comment,
                    "trusted comment '" + v.trusted_comment + "': scope: " + in.detail, offered);
    }
    if (auto it = j.find("scope");
        it != j.end() && it->get_ref<const std::string&>() != comment_scope) {
      return refuse(refusal::wrong_trusted_comment,
                    "body scope '" + it->get<std::string>() + "' is not the signed scope '" +
                        std::string(comment_scope) + "'",
                    offered);
    }
    if (in.match == scope_match::out) {
      return refuse(refusal::wrong_scope,
                    "node '" + std::string(node_id) + "' (labels " + format_labels(labels) +
                        ") fails term '" + in.detail + "' of scope '" +
                        std::string(comment_scope) + "'",
                    offered);
    }
    s.scope = std::string(comment_scope);
  } else {
    const std::string legacy =
        "sluice-snapshot node=" + std::string(node_id) + " revision=" + revision_text;
    if (v.trusted_comment != legacy) {
      return refuse(refusal::wrong_trusted_comment,
                    "trusted comment is '" + v.trusted_comment + "', expected 'sluice-snapshot "
                        "revision=" + revision_text + " scope=S' or '" + legacy + "'",
                    offered);
    }
  }
  std::string parse_error;
  const std::optional<std::uint64_t> policy_revision =
      verifier.policy_revision(s.policy, parse_error);
  if (!policy_revision) {
    return refuse(refusal::invalid_policy, parse_error, offered);
  }
  if (*policy_revision != s.revision) {
    return refuse(refusal::revision_mismatch,
                  "policy says revision: " + std::to_string(*policy_revision) +
                      ", snapshot revision is " + revision_text,
                  offered);
  }
  if (s.revision <= held) {
    return refuse(refusal::stale_revision,
                  "revision " + revision_text + " is not above held revision " +
                      std::to_string(held),
                  offered);
  }
  snapshot_check ok;
  ok.offered = offered;
  ok.accepted = std::move(s);
  return ok;
}

}  // namespace

std::string snapshot_json(const snapshot& s) {
  nlohmann::json j;
  j["node"] = s.node;
  if (!s.scope.empty()) j["scope"] = s.scope;
  j["revision"] = s.revision;
  j["policy"] = s.policy;
  j["signature"] = s.signature;
  return j.dump() + "\n";
}

bool persist_snapshot(const std::filesystem::path& dir, const snapshot& s, std::string& error) {
  return persist_file(dir, snapshot_file_name, snapshot_json(s), error);
}

bool persist_file(const std::filesystem::path& dir, std::string_view name, std::string_view text,
                  std::string& error) {
  const std::filesystem::path final_path = dir / name;
  const std::filesystem::path temp_path = dir / (std::string(name) + ".tmp");
  const int fd = ::open(temp_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    error = errno_text("open " + temp_path.string());
    return false;
  }
  // The rename must not reach the disk before the data: fsync the file first, then the
  // directory so the rename itself survives a crash.
  const bool written = write_all(fd, text) && ::fsync(fd) == 0;
  if (!written) error = errno_text("write " + temp_path.string());
  if (::close(fd) != 0 && written) {
    error = errno_text("close " + temp_path.string());
    std::error_code ec;
    std::filesystem::remove(temp_path, ec);
    return false;
  }
  if (!written) {
    std::error_code ec;
    std::filesystem::remove(temp_path, ec);
    return false;
  }
  if (::rename(temp_path.c_str(), final_path.c_str()) != 0) {
    error = errno_text("rename to " + final_path.string());
    std::error_code ec;
    std::filesystem::remove(temp_path, ec);
    return false;
  }
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) {
    error = errno_text("open " + dir.string());
    return false;
  }
  const bool synced = ::fsync(dfd) == 0;
  if (!synced) error = errno_text("fsync " + dir.string());
  ::close(dfd);
  return synced;
}

std::string status_json(const status_report& r) {
  nlohmann::json j;
  j["revision"] = r.revision;
  j["offered"] = r.offered;
  j["ruleset_sha256"] = r.ruleset_sha256;
  j["result"] = r.ack ? "ack" : "nack";
  j["error"] = r.error;
  j["health"] = r.health;
  j["labels"] = nlohmann::json::object();
  for (const auto& [k, v] : r.labels) j["labels"][k] = v;
  if (!r.audit_checkpoint.empty())
    j["audit_checkpoint"] = nlohmann::json::parse(r.audit_checkpoint, nullptr, false);
  if (!r.audit_checkpoint_conflict.empty())
    j["audit_checkpoint_conflict"] = nlohmann::json::parse(r.audit_checkpoint_conflict, nullptr, false);
  return j.dump();
}

bool carriable(const status_report& r) noexcept {
  return r.ack && r.error.empty() && r.health == "ok" && r.audit_checkpoint_conflict.empty();
}

std::string status_header(const status_report& r, std::string_view checkpoint_header) {
  std::string out = "ack revision=" + std::to_string(r.revision) +
                    " offered=" + std::to_string(r.offered) + " ruleset=" + r.ruleset_sha256;
  if (!checkpoint_header.empty()) {
    out += " checkpoint=";
    out += checkpoint_header;
  }
  return out;
}

std::chrono::steady_clock::time_point system_clock::steady_now() {
  return std::chrono::steady_clock::now();
}
std::int64_t system_clock::unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string_view to_string(poll_outcome o) noexcept {
  switch (o) {
    case poll_outcome::applied: return "applied";
    case poll_outcome::refused: return "refused";
    case poll_outcome::not_modified: return "not_modified";
    case poll_outcome::fetch_failed: return "fetch_failed";
    case poll_outcome::report_failed: return "report_failed";
    case poll_outcome::stopped: return "stopped";
  }
  return "unknown";
}

agent::agent(agent_config config, transport& t, applier& a, clock& c)
    : config_(std::move(config)), transport_(t), applier_(a), clock_(c) {
  const applied_policy cur = applier_.current();
  state_.applied_revision = cur.revision;
  state_.ruleset_sha256 = cur.ruleset_sha256;
}

void agent::set_error(std::string text) {
  std::lock_guard lock(mutex_);
  state_.last_error = std::move(text);
}

bool agent::start() {
  if (started_) return false;
  started_ = true;
  load_checkpoints();
  next_status_ = clock_.steady_now();  // report at once: the controller learns labels, revision
  const std::filesystem::path path = config_.state_dir / snapshot_file_name;
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    std::lock_guard lock(mutex_);
    state_.startup = "no persisted snapshot";
    return false;
  }
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  if (!in) {
    std::lock_guard lock(mutex_);
    state_.startup = "persisted snapshot unreadable: " + path.string();
    state_.last_error = state_.startup;
    return false;
  }
  // The file is re-verified like an offer: the state dir is not trusted more than the network.
  const snapshot_check c = check_snapshot(text.str(), config_.node_id, config_.labels,
                                          config_.controller_key, 0, verifier());
  if (!c) {
    std::lock_guard lock(mutex_);
    state_.startup = "persisted snapshot refused: " + c.error_text();
    state_.last_error = state_.startup;
    return false;
  }
  const apply_result r = applier_.apply(c.accepted->policy, c.accepted->revision);
  const applied_policy cur = applier_.current();
  std::lock_guard lock(mutex_);
  state_.applied_revision = cur.revision;
  state_.ruleset_sha256 = cur.ruleset_sha256;
  if (!r.ok) {
    state_.startup = "persisted snapshot revision " + std::to_string(c.accepted->revision) +
                     " not applied: " + r.error;
    state_.last_error = state_.startup;
    return false;
  }
  held_ = c.accepted->revision;
  state_.held_revision = held_;
  ++state_.applied;
  state_.last_applied_at = clock_.unix_now();
  state_.startup = "persisted snapshot revision " + std::to_string(held_) + " in force";
  return true;
}

status_report agent::periodic_report() {
  status_report r;
  const applied_policy cur = applier_.current();
  r.revision = cur.revision;
  r.ruleset_sha256 = cur.ruleset_sha256;
  r.health = config_.health ? config_.health() : "ok";
  r.labels = config_.labels;
  r.audit_checkpoint = checkpoint_text_;
  r.audit_checkpoint_conflict = checkpoint_conflict_text_;
  return r;
}

void agent::load_checkpoints() {
  // Re-verified like the snapshot: the state dir is not trusted more than the network. A file
  // that does not verify is left where it is (it may be evidence) and not held.
  for (const bool conflict : {false, true}) {
    const std::filesystem::path path =
        config_.state_dir / (conflict ? checkpoint_conflict_file_name : checkpoint_file_name);
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) continue;
    std::ifstream in(path, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    std::string problem;
    std::optional<audit::checkpoint> c = audit::parse_checkpoint(text.str(), problem);
    if (c) {
      const audit::checkpoint_check v = verifier().verify_checkpoint(config_.controller_key, *c);
      if (!v) {
        problem = v.problem;
        c.reset();
      }
    }
    std::lock_guard lock(mutex_);
    if (!c) {
      state_.last_error = "persisted audit checkpoint " + path.string() + " refused: " + problem;
      continue;
    }
    if (conflict) {
      checkpoint_conflict_text_ = audit::checkpoint_json(*c);
      checkpoint_conflict_ = std::move(c);
      state_.checkpoint_conflict = true;
    } else {
      checkpoint_text_ = audit::checkpoint_json(*c);
      checkpoint_header_ = audit::checkpoint_header(*c);
      state_.checkpoint_count = c->count;
      state_.checkpoint_head = c->head;
      checkpoint_ = std::move(c);
    }
  }
}

void agent::receive_checkpoint(const audit::checkpoint& c) {
  // Most answers carry the checkpoint already held: no signature work for those, nor for one
  // already refused or lower than the held one (never backwards).
  if ((checkpoint_ && *checkpoint_ == c) || (checkpoint_conflict_ && *checkpoint_conflict_ == c) ||
      (checkpoint_refused_ && *checkpoint_refused_ == c))
    return;
  // Nothing held: whatever verifies is newer.
  const audit::checkpoint_order o =
      checkpoint_ ? audit::order(*checkpoint_, c) : audit::checkpoint_order::newer;
  if (o == audit::checkpoint_order::older || o == audit::checkpoint_order::same) return;
  if (o == audit::checkpoint_order::conflict && checkpoint_conflict_) return;  // the first is kept
  const audit::checkpoint_check v = verifier().verify_checkpoint(config_.controller_key, c);
  if (!v) {
    checkpoint_refused_ = c;
    std::lock_guard lock(mutex_);
    ++state_.checkpoints_refused;
    state_.last_error = "audit checkpoint refused: " + v.problem;
    return;
  }
  const bool conflict = o == audit::checkpoint_order::conflict;
  std::string text = audit::checkpoint_json(c);
  std::string persist_error;
  // Persisted before it is held or reported: what the controller hears is on disk.
  const bool persisted =
      persist_file(config_.state_dir, conflict ? checkpoint_conflict_file_name : checkpoint_file_name,
                   text + "\n", persist_error);
  std::lock_guard lock(mutex_);
  if (!persisted) {
    ++state_.persist_failures;
    state_.last_error = "audit checkpoint not persisted: " + persist_error;
  }
  if (conflict) {
    checkpoint_conflict_ = c;
    checkpoint_conflict_text_ = std::move(text);
    state_.checkpoint_conflict = true;
    state_.last_error = "audit checkpoint conflict: " + audit::describe(c) + " and held " +
                        audit::describe(*checkpoint_);
  } else {
    checkpoint_ = c;
    checkpoint_text_ = std::move(text);
    checkpoint_header_ = audit::checkpoint_header(c);
    state_.checkpoint_count = c.count;
    state_.checkpoint_head = c.head;
    ++state_.checkpoints_taken;
  }
}

snapshot_verifier& agent::verifier() const {
  return config_.verifier ? *config_.verifier : real_verifier();
}

std::optional<agent::due_report> agent::report_due() {
  if (!started_) start();
  std::optional<due_report> due;
  if (pending_) due = due_report{*pending_, true, {}};
  else if (clock_.steady_now() >= next_status_) due = due_report{periodic_report(), false, {}};
  if (!due || !controller_carries_ || !carriable(due->report)) return due;
  // The held checkpoint is the one to report, whenever the report was built.
  due->report.audit_checkpoint = checkpoint_text_;
  due->carry = status_header(due->report, checkpoint_header_);
  carried_ = due->report;
  pending_.reset();
  // The interval runs from now, not from the answer, so that poll_wait() does not cut this
  // poll short to send the report it carries.
  next_status_ = clock_.steady_now() + config_.status_interval;
  return due;
}

bool agent::report_sent(const status_report& report, const post_result& result) {
  std::lock_guard lock(mutex_);
  if (!result.ok) {
    ++state_.status_failures;
    state_.last_error = "status report: " + result.error;
    pending_ = report;
    return false;
  }
  ++state_.status_posts;
  if (report.ack && report.offered != 0) ++state_.acks;
  state_.last_contact = clock_.unix_now();
  pending_.reset();
  next_status_ = clock_.steady_now() + config_.status_interval;
  return true;
}

std::chrono::seconds agent::poll_wait() {
  // Wait no longer than the next periodic report is due, so reports keep their interval.
  const auto until_status = std::chrono::duration_cast<std::chrono::seconds>(
      next_status_ - clock_.steady_now());
  return std::clamp(until_status, std::chrono::seconds{1},
                    std::max(config_.wait, std::chrono::seconds{1}));
}

// Applies an accepted snapshot and fills `report` (ACK or NACK). True when it is in force.
bool agent::apply_snapshot(const snapshot& s, status_report& report) {
  const apply_result r = applier_.apply(s.policy, s.revision);
  const applied_policy cur = applier_.current();
  report.revision = cur.revision;
  report.ruleset_sha256 = cur.ruleset_sha256;
  if (!r.ok) {
    report.ack = false;
    report.error = std::string(to_string(refusal::apply_failed)) + ": " + r.error;
    std::lock_guard lock(mutex_);
    state_.applied_revision = cur.revision;
    state_.ruleset_sha256 = cur.ruleset_sha256;
    ++state_.nacks;
    state_.last_error = report.error;
    return false;
  }
  held_ = s.revision;
  report.ack = true;
  report.ruleset_sha256 = r.ruleset_sha256;
  std::string persist_error;
  const bool persisted = persist_snapshot(config_.state_dir, s, persist_error);
  if (!persisted) {
    // In force but not on disk: ACK (the controller must know what is enforced) and say it in
    // the health, since a restart would fall back to the previous persisted snapshot.
    report.health = "snapshot not persisted: " + persist_error;
  }
  std::lock_guard lock(mutex_);
  state_.held_revision = held_;
  state_.applied_revision = cur.revision;
  state_.ruleset_sha256 = r.ruleset_sha256;
  ++state_.applied;
  state_.last_applied_at = clock_.unix_now();
  if (!persisted) {
    ++state_.persist_failures;
    state_.last_error = report.health;
  }
  return true;
}

agent::fetch_handling agent::handle_fetch(const fetch_result& f) {
  fetch_handling out;
  if (carried_) {
    status_report r = std::move(*carried_);
    carried_.reset();
    if (f.status == fetch_status::failed) {
      (void)report_sent(r, {false, f.error});  // owed: POSTed before the next poll
    } else if (f.status_carry) {
      (void)report_sent(r, {true, {}});
      out.taken = std::move(r);
    } else {
      pending_ = std::move(r);  // another controller answered (failover mid-upgrade): POST it
    }
  }
  controller_carries_ = f.status != fetch_status::failed && f.status_carry;
  if (f.status == fetch_status::failed) {
    std::lock_guard lock(mutex_);
    ++state_.fetch_failures;
    state_.last_error = "fetch: " + f.error;
    state_.controller = f.controller;
    out.outcome = poll_outcome::fetch_failed;
    return out;
  }
  {
    std::lock_guard lock(mutex_);
    ++state_.fetches;
    state_.last_contact = clock_.unix_now();
    state_.controller = f.controller;
    if (f.status == fetch_status::not_modified) ++state_.not_modified;
  }
  if (f.status == fetch_status::not_modified) {
    if (!f.checkpoint.empty()) {
      std::string error;
      if (const auto cp = audit::parse_checkpoint_header(f.checkpoint, error)) receive_checkpoint(*cp);
    }
    out.outcome = poll_outcome::not_modified;
    return out;
  }
  const snapshot_check c = check_snapshot(f.body, config_.node_id, config_.labels,
                                          config_.controller_key, held_, verifier());
  if (!c.checkpoint.empty()) {
    std::string error;
    if (const auto cp = audit::parse_checkpoint(c.checkpoint, error)) receive_checkpoint(*cp);
  }
  status_report report = periodic_report();  // with the checkpoint just taken
  report.offered = c.offered;
  bool in_force = false;
  if (!c) {
    report.ack = false;
    report.error = c.error_text();
    std::lock_guard lock(mutex_);
    ++state_.nacks;
    state_.last_error = report.error;
  } else {
    in_force = apply_snapshot(*c.accepted, report);
  }
  out.outcome = in_force ? poll_outcome::applied : poll_outcome::refused;
  if (controller_carries_ && carriable(report)) {
    pending_ = std::move(report);  // on the next poll (report_due)
  } else {
    out.report = std::move(report);
  }
  return out;
}

std::chrono::milliseconds agent::backoff_after(poll_outcome o) {
  if (o == poll_outcome::fetch_failed || o == poll_outcome::refused ||
      o == poll_outcome::report_failed) {
    backoff_ = backoff_.count() == 0 ? config_.backoff_initial
                                     : std::min(config_.backoff_max, backoff_ * 2);
  } else {
    backoff_ = std::chrono::milliseconds{0};
  }
  return backoff_;
}

poll_outcome agent::run_once() {
  if (!started_) start();
  if (stopping()) return poll_outcome::stopped;
  const std::optional<due_report> due = report_due();
  if (due && due->carry.empty()) {
    const bool sent = report_sent(due->report, transport_.post_status(due->report));
    if (!sent && due->retry) return stopping() ? poll_outcome::stopped : poll_outcome::report_failed;
  }
  if (stopping()) return poll_outcome::stopped;
  const fetch_result f =
      transport_.fetch(held_, poll_wait(), due ? std::string_view(due->carry) : std::string_view());
  if (stopping()) return poll_outcome::stopped;
  const fetch_handling h = handle_fetch(f);
  if (h.report) (void)report_sent(*h.report, transport_.post_status(*h.report));
  return h.outcome;
}

void agent::sleep_for(std::chrono::milliseconds d) {
  std::unique_lock lock(mutex_);
  wake_.wait_for(lock, d, [&] { return stop_; });
}

void agent::run() {
  start();
  while (!stopping()) {
    const poll_outcome o = run_once();
    if (o == poll_outcome::stopped) break;
    const std::chrono::milliseconds wait = backoff_after(o);
    if (wait.count() > 0) sleep_for(wait);
  }
}

void agent::stop() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  transport_.interrupt();
}

bool agent::stopping() const {
  std::lock_guard lock(mutex_);
  return stop_;
}

agent_state agent::state() const {
  std::lock_guard lock(mutex_);
  return state_;
}

}  // namespace sluice::control::agent
