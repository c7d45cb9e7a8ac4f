// The backend conformance suite: the behaviour every strongbox Backend must
// have, as one parameterized GoogleTest suite. testonly.
//
// Any backend — ours or a host's own — runs it by instantiating the suite
// with a factory, in a test linked with `@strongbox//:backend_conformance`
// and gtest_main:
//
//   INSTANTIATE_TEST_SUITE_P(
//       Mine, BackendConformanceTest,
//       testing::Values(strongbox::BackendFactory{
//           "Mine", [](strongbox::Clock* clock) {
//             return MyBackend::Open(..., clock);  // a fresh, empty backend
//           }}),
//       strongbox::BackendFactoryName);
//
// The factory must return a new, empty backend for every call. Backends
// with an HA lease must read lease time from the given clock: the suite
// passes a FakeClock and advances it to expire grants without sleeping.
// Backends that cannot honour an injected clock set `real_time_lease` and
// the lease-expiry cases then use short real TTLs instead.
//
// Thread-safety: the suite itself exercises the backend from many threads.
#ifndef STRONGBOX_TESTING_BACKEND_CONFORMANCE_H_
#define STRONGBOX_TESTING_BACKEND_CONFORMANCE_H_

#include <functional>
#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "strongbox/backend.h"
#include "strongbox/clock.h"
#include "strongbox/testing/fake_clock.h"

namespace strongbox {

struct BackendFactory {
  // Shown in test names; letters, digits and '_' only.
  std::string name;
  // Returns a fresh, empty backend whose lease (if any) reads `clock`.
  std::function<std::unique_ptr<Backend>(Clock* clock)> make;
  // True if the backend's lease ignores the injected clock (real time).
  bool real_time_lease = false;
  // Increments each of eight threads commits in the contended
  // check-and-set case (CheckAndSetCounterLosesNoUpdate). A backend whose
  // every commit is a consensus round and an fsync may ask for fewer: the
  // threads still race on one key and retry every refused compare.
  int contended_increments = 1000;
};

// For INSTANTIATE_TEST_SUITE_P's name generator argument.
std::string BackendFactoryName(
    const ::testing::TestParamInfo<BackendFactory>& info);

class BackendConformanceTest : public ::testing::TestWithParam<BackendFactory> {
 protected:
  void SetUp() override;

  // Moves lease time forward by `d`: advances the fake clock, or sleeps for
  // real-time backends.
  void AdvanceLeaseTime(absl::Duration d);
  // A lease TTL suited to the backend's time source.
  absl::Duration LeaseTtl() const;

  FakeClock clock_;
  std::unique_ptr<Backend> backend_;
};

}  // namespace strongbox

#endif  // STRONGBOX_TESTING_BACKEND_CONFORMANCE_H_
