#include "strongbox/ha_coordinator.h"

#include <algorithm>
#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "lib/ha/active_snapshot.h"
#include "lib/ha/fork_checked_coordinator.h"
#include "lib/ha/test_hooks.h"
#include "lib/util/mutex.h"
#include "lib/util/status_macros.h"

namespace strongbox {

absl::string_view HaStateName(HaState state) {
  switch (state) {
    case HaState::kUninitialized:
      return "uninitialized";
    case HaState::kSealed:
      return "sealed";
    case HaState::kStandby:
      return "standby";
    case HaState::kPerfStandby:
      return "perf_standby";
    case HaState::kActive:
      return "active";
  }
  return "unknown";
}

absl::string_view RouteActionName(RouteDecision::Action action) {
  switch (action) {
    case RouteDecision::Action::kServeLocally:
      return "serve_locally";
    case RouteDecision::Action::kForwardToActive:
      return "forward_to_active";
    case RouteDecision::Action::kRedirectToActive:
      return "redirect_to_active";
    case RouteDecision::Action::kUnavailable:
      return "unavailable";
  }
  return "unknown";
}

namespace {

std::atomic<bool> seal_gap_hook_set{false};
Mutex seal_gap_hook_mu;
std::function<void()>& SealGapHook()
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(seal_gap_hook_mu) {
  static auto* hook = new std::function<void()>();
  return *hook;
}

void RunSealGapHook() {
  if (!seal_gap_hook_set.load(std::memory_order_acquire)) return;
  std::function<void()> hook;
  {
    MutexLock lock(&seal_gap_hook_mu);
    hook = SealGapHook();
  }
  if (hook) hook();
}

}  // namespace

void ha_testing::SetSealGapHook(std::function<void()> hook) {
  MutexLock lock(&seal_gap_hook_mu);
  seal_gap_hook_set.store(hook != nullptr, std::memory_order_release);
  SealGapHook() = std::move(hook);
}

namespace {

bool IsStandby(HaState s) {
  return s == HaState::kStandby || s == HaState::kPerfStandby;
}

absl::Status ValidateOptions(const HaCoordinator::Options& o) {
  if (o.backend == nullptr) {
    return absl::InvalidArgumentError("options.backend is required");
  }
  if (o.node_id.empty()) {
    return absl::InvalidArgumentError("options.node_id is empty");
  }
  if (o.advertise_address.empty()) {
    return absl::InvalidArgumentError("options.advertise_address is empty");
  }
  if (o.lease_ttl <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("options.lease_ttl must be positive");
  }
  if (o.renew_interval <= absl::ZeroDuration() ||
      o.renew_interval >= o.lease_ttl) {
    return absl::InvalidArgumentError(
        "options.renew_interval must be positive and less than lease_ttl");
  }
  if (o.retry_backoff <= absl::ZeroDuration() ||
      o.retry_backoff_max < o.retry_backoff) {
    return absl::InvalidArgumentError(
        "options.retry_backoff must be positive and <= retry_backoff_max");
  }
  if (o.retry_jitter < 0 || o.retry_jitter > 10) {
    return absl::InvalidArgumentError(
        "options.retry_jitter must be within [0, 10]");
  }
  if (o.step_down_pause < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "options.step_down_pause must not be negative");
  }
  if (o.seal_release_wait < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "options.seal_release_wait must not be negative");
  }
  if (o.verify_interval < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "options.verify_interval must not be negative");
  }
  if (o.route_leader_max_age < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "options.route_leader_max_age must not be negative");
  }
  if (o.auto_unseal_backoff <= absl::ZeroDuration() ||
      o.auto_unseal_backoff_max < o.auto_unseal_backoff) {
    return absl::InvalidArgumentError(
        "options.auto_unseal_backoff must be positive and <= "
        "auto_unseal_backoff_max");
  }
  if (o.escrow && o.key_wrapper == nullptr) {
    return absl::InvalidArgumentError("options.escrow needs a key_wrapper");
  }
  if (o.leader_refresh <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "options.leader_refresh must be positive");
  }
  return absl::OkStatus();
}

// An observer event waiting for delivery: a state change, or a blocked
// takeover the backend reported.
struct PendingEvent {
  StateChange change;
  std::optional<BlockedTakeoverEvent> takeover;
};

class HaCoordinatorImpl;

// Forwards the backend's blocked-takeover reports to the coordinator.
class TakeoverSink final : public BlockedTakeoverObserver {
 public:
  explicit TakeoverSink(HaCoordinatorImpl* coordinator)
      : coordinator_(coordinator) {}
  void OnBlockedTakeover(const BlockedTakeoverEvent& event) override;

 private:
  HaCoordinatorImpl* const coordinator_;
};

class HaCoordinatorImpl final : public HaCoordinator {
 public:
  HaCoordinatorImpl(Options options, std::unique_ptr<Barrier> barrier,
                    bool initialized, bool auto_mode)
      : options_(std::move(options)),
        clock_(options_.clock != nullptr ? options_.clock : RealClock()),
        ha_(options_.backend->ha()),
        barrier_(std::move(barrier)),
        state_(initialized ? HaState::kSealed : HaState::kUninitialized),
        published_state_(initialized ? HaState::kSealed
                                     : HaState::kUninitialized),
        auto_mode_(auto_mode),
        rng_(options_.seed),
        takeover_sink_(this) {
    // Before the loop starts: its first grant attempt may be the one that
    // waits.
    ha_->AddBlockedTakeoverObserver(&takeover_sink_);
    if (options_.background_thread) {
      event_thread_ = std::thread([this] { EventLoop(); });
      thread_ = std::thread([this] { Loop(); });
    }
  }

  ~HaCoordinatorImpl() override {
    // First, so the backend never calls into a coordinator being destroyed
    // (it returns once no call is in flight).
    ha_->RemoveBlockedTakeoverObserver(&takeover_sink_);
    {
      MutexLock lock(&loop_mu_);
      stopping_ = true;
    }
    CancelAcquire();
    loop_mu_.SignalAll();
    if (thread_.joinable()) thread_.join();
    std::shared_ptr<LeadershipGrant> grant;
    {
      WriterLock lock(&mu_);
      if (state_ == HaState::kActive) {
        grant = LeaveActiveLocked(HaState::kSealed, "coordinator shut down",
                                  absl::ZeroDuration());
      } else if (IsStandby(state_)) {
        SetStateLocked(HaState::kSealed, "coordinator shut down", kNoFence);
      }
    }
    barrier_->Seal();
    if (grant != nullptr) grant->Release().IgnoreError();
    StopReleaser();
    StopEventThread();
    DeliverEvents();
  }

  // ------------------------------------------------------ seal operations

  // Seal operations run under seal_mu_ and deliver their observer events
  // after releasing it, so an observer may call any of them.
  absl::StatusOr<std::vector<std::string>> Initialize(int shares,
                                                      int threshold) override {
    absl::StatusOr<std::vector<std::string>> result =
        InitializeUnderSealLock(shares, threshold);
    DeliverEvents();
    return result;
  }

