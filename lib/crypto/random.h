// Random bytes from the crypto provider's CSPRNG (BoringSSL or OpenSSL 3,
// both fork-safe in their own right). Thread-safe.
#ifndef STRONGBOX_LIB_CRYPTO_RANDOM_H_
#define STRONGBOX_LIB_CRYPTO_RANDOM_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace strongbox::crypto {

// Fills `out` with random bytes. INTERNAL if the provider's RNG fails; then
// `out` is wiped, and must not be used as random.
absl::Status RandomBytes(absl::Span<uint8_t> out);

}  // namespace strongbox::crypto

#endif  // STRONGBOX_LIB_CRYPTO_RANDOM_H_
