// FaultInjectingKeyWrapper: a KeyWrapper decorator (strongbox/key_wrapper.h)
// that fails, delays and answers with a wrong key on command, for testing
// how auto-unseal behaves when the HSM or KMS misbehaves. testonly; hosts
// may use it for their own tests.
//
// It forwards to a target wrapper (not owned) and can: fail every call of a
// kind until healed, fail the next N calls, fail exactly the Nth wrap or
// unwrap from now, delay each call by a duration on an injected clock (the
// call sleeps on it, so a FakeClock turns a slow HSM into a hang the test
// releases by advancing time; or, with `advance_instead`, the call moves the
// FakeClock forward itself, so a Poll()-driven test sees time pass with no
// other thread), and unwrap to random bytes of the right length (a wrong key
// of the same id, as a re-initialized token would give). It counts calls.
//
// Thread-safe.
#ifndef STRONGBOX_TESTING_FAULT_INJECTING_KEY_WRAPPER_H_
#define STRONGBOX_TESTING_FAULT_INJECTING_KEY_WRAPPER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "strongbox/key_wrapper.h"
#include "strongbox/testing/fake_clock.h"

namespace strongbox {

class FaultInjectingKeyWrapper : public KeyWrapper {
 public:
  enum Op : uint32_t { kWrap = 1u << 0, kUnwrap = 1u << 1, kAll = 3u };

  // `target` is not owned and must outlive this wrapper.
  explicit FaultInjectingKeyWrapper(KeyWrapper* target);
  ~FaultInjectingKeyWrapper() override;

  // Every call of the kinds in `ops` fails with `status` until Heal().
  void FailAll(uint32_t ops, absl::Status status);
  // The next `count` calls of the kinds in `ops` fail with `status`.
  void FailNext(uint32_t ops, int count, absl::Status status);
  // Exactly the `n`th (1-based) call of kind `op` from now fails.
  void FailNth(Op op, int n, absl::Status status);
  // Clears every injected failure and the wrong-key mode.
  void Heal();
  // Unwrap answers random bytes of the plaintext's length instead.
  void SetWrongKey(bool wrong);
  // Each call first waits `delay` on `clock` (SleepFor), or with
  // `advance_instead` advances `clock` by it. Zero: no delay.
  void SetDelay(FakeClock* clock, absl::Duration delay,
                bool advance_instead = false);

  int wrap_calls() const;
  int unwrap_calls() const;

  std::string type() const override;
  std::string current_key_id() const override;
  absl::StatusOr<WrappedSecret> Wrap(absl::string_view plaintext,
                                     absl::string_view ad) override;
  absl::StatusOr<SecretBytes> Unwrap(const WrappedSecret& wrapped,
                                     absl::string_view ad) override;

 private:
  struct State;
  // The injected failure for a call of kind `op`, if any; counts the call.
  absl::Status Before(Op op);
  KeyWrapper* const target_;
  std::unique_ptr<State> state_;
};

}  // namespace strongbox

#endif  // STRONGBOX_TESTING_FAULT_INJECTING_KEY_WRAPPER_H_
