// TransitKeyCache: the Transit engine's decoded keys (one CachedKey per key
// name: its AES-GCM contexts per usable version and its metadata), and this
// node's encryption reservations per key version.
//
// The epoch protocol (what makes a cached key safe to use without reading
// storage):
//
// - Who fills. Lookup, on a miss or when the stored record changed: it
//   reads the record's backend version, decodes the record through the
//   barrier and installs it. The engine's own writes, through EndWrite:
//   the record they committed, decoded, trusted under the writer's
//   active fence. An install never replaces an entry of a newer record
//   version, and nothing loaded before a Clear installs after it (the
//   cache generation).
// - Who invalidates. EndWrite erases the entry when a write's outcome is
//   unknown (the commit may have applied with its answer lost) or the key
//   was deleted; Lookup erases it when storage says the key is gone;
//   Clear (the node sealed or lost leadership) drops every entry and every
//   reservation (their rest is skipped: nothing loaded after it uses them;
//   a call already holding an entry may still spend that entry's claims
//   and credits, all within blocks stored).
// - What a call trusts. An entry is used without touching storage only
//   when call.active_fence != kNoFence and the entry was written, loaded
//   or re-validated under that same fence while no write on this engine
//   was in flight: the active is the cluster's only writer and every write
//   goes through this engine, so such an entry stays current while the
//   fence does. write_epoch_ moves at the start and end of every write
//   (and on Clear), so a load that overlapped a write is never marked
//   trusted. Any other call (every standby call; an entry from an earlier
//   term) reads the record's backend version (no decryption) and
//   re-decodes only when it changed, so a standby is as fresh as the
//   backend (which also satisfies min_index) and never fails to decrypt a
//   version newer than its cache.
//
// Thread-safe. Readers share one lock, taken briefly; no lock is held
// across backend I/O or AEAD work, and dropped entries (key material) are
// freed outside it. Internal to strongbox's Transit engine.
#ifndef STRONGBOX_LIB_STORE_TRANSIT_KEY_CACHE_H_
#define STRONGBOX_LIB_STORE_TRANSIT_KEY_CACHE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/optimization.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "lib/crypto/aead.h"
#include "lib/store/engine.h"
#include "lib/store/transit_records.pb.h"
#include "lib/util/mutex.h"
#include "strongbox/backend.h"
#include "strongbox/requests.pb.h"

namespace strongbox {
namespace transit {

// One usable key version: its AEAD key and its additional-data prefix. The
// AEAD is lib/crypto's Aes256GcmKey (which wipes the key schedule), as for
// the barrier's terms; this class adds only Transit's additional data
// (transit_ciphertext.h). Immutable after Init; it may seal and open on
// many threads at once.
class VersionCipher {
 public:
  VersionCipher() = default;
  VersionCipher(const VersionCipher&) = delete;
  VersionCipher& operator=(const VersionCipher&) = delete;

  absl::Status Init(absl::string_view key, std::string aad_prefix) {
    absl::StatusOr<std::unique_ptr<crypto::Aes256GcmKey>> aead =
        crypto::Aes256GcmKey::Create(key);
    if (!aead.ok()) return absl::InternalError("AEAD init failed");
    aead_ = *std::move(aead);
    aad_prefix_ = std::move(aad_prefix);
    return absl::OkStatus();
  }
  // Seals `plaintext` under `nonce` into `out` (ciphertext || tag), the
  // additional data being this version's prefix and `context`.
  absl::Status Seal(absl::Span<const uint8_t> nonce,
                    absl::string_view plaintext, absl::string_view context,
                    absl::Span<uint8_t> out) const {
    std::string heap;
    return aead_->Seal(nonce, plaintext, Aad(context, &heap), out);
  }
  // Opens `sealed` (ciphertext || tag) into `out`; on failure `out` is
  // wiped and nothing of the plaintext is returned.
  absl::Status Open(absl::Span<const uint8_t> nonce, absl::string_view sealed,
                    absl::string_view context, absl::Span<uint8_t> out) const {
    std::string heap;
    return aead_->Open(nonce, sealed, Aad(context, &heap), out);
  }

 private:
  // The prefix, followed by `context` when there is one (built in *heap).
  absl::string_view Aad(absl::string_view context, std::string* heap) const {
    if (context.empty()) return aad_prefix_;
    heap->reserve(aad_prefix_.size() + context.size());
    heap->append(aad_prefix_).append(context.data(), context.size());
    return *heap;
  }

