// The coordinator carries a backend's blocked-takeover reports (a takeover
// waiting on a holder hung inside an LMDB write, and its kill) to its
// observers and its status, through the backend-neutral HaBackend hook; a
// backend without that failure mode reports nothing. The real LMDB case
// (a holder process stopped inside a write) is in tests/lmdb.
#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "lib/util/mutex.h"
#include "strongbox/backend.h"
#include "strongbox/ha_coordinator.h"
#include "strongbox/in_memory_backend.h"

namespace strongbox {
namespace {

// An in-memory backend that reports blocked takeovers when told to.
class ReportingBackend : public BackendWrapper {
 public:
  using BackendWrapper::BackendWrapper;

  void AddBlockedTakeoverObserver(BlockedTakeoverObserver* observer) override {
    MutexLock lock(&mu_);
    observers_.push_back(observer);
  }
  void RemoveBlockedTakeoverObserver(
      BlockedTakeoverObserver* observer) override {
    MutexLock lock(&mu_);
    observers_.erase(
        std::remove(observers_.begin(), observers_.end(), observer),
        observers_.end());
  }
  BlockedTakeoverStatus blocked_takeover_status() override {
    MutexLock lock(&mu_);
    return status_;
  }

  // Reports `event` as a backend would, and updates the status with it.
  void Report(const BlockedTakeoverEvent& event) {
    std::vector<BlockedTakeoverObserver*> observers;
    {
      MutexLock lock(&mu_);
      if (event.kind == BlockedTakeoverEvent::Kind::kHolderKilled) {
        status_.waiting.reset();
        status_.last_kill = event;
        ++status_.kills;
      } else {
        status_.waiting = event;
      }
      observers = observers_;
    }
    for (BlockedTakeoverObserver* o : observers) o->OnBlockedTakeover(event);
  }

  size_t observer_count() {
    MutexLock lock(&mu_);
    return observers_.size();
  }

 private:
  Mutex mu_;
  std::vector<BlockedTakeoverObserver*> observers_ ABSL_GUARDED_BY(mu_);
  BlockedTakeoverStatus status_ ABSL_GUARDED_BY(mu_);
};

class Recorder : public HaObserver {
 public:
  void OnStateChange(const StateChange& change) override {
    MutexLock lock(&mu_);
    log_.push_back(absl::StrCat("state ", HaStateName(change.to)));
  }
  void OnBlockedTakeover(const BlockedTakeoverEvent& event) override {
    MutexLock lock(&mu_);
    log_.push_back(absl::StrCat(BlockedTakeoverKindName(event.kind), " pid ",
                                event.pid, " fence ", event.fence, " ",
                                event.holder, ": ", event.reason));
  }
  std::vector<std::string> log() {
    MutexLock lock(&mu_);
    return log_;
  }

