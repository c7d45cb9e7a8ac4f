// Clusters of real strongbox_node processes on one LMDB directory, driven
// through pipes: init, unseal, exactly one active, reads on a performance
// standby, writes refused on standbys with the leader's address, malformed
// input survived, step-down and seal handovers, SIGKILL of the active and a
// clean quit. Times are printed, never asserted tightly.
#include "examples/node/node_process.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "examples/node/json.h"
#include "gtest/gtest.h"

namespace strongbox {
namespace node {
namespace {

constexpr int kTtlMs = 1000;

std::string NewDir(const std::string& name) {
  static std::atomic<int> counter{0};
  const char* tmp = std::getenv("TEST_TMPDIR");
  return absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/", name, "-", getpid(),
                      "-", counter.fetch_add(1));
}

std::string Address(int i) { return absl::StrCat("node", i, ":8200"); }

class NodeProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    signal(SIGPIPE, SIG_IGN);
    absl::StatusOr<std::string> binary = FindNodeBinary("", "");
    ASSERT_TRUE(binary.ok()) << binary.status();
    binary_ = *binary;
    dir_ = NewDir("cluster");
  }

  std::unique_ptr<NodeProcess> Start(int i, bool perf,
                                     std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {
        "--dir=" + dir_, absl::StrCat("--node-id=node", i),
        "--advertise=" + Address(i), absl::StrCat("--lease-ttl-ms=", kTtlMs)};
    if (perf) args.push_back("--perf-standby");
    args.insert(args.end(), extra.begin(), extra.end());
    absl::StatusOr<std::unique_ptr<NodeProcess>> p =
        NodeProcess::Start(binary_, args);
    EXPECT_TRUE(p.ok()) << p.status();
    return p.ok() ? std::move(*p) : nullptr;
  }

  void StartCluster(bool perf) {
    for (int i = 0; i < 3; ++i) {
      nodes_.push_back(Start(i, perf));
      ASSERT_NE(nodes_.back(), nullptr);
    }
  }

  // The answer to `line` from node i (a failed exchange fails the test and
  // answers an empty object).
  JsonValue Ask(int i, const std::string& line) {
    absl::StatusOr<JsonValue> v = nodes_[i]->Command(line);
    EXPECT_TRUE(v.ok()) << "node" << i << " '" << line << "': " << v.status();
    return v.ok() ? *v : JsonValue();
  }
  std::string AskRaw(int i, const std::string& line) {
    Ask(i, line);
    return nodes_[i]->last_line();
  }

  // Inits 5/3 on node 0 and unseals every running node with 3 shares.
  void InitAndUnsealAll() {
    JsonValue init = Ask(0, "init 5 3");
    ASSERT_TRUE(init.GetBool("ok")) << nodes_[0]->last_line();
    ASSERT_EQ(init.Keys(), (std::vector<std::string>{"ok", "shares"}));
    ASSERT_EQ(init.Find("shares")->array.size(), 5u);
    for (const JsonValue& s : init.Find("shares")->array) {
      shares_.push_back(s.string);
    }
    for (size_t i = 0; i < nodes_.size(); ++i) {
      if (nodes_[i] == nullptr) continue;
      EXPECT_EQ(AskRaw(i, "unseal " + shares_[i]),
                R"({"ok":true,"sealed":true,"progress":1,"threshold":3})");
      EXPECT_EQ(AskRaw(i, "unseal " + shares_[i + 1]),
                R"({"ok":true,"sealed":true,"progress":2,"threshold":3})");
      EXPECT_EQ(AskRaw(i, "unseal " + shares_[i + 2]),
                R"({"ok":true,"sealed":false,"progress":0,"threshold":3})");
    }
  }

