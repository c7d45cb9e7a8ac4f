// Barrier::Impl — the implementation behind strongbox/barrier.h, visible to
// lib/seal, its tests (BarrierTestPeer) and benchmarks for the seams below.
#ifndef STRONGBOX_LIB_SEAL_BARRIER_IMPL_H_
#define STRONGBOX_LIB_SEAL_BARRIER_IMPL_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "lib/crypto/aead.h"
#include "lib/seal/nonce_pool.h"
#include "lib/seal/records.h"
#include "lib/util/mutex.h"
#include "strongbox/barrier.h"
#include "strongbox/secret_bytes.h"

namespace strongbox {
namespace seal {

// Stored value layout (see barrier.h).
inline constexpr size_t kTermBytes = 4;
inline constexpr uint8_t kValueFormat = 1;
inline constexpr size_t kValueHeaderBytes = kTermBytes + 1 + kNonceBytes;
inline constexpr size_t kValueOverhead = kValueHeaderBytes + kTagBytes;

// One data-encryption key (in SecretBytes, for the keyring) and its AEAD
// key object (lib/crypto, which wipes its key schedule). Immutable after
// Create; its aead() may seal/open from many threads at once.
class TermCipher {
 public:
  static absl::StatusOr<std::unique_ptr<TermCipher>> Create(
      uint32_t term, SecretBytes key, int64_t created_unix_micros);
  ~TermCipher();
  TermCipher(const TermCipher&) = delete;
  TermCipher& operator=(const TermCipher&) = delete;

  uint32_t term() const { return term_; }
  const SecretBytes& key() const { return key_; }
  int64_t created_unix_micros() const { return created_unix_micros_; }
  const crypto::Aes256GcmKey& aead() const { return *aead_; }
  // (data, size) of every buffer holding key material, for the wipe test.
  void AppendBuffers(std::vector<std::pair<const void*, size_t>>* out) const;

 private:
  TermCipher(uint32_t term, SecretBytes key, int64_t created,
             std::unique_ptr<crypto::Aes256GcmKey> aead);
  const uint32_t term_;
  SecretBytes key_;
  const int64_t created_unix_micros_;
  const std::unique_ptr<crypto::Aes256GcmKey> aead_;
};

// A key wrapper's error with its code kept (UNAVAILABLE: retry later) and
// what the barrier was doing; wrappers never put secrets in messages.
inline absl::Status WrapperError(absl::string_view doing,
                                 const absl::Status& s) {
  return absl::Status(s.code(),
                      absl::StrCat("key wrapper: ", doing, ": ", s.message()));
}

}  // namespace seal

class Barrier::Impl {
 public:
  explicit Impl(const BarrierOptions& options);
  ~Impl();

  absl::StatusOr<std::vector<std::string>> Initialize(int shares, int threshold,
                                                      FenceToken fence);
  absl::StatusOr<SealStatus> Unseal(absl::string_view share);
  absl::StatusOr<SealStatus> AutoUnseal();  // barrier_auto.cc
  absl::Status VerifyRecoveryShares(absl::Span<const std::string> shares);
  absl::Status MigrateToAuto(absl::Span<const std::string> shares,
                             FenceToken fence);
  absl::Status MigrateToShamir(absl::Span<const std::string> shares,
                               FenceToken fence);
  absl::StatusOr<bool> RewrapIfNeeded(FenceToken fence);
  absl::StatusOr<bool> RotateWrapperKey(absl::Span<const std::string> shares,
                                        FenceToken fence);
  void ResetUnsealProgress();
  void Seal();
  bool sealed() const { return sealed_.load(std::memory_order_acquire); }
  absl::StatusOr<SealStatus> Status();
  absl::StatusOr<std::vector<std::string>> Rekey(
      absl::Span<const std::string> current_shares, int new_shares,
      int new_threshold, FenceToken fence);
  absl::Status CompleteRekey(absl::Span<const std::string> new_shares,
                             FenceToken fence);
  absl::Status CancelRekey(FenceToken fence);
  absl::StatusOr<uint32_t> Rotate(FenceToken fence);
  absl::Status ReloadKeyring();

  absl::StatusOr<Entry> Get(absl::string_view path);
  absl::Status GetInPlace(absl::string_view path, OpenedValue* out);
  absl::StatusOr<uint64_t> Put(absl::string_view path,
                               absl::string_view plaintext, FenceToken fence);
  absl::StatusOr<uint64_t> Delete(absl::string_view path, FenceToken fence);
  absl::StatusOr<std::vector<std::string>> List(absl::string_view prefix);
  absl::StatusOr<uint64_t> Commit(absl::Span<const WriteOp> ops,
                                  FenceToken fence);
  absl::StatusOr<uint64_t> CommitInPlace(absl::Span<WriteOp> ops,
                                         FenceToken fence);
  Backend* backend() const { return backend_; }

