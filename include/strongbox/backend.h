// Backend: the storage layer under strongbox — opaque bytes by path, atomic
// multi-key writes with preconditions, and an optional HA lease whose grants
// carry fence tokens.
//
// Paths: `/`-separated segments, e.g. "core/keyring" or "kv/data/app/db".
// Rejected with INVALID_ARGUMENT (and nothing touched): the empty path, a
// leading or trailing `/`, an empty segment, a `.` or `..` segment, a NUL or
// other control byte (< 0x20, 0x7f), a path longer than the backend's limit.
// Values are arbitrary bytes (NUL included) up to the backend's maximum.
//
// Versions: every write is assigned the backend's next *revision*, a number
// that strictly increases over the whole backend (like etcd's mod_revision).
// An entry's version is the revision that last wrote it, so it changes on
// every write, and the revision returned by a write doubles as a cluster-wide
// index for read-after-write consistency.
//
// HA: a backend may offer a leadership lease (`ha()` non-null). A grant names
// its holder (the node's advertise address) and carries a FenceToken strictly
// greater than every earlier grant's. A write that carries a fence is applied
// only if that fence is the current, unexpired grant, checked atomically with
// the write; otherwise FAILED_PRECONDITION and nothing is written. That is
// what keeps a deposed leader from overwriting its successor.
//
// Ownership: the caller owns a Backend; grants must not outlive it.
// Thread-safety: every Backend, HaBackend and LeadershipGrant method is safe
// to call concurrently from any thread.
#ifndef STRONGBOX_BACKEND_H_
#define STRONGBOX_BACKEND_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"

namespace strongbox {

// A fence token: the number of a lease grant. 0 means "no fence".
using FenceToken = uint64_t;
inline constexpr FenceToken kNoFence = 0;

// Limits every backend enforces. Default values are the library's defaults.
struct BackendLimits {
  // Longest accepted path, in bytes. Default: 1024.
  size_t max_key_bytes = 1024;
  // Largest accepted value, in bytes. Beyond it: INVALID_ARGUMENT.
  // Default: 2 MiB (a 1 MiB secret plus barrier overhead fits comfortably).
  size_t max_value_bytes = 2 << 20;
};

// What a backend returns for a write whose fence is not the current,
// unexpired grant: FAILED_PRECONDITION, marked (a status payload) so that a
// caller can tell "leadership moved on" from other FAILED_PRECONDITION
// answers. Every HA backend must use it for that refusal.
absl::Status StaleFenceError(FenceToken fence);
// True for a status made by StaleFenceError (also after it passed through
// other layers unchanged).
bool IsStaleFence(const absl::Status& status);

// Checks a path against the rules above. OK or INVALID_ARGUMENT.
absl::Status ValidateKey(absl::string_view key, const BackendLimits& limits);
// Checks a List() prefix: "" (the root) or a valid path followed by `/`.
absl::Status ValidatePrefix(absl::string_view prefix,
                            const BackendLimits& limits);

// One stored value and the revision that last wrote it.
struct Entry {
  std::string value;
  uint64_t version = 0;
};

// One element of an atomic batch (Backend::Commit).
struct WriteOp {
  enum class Kind {
    kPut,     // store `value` at `key`
    kDelete,  // remove `key` (absent is fine unless a precondition says not)
    kCheck,   // write nothing; only the precondition counts
  };
  enum class Expect {
    kAnything,  // no precondition
    kVersion,   // the key exists with version == expected_version
    kAbsent,    // the key does not exist
  };

  Kind kind = Kind::kPut;
  std::string key;
  std::string value;
  Expect expect = Expect::kAnything;
  uint64_t expected_version = 0;

  static WriteOp Put(absl::string_view key, absl::string_view value);
  static WriteOp Delete(absl::string_view key);
  static WriteOp Check(absl::string_view key);
  // Precondition builders: `WriteOp::Put(k, v).IfVersion(7)`.
  WriteOp& IfVersion(uint64_t version);
  WriteOp& IfAbsent();
};

// Lets a caller abandon a blocking HaBackend::Acquire from another thread.
// Thread-safe; outlives the call it is passed to.
class Cancellation {
 public:
  void Cancel() { cancelled_.store(true, std::memory_order_release); }
  bool cancelled() const { return cancelled_.load(std::memory_order_acquire); }

 private:
  std::atomic<bool> cancelled_{false};
};

// Who holds the lease now.
struct LeaseHolder {
  std::string holder;  // the holder value given to Acquire
  FenceToken fence = kNoFence;
  absl::Time expiry;  // when the grant lapses unless renewed
};

// One grant of the HA lease, owned by the node that acquired it. Destroying
// a grant releases it (best effort).
class LeadershipGrant {
 public:
  virtual ~LeadershipGrant() = default;
  LeadershipGrant(const LeadershipGrant&) = delete;
  LeadershipGrant& operator=(const LeadershipGrant&) = delete;

