// SoftwareKeyWrapper (strongbox/key_wrapper.h) and the fault-injecting
// double (strongbox/testing/fault_injecting_key_wrapper.h).
#include "strongbox/key_wrapper.h"

#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "strongbox/testing/fake_clock.h"
#include "strongbox/testing/fault_injecting_key_wrapper.h"
#include "strongbox/testing/status_matchers.h"

namespace strongbox {
namespace {

using ::strongbox_testing::IsOk;
using ::strongbox_testing::StatusIs;

TEST(SoftwareKeyWrapperTest, RoundTripBindsAssociatedData) {
  ASSERT_OK_AND_ASSIGN(auto wrapper, SoftwareKeyWrapper::CreateRandom("k1"));
  EXPECT_EQ(wrapper->type(), "software");
  ASSERT_OK_AND_ASSIGN(WrappedSecret blob, wrapper->Wrap("secret-32", "ad"));
  EXPECT_EQ(blob.key_id, "k1");
  EXPECT_EQ(blob.ciphertext.find("secret-32"), std::string::npos);
  ASSERT_OK_AND_ASSIGN(SecretBytes plain, wrapper->Unwrap(blob, "ad"));
  EXPECT_EQ(plain.view(), "secret-32");
  EXPECT_THAT(wrapper->Unwrap(blob, "other").status(),
              StatusIs(absl::StatusCode::kDataLoss));
}

TEST(SoftwareKeyWrapperTest, EveryFlippedBitAndTruncationFails) {
  ASSERT_OK_AND_ASSIGN(auto wrapper, SoftwareKeyWrapper::CreateRandom("k1"));
  ASSERT_OK_AND_ASSIGN(WrappedSecret blob, wrapper->Wrap("0123456789", "ad"));
  for (size_t i = 0; i < blob.ciphertext.size() * 8; ++i) {
    WrappedSecret bad = blob;
    bad.ciphertext[i / 8] ^= static_cast<char>(1 << (i % 8));
    EXPECT_THAT(wrapper->Unwrap(bad, "ad").status(),
                StatusIs(absl::StatusCode::kDataLoss))
        << "bit " << i;
  }
  for (size_t n = 0; n < blob.ciphertext.size(); ++n) {
    WrappedSecret bad = blob;
    bad.ciphertext.resize(n);
    EXPECT_THAT(wrapper->Unwrap(bad, "ad").status(),
                StatusIs(absl::StatusCode::kDataLoss))
        << "length " << n;
  }
}

TEST(SoftwareKeyWrapperTest, OlderKeyStillUnwrapsAndIsRecognized) {
  ASSERT_OK_AND_ASSIGN(auto wrapper, SoftwareKeyWrapper::CreateRandom("k1"));
  ASSERT_OK_AND_ASSIGN(WrappedSecret old_blob, wrapper->Wrap("abc", "ad"));
  EXPECT_FALSE(wrapper->NeedsRewrap(old_blob));
  EXPECT_THAT(wrapper->Rotate("k2", SecretBytes::Random(32)), IsOk());
  EXPECT_THAT(wrapper->Rotate("k2", SecretBytes::Random(32)),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_TRUE(wrapper->NeedsRewrap(old_blob));
  ASSERT_OK_AND_ASSIGN(SecretBytes plain, wrapper->Unwrap(old_blob, "ad"));
  EXPECT_EQ(plain.view(), "abc");
  ASSERT_OK_AND_ASSIGN(WrappedSecret new_blob, wrapper->Wrap("abc", "ad"));
  EXPECT_EQ(new_blob.key_id, "k2");
  WrappedSecret unknown = new_blob;
  unknown.key_id = "k9";
  EXPECT_THAT(wrapper->Unwrap(unknown, "ad").status(),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST(SoftwareKeyWrapperTest, RejectsBadKeysAndPlaintexts) {
  EXPECT_THAT(SoftwareKeyWrapper::Create("k", SecretBytes::Random(16)).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(SoftwareKeyWrapper::Create("", SecretBytes::Random(32)).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  ASSERT_OK_AND_ASSIGN(auto wrapper, SoftwareKeyWrapper::CreateRandom("k1"));
  EXPECT_THAT(wrapper->Wrap("", "ad").status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(wrapper->Wrap(std::string(1025, 'x'), "ad").status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(SoftwareKeyWrapperTest, ConcurrentWrapUnwrapAndRotate) {
  ASSERT_OK_AND_ASSIGN(auto wrapper, SoftwareKeyWrapper::CreateRandom("k0"));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 200; ++i) {
        absl::StatusOr<WrappedSecret> blob = wrapper->Wrap("value", "ad");
        ASSERT_TRUE(blob.ok());
        absl::StatusOr<SecretBytes> plain = wrapper->Unwrap(*blob, "ad");
        ASSERT_TRUE(plain.ok());
        EXPECT_EQ(plain->view(), "value");
      }
    });
  }
  for (int i = 1; i <= 20; ++i) {
    EXPECT_THAT(
        wrapper->Rotate("k" + std::to_string(i), SecretBytes::Random(32)),
        IsOk());
  }
  for (std::thread& t : threads) t.join();
}

TEST(FaultInjectingKeyWrapperTest, FailsNthNextAllAndHeals) {
  ASSERT_OK_AND_ASSIGN(auto base, SoftwareKeyWrapper::CreateRandom("k1"));
  FaultInjectingKeyWrapper faulty(base.get());
  faulty.FailNth(FaultInjectingKeyWrapper::kWrap, 2,
                 absl::UnavailableError("hsm busy"));
  EXPECT_THAT(faulty.Wrap("a", "ad").status(), IsOk());
  EXPECT_THAT(faulty.Wrap("a", "ad").status(),
              StatusIs(absl::StatusCode::kUnavailable));
  ASSERT_OK_AND_ASSIGN(WrappedSecret blob, faulty.Wrap("a", "ad"));
  EXPECT_EQ(faulty.wrap_calls(), 3);

  faulty.FailNext(FaultInjectingKeyWrapper::kUnwrap, 2,
                  absl::UnavailableError("session lost"));
  EXPECT_THAT(faulty.Unwrap(blob, "ad").status(),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(faulty.Unwrap(blob, "ad").status(),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(faulty.Unwrap(blob, "ad").status(), IsOk());

  faulty.FailAll(FaultInjectingKeyWrapper::kAll,
                 absl::FailedPreconditionError("token missing"));
  EXPECT_THAT(faulty.Wrap("a", "ad").status(),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(faulty.Unwrap(blob, "ad").status(),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  faulty.Heal();
  EXPECT_THAT(faulty.Unwrap(blob, "ad").status(), IsOk());
  EXPECT_EQ(faulty.unwrap_calls(), 5);
}

TEST(FaultInjectingKeyWrapperTest, WrongKeyAndDelay) {
  ASSERT_OK_AND_ASSIGN(auto base, SoftwareKeyWrapper::CreateRandom("k1"));
  FaultInjectingKeyWrapper faulty(base.get());
  ASSERT_OK_AND_ASSIGN(WrappedSecret blob, faulty.Wrap("0123456789", "ad"));
  faulty.SetWrongKey(true);
  ASSERT_OK_AND_ASSIGN(SecretBytes wrong, faulty.Unwrap(blob, "ad"));
  EXPECT_EQ(wrong.size(), 10u);
  EXPECT_NE(wrong.view(), "0123456789");

  FakeClock clock;
  const absl::Time start = clock.Now();
  faulty.SetDelay(&clock, absl::Seconds(3), /*advance_instead=*/true);
  EXPECT_THAT(faulty.Wrap("a", "ad").status(), IsOk());
  EXPECT_EQ(clock.Now() - start, absl::Seconds(3));

  // A sleeping delay holds the call until the test advances the clock.
  faulty.SetDelay(&clock, absl::Seconds(5));
  std::thread call(
      [&] { EXPECT_THAT(faulty.Wrap("a", "ad").status(), IsOk()); });
  while (clock.sleepers() == 0) std::this_thread::yield();
  clock.Advance(absl::Seconds(5));
  call.join();
}

}  // namespace
}  // namespace strongbox
