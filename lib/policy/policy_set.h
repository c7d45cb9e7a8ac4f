// CompiledPolicySet: the policies of one caller, compiled once into a
// structure that answers "what may this caller do on this path" fast.
//
// Semantics (Vault's ACL):
//   - Rules of all the policies are merged per pattern (PathPattern::text):
//     their capabilities are unioned.
//   - For a path, the one winning pattern among those that match is chosen
//     by the priority order of lib/policy/path_pattern.h; only its
//     capabilities count (a broader pattern adds nothing to a narrower one).
//   - If the winner's union holds `deny`, nothing is allowed.
//   - No matching pattern: nothing is allowed.
//
// Evaluation: exact patterns are one hash lookup (an exact match wins
// outright). Wildcard patterns are bucketed by their head (the text before
// the first wildcard): rule 1 ranks patterns by the head's length, so the
// buckets are tried longest head first, and the first bucket holding a
// pattern that matches holds the winner (its patterns are kept in priority
// order). A head length is skipped without hashing unless the path's byte
// at that position could end such a head (a 256-bit set per length).
//
// Immutable after Compile; thread-safe for concurrent Capabilities calls.
#ifndef STRONGBOX_LIB_POLICY_POLICY_SET_H_
#define STRONGBOX_LIB_POLICY_POLICY_SET_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "lib/policy/path_pattern.h"
#include "lib/policy/policy.h"
#include "strongbox/call_context.h"

namespace strongbox::policy {

class CompiledPolicySet {
 public:
  // An empty set: refuses everything.
  CompiledPolicySet() = default;

  // Merges and compiles `policies` (null entries are skipped).
  static CompiledPolicySet Compile(absl::Span<const Policy* const> policies);

  // The capabilities granted on `path`: the winning pattern's union, or
  // just {kDeny} when it holds deny, or {} when nothing matches.
  CapabilitySet Capabilities(absl::string_view path) const;

  // Whether `capability` is granted on `path` (never for kDeny).
  bool Allows(absl::string_view path, Capability capability) const {
    return capability != Capability::kDeny &&
           Capabilities(path).Has(capability);
  }

  // The text of the pattern that wins for `path`, "" if none matches (for
  // tests and for explaining a refusal).
  std::string WinningPattern(absl::string_view path) const;

  size_t rule_count() const { return rule_count_; }

 private:
  struct Rule {
    PathPattern pattern;
    CapabilitySet capabilities;
  };

  // The winning rule for `path`, null if none matches.
  const Rule* Winner(absl::string_view path) const;

  // Wildcard heads of one length.
  struct HeadLength {
    size_t length;
    uint64_t last_byte[4];  // bit b: some head of this length ends in b
  };

  std::vector<Rule> rules_;  // every merged pattern; the maps index it
  absl::flat_hash_map<std::string, size_t> exact_;
  // head -> its wildcard rules, highest priority first
  absl::flat_hash_map<std::string, std::vector<size_t>> by_head_;
  std::vector<HeadLength> head_lengths_;  // distinct lengths, descending
  size_t rule_count_ = 0;
};

}  // namespace strongbox::policy

#endif  // STRONGBOX_LIB_POLICY_POLICY_SET_H_
