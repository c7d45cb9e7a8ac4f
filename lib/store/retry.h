// The one read-modify-write retry loop of the store's engines (KV and
// Transit): read a record, decide, commit a write conditioned on the
// version read; when another write changed the record in between, read
// again and re-apply, a bounded number of times.
//
// What is retried is decided in one place: a status marked by
// VersionedCommitStatus, i.e. ABORTED from the commit of a versioned
// (check-and-set) write. Any other status, ABORTED included (a caller's own
// check-and-set mismatch is final), ends the loop at once.
//
// Stateless and thread-safe.
#ifndef STRONGBOX_LIB_STORE_RETRY_H_
#define STRONGBOX_LIB_STORE_RETRY_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace strongbox {

// Attempts a read-modify-write makes before a conflicting writer wins for
// good (the loop then returns the last conflict, ABORTED).
inline constexpr int kConflictAttempts = 8;

// The status of the commit of a versioned write, for a RetryOnConflict
// attempt to return: ABORTED (the record changed since it was read) comes
// back marked as a conflict to retry; anything else is returned unchanged.
absl::Status VersionedCommitStatus(absl::Status commit);
template <typename T>
absl::Status VersionedCommitStatus(const absl::StatusOr<T>& commit) {
  return VersionedCommitStatus(commit.status());
}

// A conflict found without a commit (ABORTED, marked retryable): what an
// attempt read was changed or used up by another writer meanwhile.
absl::Status ConflictError(absl::string_view message);

// Whether `status` is a conflict RetryOnConflict retries.
bool IsRetryableConflict(const absl::Status& status);

namespace retry_internal {
// `status` without the conflict mark.
absl::Status Unmarked(absl::Status status);
}  // namespace retry_internal

// Calls `attempt` (absl::Status()) until it returns anything but a
// retryable conflict, at most kConflictAttempts times. Returns its last
// status; a conflict left after the last attempt is returned as the plain
// ABORTED the backend gave (unmarked).
template <typename Attempt>
absl::Status RetryOnConflict(Attempt&& attempt) {
  absl::Status status;
  for (int i = 0; i < kConflictAttempts; ++i) {
    status = attempt();
    if (!IsRetryableConflict(status)) return status;
  }
  return retry_internal::Unmarked(std::move(status));
}

}  // namespace strongbox

#endif  // STRONGBOX_LIB_STORE_RETRY_H_
