#include "strongbox/barrier.h"

#include <algorithm>
#include <cstring>
#include <optional>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "lib/seal/barrier_impl.h"
#include "lib/seal/records.h"
#include "lib/util/status_macros.h"
#include "strongbox/key_wrapper.h"
#include "strongbox/shamir.h"

namespace strongbox {
namespace seal {

TermCipher::TermCipher(uint32_t term, SecretBytes key, int64_t created,
                       std::unique_ptr<crypto::Aes256GcmKey> aead)
    : term_(term),
      key_(std::move(key)),
      created_unix_micros_(created),
      aead_(std::move(aead)) {}

absl::StatusOr<std::unique_ptr<TermCipher>> TermCipher::Create(
    uint32_t term, SecretBytes key, int64_t created_unix_micros) {
  if (key.size() != kKeyBytes) {
    return absl::InternalError("data key has the wrong length");
  }
  ASSIGN_OR_RETURN(std::unique_ptr<crypto::Aes256GcmKey> aead,
                   crypto::Aes256GcmKey::Create(key.view()));
  return std::unique_ptr<TermCipher>(new TermCipher(
      term, std::move(key), created_unix_micros, std::move(aead)));
}

TermCipher::~TermCipher() = default;  // aead_ and key_ wipe themselves

void TermCipher::AppendBuffers(
    std::vector<std::pair<const void*, size_t>>* out) const {
  out->emplace_back(key_.data(), key_.size());
  aead_->AppendSecretBuffers(out);
}

}  // namespace seal

namespace {

using seal::kKeyBytes;
using seal::kNonceBytes;
using seal::kTagBytes;
using seal::kValueFormat;
using seal::kValueHeaderBytes;
using seal::kValueOverhead;

const uint8_t* U8(absl::string_view s) {
  return reinterpret_cast<const uint8_t*>(s.data());
}

uint8_t* U8Mutable(std::string& s) { return reinterpret_cast<uint8_t*>(&s[0]); }

absl::Status SealedError() {
  return absl::FailedPreconditionError("barrier is sealed");
}

absl::Status UnfencedError() {
  return absl::FailedPreconditionError(
      "the backend has HA: a write needs the writer's fence (its leadership "
      "grant); only Initialize may write without one");
}

// Outcomes after which a commit certainly wrote nothing.
bool CommitDefinitelyFailed(const absl::Status& s) {
  return s.code() == absl::StatusCode::kAborted ||
         s.code() == absl::StatusCode::kFailedPrecondition ||
         s.code() == absl::StatusCode::kInvalidArgument;
}

}  // namespace

// ------------------------------------------------------------------ Impl

Barrier::Impl::Impl(const BarrierOptions& options)
    : backend_(options.backend),
      clock_(options.clock != nullptr ? options.clock : RealClock()),
      core_prefix_(options.core_prefix),
      config_path_(absl::StrCat(options.core_prefix, "seal-config")),
      root_key_path_(absl::StrCat(options.core_prefix, "root-key")),
      keyring_path_(absl::StrCat(options.core_prefix, "keyring")),
      pending_path_(absl::StrCat(options.core_prefix, "rekey-pending")),
      root_wrapped_path_(absl::StrCat(options.core_prefix, "root-key-wrapped")),
      recovery_wrapped_path_(
          absl::StrCat(options.core_prefix, "recovery-key-wrapped")),
      key_wrapper_(options.key_wrapper),
      escrow_(options.escrow),
      fence_required_(options.backend->ha() != nullptr),
      max_encryptions_per_term_(options.max_encryptions_per_term),
      reservation_block_(std::min(options.encryption_reservation,
                                  options.max_encryptions_per_term)) {}

absl::Status Barrier::Impl::CheckFence(FenceToken fence) const {
  if (fence_required_ && fence == kNoFence) return UnfencedError();
  return absl::OkStatus();
}

Barrier::Impl::~Impl() { Seal(); }

absl::Status Barrier::Impl::CheckDataPath(absl::string_view path) const {
  if (absl::StartsWith(path, core_prefix_)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "path is under the barrier's reserved prefix \"", core_prefix_, "\""));
  }
  return absl::OkStatus();
}

absl::StatusOr<seal::SealConfigRecord> Barrier::Impl::ReadConfig(
    uint64_t* version) {
  absl::StatusOr<Entry> entry = backend_->Get(config_path_);
  if (entry.status().code() == absl::StatusCode::kNotFound) {
    return absl::FailedPreconditionError("barrier is not initialized");
  }
  RETURN_IF_ERROR(entry.status());
  if (version != nullptr) *version = entry->version;
  return seal::ParseSealConfig(entry->value);
}

absl::StatusOr<Entry> Barrier::Impl::ReadRecord(const std::string& path,
                                                absl::string_view what) {
  absl::StatusOr<Entry> entry = backend_->Get(path);
  if (entry.status().code() == absl::StatusCode::kNotFound) {
    return absl::DataLossError(absl::StrCat(what, " record is missing"));
  }
  return entry;
}

absl::StatusOr<std::optional<Entry>> Barrier::Impl::ReadOptional(
    const std::string& path) {
  absl::StatusOr<Entry> entry = backend_->Get(path);
  if (entry.status().code() == absl::StatusCode::kNotFound) {
    return std::optional<Entry>();
  }
  RETURN_IF_ERROR(entry.status());
  return std::optional<Entry>(*std::move(entry));
}

absl::StatusOr<uint64_t> Barrier::Impl::CommitConfirmed(
    absl::Span<const WriteOp> ops, FenceToken fence,
    absl::string_view probe_key, absl::string_view probe_value,
    bool* outcome_unknown) {
  if (outcome_unknown != nullptr) *outcome_unknown = false;
  absl::StatusOr<uint64_t> rev = backend_->Commit(ops, fence);
  if (rev.ok() || CommitDefinitelyFailed(rev.status())) return rev;
  // The backend may have applied the batch and lost the answer. Records
  // carry a fresh random nonce, so finding our exact bytes proves it.
  absl::StatusOr<Entry> probe = backend_->Get(probe_key);
  if (probe.ok() && probe->value == probe_value) return probe->version;
  if (probe.ok() || probe.status().code() == absl::StatusCode::kNotFound) {
    return rev.status();  // not applied: safe to retry
  }
  if (outcome_unknown != nullptr) *outcome_unknown = true;
  return absl::Status(
      rev.status().code(),
      absl::StrCat("backend failed and the outcome of the write could not be "
                   "confirmed (",
                   rev.status().message(),
                   "); check Status() before retrying"));
}

absl::StatusOr<std::vector<std::string>> Barrier::Impl::MakeShares(
    const SecretBytes& unseal_key, int shares, int threshold) {
  if (shares == 1) {
    return std::vector<std::string>{std::string(unseal_key.view())};
  }
  return shamir::Split(unseal_key.view(), shares, threshold);
}

