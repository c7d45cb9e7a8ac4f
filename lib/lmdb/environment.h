// Environment: one open LMDB environment (a directory), shared by every
// LmdbBackend in the process that opened the same directory, because LMDB
// forbids opening one environment twice in a process.
//
// It owns the MDB_env, the database handle, a pool of reusable read
// transactions (MDB_NOTLS, reset/renew), and the map-size bookkeeping:
// growing the map on MDB_MAP_FULL and adopting another process's growth on
// MDB_MAP_RESIZED both remap, which LMDB allows only while no transaction
// of this process is running, so every transaction runs under `remap_mu_`
// shared and a remap takes it exclusively.
//
// Stale readers. A process killed while it had the directory open leaves
// its reader slots in lock.mdb, and one killed inside a read transaction
// pins that snapshot, so no page freed after it is reused and data.mdb
// grows without bound. LMDB frees them only when asked (mdb_reader_check):
// this is done at open, when a read finds the table full (then the read is
// retried), before the map is grown, and at most once per
// kReaderCheckInterval on the paths that call MaybeCheckReaders (lease
// probes, renewals, commits).
//
// fork(): the environment belongs to the process that opened it. In a
// child, InForkedChild() is true and the destructor leaks the LMDB handles
// instead of closing them (closing would clear the parent's reader slots).
//
// Thread-safe.
#ifndef STRONGBOX_LIB_LMDB_ENVIRONMENT_H_
#define STRONGBOX_LIB_LMDB_ENVIRONMENT_H_

#include <lmdb.h>
#include <sys/types.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "lib/util/fork_generation.h"
#include "lib/util/mutex.h"
#include "strongbox/lmdb_backend.h"

namespace strongbox {
namespace lmdb_internal {

// An LMDB return code as a Status: `what` says what was being done.
absl::Status LmdbError(int rc, absl::string_view what);

inline MDB_val ToVal(absl::string_view s) {
  return MDB_val{s.size(), const_cast<char*>(s.data())};
}
inline absl::string_view FromVal(const MDB_val& v) {
  return absl::string_view(static_cast<const char*>(v.mv_data), v.mv_size);
}

// Reads inside a read or write transaction. nullopt if the key is absent.
absl::StatusOr<std::optional<absl::string_view>> TxnGet(MDB_txn* txn,
                                                        MDB_dbi dbi,
                                                        absl::string_view key);

// A write transaction handed to Environment::Write's callback. Records
// MDB_MAP_FULL so the runner can grow the map and run the callback again.
class WriteTxn {
 public:
  explicit WriteTxn(MDB_txn* txn) : txn_(txn) {}

  MDB_txn* txn() const { return txn_; }
  absl::Status Put(MDB_dbi dbi, absl::string_view key, absl::string_view value);
  // Reserves `size` bytes for `key` and returns where to write them.
  absl::StatusOr<char*> Reserve(MDB_dbi dbi, absl::string_view key,
                                size_t size);
  // Deleting an absent key is fine.
  absl::Status Delete(MDB_dbi dbi, absl::string_view key);

  bool map_full() const { return map_full_; }

 private:
  absl::Status Check(int rc, absl::string_view what);

  MDB_txn* const txn_;
  bool map_full_ = false;
};

class Environment {
 public:
  // The environment for `dir`: the one this process already has open
  // (whose durability must match `options`), or a newly opened one.
  static absl::StatusOr<std::shared_ptr<Environment>> OpenShared(
      const std::string& dir, const LmdbBackendOptions& options);

  Environment(const Environment&) = delete;
  Environment& operator=(const Environment&) = delete;

  // LMDB's unnamed database, which holds everything (records.h).
  MDB_dbi dbi() const { return dbi_; }
  MDB_env* env() const { return env_; }

  // Runs `fn(txn)` in a read transaction and returns what it returns.
  // `fn` must copy out anything it needs: the transaction is reset after.
  // A map grown by another process is adopted first (which waits for every
  // transaction of this process to end), unless `adopt_map` is false: then
  // the read fails with UNAVAILABLE instead. A thread that may run while
  // another thread of this process waits inside mdb_txn_begin (the hung
  // holder watchdog) must not adopt: that wait holds remap_mu_ shared and
  // may last as long as a hung holder lives.
  template <typename Fn>
  absl::Status Read(Fn&& fn, bool adopt_map = true);

