// The controller's audit checkpoints (issue 14; control/README.md, "Audit checkpoints"):
// signing the head when it moved, handing the latest out, checking the ones nodes report.
// The bodies that carry it are built in controller.cpp (served_locked).
#include "control/controller/controller.hpp"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>

#include <nlohmann/json.hpp>

namespace sluice::control::controller {

void controller::refresh_checkpoint_locked(bool soon) {
  // Single replica: the head moves only by this replica's commits. Replicas: by anyone's, and
  // the store revision (read by refresh_locked) says whether anything moved at all; it moves
  // with every replica's node status flush, so that alone is looked at once a second (reading
  // the head is a round trip to etcd under the controller's lock), unless new offers go out.
  const std::int64_t now_ms = clk_.now_ms();
  const bool others = cfg_.replicated && synced_store_rev_ != checkpoint_store_rev_ &&
                      (soon || now_ms - checkpoint_looked_ms_ >= 1000);
  if (checkpoint_ && !audit_appended_ && !others) return;
  checkpoint_looked_ms_ = now_ms;
  std::optional<audit::audit_record> head;
  try {
    head = store_.audit_head();
  } catch (const store::store_error&) {
    return;  // the next tick looks again
  }
  audit_appended_ = false;
  checkpoint_store_rev_ = synced_store_rev_;
  const std::uint64_t count = head ? head->seq : 0;
  const std::string& hash = head ? head->hash : audit::genesis_hash();
  if (checkpoint_ && checkpoint_->count == count && checkpoint_->head == hash) return;
  auto cp = audit::make_checkpoint(cfg_.signing_key, count, hash, clk_.now_ms(),
                                   audit::checkpoint_replica_name(cfg_.replica));
  if (!cp) {
    audit_appended_ = true;  // try again next time
    return;
  }
  const std::string text = audit::checkpoint_json(*cp);
  checkpoint_member_ = ",\"checkpoint\":" + text + "}";
  checkpoint_header_ = std::make_shared<const std::string>(audit::checkpoint_header(*cp));
  checkpoint_ = std::move(*cp);
  ++checkpoint_gen_;
  checkpoints_signed_->Increment();
  checkpoint_records_->Set(static_cast<double>(count));
  // Nodes report back what we signed: known good, no verification needed. It arrives as the
  // API re-serialises a JSON object (keys sorted), and in our own form.
  const std::string as_received = nlohmann::json::parse(text).dump();
  std::lock_guard lock(verified_mutex_);
  if (verified_.size() >= 1024) verified_.clear();
  verified_[as_received] = text;
  verified_[text] = text;
}

std::optional<audit::checkpoint> controller::audit_checkpoint() {
  std::lock_guard lock(mutex_);
  return checkpoint_;
}

std::shared_ptr<const std::string> controller::audit_checkpoint_header() {
  std::lock_guard lock(mutex_);
  return checkpoint_header_;
}

std::string controller::checked_checkpoint(const std::string& text, bool header_form) {
  if (text.empty()) return {};
  // By the exact text received: a fleet sends the few checkpoints this controller signed, so
  // most reports cost one lookup. A valid signature with a field changed is another text,
  // checked (and refused) on its own. The form is part of the key: a text refused in one form
  // must not refuse the same bytes sent in the other.
  const std::string key = (header_form ? "h" : "j") + text;
  {
    std::lock_guard lock(verified_mutex_);
    if (const auto it = verified_.find(key); it != verified_.end()) {
      if (it->second.empty()) checkpoints_refused_->Increment();
      return it->second;
    }
  }
  std::string error;
  const auto cp = header_form ? audit::parse_checkpoint_header(text, error)
                              : audit::parse_checkpoint(text, error);
  std::string result;
  if (cp && audit::verify_checkpoint(public_key_, *cp)) result = audit::checkpoint_json(*cp);
  if (result.empty()) checkpoints_refused_->Increment();
  std::lock_guard lock(verified_mutex_);
  if (verified_.size() >= 1024) verified_.clear();  // bounded whatever nodes send
  verified_.emplace(key, result);
  return result;
}

}  // namespace sluice::control::controller
