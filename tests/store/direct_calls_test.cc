// SecretStore's one-item Transit calls (TransitEncrypt, TransitDecrypt,
// TransitRewrap), KvGet and KvPut are served without request or response
// messages when no audit entry is needed (SecretStoreImpl::Direct). Each case
// here makes the same call twice, once through that API and once as a request
// through Handle(), and requires the same answer: code, message, route
// hint, and the same result (for an encryption, the same plaintext behind
// it). Transit: good calls, bad names, missing keys, oversized plaintexts,
// tampered, malformed and refused ciphertexts, policy verdicts for every
// kind of caller, a perf standby (decrypt served here, encrypt forwarded),
// a sealed node, leadership lost in the middle of a reservation write.
// KvGet: current and older versions, missing, deleted and destroyed ones,
// bad and reserved paths, policy verdicts, a perf standby and a plain one,
// a sealed node, a backend that fails, a record that does not open, data
// that is missing. Audited stores must keep recording these calls.
#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/store/test_hooks.h"
#include "lib/util/mutex.h"
#include "strongbox/audit_sink.h"
#include "strongbox/call_context.h"
#include "strongbox/secret_store.h"
#include "strongbox/testing/fault_injecting_backend.h"
#include "tests/ha/cluster.h"
#include "tests/store/loopback_forwarder.h"

namespace strongbox {
namespace {

using ::strongbox::testing_cluster::Cluster;
using ::strongbox::testing_cluster::ClusterOptions;
using ::testing::HasSubstr;

using Op = store::Request::OpCase;
constexpr Op kEncrypt = store::Request::kTransitEncrypt;
constexpr Op kDecrypt = store::Request::kTransitDecrypt;
constexpr Op kRewrap = store::Request::kTransitRewrap;

const CallContext kRoot = CallContext::Root("admin");

// What a call answered, in the terms a host can see.
struct Outcome {
  absl::StatusCode code = absl::StatusCode::kOk;
  std::string message;
  std::string route;   // RouteActionName of the hint; empty: no hint
  std::string leader;  // the hint's leader address
  // When OK: the result (a Transit ciphertext or plaintext; a KvSecret's
  // bytes), or a put's version and index.
  std::string value;
  uint64_t version = 0;
  uint64_t index = 0;
};

bool operator==(const Outcome& a, const Outcome& b) {
  return a.code == b.code && a.message == b.message && a.route == b.route &&
         a.leader == b.leader && a.value == b.value && a.version == b.version &&
         a.index == b.index;
}

std::ostream& operator<<(std::ostream& os, const Outcome& o) {
  return os << absl::StatusCodeToString(o.code) << " \"" << o.message
            << "\" route " << o.route << " " << o.leader << " value "
            << o.value.size() << " bytes, version " << o.version << " index "
            << o.index;
}

// The status part of an Outcome.
Outcome OutcomeOf(const absl::Status& status) {
  Outcome o;
  o.code = status.code();
  o.message = std::string(status.message());
  if (std::optional<RouteHint> hint = GetRouteHint(status)) {
    o.route = std::string(RouteActionName(hint->action));
    o.leader = hint->leader_address;
  }
  return o;
}

Outcome OutcomeOf(const absl::StatusOr<std::string>& result) {
  Outcome o = OutcomeOf(result.status());
  if (result.ok()) o.value = *result;
  return o;
}

Outcome OutcomeOf(const absl::StatusOr<store::KvSecret>& result) {
  Outcome o = OutcomeOf(result.status());
  if (result.ok()) {
    // One field per secret here, so the map's order is fixed.
    result->SerializeToString(&o.value);
  }
  return o;
}

// The status parts of two outcomes agree.
void ExpectSameStatus(const Outcome& api, const Outcome& messages) {
  EXPECT_EQ(api.code, messages.code) << api.message;
  EXPECT_EQ(api.message, messages.message);
  EXPECT_EQ(api.route, messages.route);
  EXPECT_EQ(api.leader, messages.leader);
}

// The call as a one-item batch through Handle(), read back as the API
// reads a response.
absl::StatusOr<std::string> ViaMessages(SecretStore* store, Op op,
                                        absl::string_view name,
                                        absl::string_view input,
                                        absl::string_view context,
                                        const CallContext& caller) {
  store::Request request;
  store::TransitBatchRequest* batch =
      op == kEncrypt   ? request.mutable_transit_encrypt()
      : op == kDecrypt ? request.mutable_transit_decrypt()
                       : request.mutable_transit_rewrap();
  batch->set_name(std::string(name));
  store::TransitItem* item = batch->add_items();
  if (op == kEncrypt) {
    item->set_plaintext(std::string(input));
  } else {
    item->set_ciphertext(std::string(input));
  }
  item->set_context(std::string(context));
  store::Response response = store->Handle(request, caller);
  if (absl::Status s = ResponseStatus(response); !s.ok()) return s;
  if (response.transit_batch().items_size() != 1) {
    return absl::InternalError("transit answered no item");
  }
  const store::TransitResultItem& result = response.transit_batch().items(0);
  if (result.code() != 0) {
    return absl::Status(static_cast<absl::StatusCode>(result.code()),
                        result.error());
  }
  return op == kDecrypt ? result.plaintext() : result.ciphertext();
}

absl::StatusOr<std::string> ViaApi(SecretStore* store, Op op,
                                   absl::string_view name,
                                   absl::string_view input,
                                   absl::string_view context,
                                   const CallContext& caller) {
  switch (op) {
    case kEncrypt:
      return store->TransitEncrypt(name, input, context, caller);
    case kDecrypt:
      return store->TransitDecrypt(name, input, context, caller);
    default:
      return store->TransitRewrap(name, input, context, caller);
  }
}

// A sink that keeps the operation of every entry.
class RecordingSink : public AuditSink {
 public:
  absl::Status Write(const AuditEntry& entry) override {
    MutexLock lock(&mu_);
    operations_.push_back(absl::StrCat(
        entry.kind == AuditEntry::Kind::kRequest ? "request " : "response ",
        entry.operation));
    return absl::OkStatus();
  }
  std::vector<std::string> operations() {
    MutexLock lock(&mu_);
    return operations_;
  }

