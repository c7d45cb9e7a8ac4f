// Review findings on the coordinator's locking and seal/unseal ordering,
// each driven deterministically through a backend wrapper whose calls a
// test can count, block, or hook into (no sleeps, FakeClock only).
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "lib/ha/test_hooks.h"
#include "strongbox/backend.h"
#include "strongbox/ha_coordinator.h"
#include "strongbox/in_memory_backend.h"
#include "strongbox/secret_store.h"
#include "strongbox/testing/fake_clock.h"

namespace strongbox {
namespace {

// Counts and gates the calls the coordinator makes on the lease.
class HookedBackend : public BackendWrapper {
 public:
  enum Gate : int { kLost = 1, kRelease = 2, kHolder = 4 };

  explicit HookedBackend(Backend* target) : BackendWrapper(target) {}

  // Runs once, on the acquiring thread, after the next grant is won and
  // before the coordinator sees it.
  void OnceAfterAcquire(std::function<void()> hook) {
    std::lock_guard<std::mutex> l(mu_);
    after_acquire_ = std::move(hook);
  }
  void Block(int gates) {
    std::lock_guard<std::mutex> l(mu_);
    blocked_ = gates;
  }
  void Unblock() {
    {
      std::lock_guard<std::mutex> l(mu_);
      blocked_ = 0;
    }
    cv_.notify_all();
  }
  void AwaitWaiting(int n) {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [&] { return waiting_ >= n; });
  }
  // Passes a gate (blocking while it is closed).
  void Pass(int gate) {
    std::unique_lock<std::mutex> l(mu_);
    if ((blocked_ & gate) == 0) return;
    ++waiting_;
    cv_.notify_all();
    cv_.wait(l, [&] { return (blocked_ & gate) == 0; });
    --waiting_;
  }

  std::atomic<int> lost_calls{0};
  std::atomic<int> holder_reads{0};

  absl::StatusOr<std::unique_ptr<LeadershipGrant>> Acquire(
      const AcquireOptions& options) override;
  absl::StatusOr<std::optional<LeaseHolder>> CurrentHolder() override {
    ++holder_reads;
    Pass(kHolder);
    return BackendWrapper::CurrentHolder();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::function<void()> after_acquire_;
  int blocked_ = 0;
  int waiting_ = 0;
};

class HookedGrant final : public LeadershipGrant {
 public:
  HookedGrant(HookedBackend* owner, std::unique_ptr<LeadershipGrant> target)
      : owner_(owner), target_(std::move(target)) {}
  FenceToken fence() const override { return target_->fence(); }
  std::string holder() const override { return target_->holder(); }
  absl::Status Renew() override { return target_->Renew(); }
  absl::Status Release() override {
    owner_->Pass(HookedBackend::kRelease);
    return target_->Release();
  }
  absl::Time expiry() const override { return target_->expiry(); }
  bool Lost() override {
    ++owner_->lost_calls;
    owner_->Pass(HookedBackend::kLost);
    return target_->Lost();
  }
  bool WaitLost(absl::Time deadline) override {
    return target_->WaitLost(deadline);
  }

 private:
  HookedBackend* const owner_;
  const std::unique_ptr<LeadershipGrant> target_;
};

absl::StatusOr<std::unique_ptr<LeadershipGrant>> HookedBackend::Acquire(
    const AcquireOptions& options) {
  absl::StatusOr<std::unique_ptr<LeadershipGrant>> grant =
      BackendWrapper::Acquire(options);
  if (!grant.ok()) return grant.status();
  std::function<void()> hook;
  {
    std::lock_guard<std::mutex> l(mu_);
    hook = std::move(after_acquire_);
    after_acquire_ = nullptr;
  }
  if (hook) hook();
  return std::unique_ptr<LeadershipGrant>(
      new HookedGrant(this, *std::move(grant)));
}

// Nodes on one in-memory backend, each through its own HookedBackend.
class HardeningTest : public ::testing::Test {
 protected:
  void SetUp() override {
    InMemoryBackendOptions o;
    o.clock = &clock_;
    shared_ = NewInMemoryBackend(o);
    for (int i = 0; i < 2; ++i) {
      links_[i] = std::make_unique<HookedBackend>(shared_.get());
    }
  }
  void TearDown() override {
    for (auto& link : links_) link->Unblock();
    for (auto& node : nodes_) node.reset();
  }

