#include "lib/lmdb/environment.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "lib/lmdb/hung_holder.h"
#include "lib/lmdb/records.h"
#include "lib/util/status_macros.h"

namespace strongbox {
namespace lmdb_internal {

absl::Status LmdbError(int rc, absl::string_view what) {
  const std::string message =
      absl::StrCat("lmdb: ", what, ": ", mdb_strerror(rc));
  switch (rc) {
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
      return absl::DataLossError(message);
    case MDB_MAP_FULL:
    case MDB_READERS_FULL:
    case MDB_TXN_FULL:
    case MDB_DBS_FULL:
      return absl::ResourceExhaustedError(message);
    case MDB_VERSION_MISMATCH:
    case MDB_INCOMPATIBLE:
      return absl::FailedPreconditionError(message);
    case MDB_PANIC:
      return absl::UnavailableError(message);
    default:
      if (rc > 0) return absl::ErrnoToStatus(rc, message);
      return absl::InternalError(message);
  }
}

absl::StatusOr<std::optional<absl::string_view>> TxnGet(MDB_txn* txn,
                                                        MDB_dbi dbi,
                                                        absl::string_view key) {
  MDB_val k = ToVal(key);
  MDB_val v;
  int rc = mdb_get(txn, dbi, &k, &v);
  if (rc == MDB_NOTFOUND) return std::optional<absl::string_view>();
  if (rc != MDB_SUCCESS) return LmdbError(rc, "reading");
  return std::optional<absl::string_view>(FromVal(v));
}

absl::Status WriteTxn::Check(int rc, absl::string_view what) {
  if (rc == MDB_SUCCESS) return absl::OkStatus();
  if (rc == MDB_MAP_FULL) map_full_ = true;
  return LmdbError(rc, what);
}

absl::Status WriteTxn::Put(MDB_dbi dbi, absl::string_view key,
                           absl::string_view value) {
  MDB_val k = ToVal(key);
  MDB_val v = ToVal(value);
  return Check(mdb_put(txn_, dbi, &k, &v, 0), "writing");
}

absl::StatusOr<char*> WriteTxn::Reserve(MDB_dbi dbi, absl::string_view key,
                                        size_t size) {
  MDB_val k = ToVal(key);
  MDB_val v{size, nullptr};
  RETURN_IF_ERROR(Check(mdb_put(txn_, dbi, &k, &v, MDB_RESERVE), "writing"));
  return static_cast<char*>(v.mv_data);
}

absl::Status WriteTxn::Delete(MDB_dbi dbi, absl::string_view key) {
  MDB_val k = ToVal(key);
  int rc = mdb_del(txn_, dbi, &k, nullptr);
  if (rc == MDB_NOTFOUND) return absl::OkStatus();
  return Check(rc, "deleting");
}

namespace {

// The process-wide table of open environments. LMDB's rule (one MDB_env
// per environment per process) makes this the one piece of global state.
struct Registry {
  Mutex mu;
  absl::flat_hash_map<std::pair<dev_t, ino_t>, std::weak_ptr<Environment>> envs
      ABSL_GUARDED_BY(mu);
};

Registry& GetRegistry() {
  static Registry* const registry = new Registry();
  return *registry;
}

const char* DurabilityName(LmdbBackendOptions::Durability d) {
  switch (d) {
    case LmdbBackendOptions::Durability::kSynced:
      return "kSynced";
    case LmdbBackendOptions::Durability::kNoMetaSync:
      return "kNoMetaSync";
    case LmdbBackendOptions::Durability::kNoSync:
      return "kNoSync";
  }
  return "?";
}

}  // namespace

// Closes the environment under the registry lock, so a concurrent Open of
// the same directory waits until the old MDB_env is gone.
struct EnvironmentDeleter {
  void operator()(Environment* env) const {
    Registry& registry = GetRegistry();
    {
      MutexLock lock(&registry.mu);
      const auto id = env->id_;
      delete env;
      auto it = registry.envs.find(id);
      if (it != registry.envs.end() && it->second.expired()) {
        registry.envs.erase(it);
      }
    }
    registry.mu.SignalAll();
  }
};

absl::StatusOr<std::shared_ptr<Environment>> Environment::OpenShared(
    const std::string& dir, const LmdbBackendOptions& options) {
  struct stat st;
  if (stat(dir.c_str(), &st) != 0) {
    if (errno != ENOENT || !options.create_if_missing) {
      return absl::ErrnoToStatus(errno, absl::StrCat("cannot use ", dir));
    }
    if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
      return absl::ErrnoToStatus(errno, absl::StrCat("cannot create ", dir));
    }
    if (stat(dir.c_str(), &st) != 0) {
      return absl::ErrnoToStatus(errno, absl::StrCat("cannot use ", dir));
    }
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(dir, " is not a directory"));
  }
  const std::pair<dev_t, ino_t> id{st.st_dev, st.st_ino};

