// HaCoordinator: one node's place in a strongbox cluster — its seal state,
// its part in the leader election, and the answer to "may I serve this
// operation here, and if not, where?".
//
// Several nodes (copies of the host service) share one Backend with the HA
// capability. Exactly one unsealed node is *active*: it holds the backend's
// lease and stamps every write with the lease's fence token, so a deposed
// active can never overwrite its successor. The other unsealed nodes are hot
// *standbys* (plain or performance) waiting for the lease. The coordinator
// never opens a socket: Route() tells the host where an operation must run.
//
// States and events (state x event -> state; "-" = no change):
//
// clang-format off
//   state \ event  Initialize Unseal ok Seal    Granted+ready Lost*    StepDown
//   kUninitialized kSealed    -         -       -             -        -
//   kSealed        -          standby+  -       -             -        -
//   kStandby       -          -         kSealed kActive       -        -
//   kPerfStandby   -          -         kSealed kActive       -        -
//   kActive        -          -         kSealed -             standby+ standby+
// clang-format on
//
//   standby+: kStandby or kPerfStandby, by Options::standby_mode.
//   Lost*: the grant was released, broken or taken over; renewal failed
//     until the grant's own expiry; the backend refused a renewal or
//     refused a write with this node's fence (ReportStaleFence()).
//   Granted+ready: won the lease and finished promotion (HA4). A promotion
//     that fails leaves the node where it was (an observer event with the
//     same from and to states carries the reason).
//   An uninitialized node also moves to kSealed when it notices that another
//   node initialized the shared backend.
//   Unseal ok also covers an auto-unseal (HA6).
//
// Invariants (tests cite these numbers):
//   HA1. Only an unsealed node contends for the lease; a sealed node holds no
//       key material (the Barrier wipes it) and no grant.
//   HA2. A node is kActive only while it holds a grant it has not seen lost
//       and whose expiry (by its own monotonic clock) has not passed;
//       Route() checks the expiry on every call, so a node that hung past
//       its TTL refuses writes the moment it resumes, before its loop
//       notices.
//   HA3. Leaving kActive for any reason stops writes first (the state
//       changes, and the snapshot the active's lock-free Route() and
//       WriteFence() read is cleared, under the lock, so they refuse at
//       once),
//       then releases the grant (so a standby is granted without waiting
//       out the TTL; Seal() waits for the release only a bounded time and
//       lets it finish in the background), then notifies observers, then
//       contends again — after step_down_pause if it stepped down.
//   HA4. Promotion: on a grant, the node re-checks it is still unsealed,
//       reloads the keyring, runs the activation hook, and only then becomes
//       kActive. If any step fails it releases the grant, backs off with
//       jitter and stays standby; the reason goes to observers.
//   HA5. Every write an active node issues carries its fence (WriteFence()),
//       and the backend applies it only if that fence is still current.
//   HA6. Auto-unseal (Options::key_wrapper, a backend initialized in auto
//       mode): a kSealed node unseals itself through the wrapper — at
//       start, after Initialize, and after any seal it did not get from the
//       operator — retrying with backoff and jitter (auto_unseal_backoff ..
//       auto_unseal_backoff_max) while the wrapper fails; every attempt's
//       outcome reaches observers (a failure as a kSealed -> kSealed event
//       whose reason is "sealed: waiting for key wrapper: <why>", also
//       HaStatus::seal_error). An operator's Seal() stops the retries until
//       an explicit AutoUnseal() (or Unseal()).
//       Stored keys wrapped under an older wrapper key keep unwrapping (the
//       wrapper holds the old key); they move to the current key only
//       through RotateWrapperKey, authorized by the recovery shares.
//
// Driving: by default the coordinator runs one background thread that
// waits for the lease, renews it and watches for loss, and one that
// delivers that thread's and the backend's observer events. With
// `Options::background_thread = false` nothing runs by itself: the caller
// drives the node with Poll(), one non-blocking step at a time, which with a
// FakeClock makes election and failover tests deterministic.
//
// Ownership: the caller owns the Backend (it must outlive the coordinator);
// the coordinator owns its Barrier. Observers are not owned and must
// outlive the coordinator or be removed first.
// Thread-safety: every method may be called from any thread, concurrently.
// Observers are called one at a time, in order, never under the
// coordinator's lock, so they may call back into the coordinator (on which
// threads: HaObserver).
// fork(): a coordinator belongs to the process that created it. In a forked
// child every call fails closed and touches neither the backend nor the
// lease: status-returning methods answer FAILED_PRECONDITION, Route()
// answers kUnavailable without a fence, state() answers kSealed, barrier()
// answers nullptr, Poll() and observers do nothing, and the destructor abandons
// (leaks) what belongs to the parent instead of releasing the parent's lease.
// The child never obtains the parent's fence.
#ifndef STRONGBOX_HA_COORDINATOR_H_
#define STRONGBOX_HA_COORDINATOR_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "strongbox/backend.h"
#include "strongbox/barrier.h"
#include "strongbox/clock.h"
#include "strongbox/key_wrapper.h"