  virtual FenceToken fence() const = 0;
  virtual std::string holder() const = 0;

  // Extends the grant by its TTL, measured from the moment of the call.
  // FAILED_PRECONDITION: the grant is lost (expired, released, broken) and
  // stays lost. UNAVAILABLE: the backend could not be reached; the grant is
  // still good until expiry() unless the caller learns otherwise.
  virtual absl::Status Renew() = 0;

  // Gives the lease up now so a contender is granted at once. Idempotent.
  virtual absl::Status Release() = 0;

  // The holder's own deadline: the latest time at which the grant may still
  // be valid. A holder must treat the grant as lost from then on even if
  // the backend is unreachable.
  virtual absl::Time expiry() const = 0;

  // True once the grant is known lost: released, taken over, broken, or
  // past expiry() by the backend's clock. Once true, stays true.
  virtual bool Lost() = 0;

  // Blocks until Lost() or until `deadline` (backend clock); returns Lost().
  // Reports loss no later than expiry().
  virtual bool WaitLost(absl::Time deadline) = 0;

 protected:
  LeadershipGrant() = default;
};

struct AcquireOptions {
  // Stored with the grant and readable by everyone (CurrentHolder()).
  // Strongbox stores the node's advertise address here. Must be non-empty.
  std::string holder;
  // How long the grant lasts without renewal. REQUIRES: > 0.
  absl::Duration ttl = absl::Seconds(10);
  // Give up at this time (backend clock): DEADLINE_EXCEEDED. Default: wait
  // forever. absl::InfinitePast() makes exactly one attempt.
  absl::Time deadline = absl::InfiniteFuture();
  // If set and cancelled while waiting: CANCELLED, promptly.
  const Cancellation* cancel = nullptr;
};

// A takeover held up by a holder that stopped renewing but still blocks
// its successors: with LmdbBackend, a process stopped inside a write
// transaction holds LMDB's single writer lock past its grant's expiry, so
// no contender can write its grant until that process resumes or dies. A
// backend where this can happen reports such waits, and the fencing of the
// holder (killing it) where it does that; for the others (a lapsed grant
// simply expires: etcd, in-memory) nothing is ever reported.
struct BlockedTakeoverEvent {
  enum class Kind {
    // A grant attempt waits on the holder; `reason` says why it is not (or
    // not yet) fenced.
    kWaiting,
    // The holder, its identity proven, was killed so the takeover can go on.
    kHolderKilled,
  };
  Kind kind = Kind::kWaiting;
  FenceToken fence = kNoFence;  // the expired grant
  std::string holder;           // its holder value (advertise address)
  uint32_t pid = 0;             // its process; 0 if unknown
  absl::Duration expired_for;   // how long past its expiry (0 if unknown)
  std::string reason;           // one line for logs; no secrets
};

// "waiting" or "holder_killed".
absl::string_view BlockedTakeoverKindName(BlockedTakeoverEvent::Kind kind);

// Hears of blocked takeovers. Called on a backend-internal thread while a
// grant attempt waits, under no lock of the backend's; must return
// promptly and must not destroy the backend.
class BlockedTakeoverObserver {
 public:
  virtual ~BlockedTakeoverObserver() = default;
  virtual void OnBlockedTakeover(const BlockedTakeoverEvent& event) = 0;
};

// What HaBackend::blocked_takeover_status() reports.
struct BlockedTakeoverStatus {
  // Set while a grant attempt of this backend waits on a blocking holder
  // (the latest event); cleared when the wait ends.
  std::optional<BlockedTakeoverEvent> waiting;
  // The last holder this backend killed, and how many it killed.
  std::optional<BlockedTakeoverEvent> last_kill;
  uint64_t kills = 0;
};

// The optional HA capability of a backend (Backend::ha()).
class HaBackend {
 public:
  HaBackend() = default;
  virtual ~HaBackend() = default;
  HaBackend(const HaBackend&) = delete;
  HaBackend& operator=(const HaBackend&) = delete;

  // Blocks until the lease is free (never granted, released, or expired)
  // and grants it to `options.holder` with a fence greater than any before.
  virtual absl::StatusOr<std::unique_ptr<LeadershipGrant>> Acquire(
      const AcquireOptions& options) = 0;

  // The current, unexpired grant, or nullopt if nobody holds the lease.
  virtual absl::StatusOr<std::optional<LeaseHolder>> CurrentHolder() = 0;

  // Ends the grant numbered `fence` if it is still current (an operator
  // breaking a stuck lock, or a test forcing expiry). OK if it already
  // ended; its holder observes the loss.
  virtual absl::Status BreakLease(FenceToken fence) = 0;

