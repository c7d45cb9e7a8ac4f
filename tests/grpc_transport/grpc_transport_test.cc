// //:grpc_transport in one process, real gRPC and TLS on loopback: two
// nodes on one InMemoryBackend (an active and a performance standby), each
// with its ClusterIdentity, GrpcForwarder, SecretStore and ForwardingServer.
#include "strongbox/grpc_transport.h"

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/crypto/x509.h"
#include "lib/grpc_transport/forwarding.grpc.pb.h"
#include "strongbox/cluster_credentials.h"
#include "strongbox/in_memory_backend.h"
#include "strongbox/secret_store.h"
#include "strongbox/testing/status_matchers.h"
#include "tests/grpc_transport/free_port.h"

namespace strongbox {
namespace {

using ::strongbox_testing::IsOk;
using ::strongbox_testing::StatusIs;
using ::testing::HasSubstr;

struct Node {
  std::string address;
  std::unique_ptr<HaCoordinator> coordinator;
  std::unique_ptr<ClusterIdentity> identity;
  std::unique_ptr<GrpcForwarder> forwarder;
  std::unique_ptr<SecretStore> store;
  std::unique_ptr<ForwardingServer> server;
};

class GrpcTransportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    backend_ = NewInMemoryBackend({});
    for (int i = 0; i < 2; ++i) {
      Node& n = nodes_[i];
      n.address = absl::StrCat("127.0.0.1:", testing_transport::FreePort());
      HaCoordinator::Options o;
      o.backend = backend_.get();
      o.node_id = absl::StrCat("node-", i);
      o.advertise_address = n.address;
      o.standby_mode = StandbyMode::kPerfStandby;
      o.lease_ttl = absl::Seconds(3);
      o.renew_interval = absl::Milliseconds(500);
      o.leader_refresh = absl::Milliseconds(100);
      ASSERT_OK_AND_ASSIGN(n.coordinator, HaCoordinator::Create(o));
      ClusterIdentity::Options io;
      io.coordinator = n.coordinator.get();
      io.advertise_address = n.address;
      io.refresh_interval = absl::Milliseconds(100);
      ASSERT_OK_AND_ASSIGN(n.identity, ClusterIdentity::Create(io));
      GrpcForwarder::Options fo;
      fo.identity = n.identity.get();
      fo.deadline = absl::Seconds(5);
      ASSERT_OK_AND_ASSIGN(n.forwarder, GrpcForwarder::Create(fo));
      SecretStore::Options so;
      so.coordinator = n.coordinator.get();
      so.forwarder = n.forwarder.get();
      ASSERT_OK_AND_ASSIGN(n.store, SecretStore::Create(so));
      ForwardingServer::Options po;
      po.listen_address = n.address;
      po.store = n.store.get();
      po.coordinator = n.coordinator.get();
      po.identity = n.identity.get();
      ASSERT_OK_AND_ASSIGN(n.server, ForwardingServer::Create(po));
    }
    // Node 0 initializes and is unsealed first, so it becomes the active.
    ASSERT_OK_AND_ASSIGN(shares_, nodes_[0].coordinator->Initialize(1, 1));
    ASSERT_THAT(nodes_[0].coordinator->Unseal(shares_[0]).status(), IsOk());
    ASSERT_TRUE(AwaitState(0, HaState::kActive));
    ASSERT_THAT(nodes_[1].coordinator->Unseal(shares_[0]).status(), IsOk());
    ASSERT_TRUE(AwaitState(1, HaState::kPerfStandby));
    for (Node& n : nodes_) {
      ASSERT_THAT(n.server->AwaitServing(0, absl::Seconds(20)), IsOk());
    }
  }

  void TearDown() override {
    for (Node& n : nodes_) n.server.reset();
    for (Node& n : nodes_) {
      n.store.reset();
      n.forwarder.reset();
      n.identity.reset();
    }
    for (Node& n : nodes_) n.coordinator.reset();
  }

  bool AwaitState(int i, HaState state) {
    const absl::Time give_up = absl::Now() + absl::Seconds(20);
    while (absl::Now() < give_up) {
      if (nodes_[i].coordinator->state() == state) return true;
      absl::SleepFor(absl::Milliseconds(10));
    }
    return false;
  }

  // A raw client of the service at `address` with `creds`.
  static grpc::Status RawForward(
      const std::string& address,
      std::shared_ptr<grpc::ChannelCredentials> creds,
      const std::string& request_bytes, transport::ForwardResponse* response) {
    grpc::ChannelArguments args;
    args.SetSslTargetNameOverride(std::string(kClusterServerName));
    auto stub = transport::Forwarding::NewStub(
        grpc::CreateCustomChannel(address, creds, args));
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
    transport::ForwardRequest request;
    request.set_request(request_bytes);
    return stub->Forward(&ctx, request, response);
  }

