// ActiveSnapshot: what an active node's hot path asks the coordinator on
// every request (its fence, until when its lease holds, until when the
// backend's last "still held" answer may be trusted), readable without the
// coordinator's lock.
//
// The coordinator writes it only while holding its own lock exclusively
// (so writers never overlap), every time one of the three changes, and
// clears it on every state change: a fence in it is the node's current
// grant while it is active, and a reader that sees a time in it sees the
// fence that time belongs to. A reader gets one consistent snapshot or, if
// a write is under way, none (it then asks under the lock). The deadlines
// are kept in whole nanoseconds, truncated toward zero: for the positive
// readings of a monotonic clock, never later than the coordinator's own.
//
// It is a sequence lock over atomics: Read() takes no lock and writes no
// shared memory, so readers on several cores do not contend on it.
//
// Internal to strongbox. Thread-safe as described: Publish() and Clear()
// need the caller's own serialization; Read() may race with them.
#ifndef STRONGBOX_LIB_HA_ACTIVE_SNAPSHOT_H_
#define STRONGBOX_LIB_HA_ACTIVE_SNAPSHOT_H_

#include <atomic>
#include <cstdint>

#include "absl/time/time.h"
#include "strongbox/backend.h"

namespace strongbox {
namespace ha_internal {

class ActiveSnapshot {
 public:
  struct View {
    FenceToken fence = kNoFence;  // kNoFence: not active (or cleared)
    // Monotonic-clock readings, as the coordinator keeps them.
    absl::Duration lease_until = -absl::InfiniteDuration();
    absl::Duration verified_until = -absl::InfiniteDuration();
  };

  ActiveSnapshot() = default;
  ActiveSnapshot(const ActiveSnapshot&) = delete;
  ActiveSnapshot& operator=(const ActiveSnapshot&) = delete;

  // REQUIRES: no other Publish() or Clear() at the same time.
  void Publish(const View& view) {
    const uint64_t seq = seq_.load(std::memory_order_relaxed);
    seq_.store(seq + 1, std::memory_order_relaxed);  // odd: being written
    // Release stores: the odd sequence number above is visible before any
    // of them, so a reader that sees one of them sees a changed sequence.
    fence_.store(view.fence, std::memory_order_release);
    lease_until_ns_.store(absl::ToInt64Nanoseconds(view.lease_until),
                          std::memory_order_release);
    verified_until_ns_.store(absl::ToInt64Nanoseconds(view.verified_until),
                             std::memory_order_release);
    seq_.store(seq + 2, std::memory_order_release);
  }

  // REQUIRES: as Publish().
  void Clear() { Publish(View()); }

  // The last snapshot published, or false while one is being written.
  bool Read(View* out) const {
    const uint64_t before = seq_.load(std::memory_order_acquire);
    if ((before & 1) != 0) return false;
    // Acquire loads: the sequence is read again only after all three.
    const FenceToken fence = fence_.load(std::memory_order_acquire);
    const int64_t lease = lease_until_ns_.load(std::memory_order_acquire);
    const int64_t verified = verified_until_ns_.load(std::memory_order_acquire);
    if (seq_.load(std::memory_order_acquire) != before) return false;
    out->fence = fence;
    out->lease_until = absl::Nanoseconds(lease);
    out->verified_until = absl::Nanoseconds(verified);
    return true;
  }

 private:
  std::atomic<uint64_t> seq_{0};
  std::atomic<FenceToken> fence_{kNoFence};
  std::atomic<int64_t> lease_until_ns_{
      absl::ToInt64Nanoseconds(-absl::InfiniteDuration())};
  std::atomic<int64_t> verified_until_ns_{
      absl::ToInt64Nanoseconds(-absl::InfiniteDuration())};
};

}  // namespace ha_internal
}  // namespace strongbox

#endif  // STRONGBOX_LIB_HA_ACTIVE_SNAPSHOT_H_
