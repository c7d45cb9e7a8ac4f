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

// Keys long enough to span several eight-byte words (the fast check reads
// eight bytes at a time: "//" across a word boundary, a control byte in a
// short last word), mostly letters so that valid keys are common.
TEST(ValidateKeyTest, AgreesWithTheRulesOnLongPaths) {
  const uint64_t seed = std::random_device()();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);
  const char rare[] = {'/', '.', '\0', '\x1f', '\x7f', ' ', '\x80', '\xff'};
  BackendLimits limits;
  limits.max_key_bytes = 40;
  int valid = 0;
  for (int n = 0; n < 200000; ++n) {
    std::string key(rng() % 44, 'x');
    const int odds = 2 + static_cast<int>(rng() % 30);
    for (char& c : key) {
      c = rng() % odds == 0 ? rare[rng() % sizeof(rare)]
                            : static_cast<char>('a' + rng() % 26);
    }
    const absl::Status status = ValidateKey(key, limits);
    const bool expected = ReferenceValid(key, limits.max_key_bytes);
    ASSERT_EQ(status.ok(), expected) << "key \"" << absl::CEscape(key) << "\"";
    valid += expected;
  }
  EXPECT_GT(valid, 20000);
  EXPECT_LT(valid, 180000);
  // Every position of "//" and of each bad byte, in keys of every length.
  for (size_t size = 2; size <= 40; ++size) {
    for (size_t at = 0; at + 1 < size; ++at) {
      std::string key(size, 'k');
      key[at] = '/';
      key[at + 1] = '/';
      EXPECT_FALSE(ValidateKey(key, limits).ok()) << absl::CEscape(key);
      key[at + 1] = 'k';
      EXPECT_EQ(ValidateKey(key, limits).ok(), at != 0) << absl::CEscape(key);
    }
    for (size_t at = 0; at < size; ++at) {
      for (char bad : {'\0', '\x01', '\x1f', '\x7f'}) {
        std::string key(size, 'k');
        key[at] = bad;
        EXPECT_FALSE(ValidateKey(key, limits).ok()) << absl::CEscape(key);
      }
    }
  }
}

}  // namespace
}  // namespace strongbox
