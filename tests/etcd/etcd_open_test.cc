// EtcdBackend::Open() on bad input (D6): each a clear status naming what is
// wrong, at Open(), never a hang past the dial timeout. Unreachable
// endpoints, malformed URLs and options, a prefix that holds something
// else, TLS with a wrong CA or no client certificate, plain http to a TLS
// cluster, and a cluster with authentication on but no (or wrong)
// credentials.
#include <cstdlib>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "strongbox/etcd_backend.h"
#include "strongbox/testing/status_matchers.h"
#include "tests/etcd/etcd_cluster.h"

namespace strongbox {
namespace {

using ::testing::HasSubstr;
using testing_etcd::ClusterOptions;
using testing_etcd::EtcdCluster;

std::unique_ptr<EtcdCluster> Start(bool tls) {
  ClusterOptions options;
  options.members = 1;
  options.tls = tls;
  auto cluster = EtcdCluster::Start(options);
  EXPECT_TRUE(cluster.ok()) << cluster.status();
  return cluster.ok() ? *std::move(cluster) : nullptr;
}

// Open() that must fail; checks it failed within the dial timeout (plus
// slack for the one fail-fast call that fetches gRPC's reason).
absl::Status OpenFails(EtcdBackendOptions options) {
  options.dial_timeout = absl::Milliseconds(500);
  options.request_timeout = absl::Seconds(1);
  const absl::Time start = absl::Now();
  auto backend = EtcdBackend::Open(options);
  const absl::Duration took = absl::Now() - start;
  EXPECT_LT(took, absl::Seconds(3)) << "Open() hung";
  EXPECT_FALSE(backend.ok());
  return backend.ok() ? absl::OkStatus() : backend.status();
}

TEST(EtcdOpenTest, UnreachableEndpointsAreUnavailableWithinTheDialTimeout) {
  EtcdBackendOptions options;
  options.endpoints = {"http://127.0.0.1:1", "http://127.0.0.1:2"};
  absl::Status s = OpenFails(options);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("http://127.0.0.1:1"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("dial timeout"));
}

TEST(EtcdOpenTest, MalformedOptionsAreInvalidArgument) {
  const std::vector<std::vector<std::string>> bad_endpoints = {
      {},
      {"127.0.0.1:2379"},
      {"http://127.0.0.1"},
      {"http://h:99999"},
      {"http://a:1", "https://b:2"},
      {"ftp://a:1"}};
  for (const auto& endpoints : bad_endpoints) {
    EtcdBackendOptions options;
    options.endpoints = endpoints;
    EXPECT_EQ(OpenFails(options).code(), absl::StatusCode::kInvalidArgument)
        << absl::StrJoin(endpoints, ",");
  }
  for (const std::string& prefix :
       std::vector<std::string>{"", "no-slash", "a\nb/"}) {
    EtcdBackendOptions options;
    options.endpoints = {"http://127.0.0.1:2379"};
    options.prefix = prefix;
    EXPECT_EQ(OpenFails(options).code(), absl::StatusCode::kInvalidArgument)
        << prefix;
  }
  EtcdBackendOptions tls_on_http;
  tls_on_http.endpoints = {"http://127.0.0.1:2379"};
  tls_on_http.ca_pem = "x";
  EXPECT_EQ(OpenFails(tls_on_http).code(), absl::StatusCode::kInvalidArgument);
  EtcdBackendOptions missing_file;
  missing_file.endpoints = {"https://127.0.0.1:2379"};
  missing_file.ca_file = "/nonexistent/ca.pem";
  absl::Status s = OpenFails(missing_file);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("/nonexistent/ca.pem"));
}

TEST(EtcdOpenTest, PrefixHoldingSomethingElseIsRefused) {
  auto cluster = Start(/*tls=*/false);
  ASSERT_NE(cluster, nullptr);
  EtcdBackendOptions options;
  options.endpoints = cluster->endpoints();
  options.prefix = "app/";
  {
    auto ours = EtcdBackend::Open(options);
    ASSERT_OK(ours);
    ASSERT_OK((*ours)->Put("k", "v"));
  }
  // Opening again finds the format record: fine.
  ASSERT_OK(EtcdBackend::Open(options));
  // Someone else's keys under a prefix: refused, nothing written.
  EtcdBackendOptions foreign = options;
  foreign.prefix = "app/data/";
  absl::Status s = OpenFails(foreign);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("app/data/"));
  EXPECT_EQ(testing_etcd::RawVersion(*cluster, 0, "app/data/format").value(),
            0);
}

