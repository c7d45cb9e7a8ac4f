// SharedMutex: a reader that moves to another CPU between locking and
// unlocking releases the shard it locked (the lock picks a shard by the CPU
// it runs on), and a writer excludes readers on the CPUs they run on. Run
// under TSan.
#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <chrono>
#include <memory>
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
  // Two CPUs whose shards differ (SharedMutex has 8).
  int from = -1, to = -1;
  for (int a : cpus) {
    for (int b : cpus) {
      if (from < 0 && a % 8 != b % 8) {
        from = a;
        to = b;
      }
    }
  }
  if (from < 0) GTEST_SKIP() << "needs two CPUs on different shards";
  // Shared with a detached thread, so owned by both: if the unlock released
  // the wrong shard, the thread's writer never gets in, and this test fails
  // after its deadline instead of hanging, leaving the thread blocked on
  // state that stays alive.
  struct State {
    SharedMutex mu;
    std::atomic<int> rounds_written{0};
    std::atomic<bool> not_followed{false};
    std::atomic<bool> finished{false};
  };
  auto state = std::make_shared<State>();
  std::thread([state, from, to] {
    for (int round = 0; round < 20 && !state->not_followed.load(); ++round) {
      if (!RunOn(from)) {
        state->not_followed.store(true);
        break;
      }
      {
        ReaderLock lock(&state->mu);
        if (!RunOn(to)) state->not_followed.store(true);
      }
      // Had the unlock gone to `to`'s shard, `from`'s would still be held
      // and this writer would never get in.
      { WriterLock writer(&state->mu); }
      state->rounds_written.fetch_add(1);
    }
    state->finished.store(true);
  }).detach();
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!state->finished.load() &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (state->not_followed.load()) {
    GTEST_SKIP() << "sched_getcpu does not follow the affinity here";
  }
  ASSERT_TRUE(state->finished.load())
      << "a writer could not get in after a reader moved CPU";
  EXPECT_EQ(state->rounds_written.load(), 20);
}

// Readers spread over the CPUs this test may use (two on the CI machine)
// while a writer writes a pair: no reader sees it half written. TSan also
// checks every access against the locks.
TEST(SharedMutexTest, AWriterExcludesReadersOnTheCpusItRunsOn) {
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
