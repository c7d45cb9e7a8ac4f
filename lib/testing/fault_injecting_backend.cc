#include "strongbox/testing/fault_injecting_backend.h"

#include <random>

#include "absl/strings/str_cat.h"
#include "lib/util/mutex.h"
#include "lib/util/status_macros.h"

namespace strongbox {

struct FaultInjectingBackend::State {
  mutable Mutex mu;
  int fail_next ABSL_GUARDED_BY(mu) = 0;
  absl::Status fail_next_status ABSL_GUARDED_BY(mu);
  uint32_t fail_next_ops ABSL_GUARDED_BY(mu) = 0;
  double fail_fraction ABSL_GUARDED_BY(mu) = 0;
  absl::Status fail_fraction_status ABSL_GUARDED_BY(mu);
  uint32_t fail_fraction_ops ABSL_GUARDED_BY(mu) = 0;
  absl::Duration latency ABSL_GUARDED_BY(mu);
  uint32_t latency_ops ABSL_GUARDED_BY(mu) = 0;
  uint32_t blocked_ops ABSL_GUARDED_BY(mu) = 0;
  int blocked_calls ABSL_GUARDED_BY(mu) = 0;
  bool renewals_fail ABSL_GUARDED_BY(mu) = false;
  int lose_acks ABSL_GUARDED_BY(mu) = 0;
  int64_t injected ABSL_GUARDED_BY(mu) = 0;
  std::mt19937_64 rng ABSL_GUARDED_BY(mu);
};

namespace {

// Wraps a target grant so renewals and releases pass through the faults.
class FaultGrant final : public LeadershipGrant {
 public:
  FaultGrant(FaultInjectingBackend* owner,
             std::unique_ptr<LeadershipGrant> target)
      : owner_(owner), target_(std::move(target)) {}

  FenceToken fence() const override { return target_->fence(); }
  std::string holder() const override { return target_->holder(); }

  absl::Status Renew() override {
    RETURN_IF_ERROR(owner_->Inject(FaultInjectingBackend::kRenew));
    if (owner_->renewals_failing()) {
      return absl::UnavailableError("injected: lease renewal cut off");
    }
    return target_->Renew();
  }
  absl::Status Release() override {
    RETURN_IF_ERROR(owner_->Inject(FaultInjectingBackend::kRelease));
    return target_->Release();
  }
  absl::Time expiry() const override { return target_->expiry(); }
  bool Lost() override { return target_->Lost(); }
  bool WaitLost(absl::Time deadline) override {
    return target_->WaitLost(deadline);
  }

