#include "strongbox/barrier.h"

#include <cstring>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "lib/seal/barrier_impl.h"
#include "lib/seal/records.h"
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
  absl::StatusOr<std::unique_ptr<crypto::Aes256GcmKey>> aead =
      crypto::Aes256GcmKey::Create(key.view());
  if (!aead.ok()) return aead.status();
  return std::unique_ptr<TermCipher>(new TermCipher(
      term, std::move(key), created_unix_micros, *std::move(aead)));
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

absl::Status SealedError() {
  return absl::FailedPreconditionError("barrier is sealed");
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
      core_prefix_(options.core_prefix),
      config_path_(absl::StrCat(options.core_prefix, "seal-config")),
      root_key_path_(absl::StrCat(options.core_prefix, "root-key")),
      keyring_path_(absl::StrCat(options.core_prefix, "keyring")) {}

Barrier::Impl::~Impl() { Seal(); }

absl::Status Barrier::Impl::CheckDataPath(absl::string_view path) const {
  if (absl::StartsWith(path, core_prefix_)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "path is under the barrier's reserved prefix \"", core_prefix_, "\""));
  }
  return absl::OkStatus();
}

absl::StatusOr<seal::SealConfigRecord> Barrier::Impl::ReadConfig() {
  absl::StatusOr<Entry> entry = backend_->Get(config_path_);
  if (entry.status().code() == absl::StatusCode::kNotFound) {
    return absl::FailedPreconditionError("barrier is not initialized");
  }
  if (!entry.ok()) return entry.status();
  return seal::ParseSealConfig(entry->value);
}

