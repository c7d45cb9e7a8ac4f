// The Transit ciphertext text format (lib/store/transit_ciphertext.h):
// round trips, the strict parse, and the additional-data layout.
#include "lib/store/transit_ciphertext.h"

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "gtest/gtest.h"
#include "lib/util/base64.h"

namespace strongbox {
namespace transit {
namespace {

constexpr size_t kMaxRaw = 1024;

std::string Raw(size_t n) {
  std::string raw(n, '\0');
  for (size_t i = 0; i < n; ++i) raw[i] = static_cast<char>(i * 7 + 3);
  return raw;
}

std::string Format(uint32_t version, const std::string& raw) {
  std::string out;
  FormatCiphertext(version, reinterpret_cast<const uint8_t*>(raw.data()),
                   raw.size(), &out);
  return out;
}

absl::Status Parse(absl::string_view text, uint32_t* version = nullptr,
                   std::string* raw = nullptr) {
  uint32_t v = 0;
  std::string r;
  absl::Status s = ParseCiphertext(text, kMaxRaw, &v, &r);
  if (version != nullptr) *version = v;
  if (raw != nullptr) *raw = r;
  return s;
}

TEST(TransitCiphertextTest, FormatIsPrefixVersionColonBase64) {
  const std::string raw = Raw(kNonceBytes + kTagBytes + 5);
  EXPECT_EQ(Format(1, raw), "strongbox:v1:" + Base64Encode(raw));
  EXPECT_EQ(Format(4294967295u, raw),
            "strongbox:v4294967295:" + Base64Encode(raw));
  EXPECT_EQ(Format(10, raw), "strongbox:v10:" + Base64Encode(raw));
}

TEST(TransitCiphertextTest, RoundTrips) {
  for (uint32_t version : {1u, 9u, 10u, 123456u, 4294967295u}) {
    for (size_t n : {kNonceBytes + kTagBytes, kNonceBytes + kTagBytes + 1,
                     kNonceBytes + kTagBytes + 2, kMaxRaw}) {
      const std::string raw = Raw(n);
      uint32_t parsed_version = 0;
      std::string parsed_raw;
      ASSERT_TRUE(
          Parse(Format(version, raw), &parsed_version, &parsed_raw).ok())
          << version << " " << n;
      EXPECT_EQ(parsed_version, version);
      EXPECT_EQ(parsed_raw, raw);
    }
  }
}

TEST(TransitCiphertextTest, RefusesMalformedTextWithItsRule) {
  const std::string b64 = Base64Encode(Raw(kNonceBytes + kTagBytes));
  struct Case {
    std::string text;
    absl::string_view message;
  };
  const std::vector<Case> cases = {
      {"", "ciphertext is empty"},
      {"vault:v1:" + b64, "ciphertext does not start with \"strongbox:v\""},
      {"Strongbox:v1:" + b64, "ciphertext does not start with \"strongbox:v\""},
      {"strongbox:v1", "ciphertext lacks the ':' after the key version"},
      {"strongbox:v:" + b64, "ciphertext key version must be a decimal number"},
      {"strongbox:v0:" + b64,
       "ciphertext key version must be a decimal number"},
      {"strongbox:v01:" + b64,
       "ciphertext key version must be a decimal number"},
      {"strongbox:v+1:" + b64,
       "ciphertext key version must be a decimal number"},
      {"strongbox:v1a:" + b64,
       "ciphertext key version must be a decimal number"},
      {"strongbox:v4294967296:" + b64,
       "ciphertext key version must be a decimal number"},
      {"strongbox:v10000000000:" + b64,
       "ciphertext key version must be a decimal number"},
      {"strongbox:v1:" + b64 + "=", "ciphertext is not canonical base64"},
      {"strongbox:v1: " + b64, "ciphertext is not canonical base64"},
      {"strongbox:v1:" + Base64Encode(Raw(kNonceBytes + kTagBytes - 1)),
       "ciphertext is too short"},
      {"strongbox:v1:", "ciphertext is too short"},
      {"strongbox:v1:" + Base64Encode(Raw(kMaxRaw + 3)),
       "ciphertext is too long"},
  };
  for (const Case& c : cases) {
    absl::Status s = Parse(c.text);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.text;
    EXPECT_EQ(s.message().substr(0, c.message.size()), c.message) << c.text;
  }
}

TEST(TransitCiphertextTest, RefusesNonCanonicalUnusedBits) {
  // 28 bytes leave one over: the last character before "==" carries 4
  // unused bits, which a canonical encoding leaves zero.
  const std::string alphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string b64 = Base64Encode(Raw(kNonceBytes + kTagBytes));
  ASSERT_EQ(b64.substr(b64.size() - 2), "==");
  char& last = b64[b64.size() - 3];
  last = alphabet[alphabet.find(last) | 1];
  EXPECT_EQ(Parse("strongbox:v1:" + b64).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(TransitCiphertextTest, AadPrefixIsLabelNameAndBigEndianVersion) {
  const std::string aad = TransitAadPrefix("k", 0x01020304u);
  EXPECT_EQ(aad, std::string("strongbox-transit\0k\0\x01\x02\x03\x04", 24));
  EXPECT_NE(TransitAadPrefix("k", 1), TransitAadPrefix("k", 2));
  EXPECT_NE(TransitAadPrefix("a", 1), TransitAadPrefix("b", 1));
}

}  // namespace
}  // namespace transit
}  // namespace strongbox
