// ActiveSnapshot (lib/ha/active_snapshot.h): a reader gets what was
// published last, or nothing while a write is under way, and never a mix of
// two snapshots. The concurrent case is meant for ThreadSanitizer as well.
#include "lib/ha/active_snapshot.h"

#include <atomic>
#include <thread>
#include <vector>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/util/wait_for.h"

namespace strongbox {
namespace ha_internal {
namespace {

TEST(ActiveSnapshotTest, StartsClearedAndReadsBackWhatWasPublished) {
  ActiveSnapshot snapshot;
  ActiveSnapshot::View v;
  ASSERT_TRUE(snapshot.Read(&v));
  EXPECT_EQ(v.fence, kNoFence);
  // Cleared deadlines are before any clock reading.
  EXPECT_LT(v.lease_until, absl::Hours(-24 * 365));
  EXPECT_LT(v.verified_until, absl::Hours(-24 * 365));

  ActiveSnapshot::View published;
  published.fence = 42;
  published.lease_until = absl::Seconds(10);
  published.verified_until = absl::Milliseconds(9010);
  snapshot.Publish(published);
  ASSERT_TRUE(snapshot.Read(&v));
  EXPECT_EQ(v.fence, 42u);
  EXPECT_EQ(v.lease_until, absl::Seconds(10));
  EXPECT_EQ(v.verified_until, absl::Milliseconds(9010));

  snapshot.Clear();
  ASSERT_TRUE(snapshot.Read(&v));
  EXPECT_EQ(v.fence, kNoFence);
  EXPECT_LT(v.lease_until, absl::Hours(-24 * 365));
}

// One writer publishes snapshots whose fields are tied to each other
// (lease = 3 ns x fence, verified = 5 ns x fence) and clears between them;
// readers must only ever see a whole snapshot.
TEST(ActiveSnapshotTest, ReadersNeverSeeHalfAWrite) {
  ActiveSnapshot snapshot;
  std::atomic<bool> done{false};
  std::atomic<int> torn{0};
  std::atomic<int64_t> whole{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < 2; ++r) {
    readers.emplace_back([&] {
      ActiveSnapshot::View v;
      while (!done.load(std::memory_order_acquire)) {
        if (!snapshot.Read(&v)) continue;
        if (v.fence == kNoFence) continue;  // cleared
        const int64_t f = static_cast<int64_t>(v.fence);
        if (v.lease_until != absl::Nanoseconds(3 * f) ||
            v.verified_until != absl::Nanoseconds(5 * f)) {
          torn.fetch_add(1);
        }
        whole.fetch_add(1);
      }
    });
  }
  bool readers_ran = true;
  for (FenceToken f = 1; f <= 200000; ++f) {
    ActiveSnapshot::View v;
    v.fence = f;
    v.lease_until = absl::Nanoseconds(3 * static_cast<int64_t>(f));
    v.verified_until = absl::Nanoseconds(5 * static_cast<int64_t>(f));
    snapshot.Publish(v);
    if (f % 7 == 0) snapshot.Clear();
    // Let readers in now and then on a machine with fewer cores.
    if (f % 1000 == 0) std::this_thread::yield();
    // Halfway, until the readers have read whole snapshots: they then
    // race the second half's writes however the threads are scheduled.
    if (f == 100000) {
      readers_ran = WaitFor([&] { return whole.load() >= 100; });
    }
  }
  done.store(true, std::memory_order_release);
  for (auto& t : readers) t.join();
  EXPECT_TRUE(readers_ran) << "the readers read nothing for a minute";
  EXPECT_EQ(torn.load(), 0);
  EXPECT_GT(whole.load(), 0);
}

}  // namespace
}  // namespace ha_internal
}  // namespace strongbox
