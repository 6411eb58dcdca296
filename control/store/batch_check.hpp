#pragma once
// The checks every store makes on a batch before touching anything, whatever it keeps records
// in: keys present and unique within the batch, numbers within int64 (both stores keep int64),
// impact windows not negative. Stores add their own (encoding, size limits) after these.

#include <string>

#include "control/store/store.hpp"

namespace sluice::control::store {

// "" when the batch passes; else what is wrong, naming the record ("directive I/D put twice").
[[nodiscard]] std::string check_batch(const write_batch& b);

}  // namespace sluice::control::store
