// Tests of the status macros (lib/util/status_macros.h, public
// strongbox/status_macros.h) and the status matchers
// (strongbox/testing/status_matchers.h).
#include "lib/util/status_macros.h"

#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "strongbox/testing/status_matchers.h"

namespace strongbox {
namespace {

using ::strongbox_testing::IsOk;
using ::strongbox_testing::IsOkAndHolds;
using ::strongbox_testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

absl::Status Fails(int* calls) {
  ++*calls;
  return absl::NotFoundError("no such thing");
}
absl::Status Succeeds(int* calls) {
  ++*calls;
  return absl::OkStatus();
}

absl::Status TwoSteps(bool fail_first, int* calls, bool* reached_end) {
  RETURN_IF_ERROR(fail_first ? Fails(calls) : Succeeds(calls));
  RETURN_IF_ERROR(Succeeds(calls));
  *reached_end = true;
  return absl::OkStatus();
}

TEST(ReturnIfErrorTest, ReturnsTheFirstErrorAndEvaluatesOnce) {
  int calls = 0;
  bool reached_end = false;
  EXPECT_THAT(TwoSteps(/*fail_first=*/true, &calls, &reached_end),
              StatusIs(absl::StatusCode::kNotFound, "no such thing"));
  EXPECT_EQ(calls, 1);
  EXPECT_FALSE(reached_end);

  calls = 0;
  EXPECT_OK(TwoSteps(/*fail_first=*/false, &calls, &reached_end));
  EXPECT_EQ(calls, 2);
  EXPECT_TRUE(reached_end);
}

absl::StatusOr<int> ReturnsIntoStatusOr(bool fail) {
  int calls = 0;
  RETURN_IF_ERROR(fail ? Fails(&calls) : Succeeds(&calls));
  return 7;
}

TEST(ReturnIfErrorTest, WorksInAFunctionReturningStatusOr) {
  EXPECT_THAT(ReturnsIntoStatusOr(true), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(ReturnsIntoStatusOr(false), IsOkAndHolds(7));
}

absl::StatusOr<std::unique_ptr<std::string>> MakeValue(bool fail) {
  if (fail) return absl::UnavailableError("try later");
  return std::make_unique<std::string>("value");
}

absl::StatusOr<size_t> UsesAssignOrReturn(bool fail) {
  // A move-only value, a declaration and an existing variable.
  ASSIGN_OR_RETURN(std::unique_ptr<std::string> first, MakeValue(fail));
  std::unique_ptr<std::string> second;
  ASSIGN_OR_RETURN(second, MakeValue(false));
  return first->size() + second->size();
}

TEST(AssignOrReturnTest, MovesTheValueOrReturnsTheStatus) {
  EXPECT_THAT(UsesAssignOrReturn(false), IsOkAndHolds(10u));
  EXPECT_THAT(UsesAssignOrReturn(true),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("later")));
}

TEST(StatusMatchersTest, MatchAndMismatch) {
  EXPECT_THAT(absl::OkStatus(), IsOk());
  EXPECT_THAT(absl::AbortedError("x"), Not(IsOk()));
  EXPECT_THAT(absl::StatusOr<int>(3), IsOk());
  EXPECT_THAT(absl::StatusOr<int>(3), IsOkAndHolds(3));
  EXPECT_THAT(absl::StatusOr<int>(3), Not(IsOkAndHolds(4)));
  EXPECT_THAT(absl::StatusOr<int>(absl::InternalError("boom")),
              Not(IsOkAndHolds(::testing::_)));
  EXPECT_THAT(absl::StatusOr<int>(absl::InternalError("boom")),
              StatusIs(absl::StatusCode::kInternal, "boom"));
  EXPECT_THAT(absl::InternalError("boom"),
              Not(StatusIs(absl::StatusCode::kInternal, "bang")));
  ASSERT_OK_AND_ASSIGN(int three, absl::StatusOr<int>(3));
  EXPECT_EQ(three, 3);
}

TEST(StatusMatchersTest, ExplainsWithCodeAndMessageButNotTheValue) {
  ::testing::StringMatchResultListener listener;
  const ::testing::Matcher<const absl::Status&> m =
      StatusIs(absl::StatusCode::kOk);
  EXPECT_FALSE(m.MatchAndExplain(absl::NotFoundError("gone"), &listener));
  EXPECT_THAT(listener.str(), HasSubstr("NOT_FOUND: gone"));

  ::testing::StringMatchResultListener value_listener;
  const ::testing::Matcher<const absl::StatusOr<std::string>&> ok =
      StatusIs(absl::StatusCode::kNotFound);
  EXPECT_FALSE(ok.MatchAndExplain(absl::StatusOr<std::string>("s3cr3t"),
                                  &value_listener));
  EXPECT_THAT(value_listener.str(), Not(HasSubstr("s3cr3t")));
}

}  // namespace
}  // namespace strongbox