  static std::string PutBytes(const std::string& path) {
    store::Request r;
    r.set_forwarded(true);
    r.mutable_kv_put()->set_path(path);
    (*r.mutable_kv_put()->mutable_data())["v"] = "intruder";
    return r.SerializeAsString();
  }

  // A raw client with `creds`' certificate and key, trusting `trust`.
  static std::shared_ptr<grpc::ChannelCredentials> MemberCredentials(
      const ClusterCredentials& creds, const std::string& trust) {
    grpc::SslCredentialsOptions o;
    o.pem_root_certs = trust;
    o.pem_cert_chain = creds.certificate_chain_pem;
    o.pem_private_key = std::string(creds.private_key_pem.view());
    return grpc::SslCredentials(o);
  }

  std::unique_ptr<Backend> backend_;
  std::vector<std::string> shares_;
  Node nodes_[2];
};

TEST_F(GrpcTransportTest, PerfStandbyWriteIsForwardedToTheActive) {
  ASSERT_OK_AND_ASSIGN(KvWriteResult put,
                       nodes_[1].store->KvPut("app/a", {{"v", "1"}}));
  EXPECT_EQ(put.version, 1u);
  ASSERT_OK_AND_ASSIGN(store::KvSecret got, nodes_[0].store->KvGet("app/a"));
  EXPECT_EQ(got.data().at("v"), "1");
  ASSERT_OK_AND_ASSIGN(got, nodes_[1].store->KvGet("app/a", 0, put.index));
  EXPECT_EQ(got.data().at("v"), "1");
  // A failed check-and-set comes back as the active's ABORTED.
  EXPECT_THAT(nodes_[1].store->KvPut("app/a", {{"v", "2"}}, 0).status(),
              StatusIs(absl::StatusCode::kAborted));
  // The echo runs over the same mTLS channel.
  EXPECT_THAT(nodes_[1].forwarder->Echo(nodes_[0].address, "ping"),
              strongbox_testing::IsOkAndHolds("ping"));
}

