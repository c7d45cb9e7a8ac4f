// A seeded chaos run of three real strongbox_node processes on one LMDB
// directory (TTL 500 ms, the node's default kill_hung_holder on) under
// continuous puts (about 1,000 a second in all), issue 18.
//
// Steps, drawn from the seed: kill -9 (then restart and unseal), SIGSTOP
// below the TTL, SIGSTOP past the TTL (at this write rate many land inside
// an LMDB write, and a standby then kills the stopped holder), step-down,
// seal (then unseal). Most steps hit the active node, some a standby.
//
// Checked all along by a monitor that polls `status` of every running,
// not stopped node, and after every step:
//   * at most one node ever reports active with a given fence;
//   * the fence a node reports never decreases, and each new active's
//     fence is above every fence seen active before it;
//   * no stretch without an active longer than TTL + grace + 1 s (grace:
//     the node's own HungHolderGrace(TTL)) while an unsealed node is
//     running and not stopped;
//   * no process is lost (killed as a hung holder, or dead) while the test
//     has it running and not stopped, and none the test never stopped is
//     ever killed as a hung holder;
// and at the end every acknowledged put reads back with its value (the
// latest acknowledged one for its key, or one written after it whose
// outcome is unknown).
//
// NODE_CHAOS_SEED=N replays a run (the seed is printed); NODE_CHAOS_SECONDS
// sets the budget (default 25). Every process the test starts is stopped
// by pid on every exit path (NodeProcess's destructor SIGKILLs and reaps).
#include <signal.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "examples/node/json.h"
#include "examples/node/node_host.h"
#include "examples/node/node_process.h"
#include "gtest/gtest.h"
#include "lib/util/mutex.h"

namespace strongbox {
namespace node {
namespace {

constexpr int kNodes = 3;
constexpr int kTtlMs = 500;
constexpr absl::Duration kTtl = absl::Milliseconds(kTtlMs);
// The hung_holder_grace strongbox_node gives its backend for this TTL
// (max(TTL, kMinHungHolderGrace)), from the node's own code.
const absl::Duration kGrace = HungHolderGrace(kTtl);
const absl::Duration kMaxActiveless = kTtl + kGrace + absl::Seconds(1);
constexpr int kWriters = 4;
constexpr int kKeysPerWriter = 50;
// Puts a second in all, shared by the writers.
constexpr int kPutsPerSecond = 1000;
// An answer that takes longer than this means a hung node.
constexpr absl::Duration kAnswerTimeout = absl::Seconds(10);
// How long the monitor waits for a node a writer is talking to. Generous:
// under ASan/TSan on a loaded machine a put can take far more than a TTL,
// and a node that answers slowly is not a node without an active.
constexpr absl::Duration kStatusClaimWait = absl::Seconds(2);

int64_t EnvInt(const char* name, int64_t fallback) {
  const char* text = std::getenv(name);
  int64_t value;
  if (text == nullptr || !absl::SimpleAtoi(text, &value)) return fallback;
  return value;
}

std::string Address(int i) { return absl::StrCat("node", i, ":8200"); }

int IndexOf(const std::string& address) {
  for (int i = 0; i < kNodes; ++i) {
    if (Address(i) == address) return i;
  }
  return -1;
}

double Ms(absl::Duration d) { return absl::ToDoubleMilliseconds(d); }

// One node: its current process and who may talk to it. A command and its
// answer are one exchange on the process's pipes; `busy` gives one thread
// at a time the process (waits for it are bounded, so the monitor never
// hangs behind a writer whose node was just stopped).
struct Slot {
  enum Phase { kDown, kRunning, kStopped };

