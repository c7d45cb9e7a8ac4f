#include "strongbox/lmdb_backend.h"

#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "lib/backend/batch.h"
#include "lib/backend/blocked_takeover_observers.h"
#include "lib/lmdb/environment.h"
#include "lib/lmdb/hung_holder.h"
#include "lib/lmdb/records.h"
#include "lib/lmdb/test_hooks.h"
#include "lib/util/mutex.h"
#include "lib/util/status_macros.h"

namespace strongbox {
namespace {

using lmdb_internal::DecodeFixed64;
using lmdb_internal::DecodeLease;
using lmdb_internal::DecodeRevision;
using lmdb_internal::EncodeEntryHeader;
using lmdb_internal::EncodeLease;
using lmdb_internal::Environment;
using lmdb_internal::FromVal;
using lmdb_internal::kEntryHeaderBytes;
using lmdb_internal::kLeaseKey;
using lmdb_internal::kRevisionKey;
using lmdb_internal::LeaseRecord;
using lmdb_internal::LmdbError;
using lmdb_internal::PutFixed64;
using lmdb_internal::ToVal;
using lmdb_internal::TxnGet;
using lmdb_internal::WriteTxn;

constexpr char kKernelBootIdPath[] = "/proc/sys/kernel/random/boot_id";

// Reads the boot id once; an error (not "") if it cannot be read, because
// two parties disagreeing on the boot take the lease from each other.
absl::StatusOr<std::string> ReadBootId(const std::string& path) {
  auto fail = [&](int err, absl::string_view what) {
    return absl::ErrnoToStatus(
        err, absl::StrCat("cannot ", what, " the boot id file ", path));
  };
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail(errno, "open");
  char buf[128];
  ssize_t n;
  do {
    n = read(fd, buf, sizeof(buf));
  } while (n < 0 && errno == EINTR);
  const int read_errno = errno;
  close(fd);
  if (n < 0) return fail(read_errno, "read");
  std::string id(absl::StripAsciiWhitespace(absl::string_view(buf, n)));
  if (id.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the boot id file ", path, " is empty"));
  }
  return id;
}

absl::Status ForkedChildError() {
  return absl::FailedPreconditionError(
      "this LmdbBackend was opened by another process (used after fork()); "
      "open the directory again in this process");
}

std::string LockName(FenceToken fence) {
  return absl::StrCat("lease-", fence, ".lock");
}

// Shared by a backend and the grants it hands out (a grant may briefly
// outlive a racing Release of its backend's last reference).
struct LeaseContext {
  std::shared_ptr<Environment> env;
  // The one clock: its Now() is the time the HA interface speaks
  // (deadlines, expiry() values); its MonotonicNow() (CLOCK_BOOTTIME for
  // the real clock) is the time since boot lease records are stamped and
  // judged by.
  Clock* clock = nullptr;
  std::string dir;
  // The directory, opened at Open: lease files are found through it, so a
  // relative `dir` keeps working after the host chdir()s.
  int dir_fd = -1;
  std::string boot_id;
  // This process, as grants record it: pid and start time (0 if /proc
  // could not tell; such a grant is never killed as hung).
  pid_t self_pid = 0;
  uint64_t self_start_time = 0;
  // This process's pid namespace (0 if unreadable: then its grants are
  // never killed, and it kills none).
  uint64_t self_pid_ns = 0;
  absl::Duration poll;
  // LmdbBackendOptions' hung-holder settings.
  bool kill_hung_holder = false;
  absl::Duration hung_holder_grace;
  HungHolderObserver* hung_holder_observer = nullptr;
  const lmdb_internal::TestHooks* hooks = nullptr;

  LeaseContext() = default;
  LeaseContext(const LeaseContext&) = delete;
  LeaseContext& operator=(const LeaseContext&) = delete;
  ~LeaseContext() {
    if (dir_fd >= 0) close(dir_fd);
  }

  // Time since boot as absl::UnixEpoch() + that duration, the form lease
  // records store. Never the wall clock, whatever `clock` is.
  absl::Time BootNow() const {
    return absl::UnixEpoch() + clock->MonotonicNow();
  }

  // Where the grant of `record` lapses, in boot time. A record written by
  // an older release carries wall-clock time: judge it by the wall clock.
  absl::Time BootExpiry(const LeaseRecord& record, absl::Time boot_now) const {
    if (record.expiry_clock == lmdb_internal::ExpiryClock::kBoot) {
      return record.expiry;
    }
    return boot_now + (record.expiry - clock->Now());
  }

  // A boot-time instant in the interface's clock.
  absl::Time ToInterfaceTime(absl::Time boot_time, absl::Time boot_now) const {
    return clock->Now() + (boot_time - boot_now);
  }

  // True while some open file description holds the lock of grant `fence`:
  // its holder process is alive. F_OFD_GETLK only tests; it takes nothing,
  // and OFD locks (unlike POSIX record locks) are not dropped when this
  // process closes another descriptor of the file.
  bool LockFileHeld(FenceToken fence) const {
    int fd = openat(dir_fd, LockName(fence).c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) {
      // No file: its holder never got past creating it, or it was cleaned
      // up after a takeover. Any other failure: assume alive, rely on TTL.
      return errno != ENOENT;
    }
    struct flock probe;
    std::memset(&probe, 0, sizeof(probe));
    probe.l_type = F_WRLCK;
    probe.l_whence = SEEK_SET;
    const bool held =
        fcntl(fd, F_OFD_GETLK, &probe) != 0 || probe.l_type != F_UNLCK;
    close(fd);
    return held;
  }

  // The sequence number of the write transaction whose "inside a write"
  // marker the holder of grant `fence` holds now (hung_holder.h); nullopt
  // if none, or no such file.
  std::optional<uint64_t> ProbeInsideWrite(FenceToken fence) const {
    int fd = openat(dir_fd, LockName(fence).c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) return std::nullopt;
    std::optional<uint64_t> seq = lmdb_internal::ProbeInsideWriteMarker(fd);
    close(fd);
    return seq;
  }

