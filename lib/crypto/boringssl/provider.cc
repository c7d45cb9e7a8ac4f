// The BoringSSL provider (Debian's android-libboringssl-dev): the default.
// Every definition of lib/crypto's headers for this provider is here.
#include <openssl/aead.h>
#include <openssl/crypto.h>
#include <openssl/digest.h>
#include <openssl/mem.h>
#include <openssl/rand.h>

#include <cstdlib>
#include <cstring>

#include "lib/crypto/aead.h"
#include "lib/crypto/random.h"
#include "lib/crypto/secure_memory.h"

namespace strongbox::crypto {
namespace {

const uint8_t* U8(absl::string_view s) {
  return reinterpret_cast<const uint8_t*>(s.data());
}

}  // namespace

absl::string_view ProviderName() { return "boringssl"; }

// ------------------------------------------------------------------ AEAD

// The EVP_AEAD_CTX lives in a buffer of its own, wiped on destruction:
// EVP_AEAD_CTX_cleanup frees nothing that holds the key schedule, which is
// inside the context itself, and does not wipe it.
struct Aes256GcmKey::State {
  State() : ctx(static_cast<EVP_AEAD_CTX*>(std::calloc(1, sizeof(*ctx)))) {
    if (ctx == nullptr) std::abort();  // like a failed operator new
    EVP_AEAD_CTX_zero(ctx);
  }
  ~State() {
    if (initialized) EVP_AEAD_CTX_cleanup(ctx);
    Cleanse(ctx, sizeof(*ctx));
    std::free(ctx);
  }
  EVP_AEAD_CTX* const ctx;
  bool initialized = false;
};

Aes256GcmKey::Aes256GcmKey(std::unique_ptr<State> state)
    : state_(std::move(state)) {
  CountLive(+1);
}
Aes256GcmKey::~Aes256GcmKey() { CountLive(-1); }

absl::StatusOr<std::unique_ptr<Aes256GcmKey>> Aes256GcmKey::Create(
    absl::string_view key) {
  if (key.size() != kKeyBytes) {
    return absl::InvalidArgumentError("AES-256-GCM key has the wrong length");
  }
  auto state = std::make_unique<State>();
  if (!EVP_AEAD_CTX_init(state->ctx, EVP_aead_aes_256_gcm(), U8(key),
                         key.size(), kTagBytes, nullptr)) {
    return absl::InternalError("AEAD init failed");
  }
  state->initialized = true;
  return std::unique_ptr<Aes256GcmKey>(new Aes256GcmKey(std::move(state)));
}

absl::Status Aes256GcmKey::Seal(absl::Span<const uint8_t> nonce,
                                absl::string_view plaintext,
                                absl::string_view ad,
                                absl::Span<uint8_t> out) const {
  if (nonce.size() != kNonceBytes) {
    return absl::InvalidArgumentError("AES-GCM nonce must be 12 bytes");
  }
  if (out.size() != plaintext.size() + kTagBytes) {
    return absl::InvalidArgumentError("AEAD output buffer has the wrong size");
  }
  size_t out_len = 0;
  if (!EVP_AEAD_CTX_seal(state_->ctx, out.data(), &out_len, out.size(),
                         nonce.data(), nonce.size(), U8(plaintext),
                         plaintext.size(), U8(ad), ad.size()) ||
      out_len != out.size()) {
    Cleanse(out.data(), out.size());
    return absl::InternalError("AEAD seal failed");
  }
  return absl::OkStatus();
}

absl::Status Aes256GcmKey::OpenInto(absl::string_view sealed,
                                    absl::string_view ad, uint8_t* out,
                                    const uint8_t* nonce) const {
  if (sealed.size() < kTagBytes) {
    return absl::DataLossError("AEAD ciphertext is shorter than its tag");
  }
  const size_t out_size = sealed.size() - kTagBytes;
  uint8_t empty[1];  // a valid pointer for an empty plaintext
  size_t out_len = 0;
  if (!EVP_AEAD_CTX_open(state_->ctx, out_size == 0 ? empty : out, &out_len,
                         out_size, nonce, kNonceBytes, U8(sealed),
                         sealed.size(), U8(ad), ad.size()) ||
      out_len != out_size) {
    if (out_size != 0) Cleanse(out, out_size);
    return absl::DataLossError("AEAD ciphertext failed authentication");
  }
  return absl::OkStatus();
}

void Aes256GcmKey::AppendSecretBuffers(
    std::vector<std::pair<const void*, size_t>>* out) const {
  out->emplace_back(state_->ctx, sizeof(*state_->ctx));
}

// ---------------------------------------------------------------- random

absl::Status RandomBytes(absl::Span<uint8_t> out) {
  // BoringSSL's RAND_bytes aborts rather than fail; check anyway.
  if (!out.empty() && RAND_bytes(out.data(), out.size()) != 1) {
    Cleanse(out.data(), out.size());
    return absl::InternalError("random number generator failed");
  }
  return absl::OkStatus();
}

}  // namespace strongbox::crypto
