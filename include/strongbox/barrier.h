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
//   pending rekey — at <core_prefix>rekey-pending while a rekey waits for
//                 CompleteRekey: the new config and the root key sealed
//                 under the new unseal key.
//
// Auto-unseal (BarrierOptions::key_wrapper set; strongbox/key_wrapper.h):
//   Initialize makes a root key and a *recovery key*; the root key is stored
//   wrapped by the host's KeyWrapper at <core_prefix>root-key-wrapped, the
//   recovery key wrapped by it at <core_prefix>recovery-key-wrapped (so
//   recovery shares can be checked: VerifyRecoveryShares), and the recovery
//   key is handed out as Shamir shares. The seal config says auto and
//   counts the recovery shares. AutoUnseal() unwraps the root key and
//   unseals, no shares involved. Recovery shares do not unseal unless the
//   barrier was initialized with BarrierOptions::escrow: then
//   <core_prefix>root-key also holds the root key sealed under the recovery
//   key (exactly the Shamir layout), so Unseal(recovery share) works when
//   the wrapper's key is lost for good. The trade-off of escrow: whoever
//   gathers a threshold of recovery shares (and a copy of the storage) can
//   read everything without the HSM, as with Shamir; without escrow, losing
//   the HSM key loses the data, and the recovery shares only authorize.
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
// Message limit per key: with random 96-bit nonces the chance that two of
// n messages under one key share a nonce is about n^2 / 2^97, so a term
// stays below the 2^-32 bound (NIST SP 800-38D) only for about 2^32
// encryptions; a repeat leaks the XOR of two plaintexts and the key's
// authentication subkey. So the barrier counts encryptions per term and
// rotates by itself at BarrierOptions::max_encryptions_per_term (Vault's
// 3,865,470,566 by default). The count is persisted in the keyring record
// in blocks: before sealing the next values the barrier stores a larger
// reservation (one keyring write per block), so a crash or restart loses at
// most the unused rest of a block and never under-counts. The write that
// needs a new block or a rotation carries that write's fence, and fails
// with the keyring write's error (ABORTED after repeated races with
// another node, UNAVAILABLE, a stale fence) without storing the value.
//
// Codes: FAILED_PRECONDITION — sealed, not initialized, already initialized,
// a fenced write refused by the backend (IsStaleFence), an unfenced write
// on a backend with HA (not IsStaleFence), or no rekey pending;
// INVALID_ARGUMENT — bad parameters, a malformed share, a path under
// core_prefix on the data path, or shares that do not open the stored root key
// ("unseal key does not open the root key": the operator presented wrong or
// foreign shares; progress is reset and the barrier stays sealed); DATA_LOSS —
// a stored record or ciphertext fails authentication or parsing; UNAVAILABLE
// and others pass through from the backend. No message ever contains key or
// share bytes.
//
// Sealed means no key material in memory: Seal() wipes every key and
// destroys the AEAD keys, whose providers wipe the key schedules. Key bytes
// live in SecretBytes (strongbox/secret_bytes.h), mlock()ed when the OS allows.
// No operation holds a copy of a key across backend I/O (records are read
// before keys are derived, and written after the copies are wiped), so a
// Seal() while the backend hangs leaves no key behind, and an operation
// that resumes afterwards finds the barrier sealed and installs nothing.
//
// Fencing: on a backend with HA (Backend::ha() non-null) every write but
// Initialize's — Put, Delete, Commit, Rekey, CompleteRekey, CancelRekey,
// Rotate — must carry a fence (the writer's leadership grant); without one
// it is refused with FAILED_PRECONDITION and nothing is written (a node
// that is not the leader must never write, D4). A backend without HA takes
// kNoFence.
//
// Ownership: the caller owns the Backend, which must outlive the Barrier.
// Thread-safety: every method is safe to call concurrently. The data path
// (Get/Put/Delete/List/Commit) takes only a shared (reader) lock on the
// keyring; seal operations take it exclusively. Once per reservation block
// (or at a rotation) a writer also takes the seal-operation lock for one
// keyring write.
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
#include "strongbox/clock.h"

