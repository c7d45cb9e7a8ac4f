#include "strongbox/shamir.h"

#include <array>
#include <cstdint>
#include <cstring>

#include "absl/status/status.h"
#include "lib/crypto/random.h"
#include "lib/seal/shamir_internal.h"
#include "lib/util/status_macros.h"
#include "strongbox/secret_bytes.h"

namespace strongbox::shamir {
namespace internal {

uint8_t Mul(uint8_t a, uint8_t b) {
  // Russian-peasant multiplication with masks instead of branches, so the
  // timing does not depend on either operand.
  uint8_t result = 0;
  for (int i = 0; i < 8; ++i) {
    result ^= static_cast<uint8_t>(-(b & 1)) & a;
    const uint8_t high = static_cast<uint8_t>(-(a >> 7));
    a = static_cast<uint8_t>((a << 1) ^ (0x1B & high));
    b >>= 1;
  }
  return result;
}

uint8_t Inverse(uint8_t a) {
  // a^254 = a^-1 in GF(2^8)* (and 0 for 0): a fixed chain of squarings and
  // multiplications, 254 = 0b11111110.
  uint8_t square = Mul(a, a);  // a^2
  uint8_t result = square;
  for (int i = 0; i < 6; ++i) {
    square = Mul(square, square);  // a^4, a^8, ..., a^128
    result = Mul(result, square);  // a^(2+4+...)
  }
  return result;
}

absl::Status ValidateSplit(absl::string_view secret, int parts, int threshold) {
  if (parts < threshold) {
    return absl::InvalidArgumentError(
        "shamir: parts cannot be less than threshold");
  }
  if (parts > 255) {
    return absl::InvalidArgumentError("shamir: parts cannot exceed 255");
  }
  if (threshold < 2) {
    return absl::InvalidArgumentError("shamir: threshold must be at least 2");
  }
  if (secret.empty()) {
    return absl::InvalidArgumentError("shamir: cannot split an empty secret");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> SplitWith(
    absl::string_view secret, int threshold, absl::Span<const uint8_t> xs,
    absl::Span<const uint8_t> coefficients) {
  const int parts = static_cast<int>(xs.size());
  RETURN_IF_ERROR(ValidateSplit(secret, parts, threshold));
  const size_t degree = static_cast<size_t>(threshold) - 1;
  if (coefficients.size() != secret.size() * degree) {
    return absl::InvalidArgumentError(
        "shamir: need threshold - 1 coefficients per secret byte");
  }
  bool seen[256] = {};
  for (uint8_t x : xs) {
    if (x == 0 || seen[x]) {
      return absl::InvalidArgumentError(
          "shamir: x coordinates must be distinct and non-zero");
    }
    seen[x] = true;
  }

  std::vector<std::string> out(parts);
  for (int p = 0; p < parts; ++p) {
    std::string& share = out[p];
    share.resize(secret.size() + 1);
    const uint8_t x = xs[p];
    for (size_t b = 0; b < secret.size(); ++b) {
      // Horner: ((c_d x + c_{d-1}) x + ... + c_1) x + secret.
      const uint8_t* c = coefficients.data() + b * degree;
      uint8_t y = 0;
      for (size_t k = degree; k > 0; --k) {
        y = Mul(static_cast<uint8_t>(y ^ c[k - 1]), x);
      }
      y ^= static_cast<uint8_t>(secret[b]);
      share[b] = static_cast<char>(y);
    }
    share[secret.size()] = static_cast<char>(x);
  }
  return out;
}

}  // namespace internal

namespace {

// A uniformly random permutation of 1..255 (Fisher–Yates over the crypto
// provider's RNG, with rejection sampling so no x is favoured). x
// coordinates are public (they are in the shares), so branching on them is
// fine.
absl::Status RandomXs(std::array<uint8_t, 255>& xs) {
  for (int i = 0; i < 255; ++i) xs[i] = static_cast<uint8_t>(i + 1);
  for (int i = 254; i > 0; --i) {
    const uint32_t bound = static_cast<uint32_t>(i) + 1;
    const uint32_t limit = UINT32_MAX - UINT32_MAX % bound;
    uint32_t r;
    do {
      RETURN_IF_ERROR(crypto::RandomBytes(
          absl::MakeSpan(reinterpret_cast<uint8_t*>(&r), sizeof(r))));
    } while (r >= limit);
    std::swap(xs[i], xs[r % bound]);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<std::string>> Split(absl::string_view secret,
                                               int parts, int threshold) {
  RETURN_IF_ERROR(internal::ValidateSplit(secret, parts, threshold));
  std::array<uint8_t, 255> xs;
  RETURN_IF_ERROR(RandomXs(xs));
  SecretBytes coefficients(secret.size() *
                           (static_cast<size_t>(threshold) - 1));
  RETURN_IF_ERROR(crypto::RandomBytes(
      absl::MakeSpan(coefficients.data(), coefficients.size())));
  return internal::SplitWith(
      secret, threshold, absl::MakeConstSpan(xs.data(), parts),
      absl::MakeConstSpan(coefficients.data(), coefficients.size()));
  // `coefficients` is wiped by its destructor.
}

absl::StatusOr<std::string> Combine(absl::Span<const std::string> shares) {
  if (shares.size() < 2) {
    return absl::InvalidArgumentError(
        "shamir: at least two shares are needed to combine");
  }
  const size_t share_len = shares[0].size();
  if (share_len < 2) {
    return absl::InvalidArgumentError(
        "shamir: shares must be at least two bytes");
  }
  for (const std::string& share : shares) {
    if (share.size() != share_len) {
      return absl::InvalidArgumentError(
          "shamir: all shares must be the same length");
    }
  }
  // Distinct x is checked before any secret-dependent work; x is public.
  bool seen[256] = {};
  for (const std::string& share : shares) {
    const uint8_t x = static_cast<uint8_t>(share[share_len - 1]);
    if (x == 0) {
      // The polynomial's value at 0 is the secret: a share claiming x = 0
      // zeroes every other share's Lagrange basis and alone decides the
      // result (a forged share would pick the unseal key).
      return absl::InvalidArgumentError(
          "shamir: a share has x coordinate 0, which no split produces");
    }
    if (seen[x]) {
      return absl::InvalidArgumentError(
          "shamir: shares must have distinct x coordinates");
    }
    seen[x] = true;
  }

  // Lagrange basis at 0 for each share: prod_{j != i} x_j / (x_i + x_j).
  // It depends on the x coordinates only, so it is computed once.
  const size_t n = shares.size();  // <= 256 by the distinct-x rule
  SecretBytes basis(n);
  for (size_t i = 0; i < n; ++i) {
    const uint8_t xi = static_cast<uint8_t>(shares[i][share_len - 1]);
    uint8_t b = 1;
    for (size_t j = 0; j < n; ++j) {
      if (j == i) continue;
      const uint8_t xj = static_cast<uint8_t>(shares[j][share_len - 1]);
      b = internal::Mul(b, internal::Mul(xj, internal::Inverse(xi ^ xj)));
    }
    basis.data()[i] = b;
  }

  const size_t secret_len = share_len - 1;
  std::string secret(secret_len, '\0');
  for (size_t byte = 0; byte < secret_len; ++byte) {
    uint8_t acc = 0;
    for (size_t i = 0; i < n; ++i) {
      acc ^=
          internal::Mul(static_cast<uint8_t>(shares[i][byte]), basis.data()[i]);
    }
    secret[byte] = static_cast<char>(acc);
    acc = 0;
  }
  return secret;
}

}  // namespace strongbox::shamir
