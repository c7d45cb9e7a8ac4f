// The byte layouts LmdbBackend stores in LMDB: the format record that marks
// a directory as a strongbox store, one record per entry, and the lease
// record. All integers are little-endian. Stateless; thread-safe.
#ifndef STRONGBOX_LIB_LMDB_RECORDS_H_
#define STRONGBOX_LIB_LMDB_RECORDS_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace strongbox {
namespace lmdb_internal {

// Everything lives in LMDB's one unnamed database, so a commit dirties one
// B-tree. Entries are keyed by their path; the store's own records by keys
// starting with a NUL byte, which no valid path contains (paths start at
// 0x20), so they sort before every entry and List() skips them by seeking.
inline constexpr absl::string_view kFormatKey("\0format", 7);
inline constexpr absl::string_view kRevisionKey("\0revision", 9);
inline constexpr absl::string_view kLeaseKey("\0lease", 6);
// The smallest key an entry can have.
inline constexpr absl::string_view kFirstEntryKey(" ", 1);

// The format record: a magic string and a format version.
inline constexpr absl::string_view kFormatMagic = "strongbox-lmdb";
inline constexpr uint32_t kFormatVersion = 1;
std::string EncodeFormat();
// OK for a record this code reads; FAILED_PRECONDITION for another format
// version; DATA_LOSS for bytes that are not a format record.
absl::Status CheckFormat(absl::string_view bytes);

void PutFixed64(std::string* out, uint64_t v);
uint64_t DecodeFixed64(const char* p);

// An entry record: the version (8 bytes) followed by the value.
inline constexpr size_t kEntryHeaderBytes = 8;
void EncodeEntryHeader(uint64_t version, char* out);

// The revision record: 8 bytes. DATA_LOSS if malformed.
absl::StatusOr<uint64_t> DecodeRevision(absl::string_view bytes);

// The lease record. After the first grant it always exists; `active` says
// whether the grant numbered `fence` is still in force (it may also have
// expired or died, which readers judge for themselves). `fence` is the
// highest fence ever granted, so the next grant is fence + 1.
//
// Record version 3 (written by this code) stores `expiry` as time since the
// machine booted (CLOCK_BOOTTIME, as absl::UnixEpoch() + that duration): the
// record is only meaningful during the boot named by `boot_id`, and that
// clock is shared by every process of the boot and never stepped. It also
// stores the holder's process start time (field 22 of /proc/<pid>/stat,
// clock ticks since boot), which with `boot_id` and `pid` names the holder
// process exactly (a reused pid has another start time): only a proven
// holder is ever killed as hung (LmdbBackendOptions::kill_hung_holder).
// Version 4 adds the holder's pid namespace (the inode of /proc/<pid>/ns/pid):
// containers may share a boot id, and a pid means nothing outside its own
// namespace. It is also the first version whose holders keep the "inside a
// write" marker on their lock file (hung_holder.h), which a kill requires.
// Version 3 is version 4 without the pid namespace (pid_ns 0: unknown).
// Version 2 is version 3 without the start time (start_time 0: unknown).
// Version 1 (older releases) stored wall-clock time; it is still read, and
// judged by the wall clock until the record is next written.
enum class ExpiryClock : uint8_t {
  kWall = 1,  // record version 1: absl::Time of the wall clock
  kBoot = 2,  // record versions 2 and 3: time since boot
};

inline constexpr uint8_t kLeaseRecordV1 = 1;
inline constexpr uint8_t kLeaseRecordV2 = 2;
inline constexpr uint8_t kLeaseRecordV3 = 3;
inline constexpr uint8_t kLeaseRecordV4 = 4;

struct LeaseRecord {
  // The layout to write; DecodeLease sets the version it read.
  uint8_t version = kLeaseRecordV4;
  ExpiryClock expiry_clock = ExpiryClock::kBoot;
  bool active = false;
  uint64_t fence = 0;
  absl::Time expiry = absl::InfinitePast();
  absl::Duration ttl = absl::ZeroDuration();
  uint32_t pid = 0;
  // The holder's start time in clock ticks since boot; 0 if unknown
  // (versions 1 and 2).
  uint64_t start_time = 0;
  // The inode of the holder's pid namespace; 0 if unknown (versions 1-3).
  uint64_t pid_ns = 0;
  std::string boot_id;
  std::string holder;
};
// Writes record version `record.version` (4 unless a test writes an old
// record on purpose; versions 1 and 2 imply their expiry clock, and older
// versions drop the fields they lack).
std::string EncodeLease(const LeaseRecord& record);
// Reads versions 1 to 4. DATA_LOSS if malformed or of another version.
absl::StatusOr<LeaseRecord> DecodeLease(absl::string_view bytes);

}  // namespace lmdb_internal
}  // namespace strongbox

#endif  // STRONGBOX_LIB_LMDB_RECORDS_H_
