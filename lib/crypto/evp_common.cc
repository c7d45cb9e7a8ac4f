// What both providers implement the same way: their EVP digest and HMAC,
// CRYPTO_memcmp and OPENSSL_cleanse have the same signatures in BoringSSL
// and OpenSSL 3, so one definition compiles against whichever provider's
// headers the build chose (lib/crypto/BUILD.bazel).
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#ifdef OPENSSL_IS_BORINGSSL
#include <openssl/mem.h>
#endif

#include <climits>
#include <cstdint>

#include "lib/crypto/digest.h"
#include "lib/crypto/secure_memory.h"

namespace strongbox::crypto {
namespace {

const uint8_t* U8(absl::string_view s) {
  return reinterpret_cast<const uint8_t*>(s.data());
}

}  // namespace

// ---------------------------------------------------------------- memory

namespace internal {
void ProviderCleanse(void* data, size_t size) { OPENSSL_cleanse(data, size); }
}  // namespace internal

bool ConstantTimeEquals(const void* a, const void* b, size_t size) {
  return size == 0 || CRYPTO_memcmp(a, b, size) == 0;
}

// --------------------------------------------------------------- digests

absl::StatusOr<Sha256Digest> Sha256(absl::string_view data) {
  Sha256Digest digest;
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), digest.data(), &len, EVP_sha256(),
                 nullptr) != 1 ||
      len != digest.size()) {
    return absl::InternalError("SHA-256 failed");
  }
  return digest;
}

absl::StatusOr<Sha256Digest> HmacSha256(absl::string_view key,
                                        absl::string_view data) {
  Sha256Digest mac;
  unsigned int len = 0;
  // HMAC() needs a valid pointer even for an empty key; OpenSSL 3 takes
  // the key's length as an int.
  static const uint8_t kEmpty[1] = {0};
  if (key.size() > static_cast<size_t>(INT_MAX)) {
    return absl::InvalidArgumentError("HMAC key is too long");
  }
  if (HMAC(EVP_sha256(), key.empty() ? kEmpty : U8(key),
           static_cast<int>(key.size()), U8(data), data.size(), mac.data(),
           &len) == nullptr ||
      len != mac.size()) {
    return absl::InternalError("HMAC-SHA256 failed");
  }
  return mac;
}

}  // namespace strongbox::crypto
