// The identity checks that decide whether a contender may kill a lease
// holder hung inside an LMDB write (lib/lmdb/hung_holder.h): the verdict
// for every kind of grant record, the /proc/<pid>/stat parser, and the kill
// itself on a real process.
#include "lib/lmdb/hung_holder.h"

#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "lib/lmdb/records.h"
#include "tests/lmdb/test_support.h"

namespace strongbox {
namespace lmdb_internal {
namespace {

constexpr char kBoot[] = "boot-a";
constexpr uint64_t kPidNs = 4026531836;
const absl::Time kExpiry = absl::UnixEpoch() + absl::Seconds(100);
constexpr absl::Duration kTtl = absl::Milliseconds(500);

LeaseRecord Record(uint32_t pid, uint64_t start_time) {
  LeaseRecord r;
  r.active = true;
  r.fence = 7;
  r.expiry = kExpiry;
  r.ttl = kTtl;
  r.pid = pid;
  r.start_time = start_time;
  r.pid_ns = kPidNs;
  r.boot_id = kBoot;
  r.holder = "node-a";
  return r;
}

SelfIdentity Self() { return SelfIdentity{kBoot, /*pid=*/1000, kPidNs}; }

// Judges `record` with the holder's start time now `now_start` (NOT_FOUND:
// no such process), `expired_for` past expiry after `blocked_for` blocked,
// the holder seen inside one write for `inside` (nullopt: not inside a
// write), with the default grace (the TTL).
HolderJudgement Judge(const LeaseRecord& record,
                      absl::StatusOr<uint64_t> now_start,
                      absl::Duration expired_for, absl::Duration blocked_for,
                      int* reads = nullptr,
                      std::optional<absl::Duration> inside = absl::Hours(1)) {
  return JudgeHolder(record, kExpiry, kExpiry + expired_for, blocked_for,
                     absl::ZeroDuration(), Self(), inside, [&](pid_t) {
                       if (reads != nullptr) ++*reads;
                       return now_start;
                     });
}

TEST(JudgeHolderTest, ProvenHolderPastTheGraceMayBeKilled) {
  HolderJudgement j = Judge(Record(42, 555), uint64_t{555}, 2 * kTtl, 2 * kTtl);
  EXPECT_EQ(j.verdict, HolderVerdict::kProven) << j.reason;
  EXPECT_EQ(j.expired_for, 2 * kTtl);
  EXPECT_NE(j.reason.find("pid 42"), std::string::npos) << j.reason;
}

TEST(JudgeHolderTest, LiveGrantIsNeverKilled) {
  int reads = 0;
  // Still before its expiry, however long the contender has been blocked.
  HolderJudgement j = Judge(Record(42, 555), uint64_t{555},
                            -absl::Milliseconds(1), absl::Hours(1), &reads);
  EXPECT_EQ(j.verdict, HolderVerdict::kLive);
  // Expired, but for less than the grace.
  j = Judge(Record(42, 555), uint64_t{555}, kTtl - absl::Milliseconds(1),
            absl::Hours(1), &reads);
  EXPECT_EQ(j.verdict, HolderVerdict::kLive);
  // Long expired, but the contender's write has not waited the grace.
  j = Judge(Record(42, 555), uint64_t{555}, absl::Hours(1),
            kTtl - absl::Milliseconds(1), &reads);
  EXPECT_EQ(j.verdict, HolderVerdict::kLive);
  EXPECT_EQ(reads, 0) << "a live grant's holder was even looked at";
}

TEST(JudgeHolderTest, ExplicitGraceReplacesTheTtl) {
  const LeaseRecord r = Record(42, 555);
  auto judge = [&](absl::Duration expired_for) {
    return JudgeHolder(r, kExpiry, kExpiry + expired_for, absl::Hours(1),
                       absl::Seconds(5), Self(), absl::Hours(1),
                       [](pid_t) { return absl::StatusOr<uint64_t>(555); })
        .verdict;
  };
  EXPECT_EQ(judge(absl::Seconds(4)), HolderVerdict::kLive);
  EXPECT_EQ(judge(absl::Seconds(5)), HolderVerdict::kProven);
}

// A grace shorter than the TTL would let a renewal that was only slow
// (it began before the expiry, its commit landed after) be killed: the
// grace is never less than the grant's TTL.
TEST(JudgeHolderTest, GraceShorterThanTheTtlCountsAsTheTtl) {
  const LeaseRecord r = Record(42, 555);
  auto judge = [&](absl::Duration expired_for, absl::Duration blocked_for) {
    return JudgeHolder(r, kExpiry, kExpiry + expired_for, blocked_for,
                       absl::Milliseconds(10), Self(), absl::Hours(1),
                       [](pid_t) { return absl::StatusOr<uint64_t>(555); })
        .verdict;
  };
  EXPECT_EQ(judge(kTtl - absl::Milliseconds(1), absl::Hours(1)),
            HolderVerdict::kLive);
  EXPECT_EQ(judge(absl::Hours(1), kTtl - absl::Milliseconds(1)),
            HolderVerdict::kLive);
  EXPECT_EQ(judge(kTtl, kTtl), HolderVerdict::kProven);
}

TEST(JudgeHolderTest, ReusedPidIsNeverKilled) {
  HolderJudgement j = Judge(Record(42, 555), uint64_t{556}, 2 * kTtl, 2 * kTtl);
  EXPECT_EQ(j.verdict, HolderVerdict::kPidReused) << j.reason;
  EXPECT_NE(j.reason.find("another process"), std::string::npos) << j.reason;
}

TEST(JudgeHolderTest, GrantOfAnotherBootIsNeverKilled) {
  LeaseRecord r = Record(42, 555);
  r.boot_id = "boot-b";
  int reads = 0;
  HolderJudgement j = Judge(r, uint64_t{555}, 2 * kTtl, 2 * kTtl, &reads);
  EXPECT_EQ(j.verdict, HolderVerdict::kOtherBoot) << j.reason;
  EXPECT_EQ(reads, 0);
}

TEST(JudgeHolderTest, OwnProcessIsNeverKilled) {
  HolderJudgement j =
      Judge(Record(1000, 555), uint64_t{555}, 2 * kTtl, 2 * kTtl);
  EXPECT_EQ(j.verdict, HolderVerdict::kSelf) << j.reason;
}

// Issue 18 review, item 1: LMDB does not say who holds its writer lock. A
// holder whose renewal waits behind another process stopped inside a write
// is expired and proven, but not inside a write: never killed.
TEST(JudgeHolderTest, HolderNotInsideAWriteIsNeverKilled) {
  HolderJudgement j = Judge(Record(42, 555), uint64_t{555}, 2 * kTtl, 2 * kTtl,
                            nullptr, std::nullopt);
  EXPECT_EQ(j.verdict, HolderVerdict::kNotInsideWrite) << j.reason;
  EXPECT_NE(j.reason.find("not inside a write"), std::string::npos) << j.reason;
  // Inside a write, but not one write for the grace yet (a short write
  // seen by chance, or the hang has just begun): not yet.
  j = Judge(Record(42, 555), uint64_t{555}, 2 * kTtl, 2 * kTtl, nullptr,
            kTtl - absl::Milliseconds(1));
  EXPECT_EQ(j.verdict, HolderVerdict::kLive) << j.reason;
  j = Judge(Record(42, 555), uint64_t{555}, 2 * kTtl, 2 * kTtl, nullptr, kTtl);
  EXPECT_EQ(j.verdict, HolderVerdict::kProven) << j.reason;
}

// Issue 18 review, item 4: containers may share a boot id; a pid recorded
// in another pid namespace is not ours to judge.
TEST(JudgeHolderTest, HolderOfAnotherPidNamespaceIsNeverKilled) {
  LeaseRecord r = Record(42, 555);
  r.pid_ns = kPidNs + 1;
  int reads = 0;
  HolderJudgement j = Judge(r, uint64_t{555}, 2 * kTtl, 2 * kTtl, &reads);
  EXPECT_EQ(j.verdict, HolderVerdict::kOtherPidNamespace) << j.reason;
  EXPECT_NE(j.reason.find("another pid namespace"), std::string::npos)
      << j.reason;
  EXPECT_EQ(reads, 0) << "another namespace's pid was looked up in ours";
  // Even when that pid is our own number.
  r.pid = 1000;
  EXPECT_EQ(Judge(r, uint64_t{555}, 2 * kTtl, 2 * kTtl).verdict,
            HolderVerdict::kOtherPidNamespace);
  // A contender that cannot read its own namespace proves nobody.
  HolderJudgement unknown = JudgeHolder(
      Record(42, 555), kExpiry, kExpiry + 2 * kTtl, 2 * kTtl,
      absl::ZeroDuration(), SelfIdentity{kBoot, 1000, 0}, absl::Hours(1),
      [](pid_t) { return absl::StatusOr<uint64_t>(555); });
  EXPECT_EQ(unknown.verdict, HolderVerdict::kUnknownIdentity) << unknown.reason;
}

// Version 3 records (the previous build) name no pid namespace, and their
// holders keep no marker: read, never killed.
TEST(JudgeHolderTest, VersionThreeRecordIsNeverKilled) {
  LeaseRecord r = Record(42, 555);
  r.version = kLeaseRecordV3;
  r.pid_ns = 0;
  HolderJudgement j = Judge(r, uint64_t{555}, 2 * kTtl, 2 * kTtl);
  EXPECT_EQ(j.verdict, HolderVerdict::kUnknownIdentity) << j.reason;
}

TEST(JudgeHolderTest, RecordWithoutStartTimeIsNeverKilled) {
  // A version 2 record (an older release) names no start time.
  HolderJudgement j = Judge(Record(42, 0), uint64_t{0}, 2 * kTtl, 2 * kTtl);
  EXPECT_EQ(j.verdict, HolderVerdict::kUnknownIdentity) << j.reason;
  j = Judge(Record(0, 555), uint64_t{555}, 2 * kTtl, 2 * kTtl);
  EXPECT_EQ(j.verdict, HolderVerdict::kUnknownIdentity) << j.reason;
}

TEST(JudgeHolderTest, ExitedOrUnreadableHolderIsNotKilled) {
  EXPECT_EQ(
      Judge(Record(42, 555), absl::NotFoundError("gone"), 2 * kTtl, 2 * kTtl)
          .verdict,
      HolderVerdict::kGone);
  EXPECT_EQ(Judge(Record(42, 555), absl::PermissionDeniedError("no"), 2 * kTtl,
                  2 * kTtl)
                .verdict,
            HolderVerdict::kUnreadable);
}

TEST(JudgeHolderTest, ReleasedGrantNamesNobody) {
  LeaseRecord r = Record(42, 555);
  r.active = false;
  EXPECT_EQ(Judge(r, uint64_t{555}, 2 * kTtl, 2 * kTtl).verdict,
            HolderVerdict::kNoHolder);
}

// ---------------------------------------------------------- record layout

TEST(LeaseRecordTest, VersionFourCarriesThePidNamespaceAndOlderOnesStillRead) {
  LeaseRecord r = Record(42, 123456789);
  absl::StatusOr<LeaseRecord> back = DecodeLease(EncodeLease(r));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->version, kLeaseRecordV4);
  EXPECT_EQ(back->pid_ns, kPidNs);
  EXPECT_EQ(back->start_time, 123456789u);
  // A version 3 record has a start time but no pid namespace.
  r.version = kLeaseRecordV3;
  back = DecodeLease(EncodeLease(r));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->version, kLeaseRecordV3);
  EXPECT_EQ(back->start_time, 123456789u);
  EXPECT_EQ(back->pid_ns, 0u);
  EXPECT_EQ(back->holder, "node-a");
  r.version = kLeaseRecordV4;
  back = DecodeLease(EncodeLease(r));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->start_time, 123456789u);
  EXPECT_EQ(back->pid, 42u);
  EXPECT_EQ(back->boot_id, kBoot);
  EXPECT_EQ(back->holder, "node-a");
  EXPECT_EQ(back->expiry_clock, ExpiryClock::kBoot);
  // A version 2 record (the previous release) has no start time.
  r.version = kLeaseRecordV2;
  back = DecodeLease(EncodeLease(r));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->version, kLeaseRecordV2);
  EXPECT_EQ(back->start_time, 0u);
  EXPECT_EQ(back->expiry_clock, ExpiryClock::kBoot);
  EXPECT_EQ(back->holder, "node-a");
  r.version = kLeaseRecordV1;
  back = DecodeLease(EncodeLease(r));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->expiry_clock, ExpiryClock::kWall);
  EXPECT_EQ(back->start_time, 0u);
  // Truncated, or of an unknown version: DATA_LOSS.
  std::string bytes = EncodeLease(Record(42, 1));
  EXPECT_EQ(DecodeLease(bytes.substr(0, bytes.size() - 1)).status().code(),
            absl::StatusCode::kDataLoss);
  bytes[0] = 5;
  EXPECT_EQ(DecodeLease(bytes).status().code(), absl::StatusCode::kDataLoss);
}

