// IsValidUtf8 (lib/util/utf8.h) against protobuf's own check, the one its
// parser applies to string fields (the KV record reader must accept what
// protobuf accepts): every placement of a multi-byte, malformed, overlong,
// surrogate or out-of-range sequence among ASCII runs of every length that
// crosses the eight-byte steps, then random strings.
#include "lib/util/utf8.h"

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "google/protobuf/stubs/common.h"
#include "gtest/gtest.h"

namespace strongbox {
namespace {

bool Reference(const std::string& s) {
  return google::protobuf::internal::IsStructurallyValidUTF8(
      s.data(), static_cast<int>(s.size()));
}

TEST(Utf8Test, EverySequenceAtEveryPlaceMatchesProtobuf) {
  const std::vector<std::string> sequences = {
      "",                      // ASCII only
      "\xc3\xa9",              // U+00E9
      "\xe2\x82\xac",          // U+20AC
      "\xf0\x9f\x94\x91",      // U+1F511
      "\xf4\x8f\xbf\xbf",      // U+10FFFF, the last code point
      "\xf4\x90\x80\x80",      // past U+10FFFF
      "\xc0\xaf",              // overlong '/'
      "\xe0\x80\xaf",          // overlong, three bytes
      "\xf0\x80\x80\xaf",      // overlong, four bytes
      "\xed\xa0\x80",          // a surrogate (U+D800)
      "\xed\xbf\xbf",          // a surrogate (U+DFFF)
      "\x80",                  // a lone continuation byte
      "\xc3",                  // cut short
      "\xe2\x82",              // cut short
      "\xf0\x9f\x94",          // cut short
      "\xff",                  // never valid
      "\xf8\x88\x80\x80\x80",  // five bytes
      std::string("\0", 1),    // NUL is ASCII
      "\x7f",
  };
  int valid = 0, invalid = 0;
  for (const std::string& seq : sequences) {
    for (size_t before = 0; before <= 17; ++before) {
      for (size_t after = 0; after <= 9; ++after) {
        const std::string s =
            std::string(before, 'a') + seq + std::string(after, 'z');
        const bool expected = Reference(s);
        EXPECT_EQ(IsValidUtf8(s), expected) << absl::CHexEscape(s);
        (expected ? valid : invalid)++;
      }
    }
  }
  EXPECT_GT(valid, 0);
  EXPECT_GT(invalid, 0);
}

TEST(Utf8Test, RandomStringsMatchProtobuf) {
  std::mt19937 rng(20261204);
  // Bytes mostly ASCII, with lead and continuation bytes often enough that
  // valid multi-byte strings and every kind of error both occur.
  const std::string alphabet =
      "abcdefgh/.-_0123\x80\x8f\xbf\xc2\xc3\xdf\xe0\xe2\xed\xef\xf0\xf4\xf5"
      "\xff";
  int valid = 0, invalid = 0;
  for (int i = 0; i < 200000; ++i) {
    const size_t n = rng() % 40;
    std::string s;
    for (size_t k = 0; k < n; ++k) {
      s.push_back(rng() % 4 != 0 ? static_cast<char>('a' + rng() % 26)
                                 : alphabet[rng() % alphabet.size()]);
    }
    const bool expected = Reference(s);
    ASSERT_EQ(IsValidUtf8(s), expected) << absl::CHexEscape(s);
    (expected ? valid : invalid)++;
  }
  EXPECT_GT(valid, 1000);
  EXPECT_GT(invalid, 1000);
}

}  // namespace
}  // namespace strongbox
