// RetryOnConflict (lib/store/retry.h): what is retried, how often, and what
// the caller gets back.
#include "lib/store/retry.h"

#include "absl/status/status.h"
#include "gtest/gtest.h"

namespace strongbox {
namespace {

TEST(RetryOnConflictTest, ReturnsTheFirstNonConflict) {
  int calls = 0;
  absl::Status s = RetryOnConflict([&]() -> absl::Status {
    ++calls;
    if (calls < 3) return VersionedCommitStatus(absl::AbortedError("raced"));
    return absl::OkStatus();
  });
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(calls, 3);
}

TEST(RetryOnConflictTest, StopsAfterTheLimitWithThePlainAborted) {
  int calls = 0;
  absl::Status s = RetryOnConflict([&]() -> absl::Status {
    ++calls;
    return VersionedCommitStatus(absl::AbortedError("raced"));
  });
  EXPECT_EQ(calls, kConflictAttempts);
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted);
  EXPECT_EQ(s.message(), "raced");
  EXPECT_FALSE(IsRetryableConflict(s));
}

TEST(RetryOnConflictTest, AnUnmarkedAbortedIsFinal) {
  // A caller's own check-and-set mismatch is not a write conflict.
  int calls = 0;
  absl::Status s = RetryOnConflict([&]() -> absl::Status {
    ++calls;
    return absl::AbortedError("cas mismatch");
  });
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted);
}

TEST(RetryOnConflictTest, OnlyAbortedCommitsAreMarked) {
  EXPECT_FALSE(
      IsRetryableConflict(VersionedCommitStatus(absl::UnavailableError("x"))));
  EXPECT_EQ(VersionedCommitStatus(absl::UnavailableError("x")).code(),
            absl::StatusCode::kUnavailable);
  EXPECT_TRUE(IsRetryableConflict(ConflictError("used up")));
  int calls = 0;
  absl::Status s = RetryOnConflict([&]() -> absl::Status {
    ++calls;
    return absl::UnavailableError("down");
  });
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace strongbox