// ----------------------------------------------------------- /proc parsing

// The pid of a process that exited and was reaped, if no other process has
// taken it since; else -1.
pid_t DeadPid() {
  const pid_t pid = fork();
  if (pid == 0) _exit(0);
  if (pid < 0 || waitpid(pid, nullptr, 0) != pid) return -1;
  if (kill(pid, 0) == 0 || errno != ESRCH) return -1;
  return pid;
}

pid_t SpawnSleeper() {
  pid_t pid = fork();
  if (pid == 0) {
    while (true) pause();
  }
  return pid;
}

TEST(ProcessStartTimeTest, ParsesFieldTwentyTwoPastAnAwkwardName) {
  const std::string root = NewTestDir("proc");
  ASSERT_EQ(mkdir(root.c_str(), 0755), 0);
  ASSERT_EQ(mkdir((root + "/77").c_str(), 0755), 0);
  // comm may hold spaces and ')'; fields 3..21 are 1..19, field 22 is 4242.
  std::string line = "77 (a) b) c) S";
  for (int field = 4; field <= 21; ++field) absl::StrAppend(&line, " ", field);
  absl::StrAppend(&line, " 4242 23 24\n");
  std::ofstream(root + "/77/stat") << line;
  absl::StatusOr<uint64_t> start = ReadProcessStartTime(77, root);
  ASSERT_TRUE(start.ok()) << start.status();
  EXPECT_EQ(*start, 4242u);
  // No entry and no such process (the kernel says): exited.
  const pid_t dead = DeadPid();
  if (dead > 0) {
    EXPECT_EQ(ReadProcessStartTime(dead, root).status().code(),
              absl::StatusCode::kNotFound);
  }
  // A zombie has exited.
  std::string zombie = line;
  zombie.replace(zombie.find(") S ") + 2, 1, "Z");
  std::ofstream(root + "/77/stat") << zombie;
  EXPECT_EQ(ReadProcessStartTime(77, root).status().code(),
            absl::StatusCode::kNotFound);
  std::ofstream(root + "/77/stat") << "77 (x) S 1 2\n";
  EXPECT_EQ(ReadProcessStartTime(77, root).status().code(),
            absl::StatusCode::kInternal);
}

