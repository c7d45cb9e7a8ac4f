// The auto-unseal scene of tools/demo (see BUILD.bazel).
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "examples/node/node_process.h"
#include "tests/pkcs11/softhsm.h"

namespace strongbox {
namespace {

using node::JsonValue;
using node::NodeProcess;

constexpr int kNodes = 3;

int Fail(const std::string& what) {
  std::fprintf(stderr, "autounseal_demo: %s\n", what.c_str());
  return 1;
}

int Run() {
  signal(SIGPIPE, SIG_IGN);
  testing_softhsm::SoftHsm hsm("demo");
  if (!hsm.InitToken("strongbox-demo").ok()) {
    return Fail("softhsm2-util --init-token failed (is softhsm2 installed?)");
  }
  const std::string store = hsm.dir() + "/store";
  if (std::system(("mkdir -p '" + store + "'").c_str()) != 0) {
    return Fail("mkdir failed");
  }
  absl::StatusOr<std::string> binary = node::FindNodeBinary("", "");
  if (!binary.ok()) return Fail(std::string(binary.status().message()));
  std::vector<std::unique_ptr<NodeProcess>> nodes;
  auto start_all = [&]() -> bool {
    nodes.clear();
    for (int i = 0; i < kNodes; ++i) {
      auto p = NodeProcess::Start(
          *binary,
          {"--dir=" + store, absl::StrCat("--node-id=node", i),
           absl::StrCat("--advertise=node", i, ":8200"), "--lease-ttl-ms=1000",
           std::string("--pkcs11-module=") + testing_softhsm::kModulePath,
           "--pkcs11-token=strongbox-demo",
           "--pkcs11-pin-file=" + hsm.pin_file(), "--pkcs11-key=strongbox-root",
           "--pkcs11-generate-key"},
          absl::StrCat(hsm.dir(), "/node", i, ".log"));
      if (!p.ok()) return false;
      nodes.push_back(*std::move(p));
    }
    return true;
  };
  auto ask = [&](int i, const std::string& line) {
    absl::StatusOr<JsonValue> v = nodes[i]->Command(line);
    std::printf("  node%d> %s\n  node%d< %s\n", i, line.c_str(), i,
                v.ok() ? nodes[i]->last_line().c_str()
                       : std::string(v.status().message()).c_str());
    return v.ok() ? *v : JsonValue();
  };
  auto await_active = [&]() -> int {
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    while (absl::Now() < deadline) {
      for (int i = 0; i < kNodes; ++i) {
        auto v = nodes[i]->Command("status");
        if (v.ok() && v->GetString("state") == "active") return i;
      }
      absl::SleepFor(absl::Milliseconds(10));
    }
    return -1;
  };

  std::printf("A SoftHSM2 token in %s; three nodes with --pkcs11-*.\n\n",
              hsm.dir().c_str());
  if (!start_all()) return Fail("could not start the nodes");
  JsonValue init = ask(0, "init 5 3");
  if (!init.GetBool("ok")) return Fail("init failed");
  std::printf("\nRecovery shares went to the operators; nobody types them.\n");
  int active = await_active();
  if (active < 0) return Fail("no node became active");
  ask(active, "status");
  ask(active, "put app/db password=hunter2");

  std::printf("\nPower loss: kill -9 of all three nodes, then restart.\n");
  for (auto& n : nodes) {
    n->Signal(SIGKILL);
    n->Wait(absl::Seconds(10)).IgnoreError();
  }
  const absl::Time restarted = absl::Now();
  if (!start_all()) return Fail("could not restart the nodes");
  active = await_active();
  const absl::Duration took = absl::Now() - restarted;
  if (active < 0) return Fail("no node became active after the restart");
  std::printf("  an active node serves again %.0f ms after the restart\n",
              absl::ToDoubleMilliseconds(took));
  ask(active, "get app/db");
  // The standbys unseal themselves too (each process opens the token).
  for (int i = 0; i < kNodes; ++i) {
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    while (absl::Now() < deadline) {
      auto v = nodes[i]->Command("status");
      if (v.ok() && !v->GetBool("sealed", true)) break;
      absl::SleepFor(absl::Milliseconds(10));
    }
    ask(i, "status");
  }
  for (auto& n : nodes) {
    n->CloseInput();
    n->Wait(absl::Seconds(10)).IgnoreError();
  }
  return 0;
}

}  // namespace
}  // namespace strongbox

int main() { return strongbox::Run(); }
