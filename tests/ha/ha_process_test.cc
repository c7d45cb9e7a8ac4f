// Coordinators in separate processes on one LMDB directory, killed with
// SIGKILL at random moments (in the middle of contending, being granted,
// promoting, renewing, writing) and restarted, for several seconds.
//
// Each child process runs an HaCoordinator with its background thread and
// a short TTL, steps down now and then so grants come often, and while
// active writes fenced records straight to the backend. Before and after
// each write it appends what it did to its own log file (write(2), so a
// SIGKILL loses nothing already logged). At the end the parent checks:
//   - no two processes were ever active under the same fence;
//   - each process saw its fences strictly increase;
//   - every write the backend acknowledged is there, with its fence;
//     every write refused for a stale fence is absent (D1);
//   - ordered by revision, the applied writes' fences never go down
//     (a deposed holder never wrote after its successor);
//   - grants kept coming despite the crashes (liveness).
//
// The same binary is the child: `ha_process_test --ha-child DIR ID SHARES
// LOG` (self-exec through /proc/self/exe), and the stopped LMDB writer of
// the Seal test: `ha_process_test --lmdb-writer DIR` (begins a write
// transaction on DIR, says so on stdout, and stops itself).
#include <fcntl.h>
#include <lmdb.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "strongbox/ha_coordinator.h"
#include "strongbox/lmdb_backend.h"
#include "strongbox/testing/fake_clock.h"

