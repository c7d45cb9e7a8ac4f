// TransitEngine: encryption as a service — named AES-256-GCM keys with
// versions, stored through the barrier under "transit/keys/<name>".
//
// Encrypt, decrypt and rewrap change no storage, so performance standbys
// serve them from a key cache; see EngineCall::active_fence for when the
// cache is trusted and when it is re-validated against storage (a standby
// never encrypts with a version below the minimum, nor fails to decrypt a
// version newer than its cache).
//
// Cache rule: an entry is trusted without touching storage only when
// call.active_fence != kNoFence and the entry was written, loaded or
// re-validated under that same fence with no write on this engine in flight
// meanwhile. Any other call (a standby; an earlier term) reads the record's
// backend version (no decryption) and re-decodes only if it changed, so
// every such call is as fresh as the backend (which also satisfies
// min_index). A write whose outcome is unknown drops the cached entry.
//
// Ciphertext: "strongbox:v<N>:" + base64(nonce(12) || ciphertext || tag(16)),
// canonical standard base64; the additional data binds the key name, N and
// the item's context. Encryption always uses the latest version.
//
// Codes. Request level (the whole call fails, no items): INVALID_ARGUMENT
// for a bad name (1..max_name_bytes of [A-Za-z0-9_.-], not "." or ".."), an
// empty batch or more than max_batch_items, a non-transit request;
// NOT_FOUND for a missing key; FAILED_PRECONDITION for a sealed barrier, a
// stale fence at the backend, or delete without deletion_allowed;
// INVALID_ARGUMENT for config minimums outside 1..latest or
// min_encryption < min_decryption; ABORTED when a write lost the race five
// times; DATA_LOSS for a stored record that fails authentication or
// parsing; UNAVAILABLE and others pass through from the backend. Create of
// an existing key is OK and changes nothing (as in Vault). Per item
// (TransitResultItem.code): INVALID_ARGUMENT for a plaintext over
// max_plaintext_bytes, a malformed ciphertext, or one that does not
// authenticate (wrong key, version, context, or tampered; never partial
// plaintext); NOT_FOUND for a version above the key's latest;
// PERMISSION_DENIED for a version below min_decryption_version (refused by
// the key's policy); FAILED_PRECONDITION for an encrypt or rewrap item once
// this node made max_encryptions_per_version encryptions with the latest
// version (rotate the key).
//
// Thread-safe. Key bytes never leave the engine: not in responses, logs or
// error messages.
#ifndef STRONGBOX_LIB_STORE_TRANSIT_ENGINE_H_
#define STRONGBOX_LIB_STORE_TRANSIT_ENGINE_H_

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "lib/store/engine.h"
#include "lib/store/requests.pb.h"

namespace strongbox {

struct TransitOptions {
  // Longest key name, bytes ([A-Za-z0-9_.-] only). Default: 128.
  size_t max_name_bytes = 128;
  // Most items in one batch. Default: 1000.
  size_t max_batch_items = 1000;
  // Largest plaintext per item. Default: 1 MiB.
  size_t max_plaintext_bytes = 1 << 20;
  // Encryptions (encrypt and rewrap items) one node makes with one key
  // version before refusing more (AES-GCM with random nonces): past it,
  // items fail with FAILED_PRECONDITION until the key is rotated. Encrypt
  // is a read that performance standbys serve, so the count is kept per
  // node in memory, not stored: it survives a cleared cache (seal,
  // leadership change) but not a restart, and each node counts its own.
  // Small values are for tests. Default: 3,865,470,566 (Vault's limit).
  uint64_t max_encryptions_per_version = 3865470566u;
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

  // Drops every cached key (the node sealed or lost leadership).
  void ClearCache();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace strongbox

#endif  // STRONGBOX_LIB_STORE_TRANSIT_ENGINE_H_