  Registry& registry = GetRegistry();
  MutexLock lock(&registry.mu);
  while (true) {
    auto it = registry.envs.find(id);
    if (it == registry.envs.end()) break;
    if (std::shared_ptr<Environment> env = it->second.lock()) {
      // A forked child inherited its parent's environment, which it must
      // not use: it opens its own (and replaces the entry).
      if (env->InForkedChild(/*by_pid=*/true)) break;
      if (env->durability_ != options.durability) {
        return absl::FailedPreconditionError(absl::StrCat(
            dir, " is already open in this process with durability ",
            DurabilityName(env->durability_), "; asked for ",
            DurabilityName(options.durability)));
      }
      return env;
    }
    // Its last owner is closing it right now; wait until it is gone.
    registry.mu.AwaitWithTimeout(
        [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(registry.mu) {
          auto found = registry.envs.find(id);
          return found == registry.envs.end() || !found->second.expired();
        },
        absl::Milliseconds(10));
  }

  std::unique_ptr<Environment> env(new Environment());
  env->id_ = id;
  env->opener_pid_ = getpid();
  env->opener_fork_generation_ = ForkGeneration();
  RETURN_IF_ERROR(env->OpenEnv(dir, options));
  std::shared_ptr<Environment> shared(env.release(), EnvironmentDeleter());
  registry.envs[id] = shared;
  return shared;
}

absl::Status Environment::OpenEnv(const std::string& dir,
                                  const LmdbBackendOptions& options) {
  durability_ = options.durability;
  max_map_bytes_ = options.max_map_bytes;
  int rc = mdb_env_create(&env_);
  if (rc != MDB_SUCCESS) return LmdbError(rc, "creating an environment");
  if ((rc = mdb_env_set_maxreaders(env_, options.max_readers)) != MDB_SUCCESS ||
      (rc = mdb_env_set_mapsize(env_, options.initial_map_bytes)) !=
          MDB_SUCCESS) {
    return LmdbError(rc, "configuring the environment");
  }
  unsigned int flags = MDB_NOTLS;
  switch (options.durability) {
    case LmdbBackendOptions::Durability::kSynced:
      break;
    case LmdbBackendOptions::Durability::kNoMetaSync:
      flags |= MDB_NOMETASYNC;
      break;
    case LmdbBackendOptions::Durability::kNoSync:
      flags |= MDB_NOSYNC;
      break;
  }
  rc = mdb_env_open(env_, dir.c_str(), flags, 0644);
  if (rc == MDB_INVALID) {
    return absl::DataLossError(
        absl::StrCat(dir,
                     " holds a data.mdb or lock.mdb that is not an LMDB file "
                     "(corrupt, or another program's)"));
  }
  if (rc == MDB_VERSION_MISMATCH) {
    return absl::FailedPreconditionError(
        absl::StrCat(dir, " was written by an incompatible LMDB version"));
  }
  if (rc != MDB_SUCCESS) {
    return LmdbError(rc, absl::StrCat("opening the store in ", dir));
  }
  OpenLockHeader(dir);
  RETURN_IF_ERROR(InitOrCheckStore(dir));
  MDB_envinfo info;
  mdb_env_info(env_, &info);
  WriterLock lock(&remap_mu_);
  map_bytes_ = info.me_mapsize;
  return absl::OkStatus();
}

void Environment::OpenLockHeader(const std::string& dir) {
  const std::string path = dir + "/lock.mdb";
  lock_fd_ = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (lock_fd_ < 0) return;  // WriterLockOwner says it cannot tell
  struct stat st;
  if (fstat(lock_fd_, &st) != 0 ||
      st.st_size < static_cast<off_t>(kLockHeaderBytes)) {
    return;
  }
  void* map =
      mmap(nullptr, kLockHeaderBytes, PROT_READ, MAP_SHARED, lock_fd_, 0);
  if (map != MAP_FAILED) lock_header_ = static_cast<const unsigned char*>(map);
}

absl::StatusOr<std::optional<pid_t>> Environment::WriterLockOwner() {
  if (lock_header_ == nullptr) {
    return absl::UnavailableError("lock.mdb could not be opened and mapped");
  }
  absl::Status shared = CheckLockFileUsersShareOurPidNs(lock_fd_);
  if (!shared.ok()) return shared;
  return WriterLockOwnerFromHeader(lock_header_);
}

absl::Status Environment::InitOrCheckStore(const std::string& dir) {
  // An existing store is checked in a read transaction: a process hung
  // inside a write holds LMDB's writer lock, and a node opening the store
  // (to take over from it) must not wait for that.
  MDB_txn* txn = nullptr;
  int rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn);
  if (rc == MDB_READERS_FULL && CheckReaders() > 0) {
    rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn);
  }
  // A read that cannot begin (a reader table full of live readers) falls
  // back to the check under the writer lock, which needs no reader slot.
  if (rc == MDB_SUCCESS) rc = mdb_dbi_open(txn, nullptr, 0, &dbi_);
  if (rc == MDB_SUCCESS) {
    absl::StatusOr<std::optional<absl::string_view>> format =
        TxnGet(txn, dbi_, kFormatKey);
    if (format.ok() && format->has_value()) {
      absl::Status s = CheckFormat(**format);
      mdb_txn_abort(txn);  // the unnamed database's handle stays valid
      if (!s.ok()) {
        return absl::Status(s.code(), absl::StrCat(dir, ": ", s.message()));
      }
      return absl::OkStatus();
    }
  }
  if (txn != nullptr) mdb_txn_abort(txn);
  // No format record yet (or it could not be read): look again under the
  // writer lock, and initialize an empty environment.
  txn = nullptr;
  rc = mdb_txn_begin(env_, nullptr, 0, &txn);
  if (rc != MDB_SUCCESS) return LmdbError(rc, "starting the open check");
  auto fail = [&](absl::Status status) {
    mdb_txn_abort(txn);
    return status;
  };
  rc = mdb_dbi_open(txn, nullptr, 0, &dbi_);
  if (rc != MDB_SUCCESS) return fail(LmdbError(rc, "opening the database"));
  absl::StatusOr<std::optional<absl::string_view>> format =
      TxnGet(txn, dbi_, kFormatKey);
  if (!format.ok()) return fail(format.status());
  if (format->has_value()) {
    absl::Status s = CheckFormat(**format);
    if (!s.ok()) {
      return fail(absl::Status(s.code(), absl::StrCat(dir, ": ", s.message())));
    }
    mdb_txn_abort(txn);  // the unnamed database's handle stays valid
    return absl::OkStatus();
  }
  // A new store, or someone else's: only an empty environment is ours to
  // initialize.
  MDB_stat stat;
  rc = mdb_stat(txn, dbi_, &stat);
  if (rc != MDB_SUCCESS) return fail(LmdbError(rc, "reading the store"));
  if (stat.ms_entries != 0) {
    return fail(absl::FailedPreconditionError(absl::StrCat(
        dir, " holds an LMDB environment that is not a strongbox store")));
  }
  WriteTxn w(txn);
  std::string zero;
  PutFixed64(&zero, 0);
  absl::Status s = w.Put(dbi_, kFormatKey, EncodeFormat());
  if (s.ok()) s = w.Put(dbi_, kRevisionKey, zero);
  if (!s.ok()) return fail(s);
  rc = mdb_txn_commit(txn);
  if (rc != MDB_SUCCESS) return LmdbError(rc, "initializing the store");
  return absl::OkStatus();
}