absl::Status Barrier::Impl::ReadInitRecords(
    absl::Span<const std::string* const> paths, size_t root_index,
    absl::Span<std::optional<Entry>> existing) {
  bool any = false;
  for (size_t i = 0; i < paths.size(); ++i) {
    ASSIGN_OR_RETURN(existing[i], ReadOptional(*paths[i]));
    any = any || existing[i].has_value();
  }
  // The records of this barrier's own earlier attempt whose outcome was
  // unknown (its shares were never handed out, so nobody can have unsealed
  // with them or stored anything under them) may be replaced; anything
  // else is somebody's initialization.
  const bool replace_lost_attempt =
      any && !lost_init_root_record_.empty() &&
      existing[root_index].has_value() &&
      existing[root_index]->value == lost_init_root_record_;
  if (any && !replace_lost_attempt) {
    lost_init_root_record_.clear();
    return absl::FailedPreconditionError("barrier is already initialized");
  }
  return absl::OkStatus();
}

SecretBytes Barrier::Impl::NewKeyringPlain() const {
  seal::KeyringContents keyring;
  keyring.active_term = 1;
  keyring.terms.push_back(seal::TermKey{1, SecretBytes::Random(kKeyBytes),
                                        absl::ToUnixMicros(clock_->Now()), 0});
  return seal::SerializeKeyring(keyring);
}

WriteOp Barrier::Impl::ExpectAsRead(WriteOp op,
                                    const std::optional<Entry>& read) {
  return read.has_value() ? op.IfVersion(read->version) : op.IfAbsent();
}

absl::StatusOr<std::vector<std::string>> Barrier::Impl::Initialize(
    int shares, int threshold, FenceToken fence) {
  MutexLock op(&op_mu_);
  if (key_wrapper_ != nullptr) {
    return InitializeAutoLocked(shares, threshold, fence);
  }
  RETURN_IF_ERROR(seal::ValidateSealParameters(shares, threshold));
  // Cheap early answer; the preconditions below are the real check.
  std::optional<Entry> existing[3];
  const std::string* const paths[3] = {&config_path_, &root_key_path_,
                                       &keyring_path_};
  RETURN_IF_ERROR(ReadInitRecords(paths, /*root_index=*/1, existing));

  SecretBytes unseal_key = SecretBytes::Random(kKeyBytes);
  SecretBytes root_key = SecretBytes::Random(kKeyBytes);
  SecretBytes keyring_plain = NewKeyringPlain();

  ASSIGN_OR_RETURN(
      std::string keyring_record,
      seal::SealRecord(root_key, keyring_path_, keyring_plain.view()));
  ASSIGN_OR_RETURN(
      std::string root_record,
      seal::SealRecord(unseal_key, root_key_path_, root_key.view()));
  // Split before storing anything: once the records are stored, the shares
  // are the only way in.
  ASSIGN_OR_RETURN(std::vector<std::string> out,
                   MakeShares(unseal_key, shares, threshold));
  unseal_key.Clear();
  root_key.Clear();
  keyring_plain.Clear();

  auto expect = [&](WriteOp op, int i) {
    return ExpectAsRead(std::move(op), existing[i]);
  };
  const WriteOp ops[] = {
      expect(WriteOp::Put(config_path_,
                          seal::SerializeSealConfig({shares, threshold})),
             0),
      expect(WriteOp::Put(root_key_path_, root_record), 1),
      expect(WriteOp::Put(keyring_path_, keyring_record), 2),
  };
  bool unknown = false;
  absl::StatusOr<uint64_t> rev =
      CommitConfirmed(ops, fence, root_key_path_, root_record, &unknown);
  if (!rev.ok()) {
    for (std::string& share : out) WipeString(share);
    if (rev.status().code() == absl::StatusCode::kAborted) {
      lost_init_root_record_.clear();
      return absl::FailedPreconditionError("barrier is already initialized");
    }
    if (unknown) {
      // D7: the records may be stored under an unseal key nobody holds.
      // Remember them (the root key record is ciphertext, not a secret) so
      // that retrying Initialize here replaces exactly this attempt.
      lost_init_root_record_ = root_record;
      return absl::Status(
          rev.status().code(),
          absl::StrCat(rev.status().message(),
                       "; call Initialize on this barrier again: it replaces "
                       "the unconfirmed attempt and returns new shares"));
    }
    return rev.status();  // certainly not applied; a lost attempt stays
  }
  lost_init_root_record_.clear();
  return out;
}

absl::StatusOr<SecretBytes> Barrier::Impl::CombineShares(
    absl::Span<const std::string> shares, int threshold) {
  if (threshold == 1) {
    // shares == threshold == 1: the share is the unseal key itself.
    if (shares.empty() || shares[0].size() != kKeyBytes) {
      return absl::InvalidArgumentError("unseal key has the wrong length");
    }
    return SecretBytes::Copy(shares[0]);
  }
  for (const std::string& share : shares) {
    if (share.size() != kKeyBytes + 1) {
      return absl::InvalidArgumentError("unseal share has the wrong length");
    }
  }
  ASSIGN_OR_RETURN(std::string combined, shamir::Combine(shares));
  SecretBytes key = SecretBytes::Copy(combined);
  WipeString(combined);
  return key;
}

absl::StatusOr<SecretBytes> Barrier::Impl::OpenRootKey(
    const SecretBytes& unseal_key, absl::string_view stored) {
  absl::StatusOr<seal::SealedRecordParts> parts =
      seal::ParseSealedRecord(stored);
  if (!parts.ok()) {
    return absl::DataLossError(
        absl::StrCat("root key record: ", parts.status().message()));
  }
  absl::StatusOr<SecretBytes> root =
      seal::OpenRecord(unseal_key, root_key_path_, *parts);
  if (!root.ok()) {
    // Wrong or foreign shares (or a tampered record: indistinguishable).
    return absl::InvalidArgumentError("unseal key does not open the root key");
  }
  if (root->size() != kKeyBytes) {
    return absl::DataLossError("root key has the wrong length");
  }
  return root;
}

absl::StatusOr<std::unique_ptr<Barrier::Impl::Keys>> Barrier::Impl::OpenKeyring(
    SecretBytes root_key, absl::string_view stored, uint64_t version,
    bool fresh_active_term) {
  absl::StatusOr<seal::SealedRecordParts> parts =
      seal::ParseSealedRecord(stored);
  if (!parts.ok()) {
    return absl::DataLossError(
        absl::StrCat("keyring record: ", parts.status().message()));
  }
  absl::StatusOr<SecretBytes> plain =
      seal::OpenRecord(root_key, keyring_path_, *parts);
  if (!plain.ok()) {
    return absl::DataLossError("keyring record failed authentication");
  }
  ASSIGN_OR_RETURN(seal::KeyringContents contents,
                   seal::ParseKeyring(plain->view()));

  auto keys = std::make_unique<Keys>();
  keys->root_key = std::move(root_key);
  keys->keyring_version = version;
  for (seal::TermKey& t : contents.terms) {
    ASSIGN_OR_RETURN(std::unique_ptr<seal::TermCipher> cipher,
                     seal::TermCipher::Create(t.term, std::move(t.key),
                                              t.created_unix_micros));
    keys->max_term = std::max(keys->max_term, t.term);
    keys->terms[t.term] = std::move(cipher);
    keys->reserved[t.term] = t.reserved_encryptions;
  }
  keys->active = keys->terms.at(contents.active_term).get();
  const uint64_t reserved = keys->reserved[contents.active_term];
  // Unknown how many of a loaded term's reservations were used: count them
  // all (over-counting only brings the rotation forward). A term this
  // barrier just created has used none.
  keys->active_used.store(fresh_active_term ? 0 : reserved);
  keys->active_reserved.store(reserved);
  return keys;
}