  // Polls `status` on every live node (except `skip`) until exactly one is
  // active and every unsealed other knows its address; the active's index,
  // or -1 after the deadline.
  int AwaitOneActive(int skip = -1,
                     absl::Duration timeout = absl::Seconds(15)) {
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      int active = -1, actives = 0;
      std::vector<JsonValue> status(nodes_.size());
      for (size_t i = 0; i < nodes_.size(); ++i) {
        if (nodes_[i] == nullptr || static_cast<int>(i) == skip) continue;
        status[i] = Ask(i, "status");
        if (status[i].GetString("state") == "active") {
          active = i;
          ++actives;
        }
      }
      if (actives == 1) {
        bool all_know = true;
        for (size_t i = 0; i < nodes_.size(); ++i) {
          if (status[i].is_null() || status[i].GetBool("sealed", true))
            continue;
          all_know &= status[i].GetString("leader") == Address(active);
        }
        if (all_know) return active;
      }
      EXPECT_LE(actives, 1) << "two active nodes at once";
      absl::SleepFor(absl::Milliseconds(2));
    }
    return -1;
  }

  // Polls `status` on every live node but `skip` until one is active; the
  // time that took (from `since`), or an infinite duration.
  absl::Duration AwaitAnyActive(int skip, absl::Time since) {
    while (absl::Now() < since + absl::Seconds(15)) {
      for (size_t i = 0; i < nodes_.size(); ++i) {
        if (nodes_[i] == nullptr || static_cast<int>(i) == skip) continue;
        if (Ask(i, "status").GetString("state") == "active") {
          return absl::Now() - since;
        }
      }
    }
    return absl::InfiniteDuration();
  }

  std::string binary_;
  std::string dir_;
  std::vector<std::unique_ptr<NodeProcess>> nodes_;
  std::vector<std::string> shares_;
};

