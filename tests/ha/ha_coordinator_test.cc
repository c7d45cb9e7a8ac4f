#include "strongbox/ha_coordinator.h"

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <functional>
#include <memory>
#include <thread>

#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/ha/cluster.h"

namespace strongbox {
namespace {

using ::strongbox::testing_cluster::Cluster;
using ::strongbox::testing_cluster::ClusterOptions;
using ::testing::HasSubstr;

using Action = RouteDecision::Action;

// ------------------------------------------------------------- creation

TEST(HaCoordinatorCreateTest, RejectsBadOptions) {
  std::unique_ptr<Backend> backend = NewInMemoryBackend();
  HaCoordinator::Options good;
  good.backend = backend.get();
  good.node_id = "n";
  good.advertise_address = "a:1";
  good.background_thread = false;
  ASSERT_TRUE(HaCoordinator::Create(good).ok());

  auto expect_invalid = [&](auto mutate, absl::string_view what) {
    HaCoordinator::Options o = good;
    mutate(o);
    absl::StatusOr<std::unique_ptr<HaCoordinator>> c = HaCoordinator::Create(o);
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << what;
    if (!c.ok())
      EXPECT_THAT(std::string(c.status().message()), HasSubstr(what));
  };
  expect_invalid([](auto& o) { o.backend = nullptr; }, "backend");
  expect_invalid([](auto& o) { o.node_id.clear(); }, "node_id");
  expect_invalid([](auto& o) { o.advertise_address.clear(); },
                 "advertise_address");
  expect_invalid([](auto& o) { o.lease_ttl = absl::ZeroDuration(); },
                 "lease_ttl");
  expect_invalid([](auto& o) { o.renew_interval = o.lease_ttl; },
                 "renew_interval");
  expect_invalid([](auto& o) { o.retry_backoff = absl::ZeroDuration(); },
                 "retry_backoff");
  expect_invalid([](auto& o) { o.step_down_pause = absl::Seconds(-1); },
                 "step_down_pause");
}

class NoHaBackend : public BackendWrapper {
 public:
  using BackendWrapper::BackendWrapper;
  HaBackend* ha() override { return nullptr; }
};

TEST(HaCoordinatorCreateTest, BackendWithoutHaIsRefused) {
  std::unique_ptr<Backend> backend = NewInMemoryBackend();
  NoHaBackend no_ha(backend.get());
  HaCoordinator::Options o;
  o.backend = &no_ha;
  o.node_id = "n";
  o.advertise_address = "a:1";
  o.background_thread = false;
  EXPECT_EQ(HaCoordinator::Create(o).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(HaCoordinatorCreateTest, BackendDownAtCreateIsReported) {
  std::unique_ptr<Backend> backend = NewInMemoryBackend();
  FaultInjectingBackend faulty(backend.get());
  faulty.FailNext(1, absl::UnavailableError("down"));
  HaCoordinator::Options o;
  o.backend = &faulty;
  o.node_id = "n";
  o.advertise_address = "a:1";
  o.background_thread = false;
  EXPECT_EQ(HaCoordinator::Create(o).status().code(),
            absl::StatusCode::kUnavailable);
}

// ------------------------------------------------------- seal lifecycle

TEST(HaCoordinatorTest, UninitializedThenInitializedIsSealed) {
  Cluster c;
  EXPECT_EQ(c.nodes[0]->state(), HaState::kUninitialized);
  RouteDecision r = c.nodes[0]->Route(OperationKind::kRead);
  EXPECT_EQ(r.action, Action::kUnavailable);
  EXPECT_EQ(r.reason, "not initialized");
  c.Initialize();
  EXPECT_EQ(c.shares.size(), 5u);
  EXPECT_EQ(c.nodes[0]->state(), HaState::kSealed);
  EXPECT_EQ(c.nodes[0]->Initialize(5, 3).status().code(),
            absl::StatusCode::kFailedPrecondition);
  // Node 1 learns of the initialization by polling.
  EXPECT_EQ(c.nodes[1]->state(), HaState::kUninitialized);
  c.Run(absl::Seconds(1));
  EXPECT_EQ(c.nodes[1]->state(), HaState::kSealed);
  EXPECT_EQ(c.nodes[1]->Initialize(5, 3).status().code(),
            absl::StatusCode::kFailedPrecondition);
  HaStatus s = c.nodes[1]->Status();
  EXPECT_TRUE(s.initialized);
  EXPECT_TRUE(s.sealed);
  EXPECT_EQ(s.threshold, 3);
  EXPECT_EQ(s.shares, 5);
}

TEST(HaCoordinatorTest, UnsealWithProgressThenContend) {
  Cluster c;
  c.Initialize();
  absl::StatusOr<SealStatus> p = c.nodes[0]->Unseal(c.shares[0]);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE(p->sealed);
  EXPECT_EQ(p->progress, 1);
  p = c.nodes[0]->Unseal(c.shares[0]);  // Duplicate: ignored.
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->progress, 1);
  p = c.nodes[0]->Unseal(c.shares[1]);
  EXPECT_EQ(p->progress, 2);
  EXPECT_EQ(c.nodes[0]->Status().progress, 2);
  EXPECT_EQ(c.nodes[0]->state(), HaState::kSealed);
  p = c.nodes[0]->Unseal(c.shares[2]);
  ASSERT_TRUE(p.ok());
  EXPECT_FALSE(p->sealed);
  EXPECT_EQ(c.nodes[0]->state(), HaState::kStandby);
  c.nodes[0]->Poll();
  EXPECT_EQ(c.nodes[0]->state(), HaState::kActive);
  RouteDecision w = c.nodes[0]->Route(OperationKind::kWrite);
  EXPECT_EQ(w.action, Action::kServeLocally);
  EXPECT_EQ(w.leader_address, Cluster::Address(0));
  EXPECT_NE(w.fence, kNoFence);
  EXPECT_EQ(*c.nodes[0]->WriteFence(), w.fence);
  HaStatus s = c.nodes[0]->Status();
  EXPECT_EQ(s.state, HaState::kActive);
  EXPECT_FALSE(s.sealed);
  EXPECT_EQ(s.leader_address, Cluster::Address(0));
  EXPECT_EQ(s.fence, w.fence);
  EXPECT_EQ(s.active_since, c.clock.Now());
  // The holder value is the advertise address (leader and fence together).
  auto holder = c.shared->ha()->CurrentHolder();
  ASSERT_TRUE(holder.ok() && holder->has_value());
  EXPECT_EQ((*holder)->holder, Cluster::Address(0));
  EXPECT_EQ((*holder)->fence, w.fence);
}

TEST(HaCoordinatorTest, WrongSharesLeaveTheNodeSealed) {
  Cluster c;
  c.Initialize();
  Cluster other;
  other.Initialize();
  for (int k = 0; k < 3; ++k) (void)c.nodes[0]->Unseal(other.shares[k]);
  EXPECT_EQ(c.nodes[0]->state(), HaState::kSealed);
  EXPECT_TRUE(c.nodes[0]->barrier()->sealed());
  c.Run(absl::Seconds(10));
  EXPECT_FALSE(c.shared->ha()->CurrentHolder()->has_value());
}

// HA1: a sealed node never contends.
TEST(HaCoordinatorTest, SealedNodesNeverContend) {
  Cluster c;
  c.Initialize();
  c.Run(absl::Seconds(30));
  EXPECT_FALSE(c.shared->ha()->CurrentHolder()->has_value());
  for (auto& node : c.nodes) EXPECT_EQ(node->state(), HaState::kSealed);
  c.Unseal(2);
  c.Run(absl::Milliseconds(100));
  EXPECT_EQ(c.Active(), 2);
  // Sealing the only unsealed node leaves nobody holding the lease.
  ASSERT_TRUE(c.nodes[2]->Seal().ok());
  c.Run(absl::Seconds(30));
  EXPECT_FALSE(c.shared->ha()->CurrentHolder()->has_value());
  EXPECT_TRUE(c.Actives().empty());
}

// ---------------------------------------------------- election, routing

TEST(HaCoordinatorTest, ExactlyOneActiveAndStandbysRedirect) {
  Cluster c;
  c.Initialize();
  c.UnsealAll();
  c.Run(absl::Seconds(1));
  const int active = c.Active();
  ASSERT_GE(active, 0);
  for (int i = 0; i < 3; ++i) {
    if (i == active) continue;
    EXPECT_EQ(c.nodes[i]->state(), HaState::kStandby);
    for (OperationKind kind : {OperationKind::kRead, OperationKind::kWrite}) {
      RouteDecision r = c.nodes[i]->Route(kind);
      EXPECT_EQ(r.action, Action::kRedirectToActive);
      EXPECT_EQ(r.leader_address, Cluster::Address(active));
    }
    absl::StatusOr<LeaderInfo> leader = c.nodes[i]->Leader();
    ASSERT_TRUE(leader.ok());
    EXPECT_EQ(leader->address, Cluster::Address(active));
    EXPECT_FALSE(leader->is_self);
    absl::StatusOr<FenceToken> fence = c.nodes[i]->WriteFence();
    EXPECT_EQ(fence.status().code(), absl::StatusCode::kUnavailable);
    EXPECT_THAT(std::string(fence.status().message()),
                HasSubstr(Cluster::Address(active)));
  }
  EXPECT_TRUE(c.nodes[active]->Leader()->is_self);
}

TEST(HaCoordinatorTest, PerfStandbyServesReadsAndForwardsWrites) {
  ClusterOptions o;
  o.mode = StandbyMode::kPerfStandby;
  Cluster c(o);
  c.Initialize();
  c.UnsealAll();
  c.Run(absl::Seconds(1));
  const int active = c.Active();
  const int standby = (active + 1) % 3;
  EXPECT_EQ(c.nodes[standby]->state(), HaState::kPerfStandby);
  RouteDecision read = c.nodes[standby]->Route(OperationKind::kRead);
  EXPECT_EQ(read.action, Action::kServeLocally);
  RouteDecision write = c.nodes[standby]->Route(OperationKind::kWrite);
  EXPECT_EQ(write.action, Action::kForwardToActive);
  EXPECT_EQ(write.leader_address, Cluster::Address(active));
  EXPECT_EQ(write.fence, *c.nodes[active]->WriteFence());
}

TEST(HaCoordinatorTest, StandbyWithNoLeaderIsUnavailable) {
  Cluster c;
  c.Initialize();
  c.Unseal(0);
  // Node 0 unsealed but has not polled: no leader yet.
  RouteDecision r = c.nodes[0]->Route(OperationKind::kRead);
  EXPECT_EQ(r.action, Action::kUnavailable);
  EXPECT_EQ(r.reason, "no active node yet");
  EXPECT_EQ(c.nodes[0]->Leader().status().code(), absl::StatusCode::kNotFound);
  c.nodes[1]->Poll();  // Notices the initialization.
  RouteDecision sealed = c.nodes[1]->Route(OperationKind::kRead);
  EXPECT_EQ(sealed.action, Action::kUnavailable);
  EXPECT_EQ(sealed.reason, "sealed");
}

// A standby's refusal names the leader of right now: just after an
// election (before its loop has refreshed the leader) and just after each
// kind of failover (its cached leader is gone), without polling it.
TEST(HaCoordinatorTest, StandbyRefusalNamesTheCurrentLeaderWithoutPolling) {
  for (StandbyMode mode : {StandbyMode::kStandby, StandbyMode::kPerfStandby}) {
    SCOPED_TRACE(mode == StandbyMode::kStandby ? "standby" : "perf standby");
    ClusterOptions o;
    o.mode = mode;
    Cluster c(o);
    c.Initialize();
    c.UnsealAll();
    const Action refer = mode == StandbyMode::kStandby
                             ? Action::kRedirectToActive
                             : Action::kForwardToActive;
    auto expect_names = [&](int standby, int leader, const char* when) {
      RouteDecision r = c.nodes[standby]->Route(OperationKind::kWrite);
      EXPECT_EQ(r.action, refer) << when << ": " << r.reason;
      EXPECT_EQ(r.leader_address, Cluster::Address(leader)) << when;
      EXPECT_EQ(r.fence, *c.nodes[leader]->WriteFence()) << when;
    };
    // Election: only node 0 has polled.
    c.nodes[0]->Poll();
    ASSERT_EQ(c.Active(), 0);
    expect_names(1, 0, "after the election");
    expect_names(2, 0, "after the election");
    c.Run(absl::Seconds(1));  // Every node's loop has seen node 0 lead.
    // Step-down: node 2 takes over; node 1 still caches node 0.
    ASSERT_TRUE(c.nodes[0]->StepDown().ok());
    c.nodes[2]->Poll();
    ASSERT_EQ(c.Active(), 2);
    expect_names(1, 2, "after a step-down");
    expect_names(0, 2, "after a step-down");
    c.Run(absl::Seconds(1));
    ASSERT_EQ(c.Active(), 2);
    // Seal: node 1 takes over; node 0 still caches node 2.
    ASSERT_TRUE(c.nodes[2]->Seal().ok());
    c.nodes[1]->Poll();
    ASSERT_EQ(c.Active(), 1);
    expect_names(0, 1, "after a seal");
    c.Run(absl::Seconds(1));
    ASSERT_EQ(c.Active(), 1);
    // Crash: node 1 dies (its lease freed at once, as LMDB's file lock
    // is); node 2, unsealed again, takes over; node 0 still caches node 1.
    c.Unseal(2);
    c.Freeze(1);
    ASSERT_TRUE(c.links[1]->ExpireCurrentGrant().ok());
    c.nodes[2]->Poll();
    ASSERT_EQ(c.nodes[2]->state(), HaState::kActive);
    expect_names(0, 2, "after a crash");
    // No leader at all: said so, after reading the backend.
    ASSERT_TRUE(c.nodes[2]->Seal().ok());
    RouteDecision none = c.nodes[0]->Route(OperationKind::kWrite);
    EXPECT_EQ(none.action, Action::kUnavailable);
    EXPECT_EQ(none.reason, "no active node yet");
    EXPECT_EQ(none.leader_address, "");
  }
}

// -------------------------------------------------------------- failover

TEST(HaCoordinatorTest, CrashedActiveIsReplacedAfterTheTtl) {
  Cluster c;
  c.Initialize();
  c.UnsealAll();
  c.Run(absl::Seconds(1));
  const int old = c.Active();
  const FenceToken old_fence = *c.nodes[old]->WriteFence();
  c.Freeze(old);  // Crashed: stops renewing, never releases.
  c.Run(absl::Seconds(4));
  EXPECT_TRUE(c.WritableActives() == std::vector<int>{old});
  c.Run(absl::Seconds(2));
  std::vector<int> writable = c.WritableActives();
  ASSERT_EQ(writable.size(), 1u);
  EXPECT_NE(writable[0], old);
  EXPECT_GT(*c.nodes[writable[0]]->WriteFence(), old_fence);
  // HA2: the crashed node's own view refuses writes, even without polling.
  EXPECT_EQ(c.nodes[old]->WriteFence().status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(c.nodes[old]->Route(OperationKind::kWrite).action,
            Action::kUnavailable);
}

TEST(HaCoordinatorTest, HungActiveResumesDeposedAndItsWriteIsRejected) {
  Cluster c;
  c.Initialize();
  c.UnsealAll();
  c.Run(absl::Seconds(1));
  const int old = c.Active();
  Barrier* old_barrier = c.nodes[old]->barrier();
  const FenceToken old_fence = *c.nodes[old]->WriteFence();
  ASSERT_TRUE(old_barrier->Put("app/config", "v1", old_fence).ok());

  c.Freeze(old);  // Hangs: alive, but its loop does not run.
  c.Run(absl::Seconds(7));
  const int next = c.WritableActives().at(0);
  ASSERT_NE(next, old);
  const FenceToken next_fence = *c.nodes[next]->WriteFence();
  ASSERT_TRUE(
      c.nodes[next]->barrier()->Put("app/config", "v2", next_fence).ok());

  // The hung node resumes: it still believes it is active, but refuses
  // writes at once (HA2) ...
  EXPECT_EQ(c.nodes[old]->state(), HaState::kActive);
  EXPECT_EQ(c.nodes[old]->Route(OperationKind::kWrite).action,
            Action::kUnavailable);
  // ... and a write it had in flight with its old fence is rejected by the
  // backend with nothing applied (HA5).
  const uint64_t revision = *c.shared->Revision();
  EXPECT_EQ(old_barrier->Put("app/config", "stale", old_fence).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(*c.shared->Revision(), revision);
  EXPECT_EQ(c.nodes[next]->barrier()->Get("app/config")->value, "v2");
  // Its loop runs again: it notices and becomes a standby.
  c.Thaw(old);
  c.Run(absl::Milliseconds(100));
  EXPECT_EQ(c.nodes[old]->state(), HaState::kStandby);
  const auto& changes = c.observers[old]->changes;
  ASSERT_FALSE(changes.empty());
  EXPECT_EQ(changes.back().from, HaState::kActive);
  EXPECT_EQ(changes.back().to, HaState::kStandby);
  EXPECT_THAT(changes.back().reason, HasSubstr("lease lost"));
  EXPECT_EQ(changes.back().fence, old_fence);
  EXPECT_EQ(c.WritableActives(), std::vector<int>{next});
}

TEST(HaCoordinatorTest, SealingTheActiveHandsOverWithoutWaitingForTheTtl) {
  Cluster c;
  c.Initialize();
  c.UnsealAll();
  c.Run(absl::Seconds(1));
  const int old = c.Active();
  ASSERT_TRUE(c.nodes[old]->Seal().ok());
  EXPECT_EQ(c.nodes[old]->state(), HaState::kSealed);
  EXPECT_TRUE(c.nodes[old]->barrier()->sealed());
  EXPECT_EQ(c.nodes[old]->barrier()->Get("anything").status().code(),
            absl::StatusCode::kFailedPrecondition);
  // The lease was released: the next poll, at the same instant, promotes.
  EXPECT_FALSE(c.shared->ha()->CurrentHolder()->has_value());
  c.PollAll();
  std::vector<int> actives = c.Actives();
  ASSERT_EQ(actives.size(), 1u);
  EXPECT_NE(actives[0], old);
  EXPECT_TRUE(c.nodes[old]->Seal().ok());  // Idempotent.
  const auto& changes = c.observers[old]->changes;
  EXPECT_EQ(changes.back().from, HaState::kActive);
  EXPECT_EQ(changes.back().to, HaState::kSealed);
  EXPECT_EQ(changes.back().reason, "sealed");
}

// Runs `f` on a thread and waits for it up to a generous watchdog; true
// if it returned. A call that never returns is left blocked for the
// caller to release (then joined by `*thread`).
bool ReturnsOnItsOwn(std::function<void()> f, std::thread* thread) {
  auto done = std::make_shared<std::atomic<bool>>(false);
  *thread = std::thread([f, done] {
    f();
    done->store(true);
  });
  for (int i = 0; i < 20000 && !done->load(); ++i) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  return done->load();
}

// Waits (yielding) until `link` has `n` calls blocked in it.
void AwaitBlockedCalls(FaultInjectingBackend* link, int n) {
  while (link->blocked_calls() < n) std::this_thread::yield();
}

// Seal() is bounded whatever the backend does: with the active's renewal
// stuck in the backend and the release stuck behind it (a peer stopped
// inside an LMDB write transaction), Seal wipes the keys, turns kSealed
// and returns; the release finishes in the background once the backend
// moves. D2 holds at once: no key material, no contention.
TEST(HaCoordinatorTest, SealReturnsWhileTheBackendHangs) {
  ClusterOptions o;
  o.seal_release_wait = absl::Milliseconds(20);
  Cluster c(o);
  c.Initialize();
  c.UnsealAll();
  c.Run(absl::Seconds(1));
  const int active = c.Active();
  ASSERT_GE(active, 0);
  HaCoordinator* node = c.nodes[active].get();
  FaultInjectingBackend* link = c.links[active].get();
  const FenceToken fence = *node->WriteFence();
  link->Block(FaultInjectingBackend::kRenew | FaultInjectingBackend::kRelease);
  c.clock.Advance(absl::Seconds(1));  // A renewal is due ...
  std::thread loop([node] { node->Poll(); });
  AwaitBlockedCalls(link, 1);  // ... and stuck in the backend.

  std::thread sealer;
  const bool returned =
      ReturnsOnItsOwn([node] { EXPECT_TRUE(node->Seal().ok()); }, &sealer);
  EXPECT_TRUE(returned) << "Seal() blocked behind the backend";
  EXPECT_EQ(node->state(), HaState::kSealed);
  EXPECT_TRUE(node->barrier()->sealed());
  EXPECT_EQ(node->barrier()->Get("anything").status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(node->WriteFence().status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(node->Route(OperationKind::kWrite).action, Action::kUnavailable);
  if (returned) {
    // The renewal and the release are both still in the backend.
    EXPECT_EQ(link->blocked_calls(), 2);
    // A sealed node does not contend.
    node->Poll();
    EXPECT_EQ(node->state(), HaState::kSealed);
  }

  link->Unblock();
  loop.join();
  sealer.join();
  // The release finished in the background: the lease is free at once.
  absl::StatusOr<std::optional<LeaseHolder>> holder;
  for (int i = 0; i < 20000; ++i) {
    holder = c.shared->ha()->CurrentHolder();
    if (holder.ok() && !holder->has_value()) break;
    absl::SleepFor(absl::Milliseconds(1));
  }
  ASSERT_TRUE(holder.ok());
  EXPECT_FALSE(holder->has_value());
  c.PollAll();
  const int next = c.Active();
  EXPECT_NE(next, active);
  if (next >= 0) EXPECT_GT(*c.nodes[next]->WriteFence(), fence);
  EXPECT_EQ(node->state(), HaState::kSealed);
  EXPECT_TRUE(node->barrier()->sealed());
}

// Seal() does not wait for an Unseal stuck in the backend either; the
// Unseal then fails and leaves the node sealed.
TEST(HaCoordinatorTest, SealDoesNotWaitForAnUnsealStuckInTheBackend) {
  Cluster c;
  c.Initialize();
  HaCoordinator* node = c.nodes[0].get();
  ASSERT_TRUE(node->Unseal(c.shares[0]).ok());
  ASSERT_TRUE(node->Unseal(c.shares[1]).ok());
  c.links[0]->Block(FaultInjectingBackend::kGet);
  std::thread unsealer([&] {
    absl::StatusOr<SealStatus> s = node->Unseal(c.shares[2]);
    EXPECT_FALSE(s.ok() && !s->sealed) << "unsealed across a Seal()";
  });
  AwaitBlockedCalls(c.links[0].get(), 1);
  std::thread sealer;
  const bool returned =
      ReturnsOnItsOwn([node] { EXPECT_TRUE(node->Seal().ok()); }, &sealer);
  EXPECT_TRUE(returned) << "Seal() waited for the stuck Unseal";
  c.links[0]->Unblock();
  unsealer.join();
  sealer.join();
  EXPECT_EQ(node->state(), HaState::kSealed);
  EXPECT_TRUE(node->barrier()->sealed());
}

TEST(HaCoordinatorTest, StepDownHandsOverAndPausesBeforeContending) {
  Cluster c;
  c.Initialize();
  c.UnsealAll();
  c.Run(absl::Seconds(1));
  const int old = c.Active();
  ASSERT_TRUE(c.nodes[old]->StepDown().ok());
  EXPECT_EQ(c.nodes[old]->state(), HaState::kStandby);
  c.PollAll();
  const int next = c.Active();
  EXPECT_NE(next, old);
  // The next one steps down too, inside the old one's pause: the third
  // node wins, not the one that just stepped down.
  ASSERT_TRUE(c.nodes[next]->StepDown().ok());
  c.PollAll();
  const int third = c.Active();
  EXPECT_NE(third, old);
  EXPECT_NE(third, next);
  EXPECT_TRUE(c.nodes[old]->StepDown().ok());  // Not active: no-op.
  // After the pause everyone may contend again.
  ASSERT_TRUE(c.nodes[third]->StepDown().ok());
  c.Run(absl::Seconds(2));
  EXPECT_EQ(c.Actives().size(), 1u);
}

TEST(HaCoordinatorTest, TransientRenewalFailuresAreRidden) {
  Cluster c;
  c.Initialize();
  c.UnsealAll();
  c.Run(absl::Seconds(1));
  const int active = c.Active();
  const FenceToken fence = *c.nodes[active]->WriteFence();
  c.links[active]->FailNext(2, absl::UnavailableError("blip"),
                            FaultInjectingBackend::kRenew);
  c.Run(absl::Seconds(10));
  EXPECT_EQ(c.Active(), active);
  EXPECT_EQ(*c.nodes[active]->WriteFence(), fence);
  EXPECT_EQ(c.links[active]->injected_failures(), 2);
}

TEST(HaCoordinatorTest, RenewalFailingPastTheTtlDemotes) {
  Cluster c;
  c.Initialize();
  c.UnsealAll();
  c.Run(absl::Seconds(1));
  const int old = c.Active();
  c.links[old]->FailRenewals(true);  // Cut off from the backend's lease.
  c.Run(absl::Seconds(3));
  EXPECT_EQ(c.nodes[old]->state(), HaState::kActive);
  c.Run(absl::Seconds(3));
  EXPECT_EQ(c.nodes[old]->state(), HaState::kStandby);
  EXPECT_THAT(c.observers[old]->changes.back().reason,
              HasSubstr("renewal failed"));
  c.links[old]->FailRenewals(false);
  c.Run(absl::Seconds(1));
  std::vector<int> writable = c.WritableActives();
  ASSERT_EQ(writable.size(), 1u);
  EXPECT_THAT(c.nodes[old]->Status().last_error, HasSubstr("renew"));
}

TEST(HaCoordinatorTest, BackendErrorDuringPromotionReleasesAndRetries) {
  Cluster c;
  c.Initialize();
  c.Unseal(1);
  // Reloading the keyring fails on node 1's first promotion.
  c.links[1]->FailNext(1, absl::UnavailableError("disk hiccup"),
                       FaultInjectingBackend::kGet);
  c.nodes[1]->Poll();
  EXPECT_EQ(c.nodes[1]->state(), HaState::kStandby);
  EXPECT_FALSE(c.shared->ha()->CurrentHolder()->has_value())
      << "a failed promotion must release the lease";
  EXPECT_THAT(c.nodes[1]->Status().last_error, HasSubstr("promotion failed"));
  const auto& changes = c.observers[1]->changes;
  ASSERT_FALSE(changes.empty());
  EXPECT_EQ(changes.back().from, HaState::kStandby);
  EXPECT_EQ(changes.back().to, HaState::kStandby);
  EXPECT_THAT(changes.back().reason, HasSubstr("disk hiccup"));
  // Backoff: no retry at once ...
  c.nodes[1]->Poll();
  EXPECT_EQ(c.nodes[1]->state(), HaState::kStandby);
  // ... but after it.
  c.Run(absl::Seconds(1));
  EXPECT_EQ(c.Active(), 1);
}

TEST(HaCoordinatorTest, AcquireErrorsBackOffWithJitter) {
  Cluster c;
  c.Initialize();
  c.Unseal(0);
  c.links[0]->FailNext(3, absl::UnavailableError("backend down"),
                       FaultInjectingBackend::kAcquire);
  c.nodes[0]->Poll();
  const absl::Time first_retry = c.nodes[0]->NextPollTime();
  EXPECT_GT(first_retry, c.clock.Now());
  EXPECT_LE(first_retry, c.clock.Now() + absl::Milliseconds(150));
  c.Run(absl::Seconds(3));
  EXPECT_EQ(c.Active(), 0);
  EXPECT_EQ(c.links[0]->injected_failures(), 3);
}

TEST(HaCoordinatorTest, FailingActivationHookAbortsPromotion) {
  Cluster c;
  c.Initialize();
  int calls = 0;
  HaCoordinator::Options o = c.NodeOptions(0);
  o.on_activate = [&](FenceToken fence) {
    ++calls;
    EXPECT_NE(fence, kNoFence);
    return calls == 1 ? absl::InternalError("warm-up failed")
                      : absl::OkStatus();
  };
  c.nodes[0] = *HaCoordinator::Create(o);
  c.Unseal(0);
  c.nodes[0]->Poll();
  EXPECT_EQ(c.nodes[0]->state(), HaState::kStandby);
  EXPECT_FALSE(c.shared->ha()->CurrentHolder()->has_value());
  c.Run(absl::Seconds(1));
  EXPECT_EQ(c.nodes[0]->state(), HaState::kActive);
  EXPECT_EQ(calls, 2);
}

TEST(HaCoordinatorTest, RapidRepeatedFailovers) {
  Cluster c;
  c.Initialize();
  c.UnsealAll();
  c.Run(absl::Seconds(1));
  FenceToken last = *c.nodes[c.Active()]->WriteFence();
  for (int round = 0; round < 60; ++round) {
    const int active = c.Active();
    ASSERT_GE(active, 0) << "round " << round;
    switch (round % 3) {
      case 0:
        ASSERT_TRUE(c.nodes[active]->StepDown().ok());
        break;
      case 1:
        ASSERT_TRUE(c.nodes[active]->Seal().ok());
        c.Unseal(active);
        break;
      case 2:
        ASSERT_TRUE(c.links[active]->ExpireCurrentGrant().ok());
        break;
    }
    c.Run(absl::Milliseconds(200));
    ASSERT_LE(c.WritableActives().size(), 1u);
    c.Run(absl::Seconds(2));
    std::vector<int> writable = c.WritableActives();
    ASSERT_EQ(writable.size(), 1u) << "round " << round;
    const FenceToken fence = *c.nodes[writable[0]]->WriteFence();
    EXPECT_GT(fence, last);
    last = fence;
  }
}

TEST(HaCoordinatorTest, DestroyingTheActiveReleasesTheLease) {
  Cluster c;
  c.Initialize();
  c.UnsealAll();
  c.Run(absl::Seconds(1));
  const int old = c.Active();
  c.Restart(old);  // Clean shutdown and a fresh, sealed process.
  EXPECT_FALSE(c.shared->ha()->CurrentHolder()->has_value());
  c.PollAll();
  std::vector<int> actives = c.Actives();
  ASSERT_EQ(actives.size(), 1u);
  EXPECT_NE(actives[0], old);
  EXPECT_EQ(c.nodes[old]->state(), HaState::kSealed);
}

// ----------------------------------------------- seal ops via the active

TEST(HaCoordinatorTest, RotateOnActiveIsFollowedByStandbys) {
  ClusterOptions o;
  o.mode = StandbyMode::kPerfStandby;
  Cluster c(o);
  c.Initialize();
  c.UnsealAll();
  c.Run(absl::Seconds(1));
  const int active = c.Active();
  const int standby = (active + 1) % 3;
  Barrier* b = c.nodes[active]->barrier();
  ASSERT_TRUE(b->Put("kv/old", "before", *c.nodes[active]->WriteFence()).ok());
  EXPECT_EQ(c.nodes[standby]->Rotate().status().code(),
            absl::StatusCode::kUnavailable);
  absl::StatusOr<uint32_t> term = c.nodes[active]->Rotate();
  ASSERT_TRUE(term.ok()) << term.status();
  EXPECT_EQ(*term, 2u);
  ASSERT_TRUE(b->Put("kv/new", "after", *c.nodes[active]->WriteFence()).ok());
  EXPECT_EQ(c.nodes[standby]->barrier()->Get("kv/old")->value, "before");
  EXPECT_EQ(c.nodes[standby]->barrier()->Get("kv/new")->value, "after");
  // Failover to the standby: it writes with the new term.
  ASSERT_TRUE(c.nodes[active]->StepDown().ok());
  c.Run(absl::Milliseconds(100));
  EXPECT_EQ(c.nodes[c.Active()]->Status().term, 2u);
}

TEST(HaCoordinatorTest, RekeyOnlyOnTheActive) {
  Cluster c;
  c.Initialize();
  c.UnsealAll();
  c.Run(absl::Seconds(1));
  const int active = c.Active();
  const int standby = (active + 1) % 3;
  EXPECT_EQ(c.nodes[standby]->Rekey(c.shares, 3, 2).status().code(),
            absl::StatusCode::kUnavailable);
  absl::StatusOr<std::vector<std::string>> fresh =
      c.nodes[active]->Rekey(c.shares, 3, 2);
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  ASSERT_EQ(fresh->size(), 3u);
  EXPECT_EQ(c.nodes[standby]->CompleteRekey({(*fresh)[0], (*fresh)[1]}).code(),
            absl::StatusCode::kUnavailable);
  ASSERT_TRUE(c.nodes[active]->CompleteRekey({(*fresh)[0], (*fresh)[1]}).ok());
  ASSERT_TRUE(c.nodes[standby]->Seal().ok());
  ASSERT_TRUE(c.nodes[standby]->Unseal((*fresh)[0]).ok());
  absl::StatusOr<SealStatus> done = c.nodes[standby]->Unseal((*fresh)[2]);
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_FALSE(done->sealed);
}

// Review D7: coordinator users can see a pending rekey before cancelling,
// and CancelRekey with none pending is refused, not OK.
TEST(HaCoordinatorTest, StatusReportsPendingRekey) {
  Cluster c;
  c.Initialize();
  c.UnsealAll();
  c.Run(absl::Seconds(1));
  const int active = c.Active();
  EXPECT_FALSE(c.nodes[active]->Status().rekey_pending);
  absl::StatusOr<std::vector<std::string>> fresh =
      c.nodes[active]->Rekey(c.shares, 4, 3);
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  HaStatus pending = c.nodes[active]->Status();
  EXPECT_TRUE(pending.rekey_pending);
  EXPECT_EQ(pending.rekey_shares, 4);
  EXPECT_EQ(pending.rekey_threshold, 3);
  ASSERT_TRUE(c.nodes[active]
                  ->CompleteRekey({(*fresh)[0], (*fresh)[1], (*fresh)[3]})
                  .ok());
  HaStatus done = c.nodes[active]->Status();
  EXPECT_FALSE(done.rekey_pending);
  EXPECT_EQ(done.shares, 4);
  EXPECT_EQ(done.threshold, 3);
  EXPECT_EQ(c.nodes[active]->CancelRekey().code(),
            absl::StatusCode::kFailedPrecondition);
}

// ------------------------------------------------------------- observers

class ReentrantObserver : public HaObserver {
 public:
  explicit ReentrantObserver(HaCoordinator** node) : node_(node) {}
  void OnStateChange(const StateChange& change) override {
    seen.push_back(change.to);
    // Observers may call back in: seal as soon as we become active.
    if (change.to == HaState::kActive) (void)(*node_)->Seal();
  }
  std::vector<HaState> seen;

 private:
  HaCoordinator** node_;
};

TEST(HaCoordinatorTest, ObserversSeeEveryChangeInOrderAndMayCallBack) {
  Cluster c;
  HaCoordinator* node = c.nodes[0].get();
  ReentrantObserver observer(&node);
  c.nodes[0]->AddObserver(&observer);
  c.Initialize();
  c.Unseal(0);
  c.nodes[0]->Poll();
  EXPECT_EQ(c.nodes[0]->state(), HaState::kSealed);
  EXPECT_EQ(observer.seen,
            (std::vector<HaState>{HaState::kSealed, HaState::kStandby,
                                  HaState::kActive, HaState::kSealed}));
  const auto& recorded = c.observers[0]->changes;
  ASSERT_EQ(recorded.size(), 4u);
  EXPECT_EQ(recorded[0].from, HaState::kUninitialized);
  EXPECT_EQ(recorded[2].reason, "won the lease");
  EXPECT_NE(recorded[2].fence, kNoFence);
  c.nodes[0]->RemoveObserver(&observer);
}

// An observer may call any seal operation, including from the events that
// seal operations themselves raise (no self-deadlock on the seal lock).
class SealWhenStandby : public HaObserver {
 public:
  explicit SealWhenStandby(HaCoordinator** node) : node_(node) {}
  void OnStateChange(const StateChange& change) override {
    if (change.to == HaState::kStandby) {
      sealed_from_callback = (*node_)->Seal().ok();
    }
  }
  bool sealed_from_callback = false;

 private:
  HaCoordinator** node_;
};

TEST(HaCoordinatorTest, ObserverMaySealFromTheUnsealEvent) {
  Cluster c;
  HaCoordinator* node = c.nodes[0].get();
  SealWhenStandby observer(&node);
  c.nodes[0]->AddObserver(&observer);
  c.Initialize();
  for (int k = 0; k < 3; ++k) ASSERT_TRUE(c.nodes[0]->Unseal(c.shares[k]).ok());
  EXPECT_TRUE(observer.sealed_from_callback);
  EXPECT_EQ(c.nodes[0]->state(), HaState::kSealed);
  EXPECT_TRUE(c.nodes[0]->barrier()->sealed());
  c.nodes[0]->RemoveObserver(&observer);  // From outside a callback: fine.
}

// RemoveObserver waits for a delivery in progress on another thread, so the
// observer can be destroyed right after it returns.
class SlowObserver : public HaObserver {
 public:
  void OnStateChange(const StateChange&) override {
    entered = true;
    while (!release.load()) std::this_thread::yield();
    calls++;
  }
  std::atomic<bool> entered{false};
  std::atomic<bool> release{false};
  std::atomic<int> calls{0};
};

TEST(HaCoordinatorTest, RemoveObserverWaitsForADeliveryInProgress) {
  Cluster c;
  auto observer = std::make_unique<SlowObserver>();
  c.nodes[0]->AddObserver(observer.get());
  std::thread initializer([&] { c.Initialize(); });
  while (!observer->entered.load()) std::this_thread::yield();
  std::atomic<bool> removed{false};
  std::thread remover([&] {
    c.nodes[0]->RemoveObserver(observer.get());
    removed = true;
  });
  absl::SleepFor(absl::Milliseconds(20));
  EXPECT_FALSE(removed.load()) << "returned while the observer was running";
  observer->release = true;
  remover.join();
  initializer.join();
  EXPECT_EQ(observer->calls.load(), 1);
  observer.reset();  // Safe: no delivery can reach it now.
  c.Unseal(0);
}

// HA2 does not trust the backend's clock: a backend whose clock runs ahead
// of the node's reports a later expiry, but the node stops writing at its
// own deadline (its clock before the grant + TTL).
TEST(HaCoordinatorTest, BackendClockAheadDoesNotStretchTheLease) {
  FakeClock node_clock;
  FakeClock backend_clock(node_clock.Now() + absl::Seconds(3));
  InMemoryBackendOptions bo;
  bo.clock = &backend_clock;
  std::unique_ptr<Backend> backend = NewInMemoryBackend(bo);
  HaCoordinator::Options o;
  o.backend = backend.get();
  o.node_id = "n";
  o.advertise_address = "n:1";
  o.background_thread = false;
  o.clock = &node_clock;
  std::unique_ptr<HaCoordinator> node = *HaCoordinator::Create(o);
  std::vector<std::string> shares = *node->Initialize(1, 1);
  ASSERT_TRUE(node->Unseal(shares[0]).ok());
  node->Poll();
  ASSERT_EQ(node->state(), HaState::kActive);
  // The backend's expiry reads 3 s later than the node's own deadline.
  node_clock.Advance(absl::Seconds(5) + absl::Milliseconds(1));
  backend_clock.Advance(absl::Seconds(5) + absl::Milliseconds(1));
  EXPECT_EQ(node->WriteFence().status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(node->Route(OperationKind::kWrite).action, Action::kUnavailable);
}

// ------------------------------------------------------ wall-clock steps

// One node on an in-memory backend whose lease time is its own FakeClock
// (as a backend on CLOCK_BOOTTIME or a remote etcd is unaffected by a step
// of this host's wall clock). Both clocks advance together; only the
// node's wall clock is stepped.
struct SteppedNode {
  SteppedNode() {
    InMemoryBackendOptions bo;
    bo.clock = &backend_clock;
    backend = NewInMemoryBackend(bo);
    link =
        std::make_unique<FaultInjectingBackend>(backend.get(), &backend_clock);
    HaCoordinator::Options o;
    o.backend = link.get();
    o.node_id = "n";
    o.advertise_address = "n:1";
    o.lease_ttl = absl::Seconds(5);
    o.renew_interval = absl::Seconds(1);
    o.background_thread = false;
    o.clock = &node_clock;
    node = *HaCoordinator::Create(o);
    std::vector<std::string> shares = *node->Initialize(1, 1);
    EXPECT_TRUE(node->Unseal(shares[0]).ok());
    node->Poll();
    EXPECT_EQ(node->state(), HaState::kActive);
    fence = *node->WriteFence();
  }
  void Advance(absl::Duration d) {
    node_clock.Advance(d);
    backend_clock.Advance(d);
  }
  // Advances `total` in 100 ms steps, polling after each.
  void Run(absl::Duration total) {
    for (absl::Duration t; t < total; t += absl::Milliseconds(100)) {
      Advance(absl::Milliseconds(100));
      node->Poll();
    }
  }
  FakeClock node_clock;
  FakeClock backend_clock;
  std::unique_ptr<Backend> backend;
  std::unique_ptr<FaultInjectingBackend> link;
  std::unique_ptr<HaCoordinator> node;
  FenceToken fence = kNoFence;
};

// HA2 on the monotonic clock: the wall clock stepped back an hour does not
// stretch the lease of a node that stopped renewing, nor stop the renewals
// of a healthy one.
TEST(HaCoordinatorClockTest, WallClockSteppedBackNeitherStretchesNorStalls) {
  SteppedNode n;
  n.node_clock.Set(n.node_clock.Now() - absl::Hours(1));
  // Healthy: renewals go on as scheduled; the node stays active.
  n.Run(absl::Seconds(20));
  EXPECT_EQ(n.node->state(), HaState::kActive);
  EXPECT_EQ(n.node->WriteFence().value_or(kNoFence), n.fence);
  // Cut off from the lease: it lapses one TTL after the last renewal
  // began, not an hour later.
  n.link->FailRenewals(true);
  n.Advance(absl::Seconds(5) + absl::Milliseconds(1));
  EXPECT_EQ(n.node->WriteFence().status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(n.node->Route(OperationKind::kWrite).action, Action::kUnavailable);
  n.node->Poll();
  EXPECT_EQ(n.node->state(), HaState::kStandby);
}

// ... and stepped forward past the TTL it does not cut a healthy lease.
TEST(HaCoordinatorClockTest, WallClockSteppedForwardDoesNotCutTheLease) {
  SteppedNode n;
  n.Run(absl::Milliseconds(500));
  n.node_clock.Set(n.node_clock.Now() + absl::Seconds(12));
  EXPECT_EQ(n.node->Route(OperationKind::kWrite).action, Action::kServeLocally);
  EXPECT_EQ(n.node->WriteFence().value_or(kNoFence), n.fence);
  n.Run(absl::Seconds(20));
  EXPECT_EQ(n.node->state(), HaState::kActive);
  EXPECT_EQ(n.node->WriteFence().value_or(kNoFence), n.fence);
  EXPECT_EQ(n.node->Route(OperationKind::kWrite).action, Action::kServeLocally);
  // The lease still ends on time once renewals stop.
  n.link->FailRenewals(true);
  testing_cluster::RecordingObserver observer;
  n.node->AddObserver(&observer);
  n.Run(absl::Seconds(4));
  EXPECT_EQ(n.node->WriteFence().value_or(kNoFence), n.fence);
  EXPECT_TRUE(observer.changes.empty());
  n.Run(absl::Seconds(2));
  ASSERT_FALSE(observer.changes.empty());
  EXPECT_EQ(observer.changes[0].from, HaState::kActive);
  EXPECT_EQ(observer.changes[0].fence, n.fence);
  EXPECT_THAT(observer.changes[0].reason, HasSubstr("renewal failed"));
  n.node->RemoveObserver(&observer);
}

// The pause after a step-down (and every backoff: the same schedule) runs
// on the monotonic clock too: a step back does not stretch it.
TEST(HaCoordinatorClockTest, WallClockSteppedBackDoesNotStretchAPause) {
  SteppedNode n;
  ASSERT_TRUE(n.node->StepDown().ok());
  EXPECT_EQ(n.node->state(), HaState::kStandby);
  n.node_clock.Set(n.node_clock.Now() - absl::Hours(1));
  EXPECT_LE(n.node->NextPollTime(), n.node_clock.Now() + absl::Seconds(1));
  n.Run(absl::Milliseconds(1500));  // The pause is 1 s.
  EXPECT_EQ(n.node->state(), HaState::kActive);
  EXPECT_GT(n.node->WriteFence().value_or(kNoFence), n.fence);
}

TEST(FakeClockTest, SetStepsWallTimeOnlyAndAdvanceMovesBoth) {
  FakeClock clock;
  const absl::Time start = clock.Now();
  EXPECT_EQ(clock.MonotonicNow(), absl::ZeroDuration());
  clock.Set(start - absl::Hours(1));
  EXPECT_EQ(clock.Now(), start - absl::Hours(1));
  EXPECT_EQ(clock.MonotonicNow(), absl::ZeroDuration());
  clock.Advance(absl::Seconds(2));
  EXPECT_EQ(clock.Now(), start - absl::Hours(1) + absl::Seconds(2));
  EXPECT_EQ(clock.MonotonicNow(), absl::Seconds(2));
}

TEST(RealClockTest, MonotonicNeverGoesBack) {
  absl::Duration last = RealClock()->MonotonicNow();
  for (int i = 0; i < 1000; ++i) {
    const absl::Duration now = RealClock()->MonotonicNow();
    EXPECT_GE(now, last);
    last = now;
  }
  EXPECT_GT(last, absl::ZeroDuration());
}

// ------------------------------------------------------------------ fork

// What a forked child gets from its copy of `node`: a bit set for every
// call that did not fail closed (0 = all refused).
int ProbeInForkedChild(HaCoordinator* node, const std::string& share,
                       FenceToken parent_fence) {
  int bad = 0;
  absl::StatusOr<FenceToken> fence = node->WriteFence();
  if (fence.status().code() != absl::StatusCode::kFailedPrecondition) bad |= 1;
  RouteDecision r = node->Route(OperationKind::kWrite);
  if (r.action != Action::kUnavailable || r.fence != kNoFence) bad |= 2;
  if (node->Route(OperationKind::kRead).action != Action::kUnavailable) {
    bad |= 2;
  }
  if (node->state() != HaState::kSealed) bad |= 4;
  if (node->Leader().status().code() != absl::StatusCode::kFailedPrecondition) {
    bad |= 8;
  }
  if (node->StepDown().code() != absl::StatusCode::kFailedPrecondition) {
    bad |= 16;
  }
  if (node->Rotate().status().code() != absl::StatusCode::kFailedPrecondition) {
    bad |= 32;
  }
  if (node->Unseal(share).status().code() !=
          absl::StatusCode::kFailedPrecondition ||
      node->Seal().code() != absl::StatusCode::kFailedPrecondition) {
    bad |= 64;
  }
  node->ReportStaleFence(parent_fence);
  node->Poll();
  return bad;
}

// A forked child that calls into a coordinator gets FAILED_PRECONDITION,
// never the parent's fence; destroying its copy leaves the parent's lease
// alone.
TEST(HaCoordinatorForkTest, ForkedChildIsRefusedAndNeverSharesTheFence) {
  Cluster c;
  c.Initialize();
  c.UnsealAll();
  c.Run(absl::Seconds(1));
  const int active = c.Active();
  ASSERT_GE(active, 0);
  const FenceToken fence = *c.nodes[active]->WriteFence();
  const int standby = (active + 1) % 3;
  fflush(nullptr);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    int bad = ProbeInForkedChild(c.nodes[active].get(), c.shares[0], fence);
    bad |= ProbeInForkedChild(c.nodes[standby].get(), c.shares[0], fence);
    c.nodes[active].reset();  // Must not release the parent's lease.
    _exit(bad);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0) << "calls that did not fail closed "
                                       "in the child (bit set)";
  // The parent is untouched: still active under its fence, and writes.
  EXPECT_EQ(*c.nodes[active]->WriteFence(), fence);
  EXPECT_TRUE(c.nodes[active]->barrier()->Put("after/fork", "v", fence).ok());
}

// The same with background threads running in the parent: the child has
// none of them, and destroying its copy neither joins them nor aborts.
TEST(HaCoordinatorForkTest, ForkedChildOfAThreadedCoordinator) {
  std::unique_ptr<Backend> backend = NewInMemoryBackend();
  HaCoordinator::Options o;
  o.backend = backend.get();
  o.node_id = "t";
  o.advertise_address = "t:1";
  o.lease_ttl = absl::Seconds(5);
  o.renew_interval = absl::Milliseconds(100);
  o.leader_refresh = absl::Milliseconds(20);
  std::unique_ptr<HaCoordinator> node = *HaCoordinator::Create(o);
  std::vector<std::string> shares = *node->Initialize(1, 1);
  ASSERT_TRUE(node->Unseal(shares[0]).ok());
  for (int i = 0; i < 20000 && node->state() != HaState::kActive; ++i) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  ASSERT_EQ(node->state(), HaState::kActive);
  const FenceToken fence = *node->WriteFence();
  fflush(nullptr);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    int bad = ProbeInForkedChild(node.get(), shares[0], fence);
    node.reset();
    _exit(bad);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(*node->WriteFence(), fence);
  EXPECT_EQ((*backend->ha()->CurrentHolder())->fence, fence);
}

// ---------------------------------------------------- background thread

TEST(HaCoordinatorThreadTest, RealClockFailoverAndCleanShutdown) {
  std::unique_ptr<Backend> backend = NewInMemoryBackend();
  std::vector<std::unique_ptr<HaCoordinator>> nodes;
  for (int i = 0; i < 3; ++i) {
    HaCoordinator::Options o;
    o.backend = backend.get();
    o.node_id = absl::StrCat("t", i);
    o.advertise_address = absl::StrCat("t", i, ":1");
    o.lease_ttl = absl::Milliseconds(500);
    o.renew_interval = absl::Milliseconds(100);
    o.step_down_pause = absl::Milliseconds(50);
    o.leader_refresh = absl::Milliseconds(20);
    nodes.push_back(*HaCoordinator::Create(o));
  }
  std::vector<std::string> shares = *nodes[0]->Initialize(1, 1);
  for (auto& n : nodes) ASSERT_TRUE(n->Unseal(shares[0]).ok());
  auto wait_for_active = [&](int not_this) {
    for (int tries = 0; tries < 2000; ++tries) {
      for (int i = 0; i < 3; ++i) {
        if (i != not_this && nodes[i]->state() == HaState::kActive) return i;
      }
      absl::SleepFor(absl::Milliseconds(5));
    }
    return -1;
  };
  int active = wait_for_active(-1);
  ASSERT_GE(active, 0);
  ASSERT_TRUE(nodes[active]->Seal().ok());
  int next = wait_for_active(active);
  ASSERT_GE(next, 0);
  ASSERT_TRUE(nodes[next]->StepDown().ok());
  int third = wait_for_active(next);
  ASSERT_GE(third, 0);
  // Concurrent calls from many threads while the loops run.
  std::vector<std::thread> callers;
  for (int t = 0; t < 4; ++t) {
    callers.emplace_back([&, t] {
      for (int k = 0; k < 200; ++k) {
        HaCoordinator* n = nodes[(t + k) % 3].get();
        (void)n->Route(k % 2 ? OperationKind::kRead : OperationKind::kWrite);
        (void)n->Status();
        if (k % 50 == 49) (void)n->StepDown();
      }
    });
  }
  for (auto& t : callers) t.join();
  nodes.clear();  // Joins every loop; no thread or grant left behind.
  EXPECT_FALSE(backend->ha()->CurrentHolder()->has_value());
}

}  // namespace
}  // namespace strongbox
