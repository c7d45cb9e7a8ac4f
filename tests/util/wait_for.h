// Test helper: a bounded wait for another thread's progress.
//
// WaitFor(done) polls `done` (yielding between tries) until it answers
// true, or until `timeout` has passed on the real clock, and returns its
// last answer. It is for tests whose threads must meet whatever the
// scheduler does (readers that must have read before a writer moves on);
// the timeout is a backstop far beyond any scheduling delay, not a timing
// the test depends on. Thread-safe as far as `done` is.
#ifndef STRONGBOX_TESTS_UTIL_WAIT_FOR_H_
#define STRONGBOX_TESTS_UTIL_WAIT_FOR_H_

#include <thread>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace strongbox {

template <typename Done>
bool WaitFor(Done done, absl::Duration timeout = absl::Seconds(60)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!done()) {
    if (absl::Now() > deadline) return done();
    std::this_thread::yield();
  }
  return true;
}

}  // namespace strongbox

#endif  // STRONGBOX_TESTS_UTIL_WAIT_FOR_H_
