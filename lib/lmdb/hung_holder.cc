#include "lib/lmdb/hung_holder.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <fstream>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace strongbox {
namespace lmdb_internal {

absl::StatusOr<uint64_t> ReadProcessStartTime(pid_t pid,
                                              const std::string& proc_root) {
  const std::string path = absl::StrCat(proc_root, "/", pid, "/stat");
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT || err == ESRCH) {
      // No /proc entry is not proof of exit: /proc mounted with hidepid=2
      // hides other users' processes, and /proc may not be mounted at all.
      // Ask the kernel itself (kill with signal 0 sends nothing): only
      // ESRCH means no such process.
      if (kill(pid, 0) != 0 && errno == ESRCH) {
        return absl::NotFoundError(absl::StrCat("no process ", pid));
      }
      return absl::PermissionDeniedError(absl::StrCat(
          "cannot see process ", pid, ": it exists, but ", path,
          " does not (/proc mounted with hidepid, or not mounted)"));
    }
    if (err == EACCES || err == EPERM) {
      // hidepid=1: the entry is visible, its contents are not.
      return absl::PermissionDeniedError(
          absl::StrCat("cannot see process ", pid, ": ", path, ": ",
                       std::strerror(err), " (/proc mounted with hidepid?)"));
    }
    return absl::ErrnoToStatus(err, absl::StrCat("cannot open ", path));
  }
  char buf[1024];
  size_t got = 0;
  while (got < sizeof(buf)) {
    ssize_t n = read(fd, buf + got, sizeof(buf) - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      close(fd);
      // A process that exits between open and read.
      if (err == ESRCH) {
        return absl::NotFoundError(absl::StrCat("no process ", pid));
      }
      return absl::ErrnoToStatus(err, absl::StrCat("cannot read ", path));
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  close(fd);
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so
  // the fields start after the last ')'. Field 3 (state) is the first.
  absl::string_view text(buf, got);
  const size_t paren = text.rfind(')');
  if (paren == absl::string_view::npos) {
    return absl::InternalError(absl::StrCat(path, " is malformed"));
  }
  std::vector<absl::string_view> fields =
      absl::StrSplit(text.substr(paren + 1), ' ', absl::SkipEmpty());
  constexpr size_t kStartTimeIndex = 22 - 3;
  uint64_t start_time = 0;
  if (fields.size() <= kStartTimeIndex ||
      !absl::SimpleAtoi(fields[kStartTimeIndex], &start_time)) {
    return absl::InternalError(absl::StrCat(path, " is malformed"));
  }
  // A zombie has exited already (it only waits to be reaped).
  if (fields[0] == "Z" || fields[0] == "X") {
    return absl::NotFoundError(absl::StrCat("process ", pid, " has exited"));
  }
  return start_time;
}

absl::StatusOr<uint64_t> ReadOwnPidNamespace(const std::string& proc_root) {
  const std::string path = absl::StrCat(proc_root, "/self/ns/pid");
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("cannot stat ", path));
  }
  return static_cast<uint64_t>(st.st_ino);
}

namespace {

bool SetMarkerLock(int fd, short type, off_t start, off_t len) {
  struct flock lock;
  std::memset(&lock, 0, sizeof(lock));
  lock.l_type = type;
  lock.l_whence = SEEK_SET;
  lock.l_start = start;
  lock.l_len = len;
  return fcntl(fd, F_OFD_SETLK, &lock) == 0;
}

}  // namespace

bool LockInsideWriteMarker(int fd, uint64_t seq) {
  return SetMarkerLock(
      fd, F_WRLCK,
      kInsideWriteMarkerBase + static_cast<off_t>(seq % kInsideWriteMarkerSpan),
      1);
}

void UnlockInsideWriteMarkers(int fd) {
  // Length 0: to the end of every possible offset.
  SetMarkerLock(fd, F_UNLCK, kInsideWriteMarkerBase, 0);
}

std::optional<uint64_t> ProbeInsideWriteMarker(int fd) {
  struct flock probe;
  std::memset(&probe, 0, sizeof(probe));
  probe.l_type = F_WRLCK;
  probe.l_whence = SEEK_SET;
  probe.l_start = kInsideWriteMarkerBase;
  probe.l_len = 0;
  if (fcntl(fd, F_OFD_GETLK, &probe) != 0 || probe.l_type == F_UNLCK ||
      probe.l_start < kInsideWriteMarkerBase) {
    return std::nullopt;
  }
  return static_cast<uint64_t>(probe.l_start - kInsideWriteMarkerBase);
}

