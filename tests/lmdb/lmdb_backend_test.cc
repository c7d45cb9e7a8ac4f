// LmdbBackend beyond the conformance suite: opening (errors, options,
// reopen), map growth, several backends on one directory in one process,
// and the lease rules that only a multi-process store has (boot identity,
// holder liveness by file lock).
#include "strongbox/lmdb_backend.h"

#include <fcntl.h>
#include <lmdb.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "strongbox/testing/fake_clock.h"
#include "tests/lmdb/test_support.h"

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
  for (int i = 0; i < 40; ++i) {
    ASSERT_TRUE(
        backend->Put(absl::StrCat("grow/", i), std::string(256 << 10, 'g'))
            .ok());
  }
  done.store(true);
  for (std::thread& t : readers) t.join();
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

TEST(LmdbLeaseTest, ExpiryIsWallClockAndSurvivesReopen) {
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

}  // namespace
}  // namespace strongbox
