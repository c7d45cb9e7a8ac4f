// Fencing a lease holder hung inside an LMDB write transaction (issue 18):
// who the holder process is, whether it is inside a write, whether a
// contender may kill it, and the kill.
//
// LMDB has one writer lock. A holder stopped inside a write transaction
// keeps it, and every contender's grant attempt blocks in mdb_txn_begin
// however long ago the grant expired. The cure on one host is to kill the
// holder (LMDB's writer mutex is robust: the next writer recovers at once),
// but only a process proven to be the one that took the grant — the same
// boot, pid namespace, pid and process start time (a pid reused by another
// process has another start time) — and proven to be inside a write
// transaction of its own (its marker, or its thread owning LMDB's writer
// mutex: below), since LMDB's API does not say who holds its writer lock:
// a healthy holder whose renewal merely waits behind some other process
// stopped inside a write looks just as expired.
//
// The "inside a write" marker. The holder of grant F keeps an OFD lock on
// byte 0 of `lease-F.lock` while it lives (liveness). While one of its own
// write transactions is open — taken after mdb_txn_begin returned, so a
// holder *blocked in* mdb_txn_begin is not marked; dropped after
// mdb_txn_commit or mdb_txn_abort returned — it also locks one byte at
// kInsideWriteMarkerBase + the transaction's sequence number. A contender
// probes it with F_OFD_GETLK, which takes nothing and names the locked byte,
// so it can tell one long transaction from many short ones. Races, and how
// they fall:
//   * Holder blocked in begin behind another process: unmarked, and the
//     writer mutex's owner is that other process's thread: never killed
//     (the point of the marker, and of naming the owner).
//   * Holder stopped inside its begin after LMDB locked but before the
//     marker: unmarked, but the owner of LMDB's writer mutex says who it is
//     (below): killed like a marked one.
//   * Holder stopped inside its commit after LMDB unlocked but before the
//     marker is dropped: marked though the lock has passed on. It is killed
//     only if some other writer also hangs then and the holder stays stopped
//     past the grace, with its grant expired: a stopped, deposed process.
//   * A contender sees a marker of a short transaction (the holder writes,
//     and the probe lands inside): a kill needs the *same* transaction seen
//     for the whole grace (at least the TTL), then seen again once the
//     process is pinned by a pidfd, just before the signal. A transaction
//     that long, with the grant expired, is the hang this cures.
// Every write transaction of a process marks every grant it holds on that
// directory (Environment::Write), fenced or not: any of them holds the
// writer lock.
//
// The owner of LMDB's writer mutex. The marker cannot cover the moment
// between LMDB taking its writer mutex inside mdb_txn_begin and
// mdb_txn_begin returning (a SIGSTOP lands there about once in fifteen
// stops of a busy holder). Debian's liblmdb 0.9 keeps the writer mutex in
// lock.mdb as a robust, process-shared glibc pthread mutex, and the word a
// robust futex locks holds the owner's thread id (the kernel's robust futex
// ABI: the kernel itself reads it when the owner dies). So when the holder
// is not marked, a contender reads that word (WriterLockOwnerFromHeader)
// and the holder counts as inside a write if the owner is one of the
// holder's own threads (/proc/<pid>/task/<tid>) that has not run at all
// (/proc/<pid>/task/<tid>/schedstat: the same time on a CPU, and not
// running) since it was first seen owning it: a thread that executes
// nothing cannot release a mutex, so it is one and the same hold, and the
// kill needs it for the whole grace, then seen again once the process is
// pinned. Fails safe, never guesses: no kill by this route when
//   * lock.mdb's header is not the layout checked here (LMDB's magic and
//     lock format 0.9 with its pid locks, and robust process-shared glibc
//     mutexes in both mutex slots), or the word is not a plain owner;
//   * any process whose pid this contender cannot see as the very number
//     it locked in lock.mdb (LMDB locks byte <pid> for each process that
//     reads) uses the store: a thread id is a number in its own pid
//     namespace, so one from a process of another namespace could match a
//     thread of the holder by chance (CheckLockFileUsersShareOurPidNs);
//   * the scheduler's times are unreadable (schedstat off: zeros);
//   * the owner thread runs, or is not the holder's.
// A holder merely waiting for the writer mutex is never the owner (the
// owner is whoever holds it), so it is never killed by this route either.
// Why the owner rather than a second marker taken before mdb_txn_begin: a
// process stopped while waiting in begin and one stopped just after LMDB
// locked look the same from outside (both "entering", neither running);
// only ruling out every other writer would tell them apart, and writers
// without a grant (a contender's grant attempt, an unfenced Initialize,
// another program) carry no marker. The mutex names its owner directly.
// Left open: a process of another pid namespace that writes to the store
// without ever reading it (so it holds no pid lock) is not seen by the
// namespace check; strongbox's own processes always read at Open().
//
// Free functions are stateless and thread-safe; a HolderWatch belongs to
// one watchdog thread.
#ifndef STRONGBOX_LIB_LMDB_HUNG_HOLDER_H_
#define STRONGBOX_LIB_LMDB_HUNG_HOLDER_H_

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "lib/lmdb/records.h"
#include "strongbox/lmdb_backend.h"

