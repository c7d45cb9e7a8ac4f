// KeyWrapper: a host's key-encryption service (an HSM over PKCS#11, a cloud
// KMS, a software key) that wraps and unwraps small secrets, so that a
// Barrier in auto mode (strongbox/barrier.h, BarrierOptions::key_wrapper)
// stores its root key wrapped by it and unseals itself without shares.
//
// Contract:
//   * Wrap(plaintext, ad) encrypts a small secret (at most 1 KiB; the
//     barrier wraps 32-byte keys) with authenticated encryption binding the
//     associated data `ad` (the barrier passes the storage path), under the
//     wrapper's *current* key, and returns the blob with that key's id.
//   * Unwrap(blob, ad) decrypts a blob made under the current key or under
//     any older key the wrapper still holds (blob.key_id names it), so blobs
//     made before a key rotation keep opening until they are rewrapped;
//     NeedsRewrap(blob) tells the caller so.
//   * No partial output, no secret in any error message (D5).
//
// Status codes (what the caller should do):
//   UNAVAILABLE         the service cannot be reached now (HSM session lost,
//                       token busy or removed, KMS timeout): retry later, with
//                       backoff; the auto-unsealing coordinator does.
//   FAILED_PRECONDITION a configuration fault that retrying alone will not
//                       cure (wrong PIN, missing token or key, a module that
//                       does not load): the message names the cause.
//   DATA_LOSS           the blob does not authenticate under its key (a
//                       wrong key of the same id, tampered bytes, other ad).
//   NOT_FOUND           the blob's key id is not one this wrapper holds.
//   INVALID_ARGUMENT    an empty or oversized plaintext.
//
// Ownership: the host owns the wrapper and keeps it alive as long as any
// Barrier or HaCoordinator that was given it.
// Thread-safety: every method may be called from any thread, concurrently.
// A call may block (an HSM round trip, a network KMS); callers do not hold
// their locks across it.
#ifndef STRONGBOX_KEY_WRAPPER_H_
#define STRONGBOX_KEY_WRAPPER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "strongbox/secret_bytes.h"

namespace strongbox {

// A wrapped secret: opaque to everyone but the wrapper that made it. Not
// secret (ciphertext), so it may be stored and logged by length.
struct WrappedSecret {
  std::string key_id;      // the wrapper key that made it (printable, short)
  std::string ciphertext;  // wrapper-specific: e.g. nonce | ciphertext | tag
};

class KeyWrapper {
 public:
  KeyWrapper() = default;
  virtual ~KeyWrapper() = default;
  KeyWrapper(const KeyWrapper&) = delete;
  KeyWrapper& operator=(const KeyWrapper&) = delete;

  // What kind of wrapper this is, for status output: "pkcs11", "software",
  // a host's own name. Constant.
  virtual std::string type() const = 0;

  // The id of the key Wrap() uses now. Cheap, no I/O.
  virtual std::string current_key_id() const = 0;

  virtual absl::StatusOr<WrappedSecret> Wrap(absl::string_view plaintext,
                                             absl::string_view ad) = 0;
  virtual absl::StatusOr<SecretBytes> Unwrap(const WrappedSecret& wrapped,
                                             absl::string_view ad) = 0;

  // Whether `wrapped` was made under an older key than the current one (so
  // the caller should rewrap it once it has the plaintext).
  bool NeedsRewrap(const WrappedSecret& wrapped) const {
    return wrapped.key_id != current_key_id();
  }
};

// A KeyWrapper over AES-256-GCM keys held in process memory (lib/crypto,
// the build's crypto provider). For tests, and for hosts that keep the key
// encryption key somewhere of their own (a file readable only at start, a
// secrets manager). The blob is nonce (12) | ciphertext | tag (16), with
// the associated data bound. Thread-safe.
class SoftwareKeyWrapper : public KeyWrapper {
 public:
  // `key` must be 32 bytes; `key_id` non-empty. INVALID_ARGUMENT otherwise.
  static absl::StatusOr<std::unique_ptr<SoftwareKeyWrapper>> Create(
      absl::string_view key_id, const SecretBytes& key);
  // A fresh random key under `key_id`.
  static absl::StatusOr<std::unique_ptr<SoftwareKeyWrapper>> CreateRandom(
      absl::string_view key_id);
  ~SoftwareKeyWrapper() override;

  // Makes (`key_id`, `key`) the current key; the previous ones still
  // unwrap. INVALID_ARGUMENT for a bad key or an id already held.
  absl::Status Rotate(absl::string_view key_id, const SecretBytes& key);

  std::string type() const override { return "software"; }
  std::string current_key_id() const override;
  absl::StatusOr<WrappedSecret> Wrap(absl::string_view plaintext,
                                     absl::string_view ad) override;
  absl::StatusOr<SecretBytes> Unwrap(const WrappedSecret& wrapped,
                                     absl::string_view ad) override;

  struct State;

 private:
  explicit SoftwareKeyWrapper(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace strongbox

#endif  // STRONGBOX_KEY_WRAPPER_H_