namespace strongbox {

enum class HaState { kUninitialized, kSealed, kStandby, kPerfStandby, kActive };

// "uninitialized", "sealed", "standby", "perf_standby", "active".
absl::string_view HaStateName(HaState state);

enum class StandbyMode {
  kStandby,      // serves nothing; redirects every operation to the active
  kPerfStandby,  // serves reads locally; forwards writes to the active
};

// Whether an operation changes storage. SecretStore's operation table maps
// each request to one of these.
enum class OperationKind { kRead, kWrite };

// Where an operation must run, as Route() answers it.
struct RouteDecision {
  enum class Action {
    kServeLocally,      // run it here (writes: carry `fence`)
    kForwardToActive,   // perf standby, write: hand it to the active
    kRedirectToActive,  // plain standby: the client should go to the active
    kUnavailable,       // sealed, uninitialized, or no leader known yet
  };
  Action action = Action::kUnavailable;
  // The active node's advertise address; empty when unknown.
  std::string leader_address;
  // The active node's fence when known (this node's own when active).
  FenceToken fence = kNoFence;
  // Why, for kUnavailable (never contains secrets).
  std::string reason;
};

absl::string_view RouteActionName(RouteDecision::Action action);

// The active node as this node knows it.
struct LeaderInfo {
  std::string address;
  FenceToken fence = kNoFence;
  // When this node first saw that grant (its own activation time if self).
  absl::Time since;
  bool is_self = false;
};

// A snapshot in the spirit of `vault status`.
struct HaStatus {
  std::string node_id;
  bool initialized = false;
  bool sealed = true;
  int threshold = 0;
  int shares = 0;
  int progress = 0;
  uint32_t term = 0;
  // A rekey waits for CompleteRekey, and its config (SealStatus). Check it
  // before CancelRekey or before discarding any shares.
  bool rekey_pending = false;
  int rekey_shares = 0;
  int rekey_threshold = 0;
  HaState state = HaState::kUninitialized;
  StandbyMode standby_mode = StandbyMode::kStandby;
  std::string leader_address;   // empty when no leader is known
  FenceToken fence = kNoFence;  // the leader's fence
  absl::Time active_since = absl::InfinitePast();  // this node, if active
  std::string last_error;  // the last failed promotion/renewal, if any
  // Blocked takeovers (BlockedTakeoverEvent, backend.h) as the backend this
  // node contends through reports them (HaBackend::
  // blocked_takeover_status()): set while a grant attempt waits on a holder
  // that blocks it past its expiry (with LmdbBackend, a process hung inside
  // a write: "takeover waiting on holder pid P, fence F, reason"); the last
  // such holder killed, and how many. Always empty with a backend that has
  // no such failure mode.
  std::optional<BlockedTakeoverEvent> takeover_waiting;
  std::optional<BlockedTakeoverEvent> last_holder_killed;
  uint64_t holders_killed = 0;
  // "shamir", or the key wrapper's type() in auto mode (SealStatus).
  std::string seal_type = "shamir";
  // Auto mode, while sealed: why the last auto-unseal attempt failed
  // ("sealed: waiting for key wrapper: <reason>"); empty otherwise.
  std::string seal_error;
};

struct StateChange {
  HaState from;
  HaState to;
  std::string reason;
  FenceToken fence = kNoFence;  // the grant gained or lost, if any
  absl::Time at;
};

// Gets every state change of a node, for the host's logs and metrics.
//
// Threads. Events are delivered one at a time, in the order they happened,
// never under the coordinator's locks, and never on a backend's thread nor
// on the coordinator's loop thread (the one that contends for, renews and
// watches the lease), so a slow observer delays neither a takeover nor a
// renewal, and an observer may wait for the loop (e.g. for the node to
// become active) without deadlocking it:
//   * An event caused by a host call (Initialize(), Unseal(), Seal(),
//     StepDown(), ReportStaleFence(), VerifiedWriteFence(), Poll(), the
//     destructor) is delivered on that caller's thread before the call
//     returns, unless another thread is delivering at that moment (below).
//   * With the background thread, an event of the loop's (promotion,
//     demotion, a failed promotion, initialization noticed) and every
//     OnBlockedTakeover report is delivered on the coordinator's event
//     thread, a second thread of its own, promptly: a "waiting" report
//     reaches observers while the takeover still waits.
//   * Without it (Poll mode), an OnBlockedTakeover report is queued and
//     delivered by the next Poll() (or other call above).
// Whichever thread delivers takes every event queued by then, so an event
// may reach observers on another of these threads if that one is
// delivering already (it then delivers it, in order, before it stops).
class HaObserver {
 public:
  HaObserver() = default;
  virtual ~HaObserver() = default;
  HaObserver(const HaObserver&) = delete;
  HaObserver& operator=(const HaObserver&) = delete;
  virtual void OnStateChange(const StateChange& change) = 0;
  // This node's takeover waits on a holder that blocks it past its expiry,
  // or that holder was killed (BlockedTakeoverEvent; only backends with
  // that failure mode send these, e.g. LmdbBackend with a holder hung
  // inside a write). Delivered like state changes (see "Threads" above):
  // one at a time, in order with them, never under the coordinator's lock,
  // and never on the backend thread that noticed (the backend only queues
  // it; HaStatus shows it at once): on the event thread with the
  // background thread, by the next Poll() without it. Default: ignored.
  virtual void OnBlockedTakeover(const BlockedTakeoverEvent& event) {}
};

class HaCoordinator {
 public:
  struct Options {
    // Shared storage with the HA capability. Not owned. REQUIRED.
    Backend* backend = nullptr;
    // This node's name in logs and status. REQUIRED, non-empty.
    std::string node_id;
    // Where other nodes' clients reach this node; stored as the lease's
    // holder value, so the leader's address and fence travel together.
    // REQUIRED, non-empty, opaque to strongbox.
    std::string advertise_address;
    // What an unsealed node that is not active does. Default: kStandby.
    StandbyMode standby_mode = StandbyMode::kStandby;
    // Lease time-to-live: how long a hung or cut-off active keeps the lease
    // before a standby may take over. Default: 5 s. REQUIRES: > 0.
    absl::Duration lease_ttl = absl::Seconds(5);
    // How often the active renews. REQUIRES: 0 < renew_interval < lease_ttl.
    // Default: 1 s.
    absl::Duration renew_interval = absl::Seconds(1);
    // Wait after a failed promotion or a backend error before contending
    // again; doubles on each consecutive failure up to retry_backoff_max,
    // plus up to `retry_jitter` × the wait at random. Defaults: 100 ms,
    // 5 s, 0.5.
    absl::Duration retry_backoff = absl::Milliseconds(100);
    absl::Duration retry_backoff_max = absl::Seconds(5);
    double retry_jitter = 0.5;
    // After StepDown(), wait this long before contending again, so another
    // node takes the lease. Default: 1 s (0 allowed).
    absl::Duration step_down_pause = absl::Seconds(1);
    // Seal() wipes the keys and stops writes at once, then releases the
    // lease on a background thread and waits at most this long (real time)
    // for the release, so a backend that hangs (a peer stopped inside an
    // LMDB write transaction) cannot hold Seal() up. A release still
    // running then finishes in the background (the destructor waits for
    // it). Default: 1 s (0: never wait).
    absl::Duration seal_release_wait = absl::Seconds(1);
    // How often a standby re-reads who the leader is. Default: 500 ms.
    absl::Duration leader_refresh = absl::Milliseconds(500);
    // VerifiedWriteFence() asks the backend whether the grant is still
    // held at most once per this interval (monotonic clock) per grant, and
    // only one caller at a time: the others use the last answer. The
    // trade-off: a node deposed by the backend (broken lease, takeover)
    // before its loop noticed may serve Transit from its key cache for up
    // to this long (plus one backend read) after the deposition, instead
    // of every Transit request reading the backend and waiting behind the
    // grant's renewals. 0: verify on every call. Default: 10 ms.
    absl::Duration verify_interval = absl::Milliseconds(10);
    // Route() on a standby re-reads the leader from the backend only when
    // it knows none or its last reading is at least this old (monotonic
    // clock), and only one caller at a time (the others answer from the
    // cached leader). The trade-off: for up to this long after a failover
    // a standby may still name the previous leader (e.g. 20 ms spares the
    // backend a read per request under load, but a client retrying at once
    // after a failover may be sent to the old leader). Default: 0, read
    // on every call (callers arriving during a read still share it).
    absl::Duration route_leader_max_age = absl::ZeroDuration();
    // Time source. Not owned. Default: RealClock().
    Clock* clock = nullptr;
    // Run the election loop on a thread of the coordinator's own (true), or
    // only when the caller calls Poll() (false; deterministic tests).
    bool background_thread = true;
    // Seeds the backoff jitter (tests fix it). Default: 0x5eed.
    uint64_t seed = 0x5eed;
    // Called after the grant is won and the keyring reloaded, before the
    // node becomes active (post-unseal setup). A non-OK status aborts the
    // promotion (HA4). Must not call back into the coordinator. Optional.
    std::function<absl::Status(FenceToken fence)> on_activate;
    // Passed to the Barrier (see BarrierOptions).
    std::string core_prefix = "core/";
    // Auto-unseal (HA6; BarrierOptions::key_wrapper and escrow): Initialize
    // returns recovery shares and the node unseals itself. Not owned; must
    // outlive the coordinator. Default: nullptr (Shamir).
    KeyWrapper* key_wrapper = nullptr;
    bool escrow = false;
    // Wait after a failed auto-unseal; doubles per consecutive failure up
    // to the max, plus up to retry_jitter x the wait at random. Defaults:
    // 200 ms, 10 s. REQUIRES: 0 < backoff <= max.
    absl::Duration auto_unseal_backoff = absl::Milliseconds(200);
    absl::Duration auto_unseal_backoff_max = absl::Seconds(10);
  };

