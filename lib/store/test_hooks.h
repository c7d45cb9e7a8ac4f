// Test seams inside SecretStore: whether a call took the direct path
// (SecretStoreImpl::Direct: no request or response messages) or the
// message pipeline, which answer alike by design, so a test can tell them
// apart; and what a KV read left in its thread's read buffer. Not for
// production use.
#ifndef STRONGBOX_LIB_STORE_TEST_HOOKS_H_
#define STRONGBOX_LIB_STORE_TEST_HOOKS_H_

#include <cstdint>
#include <string>

namespace strongbox {
namespace store_testing {

// Starts (true) or stops counting the calls the direct path serves (off by
// default: the count is one relaxed load per call when off).
void CountDirectCalls(bool on);
// Calls the direct path served while counting was on, in every store of
// the process.
uint64_t DirectCallsServed();

// The bytes (to its size) of the buffer KV reads on the calling thread
// keep between reads (lib/store/kv_engine.cc, ReadBuffer), so a test can
// check that a read left no plaintext in it.
std::string ThreadKvReadBufferForTesting();

}  // namespace store_testing
}  // namespace strongbox

#endif  // STRONGBOX_LIB_STORE_TEST_HOOKS_H_
