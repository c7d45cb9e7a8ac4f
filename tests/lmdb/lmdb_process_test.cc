// Real processes on one LMDB directory (the helper is lmdb_child):
//   * a writer killed with SIGKILL at random moments loses no acknowledged
//     write, over many rounds;
//   * three contenders: SIGKILL of the holder hands the lease over at once
//     (file lock, not TTL); SIGSTOP of the holder hands it over after the
//     TTL, and after SIGCONT the old holder's fenced write is refused with
//     nothing applied and it reports the loss;
//   * a holder stopped (SIGSTOP) *inside* a write transaction, holding
//     LMDB's writer lock: with kill_hung_holder a contender kills it once
//     its grant has been expired for the grace and is granted itself, with
//     every acknowledged write present and the in-flight one absent;
//     without the option the wait is reported; a holder whose identity is
//     not proven (pid reused, another boot) or whose grant is still within
//     the grace is never killed;
//   * a map grown by another process is adopted (MDB_MAP_RESIZED);
//   * readers killed with SIGKILL (mid-read) neither exhaust the reader
//     table nor pin a snapshot that makes data.mdb grow without bound.
// Timing is reported, not asserted tightly (shared, noisy machines).
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "examples/node/node_host.h"
#include "gtest/gtest.h"
#include "lib/lmdb/test_hooks.h"
#include "strongbox/ha_coordinator.h"
#include "strongbox/lmdb_backend.h"
#include "strongbox/testing/fake_clock.h"
#include "tests/lmdb/test_support.h"

extern char** environ;

namespace strongbox {
namespace {

std::string ChildPath() {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* workspace = std::getenv("TEST_WORKSPACE");
  if (srcdir != nullptr && workspace != nullptr) {
    std::string path =
        absl::StrCat(srcdir, "/", workspace, "/tests/lmdb/lmdb_child");
    if (access(path.c_str(), X_OK) == 0) return path;
  }
  // Beside this test binary in bazel-bin.
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n <= 0) return "lmdb_child";
  std::string path(self, n);
  return path.substr(0, path.rfind('/')) + "/lmdb_child";
}

// One helper process and the read end of its stdout.
class Child {
 public:
  explicit Child(std::vector<std::string> args) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
    const std::string path = ChildPath();
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(path.c_str()));
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (posix_spawn(&pid_, path.c_str(), &actions, nullptr, argv.data(),
                    environ) != 0) {
      pid_ = -1;
    }
    posix_spawn_file_actions_destroy(&actions);
    close(fds[1]);
    fd_ = fds[0];
  }

  ~Child() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      kill(pid_, SIGCONT);
      Reap();
    }
    if (fd_ >= 0) close(fd_);
  }

  bool started() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  int fd() const { return fd_; }

  // Never kill(-1, ...): after Reap() or EndedWithin() there is no pid.
  void Signal(int sig) {
    if (pid_ > 0) kill(pid_, sig);
  }

  // Waits for the process to end (after SIGKILL); returns its wait
  // status (-1 if there was no process).
  int Reap() {
    if (pid_ <= 0) return -1;
    int status = 0;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    return status;
  }

  // True if the process has ended (reaping it) within `timeout`; its wait
  // status in *status.
  bool EndedWithin(absl::Duration timeout, int* status) {
    const absl::Time deadline = absl::Now() + timeout;
    while (pid_ > 0) {
      const pid_t got = waitpid(pid_, status, WNOHANG);
      if (got == pid_) {
        pid_ = -1;
        return true;
      }
      if (absl::Now() >= deadline) return false;
      absl::SleepFor(absl::Milliseconds(2));
    }
    return false;
  }

  // The next complete line, or nullopt at EOF or after `timeout`.
  std::optional<std::string> ReadLine(absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    while (true) {
      size_t nl = buffer_.find('\n');
      if (nl != std::string::npos) {
        std::string line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        return line;
      }
      if (eof_) return std::nullopt;
      const absl::Duration left =
          std::max(deadline - absl::Now(), absl::ZeroDuration());
      struct pollfd p = {fd_, POLLIN, 0};
      const int wait_ms = static_cast<int>(
          absl::ToInt64Milliseconds(absl::Ceil(left, absl::Milliseconds(1))));
      if (poll(&p, 1, wait_ms) <= 0) {
        if (absl::Now() >= deadline) return std::nullopt;
        continue;
      }
      char chunk[4096];
      ssize_t got = read(fd_, chunk, sizeof(chunk));
      if (got <= 0) {
        eof_ = true;
      } else {
        buffer_.append(chunk, got);
      }
    }
  }

  // Every line until EOF (the process must be dead or dying).
  std::vector<std::string> DrainLines() {
    std::vector<std::string> lines;
    while (auto line = ReadLine(absl::Seconds(10))) lines.push_back(*line);
    return lines;
  }

 private:
  pid_t pid_ = -1;
  int fd_ = -1;
  std::string buffer_;
  bool eof_ = false;
};

std::vector<std::string> Words(const std::string& line) {
  return absl::StrSplit(line, ' ');
}

// ------------------------------------------------------ crash durability

TEST(LmdbProcessTest, KilledWriterLosesNoAcknowledgedWrite) {
  const std::string dir = NewTestDir("crash");
  const uint64_t seed = std::random_device()();
  std::mt19937_64 rng(seed);
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  constexpr int kRounds = 20;
  int total_acked = 0;
  for (int round = 0; round < kRounds; ++round) {
    Child writer({"writer", dir, absl::StrCat(round), absl::StrCat(seed)});
    ASSERT_TRUE(writer.started());
    // Let it get going, then kill it at a random moment: between commits,
    // inside one, or while it prints.
    auto first = writer.ReadLine(absl::Seconds(10));
    ASSERT_TRUE(first.has_value()) << "writer produced nothing";
    ASSERT_EQ(first->rfind("ACK ", 0), 0u) << *first;
    absl::SleepFor(absl::Microseconds(rng() % 40000));
    writer.Signal(SIGKILL);
    writer.Reap();
    std::vector<std::string> lines = writer.DrainLines();
    lines.insert(lines.begin(), *first);

    auto backend = LmdbBackend::Open(dir);
    ASSERT_TRUE(backend.ok()) << "round " << round << ": " << backend.status();
    uint64_t max_version = 0;
    for (const std::string& line : lines) {
      std::vector<std::string> w = Words(line);
      ASSERT_EQ(w.size(), 3u) << line;
      ASSERT_EQ(w[0], "ACK") << line;
      int i;
      uint64_t version;
      ASSERT_TRUE(absl::SimpleAtoi(w[1], &i) &&
                  absl::SimpleAtoi(w[2], &version));
      absl::StatusOr<Entry> e =
          (*backend)->Get(absl::StrCat("r", round, "/k", i));
      ASSERT_TRUE(e.ok()) << "round " << round << " lost acknowledged write "
                          << i << ": " << e.status();
      EXPECT_EQ(e->version, version);
      EXPECT_EQ(e->value, WriterValue(round, i));
      max_version = std::max(max_version, version);
    }
    EXPECT_GE(*(*backend)->Revision(), max_version);
    total_acked += static_cast<int>(lines.size());
  }
  std::printf("%d rounds, %d acknowledged writes, all present\n", kRounds,
              total_acked);
}

// -------------------------------------------------------------- the lease

// Three contenders on one directory, each reading its own stdout.
class Contenders {
 public:
  Contenders(const std::string& dir, int ttl_ms) {
    for (int i = 0; i < 3; ++i) {
      children_.push_back(std::make_unique<Child>(std::vector<std::string>{
          "contender", dir, absl::StrCat("node", i), absl::StrCat(ttl_ms)}));
    }
  }

  Child& operator[](int i) { return *children_[i]; }

  // Waits until one child among `among` prints a line starting with
  // `word`; returns its index and the line. Lines of other kinds are
  // skipped (and kept in `log`).
  std::optional<std::pair<int, std::string>> Await(const std::string& word,
                                                   std::vector<int> among,
                                                   absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      std::vector<struct pollfd> fds;
      for (int i : among) fds.push_back({children_[i]->fd(), POLLIN, 0});
      for (size_t k = 0; k < among.size(); ++k) {
        // Buffered lines first.
        while (auto line =
                   children_[among[k]]->ReadLine(absl::ZeroDuration())) {
          log.push_back(absl::StrCat(among[k], ": ", *line));
          if (line->rfind(word, 0) == 0) return std::make_pair(among[k], *line);
        }
      }
      poll(fds.data(), fds.size(), 5);
    }
    return std::nullopt;
  }

  std::vector<std::string> log;

  ~Contenders() {
    if (testing::Test::HasFailure()) {
      for (const std::string& line : log) std::printf("  %s\n", line.c_str());
    }
  }

 private:
  std::vector<std::unique_ptr<Child>> children_;
};

std::vector<int> Others(int i) {
  std::vector<int> others;
  for (int j = 0; j < 3; ++j) {
    if (j != i) others.push_back(j);
  }
  return others;
}

TEST(LmdbProcessTest, KilledHolderIsReplacedAtOnce) {
  const std::string dir = NewTestDir("kill");
  // A TTL far beyond the test: only the file lock can explain a takeover.
  Contenders c(dir, /*ttl_ms=*/60000);
  auto first = c.Await("GRANTED", {0, 1, 2}, absl::Seconds(10));
  ASSERT_TRUE(first.has_value()) << "nobody was granted the lease";
  const int holder = first->first;
  // Let the holder write and the standbys settle into their wait.
  ASSERT_TRUE(c.Await("WRITE_OK", {holder}, absl::Seconds(10)).has_value());
  absl::SleepFor(absl::Milliseconds(50));

  const absl::Time killed = absl::Now();
  c[holder].Signal(SIGKILL);
  auto next = c.Await("GRANTED", Others(holder), absl::Seconds(10));
  const absl::Duration takeover = absl::Now() - killed;
  ASSERT_TRUE(next.has_value()) << "no takeover after SIGKILL";
  std::printf("crash takeover: %.1f ms (TTL 60 s)\n",
              absl::ToDoubleMilliseconds(takeover));
  testing::Test::RecordProperty(
      "crash_takeover_us",
      static_cast<int>(absl::ToInt64Microseconds(takeover)));
  EXPECT_LT(takeover, absl::Seconds(5)) << "takeover took TTL-like time";
  // The new holder writes with its fence.
  EXPECT_TRUE(
      c.Await("WRITE_OK", {next->first}, absl::Seconds(10)).has_value());
}

