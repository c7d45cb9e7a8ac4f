#include "strongbox/testing/fault_injecting_backend.h"

#include <atomic>
#include <thread>

#include "gtest/gtest.h"
#include "strongbox/in_memory_backend.h"
#include "strongbox/testing/backend_conformance.h"
#include "strongbox/testing/fake_clock.h"
#include "strongbox/testing/status_matchers.h"

namespace strongbox {
namespace {

// The wrapper with no faults must be a conforming backend.
class OwningFaultBackend : public FaultInjectingBackend {
 public:
  explicit OwningFaultBackend(std::unique_ptr<Backend> target)
      : FaultInjectingBackend(target.get()), owned_(std::move(target)) {}

 private:
  std::unique_ptr<Backend> owned_;
};

INSTANTIATE_TEST_SUITE_P(FaultWrapperNoFaults, BackendConformanceTest,
                         ::testing::Values(BackendFactory{
                             "FaultWrapperNoFaults",
                             [](Clock* clock) -> std::unique_ptr<Backend> {
                               InMemoryBackendOptions options;
                               options.clock = clock;
                               return std::make_unique<OwningFaultBackend>(
                                   NewInMemoryBackend(options));
                             }}),
                         BackendFactoryName);

class FaultInjectingBackendTest : public ::testing::Test {
 protected:
  FaultInjectingBackendTest()
      : target_(NewInMemoryBackend({&clock_})),
        faulty_(target_.get(), &clock_) {}

  FakeClock clock_;
  std::unique_ptr<Backend> target_;
  FaultInjectingBackend faulty_;
};

TEST_F(FaultInjectingBackendTest, FailNextFailsExactlyNMatchingCalls) {
  faulty_.FailNext(2, absl::UnavailableError("down"),
                   FaultInjectingBackend::kCommit);
  EXPECT_TRUE(faulty_.Get("k").status().code() == absl::StatusCode::kNotFound);
  EXPECT_EQ(faulty_.Put("k", "v").status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(faulty_.Put("k", "v").status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_OK(faulty_.Put("k", "v"));
  EXPECT_EQ(faulty_.injected_failures(), 2);
  // Nothing reached the target for the failed calls.
  EXPECT_EQ(*target_->Revision(), 1u);
}

TEST_F(FaultInjectingBackendTest, FailFractionIsSeededAndRoughlyRight) {
  faulty_.FailFraction(0.25, absl::UnavailableError("flaky"),
                       FaultInjectingBackend::kGet);
  int failed = 0;
  for (int i = 0; i < 4000; ++i) {
    if (faulty_.Get("k").status().code() == absl::StatusCode::kUnavailable) {
      ++failed;
    }
  }
  EXPECT_GT(failed, 800);
  EXPECT_LT(failed, 1200);
  // Same seed, same sequence.
  FaultInjectingBackend again(target_.get(), &clock_);
  again.FailFraction(0.25, absl::UnavailableError("flaky"),
                     FaultInjectingBackend::kGet);
  int failed_again = 0;
  for (int i = 0; i < 4000; ++i) {
    if (again.Get("k").status().code() == absl::StatusCode::kUnavailable) {
      ++failed_again;
    }
  }
  EXPECT_EQ(failed, failed_again);
}

TEST_F(FaultInjectingBackendTest, LatencyOnAFakeClockIsAHangUntilAdvanced) {
  faulty_.SetLatency(absl::Seconds(5), FaultInjectingBackend::kCommit);
  std::atomic<bool> done{false};
  std::thread writer([&] {
    EXPECT_OK(faulty_.Put("k", "v"));
    done = true;
  });
  while (clock_.sleepers() == 0) std::this_thread::yield();
  EXPECT_FALSE(done.load());
  clock_.Advance(absl::Seconds(5));
  writer.join();
  EXPECT_TRUE(done.load());
}

TEST_F(FaultInjectingBackendTest, BlockHoldsCallsUntilUnblocked) {
  faulty_.Block(FaultInjectingBackend::kGet);
  std::thread reader([&] { (void)faulty_.Get("k"); });
  while (faulty_.blocked_calls() == 0) std::this_thread::yield();
  EXPECT_OK(faulty_.Put("k", "v"));  // Other ops still flow.
  faulty_.Unblock();
  reader.join();
  EXPECT_EQ(faulty_.blocked_calls(), 0);
}

TEST_F(FaultInjectingBackendTest, LostAckAppliesTheWriteButReportsFailure) {
  faulty_.LoseNextCommitAcks(1);
  EXPECT_EQ(faulty_.Put("k", "v").status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(target_->Get("k")->value, "v");
  EXPECT_OK(faulty_.Put("k", "w"));
}

TEST_F(FaultInjectingBackendTest, FailedRenewalsLetTheGrantLapse) {
  AcquireOptions options;
  options.holder = "a";
  options.ttl = absl::Seconds(10);
  auto grant = faulty_.ha()->Acquire(options);
  ASSERT_OK(grant);
  faulty_.FailRenewals(true);
  clock_.Advance(absl::Seconds(6));
  EXPECT_EQ((*grant)->Renew().code(), absl::StatusCode::kUnavailable);
  EXPECT_FALSE((*grant)->Lost());
  clock_.Advance(absl::Seconds(5));
  EXPECT_TRUE((*grant)->Lost());
  EXPECT_FALSE(faulty_.ha()->CurrentHolder()->has_value());
}

TEST_F(FaultInjectingBackendTest, ExpireCurrentGrantEndsItAndFencesItOut) {
  AcquireOptions options;
  options.holder = "a";
  auto grant = faulty_.ha()->Acquire(options);
  ASSERT_OK(grant);
  EXPECT_OK(faulty_.ExpireCurrentGrant());
  EXPECT_TRUE((*grant)->Lost());
  EXPECT_EQ(faulty_.Put("k", "v", (*grant)->fence()).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_OK(faulty_.ExpireCurrentGrant());  // None held: fine.
}

TEST_F(FaultInjectingBackendTest, AcquireFaultsAndClear) {
  faulty_.FailNext(1, absl::UnavailableError("no"),
                   FaultInjectingBackend::kAcquire);
  AcquireOptions options;
  options.holder = "a";
  EXPECT_EQ(faulty_.ha()->Acquire(options).status().code(),
            absl::StatusCode::kUnavailable);
  faulty_.FailFraction(1.0, absl::InternalError("all"));
  faulty_.Clear();
  EXPECT_OK(faulty_.ha()->Acquire(options));
}

}  // namespace
}  // namespace strongbox
