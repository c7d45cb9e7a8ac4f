// LmdbBackend: the embedded default Backend — a durable store in one
// directory on local disk, built on LMDB, with an HA lease that works across
// the processes sharing that directory.
//
// Storage. The directory holds LMDB's `data.mdb` and `lock.mdb` plus one
// small `lease-<fence>.lock` file per live grant. Every Commit() is one LMDB
// write transaction: the fence check, the preconditions, the entries and the
// backend-wide revision counter change together or not at all. Reads use
// LMDB read transactions, which never block on writers (in this process or
// any other). By default each commit is synced to disk before it returns.
//
// Many processes. Any number of processes may open the same directory at
// once; LMDB serializes their writers. Opening the same directory twice in
// one process is fine too: the backends share one LMDB environment (LMDB
// forbids two in a process) but keep separate leases, so they behave as two
// processes would.
//
// The HA lease. The grant (holder value, fence, expiry, TTL, the holder's
// machine boot id, pid namespace, pid and process start time) is a record in
// the same LMDB
// environment, so a fenced write checks it atomically with the write. The
// expiry is measured in time since the machine booted (CLOCK_BOOTTIME), which
// every process of one boot shares and nobody steps, so a wall clock stepped
// back does not stretch a hung holder's lease, and one stepped forward does not
// fail over a healthy holder. (Records written by older releases carry a
// wall-clock expiry; they are still honoured, judged by the wall clock, until
// the next grant or renewal rewrites them. A process of an older release cannot
// read the record this one writes: upgrade every process on a directory
// together.) The
// holder of grant F also keeps an OS lock (an open-file-description lock)
// on byte 0 of `lease-F.lock`, which the kernel drops when the process dies. A
// contender therefore treats the lease as free when any of these holds:
//   * the record says released (Release(), BreakLease()),
//   * the record's expiry has passed in boot time (a hung holder
//     loses its grant after the TTL even though it still holds its file
//     lock: the next grant uses a new lock file),
//   * nobody holds `lease-F.lock` (the holder crashed: takeover at once),
//   * the record was written during another boot of the machine.
// A deposed holder's later fenced writes fail with FAILED_PRECONDITION, and
// its Lost()/WaitLost() report the loss. The lease assumes the processes
// share one machine and its clock (the directory must be on a local file
// system; LMDB does not support network file systems either).
//
// A holder hung inside a write. LMDB has a single writer lock, so a process
// stopped *inside* a write transaction (a commit, a renewal: SIGSTOP, a
// debugger, a cgroup freezer, swap thrashing) blocks every writer, and so
// every contender's grant, until it resumes or dies; the TTL alone cannot
// cut that short. A dead one is harmless (LMDB's robust mutex passes the
// lock on at once). So a contender whose grant attempt has waited for the
// writer lock for a grace period (`hung_holder_grace`, default one TTL),
// while the current grant has been expired for that long too, looks at the
// grant's holder process, which the record names by boot id, pid namespace,
// pid and process start time (/proc/<pid>/stat), and:
//   * with `kill_hung_holder`, sends it SIGKILL, but only when all four
//     match (a pid reused by another process has another start time; a
//     grant of another boot is dead already; a pid of another namespace,
//     as in containers sharing a boot id, is not ours) and the holder is
//     proven inside a write transaction of its own, the same one for the
//     whole grace: while its own write transaction is open, a holder keeps
//     an "inside a write" marker lock on its lease file; a holder stopped
//     inside mdb_txn_begin after LMDB took its writer lock, before it could
//     mark itself, is told instead by the owner of LMDB's writer mutex
//     (lock.mdb, Debian's liblmdb 0.9 with robust glibc mutexes): one of
//     its own threads, which has not run all along. That route refuses to
//     judge (no kill; the wait is reported) on any other lock.mdb layout or
//     when a process of another pid namespace uses the store (see
//     lib/lmdb/hung_holder.h for both proofs and their races). A holder
//     whose renewal merely waits behind some other process stopped inside
//     a write (a contender's grant, a BreakLease, an unfenced Initialize)
//     is expired too, but neither marked nor the owner: never killed (the
//     wait is reported, with that reason). Never a live grant and never
//     its own process, nor one this process cannot see (/proc mounted with
//     hidepid hides other users' processes: reported as "cannot see", not
//     as exited); the takeover then completes within about TTL +
//     grace. LMDB recovers the writer lock; fences keep out the writes of
//     a holder killed too eagerly (it was expired anyway), so a wrong guess
//     costs a restart, never data. The killed process's in-flight write is
//     aborted (never acknowledged);
//   * without it (the default), waits as before, and reports the wait.
// Open() of an existing store never waits for the writer lock, so a node
// started during such a hang can open the directory and take over.
// Either way the observer (`hung_holder_observer`) hears of it, and
// hung_holder_status() shows it; a wait that goes on a second after a kill
// (the writer lock passed to another process, not to this contender) is
// reported again. Records of older releases (version 3 and before: no pid
// namespace, no marker) are read, and their holders never killed.
//
// A grant is durable before its fence is handed out: under kNoSync and
// kNoMetaSync the grant's commit is followed by a sync (if that fails the
// grant is given up and Acquire returns UNAVAILABLE), so a power loss can
// never roll the record back and issue the same fence again.
//
// Lock files are reached through a descriptor of the directory opened by
// Open(), so a relative `dir` keeps working after the host chdir()s.
//
// Crashed readers. A process killed while it had the directory open leaves
// its LMDB reader slots behind, and one killed inside a read pins that
// snapshot (no page freed after it is reused; data.mdb grows). The backend
// frees the slots of dead processes at Open(), when a read finds the
// reader table full (then retries it), before growing the map, and at
// most once a second during lease probes, renewals and commits.
//
// Errors. A directory holding something other than a strongbox LMDB store
// fails Open(): FAILED_PRECONDITION for a foreign LMDB environment or an
// unsupported format version, DATA_LOSS for files that are not LMDB at all
// or a corrupt format record.
//
// Thread-safety: every method is safe to call concurrently from any thread.
//
// fork(): a backend and its grants belong to the process that opened them.
// In a forked child every call on them returns FAILED_PRECONDITION (Lost()
// is true, expiry() InfinitePast()), so a child can never share the
// parent's grant or fence, and destroying them in the child leaves the
// parent's grant, lock file and LMDB reader slots alone. The child may
// open the directory again and use its own backend. A child is recognized
// by a pthread_atfork handler, and on lease calls and fenced commits also
// by getpid() (which catches a child made without atfork handlers). The
// child inherits the descriptor of the parent's lease file (close-on-exec)
// and with it the lock: if the parent dies while such a child lives on
// without exec, the lease passes after the TTL instead of at once, unless
// the child destroys its copy of the grant. (As with any fork() of a
// threaded process, fork while no other thread is inside a backend call,
// or exec soon after.)
#ifndef STRONGBOX_LMDB_BACKEND_H_
#define STRONGBOX_LMDB_BACKEND_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "strongbox/backend.h"
#include "strongbox/clock.h"

