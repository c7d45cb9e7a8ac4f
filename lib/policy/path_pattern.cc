#include "lib/policy/path_pattern.h"

#include <cstdint>
#include <tuple>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"

namespace strongbox::policy {

absl::string_view PriorityRuleName(PriorityRule rule) {
  switch (rule) {
    case PriorityRule::kFirstWildcardLater:
      return "first wildcard later wins";
    case PriorityRule::kNoTrailingGlob:
      return "no trailing * wins";
    case PriorityRule::kFewerPlus:
      return "fewer + wins";
    case PriorityRule::kLonger:
      return "longer wins";
    case PriorityRule::kLexicographic:
      return "lexicographically greater wins";
    case PriorityRule::kSame:
      return "same pattern";
  }
  return "?";
}

absl::StatusOr<PathPattern> PathPattern::Parse(absl::string_view text) {
  if (absl::StartsWith(text, "/")) text.remove_prefix(1);
  if (text.empty()) {
    return absl::InvalidArgumentError("empty path pattern");
  }
  if (text.size() > kMaxBytes) {
    return absl::InvalidArgumentError("path pattern longer than 1024 bytes");
  }
  PathPattern p;
  p.text_ = std::string(text);
  absl::string_view literal = text;
  if (absl::EndsWith(literal, "*")) {
    p.glob_ = true;
    literal.remove_suffix(1);
  }
  if (literal.find('*') != absl::string_view::npos) {
    return absl::InvalidArgumentError(
        "'*' is allowed only as the last character of a path pattern");
  }
  p.literal_ = std::string(literal);
  p.first_wildcard_ = p.glob_ ? literal.size() : SIZE_MAX;
  if (literal.find('+') != absl::string_view::npos) {
    p.segments_ = absl::StrSplit(literal, '/');
    size_t offset = 0;
    for (const std::string& s : p.segments_) {
      if (s == "+") {
        ++p.plus_count_;
        if (offset < p.first_wildcard_) p.first_wildcard_ = offset;
      } else if (s.find('+') != std::string::npos) {
        return absl::InvalidArgumentError(
            "'+' must be a whole path segment ('a/+/b')");
      }
      offset += s.size() + 1;
    }
  }
  return p;
}

bool PathPattern::Matches(absl::string_view path) const {
  if (plus_count_ == 0) {
    return glob_ ? absl::StartsWith(path, literal_) : path == literal_;
  }
  // Segment by segment, without allocating: the path must have at least as
  // many segments as the pattern (exactly as many without a glob), and with
  // a glob the pattern's last segment is a prefix of the path's segment.
  size_t pos = 0;
  const size_t n = segments_.size();
  for (size_t i = 0; i < n; ++i) {
    if (pos > path.size()) return false;  // path ran out of segments
    size_t end = path.find('/', pos);
    if (end == absl::string_view::npos) end = path.size();
    const absl::string_view seg = path.substr(pos, end - pos);
    const std::string& want = segments_[i];
    const bool last = i + 1 == n;
    if (last && glob_) {
      // The rest of the path (this segment and any after it) starts with
      // `want`, as long as `want` stays inside this segment.
      return want == "+" || absl::StartsWith(seg, want);
    }
    if (want != "+" && seg != want) return false;
    if (last) return end == path.size();
    if (end == path.size()) return false;  // pattern has more segments
    pos = end + 1;
  }
  return false;
}

PriorityRule PathPattern::DecidingRule(const PathPattern& a,
                                       const PathPattern& b) {
  if (a.first_wildcard_ != b.first_wildcard_) {
    return PriorityRule::kFirstWildcardLater;
  }
  if (a.glob_ != b.glob_) return PriorityRule::kNoTrailingGlob;
  if (a.plus_count_ != b.plus_count_) return PriorityRule::kFewerPlus;
  if (a.text_.size() != b.text_.size()) return PriorityRule::kLonger;
  if (a.text_ != b.text_) return PriorityRule::kLexicographic;
  return PriorityRule::kSame;
}

bool PathPattern::HigherPriority(const PathPattern& a, const PathPattern& b) {
  switch (DecidingRule(a, b)) {
    case PriorityRule::kFirstWildcardLater:
      return a.first_wildcard_ > b.first_wildcard_;
    case PriorityRule::kNoTrailingGlob:
      return !a.glob_;
    case PriorityRule::kFewerPlus:
      return a.plus_count_ < b.plus_count_;
    case PriorityRule::kLonger:
      return a.text_.size() > b.text_.size();
    case PriorityRule::kLexicographic:
      return a.text_ > b.text_;
    case PriorityRule::kSame:
      return false;
  }
  return false;
}

}  // namespace strongbox::policy
