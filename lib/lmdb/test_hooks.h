// Test seams of LmdbBackend, for strongbox's own tests only (the target
// that exports this header is testonly): fault injection at points no
// public call can reach, and counters that show what the backend did.
//
// Thread-safety: a TestHooks must outlive the backend it is given to and
// must not change while the backend is in use; its callbacks run on the
// thread of the call that reaches them.
#ifndef STRONGBOX_LIB_LMDB_TEST_HOOKS_H_
#define STRONGBOX_LIB_LMDB_TEST_HOOKS_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "strongbox/lmdb_backend.h"

namespace strongbox {
namespace lmdb_internal {

struct TestHooks {
  // Read the boot id from this file instead of
  // /proc/sys/kernel/random/boot_id (when options.boot_id is empty).
  std::string boot_id_path;

  // Runs inside a grant's write transaction, after the new holder's lock
  // file was created and the record written; an error aborts the grant
  // (as a failed write would) and is returned by Acquire.
  std::function<absl::Status()> inside_grant;

  // Runs after a grant's write transaction failed, before the attempt
  // cleans up after itself; the writer lock is free, so another backend
  // may be granted meanwhile.
  std::function<void()> after_failed_grant;

  // Runs inside every Commit()'s write transaction, after its entries are
  // written and before it commits, with the commit's fence: a test may
  // stop the process right there, holding LMDB's writer lock.
  std::function<void(FenceToken)> inside_commit;

  // Runs in every write transaction of the environment (this process's,
  // whichever backend), right after mdb_txn_begin returned and before the
  // process is marked inside the write: a test may stop the process there,
  // holding LMDB's writer lock unmarked (as a stop inside mdb_txn_begin
  // after LMDB took its lock would). Applies to the environment from this
  // Open on; the hooks must outlive every backend on that directory here.
  std::function<void()> after_write_begin;

  // If nonzero, grants record this process start time instead of the real
  // one (as if the pid had since been reused by another process).
  uint64_t grant_start_time = 0;
  // If nonzero, grants record this pid namespace instead of the real one
  // (as if the holder lived in another container).
  uint64_t grant_pid_ns = 0;

  // Runs inside a renewal's write transaction, after the new expiry was
  // put and before the commit: a test can hold a renewal inside LMDB's
  // writer lock there.
  std::function<void()> inside_renew;

  // Runs each time a blocked Acquire is about to wait for the lease to
  // change (after it found the lease held and its deadline not reached).
  std::function<void()> before_acquire_wait;
};

// LmdbBackend::Open with `hooks` (may be null: no hooks).
absl::StatusOr<std::unique_ptr<LmdbBackend>> OpenWithTestHooks(
    const std::string& dir, const LmdbBackendOptions& options,
    const TestHooks* hooks);

// How many times the environment under `backend` synced to disk
// (mdb_env_sync with force) in this process: an explicit Sync() or a grant
// made durable under kNoSync / kNoMetaSync.
uint64_t SyncCount(LmdbBackend& backend);

// How many dead readers' slots this process has freed in that environment.
uint64_t ReadersCleared(LmdbBackend& backend);

}  // namespace lmdb_internal
}  // namespace strongbox

#endif  // STRONGBOX_LIB_LMDB_TEST_HOOKS_H_