// ------------------------------------------ the owner of the writer mutex

namespace {

// liblmdb 0.9's lock.mdb (mdb.c, MDB_txninfo), as Debian builds it
// (MDB_USE_POSIX_MUTEX with MDB_USE_ROBUST): the magic, the lock format
// (MDB_LOCK_VERSION 1, plus MDB_PIDLOCK at bit 16), the reader mutex at
// byte 8, and the writer mutex at byte 64 (the first part is padded to a
// 64-byte cache line). Checked against the file every time.
constexpr uint32_t kLmdbMagic = 0xBEEFC0DE;
constexpr uint32_t kLmdbLockFormat = 0x00010001;
constexpr size_t kReaderMutexOffset = 8;
constexpr size_t kWriterMutexOffset = 64;

#if defined(__GLIBC__) && defined(__LP64__)
constexpr bool kGlibcMutexLayout =
    sizeof(pthread_mutex_t) == 40 &&
    offsetof(pthread_mutex_t, __data.__lock) == 0 &&
    offsetof(pthread_mutex_t, __data.__kind) == 16;
constexpr size_t kMutexKindOffset = 16;
#else
constexpr bool kGlibcMutexLayout = false;
constexpr size_t kMutexKindOffset = 0;
#endif
// glibc's __kind of a robust, process-shared mutex of the normal type
// (PTHREAD_MUTEX_ROBUST_NORMAL_NP | PTHREAD_MUTEX_PSHARED_BIT): what LMDB
// asks for. Anything else (another type, elision bits) is not vouched for.
constexpr int32_t kRobustSharedKind = 16 | 128;

uint32_t Load32(const unsigned char* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

}  // namespace

absl::StatusOr<std::optional<pid_t>> WriterLockOwnerFromHeader(
    const unsigned char* header) {
  if (!kGlibcMutexLayout) {
    return absl::FailedPreconditionError(
        "not built against glibc's 64-bit pthread_mutex_t layout");
  }
  if (Load32(header) != kLmdbMagic || Load32(header + 4) != kLmdbLockFormat) {
    return absl::FailedPreconditionError(
        "lock.mdb is not the LMDB 0.9 lock file layout this code knows");
  }
  const int32_t reader_kind = static_cast<int32_t>(
      Load32(header + kReaderMutexOffset + kMutexKindOffset));
  const int32_t writer_kind = static_cast<int32_t>(
      Load32(header + kWriterMutexOffset + kMutexKindOffset));
  if (reader_kind != kRobustSharedKind || writer_kind != kRobustSharedKind) {
    return absl::FailedPreconditionError(absl::StrCat(
        "lock.mdb's mutexes are not robust process-shared glibc mutexes "
        "(kinds ",
        reader_kind, ", ", writer_kind, ")"));
  }
  // The robust futex word: the owner's thread id, with the waiters and
  // owner-died bits (linux/futex.h). Written by other processes: one
  // atomic load of the aligned word.
  const uint32_t word = __atomic_load_n(
      reinterpret_cast<const uint32_t*>(header + kWriterMutexOffset),
      __ATOMIC_ACQUIRE);
  if ((word & FUTEX_OWNER_DIED) != 0) return std::optional<pid_t>();
  const pid_t tid = static_cast<pid_t>(word & FUTEX_TID_MASK);
  if (tid == 0) return std::optional<pid_t>();
  return std::optional<pid_t>(tid);
}

namespace {

// Lists the POSIX locks of other processes on bytes [lo, hi] of `fd`
// (hi < 0: to the end) by bisection: F_GETLK names one conflicting lock,
// then both sides of it are searched. Write locks of different processes
// never overlap, so each is found once.
absl::Status CheckLockRange(int fd, off_t lo, off_t hi, int* budget) {
  if (hi >= 0 && lo > hi) return absl::OkStatus();
  if (--*budget < 0) {
    return absl::UnavailableError("too many locks on lock.mdb to list");
  }
  struct flock q;
  std::memset(&q, 0, sizeof(q));
  q.l_type = F_WRLCK;
  q.l_whence = SEEK_SET;
  q.l_start = lo;
  q.l_len = hi < 0 ? 0 : hi - lo + 1;
  if (fcntl(fd, F_GETLK, &q) != 0) {
    return absl::ErrnoToStatus(errno, "listing the locks on lock.mdb");
  }
  if (q.l_type == F_UNLCK) return absl::OkStatus();
  // LMDB's own: byte <pid> of a process that reads, one byte, which the
  // kernel names by the pid this process sees (0 if it cannot see it, -1
  // for an OFD lock: not LMDB's).
  if (q.l_len != 1 || q.l_pid <= 0 || q.l_start != q.l_pid) {
    return absl::FailedPreconditionError(absl::StrCat(
        "a process this one cannot place in its pid namespace uses the store "
        "(lock.mdb byte ",
        q.l_start, " is held by pid ", q.l_pid, " as seen from here)"));
  }
  absl::Status left = CheckLockRange(fd, lo, q.l_start - 1, budget);
  if (!left.ok()) return left;
  return CheckLockRange(fd, q.l_start + 1, hi, budget);
}

}  // namespace

absl::Status CheckLockFileUsersShareOurPidNs(int fd) {
  // Byte 0 carries every user's shared lock (LMDB's "is anyone else
  // here"); the per-process locks start at byte 1 (pids start at 1).
  int budget = 4096;
  return CheckLockRange(fd, 1, -1, &budget);
}

absl::StatusOr<ThreadRun> ReadThreadRun(pid_t pid, pid_t tid,
                                        const std::string& proc_root) {
  const std::string dir = absl::StrCat(proc_root, "/", pid, "/task/", tid);
  std::string stat;
  {
    // /proc/<pid>/task/<tid> exists only for a thread of that process.
    const std::string path = dir + "/stat";
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      if (errno == ENOENT || errno == ESRCH) {
        return absl::NotFoundError(
            absl::StrCat("thread ", tid, " is not a thread of pid ", pid));
      }
      return absl::ErrnoToStatus(errno, absl::StrCat("cannot open ", path));
    }
    char buf[1024];
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) < 0 && errno == EINTR) {
    }
    const int err = errno;
    close(fd);
    if (n < 0 && err == ESRCH) {
      return absl::NotFoundError(absl::StrCat("thread ", tid, " has exited"));
    }
    if (n <= 0) return absl::ErrnoToStatus(err, absl::StrCat("reading ", path));
    stat.assign(buf, static_cast<size_t>(n));
  }
  ThreadRun run;
  const size_t paren = stat.rfind(')');
  if (paren == std::string::npos || paren + 2 >= stat.size()) {
    return absl::InternalError(absl::StrCat(dir, "/stat is malformed"));
  }
  run.state = stat[paren + 2];
  std::ifstream schedstat(dir + "/schedstat");
  uint64_t on_cpu = 0;
  if (schedstat >> on_cpu) run.on_cpu_ns = on_cpu;
  return run;
}

