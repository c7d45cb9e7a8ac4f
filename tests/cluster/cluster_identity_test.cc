// ClusterIdentity: the CA behind the barrier, every unsealed node's leaf,
// wiping on seal (D2), renewal and CA rotation followed by standbys.
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/crypto/x509.h"
#include "strongbox/cluster_credentials.h"
#include "strongbox/testing/secret_bytes_wipe_observer.h"
#include "strongbox/testing/status_matchers.h"
#include "tests/ha/cluster.h"

namespace strongbox {
namespace {

using ::strongbox::testing_cluster::Cluster;
using ::strongbox::testing_cluster::ClusterOptions;
using ::strongbox_testing::IsOk;
using ::strongbox_testing::StatusIs;
using ::testing::Contains;
using ::testing::HasSubstr;

class RecordingCredentialsObserver : public ClusterCredentialsObserver {
 public:
  void OnClusterCredentialsChanged(
      const ClusterCredentialsChange& change) override {
    changes.push_back(change);
  }
  std::vector<std::string> Reasons() const {
    std::vector<std::string> out;
    for (const auto& c : changes) out.push_back(c.reason);
    return out;
  }
  std::vector<ClusterCredentialsChange> changes;
};

class ClusterIdentityTest : public ::testing::Test {
 protected:
  ClusterIdentityTest() : cluster_(Options()) {
    for (int i = 0; i < 3; ++i) {
      ClusterIdentity::Options o;
      o.coordinator = cluster_.nodes[i].get();
      o.advertise_address = absl::StrCat("127.0.0.", i + 1, ":820", i);
      o.clock = &cluster_.clock;
      o.leaf_lifetime = absl::Hours(1);
      o.background_thread = false;
      auto identity = ClusterIdentity::Create(o);
      EXPECT_THAT(identity.status(), IsOk());
      identities_.push_back(*std::move(identity));
      observers_.push_back(std::make_unique<RecordingCredentialsObserver>());
      identities_.back()->AddObserver(observers_.back().get());
    }
  }
  ~ClusterIdentityTest() override {
    for (size_t i = 0; i < identities_.size(); ++i) {
      if (identities_[i] == nullptr) continue;
      identities_[i]->RemoveObserver(observers_[i].get());
    }
    identities_.clear();
  }

  static ClusterOptions Options() {
    ClusterOptions o;
    o.mode = StandbyMode::kPerfStandby;
    return o;
  }

  // Initializes, unseals all, elects an active; returns its index.
  int Elect() {
    cluster_.Initialize(3, 2);
    cluster_.UnsealAll();
    cluster_.Run(absl::Seconds(2));
    return cluster_.Active();
  }

  ClusterCredentials Creds(int i) {
    absl::StatusOr<ClusterCredentials> c = identities_[i]->Current();
    EXPECT_THAT(c.status(), IsOk()) << "node " << i;
    return c.ok() ? *std::move(c) : ClusterCredentials();
  }

