// Token bucket over simulated TSC time: exact admission counts, idle gaps, extreme rates.

#include "dataplane/engine/token_bucket.hpp"

#include <doctest/doctest.h>

#include <cstdint>
#include <limits>
#include <vector>

namespace {

using sluice::engine::token_bucket;

// Offers 1-byte packets at `now` until one is refused; returns how many passed.
std::uint64_t drain(token_bucket& b, std::uint64_t now, std::uint64_t hz,
                    std::uint64_t limit = 100'000'000) {
  std::uint64_t n = 0;
  while (n < limit && b.admit(now, 1, hz)) ++n;
  return n;
}

constexpr std::uint64_t t0 = 123'456'789'000ull;  // an arbitrary TSC reading at start

}  // namespace

TEST_CASE("token bucket: burst at t0, then exactly rate * t") {
  struct row {
    const char* description;
    std::uint64_t rate_bps;
    std::uint32_t burst;
    std::uint64_t hz;
    std::uint64_t dt_ticks;   // idle time after draining the burst
    std::uint64_t expect_dt;  // bytes admitted after it
  };
  const std::vector<row> rows{
      {"64 kbit/s, 16 KiB, 1 s", 64'000, 16384, 2'000'000'000, 2'000'000'000, 8000},
      {"64 kbit/s, 16 KiB, 0.5 s", 64'000, 16384, 2'000'000'000, 1'000'000'000, 4000},
      {"64 kbit/s, 16 KiB, 1 s, 3 GHz", 64'000, 16384, 3'000'000'000, 3'000'000'000, 8000},
      // 64 kbit/s at 3 GHz: one byte every 375000 ticks exactly.
      {"one tick short of a byte", 64'000, 16384, 3'000'000'000, 374'999, 0},
      {"exactly one byte", 64'000, 16384, 3'000'000'000, 375'000, 1},
      {"10 s refill capped at the burst", 64'000, 16384, 2'000'000'000, 20'000'000'000, 16384},
      {"1 Mbit/s, 1500 B burst, 10 ms", 1'000'000, 1500, 2'500'000'000, 25'000'000, 1250},
      {"100 Gbit/s, 1 MiB burst, 1 us", 100'000'000'000, 1 << 20, 3'000'000'000, 3000, 12500},
      {"100 Gbit/s, 16 MiB-1 burst, 1 ms", 100'000'000'000, 16'777'215, 3'000'000'000, 3'000'000,
       12'500'000},
      {"2 Tbit/s (clamped to 2^40-1), 1 ns", 2'000'000'000'000, 1 << 20, 1'000'000'000, 1, 137},
  };
  for (const auto& r : rows) {
    INFO(r.description);
    token_bucket b{r.rate_bps, r.burst};
    CHECK(drain(b, t0, r.hz) == r.burst);
    CHECK(drain(b, t0 + r.dt_ticks, r.hz) == r.expect_dt);
    CHECK(drain(b, t0 + r.dt_ticks, r.hz) == 0);
  }
}

TEST_CASE("token bucket: many small refills add up exactly (no drift)") {
  // 64 kbit/s at 3 GHz, a 1-byte packet offered every 1000 ticks for 2 s: 16 KiB burst plus
  // exactly 16000 bytes.
  token_bucket b{64'000, 16384};
  const std::uint64_t hz = 3'000'000'000;
  std::uint64_t passed = 0;
  for (std::uint64_t t = 0; t <= 2 * hz; t += 1000) passed += b.admit(t0 + t, 1, hz) ? 1 : 0;
  CHECK(passed == 16384 + 16000);

  // Packets larger than one byte: 1500-byte packets at 1 Mbit/s over 12 s of 1 ms steps; the
  // burst (3000) plus 12 s * 125000 B/s = 1.503 MB, i.e. 1002 packets, none lost to rounding.
  token_bucket c{1'000'000, 3000};
  const std::uint64_t hz2 = 1'000'000'000;
  std::uint64_t packets = 0;
  for (std::uint64_t t = 0; t <= 12 * hz2; t += hz2 / 1000) {
    packets += c.admit(t0 + t, 1500, hz2) ? 1 : 0;
  }
  CHECK(packets == 1002);
}

TEST_CASE("token bucket: huge idle gaps and odd clocks") {
  const std::uint64_t hz = 3'000'000'000;
  const std::uint64_t max = std::numeric_limits<std::uint64_t>::max();
  struct row {
    const char* description;
    std::uint64_t rate_bps;
    std::uint32_t burst;
    std::uint64_t start;
    std::uint64_t later;
    std::uint64_t expect_later;
  };
  const std::vector<row> rows{
      {"days idle at 100 Gbit/s", 100'000'000'000, 65536, t0, t0 + 3 * 86400 * hz, 65536},
      {"from TSC 0 to the last TSC value", 100'000'000'000, 65536, 0, max, 65536},
      {"years idle at 1 Tbit/s", token_bucket::max_rate_bps, 16'777'215, 1, max - 1, 16'777'215},
      {"clock goes backwards: no refill", 64'000, 1000, t0, t0 - hz, 0},
      {"same tick: no refill", 64'000, 1000, t0, t0, 0},
      {"rate 0: the burst only, ever", 0, 1000, t0, max, 0},
  };
  for (const auto& r : rows) {
    INFO(r.description);
    token_bucket b{r.rate_bps, r.burst};
    CHECK(drain(b, r.start, hz, 20'000'000) == r.burst);
    CHECK(drain(b, r.later, hz, 20'000'000) == r.expect_later);
  }

  // After going backwards, time must pass the last reading again before credit comes back.
  token_bucket b{64'000, 1000};
  CHECK(drain(b, t0, 2'000'000'000) == 1000);
  CHECK(drain(b, t0 - 2'000'000'000, 2'000'000'000) == 0);
  CHECK(drain(b, t0 + 2'000'000'000, 2'000'000'000) == 1000);  // 8000 B/s, capped at 1000
}

TEST_CASE("token bucket: packet sizes, clamping, determinism, size") {
  const std::uint64_t hz = 2'000'000'000;
  token_bucket b{64'000, 1500};
  CHECK(!b.admit(t0, 1501, hz));  // larger than the burst: never
  CHECK(!b.admit(t0 + 1000 * hz, 1501, hz));
  CHECK(!b.admit(t0, std::numeric_limits<std::uint32_t>::max(), hz));
  CHECK(b.admit(t0 + 1000 * hz, 1500, hz));  // refused packets cost nothing
  CHECK(!b.admit(t0 + 1000 * hz, 1, hz));
  CHECK(b.admit(t0 + 1000 * hz, 0, hz));  // an empty packet costs nothing

  token_bucket big{std::numeric_limits<std::uint64_t>::max(),
                   std::numeric_limits<std::uint32_t>::max()};
  CHECK(big.rate_bps() == token_bucket::max_rate_bps);
  CHECK(big.burst_bytes() == token_bucket::max_burst_bytes);
  CHECK(big.admit(t0, 16'777'215, hz));
  CHECK(!big.admit(t0, 1, hz));

  token_bucket no_clock{64'000, 10};
  CHECK(no_clock.admit(t0, 1'000'000, 0));  // tsc_hz 0 is a caller bug: fail open

  // Same inputs, same decisions.
  token_bucket x{1'000'000, 3000}, y{1'000'000, 3000};
  std::uint64_t state = 0x1234567;
  std::uint64_t now = t0;
  for (int i = 0; i < 10000; ++i) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    now += state % 100000;
    const auto size = static_cast<std::uint32_t>(40 + state % 1460);
    REQUIRE(x.admit(now, size, hz) == y.admit(now, size, hz));
  }

  static_assert(sizeof(token_bucket) <= 24);
}