TEST(LmdbProcessTest, StoppedHolderIsFencedOutAfterTheTtl) {
  const std::string dir = NewTestDir("stop");
  const int ttl_ms = 400;
  Contenders c(dir, ttl_ms);
  auto first = c.Await("GRANTED", {0, 1, 2}, absl::Seconds(10));
  ASSERT_TRUE(first.has_value());
  const int holder = first->first;
  const FenceToken old_fence = std::stoull(Words(first->second)[1]);
  // Stop it as it goes to sleep after an acknowledged write: outside any
  // transaction (a holder hung *inside* a write transaction would hold
  // LMDB's writer lock; see the header).
  ASSERT_TRUE(c.Await("WRITE_OK", {holder}, absl::Seconds(10)).has_value());
  ASSERT_TRUE(c.Await("IDLE", {holder}, absl::Seconds(10)).has_value());
  const absl::Time stopped = absl::Now();
  c[holder].Signal(SIGSTOP);

  auto next = c.Await("GRANTED", Others(holder), absl::Seconds(10));
  ASSERT_TRUE(next.has_value()) << "no takeover from a stopped holder";
  const absl::Duration takeover = absl::Now() - stopped;
  std::printf("hung-holder takeover: %.1f ms (TTL %d ms)\n",
              absl::ToDoubleMilliseconds(takeover), ttl_ms);
  EXPECT_GT(takeover, absl::Milliseconds(ttl_ms / 4))
      << "a live (stopped) holder was replaced before its TTL";
  EXPECT_GT(std::stoull(Words(next->second)[1]), old_fence);
  ASSERT_TRUE(
      c.Await("WRITE_OK", {next->first}, absl::Seconds(10)).has_value());

  c[holder].Signal(SIGCONT);
  auto refused = c.Await("WRITE_", {holder}, absl::Seconds(10));
  ASSERT_TRUE(refused.has_value());
  std::vector<std::string> w = Words(refused->second);
  ASSERT_EQ(w[0], "WRITE_REFUSED") << refused->second;
  EXPECT_EQ(w[2], "FAILED_PRECONDITION");
  auto lost = c.Await("LOST", {holder}, absl::Seconds(10));
  ASSERT_TRUE(lost.has_value()) << "the old holder did not learn it lost";
  EXPECT_EQ(Words(lost->second)[1], absl::StrCat(old_fence));

  // Nothing of the refused write was applied.
  auto backend = LmdbBackend::Open(dir);
  ASSERT_TRUE(backend.ok()) << backend.status();
  EXPECT_EQ((*backend)
                ->Get(absl::StrCat("w/node", holder, "/", w[1]))
                .status()
                .code(),
            absl::StatusCode::kNotFound);
  auto current = (*backend)->ha()->CurrentHolder();
  ASSERT_TRUE(current.ok() && current->has_value());
  EXPECT_EQ((*current)->holder, absl::StrCat("node", next->first));
}

// ------------------------------------------------- a holder hung in a write

