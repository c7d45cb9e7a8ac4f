// The in-process view of a strongbox cluster: three nodes of one host
// service, each with its own HaCoordinator (background thread, real clock)
// and SecretStore, over one shared in-memory backend. The "network" between
// them is a Forwarder that hands request bytes to the other node's
// HandleSerialized(), which is all a host's transport has to do.
//
// The story: initialize 5/3, unseal, see who is active; write from a
// performance standby (forwarded), read and decrypt locally on the
// standbys (Transit encrypt is forwarded: it is counted in storage); step
// down and seal the active and time the takeovers; show a
// deposed active's fenced write refused; check every write survived.
// Exits non-zero if any expectation fails.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "strongbox/ha_coordinator.h"
#include "strongbox/in_memory_backend.h"
#include "strongbox/secret_store.h"

namespace {

using strongbox::HaCoordinator;
using strongbox::HaState;
using strongbox::SecretStore;

int step_number = 0;
bool failed = false;

void Step(const std::string& text) {
  std::printf("\n%2d. %s\n", ++step_number, text.c_str());
}
void Say(const std::string& text) { std::printf("    %s\n", text.c_str()); }
void Expect(bool ok, const std::string& what) {
  if (!ok) {
    std::printf("    !! expected: %s\n", what.c_str());
    failed = true;
  }
}

// The host's transport, in-process: bytes in, bytes out.
class InProcessTransport : public strongbox::Forwarder {
 public:
  absl::StatusOr<std::string> Forward(absl::string_view leader,
                                      absl::string_view request) override {
    auto it = nodes.find(std::string(leader));
    if (it == nodes.end()) return absl::UnavailableError("unknown address");
    ++forwarded;
    return it->second->HandleSerialized(request);
  }
  std::map<std::string, SecretStore*> nodes;
  std::atomic<int> forwarded{0};
};

struct Node {
  std::string address;
  std::unique_ptr<HaCoordinator> coordinator;
  std::unique_ptr<SecretStore> store;
};

// Waits until a node other than `not_this` is active and can write.
int WaitForActive(std::vector<Node>& nodes, int not_this) {
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  while (absl::Now() < give_up) {
    for (size_t i = 0; i < nodes.size(); ++i) {
      if (static_cast<int>(i) != not_this &&
          nodes[i].coordinator->state() == HaState::kActive &&
          nodes[i].coordinator->WriteFence().ok()) {
        return static_cast<int>(i);
      }
    }
    std::this_thread::yield();
  }
  return -1;
}

double MsSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double, std::milli>(
             std::chrono::steady_clock::now() - t)
      .count();
}

void ShowNodes(std::vector<Node>& nodes) {
  for (Node& n : nodes) {
    strongbox::HaStatus s = n.coordinator->Status();
    Say(absl::StrFormat("%-12s %-13s leader=%s fence=%d", n.address,
                        strongbox::HaStateName(s.state),
                        s.leader_address.empty() ? "?" : s.leader_address,
                        s.fence));
  }
}

}  // namespace