  absl::StatusOr<SealStatus> Unseal(absl::string_view share) override {
    absl::StatusOr<SealStatus> result = UnsealUnderSealLock(share);
    DeliverEvents();
    Kick();
    return result;
  }

  absl::StatusOr<SealStatus> AutoUnseal() override {
    absl::StatusOr<SealStatus> result = TryAutoUnseal(/*explicit_call=*/true);
    DeliverEvents();
    Kick();
    return result;
  }

  absl::Status Seal() override {
    {
      // HA6: an operator's seal stays until an explicit unseal.
      WriterLock lock(&mu_);
      operator_sealed_ = true;
    }
    SealNow();
    DeliverEvents();
    Kick();
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<std::string>> InitializeUnderSealLock(
      int shares, int threshold) {
    MutexLock seal_lock(&seal_mu_);
    {
      ReaderLock lock(&mu_);
      // A sealed node asks the barrier too: only it can tell its own
      // Initialize whose outcome was unknown (retrying replaces exactly that
      // attempt, barrier.h) from somebody else's initialization.
      if (state_ != HaState::kUninitialized && state_ != HaState::kSealed) {
        return absl::FailedPreconditionError("already initialized");
      }
    }
    absl::StatusOr<std::vector<std::string>> result =
        barrier_->Initialize(shares, threshold);
    if (!result.ok()) {
      // Another node may have initialized the backend first (the barrier
      // says FAILED_PRECONDITION then, as a key wrapper does for its own
      // configuration faults: ask the backend which it was).
      if (absl::IsFailedPrecondition(result.status())) RefreshInitialized();
      return result.status();
    }
    MarkInitialized("initialized");
    if (options_.key_wrapper != nullptr) {
      // HA6: the node unseals itself next (the loop, or the next Poll()).
      WriterLock lock(&mu_);
      auto_mode_ = true;
      next_auto_unseal_ = Mono();
      auto_failures_ = 0;
    }
    Kick();
    return result;
  }

  absl::StatusOr<SealStatus> UnsealUnderSealLock(absl::string_view share) {
    MutexLock seal_lock(&seal_mu_);
    RefreshInitialized();
    uint64_t epoch;
    {
      ReaderLock lock(&mu_);
      if (state_ == HaState::kUninitialized) {
        return absl::FailedPreconditionError("not initialized");
      }
      epoch = epoch_;
    }
    absl::StatusOr<SealStatus> result = barrier_->Unseal(share);
    if (!result.ok()) return result;
    if (!result->sealed) {
      RETURN_IF_ERROR(BecomeUnsealed(epoch, "unsealed"));
    }
    return result;
  }

  // After the barrier unsealed (by shares or by the key wrapper): the node
  // becomes a standby, unless Seal() ran meanwhile (ABORTED).
  absl::Status BecomeUnsealed(uint64_t epoch, absl::string_view reason) {
    bool sealed_meanwhile = false;
    {
      WriterLock lock(&mu_);
      if (epoch_ != epoch) {
        sealed_meanwhile = true;
      } else {
        operator_sealed_ = false;
        auto_failures_ = 0;
        seal_error_.clear();
        if (state_ == HaState::kSealed) {
          SetStateLocked(StandbyState(), std::string(reason), kNoFence);
          next_attempt_ = Mono();
          failures_ = 0;
        }
      }
    }
    if (sealed_meanwhile) {
      // Seal() does not wait for seal operations (it must return at once
      // whatever the backend does), so it may have run while the barrier
      // was unsealing: the seal wins.
      barrier_->Seal();
      return absl::AbortedError("sealed while unsealing; unseal again");
    }
    return absl::OkStatus();
  }

  // HA6: whether the loop should try to auto-unseal this sealed node.
  bool AutoUnsealArmedLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return options_.key_wrapper != nullptr && auto_mode_ && !operator_sealed_;
  }

  // One auto-unseal attempt (HA6). `explicit_call`: the host's AutoUnseal(),
  // which re-arms the retries an operator's Seal() stopped.
  absl::StatusOr<SealStatus> TryAutoUnseal(bool explicit_call) {
    MutexLock seal_lock(&seal_mu_);
    RefreshInitialized();
    uint64_t epoch;
    {
      WriterLock lock(&mu_);
      if (state_ == HaState::kUninitialized) {
        return absl::FailedPreconditionError("not initialized");
      }
      if (explicit_call) {
        operator_sealed_ = false;
      } else if (state_ != HaState::kSealed || !AutoUnsealArmedLocked()) {
        return absl::FailedPreconditionError("auto-unseal is not due");
      }
      epoch = epoch_;
    }
    absl::StatusOr<SealStatus> result = barrier_->AutoUnseal();
    if (result.ok() && !result->sealed) {
      RETURN_IF_ERROR(BecomeUnsealed(epoch, "auto-unsealed by key wrapper"));
      return result;
    }
    if (!result.ok()) {
      // Migrated to Shamir meanwhile: stop trying (shares unseal now).
      absl::StatusOr<SealStatus> stored = barrier_->Status();
      WriterLock lock(&mu_);
      if (stored.ok() && stored->initialized && !stored->auto_unseal) {
        auto_mode_ = false;
        seal_error_.clear();
        return result;
      }
      if (epoch_ == epoch && state_ == HaState::kSealed) {
        seal_error_ = absl::StrCat("sealed: waiting for key wrapper: ",
                                   result.status().message());
        next_auto_unseal_ = Mono() + NextAutoUnsealBackoffLocked();
        // A self-transition per failed attempt, so observers see each one.
        SetStateLocked(HaState::kSealed, seal_error_, kNoFence);
      }
    }
    return result;
  }

  void ResetUnsealProgress() override {
    MutexLock seal_lock(&seal_mu_);
    barrier_->ResetUnsealProgress();
  }

  // Seals without waiting on the backend or on other seal operations
  // (which may be stuck in backend I/O under seal_mu_): writes stop, the
  // state turns kSealed and the keys are wiped before anything can block;
  // the lease release then runs on the releaser thread, and Seal() waits
  // for it at most options_.seal_release_wait.
  void SealNow() {
    std::shared_ptr<LeadershipGrant> grant;
    std::shared_ptr<Cancellation> cancel;
    {
      WriterLock lock(&mu_);
      // A promotion or an Unseal in flight notices (HA1).
      ++epoch_;
      cancel = current_cancel_;
      if (state_ == HaState::kActive) {
        // HA3: stop writes first.
        grant =
            LeaveActiveLocked(HaState::kSealed, "sealed", absl::ZeroDuration());
      } else if (IsStandby(state_)) {
        SetStateLocked(HaState::kSealed, "sealed", kNoFence);
      }
    }
    if (cancel != nullptr) cancel->Cancel();
    RunSealGapHook();
    // HA1: no key material once sealed.
    barrier_->Seal();
    {
      // An Unseal() that read epoch_ after the bump above and finished
      // unsealing the barrier before the wipe saw no change and made the
      // node a standby with a sealed barrier: seal it again. (One that
      // unsealed the barrier after the wipe stands: the barrier is open.)
      WriterLock lock(&mu_);
      ++epoch_;
      if (IsStandby(state_) && barrier_->sealed()) {
        SetStateLocked(HaState::kSealed, "sealed", kNoFence);
      }
    }
    if (grant != nullptr) {
      ReleaseInBackground(std::move(grant), options_.seal_release_wait);
    }
  }

