// The coordinator carries a backend's blocked-takeover reports (a takeover
// waiting on a holder hung inside an LMDB write, and its kill) to its
// observers and its status, through the backend-neutral HaBackend hook; a
// backend without that failure mode reports nothing. The real LMDB case
// (a holder process stopped inside a write) is in tests/lmdb.
#include <algorithm>
#include <memory>
#include <string>
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
  EXPECT_EQ(recorder.log().size(), 1u);
  ASSERT_TRUE((*wrapped)->Status().takeover_waiting.has_value());
  (*wrapped)->RemoveObserver(&recorder);
  wrapped->reset();
  EXPECT_EQ(reporting.observer_count(), 0u);
}

}  // namespace
}  // namespace strongbox
