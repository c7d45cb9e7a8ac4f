// Pkcs11KeyWrapper: a KeyWrapper (strongbox/key_wrapper.h) over an AES-256
// key inside a PKCS#11 token (an HSM, SoftHSM2), for auto-unseal.
//
// BUILD REQUIREMENT: `//:pkcs11` needs `--config=openssl`. PKCS#11 modules
// (SoftHSM2 among them, like many vendors' modules) link OpenSSL 3, which
// cannot share a process with the default BoringSSL provider (checked: a
// dlopen of SoftHSM2 in a BoringSSL process segfaults at its first crypto
// call). Under the default provider the target is incompatible, as
// //:etcd_backend is.
//
// What it does: loads the module by path (dlopen, C_GetFunctionList),
// initializes it for OS locking, finds the token by label (or slot id),
// logs in as the user with the PIN read from a file (read at each login, so
// a rotated PIN file is picked up, and wiped after use), and finds the
// secret key by label (CKA_LABEL; CKM_AES_GCM, 96-bit random IV, 128-bit
// tag, the associated data bound). With `generate_key` it makes the key if
// absent: AES-256, token object, private, sensitive, never extractable.
// Blob: IV (12) | ciphertext | tag (16); the key id is the key's label, so
// a blob made under an older label (Pkcs11Options::old_key_labels) is
// recognized and still unwraps.
//
// Nothing touches the module until the first Wrap/Unwrap/Check: Create()
// only validates options, so a node starts (sealed) whatever the token's
// state and reports the cause instead of crash-looping. Errors, each naming
// its cause and the PKCS#11 return code, never a PIN or key byte:
//   FAILED_PRECONDITION  the module does not load or lacks C_GetFunctionList,
//                        no token with that label/slot, wrong or locked PIN,
//                        unreadable PIN file, no key with that label (and
//                        generate_key off), the key is not AES.
//   UNAVAILABLE          the session, login or device went away
//                        (CKR_SESSION_HANDLE_INVALID, CKR_SESSION_CLOSED,
//                        CKR_DEVICE_REMOVED, CKR_DEVICE_ERROR,
//                        CKR_TOKEN_NOT_PRESENT, CKR_USER_NOT_LOGGED_IN,
//                        CKR_CRYPTOKI_NOT_INITIALIZED, ...): the wrapper
//                        drops its sessions, finalizes and re-initializes
//                        the module, logs in again and retries the call
//                        once; if that fails too the caller retries later.
//   DATA_LOSS            the blob does not authenticate.
//   NOT_FOUND            the blob's key id is neither the key label nor an
//                        old one.
//
// Sessions: a small pool (Pkcs11Options::max_idle_sessions), each used by
// one call at a time; the module is called concurrently on different
// sessions (CKF_OS_LOCKING_OK). Re-initialization excludes every call.
// The module stays loaded for the life of the process (no dlclose:
// unloading a module that linked OpenSSL can leave its exit handlers
// pointing at unmapped code). One wrapper per module per process: PKCS#11
// initialization is process-wide.
//
// Thread-safe.
#ifndef STRONGBOX_PKCS11_KEY_WRAPPER_H_
#define STRONGBOX_PKCS11_KEY_WRAPPER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "strongbox/key_wrapper.h"

namespace strongbox {

struct Pkcs11Options {
  // Path of the PKCS#11 module, e.g. /usr/lib/softhsm/libsofthsm2.so.
  // REQUIRED.
  std::string module_path;
  // The token: by label (CK_TOKEN_INFO.label, trailing blanks ignored), or,
  // when the label is empty, by slot id. One of them REQUIRED.
  std::string token_label;
  long slot_id = -1;  // NOLINT(runtime/int): CK_SLOT_ID is unsigned long
  // File holding the user PIN (trailing newline and blanks ignored).
  // REQUIRED.
  std::string pin_file;
  // CKA_LABEL of the AES-256 key Wrap() uses; also the key id. REQUIRED.
  std::string key_label;
  // Labels of earlier keys whose blobs Unwrap() still opens (rotation).
  std::vector<std::string> old_key_labels;
  // Generate the key (non-extractable) if no key has the label. Default:
  // false (a missing key is FAILED_PRECONDITION).
  bool generate_key = false;
  // Idle sessions kept open for reuse. Default: 4. REQUIRES: >= 1.
  int max_idle_sessions = 4;
};

class Pkcs11KeyWrapper : public KeyWrapper {
 public:
  // Validates `options` (INVALID_ARGUMENT); does not load the module.
  static absl::StatusOr<std::unique_ptr<Pkcs11KeyWrapper>> Create(
      Pkcs11Options options);
  ~Pkcs11KeyWrapper() override;

  // Connects if needed (load, initialize, token, login, key) and answers
  // OK or the error a Wrap would give now. For status pages and tests.
  absl::Status Check();

  std::string type() const override { return "pkcs11"; }
  std::string current_key_id() const override;
  absl::StatusOr<WrappedSecret> Wrap(absl::string_view plaintext,
                                     absl::string_view ad) override;
  absl::StatusOr<SecretBytes> Unwrap(const WrappedSecret& wrapped,
                                     absl::string_view ad) override;

  // How many times the module was (re-)initialized; for tests.
  int initializations() const;

  class Impl;

 private:
  explicit Pkcs11KeyWrapper(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace strongbox

#endif  // STRONGBOX_PKCS11_KEY_WRAPPER_H_
