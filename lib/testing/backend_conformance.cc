#include "strongbox/testing/backend_conformance.h"

#include <atomic>
#include <chrono>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "strongbox/testing/status_matchers.h"

namespace strongbox {

std::string BackendFactoryName(
    const ::testing::TestParamInfo<BackendFactory>& info) {
  return info.param.name;
}

void BackendConformanceTest::SetUp() {
  backend_ = GetParam().make(&clock_);
  ASSERT_NE(backend_, nullptr) << "factory returned no backend";
}

void BackendConformanceTest::AdvanceLeaseTime(absl::Duration d) {
  if (GetParam().real_time_lease) {
    absl::SleepFor(d);
  } else {
    clock_.Advance(d);
  }
}

absl::Duration BackendConformanceTest::LeaseTtl() const {
  return GetParam().real_time_lease ? absl::Milliseconds(300)
                                    : absl::Seconds(10);
}

namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

std::string AllBytes() {
  std::string v;
  for (int i = 0; i < 256; ++i) v.push_back(static_cast<char>(i));
  v += std::string("\0\0after-nul\0", 12);
  return v;
}

std::string RandomBytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string v(n, '\0');
  for (char& c : v) c = static_cast<char>(rng());
  return v;
}

std::vector<std::string> ListOrDie(Backend* backend, absl::string_view prefix) {
  absl::StatusOr<std::vector<std::string>> list = backend->List(prefix);
  EXPECT_OK(list);
  return list.ok() ? *list : std::vector<std::string>{};
}

std::unique_ptr<LeadershipGrant> AcquireOrDie(HaBackend* ha,
                                              absl::string_view holder,
                                              absl::Duration ttl) {
  AcquireOptions options;
  options.holder = std::string(holder);
  options.ttl = ttl;
  absl::StatusOr<std::unique_ptr<LeadershipGrant>> grant = ha->Acquire(options);
  EXPECT_OK(grant);
  return grant.ok() ? *std::move(grant) : nullptr;
}

// ------------------------------------------------------------------ CRUD

TEST_P(BackendConformanceTest, PutThenGetReturnsValueAndVersion) {
  absl::StatusOr<uint64_t> rev = backend_->Put("app/db", "hunter2");
  ASSERT_OK(rev);
  EXPECT_GT(*rev, 0u);
  absl::StatusOr<Entry> got = backend_->Get("app/db");
  ASSERT_OK(got);
  EXPECT_EQ(got->value, "hunter2");
  EXPECT_EQ(got->version, *rev);
  absl::StatusOr<uint64_t> current = backend_->Revision();
  ASSERT_OK(current);
  EXPECT_EQ(*current, *rev);
}

// GetInto answers as Get, into an Entry a reader keeps between reads:
// whatever the entry held before (a longer value, a shorter one) does not
// show through.
TEST_P(BackendConformanceTest, GetIntoAnswersAsGetIntoAReusedEntry) {
  const std::string long_value(3000, 'L');
  ASSERT_OK(backend_->Put("a/long", long_value));
  ASSERT_OK(backend_->Put("a/short", std::string("s\0rt", 4)));
  ASSERT_OK(backend_->Put("a/empty", ""));
  Entry entry;
  entry.value = "left over from before";
  entry.version = 77;
  for (const char* key :
       {"a/short", "a/long", "a/empty", "a/long", "a/short"}) {
    SCOPED_TRACE(key);
    absl::StatusOr<Entry> got = backend_->Get(key);
    ASSERT_OK(got);
    ASSERT_OK(backend_->GetInto(key, &entry));
    EXPECT_EQ(entry.value, got->value);
    EXPECT_EQ(entry.version, got->version);
  }
  EXPECT_EQ(backend_->GetInto("a/missing", &entry).code(),
            absl::StatusCode::kNotFound);
}

TEST_P(BackendConformanceTest, AbsentKeyIsNotFound) {
  EXPECT_EQ(backend_->Get("missing").status().code(),
            absl::StatusCode::kNotFound);
  ASSERT_OK(backend_->Put("a/b", "x"));
  EXPECT_EQ(backend_->Get("a").status().code(), absl::StatusCode::kNotFound);
}