  // Runs `fn` in a write transaction. `fn` returns true to commit, false
  // to abort (nothing to write), or an error (abort; returned as is). If
  // the map fills up, it is grown and `fn` runs again from scratch.
  absl::Status Write(absl::FunctionRef<absl::StatusOr<bool>(WriteTxn&)> fn);

  absl::Status Sync();

  // Current map size (for tests and the benchmark).
  size_t map_bytes();

  LmdbBackendOptions::Durability durability() const { return durability_; }
  // The directory's device and inode.
  std::pair<dev_t, ino_t> id() const { return id_; }

  // Successful Sync() calls so far (a test seam: it shows that a grant
  // under kNoSync was made durable).
  uint64_t syncs() const { return syncs_.load(std::memory_order_relaxed); }

  // Clears the reader slots of dead processes; returns how many it freed
  // (0 on error: this is housekeeping, never a reason to fail a call).
  int CheckReaders();
  // CheckReaders() if the last check is kReaderCheckInterval old by `now`
  // (any monotonic clock; a clock that goes back also triggers a check).
  void MaybeCheckReaders(absl::Time now);
  // CheckReaders() now, and count `now` as the last check.
  void CheckReadersAt(absl::Time now);
  static constexpr absl::Duration kReaderCheckInterval = absl::Seconds(1);
  // Slots freed by CheckReaders() in this process (tests, diagnostics).
  uint64_t readers_cleared() const {
    return readers_cleared_.load(std::memory_order_relaxed);
  }

  // True in a process forked from the one that opened this environment.
  // The cheap form reads a generation counter bumped by a pthread_atfork
  // child handler; `by_pid` also compares getpid() (a system call), which
  // catches a child made without running atfork handlers.
  bool InForkedChild(bool by_pid = false) const {
    if (CurrentForkGeneration() != opener_fork_generation_) {
      return true;
    }
    return by_pid && getpid() != opener_pid_;
  }

  // The "inside a write" marker (hung_holder.h): the descriptors of the
  // lock files of the grants this process holds on this directory. While a
  // write transaction of this process is open — from just after
  // mdb_txn_begin returned to just after mdb_txn_commit or mdb_txn_abort
  // returned — each carries that transaction's marker. One added during a
  // write transaction (a grant's own file) is marked at once. A descriptor
  // must be removed before it is closed.
  void AddWriteMarker(int fd);
  void RemoveWriteMarker(int fd);

  // The thread that owns LMDB's writer mutex now (nullopt: free), read
  // from lock.mdb, or why it cannot be told: the header's layout is not
  // the one hung_holder.h knows, or a process of another pid namespace
  // uses the store (hung_holder.h, "The owner of LMDB's writer mutex").
  absl::StatusOr<std::optional<pid_t>> WriterLockOwner();

  // A test seam (TestHooks::after_write_begin): runs in every write
  // transaction right after mdb_txn_begin returned, before the process is
  // marked inside the write. Not owned; null: none. Set before any write.
  void SetAfterWriteBeginHook(const std::function<void()>* hook) {
    after_write_begin_.store(hook, std::memory_order_release);
  }

  // Lease waiters in this process park here; anything that frees the
  // lease from this process calls Wake() so they look again at once.
  // Waiting ends after `timeout` of real time at the latest (other
  // processes cannot wake us).
  void WaitForWake(absl::Duration timeout);
  void Wake();

  ~Environment();

 private:
  static constexpr int kPoolSlots = 32;

  Environment() = default;

  absl::Status OpenEnv(const std::string& dir,
                       const LmdbBackendOptions& options);
  absl::Status InitOrCheckStore(const std::string& dir);
  // Opens lock.mdb and maps its header (lock_fd_, lock_header_); on
  // failure leaves them unset.
  void OpenLockHeader(const std::string& dir);

