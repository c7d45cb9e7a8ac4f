#include "strongbox/lmdb_backend.h"

#include <fcntl.h>
#include <lmdb.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "lib/backend/batch.h"
#include "lib/lmdb/environment.h"
#include "lib/lmdb/records.h"
#include "lib/util/mutex.h"

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

std::string ReadBootId() {
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string id;
  std::getline(in, id);
  return std::string(absl::StripAsciiWhitespace(id));
}

// Shared by a backend and the grants it hands out (a grant may briefly
// outlive a racing Release of its backend's last reference).
struct LeaseContext {
  std::shared_ptr<Environment> env;
  Clock* clock;
  std::string dir;
  std::string boot_id;
  absl::Duration poll;

  std::string LockPath(FenceToken fence) const {
    return absl::StrCat(dir, "/lease-", fence, ".lock");
  }

  // True while some open file description holds the lock of grant `fence`:
  // its holder process is alive. F_OFD_GETLK only tests; it takes nothing,
  // and OFD locks (unlike POSIX record locks) are not dropped when this
  // process closes another descriptor of the file.
  bool LockFileHeld(FenceToken fence) const {
    int fd = open(LockPath(fence).c_str(), O_RDWR | O_CLOEXEC);
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

  // True if `record`'s grant is in force at `now`: active, from this boot,
  // unexpired and its holder alive.
  bool InForce(const LeaseRecord& record, absl::Time now) const {
    return record.active && record.boot_id == boot_id && now < record.expiry &&
           LockFileHeld(record.fence);
  }

  // True if `fence` may write at `now`. The lock-file probe is skipped: the
  // caller is the holder and, being alive, holds the file lock.
  bool MayWrite(const std::optional<LeaseRecord>& record, FenceToken fence,
                absl::Time now) const {
    return record.has_value() && record->active && record->fence == fence &&
           record->boot_id == boot_id && now < record->expiry;
  }
};

absl::StatusOr<std::optional<LeaseRecord>> ReadLease(MDB_txn* txn,
                                                     MDB_dbi meta) {
  absl::StatusOr<std::optional<absl::string_view>> bytes =
      TxnGet(txn, meta, kLeaseKey);
  if (!bytes.ok()) return bytes.status();
  if (!bytes->has_value()) return std::optional<LeaseRecord>();
  absl::StatusOr<LeaseRecord> record = DecodeLease(**bytes);
  if (!record.ok()) return record.status();
  return std::optional<LeaseRecord>(*std::move(record));
}

absl::StatusOr<uint64_t> ReadRevision(MDB_txn* txn, MDB_dbi meta) {
  absl::StatusOr<std::optional<absl::string_view>> bytes =
      TxnGet(txn, meta, kRevisionKey);
  if (!bytes.ok()) return bytes.status();
  if (!bytes->has_value()) {
    return absl::DataLossError("the revision record is missing");
  }
  return DecodeRevision(**bytes);
}

// The OS lock a holder keeps on lease-<fence>.lock while it lives.
class LockFile {
 public:
  LockFile() = default;
  ~LockFile() { Close(); }
  LockFile(const LockFile&) = delete;
  LockFile& operator=(const LockFile&) = delete;

  // Creates the file afresh and locks it.
  absl::Status Create(const std::string& path) {
    Close();
    unlink(path.c_str());
    fd_ = open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd_ < 0) {
      return absl::ErrnoToStatus(errno, absl::StrCat("creating ", path));
    }
    struct flock lock;
    std::memset(&lock, 0, sizeof(lock));
    lock.l_type = F_WRLCK;
    lock.l_whence = SEEK_SET;
    if (fcntl(fd_, F_OFD_SETLK, &lock) != 0) {
      absl::Status s =
          absl::ErrnoToStatus(errno, absl::StrCat("locking ", path));
      Close();
      unlink(path.c_str());
      return s;
    }
    path_ = path;
    return absl::OkStatus();
  }

  // Drops the lock and deletes the file.
  void Remove() {
    if (fd_ < 0) return;
    unlink(path_.c_str());
    Close();
  }

  int release_fd() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  void Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

  int fd_ = -1;
  std::string path_;
};

class LmdbGrant final : public LeadershipGrant {
 public:
  LmdbGrant(std::shared_ptr<LeaseContext> ctx, FenceToken fence,
            std::string holder, absl::Duration ttl, absl::Time expiry,
            std::unique_ptr<LockFile> lock_file)
      : ctx_(std::move(ctx)),
        fence_(fence),
        holder_(std::move(holder)),
        ttl_(ttl),
        lock_file_(std::move(lock_file)),
        expiry_(expiry) {}