// /proc mounted with hidepid=2 (or no /proc at all) shows no directory for
// another user's process: that process is hidden, not exited, and must be
// reported as "cannot see it", never as "has exited".
TEST(ProcessStartTimeTest, HiddenProcessIsNotReportedAsExited) {
  const std::string root = NewTestDir("hidden-proc");
  ASSERT_EQ(mkdir(root.c_str(), 0755), 0);  // a /proc showing nobody
  const pid_t live = SpawnSleeper();
  ASSERT_GT(live, 0);
  absl::StatusOr<uint64_t> hidden = ReadProcessStartTime(live, root);
  EXPECT_EQ(hidden.status().code(), absl::StatusCode::kPermissionDenied)
      << hidden.status();
  EXPECT_NE(hidden.status().message().find("cannot see"), std::string::npos)
      << hidden.status();
  kill(live, SIGKILL);
  waitpid(live, nullptr, 0);
  // The verdict names the reason and kills nothing.
  HolderJudgement j =
      Judge(Record(42, 555), hidden.status(), 2 * kTtl, 2 * kTtl);
  EXPECT_EQ(j.verdict, HolderVerdict::kUnreadable) << j.reason;
  EXPECT_NE(j.reason.find("cannot see"), std::string::npos) << j.reason;
}

TEST(ProcessStartTimeTest, RealProcessesDifferAndAreStable) {
  absl::StatusOr<uint64_t> self = ReadProcessStartTime(getpid(), "/proc");
  ASSERT_TRUE(self.ok()) << self.status();
  EXPECT_EQ(*ReadProcessStartTime(getpid(), "/proc"), *self);
  EXPECT_GT(*self, 0u);
}