HolderJudgement JudgeHolder(
    const LeaseRecord& record, absl::Time boot_expiry, absl::Time boot_now,
    absl::Duration blocked_for, absl::Duration grace, const SelfIdentity& self,
    std::optional<absl::Duration> inside_write_for,
    absl::FunctionRef<absl::StatusOr<uint64_t>(pid_t)> read_start_time,
    absl::string_view inside_how, absl::string_view not_inside_why) {
  HolderJudgement j;
  if (!record.active) {
    j.verdict = HolderVerdict::kNoHolder;
    j.reason = "the lease has no active grant";
    return j;
  }
  // Never less than the grant's TTL: a renewal that began before the
  // expiry ends within a TTL of it, so a grant expired by a TTL can no
  // longer come back to life under a commit that was merely slow.
  if (grace < record.ttl) grace = record.ttl;
  if (blocked_for < grace) return j;  // kLive: not blocked long enough
  if (record.boot_id != self.boot_id) {
    j.verdict = HolderVerdict::kOtherBoot;
    j.reason = absl::StrCat("grant ", record.fence,
                            " was made during another boot; its holder is "
                            "gone (not killed)");
    return j;
  }
  j.expired_for = boot_now - boot_expiry;
  // Never a live grant, nor one expired for less than the grace.
  if (j.expired_for < grace) return j;
  const pid_t pid = static_cast<pid_t>(record.pid);
  if (pid <= 0) {
    j.verdict = HolderVerdict::kUnknownIdentity;
    j.reason = absl::StrCat("grant ", record.fence, " names no process");
    return j;
  }
  if (self.pid_ns == 0) {
    j.verdict = HolderVerdict::kUnknownIdentity;
    j.reason = absl::StrCat(
        "this process cannot read its own pid namespace; "
        "pid ",
        pid, " of grant ", record.fence, " is unproven, not killed");
    return j;
  }
  // Containers may share a boot id; a pid of another namespace names some
  // unrelated process of ours, or none.
  if (record.pid_ns != 0 && record.pid_ns != self.pid_ns) {
    j.verdict = HolderVerdict::kOtherPidNamespace;
    j.reason = absl::StrCat("grant ", record.fence, " (pid ", pid,
                            ") was made in another pid namespace (",
                            record.pid_ns, "; ours is ", self.pid_ns,
                            "); its pid is not ours to judge, not killed");
    return j;
  }
  if (pid == self.pid) {
    j.verdict = HolderVerdict::kSelf;
    j.reason = absl::StrCat("grant ", record.fence, " names this process (pid ",
                            pid, "); not killed");
    return j;
  }
  if (record.start_time == 0 || record.pid_ns == 0 ||
      record.version < kLeaseRecordV4) {
    j.verdict = HolderVerdict::kUnknownIdentity;
    j.reason = absl::StrCat(
        "grant ", record.fence, " (pid ", pid,
        ") records no process start time or pid namespace, or no "
        "inside-a-write marker (lease record version ",
        static_cast<int>(record.version),
        ", an older release, or /proc unreadable to its holder); identity "
        "unproven, not killed");
    return j;
  }
  absl::StatusOr<uint64_t> now_start = read_start_time(pid);
  if (absl::IsNotFound(now_start.status())) {
    j.verdict = HolderVerdict::kGone;
    j.reason =
        absl::StrCat("pid ", pid, " of grant ", record.fence, " has exited");
    return j;
  }
  if (!now_start.ok()) {
    j.verdict = HolderVerdict::kUnreadable;
    j.reason = absl::StrCat("the start time of pid ", pid, " of grant ",
                            record.fence, " cannot be read (",
                            now_start.status().message(), "); not killed");
    return j;
  }
  if (*now_start != record.start_time) {
    j.verdict = HolderVerdict::kPidReused;
    j.reason =
        absl::StrCat("pid ", pid, " of grant ", record.fence,
                     " now belongs to another process (start time ", *now_start,
                     ", granted to ", record.start_time, "); not killed");
    return j;
  }
  if (!inside_write_for.has_value()) {
    j.verdict = HolderVerdict::kNotInsideWrite;
    j.reason = absl::StrCat(
        "grant ", record.fence, " has expired, but its holder, pid ", pid,
        ", is not inside a write transaction: ",
        not_inside_why.empty() ? "another process holds LMDB's writer lock "
                                 "(the holder waits behind it too)"
                               : not_inside_why,
        "; not killed");
    return j;
  }
  // Inside a write, but not (yet) one and the same write for the grace.
  if (*inside_write_for < grace) return j;
  j.verdict = HolderVerdict::kProven;
  j.reason = absl::StrCat(
      "grant ", record.fence, " has expired and its holder, pid ", pid,
      " (same boot, pid namespace and start time), has ",
      inside_how.empty() ? "been inside one write transaction" : inside_how,
      " for the grace (", absl::FormatDuration(grace),
      ") and holds the writer lock: hung inside a write");
  return j;
}

