// Barrier in auto mode (strongbox/barrier.h, "Auto-unseal"): the root key
// wrapped by a KeyWrapper, recovery shares, escrow.
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
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

// No share, in bytes or in hex, in an error message (D5).
void ExpectNoShareIn(const absl::Status& status,
                     const std::vector<std::string>& shares) {
  for (const std::string& share : shares) {
    EXPECT_FALSE(absl::StrContains(status.message(), share));
    EXPECT_FALSE(
        absl::StrContains(status.message(), absl::BytesToHexString(share)));
  }
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

  // The id of the wrapper key a stored WrappedKey record was made under
  // (the record holds it in the clear, lib/seal/records.proto).
  std::string StoredKeyId(const std::string& path) {
    absl::StatusOr<Entry> e = backend_->Get(path);
    EXPECT_TRUE(e.ok()) << e.status();
    if (!e.ok()) return "";
    return absl::StrContains(e->value, "kek-2") ? "kek-2" : "kek-1";
  }

  // Recovery shares of another store: well-formed, but not ours.
  std::vector<std::string> ForeignShares(int shares, int threshold) {
    auto other_backend = NewInMemoryBackendNoHa();
    BarrierOptions options;
    options.backend = other_backend.get();
    options.key_wrapper = wrapper_.get();
    absl::StatusOr<std::unique_ptr<Barrier>> other = Barrier::Create(options);
    EXPECT_TRUE(other.ok());
    absl::StatusOr<std::vector<std::string>> foreign =
        (*other)->Initialize(shares, threshold);
    EXPECT_TRUE(foreign.ok());
    return foreign.ok() ? *foreign : std::vector<std::string>{};
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

// Recovery keys authorize (issue 14): a rekey of the recovery key needs a
// threshold of the current recovery shares; the new ones take over in one
// commit (CompleteRekey) and the old ones stop working.
TEST_F(BarrierAutoTest, RekeyOfTheRecoveryKeyNeedsTheRecoveryShares) {
  auto barrier = NewBarrier(wrapper_.get());
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> old_shares,
                       barrier->Initialize(5, 3));
  ASSERT_THAT(barrier->AutoUnseal().status(), IsOk());
  ASSERT_THAT(barrier->Put("app/x", "kept").status(), IsOk());
  const std::vector<std::string> before = CoreKeys();

  std::vector<std::string> two(old_shares.begin(), old_shares.begin() + 2);
  absl::Status below = barrier->Rekey(two, 3, 2).status();
  EXPECT_THAT(below, StatusIs(absl::StatusCode::kInvalidArgument,
                              HasSubstr("below the threshold (2 of 3)")));
  ExpectNoShareIn(below, old_shares);
  std::vector<std::string> foreign = ForeignShares(5, 3);
  foreign.resize(3);
  absl::Status wrong = barrier->Rekey(foreign, 3, 2).status();
  EXPECT_THAT(wrong, StatusIs(absl::StatusCode::kInvalidArgument,
                              HasSubstr("do not match the recovery key")));
  ExpectNoShareIn(wrong, foreign);
  EXPECT_EQ(CoreKeys(), before);  // nothing stored, no rekey pending

  std::vector<std::string> three(old_shares.begin() + 2, old_shares.end());
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> new_shares,
                       barrier->Rekey(three, 3, 2));
  ASSERT_EQ(new_shares.size(), 3u);
  ASSERT_OK_AND_ASSIGN(SealStatus st, barrier->Status());
  EXPECT_TRUE(st.rekey_pending);
  EXPECT_EQ(st.rekey_shares, 3);
  EXPECT_EQ(st.rekey_threshold, 2);
  EXPECT_EQ(st.shares, 5);
  // Until completed, the old shares authorize and the new ones do not.
  EXPECT_THAT(barrier->VerifyRecoveryShares(three), IsOk());
  EXPECT_THAT(barrier->VerifyRecoveryShares(new_shares),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(barrier->CompleteRekey(three),
              StatusIs(absl::StatusCode::kInvalidArgument));

  std::vector<std::string> new_two(new_shares.begin(), new_shares.begin() + 2);
  ASSERT_THAT(barrier->CompleteRekey(new_two), IsOk());
  ASSERT_OK_AND_ASSIGN(st, barrier->Status());
  EXPECT_FALSE(st.rekey_pending);
  EXPECT_TRUE(st.auto_unseal);
  EXPECT_EQ(st.shares, 3);
  EXPECT_EQ(st.threshold, 2);
  // Called again (a lost answer): OK.
  EXPECT_THAT(barrier->CompleteRekey(new_two), IsOk());
  // The old shares stop working, for every recovery-authorized operation.
  EXPECT_THAT(barrier->VerifyRecoveryShares(three),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(barrier->Rekey(three, 3, 2).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(barrier->MigrateToShamir(three),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(barrier->RotateWrapperKey(three).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(barrier->VerifyRecoveryShares(new_two), IsOk());
  // The data never moved; a restart still unseals by itself.
  auto again = NewBarrier(wrapper_.get());
  ASSERT_THAT(again->AutoUnseal().status(), IsOk());
  ASSERT_OK_AND_ASSIGN(Entry e, again->Get("app/x"));
  EXPECT_EQ(e.value, "kept");
  // And the new shares are the unseal shares after a migration to Shamir.
  ASSERT_THAT(again->MigrateToShamir(new_two), IsOk());
  auto shamir = NewBarrier(nullptr);
  ASSERT_THAT(shamir->Unseal(new_shares[2]).status(), IsOk());
  ASSERT_OK_AND_ASSIGN(st, shamir->Unseal(new_shares[0]));
  EXPECT_FALSE(st.sealed);
}

// A wrapper failing in either phase of the recovery rekey stores nothing
// new: the old shares keep working, and a retry completes.
TEST_F(BarrierAutoTest, RecoveryRekeyWithAFailingWrapperKeepsTheOldShares) {
  auto barrier = NewBarrier(wrapper_.get());
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> old_shares,
                       barrier->Initialize(3, 2));
  wrapper_->FailNth(FaultInjectingKeyWrapper::kWrap, 1,
                    absl::UnavailableError("hsm session lost"));
  EXPECT_THAT(
      barrier->Rekey(old_shares, 2, 2).status(),
      StatusIs(absl::StatusCode::kUnavailable,
               HasSubstr("key wrapper: wrapping the new recovery key")));
  ASSERT_OK_AND_ASSIGN(SealStatus st, barrier->Status());
  EXPECT_FALSE(st.rekey_pending);
  EXPECT_THAT(barrier->VerifyRecoveryShares(old_shares), IsOk());

  ASSERT_OK_AND_ASSIGN(std::vector<std::string> new_shares,
                       barrier->Rekey(old_shares, 2, 2));
  // Completing: the wrapper fails to unwrap the pending key.
  wrapper_->FailNth(FaultInjectingKeyWrapper::kUnwrap, 1,
                    absl::UnavailableError("token busy"));
  EXPECT_THAT(
      barrier->CompleteRekey(new_shares),
      StatusIs(absl::StatusCode::kUnavailable, HasSubstr("key wrapper")));
  ASSERT_OK_AND_ASSIGN(st, barrier->Status());
  EXPECT_TRUE(st.rekey_pending);
  EXPECT_EQ(st.shares, 3);
  EXPECT_THAT(barrier->VerifyRecoveryShares(old_shares), IsOk());
  ASSERT_THAT(barrier->CompleteRekey(new_shares), IsOk());
  EXPECT_THAT(barrier->VerifyRecoveryShares(new_shares), IsOk());
  EXPECT_THAT(barrier->VerifyRecoveryShares(old_shares),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

// With escrow the root key is sealed under the recovery key too: a rekey
// moves that record to the new recovery key in the same commit.
TEST_F(BarrierAutoTest, RecoveryRekeyWithEscrowMovesTheEscrowRecord) {
  auto barrier = NewBarrier(wrapper_.get(), /*escrow=*/true);
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> old_shares,
                       barrier->Initialize(3, 2));
  ASSERT_THAT(barrier->AutoUnseal().status(), IsOk());
  ASSERT_THAT(barrier->Put("app/x", "kept").status(), IsOk());
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> new_shares,
                       barrier->Rekey(old_shares, 2, 2));
  // Pending only: the escrow record still opens under the old shares.
  {
    auto lost = NewBarrier(nullptr);
    ASSERT_THAT(lost->Unseal(old_shares[0]).status(), IsOk());
    ASSERT_OK_AND_ASSIGN(SealStatus st, lost->Unseal(old_shares[1]));
    EXPECT_FALSE(st.sealed);
  }
  ASSERT_THAT(barrier->CompleteRekey(new_shares), IsOk());
  auto lost = NewBarrier(nullptr);
  ASSERT_THAT(lost->Unseal(old_shares[0]).status(), IsOk());
  EXPECT_THAT(lost->Unseal(old_shares[1]).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  ASSERT_THAT(lost->Unseal(new_shares[1]).status(), IsOk());
  ASSERT_OK_AND_ASSIGN(SealStatus st, lost->Unseal(new_shares[0]));
  EXPECT_FALSE(st.sealed);
  ASSERT_OK_AND_ASSIGN(Entry e, lost->Get("app/x"));
  EXPECT_EQ(e.value, "kept");
}

// Wrapper key rotation is authorized by a threshold of recovery shares;
// a wrapper failing half way (after the root key was rewrapped, before
// the recovery key was) stores nothing and the old key keeps unwrapping.
TEST_F(BarrierAutoTest, RotateWrapperKeyNeedsTheRecoverySharesAndIsAtomic) {
  auto barrier = NewBarrier(wrapper_.get());
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> shares,
                       barrier->Initialize(5, 3));
  ASSERT_THAT(barrier->AutoUnseal().status(), IsOk());
  ASSERT_THAT(barrier->Put("app/x", "kept").status(), IsOk());
  // Nothing to rotate yet: verified, nothing written.
  std::vector<std::string> three(shares.begin(), shares.begin() + 3);
  ASSERT_OK_AND_ASSIGN(bool rewrapped, barrier->RotateWrapperKey(three));
  EXPECT_FALSE(rewrapped);

  SecretBytes kek2 = SecretBytes::Random(32);
  ASSERT_THAT(key_->Rotate("kek-2", kek2), IsOk());
  std::vector<std::string> two(shares.begin(), shares.begin() + 2);
  absl::Status below = barrier->RotateWrapperKey(two).status();
  EXPECT_THAT(below, StatusIs(absl::StatusCode::kInvalidArgument,
                              HasSubstr("below the threshold")));
  ExpectNoShareIn(below, shares);
  std::vector<std::string> foreign = ForeignShares(5, 3);
  foreign.resize(3);
  absl::Status wrong = barrier->RotateWrapperKey(foreign).status();
  EXPECT_THAT(wrong, StatusIs(absl::StatusCode::kInvalidArgument,
                              HasSubstr("do not match")));
  ExpectNoShareIn(wrong, foreign);
  EXPECT_EQ(StoredKeyId("core/root-key-wrapped"), "kek-1");

  wrapper_->FailNth(FaultInjectingKeyWrapper::kWrap, 2,
                    absl::UnavailableError("hsm session lost"));
  EXPECT_THAT(barrier->RotateWrapperKey(three).status(),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("key wrapper: wrapping the recovery key")));
  EXPECT_EQ(StoredKeyId("core/root-key-wrapped"), "kek-1");
  EXPECT_EQ(StoredKeyId("core/recovery-key-wrapped"), "kek-1");
  EXPECT_THAT(NewBarrier(wrapper_.get())->AutoUnseal().status(), IsOk());

  ASSERT_OK_AND_ASSIGN(rewrapped, barrier->RotateWrapperKey(three));
  EXPECT_TRUE(rewrapped);
  EXPECT_EQ(StoredKeyId("core/root-key-wrapped"), "kek-2");
  EXPECT_EQ(StoredKeyId("core/recovery-key-wrapped"), "kek-2");
  ASSERT_OK_AND_ASSIGN(rewrapped, barrier->RotateWrapperKey(three));
  EXPECT_FALSE(rewrapped);
  // The old key may go now: a wrapper holding only kek-2 unseals, and the
  // recovery shares still match.
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<SoftwareKeyWrapper> only_new,
                       SoftwareKeyWrapper::Create("kek-2", kek2));
  auto after = NewBarrier(only_new.get());
  ASSERT_THAT(after->AutoUnseal().status(), IsOk());
  ASSERT_OK_AND_ASSIGN(Entry e, after->Get("app/x"));
  EXPECT_EQ(e.value, "kept");
  EXPECT_THAT(after->VerifyRecoveryShares(three), IsOk());
  // In Shamir mode there is no wrapper key to rotate.
  ASSERT_THAT(after->MigrateToShamir(three), IsOk());
  EXPECT_THAT(after->RotateWrapperKey(three).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

// Auto -> Shamir needs matching recovery shares, and a wrapper failing
// half way (the recovery key unwrapped, the root key not) changes nothing.
TEST_F(BarrierAutoTest, MigrateToShamirRefusesWrongSharesAndSurvivesWrapper) {
  auto barrier = NewBarrier(wrapper_.get());
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> shares,
                       barrier->Initialize(3, 2));
  ASSERT_THAT(barrier->AutoUnseal().status(), IsOk());
  ASSERT_THAT(barrier->Put("app/x", "kept").status(), IsOk());
  const std::vector<std::string> before = CoreKeys();
  std::vector<std::string> foreign = ForeignShares(3, 2);
  absl::Status wrong = barrier->MigrateToShamir(foreign);
  EXPECT_THAT(wrong, StatusIs(absl::StatusCode::kInvalidArgument,
                              HasSubstr("do not match")));
  ExpectNoShareIn(wrong, foreign);
  std::vector<std::string> bad = {shares[0], shares[1].substr(1)};
  EXPECT_THAT(
      barrier->MigrateToShamir(bad),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("wrong length")));
  wrapper_->FailNth(FaultInjectingKeyWrapper::kUnwrap, 2,
                    absl::UnavailableError("token removed"));
  EXPECT_THAT(barrier->MigrateToShamir(shares),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("key wrapper: unwrapping the root key")));
  EXPECT_EQ(CoreKeys(), before);
  ASSERT_OK_AND_ASSIGN(SealStatus st, barrier->Status());
  EXPECT_TRUE(st.auto_unseal);
  EXPECT_THAT(NewBarrier(wrapper_.get())->AutoUnseal().status(), IsOk());
  ASSERT_THAT(barrier->MigrateToShamir(shares), IsOk());
  ASSERT_OK_AND_ASSIGN(Entry e, barrier->Get("app/x"));
  EXPECT_EQ(e.value, "kept");
}

// A rekey left pending across a seal migration is not completed under the
// other seal type.
TEST_F(BarrierAutoTest, RekeyPendingAcrossAMigrationIsRefused) {
  auto barrier = NewBarrier(wrapper_.get());
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> shares,
                       barrier->Initialize(3, 2));
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> new_shares,
                       barrier->Rekey(shares, 3, 2));
  ASSERT_THAT(barrier->MigrateToShamir(shares), IsOk());
  EXPECT_THAT(
      barrier->CompleteRekey(new_shares),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("cancel it")));
  ASSERT_THAT(barrier->CancelRekey(), IsOk());
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> shamir_new,
                       barrier->Rekey(shares, 3, 2));
  ASSERT_THAT(barrier->MigrateToAuto(shares), IsOk());
  EXPECT_THAT(
      barrier->CompleteRekey(shamir_new),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("cancel it")));
  EXPECT_THAT(barrier->VerifyRecoveryShares(shares), IsOk());
}

}  // namespace
}  // namespace strongbox
