// Barrier in auto mode (strongbox/barrier.h, "Auto-unseal"): the root key
// wrapped by a KeyWrapper, recovery shares, escrow.
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "strongbox/barrier.h"
#include "strongbox/in_memory_backend.h"
#include "strongbox/key_wrapper.h"
#include "strongbox/testing/fake_clock.h"
#include "strongbox/testing/fault_injecting_backend.h"
#include "strongbox/testing/fault_injecting_key_wrapper.h"
#include "strongbox/testing/status_matchers.h"

namespace strongbox {
namespace {

using ::strongbox_testing::IsOk;
using ::strongbox_testing::StatusIs;
using ::testing::HasSubstr;

// The in-memory backend without its HA capability, so writes need no fence.
class NoHaBackend : public BackendWrapper {
 public:
  explicit NoHaBackend(std::unique_ptr<Backend> target)
      : BackendWrapper(target.get()), owned_(std::move(target)) {}
  HaBackend* ha() override { return nullptr; }

 private:
  std::unique_ptr<Backend> owned_;
};

std::unique_ptr<Backend> NewInMemoryBackendNoHa() {
  return std::make_unique<NoHaBackend>(NewInMemoryBackend());
}

class BarrierAutoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    backend_ = NewInMemoryBackendNoHa();
    absl::StatusOr<std::unique_ptr<SoftwareKeyWrapper>> key =
        SoftwareKeyWrapper::CreateRandom("kek-1");
    ASSERT_TRUE(key.ok());
    key_ = *std::move(key);
    wrapper_ = std::make_unique<FaultInjectingKeyWrapper>(key_.get());
  }

  std::unique_ptr<Barrier> NewBarrier(KeyWrapper* wrapper,
                                      bool escrow = false) {
    BarrierOptions options;
    options.backend = backend_.get();
    options.key_wrapper = wrapper;
    options.escrow = escrow;
    absl::StatusOr<std::unique_ptr<Barrier>> b = Barrier::Create(options);
    EXPECT_TRUE(b.ok()) << b.status();
    return b.ok() ? *std::move(b) : nullptr;
  }

  std::vector<std::string> CoreKeys() {
    absl::StatusOr<std::vector<std::string>> keys = backend_->List("core/");
    return keys.ok() ? *keys : std::vector<std::string>{"<list failed>"};
  }

  std::unique_ptr<Backend> backend_;
  std::unique_ptr<SoftwareKeyWrapper> key_;
  std::unique_ptr<FaultInjectingKeyWrapper> wrapper_;
};

TEST_F(BarrierAutoTest, InitializeThenAutoUnsealAndRestart) {
  auto barrier = NewBarrier(wrapper_.get());
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> recovery,
                       barrier->Initialize(5, 3));
  EXPECT_EQ(recovery.size(), 5u);
  EXPECT_EQ(wrapper_->wrap_calls(), 2);  // the root key and the recovery key
  ASSERT_OK_AND_ASSIGN(SealStatus st, barrier->Status());
  EXPECT_TRUE(st.initialized);
  EXPECT_TRUE(st.sealed);
  EXPECT_TRUE(st.auto_unseal);
  EXPECT_FALSE(st.escrow);
  EXPECT_EQ(st.seal_type, "software");
  EXPECT_EQ(st.shares, 5);
  EXPECT_EQ(st.threshold, 3);
  EXPECT_THAT(backend_->Get("core/root-key").status(),
              StatusIs(absl::StatusCode::kNotFound));

  ASSERT_OK_AND_ASSIGN(st, barrier->AutoUnseal());
  EXPECT_FALSE(st.sealed);
  ASSERT_THAT(barrier->Put("app/x", "hello").status(), IsOk());

  // A restart: a new barrier over the same storage unseals by itself.
  barrier.reset();
  auto again = NewBarrier(wrapper_.get());
  EXPECT_TRUE(again->sealed());
  ASSERT_THAT(again->AutoUnseal().status(), IsOk());
  ASSERT_OK_AND_ASSIGN(Entry e, again->Get("app/x"));
  EXPECT_EQ(e.value, "hello");
  // Already unsealed: OK, no further unwrap.
  const int unwraps = wrapper_->unwrap_calls();
  EXPECT_THAT(again->AutoUnseal().status(), IsOk());
  EXPECT_EQ(wrapper_->unwrap_calls(), unwraps);
}