  // ---- Seams: the data path's crypto without the backend (benchmarks,
  // tests). SealValue gives the stored bytes for `path` (not counted
  // against the term's encryption limit: the seam never stores); OpenValue
  // opens them with the keys in memory (no keyring reload).
  absl::StatusOr<std::string> SealValue(absl::string_view path,
                                        absl::string_view plaintext);
  absl::StatusOr<std::string> OpenValue(absl::string_view path,
                                        absl::string_view stored);
  // OpenValue in place: turns the stored bytes in `*value` into the
  // plaintext in the same buffer (what Get does with the backend's
  // buffer), so the data path allocates nothing of its own. On failure
  // `*value` is wiped and emptied.
  absl::Status OpenValueInPlace(absl::string_view path, std::string* value);
  // Every live buffer holding key material (root key, term keys, AEAD
  // contexts, presented shares), for the wipe-on-seal test.
  std::vector<std::pair<const void*, size_t>> KeyBuffersForTesting();
  // Each key term with the wall time (BarrierOptions::clock) it was created
  // at, in Unix microseconds; empty while sealed.
  std::vector<std::pair<uint32_t, int64_t>> TermCreationForTesting();

 private:
  struct Keys {
    SecretBytes root_key;
    absl::flat_hash_map<uint32_t, std::unique_ptr<seal::TermCipher>> terms;
    // Encryptions reserved in storage, per term (KeyTerm.reserved_encryptions).
    absl::flat_hash_map<uint32_t, uint64_t> reserved;
    const seal::TermCipher* active = nullptr;
    uint32_t max_term = 0;
    uint64_t keyring_version = 0;  // backend version of the keyring record
    // The active term's encryption count, kept beside (not inside) its
    // cipher: values sealed (claimed) by this barrier, counted from the
    // stored reservation when loaded, and the stored reservation. A seal
    // claims one under the shared lock; used never passes reserved.
    std::atomic<uint64_t> active_used{0};
    std::atomic<uint64_t> active_reserved{0};
  };

