// The one base64 (lib/util/base64.h) on its own: any bytes as base64 text,
// and any bytes encoded. The decoder accepts only canonical text, so what
// it accepts re-encodes to exactly the input; what the encoder writes
// decodes back to the bytes it was given. The public-data variant agrees
// with it on every input.
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
  // The public-data variant (Transit) against the reference: the same text,
  // the same verdict and bytes.
  std::string encoded_public(encoded.size(), '\0');
  strongbox::Base64EncodePublicTo(data, size, encoded_public.data());
  if (encoded_public != encoded) std::abort();
  std::string decoded_public;
  const bool ok = strongbox::Base64Decode(bytes, &decoded);
  if (strongbox::Base64DecodePublic(bytes, &decoded_public) != ok) std::abort();
  if (ok && decoded_public != decoded) std::abort();
  return 0;
}