 private:
  Mutex mu_;
  std::vector<std::string> operations_ ABSL_GUARDED_BY(mu_);
};

class DirectCallsTest : public ::testing::Test {
 protected:
  // `reservation`: encryptions per stored block (1: every encryption
  // writes the key record). `audited`: each store gets an audit sink.
  // `tweak`, if given, adjusts each node's store options.
  void SetUpCluster(
      uint64_t reservation, AuditSink* sink = nullptr,
      StandbyMode mode = StandbyMode::kPerfStandby,
      std::function<void(SecretStore::Options*)> tweak = nullptr) {
    stores_.clear();
    forwarder_.stores.clear();
    ClusterOptions o;
    o.mode = mode;
    cluster_ = std::make_unique<Cluster>(o);
    cluster_->Initialize();
    cluster_->UnsealAll();
    cluster_->Run(absl::Seconds(1));
    for (int i = 0; i < 3; ++i) {
      SecretStore::Options so;
      so.coordinator = cluster_->nodes[i].get();
      so.forwarder = &forwarder_;
      so.clock = &cluster_->clock;
      so.transit_encryption_reservation = reservation;
      if (sink != nullptr) so.audit_sinks.push_back({"mem", sink});
      if (tweak) tweak(&so);
      stores_.push_back(*SecretStore::Create(so));
      forwarder_.stores[Cluster::Address(i)] = stores_.back().get();
    }
    active_ = cluster_->Active();
    standby_ = (active_ + 1) % 3;
  }

  void SetUp() override {
    store_testing::CountDirectCalls(true);
    SetUpCluster(/*reservation=*/2);
  }
  void TearDown() override { store_testing::CountDirectCalls(false); }

  // Runs `steps` on a fresh cluster (set up by `setup`) twice, once through
  // the typed API (api = true) and once through Handle(), and requires the
  // same record of answers (`steps` appends one line per call).
  void ExpectSameBothWays(
      const std::function<void()>& setup,
      const std::function<void(bool api, std::vector<std::string>* record)>&
          steps) {
    std::vector<std::string> records[2];
    for (int way = 0; way < 2; ++way) {
      setup();
      steps(way == 0, &records[way]);
    }
    ASSERT_EQ(records[0].size(), records[1].size());
    for (size_t i = 0; i < records[0].size(); ++i) {
      EXPECT_EQ(records[0][i], records[1][i]) << "call #" << i;
    }
  }

  SecretStore* active() { return stores_[active_].get(); }
  SecretStore* standby() { return stores_[standby_].get(); }

  // The plaintext behind a ciphertext, read by root on the active.
  std::string Opened(absl::string_view name, absl::string_view ciphertext,
                     absl::string_view context) {
    absl::StatusOr<std::string> p =
        ViaMessages(active(), kDecrypt, name, ciphertext, context, kRoot);
    return p.ok() ? *p : absl::StrCat("<", p.status().ToString(), ">");
  }

  // Makes the call both ways on `store` and requires the same answer.
  void ExpectSameAnswer(SecretStore* store, Op op, absl::string_view name,
                        absl::string_view input, absl::string_view context,
                        const CallContext& caller, const std::string& what) {
    SCOPED_TRACE(what);
    Outcome api = OutcomeOf(ViaApi(store, op, name, input, context, caller));
    Outcome messages =
        OutcomeOf(ViaMessages(store, op, name, input, context, caller));
    ExpectSameStatus(api, messages);
    if (api.code != absl::StatusCode::kOk) {
      EXPECT_EQ(api.value, "");
      return;
    }
    if (op == kDecrypt) {
      EXPECT_EQ(api.value, messages.value);
      return;
    }
    // Fresh nonces: the ciphertexts differ, the version and the plaintext
    // behind them do not.
    EXPECT_EQ(api.value.substr(0, api.value.find(':', 10)),
              messages.value.substr(0, messages.value.find(':', 10)));
    EXPECT_EQ(Opened(name, api.value, context),
              Opened(name, messages.value, context));
  }

  // Every case on `store` as `caller`; `ct1` is a version-1 ciphertext of
  // "hello" under context "ctx", `ct2` a version-2 one.
  void AllCases(SecretStore* store, const CallContext& caller,
                const std::string& ct1, const std::string& ct2,
                const std::string& who) {
    std::string tampered = ct2;
    tampered[tampered.size() - 3] ^= 1;
    const std::string big((1 << 20) + 1, 'b');
    struct Case {
      Op op;
      std::string name, input, context, what;
    };
    const std::vector<Case> cases = {
        {kEncrypt, "k", "hello", "ctx", "encrypt"},
        {kEncrypt, "k", "", "", "encrypt nothing"},
        {kEncrypt, "missing", "hello", "", "encrypt, no such key"},
        {kEncrypt, "bad name!", "hello", "", "encrypt, bad name"},
        {kEncrypt, "", "hello", "", "encrypt, empty name"},
        {kEncrypt, "k", big, "", "encrypt, plaintext over the limit"},
        {kDecrypt, "k", ct2, "ctx", "decrypt"},
        {kDecrypt, "k", ct1, "ctx", "decrypt below min_decryption_version"},
        {kDecrypt, "k", ct2, "other", "decrypt, wrong context"},
        {kDecrypt, "k", tampered, "ctx", "decrypt, tampered"},
        {kDecrypt, "k", "strongbox:v2:!!!", "ctx", "decrypt, malformed"},
        {kDecrypt, "k", "strongbox:v9" + ct2.substr(12), "ctx",
         "decrypt, version above the latest"},
        {kDecrypt, "missing", ct2, "ctx", "decrypt, no such key"},
        {kDecrypt, "bad/name", ct2, "ctx", "decrypt, bad name"},
        {kRewrap, "k", ct2, "ctx", "rewrap"},
        {kRewrap, "k", tampered, "ctx", "rewrap, tampered"},
        {kRewrap, "k", ct1, "ctx", "rewrap below min_decryption_version"},
    };
    for (const Case& c : cases) {
      ExpectSameAnswer(store, c.op, c.name, c.input, c.context, caller,
                       absl::StrCat(who, ": ", c.what));
    }
  }