  absl::Status CheckDataPath(absl::string_view path) const;
  // FAILED_PRECONDITION for an unfenced write to a backend with HA.
  absl::Status CheckFence(FenceToken fence) const;
  // Opens `stored`; sets *unknown_term when it names a term newer than any
  // this barrier has (worth one keyring reload).
  absl::StatusOr<std::string> Open(absl::string_view path,
                                   absl::string_view stored,
                                   bool* unknown_term);
  // Open into the buffer that holds `*value`: the AEAD writes the plaintext
  // over the ciphertext (exact aliasing, which both providers allow) and
  // the header is dropped. On failure `*value` is wiped and emptied.
  absl::Status OpenInPlace(absl::string_view path, std::string* value,
                           bool* unknown_term);
  // The one open: `stored` into `out` (stored.size() - kValueOverhead
  // bytes), which either overlaps nothing or starts exactly where the
  // ciphertext does (stored.data() + kValueHeaderBytes). On failure `out`
  // is wiped.
  absl::Status OpenTo(absl::string_view path, absl::string_view stored,
                      uint8_t* out, bool* unknown_term);
  // Reads and validates the seal config. FAILED_PRECONDITION if absent.
  // The stored seal config; FAILED_PRECONDITION if not initialized. Sets
  // *version (if given) to its backend version, for a precondition.
  absl::StatusOr<seal::SealConfigRecord> ReadConfig(
      uint64_t* version = nullptr);
  // Reads a core record; DATA_LOSS naming `what` if it is missing.
  absl::StatusOr<Entry> ReadRecord(const std::string& path,
                                   absl::string_view what);
  // Reads a record that may be absent (nullopt).
  absl::StatusOr<std::optional<Entry>> ReadOptional(const std::string& path);
  // Commits; if the backend's answer leaves the outcome unknown, reads
  // `probe_key` back and counts the commit as applied if it holds
  // `probe_value` (so shares are never lost to a dropped acknowledgement).
  // Sets *outcome_unknown when even the read-back failed.
  absl::StatusOr<uint64_t> CommitConfirmed(absl::Span<const WriteOp> ops,
                                           FenceToken fence,
                                           absl::string_view probe_key,
                                           absl::string_view probe_value,
                                           bool* outcome_unknown = nullptr);
  // Key material is derived only from records already read and is never
  // held across backend I/O (a Seal() during a hung call then leaves no
  // copy behind): these are CPU-only.
  // Opens the stored root key record bytes with `unseal_key`.
  absl::StatusOr<SecretBytes> OpenRootKey(const SecretBytes& unseal_key,
                                          absl::string_view stored);
  // Opens the stored keyring record bytes with `root_key`.
  absl::StatusOr<std::unique_ptr<Keys>> OpenKeyring(SecretBytes root_key,
                                                    absl::string_view stored,
                                                    uint64_t version,
                                                    bool fresh_active_term);
  // The keyring record for `keys`, sealed under its root key, with a new
  // active term if `new_term` != 0 and the active term's stored
  // reservation set to `active_reserved`. Every key copy is wiped before
  // it returns. REQUIRES: keys_mu_ held (shared).
  absl::StatusOr<std::string> SealKeyringLocked(const Keys& keys,
                                                uint32_t new_term,
                                                uint64_t active_reserved);
  // Opens `record` (stored at `version`) with the root key in memory and
  // installs it as the keys, unless the barrier was sealed since `epoch`
  // (FAILED_PRECONDITION). No I/O.
  absl::Status InstallKeyring(absl::string_view record, uint64_t version,
                              uint64_t epoch, bool fresh_active_term)
      ABSL_LOCKS_EXCLUDED(keys_mu_);
  absl::Status ReloadKeyringLocked(uint32_t wanted_term)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(op_mu_);
  // With `outcome_unknown` non-null, sets it as CommitConfirmed does.
  absl::StatusOr<uint32_t> RotateLocked(FenceToken fence,
                                        bool* outcome_unknown = nullptr)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(op_mu_);
  // ---- Encryption counting (BarrierOptions::max_encryptions_per_term).
  // Claims one encryption of the active term; false when its stored
  // reservation is used up.
  static bool ClaimEncryption(Keys& keys);
  // Stores the next block of reservations for the active term, or rotates
  // when the term has reached the limit. Carries `fence`. A keyring that
  // kept changing, or a keyring write of unknown outcome, is UNAVAILABLE
  // ("could not reserve encryptions"), never ABORTED: the caller's data
  // write was not attempted, so no check-and-set of its failed.
  absl::Status ReserveEncryptions(FenceToken fence) ABSL_LOCKS_EXCLUDED(op_mu_);
  // Seals with the active term; with `exhausted` non-null, claims one
  // encryption first and sets *exhausted instead of sealing if none is left.
  absl::StatusOr<std::string> SealWithActiveTerm(absl::string_view path,
                                                 absl::string_view plaintext,
                                                 bool* exhausted);
  // Seals a value to be stored: counted, reserving or rotating as needed.
  absl::StatusOr<std::string> SealCounted(absl::string_view path,
                                          absl::string_view plaintext,
                                          FenceToken fence);
  // Makes `value` (a plaintext) kValueOverhead bytes longer with the
  // plaintext moved to where its ciphertext goes, ready to seal in place;
  // returns the start of the stored value (CommitInPlace).
  static uint8_t* LayOutForSeal(std::string* value);
  // The seal itself at `out` (header, then ciphertext and tag; the nonce
  // is already at its place in the header), with the active term.
  // REQUIRES: keys_mu_ held (shared), the encryption claimed.
  static absl::Status SealLocked(const Keys& keys, absl::string_view path,
                                 absl::string_view plaintext, uint8_t* out);
  // Named for the callers that hold op_mu_; takes keys_mu_ and progress_mu_.
  SealStatus StatusLocked(const seal::SealConfigRecord* config)
      ABSL_LOCKS_EXCLUDED(keys_mu_, progress_mu_);
  // Shares presented so far -> the unseal key. Length/threshold checked.
  absl::StatusOr<SecretBytes> CombineShares(
      absl::Span<const std::string> shares, int threshold);
  // Initialize, both modes: reads the records at `paths` into `existing`
  // (same length). OK when none exists, or when they are this barrier's
  // own attempt of unknown outcome (the record at paths[root_index] is the
  // one it stored, lost_init_root_record_); else FAILED_PRECONDITION.
  absl::Status ReadInitRecords(absl::Span<const std::string* const> paths,
                               size_t root_index,
                               absl::Span<std::optional<Entry>> existing)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(op_mu_);
  // Initialize, both modes: a first keyring of one fresh term, serialized.
  SecretBytes NewKeyringPlain() const;
  // Initialize, both modes: `op` expects its record as read (that version)
  // or absent.
  static WriteOp ExpectAsRead(WriteOp op, const std::optional<Entry>& read);
  // Auto mode's Initialize (barrier_auto.cc).
  absl::StatusOr<std::vector<std::string>> InitializeAutoLocked(
      int shares, int threshold, FenceToken fence)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(op_mu_);
  // Auto mode's rekey of the recovery key (barrier_auto.cc): the two phases
  // of Rekey / CompleteRekey once the stored config says auto.
  absl::StatusOr<std::vector<std::string>> RekeyAutoLocked(
      absl::Span<const std::string> current_shares, int new_shares,
      int new_threshold, const seal::SealConfigRecord& config,
      uint64_t config_version, FenceToken fence)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(op_mu_);
  absl::Status CompleteRekeyAutoLocked(absl::Span<const std::string> new_shares,
                                       const seal::SealConfigRecord& config,
                                       uint64_t config_version,
                                       FenceToken fence)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(op_mu_);
  // Combines `shares` (at least `threshold`) and checks them against the
  // key wrapped in `wrapped_record` (a WrappedKey stored at the recovery
  // key's path): the recovery key, or INVALID_ARGUMENT (below the
  // threshold, malformed, or `mismatch` when they do not match), or the
  // wrapper's error. No backend I/O.
  absl::StatusOr<SecretBytes> OpenRecoveryKey(
      absl::Span<const std::string> shares, int threshold,
      absl::string_view wrapped_record, absl::string_view mismatch);
  absl::StatusOr<std::vector<std::string>> MakeShares(
      const SecretBytes& unseal_key, int shares, int threshold);
  void WipeProgress() ABSL_LOCKS_EXCLUDED(progress_mu_);