TEST_F(BarrierAutoTest, WrapperFailingOnSecondWrapLeavesBackendEmpty) {
  auto barrier = NewBarrier(wrapper_.get());
  wrapper_->FailNth(FaultInjectingKeyWrapper::kWrap, 2,
                    absl::UnavailableError("hsm session lost"));
  absl::StatusOr<std::vector<std::string>> failed = barrier->Initialize(3, 2);
  EXPECT_THAT(failed.status(), StatusIs(absl::StatusCode::kUnavailable,
                                        HasSubstr("key wrapper")));
  EXPECT_THAT(CoreKeys(), ::testing::IsEmpty());
  ASSERT_OK_AND_ASSIGN(SealStatus st, barrier->Status());
  EXPECT_FALSE(st.initialized);

  ASSERT_OK_AND_ASSIGN(std::vector<std::string> recovery,
                       barrier->Initialize(3, 2));
  EXPECT_EQ(recovery.size(), 3u);
  EXPECT_THAT(barrier->AutoUnseal().status(), IsOk());
  // Initialized once: a second Initialize is refused.
  EXPECT_THAT(barrier->Initialize(3, 2).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_F(BarrierAutoTest, WrapperFailingOnFirstWrapLeavesBackendEmpty) {
  auto barrier = NewBarrier(wrapper_.get());
  wrapper_->FailNth(FaultInjectingKeyWrapper::kWrap, 1,
                    absl::FailedPreconditionError("token not present"));
  EXPECT_THAT(barrier->Initialize(3, 2).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("token not present")));
  EXPECT_THAT(CoreKeys(), ::testing::IsEmpty());
}

TEST_F(BarrierAutoTest, UnavailableWrapperLeavesItSealedUntilItRecovers) {
  auto barrier = NewBarrier(wrapper_.get());
  ASSERT_THAT(barrier->Initialize(3, 2).status(), IsOk());
  wrapper_->FailAll(FaultInjectingKeyWrapper::kUnwrap,
                    absl::UnavailableError("token busy"));
  EXPECT_THAT(barrier->AutoUnseal().status(),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("key wrapper: unwrapping the root key")));
  EXPECT_TRUE(barrier->sealed());
  wrapper_->Heal();
  EXPECT_THAT(barrier->AutoUnseal().status(), IsOk());
  EXPECT_FALSE(barrier->sealed());
}

TEST_F(BarrierAutoTest, WrongKeyUnderSameIdIsDataLossAndStaysSealed) {
  auto barrier = NewBarrier(wrapper_.get());
  ASSERT_THAT(barrier->Initialize(3, 2).status(), IsOk());
  wrapper_->SetWrongKey(true);
  EXPECT_THAT(barrier->AutoUnseal().status(),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("does not open the keyring")));
  EXPECT_TRUE(barrier->sealed());
}

TEST_F(BarrierAutoTest, RecoverySharesBelowThresholdRefused) {
  auto barrier = NewBarrier(wrapper_.get());
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> recovery,
                       barrier->Initialize(5, 3));
  std::vector<std::string> two(recovery.begin(), recovery.begin() + 2);
  EXPECT_THAT(barrier->VerifyRecoveryShares(two),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("below the threshold")));
  std::vector<std::string> three(recovery.begin() + 2, recovery.end());
  EXPECT_THAT(barrier->VerifyRecoveryShares(three), IsOk());

  // Shares of another initialization do not match.
  auto other_backend = NewInMemoryBackendNoHa();
  BarrierOptions options;
  options.backend = other_backend.get();
  options.key_wrapper = wrapper_.get();
  ASSERT_OK_AND_ASSIGN(auto other, Barrier::Create(options));
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> foreign,
                       other->Initialize(5, 3));
  foreign.resize(3);
  EXPECT_THAT(
      barrier->VerifyRecoveryShares(foreign),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("do not match")));
}

