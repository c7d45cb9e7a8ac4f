// bench/floors.h over BoringSSL: one shared EVP_AEAD_CTX (its seal/open
// take it const, so threads share it).
#include <openssl/aead.h>
#include <openssl/rand.h>

#include "bench/floors.h"

namespace strongbox::bench {
namespace {
const uint8_t* U8(absl::string_view s) {
  return reinterpret_cast<const uint8_t*>(s.data());
}
}  // namespace

struct RawAead::State {
  EVP_AEAD_CTX ctx;
};

RawAead::RawAead() : state_(new State) {
  uint8_t key[32];
  RAND_bytes(key, sizeof(key));
  EVP_AEAD_CTX_init(&state_->ctx, EVP_aead_aes_256_gcm(), key, sizeof(key),
                    kTagBytes, nullptr);
}

RawAead::~RawAead() { EVP_AEAD_CTX_cleanup(&state_->ctx); }

absl::string_view RawAead::Provider() { return "boringssl"; }

void RawAead::RandomNonce(uint8_t* out) { RAND_bytes(out, kNonceBytes); }

void RawAead::SealInto(absl::string_view plaintext, absl::string_view ad,
                       std::string* out) {
  out->resize(kNonceBytes + plaintext.size() + kTagBytes);
  uint8_t* p = reinterpret_cast<uint8_t*>(&(*out)[0]);
  RAND_bytes(p, kNonceBytes);
  size_t len = 0;
  EVP_AEAD_CTX_seal(&state_->ctx, p + kNonceBytes, &len,
                    out->size() - kNonceBytes, p, kNonceBytes, U8(plaintext),
                    plaintext.size(), U8(ad), ad.size());
}

bool RawAead::OpenInto(absl::string_view sealed, absl::string_view ad,
                       std::string* out) const {
  if (sealed.size() < kNonceBytes + kTagBytes) return false;
  out->resize(sealed.size() - kNonceBytes - kTagBytes);
  size_t len = 0;
  const uint8_t* p = U8(sealed);
  return EVP_AEAD_CTX_open(&state_->ctx, reinterpret_cast<uint8_t*>(&(*out)[0]),
                           &len, out->size(), p, kNonceBytes, p + kNonceBytes,
                           sealed.size() - kNonceBytes, U8(ad), ad.size()) == 1;
}

}  // namespace strongbox::bench
