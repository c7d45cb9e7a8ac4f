// FakeClock: a Clock that moves only when a test says so. testonly.
//
// Two readings, like every Clock: wall time (Now()) and monotonic time
// (MonotonicNow(), starting at zero). Advance() moves both forward together
// and wakes every thread blocked in SleepFor() whose wake time has come.
// Set() steps the wall time alone, either way, as an operator or NTP does;
// the monotonic time and sleepers do not notice. Lets tests exercise lease
// expiry, failover and clock steps deterministically, without sleeping.
//
// Thread-safe.
#ifndef STRONGBOX_TESTING_FAKE_CLOCK_H_
#define STRONGBOX_TESTING_FAKE_CLOCK_H_

#include <memory>

#include "absl/time/time.h"
#include "strongbox/clock.h"

namespace strongbox {

class FakeClock : public Clock {
 public:
  // Starts at `start` (default: 2026-01-01T00:00:00Z, so tests are stable).
  explicit FakeClock(absl::Time start = absl::FromUnixSeconds(1767225600));
  ~FakeClock() override;

  absl::Time Now() const override;
  absl::Duration MonotonicNow() const override;
  // Returns once the monotonic time has advanced by `d`.
  void SleepFor(absl::Duration d) const override;

  // Moves wall and monotonic time forward by `d` (negative durations are
  // ignored).
  void Advance(absl::Duration d);
  // Steps the wall time alone; moving backwards is allowed (clock steps
  // happen). Monotonic time does not move.
  void Set(absl::Time t);

  // Number of threads blocked in SleepFor() whose wake time is still ahead
  // (a thread that Advance() released no longer counts, even before it
  // runs), so a test can advance exactly when something waits on it. A
  // SleepFor() of zero or less returns at once and is never counted.
  int sleepers() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace strongbox

#endif  // STRONGBOX_TESTING_FAKE_CLOCK_H_
