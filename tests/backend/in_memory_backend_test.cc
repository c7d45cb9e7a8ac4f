#include "strongbox/in_memory_backend.h"

#include "gtest/gtest.h"
#include "strongbox/testing/backend_conformance.h"

namespace strongbox {
namespace {

INSTANTIATE_TEST_SUITE_P(InMemory, BackendConformanceTest,
                         testing::Values(BackendFactory{
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
  EXPECT_TRUE(backend->Put("k", std::string(16, 'x')).ok());
  EXPECT_EQ(backend->Put("k", std::string(17, 'x')).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(backend->Get("k")->value, std::string(16, 'x'));
}

TEST(InMemoryBackendTest, RealClockLeaseExpires) {
  std::unique_ptr<Backend> backend = NewInMemoryBackend();
  AcquireOptions options;
  options.holder = "a";
  options.ttl = absl::Milliseconds(30);
  auto grant = backend->ha()->Acquire(options);
  ASSERT_TRUE(grant.ok());
  // A blocked contender is granted once the holder's TTL passes.
  options.holder = "b";
  auto next = backend->ha()->Acquire(options);
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_GT((*next)->fence(), (*grant)->fence());
  EXPECT_TRUE((*grant)->Lost());
}

}  // namespace
}  // namespace strongbox
