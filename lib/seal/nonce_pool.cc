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
  void* p = mmap(nullptr, page_size_ * kShards, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) std::abort();  // like a failed operator new
  pages_ = static_cast<uint8_t*>(p);
#ifdef MADV_WIPEONFORK
  wipe_on_fork_ = madvise(pages_, page_size_ * kShards, MADV_WIPEONFORK) == 0;
#endif
  capacity_ = (page_size_ - sizeof(Header)) / kNonceBytes;
  for (int i = 0; i < kShards; ++i) shards_[i].page = pages_ + i * page_size_;
  // mmap returns zeroed memory: remaining == 0, the first Draw refills.
}

NoncePool::~NoncePool() {
  OPENSSL_cleanse(pages_, page_size_ * kShards);
  munmap(pages_, page_size_ * kShards);
}

void NoncePool::Refill(Shard& shard) {
  Header* header = reinterpret_cast<Header*>(shard.page);
  RAND_bytes(shard.page + sizeof(Header), capacity_ * kNonceBytes);
  header->remaining = static_cast<uint32_t>(capacity_);
  header->next = 0;
  if (!wipe_on_fork_) shard.refill_pid = getpid();
}

void NoncePool::Draw(uint8_t* out) {
  Shard& shard = shards_[ThisThreadIndex() % kShards];
  MutexLock lock(&shard.mu);
  Header* header = reinterpret_cast<Header*>(shard.page);
  if (!wipe_on_fork_ && shard.refill_pid != getpid()) header->remaining = 0;
  if (header->remaining == 0 || header->next >= capacity_) Refill(shard);
  uint8_t* nonce = shard.page + sizeof(Header) + header->next * kNonceBytes;
  std::memcpy(out, nonce, kNonceBytes);
  std::memset(nonce, 0, kNonceBytes);
  ++header->next;
  --header->remaining;
}

}  // namespace strongbox::seal
