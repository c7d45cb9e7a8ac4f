// libFuzzer target: the barrier's read path on arbitrary stored bytes.
//
// One barrier (1 share, unsealed, two key terms) over an in-memory backend
// lives for the whole run. Each input is stored raw at a data path and read
// through Barrier::Get. Input byte 0 picks how: even — the rest is stored
// as is; odd — the rest is XORed into a genuine sealed value (so the fuzzer
// reaches the AEAD with well-formed headers). Get must give the genuine
// plaintext (only for the genuine bytes) or DATA_LOSS — nothing else.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "strongbox/barrier.h"
#include "strongbox/in_memory_backend.h"

namespace {

struct Fixture {
  std::unique_ptr<strongbox::Backend> backend;
  std::unique_ptr<strongbox::Barrier> barrier;
  std::unique_ptr<strongbox::LeadershipGrant> grant;
  std::string genuine;  // a sealed value stored at kPath
};

constexpr char kPath[] = "fuzz/value";
constexpr char kPlaintext[] = "the genuine plaintext";

Fixture* MakeFixture() {
  auto* f = new Fixture;
  f->backend = strongbox::NewInMemoryBackend();
  strongbox::BarrierOptions options;
  options.backend = f->backend.get();
  f->barrier = *strongbox::Barrier::Create(options);
  auto shares = f->barrier->Initialize(1, 1);
  if (!shares.ok() || !f->barrier->Unseal((*shares)[0]).ok()) std::abort();
  // The in-memory backend has HA: writes carry the lease's fence.
  strongbox::AcquireOptions acquire;
  acquire.holder = "fuzzer";
  auto grant = f->backend->ha()->Acquire(acquire);
  if (!grant.ok()) std::abort();
  const strongbox::FenceToken fence = (*grant)->fence();
  if (!f->barrier->Rotate(fence).ok()) std::abort();
  if (!f->barrier->Put(kPath, kPlaintext, fence).ok()) std::abort();
  f->grant = *std::move(grant);
  f->genuine = f->backend->Get(kPath)->value;
  return f;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Fixture* const f = MakeFixture();
  if (size < 1) return 0;
  std::string stored(reinterpret_cast<const char*>(data) + 1, size - 1);
  bool genuine;
  if (data[0] & 1) {
    std::string mixed = f->genuine;
    for (size_t i = 0; i < stored.size() && i < mixed.size(); ++i) {
      mixed[i] ^= stored[i];
    }
    stored = std::move(mixed);
  }
  // The fuzzer can also rebuild the genuine bytes in raw mode (it sees the
  // comparisons), so decide by content, not by mode.
  genuine = stored == f->genuine;
  if (!f->backend->Put(kPath, stored).ok()) return 0;  // e.g. too large
  auto got = f->barrier->Get(kPath);
  if (got.ok()) {
    if (!genuine || got->value != kPlaintext) std::abort();
  } else if (genuine || got.status().code() != absl::StatusCode::kDataLoss) {
    std::abort();
  }
  return 0;
}
