#include "lib/seal/nonce_pool.h"

#include <openssl/mem.h>
#include <openssl/rand.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace strongbox::seal {

NoncePool::NoncePool() {
  long page = sysconf(_SC_PAGESIZE);
  page_size_ = page > 0 ? static_cast<size_t>(page) : 4096;
  void* p = mmap(nullptr, page_size_, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) std::abort();  // like a failed operator new
  page_ = static_cast<uint8_t*>(p);
#ifdef MADV_WIPEONFORK
  wipe_on_fork_ = madvise(page_, page_size_, MADV_WIPEONFORK) == 0;
#endif
  capacity_ = (page_size_ - sizeof(Header)) / kNonceBytes;
  // mmap returns zeroed memory: remaining == 0, the first Draw refills.
}

NoncePool::~NoncePool() {
  OPENSSL_cleanse(page_, page_size_);
  munmap(page_, page_size_);
}

void NoncePool::Refill() {
  Header* header = reinterpret_cast<Header*>(page_);
  RAND_bytes(page_ + sizeof(Header), capacity_ * kNonceBytes);
  header->remaining = static_cast<uint32_t>(capacity_);
  header->next = 0;
  if (!wipe_on_fork_) refill_pid_ = getpid();
}

void NoncePool::Draw(uint8_t* out) {
  MutexLock lock(&mu_);
  Header* header = reinterpret_cast<Header*>(page_);
  if (!wipe_on_fork_ && refill_pid_ != getpid()) header->remaining = 0;
  if (header->remaining == 0 || header->next >= capacity_) Refill();
  uint8_t* nonce = page_ + sizeof(Header) + header->next * kNonceBytes;
  std::memcpy(out, nonce, kNonceBytes);
  std::memset(nonce, 0, kNonceBytes);
  ++header->next;
  --header->remaining;
}

}  // namespace strongbox::seal
