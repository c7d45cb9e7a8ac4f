// Fencing a lease holder hung inside an LMDB write transaction (issue 18):
// who the holder process is, whether a contender may kill it, and the kill.
//
// LMDB has one writer lock. A holder stopped inside a write transaction
// keeps it, and every contender's grant attempt blocks in mdb_txn_begin
// however long ago the grant expired. The cure on one host is to kill the
// holder (LMDB's writer mutex is robust: the next writer recovers at once),
// but only a process proven to be the one that took the grant: the same
// boot, the same pid and the same process start time (a pid reused by
// another process has another start time).
//
// Stateless; thread-safe.
#ifndef STRONGBOX_LIB_LMDB_HUNG_HOLDER_H_
#define STRONGBOX_LIB_LMDB_HUNG_HOLDER_H_

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "lib/lmdb/records.h"

namespace strongbox {
namespace lmdb_internal {

// Field 22 of /proc/<pid>/stat: when the process started, in clock ticks
// since boot. NOT_FOUND only if there is no such process (the kernel says
// so) or it has exited (a zombie); PERMISSION_DENIED ("cannot see process")
// if it exists but /proc hides it (hidepid, or no /proc mounted); another
// error if the file cannot be read or parsed. `proc_root` is "/proc" except
// in tests.
absl::StatusOr<uint64_t> ReadProcessStartTime(pid_t pid,
                                              const std::string &proc_root);

// What a contender may do about the holder named by an expired record.
enum class HolderVerdict {
  kLive,            // the grant has not been expired for the grace: wait
  kNoHolder,        // the record names no active grant: nothing to blame
  kOtherBoot,       // written during another boot: that process is gone
  kSelf,            // the record names this very process: never
  kUnknownIdentity, // no start time recorded (older release): unprovable
  kGone,            // no process has that pid any more (the kernel says)
  kPidReused,       // that pid now belongs to another process
  kUnreadable,      // cannot see it (hidepid) or read it: unprovable
  kProven,          // same boot, pid and start time: the hung holder itself
};

// Judges `record` at `boot_now` (boot clock) for a contender whose write
// transaction has waited `blocked_for`. The holder may be killed only on
// kProven. `grace` is how long past expiry (and how long blocked) before
// anything but kLive is answered; ZeroDuration means the record's TTL.
// `read_start_time` reads a pid's current start time (called only once the
// identity gets that far); `self_pid` is the caller's pid.
struct HolderJudgement {
  HolderVerdict verdict = HolderVerdict::kLive;
  absl::Duration expired_for; // how long past its expiry (this boot only)
  std::string reason;         // for logs and the observer; no secrets
};
HolderJudgement
JudgeHolder(const LeaseRecord &record, absl::Time boot_expiry,
            absl::Time boot_now, absl::Duration blocked_for,
            absl::Duration grace, const std::string &boot_id, pid_t self_pid,
            absl::FunctionRef<absl::StatusOr<uint64_t>(pid_t)> read_start_time);

// Sends SIGKILL to `pid` if (checked after taking a pidfd, so the pid
// cannot be reused between the check and the signal) its start time is
// still `start_time`. OK if the signal was sent; FAILED_PRECONDITION if
// the identity no longer matches; NOT_FOUND if it is gone.
absl::Status KillIfSameProcess(pid_t pid, uint64_t start_time,
                               const std::string &proc_root);

} // namespace lmdb_internal
} // namespace strongbox

#endif // STRONGBOX_LIB_LMDB_HUNG_HOLDER_H_
