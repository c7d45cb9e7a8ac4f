// strongbox_node processes auto-unsealing through a real SoftHSM2 token
// (--pkcs11-*): init answers recovery shares; three nodes all killed
// (SIGKILL) and restarted come back with an active node serving, no share
// typed (the time from start to active is printed); a wrong PIN or a
// missing token is an error on init and a "seal_error" in status, never a
// crash or a hang. OpenSSL build only (SoftHSM2 links OpenSSL 3).
#include <signal.h>
#include <stdlib.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "examples/node/node_process.h"
#include "gtest/gtest.h"
#include "tests/pkcs11/softhsm.h"

namespace strongbox {
namespace node {
namespace {

using testing_softhsm::kModulePath;
using testing_softhsm::SoftHsm;

constexpr int kTtlMs = 1000;
constexpr char kToken[] = "node-token";

class Pkcs11NodeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    signal(SIGPIPE, SIG_IGN);
    hsm_ = std::make_unique<SoftHsm>(
        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    ASSERT_TRUE(hsm_->InitToken(kToken).ok());
    store_dir_ = hsm_->dir() + "/store";
    ASSERT_EQ(system(("mkdir -p '" + store_dir_ + "'").c_str()), 0);
    absl::StatusOr<std::string> binary = FindNodeBinary("", "");
    ASSERT_TRUE(binary.ok()) << binary.status();
    binary_ = *binary;
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

  std::unique_ptr<NodeProcess> Start(int i, const std::string& pin_file,
                                     const std::string& token = kToken,
                                     const std::string& key = "strongbox-root",
                                     std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {
        "--dir=" + store_dir_,
        absl::StrCat("--node-id=node", i),
        absl::StrCat("--advertise=node", i, ":8200"),
        absl::StrCat("--lease-ttl-ms=", kTtlMs),
        std::string("--pkcs11-module=") + kModulePath,
        "--pkcs11-token=" + token,
        "--pkcs11-pin-file=" + pin_file,
        "--pkcs11-key=" + key,
        "--pkcs11-generate-key"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto p = NodeProcess::Start(
        binary_, args, absl::StrCat(hsm_->dir(), "/node", i, "-stderr.log"));
    EXPECT_TRUE(p.ok()) << p.status();
    return p.ok() ? std::move(*p) : nullptr;
  }

  JsonValue Ask(NodeProcess* node, const std::string& line) {
    absl::StatusOr<JsonValue> v = node->Command(line);
    EXPECT_TRUE(v.ok()) << "'" << line << "': " << v.status();
    return v.ok() ? *v : JsonValue();
  }

  // Polls every node's status until one is active; its index, or -1.
  int AwaitActive(absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      for (size_t i = 0; i < nodes_.size(); ++i) {
        if (Ask(nodes_[i].get(), "status").GetString("state") == "active") {
          return static_cast<int>(i);
        }
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    return -1;
  }

  // Polls `node`'s status until its seal_error contains `what`.
  JsonValue AwaitSealError(NodeProcess* node, absl::string_view what) {
    JsonValue status;
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    while (absl::Now() < deadline) {
      status = Ask(node, "status");
      if (absl::StrContains(status.GetString("seal_error"), what)) break;
      absl::SleepFor(absl::Milliseconds(20));
    }
    return status;
  }

  std::unique_ptr<SoftHsm> hsm_;
  std::string store_dir_;
  std::string binary_;
  std::vector<std::unique_ptr<NodeProcess>> nodes_;
};

TEST_F(Pkcs11NodeTest, ThreeNodesKilledAndRestartedServeAgainWithoutShares) {
  for (int i = 0; i < 3; ++i) nodes_.push_back(Start(i, hsm_->pin_file()));
  for (auto& n : nodes_) ASSERT_NE(n, nullptr);
  JsonValue init = Ask(nodes_[0].get(), "init 5 3");
  ASSERT_TRUE(init.GetBool("ok")) << nodes_[0]->last_line();
  ASSERT_NE(init.Find("recovery_shares"), nullptr);
  EXPECT_EQ(init.Find("recovery_shares")->array.size(), 5u);
  EXPECT_EQ(init.Find("shares"), nullptr);
  int active = AwaitActive(absl::Seconds(30));
  ASSERT_GE(active, 0);
  JsonValue status = Ask(nodes_[active].get(), "status");
  EXPECT_EQ(status.GetString("seal_type"), "pkcs11");
  EXPECT_EQ(status.Find("seal_error"), nullptr);
  ASSERT_TRUE(
      Ask(nodes_[active].get(), "put app/db password=hunter2").GetBool("ok"))
      << nodes_[active]->last_line();

  // Power loss: every node killed at once.
  for (auto& n : nodes_) {
    n->Signal(SIGKILL);
    ASSERT_TRUE(n->Wait(absl::Seconds(10)).ok());
  }
  nodes_.clear();
  const absl::Time start = absl::Now();
  for (int i = 0; i < 3; ++i) nodes_.push_back(Start(i, hsm_->pin_file()));
  for (auto& n : nodes_) ASSERT_NE(n, nullptr);
  active = AwaitActive(absl::Seconds(30));
  const absl::Duration to_active = absl::Now() - start;
  ASSERT_GE(active, 0);
  JsonValue got = Ask(nodes_[active].get(), "get app/db");
  ASSERT_TRUE(got.GetBool("ok")) << nodes_[active]->last_line();
  EXPECT_EQ(got.Find("data")->GetString("password"), "hunter2");
  std::printf(
      "MEASURED: 3 strongbox_node processes (SoftHSM2 auto-unseal, lease TTL "
      "%d ms) from start to an active node serving: %.0f ms\n",
      kTtlMs, absl::ToDoubleMilliseconds(to_active));
  // Every node unsealed itself (standbys too).
  for (auto& n : nodes_) {
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    while (Ask(n.get(), "status").GetBool("sealed", true) &&
           absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(20));
    }
    EXPECT_FALSE(Ask(n.get(), "status").GetBool("sealed", true));
  }
  // An operator's seal holds until an explicit auto-unseal.
  ASSERT_TRUE(Ask(nodes_[active].get(), "seal").GetBool("ok"));
  absl::SleepFor(absl::Milliseconds(500));
  EXPECT_TRUE(Ask(nodes_[active].get(), "status").GetBool("sealed"));
  JsonValue unsealed = Ask(nodes_[active].get(), "auto-unseal");
  EXPECT_TRUE(unsealed.GetBool("ok")) << nodes_[active]->last_line();
  EXPECT_FALSE(unsealed.GetBool("sealed", true));
}

TEST_F(Pkcs11NodeTest, WrongPinIsAnErrorOnInitAndStatusNeverACrash) {
  const std::string wrong = hsm_->WritePinFile("wrong-pin", "0000\n");
  nodes_.push_back(Start(0, wrong));
  ASSERT_NE(nodes_[0], nullptr);
  JsonValue init = Ask(nodes_[0].get(), "init 3 2");
  EXPECT_FALSE(init.GetBool("ok", true));
  EXPECT_EQ(init.GetString("code"), "FAILED_PRECONDITION");
  EXPECT_TRUE(absl::StrContains(init.GetString("error"), "CKR_PIN_INCORRECT"))
      << nodes_[0]->last_line();
  EXPECT_EQ(Ask(nodes_[0].get(), "status").GetString("state"), "uninitialized");

  // Initialized by a node with the right PIN; the wrong-PIN node stays
  // sealed and says why.
  nodes_.push_back(Start(1, hsm_->pin_file()));
  ASSERT_TRUE(Ask(nodes_[1].get(), "init 3 2").GetBool("ok"))
      << nodes_[1]->last_line();
  JsonValue status = AwaitSealError(nodes_[0].get(), "CKR_PIN_INCORRECT");
  EXPECT_TRUE(status.GetBool("sealed"));
  EXPECT_EQ(status.GetString("seal_type"), "pkcs11");
  EXPECT_TRUE(absl::StartsWith(status.GetString("seal_error"),
                               "sealed: waiting for key wrapper: "))
      << nodes_[0]->last_line();
  EXPECT_TRUE(nodes_[0]->running());
}

TEST_F(Pkcs11NodeTest, MissingTokenIsAnErrorOnInitAndStatus) {
  nodes_.push_back(Start(0, hsm_->pin_file(), "no-such-token"));
  ASSERT_NE(nodes_[0], nullptr);
  JsonValue init = Ask(nodes_[0].get(), "init 3 2");
  EXPECT_EQ(init.GetString("code"), "FAILED_PRECONDITION");
  EXPECT_TRUE(absl::StrContains(init.GetString("error"),
                                "no token labeled \"no-such-token\""))
      << nodes_[0]->last_line();
  nodes_.push_back(Start(1, hsm_->pin_file()));
  ASSERT_TRUE(Ask(nodes_[1].get(), "init 3 2").GetBool("ok"));
  JsonValue status = AwaitSealError(nodes_[0].get(), "no token labeled");
  EXPECT_TRUE(status.GetBool("sealed"));
  EXPECT_TRUE(nodes_[0]->running());
}

// Wrapper key rotation through the node (issue 14): the nodes restart with
// a new token key (the old label kept), and only `rotate-wrapper-key` with
// a threshold of recovery shares moves the stored keys to it; then the old
// key can go.
TEST_F(Pkcs11NodeTest, RotateWrapperKeyToANewTokenKeyWithRecoveryShares) {
  for (int i = 0; i < 3; ++i) nodes_.push_back(Start(i, hsm_->pin_file()));
  JsonValue init = Ask(nodes_[0].get(), "init 3 2");
  ASSERT_TRUE(init.GetBool("ok")) << nodes_[0]->last_line();
  std::vector<std::string> recovery;
  for (const JsonValue& s : init.Find("recovery_shares")->array) {
    recovery.push_back(s.string);
  }
  int active = AwaitActive(absl::Seconds(20));
  ASSERT_GE(active, 0);
  Ask(nodes_[active].get(), "put app/x a=1");
  auto restart_all = [&](std::vector<std::string> extra) {
    for (auto& n : nodes_) {
      n->CloseInput();
      EXPECT_TRUE(n->Wait(absl::Seconds(20)).ok());
    }
    nodes_.clear();
    for (int i = 0; i < 3; ++i) {
      nodes_.push_back(
          Start(i, hsm_->pin_file(), kToken, "strongbox-root-2", extra));
      // One at a time: --pkcs11-generate-key in several processes at once
      // could make one key per process under the same label.
      const absl::Time deadline = absl::Now() + absl::Seconds(20);
      while (Ask(nodes_[i].get(), "status").GetBool("sealed", true) &&
             absl::Now() < deadline) {
        absl::SleepFor(absl::Milliseconds(20));
      }
    }
  };
  restart_all({"--pkcs11-old-key=strongbox-root"});
  active = AwaitActive(absl::Seconds(20));  // unsealed under the old key
  ASSERT_GE(active, 0);
  JsonValue below =
      Ask(nodes_[active].get(), "rotate-wrapper-key " + recovery[0]);
  EXPECT_EQ(below.GetString("code"), "INVALID_ARGUMENT");
  EXPECT_FALSE(absl::StrContains(nodes_[active]->last_line(), recovery[0]));
  const int standby = (active + 1) % 3;
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (Ask(nodes_[standby].get(), "status").GetBool("sealed", true) &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(Ask(nodes_[standby].get(),
                "rotate-wrapper-key " + recovery[0] + " " + recovery[1])
                .GetString("code"),
            "UNAVAILABLE");
  Ask(nodes_[active].get(),
      "rotate-wrapper-key " + recovery[0] + " " + recovery[1]);
  EXPECT_EQ(nodes_[active]->last_line(), R"({"ok":true,"rewrapped":true})");

  restart_all({});  // the old key is no longer named
  active = AwaitActive(absl::Seconds(20));
  ASSERT_GE(active, 0);
  Ask(nodes_[active].get(), "get app/x");
  EXPECT_EQ(nodes_[active]->last_line(),
            R"({"ok":true,"version":1,"data":{"a":"1"}})");
}

}  // namespace
}  // namespace node
}  // namespace strongbox