// ---------------------------------------------------------------- the kill

TEST(KillIfSameProcessTest, KillsOnlyTheProvenProcess) {
  const pid_t pid = SpawnSleeper();
  ASSERT_GT(pid, 0);
  absl::StatusOr<uint64_t> start = ReadProcessStartTime(pid, "/proc");
  ASSERT_TRUE(start.ok()) << start.status();
  // A different start time: the pid "now belongs to another process".
  auto hung = [] { return true; };
  EXPECT_EQ(KillIfSameProcess(pid, *start + 1, "/proc", hung).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(kill(pid, 0), 0) << "a process of another identity was killed";
  // The same process, but it left its write once pinned: not killed.
  EXPECT_EQ(
      KillIfSameProcess(pid, *start, "/proc", [] { return false; }).code(),
      absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(kill(pid, 0), 0) << "a process that left its write was killed";
  ASSERT_TRUE(KillIfSameProcess(pid, *start, "/proc", hung).ok());
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  // Reaped: gone.
  EXPECT_EQ(KillIfSameProcess(pid, *start, "/proc", hung).code(),
            absl::StatusCode::kNotFound);
}

// ------------------------------------------------- the inside-write marker

TEST(InsideWriteMarkerTest, ProbeSeesTheTransactionNotTheLivenessLock) {
  const std::string path = NewTestDir("marker");
  const int holder = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  ASSERT_GE(holder, 0);
  const int prober = open(path.c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(prober, 0);
  struct flock live;
  std::memset(&live, 0, sizeof(live));
  live.l_type = F_WRLCK;
  live.l_whence = SEEK_SET;
  live.l_start = kLivenessByte;
  live.l_len = 1;
  ASSERT_EQ(fcntl(holder, F_OFD_SETLK, &live), 0);
  EXPECT_FALSE(ProbeInsideWriteMarker(prober).has_value())
      << "the liveness lock reads as a write";
  ASSERT_TRUE(LockInsideWriteMarker(holder, 7));
  EXPECT_EQ(ProbeInsideWriteMarker(prober), std::optional<uint64_t>(7));
  UnlockInsideWriteMarkers(holder);
  EXPECT_FALSE(ProbeInsideWriteMarker(prober).has_value());
  // The next transaction is told apart from the last.
  ASSERT_TRUE(LockInsideWriteMarker(holder, 8));
  EXPECT_EQ(ProbeInsideWriteMarker(prober), std::optional<uint64_t>(8));
  // The holder's own descriptor sees nothing of its own locks.
  EXPECT_FALSE(ProbeInsideWriteMarker(holder).has_value());
  close(holder);  // its locks go with it
  EXPECT_FALSE(ProbeInsideWriteMarker(prober).has_value());
  close(prober);
}

// ------------------------------------------------------------- the watch

class FakeWatchIo : public HolderWatchIo {
 public:
  absl::StatusOr<uint64_t> ReadStartTime(pid_t pid) override {
    return start_time;
  }
  std::optional<uint64_t> ProbeInsideWrite(FenceToken fence) override {
    return marker;
  }
  absl::Status Kill(pid_t pid, uint64_t start,
                    absl::FunctionRef<bool()> still_hung) override {
    if (before_kill) before_kill();
    if (!still_hung()) return absl::FailedPreconditionError("left");
    ++kills;
    return absl::OkStatus();
  }
  absl::StatusOr<std::optional<pid_t>> WriterLockOwner() override {
    return owner;
  }
  absl::StatusOr<ThreadRun> ReadThreadRun(pid_t pid, pid_t tid) override {
    if (pid != 42 || tid != kHolderThread) {
      return absl::NotFoundError("not a thread of that process");
    }
    return run;
  }

  static constexpr pid_t kHolderThread = 43;
  absl::StatusOr<uint64_t> start_time = uint64_t{555};
  std::optional<uint64_t> marker = 3;
  // By default the owner of the writer mutex cannot be told.
  absl::StatusOr<std::optional<pid_t>> owner =
      absl::UnimplementedError("not read");
  ThreadRun run{'T', 1000};
  std::function<void()> before_kill;
  int kills = 0;
};

HolderWatchConfig KillingConfig() {
  HolderWatchConfig config;
  config.self = Self();
  config.kill = true;
  return config;
}

// Issue 18 review, item 3: after a kill, a wait that goes on (another
// process took the writer lock, or the killed one does not exit) is
// reported again, once.
TEST(HolderWatchTest, WaitThatGoesOnAfterAKillIsReportedAgain) {
  FakeWatchIo io;
  const absl::Time armed = kExpiry;
  HolderWatch watch(KillingConfig(), &io, armed);
  const LeaseRecord r = Record(42, 555);
  // Not yet: inside one write for less than the grace.
  EXPECT_FALSE(watch.Look(r, kExpiry, armed).has_value());
  std::optional<HungHolderEvent> e = watch.Look(r, kExpiry, armed + kTtl);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->kind, HungHolderEvent::Kind::kKilled) << e->reason;
  EXPECT_EQ(io.kills, 1);
  // The killed process is gone, but the wait goes on: quiet while LMDB
  // passes its lock on, then reported, once.
  io.start_time = absl::NotFoundError("gone");
  io.marker.reset();
  const absl::Time killed = armed + kTtl;
  EXPECT_FALSE(
      watch.Look(r, kExpiry, killed + absl::Milliseconds(10)).has_value());
  e = watch.Look(r, kExpiry, killed + HolderWatch::kAfterKillQuiet);
  ASSERT_TRUE(e.has_value()) << "the wait after the kill was not reported";
  EXPECT_EQ(e->kind, HungHolderEvent::Kind::kWaiting);
  EXPECT_EQ(e->pid, 42u);
  EXPECT_NE(e->reason.find("still waits after the kill of pid 42"),
            std::string::npos)
      << e->reason;
  EXPECT_FALSE(watch.Look(r, kExpiry, killed + 2 * HolderWatch::kAfterKillQuiet)
                   .has_value())
      << "reported again and again";
  EXPECT_EQ(io.kills, 1);
}

TEST(HolderWatchTest, KilledHolderThatDoesNotExitIsReportedNotKilledAgain) {
  FakeWatchIo io;
  HolderWatch watch(KillingConfig(), &io, kExpiry);
  const LeaseRecord r = Record(42, 555);
  watch.Look(r, kExpiry, kExpiry);
  std::optional<HungHolderEvent> e = watch.Look(r, kExpiry, kExpiry + kTtl);
  ASSERT_TRUE(e.has_value());
  ASSERT_EQ(e->kind, HungHolderEvent::Kind::kKilled);
  // Still there, same identity, same write (stuck in the kernel).
  const absl::Time killed = kExpiry + kTtl;
  EXPECT_FALSE(
      watch.Look(r, kExpiry, killed + absl::Milliseconds(10)).has_value());
  e = watch.Look(r, kExpiry, killed + HolderWatch::kAfterKillQuiet);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->kind, HungHolderEvent::Kind::kWaiting);
  EXPECT_NE(e->reason.find("has not exited"), std::string::npos) << e->reason;
  EXPECT_EQ(io.kills, 1);
}

// A marker that changes between looks is many short writes, not one hang:
// the clock of "inside one write" starts again at each new transaction.
TEST(HolderWatchTest, ManyShortWritesAreNotAHang) {
  FakeWatchIo io;
  HolderWatch watch(KillingConfig(), &io, kExpiry);
  const LeaseRecord r = Record(42, 555);
  for (int i = 0; i < 100; ++i) {
    io.marker = i;
    EXPECT_FALSE(watch.Look(r, kExpiry, kExpiry + i * kTtl).has_value());
  }
  EXPECT_EQ(io.kills, 0);
  // No marker: the holder is not inside a write; that is reported.
  io.marker.reset();
  std::optional<HungHolderEvent> e =
      watch.Look(r, kExpiry, kExpiry + 101 * kTtl);
  ASSERT_TRUE(e.has_value());
  EXPECT_NE(e->reason.find("not inside a write"), std::string::npos)
      << e->reason;
  EXPECT_EQ(io.kills, 0);
}

// ------------------------------------- the owner of LMDB's writer mutex

// The gap of the marker: a holder stopped inside mdb_txn_begin after LMDB
// took its writer mutex, unmarked. The mutex's owner is one of its threads
// and that thread does not run: one hold, killed after the grace.
TEST(HolderWatchTest, UnmarkedHolderOwningTheWriterLockWithoutRunningIsKilled) {
  FakeWatchIo io;
  io.marker.reset();
  io.owner = std::optional<pid_t>(FakeWatchIo::kHolderThread);
  HolderWatch watch(KillingConfig(), &io, kExpiry);
  const LeaseRecord r = Record(42, 555);
  EXPECT_FALSE(watch.Look(r, kExpiry, kExpiry).has_value());
  EXPECT_FALSE(
      watch.Look(r, kExpiry, kExpiry + kTtl / 2).has_value());  // within
  std::optional<HungHolderEvent> e = watch.Look(r, kExpiry, kExpiry + kTtl);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->kind, HungHolderEvent::Kind::kKilled) << e->reason;
  EXPECT_NE(e->reason.find("owned LMDB's writer lock in one hold (its "
                           "thread 43"),
            std::string::npos)
      << e->reason;
  EXPECT_EQ(io.kills, 1);
}

