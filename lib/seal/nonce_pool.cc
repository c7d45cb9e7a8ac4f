#include "lib/seal/nonce_pool.h"

#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <set>

#include "absl/types/span.h"
#include "lib/crypto/random.h"
#include "lib/crypto/secure_memory.h"
#include "lib/util/status_macros.h"

namespace strongbox::seal {
namespace {

// Process-wide by nature: fork() is. Bumped only in a fork child, where
// the child is still single-threaded.
std::atomic<uint64_t> g_fork_generation{0};

// Whether the kernel really wipes [p, p + len) in a fork child. Like
// BoringSSL's fork detection, an invalid advice must fail before
// MADV_WIPEONFORK's 0 is believed: under qemu-user and some sandboxes
// (a seccomp filter answering 0) madvise succeeds and does nothing.
bool ProbeWipeOnFork(void* p, size_t len) {
#ifdef MADV_WIPEONFORK
  if (madvise(p, len, -1) == 0) return false;
  return madvise(p, len, MADV_WIPEONFORK) == 0;
#else
  return false;
#endif
}

}  // namespace

// The live pools and the pthread_atfork handlers that lock all their
// shards around fork(). Leaked on purpose: the handlers outlive every pool.
class NoncePoolForkHandlers {
 public:
  static void Register(NoncePool* pool) {
    static std::once_flag once;
    std::call_once(once, [] { pthread_atfork(&Prepare, &Parent, &Child); });
    MutexLock lock(&mu());
    pools().insert(pool);
  }
  static void Unregister(NoncePool* pool) {
    MutexLock lock(&mu());
    pools().erase(pool);
  }

 private:
  static Mutex& mu() {
    static Mutex* const mu = new Mutex;
    return *mu;
  }
  static std::set<NoncePool*>& pools() {
    static std::set<NoncePool*>* const pools = new std::set<NoncePool*>;
    return *pools;
  }
  // Runs in the forking thread, before fork(): no pool can be created,
  // destroyed or drawn from until Parent/Child.
  static void Prepare() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    mu().Lock();
    for (NoncePool* pool : pools()) pool->LockAllShards();
  }
  static void Parent() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    for (NoncePool* pool : pools()) pool->UnlockAllShards();
    mu().Unlock();
  }
  // In the child, the forking thread (the only one) owns every lock.
  static void Child() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    g_fork_generation.fetch_add(1, std::memory_order_relaxed);
    for (NoncePool* pool : pools()) pool->UnlockAllShards();
    mu().Unlock();
  }
};

NoncePool::NoncePool() {
  long page = sysconf(_SC_PAGESIZE);
  page_size_ = page > 0 ? static_cast<size_t>(page) : 4096;
  void* p = mmap(nullptr, page_size_ * kShards, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) std::abort();  // like a failed operator new
  pages_ = static_cast<uint8_t*>(p);
  wipe_on_fork_ = ProbeWipeOnFork(pages_, page_size_ * kShards);
  capacity_ = (page_size_ - sizeof(Header)) / kNonceBytes;
  for (int i = 0; i < kShards; ++i) shards_[i].page = pages_ + i * page_size_;
  // mmap returns zeroed memory: remaining == 0, the first Draw refills.
  NoncePoolForkHandlers::Register(this);
}

NoncePool::~NoncePool() {
  NoncePoolForkHandlers::Unregister(this);
  crypto::Cleanse(pages_, page_size_ * kShards);
  munmap(pages_, page_size_ * kShards);
}

uint64_t NoncePool::ForkGenerationForTesting() {
  return g_fork_generation.load(std::memory_order_relaxed);
}

void NoncePool::LockAllShards() {
  for (Shard& shard : shards_) shard.mu.Lock();
}

void NoncePool::UnlockAllShards() {
  for (Shard& shard : shards_) shard.mu.Unlock();
}

absl::Status NoncePool::Refill(Shard& shard, uint64_t generation) {
  Header* header = reinterpret_cast<Header*>(shard.page);
  header->remaining = 0;
  header->next = 0;
  RETURN_IF_ERROR(crypto::RandomBytes(
      absl::MakeSpan(shard.page + sizeof(Header), capacity_ * kNonceBytes)));
  header->remaining = static_cast<uint32_t>(capacity_);
  shard.refill_pid = getpid();
  shard.refill_generation = generation;
  return absl::OkStatus();
}

absl::Status NoncePool::Draw(uint8_t* out) {
  return DrawFrom(shards_[CurrentShardIndex() % kShards], out);
}

absl::Status NoncePool::DrawFromShardForTesting(int shard, uint8_t* out) {
  return DrawFrom(shards_[static_cast<unsigned>(shard) % kShards], out);
}

absl::Status NoncePool::DrawFrom(Shard& shard, uint8_t* out) {
  // Read before locking: only this thread can fork this thread, so neither
  // changes until Draw returns. getpid() is a system call (≈ 1.5 µs on
  // this project's VMs, several 64-byte seals), so it runs on every draw
  // only when the kernel's wipe is not proven: a proven wipe already
  // empties the page in every child, however it was forked.
  const uint64_t generation = g_fork_generation.load(std::memory_order_relaxed);
  const pid_t pid = wipe_on_fork_ ? 0 : getpid();
  MutexLock lock(&shard.mu);
  Header* header = reinterpret_cast<Header*>(shard.page);
  if (shard.refill_generation != generation ||
      (!wipe_on_fork_ && shard.refill_pid != pid)) {
    header->remaining = 0;  // filled by another process: never hand it out
  }
  if (header->remaining == 0 || header->next >= capacity_) {
    RETURN_IF_ERROR(Refill(shard, generation));
  }
  uint8_t* nonce = shard.page + sizeof(Header) + header->next * kNonceBytes;
  std::memcpy(out, nonce, kNonceBytes);
  std::memset(nonce, 0, kNonceBytes);
  ++header->next;
  --header->remaining;
  return absl::OkStatus();
}

}  // namespace strongbox::seal
