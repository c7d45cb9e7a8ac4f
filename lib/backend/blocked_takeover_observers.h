// BlockedTakeoverObservers: the observer list a backend that reports
// blocked takeovers keeps (HaBackend::AddBlockedTakeoverObserver). Internal
// to strongbox.
//
// Thread-safe. Notify() calls the observers under the list's lock, so
// Remove() returns only once no call to the removed observer is in flight
// (the contract HaBackend states); observers therefore must not add or
// remove observers from inside the call.
#ifndef STRONGBOX_LIB_BACKEND_BLOCKED_TAKEOVER_OBSERVERS_H_
#define STRONGBOX_LIB_BACKEND_BLOCKED_TAKEOVER_OBSERVERS_H_

#include <algorithm>
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
    MutexLock lock(&mu_);
    observers_.erase(
        std::remove(observers_.begin(), observers_.end(), observer),
        observers_.end());
  }

  void Notify(const BlockedTakeoverEvent& event) {
    MutexLock lock(&mu_);
    for (BlockedTakeoverObserver* o : observers_) o->OnBlockedTakeover(event);
  }

 private:
  Mutex mu_;
  std::vector<BlockedTakeoverObserver*> observers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace strongbox

#endif  // STRONGBOX_LIB_BACKEND_BLOCKED_TAKEOVER_OBSERVERS_H_