  // Blocked takeovers (BlockedTakeoverEvent). A backend where a lapsed
  // holder can block its successors reports every wait and kill to these
  // observers and in blocked_takeover_status(); the defaults report
  // nothing, so other backends need not implement them. Observers are not
  // owned; RemoveBlockedTakeoverObserver() returns only once no call to
  // that observer is in flight, so the caller may then destroy it.
  virtual void AddBlockedTakeoverObserver(BlockedTakeoverObserver* observer) {}
  virtual void RemoveBlockedTakeoverObserver(
      BlockedTakeoverObserver* observer) {}
  // Cheap (no I/O).
  virtual BlockedTakeoverStatus blocked_takeover_status() { return {}; }
};

class Backend {
 public:
  virtual ~Backend() = default;
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;

  // The value at `key`; NOT_FOUND if absent.
  virtual absl::StatusOr<Entry> Get(absl::string_view key) = 0;

  // Get into `*entry`, for a reader that keeps one Entry between reads: a
  // backend that copies its value may reuse entry->value's capacity (no
  // allocation when it is large enough). Same errors as Get; after an
  // error *entry is unspecified. The default calls Get(), so a wrapper
  // that overrides Get() alone is still called. The caller wipes what
  // entry->value held before, if it matters: the old bytes may be
  // overwritten in place or freed.
  virtual absl::Status GetInto(absl::string_view key, Entry* entry);

  // Immediate children of `prefix` ("" for the root, else "a/b/"), sorted
  // bytewise. A child that has children of its own appears once with a
  // trailing `/`; a key and a folder of the same name both appear ("foo"
  // and "foo/"). An empty folder does not exist.
  virtual absl::StatusOr<std::vector<std::string>> List(
      absl::string_view prefix) = 0;

  // Applies `ops` atomically: every precondition is checked, then every
  // write applied, or nothing is. Returns the revision the batch was
  // written at (every written key takes it as its version). A batch
  // with no writes returns the current revision. Errors: INVALID_ARGUMENT
  // (bad key, oversized value, the same key twice), ABORTED (a precondition
  // failed), FAILED_PRECONDITION (`fence` is not the current grant, or a
  // fence was given to a backend without HA), UNAVAILABLE (backend down).
  virtual absl::StatusOr<uint64_t> Commit(absl::Span<const WriteOp> ops,
                                          FenceToken fence = kNoFence) = 0;

  // The latest revision written (0 for an empty, never-written backend).
  virtual absl::StatusOr<uint64_t> Revision() = 0;

  // The HA capability, or nullptr if this backend has none. Owned by the
  // backend.
  virtual HaBackend* ha() { return nullptr; }

  // The limits this backend enforces.
  virtual BackendLimits limits() const = 0;

  // Conveniences over Commit().
  absl::StatusOr<uint64_t> Put(absl::string_view key, absl::string_view value,
                               FenceToken fence = kNoFence);
  absl::StatusOr<uint64_t> Delete(absl::string_view key,
                                  FenceToken fence = kNoFence);

 protected:
  Backend() = default;
};

// Forwards every call to a backend it does not own; decorators (fault
// injection, metrics, caching) derive from it and override what they need.
class BackendWrapper : public Backend, public HaBackend {
 public:
  // REQUIRES: `target` outlives the wrapper.
  explicit BackendWrapper(Backend* target) : target_(target) {}

  absl::StatusOr<Entry> Get(absl::string_view key) override;
  absl::StatusOr<std::vector<std::string>> List(
      absl::string_view prefix) override;
  absl::StatusOr<uint64_t> Commit(absl::Span<const WriteOp> ops,
                                  FenceToken fence = kNoFence) override;
  absl::StatusOr<uint64_t> Revision() override;
  // Non-null exactly when the target has HA.
  HaBackend* ha() override;
  BackendLimits limits() const override;

  absl::StatusOr<std::unique_ptr<LeadershipGrant>> Acquire(
      const AcquireOptions& options) override;
  absl::StatusOr<std::optional<LeaseHolder>> CurrentHolder() override;
  absl::Status BreakLease(FenceToken fence) override;
  // Forwarded to the target's HA capability (nothing when it has none).
  void AddBlockedTakeoverObserver(BlockedTakeoverObserver* observer) override;
  void RemoveBlockedTakeoverObserver(
      BlockedTakeoverObserver* observer) override;
  BlockedTakeoverStatus blocked_takeover_status() override;

  Backend* target() const { return target_; }

 protected:
  // The target's HA capability; UNIMPLEMENTED when it has none.
  absl::StatusOr<HaBackend*> TargetHa() const;

 private:
  Backend* const target_;
};

}  // namespace strongbox

#endif  // STRONGBOX_BACKEND_H_
