// LmdbBackend beyond the conformance suite: opening (errors, options,
// reopen), map growth, several backends on one directory in one process,
// and the lease rules that only a multi-process store has (boot identity,
// holder liveness by file lock, boot-time expiry, lock files reached through
// the directory, fork, grants synced whatever the durability).
#include "strongbox/lmdb_backend.h"

#include <fcntl.h>
#include <limits.h>
#include <lmdb.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <future>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "lib/lmdb/hung_holder.h"
#include "lib/lmdb/records.h"
#include "lib/lmdb/test_hooks.h"
#include "strongbox/testing/fake_clock.h"
#include "tests/lmdb/test_support.h"
#include "tests/util/wait_for.h"

namespace strongbox {
namespace {

using Durability = LmdbBackendOptions::Durability;

std::unique_ptr<LmdbBackend> OpenOrDie(const std::string& dir,
                                       const LmdbBackendOptions& options = {}) {
  auto backend = LmdbBackend::Open(dir, options);
  EXPECT_TRUE(backend.ok()) << backend.status();
  return backend.ok() ? *std::move(backend) : nullptr;
}

AcquireOptions Holder(const std::string& name, absl::Duration ttl,
                      absl::Time deadline = absl::InfiniteFuture()) {
  AcquireOptions options;
  options.holder = name;
  options.ttl = ttl;
  options.deadline = deadline;
  return options;
}

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

// Writes `key` = `value` into the main database of a raw LMDB environment.
void RawLmdbPut(const std::string& dir, MDB_dbi* dbi_out, const char* db,
                const std::string& key, const std::string& value) {
  MDB_env* env;
  ASSERT_EQ(mdb_env_create(&env), 0);
  mdb_env_set_maxdbs(env, 4);
  ASSERT_EQ(mdb_env_open(env, dir.c_str(), 0, 0644), 0);
  MDB_txn* txn;
  ASSERT_EQ(mdb_txn_begin(env, nullptr, 0, &txn), 0);
  MDB_dbi dbi;
  ASSERT_EQ(mdb_dbi_open(txn, db, db == nullptr ? 0 : MDB_CREATE, &dbi), 0);
  MDB_val k{key.size(), const_cast<char*>(key.data())};
  MDB_val v{value.size(), const_cast<char*>(value.data())};
  ASSERT_EQ(mdb_put(txn, dbi, &k, &v, 0), 0);
  ASSERT_EQ(mdb_txn_commit(txn), 0);
  mdb_env_close(env);
}

// ------------------------------------------------------------ open errors

TEST(LmdbOpenTest, CreatesTheDirectoryAndReopenSeesEverything) {
  const std::string dir = NewTestDir();
  {
    auto backend = OpenOrDie(dir);
    ASSERT_NE(backend, nullptr);
    EXPECT_EQ(*backend->Revision(), 0u);
    ASSERT_TRUE(backend->Put("a/b", std::string("x\0y", 3)).ok());
    ASSERT_TRUE(backend->Put("c", "z").ok());
    ASSERT_TRUE(backend->Delete("c").ok());
  }
  auto reopened = OpenOrDie(dir);
  ASSERT_NE(reopened, nullptr);
  EXPECT_EQ(*reopened->Revision(), 3u);
  absl::StatusOr<Entry> e = reopened->Get("a/b");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->value, std::string("x\0y", 3));
  EXPECT_EQ(e->version, 1u);
  EXPECT_EQ(reopened->Get("c").status().code(), absl::StatusCode::kNotFound);
  // The revision keeps counting from where it was.
  EXPECT_EQ(*reopened->Put("d", "w"), 4u);
}

// Killing a hung holder is decided on boot time: a clock whose
// MonotonicNow() has another origin (a fake one, a host's steady clock)
// could make a healthy grant look expired, so the option refuses it.
TEST(LmdbOpenTest, KillHungHolderNeedsABootTimeClock) {
  FakeClock clock(absl::UnixEpoch() + absl::Hours(1000));
  LmdbBackendOptions options;
  options.clock = &clock;
  options.kill_hung_holder = true;
  auto refused = LmdbBackend::Open(NewTestDir("kill-clock"), options);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument)
      << refused.status();
  options.clock = nullptr;  // the real clock reads CLOCK_BOOTTIME
  auto opened = LmdbBackend::Open(NewTestDir("kill-clock"), options);
  EXPECT_TRUE(opened.ok()) << opened.status();
}

TEST(LmdbOpenTest, GarbageDataFileIsDataLoss) {
  const std::string dir = NewTestDir();
  ASSERT_EQ(mkdir(dir.c_str(), 0755), 0);
  std::mt19937 rng(7);
  std::string garbage(64 << 10, '\0');
  for (char& c : garbage) c = static_cast<char>(rng());
  WriteFile(dir + "/data.mdb", garbage);
  auto backend = LmdbBackend::Open(dir);
  EXPECT_EQ(backend.status().code(), absl::StatusCode::kDataLoss)
      << backend.status();
  EXPECT_NE(backend.status().message().find("not an LMDB file"),
            absl::string_view::npos)
      << backend.status();
}

