#include "lib/util/fork_generation.h"

#include <pthread.h>

namespace strongbox {
namespace util_internal {
std::atomic<uint64_t> fork_generation{0};
}  // namespace util_internal

namespace {
void CountForkInChild() {
  util_internal::fork_generation.fetch_add(1, std::memory_order_relaxed);
}
}  // namespace

uint64_t ForkGeneration() {
  static const bool registered = [] {
    pthread_atfork(nullptr, nullptr, &CountForkInChild);
    return true;
  }();
  (void)registered;
  return CurrentForkGeneration();
}

}  // namespace strongbox
