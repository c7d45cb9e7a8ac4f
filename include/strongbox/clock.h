// Clock: where strongbox reads the time, so tests can inject a fake one.
//
// Two readings. Now() is wall time, for what is shown to people and stored
// as a date (metadata times, "active since"). MonotonicNow() never jumps:
// every schedule and deadline (lease expiry as this node counts it, renew
// times, backoff, leader refresh) is measured on it, so an operator or NTP
// stepping the wall clock neither stretches nor cuts a lease. Nothing in the
// library calls absl::Now() directly; every reading comes from a Clock
// passed in through options. The real clock is stateless.
//
// Thread-safe: implementations must allow concurrent calls.
#ifndef STRONGBOX_CLOCK_H_
#define STRONGBOX_CLOCK_H_

#include "absl/time/time.h"

namespace strongbox {

class Clock {
 public:
  Clock() = default;
  virtual ~Clock() = default;
  Clock(const Clock&) = delete;
  Clock& operator=(const Clock&) = delete;

  // The current wall time. May jump backwards or forwards.
  virtual absl::Time Now() const = 0;

  // Time elapsed since an arbitrary fixed origin, on a clock that never
  // goes backwards and is not affected by wall-clock steps. Only
  // differences between readings of the same Clock mean anything.
  // RealClock() reads CLOCK_BOOTTIME (it keeps counting while the machine
  // is suspended, so a suspended holder's lease runs out), which every
  // process of one boot shares.
  // The default implementation (for hosts' own clocks written before this
  // method existed) returns Now() since the Unix epoch, which is NOT
  // monotonic: override it.
  virtual absl::Duration MonotonicNow() const {
    return Now() - absl::UnixEpoch();
  }

  // Blocks the calling thread for `d` of this clock's monotonic time. A
  // fake clock returns once its time has been advanced far enough. Used
  // only on background threads; tests drive the fake clock from the
  // outside.
  virtual void SleepFor(absl::Duration d) const = 0;
};

// The system clock. Never null; lives for the whole process.
Clock* RealClock();

}  // namespace strongbox

#endif  // STRONGBOX_CLOCK_H_
