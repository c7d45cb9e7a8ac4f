// Three strongbox_node processes with --listen on a real etcd cluster
// (--etcd, three etcd members): a write made on a performance standby is
// forwarded over the gRPC transport (mutual TLS with the cluster identity)
// to the active and answered with the active's result, its version
// included, and is readable on every node with min_index. The same as
// transport_node_test on LMDB, on the other durable backend.
#include <signal.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "examples/node/node_process.h"
#include "gtest/gtest.h"
#include "tests/etcd/etcd_cluster.h"
#include "tests/grpc_transport/free_port.h"

namespace strongbox {
namespace node {
namespace {

constexpr int kTtlMs = 1000;
constexpr int kNodes = 3;

class TransportEtcdNodeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    signal(SIGPIPE, SIG_IGN);
    auto cluster = testing_etcd::EtcdCluster::Start();
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = *std::move(cluster);
    absl::StatusOr<std::string> binary = FindNodeBinary("", "");
    ASSERT_TRUE(binary.ok()) << binary.status();
    for (int i = 0; i < kNodes; ++i) {
      addresses_.push_back(
          absl::StrCat("127.0.0.1:", testing_transport::FreePort()));
      std::vector<std::string> args = {
          "--etcd=" + absl::StrJoin(cluster_->endpoints(), ","),
          "--etcd-prefix=transport/",
          absl::StrCat("--node-id=node", i),
          "--listen=" + addresses_[i],
          absl::StrCat("--lease-ttl-ms=", kTtlMs),
          "--perf-standby"};
      auto p = NodeProcess::Start(
          *binary, args,
          absl::StrCat(cluster_->dir(), "/node", i, "-stderr.log"));
      ASSERT_TRUE(p.ok()) << p.status();
      nodes_.push_back(*std::move(p));
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

  JsonValue Ask(int i, const std::string& line) {
    absl::StatusOr<JsonValue> v = nodes_[i]->Command(line);
    EXPECT_TRUE(v.ok()) << "node" << i << " '" << line << "': " << v.status();
    return v.ok() ? *v : JsonValue();
  }

  int AwaitActive() {
    const absl::Time give_up = absl::Now() + absl::Seconds(20);
    while (absl::Now() < give_up) {
      for (int i = 0; i < kNodes; ++i) {
        if (Ask(i, "status").GetString("state") == "active") return i;
      }
      absl::SleepFor(absl::Milliseconds(5));
    }
    return -1;
  }

  std::unique_ptr<testing_etcd::EtcdCluster> cluster_;
  std::vector<std::string> addresses_;
  std::vector<std::unique_ptr<NodeProcess>> nodes_;
};

TEST_F(TransportEtcdNodeTest, PerfStandbyWriteIsForwardedToTheActive) {
  JsonValue init = Ask(0, "init 1 1");
  ASSERT_TRUE(init.GetBool("ok")) << nodes_[0]->last_line();
  const std::string share = init.Find("shares")->array[0].string;
  for (int i = 0; i < kNodes; ++i) {
    ASSERT_TRUE(Ask(i, "unseal " + share).GetBool("ok"));
  }
  const int active = AwaitActive();
  ASSERT_GE(active, 0);
  const int standby = (active + 1) % kNodes;
  // The standby learns the leader's address (what it forwards to) at its
  // next leader refresh.
  const absl::Time give_up = absl::Now() + absl::Seconds(20);
  JsonValue status;
  while (absl::Now() < give_up) {
    status = Ask(standby, "status");
    if (status.GetString("state") == "perf_standby" &&
        !status.GetString("leader").empty()) {
      break;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_EQ(status.GetString("state"), "perf_standby");
  EXPECT_EQ(status.GetString("leader"), addresses_[active]);

  // The first forwarded write may wait for the standby's certificate and
  // the active's server (both follow the unseal within about a second).
  JsonValue first;
  while (absl::Now() < give_up) {
    first = Ask(standby, "cas-put app/db 0 user=a");
    if (first.GetBool("ok")) break;
    ASSERT_EQ(first.GetString("code"), "UNAVAILABLE")
        << nodes_[standby]->last_line();
    absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_TRUE(first.GetBool("ok")) << nodes_[standby]->last_line();
  EXPECT_EQ(first.GetInt("version"), 1);

  for (int v = 2; v <= 5; ++v) {
    // Check-and-set on the version the active reported last time: the
    // answer is the active's, with its new version.
    JsonValue put =
        Ask(standby, absl::StrCat("cas-put app/db ", v - 1, " user=u", v));
    ASSERT_TRUE(put.GetBool("ok")) << nodes_[standby]->last_line();
    EXPECT_EQ(put.GetInt("version"), v);
    const int64_t index = put.GetInt("index");
    ASSERT_GT(index, 0);
    for (int i = 0; i < kNodes; ++i) {
      JsonValue got = Ask(i, absl::StrCat("get-min app/db ", index));
      ASSERT_TRUE(got.GetBool("ok"))
          << "node" << i << " " << nodes_[i]->last_line();
      EXPECT_EQ(got.GetInt("version"), v) << "node" << i;
      EXPECT_EQ(got.Find("data")->GetString("user"), absl::StrCat("u", v));
    }
  }
  // A stale check-and-set comes back as the active's ABORTED.
  JsonValue stale = Ask(standby, "cas-put app/db 1 user=stale");
  EXPECT_FALSE(stale.GetBool("ok", true));
  EXPECT_EQ(stale.GetString("code"), "ABORTED") << nodes_[standby]->last_line();
  // The standby stayed a standby throughout: the writes were forwarded.
  EXPECT_EQ(Ask(standby, "status").GetString("state"), "perf_standby");
  EXPECT_EQ(Ask(active, "status").GetString("state"), "active");
}

}  // namespace
}  // namespace node
}  // namespace strongbox