absl::StatusOr<uint64_t> Barrier::Impl::CommitConfirmed(
    absl::Span<const WriteOp> ops, FenceToken fence,
    absl::string_view probe_key, absl::string_view probe_value) {
  absl::StatusOr<uint64_t> rev = backend_->Commit(ops, fence);
  if (rev.ok() || CommitDefinitelyFailed(rev.status())) return rev;
  // The backend may have applied the batch and lost the answer. Records
  // carry a fresh random nonce, so finding our exact bytes proves it.
  absl::StatusOr<Entry> probe = backend_->Get(probe_key);
  if (probe.ok() && probe->value == probe_value) return probe->version;
  if (probe.ok() || probe.status().code() == absl::StatusCode::kNotFound) {
    return rev.status();  // not applied: safe to retry
  }
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

absl::StatusOr<std::vector<std::string>> Barrier::Impl::Initialize(
    int shares, int threshold, FenceToken fence) {
  MutexLock op(&op_mu_);
  if (absl::Status s = seal::ValidateSealParameters(shares, threshold);
      !s.ok()) {
    return s;
  }
  // Cheap early answer; the IfAbsent preconditions below are the real check.
  for (const std::string* path :
       {&config_path_, &root_key_path_, &keyring_path_}) {
    absl::StatusOr<Entry> existing = backend_->Get(*path);
    if (existing.ok()) {
      return absl::FailedPreconditionError("barrier is already initialized");
    }
    if (existing.status().code() != absl::StatusCode::kNotFound) {
      return existing.status();
    }
  }

  SecretBytes unseal_key = SecretBytes::Random(kKeyBytes);
  SecretBytes root_key = SecretBytes::Random(kKeyBytes);
  seal::KeyringContents keyring;
  keyring.active_term = 1;
  keyring.terms.push_back(seal::TermKey{1, SecretBytes::Random(kKeyBytes),
                                        absl::ToUnixMicros(absl::Now())});
  SecretBytes keyring_plain = seal::SerializeKeyring(keyring);

  absl::StatusOr<std::string> keyring_record =
      seal::SealRecord(root_key, keyring_path_, keyring_plain.view());
  if (!keyring_record.ok()) return keyring_record.status();
  absl::StatusOr<std::string> root_record =
      seal::SealRecord(unseal_key, root_key_path_, root_key.view());
  if (!root_record.ok()) return root_record.status();
  // Split before storing anything: once the records are stored, the shares
  // are the only way in.
  absl::StatusOr<std::vector<std::string>> out =
      MakeShares(unseal_key, shares, threshold);
  if (!out.ok()) return out.status();

  const WriteOp ops[] = {
      WriteOp::Put(config_path_, seal::SerializeSealConfig({shares, threshold}))
          .IfAbsent(),
      WriteOp::Put(root_key_path_, *root_record).IfAbsent(),
      WriteOp::Put(keyring_path_, *keyring_record).IfAbsent(),
  };
  absl::StatusOr<uint64_t> rev =
      CommitConfirmed(ops, fence, root_key_path_, *root_record);
  if (!rev.ok()) {
    for (std::string& share : *out) WipeString(share);
    if (rev.status().code() == absl::StatusCode::kAborted) {
      return absl::FailedPreconditionError("barrier is already initialized");
    }
    return rev.status();
  }
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
  absl::StatusOr<std::string> combined = shamir::Combine(shares);
  if (!combined.ok()) return combined.status();
  SecretBytes key = SecretBytes::Copy(*combined);
  WipeString(*combined);
  return key;
}

absl::StatusOr<SecretBytes> Barrier::Impl::OpenRootKey(
    const SecretBytes& unseal_key, uint64_t* version) {
  absl::StatusOr<Entry> entry = backend_->Get(root_key_path_);
  if (entry.status().code() == absl::StatusCode::kNotFound) {
    return absl::DataLossError("root key record is missing");
  }
  if (!entry.ok()) return entry.status();
  absl::StatusOr<seal::SealedRecordParts> parts =
      seal::ParseSealedRecord(entry->value);
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
  if (version != nullptr) *version = entry->version;
  return root;
}

absl::StatusOr<std::unique_ptr<Barrier::Impl::Keys>> Barrier::Impl::LoadKeyring(
    SecretBytes root_key) {
  absl::StatusOr<Entry> entry = backend_->Get(keyring_path_);
  if (entry.status().code() == absl::StatusCode::kNotFound) {
    return absl::DataLossError("keyring record is missing");
  }
  if (!entry.ok()) return entry.status();
  absl::StatusOr<seal::SealedRecordParts> parts =
      seal::ParseSealedRecord(entry->value);
  if (!parts.ok()) {
    return absl::DataLossError(
        absl::StrCat("keyring record: ", parts.status().message()));
  }
  absl::StatusOr<SecretBytes> plain =
      seal::OpenRecord(root_key, keyring_path_, *parts);
  if (!plain.ok()) {
    return absl::DataLossError("keyring record failed authentication");
  }
  absl::StatusOr<seal::KeyringContents> contents =
      seal::ParseKeyring(plain->view());
  if (!contents.ok()) return contents.status();

  auto keys = std::make_unique<Keys>();
  keys->root_key = std::move(root_key);
  keys->keyring_version = entry->version;
  for (seal::TermKey& t : contents->terms) {
    absl::StatusOr<std::unique_ptr<seal::TermCipher>> cipher =
        seal::TermCipher::Create(t.term, std::move(t.key),
                                 t.created_unix_micros);
    if (!cipher.ok()) return cipher.status();
    keys->max_term = std::max(keys->max_term, t.term);
    keys->terms[t.term] = *std::move(cipher);
  }
  keys->active = keys->terms.at(contents->active_term).get();
  return keys;
}

absl::StatusOr<SealStatus> Barrier::Impl::Unseal(absl::string_view share) {
  MutexLock op(&op_mu_);
  absl::StatusOr<seal::SealConfigRecord> config = ReadConfig();
  if (!config.ok()) return config.status();
  if (!sealed()) return StatusLocked(&*config);

  const size_t expected = config->threshold == 1 ? kKeyBytes : kKeyBytes + 1;
  if (share.size() != expected) {
    return absl::InvalidArgumentError(
        config->threshold == 1 ? "unseal key has the wrong length"
                               : "unseal share has the wrong length");
  }

  std::vector<std::string> presented;  // wiped below
  bool duplicate = false;
  {
    MutexLock lock(&progress_mu_);
    for (const SecretBytes& p : progress_) {
      if (p.Equals(share)) duplicate = true;
    }
    if (!duplicate && config->threshold > 1) {
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
      if (static_cast<int>(progress_.size()) >= config->threshold) {
        for (const SecretBytes& p : progress_) {
          presented.emplace_back(p.view());
        }
        progress_.clear();  // wipes; any failure below leaves progress reset
      }
    }
  }
  // Below the threshold (or a duplicate, which is ignored): report progress.
  if (presented.empty()) return StatusLocked(&*config);

  uint64_t epoch;
  {
    ReaderLock lock(&keys_mu_);
    epoch = seal_epoch_;
  }
  absl::StatusOr<SecretBytes> unseal_key =
      CombineShares(presented, config->threshold);
  for (std::string& s : presented) WipeString(s);
  if (!unseal_key.ok()) return unseal_key.status();
  absl::StatusOr<SecretBytes> root = OpenRootKey(*unseal_key, nullptr);
  unseal_key->Clear();
  if (!root.ok()) return root.status();
  absl::StatusOr<std::unique_ptr<Keys>> keys = LoadKeyring(*std::move(root));
  if (!keys.ok()) return keys.status();
  {
    WriterLock lock(&keys_mu_);
    if (seal_epoch_ != epoch) {
      return absl::AbortedError(
          "barrier was sealed while unsealing; present the shares again");
    }
    keys_ = *std::move(keys);
    sealed_.store(false, std::memory_order_release);
  }
  return StatusLocked(&*config);
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
  if (!config.ok()) return config.status();
  return StatusLocked(&*config);
}

absl::StatusOr<std::vector<std::string>> Barrier::Impl::Rekey(
    absl::Span<const std::string> current_shares, int new_shares,
    int new_threshold, FenceToken fence) {
  MutexLock op(&op_mu_);
  if (absl::Status s = seal::ValidateSealParameters(new_shares, new_threshold);
      !s.ok()) {
    return s;
  }
  absl::StatusOr<Entry> config_entry = backend_->Get(config_path_);
  if (config_entry.status().code() == absl::StatusCode::kNotFound) {
    return absl::FailedPreconditionError("barrier is not initialized");
  }
  if (!config_entry.ok()) return config_entry.status();
  absl::StatusOr<seal::SealConfigRecord> config =
      seal::ParseSealConfig(config_entry->value);
  if (!config.ok()) return config.status();
  if (static_cast<int>(current_shares.size()) < config->threshold) {
    return absl::InvalidArgumentError(
        "rekey needs at least the threshold of current shares");
  }

  absl::StatusOr<SecretBytes> old_unseal =
      CombineShares(current_shares, config->threshold);
  if (!old_unseal.ok()) return old_unseal.status();
  uint64_t root_version = 0;
  absl::StatusOr<SecretBytes> root = OpenRootKey(*old_unseal, &root_version);
  old_unseal->Clear();
  if (!root.ok()) return root.status();

  SecretBytes new_unseal = SecretBytes::Random(kKeyBytes);
  absl::StatusOr<std::string> root_record =
      seal::SealRecord(new_unseal, root_key_path_, root->view());
  root->Clear();
  if (!root_record.ok()) return root_record.status();
  absl::StatusOr<std::vector<std::string>> out =
      MakeShares(new_unseal, new_shares, new_threshold);
  if (!out.ok()) return out.status();

  const WriteOp ops[] = {
      WriteOp::Put(config_path_,
                   seal::SerializeSealConfig({new_shares, new_threshold}))
          .IfVersion(config_entry->version),
      WriteOp::Put(root_key_path_, *root_record).IfVersion(root_version),
  };
  absl::StatusOr<uint64_t> rev =
      CommitConfirmed(ops, fence, root_key_path_, *root_record);
  if (!rev.ok()) {
    for (std::string& share : *out) WipeString(share);
    if (rev.status().code() == absl::StatusCode::kAborted) {
      return absl::AbortedError(
          "seal configuration changed during rekey; retry");
    }
    return rev.status();
  }
  WipeProgress();  // shares presented so far belong to the old key
  return out;
}

absl::StatusOr<uint32_t> Barrier::Impl::Rotate(FenceToken fence) {
  MutexLock op(&op_mu_);
  seal::KeyringContents keyring;
  SecretBytes root;
  uint64_t version;
  uint64_t epoch;
  {
    ReaderLock lock(&keys_mu_);
    if (keys_ == nullptr) return SealedError();
    root = SecretBytes::Copy(keys_->root_key.view());
    version = keys_->keyring_version;
    epoch = seal_epoch_;
    keyring.active_term = keys_->max_term + 1;
    for (const auto& [term, cipher] : keys_->terms) {
      keyring.terms.push_back(
          seal::TermKey{term, SecretBytes::Copy(cipher->key().view()),
                        cipher->created_unix_micros()});
    }
  }
  const uint32_t new_term = keyring.active_term;
  if (new_term == 0) {
    return absl::FailedPreconditionError("key terms are exhausted");
  }
  const int64_t now = absl::ToUnixMicros(absl::Now());
  keyring.terms.push_back(
      seal::TermKey{new_term, SecretBytes::Random(kKeyBytes), now});
  std::sort(keyring.terms.begin(), keyring.terms.end(),
            [](const seal::TermKey& a, const seal::TermKey& b) {
              return a.term < b.term;
            });
  SecretBytes plain = seal::SerializeKeyring(keyring);
  absl::StatusOr<std::string> record =
      seal::SealRecord(root, keyring_path_, plain.view());
  if (!record.ok()) return record.status();
  const WriteOp ops[] = {
      WriteOp::Put(keyring_path_, *record).IfVersion(version)};
  absl::StatusOr<uint64_t> rev =
      CommitConfirmed(ops, fence, keyring_path_, *record);
  if (!rev.ok()) {
    if (rev.status().code() == absl::StatusCode::kAborted) {
      return absl::AbortedError(
          "keyring changed in storage (another node rotated); reload the "
          "keyring and retry");
    }
    return rev.status();
  }
  absl::StatusOr<std::unique_ptr<seal::TermCipher>> cipher =
      seal::TermCipher::Create(new_term, std::move(keyring.terms.back().key),
                               now);
  if (!cipher.ok()) return cipher.status();
  WriterLock lock(&keys_mu_);
  if (keys_ == nullptr || seal_epoch_ != epoch) {
    return absl::FailedPreconditionError(
        "barrier was sealed during rotation; the new term is stored");
  }
  keys_->active = cipher->get();
  keys_->terms[new_term] = *std::move(cipher);
  keys_->max_term = new_term;
  keys_->keyring_version = *rev;
  return new_term;
}

absl::Status Barrier::Impl::ReloadKeyringLocked(uint32_t wanted_term) {
  SecretBytes root;
  uint64_t epoch;
  {
    ReaderLock lock(&keys_mu_);
    if (keys_ == nullptr) return SealedError();
    if (wanted_term != 0 && keys_->terms.contains(wanted_term)) {
      return absl::OkStatus();  // another caller reloaded meanwhile
    }
    root = SecretBytes::Copy(keys_->root_key.view());
    epoch = seal_epoch_;
  }
  absl::StatusOr<std::unique_ptr<Keys>> keys = LoadKeyring(std::move(root));
  if (!keys.ok()) return keys.status();
  std::unique_ptr<Keys> old;
  {
    WriterLock lock(&keys_mu_);
    if (keys_ == nullptr || seal_epoch_ != epoch) return SealedError();
    old = std::move(keys_);
    keys_ = *std::move(keys);
  }
  return absl::OkStatus();  // `old` wiped here, outside the lock
}

absl::Status Barrier::Impl::ReloadKeyring() {
  MutexLock op(&op_mu_);
  return ReloadKeyringLocked(0);
}

// ------------------------------------------------------------ data path

absl::StatusOr<std::string> Barrier::Impl::SealValue(
    absl::string_view path, absl::string_view plaintext) {
  std::string out;
  out.resize(kValueOverhead + plaintext.size());
  uint8_t* p = reinterpret_cast<uint8_t*>(&out[0]);
  uint8_t* nonce = p + seal::kTermBytes + 1;
  if (absl::Status s = nonces_.Draw(nonce); !s.ok()) return s;
  ReaderLock lock(&keys_mu_);
  if (keys_ == nullptr) return SealedError();
  const seal::TermCipher* cipher = keys_->active;
  const uint32_t term = cipher->term();
  p[0] = static_cast<uint8_t>(term >> 24);
  p[1] = static_cast<uint8_t>(term >> 16);
  p[2] = static_cast<uint8_t>(term >> 8);
  p[3] = static_cast<uint8_t>(term);
  p[4] = kValueFormat;
  if (absl::Status s = cipher->aead().Seal(
          absl::MakeConstSpan(nonce, kNonceBytes), plaintext, path,
          absl::MakeSpan(p + kValueHeaderBytes, plaintext.size() + kTagBytes));
      !s.ok()) {
    return s;
  }
  return out;
}

absl::StatusOr<std::string> Barrier::Impl::Open(absl::string_view path,
                                                absl::string_view stored,
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
  std::string plaintext;
  plaintext.resize(stored.size() - kValueOverhead);
  ReaderLock lock(&keys_mu_);
  if (keys_ == nullptr) return SealedError();
  auto it = keys_->terms.find(term);
  if (it == keys_->terms.end()) {
    if (unknown_term != nullptr) *unknown_term = term > keys_->max_term;
    return absl::DataLossError("stored value names an unknown key term");
  }
  if (!it->second->aead()
           .Open(absl::MakeConstSpan(p + seal::kTermBytes + 1, kNonceBytes),
                 stored.substr(kValueHeaderBytes), path,
                 absl::MakeSpan(reinterpret_cast<uint8_t*>(&plaintext[0]),
                                plaintext.size()))
           .ok()) {
    WipeString(plaintext);
    return absl::DataLossError("stored value failed authentication");
  }
  return plaintext;
}

absl::StatusOr<std::string> Barrier::Impl::OpenValue(absl::string_view path,
                                                     absl::string_view stored) {
  return Open(path, stored, nullptr);
}

absl::StatusOr<Entry> Barrier::Impl::Get(absl::string_view path) {
  if (absl::Status s = CheckDataPath(path); !s.ok()) return s;
  if (sealed()) return SealedError();
  absl::StatusOr<Entry> entry = backend_->Get(path);
  if (!entry.ok()) return entry.status();
  bool unknown_term = false;
  absl::StatusOr<std::string> plain = Open(path, entry->value, &unknown_term);
  if (!plain.ok() && unknown_term) {
    // A newer term: another node rotated. Follow it once.
    const uint8_t* p = U8(entry->value);
    const uint32_t term = (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) |
                          (uint32_t{p[2]} << 8) | uint32_t{p[3]};
    absl::Status reloaded;
    {
      MutexLock op(&op_mu_);
      reloaded = ReloadKeyringLocked(term);
    }
    if (!reloaded.ok()) return reloaded;
    plain = Open(path, entry->value, nullptr);
  }
  if (!plain.ok()) return plain.status();
  entry->value = *std::move(plain);
  return entry;
}

absl::StatusOr<uint64_t> Barrier::Impl::Put(absl::string_view path,
                                            absl::string_view plaintext,
                                            FenceToken fence) {
  if (absl::Status s = CheckDataPath(path); !s.ok()) return s;
  absl::StatusOr<std::string> stored = SealValue(path, plaintext);
  if (!stored.ok()) return stored.status();
  return backend_->Put(path, *stored, fence);
}

absl::StatusOr<uint64_t> Barrier::Impl::Delete(absl::string_view path,
                                               FenceToken fence) {
  if (absl::Status s = CheckDataPath(path); !s.ok()) return s;
  if (sealed()) return SealedError();
  return backend_->Delete(path, fence);
}

absl::StatusOr<std::vector<std::string>> Barrier::Impl::List(
    absl::string_view prefix) {
  if (absl::Status s = CheckDataPath(prefix); !s.ok()) return s;
  if (sealed()) return SealedError();
  absl::StatusOr<std::vector<std::string>> children = backend_->List(prefix);
  if (!children.ok()) return children;
  // Hide the folder (or folder chain) leading to the reserved prefix.
  if (absl::StartsWith(core_prefix_, prefix)) {
    const absl::string_view rest =
        absl::string_view(core_prefix_).substr(prefix.size());
    const absl::string_view first = rest.substr(0, rest.find('/') + 1);
    if (first == rest) {  // the reserved folder is an immediate child
      children->erase(
          std::remove(children->begin(), children->end(), std::string(first)),
          children->end());
    }
  }
  return children;
}

absl::StatusOr<uint64_t> Barrier::Impl::Commit(absl::Span<const WriteOp> ops,
                                               FenceToken fence) {
  if (sealed()) return SealedError();
  std::vector<WriteOp> sealed_ops;
  sealed_ops.reserve(ops.size());
  for (const WriteOp& op : ops) {
    if (absl::Status s = CheckDataPath(op.key); !s.ok()) return s;
    WriteOp out = op;
    if (op.kind == WriteOp::Kind::kPut) {
      absl::StatusOr<std::string> stored = SealValue(op.key, op.value);
      if (!stored.ok()) return stored.status();
      WipeString(out.value);
      out.value = *std::move(stored);
    }
    sealed_ops.push_back(std::move(out));
  }
  return backend_->Commit(sealed_ops, fence);
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
  return std::unique_ptr<Barrier>(new Barrier(std::make_unique<Impl>(options)));
}

Barrier::Barrier(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Barrier::~Barrier() = default;

absl::StatusOr<std::vector<std::string>> Barrier::Initialize(int shares,
                                                             int threshold,
                                                             FenceToken fence) {
  return impl_->Initialize(shares, threshold, fence);
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
absl::StatusOr<uint32_t> Barrier::Rotate(FenceToken fence) {
  return impl_->Rotate(fence);
}
absl::Status Barrier::ReloadKeyring() { return impl_->ReloadKeyring(); }
absl::StatusOr<Entry> Barrier::Get(absl::string_view path) {
  return impl_->Get(path);
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
Backend* Barrier::backend() const { return impl_->backend(); }

}  // namespace strongbox
