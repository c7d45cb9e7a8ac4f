#include "strongbox/secret_store.h"

#include <atomic>
#include <functional>
#include <optional>
#include <random>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/crypto/aead.h"
#include "strongbox/secret_bytes.h"
#include "strongbox/testing/secret_bytes_wipe_observer.h"
#include "strongbox/testing/status_matchers.h"
#include "tests/ha/cluster.h"

namespace strongbox {
namespace {

using ::strongbox::testing_cluster::Cluster;
using ::strongbox::testing_cluster::ClusterOptions;
using ::strongbox_testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

using Fields = std::map<std::string, std::string>;

// Moves bytes between in-process nodes, as a host's transport would.
class TestForwarder : public Forwarder {
 public:
  absl::StatusOr<std::string> Forward(absl::string_view leader,
                                      absl::string_view request) override {
    ++calls;
    last_request = std::string(request);
    auto it = stores.find(std::string(leader));
    if (it == stores.end() || down) {
      return absl::UnavailableError("no route to host");
    }
    return it->second->HandleSerialized(request);
  }
  std::map<std::string, SecretStore*> stores;
  std::atomic<int> calls{0};
  std::string last_request;  // the bytes of the last forwarded request
  bool down = false;
};

class StoreTest : public ::testing::Test {
 protected:
  // `tweak`, if given, adjusts each node's store options.
  void SetUpCluster(
      StandbyMode mode, bool with_forwarder,
      std::function<void(SecretStore::Options*)> tweak = nullptr) {
    ClusterOptions o;
    o.mode = mode;
    cluster_ = std::make_unique<Cluster>(o);
    cluster_->Initialize();
    cluster_->UnsealAll();
    cluster_->Run(absl::Seconds(1));
    for (int i = 0; i < 3; ++i) {
      SecretStore::Options so;
      so.coordinator = cluster_->nodes[i].get();
      so.forwarder = with_forwarder ? &forwarder_ : nullptr;
      so.clock = &cluster_->clock;
      so.max_index_wait = absl::Milliseconds(20);
      if (tweak) tweak(&so);
      stores_.push_back(*SecretStore::Create(so));
      forwarder_.stores[Cluster::Address(i)] = stores_.back().get();
    }
    active_ = cluster_->Active();
    standby_ = (active_ + 1) % 3;
  }

  void SetUp() override { SetUpCluster(StandbyMode::kPerfStandby, true); }

  // A store on node `node` whose clock is `clock` (not the cluster's, so
  // moving it does not expire leases) and which waits up to `wait` for a
  // min_index.
  std::unique_ptr<SecretStore> StoreOnClock(int node, FakeClock* clock,
                                            absl::Duration wait) {
    SecretStore::Options so;
    so.coordinator = cluster_->nodes[node].get();
    so.forwarder = &forwarder_;
    so.clock = clock;
    so.max_index_wait = wait;
    absl::StatusOr<std::unique_ptr<SecretStore>> store =
        SecretStore::Create(so);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }

  // Runs `read` on a thread and moves each of `clocks` on by `step`
  // whenever a thread sleeps on it, until `read` returns; returns its
  // result.
  template <typename F>
  static auto WhileAdvancing(std::vector<FakeClock*> clocks, F read,
                             absl::Duration step = absl::Milliseconds(5)) {
    std::optional<decltype(read())> result;
    std::atomic<bool> done{false};
    std::thread t([&] {
      result.emplace(read());
      done = true;
    });
    while (!done.load()) {
      bool advanced = false;
      for (FakeClock* clock : clocks) {
        if (clock->sleepers() > 0) {
          clock->Advance(step);
          advanced = true;
        }
      }
      if (!advanced) std::this_thread::yield();
    }
    t.join();
    return *std::move(result);
  }

  SecretStore* active() { return stores_[active_].get(); }
  SecretStore* standby() { return stores_[standby_].get(); }

  // Keys under `prefix` in the raw backend (ciphertext, but paths are
  // plain).
  std::vector<std::string> RawList(absl::string_view prefix) {
    return *cluster_->shared->List(prefix);
  }

