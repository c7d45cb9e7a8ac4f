// Barrier: the encryption layer between strongbox and its Backend. Every
// value strongbox stores passes through it sealed with AES-256-GCM, and it
// opens only when a threshold of unseal key holders present their shares.
//
// Key hierarchy (all records are protobuf messages, lib/seal/records.proto):
//   unseal key  — 32 random bytes, never stored; handed out once at
//                 Initialize as Shamir shares (strongbox/shamir.h), or as
//                 the key itself when shares = threshold = 1.
//   root key    — 32 random bytes, stored at <core_prefix>root-key sealed
//                 under the unseal key.
//   keyring     — the data-encryption keys, one per *term* (1, 2, ...),
//                 stored at <core_prefix>keyring sealed under the root key.
//                 Rotate adds a term; new writes use the newest term, old
//                 terms keep opening old entries.
//   seal config — shares, threshold, at <core_prefix>seal-config (plain).
//
// Stored value format (data path):
//   term (4 bytes, big-endian) | version byte (1) | nonce (12) |
//   AES-256-GCM ciphertext | tag (16)
// The additional data is the storage path, so a ciphertext moved to another
// path fails to open; any altered bit or truncation fails too: DATA_LOSS,
// never garbage, never partial output. A term this barrier lacks triggers
// one ReloadKeyring (a standby following a rotation), then DATA_LOSS.
//
// Nonces: 96 bits drawn at random from the crypto provider's RNG (BoringSSL
// or OpenSSL 3, lib/crypto) for every write, through a small per-barrier
// buffer refilled in batches (one RNG call costs about three 64-byte
// seals). The buffer is never reused across fork(): every draw checks the
// process id and a fork generation (pthread_atfork), and the buffer is also
// marked MADV_WIPEONFORK when the kernel provably honours it. Every byte
// handed out is overwritten, so no nonce is issued twice by one process.
//
// Message limit per key: 2^32 writes per term. With random 96-bit nonces
// the chance that two of n messages under one key share a nonce is about
// n^2 / 2^97, so 2^32 messages keep it below 2^-32 (NIST SP 800-38D's
// bound for random GCM nonces); past that, a repeat becomes likely enough
// to matter, and a repeat leaks the XOR of two plaintexts and the key's
// authentication subkey. Rotate() before a term reaches 2^32 writes; the
// barrier does not count them yet (counting and automatic rotation come
// with the hardening work).
//
// Codes: FAILED_PRECONDITION — sealed, not initialized, already initialized,
// or a fenced write refused by the backend; INVALID_ARGUMENT — bad
// parameters, a malformed share, a path under core_prefix on the data path,
// or shares that do not open the stored root key ("unseal key does not open
// the root key": the operator presented wrong or foreign shares; progress is
// reset and the barrier stays sealed); DATA_LOSS — a stored record or
// ciphertext fails authentication or parsing; UNAVAILABLE and others pass
// through from the backend. No message ever contains key or share bytes.
//
// Sealed means no key material in memory: Seal() wipes every key and
// destroys the AEAD keys, whose providers wipe the key schedules. Key bytes
// live in SecretBytes (strongbox/secret_bytes.h), mlock()ed when the OS allows.
//
// Ownership: the caller owns the Backend, which must outlive the Barrier.
// Thread-safety: every method is safe to call concurrently. The data path
// (Get/Put/Delete/List/Commit) takes only a shared (reader) lock on the
// keyring; seal operations take it exclusively.
#ifndef STRONGBOX_BARRIER_H_
#define STRONGBOX_BARRIER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "strongbox/backend.h"

namespace strongbox {

struct SealStatus {
  bool initialized = false;
  bool sealed = true;
  int threshold = 0;
  int shares = 0;
  int progress = 0;   // distinct shares presented toward the next unseal
  uint32_t term = 0;  // the newest key term (0 while sealed or uninitialized)
};

struct BarrierOptions {
  // The storage the barrier reads and writes. Not owned. REQUIRED.
  Backend* backend = nullptr;
  // Storage prefix for the seal config, wrapped root key and keyring; the
  // data paths under it are refused by Put/Get/Delete/List/Commit with
  // INVALID_ARGUMENT. Must be a valid List() prefix (ends with '/').
  // Default: "core/".
  std::string core_prefix = "core/";
};

class Barrier {
 public:
  // INVALID_ARGUMENT if `options.backend` is null or core_prefix is bad.
  // Touches no storage; the barrier starts sealed.
  static absl::StatusOr<std::unique_ptr<Barrier>> Create(
      const BarrierOptions& options);
  ~Barrier();
  Barrier(const Barrier&) = delete;
  Barrier& operator=(const Barrier&) = delete;

