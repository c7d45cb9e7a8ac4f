// How many times this process's ancestry has fork()ed into it: a counter a
// pthread_atfork child handler bumps, so one relaxed load tells an object
// made before a fork (which recorded the count then) that it now lives in
// the child. Process-wide by nature; the handler is installed on the first
// call of ForkGeneration().
//
// A child made by a raw fork/clone system call runs no atfork handler:
// callers that must catch that too also compare getpid().
//
// Thread-safe.
#ifndef STRONGBOX_LIB_UTIL_FORK_GENERATION_H_
#define STRONGBOX_LIB_UTIL_FORK_GENERATION_H_

#include <atomic>
#include <cstdint>

namespace strongbox {

namespace util_internal {
extern std::atomic<uint64_t> fork_generation;
}  // namespace util_internal

// Installs the handler (once) and returns the current count. Call it when
// creating an object that must notice a later fork.
uint64_t ForkGeneration();

// The current count, without installing anything: one relaxed load, for
// hot paths of objects that called ForkGeneration() when they were made.
inline uint64_t CurrentForkGeneration() {
  return util_internal::fork_generation.load(std::memory_order_relaxed);
}

}  // namespace strongbox

#endif  // STRONGBOX_LIB_UTIL_FORK_GENERATION_H_
