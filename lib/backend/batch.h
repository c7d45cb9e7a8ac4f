// Helpers every Backend implementation shares for validating and checking
// a Commit() batch, so all backends give the same answers. Stateless;
// thread-safe.
#ifndef STRONGBOX_LIB_BACKEND_BATCH_H_
#define STRONGBOX_LIB_BACKEND_BATCH_H_

#include <cstdint>
#include <optional>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "strongbox/backend.h"

namespace strongbox {

// INVALID_ARGUMENT for a bad key, an oversized value, a key named twice or
// a malformed precondition; OK otherwise.
absl::Status ValidateBatch(absl::Span<const WriteOp> ops,
                           const BackendLimits& limits);

// ABORTED when `op`'s precondition does not hold for an entry whose
// current version is `version` (nullopt: absent).
absl::Status CheckPrecondition(const WriteOp& op,
                               std::optional<uint64_t> version);

// True if any op is a put or a delete.
bool HasWrites(absl::Span<const WriteOp> ops);

}  // namespace strongbox

#endif  // STRONGBOX_LIB_BACKEND_BATCH_H_
