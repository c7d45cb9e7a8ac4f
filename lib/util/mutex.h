// strongbox's one lock type: a std::mutex / std::condition_variable pair
// wrapped with Abseil's thread-safety annotations.
//
// Why not absl::Mutex: Debian's prebuilt Abseil is not built with
// ThreadSanitizer, so TSan cannot see its synchronization and reports races
// on correctly guarded fields; std:: primitives are pthread based and TSan
// sees them. The annotations keep clang's -Wthread-safety checking every
// ABSL_GUARDED_BY field. Waits take a predicate and a deadline, in the habit
// of absl::Mutex::AwaitWithDeadline.
//
// Thread-safe: that is its purpose. Not copyable or movable.
#ifndef STRONGBOX_LIB_UTIL_MUTEX_H_
#define STRONGBOX_LIB_UTIL_MUTEX_H_

#include <sched.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <shared_mutex>

#include "absl/base/thread_annotations.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace strongbox {

class ABSL_LOCKABLE Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void Unlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }
  // Takes the lock if it is free; true if it did.
  bool TryLock() ABSL_EXCLUSIVE_TRYLOCK_FUNCTION(true) {
    return mu_.try_lock();
  }
  void AssertHeld() const ABSL_ASSERT_EXCLUSIVE_LOCK() {}

  // Blocks until `pred()` holds. REQUIRES: held.
  template <typename Pred>
  void Await(Pred pred) ABSL_EXCLUSIVE_LOCKS_REQUIRED(this) {
    std::unique_lock<std::mutex> lock(mu_, std::adopt_lock);
    cv_.wait(lock, pred);
    lock.release();
  }

  // Blocks until `pred()` holds or `timeout` of real time passes; returns
  // pred(). REQUIRES: held.
  template <typename Pred>
  bool AwaitWithTimeout(Pred pred, absl::Duration timeout)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(this) {
    std::unique_lock<std::mutex> lock(mu_, std::adopt_lock);
    bool ok = cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout), pred);
    lock.release();
    return ok;
  }

  // Wakes every waiter so it re-evaluates its predicate. Callers change
  // guarded state and then signal, with or without the lock held.
  void SignalAll() { cv_.notify_all(); }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
};

class ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) {
    mu_->Lock();
  }
  ~MutexLock() ABSL_UNLOCK_FUNCTION() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* const mu_;
};

// A small number fixed for the life of the calling thread, different for
// threads started one after another: for spreading threads over shards of
// per-thread state (lock shards, nonce pools) so that two threads on two
// cores do not write the same cache line.
inline int ThisThreadIndex() {
  static std::atomic<unsigned> next{0};
  thread_local const int index = static_cast<int>(
      next.fetch_add(1, std::memory_order_relaxed) & 0x7fffffff);
  return index;
}

// Which of a set of shards of per-CPU state (lock shards, nonce pools,
// provider contexts) the calling thread should use now: its CPU's
// (sched_getcpu, a read of the kernel's rseq area, ≈ 2 ns), so threads
// running at the same moment on different CPUs never pick the same shard
// while there are at least as many shards as CPUs. (Picking by
// ThisThreadIndex() did not ensure that: two threads whose indices met
// modulo the shard count shared a shard for life. gate_bench's two reader
// threads, made anew for each run, met often: a third of their time went
// to the three reader locks' cache line.) A thread can move to another CPU
// at any moment, so a caller that must come back to the same shard
// remembers it. Where the CPU is unknown, the thread's index.
inline int CurrentShardIndex() {
  const int cpu = sched_getcpu();
  return cpu >= 0 ? cpu : ThisThreadIndex();
}

