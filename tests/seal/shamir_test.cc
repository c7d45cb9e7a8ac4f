#include "strongbox/shamir.h"

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/seal/shamir_internal.h"
#include "strongbox/testing/status_matchers.h"

namespace strongbox::shamir {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string Hex(const std::string& s) { return absl::BytesToHexString(s); }

// ---- field arithmetic: published values (FIPS-197 §4.2) ----------------

TEST(Gf256Test, MultiplicationMatchesFips197) {
  EXPECT_EQ(internal::Mul(0x57, 0x83), 0xC1);
  EXPECT_EQ(internal::Mul(0x57, 0x13), 0xFE);
  EXPECT_EQ(internal::Mul(0x57, 0x02), 0xAE);
  EXPECT_EQ(internal::Mul(3, 7), 9);  // Vault's field test
  EXPECT_EQ(internal::Mul(0, 0xFF), 0);
  EXPECT_EQ(internal::Mul(1, 0xAB), 0xAB);
}

TEST(Gf256Test, InverseOfEveryElement) {
  EXPECT_EQ(internal::Inverse(0), 0);
  EXPECT_EQ(internal::Inverse(1), 1);
  EXPECT_EQ(internal::Inverse(0x53), 0xCA);  // the classic AES example
  for (int a = 1; a < 256; ++a) {
    EXPECT_EQ(internal::Mul(static_cast<uint8_t>(a),
                            internal::Inverse(static_cast<uint8_t>(a))),
              1)
        << a;
  }
}

TEST(Gf256Test, MultiplicationIsCommutativeAndDistributive) {
  for (int a = 0; a < 256; a += 7) {
    for (int b = 0; b < 256; b += 5) {
      const uint8_t x = a, y = b, z = static_cast<uint8_t>(a ^ 0x5C);
      EXPECT_EQ(internal::Mul(x, y), internal::Mul(y, x));
      EXPECT_EQ(internal::Mul(x, y ^ z),
                internal::Mul(x, y) ^ internal::Mul(x, z));
    }
  }
}

// ---- known answers, computed by hand / an independent reference ---------

TEST(ShamirKnownAnswerTest, TwoOfThreeByHand) {
  // f(x) = 0x42 + 0x05 x: f(1) = 0x47, f(2) = 0x42 ^ 0x0A = 0x48,
  // f(3) = 0x42 ^ 0x0F = 0x4D. Share = y bytes then x.
  const uint8_t xs[] = {1, 2, 3};
  const uint8_t coefficients[] = {0x05};
  auto shares = internal::SplitWith("\x42", 2, xs, coefficients);
  ASSERT_OK(shares);
  EXPECT_EQ(Hex((*shares)[0]), "4701");
  EXPECT_EQ(Hex((*shares)[1]), "4802");
  EXPECT_EQ(Hex((*shares)[2]), "4d03");
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) {
      if (i == j) continue;
      auto secret = Combine({(*shares)[i], (*shares)[j]});
      ASSERT_OK(secret);
      EXPECT_EQ(*secret, "\x42");
    }
  }
}

TEST(ShamirKnownAnswerTest, ThreeOfFiveAgainstReference) {
  // Computed with a schoolbook GF(2^8) reference (mod 0x11B), written
  // independently of lib/seal/shamir.cc.
  const uint8_t xs[] = {7, 200, 1, 99, 255};
  const uint8_t coefficients[] = {0x10, 0x20, 0xA5, 0x5A, 0xFF, 0x01};
  auto shares = internal::SplitWith("Hi!", 3, xs, coefficients);
  ASSERT_OK(shares);
  const std::vector<std::string> expected = {"aec1ff07", "de3633c8", "7896df01",
                                             "11139463", "77c921ff"};
  ASSERT_EQ(shares->size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(Hex((*shares)[i]), expected[i]) << i;
  }
  auto secret = Combine({(*shares)[4], (*shares)[0], (*shares)[2]});
  ASSERT_OK(secret);
  EXPECT_EQ(*secret, "Hi!");
}

TEST(ShamirKnownAnswerTest, CombineDecodesReferenceSharesDirectly) {
  std::vector<std::string> shares;
  for (const char* hex : {"de3633c8", "11139463", "77c921ff"}) {
    shares.push_back(absl::HexStringToBytes(hex));
  }
  auto secret = Combine(shares);
  ASSERT_OK(secret);
  EXPECT_EQ(*secret, "Hi!");
}

// ---- properties -----------------------------------------------------------

TEST(ShamirPropertyTest, ShareLayoutAndDistinctNonZeroX) {
  const std::string secret(32, 'k');
  auto shares = Split(secret, 255, 3);
  ASSERT_OK(shares);
  std::vector<bool> seen(256, false);
  for (const std::string& share : *shares) {
    ASSERT_EQ(share.size(), secret.size() + 1);
    const uint8_t x = static_cast<uint8_t>(share.back());
    EXPECT_NE(x, 0);
    EXPECT_FALSE(seen[x]) << "repeated x " << int{x};
    seen[x] = true;
  }
}

