// Wiping and comparing secret bytes without leaking them to the optimizer
// or to timing. Thread-safe (they touch only the caller's memory).
#ifndef STRONGBOX_LIB_CRYPTO_SECURE_MEMORY_H_
#define STRONGBOX_LIB_CRYPTO_SECURE_MEMORY_H_

#include <cstddef>
#include <cstdint>

namespace strongbox::crypto {

// Overwrites data[0..size) with zeros; never optimized away. `data` may be
// null when size == 0.
void Cleanse(void* data, size_t size);

// Whether a[0..size) == b[0..size), in time that depends only on `size`.
bool ConstantTimeEquals(const void* a, const void* b, size_t size);

// ---- Test seam. Called with every buffer Cleanse just wiped (key
// schedules of Aes256GcmKey included), so a test can check that nothing
// survived. Process-wide; set it only in tests, and reset it to nullptr.
using CleanseObserver = void (*)(const uint8_t* data, size_t size, void* arg);
void SetCleanseObserverForTesting(CleanseObserver observer, void* arg);

namespace internal {
// The provider's own wipe (OPENSSL_cleanse); Cleanse adds the test seam.
void ProviderCleanse(void* data, size_t size);
}  // namespace internal

}  // namespace strongbox::crypto

#endif  // STRONGBOX_LIB_CRYPTO_SECURE_MEMORY_H_
