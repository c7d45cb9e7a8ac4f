// Shared by the LMDB tests and their helper process: fresh directories under
// $TEST_TMPDIR, and the values the crash-test writer stores.
#ifndef STRONGBOX_TESTS_LMDB_TEST_SUPPORT_H_
#define STRONGBOX_TESTS_LMDB_TEST_SUPPORT_H_

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <random>
#include <string>

#include "absl/strings/str_cat.h"

namespace strongbox {

// A new path (not yet created) unique within the test run.
inline std::string NewTestDir(const std::string& name = "store") {
  static std::atomic<int> counter{0};
  const char* tmp = std::getenv("TEST_TMPDIR");
  return absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/", name, "-", getpid(),
                      "-", counter.fetch_add(1));
}

// The value the crash-test writer puts at r<round>/k<i>: deterministic, so
// the parent can verify it; mostly small, sometimes past a page, sometimes
// large (overflow pages).
inline std::string WriterValue(int round, int i) {
  std::mt19937_64 rng(round * 1000003ull + i);
  const size_t sizes[] = {16, 100, 3000, 70000};
  std::string v(sizes[rng() % 4], '\0');
  for (char& c : v) c = static_cast<char>(rng());
  return v;
}

}  // namespace strongbox

#endif  // STRONGBOX_TESTS_LMDB_TEST_SUPPORT_H_
