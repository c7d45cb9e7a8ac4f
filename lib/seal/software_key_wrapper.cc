// SoftwareKeyWrapper (strongbox/key_wrapper.h): AES-256-GCM keys in process
// memory, through lib/crypto.
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "lib/crypto/aead.h"
#include "lib/crypto/random.h"
#include "lib/util/mutex.h"
#include "lib/util/status_macros.h"
#include "strongbox/key_wrapper.h"

namespace strongbox {
namespace {

constexpr size_t kNonce = crypto::Aes256GcmKey::kNonceBytes;
constexpr size_t kTag = crypto::Aes256GcmKey::kTagBytes;
constexpr size_t kMaxPlaintext = 1024;

const uint8_t* U8(absl::string_view s) {
  return reinterpret_cast<const uint8_t*>(s.data());
}

}  // namespace

struct SoftwareKeyWrapper::State {
  mutable SharedMutex mu;
  // Key id -> AEAD key (which wipes its own schedule on destruction).
  std::map<std::string, std::unique_ptr<crypto::Aes256GcmKey>> keys
      ABSL_GUARDED_BY(mu);
  std::string current ABSL_GUARDED_BY(mu);
};

SoftwareKeyWrapper::SoftwareKeyWrapper(std::unique_ptr<State> state)
    : state_(std::move(state)) {}
SoftwareKeyWrapper::~SoftwareKeyWrapper() = default;

absl::StatusOr<std::unique_ptr<SoftwareKeyWrapper>> SoftwareKeyWrapper::Create(
    absl::string_view key_id, const SecretBytes& key) {
  std::unique_ptr<SoftwareKeyWrapper> wrapper(
      new SoftwareKeyWrapper(std::make_unique<State>()));
  RETURN_IF_ERROR(wrapper->Rotate(key_id, key));
  return wrapper;
}

absl::StatusOr<std::unique_ptr<SoftwareKeyWrapper>>
SoftwareKeyWrapper::CreateRandom(absl::string_view key_id) {
  SecretBytes key = SecretBytes::Random(crypto::Aes256GcmKey::kKeyBytes);
  return Create(key_id, key);
}

absl::Status SoftwareKeyWrapper::Rotate(absl::string_view key_id,
                                        const SecretBytes& key) {
  if (key_id.empty()) {
    return absl::InvalidArgumentError("key wrapper: empty key id");
  }
  if (key.size() != crypto::Aes256GcmKey::kKeyBytes) {
    return absl::InvalidArgumentError(
        "key wrapper: the key must be 32 bytes (AES-256)");
  }
  ASSIGN_OR_RETURN(std::unique_ptr<crypto::Aes256GcmKey> aead,
                   crypto::Aes256GcmKey::Create(key.view()));
  WriterLock lock(&state_->mu);
  auto [it, inserted] =
      state_->keys.emplace(std::string(key_id), std::move(aead));
  if (!inserted) {
    return absl::InvalidArgumentError(
        absl::StrCat("key wrapper: key id \"", key_id, "\" is already held"));
  }
  state_->current = std::string(key_id);
  return absl::OkStatus();
}

std::string SoftwareKeyWrapper::current_key_id() const {
  ReaderLock lock(&state_->mu);
  return state_->current;
}

absl::StatusOr<WrappedSecret> SoftwareKeyWrapper::Wrap(
    absl::string_view plaintext, absl::string_view ad) {
  if (plaintext.empty() || plaintext.size() > kMaxPlaintext) {
    return absl::InvalidArgumentError(
        "key wrapper: plaintext must be 1 to 1024 bytes");
  }
  WrappedSecret out;
  out.ciphertext.resize(kNonce + plaintext.size() + kTag);
  uint8_t* bytes = reinterpret_cast<uint8_t*>(out.ciphertext.data());
  RETURN_IF_ERROR(crypto::RandomBytes(absl::MakeSpan(bytes, kNonce)));
  ReaderLock lock(&state_->mu);
  out.key_id = state_->current;
  const crypto::Aes256GcmKey& key = *state_->keys.at(state_->current);
  RETURN_IF_ERROR(
      key.Seal(absl::MakeConstSpan(bytes, kNonce), plaintext, ad,
               absl::MakeSpan(bytes + kNonce, plaintext.size() + kTag)));
  return out;
}

absl::StatusOr<SecretBytes> SoftwareKeyWrapper::Unwrap(
    const WrappedSecret& wrapped, absl::string_view ad) {
  if (wrapped.ciphertext.size() < kNonce + kTag + 1) {
    return absl::DataLossError("key wrapper: wrapped secret is truncated");
  }
  ReaderLock lock(&state_->mu);
  auto it = state_->keys.find(wrapped.key_id);
  if (it == state_->keys.end()) {
    return absl::NotFoundError(
        absl::StrCat("key wrapper: no key with id \"", wrapped.key_id, "\""));
  }
  absl::string_view blob = wrapped.ciphertext;
  SecretBytes plain(blob.size() - kNonce - kTag);
  absl::Status opened = it->second->Open(
      absl::MakeConstSpan(U8(blob), kNonce), blob.substr(kNonce), ad,
      absl::MakeSpan(plain.data(), plain.size()));
  if (!opened.ok()) {
    return absl::DataLossError(
        "key wrapper: wrapped secret does not authenticate under its key");
  }
  return plain;
}

}  // namespace strongbox
