#include "strongbox/testing/fake_clock.h"

#include <iterator>
#include <set>

#include "lib/util/mutex.h"

namespace strongbox {

struct FakeClock::State {
  mutable Mutex mu;
  absl::Time now ABSL_GUARDED_BY(mu);
  absl::Duration mono ABSL_GUARDED_BY(mu) = absl::ZeroDuration();
  // Wake times of the threads in SleepFor (a thread leaves once `mono`
  // reaches its wake time and it has run again).
  std::multiset<absl::Duration> wakes ABSL_GUARDED_BY(mu);
};

FakeClock::FakeClock(absl::Time start) : state_(std::make_unique<State>()) {
  MutexLock lock(&state_->mu);
  state_->now = start;
}

FakeClock::~FakeClock() = default;

absl::Time FakeClock::Now() const {
  MutexLock lock(&state_->mu);
  return state_->now;
}

absl::Duration FakeClock::MonotonicNow() const {
  MutexLock lock(&state_->mu);
  return state_->mono;
}

void FakeClock::SleepFor(absl::Duration d) const {
  State& s = *state_;
  MutexLock lock(&s.mu);
  const absl::Duration wake = s.mono + d;
  const auto it = s.wakes.insert(wake);
  s.mu.Await(
      [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) { return s.mono >= wake; });
  s.wakes.erase(it);
}

void FakeClock::Advance(absl::Duration d) {
  if (d <= absl::ZeroDuration()) return;
  {
    MutexLock lock(&state_->mu);
    state_->now += d;
    state_->mono += d;
  }
  state_->mu.SignalAll();
}

void FakeClock::Set(absl::Time t) {
  MutexLock lock(&state_->mu);
  state_->now = t;
}

int FakeClock::sleepers() const {
  MutexLock lock(&state_->mu);
  // Only threads whose wake time is still ahead: one that Advance() has
  // released but that has not run yet no longer waits for the clock.
  return static_cast<int>(std::distance(state_->wakes.upper_bound(state_->mono),
                                        state_->wakes.end()));
}

}  // namespace strongbox