// An owner thread that runs may have let go and taken the lock again
// (many short writes): its hold starts again at every look; never killed.
TEST(HolderWatchTest, OwnerThreadThatRunsIsNotAHang) {
  FakeWatchIo io;
  io.marker.reset();
  io.owner = std::optional<pid_t>(FakeWatchIo::kHolderThread);
  HolderWatch watch(KillingConfig(), &io, kExpiry);
  const LeaseRecord r = Record(42, 555);
  for (int i = 0; i < 50; ++i) {
    io.run.on_cpu_ns += 1;
    std::optional<HungHolderEvent> e =
        watch.Look(r, kExpiry, kExpiry + i * kTtl);
    if (e.has_value()) EXPECT_EQ(e->kind, HungHolderEvent::Kind::kWaiting);
  }
  // Running right now: not hung, whatever its times say.
  io.run.state = 'R';
  for (int i = 50; i < 100; ++i) {
    std::optional<HungHolderEvent> e =
        watch.Look(r, kExpiry, kExpiry + i * kTtl);
    if (e.has_value()) {
      EXPECT_EQ(e->kind, HungHolderEvent::Kind::kWaiting);
      EXPECT_NE(e->reason.find("and is running"), std::string::npos)
          << e->reason;
    }
  }
  EXPECT_EQ(io.kills, 0);
}

