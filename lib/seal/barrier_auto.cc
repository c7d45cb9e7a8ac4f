// Barrier::Impl in auto mode (strongbox/barrier.h, "Auto-unseal"): the
// root key wrapped by the host's KeyWrapper, recovery shares, AutoUnseal.
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "lib/seal/barrier_impl.h"
#include "lib/seal/records.h"
#include "lib/util/status_macros.h"
#include "strongbox/key_wrapper.h"

namespace strongbox {
using seal::kKeyBytes;
using seal::WrapperError;

namespace {

// A seal migration's commit failed: nothing changed, or (ABORTED) someone
// else changed the seal configuration meanwhile.
absl::Status MigrationCommitError(const absl::Status& failed) {
  if (failed.code() == absl::StatusCode::kAborted) {
    return absl::AbortedError(
        "seal configuration changed during the migration; retry");
  }
  return absl::Status(
      failed.code(),
      absl::StrCat(failed.message(),
                   "; the same shares stay valid: retry the migration"));
}

}  // namespace

absl::StatusOr<std::vector<std::string>> Barrier::Impl::InitializeAutoLocked(
    int shares, int threshold, FenceToken fence) {
  RETURN_IF_ERROR(seal::ValidateSealParameters(shares, threshold));
  constexpr int kPaths = 5;
  const std::string* const paths[kPaths] = {&config_path_, &root_key_path_,
                                            &keyring_path_, &root_wrapped_path_,
                                            &recovery_wrapped_path_};
  std::optional<Entry> existing[kPaths];
  // As in Shamir mode, recognized by its wrapped root key record.
  RETURN_IF_ERROR(ReadInitRecords(paths, /*root_index=*/3, existing));

  SecretBytes root_key = SecretBytes::Random(kKeyBytes);
  SecretBytes recovery_key = SecretBytes::Random(kKeyBytes);
  SecretBytes keyring_plain = NewKeyringPlain();
  ASSIGN_OR_RETURN(
      std::string keyring_record,
      seal::SealRecord(root_key, keyring_path_, keyring_plain.view()));
  keyring_plain.Clear();

  // Every wrap before anything is stored: a wrapper that fails on any of
  // them leaves the backend untouched, and a retry starts afresh (D6).
  absl::StatusOr<WrappedSecret> wrapped_root =
      key_wrapper_->Wrap(root_key.view(), root_wrapped_path_);
  if (!wrapped_root.ok()) {
    return WrapperError("wrapping the root key", wrapped_root.status());
  }
  absl::StatusOr<WrappedSecret> wrapped_recovery =
      key_wrapper_->Wrap(recovery_key.view(), recovery_wrapped_path_);
  if (!wrapped_recovery.ok()) {
    return WrapperError("wrapping the recovery key", wrapped_recovery.status());
  }
  std::string escrow_record;
  if (escrow_) {
    ASSIGN_OR_RETURN(
        escrow_record,
        seal::SealRecord(recovery_key, root_key_path_, root_key.view()));
  }
  root_key.Clear();
  ASSIGN_OR_RETURN(std::vector<std::string> out,
                   MakeShares(recovery_key, shares, threshold));
  recovery_key.Clear();

  const std::string root_record = seal::SerializeWrappedKey(*wrapped_root);
  seal::SealConfigRecord config{shares, threshold, /*auto_unseal=*/true,
                                escrow_};
  auto expect = [&](WriteOp op, int i) {
    return ExpectAsRead(std::move(op), existing[i]);
  };
  std::vector<WriteOp> ops = {
      expect(WriteOp::Put(config_path_, seal::SerializeSealConfig(config)), 0),
      expect(WriteOp::Put(keyring_path_, keyring_record), 2),
      expect(WriteOp::Put(root_wrapped_path_, root_record), 3),
      expect(WriteOp::Put(recovery_wrapped_path_,
                          seal::SerializeWrappedKey(*wrapped_recovery)),
             4),
  };
  if (escrow_) {
    ops.push_back(expect(WriteOp::Put(root_key_path_, escrow_record), 1));
  } else if (existing[1].has_value()) {
    ops.push_back(
        WriteOp::Delete(root_key_path_).IfVersion(existing[1]->version));
  }
  bool unknown = false;
  absl::StatusOr<uint64_t> rev =
      CommitConfirmed(ops, fence, root_wrapped_path_, root_record, &unknown);
  if (!rev.ok()) {
    for (std::string& share : out) WipeString(share);
    if (rev.status().code() == absl::StatusCode::kAborted) {
      lost_init_root_record_.clear();
      return absl::FailedPreconditionError("barrier is already initialized");
    }
    if (unknown) {
      lost_init_root_record_ = root_record;  // ciphertext, not a secret
      return absl::Status(
          rev.status().code(),
          absl::StrCat(rev.status().message(),
                       "; call Initialize on this barrier again: it replaces "
                       "the unconfirmed attempt and returns new shares"));
    }
    return rev.status();
  }
  lost_init_root_record_.clear();
  return out;
}

absl::StatusOr<SealStatus> Barrier::Impl::AutoUnseal() {
  MutexLock op(&op_mu_);
  if (key_wrapper_ == nullptr) {
    return absl::FailedPreconditionError(
        "auto-unseal needs a key wrapper (BarrierOptions::key_wrapper)");
  }
  ASSIGN_OR_RETURN(seal::SealConfigRecord config, ReadConfig());
  if (!config.auto_unseal) {
    return absl::FailedPreconditionError(
        "the stored seal is Shamir: unseal with shares");
  }
  if (!sealed()) return StatusLocked(&config);
  // Records first, keys after: no key is held across backend I/O.
  ASSIGN_OR_RETURN(Entry wrapped_entry,
                   ReadRecord(root_wrapped_path_, "wrapped root key"));
  ASSIGN_OR_RETURN(Entry keyring_entry, ReadRecord(keyring_path_, "keyring"));
  ASSIGN_OR_RETURN(WrappedSecret wrapped,
                   seal::ParseWrappedKey(wrapped_entry.value));
  uint64_t epoch;
  {
    ReaderLock lock(&keys_mu_);
    epoch = seal_epoch_;
  }
  absl::StatusOr<SecretBytes> root =
      key_wrapper_->Unwrap(wrapped, root_wrapped_path_);
  if (!root.ok()) return WrapperError("unwrapping the root key", root.status());
  if (root->size() != kKeyBytes) {
    return absl::DataLossError(
        "key wrapper: the unwrapped root key has the wrong length");
  }
  absl::StatusOr<std::unique_ptr<Keys>> keys =
      OpenKeyring(*std::move(root), keyring_entry.value, keyring_entry.version,
                  /*fresh_active_term=*/false);
  if (!keys.ok()) {
    return absl::Status(
        keys.status().code(),
        absl::StrCat("key wrapper: the unwrapped root key does not open the "
                     "keyring (a different key under the same id?): ",
                     keys.status().message()));
  }
  {
    WriterLock lock(&keys_mu_);
    if (seal_epoch_ != epoch) {
      return absl::AbortedError("barrier was sealed while auto-unsealing");
    }
    keys_ = *std::move(keys);
    sealed_.store(false, std::memory_order_release);
  }
  return StatusLocked(&config);
}

absl::StatusOr<SecretBytes> Barrier::Impl::OpenRecoveryKey(
    absl::Span<const std::string> shares, int threshold,
    absl::string_view wrapped_record, absl::string_view mismatch) {
  if (static_cast<int>(shares.size()) < threshold) {
    return absl::InvalidArgumentError(
        absl::StrCat("recovery shares below the threshold (", shares.size(),
                     " of ", threshold, ")"));
  }
  ASSIGN_OR_RETURN(WrappedSecret wrapped,
                   seal::ParseWrappedKey(wrapped_record));
  ASSIGN_OR_RETURN(SecretBytes presented, CombineShares(shares, threshold));
  absl::StatusOr<SecretBytes> stored =
      key_wrapper_->Unwrap(wrapped, recovery_wrapped_path_);
  if (!stored.ok()) {
    return WrapperError("unwrapping the recovery key", stored.status());
  }
  if (!stored->Equals(presented)) {
    return absl::InvalidArgumentError(mismatch);
  }
  return presented;
}

absl::Status Barrier::Impl::VerifyRecoveryShares(
    absl::Span<const std::string> shares) {
  MutexLock op(&op_mu_);
  ASSIGN_OR_RETURN(seal::SealConfigRecord config, ReadConfig());
  if (!config.auto_unseal || key_wrapper_ == nullptr) {
    return absl::FailedPreconditionError(
        "recovery shares exist only in auto mode with a key wrapper");
  }
  if (static_cast<int>(shares.size()) < config.threshold) {
    return absl::InvalidArgumentError(
        absl::StrCat("recovery shares below the threshold (", shares.size(),
                     " of ", config.threshold, ")"));
  }
  ASSIGN_OR_RETURN(Entry entry,
                   ReadRecord(recovery_wrapped_path_, "wrapped recovery key"));
  return OpenRecoveryKey(shares, config.threshold, entry.value,
                         "recovery shares do not match the recovery key")
      .status();
}

// ---------------------------------------------------------- seal migration
// Both directions keep the operator's shares: Shamir -> auto makes the
// unseal key the recovery key (the unseal shares become the recovery
// shares), auto -> Shamir the recovery key the unseal key. So whatever
// becomes of the one commit (applied, refused, unknown), the same shares
// stay valid (D7), and a retry after an unknown outcome answers OK once
// the stored seal is already the target.

absl::Status Barrier::Impl::MigrateToAuto(absl::Span<const std::string> shares,
                                          FenceToken fence) {
  RETURN_IF_ERROR(CheckFence(fence));
  MutexLock op(&op_mu_);
  if (key_wrapper_ == nullptr) {
    return absl::FailedPreconditionError(
        "seal migration to auto-unseal needs a key wrapper");
  }
  uint64_t config_version = 0;
  ASSIGN_OR_RETURN(seal::SealConfigRecord config, ReadConfig(&config_version));
  if (config.auto_unseal) {
    // Already migrated (an earlier call whose answer was lost): OK if
    // these are the recovery shares.
    if (static_cast<int>(shares.size()) < config.threshold) {
      return absl::InvalidArgumentError(
          "shares below the threshold (the seal is already auto)");
    }
    ASSIGN_OR_RETURN(Entry entry, ReadRecord(recovery_wrapped_path_,
                                             "wrapped recovery key"));
    ASSIGN_OR_RETURN(WrappedSecret wrapped, seal::ParseWrappedKey(entry.value));
    ASSIGN_OR_RETURN(SecretBytes presented,
                     CombineShares(shares, config.threshold));
    absl::StatusOr<SecretBytes> stored =
        key_wrapper_->Unwrap(wrapped, recovery_wrapped_path_);
    if (!stored.ok()) {
      return WrapperError("unwrapping the recovery key", stored.status());
    }
    if (!stored->Equals(presented)) {
      return absl::InvalidArgumentError(
          "the seal is already auto, and these are not its recovery shares");
    }
    return absl::OkStatus();
  }
  if (static_cast<int>(shares.size()) < config.threshold) {
    return absl::InvalidArgumentError(
        absl::StrCat("unseal shares below the threshold (", shares.size(),
                     " of ", config.threshold, ")"));
  }
  ASSIGN_OR_RETURN(Entry root_entry, ReadRecord(root_key_path_, "root key"));
  ASSIGN_OR_RETURN(Entry keyring_entry, ReadRecord(keyring_path_, "keyring"));
  ASSIGN_OR_RETURN(SecretBytes unseal_key,
                   CombineShares(shares, config.threshold));
  ASSIGN_OR_RETURN(SecretBytes root, OpenRootKey(unseal_key, root_entry.value));
  {
    // Never migrate to a root key that does not reach the data.
    absl::StatusOr<std::unique_ptr<Keys>> keys =
        OpenKeyring(SecretBytes::Copy(root.view()), keyring_entry.value,
                    keyring_entry.version, /*fresh_active_term=*/false);
    if (!keys.ok()) return keys.status();
  }
  absl::StatusOr<WrappedSecret> wrapped_root =
      key_wrapper_->Wrap(root.view(), root_wrapped_path_);
  root.Clear();
  if (!wrapped_root.ok()) {
    return WrapperError("wrapping the root key", wrapped_root.status());
  }
  absl::StatusOr<WrappedSecret> wrapped_recovery =
      key_wrapper_->Wrap(unseal_key.view(), recovery_wrapped_path_);
  unseal_key.Clear();
  if (!wrapped_recovery.ok()) {
    return WrapperError("wrapping the recovery key", wrapped_recovery.status());
  }
  const std::string root_record = seal::SerializeWrappedKey(*wrapped_root);
  seal::SealConfigRecord migrated{config.shares, config.threshold,
                                  /*auto_unseal=*/true, escrow_};
  std::vector<WriteOp> ops = {
      WriteOp::Put(config_path_, seal::SerializeSealConfig(migrated))
          .IfVersion(config_version),
      WriteOp::Put(root_wrapped_path_, root_record),
      WriteOp::Put(recovery_wrapped_path_,
                   seal::SerializeWrappedKey(*wrapped_recovery)),
  };
  // With escrow the Shamir record stays: it is the root key under the
  // unseal key, which is now the recovery key.
  if (!escrow_) {
    ops.push_back(
        WriteOp::Delete(root_key_path_).IfVersion(root_entry.version));
  } else {
    ops.push_back(WriteOp::Check(root_key_path_).IfVersion(root_entry.version));
  }
  absl::StatusOr<uint64_t> rev =
      CommitConfirmed(ops, fence, root_wrapped_path_, root_record);
  if (!rev.ok()) return MigrationCommitError(rev.status());
  WipeProgress();
  return absl::OkStatus();
}

absl::Status Barrier::Impl::MigrateToShamir(
    absl::Span<const std::string> shares, FenceToken fence) {
  RETURN_IF_ERROR(CheckFence(fence));
  MutexLock op(&op_mu_);
  uint64_t config_version = 0;
  ASSIGN_OR_RETURN(seal::SealConfigRecord config, ReadConfig(&config_version));
  if (static_cast<int>(shares.size()) < config.threshold) {
    return absl::InvalidArgumentError(
        absl::StrCat("recovery shares below the threshold (", shares.size(),
                     " of ", config.threshold, ")"));
  }
  if (!config.auto_unseal) {
    // Already migrated: OK if these shares open the root key.
    ASSIGN_OR_RETURN(Entry root_entry, ReadRecord(root_key_path_, "root key"));
    ASSIGN_OR_RETURN(SecretBytes unseal_key,
                     CombineShares(shares, config.threshold));
    RETURN_IF_ERROR(OpenRootKey(unseal_key, root_entry.value).status());
    return absl::OkStatus();
  }
  if (key_wrapper_ == nullptr) {
    return absl::FailedPreconditionError(
        "seal migration from auto-unseal needs the key wrapper");
  }
  ASSIGN_OR_RETURN(Entry root_wrapped_entry,
                   ReadRecord(root_wrapped_path_, "wrapped root key"));
  ASSIGN_OR_RETURN(Entry recovery_entry,
                   ReadRecord(recovery_wrapped_path_, "wrapped recovery key"));
  ASSIGN_OR_RETURN(Entry keyring_entry, ReadRecord(keyring_path_, "keyring"));
  ASSIGN_OR_RETURN(std::optional<Entry> escrow_entry,
                   ReadOptional(root_key_path_));
  ASSIGN_OR_RETURN(WrappedSecret wrapped_root,
                   seal::ParseWrappedKey(root_wrapped_entry.value));
  ASSIGN_OR_RETURN(WrappedSecret wrapped_recovery,
                   seal::ParseWrappedKey(recovery_entry.value));
  ASSIGN_OR_RETURN(SecretBytes presented,
                   CombineShares(shares, config.threshold));
  absl::StatusOr<SecretBytes> recovery =
      key_wrapper_->Unwrap(wrapped_recovery, recovery_wrapped_path_);
  if (!recovery.ok()) {
    return WrapperError("unwrapping the recovery key", recovery.status());
  }
  if (!recovery->Equals(presented)) {
    return absl::InvalidArgumentError(
        "recovery shares do not match the recovery key");
  }
  absl::StatusOr<SecretBytes> root =
      key_wrapper_->Unwrap(wrapped_root, root_wrapped_path_);
  if (!root.ok()) return WrapperError("unwrapping the root key", root.status());
  {
    absl::StatusOr<std::unique_ptr<Keys>> keys =
        OpenKeyring(SecretBytes::Copy(root->view()), keyring_entry.value,
                    keyring_entry.version, /*fresh_active_term=*/false);
    if (!keys.ok()) return keys.status();
  }
  ASSIGN_OR_RETURN(std::string root_record,
                   seal::SealRecord(presented, root_key_path_, root->view()));
  root->Clear();
  presented.Clear();
  WriteOp put_root = WriteOp::Put(root_key_path_, root_record);
  if (escrow_entry.has_value()) {
    put_root.IfVersion(escrow_entry->version);
  } else {
    put_root.IfAbsent();
  }
  const WriteOp ops[] = {
      WriteOp::Put(config_path_,
                   seal::SerializeSealConfig({config.shares, config.threshold}))
          .IfVersion(config_version),
      std::move(put_root),
      WriteOp::Delete(root_wrapped_path_).IfVersion(root_wrapped_entry.version),
      WriteOp::Delete(recovery_wrapped_path_).IfVersion(recovery_entry.version),
  };
  absl::StatusOr<uint64_t> rev =
      CommitConfirmed(ops, fence, root_key_path_, root_record);
  if (!rev.ok()) return MigrationCommitError(rev.status());
  return absl::OkStatus();
}

}  // namespace strongbox
