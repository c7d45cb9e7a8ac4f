#include "strongbox/testing/fault_injecting_key_wrapper.h"

#include <utility>

#include "lib/util/mutex.h"

namespace strongbox {

struct FaultInjectingKeyWrapper::State {
  Mutex mu;
  uint32_t fail_all_ops ABSL_GUARDED_BY(mu) = 0;
  absl::Status fail_all_status ABSL_GUARDED_BY(mu);
  uint32_t fail_next_ops ABSL_GUARDED_BY(mu) = 0;
  int fail_next_count ABSL_GUARDED_BY(mu) = 0;
  absl::Status fail_next_status ABSL_GUARDED_BY(mu);
  // Per kind (0 wrap, 1 unwrap): fail when that kind's count reaches it.
  int fail_nth_at[2] ABSL_GUARDED_BY(mu) = {0, 0};
  absl::Status fail_nth_status[2] ABSL_GUARDED_BY(mu);
  int calls[2] ABSL_GUARDED_BY(mu) = {0, 0};
  bool wrong_key ABSL_GUARDED_BY(mu) = false;
  FakeClock* clock ABSL_GUARDED_BY(mu) = nullptr;
  absl::Duration delay ABSL_GUARDED_BY(mu);
  bool advance_instead ABSL_GUARDED_BY(mu) = false;
};

FaultInjectingKeyWrapper::FaultInjectingKeyWrapper(KeyWrapper* target)
    : target_(target), state_(std::make_unique<State>()) {}
FaultInjectingKeyWrapper::~FaultInjectingKeyWrapper() = default;

void FaultInjectingKeyWrapper::FailAll(uint32_t ops, absl::Status status) {
  MutexLock lock(&state_->mu);
  state_->fail_all_ops = ops;
  state_->fail_all_status = std::move(status);
}

void FaultInjectingKeyWrapper::FailNext(uint32_t ops, int count,
                                        absl::Status status) {
  MutexLock lock(&state_->mu);
  state_->fail_next_ops = ops;
  state_->fail_next_count = count;
  state_->fail_next_status = std::move(status);
}

void FaultInjectingKeyWrapper::FailNth(Op op, int n, absl::Status status) {
  const int k = op == kWrap ? 0 : 1;
  MutexLock lock(&state_->mu);
  state_->fail_nth_at[k] = state_->calls[k] + n;
  state_->fail_nth_status[k] = std::move(status);
}

void FaultInjectingKeyWrapper::Heal() {
  MutexLock lock(&state_->mu);
  state_->fail_all_ops = 0;
  state_->fail_next_count = 0;
  state_->fail_nth_at[0] = state_->fail_nth_at[1] = 0;
  state_->wrong_key = false;
}

void FaultInjectingKeyWrapper::SetWrongKey(bool wrong) {
  MutexLock lock(&state_->mu);
  state_->wrong_key = wrong;
}

void FaultInjectingKeyWrapper::SetDelay(FakeClock* clock, absl::Duration delay,
                                        bool advance_instead) {
  MutexLock lock(&state_->mu);
  state_->clock = clock;
  state_->delay = delay;
  state_->advance_instead = advance_instead;
}

int FaultInjectingKeyWrapper::wrap_calls() const {
  MutexLock lock(&state_->mu);
  return state_->calls[0];
}

int FaultInjectingKeyWrapper::unwrap_calls() const {
  MutexLock lock(&state_->mu);
  return state_->calls[1];
}

std::string FaultInjectingKeyWrapper::type() const { return target_->type(); }

std::string FaultInjectingKeyWrapper::current_key_id() const {
  return target_->current_key_id();
}

absl::Status FaultInjectingKeyWrapper::Before(Op op) {
  const int k = op == kWrap ? 0 : 1;
  FakeClock* clock;
  absl::Duration delay;
  bool advance;
  absl::Status result;
  {
    MutexLock lock(&state_->mu);
    const int call = ++state_->calls[k];
    clock = state_->clock;
    delay = state_->delay;
    advance = state_->advance_instead;
    if (state_->fail_nth_at[k] == call) {
      state_->fail_nth_at[k] = 0;
      result = state_->fail_nth_status[k];
    } else if ((state_->fail_all_ops & op) != 0) {
      result = state_->fail_all_status;
    } else if ((state_->fail_next_ops & op) != 0 &&
               state_->fail_next_count > 0) {
      --state_->fail_next_count;
      result = state_->fail_next_status;
    }
  }
  if (clock != nullptr && delay > absl::ZeroDuration()) {
    if (advance) {
      clock->Advance(delay);
    } else {
      clock->SleepFor(delay);
    }
  }
  return result;
}

absl::StatusOr<WrappedSecret> FaultInjectingKeyWrapper::Wrap(
    absl::string_view plaintext, absl::string_view ad) {
  absl::Status injected = Before(kWrap);
  if (!injected.ok()) return injected;
  return target_->Wrap(plaintext, ad);
}

absl::StatusOr<SecretBytes> FaultInjectingKeyWrapper::Unwrap(
    const WrappedSecret& wrapped, absl::string_view ad) {
  absl::Status injected = Before(kUnwrap);
  if (!injected.ok()) return injected;
  bool wrong;
  {
    MutexLock lock(&state_->mu);
    wrong = state_->wrong_key;
  }
  absl::StatusOr<SecretBytes> plain = target_->Unwrap(wrapped, ad);
  if (!plain.ok() || !wrong) return plain;
  return SecretBytes::Random(plain->size());
}

}  // namespace strongbox
