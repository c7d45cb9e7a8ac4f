// A deposed-but-alive active: the backend ended its grant (broken by an
// operator, taken over) and another node is active, but its own loop has
// not run yet, so it still believes it is active and its lease deadline
// (HA2) has not passed. Its Transit key cache was written under its fence;
// it must not trust it any longer (issue 9 item 7).
#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "strongbox/requests.pb.h"
#include "strongbox/secret_store.h"
#include "tests/ha/cluster.h"

namespace strongbox {
namespace {

using ::strongbox::testing_cluster::Cluster;
using ::strongbox::testing_cluster::ClusterOptions;

class DeposedTransitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ClusterOptions o;
    o.nodes = 2;
    cluster_ = std::make_unique<Cluster>(o);
    cluster_->Initialize();
    cluster_->UnsealAll();
    cluster_->nodes[0]->Poll();
    ASSERT_EQ(cluster_->nodes[0]->state(), HaState::kActive);
    for (int i = 0; i < 2; ++i) {
      SecretStore::Options so;
      so.coordinator = cluster_->nodes[i].get();
      so.clock = &cluster_->clock;
      so.max_index_wait = absl::ZeroDuration();
      // These tests are about the Transit engine's own checks. With
      // policies enforced, the policy gate verifies the fence first (its
      // cache is trusted only under a verified fence), so a deposed node
      // refuses with a redirect before Transit runs: safe as well, but it
      // would leave the engine's check untested.
      so.enforce_policies = false;
      stores_[i] = *SecretStore::Create(so);
    }
  }

  // The backend ends node 0's grant and grants node 1, whose loop runs;
  // node 0's does not.
  void Depose() {
    ASSERT_TRUE(cluster_->links[0]->ExpireCurrentGrant().ok());
    cluster_->nodes[1]->Poll();
    ASSERT_EQ(cluster_->nodes[1]->state(), HaState::kActive);
    ASSERT_EQ(cluster_->nodes[0]->state(), HaState::kActive)
        << "node 0 noticed on its own; the test needs it not to";
    // Past Options::verify_interval (10 ms): node 0's last "still held"
    // answer is too old to reuse.
    cluster_->clock.Advance(absl::Milliseconds(11));
  }

  store::Response Config(int node, const std::string& name,
                         uint32_t min_decryption, bool allow_delete) {
    store::Request r;
    store::TransitConfigRequest* c = r.mutable_transit_config_key();
    c->set_name(name);
    c->set_min_decryption_version(min_decryption);
    if (allow_delete) c->set_deletion_allowed(true);
    return stores_[node]->Handle(r);
  }

  store::Response Delete(int node, const std::string& name) {
    store::Request r;
    r.mutable_transit_delete_key()->set_name(name);
    return stores_[node]->Handle(r);
  }

  std::unique_ptr<Cluster> cluster_;
  std::unique_ptr<SecretStore> stores_[2];
};

TEST_F(DeposedTransitTest, DoesNotServeAKeyTheSuccessorDeleted) {
  ASSERT_TRUE(stores_[0]->TransitCreateKey("gone").ok());
  // Cached and trusted under node 0's fence.
  absl::StatusOr<std::string> before =
      stores_[0]->TransitEncrypt("gone", "before");
  ASSERT_TRUE(before.ok()) << before.status();
  Depose();
  ASSERT_EQ(Config(1, "gone", 0, true).code(), 0);
  store::Response deleted = Delete(1, "gone");
  ASSERT_EQ(deleted.code(), 0) << deleted.error();

  absl::StatusOr<std::string> pt = stores_[0]->TransitDecrypt("gone", *before);
  EXPECT_EQ(pt.status().code(), absl::StatusCode::kNotFound) << pt.status();
  // It learned it was deposed, and from whom.
  EXPECT_NE(cluster_->nodes[0]->state(), HaState::kActive);
  EXPECT_EQ(cluster_->nodes[0]->Route(OperationKind::kWrite).leader_address,
            Cluster::Address(1));
  // Encrypt (a write: it stores reservations) is not served either; the
  // refusal names the new active.
  absl::StatusOr<std::string> ct = stores_[0]->TransitEncrypt("gone", "after");
  EXPECT_EQ(ct.status().code(), absl::StatusCode::kUnavailable) << ct.status();
  std::optional<RouteHint> hint = GetRouteHint(ct.status());
  ASSERT_TRUE(hint.has_value());
  EXPECT_EQ(hint->leader_address, Cluster::Address(1));
}

TEST_F(DeposedTransitTest, DoesNotDecryptWithAVersionTheSuccessorRetired) {
  ASSERT_TRUE(stores_[0]->TransitCreateKey("k").ok());
  absl::StatusOr<std::string> v1 = stores_[0]->TransitEncrypt("k", "secret");
  ASSERT_TRUE(v1.ok()) << v1.status();
  ASSERT_TRUE(stores_[0]->TransitRotateKey("k").ok());
  ASSERT_EQ(*stores_[0]->TransitDecrypt("k", *v1), "secret");  // cached
  Depose();
  store::Response restricted = Config(1, "k", 2, false);
  ASSERT_EQ(restricted.code(), 0) << restricted.error();
  EXPECT_FALSE(stores_[1]->TransitDecrypt("k", *v1).ok());

  absl::StatusOr<std::string> pt = stores_[0]->TransitDecrypt("k", *v1);
  EXPECT_FALSE(pt.ok()) << "a deposed node decrypted with a retired version";
}

// The check does not cost a healthy active its cache or its leadership.
TEST_F(DeposedTransitTest, HealthyActiveKeepsServing) {
  ASSERT_TRUE(stores_[0]->TransitCreateKey("k").ok());
  for (int i = 0; i < 10; ++i) {
    absl::StatusOr<std::string> ct = stores_[0]->TransitEncrypt("k", "x");
    ASSERT_TRUE(ct.ok()) << ct.status();
    ASSERT_EQ(*stores_[0]->TransitDecrypt("k", *ct), "x");
  }
  EXPECT_EQ(cluster_->nodes[0]->state(), HaState::kActive);
}

}  // namespace
}  // namespace strongbox
