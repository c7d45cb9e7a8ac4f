#include "lib/store/transit_engine.h"

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "lib/seal/nonce_pool.h"
#include "lib/store/retry.h"
#include "lib/store/transit_ciphertext.h"
#include "lib/store/transit_key_cache.h"
#include "lib/store/transit_key_record.h"
#include "lib/store/transit_records.pb.h"
#include "lib/util/mutex.h"
#include "lib/util/status_macros.h"
#include "strongbox/secret_bytes.h"

namespace strongbox {
namespace {

using transit::CachedKey;
using transit::DecodeKey;
using transit::FillInfo;
using transit::Grant;
using transit::KeyPath;
using transit::kNonceBytes;
using transit::kTagBytes;
using transit::Mutation;
using transit::ParseRecord;
using transit::RecordWiper;
using transit::VersionCipher;
using transit::VersionUsage;
static_assert(kNonceBytes == seal::NoncePool::kNonceBytes,
              "transit ciphertexts carry the nonce pool's nonces");

int CodeOf(absl::StatusCode code) { return static_cast<int>(code); }

// A write that changes nothing (create of an existing key, a config equal
// to the stored one): answers the key as it is, at its current index.
absl::Status AnswerUnchanged(const store::TransitKeyRecord& record,
                             uint64_t record_version,
                             store::Response* response) {
  FillInfo(record, response->mutable_transit_key());
  response->set_index(record_version);
  return absl::OkStatus();
}

absl::Status NoReservationError() {
  return absl::UnavailableError(
      "this node cannot store transit encryption reservations (it is not "
      "the active node); encrypt on the active node");
}

void SetItemError(const absl::Status& s, store::TransitResultItem* item) {
  item->set_code(CodeOf(s.code()));
  item->set_error(std::string(s.message()));
}

}  // namespace

// ------------------------------------------------------------- Impl

class TransitEngine::Impl {
 public:
  explicit Impl(const TransitOptions& options)
      : options_(options),
        max_encryptions_(
            std::max<uint64_t>(options.max_encryptions_per_version, 1)),
        reservation_block_(
            std::min(std::max<uint64_t>(options.encryption_reservation, 1),
                     max_encryptions_)),
        block_policy_{max_encryptions_, reservation_block_,
                      options.rotate_at_limit},
        claim_batch_(std::clamp<uint64_t>(reservation_block_ / 4096, 1, 64)) {}

  absl::Status Execute(const store::Request& request, const EngineCall& call,
                       store::Response* response);
  absl::Status ExecuteOne(store::Request::OpCase op, absl::string_view name,
                          absl::string_view input, absl::string_view context,
                          const EngineCall& call, std::string* out,
                          absl::Status* item_status);
  void ClearCache() { cache_.Clear(); }

 private:
  // kReserve: store the next block of encryptions for the latest version,
  // or rotate at the limit (Reserve).
  enum class WriteKind { kCreate, kRotate, kConfig, kDelete, kReserve };

  absl::Status ValidateName(absl::string_view name) const;

  // One key write, a read-modify-write retried on conflicts; `grant`
  // (optional) receives the block the write stored for this node.
  absl::Status Write(WriteKind kind, const std::string& name,
                     const store::Request& request, const EngineCall& call,
                     store::Response* response, Grant* grant = nullptr);

  // What `kind` makes of `record` (read at `record_version`; `exists`
  // false: no key yet): transit_key_record.h, one function per kind.
  absl::StatusOr<Mutation> Mutate(WriteKind kind, const std::string& name,
                                  bool exists, uint64_t record_version,
                                  const store::Request& request,
                                  const EngineCall& call,
                                  store::TransitKeyRecord* record) const;

