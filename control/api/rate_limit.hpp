#pragma once
// A keyed token-bucket rate limiter with a bounded table (issue 14): one bucket per key (a
// token's name, a node id, a remote address), `rate` tokens a second up to `burst`; a request
// takes one. The table holds at most `max_keys` buckets: a new key past that evicts the least
// recently used one, so a caller that invents keys (addresses, node ids) costs a bounded amount
// of memory and can only make other keys' buckets full again, never emptier.
//
// Thread-safe (one mutex; take() is a hash lookup and a list splice). Time is passed in, so
// tests drive it.

#include <chrono>
#include <cstddef>
#include <list>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace sluice::control::api {

struct bucket_config {
  double rate = 100;   // tokens a second, > 0
  double burst = 200;  // bucket size, >= 1
};

struct rate_decision {
  bool allowed = true;
  std::chrono::seconds retry_after{0};  // when refused: until the next token, at least 1 s
};

class rate_limiter {
 public:
  using clock = std::chrono::steady_clock;

  explicit rate_limiter(bucket_config config, std::size_t max_keys = 65536);

  // Takes one token from `key`'s bucket (a new key starts full).
  [[nodiscard]] rate_decision take(std::string_view key, clock::time_point now = clock::now());
  // Buckets held (at most max_keys).
  [[nodiscard]] std::size_t size() const;
  [[nodiscard]] const bucket_config& config() const { return config_; }

 private:
  struct bucket {
    double tokens = 0;
    clock::time_point refilled;
    std::list<std::string>::iterator age;  // in lru_, most recent first
  };

  bucket_config config_;
  std::size_t max_keys_;
  mutable std::mutex mutex_;
  std::list<std::string> lru_;
  std::unordered_map<std::string, bucket> buckets_;
};

}  // namespace sluice::control::api
