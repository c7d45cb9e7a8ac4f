// The raw BoringSSL AES-256-GCM floor every strongbox benchmark is judged
// against, in one place: a reused EVP_AEAD_CTX on a random key, sealing with
// a fresh RAND_bytes nonce per call (as a barrier must) into a buffer laid
// out nonce | ciphertext | tag. Header-only, testonly. Not thread-safe for
// concurrent Seal/Open into the same output buffer; the context itself may
// be shared read-only across threads.
#ifndef STRONGBOX_BENCH_FLOORS_H_
#define STRONGBOX_BENCH_FLOORS_H_

#include <openssl/aead.h>
#include <openssl/rand.h>

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace strongbox::bench {

class RawAead {
 public:
  static constexpr size_t kNonceBytes = 12;
  static constexpr size_t kTagBytes = 16;

  RawAead() {
    uint8_t key[32];
    RAND_bytes(key, sizeof(key));
    EVP_AEAD_CTX_init(&ctx_, EVP_aead_aes_256_gcm(), key, sizeof(key),
                      kTagBytes, nullptr);
  }
  ~RawAead() { EVP_AEAD_CTX_cleanup(&ctx_); }
  RawAead(const RawAead&) = delete;
  RawAead& operator=(const RawAead&) = delete;

  // Seals into `*out` (resized once, then reused): nonce | ciphertext | tag.
  void SealInto(absl::string_view plaintext, absl::string_view ad,
                std::string* out) {
    out->resize(kNonceBytes + plaintext.size() + kTagBytes);
    uint8_t* p = reinterpret_cast<uint8_t*>(&(*out)[0]);
    RAND_bytes(p, kNonceBytes);
    size_t len = 0;
    EVP_AEAD_CTX_seal(&ctx_, p + kNonceBytes, &len, out->size() - kNonceBytes,
                      p, kNonceBytes, U8(plaintext), plaintext.size(), U8(ad),
                      ad.size());
  }
  std::string Seal(absl::string_view plaintext, absl::string_view ad) {
    std::string out;
    SealInto(plaintext, ad, &out);
    return out;
  }

  // Opens `sealed` (from Seal) into `*out`; false if it does not open.
  bool OpenInto(absl::string_view sealed, absl::string_view ad,
                std::string* out) const {
    if (sealed.size() < kNonceBytes + kTagBytes) return false;
    out->resize(sealed.size() - kNonceBytes - kTagBytes);
    size_t len = 0;
    const uint8_t* p = U8(sealed);
    return EVP_AEAD_CTX_open(&ctx_, reinterpret_cast<uint8_t*>(&(*out)[0]),
                             &len, out->size(), p, kNonceBytes, p + kNonceBytes,
                             sealed.size() - kNonceBytes, U8(ad),
                             ad.size()) == 1;
  }
  std::string Open(absl::string_view sealed, absl::string_view ad) const {
    std::string out;
    OpenInto(sealed, ad, &out);
    return out;
  }

 private:
  static const uint8_t* U8(absl::string_view s) {
    return reinterpret_cast<const uint8_t*>(s.data());
  }

  EVP_AEAD_CTX ctx_;
};

}  // namespace strongbox::bench

#endif  // STRONGBOX_BENCH_FLOORS_H_
