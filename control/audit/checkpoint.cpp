#include "control/audit/checkpoint.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <map>
#include <nlohmann/json.hpp>

namespace sluice::control::audit {

namespace {

constexpr std::string_view text_tag = "sluice-audit-checkpoint";

bool is_hex_hash(std::string_view s) noexcept {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

bool printable(std::string_view s) noexcept {
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x20 && c <= 0x7e; });
}

bool valid_replica(std::string_view r) noexcept {
  return !r.empty() && r.size() <= max_replica_bytes && printable(r);
}

std::string short_hash(std::string_view h) { return std::string(h.substr(0, 12)) + "..."; }

std::string records_text(std::uint64_t first, std::uint64_t last) {
  if (first == last) return "record " + std::to_string(first);
  return "records " + std::to_string(first) + "-" + std::to_string(last);
}

std::string b64_encode(std::string_view in) {
  std::string out(4 * ((in.size() + 2) / 3), '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(in.data()),
                                static_cast<int>(in.size()));
  out.resize(n < 0 ? 0 : static_cast<std::size_t>(n));
  return out;
}

std::optional<std::string> b64_decode(std::string_view in) {
  if (in.empty() || in.size() % 4 != 0) return std::nullopt;
  std::size_t pad = 0;
  for (std::size_t i = 0; i < in.size(); ++i) {
    const char c = in[i];
    const bool alnum = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    if (c == '=') {
      if (i + 2 < in.size()) return std::nullopt;  // only the last two may be padding
      ++pad;
    } else if (pad != 0 || !(alnum || c == '+' || c == '/')) {
      return std::nullopt;
    }
  }
  std::string out(3 * (in.size() / 4), '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(in.data()),
                                static_cast<int>(in.size()));
  if (n < 0 || static_cast<std::size_t>(n) < pad) return std::nullopt;
  out.resize(static_cast<std::size_t>(n) - pad);
  return out;
}

std::string utc_ms(std::int64_t ms) {
  const std::time_t s = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  if (gmtime_r(&s, &tm) == nullptr) return std::to_string(ms);
  char buf[40];
  const std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char frac[8];
  std::snprintf(frac, sizeof frac, ".%03dZ", static_cast<int>(((ms % 1000) + 1000) % 1000));
  return std::string(buf, n) + frac;
}

}  // namespace

std::string checkpoint_text(std::uint64_t count, std::string_view head, std::int64_t at,
                            std::string_view replica) {
  std::string t(text_tag);
  t += " count=" + std::to_string(count);
  t += " head=";
  t += head;
  t += " at=" + std::to_string(at);
  t += " replica=";
  t += replica;
  return t;
}

std::string checkpoint_text(const checkpoint& c) {
  return checkpoint_text(c.count, c.head, c.at, c.replica);
}

std::string checkpoint_replica_name(std::string_view replica) {
  std::string out(replica.substr(0, max_replica_bytes));
  for (char& c : out)
    if (c < 0x20 || c > 0x7e) c = '_';
  return out.empty() ? std::string("controller") : out;
}

std::optional<checkpoint> make_checkpoint(const crypto::secret_key& key, std::uint64_t count,
                                          std::string_view head, std::int64_t at,
                                          std::string_view replica) {
  if (!is_hex_hash(head) || !valid_replica(replica)) return std::nullopt;
  checkpoint c;
  c.count = count;
  c.head = std::string(head);
  c.at = at;
  c.replica = std::string(replica);
  const std::string text = checkpoint_text(c);
  auto sig = crypto::sign(key, text, text, "sluice-controld audit checkpoint");
  if (!sig) return std::nullopt;
  c.signature = std::move(*sig);
  return c;
}

