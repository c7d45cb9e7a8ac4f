// A one-pass check of the path rules in strongbox/backend.h, for the hot
// read path: ValidateKey() splits the path into segments and costs about as
// much as an LMDB lookup. A path this check accepts is valid; anything else
// goes to ValidateKey() for the verdict and its message, so every backend
// still answers alike. lmdb_backend_test compares the two on random paths.
// Stateless; thread-safe.
#ifndef STRONGBOX_LIB_LMDB_KEY_CHECK_H_
#define STRONGBOX_LIB_LMDB_KEY_CHECK_H_

#include <cstddef>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "strongbox/backend.h"

namespace strongbox {
namespace lmdb_internal {

// True only for paths ValidateKey() accepts.
inline bool IsPlainValidKey(absl::string_view key, size_t max_key_bytes) {
  if (key.empty() || key.size() > max_key_bytes) return false;
  size_t segment = 0;  // start of the current segment
  for (size_t i = 0; i <= key.size(); ++i) {
    if (i < key.size()) {
      const unsigned char c = static_cast<unsigned char>(key[i]);
      if (c < 0x20 || c == 0x7f) return false;
      if (c != '/') continue;
    }
    const size_t length = i - segment;
    if (length == 0) return false;  // leading, trailing or double '/'
    if (key[segment] == '.' &&
        (length == 1 || (length == 2 && key[segment + 1] == '.'))) {
      return false;
    }
    segment = i + 1;
  }
  return true;
}

inline absl::Status CheckKey(absl::string_view key,
                             const BackendLimits& limits) {
  if (IsPlainValidKey(key, limits.max_key_bytes)) return absl::OkStatus();
  return ValidateKey(key, limits);
}

}  // namespace lmdb_internal
}  // namespace strongbox

#endif  // STRONGBOX_LIB_LMDB_KEY_CHECK_H_