// Nodes starting together on an empty prefix all open it (the format
// record is created once, in one Txn with the emptiness check).
TEST(EtcdOpenTest, ConcurrentOpensOfAnEmptyPrefixAllSucceed) {
  auto cluster = Start(/*tls=*/false);
  ASSERT_NE(cluster, nullptr);
  for (int round = 0; round < 5; ++round) {
    EtcdBackendOptions options;
    options.endpoints = cluster->endpoints();
    options.prefix = absl::StrCat("together", round, "/");
    std::vector<absl::Status> results(8);
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t) {
      threads.emplace_back(
          [&, t] { results[t] = EtcdBackend::Open(options).status(); });
    }
    for (std::thread& t : threads) t.join();
    for (const absl::Status& s : results) EXPECT_OK(s);
  }
}

// serializable_reads (perf standbys): reads served from the member's own
// state. Through the member that applied them, a backend sees its writes.
TEST(EtcdOpenTest, SerializableReadsServeTheMembersState) {
  auto cluster = Start(/*tls=*/false);
  ASSERT_NE(cluster, nullptr);
  EtcdBackendOptions options;
  options.endpoints = cluster->endpoints();
  options.prefix = "ser/";
  options.serializable_reads = true;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<EtcdBackend> backend,
                       EtcdBackend::Open(options));
  ASSERT_OK_AND_ASSIGN(uint64_t rev, backend->Put("a/b", "v"));
  ASSERT_OK_AND_ASSIGN(Entry got, backend->Get("a/b"));
  EXPECT_EQ(got.value, "v");
  EXPECT_EQ(got.version, rev);
  EXPECT_EQ(*backend->Revision(), rev);
  EXPECT_EQ(*backend->List(""), std::vector<std::string>{"a/"});
}

TEST(EtcdOpenTest, TlsMistakesAreClearAndPrompt) {
  auto cluster = Start(/*tls=*/true);
  ASSERT_NE(cluster, nullptr);
  EtcdBackendOptions good;
  good.endpoints = cluster->endpoints();
  good.ca_file = cluster->ca_file();
  good.cert_file = cluster->client_cert_file();
  good.key_file = cluster->client_key_file();
  {
    auto backend = EtcdBackend::Open(good);
    ASSERT_OK(backend);
    ASSERT_OK((*backend)->Put("k", "v"));
  }

  EtcdBackendOptions wrong_ca = good;
  wrong_ca.ca_file = cluster->other_ca_file();
  absl::Status s = OpenFails(wrong_ca);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  printf("wrong CA: %s\n", std::string(s.message()).c_str());

  EtcdBackendOptions no_client_cert = good;
  no_client_cert.cert_file.clear();
  no_client_cert.key_file.clear();
  s = OpenFails(no_client_cert);
  EXPECT_TRUE(absl::IsUnavailable(s) || absl::IsUnauthenticated(s)) << s;
  printf("no client certificate: %s\n", std::string(s.message()).c_str());

  EtcdBackendOptions plain = good;
  plain.ca_file.clear();
  plain.cert_file.clear();
  plain.key_file.clear();
  plain.endpoints = {absl::StrCat(
      "http://", cluster->endpoint(0).substr(std::string("https://").size()))};
  s = OpenFails(plain);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  printf("http to a TLS member: %s\n", std::string(s.message()).c_str());
}

TEST(EtcdOpenTest, AuthOnWithoutCredentialsIsUnauthenticated) {
  auto cluster = Start(/*tls=*/false);
  ASSERT_NE(cluster, nullptr);
  const std::string ctl =
      absl::StrCat("/usr/bin/etcdctl --endpoints=", cluster->endpoint(0),
                   " >/dev/null 2>&1 ");
  ASSERT_EQ(system((ctl + "user add root --new-user-password=rootpw").c_str()),
            0);
  system((ctl + "role add root").c_str());  // may exist already
  ASSERT_EQ(system((ctl + "user grant-role root root").c_str()), 0);
  ASSERT_EQ(system((ctl + "auth enable").c_str()), 0);

  EtcdBackendOptions options;
  options.endpoints = cluster->endpoints();
  absl::Status s = OpenFails(options);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("authentication"));

  EtcdBackendOptions wrong = options;
  wrong.username = "root";
  wrong.password = "wrong";
  s = OpenFails(wrong);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated) << s;
  EXPECT_THAT(std::string(s.message()), ::testing::Not(HasSubstr("wrong")));

  EtcdBackendOptions right = options;
  right.username = "root";
  right.password = "rootpw";
  auto backend = EtcdBackend::Open(right);
  ASSERT_OK(backend);
  ASSERT_OK((*backend)->Put("k", "v"));
  EXPECT_EQ((*backend)->Get("k")->value, "v");
  AcquireOptions acquire;
  acquire.holder = "n";
  acquire.ttl = absl::Seconds(5);
  ASSERT_OK_AND_ASSIGN(auto grant, (*backend)->ha()->Acquire(acquire));
  ASSERT_OK(grant->Renew());
  ASSERT_OK((*backend)->Put("k", "v2", grant->fence()));
}

}  // namespace
}  // namespace strongbox
