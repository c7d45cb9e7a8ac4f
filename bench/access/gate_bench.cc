// The issue-15 measurement: KvGet (1 KiB secret, one active node on an
// in-memory backend) plain, beside the same KvGet wrapped as the wired
// pipeline will wrap it — RequestGate::Admit (a policy of 100 rules, the
// request entry to a file sink without fsync), SecretStore::Handle,
// RequestGate::Complete (the response entry) — and with the policy alone.
// Goal (issue 15): gated <= 1.5x plain.
//
// "CPU" is the whole process's CPU time per iteration (every thread: the
// sink's thread writes response entries), the fairer measure on a shared
// machine where wall time depends on the neighbours' load.
//
// BM_Store_*: the wired pipeline itself — stores on the same node whose
// options enable it (the policy stored behind the barrier, served from
// StoredPolicies' cache; sinks given in SecretStore::Options), called
// through SecretStore::KvGet with the caller's CallContext.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "benchmark/benchmark.h"
#include "lib/access/request_gate.h"
#include "lib/audit/audit_dispatcher.h"
#include "lib/policy/policy.h"
#include "strongbox/audit_sink.h"
#include "strongbox/ha_coordinator.h"
#include "strongbox/in_memory_backend.h"
#include "strongbox/secret_store.h"

namespace strongbox {
namespace {

std::string HundredRules() {
  std::vector<std::string> rules;
  auto add = [&](const std::string& pattern, const char* caps) {
    rules.push_back(
        absl::StrCat("\"", pattern, "\":{\"capabilities\":[", caps, "]}"));
  };
  for (int i = 0; i < 40; ++i)
    add(absl::StrCat("apps/app", i, "/config"), "\"read\"");
  for (int i = 0; i < 39; ++i)
    add(absl::StrCat("team", i, "/*"), "\"read\",\"list\"");
  for (int i = 0; i < 20; ++i)
    add(absl::StrCat("svc/+/env", i, "/creds"), "\"read\"");
  add("bench/*", "\"read\"");
  return absl::StrCat("{\"path\":{", absl::StrJoin(rules, ","), "}}");
}

// Accepts everything at once: what the hand-off to a sink's thread costs.
class NullSink : public AuditSink {
 public:
  absl::Status Write(const AuditEntry&) override { return absl::OkStatus(); }
};

// The same, declared non-blocking: written on the caller's thread.
class NullDirectSink : public NullSink {
 public:
  bool blocking() const override { return false; }
};

class Fixture {
 public:
  static Fixture& Get() {
    static Fixture* f = new Fixture();
    return *f;
  }
  SecretStore* store() { return store_.get(); }
  access::InMemoryPolicySource* policies() { return &policies_; }
  audit::AuditDispatcher* audit() { return audit_.get(); }
  audit::AuditDispatcher* null_audit() { return null_audit_.get(); }
  SecretStore* wired_policy() { return wired_policy_.get(); }
  SecretStore* wired_file() { return wired_file_.get(); }
  SecretStore* wired_null() { return wired_null_.get(); }
  SecretStore* wired_file_threaded() { return wired_file_threaded_.get(); }
  SecretStore* wired_null_direct() { return wired_null_direct_.get(); }

