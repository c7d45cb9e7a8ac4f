// TransitEngine: encryption as a service — named AES-256-GCM keys with
// versions, stored through the barrier under "transit/keys/<name>".
//
// Decrypt changes no storage, so performance standbys serve it from a key
// cache; see EngineCall::active_fence for when the cache is trusted and
// when it is re-validated against storage (a standby never fails to
// decrypt a version newer than its cache).
//
// Encryption counting (issue 9 item 13; the barrier's scheme, barrier.h):
// with random 96-bit nonces a key version stays below the 2^-32 collision
// bound (NIST SP 800-38D) for only about 2^32 encryptions, so every
// encryption (encrypt and rewrap items) is counted per key version,
// cluster-wide, in storage. Each version's record holds a reservation
// high-water mark (TransitKeyVersionRecord.reserved_encryptions). Before
// sealing values under the latest version, the active stores a larger mark
// (one block of TransitOptions::encryption_reservation) with a fenced,
// versioned write of the key record (the path rotate and config use; create
// and rotate store a new version with the writer's first block), and seals
// only inside blocks it stored: a crash or restart loses at most the unused
// rest of one block and never under-counts; a new engine continues above
// the stored mark. Threads that use up a block together store one new
// block (a per-engine lock held across that one write). A claim is made on
// the version of the key snapshot the value is sealed with, so count and
// version agree. When
// the mark reaches max_encryptions_per_version the same write rotates the
// key instead (the new version, with its first block, is stored before
// anything is sealed under it); old ciphertexts keep decrypting. A version
// stored before counting existed counts as used up (transit_records.proto).
// A node drops its blocks when its cache is cleared (seal, leadership
// change): their rest is skipped, never reused.
//
// Who may encrypt: only a node that can store a reservation, i.e. a call
// with a write fence (the active), or any call on a backend without HA.
// Encrypt and rewrap are therefore writes in SecretStore's table: a
// performance standby forwards them to the active (it holds no block and
// cannot write storage), a plain standby redirects. A deposed active's
// reservation write is refused by the backend (a stale fence, passed
// through as FAILED_PRECONDITION with IsStaleFence); it keeps sealing only
// inside a block it stored while it was the leader.
//
// Cache rule (the epoch protocol, documented in transit_key_cache.h): an
// entry is trusted without touching storage only when call.active_fence !=
// kNoFence and the entry was written, loaded or re-validated under that
// same fence with no write on this engine in flight meanwhile. Any other
// call (a standby; an earlier term) reads the record's backend version (no
// decryption) and re-decodes only if it changed. A write whose outcome is
// unknown drops the cached entry.
//
// Ciphertext (transit_ciphertext.h): "strongbox:v<N>:" + base64(nonce(12)
// || ciphertext || tag(16)), canonical standard base64; the additional data
// binds the key name, N and the item's context. Encryption always uses the
// latest version. Key records and what each write makes of them:
// transit_key_record.h; writes retry on conflicts in RetryOnConflict
// (retry.h).
//
// Codes. Request level (the whole call fails, no items): INVALID_ARGUMENT
// for a bad name (1..max_name_bytes of [A-Za-z0-9_.-], not "." or ".."), an
// empty batch or more than max_batch_items, a non-transit request;
// NOT_FOUND for a missing key; FAILED_PRECONDITION for a sealed barrier, a
// stale fence at the backend, or delete without deletion_allowed;
// INVALID_ARGUMENT for config minimums outside 1..latest or
// min_encryption < min_decryption; ABORTED when a write lost the race
// kConflictAttempts times (lib/store/retry.h); DATA_LOSS for a stored record
// that fails authentication or parsing; UNAVAILABLE and others pass through
// from the backend. Create of an existing key is OK and changes nothing (as in
// Vault). Per item (TransitResultItem.code): INVALID_ARGUMENT for a plaintext
// over max_plaintext_bytes, a malformed ciphertext, or one that does not
// authenticate (wrong key, version, context, or tampered; never partial
// plaintext); NOT_FOUND for a version above the key's latest;
// PERMISSION_DENIED for a version below min_decryption_version (refused by
// the key's policy). Encrypt and rewrap, request level: UNAVAILABLE when
// the call has no write fence on a backend with HA ("encrypt on the active
// node"), or when storing a reservation failed or its outcome is unknown
// (retry; nothing further was sealed, and no result is returned);
// FAILED_PRECONDITION when the latest version is used up and rotation is
// impossible (rotate_at_limit is false, or the key has UINT32_MAX
// versions), or for a stale fence (IsStaleFence).
//
// Thread-safe. Key bytes never leave the engine: not in responses, logs or
// error messages.
#ifndef STRONGBOX_LIB_STORE_TRANSIT_ENGINE_H_
#define STRONGBOX_LIB_STORE_TRANSIT_ENGINE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "lib/store/engine.h"
#include "strongbox/requests.pb.h"

namespace strongbox {

struct TransitOptions {
  // Longest key name, bytes ([A-Za-z0-9_.-] only). Default: 128.
  size_t max_name_bytes = 128;
  // Most items in one batch. Default: 1000.
  size_t max_batch_items = 1000;
  // Largest plaintext per item. Default: 1 MiB.
  size_t max_plaintext_bytes = 1 << 20;
  // Encryptions (encrypt and rewrap items) made with one key version,
  // cluster-wide and across restarts (AES-GCM with random nonces), before
  // the key is rotated automatically (or, without rotate_at_limit, before
  // encryptions are refused). Counted in storage, in reservation blocks.
  // REQUIRES: >= 1. Small values are for tests. Default: 3,865,470,566
  // (Vault's limit).
  uint64_t max_encryptions_per_version = 3865470566u;
  // Encryptions reserved in storage per key-record write: the most a crash
  // can skip, and how often the active pays one record write per key.
  // REQUIRES: >= 1 (capped at max_encryptions_per_version). Default:
  // 1,048,576 (as BarrierOptions::encryption_reservation).
  uint64_t encryption_reservation = uint64_t{1} << 20;
  // At the limit, rotate the key (true) or refuse encryptions with
  // FAILED_PRECONDITION until an operator rotates it (false). Default: true.
  bool rotate_at_limit = true;
};

class TransitEngine {
 public:
  explicit TransitEngine(const TransitOptions& options = {});
  ~TransitEngine();
  TransitEngine(const TransitEngine&) = delete;
  TransitEngine& operator=(const TransitEngine&) = delete;

  // Executes one transit_* request into `response` (its result field and,
  // for writes, its index). Returns the request's status; per-item batch
  // failures are reported in the items and do not fail the call.
  absl::Status Execute(const store::Request& request, const EngineCall& call,
                       store::Response* response);

  // One item of transit_encrypt, transit_decrypt or transit_rewrap (`op`)
  // without request or response messages: SecretStore's one-item calls.
  // `input` is the plaintext (encrypt) or the ciphertext (decrypt,
  // rewrap). The same checks, effects and codes as a one-item batch
  // through Execute: the request's status is returned, the item's own (a
  // TransitResultItem's code and error) is *item_status. *out receives the
  // ciphertext (encrypt, rewrap) or the plaintext (decrypt); it is cleared
  // first and left empty on any failure.
  absl::Status ExecuteOne(store::Request::OpCase op, absl::string_view name,
                          absl::string_view input, absl::string_view context,
                          const EngineCall& call, std::string* out,
                          absl::Status* item_status);

  // Drops every cached key (the node sealed or lost leadership) and this
  // node's unused encryption reservations (skipped, never reused).
  void ClearCache();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace strongbox

#endif  // STRONGBOX_LIB_STORE_TRANSIT_ENGINE_H_