absl::StatusOr<std::string> Barrier::Impl::SealKeyringLocked(
    const Keys& keys, uint32_t new_term, uint64_t active_reserved) {
  seal::KeyringContents keyring;
  keyring.active_term = new_term != 0 ? new_term : keys.active->term();
  for (const auto& [term, cipher] : keys.terms) {
    auto it = keys.reserved.find(term);
    keyring.terms.push_back(
        seal::TermKey{term, SecretBytes::Copy(cipher->key().view()),
                      cipher->created_unix_micros(),
                      it == keys.reserved.end() ? 0 : it->second});
  }
  if (new_term != 0) {
    keyring.terms.push_back(
        seal::TermKey{new_term, SecretBytes::Random(kKeyBytes),
                      absl::ToUnixMicros(clock_->Now()), 0});
  }
  for (seal::TermKey& t : keyring.terms) {
    if (t.term == keyring.active_term) t.reserved_encryptions = active_reserved;
  }
  std::sort(keyring.terms.begin(), keyring.terms.end(),
            [](const seal::TermKey& a, const seal::TermKey& b) {
              return a.term < b.term;
            });
  SecretBytes plain = seal::SerializeKeyring(keyring);
  return seal::SealRecord(keys.root_key, keyring_path_, plain.view());
  // `keyring` and `plain` wipe themselves here: no key copy outlives the
  // call, so none is held across the backend I/O that follows.
}

absl::Status Barrier::Impl::InstallKeyring(absl::string_view record,
                                           uint64_t version, uint64_t epoch,
                                           bool fresh_active_term) {
  std::unique_ptr<Keys> keys;
  {
    ReaderLock lock(&keys_mu_);
    if (keys_ == nullptr || seal_epoch_ != epoch) return SealedError();
    ASSIGN_OR_RETURN(
        keys, OpenKeyring(SecretBytes::Copy(keys_->root_key.view()), record,
                          version, fresh_active_term));
  }
  std::unique_ptr<Keys> old;
  {
    WriterLock lock(&keys_mu_);
    // Sealed between the two locks: `keys` is wiped on return, at once.
    if (keys_ == nullptr || seal_epoch_ != epoch) return SealedError();
    old = std::move(keys_);
    keys_ = std::move(keys);
  }
  return absl::OkStatus();  // `old` wiped here, outside the lock
}

absl::StatusOr<SealStatus> Barrier::Impl::Unseal(absl::string_view share) {
  MutexLock op(&op_mu_);
  ASSIGN_OR_RETURN(seal::SealConfigRecord config, ReadConfig());
  if (!sealed()) return StatusLocked(&config);
  if (config.auto_unseal && !config.escrow) {
    return absl::FailedPreconditionError(
        "the barrier auto-unseals through its key wrapper; recovery shares "
        "do not unseal it (initialized without escrow)");
  }

  const size_t expected = config.threshold == 1 ? kKeyBytes : kKeyBytes + 1;
  if (share.size() != expected) {
    return absl::InvalidArgumentError(
        config.threshold == 1 ? "unseal key has the wrong length"
                              : "unseal share has the wrong length");
  }
  if (config.threshold > 1 && share.back() == '\0') {
    // x = 0 is the secret's own coordinate: no split hands it out, and in
    // a combination it alone would decide the unseal key.
    return absl::InvalidArgumentError(
        "unseal share has x coordinate 0, which no split produces");
  }

  // Only Seal() and ResetUnsealProgress() change progress_ meanwhile (we
  // hold op_mu_), and they only empty it.
  bool final_share;
  {
    MutexLock lock(&progress_mu_);
    final_share = static_cast<int>(progress_.size()) + 1 >= config.threshold;
  }
  // Read the records before any key exists: no key material is held
  // across backend I/O, so a Seal() during a hung read leaves none behind.
  std::optional<Entry> root_entry;
  std::optional<Entry> keyring_entry;
  if (final_share) {
    absl::StatusOr<Entry> root = ReadRecord(root_key_path_, "root key");
    absl::StatusOr<Entry> keyring =
        root.ok() ? ReadRecord(keyring_path_, "keyring") : root.status();
    if (!keyring.ok()) {
      WipeProgress();
      return keyring.status();
    }
    root_entry = *std::move(root);
    keyring_entry = *std::move(keyring);
  }

  std::vector<std::string> presented;  // wiped below
  bool duplicate = false;
  {
    MutexLock lock(&progress_mu_);
    for (const SecretBytes& p : progress_) {
      if (p.Equals(share)) duplicate = true;
    }
    if (!duplicate && config.threshold > 1) {
      for (const SecretBytes& p : progress_) {
        if (p.size() == share.size() &&
            p.data()[p.size() - 1] == static_cast<uint8_t>(share.back())) {
          return absl::InvalidArgumentError(
              "unseal share has the same x coordinate as a share already "
              "presented");
        }
      }
    }
    if (!duplicate) {
      progress_.push_back(SecretBytes::Copy(share));
      if (static_cast<int>(progress_.size()) >= config.threshold &&
          root_entry.has_value()) {
        for (const SecretBytes& p : progress_) {
          presented.emplace_back(p.view());
        }
        progress_.clear();  // wipes; any failure below leaves progress reset
      }
    }
  }
  // Below the threshold (or a duplicate, which is ignored): report progress.
  if (presented.empty()) return StatusLocked(&config);

  uint64_t epoch;
  {
    ReaderLock lock(&keys_mu_);
    epoch = seal_epoch_;
  }
  absl::StatusOr<SecretBytes> unseal_key =
      CombineShares(presented, config.threshold);
  for (std::string& s : presented) WipeString(s);
  if (!unseal_key.ok()) return unseal_key.status();
  absl::StatusOr<SecretBytes> root =
      OpenRootKey(*unseal_key, root_entry->value);
  unseal_key->Clear();
  if (!root.ok()) return root.status();
  ASSIGN_OR_RETURN(
      std::unique_ptr<Keys> keys,
      OpenKeyring(*std::move(root), keyring_entry->value,
                  keyring_entry->version, /*fresh_active_term=*/false));
  {
    WriterLock lock(&keys_mu_);
    if (seal_epoch_ != epoch) {
      return absl::AbortedError(
          "barrier was sealed while unsealing; present the shares again");
    }
    keys_ = std::move(keys);
    sealed_.store(false, std::memory_order_release);
  }
  return StatusLocked(&config);
}

void Barrier::Impl::WipeProgress() {
  MutexLock lock(&progress_mu_);
  progress_.clear();
}

void Barrier::Impl::ResetUnsealProgress() { WipeProgress(); }

void Barrier::Impl::Seal() {
  std::unique_ptr<Keys> keys;
  {
    WriterLock lock(&keys_mu_);
    keys = std::move(keys_);
    ++seal_epoch_;
    sealed_.store(true, std::memory_order_release);
  }
  keys.reset();  // wipes the root key, the term keys and their contexts
  WipeProgress();
}