// A holder merely waiting for the writer mutex: its owner is some other
// process's thread. Never killed, and the reason says so.
TEST(HolderWatchTest, HolderWaitingBehindAnotherOwnerIsNeverKilled) {
  FakeWatchIo io;
  io.marker.reset();
  io.owner = std::optional<pid_t>(99);
  HolderWatch watch(KillingConfig(), &io, kExpiry);
  const LeaseRecord r = Record(42, 555);
  std::optional<HungHolderEvent> last;
  for (int i = 0; i < 20; ++i) {
    std::optional<HungHolderEvent> e =
        watch.Look(r, kExpiry, kExpiry + i * kTtl);
    if (e.has_value()) last = e;
  }
  EXPECT_EQ(io.kills, 0);
  ASSERT_TRUE(last.has_value());
  EXPECT_EQ(last->kind, HungHolderEvent::Kind::kWaiting);
  EXPECT_NE(last->reason.find("not inside a write"), std::string::npos);
  EXPECT_NE(last->reason.find("(its owner, thread 99, is not one of the "
                              "holder's"),
            std::string::npos)
      << last->reason;
}

// Unverifiable: the layout is unknown or another pid namespace uses the
// store. Fails safe.
TEST(HolderWatchTest, UnknownOwnerIsNeverKilled) {
  FakeWatchIo io;
  io.marker.reset();
  io.owner = absl::FailedPreconditionError("not the layout this code knows");
  HolderWatch watch(KillingConfig(), &io, kExpiry);
  const LeaseRecord r = Record(42, 555);
  std::optional<HungHolderEvent> last;
  for (int i = 0; i < 20; ++i) {
    std::optional<HungHolderEvent> e =
        watch.Look(r, kExpiry, kExpiry + i * kTtl);
    if (e.has_value()) last = e;
  }
  EXPECT_EQ(io.kills, 0);
  ASSERT_TRUE(last.has_value());
  EXPECT_NE(last->reason.find("cannot be told (not the layout"),
            std::string::npos)
      << last->reason;
  // Schedstat off (zeros): one hold cannot be shown either.
  FakeWatchIo io2;
  io2.marker.reset();
  io2.owner = std::optional<pid_t>(FakeWatchIo::kHolderThread);
  io2.run.on_cpu_ns = 0;
  HolderWatch watch2(KillingConfig(), &io2, kExpiry);
  for (int i = 0; i < 20; ++i) watch2.Look(r, kExpiry, kExpiry + i * kTtl);
  EXPECT_EQ(io2.kills, 0);
}