  // True if `record`'s grant is in force at `boot_now`: active, from this
  // boot, unexpired and its holder alive.
  bool InForce(const LeaseRecord& record, absl::Time boot_now) const {
    return record.active && record.boot_id == boot_id &&
           boot_now < BootExpiry(record, boot_now) &&
           LockFileHeld(record.fence);
  }

  // True if `fence` may write at `boot_now`. The lock-file probe is
  // skipped: the caller is the holder and, being alive, holds the file
  // lock.
  bool MayWrite(const std::optional<LeaseRecord>& record, FenceToken fence,
                absl::Time boot_now) const {
    return record.has_value() && record->active && record->fence == fence &&
           record->boot_id == boot_id &&
           boot_now < BootExpiry(*record, boot_now);
  }
};

absl::StatusOr<std::optional<LeaseRecord>> ReadLease(MDB_txn* txn,
                                                     MDB_dbi meta) {
  ASSIGN_OR_RETURN(std::optional<absl::string_view> bytes,
                   TxnGet(txn, meta, kLeaseKey));
  if (!bytes.has_value()) return std::optional<LeaseRecord>();
  absl::StatusOr<LeaseRecord> record = DecodeLease(*bytes);
  if (!record.ok()) return record.status();
  return std::optional<LeaseRecord>(*std::move(record));
}

absl::StatusOr<uint64_t> ReadRevision(MDB_txn* txn, MDB_dbi meta) {
  ASSIGN_OR_RETURN(std::optional<absl::string_view> bytes,
                   TxnGet(txn, meta, kRevisionKey));
  if (!bytes.has_value()) {
    return absl::DataLossError("the revision record is missing");
  }
  return DecodeRevision(*bytes);
}

// The OS lock a holder keeps on lease-<fence>.lock while it lives (byte 0),
// and the descriptor that carries its "inside a write" marker (registered
// with the environment; hung_holder.h). The file is named relative to the
// store's directory descriptor.
class LockFile {
 public:
  LockFile(int dir_fd, Environment* env) : dir_fd_(dir_fd), env_(env) {}
  ~LockFile() { Close(); }
  LockFile(const LockFile&) = delete;
  LockFile& operator=(const LockFile&) = delete;

  // Creates the file afresh and locks it. REQUIRES: inside a write
  // transaction (only grants create lock files, and only there), so no
  // one else creates or replaces `name` meanwhile.
  absl::Status Create(const std::string& name) {
    Close();
    unlinkat(dir_fd_, name.c_str(), 0);
    fd_ = openat(dir_fd_, name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC,
                 0644);
    if (fd_ < 0) {
      return absl::ErrnoToStatus(errno, absl::StrCat("creating ", name));
    }
    name_ = name;
    struct flock lock;
    std::memset(&lock, 0, sizeof(lock));
    lock.l_type = F_WRLCK;
    lock.l_whence = SEEK_SET;
    lock.l_start = lmdb_internal::kLivenessByte;
    lock.l_len = 1;  // the marker bytes stay free for the marker
    if (fcntl(fd_, F_OFD_SETLK, &lock) != 0) {
      absl::Status s =
          absl::ErrnoToStatus(errno, absl::StrCat("locking ", name));
      RemoveIfOurs();
      return s;
    }
    env_->AddWriteMarker(fd_);
    return absl::OkStatus();
  }

  // Deletes the file if the name still refers to the file this object
  // created, then drops the lock. Never unlinks a file someone else
  // created under the same name. REQUIRES: either inside a write
  // transaction, or the grant named by the file committed (no one else
  // creates that name any more); otherwise use Close().
  void RemoveIfOurs() {
    if (fd_ < 0) return;
    struct stat mine, named;
    if (fstat(fd_, &mine) == 0 &&
        fstatat(dir_fd_, name_.c_str(), &named, AT_SYMLINK_NOFOLLOW) == 0 &&
        mine.st_dev == named.st_dev && mine.st_ino == named.st_ino) {
      unlinkat(dir_fd_, name_.c_str(), 0);
    }
    Close();
  }

  // Drops this process's descriptor (and with it the lock, unless a
  // forked child still shares the open file description). Leaves the file.
  void Close() {
    if (fd_ < 0) return;
    if (env_->InForkedChild(/*by_pid=*/true)) {
      CloseInForkedChild();
      return;
    }
    env_->RemoveWriteMarker(fd_);
    close(fd_);
    fd_ = -1;
  }

  // In a forked child: drops the descriptor only. The marker registry is
  // the parent's (its lock may have been held by another parent thread at
  // fork time), and the open file description, with its locks, is shared
  // with the parent, who keeps them.
  void CloseInForkedChild() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

 private:
  const int dir_fd_;
  Environment* const env_;
  int fd_ = -1;
  std::string name_;
};

class LmdbGrant final : public LeadershipGrant {
 public:
  LmdbGrant(std::shared_ptr<LeaseContext> ctx, FenceToken fence,
            std::string holder, absl::Duration ttl, absl::Time boot_expiry,
            std::unique_ptr<LockFile> lock_file)
      : ctx_(std::move(ctx)),
        fence_(fence),
        holder_(std::move(holder)),
        ttl_(ttl),
        lock_file_(std::move(lock_file)),
        boot_expiry_(boot_expiry) {}

  ~LmdbGrant() override {
    if (ctx_->env->InForkedChild(/*by_pid=*/true)) {
      CloseInForkedChild();
      return;
    }
    Release().IgnoreError();
  }

  FenceToken fence() const override { return fence_; }
  std::string holder() const override { return holder_; }

