// A helper process for lmdb_process_test: opens an LmdbBackend on a
// directory and does one job, reporting on stdout one line per event so the
// parent can kill or stop it at chosen moments.
//
//   lmdb_child writer DIR ROUND SEED
//       Puts r<ROUND>/k<i> for i = 0, 1, ... forever; after each
//       acknowledged (synced) commit prints "ACK <i> <version>".
//   lmdb_child contender DIR NAME TTL_MS [FLAGS...]
//       Acquires the lease (prints "GRANTED <fence>"), then loops: prints
//       "IDLE", sleeps 30 ms, renews if due, writes w/<NAME>/<seq> with its
//       fence, printing "WRITE_OK <seq> <version>" or
//       "WRITE_REFUSED <seq> <code>"; once the grant is lost prints
//       "LOST <fence>" and contends again. With any FLAGS it also prints
//       "CONTENDING" before each Acquire. FLAGS:
//         --kill-hung-holder   LmdbBackendOptions::kill_hung_holder
//         --report-hung        print every HungHolderEvent as
//                              "HUNG <waiting|killed> <pid> <fence>"
//                              (implied by --kill-hung-holder)
//         --stop-in-write      when the file DIR/stop-in-write exists, the
//                              next fenced commit removes it, prints
//                              "STOPPING_IN_WRITE <seq>" and stops itself
//                              (SIGSTOP) inside its write transaction,
//                              holding LMDB's writer lock
//         --stop-after-begin   when the file DIR/stop-after-begin exists,
//                              the next fenced write removes it, prints
//                              "STOPPING_AFTER_BEGIN <seq>" and stops
//                              itself (SIGSTOP) right after mdb_txn_begin
//                              returned, before it is marked inside the
//                              write: it holds LMDB's writer lock unmarked
//         --fake-start-time    grants record a wrong process start time
//         --fake-pid-ns        grants record another pid namespace
//         --boot-id=ID         LmdbBackendOptions::boot_id
//   lmdb_child stopper DIR - -
//   lmdb_child stopper DIR announce -
//       Not a contender: an unfenced Put (as an Initialize does) that prints
//       "STOPPING_IN_WRITE" and stops itself (SIGSTOP) inside its write
//       transaction, holding LMDB's writer lock; nothing after that. With
//       `announce` it first prints "WRITING" right before the Put, whose
//       next blocking call is the wait for LMDB's writer lock
//       (mdb_txn_begin): a parent can then wait until it sleeps there.
//   lmdb_child grower DIR TTL_MS -
//       Acquires the lease (prints "GRANTED <fence>"; never renews), then
//       grows the store in one write (a 1.5 MiB value) that stays open
//       until TTL + 300 ms after the grant; meanwhile a second thread
//       queues on LMDB's writer lock (seen blocked there, so first in
//       line; "ERROR ..." if it never is), takes it right after
//       the growth commits, prints "STOPPING_IN_WRITE" and stops the
//       process (SIGSTOP) inside its own write transaction.
//   lmdb_child fill DIR COUNT BYTES
//       Opens with a 1 MiB initial map, writes COUNT values of BYTES under
//       fill/<i>, prints "DONE <revision>".
//   lmdb_child reader DIR COUNT -
//       A reader to be killed mid-read: opens the directory's LMDB
//       environment as LmdbBackend does (MDB_NOTLS) and begins up to COUNT
//       read transactions (fewer if the reader table fills up), each
//       reading the store's revision record and left open, so each holds
//       a reader slot and pins its snapshot; prints "READING <n>" and
//       waits to be killed.
#include <lmdb.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "lib/lmdb/test_hooks.h"
#include "strongbox/lmdb_backend.h"
#include "tests/lmdb/test_support.h"

