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

// Public-data tables (Base64EncodePublicTo / Base64DecodePublic).
// kPairs[v] for a 12-bit v: its two characters, first in the low byte.
struct PairTable {
  uint16_t pair[4096];
  constexpr PairTable() : pair() {
    for (int v = 0; v < 4096; ++v) {
      pair[v] = static_cast<uint16_t>(
          static_cast<uint8_t>(kBase64Chars[v >> 6]) |
          (static_cast<uint8_t>(kBase64Chars[v & 63]) << 8));
    }
  }
};
constexpr PairTable kPairs;

// kQuad.d[i][c]: character c's six bits in position i of a quad, shifted to
// where they land in the 24-bit group; kBad (above 24 bits) for a
// character outside the alphabet, so one OR of four lookups tells both.
constexpr uint32_t kBad = 0x01000000;
struct QuadTable {
  uint32_t d[4][256];
  constexpr QuadTable() : d() {
    for (int i = 0; i < 4; ++i) {
      for (int c = 0; c < 256; ++c) d[i][c] = kBad;
      for (int k = 0; k < 64; ++k) {
        d[i][static_cast<uint8_t>(kBase64Chars[k])] = static_cast<uint32_t>(k)
                                                      << (18 - 6 * i);
      }
    }
  }
};
constexpr QuadTable kQuad;

inline void PutPair(uint32_t v12, char* out) {
  const uint16_t p = kPairs.pair[v12];
  out[0] = static_cast<char>(p & 0xff);
  out[1] = static_cast<char>(p >> 8);
}

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

void Base64EncodePublicTo(const uint8_t* in, size_t n, char* out) {
  size_t i = 0;
  // Six bytes (48 bits, four 12-bit halves of two groups) a step.
  for (; i + 6 <= n; i += 6, out += 8) {
    const uint64_t v = (uint64_t{in[i]} << 40) | (uint64_t{in[i + 1]} << 32) |
                       (uint64_t{in[i + 2]} << 24) |
                       (uint64_t{in[i + 3]} << 16) |
                       (uint64_t{in[i + 4]} << 8) | uint64_t{in[i + 5]};
    PutPair(static_cast<uint32_t>(v >> 36) & 0xfff, out);
    PutPair(static_cast<uint32_t>(v >> 24) & 0xfff, out + 2);
    PutPair(static_cast<uint32_t>(v >> 12) & 0xfff, out + 4);
    PutPair(static_cast<uint32_t>(v) & 0xfff, out + 6);
  }
  if (i + 3 <= n) {
    const uint32_t v = (uint32_t{in[i]} << 16) | (uint32_t{in[i + 1]} << 8) |
                       uint32_t{in[i + 2]};
    PutPair(v >> 12, out);
    PutPair(v & 0xfff, out + 2);
    i += 3;
    out += 4;
  }
  // The last one or two bytes: the constant-time tail is as fast.
  Base64EncodeTo(in + i, n - i, out);
}

bool Base64DecodePublic(absl::string_view in, std::string* out) {
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
  const size_t full = in.size() / 4 - 1;
  uint32_t bad = 0;
  for (size_t q = 0; q < full; ++q, src += 4, dst += 3) {
    const uint32_t v = kQuad.d[0][src[0]] | kQuad.d[1][src[1]] |
                       kQuad.d[2][src[2]] | kQuad.d[3][src[3]];
    bad |= v;
    dst[0] = static_cast<uint8_t>(v >> 16);
    dst[1] = static_cast<uint8_t>(v >> 8);
    dst[2] = static_cast<uint8_t>(v);
  }
  if (bad & kBad) return false;
  // The last quad: "xxxx", "xxx=" or "xx==", with the unused bits zero.
  const uint32_t v = kQuad.d[0][src[0]] | kQuad.d[1][src[1]] |
                     (pad == 2 ? 0 : kQuad.d[2][src[2]]) |
                     (pad >= 1 ? 0 : kQuad.d[3][src[3]]);
  if (v & kBad) return false;
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