 private:
  FaultInjectingBackend* const owner_;
  const std::unique_ptr<LeadershipGrant> target_;
};

}  // namespace

FaultInjectingBackend::FaultInjectingBackend(Backend* target, Clock* clock,
                                             uint64_t seed)
    : BackendWrapper(target),
      clock_(clock != nullptr ? clock : RealClock()),
      state_(std::make_unique<State>()) {
  MutexLock lock(&state_->mu);
  state_->rng.seed(seed);
}

FaultInjectingBackend::~FaultInjectingBackend() { Unblock(); }

void FaultInjectingBackend::FailNext(int n, absl::Status status, uint32_t ops) {
  MutexLock lock(&state_->mu);
  state_->fail_next = n;
  state_->fail_next_status = std::move(status);
  state_->fail_next_ops = ops;
}

void FaultInjectingBackend::FailFraction(double fraction, absl::Status status,
                                         uint32_t ops) {
  MutexLock lock(&state_->mu);
  state_->fail_fraction = fraction;
  state_->fail_fraction_status = std::move(status);
  state_->fail_fraction_ops = ops;
}

void FaultInjectingBackend::SetLatency(absl::Duration latency, uint32_t ops) {
  MutexLock lock(&state_->mu);
  state_->latency = latency;
  state_->latency_ops = ops;
}

void FaultInjectingBackend::Block(uint32_t ops) {
  MutexLock lock(&state_->mu);
  state_->blocked_ops = ops;
}

void FaultInjectingBackend::Unblock() {
  {
    MutexLock lock(&state_->mu);
    state_->blocked_ops = 0;
  }
  state_->mu.SignalAll();
}

void FaultInjectingBackend::FailRenewals(bool fail) {
  MutexLock lock(&state_->mu);
  state_->renewals_fail = fail;
}

bool FaultInjectingBackend::renewals_failing() const {
  MutexLock lock(&state_->mu);
  return state_->renewals_fail;
}

void FaultInjectingBackend::LoseNextCommitAcks(int n) {
  MutexLock lock(&state_->mu);
  state_->lose_acks = n;
}

absl::Status FaultInjectingBackend::ExpireCurrentGrant() {
  // Straight to the target, past this wrapper's own faults.
  ASSIGN_OR_RETURN(std::optional<LeaseHolder> holder,
                   BackendWrapper::CurrentHolder());
  if (!holder.has_value()) return absl::OkStatus();
  return BackendWrapper::BreakLease(holder->fence);
}

void FaultInjectingBackend::Clear() {
  {
    MutexLock lock(&state_->mu);
    state_->fail_next = 0;
    state_->fail_fraction = 0;
    state_->latency = absl::ZeroDuration();
    state_->latency_ops = 0;
    state_->blocked_ops = 0;
    state_->renewals_fail = false;
    state_->lose_acks = 0;
  }
  state_->mu.SignalAll();
}

int64_t FaultInjectingBackend::injected_failures() const {
  MutexLock lock(&state_->mu);
  return state_->injected;
}

int FaultInjectingBackend::blocked_calls() const {
  MutexLock lock(&state_->mu);
  return state_->blocked_calls;
}

absl::Status FaultInjectingBackend::Inject(Op op) {
  State& s = *state_;
  absl::Duration sleep;
  {
    MutexLock lock(&s.mu);
    if (s.blocked_ops & op) {
      ++s.blocked_calls;
      s.mu.Await([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
        return (s.blocked_ops & op) == 0;
      });
      --s.blocked_calls;
    }
    if (s.fail_next > 0 && (s.fail_next_ops & op)) {
      --s.fail_next;
      ++s.injected;
      return s.fail_next_status;
    }
    if (s.fail_fraction > 0 && (s.fail_fraction_ops & op)) {
      std::uniform_real_distribution<double> dist(0.0, 1.0);
      if (dist(s.rng) < s.fail_fraction) {
        ++s.injected;
        return s.fail_fraction_status;
      }
    }
    if (s.latency_ops & op) sleep = s.latency;
  }
  if (sleep > absl::ZeroDuration()) clock_->SleepFor(sleep);
  return absl::OkStatus();
}

absl::StatusOr<Entry> FaultInjectingBackend::Get(absl::string_view key) {
  RETURN_IF_ERROR(Inject(kGet));
  return BackendWrapper::Get(key);
}

absl::StatusOr<std::vector<std::string>> FaultInjectingBackend::List(
    absl::string_view prefix) {
  RETURN_IF_ERROR(Inject(kList));
  return BackendWrapper::List(prefix);
}

absl::StatusOr<uint64_t> FaultInjectingBackend::Commit(
    absl::Span<const WriteOp> ops, FenceToken fence) {
  RETURN_IF_ERROR(Inject(kCommit));
  absl::StatusOr<uint64_t> result = BackendWrapper::Commit(ops, fence);
  if (result.ok()) {
    MutexLock lock(&state_->mu);
    if (state_->lose_acks > 0) {
      --state_->lose_acks;
      ++state_->injected;
      return absl::UnavailableError(
          "injected: commit applied but its acknowledgement was lost");
    }
  }
  return result;
}

absl::StatusOr<uint64_t> FaultInjectingBackend::Revision() {
  RETURN_IF_ERROR(Inject(kRevision));
  return BackendWrapper::Revision();
}

absl::StatusOr<std::unique_ptr<LeadershipGrant>> FaultInjectingBackend::Acquire(
    const AcquireOptions& options) {
  RETURN_IF_ERROR(Inject(kAcquire));
  ASSIGN_OR_RETURN(std::unique_ptr<LeadershipGrant> grant,
                   BackendWrapper::Acquire(options));
  return std::unique_ptr<LeadershipGrant>(
      new FaultGrant(this, std::move(grant)));
}

absl::StatusOr<std::optional<LeaseHolder>>
FaultInjectingBackend::CurrentHolder() {
  RETURN_IF_ERROR(Inject(kCurrentHolder));
  return BackendWrapper::CurrentHolder();
}

}  // namespace strongbox