namespace strongbox {
namespace {

constexpr int kChildren = 4;
constexpr absl::Duration kRunFor = absl::Seconds(6);

// ---------------------------------------------------------------- child

void Log(int fd, const std::string& line) {
  const std::string l = line + "\n";
  if (write(fd, l.data(), l.size()) != static_cast<ssize_t>(l.size())) {
    _exit(3);
  }
}

int ChildMain(const std::string& dir, int id, const std::string& shares_file,
              const std::string& log_file) {
  const int log = open(log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
  if (log < 0) return 2;
  LmdbBackendOptions bo;
  bo.durability = LmdbBackendOptions::Durability::kNoSync;  // kill -9 safe
  absl::StatusOr<std::unique_ptr<LmdbBackend>> backend =
      LmdbBackend::Open(dir, bo);
  if (!backend.ok()) {
    Log(log, absl::StrCat("E open ", backend.status().ToString()));
    return 2;
  }
  HaCoordinator::Options o;
  o.backend = backend->get();
  o.node_id = absl::StrCat("child", id);
  o.advertise_address = absl::StrCat("child", id, "-", getpid());
  o.lease_ttl = absl::Milliseconds(300);
  o.renew_interval = absl::Milliseconds(60);
  o.leader_refresh = absl::Milliseconds(30);
  o.step_down_pause = absl::Milliseconds(40);
  o.retry_backoff = absl::Milliseconds(5);
  o.retry_backoff_max = absl::Milliseconds(50);
  o.seed = getpid();
  absl::StatusOr<std::unique_ptr<HaCoordinator>> node =
      HaCoordinator::Create(o);
  if (!node.ok()) {
    Log(log, absl::StrCat("E create ", node.status().ToString()));
    return 2;
  }
  std::ifstream in(shares_file);
  std::string share;
  while (std::getline(in, share)) {
    if (!share.empty()) (void)(*node)->Unseal(absl::HexStringToBytes(share));
  }
  if ((*node)->barrier()->sealed()) {
    Log(log, "E still sealed");
    return 2;
  }
  Log(log, absl::StrCat("S ", getpid()));
  // Tells the parent this process is up (and may be killed).
  const int ready = open(absl::StrCat(log_file, ".ready.", getpid()).c_str(),
                         O_WRONLY | O_CREAT, 0600);
  if (ready >= 0) close(ready);
  std::mt19937_64 rng(getpid());
  FenceToken last = kNoFence;
  for (uint64_t seq = 0;; ++seq) {
    // CLOCK_BOOTTIME, shared by every process of this boot: the parent
    // orders grants of different processes by it.
    const absl::Duration before = RealClock()->MonotonicNow();
    absl::StatusOr<FenceToken> fence = (*node)->WriteFence();
    const absl::Duration after = RealClock()->MonotonicNow();
    if (fence.ok()) {
      if (*fence != last) {
        if (*fence < last) Log(log, absl::StrCat("E fence went down ", *fence));
        last = *fence;
        Log(log,
            absl::StrCat("A ", *fence, " ", absl::ToInt64Nanoseconds(before),
                         " ", absl::ToInt64Nanoseconds(after)));
      }
      // The pause lands here most of the time: a write in flight with a
      // fence that may be stale when it resumes.
      absl::SleepFor(
          absl::Milliseconds(std::uniform_int_distribution<int>(1, 3)(rng)));
      const std::string key = absl::StrCat("w/", id, "/", getpid(), "/", seq);
      Log(log, absl::StrCat("T ", key, " ", *fence));
      absl::StatusOr<uint64_t> rev =
          (*backend)->Put(key, absl::StrCat(*fence), *fence);
      if (rev.ok()) {
        Log(log, absl::StrCat("K ", key, " ", *rev));
      } else if (IsStaleFence(rev.status())) {
        Log(log, absl::StrCat("R ", key));
        (*node)->ReportStaleFence(*fence);
      } else {
        Log(log, absl::StrCat("U ", key, " ", rev.status().ToString()));
      }
      if (std::uniform_int_distribution<int>(0, 39)(rng) == 0) {
        (void)(*node)->StepDown();
      }
    } else {
      absl::SleepFor(
          absl::Milliseconds(std::uniform_int_distribution<int>(1, 3)(rng)));
    }
  }
}

// A peer process that takes LMDB's writer lock and stops inside its write
// transaction (what SIGSTOP or a debugger does to a peer mid-commit).
int LmdbWriterMain(const std::string& dir) {
  MDB_env* env = nullptr;
  MDB_txn* txn = nullptr;
  if (mdb_env_create(&env) != 0 || mdb_env_set_maxreaders(env, 510) != 0 ||
      mdb_env_open(env, dir.c_str(), MDB_NOTLS, 0644) != 0 ||
      mdb_txn_begin(env, nullptr, 0, &txn) != 0) {
    return 2;
  }
  if (write(1, "w", 1) != 1) return 2;
  raise(SIGSTOP);
  for (;;) pause();
}

// --------------------------------------------------------------- parent

std::string TempDir() {
  const char* tmp = std::getenv("TEST_TMPDIR");
  return absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/ha-process-", getpid());
}

pid_t Spawn(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (const std::string& a : args)
    argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    execv("/proc/self/exe", argv.data());
    _exit(127);
  }
  return pid;
}

// A grant as a child saw it: it was active under `fence` at some moment
// between `before` and `after` (CLOCK_BOOTTIME, ns).
struct Activation {
  FenceToken fence;
  int64_t before;
  int64_t after;
};

struct ChildLog {
  std::vector<Activation> activations;
  std::map<std::string, FenceToken> tried;  // key -> fence
  std::map<std::string, uint64_t> acked;    // key -> revision
  std::set<std::string> refused;
  std::vector<std::string> errors;
  int starts = 0;
};

ChildLog ParseLog(const std::string& path) {
  ChildLog log;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> f = absl::StrSplit(line, ' ');
    if (f.empty()) continue;
    uint64_t n = 0;
    if (f[0] == "S") {
      ++log.starts;
    } else if (f[0] == "A" && f.size() == 4 && absl::SimpleAtoi(f[1], &n)) {
      Activation a{n, 0, 0};
      if (absl::SimpleAtoi(f[2], &a.before) &&
          absl::SimpleAtoi(f[3], &a.after)) {
        log.activations.push_back(a);
      }
    } else if (f[0] == "T" && f.size() == 3 && absl::SimpleAtoi(f[2], &n)) {
      log.tried[f[1]] = n;
    } else if (f[0] == "K" && f.size() == 3 && absl::SimpleAtoi(f[2], &n)) {
      log.acked[f[1]] = n;
    } else if (f[0] == "R" && f.size() == 2) {
      log.refused.insert(f[1]);
    } else if (f[0] == "E") {
      log.errors.push_back(line);
    }
    // "U" (backend error) and a torn last line: outcome unknown, allowed.
  }
  return log;
}

TEST(HaProcessTest, CrashesDuringGrantsNeverShareAFenceOrApplyARefusedWrite) {
  signal(SIGPIPE, SIG_IGN);
  const std::string dir = TempDir();
  const std::string shares_file = dir + "-shares";
  {
    absl::StatusOr<std::unique_ptr<LmdbBackend>> backend =
        LmdbBackend::Open(dir);
    ASSERT_TRUE(backend.ok()) << backend.status();
    HaCoordinator::Options o;
    o.backend = backend->get();
    o.node_id = "init";
    o.advertise_address = "init";
    o.background_thread = false;
    std::unique_ptr<HaCoordinator> node = *HaCoordinator::Create(o);
    absl::StatusOr<std::vector<std::string>> shares = node->Initialize(3, 2);
    ASSERT_TRUE(shares.ok()) << shares.status();
    std::ofstream out(shares_file);
    out << absl::BytesToHexString((*shares)[0]) << "\n"
        << absl::BytesToHexString((*shares)[1]) << "\n";
  }
  auto log_path = [&](int id) {
    return absl::StrCat(dir, "-child", id, ".log");
  };
  auto start = [&](int id) {
    return Spawn({"ha_process_test", "--ha-child", dir, absl::StrCat(id),
                  shares_file, log_path(id)});
  };
  std::vector<pid_t> pids;
  for (int id = 0; id < kChildren; ++id) pids.push_back(start(id));

  // The parent watches the lease and kills: the holder (a crash while
  // active, often mid-renewal or mid-write) or any child (often while it
  // contends, is being granted or promotes).
  LmdbBackendOptions watch_options;
  absl::StatusOr<std::unique_ptr<LmdbBackend>> watch =
      LmdbBackend::Open(dir, watch_options);
  ASSERT_TRUE(watch.ok()) << watch.status();
  std::mt19937_64 rng(20261202);
  int kills = 0, kills_of_holder = 0, pauses = 0;
  const absl::Time end = absl::Now() + kRunFor;
  while (absl::Now() < end) {
    absl::SleepFor(
        absl::Milliseconds(std::uniform_int_distribution<int>(5, 120)(rng)));
    // Only processes that are up count: a sanitizer build starts slowly,
    // and killing a process before it unsealed tests nothing.
    std::vector<int> up;
    for (int id = 0; id < kChildren; ++id) {
      if (access(absl::StrCat(log_path(id), ".ready.", pids[id]).c_str(),
                 F_OK) == 0) {
        up.push_back(id);
      }
    }
    if (up.empty()) continue;
    int victim =
        up[std::uniform_int_distribution<size_t>(0, up.size() - 1)(rng)];
    // 0-2: kill the holder; 3-4: kill anyone (often mid-contention or
    // mid-grant); 5: pause the holder past its TTL.
    const int action = std::uniform_int_distribution<int>(0, 5)(rng);
    bool holder_hit = false;
    if (action < 3 || action == 5) {
      absl::StatusOr<std::optional<LeaseHolder>> holder =
          (*watch)->ha()->CurrentHolder();
      if (holder.ok() && holder->has_value()) {
        for (int id : up) {
          if ((*holder)->holder == absl::StrCat("child", id, "-", pids[id])) {
            victim = id;
            holder_hit = true;
          }
        }
      }
    }
    if (action == 5) {
      // A pause past the TTL instead (then it resumes, deposed): its
      // writes in flight must be refused.
      kill(pids[victim], SIGSTOP);
      absl::SleepFor(absl::Milliseconds(
          std::uniform_int_distribution<int>(250, 500)(rng)));
      kill(pids[victim], SIGCONT);
      ++pauses;
      continue;
    }
    kill(pids[victim], SIGKILL);
    int status = 0;
    waitpid(pids[victim], &status, 0);
    EXPECT_TRUE(WIFSIGNALED(status)) << "child " << victim << " exited early";
    ++kills;
    if (holder_hit) ++kills_of_holder;
    pids[victim] = start(victim);
  }
  for (pid_t pid : pids) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  }

