#pragma once
// Per-flow throttle: a token bucket in TSC ticks, 24 bytes, integer arithmetic only.
//
// Credit is kept in "bit-ticks": one bit of credit is `tsc_hz` units, so a refill of `elapsed`
// ticks adds exactly `elapsed * rate_bps` units and a packet of `n` bytes costs `n * 8 * tsc_hz`.
// No division, no remainder to carry, no drift: over any span of simulated time the bytes
// admitted are exactly what the rate allows (see token_bucket_test.cpp).
//
// Limits (values above are clamped by the constructor): rate up to 2^40 - 1 bit/s (~1.1 Tbit/s),
// burst up to 2^24 - 1 bytes (16 MiB). With tsc_hz below 2^37 (137 GHz) the full bucket,
// burst * 8 * tsc_hz, fits in 64 bits; refills saturate at the burst, so idle gaps of any length
// cannot overflow.
//
// Contract: owned and used by one worker (not thread-safe); `tsc_hz` must be the same on every
// call (the credit's unit depends on it); a bucket starts full. A TSC reading older than the last
// one refills nothing. A packet larger than the burst is never admitted. `tsc_hz == 0` is a
// caller bug: the bucket then admits everything (fail open, as the data path does).

#include <cstdint>
#include <limits>

#include "dataplane/match/action.hpp"

namespace sluice::engine {

class token_bucket {
 public:
  static constexpr std::uint64_t max_rate_bps = (std::uint64_t{1} << 40) - 1;
  static constexpr std::uint64_t max_burst_bytes = match::max_throttle_burst_bytes;

  constexpr token_bucket(std::uint64_t rate_bps, std::uint32_t burst_bytes) noexcept
      : rate_bps_(rate_bps < max_rate_bps ? rate_bps : max_rate_bps),
        burst_bytes_(burst_bytes < max_burst_bytes ? burst_bytes : max_burst_bytes) {}

  // Refills for the time since the last call, then admits `bytes` (and debits them) if the
  // bucket holds that much credit. Rejected packets cost nothing.
  [[nodiscard]] constexpr bool admit(std::uint64_t now_tsc, std::uint32_t bytes,
                                     std::uint64_t tsc_hz) noexcept {
    if (tsc_hz == 0) [[unlikely]]
      return true;
    std::uint64_t cap = 0;
    if (__builtin_mul_overflow(std::uint64_t{burst_bytes_} * 8, tsc_hz, &cap)) {
      cap = std::numeric_limits<std::uint64_t>::max();
    }
    if (now_tsc > last_tsc_) {
      std::uint64_t add = 0;
      std::uint64_t sum = 0;
      if (__builtin_mul_overflow(now_tsc - last_tsc_, std::uint64_t{rate_bps_}, &add) ||
          __builtin_add_overflow(credit_, add, &sum) || sum > cap) {
        sum = cap;
      }
      credit_ = sum;
      last_tsc_ = now_tsc;
    }
    // A fresh bucket holds "everything" until the first call tells us the unit.
    if (credit_ > cap) credit_ = cap;
    std::uint64_t cost = 0;
    if (__builtin_mul_overflow(std::uint64_t{bytes} * 8, tsc_hz, &cost) || cost > credit_) {
      return false;
    }
    credit_ -= cost;
    return true;
  }

  [[nodiscard]] constexpr std::uint64_t rate_bps() const noexcept { return rate_bps_; }
  [[nodiscard]] constexpr std::uint32_t burst_bytes() const noexcept {
    return static_cast<std::uint32_t>(burst_bytes_);
  }

 private:
  std::uint64_t last_tsc_ = 0;
  std::uint64_t credit_ = std::numeric_limits<std::uint64_t>::max();  // full: see admit()
  std::uint64_t rate_bps_ : 40;
  std::uint64_t burst_bytes_ : 24;
};

static_assert(sizeof(token_bucket) <= 24, "lives in every throttled flow's entry");

}  // namespace sluice::engine
