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

}  // namespace strongbox::crypto