namespace strongbox {
namespace lmdb_internal {

// Field 22 of /proc/<pid>/stat: when the process started, in clock ticks
// since boot. NOT_FOUND only if there is no such process (the kernel says
// so) or it has exited (a zombie); PERMISSION_DENIED ("cannot see process")
// if it exists but /proc hides it (hidepid, or no /proc mounted); another
// error if the file cannot be read or parsed. `proc_root` is "/proc" except
// in tests.
absl::StatusOr<uint64_t> ReadProcessStartTime(pid_t pid,
                                              const std::string& proc_root);

// The inode of this process's pid namespace (/proc/self/ns/pid), which
// names the namespace for as long as it exists. An error if it cannot be
// read (then grants record 0 and nobody kills this process's grants).
absl::StatusOr<uint64_t> ReadOwnPidNamespace(const std::string& proc_root);

// ----------------------------------------------------- the lease lock file
// Byte 0 is the liveness lock; marker bytes start at 2, so they never touch
// byte 0 (the kernel would merge the two ranges of one owner into one lock)
// and a probe from kInsideWriteMarkerBase on sees only a marker.
inline constexpr off_t kLivenessByte = 0;
inline constexpr off_t kInsideWriteMarkerBase = 2;
inline constexpr uint64_t kInsideWriteMarkerSpan = uint64_t{1} << 40;

// Locks the marker byte of write transaction `seq` on the lock file `fd`
// (an OFD lock; never blocks). False if the kernel refused (the holder is
// then unmarked: never killed, the safe side).
bool LockInsideWriteMarker(int fd, uint64_t seq);
// Drops every marker byte `fd` holds.
void UnlockInsideWriteMarkers(int fd);
// The sequence number (modulo kInsideWriteMarkerSpan) of the write
// transaction whose marker some other open file description holds on `fd`'s
// file; nullopt if none (or the probe failed).
std::optional<uint64_t> ProbeInsideWriteMarker(int fd);

// ------------------------------------------ the owner of the writer mutex

// How many bytes of lock.mdb's header WriterLockOwnerFromHeader reads.
inline constexpr size_t kLockHeaderBytes = 128;

// The thread id that owns LMDB's writer mutex, read from the first
// kLockHeaderBytes of lock.mdb (mapped shared: the owner word is read
// atomically); nullopt if the mutex is free or its owner died.
// FAILED_PRECONDITION if the header is not the layout this code knows (see
// the file comment).
absl::StatusOr<std::optional<pid_t>> WriterLockOwnerFromHeader(
    const unsigned char* header);

// OK if every POSIX lock other processes hold on lock.mdb (`fd`) past byte
// 0 is one of LMDB's per-process locks (byte <pid>, one byte) taken by a
// process this process sees under that same pid, i.e. every process that
// has read the store shares our pid namespace. FAILED_PRECONDITION naming
// the first lock that is not; UNAVAILABLE if the locks cannot be listed.
absl::Status CheckLockFileUsersShareOurPidNs(int fd);

// A thread as the scheduler sees it.
struct ThreadRun {
  char state = '?';        // field 3 of /proc/<pid>/task/<tid>/stat
  uint64_t on_cpu_ns = 0;  // first field of .../schedstat (0: unknown)
};
// NOT_FOUND if `tid` is not (or no longer) a thread of process `pid`.
absl::StatusOr<ThreadRun> ReadThreadRun(pid_t pid, pid_t tid,
                                        const std::string& proc_root);

// --------------------------------------------------------------- verdicts

// What a contender may do about the holder named by an expired record.
enum class HolderVerdict {
  kLive,               // nothing to act on or report yet: wait
  kNoHolder,           // the record names no active grant: nothing to blame
  kOtherBoot,          // written during another boot: that process is gone
  kOtherPidNamespace,  // written in another pid namespace: its pid is not ours
  kSelf,               // the record names this very process: never
  kUnknownIdentity,    // no start time or pid namespace recorded: unprovable
  kGone,               // no process has that pid any more (the kernel says)
  kPidReused,          // that pid now belongs to another process
  kUnreadable,         // cannot see it (hidepid) or read it: unprovable
  kNotInsideWrite,     // the holder itself, but not inside a write (nor
                       // proven the owner of the writer mutex): some other
                       // process holds the writer lock
  kProven,             // same boot, namespace, pid and start time, inside one
                       // write (or one hold of the writer mutex, not running)
                       // for the grace: the hung holder itself
};

// The contender itself, as grants record it.
struct SelfIdentity {
  std::string boot_id;
  pid_t pid = 0;
  uint64_t pid_ns = 0;  // 0: unknown (then no holder is ever proven)
};

// Judges `record` at `boot_now` (boot clock) for a contender whose write
// transaction has waited `blocked_for`, and which has seen the holder inside
// one and the same write transaction for `inside_write_for` (nullopt: not
// inside a write now). The holder may be killed only on kProven. `grace` is
// how long past expiry, blocked, and inside that one write before anything
// but kLive is answered; never less than the record's TTL (ZeroDuration:
// the TTL). `read_start_time` reads a pid's current start time (called only
// once the identity gets that far).
struct HolderJudgement {
  HolderVerdict verdict = HolderVerdict::kLive;
  absl::Duration expired_for;  // how long past its expiry (this boot only)
  std::string reason;          // for logs and the observer; no secrets
};
// `inside_how` says how the holder was seen inside a write (empty: by its
// marker); `not_inside_why` why the writer mutex's owner proved nothing
// (empty: not looked). Both only shape the reason.
HolderJudgement JudgeHolder(
    const LeaseRecord& record, absl::Time boot_expiry, absl::Time boot_now,
    absl::Duration blocked_for, absl::Duration grace, const SelfIdentity& self,
    std::optional<absl::Duration> inside_write_for,
    absl::FunctionRef<absl::StatusOr<uint64_t>(pid_t)> read_start_time,
    absl::string_view inside_how = {}, absl::string_view not_inside_why = {});

// Sends SIGKILL to `pid` if, checked after taking a pidfd (so the pid cannot
// be reused between the checks and the signal), its start time is still
// `start_time` and `still_hung()` (the marker seen again) holds. OK if the
// signal was sent; FAILED_PRECONDITION if the identity or the hang no
// longer holds, or no pidfd can be had; NOT_FOUND if it is gone.
absl::Status KillIfSameProcess(pid_t pid, uint64_t start_time,
                               const std::string& proc_root,
                               absl::FunctionRef<bool()> still_hung);

// ------------------------------------------------------------- the watch

// What a watch needs from the world: the backend's is real, tests' fake.
class HolderWatchIo {
 public:
  virtual ~HolderWatchIo() = default;
  virtual absl::StatusOr<uint64_t> ReadStartTime(pid_t pid) = 0;
  // ProbeInsideWriteMarker on the lock file of grant `fence`.
  virtual std::optional<uint64_t> ProbeInsideWrite(FenceToken fence) = 0;
  // KillIfSameProcess.
  virtual absl::Status Kill(pid_t pid, uint64_t start_time,
                            absl::FunctionRef<bool()> still_hung) = 0;
  // The thread owning LMDB's writer mutex now (nullopt: free), or why that
  // cannot be told (WriterLockOwnerFromHeader after
  // CheckLockFileUsersShareOurPidNs). By default it cannot.
  virtual absl::StatusOr<std::optional<pid_t>> WriterLockOwner() {
    return absl::UnimplementedError("the writer mutex's owner is not read");
  }
  // ReadThreadRun. By default: unknown.
  virtual absl::StatusOr<ThreadRun> ReadThreadRun(pid_t pid, pid_t tid) {
    return absl::UnimplementedError("threads are not read");
  }
};

struct HolderWatchConfig {
  SelfIdentity self;
  absl::Duration grace;  // LmdbBackendOptions::hung_holder_grace
  bool kill = false;     // LmdbBackendOptions::kill_hung_holder
};

// One grant attempt's watch over its wait for LMDB's writer lock, armed
// when the wait began: every Look() judges the record as last read, tracks
// the holder's marker, kills a proven hung holder (with `kill`), and says
// what to report. A wait is reported when its reason changes, not at every
// look. After a kill, a wait that goes on for kAfterKillQuiet (the writer
// lock did not pass to this contender: another process holds it, or the
// killed one is stuck in the kernel) is reported again.
class HolderWatch {
 public:
  static constexpr absl::Duration kAfterKillQuiet = absl::Seconds(1);