std::string checkpoint_json(const checkpoint& c) {
  nlohmann::ordered_json j;
  j["count"] = c.count;
  j["head"] = c.head;
  j["at"] = c.at;
  j["replica"] = c.replica;
  j["signature"] = c.signature;
  // Fields are ASCII when made here; a parsed checkpoint was checked printable, the signature
  // text is minisign's (ASCII). replace keeps dump() from throwing on anything else.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::optional<checkpoint> parse_checkpoint(std::string_view text, std::string& error) {
  if (text.size() > max_checkpoint_bytes) {
    error = "checkpoint is " + std::to_string(text.size()) + " bytes, more than " +
            std::to_string(max_checkpoint_bytes);
    return std::nullopt;
  }
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    error = "checkpoint is not a JSON object";
    return std::nullopt;
  }
  auto field = [&](const char* name) -> const nlohmann::json* {
    const auto it = j.find(name);
    if (it == j.end()) {
      error = std::string("checkpoint has no \"") + name + "\"";
      return nullptr;
    }
    return &*it;
  };
  const nlohmann::json* count = field("count");
  const nlohmann::json* head = field("head");
  const nlohmann::json* at = field("at");
  const nlohmann::json* replica = field("replica");
  const nlohmann::json* signature = field("signature");
  if (!count || !head || !at || !replica || !signature) return std::nullopt;
  if (!count->is_number_unsigned()) {
    error = "checkpoint \"count\" is not a non-negative integer";
    return std::nullopt;
  }
  if (!at->is_number_integer()) {
    error = "checkpoint \"at\" is not an integer";
    return std::nullopt;
  }
  if (!head->is_string() || !is_hex_hash(head->get_ref<const std::string&>())) {
    error = "checkpoint \"head\" is not 64 lowercase hex digits";
    return std::nullopt;
  }
  if (!replica->is_string() || !valid_replica(replica->get_ref<const std::string&>())) {
    error = "checkpoint \"replica\" is not 1-" + std::to_string(max_replica_bytes) +
            " printable ASCII characters";
    return std::nullopt;
  }
  if (!signature->is_string()) {
    error = "checkpoint \"signature\" is not text";
    return std::nullopt;
  }
  checkpoint c;
  c.count = count->get<std::uint64_t>();
  c.at = at->get<std::int64_t>();
  c.head = head->get<std::string>();
  c.replica = replica->get<std::string>();
  c.signature = signature->get<std::string>();
  if (c.count == 0 && c.head != genesis_hash()) {
    error = "checkpoint of 0 records must name the genesis hash";
    return std::nullopt;
  }
  return c;
}

std::string checkpoint_header(const checkpoint& c) { return b64_encode(checkpoint_json(c)); }

std::optional<checkpoint> parse_checkpoint_header(std::string_view value, std::string& error) {
  if (value.size() > 4 * ((max_checkpoint_bytes + 2) / 3)) {
    error = "checkpoint header is too long";
    return std::nullopt;
  }
  const auto text = b64_decode(value);
  if (!text) {
    error = "checkpoint header is not base64";
    return std::nullopt;
  }
  return parse_checkpoint(*text, error);
}

checkpoint_check verify_checkpoint(const crypto::public_key& key, const checkpoint& c) {
  checkpoint_check out;
  if (!is_hex_hash(c.head) || !valid_replica(c.replica)) {
    out.problem = "malformed checkpoint";
    return out;
  }
  const std::string text = checkpoint_text(c);
  const crypto::verify_result v = crypto::verify(key, text, c.signature);
  if (!v) {
    out.problem = std::string(crypto::describe(v.outcome));
    return out;
  }
  if (v.trusted_comment != text) {
    out.problem = "trusted comment '" + v.trusted_comment + "' is not '" + text + "'";
    return out;
  }
  out.ok = true;
  return out;
}

checkpoint_order order(const checkpoint& held, const checkpoint& received) noexcept {
  if (received.count > held.count) return checkpoint_order::newer;
  if (received.count < held.count) return checkpoint_order::older;
  return received.head == held.head ? checkpoint_order::same : checkpoint_order::conflict;
}

std::string describe(const checkpoint& c) {
  return "checkpoint count=" + std::to_string(c.count) + " head=" + short_hash(c.head) + " at " +
         utc_ms(c.at) + " by " + c.replica;
}

