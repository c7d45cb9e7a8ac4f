// A test seam of SecretBytes: a process-wide hook called with every buffer
// just after it was wiped and just before it is freed, so a test can check
// that no key material survived. Part of //:testing (testonly); the hook
// itself lives in the library, where it costs one atomic load per free.
//
// Thread-safety: set it before the code under test runs and reset it to
// nullptr afterwards; the observer may be called from any thread.
#ifndef STRONGBOX_TESTING_SECRET_BYTES_WIPE_OBSERVER_H_
#define STRONGBOX_TESTING_SECRET_BYTES_WIPE_OBSERVER_H_

#include <cstddef>
#include <cstdint>

namespace strongbox {

using SecretBytesWipeObserver = void (*)(const uint8_t* data, size_t size,
                                         void* arg);

// Installs `observer` (nullptr: none), called with `arg`.
void SetSecretBytesWipeObserverForTesting(SecretBytesWipeObserver observer,
                                          void* arg);

}  // namespace strongbox

#endif  // STRONGBOX_TESTING_SECRET_BYTES_WIPE_OBSERVER_H_
