#include "lib/util/base64.h"

#include <cstring>

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

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
inline uint64_t FromBigEndian(uint64_t w) { return w; }
inline uint64_t ToLittleEndian(uint64_t w) { return __builtin_bswap64(w); }
#else
inline uint64_t FromBigEndian(uint64_t w) { return __builtin_bswap64(w); }
inline uint64_t ToLittleEndian(uint64_t w) { return w; }
#endif

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
  // Six bytes (four 12-bit halves) a step, from one 8-byte load while two
  // bytes past the six are readable; eight characters in one store.
  for (; i + 8 <= n; i += 6, out += 8) {
    uint64_t w;
    std::memcpy(&w, in + i, 8);
    w = FromBigEndian(w);  // byte i in the top bits
    const uint64_t text = uint64_t{kPairs.pair[(w >> 52) & 0xfff]} |
                          (uint64_t{kPairs.pair[(w >> 40) & 0xfff]} << 16) |
                          (uint64_t{kPairs.pair[(w >> 28) & 0xfff]} << 32) |
                          (uint64_t{kPairs.pair[(w >> 16) & 0xfff]} << 48);
    const uint64_t le = ToLittleEndian(text);
    std::memcpy(out, &le, 8);
  }
  for (; i + 3 <= n; i += 3, out += 4) {
    const uint32_t v = (uint32_t{in[i]} << 16) | (uint32_t{in[i + 1]} << 8) |
                       uint32_t{in[i + 2]};
    const uint16_t hi = kPairs.pair[v >> 12], lo = kPairs.pair[v & 0xfff];
    out[0] = static_cast<char>(hi & 0xff);
    out[1] = static_cast<char>(hi >> 8);
    out[2] = static_cast<char>(lo & 0xff);
    out[3] = static_cast<char>(lo >> 8);
  }
  // The last one or two bytes: the reference tail.
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
