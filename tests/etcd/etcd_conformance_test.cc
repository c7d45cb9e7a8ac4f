// The shared backend conformance suite, run against EtcdBackend on a real
// three-member etcd cluster (tests/etcd/etcd_cluster.h), one fresh key
// prefix per test. etcd counts lease TTLs in whole seconds on its own
// clock, so the lease cases run in real time (real_time_lease).
//
// Built twice (BUILD.bazel): plain http, and with STRONGBOX_ETCD_TLS over
// https with client certificates made at test time.
#include <atomic>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "strongbox/etcd_backend.h"
#include "strongbox/testing/backend_conformance.h"
#include "tests/etcd/etcd_cluster.h"

namespace strongbox {
namespace {

testing_etcd::EtcdCluster* cluster = nullptr;

class ClusterEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    testing_etcd::ClusterOptions options;
#ifdef STRONGBOX_ETCD_TLS
    options.tls = true;
#endif
    auto started = testing_etcd::EtcdCluster::Start(options);
    ASSERT_TRUE(started.ok()) << started.status();
    cluster_ = *std::move(started);
    cluster = cluster_.get();
  }
  void TearDown() override {
    cluster = nullptr;
    cluster_.reset();
  }

 private:
  std::unique_ptr<testing_etcd::EtcdCluster> cluster_;
};

const ::testing::Environment* const env =
    ::testing::AddGlobalTestEnvironment(new ClusterEnvironment);

std::unique_ptr<Backend> OpenFresh() {
  static std::atomic<int> next{0};
  if (cluster == nullptr) return nullptr;
  EtcdBackendOptions options;
  options.endpoints = cluster->endpoints();
  options.prefix = absl::StrCat("conformance/", next++, "/");
#ifdef STRONGBOX_ETCD_TLS
  options.ca_file = cluster->ca_file();
  options.cert_file = cluster->client_cert_file();
  options.key_file = cluster->client_key_file();
#endif
  auto backend = EtcdBackend::Open(options);
  EXPECT_TRUE(backend.ok()) << backend.status();
  if (!backend.ok()) return nullptr;
  return *std::move(backend);
}

INSTANTIATE_TEST_SUITE_P(Etcd, BackendConformanceTest,
                         testing::Values(BackendFactory{
                             "Etcd", [](Clock*) { return OpenFresh(); },
                             /*real_time_lease=*/true,
                             // 8 x 125 contended increments: each commit
                             // is a Raft round and an fsync on 3 members
                             // (8 x 1000 took a minute on 2 cores).
                             /*contended_increments=*/125}),
                         BackendFactoryName);

}  // namespace
}  // namespace strongbox
