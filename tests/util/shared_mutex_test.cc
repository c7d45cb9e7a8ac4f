// SharedMutex: a reader that moves to another CPU between locking and
// unlocking releases the shard it locked (the lock picks a shard by the CPU
// it runs on), and a writer excludes readers on every CPU. Run under TSan.
#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "lib/util/mutex.h"

namespace strongbox {
namespace {

// Moves the calling thread onto `cpu`; false where that is not allowed.
bool RunOn(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set) != 0) {
    return false;
  }
  return sched_getcpu() == cpu;
}

// The CPUs this thread may run on.
std::vector<int> AllowedCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> cpus;
  if (pthread_getaffinity_np(pthread_self(), sizeof(set), &set) != 0) {
    return cpus;
  }
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
  }
  return cpus;
}

TEST(SharedMutexTest, AReaderThatMovedCpuUnlocksTheShardItLocked) {
  const std::vector<int> cpus = AllowedCpus();
  if (cpus.size() < 2) GTEST_SKIP() << "needs two CPUs";
  SharedMutex mu;
  std::atomic<bool> written{false};
  std::thread t([&] {
    cpu_set_t all;
    CPU_ZERO(&all);
    for (int cpu : cpus) CPU_SET(cpu, &all);
    // Lock on the first CPU, unlock on the second, several times over.
    for (int round = 0; round < 20; ++round) {
      ASSERT_TRUE(RunOn(cpus[0]));
      {
        ReaderLock lock(&mu);
        ASSERT_TRUE(RunOn(cpus[1]));
      }
      // Had the unlock gone to the second CPU's shard, the first one
      // would still be held and this writer would never get in.
      WriterLock writer(&mu);
      written.store(true);
    }
    pthread_setaffinity_np(pthread_self(), sizeof(all), &all);
  });
  t.join();
  EXPECT_TRUE(written.load());
}

TEST(SharedMutexTest, AWriterExcludesReadersOnEveryCpu) {
  const std::vector<int> cpus = AllowedCpus();
  SharedMutex mu;
  int value = 0;  // written under the writer lock, read under reader locks
  std::atomic<bool> stop{false};
  std::atomic<int> torn{0};
  int pair[2] = {0, 0};
  std::vector<std::thread> readers;
  for (size_t i = 0; i < 2 * cpus.size(); ++i) {
    readers.emplace_back([&, i] {
      int n = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        if (++n % 64 == 0) RunOn(cpus[(i + n / 64) % cpus.size()]);
        ReaderLock lock(&mu);
        if (pair[0] != pair[1]) torn.fetch_add(1);
        (void)value;
      }
    });
  }
  for (int i = 0; i < 2000; ++i) {
    WriterLock lock(&mu);
    ++pair[0];
    ++value;
    ++pair[1];
  }
  stop.store(true);
  for (std::thread& t : readers) t.join();
  EXPECT_EQ(torn.load(), 0);
  EXPECT_EQ(value, 2000);
}

}  // namespace
}  // namespace strongbox
