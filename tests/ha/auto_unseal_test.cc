// HA6: nodes that unseal themselves through a KeyWrapper (auto-unseal), on
// one FakeClock, driven by Poll().
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "strongbox/ha_coordinator.h"
#include "strongbox/key_wrapper.h"
#include "strongbox/testing/fault_injecting_key_wrapper.h"
#include "strongbox/testing/status_matchers.h"
#include "tests/ha/cluster.h"

namespace strongbox {
namespace {

using ::strongbox_testing::IsOk;
using ::strongbox_testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using testing_cluster::Cluster;
using testing_cluster::ClusterOptions;

class AutoUnsealTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<SoftwareKeyWrapper>> key =
        SoftwareKeyWrapper::CreateRandom("kek-1");
    ASSERT_TRUE(key.ok());
    key_ = *std::move(key);
    wrapper_ = std::make_unique<FaultInjectingKeyWrapper>(key_.get());
    ClusterOptions options;
    options.key_wrapper = wrapper_.get();
    cluster_ = std::make_unique<Cluster>(options);
  }

  // Events of node i with from == to == kSealed (failed attempts).
  int FailedAttemptEvents(int i) {
    int n = 0;
    for (const StateChange& c : cluster_->observers[i]->changes) {
      if (c.from == HaState::kSealed && c.to == HaState::kSealed) ++n;
    }
    return n;
  }

  // Steps the fake clock to node i's next poll time and polls it.
  void PollAtNext(int i) {
    const absl::Time next = cluster_->nodes[i]->NextPollTime();
    ASSERT_NE(next, absl::InfiniteFuture());
    if (next > cluster_->clock.Now())
      cluster_->clock.Advance(next - cluster_->clock.Now());
    cluster_->nodes[i]->Poll();
  }

  std::unique_ptr<SoftwareKeyWrapper> key_;
  std::unique_ptr<FaultInjectingKeyWrapper> wrapper_;
  std::unique_ptr<Cluster> cluster_;
};

TEST_F(AutoUnsealTest,
       InitializeReturnsRecoverySharesAndEveryNodeUnsealsItself) {
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> recovery,
                       cluster_->nodes[0]->Initialize(5, 3));
  EXPECT_EQ(recovery.size(), 5u);
  cluster_->Run(absl::Seconds(3));
  EXPECT_EQ(cluster_->Actives().size(), 1u);
  for (auto& node : cluster_->nodes) {
    HaStatus st = node->Status();
    EXPECT_FALSE(st.sealed);
    EXPECT_EQ(st.seal_type, "software");
    EXPECT_EQ(st.threshold, 3);
    EXPECT_TRUE(st.seal_error.empty());
  }
  // No shares typed anywhere; every node has an "auto-unsealed" event.
  for (auto& observer : cluster_->observers) {
    bool auto_unsealed = false;
    for (const StateChange& c : observer->changes) {
      if (c.from == HaState::kSealed &&
          absl::StrContains(c.reason, "auto-unsealed")) {
        auto_unsealed = true;
      }
    }
    EXPECT_TRUE(auto_unsealed);
  }
}

TEST_F(AutoUnsealTest, AllNodesRestartedComeBackActiveWithoutShares) {
  ASSERT_THAT(cluster_->nodes[0]->Initialize(3, 2).status(), IsOk());
  cluster_->Run(absl::Seconds(3));
  const int active = cluster_->Active();
  ASSERT_GE(active, 0);
  ASSERT_OK_AND_ASSIGN(FenceToken fence, cluster_->nodes[active]->WriteFence());
  ASSERT_THAT(
      cluster_->nodes[active]->barrier()->Put("app/x", "v", fence).status(),
      IsOk());
  for (int i = 0; i < 3; ++i) cluster_->Restart(i);
  for (auto& node : cluster_->nodes) EXPECT_TRUE(node->barrier()->sealed());
  cluster_->Run(absl::Seconds(3));
  const int again = cluster_->Active();
  ASSERT_GE(again, 0);
  ASSERT_OK_AND_ASSIGN(Entry e,
                       cluster_->nodes[again]->barrier()->Get("app/x"));
  EXPECT_EQ(e.value, "v");
}