  // Renew and Release serialize on op_mu_, which they hold across their
  // LMDB write (an fsync, or a wait for LMDB's writer lock while a peer is
  // stopped inside a write). mu_ guards only the grant's state and is
  // never held across LMDB, so Lost(), WaitLost() and expiry() never wait
  // behind a renewal.
  absl::Status Renew() override {
    if (ctx_->env->InForkedChild(/*by_pid=*/true)) return ForkedChildError();
    MutexLock op(&op_mu_);
    if (IsLost()) return LostError();
    absl::Time renewed;
    bool current = false;
    Environment& env = *ctx_->env;
    env.MaybeCheckReaders(ctx_->BootNow());
    absl::Status s = env.Write([&](WriteTxn& txn) -> absl::StatusOr<bool> {
      ASSIGN_OR_RETURN(std::optional<LeaseRecord> record,
                       ReadLease(txn.txn(), env.dbi()));
      const absl::Time now = ctx_->BootNow();
      current = ctx_->MayWrite(record, fence_, now);
      if (!current) return false;
      (record)->expiry = renewed = now + ttl_;
      (record)->expiry_clock = lmdb_internal::ExpiryClock::kBoot;
      (record)->version = lmdb_internal::kLeaseRecordV4;
      RETURN_IF_ERROR(txn.Put(env.dbi(), kLeaseKey, EncodeLease(*record)));
      const lmdb_internal::TestHooks* hooks = ctx_->hooks;
      if (hooks != nullptr && hooks->inside_renew) hooks->inside_renew();
      return true;
    });
    if (!s.ok()) {
      return absl::UnavailableError(
          absl::StrCat("renewing lease grant ", fence_, ": ", s.message()));
    }
    MutexLock lock(&mu_);
    if (!current) lost_ = true;
    // A grant once seen lost stays lost (Lost() may have seen it lapse
    // while the renewal waited for the writer lock).
    if (lost_) return LostError();
    boot_expiry_ = renewed;
    return absl::OkStatus();
  }

  absl::Status Release() override {
    if (ctx_->env->InForkedChild(/*by_pid=*/true)) return ForkedChildError();
    absl::Status s;
    {
      MutexLock op(&op_mu_);
      if (released_) return absl::OkStatus();
      Environment& env = *ctx_->env;
      s = env.Write([&](WriteTxn& txn) -> absl::StatusOr<bool> {
        ASSIGN_OR_RETURN(std::optional<LeaseRecord> record,
                         ReadLease(txn.txn(), env.dbi()));
        if (!record.has_value() || (record)->fence != fence_ ||
            !(record)->active) {
          return false;
        }
        (record)->active = false;
        RETURN_IF_ERROR(txn.Put(env.dbi(), kLeaseKey, EncodeLease(*record)));
        return true;
      });
      // Even if the record could not be updated, dropping the file lock
      // tells every contender this holder is gone. Grant `fence_`
      // committed, so no one else creates its file any more.
      lock_file_->RemoveIfOurs();
      released_ = true;
      MarkLost();
    }
    ctx_->env->Wake();
    return s;
  }

  absl::Time expiry() const override {
    if (ctx_->env->InForkedChild()) return absl::InfinitePast();
    absl::Time boot_expiry;
    {
      MutexLock lock(&mu_);
      boot_expiry = boot_expiry_;
    }
    return ctx_->ToInterfaceTime(boot_expiry, ctx_->BootNow());
  }

  bool Lost() override {
    if (ctx_->env->InForkedChild()) return true;
    return CheckLost();
  }

  bool WaitLost(absl::Time deadline) override {
    if (ctx_->env->InForkedChild()) return true;
    // The deadline is wall time; measure what is left of it on the
    // monotonic clock, so a wall-clock step does not stretch or cut it.
    const absl::Duration remaining = deadline - ctx_->clock->Now();
    const absl::Duration start = ctx_->clock->MonotonicNow();
    while (true) {
      if (CheckLost()) return true;
      if (ctx_->clock->MonotonicNow() - start >= remaining) return false;
      ctx_->env->WaitForWake(ctx_->poll);
    }
  }

 private:
  absl::Status LostError() const {
    return absl::FailedPreconditionError(
        absl::StrCat("lease grant ", fence_, " is lost"));
  }

  bool IsLost() const {
    MutexLock lock(&mu_);
    return lost_;
  }

  void MarkLost() {
    MutexLock lock(&mu_);
    lost_ = true;
  }

  // The grant is the parent's: drop only this process's descriptor of its
  // lock file (the parent's lock stays), and touch neither LMDB nor the
  // file. No lock: the child has one thread, and op_mu_ may have been held
  // by another thread of the parent at fork() time.
  void CloseInForkedChild() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    lock_file_->CloseInForkedChild();
  }

  // Reads the record without holding mu_ (a read transaction never waits
  // for writers); takes mu_ only to copy and update the state.
  bool CheckLost() {
    absl::Time boot_expiry;
    {
      MutexLock lock(&mu_);
      if (lost_) return true;
      boot_expiry = boot_expiry_;
    }
    const absl::Time now = ctx_->BootNow();
    if (now >= boot_expiry) {
      MarkLost();
      return true;
    }
    Environment& env = *ctx_->env;
    env.MaybeCheckReaders(now);
    std::optional<LeaseRecord> seen;
    absl::Status s = env.Read([&](MDB_txn* txn) -> absl::Status {
      absl::StatusOr<std::optional<LeaseRecord>> record =
          ReadLease(txn, env.dbi());
      if (!record.ok()) return record.status();
      seen = *std::move(record);
      return absl::OkStatus();
    });
    // An unreadable record proves nothing; boot_expiry_ still bounds the
    // grant. A record that no longer names this grant never will again
    // (fences only grow), so a stale snapshot cannot mark it lost wrongly.
    if (s.ok() && !ctx_->MayWrite(seen, fence_, now)) {
      MarkLost();
      return true;
    }
    return IsLost();
  }

