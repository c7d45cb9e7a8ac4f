#include "lib/util/base64.h"

#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

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

#if defined(__x86_64__)
namespace {

// The SIMD steps' constants, shared by the SSSE3 and AVX2 encoders (AVX2
// repeats the 16-byte tables in both of its lanes).
// Each 3-byte group (a, b, c) into a 32-bit lane holding bytes b, a, c, b:
// the low 16-bit word is a:b, the high one b:c.
alignas(16) constexpr int8_t kSpread[16] = {1, 0, 2, 1, 4,  3, 5,  4,
                                            7, 6, 8, 7, 10, 9, 11, 10};
// Sextets 0 and 2 (a:b bits 15..10, b:c bits 11..6) shifted down by a high
// multiply; sextets 1 and 3 (a:b bits 9..4, b:c bits 5..0) shifted up by a
// low one; each lands in its own byte of the lane.
constexpr int kMask02 = 0x0FC0FC00, kMul02 = 0x04000040;
constexpr int kMask13 = 0x003F03F0, kMul13 = 0x01000010;
// Sextet to character: add an offset chosen by range. Class 13 for 0..25
// ('A'), 0 for 26..51 ('a'), 1..10 for 52..61 ('0'), 11 for 62 ('+'), 12
// for 63 ('/').
alignas(16) constexpr int8_t kOffsets[16] = {71, -4, -4, -4,  -4,  -4, -4, -4,
                                             -4, -4, -4, -19, -16, 65, 0,  0};

// Twelve bytes a step into sixteen characters with SSSE3 (x86-64's baseline
// is SSE2, so callers check the CPU first). Reads 16 bytes per step, so it
// runs while 16 are readable; returns how many input bytes it consumed (a
// multiple of 3, so the scalar loops go on from there).
__attribute__((target("ssse3"))) size_t EncodePublicSsse3(const uint8_t* in,
                                                          size_t n, char* out) {
  const __m128i spread =
      _mm_load_si128(reinterpret_cast<const __m128i*>(kSpread));
  const __m128i mask_02 = _mm_set1_epi32(kMask02);
  const __m128i mul_02 = _mm_set1_epi32(kMul02);
  const __m128i mask_13 = _mm_set1_epi32(kMask13);
  const __m128i mul_13 = _mm_set1_epi32(kMul13);
  const __m128i offsets =
      _mm_load_si128(reinterpret_cast<const __m128i*>(kOffsets));
  const __m128i n51 = _mm_set1_epi8(51);
  const __m128i n26 = _mm_set1_epi8(26);
  const __m128i n13 = _mm_set1_epi8(13);
  size_t i = 0;
  for (; i + 16 <= n; i += 12, out += 16) {
    __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i));
    v = _mm_shuffle_epi8(v, spread);
    const __m128i s02 = _mm_mulhi_epu16(_mm_and_si128(v, mask_02), mul_02);
    const __m128i s13 = _mm_mullo_epi16(_mm_and_si128(v, mask_13), mul_13);
    const __m128i sextets = _mm_or_si128(s02, s13);
    __m128i cls = _mm_subs_epu8(sextets, n51);
    cls = _mm_or_si128(cls, _mm_and_si128(_mm_cmpgt_epi8(n26, sextets), n13));
    const __m128i text = _mm_add_epi8(_mm_shuffle_epi8(offsets, cls), sextets);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out), text);
  }
  return i;
}

// The same steps on two 12-byte groups a step, one in each 128-bit lane of
// an AVX2 register (its shuffles, multiplies and byte adds work per lane),
// into 32 characters. Reads in[i, i + 28), so it runs while 28 bytes are
// readable; returns how many input bytes it consumed (a multiple of 3).
__attribute__((target("avx2"))) size_t EncodePublicAvx2(const uint8_t* in,
                                                        size_t n, char* out) {
  const __m256i spread = _mm256_broadcastsi128_si256(
      _mm_load_si128(reinterpret_cast<const __m128i*>(kSpread)));
  const __m256i mask_02 = _mm256_set1_epi32(kMask02);
  const __m256i mul_02 = _mm256_set1_epi32(kMul02);
  const __m256i mask_13 = _mm256_set1_epi32(kMask13);
  const __m256i mul_13 = _mm256_set1_epi32(kMul13);
  const __m256i offsets = _mm256_broadcastsi128_si256(
      _mm_load_si128(reinterpret_cast<const __m128i*>(kOffsets)));
  const __m256i n51 = _mm256_set1_epi8(51);
  const __m256i n26 = _mm256_set1_epi8(26);
  const __m256i n13 = _mm256_set1_epi8(13);
  size_t i = 0;
  for (; i + 28 <= n; i += 24, out += 32) {
    __m256i v = _mm256_inserti128_si256(
        _mm256_castsi128_si256(
            _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i))),
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i + 12)), 1);
    v = _mm256_shuffle_epi8(v, spread);
    const __m256i s02 =
        _mm256_mulhi_epu16(_mm256_and_si256(v, mask_02), mul_02);
    const __m256i s13 =
        _mm256_mullo_epi16(_mm256_and_si256(v, mask_13), mul_13);
    const __m256i sextets = _mm256_or_si256(s02, s13);
    __m256i cls = _mm256_subs_epu8(sextets, n51);
    cls = _mm256_or_si256(
        cls, _mm256_and_si256(_mm256_cmpgt_epi8(n26, sextets), n13));
    const __m256i text =
        _mm256_add_epi8(_mm256_shuffle_epi8(offsets, cls), sextets);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), text);
  }
  return i;
}

bool HasSsse3() {
  static const bool has = [] {
    __builtin_cpu_init();  // may run before the runtime's own constructor
    return __builtin_cpu_supports("ssse3") != 0;
  }();
  return has;
}

bool HasAvx2() {
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") != 0;
  }();
  return has;
}

}  // namespace
#endif

void Base64EncodePublicTo(const uint8_t* in, size_t n, char* out) {
  base64_internal::EncodePublicUpTo(base64_internal::Simd::kAvx2, in, n, out);
}

namespace base64_internal {

void EncodePublicUpTo(Simd most, const uint8_t* in, size_t n, char* out) {
  size_t done = 0;
#if defined(__x86_64__)
  if (most >= Simd::kAvx2 && HasAvx2()) {
    done = EncodePublicAvx2(in, n, out);
  }
  if (most >= Simd::kSsse3 && HasSsse3()) {
    done += EncodePublicSsse3(in + done, n - done, out + done / 3 * 4);
  }
#else
  (void)most;
#endif
  EncodePublicScalarTo(in + done, n - done, out + done / 3 * 4);
}

void EncodePublicScalarTo(const uint8_t* in, size_t n, char* out) {
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

}  // namespace base64_internal

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
