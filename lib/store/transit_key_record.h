// The stored Transit key record ("transit/keys/<name>", a
// store.TransitKeyRecord sealed by the barrier): its checks, and what each
// kind of key write makes of it.
//
// Every write is a read-modify-write: the engine reads the record, hands
// it to one of the functions below, and commits the Mutation it returns
// (conditioned on the version read) inside RetryOnConflict
// (lib/store/retry.h). A function that refuses returns the request's
// status; one that finds nothing to change returns a Mutation without a
// write, and the engine answers the key as it is (as in Vault).
//
// Records hold key bytes: the caller wipes a record it parsed or edited
// (RecordWiper) and the value of a committed write (WipeString).
// Stateless and thread-safe. Internal to strongbox's Transit engine.
#ifndef STRONGBOX_LIB_STORE_TRANSIT_KEY_RECORD_H_
#define STRONGBOX_LIB_STORE_TRANSIT_KEY_RECORD_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "lib/store/transit_records.pb.h"
#include "strongbox/backend.h"
#include "strongbox/requests.pb.h"

namespace strongbox {
namespace transit {

inline constexpr uint32_t kRecordFormat = 1;
inline constexpr size_t kKeyBytes = 32;

// "transit/keys/<name>".
std::string KeyPath(absl::string_view name);

// Wipes the key bytes a record holds (protobuf owns them as std::string),
// on every path out of a scope.
class RecordWiper {
 public:
  explicit RecordWiper(store::TransitKeyRecord* record) : record_(record) {}
  ~RecordWiper();
  RecordWiper(const RecordWiper&) = delete;
  RecordWiper& operator=(const RecordWiper&) = delete;

 private:
  store::TransitKeyRecord* const record_;
};

// Parses and checks a stored record (DATA_LOSS when it is not a valid
// record for `name`). The caller wipes `record` (RecordWiper).
absl::Status ParseRecord(absl::string_view name, absl::string_view bytes,
                         store::TransitKeyRecord* record);

// The key as a response describes it (no key bytes).
void FillInfo(const store::TransitKeyRecord& record,
              store::TransitKeyInfo* info);

// A block of encryptions [first, end) stored for one version by a write
// (create, rotate, reserve); end == 0: none.
struct Grant {
  uint32_t version = 0;
  uint64_t first = 0;
  uint64_t end = 0;
};

// What one write kind makes of the record it read.
struct Mutation {
  // The write to commit, conditioned on the record read (absent for
  // create). Its value holds key bytes: wipe it after the commit.
  // nullopt: the record already is what was asked; nothing is written.
  std::optional<WriteOp> write;
  // The block `write` stores for the writer, if any.
  Grant grant;
};

// The limits a write that stores a block follows (TransitOptions).
struct BlockPolicy {
  uint64_t max_encryptions = 1;  // >= 1
  uint64_t block = 1;            // 1..max_encryptions
  bool rotate_at_limit = true;
};

// In each function below, `record` (edited in place: what the commit
// stores) and `record_version` are what was read; functions other than
// CreateKey require a stored record.

// Create: a first version with the writer's first block; an existing key
// (`exists`) is left unchanged.
Mutation CreateKey(const std::string& name, bool exists, absl::Time now,
                   const BlockPolicy& policy, store::TransitKeyRecord* record);

// Rotate: a new latest version with the writer's first block.
// FAILED_PRECONDITION at UINT32_MAX versions.
absl::StatusOr<Mutation> RotateKey(uint64_t record_version, absl::Time now,
                                   const BlockPolicy& policy,
                                   store::TransitKeyRecord* record);

// Config: new minimums and deletion_allowed (zero / unset: keep);
// INVALID_ARGUMENT for minimums outside 1..latest or min_encryption below
// min_decryption; unchanged when nothing differs.
absl::StatusOr<Mutation> ConfigureKey(uint64_t record_version,
                                      const store::TransitConfigRequest& config,
                                      store::TransitKeyRecord* record);

// Delete: FAILED_PRECONDITION unless the key allows deletion.
absl::StatusOr<Mutation> DeleteKey(uint64_t record_version,
                                   const store::TransitKeyRecord& record);

// Reserve: the next block of encryptions for the latest version, or at the
// limit a rotation whose new version starts with the writer's first block;
// FAILED_PRECONDITION when the limit is reached and rotation is impossible
// (!rotate_at_limit, or UINT32_MAX versions). A version stored before
// counting existed (no reserved_encryptions) counts as used up.
absl::StatusOr<Mutation> ReserveEncryptions(uint64_t record_version,
                                            absl::Time now,
                                            const BlockPolicy& policy,
                                            store::TransitKeyRecord* record);

}  // namespace transit
}  // namespace strongbox

#endif  // STRONGBOX_LIB_STORE_TRANSIT_KEY_RECORD_H_
