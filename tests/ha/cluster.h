// A test cluster: N HaCoordinators sharing one backend (in memory, or an
// LMDB directory that each node opens for itself, as separate processes
// would), each through its own FaultInjectingBackend link, on one
// FakeClock, driven by Poll() (no threads, no sleeps). Not thread-safe; one
// test thread drives it.
#ifndef STRONGBOX_TESTS_HA_CLUSTER_H_
#define STRONGBOX_TESTS_HA_CLUSTER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "strongbox/ha_coordinator.h"
#include "strongbox/in_memory_backend.h"
#include "strongbox/lmdb_backend.h"
#include "strongbox/testing/fake_clock.h"
#include "strongbox/testing/fault_injecting_backend.h"

namespace strongbox::testing_cluster {

// Records every state change a node reports.
class RecordingObserver : public HaObserver {
 public:
  void OnStateChange(const StateChange& change) override {
    changes.push_back(change);
  }
  std::vector<StateChange> changes;
};

struct ClusterOptions {
  int nodes = 3;
  StandbyMode mode = StandbyMode::kStandby;
  absl::Duration lease_ttl = absl::Seconds(5);
  absl::Duration renew_interval = absl::Seconds(1);
  absl::Duration step_down_pause = absl::Seconds(1);
  absl::Duration seal_release_wait = absl::Seconds(1);
  uint64_t seed = 1;
  // Non-empty: the nodes share an LMDB store in this directory (unsynced
  // commits, for speed), each through a backend of its own.
  std::string lmdb_dir;
  // Auto-unseal (HaCoordinator::Options::key_wrapper) for every node.
  KeyWrapper* key_wrapper = nullptr;
};

class Cluster {
 public:
  explicit Cluster(ClusterOptions options = {}) : options_(options) {
    if (options.lmdb_dir.empty()) {
      InMemoryBackendOptions backend_options;
      backend_options.clock = &clock;
      shared = NewInMemoryBackend(backend_options);
    } else {
      shared = OpenLmdb();
    }
    for (int i = 0; i < options.nodes; ++i) {
      Backend* target = shared.get();
      if (!options.lmdb_dir.empty()) {
        own_backends.push_back(OpenLmdb());
        target = own_backends.back().get();
      }
      links.push_back(std::make_unique<FaultInjectingBackend>(
          target, &clock, options.seed + i));
      observers.push_back(std::make_unique<RecordingObserver>());
      nodes.emplace_back();
      Restart(i);
    }
  }

  ~Cluster() {
    for (auto& node : nodes) node.reset();
    links.clear();
    own_backends.clear();
  }

  std::unique_ptr<Backend> OpenLmdb() {
    LmdbBackendOptions o;
    o.clock = &clock;
    o.durability = LmdbBackendOptions::Durability::kNoSync;
    o.initial_map_bytes = size_t{8} << 20;
    absl::StatusOr<std::unique_ptr<LmdbBackend>> b =
        LmdbBackend::Open(options_.lmdb_dir, o);
    EXPECT_TRUE(b.ok()) << b.status();
    return b.ok() ? std::unique_ptr<Backend>(std::move(*b)) : nullptr;
  }

  HaCoordinator::Options NodeOptions(int i) {
    HaCoordinator::Options o;
    o.backend = links[i].get();
    o.node_id = absl::StrCat("node-", i);
    o.advertise_address = Address(i);
    o.standby_mode = options_.mode;
    o.lease_ttl = options_.lease_ttl;
    o.renew_interval = options_.renew_interval;
    o.retry_backoff = absl::Milliseconds(100);
    o.retry_backoff_max = absl::Seconds(1);
    o.step_down_pause = options_.step_down_pause;
    o.seal_release_wait = options_.seal_release_wait;
    o.leader_refresh = absl::Milliseconds(500);
    o.clock = &clock;
    o.background_thread = false;
    o.seed = options_.seed * 31 + i;
    o.key_wrapper = options_.key_wrapper;
    return o;
  }

  static std::string Address(int i) {
    return absl::StrCat("10.0.0.", i, ":8200");
  }

