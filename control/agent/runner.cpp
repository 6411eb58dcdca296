#include "control/agent/runner.hpp"

#include <algorithm>
#include <climits>

namespace sluice::control::agent {

runner::runner(agent& a, std::size_t stack_bytes) : agent_(a) {
  pthread_attr_t attr;
  if (pthread_attr_init(&attr) != 0) return;
  (void)pthread_attr_setstacksize(&attr, std::max<std::size_t>(stack_bytes, PTHREAD_STACK_MIN));
  started_ = pthread_create(&thread_, &attr, &runner::entry, this) == 0;
  pthread_attr_destroy(&attr);
}

runner::~runner() {
  if (!started_) return;
  stop();
  pthread_join(thread_, nullptr);
}

void runner::stop() { agent_.stop(); }

void* runner::entry(void* self) {
  static_cast<runner*>(self)->agent_.run();
  return nullptr;
}

}  // namespace sluice::control::agent
