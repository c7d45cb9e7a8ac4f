// etcd_demo: strongbox beyond one machine — a real three-member etcd
// cluster (started here, fast elections) and three strongbox_node
// processes on it (--etcd): init 5/3, unseal, writes; kill -9 of the active
// node and the measured takeover; kill -9 of the etcd leader member and the
// measured write stall; step-down and seal handovers; every acknowledged
// write read back. Stops every process it started. Exits non-zero when an
// expectation of the story fails.
//
//   bazel run --config=openssl //examples/etcd_demo:etcd_demo
#include <signal.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "examples/node/node_process.h"
#include "tests/etcd/etcd_cluster.h"

namespace strongbox {
namespace demo {
namespace {

constexpr int kNodes = 3;
constexpr int kTtlMs = 2000;

int failures = 0;

void Expect(bool ok, const std::string& what) {
  if (!ok) {
    ++failures;
    printf("  !! expectation failed: %s\n", what.c_str());
  }
}

std::string Address(int i) { return absl::StrCat("10.0.0.", i + 1, ":8200"); }

class Demo {
 public:
  bool Setup() {
    auto cluster = testing_etcd::EtcdCluster::Start();
    if (!cluster.ok()) {
      printf("cannot start etcd: %s\n", cluster.status().ToString().c_str());
      return false;
    }
    cluster_ = *std::move(cluster);
    printf("etcd: three members on %s (heartbeat 50 ms, election 250 ms)\n",
           absl::StrJoin(cluster_->endpoints(), ", ").c_str());
    auto binary = node::FindNodeBinary("", "");
    if (!binary.ok()) {
      printf("%s\n", binary.status().ToString().c_str());
      return false;
    }
    binary_ = *binary;
    for (int i = 0; i < kNodes; ++i) nodes_.push_back(Start(i));
    for (auto& n : nodes_) {
      if (n == nullptr) return false;
    }
    printf(
        "strongbox: three strongbox_node processes with --etcd, "
        "lease TTL %d ms\n",
        kTtlMs);
    return true;
  }

  ~Demo() {
    for (auto& n : nodes_) {
      if (n != nullptr && n->running()) {
        n->CloseInput();
        n->Wait(absl::Seconds(10)).IgnoreError();
      }
    }
    nodes_.clear();
    cluster_.reset();  // stops the etcd members by pid
  }

  std::unique_ptr<node::NodeProcess> Start(int i) {
    std::vector<std::string> args = {
        "--etcd=" + absl::StrJoin(cluster_->endpoints(), ","),
        "--etcd-prefix=demo/", absl::StrCat("--node-id=node", i),
        "--advertise=" + Address(i), absl::StrCat("--lease-ttl-ms=", kTtlMs)};
    auto p = node::NodeProcess::Start(
        binary_, args, absl::StrCat(cluster_->dir(), "/node", i, ".log"));
    if (!p.ok()) printf("%s\n", p.status().ToString().c_str());
    return p.ok() ? std::move(*p) : nullptr;
  }

  node::JsonValue Ask(int i, const std::string& line) {
    auto v = nodes_[i]->Command(line);
    return v.ok() ? *v : node::JsonValue();
  }

  int AwaitActive(int skip, absl::Time since, absl::Duration* took) {
    while (absl::Now() < since + absl::Seconds(20)) {
      for (int i = 0; i < kNodes; ++i) {
        if (i == skip || !nodes_[i]->running()) continue;
        if (Ask(i, "status").GetString("state") == "active") {
          if (took != nullptr) *took = absl::Now() - since;
          return i;
        }
      }
      absl::SleepFor(absl::Milliseconds(2));
    }
    return -1;
  }

  // One write through the active node; true if acknowledged.
  bool Write(int active, int i) {
    const std::string key = absl::StrCat("app/w", i);
    bool ok = Ask(active, absl::StrCat("put ", key, " v=", i)).GetBool("ok");
    if (ok) acked_.push_back(i);
    return ok;
  }