  // Hands `grant` to the releaser thread and waits up to `wait` (real
  // time) for its release to finish.
  void ReleaseInBackground(std::shared_ptr<LeadershipGrant> grant,
                           absl::Duration wait) {
    uint64_t ticket;
    {
      MutexLock lock(&release_mu_);
      release_queue_.push_back(std::move(grant));
      ticket = ++releases_queued_;
      if (!releaser_.joinable()) {
        releaser_ = std::thread([this] { ReleaseLoop(); });
      }
    }
    release_mu_.SignalAll();
    MutexLock lock(&release_mu_);
    release_mu_.AwaitWithTimeout(
        [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(release_mu_) {
          return releases_done_ >= ticket;
        },
        wait);
  }

  void ReleaseLoop() {
    while (true) {
      std::shared_ptr<LeadershipGrant> grant;
      {
        MutexLock lock(&release_mu_);
        release_mu_.Await([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(release_mu_) {
          return releaser_stopping_ || !release_queue_.empty();
        });
        if (release_queue_.empty()) return;  // stopping, and drained
        grant = std::move(release_queue_.front());
        release_queue_.pop_front();
      }
      grant->Release().IgnoreError();
      grant.reset();
      {
        MutexLock lock(&release_mu_);
        ++releases_done_;
      }
      release_mu_.SignalAll();
    }
  }

  // Waits for every queued release (a grant must not outlive the backend).
  void StopReleaser() {
    {
      MutexLock lock(&release_mu_);
      releaser_stopping_ = true;
    }
    release_mu_.SignalAll();
    if (releaser_.joinable()) releaser_.join();
  }

  absl::StatusOr<std::vector<std::string>> Rekey(
      absl::Span<const std::string> current_shares, int new_shares,
      int new_threshold) override {
    MutexLock seal_lock(&seal_mu_);
    ASSIGN_OR_RETURN(FenceToken fence, WriteFence());
    return barrier_->Rekey(current_shares, new_shares, new_threshold, fence);
  }

  absl::Status CompleteRekey(
      absl::Span<const std::string> new_shares) override {
    MutexLock seal_lock(&seal_mu_);
    ASSIGN_OR_RETURN(FenceToken fence, WriteFence());
    return barrier_->CompleteRekey(new_shares, fence);
  }

  absl::Status CancelRekey() override {
    MutexLock seal_lock(&seal_mu_);
    ASSIGN_OR_RETURN(FenceToken fence, WriteFence());
    return barrier_->CancelRekey(fence);
  }

  absl::Status MigrateSealToAuto(
      absl::Span<const std::string> unseal_shares) override {
    MutexLock seal_lock(&seal_mu_);
    ASSIGN_OR_RETURN(FenceToken fence, WriteFence());
    RETURN_IF_ERROR(barrier_->MigrateToAuto(unseal_shares, fence));
    WriterLock lock(&mu_);
    auto_mode_ = true;
    return absl::OkStatus();
  }

  absl::Status MigrateSealToShamir(
      absl::Span<const std::string> recovery_shares) override {
    MutexLock seal_lock(&seal_mu_);
    ASSIGN_OR_RETURN(FenceToken fence, WriteFence());
    RETURN_IF_ERROR(barrier_->MigrateToShamir(recovery_shares, fence));
    WriterLock lock(&mu_);
    auto_mode_ = false;
    return absl::OkStatus();
  }

  absl::StatusOr<bool> RotateWrapperKey(
      absl::Span<const std::string> recovery_shares) override {
    MutexLock seal_lock(&seal_mu_);
    ASSIGN_OR_RETURN(FenceToken fence, WriteFence());
    return barrier_->RotateWrapperKey(recovery_shares, fence);
  }

  absl::StatusOr<uint32_t> Rotate() override {
    MutexLock seal_lock(&seal_mu_);
    ASSIGN_OR_RETURN(FenceToken fence, WriteFence());
    return barrier_->Rotate(fence);
  }

  // ------------------------------------------------------------------ HA

  absl::Status StepDown() override {
    std::shared_ptr<LeadershipGrant> grant;
    {
      WriterLock lock(&mu_);
      if (state_ != HaState::kActive) return absl::OkStatus();
      grant = LeaveActiveLocked(StandbyState(), "stepped down",
                                options_.step_down_pause);
    }
    if (grant != nullptr) grant->Release().IgnoreError();
    DeliverEvents();
    Kick();
    return absl::OkStatus();
  }

  RouteDecision Route(OperationKind kind) override {
    const absl::Duration now = Mono();
    // The active's answer, without mu_ (RouteLocked's kActive case).
    if (const FenceToken fence = ActiveFence(now, /*verified=*/false);
        fence != kNoFence) {
      RouteDecision d;
      d.action = RouteDecision::Action::kServeLocally;
      d.leader_address = options_.advertise_address;
      d.fence = fence;
      return d;
    }
    bool needs_leader = false;
    RouteDecision cached;
    {
      ReaderLock lock(&mu_);
      cached = RouteLocked(kind, now, &needs_leader);
      if (!needs_leader) return cached;
      // A standby's answer names the leader (or says there is none). The
      // cached one may be unknown (just after an election: the loop learns
      // it only every leader_refresh) or dead (just after a failover), so
      // read the backend's current holder unless the cached reading is
      // fresh.
      if (leader_known_ &&
          now - leader_read_at_ < options_.route_leader_max_age) {
        return cached;
      }
    }
    // One reader at a time (no lock held across the read); the others
    // answer from the cache. If the read fails, the cached leader is the
    // best answer left.
    if (leader_reading_.exchange(true, std::memory_order_acq_rel)) {
      return cached;
    }
    RefreshLeader();
    leader_reading_.store(false, std::memory_order_release);
    ReaderLock lock(&mu_);
    return RouteLocked(kind, Mono(), &needs_leader);
  }

  // Route()'s answer from what this node knows; *needs_leader is set when
  // the answer names the leader (or its absence) on a standby.
  RouteDecision RouteLocked(OperationKind kind, absl::Duration now,
                            bool* needs_leader)
      ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    RouteDecision d;
    if (leader_known_) {
      d.leader_address = leader_.address;
      d.fence = leader_.fence;
    }
    switch (state_) {
      case HaState::kUninitialized:
        d.reason = "not initialized";
        return d;
      case HaState::kSealed:
        d.reason = "sealed";
        return d;
      case HaState::kActive:
        if (now >= lease_expiry_) {
          // HA2: a node that hung past its TTL refuses at once.
          d.leader_address.clear();
          d.fence = kNoFence;
          d.reason = "leadership lapsed: lease not renewed in time";
          return d;
        }
        d.action = RouteDecision::Action::kServeLocally;
        d.leader_address = options_.advertise_address;
        d.fence = fence_;
        return d;
      case HaState::kPerfStandby:
        if (kind == OperationKind::kRead) {
          d.action = RouteDecision::Action::kServeLocally;
          return d;
        }
        *needs_leader = true;
        if (!leader_known_) {
          d.reason = "no active node yet";
          return d;
        }
        d.action = RouteDecision::Action::kForwardToActive;
        return d;
      case HaState::kStandby:
        *needs_leader = true;
        if (!leader_known_) {
          d.reason = "no active node yet";
          return d;
        }
        d.action = RouteDecision::Action::kRedirectToActive;
        return d;
    }
    return d;
  }

  absl::StatusOr<FenceToken> WriteFence() override {
    const absl::Duration now = Mono();
    if (const FenceToken fence = ActiveFence(now, /*verified=*/false);
        fence != kNoFence) {
      return fence;
    }
    ReaderLock lock(&mu_);
    if (state_ == HaState::kActive && now < lease_expiry_) return fence_;
    if (state_ == HaState::kSealed || state_ == HaState::kUninitialized) {
      // Do not retry until the state changes (DESIGN.md status codes).
      return absl::FailedPreconditionError(
          absl::StrCat("this node is ", HaStateName(state_)));
    }
    if (leader_known_ && state_ != HaState::kActive) {
      return absl::UnavailableError(absl::StrCat(
          "this node is not active; the active node is at ", leader_.address));
    }
    return absl::UnavailableError(
        absl::StrCat("this node is not active (", HaStateName(state_),
                     state_ == HaState::kActive ? ", lease lapsed" : "",
                     ") and no active node is known"));
  }

  absl::StatusOr<FenceToken> VerifiedWriteFence() override {
    // One clock read and no lock on the hot path: the last answer from the
    // backend is kept under mu_ (written once per verify_interval at most,
    // so the writer lock below is rare) and published in active_.
    const absl::Duration now = Mono();
    if (const FenceToken fence = ActiveFence(now, /*verified=*/true);
        fence != kNoFence) {
      return fence;
    }
    const bool every_time = options_.verify_interval <= absl::ZeroDuration();
    FenceToken fence = kNoFence;
    bool answered_before = false;  // a previous answer for this fence
    std::shared_ptr<LeadershipGrant> grant;
    {
      ReaderLock lock(&mu_);
      if (state_ == HaState::kActive && now < lease_expiry_ &&
          grant_ != nullptr) {
        fence = fence_;
        if (!every_time && verified_fence_ == fence) {
          answered_before = true;
          if (now - verified_at_ < options_.verify_interval) return fence;
          // Another caller is asking about this grant: use the previous
          // answer.
          if (verifying_fence_.load(std::memory_order_acquire) == fence) {
            return fence;
          }
        }
        grant = grant_;
      }
    }
    if (grant == nullptr) return WriteFence();  // not active: the error
    // HA2 is this node's own reckoning; the backend may already have ended
    // the grant (broken, taken over) before the loop looks again. Ask it,
    // but at most once per verify_interval and one caller at a time: on
    // LMDB, Lost() may wait behind a renewal's write.
    // The flag names the fence being asked about, so a caller still
    // waiting on an earlier grant's answer does not stand for this one.
    FenceToken asking = kNoFence;
    const bool flagged =
        !every_time && verifying_fence_.compare_exchange_strong(
                           asking, fence, std::memory_order_acq_rel);
    if (!flagged && asking == fence && answered_before) {
      return fence;  // another caller is asking about it right now
    }
    const bool lost = grant->Lost();
    if (!lost && !every_time) {
      WriterLock lock(&mu_);
      if (fence_ == fence) {
        verified_fence_ = fence;
        verified_at_ = now;
        PublishActiveLocked();
      }
    }
    if (flagged) verifying_fence_.store(kNoFence, std::memory_order_release);
    if (!lost) return fence;
    // Off the request thread: the release and the successor's read may
    // wait on the backend (Route() reads the leader when it needs it).
    DemoteIfCurrent(grant, "lease lost", /*in_background=*/true);
    return WriteFence();
  }

  void ReportStaleFence(FenceToken fence) override {
    std::shared_ptr<LeadershipGrant> grant;
    {
      WriterLock lock(&mu_);
      if (state_ != HaState::kActive || fence_ != fence) return;
      grant = LeaveActiveLocked(StandbyState(),
                                "the backend refused this node's fence",
                                absl::ZeroDuration());
    }
    if (grant != nullptr) grant->Release().IgnoreError();
    RefreshLeader();
    DeliverEvents();
    Kick();
  }

  absl::StatusOr<LeaderInfo> Leader() override {
    ReaderLock lock(&mu_);
    if (!leader_known_) return absl::NotFoundError("no active node is known");
    return leader_;
  }

  // Without mu_: state_ as last set (published_state_). Every request asks
  // this at least once, and the answer may be stale the moment it is
  // returned with or without the lock. SetStateLocked() clears the active's
  // snapshot before it publishes the state, so a caller that sees a state
  // other than kActive here gets no fence from the lock-free paths of
  // Route(), WriteFence() and VerifiedWriteFence() either.
  HaState state() override {
    return published_state_.load(std::memory_order_acquire);
  }

  // The coordinator's own view, plus the backend's blocked-takeover report
  // (no I/O), read outside mu_.
  HaStatus Status() override {
    HaStatus s = OwnStatus();
    BlockedTakeoverStatus blocked = ha_->blocked_takeover_status();
    s.takeover_waiting = std::move(blocked.waiting);
    s.last_holder_killed = std::move(blocked.last_kill);
    s.holders_killed = blocked.kills;
    return s;
  }

  HaStatus OwnStatus() {
    HaStatus s;
    absl::StatusOr<SealStatus> seal = barrier_->Status();
    ReaderLock lock(&mu_);
    s.node_id = options_.node_id;
    s.state = state_;
    s.standby_mode = options_.standby_mode;
    if (seal.ok()) {
      s.initialized = seal->initialized;
      s.sealed = seal->sealed;
      s.threshold = seal->threshold;
      s.shares = seal->shares;
      s.progress = seal->progress;
      s.term = seal->term;
      s.rekey_pending = seal->rekey_pending;
      s.rekey_shares = seal->rekey_shares;
      s.rekey_threshold = seal->rekey_threshold;
      s.seal_type = seal->seal_type;
    } else {
      s.initialized = state_ != HaState::kUninitialized;
      s.sealed = barrier_->sealed();
      s.last_error = seal.status().ToString();
    }
    if (leader_known_) {
      s.leader_address = leader_.address;
      s.fence = leader_.fence;
    }
    if (state_ == HaState::kActive) s.active_since = active_since_;
    if (s.last_error.empty()) s.last_error = last_error_;
    if (state_ == HaState::kSealed) s.seal_error = seal_error_;
    return s;
  }

  Barrier* barrier() override { return barrier_.get(); }

  void AddObserver(HaObserver* observer) override {
    MutexLock lock(&observers_mu_);
    observers_.push_back(observer);
  }

  void RemoveObserver(HaObserver* observer) override {
    {
      MutexLock lock(&observers_mu_);
      observers_.erase(
          std::remove(observers_.begin(), observers_.end(), observer),
          observers_.end());
    }
    // A delivery in progress on another thread may still hold `observer`
    // in its copy of the list: wait for it, so the caller may destroy the
    // observer on return. (From inside a callback there is nothing to wait
    // for: the caller is the deliverer.)
    if (deliverer_.load() != std::this_thread::get_id()) {
      MutexLock wait(&deliver_mu_);
    }
  }

  void Poll() override {
    Step(/*may_block=*/false);
    // Also what the backend reported since the last delivery (Poll mode has
    // no event thread).
    DeliverEvents();
  }

  // From the backend (TakeoverSink), on the backend's own thread (LMDB: the
  // watchdog of a grant attempt, which that attempt joins before it
  // returns). Only queues the event, in order with the state changes, and
  // wakes the event thread: no observer runs on the backend's thread, so a
  // slow or blocking observer can neither stall the takeover nor deadlock
  // with this node's loop (blocked in that very takeover). Without the
  // background thread, the next Poll() (or any call that delivers events)
  // delivers it.
  void QueueBlockedTakeover(const BlockedTakeoverEvent& event) {
    {
      WriterLock lock(&mu_);
      PendingEvent pending;
      pending.takeover = event;
      pending_events_.push_back(std::move(pending));
    }
    WakeEventThread();
  }

  absl::Time NextPollTime() override {
    const absl::Time wall = clock_->Now();
    const absl::Duration now = Mono();
    absl::Duration next;
    {
      ReaderLock lock(&mu_);
      next = NextPollMonoLocked(now);
    }
    if (next == absl::InfiniteDuration()) return absl::InfiniteFuture();
    return wall + std::max(next - now, absl::ZeroDuration());
  }

 private:
  // This node's schedule runs on the monotonic clock (clock.h): a wall-clock
  // step neither stretches nor cuts a lease, a backoff or a pause.
  absl::Duration Mono() const { return clock_->MonotonicNow(); }

  // When Poll() next has something to do, on the monotonic clock.
  absl::Duration NextPollMonoLocked(absl::Duration now)
      ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    switch (state_) {
      case HaState::kUninitialized:
        return next_leader_refresh_;
      case HaState::kSealed:
        if (AutoUnsealArmedLocked()) return std::max(next_auto_unseal_, now);
        if (options_.key_wrapper != nullptr && !operator_sealed_) {
          return std::max(next_leader_refresh_, now);  // watch migrations
        }
        return absl::InfiniteDuration();
      case HaState::kStandby:
      case HaState::kPerfStandby:
        return std::max(next_attempt_, now);
      case HaState::kActive:
        return std::min(next_renew_, lease_expiry_);
    }
    return now;
  }