  // Validates the options and reads the seal configuration (so the node
  // starts kUninitialized or kSealed). INVALID_ARGUMENT for bad options,
  // FAILED_PRECONDITION for a backend without HA, backend errors pass.
  static absl::StatusOr<std::unique_ptr<HaCoordinator>> Create(Options options);

  // Stops the loop (joining its threads, after the event thread delivered
  // what was queued), releases any grant, seals. Clean
  // and safe from any thread except an observer callback.
  // Lease times: the node's own deadline (HA2) is the moment before the
  // grant (or renewal) began plus the TTL, measured on the clock's
  // monotonic reading (Clock::MonotonicNow()), as are renewals, backoff,
  // pauses and leader refreshes. A wall-clock step neither stretches nor
  // cuts a lease, and the backend's expiry (a time on the backend's clock)
  // is never compared with this node's clock. With the LMDB backend, a
  // peer process stopped inside an LMDB write transaction holds LMDB's
  // single writer lock, and shutdown (unlike Seal()) waits for it, as it
  // waits for a release Seal() left running (lmdb_backend.h).
  virtual ~HaCoordinator() = default;
  HaCoordinator(const HaCoordinator&) = delete;
  HaCoordinator& operator=(const HaCoordinator&) = delete;

  // ---- Seal operations (Barrier semantics; the coordinator keeps the
  // state right).

