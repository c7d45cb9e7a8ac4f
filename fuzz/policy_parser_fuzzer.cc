// Any bytes as a policy document (lib/policy): an OK policy or an
// INVALID_ARGUMENT whose message names the policy, never a crash or an
// exception (nlohmann/json is built with JSON_NOEXCEPTION, so a reachable
// throw site aborts here). A policy that parses compiles, and its compiled
// evaluation agrees with a brute-force pass over its patterns on paths cut
// from the input.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "lib/policy/path_pattern.h"
#include "lib/policy/policy.h"
#include "lib/policy/policy_set.h"

namespace {

std::string BruteForceWinner(const strongbox::policy::Policy& policy,
                             absl::string_view path) {
  const strongbox::policy::PathPattern* best = nullptr;
  for (const auto& rule : policy.rules) {
    if (!rule.pattern.Matches(path)) continue;
    if (best == nullptr ||
        strongbox::policy::PathPattern::HigherPriority(rule.pattern, *best)) {
      best = &rule.pattern;
    }
  }
  return best == nullptr ? "" : best->text();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using strongbox::policy::CompiledPolicySet;
  using strongbox::policy::Policy;
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<Policy> policy = strongbox::policy::ParsePolicy("fuzz", text);
  if (!policy.ok()) {
    if (policy.status().code() != absl::StatusCode::kInvalidArgument ||
        !absl::StrContains(policy.status().message(), "policy \"fuzz\"")) {
      std::abort();
    }
    return 0;
  }
  const Policy* ptr = &*policy;
  const CompiledPolicySet set = CompiledPolicySet::Compile({&ptr, 1});
  if (set.rule_count() != policy->rules.size()) std::abort();
  // Paths: each pattern's own text and the input cut at newlines.
  std::vector<std::string> paths;
  for (const auto& rule : policy->rules) paths.push_back(rule.pattern.text());
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    paths.emplace_back(line);
  }
  for (const std::string& path : paths) {
    if (set.WinningPattern(path) != BruteForceWinner(*policy, path)) {
      std::abort();
    }
  }
  return 0;
}
