// NoncePool: 96-bit AES-GCM nonces drawn from the crypto provider's RNG in
// batches.
//
// One RAND_bytes(12) costs about as much as sealing three 64-byte values
// (several times more under OpenSSL 3), so the pool fills one page at a
// time and hands it out 12 bytes at a time. Safety:
//   * Never repeated: each nonce is copied out and its bytes in the pool are
//     overwritten with zeros before the lock is released; a refill draws
//     fresh RNG output. Nonces are therefore exactly as unique as the RNG's
//     output, i.e. random 96-bit values (so at most 2^32 messages per key).
//   * Fork-safe, because a forked child that handed out its parent's
//     buffered nonces would repeat them under the same keys:
//       - every draw compares a fork generation, bumped by a pthread_atfork
//         child handler, with the one the shard was filled under (any
//         fork() through libc, whatever the kernel does);
//       - the pages are marked MADV_WIPEONFORK, trusted only when the
//         kernel provably honours it: as in BoringSSL's fork detection, an
//         invalid advice must fail first, since qemu-user and some
//         sandboxes answer 0 to every madvise and do nothing. A proven
//         wipe empties the pages in every child, even one made by a raw
//         fork/clone system call that runs no atfork handler;
//       - without a proven wipe, every draw also compares getpid() with
//         the pid that filled the shard (a raw fork, or a generation
//         counter inherited by a pid-reusing child). That is a system call
//         per draw (≈ 1.5 µs on this project's VMs), the price BoringSSL's
//         RNG pays too when it cannot trust MADV_WIPEONFORK. With a proven
//         wipe the pid is checked at every refill only.
//     Not covered: a VM snapshot cloned and resumed twice (same pid, no
//     fork); nothing short of the hypervisor's generation id sees that.
//     The atfork handlers also hold every shard's lock across fork(), so
//     the child never inherits a shard locked by a thread it does not have.
// Thread-safe (a lock per shard, one shard per CPU up to kShards, held for
// a 12-byte copy).
#ifndef STRONGBOX_LIB_SEAL_NONCE_POOL_H_
#define STRONGBOX_LIB_SEAL_NONCE_POOL_H_

#include <sys/types.h>

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "lib/util/mutex.h"

namespace strongbox::seal {

class NoncePool {
 public:
  static constexpr size_t kNonceBytes = 12;
  // Threads draw from the shard of the CPU they run on
  // (CurrentShardIndex), so two threads on two cores do not contend for one
  // lock. Each shard is one page.
  static constexpr int kShards = 8;

  NoncePool();
  ~NoncePool();
  NoncePool(const NoncePool&) = delete;
  NoncePool& operator=(const NoncePool&) = delete;

  // Writes a fresh nonce to out[0..11]. INTERNAL if the RNG fails (then
  // nothing is written).
  absl::Status Draw(uint8_t* out);

  // Whether the kernel provably wipes the pages on fork (the pid and
  // generation checks run regardless).
  bool wipe_on_fork() const { return wipe_on_fork_; }

  // The process's fork generation: 0 in the original process, +1 in each
  // fork() child (pthread_atfork).
  static uint64_t ForkGenerationForTesting();

  // Draw() from shard `shard % kShards` instead of the calling thread's:
  // lets a fork test reach every shard from one thread.
  absl::Status DrawFromShardForTesting(int shard, uint8_t* out);

 private:
  friend class NoncePoolForkHandlers;

  // Laid out at the start of each shard's page; the rest holds nonces.
  struct Header {
    uint32_t remaining;  // nonces left; zero after a fork (WIPEONFORK)
    uint32_t next;       // index of the next nonce to hand out
  };
  struct alignas(64) Shard {
    Mutex mu;
    uint8_t* page = nullptr;                   // constant after construction
    pid_t refill_pid ABSL_GUARDED_BY(mu) = 0;  // the process that filled it
    uint64_t refill_generation ABSL_GUARDED_BY(mu) = 0;
  };
  absl::Status DrawFrom(Shard& shard, uint8_t* out);
  absl::Status Refill(Shard& shard, uint64_t generation)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  // Around fork() (NoncePoolForkHandlers): every shard locked, then
  // unlocked in the parent and in the child.
  void LockAllShards() ABSL_NO_THREAD_SAFETY_ANALYSIS;
  void UnlockAllShards() ABSL_NO_THREAD_SAFETY_ANALYSIS;

  // Constant after construction.
  uint8_t* pages_ = nullptr;  // kShards pages, one mapping
  size_t page_size_ = 0;
  size_t capacity_ = 0;  // nonces per page
  bool wipe_on_fork_ = false;

  Shard shards_[kShards];
};

}  // namespace strongbox::seal

#endif  // STRONGBOX_LIB_SEAL_NONCE_POOL_H_