  // ---- The data path (encrypt, decrypt, rewrap), shared by Execute's
  // batches and ExecuteOne.
  // The checks before any item, in order (a bad name, a bad item count, a
  // call that may not encrypt). `op`: kTransitEncrypt, kTransitDecrypt or
  // kTransitRewrap.
  absl::Status CheckData(store::Request::OpCase op, absl::string_view name,
                         size_t items, const EngineCall& call);
  // CheckData, then the key.
  absl::StatusOr<std::shared_ptr<const CachedKey>> BeginData(
      store::Request::OpCase op, absl::string_view name, size_t items,
      const EngineCall& call);
  // One item of `op` with *key (a claim may replace it: a rotation), its
  // result into *ciphertext (encrypt, rewrap) or *plaintext (decrypt) and
  // *version. Returns a failure of the whole request (an encryption could
  // not be claimed: nothing more may be sealed); the item's own failure is
  // *item_status, with its outputs cleared.
  absl::Status DataItem(store::Request::OpCase op, const EngineCall& call,
                        std::shared_ptr<const CachedKey>* key,
                        absl::string_view input, absl::string_view context,
                        std::string* ciphertext, std::string* plaintext,
                        uint32_t* version, absl::Status* item_status);
  absl::Status DataBatch(store::Request::OpCase op,
                         const store::TransitBatchRequest& batch,
                         const EngineCall& call, store::Response* response);

  // ---- Encryption counting (TransitOptions::max_encryptions_per_version).
  // Claims one encryption with the latest version of *key, storing the
  // next block (or rotating, which replaces *key with the new snapshot)
  // when this node's block is used up. On failure nothing may be sealed.
  absl::Status ClaimEncryption(const EngineCall& call,
                               std::shared_ptr<const CachedKey>* key);
  // Stores the next block for key `name` whose version `version` this
  // node has used up (unless another thread did meanwhile).
  absl::Status Reserve(const std::string& name, uint32_t version,
                       const EngineCall& call);
  // Whether this call may store a reservation (see the header).
  static bool MayReserve(const EngineCall& call) {
    return call.write_fence != kNoFence ||
           call.barrier->backend()->ha() == nullptr;
  }

  // Seals `plaintext` with the latest version into `out`.
  absl::Status SealOne(const CachedKey& key, absl::string_view plaintext,
                       absl::string_view context, std::string* out);
  // Opens `ciphertext` into `out` (which is left empty on failure);
  // *version gets the version named by the ciphertext.
  absl::Status OpenOne(const CachedKey& key, absl::string_view ciphertext,
                       absl::string_view context, std::string* out,
                       uint32_t* version);

  // Constant after construction.
  const TransitOptions options_;
  const uint64_t max_encryptions_;    // >= 1
  const uint64_t reservation_block_;  // 1..max_encryptions_
  const transit::BlockPolicy block_policy_;
  // Encryptions a claim takes from the block at once, kept as its CPU's
  // credits (VersionUsage::Claim): a block's 1/4096th, from 1 (blocks
  // under 8,192: every claim is made, as tests with small limits expect)
  // to 64 (the default block of 1,048,576: about 63 encryptions per CPU
  // shard are left unmade when a version is retired).
  const uint64_t claim_batch_;
  seal::NoncePool nonces_;

  // Serializes the writes that store a block (a reservation, one per
  // block or a rotation at the limit; create; rotate), so threads that use
  // up a block together store one new block and blocks are adopted in
  // order. Held across that key-record write, as the barrier holds its
  // seal-op lock across a keyring write; taken before the cache's locks
  // (TransitKeyCache::mu_ and usage_mu_, private to it, so Clang cannot
  // name them here).
  Mutex reserve_mu_;