TEST_F(NodeProcessTest, PerfStandbyClusterStory) {
  StartCluster(/*perf=*/true);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(AskRaw(i, "status"),
              R"({"ok":true,"initialized":false,"sealed":true,)"
              R"("state":"uninitialized"})");
  }
  InitAndUnsealAll();
  // A second init anywhere is refused.
  EXPECT_EQ(Ask(1, "init 5 3").GetString("code"), "FAILED_PRECONDITION");

  const int active = AwaitOneActive();
  ASSERT_GE(active, 0) << "no single active node";
  const int standby = (active + 1) % 3;
  JsonValue s = Ask(active, "status");
  EXPECT_EQ(s.Keys(), (std::vector<std::string>{"ok", "initialized", "sealed",
                                                "state", "leader", "fence"}));
  EXPECT_EQ(Ask(standby, "status").GetString("state"), "perf_standby");
  EXPECT_EQ(Ask(standby, "status").GetString("fence"), s.GetString("fence"));

  EXPECT_EQ(AskRaw(active, "put app/db user=app password=hunter2"),
            R"({"ok":true,"version":1})");
  EXPECT_EQ(AskRaw(active, "put app/api token=t1"),
            R"({"ok":true,"version":1})");
  // Served locally by a performance standby.
  EXPECT_EQ(AskRaw(standby, "get app/db"),
            R"({"ok":true,"version":1,"data":{"password":"hunter2",)"
            R"("user":"app"}})");
  // A write on a standby: refused, with where to go.
  JsonValue refused = Ask(standby, "put app/db user=other");
  EXPECT_EQ(refused.Keys(),
            (std::vector<std::string>{"ok", "code", "error", "leader"}));
  EXPECT_EQ(refused.GetString("code"), "UNAVAILABLE");
  EXPECT_EQ(refused.GetString("leader"), Address(active));
  EXPECT_EQ(Ask(active, "get app/db").GetInt("version"), 1);

  // Malformed input: an error answer each, and the node lives on.
  for (int i : {active, standby}) {
    for (const std::string& line :
         {std::string("bogus"), std::string("put x"), std::string("put x y"),
          std::string("unseal nothex"), std::string("get"),
          std::string("\x01\x02\xff\xfe binary"), std::string("init a b")}) {
      JsonValue v = Ask(i, line);
      EXPECT_EQ(v.GetString("code"), "INVALID_ARGUMENT") << line;
    }
    // An overlong line (a megabyte) and binary garbage with NULs.
    ASSERT_TRUE(nodes_[i]->Write(std::string(1 << 20, 'x') + "\n").ok());
    absl::StatusOr<std::string> big = nodes_[i]->ReadLine(absl::Seconds(10));
    ASSERT_TRUE(big.ok()) << big.status();
    EXPECT_EQ(ParseJson(*big)->GetString("code"), "INVALID_ARGUMENT") << *big;
    ASSERT_TRUE(nodes_[i]->Write(std::string("\0\0\x80garbage\0\n", 12)).ok());
    absl::StatusOr<std::string> nul = nodes_[i]->ReadLine(absl::Seconds(10));
    ASSERT_TRUE(nul.ok()) << nul.status();
    EXPECT_EQ(ParseJson(*nul)->GetString("code"), "INVALID_ARGUMENT") << *nul;
    EXPECT_TRUE(Ask(i, "status").GetBool("ok"));
  }

  // Step-down: another node takes over; the old one is a standby again.
  absl::Time t0 = absl::Now();
  EXPECT_EQ(AskRaw(active, "step-down"), R"({"ok":true})");
  std::printf("step-down handover: %.1f ms\n",
              absl::ToDoubleMilliseconds(AwaitAnyActive(active, t0)));
  const int after_step_down = AwaitOneActive(active);
  ASSERT_GE(after_step_down, 0);
  EXPECT_NE(after_step_down, active);
  EXPECT_EQ(Ask(active, "status").GetString("state"), "perf_standby");
  EXPECT_EQ(AskRaw(after_step_down, "put app/db user=app password=v2"),
            R"({"ok":true,"version":2})");

  // Seal: the sealed node gives the lease up at once.
  t0 = absl::Now();
  EXPECT_EQ(AskRaw(after_step_down, "seal"), R"({"ok":true})");
  std::printf("seal handover: %.1f ms\n",
              absl::ToDoubleMilliseconds(AwaitAnyActive(after_step_down, t0)));
  const int after_seal = AwaitOneActive(after_step_down);
  ASSERT_GE(after_seal, 0);
  EXPECT_NE(after_seal, after_step_down);
  EXPECT_EQ(AskRaw(after_step_down, "status"),
            R"({"ok":true,"initialized":true,"sealed":true,"state":"sealed"})");
  JsonValue sealed_put = Ask(after_step_down, "put app/db x=y");
  EXPECT_EQ(sealed_put.GetString("code"), "FAILED_PRECONDITION");
  EXPECT_EQ(AskRaw(after_seal, "put app/cache v=1"),
            R"({"ok":true,"version":1})");

  // SIGKILL of the active: the remaining unsealed node takes over at once
  // (the kernel drops the dead holder's file lock; no TTL wait).
  const int victim = after_seal;
  int survivor = -1;
  for (int i = 0; i < 3; ++i) {
    if (i != victim && i != after_step_down) survivor = i;
  }
  // The node that stepped down waits TTL/2 before contending again; let
  // that pass so the number below is the crash takeover alone.
  absl::SleepFor(absl::Milliseconds(kTtlMs / 2));
  t0 = absl::Now();
  nodes_[victim]->Signal(SIGKILL);
  ASSERT_TRUE(nodes_[victim]->Wait(absl::Seconds(10)).ok());
  nodes_[victim] = nullptr;
  bool took_over = false;
  while (!took_over && absl::Now() < t0 + absl::Seconds(15)) {
    took_over = Ask(survivor, "status").GetString("state") == "active";
  }
  ASSERT_TRUE(took_over) << "no takeover after SIGKILL";
  std::printf("kill -9 takeover: %.1f ms (TTL %d ms)\n",
              absl::ToDoubleMilliseconds(absl::Now() - t0), kTtlMs);

  // Every acknowledged write survived.
  EXPECT_EQ(AskRaw(survivor, "get app/db"),
            R"({"ok":true,"version":2,"data":{"password":"v2","user":"app"}})");
  EXPECT_EQ(AskRaw(survivor, "get app/api"),
            R"({"ok":true,"version":1,"data":{"token":"t1"}})");
  EXPECT_EQ(AskRaw(survivor, "get app/cache"),
            R"({"ok":true,"version":1,"data":{"v":"1"}})");

  // The sealed node unseals and joins as a standby of the new active; a
  // restarted process (same id) does too.
  for (int k = 0; k < 3; ++k) Ask(after_step_down, "unseal " + shares_[k]);
  nodes_[victim] = Start(victim, /*perf=*/true);
  ASSERT_NE(nodes_[victim], nullptr);
  for (int k = 2; k < 5; ++k) Ask(victim, "unseal " + shares_[k]);
  EXPECT_EQ(AwaitOneActive(), survivor);
  EXPECT_EQ(AskRaw(victim, "get app/cache"),
            R"({"ok":true,"version":1,"data":{"v":"1"}})");
}