  HaState StandbyState() const {
    return options_.standby_mode == StandbyMode::kPerfStandby
               ? HaState::kPerfStandby
               : HaState::kStandby;
  }

  // Records a state change and queues the observer event.
  void SetStateLocked(HaState to, std::string reason, FenceToken fence)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    StateChange change{state_, to, std::move(reason), fence, clock_->Now()};
    // Whatever the change, the active's snapshot goes with it, before the
    // new state is visible (state() reads it without mu_); a new active
    // publishes its own once its grant and lease are set.
    active_.Clear();
    state_ = to;
    published_state_.store(to, std::memory_order_release);
    PendingEvent event;
    event.change = std::move(change);
    pending_events_.push_back(std::move(event));
  }

  // This node's fence if the snapshot (active_) says, without mu_, that it
  // is active with its lease unexpired at `now` (and, with `verified`, that
  // the backend confirmed the grant within verify_interval); kNoFence if it
  // does not or a write is under way: the caller then asks under mu_.
  FenceToken ActiveFence(absl::Duration now, bool verified) const {
    ha_internal::ActiveSnapshot::View v;
    if (!active_.Read(&v) || now >= v.lease_until) return kNoFence;
    if (verified && now >= v.verified_until) return kNoFence;
    return v.fence;
  }

  // Publishes what Route(), WriteFence() and VerifiedWriteFence() answer on
  // an active node without mu_ (active_): the conditions of their locked
  // paths, as deadlines.
  void PublishActiveLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (state_ != HaState::kActive || grant_ == nullptr) {
      active_.Clear();
      return;
    }
    ha_internal::ActiveSnapshot::View v;
    v.fence = fence_;
    v.lease_until = lease_expiry_;
    if (options_.verify_interval > absl::ZeroDuration() &&
        verified_fence_ == fence_) {
      v.verified_until = verified_at_ + options_.verify_interval;
    }
    active_.Publish(v);
  }

  // HA3: the state changes first (writes stop), the caller then releases the
  // returned grant outside the lock and delivers the events.
  std::shared_ptr<LeadershipGrant> LeaveActiveLocked(HaState to,
                                                     std::string reason,
                                                     absl::Duration pause)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const FenceToken lost = fence_;
    SetStateLocked(to, std::move(reason), lost);
    fence_ = kNoFence;
    lease_expiry_ = -absl::InfiniteDuration();
    active_since_ = absl::InfinitePast();
    renew_failing_ = false;
    leader_known_ = false;
    const absl::Duration now = Mono();
    next_attempt_ = now + pause;
    next_leader_refresh_ = now;
    return std::move(grant_);
  }

  void MarkInitialized(absl::string_view reason) {
    {
      WriterLock lock(&mu_);
      if (state_ != HaState::kUninitialized) return;
      SetStateLocked(HaState::kSealed, std::string(reason), kNoFence);
    }
  }

  // An uninitialized node checks whether another node initialized.
  void RefreshInitialized() {
    {
      ReaderLock lock(&mu_);
      if (state_ != HaState::kUninitialized) return;
    }
    absl::StatusOr<SealStatus> seal = barrier_->Status();
    if (seal.ok() && seal->initialized) {
      {
        WriterLock lock(&mu_);
        auto_mode_ = seal->auto_unseal;
      }
      MarkInitialized("initialized by another node");
    }
  }

  absl::Duration NextBackoffLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    ++failures_;
    absl::Duration wait = options_.retry_backoff;
    for (int i = 1; i < failures_ && wait < options_.retry_backoff_max; ++i) {
      wait *= 2;
    }
    wait = std::min(wait, options_.retry_backoff_max);
    std::uniform_real_distribution<double> jitter(0.0, options_.retry_jitter);
    return wait * (1.0 + jitter(rng_));
  }

  absl::Duration NextAutoUnsealBackoffLocked()
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    ++auto_failures_;
    absl::Duration wait = options_.auto_unseal_backoff;
    for (int i = 1;
         i < auto_failures_ && wait < options_.auto_unseal_backoff_max; ++i) {
      wait *= 2;
    }
    wait = std::min(wait, options_.auto_unseal_backoff_max);
    std::uniform_real_distribution<double> jitter(0.0, options_.retry_jitter);
    return wait * (1.0 + jitter(rng_));
  }

  void RefreshLeader() {
    const absl::Duration read_started = Mono();
    absl::StatusOr<std::optional<LeaseHolder>> holder = ha_->CurrentHolder();
    const absl::Duration now = Mono();
    const absl::Time wall = clock_->Now();
    WriterLock lock(&mu_);
    next_leader_refresh_ = now + options_.leader_refresh;
    if (!holder.ok()) {
      last_error_ =
          absl::StrCat("reading the leader: ", holder.status().ToString());
      return;
    }
    if (state_ == HaState::kActive) return;
    leader_read_at_ = read_started;
    if (!holder->has_value()) {
      leader_known_ = false;
      return;
    }
    if (!leader_known_ || leader_.fence != (*holder)->fence) {
      leader_.since = wall;
    }
    leader_known_ = true;
    leader_.address = (*holder)->holder;
    leader_.fence = (*holder)->fence;
    leader_.is_self = false;
  }

  // One step of the election loop. With `may_block`, a standby waits in
  // Acquire (bounded by leader_refresh) instead of trying once.
  void Step(bool may_block) {
    const absl::Duration now = Mono();
    HaState state;
    bool refresh_due;
    absl::Duration next_attempt;
    std::shared_ptr<LeadershipGrant> grant;
    {
      ReaderLock lock(&mu_);
      state = state_;
      refresh_due = now >= next_leader_refresh_;
      next_attempt = next_attempt_;
      grant = grant_;
    }
    switch (state) {
      case HaState::kUninitialized:
        if (refresh_due) {
          {
            WriterLock lock(&mu_);
            next_leader_refresh_ = now + options_.leader_refresh;
          }
          RefreshInitialized();
          DeliverEvents();
        }
        return;
      case HaState::kSealed: {
        bool due;
        bool watch_migration;
        {
          ReaderLock lock(&mu_);
          due = AutoUnsealArmedLocked() && now >= next_auto_unseal_;
          watch_migration = options_.key_wrapper != nullptr && !auto_mode_ &&
                            !operator_sealed_ && refresh_due;
        }
        if (watch_migration) {
          // A sealed node with a wrapper on a Shamir store: notice a
          // migration to auto (made on the active) and unseal itself.
          {
            WriterLock lock(&mu_);
            next_leader_refresh_ = now + options_.leader_refresh;
          }
          absl::StatusOr<SealStatus> stored = barrier_->Status();
          if (stored.ok() && stored->auto_unseal) {
            WriterLock lock(&mu_);
            auto_mode_ = true;
            next_auto_unseal_ = now;
            due = true;
          }
        }
        if (due) {
          TryAutoUnseal(/*explicit_call=*/false).IgnoreError();
          DeliverEvents();
        }
        return;
      }
      case HaState::kStandby:
      case HaState::kPerfStandby:
        if (now < next_attempt) {
          if (refresh_due) RefreshLeader();
          return;
        }
        Contend(may_block);
        return;
      case HaState::kActive:
        KeepLease(std::move(grant), now);
        return;
    }
  }

  void Contend(bool may_block) {
    auto cancel = std::make_shared<Cancellation>();
    uint64_t epoch;
    {
      WriterLock lock(&mu_);
      if (!IsStandby(state_)) return;
      epoch = epoch_;
      current_cancel_ = cancel;
    }
    {
      MutexLock lock(&loop_mu_);
      if (stopping_) return;
    }
    AcquireOptions acquire;
    acquire.holder = options_.advertise_address;
    acquire.ttl = options_.lease_ttl;
    acquire.deadline = may_block ? clock_->Now() + options_.leader_refresh
                                 : absl::InfinitePast();
    acquire.cancel = cancel.get();
    const absl::Duration acquire_started = Mono();
    absl::StatusOr<std::unique_ptr<LeadershipGrant>> acquired =
        ha_->Acquire(acquire);
    // The grant began after `acquire_started` and lasts the TTL, so this
    // node's own deadline (HA2) is that moment plus the TTL on its monotonic
    // clock. The grant's expiry() is a time on the backend's clock: it is
    // never compared with this node's clock, so neither a backend clock
    // running ahead nor a wall-clock step here stretches HA2.
    const absl::Duration local_deadline = acquire_started + options_.lease_ttl;
    {
      WriterLock lock(&mu_);
      if (current_cancel_ == cancel) current_cancel_.reset();
    }
    if (!acquired.ok()) {
      if (absl::IsDeadlineExceeded(acquired.status()) ||
          absl::IsCancelled(acquired.status())) {
        RefreshLeader();
        return;
      }
      WriterLock lock(&mu_);
      last_error_ =
          absl::StrCat("acquiring the lease: ", acquired.status().ToString());
      next_attempt_ = Mono() + NextBackoffLocked();
      return;
    }
    std::shared_ptr<LeadershipGrant> grant(std::move(*acquired));
    Promote(std::move(grant), epoch, local_deadline);
  }

  // HA4: every check and step happens before the node serves as active.
  void Promote(std::shared_ptr<LeadershipGrant> grant, uint64_t epoch,
               absl::Duration local_deadline) {
    const FenceToken fence = grant->fence();
    auto still_ours = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      return epoch_ == epoch && IsStandby(state_) && !barrier_->sealed();
    };
    bool ours;
    {
      WriterLock lock(&mu_);
      ours = still_ours();
      // Sealed and unsealed again while acquiring: back off before
      // contending again instead of acquiring and releasing in a loop.
      if (!ours && IsStandby(state_))
        next_attempt_ = Mono() + NextBackoffLocked();
    }
    if (!ours) {
      // Released outside mu_: a release may wait on the backend, and
      // Seal(), StepDown() and Route() must not wait behind it.
      grant->Release().IgnoreError();
      return;
    }
    // A blocking acquire may have waited: the local deadline counts from
    // before the wait. If that leaves less than a renew interval's worth of
    // lease, renew now so the new active does not start out lapsed.
    if (local_deadline - Mono() <
        options_.lease_ttl - options_.renew_interval) {
      const absl::Duration renew_started = Mono();
      if (grant->Renew().ok()) {
        local_deadline = renew_started + options_.lease_ttl;
      }
    }
    absl::Status ready = barrier_->ReloadKeyring();
    // HA6: no rewrap under a new wrapper key here: a rotation of the
    // wrapper key needs the recovery shares (RotateWrapperKey).
    if (ready.ok() && options_.on_activate) ready = options_.on_activate(fence);
    const absl::Duration now = Mono();
    const absl::Time wall = clock_->Now();
    if (ready.ok() && (grant->Lost() || now >= local_deadline)) {
      ready = absl::UnavailableError("lease lost during promotion");
    }
    {
      WriterLock lock(&mu_);
      if (!still_ours()) {
        ready = absl::AbortedError("sealed during promotion");
      } else if (!ready.ok()) {
        last_error_ = absl::StrCat("promotion failed: ", ready.ToString());
        next_attempt_ = now + NextBackoffLocked();
        // A self-transition, so observers learn why it stayed standby.
        SetStateLocked(state_, last_error_, fence);
      } else {
        SetStateLocked(HaState::kActive, "won the lease", fence);
        grant_ = grant;
        fence_ = fence;
        lease_expiry_ = local_deadline;
        PublishActiveLocked();
        active_since_ = wall;
        next_renew_ = now + options_.renew_interval;
        failures_ = 0;
        last_error_.clear();
        leader_known_ = true;
        leader_ = LeaderInfo{options_.advertise_address, fence, wall, true};
      }
    }
    if (!ready.ok()) grant->Release().IgnoreError();
    DeliverEvents();
  }

  void KeepLease(std::shared_ptr<LeadershipGrant> grant, absl::Duration now) {
    if (grant == nullptr) return;
    bool renew_due;
    bool renew_failing;
    bool lapsed;
    {
      ReaderLock lock(&mu_);
      renew_due = now >= next_renew_;
      renew_failing = renew_failing_;
      lapsed = now >= lease_expiry_;
    }
    if (grant->Lost() || lapsed) {
      DemoteIfCurrent(grant, renew_failing
                                 ? "lease renewal failed until the TTL passed"
                                 : "lease lost");
      return;
    }
    if (!renew_due) return;
    const absl::Duration renew_started = Mono();
    absl::Status renewed = grant->Renew();
    const absl::Duration after = Mono();
    if (absl::IsFailedPrecondition(renewed)) {
      DemoteIfCurrent(grant, absl::StrCat("lease lost: ", renewed.message()));
      return;
    }
    {
      WriterLock lock(&mu_);
      if (grant_ != grant) return;
      renew_failing_ = !renewed.ok();
      if (renewed.ok()) {
        lease_expiry_ = renew_started + options_.lease_ttl;
        PublishActiveLocked();
        next_renew_ = after + options_.renew_interval;
        return;
      }
      last_error_ = absl::StrCat("renewing the lease: ", renewed.ToString());
      // Retry soon; give up at the grant's own expiry.
      next_renew_ =
          after + std::min(options_.retry_backoff, options_.renew_interval);
      if (after < lease_expiry_) return;
    }
    DemoteIfCurrent(grant, "lease renewal failed until the TTL passed");
  }

  // With `in_background` (a request thread), the release goes to the
  // releaser thread and the successor is left for Route() and the loop.
  void DemoteIfCurrent(const std::shared_ptr<LeadershipGrant>& grant,
                       std::string reason, bool in_background = false) {
    std::shared_ptr<LeadershipGrant> released;
    {
      WriterLock lock(&mu_);
      if (grant_ != grant || state_ != HaState::kActive) return;
      released = LeaveActiveLocked(StandbyState(), std::move(reason),
                                   absl::ZeroDuration());
    }
    if (in_background) {
      if (released != nullptr) {
        ReleaseInBackground(std::move(released), absl::ZeroDuration());
      }
      DeliverEvents();
      Kick();
      return;
    }
    if (released != nullptr) released->Release().IgnoreError();
    // Learn the successor now, so a request arriving before the next loop
    // step is routed to it rather than answered "no active node yet".
    RefreshLeader();
    DeliverEvents();
  }

  void CancelAcquire() {
    std::shared_ptr<Cancellation> cancel;
    {
      WriterLock lock(&mu_);
      ++epoch_;
      cancel = current_cancel_;
    }
    if (cancel != nullptr) cancel->Cancel();
  }

  void Kick() {
    {
      MutexLock lock(&loop_mu_);
      kicked_ = true;
    }
    loop_mu_.SignalAll();
  }

  void Loop() {
    loop_thread_id_.store(std::this_thread::get_id());
    while (true) {
      {
        MutexLock lock(&loop_mu_);
        if (stopping_) return;
        kicked_ = false;
      }
      Step(/*may_block=*/true);
      const absl::Duration now = Mono();
      absl::Duration wait;
      {
        ReaderLock lock(&mu_);
        wait = NextPollMonoLocked(now) - now;
      }
      // Re-check at least every 50 ms (cheap) so a fake clock or a missed
      // wake-up never stalls the loop.
      wait = std::clamp(wait, absl::ZeroDuration(), absl::Milliseconds(50));
      if (wait <= absl::ZeroDuration()) continue;
      MutexLock lock(&loop_mu_);
      loop_mu_.AwaitWithTimeout([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(
                                    loop_mu_) { return stopping_ || kicked_; },
                                wait);
    }
  }

  // Wakes the event thread (background mode; otherwise a no-op). Never
  // blocks on an observer: event_mu_ is held only to set the flag.
  void WakeEventThread() {
    if (!options_.background_thread) return;
    {
      MutexLock lock(&event_mu_);
      event_wake_ = true;
    }
    event_mu_.SignalAll();
  }

  // The event thread: delivers what the loop and the backend queue.
  void EventLoop() {
    while (true) {
      bool stop;
      {
        MutexLock lock(&event_mu_);
        event_mu_.Await([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(event_mu_) {
          return event_stopping_ || event_wake_;
        });
        stop = event_stopping_;
        event_wake_ = false;
      }
      DeliverEvents();
      if (stop) return;
    }
  }

  void StopEventThread() {
    if (!event_thread_.joinable()) return;
    {
      MutexLock lock(&event_mu_);
      event_stopping_ = true;
    }
    event_mu_.SignalAll();
    event_thread_.join();
  }

  // Calls observers with queued events, one at a time and in order, never
  // under mu_. Re-entrant calls (an observer calling Seal()) leave their
  // events for the outer delivery loop. The loop thread never calls an
  // observer: it hands its events to the event thread, so a slow observer
  // delays neither promotion nor renewals, and an observer that waits for
  // the loop cannot deadlock with it.
  void DeliverEvents() {
    if (loop_thread_id_.load() == std::this_thread::get_id()) {
      WakeEventThread();
      return;
    }
    if (deliverer_.load() == std::this_thread::get_id()) return;
    while (true) {
      if (!deliver_mu_.TryLock()) return;
      deliverer_.store(std::this_thread::get_id());
      while (true) {
        PendingEvent event;
        {
          WriterLock lock(&mu_);
          if (pending_events_.empty()) break;
          event = std::move(pending_events_.front());
          pending_events_.pop_front();
        }
        std::vector<HaObserver*> observers;
        {
          MutexLock lock(&observers_mu_);
          observers = observers_;
        }
        for (HaObserver* o : observers) {
          if (event.takeover.has_value()) {
            o->OnBlockedTakeover(*event.takeover);
          } else {
            o->OnStateChange(event.change);
          }
        }
      }
      deliverer_.store(std::thread::id());
      deliver_mu_.Unlock();
      ReaderLock lock(&mu_);
      if (pending_events_.empty()) return;
    }
  }

  // Constant after construction.
  const Options options_;
  Clock* const clock_;
  HaBackend* const ha_;
  const std::unique_ptr<Barrier> barrier_;

  // Serializes Initialize, Unseal, Rekey and Rotate (taken before mu_).
  // Seal() does not take it: it must never wait behind backend I/O; an
  // Unseal that overlaps a Seal notices through epoch_.
  Mutex seal_mu_ ABSL_ACQUIRED_BEFORE(mu_);

  SharedMutex mu_;
  HaState state_ ABSL_GUARDED_BY(mu_);
  // state_, for state() to read without mu_; written only beside it.
  std::atomic<HaState> published_state_;
  std::shared_ptr<LeadershipGrant> grant_ ABSL_GUARDED_BY(mu_);
  FenceToken fence_ ABSL_GUARDED_BY(mu_) = kNoFence;
  // Schedule and lease deadline: monotonic readings (Mono()).
  absl::Duration lease_expiry_ ABSL_GUARDED_BY(mu_) = -absl::InfiniteDuration();
  absl::Duration next_renew_ ABSL_GUARDED_BY(mu_) = -absl::InfiniteDuration();
  absl::Duration next_attempt_ ABSL_GUARDED_BY(mu_) = -absl::InfiniteDuration();
  absl::Duration next_leader_refresh_ ABSL_GUARDED_BY(mu_) =
      -absl::InfiniteDuration();
  // Wall time, for Status().
  absl::Time active_since_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  int failures_ ABSL_GUARDED_BY(mu_) = 0;
  bool renew_failing_ ABSL_GUARDED_BY(mu_) = false;
  bool leader_known_ ABSL_GUARDED_BY(mu_) = false;
  LeaderInfo leader_ ABSL_GUARDED_BY(mu_);
  // When the reading behind leader_ began (monotonic), for Route().
  absl::Duration leader_read_at_ ABSL_GUARDED_BY(mu_) =
      -absl::InfiniteDuration();
  // Set while one Route() reads the leader.
  std::atomic<bool> leader_reading_{false};
  std::string last_error_ ABSL_GUARDED_BY(mu_);
  // HA6 (auto-unseal). auto_mode_: the stored seal is auto (as last read).
  bool auto_mode_ ABSL_GUARDED_BY(mu_) = false;
  bool operator_sealed_ ABSL_GUARDED_BY(mu_) = false;
  absl::Duration next_auto_unseal_ ABSL_GUARDED_BY(mu_) =
      -absl::InfiniteDuration();
  int auto_failures_ ABSL_GUARDED_BY(mu_) = 0;
  std::string seal_error_ ABSL_GUARDED_BY(mu_);
  // Bumped by Seal (and shutdown) so a promotion in flight notices.
  uint64_t epoch_ ABSL_GUARDED_BY(mu_) = 0;
  std::shared_ptr<Cancellation> current_cancel_ ABSL_GUARDED_BY(mu_);
  std::deque<PendingEvent> pending_events_ ABSL_GUARDED_BY(mu_);
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);

  Mutex observers_mu_;
  std::vector<HaObserver*> observers_ ABSL_GUARDED_BY(observers_mu_);
  // Hears the backend's blocked takeovers (registered for the coordinator's
  // whole life) and queues them for observers.
  TakeoverSink takeover_sink_;
  // Held by the one thread delivering events (deliverer_); RemoveObserver
  // waits on it. Taken before mu_ and observers_mu_.
  Mutex deliver_mu_ ABSL_ACQUIRED_BEFORE(mu_, observers_mu_);
  std::atomic<std::thread::id> deliverer_{};
  // The loop thread's id once it runs (none without the background thread).
  std::atomic<std::thread::id> loop_thread_id_{};

  // The event thread (background mode only) delivers the events of the loop
  // thread and of the backend's reports.
  Mutex event_mu_;
  bool event_wake_ ABSL_GUARDED_BY(event_mu_) = false;
  bool event_stopping_ ABSL_GUARDED_BY(event_mu_) = false;
  std::thread event_thread_;

  // The releaser thread (started on the first Seal() of an active node)
  // releases grants that Seal() handed over.
  Mutex release_mu_;
  std::deque<std::shared_ptr<LeadershipGrant>> release_queue_
      ABSL_GUARDED_BY(release_mu_);
  uint64_t releases_queued_ ABSL_GUARDED_BY(release_mu_) = 0;
  uint64_t releases_done_ ABSL_GUARDED_BY(release_mu_) = 0;
  bool releaser_stopping_ ABSL_GUARDED_BY(release_mu_) = false;
  std::thread releaser_;

  // VerifiedWriteFence()'s last answer from the backend: the grant with
  // fence verified_fence_ was held at verified_at_ (monotonic). Under mu_,
  // written at most once per verify_interval, and published in active_ so
  // that the hot path takes no lock. verifying_fence_: the grant a caller
  // is asking the backend about right now (kNoFence: none).
  FenceToken verified_fence_ ABSL_GUARDED_BY(mu_) = kNoFence;
  absl::Duration verified_at_ ABSL_GUARDED_BY(mu_) = -absl::InfiniteDuration();
  std::atomic<FenceToken> verifying_fence_{kNoFence};
  // fence_, lease_expiry_ and the verified deadline while active, for the
  // hot paths to read without mu_; written only under mu_ (exclusive) by
  // PublishActiveLocked() and SetStateLocked().
  ha_internal::ActiveSnapshot active_;

  Mutex loop_mu_;
  bool stopping_ ABSL_GUARDED_BY(loop_mu_) = false;
  bool kicked_ ABSL_GUARDED_BY(loop_mu_) = false;
  std::thread thread_;
};

void TakeoverSink::OnBlockedTakeover(const BlockedTakeoverEvent& event) {
  coordinator_->QueueBlockedTakeover(event);
}

}  // namespace

absl::StatusOr<std::unique_ptr<HaCoordinator>> HaCoordinator::Create(
    Options options) {
  RETURN_IF_ERROR(ValidateOptions(options));
  if (options.backend->ha() == nullptr) {
    return absl::FailedPreconditionError(
        "backend has no HA lease; a coordinator needs one");
  }
  BarrierOptions barrier_options;
  barrier_options.backend = options.backend;
  barrier_options.core_prefix = options.core_prefix;
  barrier_options.clock = options.clock;
  barrier_options.key_wrapper = options.key_wrapper;
  barrier_options.escrow = options.escrow;
  absl::StatusOr<std::unique_ptr<Barrier>> barrier =
      Barrier::Create(barrier_options);
  if (!barrier.ok()) return barrier.status();
  ASSIGN_OR_RETURN(SealStatus seal, (*barrier)->Status());
  return ForkChecked(std::make_unique<HaCoordinatorImpl>(
      std::move(options), *std::move(barrier), seal.initialized,
      seal.auto_unseal));
}

}  // namespace strongbox