// Checked again once the process is pinned: a thread that ran meanwhile
// (or let go) is not killed.
TEST(HolderWatchTest, OwnerThatRanBeforeTheSignalIsNotKilled) {
  FakeWatchIo io;
  io.marker.reset();
  io.owner = std::optional<pid_t>(FakeWatchIo::kHolderThread);
  io.before_kill = [&] { io.run.on_cpu_ns += 5; };
  HolderWatch watch(KillingConfig(), &io, kExpiry);
  const LeaseRecord r = Record(42, 555);
  watch.Look(r, kExpiry, kExpiry);
  std::optional<HungHolderEvent> e = watch.Look(r, kExpiry, kExpiry + kTtl);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->kind, HungHolderEvent::Kind::kWaiting);
  EXPECT_NE(e->reason.find("not killed"), std::string::npos) << e->reason;
  EXPECT_EQ(io.kills, 0);
}

// The real lock.mdb of Debian's liblmdb: the owner word names the thread
// inside a write transaction, and nothing once it ended.
class LockHeader {
 public:
  explicit LockHeader(const std::string& dir) {
    fd_ = open((dir + "/lock.mdb").c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) return;
    void* map = mmap(nullptr, kLockHeaderBytes, PROT_READ, MAP_SHARED, fd_, 0);
    if (map != MAP_FAILED) map_ = static_cast<const unsigned char*>(map);
  }
  ~LockHeader() {
    if (map_ != nullptr) {
      munmap(const_cast<unsigned char*>(map_), kLockHeaderBytes);
    }
    // Closing lock.mdb drops this process's LMDB locks on it: only after
    // the environment is closed (the test closes it first).
    if (fd_ >= 0) close(fd_);
  }
  const unsigned char* get() const { return map_; }
  int fd() const { return fd_; }

 private:
  int fd_ = -1;
  const unsigned char* map_ = nullptr;
};

pid_t ThisThread() { return static_cast<pid_t>(syscall(SYS_gettid)); }