Environment::~Environment() {
  if (InForkedChild(/*by_pid=*/true)) {
    // The handles are the parent's: aborting a pooled reader would clear
    // the parent's reader slot in lock.mdb (MDB_NOTLS). Leak them.
    return;
  }
  for (std::atomic<MDB_txn*>& slot : pool_) {
    MDB_txn* txn = slot.exchange(nullptr, std::memory_order_acquire);
    if (txn != nullptr) mdb_txn_abort(txn);
  }
  if (env_ != nullptr) mdb_env_close(env_);
  // Only now: closing lock.mdb drops this process's POSIX locks on it,
  // LMDB's included.
  if (lock_header_ != nullptr) {
    munmap(const_cast<unsigned char*>(lock_header_), kLockHeaderBytes);
  }
  if (lock_fd_ >= 0) close(lock_fd_);
}

namespace {

// Where this thread starts looking in the reader pool, so threads tend to
// use different slots. Constant-initialized: no TLS guard on the hot path.
size_t PoolStart() {
  static thread_local size_t start = ~size_t{0};
  if (start == ~size_t{0}) {
    start = std::hash<std::thread::id>()(std::this_thread::get_id()) >> 4;
  }
  return start;
}

}  // namespace

MDB_txn* Environment::TakePooledReader() {
  const size_t start = PoolStart();
  for (int i = 0; i < kPoolSlots; ++i) {
    std::atomic<MDB_txn*>& slot = pool_[(start + i) % kPoolSlots];
    if (slot.load(std::memory_order_relaxed) == nullptr) continue;
    MDB_txn* txn = slot.exchange(nullptr, std::memory_order_acquire);
    if (txn != nullptr) return txn;
  }
  return nullptr;
}

