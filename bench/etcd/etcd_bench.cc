// EtcdBackend Get / Put against raw etcd gRPC calls (Range / Put, and the
// Txn a backend Put is) on the same member, same keys, same values, in one
// run, interleaved in blocks so that machine noise hits both sides alike:
// the ratio is what counts. Sequential calls, 64-byte values, 100 keys.
//
//   bazel run -c opt --config=openssl //bench/etcd:etcd_bench [-- ops]
//
// Goal (issue 12): backend / raw <= 1.1x. A backend Put is one Txn that also
// rewrites <prefix>revision (Revision() in one read), so its fair floor is
// the raw Txn with the same two puts; the plain raw Put is shown too.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "bench/latency_series.h"
#include "grpcpp/grpcpp.h"
#include "lib/etcd/proto/rpc.grpc.pb.h"
#include "strongbox/etcd_backend.h"
#include "tests/etcd/etcd_cluster.h"

namespace strongbox {
namespace {

namespace pb = etcdserverpb;

constexpr int kKeys = 100;
constexpr int kBlock = 100;

using Series = bench::LatencySeries;
using bench::Mean;
using bench::Percentile;

int Run(int ops) {
  auto cluster = testing_etcd::EtcdCluster::Start();
  if (!cluster.ok()) {
    fprintf(stderr, "cluster: %s\n", cluster.status().ToString().c_str());
    return 1;
  }
  // Both sides talk to member 1 (a follower or the leader, whichever).
  EtcdBackendOptions options;
  options.endpoints = {(*cluster)->endpoint(1)};
  options.prefix = "bench/";
  auto backend = EtcdBackend::Open(options);
  if (!backend.ok()) {
    fprintf(stderr, "open: %s\n", backend.status().ToString().c_str());
    return 1;
  }
  auto channel = (*cluster)->Channel(1);
  auto kv = pb::KV::NewStub(channel);
  const std::string value(64, 'v');
  for (int i = 0; i < kKeys; ++i) {
    (*backend)->Put(absl::StrCat("app/k", i), value).IgnoreError();
  }
  auto raw_key = [](int i) {
    return absl::StrCat("bench/data/app/k", i % kKeys);
  };
  std::vector<Series> series = {
      {"backend Get",
       [&](int i) {
         return (*backend)->Get(absl::StrCat("app/k", i % kKeys)).ok();
       }},
      {"raw Range",
       [&](int i) {
         grpc::ClientContext c;
         pb::RangeRequest r;
         r.set_key(raw_key(i));
         pb::RangeResponse out;
         return kv->Range(&c, r, &out).ok() && out.kvs_size() == 1;
       }},
      {"backend Put",
       [&](int i) {
         return (*backend)->Put(absl::StrCat("app/k", i % kKeys), value).ok();
       }},
      {"raw Put",
       [&](int i) {
         grpc::ClientContext c;
         pb::PutRequest r;
         r.set_key(raw_key(i));
         r.set_value(value);
         pb::PutResponse out;
         return kv->Put(&c, r, &out).ok();
       }},
      {"raw Txn(2 puts)",
       [&](int i) {
         grpc::ClientContext c;
         pb::TxnRequest t;
         pb::PutRequest* p = t.add_success()->mutable_request_put();
         p->set_key(raw_key(i));
         p->set_value(value);
         t.add_success()->mutable_request_put()->set_key("bench/revision");
         pb::TxnResponse out;
         return kv->Txn(&c, t, &out).ok();
       }},
  };
  // Warm up, then interleave blocks.
  for (Series& s : series) {
    for (int i = 0; i < 50; ++i) s.op(i);
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
  printf("%-18s %10s %10s %10s\n", "op (us)", "mean", "p50", "p99");
  for (const Series& s : series) {
    printf("%-18s %10.0f %10.0f %10.0f\n", s.name.c_str(), Mean(s.micros),
           Percentile(s.micros, 0.5), Percentile(s.micros, 0.99));
  }
  auto ratio = [&](int a, int b) {
    return Percentile(series[a].micros, 0.5) /
           Percentile(series[b].micros, 0.5);
  };
  printf(
      "\np50 ratios: Get/Range %.2fx  Put/raw Put %.2fx  "
      "Put/raw Txn(2 puts) %.2fx\n",
      ratio(0, 1), ratio(2, 3), ratio(2, 4));
  return 0;
}

}  // namespace
}  // namespace strongbox

int main(int argc, char** argv) {
  int ops = argc > 1 ? atoi(argv[1]) : 2000;
  return strongbox::Run(std::max(ops, 100));
}