log_comparison compare_with_log(const checkpoint& c, std::span<const audit_record> log,
                                std::string_view holder) {
  log_comparison out;
  out.log_end = log.empty() ? 0 : log.back().seq;
  if (c.count == 0) return out;
  const std::string names = "checkpoint held by " + std::string(holder) + " names " +
                            std::to_string(c.count) + " with head " + short_hash(c.head);
  if (out.log_end < c.count) {
    out.verdict = log_verdict::missing_tail;
    out.first_missing = out.log_end + 1;
    out.last_missing = c.count;
    out.problem = records_text(out.first_missing, out.last_missing) + " missing: " +
                  (log.empty() ? std::string("the log is empty")
                               : "the log ends at " + std::to_string(out.log_end)) +
                  ", " + names;
    return out;
  }
  // The store returns records by seq; look record `count` up by seq, not by position, so a
  // gap before it does not make us compare the wrong record.
  const auto it = std::lower_bound(log.begin(), log.end(), c.count,
                                   [](const audit_record& r, std::uint64_t s) { return r.seq < s; });
  if (it == log.end() || it->seq != c.count) {
    out.verdict = log_verdict::missing_record;
    out.first_missing = out.last_missing = c.count;
    out.problem = records_text(c.count, c.count) + " missing (the log ends at " +
                  std::to_string(out.log_end) + "), " + names;
    return out;
  }
  if (it->hash != c.head) {
    out.verdict = log_verdict::head_differs;
    out.problem = records_text(c.count, c.count) + " differs: its hash is " +
                  short_hash(it->hash) + ", " + names +
                  " (the log up to it was rewritten after the checkpoint was signed)";
    return out;
  }
  return out;
}

checkpoints_report check_log(std::span<const audit_record> log,
                             std::span<const held_checkpoint> checkpoints) {
  checkpoints_report rep;
  std::vector<std::pair<std::uint64_t, std::string>> problems;  // (count, sentence)
  std::uint64_t tail_count = 0;
  // A fleet holds a few distinct checkpoints, each held by many nodes: one comparison and one
  // sentence per (count, head), naming its first holder and how many others hold it.
  std::map<std::pair<std::uint64_t, std::string>, std::vector<const std::string*>> holders;
  std::vector<const checkpoint*> distinct;
  for (const held_checkpoint& h : checkpoints) {
    rep.highest = std::max(rep.highest, h.cp.count);
    auto& list = holders[{h.cp.count, h.cp.head}];
    if (list.empty()) distinct.push_back(&h.cp);
    list.push_back(&h.holder);
  }
  for (const checkpoint* c : distinct) {
    const auto& list = holders[{c->count, c->head}];
    std::string who = *list.front();
    if (list.size() > 1)
      who += " and " + std::to_string(list.size() - 1) + (list.size() == 2 ? " other" : " others");
    const log_comparison cmp = compare_with_log(*c, log, who);
    if (cmp.ok()) {
      rep.covered += list.size();
      continue;
    }
    if (cmp.verdict == log_verdict::missing_tail && c->count > tail_count) {
      tail_count = c->count;
      rep.missing_tail = cmp.problem;
    }
    problems.emplace_back(c->count, cmp.problem);
  }
  // Conflicts: the first holder of each (count, head), then any other head for that count.
  std::map<std::uint64_t, std::map<std::string, std::string>> heads;  // count -> head -> holder
  for (const held_checkpoint& h : checkpoints) heads[h.cp.count].try_emplace(h.cp.head, h.holder);
  for (const auto& [count, by_head] : heads) {
    if (by_head.size() < 2) continue;
    std::string sentence = "conflicting checkpoints for " + std::to_string(count) + " records:";
    bool first = true;
    for (const auto& [head, holder] : by_head) {
      sentence += std::string(first ? " " : "; ") + holder + " names head " + short_hash(head);
      first = false;
    }
    sentence += " (the controller's key signed two histories)";
    problems.emplace_back(count, std::move(sentence));
  }
  std::stable_sort(problems.begin(), problems.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  for (auto& p : problems) rep.problems.push_back(std::move(p.second));
  rep.ok = rep.problems.empty();
  return rep;
}

}  // namespace sluice::control::audit