SealStatus Barrier::Impl::StatusLocked(const seal::SealConfigRecord* config) {
  SealStatus status;
  if (config != nullptr) {
    status.initialized = true;
    status.threshold = config->threshold;
    status.shares = config->shares;
    status.auto_unseal = config->auto_unseal;
    status.escrow = config->escrow;
    if (config->auto_unseal) {
      status.seal_type =
          key_wrapper_ != nullptr ? key_wrapper_->type() : "auto";
    }
  }
  {
    ReaderLock lock(&keys_mu_);
    status.sealed = keys_ == nullptr;
    status.term = keys_ != nullptr ? keys_->active->term() : 0;
  }
  {
    MutexLock lock(&progress_mu_);
    status.progress = static_cast<int>(progress_.size());
  }
  return status;
}

absl::StatusOr<SealStatus> Barrier::Impl::Status() {
  absl::StatusOr<seal::SealConfigRecord> config = ReadConfig();
  if (config.status().code() == absl::StatusCode::kFailedPrecondition) {
    return StatusLocked(nullptr);  // not initialized
  }
  RETURN_IF_ERROR(config.status());
  SealStatus status = StatusLocked(&*config);
  ASSIGN_OR_RETURN(std::optional<Entry> pending, ReadOptional(pending_path_));
  if (pending.has_value()) {
    ASSIGN_OR_RETURN(seal::PendingRekeyRecord record,
                     seal::ParsePendingRekey(pending->value));
    status.rekey_pending = true;
    status.rekey_shares = record.config.shares;
    status.rekey_threshold = record.config.threshold;
  }
  return status;
}

absl::StatusOr<std::vector<std::string>> Barrier::Impl::Rekey(
    absl::Span<const std::string> current_shares, int new_shares,
    int new_threshold, FenceToken fence) {
  RETURN_IF_ERROR(CheckFence(fence));
  MutexLock op(&op_mu_);
  RETURN_IF_ERROR(seal::ValidateSealParameters(new_shares, new_threshold));
  uint64_t config_version = 0;
  ASSIGN_OR_RETURN(seal::SealConfigRecord config, ReadConfig(&config_version));
  if (config.auto_unseal) {
    return RekeyAutoLocked(current_shares, new_shares, new_threshold, config,
                           config_version, fence);
  }
  if (static_cast<int>(current_shares.size()) < config.threshold) {
    return absl::InvalidArgumentError(
        "rekey needs at least the threshold of current shares");
  }
  // Every read before any key exists (none is held across backend I/O).
  ASSIGN_OR_RETURN(Entry root_entry, ReadRecord(root_key_path_, "root key"));
  ASSIGN_OR_RETURN(std::optional<Entry> pending_entry,
                   ReadOptional(pending_path_));

  ASSIGN_OR_RETURN(SecretBytes old_unseal,
                   CombineShares(current_shares, config.threshold));
  absl::StatusOr<SecretBytes> root = OpenRootKey(old_unseal, root_entry.value);
  old_unseal.Clear();
  if (!root.ok()) return root.status();

  SecretBytes new_unseal = SecretBytes::Random(kKeyBytes);
  absl::StatusOr<std::string> root_record =
      seal::SealRecord(new_unseal, root_key_path_, root->view());
  root->Clear();
  if (!root_record.ok()) return root_record.status();
  absl::StatusOr<std::vector<std::string>> out =
      MakeShares(new_unseal, new_shares, new_threshold);
  new_unseal.Clear();
  if (!out.ok()) return out.status();

  // Phase one: only the pending record is written. The stored root key
  // and the current shares stay valid until CompleteRekey proves that a
  // threshold of the new shares reached their holders. A pending rekey is
  // replaced (the current shares authorize that as well as the first).
  const std::string pending = seal::SerializePendingRekey(
      {{new_shares, new_threshold}, *std::move(root_record)});
  WriteOp put_pending = WriteOp::Put(pending_path_, pending);
  if (pending_entry.has_value()) {
    put_pending.IfVersion(pending_entry->version);
  } else {
    put_pending.IfAbsent();
  }
  const WriteOp ops[] = {
      WriteOp::Check(config_path_).IfVersion(config_version),
      WriteOp::Check(root_key_path_).IfVersion(root_entry.version),
      std::move(put_pending),
  };
  absl::StatusOr<uint64_t> rev =
      CommitConfirmed(ops, fence, pending_path_, pending);
  if (!rev.ok()) {
    // Safe to wipe: the current shares still open the root key whatever
    // became of the pending record.
    for (std::string& share : *out) WipeString(share);
    if (rev.status().code() == absl::StatusCode::kAborted) {
      return absl::AbortedError(
          "seal configuration changed during rekey; retry");
    }
    return absl::Status(
        rev.status().code(),
        absl::StrCat(rev.status().message(),
                     "; the current shares remain valid, retry Rekey"));
  }
  return out;
}

absl::Status Barrier::Impl::CompleteRekey(
    absl::Span<const std::string> new_shares, FenceToken fence) {
  RETURN_IF_ERROR(CheckFence(fence));
  MutexLock op(&op_mu_);
  uint64_t config_version = 0;
  ASSIGN_OR_RETURN(seal::SealConfigRecord config, ReadConfig(&config_version));
  if (config.auto_unseal) {
    return CompleteRekeyAutoLocked(new_shares, config, config_version, fence);
  }
  ASSIGN_OR_RETURN(Entry root_entry, ReadRecord(root_key_path_, "root key"));
  ASSIGN_OR_RETURN(Entry keyring_entry, ReadRecord(keyring_path_, "keyring"));
  ASSIGN_OR_RETURN(std::optional<Entry> pending_entry,
                   ReadOptional(pending_path_));

  if (!pending_entry.has_value()) {
    // Nothing pending. If these shares open the stored root key, an
    // earlier CompleteRekey applied and lost its answer: done.
    if (static_cast<int>(new_shares.size()) < config.threshold) {
      return absl::FailedPreconditionError("no rekey is pending");
    }
    absl::StatusOr<SecretBytes> unseal =
        CombineShares(new_shares, config.threshold);
    if (!unseal.ok()) {
      return absl::FailedPreconditionError("no rekey is pending");
    }
    absl::StatusOr<SecretBytes> root = OpenRootKey(*unseal, root_entry.value);
    if (!root.ok()) return absl::FailedPreconditionError("no rekey is pending");
    return absl::OkStatus();
  }

  ASSIGN_OR_RETURN(seal::PendingRekeyRecord pending,
                   seal::ParsePendingRekey(pending_entry->value));
  if (pending.auto_mode()) {
    return absl::FailedPreconditionError(
        "the pending rekey is of recovery shares, made before a seal "
        "migration to Shamir; cancel it and rekey again");
  }
  if (static_cast<int>(new_shares.size()) < pending.config.threshold) {
    return absl::InvalidArgumentError(
        "completing a rekey needs at least the new threshold of new shares");
  }
  ASSIGN_OR_RETURN(SecretBytes unseal,
                   CombineShares(new_shares, pending.config.threshold));
  absl::StatusOr<seal::SealedRecordParts> parts =
      seal::ParseSealedRecord(pending.root_record);
  if (!parts.ok()) return absl::DataLossError("pending root key record");
  absl::StatusOr<SecretBytes> root =
      seal::OpenRecord(unseal, root_key_path_, *parts);
  unseal.Clear();
  if (!root.ok() || root->size() != kKeyBytes) {
    return absl::InvalidArgumentError(
        "the new shares do not open the pending root key");
  }
  // Never switch to a root key that does not reach the data.
  absl::StatusOr<std::unique_ptr<Keys>> keys =
      OpenKeyring(*std::move(root), keyring_entry.value, keyring_entry.version,
                  /*fresh_active_term=*/false);
  if (!keys.ok()) {
    return absl::DataLossError(
        "the pending rekey wraps a root key that does not open the keyring");
  }
  keys->reset();  // wiped before the write

  const WriteOp ops[] = {
      WriteOp::Put(config_path_, seal::SerializeSealConfig(pending.config))
          .IfVersion(config_version),
      WriteOp::Put(root_key_path_, pending.root_record)
          .IfVersion(root_entry.version),
      WriteOp::Delete(pending_path_).IfVersion(pending_entry->version),
  };
  absl::StatusOr<uint64_t> rev =
      CommitConfirmed(ops, fence, root_key_path_, pending.root_record);
  if (!rev.ok()) {
    if (rev.status().code() == absl::StatusCode::kAborted) {
      return absl::AbortedError(
          "seal configuration changed while completing the rekey; retry");
    }
    return absl::Status(
        rev.status().code(),
        absl::StrCat(rev.status().message(),
                     "; call CompleteRekey again with the same new shares"));
  }
  WipeProgress();  // shares presented so far belong to the old key
  return absl::OkStatus();
}