TEST_F(BarrierAutoTest, WithoutEscrowRecoverySharesDoNotUnseal) {
  auto barrier = NewBarrier(wrapper_.get());
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> recovery,
                       barrier->Initialize(3, 2));
  EXPECT_THAT(barrier->Unseal(recovery[0]).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("without escrow")));
  EXPECT_TRUE(barrier->sealed());
}

TEST_F(BarrierAutoTest, WithEscrowRecoverySharesUnsealWhenTheHsmIsLost) {
  auto barrier = NewBarrier(wrapper_.get(), /*escrow=*/true);
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> recovery,
                       barrier->Initialize(3, 2));
  ASSERT_OK_AND_ASSIGN(SealStatus st, barrier->Status());
  EXPECT_TRUE(st.escrow);
  ASSERT_THAT(barrier->AutoUnseal().status(), IsOk());
  ASSERT_THAT(barrier->Put("app/x", "kept").status(), IsOk());
  barrier->Seal();

  // The HSM's key is gone for good: a barrier with no wrapper at all.
  auto lost = NewBarrier(nullptr);
  EXPECT_THAT(lost->AutoUnseal().status(),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  ASSERT_THAT(lost->Unseal(recovery[2]).status(), IsOk());
  ASSERT_OK_AND_ASSIGN(st, lost->Unseal(recovery[0]));
  EXPECT_FALSE(st.sealed);
  ASSERT_OK_AND_ASSIGN(Entry e, lost->Get("app/x"));
  EXPECT_EQ(e.value, "kept");
}

TEST_F(BarrierAutoTest, ShamirBarrierRefusesAutoUnsealAndEscrowNeedsWrapper) {
  auto shamir = NewBarrier(nullptr);
  ASSERT_THAT(shamir->Initialize(1, 1).status(), IsOk());
  auto with_wrapper = NewBarrier(wrapper_.get());
  EXPECT_THAT(
      with_wrapper->AutoUnseal().status(),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("Shamir")));
  ASSERT_OK_AND_ASSIGN(SealStatus st, with_wrapper->Status());
  EXPECT_EQ(st.seal_type, "shamir");
  BarrierOptions options;
  options.backend = backend_.get();
  options.escrow = true;
  EXPECT_THAT(Barrier::Create(options).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

// Shamir -> auto -> Shamir on one store, the same shares all along.
TEST_F(BarrierAutoTest, MigrateShamirToAutoAndBackKeepsDataAndShares) {
  auto shamir = NewBarrier(nullptr);
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> shares,
                       shamir->Initialize(3, 2));
  ASSERT_THAT(shamir->Unseal(shares[0]).status(), IsOk());
  ASSERT_THAT(shamir->Unseal(shares[1]).status(), IsOk());
  ASSERT_THAT(shamir->Put("app/x", "before").status(), IsOk());

  auto with_wrapper = NewBarrier(wrapper_.get());
  std::vector<std::string> one(shares.begin(), shares.begin() + 1);
  EXPECT_THAT(with_wrapper->MigrateToAuto(one),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("below the threshold")));
  std::vector<std::string> two(shares.begin() + 1, shares.end());
  ASSERT_THAT(with_wrapper->MigrateToAuto(two), IsOk());
  ASSERT_OK_AND_ASSIGN(SealStatus st, with_wrapper->Status());
  EXPECT_TRUE(st.auto_unseal);
  EXPECT_EQ(st.threshold, 2);
  // The barrier that was unsealed keeps serving.
  ASSERT_OK_AND_ASSIGN(Entry e, shamir->Get("app/x"));
  EXPECT_EQ(e.value, "before");
  // Called again (an answer lost): OK, nothing changes.
  EXPECT_THAT(with_wrapper->MigrateToAuto(two), IsOk());
  // A restart unseals by itself; the unseal shares are the recovery shares.
  ASSERT_THAT(with_wrapper->AutoUnseal().status(), IsOk());
  ASSERT_OK_AND_ASSIGN(e, with_wrapper->Get("app/x"));
  EXPECT_EQ(e.value, "before");
  EXPECT_THAT(with_wrapper->VerifyRecoveryShares(two), IsOk());
  EXPECT_THAT(NewBarrier(nullptr)->Unseal(shares[0]).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition));

  // And back: the recovery shares become unseal shares again.
  ASSERT_THAT(with_wrapper->Put("app/y", "during").status(), IsOk());
  EXPECT_THAT(with_wrapper->MigrateToShamir(one),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("below the threshold")));
  ASSERT_THAT(with_wrapper->MigrateToShamir(two), IsOk());
  EXPECT_THAT(with_wrapper->MigrateToShamir(two), IsOk());
  auto again = NewBarrier(wrapper_.get());
  EXPECT_THAT(again->AutoUnseal().status(),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  ASSERT_THAT(again->Unseal(shares[2]).status(), IsOk());
  ASSERT_OK_AND_ASSIGN(st, again->Unseal(shares[0]));
  EXPECT_FALSE(st.sealed);
  EXPECT_FALSE(st.auto_unseal);
  ASSERT_OK_AND_ASSIGN(e, again->Get("app/y"));
  EXPECT_EQ(e.value, "during");
  EXPECT_THAT(CoreKeys(),
              ::testing::Not(::testing::Contains("root-key-wrapped")));
}

