// Randomized schedules of crashes, pauses, seals, step-downs, backend faults
// and writes over a three-node cluster on a fake clock. After every step:
//   - never two nodes may write (active with the backend's current fence);
//   - a write the backend applied carried the current fence, and a write
//     carrying the current fence was applied;
//   - every acknowledged write is readable (checked every few steps and at
//     the end).
// Failures print the seed; rerun one with STRONGBOX_SCHEDULE_SEED=<seed>.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "lib/store/kv_records.pb.h"
#include "strongbox/barrier.h"
#include "strongbox/secret_store.h"
#include "tests/ha/cluster.h"

namespace strongbox {
namespace {

using ::strongbox::testing_cluster::Cluster;
using ::strongbox::testing_cluster::ClusterOptions;

constexpr int kSchedules = 200;
// The same schedules on the LMDB backend (each node its own backend on one
// directory): slower per step, so fewer of them.
constexpr int kLmdbSchedules = 60;
constexpr int kStepsPerSchedule = 250;

// Moves request bytes to the named node's store, as a host's transport would.
class Transport : public Forwarder {
 public:
  absl::StatusOr<std::string> Forward(absl::string_view leader,
                                      absl::string_view request) override {
    for (size_t i = 0; i < addresses.size(); ++i) {
      if (addresses[i] == leader && stores[i] != nullptr) {
        return stores[i]->HandleSerialized(request);
      }
    }
    return absl::UnavailableError("no route to the leader");
  }
  std::vector<std::string> addresses;
  std::vector<SecretStore*> stores;
};

struct Stats {
  int acknowledged = 0;   // writes applied and acknowledged
  int fenced_out = 0;     // writes refused for a stale fence
  int leaders = 0;        // distinct grants seen writing
  int store_writes = 0;   // KvPut acknowledged through SecretStore
  int store_refused = 0;  // KvPut refused with nothing applied
  int store_unknown = 0;  // KvPut failed after an injected fault
  int hot_writes = 0;     // KvPut acknowledged on a hot (rewritten) secret
};

class Schedule {
 public:
  Stats stats;

  explicit Schedule(uint64_t seed, std::string lmdb_dir = "")
      : seed_(seed), rng_(seed) {
    ClusterOptions o;
    o.lmdb_dir = std::move(lmdb_dir);
    o.seed = seed;
    o.mode = (seed % 2) ? StandbyMode::kPerfStandby : StandbyMode::kStandby;
    o.step_down_pause = absl::Milliseconds(500);
    cluster_ = std::make_unique<Cluster>(o);
  }

  void Run() {
    cluster_->Initialize(3, 2);
    cluster_->UnsealAll();
    BarrierOptions bo;
    bo.backend = cluster_->shared.get();
    auditor_ = *Barrier::Create(bo);
    for (int k = 0; k < cluster_->threshold; ++k) {
      ASSERT_TRUE(auditor_->Unseal(cluster_->shares[k]).ok());
    }
    crashed_at_.assign(3, absl::InfinitePast());
    stores_.resize(3);
    transport_.stores.assign(3, nullptr);
    for (int i = 0; i < 3; ++i) {
      transport_.addresses.push_back(Cluster::Address(i));
      MakeStore(i);
    }
    for (step_ = 0; step_ < kStepsPerSchedule; ++step_) {
      DoRandomAction();
      if (::testing::Test::HasFatalFailure()) return;
      CheckSafety();
      if (::testing::Test::HasFatalFailure()) return;
      if (step_ % 10 == 0) CheckAcknowledgedWrites();
      if (::testing::Test::HasFatalFailure()) return;
    }
    // Liveness: heal everything; exactly one node ends up writable.
    for (int i = 0; i < 3; ++i) {
      cluster_->Thaw(i);
      cluster_->links[i]->Clear();
      if (crashed(i)) Restart(i);
      if (cluster_->nodes[i]->state() == HaState::kSealed) cluster_->Unseal(i);
    }
    cluster_->Run(absl::Seconds(8));
    CheckSafety();
    EXPECT_EQ(cluster_->WritableActives().size(), 1u) << Where();
    Write(cluster_->WritableActives().empty() ? 0
                                              : cluster_->WritableActives()[0],
          /*stale=*/false);
    StoreWrite((step_ + 1) % 3);  // Through any node: forwarded if needed.
    CheckAcknowledgedWrites();
  }

 private:
  std::string Where() const {
    return absl::StrCat("seed ", seed_, " step ", step_,
                        " (rerun: STRONGBOX_SCHEDULE_SEED=", seed_, ")");
  }