  // FAILED_PRECONDITION when initialized (the one exception: a retry after
  // this node's Initialize ended with an unknown outcome replaces that
  // attempt, see Barrier::Initialize). Leaves the node kSealed; in auto
  // mode the shares are recovery shares and the node then unseals itself
  // (HA6).
  virtual absl::StatusOr<std::vector<std::string>> Initialize(
      int shares, int threshold) = 0;
  // At the threshold the node becomes a standby and starts contending.
  virtual absl::StatusOr<SealStatus> Unseal(absl::string_view share) = 0;
  // Auto mode (HA6): one auto-unseal attempt now, on the caller's thread,
  // and re-arms the automatic retries an operator's Seal() stopped. The
  // Barrier::AutoUnseal codes (UNAVAILABLE while the wrapper is
  // unreachable: the retries go on). The default implementation (for
  // coordinators of other makes) is UNIMPLEMENTED.
  virtual absl::StatusOr<SealStatus> AutoUnseal() {
    return absl::UnimplementedError("auto-unseal is not supported");
  }
  virtual void ResetUnsealProgress() = 0;
  // Seals; if active, stops writes, then releases the lease at once. OK
  // when already sealed (idempotent). Bounded whatever the backend does:
  // it takes no lock held across backend I/O, wipes the keys and changes
  // the state first, and waits for the lease release at most
  // Options::seal_release_wait (the release then finishes in the
  // background). An Unseal() running concurrently fails with ABORTED.
  virtual absl::Status Seal() = 0;
  // Two-phase rekey (Barrier::Rekey / CompleteRekey / CancelRekey): the
  // new shares work only after CompleteRekey. In auto mode these rekey the
  // recovery key, authorized by a threshold of the recovery shares. Active only
  // (UNAVAILABLE with the leader's address otherwise). CancelRekey with no
  // rekey pending is FAILED_PRECONDITION (a lost CompleteRekey answer may have
  // applied); Status().rekey_pending tells.
  virtual absl::StatusOr<std::vector<std::string>> Rekey(
      absl::Span<const std::string> current_shares, int new_shares,
      int new_threshold) = 0;
  virtual absl::Status CompleteRekey(
      absl::Span<const std::string> new_shares) = 0;
  virtual absl::Status CancelRekey() = 0;
  // Seal migration (Barrier::MigrateToAuto / MigrateToShamir; active only,
  // UNAVAILABLE with the leader's address otherwise). Shamir -> auto needs
  // Options::key_wrapper; a threshold of unseal shares becomes the recovery
  // shares. Auto -> Shamir: a threshold of recovery shares becomes the
  // unseal shares. One atomic commit: a node killed half way leaves the
  // store in one seal type or the other, with the same shares valid, and
  // calling again settles an unknown outcome. Unsealed nodes keep their
  // keys; a sealed node with a key wrapper notices a migration to auto
  // within leader_refresh and unseals itself (HA6), and after a migration
  // to Shamir stops its attempts. Default implementation: UNIMPLEMENTED.
  virtual absl::Status MigrateSealToAuto(
      absl::Span<const std::string> unseal_shares) {
    return absl::UnimplementedError("seal migration is not supported");
  }
  virtual absl::Status MigrateSealToShamir(
      absl::Span<const std::string> recovery_shares) {
    return absl::UnimplementedError("seal migration is not supported");
  }
  // Wrapper key rotation (Barrier::RotateWrapperKey; active only,
  // UNAVAILABLE with the leader's address otherwise): a threshold of
  // recovery shares authorizes rewrapping the stored keys under the
  // wrapper's current key, in one commit. True if anything was rewrapped.
  // Every node's wrapper must hold the new key before, and the old one
  // until this applied. Default implementation: UNIMPLEMENTED.
  virtual absl::StatusOr<bool> RotateWrapperKey(
      absl::Span<const std::string> recovery_shares) {
    return absl::UnimplementedError("wrapper key rotation is not supported");
  }
  // Adds a barrier key term used for all new writes (active only);
  // returns the new term. Standbys follow when they meet it.
  virtual absl::StatusOr<uint32_t> Rotate() = 0;