namespace strongbox {

struct SealStatus {
  bool initialized = false;
  bool sealed = true;
  int threshold = 0;
  int shares = 0;
  int progress = 0;   // distinct shares presented toward the next unseal
  uint32_t term = 0;  // the newest key term (0 while sealed or uninitialized)
  // A rekey is waiting for CompleteRekey (Status() only), and its config.
  bool rekey_pending = false;
  int rekey_shares = 0;
  int rekey_threshold = 0;
  // The stored seal: "shamir", or in auto mode the key wrapper's type()
  // ("auto" when this barrier has no wrapper). In auto mode threshold and
  // shares count the recovery shares.
  std::string seal_type = "shamir";
  bool auto_unseal = false;
  bool escrow = false;  // auto mode: recovery shares can unseal too
};

class KeyWrapper;

struct BarrierOptions {
  // The storage the barrier reads and writes. Not owned. REQUIRED.
  Backend* backend = nullptr;
  // Storage prefix for the seal config, wrapped root key and keyring; the
  // data paths under it are refused by Put/Get/Delete/List/Commit with
  // INVALID_ARGUMENT. Must be a valid List() prefix (ends with '/').
  // Default: "core/".
  std::string core_prefix = "core/";
  // Values sealed under one key term before the barrier rotates by itself
  // (AES-GCM with random nonces). REQUIRES: >= 1. Small values are for
  // tests. Default: 3,865,470,566 (Vault's limit).
  uint64_t max_encryptions_per_term = 3865470566u;
  // Encryptions reserved in storage per keyring write: the most a crash
  // can skip, and how often a writer pays one keyring write. REQUIRES:
  // >= 1 (capped at max_encryptions_per_term). Default: 1,048,576.
  uint64_t encryption_reservation = uint64_t{1} << 20;
  // Where the barrier reads the wall time it stores with each key term
  // (its creation date). Not owned; must outlive the barrier. Default
  // (nullptr): RealClock().
  Clock* clock = nullptr;
  // Auto-unseal: Initialize stores the root key wrapped by this wrapper and
  // returns recovery shares; AutoUnseal() unseals through it. Not owned;
  // must outlive the barrier. Default (nullptr): Shamir unseal only.
  KeyWrapper* key_wrapper = nullptr;
  // Auto mode only, read by Initialize: also store the root key sealed
  // under the recovery key (see "Auto-unseal" above for the trade-off).
  // Default: false.
  bool escrow = false;
};

// A value read by Barrier::GetInPlace: the stored bytes as the backend
// gave them, with the plaintext opened in place between the public header
// and tag. The reader owns it; it may keep one between reads so that the
// buffer's capacity is reused. The plaintext is wiped by Wipe(), by the
// next read into it, and by the destructor. Neither copied nor moved (a
// copy would be plaintext nobody wipes). Not thread-safe.
struct OpenedValue {
  OpenedValue() = default;
  OpenedValue(const OpenedValue&) = delete;
  OpenedValue& operator=(const OpenedValue&) = delete;
  ~OpenedValue() { Wipe(); }

  Entry stored;       // value: header, plaintext, tag; version: the backend's
  size_t offset = 0;  // the plaintext's place in stored.value
  size_t size = 0;

  // Empty unless a read put a plaintext here (and also if `stored` was
  // changed since).
  absl::string_view plaintext() const {
    const absl::string_view all(stored.value);
    if (offset > all.size()) return absl::string_view();
    return all.substr(offset, size);
  }
  // Wipes the plaintext and forgets it; the buffer stays for the next read.
  void Wipe();
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
  // shares == 1. FAILED_PRECONDITION if already initialized.
  // Auto mode (BarrierOptions::key_wrapper): the shares are recovery
  // shares; the root key and the recovery key are wrapped first, and the
  // one commit happens only after every wrap succeeded, so a wrapper
  // failure (its code passes through, the message prefixed "key wrapper: ")
  // stores nothing and the call can be retried. A failed
  // commit writes nothing, so the call can simply be retried.
  // Unknown outcome (the commit may have applied, and neither its answer
  // nor the read-back arrived; the error says "could not be confirmed"):
  // the shares are not returned, and the records may be stored under an
  // unseal key nobody holds. Nothing can have been stored under it, and
  // this barrier remembers the attempt (by its root key record, which is
  // ciphertext): calling Initialize again on the same barrier replaces
  // exactly that attempt and returns new shares. Any other initialization
  // is never replaced ("already initialized"). If the process dies in that
  // window, the backend holds an initialization nobody can unseal and no
  // data; delete the records under core_prefix by hand to start over.
  absl::StatusOr<std::vector<std::string>> Initialize(
      int shares, int threshold, FenceToken fence = kNoFence);

  // Auto mode: unwraps the stored root key through the key wrapper and
  // unseals. The wrapper's code passes through (UNAVAILABLE: retry later;
  // FAILED_PRECONDITION: its configuration, e.g. a wrong PIN), its message
  // prefixed "key wrapper: ". DATA_LOSS if the unwrapped key does not open
  // the keyring (a wrong key under the same id). FAILED_PRECONDITION
  // without a wrapper, when not initialized, or when the stored seal is
  // Shamir. OK (sealed = false) if already unsealed; ABORTED if Seal() ran
  // meanwhile.
  absl::StatusOr<SealStatus> AutoUnseal();

