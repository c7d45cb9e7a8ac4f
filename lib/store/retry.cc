#include "lib/store/retry.h"

#include <utility>

#include "absl/strings/cord.h"

namespace strongbox {
namespace {

constexpr absl::string_view kConflictPayload =
    "type.strongbox/store.RetryableConflict";

absl::Status Marked(absl::Status status) {
  status.SetPayload(kConflictPayload, absl::Cord());
  return status;
}

}  // namespace

absl::Status VersionedCommitStatus(absl::Status commit) {
  if (commit.code() != absl::StatusCode::kAborted) return commit;
  return Marked(std::move(commit));
}

absl::Status ConflictError(absl::string_view message) {
  return Marked(absl::AbortedError(message));
}

bool IsRetryableConflict(const absl::Status& status) {
  return status.code() == absl::StatusCode::kAborted &&
         status.GetPayload(kConflictPayload).has_value();
}

namespace retry_internal {

absl::Status Unmarked(absl::Status status) {
  status.ErasePayload(kConflictPayload);
  return status;
}

}  // namespace retry_internal
}  // namespace strongbox