  transit::TransitKeyCache cache_;
};

namespace {

// The largest input (plaintext, or ciphertext text) a one-item call serves
// under the key cache's reader lock (ExecuteOne).
constexpr size_t kUncountedMaxInputBytes = 4096;

}  // namespace

absl::Status TransitEngine::Impl::ClaimEncryption(
    const EngineCall& call, std::shared_ptr<const CachedKey>* key) {
  // Another thread may use up a block we just stored, or rotate meanwhile:
  // that is a conflict, and each attempt stores (or finds) a fresh block.
  absl::Status status = RetryOnConflict([&]() -> absl::Status {
    // The claim is made on the snapshot the value is sealed with, so the
    // count and the version agree.
    if ((*key)->latest_usage != nullptr &&
        (*key)->latest_usage->Claim(claim_batch_)) {
      return absl::OkStatus();
    }
    // Never ABORTED (Reserve answers UNAVAILABLE for a lost race).
    if (absl::Status s = Reserve((*key)->name, (*key)->latest_version, call);
        !s.ok()) {
      return s;
    }
    // The reservation installed the record it wrote (a rotation: the new
    // version); take it.
    absl::StatusOr<std::shared_ptr<const CachedKey>> fresh =
        cache_.Lookup((*key)->name, call);
    if (!fresh.ok()) return fresh.status();
    *key = *std::move(fresh);
    return ConflictError("encryption block used up by other encryptions");
  });
  if (status.code() != absl::StatusCode::kAborted) return status;
  return absl::UnavailableError(absl::StrCat(
      "could not reserve encryptions for transit key \"", (*key)->name,
      "\" (other encryptions used each new block first); retry"));
}

absl::Status TransitEngine::Impl::Reserve(const std::string& name,
                                          uint32_t version,
                                          const EngineCall& call) {
  MutexLock lock(&reserve_mu_);
  {
    // Another thread may have stored a block (or rotated) meanwhile.
    std::shared_ptr<const CachedKey> cached = cache_.Peek(name);
    if (cached != nullptr && cached->latest_usage != nullptr &&
        (cached->latest_version > version ||
         cached->latest_usage->used.load() <
             cached->latest_usage->reserved.load())) {
      return absl::OkStatus();
    }
  }
  store::Request none;
  store::Response ignored;
  Grant grant;
  absl::Status s =
      Write(WriteKind::kReserve, name, none, call, &ignored, &grant);
  if (s.ok() || s.code() == absl::StatusCode::kNotFound ||
      s.code() == absl::StatusCode::kFailedPrecondition ||
      s.code() == absl::StatusCode::kDataLoss) {
    return s;  // a stale fence keeps its IsStaleFence mark
  }
  // UNAVAILABLE, an unknown outcome (a stored block only skips
  // encryptions), or ABORTED after repeated races.
  return absl::UnavailableError(
      absl::StrCat("could not reserve encryptions for transit key \"", name,
                   "\": ", s.message(), "; nothing was sealed; retry"));
}

absl::Status TransitEngine::Impl::ValidateName(absl::string_view name) const {
  bool ok = !name.empty() && name.size() <= options_.max_name_bytes &&
            name != "." && name != "..";
  for (char c : name) {
    if (!ok) break;
    ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
         (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
  }
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("transit key name must be 1 to ", options_.max_name_bytes,
                   " bytes of [A-Za-z0-9_.-], and not \".\" or \"..\""));
}

// ------------------------------------------------------------- writes

absl::StatusOr<Mutation> TransitEngine::Impl::Mutate(
    WriteKind kind, const std::string& name, bool exists,
    uint64_t record_version, const store::Request& request,
    const EngineCall& call, store::TransitKeyRecord* record) const {
  switch (kind) {
    case WriteKind::kCreate:
      return transit::CreateKey(name, exists, call.Now(), block_policy_,
                                record);
    case WriteKind::kRotate:
      return transit::RotateKey(record_version, call.Now(), block_policy_,
                                record);
    case WriteKind::kConfig:
      return transit::ConfigureKey(record_version, request.transit_config_key(),
                                   record);
    case WriteKind::kDelete:
      return transit::DeleteKey(record_version, *record);
    case WriteKind::kReserve:
      return transit::ReserveEncryptions(record_version, call.Now(),
                                         block_policy_, record);
  }
  return absl::InternalError("unknown transit write kind");
}

absl::Status TransitEngine::Impl::Write(WriteKind kind, const std::string& name,
                                        const store::Request& request,
                                        const EngineCall& call,
                                        store::Response* response,
                                        Grant* grant) {
  if (absl::Status s = ValidateName(name); !s.ok()) return s;
  // A reservation is stored by the node that seals under it, with its
  // fence (the active's, as for any write); kNoFence only without HA.
  const FenceToken fence = call.write_fence;
  const std::string path = KeyPath(name);
  Grant local_grant;
  if (grant == nullptr) grant = &local_grant;

  const uint64_t generation = cache_.BeginWrite();
  std::shared_ptr<CachedKey> installed;
  bool erase = false;
  absl::Status status = RetryOnConflict([&]() -> absl::Status {
    *grant = Grant{};
    absl::StatusOr<Entry> entry = call.barrier->Get(path);
    const bool exists = entry.ok();
    if (!exists && entry.status().code() != absl::StatusCode::kNotFound) {
      return entry.status();
    }
    const uint64_t record_version = exists ? entry->version : 0;
    store::TransitKeyRecord record;
    RecordWiper wipe_record(&record);
    if (exists) {
      absl::Status parsed = ParseRecord(name, entry->value, &record);
      WipeString(entry->value);
      if (!parsed.ok()) return parsed;
    } else if (kind != WriteKind::kCreate) {
      return absl::NotFoundError(
          absl::StrCat("transit key \"", name, "\" does not exist"));
    }

    ASSIGN_OR_RETURN(
        Mutation mutation,
        Mutate(kind, name, exists, record_version, request, call, &record));
    if (!mutation.write.has_value()) {
      return AnswerUnchanged(record, record_version, response);
    }
    WriteOp& op = *mutation.write;
    absl::StatusOr<uint64_t> revision =
        call.barrier->Commit(absl::MakeConstSpan(&op, 1), fence);
    WipeString(op.value);
    if (!revision.ok()) {
      // Another write won (ABORTED: re-read and re-apply); or the commit
      // may have been applied with its answer lost: forget the cached
      // record so the next call reads storage.
      if (revision.status().code() != absl::StatusCode::kAborted) {
        erase = true;
      }
      return VersionedCommitStatus(revision.status());
    }
    *grant = mutation.grant;
    response->set_index(*revision);
    if (kind == WriteKind::kDelete) {
      erase = true;
      cache_.ForgetUsage(name);
      return absl::OkStatus();
    }
    absl::StatusOr<std::shared_ptr<CachedKey>> key =
        DecodeKey(record, *revision);
    if (!key.ok()) {
      erase = true;
      return key.status();
    }
    cache_.AttachUsage(**key);
    VersionUsage& usage = *(*key)->latest_usage;
    if (grant->end != 0 && grant->version == (*key)->latest_version &&
        grant->first >= usage.reserved.load(std::memory_order_relaxed)) {
      // Adopt the stored block (under reserve_mu_). grant->first is the
      // mark stored before this write, at or above every block this
      // node adopted for the version, so raising `used` first makes
      // every concurrent claim on `used` fail (its compare-exchange sees
      // a changed `used`, then used >= the old `reserved`) until
      // `reserved` is raised too. Any rest of the old block is skipped;
      // credits already taken from it stay usable (they are counted
      // below grant->first). (A block below
      // `reserved` could only come from a key of the same name this node
      // used before a delete it did not see; it stays unused.)
      usage.used.store(grant->first, std::memory_order_relaxed);
      usage.reserved.store(grant->end, std::memory_order_release);
    }
    if (kind != WriteKind::kReserve) {
      FillInfo(**key, response->mutable_transit_key());
    }
    (*key)->trusted_fence.store(call.active_fence, std::memory_order_relaxed);
    installed = *std::move(key);
    return absl::OkStatus();
  });
  if (status.code() == absl::StatusCode::kAborted) {
    status = absl::AbortedError(absl::StrCat(
        "transit key \"", name, "\" kept changing during the write (",
        kConflictAttempts, " attempts); retry"));
  }
  cache_.EndWrite(name, std::move(installed), erase, generation);
  return status;
}

// ------------------------------------------------------------- data path

absl::Status TransitEngine::Impl::SealOne(const CachedKey& key,
                                          absl::string_view plaintext,
                                          absl::string_view context,
                                          std::string* out) {
  const uint32_t version = key.latest_version;
  const VersionCipher* cipher = key.cipher(version);
  if (cipher == nullptr || version < key.min_encryption_version) {
    return absl::InternalError("transit key has no usable latest version");
  }
  // Raw: nonce || ciphertext || tag, built on the stack when small.
  const size_t raw_size = kNonceBytes + plaintext.size() + kTagBytes;
  uint8_t stack_raw[kNonceBytes + 1024 + kTagBytes];
  std::unique_ptr<uint8_t[]> heap_raw;
  uint8_t* raw = stack_raw;
  if (raw_size > sizeof(stack_raw)) {
    heap_raw.reset(new uint8_t[raw_size]);
    raw = heap_raw.get();
  }
  if (absl::Status s = nonces_.Draw(raw); !s.ok()) return s;

  if (absl::Status s = cipher->Seal(
          absl::MakeConstSpan(raw, kNonceBytes), plaintext, context,
          absl::MakeSpan(raw + kNonceBytes, raw_size - kNonceBytes));
      !s.ok()) {
    return s;
  }
  transit::FormatCiphertext(version, raw, raw_size, out);
  return absl::OkStatus();
}

absl::Status TransitEngine::Impl::OpenOne(const CachedKey& key,
                                          absl::string_view ciphertext,
                                          absl::string_view context,
                                          std::string* out, uint32_t* version) {
  std::string raw;
  RETURN_IF_ERROR(transit::ParseCiphertext(
      ciphertext, options_.max_plaintext_bytes + kNonceBytes + kTagBytes,
      version, &raw));
  if (*version > key.latest_version) {
    return absl::NotFoundError(absl::StrCat("key version ", *version,
                                            " does not exist (latest is ",
                                            key.latest_version, ")"));
  }
  if (*version < key.min_decryption_version) {
    return absl::PermissionDeniedError(
        absl::StrCat("key version ", *version,
                     " is below the key's minimum decryption version ",
                     key.min_decryption_version));
  }
  const VersionCipher* cipher = key.cipher(*version);
  const uint8_t* in = reinterpret_cast<const uint8_t*>(raw.data());
  out->resize(raw.size() - kNonceBytes - kTagBytes);
  if (!cipher
           ->Open(absl::MakeConstSpan(in, kNonceBytes),
                  absl::string_view(raw).substr(kNonceBytes), context,
                  absl::MakeSpan(reinterpret_cast<uint8_t*>(out->data()),
                                 out->size()))
           .ok()) {
    // Open wiped the buffer; clear it too.
    WipeString(*out);
    return absl::InvalidArgumentError(
        "ciphertext does not authenticate under this key and context");
  }
  return absl::OkStatus();
}

absl::Status TransitEngine::Impl::CheckData(store::Request::OpCase op,
                                            absl::string_view name,
                                            size_t items,
                                            const EngineCall& call) {
  if (absl::Status s = ValidateName(name); !s.ok()) return s;
  if (items == 0) return absl::InvalidArgumentError("batch has no items");
  if (items > options_.max_batch_items) {
    return absl::InvalidArgumentError(absl::StrCat("batch has ", items,
                                                   " items; the limit is ",
                                                   options_.max_batch_items));
  }
  if (op != store::Request::kTransitDecrypt && !MayReserve(call)) {
    return NoReservationError();
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const CachedKey>> TransitEngine::Impl::BeginData(
    store::Request::OpCase op, absl::string_view name, size_t items,
    const EngineCall& call) {
  RETURN_IF_ERROR(CheckData(op, name, items, call));
  return cache_.Lookup(name, call);
}

absl::Status TransitEngine::Impl::DataItem(
    store::Request::OpCase op, const EngineCall& call,
    std::shared_ptr<const CachedKey>* key, absl::string_view input,
    absl::string_view context, std::string* ciphertext, std::string* plaintext,
    uint32_t* version, absl::Status* item_status) {
  absl::Status& s = *item_status;
  if (op == store::Request::kTransitEncrypt) {
    if (input.size() > options_.max_plaintext_bytes) {
      s = absl::InvalidArgumentError(
          absl::StrCat("plaintext is larger than the limit of ",
                       options_.max_plaintext_bytes, " bytes"));
      return absl::OkStatus();
    }
    // A failed reservation fails the request: nothing more is sealed.
    RETURN_IF_ERROR(ClaimEncryption(call, key));
    s = SealOne(**key, input, context, ciphertext);
    *version = (*key)->latest_version;
  } else {
    s = OpenOne(**key, input, context, plaintext, version);
    if (s.ok() && op == store::Request::kTransitRewrap) {
      // Opened under the snapshot taken before the claim, which may
      // replace it (a rotation): that only ever moves forward.
      if (absl::Status c = ClaimEncryption(call, key); !c.ok()) {
        WipeString(*plaintext);
        plaintext->clear();
        return c;
      }
      s = SealOne(**key, *plaintext, context, ciphertext);
      WipeString(*plaintext);
      plaintext->clear();
      *version = (*key)->latest_version;
    }
  }
  if (!s.ok()) {
    if (plaintext != nullptr) plaintext->clear();  // OpenOne wiped it
    if (ciphertext != nullptr) ciphertext->clear();
  }
  return absl::OkStatus();
}

absl::Status TransitEngine::Impl::DataBatch(
    store::Request::OpCase op, const store::TransitBatchRequest& batch,
    const EngineCall& call, store::Response* response) {
  ASSIGN_OR_RETURN(std::shared_ptr<const CachedKey> key,
                   BeginData(op, batch.name(), batch.items_size(), call));
  store::TransitBatchResult* result = response->mutable_transit_batch();
  result->mutable_items()->Reserve(batch.items_size());
  // A rewrap's plaintext, between its open and its seal (wiped by DataItem).
  std::string rewrapped;
  for (const store::TransitItem& item : batch.items()) {
    store::TransitResultItem* out = result->add_items();
    const bool decrypt = op == store::Request::kTransitDecrypt;
    uint32_t version = 0;
    absl::Status item_status;
    RETURN_IF_ERROR(
        DataItem(op, call, &key,
                 op == store::Request::kTransitEncrypt ? item.plaintext()
                                                       : item.ciphertext(),
                 item.context(), decrypt ? nullptr : out->mutable_ciphertext(),
                 decrypt ? out->mutable_plaintext() : &rewrapped, &version,
                 &item_status));
    if (!item_status.ok()) {
      SetItemError(item_status, out);
      continue;
    }
    out->set_key_version(version);
  }
  return absl::OkStatus();
}

absl::Status TransitEngine::Impl::ExecuteOne(
    store::Request::OpCase op, absl::string_view name, absl::string_view input,
    absl::string_view context, const EngineCall& call, std::string* out,
    absl::Status* item_status) {
  out->clear();
  *item_status = absl::OkStatus();
  if (op != store::Request::kTransitEncrypt &&
      op != store::Request::kTransitDecrypt &&
      op != store::Request::kTransitRewrap) {
    return absl::InvalidArgumentError("not a transit data request");
  }
  if (call.barrier == nullptr) {
    return absl::InvalidArgumentError("engine call has no barrier");
  }
  if (call.barrier->sealed()) {
    return absl::FailedPreconditionError("barrier is sealed");
  }
  const bool decrypt = op == store::Request::kTransitDecrypt;
  // The hot path: an encrypt or decrypt of at most kUncountedMaxInputBytes
  // that passes the data path's checks (CheckData; for an encrypt, also
  // the plaintext limit DataItem checks), with a key the cache trusts under
  // this call's fence and, for an encrypt, a claim from the block already
  // reserved, all on the cached entry without a counted reference
  // (WithTrusted), so under the cache's reader lock: the size bound keeps
  // that to a few microseconds, which the cache's writers (a reservation,
  // a seal's Clear) wait at most. Anything else (a larger input, a block
  // used up, a key to load or re-validate, a rewrap, a refusal to explain)
  // takes the path below, which answers as before.
  // (The checks run once: a call the fast path does not serve goes on
  // with their answer to the key's Lookup, as BeginData would.)
  const absl::Status checked = CheckData(op, name, 1, call);
  if (checked.ok() && op != store::Request::kTransitRewrap &&
      input.size() <= kUncountedMaxInputBytes &&
      (decrypt || input.size() <= options_.max_plaintext_bytes)) {
    const bool served =
        cache_.WithTrusted(name, call, [&](const CachedKey& key) {
          if (!decrypt && (key.latest_usage == nullptr ||
                           !key.latest_usage->Claim(claim_batch_))) {
            return false;
          }
          uint32_t version = 0;
          *item_status = decrypt ? OpenOne(key, input, context, out, &version)
                                 : SealOne(key, input, context, out);
          if (!item_status->ok()) out->clear();  // OpenOne wiped it
          return true;
        });
    if (served) return absl::OkStatus();
  }
  RETURN_IF_ERROR(checked);
  ASSIGN_OR_RETURN(std::shared_ptr<const CachedKey> key,
                   cache_.Lookup(name, call));
  std::string rewrapped;
  uint32_t version = 0;
  return DataItem(op, call, &key, input, context, decrypt ? nullptr : out,
                  decrypt ? out : &rewrapped, &version, item_status);
}

absl::Status TransitEngine::Impl::Execute(const store::Request& request,
                                          const EngineCall& call,
                                          store::Response* response) {
  if (call.barrier == nullptr) {
    return absl::InvalidArgumentError("engine call has no barrier");
  }
  if (call.barrier->sealed()) {
    return absl::FailedPreconditionError("barrier is sealed");
  }
  const store::TransitBatchRequest* batch = nullptr;
  switch (request.op_case()) {
    case store::Request::kTransitCreateKey: {
      MutexLock lock(&reserve_mu_);  // it stores the first block
      return Write(WriteKind::kCreate, request.transit_create_key().name(),
                   request, call, response);
    }
    case store::Request::kTransitRotateKey: {
      MutexLock lock(&reserve_mu_);  // it stores the new version's block
      return Write(WriteKind::kRotate, request.transit_rotate_key().name(),
                   request, call, response);
    }
    case store::Request::kTransitConfigKey:
      return Write(WriteKind::kConfig, request.transit_config_key().name(),
                   request, call, response);
    case store::Request::kTransitDeleteKey:
      return Write(WriteKind::kDelete, request.transit_delete_key().name(),
                   request, call, response);
    case store::Request::kTransitReadKey: {
      const std::string& name = request.transit_read_key().name();
      if (absl::Status s = ValidateName(name); !s.ok()) return s;
      ASSIGN_OR_RETURN(std::shared_ptr<const CachedKey> key,
                       cache_.Lookup(name, call));
      FillInfo(*key, response->mutable_transit_key());
      return absl::OkStatus();
    }
    case store::Request::kTransitEncrypt:
      batch = &request.transit_encrypt();
      break;
    case store::Request::kTransitDecrypt:
      batch = &request.transit_decrypt();
      break;
    case store::Request::kTransitRewrap:
      batch = &request.transit_rewrap();
      break;
    default:
      return absl::InvalidArgumentError("not a transit request");
  }
  absl::Status status = DataBatch(request.op_case(), *batch, call, response);
  if (!status.ok() && response->has_transit_batch()) {
    // No partial results next to a request-level error.
    for (store::TransitResultItem& item :
         *response->mutable_transit_batch()->mutable_items()) {
      WipeString(*item.mutable_plaintext());
      WipeString(*item.mutable_ciphertext());
    }
    response->clear_transit_batch();
  }
  return status;
}

// ------------------------------------------------------------- TransitEngine

TransitEngine::TransitEngine(const TransitOptions& options)
    : impl_(std::make_unique<Impl>(options)) {}
TransitEngine::~TransitEngine() = default;

absl::Status TransitEngine::Execute(const store::Request& request,
                                    const EngineCall& call,
                                    store::Response* response) {
  return impl_->Execute(request, call, response);
}

absl::Status TransitEngine::ExecuteOne(store::Request::OpCase op,
                                       absl::string_view name,
                                       absl::string_view input,
                                       absl::string_view context,
                                       const EngineCall& call, std::string* out,
                                       absl::Status* item_status) {
  return impl_->ExecuteOne(op, name, input, context, call, out, item_status);
}

void TransitEngine::ClearCache() { impl_->ClearCache(); }

}  // namespace strongbox
