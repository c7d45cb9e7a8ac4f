#include "lib/policy/policy_set.h"

#include <algorithm>
#include <functional>

namespace strongbox::policy {

CompiledPolicySet CompiledPolicySet::Compile(
    absl::Span<const Policy* const> policies) {
  CompiledPolicySet set;
  absl::flat_hash_map<std::string, size_t> by_text;
  for (const Policy* policy : policies) {
    if (policy == nullptr) continue;
    for (const PolicyRule& rule : policy->rules) {
      auto [it, inserted] =
          by_text.try_emplace(rule.pattern.text(), set.rules_.size());
      if (inserted) {
        set.rules_.push_back(Rule{rule.pattern, rule.capabilities});
      } else {
        set.rules_[it->second].capabilities.Add(rule.capabilities);
      }
    }
  }
  for (size_t i = 0; i < set.rules_.size(); ++i) {
    Rule& r = set.rules_[i];
    if (r.capabilities.Has(Capability::kDeny)) {
      r.capabilities = CapabilitySet(Capability::kDeny);
    }
    if (r.pattern.has_plus()) {
      set.plus_.push_back(i);
    } else if (r.pattern.has_trailing_glob()) {
      set.globs_.emplace(std::string(r.pattern.literal()), i);
      set.glob_lengths_.push_back(r.pattern.literal().size());
    } else {
      set.exact_.emplace(std::string(r.pattern.literal()), i);
    }
  }
  std::sort(set.glob_lengths_.begin(), set.glob_lengths_.end(),
            std::greater<size_t>());
  set.glob_lengths_.erase(
      std::unique(set.glob_lengths_.begin(), set.glob_lengths_.end()),
      set.glob_lengths_.end());
  std::sort(set.plus_.begin(), set.plus_.end(), [&set](size_t a, size_t b) {
    return PathPattern::HigherPriority(set.rules_[a].pattern,
                                       set.rules_[b].pattern);
  });
  set.rule_count_ = set.rules_.size();
  return set;
}

const CompiledPolicySet::Rule* CompiledPolicySet::Winner(
    absl::string_view path) const {
  // An exact pattern outranks every wildcard (rule 1).
  if (!exact_.empty()) {
    auto it = exact_.find(path);
    if (it != exact_.end()) return &rules_[it->second];
  }
  // Among plain globs, the longest prefix wins (rule 1).
  const Rule* best = nullptr;
  for (size_t len : glob_lengths_) {
    if (len > path.size()) continue;
    auto it = globs_.find(path.substr(0, len));
    if (it != globs_.end()) {
      best = &rules_[it->second];
      break;
    }
  }
  // '+' patterns in priority order: the first that matches is the best of
  // them; once the glob found outranks one, it outranks all that follow.
  for (size_t i : plus_) {
    const Rule& r = rules_[i];
    if (best != nullptr &&
        PathPattern::HigherPriority(best->pattern, r.pattern)) {
      break;
    }
    if (r.pattern.Matches(path)) return &r;
  }
  return best;
}

CapabilitySet CompiledPolicySet::Capabilities(absl::string_view path) const {
  const Rule* r = Winner(path);
  return r == nullptr ? CapabilitySet() : r->capabilities;
}

std::string CompiledPolicySet::WinningPattern(absl::string_view path) const {
  const Rule* r = Winner(path);
  return r == nullptr ? std::string() : r->pattern.text();
}

}  // namespace strongbox::policy
