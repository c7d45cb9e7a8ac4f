// NoncePool: 96-bit AES-GCM nonces drawn from BoringSSL's RNG in batches.
//
// RAND_bytes(12) costs about as much as sealing three 64-byte values, so the
// pool fills one page with RAND_bytes at a time and hands it out 12 bytes
// at a time (about 4 ns each). Safety:
//   * Never repeated: each nonce is copied out and its bytes in the pool are
//     overwritten with zeros before the lock is released; a refill draws
//     fresh RNG output. Nonces are therefore exactly as unique as RAND_bytes
//     output, i.e. random 96-bit values.
//   * Fork-safe: the page is a private anonymous mapping marked
//     MADV_WIPEONFORK, so a fork()ed child sees it zeroed — including the
//     "nonces left" counter stored in the page itself — and refills from
//     its own RNG instead of reusing its parent's bytes. If the kernel lacks
//     MADV_WIPEONFORK (Linux < 4.14) the pool records the pid at every
//     refill and compares getpid() on every draw instead (slower, equally
//     safe).
// Thread-safe (a lock per shard of threads, held for a 12-byte copy).
#ifndef STRONGBOX_LIB_SEAL_NONCE_POOL_H_
#define STRONGBOX_LIB_SEAL_NONCE_POOL_H_

#include <sys/types.h>

#include <cstddef>
#include <cstdint>

#include "lib/util/mutex.h"

namespace strongbox::seal {

class NoncePool {
 public:
  static constexpr size_t kNonceBytes = 12;

  NoncePool();
  ~NoncePool();
  NoncePool(const NoncePool&) = delete;
  NoncePool& operator=(const NoncePool&) = delete;

  // Writes a fresh nonce to out[0..11].
  void Draw(uint8_t* out);

  // Whether the page is wiped on fork by the kernel (else getpid() checks).
  bool wipe_on_fork() const { return wipe_on_fork_; }

 private:
  // Laid out at the start of each shard's page; the rest holds nonces.
  struct Header {
    uint32_t remaining;  // nonces left; zero after a fork (WIPEONFORK)
    uint32_t next;       // index of the next nonce to hand out
  };
  // Threads draw from the shard of their thread index, so two threads on
  // two cores do not contend for one lock. Each shard is one page.
  static constexpr int kShards = 8;
  struct alignas(64) Shard {
    Mutex mu;
    uint8_t* page = nullptr;                   // constant after construction
    pid_t refill_pid ABSL_GUARDED_BY(mu) = 0;  // fallback fork detection
  };
  void Refill(Shard& shard) ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);

  // Constant after construction.
  uint8_t* pages_ = nullptr;  // kShards pages, one mapping
  size_t page_size_ = 0;
  size_t capacity_ = 0;  // nonces per page
  bool wipe_on_fork_ = false;

  Shard shards_[kShards];
};

}  // namespace strongbox::seal

#endif  // STRONGBOX_LIB_SEAL_NONCE_POOL_H_
