// The cost of the forwarding hop (//:grpc_transport), in one run on
// loopback: two nodes in this process on one InMemoryBackend, each with
// its ClusterIdentity, GrpcForwarder, SecretStore and ForwardingServer
// (real gRPC, real mutual TLS), and three series interleaved in blocks so
// machine noise hits them alike:
//   direct     KvPut on the active
//   forwarded  the same KvPut on the performance standby (forwarded)
//   echo       GrpcForwarder::Echo of a request-sized payload over the
//              same channel: the transport's own floor
// Sequential calls, 64-byte values, 100 keys.
//
//   bazel run -c opt --config=openssl //bench/grpc_transport:transport_bench
//   [-- ops]
//
// Goal (issue 13): forwarded <= direct + 1.2 x echo.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "bench/latency_series.h"
#include "strongbox/cluster_credentials.h"
#include "strongbox/grpc_transport.h"
#include "strongbox/in_memory_backend.h"
#include "strongbox/secret_bytes.h"
#include "strongbox/secret_store.h"
#include "tests/grpc_transport/free_port.h"

namespace strongbox {
namespace {

constexpr int kKeys = 100;
constexpr int kBlock = 100;

struct Node {
  std::string address;
  std::unique_ptr<HaCoordinator> coordinator;
  std::unique_ptr<ClusterIdentity> identity;
  std::unique_ptr<GrpcForwarder> forwarder;
  std::unique_ptr<SecretStore> store;
  std::unique_ptr<ForwardingServer> server;
};

using Series = bench::LatencySeries;
using bench::Mean;
using bench::Percentile;

bool Fail(const absl::Status& s, const char* what) {
  fprintf(stderr, "%s: %s\n", what, s.ToString().c_str());
  return false;
}

bool StartNode(Backend* backend, int i, Node* n) {
  n->address = absl::StrCat("127.0.0.1:", testing_transport::FreePort());
  HaCoordinator::Options o;
  o.backend = backend;
  o.node_id = absl::StrCat("node-", i);
  o.advertise_address = n->address;
  o.standby_mode = StandbyMode::kPerfStandby;
  o.leader_refresh = absl::Milliseconds(100);
  // Route() on the standby re-reads the leader at most every 20 ms (the
  // host's choice; 0 reads the backend on every forwarded write).
  o.route_leader_max_age = absl::Milliseconds(20);
  auto c = HaCoordinator::Create(o);
  if (!c.ok()) return Fail(c.status(), "coordinator");
  n->coordinator = *std::move(c);
  ClusterIdentity::Options io;
  io.coordinator = n->coordinator.get();
  io.advertise_address = n->address;
  io.refresh_interval = absl::Milliseconds(100);
  auto id = ClusterIdentity::Create(io);
  if (!id.ok()) return Fail(id.status(), "identity");
  n->identity = *std::move(id);
  GrpcForwarder::Options fo;
  fo.identity = n->identity.get();
  auto f = GrpcForwarder::Create(fo);
  if (!f.ok()) return Fail(f.status(), "forwarder");
  n->forwarder = *std::move(f);
  SecretStore::Options so;
  so.coordinator = n->coordinator.get();
  so.forwarder = n->forwarder.get();
  auto s = SecretStore::Create(so);
  if (!s.ok()) return Fail(s.status(), "store");
  n->store = *std::move(s);
  ForwardingServer::Options po;
  po.listen_address = n->address;
  po.store = n->store.get();
  po.coordinator = n->coordinator.get();
  po.identity = n->identity.get();
  auto srv = ForwardingServer::Create(po);
  if (!srv.ok()) return Fail(srv.status(), "server");
  n->server = *std::move(srv);
  return true;
}

bool AwaitState(Node& n, HaState state) {
  const absl::Time give_up = absl::Now() + absl::Seconds(20);
  while (absl::Now() < give_up) {
    if (n.coordinator->state() == state) return true;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return false;
}

int Run(int ops) {
  std::unique_ptr<Backend> backend = NewInMemoryBackend({});
  Node nodes[2];
  for (int i = 0; i < 2; ++i) {
    if (!StartNode(backend.get(), i, &nodes[i])) return 1;
  }
  auto shares = nodes[0].coordinator->Initialize(1, 1);
  if (!shares.ok()) return Fail(shares.status(), "init"), 1;
  nodes[0].coordinator->Unseal((*shares)[0]).IgnoreError();
  if (!AwaitState(nodes[0], HaState::kActive)) return 1;
  nodes[1].coordinator->Unseal((*shares)[0]).IgnoreError();
  if (!AwaitState(nodes[1], HaState::kPerfStandby)) return 1;
  for (Node& n : nodes) {
    absl::Status s = n.server->AwaitServing(0, absl::Seconds(20));
    if (!s.ok()) return Fail(s, "serving"), 1;
  }
  Node& active = nodes[0];
  Node& standby = nodes[1];

  const std::map<std::string, std::string> data = {{"v", std::string(64, 'v')}};
  // A request-sized echo: what a forwarded KvPut carries.
  store::Request sample;
  sample.set_forwarded(true);
  sample.mutable_kv_put()->set_path("bench/k00");
  (*sample.mutable_kv_put()->mutable_data())["v"] = std::string(64, 'v');
  const std::string echo_payload = sample.SerializeAsString();

  std::vector<Series> series = {
      {"direct KvPut (active)",
       [&](int i) {
         return active.store->KvPut(absl::StrCat("bench/k", i % kKeys), data)
             .ok();
       }},
      {"forwarded KvPut (perf standby)",
       [&](int i) {
         return standby.store->KvPut(absl::StrCat("bench/k", i % kKeys), data)
             .ok();
       }},
      {"gRPC echo (same mTLS channel)",
       [&](int i) {
         return standby.forwarder->Echo(active.address, echo_payload).ok();
       }},
      // The parts of the forwarded series, for where its time goes.
      {"  part: HandleSerialized on active",
       [&](int i) {
         std::string out = active.store->HandleSerialized(echo_payload);
         return !out.empty();
       }},
      {"  part: GrpcForwarder::Forward",
       [&](int i) {
         return standby.forwarder->Forward(active.address, echo_payload).ok();
       }},
      {"  part: Route(write) on the standby",
       [&](int i) {
         return standby.coordinator->Route(OperationKind::kWrite).action ==
                RouteDecision::Action::kForwardToActive;
       }},
      // What SecretStore::Forward does with the request: a string, wiped
      // after the call (an mlock()ed SecretBytes page per request cost
      // the hop 10-15 us at load, more than its own 5 us).
      {"  part: serialize the request",
       [&](int i) {
         std::string bytes = sample.SerializeAsString();
         const bool ok = !bytes.empty();
         WipeString(bytes);
         return ok;
       }},
  };
  // Warm-up: channels, caches.
  for (int i = 0; i < 200; ++i) {
    for (Series& s : series) {
      if (!s.op(i)) {
        fprintf(stderr, "%s failed in warm-up\n", s.name.c_str());
        return 1;
      }
    }
  }
  for (int done = 0; done < ops; done += kBlock) {
    for (Series& s : series) {
      for (int i = done; i < done + kBlock; ++i) {
        const absl::Time start = absl::Now();
        if (!s.op(i)) {
          fprintf(stderr, "%s failed\n", s.name.c_str());
          return 1;
        }
        s.micros.push_back(absl::ToDoubleMicroseconds(absl::Now() - start));
      }
    }
  }
  printf("%-34s %9s %9s %9s %9s\n", "series", "mean us", "p50 us", "p90 us",
         "p99 us");
  for (const Series& s : series) {
    printf("%-34s %9.1f %9.1f %9.1f %9.1f\n", s.name.c_str(), Mean(s.micros),
           Percentile(s.micros, 0.5), Percentile(s.micros, 0.9),
           Percentile(s.micros, 0.99));
  }
  const double direct = Percentile(series[0].micros, 0.5);
  const double forwarded = Percentile(series[1].micros, 0.5);
  const double echo = Percentile(series[2].micros, 0.5);
  printf(
      "hop (p50): forwarded - direct = %.1f us = %.2f x echo; goal "
      "forwarded <= direct + 1.2 x echo = %.1f us: %s\n",
      forwarded - direct, (forwarded - direct) / echo, direct + 1.2 * echo,
      forwarded <= direct + 1.2 * echo ? "met" : "NOT met");
  for (Node& n : nodes) n.server.reset();
  for (Node& n : nodes) {
    n.store.reset();
    n.forwarder.reset();
    n.identity.reset();
  }
  for (Node& n : nodes) n.coordinator.reset();
  return 0;
}

}  // namespace
}  // namespace strongbox

int main(int argc, char** argv) {
  const int ops = argc > 1 ? std::max(100, atoi(argv[1])) : 3000;
  return strongbox::Run(ops);
}
