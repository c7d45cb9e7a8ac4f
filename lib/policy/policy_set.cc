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
    if (r.pattern.is_exact()) {
      set.exact_.emplace(std::string(r.pattern.literal()), i);
    } else {
      set.by_head_[std::string(r.pattern.head())].push_back(i);
    }
  }
  for (auto& [head, bucket] : set.by_head_) {
    std::sort(bucket.begin(), bucket.end(), [&set](size_t a, size_t b) {
      return PathPattern::HigherPriority(set.rules_[a].pattern,
                                         set.rules_[b].pattern);
    });
    auto it = std::find_if(set.head_lengths_.begin(), set.head_lengths_.end(),
                           [&head = head](const HeadLength& h) {
                             return h.length == head.size();
                           });
    if (it == set.head_lengths_.end()) {
      set.head_lengths_.push_back(HeadLength{head.size(), {0, 0, 0, 0}});
      it = set.head_lengths_.end() - 1;
    }
    if (!head.empty()) {
      const unsigned char last = static_cast<unsigned char>(head.back());
      it->last_byte[last >> 6] |= uint64_t{1} << (last & 63);
    }
  }
  std::sort(set.head_lengths_.begin(), set.head_lengths_.end(),
            [](const HeadLength& a, const HeadLength& b) {
              return a.length > b.length;
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
  // Longest head first (rule 1); within a bucket, priority order.
  for (const HeadLength& h : head_lengths_) {
    if (h.length > path.size()) continue;
    if (h.length > 0) {
      const unsigned char b = static_cast<unsigned char>(path[h.length - 1]);
      if ((h.last_byte[b >> 6] & (uint64_t{1} << (b & 63))) == 0) continue;
    }
    auto it = by_head_.find(path.substr(0, h.length));
    if (it == by_head_.end()) continue;
    for (size_t i : it->second) {
      const Rule& r = rules_[i];
      // A plain glob matches on its head alone; '+' patterns need the rest.
      if (!r.pattern.has_plus() || r.pattern.Matches(path)) return &r;
    }
  }
  return nullptr;
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
