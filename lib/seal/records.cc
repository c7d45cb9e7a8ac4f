#include "lib/seal/records.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"
#include "lib/crypto/aead.h"
#include "lib/crypto/random.h"
#include "lib/seal/records.pb.h"
#include "lib/util/status_macros.h"

namespace strongbox::seal {

absl::Status ValidateSealParameters(int shares, int threshold) {
  if (shares < 1) {
    return absl::InvalidArgumentError("shares must be at least 1");
  }
  if (shares > 255) {
    return absl::InvalidArgumentError("shares cannot exceed 255");
  }
  if (threshold < 1 || threshold > shares) {
    return absl::InvalidArgumentError(
        "threshold must be between 1 and the number of shares");
  }
  if (shares > 1 && threshold < 2) {
    return absl::InvalidArgumentError(
        "threshold must be at least 2 when there is more than one share");
  }
  return absl::OkStatus();
}

std::string SerializeSealConfig(const SealConfigRecord& config) {
  SealConfig msg;
  msg.set_format(kRecordFormat);
  msg.set_shares(static_cast<uint32_t>(config.shares));
  msg.set_threshold(static_cast<uint32_t>(config.threshold));
  msg.set_auto_unseal(config.auto_unseal);
  msg.set_escrow(config.escrow);
  return msg.SerializeAsString();
}

absl::StatusOr<SealConfigRecord> ParseSealConfig(absl::string_view bytes) {
  SealConfig msg;
  if (!msg.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return absl::DataLossError("seal config record does not parse");
  }
  if (msg.format() != kRecordFormat) {
    return absl::DataLossError("seal config record has an unknown format");
  }
  if (msg.shares() > 255 || msg.threshold() > 255 ||
      !ValidateSealParameters(static_cast<int>(msg.shares()),
                              static_cast<int>(msg.threshold()))
           .ok()) {
    return absl::DataLossError("seal config record has invalid parameters");
  }
  if (msg.escrow() && !msg.auto_unseal()) {
    return absl::DataLossError("seal config record has escrow without auto");
  }
  return SealConfigRecord{static_cast<int>(msg.shares()),
                          static_cast<int>(msg.threshold()), msg.auto_unseal(),
                          msg.escrow()};
}

std::string SerializeWrappedKey(const WrappedSecret& wrapped) {
  WrappedKey msg;
  msg.set_format(kRecordFormat);
  msg.set_key_id(wrapped.key_id);
  msg.set_ciphertext(wrapped.ciphertext);
  return msg.SerializeAsString();
}

absl::StatusOr<WrappedSecret> ParseWrappedKey(absl::string_view bytes) {
  WrappedKey msg;
  if (!msg.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return absl::DataLossError("wrapped key record does not parse");
  }
  if (msg.format() != kRecordFormat) {
    return absl::DataLossError("wrapped key record has an unknown format");
  }
  if (msg.ciphertext().empty()) {
    return absl::DataLossError("wrapped key record is empty");
  }
  return WrappedSecret{msg.key_id(), msg.ciphertext()};
}

absl::StatusOr<SealedRecordParts> ParseSealedRecord(absl::string_view bytes) {
  SealedRecord msg;
  if (!msg.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return absl::DataLossError("sealed record does not parse");
  }
  if (msg.format() != kRecordFormat) {
    return absl::DataLossError("sealed record has an unknown format");
  }
  if (msg.nonce().size() != kNonceBytes) {
    return absl::DataLossError("sealed record has a bad nonce length");
  }
  if (msg.ciphertext().size() < kTagBytes) {
    return absl::DataLossError("sealed record is truncated");
  }
  SealedRecordParts parts;
  parts.nonce = std::move(*msg.mutable_nonce());
  parts.ciphertext = std::move(*msg.mutable_ciphertext());
  return parts;
}

absl::StatusOr<std::string> SealRecord(const SecretBytes& key,
                                       absl::string_view ad,
                                       absl::string_view plaintext) {
  if (key.size() != kKeyBytes) {
    return absl::InternalError("record key has the wrong length");
  }
  ASSIGN_OR_RETURN(std::unique_ptr<crypto::Aes256GcmKey> aead,
                   crypto::Aes256GcmKey::Create(key.view()));
  SealedRecord msg;
  msg.set_format(kRecordFormat);
  std::string* nonce = msg.mutable_nonce();
  nonce->resize(kNonceBytes);
  const absl::Span<const uint8_t> nonce_bytes(
      reinterpret_cast<const uint8_t*>(nonce->data()), kNonceBytes);
  RETURN_IF_ERROR(crypto::RandomBytes(
      absl::MakeSpan(reinterpret_cast<uint8_t*>(&(*nonce)[0]), kNonceBytes)));
  std::string* out = msg.mutable_ciphertext();
  out->resize(plaintext.size() + kTagBytes);
  RETURN_IF_ERROR(aead->Seal(
      nonce_bytes, plaintext, ad,
      absl::MakeSpan(reinterpret_cast<uint8_t*>(&(*out)[0]), out->size())));
  return msg.SerializeAsString();
}

absl::StatusOr<SecretBytes> OpenRecord(const SecretBytes& key,
                                       absl::string_view ad,
                                       const SealedRecordParts& record) {
  if (key.size() != kKeyBytes) {
    return absl::InternalError("record key has the wrong length");
  }
  if (record.nonce.size() != kNonceBytes ||
      record.ciphertext.size() < kTagBytes) {
    return absl::DataLossError("sealed record is malformed");
  }
  ASSIGN_OR_RETURN(std::unique_ptr<crypto::Aes256GcmKey> aead,
                   crypto::Aes256GcmKey::Create(key.view()));
  SecretBytes plaintext(record.ciphertext.size() - kTagBytes);
  if (!aead->Open(absl::MakeConstSpan(
                      reinterpret_cast<const uint8_t*>(record.nonce.data()),
                      kNonceBytes),
                  record.ciphertext, ad,
                  absl::MakeSpan(plaintext.data(), plaintext.size()))
           .ok()) {
    return absl::DataLossError("sealed record failed authentication");
  }
  return plaintext;
}

SecretBytes SerializeKeyring(const KeyringContents& keyring) {
  Keyring msg;
  msg.set_format(kRecordFormat);
  msg.set_active_term(keyring.active_term);
  for (const TermKey& t : keyring.terms) {
    KeyTerm* term = msg.add_terms();
    term->set_term(t.term);
    term->set_key(t.key.data(), t.key.size());
    term->set_created_unix_micros(t.created_unix_micros);
    term->set_reserved_encryptions(t.reserved_encryptions);
  }
  SecretBytes out(msg.ByteSizeLong());
  if (!out.empty()) {
    msg.SerializeWithCachedSizesToArray(out.data());
  }
  for (KeyTerm& term : *msg.mutable_terms()) WipeString(*term.mutable_key());
  return out;
}

absl::StatusOr<KeyringContents> ParseKeyring(absl::string_view plaintext) {
  Keyring msg;
  const bool parsed =
      msg.ParseFromArray(plaintext.data(), static_cast<int>(plaintext.size()));
  struct Wipe {
    Keyring* msg;
    ~Wipe() {
      for (KeyTerm& term : *msg->mutable_terms()) {
        WipeString(*term.mutable_key());
      }
    }
  } wipe{&msg};
  if (!parsed) return absl::DataLossError("keyring does not parse");
  if (msg.format() != kRecordFormat) {
    return absl::DataLossError("keyring has an unknown format");
  }
  if (msg.terms_size() == 0) {
    return absl::DataLossError("keyring has no terms");
  }
  KeyringContents out;
  out.active_term = msg.active_term();
  bool active_present = false;
  for (const KeyTerm& term : msg.terms()) {
    if (term.term() == 0) {
      return absl::DataLossError("keyring has a term numbered 0");
    }
    if (term.key().size() != kKeyBytes) {
      return absl::DataLossError("keyring has a key of the wrong length");
    }
    if (term.term() == msg.active_term()) active_present = true;
    TermKey t;
    t.term = term.term();
    t.key = SecretBytes::Copy(term.key());
    t.created_unix_micros = term.created_unix_micros();
    t.reserved_encryptions = term.reserved_encryptions();
    out.terms.push_back(std::move(t));
  }
  if (!active_present) {
    return absl::DataLossError("keyring lacks its active term");
  }
  std::sort(out.terms.begin(), out.terms.end(),
            [](const TermKey& a, const TermKey& b) { return a.term < b.term; });
  for (size_t i = 1; i < out.terms.size(); ++i) {
    if (out.terms[i].term == out.terms[i - 1].term) {
      return absl::DataLossError("keyring has a duplicate term");
    }
  }
  return out;
}

std::string SerializePendingRekey(const PendingRekeyRecord& pending) {
  PendingRekey msg;
  msg.set_format(kRecordFormat);
  msg.set_shares(static_cast<uint32_t>(pending.config.shares));
  msg.set_threshold(static_cast<uint32_t>(pending.config.threshold));
  msg.set_root_key(pending.root_record);
  msg.set_recovery_key_wrapped(pending.recovery_wrapped);
  return msg.SerializeAsString();
}

absl::StatusOr<PendingRekeyRecord> ParsePendingRekey(absl::string_view bytes) {
  PendingRekey msg;
  if (!msg.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return absl::DataLossError("pending rekey record does not parse");
  }
  if (msg.format() != kRecordFormat) {
    return absl::DataLossError("pending rekey record has an unknown format");
  }
  if (msg.shares() > 255 || msg.threshold() > 255 ||
      !ValidateSealParameters(static_cast<int>(msg.shares()),
                              static_cast<int>(msg.threshold()))
           .ok()) {
    return absl::DataLossError("pending rekey record has invalid parameters");
  }
  const bool auto_mode = !msg.recovery_key_wrapped().empty();
  if (auto_mode && !ParseWrappedKey(msg.recovery_key_wrapped()).ok()) {
    return absl::DataLossError(
        "pending rekey record has a bad wrapped recovery key");
  }
  if ((!auto_mode || !msg.root_key().empty()) &&
      !ParseSealedRecord(msg.root_key()).ok()) {
    return absl::DataLossError("pending rekey record has a bad root key");
  }
  PendingRekeyRecord out;
  out.config = {static_cast<int>(msg.shares()),
                static_cast<int>(msg.threshold())};
  out.config.auto_unseal = auto_mode;
  out.config.escrow = auto_mode && !msg.root_key().empty();
  out.root_record = std::move(*msg.mutable_root_key());
  out.recovery_wrapped = std::move(*msg.mutable_recovery_key_wrapped());
  return out;
}

}  // namespace strongbox::seal