  TestForwarder forwarder_;
  std::unique_ptr<Cluster> cluster_;
  std::vector<std::unique_ptr<SecretStore>> stores_;
  int active_ = -1;
  int standby_ = -1;
};

// --------------------------------------------------------------- classify

TEST(ClassifyTest, EveryOperationHasOneKind) {
  store::Request r;
  EXPECT_EQ(ClassifyRequest(r).status().code(),
            absl::StatusCode::kInvalidArgument);
  r.mutable_kv_get();
  EXPECT_EQ(*ClassifyRequest(r), OperationKind::kRead);
  EXPECT_EQ(OperationName(r), "kv_get");
  r.mutable_kv_put();
  EXPECT_EQ(*ClassifyRequest(r), OperationKind::kWrite);
  // Encrypt and rewrap store encryption reservations (issue 9 item 13).
  r.mutable_transit_encrypt();
  EXPECT_EQ(*ClassifyRequest(r), OperationKind::kWrite);
  r.mutable_transit_rewrap();
  EXPECT_EQ(*ClassifyRequest(r), OperationKind::kWrite);
  r.mutable_transit_decrypt();
  EXPECT_EQ(*ClassifyRequest(r), OperationKind::kRead);
  r.mutable_transit_rotate_key();
  EXPECT_EQ(*ClassifyRequest(r), OperationKind::kWrite);
  // Every oneof member is in the table.
  const auto* oneof = store::Request::descriptor()->FindOneofByName("op");
  for (int i = 0; i < oneof->field_count(); ++i) {
    store::Request each;
    each.GetReflection()->MutableMessage(&each, oneof->field(i));
    EXPECT_TRUE(ClassifyRequest(each).ok()) << oneof->field(i)->name();
    EXPECT_EQ(OperationName(each), oneof->field(i)->name());
  }
}

// --------------------------------------------------------------------- KV

TEST_F(StoreTest, PutCreatesVersionsAndGetReadsThem) {
  absl::StatusOr<KvWriteResult> v1 = active()->KvPut("app/db", {{"pw", "a"}});
  ASSERT_TRUE(v1.ok()) << v1.status();
  EXPECT_EQ(v1->version, 1u);
  cluster_->clock.Advance(absl::Seconds(3));
  absl::StatusOr<KvWriteResult> v2 =
      active()->KvPut("app/db", {{"pw", "b"}, {"user", "app"}});
  ASSERT_TRUE(v2.ok());
  EXPECT_EQ(v2->version, 2u);
  EXPECT_GT(v2->index, v1->index);

  absl::StatusOr<store::KvSecret> latest = active()->KvGet("app/db");
  ASSERT_TRUE(latest.ok()) << latest.status();
  EXPECT_THAT(latest->data(),
              UnorderedElementsAre(Pair("pw", "b"), Pair("user", "app")));
  EXPECT_EQ(latest->metadata().version(), 2u);
  absl::StatusOr<store::KvSecret> first = active()->KvGet("app/db", 1);
  ASSERT_TRUE(first.ok());
  EXPECT_THAT(first->data(), UnorderedElementsAre(Pair("pw", "a")));
  EXPECT_EQ(active()->KvGet("app/db", 3).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(active()->KvGet("nothing").status().code(),
            absl::StatusCode::kNotFound);

  absl::StatusOr<store::KvMetadata> meta = active()->KvMetadata("app/db");
  ASSERT_TRUE(meta.ok());
  EXPECT_EQ(meta->current_version(), 2u);
  EXPECT_EQ(meta->oldest_version(), 1u);
  EXPECT_EQ(meta->max_versions(), 10u);
  EXPECT_EQ(meta->updated_unix_micros() - meta->created_unix_micros(),
            3'000'000);
  ASSERT_EQ(meta->versions_size(), 2);
  // Empty fields and odd bytes survive.
  ASSERT_TRUE(
      active()->KvPut("bin", {{"", std::string("\0\xff", 2)}, {"e", ""}}).ok());
  EXPECT_THAT(
      active()->KvGet("bin")->data(),
      UnorderedElementsAre(Pair("", std::string("\0\xff", 2)), Pair("e", "")));
}

TEST_F(StoreTest, CheckAndSet) {
  EXPECT_TRUE(active()->KvPut("c", {{"k", "1"}}, 0).ok());
  EXPECT_EQ(active()->KvPut("c", {{"k", "x"}}, 0).status().code(),
            absl::StatusCode::kAborted);
  EXPECT_EQ(active()->KvPut("c", {{"k", "x"}}, 2).status().code(),
            absl::StatusCode::kAborted);
  EXPECT_EQ(active()->KvGet("c")->data().at("k"), "1");
  absl::StatusOr<KvWriteResult> ok = active()->KvPut("c", {{"k", "2"}}, 1);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->version, 2u);

  ASSERT_TRUE(active()->KvSetMetadata("c", 0, /*cas_required=*/true).ok());
  absl::StatusOr<KvWriteResult> no_cas = active()->KvPut("c", {{"k", "3"}});
  EXPECT_EQ(no_cas.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(no_cas.status().message()), HasSubstr("required"));
  EXPECT_TRUE(active()->KvPut("c", {{"k", "3"}}, 2).ok());
}

// The wire protocol stays compatible with nodes from before proto3
// `optional` (strongbox/requests.proto): they send only legacy_has_cas and
// omit cas = 0, and they read only legacy_has_cas.
TEST_F(StoreTest, CheckAndSetFromNodesBeforeOptional) {
  // kv_put { path: "w", data { "k": "v" }, legacy_has_cas: true }, as an
  // older node encodes cas = 0 ("only if absent"): no field 4.
  store::Request old_put;
  old_put.mutable_kv_put()->set_path("w");
  (*old_put.mutable_kv_put()->mutable_data())["k"] = "v";
  old_put.mutable_kv_put()->set_legacy_has_cas(true);
  ASSERT_FALSE(old_put.kv_put().has_cas());
  store::Response resp;
  ASSERT_TRUE(resp.ParseFromString(
      active()->HandleSerialized(old_put.SerializeAsString())));
  EXPECT_EQ(resp.code(), 0) << resp.error();
  ASSERT_TRUE(resp.ParseFromString(
      active()->HandleSerialized(old_put.SerializeAsString())));
  EXPECT_EQ(resp.code(), static_cast<int>(absl::StatusCode::kAborted))
      << "the flag alone must mean check-and-set with cas = 0";

  // What this version sends for cas = 0: the value on the wire (field 4)
  // and the flag an older node reads (field 3 = true).
  store::KvPutRequest now;
  now.set_cas(0);
  now.set_legacy_has_cas(true);
  EXPECT_EQ(now.SerializeAsString(), std::string("\x18\x01\x20\x00", 4));
}

// A host that builds a request with only the `optional` presence (set_cas,
// set_deletion_allowed) and sends it to a standby: the forwarded bytes also
// carry the legacy flags, so an active from before `optional` still applies
// the check-and-set (not an unconditional write) and the config change.
TEST_F(StoreTest, ForwardedRequestsCarryTheLegacyPresenceFlags) {
  store::Request put;
  put.mutable_kv_put()->set_path("host-cas");
  (*put.mutable_kv_put()->mutable_data())["k"] = "v";
  put.mutable_kv_put()->set_cas(0);
  ASSERT_FALSE(put.kv_put().legacy_has_cas());
  store::Response resp = standby()->Handle(put);
  EXPECT_EQ(resp.code(), 0) << resp.error();
  store::Request sent;
  ASSERT_TRUE(sent.ParseFromString(forwarder_.last_request));
  EXPECT_TRUE(sent.forwarded());
  EXPECT_TRUE(sent.kv_put().has_cas());
  EXPECT_TRUE(sent.kv_put().legacy_has_cas());
  // As an old active reads it: the flag alone makes it check-and-set, so
  // the same request again is refused.
  resp = standby()->Handle(put);
  EXPECT_EQ(resp.code(), static_cast<int>(absl::StatusCode::kAborted));

  ASSERT_TRUE(active()->TransitCreateKey("legacy-cfg").ok());
  store::Request config;
  config.mutable_transit_config_key()->set_name("legacy-cfg");
  config.mutable_transit_config_key()->set_deletion_allowed(true);
  resp = standby()->Handle(config);
  EXPECT_EQ(resp.code(), 0) << resp.error();
  ASSERT_TRUE(sent.ParseFromString(forwarder_.last_request));
  EXPECT_TRUE(sent.transit_config_key().legacy_set_deletion_allowed());

  // A request with no presence set gets no flag.
  store::Request plain;
  plain.mutable_kv_put()->set_path("host-plain");
  (*plain.mutable_kv_put()->mutable_data())["k"] = "v";
  resp = standby()->Handle(plain);
  EXPECT_EQ(resp.code(), 0) << resp.error();
  ASSERT_TRUE(sent.ParseFromString(forwarder_.last_request));
  EXPECT_FALSE(sent.kv_put().legacy_has_cas());
}

TEST_F(StoreTest, SoftDeleteUndeleteDestroy) {
  ASSERT_TRUE(active()->KvPut("s", {{"v", "1"}}).ok());
  ASSERT_TRUE(active()->KvPut("s", {{"v", "2"}}).ok());
  ASSERT_TRUE(active()->KvDelete("s").ok());  // The latest.
  absl::StatusOr<store::KvSecret> gone = active()->KvGet("s");
  EXPECT_EQ(gone.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(gone.status().message()), HasSubstr("deleted"));
  EXPECT_EQ(active()->KvGet("s", 1)->data().at("v"), "1");
  EXPECT_NE(active()->KvMetadata("s")->versions(1).deletion_unix_micros(), 0);

  ASSERT_TRUE(active()->KvUndelete("s", {2}).ok());
  EXPECT_EQ(active()->KvGet("s")->data().at("v"), "2");

  ASSERT_TRUE(active()->KvDestroy("s", {1}).ok());
  absl::StatusOr<store::KvSecret> destroyed = active()->KvGet("s", 1);
  EXPECT_EQ(destroyed.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(destroyed.status().message()),
              HasSubstr("destroyed"));
  ASSERT_TRUE(active()->KvUndelete("s", {1}).ok());  // Cannot revive.
  EXPECT_EQ(active()->KvGet("s", 1).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_TRUE(active()->KvMetadata("s")->versions(0).destroyed());
  // The data is erased from storage, not just marked.
  EXPECT_THAT(RawList("kv/data/s/"), ElementsAre("2"));
  EXPECT_EQ(active()->KvDelete("missing").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(active()->KvUndelete("s", {}).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(StoreTest, MaxVersionsPrunesTheOldest) {
  ASSERT_TRUE(active()->KvSetMetadata("p", 3, false).ok());
  for (int i = 1; i <= 5; ++i) {
    ASSERT_TRUE(active()->KvPut("p", {{"i", std::to_string(i)}}).ok());
  }
  absl::StatusOr<store::KvMetadata> meta = active()->KvMetadata("p");
  ASSERT_TRUE(meta.ok());
  EXPECT_EQ(meta->current_version(), 5u);
  EXPECT_EQ(meta->oldest_version(), 3u);
  EXPECT_EQ(meta->versions_size(), 3);
  EXPECT_EQ(active()->KvGet("p", 2).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(active()->KvGet("p", 3)->data().at("i"), "3");
  EXPECT_THAT(RawList("kv/data/p/"), UnorderedElementsAre("3", "4", "5"));
  // Lowering max_versions prunes at once.
  ASSERT_TRUE(active()->KvSetMetadata("p", 1, false).ok());
  EXPECT_THAT(RawList("kv/data/p/"), ElementsAre("5"));
  EXPECT_EQ(active()->KvMetadata("p")->oldest_version(), 5u);
}

TEST_F(StoreTest, ListAndDeleteAll) {
  for (absl::string_view path : {"a/b", "a/c/d", "e", "a"}) {
    ASSERT_TRUE(active()->KvPut(path, {{"x", "y"}}).ok());
  }
  EXPECT_THAT(*active()->KvList(""), ElementsAre("a", "a/", "e"));
  EXPECT_THAT(*active()->KvList("a/"), ElementsAre("b", "c/"));
  EXPECT_EQ(active()->KvList("a").status().code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(active()->KvDeleteAll("a/c/d").ok());
  EXPECT_THAT(*active()->KvList("a/"), ElementsAre("b"));
  EXPECT_EQ(active()->KvGet("a/c/d").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_THAT(RawList("kv/data/a/c/"), IsEmpty());
  EXPECT_TRUE(active()->KvDeleteAll("never").ok());
}

TEST_F(StoreTest, LimitsNameTheLimit) {
  auto expect_limit = [](absl::Status s, absl::string_view limit) {
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr(limit));
  };
  expect_limit(active()->KvPut(std::string(513, 'p'), {{"a", "b"}}).status(),
               "max_path_bytes");
  Fields many;
  for (int i = 0; i < 257; ++i) many[std::to_string(i)] = "v";
  expect_limit(active()->KvPut("f", many).status(), "max_fields");
  expect_limit(
      active()->KvPut("big", {{"v", std::string(512 << 10, 'x')}}).status(),
      "max_secret_bytes");
  expect_limit(active()->KvPut("/lead", {{"a", "b"}}).status(), "path");
  expect_limit(active()->KvPut("a/../b", {{"a", "b"}}).status(), "path");
  expect_limit(active()->KvSetMetadata("m", 5000, false), "max_max_versions");
  EXPECT_THAT(*active()->KvList(""), IsEmpty());  // Nothing was written.
}

TEST_F(StoreTest, ConcurrentPutsLoseNoUpdate) {
  ASSERT_TRUE(active()->KvSetMetadata("hot", 1000, false).ok());
  constexpr int kThreads = 4, kEach = 25;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        if (!active()->KvPut("hot", {{"t", std::to_string(t)}}).ok()) {
          ++failures;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(active()->KvMetadata("hot")->current_version(),
            static_cast<uint64_t>(kThreads * kEach));
}

TEST_F(StoreTest, GarbageInputNeverCrashes) {
  store::Response r;
  ASSERT_TRUE(r.ParseFromString(active()->HandleSerialized("\xff\xff\xff")));
  EXPECT_EQ(r.code(), static_cast<int>(absl::StatusCode::kInvalidArgument));
  ASSERT_TRUE(r.ParseFromString(active()->HandleSerialized("")));
  EXPECT_EQ(r.code(), static_cast<int>(absl::StatusCode::kInvalidArgument));
  std::mt19937_64 rng(7);
  for (int i = 0; i < 2000; ++i) {
    std::string bytes(rng() % 64, '\0');
    for (char& c : bytes) c = static_cast<char>(rng());
    store::Response any;
    ASSERT_TRUE(any.ParseFromString(active()->HandleSerialized(bytes)));
  }
}

// ---------------------------------------------------------------- routing

TEST_F(StoreTest, PerfStandbyServesReadsLocally) {
  ASSERT_TRUE(active()->KvPut("r", {{"k", "v"}}).ok());
  forwarder_.calls = 0;
  // Node-local reads: the standby's own link must serve them.
  absl::StatusOr<store::KvSecret> got = standby()->KvGet("r");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->data().at("k"), "v");
  EXPECT_THAT(*standby()->KvList(""), ElementsAre("r"));
  EXPECT_EQ(forwarder_.calls.load(), 0);
}

TEST_F(StoreTest, PerfStandbyForwardsWritesAndNeverAppliesThem) {
  // If the standby tried to commit anything itself, this would fail it.
  cluster_->links[standby_]->FailNext(1000,
                                      absl::InternalError("standby wrote"),
                                      FaultInjectingBackend::kCommit);
  absl::StatusOr<KvWriteResult> put = standby()->KvPut("fw", {{"k", "v"}});
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(put->version, 1u);
  EXPECT_EQ(forwarder_.calls.load(), 1);
  EXPECT_EQ(cluster_->links[standby_]->injected_failures(), 0);
  EXPECT_EQ(standby()->KvGet("fw", 0, put->index)->data().at("k"), "v");
  // CAS through forwarding keeps its code.
  EXPECT_EQ(standby()->KvPut("fw", {{"k", "w"}}, 0).status().code(),
            absl::StatusCode::kAborted);
  // Transport failure: UNAVAILABLE with the route.
  forwarder_.down = true;
  absl::Status down = standby()->KvPut("fw", {{"k", "x"}}).status();
  EXPECT_EQ(down.code(), absl::StatusCode::kUnavailable);
  ASSERT_TRUE(GetRouteHint(down).has_value());
  EXPECT_EQ(GetRouteHint(down)->leader_address, Cluster::Address(active_));
}

TEST_F(StoreTest, ForwardedRequestsRunOnlyOnTheActive) {
  store::Request r;
  r.mutable_kv_put()->set_path("loop");
  (*r.mutable_kv_put()->mutable_data())["k"] = "v";
  r.set_forwarded(true);
  forwarder_.calls = 0;
  store::Response resp;
  ASSERT_TRUE(
      resp.ParseFromString(standby()->HandleSerialized(r.SerializeAsString())));
  EXPECT_EQ(resp.code(), static_cast<int>(absl::StatusCode::kUnavailable));
  EXPECT_EQ(forwarder_.calls.load(), 0) << "a forwarded request was forwarded";
  EXPECT_EQ(active()->KvGet("loop").status().code(),
            absl::StatusCode::kNotFound);
  ASSERT_TRUE(
      resp.ParseFromString(active()->HandleSerialized(r.SerializeAsString())));
  EXPECT_EQ(resp.code(), 0) << resp.error();
}

TEST_F(StoreTest, SealedNodeIsFailedPrecondition) {
  ASSERT_TRUE(cluster_->nodes[standby_]->Seal().ok());
  EXPECT_EQ(standby()->KvGet("x").status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(standby()->KvPut("x", {{"a", "b"}}).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(StoreTest, NoForwarderMeansUnavailableWithTheRoute) {
  stores_.clear();
  SetUpCluster(StandbyMode::kPerfStandby, /*with_forwarder=*/false);
  absl::Status s = standby()->KvPut("x", {{"a", "b"}}).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  std::optional<RouteHint> hint = GetRouteHint(s);
  ASSERT_TRUE(hint.has_value());
  EXPECT_EQ(hint->action, RouteDecision::Action::kForwardToActive);
  EXPECT_EQ(hint->leader_address, Cluster::Address(active_));
}

TEST_F(StoreTest, PlainStandbyRedirectsEverything) {
  stores_.clear();
  SetUpCluster(StandbyMode::kStandby, /*with_forwarder=*/true);
  ASSERT_TRUE(active()->KvPut("x", {{"a", "b"}}).ok());
  for (absl::Status s : {standby()->KvGet("x").status(),
                         standby()->KvPut("x", {{"a", "c"}}).status()}) {
    EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
    std::optional<RouteHint> hint = GetRouteHint(s);
    ASSERT_TRUE(hint.has_value());
    EXPECT_EQ(hint->action, RouteDecision::Action::kRedirectToActive);
    EXPECT_EQ(hint->leader_address, Cluster::Address(active_));
  }
  EXPECT_EQ(active()->KvGet("x")->data().at("a"), "b");
}

// ------------------------------------------------------------ consistency

TEST_F(StoreTest, ReadAfterWriteOnAnyNodeWithTheIndex) {
  absl::StatusOr<KvWriteResult> put = active()->KvPut("raw", {{"k", "1"}});
  ASSERT_TRUE(put.ok());
  for (int i = 0; i < 3; ++i) {
    if (i == active_) continue;
    absl::StatusOr<store::KvSecret> got =
        stores_[i]->KvGet("raw", 0, put->index);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->data().at("k"), "1");
  }
  // A node that cannot reach the index in time fails (or forwards). The
  // wait runs on the store's clock: WhileAdvancing moves it on.
  FakeClock wait_clock;
  std::unique_ptr<SecretStore> waiting =
      StoreOnClock(standby_, &wait_clock, absl::Milliseconds(20));
  ASSERT_NE(waiting, nullptr);
  absl::StatusOr<store::KvSecret> behind = WhileAdvancing({&wait_clock}, [&] {
    return waiting->KvGet("raw", 0, put->index + 1000);
  });
  EXPECT_EQ(behind.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(behind.status().message()),
              HasSubstr("has not reached index"));
  store::Request r;
  r.mutable_kv_get()->set_path("raw");
  r.set_min_index(put->index + 1000);
  r.set_forward_if_behind(true);
  forwarder_.calls = 0;
  store::Response resp = WhileAdvancing({&wait_clock, &cluster_->clock},
                                        [&] { return waiting->Handle(r); });
  EXPECT_EQ(forwarder_.calls.load(), 1);
  EXPECT_EQ(resp.code(), static_cast<int>(absl::StatusCode::kUnavailable));
}

// The min_index wait is measured on the injected clock, not real time: with
// an hour to wait, the read gives up exactly when the fake clock has moved
// an hour (real time would make this test time out), and a read that is
// waiting returns as soon as the index is reached.
TEST_F(StoreTest, MinIndexWaitRunsOnTheInjectedClock) {
  FakeClock wait_clock;
  std::unique_ptr<SecretStore> patient =
      StoreOnClock(standby_, &wait_clock, absl::Hours(1));
  ASSERT_NE(patient, nullptr);
  absl::StatusOr<KvWriteResult> put = active()->KvPut("idx", {{"k", "1"}});
  ASSERT_TRUE(put.ok());

  store::Request r;
  r.mutable_kv_get()->set_path("idx");
  r.set_min_index(put->index + 1000);
  const absl::Duration start = wait_clock.MonotonicNow();
  store::Response behind = WhileAdvancing(
      {&wait_clock}, [&] { return patient->Handle(r); }, absl::Minutes(7));
  EXPECT_EQ(behind.code(), static_cast<int>(absl::StatusCode::kUnavailable));
  EXPECT_GE(wait_clock.MonotonicNow() - start, absl::Hours(1));
  EXPECT_LT(wait_clock.MonotonicNow() - start,
            absl::Hours(1) + absl::Minutes(7));

  // A read for the next index sleeps on the store's clock until another
  // write reaches that index, then returns it.
  const uint64_t next = put->index + 1;
  std::atomic<bool> done{false};
  absl::StatusOr<store::KvSecret> got = absl::UnknownError("not run");
  std::thread reader([&] {
    got = patient->KvGet("idx", 0, next);
    done = true;
  });
  // Bounded by `done` too: a reader that returns without sleeping must fail
  // the check below, not spin here forever.
  while (wait_clock.sleepers() == 0 && !done.load()) std::this_thread::yield();
  EXPECT_FALSE(done.load()) << "the read returned without sleeping on the "
                               "store's clock";
  if (done.load()) {
    reader.join();
    return;
  }
  ASSERT_TRUE(active()->KvPut("idx", {{"k", "2"}}).ok());
  const absl::Duration before = wait_clock.MonotonicNow();
  while (!done.load()) {
    if (wait_clock.sleepers() > 0) {
      wait_clock.Advance(absl::Milliseconds(1));
    } else {
      std::this_thread::yield();
    }
  }
  reader.join();
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->data().at("k"), "2");
  EXPECT_LE(wait_clock.MonotonicNow() - before, absl::Milliseconds(1));
}

TEST_F(StoreTest, WriteInterruptedByFailoverIsReportedAndNotApplied) {
  ASSERT_TRUE(active()->KvPut("w", {{"v", "1"}}).ok());
  // The lease moves on behind the active's back (it has not noticed yet).
  ASSERT_TRUE(cluster_->links[active_]->ExpireCurrentGrant().ok());
  absl::StatusOr<KvWriteResult> put = active()->KvPut("w", {{"v", "2"}});
  EXPECT_EQ(put.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(put.status().message()),
              HasSubstr("nothing was applied"));
  cluster_->Run(absl::Milliseconds(200));
  const int next = cluster_->Active();
  EXPECT_EQ(stores_[next]->KvGet("w")->data().at("v"), "1");
  EXPECT_EQ(stores_[next]->KvMetadata("w")->current_version(), 1u);
}

TEST_F(StoreTest, LostAcknowledgementIsAppliedExactlyOnce) {
  ASSERT_TRUE(active()->KvPut("ack", {{"v", "1"}}).ok());
  cluster_->links[active_]->LoseNextCommitAcks(1);
  absl::StatusOr<KvWriteResult> put = active()->KvPut("ack", {{"v", "2"}}, 1);
  EXPECT_EQ(put.status().code(), absl::StatusCode::kUnavailable);
  // A check-and-set retry tells the client it was applied — once.
  absl::StatusOr<KvWriteResult> retry = active()->KvPut("ack", {{"v", "2"}}, 1);
  EXPECT_EQ(retry.status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ(active()->KvMetadata("ack")->current_version(), 2u);
  EXPECT_EQ(active()->KvGet("ack")->data().at("v"), "2");
}

TEST_F(StoreTest, AcknowledgedWritesSurviveFailover) {
  std::vector<std::string> written;
  for (int i = 0; i < 20; ++i) {
    const std::string path = "surv/" + std::to_string(i);
    ASSERT_TRUE(stores_[(active_ + i) % 3]->KvPut(path, {{"i", path}}).ok());
    written.push_back(path);
  }
  ASSERT_TRUE(cluster_->nodes[active_]->Seal().ok());
  cluster_->Run(absl::Milliseconds(100));
  const int next = cluster_->Active();
  ASSERT_NE(next, active_);
  for (const std::string& path : written) {
    EXPECT_EQ(stores_[next]->KvGet(path)->data().at("i"), path);
  }
}

// The active's KV write cache (KvOptions::write_cache_entries) serves a
// put the metadata it last wrote. A second store on the same node writes
// under the same fence with a cache of its own: the worst case of "someone
// else wrote since". Its writes must never be hidden: no version reused or
// lost, check-and-set judged on what storage holds.
TEST_F(StoreTest, WriteCacheNeverHidesAnotherWriter) {
  std::unique_ptr<SecretStore> other =
      StoreOnClock(active_, &cluster_->clock, absl::ZeroDuration());
  ASSERT_NE(other, nullptr);
  auto version = [](const absl::StatusOr<KvWriteResult>& r) -> uint64_t {
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->version : 0;
  };
  EXPECT_EQ(version(active()->KvPut("c", {{"v", "1"}})), 1u);
  EXPECT_EQ(version(active()->KvPut("c", {{"v", "2"}})), 2u);  // cached
  EXPECT_EQ(version(other->KvPut("c", {{"v", "3"}})), 3u);
  // The active's cache says version 2: the put must still become 4 and
  // leave version 3 as the other store wrote it.
  EXPECT_EQ(version(active()->KvPut("c", {{"v", "4"}})), 4u);
  EXPECT_EQ(active()->KvGet("c", 3)->data().at("v"), "3");
  EXPECT_EQ(active()->KvGet("c")->data().at("v"), "4");

  // Check-and-set is judged on storage, not the cache.
  EXPECT_EQ(version(other->KvPut("c", {{"v", "5"}})), 5u);
  EXPECT_THAT(active()->KvPut("c", {{"v", "x"}}, 4),
              StatusIs(absl::StatusCode::kAborted));  // the cache said 4
  EXPECT_EQ(version(active()->KvPut("c", {{"v", "6"}}, 5)), 6u);
  EXPECT_EQ(version(other->KvPut("c", {{"v", "7"}})), 7u);
  EXPECT_THAT(active()->KvPut("c", {{"v", "x"}}, 6),
              StatusIs(absl::StatusCode::kAborted));  // the cache says 6
  EXPECT_EQ(version(active()->KvPut("c", {{"v", "8"}}, 7)), 8u);

  // Metadata changed by the other store: its cas_required holds.
  ASSERT_TRUE(active()->KvPut("c", {{"v", "9"}}).ok());  // cached again
  ASSERT_TRUE(other->KvSetMetadata("c", 0, /*cas_required=*/true).ok());
  EXPECT_THAT(active()->KvPut("c", {{"v", "x"}}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  ASSERT_TRUE(other->KvSetMetadata("c", 0, /*cas_required=*/false).ok());
  // And a delete of the whole secret starts it again at version 1.
  ASSERT_TRUE(active()->KvPut("c", {{"v", "10"}}).ok());  // cached again
  ASSERT_TRUE(other->KvDeleteAll("c").ok());
  EXPECT_EQ(version(active()->KvPut("c", {{"v", "new"}})), 1u);
  EXPECT_EQ(active()->KvMetadata("c")->current_version(), 1u);
  EXPECT_EQ(active()->KvGet("c")->data().at("v"), "new");
}

// A node that lost leadership and got it back never reuses what it cached
// in its earlier term: the writes of the leader in between stand.
TEST_F(StoreTest, WriteCacheDoesNotOutliveLeadership) {
  const int first = active_;
  ASSERT_TRUE(active()->KvPut("d", {{"v", "1"}}).ok());
  ASSERT_TRUE(active()->KvPut("d", {{"v", "2"}}).ok());  // cached
  ASSERT_TRUE(cluster_->nodes[first]->StepDown().ok());
  cluster_->Run(absl::Milliseconds(200));
  const int second = cluster_->Active();
  ASSERT_NE(second, first);
  ASSERT_TRUE(stores_[second]->KvPut("d", {{"v", "3"}}).ok());
  // Destroyed: a put on the first node's old metadata would find no data
  // at version 3 in its way and reuse the number.
  ASSERT_TRUE(stores_[second]->KvDestroy("d", {3}).ok());
  // Leadership comes back to the first node (the others step down).
  for (int round = 0; round < 10 && cluster_->Active() != first; ++round) {
    ASSERT_TRUE(cluster_->nodes[cluster_->Active()]->StepDown().ok());
    cluster_->Run(absl::Seconds(2));
  }
  ASSERT_EQ(cluster_->Active(), first);
  absl::StatusOr<KvWriteResult> put = stores_[first]->KvPut("d", {{"v", "4"}});
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(put->version, 4u);
  EXPECT_THAT(stores_[first]->KvGet("d", 3),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_TRUE(stores_[first]->KvMetadata("d")->versions(2).destroyed());
}

// ---------------------------------------------------------------- transit

TEST_F(StoreTest, TransitOnStandbysAndRotationHonoured) {
  ASSERT_TRUE(standby()->TransitCreateKey("payments").ok());  // Forwarded.
  forwarder_.calls = 0;
  // Encrypt stores reservations: the perf standby forwards it.
  absl::StatusOr<std::string> ct =
      standby()->TransitEncrypt("payments", "4111");
  ASSERT_TRUE(ct.ok()) << ct.status();
  EXPECT_TRUE(absl::StartsWith(*ct, "strongbox:v1:")) << *ct;
  EXPECT_EQ(forwarder_.calls.load(), 1) << "encrypt must run on the active";
  // Decrypt is served locally.
  EXPECT_EQ(*standby()->TransitDecrypt("payments", *ct), "4111");
  EXPECT_EQ(forwarder_.calls.load(), 1) << "decrypt must be served locally";
  EXPECT_EQ(*active()->TransitDecrypt("payments", *ct), "4111");
  ASSERT_TRUE(active()->TransitRotateKey("payments").ok());
  absl::StatusOr<std::string> ct2 =
      standby()->TransitEncrypt("payments", "4111");
  ASSERT_TRUE(ct2.ok());
  EXPECT_TRUE(absl::StartsWith(*ct2, "strongbox:v2:")) << *ct2;
  const int other = (active_ + 2) % 3;
  EXPECT_EQ(*stores_[other]->TransitDecrypt("payments", *ct2), "4111");
  EXPECT_EQ(*stores_[other]->TransitDecrypt("payments", *ct), "4111");
  absl::StatusOr<std::string> rewrapped =
      standby()->TransitRewrap("payments", *ct);
  ASSERT_TRUE(rewrapped.ok());
  EXPECT_TRUE(absl::StartsWith(*rewrapped, "strongbox:v2:"));
  // Encrypt, encrypt and rewrap forwarded; the decrypts served locally.
  EXPECT_EQ(forwarder_.calls.load(), 3);
}

// Without a forwarder a perf standby cannot encrypt (it holds no
// reservation and cannot store one): UNAVAILABLE with the route to the
// active. It still decrypts.
TEST_F(StoreTest, TransitEncryptOnAPerfStandbyWithoutForwarderNamesTheActive) {
  stores_.clear();
  SetUpCluster(StandbyMode::kPerfStandby, /*with_forwarder=*/false);
  ASSERT_TRUE(active()->TransitCreateKey("k").ok());
  absl::StatusOr<std::string> ct = active()->TransitEncrypt("k", "x");
  ASSERT_TRUE(ct.ok()) << ct.status();
  for (bool rewrap : {false, true}) {
    absl::Status s = rewrap ? standby()->TransitRewrap("k", *ct).status()
                            : standby()->TransitEncrypt("k", "y").status();
    EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
    std::optional<RouteHint> hint = GetRouteHint(s);
    ASSERT_TRUE(hint.has_value());
    EXPECT_EQ(hint->action, RouteDecision::Action::kForwardToActive);
    EXPECT_EQ(hint->leader_address, Cluster::Address(active_));
  }
  EXPECT_EQ(*standby()->TransitDecrypt("k", *ct), "x");
}

// Encryptions on every node (perf standbys forward theirs) are counted
// once, cluster-wide, in storage: no key version seals more values than
// its stored reservation, the key rotates at the limit, and a new active
// after failover continues above the stored marks.
TEST_F(StoreTest, TransitCountIsClusterWideAndSurvivesFailover) {
  stores_.clear();
  forwarder_.stores.clear();
  SetUpCluster(StandbyMode::kPerfStandby, /*with_forwarder=*/true,
               [](SecretStore::Options* so) {
                 so->transit_max_encryptions_per_version = 10;
                 so->transit_encryption_reservation = 4;
               });
  ASSERT_TRUE(stores_[active_]->TransitCreateKey("k").ok());
  std::map<std::string, int> per_version;  // "v<N>" -> ciphertexts
  std::vector<std::string> cts;
  auto encrypt_everywhere = [&](int rounds) {
    for (int i = 0; i < rounds; ++i) {
      for (int node = 0; node < 3; ++node) {
        absl::StatusOr<std::string> ct =
            stores_[node]->TransitEncrypt("k", "x");
        ASSERT_TRUE(ct.ok()) << "node " << node << ": " << ct.status();
        ++per_version[ct->substr(10, ct->find(':', 11) - 10)];
        cts.push_back(*ct);
      }
    }
  };
  encrypt_everywhere(5);  // 15 encryptions: v1 full (10), then v2
  // Fail over: the new active continues above the stored marks.
  ASSERT_TRUE(cluster_->nodes[active_]->Seal().ok());
  cluster_->Run(absl::Milliseconds(100));
  const int sealed = active_;
  active_ = cluster_->Active();
  ASSERT_NE(active_, sealed);
  cluster_->Unseal(sealed);
  cluster_->Run(absl::Milliseconds(100));
  encrypt_everywhere(5);  // 15 more
  absl::StatusOr<store::TransitKeyInfo> info =
      stores_[active_]->TransitReadKey("k");
  ASSERT_TRUE(info.ok());
  // 30 encryptions; the old active's unused block (at most 4) skipped.
  EXPECT_GE(info->latest_version(), 3u);
  EXPECT_LE(info->latest_version(), 4u);
  for (const auto& [version, count] : per_version) {
    EXPECT_LE(count, 10) << version << " sealed past the limit";
  }
  for (const std::string& ct : cts) {
    EXPECT_EQ(*stores_[(active_ + 1) % 3]->TransitDecrypt("k", ct), "x");
  }
}

// A host that wants rotations done by an operator: at the limit encrypt is
// refused with FAILED_PRECONDITION (through a perf standby too), nothing is
// sealed, and a manual rotation starts a new count.
TEST_F(StoreTest, TransitRefusesAtTheLimitWithoutAutomaticRotation) {
  stores_.clear();
  forwarder_.stores.clear();
  SetUpCluster(StandbyMode::kPerfStandby, /*with_forwarder=*/true,
               [](SecretStore::Options* so) {
                 so->transit_max_encryptions_per_version = 2;
                 so->transit_rotate_at_limit = false;
               });
  ASSERT_TRUE(active()->TransitCreateKey("k").ok());
  ASSERT_TRUE(active()->TransitEncrypt("k", "a").ok());
  ASSERT_TRUE(standby()->TransitEncrypt("k", "b").ok());
  for (SecretStore* store : {active(), standby()}) {
    absl::Status s = store->TransitEncrypt("k", "c").status();
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr("rotate the key"));
  }
  EXPECT_EQ(active()->TransitReadKey("k")->latest_version(), 1u);
  ASSERT_TRUE(standby()->TransitRotateKey("k").ok());
  absl::StatusOr<std::string> ct = standby()->TransitEncrypt("k", "d");
  ASSERT_TRUE(ct.ok()) << ct.status();
  EXPECT_TRUE(absl::StartsWith(*ct, "strongbox:v2:")) << *ct;
}

TEST(StoreOptionsTest, TransitLimitsMustBePositive) {
  std::unique_ptr<Backend> backend = NewInMemoryBackend();
  HaCoordinator::Options o;
  o.backend = backend.get();
  o.node_id = "n";
  o.advertise_address = "n:1";
  o.background_thread = false;
  std::unique_ptr<HaCoordinator> node = *HaCoordinator::Create(o);
  for (int which = 0; which < 2; ++which) {
    SecretStore::Options so;
    so.coordinator = node.get();
    (which == 0 ? so.transit_max_encryptions_per_version
                : so.transit_encryption_reservation) = 0;
    EXPECT_EQ(SecretStore::Create(so).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
}

// A KV path must leave room for its data keys within the backend's key
// limit (LMDB: 511 bytes), at every version.
TEST(StoreLimitsTest, PathLimitFollowsTheBackendKeyLimit) {
  InMemoryBackendOptions bo;
  bo.limits.max_key_bytes = 100;
  std::unique_ptr<Backend> backend = NewInMemoryBackend(bo);
  HaCoordinator::Options o;
  o.backend = backend.get();
  o.node_id = "n";
  o.advertise_address = "n:1";
  o.background_thread = false;
  o.lease_ttl = absl::Hours(1);
  o.renew_interval = absl::Minutes(1);
  std::unique_ptr<HaCoordinator> node = *HaCoordinator::Create(o);
  std::vector<std::string> shares = *node->Initialize(1, 1);
  ASSERT_TRUE(node->Unseal(shares[0]).ok());
  node->Poll();
  ASSERT_EQ(node->state(), HaState::kActive);
  SecretStore::Options so;
  so.coordinator = node.get();
  std::unique_ptr<SecretStore> store = *SecretStore::Create(so);
  const std::string longest(100 - 29, 'p');
  for (int v = 1; v <= 12; ++v) {
    absl::StatusOr<KvWriteResult> put = store->KvPut(longest, {{"v", "x"}});
    ASSERT_TRUE(put.ok()) << "version " << v << ": " << put.status();
  }
  absl::Status too_long = store->KvPut(longest + "p", {{"v", "x"}}).status();
  EXPECT_EQ(too_long.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(too_long.message()), HasSubstr("max_path_bytes"));
}

struct WipeCount {
  int wiped = 0;
  bool all_zero = true;
};

void CountWipe(const uint8_t* data, size_t size, void* arg) {
  auto* count = static_cast<WipeCount*>(arg);
  ++count->wiped;
  for (size_t i = 0; i < size; ++i) {
    if (data[i] != 0) count->all_zero = false;
  }
}

// Invariant 2: sealing wipes the Transit engine's cached keys too, before
// Seal() returns.
TEST_F(StoreTest, SealWipesCachedTransitKeys) {
  ASSERT_TRUE(active()->TransitCreateKey("wiped").ok());
  ASSERT_TRUE(active()->TransitRotateKey("wiped").ok());
  auto seal_and_count = [&] {
    // Warm the standby's cache (two key versions) or not, then seal it.
    // Wiped key buffers plus destroyed AEAD keys (each wipes its key
    // schedule; lib/crypto's tests check that per provider).
    WipeCount count;
    const int64_t live = crypto::Aes256GcmKey::LiveKeysForTesting();
    SetSecretBytesWipeObserverForTesting(&CountWipe, &count);
    EXPECT_TRUE(cluster_->nodes[standby_]->Seal().ok());
    SetSecretBytesWipeObserverForTesting(nullptr, nullptr);
    EXPECT_TRUE(count.all_zero);
    return count.wiped +
           static_cast<int>(live - crypto::Aes256GcmKey::LiveKeysForTesting());
  };
  const std::string ct = *active()->TransitEncrypt("wiped", "x");
  ASSERT_TRUE(standby()->TransitDecrypt("wiped", ct).ok());
  const int warm = seal_and_count();
  cluster_->Unseal(standby_);
  const int cold = seal_and_count();
  EXPECT_GE(warm - cold, 2) << "the two cached key versions were not wiped";

  // Sealing the barrier directly (no coordinator event) wipes them too.
  cluster_->Unseal(standby_);
  ASSERT_TRUE(standby()->TransitDecrypt("wiped", ct).ok());
  WipeCount direct;
  const int64_t live = crypto::Aes256GcmKey::LiveKeysForTesting();
  SetSecretBytesWipeObserverForTesting(&CountWipe, &direct);
  cluster_->nodes[standby_]->barrier()->Seal();
  SetSecretBytesWipeObserverForTesting(nullptr, nullptr);
  direct.wiped +=
      static_cast<int>(live - crypto::Aes256GcmKey::LiveKeysForTesting());
  EXPECT_TRUE(direct.all_zero);
  EXPECT_GE(direct.wiped - cold, 2)
      << "a direct barrier seal left Transit keys in memory";
  EXPECT_TRUE(cluster_->nodes[standby_]->Seal().ok());
}

}  // namespace
}  // namespace strongbox