void Environment::ReturnReader(MDB_txn* txn) {
  mdb_txn_reset(txn);
  const size_t start = PoolStart();
  for (int i = 0; i < kPoolSlots; ++i) {
    std::atomic<MDB_txn*>& slot = pool_[(start + i) % kPoolSlots];
    MDB_txn* expected = nullptr;
    if (slot.compare_exchange_strong(expected, txn, std::memory_order_release,
                                     std::memory_order_relaxed)) {
      return;
    }
  }
  mdb_txn_abort(txn);
}

absl::Status Environment::Write(
    absl::FunctionRef<absl::StatusOr<bool>(WriteTxn&)> fn) {
  while (true) {
    size_t seen;
    int rc;
    bool full = false;
    {
      ReaderLock remap(&remap_mu_);
      seen = map_bytes_;
      MDB_txn* txn = nullptr;
      rc = mdb_txn_begin(env_, nullptr, 0, &txn);
      if (rc == MDB_SUCCESS) {
        // Marked only once begin has returned (a thread blocked in it is
        // not inside a write), unmarked only after the commit or abort
        // below has returned: every return path leaves this scope after
        // the transaction ended. A process stopped inside mdb_txn_begin
        // after LMDB took its writer lock, or right here, holds the lock
        // unmarked: contenders then tell it by the owner of LMDB's writer
        // mutex instead (hung_holder.h, "The owner of LMDB's writer
        // mutex").
        if (const std::function<void()>* hook =
                after_write_begin_.load(std::memory_order_acquire)) {
          (*hook)();
        }
        struct InsideWrite {
          Environment* env;
          ~InsideWrite() { env->UnmarkInsideWrite(); }
        } marked{this};
        MarkInsideWrite();
        WriteTxn w(txn);
        absl::StatusOr<bool> commit = fn(w);
        if (w.map_full()) {
          mdb_txn_abort(txn);
          full = true;
        } else if (!commit.ok()) {
          mdb_txn_abort(txn);
          return commit.status();
        } else if (!*commit) {
          mdb_txn_abort(txn);
          return absl::OkStatus();
        } else {
          rc = mdb_txn_commit(txn);
          if (rc == MDB_SUCCESS) return absl::OkStatus();
          if (rc != MDB_MAP_FULL) return LmdbError(rc, "committing");
          full = true;
        }
      }
    }
    if (full) {
      // A dead reader pinning an old snapshot keeps freed pages from being
      // reused; free it and try again before growing the map.
      if (CheckReaders() > 0) continue;
      RETURN_IF_ERROR(GrowMap(seen));
      continue;
    }
    if (rc != MDB_MAP_RESIZED) {
      return LmdbError(rc, "starting a write transaction");
    }
    RETURN_IF_ERROR(AdoptMapSize());
  }
}