 private:
  Mutex mu_;
  std::vector<std::string> log_ ABSL_GUARDED_BY(mu_);
};

HaCoordinator::Options NodeOptions(Backend* backend) {
  HaCoordinator::Options o;
  o.backend = backend;
  o.node_id = "n1";
  o.advertise_address = "n1:8200";
  o.background_thread = false;
  return o;
}

BlockedTakeoverEvent Waiting() {
  BlockedTakeoverEvent e;
  e.kind = BlockedTakeoverEvent::Kind::kWaiting;
  e.fence = 7;
  e.holder = "n0:8200";
  e.pid = 4242;
  e.expired_for = absl::Milliseconds(600);
  e.reason = "holder pid 4242 blocks the writer lock; kill_hung_holder is off";
  return e;
}

TEST(BlockedTakeoverTest, ObserversAndStatusCarryTheBackendsReports) {
  std::unique_ptr<Backend> memory = NewInMemoryBackend();
  ReportingBackend backend(memory.get());
  auto coordinator = HaCoordinator::Create(NodeOptions(&backend));
  ASSERT_TRUE(coordinator.ok()) << coordinator.status();
  EXPECT_EQ(backend.observer_count(), 1u);
  Recorder recorder;
  (*coordinator)->AddObserver(&recorder);

  HaStatus s = (*coordinator)->Status();
  EXPECT_FALSE(s.takeover_waiting.has_value());
  EXPECT_FALSE(s.last_holder_killed.has_value());
  EXPECT_EQ(s.holders_killed, 0u);

  backend.Report(Waiting());
  // The backend's thread only queued the event; the status shows it now,
  // observers hear of it from the next Poll().
  EXPECT_TRUE(recorder.log().empty());
  s = (*coordinator)->Status();
  ASSERT_TRUE(s.takeover_waiting.has_value());
  EXPECT_EQ(s.takeover_waiting->pid, 4242u);
  EXPECT_EQ(s.takeover_waiting->fence, 7u);
  EXPECT_EQ(s.takeover_waiting->holder, "n0:8200");
  EXPECT_EQ(s.takeover_waiting->expired_for, absl::Milliseconds(600));
  EXPECT_EQ(s.holders_killed, 0u);

  BlockedTakeoverEvent killed = Waiting();
  killed.kind = BlockedTakeoverEvent::Kind::kHolderKilled;
  killed.reason = "identity proven; sent SIGKILL";
  backend.Report(killed);
  (*coordinator)->Poll();
  s = (*coordinator)->Status();
  EXPECT_FALSE(s.takeover_waiting.has_value());
  ASSERT_TRUE(s.last_holder_killed.has_value());
  EXPECT_EQ(s.last_holder_killed->pid, 4242u);
  EXPECT_EQ(s.holders_killed, 1u);

  EXPECT_EQ(recorder.log(),
            (std::vector<std::string>{
                "waiting pid 4242 fence 7 n0:8200: holder pid 4242 blocks the "
                "writer lock; kill_hung_holder is off",
                "holder_killed pid 4242 fence 7 n0:8200: identity proven; "
                "sent SIGKILL"}));
  (*coordinator)->RemoveObserver(&recorder);

  // Destroyed, the coordinator is no longer the backend's observer.
  coordinator->reset();
  EXPECT_EQ(backend.observer_count(), 0u);
  backend.Report(Waiting());  // reaches no one
}

// Takeover events are delivered in order with the state changes.
TEST(BlockedTakeoverTest, DeliveredInOrderWithStateChanges) {
  std::unique_ptr<Backend> memory = NewInMemoryBackend();
  ReportingBackend backend(memory.get());
  auto coordinator = HaCoordinator::Create(NodeOptions(&backend));
  ASSERT_TRUE(coordinator.ok()) << coordinator.status();
  Recorder recorder;
  (*coordinator)->AddObserver(&recorder);
  auto shares = (*coordinator)->Initialize(1, 1);
  ASSERT_TRUE(shares.ok()) << shares.status();
  backend.Report(Waiting());
  ASSERT_TRUE((*coordinator)->Unseal((*shares)[0]).ok());
  const std::vector<std::string> log = recorder.log();
  ASSERT_EQ(log.size(), 3u);
  EXPECT_EQ(log[0], "state sealed");
  EXPECT_EQ(log[1].rfind("waiting pid 4242", 0), 0u) << log[1];
  EXPECT_EQ(log[2], "state standby");
  (*coordinator)->RemoveObserver(&recorder);
}

// Like LmdbBackend's grant attempt: while the first Acquire waits, a
// watchdog thread of the backend's reports the wait, and Acquire joins that
// thread before it goes on. Records how long the report (the observers'
// Notify) took on the watchdog thread.
class WatchdogBackend : public ReportingBackend {
 public:
  using ReportingBackend::ReportingBackend;

  absl::StatusOr<std::unique_ptr<LeadershipGrant>> Acquire(
      const AcquireOptions& options) override {
    bool first;
    {
      MutexLock lock(&wd_mu_);
      first = !started_;
      started_ = true;
    }
    if (first) {
      std::thread watchdog([this] {
        {
          MutexLock lock(&wd_mu_);
          watchdog_thread_ = std::this_thread::get_id();
        }
        const absl::Time start = absl::Now();
        Report(Waiting());
        MutexLock lock(&wd_mu_);
        report_took_ = absl::Now() - start;
        reported_ = true;
        wd_mu_.SignalAll();
      });
      watchdog.join();
    }
    return ReportingBackend::Acquire(options);
  }

