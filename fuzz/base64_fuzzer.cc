// The one base64 (lib/util/base64.h) on its own: any bytes as base64 text,
// and any bytes encoded. The decoder accepts only canonical text, so what
// it accepts re-encodes to exactly the input; what the encoder writes
// decodes back to the bytes it was given.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "lib/util/base64.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  std::string decoded;
  if (strongbox::Base64Decode(bytes, &decoded)) {
    if (strongbox::Base64Encode(decoded) != bytes) std::abort();
  }
  const std::string encoded = strongbox::Base64Encode(bytes);
  if (encoded.size() != strongbox::Base64Size(size)) std::abort();
  std::string back;
  if (!strongbox::Base64Decode(encoded, &back) || back != bytes) std::abort();
  return 0;
}