  bool crashed(int i) const { return crashed_at_[i] != absl::InfinitePast(); }

  int Pick() { return std::uniform_int_distribution<int>(0, 2)(rng_); }

  // Unseals node i; an injected backend error may leave it sealed, which
  // is fine as long as it really is sealed.
  void TryUnseal(int i) {
    HaCoordinator* n = cluster_->nodes[i].get();
    n->ResetUnsealProgress();
    for (int k = 0; k < cluster_->threshold; ++k) {
      absl::StatusOr<SealStatus> st = n->Unseal(cluster_->shares[k]);
      if (!st.ok()) {
        ASSERT_EQ(st.status().code(), absl::StatusCode::kUnavailable)
            << st.status() << "; " << Where();
        ASSERT_EQ(n->state(), HaState::kSealed) << Where();
        ASSERT_TRUE(n->barrier()->sealed()) << Where();
        return;
      }
    }
    ASSERT_NE(n->state(), HaState::kSealed) << Where();
  }

  void MakeStore(int i) {
    SecretStore::Options so;
    so.coordinator = cluster_->nodes[i].get();
    so.forwarder = &transport_;
    so.clock = &cluster_->clock;
    so.max_index_wait = absl::ZeroDuration();
    stores_[i] = *SecretStore::Create(so);
    transport_.stores[i] = stores_[i].get();
  }

  int64_t InjectedSoFar() const {
    int64_t n = 0;
    for (const auto& link : cluster_->links) n += link->injected_failures();
    return n;
  }

  // The KV secret at `path` as stored (through the auditor barrier).
  std::optional<std::string> StoredKv(const std::string& path) {
    absl::StatusOr<Entry> meta = auditor_->Get("kv/meta/" + path);
    if (absl::IsNotFound(meta.status())) return std::nullopt;
    EXPECT_TRUE(meta.ok()) << meta.status() << "; " << Where();
    store::KvMetadataRecord record;
    EXPECT_TRUE(record.ParseFromString(meta->value)) << Where();
    EXPECT_EQ(record.current_version(), 1u) << path << " applied twice";
    return record.current_data().at("v");
  }

  // A KvPut through node `node`'s SecretStore: routed, forwarded from a
  // perf standby, fenced on the active — the whole request path.
  void StoreWrite(int node) {
    // Every other write goes to one of a few hot secrets, written again and
    // again across failovers: the active's KV write cache
    // (KvOptions::write_cache_entries) serves their metadata, and must
    // never hide a write made by another leader.
    if (writes_ % 2 == 1) {
      const std::string hot = absl::StrCat("hot/", (writes_ / 2) % 2);
      // Now and then a version is destroyed instead: a put on metadata
      // from before the destroy would reuse its version number.
      if ((writes_ / 2) % 3 == 2) {
        HotDestroy(node, hot);
      } else {
        HotWrite(node, hot);
      }
      return;
    }
    const std::string path = absl::StrCat("s/", writes_);
    const std::string value = absl::StrCat("sv", writes_);
    ++writes_;
    const int64_t injected_before = InjectedSoFar();
    absl::StatusOr<KvWriteResult> put =
        stores_[node]->KvPut(path, {{"v", value}});
    if (put.ok()) {
      ++stats.store_writes;
      store_acknowledged_[path] = value;
      return;
    }
    const absl::StatusCode code = put.status().code();
    ASSERT_TRUE(code == absl::StatusCode::kUnavailable ||
                code == absl::StatusCode::kFailedPrecondition)
        << put.status() << "; " << Where();
    if (InjectedSoFar() != injected_before) {
      // A fault hit this request: it may have been applied (a lost
      // acknowledgement) — but at most once, checked at the end.
      ++stats.store_unknown;
      store_maybe_[path] = value;
      return;
    }
    ++stats.store_refused;
    ASSERT_FALSE(StoredKv(path).has_value())
        << "a refused KvPut was applied: " << put.status() << "; " << Where();
  }

  void HotWrite(int node, const std::string& path) {
    const std::string value = absl::StrCat("hv", writes_);
    ++writes_;
    absl::StatusOr<KvWriteResult> put =
        stores_[node]->KvPut(path, {{"v", value}});
    if (!put.ok()) {
      const absl::StatusCode code = put.status().code();
      ASSERT_TRUE(code == absl::StatusCode::kUnavailable ||
                  code == absl::StatusCode::kFailedPrecondition)
          << put.status() << "; " << Where();
      return;
    }
    ++stats.hot_writes;
    // Two acknowledged puts given one version: one overwrote the other.
    ASSERT_TRUE(hot_acknowledged_[path].emplace(put->version, value).second)
        << path << " version " << put->version << " acknowledged twice; "
        << Where();
  }

