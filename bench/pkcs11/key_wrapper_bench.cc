// Wrap/unwrap of a 32-byte key: SoftHSM2 through PKCS#11 vs in-process
// AES-256-GCM (lib/crypto) vs the raw provider floor. See BUILD.bazel.
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "bench/floors.h"
#include "benchmark/benchmark.h"
#include "strongbox/key_wrapper.h"
#include "strongbox/pkcs11_key_wrapper.h"
#include "tests/pkcs11/softhsm.h"

namespace strongbox {
namespace {

constexpr char kAd[] = "core/root-key-wrapped";
const std::string& Key() {
  static const std::string* key = new std::string(32, 'k');
  return *key;
}

testing_softhsm::SoftHsm* Hsm() {
  static testing_softhsm::SoftHsm* hsm = [] {
    auto* h = new testing_softhsm::SoftHsm("bench");
    if (!h->InitToken("bench").ok()) {
      std::fprintf(stderr, "softhsm2-util failed\n");
      std::exit(1);
    }
    return h;
  }();
  return hsm;
}

KeyWrapper* Pkcs11() {
  static Pkcs11KeyWrapper* wrapper = [] {
    Pkcs11Options o;
    o.module_path = testing_softhsm::kModulePath;
    o.token_label = "bench";
    o.pin_file = Hsm()->pin_file();
    o.key_label = "kek";
    o.generate_key = true;
    auto w = Pkcs11KeyWrapper::Create(o);
    if (!w.ok() || !(*w)->Check().ok()) {
      std::fprintf(stderr, "PKCS#11 setup failed\n");
      std::exit(1);
    }
    return w->release();
  }();
  return wrapper;
}

KeyWrapper* Software() {
  static SoftwareKeyWrapper* wrapper =
      SoftwareKeyWrapper::CreateRandom("kek")->release();
  return wrapper;
}

void Wrap(benchmark::State& state, KeyWrapper* wrapper) {
  for (auto _ : state) {
    auto blob = wrapper->Wrap(Key(), kAd);
    if (!blob.ok()) state.SkipWithError("wrap failed");
    benchmark::DoNotOptimize(blob);
  }
}

void Unwrap(benchmark::State& state, KeyWrapper* wrapper) {
  auto blob = wrapper->Wrap(Key(), kAd);
  if (!blob.ok()) {
    state.SkipWithError("wrap failed");
    return;
  }
  for (auto _ : state) {
    auto plain = wrapper->Unwrap(*blob, kAd);
    if (!plain.ok()) state.SkipWithError("unwrap failed");
    benchmark::DoNotOptimize(plain);
  }
}

void BM_Pkcs11Wrap(benchmark::State& state) { Wrap(state, Pkcs11()); }
void BM_Pkcs11Unwrap(benchmark::State& state) { Unwrap(state, Pkcs11()); }
void BM_SoftwareWrap(benchmark::State& state) { Wrap(state, Software()); }
void BM_SoftwareUnwrap(benchmark::State& state) { Unwrap(state, Software()); }

void BM_FloorSeal(benchmark::State& state) {
  bench::RawAead aead;
  std::string out;
  for (auto _ : state) {
    aead.SealInto(Key(), kAd, &out);
    benchmark::DoNotOptimize(out);
  }
}

BENCHMARK(BM_Pkcs11Wrap);
BENCHMARK(BM_Pkcs11Unwrap);
BENCHMARK(BM_SoftwareWrap);
BENCHMARK(BM_SoftwareUnwrap);
BENCHMARK(BM_FloorSeal);

}  // namespace
}  // namespace strongbox

BENCHMARK_MAIN();
