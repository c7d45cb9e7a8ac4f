// Seal migration on a cluster of real strongbox_node processes (issue 14),
// both ways, with the active killed (SIGKILL) half way through each:
//   * Shamir -> auto, killed after the key wrapper wrapped the root key and
//     the recovery key and before the one commit that switches the seal;
//   * auto -> Shamir, killed right after that one commit applied and
//     before the node answered or updated anything in memory.
// Either way the cluster ends in one seal type (the store's, which every
// node reads), no data is lost, the same shares stay valid, and calling the
// migration again on the next active settles it.
//
// The nodes use the software key wrapper (--wrapper-key-file), so this runs
// in every build and under every sanitizer; the kill point is set by the
// test seams of strongbox_node_with_test_seams (examples/node/test_seams.h).
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "examples/node/json.h"
#include "examples/node/node_process.h"
#include "gtest/gtest.h"

namespace strongbox {
namespace node {
namespace {

constexpr int kTtlMs = 1000;
constexpr char kKeyFile[] =
    "kek-1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n";

std::string NewPath(const std::string& name) {
  static std::atomic<int> counter{0};
  const char* tmp = std::getenv("TEST_TMPDIR");
  return absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/", name, "-", getpid(),
                      "-", counter.fetch_add(1));
}

bool Exists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }

class SealMigrationProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    signal(SIGPIPE, SIG_IGN);
    absl::StatusOr<std::string> node = FindNodeBinary("", "");
    ASSERT_TRUE(node.ok()) << node.status();
    // The test build of the node sits beside it.
    binary_ = *node + "_with_test_seams";
    ASSERT_TRUE(Exists(binary_)) << binary_;
    dir_ = NewPath("cluster");
    key_file_ = NewPath("kek");
    std::ofstream(key_file_) << kKeyFile;
    pause_file_ = NewPath("pause");
    // Every node inherits it; the one that fires renames the file.
    setenv("STRONGBOX_NODE_TEST_PAUSE_FILE", pause_file_.c_str(), 1);
    nodes_.resize(3);
  }
  void TearDown() override { unsetenv("STRONGBOX_NODE_TEST_PAUSE_FILE"); }

  void Start(int i, bool with_key) {
    std::vector<std::string> args = {
        "--dir=" + dir_, absl::StrCat("--node-id=node", i),
        absl::StrCat("--advertise=node", i, ":8200"),
        absl::StrCat("--lease-ttl-ms=", kTtlMs)};
    if (with_key) args.push_back("--wrapper-key-file=" + key_file_);
    absl::StatusOr<std::unique_ptr<NodeProcess>> p = NodeProcess::Start(
        binary_, args, absl::StrCat(dir_, "-node", i, ".log"));
    ASSERT_TRUE(p.ok()) << p.status();
    nodes_[i] = *std::move(p);
  }

  void Kill(int i) {
    nodes_[i]->Signal(SIGKILL);
    EXPECT_TRUE(nodes_[i]->Wait(absl::Seconds(10)).ok());
    nodes_[i].reset();
  }

  JsonValue Ask(int i, const std::string& line) {
    absl::StatusOr<JsonValue> v = nodes_[i]->Command(line, absl::Seconds(30));
    EXPECT_TRUE(v.ok()) << "node" << i << ": " << v.status();
    return v.ok() ? *v : JsonValue();
  }
  std::string AskRaw(int i, const std::string& line) {
    Ask(i, line);
    return nodes_[i]->last_line();
  }

  // Polls `status` on the live nodes until exactly one is active.
  int AwaitActive() {
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    while (absl::Now() < deadline) {
      int active = -1, actives = 0;
      for (int i = 0; i < 3; ++i) {
        if (nodes_[i] == nullptr) continue;
        if (Ask(i, "status").GetString("state") == "active") {
          active = i;
          ++actives;
        }
      }
      EXPECT_LE(actives, 1) << "two active nodes at once";
      if (actives == 1) return active;
      absl::SleepFor(absl::Milliseconds(5));
    }
    return -1;
  }

  void UnsealWithShares(int i) {
    for (int k = 0; k < 3; ++k) Ask(i, "unseal " + shares_[k]);
    EXPECT_FALSE(Ask(i, "status").GetBool("sealed", true)) << "node" << i;
  }

  std::string Threshold() {
    return absl::StrJoin(shares_.begin(), shares_.begin() + 3, " ");
  }

  // Arms the test seam, sends `command` to node i (no answer will come),
  // waits until the node stopped at the seam, and kills it there.
  void KillHalfWay(int i, const std::string& seam, const std::string& command) {
    std::ofstream(pause_file_) << seam;
    ASSERT_TRUE(nodes_[i]->Write(command + "\n").ok());
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    while (!Exists(pause_file_ + ".fired") && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(2));
    }
    ASSERT_TRUE(Exists(pause_file_ + ".fired")) << "the seam never fired";
    std::remove((pause_file_ + ".fired").c_str());
    Kill(i);
  }

  // Every live node reports `seal_type` (read from the store).
  void ExpectSealType(const std::string& seal_type) {
    for (int i = 0; i < 3; ++i) {
      if (nodes_[i] == nullptr) continue;
      EXPECT_EQ(Ask(i, "status").GetString("seal_type"), seal_type)
          << "node" << i << ": " << nodes_[i]->last_line();
    }
  }

  std::string binary_, dir_, key_file_, pause_file_;
  std::vector<std::unique_ptr<NodeProcess>> nodes_;
  std::vector<std::string> shares_;
};