  Mutex mu;
  bool busy ABSL_GUARDED_BY(mu) = false;
  // Read and replaced only by the thread that set `busy`.
  std::unique_ptr<NodeProcess> process;
  // Set by the chaos thread before it signals the process, so the others
  // stop sending to it first.
  std::atomic<int> phase{kDown};
  std::atomic<pid_t> pid{-1};
  std::atomic<int> incarnation{0};
  // Set when an exchange found the process gone or unresponsive while it
  // should have run (a peer killed it): the chaos thread restarts it.
  std::atomic<bool> lost{false};
};

// Claims a slot's process for one exchange, or fails after `wait`.
class Claim {
 public:
  Claim(Slot* slot, absl::Duration wait) : slot_(slot) {
    MutexLock lock(&slot_->mu);
    owned_ = slot_->mu.AwaitWithTimeout([this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(
                                            slot_->mu) { return !slot_->busy; },
                                        wait);
    if (owned_) slot_->busy = true;
  }
  ~Claim() {
    if (!owned_) return;
    MutexLock lock(&slot_->mu);
    slot_->busy = false;
    slot_->mu.SignalAll();
  }
  Claim(const Claim&) = delete;
  Claim& operator=(const Claim&) = delete;
  bool owned() const { return owned_; }

 private:
  Slot* const slot_;
  bool owned_ = false;
};

// What one writer knows of one key: its puts in order, by sequence number.
struct KeyHistory {
  int64_t latest_acked = -1;
  // Sequence numbers whose puts may have applied: acknowledged ones and
  // those whose answer was an error or never came.
  std::set<int64_t> maybe_applied;
};

class NodeChaosTest : public ::testing::Test {
 protected:
  void SetUp() override {
    signal(SIGPIPE, SIG_IGN);
    absl::StatusOr<std::string> binary = FindNodeBinary("", "");
    ASSERT_TRUE(binary.ok()) << binary.status();
    binary_ = *binary;
    const char* tmp = std::getenv("TEST_TMPDIR");
    dir_ =
        absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/node-chaos-", getpid());
    const char* out = std::getenv("TEST_UNDECLARED_OUTPUTS_DIR");
    log_dir_ = out != nullptr ? out : dir_ + "-logs";
    mkdir(log_dir_.c_str(), 0755);
    // The node logs are appended to and read back at the end for the pids
    // the standbys killed: none may be left from an earlier attempt.
    for (int i = 0; i < kNodes; ++i) {
      unlink(absl::StrCat(log_dir_, "/node", i, ".log").c_str());
    }
    for (int i = 0; i < kNodes; ++i) slots_.push_back(std::make_unique<Slot>());
  }

  // Every path out of the test, failed assertions included: stop the
  // threads, then every process by pid (SIGKILL, SIGCONT, reap).
  void TearDown() override {
    StopThreads();
    for (auto& slot : slots_) {
      Claim claim(slot.get(), absl::Seconds(30));
      slot->process.reset();
    }
  }

  void StopThreads() {
    stop_.store(true);
    for (auto& slot : slots_) {
      // A writer may wait on a stopped node's answer.
      const pid_t pid = slot->pid.load();
      if (pid > 0 && slot->phase.load() == Slot::kStopped) kill(pid, SIGCONT);
    }
    for (std::thread& t : threads_) t.join();
    threads_.clear();
  }

  void Log(const std::string& line) {
    const std::string stamped =
        absl::StrCat(absl::FormatDuration(absl::Trunc(absl::Now() - start_,
                                                      absl::Milliseconds(1))),
                     " ", line);
    MutexLock lock(&log_mu_);
    log_.push_back(stamped);
  }

  void Violation(const std::string& what) {
    Log("VIOLATION: " + what);
    MutexLock lock(&log_mu_);
    violations_.push_back(what);
  }
  size_t ViolationCount() {
    MutexLock lock(&log_mu_);
    return violations_.size();
  }

  // Starts node i's process (sealed or uninitialized). Call with the slot
  // claimed.
  absl::Status StartProcess(int i) {
    Slot& slot = *slots_[i];
    const int incarnation = slot.incarnation.fetch_add(1) + 1;
    absl::StatusOr<std::unique_ptr<NodeProcess>> p = NodeProcess::Start(
        binary_,
        {"--dir=" + dir_, absl::StrCat("--node-id=node", i),
         "--advertise=" + Address(i), absl::StrCat("--lease-ttl-ms=", kTtlMs)},
        absl::StrCat(log_dir_, "/node", i, ".log"));
    if (!p.ok()) return p.status();
    slot.process = *std::move(p);
    slot.pid.store(slot.process->pid());
    slot.lost.store(false);
    slot.phase.store(Slot::kRunning);
    Log(absl::StrCat("node", i, " started (incarnation ", incarnation, ", pid ",
                     slot.pid.load(), ")"));
    return absl::OkStatus();
  }