 private:
  Fixture() {
    backend_ = NewInMemoryBackend();
    HaCoordinator::Options o;
    o.backend = backend_.get();
    o.node_id = "b0";
    o.advertise_address = "b0:1";
    o.lease_ttl = absl::Hours(10);
    o.renew_interval = absl::Hours(1);
    o.background_thread = false;
    node_ = *HaCoordinator::Create(o);
    std::vector<std::string> shares = *node_->Initialize(1, 1);
    (void)node_->Unseal(shares[0]);
    node_->Poll();
    SecretStore::Options so;
    so.coordinator = node_.get();
    so.enforce_policies = false;  // the plain store: no gate at all
    store_ = *SecretStore::Create(so);
    (void)store_->KvPut("bench/secret", {{"value", std::string(1024, 's')}});
    policies_.Put(*policy::ParsePolicy("bench", HundredRules()));
    audit_ = std::make_unique<audit::AuditDispatcher>(
        audit::AuditDispatcher::Options{});
    FileAuditSinkOptions fo;
    fo.path = "/tmp/strongbox-gate-bench-audit.log";
    std::remove(fo.path.c_str());
    audit::AuditDispatcher::SinkOptions sink;
    sink.name = "file";
    sink.sink = *NewFileAuditSink(fo);
    (void)audit_->AddSink(std::move(sink));
    null_audit_ = std::make_unique<audit::AuditDispatcher>(
        audit::AuditDispatcher::Options{});
    audit::AuditDispatcher::SinkOptions null_sink;
    null_sink.name = "null";
    null_sink.sink = std::make_unique<NullSink>();
    (void)null_audit_->AddSink(std::move(null_sink));

    // The wired stores.
    SecretStore::Options wo;
    wo.coordinator = node_.get();
    wired_policy_ = *SecretStore::Create(wo);
    (void)wired_policy_->PolicyPut("bench", HundredRules(),
                                   CallContext::Root());
    FileAuditSinkOptions wfo;
    wfo.path = "/tmp/strongbox-store-bench-audit.log";
    std::remove(wfo.path.c_str());
    wired_file_sink_ = *NewFileAuditSink(wfo);
    wo.audit_sinks.push_back({"file", wired_file_sink_.get()});
    wired_file_ = *SecretStore::Create(wo);
    wo.audit_sinks.clear();
    wfo.path = "/tmp/strongbox-store-bench-audit-threaded.log";
    wfo.caller_thread_writes = false;
    std::remove(wfo.path.c_str());
    wired_file_threaded_sink_ = *NewFileAuditSink(wfo);
    wo.audit_sinks.push_back({"file", wired_file_threaded_sink_.get()});
    wired_file_threaded_ = *SecretStore::Create(wo);
    wo.audit_sinks.clear();
    wired_null_sink_ = std::make_unique<NullSink>();
    wo.audit_sinks.push_back({"null", wired_null_sink_.get()});
    wired_null_ = *SecretStore::Create(wo);
    wo.audit_sinks.clear();
    wired_null_direct_sink_ = std::make_unique<NullDirectSink>();
    wo.audit_sinks.push_back({"null", wired_null_direct_sink_.get()});
    wired_null_direct_ = *SecretStore::Create(wo);
  }

