// Clock: where strongbox reads the time, so tests can inject a fake one.
//
// Lease expiry, renew schedules and "active since" times all read a Clock
// passed in through options; nothing in the library calls absl::Now()
// directly. The real clock is stateless.
//
// Thread-safe: implementations must allow concurrent calls.
#ifndef STRONGBOX_CLOCK_H_
#define STRONGBOX_CLOCK_H_

#include "absl/time/time.h"

namespace strongbox {

class Clock {
 public:
  virtual ~Clock() = default;

  // The current time.
  virtual absl::Time Now() const = 0;

  // Blocks the calling thread for `d` of this clock's time. A fake clock
  // returns once its time has been advanced far enough. Used only on
  // background threads; tests drive the fake clock from the outside.
  virtual void SleepFor(absl::Duration d) const = 0;
};

// The system clock. Never null; lives for the whole process.
Clock* RealClock();

}  // namespace strongbox

#endif  // STRONGBOX_CLOCK_H_