  ~LmdbGrant() override { Release().IgnoreError(); }

  FenceToken fence() const override { return fence_; }
  std::string holder() const override { return holder_; }

  absl::Status Renew() override {
    MutexLock lock(&mu_);
    if (lost_) return LostError();
    absl::Time renewed;
    bool current = false;
    Environment& env = *ctx_->env;
    absl::Status s = env.Write([&](WriteTxn& txn) -> absl::StatusOr<bool> {
      absl::StatusOr<std::optional<LeaseRecord>> record =
          ReadLease(txn.txn(), env.dbi());
      if (!record.ok()) return record.status();
      const absl::Time now = ctx_->clock->Now();
      current = ctx_->MayWrite(*record, fence_, now);
      if (!current) return false;
      (*record)->expiry = renewed = now + ttl_;
      absl::Status put = txn.Put(env.dbi(), kLeaseKey, EncodeLease(**record));
      if (!put.ok()) return put;
      return true;
    });
    if (!s.ok()) {
      return absl::UnavailableError(
          absl::StrCat("renewing lease grant ", fence_, ": ", s.message()));
    }
    if (!current) {
      MarkLost();
      return LostError();
    }
    expiry_ = renewed;
    return absl::OkStatus();
  }

  absl::Status Release() override {
    absl::Status s;
    {
      MutexLock lock(&mu_);
      if (released_) return absl::OkStatus();
      Environment& env = *ctx_->env;
      s = env.Write([&](WriteTxn& txn) -> absl::StatusOr<bool> {
        absl::StatusOr<std::optional<LeaseRecord>> record =
            ReadLease(txn.txn(), env.dbi());
        if (!record.ok()) return record.status();
        if (!record->has_value() || (*record)->fence != fence_ ||
            !(*record)->active) {
          return false;
        }
        (*record)->active = false;
        absl::Status put = txn.Put(env.dbi(), kLeaseKey, EncodeLease(**record));
        if (!put.ok()) return put;
        return true;
      });
      // Even if the record could not be updated, dropping the file lock
      // tells every contender this holder is gone.
      lock_file_->Remove();
      released_ = true;
      MarkLost();
    }
    ctx_->env->Wake();
    return s;
  }

  absl::Time expiry() const override {
    MutexLock lock(&mu_);
    return expiry_;
  }

  bool Lost() override {
    MutexLock lock(&mu_);
    return CheckLost();
  }

  bool WaitLost(absl::Time deadline) override {
    while (true) {
      {
        MutexLock lock(&mu_);
        if (CheckLost()) return true;
      }
      if (ctx_->clock->Now() >= deadline) return false;
      ctx_->env->WaitForWake(ctx_->poll);
    }
  }

 private:
  absl::Status LostError() const {
    return absl::FailedPreconditionError(
        absl::StrCat("lease grant ", fence_, " is lost"));
  }

  void MarkLost() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { lost_ = true; }