TEST(LmdbOpenTest, ShortGarbageDataFileIsDataLoss) {
  const std::string dir = NewTestDir();
  ASSERT_EQ(mkdir(dir.c_str(), 0755), 0);
  WriteFile(dir + "/data.mdb", "hello, I am not a database");
  EXPECT_EQ(LmdbBackend::Open(dir).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST(LmdbOpenTest, ForeignLmdbEnvironmentIsFailedPrecondition) {
  const std::string dir = NewTestDir();
  ASSERT_EQ(mkdir(dir.c_str(), 0755), 0);
  MDB_dbi dbi;
  RawLmdbPut(dir, &dbi, nullptr, "someone", "else's data");
  auto backend = LmdbBackend::Open(dir);
  EXPECT_EQ(backend.status().code(), absl::StatusCode::kFailedPrecondition)
      << backend.status();
  EXPECT_NE(backend.status().message().find("not a strongbox store"),
            absl::string_view::npos)
      << backend.status();
}

TEST(LmdbOpenTest, UnknownFormatVersionIsFailedPrecondition) {
  const std::string dir = NewTestDir();
  ASSERT_NE(OpenOrDie(dir), nullptr);  // creates and closes the store
  MDB_dbi dbi;
  RawLmdbPut(dir, &dbi, nullptr, std::string("\0format", 7),
             std::string("strongbox-lmdb\x02\0\0\0", 18));
  auto backend = LmdbBackend::Open(dir);
  EXPECT_EQ(backend.status().code(), absl::StatusCode::kFailedPrecondition)
      << backend.status();
  EXPECT_NE(backend.status().message().find("format version 2"),
            absl::string_view::npos)
      << backend.status();
}

TEST(LmdbOpenTest, CorruptFormatRecordIsDataLoss) {
  const std::string dir = NewTestDir();
  ASSERT_NE(OpenOrDie(dir), nullptr);
  MDB_dbi dbi;
  RawLmdbPut(dir, &dbi, nullptr, std::string("\0format", 7), "garbage");
  EXPECT_EQ(LmdbBackend::Open(dir).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST(LmdbOpenTest, PathThatIsAFileIsFailedPrecondition) {
  const std::string path = NewTestDir("file");
  WriteFile(path, "x");
  EXPECT_EQ(LmdbBackend::Open(path).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(LmdbOpenTest, MissingDirectoryWithoutCreateIsNotFound) {
  LmdbBackendOptions options;
  options.create_if_missing = false;
  EXPECT_EQ(LmdbBackend::Open(NewTestDir(), options).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(LmdbOpenTest, MissingParentIsNotFound) {
  EXPECT_EQ(LmdbBackend::Open(NewTestDir() + "/child").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(LmdbOpenTest, UnwritableDirectoryIsPermissionDenied) {
  if (geteuid() == 0) GTEST_SKIP() << "root ignores directory permissions";
  const std::string dir = NewTestDir();
  ASSERT_EQ(mkdir(dir.c_str(), 0500), 0);
  EXPECT_EQ(LmdbBackend::Open(dir).status().code(),
            absl::StatusCode::kPermissionDenied);
}

TEST(LmdbOpenTest, BadOptionsAreInvalidArgument) {
  LmdbBackendOptions options;
  options.limits.max_key_bytes = 1024;  // past LMDB's key limit
  EXPECT_EQ(LmdbBackend::Open(NewTestDir(), options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options = LmdbBackendOptions();
  options.initial_map_bytes = 4096;
  EXPECT_EQ(LmdbBackend::Open(NewTestDir(), options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options = LmdbBackendOptions();
  options.poll_interval = absl::ZeroDuration();
  EXPECT_EQ(LmdbBackend::Open(NewTestDir(), options).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(LmdbBackend::Open("").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(LmdbOpenTest, KeyLimitIsReportedAndEnforced) {
  auto backend = OpenOrDie(NewTestDir());
  ASSERT_NE(backend, nullptr);
  EXPECT_EQ(backend->limits().max_key_bytes, 511u);
  EXPECT_TRUE(backend->Put(std::string(511, 'k'), "v").ok());
  EXPECT_EQ(backend->Put(std::string(512, 'k'), "v").status().code(),
            absl::StatusCode::kInvalidArgument);
}

// -------------------------------------------------------------- map growth

TEST(LmdbMapTest, WritesFarPastTheInitialMapSize) {
  const std::string dir = NewTestDir();
  LmdbBackendOptions options;
  options.initial_map_bytes = 1 << 20;
  options.durability = Durability::kNoSync;
  {
    auto backend = OpenOrDie(dir, options);
    ASSERT_NE(backend, nullptr);
    // 24 MiB through a 1 MiB map: several doublings, one 1 MiB batch too.
    for (int i = 0; i < 48; ++i) {
      ASSERT_TRUE(backend
                      ->Put(absl::StrCat("big/", i),
                            std::string(512 << 10, static_cast<char>(i)))
                      .ok())
          << i;
    }
    std::vector<WriteOp> batch;
    for (int i = 0; i < 16; ++i) {
      batch.push_back(
          WriteOp::Put(absl::StrCat("batch/", i), std::string(64 << 10, 'b')));
    }
    ASSERT_TRUE(backend->Commit(batch).ok());
    ASSERT_TRUE(backend->Sync().ok());
  }
  auto reopened = OpenOrDie(dir, options);
  ASSERT_NE(reopened, nullptr);
  for (int i = 0; i < 48; ++i) {
    absl::StatusOr<Entry> e = reopened->Get(absl::StrCat("big/", i));
    ASSERT_TRUE(e.ok()) << e.status();
    EXPECT_EQ(e->value, std::string(512 << 10, static_cast<char>(i)));
  }
  EXPECT_EQ(reopened->List("batch/")->size(), 16u);
}

TEST(LmdbMapTest, ReadersRunWhileTheMapGrows) {
  LmdbBackendOptions options;
  options.initial_map_bytes = 1 << 20;
  options.durability = Durability::kNoSync;
  auto backend = OpenOrDie(NewTestDir(), options);
  ASSERT_NE(backend, nullptr);
  ASSERT_TRUE(backend->Put("fixed", "value").ok());
  std::atomic<bool> done{false};
  std::atomic<int> reads{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&] {
      while (!done.load()) {
        absl::StatusOr<Entry> e = backend->Get("fixed");
        ASSERT_TRUE(e.ok()) << e.status();
        ASSERT_EQ(e->value, "value");
        reads.fetch_add(1);
      }
    });
  }
  bool readers_ran = true;
  for (int i = 0; i < 40 && readers_ran; ++i) {
    ASSERT_TRUE(
        backend->Put(absl::StrCat("grow/", i), std::string(256 << 10, 'g'))
            .ok());
    // Every tenth put, until the readers have read since the last wait:
    // they then read between the map's growths however the threads are
    // scheduled.
    if (i % 10 == 9) {
      const int target = reads.load() + 10;
      readers_ran = WaitFor([&] { return reads.load() >= target; });
    }
  }
  done.store(true);
  for (std::thread& t : readers) t.join();
  EXPECT_TRUE(readers_ran) << "the readers read nothing for a minute";
  EXPECT_GT(reads.load(), 0);
}

// ----------------------------------------- two backends, one directory

TEST(LmdbSharedDirectoryTest, TwoBackendsSeeEachOthersWrites) {
  const std::string dir = NewTestDir();
  auto a = OpenOrDie(dir);
  auto b = OpenOrDie(dir);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  const uint64_t v1 = *a->Put("k", "from a");
  EXPECT_EQ(b->Get("k")->value, "from a");
  const uint64_t v2 = *b->Commit({WriteOp::Put("k", "from b").IfVersion(v1)});
  EXPECT_EQ(v2, v1 + 1);
  EXPECT_EQ(
      a->Commit({WriteOp::Put("k", "stale").IfVersion(v1)}).status().code(),
      absl::StatusCode::kAborted);
  a.reset();  // closing one leaves the other working
  EXPECT_EQ(b->Get("k")->value, "from b");
}

TEST(LmdbSharedDirectoryTest, DurabilityMustMatchWithinAProcess) {
  const std::string dir = NewTestDir();
  auto a = OpenOrDie(dir);
  LmdbBackendOptions options;
  options.durability = Durability::kNoSync;
  EXPECT_EQ(LmdbBackend::Open(dir, options).status().code(),
            absl::StatusCode::kFailedPrecondition);
  a.reset();
  EXPECT_TRUE(LmdbBackend::Open(dir, options).ok());
}

TEST(LmdbSharedDirectoryTest, LeaseBehavesAsBetweenTwoProcesses) {
  const std::string dir = NewTestDir();
  auto a = OpenOrDie(dir);
  auto b = OpenOrDie(dir);
  auto grant = a->ha()->Acquire(Holder("node-a", absl::Seconds(30)));
  ASSERT_TRUE(grant.ok()) << grant.status();
  // b sees a's grant and cannot take it: a's file lock says a is alive.
  auto holder = b->ha()->CurrentHolder();
  ASSERT_TRUE(holder.ok() && holder->has_value());
  EXPECT_EQ((*holder)->holder, "node-a");
  EXPECT_EQ((*holder)->fence, (*grant)->fence());
  EXPECT_EQ(
      b->ha()
          ->Acquire(Holder("node-b", absl::Seconds(30), absl::InfinitePast()))
          .status()
          .code(),
      absl::StatusCode::kDeadlineExceeded);
  EXPECT_TRUE(b->Put("x", "fenced", (*grant)->fence()).ok());
  // a steps down; b is granted at once with a greater fence.
  const FenceToken old_fence = (*grant)->fence();
  ASSERT_TRUE((*grant)->Release().ok());
  auto next = b->ha()->Acquire(Holder("node-b", absl::Seconds(30)));
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_GT((*next)->fence(), old_fence);
  EXPECT_EQ(a->Put("x", "stale", old_fence).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(a->Get("x")->value, "fenced");
}

TEST(LmdbSharedDirectoryTest, GrantsSurviveReopenButNotTheirHolder) {
  // A grant recorded by a backend whose file lock is gone (as after a
  // crash) does not block anyone, even long before its expiry.
  const std::string dir = NewTestDir();
  auto a = OpenOrDie(dir);
  auto grant = a->ha()->Acquire(Holder("node-a", absl::Hours(1)));
  ASSERT_TRUE(grant.ok());
  const FenceToken fence = (*grant)->fence();
  // Simulate the holder's death: its lock file disappears with it.
  ASSERT_EQ(unlink(absl::StrCat(dir, "/lease-", fence, ".lock").c_str()), 0);
  auto b = OpenOrDie(dir);
  EXPECT_FALSE(b->ha()->CurrentHolder()->has_value());
  auto next = b->ha()->Acquire(
      Holder("node-b", absl::Seconds(30), absl::InfinitePast()));
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ((*next)->fence(), fence + 1);
  EXPECT_TRUE((*grant)->Lost());
}

// ---------------------------------------------------------------- reboots

TEST(LmdbLeaseTest, GrantFromAnotherBootBlocksNobody) {
  const std::string dir = NewTestDir();
  LmdbBackendOptions before;
  before.boot_id = "boot-before";
  auto a = OpenOrDie(dir, before);
  auto grant = a->ha()->Acquire(Holder("node-a", absl::Hours(1)));
  ASSERT_TRUE(grant.ok());
  LmdbBackendOptions after;
  after.boot_id = "boot-after";
  auto b = OpenOrDie(dir, after);
  // The record names another boot of the machine: its holder cannot exist.
  EXPECT_FALSE(b->ha()->CurrentHolder()->has_value());
  auto next = b->ha()->Acquire(
      Holder("node-b", absl::Seconds(30), absl::InfinitePast()));
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_GT((*next)->fence(), (*grant)->fence());
  EXPECT_TRUE((*grant)->Lost());
  EXPECT_EQ(a->Put("k", "v", (*grant)->fence()).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(LmdbLeaseTest, DefaultBootIdIsReadFromTheKernel) {
  // Two backends with default options agree on the boot, so a live grant
  // blocks the other.
  const std::string dir = NewTestDir();
  auto a = OpenOrDie(dir);
  auto b = OpenOrDie(dir);
  auto grant = a->ha()->Acquire(Holder("node-a", absl::Seconds(30)));
  ASSERT_TRUE(grant.ok());
  EXPECT_TRUE(b->ha()->CurrentHolder()->has_value());
}

TEST(LmdbLeaseTest, ExpiryFollowsTheInjectedClockAndSurvivesReopen) {
  // One injected clock drives both the interface and the record's expiry.
  FakeClock clock;
  const std::string dir = NewTestDir();
  LmdbBackendOptions options;
  options.clock = &clock;
  auto a = OpenOrDie(dir, options);
  auto grant = a->ha()->Acquire(Holder("node-a", absl::Seconds(10)));
  ASSERT_TRUE(grant.ok());
  auto holder = a->ha()->CurrentHolder();
  ASSERT_TRUE(holder->has_value());
  EXPECT_EQ((*holder)->expiry, clock.Now() + absl::Seconds(10));
  clock.Advance(absl::Seconds(11));
  // Expired by the clock although its holder (this process) is alive.
  auto b = OpenOrDie(dir, options);
  EXPECT_FALSE(b->ha()->CurrentHolder()->has_value());
  auto next = b->ha()->Acquire(
      Holder("node-b", absl::Seconds(10), absl::InfinitePast()));
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_TRUE((*grant)->Lost());
  EXPECT_EQ((*grant)->Renew().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(LmdbLeaseTest, LostDoesNotWaitBehindARenewalInsideItsWrite) {
  // A renewal stuck inside LMDB's writer lock (an fsync, or a peer stopped
  // inside a write) must not stall Lost(): the coordinator asks it on
  // every request.
  std::promise<void> renewing;
  std::promise<void> unblock;
  std::shared_future<void> unblocked = unblock.get_future().share();
  lmdb_internal::TestHooks hooks;
  hooks.inside_renew = [&] {
    renewing.set_value();
    unblocked.wait();
  };
  const std::string dir = NewTestDir();
  auto a = lmdb_internal::OpenWithTestHooks(dir, {}, &hooks);
  ASSERT_TRUE(a.ok()) << a.status();
  auto grant = (*a)->ha()->Acquire(Holder("node-a", absl::Seconds(30)));
  ASSERT_TRUE(grant.ok()) << grant.status();
  std::thread renewer([&] { EXPECT_TRUE((*grant)->Renew().ok()); });
  renewing.get_future().wait();

  std::promise<bool> lost;
  std::future<bool> lost_result = lost.get_future();
  std::thread reader([&] { lost.set_value((*grant)->Lost()); });
  // A fail-safe, not a timing assertion: the old code waits here until
  // the renewal is released, which only happens below.
  const bool returned = lost_result.wait_for(std::chrono::seconds(60)) ==
                        std::future_status::ready;
  EXPECT_TRUE(returned) << "Lost() waited for the renewal's write";
  unblock.set_value();
  reader.join();
  renewer.join();
  EXPECT_FALSE(lost_result.get());
  EXPECT_FALSE((*grant)->Lost());
}

// Issue 18 review, item 1: the holder carries its "inside a write" marker
// exactly while one of its own write transactions is open (fenced or not,
// data or renewal), a different one per transaction, and never outside.
TEST(LmdbLeaseTest, HolderIsMarkedInsideItsOwnWritesOnly) {
  const std::string dir = NewTestDir();
  std::string lock_path;
  auto probe = [&]() -> std::optional<uint64_t> {
    const int fd = open(lock_path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) return std::nullopt;
    std::optional<uint64_t> seq = lmdb_internal::ProbeInsideWriteMarker(fd);
    close(fd);
    return seq;
  };
  std::optional<uint64_t> in_fenced, in_unfenced, in_renew;
  lmdb_internal::TestHooks hooks;
  hooks.inside_commit = [&](FenceToken fence) {
    (fence == kNoFence ? in_unfenced : in_fenced) = probe();
  };
  hooks.inside_renew = [&] { in_renew = probe(); };
  auto backend = lmdb_internal::OpenWithTestHooks(dir, {}, &hooks);
  ASSERT_TRUE(backend.ok()) << backend.status();
  auto grant = (*backend)->ha()->Acquire(Holder("node-a", absl::Seconds(30)));
  ASSERT_TRUE(grant.ok()) << grant.status();
  lock_path = absl::StrCat(dir, "/lease-", (*grant)->fence(), ".lock");
  ASSERT_EQ(access(lock_path.c_str(), F_OK), 0);
  EXPECT_FALSE(probe().has_value()) << "marked outside any write";
  ASSERT_TRUE((*backend)->Put("a", "1", (*grant)->fence()).ok());
  EXPECT_TRUE(in_fenced.has_value()) << "not marked inside a fenced commit";
  EXPECT_FALSE(probe().has_value()) << "still marked after the commit";
  ASSERT_TRUE((*backend)->Put("b", "2").ok());
  ASSERT_TRUE(in_unfenced.has_value())
      << "not marked inside an unfenced commit";
  EXPECT_NE(*in_unfenced, *in_fenced) << "two writes share one marker";
  EXPECT_FALSE(probe().has_value());
  ASSERT_TRUE((*grant)->Renew().ok());
  EXPECT_TRUE(in_renew.has_value()) << "not marked inside a renewal";
  EXPECT_FALSE(probe().has_value());
  // A write that aborts unmarks too.
  EXPECT_EQ((*backend)
                ->Commit({WriteOp::Put("a", "3").IfAbsent()}, (*grant)->fence())
                .status()
                .code(),
            absl::StatusCode::kAborted);
  EXPECT_FALSE(probe().has_value());
  ASSERT_TRUE((*grant)->Release().ok());
  EXPECT_FALSE(probe().has_value());
}

bool FileExists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

// ------------------------------------------------- boot-time lease expiry

TEST(LmdbLeaseTest, SteppedWallClockNeitherStretchesNorCutsAGrant) {
  // One clock: wall steps (Set) move Now() alone, Advance moves both.
  FakeClock wall;
  LmdbBackendOptions options;
  options.clock = &wall;
  const std::string dir = NewTestDir();
  auto a = OpenOrDie(dir, options);
  auto b = OpenOrDie(dir, options);
  auto grant = a->ha()->Acquire(Holder("node-a", absl::Seconds(10)));
  ASSERT_TRUE(grant.ok()) << grant.status();
  const FenceToken fence = (*grant)->fence();
  EXPECT_EQ((*grant)->expiry(), wall.Now() + absl::Seconds(10));

  // The wall clock jumps forward far past the TTL: a healthy holder keeps
  // its lease.
  wall.Set(wall.Now() + absl::Hours(1));
  EXPECT_FALSE((*grant)->Lost());
  auto holder = b->ha()->CurrentHolder();
  ASSERT_TRUE(holder.ok() && holder->has_value());
  EXPECT_EQ((*holder)->holder, "node-a");
  // Reported in the interface's (stepped) clock.
  EXPECT_EQ((*holder)->expiry, wall.Now() + absl::Seconds(10));
  EXPECT_EQ(
      b->ha()
          ->Acquire(Holder("node-b", absl::Seconds(10), absl::InfinitePast()))
          .status()
          .code(),
      absl::StatusCode::kDeadlineExceeded);
  EXPECT_TRUE(a->Put("k", "v", fence).ok());
  ASSERT_TRUE((*grant)->Renew().ok());
  EXPECT_EQ((*grant)->expiry(), wall.Now() + absl::Seconds(10));

  // The wall clock steps back by ten hours and the holder hangs past its
  // TTL: its lease is not stretched by the step.
  wall.Set(wall.Now() - absl::Hours(10));
  wall.Advance(absl::Seconds(11));
  EXPECT_TRUE((*grant)->Lost());
  EXPECT_FALSE(b->ha()->CurrentHolder()->has_value());
  EXPECT_EQ(a->Put("k", "stale", fence).status().code(),
            absl::StatusCode::kFailedPrecondition);
  auto next = b->ha()->Acquire(
      Holder("node-b", absl::Seconds(10), absl::InfinitePast()));
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ((*next)->fence(), fence + 1);
}

TEST(LmdbLeaseTest, AnInjectedClocksWallTimeNeverStampsTheRecord) {
  // Records are stamped with options.clock's MonotonicNow() (boot time),
  // never its Now(): a clock set decades off (or a host that injects the
  // real clock) interoperates with processes on the default clock.
  FakeClock clock;
  LmdbBackendOptions options;
  options.clock = &clock;
  const std::string dir = NewTestDir();
  auto a = OpenOrDie(dir, options);
  auto b = OpenOrDie(dir, options);
  auto grant = a->ha()->Acquire(Holder("node-a", absl::Seconds(10)));
  ASSERT_TRUE(grant.ok()) << grant.status();
  const FenceToken fence = (*grant)->fence();

  // Thirty years forward: were the record stamped with wall time, the
  // grant would be long expired.
  clock.Set(clock.Now() + absl::Hours(24 * 365 * 30));
  EXPECT_FALSE((*grant)->Lost());
  auto holder = b->ha()->CurrentHolder();
  ASSERT_TRUE(holder.ok()) << holder.status();
  ASSERT_TRUE(holder->has_value());
  EXPECT_EQ((*holder)->expiry, clock.Now() + absl::Seconds(10));
  EXPECT_TRUE(a->Put("k", "v", fence).ok());
  ASSERT_TRUE((*grant)->Renew().ok());

  // Thirty years back, and 11 s pass: the TTL counts in monotonic time.
  clock.Set(clock.Now() - absl::Hours(24 * 365 * 60));
  clock.Advance(absl::Seconds(9));
  EXPECT_FALSE((*grant)->Lost());
  clock.Advance(absl::Seconds(2));
  EXPECT_TRUE((*grant)->Lost());
  auto next = b->ha()->Acquire(
      Holder("node-b", absl::Seconds(10), absl::InfinitePast()));
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ((*next)->fence(), fence + 1);
}

TEST(LmdbLeaseTest, WallClockStepBackDoesNotStretchABlockedAcquire) {
  FakeClock clock;
  std::atomic<bool> waiting_seen{false};
  std::promise<void> waiting;
  lmdb_internal::TestHooks hooks;
  hooks.before_acquire_wait = [&] {
    if (!waiting_seen.exchange(true)) waiting.set_value();
  };
  LmdbBackendOptions options;
  options.clock = &clock;
  const std::string dir = NewTestDir();
  auto a = OpenOrDie(dir, options);
  auto b = lmdb_internal::OpenWithTestHooks(dir, options, &hooks);
  ASSERT_TRUE(b.ok()) << b.status();
  auto grant = a->ha()->Acquire(Holder("node-a", absl::Hours(1)));
  ASSERT_TRUE(grant.ok()) << grant.status();

  std::promise<absl::StatusCode> result;
  std::future<absl::StatusCode> done = result.get_future();
  std::thread contender([&] {
    result.set_value((*b)->ha()
                         ->Acquire(Holder("node-b", absl::Seconds(1),
                                          clock.Now() + absl::Seconds(10)))
                         .status()
                         .code());
  });
  waiting.get_future().wait();  // Acquire has read its deadline
  // The wall clock steps back an hour; then 10 s pass.
  clock.Set(clock.Now() - absl::Hours(1));
  clock.Advance(absl::Seconds(10));
  // A fail-safe, not a timing assertion: the old code waits for the wall
  // clock to reach the deadline again, an hour of fake time.
  const bool returned =
      done.wait_for(std::chrono::seconds(20)) == std::future_status::ready;
  EXPECT_TRUE(returned) << "Acquire still blocked after its 10 s";
  if (!returned) clock.Advance(absl::Hours(2));
  contender.join();
  EXPECT_EQ(done.get(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_FALSE((*grant)->Lost());
}

TEST(LmdbLeaseTest, WallClockRecordOfAnOlderReleaseIsStillHonoured) {
  FakeClock wall;
  LmdbBackendOptions options;
  options.clock = &wall;
  options.boot_id = "this-boot";
  const std::string dir = NewTestDir();
  ASSERT_NE(OpenOrDie(dir, options), nullptr);  // creates the store
  // An active version-1 grant (wall-clock expiry) whose holder is alive.
  lmdb_internal::LeaseRecord old;
  old.version = lmdb_internal::kLeaseRecordV1;
  old.expiry_clock = lmdb_internal::ExpiryClock::kWall;
  old.active = true;
  old.fence = 7;
  old.expiry = wall.Now() + absl::Minutes(1);
  old.ttl = absl::Minutes(1);
  old.boot_id = "this-boot";
  old.holder = "old-release";
  MDB_dbi dbi;
  RawLmdbPut(dir, &dbi, nullptr, std::string(lmdb_internal::kLeaseKey),
             lmdb_internal::EncodeLease(old));
  const std::string lock_path = dir + "/lease-7.lock";
  int fd = open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  struct flock lock = {};
  lock.l_type = F_WRLCK;
  lock.l_whence = SEEK_SET;
  ASSERT_EQ(fcntl(fd, F_OFD_SETLK, &lock), 0);

  auto b = OpenOrDie(dir, options);
  auto holder = b->ha()->CurrentHolder();
  ASSERT_TRUE(holder.ok()) << holder.status();
  ASSERT_TRUE(holder->has_value());
  EXPECT_EQ((*holder)->holder, "old-release");
  EXPECT_EQ((*holder)->expiry, wall.Now() + absl::Minutes(1));
  // Judged by the wall clock it was written with.
  wall.Advance(absl::Minutes(2));
  EXPECT_FALSE(b->ha()->CurrentHolder()->has_value());
  auto next = b->ha()->Acquire(
      Holder("node-b", absl::Seconds(10), absl::InfinitePast()));
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ((*next)->fence(), 8u);
  close(fd);
}

// -------------------------------------------- lock files of failed grants

TEST(LmdbLeaseTest, FailedGrantNeverRemovesASuccessorsLockFile) {
  const std::string dir = NewTestDir();
  auto b = OpenOrDie(dir);
  std::unique_ptr<LeadershipGrant> successor;
  lmdb_internal::TestHooks hooks;
  // a's grant fails after it created lease-1.lock; before a cleans up, b
  // is granted the same fence and creates its own lease-1.lock.
  hooks.inside_grant = [] { return absl::UnavailableError("injected"); };
  hooks.after_failed_grant = [&] {
    auto grant = b->ha()->Acquire(Holder("node-b", absl::Seconds(30)));
    ASSERT_TRUE(grant.ok()) << grant.status();
    successor = *std::move(grant);
  };
  auto a = lmdb_internal::OpenWithTestHooks(dir, {}, &hooks);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ((*a)->ha()->Acquire(Holder("node-a", absl::Seconds(30))).status(),
            absl::UnavailableError("injected"));
  ASSERT_NE(successor, nullptr);
  const FenceToken fence = successor->fence();
  EXPECT_EQ(fence, 1u);
  EXPECT_TRUE(FileExists(absl::StrCat(dir, "/lease-", fence, ".lock")));
  // The successor is alive and everyone sees it so.
  auto c = OpenOrDie(dir);
  auto holder = c->ha()->CurrentHolder();
  ASSERT_TRUE(holder.ok() && holder->has_value())
      << "the live successor's lock file was removed";
  EXPECT_EQ((*holder)->holder, "node-b");
  EXPECT_EQ(
      c->ha()
          ->Acquire(Holder("node-c", absl::Seconds(30), absl::InfinitePast()))
          .status()
          .code(),
      absl::StatusCode::kDeadlineExceeded);
  EXPECT_FALSE(successor->Lost());
  EXPECT_TRUE(b->Put("k", "v", fence).ok());
}

TEST(LmdbLeaseTest, FailedGrantLeavesNoLockFileBehind) {
  const std::string dir = NewTestDir();
  lmdb_internal::TestHooks hooks;
  hooks.inside_grant = [] { return absl::UnavailableError("injected"); };
  auto a = lmdb_internal::OpenWithTestHooks(dir, {}, &hooks);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_FALSE((*a)->ha()->Acquire(Holder("node-a", absl::Seconds(30))).ok());
  EXPECT_FALSE(FileExists(dir + "/lease-1.lock"));
}

// ------------------------------------------------------------- boot id

TEST(LmdbLeaseTest, UnreadableBootIdFailsOpen) {
  const std::string dir = NewTestDir();
  lmdb_internal::TestHooks hooks;
  hooks.boot_id_path = NewTestDir("no-such-boot-id");
  auto missing = lmdb_internal::OpenWithTestHooks(dir, {}, &hooks);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound)
      << missing.status();
  EXPECT_NE(missing.status().message().find("boot id"),
            absl::string_view::npos);
  hooks.boot_id_path = NewTestDir("empty-boot-id");
  WriteFile(hooks.boot_id_path, "\n");
  EXPECT_EQ(lmdb_internal::OpenWithTestHooks(dir, {}, &hooks).status().code(),
            absl::StatusCode::kFailedPrecondition);
  WriteFile(hooks.boot_id_path, "3f1e0c4a-boot\n");
  EXPECT_TRUE(lmdb_internal::OpenWithTestHooks(dir, {}, &hooks).ok());
}

// Lowers the descriptor limit and opens /dev/null until it is reached;
// undoes both when destroyed.
class DescriptorExhaustion {
 public:
  DescriptorExhaustion() {
    getrlimit(RLIMIT_NOFILE, &saved_);
    struct rlimit low = saved_;
    low.rlim_cur = std::min<rlim_t>(saved_.rlim_cur, 4096);
    setrlimit(RLIMIT_NOFILE, &low);
    while (true) {
      int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
      if (fd < 0) break;
      fds_.push_back(fd);
    }
  }
  ~DescriptorExhaustion() {
    for (int fd : fds_) close(fd);
    setrlimit(RLIMIT_NOFILE, &saved_);
  }

 private:
  struct rlimit saved_;
  std::vector<int> fds_;
};

TEST(LmdbLeaseTest, ExhaustedDescriptorsNeverMakeALiveHolderLookDead) {
  const std::string dir = NewTestDir();
  auto a = OpenOrDie(dir);
  auto grant = a->ha()->Acquire(Holder("node-a", absl::Seconds(30)));
  ASSERT_TRUE(grant.ok()) << grant.status();
  absl::StatusOr<std::unique_ptr<LmdbBackend>> b;
  std::string seen = "(not asked)";
  {
    DescriptorExhaustion exhausted;
    // The environment is already open in this process: Open needs no
    // LMDB descriptor, only the boot id (and the directory).
    b = LmdbBackend::Open(dir);
    if (b.ok()) {
      auto holder = (*b)->ha()->CurrentHolder();
      seen = !holder.ok()           ? holder.status().ToString()
             : !holder->has_value() ? "nobody"
                                    : (*holder)->holder;
    }
  }
  EXPECT_EQ(b.status().code(), absl::StatusCode::kResourceExhausted)
      << b.status() << "; holder seen: " << seen;
  EXPECT_NE(b.status().message().find("boot id"), absl::string_view::npos)
      << b.status();
  // With descriptors again, it opens and sees the holder.
  auto again = OpenOrDie(dir);
  auto holder = again->ha()->CurrentHolder();
  ASSERT_TRUE(holder.ok() && holder->has_value());
  EXPECT_EQ((*holder)->holder, "node-a");
}

// ---------------------------------------------- a relative directory

// Restores the working directory when destroyed.
class WorkingDirectory {
 public:
  WorkingDirectory() {
    char buf[PATH_MAX];
    if (getcwd(buf, sizeof(buf)) != nullptr) saved_ = buf;
  }
  ~WorkingDirectory() {
    if (!saved_.empty()) EXPECT_EQ(chdir(saved_.c_str()), 0);
  }

 private:
  std::string saved_;
};

TEST(LmdbLeaseTest, RelativeDirectoryKeepsWorkingAfterChdir) {
  WorkingDirectory restore;
  const std::string base = NewTestDir("cwd");
  const std::string elsewhere = NewTestDir("elsewhere");
  ASSERT_EQ(mkdir(base.c_str(), 0755), 0);
  ASSERT_EQ(mkdir(elsewhere.c_str(), 0755), 0);
  ASSERT_EQ(chdir(base.c_str()), 0);
  auto a = OpenOrDie("store");
  auto b = OpenOrDie("store");
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  auto grant = a->ha()->Acquire(Holder("node-a", absl::Seconds(30)));
  ASSERT_TRUE(grant.ok()) << grant.status();
  // The host daemonizes.
  ASSERT_EQ(chdir(elsewhere.c_str()), 0);
  auto holder = b->ha()->CurrentHolder();
  ASSERT_TRUE(holder.ok()) << holder.status();
  ASSERT_TRUE(holder->has_value()) << "the live holder looked dead";
  EXPECT_EQ((*holder)->holder, "node-a");
  EXPECT_EQ(
      b->ha()
          ->Acquire(Holder("node-b", absl::Seconds(30), absl::InfinitePast()))
          .status()
          .code(),
      absl::StatusCode::kDeadlineExceeded);
  // Release removes the right file; a new grant creates its own.
  ASSERT_TRUE((*grant)->Release().ok());
  EXPECT_FALSE(FileExists(base + "/store/lease-1.lock"));
  auto next = b->ha()->Acquire(Holder("node-b", absl::Seconds(30)));
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_TRUE(FileExists(base + "/store/lease-2.lock"));
  EXPECT_FALSE(FileExists(elsewhere + "/store"));
}

// ------------------------------------------------------------------ fork

TEST(LmdbLeaseTest, ForkedChildGetsAnErrorAndLeavesTheParentsGrantAlone) {
  const std::string dir = NewTestDir();
  auto backend = OpenOrDie(dir);
  ASSERT_TRUE(backend->Put("k", "v").ok());
  ASSERT_TRUE(backend->Get("k").ok());  // a pooled read transaction exists
  auto grant = backend->ha()->Acquire(Holder("parent", absl::Seconds(30)));
  ASSERT_TRUE(grant.ok()) << grant.status();
  const FenceToken fence = (*grant)->fence();
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // No gtest in the child: one letter per call, 'E' for the expected
    // FAILED_PRECONDITION (or a lost grant), 'X' for anything else.
    auto code = [](const absl::Status& s) {
      return s.code() == absl::StatusCode::kFailedPrecondition ? 'E' : 'X';
    };
    std::string out;
    out += code(backend->Put("k", "child", fence).status());
    out += code(backend->Put("k2", "child").status());
    out += code(backend->Get("k").status());
    out += code(backend->ha()->CurrentHolder().status());
    out += code(
        backend->ha()
            ->Acquire(Holder("child", absl::Seconds(30), absl::InfinitePast()))
            .status());
    out += code((*grant)->Renew());
    out += (*grant)->Lost() ? 'E' : 'X';
    out += code((*grant)->Release());
    out += code(backend->ha()->BreakLease(fence));
    // The child may open the directory afresh (while the parent's backend
    // still exists in it) and use it ('R': read ok).
    {
      auto own = LmdbBackend::Open(dir);
      const bool read_ok =
          own.ok() && (*own)->Get("k").ok() && (*own)->Get("k")->value == "v";
      out += read_ok ? 'R' : 'X';
    }
    // Destroying them in the child must not disturb the parent.
    grant->reset();
    backend.reset();
    (void)!write(pipe_fds[1], out.data(), out.size());
    _exit(0);
  }
  close(pipe_fds[1]);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  char buf[64];
  const ssize_t n = read(pipe_fds[0], buf, sizeof(buf));
  close(pipe_fds[0]);
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(buf, n), "EEEEEEEEER")
      << "order: fenced put, put, get, current holder, acquire, renew, "
         "lost, release, break, reopen and read";
  // The parent still holds its grant and reads through its pooled
  // transactions.
  EXPECT_EQ(backend->Get("k")->value, "v");
  EXPECT_FALSE((*grant)->Lost());
  EXPECT_TRUE((*grant)->Renew().ok());
  EXPECT_TRUE(backend->Put("k", "parent", fence).ok());
  auto other = OpenOrDie(dir);
  auto holder = other->ha()->CurrentHolder();
  ASSERT_TRUE(holder.ok() && holder->has_value());
  EXPECT_EQ((*holder)->holder, "parent");
  EXPECT_EQ((*holder)->fence, fence);
}

// ---------------------------------------------------- durable grants

TEST(LmdbLeaseTest, GrantsAreSyncedWhateverTheDurability) {
  for (Durability durability : {Durability::kNoSync, Durability::kNoMetaSync}) {
    SCOPED_TRACE(static_cast<int>(durability));
    LmdbBackendOptions options;
    options.durability = durability;
    auto opened =
        lmdb_internal::OpenWithTestHooks(NewTestDir(), options, nullptr);
    ASSERT_TRUE(opened.ok()) << opened.status();
    LmdbBackend& backend = **opened;
    const uint64_t before = lmdb_internal::SyncCount(backend);
    ASSERT_TRUE(backend.Put("k", "v").ok());
    EXPECT_EQ(lmdb_internal::SyncCount(backend), before)
        << "data commits follow the durability option";
    auto grant = backend.ha()->Acquire(Holder("node", absl::Seconds(30)));
    ASSERT_TRUE(grant.ok()) << grant.status();
    EXPECT_EQ(lmdb_internal::SyncCount(backend), before + 1)
        << "the grant was handed out before it was durable";
  }
}

}  // namespace
}  // namespace strongbox