  // Constant after construction.
  Backend* const backend_;
  Clock* const clock_;  // wall time of a new key term; not owned
  const std::string core_prefix_;
  const std::string config_path_;
  const std::string root_key_path_;
  const std::string keyring_path_;
  const std::string pending_path_;       // a rekey waiting for CompleteRekey
  const std::string root_wrapped_path_;  // auto mode: root key, wrapped
  const std::string recovery_wrapped_path_;  // auto mode: recovery key
  KeyWrapper* const key_wrapper_;            // null: Shamir only; not owned
  const bool escrow_;
  // The backend has HA: every write but Initialize's must carry a fence.
  const bool fence_required_;
  const uint64_t max_encryptions_per_term_;
  const uint64_t reservation_block_;  // <= max_encryptions_per_term_
  seal::NoncePool nonces_;

  // Serializes the seal operations (Initialize, Unseal, Rekey, Rotate,
  // ReloadKeyring). Seal() does not take it, so it is never stuck behind a
  // slow backend. Acquired before keys_mu_ and progress_mu_.
  Mutex op_mu_ ABSL_ACQUIRED_BEFORE(keys_mu_, progress_mu_);
  // The root key record of an Initialize whose outcome was unknown (not a
  // secret: ciphertext). A retry may replace exactly those records.
  std::string lost_init_root_record_ ABSL_GUARDED_BY(op_mu_);
  // Seal listeners (Barrier::AddSealListener); called under listeners_mu_,
  // so RemoveSealListener waits out a call in progress.
  Mutex listeners_mu_;
  std::map<int, std::function<void()>> listeners_
      ABSL_GUARDED_BY(listeners_mu_);
  int next_listener_ ABSL_GUARDED_BY(listeners_mu_) = 0;

 public:
  int AddSealListener(std::function<void()> listener) {
    MutexLock lock(&listeners_mu_);
    listeners_[++next_listener_] = std::move(listener);
    return next_listener_;
  }
  void RemoveSealListener(int id) {
    MutexLock lock(&listeners_mu_);
    listeners_.erase(id);
  }
  void NotifySealed() {
    MutexLock lock(&listeners_mu_);
    for (auto& [id, listener] : listeners_) listener();
  }

 private:
  // The keys. Readers (the data path) share it; installs and Seal take it
  // exclusively, and never across backend I/O.
  mutable SharedMutex keys_mu_;
  std::unique_ptr<Keys> keys_ ABSL_GUARDED_BY(keys_mu_);  // null: sealed
  uint64_t seal_epoch_ ABSL_GUARDED_BY(keys_mu_) = 0;     // ++ on every Seal
  std::atomic<bool> sealed_{true};  // mirrors keys_ == nullptr

  Mutex progress_mu_;
  std::vector<SecretBytes> progress_ ABSL_GUARDED_BY(progress_mu_);
};

// Test access to a Barrier's implementation.
class BarrierTestPeer {
 public:
  static Barrier::Impl* impl(Barrier& barrier) { return barrier.impl_.get(); }
};

}  // namespace strongbox

#endif  // STRONGBOX_LIB_SEAL_BARRIER_IMPL_H_
