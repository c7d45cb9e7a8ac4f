// BlockedTakeoverObservers: the observer list a backend that reports
// blocked takeovers keeps (HaBackend::AddBlockedTakeoverObserver). Internal
// to strongbox.
//
// Thread-safe. Notify() calls the observers outside the list's lock (an
// observer may take its own locks, run host callbacks, even add or remove
// observers), and Remove() returns only once no other thread's call to
// the removed observer is in flight, the contract HaBackend states. (From
// inside a call, Remove() does not wait for that very call.)
#ifndef STRONGBOX_LIB_BACKEND_BLOCKED_TAKEOVER_OBSERVERS_H_
#define STRONGBOX_LIB_BACKEND_BLOCKED_TAKEOVER_OBSERVERS_H_

#include <algorithm>
#include <thread>
#include <vector>

#include "lib/util/mutex.h"
#include "strongbox/backend.h"

namespace strongbox {

class BlockedTakeoverObservers {
 public:
  void Add(BlockedTakeoverObserver* observer) {
    if (observer == nullptr) return;
    MutexLock lock(&mu_);
    observers_.push_back(observer);
  }

  void Remove(BlockedTakeoverObserver* observer) {
    const std::thread::id self = std::this_thread::get_id();
    MutexLock lock(&mu_);
    observers_.erase(
        std::remove(observers_.begin(), observers_.end(), observer),
        observers_.end());
    // A notification in flight may still hold `observer` in its copy.
    mu_.Await([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return std::all_of(notifying_.begin(), notifying_.end(),
                         [&](std::thread::id t) { return t == self; });
    });
  }

  void Notify(const BlockedTakeoverEvent& event) {
    const std::thread::id self = std::this_thread::get_id();
    std::vector<BlockedTakeoverObserver*> observers;
    {
      MutexLock lock(&mu_);
      observers = observers_;
      notifying_.push_back(self);
    }
    for (BlockedTakeoverObserver* o : observers) o->OnBlockedTakeover(event);
    {
      MutexLock lock(&mu_);
      notifying_.erase(std::find(notifying_.begin(), notifying_.end(), self));
    }
    mu_.SignalAll();
  }

 private:
  Mutex mu_;
  std::vector<BlockedTakeoverObserver*> observers_ ABSL_GUARDED_BY(mu_);
  // The threads inside Notify() now (one entry per call in flight).
  std::vector<std::thread::id> notifying_ ABSL_GUARDED_BY(mu_);
};

}  // namespace strongbox

#endif  // STRONGBOX_LIB_BACKEND_BLOCKED_TAKEOVER_OBSERVERS_H_