  const std::shared_ptr<LeaseContext> ctx_;
  const FenceToken fence_;
  const std::string holder_;
  const absl::Duration ttl_;

  // Serializes Renew and Release; held across their LMDB writes.
  Mutex op_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  std::unique_ptr<LockFile> lock_file_ ABSL_GUARDED_BY(op_mu_);
  bool released_ ABSL_GUARDED_BY(op_mu_) = false;

  // Never held across LMDB calls.
  mutable Mutex mu_;
  bool lost_ ABSL_GUARDED_BY(mu_) = false;
  // When the grant lapses, in boot time (LeaseContext::BootNow).
  absl::Time boot_expiry_ ABSL_GUARDED_BY(mu_);
};

class LmdbBackendImpl final : public LmdbBackend, public HaBackend {
 public:
  LmdbBackendImpl(std::string dir, std::shared_ptr<LeaseContext> ctx,
                  const BackendLimits& limits)
      : dir_(std::move(dir)),
        ctx_(std::move(ctx)),
        env_(*ctx_->env),
        clock_(ctx_->clock),
        limits_(limits) {}

  Environment& env() { return env_; }

  absl::StatusOr<Entry> Get(absl::string_view key) override {
    absl::StatusOr<Entry> entry(absl::in_place);
    if (absl::Status s = GetInto(key, &*entry); !s.ok()) entry = std::move(s);
    return entry;
  }

  absl::Status GetInto(absl::string_view key, Entry* out) override {
    if (env_.InForkedChild()) return ForkedChildError();
    RETURN_IF_ERROR(ValidateKey(key, limits_));
    Entry& entry = *out;
    absl::Status s = env_.Read([&](MDB_txn* txn) -> absl::Status {
      MDB_val k = ToVal(key);
      MDB_val v;
      int rc = mdb_get(txn, env_.dbi(), &k, &v);
      if (rc == MDB_NOTFOUND) {
        return absl::NotFoundError(absl::StrCat("no entry at ", key));
      }
      if (rc != MDB_SUCCESS) return LmdbError(rc, "reading an entry");
      if (v.mv_size < kEntryHeaderBytes) {
        return absl::DataLossError(
            absl::StrCat("the record at ", key, " is corrupt"));
      }
      const char* data = static_cast<const char*>(v.mv_data);
      entry.version = DecodeFixed64(data);
      entry.value.assign(data + kEntryHeaderBytes,
                         v.mv_size - kEntryHeaderBytes);
      return absl::OkStatus();
    });
    return s;
  }

