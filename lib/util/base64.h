// The one base64 of strongbox: standard alphabet (RFC 4648 section 4) with
// padding. The decoder is strict: only canonical encodings (length a
// multiple of 4, padding only at the end, zero unused bits, no whitespace)
// are accepted, so every byte string has exactly one text form (a Transit
// ciphertext, a binary value in a host's protocol).
//
// Stateless and thread-safe.
#ifndef STRONGBOX_LIB_UTIL_BASE64_H_
#define STRONGBOX_LIB_UTIL_BASE64_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace strongbox {

// Length of the encoding of `n` bytes.
size_t Base64Size(size_t n);

// Writes the encoding of in[0, n) to out[0, Base64Size(n)).
void Base64EncodeTo(const uint8_t* in, size_t n, char* out);

// The encoding of `in`.
std::string Base64Encode(absl::string_view in);

// Decodes `in` into *out (resized to fit). False, with *out unspecified
// (callers that decode secrets wipe it), when `in` is not canonical base64.
bool Base64Decode(absl::string_view in, std::string* out);

// The same encoding and the same strict decoding, faster (on x86-64 the
// encoder turns 24 bytes a step into 32 characters with AVX2, or 12 into
// 16 with SSSE3, where the CPU has them; elsewhere, and for the rest, a
// 4096-entry table turns 12 bits into two characters; four 256-entry
// tables turn four characters into 24 bits), but for PUBLIC data only: the
// tables are indexed by the data, so which cache lines are touched depends on
// it. The functions above touch one 64-byte alphabet (encode) and one 256-byte
// table (decode) and are the ones for secrets (a KV value on a host's
// protocol). Transit ciphertexts use these: nonce, ciphertext and tag are what
// an attacker may see anyway (the output of the AEAD), so cache timing of their
// text form reveals nothing more than the text.
void Base64EncodePublicTo(const uint8_t* in, size_t n, char* out);
bool Base64DecodePublic(absl::string_view in, std::string* out);

namespace base64_internal {
// Base64EncodePublicTo without its SIMD steps (what it runs on a CPU
// without SSSE3), so tests check every path on any machine.
void EncodePublicScalarTo(const uint8_t* in, size_t n, char* out);
// Base64EncodePublicTo with SIMD steps up to `most` (and those the CPU
// has): what it runs on a CPU whose best is `most`, so tests check each.
// Base64EncodePublicTo is EncodePublicUpTo(Simd::kAvx2, ...).
enum class Simd { kScalar, kSsse3, kAvx2 };
void EncodePublicUpTo(Simd most, const uint8_t* in, size_t n, char* out);
}  // namespace base64_internal

}  // namespace strongbox

#endif  // STRONGBOX_LIB_UTIL_BASE64_H_
