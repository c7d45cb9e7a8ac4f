// SecretStore's request pipeline (issue 15): policies judge every request
// on every node, audit sinks must accept the request entry before anything
// runs, a failed response entry never fails a committed write, and the
// audit salt lives behind the barrier.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/policy/policy.h"
#include "lib/policy/policy_set.h"
#include "lib/util/mutex.h"
#include "strongbox/audit_sink.h"
#include "strongbox/call_context.h"
#include "strongbox/secret_store.h"
#include "strongbox/testing/fault_injecting_backend.h"
#include "tests/ha/cluster.h"

namespace strongbox {
namespace {

using ::strongbox::testing_cluster::Cluster;
using ::strongbox::testing_cluster::ClusterOptions;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr auto kDenied = absl::StatusCode::kPermissionDenied;

// Moves bytes between in-process nodes, as a host's transport would.
class TestForwarder : public Forwarder {
 public:
  absl::StatusOr<std::string> Forward(absl::string_view leader,
                                      absl::string_view request) override {
    ++calls;
    {
      MutexLock lock(&mu);
      last_request = std::string(request);
    }
    auto it = stores.find(std::string(leader));
    if (it == stores.end()) return absl::UnavailableError("no route to host");
    return it->second->HandleSerialized(request);
  }
  std::map<std::string, SecretStore*> stores;
  std::atomic<int> calls{0};
  Mutex mu;
  std::string last_request ABSL_GUARDED_BY(mu);
};

// A sink that keeps its entries and fails on demand (a full disk).
class FaultySink : public AuditSink {
 public:
  absl::Status Write(const AuditEntry& entry) override {
    if (entry.kind == AuditEntry::Kind::kRequest ? fail_requests.load()
                                                 : fail_responses.load()) {
      return absl::ResourceExhaustedError("disk full (injected)");
    }
    MutexLock lock(&mu_);
    entries_.push_back(entry);
    return absl::OkStatus();
  }
  std::vector<AuditEntry> entries() {
    MutexLock lock(&mu_);
    return entries_;
  }
  std::atomic<bool> fail_requests{false};
  std::atomic<bool> fail_responses{false};

 private:
  Mutex mu_;
  std::vector<AuditEntry> entries_ ABSL_GUARDED_BY(mu_);
};

class CountingObserver : public AuditObserver {
 public:
  void OnAuditFailure(const AuditFailure& failure) override {
    if (failure.kind == AuditEntry::Kind::kResponse) ++response_failures;
  }
  std::atomic<int> response_failures{0};
};

class AccessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ClusterOptions o;
    o.mode = StandbyMode::kPerfStandby;
    cluster_ = std::make_unique<Cluster>(o);
    cluster_->Initialize();
    cluster_->UnsealAll();
    cluster_->Run(absl::Seconds(1));
    for (int i = 0; i < 3; ++i) {
      SecretStore::Options so;
      so.coordinator = cluster_->nodes[i].get();
      so.forwarder = &forwarder_;
      so.clock = &cluster_->clock;
      so.max_index_wait = absl::Milliseconds(20);
      so.audit_sinks.push_back({"mem", &sinks_[i], absl::Seconds(5)});
      so.audit_observer = &observer_;
      stores_.push_back(*SecretStore::Create(so));
      forwarder_.stores[Cluster::Address(i)] = stores_.back().get();
    }
    active_ = cluster_->Active();
    standby_ = (active_ + 1) % 3;
  }

  SecretStore* active() { return stores_[active_].get(); }
  SecretStore* standby() { return stores_[standby_].get(); }
  uint64_t Revision() { return *cluster_->shared->Revision(); }

  TestForwarder forwarder_;
  std::unique_ptr<Cluster> cluster_;
  FaultySink sinks_[3];
  CountingObserver observer_;
  std::vector<std::unique_ptr<SecretStore>> stores_;
  int active_ = -1;
  int standby_ = -1;
};

const CallContext kRoot = CallContext::Root("admin");

