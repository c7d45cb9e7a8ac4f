// Policies behind the barrier: a change acknowledged on one node is in
// force on every node for its next request (randomized, seed printed);
// compiled sets are kept per list of names, and readers on other threads
// during writes see one document or the other; a bad document stores
// nothing; a tampered record refuses (DATA_LOSS), never
// allows; a write without the active's fence is refused.
#include "lib/access/stored_policies.h"

#include <atomic>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/access/request_gate.h"
#include "strongbox/backend.h"
#include "strongbox/barrier.h"
#include "strongbox/in_memory_backend.h"
#include "strongbox/testing/status_matchers.h"

namespace strongbox::access {
namespace {

using ::strongbox_testing::IsOk;
using ::strongbox_testing::IsOkAndHolds;
using ::strongbox_testing::StatusIs;
using ::testing::ElementsAre;

constexpr char kRead[] = R"({"path":{"app/*":{"capabilities":["read"]}}})";
constexpr char kDenyDb[] =
    R"({"path":{"app/*":{"capabilities":["read"]},
               "app/db":{"capabilities":["deny"]}}})";
constexpr char kList[] = R"({"path":{"app/*":{"capabilities":["list"]}}})";

class StoredPoliciesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    backend_ = NewInMemoryBackend();
    for (int i = 0; i < 2; ++i) {
      BarrierOptions o;
      o.backend = backend_.get();
      absl::StatusOr<std::unique_ptr<Barrier>> b = Barrier::Create(o);
      ASSERT_THAT(b.status(), IsOk());
      barriers_.push_back(*std::move(b));
    }
    absl::StatusOr<std::vector<std::string>> shares =
        barriers_[0]->Initialize(1, 1);
    ASSERT_THAT(shares.status(), IsOk());
    for (auto& b : barriers_)
      ASSERT_THAT(b->Unseal((*shares)[0]).status(), IsOk());
    AcquireOptions acquire;
    acquire.holder = "node-a";
    acquire.ttl = absl::Hours(1);
    absl::StatusOr<std::unique_ptr<LeadershipGrant>> grant =
        backend_->ha()->Acquire(acquire);
    ASSERT_THAT(grant.status(), IsOk());
    grant_ = *std::move(grant);
    active_ = std::make_unique<StoredPolicies>(barriers_[0].get());
    standby_ = std::make_unique<StoredPolicies>(barriers_[1].get());
  }

  FenceToken fence() const { return grant_->fence(); }

  static bool Allows(StoredPolicies* node, const char* path, Capability c) {
    std::vector<std::string> names = {"app"};
    auto set = node->Compiled(names, kNoFence, nullptr);
    EXPECT_THAT(set.status(), IsOk());
    return set.ok() && (*set)->Allows(path, c);
  }

  std::unique_ptr<Backend> backend_;
  std::vector<std::unique_ptr<Barrier>> barriers_;
  std::unique_ptr<LeadershipGrant> grant_;
  std::unique_ptr<StoredPolicies> active_;
  std::unique_ptr<StoredPolicies> standby_;
};

TEST_F(StoredPoliciesTest, ChangeAcknowledgedOnOneNodeHoldsOnEveryNode) {
  const uint32_t seed = std::random_device{}();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937 rng(seed);
  const char* docs[] = {kRead, kDenyDb, kList, nullptr};  // null: delete
  for (int step = 0; step < 60; ++step) {
    const char* doc = docs[rng() % 4];
    if (doc == nullptr) {
      ASSERT_THAT(active_->Delete("app", fence()).status(), IsOk());
    } else {
      ASSERT_THAT(active_->Put("app", doc, fence()).status(), IsOk());
    }
    const bool read_x = doc == kRead || doc == kDenyDb;
    const bool read_db = doc == kRead;
    const bool list_x = doc == kList;
    // Both nodes, in either order, right after the acknowledgement.
    for (StoredPolicies* node : {standby_.get(), active_.get()}) {
      EXPECT_EQ(Allows(node, "app/x", Capability::kRead), read_x) << step;
      EXPECT_EQ(Allows(node, "app/db", Capability::kRead), read_db) << step;
      EXPECT_EQ(Allows(node, "app/x", Capability::kList), list_x) << step;
      EXPECT_THAT(node->AnyPolicy(kNoFence, nullptr),
                  IsOkAndHolds(doc != nullptr));
    }
  }
}

TEST_F(StoredPoliciesTest, DocumentsAreKeptAsWrittenAndListed) {
  ASSERT_THAT(active_->Put("zeta", kList, fence()).status(), IsOk());
  ASSERT_THAT(active_->Put("app", kRead, fence()).status(), IsOk());
  EXPECT_THAT(standby_->GetDocument("app"), IsOkAndHolds(std::string(kRead)));
  EXPECT_THAT(standby_->List(), IsOkAndHolds(ElementsAre("app", "zeta")));
  EXPECT_THAT(standby_->GetDocument("nope"),
              StatusIs(absl::StatusCode::kNotFound));
  // Unknown and invalid names add nothing to a compiled set.
  std::vector<std::string> names = {"app", "nope", "bad name"};
  auto set = standby_->Compiled(names, kNoFence, nullptr);
  ASSERT_THAT(set.status(), IsOk());
  EXPECT_TRUE((*set)->Allows("app/x", Capability::kRead));
}

// Compiled sets are kept per list of names, looked up with the caller's
// own list: the same list gets the same set, any other list (another
// order, a name more, names that would join into the same text) a set of
// its own, and a change compiles anew.
TEST_F(StoredPoliciesTest, EachListOfNamesHasItsOwnSet) {
  ASSERT_THAT(active_->Put("app", kRead, fence()).status(), IsOk());
  ASSERT_THAT(active_->Put("lister", kList, fence()).status(), IsOk());
  auto compiled = [&](std::vector<std::string> names) {
    auto set = standby_->Compiled(names, kNoFence, nullptr);
    EXPECT_THAT(set.status(), IsOk());
    return set.ok() ? *set : nullptr;
  };
  const auto app = compiled({"app"});
  ASSERT_NE(app, nullptr);
  EXPECT_EQ(compiled({"app"}), app) << "the cached set";
  const auto both = compiled({"app", "lister"});
  const auto reversed = compiled({"lister", "app"});
  const auto lister = compiled({"lister"});
  const auto none = compiled({});
  for (const auto& other : {both, reversed, lister, none}) {
    ASSERT_NE(other, nullptr);
    EXPECT_NE(other, app);
  }
  EXPECT_NE(both, reversed);
  EXPECT_TRUE(app->Allows("app/x", Capability::kRead));
  EXPECT_FALSE(app->Allows("app/x", Capability::kList));
  EXPECT_TRUE(both->Allows("app/x", Capability::kList));
  EXPECT_FALSE(lister->Allows("app/x", Capability::kRead));
  EXPECT_FALSE(none->Allows("app/x", Capability::kRead));
  // Two names, or one name holding the newline a joined key would use.
  EXPECT_NE(compiled({"app\nlister"}), both);
  EXPECT_FALSE(compiled({"app\nlister"})->Allows("app/x", Capability::kRead));
  ASSERT_THAT(active_->Put("app", kDenyDb, fence()).status(), IsOk());
  const auto changed = compiled({"app"});
  ASSERT_NE(changed, nullptr);
  EXPECT_NE(changed, app);
  EXPECT_FALSE(changed->Allows("app/db", Capability::kRead));
  EXPECT_TRUE(app->Allows("app/db", Capability::kRead)) << "sets are values";
}

// Readers on several threads while the active rewrites the policy between
// two documents that differ in two independent rules: every answer is one
// document's on both (never a mix, never an error), and after the last
// write every node answers with it. Run under TSan.
TEST_F(StoredPoliciesTest, ReadersDuringWritesSeeOneDocumentOrTheOther) {
  // kRead: read app/db, no list on app/x. kListNotDb: the reverse.
  constexpr char kListNotDb[] =
      R"({"path":{"app/*":{"capabilities":["read","list"]},
                 "app/db":{"capabilities":["deny"]}}})";
  ASSERT_THAT(active_->Put("app", kRead, fence()).status(), IsOk());
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};
  std::vector<std::thread> readers;
  for (StoredPolicies* node : {active_.get(), standby_.get()}) {
    for (int t = 0; t < 2; ++t) {
      readers.emplace_back([&, node] {
        const std::vector<std::string> names = {"app"};
        while (!stop.load()) {
          auto set = node->Compiled(names, kNoFence, nullptr);
          if (!set.ok()) {
            bad.fetch_add(1);
            continue;
          }
          const bool read_db = (*set)->Allows("app/db", Capability::kRead);
          const bool list_x = (*set)->Allows("app/x", Capability::kList);
          if (read_db == list_x) bad.fetch_add(1);  // neither document
          if (!(*set)->Allows("app/x", Capability::kRead)) bad.fetch_add(1);
        }
      });
    }
  }
  for (int i = 0; i < 200; ++i) {
    ASSERT_THAT(
        active_->Put("app", i % 2 == 0 ? kListNotDb : kRead, fence()).status(),
        IsOk());
  }
  ASSERT_THAT(active_->Put("app", kListNotDb, fence()).status(), IsOk());
  stop.store(true);
  for (std::thread& t : readers) t.join();
  EXPECT_EQ(bad.load(), 0);
  for (StoredPolicies* node : {active_.get(), standby_.get()}) {
    EXPECT_FALSE(Allows(node, "app/db", Capability::kRead));
    EXPECT_TRUE(Allows(node, "app/x", Capability::kList));
  }
}

TEST_F(StoredPoliciesTest, BadDocumentStoresNothing) {
  EXPECT_THAT(
      active_->Put("app", "{\"path\":{\"a\":{\"capabilities\":[\"reed\"]}}}",
                   fence()),
      StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(active_->Put("root", kRead, fence()),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(active_->List(), IsOkAndHolds(ElementsAre()));
  EXPECT_THAT(standby_->AnyPolicy(kNoFence, nullptr), IsOkAndHolds(false));
}

TEST_F(StoredPoliciesTest, WriteWithoutTheActivesFenceIsRefused) {
  EXPECT_THAT(standby_->Put("app", kRead, kNoFence),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(standby_->List(), IsOkAndHolds(ElementsAre()));
}

TEST_F(StoredPoliciesTest, TamperedRecordRefusesNeverAllows) {
  ASSERT_THAT(active_->Put("app", kRead, fence()).status(), IsOk());
  EXPECT_TRUE(Allows(standby_.get(), "app/x", Capability::kRead));
  // Someone with backend access writes their own bytes over the record
  // (and moves the epoch record, or no node would re-read it: a node keeps
  // the authentic policy it has until the epoch changes).
  ASSERT_THAT(backend_
                  ->Commit({WriteOp::Put("policy/app", "not a sealed record"),
                            WriteOp::Put(StoredPolicies::kEpochKey, "x")},
                           fence())
                  .status(),
              IsOk());
  std::vector<std::string> names = {"app"};
  EXPECT_THAT(standby_->Compiled(names, kNoFence, nullptr).status(),
              StatusIs(absl::StatusCode::kDataLoss));
  // Through the gate: refused with that status.
  RequestGate::Options o;
  o.policies = standby_.get();
  RequestGate gate(o);
  const CallContext caller = CallContext::As("alice", {"app"});
  store::Request get;
  get.mutable_kv_get()->set_path("app/x");
  RequestGate::Admission adm;
  EXPECT_THAT(gate.Admit(&caller, get, kNoFence, &adm),
              StatusIs(absl::StatusCode::kDataLoss));
}

}  // namespace
}  // namespace strongbox::access