// A migration killed half way (its one commit failed, or applied with the
// answer lost) leaves one consistent seal type, and a retry settles it.
TEST_F(BarrierAutoTest, MigrationWithAFailedOrLostCommitIsAllOrNothing) {
  FakeClock clock;
  FaultInjectingBackend link(backend_.get(), &clock, 7);
  BarrierOptions options;
  options.backend = &link;
  ASSERT_OK_AND_ASSIGN(auto shamir, Barrier::Create(options));
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> shares,
                       shamir->Initialize(3, 2));
  options.key_wrapper = wrapper_.get();
  ASSERT_OK_AND_ASSIGN(auto barrier, Barrier::Create(options));

  link.FailNext(1, absl::UnavailableError("backend down"),
                FaultInjectingBackend::kCommit);
  EXPECT_THAT(barrier->MigrateToAuto(shares),
              StatusIs(absl::StatusCode::kUnavailable));
  ASSERT_OK_AND_ASSIGN(SealStatus st, barrier->Status());
  EXPECT_FALSE(st.auto_unseal);  // still Shamir, the shares still unseal
  ASSERT_THAT(shamir->Unseal(shares[0]).status(), IsOk());
  ASSERT_OK_AND_ASSIGN(st, shamir->Unseal(shares[1]));
  EXPECT_FALSE(st.sealed);

  // The wrapper failing on its second wrap: nothing stored either.
  wrapper_->FailNth(FaultInjectingKeyWrapper::kWrap, 2,
                    absl::UnavailableError("hsm busy"));
  EXPECT_THAT(
      barrier->MigrateToAuto(shares),
      StatusIs(absl::StatusCode::kUnavailable, HasSubstr("key wrapper")));
  ASSERT_OK_AND_ASSIGN(st, barrier->Status());
  EXPECT_FALSE(st.auto_unseal);

  // Applied, the answer lost: it either confirms by reading back or says
  // so, and calling again answers OK; the store is auto.
  link.LoseNextCommitAcks(1);
  absl::Status lost = barrier->MigrateToAuto(shares);
  if (!lost.ok()) EXPECT_THAT(barrier->MigrateToAuto(shares), IsOk());
  ASSERT_OK_AND_ASSIGN(st, barrier->Status());
  EXPECT_TRUE(st.auto_unseal);
  EXPECT_THAT(NewBarrier(wrapper_.get())->AutoUnseal().status(), IsOk());
}

}  // namespace
}  // namespace strongbox