  // ---- HA.

  // Gives up leadership if active (no-op otherwise) and waits
  // step_down_pause before contending again.
  virtual absl::Status StepDown() = 0;

  // Where an operation of `kind` must run. Cheap: it touches storage only
  // when the answer names the leader (a standby's redirect or forward, or
  // "no active node yet") and the cached leader is unknown or older than
  // Options::route_leader_max_age, and then reads the backend's current
  // holder once (HaBackend::CurrentHolder()), one caller at a time, so the
  // answer names the leader of (nearly) right now, not the one this node
  // last saw (unknown just after an election, dead just after a
  // failover). Serving locally never reads.
  virtual RouteDecision Route(OperationKind kind) = 0;

  // The fence for a write on this node: OK only while kActive and the
  // grant is unexpired (HA2). FAILED_PRECONDITION when sealed or
  // uninitialized; UNAVAILABLE (with the leader's address in the message
  // when known) for a standby or a lapsed active.
  virtual absl::StatusOr<FenceToken> WriteFence() = 0;

  // WriteFence(), and then asks the backend whether this node's grant is
  // still held (LeadershipGrant::Lost(), a cheap query on the grant), at
  // most once per Options::verify_interval and by one caller at a time. A
  // node whose grant the backend already ended (broken, taken over) before
  // its loop noticed steps down at once and gets what WriteFence() gives a
  // standby. For callers that trust state they cached as active (the
  // Transit key cache): a write needs no such check, since the backend
  // refuses a stale fence (HA5).
  virtual absl::StatusOr<FenceToken> VerifiedWriteFence() = 0;