namespace strongbox {
namespace {

void Say(const std::string& line) {
  std::fputs((line + "\n").c_str(), stdout);
  std::fflush(stdout);
}

int Fail(const absl::Status& status) {
  Say(absl::StrCat("ERROR ", status.ToString()));
  return 2;
}

int Writer(const std::string& dir, int round) {
  auto backend = LmdbBackend::Open(dir);
  if (!backend.ok()) return Fail(backend.status());
  for (int i = 0;; ++i) {
    absl::StatusOr<uint64_t> version = (*backend)->Put(
        absl::StrCat("r", round, "/k", i), WriterValue(round, i));
    if (!version.ok()) return Fail(version.status());
    Say(absl::StrCat("ACK ", i, " ", *version));
  }
}

struct ContenderFlags {
  bool any = false;
  bool kill_hung_holder = false;
  bool report_hung = false;
  bool stop_in_write = false;
  bool stop_after_begin = false;
  bool fake_start_time = false;
  bool fake_pid_ns = false;
  std::string boot_id;
};

class PrintingObserver : public HungHolderObserver {
 public:
  void OnHungHolder(const HungHolderEvent& event) override {
    Say(absl::StrCat(
        "HUNG ",
        event.kind == HungHolderEvent::Kind::kKilled ? "killed" : "waiting",
        " ", event.pid, " ", event.fence));
  }
};

// The sequence number of the write in progress (for STOPPING_IN_WRITE).
int g_seq = 0;
// True while the contender's fenced Put runs (not a renewal or a grant).
std::atomic<bool> g_putting{false};

int Contender(const std::string& dir, const std::string& name, int ttl_ms,
              const ContenderFlags& flags) {
  LmdbBackendOptions backend_options;
  backend_options.kill_hung_holder = flags.kill_hung_holder;
  backend_options.boot_id = flags.boot_id;
  PrintingObserver observer;
  if (flags.report_hung || flags.kill_hung_holder) {
    backend_options.hung_holder_observer = &observer;
  }
  lmdb_internal::TestHooks hooks;
  const std::string trigger = dir + "/stop-in-write";
  if (flags.stop_in_write) {
    hooks.inside_commit = [&](FenceToken fence) {
      if (fence == kNoFence || unlink(trigger.c_str()) != 0) return;
      Say(absl::StrCat("STOPPING_IN_WRITE ", g_seq));
      raise(SIGSTOP);
    };
  }
  const std::string begin_trigger = dir + "/stop-after-begin";
  if (flags.stop_after_begin) {
    hooks.after_write_begin = [&] {
      if (!g_putting.load() || unlink(begin_trigger.c_str()) != 0) return;
      Say(absl::StrCat("STOPPING_AFTER_BEGIN ", g_seq));
      raise(SIGSTOP);
    };
  }
  if (flags.fake_start_time) hooks.grant_start_time = 1;
  if (flags.fake_pid_ns) hooks.grant_pid_ns = 1;
  auto backend = lmdb_internal::OpenWithTestHooks(dir, backend_options, &hooks);
  if (!backend.ok()) return Fail(backend.status());
  const absl::Duration ttl = absl::Milliseconds(ttl_ms);
  int& seq = g_seq;
  while (true) {
    if (flags.any) Say("CONTENDING");
    AcquireOptions options;
    options.holder = name;
    options.ttl = ttl;
    auto grant = (*backend)->ha()->Acquire(options);
    if (!grant.ok()) return Fail(grant.status());
    const FenceToken fence = (*grant)->fence();
    Say(absl::StrCat("GRANTED ", fence));
    absl::Time renewed = absl::Now();
    while (true) {
      // "IDLE" marks the sleep: a stop that lands after it finds the holder
      // outside any LMDB transaction, and on waking it writes before it
      // looks at its grant, as a hung leader would.
      Say("IDLE");
      absl::SleepFor(absl::Milliseconds(30));
      if (absl::Now() - renewed > ttl / 3) {
        absl::Status r = (*grant)->Renew();
        if (r.ok()) renewed = absl::Now();
      }
      ++seq;
      g_putting.store(true);
      absl::StatusOr<uint64_t> version = (*backend)->Put(
          absl::StrCat("w/", name, "/", seq), absl::StrCat(fence), fence);
      g_putting.store(false);
      if (version.ok()) {
        Say(absl::StrCat("WRITE_OK ", seq, " ", *version));
      } else {
        Say(absl::StrCat("WRITE_REFUSED ", seq, " ",
                         absl::StatusCodeToString(version.status().code())));
      }
      if ((*grant)->Lost()) {
        Say(absl::StrCat("LOST ", fence));
        break;
      }
    }
  }
}

int Stopper(const std::string& dir, bool announce) {
  lmdb_internal::TestHooks hooks;
  hooks.inside_commit = [](FenceToken) {
    Say("STOPPING_IN_WRITE");
    raise(SIGSTOP);
  };
  auto backend = lmdb_internal::OpenWithTestHooks(dir, {}, &hooks);
  if (!backend.ok()) return Fail(backend.status());
  if (announce) Say("WRITING");
  absl::StatusOr<uint64_t> version = (*backend)->Put("stopper/x", "x");
  if (!version.ok()) return Fail(version.status());
  Say(absl::StrCat("WRITE_OK 0 ", *version));
  return 0;
}

// True once thread `tid` of this process (0: not started yet) has slept
// in a futex wait for 5 looks in a row, 5 ms apart: it is blocked on LMDB's
// writer lock (the only lock it can wait on for long). False after 10 s.
bool WaitUntilQueued(const std::atomic<pid_t>& tid) {
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  int in_a_row = 0;
  while (in_a_row < 5 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
    const pid_t t = tid.load();
    std::string number;
    std::ifstream file(absl::StrCat("/proc/self/task/", t, "/syscall"));
    const bool in_futex =
        t != 0 && (file >> number) && number == absl::StrCat(SYS_futex);
    in_a_row = in_futex ? in_a_row + 1 : 0;
  }
  return in_a_row >= 5;
}

int Grower(const std::string& dir, int ttl_ms) {
  lmdb_internal::TestHooks hooks;
  std::atomic<int> commits{0};
  absl::Time release_at;
  std::unique_ptr<LmdbBackend> opened;
  std::thread second;
  hooks.inside_commit = [&](FenceToken) {
    if (commits.fetch_add(1) == 0) {
      // The growth: let the second write queue up first, then hold on.
      // "Queued" is seen, not assumed: a fixed pause was too short for a
      // new thread under TSan on a loaded machine, and the taker, queued
      // first, won the lock (no hung holder to kill).
      std::atomic<pid_t> second_tid{0};
      second = std::thread([&] {
        second_tid.store(static_cast<pid_t>(syscall(SYS_gettid)));
        absl::StatusOr<uint64_t> v = opened->Put("grower/second", "x");
        if (!v.ok()) Fail(v.status());
      });
      if (!WaitUntilQueued(second_tid)) {
        Say("ERROR the second write did not queue on the writer lock");
      }
      absl::SleepFor(release_at - absl::Now());
      return;
    }
    Say("STOPPING_IN_WRITE");
    raise(SIGSTOP);
  };
  auto backend = lmdb_internal::OpenWithTestHooks(dir, {}, &hooks);
  if (!backend.ok()) return Fail(backend.status());
  opened = *std::move(backend);
  AcquireOptions options;
  options.holder = "grower";
  options.ttl = absl::Milliseconds(ttl_ms);
  auto grant = opened->ha()->Acquire(options);
  if (!grant.ok()) return Fail(grant.status());
  release_at = absl::Now() + absl::Milliseconds(ttl_ms + 300);
  Say(absl::StrCat("GRANTED ", (*grant)->fence()));
  absl::StatusOr<uint64_t> v =
      opened->Put("grower/big", std::string(3 << 19, 'g'));
  if (!v.ok()) return Fail(v.status());
  second.join();
  return 0;
}

int Fill(const std::string& dir, int count, int bytes) {
  LmdbBackendOptions options;
  options.initial_map_bytes = 1 << 20;
  options.durability = LmdbBackendOptions::Durability::kNoSync;
  auto backend = LmdbBackend::Open(dir, options);
  if (!backend.ok()) return Fail(backend.status());
  for (int i = 0; i < count; ++i) {
    auto v =
        (*backend)->Put(absl::StrCat("fill/", i),
                        std::string(bytes, static_cast<char>('a' + i % 26)));
    if (!v.ok()) return Fail(v.status());
  }
  absl::Status synced = (*backend)->Sync();
  if (!synced.ok()) return Fail(synced);
  Say(absl::StrCat("DONE ", *(*backend)->Revision()));
  return 0;
}

int Reader(const std::string& dir, int count) {
  MDB_env* env = nullptr;
  int rc = mdb_env_create(&env);
  if (rc == 0) rc = mdb_env_open(env, dir.c_str(), MDB_NOTLS, 0644);
  if (rc != 0) {
    Say(absl::StrCat("ERROR ", mdb_strerror(rc)));
    return 2;
  }
  int open = 0;
  for (; open < count; ++open) {
    MDB_txn* txn = nullptr;
    if (mdb_txn_begin(env, nullptr, MDB_RDONLY, &txn) != 0) break;
    MDB_dbi dbi;
    MDB_val key{9, const_cast<char*>("\0revision")};
    MDB_val value;
    if (mdb_dbi_open(txn, nullptr, 0, &dbi) != 0 ||
        mdb_get(txn, dbi, &key, &value) != 0) {
      Say("ERROR reading");
      return 2;
    }
  }
  Say(absl::StrCat("READING ", open));
  while (true) pause();
}

int Main(int argc, char** argv) {
  ContenderFlags flags;
  for (int i = 5; i < argc; ++i) {
    const std::string flag = argv[i];
    flags.any = true;
    if (flag == "--kill-hung-holder") {
      flags.kill_hung_holder = true;
    } else if (flag == "--report-hung") {
      flags.report_hung = true;
    } else if (flag == "--stop-after-begin") {
      flags.stop_after_begin = true;
    } else if (flag == "--stop-in-write") {
      flags.stop_in_write = true;
    } else if (flag == "--fake-start-time") {
      flags.fake_start_time = true;
    } else if (flag == "--fake-pid-ns") {
      flags.fake_pid_ns = true;
    } else if (flag.rfind("--boot-id=", 0) == 0) {
      flags.boot_id = flag.substr(10);
    } else {
      std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
      return 1;
    }
  }
  if (argc < 5 || (flags.any && std::string(argv[1]) != "contender")) {
    std::fprintf(stderr,
                 "usage: lmdb_child writer|contender|fill|reader DIR A B\n");
    return 1;
  }
  const std::string mode = argv[1];
  const std::string dir = argv[2];
  int a = 0, b = 0;
  if (mode == "writer" && absl::SimpleAtoi(argv[3], &a)) return Writer(dir, a);
  if (mode == "contender" && absl::SimpleAtoi(argv[4], &b)) {
    return Contender(dir, argv[3], b, flags);
  }
  if (mode == "stopper") {
    return Stopper(dir, std::string(argv[3]) == "announce");
  }
  if (mode == "grower" && absl::SimpleAtoi(argv[3], &a)) return Grower(dir, a);
  if (mode == "reader" && absl::SimpleAtoi(argv[3], &a)) {
    return Reader(dir, a);
  }
  if (mode == "fill" && absl::SimpleAtoi(argv[3], &a) &&
      absl::SimpleAtoi(argv[4], &b)) {
    return Fill(dir, a, b);
  }
  std::fprintf(stderr, "bad arguments\n");
  return 1;
}

}  // namespace
}  // namespace strongbox

int main(int argc, char** argv) { return strongbox::Main(argc, argv); }
