// Aes256GcmKey: one AES-256-GCM key, set up once, sealing and opening
// messages under 96-bit nonces with associated data.
//
// This is strongbox's one AEAD class (lib/crypto is the only code that
// includes <openssl/...>). The provider — BoringSSL by default, OpenSSL 3
// with `--config=openssl` — is chosen at build time; the wire format is
// the provider's raw AES-256-GCM and identical under both: Seal writes
// ciphertext || 16-byte tag, nothing else (the caller stores the nonce).
//
// Nonces: the caller supplies a 96-bit nonce and must never use one twice
// under one key (a repeat leaks the XOR of the two plaintexts and the
// GHASH key). Random nonces (lib/seal/nonce_pool.h) are safe for up to
// 2^32 messages per key.
//
// Associated data is authenticated, not encrypted: Open fails unless it
// gets the same bytes Seal got.
//
// Open never hands out unauthenticated plaintext: on any failure the
// output buffer is wiped before it returns.
//
// Thread-safe: Seal and Open are const and may run on many threads at once
// on one key. The key schedule is wiped when the object is destroyed.
#ifndef STRONGBOX_LIB_CRYPTO_AEAD_H_
#define STRONGBOX_LIB_CRYPTO_AEAD_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace strongbox::crypto {

// The name of the provider compiled in: "boringssl" or "openssl".
absl::string_view ProviderName();

class Aes256GcmKey {
 public:
  static constexpr size_t kKeyBytes = 32;
  static constexpr size_t kNonceBytes = 12;
  static constexpr size_t kTagBytes = 16;

  // Expands `key` (exactly kKeyBytes, else INVALID_ARGUMENT). The caller
  // keeps, and wipes, its own copy of the key bytes. INTERNAL if the
  // provider fails.
  static absl::StatusOr<std::unique_ptr<Aes256GcmKey>> Create(
      absl::string_view key);

  ~Aes256GcmKey();
  Aes256GcmKey(const Aes256GcmKey&) = delete;
  Aes256GcmKey& operator=(const Aes256GcmKey&) = delete;

  // Seals `plaintext` under `nonce` (kNonceBytes), binding `ad`, into `out`
  // (exactly plaintext.size() + kTagBytes bytes): ciphertext || tag. `out`
  // may start where `plaintext` starts (in place), and must not overlap it
  // otherwise. INVALID_ARGUMENT for a wrong nonce or output size or a
  // message too long for the provider; INTERNAL if the provider fails.
  absl::Status Seal(absl::Span<const uint8_t> nonce,
                    absl::string_view plaintext, absl::string_view ad,
                    absl::Span<uint8_t> out) const;

  // Opens `sealed` (ciphertext || tag, as Seal wrote it) under `nonce`
  // with `ad` into `out` (exactly sealed.size() - kTagBytes bytes; same
  // overlap rule as Seal). DATA_LOSS if it does not authenticate (wrong
  // key, nonce, AD, or any changed bit) or `sealed` is shorter than a tag;
  // INVALID_ARGUMENT for a wrong nonce or output size; INTERNAL if the
  // provider fails. On every failure `out` is wiped.
  absl::Status Open(absl::Span<const uint8_t> nonce, absl::string_view sealed,
                    absl::string_view ad, absl::Span<uint8_t> out) const;

  // Open for a caller that has already sized its buffers: `out` has room
  // for exactly sealed.size() - kTagBytes bytes (it may be null when that
  // is 0), and `nonce` points at kNonceBytes bytes. Same results and the
  // same wipe as Open, which checks those sizes and calls this.
  // (Every argument travels in a register or as one 8-byte word. Open's
  // spans go on the stack, and the compiler builds each there with two
  // 8-byte stores read back as one 16-byte load: a store-forwarding stall
  // of a few nanoseconds, 3% of a 64-byte barrier open.)
  absl::Status OpenInto(absl::string_view sealed, absl::string_view ad,
                        uint8_t* out, const uint8_t* nonce) const;

  // (data, size) of every buffer this object owns that holds key-derived
  // material (the expanded key), for wipe-on-destroy tests. BoringSSL's
  // context lives in such a buffer (its cleanup does not wipe the key
  // schedule); OpenSSL allocates its own and wipes it when the context is
  // freed, so that provider reports none.
  void AppendSecretBuffers(
      std::vector<std::pair<const void*, size_t>>* out) const;

  // How many Aes256GcmKey objects exist in this process, so a test can
  // check that dropping keys (e.g. on seal) destroyed, and so wiped, them.
  static int64_t LiveKeysForTesting();

  // Provider state; defined by the provider's translation unit.
  struct State;

 private:
  explicit Aes256GcmKey(std::unique_ptr<State> state);
  static void CountLive(int delta);  // aead_common.cc
  std::unique_ptr<State> state_;
};

}  // namespace strongbox::crypto

#endif  // STRONGBOX_LIB_CRYPTO_AEAD_H_