// Clients without a certificate of this cluster fail the TLS handshake
// (they trust the cluster's CA, so only the server can be refusing them),
// and nothing they sent is executed. The same raw client with a member's
// credentials gets through: the refusals are the certificates'.
TEST_F(GrpcTransportTest, ClientsWithoutAClusterCertificateAreRefused) {
  ASSERT_OK_AND_ASSIGN(ClusterCredentials member,
                       nodes_[1].identity->Current());
  const absl::Time now = absl::Now();

  // Another cluster: its own CA, a leaf with the right names.
  ASSERT_OK_AND_ASSIGN(auto other_ca_key, crypto::EcPrivateKey::Generate());
  crypto::CertificateSpec ca_spec;
  ca_spec.common_name = "strongbox cluster CA other";
  ca_spec.not_before = now - absl::Hours(1);
  ca_spec.not_after = now + absl::Hours(24);
  ca_spec.is_ca = true;
  ASSERT_OK_AND_ASSIGN(std::string other_ca,
                       crypto::SelfSignCertificate(*other_ca_key, ca_spec));
  ASSERT_OK_AND_ASSIGN(auto leaf_key, crypto::EcPrivateKey::Generate());
  crypto::CertificateSpec leaf_spec;
  leaf_spec.common_name = "node-1";
  leaf_spec.dns_names = {std::string(kClusterServerName)};
  leaf_spec.uris = {"urn:strongbox:node:node-1"};
  leaf_spec.not_before = now - absl::Hours(1);
  leaf_spec.not_after = now + absl::Hours(1);
  leaf_spec.serial = 2;
  ASSERT_OK_AND_ASSIGN(
      std::string other_leaf,
      crypto::IssueCertificate(*other_ca_key, other_ca, *leaf_key, leaf_spec));
  // Self-signed: a "CA" certificate of the leaf key itself.
  crypto::CertificateSpec self_spec = ca_spec;
  self_spec.common_name = "node-1";
  ASSERT_OK_AND_ASSIGN(std::string self_signed,
                       crypto::SelfSignCertificate(*leaf_key, self_spec));
  std::string leaf_key_pem;
  ASSERT_THAT(leaf_key->ExportPkcs8Pem(
                  [&](absl::string_view p) { leaf_key_pem = std::string(p); }),
              IsOk());

  struct Intruder {
    std::string name;
    std::string chain;
  };
  const std::vector<Intruder> intruders = {
      {"no certificate", ""},
      {"self-signed", self_signed},
      {"other cluster", other_leaf + other_ca},
  };
  for (size_t k = 0; k < intruders.size(); ++k) {
    SCOPED_TRACE(intruders[k].name);
    grpc::SslCredentialsOptions o;
    o.pem_root_certs = member.trust_bundle_pem;
    if (!intruders[k].chain.empty()) {
      o.pem_cert_chain = intruders[k].chain;
      o.pem_private_key = leaf_key_pem;
    }
    const std::string path = absl::StrCat("intruder/", k);
    transport::ForwardResponse response;
    grpc::Status status = RawForward(nodes_[0].address, grpc::SslCredentials(o),
                                     PutBytes(path), &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE)
        << status.error_message();
    EXPECT_THAT(nodes_[0].store->KvGet(path).status(),
                StatusIs(absl::StatusCode::kNotFound))
        << "nothing was executed";
  }

  // Control: the member's own credentials through the same raw client.
  grpc::SslCredentialsOptions o;
  o.pem_root_certs = member.trust_bundle_pem;
  o.pem_cert_chain = member.certificate_chain_pem;
  o.pem_private_key = std::string(member.private_key_pem.view());
  transport::ForwardResponse response;
  grpc::Status status = RawForward(nodes_[0].address, grpc::SslCredentials(o),
                                   PutBytes("member/x"), &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  store::Response answer;
  ASSERT_TRUE(answer.ParseFromString(response.response()));
  EXPECT_EQ(answer.code(), 0) << answer.error();
  EXPECT_THAT(nodes_[0].store->KvGet("member/x").status(), IsOk());
}

TEST_F(GrpcTransportTest, GarbageAndOversizedMessagesGetClearErrors) {
  // Bytes that are no Request: a serialized INVALID_ARGUMENT Response.
  for (const std::string& garbage :
       {std::string("\xff\xff\xff\xff garbage", 13), std::string(),
        std::string(1000, '\x0a')}) {
    ASSERT_OK_AND_ASSIGN(std::string bytes, nodes_[1].forwarder->Forward(
                                                nodes_[0].address, garbage));
    store::Response response;
    ASSERT_TRUE(response.ParseFromString(bytes));
    EXPECT_THAT(ResponseStatus(response).code(),
                ::testing::AnyOf(absl::StatusCode::kInvalidArgument,
                                 absl::StatusCode::kUnavailable))
        << response.error();
  }
  // Above the limit the sender refuses before dialing ...
  const std::string big(kDefaultMaxForwardBytes + 1, 'x');
  EXPECT_THAT(
      nodes_[1].forwarder->Forward(nodes_[0].address, big),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("too large")));
  // ... and the server refuses what a careless sender sends anyway.
  GrpcForwarder::Options lax;
  lax.identity = nodes_[1].identity.get();
  lax.max_message_bytes = size_t{64} << 20;
  ASSERT_OK_AND_ASSIGN(auto careless, GrpcForwarder::Create(lax));
  EXPECT_THAT(careless->Forward(nodes_[0].address, big),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("larger than max")));
  // The server is alive and still serves.
  EXPECT_THAT(nodes_[1].forwarder->Echo(nodes_[0].address, "still here"),
              strongbox_testing::IsOkAndHolds("still here"));
  ASSERT_OK_AND_ASSIGN(KvWriteResult put,
                       nodes_[1].store->KvPut("app/after", {{"v", "1"}}));
  EXPECT_EQ(put.version, 1u);
}

