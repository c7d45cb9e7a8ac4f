// Policy: one named policy document, parsed from Vault's JSON policy format.
//
//   {"path": {"app/*":        {"capabilities": ["read", "list"]},
//             "app/+/admin":  {"capabilities": ["deny"]}}}
//
// The document is one object with one key, "path", mapping path patterns
// (lib/policy/path_pattern.h) to rules; a rule is an object with one key,
// "capabilities", a list of Vault's capability names (create, read, update,
// patch, delete, list, sudo, deny; repeats allowed). Anything else — an
// unknown key (Vault's allowed_parameters and friends are not supported),
// a pattern given twice, a value of the wrong type, trailing text — is
// INVALID_ARGUMENT with a message naming the policy and the line
// ("policy \"app\" line 3: unknown capability \"reed\""). A rule with an
// empty list is allowed and grants nothing (as in Vault, it still wins
// priority over broader patterns).
//
// JSON comes from nlohmann/json (Debian's nlohmann-json3-dev) in SAX mode
// with exceptions compiled out: no DOM, no recursion, so a hostile document
// costs linear time and constant stack.
//
// Plain values; thread-compatible.
#ifndef STRONGBOX_LIB_POLICY_POLICY_H_
#define STRONGBOX_LIB_POLICY_POLICY_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "lib/policy/path_pattern.h"
#include "strongbox/call_context.h"

namespace strongbox::policy {

// Largest policy document, bytes, and most rules in one policy.
inline constexpr size_t kMaxPolicyBytes = 256 << 10;
inline constexpr size_t kMaxRulesPerPolicy = 4096;

struct PolicyRule {
  PathPattern pattern;
  CapabilitySet capabilities;
  int line = 0;  // where the pattern was written, for messages
};

struct Policy {
  std::string name;
  std::vector<PolicyRule> rules;  // in document order; patterns distinct
};

// OK for a valid policy name: 1 to 128 bytes of [A-Za-z0-9_.-]. "root" is
// reserved (CallContext::root). INVALID_ARGUMENT otherwise.
absl::Status ValidatePolicyName(absl::string_view name);

// Parses `json` as the policy `name`. See the file comment.
absl::StatusOr<Policy> ParsePolicy(absl::string_view name,
                                   absl::string_view json);

// The capability with this Vault name, if any.
bool CapabilityFromName(absl::string_view name, Capability* out);

}  // namespace strongbox::policy

#endif  // STRONGBOX_LIB_POLICY_POLICY_H_
