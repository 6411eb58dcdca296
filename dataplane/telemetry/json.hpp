#pragma once
// The offline mode's final counters as JSON, and back. Off the hot path (allocates, throws).
//
// Layout (keys stable; new keys may be added, none renamed): a top-level object with "format":
// "sluice-dataplane-stats/1", then the fields of dataplane_stats under their C++ names, in
// declaration order. labelled_counts and xstats are JSON objects (label value -> count) in the
// snapshot's order, so their keys are expected to be unique; ports, workers and rules are
// arrays of objects. Counts are non-negative integers, exact up to 2^64-1.

#include <string>
#include <string_view>

#include "dataplane/telemetry/stats.hpp"

namespace sluice::telemetry {

// Pretty-printed (2-space indent), ending in a newline.
[[nodiscard]] std::string to_json(const dataplane_stats& stats);

// Reads what to_json wrote. Unknown keys are ignored and missing keys keep dataplane_stats'
// defaults (so dumps from older builds still load). Throws std::invalid_argument when the text
// is not JSON, the top level is not an object, "format" names another format, or a value has
// the wrong type (a negative or fractional count, a string where a number belongs, ...).
[[nodiscard]] dataplane_stats from_json(std::string_view text);

}  // namespace sluice::telemetry
