// FakeClock: a Clock that moves only when a test says so. testonly.
//
// Now() returns the set time; Advance() moves it forward and wakes every
// thread blocked in SleepFor() whose wake time has come. Lets tests exercise
// lease expiry and failover deterministically, without sleeping.
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
  void SleepFor(absl::Duration d) const override;

  // Moves time forward by `d` (negative durations are ignored).
  void Advance(absl::Duration d);
  // Sets the time; moving backwards is allowed (clock steps happen).
  void Set(absl::Time t);

  // Number of threads currently blocked in SleepFor().
  int sleepers() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace strongbox

#endif  // STRONGBOX_TESTING_FAKE_CLOCK_H_
