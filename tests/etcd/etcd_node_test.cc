// strongbox_node processes on a real etcd cluster (--etcd): init, unseal,
// writes; kill -9 of the active node (a standby takes over within TTL + one
// renew interval, every acknowledged write reads back); step-down and seal
// hand over at once; an operator's `etcdctl del` of the lock key deposes
// the active at once. Durations are printed, bounds asserted generously.
#include <signal.h>

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "examples/node/node_process.h"
#include "gtest/gtest.h"
#include "tests/etcd/etcd_cluster.h"

namespace strongbox {
namespace node {
namespace {

constexpr int kTtlMs = 1000;
constexpr int kNodes = 3;

std::string Address(int i) { return absl::StrCat("node", i, ":8200"); }

class EtcdNodeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    signal(SIGPIPE, SIG_IGN);
    auto cluster = testing_etcd::EtcdCluster::Start();
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = *std::move(cluster);
    absl::StatusOr<std::string> binary = FindNodeBinary("", "");
    ASSERT_TRUE(binary.ok()) << binary.status();
    binary_ = *binary;
    for (int i = 0; i < kNodes; ++i) {
      nodes_.push_back(Start(i));
      ASSERT_NE(nodes_.back(), nullptr);
    }
  }

  void TearDown() override {
    for (auto& n : nodes_) {
      if (n != nullptr && n->running()) {
        n->CloseInput();
        n->Wait(absl::Seconds(10)).IgnoreError();
      }
    }
    nodes_.clear();
  }

  std::unique_ptr<NodeProcess> Start(int i) {
    std::vector<std::string> args = {
        "--etcd=" + absl::StrJoin(cluster_->endpoints(), ","),
        "--etcd-prefix=nodes/", absl::StrCat("--node-id=node", i),
        "--advertise=" + Address(i), absl::StrCat("--lease-ttl-ms=", kTtlMs)};
    auto p = NodeProcess::Start(
        binary_, args,
        absl::StrCat(cluster_->dir(), "/node", i, "-stderr.log"));
    EXPECT_TRUE(p.ok()) << p.status();
    return p.ok() ? std::move(*p) : nullptr;
  }

  JsonValue Ask(int i, const std::string& line) {
    absl::StatusOr<JsonValue> v = nodes_[i]->Command(line);
    EXPECT_TRUE(v.ok()) << "node" << i << " '" << line << "': " << v.status();
    return v.ok() ? *v : JsonValue();
  }

  void InitAndUnsealAll() {
    JsonValue init = Ask(0, "init 5 3");
    ASSERT_TRUE(init.GetBool("ok")) << nodes_[0]->last_line();
    for (const JsonValue& s : init.Find("shares")->array) {
      shares_.push_back(s.string);
    }
    for (int i = 0; i < kNodes; ++i) {
      for (int k = 0; k < 3; ++k) Ask(i, "unseal " + shares_[k]);
      ASSERT_FALSE(Ask(i, "status").GetBool("sealed", true));
    }
  }

  // The index of the one active node (not `skip`), polling until `since`
  // + 15 s; -1 if none. `*took` is the time from `since`.
  int AwaitActive(int skip, absl::Time since, absl::Duration* took) {
    while (absl::Now() < since + absl::Seconds(15)) {
      for (int i = 0; i < kNodes; ++i) {
        if (i == skip || nodes_[i] == nullptr || !nodes_[i]->running()) {
          continue;
        }
        if (Ask(i, "status").GetString("state") == "active") {
          if (took != nullptr) *took = absl::Now() - since;
          return i;
        }
      }
      absl::SleepFor(absl::Milliseconds(2));
    }
    return -1;
  }

