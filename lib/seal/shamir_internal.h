// Internal seams of strongbox::shamir, for known-answer tests: field
// arithmetic and a Split with caller-chosen x coordinates and coefficients.
#ifndef STRONGBOX_LIB_SEAL_SHAMIR_INTERNAL_H_
#define STRONGBOX_LIB_SEAL_SHAMIR_INTERNAL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace strongbox::shamir::internal {

// GF(2^8) with the reduction polynomial 0x11B. Constant-time.
uint8_t Mul(uint8_t a, uint8_t b);
// The multiplicative inverse (a^254); Inverse(0) == 0.
uint8_t Inverse(uint8_t a);

// Split with fixed x coordinates (one per share, distinct and non-zero) and
// coefficients: coefficients[b * (threshold - 1) + k] is the coefficient of
// x^(k+1) in the polynomial of secret byte b. Same validation as Split.
absl::StatusOr<std::vector<std::string>> SplitWith(
    absl::string_view secret, int threshold, absl::Span<const uint8_t> xs,
    absl::Span<const uint8_t> coefficients);

}  // namespace strongbox::shamir::internal

#endif  // STRONGBOX_LIB_SEAL_SHAMIR_INTERNAL_H_