  // Destroys the latest acknowledged version of `path`.
  void HotDestroy(int node, const std::string& path) {
    ++writes_;
    auto it = hot_acknowledged_.find(path);
    if (it == hot_acknowledged_.end() || it->second.empty()) return;
    absl::Status destroyed =
        stores_[node]->KvDestroy(path, {it->second.rbegin()->first});
    if (!destroyed.ok()) {
      const absl::StatusCode code = destroyed.code();
      ASSERT_TRUE(code == absl::StatusCode::kUnavailable ||
                  code == absl::StatusCode::kFailedPrecondition)
          << destroyed << "; " << Where();
    }
  }

  // Every acknowledged version of a hot secret that is not yet pruned is in
  // its metadata, with its data as written (unless destroyed since).
  void CheckHotWrites() {
    for (const auto& [path, versions] : hot_acknowledged_) {
      absl::StatusOr<Entry> meta = auditor_->Get("kv/meta/" + path);
      ASSERT_TRUE(meta.ok())
          << path << ": " << meta.status() << "; " << Where();
      store::KvMetadataRecord record;
      ASSERT_TRUE(record.ParseFromString(meta->value)) << Where();
      for (const auto& [version, value] : versions) {
        ASSERT_LE(version, record.current_version()) << path << "; " << Where();
        if (version + 10 <= record.current_version()) continue;  // pruned
        const store::KvVersionRecord* listed = nullptr;
        for (const store::KvVersionRecord& v : record.versions()) {
          if (v.version() == version) listed = &v;
        }
        ASSERT_NE(listed, nullptr)
            << path << " version " << version
            << " acknowledged but not in the metadata; " << Where();
        if (listed->destroyed()) continue;
        absl::StatusOr<Entry> data =
            auditor_->Get(absl::StrCat("kv/data/", path, "/", version));
        ASSERT_TRUE(data.ok()) << path << " version " << version << ": "
                               << data.status() << "; " << Where();
        store::KvDataRecord record_data;
        ASSERT_TRUE(record_data.ParseFromString(data->value)) << Where();
        ASSERT_EQ(record_data.data().at("v"), value)
            << path << " version " << version << "; " << Where();
      }
    }
  }

  void Restart(int i) {
    transport_.stores[i] = nullptr;
    stores_[i].reset();           // The store goes with its process.
    cluster_->links[i]->Clear();  // A new process, a new connection.
    cluster_->Restart(i);
    cluster_->Thaw(i);
    crashed_at_[i] = absl::InfinitePast();
    MakeStore(i);
  }

  void DoRandomAction() {
    const int node = Pick();
    const int action = std::uniform_int_distribution<int>(0, 99)(rng_);
    HaCoordinator* n = cluster_->nodes[node].get();
    if (action < 30) {
      // Time passes.
      const int ms = std::uniform_int_distribution<int>(1, 1500)(rng_);
      cluster_->Run(absl::Milliseconds(ms), absl::Milliseconds(100));
    } else if (action < 40) {
      Write(node, /*stale=*/false);
    } else if (action < 50) {
      if (!crashed(node) && !cluster_->frozen(node)) StoreWrite(node);
    } else if (action < 58) {
      // A write issued with whatever fence the node last held — what a
      // paused or deposed active has in flight.
      Write(node, /*stale=*/true);
    } else if (action < 64) {
      if (!crashed(node)) {
        cluster_->Freeze(node);
        crashed_at_[node] = cluster_->clock.Now();
      } else if (cluster_->clock.Now() > crashed_at_[node] + absl::Seconds(6)) {
        Restart(node);  // The crashed process comes back, sealed.
      }
    } else if (action < 72) {
      if (!crashed(node)) {
        if (cluster_->frozen(node)) {
          cluster_->Thaw(node);
        } else {
          cluster_->Freeze(node);  // A pause; it resumes later.
        }
      }
    } else if (action < 80) {
      if (!crashed(node) && !cluster_->frozen(node)) {
        if (n->state() == HaState::kSealed) {
          TryUnseal(node);
        } else {
          ASSERT_TRUE(n->Seal().ok()) << Where();
        }
      }
    } else if (action < 88) {
      if (!crashed(node) && !cluster_->frozen(node)) {
        ASSERT_TRUE(n->StepDown().ok()) << Where();
      }
    } else if (action < 94) {
      const uint32_t ops[] = {
          FaultInjectingBackend::kRenew, FaultInjectingBackend::kAcquire,
          FaultInjectingBackend::kGet, FaultInjectingBackend::kCommit,
          FaultInjectingBackend::kCurrentHolder};
      if (std::uniform_int_distribution<int>(0, 3)(rng_) == 0) {
        cluster_->links[node]->LoseNextCommitAcks(1);
      } else {
        cluster_->links[node]->FailNext(
            std::uniform_int_distribution<int>(1, 3)(rng_),
            absl::UnavailableError("injected"),
            ops[std::uniform_int_distribution<int>(0, 4)(rng_)]);
      }
    } else {
      cluster_->links[node]->FailRenewals(
          !cluster_->links[node]->renewals_failing());
    }
    // Remember each node's fence while it has one (for stale writes).
    for (int i = 0; i < 3; ++i) {
      absl::StatusOr<FenceToken> f = cluster_->nodes[i]->WriteFence();
      if (f.ok()) last_fence_[i] = *f;
    }
  }