// Right after an election and right after each kind of failover, a
// standby's refusal names the new leader: not "no active node yet", not the
// node that just stepped down, sealed or died. The standbys' own refresh
// (every 500 ms with this TTL) has not run yet when they are asked.
TEST_F(NodeProcessTest, StandbyRefusalsNameTheNewLeaderRightAway) {
  const std::vector<std::string> ttl = {"--lease-ttl-ms=4000"};
  for (int i = 0; i < 3; ++i) {
    nodes_.push_back(Start(i, /*perf=*/false, ttl));
    ASSERT_NE(nodes_.back(), nullptr);
  }
  // The first node among `candidates` to report active (polled as fast as
  // the pipes allow), or -1.
  auto first_active = [&](std::vector<int> candidates) {
    const absl::Time deadline = absl::Now() + absl::Seconds(15);
    while (absl::Now() < deadline) {
      for (int i : candidates) {
        if (Ask(i, "status").GetString("state") == "active") return i;
      }
    }
    return -1;
  };
  int refusals = 0;
  auto expect_refusal_names = [&](int standby, int leader, const char* when) {
    JsonValue v = Ask(standby, "put k v=1");
    EXPECT_EQ(v.GetString("code"), "UNAVAILABLE")
        << when << ": " << nodes_[standby]->last_line();
    EXPECT_EQ(v.GetString("leader"), Address(leader))
        << when << ", node" << standby << ": " << nodes_[standby]->last_line();
    ++refusals;
  };
  auto others = [](std::vector<int> all, int a, int b = -1) {
    std::vector<int> out;
    for (int i : all) {
      if (i != a && i != b) out.push_back(i);
    }
    return out;
  };

  // Election.
  InitAndUnsealAll();
  const int first = first_active({0, 1, 2});
  ASSERT_GE(first, 0);
  for (int i : others({0, 1, 2}, first)) {
    expect_refusal_names(i, first, "after the election");
  }
  ASSERT_GE(AwaitOneActive(), 0);

  // Step-down: the other two contend; the one that stepped down and the
  // loser are asked at once.
  ASSERT_TRUE(Ask(first, "step-down").GetBool("ok"));
  const int second = first_active(others({0, 1, 2}, first));
  ASSERT_GE(second, 0);
  for (int i : others({0, 1, 2}, second)) {
    expect_refusal_names(i, second, "after a step-down");
  }
  ASSERT_EQ(AwaitOneActive(), second);

  // Seal: the third node takes over (the first may still be pausing).
  ASSERT_TRUE(Ask(second, "seal").GetBool("ok"));
  const int third = first_active(others({0, 1, 2}, second));
  ASSERT_GE(third, 0);
  for (int i : others({0, 1, 2}, second, third)) {
    expect_refusal_names(i, third, "after a seal");
  }
  ASSERT_EQ(AwaitOneActive(), third);

  // kill -9: the sealed node is unsealed again, the active dies, the
  // kernel frees its lease; the survivor that loses is asked at once.
  for (int k = 0; k < 3; ++k) Ask(second, "unseal " + shares_[k]);
  ASSERT_EQ(AwaitOneActive(), third);
  nodes_[third]->Signal(SIGKILL);
  ASSERT_TRUE(nodes_[third]->Wait(absl::Seconds(10)).ok());
  nodes_[third] = nullptr;
  const int fourth = first_active(others({0, 1, 2}, third));
  ASSERT_GE(fourth, 0);
  for (int i : others({0, 1, 2}, third, fourth)) {
    expect_refusal_names(i, fourth, "after kill -9");
  }
  std::printf("%d standby refusals checked right after elections\n", refusals);
}