  std::unique_ptr<Backend> backend_;
  std::unique_ptr<HaCoordinator> node_;
  std::unique_ptr<SecretStore> store_;
  access::InMemoryPolicySource policies_;
  std::unique_ptr<audit::AuditDispatcher> audit_;
  std::unique_ptr<audit::AuditDispatcher> null_audit_;
  std::unique_ptr<AuditSink> wired_file_sink_;
  std::unique_ptr<AuditSink> wired_null_sink_;
  std::unique_ptr<SecretStore> wired_policy_;
  std::unique_ptr<SecretStore> wired_file_;
  std::unique_ptr<SecretStore> wired_null_;
  std::unique_ptr<AuditSink> wired_file_threaded_sink_;
  std::unique_ptr<SecretStore> wired_file_threaded_;
  std::unique_ptr<AuditSink> wired_null_direct_sink_;
  std::unique_ptr<SecretStore> wired_null_direct_;
};

void BM_KvGet_Plain(benchmark::State& state) {
  SecretStore* store = Fixture::Get().store();
  for (auto _ : state) {
    store::Request r;
    r.mutable_kv_get()->set_path("bench/secret");
    store::Response resp = store->Handle(r);
    benchmark::DoNotOptimize(resp);
  }
}
BENCHMARK(BM_KvGet_Plain)->MeasureProcessCPUTime()->UseRealTime();

void Gated(benchmark::State& state, audit::AuditDispatcher* audit) {
  Fixture& f = Fixture::Get();
  access::RequestGate::Options go;
  go.policies = f.policies();
  go.audit = audit;
  access::RequestGate gate(go);
  const CallContext caller = CallContext::As("bench-user", {"bench"});
  for (auto _ : state) {
    store::Request r;
    r.mutable_kv_get()->set_path("bench/secret");
    access::RequestGate::Admission adm;
    if (!gate.Admit(&caller, r, kNoFence, &adm).ok()) {
      state.SkipWithError("refused");
      break;
    }
    store::Response resp = f.store()->Handle(r);
    gate.Complete(&caller, r, adm, resp);
    benchmark::DoNotOptimize(resp);
  }
}

void BM_KvGet_Policy100(benchmark::State& state) { Gated(state, nullptr); }
BENCHMARK(BM_KvGet_Policy100)->MeasureProcessCPUTime()->UseRealTime();

void BM_KvGet_Policy100_FileSink(benchmark::State& state) {
  Gated(state, Fixture::Get().audit());
}
BENCHMARK(BM_KvGet_Policy100_FileSink)->MeasureProcessCPUTime()->UseRealTime();

// The same with a sink that does no I/O: the cost of the hand-off to the
// sink's thread and back (the price of never running a sink on the
// caller's thread, so that a hung sink cannot freeze it).
void BM_KvGet_Policy100_NullSink(benchmark::State& state) {
  Gated(state, Fixture::Get().null_audit());
}
BENCHMARK(BM_KvGet_Policy100_NullSink)->MeasureProcessCPUTime()->UseRealTime();

// A store with default options (policies enforced, no policy stored, no
// sink) called with no caller, as hosts from before issue 15 call it: the
// gate asks the policy cache whether any policy exists (no backend call on
// the active).
void BM_KvGet_DefaultOptionsNoCaller(benchmark::State& state) {
  static std::unique_ptr<Backend> backend = NewInMemoryBackend();
  static std::unique_ptr<HaCoordinator> node = [] {
    HaCoordinator::Options o;
    o.backend = backend.get();
    o.node_id = "d0";
    o.advertise_address = "d0:1";
    o.lease_ttl = absl::Hours(10);
    o.renew_interval = absl::Hours(1);
    o.background_thread = false;
    std::unique_ptr<HaCoordinator> n = *HaCoordinator::Create(o);
    std::vector<std::string> shares = *n->Initialize(1, 1);
    (void)n->Unseal(shares[0]);
    n->Poll();
    return n;
  }();
  static std::unique_ptr<SecretStore> store = [] {
    SecretStore::Options so;
    so.coordinator = node.get();
    std::unique_ptr<SecretStore> s = *SecretStore::Create(so);
    (void)s->KvPut("bench/secret", {{"value", std::string(1024, 's')}});
    return s;
  }();
  for (auto _ : state) {
    absl::StatusOr<store::KvSecret> got = store->KvGet("bench/secret");
    if (!got.ok()) {
      state.SkipWithError("refused");
      break;
    }
    benchmark::DoNotOptimize(got);
  }
}
BENCHMARK(BM_KvGet_DefaultOptionsNoCaller)
    ->MeasureProcessCPUTime()
    ->UseRealTime();

void BM_KvGet_PlainTyped(benchmark::State& state) {
  SecretStore* store = Fixture::Get().store();
  for (auto _ : state) {
    absl::StatusOr<store::KvSecret> got = store->KvGet("bench/secret");
    benchmark::DoNotOptimize(got);
  }
}
BENCHMARK(BM_KvGet_PlainTyped)->MeasureProcessCPUTime()->UseRealTime();

void Wired(benchmark::State& state, SecretStore* store) {
  const CallContext caller = CallContext::As("bench-user", {"bench"});
  for (auto _ : state) {
    absl::StatusOr<store::KvSecret> got =
        store->KvGet("bench/secret", 0, 0, caller);
    if (!got.ok()) {
      state.SkipWithError(std::string(got.status().message()).c_str());
      break;
    }
    benchmark::DoNotOptimize(got);
  }
}

void BM_Store_Policy100(benchmark::State& state) {
  Wired(state, Fixture::Get().wired_policy());
}
BENCHMARK(BM_Store_Policy100)->MeasureProcessCPUTime()->UseRealTime();

// Two threads reading as callers with policies (the compiled set's cache is
// looked up on every request): requests per second, beside the one-thread
// rate of the same benchmark (items_per_second).
void BM_Store_Policy100_Threads(benchmark::State& state) {
  Wired(state, Fixture::Get().wired_policy());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Store_Policy100_Threads)->Threads(1)->Threads(2)->UseRealTime();

void BM_Store_Policy100_FileSink(benchmark::State& state) {
  Wired(state, Fixture::Get().wired_file());
}
BENCHMARK(BM_Store_Policy100_FileSink)->MeasureProcessCPUTime()->UseRealTime();

// The file sink on its own thread (caller_thread_writes = false).
void BM_Store_Policy100_FileSinkThreaded(benchmark::State& state) {
  Wired(state, Fixture::Get().wired_file_threaded());
}
BENCHMARK(BM_Store_Policy100_FileSinkThreaded)
    ->MeasureProcessCPUTime()
    ->UseRealTime();

void BM_Store_Policy100_NullSink(benchmark::State& state) {
  Wired(state, Fixture::Get().wired_null());
}
BENCHMARK(BM_Store_Policy100_NullSink)->MeasureProcessCPUTime()->UseRealTime();

// A sink that does no I/O and declares itself non-blocking: what the
// pipeline costs without the hand-off and without a write(2).
void BM_Store_Policy100_NullDirectSink(benchmark::State& state) {
  Wired(state, Fixture::Get().wired_null_direct());
}
BENCHMARK(BM_Store_Policy100_NullDirectSink)
    ->MeasureProcessCPUTime()
    ->UseRealTime();

// The response entry's HMAC of the 1 KiB value alone (the store redacts
// on the caller's thread).
void BM_HmacOf1KiB(benchmark::State& state) {
  const std::string salt(32, 'k'), value(1024, 's');
  for (auto _ : state) {
    benchmark::DoNotOptimize(audit::HashForAudit(salt, value));
  }
}
BENCHMARK(BM_HmacOf1KiB)->MeasureProcessCPUTime()->UseRealTime();

}  // namespace
}  // namespace strongbox

BENCHMARK_MAIN();
