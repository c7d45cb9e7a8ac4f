// strongbox and OpenSSL's TLS in one process (--config=openssl only).
//
// The regression test for the crash that made the OpenSSL provider
// necessary: with strongbox on Debian's BoringSSL, a process that also
// loads OpenSSL 3's libssl segfaults as soon as a TLS connection is made
// (libssl's libcrypto calls bind to BoringSSL's unversioned symbols). Here
// one binary links both strongbox and libssl: TLS handshakes and echoes
// run on some threads (a certificate generated at start-up, verified by
// the clients) while other threads use the store — KV put/get and Transit
// encrypt/decrypt. Runs under ASan in tools/test's openssl-asan stage.
#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "lib/crypto/aead.h"
#include "lib/crypto/testing/tls_loopback.h"
#include "strongbox/secret_store.h"
#include "strongbox/testing/status_matchers.h"
#include "tests/ha/cluster.h"

namespace strongbox {
namespace {

using testing_cluster::Cluster;
using testing_cluster::ClusterOptions;

TEST(CoexistenceTest, TlsAndTheStoreInOneProcess) {
  ASSERT_EQ(crypto::ProviderName(), "openssl");

  ClusterOptions o;
  o.nodes = 1;
  Cluster cluster(o);
  cluster.Initialize(1, 1);
  cluster.UnsealAll();
  cluster.Run(absl::Seconds(1));
  const int active = cluster.Active();
  ASSERT_GE(active, 0);
  SecretStore::Options so;
  so.coordinator = cluster.nodes[active].get();
  so.clock = &cluster.clock;
  absl::StatusOr<std::unique_ptr<SecretStore>> store = SecretStore::Create(so);
  ASSERT_OK(store);
  ASSERT_OK((*store)->TransitCreateKey("coexist"));

  absl::StatusOr<std::unique_ptr<crypto::testing::TlsEchoServer>> server =
      crypto::testing::TlsEchoServer::Start();
  ASSERT_OK(server);
  const int port = (*server)->port();
  const std::string pem = (*server)->certificate_pem();

  constexpr int kTlsThreads = 3, kStoreThreads = 3, kRounds = 15;
  std::atomic<int> tls_ok{0}, store_ok{0};
  std::vector<std::string> errors[kTlsThreads + kStoreThreads];
  std::vector<std::thread> threads;
  for (int t = 0; t < kTlsThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kRounds; ++i) {
        const std::string message =
            absl::StrCat("hello from ", t, "/", i, std::string(i * 97, 'm'));
        absl::StatusOr<std::string> echo =
            crypto::testing::TlsRoundTrip(port, pem, message);
        if (echo.ok() && *echo == message) {
          ++tls_ok;
        } else {
          errors[t].push_back(echo.ok() ? "wrong echo"
                                        : std::string(echo.status().message()));
        }
      }
    });
  }
  for (int t = 0; t < kStoreThreads; ++t) {
    threads.emplace_back([&, t] {
      auto& errs = errors[kTlsThreads + t];
      for (int i = 0; i < kRounds; ++i) {
        const std::string path = absl::StrCat("apps/", t, "/", i);
        const std::map<std::string, std::string> data = {
            {"password", absl::StrCat("pw-", t, "-", i)}};
        absl::StatusOr<KvWriteResult> put = (*store)->KvPut(path, data);
        absl::StatusOr<store::KvSecret> got = (*store)->KvGet(path);
        const std::string plain = absl::StrCat("transit ", t, " ", i);
        absl::StatusOr<std::string> ct =
            (*store)->TransitEncrypt("coexist", plain);
        absl::StatusOr<std::string> pt =
            ct.ok() ? (*store)->TransitDecrypt("coexist", *ct)
                    : absl::StatusOr<std::string>(ct.status());
        if (put.ok() && got.ok() &&
            got->data().at("password") == data.at("password") && pt.ok() &&
            *pt == plain) {
          ++store_ok;
        } else {
          errs.push_back(absl::StrCat(
              "store round ", i, ": put ", put.status().ToString(), " get ",
              got.status().ToString(), " transit ", pt.status().ToString()));
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (const auto& errs : errors) {
    for (const std::string& e : errs) ADD_FAILURE() << e;
  }
  EXPECT_EQ(tls_ok.load(), kTlsThreads * kRounds);
  EXPECT_EQ(store_ok.load(), kStoreThreads * kRounds);
  EXPECT_EQ((*server)->handshakes(), kTlsThreads * kRounds);
}

}  // namespace
}  // namespace strongbox
