// The barrier's stored records (lib/seal/records.proto): serialization,
// strict parsing and the AEAD sealing of records. Internal to lib/seal.
//
// Every Parse* function accepts arbitrary bytes and answers DATA_LOSS for
// anything malformed; none crashes (fuzzed by //fuzz:records_fuzzer).
#ifndef STRONGBOX_LIB_SEAL_RECORDS_H_
#define STRONGBOX_LIB_SEAL_RECORDS_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "strongbox/key_wrapper.h"
#include "strongbox/secret_bytes.h"

namespace strongbox::seal {

inline constexpr size_t kKeyBytes = 32;    // AES-256
inline constexpr size_t kNonceBytes = 12;  // GCM's 96-bit nonce
inline constexpr size_t kTagBytes = 16;
inline constexpr uint32_t kRecordFormat = 1;

// ---- seal config
struct SealConfigRecord {
  int shares = 0;  // recovery shares in auto mode
  int threshold = 0;
  bool auto_unseal = false;  // the root key is stored wrapped (key_wrapper.h)
  bool escrow = false;       // auto mode: root key also under the recovery key
};
// OK or INVALID_ARGUMENT naming the rule: 1 <= threshold <= shares <= 255,
// threshold >= 2 unless shares == 1.
absl::Status ValidateSealParameters(int shares, int threshold);
std::string SerializeSealConfig(const SealConfigRecord& config);
absl::StatusOr<SealConfigRecord> ParseSealConfig(absl::string_view bytes);

// ---- wrapped keys (auto-unseal)
std::string SerializeWrappedKey(const WrappedSecret& wrapped);
// DATA_LOSS unless format 1 and a non-empty ciphertext.
absl::StatusOr<WrappedSecret> ParseWrappedKey(absl::string_view bytes);

// ---- sealed records
struct SealedRecordParts {
  std::string nonce;
  std::string ciphertext;  // with tag
};
absl::StatusOr<SealedRecordParts> ParseSealedRecord(absl::string_view bytes);
// Seals `plaintext` under `key` (kKeyBytes) with a fresh random nonce and
// `ad` as additional data; returns the serialized SealedRecord.
absl::StatusOr<std::string> SealRecord(const SecretBytes& key,
                                       absl::string_view ad,
                                       absl::string_view plaintext);
// Opens a parsed record. DATA_LOSS if it fails authentication (wrong key,
// altered bytes, other additional data); the caller decides what a failure
// means (a wrong unseal key is the operator's error, not data loss).
absl::StatusOr<SecretBytes> OpenRecord(const SecretBytes& key,
                                       absl::string_view ad,
                                       const SealedRecordParts& record);

// ---- keyring
struct TermKey {
  uint32_t term = 0;
  SecretBytes key;
  int64_t created_unix_micros = 0;
  uint64_t reserved_encryptions = 0;  // see records.proto
};
struct KeyringContents {
  uint32_t active_term = 0;
  std::vector<TermKey> terms;  // sorted by term
};
// Serializes straight into a SecretBytes; every temporary is wiped.
SecretBytes SerializeKeyring(const KeyringContents& keyring);
// DATA_LOSS unless: format 1, at least one term, terms >= 1 and unique,
// every key kKeyBytes long, active_term present.
absl::StatusOr<KeyringContents> ParseKeyring(absl::string_view plaintext);

// ---- pending rekey
struct PendingRekeyRecord {
  SealConfigRecord config;  // the new shares / threshold
  std::string root_record;  // serialized SealedRecord (not secret)
  // Auto mode: the serialized WrappedKey of the new recovery key; then
  // root_record is the escrow record, or empty without escrow.
  std::string recovery_wrapped;
  bool auto_mode() const { return !recovery_wrapped.empty(); }
};
std::string SerializePendingRekey(const PendingRekeyRecord& pending);
// DATA_LOSS unless format 1, valid parameters and a parsable root record
// (auto mode: a parsable wrapped recovery key, and a root record only if
// non-empty).
absl::StatusOr<PendingRekeyRecord> ParsePendingRekey(absl::string_view bytes);

}  // namespace strongbox::seal

#endif  // STRONGBOX_LIB_SEAL_RECORDS_H_
