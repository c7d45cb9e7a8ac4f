// FaultInjectingBackend: a Backend decorator that fails, delays, blocks and
// drops the lease on command, for testing how strongbox behaves when its
// storage misbehaves. testonly; hosts may use it for their own tests.
//
// It forwards to a target backend (not owned) and, per operation kind,
// can: fail the next N calls, fail a fraction of calls (seeded, so a test is
// reproducible), add latency (slept on the injected clock, so a FakeClock
// turns latency into a hang the test releases by advancing time), block
// calls until unblocked (a partition), make lease renewals fail, apply a
// commit but report it failed (a lost acknowledgement), and force the
// current lease grant to end.
//
// Thread-safe.
#ifndef STRONGBOX_TESTING_FAULT_INJECTING_BACKEND_H_
#define STRONGBOX_TESTING_FAULT_INJECTING_BACKEND_H_

#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "strongbox/backend.h"
#include "strongbox/clock.h"

namespace strongbox {

class FaultInjectingBackend : public BackendWrapper {
 public:
  // Operation kinds, combinable as a mask.
  enum Op : uint32_t {
    kGet = 1u << 0,
    kList = 1u << 1,
    kCommit = 1u << 2,
    kRevision = 1u << 3,
    kAcquire = 1u << 4,
    kRenew = 1u << 5,
    kRelease = 1u << 6,
    kCurrentHolder = 1u << 7,
    kReads = kGet | kList | kRevision | kCurrentHolder,
    kLease = kAcquire | kRenew | kRelease | kCurrentHolder,
    kAll = 0xffffffffu,
  };

  // `clock` (not owned, default RealClock()) is where latency is slept.
  explicit FaultInjectingBackend(Backend* target, Clock* clock = nullptr,
                                 uint64_t seed = 1);
  ~FaultInjectingBackend() override;

  // The next `n` calls matching `ops` fail with `status` (not OK).
  void FailNext(int n, absl::Status status, uint32_t ops = kAll);
  // Each call matching `ops` fails with probability `fraction`.
  void FailFraction(double fraction, absl::Status status, uint32_t ops = kAll);
  // Every call matching `ops` first sleeps `latency` on the clock.
  void SetLatency(absl::Duration latency, uint32_t ops = kAll);
  // Calls matching `ops` block until Unblock() (or destruction).
  void Block(uint32_t ops = kAll);
  void Unblock();
  // Lease renewals fail with UNAVAILABLE without reaching the target, as
  // when the holder is cut off; the grant lapses at its TTL.
  void FailRenewals(bool fail);
  // The next `n` commits are applied by the target, then reported to the
  // caller as UNAVAILABLE (the acknowledgement was lost).
  void LoseNextCommitAcks(int n);
  // Ends the current lease grant, as if it expired. OK if none.
  absl::Status ExpireCurrentGrant();
  // Removes every fault.
  void Clear();

  // Calls failed (or acknowledgements lost) by injection so far.
  int64_t injected_failures() const;
  // Calls currently blocked in Block().
  int blocked_calls() const;

  // Backend, HaBackend.
  absl::StatusOr<Entry> Get(absl::string_view key) override;
  absl::StatusOr<std::vector<std::string>> List(
      absl::string_view prefix) override;
  absl::StatusOr<uint64_t> Commit(absl::Span<const WriteOp> ops,
                                  FenceToken fence = kNoFence) override;
  absl::StatusOr<uint64_t> Revision() override;
  absl::StatusOr<std::unique_ptr<LeadershipGrant>> Acquire(
      const AcquireOptions& options) override;
  absl::StatusOr<std::optional<LeaseHolder>> CurrentHolder() override;

  // Applies the configured faults for one call of kind `op`: sleeps,
  // blocks, or returns the injected failure. Public for the grant wrapper.
  absl::Status Inject(Op op);
  bool renewals_failing() const;

 private:
  struct State;
  Clock* const clock_;
  std::unique_ptr<State> state_;
};

}  // namespace strongbox

#endif  // STRONGBOX_TESTING_FAULT_INJECTING_BACKEND_H_
