// Test seams inside SecretStore: whether a call took the direct path
// (SecretStoreImpl::Direct: no request or response messages) or the
// message pipeline, which answer alike by design, so a test can tell them
// apart. Process-wide. Not for production use.
#ifndef STRONGBOX_LIB_STORE_TEST_HOOKS_H_
#define STRONGBOX_LIB_STORE_TEST_HOOKS_H_

#include <cstdint>

namespace strongbox {
namespace store_testing {

// Starts (true) or stops counting the calls the direct path serves (off by
// default: the count is one relaxed load per call when off).
void CountDirectCalls(bool on);
// Calls the direct path served while counting was on, in every store of
// the process.
uint64_t DirectCallsServed();

}  // namespace store_testing
}  // namespace strongbox

#endif  // STRONGBOX_LIB_STORE_TEST_HOOKS_H_
