// The crypto provider's cost, for a host choosing between BoringSSL (the
// default) and OpenSSL 3 (--config=openssl). Build and run this binary once
// per provider and compare the two tables side by side:
//
//   bazel run -c opt //bench/crypto:aead_bench
//   bazel run -c opt --config=openssl //bench/crypto:aead_bench
//
//   BM_RawSeal / BM_RawOpen      the provider's raw AES-256-GCM
//                                (bench/floors.h; seal draws a fresh
//                                RAND_bytes(12) nonce per call)
//   BM_KeySeal / BM_KeyOpen      lib/crypto's Aes256GcmKey, nonce from a
//                                NoncePool (what the barrier and Transit do)
//   BM_RandBytes12 / BM_PoolDraw one nonce straight from the RNG vs from the
//                                pool (pid + fork-generation checked)
// Sizes: 64 B, 1 KiB, 16 KiB. The first line of the output names the
// provider.
#include <cstdio>
#include <memory>
#include <string>

#include "bench/floors.h"
#include "benchmark/benchmark.h"
#include "lib/crypto/aead.h"
#include "lib/seal/nonce_pool.h"

namespace strongbox {
namespace {

using bench::RawAead;
constexpr char kAd[] = "kv/data/app/database";

void BM_RawSeal(benchmark::State& state) {
  RawAead aead;
  const std::string plaintext(state.range(0), 'p');
  std::string out;
  for (auto _ : state) {
    aead.SealInto(plaintext, kAd, &out);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
}

void BM_RawOpen(benchmark::State& state) {
  RawAead aead;
  const std::string sealed = aead.Seal(std::string(state.range(0), 'p'), kAd);
  std::string out;
  for (auto _ : state) {
    if (!aead.OpenInto(sealed, kAd, &out)) state.SkipWithError("open failed");
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
}

std::unique_ptr<crypto::Aes256GcmKey> NewKey() {
  return *crypto::Aes256GcmKey::Create(std::string(32, 'k'));
}

void BM_KeySeal(benchmark::State& state) {
  auto key = NewKey();
  seal::NoncePool nonces;
  const std::string plaintext(state.range(0), 'p');
  std::string out(12 + plaintext.size() + 16, '\0');
  uint8_t* p = reinterpret_cast<uint8_t*>(&out[0]);
  for (auto _ : state) {
    if (!nonces.Draw(p).ok() ||
        !key->Seal(absl::MakeConstSpan(p, 12), plaintext, kAd,
                   absl::MakeSpan(p + 12, out.size() - 12))
             .ok()) {
      state.SkipWithError("seal failed");
    }
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
}

void BM_KeyOpen(benchmark::State& state) {
  auto key = NewKey();
  const std::string nonce(12, 'n');
  const std::string plaintext(state.range(0), 'p');
  std::string sealed(plaintext.size() + 16, '\0');
  (void)key->Seal(
      absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(nonce.data()), 12),
      plaintext, kAd,
      absl::MakeSpan(reinterpret_cast<uint8_t*>(&sealed[0]), sealed.size()));
  std::string out(plaintext.size(), '\0');
  for (auto _ : state) {
    if (!key->Open(
                absl::MakeConstSpan(
                    reinterpret_cast<const uint8_t*>(nonce.data()), 12),
                sealed, kAd,
                absl::MakeSpan(reinterpret_cast<uint8_t*>(&out[0]), out.size()))
             .ok()) {
      state.SkipWithError("open failed");
    }
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
}

void BM_RandBytes12(benchmark::State& state) {
  uint8_t n[12];
  for (auto _ : state) {
    RawAead::RandomNonce(n);
    benchmark::DoNotOptimize(n);
  }
}

void BM_PoolDraw(benchmark::State& state) {
  seal::NoncePool pool;
  uint8_t n[12];
  for (auto _ : state) {
    if (!pool.Draw(n).ok()) state.SkipWithError("draw failed");
    benchmark::DoNotOptimize(n);
  }
}

void BM_KeyCreate(benchmark::State& state) {
  const std::string key(32, 'k');
  for (auto _ : state) {
    auto k = crypto::Aes256GcmKey::Create(key);
    benchmark::DoNotOptimize(k);
  }
}

BENCHMARK(BM_RawSeal)->Arg(64)->Arg(1024)->Arg(16384);
BENCHMARK(BM_KeySeal)->Arg(64)->Arg(1024)->Arg(16384);
BENCHMARK(BM_RawOpen)->Arg(64)->Arg(1024)->Arg(16384);
BENCHMARK(BM_KeyOpen)->Arg(64)->Arg(1024)->Arg(16384);
BENCHMARK(BM_RandBytes12);
BENCHMARK(BM_PoolDraw);
BENCHMARK(BM_KeyCreate);

}  // namespace
}  // namespace strongbox

int main(int argc, char** argv) {
  std::printf("crypto provider: %s\n",
              std::string(strongbox::crypto::ProviderName()).c_str());
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
