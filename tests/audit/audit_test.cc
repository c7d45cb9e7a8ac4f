// The audit dispatcher and the file sink: entries redacted per sink, a hung
// sink times out and is reported without freezing callers, a failing sink
// (a full disk) refuses the request, a failed response entry is counted but
// never an error, and reopening the file while writing loses no entry.
// Timeouts are real time but short, against sinks that block until the
// test releases them: no sleeps, and no assertion on how long anything took.
#include <sys/stat.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/audit/audit_dispatcher.h"
#include "lib/util/mutex.h"
#include "nlohmann/json.hpp"
#include "strongbox/audit_sink.h"
#include "strongbox/call_context.h"
#include "strongbox/testing/fake_clock.h"
#include "strongbox/testing/status_matchers.h"

namespace strongbox::audit {
namespace {

using ::strongbox_testing::IsOk;
using ::strongbox_testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kSecret[] = "hunter2-PLAINTEXT-must-not-appear";

// Keeps every entry it is given; can be told to fail, or to fail only
// response entries.
class RecordingSink : public AuditSink {
 public:
  absl::Status Write(const AuditEntry& entry) override {
    MutexLock lock(&mu_);
    if (fail_all_ ||
        (fail_responses_ && entry.kind == AuditEntry::Kind::kResponse)) {
      return absl::UnavailableError("injected failure");
    }
    entries_.push_back(entry);
    mu_.SignalAll();
    return absl::OkStatus();
  }
  void set_fail_all(bool f) {
    MutexLock lock(&mu_);
    fail_all_ = f;
  }
  void set_fail_responses(bool f) {
    MutexLock lock(&mu_);
    fail_responses_ = f;
  }
  std::vector<AuditEntry> entries() {
    MutexLock lock(&mu_);
    return entries_;
  }
  // Waits (on the sink's own condition, at most `timeout`) until it holds
  // `n` entries.
  bool AwaitEntries(size_t n, absl::Duration timeout) {
    MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout([this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(
                                    mu_) { return entries_.size() >= n; },
                                timeout);
  }

 private:
  Mutex mu_;
  bool fail_all_ ABSL_GUARDED_BY(mu_) = false;
  bool fail_responses_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<AuditEntry> entries_ ABSL_GUARDED_BY(mu_);
};

// Blocks in Write until released: a hung audit device (Vault #37).
class BlockingSink : public AuditSink {
 public:
  absl::Status Write(const AuditEntry&) override {
    MutexLock lock(&mu_);
    ++writes_started_;
    mu_.SignalAll();
    mu_.Await([this]()
                  ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return released_; });
    return absl::OkStatus();
  }
  void Release() {
    {
      MutexLock lock(&mu_);
      released_ = true;
    }
    mu_.SignalAll();
  }
  int writes_started() {
    MutexLock lock(&mu_);
    return writes_started_;
  }
  // Waits (up to `timeout`) until at least `n` writes have started: a
  // sink's worker may pick its entry up only after the caller timed out.
  bool AwaitWritesStarted(int n, absl::Duration timeout) {
    MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(
                                    mu_) { return writes_started_ >= n; },
                                timeout);
  }

 private:
  Mutex mu_;
  bool released_ ABSL_GUARDED_BY(mu_) = false;
  int writes_started_ ABSL_GUARDED_BY(mu_) = 0;
};

class RecordingObserver : public AuditObserver {
 public:
  void OnAuditFailure(const AuditFailure& f) override {
    MutexLock lock(&mu_);
    failures_.push_back(f);
  }
  std::vector<AuditFailure> failures() {
    MutexLock lock(&mu_);
    return failures_;
  }