  HolderWatch(const HolderWatchConfig& config, HolderWatchIo* io,
              absl::Time armed_at);

  // `record` as last read, its expiry in boot time, and boot time now.
  // The event to report (observer and status), if any.
  std::optional<HungHolderEvent> Look(const LeaseRecord& record,
                                      absl::Time boot_expiry, absl::Time now);

 private:
  struct Killed {
    uint32_t pid = 0;
    uint64_t start_time = 0;
    FenceToken fence = kNoFence;
    absl::Time at;
  };

  const HolderWatchConfig config_;
  HolderWatchIo* const io_;
  const absl::Time armed_at_;
  // The writer mutex's owner, a thread of the holder of grant `fence`,
  // that has not run since `since` (its time on a CPU was `on_cpu_ns`).
  struct Owner {
    FenceToken fence = kNoFence;
    pid_t pid = 0;
    pid_t tid = 0;
    uint64_t on_cpu_ns = 0;
    absl::Time since;
  };
  // How long the holder of `record` has owned LMDB's writer mutex in one
  // hold (see the file comment), or nullopt with the reason in *why.
  std::optional<absl::Duration> TrackOwner(const LeaseRecord& record,
                                           absl::Time now, std::string* why);
  // Once pinned, just before the kill: the same owner, still not run.
  bool OwnerStillHolds(const Owner& owner);

  // The marker last seen: on which grant, which transaction, since when.
  FenceToken marker_fence_ = kNoFence;
  std::optional<uint64_t> marker_seq_;
  absl::Time marker_since_;
  std::optional<Owner> owner_;
  std::optional<Killed> killed_;
  std::string last_reason_;
};

}  // namespace lmdb_internal
}  // namespace strongbox

#endif  // STRONGBOX_LIB_LMDB_HUNG_HOLDER_H_
