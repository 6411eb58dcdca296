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
// two different records share a form.
[[nodiscard]] std::string record_hash(const audit_record& r);

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

// Checks records in the order given (the store returns them by seq).
[[nodiscard]] chain_report verify_chain(std::span<const audit_record> records);

}  // namespace sluice::control::audit