  bool CheckLost() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (lost_) return true;
    const absl::Time now = ctx_->clock->Now();
    if (now >= expiry_) {
      lost_ = true;
      return true;
    }
    Environment& env = *ctx_->env;
    std::optional<LeaseRecord> seen;
    absl::Status s = env.Read([&](MDB_txn* txn) -> absl::Status {
      absl::StatusOr<std::optional<LeaseRecord>> record =
          ReadLease(txn, env.dbi());
      if (!record.ok()) return record.status();
      seen = *std::move(record);
      return absl::OkStatus();
    });
    // An unreadable record proves nothing; expiry_ still bounds the grant.
    if (s.ok() && !ctx_->MayWrite(seen, fence_, now)) lost_ = true;
    return lost_;
  }

  const std::shared_ptr<LeaseContext> ctx_;
  const FenceToken fence_;
  const std::string holder_;
  const absl::Duration ttl_;

  mutable Mutex mu_;
  std::unique_ptr<LockFile> lock_file_ ABSL_GUARDED_BY(mu_);
  bool lost_ ABSL_GUARDED_BY(mu_) = false;
  bool released_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time expiry_ ABSL_GUARDED_BY(mu_);
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

  absl::StatusOr<Entry> Get(absl::string_view key) override {
    absl::Status valid = ValidateKey(key, limits_);
    if (!valid.ok()) return valid;
    Entry entry;
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
    if (!s.ok()) return s;
    return entry;
  }

  absl::StatusOr<std::vector<std::string>> List(
      absl::string_view prefix) override {
    absl::Status valid = ValidatePrefix(prefix, limits_);
    if (!valid.ok()) return valid;
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
    absl::Status valid = ValidateBatch(ops, limits_);
    if (!valid.ok()) return valid;
    uint64_t revision = 0;
    absl::Status s = env_.Write([&](WriteTxn& txn) -> absl::StatusOr<bool> {
      if (fence != kNoFence) {
        absl::StatusOr<std::optional<LeaseRecord>> record =
            ReadLease(txn.txn(), env_.dbi());
        if (!record.ok()) return record.status();
        if (!ctx_->MayWrite(*record, fence, clock_->Now())) {
          return StaleFenceError(fence);
        }
      }
      for (const WriteOp& op : ops) {
        if (op.expect == WriteOp::Expect::kAnything) continue;
        absl::StatusOr<std::optional<absl::string_view>> bytes =
            TxnGet(txn.txn(), env_.dbi(), op.key);
        if (!bytes.ok()) return bytes.status();
        std::optional<uint64_t> version;
        if (bytes->has_value()) {
          if ((*bytes)->size() < kEntryHeaderBytes) {
            return absl::DataLossError(
                absl::StrCat("the record at ", op.key, " is corrupt"));
          }
          version = DecodeFixed64((*bytes)->data());
        }
        absl::Status met = CheckPrecondition(op, version);
        if (!met.ok()) return met;
      }
      absl::StatusOr<uint64_t> current = ReadRevision(txn.txn(), env_.dbi());
      if (!current.ok()) return current.status();
      revision = *current;
      if (!HasWrites(ops)) return false;
      ++revision;
      for (const WriteOp& op : ops) {
        if (op.kind == WriteOp::Kind::kPut) {
          absl::StatusOr<char*> out = txn.Reserve(
              env_.dbi(), op.key, kEntryHeaderBytes + op.value.size());
          if (!out.ok()) return out.status();
          EncodeEntryHeader(revision, *out);
          std::memcpy(*out + kEntryHeaderBytes, op.value.data(),
                      op.value.size());
        } else if (op.kind == WriteOp::Kind::kDelete) {
          absl::Status del = txn.Delete(env_.dbi(), op.key);
          if (!del.ok()) return del;
        }
      }
      std::string bytes;
      PutFixed64(&bytes, revision);
      absl::Status put = txn.Put(env_.dbi(), kRevisionKey, bytes);
      if (!put.ok()) return put;
      return true;
    });
    if (!s.ok()) return s;
    return revision;
  }

  absl::StatusOr<uint64_t> Revision() override {
    uint64_t revision = 0;
    absl::Status s = env_.Read([&](MDB_txn* txn) -> absl::Status {
      absl::StatusOr<uint64_t> r = ReadRevision(txn, env_.dbi());
      if (!r.ok()) return r.status();
      revision = *r;
      return absl::OkStatus();
    });
    if (!s.ok()) return s;
    return revision;
  }

  HaBackend* ha() override { return this; }
  BackendLimits limits() const override { return limits_; }

  absl::Status Sync() override { return env_.Sync(); }
  const std::string& dir() const override { return dir_; }

  absl::StatusOr<std::unique_ptr<LeadershipGrant>> Acquire(
      const AcquireOptions& options) override {
    if (options.holder.empty()) {
      return absl::InvalidArgumentError("lease holder value is empty");
    }
    if (options.ttl <= absl::ZeroDuration()) {
      return absl::InvalidArgumentError("lease TTL must be positive");
    }
    while (true) {
      if (options.cancel != nullptr && options.cancel->cancelled()) {
        return absl::CancelledError("lease acquire cancelled");
      }
      // Look first in a read transaction, so waiting contenders never
      // take the writer lock from the holder's writes.
      absl::StatusOr<std::optional<LeaseRecord>> seen = ReadLeaseNow();
      if (!seen.ok()) return seen.status();
      if (!seen->has_value() || !ctx_->InForce(**seen, clock_->Now())) {
        absl::StatusOr<std::unique_ptr<LeadershipGrant>> grant =
            TryGrant(options);
        if (!grant.ok() || *grant != nullptr) return grant;
      }
      if (clock_->Now() >= options.deadline) {
        return absl::DeadlineExceededError(
            "lease is held by another node past the acquire deadline");
      }
      env_.WaitForWake(ctx_->poll);
    }
  }

  absl::StatusOr<std::optional<LeaseHolder>> CurrentHolder() override {
    absl::StatusOr<std::optional<LeaseRecord>> record = ReadLeaseNow();
    if (!record.ok()) return record.status();
    if (!record->has_value() || !ctx_->InForce(**record, clock_->Now())) {
      return std::optional<LeaseHolder>();
    }
    return std::optional<LeaseHolder>(
        LeaseHolder{(*record)->holder, (*record)->fence, (*record)->expiry});
  }

  absl::Status BreakLease(FenceToken fence) override {
    absl::Status s = env_.Write([&](WriteTxn& txn) -> absl::StatusOr<bool> {
      absl::StatusOr<std::optional<LeaseRecord>> record =
          ReadLease(txn.txn(), env_.dbi());
      if (!record.ok()) return record.status();
      if (!record->has_value() || !(*record)->active ||
          (*record)->fence != fence) {
        return false;
      }
      (*record)->active = false;
      absl::Status put = txn.Put(env_.dbi(), kLeaseKey, EncodeLease(**record));
      if (!put.ok()) return put;
      return true;
    });
    env_.Wake();
    return s;
  }

 private:
  absl::StatusOr<std::optional<LeaseRecord>> ReadLeaseNow() {
    std::optional<LeaseRecord> seen;
    absl::Status s = env_.Read([&](MDB_txn* txn) -> absl::Status {
      absl::StatusOr<std::optional<LeaseRecord>> record =
          ReadLease(txn, env_.dbi());
      if (!record.ok()) return record.status();
      seen = *std::move(record);
      return absl::OkStatus();
    });
    if (!s.ok()) return s;
    return seen;
  }

  // One attempt inside a write transaction: grants the lease if it is
  // free, else returns nullptr. The new holder's lock file is created and
  // locked before the record naming it commits, so no contender can ever
  // see the record without the lock.
  absl::StatusOr<std::unique_ptr<LeadershipGrant>> TryGrant(
      const AcquireOptions& options) {
    auto lock_file = std::make_unique<LockFile>();
    LeaseRecord granted;
    FenceToken previous = kNoFence;
    bool free = false;
    absl::Status s = env_.Write([&](WriteTxn& txn) -> absl::StatusOr<bool> {
      absl::StatusOr<std::optional<LeaseRecord>> record =
          ReadLease(txn.txn(), env_.dbi());
      if (!record.ok()) return record.status();
      const absl::Time now = clock_->Now();
      free = !record->has_value() || !ctx_->InForce(**record, now);
      if (!free) return false;
      previous = record->has_value() ? (*record)->fence : kNoFence;
      granted.active = true;
      granted.fence = previous + 1;
      granted.expiry = now + options.ttl;
      granted.ttl = options.ttl;
      granted.pid = static_cast<uint32_t>(getpid());
      granted.boot_id = ctx_->boot_id;
      granted.holder = options.holder;
      absl::Status locked = lock_file->Create(ctx_->LockPath(granted.fence));
      if (!locked.ok()) return locked;
      absl::Status put = txn.Put(env_.dbi(), kLeaseKey, EncodeLease(granted));
      if (!put.ok()) return put;
      return true;
    });
    if (!s.ok()) {
      lock_file->Remove();
      return s;
    }
    if (!free) return std::unique_ptr<LeadershipGrant>();
    // The previous holder is gone or deposed: its lock file is litter now
    // (a hung holder keeps its descriptor; unlinking does not disturb it).
    if (previous != kNoFence) unlink(ctx_->LockPath(previous).c_str());
    return std::unique_ptr<LeadershipGrant>(
        new LmdbGrant(ctx_, granted.fence, granted.holder, granted.ttl,
                      granted.expiry, std::move(lock_file)));
  }

  // Constant after construction.
  const std::string dir_;
  const std::shared_ptr<LeaseContext> ctx_;
  Environment& env_;
  Clock* const clock_;
  const BackendLimits limits_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<LmdbBackend>> LmdbBackend::Open(
    const std::string& dir, const LmdbBackendOptions& options) {
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
  absl::StatusOr<std::shared_ptr<Environment>> env =
      Environment::OpenShared(dir, options);
  if (!env.ok()) return env.status();
  auto ctx = std::make_shared<LeaseContext>();
  ctx->env = *std::move(env);
  ctx->clock = options.clock != nullptr ? options.clock : RealClock();
  ctx->dir = dir;
  ctx->boot_id = options.boot_id.empty() ? ReadBootId() : options.boot_id;
  ctx->poll = options.poll_interval;
  return std::unique_ptr<LmdbBackend>(
      new LmdbBackendImpl(dir, std::move(ctx), options.limits));
}

}  // namespace strongbox
