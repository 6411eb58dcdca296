#include "control/api/rate_limit.hpp"

#include <algorithm>
#include <cmath>

namespace sluice::control::api {

rate_limiter::rate_limiter(bucket_config config, std::size_t max_keys)
    : config_(config), max_keys_(std::max<std::size_t>(1, max_keys)) {
  config_.rate = std::max(config_.rate, 1e-6);
  config_.burst = std::max(config_.burst, 1.0);
}

rate_decision rate_limiter::take(std::string_view key, clock::time_point now) {
  std::lock_guard lock(mutex_);
  auto it = buckets_.find(std::string(key));
  if (it == buckets_.end()) {
    if (buckets_.size() >= max_keys_) {
      buckets_.erase(lru_.back());
      lru_.pop_back();
    }
    lru_.emplace_front(key);
    it = buckets_.emplace(lru_.front(), bucket{config_.burst, now, lru_.begin()}).first;
  } else {
    lru_.splice(lru_.begin(), lru_, it->second.age);
    bucket& b = it->second;
    if (now > b.refilled) {
      const double elapsed = std::chrono::duration<double>(now - b.refilled).count();
      b.tokens = std::min(config_.burst, b.tokens + elapsed * config_.rate);
      b.refilled = now;
    }
  }
  bucket& b = it->second;
  if (b.tokens >= 1.0) {
    b.tokens -= 1.0;
    return {};
  }
  const double wait = (1.0 - b.tokens) / config_.rate;
  return {false, std::chrono::seconds(std::max<long long>(1, static_cast<long long>(std::ceil(wait))))};
}

std::size_t rate_limiter::size() const {
  std::lock_guard lock(mutex_);
  return buckets_.size();
}

}  // namespace sluice::control::api
