// ForkChecked(): wraps a coordinator so that a forked child's copy fails
// closed (ha_coordinator.h, "fork()"). Internal to strongbox.
#ifndef STRONGBOX_LIB_HA_FORK_CHECKED_COORDINATOR_H_
#define STRONGBOX_LIB_HA_FORK_CHECKED_COORDINATOR_H_

#include <memory>

#include "strongbox/ha_coordinator.h"

namespace strongbox {

// Returns `coordinator` behind a fork check on every call. Call it in the
// process that created `coordinator`. In a forked child every call fails
// closed without touching `coordinator`, and destroying the wrapper leaks
// it (its threads do not exist in the child, its grant is the parent's,
// its locks may be held forever).
std::unique_ptr<HaCoordinator> ForkChecked(
    std::unique_ptr<HaCoordinator> coordinator);

}  // namespace strongbox

#endif  // STRONGBOX_LIB_HA_FORK_CHECKED_COORDINATOR_H_
