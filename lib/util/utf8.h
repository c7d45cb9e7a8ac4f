// Strict UTF-8 validation: what protobuf requires of a proto3 `string`
// field (no overlong forms, no surrogates, nothing above U+10FFFF). The KV
// engine checks paths and field names with it before they reach a record,
// and its record reader checks field names read back. Stateless,
// thread-safe. Internal to strongbox.
#ifndef STRONGBOX_LIB_UTIL_UTF8_H_
#define STRONGBOX_LIB_UTIL_UTF8_H_

#include "absl/strings/string_view.h"

namespace strongbox {

// True if `s` is well-formed UTF-8.
bool IsValidUtf8(absl::string_view s);

}  // namespace strongbox

#endif  // STRONGBOX_LIB_UTIL_UTF8_H_