 private:
  Mutex mu_;
  std::vector<AuditFailure> failures_ ABSL_GUARDED_BY(mu_);
};

AuditDispatcher::SinkOptions Sink(std::string name,
                                  std::unique_ptr<AuditSink> sink,
                                  absl::Duration timeout = absl::Seconds(10)) {
  AuditDispatcher::SinkOptions o;
  o.name = std::move(name);
  o.sink = std::move(sink);
  o.timeout = timeout;
  return o;
}

AuditEvent PutEvent(const CallContext* caller) {
  AuditEvent e;
  e.caller = caller;
  e.operation = "kv_put";
  e.path = "app/db";
  e.fields = {{"data.password", kSecret, /*secret=*/true},
              {"cas", "3", /*secret=*/false}};
  return e;
}

std::string TempPath(absl::string_view name) {
  return absl::StrCat(getenv("TEST_TMPDIR"), "/", name);
}

std::vector<std::string> ReadLines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(AuditTest, FileSinkWritesRedactedJsonLinesWithMode0600) {
  const std::string path = TempPath("audit-0600.log");
  {  // An existing, too-open file is tightened.
    std::ofstream(path) << "";
    ASSERT_EQ(chmod(path.c_str(), 0644), 0);
  }
  FileAuditSinkOptions fo;
  fo.path = path;
  fo.fsync = true;
  absl::StatusOr<std::unique_ptr<AuditSink>> file = NewFileAuditSink(fo);
  ASSERT_THAT(file.status(), IsOk());
  AuditDispatcher d({});
  ASSERT_THAT(d.AddSink(Sink("file", *std::move(file))), IsOk());
  const CallContext caller = CallContext::As("alice", {"app-rw"});
  uint64_t id = 0;
  AuditEvent req = PutEvent(&caller);
  ASSERT_THAT(d.LogRequest(req, &id), IsOk());
  AuditEvent resp = PutEvent(&caller);
  resp.outcome = absl::OkStatus();
  resp.index = 42;
  resp.elapsed = absl::Microseconds(17);
  d.LogResponse(id, resp);
  ASSERT_TRUE(d.Flush(absl::Seconds(60)));

  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  const std::string text = ReadAll(path);
  EXPECT_THAT(text, Not(HasSubstr(kSecret)));
  const std::vector<std::string> lines = ReadLines(path);
  ASSERT_EQ(lines.size(), 2u);
  absl::StatusOr<std::string> hash = d.HashValue("file", kSecret);
  ASSERT_THAT(hash.status(), IsOk());
  EXPECT_TRUE(std::regex_match(*hash, std::regex("hmac-sha256:[0-9a-f]{64}")));
  for (const std::string& line : lines) {
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << line;
    EXPECT_EQ(j["id"], id);
    EXPECT_EQ(j["caller"], "alice");
    EXPECT_EQ(j["policies"][0], "app-rw");
    EXPECT_EQ(j["operation"], "kv_put");
    EXPECT_EQ(j["path"], "app/db");
    EXPECT_EQ(j["fields"]["data.password"], *hash);  // grep-able by hash
    EXPECT_EQ(j["fields"]["cas"], "3");
  }
  nlohmann::json r = nlohmann::json::parse(lines[1], nullptr, false);
  EXPECT_EQ(r["type"], "response");
  EXPECT_EQ(r["code"], "OK");
  EXPECT_EQ(r["index"], 42);
  EXPECT_EQ(r["elapsed_us"], 17);
}

TEST(AuditTest, SecretsAreHashedWithEachSinksOwnSalt) {
  AuditDispatcher d({});
  auto a = std::make_unique<RecordingSink>();
  auto b = std::make_unique<RecordingSink>();
  RecordingSink* ra = a.get();
  RecordingSink* rb = b.get();
  AuditDispatcher::SinkOptions oa = Sink("a", std::move(a));
  oa.salt = SecretBytes::Copy("salt-a");
  ASSERT_THAT(d.AddSink(std::move(oa)), IsOk());
  ASSERT_THAT(d.AddSink(Sink("b", std::move(b))), IsOk());  // random salt
  const CallContext caller = CallContext::Root();
  ASSERT_THAT(d.LogRequest(PutEvent(&caller), nullptr), IsOk());
  const std::string ha = ra->entries().at(0).fields.at(0).second;
  const std::string hb = rb->entries().at(0).fields.at(0).second;
  EXPECT_EQ(ha, *HashForAudit("salt-a", kSecret));
  EXPECT_EQ(ha, *d.HashValue("a", kSecret));
  EXPECT_EQ(hb, *d.HashValue("b", kSecret));
  EXPECT_NE(ha, hb);
  EXPECT_THAT(d.HashValue("nope", kSecret),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST(AuditTest, HungSinkTimesOutIsReportedAndDoesNotFreezeLaterCalls) {
  RecordingObserver observer;
  AuditDispatcher::Options opts;
  opts.observer = &observer;
  AuditDispatcher d(opts);
  auto blocking = std::make_unique<BlockingSink>();
  BlockingSink* hung = blocking.get();
  ASSERT_THAT(
      d.AddSink(Sink("hung", std::move(blocking), absl::Milliseconds(20))),
      IsOk());
  const CallContext caller = CallContext::Root();

  // The only sink hangs: the request times out and is refused.
  EXPECT_THAT(
      d.LogRequest(PutEvent(&caller), nullptr),
      StatusIs(absl::StatusCode::kUnavailable, HasSubstr("no sink accepted")));
  ASSERT_EQ(observer.failures().size(), 1u);
  EXPECT_EQ(observer.failures()[0].reason, AuditFailure::Reason::kTimedOut);
  EXPECT_EQ(observer.failures()[0].sink, "hung");

  // Later calls fail over the hung sink at once (kHung: never queued, never
  // waited for), however many there are.
  for (int i = 0; i < 100; ++i) {
    EXPECT_THAT(d.LogRequest(PutEvent(&caller), nullptr),
                StatusIs(absl::StatusCode::kUnavailable));
  }
  ASSERT_EQ(observer.failures().size(), 101u);
  EXPECT_EQ(observer.failures()[100].reason, AuditFailure::Reason::kHung);
  EXPECT_EQ(d.stats().requests_refused, 101u);
  EXPECT_EQ(d.stats().sink_timeouts, 101u);
  // The first entry reached the sink (its worker may start it only after
  // the 20 ms timeout on a loaded machine); none of the later ones did.
  EXPECT_TRUE(hung->AwaitWritesStarted(1, absl::Seconds(30)));
  EXPECT_EQ(hung->writes_started(), 1);

  // Once its stuck write returns, it is trusted again (the worker clears
  // the mark right after the write returns: retry until it has).
  hung->Release();
  absl::Status s;
  for (int i = 0; i < 1000000; ++i) {
    s = d.LogRequest(PutEvent(&caller), nullptr);
    if (s.ok()) break;
    std::this_thread::yield();
  }
  EXPECT_THAT(s, IsOk());
  EXPECT_EQ(hung->writes_started(), 2);
}

// What a sink that hangs forever went through, shared with the test so it
// outlives the sink (which the dispatcher owns, and an abandoned sink
// thread frees).
struct HangProbe {
  Mutex mu;
  bool entered ABSL_GUARDED_BY(mu) = false;
  bool released ABSL_GUARDED_BY(mu) = false;
  bool destroyed ABSL_GUARDED_BY(mu) = false;

  void Set(bool HangProbe::*flag) {
    {
      MutexLock lock(&mu);
      this->*flag = true;
    }
    mu.SignalAll();
  }
  // Waits (real time, at most `timeout`) for `flag`.
  bool Await(bool HangProbe::*flag, absl::Duration timeout) {
    MutexLock lock(&mu);
    return mu.AwaitWithTimeout([this, flag]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(
                                   mu) { return this->*flag; },
                               timeout);
  }
};

// Blocks in every write until the probe is released, then fails it: a
// device hung forever (Vault #37) that errs once it wakes.
class ForeverSink : public AuditSink {
 public:
  explicit ForeverSink(std::shared_ptr<HangProbe> probe)
      : probe_(std::move(probe)) {}
  ~ForeverSink() override { probe_->Set(&HangProbe::destroyed); }
  absl::Status Write(const AuditEntry&) override {
    std::shared_ptr<HangProbe> probe = probe_;
    probe->Set(&HangProbe::entered);
    MutexLock lock(&probe->mu);
    probe->mu.Await([&probe]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(probe->mu) {
      return probe->released;
    });
    return absl::UnavailableError("woke up failing");
  }

 private:
  const std::shared_ptr<HangProbe> probe_;
};

// Runs `destroy` on a thread of its own; true if it returned while the sink
// was still hung (within `bound`, far above the sink's timeout). If not,
// releases the sink so the thread can finish and the test can report.
bool ReturnsWhileHung(std::function<void()> destroy, HangProbe* probe,
                      absl::Duration bound) {
  Mutex mu;
  bool done = false;
  std::thread t([&] {
    destroy();
    MutexLock lock(&mu);
    done = true;
    mu.SignalAll();
  });
  bool returned;
  {
    MutexLock lock(&mu);
    returned = mu.AwaitWithTimeout(
        [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return done; }, bound);
  }
  if (!returned) probe->Set(&HangProbe::released);
  t.join();
  return returned;
}

// Issue 15 item 2: destroying the dispatcher is bounded by the sinks'
// timeouts even when a sink never returns; its abandoned thread touches
// neither the freed dispatcher nor its observer when the write finally
// returns (failing, with a response entry nobody waits for in its batch:
// ASan reports a use after free otherwise), and frees the sink.
TEST(AuditTest, DestructionIsBoundedWhileASinkHangsForever) {
  auto probe = std::make_shared<HangProbe>();
  auto observer = std::make_unique<RecordingObserver>();
  AuditDispatcher::Options opts;
  opts.observer = observer.get();
  auto d = std::make_unique<AuditDispatcher>(opts);
  ASSERT_THAT(d->AddSink(Sink("forever", std::make_unique<ForeverSink>(probe),
                              absl::Milliseconds(20))),
              IsOk());
  const CallContext caller = CallContext::Root();
  // A response entry queued (nobody waits for it), then a request entry:
  // whichever batch reaches the sink first hangs, with the response in it.
  d->LogResponse(7, PutEvent(&caller));
  EXPECT_THAT(d->LogRequest(PutEvent(&caller), nullptr),
              StatusIs(absl::StatusCode::kUnavailable));
  ASSERT_TRUE(probe->Await(&HangProbe::entered, absl::Seconds(60)));

  EXPECT_TRUE(
      ReturnsWhileHung([&d] { d.reset(); }, probe.get(), absl::Seconds(30)))
      << "the dispatcher's destructor waited for a hung sink";
  observer.reset();  // gone: the abandoned thread must not report to it

  // Let the stuck write return (failing): the thread exits and frees the
  // sink, telling no one.
  probe->Set(&HangProbe::released);
  EXPECT_TRUE(probe->Await(&HangProbe::destroyed, absl::Seconds(60)));
}

TEST(AuditTest, OneHealthySinkIsEnoughWhileAnotherHangs) {
  RecordingObserver observer;
  AuditDispatcher::Options opts;
  opts.observer = &observer;
  AuditDispatcher d(opts);
  auto blocking = std::make_unique<BlockingSink>();
  BlockingSink* hung = blocking.get();
  auto good = std::make_unique<RecordingSink>();
  RecordingSink* rec = good.get();
  ASSERT_THAT(
      d.AddSink(Sink("hung", std::move(blocking), absl::Milliseconds(20))),
      IsOk());
  ASSERT_THAT(d.AddSink(Sink("good", std::move(good))), IsOk());
  const CallContext caller = CallContext::Root();
  EXPECT_THAT(d.LogRequest(PutEvent(&caller), nullptr), IsOk());
  EXPECT_EQ(rec->entries().size(), 1u);
  ASSERT_EQ(observer.failures().size(), 1u);
  EXPECT_EQ(observer.failures()[0].sink, "hung");
  hung->Release();
}

// A full disk: the file sink on /dev/full fails every write (ENOSPC). The
// request is refused, so the caller applies nothing.
TEST(AuditTest, FullDiskRefusesTheRequest) {
  FileAuditSinkOptions fo;
  fo.path = "/dev/full";
  absl::StatusOr<std::unique_ptr<AuditSink>> full = NewFileAuditSink(fo);
  ASSERT_THAT(full.status(), IsOk());
  RecordingObserver observer;
  AuditDispatcher::Options opts;
  opts.observer = &observer;
  AuditDispatcher d(opts);
  ASSERT_THAT(d.AddSink(Sink("full", *std::move(full))), IsOk());
  const CallContext caller = CallContext::Root();
  int applied = 0;
  absl::Status s = d.LogRequest(PutEvent(&caller), nullptr);
  if (s.ok()) ++applied;  // the store's pipeline: execute only after OK
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(applied, 0);
  ASSERT_EQ(observer.failures().size(), 1u);
  EXPECT_EQ(observer.failures()[0].reason, AuditFailure::Reason::kFailed);
  EXPECT_THAT(observer.failures()[0].status.message(),
              HasSubstr("No space left"));
  EXPECT_EQ(d.stats().sink_failures, 1u);
}

TEST(AuditTest, FailedResponseEntryIsCountedNeverAnError) {
  RecordingObserver observer;
  AuditDispatcher::Options opts;
  opts.observer = &observer;
  AuditDispatcher d(opts);
  auto sink = std::make_unique<RecordingSink>();
  sink->set_fail_responses(true);
  ASSERT_THAT(d.AddSink(Sink("s", std::move(sink))), IsOk());
  const CallContext caller = CallContext::Root();
  uint64_t id = 0;
  ASSERT_THAT(d.LogRequest(PutEvent(&caller), &id), IsOk());
  d.LogResponse(id, PutEvent(&caller));  // void: cannot turn into an error
  ASSERT_TRUE(d.Flush(absl::Seconds(60)));
  EXPECT_EQ(d.stats().response_failures, 1u);
  EXPECT_EQ(d.stats().requests_refused, 0u);
  ASSERT_EQ(observer.failures().size(), 1u);
  EXPECT_EQ(observer.failures()[0].kind, AuditEntry::Kind::kResponse);
}

// A response entry waits for no one, but it is written even when no other
// request follows (within the sink thread's 20 ms, no Flush needed).
TEST(AuditTest, ResponseEntryIsWrittenWithoutAnotherRequest) {
  AuditDispatcher d({});
  auto sink = std::make_unique<RecordingSink>();
  RecordingSink* rec = sink.get();
  ASSERT_THAT(d.AddSink(Sink("s", std::move(sink))), IsOk());
  const CallContext caller = CallContext::Root();
  uint64_t id = 0;
  ASSERT_THAT(d.LogRequest(PutEvent(&caller), &id), IsOk());
  d.LogResponse(id, PutEvent(&caller));
  ASSERT_TRUE(rec->AwaitEntries(2, absl::Seconds(60)));
  EXPECT_EQ(rec->entries()[1].kind, AuditEntry::Kind::kResponse);
  EXPECT_EQ(rec->entries()[1].id, id);
}

TEST(AuditTest, NoEnabledSinkMeansAuditingIsOff) {
  AuditDispatcher d({});
  const CallContext caller = CallContext::Root();
  EXPECT_FALSE(d.enabled());
  EXPECT_THAT(d.LogRequest(PutEvent(&caller), nullptr), IsOk());
  auto sink = std::make_unique<RecordingSink>();
  sink->set_fail_all(true);
  ASSERT_THAT(d.AddSink(Sink("s", std::move(sink))), IsOk());
  EXPECT_TRUE(d.enabled());
  EXPECT_THAT(d.LogRequest(PutEvent(&caller), nullptr),
              StatusIs(absl::StatusCode::kUnavailable));
  ASSERT_THAT(d.SetEnabled("s", false), IsOk());
  EXPECT_THAT(d.LogRequest(PutEvent(&caller), nullptr), IsOk());
  EXPECT_THAT(d.SetEnabled("nope", false),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST(AuditTest, AddSinkValidates) {
  AuditDispatcher d({});
  EXPECT_THAT(d.AddSink(Sink("x", nullptr)),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(d.AddSink(Sink("", std::make_unique<RecordingSink>())),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(d.AddSink(Sink("x", std::make_unique<RecordingSink>(),
                             absl::ZeroDuration())),
              StatusIs(absl::StatusCode::kInvalidArgument));
  ASSERT_THAT(d.AddSink(Sink("x", std::make_unique<RecordingSink>())), IsOk());
  EXPECT_THAT(d.AddSink(Sink("x", std::make_unique<RecordingSink>())),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(NewFileAuditSink({}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  FileAuditSinkOptions bad;
  bad.path = TempPath("no/such/dir/audit.log");
  EXPECT_THAT(NewFileAuditSink(bad).status(),
              StatusIs(absl::StatusCode::kUnavailable));
}

// Log rotation under load: writers log while the test renames the file and
// reopens the sink again and again. Every entry is in exactly one of the
// files, whole.
TEST(AuditTest, ReopenWhileWritingLosesNoEntry) {
  const std::string path = TempPath("audit-rotate.log");
  std::remove(path.c_str());
  FileAuditSinkOptions fo;
  fo.path = path;
  absl::StatusOr<std::unique_ptr<AuditSink>> file = NewFileAuditSink(fo);
  ASSERT_THAT(file.status(), IsOk());
  AuditDispatcher d({});
  ASSERT_THAT(d.AddSink(Sink("file", *std::move(file))), IsOk());
  const CallContext caller = CallContext::As("w", {"p"});
  constexpr int kThreads = 4;
  constexpr int kPerThread = 500;
  std::atomic<int> refused{0};
  std::atomic<int> running{kThreads};
  std::vector<std::thread> writers;
  for (int t = 0; t < kThreads; ++t) {
    writers.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) {
        if (!d.LogRequest(PutEvent(&caller), nullptr).ok()) ++refused;
      }
      --running;
    });
  }
  std::vector<std::string> files;
  for (int k = 0; running.load() > 0 || k < 3; ++k) {
    const std::string rotated = absl::StrCat(path, ".", k);
    ASSERT_EQ(std::rename(path.c_str(), rotated.c_str()), 0);
    files.push_back(rotated);
    ASSERT_THAT(d.ReopenSinks(), IsOk());
  }
  for (std::thread& t : writers) t.join();
  files.push_back(path);
  EXPECT_EQ(refused.load(), 0);
  std::set<uint64_t> ids;
  size_t lines = 0;
  for (const std::string& f : files) {
    for (const std::string& line : ReadLines(f)) {
      ++lines;
      nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
      ASSERT_FALSE(j.is_discarded()) << f << ": " << line;
      ids.insert(j["id"].get<uint64_t>());
      EXPECT_THAT(line, Not(HasSubstr(kSecret)));
    }
  }
  EXPECT_EQ(lines, size_t{kThreads * kPerThread});
  EXPECT_EQ(ids.size(), size_t{kThreads * kPerThread});
  EXPECT_GE(files.size(), 4u);
}

// A sink that declares itself non-blocking gets its request entries on the
// caller's thread (no hand-off); one write that overruns its timeout (here
// the sink moves the dispatcher's fake clock on) is still accepted, is
// reported, and sends the sink back to its own thread for good.
class NonBlockingSink : public AuditSink {
 public:
  explicit NonBlockingSink(FakeClock* clock) : clock_(clock) {}
  bool blocking() const override { return false; }
  absl::Status Write(const AuditEntry& entry) override {
    MutexLock lock(&mu_);
    if (entry.kind == AuditEntry::Kind::kRequest) {
      request_threads_.push_back(std::this_thread::get_id());
    }
    clock_->Advance(stall_);
    return absl::OkStatus();
  }
  void set_stall(absl::Duration d) {
    MutexLock lock(&mu_);
    stall_ = d;
  }
  std::vector<std::thread::id> request_threads() {
    MutexLock lock(&mu_);
    return request_threads_;
  }

 private:
  FakeClock* const clock_;
  Mutex mu_;
  absl::Duration stall_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread::id> request_threads_ ABSL_GUARDED_BY(mu_);
};

TEST(AuditTest, NonBlockingSinkIsWrittenOnTheCallersThreadUntilItOverruns) {
  FakeClock clock;
  RecordingObserver observer;
  AuditDispatcher::Options opts;
  opts.clock = &clock;
  opts.observer = &observer;
  AuditDispatcher d(opts);
  auto sink = std::make_unique<NonBlockingSink>(&clock);
  NonBlockingSink* s = sink.get();
  ASSERT_THAT(d.AddSink(Sink("nb", std::move(sink), absl::Seconds(1))), IsOk());
  const CallContext caller = CallContext::Root();
  ASSERT_THAT(d.LogRequest(PutEvent(&caller), nullptr), IsOk());
  s->set_stall(absl::Seconds(2));  // over the 1 s timeout
  ASSERT_THAT(d.LogRequest(PutEvent(&caller), nullptr), IsOk());  // accepted
  s->set_stall(absl::ZeroDuration());
  ASSERT_THAT(d.LogRequest(PutEvent(&caller), nullptr), IsOk());
  const std::vector<std::thread::id> threads = s->request_threads();
  ASSERT_EQ(threads.size(), 3u);
  EXPECT_EQ(threads[0], std::this_thread::get_id());
  EXPECT_EQ(threads[1], std::this_thread::get_id());
  EXPECT_NE(threads[2], std::this_thread::get_id());  // the sink's thread
  ASSERT_EQ(observer.failures().size(), 1u);
  EXPECT_EQ(observer.failures()[0].reason, AuditFailure::Reason::kTimedOut);
  EXPECT_EQ(d.stats().sink_timeouts, 1u);
  EXPECT_EQ(d.stats().requests_refused, 0u);
}

TEST(AuditTest, FileSinkIsNonBlockingOnlyWithoutFsync) {
  FileAuditSinkOptions fo;
  fo.path = TempPath("nonblocking.log");
  EXPECT_FALSE((*NewFileAuditSink(fo))->blocking());
  fo.fsync = true;
  EXPECT_TRUE((*NewFileAuditSink(fo))->blocking());
}

// Issue 15 item 5: the entry time is formatted by hand (absl::FormatTime
// cost a time zone lookup and a format parse per entry); it must write
// exactly what FormatTime wrote, across days, leap years, before 1970 and
// at the edges of the fast path.
TEST(AuditTest, EntryTimeIsWrittenExactlyAsFormatTimeWroteIt) {
  std::vector<absl::Time> times = {
      absl::UnixEpoch(),
      absl::FromUnixMicros(-1),
      absl::FromUnixMicros(951782400000000),     // 2000-02-29
      absl::FromUnixMicros(4107542399999999),    // 2100-02-28T23:59:59.999999
      absl::FromUnixMicros(-30610224000000000),  // 1000-01-01
      absl::FromUnixMicros(253402300799999999),  // 9999-12-31T23:59:59.999999
      absl::FromUnixMicros(253402300800000000),  // 10000-01-01 (slow path)
      absl::FromUnixMicros(-30610224000000001),  // 0999-12-31 (slow path)
      absl::FromUnixMicros(-62167219200000000),  // 0000-01-01 (slow path)
      absl::InfiniteFuture(),
      absl::InfinitePast(),
  };
  std::mt19937_64 rng(12345);
  for (int i = 0; i < 20000; ++i) {
    times.push_back(absl::FromUnixMicros(
        static_cast<int64_t>(rng() % 253402300800000000ull) -
        (i % 3 == 0 ? 62167219200000000ll : 0)));
  }
  for (absl::Time t : times) {
    AuditEntry e;
    e.time = t;
    const nlohmann::json j = nlohmann::json::parse(e.ToJsonLine());
    ASSERT_EQ(j["time"].get<std::string>(),
              absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", t, absl::UTCTimeZone()))
        << absl::ToUnixMicros(t);
  }
}

// Records each WriteBatch; non-blocking, so request entries are written on
// the caller's thread; fails on demand.
class BatchRecordingSink : public AuditSink {
 public:
  bool blocking() const override { return false; }
  absl::Status Write(const AuditEntry& entry) override {
    const AuditEntry* one = &entry;
    return WriteBatch({&one, 1});
  }
  absl::Status WriteBatch(
      absl::Span<const AuditEntry* const> entries) override {
    MutexLock lock(&mu_);
    if (fail_) return absl::UnavailableError("injected failure");
    std::vector<AuditEntry::Kind> kinds;
    for (const AuditEntry* e : entries) kinds.push_back(e->kind);
    batches_.push_back(std::move(kinds));
    return absl::OkStatus();
  }
  void set_fail(bool f) {
    MutexLock lock(&mu_);
    fail_ = f;
  }
  std::vector<std::vector<AuditEntry::Kind>> batches() {
    MutexLock lock(&mu_);
    return batches_;
  }

 private:
  Mutex mu_;
  bool fail_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::vector<AuditEntry::Kind>> batches_ ABSL_GUARDED_BY(mu_);
};

// Issue 15 item 5: a request entry written on the caller's thread takes
// the response entries queued before it along, in front of it, in one
// write; a failure of that write counts them as failed response entries;
// Flush still covers everything queued.
TEST(AuditTest, DirectRequestEntryTakesQueuedResponseEntriesAlong) {
  RecordingObserver observer;
  AuditDispatcher::Options opts;
  opts.observer = &observer;
  AuditDispatcher d(opts);
  auto sink = std::make_unique<BatchRecordingSink>();
  BatchRecordingSink* s = sink.get();
  ASSERT_THAT(d.AddSink(Sink("nb", std::move(sink))), IsOk());
  const CallContext caller = CallContext::Root();
  using K = AuditEntry::Kind;
  // Unless the sink's thread took them first (it does so every 20 ms), the
  // two response entries ride with the next request entry.
  for (int attempt = 0;; ++attempt) {
    ASSERT_TRUE(d.Flush(absl::Seconds(30)));
    const size_t before = s->batches().size();
    uint64_t id = 0;
    ASSERT_THAT(d.LogRequest(PutEvent(&caller), &id), IsOk());
    d.LogResponse(id, PutEvent(&caller));
    d.LogResponse(id, PutEvent(&caller));
    ASSERT_THAT(d.LogRequest(PutEvent(&caller), &id), IsOk());
    const std::vector<std::vector<K>> b = s->batches();
    ASSERT_GE(b.size(), before + 2);
    if (b.size() == before + 2) {
      EXPECT_EQ(b[before], std::vector<K>{K::kRequest});
      EXPECT_EQ(b[before + 1],
                (std::vector<K>{K::kResponse, K::kResponse, K::kRequest}));
      break;
    }
    ASSERT_LT(attempt, 100) << "the sink's thread always took them first";
  }
  // A failed write fails its riders too: counted and reported.
  for (int attempt = 0;; ++attempt) {
    ASSERT_TRUE(d.Flush(absl::Seconds(30)));
    const uint64_t failed_before = d.stats().response_failures;
    const size_t batches_before = s->batches().size();
    d.LogResponse(1, PutEvent(&caller));
    s->set_fail(true);
    EXPECT_THAT(d.LogRequest(PutEvent(&caller), nullptr),
                StatusIs(absl::StatusCode::kUnavailable));
    s->set_fail(false);
    if (s->batches().size() == batches_before) {  // it failed
      ASSERT_TRUE(d.Flush(absl::Seconds(30)));
      EXPECT_EQ(d.stats().response_failures, failed_before + 1);
      break;
    }
    ASSERT_LT(attempt, 100) << "the sink's thread always took it first";
  }
  // Flush covers what is queued.
  d.LogResponse(1, PutEvent(&caller));
  ASSERT_TRUE(d.Flush(absl::Seconds(30)));
  EXPECT_EQ(s->batches().back(), std::vector<K>{K::kResponse});
}

}  // namespace
}  // namespace strongbox::audit
