// BlockedTakeoverObservers: observers are called outside the list's lock
// (so one may add or remove observers from inside its call), and Remove()
// waits for another thread's call in flight to the removed observer.
#include "lib/backend/blocked_takeover_observers.h"

#include <atomic>
#include <thread>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace strongbox {
namespace {

class Counting : public BlockedTakeoverObserver {
 public:
  void OnBlockedTakeover(const BlockedTakeoverEvent& event) override {
    ++calls;
    last_pid = event.pid;
  }
  std::atomic<int> calls{0};
  std::atomic<uint32_t> last_pid{0};
};

BlockedTakeoverEvent Event(uint32_t pid) {
  BlockedTakeoverEvent e;
  e.pid = pid;
  return e;
}

TEST(BlockedTakeoverObserversTest, NotifiesEveryObserverUntilRemoved) {
  BlockedTakeoverObservers list;
  Counting a, b;
  list.Add(&a);
  list.Add(&b);
  list.Add(nullptr);  // ignored
  list.Notify(Event(7));
  EXPECT_EQ(a.calls, 1);
  EXPECT_EQ(b.last_pid, 7u);
  list.Remove(&a);
  list.Notify(Event(8));
  EXPECT_EQ(a.calls, 1);
  EXPECT_EQ(b.calls, 2);
}

// An observer that removes itself and adds another from inside its call
// (no deadlock: the call runs outside the list's lock).
TEST(BlockedTakeoverObserversTest, ObserverMayChangeTheListFromItsCall) {
  BlockedTakeoverObservers list;
  Counting added;
  class SelfRemoving : public BlockedTakeoverObserver {
   public:
    SelfRemoving(BlockedTakeoverObservers* list, BlockedTakeoverObserver* add)
        : list_(list), add_(add) {}
    void OnBlockedTakeover(const BlockedTakeoverEvent&) override {
      ++calls;
      list_->Remove(this);
      list_->Add(add_);
    }
    int calls = 0;

   private:
    BlockedTakeoverObservers* const list_;
    BlockedTakeoverObserver* const add_;
  } self_removing(&list, &added);
  list.Add(&self_removing);
  list.Notify(Event(1));
  list.Notify(Event(2));
  EXPECT_EQ(self_removing.calls, 1);
  EXPECT_EQ(added.calls, 1);
}

// Remove() returns only after another thread's call to the removed
// observer has returned, so the caller may destroy it then.
TEST(BlockedTakeoverObserversTest, RemoveWaitsForACallInFlight) {
  BlockedTakeoverObservers list;
  class Blocking : public BlockedTakeoverObserver {
   public:
    void OnBlockedTakeover(const BlockedTakeoverEvent&) override {
      entered = true;
      while (!release) std::this_thread::yield();
      returned = true;
    }
    std::atomic<bool> entered{false}, release{false}, returned{false};
  } blocking;
  list.Add(&blocking);
  std::thread notifier([&] { list.Notify(Event(3)); });
  while (!blocking.entered) std::this_thread::yield();
  std::atomic<bool> removed{false};
  bool returned_before_remove = false;
  std::thread remover([&] {
    list.Remove(&blocking);
    returned_before_remove = blocking.returned;
    removed = true;
  });
  // Give Remove() a chance to return early if it were wrong; it must not.
  const absl::Time until = absl::Now() + absl::Milliseconds(50);
  while (absl::Now() < until && !removed) std::this_thread::yield();
  EXPECT_FALSE(removed) << "Remove() returned while a call was in flight";
  blocking.release = true;
  remover.join();
  notifier.join();
  EXPECT_TRUE(returned_before_remove);
}

}  // namespace
}  // namespace strongbox