void Environment::AddWriteMarker(int fd) {
  MutexLock lock(&marker_mu_);
  marker_fds_.push_back(fd);
  if (inside_write_) LockInsideWriteMarker(fd, write_seq_);
}

void Environment::RemoveWriteMarker(int fd) {
  MutexLock lock(&marker_mu_);
  marker_fds_.erase(std::remove(marker_fds_.begin(), marker_fds_.end(), fd),
                    marker_fds_.end());
  // Its marker, if any, goes with the descriptor, which the caller closes.
}

void Environment::MarkInsideWrite() {
  MutexLock lock(&marker_mu_);
  ++write_seq_;
  inside_write_ = true;
  for (int fd : marker_fds_) LockInsideWriteMarker(fd, write_seq_);
}

void Environment::UnmarkInsideWrite() {
  MutexLock lock(&marker_mu_);
  inside_write_ = false;
  for (int fd : marker_fds_) UnlockInsideWriteMarkers(fd);
}

absl::Status Environment::Sync() {
  ReaderLock remap(&remap_mu_);
  int rc = mdb_env_sync(env_, 1);
  if (rc != MDB_SUCCESS) return LmdbError(rc, "syncing");
  syncs_.fetch_add(1, std::memory_order_relaxed);
  return absl::OkStatus();
}

int Environment::CheckReaders() {
  int dead = 0;
  if (mdb_reader_check(env_, &dead) != MDB_SUCCESS || dead <= 0) return 0;
  readers_cleared_.fetch_add(dead, std::memory_order_relaxed);
  return dead;
}

void Environment::MaybeCheckReaders(absl::Time now) {
  const int64_t now_ns = absl::ToUnixNanos(now);
  int64_t last = last_reader_check_.load(std::memory_order_relaxed);
  const int64_t interval_ns = absl::ToInt64Nanoseconds(kReaderCheckInterval);
  if (now_ns >= last && now_ns - last < interval_ns) return;
  // One caller per interval does the check.
  if (!last_reader_check_.compare_exchange_strong(last, now_ns,
                                                  std::memory_order_relaxed)) {
    return;
  }
  CheckReaders();
}

void Environment::CheckReadersAt(absl::Time now) {
  last_reader_check_.store(absl::ToUnixNanos(now), std::memory_order_relaxed);
  CheckReaders();
}

size_t Environment::map_bytes() {
  ReaderLock remap(&remap_mu_);
  return map_bytes_;
}

absl::Status Environment::AdoptMapSize() {
  WriterLock remap(&remap_mu_);
  int rc = mdb_env_set_mapsize(env_, 0);
  if (rc != MDB_SUCCESS) return LmdbError(rc, "adopting the new map size");
  MDB_envinfo info;
  mdb_env_info(env_, &info);
  map_bytes_ = info.me_mapsize;
  return absl::OkStatus();
}

absl::Status Environment::GrowMap(size_t seen) {
  WriterLock remap(&remap_mu_);
  if (map_bytes_ != seen) return absl::OkStatus();  // grown meanwhile
  if (seen >= max_map_bytes_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("lmdb: the store needs more than max_map_bytes (",
                     max_map_bytes_, " bytes)"));
  }
  const size_t next = std::min(seen * 2, max_map_bytes_);
  int rc = mdb_env_set_mapsize(env_, next);
  if (rc != MDB_SUCCESS) return LmdbError(rc, "growing the map");
  MDB_envinfo info;
  mdb_env_info(env_, &info);
  map_bytes_ = info.me_mapsize;
  return absl::OkStatus();
}

void Environment::WaitForWake(absl::Duration timeout) {
  MutexLock lock(&wake_mu_);
  const uint64_t epoch = wake_epoch_;
  wake_mu_.AwaitWithTimeout([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(
                                wake_mu_) { return wake_epoch_ != epoch; },
                            timeout);
}

void Environment::Wake() {
  {
    MutexLock lock(&wake_mu_);
    ++wake_epoch_;
  }
  wake_mu_.SignalAll();
}

}  // namespace lmdb_internal
}  // namespace strongbox