TEST_F(NodeProcessTest, PlainStandbyRedirectsReads) {
  StartCluster(/*perf=*/false);
  InitAndUnsealAll();
  const int active = AwaitOneActive();
  ASSERT_GE(active, 0);
  const int standby = (active + 1) % 3;
  EXPECT_EQ(Ask(standby, "status").GetString("state"), "standby");
  EXPECT_EQ(AskRaw(active, "put k v=1"), R"({"ok":true,"version":1})");
  for (const char* line : {"get k", "put k v=2"}) {
    JsonValue v = Ask(standby, line);
    EXPECT_EQ(v.GetString("code"), "UNAVAILABLE") << line;
    EXPECT_EQ(v.GetString("leader"), Address(active)) << line;
  }
  EXPECT_EQ(AskRaw(active, "get k"),
            R"({"ok":true,"version":1,"data":{"v":"1"}})");
}

TEST_F(NodeProcessTest, QuitAndEndOfInputShutDownCleanly) {
  StartCluster(/*perf=*/false);
  InitAndUnsealAll();
  const int active = AwaitOneActive();
  ASSERT_GE(active, 0);
  // quit: no answer line; the process exits 0 once it has released its
  // lease and sealed.
  const absl::Time t0 = absl::Now();
  ASSERT_TRUE(nodes_[active]->Write("quit\n").ok());
  absl::StatusOr<int> exit = nodes_[active]->Wait(absl::Seconds(10));
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_TRUE(WIFEXITED(*exit) && WEXITSTATUS(*exit) == 0) << *exit;
  // Nothing else was printed on stdout.
  EXPECT_FALSE(nodes_[active]->ReadLine(absl::Milliseconds(10)).ok());
  nodes_[active] = nullptr;
  std::printf("quit handover: %.1f ms\n",
              absl::ToDoubleMilliseconds(AwaitAnyActive(-1, t0)));
  const int next = AwaitOneActive();
  ASSERT_GE(next, 0);
  // End of input: the same clean exit.
  nodes_[next]->CloseInput();
  exit = nodes_[next]->Wait(absl::Seconds(10));
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_TRUE(WIFEXITED(*exit) && WEXITSTATUS(*exit) == 0) << *exit;
  nodes_[next] = nullptr;
  EXPECT_GE(AwaitOneActive(), 0);
  // SIGTERM too.
  for (auto& n : nodes_) {
    if (n == nullptr) continue;
    n->Signal(SIGTERM);
    exit = n->Wait(absl::Seconds(10));
    ASSERT_TRUE(exit.ok()) << exit.status();
    EXPECT_TRUE(WIFEXITED(*exit) && WEXITSTATUS(*exit) == 0) << *exit;
    n = nullptr;
  }
}

TEST_F(NodeProcessTest, BadArgumentsExitTwo) {
  for (std::vector<std::string> args : std::vector<std::vector<std::string>>{
           {},
           {"--dir=" + dir_},
           {"--dir=" + dir_, "--node-id=a", "--advertise=a", "--nope"},
           {"--dir=" + dir_, "--node-id=a", "--advertise=a",
            "--lease-ttl-ms=-5"}}) {
    absl::StatusOr<std::unique_ptr<NodeProcess>> p =
        NodeProcess::Start(binary_, args, absl::StrCat(dir_, "-stderr.log"));
    ASSERT_TRUE(p.ok());
    absl::StatusOr<std::string> out = (*p)->ReadLine(absl::Seconds(10));
    EXPECT_FALSE(out.ok()) << "printed on stdout: " << *out;
    absl::StatusOr<int> exit = (*p)->Wait(absl::Seconds(10));
    ASSERT_TRUE(exit.ok());
    EXPECT_TRUE(WIFEXITED(*exit) && WEXITSTATUS(*exit) == 2) << *exit;
  }
}

