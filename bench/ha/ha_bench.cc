// HaCoordinator benchmarks.
//
// Route(): the per-request cost of asking "where does this run?", beside a
// floor measured in the same run: one clock read plus one uncontended
// reader lock, which is what any answer that reads shared state costs.
//
// Failover (real clock, in-memory backend, three nodes with their own
// background threads): the time from StepDown()/Seal() returning on the
// active to another node reporting kActive (it has reloaded the keyring and
// serves), and the time from a hung active's lease expiry to a standby
// being active. Reported as counters (median, p90, max in ms).
#include <algorithm>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "benchmark/benchmark.h"
#include "lib/util/mutex.h"
#include "strongbox/ha_coordinator.h"
#include "strongbox/in_memory_backend.h"
#include "strongbox/testing/fault_injecting_backend.h"

namespace strongbox {
namespace {

struct Node {
  std::unique_ptr<FaultInjectingBackend> link;
  std::unique_ptr<HaCoordinator> coordinator;
};

class BenchCluster {
 public:
  BenchCluster(int n, StandbyMode mode, absl::Duration ttl,
               absl::Duration renew) {
    backend_ = NewInMemoryBackend();
    for (int i = 0; i < n; ++i) {
      Node node;
      node.link = std::make_unique<FaultInjectingBackend>(backend_.get());
      HaCoordinator::Options o;
      o.backend = node.link.get();
      o.node_id = absl::StrCat("bench-", i);
      o.advertise_address = absl::StrCat("10.1.0.", i, ":8200");
      o.standby_mode = mode;
      o.lease_ttl = ttl;
      o.renew_interval = renew;
      o.step_down_pause = absl::Milliseconds(20);
      o.leader_refresh = absl::Milliseconds(50);
      o.retry_backoff = absl::Milliseconds(5);
      node.coordinator = *HaCoordinator::Create(o);
      nodes_.push_back(std::move(node));
    }
    shares_ = *nodes_[0].coordinator->Initialize(1, 1);
    for (Node& node : nodes_) (void)node.coordinator->Unseal(shares_[0]);
  }

  ~BenchCluster() {
    for (Node& node : nodes_) node.link->Unblock();
    nodes_.clear();
  }

  // Spins until a node other than `not_this` is active; returns it.
  int WaitForActive(int not_this) {
    const absl::Time give_up = absl::Now() + absl::Seconds(10);
    while (absl::Now() < give_up) {
      for (size_t i = 0; i < nodes_.size(); ++i) {
        if (static_cast<int>(i) != not_this &&
            nodes_[i].coordinator->state() == HaState::kActive &&
            nodes_[i].coordinator->WriteFence().ok()) {
          return static_cast<int>(i);
        }
      }
      std::this_thread::yield();
    }
    return -1;
  }

  HaCoordinator* node(int i) { return nodes_[i].coordinator.get(); }
  FaultInjectingBackend* link(int i) { return nodes_[i].link.get(); }
  Backend* backend() { return backend_.get(); }
  const std::string& share() const { return shares_[0]; }