  // Tells the coordinator that the backend refused a write carrying
  // `fence` because it is no longer the current grant. If this node is
  // still active under that fence it steps down at once (without waiting
  // for its loop to notice) and contends again. No-op otherwise.
  virtual void ReportStaleFence(FenceToken fence) = 0;

  // The active node, as last seen; NOT_FOUND when none is known.
  virtual absl::StatusOr<LeaderInfo> Leader() = 0;

  virtual HaState state() = 0;
  virtual HaStatus Status() = 0;

  // Data access through this node's barrier. Writes must carry
  // WriteFence(); the coordinator does not stop a caller from bypassing
  // Route(), but the backend refuses a stale fence (HA5). nullptr in a
  // forked child (see fork() above).
  virtual Barrier* barrier() = 0;

  virtual void AddObserver(HaObserver* observer) = 0;
  virtual void RemoveObserver(HaObserver* observer) = 0;

  // One non-blocking step of the election loop: try for the lease once if
  // standby and due, renew if active and due, notice a lost or expired
  // grant, notice initialization by another node; then delivers the queued
  // observer events (the backend's reports too). Only meaningful with
  // background_thread = false (with a thread it is allowed but redundant).
  virtual void Poll() = 0;

  // The earliest time at which Poll() has something to do (for tests that
  // step a fake clock from event to event).
  virtual absl::Time NextPollTime() = 0;

 protected:
  HaCoordinator() = default;
};

}  // namespace strongbox

#endif  // STRONGBOX_HA_COORDINATOR_H_