// A reader/writer lock for read-mostly state on hot paths (the perf-standby
// read path takes several per request).
//
// Readers scale across cores: the lock is split into kShards
// cache-line-sized std::shared_mutex shards, a reader takes only the shard
// of the CPU it runs on (CurrentShardIndex) and unlocks that one, and a
// writer takes every shard in order. An uncontended reader costs what one
// std::shared_mutex costs, and two readers running at once on two CPUs
// never write the same cache line while there are at most kShards CPUs; a
// writer costs kShards lock operations, which read-mostly state can
// afford.
//
// Never take a reader lock on a SharedMutex whose reader lock this thread
// already holds: the thread may have moved CPU, so the second one may be
// another shard, which a writer waiting on the first already holds.
class ABSL_LOCKABLE SharedMutex {
 public:
  // kSpinFirst: for a lock whose holders never block while holding it and
  // let go within about a microsecond (the in-memory backend's map), a
  // waiter tries it a bounded number of times before it sleeps (Spin).
  // Left off for locks held across I/O (LMDB's remap lock spans a write
  // transaction and its sync; PKCS#11 calls into the token), where
  // spinning would only burn the waiter's time.
  enum class Waiting { kBlock, kSpinFirst };

  SharedMutex() = default;
  explicit SharedMutex(Waiting waiting)
      : spin_first_(waiting == Waiting::kSpinFirst) {}
  SharedMutex(const SharedMutex&) = delete;
  SharedMutex& operator=(const SharedMutex&) = delete;

  // Each lock is tried once before the blocking call (glibc's try is the
  // shorter path when the lock is free), and kSpinFirst tries it more.
  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() {
    for (Shard& s : shards_) {
      if (!Spin([&s] { return s.mu.try_lock(); })) s.mu.lock();
    }
  }
  void Unlock() ABSL_UNLOCK_FUNCTION() {
    for (int i = kShards - 1; i >= 0; --i) shards_[i].mu.unlock();
  }
  // Returns the shard it locked, for ReaderUnlock (the thread may have
  // moved to another CPU by then).
  int ReaderLock() ABSL_SHARED_LOCK_FUNCTION() {
    const int shard = CurrentShardIndex() % kShards;
    std::shared_mutex& mu = shards_[shard].mu;
    if (!Spin([&mu] { return mu.try_lock_shared(); })) mu.lock_shared();
    return shard;
  }
  void ReaderUnlock(int shard) ABSL_UNLOCK_FUNCTION() {
    shards_[shard].mu.unlock_shared();
  }

 private:
  static constexpr int kShards = 8;
  struct alignas(64) Shard {
    std::shared_mutex mu;
  };

  // kSpinFirst: tries `try_lock` a bounded number of times before the
  // caller blocks. The holder of such a lock (on another core) is about to
  // let go: blocking puts both threads through a futex sleep and wake-up,
  // a context switch each, many times the wait. (cluster_bench's 95% read
  // / 5% write KV mix on the in-memory backend spent a fifth of its CPU
  // there, and 8 threads on 2 cores saw a p99 of 570 us; with the spin,
  // 10-550 us.) Bounded like absl::Mutex's spin (a thousand-odd tries,
  // tens of microseconds with a pause of about 140 cycles), after which
  // the caller sleeps as before.
  template <typename TryLock>
  bool Spin(TryLock try_lock) const {
    if (try_lock()) return true;
    if (!spin_first_) return false;
    for (int i = 0; i < kSpins; ++i) {
      CpuRelax();
      if (try_lock()) return true;
    }
    return false;
  }
  static void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
  }
  static constexpr int kSpins = 1000;

  Shard shards_[kShards];
  const bool spin_first_ = false;
};

class ABSL_SCOPED_LOCKABLE WriterLock {
 public:
  explicit WriterLock(SharedMutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu)
      : mu_(mu) {
    mu_->Lock();
  }
  ~WriterLock() ABSL_UNLOCK_FUNCTION() { mu_->Unlock(); }
  WriterLock(const WriterLock&) = delete;
  WriterLock& operator=(const WriterLock&) = delete;

 private:
  SharedMutex* const mu_;
};

class ABSL_SCOPED_LOCKABLE ReaderLock {
 public:
  explicit ReaderLock(SharedMutex* mu) ABSL_SHARED_LOCK_FUNCTION(mu)
      : mu_(mu), shard_(mu->ReaderLock()) {}
  ~ReaderLock() ABSL_UNLOCK_FUNCTION() { mu_->ReaderUnlock(shard_); }
  ReaderLock(const ReaderLock&) = delete;
  ReaderLock& operator=(const ReaderLock&) = delete;

 private:
  SharedMutex* const mu_;
  const int shard_;
};

}  // namespace strongbox

#endif  // STRONGBOX_LIB_UTIL_MUTEX_H_