  // One command to node i: its answer, UNAVAILABLE if the node is not
  // running or busy longer than `claim_wait`, or if the exchange failed (the
  // node is then marked lost).
  absl::StatusOr<JsonValue> Exchange(int i, const std::string& line,
                                     absl::Duration claim_wait) {
    Slot& slot = *slots_[i];
    if (slot.phase.load() != Slot::kRunning || slot.lost.load()) {
      return absl::UnavailableError("not running");
    }
    Claim claim(&slot, claim_wait);
    if (!claim.owned()) return absl::UnavailableError("busy");
    if (slot.phase.load() != Slot::kRunning || slot.lost.load() ||
        slot.process == nullptr) {
      return absl::UnavailableError("not running");
    }
    const absl::Time sent = absl::Now();
    absl::StatusOr<JsonValue> answer =
        slot.process->Command(line, kAnswerTimeout);
    if (!answer.ok()) {
      // Gone (a peer killed it, or the chaos thread did meanwhile) or hung.
      const int phase = slot.phase.load();
      if (phase == Slot::kRunning) {
        slot.lost.store(true);
        const bool timed_out = absl::Now() - sent >= kAnswerTimeout;
        Log(absl::StrCat("node", i, " lost during '", line.substr(0, 20),
                         "': ", answer.status().ToString()));
        if (timed_out) {
          Violation(absl::StrCat("node", i, " (not stopped) did not answer '",
                                 line.substr(0, 20), "' within ",
                                 absl::FormatDuration(kAnswerTimeout)));
        }
      }
    }
    return answer;
  }

  // Unseals node i with three shares; false (and logged) on failure.
  bool UnsealNode(int i) {
    for (int k = 0; k < 3; ++k) {
      absl::StatusOr<JsonValue> a = Exchange(
          i, "unseal " + shares_[(i + k) % shares_.size()], absl::Seconds(30));
      if (!a.ok() || !a->GetBool("ok")) {
        Log(absl::StrCat(
            "node", i, " unseal failed: ",
            a.ok() ? slots_[i]->process->last_line() : a.status().ToString()));
        return false;
      }
    }
    Log(absl::StrCat("node", i, " unsealed"));
    return true;
  }

  // Kills node i's process (if any) by pid, reaps it, starts a new one and
  // unseals it.
  bool RestartNode(int i, const char* why) {
    Slot& slot = *slots_[i];
    slot.phase.store(Slot::kDown);
    const pid_t pid = slot.pid.load();
    if (pid > 0) {
      kill(pid, SIGKILL);
      kill(pid, SIGCONT);
    }
    {
      Claim claim(&slot, absl::Seconds(30));
      if (!claim.owned()) {
        Violation(absl::StrCat("node", i, " stayed busy after kill -9"));
        return false;
      }
      if (slot.process != nullptr) {
        absl::StatusOr<int> status = slot.process->Wait(absl::Seconds(10));
        if (status.ok() && WIFSIGNALED(*status)) {
          Log(absl::StrCat("node", i, " (pid ", pid, ") ended by signal ",
                           WTERMSIG(*status), "; restarting: ", why));
        }
        slot.process.reset();
      }
      slot.pid.store(-1);
      absl::Status started = StartProcess(i);
      if (!started.ok()) {
        Violation(
            absl::StrCat("node", i, " did not restart: ", started.ToString()));
        return false;
      }
    }
    return UnsealNode(i);
  }

  // True if node i's process has exited (a peer killed it as a hung
  // holder), without reaping it.
  bool Exited(int i) {
    const pid_t pid = slots_[i]->pid.load();
    if (pid <= 0) return true;
    siginfo_t info = {};
    if (waitid(P_PID, pid, &info, WEXITED | WNOHANG | WNOWAIT) != 0) {
      return false;
    }
    return info.si_pid == pid;
  }

  // ---------------------------------------------------------- the monitor

