// The Transit ciphertext, as callers see it:
//
//   "strongbox:v" <N> ":" base64(nonce(12) || ciphertext || tag(16))
//
// N is the key version that sealed it, in decimal (1..2^32-1, no sign, no
// leading zero); the base64 is lib/util/base64's canonical standard
// alphabet with padding, so every sealed value has exactly one text form.
// Its public-data variant (Base64EncodePublicTo / Base64DecodePublic:
// table lookups indexed by the data) is used, since the payload is the
// AEAD's output, which the text shows anyway.
// Parsing is strict and never reveals more than "malformed"
// (INVALID_ARGUMENT with a message naming the rule broken).
//
// The additional data AES-GCM binds (TransitAadPrefix + the item's
// context) is defined here too, so the format and what it authenticates
// live in one place: a ciphertext opens only under the key name, version
// and context it was made with.
//
// Stateless and thread-safe. Internal to strongbox's Transit engine.
#ifndef STRONGBOX_LIB_STORE_TRANSIT_CIPHERTEXT_H_
#define STRONGBOX_LIB_STORE_TRANSIT_CIPHERTEXT_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace strongbox {
namespace transit {

inline constexpr absl::string_view kCiphertextPrefix = "strongbox:v";
inline constexpr size_t kNonceBytes = 12;
inline constexpr size_t kTagBytes = 16;

// Parses `text` strictly. On success *version is N and *raw is
// nonce || ciphertext || tag (at least kNonceBytes + kTagBytes bytes, at
// most max_raw_bytes). INVALID_ARGUMENT otherwise, with *raw unspecified.
absl::Status ParseCiphertext(absl::string_view text, size_t max_raw_bytes,
                             uint32_t* version, std::string* raw);

// Writes the text form of `version` (>= 1) and raw[0, n) to *out.
void FormatCiphertext(uint32_t version, const uint8_t* raw, size_t n,
                      std::string* out);

// The additional data of every value sealed with version `version` of key
// `name`, before the item's context: a label, NUL, the name, NUL, the
// version as 4 big-endian bytes. The name holds no NUL and the context
// comes last, so the encoding is unambiguous.
std::string TransitAadPrefix(absl::string_view name, uint32_t version);

}  // namespace transit
}  // namespace strongbox

#endif  // STRONGBOX_LIB_STORE_TRANSIT_CIPHERTEXT_H_
