#include "strongbox/secret_bytes.h"

#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

#include "lib/crypto/random.h"
#include "lib/crypto/secure_memory.h"
#include "strongbox/testing/secret_bytes_wipe_observer.h"

namespace strongbox {
namespace {

std::atomic<SecretBytesWipeObserver> g_wipe_observer{nullptr};
std::atomic<uint64_t> g_lock_failures{0};
std::atomic<void*> g_wipe_observer_arg{nullptr};

size_t PageSize() {
  static const size_t page = [] {
    long p = sysconf(_SC_PAGESIZE);
    return p > 0 ? static_cast<size_t>(p) : size_t{4096};
  }();
  return page;
}

}  // namespace

SecretBytes::SecretBytes(size_t size) {
  if (size == 0) return;
  const size_t page = PageSize();
  const size_t capacity = (size + page - 1) / page * page;
  void* p = nullptr;
  if (posix_memalign(&p, page, capacity) != 0 || p == nullptr) {
    // Like operator new: allocation failure is not recoverable here.
    std::abort();
  }
  std::memset(p, 0, capacity);
  // Failure tolerated (RLIMIT_MEMLOCK reached, EPERM): the buffer stays in
  // ordinary memory, and the count tells the host (which may log it).
  locked_ = mlock(p, capacity) == 0;
  if (!locked_) g_lock_failures.fetch_add(1, std::memory_order_relaxed);
#ifdef MADV_DONTDUMP
  (void)madvise(p, capacity, MADV_DONTDUMP);
#endif
  data_ = static_cast<uint8_t*>(p);
  size_ = size;
  capacity_ = capacity;
}

SecretBytes::SecretBytes(SecretBytes&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      capacity_(std::exchange(other.capacity_, 0)),
      locked_(std::exchange(other.locked_, false)) {}

SecretBytes& SecretBytes::operator=(SecretBytes&& other) noexcept {
  if (this != &other) {
    Clear();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    capacity_ = std::exchange(other.capacity_, 0);
    locked_ = std::exchange(other.locked_, false);
  }
  return *this;
}

SecretBytes SecretBytes::Copy(absl::string_view bytes) {
  SecretBytes out(bytes.size());
  if (!bytes.empty()) std::memcpy(out.data_, bytes.data(), bytes.size());
  return out;
}

SecretBytes SecretBytes::Random(size_t size) {
  SecretBytes out(size);
  if (size > 0 && !crypto::RandomBytes(absl::MakeSpan(out.data_, size)).ok()) {
    // A key that is not random must never be used, and this signature
    // cannot report the failure (BoringSSL itself aborts here).
    std::abort();
  }
  return out;
}

bool SecretBytes::Equals(const SecretBytes& other) const {
  return Equals(other.view());
}

bool SecretBytes::Equals(absl::string_view other) const {
  if (other.size() != size_) return false;
  if (size_ == 0) return true;
  return crypto::ConstantTimeEquals(data_, other.data(), size_);
}

void SecretBytes::Clear() {
  if (data_ == nullptr) return;
  crypto::Cleanse(data_, capacity_);
  if (SecretBytesWipeObserver observer =
          g_wipe_observer.load(std::memory_order_acquire)) {
    observer(data_, capacity_, g_wipe_observer_arg.load());
  }
  if (locked_) munlock(data_, capacity_);
  std::free(data_);
  data_ = nullptr;
  size_ = 0;
  capacity_ = 0;
  locked_ = false;
}

void SetSecretBytesWipeObserverForTesting(SecretBytesWipeObserver observer,
                                          void* arg) {
  g_wipe_observer_arg.store(arg);
  g_wipe_observer.store(observer, std::memory_order_release);
}

uint64_t SecretBytesLockFailures() {
  return g_lock_failures.load(std::memory_order_relaxed);
}

void WipeMemory(void* data, size_t size) { crypto::Cleanse(data, size); }

void WipeString(std::string& s) {
  // The whole buffer: bytes past size() may hold what a shorter value or a
  // move left behind.
  s.resize(s.capacity());
  if (!s.empty()) crypto::Cleanse(&s[0], s.size());
  s.clear();
}

}  // namespace strongbox
