// libFuzzer target: shamir::Combine on arbitrary shares, and Split/Combine
// round trips with fuzzer-chosen parameters.
//
// Input: byte 0 picks the mode. Mode even: byte 1 is the share length and
// the rest is cut into shares of that length (the last may be shorter, to
// reach the length check). Mode odd: bytes 1-2 are parts/threshold, the rest
// is the secret; any threshold subset must recombine it exactly.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "strongbox/shamir.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3) return 0;
  const char* bytes = reinterpret_cast<const char*>(data);
  if ((data[0] & 1) == 0) {
    const size_t len = data[1];
    std::vector<std::string> shares;
    size_t pos = 2;
    while (pos < size && shares.size() < 300) {
      const size_t take = len == 0 ? 1 : std::min(len, size - pos);
      shares.emplace_back(bytes + pos, take);
      pos += take;
    }
    auto secret = strongbox::shamir::Combine(shares);
    if (secret.ok()) {
      if (shares.size() < 2 || secret->size() + 1 != shares[0].size()) {
        std::abort();
      }
    } else if (secret.status().code() != absl::StatusCode::kInvalidArgument) {
      std::abort();
    }
    return 0;
  }
  // Small parameters (invalid ones included): a split into 255 shares of
  // threshold 255 costs ~65k constant-time multiplies per secret byte and
  // would spend the whole run there; the full range is in shamir_test.
  const int parts = data[1] % 40;
  const int threshold = data[2] % 40;
  const std::string secret(bytes + 3, size - 3);
  auto shares = strongbox::shamir::Split(secret, parts, threshold);
  if (!shares.ok()) {
    if (shares.status().code() != absl::StatusCode::kInvalidArgument) {
      std::abort();
    }
    return 0;
  }
  if (static_cast<int>(shares->size()) != parts) std::abort();
  // The last `threshold` shares, and the first `threshold`.
  std::vector<std::string> head(shares->begin(), shares->begin() + threshold);
  std::vector<std::string> tail(shares->end() - threshold, shares->end());
  auto a = strongbox::shamir::Combine(head);
  auto b = strongbox::shamir::Combine(tail);
  if (!a.ok() || !b.ok() || *a != secret || *b != secret) std::abort();
  return 0;
}