absl::Status Barrier::Impl::CancelRekey(FenceToken fence) {
  RETURN_IF_ERROR(CheckFence(fence));
  MutexLock op(&op_mu_);
  ASSIGN_OR_RETURN(std::optional<Entry> pending, ReadOptional(pending_path_));
  if (!pending.has_value()) {
    // Never answer OK here: after a CompleteRekey whose answer was lost the
    // pending record is gone because the new shares now hold the root key,
    // and an operator told "cancelled" would discard them (D7).
    return absl::FailedPreconditionError(
        "no rekey is pending; a CompleteRekey may have applied: verify by "
        "calling CompleteRekey with the new shares (OK if it applied) or by "
        "unsealing with them before discarding any shares");
  }
  const WriteOp ops[] = {
      WriteOp::Delete(pending_path_).IfVersion(pending->version)};
  absl::StatusOr<uint64_t> rev = backend_->Commit(ops, fence);
  if (rev.status().code() == absl::StatusCode::kAborted) {
    return absl::AbortedError("the pending rekey changed; check Status()");
  }
  return rev.status();
}

absl::StatusOr<uint32_t> Barrier::Impl::Rotate(FenceToken fence) {
  RETURN_IF_ERROR(CheckFence(fence));
  MutexLock op(&op_mu_);
  return RotateLocked(fence);
}

absl::StatusOr<uint32_t> Barrier::Impl::RotateLocked(FenceToken fence,
                                                     bool* outcome_unknown) {
  std::string record;
  uint64_t version;
  uint64_t epoch;
  uint32_t new_term;
  {
    ReaderLock lock(&keys_mu_);
    if (keys_ == nullptr) return SealedError();
    new_term = keys_->max_term + 1;
    if (new_term == 0) {
      return absl::FailedPreconditionError("key terms are exhausted");
    }
    version = keys_->keyring_version;
    epoch = seal_epoch_;
    // The new term starts with one block of encryptions reserved.
    ASSIGN_OR_RETURN(record,
                     SealKeyringLocked(*keys_, new_term, reservation_block_));
  }
  const WriteOp ops[] = {
      WriteOp::Put(keyring_path_, record).IfVersion(version)};
  absl::StatusOr<uint64_t> rev =
      CommitConfirmed(ops, fence, keyring_path_, record, outcome_unknown);
  if (!rev.ok()) {
    if (rev.status().code() == absl::StatusCode::kAborted) {
      return absl::AbortedError(
          "keyring changed in storage (another node rotated); reload the "
          "keyring and retry");
    }
    return rev.status();
  }
  absl::Status installed =
      InstallKeyring(record, *rev, epoch, /*fresh_active_term=*/true);
  if (absl::IsFailedPrecondition(installed)) {
    return absl::FailedPreconditionError(
        "barrier was sealed during rotation; the new term is stored");
  }
  RETURN_IF_ERROR(installed);
  return new_term;
}

namespace {

// The data write that needed the reservation was never attempted.
absl::Status ReservationUnavailable(absl::string_view why) {
  return absl::UnavailableError(
      absl::StrCat("could not reserve encryptions: ", why,
                   "; the data write was not attempted; retry"));
}

constexpr absl::string_view kReservationUnknown =
    "the backend failed and whether the keyring write applied is unknown "
    "(harmless: a stored reservation or key term only skips encryptions)";

}  // namespace

absl::Status Barrier::Impl::ReserveEncryptions(FenceToken fence) {
  MutexLock op(&op_mu_);
  bool rotate = false;
  for (int attempt = 0; attempt < 3 && !rotate; ++attempt) {
    std::string record;
    uint64_t version;
    uint64_t epoch;
    uint64_t new_reserved;
    uint32_t term;
    {
      ReaderLock lock(&keys_mu_);
      if (keys_ == nullptr) return SealedError();
      const uint64_t reserved = keys_->active_reserved.load();
      if (keys_->active_used.load() < reserved) {
        return absl::OkStatus();  // another writer reserved meanwhile
      }
      if (reserved >= max_encryptions_per_term_) {
        // The term has sealed as many values as it may: rotate; the new
        // term is stored before anything is sealed under it.
        rotate = true;
        continue;
      }
      new_reserved = reserved + std::min(reservation_block_,
                                         max_encryptions_per_term_ - reserved);
      term = keys_->active->term();
      version = keys_->keyring_version;
      epoch = seal_epoch_;
      ASSIGN_OR_RETURN(record, SealKeyringLocked(*keys_, 0, new_reserved));
    }
    const WriteOp ops[] = {
        WriteOp::Put(keyring_path_, record).IfVersion(version)};
    bool unknown = false;
    absl::StatusOr<uint64_t> rev =
        CommitConfirmed(ops, fence, keyring_path_, record, &unknown);
    if (rev.status().code() == absl::StatusCode::kAborted) {
      // Another node changed the keyring: follow it and try again.
      RETURN_IF_ERROR(ReloadKeyringLocked(0));
      continue;
    }
    if (unknown) return ReservationUnavailable(kReservationUnknown);
    RETURN_IF_ERROR(rev.status());
    WriterLock lock(&keys_mu_);
    if (keys_ == nullptr || seal_epoch_ != epoch) return SealedError();
    if (keys_->active->term() == term) {
      keys_->reserved[term] = new_reserved;
      keys_->active_reserved.store(new_reserved);
    }
    keys_->keyring_version = *rev;
    return absl::OkStatus();
  }
  if (!rotate) {
    return ReservationUnavailable("the keyring kept changing in storage");
  }
  bool unknown = false;
  absl::StatusOr<uint32_t> rotated = RotateLocked(fence, &unknown);
  if (rotated.status().code() == absl::StatusCode::kAborted) {
    RETURN_IF_ERROR(ReloadKeyringLocked(0));
    // Once more, on the reloaded keyring.
    rotated = RotateLocked(fence, &unknown);
    if (rotated.status().code() == absl::StatusCode::kAborted) {
      return ReservationUnavailable(
          "the keyring kept changing in storage while rotating at the "
          "encryption limit");
    }
  }
  if (unknown) return ReservationUnavailable(kReservationUnknown);
  return rotated.status();
}