int main() {
  std::printf("strongbox, in one process: three nodes over a shared backend\n");
  std::unique_ptr<strongbox::Backend> backend = strongbox::NewInMemoryBackend();
  InProcessTransport transport;
  std::vector<Node> nodes(3);
  for (int i = 0; i < 3; ++i) {
    nodes[i].address = absl::StrCat("10.0.0.", i + 1, ":8200");
    HaCoordinator::Options o;
    o.backend = backend.get();
    o.node_id = absl::StrCat("node-", i + 1);
    o.advertise_address = nodes[i].address;
    o.standby_mode = strongbox::StandbyMode::kPerfStandby;
    o.lease_ttl = absl::Seconds(2);
    o.renew_interval = absl::Milliseconds(500);
    o.step_down_pause = absl::Milliseconds(200);
    o.leader_refresh = absl::Milliseconds(50);
    nodes[i].coordinator = *HaCoordinator::Create(o);
    SecretStore::Options so;
    so.coordinator = nodes[i].coordinator.get();
    so.forwarder = &transport;
    nodes[i].store = *SecretStore::Create(so);
    transport.nodes[nodes[i].address] = nodes[i].store.get();
  }

  Step("Initialize through node-1: 5 key shares, any 3 unseal");
  absl::StatusOr<std::vector<std::string>> shares =
      nodes[0].coordinator->Initialize(5, 3);
  Expect(shares.ok(), "initialize succeeds");
  if (!shares.ok()) return 1;
  Say(absl::StrCat("got ", shares->size(),
                   " shares (handed to five operators; never stored)"));

  Step("Unseal every node with three shares each");
  for (int i = 0; i < 3; ++i) {
    for (int k = 0; k < 3; ++k) {
      absl::StatusOr<strongbox::SealStatus> st =
          nodes[i].coordinator->Unseal((*shares)[(i + k) % 5]);
      Expect(st.ok(), "unseal accepts the share");
    }
  }
  int active = WaitForActive(nodes, -1);
  Expect(active >= 0, "a node becomes active");
  if (active < 0) return 1;
  std::this_thread::sleep_for(std::chrono::milliseconds(120));
  ShowNodes(nodes);

  const int standby = (active + 1) % 3;
  const int other = (active + 2) % 3;
  Step(absl::StrCat("Write from the performance standby ",
                    nodes[standby].address, ": forwarded to the active"));
  const int before = transport.forwarded.load();
  absl::StatusOr<strongbox::KvWriteResult> put = nodes[standby].store->KvPut(
      "apps/billing/db", {{"user", "billing"}, {"password", "s3cr3t"}});
  Expect(put.ok(), "the forwarded write succeeds");
  if (put.ok()) {
    Say(absl::StrFormat("version %d at index %d; requests forwarded: %d",
                        put->version, put->index,
                        transport.forwarded.load() - before));
  }

  Step("Read it on the other standby, locally, with the write's index");
  absl::StatusOr<strongbox::store::KvSecret> got = nodes[other].store->KvGet(
      "apps/billing/db", 0, put.ok() ? put->index : 0);
  Expect(got.ok() && got->data().at("user") == "billing",
         "the standby reads the write");
  if (got.ok()) {
    Say(absl::StrCat("user=", got->data().at("user"),
                     " (password not printed), version ",
                     got->metadata().version()));
  }

  Step(
      "Transit: create a key (a write), encrypt on a standby (forwarded: "
      "encryptions are counted in storage), decrypt on the other (local)");
  Expect(nodes[standby].store->TransitCreateKey("payments").ok(), "create key");
  const int forwarded_before = transport.forwarded.load();
  absl::StatusOr<std::string> ct =
      nodes[standby].store->TransitEncrypt("payments", "4111-1111-1111-1111");
  Expect(ct.ok(), "encrypt on a standby");
  absl::StatusOr<std::string> pt =
      ct.ok() ? nodes[other].store->TransitDecrypt("payments", *ct)
              : absl::StatusOr<std::string>(ct.status());
  Expect(pt.ok() && *pt == "4111-1111-1111-1111", "decrypt on the other");
  if (ct.ok()) Say(absl::StrCat("ciphertext ", ct->substr(0, 40), "..."));
  Say(absl::StrCat("forwarded for encrypt/decrypt: ",
                   transport.forwarded.load() - forwarded_before,
                   " (the encrypt; the decrypt is served locally)"));

  Step("Rotate the Transit key on the active; standbys follow at once");
  Expect(nodes[active].store->TransitRotateKey("payments").ok(), "rotate");
  absl::StatusOr<std::string> ct2 =
      nodes[standby].store->TransitEncrypt("payments", "4111-1111-1111-1111");
  Expect(ct2.ok() && ct2->rfind("strongbox:v2:", 0) == 0,
         "an encrypt through the standby uses version 2");
  if (ct2.ok()) Say(absl::StrCat("now written as ", ct2->substr(0, 13)));

  Step(absl::StrCat("Step down the active (", nodes[active].address, ")"));
  std::this_thread::sleep_for(std::chrono::milliseconds(250));
  auto t0 = std::chrono::steady_clock::now();
  Expect(nodes[active].coordinator->StepDown().ok(), "step-down");
  int next = WaitForActive(nodes, active);
  Expect(next >= 0, "another node takes over");
  if (next < 0) return 1;
  Say(absl::StrFormat("%s is active after %.2f ms", nodes[next].address,
                      MsSince(t0)));
  active = next;

  Step(absl::StrCat("Seal the active (", nodes[active].address, ")"));
  std::this_thread::sleep_for(std::chrono::milliseconds(250));
  t0 = std::chrono::steady_clock::now();
  Expect(nodes[active].coordinator->Seal().ok(), "seal");
  next = WaitForActive(nodes, active);
  Expect(next >= 0, "another node takes over");
  if (next < 0) return 1;
  Say(
      absl::StrFormat("%s is active after %.2f ms; the sealed node holds no "
                      "keys and does not contend",
                      nodes[next].address, MsSince(t0)));
  const int sealed = active;
  active = next;

  Step("A deposed active's write is refused by the backend (fencing)");
  strongbox::FenceToken stale = *nodes[active].coordinator->WriteFence();
  Expect(nodes[active].coordinator->StepDown().ok(), "step-down");
  next = WaitForActive(nodes, active);
  Expect(next >= 0, "another node takes over");
  absl::StatusOr<uint64_t> late = nodes[active].coordinator->barrier()->Put(
      "apps/billing/db-override", "stale", stale);
  Expect(!late.ok() && absl::IsFailedPrecondition(late.status()),
         "the write with the old fence is refused");
  Say(absl::StrCat("write with old fence ", stale, ": ",
                   late.status().ToString()));
  active = next;

  Step("Unseal the sealed node again and check every write survived");
  for (int k = 0; k < 3; ++k) {
    (void)nodes[sealed].coordinator->Unseal((*shares)[k]);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(120));
  for (Node& n : nodes) {
    absl::StatusOr<strongbox::store::KvSecret> s =
        n.store->KvGet("apps/billing/db");
    Expect(s.ok() && s->data().at("password") == "s3cr3t",
           absl::StrCat(n.address, " reads the secret"));
    absl::StatusOr<std::string> d = n.store->TransitDecrypt("payments", *ct);
    Expect(d.ok(), absl::StrCat(n.address, " decrypts the v1 ciphertext"));
  }
  Expect(
      nodes[active].store->KvGet("apps/billing/db-override").status().code() ==
          absl::StatusCode::kNotFound,
      "the stale write left nothing behind");
  ShowNodes(nodes);

  std::printf("\n%s\n", failed ? "in-process demo: FAILED"
                               : "in-process demo: every step as expected");
  nodes.clear();
  return failed ? 1 : 0;
}
