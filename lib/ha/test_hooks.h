// Test seams inside HaCoordinator, for interleavings a test cannot otherwise
// produce deterministically. Not for production use.
#ifndef STRONGBOX_LIB_HA_TEST_HOOKS_H_
#define STRONGBOX_LIB_HA_TEST_HOOKS_H_

#include <functional>

namespace strongbox {
namespace ha_testing {

// Runs `hook` (process-wide; nullptr clears it) inside every Seal(), after
// the state turned kSealed and before the barrier's keys are wiped.
void SetSealGapHook(std::function<void()> hook);

}  // namespace ha_testing
}  // namespace strongbox

#endif  // STRONGBOX_LIB_HA_TEST_HOOKS_H_
