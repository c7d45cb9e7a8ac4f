#include "strongbox/in_memory_backend.h"

#include "gtest/gtest.h"
#include "strongbox/testing/backend_conformance.h"
#include "strongbox/testing/fake_clock.h"
#include "strongbox/testing/status_matchers.h"

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