  HaCoordinator::Options NodeOptions(int i) {
    HaCoordinator::Options o;
    o.backend = links_[i].get();
    o.node_id = "node-" + std::to_string(i);
    o.advertise_address = Address(i);
    o.clock = &clock_;
    o.background_thread = false;
    o.seal_release_wait = absl::ZeroDuration();
    return o;
  }
  static std::string Address(int i) {
    return "10.0.0." + std::to_string(i) + ":8200";
  }

  // Creates node i from `o`; node 0 initializes (1 share... threshold 2).
  void Start(int i, HaCoordinator::Options o) {
    nodes_[i] = *HaCoordinator::Create(std::move(o));
    if (shares_.empty()) shares_ = *nodes_[i]->Initialize(3, 2);
  }
  void Unseal(int i) {
    for (int k = 0; k < 2; ++k) ASSERT_TRUE(nodes_[i]->Unseal(shares_[k]).ok());
  }

  FakeClock clock_;
  std::unique_ptr<Backend> shared_;
  std::unique_ptr<HookedBackend> links_[2];
  std::unique_ptr<HaCoordinator> nodes_[2];
  std::vector<std::string> shares_;
};

// Item 4: a promotion that finds it was sealed (and unsealed again) while
// it waited for the lease releases the grant without holding the
// coordinator's lock, so a release stuck in the backend does not hold up
// StepDown(), Seal() or Route().
TEST_F(HardeningTest, PromotionEarlyReleaseDoesNotHoldTheLock) {
  Start(0, NodeOptions(0));
  Unseal(0);
  HaCoordinator* node = nodes_[0].get();
  links_[0]->OnceAfterAcquire([&] {
    ASSERT_TRUE(node->Seal().ok());
    Unseal(0);
    links_[0]->Block(HookedBackend::kRelease);
  });
  std::thread poller([node] { node->Poll(); });
  links_[0]->AwaitWaiting(1);  // The early release is stuck in the backend.
  // Needs the coordinator's lock exclusively.
  std::atomic<bool> stepped{false};
  std::thread stepper([&] {
    EXPECT_TRUE(node->StepDown().ok());
    stepped = true;
  });
  // Old code: StepDown waits for the reader lock Promote holds across the
  // release, and the release waits for Unblock(), which comes only after
  // StepDown returned: the join below never returns.
  stepper.join();
  EXPECT_TRUE(stepped);
  links_[0]->Unblock();
  poller.join();
  EXPECT_NE(node->state(), HaState::kActive);
}

// Item 2: an Unseal() that reads the seal epoch after Seal() bumped it and
// finishes unsealing the barrier before Seal() wipes it must not leave the
// node a standby with a sealed barrier (HA1, D2), contending for a lease it
// cannot serve under.
TEST_F(HardeningTest, UnsealInsideTheSealGapEndsSealed) {
  Start(0, NodeOptions(0));
  HaCoordinator* node = nodes_[0].get();
  ASSERT_TRUE(node->Unseal(shares_[0]).ok());
  bool ran = false;
  ha_testing::SetSealGapHook([&] {
    if (ran) return;
    ran = true;
    // Seal() has bumped the epoch and released its lock; the barrier still
    // holds the first share.
    absl::StatusOr<SealStatus> s = node->Unseal(shares_[1]);
    ASSERT_TRUE(s.ok()) << s.status();
  });
  ASSERT_TRUE(node->Seal().ok());
  ha_testing::SetSealGapHook(nullptr);
  ASSERT_TRUE(ran);
  EXPECT_TRUE(node->barrier()->sealed());
  EXPECT_EQ(node->state(), HaState::kSealed) << "standby over a sealed barrier";
  node->Poll();
  absl::StatusOr<std::optional<LeaseHolder>> holder =
      shared_->ha()->CurrentHolder();
  ASSERT_TRUE(holder.ok());
  EXPECT_FALSE(holder->has_value()) << "a sealed barrier contended";
}

// Item 2: a promotion that finds it was sealed and unsealed while it
// waited for the lease releases the grant and backs off, rather than
// acquiring again on the next step.
TEST_F(HardeningTest, PromotionEarlyReleaseBacksOff) {
  Start(0, NodeOptions(0));
  Unseal(0);
  HaCoordinator* node = nodes_[0].get();
  links_[0]->OnceAfterAcquire([&] {
    ASSERT_TRUE(node->Seal().ok());
    Unseal(0);
  });
  node->Poll();
  ASSERT_NE(node->state(), HaState::kActive);
  EXPECT_GT(node->NextPollTime(), clock_.Now());
  node->Poll();
  EXPECT_NE(node->state(), HaState::kActive) << "contended without backoff";
  clock_.Advance(absl::Seconds(1));  // Past the backoff (100 ms + jitter).
  node->Poll();
  EXPECT_EQ(node->state(), HaState::kActive);
}

// Item 1: Transit's VerifiedWriteFence() asks the backend at most once per
// verify_interval per grant; a call within it never touches the backend.
TEST_F(HardeningTest, VerifiedWriteFenceReadsTheBackendOncePerInterval) {
  Start(0, NodeOptions(0));
  Unseal(0);
  HaCoordinator* node = nodes_[0].get();
  node->Poll();
  ASSERT_EQ(node->state(), HaState::kActive);
  const FenceToken fence = *node->WriteFence();
  const int before = links_[0]->lost_calls;
  ASSERT_EQ(*node->VerifiedWriteFence(), fence);
  EXPECT_EQ(links_[0]->lost_calls, before + 1);
  for (int i = 0; i < 50; ++i) ASSERT_EQ(*node->VerifiedWriteFence(), fence);
  EXPECT_EQ(links_[0]->lost_calls, before + 1) << "read within the interval";
  clock_.Advance(absl::Milliseconds(10));  // The default interval.
  ASSERT_EQ(*node->VerifiedWriteFence(), fence);
  EXPECT_EQ(links_[0]->lost_calls, before + 2);
}

// 0 verifies on every call (the old behavior).
TEST_F(HardeningTest, VerifyIntervalZeroVerifiesEveryCall) {
  HaCoordinator::Options o = NodeOptions(0);
  o.verify_interval = absl::ZeroDuration();
  Start(0, o);
  Unseal(0);
  nodes_[0]->Poll();
  ASSERT_EQ(nodes_[0]->state(), HaState::kActive);
  const int before = links_[0]->lost_calls;
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(nodes_[0]->VerifiedWriteFence().ok());
  EXPECT_EQ(links_[0]->lost_calls, before + 5);
}

// Item 1: while one caller's Lost() is stuck in the backend (behind a
// renewal's write on LMDB), the others answer from the previous
// verification instead of queueing behind it.
TEST_F(HardeningTest, OnlyOneCallerWaitsForAStuckVerification) {
  Start(0, NodeOptions(0));
  Unseal(0);
  HaCoordinator* node = nodes_[0].get();
  node->Poll();
  ASSERT_EQ(node->state(), HaState::kActive);
  const FenceToken fence = *node->WriteFence();
  ASSERT_EQ(*node->VerifiedWriteFence(), fence);
  clock_.Advance(absl::Milliseconds(10));
  links_[0]->Block(HookedBackend::kLost);
  std::thread stuck([&] { EXPECT_EQ(*node->VerifiedWriteFence(), fence); });
  links_[0]->AwaitWaiting(1);
  const int calls = links_[0]->lost_calls;
  // Old code: this call blocks in Lost() too, until the Unblock() below
  // that it prevents.
  EXPECT_EQ(*node->VerifiedWriteFence(), fence);
  EXPECT_EQ(links_[0]->lost_calls, calls) << "a second caller read";
  links_[0]->Unblock();
  stuck.join();
}

// Item 1: a deposed active learns it from the backend once the interval
// has passed, and steps down without releasing on the request thread.
TEST_F(HardeningTest, DeposedActiveStepsDownAfterTheInterval) {
  Start(0, NodeOptions(0));
  Start(1, NodeOptions(1));
  Unseal(0);
  Unseal(1);
  nodes_[0]->Poll();
  ASSERT_EQ(nodes_[0]->state(), HaState::kActive);
  const FenceToken fence = *nodes_[0]->WriteFence();
  ASSERT_EQ(*nodes_[0]->VerifiedWriteFence(), fence);
  ASSERT_TRUE(shared_->ha()->BreakLease(fence).ok());
  clock_.Advance(absl::Milliseconds(10));
  // The release would wait here on the request thread; it must not.
  links_[0]->Block(HookedBackend::kRelease);
  EXPECT_FALSE(nodes_[0]->VerifiedWriteFence().ok());
  EXPECT_NE(nodes_[0]->state(), HaState::kActive);
  links_[0]->Unblock();
}

// Item 3: a standby's Route() reads the leader from the backend only when
// its cached reading is unknown or route_leader_max_age old.
TEST_F(HardeningTest, StandbyRouteReadsTheLeaderOncePerMaxAge) {
  Start(0, NodeOptions(0));
  HaCoordinator::Options o = NodeOptions(1);
  o.route_leader_max_age = absl::Milliseconds(20);
  Start(1, o);
  Unseal(0);
  Unseal(1);
  nodes_[0]->Poll();
  ASSERT_EQ(nodes_[0]->state(), HaState::kActive);
  const int before = links_[1]->holder_reads;
  for (int i = 0; i < 20; ++i) {
    RouteDecision r = nodes_[1]->Route(OperationKind::kWrite);
    ASSERT_EQ(r.action, RouteDecision::Action::kRedirectToActive);
    ASSERT_EQ(r.leader_address, Address(0));
  }
  EXPECT_EQ(links_[1]->holder_reads, before + 1) << "read on every call";
  clock_.Advance(absl::Milliseconds(20));
  EXPECT_EQ(nodes_[1]->Route(OperationKind::kWrite).leader_address, Address(0));
  EXPECT_EQ(links_[1]->holder_reads, before + 2);
}

// Item 3: while one Route() is stuck reading the leader, the others answer
// from the cache instead of queueing behind it.
TEST_F(HardeningTest, OnlyOneRouteWaitsForAStuckLeaderRead) {
  Start(0, NodeOptions(0));
  Start(1, NodeOptions(1));
  Unseal(0);
  Unseal(1);
  nodes_[0]->Poll();
  ASSERT_EQ(nodes_[1]->Route(OperationKind::kWrite).leader_address, Address(0));
  clock_.Advance(absl::Milliseconds(20));
  links_[1]->Block(HookedBackend::kHolder);
  std::thread stuck([&] {
    EXPECT_EQ(nodes_[1]->Route(OperationKind::kWrite).leader_address,
              Address(0));
  });
  links_[1]->AwaitWaiting(1);
  const int reads = links_[1]->holder_reads;
  // Old code: this call reads too and blocks until the Unblock() below.
  RouteDecision r = nodes_[1]->Route(OperationKind::kWrite);
  EXPECT_EQ(r.action, RouteDecision::Action::kRedirectToActive);
  EXPECT_EQ(r.leader_address, Address(0));
  EXPECT_EQ(links_[1]->holder_reads, reads) << "a second caller read";
  links_[1]->Unblock();
  stuck.join();
}

// Item 5: a forked child that destroys its copy of a SecretStore does not
// touch the parent's barrier, whose listener lock a parent thread may have
// held at fork() (here: a Seal() running the seal listeners).
TEST_F(HardeningTest, ForkedChildDestroysItsSecretStoreWithoutTheBarrier) {
  Start(0, NodeOptions(0));
  HaCoordinator* node = nodes_[0].get();
  SecretStore::Options so;
  so.coordinator = node;
  so.clock = &clock_;
  std::unique_ptr<SecretStore> store = *SecretStore::Create(so);
  std::mutex mu;
  std::condition_variable cv;
  bool entered = false;
  bool release = false;
  const int listener = node->barrier()->AddSealListener([&] {
    std::unique_lock<std::mutex> l(mu);
    entered = true;
    cv.notify_all();
    cv.wait(l, [&] { return release; });
  });
  std::thread sealer([node] { EXPECT_TRUE(node->Seal().ok()); });
  {
    std::unique_lock<std::mutex> l(mu);
    cv.wait(l, [&] { return entered; });  // The listener lock is held.
  }
  fflush(nullptr);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // Calls fail closed (old code: a null barrier dereferenced), through
    // the typed API and through Handle().
    int bad = 0;
    store::Request get;
    get.mutable_kv_get()->set_path("s");
    for (absl::Status s :
         {store->KvGet("s").status(), store->KvPut("s", {{"v", "1"}}).status(),
          store->TransitEncrypt("k", "x").status(),
          ResponseStatus(store->Handle(get))}) {
      if (s.code() != absl::StatusCode::kFailedPrecondition) bad |= 4;
    }
    store.reset();  // Old code: waits forever for the listener lock.
    if (node->barrier() != nullptr) bad |= 1;
    if (SecretStore::Create(so).status().code() !=
        absl::StatusCode::kFailedPrecondition) {
      bad |= 2;
    }
    _exit(bad);
  }
  // A hang check, not a timing assertion: the child needs no time at all.
  int status = 0;
  pid_t done = 0;
  for (int i = 0; i < 10000 && done == 0; ++i) {
    done = waitpid(pid, &status, WNOHANG);
    if (done == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (done == 0) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
  }
  EXPECT_EQ(done, pid) << "the child hung destroying its SecretStore";
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  {
    std::lock_guard<std::mutex> l(mu);
    release = true;
  }
  cv.notify_all();
  sealer.join();
  node->barrier()->RemoveSealListener(listener);
}

}  // namespace
}  // namespace strongbox
