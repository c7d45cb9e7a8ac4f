// NoncePool's fork safety against the cases a review reproduced: a kernel
// (or sandbox) whose madvise answers 0 and does nothing, a fork that skips
// pthread_atfork handlers (a raw fork syscall), and a fork from one thread
// while another is drawing. Runs under both crypto providers.
#include "lib/seal/nonce_pool.h"

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/types/span.h"
#include "gtest/gtest.h"
#include "lib/crypto/random.h"
#include "tests/seal/pinned_cpu.h"

namespace strongbox::seal {
namespace {

constexpr int kCount = 200;

std::string Nonce(const uint8_t* n) {
  return std::string(reinterpret_cast<const char*>(n), 12);
}

// Makes every madvise() of this process (and its children) return 0
// without doing anything, as qemu-user and some sandboxes do.
bool MakeMadviseALie() {
  struct sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_madvise, 0, 1),
      // errno 0: the call "succeeds" and is skipped.
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = {
      static_cast<unsigned short>(sizeof(filter) / sizeof(filter[0])), filter};
  return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
         prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0;
}

// Draws once from `pool` (so the shard of the CPU this thread is pinned to
// holds buffered nonces), forks with `fork_fn`; the child, pinned to the
// same CPU and so drawing from the same shard, draws kCount nonces and
// sends them back; this process draws kCount too. Returns how many the two
// share, or -1 if the child failed. (Unpinned, the child would usually run
// on the other CPU and draw from a shard the parent never filled, and the
// count would be 0 whatever the pool did.)
template <typename ForkFn>
int OverlapsWithChild(NoncePool& pool, ForkFn fork_fn) {
  PinnedToThisCpu pin;
  if (!pin.pinned()) {
    ADD_FAILURE() << "could not pin the test to one CPU";
    return -1;
  }
  uint8_t first[12];
  if (!pool.Draw(first).ok()) return -1;
  int fds[2];
  if (pipe(fds) != 0) return -1;
  const pid_t pid = fork_fn();
  if (pid < 0) return -1;
  if (pid == 0) {
    close(fds[0]);
    for (int i = 0; i < kCount; ++i) {
      uint8_t n[12];
      if (!pool.Draw(n).ok()) _exit(3);
      if (write(fds[1], n, 12) != 12) _exit(2);
    }
    _exit(0);
  }
  close(fds[1]);
  std::set<std::string> mine;
  for (int i = 0; i < kCount; ++i) {
    uint8_t n[12];
    if (!pool.Draw(n).ok()) return -1;
    mine.insert(Nonce(n));
  }
  int overlaps = 0, received = 0;
  char buf[12];
  while (read(fds[0], buf, 12) == 12) {
    ++received;
    overlaps += static_cast<int>(mine.count(std::string(buf, 12)));
  }
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || received != kCount) {
    return -1;
  }
  return overlaps;
}

pid_t GlibcFork() { return fork(); }
// A fork that runs no pthread_atfork handler: only the pid check sees it.
pid_t RawFork() { return static_cast<pid_t>(syscall(SYS_fork)); }

