// The public-data base64 (Base64EncodePublicTo / Base64DecodePublic) against
// the reference one (Base64EncodeTo / Base64Decode): the same text for every
// input, and the same verdict (and bytes) for every text.
#include "lib/util/base64.h"

#include <cstdint>
#include <iostream>
#include <random>
#include <string>

#include "gtest/gtest.h"

namespace strongbox {
namespace {

std::string EncodePublic(const std::string& in) {
  std::string out(Base64Size(in.size()), '\0');
  Base64EncodePublicTo(reinterpret_cast<const uint8_t*>(in.data()), in.size(),
                       out.data());
  return out;
}

std::string EncodePublicScalar(const std::string& in) {
  std::string out(Base64Size(in.size()), '\0');
  base64_internal::EncodePublicScalarTo(
      reinterpret_cast<const uint8_t*>(in.data()), in.size(), out.data());
  return out;
}

std::string EncodePublicUpTo(base64_internal::Simd most,
                             const std::string& in) {
  std::string out(Base64Size(in.size()), '\0');
  base64_internal::EncodePublicUpTo(
      most, reinterpret_cast<const uint8_t*>(in.data()), in.size(), out.data());
  return out;
}

// Both decoders agree on `text`: both reject, or both accept with the same
// bytes.
void ExpectSameDecode(const std::string& text) {
  std::string ref, pub;
  const bool ref_ok = Base64Decode(text, &ref);
  const bool pub_ok = Base64DecodePublic(text, &pub);
  ASSERT_EQ(ref_ok, pub_ok) << "text: " << text;
  if (ref_ok) {
    ASSERT_EQ(ref, pub) << "text: " << text;
  }
}

TEST(Base64PublicTest, Rfc4648Vectors) {
  const std::pair<const char*, const char*> vectors[] = {
      {"", ""},
      {"f", "Zg=="},
      {"fo", "Zm8="},
      {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="},
      {"fooba", "Zm9vYmE="},
      {"foobar", "Zm9vYmFy"},
      {"foobarbaz", "Zm9vYmFyYmF6"}};
  for (const auto& [plain, text] : vectors) {
    EXPECT_EQ(EncodePublic(plain), text);
    std::string out;
    ASSERT_TRUE(Base64DecodePublic(text, &out)) << text;
    EXPECT_EQ(out, plain);
  }
}

TEST(Base64PublicTest, EncodeMatchesReferenceOnEveryShortInputAndRandomOnes) {
  // Every 1- and 2-byte input, every length up to 64 with random bytes, and
  // random lengths up to 4 KiB (every 6-byte step and every tail).
  for (int a = 0; a < 256; ++a) {
    std::string one(1, static_cast<char>(a));
    ASSERT_EQ(EncodePublic(one), Base64Encode(one));
    for (int b = 0; b < 256; ++b) {
      std::string two = one + static_cast<char>(b);
      ASSERT_EQ(EncodePublic(two), Base64Encode(two));
    }
  }
  std::mt19937_64 rng(16);
  for (int iter = 0; iter < 3000; ++iter) {
    const size_t n = iter < 200 ? iter % 65 : rng() % 4097;
    std::string in(n, '\0');
    for (char& c : in) c = static_cast<char>(rng());
    ASSERT_EQ(EncodePublic(in), Base64Encode(in)) << "length " << n;
  }
}

// The scalar steps alone, on inputs long enough that on an SSSE3 machine
// Base64EncodePublicTo would hand them only the last few bytes; and every
// sextet value in every position of the SSSE3 steps' 16-character blocks.
TEST(Base64PublicTest, ScalarPathAndEverySextetInEveryLaneMatchReference) {
  std::mt19937_64 rng(17);
  for (int iter = 0; iter < 1000; ++iter) {
    const size_t n = iter < 100 ? iter : rng() % 4097;
    std::string in(n, '\0');
    for (char& c : in) c = static_cast<char>(rng());
    ASSERT_EQ(EncodePublicScalar(in), Base64Encode(in)) << "length " << n;
  }
  // 48 bytes are 64 sextets: rotating the sequence 0..63 through them puts
  // each value at each of the 64 output positions once.
  for (int shift = 0; shift < 64; ++shift) {
    std::string in(48, '\0');
    for (int k = 0; k < 64; ++k) {
      const int sextet = (k + shift) % 64;
      const int bit = 6 * k;  // MSB-first position of this sextet
      for (int b = 0; b < 6; ++b) {
        if ((sextet >> (5 - b)) & 1) {
          in[(bit + b) / 8] |= static_cast<char>(0x80 >> ((bit + b) % 8));
        }
      }
    }
    ASSERT_EQ(EncodePublic(in), Base64Encode(in)) << "shift " << shift;
    ASSERT_EQ(EncodePublicScalar(in), Base64Encode(in)) << "shift " << shift;
  }
}

// Each SIMD level alone (the AVX2 steps hand the SSSE3 ones what is left
// under 28 bytes, which hand the scalar ones what is left under 16): every
// length up to 100 (each step count and each tail) and random lengths,
// with every sextet value in every position of both 128-bit lanes.
TEST(Base64PublicTest, EverySimdLevelMatchesReference) {
  using base64_internal::Simd;
#if defined(__x86_64__)
  // A level the CPU lacks runs the next one down: say so, so a pass on such
  // a machine is not read as a check of the missing steps.
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("ssse3")) {
    std::cerr << "note: this CPU has no SSSE3; those steps are not checked\n";
  }
  if (!__builtin_cpu_supports("avx2")) {
    std::cerr << "note: this CPU has no AVX2; those steps are not checked\n";
  }
#endif
  std::mt19937_64 rng(18);
  for (Simd most : {Simd::kScalar, Simd::kSsse3, Simd::kAvx2}) {
    for (int iter = 0; iter < 1000; ++iter) {
      const size_t n = iter <= 100 ? iter : rng() % 4097;
      std::string in(n, '\0');
      for (char& c : in) c = static_cast<char>(rng());
      ASSERT_EQ(EncodePublicUpTo(most, in), Base64Encode(in))
          << "level " << static_cast<int>(most) << ", length " << n;
    }
    // 96 bytes are 128 sextets: four 32-character AVX2 blocks, in which
    // rotating 0..63 puts each value at each position of each lane.
    for (int shift = 0; shift < 64; ++shift) {
      std::string in(96, '\0');
      for (int k = 0; k < 128; ++k) {
        const int sextet = (k + shift) % 64;
        const int bit = 6 * k;
        for (int b = 0; b < 6; ++b) {
          if ((sextet >> (5 - b)) & 1) {
            in[(bit + b) / 8] |= static_cast<char>(0x80 >> ((bit + b) % 8));
          }
        }
      }
      ASSERT_EQ(EncodePublicUpTo(most, in), Base64Encode(in))
          << "level " << static_cast<int>(most) << ", shift " << shift;
    }
  }
}

TEST(Base64PublicTest, DecodeAgreesWithReferenceOnValidAndCorruptedText) {
  std::mt19937_64 rng(61);
  const std::string odd = "=-_ \n\r\t.\x80\xff";
  for (int iter = 0; iter < 20000; ++iter) {
    std::string in(rng() % 40, '\0');
    for (char& c : in) c = static_cast<char>(rng());
    std::string text = Base64Encode(in);
    ExpectSameDecode(text);
    if (text.empty()) continue;
    // One to three corruptions: a random byte, an odd character, a flip of
    // the low bits of the last symbol (non-canonical unused bits), a cut.
    const int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits; ++e) {
      const size_t at = rng() % text.size();
      switch (rng() % 4) {
        case 0:
          text[at] = static_cast<char>(rng());
          break;
        case 1:
          text[at] = odd[rng() % odd.size()];
          break;
        case 2: {
          size_t last = text.find('=');
          if (last == 0) break;
          last = (last == std::string::npos ? text.size() : last) - 1;
          text[last] = static_cast<char>(text[last] ^ (1 + rng() % 3));
          break;
        }
        case 3:
          text.erase(at, 1 + rng() % 2);
          break;
      }
      if (text.empty()) break;
    }
    ExpectSameDecode(text);
  }
}

TEST(Base64PublicTest, DecodeAgreesOnEveryQuadOverAnAlphabetWithStrangers) {
  // Every 4-character text over the 64 symbols, '=' and a character outside
  // the alphabet, alone and after a valid quad.
  const std::string alphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=*";
  std::string quad(4, 'A');
  for (char a : alphabet) {
    quad[0] = a;
    for (char b : alphabet) {
      quad[1] = b;
      for (char c : alphabet) {
        quad[2] = c;
        for (char d : alphabet) {
          quad[3] = d;
          ExpectSameDecode(quad);
          if (d == 'A' || d == '=' || d == '*') ExpectSameDecode("QUJD" + quad);
        }
      }
    }
  }
}

}  // namespace
}  // namespace strongbox