  // ---- Seal operations. `fence` is carried by every backend write they make.

  // On a backend with no seal records: generates the unseal key, root key
  // and keyring (term 1), stores the records in one atomic commit, and
  // returns the unseal key shares — exactly once; they are never stored.
  // The barrier stays SEALED (as Vault does): unseal with the shares.
  // shares = threshold = 1 returns the 32-byte unseal key itself.
  // Requires 1 <= threshold <= shares <= 255 and threshold >= 2 unless
  // shares == 1. FAILED_PRECONDITION if already initialized. A failed
  // commit writes nothing, so the call can simply be retried.
  absl::StatusOr<std::vector<std::string>> Initialize(
      int shares, int threshold, FenceToken fence = kNoFence);

  // Presents one share. Below the threshold, records it (duplicates are
  // ignored) and returns the progress. At the threshold, combines the
  // shares, opens the root key and keyring and unseals; on failure the
  // progress is reset and the barrier stays sealed (INVALID_ARGUMENT for
  // shares that do not open the root key, the backend's code for a backend
  // failure, DATA_LOSS for a corrupt keyring). A malformed share (wrong
  // length, or an x coordinate already presented with other bytes) is
  // refused with INVALID_ARGUMENT and the progress kept. OK with sealed =
  // false if already unsealed. FAILED_PRECONDITION if not initialized.
  // ABORTED if Seal() ran concurrently with the final share.
  absl::StatusOr<SealStatus> Unseal(absl::string_view share);
  // Discards the shares presented so far (wiping them).
  void ResetUnsealProgress();

  // Wipes every key and the unseal progress, then calls every seal
  // listener. Idempotent.
  void Seal();
  bool sealed() const;

  // Registers `listener` to be called on the sealing thread each time
  // Seal() runs, after the barrier's own keys are wiped and before Seal()
  // returns: layers that cache key material derived through the barrier
  // (the Transit engine) drop it at the same moment (invariant 2). The
  // listener must not call Seal(). Returns an id for RemoveSealListener.
  int AddSealListener(std::function<void()> listener);
  // After it returns, the listener is not running and will not be called.
  void RemoveSealListener(int id);

  // Reads the seal config from the backend for initialized / threshold /
  // shares; the rest is this barrier's state.
  absl::StatusOr<SealStatus> Status();

  // Replaces the unseal key: `current_shares` (at least the threshold of
  // them) must open the stored root key; the root key is re-wrapped under
  // a fresh unseal key split into `new_shares` / `new_threshold` (same rules
  // as Initialize). Old shares stop working; no data is rewritten. Works
  // sealed or unsealed and leaves the seal state unchanged.
  absl::StatusOr<std::vector<std::string>> Rekey(
      absl::Span<const std::string> current_shares, int new_shares,
      int new_threshold, FenceToken fence = kNoFence);

  // Adds a key term used for all new writes and stores the keyring
  // (guarded by a version precondition: ABORTED if another node rotated
  // concurrently — ReloadKeyring and retry). Returns the new term.
  // FAILED_PRECONDITION when sealed.
  absl::StatusOr<uint32_t> Rotate(FenceToken fence = kNoFence);

  // Re-reads the stored keyring (a standby following a rotation).
  // FAILED_PRECONDITION when sealed.
  absl::Status ReloadKeyring();

  // ---- Data path. FAILED_PRECONDITION when sealed; DATA_LOSS on tamper;
  // INVALID_ARGUMENT for paths under core_prefix.

  // Entry.value is the plaintext, Entry.version the backend version.
  absl::StatusOr<Entry> Get(absl::string_view path);
  absl::StatusOr<uint64_t> Put(absl::string_view path,
                               absl::string_view plaintext,
                               FenceToken fence = kNoFence);
  absl::StatusOr<uint64_t> Delete(absl::string_view path,
                                  FenceToken fence = kNoFence);
  // Immediate children (Backend::List semantics). At the root, the
  // core_prefix folder is left out.
  absl::StatusOr<std::vector<std::string>> List(absl::string_view prefix);
  // Atomic batch: kPut ops carry plaintext in WriteOp::value and are sealed
  // before commit; preconditions pass through.
  absl::StatusOr<uint64_t> Commit(absl::Span<const WriteOp> ops,
                                  FenceToken fence = kNoFence);

  Backend* backend() const;

  class Impl;  // lib/seal/barrier_impl.h

 private:
  explicit Barrier(std::unique_ptr<Impl> impl);
  friend class BarrierTestPeer;
  std::unique_ptr<Impl> impl_;
};

}  // namespace strongbox

#endif  // STRONGBOX_BARRIER_H_
