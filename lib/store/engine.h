// What SecretStore hands an engine for one request: where to read and write
// (the barrier), the fence a write must carry, and what this node may trust
// of its own caches. Engines are stateless apart from caches; each engine is
// thread-safe. Internal to strongbox.
#ifndef STRONGBOX_LIB_STORE_ENGINE_H_
#define STRONGBOX_LIB_STORE_ENGINE_H_

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "strongbox/backend.h"
#include "strongbox/barrier.h"
#include "strongbox/clock.h"
#include "strongbox/requests.pb.h"

namespace strongbox {

struct EngineCall {
  // The node's unsealed barrier. Never null.
  Barrier* barrier = nullptr;
  // For writes: the active's fence, carried by every backend write.
  // kNoFence for reads (which must not write).
  FenceToken write_fence = kNoFence;
  // Non-zero only while this node is the active with this fence. Every
  // write to storage in the cluster goes through the active under its
  // fence, so a cache entry loaded or written under this same fence is
  // current; anything else (a standby, an entry from an earlier term of
  // leadership) must be re-validated against storage.
  FenceToken active_fence = kNoFence;
  // The request's read-after-write index (0: none).
  uint64_t min_index = 0;
  // Wall time for metadata (created/updated times and Transit's key
  // records), read by Now() only where a write needs it: most requests
  // need none. Not owned; null: the Unix epoch.
  Clock* clock = nullptr;

  absl::Time Now() const {
    return clock != nullptr ? clock->Now() : absl::UnixEpoch();
  }
};

}  // namespace strongbox

#endif  // STRONGBOX_LIB_STORE_ENGINE_H_