  // Auto mode: OK if `recovery_shares` (at least the threshold of them)
  // combine to the recovery key, checked against the wrapped copy (so the
  // wrapper must be reachable). INVALID_ARGUMENT below the threshold, for
  // malformed shares or shares that do not match; FAILED_PRECONDITION in
  // Shamir mode; the wrapper's code otherwise.
  absl::Status VerifyRecoveryShares(
      absl::Span<const std::string> recovery_shares);

  // Seal migration; works sealed or unsealed and leaves the seal state
  // as it is (an unsealed barrier keeps its keys). One atomic commit each;
  // both keep the operator's shares valid whatever its outcome, and a call
  // repeated after the migration applied answers OK (so an unknown outcome
  // is settled by calling again).
  //   MigrateToAuto: Shamir -> auto (needs BarrierOptions::key_wrapper):
  //     a threshold of the unseal shares must open the root key, which is
  //     then stored wrapped by the wrapper; the unseal key becomes the
  //     recovery key, so the unseal shares become the recovery shares.
  //     With BarrierOptions::escrow the Shamir root key record stays (as
  //     the escrow record), otherwise it is deleted.
  //   MigrateToShamir: auto -> Shamir (needs the wrapper, to unwrap): a
  //     threshold of recovery shares (checked against the wrapped recovery
  //     key) becomes the unseal shares; the wrapped records are deleted.
  // INVALID_ARGUMENT below the threshold or for shares that do not open /
  // match; ABORTED if the seal config changed meanwhile; the wrapper's code
  // (message "key wrapper: ...") if it fails; FAILED_PRECONDITION when not
  // initialized or without the wrapper needed.
  absl::Status MigrateToAuto(absl::Span<const std::string> unseal_shares,
                             FenceToken fence = kNoFence);
  absl::Status MigrateToShamir(absl::Span<const std::string> recovery_shares,
                               FenceToken fence = kNoFence);

  // Wrapper key rotation (auto mode), authorized by a threshold of the
  // recovery shares: once the host's wrapper has a new current key (and
  // still holds the old one), the stored root and recovery keys wrapped
  // under an older key (KeyWrapper::NeedsRewrap) are unwrapped and wrapped
  // under the current one, every wrap done before one commit guarded by
  // the records' versions. True if it rewrote anything, false if they were
  // already under the current key. A wrapper failing half way (its code,
  // "key wrapper: ...") or a failed commit stores nothing: the old blobs
  // keep unwrapping, retry. INVALID_ARGUMENT below the threshold or for
  // shares that do not match the recovery key; FAILED_PRECONDITION in
  // Shamir mode or without a wrapper; ABORTED if the seal config changed
  // meanwhile. Only after it applied may the old key leave the wrapper.
  absl::StatusOr<bool> RotateWrapperKey(
      absl::Span<const std::string> recovery_shares,
      FenceToken fence = kNoFence);
  // The same rewrap without the recovery shares: for a host that
  // authorizes the rotation itself. The HaCoordinator no longer calls it
  // (an operator rotates with RotateWrapperKey). False in Shamir mode or
  // without a wrapper.
  absl::StatusOr<bool> RewrapIfNeeded(FenceToken fence = kNoFence);

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
  // (the Transit engine) drop it at the same moment (D2). The
  // listener must not call Seal(). Returns an id for RemoveSealListener.
  int AddSealListener(std::function<void()> listener);
  // After it returns, the listener is not running and will not be called.
  void RemoveSealListener(int id);

  // Reads the seal config from the backend for initialized / threshold /
  // shares; the rest is this barrier's state.
  absl::StatusOr<SealStatus> Status();