  std::unique_ptr<crypto::Aes256GcmKey> aead_;
  std::string aad_prefix_;
};

// The encryptions this node may still make with one key version: the
// block [used, reserved) it stored in the key record (issue 9 item 13).
// Claims move `used` up to `reserved` (never past it). A write that stored
// a block (create, rotate, reserve; all under the engine's reserve lock)
// moves both, and only forward: the new block starts at or above
// `reserved`, so `used` never decreases and no count is handed out twice.
//
// Claims are taken from `used` in batches (Claim's `batch`) and kept as
// credits of the CPU the claiming thread runs on, which later claims on
// that CPU use first: one compare-exchange on a line of that CPU's instead
// of one on `used`, a line every CPU's encryptions wrote (at two threads,
// a tenth of a Transit encrypt's time went to moving it between cores).
// A credit is an encryption counted in `used`, so every encryption made
// is still within a stored block: encryptions <= `used` <= `reserved`.
// Credits outlive the block they came from (a block adopted meanwhile
// does not void them: they are counted below its start). What credits a
// version still has when it is retired (a rotation, a restart, a seal)
// are encryptions never made: about batch - 1 per shard a thread claimed
// on, more when threads preempted on one CPU (or on CPUs that share a
// shard, past kCreditShards CPUs) found it empty at once and each moved a
// batch there. So the marks stay an upper bound, and a rotation at the
// limit may come that many encryptions early; with the default block
// (batch 64) a few hundred of a version's 3.9 billion. Thread-safe.
struct VersionUsage {
  static constexpr int kCreditShards = 8;

  // Claims one encryption (false: the block is used up, and no credit is
  // left on this CPU's shard). `batch` 1 (or 0) takes claims from `used`
  // one at a time, so every claim is made and a rotation comes exactly at
  // the limit.
  bool Claim(uint64_t batch) {
    if (ABSL_PREDICT_FALSE(batch == 0)) batch = 1;
    std::atomic<uint64_t>* credits = nullptr;
    if (batch > 1) {
      credits = &credits_[CurrentShardIndex() % kCreditShards].left;
      uint64_t left = credits->load(std::memory_order_relaxed);
      while (left != 0) {
        if (credits->compare_exchange_weak(left, left - 1,
                                           std::memory_order_relaxed)) {
          return true;
        }
      }
    }
    uint64_t claimed = used.load(std::memory_order_relaxed);
    uint64_t take;
    do {
      const uint64_t end = reserved.load(std::memory_order_acquire);
      if (claimed >= end) return false;
      take = end - claimed < batch ? end - claimed : batch;
    } while (!used.compare_exchange_weak(claimed, claimed + take,
                                         std::memory_order_relaxed));
    if (take > 1) credits->fetch_add(take - 1, std::memory_order_relaxed);
    return true;
  }

  alignas(64) std::atomic<uint64_t> used{0};
  std::atomic<uint64_t> reserved{0};

 private:
  struct alignas(64) Credits {
    std::atomic<uint64_t> left{0};
  };
  Credits credits_[kCreditShards];
};

// A decoded key record. Everything but `trusted_fence` is constant after
// construction; a changed record is a new CachedKey, never an edit.
struct CachedKey {
  std::string name;
  uint64_t record_version = 0;  // backend version of the record
  uint32_t latest_version = 0;
  uint32_t min_decryption_version = 0;
  uint32_t min_encryption_version = 0;
  bool deletion_allowed = false;
  std::vector<int64_t> created_unix_micros;  // [v - 1]
  // [v - min_decryption_version] for v in min_decryption..latest: versions
  // below the minimum can open nothing, so they get no context.
  std::vector<std::unique_ptr<VersionCipher>> ciphers;
  // The active fence under which this entry is known current (kNoFence:
  // not trusted; re-validate). Set without the exclusive lock.
  std::atomic<FenceToken> trusted_fence{kNoFence};
  // This node's reservation for latest_version, shared with every other
  // entry for the same version (TransitKeyCache::AttachUsage).
  std::shared_ptr<VersionUsage> latest_usage;

  const VersionCipher* cipher(uint32_t version) const {
    if (version < min_decryption_version || version > latest_version) {
      return nullptr;
    }
    return ciphers[version - min_decryption_version].get();
  }
};

// Decodes a checked record (ParseRecord) stored at `record_version`.
absl::StatusOr<std::shared_ptr<CachedKey>> DecodeKey(
    const store::TransitKeyRecord& record, uint64_t record_version);

// The key as a response describes it (no key bytes).
void FillInfo(const CachedKey& key, store::TransitKeyInfo* info);

class TransitKeyCache {
 public:
  TransitKeyCache() = default;
  TransitKeyCache(const TransitKeyCache&) = delete;
  TransitKeyCache& operator=(const TransitKeyCache&) = delete;