  // Every record the children wrote, as stored.
  std::map<FenceToken, int> holder_of;  // fence -> child id
  std::map<FenceToken, Activation> seen;
  int activations = 0, acked = 0, refused = 0, starts = 0;
  for (int id = 0; id < kChildren; ++id) {
    ChildLog log = ParseLog(log_path(id));
    EXPECT_TRUE(log.errors.empty())
        << "child " << id << ": " << log.errors.front();
    starts += log.starts;
    for (const Activation& a : log.activations) {
      const FenceToken f = a.fence;
      seen.emplace(f, a);
      ++activations;
      auto [it, fresh] = holder_of.emplace(f, id);
      EXPECT_TRUE(fresh || it->second == id)
          << "fence " << f << " held by child " << it->second << " and child "
          << id;
      EXPECT_TRUE(fresh) << "fence " << f << " granted twice to child " << id;
    }
    for (const auto& [key, rev] : log.acked) {
      ++acked;
      absl::StatusOr<Entry> e = (*watch)->Get(key);
      ASSERT_TRUE(e.ok()) << "acknowledged write lost: " << key;
      EXPECT_EQ(e->version, rev) << key;
      EXPECT_EQ(e->value, absl::StrCat(log.tried[key])) << key;
    }
    for (const std::string& key : log.refused) {
      ++refused;
      EXPECT_EQ((*watch)->Get(key).status().code(), absl::StatusCode::kNotFound)
          << "a write refused for its fence was applied: " << key;
    }
  }
  // Grants in time: a later fence's holder was active after an earlier
  // fence's holder had been (their observation windows cannot be
  // inverted), so fences strictly increase with time.
  for (auto a = seen.begin(); a != seen.end(); ++a) {
    for (auto b = std::next(a); b != seen.end(); ++b) {
      EXPECT_GT(b->second.after, a->second.before)
          << "fence " << b->first << " was active before fence " << a->first;
    }
  }
  // Ordered by revision, the fences of applied writes never go down.
  std::map<uint64_t, FenceToken> by_revision;
  for (int id = 0; id < kChildren; ++id) {
    absl::StatusOr<std::vector<std::string>> pids_dir =
        (*watch)->List(absl::StrCat("w/", id, "/"));
    if (absl::IsNotFound(pids_dir.status())) continue;
    ASSERT_TRUE(pids_dir.ok()) << pids_dir.status();
    for (const std::string& p : *pids_dir) {
      absl::StatusOr<std::vector<std::string>> keys =
          (*watch)->List(absl::StrCat("w/", id, "/", p));
      ASSERT_TRUE(keys.ok()) << keys.status();
      for (const std::string& k : *keys) {
        absl::StatusOr<Entry> e =
            (*watch)->Get(absl::StrCat("w/", id, "/", p, k));
        ASSERT_TRUE(e.ok());
        uint64_t f = 0;
        ASSERT_TRUE(absl::SimpleAtoi(e->value, &f));
        by_revision[e->version] = f;
      }
    }
  }
  FenceToken high = kNoFence;
  for (const auto& [rev, f] : by_revision) {
    EXPECT_GE(f, high) << "revision " << rev << " applied fence " << f
                       << " after fence " << high;
    high = std::max(high, f);
  }
  std::printf(
      "%d processes started, %d killed (%d while holding the lease), %d "
      "paused; %d grants (fences %llu..%llu), %d writes acknowledged, %d "
      "refused for a stale fence, %zu applied\n",
      starts, kills, kills_of_holder, pauses, activations,
      holder_of.empty()
          ? 0ull
          : static_cast<unsigned long long>(holder_of.begin()->first),
      holder_of.empty()
          ? 0ull
          : static_cast<unsigned long long>(holder_of.rbegin()->first),
      acked, refused, by_revision.size());
  // Liveness: leadership kept moving and writes kept landing.
  EXPECT_GT(activations, kills / 4);
  EXPECT_GE(activations, 5);
  EXPECT_GT(acked, 20);
}

