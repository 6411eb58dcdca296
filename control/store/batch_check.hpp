#pragma once
// The checks every store makes on a batch before touching anything, whatever it keeps records
// in: keys present and unique within the batch, numbers within int64 (both stores keep int64),
// impact windows not negative. Stores add their own (encoding, size limits) after these.

#include <cstdint>
#include <optional>
#include <string>

#include "control/store/store.hpp"

namespace sluice::control::store {

// "" when the batch passes; else what is wrong, naming the record ("directive I/D put twice").
[[nodiscard]] std::string check_batch(const write_batch& b);

// The compares every store makes inside its transaction, on what it read there. Each returns ""
// when the batch's condition holds, else the conflict, worded the same by every store.
// One directive put against its stored version (nullopt: the directive does not exist).
[[nodiscard]] std::string check_directive_version(const write_batch::directive_put& p,
                                                  std::optional<std::uint64_t> stored);
// The batch's revisions continue the store's newest (`latest`, 0 when none), one by one.
[[nodiscard]] std::string check_revision_sequence(const write_batch& b, std::uint64_t latest);

}  // namespace sluice::control::store
