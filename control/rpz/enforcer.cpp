#include "control/rpz/enforcer.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>

namespace sluice::control::rpz {

namespace {

double since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

std::string errno_text(const std::string& what) { return what + ": " + std::strerror(errno); }

bool write_all(int fd, std::string_view text) {
  while (!text.empty()) {
    const ssize_t n = ::write(fd, text.data(), text.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    text.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

std::optional<std::string> read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

enforcer::enforcer(enforcer_config config, command_runner& runner, agent::clock& clock,
                   enforcer_options options)
    : config_(std::move(config)),
      runner_(runner),
      clock_(clock),
      options_(std::move(options)),
      policy_(empty_policy()) {
  on_disk_ = read_text(config_.zone_file);
  if (on_disk_) {
    if (const std::optional<std::uint32_t> s = read_serial(*on_disk_)) serial_ = *s;
    for (std::size_t at = on_disk_->find(" CNAME "); at != std::string::npos;
         at = on_disk_->find(" CNAME ", at + 1)) {
      ++names_on_disk_;
    }
  }
}

void enforcer::log(const std::string& line) const {
  if (options_.log) options_.log(line);
}

bool enforcer::write_file(const std::string& text, install_report& rep) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::filesystem::path& path = config_.zone_file;
  const std::filesystem::path tmp = path.string() + ".tmp";
  const auto fail = [&](const std::string& stage, const std::string& why) {
    rep.error = stage + ": " + why;
    if (options_.metrics) options_.metrics->failed(stage.c_str());
    ::unlink(tmp.c_str());
    return false;
  };
  // 0644: the resolver runs as a user of its own and only reads the file.
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return fail("write", errno_text("open " + tmp.string()));
  const bool written = write_all(fd, text) && ::fsync(fd) == 0;
  const std::string why = written ? "" : errno_text("write " + tmp.string());
  ::close(fd);
  if (!written) return fail("write", why);
  if (!config_.check.empty()) {
    const command_result c =
        runner_.run(substitute(config_.check, config_.zone.zone, tmp.string()));
    if (!c.ok) return fail("check", "the check command refused the zone: " + c.describe());
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0)
    return fail("write", errno_text("rename to " + path.string()));
  // The rename reaches the disk with the directory.
  const std::filesystem::path dir = path.has_parent_path() ? path.parent_path() : ".";
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
  on_disk_ = text;
  names_on_disk_ = rep.names;
  rep.bytes = text.size();
  rep.write_seconds = since(t0);
  return true;
}

command_result enforcer::reload_locked() {
  command_result r =
      runner_.run(substitute(config_.reload, config_.zone.zone, config_.zone_file.string()));
  reload_pending_ = !r.ok;
  if (options_.metrics) {
    options_.metrics->reloaded(r.ok, r.seconds);
    if (!r.ok) options_.metrics->failed("reload");
  }
  return r;
}

// Renders `p` at now (or takes `text` as is when not empty), writes it and has it reloaded.
install_report enforcer::install_locked(const rpz_policy& p, const std::string& text) {
  install_report rep;
  const std::int64_t now = clock_.unix_now();
  const auto t0 = std::chrono::steady_clock::now();
  serial_ = next_serial(serial_, now);  // used or not, never again
  rep.serial = serial_;
  std::string rendered;
  if (text.empty()) {
    const std::vector<zone_entry> entries = entries_at(p, now);
    rep.names = entries.size();
    rendered = render_zone(config_.zone, entries, serial_, {p.revision, p.ruleset_sha256});
  } else {
    rendered = with_serial(text, serial_).value_or(text);
    rep.names = names_on_disk_;
  }
  rep.render_seconds = since(t0);
  if (!write_file(rendered, rep)) return rep;
  if (options_.metrics) options_.metrics->zone_written(rep.names, rep.serial, rep.bytes);
  const command_result r = reload_locked();
  rep.reload_seconds = r.seconds;
  if (!r.ok) {
    rep.error = "reload: the resolver did not take zone " + config_.zone.zone + " (serial " +
                std::to_string(serial_) + "): " + r.describe();
    return rep;
  }
  rep.ok = true;
  return rep;
}

agent::apply_result enforcer::apply(const std::string& policy_text, std::uint64_t revision) {
  agent::apply_result out;
  std::string error;
  const auto t0 = std::chrono::steady_clock::now();
  std::optional<rpz_policy> parsed = parse_policy(policy_text, config_.zone, error);
  const double parse_seconds = since(t0);
  std::lock_guard lock(mutex_);
  out.ruleset_sha256 = policy_.ruleset_sha256;
  const std::string rev = "revision " + std::to_string(revision);
  if (!parsed) {
    out.error = "invalid policy: " + error;
    log(rev + " refused, previous zone stays: " + out.error);
    return out;
  }
  parsed->revision = revision;
  const std::optional<std::string> previous = on_disk_;
  const std::size_t previous_names = names_on_disk_;
  const install_report rep = install_locked(*parsed, {});
  if (!rep.ok) {
    out.error = "rpz " + rep.error;
    log(rev + " refused, previous zone stays: " + out.error);
    if (on_disk_ != previous) {
      // The new file is in place: put the previous zone back and have it reloaded.
      names_on_disk_ = previous_names;
      const install_report back =
          previous ? install_locked(policy_, *previous) : install_locked(empty_policy(), {});
      log(back.ok ? "previous zone restored (serial " + std::to_string(back.serial) + ")"
                  : "restoring the previous zone failed: " + back.error);
      health_ = back.ok ? "ok" : "rpz " + back.error;
    }
    return out;
  }
  policy_ = std::move(*parsed);
  next_change_ = next_change(policy_, clock_.unix_now());
  health_ = "ok";
  out.ok = true;
  out.ruleset_sha256 = policy_.ruleset_sha256;
  if (options_.metrics) options_.metrics->applied(revision);
  log(rev + " in force (sha256 " + policy_.ruleset_sha256 + "): " + std::to_string(rep.names) +
      " names, serial " + std::to_string(rep.serial) + ", " + std::to_string(rep.bytes) +
      " bytes; parse " + std::to_string(parse_seconds) + " s, render " +
      std::to_string(rep.render_seconds) + " s, write " + std::to_string(rep.write_seconds) +
      " s, reload " + std::to_string(rep.reload_seconds) + " s");
  return out;
}

agent::applied_policy enforcer::current() const {
  std::lock_guard lock(mutex_);
  return {policy_.revision, policy_.ruleset_sha256};
}

install_report enforcer::install_current() {
  std::lock_guard lock(mutex_);
  install_report rep = install_locked(policy_, {});
  next_change_ = next_change(policy_, clock_.unix_now());
  health_ = rep.ok ? "ok" : "rpz " + rep.error;
  return rep;
}

std::optional<install_report> enforcer::tick() {
  std::lock_guard lock(mutex_);
  const std::int64_t now = clock_.unix_now();
  if (!next_change_ || now < *next_change_) return std::nullopt;
  install_report rep = install_locked(policy_, {});
  // A file that could not be written is tried again in a second; a failed reload is retry()'s.
  next_change_ = rep.ok || reload_pending_ ? next_change(policy_, now) : now + 1;
  health_ = rep.ok ? "ok" : "rpz " + rep.error;
  return rep;
}

std::optional<command_result> enforcer::retry() {
  std::lock_guard lock(mutex_);
  if (!reload_pending_) return std::nullopt;
  command_result r = reload_locked();
  health_ = r.ok ? "ok" : "rpz reload: " + r.describe();
  return r;
}

std::string enforcer::health() const {
  std::lock_guard lock(mutex_);
  return health_;
}

std::uint32_t enforcer::serial() const {
  std::lock_guard lock(mutex_);
  return serial_;
}

bool enforcer::reload_pending() const {
  std::lock_guard lock(mutex_);
  return reload_pending_;
}

}  // namespace sluice::control::rpz