  // One pass over every running, not stopped node: checks the invariants
  // and the active-less stretch.
  void MonitorRound() {
    const absl::Time round_start = absl::Now();
    int actives = 0;
    bool eligible = false;
    bool complete = true;
    for (int i = 0; i < kNodes; ++i) {
      Slot& slot = *slots_[i];
      if (slot.phase.load() != Slot::kRunning) continue;
      const int incarnation = slot.incarnation.load();
      absl::StatusOr<JsonValue> s = Exchange(i, "status", kStatusClaimWait);
      if (!s.ok()) {
        if (slot.phase.load() == Slot::kRunning) complete = false;
        continue;
      }
      if (!s->GetBool("ok")) {
        Violation(
            absl::StrCat("node", i, " status failed: ", s->GetString("error")));
        continue;
      }
      ++status_polls_;
      const bool sealed = s->GetBool("sealed", true);
      const std::string state = s->GetString("state");
      uint64_t fence = 0;
      const bool has_fence = s->Find("fence") != nullptr &&
                             absl::SimpleAtoi(s->GetString("fence"), &fence);
      if (!sealed) eligible = true;
      const auto key = std::make_pair(i, incarnation);
      if (has_fence) {
        auto it = last_fence_.find(key);
        if (it != last_fence_.end() && fence < it->second) {
          Violation(absl::StrCat("node", i, " reported fence ", fence,
                                 " after ", it->second));
        }
        last_fence_[key] = std::max(fence, last_fence_[key]);
        max_fence_seen_ = std::max(max_fence_seen_, fence);
      }
      if (state == "active") {
        ++actives;
        last_active_.store(i);
        if (!has_fence) {
          Violation(absl::StrCat("node", i, " is active without a fence"));
        } else {
          auto [it, fresh] = active_fences_.emplace(fence, key);
          if (!fresh && it->second != key) {
            Violation(absl::StrCat("fence ", fence, " active on node", i,
                                   " (incarnation ", incarnation,
                                   ") and on node", it->second.first,
                                   " (incarnation ", it->second.second, ")"));
          }
          if (fresh) {
            if (fence <= max_active_fence_) {
              Violation(absl::StrCat("node", i, " became active with fence ",
                                     fence, " after fence ", max_active_fence_,
                                     " was active"));
            }
            max_active_fence_ = std::max(max_active_fence_, fence);
            Log(absl::StrCat("node", i, " active, fence ", fence));
          }
        }
      }
      if (const JsonValue* waiting = s->Find("takeover_waiting")) {
        auto wkey = std::make_pair(waiting->GetString("pid"),
                                   waiting->GetString("fence"));
        if (seen_waits_.insert(wkey).second) {
          Log(absl::StrCat("node", i, " takeover waiting on pid ", wkey.first,
                           " fence ", wkey.second, ": ",
                           waiting->GetString("reason")));
        }
      }
      const int64_t killed = s->GetInt("hung_holders_killed", 0);
      int64_t& known = hung_kills_[key];
      if (killed > known) {
        Log(absl::StrCat("node", i, " killed ", killed - known,
                         " hung holder(s)"));
        total_hung_kills_.fetch_add(killed - known);
        known = killed;
      }
    }
    const absl::Time now = absl::Now();
    if (actives > 0) {
      gap_start_ = absl::InfiniteFuture();
    } else if (!eligible) {
      // No unsealed node running and not stopped (or none answered).
      if (complete) gap_start_ = absl::InfiniteFuture();
    } else {
      if (gap_start_ == absl::InfiniteFuture()) gap_start_ = round_start;
      const absl::Duration gap = now - gap_start_;
      if (gap > longest_gap_) {
        longest_gap_ = gap;
        MutexLock lock(&log_mu_);
        longest_gap_ms_ = Ms(gap);
      }
      if (gap > kMaxActiveless && !gap_reported_) {
        gap_reported_ = true;
        Violation(absl::StrCat("no active for ", absl::FormatDuration(gap),
                               " while an unsealed node ran (bound ",
                               absl::FormatDuration(kMaxActiveless), ")"));
      }
    }
    if (actives > 0) gap_reported_ = false;
    rounds_.fetch_add(1);
  }

  void MonitorLoop() {
    while (!stop_.load()) {
      MonitorRound();
      absl::SleepFor(absl::Milliseconds(5));  // pacing, not synchronization
    }
  }

  // Waits until the monitor finished a round that began after now.
  void AwaitRounds(int n) {
    const int64_t target = rounds_.load() + n + 1;
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    while (rounds_.load() < target && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(1));
    }
  }

  // Waits until an active node is seen and has acknowledged a put since.
  bool AwaitSettled(absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    const int64_t acks = acked_.load();
    while (absl::Now() < deadline) {
      if (acked_.load() >= acks + 5) return true;
      absl::SleepFor(absl::Milliseconds(2));
    }
    return false;
  }

  // ---------------------------------------------------------- the writers

