// Policy evaluation: one table, each case naming the rule it checks — the
// five priority rules of lib/policy/path_pattern.h and the combinations
// Vault users report as surprising (deny vs wildcard, '+' vs '*', list on
// prefixes, KV data vs metadata, no union across patterns). Then a
// randomized check of the compiled structure against a brute-force
// evaluation (seed printed on failure).
#include "lib/policy/policy_set.h"

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/policy/path_pattern.h"
#include "lib/policy/policy.h"
#include "strongbox/call_context.h"

namespace strongbox::policy {
namespace {

constexpr PriorityRule kNoRule = PriorityRule::kSame;

struct Case {
  const char* name;  // the rule or combination the case shows
  // For priority cases: the rule that must tell `want_pattern` from `loser`
  // (both of which must match `path`). kNoRule: not a priority case.
  PriorityRule rule;
  std::vector<std::string> policies;  // JSON documents, one per policy
  const char* path;
  const char* want_pattern;  // "" : nothing matches
  const char* want_caps;     // CapabilitySet::ToString()
  const char* loser = "";
};

std::string Doc(std::vector<std::pair<std::string, std::string>> rules) {
  std::vector<std::string> parts;
  for (const auto& [pattern, caps] : rules) {
    parts.push_back(
        absl::StrCat("\"", pattern, "\":{\"capabilities\":[", caps, "]}"));
  }
  return absl::StrCat("{\"path\":{", absl::StrJoin(parts, ","), "}}");
}

const std::vector<Case>& Cases() {
  static const auto* cases = new std::vector<Case>{
      // ---- rule 1: the first wildcard later wins; exact beats everything.
      {"rule 1: exact beats a glob of the same text",
       PriorityRule::kFirstWildcardLater,
       {Doc({{"app/db", "\"read\""}, {"app/db*", "\"update\""}})},
       "app/db",
       "app/db",
       "read",
       "app/db*"},
      {"rule 1: exact beats a '+' pattern",
       PriorityRule::kFirstWildcardLater,
       {Doc({{"app/db", "\"read\""}, {"app/+", "\"update\""}})},
       "app/db",
       "app/db",
       "read",
       "app/+"},
      {"rule 1: among globs the longer prefix wins",
       PriorityRule::kFirstWildcardLater,
       {Doc({{"app/*", "\"read\""}, {"app/team/*", "\"update\""}})},
       "app/team/x",
       "app/team/*",
       "update",
       "app/*"},
      {"rule 1: a '+' later beats a '+' earlier",
       PriorityRule::kFirstWildcardLater,
       {Doc({{"app/+/x", "\"read\""}, {"app/a/+", "\"update\""}})},
       "app/a/x",
       "app/a/+",
       "update",
       "app/+/x"},
      {"rule 1 (surprise): a glob beats an earlier '+' however specific the "
       "rest",
       PriorityRule::kFirstWildcardLater,
       {Doc({{"a/+/c/d/e", "\"read\""}, {"a/b*", "\"deny\""}})},
       "a/b/c/d/e",
       "a/b*",
       "deny",
       "a/+/c/d/e"},
      // ---- rule 2: no trailing '*' wins.
      {"rule 2: '+' vs '*' at the same position, no trailing glob wins",
       PriorityRule::kNoTrailingGlob,
       {Doc({{"secret/+/config", "\"read\""}, {"secret/*", "\"deny\""}})},
       "secret/a/config",
       "secret/+/config",
       "read",
       "secret/*"},
      {"rule 2: 'a/+' beats 'a/+*'",
       PriorityRule::kNoTrailingGlob,
       {Doc({{"a/+", "\"read\""}, {"a/+*", "\"update\""}})},
       "a/b",
       "a/+",
       "read",
       "a/+*"},
      // ---- rule 3: fewer '+' wins.
      {"rule 3: fewer '+' segments win",
       PriorityRule::kFewerPlus,
       {Doc({{"a/+/+", "\"read\""}, {"a/+/c", "\"update\""}})},
       "a/b/c",
       "a/+/c",
       "update",
       "a/+/+"},
      {"rule 3: fewer '+' wins with globs too",
       PriorityRule::kFewerPlus,
       {Doc({{"a/+/+/*", "\"read\""}, {"a/+/cc/*", "\"update\""}})},
       "a/b/cc/d",
       "a/+/cc/*",
       "update",
       "a/+/+/*"},
      // ---- rule 4: longer wins.
      {"rule 4: the longer pattern wins",
       PriorityRule::kLonger,
       {Doc({{"a/+/c*", "\"read\""}, {"a/+/cd*", "\"update\""}})},
       "a/b/cde",
       "a/+/cd*",
       "update",
       "a/+/c*"},
      // ---- rule 5: lexicographically greater wins.
      {"rule 5: the lexicographically greater pattern wins",
       PriorityRule::kLexicographic,
       {Doc({{"a/+/+/d", "\"read\""}, {"a/+/c/+", "\"update\""}})},
       "a/b/c/d",
       "a/+/c/+",
       "update",
       "a/+/+/d"},
      // ---- deny.
      {"deny on the winner refuses all, whatever it is unioned with",
       kNoRule,
       {Doc({{"app/*", "\"read\",\"deny\",\"update\""}})},
       "app/x",
       "app/*",
       "deny"},
      {"deny in one policy wins over a grant of the same pattern in another",
       kNoRule,
       {Doc({{"app/*", "\"read\",\"list\""}}), Doc({{"app/*", "\"deny\""}})},
       "app/x",
       "app/*",
       "deny"},
      {"deny vs wildcard (surprise): a broader deny does not beat a narrower "
       "grant",
       PriorityRule::kFirstWildcardLater,
       {Doc({{"secret/*", "\"deny\""}, {"secret/app/*", "\"read\""}})},
       "secret/app/x",
       "secret/app/*",
       "read",
       "secret/*"},
      {"deny vs wildcard (surprise): an exact deny leaves the children to "
       "the glob",
       kNoRule,
       {Doc({{"secret/*", "\"read\""}, {"secret/admin", "\"deny\""}})},
       "secret/admin/keys",
       "secret/*",
       "read"},
      {"deny vs wildcard: an exact deny refuses the exact path",
       PriorityRule::kFirstWildcardLater,
       {Doc({{"secret/*", "\"read\""}, {"secret/admin", "\"deny\""}})},
       "secret/admin",
       "secret/admin",
       "deny",
       "secret/*"},
      {"deny vs wildcard (surprise): 'secret/admin*' also denies "
       "'secret/administrators'",
       PriorityRule::kFirstWildcardLater,
       {Doc({{"secret/*", "\"read\""}, {"secret/admin*", "\"deny\""}})},
       "secret/administrators",
       "secret/admin*",
       "deny",
       "secret/*"},
      // ---- '+' vs '*'.
      {"+ vs *: '+' matches exactly one segment, never two",
       kNoRule,
       {Doc({{"secret/+/config", "\"read\""}})},
       "secret/a/b/config",
       "",
       ""},
      {"+ vs *: '*' crosses segments",
       kNoRule,
       {Doc({{"secret/*", "\"read\""}})},
       "secret/a/b/config",
       "secret/*",
       "read"},
      {"+ vs *: a '+' glob needs the '+' segment to exist",
       kNoRule,
       {Doc({{"secret/+/*", "\"read\""}})},
       "secret/a",
       "",
       ""},
      {"+ vs *: a '+' pattern's last glob segment is a prefix",
       kNoRule,
       {Doc({{"app/+/d*", "\"read\""}})},
       "app/x/db/more",
       "app/+/d*",
       "read"},
      // ---- union and its limits.
      {"union: one pattern in two policies unions the capabilities",
       kNoRule,
       {Doc({{"app/*", "\"read\""}}), Doc({{"app/*", "\"update\""}})},
       "app/x",
       "app/*",
       "read,update"},
      {"union (surprise): a narrower pattern's rule replaces a broader one's, "
       "it does not add to it",
       PriorityRule::kFirstWildcardLater,
       {Doc({{"app/*", "\"read\",\"list\""}}), Doc({{"app/db", "\"update\""}})},
       "app/db",
       "app/db",
       "update",
       "app/*"},
      {"union (surprise): an empty capability list still wins and grants "
       "nothing",
       PriorityRule::kFirstWildcardLater,
       {Doc({{"app/*", "\"read\""}, {"app/db", ""}})},
       "app/db",
       "app/db",
       "",
       "app/*"},
      {"a leading '/' of a pattern is dropped (same pattern, unioned)",
       kNoRule,
       {Doc({{"/app/db", "\"read\""}}), Doc({{"app/db", "\"list\""}})},
       "app/db",
       "app/db",
       "read,list"},
      // ---- list on prefixes.
      {"list on prefixes: 'app/*' covers the folder 'app/'",
       kNoRule,
       {Doc({{"app/*", "\"list\""}})},
       "app/",
       "app/*",
       "list"},
      {"list on prefixes: 'app' (exact) does not cover 'app/'",
       kNoRule,
       {Doc({{"app", "\"list\""}})},
       "app/",
       "",
       ""},
      {"list on prefixes: 'app/*' does not cover 'app' itself",
       kNoRule,
       {Doc({{"app/*", "\"list\""}})},
       "app",
       "",
       ""},
      {"list on prefixes: 'app*' covers 'app', 'app/' and 'apple'",
       kNoRule,
       {Doc({{"app*", "\"list\""}})},
       "apple",
       "app*",
       "list"},
      {"list on prefixes: '+' matches an empty segment, so 'app/+' covers "
       "'app/' (as in Vault)",
       kNoRule,
       {Doc({{"app/+", "\"list\""}})},
       "app/",
       "app/+",
       "list"},
      // ---- KV data vs metadata (operations check metadata/<path>).
      {"kv data vs metadata: a data grant does not reach metadata",
       kNoRule,
       {Doc({{"app/*", "\"read\",\"delete\""}})},
       "metadata/app/db",
       "",
       ""},
      {"kv data vs metadata: a metadata grant does not reach data",
       kNoRule,
       {Doc({{"metadata/app/*", "\"read\",\"delete\""}})},
       "app/db",
       "",
       ""},
      {"kv data vs metadata: '*' alone reaches both",
       kNoRule,
       {Doc({{"*", "\"read\""}})},
       "metadata/app/db",
       "*",
       "read"},
      // ---- nothing.
      {"no policy: nothing is allowed", kNoRule, {}, "app/x", "", ""},
      {"no matching pattern: nothing is allowed",
       kNoRule,
       {Doc({{"app/*", "\"read\""}})},
       "other/x",
       "",
       ""},
  };
  return *cases;
}

TEST(PolicySetTest, Table) {
  for (const Case& c : Cases()) {
    SCOPED_TRACE(c.name);
    std::vector<Policy> policies;
    for (size_t i = 0; i < c.policies.size(); ++i) {
      absl::StatusOr<Policy> p =
          ParsePolicy(absl::StrCat("p", i), c.policies[i]);
      ASSERT_TRUE(p.ok()) << p.status();
      policies.push_back(*std::move(p));
    }
    std::vector<const Policy*> ptrs;
    for (const Policy& p : policies) ptrs.push_back(&p);
    const CompiledPolicySet set = CompiledPolicySet::Compile(ptrs);
    EXPECT_EQ(set.WinningPattern(c.path), c.want_pattern);
    EXPECT_EQ(set.Capabilities(c.path).ToString(), c.want_caps);
    if (c.rule != kNoRule) {
      absl::StatusOr<PathPattern> winner = PathPattern::Parse(c.want_pattern);
      absl::StatusOr<PathPattern> loser = PathPattern::Parse(c.loser);
      ASSERT_TRUE(winner.ok() && loser.ok());
      EXPECT_TRUE(winner->Matches(c.path));
      EXPECT_TRUE(loser->Matches(c.path));
      EXPECT_EQ(PathPattern::DecidingRule(*winner, *loser), c.rule)
          << PriorityRuleName(PathPattern::DecidingRule(*winner, *loser));
      EXPECT_TRUE(PathPattern::HigherPriority(*winner, *loser));
      EXPECT_FALSE(PathPattern::HigherPriority(*loser, *winner));
    }
  }
}

TEST(PolicySetTest, AllowsNeverGrantsDenyAndRespectsEachCapability) {
  absl::StatusOr<Policy> p = ParsePolicy(
      "p",
      Doc({{"a/*", "\"create\",\"patch\",\"sudo\""}, {"d/*", "\"deny\""}}));
  ASSERT_TRUE(p.ok()) << p.status();
  const Policy* ptr = &*p;
  const CompiledPolicySet set = CompiledPolicySet::Compile({&ptr, 1});
  EXPECT_TRUE(set.Allows("a/x", Capability::kCreate));
  EXPECT_TRUE(set.Allows("a/x", Capability::kPatch));
  EXPECT_TRUE(set.Allows("a/x", Capability::kSudo));
  EXPECT_FALSE(set.Allows("a/x", Capability::kRead));
  EXPECT_FALSE(set.Allows("a/x", Capability::kUpdate));
  EXPECT_FALSE(set.Allows("a/x", Capability::kDelete));
  EXPECT_FALSE(set.Allows("a/x", Capability::kList));
  EXPECT_FALSE(set.Allows("d/x", Capability::kDeny));
  EXPECT_FALSE(set.Allows("d/x", Capability::kRead));
}

// ---- the compiled structure against brute force.

// Every pattern that matches, the highest priority one by pairwise
// comparison: the definition, with no index.
std::string BruteForceWinner(const std::vector<PathPattern>& patterns,
                             const std::string& path) {
  const PathPattern* best = nullptr;
  for (const PathPattern& p : patterns) {
    if (!p.Matches(path)) continue;
    if (best == nullptr || PathPattern::HigherPriority(p, *best)) best = &p;
  }
  return best == nullptr ? "" : best->text();
}

TEST(PolicySetTest, CompiledMatchesBruteForce) {
  const uint32_t seed = std::random_device{}();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937 rng(seed);
  const std::vector<std::string> segs = {"a", "b", "ab", "", "+"};
  auto pick = [&](size_t n) { return static_cast<size_t>(rng() % n); };
  for (int round = 0; round < 200; ++round) {
    std::vector<std::string> texts;
    const size_t n = 1 + pick(12);
    for (size_t i = 0; i < n; ++i) {
      std::vector<std::string> parts;
      const size_t depth = 1 + pick(4);
      for (size_t d = 0; d < depth; ++d)
        parts.push_back(segs[pick(segs.size())]);
      std::string t = absl::StrJoin(parts, "/");
      if (pick(2) == 0) t += "*";
      if (!PathPattern::Parse(t).ok()) continue;
      texts.push_back(t);
    }
    std::vector<std::pair<std::string, std::string>> rules;
    std::vector<PathPattern> patterns;
    for (const std::string& t : texts) {
      PathPattern parsed = *PathPattern::Parse(t);  // drops a leading '/'
      if (std::find_if(patterns.begin(), patterns.end(), [&](const auto& p) {
            return p.text() == parsed.text();
          }) != patterns.end()) {
        continue;
      }
      patterns.push_back(std::move(parsed));
      rules.push_back({t, "\"read\""});
    }
    absl::StatusOr<Policy> policy = ParsePolicy("p", Doc(rules));
    ASSERT_TRUE(policy.ok()) << policy.status() << " " << Doc(rules);
    const Policy* ptr = &*policy;
    const CompiledPolicySet set = CompiledPolicySet::Compile({&ptr, 1});
    for (int q = 0; q < 50; ++q) {
      std::vector<std::string> parts;
      const size_t depth = 1 + pick(5);
      for (size_t d = 0; d < depth; ++d) {
        parts.push_back(segs[pick(segs.size() - 1)]);  // no '+' in paths
      }
      const std::string path = absl::StrJoin(parts, "/");
      ASSERT_EQ(set.WinningPattern(path), BruteForceWinner(patterns, path))
          << "path " << path << " policy " << Doc(rules);
    }
  }
}

}  // namespace
}  // namespace strongbox::policy