  // Rekey is two-phase (Vault's require_verification), so no lost answer
  // can leave the root key under shares nobody holds (D7):
  //   1. Rekey: `current_shares` (at least the threshold of them) must open
  //      the stored root key; it is wrapped under a fresh unseal key split
  //      into `new_shares` / `new_threshold` (same rules as Initialize) and
  //      stored as the *pending* rekey; the new shares are returned. The
  //      current shares keep working; the new ones do not yet. A second
  //      Rekey replaces a pending one. Any failure (an unknown outcome
  //      included) leaves the current shares valid: retry Rekey.
  //   2. CompleteRekey: a threshold of the *new* shares must open the
  //      pending root key (proof they reached their holders), and that key
  //      must open the keyring; then the new config and root key replace the
  //      old in one commit and the pending record is removed. From then on
  //      only the new shares work. Unknown outcome: call it again with the
  //      same shares; once applied it answers OK (idempotent), so the
  //      caller, who holds the new shares, can always find out.
  //   CancelRekey drops the pending rekey; the current shares stay.
  //   FAILED_PRECONDITION if none is pending: a CompleteRekey whose answer
  //   was lost may have applied, so the new shares may be the only ones
  //   that open the root key; check with CompleteRekey(new shares) (OK if
  //   applied) or by unsealing with them before discarding any shares.
  //   Status() reports rekey_pending and the pending config.
  // Auto mode: the same two phases rekey the *recovery* key. Rekey needs a
  // threshold of the current recovery shares (checked against the wrapped
  // recovery key, so the wrapper must answer); the new recovery key is
  // wrapped by the wrapper (with escrow, the root key is also sealed under
  // it) and parked in the pending record. CompleteRekey needs a threshold
  // of the new recovery shares (matched against the pending wrapped key);
  // then the seal config, the wrapped recovery key and the escrow record
  // switch in one commit, and from then on only the new recovery shares
  // authorize anything (or unseal, with escrow). A wrapper failure in
  // either phase stores nothing (its code, message "key wrapper: ...").
  // A pending rekey made before a seal migration is refused by
  // CompleteRekey (FAILED_PRECONDITION): cancel it and rekey again.
  // No data is rewritten. All three work sealed or unsealed and leave the
  // seal state unchanged. Rekey: INVALID_ARGUMENT for bad parameters or
  // shares that do not open the root key, ABORTED if the seal config
  // changed meanwhile. CompleteRekey: INVALID_ARGUMENT for shares that do
  // not open the pending key, FAILED_PRECONDITION if no rekey is pending
  // (and the shares do not open the stored root key), DATA_LOSS if the
  // pending key does not open the keyring.
  absl::StatusOr<std::vector<std::string>> Rekey(
      absl::Span<const std::string> current_shares, int new_shares,
      int new_threshold, FenceToken fence = kNoFence);
  absl::Status CompleteRekey(absl::Span<const std::string> new_shares,
                             FenceToken fence = kNoFence);
  absl::Status CancelRekey(FenceToken fence = kNoFence);

  // Adds a key term used for all new writes and stores the keyring
  // (guarded by a version precondition: ABORTED if another node rotated
  // concurrently — ReloadKeyring and retry). Returns the new term.
  // FAILED_PRECONDITION when sealed, also when Seal() ran while the
  // keyring write was in flight (the new term is stored; it is loaded at
  // the next unseal).
  absl::StatusOr<uint32_t> Rotate(FenceToken fence = kNoFence);

  // Re-reads the stored keyring (a standby following a rotation).
  // FAILED_PRECONDITION when sealed.
  absl::Status ReloadKeyring();

  // ---- Data path. FAILED_PRECONDITION when sealed; DATA_LOSS on tamper;
  // INVALID_ARGUMENT for paths under core_prefix. Put/Commit: UNAVAILABLE
  // ("could not reserve encryptions") when storing the next encryption
  // reservation fails (the keyring kept changing, or its write's outcome is
  // unknown); the data write was then not attempted, and ABORTED is only
  // ever the caller's own precondition.

  // Entry.value is the plaintext, Entry.version the backend version.
  absl::StatusOr<Entry> Get(absl::string_view path);
  // Get into a buffer the reader keeps between reads (OpenedValue): the
  // value is opened where the backend put it, so a buffer large enough
  // from an earlier read is reused and the plaintext is not moved. Same
  // errors as Get; after one, `out` holds no plaintext (and an empty
  // plaintext()).
  absl::Status GetInPlace(absl::string_view path, OpenedValue* out);
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
  // The bytes sealing adds to a value (term, format, nonce, tag).
  static constexpr size_t kSealOverhead = 33;
  // Commit, sealing each kPut's value in its own buffer: the plaintext is
  // overwritten by the stored bytes, so no second buffer is made and no
  // plaintext copy is left to wipe. A value with kSealOverhead bytes of
  // spare capacity is sealed without reallocating; one without is moved
  // to a larger buffer first and the old one wiped. After a success, each
  // put's buffer, to its capacity, holds only its stored bytes and zeros.
  // After a failure a value may still hold plaintext (a refused path
  // leaves every value as given), so the caller wipes them; either way it
  // does not commit them again.
  absl::StatusOr<uint64_t> CommitInPlace(absl::Span<WriteOp> ops,
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