TEST(WriterLockOwnerTest, NamesTheThreadInsideAWriteTransaction) {
  const std::string dir = NewTestDir("owner");
  ASSERT_EQ(mkdir(dir.c_str(), 0755), 0);
  MDB_env* env = nullptr;
  ASSERT_EQ(mdb_env_create(&env), 0);
  ASSERT_EQ(mdb_env_open(env, dir.c_str(), MDB_NOTLS, 0644), 0);
  {
    LockHeader header(dir);
    ASSERT_NE(header.get(), nullptr);
    // This process read nothing yet and is in our namespace anyway.
    EXPECT_TRUE(CheckLockFileUsersShareOurPidNs(header.fd()).ok());
    absl::StatusOr<std::optional<pid_t>> owner =
        WriterLockOwnerFromHeader(header.get());
    ASSERT_TRUE(owner.ok()) << owner.status();
    EXPECT_FALSE(owner->has_value());
    MDB_txn* txn = nullptr;
    ASSERT_EQ(mdb_txn_begin(env, nullptr, 0, &txn), 0);
    owner = WriterLockOwnerFromHeader(header.get());
    ASSERT_TRUE(owner.ok()) << owner.status();
    EXPECT_EQ(*owner, std::optional<pid_t>(ThisThread()));
    mdb_txn_abort(txn);
    // Another thread's write names that thread.
    pid_t other = 0;
    std::optional<pid_t> seen;
    std::thread writer([&] {
      MDB_txn* t = nullptr;
      ASSERT_EQ(mdb_txn_begin(env, nullptr, 0, &t), 0);
      other = ThisThread();
      absl::StatusOr<std::optional<pid_t>> o =
          WriterLockOwnerFromHeader(header.get());
      if (o.ok()) seen = *o;
      mdb_txn_abort(t);
    });
    writer.join();
    EXPECT_NE(other, ThisThread());
    EXPECT_EQ(seen, std::optional<pid_t>(other));
    owner = WriterLockOwnerFromHeader(header.get());
    ASSERT_TRUE(owner.ok());
    EXPECT_FALSE(owner->has_value());
    // A copy with any checked field changed is refused, not guessed at.
    alignas(64) unsigned char copy[kLockHeaderBytes];
    for (size_t offset :
         {size_t{0}, size_t{4}, size_t{8 + 16}, size_t{64 + 16}}) {
      std::memcpy(copy, header.get(), sizeof(copy));
      copy[offset] ^= 0x01;
      EXPECT_EQ(WriterLockOwnerFromHeader(copy).status().code(),
                absl::StatusCode::kFailedPrecondition)
          << "offset " << offset;
    }
    // An owner that died: nobody to blame (LMDB recovers the lock).
    std::memcpy(copy, header.get(), sizeof(copy));
    const uint32_t died = 0x40000000u | 1234;
    std::memcpy(copy + 64, &died, sizeof(died));
    absl::StatusOr<std::optional<pid_t>> dead = WriterLockOwnerFromHeader(copy);
    ASSERT_TRUE(dead.ok());
    EXPECT_FALSE(dead->has_value());
    mdb_env_close(env);
  }
}

// A child that holds a POSIX write lock on byte `byte` of `path` until it
// is killed. Returns its pid once the lock is taken.
pid_t LockByteInChild(const std::string& path, off_t byte_or_own_pid) {
  int ready[2];
  if (pipe(ready) != 0) return -1;
  const pid_t pid = fork();
  if (pid == 0) {
    const int fd = open(path.c_str(), O_RDWR);
    struct flock lock;
    std::memset(&lock, 0, sizeof(lock));
    lock.l_type = F_WRLCK;
    lock.l_whence = SEEK_SET;
    lock.l_start = byte_or_own_pid < 0 ? getpid() : byte_or_own_pid;
    lock.l_len = 1;
    const char ok = fd >= 0 && fcntl(fd, F_SETLK, &lock) == 0 ? 'y' : 'n';
    (void)!write(ready[1], &ok, 1);
    while (true) pause();
  }
  close(ready[1]);
  char ok = 'n';
  (void)!read(ready[0], &ok, 1);
  close(ready[0]);
  if (ok != 'y') {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    return -1;
  }
  return pid;
}

// LMDB locks byte <pid> for each process that reads the store; a thread id
// only means something in its own pid namespace. A lock whose byte is not
// the pid this process sees for its holder (a process of another pid
// namespace, which the kernel shows here as 0 or another number) refuses
// the owner route. A process of this namespace cannot fake another
// namespace, but a lock on a byte that is not its pid looks the same.
TEST(LockFileUsersTest, OnlyLocksOnOwnPidBytesPass) {
  const std::string path = NewTestDir("lockers");
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  EXPECT_TRUE(CheckLockFileUsersShareOurPidNs(fd).ok());
  const pid_t own = LockByteInChild(path, -1);
  ASSERT_GT(own, 0);
  const pid_t own2 = LockByteInChild(path, -1);
  ASSERT_GT(own2, 0);
  EXPECT_TRUE(CheckLockFileUsersShareOurPidNs(fd).ok());
  const pid_t stranger = LockByteInChild(path, 5);
  ASSERT_GT(stranger, 0);
  absl::Status s = CheckLockFileUsersShareOurPidNs(fd);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_NE(s.message().find("byte 5"), std::string::npos) << s;
  for (pid_t p : {own, own2, stranger}) {
    kill(p, SIGKILL);
    waitpid(p, nullptr, 0);
  }
  EXPECT_TRUE(CheckLockFileUsersShareOurPidNs(fd).ok());
  close(fd);
}

TEST(ThreadRunTest, ThreadsOfThisProcessAndNoOther) {
  absl::StatusOr<ThreadRun> run =
      ReadThreadRun(getpid(), ThisThread(), "/proc");
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->state, 'R');  // it is reading its own stat
  // The parent's main thread is no thread of this process.
  EXPECT_EQ(ReadThreadRun(getpid(), getppid(), "/proc").status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace lmdb_internal
}  // namespace strongbox
