// Three strongbox_node processes with --listen on one LMDB directory, real
// gRPC and mutual TLS between them: writes made on a performance standby
// are forwarded to the active and readable everywhere (min_index); a plain
// standby still answers with the leader; a sealed node neither forwards
// nor serves (its port closes); the active killed (kill -9) in
// the middle of a stream of forwarded check-and-set writes loses none that
// was acknowledged and applies none twice.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "examples/node/node_process.h"
#include "gtest/gtest.h"
#include "tests/grpc_transport/free_port.h"

namespace strongbox {
namespace node {
namespace {

constexpr int kTtlMs = 1000;
constexpr int kNodes = 3;

class TransportNodeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    signal(SIGPIPE, SIG_IGN);
    const char* tmp = getenv("TEST_TMPDIR");
    dir_ = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/transport-XXXXXX");
    ASSERT_NE(mkdtemp(dir_.data()), nullptr);
    absl::StatusOr<std::string> binary = FindNodeBinary("", "");
    ASSERT_TRUE(binary.ok()) << binary.status();
    binary_ = *binary;
    for (int i = 0; i < kNodes; ++i) {
      addresses_.push_back(
          absl::StrCat("127.0.0.1:", testing_transport::FreePort()));
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

  // Node 2 is a plain standby; the others are performance standbys.
  void StartAll() {
    for (int i = 0; i < kNodes; ++i) {
      std::vector<std::string> args = {
          "--dir=" + dir_, absl::StrCat("--node-id=node", i),
          "--listen=" + addresses_[i], absl::StrCat("--lease-ttl-ms=", kTtlMs)};
      if (i != 2) args.push_back("--perf-standby");
      auto p = NodeProcess::Start(binary_, args,
                                  absl::StrCat(dir_, "/node", i, ".log"));
      ASSERT_TRUE(p.ok()) << p.status();
      nodes_.push_back(*std::move(p));
    }
  }

  JsonValue Ask(int i, const std::string& line) {
    absl::StatusOr<JsonValue> v = nodes_[i]->Command(line);
    EXPECT_TRUE(v.ok()) << "node" << i << " '" << line << "': " << v.status();
    return v.ok() ? *v : JsonValue();
  }

  void InitAndUnsealAll() {
    JsonValue init = Ask(0, "init 1 1");
    ASSERT_TRUE(init.GetBool("ok")) << nodes_[0]->last_line();
    share_ = init.Find("shares")->array[0].string;
    for (int i = 0; i < kNodes; ++i) {
      ASSERT_TRUE(Ask(i, "unseal " + share_).GetBool("ok"));
    }
  }

  int AwaitActive(int skip) {
    const absl::Time give_up = absl::Now() + absl::Seconds(20);
    while (absl::Now() < give_up) {
      for (int i = 0; i < kNodes; ++i) {
        if (i == skip || !nodes_[i]->running()) continue;
        if (Ask(i, "status").GetString("state") == "active") return i;
      }
      absl::SleepFor(absl::Milliseconds(5));
    }
    return -1;
  }

  // Makes a node other than the plain standby (2) active; returns it.
  int ActivePerfNode() {
    int active = AwaitActive(-1);
    if (active == 2) {
      EXPECT_TRUE(Ask(2, "step-down").GetBool("ok"));
      active = AwaitActive(2);
    }
    return active;
  }

  // Retries a forwarded write until the standby has its certificate and
  // the active serves (both follow the unseal within about a second).
  void AwaitForwarding(int standby) {
    const absl::Time give_up = absl::Now() + absl::Seconds(20);
    while (absl::Now() < give_up) {
      JsonValue put = Ask(standby, "put probe/ready v=1");
      if (put.GetBool("ok")) return;
      absl::SleepFor(absl::Milliseconds(50));
    }
    FAIL() << "forwarding never worked: " << nodes_[standby]->last_line();
  }

  // Whether something accepts TCP connections at `address` (127.0.0.1:P).
  static bool Listening(const std::string& address) {
    const int port = std::stoi(address.substr(address.rfind(':') + 1));
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return false;
    sockaddr_in addr = {};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    const bool ok =
        connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    close(fd);
    return ok;
  }

  // Polls Listening(address) until it is `want`, up to 20 s.
  static bool AwaitListening(const std::string& address, bool want) {
    const absl::Time give_up = absl::Now() + absl::Seconds(20);
    while (absl::Now() < give_up) {
      if (Listening(address) == want) return true;
      absl::SleepFor(absl::Milliseconds(20));
    }
    return false;
  }

  std::string dir_;
  std::string share_;
  std::string binary_;
  std::vector<std::string> addresses_;
  std::vector<std::unique_ptr<NodeProcess>> nodes_;
};

TEST_F(TransportNodeTest, PerfStandbyWritesAreForwardedAndReadableEverywhere) {
  StartAll();
  InitAndUnsealAll();
  const int active = ActivePerfNode();
  ASSERT_GE(active, 0);
  const int standby = active == 0 ? 1 : 0;
  ASSERT_EQ(Ask(standby, "status").GetString("state"), "perf_standby");
  AwaitForwarding(standby);

  for (int k = 0; k < 20; ++k) {
    JsonValue put = Ask(standby, absl::StrCat("cas-put app/k", k, " 0 v=", k));
    ASSERT_TRUE(put.GetBool("ok")) << nodes_[standby]->last_line();
    EXPECT_EQ(put.GetInt("version"), 1);
    const int64_t index = put.GetInt("index");
    ASSERT_GT(index, 0);
    for (int i = 0; i < kNodes; ++i) {
      if (i == 2) continue;  // a plain standby serves no reads
      JsonValue got = Ask(i, absl::StrCat("get-min app/k", k, " ", index));
      ASSERT_TRUE(got.GetBool("ok"))
          << "node" << i << " " << nodes_[i]->last_line();
      EXPECT_EQ(got.Find("data")->GetString("v"), absl::StrCat(k));
    }
  }
  // The active's answer comes back as is: a failed check-and-set too.
  JsonValue again = Ask(standby, "cas-put app/k0 0 v=again");
  EXPECT_FALSE(again.GetBool("ok", true));
  EXPECT_EQ(again.GetString("code"), "ABORTED") << nodes_[standby]->last_line();

  // A plain standby still answers with the leader.
  if (active != 2) {
    JsonValue plain = Ask(2, "put app/plain v=1");
    EXPECT_FALSE(plain.GetBool("ok", true));
    EXPECT_EQ(plain.GetString("code"), "UNAVAILABLE");
    EXPECT_EQ(plain.GetString("leader"), addresses_[active]);
    EXPECT_EQ(Ask(active, "get app/plain").GetString("code"), "NOT_FOUND");
  }
}

// A sealed performance standby neither forwards (its writes fail
// FAILED_PRECONDITION, nothing reaches the active) nor serves: its listen
// port closes. Unsealed again, it serves and forwards again.
TEST_F(TransportNodeTest, SealedNodeNeitherForwardsNorServes) {
  StartAll();
  InitAndUnsealAll();
  const int active = ActivePerfNode();
  ASSERT_GE(active, 0);
  const int standby = active == 0 ? 1 : 0;
  AwaitForwarding(standby);
  ASSERT_TRUE(Listening(addresses_[standby]));

  ASSERT_TRUE(Ask(standby, "seal").GetBool("ok"));
  JsonValue put = Ask(standby, "put app/sealed v=1");
  EXPECT_FALSE(put.GetBool("ok", true));
  EXPECT_EQ(put.GetString("code"), "FAILED_PRECONDITION")
      << nodes_[standby]->last_line();
  EXPECT_EQ(Ask(active, "get app/sealed").GetString("code"), "NOT_FOUND");
  EXPECT_TRUE(AwaitListening(addresses_[standby], false))
      << "a sealed node still accepts connections";

  ASSERT_TRUE(Ask(standby, "status").GetBool("sealed", false));
  ASSERT_TRUE(Ask(standby, "unseal " + share_).GetBool("ok"));
  EXPECT_TRUE(AwaitListening(addresses_[standby], true));
  AwaitForwarding(standby);
  JsonValue again = Ask(standby, "cas-put app/sealed 0 v=2");
  ASSERT_TRUE(again.GetBool("ok")) << nodes_[standby]->last_line();
  EXPECT_EQ(again.GetInt("version"), 1);
}

// kill -9 of the active while a perf standby forwards a stream of
// check-and-set creates: every acknowledged write is present at version 1;
// every failed one is absent, or (its answer lost with the active) present
// at version 1, which a cas retry then reports as ABORTED. None is applied
// twice.
TEST_F(TransportNodeTest, KillOfTheActiveMidStreamLosesNoAcknowledgedWrite) {
  StartAll();
  InitAndUnsealAll();
  const int active = ActivePerfNode();
  ASSERT_GE(active, 0);
  const int standby = active == 0 ? 1 : 0;
  AwaitForwarding(standby);

  // Writes until 10 were acknowledged after the kill (the new active
  // serves), or 30 s.
  std::vector<bool> acked;
  std::atomic<int> done{0};
  std::atomic<bool> killed{false};
  std::thread killer([&] {
    while (done.load() < 15) absl::SleepFor(absl::Milliseconds(1));
    nodes_[active]->Signal(SIGKILL);
    killed.store(true);
  });
  int failed = 0, acked_after_kill = 0;
  const absl::Time give_up = absl::Now() + absl::Seconds(30);
  for (int k = 0; acked_after_kill < 10 && absl::Now() < give_up; ++k) {
    const bool after_kill = killed.load();
    JsonValue put = Ask(standby, absl::StrCat("cas-put s/k", k, " 0 v=", k));
    acked.push_back(put.GetBool("ok"));
    if (acked[k] && after_kill) ++acked_after_kill;
    if (!acked[k]) absl::SleepFor(absl::Milliseconds(10));
    if (acked[k]) {
      EXPECT_EQ(put.GetInt("version"), 1) << nodes_[standby]->last_line();
    } else {
      ++failed;
      const std::string code = put.GetString("code");
      EXPECT_TRUE(code == "UNAVAILABLE" || code == "DEADLINE_EXCEEDED")
          << nodes_[standby]->last_line();
    }
    done.fetch_add(1);
  }
  killer.join();
  const int kWrites = static_cast<int>(acked.size());
  EXPECT_EQ(acked_after_kill, 10) << "forwarding never resumed";
  ASSERT_TRUE(nodes_[active]->Wait(absl::Seconds(5)).ok());
  const int next = AwaitActive(active);
  ASSERT_GE(next, 0);

  int unknown_applied = 0;
  for (int k = 0; k < kWrites; ++k) {
    JsonValue got = Ask(next, absl::StrCat("get s/k", k));
    if (acked[k]) {
      ASSERT_TRUE(got.GetBool("ok"))
          << "acknowledged s/k" << k << " lost: " << nodes_[next]->last_line();
      EXPECT_EQ(got.GetInt("version"), 1);
      EXPECT_EQ(got.Find("data")->GetString("v"), absl::StrCat(k));
      continue;
    }
    if (got.GetBool("ok")) {
      // Applied, answer lost with the active: the cas retry tells.
      ++unknown_applied;
      EXPECT_EQ(got.GetInt("version"), 1) << "applied twice";
      JsonValue retry = Ask(next, absl::StrCat("cas-put s/k", k, " 0 v=", k));
      EXPECT_EQ(retry.GetString("code"), "ABORTED");
    } else {
      EXPECT_EQ(got.GetString("code"), "NOT_FOUND")
          << nodes_[next]->last_line();
    }
  }
  printf(
      "kill -9 of the active (node%d) during %d forwarded writes from node%d: "
      "%d acknowledged, %d failed (%d of them applied before the kill, told "
      "by cas); node%d took over\n",
      active, kWrites, standby, kWrites - failed, failed, unknown_applied,
      next);
}

}  // namespace
}  // namespace node
}  // namespace strongbox