  void WriterLoop(int w) {
    const absl::Duration interval =
        absl::Seconds(1) / (kPutsPerSecond / kWriters);
    std::mt19937_64 rng(seed_ + 1000 + w);
    int target = std::max(0, last_active_.load());
    int64_t seq = 0;
    absl::Time next = absl::Now();
    while (!stop_.load()) {
      const absl::Time now = absl::Now();
      if (now < next) {
        absl::SleepFor(next - now);  // pacing, not synchronization
      }
      next = std::max(next + interval, absl::Now() - 10 * interval);
      const int k = static_cast<int>(rng() % kKeysPerWriter);
      const int64_t s = ++seq;
      const std::string path = absl::StrCat("chaos/w", w, "/k", k);
      absl::StatusOr<JsonValue> a =
          Exchange(target, absl::StrCat("put ", path, " v=", s),
                   absl::Milliseconds(100));
      if (a.ok() || (a.status().message() != "not running" &&
                     a.status().message() != "busy")) {
        sent_.fetch_add(1);
      }
      if (!a.ok()) {
        if (a.status().message() != "not running" &&
            a.status().message() != "busy") {
          MutexLock lock(&writes_mu_);
          histories_[w][k].maybe_applied.insert(s);  // outcome unknown
          ++unknown_;
        }
        const int hint = last_active_.load();
        target = hint >= 0 && hint != target ? hint : (target + 1) % kNodes;
        continue;
      }
      {
        MutexLock lock(&writes_mu_);
        KeyHistory& h = histories_[w][k];
        h.maybe_applied.insert(s);
        if (a->GetBool("ok")) {
          h.latest_acked = s;
        } else {
          ++refused_;
        }
      }
      if (a->GetBool("ok")) {
        acked_.fetch_add(1);
        continue;
      }
      const int leader = IndexOf(a->GetString("leader"));
      if (leader >= 0) {
        target = leader;
      } else {
        const int hint = last_active_.load();
        target = hint >= 0 && hint != target ? hint : (target + 1) % kNodes;
      }
    }
  }

  std::string binary_;
  std::string dir_;
  std::string log_dir_;
  uint64_t seed_ = 0;
  absl::Time start_ = absl::Now();
  std::vector<std::unique_ptr<Slot>> slots_;
  std::vector<std::string> shares_;
  std::vector<std::thread> threads_;
  std::atomic<bool> stop_{false};

  Mutex log_mu_;
  std::vector<std::string> log_ ABSL_GUARDED_BY(log_mu_);
  std::vector<std::string> violations_ ABSL_GUARDED_BY(log_mu_);
  double longest_gap_ms_ ABSL_GUARDED_BY(log_mu_) = 0;

  // The monitor thread's own state.
  std::map<std::pair<int, int>, uint64_t> last_fence_;
  std::map<uint64_t, std::pair<int, int>> active_fences_;
  std::map<std::pair<int, int>, int64_t> hung_kills_;
  std::set<std::pair<std::string, std::string>> seen_waits_;
  uint64_t max_active_fence_ = 0;
  uint64_t max_fence_seen_ = 0;
  absl::Time gap_start_ = absl::InfiniteFuture();
  absl::Duration longest_gap_ = absl::ZeroDuration();
  bool gap_reported_ = false;
  int64_t status_polls_ = 0;

  std::atomic<int64_t> rounds_{0};
  std::atomic<int> last_active_{-1};
  std::atomic<int64_t> total_hung_kills_{0};
  std::atomic<int64_t> acked_{0};
  std::atomic<int64_t> sent_{0};

