// Test helper: pins the calling thread to the CPU it runs on for the
// helper's life, then restores its former affinity. A child it forks
// inherits the pin, so parent and child pick the same per-CPU shard
// (lib/util/mutex.h, CurrentShardIndex): what a fork test of the nonce
// pool needs, since the buffered nonces it checks live in one shard.
// Not thread-safe; one per test, on the test's thread.
#ifndef STRONGBOX_TESTS_SEAL_PINNED_CPU_H_
#define STRONGBOX_TESTS_SEAL_PINNED_CPU_H_

#include <sched.h>

namespace strongbox {

class PinnedToThisCpu {
 public:
  PinnedToThisCpu() {
    CPU_ZERO(&saved_);
    if (sched_getaffinity(0, sizeof(saved_), &saved_) != 0) return;
    cpu_set_t one;
    CPU_ZERO(&one);
    cpu_ = sched_getcpu();
    if (cpu_ < 0) return;
    CPU_SET(cpu_, &one);
    pinned_ =
        sched_setaffinity(0, sizeof(one), &one) == 0 && sched_getcpu() == cpu_;
  }
  ~PinnedToThisCpu() { sched_setaffinity(0, sizeof(saved_), &saved_); }
  PinnedToThisCpu(const PinnedToThisCpu&) = delete;
  PinnedToThisCpu& operator=(const PinnedToThisCpu&) = delete;

  // False where the affinity could not be set (the test should say so).
  bool pinned() const { return pinned_; }

 private:
  cpu_set_t saved_;
  int cpu_ = -1;
  bool pinned_ = false;
};

}  // namespace strongbox

#endif  // STRONGBOX_TESTS_SEAL_PINNED_CPU_H_
