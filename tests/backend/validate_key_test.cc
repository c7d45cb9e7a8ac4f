// ValidateKey runs a one-pass check first and the rule-by-rule path only to
// name what is wrong; this checks both against a plain reference of the
// rules on random paths, and that every rejection names a rule.
#include <random>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "strongbox/backend.h"

namespace strongbox {
namespace {

bool ReferenceValid(absl::string_view key, size_t max) {
  if (key.empty() || key.size() > max) return false;
  for (char c : key) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) return false;
  }
  for (absl::string_view segment : absl::StrSplit(key, '/')) {
    if (segment.empty() || segment == "." || segment == "..") return false;
  }
  return true;
}

TEST(ValidateKeyTest, AgreesWithTheRulesOnRandomPaths) {
  const uint64_t seed = std::random_device()();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);
  // '\x80' and '\xff' are allowed: a check that compared signed chars
  // would take them for control bytes.
  const char alphabet[] = {'a',    'b', '/', '.',    '\0',  '\x1f',
                           '\x7f', ' ', 'z', '\x80', '\xff'};
  BackendLimits limits;
  limits.max_key_bytes = 12;
  int valid = 0;
  for (int n = 0; n < 200000; ++n) {
    std::string key(rng() % 15, 'x');
    for (char& c : key) c = alphabet[rng() % sizeof(alphabet)];
    const absl::Status status = ValidateKey(key, limits);
    const bool expected = ReferenceValid(key, limits.max_key_bytes);
    ASSERT_EQ(status.ok(), expected) << "key \"" << absl::CEscape(key) << "\"";
    if (!status.ok()) {
      ASSERT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
      ASSERT_NE(status.message(), "path is malformed")
          << "no rule named for \"" << absl::CEscape(key) << "\"";
    }
    valid += expected;
  }
  EXPECT_GT(valid, 1000);  // The alphabet reaches both verdicts.
}

}  // namespace
}  // namespace strongbox
