// PathPattern: one path pattern of a policy rule, with Vault's matching and
// Vault's priority order among patterns that match the same path.
//
// Matching (a leading '/' of the pattern is dropped, as Vault does):
//   "app/db"     exact: only the path "app/db".
//   "app/*"      a trailing '*' is a prefix glob: every path that starts
//                with "app/" ("app/" itself included, "app" not). '*'
//                anywhere else is refused (INVALID_ARGUMENT).
//   "app/+/db"   a '+' segment matches exactly one path segment, whatever
//                it holds (an empty one too, as in Vault); '+' inside a
//                segment ("a+b") is refused. With a trailing '*' the last
//                segment is a prefix and any number of segments may follow:
//                "app/+/d*" matches "app/x/db" and "app/x/db/more".
//
// Priority, when several patterns match one path (Vault's order; the first
// rule that tells them apart decides):
//   1. kFirstWildcardLater: the pattern whose first wildcard ('+' or the
//      trailing '*') comes later wins; a pattern with no wildcard (exact)
//      counts as "never", so an exact match always wins.
//   2. kNoTrailingGlob: a pattern without a trailing '*' beats one with.
//   3. kFewerPlus: fewer '+' segments win.
//   4. kLonger: the longer pattern wins.
//   5. kLexicographic: the lexicographically greater pattern wins.
//
// Immutable after Parse; thread-compatible.
#ifndef STRONGBOX_LIB_POLICY_PATH_PATTERN_H_
#define STRONGBOX_LIB_POLICY_PATH_PATTERN_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace strongbox::policy {

// Which of the five priority rules told two patterns apart (kSame: they are
// the same pattern).
enum class PriorityRule {
  kFirstWildcardLater = 1,
  kNoTrailingGlob = 2,
  kFewerPlus = 3,
  kLonger = 4,
  kLexicographic = 5,
  kSame = 6,
};
absl::string_view PriorityRuleName(PriorityRule rule);

class PathPattern {
 public:
  // Longest pattern accepted, bytes.
  static constexpr size_t kMaxBytes = 1024;

  // INVALID_ARGUMENT (naming the problem, not echoing the pattern) for an
  // empty pattern, one over kMaxBytes, a '*' that is not the last
  // character, or a '+' that is not a whole segment.
  static absl::StatusOr<PathPattern> Parse(absl::string_view text);

  // Whether `path` matches (see the file comment).
  bool Matches(absl::string_view path) const;

  // The pattern as written, without a leading '/': the key under which
  // rules of several policies for "the same pattern" are unioned.
  const std::string& text() const { return text_; }
  bool has_trailing_glob() const { return glob_; }
  bool has_plus() const { return plus_count_ > 0; }
  bool is_exact() const { return !glob_ && plus_count_ == 0; }
  // For a plain glob (trailing '*', no '+'): the prefix before the '*'.
  // For an exact pattern: the path itself.
  absl::string_view literal() const { return literal_; }
  // For a pattern with a wildcard: the text before its first wildcard,
  // which every path it matches starts with (rule 1 orders by its length).
  absl::string_view head() const {
    return absl::string_view(literal_).substr(0, first_wildcard_);
  }

  // Whether `a` has priority over `b`, and by which rule. Both are assumed
  // to match the same path.
  static bool HigherPriority(const PathPattern& a, const PathPattern& b);
  static PriorityRule DecidingRule(const PathPattern& a, const PathPattern& b);

 private:
  PathPattern() = default;

  std::string text_;     // without a leading '/'
  std::string literal_;  // text_ without the trailing '*'
  bool glob_ = false;
  size_t first_wildcard_ = 0;  // SIZE_MAX for an exact pattern
  size_t plus_count_ = 0;
  // For a pattern with '+': literal_ split at '/'.
  std::vector<std::string> segments_;
};

}  // namespace strongbox::policy

#endif  // STRONGBOX_LIB_POLICY_PATH_PATTERN_H_
