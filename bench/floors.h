// The raw AES-256-GCM floor every strongbox benchmark is judged against,
// in one place: the build's crypto provider called directly (BoringSSL's
// EVP_AEAD_CTX, or OpenSSL 3's EVP_CIPHER_CTX keyed once per direction, as
// lib/crypto uses them), on a random key, sealing with a fresh RAND_bytes
// nonce per call (as a barrier must) into a buffer laid out
// nonce | ciphertext | tag. testonly.
//
// The provider code is in floors_boringssl.cc / floors_openssl.cc (one is
// compiled, like lib/crypto's), so no benchmark includes <openssl/...>.
// Thread-safe for concurrent Seal/Open into different output buffers
// (OpenSSL: one context per thread and direction).
#ifndef STRONGBOX_BENCH_FLOORS_H_
#define STRONGBOX_BENCH_FLOORS_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/strings/string_view.h"

namespace strongbox::bench {

class RawAead {
 public:
  static constexpr size_t kNonceBytes = 12;
  static constexpr size_t kTagBytes = 16;

  RawAead();
  ~RawAead();
  RawAead(const RawAead&) = delete;
  RawAead& operator=(const RawAead&) = delete;

  // "boringssl" or "openssl".
  static absl::string_view Provider();

  // Seals into `*out` (resized once, then reused): nonce | ciphertext | tag.
  void SealInto(absl::string_view plaintext, absl::string_view ad,
                std::string* out);
  std::string Seal(absl::string_view plaintext, absl::string_view ad) {
    std::string out;
    SealInto(plaintext, ad, &out);
    return out;
  }

  // Opens `sealed` (from Seal) into `*out`; false if it does not open.
  bool OpenInto(absl::string_view sealed, absl::string_view ad,
                std::string* out) const;
  std::string Open(absl::string_view sealed, absl::string_view ad) const {
    std::string out;
    OpenInto(sealed, ad, &out);
    return out;
  }

  // A fresh random nonce, the raw provider call (no pool).
  static void RandomNonce(uint8_t* out);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace strongbox::bench

#endif  // STRONGBOX_BENCH_FLOORS_H_