TEST_P(BackendConformanceTest, VersionChangesOnEveryWrite) {
  uint64_t last = 0;
  for (int i = 0; i < 5; ++i) {
    absl::StatusOr<uint64_t> rev = backend_->Put("k", absl::StrCat("v", i));
    ASSERT_OK(rev);
    EXPECT_GT(*rev, last);
    last = *rev;
    absl::StatusOr<Entry> got = backend_->Get("k");
    ASSERT_OK(got);
    EXPECT_EQ(got->version, *rev);
    EXPECT_EQ(got->value, absl::StrCat("v", i));
  }
  // A write elsewhere moves the revision; the entry's version stays.
  absl::StatusOr<uint64_t> other = backend_->Put("other", "x");
  ASSERT_OK(other);
  EXPECT_GT(*other, last);
  EXPECT_EQ(backend_->Get("k")->version, last);
}

TEST_P(BackendConformanceTest, BinaryValuesWithNulRoundTrip) {
  const std::string value = AllBytes();
  ASSERT_OK(backend_->Put("bin", value));
  absl::StatusOr<Entry> got = backend_->Get("bin");
  ASSERT_OK(got);
  EXPECT_EQ(got->value, value);
  ASSERT_OK(backend_->Put("empty", ""));
  EXPECT_EQ(backend_->Get("empty")->value, "");
}

TEST_P(BackendConformanceTest, OneMebibyteValueRoundTrips) {
  const std::string value = RandomBytes(1 << 20, 7);
  ASSERT_OK(backend_->Put("big", value));
  absl::StatusOr<Entry> got = backend_->Get("big");
  ASSERT_OK(got);
  EXPECT_TRUE(got->value == value);
}

