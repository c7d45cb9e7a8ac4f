// strongbox_node: a host process that embeds one strongbox node on the
// LMDB backend and speaks a line protocol on stdin/stdout (see
// examples/node/node_host.h for the commands and answers). Several of them
// on one --dir form an HA cluster; tests and the ha_demo drive them through
// pipes, and operators can script them.
//
//   strongbox_node --dir=DIR --node-id=ID --advertise=ADDR
//                  [--perf-standby] [--lease-ttl-ms=N]
//                  [--no-kill-hung-holder]
//   strongbox_node --etcd=URL[,URL...] [--etcd-prefix=P]
//                  [--etcd-ca=F --etcd-cert=F --etcd-key=F]
//                  --node-id=ID --advertise=ADDR [...as above]
//
// --etcd puts the node on an etcd cluster (EtcdBackend) instead of an
// LMDB directory; it needs a strongbox_node built with --config=openssl
// (the default build answers with exit 1 and a message saying so).
// --listen=HOST:PORT (same build requirement) serves the gRPC transport
// (//:grpc_transport) there and forwards a performance standby's writes to
// the active over it; --advertise then defaults to the listen address.
//
// stdout carries only answers, one JSON object per line, flushed after each.
// Logs (state changes) go to stderr. `quit`, end of input, SIGTERM or SIGINT
// shut the node down cleanly: the coordinator is destroyed, which releases
// the lease (a standby takes over at once) and seals; `quit` has no answer
// line (the protocol lists none): the process exits 0 once that shutdown is
// done, which is the caller's signal. Bad arguments: a message on
// stderr and exit status 2; a directory that cannot be opened: exit 1.
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "examples/node/json.h"
#include "examples/node/node_host.h"
#include "strongbox/secret_bytes.h"

namespace strongbox {
namespace node {
namespace {

volatile sig_atomic_t g_stop = 0;
void OnStopSignal(int) { g_stop = 1; }

bool WriteAll(const char* data, size_t size) {
  size_t done = 0;
  while (done < size) {
    ssize_t n = write(STDOUT_FILENO, data + done, size - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

// Writes one answer line to stdout, then wipes the answer (it may carry
// shares or secret values). False when stdout is gone.
bool WriteLine(std::string* json) {
  // No `json + "\n"`: that copy would be freed unwiped.
  const bool ok = WriteAll(json->data(), json->size()) && WriteAll("\n", 1);
  WipeString(*json);
  return ok;
}

// Reads stdin line by line without ever holding more than kMaxLineBytes + 1
// bytes of one line: the rest of an overlong line is skipped, and the line
// is reported as too long.
class LineReader {
 public:
  ~LineReader() { WipeMemory(buffer_, sizeof(buffer_)); }

  // The next line (without '\n'); false at end of input or on a stop
  // signal. A final line without '\n' counts.
  // *line is reserved once to its longest size, so it never reallocates
  // (a reallocation would free a copy of a share or secret unwiped).
  bool Next(std::string* line, sigset_t* wait_mask) {
    line->reserve(kMaxLineBytes + 1);
    line->clear();
    bool overlong = false;
    while (true) {
      if (pos_ == end_) {
        if (!Fill(wait_mask)) {
          if (eof_ && (!line->empty() || overlong)) {
            if (overlong) line->assign(kMaxLineBytes + 1, 'x');
            return true;
          }
          return false;
        }
      }
      const char* start = buffer_ + pos_;
      const char* nl =
          static_cast<const char*>(memchr(start, '\n', end_ - pos_));
      const size_t take = nl != nullptr ? nl - start : end_ - pos_;
      if (!overlong) {
        if (line->size() + take > kMaxLineBytes) {
          overlong = true;
          line->clear();
        } else {
          line->append(start, take);
        }
      }
      // What was consumed is in *line now (or skipped): wipe it here.
      WipeMemory(buffer_ + pos_, take);
      pos_ += take;
      if (nl != nullptr) {
        ++pos_;
        // The host answers INVALID_ARGUMENT for anything this long.
        if (overlong) line->assign(kMaxLineBytes + 1, 'x');
        return true;
      }
    }
  }

 private:
  bool Fill(sigset_t* wait_mask) {
    if (eof_) return false;
    pos_ = end_ = 0;
    while (true) {
      if (g_stop) return false;
      struct pollfd p = {STDIN_FILENO, POLLIN, 0};
      // Stop signals are blocked except inside ppoll, so none is lost
      // between the check above and the wait.
      int r = ppoll(&p, 1, nullptr, wait_mask);
      if (r < 0) {
        if (errno == EINTR) continue;
        eof_ = true;
        return false;
      }
      ssize_t n = read(STDIN_FILENO, buffer_, sizeof(buffer_));
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n <= 0) {
        eof_ = true;
        return false;
      }
      end_ = static_cast<size_t>(n);
      return true;
    }
  }

  char buffer_[16384];
  size_t pos_ = 0;
  size_t end_ = 0;
  bool eof_ = false;
};

int Run(int argc, char** argv) {
  absl::StatusOr<NodeConfig> config = ParseNodeFlags(argc, argv);
  if (!config.ok()) {
    std::fprintf(stderr, "strongbox_node: %s\n%s\n",
                 std::string(config.status().message()).c_str(),
                 NodeUsage().c_str());
    return 2;
  }
  // A vanished reader must not kill us before a clean shutdown.
  signal(SIGPIPE, SIG_IGN);
  // Block the stop signals in every thread (the coordinator's thread
  // inherits the mask); the main thread takes them only inside ppoll.
  sigset_t stop_signals, wait_mask;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, &wait_mask);
  sigdelset(&wait_mask, SIGTERM);
  sigdelset(&wait_mask, SIGINT);
  struct sigaction action = {};
  action.sa_handler = OnStopSignal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);

  absl::StatusOr<std::unique_ptr<NodeHost>> host = NodeHost::Open(*config);
  if (!host.ok()) {
    std::fprintf(stderr, "strongbox_node: cannot open %s: %s\n",
                 config->dir.empty() ? "the etcd backend" : config->dir.c_str(),
                 host.status().ToString().c_str());
    return 1;
  }
  LineReader reader;
  std::string line;
  while (reader.Next(&line, &wait_mask)) {
    absl::string_view command = line;
    while (!command.empty() &&
           (command.back() == '\r' || command.back() == ' ' ||
            command.back() == '\t')) {
      command.remove_suffix(1);
    }
    while (!command.empty() &&
           (command.front() == ' ' || command.front() == '\t')) {
      command.remove_prefix(1);
    }
    if (command == "quit") break;
    std::string answer = (*host)->HandleLine(&line);  // wipes `line`
    if (!WriteLine(&answer)) break;
  }
  WipeString(line);
  host->reset();  // releases the lease and seals
  return 0;
}

}  // namespace
}  // namespace node
}  // namespace strongbox

int main(int argc, char** argv) { return strongbox::node::Run(argc, argv); }
