#include "lib/store/transit_ciphertext.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "lib/util/base64.h"

namespace strongbox {
namespace transit {
namespace {

absl::Status BadVersion() {
  return absl::InvalidArgumentError(
      "ciphertext key version must be a decimal number from 1 to "
      "4294967295");
}

}  // namespace

absl::Status ParseCiphertext(absl::string_view text, size_t max_raw_bytes,
                             uint32_t* version, std::string* raw) {
  if (text.empty()) return absl::InvalidArgumentError("ciphertext is empty");
  if (text.substr(0, kCiphertextPrefix.size()) != kCiphertextPrefix) {
    return absl::InvalidArgumentError(
        "ciphertext does not start with \"strongbox:v\"");
  }
  text.remove_prefix(kCiphertextPrefix.size());
  const size_t colon = text.find(':');
  if (colon == absl::string_view::npos) {
    return absl::InvalidArgumentError(
        "ciphertext lacks the ':' after the key version");
  }
  absl::string_view digits = text.substr(0, colon);
  if (digits.empty() || digits.size() > 10 || digits[0] == '0') {
    return BadVersion();
  }
  uint64_t v = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return BadVersion();
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  if (v > UINT32_MAX) return BadVersion();
  absl::string_view b64 = text.substr(colon + 1);
  if (b64.size() > Base64Size(max_raw_bytes)) {
    return absl::InvalidArgumentError("ciphertext is too long");
  }
  if (!Base64DecodePublic(b64, raw)) {
    return absl::InvalidArgumentError("ciphertext is not canonical base64");
  }
  if (raw->size() < kNonceBytes + kTagBytes) {
    return absl::InvalidArgumentError("ciphertext is too short");
  }
  *version = static_cast<uint32_t>(v);
  return absl::OkStatus();
}

void FormatCiphertext(uint32_t version, const uint8_t* raw, size_t n,
                      std::string* out) {
  char digits[10];
  size_t n_digits = 0;
  for (uint32_t v = version; v != 0; v /= 10) {
    digits[sizeof(digits) - ++n_digits] = static_cast<char>('0' + v % 10);
  }
  const size_t head = kCiphertextPrefix.size() + n_digits + 1;
  out->resize(head + Base64Size(n));
  char* p = out->data();
  std::memcpy(p, kCiphertextPrefix.data(), kCiphertextPrefix.size());
  p += kCiphertextPrefix.size();
  std::memcpy(p, digits + sizeof(digits) - n_digits, n_digits);
  p += n_digits;
  *p++ = ':';
  Base64EncodePublicTo(raw, n, p);
}

std::string TransitAadPrefix(absl::string_view name, uint32_t version) {
  std::string out =
      absl::StrCat("strongbox-transit", absl::string_view("\0", 1), name,
                   absl::string_view("\0", 1));
  const char be[4] = {
      static_cast<char>(version >> 24), static_cast<char>(version >> 16),
      static_cast<char>(version >> 8), static_cast<char>(version)};
  out.append(be, 4);
  return out;
}

}  // namespace transit
}  // namespace strongbox
