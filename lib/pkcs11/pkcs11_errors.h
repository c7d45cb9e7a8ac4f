// PKCS#11 return codes: names for messages, and what each calls for.
// Internal to lib/pkcs11.
#ifndef STRONGBOX_LIB_PKCS11_PKCS11_ERRORS_H_
#define STRONGBOX_LIB_PKCS11_PKCS11_ERRORS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

// Debian's p11-kit header (libp11-kit-dev); CRYPTOKI_COMPAT gives the
// standard PKCS#11 names (pIv, ulValueLen, ...).
#ifndef CRYPTOKI_COMPAT
#define CRYPTOKI_COMPAT 1
#endif
#include <p11-kit-1/p11-kit/pkcs11.h>

namespace strongbox::pkcs11 {

// "CKR_PIN_INCORRECT", or "CKR_0x..." for codes not in the table.
std::string RvName(CK_RV rv);

// Codes after which the wrapper drops its sessions, finalizes and
// re-initializes the module and logs in again: the session, login or
// device is gone, or the module is in an unknown state.
bool RvNeedsReset(CK_RV rv);

// The status for `function` failing with `rv`, naming both and the cause:
// UNAVAILABLE for RvNeedsReset codes (retry later), FAILED_PRECONDITION
// for configuration faults (PIN, token, key, permissions), INTERNAL
// otherwise. `context` is appended to the message (never a secret).
absl::Status StatusFor(absl::string_view function, CK_RV rv,
                       absl::string_view context = "");

// Whether a status from StatusFor calls for a reset (UNAVAILABLE).
inline bool StatusWantsReset(const absl::Status& s) {
  return s.code() == absl::StatusCode::kUnavailable;
}

}  // namespace strongbox::pkcs11

#endif  // STRONGBOX_LIB_PKCS11_PKCS11_ERRORS_H_