TEST(ShamirPropertyTest, RandomParametersEveryThresholdSubsetRecombines) {
  const uint32_t seed = std::random_device{}();
  SCOPED_TRACE(absl::StrCat("seed=", seed));
  std::mt19937 rng(seed);
  for (int round = 0; round < 60; ++round) {
    const int parts = std::uniform_int_distribution<int>(2, 20)(rng);
    const int threshold = std::uniform_int_distribution<int>(2, parts)(rng);
    const int len = std::uniform_int_distribution<int>(1, 64)(rng);
    std::string secret(len, '\0');
    for (char& c : secret) c = static_cast<char>(rng());
    auto shares = Split(secret, parts, threshold);
    ASSERT_OK(shares);
    for (int trial = 0; trial < 5; ++trial) {
      std::vector<std::string> subset = *shares;
      std::shuffle(subset.begin(), subset.end(), rng);
      const int take =
          std::uniform_int_distribution<int>(threshold, parts)(rng);
      subset.resize(take);
      auto combined = Combine(subset);
      ASSERT_OK(combined);
      EXPECT_EQ(*combined, secret)
          << "parts=" << parts << " threshold=" << threshold
          << " take=" << take;
      if (threshold > 2) {
        subset.resize(threshold - 1);
        auto short_combined = Combine(subset);
        ASSERT_OK(short_combined);
        EXPECT_EQ(short_combined->size(), secret.size());
        if (len >= 8) EXPECT_NE(*short_combined, secret);
      }
    }
  }
}

TEST(ShamirPropertyTest, FewerThanThresholdIsUniform) {
  // With threshold 3, two shares reveal nothing: over many splits of the
  // same secret, the combination of two shares is uniform on 0..255.
  std::vector<int> counts(256, 0);
  const int kSplits = 256 * 40;
  for (int i = 0; i < kSplits; ++i) {
    auto shares = Split(std::string(1, '\0'), 3, 3);
    ASSERT_OK(shares);
    auto guess = Combine({(*shares)[0], (*shares)[1]});
    ASSERT_OK(guess);
    ++counts[static_cast<uint8_t>((*guess)[0])];
  }
  // Chi-squared with 255 degrees of freedom; 400 is far beyond p = 1e-6.
  double chi2 = 0;
  for (int c : counts) chi2 += (c - 40.0) * (c - 40.0) / 40.0;
  EXPECT_LT(chi2, 400.0);
  EXPECT_LT(counts[0], 120);  // the secret is not favoured
}

TEST(ShamirPropertyTest, SplitsAreRandomized) {
  auto a = Split("same secret", 3, 2);
  auto b = Split("same secret", 3, 2);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(*a, *b);
}

// ---- validation: INVALID_ARGUMENT naming the rule -------------------------

void ExpectInvalid(const absl::Status& status, const std::string& rule) {
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr(rule));
}

TEST(ShamirValidationTest, SplitRules) {
  ExpectInvalid(Split("s", 2, 3).status(), "less than threshold");
  ExpectInvalid(Split("s", 256, 2).status(), "exceed 255");
  ExpectInvalid(Split("s", 3, 1).status(), "at least 2");
  ExpectInvalid(Split("s", 3, 0).status(), "at least 2");
  ExpectInvalid(Split("s", -1, -5).status(), "at least 2");
  ExpectInvalid(Split("", 3, 2).status(), "empty secret");
  EXPECT_OK(Split("s", 255, 255));
  EXPECT_OK(Split("s", 2, 2));
}

TEST(ShamirValidationTest, CombineRules) {
  auto shares = Split("secret bytes", 5, 3);
  ASSERT_OK(shares);
  const std::vector<std::string>& s = *shares;
  ExpectInvalid(Combine({}).status(), "at least two shares");
  ExpectInvalid(Combine({s[0]}).status(), "at least two shares");
  ExpectInvalid(Combine({"a", "b"}).status(), "at least two bytes");
  ExpectInvalid(Combine({s[0], s[1].substr(1)}).status(), "same length");
  ExpectInvalid(Combine({s[0], s[1], s[0]}).status(), "distinct x");
  std::string same_x = s[1];
  same_x.back() = s[0].back();
  const absl::Status status = Combine({s[0], same_x}).status();
  ExpectInvalid(status, "distinct x");
  // No share bytes in the message, raw or hex.
  for (const std::string& share : {s[0], same_x}) {
    EXPECT_THAT(std::string(status.message()), Not(HasSubstr(share)));
    EXPECT_THAT(std::string(status.message()), Not(HasSubstr(Hex(share))));
  }
}

// A share with x = 0 zeroes the other shares' Lagrange basis, so it alone
// decides the combined secret: an attacker presenting one forged share next
// to honest ones would choose the unseal key. Combine refuses it.
TEST(ShamirValidationTest, CombineRefusesXZero) {
  auto shares = Split("secret bytes", 5, 3);
  ASSERT_OK(shares);
  const std::vector<std::string>& s = *shares;
  std::string forged = "chosen bytes";
  forged.push_back('\0');
  ExpectInvalid(Combine({forged, s[0], s[1]}).status(), "x coordinate 0");
  ExpectInvalid(Combine({s[0], s[1], forged}).status(), "x coordinate 0");
}

}  // namespace
}  // namespace strongbox::shamir