  std::unique_ptr<testing_etcd::EtcdCluster> cluster_;
  std::string binary_;
  std::vector<std::unique_ptr<NodeProcess>> nodes_;
  std::vector<std::string> shares_;
};

TEST_F(EtcdNodeTest, KillOfTheActiveFailsOverAndEveryWriteReadsBack) {
  InitAndUnsealAll();
  int active = AwaitActive(-1, absl::Now(), nullptr);
  ASSERT_GE(active, 0);
  for (int i = 0; i < 20; ++i) {
    JsonValue put = Ask(active, absl::StrCat("put app/k", i, " v=", i));
    ASSERT_TRUE(put.GetBool("ok")) << nodes_[active]->last_line();
  }
  const absl::Time killed = absl::Now();
  nodes_[active]->Signal(SIGKILL);
  ASSERT_TRUE(nodes_[active]->Wait(absl::Seconds(5)).ok());
  absl::Duration takeover;
  int next = AwaitActive(active, killed, &takeover);
  ASSERT_GE(next, 0);
  printf(
      "strongbox_node on etcd: takeover after kill -9 of the active: %s "
      "(TTL %d ms, renew every %d ms)\n",
      absl::FormatDuration(takeover).c_str(), kTtlMs, kTtlMs / 4);
  // etcd's lease is whole seconds and its expiry check runs every 500 ms.
  EXPECT_LT(takeover, absl::Milliseconds(kTtlMs + kTtlMs / 4 + 1500));
  for (int i = 0; i < 20; ++i) {
    JsonValue got = Ask(next, absl::StrCat("get app/k", i));
    ASSERT_TRUE(got.GetBool("ok")) << nodes_[next]->last_line();
    EXPECT_EQ(got.Find("data")->GetString("v"), absl::StrCat(i));
  }
}

TEST_F(EtcdNodeTest, StepDownAndSealHandOverAtOnce) {
  InitAndUnsealAll();
  int active = AwaitActive(-1, absl::Now(), nullptr);
  ASSERT_GE(active, 0);
  const absl::Time stepped = absl::Now();
  ASSERT_TRUE(Ask(active, "step-down").GetBool("ok"));
  absl::Duration handover;
  int next = AwaitActive(active, stepped, &handover);
  ASSERT_GE(next, 0);
  printf("strongbox_node on etcd: step-down handover %s\n",
         absl::FormatDuration(handover).c_str());
  EXPECT_LT(handover, absl::Milliseconds(kTtlMs));

  const absl::Time sealed = absl::Now();
  ASSERT_TRUE(Ask(next, "seal").GetBool("ok"));
  int third = AwaitActive(next, sealed, &handover);
  ASSERT_GE(third, 0);
  printf("strongbox_node on etcd: seal handover %s\n",
         absl::FormatDuration(handover).c_str());
  EXPECT_LT(handover, absl::Milliseconds(kTtlMs));
  ASSERT_TRUE(Ask(third, "put app/after v=1").GetBool("ok"));
}

TEST_F(EtcdNodeTest, DeletingTheLockKeyByHandDeposesTheActive) {
  InitAndUnsealAll();
  int active = AwaitActive(-1, absl::Now(), nullptr);
  ASSERT_GE(active, 0);
  ASSERT_TRUE(Ask(active, "put app/k v=1").GetBool("ok"));
  const std::string del =
      absl::StrCat("/usr/bin/etcdctl --endpoints=", cluster_->endpoint(0),
                   " del nodes/lock >/dev/null 2>&1");
  const absl::Time at = absl::Now();
  ASSERT_EQ(system(del.c_str()), 0);
  // The active steps down at once (its watch sees the key go); a node
  // becomes active again with a new grant.
  bool stepped_down = false;
  while (absl::Now() < at + absl::Seconds(10) && !stepped_down) {
    JsonValue status = Ask(active, "status");
    stepped_down = status.GetString("state") != "active" ||
                   status.GetString("fence").empty();
    if (!stepped_down) absl::SleepFor(absl::Milliseconds(2));
  }
  ASSERT_TRUE(stepped_down);
  printf(
      "strongbox_node on etcd: lock key deleted, active stepped down "
      "after %s\n",
      absl::FormatDuration(absl::Now() - at).c_str());
  absl::Duration again;
  int next = AwaitActive(-1, at, &again);
  ASSERT_GE(next, 0);
  JsonValue got = Ask(next, "get app/k");
  ASSERT_TRUE(got.GetBool("ok"));
  EXPECT_EQ(got.Find("data")->GetString("v"), "1");
}

}  // namespace
}  // namespace node
}  // namespace strongbox
