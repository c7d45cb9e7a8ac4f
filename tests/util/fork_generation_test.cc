// The one process-wide fork counter (lib/util/fork_generation.h) that the
// LMDB environment and the fork-checked HA coordinator both read.
#include "lib/util/fork_generation.h"

#include <sys/wait.h>
#include <unistd.h>

#include "gtest/gtest.h"

namespace strongbox {
namespace {

TEST(ForkGenerationTest, EveryForkedChildSeesANewGeneration) {
  const uint64_t parent = ForkGeneration();
  EXPECT_EQ(CurrentForkGeneration(), parent);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // Exit codes: 0 the count moved by one, 1 it did not.
    _exit(CurrentForkGeneration() == parent + 1 ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  // The parent's count never moves.
  EXPECT_EQ(CurrentForkGeneration(), parent);
  EXPECT_EQ(ForkGeneration(), parent);
}

}  // namespace
}  // namespace strongbox