  testing_store::LoopbackForwarder forwarder_;
  // For the audited cases; outlives the stores (their audit workers write
  // to it until the stores are destroyed).
  RecordingSink sink_;
  std::unique_ptr<Cluster> cluster_;
  std::vector<std::unique_ptr<SecretStore>> stores_;
  int active_ = -1;
  int standby_ = -1;
};

TEST_F(DirectCallsTest, EveryCaseAnswersAsTheMessagePipeline) {
  ASSERT_TRUE(active()->TransitCreateKey("k", kRoot).ok());
  absl::StatusOr<std::string> ct1 =
      active()->TransitEncrypt("k", "hello", "ctx", kRoot);
  ASSERT_TRUE(ct1.ok()) << ct1.status();
  ASSERT_TRUE(active()->TransitRotateKey("k", kRoot).ok());
  absl::StatusOr<std::string> ct2 =
      active()->TransitEncrypt("k", "hello", "ctx", kRoot);
  ASSERT_TRUE(ct2.ok()) << ct2.status();
  store::Request config;
  config.mutable_transit_config_key()->set_name("k");
  config.mutable_transit_config_key()->set_min_decryption_version(2);
  ASSERT_TRUE(ResponseStatus(active()->Handle(config, kRoot)).ok());

  const CallContext alice = CallContext::As("alice", {"transit-k"});
  const CallContext bob = CallContext::As("bob", {"nothing"});
  // No policy yet: every caller passes.
  for (SecretStore* store : {active(), standby()}) {
    const std::string node = store == active() ? "active" : "perf standby";
    AllCases(store, CallContext(), *ct1, *ct2, node + ", no policy, anonymous");
    AllCases(store, alice, *ct1, *ct2, node + ", no policy, alice");
  }
  ASSERT_TRUE(active()
                  ->PolicyPut("transit-k",
                              R"({"path":{
                                  "transit/encrypt/k":{"capabilities":["update"]},
                                  "transit/decrypt/k":{"capabilities":["update"]}}})",
                              kRoot)
                  .ok());
  for (SecretStore* store : {active(), standby()}) {
    const std::string node = store == active() ? "active" : "perf standby";
    AllCases(store, CallContext(), *ct1, *ct2, node + ", anonymous");
    AllCases(store, kRoot, *ct1, *ct2, node + ", root");
    AllCases(store, alice, *ct1, *ct2, node + ", alice (encrypt, decrypt)");
    AllCases(store, bob, *ct1, *ct2, node + ", bob (no grant)");
  }
  // The verdicts themselves.
  EXPECT_TRUE(active()->TransitEncrypt("k", "x", "", alice).ok());
  EXPECT_EQ(active()->TransitRewrap("k", *ct2, "ctx", alice).status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(active()->TransitEncrypt("k", "x", "", bob).status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(active()->TransitEncrypt("k", "x").status().code(),
            absl::StatusCode::kPermissionDenied);
}

TEST_F(DirectCallsTest, SealedNodeAnswersAsTheMessagePipeline) {
  ASSERT_TRUE(active()->TransitCreateKey("k").ok());
  absl::StatusOr<std::string> ct = active()->TransitEncrypt("k", "hello");
  ASSERT_TRUE(ct.ok());
  ASSERT_TRUE(cluster_->nodes[standby_]->Seal().ok());
  ExpectSameAnswer(standby(), kDecrypt, "k", *ct, "", kRoot, "sealed decrypt");
  ExpectSameAnswer(standby(), kEncrypt, "k", "x", "", kRoot, "sealed encrypt");
  EXPECT_EQ(standby()->TransitDecrypt("k", *ct).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

// The reservation write of an encryption meets a grant the backend has
// already ended: the same refusal (UNAVAILABLE, nothing sealed, the route)
// either way. Each way runs on a fresh, identical cluster.
TEST_F(DirectCallsTest, LeadershipLostMidEncryptAnswersAsTheMessagePipeline) {
  std::vector<Outcome> outcomes;
  for (bool api : {true, false}) {
    SetUpCluster(/*reservation=*/1);
    ASSERT_TRUE(active()->TransitCreateKey("k").ok());
    ASSERT_TRUE(active()->TransitEncrypt("k", "first").ok());
    ASSERT_TRUE(cluster_->links[active_]->ExpireCurrentGrant().ok());
    outcomes.push_back(OutcomeOf(
        api ? ViaApi(active(), kEncrypt, "k", "second", "", CallContext())
            : ViaMessages(active(), kEncrypt, "k", "second", "",
                          CallContext())));
    EXPECT_NE(cluster_->nodes[active_]->state(), HaState::kActive)
        << "the deposed active steps down at once";
  }
  EXPECT_EQ(outcomes[0].code, absl::StatusCode::kUnavailable);
  EXPECT_THAT(outcomes[0].message, HasSubstr("nothing was applied"));
  EXPECT_EQ(outcomes[0].route, "unavailable");
  EXPECT_EQ(outcomes[0].value, "");
  ExpectSameStatus(outcomes[0], outcomes[1]);
}

// ------------------------------------------------------------------ KvGet

absl::StatusOr<store::KvSecret> KvGetViaMessages(SecretStore* store,
                                                 absl::string_view path,
                                                 uint64_t version,
                                                 const CallContext& caller) {
  store::Request request;
  request.mutable_kv_get()->set_path(std::string(path));
  request.mutable_kv_get()->set_version(version);
  store::Response response = store->Handle(request, caller);
  if (absl::Status s = ResponseStatus(response); !s.ok()) return s;
  return response.kv_secret();
}

void ExpectSameKvGet(SecretStore* store, absl::string_view path,
                     uint64_t version, const CallContext& caller,
                     const std::string& what) {
  SCOPED_TRACE(what);
  Outcome api = OutcomeOf(store->KvGet(path, version, 0, caller));
  Outcome messages = OutcomeOf(KvGetViaMessages(store, path, version, caller));
  ExpectSameStatus(api, messages);
  EXPECT_EQ(api.value, messages.value);
}

TEST_F(DirectCallsTest, KvGetAnswersAsTheMessagePipeline) {
  // app/s: versions 1 (deleted), 2 (destroyed), 3, 4 (current).
  for (int v = 1; v <= 4; ++v) {
    ASSERT_TRUE(
        active()
            ->KvPut("app/s", {{"v", absl::StrCat("value ", v)}}, {}, kRoot)
            .ok());
  }
  ASSERT_TRUE(active()->KvDelete("app/s", {1}, kRoot).ok());
  ASSERT_TRUE(active()->KvDestroy("app/s", {2}, kRoot).ok());
  ASSERT_TRUE(active()->KvPut("other/t", {{"k", "v"}}, {}, kRoot).ok());
  const std::string long_path(600, 'p');
  struct Case {
    std::string path;
    uint64_t version;
    std::string what;
  };
  const std::vector<Case> cases = {
      {"app/s", 0, "current version"},
      {"app/s", 4, "current version by number"},
      {"app/s", 3, "older version"},
      {"app/s", 2, "destroyed version"},
      {"app/s", 1, "deleted version"},
      {"app/s", 9, "version never written"},
      {"app/none", 0, "no secret"},
      {"other/t", 0, "another folder"},
      {"app//s", 0, "empty segment"},
      {"app/../s", 0, "dot-dot segment"},
      {"app/\xff", 0, "not UTF-8"},
      {long_path, 0, "path over the limit"},
      {"", 0, "empty path"},
      {"metadata/x", 0, "reserved folder"},
      {"sys/x", 0, "reserved folder sys"},
  };
  const CallContext alice = CallContext::As("alice", {"app-read"});
  auto all = [&](const std::string& who) {
    for (SecretStore* store : {active(), standby()}) {
      const std::string node = store == active() ? "active" : "perf standby";
      for (const CallContext* caller :
           {static_cast<const CallContext*>(nullptr), &kRoot, &alice}) {
        const CallContext anonymous;
        const CallContext& c = caller == nullptr ? anonymous : *caller;
        for (const Case& k : cases) {
          ExpectSameKvGet(store, k.path, k.version, c,
                          absl::StrCat(who, ", ", node, ", caller \"", c.caller,
                                       "\": ", k.what));
        }
      }
    }
  };
  all("no policy");
  ASSERT_TRUE(active()
                  ->PolicyPut("app-read",
                              R"({"path":{"app/*":{"capabilities":["read"]}}})",
                              kRoot)
                  .ok());
  all("with a policy");
  EXPECT_EQ(active()->KvGet("app/s", 0, 0, alice)->data().at("v"), "value 4");
  EXPECT_EQ(active()->KvGet("other/t", 0, 0, alice).status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(active()->KvGet("app/s").status().code(),
            absl::StatusCode::kPermissionDenied);
}

TEST_F(DirectCallsTest, KvGetFailuresAnswerAsTheMessagePipeline) {
  ASSERT_TRUE(active()->KvPut("s", {{"v", "1"}}).ok());
  ASSERT_TRUE(active()->KvPut("s", {{"v", "2"}}).ok());
  // The backend fails the read (once for each way).
  for (int i = 0; i < 2; ++i) {
    cluster_->links[active_]->FailNext(
        1, absl::UnavailableError("disk unplugged (injected)"),
        FaultInjectingBackend::kGet);
    const bool api = i == 0;
    Outcome o =
        OutcomeOf(api ? active()->KvGet("s")
                      : KvGetViaMessages(active(), "s", 0, CallContext()));
    EXPECT_EQ(o.code, absl::StatusCode::kUnavailable) << api;
    EXPECT_THAT(o.message, HasSubstr("disk unplugged")) << api;
  }
  // Version 1's data record is gone, then the metadata does not open.
  ASSERT_TRUE(cluster_->shared->Delete("kv/data/s/1").ok());
  ExpectSameKvGet(active(), "s", 1, CallContext(), "data missing");
  EXPECT_EQ(active()->KvGet("s", 1).status().code(),
            absl::StatusCode::kDataLoss);
  ASSERT_TRUE(cluster_->shared->Put("kv/meta/s", "not a sealed record").ok());
  ExpectSameKvGet(active(), "s", 0, CallContext(), "record does not open");
  EXPECT_FALSE(active()->KvGet("s").ok());
  // A plain standby redirects; a sealed node refuses.
  ExpectSameKvGet(stores_[(active_ + 2) % 3].get(), "s", 0, CallContext(),
                  "other perf standby");
  ASSERT_TRUE(cluster_->nodes[standby_]->Seal().ok());
  ExpectSameKvGet(standby(), "s", 0, CallContext(), "sealed");
  EXPECT_EQ(standby()->KvGet("s").status().code(),
            absl::StatusCode::kFailedPrecondition);
}

// A KV read opens its record in a buffer its thread keeps for the next
// read (kv_engine.cc, ReadBuffer). No byte of a secret may stay there
// after the read, however it ends: the current version, an older one
// (whose metadata record holds the current version's data in the kept
// buffer; its own data record is opened in a buffer of the read's own,
// which wipes itself), a record that opens but does not parse, on the
// active and on a perf standby. A buffer grown past its bound is not kept.
TEST_F(DirectCallsTest, KvReadsLeaveNoPlaintextInTheirThreadsBuffer) {
  const std::string first(300, 'Z');
  const std::string second(200, 'Y');
  ASSERT_TRUE(active()->KvPut("s", {{"v", first}}).ok());
  ASSERT_TRUE(active()->KvPut("s", {{"v", second}}).ok());
  auto kept_plaintext = [] {
    const std::string kept = store_testing::ThreadKvReadBufferForTesting();
    return kept.find("ZZZZZZZZ") != std::string::npos ||
           kept.find("YYYYYYYY") != std::string::npos ||
           kept.find("XXXXXXXX") != std::string::npos;
  };
  ASSERT_EQ(active()->KvGet("s")->data().at("v"), second);
  // The read used the buffer (it holds the record's header and tag) and
  // wiped what it opened there.
  EXPECT_GT(store_testing::ThreadKvReadBufferForTesting().size(),
            second.size());
  EXPECT_FALSE(kept_plaintext());
  ASSERT_EQ(active()->KvGet("s", 1)->data().at("v"), first);
  EXPECT_FALSE(kept_plaintext());
  ASSERT_EQ(standby()->KvGet("s")->data().at("v"), second);
  EXPECT_FALSE(kept_plaintext());
  // Opens (sealed by this cluster's barrier) but is no metadata record.
  ASSERT_TRUE(cluster_->nodes[active_]
                  ->barrier()
                  ->Put("kv/meta/bad", std::string(64, 'X') + "\xff\xff",
                        *cluster_->nodes[active_]->WriteFence())
                  .ok());
  EXPECT_EQ(active()->KvGet("bad").status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_FALSE(kept_plaintext());
  // A large secret: its buffer is freed, not kept.
  const std::string large(100 * 1024, 'Z');
  ASSERT_TRUE(active()->KvPut("large", {{"v", large}}).ok());
  ASSERT_EQ(active()->KvGet("large")->data().at("v").size(), large.size());
  EXPECT_TRUE(store_testing::ThreadKvReadBufferForTesting().empty());
}

// A host's thread_local whose destructor reads a secret, made before the
// thread's first KV read: it is destroyed after the thread's kept read
// buffer is freed, and its read must still work (a buffer of its own).
// Under ASan, a read into the freed buffer fails this test.
struct ReadsAtThreadExit {
  SecretStore* store = nullptr;
  std::string* out = nullptr;
  ~ReadsAtThreadExit() {
    if (store == nullptr) return;
    absl::StatusOr<store::KvSecret> got = store->KvGet("s");
    *out = got.ok() ? got->data().at("v") : got.status().ToString();
  }
};
thread_local ReadsAtThreadExit reads_at_thread_exit;

TEST_F(DirectCallsTest, KvReadsFromAThreadExitDestructorWork) {
  ASSERT_TRUE(active()->KvPut("s", {{"v", "at exit"}}).ok());
  std::string read_at_exit;
  std::string read_before;
  std::thread t([&] {
    reads_at_thread_exit.store = active();  // made first
    reads_at_thread_exit.out = &read_at_exit;
    read_before = active()->KvGet("s")->data().at("v");  // the buffer
  });
  t.join();
  EXPECT_EQ(read_before, "at exit");
  EXPECT_EQ(read_at_exit, "at exit");
}

// HA2 on the direct path: the verified fence is taken before the verdict;
// when the verdict has to read storage (a policy write dropped the policy
// cache) and the lease lapses meanwhile, the read is refused as Route()
// refuses a lapsed active, not served on the fence taken before.
TEST_F(DirectCallsTest, LeaseLapsingWhileTheVerdictReadsStorageRefusesTheRead) {
  ASSERT_TRUE(active()->KvPut("app/s", {{"v", "1"}}, {}, kRoot).ok());
  ASSERT_TRUE(active()
                  ->PolicyPut("app-read",
                              R"({"path":{"app/*":{"capabilities":["read"]}}})",
                              kRoot)
                  .ok());
  const CallContext alice = CallContext::As("alice", {"app-read"});
  // The policy cache's first read after the write waits on the clock.
  cluster_->links[active_]->SetLatency(absl::Seconds(1),
                                       FaultInjectingBackend::kGet);
  absl::StatusOr<store::KvSecret> got;
  std::thread reader([&] { got = active()->KvGet("app/s", 0, 0, alice); });
  while (cluster_->clock.sleepers() == 0) absl::SleepFor(absl::Milliseconds(1));
  cluster_->links[active_]->SetLatency(absl::ZeroDuration());
  cluster_->clock.Advance(absl::Seconds(6));  // past the 5 s lease
  reader.join();
  EXPECT_EQ(got.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(got.status().message(), HasSubstr("lapsed"));
  // Renewed, the same read is served.
  cluster_->Run(absl::Seconds(1));
  const int active = cluster_->Active();
  ASSERT_GE(active, 0);
  EXPECT_EQ(stores_[active]->KvGet("app/s", 0, 0, alice)->data().at("v"), "1");
}

TEST_F(DirectCallsTest, KvGetOnAPlainStandbyRedirectsAsTheMessagePipeline) {
  SetUpCluster(/*reservation=*/2, /*sink=*/nullptr, StandbyMode::kStandby);
  ASSERT_TRUE(active()->KvPut("s", {{"v", "1"}}).ok());
  ExpectSameKvGet(standby(), "s", 0, CallContext(), "plain standby");
  absl::Status s = standby()->KvGet("s").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  ASSERT_TRUE(GetRouteHint(s).has_value());
  EXPECT_EQ(GetRouteHint(s)->action, RouteDecision::Action::kRedirectToActive);
}

// ------------------------------------------------------------------ KvPut

Outcome Put(SecretStore* store, bool api, absl::string_view path,
            const std::map<std::string, std::string>& data,
            std::optional<uint64_t> cas, const CallContext& caller) {
  absl::StatusOr<KvWriteResult> result;
  if (api) {
    result = store->KvPut(path, data, cas, caller);
  } else {
    store::Request request;
    store::KvPutRequest* put = request.mutable_kv_put();
    put->set_path(std::string(path));
    for (const auto& [k, v] : data) (*put->mutable_data())[k] = v;
    if (cas.has_value()) put->set_cas(*cas);
    store::Response response = store->Handle(request, caller);
    if (absl::Status s = ResponseStatus(response); !s.ok()) {
      result = s;
    } else {
      result = KvWriteResult{response.kv_write().version(), response.index()};
    }
  }
  Outcome o = OutcomeOf(result.status());
  if (result.ok()) {
    o.version = result->version;
    o.index = result->index;
  }
  return o;
}

// The same puts, each way on a fresh, identical cluster: the same answers
// (down to the index), and the same secrets stored.
TEST_F(DirectCallsTest, KvPutAnswersAndStoresAsTheMessagePipeline) {
  std::vector<std::vector<Outcome>> answers(2);
  std::vector<std::string> stored(2);
  std::map<std::string, size_t> at;  // a case's label: its answer's index
  for (int way = 0; way < 2; ++way) {
    const bool api = way == 0;
    SetUpCluster(/*reservation=*/2);
    std::vector<Outcome>& got = answers[way];
    const CallContext anonymous;
    const CallContext alice = CallContext::As("alice", {"app-write"});
    auto put = [&](const std::string& label, absl::string_view path,
                   const std::map<std::string, std::string>& data,
                   std::optional<uint64_t> cas = std::nullopt,
                   const CallContext& caller = CallContext(),
                   SecretStore* store = nullptr) {
      at[label] = got.size();
      got.push_back(Put(store != nullptr ? store : active(), api, path, data,
                        cas, caller));
    };
    put("first", "p", {{"v", "1"}});
    put("cas", "p", {{"v", "2"}, {"w", "x"}}, 1);
    put("cas mismatch", "p", {{"v", "3"}}, 1);
    put("create-only, exists", "p", {{"v", "3"}}, 0);
    put("create-only", "q", {{"v", "1"}}, 0);
    put("no fields", "p", {});
    ASSERT_TRUE(active()->KvSetMetadata("p", 2, true).ok());
    put("cas required", "p", {{"v", "4"}});
    put("prunes", "p", {{"v", "4"}}, 3);  // keeps 2 versions: 3 and 4
    put("prunes again", "p", {{"v", "5"}}, 4);
    put("empty segment", "p//x", {{"v", "1"}});
    put("dot-dot", "p/../x", {{"v", "1"}});
    put("empty path", "", {{"v", "1"}});
    put("long path", std::string(600, 'p'), {{"v", "1"}});
    put("reserved", "metadata/x", {{"v", "1"}});
    put("path not UTF-8", "p\xff", {{"v", "1"}});
    put("name not UTF-8", "r", {{"bad \xff name", "1"}});
    std::map<std::string, std::string> many;
    for (int i = 0; i < 257; ++i) many[absl::StrCat("f", i)] = "v";
    put("too many fields", "r", many);
    put("too big", "r", {{"big", std::string((512 << 10) + 1, 'b')}});
    // Policies: alice may update app/*; no caller is refused once any
    // policy exists; root passes.
    ASSERT_TRUE(
        active()
            ->PolicyPut("app-write",
                        R"({"path":{"app/*":{"capabilities":["update"]}}})",
                        kRoot)
            .ok());
    put("granted", "app/a", {{"v", "1"}}, std::nullopt, alice);
    put("granted, cas", "app/a", {{"v", "2"}}, 1, alice);
    put("create not granted", "app/b", {{"v", "1"}}, 0, alice);
    put("not granted", "other/a", {{"v", "1"}}, std::nullopt, alice);
    put("no caller", "app/a", {{"v", "3"}}, std::nullopt, anonymous);
    put("root", "app/a", {{"v", "3"}}, std::nullopt, kRoot);
    put("forwarded", "app/s", {{"v", "1"}}, std::nullopt, alice, standby());
    // Leadership lost before a put reaches the backend.
    ASSERT_TRUE(cluster_->links[active_]->ExpireCurrentGrant().ok());
    put("deposed", "app/a", {{"v", "4"}}, std::nullopt, kRoot);
    // What is stored, read through the message pipeline after a new active
    // took over.
    cluster_->Run(absl::Seconds(1));
    SecretStore* reader = stores_[cluster_->Active()].get();
    std::string& out = stored[way];
    for (const char* path : {"p", "q", "r", "app/a", "app/b", "app/s"}) {
      absl::StatusOr<store::KvMetadata> meta = reader->KvMetadata(path, kRoot);
      out += absl::StrCat(path, ": ", meta.status().ToString(), " ",
                          meta.ok() ? meta->ShortDebugString() : "", "\n");
      for (uint64_t v = 1; v <= 6; ++v) {
        absl::StatusOr<store::KvSecret> secret =
            KvGetViaMessages(reader, path, v, kRoot);
        out +=
            absl::StrCat("  v", v, ": ", secret.status().ToString(), " ",
                         secret.ok() ? secret->ShortDebugString() : "", "\n");
      }
    }
  }
  ASSERT_EQ(answers[0].size(), answers[1].size());
  for (const auto& [label, i] : at) {
    EXPECT_EQ(answers[0][i], answers[1][i]) << label;
  }
  EXPECT_EQ(stored[0], stored[1]);
  // The cases did what they say.
  const std::vector<Outcome>& a = answers[0];
  auto code = [&](const std::string& label) { return a[at.at(label)].code; };
  for (const char* ok :
       {"first", "cas", "create-only", "no fields", "prunes", "prunes again",
        "granted", "granted, cas", "root", "forwarded"}) {
    EXPECT_EQ(code(ok), absl::StatusCode::kOk) << ok;
  }
  EXPECT_EQ(a[at.at("prunes again")].version, 5u);
  EXPECT_EQ(code("cas mismatch"), absl::StatusCode::kAborted);
  EXPECT_EQ(code("create-only, exists"), absl::StatusCode::kAborted);
  for (const char* bad :
       {"cas required", "empty segment", "dot-dot", "empty path", "long path",
        "reserved", "path not UTF-8", "name not UTF-8", "too many fields",
        "too big"}) {
    EXPECT_EQ(code(bad), absl::StatusCode::kInvalidArgument) << bad;
  }
  for (const char* denied :
       {"create not granted", "not granted", "no caller"}) {
    EXPECT_EQ(code(denied), absl::StatusCode::kPermissionDenied) << denied;
  }
  EXPECT_EQ(code("deposed"), absl::StatusCode::kUnavailable);
  EXPECT_EQ(a[at.at("deposed")].route, "unavailable");
  EXPECT_THAT(a[at.at("deposed")].message, HasSubstr("nothing was applied"));
  EXPECT_THAT(stored[0], HasSubstr("current_version: 5 oldest_version: 4"));
}

// ------------------------------------------------------- more failures

std::string Line(const absl::Status& s) {
  std::string line = s.ToString();
  if (std::optional<RouteHint> hint = GetRouteHint(s)) {
    line += absl::StrCat(" route ", RouteActionName(hint->action), " ",
                         hint->leader_address);
  }
  return line;
}

// A call's answer as one line: the status and route, and what the call
// returned (a ciphertext is opened by root on the active to compare).
std::string Line(const absl::StatusOr<std::string>& r) {
  return r.ok() ? absl::StrCat("OK ", r->size(), " bytes") : Line(r.status());
}

// The grant is lost behind the active's back and the next call's policy
// check (an anonymous caller, verify_interval past) is what finds it out:
// the node steps down before it routes, so each call is routed as a
// standby's, both ways.
TEST_F(DirectCallsTest,
       GrantLostFoundByThePolicyCheckRoutesAsTheMessagePipeline) {
  for (int op = 0; op < 4; ++op) {
    SCOPED_TRACE(op);
    std::string ct;
    ExpectSameBothWays(
        [&] {
          SetUpCluster(/*reservation=*/1000);
          ASSERT_TRUE(active()->TransitCreateKey("k").ok());
          ASSERT_TRUE(active()->KvPut("s", {{"v", "1"}}).ok());
          ct = *active()->TransitEncrypt("k", "x");
          ASSERT_TRUE(cluster_->links[active_]->ExpireCurrentGrant().ok());
          cluster_->clock.Advance(absl::Milliseconds(50));
        },
        [&](bool api, std::vector<std::string>* record) {
          const CallContext anonymous;
          switch (op) {
            case 0: {
              std::ostringstream line;
              line << Put(active(), api, "s", {{"v", "2"}}, std::nullopt,
                          anonymous);
              record->push_back(line.str());
              break;
            }
            case 1:
              record->push_back(
                  Line(api ? active()->KvGet("s").status()
                           : KvGetViaMessages(active(), "s", 0, anonymous)
                                 .status()));
              break;
            case 2:
              record->push_back(
                  Line(api ? ViaApi(active(), kEncrypt, "k", "y", "", anonymous)
                           : ViaMessages(active(), kEncrypt, "k", "y", "",
                                         anonymous)));
              break;
            default:
              record->push_back(
                  Line(api ? ViaApi(active(), kDecrypt, "k", ct, "", anonymous)
                           : ViaMessages(active(), kDecrypt, "k", ct, "",
                                         anonymous)));
              break;
          }
          record->push_back(
              std::string(HaStateName(cluster_->nodes[active_]->state())));
        });
  }
}

// Encryption counting's refusals: a reservation write that fails, and a
// key used up with rotation off.
TEST_F(DirectCallsTest, ReservationFailuresAnswerAsTheMessagePipeline) {
  std::string ct;
  ExpectSameBothWays(
      [&] {
        SetUpCluster(/*reservation=*/1, nullptr, StandbyMode::kPerfStandby,
                     [](SecretStore::Options* so) {
                       so->transit_max_encryptions_per_version = 3;
                       so->transit_rotate_at_limit = false;
                     });
        ASSERT_TRUE(active()->TransitCreateKey("k").ok());
        ct = *active()->TransitEncrypt("k", "x");  // 1 of 3
      },
      [&](bool api, std::vector<std::string>* record) {
        const CallContext root = kRoot;
        auto call = [&](Op op, const std::string& input) {
          record->push_back(
              Line(api ? ViaApi(active(), op, "k", input, "", root)
                       : ViaMessages(active(), op, "k", input, "", root)));
        };
        cluster_->links[active_]->FailNext(
            1, absl::UnavailableError("disk full (injected)"),
            FaultInjectingBackend::kCommit);
        call(kRewrap, ct);  // its reservation write fails
        cluster_->links[active_]->FailNext(
            1, absl::UnavailableError("disk full (injected)"),
            FaultInjectingBackend::kCommit);
        call(kEncrypt, "y");
        call(kEncrypt, "y");  // 2 of 3
        call(kRewrap, ct);    // 3 of 3
        call(kEncrypt, "y");  // used up, no rotation
        call(kRewrap, ct);
        call(kDecrypt, ct);  // decrypting goes on
      });
}

// A store that enforces no policy (and has no sink) skips the gate on both
// paths.
TEST_F(DirectCallsTest, UnenforcedStoreAnswersAsTheMessagePipeline) {
  SetUpCluster(/*reservation=*/2, nullptr, StandbyMode::kPerfStandby,
               [](SecretStore::Options* so) { so->enforce_policies = false; });
  ASSERT_TRUE(active()->TransitCreateKey("k").ok());
  const std::string ct1 = *active()->TransitEncrypt("k", "hello", "ctx");
  ASSERT_TRUE(active()->TransitRotateKey("k").ok());
  const std::string ct2 = *active()->TransitEncrypt("k", "hello", "ctx");
  ASSERT_TRUE(
      active()->PolicyPut("none", R"({"path":{}})", kRoot).ok());  // ignored
  const CallContext bob = CallContext::As("bob", {"none"});
  for (SecretStore* store : {active(), standby()}) {
    AllCases(store, CallContext(), ct1, ct2, "unenforced, anonymous");
    AllCases(store, bob, ct1, ct2, "unenforced, bob");
    for (const char* path : {"metadata/x", "s", "a//b"}) {
      ExpectSameKvGet(store, path, 0, bob, path);
    }
  }
  EXPECT_TRUE(active()->KvPut("metadata/x", {{"v", "1"}}, {}, bob).ok())
      << "nothing is reserved without policies";
}

// Which calls the direct path serves, and which it leaves to the message
// pipeline (forwarding, min_index, sealed, audited).
TEST_F(DirectCallsTest, DirectPathServesLocalUnauditedCalls) {
  ASSERT_TRUE(active()->TransitCreateKey("k").ok());
  ASSERT_TRUE(active()->KvPut("s", {{"v", "1"}}).ok());
  const std::string ct = *active()->TransitEncrypt("k", "x");
  auto served = [&](const std::function<void()>& call) {
    const uint64_t before = store_testing::DirectCallsServed();
    call();
    return store_testing::DirectCallsServed() - before;
  };
  EXPECT_EQ(served([&] { ASSERT_TRUE(active()->KvGet("s").ok()); }), 1u);
  EXPECT_EQ(served([&] {
              ASSERT_TRUE(active()->KvPut("s", {{"v", "2"}}).ok());
            }),
            1u);
  EXPECT_EQ(
      served([&] { ASSERT_TRUE(active()->TransitEncrypt("k", "y").ok()); }),
      1u);
  EXPECT_EQ(served([&] { ASSERT_TRUE(active()->TransitRewrap("k", ct).ok()); }),
            1u);
  EXPECT_EQ(served([&] { ASSERT_TRUE(standby()->KvGet("s").ok()); }), 1u);
  EXPECT_EQ(
      served([&] { ASSERT_TRUE(standby()->TransitDecrypt("k", ct).ok()); }),
      1u);
  // Forwarded: the standby does not serve it, the active gets bytes.
  EXPECT_EQ(served([&] {
              ASSERT_TRUE(standby()->KvPut("s", {{"v", "3"}}).ok());
            }),
            0u);
  EXPECT_EQ(
      served([&] { ASSERT_TRUE(standby()->TransitEncrypt("k", "z").ok()); }),
      0u);
  EXPECT_EQ(served([&] { ASSERT_TRUE(active()->KvGet("s", 0, 1).ok()); }), 0u)
      << "a read with min_index takes the message pipeline";
  ASSERT_TRUE(cluster_->nodes[standby_]->Seal().ok());
  EXPECT_EQ(served([&] { (void)standby()->KvGet("s"); }), 0u);
  SetUpCluster(/*reservation=*/2, &sink_);
  ASSERT_TRUE(active()->KvPut("s", {{"v", "1"}}).ok());
  EXPECT_EQ(served([&] { ASSERT_TRUE(active()->KvGet("s").ok()); }), 0u)
      << "an audited call takes the message pipeline";
}

TEST_F(DirectCallsTest, AuditedStoresRecordEveryCall) {
  SetUpCluster(/*reservation=*/2, &sink_);
  ASSERT_TRUE(active()->TransitCreateKey("k").ok());
  absl::StatusOr<std::string> ct = active()->TransitEncrypt("k", "hello");
  ASSERT_TRUE(ct.ok()) << ct.status();
  ASSERT_TRUE(active()->TransitDecrypt("k", *ct).ok());
  ASSERT_TRUE(active()->TransitRewrap("k", *ct).ok());
  ASSERT_TRUE(standby()->TransitDecrypt("k", *ct).ok());
  ASSERT_TRUE(active()->KvPut("s", {{"v", "1"}}).ok());
  ASSERT_TRUE(active()->KvGet("s").ok());
  ASSERT_TRUE(standby()->KvGet("s").ok());
  for (auto& store : stores_) ASSERT_TRUE(store->FlushAudit(absl::Seconds(5)));
  std::vector<std::string> seen = sink_.operations();
  for (const char* op : {"transit_encrypt", "transit_decrypt", "transit_rewrap",
                         "kv_get", "kv_put"}) {
    for (const char* kind : {"request ", "response "}) {
      const std::string entry = absl::StrCat(kind, op);
      EXPECT_GE(
          std::count(seen.begin(), seen.end(), entry),
          std::string(op) == "transit_decrypt" || std::string(op) == "kv_get"
              ? 2
              : 1)
          << entry;
    }
  }
}

}  // namespace
}  // namespace strongbox