  void Run() {
    node::JsonValue init = Ask(0, "init 5 3");
    Expect(init.GetBool("ok"), "init");
    std::vector<std::string> shares;
    if (const node::JsonValue* s = init.Find("shares")) {
      for (const node::JsonValue& v : s->array) shares.push_back(v.string);
    }
    if (shares.size() != 5) return;
    printf("\ninit 5/3 on node 0; every node unsealed with 3 shares\n");
    for (int i = 0; i < kNodes; ++i) {
      for (int k = 0; k < 3; ++k) Ask(i, "unseal " + shares[(i + k) % 5]);
    }
    int active = AwaitActive(-1, absl::Now(), nullptr);
    Expect(active >= 0, "an active node");
    if (active < 0) return;
    printf("node%d is active (holder of demo/lock)\n", active);
    int next_write = 0;
    for (int k = 0; k < 20; ++k) Expect(Write(active, next_write++), "write");
    printf("20 writes through node%d\n", active);

    printf("\n-- kill -9 of the active node --\n");
    const absl::Time killed = absl::Now();
    nodes_[active]->Signal(SIGKILL);
    nodes_[active]->Wait(absl::Seconds(5)).IgnoreError();
    absl::Duration took;
    const int old = active;
    active = AwaitActive(old, killed, &took);
    Expect(active >= 0, "takeover");
    if (active < 0) return;
    printf(
        "node%d took over after %s (TTL %d ms + one renew interval "
        "%d ms; etcd expires leases in whole seconds, in 500 ms steps)\n",
        active, absl::FormatDuration(took).c_str(), kTtlMs, kTtlMs / 4);
    nodes_[old] = Start(old);
    for (int k = 0; k < 3; ++k) Ask(old, "unseal " + shares[k]);
    printf("node%d restarted and unsealed: %s\n", old,
           Ask(old, "status").GetString("state").c_str());

    printf("\n-- kill -9 of the etcd leader member, writes streaming --\n");
    auto leader = cluster_->Leader();
    Expect(leader.ok(), "an etcd leader");
    if (!leader.ok()) return;
    for (int k = 0; k < 10; ++k) Write(active, next_write++);
    const absl::Time member_killed = absl::Now();
    cluster_->Kill(*leader);
    int unknown = 0;
    absl::Time first_after = absl::InfiniteFuture();
    while (absl::Now() < member_killed + absl::Seconds(15)) {
      if (Write(active, next_write++)) {
        first_after = absl::Now();
        break;
      }
      ++unknown;
      // The active may have lost its lease in the meantime: find it again.
      int again = AwaitActive(-1, absl::Now(), nullptr);
      if (again >= 0) active = again;
    }
    Expect(first_after != absl::InfiniteFuture(), "a write after the kill");
    printf(
        "etcd member e%d (the leader) killed: writes stalled %s "
        "(%d write(s) with an unknown outcome, reported, never resent)\n",
        *leader + 1, absl::FormatDuration(first_after - member_killed).c_str(),
        unknown);
    for (int k = 0; k < 10; ++k) Write(active, next_write++);
    Expect(cluster_->Restart(*leader).ok(), "etcd member restart");
    printf("e%d restarted on its data directory and rejoined\n", *leader + 1);

    printf("\n-- step-down and seal --\n");
    const absl::Time stepped = absl::Now();
    Expect(Ask(active, "step-down").GetBool("ok"), "step-down");
    const int before = active;
    active = AwaitActive(before, stepped, &took);
    Expect(active >= 0, "handover after step-down");
    if (active < 0) return;
    printf("node%d stepped down: node%d active after %s\n", before, active,
           absl::FormatDuration(took).c_str());
    const absl::Time sealed = absl::Now();
    Expect(Ask(active, "seal").GetBool("ok"), "seal");
    const int sealed_node = active;
    active = AwaitActive(sealed_node, sealed, &took);
    Expect(active >= 0, "handover after seal");
    if (active < 0) return;
    printf("node%d sealed: node%d active after %s\n", sealed_node, active,
           absl::FormatDuration(took).c_str());

    int read_back = 0;
    for (int i : acked_) {
      node::JsonValue got = Ask(active, absl::StrCat("get app/w", i));
      const node::JsonValue* data = got.Find("data");
      if (got.GetBool("ok") && data != nullptr &&
          data->GetString("v") == absl::StrCat(i)) {
        ++read_back;
      }
    }
    Expect(read_back == static_cast<int>(acked_.size()),
           "every write read back");
    printf("\n%d of %zu acknowledged writes read back from node%d\n", read_back,
           acked_.size(), active);
  }

 private:
  std::unique_ptr<testing_etcd::EtcdCluster> cluster_;
  std::string binary_;
  std::vector<std::unique_ptr<node::NodeProcess>> nodes_;
  std::vector<int> acked_;
};

int Main() {
  signal(SIGPIPE, SIG_IGN);
  {
    Demo demo;
    if (!demo.Setup()) return 1;
    demo.Run();
  }
  printf("every etcd member and node stopped\n");
  if (failures > 0) printf("%d expectation(s) failed\n", failures);
  return failures == 0 ? 0 : 1;
}

}  // namespace
}  // namespace demo
}  // namespace strongbox

int main() { return strongbox::demo::Main(); }
