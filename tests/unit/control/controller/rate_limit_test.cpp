// control/api/rate_limit: token buckets per key with a bounded table, time driven by the test.
#include "control/api/rate_limit.hpp"

#include <doctest/doctest.h>

#include <string>

using namespace sluice::control::api;
using namespace std::chrono_literals;

TEST_CASE("rate limiter: burst, refill at the rate, Retry-After, keys apart") {
  rate_limiter rl({2.0, 3.0});
  const auto t0 = rate_limiter::clock::time_point{} + 1000s;
  for (int i = 0; i < 3; ++i) CHECK(rl.take("a", t0).allowed);
  const auto refused = rl.take("a", t0);
  CHECK_FALSE(refused.allowed);
  CHECK(refused.retry_after == 1s);  // half a second to the next token: rounded up to 1
  CHECK(rl.take("b", t0).allowed);   // another key has its own bucket
  CHECK_FALSE(rl.take("a", t0 + 400ms).allowed);  // 0.8 of a token
  CHECK(rl.take("a", t0 + 600ms).allowed);        // 1.2: one taken
  CHECK_FALSE(rl.take("a", t0 + 600ms).allowed);
  // A long pause refills to the burst, not beyond.
  for (int i = 0; i < 3; ++i) CHECK(rl.take("a", t0 + 100s).allowed);
  CHECK_FALSE(rl.take("a", t0 + 100s).allowed);

  rate_limiter slow({0.1, 1.0});
  CHECK(slow.take("x", t0).allowed);
  CHECK(slow.take("x", t0).retry_after == 10s);
}

TEST_CASE("rate limiter: the table never grows past its cap; the least recently used goes") {
  rate_limiter rl({1.0, 1.0}, 100);
  const auto t0 = rate_limiter::clock::time_point{} + 1000s;
  CHECK(rl.take("keep", t0).allowed);
  for (int i = 0; i < 10000; ++i) {
    (void)rl.take("k" + std::to_string(i), t0);
    if (i % 50 == 0) CHECK_FALSE(rl.take("keep", t0).allowed);  // used: stays, still empty
    CHECK(rl.size() <= 100);
  }
  CHECK(rl.size() == 100);
  CHECK_FALSE(rl.take("keep", t0).allowed);
  // An evicted key comes back full (more lenient, never stricter).
  CHECK(rl.take("k0", t0).allowed);
}