  void Write(int node, bool stale) {
    HaCoordinator* n = cluster_->nodes[node].get();
    FenceToken fence;
    if (stale) {
      fence = last_fence_[node];
      if (fence == kNoFence) return;
    } else {
      absl::StatusOr<FenceToken> f = n->WriteFence();
      if (!f.ok()) {
        // Sealed: do not retry until the state changes; otherwise retry at
        // the leader (DESIGN.md status codes).
        const HaState state = n->state();
        EXPECT_EQ(f.status().code(), state == HaState::kSealed
                                         ? absl::StatusCode::kFailedPrecondition
                                         : absl::StatusCode::kUnavailable)
            << HaStateName(state) << "; " << Where();
        return;
      }
      fence = *f;
    }
    if (n->barrier()->sealed()) return;
    auto holder = cluster_->shared->ha()->CurrentHolder();
    ASSERT_TRUE(holder.ok());
    const bool current = holder->has_value() && (*holder)->fence == fence;
    const std::string path = absl::StrCat("w/", writes_);
    const std::string value = absl::StrCat("v", writes_, "@", fence);
    ++writes_;
    const int64_t injected_before = InjectedSoFar();
    absl::StatusOr<uint64_t> done = n->barrier()->Put(path, value, fence);
    if (done.ok()) {
      ASSERT_TRUE(current) << "a write with a stale fence " << fence
                           << " was applied; " << Where();
      acknowledged_[path] = value;
      ++stats.acknowledged;
    } else if (done.status().code() == absl::StatusCode::kFailedPrecondition) {
      ASSERT_FALSE(current)
          << "a write with the current fence was refused: " << done.status()
          << "; " << Where();
      ++stats.fenced_out;
      // Refused means nothing written.
      ASSERT_EQ(auditor_->Get(path).status().code(),
                absl::StatusCode::kNotFound)
          << Where();
    } else {
      // An injected backend error: either the write never reached the
      // backend (nothing there), or it was applied and its acknowledgement
      // lost (then it is there, exactly as written).
      ASSERT_EQ(done.status().code(), absl::StatusCode::kUnavailable)
          << done.status() << "; " << Where();
      ASSERT_NE(InjectedSoFar(), injected_before) << Where();
      absl::StatusOr<Entry> there = auditor_->Get(path);
      if (there.ok()) {
        ASSERT_EQ(there->value, value) << Where();
        ASSERT_TRUE(current) << "a lost-ack write with a stale fence was "
                                "applied; "
                             << Where();
      } else {
        ASSERT_EQ(there.status().code(), absl::StatusCode::kNotFound)
            << Where();
      }
    }
  }

  void CheckSafety() {
    std::vector<int> writable = cluster_->WritableActives();
    if (!writable.empty()) {
      FenceToken f = *cluster_->nodes[writable[0]]->WriteFence();
      if (f != last_leader_fence_) ++stats.leaders;
      last_leader_fence_ = f;
    }
    ASSERT_LE(writable.size(), 1u) << "two nodes can write; " << Where();
    std::vector<int> actives = cluster_->Actives();
    for (int i : actives) {
      // A node that says active but may not write must know it is lapsed.
      if (std::find(writable.begin(), writable.end(), i) == writable.end()) {
        ASSERT_NE(cluster_->nodes[i]->Route(OperationKind::kWrite).action,
                  RouteDecision::Action::kServeLocally)
            << "node " << i << " would serve a write with a stale fence; "
            << Where();
      }
    }
  }

