// InMemoryBackend: a complete Backend (including the HA lease and fencing)
// held in one process's memory. For tests, benchmarks and single-process
// demos: nothing survives the process.
//
// Lease expiry reads the injected Clock, so tests move time with a
// FakeClock instead of sleeping. Entries live in a sorted map, so List() is
// a range scan.
//
// Thread-safe.
#ifndef STRONGBOX_IN_MEMORY_BACKEND_H_
#define STRONGBOX_IN_MEMORY_BACKEND_H_

#include <memory>

#include "strongbox/backend.h"
#include "strongbox/clock.h"

namespace strongbox {

struct InMemoryBackendOptions {
  // Time source for lease expiry. Expiry and the time left before an
  // Acquire()/WaitLost() deadline are counted on its MonotonicNow(), so a
  // wall-clock step neither stretches nor cuts them; expiry() and
  // LeaseHolder::expiry are reported in its Now(). Not owned; must outlive
  // the backend. Default: RealClock().
  Clock* clock = nullptr;
  // Key and value limits.
  BackendLimits limits;
  // How often a blocked Acquire() or WaitLost() re-reads the clock, so a
  // fake clock advanced by a test is noticed. Real-clock waits wake exactly
  // at expiry. Default: 1 ms.
  absl::Duration poll_interval = absl::Milliseconds(1);
};

std::unique_ptr<Backend> NewInMemoryBackend(
    const InMemoryBackendOptions& options = {});

}  // namespace strongbox

#endif  // STRONGBOX_IN_MEMORY_BACKEND_H_
