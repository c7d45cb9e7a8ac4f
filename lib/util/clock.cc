#include "strongbox/clock.h"

#include "absl/time/clock.h"

namespace strongbox {
namespace {

class SystemClock final : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
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
