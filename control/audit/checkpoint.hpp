#pragma once
// Signed audit checkpoints (issue 14): the controller's signature over (record count, head
// hash, time, replica), so that removing the newest records of the hash chain, which the chain
// alone cannot show, is shown by any checkpoint signed before the removal. Nodes carry the
// newest one they saw (the snapshot feed hands it out), the ministry may keep one, and
// `sluicectl audit verify` compares the log with them. Pure functions; control/README.md
// ("Audit checkpoints") says what this proves and what it cannot.
//
// Form. A checkpoint is signed with the controller's Ed25519 key (the snapshot key) in
// minisign's format (control/crypto/minisign.hpp). The signed message and the trusted comment
// are the same text:
//     sluice-audit-checkpoint count=N head=HEX at=T replica=R
// N: records 1..N are covered; HEX: record N's hash (64 '0's, the genesis hash, when N is 0);
// T: when it was signed, unix milliseconds; R: the replica that signed it (printable ASCII, no
// control characters; everything after "replica=" to the end of the line). The serialised form
// is one JSON object, {"count", "head", "at", "replica", "signature"} (the minisign signature
// file text); that is what nodes persist, report and what `sluicectl audit checkpoint` writes.
// A verifier rebuilds the text from the fields and requires both that the signature verifies
// over it and that the trusted comment is exactly it, so no field can be changed on its own.
//
// Nothing here throws except std::bad_alloc.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "control/audit/audit.hpp"
#include "control/crypto/minisign.hpp"

namespace sluice::control::audit {

struct checkpoint {
  std::uint64_t count = 0;
  std::string head;       // lowercase hex SHA-256 of record `count` (genesis when count is 0)
  std::int64_t at = 0;    // unix milliseconds when signed
  std::string replica;    // who signed it
  std::string signature;  // minisign signature file text over checkpoint_text(*this)

  bool operator==(const checkpoint&) const = default;
};

// Bounds a parser holds a checkpoint to (a node's report is read by the controller, whatever
// the node sends): the serialised form, the replica name, the signature text.
inline constexpr std::size_t max_checkpoint_bytes = 4096;
inline constexpr std::size_t max_replica_bytes = 128;

// "sluice-audit-checkpoint count=N head=HEX at=T replica=R": the signed text and trusted comment.
[[nodiscard]] std::string checkpoint_text(std::uint64_t count, std::string_view head,
                                          std::int64_t at, std::string_view replica);
[[nodiscard]] std::string checkpoint_text(const checkpoint& c);

// `replica` with every byte outside printable ASCII (0x20-0x7e) replaced by '_' and cut to
// max_replica_bytes ("controller" when empty): a name make_checkpoint accepts.
[[nodiscard]] std::string checkpoint_replica_name(std::string_view replica);

// Signs a checkpoint. nullopt when `head` is not 64 lowercase hex digits, `replica` is not a
// checkpoint_replica_name, or signing fails.
[[nodiscard]] std::optional<checkpoint> make_checkpoint(const crypto::secret_key& key,
                                                        std::uint64_t count, std::string_view head,
                                                        std::int64_t at, std::string_view replica);

// The serialised form: compact JSON, keys in a fixed order, no newline at the end.
[[nodiscard]] std::string checkpoint_json(const checkpoint& c);
// Parses the serialised form (surrounding whitespace allowed, so a file with a final newline
// reads). Checks shape only (fields present, typed, head 64 lowercase hex, replica printable,
// sizes within the bounds above); nullopt and `error` otherwise. The signature is not checked.
[[nodiscard]] std::optional<checkpoint> parse_checkpoint(std::string_view text,
                                                         std::string& error);

// The X-Sluice-Audit-Checkpoint header value of 304 answers: base64 of checkpoint_json.
[[nodiscard]] std::string checkpoint_header(const checkpoint& c);
[[nodiscard]] std::optional<checkpoint> parse_checkpoint_header(std::string_view value,
                                                                std::string& error);

struct checkpoint_check {
  bool ok = false;
  std::string problem;  // "" when ok, else why (e.g. "signature does not match ...")
  [[nodiscard]] explicit operator bool() const noexcept { return ok; }
};
// The signature verifies with `key` over checkpoint_text(c), and its trusted comment is that
// same text (the fields are bound twice: by the message and by the comment).
[[nodiscard]] checkpoint_check verify_checkpoint(const crypto::public_key& key,
                                                 const checkpoint& c);

// How a received checkpoint relates to a held one: `newer` (higher count: take it), `same`
// (same count and head, whoever signed it when: nothing to do), `older` (lower count: never go
// back to it), `conflict` (same count, different head: two histories were signed; both are
// evidence to keep).
enum class checkpoint_order : std::uint8_t { newer, same, older, conflict };
[[nodiscard]] checkpoint_order order(const checkpoint& held, const checkpoint& received) noexcept;

// "checkpoint count=N head=abcdef012345... at 2026-11-28T12:00:00.123Z by R" (head cut to 12).
[[nodiscard]] std::string describe(const checkpoint& c);

// ---- comparing checkpoints with a log ---------------------------------------------------------

enum class log_verdict : std::uint8_t {
  covered,         // record `count` is there with the checkpoint's head hash
  missing_tail,    // the log ends before `count`: records (log end + 1)..count are gone
  missing_record,  // the log goes past `count` but has no record `count`
  head_differs,    // record `count` is there with another hash: rewritten
};

struct log_comparison {
  log_verdict verdict = log_verdict::covered;
  std::uint64_t log_end = 0;        // the highest seq in the log (0 when empty)
  std::uint64_t first_missing = 0;  // missing_tail / missing_record: the records gone
  std::uint64_t last_missing = 0;
  std::string problem;  // "" when covered; else one sentence naming the records and `holder`
  [[nodiscard]] bool ok() const noexcept { return verdict == log_verdict::covered; }
};

// The log must hold record c.count with hash c.head (count 0: always covered). `log` is the
// log by seq, as the store returns it (gaps are allowed: verify_chain reports them). `holder`
// names where the checkpoint comes from, for the sentence: "node edge-7", "file cp.json". E.g.
// "records 41-43 missing: the log ends at 40, checkpoint held by node edge-7 names 43 with head
// 3f2a...".
[[nodiscard]] log_comparison compare_with_log(const checkpoint& c,
                                              std::span<const audit_record> log,
                                              std::string_view holder);

struct held_checkpoint {
  std::string holder;  // "node edge-7", "file ministry.json"
  checkpoint cp;       // already verified by the caller
};

struct checkpoints_report {
  bool ok = true;
  std::size_t covered = 0;                // checkpoints the log covers
  std::uint64_t highest = 0;              // the highest count among them all
  std::vector<std::string> problems;      // one sentence per failing checkpoint or conflict
  // The longest missing tail any checkpoint proves ("" when none): the sentence of the
  // checkpoint with the highest count among those naming records the log lacks.
  std::string missing_tail;
};
// Every checkpoint against the log (compare_with_log), and the checkpoints against each other:
// two with the same count and different heads are a conflict whatever the log says (the key
// signed two histories). Checkpoints of the same count and head are compared once and named
// together ("node a and 9,999 others"). Problems are listed by count, highest first.
[[nodiscard]] checkpoints_report check_log(std::span<const audit_record> log,
                                           std::span<const held_checkpoint> checkpoints);

}  // namespace sluice::control::audit