TEST_P(BackendConformanceTest, OversizeValueRejectedAndNothingStored) {
  const size_t max = backend_->limits().max_value_bytes;
  ASSERT_GE(max, size_t{1} << 20) << "limit must allow at least 1 MiB";
  ASSERT_OK(backend_->Put("at-limit", std::string(max, 'a')));
  absl::StatusOr<uint64_t> rev_before = backend_->Revision();
  ASSERT_OK(rev_before);
  EXPECT_EQ(backend_->Put("over", std::string(max + 1, 'a')).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(backend_->Get("over").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(*backend_->Revision(), *rev_before);
}

TEST_P(BackendConformanceTest, InvalidKeysRejectedAndNothingTouched) {
  const std::vector<std::string> bad = {
      "",
      "/lead",
      "trail/",
      "a//b",
      ".",
      "..",
      "a/./b",
      "a/../b",
      "a/..",
      "./a",
      std::string("nul\0byte", 8),
      "tab\there",
      "del\x7f",
      "new\nline",
      std::string(backend_->limits().max_key_bytes + 1, 'k')};
  for (const std::string& key : bad) {
    SCOPED_TRACE(absl::StrCat("key of ", key.size(), " bytes"));
    EXPECT_EQ(backend_->Put(key, "v").status().code(),
              absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(backend_->Get(key).status().code(),
              absl::StatusCode::kInvalidArgument);
    Entry into;
    EXPECT_EQ(backend_->GetInto(key, &into).code(),
              absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(backend_->Delete(key).status().code(),
              absl::StatusCode::kInvalidArgument);
    // A bad key anywhere in a batch rejects the whole batch.
    std::vector<WriteOp> batch = {WriteOp::Put("good", "v"),
                                  WriteOp::Put(key, "v")};
    EXPECT_EQ(backend_->Commit(batch).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
  for (absl::string_view prefix : {"a", "/a/", "a//", "../", "a/b"}) {
    EXPECT_EQ(backend_->List(prefix).status().code(),
              absl::StatusCode::kInvalidArgument)
        << prefix;
  }
  EXPECT_THAT(ListOrDie(backend_.get(), ""), IsEmpty());
  EXPECT_EQ(*backend_->Revision(), 0u);
}

TEST_P(BackendConformanceTest, UnusualButValidKeysWork) {
  const std::vector<std::string> good = {
      "a",
      "a.b",
      "...",
      "a/.hidden",
      "k\xc3\xa9y/\xe2\x9c\x93",
      std::string(backend_->limits().max_key_bytes, 'k')};
  for (const std::string& key : good) {
    ASSERT_OK(backend_->Put(key, key));
    EXPECT_EQ(backend_->Get(key)->value, key);
  }
}

TEST_P(BackendConformanceTest, DeleteRemovesAndMissingDeleteIsOk) {
  ASSERT_OK(backend_->Put("gone", "x"));
  ASSERT_OK(backend_->Delete("gone"));
  EXPECT_EQ(backend_->Get("gone").status().code(), absl::StatusCode::kNotFound);
  ASSERT_OK(backend_->Delete("gone"));
  ASSERT_OK(backend_->Delete("never/existed"));
}

// ------------------------------------------------------------------- List

TEST_P(BackendConformanceTest, ListShowsImmediateChildrenSorted) {
  for (absl::string_view key : {"zeta", "b/d/e", "a", "b/c", "foo/bar", "foo",
                                "b/d/f/g", "b-x", "b0"}) {
    ASSERT_OK(backend_->Put(key, "v"));
  }
  EXPECT_THAT(ListOrDie(backend_.get(), ""),
              ElementsAre("a", "b-x", "b/", "b0", "foo", "foo/", "zeta"));
  EXPECT_THAT(ListOrDie(backend_.get(), "b/"), ElementsAre("c", "d/"));
  EXPECT_THAT(ListOrDie(backend_.get(), "b/d/"), ElementsAre("e", "f/"));
  EXPECT_THAT(ListOrDie(backend_.get(), "b/d/f/"), ElementsAre("g"));
  EXPECT_THAT(ListOrDie(backend_.get(), "foo/"), ElementsAre("bar"));
  EXPECT_THAT(ListOrDie(backend_.get(), "nothing/"), IsEmpty());
  EXPECT_THAT(ListOrDie(backend_.get(), "a/"), IsEmpty());
}

TEST_P(BackendConformanceTest, ListOrderIsBytewiseWhateverTheInsertOrder) {
  std::vector<std::string> keys;
  for (int i = 0; i < 50; ++i) keys.push_back(absl::StrCat("dir/k", i));
  keys.push_back("dir/Upper");
  keys.push_back("dir/\xc3\xa9");
  std::mt19937_64 rng(42);
  std::shuffle(keys.begin(), keys.end(), rng);
  for (const std::string& key : keys) ASSERT_OK(backend_->Put(key, "v"));
  std::vector<std::string> expected;
  for (const std::string& key : keys) expected.push_back(key.substr(4));
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(ListOrDie(backend_.get(), "dir/"), expected);
}

TEST_P(BackendConformanceTest, DeletesNeverRecurseAndLeaveNoEmptyFolders) {
  for (absl::string_view key : {"foo", "foo/bar", "x/y/z", "x/w"}) {
    ASSERT_OK(backend_->Put(key, "v"));
  }
  ASSERT_OK(backend_->Delete("foo"));
  EXPECT_THAT(ListOrDie(backend_.get(), ""), ElementsAre("foo/", "x/"));
  EXPECT_EQ(backend_->Get("foo/bar")->value, "v");
  ASSERT_OK(backend_->Delete("x/y/z"));
  EXPECT_THAT(ListOrDie(backend_.get(), "x/"), ElementsAre("w"));
  EXPECT_THAT(ListOrDie(backend_.get(), "x/y/"), IsEmpty());
  ASSERT_OK(backend_->Delete("x/w"));
  ASSERT_OK(backend_->Delete("foo/bar"));
  EXPECT_THAT(ListOrDie(backend_.get(), ""), IsEmpty());
  // Deleting a folder name deletes nothing under it.
  ASSERT_OK(backend_->Put("p/q", "v"));
  ASSERT_OK(backend_->Delete("p"));
  EXPECT_THAT(ListOrDie(backend_.get(), ""), ElementsAre("p/"));
}

// ------------------------------------------------------------------ Batch

TEST_P(BackendConformanceTest, BatchAppliesAllAtOneRevision) {
  ASSERT_OK(backend_->Put("old", "x"));
  std::vector<WriteOp> batch = {WriteOp::Put("one", "1"),
                                WriteOp::Put("two/2", "2"),
                                WriteOp::Delete("old")};
  absl::StatusOr<uint64_t> rev = backend_->Commit(batch);
  ASSERT_OK(rev);
  EXPECT_EQ(backend_->Get("one")->version, *rev);
  EXPECT_EQ(backend_->Get("two/2")->version, *rev);
  EXPECT_EQ(backend_->Get("old").status().code(), absl::StatusCode::kNotFound);
}

TEST_P(BackendConformanceTest, FailedPreconditionWritesNothing) {
  absl::StatusOr<uint64_t> v1 = backend_->Put("a", "1");
  ASSERT_OK(v1);
  ASSERT_OK(backend_->Put("b", "1"));
  const uint64_t rev_before = *backend_->Revision();

  std::vector<WriteOp> wrong_version = {
      WriteOp::Put("a", "2").IfVersion(*v1), WriteOp::Put("c", "new"),
      WriteOp::Delete("b").IfVersion(*v1 + 1000)};
  EXPECT_EQ(backend_->Commit(wrong_version).status().code(),
            absl::StatusCode::kAborted);
  std::vector<WriteOp> not_absent = {WriteOp::Put("c", "new"),
                                     WriteOp::Put("a", "3").IfAbsent()};
  EXPECT_EQ(backend_->Commit(not_absent).status().code(),
            absl::StatusCode::kAborted);
  std::vector<WriteOp> absent_version = {
      WriteOp::Put("c", "new"), WriteOp::Check("missing").IfVersion(1)};
  EXPECT_EQ(backend_->Commit(absent_version).status().code(),
            absl::StatusCode::kAborted);

  EXPECT_EQ(backend_->Get("a")->value, "1");
  EXPECT_EQ(backend_->Get("b")->value, "1");
  EXPECT_EQ(backend_->Get("c").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(*backend_->Revision(), rev_before);
}

TEST_P(BackendConformanceTest, PreconditionsThatHoldApply) {
  absl::StatusOr<uint64_t> v1 = backend_->Put("a", "1");
  ASSERT_OK(v1);
  std::vector<WriteOp> batch = {WriteOp::Put("a", "2").IfVersion(*v1),
                                WriteOp::Put("n", "new").IfAbsent(),
                                WriteOp::Check("gone").IfAbsent()};
  ASSERT_OK(backend_->Commit(batch));
  EXPECT_EQ(backend_->Get("a")->value, "2");
  EXPECT_EQ(backend_->Get("n")->value, "new");
  // A checks-only batch writes nothing and moves no revision.
  const uint64_t rev = *backend_->Revision();
  std::vector<WriteOp> checks = {WriteOp::Check("n").IfVersion(rev)};
  absl::StatusOr<uint64_t> check_rev = backend_->Commit(checks);
  ASSERT_OK(check_rev);
  EXPECT_EQ(*check_rev, rev);
  EXPECT_EQ(*backend_->Revision(), rev);
}

TEST_P(BackendConformanceTest, MalformedBatchesAreInvalid) {
  std::vector<WriteOp> dup = {WriteOp::Put("a", "1"), WriteOp::Delete("a")};
  EXPECT_EQ(backend_->Commit(dup).status().code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<WriteOp> bare_check = {WriteOp::Check("a")};
  EXPECT_EQ(backend_->Commit(bare_check).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(backend_->Get("a").status().code(), absl::StatusCode::kNotFound);
}

TEST_P(BackendConformanceTest, CheckAndSetCounterLosesNoUpdate) {
  constexpr int kThreads = 8;
  const int kIncrements = GetParam().contended_increments;
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kIncrements; ++i) {
        while (true) {
          absl::StatusOr<Entry> cur = backend_->Get("counter");
          WriteOp op;
          if (cur.ok()) {
            op = WriteOp::Put("counter",
                              std::to_string(std::stoll(cur->value) + 1))
                     .IfVersion(cur->version);
          } else if (absl::IsNotFound(cur.status())) {
            op = WriteOp::Put("counter", "1").IfAbsent();
          } else {
            ++errors;
            return;
          }
          absl::StatusOr<uint64_t> done =
              backend_->Commit(absl::MakeConstSpan(&op, 1));
          if (done.ok()) break;
          if (!absl::IsAborted(done.status())) {
            ++errors;
            return;
          }
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(backend_->Get("counter")->value,
            std::to_string(kThreads * kIncrements));
}

// ------------------------------------------------------------------ Lease

#define SB_REQUIRE_HA()           \
  HaBackend* ha = backend_->ha(); \
  if (ha == nullptr) GTEST_SKIP() << "backend has no HA capability"

TEST_P(BackendConformanceTest, GrantIsVisibleToEveryone) {
  SB_REQUIRE_HA();
  absl::StatusOr<std::optional<LeaseHolder>> none = ha->CurrentHolder();
  ASSERT_OK(none);
  EXPECT_FALSE(none->has_value());
  std::unique_ptr<LeadershipGrant> grant =
      AcquireOrDie(ha, "10.0.0.1:8200", LeaseTtl());
  ASSERT_NE(grant, nullptr);
  EXPECT_NE(grant->fence(), kNoFence);
  EXPECT_EQ(grant->holder(), "10.0.0.1:8200");
  EXPECT_FALSE(grant->Lost());
  absl::StatusOr<std::optional<LeaseHolder>> now = ha->CurrentHolder();
  ASSERT_OK(now);
  ASSERT_TRUE(now->has_value());
  EXPECT_EQ((*now)->holder, "10.0.0.1:8200");
  EXPECT_EQ((*now)->fence, grant->fence());
  ASSERT_OK(grant->Release());
  EXPECT_TRUE(grant->Lost());
  EXPECT_FALSE(ha->CurrentHolder()->has_value());
}

TEST_P(BackendConformanceTest, AcquireRejectsBadOptions) {
  SB_REQUIRE_HA();
  AcquireOptions empty_holder;
  empty_holder.holder = "";
  EXPECT_EQ(ha->Acquire(empty_holder).status().code(),
            absl::StatusCode::kInvalidArgument);
  AcquireOptions zero_ttl;
  zero_ttl.holder = "n";
  zero_ttl.ttl = absl::ZeroDuration();
  EXPECT_EQ(ha->Acquire(zero_ttl).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_P(BackendConformanceTest, FencesStrictlyIncreaseAcrossGrants) {
  SB_REQUIRE_HA();
  FenceToken last = kNoFence;
  for (int i = 0; i < 6; ++i) {
    std::unique_ptr<LeadershipGrant> grant =
        AcquireOrDie(ha, absl::StrCat("node-", i), LeaseTtl());
    ASSERT_NE(grant, nullptr);
    EXPECT_GT(grant->fence(), last);
    last = grant->fence();
    if (i % 3 == 0) {
      ASSERT_OK(grant->Release());
    } else if (i % 3 == 1) {
      AdvanceLeaseTime(LeaseTtl() + absl::Milliseconds(50));
      EXPECT_TRUE(grant->Lost());
    } else {
      ASSERT_OK(ha->BreakLease(grant->fence()));
      EXPECT_TRUE(grant->Lost());
    }
  }
}

TEST_P(BackendConformanceTest, TryOnceWhileHeldIsDeadlineExceeded) {
  SB_REQUIRE_HA();
  std::unique_ptr<LeadershipGrant> grant = AcquireOrDie(ha, "a", LeaseTtl());
  AcquireOptions once;
  once.holder = "b";
  once.ttl = LeaseTtl();
  once.deadline = absl::InfinitePast();
  EXPECT_EQ(ha->Acquire(once).status().code(),
            absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ((*ha->CurrentHolder())->holder, "a");
}

TEST_P(BackendConformanceTest, SecondAcquireBlocksUntilRelease) {
  SB_REQUIRE_HA();
  std::unique_ptr<LeadershipGrant> first = AcquireOrDie(ha, "a", LeaseTtl());
  ASSERT_NE(first, nullptr);
  std::atomic<bool> granted{false};
  std::unique_ptr<LeadershipGrant> second;
  std::thread waiter([&] {
    second = AcquireOrDie(ha, "b", LeaseTtl());
    granted = true;
  });
  // Not granted while the first holds it (checked over real time).
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_FALSE(granted.load());
  ASSERT_OK(first->Release());
  waiter.join();
  ASSERT_TRUE(granted.load());
  ASSERT_NE(second, nullptr);
  EXPECT_GT(second->fence(), first->fence());
  EXPECT_EQ((*ha->CurrentHolder())->holder, "b");
}

TEST_P(BackendConformanceTest, BlockedAcquireReturnsWhenCancelled) {
  SB_REQUIRE_HA();
  std::unique_ptr<LeadershipGrant> holder = AcquireOrDie(ha, "a", LeaseTtl());
  Cancellation cancel;
  absl::Status result;
  std::thread waiter([&] {
    AcquireOptions options;
    options.holder = "b";
    options.ttl = LeaseTtl();
    options.cancel = &cancel;
    result = ha->Acquire(options).status();
  });
  absl::SleepFor(absl::Milliseconds(20));
  cancel.Cancel();
  waiter.join();  // Hangs (test timeout) if cancellation is not honoured.
  EXPECT_EQ(result.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ((*ha->CurrentHolder())->holder, "a");
}

TEST_P(BackendConformanceTest, NeverTwoHoldersAmongEightContenders) {
  SB_REQUIRE_HA();
  constexpr int kContenders = 8;
  constexpr int kRoundsEach = 15;
  std::atomic<int> holders{0};
  std::atomic<int> max_holders{0};
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kContenders; ++t) {
    threads.emplace_back([&, t] {
      for (int r = 0; r < kRoundsEach; ++r) {
        AcquireOptions options;
        options.holder = absl::StrCat("node-", t);
        options.ttl = absl::Hours(1);  // Never expires during the test.
        absl::StatusOr<std::unique_ptr<LeadershipGrant>> grant =
            ha->Acquire(options);
        if (!grant.ok()) {
          ++failures;
          return;
        }
        int now = ++holders;
        int seen = max_holders.load();
        while (now > seen && !max_holders.compare_exchange_weak(seen, now)) {
        }
        // The holder's fenced write must succeed while it holds the lease.
        if (!backend_->Put("leader", options.holder, (*grant)->fence()).ok()) {
          ++failures;
        }
        --holders;
        if (!(*grant)->Release().ok()) ++failures;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(max_holders.load(), 1);
}

TEST_P(BackendConformanceTest, ExpiredGrantIsFencedOutAndSuccessorWrites) {
  SB_REQUIRE_HA();
  std::unique_ptr<LeadershipGrant> old = AcquireOrDie(ha, "old", LeaseTtl());
  ASSERT_NE(old, nullptr);
  ASSERT_OK(backend_->Put("data", "from-old", old->fence()));
  AdvanceLeaseTime(LeaseTtl() + absl::Milliseconds(50));
  EXPECT_TRUE(old->Lost());
  EXPECT_FALSE(ha->CurrentHolder()->has_value());
  // The old holder's write is refused with nothing applied.
  const uint64_t rev = *backend_->Revision();
  absl::Status stale = backend_->Put("data", "stale", old->fence()).status();
  EXPECT_EQ(stale.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(IsStaleFence(stale)) << stale;
  EXPECT_FALSE(IsStaleFence(absl::FailedPreconditionError("sealed")));
  EXPECT_EQ(backend_->Get("data")->value, "from-old");
  EXPECT_EQ(*backend_->Revision(), rev);

  std::unique_ptr<LeadershipGrant> next = AcquireOrDie(ha, "next", LeaseTtl());
  ASSERT_NE(next, nullptr);
  EXPECT_GT(next->fence(), old->fence());
  std::vector<WriteOp> stale_batch = {WriteOp::Put("data", "stale"),
                                      WriteOp::Put("other", "stale")};
  EXPECT_EQ(backend_->Commit(stale_batch, old->fence()).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(backend_->Delete("data", old->fence()).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(backend_->Get("other").status().code(),
            absl::StatusCode::kNotFound);
  ASSERT_OK(backend_->Put("data", "from-next", next->fence()));
  EXPECT_EQ(backend_->Get("data")->value, "from-next");
  EXPECT_EQ(old->Renew().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_P(BackendConformanceTest, ReleasedGrantIsFencedOut) {
  SB_REQUIRE_HA();
  std::unique_ptr<LeadershipGrant> old = AcquireOrDie(ha, "old", LeaseTtl());
  ASSERT_NE(old, nullptr);
  const FenceToken old_fence = old->fence();
  ASSERT_OK(old->Release());
  ASSERT_OK(old->Release());  // Idempotent.
  EXPECT_EQ(backend_->Put("k", "v", old_fence).status().code(),
            absl::StatusCode::kFailedPrecondition);
  std::unique_ptr<LeadershipGrant> next = AcquireOrDie(ha, "next", LeaseTtl());
  EXPECT_EQ(backend_->Put("k", "v", old_fence).status().code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_OK(backend_->Put("k", "v", next->fence()));
}

TEST_P(BackendConformanceTest, FenceNeverGrantedIsRefused) {
  SB_REQUIRE_HA();
  absl::Status refused = backend_->Put("k", "v", 12345).status();
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition);
  // Marked, so callers can tell "leadership moved on" from other refusals.
  EXPECT_TRUE(IsStaleFence(refused)) << refused;
  std::unique_ptr<LeadershipGrant> grant = AcquireOrDie(ha, "a", LeaseTtl());
  EXPECT_EQ(backend_->Put("k", "v", grant->fence() + 1).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(backend_->Get("k").status().code(), absl::StatusCode::kNotFound);
}

TEST_P(BackendConformanceTest, FenceIsCheckedBeforePreconditions) {
  SB_REQUIRE_HA();
  std::unique_ptr<LeadershipGrant> old = AcquireOrDie(ha, "old", LeaseTtl());
  ASSERT_OK(old->Release());
  std::vector<WriteOp> batch = {WriteOp::Put("k", "v").IfVersion(99)};
  EXPECT_EQ(backend_->Commit(batch, old->fence()).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_P(BackendConformanceTest, RenewExtendsTheGrant) {
  SB_REQUIRE_HA();
  const absl::Duration ttl = LeaseTtl();
  std::unique_ptr<LeadershipGrant> grant = AcquireOrDie(ha, "a", ttl);
  ASSERT_NE(grant, nullptr);
  for (int i = 0; i < 4; ++i) {
    AdvanceLeaseTime(ttl * 0.6);
    ASSERT_OK(grant->Renew());
    EXPECT_FALSE(grant->Lost());
  }
  ASSERT_OK(backend_->Put("k", "v", grant->fence()));
  EXPECT_EQ((*ha->CurrentHolder())->fence, grant->fence());
  AdvanceLeaseTime(ttl + absl::Milliseconds(50));
  EXPECT_TRUE(grant->Lost());
  EXPECT_EQ(grant->Renew().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_P(BackendConformanceTest, LossIsReportedToTheOldHolder) {
  SB_REQUIRE_HA();
  std::unique_ptr<LeadershipGrant> grant = AcquireOrDie(ha, "a", LeaseTtl());
  ASSERT_NE(grant, nullptr);
  // Not lost: a wait with a deadline already passed returns false.
  EXPECT_FALSE(grant->WaitLost(absl::InfinitePast()));
  EXPECT_LE(
      grant->expiry(),
      (GetParam().real_time_lease ? absl::Now() : clock_.Now()) + LeaseTtl());
  std::atomic<bool> saw_loss{false};
  std::thread watcher(
      [&] { saw_loss = grant->WaitLost(absl::InfiniteFuture()); });
  ASSERT_OK(ha->BreakLease(grant->fence()));
  watcher.join();
  EXPECT_TRUE(saw_loss.load());
  EXPECT_TRUE(grant->Lost());
}

TEST_P(BackendConformanceTest, LossByExpiryWakesAWaiter) {
  SB_REQUIRE_HA();
  std::unique_ptr<LeadershipGrant> grant = AcquireOrDie(ha, "a", LeaseTtl());
  ASSERT_NE(grant, nullptr);
  std::atomic<bool> saw_loss{false};
  std::thread watcher(
      [&] { saw_loss = grant->WaitLost(absl::InfiniteFuture()); });
  AdvanceLeaseTime(LeaseTtl() + absl::Milliseconds(50));
  watcher.join();
  EXPECT_TRUE(saw_loss.load());
}

TEST_P(BackendConformanceTest, ExpiredHolderIsTakenOverByBlockedContender) {
  SB_REQUIRE_HA();
  std::unique_ptr<LeadershipGrant> hung = AcquireOrDie(ha, "hung", LeaseTtl());
  ASSERT_NE(hung, nullptr);
  std::unique_ptr<LeadershipGrant> next;
  std::thread contender([&] { next = AcquireOrDie(ha, "next", LeaseTtl()); });
  absl::SleepFor(absl::Milliseconds(20));
  AdvanceLeaseTime(LeaseTtl() + absl::Milliseconds(50));
  contender.join();
  ASSERT_NE(next, nullptr);
  EXPECT_GT(next->fence(), hung->fence());
  EXPECT_TRUE(hung->Lost());
  // The hung holder wakes up and tries to write: refused.
  EXPECT_EQ(backend_->Put("k", "late", hung->fence()).status().code(),
            absl::StatusCode::kFailedPrecondition);
  // Its release must not end the successor's grant.
  ASSERT_OK(hung->Release());
  EXPECT_EQ((*ha->CurrentHolder())->fence, next->fence());
}

TEST_P(BackendConformanceTest, DestroyingAGrantReleasesIt) {
  SB_REQUIRE_HA();
  {
    std::unique_ptr<LeadershipGrant> grant = AcquireOrDie(ha, "a", LeaseTtl());
    ASSERT_NE(grant, nullptr);
  }
  EXPECT_FALSE(ha->CurrentHolder()->has_value());
}

}  // namespace
}  // namespace strongbox