TEST_F(AutoUnsealTest, RetriesWithGrowingBackoffWhileWrapperUnavailable) {
  ASSERT_THAT(cluster_->nodes[0]->Initialize(3, 2).status(), IsOk());
  wrapper_->FailAll(FaultInjectingKeyWrapper::kUnwrap,
                    absl::UnavailableError("token busy"));
  cluster_->nodes[0]->Poll();
  HaStatus st = cluster_->nodes[0]->Status();
  EXPECT_EQ(st.state, HaState::kSealed);
  EXPECT_THAT(st.seal_error, StartsWith("sealed: waiting for key wrapper: "));
  EXPECT_THAT(st.seal_error, HasSubstr("token busy"));
  EXPECT_EQ(FailedAttemptEvents(0), 1);

  // Each retry waits longer than the one before (doubling, plus jitter).
  absl::Duration previous_gap;
  for (int attempt = 2; attempt <= 6; ++attempt) {
    const absl::Time before = cluster_->clock.Now();
    const absl::Duration gap = cluster_->nodes[0]->NextPollTime() - before;
    EXPECT_GT(gap, previous_gap) << "attempt " << attempt;
    previous_gap = gap;
    // Nothing happens before the backoff ends.
    const int unwraps = wrapper_->unwrap_calls();
    cluster_->clock.Advance(gap / 2);
    cluster_->nodes[0]->Poll();
    EXPECT_EQ(wrapper_->unwrap_calls(), unwraps);
    PollAtNext(0);
    EXPECT_EQ(wrapper_->unwrap_calls(), unwraps + 1);
    EXPECT_EQ(FailedAttemptEvents(0), attempt);
  }
  wrapper_->Heal();
  PollAtNext(0);
  st = cluster_->nodes[0]->Status();
  EXPECT_FALSE(st.sealed);
  EXPECT_TRUE(st.seal_error.empty());
  cluster_->Run(absl::Seconds(2));
  EXPECT_EQ(cluster_->nodes[0]->state(), HaState::kActive);
}

TEST_F(AutoUnsealTest, BackoffIsCappedAtTheMaximum) {
  ASSERT_THAT(cluster_->nodes[0]->Initialize(3, 2).status(), IsOk());
  wrapper_->FailAll(FaultInjectingKeyWrapper::kUnwrap,
                    absl::FailedPreconditionError("wrong PIN"));
  cluster_->nodes[0]->Poll();
  for (int i = 0; i < 12; ++i) PollAtNext(0);
  const absl::Duration gap =
      cluster_->nodes[0]->NextPollTime() - cluster_->clock.Now();
  // Default max 10 s, jitter up to 0.5 x.
  EXPECT_LE(gap, absl::Seconds(15));
  EXPECT_GE(gap, absl::Seconds(10));
  EXPECT_THAT(cluster_->nodes[0]->Status().seal_error, HasSubstr("wrong PIN"));
}

TEST_F(AutoUnsealTest, OperatorSealStaysSealedUntilExplicitUnseal) {
  ASSERT_THAT(cluster_->nodes[0]->Initialize(3, 2).status(), IsOk());
  cluster_->Run(absl::Seconds(3));
  ASSERT_THAT(cluster_->nodes[1]->Seal(), IsOk());
  const int unwraps = wrapper_->unwrap_calls();
  EXPECT_EQ(cluster_->nodes[1]->NextPollTime(), absl::InfiniteFuture());
  cluster_->Run(absl::Minutes(1), absl::Seconds(1));
  EXPECT_EQ(cluster_->nodes[1]->state(), HaState::kSealed);
  EXPECT_EQ(wrapper_->unwrap_calls(), unwraps);
  ASSERT_OK_AND_ASSIGN(SealStatus st, cluster_->nodes[1]->AutoUnseal());
  EXPECT_FALSE(st.sealed);
  EXPECT_NE(cluster_->nodes[1]->state(), HaState::kSealed);
}

