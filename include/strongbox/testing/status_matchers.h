// GoogleTest matchers for absl::Status and absl::StatusOr<T> (Debian's
// Abseil and GoogleTest ship none):
//
//   EXPECT_THAT(store.Put(...), IsOk());
//   EXPECT_THAT(barrier.Get("x"), StatusIs(absl::StatusCode::kNotFound));
//   EXPECT_THAT(s, StatusIs(absl::StatusCode::kAborted, HasSubstr("fence")));
//   EXPECT_THAT(store.KvGet("a"), IsOkAndHolds(Field(&KvSecret::data, ...)));
//   ASSERT_OK(expr); EXPECT_OK(expr);
//   ASSERT_OK_AND_ASSIGN(auto value, expr);
//
// Each matcher accepts an absl::Status or any absl::StatusOr<T>. Failure
// messages show the status code and message (never the value held by an
// OK StatusOr, which may be a secret). Part of //:testing; header-only.
// The namespace is strongbox_testing, not strongbox::testing, so that code
// inside namespace strongbox still finds GoogleTest as plain `testing::`.
#ifndef STRONGBOX_TESTING_STATUS_MATCHERS_H_
#define STRONGBOX_TESTING_STATUS_MATCHERS_H_

#include <ostream>
#include <string>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace strongbox_testing {
namespace internal {

inline const absl::Status& GetStatus(const absl::Status& status) {
  return status;
}
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& status_or) {
  return status_or.status();
}

inline std::string Describe(const absl::Status& status) {
  return status.ok() ? std::string("OK")
                     : absl::StatusCodeToString(status.code()) + ": " +
                           std::string(status.message());
}

template <typename StatusType>
class StatusIsMatcherImpl : public ::testing::MatcherInterface<StatusType> {
 public:
  StatusIsMatcherImpl(::testing::Matcher<absl::StatusCode> code,
                      ::testing::Matcher<const std::string&> message)
      : code_(std::move(code)), message_(std::move(message)) {}

  void DescribeTo(std::ostream* os) const override {
    *os << "has a status code that ";
    code_.DescribeTo(os);
    *os << ", and a message that ";
    message_.DescribeTo(os);
  }
  void DescribeNegationTo(std::ostream* os) const override {
    *os << "has a status code that ";
    code_.DescribeNegationTo(os);
    *os << ", or a message that ";
    message_.DescribeNegationTo(os);
  }
  bool MatchAndExplain(
      StatusType actual,
      ::testing::MatchResultListener* listener) const override {
    const absl::Status& status = GetStatus(actual);
    *listener << "which is " << Describe(status);
    if (!code_.Matches(status.code())) return false;
    return message_.Matches(std::string(status.message()));
  }

 private:
  ::testing::Matcher<absl::StatusCode> code_;
  ::testing::Matcher<const std::string&> message_;
};

class StatusIsMatcher {
 public:
  StatusIsMatcher(::testing::Matcher<absl::StatusCode> code,
                  ::testing::Matcher<const std::string&> message)
      : code_(std::move(code)), message_(std::move(message)) {}
  template <typename StatusType>
  operator ::testing::Matcher<StatusType>() const {  // NOLINT
    return ::testing::Matcher<StatusType>(
        new StatusIsMatcherImpl<const StatusType&>(code_, message_));
  }

 private:
  ::testing::Matcher<absl::StatusCode> code_;
  ::testing::Matcher<const std::string&> message_;
};

template <typename StatusOrType>
class IsOkAndHoldsMatcherImpl
    : public ::testing::MatcherInterface<StatusOrType> {
 public:
  using Value = typename std::remove_reference_t<StatusOrType>::value_type;

  template <typename InnerMatcher>
  explicit IsOkAndHoldsMatcherImpl(InnerMatcher&& inner)
      : inner_(::testing::SafeMatcherCast<const Value&>(
            std::forward<InnerMatcher>(inner))) {}

  void DescribeTo(std::ostream* os) const override {
    *os << "is OK and has a value that ";
    inner_.DescribeTo(os);
  }
  void DescribeNegationTo(std::ostream* os) const override {
    *os << "isn't OK or has a value that ";
    inner_.DescribeNegationTo(os);
  }
  bool MatchAndExplain(
      StatusOrType actual,
      ::testing::MatchResultListener* listener) const override {
    if (!actual.ok()) {
      *listener << "which is " << Describe(actual.status());
      return false;
    }
    ::testing::StringMatchResultListener inner_listener;
    const bool matches = inner_.MatchAndExplain(*actual, &inner_listener);
    const std::string explanation = inner_listener.str();
    if (!explanation.empty()) *listener << "whose value " << explanation;
    return matches;
  }

 private:
  ::testing::Matcher<const Value&> inner_;
};

template <typename InnerMatcher>
class IsOkAndHoldsMatcher {
 public:
  explicit IsOkAndHoldsMatcher(InnerMatcher inner) : inner_(std::move(inner)) {}
  template <typename StatusOrType>
  operator ::testing::Matcher<StatusOrType>() const {  // NOLINT
    return ::testing::Matcher<StatusOrType>(
        new IsOkAndHoldsMatcherImpl<const StatusOrType&>(inner_));
  }

 private:
  InnerMatcher inner_;
};

}  // namespace internal

// Matches an absl::Status or absl::StatusOr<T> whose code matches `code`
// (and whose message matches `message`, if given).
inline internal::StatusIsMatcher StatusIs(
    ::testing::Matcher<absl::StatusCode> code,
    ::testing::Matcher<const std::string&> message = ::testing::_) {
  return internal::StatusIsMatcher(std::move(code), std::move(message));
}

// Matches an OK absl::Status or absl::StatusOr<T>.
inline internal::StatusIsMatcher IsOk() {
  return StatusIs(absl::StatusCode::kOk);
}

// Matches an OK absl::StatusOr<T> whose value matches `inner`.
template <typename InnerMatcher>
internal::IsOkAndHoldsMatcher<std::decay_t<InnerMatcher>> IsOkAndHolds(
    InnerMatcher&& inner) {
  return internal::IsOkAndHoldsMatcher<std::decay_t<InnerMatcher>>(
      std::forward<InnerMatcher>(inner));
}

}  // namespace strongbox_testing

#define STRONGBOX_TESTING_CONCAT_INNER_(a, b) a##b
#define STRONGBOX_TESTING_CONCAT_(a, b) STRONGBOX_TESTING_CONCAT_INNER_(a, b)

#ifndef EXPECT_OK
#define EXPECT_OK(expr) EXPECT_THAT((expr), ::strongbox_testing::IsOk())
#endif
#ifndef ASSERT_OK
#define ASSERT_OK(expr) ASSERT_THAT((expr), ::strongbox_testing::IsOk())
#endif
#ifndef ASSERT_OK_AND_ASSIGN
// Asserts that `expr` (an absl::StatusOr<T>) is OK and moves its value into
// `lhs` (a declaration or an existing variable).
#define ASSERT_OK_AND_ASSIGN(lhs, expr)         \
  STRONGBOX_TESTING_ASSERT_OK_AND_ASSIGN_IMPL_( \
      STRONGBOX_TESTING_CONCAT_(strongbox_statusor_, __LINE__), lhs, expr)
#define STRONGBOX_TESTING_ASSERT_OK_AND_ASSIGN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                                 \
  ASSERT_THAT(statusor.status(), ::strongbox_testing::IsOk());            \
  lhs = *std::move(statusor)
#endif

#endif  // STRONGBOX_TESTING_STATUS_MATCHERS_H_