  Mutex writes_mu_;
  std::map<int, std::map<int, KeyHistory>> histories_
      ABSL_GUARDED_BY(writes_mu_);
  int64_t unknown_ ABSL_GUARDED_BY(writes_mu_) = 0;
  int64_t refused_ ABSL_GUARDED_BY(writes_mu_) = 0;
};

TEST_F(NodeChaosTest, SeededChaosRunOfThreeNodes) {
  const char* env_seed = std::getenv("NODE_CHAOS_SEED");
  seed_ = env_seed != nullptr ? std::strtoull(env_seed, nullptr, 10)
                              : std::random_device()();
  const absl::Duration budget = absl::Seconds(EnvInt("NODE_CHAOS_SECONDS", 25));
  std::printf(
      "node chaos seed %llu (rerun with NODE_CHAOS_SEED=%llu), "
      "budget %s, node logs in %s\n",
      static_cast<unsigned long long>(seed_),
      static_cast<unsigned long long>(seed_),
      absl::FormatDuration(budget).c_str(), log_dir_.c_str());
  std::fflush(stdout);
  SCOPED_TRACE(absl::StrCat("NODE_CHAOS_SEED=", seed_));
  RecordProperty("seed", std::to_string(seed_));
  std::mt19937_64 rng(seed_);
  const auto uniform_ms = [&](int lo, int hi) {
    return absl::Milliseconds(lo + static_cast<int>(rng() % (hi - lo + 1)));
  };
  start_ = absl::Now();

  for (int i = 0; i < kNodes; ++i) {
    Claim claim(slots_[i].get(), absl::Seconds(1));
    ASSERT_TRUE(StartProcess(i).ok());
  }
  absl::StatusOr<JsonValue> init = Exchange(0, "init 5 3", absl::Seconds(1));
  ASSERT_TRUE(init.ok()) << init.status();
  ASSERT_TRUE(init->GetBool("ok")) << slots_[0]->process->last_line();
  for (const JsonValue& s : init->Find("shares")->array) {
    shares_.push_back(s.string);
  }
  for (int i = 0; i < kNodes; ++i) ASSERT_TRUE(UnsealNode(i));

  threads_.emplace_back([this] { MonitorLoop(); });
  for (int w = 0; w < kWriters; ++w) {
    threads_.emplace_back([this, w] { WriterLoop(w); });
  }
  ASSERT_TRUE(AwaitSettled(absl::Seconds(20))) << "no active node took puts";

  const char* const kStepNames[] = {"kill -9", "SIGSTOP below the TTL",
                                    "SIGSTOP past the TTL", "step-down",
                                    "seal"};
  int counts[5] = {0, 0, 0, 0, 0};
  int stops_killed = 0, unexpected_restarts = 0, steps = 0;
  std::set<pid_t> stopped_pids;  // every process this test SIGSTOPped
  // When the test last let a stopped process run again (SIGCONT).
  std::map<pid_t, absl::Time> resumed_at;
  // A node found gone while the test had it running: killed by a peer as a
  // hung holder though it was not stopped (the inside-a-write marker rules
  // that out for a healthy node), or it died. The one excuse: a kill a peer
  // decided while the test had the process stopped can land just after the
  // SIGCONT, so a loss soon after a resume is a kill of a stopped process.
  const auto restart_lost = [&](int i, const char* why) {
    const pid_t pid = slots_[i]->pid.load();
    auto resumed = resumed_at.find(pid);
    if (resumed != resumed_at.end() &&
        absl::Now() - resumed->second < kMaxActiveless) {
      Log(absl::StrCat(
          "node", i, " (pid ", pid, ") lost ",
          absl::FormatDuration(absl::Trunc(absl::Now() - resumed->second,
                                           absl::Milliseconds(1))),
          " after it was resumed from a stop"));
    } else {
      ++unexpected_restarts;
      Violation(absl::StrCat(
          "node", i, " (pid ", pid, ") was lost while this test had it ",
          "running and not stopped (killed as a hung holder, or died): ",
          "unexpected restart ", why));
    }
    return RestartNode(i, why);
  };
  const absl::Time chaos_start = absl::Now();
  const int64_t acked_before = acked_.load();
  const int64_t sent_before = sent_.load();
  while (absl::Now() - start_ < budget && ViolationCount() == 0) {
    // A node a peer killed (or that stopped answering) comes back first.
    for (int i = 0; i < kNodes; ++i) {
      if (slots_[i]->lost.load()) {
        ASSERT_TRUE(restart_lost(i, "lost")) << "node" << i;
      }
    }
    if (!AwaitSettled(absl::Seconds(15))) {
      Violation("no acknowledged put for 15 s before a step");
      break;
    }
    const int active = last_active_.load();
    const int target =
        (rng() % 4 != 0 || active < 0)
            ? std::max(active, 0)
            : static_cast<int>((active + 1 + rng() % 2) % kNodes);
    const int action = static_cast<int>(rng() % 5);
    ++steps;
    ++counts[action];
    Log(absl::StrCat("step ", steps, ": ", kStepNames[action], " node", target,
                     target == active ? " (active)" : " (standby)"));
    Slot& slot = *slots_[target];
    switch (action) {
      case 0:  // kill -9, restart, unseal
        ASSERT_TRUE(RestartNode(target, "kill -9")) << "node" << target;
        break;
      case 1:    // SIGSTOP below the TTL
      case 2: {  // SIGSTOP past the TTL (a peer kills it if in a write)
        const absl::Duration stop =
            action == 1 ? uniform_ms(50, 400) : uniform_ms(1200, 2500);
        const pid_t pid = slot.pid.load();
        ASSERT_GT(pid, 0) << "node" << target << " has no process";
        slot.phase.store(Slot::kStopped);
        stopped_pids.insert(pid);
        kill(pid, SIGSTOP);
        const absl::Time stopped_at = absl::Now();
        absl::SleepFor(stop);  // the chaos itself
        if (Exited(target)) {
          ++stops_killed;
          Log(absl::StrCat(
              "node", target, " was killed ",
              "while stopped (a hung holder) within ",
              absl::FormatDuration(absl::Trunc(absl::Now() - stopped_at,
                                               absl::Milliseconds(1)))));
          ASSERT_TRUE(RestartNode(target, "killed while stopped"));
        } else {
          kill(pid, SIGCONT);
          resumed_at[pid] = absl::Now();
          slot.phase.store(Slot::kRunning);
          Log(absl::StrCat("node", target, " resumed after ",
                           absl::FormatDuration(stop)));
        }
        break;
      }
      case 3: {  // step-down
        absl::StatusOr<JsonValue> a =
            Exchange(target, "step-down", absl::Seconds(30));
        if (a.ok() && !a->GetBool("ok")) {
          Violation(absl::StrCat("step-down on node", target, ": ",
                                 slot.process->last_line()));
        }
        break;
      }
      case 4: {  // seal, then unseal after a while
        absl::StatusOr<JsonValue> a =
            Exchange(target, "seal", absl::Seconds(30));
        if (a.ok() && !a->GetBool("ok")) {
          Violation(absl::StrCat("seal on node", target, ": ",
                                 slot.process->last_line()));
        }
        absl::SleepFor(uniform_ms(0, kTtlMs));  // sealed for a while
        if (!UnsealNode(target) && !slot.lost.load()) {
          Violation(absl::StrCat("node", target, " did not unseal after seal"));
        }
        break;
      }
    }
    // Every step ends with the monitor's full look at the cluster.
    AwaitRounds(1);
    absl::SleepFor(uniform_ms(50, 300));  // writes between steps
  }
  const absl::Duration chaos_time = absl::Now() - chaos_start;
  const int64_t acked_in_chaos = acked_.load() - acked_before;
  const int64_t sent_in_chaos = sent_.load() - sent_before;

  // Back to a quiet cluster: every node up, one active.
  for (int i = 0; i < kNodes; ++i) {
    if (slots_[i]->lost.load()) {
      ASSERT_TRUE(restart_lost(i, "lost at the end")) << "node" << i;
    }
  }
  const bool settled = AwaitSettled(absl::Seconds(15));
  StopThreads();
  EXPECT_TRUE(settled) << "no active node took puts after the chaos";

  // Every acknowledged put reads back.
  int reader = -1;
  for (int attempt = 0; attempt < 3000 && reader < 0; ++attempt) {
    for (int i = 0; i < kNodes && reader < 0; ++i) {
      absl::StatusOr<JsonValue> s = Exchange(i, "status", absl::Seconds(5));
      if (s.ok() && s->GetString("state") == "active") reader = i;
    }
    if (reader < 0) absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_GE(reader, 0) << "no active node to read back from";
  int64_t checked = 0, lost = 0;
  {
    MutexLock lock(&writes_mu_);
    for (const auto& [w, keys] : histories_) {
      for (const auto& [k, h] : keys) {
        const std::string path = absl::StrCat("chaos/w", w, "/k", k);
        absl::StatusOr<JsonValue> g =
            Exchange(reader, "get " + path, absl::Seconds(5));
        ASSERT_TRUE(g.ok()) << g.status();
        int64_t got = -1;
        if (g->GetBool("ok")) {
          const JsonValue* data = g->Find("data");
          ASSERT_NE(data, nullptr) << slots_[reader]->process->last_line();
          ASSERT_TRUE(absl::SimpleAtoi(data->GetString("v"), &got))
              << slots_[reader]->process->last_line();
        } else {
          ASSERT_EQ(g->GetString("code"), "NOT_FOUND")
              << slots_[reader]->process->last_line();
        }
        const bool ok =
            got == h.latest_acked ||
            (got > h.latest_acked && h.maybe_applied.count(got) > 0);
        if (!ok) {
          ++lost;
          Violation(absl::StrCat(path, " reads back ", got,
                                 "; latest acknowledged put ", h.latest_acked));
        }
        if (h.latest_acked >= 0) ++checked;
      }
    }
  }

  int64_t unknown, refused;
  {
    MutexLock lock(&writes_mu_);
    unknown = unknown_;
    refused = refused_;
  }
  double longest_gap_ms;
  {
    MutexLock lock(&log_mu_);
    longest_gap_ms = longest_gap_ms_;
  }
  const double chaos_seconds =
      std::max(absl::ToDoubleSeconds(chaos_time), 1e-3);
  const double puts_per_second = sent_in_chaos / chaos_seconds;
  const double acks_per_second = acked_in_chaos / chaos_seconds;
  // Who the standbys killed, from the nodes' logs (each logs its
  // coordinator's blocked-takeover events): two standbys may both kill one
  // holder. A killed process this test never stopped is a healthy node
  // killed because another one hung inside a write, which the inside-a-write
  // marker rules out: a violation. (A process stopped once and killed later
  // while running shows up above, as a node lost while running.)
  std::set<pid_t> killed_pids;
  for (int i = 0; i < kNodes; ++i) {
    std::ifstream in(absl::StrCat(log_dir_, "/node", i, ".log"));
    const std::string marker = "killed hung holder pid ";
    for (std::string line; std::getline(in, line);) {
      const size_t at = line.find(marker);
      int pid;
      if (at == std::string::npos) continue;
      const std::string rest = line.substr(at + marker.size());
      if (absl::SimpleAtoi(rest.substr(0, rest.find(' ')), &pid)) {
        killed_pids.insert(pid);
      }
    }
  }
  int killed_not_stopped = 0;
  for (pid_t pid : killed_pids) {
    if (stopped_pids.count(pid) == 0) {
      ++killed_not_stopped;
      Violation(absl::StrCat("pid ", pid, " was killed as a hung holder but ",
                             "this test never stopped it"));
    }
  }
  const std::string summary = absl::StrCat(
      "node chaos seed ", seed_, ": ", steps, " steps (", counts[0],
      " kill -9, ", counts[1], " SIGSTOP below the TTL, ", counts[2],
      " SIGSTOP past the TTL, ", counts[3], " step-down, ", counts[4],
      " seal); during the chaos ", static_cast<int64_t>(puts_per_second),
      " puts/s sent, ", static_cast<int64_t>(acks_per_second),
      "/s acknowledged; ", acked_.load(), " puts acknowledged in all, ",
      refused, " refused, ", unknown, " unknown; ", checked,
      " keys read back, ", lost, " lost; longest stretch without an active ",
      static_cast<int64_t>(longest_gap_ms), " ms (bound ", Ms(kMaxActiveless),
      " ms); ", stops_killed, " stopped nodes killed as hung holders (",
      killed_pids.size(), " distinct pids in the nodes' logs, ",
      total_hung_kills_.load(), " kills reported by standbys, ",
      killed_not_stopped, " of processes never stopped); ", unexpected_restarts,
      " unexpected restarts; highest fence ", max_fence_seen_, "; ",
      status_polls_, " status polls");
  std::printf("%s\n", summary.c_str());
  RecordProperty("steps", steps);
  RecordProperty("acked_puts", static_cast<int>(acked_.load()));
  RecordProperty("puts_per_second", static_cast<int>(puts_per_second));
  RecordProperty("acks_per_second", static_cast<int>(acks_per_second));
  RecordProperty("stopped_nodes_killed", stops_killed);
  RecordProperty("longest_activeless_ms", static_cast<int>(longest_gap_ms));
  RecordProperty("hung_holder_kills_reported",
                 static_cast<int>(total_hung_kills_.load()));
  RecordProperty("unexpected_restarts", unexpected_restarts);
  RecordProperty("killed_but_never_stopped", killed_not_stopped);

  MutexLock lock(&log_mu_);
  for (const std::string& v : violations_) ADD_FAILURE() << v;
  if (!violations_.empty()) {
    std::printf("event log (node logs in %s):\n", log_dir_.c_str());
    for (const std::string& line : log_) std::printf("  %s\n", line.c_str());
  }
}

}  // namespace
}  // namespace node
}  // namespace strongbox