  void CheckAcknowledgedWrites() {
    for (const auto& [path, value] : store_acknowledged_) {
      std::optional<std::string> got = StoredKv(path);
      ASSERT_TRUE(got.has_value())
          << "acknowledged KvPut lost: " << path << "; " << Where();
      ASSERT_EQ(*got, value) << path << "; " << Where();
    }
    for (const auto& [path, value] : store_maybe_) {
      std::optional<std::string> got = StoredKv(path);
      if (got.has_value()) ASSERT_EQ(*got, value) << path << "; " << Where();
    }
    CheckHotWrites();
    if (::testing::Test::HasFatalFailure()) return;
    for (const auto& [path, value] : acknowledged_) {
      absl::StatusOr<Entry> got = auditor_->Get(path);
      ASSERT_TRUE(got.ok()) << path << ": " << got.status() << "; " << Where();
      ASSERT_EQ(got->value, value) << path << "; " << Where();
    }
  }

  FenceToken last_leader_fence_ = kNoFence;
  const uint64_t seed_;
  std::mt19937_64 rng_;
  std::unique_ptr<Cluster> cluster_;
  std::unique_ptr<Barrier> auditor_;
  std::vector<absl::Time> crashed_at_;
  FenceToken last_fence_[3] = {kNoFence, kNoFence, kNoFence};
  std::map<std::string, std::string> acknowledged_;
  std::map<std::string, std::string> store_acknowledged_;
  std::map<std::string, std::string> store_maybe_;
  // Hot secret path -> acknowledged version -> value.
  std::map<std::string, std::map<uint64_t, std::string>> hot_acknowledged_;
  Transport transport_;
  std::vector<std::unique_ptr<SecretStore>> stores_;
  int writes_ = 0;
  int step_ = 0;
};

// Runs `count` schedules (or the one in STRONGBOX_SCHEDULE_SEED), on the
// in-memory backend or, with `lmdb`, on LMDB.
void RunSchedules(int count, bool lmdb) {
  uint64_t base = 20261126;
  if (const char* env = std::getenv("STRONGBOX_SCHEDULE_SEED")) {
    base = std::strtoull(env, nullptr, 10);
    count = 1;
  }
  Stats total;
  for (int s = 0; s < count; ++s) {
    const uint64_t seed = base + s;
    SCOPED_TRACE(absl::StrCat("schedule seed ", seed, lmdb ? " (lmdb)" : ""));
    std::string dir;
    if (lmdb) {
      const char* tmp = std::getenv("TEST_TMPDIR");
      dir = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/schedule-", getpid(),
                         "-", seed);
    }
    Schedule schedule(seed, dir);
    schedule.Run();
    total.acknowledged += schedule.stats.acknowledged;
    total.fenced_out += schedule.stats.fenced_out;
    total.leaders += schedule.stats.leaders;
    total.store_writes += schedule.stats.store_writes;
    total.store_refused += schedule.stats.store_refused;
    total.store_unknown += schedule.stats.store_unknown;
    total.hot_writes += schedule.stats.hot_writes;
    if (::testing::Test::HasFailure()) {
      ADD_FAILURE() << "failing seed: " << seed;
      return;
    }
  }
  std::printf(
      "%s: %d schedules x %d steps: %d writes acknowledged, %d fenced "
      "out, %d leaderships\n",
      lmdb ? "lmdb" : "in-memory", count, kStepsPerSchedule, total.acknowledged,
      total.fenced_out, total.leaders);
  std::printf(
      "SecretStore KvPut: %d acknowledged, %d refused with nothing "
      "applied, %d hit by an injected fault\n",
      total.store_writes, total.store_refused, total.store_unknown);
  std::printf("SecretStore KvPut on rewritten secrets: %d acknowledged\n",
              total.hot_writes);
  EXPECT_GT(total.store_writes, 0);
  EXPECT_GT(total.hot_writes, 0);
  EXPECT_GT(total.store_refused, 0);
  // The schedules must actually exercise failover and fencing.
  EXPECT_GT(total.fenced_out, 0);
  EXPECT_GT(total.leaders, count);
}

TEST(HaScheduleTest, RandomizedCrashesPausesSealsStepDownsAndWrites) {
  RunSchedules(kSchedules, /*lmdb=*/false);
}

TEST(HaScheduleTest, RandomizedScheduleOnLmdb) {
  RunSchedules(kLmdbSchedules, /*lmdb=*/true);
}

}  // namespace
}  // namespace strongbox
