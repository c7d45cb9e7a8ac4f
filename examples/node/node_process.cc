#include "examples/node/node_process.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "strongbox/status_macros.h"

extern char** environ;

namespace strongbox {
namespace node {
namespace {

constexpr absl::string_view kNodeRunfile =
    "strongbox/examples/node/strongbox_node";

bool Executable(const std::string& path) {
  return access(path.c_str(), X_OK) == 0;
}

std::string SelfPath() {
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  return n > 0 ? std::string(self, n) : std::string();
}

std::string DirName(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

}  // namespace

absl::StatusOr<std::string> FindNodeBinary(absl::string_view explicit_path,
                                           absl::string_view argv0) {
  if (!explicit_path.empty()) {
    std::string path(explicit_path);
    if (Executable(path)) return path;
    return absl::NotFoundError(
        absl::StrCat("--node-binary ", path, " is not an executable file"));
  }
  std::vector<std::string> tried;
  const auto try_path = [&](const std::string& path) {
    tried.push_back(path);
    return Executable(path);
  };
  for (const char* var : {"RUNFILES_DIR", "TEST_SRCDIR"}) {
    const char* dir = std::getenv(var);
    if (dir != nullptr && *dir != '\0') {
      std::string path = absl::StrCat(dir, "/", kNodeRunfile);
      if (try_path(path)) return path;
    }
  }
  const std::string self = SelfPath();
  for (const std::string& program : {self, std::string(argv0)}) {
    if (program.empty()) continue;
    std::string path = absl::StrCat(program, ".runfiles/", kNodeRunfile);
    if (try_path(path)) return path;
  }
  if (!self.empty()) {
    // bazel-bin/<pkg>/<binary> → bazel-bin/examples/node/strongbox_node.
    std::string dir = DirName(self);
    for (int up = 0; up < 4; ++up) {
      std::string path = absl::StrCat(dir, "/examples/node/strongbox_node");
      if (try_path(path)) return path;
      path = absl::StrCat(dir, "/strongbox_node");
      if (try_path(path)) return path;
      dir = DirName(dir);
    }
  }
  return absl::NotFoundError(absl::StrCat("strongbox_node not found (tried ",
                                          absl::StrJoin(tried, ", "),
                                          "); pass --node-binary=PATH"));
}

absl::StatusOr<std::unique_ptr<NodeProcess>> NodeProcess::Start(
    const std::string& binary, const std::vector<std::string>& args,
    const std::string& stderr_path) {
  int in[2], out[2];
  if (pipe2(in, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", strerror(errno)));
  }
  if (pipe2(out, O_CLOEXEC) != 0) {
    close(in[0]);
    close(in[1]);
    return absl::InternalError(absl::StrCat("pipe: ", strerror(errno)));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in[0], 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  if (!stderr_path.empty()) {
    posix_spawn_file_actions_addopen(&actions, 2, stderr_path.c_str(),
                                     O_WRONLY | O_CREAT | O_APPEND, 0644);
  }
  std::vector<std::string> argv_strings = {binary};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : argv_strings) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::unique_ptr<NodeProcess> process(new NodeProcess());
  const int err = posix_spawn(&process->pid_, binary.c_str(), &actions, nullptr,
                              argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(in[0]);
  close(out[1]);
  process->in_fd_ = in[1];
  process->out_fd_ = out[0];
  if (err != 0) {
    process->pid_ = -1;
    return absl::InternalError(
        absl::StrCat("cannot start ", binary, ": ", strerror(err)));
  }
  return process;
}

NodeProcess::~NodeProcess() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    kill(pid_, SIGCONT);
    int status;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
  if (in_fd_ >= 0) close(in_fd_);
  if (out_fd_ >= 0) close(out_fd_);
}

absl::Status NodeProcess::Write(absl::string_view bytes) {
  if (in_fd_ < 0) return absl::UnavailableError("stdin is closed");
  size_t done = 0;
  while (done < bytes.size()) {
    // MSG_NOSIGNAL does not apply to pipes; the caller's process should
    // ignore SIGPIPE (the tests and the demo do).
    ssize_t n = write(in_fd_, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return absl::UnavailableError(
          absl::StrCat("writing to the node: ", strerror(errno)));
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> NodeProcess::ReadLine(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    const size_t nl = buffer_.find('\n');
    if (nl != std::string::npos) {
      std::string line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      return line;
    }
    if (eof_) return absl::UnavailableError("the node closed its stdout");
    const absl::Duration left =
        std::max(deadline - absl::Now(), absl::ZeroDuration());
    struct pollfd p = {out_fd_, POLLIN, 0};
    const int wait_ms = static_cast<int>(
        absl::ToInt64Milliseconds(absl::Ceil(left, absl::Milliseconds(1))));
    const int r = poll(&p, 1, wait_ms);
    if (r < 0 && errno != EINTR) {
      return absl::InternalError(absl::StrCat("poll: ", strerror(errno)));
    }
    if (r <= 0) {
      if (absl::Now() >= deadline) {
        return absl::UnavailableError(absl::StrCat(
            "no answer from the node within ", absl::FormatDuration(timeout)));
      }
      continue;
    }
    char chunk[65536];
    ssize_t got = read(out_fd_, chunk, sizeof(chunk));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      eof_ = true;
    } else {
      buffer_.append(chunk, got);
    }
  }
}

absl::StatusOr<JsonValue> NodeProcess::Command(absl::string_view line,
                                               absl::Duration timeout) {
  STRONGBOX_RETURN_IF_ERROR(Write(absl::StrCat(line, "\n")));
  STRONGBOX_ASSIGN_OR_RETURN(std::string answer, ReadLine(timeout));
  last_line_ = answer;
  absl::StatusOr<JsonValue> parsed = ParseJson(answer);
  if (!parsed.ok()) {
    return absl::DataLossError(absl::StrCat("the node answered non-JSON: ",
                                            parsed.status().message()));
  }
  return parsed;
}

void NodeProcess::CloseInput() {
  if (in_fd_ >= 0) close(in_fd_);
  in_fd_ = -1;
}

void NodeProcess::Signal(int sig) {
  if (pid_ > 0) kill(pid_, sig);
}

absl::StatusOr<int> NodeProcess::Wait(absl::Duration timeout) {
  if (pid_ <= 0) return absl::FailedPreconditionError("not running");
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    int status;
    const pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      pid_ = -1;
      return status;
    }
    if (r < 0 && errno != EINTR) {
      pid_ = -1;
      return absl::InternalError(absl::StrCat("waitpid: ", strerror(errno)));
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError("the node is still running");
    }
    absl::SleepFor(absl::Milliseconds(1));
  }
}

}  // namespace node
}  // namespace strongbox
