#include "dataplane/engine/snapshot_applier.hpp"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <sstream>
#include <thread>
#include <utility>

namespace sluice::engine {
namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::string seconds_text(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", s);
  return buf;
}

}  // namespace

control::crypto::verify_result snapshot_reader::verify(const control::crypto::public_key& key,
                                                       std::string_view policy,
                                                       std::string_view signature) {
  const auto start = std::chrono::steady_clock::now();
  auto r = snapshot_verifier::verify(key, policy, signature);
  verify_seconds_ = seconds_since(start);
  return r;
}

std::optional<std::uint64_t> snapshot_reader::policy_revision(const std::string& policy,
                                                              std::string& error) {
  if (!lowered_ && std::this_thread::get_id() != creator_) {
    // The agent's thread reads and compiles snapshots (a minute of CPU for a national
    // blocklist) on cores the workers may share; let them win. Still above the impact
    // thread (nice 10): a late impact report harms no one. Not the thread that built us: it
    // checks the persisted snapshot at start-up and then runs the control loop.
    (void)setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), 5);
    lowered_ = true;
  }
  spec_.reset();
  text_.clear();
  const auto start = std::chrono::steady_clock::now();
  std::istringstream in(policy);
  match::policy_load_result loaded = match::load_policy(in, {});
  parse_seconds_ = seconds_since(start);
  if (!loaded) {
    error = loaded.error.text();
    return std::nullopt;
  }
  const std::uint64_t revision = loaded.spec->revision;
  text_ = policy;
  spec_ = std::move(*loaded.spec);
  return revision;
}

std::optional<match::policy_spec> snapshot_reader::take(const std::string& text,
                                                        double& parse_seconds) {
  std::optional<match::policy_spec> out;
  // The very bytes the check read, or nothing: the applied policy must be the signed text's.
  if (spec_ && text_ == text) {
    out = std::move(spec_);
    parse_seconds = parse_seconds_;
  }
  spec_.reset();
  text_.clear();
  text_.shrink_to_fit();
  return out;
}

control::agent::apply_result holder_applier::apply(const std::string& text,
                                                   std::uint64_t revision) {
  const std::string origin = "controller revision " + std::to_string(revision);
  double parse_seconds = 0;
  std::optional<match::policy_spec> spec = reader_.take(text, parse_seconds);
  const bool parsed_once = spec.has_value();
  const load_result r = parsed_once ? holder_.load_spec(std::move(*spec), origin, parse_seconds)
                                    : holder_.load_text(text, origin);
  const policy_status st = holder_.status();
  snapshot_figures f;
  f.revision = revision;
  f.bytes = text.size();
  f.verify_seconds = reader_.last_verify_seconds();
  f.parsed_once = parsed_once;
  f.ok = r.ok;
  f.at = static_cast<std::int64_t>(std::time(nullptr));
  if (r.ok) {
    f.parse_seconds = st.parse_seconds;
    f.compile_seconds = st.compile_seconds;
    log_("controller: policy revision " + std::to_string(r.revision) + " in force (sha256 " +
         r.sha256 + "; " + std::to_string(text.size()) + " bytes, signature " +
         seconds_text(f.verify_seconds) + " s, parse " + seconds_text(f.parse_seconds) +
         " s, compile " + seconds_text(f.compile_seconds) + " s)");
  } else {
    f.parse_seconds = parse_seconds;
    log_("controller: revision " + std::to_string(revision) +
         " refused, previous stays in force: " + r.error);
  }
  {
    std::lock_guard lock(mutex_);
    last_ = f;
  }
  return {r.ok, r.sha256, r.error};
}

control::agent::applied_policy holder_applier::current() const {
  const policy_status s = holder_.status();
  return {s.revision, s.sha256};
}

snapshot_figures holder_applier::last_snapshot() const {
  std::lock_guard lock(mutex_);
  return last_;
}

}  // namespace sluice::engine