  absl::StatusOr<std::vector<std::string>> List(
      absl::string_view prefix) override {
    if (env_.InForkedChild()) return ForkedChildError();
    RETURN_IF_ERROR(ValidatePrefix(prefix, limits_));
    std::vector<std::string> children;
    absl::Status s = env_.Read([&](MDB_txn* txn) -> absl::Status {
      MDB_cursor* cursor = nullptr;
      int rc = mdb_cursor_open(txn, env_.dbi(), &cursor);
      if (rc != MDB_SUCCESS) return LmdbError(rc, "listing");
      // The store's own records sort before every entry: seek past them.
      std::string seek(prefix.empty() ? lmdb_internal::kFirstEntryKey : prefix);
      MDB_val k = ToVal(seek);
      MDB_val v;
      rc = mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE);
      while (rc == MDB_SUCCESS) {
        absl::string_view key = FromVal(k);
        if (!absl::StartsWith(key, prefix)) break;
        absl::string_view rest = key.substr(prefix.size());
        size_t slash = rest.find('/');
        if (slash == absl::string_view::npos) {
          children.emplace_back(rest);
          rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT);
        } else {
          children.emplace_back(rest.substr(0, slash + 1));
          // Skip every key under this folder: '0' is the byte after '/'.
          seek = absl::StrCat(prefix, rest.substr(0, slash), "0");
          k = ToVal(seek);
          rc = mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE);
        }
      }
      mdb_cursor_close(cursor);
      if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) {
        return LmdbError(rc, "listing");
      }
      return absl::OkStatus();
    });
    if (!s.ok()) return s;
    // Bytewise order already; a folder "a/" sorts as "a/" among keys.
    std::sort(children.begin(), children.end());
    return children;
  }

  absl::StatusOr<uint64_t> Commit(absl::Span<const WriteOp> ops,
                                  FenceToken fence) override {
    // getpid() is a system call: paid only where a fence could be shared.
    if (env_.InForkedChild(/*by_pid=*/fence != kNoFence)) {
      return ForkedChildError();
    }
    RETURN_IF_ERROR(ValidateBatch(ops, limits_));
    env_.MaybeCheckReaders(ctx_->BootNow());
    uint64_t revision = 0;
    absl::Status s = env_.Write([&](WriteTxn& txn) -> absl::StatusOr<bool> {
      if (fence != kNoFence) {
        ASSIGN_OR_RETURN(std::optional<LeaseRecord> record,
                         ReadLease(txn.txn(), env_.dbi()));
        if (!ctx_->MayWrite(record, fence, ctx_->BootNow())) {
          return StaleFenceError(fence);
        }
      }
      for (const WriteOp& op : ops) {
        if (op.expect == WriteOp::Expect::kAnything) continue;
        ASSIGN_OR_RETURN(std::optional<absl::string_view> bytes,
                         TxnGet(txn.txn(), env_.dbi(), op.key));
        std::optional<uint64_t> version;
        if (bytes.has_value()) {
          if ((bytes)->size() < kEntryHeaderBytes) {
            return absl::DataLossError(
                absl::StrCat("the record at ", op.key, " is corrupt"));
          }
          version = DecodeFixed64((bytes)->data());
        }
        RETURN_IF_ERROR(CheckPrecondition(op, version));
      }
      ASSIGN_OR_RETURN(uint64_t current, ReadRevision(txn.txn(), env_.dbi()));
      revision = current;
      if (!HasWrites(ops)) return false;
      ++revision;
      for (const WriteOp& op : ops) {
        if (op.kind == WriteOp::Kind::kPut) {
          ASSIGN_OR_RETURN(char* out,
                           txn.Reserve(env_.dbi(), op.key,
                                       kEntryHeaderBytes + op.value.size()));
          EncodeEntryHeader(revision, out);
          std::memcpy(out + kEntryHeaderBytes, op.value.data(),
                      op.value.size());
        } else if (op.kind == WriteOp::Kind::kDelete) {
          RETURN_IF_ERROR(txn.Delete(env_.dbi(), op.key));
        }
      }
      std::string bytes;
      PutFixed64(&bytes, revision);
      RETURN_IF_ERROR(txn.Put(env_.dbi(), kRevisionKey, bytes));
      if (ctx_->hooks != nullptr && ctx_->hooks->inside_commit) {
        ctx_->hooks->inside_commit(fence);
      }
      return true;
    });
    if (!s.ok()) return s;
    return revision;
  }

  absl::StatusOr<uint64_t> Revision() override {
    if (env_.InForkedChild()) return ForkedChildError();
    uint64_t revision = 0;
    absl::Status s = env_.Read([&](MDB_txn* txn) -> absl::Status {
      ASSIGN_OR_RETURN(uint64_t r, ReadRevision(txn, env_.dbi()));
      revision = r;
      return absl::OkStatus();
    });
    if (!s.ok()) return s;
    return revision;
  }

  HaBackend* ha() override { return this; }
  BackendLimits limits() const override { return limits_; }

  absl::Status Sync() override {
    if (env_.InForkedChild(/*by_pid=*/true)) return ForkedChildError();
    return env_.Sync();
  }
  const std::string& dir() const override { return dir_; }

  HungHolderStatus hung_holder_status() override {
    MutexLock lock(&status_mu_);
    return status_;
  }

  // The same, backend-neutral (HaBackend), for coordinators.
  void AddBlockedTakeoverObserver(BlockedTakeoverObserver* observer) override {
    takeover_observers_.Add(observer);
  }
  void RemoveBlockedTakeoverObserver(
      BlockedTakeoverObserver* observer) override {
    takeover_observers_.Remove(observer);
  }
  BlockedTakeoverStatus blocked_takeover_status() override {
    const HungHolderStatus hung = hung_holder_status();
    BlockedTakeoverStatus out;
    if (hung.waiting.has_value())
      out.waiting = AsBlockedTakeover(*hung.waiting);
    if (hung.last_kill.has_value()) {
      out.last_kill = AsBlockedTakeover(*hung.last_kill);
    }
    out.kills = hung.kills;
    return out;
  }
  static BlockedTakeoverEvent AsBlockedTakeover(const HungHolderEvent& e) {
    BlockedTakeoverEvent out;
    out.kind = e.kind == HungHolderEvent::Kind::kKilled
                   ? BlockedTakeoverEvent::Kind::kHolderKilled
                   : BlockedTakeoverEvent::Kind::kWaiting;
    out.fence = e.fence;
    out.holder = e.holder;
    out.pid = e.pid;
    out.expired_for = e.expired_for;
    out.reason = e.reason;
    return out;
  }

  absl::StatusOr<std::unique_ptr<LeadershipGrant>> Acquire(
      const AcquireOptions& options) override {
    if (env_.InForkedChild(/*by_pid=*/true)) return ForkedChildError();
    if (options.holder.empty()) {
      return absl::InvalidArgumentError("lease holder value is empty");
    }
    if (options.ttl <= absl::ZeroDuration()) {
      return absl::InvalidArgumentError("lease TTL must be positive");
    }
    // The deadline is wall time; measure what is left of it on the
    // monotonic clock, so a wall-clock step back does not keep a standby
    // blocked here for the length of the step.
    const absl::Duration remaining = options.deadline - clock_->Now();
    const absl::Duration start = clock_->MonotonicNow();
    while (true) {
      if (options.cancel != nullptr && options.cancel->cancelled()) {
        return absl::CancelledError("lease acquire cancelled");
      }
      const absl::Time boot_now = ctx_->BootNow();
      env_.MaybeCheckReaders(boot_now);
      // Look first in a read transaction, so waiting contenders never
      // take the writer lock from the holder's writes.
      ASSIGN_OR_RETURN(std::optional<LeaseRecord> seen, ReadLeaseNow());
      if (!seen.has_value() || !ctx_->InForce(*seen, boot_now)) {
        absl::StatusOr<std::unique_ptr<LeadershipGrant>> grant =
            TryGrant(options, seen);
        if (!grant.ok() || *grant != nullptr) return grant;
      }
      if (clock_->MonotonicNow() - start >= remaining) {
        return absl::DeadlineExceededError(
            "lease is held by another node past the acquire deadline");
      }
      if (ctx_->hooks != nullptr && ctx_->hooks->before_acquire_wait) {
        ctx_->hooks->before_acquire_wait();
      }
      env_.WaitForWake(ctx_->poll);
    }
  }

  absl::StatusOr<std::optional<LeaseHolder>> CurrentHolder() override {
    if (env_.InForkedChild(/*by_pid=*/true)) return ForkedChildError();
    const absl::Time boot_now = ctx_->BootNow();
    env_.MaybeCheckReaders(boot_now);
    ASSIGN_OR_RETURN(std::optional<LeaseRecord> record, ReadLeaseNow());
    if (!record.has_value() || !ctx_->InForce(*record, boot_now)) {
      return std::optional<LeaseHolder>();
    }
    return std::optional<LeaseHolder>(LeaseHolder{
        (record)->holder, (record)->fence,
        ctx_->ToInterfaceTime(ctx_->BootExpiry(*record, boot_now), boot_now)});
  }

  absl::Status BreakLease(FenceToken fence) override {
    if (env_.InForkedChild(/*by_pid=*/true)) return ForkedChildError();
    absl::Status s = env_.Write([&](WriteTxn& txn) -> absl::StatusOr<bool> {
      ASSIGN_OR_RETURN(std::optional<LeaseRecord> record,
                       ReadLease(txn.txn(), env_.dbi()));
      if (!record.has_value() || !(record)->active ||
          (record)->fence != fence) {
        return false;
      }
      (record)->active = false;
      RETURN_IF_ERROR(txn.Put(env_.dbi(), kLeaseKey, EncodeLease(*record)));
      return true;
    });
    env_.Wake();
    return s;
  }

 private:
  // How often a watchdog looks at a grant attempt blocked on the writer
  // lock. Bounds the takeover time after the grace.
  static constexpr absl::Duration kWatchdogStep = absl::Milliseconds(10);

  // The watch's view of the world: /proc, the lock files, the kill.
  class RealWatchIo : public lmdb_internal::HolderWatchIo {
   public:
    explicit RealWatchIo(const LeaseContext* ctx) : ctx_(ctx) {}
    absl::StatusOr<uint64_t> ReadStartTime(pid_t pid) override {
      return lmdb_internal::ReadProcessStartTime(pid, "/proc");
    }
    std::optional<uint64_t> ProbeInsideWrite(FenceToken fence) override {
      return ctx_->ProbeInsideWrite(fence);
    }
    absl::Status Kill(pid_t pid, uint64_t start_time,
                      absl::FunctionRef<bool()> still_hung) override {
      return lmdb_internal::KillIfSameProcess(pid, start_time, "/proc",
                                              still_hung);
    }
    absl::StatusOr<std::optional<pid_t>> WriterLockOwner() override {
      return ctx_->env->WriterLockOwner();
    }
    absl::StatusOr<lmdb_internal::ThreadRun> ReadThreadRun(pid_t pid,
                                                           pid_t tid) override {
      return lmdb_internal::ReadThreadRun(pid, tid, "/proc");
    }

   private:
    const LeaseContext* const ctx_;
  };

  // Watches one grant attempt's wait for LMDB's writer lock (the header's
  // "A holder hung inside a write"): every kWatchdogStep it reads the grant
  // record and lets a HolderWatch judge it (and kill a proven hung holder),
  // and reports what the watch says. Ends at Disarm() (the write
  // transaction began) or destruction.
  class BeginWatchdog {
   public:
    // `seen`: the record the grant attempt acted on, the watch's record
    // until a read succeeds.
    BeginWatchdog(LmdbBackendImpl* backend, const LeaseRecord& seen)
        : backend_(backend),
          io_(backend->ctx_.get()),
          watch_(backend->WatchConfig(), &io_, backend->ctx_->BootNow()),
          record_(seen),
          thread_([this] { Run(); }) {}
    ~BeginWatchdog() {
      Disarm();
      thread_.join();
    }
    BeginWatchdog(const BeginWatchdog&) = delete;
    BeginWatchdog& operator=(const BeginWatchdog&) = delete;

    void Disarm() {
      {
        MutexLock lock(&mu_);
        done_ = true;
      }
      mu_.SignalAll();
    }

   private:
    void Run() {
      while (true) {
        {
          MutexLock lock(&mu_);
          if (mu_.AwaitWithTimeout(
                  [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return done_; },
                  kWatchdogStep)) {
            break;
          }
        }
        Look();
      }
      backend_->EndWatch(this);
    }

    void Look() {
      // Never adopts a grown map: the grant attempt this watches holds the
      // remap lock shared while it waits, so adopting (exclusive) would wait
      // for the very hang being watched. A record that cannot be read now
      // is judged as last read: only the holder's grant can have changed it
      // meanwhile, and the kill still needs that holder inside one write for
      // the whole grace, and its pinned identity.
      absl::StatusOr<std::optional<LeaseRecord>> read =
          backend_->ReadLeaseNow(/*adopt_map=*/false);
      if (read.ok() && read->has_value()) record_ = **read;
      const absl::Time now = backend_->ctx_->BootNow();
      std::optional<HungHolderEvent> event =
          watch_.Look(record_, backend_->ctx_->BootExpiry(record_, now), now);
      if (event.has_value()) backend_->Report(this, *event);
    }

    LmdbBackendImpl* const backend_;
    RealWatchIo io_;
    lmdb_internal::HolderWatch watch_;  // used by the thread only
    LeaseRecord record_;                // used by the thread only
    Mutex mu_;
    bool done_ ABSL_GUARDED_BY(mu_) = false;
    std::thread thread_;  // last: starts once the rest is built
  };

  lmdb_internal::HolderWatchConfig WatchConfig() const {
    lmdb_internal::HolderWatchConfig config;
    config.self.boot_id = ctx_->boot_id;
    config.self.pid = ctx_->self_pid;
    config.self.pid_ns = ctx_->self_pid_ns;
    config.grace = ctx_->hung_holder_grace;
    config.kill = ctx_->kill_hung_holder;
    return config;
  }

  // Puts a watchdog's event in the status and tells the observer.
  void Report(const BeginWatchdog* watchdog, const HungHolderEvent& event) {
    {
      MutexLock lock(&status_mu_);
      if (event.kind == HungHolderEvent::Kind::kKilled) {
        status_.last_kill = event;
        ++status_.kills;
        if (waiting_owner_ == watchdog) {
          status_.waiting.reset();
          waiting_owner_ = nullptr;
        }
      } else {
        status_.waiting = event;
        waiting_owner_ = watchdog;
      }
    }
    if (ctx_->hung_holder_observer != nullptr) {
      ctx_->hung_holder_observer->OnHungHolder(event);
    }
    takeover_observers_.Notify(AsBlockedTakeover(event));
  }

  // A watchdog ends: the wait it reported (if any) is over.
  void EndWatch(const BeginWatchdog* watchdog) {
    MutexLock lock(&status_mu_);
    if (waiting_owner_ == watchdog) {
      status_.waiting.reset();
      waiting_owner_ = nullptr;
    }
  }

  // `adopt_map`: Environment::Read's.
  absl::StatusOr<std::optional<LeaseRecord>> ReadLeaseNow(
      bool adopt_map = true) {
    std::optional<LeaseRecord> seen;
    absl::Status s = env_.Read(
        [&](MDB_txn* txn) -> absl::Status {
          absl::StatusOr<std::optional<LeaseRecord>> record =
              ReadLease(txn, env_.dbi());
          if (!record.ok()) return record.status();
          seen = *std::move(record);
          return absl::OkStatus();
        },
        adopt_map);
    if (!s.ok()) return s;
    return seen;
  }

  // One attempt inside a write transaction: grants the lease if it is
  // free, else returns nullptr. The new holder's lock file is created and
  // locked before the record naming it commits, so no contender can ever
  // see the record without the lock.
  // `seen` is the record as last read: if it names an active grant, a
  // watchdog watches for its holder hanging inside a write meanwhile.
  absl::StatusOr<std::unique_ptr<LeadershipGrant>> TryGrant(
      const AcquireOptions& options, const std::optional<LeaseRecord>& seen) {
    const lmdb_internal::TestHooks* hooks = ctx_->hooks;
    auto lock_file = std::make_unique<LockFile>(ctx_->dir_fd, &env_);
    LeaseRecord granted;
    FenceToken previous = kNoFence;
    bool free = false;
    std::optional<BeginWatchdog> watchdog;
    if (seen.has_value() && seen->active) watchdog.emplace(this, *seen);
    absl::Status s = env_.Write([&](WriteTxn& txn) -> absl::StatusOr<bool> {
      if (watchdog.has_value()) watchdog->Disarm();
      absl::StatusOr<bool> wrote =
          WriteGrant(txn, options, &granted, &previous, &free, *lock_file);
      // Still under LMDB's writer lock, so no one else can be creating
      // this lock file: removing it now is safe. Once the transaction
      // has ended it is not (see below).
      if (!wrote.ok() || !*wrote) lock_file->RemoveIfOurs();
      return wrote;
    });
    if (!s.ok()) {
      if (hooks != nullptr && hooks->after_failed_grant) {
        hooks->after_failed_grant();
      }
      // If the commit itself failed, the file is still there, but the
      // writer lock is gone: another process may have been granted the
      // same fence and created its own file under this name, so never
      // unlink by path here. An unlocked leftover is harmless: the
      // record does not name it, and the next grant of this fence
      // replaces it.
      lock_file->Close();
      return s;
    }
    if (!free) return std::unique_ptr<LeadershipGrant>();
    // The previous holder is gone or deposed: its lock file is litter now
    // (a hung holder keeps its descriptor; unlinking does not disturb it).
    // Its grant committed before ours, so no one creates that name again.
    if (previous != kNoFence) {
      unlinkat(ctx_->dir_fd, LockName(previous).c_str(), 0);
    }
    auto grant = std::make_unique<LmdbGrant>(
        ctx_, granted.fence, granted.holder, granted.ttl, granted.expiry,
        std::move(lock_file));
    if (env_.durability() != LmdbBackendOptions::Durability::kSynced) {
      // Without a synced grant, a power loss could roll the record back
      // and the same fence be issued again, to another holder. So a grant
      // is durable before its fence is handed out, whatever the
      // durability of data commits.
      absl::Status synced = env_.Sync();
      if (!synced.ok()) {
        grant->Release().IgnoreError();
        return absl::UnavailableError(
            absl::StrCat("lease grant ", granted.fence,
                         " could not be made durable: ", synced.message()));
      }
    }
    return std::unique_ptr<LeadershipGrant>(std::move(grant));
  }

  // The body of TryGrant's write transaction: true if it granted (and
  // created `lock_file`), false if the lease is held.
  absl::StatusOr<bool> WriteGrant(WriteTxn& txn, const AcquireOptions& options,
                                  LeaseRecord* granted, FenceToken* previous,
                                  bool* free, LockFile& lock_file) {
    ASSIGN_OR_RETURN(std::optional<LeaseRecord> record,
                     ReadLease(txn.txn(), env_.dbi()));
    const absl::Time now = ctx_->BootNow();
    *free = !record.has_value() || !ctx_->InForce(*record, now);
    if (!*free) return false;
    *previous = record.has_value() ? (record)->fence : kNoFence;
    granted->expiry_clock = lmdb_internal::ExpiryClock::kBoot;
    granted->active = true;
    granted->fence = *previous + 1;
    granted->expiry = now + options.ttl;
    granted->ttl = options.ttl;
    granted->version = lmdb_internal::kLeaseRecordV4;
    granted->pid = static_cast<uint32_t>(getpid());
    const lmdb_internal::TestHooks* test = ctx_->hooks;
    granted->start_time = test != nullptr && test->grant_start_time != 0
                              ? test->grant_start_time
                              : ctx_->self_start_time;
    granted->pid_ns = test != nullptr && test->grant_pid_ns != 0
                          ? test->grant_pid_ns
                          : ctx_->self_pid_ns;
    granted->boot_id = ctx_->boot_id;
    granted->holder = options.holder;
    RETURN_IF_ERROR(lock_file.Create(LockName(granted->fence)));
    RETURN_IF_ERROR(txn.Put(env_.dbi(), kLeaseKey, EncodeLease(*granted)));
    const lmdb_internal::TestHooks* hooks = ctx_->hooks;
    if (hooks != nullptr && hooks->inside_grant) {
      RETURN_IF_ERROR(hooks->inside_grant());
    }
    return true;
  }

  // Constant after construction.
  const std::string dir_;
  const std::shared_ptr<LeaseContext> ctx_;
  Environment& env_;
  Clock* const clock_;
  const BackendLimits limits_;

  // Coordinators hearing of hung holders (HaBackend).
  BlockedTakeoverObservers takeover_observers_;
  Mutex status_mu_;
  HungHolderStatus status_ ABSL_GUARDED_BY(status_mu_);
  // The watchdog whose wait status_.waiting reports (identity only).
  const void* waiting_owner_ ABSL_GUARDED_BY(status_mu_) = nullptr;
};

}  // namespace