TEST_F(SealMigrationProcessTest, BothWaysWithTheActiveKilledHalfWay) {
  // A Shamir cluster with data.
  for (int i = 0; i < 3; ++i) Start(i, /*with_key=*/false);
  JsonValue init = Ask(0, "init 5 3");
  ASSERT_TRUE(init.GetBool("ok")) << nodes_[0]->last_line();
  for (const JsonValue& s : init.Find("shares")->array) {
    shares_.push_back(s.string);
  }
  for (int i = 0; i < 3; ++i) UnsealWithShares(i);
  int active = AwaitActive();
  ASSERT_GE(active, 0);
  ASSERT_EQ(AskRaw(active, "put app/x a=1"), R"({"ok":true,"version":1})");

  // A rolling restart gives every node the key wrapper; the store is still
  // Shamir, so they wait for shares.
  for (int i = 0; i < 3; ++i) {
    nodes_[i]->CloseInput();
    EXPECT_TRUE(nodes_[i]->Wait(absl::Seconds(30)).ok());
    Start(i, /*with_key=*/true);
    JsonValue status = Ask(i, "status");
    EXPECT_TRUE(status.GetBool("sealed")) << nodes_[i]->last_line();
    EXPECT_EQ(status.GetString("seal_type"), "shamir");
    UnsealWithShares(i);
  }
  active = AwaitActive();
  ASSERT_GE(active, 0);

  // Shamir -> auto, killed after both wraps, before the commit.
  KillHalfWay(active, "after-wrap 2", "migrate-to-auto " + Threshold());
  const int killed = active;
  active = AwaitActive();
  ASSERT_GE(active, 0);
  ExpectSealType("shamir");  // the commit never happened
  EXPECT_EQ(AskRaw(active, "get app/x"),
            R"({"ok":true,"version":1,"data":{"a":"1"}})");
  Start(killed, /*with_key=*/true);
  EXPECT_EQ(Ask(killed, "status").GetString("seal_type"), "shamir");
  UnsealWithShares(killed);  // the same shares still unseal
  // Retried on the new active: applies; every node follows the store.
  EXPECT_EQ(AskRaw(active, "migrate-to-auto " + Threshold()), R"({"ok":true})");
  ExpectSealType("software");
  ASSERT_EQ(AskRaw(active, "put app/y b=2"), R"({"ok":true,"version":1})");

  // auto -> Shamir, killed right after its one commit applied.
  KillHalfWay(active, "after-commit core/seal-config",
              "migrate-to-shamir " + Threshold());
  const int killed2 = active;
  active = AwaitActive();
  ASSERT_GE(active, 0);
  ExpectSealType("shamir");  // the commit happened, whole
  // The caller never got an answer: calling again settles it.
  EXPECT_EQ(AskRaw(active, "migrate-to-shamir " + Threshold()),
            R"({"ok":true})");
  EXPECT_EQ(AskRaw(active, "get app/x"),
            R"({"ok":true,"version":1,"data":{"a":"1"}})");
  EXPECT_EQ(AskRaw(active, "get app/y"),
            R"({"ok":true,"version":1,"data":{"b":"2"}})");

  // Power loss: every node restarts; the store is Shamir, so nobody unseals
  // by itself, and the original shares unseal every node.
  for (int i = 0; i < 3; ++i) {
    if (nodes_[i] != nullptr) Kill(i);
  }
  (void)killed2;
  for (int i = 0; i < 3; ++i) {
    Start(i, /*with_key=*/true);
    JsonValue status = Ask(i, "status");
    EXPECT_TRUE(status.GetBool("sealed")) << nodes_[i]->last_line();
    EXPECT_EQ(status.GetString("seal_type"), "shamir");
  }
  for (int i = 0; i < 3; ++i) UnsealWithShares(i);
  active = AwaitActive();
  ASSERT_GE(active, 0);
  EXPECT_EQ(AskRaw(active, "get app/x"),
            R"({"ok":true,"version":1,"data":{"a":"1"}})");
  EXPECT_EQ(AskRaw(active, "get app/y"),
            R"({"ok":true,"version":1,"data":{"b":"2"}})");
}

}  // namespace
}  // namespace node
}  // namespace strongbox
