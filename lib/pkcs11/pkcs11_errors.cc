#include "lib/pkcs11/pkcs11_errors.h"

#include <cstdio>

#include "absl/strings/str_cat.h"

namespace strongbox::pkcs11 {

std::string RvName(CK_RV rv) {
  switch (rv) {
#define STRONGBOX_CKR(name) \
  case name:                \
    return #name;
    STRONGBOX_CKR(CKR_OK)
    STRONGBOX_CKR(CKR_HOST_MEMORY)
    STRONGBOX_CKR(CKR_SLOT_ID_INVALID)
    STRONGBOX_CKR(CKR_GENERAL_ERROR)
    STRONGBOX_CKR(CKR_FUNCTION_FAILED)
    STRONGBOX_CKR(CKR_ARGUMENTS_BAD)
    STRONGBOX_CKR(CKR_ATTRIBUTE_TYPE_INVALID)
    STRONGBOX_CKR(CKR_ATTRIBUTE_VALUE_INVALID)
    STRONGBOX_CKR(CKR_DATA_LEN_RANGE)
    STRONGBOX_CKR(CKR_DEVICE_ERROR)
    STRONGBOX_CKR(CKR_DEVICE_MEMORY)
    STRONGBOX_CKR(CKR_DEVICE_REMOVED)
    STRONGBOX_CKR(CKR_ENCRYPTED_DATA_INVALID)
    STRONGBOX_CKR(CKR_ENCRYPTED_DATA_LEN_RANGE)
    STRONGBOX_CKR(CKR_FUNCTION_NOT_SUPPORTED)
    STRONGBOX_CKR(CKR_KEY_HANDLE_INVALID)
    STRONGBOX_CKR(CKR_KEY_TYPE_INCONSISTENT)
    STRONGBOX_CKR(CKR_KEY_FUNCTION_NOT_PERMITTED)
    STRONGBOX_CKR(CKR_MECHANISM_INVALID)
    STRONGBOX_CKR(CKR_MECHANISM_PARAM_INVALID)
    STRONGBOX_CKR(CKR_OBJECT_HANDLE_INVALID)
    STRONGBOX_CKR(CKR_OPERATION_ACTIVE)
    STRONGBOX_CKR(CKR_OPERATION_NOT_INITIALIZED)
    STRONGBOX_CKR(CKR_PIN_INCORRECT)
    STRONGBOX_CKR(CKR_PIN_INVALID)
    STRONGBOX_CKR(CKR_PIN_LEN_RANGE)
    STRONGBOX_CKR(CKR_PIN_EXPIRED)
    STRONGBOX_CKR(CKR_PIN_LOCKED)
    STRONGBOX_CKR(CKR_SESSION_CLOSED)
    STRONGBOX_CKR(CKR_SESSION_COUNT)
    STRONGBOX_CKR(CKR_SESSION_HANDLE_INVALID)
    STRONGBOX_CKR(CKR_SESSION_READ_ONLY)
    STRONGBOX_CKR(CKR_TEMPLATE_INCOMPLETE)
    STRONGBOX_CKR(CKR_TEMPLATE_INCONSISTENT)
    STRONGBOX_CKR(CKR_TOKEN_NOT_PRESENT)
    STRONGBOX_CKR(CKR_TOKEN_NOT_RECOGNIZED)
    STRONGBOX_CKR(CKR_TOKEN_WRITE_PROTECTED)
    STRONGBOX_CKR(CKR_USER_ALREADY_LOGGED_IN)
    STRONGBOX_CKR(CKR_USER_NOT_LOGGED_IN)
    STRONGBOX_CKR(CKR_USER_PIN_NOT_INITIALIZED)
    STRONGBOX_CKR(CKR_USER_TYPE_INVALID)
    STRONGBOX_CKR(CKR_BUFFER_TOO_SMALL)
    STRONGBOX_CKR(CKR_CRYPTOKI_NOT_INITIALIZED)
    STRONGBOX_CKR(CKR_CRYPTOKI_ALREADY_INITIALIZED)
#undef STRONGBOX_CKR
    default:
      break;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), "CKR_0x%lx", static_cast<unsigned long>(rv));
  return buf;
}

bool RvNeedsReset(CK_RV rv) {
  switch (rv) {
    case CKR_SESSION_HANDLE_INVALID:
    case CKR_SESSION_CLOSED:
    case CKR_SESSION_COUNT:
    case CKR_DEVICE_REMOVED:
    case CKR_DEVICE_ERROR:
    case CKR_DEVICE_MEMORY:
    case CKR_TOKEN_NOT_PRESENT:
    case CKR_TOKEN_NOT_RECOGNIZED:
    case CKR_USER_NOT_LOGGED_IN:
    case CKR_CRYPTOKI_NOT_INITIALIZED:
    case CKR_GENERAL_ERROR:
    case CKR_FUNCTION_FAILED:
    case CKR_KEY_HANDLE_INVALID:
    case CKR_OBJECT_HANDLE_INVALID:
    case CKR_HOST_MEMORY:
      return true;
    default:
      return false;
  }
}

absl::Status StatusFor(absl::string_view function, CK_RV rv,
                       absl::string_view context) {
  const std::string what =
      absl::StrCat("PKCS#11: ", function, ": ", RvName(rv), context);
  switch (rv) {
    case CKR_PIN_INCORRECT:
    case CKR_PIN_INVALID:
    case CKR_PIN_LEN_RANGE:
      return absl::FailedPreconditionError(absl::StrCat(what, " (wrong PIN)"));
    case CKR_PIN_LOCKED:
    case CKR_PIN_EXPIRED:
    case CKR_USER_PIN_NOT_INITIALIZED:
      return absl::FailedPreconditionError(
          absl::StrCat(what, " (the user PIN cannot be used)"));
    case CKR_KEY_TYPE_INCONSISTENT:
    case CKR_KEY_FUNCTION_NOT_PERMITTED:
    case CKR_MECHANISM_INVALID:
    case CKR_MECHANISM_PARAM_INVALID:
    case CKR_FUNCTION_NOT_SUPPORTED:
      return absl::FailedPreconditionError(
          absl::StrCat(what, " (the key or module cannot do AES-GCM)"));
    default:
      break;
  }
  if (RvNeedsReset(rv)) return absl::UnavailableError(what);
  return absl::InternalError(what);
}

}  // namespace strongbox::pkcs11
