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

snapshot_check check_snapshot(std::string_view body, std::string_view node_id,
                              const crypto::public_key& controller_key, std::uint64_t held) {
  const nlohmann::json j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return refuse(refusal::malformed_snapshot, "body is not a JSON object", 0);
  }
  std::uint64_t offered = 0;
  if (auto it = j.find("revision"); it != j.end() && it->is_number_unsigned()) {
    offered = it->get<std::uint64_t>();
  }
  for (const char* key : {"node", "policy", "signature"}) {
    auto it = j.find(key);
    if (it == j.end() || !it->is_string()) {
      return refuse(refusal::malformed_snapshot, std::string("\"") + key + "\" missing or not a string",
                    offered);
    }
  }
  if (auto it = j.find("revision"); it == j.end() || !it->is_number_unsigned()) {
    return refuse(refusal::malformed_snapshot, "\"revision\" missing or not an unsigned integer",
                  offered);
  }
  snapshot s;
  s.node = j["node"].get<std::string>();
  s.revision = offered;
  s.policy = j["policy"].get<std::string>();
  s.signature = j["signature"].get<std::string>();

  if (s.node != node_id) {
    return refuse(refusal::wrong_node,
                  "snapshot is for node '" + s.node + "', this is '" + std::string(node_id) + "'",
                  offered);
  }
  const crypto::verify_result v = crypto::verify(controller_key, std::string_view(s.policy),
                                                 std::string_view(s.signature));
  if (!v) {
    return refuse(refusal::bad_signature,
                  std::string(crypto::to_string(v.outcome)) + " (" +
                      std::string(crypto::describe(v.outcome)) + ")",
                  offered);
  }
  const std::string expected = "sluice-snapshot node=" + std::string(node_id) +
                               " revision=" + std::to_string(s.revision);
  if (v.trusted_comment != expected) {
    return refuse(refusal::wrong_trusted_comment,
                  "trusted comment is '" + v.trusted_comment + "', expected '" + expected + "'",
                  offered);
  }
  std::istringstream in(s.policy);
  const match::policy_load_result loaded = match::load_policy(in, {});
  if (!loaded) {
    return refuse(refusal::invalid_policy, loaded.error.text(), offered);
  }
  if (loaded.spec->revision != s.revision) {
    return refuse(refusal::revision_mismatch,
                  "policy says revision: " + std::to_string(loaded.spec->revision) +
                      ", snapshot revision is " + std::to_string(s.revision),
                  offered);
  }
  if (s.revision <= held) {
    return refuse(refusal::stale_revision,
                  "revision " + std::to_string(s.revision) + " is not above held revision " +
                      std::to_string(held),
                  offered);
  }
  snapshot_check ok;
  ok.offered = offered;
  ok.accepted = std::move(s);
  return ok;
}

std::string snapshot_json(const snapshot& s) {
  nlohmann::json j;
  j["node"] = s.node;
  j["revision"] = s.revision;
  j["policy"] = s.policy;
  j["signature"] = s.signature;
  return j.dump() + "\n";
}

bool persist_snapshot(const std::filesystem::path& dir, const snapshot& s, std::string& error) {
  const std::filesystem::path final_path = dir / snapshot_file_name;
  const std::filesystem::path temp_path = dir / (std::string(snapshot_file_name) + ".tmp");
  const std::string text = snapshot_json(s);
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
  return j.dump();
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
  const snapshot_check c = check_snapshot(text.str(), config_.node_id, config_.controller_key, 0);
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
  return r;
}

bool agent::send(const status_report& report) {
  const post_result p = transport_.post_status(report);
  std::lock_guard lock(mutex_);
  if (!p.ok) {
    ++state_.status_failures;
    state_.last_error = "status report: " + p.error;
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

poll_outcome agent::run_once() {
  if (!started_) start();
  if (stopping()) return poll_outcome::stopped;
  if (pending_) {
    const status_report again = *pending_;
    if (!send(again)) return stopping() ? poll_outcome::stopped : poll_outcome::report_failed;
  } else if (clock_.steady_now() >= next_status_) {
    (void)send(periodic_report());
  }
  if (stopping()) return poll_outcome::stopped;

  // Wait no longer than the next periodic report is due, so reports keep their interval.
  const auto until_status = std::chrono::duration_cast<std::chrono::seconds>(
      next_status_ - clock_.steady_now());
  const std::chrono::seconds wait =
      std::clamp(until_status, std::chrono::seconds{1}, std::max(config_.wait, std::chrono::seconds{1}));
  const fetch_result f = transport_.fetch(held_, wait);
  if (stopping()) return poll_outcome::stopped;
  if (f.status == fetch_status::failed) {
    std::lock_guard lock(mutex_);
    ++state_.fetch_failures;
    state_.last_error = "fetch: " + f.error;
    state_.controller = f.controller;
    return poll_outcome::fetch_failed;
  }
  {
    std::lock_guard lock(mutex_);
    ++state_.fetches;
    state_.last_contact = clock_.unix_now();
    state_.controller = f.controller;
    if (f.status == fetch_status::not_modified) ++state_.not_modified;
  }
  if (f.status == fetch_status::not_modified) return poll_outcome::not_modified;

  status_report report = periodic_report();
  const snapshot_check c =
      check_snapshot(f.body, config_.node_id, config_.controller_key, held_);
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
  (void)send(report);
  return in_force ? poll_outcome::applied : poll_outcome::refused;
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
    if (o == poll_outcome::fetch_failed || o == poll_outcome::refused ||
        o == poll_outcome::report_failed) {
      backoff_ = backoff_.count() == 0
                     ? config_.backoff_initial
                     : std::min(config_.backoff_max, backoff_ * 2);
      sleep_for(backoff_);
    } else {
      backoff_ = std::chrono::milliseconds{0};
    }
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
