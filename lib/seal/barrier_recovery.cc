// Barrier::Impl's operations authorized by the recovery shares in auto mode
// (strongbox/barrier.h): wrapper key rotation and the two phases of a rekey
// of the recovery key; and the unauthorized rewrap primitive.
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "lib/seal/barrier_impl.h"
#include "lib/seal/records.h"
#include "lib/util/status_macros.h"
#include "strongbox/key_wrapper.h"

namespace strongbox {

using seal::kKeyBytes;
using seal::WrapperError;

// Wrapper key rotation: blobs made under an older wrapper key are rewrapped
// under the current one (the old key must stay in the wrapper until then).
absl::StatusOr<bool> Barrier::Impl::RewrapIfNeeded(FenceToken fence) {
  RETURN_IF_ERROR(CheckFence(fence));
  MutexLock op(&op_mu_);
  if (key_wrapper_ == nullptr) return false;
  uint64_t config_version = 0;
  ASSIGN_OR_RETURN(seal::SealConfigRecord config, ReadConfig(&config_version));
  if (!config.auto_unseal) return false;
  ASSIGN_OR_RETURN(Entry root_entry,
                   ReadRecord(root_wrapped_path_, "wrapped root key"));
  ASSIGN_OR_RETURN(Entry recovery_entry,
                   ReadRecord(recovery_wrapped_path_, "wrapped recovery key"));
  ASSIGN_OR_RETURN(WrappedSecret root_blob,
                   seal::ParseWrappedKey(root_entry.value));
  ASSIGN_OR_RETURN(WrappedSecret recovery_blob,
                   seal::ParseWrappedKey(recovery_entry.value));
  if (!key_wrapper_->NeedsRewrap(root_blob) &&
      !key_wrapper_->NeedsRewrap(recovery_blob)) {
    return false;
  }
  std::vector<WriteOp> ops = {
      WriteOp::Check(config_path_).IfVersion(config_version)};
  std::string probe_key = root_wrapped_path_;
  std::string probe_value = root_entry.value;
  const struct {
    const std::string* path;
    const Entry* entry;
    const WrappedSecret* blob;
  } records[] = {{&root_wrapped_path_, &root_entry, &root_blob},
                 {&recovery_wrapped_path_, &recovery_entry, &recovery_blob}};
  for (const auto& r : records) {
    if (!key_wrapper_->NeedsRewrap(*r.blob)) continue;
    absl::StatusOr<SecretBytes> plain = key_wrapper_->Unwrap(*r.blob, *r.path);
    if (!plain.ok())
      return WrapperError("unwrapping to rewrap", plain.status());
    absl::StatusOr<WrappedSecret> fresh =
        key_wrapper_->Wrap(plain->view(), *r.path);
    plain->Clear();
    if (!fresh.ok()) return WrapperError("rewrapping", fresh.status());
    std::string record = seal::SerializeWrappedKey(*fresh);
    probe_key = *r.path;
    probe_value = record;
    ops.push_back(WriteOp::Put(*r.path, record).IfVersion(r.entry->version));
  }
  absl::StatusOr<uint64_t> rev =
      CommitConfirmed(ops, fence, probe_key, probe_value);
  if (!rev.ok()) return rev.status();
  return true;
}

// ------------------------------------------- wrapper key rotation, rekey
// Both are authorized by a threshold of the current recovery shares,
// checked against the wrapped recovery key before anything is made.

absl::StatusOr<bool> Barrier::Impl::RotateWrapperKey(
    absl::Span<const std::string> shares, FenceToken fence) {
  RETURN_IF_ERROR(CheckFence(fence));
  MutexLock op(&op_mu_);
  if (key_wrapper_ == nullptr) {
    return absl::FailedPreconditionError(
        "wrapper key rotation needs the key wrapper");
  }
  uint64_t config_version = 0;
  ASSIGN_OR_RETURN(seal::SealConfigRecord config, ReadConfig(&config_version));
  if (!config.auto_unseal) {
    return absl::FailedPreconditionError(
        "the stored seal is Shamir: there is no wrapper key to rotate");
  }
  if (static_cast<int>(shares.size()) < config.threshold) {
    return absl::InvalidArgumentError(
        absl::StrCat("recovery shares below the threshold (", shares.size(),
                     " of ", config.threshold, ")"));
  }
  ASSIGN_OR_RETURN(Entry root_entry,
                   ReadRecord(root_wrapped_path_, "wrapped root key"));
  ASSIGN_OR_RETURN(Entry recovery_entry,
                   ReadRecord(recovery_wrapped_path_, "wrapped recovery key"));
  ASSIGN_OR_RETURN(WrappedSecret root_blob,
                   seal::ParseWrappedKey(root_entry.value));
  ASSIGN_OR_RETURN(WrappedSecret recovery_blob,
                   seal::ParseWrappedKey(recovery_entry.value));
  ASSIGN_OR_RETURN(
      SecretBytes recovery,
      OpenRecoveryKey(shares, config.threshold, recovery_entry.value,
                      "recovery shares do not match the recovery key"));
  const bool root_old = key_wrapper_->NeedsRewrap(root_blob);
  const bool recovery_old = key_wrapper_->NeedsRewrap(recovery_blob);
  if (!root_old && !recovery_old) return false;

  // Every unwrap and wrap before the one commit: a wrapper failing half way
  // stores nothing, and the blobs under the old key keep unwrapping.
  std::vector<WriteOp> ops = {
      WriteOp::Check(config_path_).IfVersion(config_version)};
  std::string probe_key, probe_value;
  if (root_old) {
    absl::StatusOr<SecretBytes> root =
        key_wrapper_->Unwrap(root_blob, root_wrapped_path_);
    if (!root.ok()) {
      return WrapperError("unwrapping the root key", root.status());
    }
    absl::StatusOr<WrappedSecret> fresh =
        key_wrapper_->Wrap(root->view(), root_wrapped_path_);
    root->Clear();
    if (!fresh.ok()) {
      return WrapperError("wrapping the root key", fresh.status());
    }
    probe_key = root_wrapped_path_;
    probe_value = seal::SerializeWrappedKey(*fresh);
    ops.push_back(WriteOp::Put(root_wrapped_path_, probe_value)
                      .IfVersion(root_entry.version));
  } else {
    ops.push_back(
        WriteOp::Check(root_wrapped_path_).IfVersion(root_entry.version));
  }
  if (recovery_old) {
    absl::StatusOr<WrappedSecret> fresh =
        key_wrapper_->Wrap(recovery.view(), recovery_wrapped_path_);
    recovery.Clear();
    if (!fresh.ok()) {
      return WrapperError("wrapping the recovery key", fresh.status());
    }
    std::string record = seal::SerializeWrappedKey(*fresh);
    if (probe_key.empty()) {
      probe_key = recovery_wrapped_path_;
      probe_value = record;
    }
    ops.push_back(WriteOp::Put(recovery_wrapped_path_, std::move(record))
                      .IfVersion(recovery_entry.version));
  } else {
    ops.push_back(WriteOp::Check(recovery_wrapped_path_)
                      .IfVersion(recovery_entry.version));
  }
  recovery.Clear();
  absl::StatusOr<uint64_t> rev =
      CommitConfirmed(ops, fence, probe_key, probe_value);
  if (!rev.ok()) {
    if (rev.status().code() == absl::StatusCode::kAborted) {
      return absl::AbortedError(
          "seal configuration changed during the wrapper key rotation; retry");
    }
    return absl::Status(
        rev.status().code(),
        absl::StrCat(
            rev.status().message(),
            "; the stored keys stay under the old wrapper key until "
            "a rotation applies: retry (keep the old key until then)"));
  }
  return true;
}

// Phase one of a rekey of the recovery key: the new recovery key is wrapped
// and parked in the pending record with its config (and, with escrow, the
// root key sealed under it). The current recovery shares keep working.
absl::StatusOr<std::vector<std::string>> Barrier::Impl::RekeyAutoLocked(
    absl::Span<const std::string> current_shares, int new_shares,
    int new_threshold, const seal::SealConfigRecord& config,
    uint64_t config_version, FenceToken fence) {
  if (key_wrapper_ == nullptr) {
    return absl::FailedPreconditionError(
        "rekey of the recovery key needs the key wrapper");
  }
  if (static_cast<int>(current_shares.size()) < config.threshold) {
    return absl::InvalidArgumentError(
        absl::StrCat("recovery shares below the threshold (",
                     current_shares.size(), " of ", config.threshold, ")"));
  }
  // Every read before any key exists.
  ASSIGN_OR_RETURN(Entry recovery_entry,
                   ReadRecord(recovery_wrapped_path_, "wrapped recovery key"));
  ASSIGN_OR_RETURN(Entry root_wrapped_entry,
                   ReadRecord(root_wrapped_path_, "wrapped root key"));
  ASSIGN_OR_RETURN(std::optional<Entry> pending_entry,
                   ReadOptional(pending_path_));
  ASSIGN_OR_RETURN(WrappedSecret root_blob,
                   seal::ParseWrappedKey(root_wrapped_entry.value));
  {
    absl::StatusOr<SecretBytes> current =
        OpenRecoveryKey(current_shares, config.threshold, recovery_entry.value,
                        "recovery shares do not match the recovery key");
    if (!current.ok()) return current.status();
    current->Clear();
  }
  SecretBytes new_recovery = SecretBytes::Random(kKeyBytes);
  absl::StatusOr<WrappedSecret> wrapped =
      key_wrapper_->Wrap(new_recovery.view(), recovery_wrapped_path_);
  if (!wrapped.ok()) {
    return WrapperError("wrapping the new recovery key", wrapped.status());
  }
  std::string escrow_record;
  if (config.escrow) {
    absl::StatusOr<SecretBytes> root =
        key_wrapper_->Unwrap(root_blob, root_wrapped_path_);
    if (!root.ok()) {
      return WrapperError("unwrapping the root key", root.status());
    }
    absl::StatusOr<std::string> record =
        seal::SealRecord(new_recovery, root_key_path_, root->view());
    root->Clear();
    if (!record.ok()) return record.status();
    escrow_record = *std::move(record);
  }
  absl::StatusOr<std::vector<std::string>> out =
      MakeShares(new_recovery, new_shares, new_threshold);
  new_recovery.Clear();
  if (!out.ok()) return out.status();

  seal::PendingRekeyRecord pending_record;
  pending_record.config = {new_shares, new_threshold, /*auto_unseal=*/true,
                           config.escrow};
  pending_record.root_record = std::move(escrow_record);
  pending_record.recovery_wrapped = seal::SerializeWrappedKey(*wrapped);
  const std::string pending = seal::SerializePendingRekey(pending_record);
  WriteOp put_pending = WriteOp::Put(pending_path_, pending);
  if (pending_entry.has_value()) {
    put_pending.IfVersion(pending_entry->version);
  } else {
    put_pending.IfAbsent();
  }
  const WriteOp ops[] = {
      WriteOp::Check(config_path_).IfVersion(config_version),
      WriteOp::Check(recovery_wrapped_path_).IfVersion(recovery_entry.version),
      std::move(put_pending),
  };
  absl::StatusOr<uint64_t> rev =
      CommitConfirmed(ops, fence, pending_path_, pending);
  if (!rev.ok()) {
    // The current recovery shares still hold whatever became of it.
    for (std::string& share : *out) WipeString(share);
    if (rev.status().code() == absl::StatusCode::kAborted) {
      return absl::AbortedError(
          "seal configuration changed during rekey; retry");
    }
    return absl::Status(
        rev.status().code(),
        absl::StrCat(rev.status().message(),
                     "; the current recovery shares remain valid, retry "
                     "Rekey"));
  }
  return out;
}

// Phase two: a threshold of the new shares must match the pending recovery
// key (and, with escrow, open the pending root record and through it the
// keyring); then config, wrapped recovery key and escrow record switch in
// one commit and the old recovery shares stop working.
absl::Status Barrier::Impl::CompleteRekeyAutoLocked(
    absl::Span<const std::string> new_shares,
    const seal::SealConfigRecord& config, uint64_t config_version,
    FenceToken fence) {
  if (key_wrapper_ == nullptr) {
    return absl::FailedPreconditionError(
        "rekey of the recovery key needs the key wrapper");
  }
  ASSIGN_OR_RETURN(Entry recovery_entry,
                   ReadRecord(recovery_wrapped_path_, "wrapped recovery key"));
  ASSIGN_OR_RETURN(Entry keyring_entry, ReadRecord(keyring_path_, "keyring"));
  ASSIGN_OR_RETURN(std::optional<Entry> escrow_entry,
                   ReadOptional(root_key_path_));
  ASSIGN_OR_RETURN(std::optional<Entry> pending_entry,
                   ReadOptional(pending_path_));
  if (!pending_entry.has_value()) {
    // Nothing pending: if these are the stored recovery shares, an earlier
    // CompleteRekey applied and lost its answer.
    absl::StatusOr<SecretBytes> stored = OpenRecoveryKey(
        new_shares, config.threshold, recovery_entry.value, "no match");
    if (stored.ok()) return absl::OkStatus();
    if (stored.status().code() == absl::StatusCode::kInvalidArgument) {
      return absl::FailedPreconditionError("no rekey is pending");
    }
    return stored.status();  // the wrapper's error: cannot tell yet
  }
  ASSIGN_OR_RETURN(seal::PendingRekeyRecord pending,
                   seal::ParsePendingRekey(pending_entry->value));
  if (!pending.auto_mode()) {
    return absl::FailedPreconditionError(
        "the pending rekey is of Shamir unseal shares, made before a seal "
        "migration to auto; cancel it and rekey again");
  }
  if (static_cast<int>(new_shares.size()) < pending.config.threshold) {
    return absl::InvalidArgumentError(
        "completing a rekey needs at least the new threshold of new shares");
  }
  ASSIGN_OR_RETURN(
      SecretBytes new_recovery,
      OpenRecoveryKey(new_shares, pending.config.threshold,
                      pending.recovery_wrapped,
                      "the new shares do not match the pending recovery key"));
  if (pending.config.escrow) {
    absl::StatusOr<seal::SealedRecordParts> parts =
        seal::ParseSealedRecord(pending.root_record);
    if (!parts.ok()) return absl::DataLossError("pending escrow record");
    absl::StatusOr<SecretBytes> root =
        seal::OpenRecord(new_recovery, root_key_path_, *parts);
    new_recovery.Clear();
    if (!root.ok() || root->size() != kKeyBytes) {
      return absl::DataLossError(
          "the pending escrow record does not open under the new recovery "
          "key");
    }
    absl::StatusOr<std::unique_ptr<Keys>> keys =
        OpenKeyring(*std::move(root), keyring_entry.value,
                    keyring_entry.version, /*fresh_active_term=*/false);
    if (!keys.ok()) {
      return absl::DataLossError(
          "the pending escrow record holds a root key that does not open the "
          "keyring");
    }
  }
  new_recovery.Clear();

  seal::SealConfigRecord next{pending.config.shares, pending.config.threshold,
                              /*auto_unseal=*/true, config.escrow};
  std::vector<WriteOp> ops = {
      WriteOp::Put(config_path_, seal::SerializeSealConfig(next))
          .IfVersion(config_version),
      WriteOp::Put(recovery_wrapped_path_, pending.recovery_wrapped)
          .IfVersion(recovery_entry.version),
      WriteOp::Delete(pending_path_).IfVersion(pending_entry->version),
  };
  if (config.escrow) {
    if (!pending.config.escrow) {
      return absl::FailedPreconditionError(
          "the pending rekey has no escrow record; cancel it and rekey again");
    }
    WriteOp put_escrow = WriteOp::Put(root_key_path_, pending.root_record);
    if (escrow_entry.has_value()) {
      put_escrow.IfVersion(escrow_entry->version);
    } else {
      put_escrow.IfAbsent();
    }
    ops.push_back(std::move(put_escrow));
  }
  absl::StatusOr<uint64_t> rev = CommitConfirmed(
      ops, fence, recovery_wrapped_path_, pending.recovery_wrapped);
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

}  // namespace strongbox