TEST_F(AutoUnsealTest, ExplicitAutoUnsealReportsTheWrapperError) {
  ASSERT_THAT(cluster_->nodes[0]->Initialize(3, 2).status(), IsOk());
  ASSERT_THAT(cluster_->nodes[0]->Seal(), IsOk());
  wrapper_->FailAll(FaultInjectingKeyWrapper::kUnwrap,
                    absl::UnavailableError("device removed"));
  EXPECT_THAT(
      cluster_->nodes[0]->AutoUnseal().status(),
      StatusIs(absl::StatusCode::kUnavailable, HasSubstr("device removed")));
  // The explicit call re-armed the retries.
  wrapper_->Heal();
  PollAtNext(0);
  EXPECT_FALSE(cluster_->nodes[0]->Status().sealed);
}

TEST_F(AutoUnsealTest, InitWithWrapperFailingOnSecondWrapThenRetry) {
  wrapper_->FailNth(FaultInjectingKeyWrapper::kWrap, 2,
                    absl::UnavailableError("hsm busy"));
  EXPECT_THAT(cluster_->nodes[0]->Initialize(3, 2).status(),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(cluster_->nodes[0]->state(), HaState::kUninitialized);
  ASSERT_OK_AND_ASSIGN(auto keys, cluster_->shared->List(""));
  EXPECT_THAT(keys, ::testing::IsEmpty());
  ASSERT_THAT(cluster_->nodes[0]->Initialize(3, 2).status(), IsOk());
  cluster_->Run(absl::Seconds(3));
  EXPECT_EQ(cluster_->Actives().size(), 1u);
}

// A wrapper's configuration fault (FAILED_PRECONDITION, e.g. a wrong PIN)
// on Initialize is not "initialized by another node": the node stays
// uninitialized, and once the fault is fixed it initializes and unseals.
TEST_F(AutoUnsealTest, InitFailingOnWrapperConfigurationStaysUninitialized) {
  wrapper_->FailAll(FaultInjectingKeyWrapper::kWrap,
                    absl::FailedPreconditionError("wrong PIN"));
  EXPECT_THAT(
      cluster_->nodes[0]->Initialize(3, 2).status(),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("wrong PIN")));
  EXPECT_EQ(cluster_->nodes[0]->state(), HaState::kUninitialized);
  wrapper_->Heal();
  ASSERT_THAT(cluster_->nodes[0]->Initialize(3, 2).status(), IsOk());
  cluster_->Run(absl::Seconds(3));
  EXPECT_EQ(cluster_->Actives().size(), 1u);
}