// Issue 15 on a real process: a policy put as root, then `as alice
// app-read` may get but not put; --audit-file holds one request and one
// response entry per store command, secret values only as HMACs.
TEST_F(NodeProcessTest, PoliciesAndTheAuditFile) {
  const std::string audit = dir_ + "-audit.log";
  nodes_.push_back(Start(0, /*perf=*/false, {"--audit-file=" + audit}));
  ASSERT_NE(nodes_[0], nullptr);
  InitAndUnsealAll();
  ASSERT_EQ(AwaitOneActive(), 0);
  const std::string secret_a = "first-Secret-3f9a1c";
  const std::string secret_b = "second-Secret-77be20";
  const std::string doc = R"({"path":{"app/*":{"capabilities":["read"]}}})";
  // Store commands, in order (each makes a request and a response entry).
  EXPECT_EQ(AskRaw(0, "put app/x pw=" + secret_a),
            R"({"ok":true,"version":1})");
  JsonValue put_policy = Ask(0, "policy-put app-read " + doc);
  EXPECT_TRUE(put_policy.GetBool("ok")) << nodes_[0]->last_line();
  EXPECT_FALSE(put_policy.GetString("index").empty());
  JsonValue got = Ask(0, "as alice app-read get app/x");
  EXPECT_TRUE(got.GetBool("ok")) << nodes_[0]->last_line();
  ASSERT_NE(got.Find("data"), nullptr);
  EXPECT_EQ(got.Find("data")->GetString("pw"), secret_a);
  const std::string refused =
      AskRaw(0, "as alice app-read put app/x pw=" + secret_b);
  EXPECT_TRUE(absl::StartsWith(
      refused, R"({"ok":false,"code":"PERMISSION_DENIED","error":")"))
      << refused;
  EXPECT_FALSE(absl::StrContains(refused, secret_b));
  EXPECT_EQ(Ask(0, "policy-get app-read").GetString("policy"), doc);
  EXPECT_EQ(Ask(0, "as alice app-read policy-get app-read").GetString("code"),
            "PERMISSION_DENIED");
  EXPECT_EQ(Ask(0, "get app/x").Find("data")->GetString("pw"), secret_a);
  EXPECT_TRUE(Ask(0, "policy-delete app-read").GetBool("ok"));
  // No policy is left: alice's names grant nothing.
  EXPECT_EQ(Ask(0, "as alice app-read get app/x").GetString("code"),
            "PERMISSION_DENIED");
  const int store_commands = 9;
  // A clean exit writes every queued entry.
  nodes_[0]->CloseInput();
  absl::StatusOr<int> exit = nodes_[0]->Wait(absl::Seconds(10));
  ASSERT_TRUE(exit.ok()) << exit.status();
  nodes_[0] = nullptr;

  struct stat st;
  ASSERT_EQ(stat(audit.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
  std::ifstream in(audit);
  std::stringstream text;
  text << in.rdbuf();
  const std::string log = text.str();
  // Grepping the file for the secret values written finds nothing.
  EXPECT_FALSE(absl::StrContains(log, secret_a));
  EXPECT_FALSE(absl::StrContains(log, secret_b));
  std::map<std::string, int> kinds;
  std::map<std::string, std::string> responses;  // id -> operation:code
  std::vector<std::string> pw_values;
  for (absl::string_view line : absl::StrSplit(log, '\n', absl::SkipEmpty())) {
    absl::StatusOr<JsonValue> e = ParseJson(line);
    ASSERT_TRUE(e.ok()) << line;
    ++kinds[e->GetString("type")];
    if (e->GetString("type") == "response") {
      responses[e->Find("id")->string] =
          absl::StrCat(e->GetString("operation"), ":", e->GetString("code"));
    }
    if (const JsonValue* fields = e->Find("fields")) {
      if (const JsonValue* pw = fields->Find("data.pw")) {
        pw_values.push_back(pw->string);
      }
    }
  }
  EXPECT_EQ(kinds["request"], store_commands) << log;
  EXPECT_EQ(kinds["response"], store_commands) << log;
  int denied = 0;
  for (const auto& [id, outcome] : responses) {
    denied += absl::EndsWith(outcome, ":PERMISSION_DENIED");
  }
  EXPECT_EQ(denied, 3) << log;
  // data.pw: the two puts' request entries and the two gets' responses,
  // each an HMAC, the same value hashing alike (entries are not in command
  // order: a response entry rides with the next batch).
  ASSERT_EQ(pw_values.size(), 4u) << log;
  std::map<std::string, int> counts;
  for (const std::string& v : pw_values) {
    EXPECT_TRUE(absl::StartsWith(v, "hmac-sha256:")) << v;
    ++counts[v];
  }
  ASSERT_EQ(counts.size(), 2u) << log;
  std::vector<int> n = {counts.begin()->second, counts.rbegin()->second};
  std::sort(n.begin(), n.end());
  EXPECT_EQ(n, (std::vector<int>{1, 3})) << log;  // B once, A three times
}

}  // namespace
}  // namespace node
}  // namespace strongbox
