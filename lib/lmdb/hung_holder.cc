#include "lib/lmdb/hung_holder.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace strongbox {
namespace lmdb_internal {

absl::StatusOr<uint64_t> ReadProcessStartTime(pid_t pid,
                                              const std::string &proc_root) {
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
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      const int err = errno;
      close(fd);
      // A process that exits between open and read.
      if (err == ESRCH) {
        return absl::NotFoundError(absl::StrCat("no process ", pid));
      }
      return absl::ErrnoToStatus(err, absl::StrCat("cannot read ", path));
    }
    if (n == 0)
      break;
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

HolderJudgement JudgeHolder(
    const LeaseRecord &record, absl::Time boot_expiry, absl::Time boot_now,
    absl::Duration blocked_for, absl::Duration grace,
    const std::string &boot_id, pid_t self_pid,
    absl::FunctionRef<absl::StatusOr<uint64_t>(pid_t)> read_start_time) {
  HolderJudgement j;
  if (!record.active) {
    j.verdict = HolderVerdict::kNoHolder;
    j.reason = "the lease has no active grant";
    return j;
  }
  // Never less than the grant's TTL: a renewal that began before the
  // expiry ends within a TTL of it, so a grant expired by a TTL can no
  // longer come back to life under a commit that was merely slow.
  if (grace < record.ttl)
    grace = record.ttl;
  if (blocked_for < grace)
    return j; // kLive: not blocked long enough
  if (record.boot_id != boot_id) {
    j.verdict = HolderVerdict::kOtherBoot;
    j.reason = absl::StrCat("grant ", record.fence,
                            " was made during another boot; its holder is "
                            "gone (not killed)");
    return j;
  }
  j.expired_for = boot_now - boot_expiry;
  // Never a live grant, nor one expired for less than the grace.
  if (j.expired_for < grace)
    return j;
  const pid_t pid = static_cast<pid_t>(record.pid);
  if (pid <= 0) {
    j.verdict = HolderVerdict::kUnknownIdentity;
    j.reason = absl::StrCat("grant ", record.fence, " names no process");
    return j;
  }
  if (pid == self_pid) {
    j.verdict = HolderVerdict::kSelf;
    j.reason = absl::StrCat("grant ", record.fence, " names this process (pid ",
                            pid, "); not killed");
    return j;
  }
  if (record.start_time == 0) {
    j.verdict = HolderVerdict::kUnknownIdentity;
    j.reason = absl::StrCat("grant ", record.fence, " (pid ", pid,
                            ") records no process start time (written by an "
                            "older release); identity unproven, not killed");
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
  j.verdict = HolderVerdict::kProven;
  j.reason = absl::StrCat("grant ", record.fence,
                          " has expired and its holder, pid ", pid,
                          " (same boot, same start time), still blocks the "
                          "writer lock: hung inside a write");
  return j;
}

absl::Status KillIfSameProcess(pid_t pid, uint64_t start_time,
                               const std::string &proc_root) {
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
    if (pidfd >= 0)
      close(pidfd);
    if (!now_start.ok())
      return now_start.status();
    return absl::FailedPreconditionError(
        absl::StrCat("pid ", pid, " now belongs to another process"));
  }
  const int rc = static_cast<int>(
      syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0));
  const int err = errno;
  close(pidfd);
  errno = err;
  if (rc != 0) {
    if (errno == ESRCH) {
      return absl::NotFoundError(absl::StrCat("no process ", pid));
    }
    return absl::ErrnoToStatus(errno, absl::StrCat("cannot kill pid ", pid));
  }
  return absl::OkStatus();
}

} // namespace lmdb_internal
} // namespace strongbox
