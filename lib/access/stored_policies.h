// StoredPolicies: named policy documents kept behind the barrier, the
// PolicySource of a store (issue 15).
//
// Storage: one record per policy at "policy/<name>" (kStoragePrefix),
// sealed by the barrier like every value; the record holds the document
// text as the host gave it (policy-get returns it unchanged). Put parses
// the document first (ParsePolicy), so a bad document stores nothing (D6).
// Put and Delete are writes: the caller (the active) passes its fence.
//
// Cache and consistency: every node keeps parsed policies and compiled
// sets, each tagged with the backend version of the record it came from.
// Compiled() reads each named record's version from the backend (no
// decryption) and re-reads, re-parses and re-compiles only what changed,
// so a node serves the stored policies as of its read — on a linearizable
// backend, a policy change acknowledged on the active is in force on every
// node for the next request (no invalidation message needed; the same
// reasoning as SecretStore's read-after-write).
//
// Thread-safe.
#ifndef STRONGBOX_LIB_ACCESS_STORED_POLICIES_H_
#define STRONGBOX_LIB_ACCESS_STORED_POLICIES_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "lib/access/request_gate.h"
#include "lib/policy/policy.h"
#include "lib/policy/policy_set.h"
#include "lib/util/mutex.h"
#include "strongbox/backend.h"
#include "strongbox/barrier.h"

namespace strongbox::access {

class StoredPolicies : public PolicySource {
 public:
  static constexpr absl::string_view kStoragePrefix = "policy/";

  // `barrier` is not owned and must outlive this object.
  explicit StoredPolicies(Barrier* barrier) : barrier_(barrier) {}

  // Validates and stores `document` as policy `name`; the backend index.
  // INVALID_ARGUMENT for a bad name or document (nothing stored).
  absl::StatusOr<uint64_t> Put(absl::string_view name,
                               absl::string_view document, FenceToken fence);
  // The stored document text. NOT_FOUND if there is none.
  absl::StatusOr<std::string> GetDocument(absl::string_view name);
  // Every policy name, sorted.
  absl::StatusOr<std::vector<std::string>> List();
  // Removes policy `name` (absent is fine); the backend index.
  absl::StatusOr<uint64_t> Delete(absl::string_view name, FenceToken fence);

  // PolicySource.
  absl::StatusOr<std::shared_ptr<const policy::CompiledPolicySet>> Compiled(
      absl::Span<const std::string> names) override;
  absl::StatusOr<bool> AnyPolicy() override;

 private:
  struct Cached {
    uint64_t version = 0;                          // 0: absent
    std::shared_ptr<const policy::Policy> policy;  // null when absent
  };
  struct CachedSet {
    std::vector<uint64_t> versions;  // of the names, in order
    std::shared_ptr<const policy::CompiledPolicySet> set;
  };

  static constexpr size_t kMaxCachedSets = 1024;

  // The policy `name` as stored now (version 0 and null if absent).
  absl::StatusOr<Cached> Current(absl::string_view name);

  Barrier* const barrier_;
  Mutex mu_;
  absl::flat_hash_map<std::string, Cached> policies_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, CachedSet> sets_ ABSL_GUARDED_BY(mu_);
};

}  // namespace strongbox::access

#endif  // STRONGBOX_LIB_ACCESS_STORED_POLICIES_H_