 private:
  std::unique_ptr<Backend> backend_;
  std::vector<Node> nodes_;
  std::vector<std::string> shares_;
};

void ReportMs(benchmark::State& state, std::vector<double> ms) {
  if (ms.empty()) {
    state.SkipWithError("no failover completed");
    return;
  }
  std::sort(ms.begin(), ms.end());
  state.counters["median_ms"] = ms[ms.size() / 2];
  state.counters["p90_ms"] = ms[ms.size() * 9 / 10];
  state.counters["max_ms"] = ms.back();
  state.counters["runs"] = static_cast<double>(ms.size());
}

double MsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(
             std::chrono::steady_clock::now() - start)
      .count();
}

// ---------------------------------------------------------------- Route

void BM_Floor_ClockReadAndReaderLock(benchmark::State& state) {
  SharedMutex mu;
  int shared_value = 1;
  for (auto _ : state) {
    absl::Time now = RealClock()->Now();
    ReaderLock lock(&mu);
    benchmark::DoNotOptimize(now);
    benchmark::DoNotOptimize(shared_value);
  }
}
BENCHMARK(BM_Floor_ClockReadAndReaderLock);

void BM_Route(benchmark::State& state) {
  const bool on_active = state.range(0) == 1;
  BenchCluster cluster(2, StandbyMode::kPerfStandby, absl::Seconds(10),
                       absl::Seconds(2));
  const int active = cluster.WaitForActive(-1);
  // Wait until the standby knows the leader.
  const int standby = 1 - active;
  while (cluster.node(standby)->Route(OperationKind::kWrite).action !=
         RouteDecision::Action::kForwardToActive) {
    std::this_thread::yield();
  }
  HaCoordinator* node = cluster.node(on_active ? active : standby);
  const OperationKind kind =
      on_active ? OperationKind::kWrite : OperationKind::kRead;
  for (auto _ : state) {
    RouteDecision d = node->Route(kind);
    benchmark::DoNotOptimize(d);
  }
  state.SetLabel(on_active ? "active, write" : "perf standby, read");
}
BENCHMARK(BM_Route)->Arg(1)->Arg(0);

// ------------------------------------------------------------- failover

// Arg 0: StepDown(); arg 1: Seal() (then unseal the old active again).
void BM_Failover_Handover(benchmark::State& state) {
  const bool seal = state.range(0) == 1;
  BenchCluster cluster(3, StandbyMode::kPerfStandby, absl::Seconds(5),
                       absl::Seconds(1));
  std::vector<double> ms;
  std::vector<double> from_call_ms;
  int active = cluster.WaitForActive(-1);
  for (auto _ : state) {
    for (int round = 0; round < 40 && active >= 0; ++round) {
      // Let every earlier step-down pause run out, so the measurement is
      // the handover and not a pause.
      absl::SleepFor(absl::Milliseconds(40));
      HaCoordinator* old = cluster.node(active);
      const auto called = std::chrono::steady_clock::now();
      if (seal) {
        (void)old->Seal();
      } else {
        (void)old->StepDown();
      }
      const auto returned = std::chrono::steady_clock::now();
      const int next = cluster.WaitForActive(active);
      if (next < 0) break;
      ms.push_back(MsSince(returned));
      from_call_ms.push_back(MsSince(called));
      if (seal) (void)old->Unseal(cluster.share());
      active = next;
    }
  }
  state.SetLabel(seal ? "seal returned -> standby active"
                      : "step-down returned -> standby active");
  ReportMs(state, ms);
  std::sort(from_call_ms.begin(), from_call_ms.end());
  if (!from_call_ms.empty()) {
    state.counters["from_call_median_ms"] =
        from_call_ms[from_call_ms.size() / 2];
    state.counters["from_call_max_ms"] = from_call_ms.back();
  }
}
BENCHMARK(BM_Failover_Handover)->Arg(0)->Arg(1)->Iterations(1)->UseRealTime();

// A hung active: its backend calls block (alive, not renewing). Measures
// lease expiry -> standby active, and hang start -> standby active.
void BM_Failover_HungActive(benchmark::State& state) {
  const absl::Duration ttl = absl::Milliseconds(state.range(0));
  const absl::Duration renew = ttl / 4;
  BenchCluster cluster(3, StandbyMode::kStandby, ttl, renew);
  std::vector<double> after_expiry_ms;
  std::vector<double> total_ms;
  int active = cluster.WaitForActive(-1);
  for (auto _ : state) {
    for (int round = 0; round < 10 && active >= 0; ++round) {
      auto holder = cluster.backend()->ha()->CurrentHolder();
      cluster.link(active)->Block(FaultInjectingBackend::kAll);
      const auto hung = std::chrono::steady_clock::now();
      // The lease lapses at the expiry of the last renewal the backend saw.
      holder = cluster.backend()->ha()->CurrentHolder();
      const absl::Time expiry =
          holder.ok() && holder->has_value() ? (*holder)->expiry : absl::Now();
      const int next = cluster.WaitForActive(active);
      if (next < 0) break;
      const absl::Time took_over = absl::Now();
      after_expiry_ms.push_back(absl::ToDoubleMilliseconds(took_over - expiry));
      total_ms.push_back(MsSince(hung));
      cluster.link(active)->Unblock();
      active = next;
    }
  }
  ReportMs(state, after_expiry_ms);
  std::sort(total_ms.begin(), total_ms.end());
  if (!total_ms.empty()) {
    state.counters["hang_to_active_median_ms"] = total_ms[total_ms.size() / 2];
  }
  state.counters["ttl_ms"] = absl::ToDoubleMilliseconds(ttl);
  state.counters["renew_ms"] = absl::ToDoubleMilliseconds(renew);
  state.SetLabel("lease expiry -> standby active");
}
BENCHMARK(BM_Failover_HungActive)->Arg(200)->Iterations(1)->UseRealTime();

}  // namespace
}  // namespace strongbox

BENCHMARK_MAIN();
