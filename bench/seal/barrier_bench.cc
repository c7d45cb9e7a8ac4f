// Barrier seal/open beside the crypto provider's raw AES-256-GCM
// (bench/floors.h: BoringSSL, or OpenSSL 3 with --config=openssl), same
// sizes, same run.
//
//   BM_RawSeal        the provider's seal with a fresh RAND_bytes(12) nonce
//                     per call (what a barrier must at least do)
//   BM_RawOpen        the provider's open
//   BM_BarrierSeal    Barrier's Put-path crypto (seam: no backend)
//   BM_BarrierOpen    Barrier's Get-path crypto (seam: no backend)
//   BM_BarrierPut/Get the full path over the in-memory backend
// Goal: BarrierSeal/RawSeal and BarrierOpen/RawOpen <= 1.3.
// Run: bazel run -c opt //bench/seal:barrier_bench

#include <memory>
#include <string>

#include "bench/floors.h"
#include "benchmark/benchmark.h"
#include "lib/seal/barrier_impl.h"
#include "strongbox/barrier.h"
#include "strongbox/in_memory_backend.h"

namespace strongbox {
namespace {

constexpr char kPath[] = "kv/data/app/database";

using bench::RawAead;

void BM_RawSeal(benchmark::State& state) {
  RawAead aead;
  const std::string plaintext(state.range(0), 'p');
  std::string out;
  for (auto _ : state) {
    aead.SealInto(plaintext, kPath, &out);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
}

void BM_RawOpen(benchmark::State& state) {
  RawAead aead;
  const std::string sealed = aead.Seal(std::string(state.range(0), 'p'), kPath);
  std::string out;
  for (auto _ : state) {
    if (!aead.OpenInto(sealed, kPath, &out)) state.SkipWithError("open failed");
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
}

struct Unsealed {
  Unsealed() {
    backend = NewInMemoryBackend();
    BarrierOptions options;
    options.backend = backend.get();
    barrier = *Barrier::Create(options);
    auto shares = barrier->Initialize(1, 1);
    (void)barrier->Unseal((*shares)[0]);
    impl = BarrierTestPeer::impl(*barrier);
    // The in-memory backend has HA: writes carry the lease's fence.
    AcquireOptions acquire;
    acquire.holder = "bench";
    grant = *backend->ha()->Acquire(acquire);
    fence = grant->fence();
  }
  std::unique_ptr<Backend> backend;
  std::unique_ptr<Barrier> barrier;
  std::unique_ptr<LeadershipGrant> grant;
  FenceToken fence = kNoFence;
  Barrier::Impl* impl;
};

void BM_BarrierSeal(benchmark::State& state) {
  static Unsealed* const u = new Unsealed;
  const std::string plaintext(state.range(0), 'p');
  for (auto _ : state) {
    auto sealed = u->impl->SealValue(kPath, plaintext);
    benchmark::DoNotOptimize(sealed);
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
}

void BM_BarrierOpen(benchmark::State& state) {
  static Unsealed* const u = new Unsealed;
  const std::string stored =
      *u->impl->SealValue(kPath, std::string(state.range(0), 'p'));
  // As Get opens: in the buffer the backend handed over (here refilled
  // with the stored bytes each time, as RawOpen reuses its output buffer).
  std::string value;
  for (auto _ : state) {
    value.assign(stored);
    if (!u->impl->OpenValueInPlace(kPath, &value).ok()) {
      state.SkipWithError("open failed");
    }
    benchmark::DoNotOptimize(value.data());
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
}

void BM_BarrierPut(benchmark::State& state) {
  Unsealed u;
  const std::string plaintext(state.range(0), 'p');
  for (auto _ : state) {
    auto rev = u.barrier->Put(kPath, plaintext, u.fence);
    benchmark::DoNotOptimize(rev);
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
}

void BM_BarrierGet(benchmark::State& state) {
  static Unsealed* const u = new Unsealed;
  if (state.thread_index() == 0) {
    (void)u->barrier->Put(kPath, std::string(state.range(0), 'p'), u->fence);
  }
  for (auto _ : state) {
    auto entry = u->barrier->Get(kPath);
    if (!entry.ok()) state.SkipWithError("get failed");
    benchmark::DoNotOptimize(entry);
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
}

#define SIZES Arg(64)->Arg(1024)->Arg(16384)
BENCHMARK(BM_RawSeal)->SIZES;
BENCHMARK(BM_BarrierSeal)->SIZES;
BENCHMARK(BM_RawOpen)->SIZES;
BENCHMARK(BM_BarrierOpen)->SIZES;
BENCHMARK(BM_BarrierOpen)->Arg(64)->Threads(2);
BENCHMARK(BM_BarrierPut)->SIZES;
BENCHMARK(BM_BarrierGet)->SIZES;

}  // namespace
}  // namespace strongbox

BENCHMARK_MAIN();