absl::Status KillIfSameProcess(pid_t pid, uint64_t start_time,
                               const std::string& proc_root,
                               absl::FunctionRef<bool()> still_hung) {
  // The pidfd pins the process: if it has exited and its pid was reused
  // by the time the start time is read, the start time differs, and a
  // signal through the pidfd never reaches the newcomer.
  const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0 && errno == ESRCH) {
    return absl::NotFoundError(absl::StrCat("no process ", pid));
  }
  if (pidfd < 0) {
    // No race-free kill here (kernel < 5.3, or pidfd_open filtered by a
    // sandbox): kill(pid) could reach a process that reused the pid after
    // another contender's kill. Never guess: the takeover keeps waiting.
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot pin pid ", pid, " (pidfd_open: ", std::strerror(errno),
        "); not killing without a race-free signal"));
  }
  absl::StatusOr<uint64_t> now_start = ReadProcessStartTime(pid, proc_root);
  if (!now_start.ok() || *now_start != start_time) {
    close(pidfd);
    if (!now_start.ok()) return now_start.status();
    return absl::FailedPreconditionError(
        absl::StrCat("pid ", pid, " now belongs to another process"));
  }
  // Pinned and the same process: is it still inside that one write?
  if (!still_hung()) {
    close(pidfd);
    return absl::FailedPreconditionError(absl::StrCat(
        "pid ", pid, " left its write transaction before the kill"));
  }
  const int rc = static_cast<int>(
      syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0));
  const int err = errno;
  close(pidfd);
  if (rc != 0) {
    if (err == ESRCH) {
      return absl::NotFoundError(absl::StrCat("no process ", pid));
    }
    return absl::ErrnoToStatus(err, absl::StrCat("cannot kill pid ", pid));
  }
  return absl::OkStatus();
}