TEST_F(AccessTest, NoCallerPassesUntilAPolicyExistsThenOnlyRootAndGrants) {
  ASSERT_TRUE(active()->KvPut("app/x", {{"k", "v"}}).ok());
  ASSERT_TRUE(active()->KvGet("app/x").ok());
  ASSERT_TRUE(active()
                  ->PolicyPut("app-read",
                              R"({"path":{"app/*":{"capabilities":["read"]}}})",
                              kRoot)
                  .ok());
  EXPECT_EQ(active()->KvGet("app/x").status().code(), kDenied);
  EXPECT_EQ(standby()->KvGet("app/x").status().code(), kDenied);
  EXPECT_TRUE(active()->KvGet("app/x", 0, 0, kRoot).ok());
  const CallContext alice = CallContext::As("alice", {"app-read"});
  EXPECT_TRUE(standby()->KvGet("app/x", 0, 0, alice).ok());
  EXPECT_EQ(standby()->KvPut("app/x", {{"k", "w"}}, {}, alice).status().code(),
            kDenied);
  EXPECT_EQ(active()->KvGet("other/y", 0, 0, alice).status().code(), kDenied);
  EXPECT_EQ(active()->KvGet("app/x", 0, 0, kRoot)->data().at("k"), "v");
}

TEST_F(AccessTest, PolicyAdministrationNeedsSudoAndRefusesBadDocuments) {
  ASSERT_TRUE(active()
                  ->PolicyPut("admin",
                              R"({"path":{"sys/policy/*":{"capabilities":
                                  ["sudo"]}}})",
                              kRoot)
                  .ok());
  ASSERT_TRUE(active()
                  ->PolicyPut("app-read",
                              R"({"path":{"app/*":{"capabilities":["read"]}}})",
                              kRoot)
                  .ok());
  const CallContext alice = CallContext::As("alice", {"app-read"});
  const CallContext ops = CallContext::As("ops", {"admin"});
  EXPECT_EQ(active()->PolicyPut("x", R"({"path":{}})", alice).status().code(),
            kDenied);
  EXPECT_EQ(active()->PolicyGet("admin", alice).status().code(), kDenied);
  EXPECT_EQ(active()->PolicyList(alice).status().code(), kDenied);
  // Through a standby: forwarded with its caller, judged on both nodes.
  EXPECT_TRUE(standby()->PolicyPut("x", R"({"path":{}})", ops).ok());
  EXPECT_THAT(*standby()->PolicyList(ops),
              ::testing::ElementsAre("admin", "app-read", "x"));
  EXPECT_EQ(*standby()->PolicyGet("x", ops), R"({"path":{}})");
  absl::Status bad = active()
                         ->PolicyPut("y",
                                     "{\"path\":\n{\"a\":{\"capabilities\":"
                                     "[\"reed\"]}}}",
                                     ops)
                         .status();
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.message()), HasSubstr("line 2"));
  EXPECT_EQ(active()->PolicyGet("y", ops).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_TRUE(active()->PolicyDelete("x", ops).ok());
  EXPECT_EQ(active()->PolicyGet("x", ops).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(AccessTest, ForwardedRequestsCarryTheCallerAndAreJudgedOnTheActive) {
  ASSERT_TRUE(active()
                  ->PolicyPut("app-write",
                              R"({"path":{"app/*":{"capabilities":
                                  ["update","read"]}}})",
                              kRoot)
                  .ok());
  const CallContext alice = CallContext::As("alice", {"app-write"});
  forwarder_.calls = 0;
  ASSERT_TRUE(standby()->KvPut("app/f", {{"k", "v"}}, {}, alice).ok());
  EXPECT_EQ(forwarder_.calls.load(), 1);
  store::Request sent;
  {
    MutexLock lock(&forwarder_.mu);
    ASSERT_TRUE(sent.ParseFromString(forwarder_.last_request));
  }
  EXPECT_EQ(sent.caller().id(), "alice");
  EXPECT_THAT(sent.caller().policies(), ::testing::ElementsAre("app-write"));
  EXPECT_FALSE(sent.caller().root());
  // A forwarded request whose caller lacks the grant is refused on the
  // active too (it judges again, whatever the standby said).
  sent.mutable_caller()->set_id("mallory");
  sent.mutable_caller()->clear_policies();
  store::Response resp;
  ASSERT_TRUE(resp.ParseFromString(
      active()->HandleSerialized(sent.SerializeAsString())));
  EXPECT_EQ(resp.code(), static_cast<int>(kDenied));
}

// The active creates the audit salts without waiting for a request of its
// own: a cluster whose requests all reach a standby first works at once.
TEST_F(AccessTest, FirstRequestOnAStandbyFindsTheSalt) {
  absl::StatusOr<KvWriteResult> put = standby()->KvPut("app/s", {{"k", "v"}});
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_TRUE(stores_[(standby_ + 1) % 3]->KvGet("app/s", 0, put->index).ok());
}

TEST_F(AccessTest, ReservedKvFoldersAreRefused) {
  for (const char* path : {"metadata/a", "sys/policy/p", "transit/keys/k",
                           "undelete/a", "destroy/a"}) {
    EXPECT_EQ(active()->KvPut(path, {{"k", "v"}}, {}, kRoot).status().code(),
              absl::StatusCode::kInvalidArgument)
        << path;
  }
  EXPECT_TRUE(active()->KvPut("app/metadata/a", {{"k", "v"}}).ok());
}

// (c) A sink that fails writes (a full disk) refuses the request: nothing
// reaches the backend, on a real store.
TEST_F(AccessTest, FailingSinkRefusesRequestsWithNothingApplied) {
  // Every sink fails, on every node; the first put creates the salt, so
  // make it first with the sinks healthy.
  ASSERT_TRUE(active()->KvPut("app/x", {{"k", "old"}}).ok());
  ASSERT_TRUE(standby()->KvGet("app/x").ok());
  for (FaultySink& s : sinks_) s.fail_requests = true;
  const uint64_t before = Revision();
  const std::vector<std::string> keys_before = *cluster_->shared->List("");
  absl::Status put = active()->KvPut("app/x", {{"k", "new"}}).status();
  EXPECT_EQ(put.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(put.message()), HasSubstr("audit"));
  EXPECT_EQ(standby()->KvPut("app/y", {{"k", "new"}}).status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(active()->PolicyPut("p", R"({"path":{}})", kRoot).status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(active()->KvGet("app/x").status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(Revision(), before);
  EXPECT_EQ(*cluster_->shared->List(""), keys_before);
  EXPECT_GE(active()->audit_stats().requests_refused, 3u);
  for (FaultySink& s : sinks_) s.fail_requests = false;
  EXPECT_EQ(active()->KvGet("app/x")->data().at("k"), "old");
  EXPECT_EQ(active()->KvGet("app/y").status().code(),
            absl::StatusCode::kNotFound);
}

// (d) The response entry fails after the write committed: the write is
// acknowledged, and the failure counted and reported.
TEST_F(AccessTest, FailedResponseEntryNeverFailsACommittedWrite) {
  ASSERT_TRUE(active()->KvPut("app/x", {{"k", "v1"}}).ok());
  ASSERT_TRUE(active()->FlushAudit(absl::Seconds(10)));
  const uint64_t failures = active()->audit_stats().response_failures;
  sinks_[active_].fail_responses = true;
  absl::StatusOr<KvWriteResult> put = active()->KvPut("app/x", {{"k", "v2"}});
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(put->version, 2u);
  ASSERT_TRUE(active()->FlushAudit(absl::Seconds(10)));
  EXPECT_EQ(active()->audit_stats().response_failures, failures + 1);
  EXPECT_GE(observer_.response_failures.load(), 1);
  sinks_[active_].fail_responses = false;
  EXPECT_EQ(active()->KvGet("app/x")->data().at("k"), "v2");
}

TEST_F(AccessTest, EntriesCarryHashesUnderTheSaltKeptBehindTheBarrier) {
  const std::string secret = "s3cr3t-value-of-alice";
  ASSERT_TRUE(active()->KvPut("app/x", {{"pw", secret}}).ok());
  ASSERT_TRUE(standby()->KvGet("app/x").ok());
  ASSERT_TRUE(active()->FlushAudit(absl::Seconds(10)));
  ASSERT_TRUE(standby()->FlushAudit(absl::Seconds(10)));
  // One salt per sink name, behind the barrier: every node hashes alike.
  EXPECT_THAT(*cluster_->shared->List(""), ::testing::Contains("audit/"));
  absl::StatusOr<std::string> hash = active()->AuditHash("mem", secret);
  ASSERT_TRUE(hash.ok()) << hash.status();
  EXPECT_TRUE(absl::StartsWith(*hash, "hmac-sha256:"));
  EXPECT_EQ(*standby()->AuditHash("mem", secret), *hash);
  EXPECT_EQ(active()->AuditHash("nope", secret).status().code(),
            absl::StatusCode::kNotFound);
  int seen = 0;
  for (int node : {active_, standby_}) {
    for (const AuditEntry& e : sinks_[node].entries()) {
      for (const auto& [name, value] : e.fields) {
        EXPECT_FALSE(absl::StrContains(value, secret));
        if (name == "data.pw") {
          EXPECT_EQ(value, *hash);
          ++seen;
        }
      }
    }
  }
  EXPECT_EQ(seen, 2);  // the put's request entry, the get's response entry
  // A store made later (a restart) keeps the same salt.
  SecretStore::Options so;
  so.coordinator = cluster_->nodes[standby_].get();
  FaultySink sink;
  so.audit_sinks.push_back({"mem", &sink});
  std::unique_ptr<SecretStore> again = *SecretStore::Create(so);
  EXPECT_EQ(*again->AuditHash("mem", secret), *hash);
}

// (b) Property: once a policy change is acknowledged at index N, a request
// carrying min_index N is allowed or denied on every node exactly as the
// policies say (a brute-force model from the same documents).
TEST_F(AccessTest, PolicyChangesAreInForceOnEveryNodeAtTheirIndex) {
  uint64_t seed = std::random_device{}();
  if (const char* s = std::getenv("ACCESS_TEST_SEED")) {
    seed = std::strtoull(s, nullptr, 10);
  }
  SCOPED_TRACE(absl::StrCat("seed ", seed, " (ACCESS_TEST_SEED=", seed, ")"));
  std::mt19937_64 rng(seed);
  for (const char* path : {"app/a", "app/b", "other/c"}) {
    ASSERT_TRUE(active()->KvPut(path, {{"k", "v"}}, {}, kRoot).ok());
  }
  const std::vector<std::string> names = {"p0", "p1", "p2"};
  const std::vector<std::string> patterns = {
      "app/*", "app/a", "app/+", "metadata/app/*", "other/*", "*", "+/b"};
  const std::vector<std::string> caps = {"read", "list", "deny", "update"};
  std::map<std::string, std::string> documents;  // the model
  struct Probe {
    store::Request request;
    std::string path;
    Capability capability;
  };
  std::vector<Probe> probes;
  for (const char* p : {"app/a", "app/b", "other/c"}) {
    Probe probe;
    probe.request.mutable_kv_get()->set_path(p);
    probe.path = p;
    probe.capability = Capability::kRead;
    probes.push_back(probe);
  }
  {
    Probe probe;
    probe.request.mutable_kv_metadata_get()->set_path("app/a");
    probe.path = "metadata/app/a";
    probe.capability = Capability::kRead;
    probes.push_back(probe);
    Probe list;
    list.request.mutable_kv_list()->set_prefix("app/");
    list.path = "metadata/app/";
    list.capability = Capability::kList;
    probes.push_back(list);
  }
  const std::vector<std::vector<std::string>> callers = {
      {"p0"}, {"p1", "p2"}, {"p0", "p1", "p2"}, {"p2", "missing"}};
  int allowed_seen = 0, denied_seen = 0;
  for (int round = 0; round < 40; ++round) {
    SCOPED_TRACE(absl::StrCat("round ", round));
    const std::string& name = names[rng() % names.size()];
    SecretStore* writer = stores_[rng() % 3].get();  // standbys forward
    absl::StatusOr<uint64_t> index;
    if (rng() % 4 == 0) {
      index = writer->PolicyDelete(name, kRoot);
      documents.erase(name);
    } else {
      std::vector<std::string> rules;
      std::vector<std::string> shuffled = patterns;
      std::shuffle(shuffled.begin(), shuffled.end(), rng);
      const int n = 1 + static_cast<int>(rng() % 3);
      for (int i = 0; i < n; ++i) {
        std::vector<std::string> granted;
        for (const std::string& c : caps) {
          if (rng() % 3 == 0) granted.push_back(absl::StrCat("\"", c, "\""));
        }
        rules.push_back(absl::StrCat("\"", shuffled[i],
                                     "\":{\"capabilities\":[",
                                     absl::StrJoin(granted, ","), "]}"));
      }
      const std::string doc =
          absl::StrCat("{\"path\":{", absl::StrJoin(rules, ","), "}}");
      index = writer->PolicyPut(name, doc, kRoot);
      documents[name] = doc;
    }
    ASSERT_TRUE(index.ok()) << index.status();
    for (const std::vector<std::string>& policies : callers) {
      // The model: the documents as acknowledged, compiled from scratch.
      std::vector<policy::Policy> parsed;
      for (const std::string& p : policies) {
        auto it = documents.find(p);
        if (it == documents.end()) continue;
        parsed.push_back(*policy::ParsePolicy(p, it->second));
      }
      std::vector<const policy::Policy*> chosen;
      for (const policy::Policy& p : parsed) chosen.push_back(&p);
      const policy::CompiledPolicySet model =
          policy::CompiledPolicySet::Compile(chosen);
      const CallContext caller = CallContext::As("c", policies);
      for (Probe& probe : probes) {
        const bool allowed = model.Allows(probe.path, probe.capability);
        (allowed ? allowed_seen : denied_seen)++;
        probe.request.set_min_index(*index);
        for (int node = 0; node < 3; ++node) {
          const store::Response r =
              stores_[node]->Handle(probe.request, caller);
          EXPECT_EQ(r.code() == static_cast<int>(kDenied), !allowed)
              << "node " << node << (node == active_ ? " (active)" : "")
              << " path " << probe.path << " policies "
              << absl::StrJoin(policies, ",") << ": " << r.error();
          if (allowed) EXPECT_EQ(r.code(), 0) << r.error();
        }
      }
    }
  }
  // The random schedule exercised both outcomes.
  EXPECT_GT(allowed_seen, 0);
  EXPECT_GT(denied_seen, 0);
}

// Issue 15 item 1: "does any policy exist" and the policies are served from
// the cache: once a node has read the policies, requests list nothing in
// storage (no List on the request path, with or without a caller), and a
// standby still judges by a policy change as soon as it reaches the index
// the change was acknowledged at.
TEST_F(AccessTest, PolicyCacheListsNothingPerRequestAndStandbysSeeChanges) {
  ASSERT_TRUE(active()->KvPut("app/x", {{"k", "v"}}).ok());
  store::Request get;
  get.mutable_kv_get()->set_path("app/x");
  const CallContext alice = CallContext::As("alice", {"app-read"});
  // Warm both nodes' caches before the change: no policy, no caller passes.
  EXPECT_EQ(standby()->Handle(get).code(), 0);
  EXPECT_EQ(active()->Handle(get).code(), 0);
  absl::StatusOr<uint64_t> index = active()->PolicyPut(
      "app-read", R"({"path":{"app/*":{"capabilities":["read"]}}})", kRoot);
  ASSERT_TRUE(index.ok()) << index.status();
  get.set_min_index(*index);
  EXPECT_EQ(standby()->Handle(get).code(), static_cast<int>(kDenied));
  EXPECT_EQ(standby()->Handle(get, alice).code(), 0);
  EXPECT_EQ(active()->Handle(get).code(), static_cast<int>(kDenied));
  EXPECT_EQ(active()->Handle(get, alice).code(), 0);

  // Nothing changed since: any List on any node's storage link fails.
  for (auto& link : cluster_->links) {
    link->FailNext(1 << 20, absl::InternalError("List on the request path"),
                   FaultInjectingBackend::kList);
  }
  for (int i = 0; i < 20; ++i) {
    for (SecretStore* node : {active(), standby()}) {
      EXPECT_EQ(node->Handle(get).code(), static_cast<int>(kDenied));
      EXPECT_EQ(node->Handle(get, alice).code(), 0);
    }
  }
  for (auto& link : cluster_->links) {
    EXPECT_EQ(link->injected_failures(), 0);
    link->Clear();
  }

  // A change acknowledged on the active holds on the standby at its index.
  index = active()->PolicyPut(
      "app-read", R"({"path":{"app/*":{"capabilities":["deny"]}}})", kRoot);
  ASSERT_TRUE(index.ok()) << index.status();
  get.set_min_index(*index);
  EXPECT_EQ(standby()->Handle(get, alice).code(), static_cast<int>(kDenied));
  EXPECT_EQ(active()->Handle(get, alice).code(), static_cast<int>(kDenied));
  // And its removal: no policy left, no caller passes again.
  index = active()->PolicyDelete("app-read", kRoot);
  ASSERT_TRUE(index.ok()) << index.status();
  get.set_min_index(*index);
  EXPECT_EQ(standby()->Handle(get).code(), 0);
  EXPECT_EQ(active()->Handle(get).code(), 0);
}

// Issue 15 item 2: a lent sink that hangs forever does not hold up the
// store's destructor (each sink gets its timeout); the sink is released
// at the end (the host makes a hung call return before it frees a sink).
TEST_F(AccessTest, DestroyingTheStoreIsBoundedWhileASinkHangsForever) {
  class ForeverSink : public AuditSink {
   public:
    absl::Status Write(const AuditEntry&) override {
      MutexLock lock(&mu_);
      entered_ = true;
      mu_.SignalAll();
      mu_.Await([this]()
                    ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return released_; });
      returned_ = true;
      mu_.SignalAll();
      return absl::OkStatus();
    }
    void Release() {
      MutexLock lock(&mu_);
      released_ = true;
      mu_.SignalAll();
    }
    bool Await(bool ForeverSink::*flag) {
      MutexLock lock(&mu_);
      return mu_.AwaitWithTimeout([this, flag]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(
                                      mu_) { return this->*flag; },
                                  absl::Seconds(60));
    }
    Mutex mu_;
    bool entered_ ABSL_GUARDED_BY(mu_) = false;
    bool released_ ABSL_GUARDED_BY(mu_) = false;
    bool returned_ ABSL_GUARDED_BY(mu_) = false;
  };
  ForeverSink sink;
  SecretStore::Options so;
  so.coordinator = cluster_->nodes[active_].get();
  so.clock = &cluster_->clock;
  so.audit_sinks.push_back({"forever", &sink, absl::Milliseconds(50)});
  std::unique_ptr<SecretStore> store = *SecretStore::Create(so);
  EXPECT_EQ(store->KvGet("app/x", 0, 0, kRoot).status().code(),
            absl::StatusCode::kUnavailable);
  ASSERT_TRUE(sink.Await(&ForeverSink::entered_));

  Mutex mu;
  bool destroyed = false;
  std::thread destroyer([&] {
    store.reset();
    MutexLock lock(&mu);
    destroyed = true;
    mu.SignalAll();
  });
  bool returned;
  {
    MutexLock lock(&mu);
    returned = mu.AwaitWithTimeout(
        [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return destroyed; },
        absl::Seconds(30));
  }
  EXPECT_TRUE(returned) << "the store's destructor waited for a hung sink";
  sink.Release();  // the abandoned call returns; then `sink` may go
  destroyer.join();
  EXPECT_TRUE(sink.Await(&ForeverSink::returned_));
}

// Issue 15 item 3: a sealed node refuses every request and audits the
// refusal (caller, operation, path, outcome) with no value at all, hashed
// or not: its salts are behind the barrier.
TEST_F(AccessTest, SealedRefusalsAreAuditedWithoutValues) {
  const CallContext alice = CallContext::As("alice", {"app-write"});
  const std::string secret = "sealed-node-secret-value";
  const size_t before = sinks_[standby_].entries().size();
  ASSERT_TRUE(cluster_->nodes[standby_]->Seal().ok());
  EXPECT_EQ(
      standby()->KvPut("app/s", {{"k", secret}}, {}, alice).status().code(),
      absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(standby()->FlushAudit(absl::Seconds(30)));
  const std::vector<AuditEntry> entries = sinks_[standby_].entries();
  ASSERT_EQ(entries.size(), before + 2);
  const AuditEntry& request = entries[before];
  const AuditEntry& response = entries[before + 1];
  EXPECT_EQ(request.kind, AuditEntry::Kind::kRequest);
  EXPECT_EQ(response.kind, AuditEntry::Kind::kResponse);
  EXPECT_EQ(response.id, request.id);
  for (const AuditEntry* e : {&request, &response}) {
    EXPECT_EQ(e->caller, "alice");
    EXPECT_EQ(e->operation, "kv_put");
    EXPECT_EQ(e->path, "app/s");
    EXPECT_TRUE(e->fields.empty());
    EXPECT_THAT(e->ToJsonLine(), Not(HasSubstr(secret)));
  }
  EXPECT_EQ(response.code, absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(response.error, HasSubstr("sealed"));
}

// Issue 15 item 4: a forwarded request is audited on both nodes, and the
// entries say so: the active's carry forwarded, the standby's response
// entry names the active it went to.
TEST_F(AccessTest, ForwardedRequestsAreAuditedOnBothNodesAndMarked) {
  const size_t on_standby = sinks_[standby_].entries().size();
  const size_t on_active = sinks_[active_].entries().size();
  ASSERT_TRUE(standby()->KvPut("app/fw", {{"k", "v"}}, {}, kRoot).ok());
  ASSERT_TRUE(standby()->FlushAudit(absl::Seconds(30)));
  ASSERT_TRUE(active()->FlushAudit(absl::Seconds(30)));
  const std::vector<AuditEntry> s = sinks_[standby_].entries();
  const std::vector<AuditEntry> a = sinks_[active_].entries();
  ASSERT_EQ(s.size(), on_standby + 2);
  ASSERT_EQ(a.size(), on_active + 2);
  for (size_t i = on_standby; i < s.size(); ++i) {
    EXPECT_EQ(s[i].operation, "kv_put");
    EXPECT_FALSE(s[i].forwarded);
    EXPECT_EQ(s[i].forwarded_to, s[i].kind == AuditEntry::Kind::kResponse
                                     ? Cluster::Address(active_)
                                     : "");
  }
  for (size_t i = on_active; i < a.size(); ++i) {
    EXPECT_EQ(a[i].operation, "kv_put");
    EXPECT_TRUE(a[i].forwarded);
    EXPECT_EQ(a[i].forwarded_to, "");
    EXPECT_THAT(a[i].ToJsonLine(), HasSubstr("\"forwarded\":true"));
  }
  EXPECT_THAT(s.back().ToJsonLine(),
              HasSubstr(absl::StrCat("\"forwarded_to\":\"",
                                     Cluster::Address(active_), "\"")));
  // A request served where it arrived carries neither mark.
  ASSERT_TRUE(active()->KvPut("app/local", {{"k", "v"}}, {}, kRoot).ok());
  ASSERT_TRUE(active()->FlushAudit(absl::Seconds(30)));
  const AuditEntry last = sinks_[active_].entries().back();
  EXPECT_FALSE(last.forwarded);
  EXPECT_EQ(last.forwarded_to, "");
  EXPECT_THAT(last.ToJsonLine(), Not(HasSubstr("forwarded")));
}

}  // namespace
}  // namespace strongbox