// True if thread `tid` of this process sleeps in a futex wait (state 'S',
// and its current system call, or failing that its wait channel, is a
// futex).
bool ThreadSleepsOnAFutex(pid_t tid) {
  const std::string task = absl::StrCat("/proc/self/task/", tid);
  std::ifstream stat_file(task + "/stat");
  std::string stat((std::istreambuf_iterator<char>(stat_file)),
                   std::istreambuf_iterator<char>());
  const size_t paren = stat.rfind(')');
  if (paren == std::string::npos || paren + 2 >= stat.size() ||
      stat[paren + 2] != 'S') {
    return false;
  }
  std::ifstream syscall_file(task + "/syscall");
  std::string number;
  if (syscall_file >> number && number == absl::StrCat(SYS_futex)) return true;
  std::ifstream wchan_file(task + "/wchan");
  std::string wchan;
  return std::getline(wchan_file, wchan) &&
         wchan.find("futex") != std::string::npos;
}

// Seal() returns, with the keys wiped, while the active node's renewal is
// stuck behind LMDB's writer lock, held by a peer process stopped inside
// a write transaction (before the fix, the release waited on the grant's
// lock, which the stuck renewal holds, and Seal() with it). The release
// finishes once the peer is gone.
TEST(HaProcessTest, SealReturnsWhileAStoppedPeerHoldsTheLmdbWriterLock) {
  signal(SIGPIPE, SIG_IGN);
  const std::string dir = TempDir() + "-stopped-writer";
  FakeClock clock;
  LmdbBackendOptions bo;
  bo.clock = &clock;
  absl::StatusOr<std::unique_ptr<LmdbBackend>> backend =
      LmdbBackend::Open(dir, bo);
  ASSERT_TRUE(backend.ok()) << backend.status();
  HaCoordinator::Options o;
  o.backend = backend->get();
  o.node_id = "n";
  o.advertise_address = "n:1";
  o.lease_ttl = absl::Seconds(10);
  o.renew_interval = absl::Seconds(1);
  o.seal_release_wait = absl::Milliseconds(50);
  o.clock = &clock;
  o.background_thread = false;
  std::unique_ptr<HaCoordinator> node = *HaCoordinator::Create(o);
  std::vector<std::string> shares = *node->Initialize(1, 1);
  ASSERT_TRUE(node->Unseal(shares[0]).ok());
  node->Poll();
  ASSERT_EQ(node->state(), HaState::kActive);

  // The peer takes the writer lock and stops.
  int out[2];
  ASSERT_EQ(pipe(out), 0);
  const pid_t peer = fork();
  ASSERT_GE(peer, 0);
  if (peer == 0) {
    dup2(out[1], 1);
    const char* argv[] = {"ha_process_test", "--lmdb-writer", dir.c_str(),
                          nullptr};
    execv("/proc/self/exe", const_cast<char**>(argv));
    _exit(127);
  }
  close(out[1]);
  char c = 0;
  ASSERT_EQ(read(out[0], &c, 1), 1) << "the peer did not start its write";
  close(out[0]);

  // A renewal falls due and gets stuck behind the peer.
  clock.Advance(absl::Seconds(1));
  std::atomic<bool> renewed{false};
  std::atomic<pid_t> loop_tid{0};
  std::thread loop([&] {
    loop_tid = static_cast<pid_t>(syscall(SYS_gettid));
    node->Poll();
    renewed = true;
  });
  // Let it reach the lock: no fixed sleep (under a sanitizer on a loaded
  // machine it may take longer), but until the renewal sleeps on LMDB's
  // (futex) writer lock, over a few looks in a row.
  const absl::Time reach_deadline = absl::Now() + absl::Seconds(30);
  for (int calm = 0; calm < 5 && !renewed && absl::Now() < reach_deadline;) {
    const pid_t tid = loop_tid.load();
    calm = tid > 0 && ThreadSleepsOnAFutex(tid) ? calm + 1 : 0;
    absl::SleepFor(absl::Milliseconds(10));
  }

  std::atomic<bool> sealed{false};
  std::thread sealer([&] {
    EXPECT_TRUE(node->Seal().ok());
    sealed = true;
  });
  for (int i = 0; i < 20000 && !sealed; ++i) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  EXPECT_TRUE(sealed) << "Seal() blocked behind the stopped LMDB writer";
  EXPECT_FALSE(renewed) << "the renewal was not stuck; the test proves "
                           "nothing";
  EXPECT_EQ(node->state(), HaState::kSealed);
  EXPECT_TRUE(node->barrier()->sealed());
  EXPECT_EQ(node->WriteFence().status().code(),
            absl::StatusCode::kFailedPrecondition);

  // The peer dies; LMDB's robust mutex passes the lock on; the renewal
  // returns and the release finishes in the background.
  kill(peer, SIGKILL);
  waitpid(peer, nullptr, 0);
  loop.join();
  sealer.join();
  absl::StatusOr<std::optional<LeaseHolder>> holder;
  for (int i = 0; i < 20000; ++i) {
    holder = (*backend)->ha()->CurrentHolder();
    if (holder.ok() && !holder->has_value()) break;
    absl::SleepFor(absl::Milliseconds(1));
  }
  ASSERT_TRUE(holder.ok()) << holder.status();
  EXPECT_FALSE(holder->has_value()) << "the lease was never released";
  EXPECT_EQ(node->state(), HaState::kSealed);
}

}  // namespace
}  // namespace strongbox

int main(int argc, char** argv) {
  if (argc == 3 && std::strcmp(argv[1], "--lmdb-writer") == 0) {
    return strongbox::LmdbWriterMain(argv[2]);
  }
  if (argc == 6 && std::strcmp(argv[1], "--ha-child") == 0) {
    int id = 0;
    if (!absl::SimpleAtoi(argv[3], &id)) return 2;
    return strongbox::ChildMain(argv[2], id, argv[4], argv[5]);
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
