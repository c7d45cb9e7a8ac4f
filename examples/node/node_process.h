// NodeProcess: one strongbox_node child process, driven through pipes —
// what tests/node and the ha_demo driver use to run a cluster of real
// processes. A command goes to the child's stdin; its one-line JSON answer
// comes back parsed.
//
// The child's stderr (its log) goes to a file of the caller's choosing, or
// is inherited. The destructor kills (SIGKILL) and reaps a child that is
// still running.
//
// Thread-compatible: use one NodeProcess from one thread at a time.
#ifndef STRONGBOX_EXAMPLES_NODE_NODE_PROCESS_H_
#define STRONGBOX_EXAMPLES_NODE_NODE_PROCESS_H_

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "examples/node/json.h"

namespace strongbox {
namespace node {

// The strongbox_node binary to run: `explicit_path` when non-empty, else
// found through Bazel's runfiles (of a test, or of a `bazel run` binary
// whose argv[0] is `argv0`), else beside the running binary in bazel-bin.
// NOT_FOUND naming the places tried.
absl::StatusOr<std::string> FindNodeBinary(absl::string_view explicit_path,
                                           absl::string_view argv0);

class NodeProcess {
 public:
  // Starts `binary` with `args`. `stderr_path`: where the child's stderr
  // goes (appended); empty: inherited.
  static absl::StatusOr<std::unique_ptr<NodeProcess>> Start(
      const std::string& binary, const std::vector<std::string>& args,
      const std::string& stderr_path = "");

  ~NodeProcess();
  NodeProcess(const NodeProcess&) = delete;
  NodeProcess& operator=(const NodeProcess&) = delete;

  // Sends `line` (a newline is added) and waits up to `timeout` for one
  // answer line. UNAVAILABLE if the child is gone or writes nothing in
  // time; DATA_LOSS if the answer is not JSON.
  absl::StatusOr<JsonValue> Command(absl::string_view line,
                                    absl::Duration timeout = absl::Seconds(10));
  // Writes raw bytes to the child's stdin (no newline added).
  absl::Status Write(absl::string_view bytes);
  // The next answer line as text, or UNAVAILABLE after `timeout` / at EOF.
  absl::StatusOr<std::string> ReadLine(absl::Duration timeout);
  // The last answer line Command() read, as text.
  const std::string& last_line() const { return last_line_; }

  // Closes the child's stdin (it shuts down cleanly on EOF).
  void CloseInput();
  void Signal(int sig);
  // Waits up to `timeout` for the child to exit; its wait status, or
  // DEADLINE_EXCEEDED (the child keeps running).
  absl::StatusOr<int> Wait(absl::Duration timeout);
  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }

 private:
  NodeProcess() = default;

  pid_t pid_ = -1;
  int in_fd_ = -1;   // the child's stdin
  int out_fd_ = -1;  // the child's stdout
  std::string buffer_;
  bool eof_ = false;
  std::string last_line_;
};

}  // namespace node
}  // namespace strongbox

#endif  // STRONGBOX_EXAMPLES_NODE_NODE_PROCESS_H_
