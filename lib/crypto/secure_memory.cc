#include "lib/crypto/secure_memory.h"

#include <atomic>

namespace strongbox::crypto {
namespace {

std::atomic<CleanseObserver> g_observer{nullptr};
std::atomic<void*> g_observer_arg{nullptr};

}  // namespace

void Cleanse(void* data, size_t size) {
  if (size == 0) return;
  internal::ProviderCleanse(data, size);
  if (CleanseObserver observer = g_observer.load(std::memory_order_acquire)) {
    observer(static_cast<const uint8_t*>(data), size, g_observer_arg.load());
  }
}

void SetCleanseObserverForTesting(CleanseObserver observer, void* arg) {
  g_observer_arg.store(arg);
  g_observer.store(observer, std::memory_order_release);
}

}  // namespace strongbox::crypto
