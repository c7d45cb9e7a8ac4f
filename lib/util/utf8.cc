#include "lib/util/utf8.h"

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace strongbox {

bool IsValidUtf8(absl::string_view s) {
  size_t i = 0;
  // Runs of ASCII eight bytes at a time (paths and field names mostly are).
  while (i + 8 <= s.size()) {
    uint64_t word;
    std::memcpy(&word, s.data() + i, 8);
    if ((word & 0x8080808080808080ull) != 0) break;
    i += 8;
  }
  if (i + 8 > s.size()) {
    // The last 0..7 bytes: all ASCII (the common case) is seen at once, as
    // the string's last word when it has one, else by or-ing the bytes.
    if (s.size() >= 8) {
      uint64_t word;
      std::memcpy(&word, s.data() + s.size() - 8, 8);
      if ((word & 0x8080808080808080ull) == 0) return true;
    } else {
      unsigned char any = 0;
      for (const char c : s) any |= static_cast<unsigned char>(c);
      if (any < 0x80) return true;
    }
  }
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    int extra;
    uint32_t min;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      extra = 1;
      min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
      extra = 2;
      min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
      extra = 3;
      min = 0x10000;
    } else {
      return false;
    }
    if (i + extra >= s.size()) return false;
    uint32_t cp = c & (0x3f >> extra);
    for (int k = 1; k <= extra; ++k) {
      const unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
      return false;
    }
    i += extra + 1;
  }
  return true;
}

}  // namespace strongbox