  // Whether the watchdog's report returned within `timeout`.
  bool AwaitReported(absl::Duration timeout) {
    MutexLock lock(&wd_mu_);
    return wd_mu_.AwaitWithTimeout(
        [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(wd_mu_) { return reported_; },
        timeout);
  }
  absl::Duration report_took() {
    MutexLock lock(&wd_mu_);
    return report_took_;
  }
  std::thread::id watchdog_thread() {
    MutexLock lock(&wd_mu_);
    return watchdog_thread_;
  }

 private:
  Mutex wd_mu_;
  bool started_ ABSL_GUARDED_BY(wd_mu_) = false;
  bool reported_ ABSL_GUARDED_BY(wd_mu_) = false;
  absl::Duration report_took_ ABSL_GUARDED_BY(wd_mu_);
  std::thread::id watchdog_thread_ ABSL_GUARDED_BY(wd_mu_);
};

// Records events; OnBlockedTakeover blocks until Release().
class BlockingObserver : public HaObserver {
 public:
  void OnStateChange(const StateChange& change) override {
    MutexLock lock(&mu_);
    log_.push_back(absl::StrCat("state ", HaStateName(change.to)));
    mu_.SignalAll();
  }
  void OnBlockedTakeover(const BlockedTakeoverEvent& event) override {
    MutexLock lock(&mu_);
    log_.push_back(std::string(BlockedTakeoverKindName(event.kind)));
    thread_ = std::this_thread::get_id();
    entered_ = true;
    mu_.SignalAll();
    mu_.Await([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return released_; });
  }

  bool AwaitEntered(absl::Duration timeout) {
    MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(
        [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return entered_; }, timeout);
  }
  bool AwaitLogSize(size_t n, absl::Duration timeout) {
    MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(
        [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return log_.size() >= n; },
        timeout);
  }
  void Release() {
    {
      MutexLock lock(&mu_);
      released_ = true;
    }
    mu_.SignalAll();
  }
  bool released() {
    MutexLock lock(&mu_);
    return released_;
  }
  std::thread::id thread() {
    MutexLock lock(&mu_);
    return thread_;
  }
  std::vector<std::string> log() {
    MutexLock lock(&mu_);
    return log_;
  }