HolderWatch::HolderWatch(const HolderWatchConfig& config, HolderWatchIo* io,
                         absl::Time armed_at)
    : config_(config), io_(io), armed_at_(armed_at) {}

std::optional<HungHolderEvent> HolderWatch::Look(const LeaseRecord& record,
                                                 absl::Time boot_expiry,
                                                 absl::Time now) {
  if (!record.active) return std::nullopt;
  // The marker is tracked at every look, from the start of the wait, so
  // that "one write transaction for the grace" can be told as soon as the
  // rest of the proof holds.
  const std::optional<uint64_t> seq = io_->ProbeInsideWrite(record.fence);
  if (!seq.has_value()) {
    marker_seq_.reset();
  } else if (marker_fence_ != record.fence || marker_seq_ != seq) {
    marker_fence_ = record.fence;
    marker_seq_ = seq;
    marker_since_ = now;
  }
  std::optional<absl::Duration> inside_for;
  if (marker_seq_.has_value()) inside_for = now - marker_since_;
  // Unmarked: it may still hold the writer mutex, stopped inside
  // mdb_txn_begin before it could mark (the file comment).
  std::string inside_how;
  std::string not_inside_why;
  if (inside_for.has_value()) {
    owner_.reset();
  } else {
    inside_for = TrackOwner(record, now, &not_inside_why);
    if (inside_for.has_value()) {
      inside_how = absl::StrCat(
          "owned LMDB's writer lock in one hold (its thread ", owner_->tid,
          " has not run since), though not marked inside a write,");
    }
  }
  const bool by_owner = !marker_seq_.has_value() && owner_.has_value();
  const HolderJudgement judged = JudgeHolder(
      record, boot_expiry, now, now - armed_at_, config_.grace, config_.self,
      inside_for, [&](pid_t pid) { return io_->ReadStartTime(pid); },
      inside_how, not_inside_why);
  if (judged.verdict == HolderVerdict::kLive ||
      judged.verdict == HolderVerdict::kNoHolder) {
    return std::nullopt;
  }
  HungHolderEvent event;
  event.kind = HungHolderEvent::Kind::kWaiting;
  event.fence = record.fence;
  event.holder = record.holder;
  event.pid = record.pid;
  event.expired_for = judged.expired_for;
  event.reason = judged.reason;
  const bool killed_this = killed_.has_value() && killed_->pid == record.pid &&
                           killed_->start_time == record.start_time;
  if (judged.verdict == HolderVerdict::kProven && killed_this) {
    // SIGKILL was sent; it is exiting (or stuck in the kernel).
    if (now - killed_->at < kAfterKillQuiet) return std::nullopt;
    event.reason = absl::StrCat("pid ", record.pid,
                                " was sent SIGKILL but has not exited (stuck "
                                "in the kernel?); the takeover waits");
  } else if (judged.verdict == HolderVerdict::kProven) {
    if (!config_.kill) {
      event.reason =
          absl::StrCat(judged.reason, "; kill_hung_holder is off: waiting");
    } else {
      const FenceToken fence = record.fence;
      const std::optional<uint64_t> seen = marker_seq_;
      const std::optional<Owner> owner = owner_;
      absl::Status killed =
          io_->Kill(static_cast<pid_t>(record.pid), record.start_time, [&] {
            if (by_owner) return OwnerStillHolds(*owner);
            return io_->ProbeInsideWrite(fence) == seen;
          });
      if (killed.ok()) {
        killed_ = Killed{record.pid, record.start_time, record.fence, now};
        event.kind = HungHolderEvent::Kind::kKilled;
        event.reason = absl::StrCat(judged.reason, "; sent SIGKILL");
        last_reason_ = event.reason;
        return event;
      }
      event.reason =
          absl::StrCat(judged.reason, "; not killed: ", killed.message());
    }
  } else if (killed_.has_value()) {
    // The killed holder is gone (or the record moved on), yet this wait
    // goes on: say so, once LMDB has had time to pass its lock on.
    if (now - killed_->at < kAfterKillQuiet) return std::nullopt;
    event.reason = absl::StrCat(
        "the takeover still waits after the kill of "
        "pid ",
        killed_->pid, " (grant ", killed_->fence, "): ", judged.reason);
    if (judged.verdict == HolderVerdict::kGone) {
      absl::StrAppend(&event.reason,
                      "; another process holds LMDB's writer lock");
    }
  }
  if (event.reason == last_reason_) return std::nullopt;  // reported already
  last_reason_ = event.reason;
  return event;
}