  Cluster cluster_;
  std::vector<std::unique_ptr<ClusterIdentity>> identities_;
  std::vector<std::unique_ptr<RecordingCredentialsObserver>> observers_;
};

TEST_F(ClusterIdentityTest, SealedNodeHasNoCredentials) {
  EXPECT_THAT(identities_[0]->Current(),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  cluster_.Initialize(3, 2);
  EXPECT_THAT(identities_[0]->Refresh(), IsOk());
  EXPECT_THAT(identities_[0]->Current(),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_TRUE(observers_[0]->changes.empty());
}

TEST_F(ClusterIdentityTest, ActiveCreatesCaAndEveryNodeMintsAVerifiedLeaf) {
  const int active = Elect();
  ASSERT_GE(active, 0);
  for (int i = 0; i < 3; ++i) ASSERT_THAT(identities_[i]->Refresh(), IsOk());
  const ClusterCredentials a = Creds(active);
  for (int i = 0; i < 3; ++i) {
    ClusterCredentials c = Creds(i);
    EXPECT_EQ(c.trust_bundle_pem, a.trust_bundle_pem) << "one CA for all";
    EXPECT_EQ(c.ca_id, a.ca_id);
    EXPECT_THAT(
        crypto::VerifyCertificateChain(
            c.certificate_chain_pem, c.trust_bundle_pem, cluster_.clock.Now()),
        IsOk());
    ASSERT_OK_AND_ASSIGN(crypto::CertificateFacts facts,
                         crypto::ParseCertificate(c.certificate_chain_pem));
    EXPECT_FALSE(facts.is_ca);
    EXPECT_EQ(facts.common_name, absl::StrCat("node-", i));
    EXPECT_THAT(facts.uris,
                Contains(absl::StrCat("urn:strongbox:node:node-", i)));
    EXPECT_THAT(facts.dns_names, Contains(std::string(kClusterServerName)));
    ASSERT_OK_AND_ASSIGN(
        auto key, crypto::EcPrivateKey::FromPem(c.private_key_pem.view()));
    EXPECT_TRUE(facts.MatchesKey(*key)) << "the key belongs to the leaf";
    EXPECT_THAT(observers_[i]->Reasons(), Contains("minted"));
  }
  // Two nodes never share a leaf key.
  EXPECT_FALSE(Creds(0).private_key_pem.Equals(Creds(1).private_key_pem));
  // Expired leaves no longer verify: they are short-lived.
  EXPECT_THAT(crypto::VerifyCertificateChain(
                  a.certificate_chain_pem, a.trust_bundle_pem,
                  cluster_.clock.Now() + absl::Hours(2)),
              StatusIs(absl::StatusCode::kPermissionDenied));
}

TEST_F(ClusterIdentityTest, StandbyWaitsForTheActiveToCreateTheCa) {
  cluster_.Initialize(3, 2);
  cluster_.Unseal(1);  // a standby before any election: no CA yet
  const HaState state = cluster_.nodes[1]->state();
  ASSERT_TRUE(state == HaState::kPerfStandby || state == HaState::kStandby);
  EXPECT_THAT(
      identities_[1]->Refresh(),
      StatusIs(absl::StatusCode::kUnavailable, HasSubstr("no cluster CA")));
  EXPECT_THAT(identities_[1]->Current(),
              StatusIs(absl::StatusCode::kUnavailable));
}

// D2: the leaf key goes when the barrier seals, inside Seal(). The wipe
// hook sees buffers by capacity, so the test compares two perf standbys
// sealed the same way, one of them without an identity: the one with an
// identity wipes exactly one more buffer, and every wiped byte is zero.
TEST_F(ClusterIdentityTest, SealWipesTheLeafKey) {
  const int active = Elect();
  ASSERT_GE(active, 0);
  const int standby = (active + 1) % 3;
  const int plain = (active + 2) % 3;
  ASSERT_THAT(identities_[standby]->Refresh(), IsOk());
  ASSERT_GT(Creds(standby).private_key_pem.size(), 0u);
  identities_[plain]->RemoveObserver(observers_[plain].get());
  identities_[plain].reset();

  struct Wipes {
    int count = 0;
    bool all_zero = true;
  };
  auto seal_counting = [&](int node) {
    Wipes wipes;
    SetSecretBytesWipeObserverForTesting(
        [](const uint8_t* data, size_t size, void* arg) {
          auto* w = static_cast<Wipes*>(arg);
          ++w->count;
          for (size_t k = 0; k < size; ++k) w->all_zero &= data[k] == 0;
        },
        &wipes);
    EXPECT_THAT(cluster_.nodes[node]->Seal(), IsOk());
    SetSecretBytesWipeObserverForTesting(nullptr, nullptr);
    return wipes;
  };
  const Wipes without = seal_counting(plain);
  const Wipes with = seal_counting(standby);
  EXPECT_EQ(with.count, without.count + 1) << "the leaf key was wiped";
  EXPECT_TRUE(with.all_zero);

  EXPECT_THAT(identities_[standby]->Current(),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  ASSERT_FALSE(observers_[standby]->changes.empty());
  EXPECT_EQ(observers_[standby]->changes.back().reason, "sealed");
  EXPECT_FALSE(observers_[standby]->changes.back().available);
  // A refresh while sealed mints nothing.
  EXPECT_THAT(identities_[standby]->Refresh(), IsOk());
  EXPECT_THAT(identities_[standby]->Current(),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_F(ClusterIdentityTest, LeafIsRenewedAfterHalfItsLifetime) {
  const int active = Elect();
  ASSERT_GE(active, 0);
  const ClusterCredentials first = Creds(active);
  cluster_.clock.Advance(absl::Minutes(20));
  ASSERT_THAT(identities_[active]->Refresh(), IsOk());
  EXPECT_EQ(Creds(active).generation, first.generation) << "not yet due";
  cluster_.clock.Advance(absl::Minutes(11));
  ASSERT_THAT(identities_[active]->Refresh(), IsOk());
  const ClusterCredentials renewed = Creds(active);
  EXPECT_GT(renewed.generation, first.generation);
  EXPECT_EQ(renewed.ca_id, first.ca_id);
  EXPECT_GT(renewed.not_after, first.not_after);
  EXPECT_EQ(observers_[active]->changes.back().reason, "renewed");
}

TEST_F(ClusterIdentityTest, CaRotationIsFollowedByStandbys) {
  const int active = Elect();
  ASSERT_GE(active, 0);
  const int standby = (active + 1) % 3;
  const int sealed = (active + 2) % 3;
  for (int i = 0; i < 3; ++i) ASSERT_THAT(identities_[i]->Refresh(), IsOk());
  const ClusterCredentials before = Creds(standby);
  ASSERT_THAT(cluster_.nodes[sealed]->Seal(), IsOk());

  EXPECT_THAT(identities_[standby]->RotateCa(),
              StatusIs(absl::StatusCode::kUnavailable));
  ASSERT_THAT(identities_[active]->RotateCa(), IsOk());
  const ClusterCredentials rotated = Creds(active);
  EXPECT_NE(rotated.ca_id, before.ca_id);
  EXPECT_EQ(observers_[active]->changes.back().reason, "ca_rotated");
  // The old leaf is still trusted during the transition; the new one is.
  EXPECT_THAT(crypto::VerifyCertificateChain(before.certificate_chain_pem,
                                             rotated.trust_bundle_pem,
                                             cluster_.clock.Now()),
              IsOk());

  ASSERT_THAT(identities_[standby]->Refresh(), IsOk());
  const ClusterCredentials after = Creds(standby);
  EXPECT_EQ(after.ca_id, rotated.ca_id);
  EXPECT_EQ(observers_[standby]->changes.back().reason, "ca_rotated");
  EXPECT_THAT(crypto::VerifyCertificateChain(after.certificate_chain_pem,
                                             rotated.trust_bundle_pem,
                                             cluster_.clock.Now()),
              IsOk());
  // The new leaf does not verify against the old CA alone.
  EXPECT_THAT(crypto::VerifyCertificateChain(after.certificate_chain_pem,
                                             before.trust_bundle_pem,
                                             cluster_.clock.Now()),
              StatusIs(absl::StatusCode::kPermissionDenied));

  // A node sealed during the rotation catches up when unsealed.
  cluster_.Unseal(sealed);
  ASSERT_THAT(identities_[sealed]->Refresh(), IsOk());
  EXPECT_EQ(Creds(sealed).ca_id, rotated.ca_id);
}

// The background thread refreshing while the host seals, unseals and
// reads: run under TSan (tools/test's tsan stage) for races; afterwards
// the identity is consistent with the node's state.
TEST_F(ClusterIdentityTest, BackgroundRefreshRacesSealUnsealAndReaders) {
  const int active = Elect();
  ASSERT_GE(active, 0);
  const int standby = (active + 1) % 3;
  identities_[standby]->RemoveObserver(observers_[standby].get());
  identities_[standby].reset();
  ClusterIdentity::Options o;
  o.coordinator = cluster_.nodes[standby].get();
  o.clock = &cluster_.clock;
  o.background_thread = true;
  o.refresh_interval = absl::Milliseconds(1);
  ASSERT_OK_AND_ASSIGN(identities_[standby], ClusterIdentity::Create(o));
  identities_[standby]->AddObserver(observers_[standby].get());

  std::atomic<bool> stop{false};
  std::atomic<int> seen{0};
  std::thread reader([&] {
    while (!stop.load()) {
      absl::StatusOr<ClusterCredentials> c = identities_[standby]->Current();
      if (c.ok()) {
        EXPECT_FALSE(c->private_key_pem.empty());
        seen.fetch_add(1);
      }
    }
  });
  for (int round = 0; round < 20; ++round) {
    ASSERT_THAT(cluster_.nodes[standby]->Seal(), IsOk());
    EXPECT_THAT(identities_[standby]->Current(),
                StatusIs(absl::StatusCode::kFailedPrecondition));
    cluster_.Unseal(standby);
  }
  stop.store(true);
  reader.join();
  ASSERT_THAT(identities_[standby]->Refresh(), IsOk());
  EXPECT_THAT(identities_[standby]->Current().status(), IsOk());
}

TEST(ClusterIdentityOptionsTest, BadOptionsAreRefused) {
  ClusterIdentity::Options o;
  EXPECT_THAT(ClusterIdentity::Create(o),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace strongbox