  // Ends a txn that `Read` used: reset and keep it for reuse if a slot is
  // free, else abort it.
  MDB_txn* TakePooledReader();
  void ReturnReader(MDB_txn* txn);

  // Marks or unmarks every registered lock file (see AddWriteMarker).
  // LMDB's writer lock serializes the calls: one write transaction at a
  // time per directory, in this process as across processes.
  void MarkInsideWrite();
  void UnmarkInsideWrite();

  // Adopts a bigger map written by another process (MDB_MAP_RESIZED).
  absl::Status AdoptMapSize();
  // Doubles the map if it is still `seen` bytes.
  absl::Status GrowMap(size_t seen);

  // Constant after OpenShared.
  MDB_env* env_ = nullptr;
  MDB_dbi dbi_ = 0;
  std::pair<dev_t, ino_t> id_{};
  pid_t opener_pid_ = 0;
  uint64_t opener_fork_generation_ = 0;
  LmdbBackendOptions::Durability durability_ =
      LmdbBackendOptions::Durability::kSynced;
  size_t max_map_bytes_ = 0;

  // Held shared by every transaction, exclusively by a remap.
  SharedMutex remap_mu_;
  size_t map_bytes_ ABSL_GUARDED_BY(remap_mu_) = 0;

  // Reset read transactions ready for mdb_txn_renew; nullptr = empty slot.
  std::array<std::atomic<MDB_txn*>, kPoolSlots> pool_{};

  // Leaf lock: nothing else is taken under it. Never held across LMDB.
  Mutex marker_mu_;
  std::vector<int> marker_fds_ ABSL_GUARDED_BY(marker_mu_);
  uint64_t write_seq_ ABSL_GUARDED_BY(marker_mu_) = 0;
  bool inside_write_ ABSL_GUARDED_BY(marker_mu_) = false;

  Mutex wake_mu_;
  uint64_t wake_epoch_ ABSL_GUARDED_BY(wake_mu_) = 0;

  // lock.mdb, opened read-only, and its header mapped (for
  // WriterLockOwner). Constant after OpenShared; -1 / null if they could
  // not be had. The descriptor stays open until the environment is closed:
  // closing any descriptor of lock.mdb would drop LMDB's own POSIX locks
  // on it in this process.
  int lock_fd_ = -1;
  const unsigned char* lock_header_ = nullptr;

  std::atomic<const std::function<void()>*> after_write_begin_{nullptr};

  std::atomic<uint64_t> syncs_{0};
  std::atomic<uint64_t> readers_cleared_{0};
  // absl::ToUnixNanos of the last MaybeCheckReaders() check.
  std::atomic<int64_t> last_reader_check_{0};

  friend struct EnvironmentDeleter;
};

template <typename Fn>
absl::Status Environment::Read(Fn&& fn, bool adopt_map) {
  bool checked_readers = false;
  while (true) {
    int rc;
    {
      ReaderLock remap(&remap_mu_);
      MDB_txn* txn = TakePooledReader();
      if (txn != nullptr) {
        rc = mdb_txn_renew(txn);
        if (rc != MDB_SUCCESS) mdb_txn_abort(txn);
      } else {
        rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn);
      }
      if (rc == MDB_SUCCESS) {
        absl::Status status = fn(txn);
        ReturnReader(txn);
        return status;
      }
    }
    if (rc == MDB_READERS_FULL && !checked_readers) {
      // Slots of crashed processes are the usual cause: free them, retry
      // once.
      checked_readers = true;
      CheckReaders();
      continue;
    }
    if (rc != MDB_MAP_RESIZED) {
      return LmdbError(rc, "starting a read transaction");
    }
    if (!adopt_map) {
      return absl::UnavailableError(
          "lmdb: another process grew the map; not adopted by this read");
    }
    absl::Status adopted = AdoptMapSize();
    if (!adopted.ok()) return adopted;
  }
}

}  // namespace lmdb_internal
}  // namespace strongbox

#endif  // STRONGBOX_LIB_LMDB_ENVIRONMENT_H_