namespace strongbox {

// A takeover that waits on LMDB's writer lock while the expired grant's
// holder process still lives (see "A holder hung inside a write").
struct HungHolderEvent {
  enum class Kind {
    // The takeover is waiting: `reason` says why the holder was not (or not
    // yet) killed — kill_hung_holder is off, or its identity is unproven.
    kWaiting,
    // The holder, proven by boot id, pid and start time, was sent SIGKILL.
    kKilled,
  };
  Kind kind = Kind::kWaiting;
  FenceToken fence = kNoFence;  // the expired grant
  std::string holder;           // its holder value (advertise address)
  uint32_t pid = 0;             // its process; 0 if the record names none
  absl::Duration expired_for;   // how long past its expiry (0 if unknown)
  std::string reason;           // one line for logs; no secrets
};

// Hears of hung holders. Called on a backend-internal watchdog thread while
// a grant attempt waits; must return promptly and must not destroy the
// backend. It may read the backend (reads never wait for writers).
class HungHolderObserver {
 public:
  virtual ~HungHolderObserver() = default;
  virtual void OnHungHolder(const HungHolderEvent& event) = 0;
};

// What hung_holder_status() reports.
struct HungHolderStatus {
  // Set while a grant attempt of this backend waits on a hung holder
  // (the latest event), cleared when its write transaction begins.
  std::optional<HungHolderEvent> waiting;
  // The last holder this backend killed, and how many it killed.
  std::optional<HungHolderEvent> last_kill;
  uint64_t kills = 0;
};

struct LmdbBackendOptions {
  // How much a commit waits for the disk before it returns.
  enum class Durability {
    // fsync data and metadata on every commit: an acknowledged write
    // survives kill -9 and power loss.
    kSynced,
    // Sync the data but not the metadata page (MDB_NOMETASYNC): a power
    // loss may roll back the last commit, never corrupt the store. kill -9
    // loses nothing.
    kNoMetaSync,
    // No sync at all (MDB_NOSYNC): a power loss or OS crash may lose the
    // commits since the last Sync(), never corrupt the store. kill -9 loses
    // nothing (the data is in the OS page cache). Roughly 25x faster
    // commits; call LmdbBackend::Sync() at checkpoints you need durable.
    // Lease grants are synced whatever this setting (see above).
    kNoSync,
  };

  // Default: kSynced. The setting is per directory per process: a second
  // backend opened on the same directory in one process must ask for the
  // same durability (else FAILED_PRECONDITION).
  Durability durability = Durability::kSynced;

  // Creates the directory (not its parents) if it does not exist.
  // Default: true.
  bool create_if_missing = true;

