#pragma once
// The audit trail: append-only records, each holding the SHA-256 of the one before, so any
// edited, removed or reordered record breaks the chain at a point we can name. Pure functions;
// the store assigns seq and seals records inside the transaction that appends them.

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace sluice::control::audit {

struct audit_record {
  std::uint64_t seq = 0;  // 1-based, dense, assigned by the store
  std::int64_t at = 0;    // unix milliseconds
  std::string actor;      // principal: token name, "controller", "node:<id>" (never a subscriber)
  std::string event;      // dotted name: "directive.submitted", "directive.refused", ...
  std::string subject;    // what it is about: "issuer/id", a node id, "" for fleet-wide
  std::string detail;     // JSON object text
  std::string prev_hash;  // hex SHA-256 of the previous record; 64 '0's for seq 1
  std::string hash;       // hex SHA-256 of this record's canonical form (all fields above)
};

// 64 '0's.
[[nodiscard]] const std::string& genesis_hash();

// The canonical form's hash: SHA-256 over every field but `hash`, each length-prefixed, so no
// two different records share a form. Lowercase hex. The form is defined in audit.cpp
// ("sluice-audit-v1"); changing it breaks every stored chain. Throws std::runtime_error only if
// OpenSSL itself fails (it does not for SHA-256 short of memory exhaustion).
[[nodiscard]] std::string record_hash(const audit_record& r);

// Lowercase hex SHA-256 of `data` (document digests in audit details, token hashes).
// Throws std::runtime_error only if OpenSSL fails.
[[nodiscard]] std::string sha256_hex(std::string_view data);

// Sets r.seq, r.prev_hash and r.hash to follow `prev` (nullptr: r is the first record).
void seal(audit_record& r, const audit_record* prev);

struct chain_report {
  bool ok = true;
  std::uint64_t records = 0;   // how many were checked
  std::uint64_t bad_seq = 0;   // first record that fails (its seq as stored), 0 when ok
  std::string problem;         // e.g. "record 17: hash does not match its contents (edited)",
                               // "record 18: prev_hash is not record 17's hash (removed or
                               // reordered before it)", "record 19 follows record 17 (record 18
                               // removed)"; "" when ok
  std::string head_hash;       // hash of the last record (genesis when empty)
};

// Checks records in the order given (the store returns them by seq): each record's hash must
// match its contents, seqs must run 1, 2, 3, ... and each prev_hash must be the hash of the
// record before (genesis for seq 1). Reports the first failing record only. `records` counts
// the records checked, the failing one included; `head_hash` is that of the last record that
// passed. Removing the newest records cannot be seen from the chain alone: compare the head
// against one kept elsewhere.
[[nodiscard]] chain_report verify_chain(std::span<const audit_record> records);

// The same for a suffix of a chain (e.g. one page of audit_since(after_seq)): the first record
// must be after_seq + 1 and name after_hash (the hash of record after_seq) as its prev_hash.
// verify_chain(records) is verify_chain_after(records, 0, genesis_hash()).
[[nodiscard]] chain_report verify_chain_after(std::span<const audit_record> records,
                                              std::uint64_t after_seq,
                                              std::string_view after_hash);

}  // namespace sluice::control::audit
