#include "lib/backend/batch.h"

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "lib/util/status_macros.h"

namespace strongbox {

absl::Status ValidateBatch(absl::Span<const WriteOp> ops,
                           const BackendLimits& limits) {
  // Duplicate keys: pairwise for the small batches the engines commit (no
  // allocation on the write path), through a set for large ones.
  constexpr size_t kPairwiseUpTo = 16;
  absl::flat_hash_set<absl::string_view> seen;
  for (size_t i = 0; i < ops.size(); ++i) {
    const WriteOp& op = ops[i];
    RETURN_IF_ERROR(ValidateKey(op.key, limits));
    if (op.kind == WriteOp::Kind::kPut &&
        op.value.size() > limits.max_value_bytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("value for ", op.key, " is ", op.value.size(),
                       " bytes; the limit is ", limits.max_value_bytes));
    }
    if (op.kind == WriteOp::Kind::kCheck &&
        op.expect == WriteOp::Expect::kAnything) {
      return absl::InvalidArgumentError(
          absl::StrCat("check of ", op.key, " has no precondition"));
    }
    bool duplicate = false;
    if (ops.size() <= kPairwiseUpTo) {
      for (size_t j = 0; j < i && !duplicate; ++j) {
        duplicate = ops[j].key == op.key;
      }
    } else {
      duplicate = !seen.insert(op.key).second;
    }
    if (duplicate) {
      return absl::InvalidArgumentError(
          absl::StrCat("batch names ", op.key, " more than once"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckPrecondition(const WriteOp& op,
                               std::optional<uint64_t> version) {
  switch (op.expect) {
    case WriteOp::Expect::kAnything:
      return absl::OkStatus();
    case WriteOp::Expect::kAbsent:
      if (!version.has_value()) return absl::OkStatus();
      return absl::AbortedError(absl::StrCat(op.key, " exists (version ",
                                             *version, "); expected absent"));
    case WriteOp::Expect::kVersion:
      if (version.has_value() && *version == op.expected_version) {
        return absl::OkStatus();
      }
      return absl::AbortedError(
          absl::StrCat(op.key, " is at ",
                       version.has_value() ? absl::StrCat("version ", *version)
                                           : std::string("no version (absent)"),
                       "; expected version ", op.expected_version));
  }
  return absl::OkStatus();
}

bool HasWrites(absl::Span<const WriteOp> ops) {
  for (const WriteOp& op : ops) {
    if (op.kind != WriteOp::Kind::kCheck) return true;
  }
  return false;
}

}  // namespace strongbox