  // The clock the HA interface speaks: AcquireOptions::deadline and
  // WaitLost()'s deadline are wall times by its Now() (turned into a time
  // left on entry, then counted on MonotonicNow(), so a wall-clock step
  // during the call does not move them), and LeadershipGrant::expiry()
  // and LeaseHolder::expiry are given in it.
  // Grant records are stamped and judged by its MonotonicNow(), which for
  // the real clock is the time since the machine booted (CLOCK_BOOTTIME):
  // every process of one boot reads the same value, and stepping the wall
  // clock neither stretches nor cuts a grant. A host's own clock must
  // therefore return CLOCK_BOOTTIME from MonotonicNow() (or every process
  // on the directory must share it). Not owned; must outlive the backend.
  // Default: RealClock().
  Clock* clock = nullptr;

  // Key and value limits. LMDB keys are at most 511 bytes, so
  // REQUIRES: limits.max_key_bytes <= 511. Default: 511-byte paths, 2 MiB
  // values.
  BackendLimits limits = {511, 2 << 20};

  // Initial size of the memory map (address space, not disk: the file
  // grows only as data is written). The map doubles whenever it fills up,
  // up to max_map_bytes. Default: 64 MiB.
  size_t initial_map_bytes = size_t{64} << 20;
  // Past this size a commit fails with RESOURCE_EXHAUSTED. Default: 1 TiB.
  size_t max_map_bytes = size_t{1} << 40;

  // Reader slots in the lock file, shared by every process on the
  // directory. Only the first process to open the directory sets it. Slots
  // of dead processes are freed (see "Crashed readers"). Default: 510.
  unsigned int max_readers = 510;

  // How often a blocked Acquire() or WaitLost() looks at the lease record
  // again (it changes in other processes, which cannot wake us). Bounds the
  // crash takeover time. Default: 2 ms.
  absl::Duration poll_interval = absl::Milliseconds(2);

  // This machine's boot identity, recorded with every grant so that a
  // grant written before a reboot never blocks anyone after it. Default
  // (empty): read /proc/sys/kernel/random/boot_id at Open(), which fails if
  // it cannot be read. Tests set it to simulate a reboot.
  std::string boot_id;

  // Fence a holder hung inside a write transaction: SIGKILL it once its
  // identity is proven (see "A holder hung inside a write"). The trade-off:
  // on, a frozen holder costs the cluster at most about TTL + grace of
  // leadership instead of as long as it stays frozen, and the frozen
  // process dies (an operator's SIGSTOP or a debugger's stop past that
  // ends it); off, nothing in the library ever kills a process, and a
  // holder frozen inside a write holds every takeover until it resumes
  // (reported, not cured). Every process that may contend must be allowed
  // to signal the others (same user, or CAP_KILL). Default: false — a
  // library does not kill processes unasked; hosts that run one node per
  // process, like strongbox_node, turn it on.
  bool kill_hung_holder = false;

  // How long the grant must be past its expiry, a grant attempt must have
  // waited for the writer lock, and the holder must have been inside one
  // and the same write transaction of its own (or owned LMDB's writer
  // mutex in one hold, not running), before the holder counts as
  // hung. Never less than the grant's TTL (a shorter one counts as the
  // TTL). Default (zero): the grant's own TTL. A host with small TTLs may
  // want a floor (strongbox_node uses max(TTL, 1 s)): a kill is not undone,
  // and a single commit can stall for a fraction of a second on a busy disk.
  absl::Duration hung_holder_grace = absl::ZeroDuration();

  // Hears every wait on, and kill of, a hung holder. Not owned; must
  // outlive the backend. Default: none (hung_holder_status() still tells).
  HungHolderObserver* hung_holder_observer = nullptr;
};

class LmdbBackend : public Backend {
 public:
  // Opens (creating if allowed and needed) the store in directory `dir`.
  // INVALID_ARGUMENT for bad options; FAILED_PRECONDITION or DATA_LOSS for
  // a directory that is not a strongbox store (see above); an errno-derived
  // code (PERMISSION_DENIED, NOT_FOUND, RESOURCE_EXHAUSTED for no free file
  // descriptor, ...) when the directory or the machine's boot id cannot be
  // read (a backend never runs with an unknown boot id: two parties that
  // disagree on it would take the lease from each other).
  static absl::StatusOr<std::unique_ptr<LmdbBackend>> Open(
      const std::string& dir, const LmdbBackendOptions& options = {});

  // Flushes every commit to disk; useful with kNoSync or kNoMetaSync.
  virtual absl::Status Sync() = 0;

  // The directory this backend was opened on, as given to Open().
  virtual const std::string& dir() const = 0;

  // Whether an Acquire() of this backend is waiting on a holder hung
  // inside a write, and which holders it killed. A coordinator puts this
  // in its status ("takeover waiting on a holder blocked inside a write,
  // pid N"). Cheap: no I/O.
  virtual HungHolderStatus hung_holder_status() = 0;

 protected:
  LmdbBackend() = default;
};

}  // namespace strongbox

#endif  // STRONGBOX_LMDB_BACKEND_H_