  // The current key `name` for this call: the cached entry when it is
  // trusted under call.active_fence, else re-validated against storage
  // (NOT_FOUND for a missing key; DATA_LOSS for a bad record).
  absl::StatusOr<std::shared_ptr<const CachedKey>> Lookup(
      absl::string_view name, const EngineCall& call);

  // The hot path of a data request: runs `fn(key)` on the cached entry for
  // `name` under this cache's reader lock, taking no reference, when the
  // entry is trusted under call.active_fence (as Lookup would return it
  // without reading storage), and returns what `fn` returns; false, with
  // `fn` not run, otherwise (the caller then takes the Lookup path).
  // A reference's count is one cache line that every thread writes twice
  // per request; the reader lock is sharded per CPU. `fn` may do AEAD work
  // under the lock (installs wait for it), and must not call into this
  // cache.
  template <typename Fn>
  bool WithTrusted(absl::string_view name, const EngineCall& call, Fn&& fn) {
    if (call.active_fence == kNoFence) return false;
    ReaderLock lock(&mu_);
    auto it = cache_.find(name);
    if (it == cache_.end() ||
        it->second->trusted_fence.load(std::memory_order_acquire) !=
            call.active_fence) {
      return false;
    }
    const bool served = fn(static_cast<const CachedKey&>(*it->second));
    if (served) ++served_on_this_thread_;
    return served;
  }
  // How many calls WithTrusted served on the calling thread, for tests
  // (a plain thread-local count: nothing shared on the hot path).
  static uint64_t ServedOnThisThreadForTesting() {
    return served_on_this_thread_;
  }

  // The cached entry for `name` as it is (nullptr: none), trusted or not.
  std::shared_ptr<const CachedKey> Peek(const std::string& name);

  // Write bookkeeping, so a load that overlaps a write on this engine is
  // never trusted (the write may change the record after the load read
  // it). BeginWrite before the write's first read; it returns the cache
  // generation to hand to EndWrite. EndWrite after the commit, installing
  // the written entry (`installed`, may be null), or erasing the cached
  // one (`erase`) when the outcome is unknown or the key was deleted.
  uint64_t BeginWrite();
  void EndWrite(const std::string& name, std::shared_ptr<CachedKey> installed,
                bool erase, uint64_t generation);

  // Drops every entry and reservation (the node sealed or lost
  // leadership); loads in flight will not install.
  void Clear();

  // Gives a freshly decoded `key` (not yet shared) this node's usage of
  // its latest version.
  void AttachUsage(CachedKey& key);
  // Drops the reservations of a deleted key.
  void ForgetUsage(const std::string& name);

 private:
  // Installs `key` unless the cache holds a newer record version, or was
  // cleared since `generation` was read.
  void InstallLocked(std::shared_ptr<CachedKey> key, uint64_t generation)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  static thread_local uint64_t served_on_this_thread_;

  // Readers (every encrypt/decrypt) take it shared, WithTrusted's across
  // the AEAD work of one item; installs take it exclusively, never across
  // backend I/O or AEAD work.
  SharedMutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<CachedKey>> cache_
      ABSL_GUARDED_BY(mu_);
  // ++ at the start and the end of every write, and on Clear.
  uint64_t write_epoch_ ABSL_GUARDED_BY(mu_) = 0;
  int writes_in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  // ++ on Clear: nothing loaded before it may be installed after it.
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;

  // This node's reservations, per key and version. Kept beside the cache,
  // not in it, so a reloaded entry keeps its block; dropped with the cache
  // (a leadership change may hide a deleted and recreated key of the same
  // name). Taken when an entry is decoded, never on the encrypt path.
  Mutex usage_mu_;
  struct KeyUsage {
    // The newest record version attached: an older record decoded later (a
    // load that read it before a write, or before a delete and re-create)
    // prunes nothing.
    uint64_t newest_record = 0;
    absl::flat_hash_map<uint32_t, std::shared_ptr<VersionUsage>> versions;
  };
  absl::flat_hash_map<std::string, KeyUsage> usage_ ABSL_GUARDED_BY(usage_mu_);
};

}  // namespace transit
}  // namespace strongbox

#endif  // STRONGBOX_LIB_STORE_TRANSIT_KEY_CACHE_H_
