#include "strongbox/testing/fake_clock.h"

#include "lib/util/mutex.h"

namespace strongbox {

struct FakeClock::State {
  mutable Mutex mu;
  absl::Time now ABSL_GUARDED_BY(mu);
  int sleepers ABSL_GUARDED_BY(mu) = 0;
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

void FakeClock::SleepFor(absl::Duration d) const {
  State& s = *state_;
  MutexLock lock(&s.mu);
  const absl::Time wake = s.now + d;
  ++s.sleepers;
  s.mu.Await([&]()
                 ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) { return s.now >= wake; });
  --s.sleepers;
}

void FakeClock::Advance(absl::Duration d) {
  if (d <= absl::ZeroDuration()) return;
  {
    MutexLock lock(&state_->mu);
    state_->now += d;
  }
  state_->mu.SignalAll();
}

void FakeClock::Set(absl::Time t) {
  {
    MutexLock lock(&state_->mu);
    state_->now = t;
  }
  state_->mu.SignalAll();
}

int FakeClock::sleepers() const {
  MutexLock lock(&state_->mu);
  return state_->sleepers;
}

}  // namespace strongbox
