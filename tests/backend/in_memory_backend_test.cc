#include "strongbox/in_memory_backend.h"

#include <algorithm>
#include <atomic>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "strongbox/testing/backend_conformance.h"
#include "strongbox/testing/fake_clock.h"
#include "strongbox/testing/status_matchers.h"
#include "tests/util/wait_for.h"

namespace strongbox {
namespace {

INSTANTIATE_TEST_SUITE_P(InMemory, BackendConformanceTest,
                         ::testing::Values(BackendFactory{
                             "InMemory",
                             [](Clock* clock) {
                               InMemoryBackendOptions options;
                               options.clock = clock;
                               return NewInMemoryBackend(options);
                             }}),
                         BackendFactoryName);

// Past 64 entries the backend finds keys through a hash index beside its
// ordered map, built and dropped as the map grows and shrinks. A random
// history of batches (puts, deletes, checks with preconditions, some
// refused) takes it across that size both ways, twice; after every batch
// each key's Get, and now and then the listing, must answer as a plain
// ordered map of the same history does.
TEST(InMemoryBackendTest, AnswersAsAnOrderedMapAcrossTheIndexThreshold) {
  std::unique_ptr<Backend> backend = NewInMemoryBackend();
  struct Stored {
    std::string value;
    uint64_t version;
  };
  std::map<std::string, Stored> model;
  std::vector<std::string> keys;
  for (int i = 0; i < 300; ++i) {
    // Long shared prefixes, as the store's keys have.
    keys.push_back(absl::StrCat("kv/meta/team/service/secret-", i));
  }
  std::mt19937 random(20261204);
  auto pick = [&]() { return keys[random() % keys.size()]; };
  // A key the model holds (deletes mostly name one), else any.
  auto pick_present = [&]() {
    if (model.empty() || random() % 10 == 0) return pick();
    auto it = model.begin();
    std::advance(it, random() % model.size());
    return it->first;
  };
  // Phases: grow past the threshold, shrink under half of it, grow again,
  // shrink to nothing.
  const std::vector<int> phases = {200, 8, 250, 0};
  uint64_t revision = 0;
  int refused = 0;
  for (const int target : phases) {
    for (int step = 0; step < 400; ++step) {
      const bool growing = static_cast<int>(model.size()) < target;
      const int put_percent = growing ? 85 : 15;
      std::vector<WriteOp> ops;
      std::map<std::string, bool> named;  // a batch names a key once
      const int size = 1 + static_cast<int>(random() % 4);
      bool will_refuse = false;
      for (int j = 0; j < size; ++j) {
        const bool put = static_cast<int>(random() % 100) < put_percent;
        std::string key = put ? pick() : pick_present();
        if (!named.emplace(key, true).second) continue;
        const auto found = model.find(key);
        WriteOp op = put ? WriteOp::Put(key, absl::StrCat("v", step, "-", j))
                         : WriteOp::Delete(key);
        switch (random() % 6) {
          case 0:  // a precondition that holds
            if (found == model.end()) {
              op.IfAbsent();
            } else {
              op.IfVersion(found->second.version);
            }
            break;
          case 1:  // one that fails (rarely: the batch is refused)
            if (random() % 4 == 0) {
              if (found == model.end()) {
                op.IfVersion(revision + 1);
              } else {
                op.IfAbsent();
              }
              will_refuse = true;
            }
            break;
          case 2:
            op.kind = WriteOp::Kind::kCheck;
            if (found == model.end()) {
              op.IfAbsent();
            } else {
              op.IfVersion(found->second.version);
            }
            break;
          default:
            break;
        }
        ops.push_back(std::move(op));
      }
      absl::StatusOr<uint64_t> committed = backend->Commit(ops);
      if (will_refuse) {
        ASSERT_EQ(committed.status().code(), absl::StatusCode::kAborted)
            << committed.status();
        ++refused;
      } else {
        ASSERT_OK(committed);
        bool writes = false;
        for (const WriteOp& op : ops) {
          writes = writes || op.kind != WriteOp::Kind::kCheck;
        }
        if (writes) ++revision;
        ASSERT_EQ(*committed, revision);
        for (const WriteOp& op : ops) {
          if (op.kind == WriteOp::Kind::kPut) {
            model[op.key] = Stored{op.value, revision};
          } else if (op.kind == WriteOp::Kind::kDelete) {
            model.erase(op.key);
          }
        }
      }
      for (const std::string& key : keys) {
        absl::StatusOr<Entry> got = backend->Get(key);
        const auto want = model.find(key);
        if (want == model.end()) {
          ASSERT_EQ(got.status().code(), absl::StatusCode::kNotFound)
              << key << " at step " << step;
        } else {
          ASSERT_OK(got);
          ASSERT_EQ(got->value, want->second.value) << key;
          ASSERT_EQ(got->version, want->second.version) << key;
        }
      }
      if (step % 50 == 0) {
        absl::StatusOr<std::vector<std::string>> listed =
            backend->List("kv/meta/team/service/");
        ASSERT_OK(listed);
        std::vector<std::string> want;
        for (const auto& [key, stored] : model) {
          want.push_back(
              key.substr(std::string("kv/meta/team/service/").size()));
        }
        std::sort(want.begin(), want.end());
        ASSERT_EQ(*listed, want);
      }
    }
    // Each phase reached its size (the threshold is crossed both ways).
    EXPECT_NEAR(static_cast<double>(model.size()), target, 30) << target;
  }
  EXPECT_GT(refused, 0);
}

// Readers during commits that take the map across the index threshold
// both ways, many times: every Get answers NOT_FOUND or the value last
// written under that same key (a value names its key), never another
// key's. Run under TSan by tools/test. The writer waits at each phase's
// end until the readers have read there, so the readers do run during the
// commits however the threads are scheduled (a run in which the writer
// finished all five rounds before either reader started once passed
// nothing but `found`'s check, which then failed).
TEST(InMemoryBackendTest, ReadersDuringCommitsAcrossTheIndexThreshold) {
  std::unique_ptr<Backend> backend = NewInMemoryBackend();
  std::vector<std::string> keys;
  for (int i = 0; i < 120; ++i) {
    keys.push_back(absl::StrCat("kv/meta/team/service/secret-", i));
  }
  std::atomic<bool> stop{false};
  std::atomic<int> wrong{0};
  std::atomic<int> found{0};
  std::atomic<int> reads{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 2; ++t) {
    readers.emplace_back([&, t] {
      std::mt19937 random(t);
      while (!stop.load()) {
        const std::string& key = keys[random() % keys.size()];
        absl::StatusOr<Entry> got = backend->Get(key);
        if (got.ok()) {
          ++found;
          if (!absl::StartsWith(got->value, key + "=")) ++wrong;
        } else if (got.status().code() != absl::StatusCode::kNotFound) {
          ++wrong;
        }
        ++reads;
      }
    });
  }
  // Until the readers have made `more` reads since the call.
  auto readers_read = [&reads](int more) {
    const int target = reads.load() + more;
    return WaitFor([&] { return reads.load() >= target; });
  };
  // Grow to all 120 keys (past 64), shrink to 10 (under 32), five times.
  // With all 120 stored and no commit running, the readers' reads find
  // their keys, so `found` counts at least the reads of round 0's wait.
  bool waited = true;
  for (int round = 0; round < 5 && waited; ++round) {
    for (size_t i = 0; i < keys.size(); ++i) {
      ASSERT_OK(backend->Put(keys[i], absl::StrCat(keys[i], "=", round)));
    }
    waited = readers_read(100);
    for (size_t i = 10; i < keys.size(); ++i) {
      ASSERT_OK(backend->Delete(keys[i]));
    }
    waited = waited && readers_read(100);
  }
  stop.store(true);
  for (std::thread& r : readers) r.join();
  EXPECT_TRUE(waited) << "the readers made no progress for a minute";
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_GT(found.load(), 0);
}

TEST(InMemoryBackendTest, ConfiguredValueLimitIsEnforced) {
  InMemoryBackendOptions options;
  options.limits.max_value_bytes = 16;
  std::unique_ptr<Backend> backend = NewInMemoryBackend(options);
  EXPECT_OK(backend->Put("k", std::string(16, 'x')));
  EXPECT_EQ(backend->Put("k", std::string(17, 'x')).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(backend->Get("k")->value, std::string(16, 'x'));
}

TEST(InMemoryBackendTest, WallClockStepsNeitherStretchNorCutAGrant) {
  FakeClock clock;
  InMemoryBackendOptions options;
  options.clock = &clock;
  std::unique_ptr<Backend> backend = NewInMemoryBackend(options);
  AcquireOptions acquire;
  acquire.holder = "a";
  acquire.ttl = absl::Seconds(10);
  auto grant = backend->ha()->Acquire(acquire);
  ASSERT_OK(grant);
  // Forward an hour: the healthy holder keeps its grant; expiry is
  // reported in the (stepped) wall clock.
  clock.Set(clock.Now() + absl::Hours(1));
  EXPECT_FALSE((*grant)->Lost());
  EXPECT_EQ((*grant)->expiry(), clock.Now() + absl::Seconds(10));
  auto holder = backend->ha()->CurrentHolder();
  ASSERT_TRUE(holder.ok() && holder->has_value());
  EXPECT_EQ((*holder)->expiry, clock.Now() + absl::Seconds(10));
  // Back two hours, then the TTL passes: the grant is not stretched.
  clock.Set(clock.Now() - absl::Hours(2));
  clock.Advance(absl::Seconds(11));
  EXPECT_TRUE((*grant)->Lost());
  EXPECT_FALSE(backend->ha()->CurrentHolder()->has_value());
}

TEST(InMemoryBackendTest, RealClockLeaseExpires) {
  std::unique_ptr<Backend> backend = NewInMemoryBackend();
  AcquireOptions options;
  options.holder = "a";
  options.ttl = absl::Milliseconds(30);
  auto grant = backend->ha()->Acquire(options);
  ASSERT_OK(grant);
  // A blocked contender is granted once the holder's TTL passes.
  options.holder = "b";
  auto next = backend->ha()->Acquire(options);
  ASSERT_OK(next);
  EXPECT_GT((*next)->fence(), (*grant)->fence());
  EXPECT_TRUE((*grant)->Lost());
}

}  // namespace
}  // namespace strongbox