TEST_F(GrpcTransportTest, SealedNodeNeitherForwardsNorServes) {
  ASSERT_THAT(nodes_[1].coordinator->Seal(), IsOk());
  // Its forwarder has no credentials: it does not dial.
  EXPECT_THAT(nodes_[1].forwarder->Echo(nodes_[0].address, "x"),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(nodes_[1].store->KvPut("app/sealed", {{"v", "1"}}).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(nodes_[0].store->KvGet("app/sealed").status(),
              StatusIs(absl::StatusCode::kNotFound));
  // Its server stops listening: a member cannot reach it.
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  absl::StatusOr<std::string> echo;
  while (absl::Now() < give_up) {
    echo = nodes_[0].forwarder->Echo(nodes_[1].address, "x");
    if (!echo.ok()) break;
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_THAT(echo.status(), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(nodes_[1].server->port(), 0);
}

// The service in a host's own gRPC server (the normal case): the host
// builds the server with ForwardingService::ServerCredentials(); the
// service itself refuses while its node is sealed, even though the host's
// server keeps listening.
TEST_F(GrpcTransportTest, ServiceInTheHostsOwnServerRefusesWhileSealed) {
  ForwardingService::Options so;
  so.store = nodes_[1].store.get();
  so.coordinator = nodes_[1].coordinator.get();
  ASSERT_OK_AND_ASSIGN(auto service, ForwardingService::Create(so));
  ASSERT_OK_AND_ASSIGN(ClusterCredentials creds, nodes_[1].identity->Current());
  ASSERT_OK_AND_ASSIGN(auto server_creds,
                       ForwardingService::ServerCredentials(creds));
  const std::string address =
      absl::StrCat("127.0.0.1:", testing_transport::FreePort());
  grpc::ServerBuilder builder;
  builder.AddListeningPort(address, server_creds);
  builder.RegisterService(service->service());
  builder.SetMaxReceiveMessageSize(static_cast<int>(kDefaultMaxForwardBytes));
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);

  EXPECT_THAT(nodes_[0].forwarder->Echo(address, "hi"),
              strongbox_testing::IsOkAndHolds("hi"));
  ASSERT_THAT(nodes_[1].coordinator->Seal(), IsOk());
  EXPECT_THAT(
      nodes_[0].forwarder->Echo(address, "hi"),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("sealed")));
  store::Request put;
  put.set_forwarded(true);
  put.mutable_kv_put()->set_path("app/via-sealed");
  (*put.mutable_kv_put()->mutable_data())["v"] = "1";
  EXPECT_THAT(nodes_[0].forwarder->Forward(address, put.SerializeAsString()),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(nodes_[0].store->KvGet("app/via-sealed").status(),
              StatusIs(absl::StatusCode::kNotFound));
  server->Shutdown();
}

// A node sealed while the active rotated the cluster CA twice (so the CA its
// last leaf chains to is trusted nowhere any more: the record keeps one
// previous CA) catches up when unsealed: it mints a leaf under the current
// CA, and forwarding works both ways again, over real TLS.
TEST_F(GrpcTransportTest, NodeSealedThroughCaRotationsCatchesUpAfterUnseal) {
  ASSERT_OK_AND_ASSIGN(ClusterCredentials before,
                       nodes_[1].identity->Current());
  ASSERT_THAT(nodes_[1].coordinator->Seal(), IsOk());
  ASSERT_THAT(nodes_[0].identity->RotateCa(), IsOk());
  ASSERT_THAT(nodes_[0].identity->RotateCa(), IsOk());
  ASSERT_OK_AND_ASSIGN(ClusterCredentials active,
                       nodes_[0].identity->Current());
  ASSERT_NE(active.ca_id, before.ca_id);
  ASSERT_THAT(
      nodes_[0].server->AwaitServing(active.generation, absl::Seconds(20)),
      IsOk());

  // The leaf the node held before it sealed is refused at the handshake
  // now (the client trusts the new CA, so only the server refuses), and
  // nothing is executed: without catching up the node could not forward.
  transport::ForwardResponse response;
  grpc::Status stale = RawForward(
      nodes_[0].address, MemberCredentials(before, active.trust_bundle_pem),
      PutBytes("stale/x"), &response);
  EXPECT_EQ(stale.error_code(), grpc::StatusCode::UNAVAILABLE)
      << stale.error_message();
  EXPECT_THAT(nodes_[0].store->KvGet("stale/x").status(),
              StatusIs(absl::StatusCode::kNotFound));

  ASSERT_THAT(nodes_[1].coordinator->Unseal(shares_[0]).status(), IsOk());
  ASSERT_TRUE(AwaitState(1, HaState::kPerfStandby));
  absl::StatusOr<ClusterCredentials> after;
  const absl::Time give_up = absl::Now() + absl::Seconds(20);
  while (absl::Now() < give_up) {
    after = nodes_[1].identity->Current();
    if (after.ok() && after->ca_id == active.ca_id) break;
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_THAT(after.status(), IsOk());
  EXPECT_EQ(after->ca_id, active.ca_id) << "still on the old CA";
  ASSERT_THAT(
      nodes_[1].server->AwaitServing(after->generation, absl::Seconds(20)),
      IsOk());

  ASSERT_OK_AND_ASSIGN(KvWriteResult put,
                       nodes_[1].store->KvPut("app/rotated", {{"v", "1"}}));
  EXPECT_EQ(put.version, 1u);
  ASSERT_OK_AND_ASSIGN(store::KvSecret got,
                       nodes_[0].store->KvGet("app/rotated"));
  EXPECT_EQ(got.data().at("v"), "1");
  EXPECT_THAT(nodes_[0].forwarder->Echo(nodes_[1].address, "back"),
              strongbox_testing::IsOkAndHolds("back"));
}

}  // namespace
}  // namespace strongbox
