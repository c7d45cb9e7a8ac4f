// TransitEngine beside the crypto provider's raw AES-256-GCM (bench/floors.h;
// --config=openssl for OpenSSL 3), same sizes, same run.
//
//   BM_FloorSeal          the provider's seal with a fresh RAND_bytes(12)
//                         nonce per call into a reused buffer
//   BM_FloorSealBase64    the same plus absl::Base64Escape of
//                         nonce || ciphertext || tag into a new string
//   BM_TransitEncrypt     one-item Execute(transit_encrypt) on the active
//                         (cache trusted under its fence; no storage I/O)
//   BM_TransitDecrypt     one-item Execute(transit_decrypt) on the active
//   BM_StandbyDecrypt     one-item decrypt on a standby: every call
//                         re-validates the key's record version against
//                         the (in-memory) backend; 1 and 2 threads (a
//                         standby does not encrypt: encryptions are
//                         counted in storage by the active)
// Goal: TransitEncrypt / FloorSeal <= 1.5.
// Run: bazel run -c opt //bench/store/transit:transit_bench

#include <memory>
#include <string>

#include "absl/strings/escaping.h"
#include "bench/floors.h"
#include "benchmark/benchmark.h"
#include "lib/store/transit_engine.h"
#include "strongbox/barrier.h"
#include "strongbox/in_memory_backend.h"

namespace strongbox {
namespace {

constexpr char kAad[] = "strongbox-transit\0bench\0\0\0\0\1";

using bench::RawAead;

void BM_FloorSeal(benchmark::State& state) {
  RawAead aead;
  const std::string plaintext(state.range(0), 'p');
  std::string out;
  for (auto _ : state) {
    aead.SealInto(plaintext, absl::string_view(kAad, sizeof(kAad) - 1), &out);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
}

void BM_FloorSealBase64(benchmark::State& state) {
  RawAead aead;
  const std::string plaintext(state.range(0), 'p');
  std::string out;
  for (auto _ : state) {
    aead.SealInto(plaintext, absl::string_view(kAad, sizeof(kAad) - 1), &out);
    std::string text = absl::Base64Escape(out);
    benchmark::DoNotOptimize(text.data());
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
}

// One backend, an active and a standby node, one key "bench".
struct Cluster {
  Cluster() {
    backend = NewInMemoryBackend();
    BarrierOptions options;
    options.backend = backend.get();
    barrier_a = *Barrier::Create(options);
    barrier_b = *Barrier::Create(options);
    auto shares = barrier_a->Initialize(1, 1);
    (void)barrier_a->Unseal((*shares)[0]);
    (void)barrier_b->Unseal((*shares)[0]);
    AcquireOptions acquire;
    acquire.holder = "bench";
    acquire.ttl = absl::Hours(1);
    grant = *backend->ha()->Acquire(acquire);
    active.barrier = barrier_a.get();
    active.write_fence = active.active_fence = grant->fence();
    standby.barrier = barrier_b.get();
    store::Request create;
    create.mutable_transit_create_key()->set_name("bench");
    store::Response response;
    if (!active_engine.Execute(create, active, &response).ok()) abort();
  }
  std::unique_ptr<Backend> backend;
  std::unique_ptr<Barrier> barrier_a, barrier_b;
  std::unique_ptr<LeadershipGrant> grant;
  EngineCall active, standby;
  TransitEngine active_engine, standby_engine;
};

Cluster& Shared() {
  static Cluster* cluster = new Cluster();
  return *cluster;
}

store::Request EncryptRequest(size_t size) {
  store::Request r;
  r.mutable_transit_encrypt()->set_name("bench");
  r.mutable_transit_encrypt()->add_items()->set_plaintext(
      std::string(size, 'p'));
  return r;
}

void BM_TransitEncrypt(benchmark::State& state) {
  Cluster& c = Shared();
  const store::Request request = EncryptRequest(state.range(0));
  for (auto _ : state) {
    store::Response response;
    if (!c.active_engine.Execute(request, c.active, &response).ok() ||
        response.transit_batch().items(0).code() != 0) {
      state.SkipWithError("encrypt failed");
    }
    benchmark::DoNotOptimize(response);
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
}

void BM_TransitDecrypt(benchmark::State& state) {
  Cluster& c = Shared();
  store::Response encrypted;
  (void)c.active_engine.Execute(EncryptRequest(state.range(0)), c.active,
                                &encrypted);
  store::Request request;
  request.mutable_transit_decrypt()->set_name("bench");
  request.mutable_transit_decrypt()->add_items()->set_ciphertext(
      encrypted.transit_batch().items(0).ciphertext());
  for (auto _ : state) {
    store::Response response;
    if (!c.active_engine.Execute(request, c.active, &response).ok() ||
        response.transit_batch().items(0).code() != 0) {
      state.SkipWithError("decrypt failed");
    }
    benchmark::DoNotOptimize(response);
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
}

void BM_StandbyDecrypt(benchmark::State& state) {
  Cluster& c = Shared();
  store::Response encrypted;
  (void)c.active_engine.Execute(EncryptRequest(state.range(0)), c.active,
                                &encrypted);
  store::Request request;
  request.mutable_transit_decrypt()->set_name("bench");
  request.mutable_transit_decrypt()->add_items()->set_ciphertext(
      encrypted.transit_batch().items(0).ciphertext());
  for (auto _ : state) {
    store::Response response;
    if (!c.standby_engine.Execute(request, c.standby, &response).ok() ||
        response.transit_batch().items(0).code() != 0) {
      state.SkipWithError("decrypt failed");
    }
    benchmark::DoNotOptimize(response);
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
}

BENCHMARK(BM_FloorSeal)->Arg(64)->Arg(1024);
BENCHMARK(BM_FloorSealBase64)->Arg(64)->Arg(1024);
BENCHMARK(BM_TransitEncrypt)->Arg(64)->Arg(1024);
BENCHMARK(BM_TransitDecrypt)->Arg(64)->Arg(1024);
BENCHMARK(BM_StandbyDecrypt)
    ->Arg(64)
    ->Arg(1024)
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();

}  // namespace
}  // namespace strongbox

BENCHMARK_MAIN();
