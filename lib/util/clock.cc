#include "strongbox/clock.h"

#include <time.h>

#include "absl/time/clock.h"

namespace strongbox {
namespace {

class SystemClock final : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }

  absl::Duration MonotonicNow() const override {
    struct timespec ts;
    // CLOCK_BOOTTIME: monotonic, immune to wall-clock steps, and counting
    // through suspend. It cannot fail with a valid clock id and pointer;
    // should it ever, fall back to CLOCK_MONOTONIC (still step-free).
    if (clock_gettime(CLOCK_BOOTTIME, &ts) != 0) {
      clock_gettime(CLOCK_MONOTONIC, &ts);
    }
    return absl::DurationFromTimespec(ts);
  }

  void SleepFor(absl::Duration d) const override { absl::SleepFor(d); }
};

}  // namespace

Clock* RealClock() {
  // Stateless and trivially destructible in effect; never deleted so it may
  // be used from static destructors of the host.
  static SystemClock* const clock = new SystemClock();
  return clock;
}

}  // namespace strongbox