absl::Status Barrier::Impl::ReloadKeyringLocked(uint32_t wanted_term) {
  uint64_t epoch;
  {
    ReaderLock lock(&keys_mu_);
    if (keys_ == nullptr) return SealedError();
    if (wanted_term != 0 && keys_->terms.contains(wanted_term)) {
      return absl::OkStatus();  // another caller reloaded meanwhile
    }
    epoch = seal_epoch_;
  }
  // Read first; the root key is used only after the read, under the lock.
  ASSIGN_OR_RETURN(Entry entry, ReadRecord(keyring_path_, "keyring"));
  return InstallKeyring(entry.value, entry.version, epoch,
                        /*fresh_active_term=*/false);
}

absl::Status Barrier::Impl::ReloadKeyring() {
  MutexLock op(&op_mu_);
  return ReloadKeyringLocked(0);
}

// ------------------------------------------------------------ data path

absl::StatusOr<std::string> Barrier::Impl::SealValue(
    absl::string_view path, absl::string_view plaintext) {
  return SealWithActiveTerm(path, plaintext, nullptr);
}

bool Barrier::Impl::ClaimEncryption(Keys& keys) {
  uint64_t used = keys.active_used.load(std::memory_order_relaxed);
  do {
    if (used >= keys.active_reserved.load(std::memory_order_acquire)) {
      return false;
    }
  } while (!keys.active_used.compare_exchange_weak(used, used + 1,
                                                   std::memory_order_relaxed));
  return true;
}

absl::StatusOr<std::string> Barrier::Impl::SealCounted(
    absl::string_view path, absl::string_view plaintext, FenceToken fence) {
  for (int attempt = 0; attempt < 4; ++attempt) {
    bool exhausted = false;
    absl::StatusOr<std::string> out =
        SealWithActiveTerm(path, plaintext, &exhausted);
    if (!exhausted) return out;
    // The active term's reservation is used up: reserve another block, or
    // rotate at the limit, before sealing anything more.
    RETURN_IF_ERROR(ReserveEncryptions(fence));
  }
  return absl::UnavailableError(
      "could not reserve an encryption under the barrier key; retry");
}

static_assert(Barrier::kSealOverhead == kValueOverhead,
              "barrier.h's kSealOverhead is the stored value's overhead");

uint8_t* Barrier::Impl::LayOutForSeal(std::string* value) {
  const size_t size = value->size();
  if (value->capacity() < size + kValueOverhead) {
    // Growing in place would free the plaintext's buffer unwiped.
    std::string larger;
    larger.reserve(size + kValueOverhead);
    larger.assign(*value);
    WipeString(*value);
    value->swap(larger);
  }
  // Once sealed, the value is freed unwiped (WipedBatch::MarkSealed), so
  // nothing but the stored bytes may be left anywhere in its buffer: the
  // seal overwrites its first size + kValueOverhead bytes, and whatever
  // lies beyond them, up to the capacity, is wiped here.
  if (value->capacity() > size + kValueOverhead) {
    value->resize(value->capacity());
    WipeMemory(U8Mutable(*value) + size + kValueOverhead,
               value->size() - size - kValueOverhead);
  }
  value->resize(size + kValueOverhead);
  uint8_t* p = U8Mutable(*value);
  // The plaintext moves to where its ciphertext goes; the header is then
  // written over what was its start.
  std::memmove(p + kValueHeaderBytes, p, size);
  return p;
}

absl::StatusOr<std::string> Barrier::Impl::SealWithActiveTerm(
    absl::string_view path, absl::string_view plaintext, bool* exhausted) {
  std::string out;
  out.resize(kValueOverhead + plaintext.size());
  uint8_t* p = U8Mutable(out);
  RETURN_IF_ERROR(nonces_.Draw(p + seal::kTermBytes + 1));
  ReaderLock lock(&keys_mu_);
  if (keys_ == nullptr) return SealedError();
  // Counted under the same lock as the seal, so the count and the term the
  // value is sealed with always agree.
  if (exhausted != nullptr && !ClaimEncryption(*keys_)) {
    *exhausted = true;
    return absl::ResourceExhaustedError("encryption reservation used up");
  }
  RETURN_IF_ERROR(SealLocked(*keys_, path, plaintext, p));
  return out;
}

absl::Status Barrier::Impl::SealLocked(const Keys& keys, absl::string_view path,
                                       absl::string_view plaintext,
                                       uint8_t* p) {
  const seal::TermCipher* cipher = keys.active;
  const uint32_t term = cipher->term();
  p[0] = static_cast<uint8_t>(term >> 24);
  p[1] = static_cast<uint8_t>(term >> 16);
  p[2] = static_cast<uint8_t>(term >> 8);
  p[3] = static_cast<uint8_t>(term);
  p[4] = kValueFormat;
  return cipher->aead().Seal(
      absl::MakeConstSpan(p + seal::kTermBytes + 1, kNonceBytes), plaintext,
      path,
      absl::MakeSpan(p + kValueHeaderBytes, plaintext.size() + kTagBytes));
}

