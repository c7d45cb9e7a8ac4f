// SHA-256 and HMAC-SHA256 from the crypto provider. Thread-safe.
#ifndef STRONGBOX_LIB_CRYPTO_DIGEST_H_
#define STRONGBOX_LIB_CRYPTO_DIGEST_H_

#include <array>
#include <cstddef>
#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace strongbox::crypto {

inline constexpr size_t kSha256Bytes = 32;
using Sha256Digest = std::array<uint8_t, kSha256Bytes>;

// SHA-256 of `data`. INTERNAL if the provider fails.
absl::StatusOr<Sha256Digest> Sha256(absl::string_view data);

// HMAC-SHA256 of `data` under `key` (any length). INTERNAL if the provider
// fails. The result is as secret as the key when used as derived key
// material: the caller wipes it.
absl::StatusOr<Sha256Digest> HmacSha256(absl::string_view key,
                                        absl::string_view data);

}  // namespace strongbox::crypto

#endif  // STRONGBOX_LIB_CRYPTO_DIGEST_H_