  // Replaces node i with a fresh coordinator (a process restart; the old
  // one is destroyed cleanly).
  void Restart(int i) {
    nodes[i].reset();
    absl::StatusOr<std::unique_ptr<HaCoordinator>> node =
        HaCoordinator::Create(NodeOptions(i));
    EXPECT_TRUE(node.ok()) << node.status();
    nodes[i] = *std::move(node);
    nodes[i]->AddObserver(observers[i].get());
  }

  // Initializes through node 0 (5 shares, threshold 3).
  void Initialize(int shares = 5, int threshold = 3) {
    absl::StatusOr<std::vector<std::string>> s =
        nodes[0]->Initialize(shares, threshold);
    ASSERT_TRUE(s.ok()) << s.status();
    this->shares = *s;
    this->threshold = threshold;
  }

  void Unseal(int i) {
    for (int k = 0; k < threshold; ++k) {
      absl::StatusOr<SealStatus> st = nodes[i]->Unseal(shares[k]);
      ASSERT_TRUE(st.ok()) << st.status();
    }
    ASSERT_FALSE(nodes[i]->barrier()->sealed());
  }

  void UnsealAll() {
    for (size_t i = 0; i < nodes.size(); ++i) Unseal(static_cast<int>(i));
  }

  // Polls every node not in `frozen` once.
  void PollAll() {
    for (size_t i = 0; i < nodes.size(); ++i) {
      if (!frozen(static_cast<int>(i))) nodes[i]->Poll();
    }
  }

  // Moves time forward `total`, in `step`s, polling after each.
  void Run(absl::Duration total,
           absl::Duration step = absl::Milliseconds(100)) {
    PollAll();
    for (absl::Duration t; t < total; t += step) {
      clock.Advance(step);
      PollAll();
    }
  }

  bool frozen(int i) const {
    return std::find(frozen_nodes.begin(), frozen_nodes.end(), i) !=
           frozen_nodes.end();
  }
  void Freeze(int i) { frozen_nodes.push_back(i); }
  void Thaw(int i) {
    frozen_nodes.erase(std::remove(frozen_nodes.begin(), frozen_nodes.end(), i),
                       frozen_nodes.end());
  }

  // Nodes that report kActive.
  std::vector<int> Actives() {
    std::vector<int> out;
    for (size_t i = 0; i < nodes.size(); ++i) {
      if (nodes[i]->state() == HaState::kActive)
        out.push_back(static_cast<int>(i));
    }
    return out;
  }

  // Nodes whose WriteFence() is the backend's current grant: the ones that
  // could actually write. Never more than one.
  std::vector<int> WritableActives() {
    std::vector<int> out;
    absl::StatusOr<std::optional<LeaseHolder>> holder =
        shared->ha()->CurrentHolder();
    for (size_t i = 0; i < nodes.size(); ++i) {
      absl::StatusOr<FenceToken> fence = nodes[i]->WriteFence();
      if (fence.ok() && holder.ok() && holder->has_value() &&
          (*holder)->fence == *fence) {
        out.push_back(static_cast<int>(i));
      }
    }
    return out;
  }

  // The single active node; fails the test if there is not exactly one.
  int Active() {
    std::vector<int> a = Actives();
    EXPECT_EQ(a.size(), 1u);
    return a.empty() ? -1 : a[0];
  }

  FakeClock clock;
  std::unique_ptr<Backend> shared;
  // LMDB only: each node's own backend on the shared directory.
  std::vector<std::unique_ptr<Backend>> own_backends;
  std::vector<std::unique_ptr<FaultInjectingBackend>> links;
  std::vector<std::unique_ptr<RecordingObserver>> observers;
  std::vector<std::unique_ptr<HaCoordinator>> nodes;
  std::vector<std::string> shares;
  int threshold = 0;
  std::vector<int> frozen_nodes;

 private:
  ClusterOptions options_;
};

}  // namespace strongbox::testing_cluster

#endif  // STRONGBOX_TESTS_HA_CLUSTER_H_
