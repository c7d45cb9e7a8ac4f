// libFuzzer target: parsing of the barrier's stored records (seal config,
// sealed record envelope, keyring) and opening a sealed record. Every input
// must give a value or DATA_LOSS; never a crash or another code.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "lib/seal/records.h"
#include "strongbox/secret_bytes.h"

namespace {

void Check(const absl::Status& status) {
  if (!status.ok() && status.code() != absl::StatusCode::kDataLoss) {
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace strongbox::seal;  // NOLINT
  static const strongbox::SecretBytes* const key =
      new strongbox::SecretBytes(strongbox::SecretBytes::Random(kKeyBytes));
  const std::string bytes(reinterpret_cast<const char*>(data), size);

  auto config = ParseSealConfig(bytes);
  Check(config.status());
  if (config.ok() &&
      !ValidateSealParameters(config->shares, config->threshold).ok()) {
    std::abort();
  }

  auto keyring = ParseKeyring(bytes);
  Check(keyring.status());
  if (keyring.ok()) {
    // What parses must serialize and parse back to the same terms.
    strongbox::SecretBytes again = SerializeKeyring(*keyring);
    auto reparsed = ParseKeyring(again.view());
    if (!reparsed.ok() || reparsed->terms.size() != keyring->terms.size() ||
        reparsed->active_term != keyring->active_term) {
      std::abort();
    }
  }

  auto parts = ParseSealedRecord(bytes);
  Check(parts.status());
  if (parts.ok()) {
    auto opened = OpenRecord(*key, "core/keyring", *parts);
    Check(opened.status());
    if (opened.ok()) std::abort();  // forging a GCM tag: not by fuzzing
  }
  return 0;
}