std::optional<absl::Duration> HolderWatch::TrackOwner(const LeaseRecord& record,
                                                      absl::Time now,
                                                      std::string* why) {
  std::optional<Owner> last = std::move(owner_);
  owner_.reset();
  const pid_t pid = static_cast<pid_t>(record.pid);
  if (pid <= 0) return std::nullopt;
  absl::StatusOr<std::optional<pid_t>> owner = io_->WriterLockOwner();
  if (!owner.ok()) {
    *why = absl::StrCat(
        "not marked, and the owner of LMDB's writer lock cannot be told (",
        owner.status().message(), ")");
    return std::nullopt;
  }
  if (!owner->has_value()) {
    *why = "not marked, and LMDB's writer lock is changing hands";
    return std::nullopt;
  }
  const pid_t tid = **owner;
  absl::StatusOr<ThreadRun> run = io_->ReadThreadRun(pid, tid);
  if (absl::IsNotFound(run.status())) {
    *why = absl::StrCat(
        "another process holds LMDB's writer lock (its owner, thread ", tid,
        ", is not one of the holder's; the holder waits behind it too)");
    return std::nullopt;
  }
  if (!run.ok()) {
    *why = absl::StrCat("not marked, and thread ", tid,
                        " owning LMDB's writer lock cannot be read (",
                        run.status().message(), ")");
    return std::nullopt;
  }
  if (run->on_cpu_ns == 0) {
    *why = absl::StrCat("not marked; its thread ", tid,
                        " owns LMDB's writer lock, but the scheduler's times "
                        "are unreadable (schedstat), so one hold is unproven");
    return std::nullopt;
  }
  if (run->state == 'R') {
    *why = absl::StrCat("not marked; its thread ", tid,
                        " owns LMDB's writer lock and is running");
    return std::nullopt;
  }
  // The same thread, not run at all since it was first seen owning the
  // mutex: it cannot have let go in between, so this is one hold.
  if (last.has_value() && last->fence == record.fence && last->pid == pid &&
      last->tid == tid && last->on_cpu_ns == run->on_cpu_ns) {
    owner_ = last;
  } else {
    owner_ = Owner{record.fence, pid, tid, run->on_cpu_ns, now};
  }
  return now - owner_->since;
}

bool HolderWatch::OwnerStillHolds(const Owner& owner) {
  absl::StatusOr<std::optional<pid_t>> now = io_->WriterLockOwner();
  if (!now.ok() || *now != std::optional<pid_t>(owner.tid)) return false;
  absl::StatusOr<ThreadRun> run = io_->ReadThreadRun(owner.pid, owner.tid);
  return run.ok() && run->state != 'R' && run->on_cpu_ns == owner.on_cpu_ns;
}

}  // namespace lmdb_internal
}  // namespace strongbox