TEST_F(AutoUnsealTest, ShamirBackendIsNotAutoUnsealed) {
  // A cluster initialized in Shamir mode, then a node given a wrapper.
  ClusterOptions shamir_options;
  Cluster shamir(shamir_options);
  shamir.Initialize(3, 2);
  HaCoordinator::Options o = shamir.NodeOptions(1);
  o.key_wrapper = wrapper_.get();
  shamir.nodes[1].reset();
  ASSERT_OK_AND_ASSIGN(shamir.nodes[1], HaCoordinator::Create(o));
  shamir.Run(absl::Seconds(2));
  EXPECT_EQ(shamir.nodes[1]->state(), HaState::kSealed);
  EXPECT_EQ(wrapper_->unwrap_calls(), 0);
  EXPECT_EQ(shamir.nodes[1]->Status().seal_type, "shamir");
  EXPECT_THAT(shamir.nodes[1]->AutoUnseal().status(),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

// Migration on the active, the other nodes following: Shamir -> auto (a
// sealed node with a wrapper notices and unseals itself; after a restart
// of every node an active serves with no share typed), then auto ->
// Shamir (restarted nodes need the shares again, and the same ones work).
TEST_F(AutoUnsealTest, MigrateShamirToAutoAndBackOnTheActive) {
  ClusterOptions shamir_options;
  Cluster c(shamir_options);
  c.Initialize(3, 2);
  // Every node runs with the wrapper from now on (a rolling restart).
  auto restart_with_wrapper = [&](int i) {
    HaCoordinator::Options o = c.NodeOptions(i);
    o.key_wrapper = wrapper_.get();
    c.nodes[i].reset();
    absl::StatusOr<std::unique_ptr<HaCoordinator>> node =
        HaCoordinator::Create(o);
    ASSERT_TRUE(node.ok()) << node.status();
    c.nodes[i] = *std::move(node);
  };
  for (int i = 0; i < 3; ++i) restart_with_wrapper(i);
  c.Unseal(0);
  c.Unseal(1);  // node 2 stays sealed
  c.Run(absl::Seconds(3));
  int active = c.Active();
  ASSERT_GE(active, 0);
  ASSERT_OK_AND_ASSIGN(FenceToken fence, c.nodes[active]->WriteFence());
  ASSERT_THAT(c.nodes[active]->barrier()->Put("app/x", "v", fence).status(),
              IsOk());
  const int standby = active == 0 ? 1 : 0;
  EXPECT_THAT(c.nodes[standby]->MigrateSealToAuto(c.shares),
              StatusIs(absl::StatusCode::kUnavailable));
  std::vector<std::string> below(c.shares.begin(), c.shares.begin() + 1);
  EXPECT_THAT(c.nodes[active]->MigrateSealToAuto(below),
              StatusIs(absl::StatusCode::kInvalidArgument));
  ASSERT_THAT(c.nodes[active]->MigrateSealToAuto(c.shares), IsOk());
  EXPECT_EQ(c.nodes[active]->state(), HaState::kActive);
  // The sealed node notices within leader_refresh and unseals itself.
  c.Run(absl::Seconds(2));
  EXPECT_FALSE(c.nodes[2]->Status().sealed);
  EXPECT_EQ(c.nodes[2]->Status().seal_type, "software");

  // Power loss: every node restarts and an active serves, no shares.
  for (int i = 0; i < 3; ++i) restart_with_wrapper(i);
  c.Run(absl::Seconds(3));
  active = c.Active();
  ASSERT_GE(active, 0);
  ASSERT_OK_AND_ASSIGN(Entry e, c.nodes[active]->barrier()->Get("app/x"));
  EXPECT_EQ(e.value, "v");

  // And back to Shamir: the recovery shares are the unseal shares again.
  ASSERT_THAT(c.nodes[active]->MigrateSealToShamir(c.shares), IsOk());
  for (int i = 0; i < 3; ++i) restart_with_wrapper(i);
  const int unwraps = wrapper_->unwrap_calls();
  c.Run(absl::Seconds(3));
  EXPECT_EQ(wrapper_->unwrap_calls(), unwraps);
  for (auto& node : c.nodes) EXPECT_EQ(node->state(), HaState::kSealed);
  EXPECT_EQ(c.nodes[0]->Status().seal_type, "shamir");
  c.UnsealAll();
  c.Run(absl::Seconds(3));
  active = c.Active();
  ASSERT_GE(active, 0);
  ASSERT_OK_AND_ASSIGN(e, c.nodes[active]->barrier()->Get("app/x"));
  EXPECT_EQ(e.value, "v");
}

// Wrapper key rotation: after the wrapper's current key changes (the old
// one kept), the stored keys stay under the old key through promotions and
// restarts until the active rotates with a threshold of recovery shares;
// then every node unseals under the new key.
TEST_F(AutoUnsealTest, RotatedWrapperKeyRewrapsOnlyWithTheRecoveryShares) {
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> recovery,
                       cluster_->nodes[0]->Initialize(3, 2));
  cluster_->Run(absl::Seconds(3));
  auto stored_key_id = [&](const std::string& path) {
    absl::StatusOr<Entry> e = cluster_->shared->Get(path);
    EXPECT_TRUE(e.ok()) << e.status();
    // The record holds the key id in the clear (lib/seal/records.proto).
    return e.ok() && absl::StrContains(e->value, "kek-2") ? "kek-2" : "kek-1";
  };
  EXPECT_STREQ(stored_key_id("core/root-key-wrapped"), "kek-1");
  ASSERT_THAT(key_->Rotate("kek-2", SecretBytes::Random(32)), IsOk());
  int active = cluster_->Active();
  ASSERT_GE(active, 0);
  ASSERT_THAT(cluster_->nodes[active]->StepDown(), IsOk());
  cluster_->Run(absl::Seconds(3));
  ASSERT_EQ(cluster_->Actives().size(), 1u);
  // A promotion alone rewraps nothing (before: it did, with no shares).
  EXPECT_STREQ(stored_key_id("core/root-key-wrapped"), "kek-1");
  EXPECT_STREQ(stored_key_id("core/recovery-key-wrapped"), "kek-1");

  active = cluster_->Active();
  const int standby = (active + 1) % 3;
  EXPECT_THAT(cluster_->nodes[standby]->RotateWrapperKey(recovery).status(),
              StatusIs(absl::StatusCode::kUnavailable));
  std::vector<std::string> one(recovery.begin(), recovery.begin() + 1);
  EXPECT_THAT(cluster_->nodes[active]->RotateWrapperKey(one).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("below the threshold")));
  EXPECT_STREQ(stored_key_id("core/root-key-wrapped"), "kek-1");
  ASSERT_OK_AND_ASSIGN(bool rewrapped,
                       cluster_->nodes[active]->RotateWrapperKey(recovery));
  EXPECT_TRUE(rewrapped);
  EXPECT_STREQ(stored_key_id("core/root-key-wrapped"), "kek-2");
  EXPECT_STREQ(stored_key_id("core/recovery-key-wrapped"), "kek-2");
  for (int i = 0; i < 3; ++i) cluster_->Restart(i);
  cluster_->Run(absl::Seconds(3));
  EXPECT_EQ(cluster_->Actives().size(), 1u);
}

