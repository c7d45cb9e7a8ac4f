#include "lib/ha/fork_checked_coordinator.h"

#include <sys/types.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "lib/util/fork_generation.h"

namespace strongbox {
namespace {

// Fork detection. A forked child holds a copy of its parent's coordinator:
// the same fence, the same grant object, mutexes and condition variables
// that parent threads (absent in the child) may hold or wait on. Any use
// of it there would share the parent's fence or release the parent's
// lease, and even destroying it can hang. getpid() costs a system call
// (about a microsecond under some sandboxes), too much for Route() on every
// request, so a pthread_atfork handler counts forks instead
// (lib/util/fork_generation.h); the slower paths compare the pid too.

constexpr absl::string_view kForkedChild =
    "this coordinator belongs to the process that created it; a forked "
    "child cannot use it";

absl::Status ForkedChildError() {
  return absl::FailedPreconditionError(kForkedChild);
}

// A coordinator behind a fork check on every call (see above). In a
// forked child every call fails closed without touching the coordinator, and
// destruction leaks it: its threads do not exist in the child, its grant is the
// parent's, its locks may be held forever.
class ForkCheckedCoordinator final : public HaCoordinator {
 public:
  explicit ForkCheckedCoordinator(std::unique_ptr<HaCoordinator> impl)
      : impl_(std::move(impl)),
        creator_pid_(getpid()),
        fork_generation_(ForkGeneration()) {}

  ~ForkCheckedCoordinator() override {
    if (ForkedChild()) (void)impl_.release();
  }

  absl::StatusOr<std::vector<std::string>> Initialize(int shares,
                                                      int threshold) override {
    if (ForkedChild()) return ForkedChildError();
    return impl_->Initialize(shares, threshold);
  }
  absl::StatusOr<SealStatus> Unseal(absl::string_view share) override {
    if (ForkedChild()) return ForkedChildError();
    return impl_->Unseal(share);
  }
  absl::StatusOr<SealStatus> AutoUnseal() override {
    if (ForkedChild()) return ForkedChildError();
    return impl_->AutoUnseal();
  }
  absl::Status MigrateSealToAuto(
      absl::Span<const std::string> unseal_shares) override {
    if (ForkedChild()) return ForkedChildError();
    return impl_->MigrateSealToAuto(unseal_shares);
  }
  absl::Status MigrateSealToShamir(
      absl::Span<const std::string> recovery_shares) override {
    if (ForkedChild()) return ForkedChildError();
    return impl_->MigrateSealToShamir(recovery_shares);
  }
  absl::StatusOr<bool> RotateWrapperKey(
      absl::Span<const std::string> recovery_shares) override {
    if (ForkedChild()) return ForkedChildError();
    return impl_->RotateWrapperKey(recovery_shares);
  }
  void ResetUnsealProgress() override {
    if (!ForkedChild()) impl_->ResetUnsealProgress();
  }
  absl::Status Seal() override {
    if (ForkedChild()) return ForkedChildError();
    return impl_->Seal();
  }
  absl::StatusOr<std::vector<std::string>> Rekey(
      absl::Span<const std::string> current_shares, int new_shares,
      int new_threshold) override {
    if (ForkedChild()) return ForkedChildError();
    return impl_->Rekey(current_shares, new_shares, new_threshold);
  }
  absl::Status CompleteRekey(
      absl::Span<const std::string> new_shares) override {
    if (ForkedChild()) return ForkedChildError();
    return impl_->CompleteRekey(new_shares);
  }
  absl::Status CancelRekey() override {
    if (ForkedChild()) return ForkedChildError();
    return impl_->CancelRekey();
  }
  absl::StatusOr<uint32_t> Rotate() override {
    if (ForkedChild()) return ForkedChildError();
    return impl_->Rotate();
  }
  absl::Status StepDown() override {
    if (ForkedChild()) return ForkedChildError();
    return impl_->StepDown();
  }
  RouteDecision Route(OperationKind kind) override {
    if (ForkedFast()) {
      RouteDecision d;
      d.reason = std::string(kForkedChild);
      return d;
    }
    return impl_->Route(kind);
  }
  absl::StatusOr<FenceToken> WriteFence() override {
    if (ForkedFast()) return ForkedChildError();
    return impl_->WriteFence();
  }
  absl::StatusOr<FenceToken> VerifiedWriteFence() override {
    if (ForkedFast()) return ForkedChildError();
    return impl_->VerifiedWriteFence();
  }
  void ReportStaleFence(FenceToken fence) override {
    if (!ForkedChild()) impl_->ReportStaleFence(fence);
  }
  absl::StatusOr<LeaderInfo> Leader() override {
    if (ForkedFast()) return ForkedChildError();
    return impl_->Leader();
  }
  HaState state() override {
    if (ForkedFast()) return HaState::kSealed;
    return impl_->state();
  }
  HaStatus Status() override {
    if (!ForkedChild()) return impl_->Status();
    HaStatus s;
    s.state = HaState::kSealed;
    s.last_error = std::string(kForkedChild);
    return s;
  }
  // nullptr in a forked child: the parent's barrier may hold a lock some
  // parent thread held at fork().
  Barrier* barrier() override {
    return ForkedFast() ? nullptr : impl_->barrier();
  }
  void AddObserver(HaObserver* observer) override {
    if (!ForkedChild()) impl_->AddObserver(observer);
  }
  void RemoveObserver(HaObserver* observer) override {
    if (!ForkedChild()) impl_->RemoveObserver(observer);
  }
  void Poll() override {
    if (!ForkedChild()) impl_->Poll();
  }
  absl::Time NextPollTime() override {
    if (ForkedChild()) return absl::InfiniteFuture();
    return impl_->NextPollTime();
  }

 private:
  // ForkedFast() is for the per-request paths; ForkedChild() also compares
  // the pid, which catches a child made without fork() (a raw clone).
  bool ForkedFast() const {
    return CurrentForkGeneration() != fork_generation_;
  }
  bool ForkedChild() const { return ForkedFast() || getpid() != creator_pid_; }

  std::unique_ptr<HaCoordinator> impl_;
  const pid_t creator_pid_;
  const uint64_t fork_generation_;
};

}  // namespace

std::unique_ptr<HaCoordinator> ForkChecked(
    std::unique_ptr<HaCoordinator> coordinator) {
  return std::make_unique<ForkCheckedCoordinator>(std::move(coordinator));
}

}  // namespace strongbox
