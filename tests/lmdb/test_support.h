// Fresh, empty directories for LMDB tests, under $TEST_TMPDIR.
#ifndef STRONGBOX_TESTS_LMDB_TEST_DIRS_H_
#define STRONGBOX_TESTS_LMDB_TEST_DIRS_H_

#include <unistd.h>

#include <atomic>
#include <cstdlib>
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

}  // namespace strongbox

#endif  // STRONGBOX_TESTS_LMDB_TEST_DIRS_H_