// Rekey of the recovery key on the active: the current recovery shares
// authorize it, the new ones take over at CompleteRekey, the nodes keep
// unsealing themselves.
TEST_F(AutoUnsealTest, RekeyOfTheRecoveryKeyOnTheActive) {
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> recovery,
                       cluster_->nodes[0]->Initialize(3, 2));
  cluster_->Run(absl::Seconds(3));
  const int active = cluster_->Active();
  ASSERT_GE(active, 0);
  const int standby = (active + 1) % 3;
  EXPECT_THAT(cluster_->nodes[standby]->Rekey(recovery, 5, 3).status(),
              StatusIs(absl::StatusCode::kUnavailable));
  std::vector<std::string> one(recovery.begin(), recovery.begin() + 1);
  EXPECT_THAT(cluster_->nodes[active]->Rekey(one, 5, 3).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("below the threshold")));
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> fresh,
                       cluster_->nodes[active]->Rekey(recovery, 5, 3));
  ASSERT_EQ(fresh.size(), 5u);
  ASSERT_THAT(cluster_->nodes[active]->CompleteRekey(fresh), IsOk());
  HaStatus st = cluster_->nodes[standby]->Status();
  EXPECT_EQ(st.threshold, 3);
  EXPECT_EQ(st.shares, 5);
  EXPECT_THAT(cluster_->nodes[active]->MigrateSealToShamir(recovery),
              StatusIs(absl::StatusCode::kInvalidArgument));
  for (int i = 0; i < 3; ++i) cluster_->Restart(i);
  cluster_->Run(absl::Seconds(3));
  const int again = cluster_->Active();
  ASSERT_GE(again, 0);
  ASSERT_THAT(cluster_->nodes[again]->MigrateSealToShamir(fresh), IsOk());
}

}  // namespace
}  // namespace strongbox
