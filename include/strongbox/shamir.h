// Shamir secret sharing over GF(2^8), byte-compatible with the unseal key
// shares HashiCorp Vault and OpenBao hand out.
//
// Arithmetic is in GF(2^8) with the AES reduction polynomial
// x^8 + x^4 + x^3 + x + 1 (0x11B); addition is XOR. Each secret byte is the
// constant term of its own random polynomial of degree threshold - 1. A share
// is len(secret) + 1 bytes: the polynomial values (y) for each secret byte in
// order, then one byte holding the share's x coordinate. x coordinates are
// distinct, never 0, and drawn at random from the crypto provider's RNG
// (BoringSSL or OpenSSL 3), as are the coefficients.
//
// Secret-dependent arithmetic is constant-time: no table look-ups or branches
// indexed by secret or share bytes (multiplication is a masked bit loop,
// inversion is exponentiation). Every intermediate buffer is wiped (a
// cleanse the compiler cannot elide). Error messages name the violated rule,
// never share bytes.
//
// The returned std::strings hold secret material; callers that keep them
// should move them into a zeroizing type (strongbox/secret_bytes.h) and wipe
// the strings. Thread-safe: both functions are pure apart from the RNG.
#ifndef STRONGBOX_SHAMIR_H_
#define STRONGBOX_SHAMIR_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace strongbox::shamir {

// Splits `secret` into `parts` shares, any `threshold` of which recombine it.
// INVALID_ARGUMENT unless 2 <= threshold <= parts <= 255 and the secret is
// non-empty.
absl::StatusOr<std::vector<std::string>> Split(absl::string_view secret,
                                               int parts, int threshold);

// Recombines a secret from shares. INVALID_ARGUMENT unless there are at
// least 2 shares, each at least 2 bytes, all of one length, with distinct
// non-zero x bytes (a share with x = 0 would alone decide the result). Fewer
// than the threshold (or shares of different splits) give a wrong secret, not
// an error: Shamir cannot tell; the caller authenticates the result (the
// barrier does, by opening the stored root key).
absl::StatusOr<std::string> Combine(absl::Span<const std::string> shares);

}  // namespace strongbox::shamir

#endif  // STRONGBOX_SHAMIR_H_
