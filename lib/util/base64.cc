#include "lib/util/base64.h"

namespace strongbox {
namespace {

constexpr char kBase64Chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

struct Base64Table {
  int8_t value[256];
  constexpr Base64Table() : value() {
    for (int i = 0; i < 256; ++i) value[i] = -1;
    for (int i = 0; i < 64; ++i) {
      value[static_cast<uint8_t>(kBase64Chars[i])] = static_cast<int8_t>(i);
    }
  }
};
constexpr Base64Table kBase64Table;

}  // namespace

size_t Base64Size(size_t n) { return (n + 2) / 3 * 4; }

void Base64EncodeTo(const uint8_t* in, size_t n, char* out) {
  size_t i = 0;
  for (; i + 3 <= n; i += 3) {
    const uint32_t v = (uint32_t{in[i]} << 16) | (uint32_t{in[i + 1]} << 8) |
                       uint32_t{in[i + 2]};
    *out++ = kBase64Chars[(v >> 18) & 63];
    *out++ = kBase64Chars[(v >> 12) & 63];
    *out++ = kBase64Chars[(v >> 6) & 63];
    *out++ = kBase64Chars[v & 63];
  }
  if (n - i == 1) {
    const uint32_t v = uint32_t{in[i]} << 16;
    *out++ = kBase64Chars[(v >> 18) & 63];
    *out++ = kBase64Chars[(v >> 12) & 63];
    *out++ = '=';
    *out++ = '=';
  } else if (n - i == 2) {
    const uint32_t v = (uint32_t{in[i]} << 16) | (uint32_t{in[i + 1]} << 8);
    *out++ = kBase64Chars[(v >> 18) & 63];
    *out++ = kBase64Chars[(v >> 12) & 63];
    *out++ = kBase64Chars[(v >> 6) & 63];
    *out++ = '=';
  }
}

bool Base64Decode(absl::string_view in, std::string* out) {
  if (in.size() % 4 != 0) return false;
  if (in.empty()) {
    out->clear();
    return true;
  }
  const size_t pad = in[in.size() - 1] != '='   ? 0
                     : in[in.size() - 2] != '=' ? 1
                                                : 2;
  out->resize(in.size() / 4 * 3 - pad);
  const uint8_t* src = reinterpret_cast<const uint8_t*>(in.data());
  uint8_t* dst = reinterpret_cast<uint8_t*>(&(*out)[0]);
  const int8_t* table = kBase64Table.value;
  // Every quad but the last: four symbols, no padding.
  const size_t full = in.size() / 4 - 1;
  for (size_t q = 0; q < full; ++q, src += 4, dst += 3) {
    const int32_t a = table[src[0]], b = table[src[1]], c = table[src[2]],
                  d = table[src[3]];
    if ((a | b | c | d) < 0) return false;
    const uint32_t v = (uint32_t(a) << 18) | (uint32_t(b) << 12) |
                       (uint32_t(c) << 6) | uint32_t(d);
    dst[0] = static_cast<uint8_t>(v >> 16);
    dst[1] = static_cast<uint8_t>(v >> 8);
    dst[2] = static_cast<uint8_t>(v);
  }
  // The last quad: "xxxx", "xxx=" or "xx==", with the unused bits zero
  // (canonical form).
  const int32_t a = table[src[0]], b = table[src[1]];
  const int32_t c = pad == 2 ? 0 : table[src[2]];
  const int32_t d = pad >= 1 ? 0 : table[src[3]];
  if ((a | b | c | d) < 0) return false;
  const uint32_t v = (uint32_t(a) << 18) | (uint32_t(b) << 12) |
                     (uint32_t(c) << 6) | uint32_t(d);
  dst[0] = static_cast<uint8_t>(v >> 16);
  if (pad == 2) return (v & 0xffff) == 0;
  dst[1] = static_cast<uint8_t>(v >> 8);
  if (pad == 1) return (v & 0xff) == 0;
  dst[2] = static_cast<uint8_t>(v);
  return true;
}

std::string Base64Encode(absl::string_view in) {
  std::string out(Base64Size(in.size()), '\0');
  Base64EncodeTo(reinterpret_cast<const uint8_t*>(in.data()), in.size(),
                 out.data());
  return out;
}

}  // namespace strongbox
