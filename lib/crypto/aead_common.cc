// Provider-independent parts of Aes256GcmKey.
#include <atomic>

#include "lib/crypto/aead.h"

namespace strongbox::crypto {
namespace {
std::atomic<int64_t> g_live_keys{0};
}  // namespace

void Aes256GcmKey::CountLive(int delta) {
  g_live_keys.fetch_add(delta, std::memory_order_relaxed);
}

int64_t Aes256GcmKey::LiveKeysForTesting() {
  return g_live_keys.load(std::memory_order_relaxed);
}

absl::Status Aes256GcmKey::Open(absl::Span<const uint8_t> nonce,
                                absl::string_view sealed, absl::string_view ad,
                                absl::Span<uint8_t> out) const {
  if (nonce.size() != kNonceBytes) {
    return absl::InvalidArgumentError("AES-GCM nonce must be 12 bytes");
  }
  if (sealed.size() < kTagBytes) {
    return absl::DataLossError("AEAD ciphertext is shorter than its tag");
  }
  if (out.size() != sealed.size() - kTagBytes) {
    return absl::InvalidArgumentError("AEAD output buffer has the wrong size");
  }
  return OpenInto(sealed, ad, out.data(), nonce.data());
}

}  // namespace strongbox::crypto
