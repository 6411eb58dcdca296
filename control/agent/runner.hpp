#pragma once
// Runs an agent's loop (agent::run) on a thread of its own, with a small stack so that a fleet
// simulator can hold a thousand of them; stopping is agent::stop() plus a join.
//
// Threads: construct and destroy from one thread; stop() from any.

#include <cstddef>
#include <pthread.h>

#include "control/agent/agent.hpp"

namespace sluice::control::agent {

class runner {
 public:
  // Starts `a.run()` on a new thread with `stack_bytes` of stack (at least PTHREAD_STACK_MIN).
  // On failure (thread limit) started() is false and `a` is left alone.
  explicit runner(agent& a, std::size_t stack_bytes = 256 * 1024);
  // stop() and join.
  ~runner();
  runner(const runner&) = delete;
  runner& operator=(const runner&) = delete;

  [[nodiscard]] bool started() const noexcept { return started_; }
  void stop();

 private:
  static void* entry(void* self);
  agent& agent_;
  pthread_t thread_{};
  bool started_ = false;
};

}  // namespace sluice::control::agent