// The state letter of /proc/<pid>/stat ('T' when stopped), or '?'.
char ProcessState(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string text((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  const size_t paren = text.rfind(')');
  if (paren == std::string::npos || paren + 2 >= text.size()) return '?';
  return text[paren + 2];
}

// Acquire on a thread of its own (a grant attempt blocked on LMDB's writer
// lock ignores its deadline: the test must be able to give up on it).
class BackgroundAcquire {
 public:
  BackgroundAcquire(LmdbBackend* backend, AcquireOptions options)
      : thread_([this, backend, options] {
          auto grant = backend->ha()->Acquire(options);
          std::lock_guard<std::mutex> lock(mu_);
          result_.emplace(std::move(grant));
        }) {}
  ~BackgroundAcquire() { Join(); }

  bool done() {
    std::lock_guard<std::mutex> lock(mu_);
    return result_.has_value();
  }
  // REQUIRES: the thread ended (Join()).
  absl::StatusOr<std::unique_ptr<LeadershipGrant>>& result() {
    return *result_;
  }
  void Join() {
    if (thread_.joinable()) thread_.join();
  }

 private:
  std::mutex mu_;
  std::optional<absl::StatusOr<std::unique_ptr<LeadershipGrant>>> result_;
  std::thread thread_;
};

// A contender that was granted the lease alone, acknowledged some fenced
// writes, and then stopped itself inside the write transaction of the next
// one: it holds LMDB's writer lock.
// Reads a contender's lines until it acknowledged `n` writes; fails on an
// ERROR line or silence.
void AwaitHolderWrites(Child& holder, int n) {
  int writes = 0;
  while (writes < n) {
    std::optional<std::string> line = holder.ReadLine(absl::Seconds(10));
    ASSERT_TRUE(line.has_value()) << "the holder went quiet";
    if (line->rfind("WRITE_OK", 0) == 0) ++writes;
    ASSERT_NE(line->rfind("ERROR", 0), 0u) << *line;
  }
}

// A stopper child's first line: it is stopping inside its write.
void ExpectStoppingInWrite(Child& stopper) {
  std::optional<std::string> stopping = stopper.ReadLine(absl::Seconds(10));
  ASSERT_TRUE(stopping.has_value() && *stopping == "STOPPING_IN_WRITE")
      << (stopping.has_value() ? *stopping : "nothing");
}

struct StoppedHolder {
  std::unique_ptr<Child> child;
  FenceToken fence = kNoFence;
  std::vector<std::pair<int, uint64_t>> acked;  // (seq, version)
  int in_flight = -1;                           // seq of the stopped write
  absl::Time stopped_at;
};

// Where the holder stops itself inside its write.
enum class StopPoint {
  kInsideCommit,  // inside the write transaction, marked (--stop-in-write)
  // Right after mdb_txn_begin returned, before the "inside a write"
  // marker: LMDB's writer lock held unmarked (--stop-after-begin).
  kAfterBeginUnmarked,
};

// A holder whose own short lease lapses before it reaches the stop (its
// renewal starved on a loaded machine: its next write is refused with
// FAILED_PRECONDITION, nothing applied, and it says LOST and contends
// again) is followed through that: its acknowledged writes still count and
// its newest fence is the one recorded. Any other refusal fails the test.
void StopHolderInsideAWrite(const std::string& dir, int ttl_ms,
                            const std::vector<std::string>& flags,
                            StoppedHolder* out,
                            StopPoint where = StopPoint::kInsideCommit) {
  const bool after_begin = where == StopPoint::kAfterBeginUnmarked;
  std::vector<std::string> args = {
      "contender", dir, "stopper", absl::StrCat(ttl_ms),
      after_begin ? "--stop-after-begin" : "--stop-in-write"};
  args.insert(args.end(), flags.begin(), flags.end());
  const std::string trigger =
      dir + (after_begin ? "/stop-after-begin" : "/stop-in-write");
  const std::string stopping =
      after_begin ? "STOPPING_AFTER_BEGIN" : "STOPPING_IN_WRITE";
  out->child = std::make_unique<Child>(args);
  Child& child = *out->child;
  ASSERT_TRUE(child.started());
  bool triggered = false;
  bool lost = false;
  while (true) {
    std::optional<std::string> line = child.ReadLine(absl::Seconds(10));
    ASSERT_TRUE(line.has_value()) << "the holder went quiet";
    std::vector<std::string> w = Words(*line);
    if (w[0] == "GRANTED") {
      ASSERT_TRUE(out->fence == kNoFence || lost)
          << "granted again without losing the grant";
      lost = false;
      out->fence = std::stoull(w[1]);
    } else if (w[0] == "WRITE_OK") {
      out->acked.emplace_back(std::stoi(w[1]), std::stoull(w[2]));
    } else if (w[0] == stopping) {
      out->in_flight = std::stoi(w[1]);
      out->stopped_at = absl::Now();
      break;
    } else if (w[0] == "WRITE_REFUSED" && w.size() == 3 &&
               w[2] == "FAILED_PRECONDITION") {
      std::printf(
          "holder's own lease lapsed (write %s refused); it "
          "contends again\n",
          w[1].c_str());
    } else if (w[0] == "LOST") {
      lost = true;
    } else if (w[0] == "ERROR" || w[0] == "WRITE_REFUSED") {
      FAIL() << "holder: " << *line;
    }
    if (!triggered && out->acked.size() >= 3) {
      std::ofstream(trigger) << "x";
      triggered = true;
    }
  }
  // raise(SIGSTOP) follows the line at once; wait until it took effect.
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (ProcessState(child.pid()) != 'T') {
    ASSERT_LT(absl::Now(), deadline) << "the holder did not stop";
    absl::SleepFor(absl::Milliseconds(1));
  }
}

class RecordingObserver : public HungHolderObserver {
 public:
  void OnHungHolder(const HungHolderEvent& event) override {
    std::lock_guard<std::mutex> lock(mu_);
    events_.push_back(event);
  }
  std::vector<HungHolderEvent> events() {
    std::lock_guard<std::mutex> lock(mu_);
    return events_;
  }

 private:
  std::mutex mu_;
  std::vector<HungHolderEvent> events_;
};

AcquireOptions Candidate(const std::string& holder, absl::Duration timeout) {
  AcquireOptions o;
  o.holder = holder;
  o.ttl = absl::Seconds(30);
  o.deadline = absl::Now() + timeout;
  return o;
}

// Every write the stopped holder acknowledged is present with its version;
// the one it was stopped inside of is not.
void ExpectAcknowledgedWritesOnly(LmdbBackend& backend,
                                  const StoppedHolder& stopped) {
  ASSERT_FALSE(stopped.acked.empty());
  for (const auto& [seq, version] : stopped.acked) {
    absl::StatusOr<Entry> e = backend.Get(absl::StrCat("w/stopper/", seq));
    ASSERT_TRUE(e.ok()) << "lost acknowledged write " << seq << ": "
                        << e.status();
    EXPECT_EQ(e->version, version);
    EXPECT_EQ(e->value, absl::StrCat(stopped.fence));
  }
  EXPECT_EQ(backend.Get(absl::StrCat("w/stopper/", stopped.in_flight))
                .status()
                .code(),
            absl::StatusCode::kNotFound)
      << "the killed holder's unacknowledged write was applied";
}

// One takeover from a holder stopped inside a write, by this process with
// kill_hung_holder on. Returns the time from the stop to the grant.
// `where` the holder stops; the kill's reason in *kill_reason if given.
void TakeOverFromHolderStoppedInAWrite(
    int ttl_ms, absl::Duration* took,
    StopPoint where = StopPoint::kInsideCommit,
    std::string* kill_reason = nullptr) {
  const std::string dir = NewTestDir("hung");
  StoppedHolder stopped;
  StopHolderInsideAWrite(dir, ttl_ms, {}, &stopped, where);
  if (testing::Test::HasFatalFailure()) return;
  const pid_t pid = stopped.child->pid();

  RecordingObserver observer;
  LmdbBackendOptions options;
  options.kill_hung_holder = true;
  options.hung_holder_observer = &observer;
  auto backend = LmdbBackend::Open(dir, options);
  ASSERT_TRUE(backend.ok()) << backend.status();
  BackgroundAcquire acquire(backend->get(),
                            Candidate("taker", absl::Seconds(30)));
  // A grant attempt blocked on the writer lock ignores its deadline: give
  // up on it here, and end the stopped holder so that it returns.
  const absl::Time give_up = absl::Now() + absl::Seconds(15);
  while (!acquire.done() && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  *took = absl::Now() - stopped.stopped_at;
  if (!acquire.done()) {
    HungHolderStatus hung = (*backend)->hung_holder_status();
    stopped.child->Signal(SIGKILL);
    acquire.Join();
    FAIL() << "no takeover from the stopped holder within 15 s; waiting: "
           << (hung.waiting.has_value() ? hung.waiting->reason : "nothing");
  }
  acquire.Join();
  absl::StatusOr<std::unique_ptr<LeadershipGrant>>& grant = acquire.result();
  ASSERT_TRUE(grant.ok()) << grant.status();
  EXPECT_GT((*grant)->fence(), stopped.fence);

  // The stopped process is gone, killed by SIGKILL.
  int status = 0;
  ASSERT_TRUE(stopped.child->EndedWithin(absl::Seconds(10), &status))
      << "the hung holder still exists";
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
  // The kill was reported, with the pid.
  std::vector<HungHolderEvent> events = observer.events();
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().kind, HungHolderEvent::Kind::kKilled);
  EXPECT_EQ(events.back().pid, static_cast<uint32_t>(pid));
  EXPECT_EQ(events.back().fence, stopped.fence);
  EXPECT_EQ(events.back().holder, "stopper");
  if (kill_reason != nullptr) *kill_reason = events.back().reason;
  EXPECT_GE(events.back().expired_for, absl::Milliseconds(ttl_ms));
  HungHolderStatus hung = (*backend)->hung_holder_status();
  EXPECT_EQ(hung.kills, 1u);
  ASSERT_TRUE(hung.last_kill.has_value());
  EXPECT_EQ(hung.last_kill->pid, static_cast<uint32_t>(pid));
  EXPECT_FALSE(hung.waiting.has_value());

  ExpectAcknowledgedWritesOnly(**backend, stopped);
  // The new holder writes with its fence.
  EXPECT_TRUE((*backend)->Put("after", "x", (*grant)->fence()).ok());
}

TEST(LmdbHungHolderTest, HolderStoppedInsideAWriteIsKilledAndReplaced) {
  const int ttl_ms = 300;
  absl::Duration took;
  TakeOverFromHolderStoppedInAWrite(ttl_ms, &took);
  if (HasFatalFailure()) return;
  // TTL + grace (one TTL) + a bound generous for a loaded machine.
  std::printf(
      "takeover from a holder stopped inside a write: %.1f ms (TTL "
      "%d ms, grace = TTL)\n",
      absl::ToDoubleMilliseconds(took), ttl_ms);
  EXPECT_LT(took, absl::Milliseconds(2 * ttl_ms) + absl::Seconds(2));
  // Never before the grant expired plus the grace.
  EXPECT_GE(took, absl::Milliseconds(ttl_ms));
}

TEST(LmdbHungHolderTest, TakeoverTimeOverTwentyRuns) {
  const int ttl_ms = 200;
  std::vector<double> ms;
  for (int run = 0; run < 20; ++run) {
    SCOPED_TRACE(absl::StrCat("run ", run));
    absl::Duration took;
    TakeOverFromHolderStoppedInAWrite(ttl_ms, &took);
    if (HasFatalFailure()) return;
    ms.push_back(absl::ToDoubleMilliseconds(took));
  }
  std::sort(ms.begin(), ms.end());
  const double median = (ms[9] + ms[10]) / 2;
  std::printf(
      "takeover after SIGSTOP inside a write, 20 runs, TTL %d ms, grace "
      "%d ms: median %.1f ms, min %.1f ms, max %.1f ms (goal <= %d ms)\n",
      ttl_ms, ttl_ms, median, ms.front(), ms.back(), 2 * ttl_ms + 100);
  testing::Test::RecordProperty("takeover_median_us",
                                static_cast<int>(median * 1000));
  testing::Test::RecordProperty("takeover_max_us",
                                static_cast<int>(ms.back() * 1000));
}

// Opening the store takes no writer lock, so a node that starts while a
// holder is stopped inside a write can open it (and then take over).
// The gap the marker left (issue 18): a holder stopped inside
// mdb_txn_begin after LMDB took its writer lock, before it could mark
// itself inside the write (the test hook stops it right after begin
// returned, which is the same state). Before the fix no contender could
// prove it hung, and the takeover waited as long as the stop lasted (this
// test's Acquire then ran into its deadline). Now the owner of LMDB's
// writer mutex names the holder's own thread, which has not run since:
// killed and replaced like a holder stopped inside its commit.
TEST(LmdbHungHolderTest, HolderStoppedInsideBeginBeforeItsMarkerIsKilled) {
  const int ttl_ms = 300;
  absl::Duration took;
  std::string reason;
  TakeOverFromHolderStoppedInAWrite(ttl_ms, &took,
                                    StopPoint::kAfterBeginUnmarked, &reason);
  if (HasFatalFailure()) return;
  std::printf(
      "takeover from a holder stopped after begin, before its marker: "
      "%.1f ms (TTL %d ms, grace = TTL)\n",
      absl::ToDoubleMilliseconds(took), ttl_ms);
  EXPECT_NE(reason.find("owned LMDB's writer lock in one hold"),
            std::string::npos)
      << reason;
  EXPECT_GE(took, absl::Milliseconds(ttl_ms));
  EXPECT_LT(took, absl::Milliseconds(2 * ttl_ms) + absl::Seconds(2));
}

TEST(LmdbHungHolderTest, OpenDoesNotWaitForAHolderStoppedInsideAWrite) {
  const std::string dir = NewTestDir("hung-open");
  StoppedHolder stopped;
  StopHolderInsideAWrite(dir, /*ttl_ms=*/60000, {}, &stopped);
  if (HasFatalFailure()) return;
  std::mutex mu;
  std::optional<absl::Status> opened;
  std::thread opener([&] {
    absl::Status s = LmdbBackend::Open(dir).status();
    std::lock_guard<std::mutex> lock(mu);
    opened = s;
  });
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  bool done = false;
  while (!done && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
    std::lock_guard<std::mutex> lock(mu);
    done = opened.has_value();
  }
  EXPECT_TRUE(done) << "Open waited for the writer lock";
  stopped.child->Signal(SIGKILL);  // frees a blocked Open too
  opener.join();
  ASSERT_TRUE(opened.has_value());
  EXPECT_TRUE(opened->ok()) << *opened;
}

// Runs Acquire on a thread (it blocks in LMDB while the writer lock is
// held) and hands the grant back when it returns.

// Waits until the backend reports a takeover waiting on a hung holder.
std::optional<HungHolderEvent> AwaitWaiting(LmdbBackend& backend,
                                            absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    HungHolderStatus status = backend.hung_holder_status();
    if (status.waiting.has_value()) return status.waiting;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return std::nullopt;
}

// A contender that is not allowed to kill: it waits for the stopped
// holder, reports the wait (status and observer, with the pid), and is
// granted once the holder resumes.
TEST(LmdbHungHolderTest, WithoutTheOptionTheWaitIsReported) {
  const std::string dir = NewTestDir("hung-off");
  const int ttl_ms = 200;
  StoppedHolder stopped;
  StopHolderInsideAWrite(dir, ttl_ms, {}, &stopped);
  if (HasFatalFailure()) return;
  const pid_t pid = stopped.child->pid();
  RecordingObserver observer;
  LmdbBackendOptions options;  // kill_hung_holder: false (the default)
  options.hung_holder_observer = &observer;
  auto backend = LmdbBackend::Open(dir, options);
  ASSERT_TRUE(backend.ok()) << backend.status();
  {
    BackgroundAcquire acquire(backend->get(),
                              Candidate("patient", absl::Seconds(60)));
    std::optional<HungHolderEvent> waiting =
        AwaitWaiting(**backend, absl::Seconds(10));
    ASSERT_TRUE(waiting.has_value()) << "the wait was not reported";
    EXPECT_EQ(waiting->kind, HungHolderEvent::Kind::kWaiting);
    EXPECT_EQ(waiting->pid, static_cast<uint32_t>(pid));
    EXPECT_EQ(waiting->fence, stopped.fence);
    EXPECT_NE(waiting->reason.find("kill_hung_holder is off"),
              std::string::npos)
        << waiting->reason;
    // Still stopped, not killed, and the takeover still waits.
    absl::SleepFor(absl::Milliseconds(2 * ttl_ms));
    EXPECT_EQ(ProcessState(pid), 'T');
    EXPECT_FALSE(acquire.done());
    EXPECT_EQ((*backend)->hung_holder_status().kills, 0u);
    // Ended, the holder's writer lock is recovered at once and the takeover
    // completes. (Not SIGCONT: a resumed holder whose lapsed grant nobody
    // took yet may renew it first, and the takeover would rightly wait.)
    stopped.child->Signal(SIGKILL);
    acquire.Join();
    ASSERT_TRUE(acquire.result().ok()) << acquire.result().status();
    EXPECT_GT((*acquire.result())->fence(), stopped.fence);
  }
  EXPECT_FALSE((*backend)->hung_holder_status().waiting.has_value())
      << "the wait is still reported after the takeover";
  std::vector<HungHolderEvent> events = observer.events();
  // The wait is reported once, not at every watchdog tick; the holder's
  // end (SIGKILL above) may add one more report before the takeover.
  ASSERT_GE(events.size(), 1u);
  EXPECT_LE(events.size(), 2u) << "the wait was reported again and again";
  for (const HungHolderEvent& e : events) {
    EXPECT_EQ(e.kind, HungHolderEvent::Kind::kWaiting) << e.reason;
    EXPECT_EQ(e.pid, static_cast<uint32_t>(pid)) << e.reason;
  }
}

// Issue 18: without the kill, `strongbox_node status` says that the
// takeover waits on a holder hung inside a write, and names its pid.
TEST(LmdbHungHolderTest, NodeStatusReportsATakeoverWaitingOnAHungHolder) {
  const std::string dir = NewTestDir("hung-status");
  node::NodeConfig config;
  config.dir = dir;
  config.node_id = "patient";
  config.advertise = "127.0.0.1:9301";
  config.lease_ttl = absl::Milliseconds(200);
  config.kill_hung_holder = false;
  std::string share;
  {
    // Initialize the store, then let the first node go (it releases).
    auto first = node::NodeHost::Open(config);
    ASSERT_TRUE(first.ok()) << first.status();
    const std::string init = (*first)->HandleLine("init 1 1");
    const size_t at = init.find("[\"");
    ASSERT_NE(at, std::string::npos) << "init failed";
    share = init.substr(at + 2, init.find('"', at + 2) - at - 2);
  }
  StoppedHolder stopped;
  StopHolderInsideAWrite(dir, 200, {}, &stopped);
  if (HasFatalFailure()) return;
  const pid_t pid = stopped.child->pid();

  auto host = node::NodeHost::Open(config);  // never waits for the writer
  ASSERT_TRUE(host.ok()) << host.status();
  ASSERT_NE((*host)->HandleLine("unseal " + share).find("\"sealed\":false"),
            std::string::npos);
  const std::string expected = absl::StrCat("\"pid\":\"", pid, "\"");
  std::string status;
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (status.find(expected) == std::string::npos) {
    ASSERT_LT(absl::Now(), deadline)
        << "status never named the hung holder: " << status;
    absl::SleepFor(absl::Milliseconds(5));
    status = (*host)->HandleLine("status");
  }
  EXPECT_NE(status.find("\"takeover_waiting\""), std::string::npos) << status;
  EXPECT_NE(status.find("kill_hung_holder is off"), std::string::npos)
      << status;
  EXPECT_EQ(ProcessState(pid), 'T') << "the holder was killed";
  // Ended (see WithoutTheOptionTheWaitIsReported), the holder's writer
  // lock is recovered; the node takes over and the report is gone.
  stopped.child->Signal(SIGKILL);
  while (status.find("\"state\":\"active\"") == std::string::npos) {
    ASSERT_LT(absl::Now(), deadline) << "no takeover: " << status;
    absl::SleepFor(absl::Milliseconds(5));
    status = (*host)->HandleLine("status");
  }
  EXPECT_EQ(status.find("takeover_waiting"), std::string::npos) << status;
}

// Issue 18 review, item 5: strongbox_node's grace is one TTL but never
// less than a second (node::kMinHungHolderGrace). With a 40 ms TTL, a grace
// of one TTL would kill an active node whose commit stalls for a fraction
// of a second (a busy disk's fsync, swap), as if it were hung: a failover
// and a restart for a hiccup. Here the holder is stopped inside a write;
// a node with a 40 ms TTL leaves it alone well past the holder's own TTL
// plus the node's TTL, and kills it only after the floor.
TEST(LmdbHungHolderTest, NodeGraceHasAFloorAtSmallTtls) {
  const std::string dir = NewTestDir("hung-floor");
  node::NodeConfig config;
  config.dir = dir;
  config.node_id = "quick";
  config.advertise = "127.0.0.1:9302";
  config.lease_ttl = absl::Milliseconds(40);
  ASSERT_TRUE(config.kill_hung_holder);  // the node's default
  std::string share;
  {
    auto first = node::NodeHost::Open(config);
    ASSERT_TRUE(first.ok()) << first.status();
    const std::string init = (*first)->HandleLine("init 1 1");
    const size_t at = init.find("[\"");
    ASSERT_NE(at, std::string::npos) << "init failed";
    share = init.substr(at + 2, init.find('"', at + 2) - at - 2);
  }
  const int holder_ttl_ms = 200;
  StoppedHolder stopped;
  StopHolderInsideAWrite(dir, holder_ttl_ms, {}, &stopped);
  if (HasFatalFailure()) return;
  const pid_t pid = stopped.child->pid();
  auto host = node::NodeHost::Open(config);
  ASSERT_TRUE(host.ok()) << host.status();
  ASSERT_NE((*host)->HandleLine("unseal " + share).find("\"sealed\":false"),
            std::string::npos);
  // Expired by at most its TTL after the stop; a grace of one node TTL
  // (or of the holder's TTL) would have killed it by about 2 x 200 ms.
  absl::SleepFor(stopped.stopped_at + absl::Milliseconds(900) - absl::Now());
  EXPECT_EQ(ProcessState(pid), 'T')
      << "killed within 900 ms of the stop: the grace has no floor";
  // After the floor it is killed, and the node takes over.
  int status = 0;
  EXPECT_TRUE(stopped.child->EndedWithin(absl::Seconds(10), &status))
      << "the hung holder was never killed";
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  std::string state = (*host)->HandleLine("status");
  while (state.find("\"state\":\"active\"") == std::string::npos) {
    ASSERT_LT(absl::Now(), deadline) << "no takeover: " << state;
    absl::SleepFor(absl::Milliseconds(5));
    state = (*host)->HandleLine("status");
  }
  EXPECT_NE(state.find("\"hung_holders_killed\""), std::string::npos) << state;
}

// The coordinator carries the backend's hung-holder reports to its
// observers and its status (HaObserver::OnBlockedTakeover, HaStatus), in
// order with its state changes: with kill_hung_holder, the kill of a
// holder stopped inside a write, then this node's promotion; without it,
// the wait, named by pid, until the holder ends.
class TakeoverRecorder : public HaObserver {
 public:
  void OnStateChange(const StateChange& change) override {
    std::lock_guard<std::mutex> lock(mu_);
    log_.push_back(absl::StrCat("state ", HaStateName(change.to)));
  }
  void OnBlockedTakeover(const BlockedTakeoverEvent& event) override {
    std::lock_guard<std::mutex> lock(mu_);
    log_.push_back(absl::StrCat(BlockedTakeoverKindName(event.kind), " ",
                                event.pid, " ", event.fence));
    reasons_.push_back(event.reason);
  }
  std::vector<std::string> log() {
    std::lock_guard<std::mutex> lock(mu_);
    return log_;
  }
  std::vector<std::string> reasons() {
    std::lock_guard<std::mutex> lock(mu_);
    return reasons_;
  }

 private:
  std::mutex mu_;
  std::vector<std::string> log_;
  std::vector<std::string> reasons_;
};

void CoordinatorHearsOfAHungHolder(bool kill) {
  const std::string dir = NewTestDir(kill ? "hung-coord-kill" : "hung-coord");
  const int ttl_ms = 200;
  LmdbBackendOptions backend_options;
  backend_options.kill_hung_holder = kill;
  auto backend = LmdbBackend::Open(dir, backend_options);
  ASSERT_TRUE(backend.ok()) << backend.status();
  HaCoordinator::Options options;
  options.backend = backend->get();
  options.node_id = "patient";
  options.advertise_address = "127.0.0.1:9302";
  options.lease_ttl = absl::Milliseconds(ttl_ms);
  options.renew_interval = absl::Milliseconds(ttl_ms / 4);
  options.leader_refresh = absl::Milliseconds(ttl_ms / 4);
  auto coordinator = HaCoordinator::Create(options);
  ASSERT_TRUE(coordinator.ok()) << coordinator.status();
  auto shares = (*coordinator)->Initialize(1, 1);
  ASSERT_TRUE(shares.ok()) << shares.status();
  StoppedHolder stopped;
  StopHolderInsideAWrite(dir, ttl_ms, {}, &stopped);
  if (testing::Test::HasFatalFailure()) return;
  const pid_t pid = stopped.child->pid();
  TakeoverRecorder recorder;
  (*coordinator)->AddObserver(&recorder);
  ASSERT_TRUE((*coordinator)->Unseal((*shares)[0]).ok());
  const std::string event_prefix = absl::StrCat(
      kill ? "holder_killed " : "waiting ", pid, " ", stopped.fence);
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  auto heard = [&] {
    for (const std::string& line : recorder.log()) {
      if (line == event_prefix) return true;
    }
    return false;
  };
  while (!heard()) {
    ASSERT_LT(absl::Now(), deadline)
        << "no '" << event_prefix
        << "' event; heard: " << absl::StrJoin(recorder.log(), ", ");
    absl::SleepFor(absl::Milliseconds(2));
  }
  HaStatus status = (*coordinator)->Status();
  if (kill) {
    int wait_status = 0;
    EXPECT_TRUE(stopped.child->EndedWithin(absl::Seconds(5), &wait_status));
    EXPECT_TRUE(WIFSIGNALED(wait_status) && WTERMSIG(wait_status) == SIGKILL);
    EXPECT_EQ(status.holders_killed, 1u);
    ASSERT_TRUE(status.last_holder_killed.has_value());
    EXPECT_EQ(status.last_holder_killed->pid, static_cast<uint32_t>(pid));
    EXPECT_EQ(status.last_holder_killed->fence, stopped.fence);
  } else {
    ASSERT_TRUE(status.takeover_waiting.has_value());
    EXPECT_EQ(status.takeover_waiting->pid, static_cast<uint32_t>(pid));
    EXPECT_EQ(status.takeover_waiting->fence, stopped.fence);
    EXPECT_NE(status.takeover_waiting->reason.find("kill_hung_holder is off"),
              std::string::npos)
        << status.takeover_waiting->reason;
    EXPECT_EQ(status.holders_killed, 0u);
    EXPECT_EQ(ProcessState(pid), 'T') << "the holder was killed";
    stopped.child->Signal(SIGKILL);  // the wait ends with the holder
  }
  while ((*coordinator)->state() != HaState::kActive) {
    ASSERT_LT(absl::Now(), deadline) << "no takeover";
    absl::SleepFor(absl::Milliseconds(2));
  }
  // The loop's events reach observers on the coordinator's event thread,
  // just after the state changes.
  auto heard_active = [&] {
    const std::vector<std::string> log = recorder.log();
    return !log.empty() && log.back() == "state active";
  };
  while (!heard_active()) {
    ASSERT_LT(absl::Now(), deadline)
        << "active, but observers did not hear of it; heard: "
        << absl::StrJoin(recorder.log(), ", ");
    absl::SleepFor(absl::Milliseconds(2));
  }
  EXPECT_FALSE((*coordinator)->Status().takeover_waiting.has_value());
  // In order: unsealed to standby, the hung holder's event(s), active.
  const std::vector<std::string> log = recorder.log();
  ASSERT_GE(log.size(), 3u) << absl::StrJoin(log, ", ");
  EXPECT_EQ(log.front(), "state standby") << absl::StrJoin(log, ", ");
  EXPECT_EQ(log.back(), "state active") << absl::StrJoin(log, ", ");
  const std::string holder_suffix = absl::StrCat(" ", pid, " ", stopped.fence);
  for (size_t i = 1; i + 1 < log.size(); ++i) {
    EXPECT_TRUE(absl::EndsWith(log[i], holder_suffix)) << log[i];
  }
  (*coordinator)->RemoveObserver(&recorder);
}

TEST(LmdbHungHolderTest, CoordinatorObserversHearOfAHungHolderKilled) {
  CoordinatorHearsOfAHungHolder(/*kill=*/true);
}

TEST(LmdbHungHolderTest, CoordinatorObserversHearOfATakeoverWaiting) {
  CoordinatorHearsOfAHungHolder(/*kill=*/false);
}

// Waits for the report that a stopped holder of `flags` is not killed,
// checks it is alive, then ends it and the takeover.
void ExpectNotKilled(const std::vector<std::string>& flags,
                     const std::string& reason_part) {
  const std::string dir = NewTestDir("hung-id");
  const int ttl_ms = 200;
  StoppedHolder stopped;
  StopHolderInsideAWrite(dir, ttl_ms, flags, &stopped);
  if (testing::Test::HasFatalFailure()) return;
  const pid_t pid = stopped.child->pid();
  LmdbBackendOptions options;
  options.kill_hung_holder = true;
  auto backend = LmdbBackend::Open(dir, options);
  ASSERT_TRUE(backend.ok()) << backend.status();
  BackgroundAcquire acquire(backend->get(),
                            Candidate("taker", absl::Seconds(60)));
  std::optional<HungHolderEvent> waiting =
      AwaitWaiting(**backend, absl::Seconds(10));
  ASSERT_TRUE(waiting.has_value()) << "the wait was not reported";
  EXPECT_NE(waiting->reason.find(reason_part), std::string::npos)
      << waiting->reason;
  absl::SleepFor(absl::Milliseconds(2 * ttl_ms));
  EXPECT_EQ(ProcessState(pid), 'T') << "a holder of unproven identity was "
                                       "killed";
  EXPECT_EQ((*backend)->hung_holder_status().kills, 0u);
  EXPECT_FALSE(acquire.done());
  // Its real death lets the takeover through.
  stopped.child->Signal(SIGKILL);
  acquire.Join();
  ASSERT_TRUE(acquire.result().ok()) << acquire.result().status();
}

TEST(LmdbHungHolderTest, HolderWhosePidWasReusedIsNeverKilled) {
  // The grant records another start time than the process with its pid
  // has now: as if the holder had died and its pid been reused.
  ExpectNotKilled({"--fake-start-time"}, "another process");
}

TEST(LmdbHungHolderTest, HolderOfAnotherBootIsNeverKilled) {
  ExpectNotKilled({"--boot-id=an-earlier-boot"}, "another boot");
}

// Issue 18 review, item 4: containers sharing a boot id each have their own
// pids; a grant made in another pid namespace is never killed.
TEST(LmdbHungHolderTest, HolderOfAnotherPidNamespaceIsNeverKilled) {
  ExpectNotKilled({"--fake-pid-ns"}, "another pid namespace");
}

// True if `pid`'s main thread sleeps in a futex wait (state 'S', and its
// current system call, or failing that its wait channel, is a futex).
bool SleepsOnAFutex(pid_t pid) {
  if (ProcessState(pid) != 'S') return false;
  std::ifstream syscall_file(absl::StrCat("/proc/", pid, "/syscall"));
  std::string number;
  if (syscall_file >> number && number == absl::StrCat(SYS_futex)) return true;
  std::ifstream wchan_file(absl::StrCat("/proc/", pid, "/wchan"));
  std::string wchan;
  return std::getline(wchan_file, wchan) &&
         wchan.find("futex") != std::string::npos;
}

// Who took LMDB's writer lock when the hung holder was killed.
enum class AfterTheKill { kThirdFirst, kTakerFirst, kFailed };

// One run of WaitThatGoesOnAfterAKillIsReportedAgain (below).
AfterTheKill RunWaitThatGoesOnAfterAKill(const std::string& dir) {
  const int ttl_ms = 200;
  AfterTheKill outcome = AfterTheKill::kFailed;
  [&] {
    StoppedHolder stopped;
    StopHolderInsideAWrite(dir, ttl_ms, {}, &stopped);
    if (testing::Test::HasFatalFailure()) return;
    const pid_t pid = stopped.child->pid();
    RecordingObserver observer;
    LmdbBackendOptions options;
    options.kill_hung_holder = true;
    options.hung_holder_observer = &observer;
    auto backend = LmdbBackend::Open(dir, options);
    ASSERT_TRUE(backend.ok()) << backend.status();
    // Declared before the third process: on every way out, the third is
    // killed first, which lets the taker through to be joined.
    std::optional<BackgroundAcquire> acquire;
    // Queued on the writer lock first: it says so right before its write,
    // and the taker starts only once it sleeps on LMDB's (futex) lock.
    auto third = std::make_unique<Child>(
        std::vector<std::string>{"stopper", dir, "announce", "-"});
    ASSERT_TRUE(third->started());
    std::optional<std::string> writing = third->ReadLine(absl::Seconds(30));
    ASSERT_TRUE(writing.has_value() && *writing == "WRITING")
        << (writing.has_value() ? *writing : "nothing");
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    // Asleep on the lock over a few looks in a row, not a passing wait.
    for (int calm = 0; calm < 5;) {
      ASSERT_LT(absl::Now(), deadline)
          << "the third process did not block on the writer lock (state "
          << ProcessState(third->pid()) << ")";
      calm = SleepsOnAFutex(third->pid()) ? calm + 1 : 0;
      absl::SleepFor(absl::Milliseconds(10));
    }
    acquire.emplace(backend->get(), Candidate("taker", absl::Seconds(60)));
    // The holder is killed...
    int status = 0;
    ASSERT_TRUE(stopped.child->EndedWithin(absl::Seconds(30), &status))
        << "the hung holder was not killed";
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
    // ...and one of the two waiting on the writer lock takes it. The third
    // stops inside its write either way (right away, or after the taker's
    // grant).
    std::optional<std::string> line = third->ReadLine(absl::Seconds(30));
    ASSERT_TRUE(line.has_value() && *line == "STOPPING_IN_WRITE")
        << (line.has_value() ? *line : "nothing");
    // LMDB's robust mutex need not pass on in FIFO order. If the taker got
    // it, the takeover is done and nothing waits; otherwise the taker's
    // wait goes on behind the third, and must be reported again.
    std::optional<HungHolderEvent> again;
    const absl::Time decided_by = absl::Now() + absl::Seconds(30);
    while (!acquire->done() && absl::Now() < decided_by) {
      std::optional<HungHolderEvent> waiting =
          (*backend)->hung_holder_status().waiting;
      if (waiting.has_value() &&
          waiting->reason.find("still waits after the kill") !=
              std::string::npos) {
        again = waiting;
        break;
      }
      absl::SleepFor(absl::Milliseconds(5));
    }
    if (!again.has_value() && acquire->done()) {
      acquire->Join();
      ASSERT_TRUE(acquire->result().ok()) << acquire->result().status();
      EXPECT_EQ((*backend)->hung_holder_status().kills, 1u);
      outcome = AfterTheKill::kTakerFirst;
      return;
    }
    ASSERT_TRUE(again.has_value())
        << "the third process holds the writer lock, yet the taker's wait "
           "after the kill went unreported";
    EXPECT_EQ(again->pid, static_cast<uint32_t>(pid));
    HungHolderStatus hung = (*backend)->hung_holder_status();
    EXPECT_EQ(hung.kills, 1u);
    std::vector<HungHolderEvent> events = observer.events();
    ASSERT_GE(events.size(), 2u);
    EXPECT_EQ(events[0].kind, HungHolderEvent::Kind::kKilled);
    EXPECT_EQ(events.back().kind, HungHolderEvent::Kind::kWaiting);
    EXPECT_NE(events.back().reason.find("still waits after the kill"),
              std::string::npos)
        << events.back().reason;
    EXPECT_FALSE(acquire->done());
    // The third process ends; the takeover completes, the report is gone.
    third->Signal(SIGKILL);
    third->Reap();
    acquire->Join();
    ASSERT_TRUE(acquire->result().ok()) << acquire->result().status();
    EXPECT_FALSE((*backend)->hung_holder_status().waiting.has_value());
    outcome = AfterTheKill::kThirdFirst;
  }();
  return outcome;
}

// Issue 18 review, item 3: the kill does not always end the wait. Here a
// third process waits for the writer lock behind the hung holder, ahead of
// the taker; when the holder dies, LMDB's lock usually passes to it (futex
// waiters wake in order), and it stops inside its own write. The taker's
// wait goes on, and says so again, after the kill. Robust-mutex handoff on
// an owner's death is not promised to be FIFO: a run where the taker got
// the lock first checks nothing about the re-report and is repeated (on a
// new directory), up to a few times, until the third is first.
TEST(LmdbHungHolderTest, WaitThatGoesOnAfterAKillIsReportedAgain) {
  int taker_first = 0;
  for (int run = 0; run < 5; ++run) {
    const AfterTheKill outcome = RunWaitThatGoesOnAfterAKill(
        NewTestDir(absl::StrCat("hung-again-", run)));
    if (HasFailure() || outcome == AfterTheKill::kFailed) return;
    if (outcome == AfterTheKill::kThirdFirst) return;  // checked
    ++taker_first;
  }
  FAIL() << "in all " << taker_first << " runs the taker took LMDB's writer "
         << "lock before the third process: the re-report went unchecked";
}

// A holder merely waiting for LMDB's writer lock is never killed, even
// stopped while it waits, so that it, too, runs no more: the owner of the
// writer mutex is the third process stopped inside its write, not one of
// the holder's threads. (The healthy, running variant is
// HealthyHolderBlockedBehindAnotherWriterIsNeverKilled.)
TEST(LmdbHungHolderTest, HolderStoppedWhileWaitingForTheWriterLockIsNotKilled) {
  const std::string dir = NewTestDir("hung-waiter");
  const int ttl_ms = 200;
  Child holder({"contender", dir, "waiter", absl::StrCat(ttl_ms)});
  ASSERT_TRUE(holder.started());
  AwaitHolderWrites(holder, 3);
  if (testing::Test::HasFatalFailure()) return;
  RecordingObserver observer;
  LmdbBackendOptions options;
  options.kill_hung_holder = true;
  options.hung_holder_observer = &observer;
  auto backend = LmdbBackend::Open(dir, options);
  ASSERT_TRUE(backend.ok()) << backend.status();
  BackgroundAcquire acquire(backend->get(),
                            Candidate("taker", absl::Seconds(60)));
  Child stopper({"stopper", dir, "-", "-"});
  ExpectStoppingInWrite(stopper);
  if (testing::Test::HasFatalFailure()) return;
  // The holder's next write (it writes every 30 ms) now waits for the
  // writer lock: once it has been quiet for a while, it waits there. Stop
  // it as it waits.
  while (holder.ReadLine(absl::Milliseconds(300)).has_value()) {
  }
  holder.Signal(SIGSTOP);
  const absl::Time stop_deadline = absl::Now() + absl::Seconds(10);
  while (ProcessState(holder.pid()) != 'T') {
    ASSERT_LT(absl::Now(), stop_deadline) << "the holder did not stop";
    absl::SleepFor(absl::Milliseconds(1));
  }
  // Its grant expires; the taker judges it: same identity, not marked, and
  // the writer lock's owner is the stopper's thread, not one of its own.
  std::optional<HungHolderEvent> waiting =
      AwaitWaiting(**backend, absl::Seconds(10));
  ASSERT_TRUE(waiting.has_value()) << "the wait was not reported";
  EXPECT_EQ(waiting->pid, static_cast<uint32_t>(holder.pid()));
  // Well past TTL + grace: still there, nothing killed.
  absl::SleepFor(absl::Milliseconds(5 * ttl_ms));
  HungHolderStatus hung = (*backend)->hung_holder_status();
  ASSERT_EQ(hung.kills, 0u)
      << "the waiting holder was killed: " << hung.last_kill->reason;
  ASSERT_TRUE(hung.waiting.has_value());
  EXPECT_NE(hung.waiting->reason.find("another process holds LMDB's writer "
                                      "lock (its owner, thread"),
            std::string::npos)
      << hung.waiting->reason;
  EXPECT_EQ(ProcessState(holder.pid()), 'T');
  int status = 0;
  EXPECT_FALSE(holder.EndedWithin(absl::ZeroDuration(), &status))
      << "the waiting holder was killed (wait status " << status << ")";
  for (const HungHolderEvent& e : observer.events()) {
    EXPECT_EQ(e.kind, HungHolderEvent::Kind::kWaiting) << e.reason;
  }
  EXPECT_FALSE(acquire.done());
  // The test ends both; the taker is granted.
  stopper.Signal(SIGKILL);
  stopper.Reap();
  holder.Signal(SIGKILL);
  holder.Reap();
  acquire.Join();
  ASSERT_TRUE(acquire.result().ok()) << acquire.result().status();
  EXPECT_EQ((*backend)->hung_holder_status().kills, 0u);
}

// LMDB does not say who holds its writer lock. When a process that is not
// the holder (here an unfenced write, as an Initialize; equally a
// contender's grant or a BreakLease) stops inside a write, the healthy
// holder's renewal waits behind it and its grant expires: the holder looks
// hung, but it is not inside a write, and killing it would cure nothing.
// It is never killed; the wait is reported with the reason.
TEST(LmdbHungHolderTest, HealthyHolderBlockedBehindAnotherWriterIsNeverKilled) {
  const std::string dir = NewTestDir("hung-third");
  const int ttl_ms = 200;
  Child holder({"contender", dir, "healthy", absl::StrCat(ttl_ms)});
  ASSERT_TRUE(holder.started());
  // Granted and writing: a healthy holder, renewing every TTL/3.
  AwaitHolderWrites(holder, 3);
  if (testing::Test::HasFatalFailure()) return;
  RecordingObserver observer;
  LmdbBackendOptions options;
  options.kill_hung_holder = true;
  options.hung_holder_observer = &observer;
  auto backend = LmdbBackend::Open(dir, options);
  ASSERT_TRUE(backend.ok()) << backend.status();
  BackgroundAcquire acquire(backend->get(),
                            Candidate("taker", absl::Seconds(60)));
  // A third process stops inside its write: every writer now waits,
  // the holder's renewals too.
  Child stopper({"stopper", dir, "-", "-"});
  ExpectStoppingInWrite(stopper);
  if (testing::Test::HasFatalFailure()) return;
  // The holder's grant expires; the taker's grant attempt waits on the
  // writer lock and judges the holder: same boot, pid and start time, but
  // not inside a write. The wait is reported, with the holder's pid.
  HungHolderStatus hung;
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (!hung.waiting.has_value() && hung.kills == 0 &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
    hung = (*backend)->hung_holder_status();
  }
  ASSERT_EQ(hung.kills, 0u)
      << "the healthy holder was killed: " << hung.last_kill->reason;
  std::optional<HungHolderEvent> waiting = hung.waiting;
  ASSERT_TRUE(waiting.has_value()) << "the wait was not reported";
  EXPECT_EQ(waiting->pid, static_cast<uint32_t>(holder.pid()));
  EXPECT_NE(waiting->reason.find("not inside a write"), std::string::npos)
      << waiting->reason;
  // Well past TTL + grace: the holder still lives, nothing was killed.
  absl::SleepFor(absl::Milliseconds(4 * ttl_ms));
  int status = 0;
  EXPECT_FALSE(holder.EndedWithin(absl::ZeroDuration(), &status))
      << "the healthy holder was killed (wait status " << status << ")";
  EXPECT_EQ((*backend)->hung_holder_status().kills, 0u);
  for (const HungHolderEvent& e : observer.events()) {
    EXPECT_EQ(e.kind, HungHolderEvent::Kind::kWaiting) << e.reason;
  }
  EXPECT_FALSE(acquire.done());
  // The real culprit ends: the writer lock passes on. The lapsed grant is
  // taken over, or the holder, first to the lock, learns it lost and wins
  // the lease again; either way it lives on.
  stopper.Signal(SIGKILL);
  stopper.Reap();
  absl::SleepFor(absl::Milliseconds(2 * ttl_ms));
  EXPECT_FALSE(holder.EndedWithin(absl::ZeroDuration(), &status))
      << "the healthy holder was killed (wait status " << status << ")";
  EXPECT_EQ((*backend)->hung_holder_status().kills, 0u);
  // Its end (by the test) lets the taker in at once, if it is still out.
  holder.Signal(SIGKILL);
  holder.Reap();
  acquire.Join();
  ASSERT_TRUE(acquire.result().ok()) << acquire.result().status();
}

// Issue 18 review, item 2: a map grown by another process while this
// process's grant attempt waits for the writer lock. The attempt holds the
// remap lock shared (its mdb_txn_begin may touch the map once it gets the
// lock); the watchdog's read then finds MDB_MAP_RESIZED, and adopting the
// new size needs that lock exclusively: it must not wait for it (the wait
// would never end while the hung holder lives), and the hung holder must
// still be killed. The grower holds the lease, commits a growth while the
// taker waits, and stops inside its next write, which was queued first.
TEST(LmdbHungHolderTest, MapGrownWhileTheTakeoverWaitsDoesNotStallTheWatch) {
  const std::string dir = NewTestDir("hung-grown");
  // The taker queues on the writer lock once the grant expires: the TTL
  // leaves the grower time to queue its second write first.
  const int ttl_ms = 1000;
  LmdbBackendOptions options;
  options.initial_map_bytes = 1 << 20;  // the grower's write outgrows it
  options.kill_hung_holder = true;
  // Long enough that the growth write, open past the grant's expiry, is
  // not itself judged hung.
  options.hung_holder_grace = absl::Seconds(1);
  auto backend = LmdbBackend::Open(dir, options);
  ASSERT_TRUE(backend.ok()) << backend.status();
  ASSERT_EQ((*backend)->Get("absent").status().code(),
            absl::StatusCode::kNotFound);
  Child grower({"grower", dir, absl::StrCat(ttl_ms), "-"});
  std::optional<std::string> granted = grower.ReadLine(absl::Seconds(10));
  ASSERT_TRUE(granted.has_value() && granted->rfind("GRANTED", 0) == 0)
      << (granted.has_value() ? *granted : "nothing");
  BackgroundAcquire acquire(backend->get(),
                            Candidate("taker", absl::Seconds(60)));
  std::optional<std::string> stopping = grower.ReadLine(absl::Seconds(10));
  ASSERT_TRUE(stopping.has_value() && *stopping == "STOPPING_IN_WRITE")
      << (stopping.has_value() ? *stopping : "nothing");
  int status = 0;
  if (!grower.EndedWithin(absl::Seconds(10), &status)) {
    HungHolderStatus hung = (*backend)->hung_holder_status();
    ADD_FAILURE() << "the hung holder was not killed within 10 s; waiting: "
                  << (hung.waiting.has_value() ? hung.waiting->reason
                                               : "nothing")
                  << (acquire.done() ? "; the taker was granted first (the "
                                       "second write did not queue first)"
                                     : "");
  }
  grower.Signal(SIGKILL);  // (if not) ends the wait either way
  acquire.Join();
  ASSERT_TRUE(acquire.result().ok()) << acquire.result().status();
  EXPECT_EQ((*backend)->hung_holder_status().kills, 1u);
  // The grown map is adopted afterwards: the grower's value reads back.
  absl::StatusOr<Entry> big = (*backend)->Get("grower/big");
  ASSERT_TRUE(big.ok()) << big.status();
  EXPECT_EQ(big->value.size(), size_t{3} << 19);
}

TEST(LmdbHungHolderTest, HolderWithinTheGraceIsNotKilled) {
  const std::string dir = NewTestDir("hung-grace");
  const int ttl_ms = 200;
  StoppedHolder stopped;
  StopHolderInsideAWrite(dir, ttl_ms, {}, &stopped);
  if (HasFatalFailure()) return;
  const pid_t pid = stopped.child->pid();
  LmdbBackendOptions options;
  options.kill_hung_holder = true;
  options.hung_holder_grace = absl::Seconds(60);
  auto backend = LmdbBackend::Open(dir, options);
  ASSERT_TRUE(backend.ok()) << backend.status();
  BackgroundAcquire acquire(backend->get(),
                            Candidate("taker", absl::Seconds(60)));
  // Well past the TTL, well within the grace: nothing happens.
  absl::SleepFor(absl::Milliseconds(5 * ttl_ms));
  EXPECT_EQ(ProcessState(pid), 'T');
  HungHolderStatus status = (*backend)->hung_holder_status();
  EXPECT_EQ(status.kills, 0u);
  EXPECT_FALSE(status.waiting.has_value());
  EXPECT_FALSE(acquire.done());
  stopped.child->Signal(SIGKILL);
  acquire.Join();
  ASSERT_TRUE(acquire.result().ok()) << acquire.result().status();
}

// A seeded chaos run (rerun one with LMDB_CHAOS_SEED=<seed>): three
// contenders with kill_hung_holder on, writing with their fences, and at
// each step one of: kill -9 of the holder, SIGSTOP of it below the TTL,
// past the TTL (between writes), or inside a write. After every step:
// every fence was granted once, fences only grow, and a holder that was
// killed or stopped past its TTL is replaced within TTL + grace + 1 s; a
// holder stopped inside a write is killed. At the end every acknowledged
// write reads back with the fence of the grant it was made under.
TEST(LmdbHungHolderTest, SeededChaosRun) {
  const char* env_seed = std::getenv("LMDB_CHAOS_SEED");
  const uint64_t seed = env_seed != nullptr
                            ? std::strtoull(env_seed, nullptr, 10)
                            : std::random_device()();
  std::printf("chaos seed %llu (rerun with LMDB_CHAOS_SEED=%llu)\n",
              static_cast<unsigned long long>(seed),
              static_cast<unsigned long long>(seed));
  SCOPED_TRACE(absl::StrCat("LMDB_CHAOS_SEED=", seed));
  std::mt19937_64 rng(seed);
  const int ttl_ms = 200;
  const absl::Duration ttl = absl::Milliseconds(ttl_ms);
  const absl::Duration bound = 2 * ttl + absl::Seconds(1);
  const std::string dir = NewTestDir("chaos");
  const std::string trigger = dir + "/stop-in-write";

  struct Member {
    std::unique_ptr<Child> child;
    std::string name;
    FenceToken fence = kNoFence;
    bool stopped_in_write = false;
    int idles = 0;
  };
  std::vector<Member> members(3);
  int generation = 0;
  auto spawn = [&](int i) {
    members[i].name = absl::StrCat("n", i, "g", generation++);
    members[i].fence = kNoFence;
    members[i].stopped_in_write = false;
    members[i].child = std::make_unique<Child>(std::vector<std::string>{
        "contender", dir, members[i].name, absl::StrCat(ttl_ms),
        "--kill-hung-holder", "--stop-in-write"});
  };
  for (int i = 0; i < 3; ++i) spawn(i);

  struct Ack {
    std::string name;
    int seq;
    uint64_t version;
    FenceToken fence;
  };
  std::vector<Ack> acks;
  std::set<FenceToken> granted;
  FenceToken last_fence = kNoFence;
  int holder = -1;
  int writes_since_grant = 0;
  std::vector<std::string> log;
  // Reads whatever the members printed, until `done()` or `timeout`.
  auto pump = [&](absl::Duration timeout, const std::function<bool()>& done) {
    const absl::Time deadline = absl::Now() + timeout;
    while (true) {
      for (int i = 0; i < 3; ++i) {
        Child& child = *members[i].child;
        while (auto line = child.ReadLine(absl::ZeroDuration())) {
          log.push_back(absl::StrCat(members[i].name, ": ", *line));
          std::vector<std::string> w = Words(*line);
          if (w[0] == "GRANTED") {
            const FenceToken f = std::stoull(w[1]);
            EXPECT_TRUE(granted.insert(f).second)
                << "fence " << f << " granted twice";
            EXPECT_GT(f, last_fence) << "fences went back";
            last_fence = f;
            members[i].fence = f;
            holder = i;
            writes_since_grant = 0;
          } else if (w[0] == "WRITE_OK") {
            acks.push_back({members[i].name, std::stoi(w[1]), std::stoull(w[2]),
                            members[i].fence});
            if (i == holder) ++writes_since_grant;
          } else if (w[0] == "STOPPING_IN_WRITE") {
            members[i].stopped_in_write = true;
          } else if (w[0] == "IDLE") {
            ++members[i].idles;
          } else if (w[0] == "ERROR") {
            ADD_FAILURE() << members[i].name << ": " << *line;
          }
        }
      }
      if (done()) return true;
      if (absl::Now() >= deadline) return false;
      absl::SleepFor(absl::Milliseconds(1));
    }
  };
  auto settled = [&] { return holder >= 0 && writes_since_grant >= 2; };

  constexpr int kSteps = 20;
  int kills = 0, short_stops = 0, long_stops = 0, write_stops = 0;
  for (int step = 0; step < kSteps && !HasFailure(); ++step) {
    ASSERT_TRUE(pump(absl::Seconds(10), settled)) << "no active holder";
    const int h = holder;
    const FenceToken before = last_fence;
    auto replaced = [&] { return last_fence > before; };
    const int action = static_cast<int>(rng() % 4);
    const absl::Time t0 = absl::Now();
    if (action == 0) {  // kill -9
      ++kills;
      members[h].child->Signal(SIGKILL);
      members[h].child->Reap();
      pump(absl::Milliseconds(50), [] { return false; });  // drain
      spawn(h);
      ASSERT_TRUE(pump(bound, replaced)) << "no takeover after kill -9";
    } else if (action == 1) {  // SIGSTOP below the TTL
      ++short_stops;
      members[h].child->Signal(SIGSTOP);
      absl::SleepFor(ttl / 4);
      members[h].child->Signal(SIGCONT);
    } else if (action == 2) {  // SIGSTOP past the TTL, between writes
      ++long_stops;
      // As it goes to sleep after a write ("IDLE"): outside any write.
      const int idles = members[h].idles;
      ASSERT_TRUE(
          pump(absl::Seconds(5), [&] { return members[h].idles > idles; }));
      members[h].child->Signal(SIGSTOP);
      ASSERT_TRUE(pump(bound, replaced)) << "no takeover from a stopped holder";
      int status;
      if (members[h].child->EndedWithin(absl::ZeroDuration(), &status)) {
        // The stop landed inside a write after all: killed.
        spawn(h);
      } else {
        members[h].child->Signal(SIGCONT);
      }
    } else {  // SIGSTOP inside a write
      ++write_stops;
      std::ofstream(trigger) << "x";
      ASSERT_TRUE(pump(absl::Seconds(5), [&] {
        return members[h].stopped_in_write;
      })) << "the holder did not stop inside a write";
      ASSERT_TRUE(pump(bound, replaced))
          << "no takeover from a holder stopped inside a write";
      int status = 0;
      ASSERT_TRUE(members[h].child->EndedWithin(absl::Seconds(5), &status))
          << "the holder stopped inside a write was not killed";
      EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
      pump(absl::Milliseconds(20), [] { return false; });  // drain
      spawn(h);
    }
    if (action != 1) {
      const absl::Duration gap = absl::Now() - t0;
      EXPECT_LT(gap, bound) << "no active for too long after action " << action;
    }
  }
  std::printf(
      "chaos: %d steps (%d kill -9, %d short stops, %d stops past the TTL, "
      "%d stops inside a write), %zu fences granted, %zu acknowledged "
      "writes\n",
      kSteps, kills, short_stops, long_stops, write_stops, granted.size(),
      acks.size());
  for (auto& m : members) {
    m.child->Signal(SIGKILL);
    m.child->Reap();
  }
  auto backend = LmdbBackend::Open(dir);
  ASSERT_TRUE(backend.ok()) << backend.status();
  for (const Ack& ack : acks) {
    absl::StatusOr<Entry> e =
        (*backend)->Get(absl::StrCat("w/", ack.name, "/", ack.seq));
    ASSERT_TRUE(e.ok()) << "lost acknowledged write " << ack.name << "/"
                        << ack.seq << ": " << e.status();
    EXPECT_EQ(e->version, ack.version);
    EXPECT_EQ(e->value, absl::StrCat(ack.fence));
  }
  if (HasFailure()) {
    for (const std::string& line : log) std::printf("  %s\n", line.c_str());
  }
}

// ------------------------------------------------------ map across procs

TEST(LmdbProcessTest, MapGrownByAnotherProcessIsAdopted) {
  const std::string dir = NewTestDir("resize");
  LmdbBackendOptions options;
  options.initial_map_bytes = 1 << 20;
  auto backend = LmdbBackend::Open(dir, options);
  ASSERT_TRUE(backend.ok()) << backend.status();
  ASSERT_TRUE((*backend)->Put("before", "x").ok());
  ASSERT_TRUE((*backend)->Get("before").ok());  // a pooled read txn exists
  Child fill({"fill", dir, "40", absl::StrCat(256 << 10)});
  auto done = fill.ReadLine(absl::Seconds(30));
  ASSERT_TRUE(done.has_value());
  ASSERT_EQ(done->rfind("DONE ", 0), 0u) << *done;
  fill.Reap();
  for (int i = 0; i < 40; ++i) {
    absl::StatusOr<Entry> e = (*backend)->Get(absl::StrCat("fill/", i));
    ASSERT_TRUE(e.ok()) << e.status();
    EXPECT_EQ(e->value.size(), 256u << 10);
  }
  // And this process writes past its own old map too.
  EXPECT_TRUE((*backend)->Put("after", std::string(1 << 20, 'y')).ok());
}

// ------------------------------------------------- readers of dead processes

// Starts a reader child that begins up to `count` read transactions and
// stays inside them; returns how many it got (-1 on failure).
int StartReader(const std::string& dir, int count,
                std::vector<std::unique_ptr<Child>>* children) {
  children->push_back(std::make_unique<Child>(
      std::vector<std::string>{"reader", dir, absl::StrCat(count), "-"}));
  auto line = children->back()->ReadLine(absl::Seconds(10));
  int n;
  if (!line.has_value() || line->rfind("READING ", 0) != 0 ||
      !absl::SimpleAtoi(line->substr(8), &n)) {
    return -1;
  }
  return n;
}

TEST(LmdbProcessTest, KilledReadersDoNotExhaustTheReaderTable) {
  const std::string dir = NewTestDir("readers");
  constexpr int kMaxReaders = 6;
  // Real clocks: the lease is shared with the child processes.
  LmdbBackendOptions options;
  options.max_readers = kMaxReaders;  // this process opens first: it counts
  auto backend = LmdbBackend::Open(dir, options);
  ASSERT_TRUE(backend.ok()) << backend.status();
  HaBackend* ha = (*backend)->ha();
  for (int round = 0; round < 5; ++round) {
    SCOPED_TRACE(absl::StrCat("round ", round));
    // Three reader processes take every free slot, then die mid-read.
    std::vector<std::unique_ptr<Child>> readers;
    int taken = 0;
    for (int i = 0; i < 3; ++i) {
      const int n = StartReader(dir, 2, &readers);
      ASSERT_GE(n, 0) << "reader " << i << " failed";
      taken += n;
    }
    ASSERT_GT(taken, 0);
    for (auto& reader : readers) {
      reader->Signal(SIGKILL);
      reader->Reap();
    }
    if (round == 0) {
      // This process has no slot yet: its first read finds the table full
      // (unless a second has passed since Open, and the periodic check
      // frees the slots first).
      auto holder = ha->CurrentHolder();
      ASSERT_TRUE(holder.ok()) << holder.status();
      EXPECT_FALSE(holder->has_value());
    }
    // A fresh process is elected.
    Child contender({"contender", dir, "fresh", "60000"});
    auto granted = contender.ReadLine(absl::Seconds(10));
    ASSERT_TRUE(granted.has_value()) << "the fresh process said nothing";
    ASSERT_EQ(granted->rfind("GRANTED ", 0), 0u) << *granted;
    auto holder = ha->CurrentHolder();
    ASSERT_TRUE(holder.ok()) << holder.status();
    ASSERT_TRUE(holder->has_value());
    EXPECT_EQ((*holder)->holder, "fresh");
    // It dies too (leaving its own reader slot behind).
    contender.Signal(SIGKILL);
    contender.Reap();
  }
  auto grant = ha->Acquire([] {
    AcquireOptions o;
    o.holder = "survivor";
    o.ttl = absl::Seconds(30);
    o.deadline = absl::InfinitePast();
    return o;
  }());
  EXPECT_TRUE(grant.ok()) << grant.status();
}

TEST(LmdbProcessTest, FullReaderTableIsClearedAndTheReadRetried) {
  const std::string dir = NewTestDir("full");
  // A clock that never moves: no periodic check runs after Open, so only
  // the check on MDB_READERS_FULL can free the slots.
  FakeClock clock;
  LmdbBackendOptions options;
  options.clock = &clock;
  options.max_readers = 4;
  auto backend = LmdbBackend::Open(dir, options);
  ASSERT_TRUE(backend.ok()) << backend.status();
  std::vector<std::unique_ptr<Child>> readers;
  ASSERT_EQ(StartReader(dir, 4, &readers), 4);  // every slot
  readers[0]->Signal(SIGKILL);
  readers[0]->Reap();
  // This process has no slot yet; its read finds the table full of dead
  // readers, frees them and is retried.
  EXPECT_EQ((*backend)->Get("absent").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(lmdb_internal::ReadersCleared(**backend), 4u);
}

TEST(LmdbProcessTest, ReaderKilledMidReadDoesNotPinTheFile) {
  const std::string dir = NewTestDir("pinned");
  // The fake clock stands for the minutes a long-running writer lives
  // through: one second per overwrite.
  FakeClock clock;
  LmdbBackendOptions options;
  options.clock = &clock;
  options.durability = LmdbBackendOptions::Durability::kNoSync;
  auto backend = LmdbBackend::Open(dir, options);
  ASSERT_TRUE(backend.ok()) << backend.status();
  std::string value(64 << 10, 'v');
  ASSERT_TRUE((*backend)->Put("big", value).ok());
  // A reader opens a snapshot and dies inside it.
  std::vector<std::unique_ptr<Child>> readers;
  ASSERT_EQ(StartReader(dir, 1, &readers), 1);
  readers[0]->Signal(SIGKILL);
  readers[0]->Reap();
  constexpr int kOverwrites = 600;
  for (int i = 0; i < kOverwrites; ++i) {
    clock.Advance(absl::Seconds(1));
    value[i % value.size()] = static_cast<char>('a' + i % 26);
    ASSERT_TRUE((*backend)->Put("big", value).ok()) << i;
  }
  ASSERT_TRUE((*backend)->Sync().ok());
  struct stat st;
  ASSERT_EQ(stat((dir + "/data.mdb").c_str(), &st), 0);
  std::printf("data.mdb after %d overwrites of a 64 KiB value: %lld KiB\n",
              kOverwrites, static_cast<long long>(st.st_size >> 10));
  // Unpinned, LMDB reuses freed pages: a few copies of the value at most.
  // Pinned, every overwrite adds one (about 38 MiB here).
  EXPECT_LT(st.st_size, 4 << 20);
}

}  // namespace
}  // namespace strongbox