namespace {

absl::StatusOr<std::unique_ptr<LmdbBackend>> OpenBackend(
    const std::string& dir, const LmdbBackendOptions& options,
    const lmdb_internal::TestHooks* hooks) {
  if (dir.empty()) {
    return absl::InvalidArgumentError("LMDB directory path is empty");
  }
  // MDB_MAXKEYSIZE of Debian's liblmdb (the default build).
  constexpr size_t kLmdbMaxKeyBytes = 511;
  if (options.limits.max_key_bytes == 0 ||
      options.limits.max_key_bytes > kLmdbMaxKeyBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("limits.max_key_bytes must be in 1..511 (LMDB's key "
                     "limit); got ",
                     options.limits.max_key_bytes));
  }
  if (options.initial_map_bytes < (size_t{1} << 20) ||
      options.max_map_bytes < options.initial_map_bytes) {
    return absl::InvalidArgumentError(
        "initial_map_bytes must be at least 1 MiB and at most max_map_bytes");
  }
  if (options.poll_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("poll_interval must be positive");
  }
  if (options.max_readers == 0) {
    return absl::InvalidArgumentError("max_readers must be positive");
  }
  if (options.hung_holder_grace < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("hung_holder_grace must not be negative");
  }
  auto ctx = std::make_shared<LeaseContext>();
  ctx->hooks = hooks;
  if (!options.boot_id.empty()) {
    ctx->boot_id = options.boot_id;
  } else {
    absl::StatusOr<std::string> boot_id =
        ReadBootId(hooks != nullptr && !hooks->boot_id_path.empty()
                       ? hooks->boot_id_path
                       : std::string(kKernelBootIdPath));
    if (!boot_id.ok()) return boot_id.status();
    ctx->boot_id = *std::move(boot_id);
  }
  absl::StatusOr<std::shared_ptr<Environment>> env =
      Environment::OpenShared(dir, options);
  if (!env.ok()) return env.status();
  ctx->env = *std::move(env);
  if (hooks != nullptr && hooks->after_write_begin) {
    ctx->env->SetAfterWriteBeginHook(&hooks->after_write_begin);
  }
  ctx->clock = options.clock != nullptr ? options.clock : RealClock();
  if (options.kill_hung_holder) {
    // Expiry and blocked time decide a kill: they must be boot time, the
    // same in every process of this boot, not a host clock's own origin.
    struct timespec boot;
    clock_gettime(CLOCK_BOOTTIME, &boot);
    const absl::Duration skew =
        ctx->clock->MonotonicNow() - absl::DurationFromTimespec(boot);
    if (absl::AbsDuration(skew) > absl::Seconds(1)) {
      return absl::InvalidArgumentError(
          "kill_hung_holder needs a clock whose MonotonicNow() reads "
          "CLOCK_BOOTTIME (the real clock does)");
    }
  }
  // Slots of readers that died since anyone last looked.
  ctx->env->CheckReadersAt(ctx->BootNow());
  ctx->dir_fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (ctx->dir_fd < 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("cannot open ", dir));
  }
  struct stat st;
  if (fstat(ctx->dir_fd, &st) != 0 ||
      std::make_pair(st.st_dev, st.st_ino) != ctx->env->id()) {
    return absl::FailedPreconditionError(
        absl::StrCat(dir, " was replaced while it was being opened"));
  }
  ctx->dir = dir;
  ctx->poll = options.poll_interval;
  ctx->self_pid = getpid();
  absl::StatusOr<uint64_t> start_time =
      lmdb_internal::ReadProcessStartTime(ctx->self_pid, "/proc");
  ctx->self_start_time = start_time.ok() ? *start_time : 0;
  absl::StatusOr<uint64_t> pid_ns = lmdb_internal::ReadOwnPidNamespace("/proc");
  ctx->self_pid_ns = pid_ns.ok() ? *pid_ns : 0;
  ctx->kill_hung_holder = options.kill_hung_holder;
  ctx->hung_holder_grace = options.hung_holder_grace;
  ctx->hung_holder_observer = options.hung_holder_observer;
  return std::unique_ptr<LmdbBackend>(
      new LmdbBackendImpl(dir, std::move(ctx), options.limits));
}

}  // namespace

absl::StatusOr<std::unique_ptr<LmdbBackend>> LmdbBackend::Open(
    const std::string& dir, const LmdbBackendOptions& options) {
  return OpenBackend(dir, options, nullptr);
}

namespace lmdb_internal {

absl::StatusOr<std::unique_ptr<LmdbBackend>> OpenWithTestHooks(
    const std::string& dir, const LmdbBackendOptions& options,
    const TestHooks* hooks) {
  return OpenBackend(dir, options, hooks);
}

uint64_t SyncCount(LmdbBackend& backend) {
  return static_cast<LmdbBackendImpl&>(backend).env().syncs();
}

uint64_t ReadersCleared(LmdbBackend& backend) {
  return static_cast<LmdbBackendImpl&>(backend).env().readers_cleared();
}

}  // namespace lmdb_internal
}  // namespace strongbox