 private:
  Mutex mu_;
  std::vector<std::string> log_ ABSL_GUARDED_BY(mu_);
  bool entered_ ABSL_GUARDED_BY(mu_) = false;
  bool released_ ABSL_GUARDED_BY(mu_) = false;
  std::thread::id thread_ ABSL_GUARDED_BY(mu_);
};

// Releases the observer on every way out of a test, before the coordinator
// (declared before this) is destroyed.
struct ReleaseOnExit {
  BlockingObserver* observer;
  ~ReleaseOnExit() { observer->Release(); }
};

// Review M2: an observer that blocks in OnBlockedTakeover blocks neither the
// backend's reporting thread (the takeover joins it) nor the promotion; it
// runs on a thread of the coordinator's, and its event still comes in order
// with the state changes.
TEST(BlockedTakeoverTest,
     BlockingObserverStallsNeitherTheBackendNorTheTakeover) {
  std::unique_ptr<Backend> memory = NewInMemoryBackend();
  WatchdogBackend backend(memory.get());
  BlockingObserver observer;
  HaCoordinator::Options options = NodeOptions(&backend);
  options.background_thread = true;
  auto coordinator = HaCoordinator::Create(options);
  ASSERT_TRUE(coordinator.ok()) << coordinator.status();
  ReleaseOnExit release{&observer};
  (*coordinator)->AddObserver(&observer);
  auto shares = (*coordinator)->Initialize(1, 1);
  ASSERT_TRUE(shares.ok()) << shares.status();
  ASSERT_TRUE((*coordinator)->Unseal((*shares)[0]).ok());

  // The report reaches the observer while the takeover is under way...
  ASSERT_TRUE(observer.AwaitEntered(absl::Seconds(10)))
      << "the waiting event was not delivered";
  // ...and the backend's thread is not the one it blocks.
  ASSERT_TRUE(backend.AwaitReported(absl::Seconds(5)))
      << "the backend's report waits for the observer";
  EXPECT_LT(backend.report_took(), absl::Seconds(1));
  EXPECT_NE(observer.thread(), backend.watchdog_thread());
  EXPECT_NE(observer.thread(), std::this_thread::get_id());
  // The takeover goes on and the node is promoted while the observer still
  // blocks.
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while ((*coordinator)->state() != HaState::kActive) {
    ASSERT_LT(absl::Now(), deadline) << "the promotion waits for the observer";
    absl::SleepFor(absl::Milliseconds(2));
  }
  EXPECT_FALSE(observer.released());
  EXPECT_EQ(observer.log(), (std::vector<std::string>{
                                "state sealed", "state standby", "waiting"}));
  // Released, the observer hears the rest, in order.
  observer.Release();
  ASSERT_TRUE(observer.AwaitLogSize(4, absl::Seconds(10)));
  EXPECT_EQ(observer.log(),
            (std::vector<std::string>{"state sealed", "state standby",
                                      "waiting", "state active"}));
  (*coordinator)->RemoveObserver(&observer);
}

// An observer may wait in OnBlockedTakeover for something the loop does
// (here, the promotion that follows the takeover) without deadlocking the
// node: the loop never waits for an observer.
class AwaitsPromotion : public HaObserver {
 public:
  void OnStateChange(const StateChange&) override {}
  void OnBlockedTakeover(const BlockedTakeoverEvent&) override {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (node.load()->state() != HaState::kActive) {
      if (absl::Now() >= deadline) return;
      absl::SleepFor(absl::Milliseconds(2));
    }
    saw_active = true;
  }
  std::atomic<HaCoordinator*> node{nullptr};
  std::atomic<bool> saw_active{false};
};

TEST(BlockedTakeoverTest, ObserverWaitingForThePromotionDoesNotDeadlock) {
  std::unique_ptr<Backend> memory = NewInMemoryBackend();
  WatchdogBackend backend(memory.get());
  AwaitsPromotion observer;
  HaCoordinator::Options options = NodeOptions(&backend);
  options.background_thread = true;
  auto coordinator = HaCoordinator::Create(options);
  ASSERT_TRUE(coordinator.ok()) << coordinator.status();
  observer.node = coordinator->get();
  (*coordinator)->AddObserver(&observer);
  auto shares = (*coordinator)->Initialize(1, 1);
  ASSERT_TRUE(shares.ok()) << shares.status();
  ASSERT_TRUE((*coordinator)->Unseal((*shares)[0]).ok());
  ASSERT_TRUE(backend.AwaitReported(absl::Seconds(15)));
  const absl::Time deadline = absl::Now() + absl::Seconds(15);
  while (!observer.saw_active.load()) {
    ASSERT_LT(absl::Now(), deadline)
        << "the observer never saw the promotion it waited for";
    absl::SleepFor(absl::Milliseconds(2));
  }
  EXPECT_EQ((*coordinator)->state(), HaState::kActive);
  (*coordinator)->RemoveObserver(&observer);
}

// A backend without the failure mode (the defaults) reports nothing, and a
// BackendWrapper forwards the hook to its target.
TEST(BlockedTakeoverTest, DefaultsReportNothingAndWrappersForward) {
  std::unique_ptr<Backend> memory = NewInMemoryBackend();
  auto plain = HaCoordinator::Create(NodeOptions(memory.get()));
  ASSERT_TRUE(plain.ok()) << plain.status();
  HaStatus s = (*plain)->Status();
  EXPECT_FALSE(s.takeover_waiting.has_value());
  EXPECT_EQ(s.holders_killed, 0u);

  ReportingBackend reporting(memory.get());
  BackendWrapper wrapper(&reporting);
  auto wrapped = HaCoordinator::Create(NodeOptions(&wrapper));
  ASSERT_TRUE(wrapped.ok()) << wrapped.status();
  EXPECT_EQ(reporting.observer_count(), 1u);
  Recorder recorder;
  (*wrapped)->AddObserver(&recorder);
  reporting.Report(Waiting());
  (*wrapped)->Poll();
  EXPECT_EQ(recorder.log().size(), 1u);
  ASSERT_TRUE((*wrapped)->Status().takeover_waiting.has_value());
  (*wrapped)->RemoveObserver(&recorder);
  wrapped->reset();
  EXPECT_EQ(reporting.observer_count(), 0u);
}

}  // namespace
}  // namespace strongbox
