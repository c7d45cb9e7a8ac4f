// EtcdBackend under failures of a real three-member etcd cluster: the etcd
// leader killed mid-stream of fenced writes, the member in use stopped,
// the active's keepalives cut, the lock key deleted by an operator, a
// member restarted. Each test starts its own cluster. Every acknowledged
// write is read back, and etcd's own per-key version count shows that no
// write was applied twice. Durations are printed (they are measurements,
// not the point of the tests; the bounds asserted are generous).
#include <atomic>
#include <cstdio>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "strongbox/etcd_backend.h"
#include "strongbox/testing/status_matchers.h"
#include "tests/etcd/etcd_cluster.h"

namespace strongbox {
namespace {

using testing_etcd::EtcdCluster;

std::unique_ptr<EtcdCluster> StartCluster() {
  auto cluster = EtcdCluster::Start();
  EXPECT_TRUE(cluster.ok()) << cluster.status();
  return cluster.ok() ? *std::move(cluster) : nullptr;
}

std::unique_ptr<EtcdBackend> OpenBackend(std::vector<std::string> endpoints,
                                         absl::Duration request_timeout,
                                         const std::string& prefix = "fo/") {
  EtcdBackendOptions options;
  options.endpoints = std::move(endpoints);
  options.prefix = prefix;
  options.request_timeout = request_timeout;
  options.watch_check_interval = absl::Milliseconds(500);
  auto backend = EtcdBackend::Open(options);
  EXPECT_TRUE(backend.ok()) << backend.status();
  return backend.ok() ? *std::move(backend) : nullptr;
}

// Endpoints with member `first` first: the backend starts on it.
std::vector<std::string> StartingWith(const EtcdCluster& cluster, int first) {
  std::vector<std::string> out = {cluster.endpoint(first)};
  for (int i = 0; i < cluster.size(); ++i) {
    if (i != first) out.push_back(cluster.endpoint(i));
  }
  return out;
}

std::unique_ptr<LeadershipGrant> AcquireOrDie(Backend* backend,
                                              const std::string& holder,
                                              absl::Duration ttl) {
  AcquireOptions options;
  options.holder = holder;
  options.ttl = ttl;
  auto grant = backend->ha()->Acquire(options);
  EXPECT_TRUE(grant.ok()) << grant.status();
  return grant.ok() ? *std::move(grant) : nullptr;
}

TEST(EtcdFailoverTest, LeaderKilledMidStreamOfFencedWrites) {
  auto cluster = StartCluster();
  ASSERT_NE(cluster, nullptr);
  ASSERT_OK_AND_ASSIGN(int leader, cluster->Leader());
  // The backend talks to the leader itself, so the kill breaks its
  // connection mid-write.
  auto backend = OpenBackend(StartingWith(*cluster, leader), absl::Seconds(1));
  ASSERT_NE(backend, nullptr);
  auto grant = AcquireOrDie(backend.get(), "active", absl::Seconds(30));
  ASSERT_NE(grant, nullptr);

  constexpr int kWrites = 400;
  constexpr int kKillAt = 100;
  std::vector<int> outcome(kWrites, -1);  // 1 acked, 0 unknown
  std::vector<absl::Time> done(kWrites);
  absl::Time killed_at;
  for (int i = 0; i < kWrites; ++i) {
    if (i == kKillAt) {
      // Mid-stream: a write in flight on another thread when the kill lands.
      std::thread writer([&, i] {
        absl::StatusOr<uint64_t> r = backend->Put(
            absl::StrCat("seq/", i), absl::StrCat("v", i), grant->fence());
        outcome[i] = r.ok() ? 1 : 0;
        if (!r.ok()) {
          EXPECT_TRUE(absl::IsUnavailable(r.status())) << r.status();
        }
        done[i] = absl::Now();
      });
      killed_at = absl::Now();
      cluster->Kill(leader);
      writer.join();
      continue;
    }
    absl::StatusOr<uint64_t> r = backend->Put(
        absl::StrCat("seq/", i), absl::StrCat("v", i), grant->fence());
    done[i] = absl::Now();
    if (r.ok()) {
      outcome[i] = 1;
    } else {
      // Only "unreachable / outcome unknown" is acceptable, never a refusal.
      ASSERT_TRUE(absl::IsUnavailable(r.status())) << r.status();
      outcome[i] = 0;
    }
  }
  // The stall: from the kill to the first acknowledged write after it.
  absl::Time first_after = absl::InfiniteFuture();
  int unknown = 0, acked = 0;
  for (int i = kKillAt; i < kWrites; ++i) {
    if (outcome[i] == 1 && first_after == absl::InfiniteFuture()) {
      first_after = done[i];
    }
  }
  for (int i = 0; i < kWrites; ++i) (outcome[i] == 1 ? acked : unknown)++;
  ASSERT_NE(first_after, absl::InfiniteFuture()) << "no write after the kill";
  const absl::Duration stall = first_after - killed_at;
  printf("etcd leader kill: write stall %s, %d acknowledged, %d unknown\n",
         absl::FormatDuration(stall).c_str(), acked, unknown);
  EXPECT_LT(stall, absl::Seconds(5));
  EXPECT_GE(acked, kWrites - 10);

  // Every acknowledged write reads back; none was applied twice.
  const int survivor = (leader + 1) % cluster->size();
  for (int i = 0; i < kWrites; ++i) {
    const std::string key = absl::StrCat("seq/", i);
    absl::StatusOr<Entry> got = backend->Get(key);
    if (outcome[i] == 1) {
      ASSERT_OK(got) << key;
      EXPECT_EQ(got->value, absl::StrCat("v", i));
    }
    ASSERT_OK_AND_ASSIGN(int64_t version, testing_etcd::RawVersion(
                                              *cluster, survivor,
                                              absl::StrCat("fo/data/", key)));
    EXPECT_LE(version, 1) << key << " was applied " << version << " times";
    if (outcome[i] == 1) EXPECT_EQ(version, 1) << key;
  }
  // The grant lives on: its keepalive moves to a survivor.
  EXPECT_OK(grant->Renew());
  EXPECT_FALSE(grant->Lost());
}

TEST(EtcdFailoverTest, StoppedMemberIsLeftWithinTheRequestTimeout) {
  auto cluster = StartCluster();
  ASSERT_NE(cluster, nullptr);
  const absl::Duration timeout = absl::Seconds(1);
  auto backend = OpenBackend(StartingWith(*cluster, 0), timeout);
  ASSERT_NE(backend, nullptr);
  auto grant = AcquireOrDie(backend.get(), "active", absl::Seconds(30));
  ASSERT_NE(grant, nullptr);
  ASSERT_OK(backend->Put("before", "x", grant->fence()));
  ASSERT_OK(grant->Renew());
  ASSERT_EQ(backend->current_endpoint(), cluster->endpoint(0));

  cluster->Pause(0);
  const absl::Time paused = absl::Now();
  // A read moves on by itself (retried on another member).
  absl::StatusOr<Entry> read = backend->Get("before");
  const absl::Duration read_took = absl::Now() - paused;
  ASSERT_OK(read);
  EXPECT_EQ(read->value, "x");
  EXPECT_LT(read_took, timeout + absl::Milliseconds(500));
  // Writes and renewals continue on the other members.
  int acked = 0;
  std::vector<int> outcome;
  for (int i = 0; i < 50; ++i) {
    absl::StatusOr<uint64_t> r =
        backend->Put(absl::StrCat("w/", i), "v", grant->fence());
    if (!r.ok()) ASSERT_TRUE(absl::IsUnavailable(r.status())) << r.status();
    outcome.push_back(r.ok() ? 1 : 0);
    acked += r.ok();
  }
  absl::Status renewed = grant->Renew();
  if (!renewed.ok()) renewed = grant->Renew();  // its stream was on member 0
  EXPECT_OK(renewed);
  EXPECT_NE(backend->current_endpoint(), cluster->endpoint(0));
  printf(
      "SIGSTOP of the member in use: first read took %s; %d/50 writes "
      "acknowledged\n",
      absl::FormatDuration(read_took).c_str(), acked);
  EXPECT_GE(acked, 48);
  cluster->Resume(0);
  ASSERT_OK(cluster->WaitHealthy(absl::Seconds(10)));
  for (int i = 0; i < 50; ++i) {
    const std::string key = absl::StrCat("w/", i);
    if (outcome[i] == 1) {
      EXPECT_EQ(backend->Get(key)->value, "v") << key;
    }
    ASSERT_OK_AND_ASSIGN(
        int64_t version,
        testing_etcd::RawVersion(*cluster, 0, absl::StrCat("fo/data/", key)));
    EXPECT_LE(version, 1) << key;
  }
}

// D7: a write sent to a member that stops answering has an unknown outcome.
// It is reported as such and never resent elsewhere: right after the
// failure, no other member has it (a resend would have put it there).
TEST(EtcdFailoverTest, WriteWithUnknownOutcomeIsReportedAndNeverResent) {
  auto cluster = StartCluster();
  ASSERT_NE(cluster, nullptr);
  const absl::Duration timeout = absl::Seconds(1);
  auto backend = OpenBackend(StartingWith(*cluster, 0), timeout);
  ASSERT_NE(backend, nullptr);
  ASSERT_OK(backend->Put("warm", "x"));
  ASSERT_EQ(backend->current_endpoint(), cluster->endpoint(0));

  cluster->Pause(0);
  const absl::Time start = absl::Now();
  absl::Status s = backend->Put("once", "v").status();
  const absl::Duration took = absl::Now() - start;
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_NE(s.message().find("outcome unknown"), absl::string_view::npos) << s;
  EXPECT_LT(took, timeout + absl::Milliseconds(500));
  for (int member : {1, 2}) {
    ASSERT_OK_AND_ASSIGN(
        int64_t version,
        testing_etcd::RawVersion(*cluster, member, "fo/data/once"));
    EXPECT_EQ(version, 0) << "the write was resent through member " << member;
  }
  // The next write goes elsewhere and succeeds (once the others have a
  // leader: member 0 may have been it).
  ASSERT_OK(cluster->WaitHealthy(absl::Seconds(10)));
  ASSERT_OK(backend->Put("next", "v"));
  cluster->Resume(0);
  ASSERT_OK(cluster->WaitHealthy(absl::Seconds(10)));
  ASSERT_OK_AND_ASSIGN(int64_t version,
                       testing_etcd::RawVersion(*cluster, 1, "fo/data/once"));
  EXPECT_LE(version, 1);
}

TEST(EtcdFailoverTest, KeepalivesCutStandbyTakesOverAndOldWriteIsRefused) {
  auto cluster = StartCluster();
  ASSERT_NE(cluster, nullptr);
  auto active = OpenBackend(cluster->endpoints(), absl::Seconds(1));
  auto standby = OpenBackend(cluster->endpoints(), absl::Seconds(1));
  auto bystander = OpenBackend(cluster->endpoints(), absl::Seconds(1));
  ASSERT_NE(active, nullptr);
  ASSERT_NE(standby, nullptr);
  ASSERT_NE(bystander, nullptr);
  const absl::Duration ttl = absl::Seconds(2);
  const absl::Duration renew_interval = absl::Milliseconds(500);
  auto old = AcquireOrDie(active.get(), "10.0.0.1:8200", ttl);
  ASSERT_NE(old, nullptr);

  std::unique_ptr<LeadershipGrant> next;
  absl::Time granted;
  std::thread contender([&] {
    next = AcquireOrDie(standby.get(), "10.0.0.2:8200", ttl);
    granted = absl::Now();
  });
  // The active renews for a while, then its keepalives stop (cut).
  for (int i = 0; i < 4; ++i) {
    absl::SleepFor(renew_interval);
    ASSERT_OK(old->Renew());
  }
  const absl::Time last_renewal = absl::Now();
  contender.join();
  ASSERT_NE(next, nullptr);
  const absl::Duration takeover = granted - last_renewal;
  printf(
      "keepalives cut: standby took over %s after the last renewal "
      "(TTL %s)\n",
      absl::FormatDuration(takeover).c_str(),
      absl::FormatDuration(ttl).c_str());
  EXPECT_GT(next->fence(), old->fence());
  EXPECT_LE(takeover, ttl + renew_interval + absl::Milliseconds(600));
  EXPECT_TRUE(old->Lost());

  // The old active's next write is refused, by its backend and by etcd
  // itself (a backend that knows nothing of the old grant), with nothing
  // applied.
  const uint64_t before = *bystander->Revision();
  absl::Status own = active->Put("data", "stale", old->fence()).status();
  EXPECT_TRUE(IsStaleFence(own)) << own;
  absl::Status by_etcd = bystander->Put("data", "stale", old->fence()).status();
  EXPECT_TRUE(IsStaleFence(by_etcd)) << by_etcd;
  EXPECT_EQ(bystander->Get("data").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(*bystander->Revision(), before);
  ASSERT_OK(standby->Put("data", "fresh", next->fence()));
  EXPECT_EQ(old->Renew().code(), absl::StatusCode::kFailedPrecondition);
  // The deposed holder's release does not end its successor's grant.
  ASSERT_OK(old->Release());
  EXPECT_EQ((*bystander->ha()->CurrentHolder())->fence, next->fence());
}

TEST(EtcdFailoverTest, StepDownHandsOverAtOnce) {
  auto cluster = StartCluster();
  ASSERT_NE(cluster, nullptr);
  auto a = OpenBackend(cluster->endpoints(), absl::Seconds(1));
  auto b = OpenBackend(cluster->endpoints(), absl::Seconds(1));
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  std::vector<absl::Duration> handovers;
  for (int round = 0; round < 5; ++round) {
    auto first = AcquireOrDie(a.get(), "a", absl::Seconds(10));
    ASSERT_NE(first, nullptr);
    std::unique_ptr<LeadershipGrant> second;
    absl::Time granted;
    std::thread contender([&] {
      second = AcquireOrDie(b.get(), "b", absl::Seconds(10));
      granted = absl::Now();
    });
    absl::SleepFor(absl::Milliseconds(100));  // the contender is waiting
    const absl::Time released = absl::Now();
    ASSERT_OK(first->Release());
    contender.join();
    ASSERT_NE(second, nullptr);
    handovers.push_back(granted - released);
    ASSERT_OK(second->Release());
  }
  std::sort(handovers.begin(), handovers.end());
  printf("step-down handover: median %s, max %s\n",
         absl::FormatDuration(handovers[2]).c_str(),
         absl::FormatDuration(handovers.back()).c_str());
  EXPECT_LT(handovers[2], absl::Milliseconds(200));
}

// A standby waiting for a held lock watches it and re-checks it with reads:
// it proposes nothing to raft (no lease grant, Txn or revoke per re-check).
TEST(EtcdFailoverTest, WaitingContenderProposesNothingWhileTheLockIsHeld) {
  auto cluster = StartCluster();
  ASSERT_NE(cluster, nullptr);
  auto a = OpenBackend(cluster->endpoints(), absl::Seconds(1));
  auto b = OpenBackend(cluster->endpoints(), absl::Seconds(1));
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  auto held = AcquireOrDie(a.get(), "a", absl::Seconds(30));
  ASSERT_NE(held, nullptr);
  ASSERT_OK_AND_ASSIGN(uint64_t before, testing_etcd::RaftIndex(*cluster, 0));
  AcquireOptions wait;
  wait.holder = "b";
  wait.ttl = absl::Seconds(5);
  // Four safety re-checks (every 500 ms) in 2 s.
  wait.deadline = absl::Now() + absl::Seconds(2);
  EXPECT_EQ(b->ha()->Acquire(wait).status().code(),
            absl::StatusCode::kDeadlineExceeded);
  ASSERT_OK_AND_ASSIGN(uint64_t after, testing_etcd::RaftIndex(*cluster, 0));
  EXPECT_LE(after - before, 1u) << "raft entries proposed while waiting";
}

TEST(EtcdFailoverTest, OperatorDeletingTheLockKeyDeposesTheActiveAtOnce) {
  auto cluster = StartCluster();
  ASSERT_NE(cluster, nullptr);
  auto backend = OpenBackend(cluster->endpoints(), absl::Seconds(1));
  ASSERT_NE(backend, nullptr);
  auto grant = AcquireOrDie(backend.get(), "active", absl::Seconds(30));
  ASSERT_NE(grant, nullptr);
  ASSERT_OK(backend->Put("k", "v1", grant->fence()));

  // `etcdctl del fo/lock`, done raw.
  auto stub = etcdserverpb::KV::NewStub(cluster->Channel(1));
  grpc::ClientContext context;
  etcdserverpb::DeleteRangeRequest del;
  del.set_key("fo/lock");
  etcdserverpb::DeleteRangeResponse deleted;
  const absl::Time at = absl::Now();
  ASSERT_TRUE(stub->DeleteRange(&context, del, &deleted).ok());
  ASSERT_EQ(deleted.deleted(), 1);
  EXPECT_TRUE(grant->WaitLost(absl::Now() + absl::Seconds(5)));
  printf("lock key deleted by hand: holder saw the loss after %s\n",
         absl::FormatDuration(absl::Now() - at).c_str());
  absl::Status refused = backend->Put("k", "v2", grant->fence()).status();
  EXPECT_TRUE(IsStaleFence(refused)) << refused;
  EXPECT_EQ(backend->Get("k")->value, "v1");
}

TEST(EtcdFailoverTest, RestartedMemberRejoinsAndRestartedNodeStandsBy) {
  auto cluster = StartCluster();
  ASSERT_NE(cluster, nullptr);
  auto active = OpenBackend(cluster->endpoints(), absl::Seconds(1));
  ASSERT_NE(active, nullptr);
  auto grant = AcquireOrDie(active.get(), "active", absl::Seconds(30));
  ASSERT_NE(grant, nullptr);

  cluster->Kill(2);
  // Writes after the survivors agree on a leader (one in flight to a dead
  // leader has an unknown outcome: the leader-kill test covers that).
  ASSERT_OK(cluster->WaitHealthy(absl::Seconds(10)));
  for (int i = 0; i < 20; ++i) {
    ASSERT_OK(active->Put(absl::StrCat("while-down/", i), "v", grant->fence()));
  }
  ASSERT_OK(cluster->Restart(2));
  // A backend on the restarted member alone sees everything written while
  // it was down (a linearizable read through it).
  auto only_restarted = OpenBackend({cluster->endpoint(2)}, absl::Seconds(2));
  ASSERT_NE(only_restarted, nullptr);
  for (int i = 0; i < 20; ++i) {
    absl::StatusOr<Entry> got =
        only_restarted->Get(absl::StrCat("while-down/", i));
    ASSERT_OK(got);
    EXPECT_EQ(got->value, "v");
  }

  // A strongbox node restarted (its backend closed and opened again)
  // reconnects and stands by: the lease stays with the active.
  auto node = OpenBackend(cluster->endpoints(), absl::Seconds(1));
  ASSERT_NE(node, nullptr);
  node.reset();
  node = OpenBackend(cluster->endpoints(), absl::Seconds(1));
  ASSERT_NE(node, nullptr);
  AcquireOptions once;
  once.holder = "restarted";
  once.ttl = absl::Seconds(5);
  once.deadline = absl::InfinitePast();
  EXPECT_EQ(node->ha()->Acquire(once).status().code(),
            absl::StatusCode::kDeadlineExceeded);
  ASSERT_OK_AND_ASSIGN(std::optional<LeaseHolder> holder,
                       node->ha()->CurrentHolder());
  ASSERT_TRUE(holder.has_value());
  EXPECT_EQ(holder->holder, "active");
  EXPECT_EQ(holder->fence, grant->fence());
}

}  // namespace
}  // namespace strongbox