// Runs `body` in a child process under the lying-madvise filter; returns
// the child's exit code (or 100 + signal).
template <typename Body>
int InChildWithLyingMadvise(Body body) {
  const pid_t pid = fork();
  if (pid == 0) {
    if (!MakeMadviseALie()) _exit(90);
    _exit(body());
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (WIFSIGNALED(status)) return 100 + WTERMSIG(status);
  return WEXITSTATUS(status);
}

TEST(NoncePoolForkTest, LyingMadviseIsNotTrusted) {
  const int code = InChildWithLyingMadvise([] {
    // The filter really lies: an invalid advice "succeeds".
    if (madvise(nullptr, 0, -1) != 0) return 91;
    NoncePool pool;
    return pool.wipe_on_fork() ? 1 : 0;
  });
  EXPECT_EQ(code, 0) << "1: the pool trusted a madvise that does nothing; "
                        "90: could not install the seccomp filter";
}

TEST(NoncePoolForkTest, LyingMadviseForkedChildDrawsFreshNonces) {
  const int code = InChildWithLyingMadvise([] {
    NoncePool pool;
    uint8_t first[12];
    if (!pool.Draw(first).ok()) return 2;
    const int overlaps = OverlapsWithChild(pool, &GlibcFork);
    return overlaps == 0 ? 0 : overlaps < 0 ? 3 : 1;
  });
  EXPECT_EQ(code, 0) << "1: a forked child reused its parent's nonces";
}

TEST(NoncePoolForkTest, LyingMadviseRawForkChildDrawsFreshNonces) {
  // No atfork handler runs and the pages are not wiped: the pid check is
  // all that stands between the child and its parent's nonces.
  const int code = InChildWithLyingMadvise([] {
    NoncePool pool;
    uint8_t first[12];
    if (!pool.Draw(first).ok()) return 2;
    const int overlaps = OverlapsWithChild(pool, &RawFork);
    return overlaps == 0 ? 0 : overlaps < 0 ? 3 : 1;
  });
  EXPECT_EQ(code, 0) << "1: a raw-forked child reused its parent's nonces";
}

// On an honest kernel a raw fork is caught by the proven MADV_WIPEONFORK
// (the pool then skips the per-draw getpid), or by the pid check where the
// kernel lacks it.
TEST(NoncePoolForkTest, RawForkWithoutFilter) {
  NoncePool pool;
  RecordProperty("wipe_on_fork", pool.wipe_on_fork() ? "true" : "false");
  uint8_t first[12];
  ASSERT_TRUE(pool.Draw(first).ok());
  EXPECT_EQ(OverlapsWithChild(pool, &RawFork), 0);
}

TEST(NoncePoolForkTest, ForkBumpsTheGeneration) {
  const uint64_t before = NoncePool::ForkGenerationForTesting();
  const pid_t pid = fork();
  if (pid == 0) {
    _exit(NoncePool::ForkGenerationForTesting() == before + 1 ? 0 : 1);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_EQ(NoncePool::ForkGenerationForTesting(), before);
}

// A thread forks while others draw in a loop. The child must find every
// shard unlocked (it draws from all eight; an inherited locked shard would
// hang it until alarm() kills it) and must share no nonce with what the
// parent draws afterwards.
//
// Neither the drawers nor the child allocate or start threads: the child
// of a multithreaded fork may rely only on fork-aware locks, and the ASan
// runtime of Debian's clang 14 takes none of its allocator's locks around
// fork(), so a child that allocates can inherit one held by a parent thread
// (3 of 40 ASan runs hung a child that started threads: ASan's own thread
// setup frees, the free needed a quarantine batch, the batch's size class
// was locked). Hence fixed-capacity vectors, 12-byte strings (short-string
// storage), one thread in the child reaching each shard through
// DrawFromShardForTesting, and the forking thread's RNG state made before
// the fork (a thread's first draw from the RNG allocates it).
TEST(NoncePoolForkTest, ForkFromAThreadWhileAnotherDraws) {
  NoncePool pool;
  std::atomic<bool> stop{false};
  std::atomic<bool> failed{false};
  // Drawers on several threads (on as many shards as there are CPUs), so
  // that a fork often finds one of them inside Draw.
  constexpr int kDrawers = 3;
  // Fixed capacity: the drawers never allocate (see above).
  constexpr size_t kKept = 200000;
  std::vector<std::string> drawn[kDrawers];  // read after join
  for (auto& list : drawn) list.reserve(kKept);
  std::vector<std::thread> drawers;
  for (int d = 0; d < kDrawers; ++d) {
    drawers.emplace_back([&, d] {
      while (!stop.load()) {
        uint8_t n[12];
        if (!pool.Draw(n).ok()) failed = true;
        if (drawn[d].size() < kKept) drawn[d].push_back(Nonce(n));
      }
    });
  }
  std::set<std::string> from_children;
  constexpr int kRounds = 25;
  int bad_children = 0;
  for (int round = 0; round < kRounds && bad_children == 0; ++round) {
    std::thread forker([&] {
      int fds[2];
      if (pipe(fds) != 0) {
        ++bad_children;
        return;
      }
      uint8_t warm[1];
      if (!crypto::RandomBytes(absl::MakeSpan(warm)).ok()) {
        ++bad_children;
        return;
      }
      const pid_t pid = fork();
      if (pid == 0) {
        close(fds[0]);
        alarm(5);  // a shard left locked would hang the child
        for (int shard = 0; shard < NoncePool::kShards; ++shard) {
          for (int i = 0; i < 20; ++i) {
            uint8_t n[12];
            if (!pool.DrawFromShardForTesting(shard, n).ok()) _exit(3);
            if (write(fds[1], n, 12) != 12) _exit(2);
          }
        }
        _exit(0);
      }
      close(fds[1]);
      char buf[12];
      int received = 0;
      while (read(fds[0], buf, 12) == 12) {
        ++received;
        from_children.insert(std::string(buf, 12));
      }
      close(fds[0]);
      int status = 0;
      waitpid(pid, &status, 0);
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
          received != NoncePool::kShards * 20) {
        ++bad_children;
      }
    });
    forker.join();
  }
  stop = true;
  for (std::thread& t : drawers) t.join();
  EXPECT_FALSE(failed.load());
  EXPECT_EQ(bad_children, 0) << "a child hung on an inherited shard lock or "
                                "failed to draw";
  int overlaps = 0;
  for (const auto& list : drawn) {
    for (const std::string& n : list) {
      overlaps += static_cast<int>(from_children.count(n));
    }
  }
  EXPECT_EQ(overlaps, 0) << "a child reused nonces its parent handed out";
}

}  // namespace
}  // namespace strongbox::seal