absl::Status Barrier::Impl::OpenTo(absl::string_view path,
                                   absl::string_view stored, uint8_t* out,
                                   bool* unknown_term) {
  if (stored.size() < kValueOverhead) {
    return absl::DataLossError("stored value is truncated");
  }
  const uint8_t* p = U8(stored);
  const uint32_t term = (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) |
                        (uint32_t{p[2]} << 8) | uint32_t{p[3]};
  if (p[4] != kValueFormat) {
    return absl::DataLossError("stored value has an unknown format");
  }
  ReaderLock lock(&keys_mu_);
  if (keys_ == nullptr) return SealedError();
  auto it = keys_->terms.find(term);
  if (it == keys_->terms.end()) {
    if (unknown_term != nullptr) *unknown_term = term > keys_->max_term;
    return absl::DataLossError("stored value names an unknown key term");
  }
  // `out` has room for the plaintext: stored.size() - kValueOverhead.
  if (!it->second->aead()
           .OpenInto(stored.substr(kValueHeaderBytes), path, out,
                     p + seal::kTermBytes + 1)
           .ok()) {
    return absl::DataLossError("stored value failed authentication");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> Barrier::Impl::Open(absl::string_view path,
                                                absl::string_view stored,
                                                bool* unknown_term) {
  std::string plaintext;
  if (stored.size() >= kValueOverhead) {
    plaintext.resize(stored.size() - kValueOverhead);
  }
  RETURN_IF_ERROR(OpenTo(
      path, stored, reinterpret_cast<uint8_t*>(&plaintext[0]), unknown_term));
  return plaintext;
}

namespace {

// Where OpenTo writes an in-place open of `value`: over the ciphertext.
// (A value too short to hold one fails before anything is written.)
uint8_t* InPlaceOut(std::string& value) {
  return reinterpret_cast<uint8_t*>(&value[0]) +
         std::min(value.size(), kValueHeaderBytes);
}

// After an in-place open: the plaintext without the header and tag (both
// public) around it.
void DropHeaderAndTag(std::string& value) {
  const size_t plain = value.size() - kValueOverhead;
  value.erase(0, kValueHeaderBytes);
  value.resize(plain);
}

}  // namespace

absl::Status Barrier::Impl::OpenInPlace(absl::string_view path,
                                        std::string* value,
                                        bool* unknown_term) {
  absl::Status opened = OpenTo(path, *value, InPlaceOut(*value), unknown_term);
  if (!opened.ok()) {
    // OpenTo wiped what it wrote; the rest is ciphertext, wiped anyway so
    // no caller mistakes it for a value.
    WipeString(*value);
    value->clear();
    return opened;
  }
  DropHeaderAndTag(*value);
  return absl::OkStatus();
}

absl::StatusOr<std::string> Barrier::Impl::OpenValue(absl::string_view path,
                                                     absl::string_view stored) {
  return Open(path, stored, nullptr);
}

absl::Status Barrier::Impl::OpenValueInPlace(absl::string_view path,
                                             std::string* value) {
  return OpenInPlace(path, value, nullptr);
}

absl::StatusOr<Entry> Barrier::Impl::Get(absl::string_view path) {
  OpenedValue opened;
  RETURN_IF_ERROR(GetInPlace(path, &opened));
  // The plaintext leaves as the Entry's value (the caller's to wipe).
  Entry entry = std::move(opened.stored);
  opened.offset = 0;
  opened.size = 0;
  DropHeaderAndTag(entry.value);
  return entry;
}

absl::Status Barrier::Impl::GetInPlace(absl::string_view path,
                                       OpenedValue* out) {
  out->Wipe();  // a previous read's plaintext, if the reader left it
  RETURN_IF_ERROR(CheckDataPath(path));
  if (sealed()) return SealedError();
  Entry& entry = out->stored;
  if (absl::Status got = backend_->GetInto(path, &entry); !got.ok()) {
    // The backend may have left part of a value; ciphertext, but not for
    // a reader to take as one.
    entry.value.clear();
    return got;
  }
  // Opened in the backend's own buffer: no plaintext buffer of its own to
  // allocate, and no second copy of the value.
  bool unknown_term = false;
  absl::Status opened =
      OpenTo(path, entry.value, InPlaceOut(entry.value), &unknown_term);
  if (!opened.ok() && unknown_term) {
    // A newer term: another node rotated. Follow it once. (An unknown term
    // fails before the AEAD runs, so the buffer still holds the value.)
    const uint8_t* p = U8(entry.value);
    const uint32_t term = (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) |
                          (uint32_t{p[2]} << 8) | uint32_t{p[3]};
    absl::Status reloaded;
    {
      MutexLock op(&op_mu_);
      reloaded = ReloadKeyringLocked(term);
    }
    RETURN_IF_ERROR(reloaded);
    opened = OpenTo(path, entry.value, InPlaceOut(entry.value), nullptr);
  }
  if (!opened.ok()) {
    WipeString(entry.value);
    return opened;
  }
  out->offset = kValueHeaderBytes;
  out->size = entry.value.size() - kValueOverhead;
  return absl::OkStatus();
}

void OpenedValue::Wipe() {
  if (size != 0 && offset <= stored.value.size() &&
      size <= stored.value.size() - offset) {
    WipeMemory(&stored.value[offset], size);
  }
  offset = 0;
  size = 0;
}

absl::StatusOr<uint64_t> Barrier::Impl::Put(absl::string_view path,
                                            absl::string_view plaintext,
                                            FenceToken fence) {
  RETURN_IF_ERROR(CheckDataPath(path));
  RETURN_IF_ERROR(CheckFence(fence));
  ASSIGN_OR_RETURN(std::string stored, SealCounted(path, plaintext, fence));
  return backend_->Put(path, stored, fence);
}

absl::StatusOr<uint64_t> Barrier::Impl::Delete(absl::string_view path,
                                               FenceToken fence) {
  RETURN_IF_ERROR(CheckDataPath(path));
  if (sealed()) return SealedError();
  RETURN_IF_ERROR(CheckFence(fence));
  return backend_->Delete(path, fence);
}

absl::StatusOr<std::vector<std::string>> Barrier::Impl::List(
    absl::string_view prefix) {
  RETURN_IF_ERROR(CheckDataPath(prefix));
  if (sealed()) return SealedError();
  ASSIGN_OR_RETURN(std::vector<std::string> children, backend_->List(prefix));
  // Hide the folder (or folder chain) leading to the reserved prefix.
  if (absl::StartsWith(core_prefix_, prefix)) {
    const absl::string_view rest =
        absl::string_view(core_prefix_).substr(prefix.size());
    const absl::string_view first = rest.substr(0, rest.find('/') + 1);
    if (first == rest) {  // the reserved folder is an immediate child
      children.erase(
          std::remove(children.begin(), children.end(), std::string(first)),
          children.end());
    }
  }
  return children;
}

absl::StatusOr<uint64_t> Barrier::Impl::Commit(absl::Span<const WriteOp> ops,
                                               FenceToken fence) {
  if (sealed()) return SealedError();
  RETURN_IF_ERROR(CheckFence(fence));
  std::vector<WriteOp> sealed_ops;
  sealed_ops.reserve(ops.size());
  for (const WriteOp& op : ops) {
    RETURN_IF_ERROR(CheckDataPath(op.key));
    // Everything but the value: the plaintext is sealed straight from
    // `op`, never copied.
    WriteOp& out = sealed_ops.emplace_back();
    out.kind = op.kind;
    out.key = op.key;
    out.expect = op.expect;
    out.expected_version = op.expected_version;
    if (op.kind == WriteOp::Kind::kPut) {
      ASSIGN_OR_RETURN(out.value, SealCounted(op.key, op.value, fence));
    }
  }
  return backend_->Commit(sealed_ops, fence);
}

absl::StatusOr<uint64_t> Barrier::Impl::CommitInPlace(absl::Span<WriteOp> ops,
                                                      FenceToken fence) {
  if (sealed()) return SealedError();
  RETURN_IF_ERROR(CheckFence(fence));
  // Outside the keyring's lock: each put laid out for sealing in its own
  // buffer, with its nonce. Then every put is sealed under one reader lock
  // (a put costs one claim, not a lock of its own); a used-up reservation
  // is renewed outside the lock and sealing resumes where it stopped, with
  // the nonces already drawn (none has sealed anything yet).
  // Every path is checked before any value is touched, so a refused batch
  // comes back as it was given.
  for (const WriteOp& op : ops) RETURN_IF_ERROR(CheckDataPath(op.key));
  for (WriteOp& op : ops) {
    if (op.kind == WriteOp::Kind::kPut) {
      RETURN_IF_ERROR(
          nonces_.Draw(LayOutForSeal(&op.value) + seal::kTermBytes + 1));
    }
  }
  size_t next = 0;
  int reservations = 0;  // in a row without progress
  while (true) {
    const size_t start = next;
    bool exhausted = false;
    {
      ReaderLock lock(&keys_mu_);
      if (keys_ == nullptr) return SealedError();
      for (; next < ops.size(); ++next) {
        WriteOp& op = ops[next];
        if (op.kind != WriteOp::Kind::kPut) continue;
        // Counted under the same lock as the seal (SealWithActiveTerm).
        if (!ClaimEncryption(*keys_)) {
          exhausted = true;
          break;
        }
        uint8_t* p = U8Mutable(op.value);
        const size_t size = op.value.size() - kValueOverhead;
        RETURN_IF_ERROR(SealLocked(
            *keys_, op.key,
            absl::string_view(
                reinterpret_cast<const char*>(p + kValueHeaderBytes), size),
            p));
      }
    }
    if (!exhausted) break;
    reservations = next == start ? reservations + 1 : 1;
    if (reservations > 3) {
      return absl::UnavailableError(
          "could not reserve an encryption under the barrier key; retry");
    }
    RETURN_IF_ERROR(ReserveEncryptions(fence));
  }
  return backend_->Commit(ops, fence);
}

std::vector<std::pair<uint32_t, int64_t>>
Barrier::Impl::TermCreationForTesting() {
  std::vector<std::pair<uint32_t, int64_t>> out;
  ReaderLock lock(&keys_mu_);
  if (keys_ == nullptr) return out;
  for (const auto& [term, cipher] : keys_->terms) {
    out.emplace_back(term, cipher->created_unix_micros());
  }
  return out;
}

std::vector<std::pair<const void*, size_t>>
Barrier::Impl::KeyBuffersForTesting() {
  std::vector<std::pair<const void*, size_t>> out;
  {
    ReaderLock lock(&keys_mu_);
    if (keys_ != nullptr) {
      out.emplace_back(keys_->root_key.data(), keys_->root_key.size());
      for (const auto& [term, cipher] : keys_->terms) {
        cipher->AppendBuffers(&out);
      }
    }
  }
  MutexLock lock(&progress_mu_);
  for (const SecretBytes& p : progress_) out.emplace_back(p.data(), p.size());
  return out;
}

// --------------------------------------------------------------- Barrier

absl::StatusOr<std::unique_ptr<Barrier>> Barrier::Create(
    const BarrierOptions& options) {
  if (options.backend == nullptr) {
    return absl::InvalidArgumentError("BarrierOptions.backend is required");
  }
  if (options.core_prefix.empty()) {
    return absl::InvalidArgumentError(
        "BarrierOptions.core_prefix must not be empty");
  }
  if (absl::Status s =
          ValidatePrefix(options.core_prefix, options.backend->limits());
      !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("BarrierOptions.core_prefix: ", s.message()));
  }
  if (options.max_encryptions_per_term < 1 ||
      options.encryption_reservation < 1) {
    return absl::InvalidArgumentError(
        "BarrierOptions.max_encryptions_per_term and encryption_reservation "
        "must be at least 1");
  }
  if (options.escrow && options.key_wrapper == nullptr) {
    return absl::InvalidArgumentError(
        "BarrierOptions.escrow needs a key_wrapper (auto mode)");
  }
  return std::unique_ptr<Barrier>(new Barrier(std::make_unique<Impl>(options)));
}

Barrier::Barrier(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Barrier::~Barrier() = default;

absl::StatusOr<std::vector<std::string>> Barrier::Initialize(int shares,
                                                             int threshold,
                                                             FenceToken fence) {
  return impl_->Initialize(shares, threshold, fence);
}
absl::StatusOr<SealStatus> Barrier::AutoUnseal() { return impl_->AutoUnseal(); }
absl::Status Barrier::VerifyRecoveryShares(
    absl::Span<const std::string> recovery_shares) {
  return impl_->VerifyRecoveryShares(recovery_shares);
}
absl::Status Barrier::MigrateToAuto(absl::Span<const std::string> shares,
                                    FenceToken fence) {
  return impl_->MigrateToAuto(shares, fence);
}
absl::Status Barrier::MigrateToShamir(absl::Span<const std::string> shares,
                                      FenceToken fence) {
  return impl_->MigrateToShamir(shares, fence);
}
absl::StatusOr<bool> Barrier::RewrapIfNeeded(FenceToken fence) {
  return impl_->RewrapIfNeeded(fence);
}
absl::StatusOr<bool> Barrier::RotateWrapperKey(
    absl::Span<const std::string> recovery_shares, FenceToken fence) {
  return impl_->RotateWrapperKey(recovery_shares, fence);
}
absl::StatusOr<SealStatus> Barrier::Unseal(absl::string_view share) {
  return impl_->Unseal(share);
}
void Barrier::ResetUnsealProgress() { impl_->ResetUnsealProgress(); }
void Barrier::Seal() {
  impl_->Seal();
  impl_->NotifySealed();
}
int Barrier::AddSealListener(std::function<void()> listener) {
  return impl_->AddSealListener(std::move(listener));
}
void Barrier::RemoveSealListener(int id) { impl_->RemoveSealListener(id); }
bool Barrier::sealed() const { return impl_->sealed(); }
absl::StatusOr<SealStatus> Barrier::Status() { return impl_->Status(); }
absl::StatusOr<std::vector<std::string>> Barrier::Rekey(
    absl::Span<const std::string> current_shares, int new_shares,
    int new_threshold, FenceToken fence) {
  return impl_->Rekey(current_shares, new_shares, new_threshold, fence);
}
absl::Status Barrier::CompleteRekey(absl::Span<const std::string> new_shares,
                                    FenceToken fence) {
  return impl_->CompleteRekey(new_shares, fence);
}
absl::Status Barrier::CancelRekey(FenceToken fence) {
  return impl_->CancelRekey(fence);
}
absl::StatusOr<uint32_t> Barrier::Rotate(FenceToken fence) {
  return impl_->Rotate(fence);
}
absl::Status Barrier::ReloadKeyring() { return impl_->ReloadKeyring(); }
absl::StatusOr<Entry> Barrier::Get(absl::string_view path) {
  return impl_->Get(path);
}
absl::Status Barrier::GetInPlace(absl::string_view path, OpenedValue* out) {
  return impl_->GetInPlace(path, out);
}
absl::StatusOr<uint64_t> Barrier::Put(absl::string_view path,
                                      absl::string_view plaintext,
                                      FenceToken fence) {
  return impl_->Put(path, plaintext, fence);
}
absl::StatusOr<uint64_t> Barrier::Delete(absl::string_view path,
                                         FenceToken fence) {
  return impl_->Delete(path, fence);
}
absl::StatusOr<std::vector<std::string>> Barrier::List(
    absl::string_view prefix) {
  return impl_->List(prefix);
}
absl::StatusOr<uint64_t> Barrier::Commit(absl::Span<const WriteOp> ops,
                                         FenceToken fence) {
  return impl_->Commit(ops, fence);
}
absl::StatusOr<uint64_t> Barrier::CommitInPlace(absl::Span<WriteOp> ops,
                                                FenceToken fence) {
  return impl_->CommitInPlace(ops, fence);
}
Backend* Barrier::backend() const { return impl_->backend(); }

}  // namespace strongbox
