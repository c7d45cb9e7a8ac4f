#include "lib/store/transit_key_cache.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "lib/store/transit_ciphertext.h"
#include "lib/store/transit_key_record.h"
#include "lib/util/status_macros.h"
#include "strongbox/secret_bytes.h"

namespace strongbox {
namespace transit {

thread_local uint64_t TransitKeyCache::served_on_this_thread_ = 0;

absl::StatusOr<std::shared_ptr<CachedKey>> DecodeKey(
    const store::TransitKeyRecord& record, uint64_t record_version) {
  auto key = std::make_shared<CachedKey>();
  key->name = record.name();
  key->record_version = record_version;
  key->latest_version = record.latest_version();
  key->min_decryption_version = record.min_decryption_version();
  key->min_encryption_version = record.min_encryption_version();
  key->deletion_allowed = record.deletion_allowed();
  key->created_unix_micros.reserve(record.versions_size());
  for (const auto& v : record.versions()) {
    key->created_unix_micros.push_back(v.created_unix_micros());
  }
  for (uint32_t v = key->min_decryption_version; v <= key->latest_version;
       ++v) {
    auto cipher = std::make_unique<VersionCipher>();
    RETURN_IF_ERROR(cipher->Init(record.versions(v - 1).key(),
                                 TransitAadPrefix(record.name(), v)));
    key->ciphers.push_back(std::move(cipher));
  }
  return key;
}

void FillInfo(const CachedKey& key, store::TransitKeyInfo* info) {
  info->set_name(key.name);
  info->set_latest_version(key.latest_version);
  info->set_min_decryption_version(key.min_decryption_version);
  info->set_min_encryption_version(key.min_encryption_version);
  info->set_deletion_allowed(key.deletion_allowed);
  auto* created = info->mutable_version_created_unix_micros();
  for (size_t i = 0; i < key.created_unix_micros.size(); ++i) {
    (*created)[static_cast<uint32_t>(i + 1)] = key.created_unix_micros[i];
  }
}

std::shared_ptr<const CachedKey> TransitKeyCache::Peek(
    const std::string& name) {
  ReaderLock lock(&mu_);
  auto it = cache_.find(name);
  if (it == cache_.end()) return nullptr;
  return it->second;
}

void TransitKeyCache::Clear() {
  absl::flat_hash_map<std::string, std::shared_ptr<CachedKey>> dropped;
  {
    WriterLock lock(&mu_);
    dropped.swap(cache_);
    ++write_epoch_;  // loads in flight must not install as trusted...
    ++generation_;   // ...nor at all (the node may be sealing)
  }
  {
    // Unused blocks are skipped: stored, so never reissued.
    MutexLock lock(&usage_mu_);
    usage_.clear();
  }
  // `dropped` frees the AEAD contexts (which wipe themselves) outside the
  // lock.
}

void TransitKeyCache::AttachUsage(CachedKey& key) {
  MutexLock lock(&usage_mu_);
  KeyUsage& usage = usage_[key.name];
  std::shared_ptr<VersionUsage>& latest = usage.versions[key.latest_version];
  if (latest == nullptr) latest = std::make_shared<VersionUsage>();
  key.latest_usage = latest;
  if (key.record_version < usage.newest_record) return;
  usage.newest_record = key.record_version;
  // Versions below the latest of the newest record seal nothing more:
  // their usage goes (an entry that still holds one keeps it alive until
  // it is dropped). Kept, they cost a VersionUsage (about 600 bytes, its
  // CPUs' credit lines) per rotation for the life of the key. (Should an
  // older version be attached again, from a record older still, it gets a
  // fresh, empty usage: no claim is made from it until a new block is
  // stored above the mark, so nothing is counted twice.)
  for (auto it = usage.versions.begin(); it != usage.versions.end();) {
    if (it->first < key.latest_version) {
      usage.versions.erase(it++);
    } else {
      ++it;
    }
  }
}

void TransitKeyCache::ForgetUsage(const std::string& name) {
  MutexLock lock(&usage_mu_);
  usage_.erase(name);
}

uint64_t TransitKeyCache::BeginWrite() {
  WriterLock lock(&mu_);
  ++write_epoch_;
  ++writes_in_flight_;
  return generation_;
}

void TransitKeyCache::EndWrite(const std::string& name,
                               std::shared_ptr<CachedKey> installed, bool erase,
                               uint64_t generation) {
  std::shared_ptr<CachedKey> dropped;  // freed outside the lock
  WriterLock lock(&mu_);
  ++write_epoch_;
  --writes_in_flight_;
  if (erase) {
    auto it = cache_.find(name);
    if (it != cache_.end()) {
      dropped = std::move(it->second);
      cache_.erase(it);
    }
  }
  if (installed != nullptr) InstallLocked(std::move(installed), generation);
}

void TransitKeyCache::InstallLocked(std::shared_ptr<CachedKey> key,
                                    uint64_t generation) {
  if (generation != generation_) return;  // cleared meanwhile
  std::shared_ptr<CachedKey>& slot = cache_[key->name];
  if (slot == nullptr || slot->record_version < key->record_version) {
    slot.swap(key);  // the old entry (if any) is freed with `key`
  } else if (slot->record_version == key->record_version) {
    // Same record: keep the entry readers hold, take the stronger trust.
    const FenceToken f = key->trusted_fence.load(std::memory_order_relaxed);
    if (f != kNoFence) slot->trusted_fence.store(f, std::memory_order_release);
  }
}

absl::StatusOr<std::shared_ptr<const CachedKey>> TransitKeyCache::Lookup(
    absl::string_view name, const EngineCall& call) {
  std::shared_ptr<CachedKey> cached;
  uint64_t epoch = 0;
  uint64_t generation = 0;
  bool quiet = false;  // no write in flight on this engine at `epoch`
  {
    ReaderLock lock(&mu_);
    auto it = cache_.find(name);
    if (it != cache_.end()) cached = it->second;
    epoch = write_epoch_;
    generation = generation_;
    quiet = writes_in_flight_ == 0;
  }
  // The active is the only writer in the cluster and every write goes
  // through this engine, which updates the cache: an entry known current
  // under this fence stays current while the fence does.
  if (cached != nullptr && call.active_fence != kNoFence &&
      cached->trusted_fence.load(std::memory_order_acquire) ==
          call.active_fence) {
    return std::shared_ptr<const CachedKey>(std::move(cached));
  }

  // Re-validate: compare the record's backend version, read without
  // decrypting. Every such read is fresh, so it also satisfies
  // call.min_index (the write that produced the index completed before
  // this request was made).
  const std::string path = KeyPath(name);
  absl::StatusOr<Entry> raw = call.barrier->backend()->Get(path);
  if (raw.status().code() == absl::StatusCode::kNotFound) {
    if (cached != nullptr) {
      std::shared_ptr<CachedKey> dropped;
      WriterLock lock(&mu_);
      auto it = cache_.find(name);
      if (it != cache_.end() && it->second == cached) {
        dropped = std::move(it->second);
        cache_.erase(it);
      }
    }
    return absl::NotFoundError(
        absl::StrCat("transit key \"", name, "\" does not exist"));
  }
  if (!raw.ok()) return raw.status();

  const bool may_trust = call.active_fence != kNoFence && quiet;
  if (cached != nullptr && raw->version == cached->record_version) {
    if (may_trust) {
      ReaderLock lock(&mu_);  // excludes EndWrite while we check and mark
      if (write_epoch_ == epoch) {
        cached->trusted_fence.store(call.active_fence,
                                    std::memory_order_release);
      }
    }
    return std::shared_ptr<const CachedKey>(std::move(cached));
  }

  // Changed (or never loaded): read it through the barrier and decode.
  absl::StatusOr<Entry> entry = call.barrier->Get(path);
  if (entry.status().code() == absl::StatusCode::kNotFound) {
    return absl::NotFoundError(
        absl::StrCat("transit key \"", name, "\" does not exist"));
  }
  if (!entry.ok()) return entry.status();
  store::TransitKeyRecord record;
  RecordWiper wipe_record(&record);
  absl::Status parsed = ParseRecord(name, entry->value, &record);
  WipeString(entry->value);
  if (!parsed.ok()) return parsed;
  absl::StatusOr<std::shared_ptr<CachedKey>> decoded =
      DecodeKey(record, entry->version);
  if (!decoded.ok()) return decoded.status();
  std::shared_ptr<CachedKey> key = *std::move(decoded);
  AttachUsage(*key);
  {
    WriterLock lock(&mu_);
    if (may_trust && write_epoch_ == epoch) {
      key->trusted_fence.store(call.active_fence, std::memory_order_relaxed);
    }
    InstallLocked(key, generation);
  }
  return std::shared_ptr<const CachedKey>(std::move(key));
}

}  // namespace transit
}  // namespace strongbox
