// Transit encryption counting (issue 9 item 13): encryptions are counted per
// key version in storage, in reserved blocks written with the active's
// fence, and the key rotates by itself at the limit. Each test here fails
// on the engine that counted per node in memory and refused at the limit.
#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/store/transit_engine.h"
#include "lib/store/transit_key_cache.h"
#include "lib/store/transit_records.pb.h"
#include "lib/util/mutex.h"
#include "strongbox/barrier.h"
#include "strongbox/in_memory_backend.h"
#include "strongbox/secret_bytes.h"
#include "strongbox/testing/fake_clock.h"
#include "strongbox/testing/fault_injecting_backend.h"
#include "tests/seal/pinned_cpu.h"

namespace strongbox {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
using Code = absl::StatusCode;

std::unique_ptr<Barrier> MakeBarrier(Backend* backend) {
  BarrierOptions options;
  options.backend = backend;
  auto barrier = Barrier::Create(options);
  EXPECT_TRUE(barrier.ok()) << barrier.status();
  return *std::move(barrier);
}

store::Request KeyOp(bool rotate, absl::string_view name) {
  store::Request r;
  (rotate ? r.mutable_transit_rotate_key() : r.mutable_transit_create_key())
      ->set_name(std::string(name));
  return r;
}

// op: 0 encrypt (items are plaintexts), 1 decrypt, 2 rewrap (ciphertexts).
store::Request BatchOp(int op, absl::string_view name,
                       const std::vector<std::string>& items) {
  store::Request r;
  store::TransitBatchRequest* b = op == 0   ? r.mutable_transit_encrypt()
                                  : op == 1 ? r.mutable_transit_decrypt()
                                            : r.mutable_transit_rewrap();
  b->set_name(std::string(name));
  for (const std::string& item : items) {
    if (op == 0) {
      b->add_items()->set_plaintext(item);
    } else {
      b->add_items()->set_ciphertext(item);
    }
  }
  return r;
}

// One shared backend (fault-injecting, on a fake clock); node "a" holds
// the lease. Engines are made per test with small limits.
class TransitCountingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    InMemoryBackendOptions options;
    options.clock = &clock_;
    shared_ = NewInMemoryBackend(options);
    backend_ = std::make_unique<FaultInjectingBackend>(shared_.get(), &clock_);
    barrier_ = MakeBarrier(backend_.get());
    auto shares = barrier_->Initialize(1, 1);
    ASSERT_TRUE(shares.ok()) << shares.status();
    share_ = (*shares)[0];
    ASSERT_TRUE(barrier_->Unseal(share_).ok());
    AcquireOptions acquire;
    acquire.holder = "node-a";
    acquire.ttl = absl::Hours(1);
    auto grant = backend_->ha()->Acquire(acquire);
    ASSERT_TRUE(grant.ok()) << grant.status();
    grant_ = *std::move(grant);
    active_.barrier = barrier_.get();
    active_.write_fence = active_.active_fence = grant_->fence();
    active_.clock = &clock_;
  }
  void TearDown() override { WipeString(share_); }

  static TransitOptions Limits(uint64_t max, uint64_t block) {
    TransitOptions o;
    o.max_encryptions_per_version = max;
    o.encryption_reservation = block;
    return o;
  }

  // Encrypts `n` one-item batches; returns each item's key version (0 for
  // an item or request failure).
  std::vector<uint32_t> EncryptN(TransitEngine& engine, const EngineCall& call,
                                 int n,
                                 std::vector<std::string>* out = nullptr) {
    std::vector<uint32_t> versions;
    for (int i = 0; i < n; ++i) {
      store::Response r;
      absl::Status s =
          engine.Execute(BatchOp(0, "k", {absl::StrCat("p", i)}), call, &r);
      if (!s.ok() || r.transit_batch().items(0).code() != 0) {
        versions.push_back(0);
        continue;
      }
      versions.push_back(r.transit_batch().items(0).key_version());
      if (out != nullptr) {
        out->push_back(r.transit_batch().items(0).ciphertext());
      }
    }
    return versions;
  }

  // The stored record (its key bytes wiped).
  store::TransitKeyRecord Stored() {
    auto entry = barrier_->Get("transit/keys/k");
    EXPECT_TRUE(entry.ok()) << entry.status();
    store::TransitKeyRecord record;
    if (!entry.ok()) return record;
    EXPECT_TRUE(record.ParseFromString(entry->value));
    WipeString(entry->value);
    for (auto& v : *record.mutable_versions()) WipeString(*v.mutable_key());
    return record;
  }
  uint64_t Mark(uint32_t version) {
    store::TransitKeyRecord record = Stored();
    if (version == 0 || version > static_cast<uint32_t>(record.versions_size()))
      return 0;
    return record.versions(version - 1).reserved_encryptions();
  }
  uint64_t RecordVersion() { return shared_->Get("transit/keys/k")->version; }

  // Encrypts two-item batches from four threads, `per_thread` batches
  // each, on an engine with these limits; checks every encryption is
  // within its version's stored mark, at least `min_latest` versions were
  // made, and every ciphertext opens.
  void ConcurrentBatches(uint64_t max, uint64_t block, int per_thread,
                         uint32_t min_latest);
  // The same with one-item encrypts (ExecuteOne, SecretStore's direct
  // path): four threads, `per_thread` calls each.
  void ConcurrentOneItemCalls(uint64_t max, uint64_t block, int per_thread,
                              uint32_t min_latest);

  // Checks each version's count of encryptions against its stored mark
  // (itself at most `limit`); returns the total.
  int CountWithinMarks(const std::map<uint32_t, int>& per_version,
                       uint64_t limit) {
    store::TransitKeyRecord record = Stored();
    int total = 0;
    for (const auto& [version, count] : per_version) {
      if (version == 0 ||
          version > static_cast<uint32_t>(record.versions_size())) {
        ADD_FAILURE() << "version " << version << " is not stored";
        continue;
      }
      const uint64_t mark = record.versions(version - 1).reserved_encryptions();
      EXPECT_LE(static_cast<uint64_t>(count), mark) << "version " << version;
      EXPECT_LE(mark, limit);
      total += count;
    }
    return total;
  }

  FakeClock clock_;
  std::unique_ptr<Backend> shared_;
  std::unique_ptr<FaultInjectingBackend> backend_;
  std::unique_ptr<Barrier> barrier_;
  std::string share_;
  std::unique_ptr<LeadershipGrant> grant_;
  EngineCall active_;
};

using V = std::vector<uint32_t>;

// A restart (a new engine, a new barrier) does not reset the count: the new
// engine continues above the stored mark, and the key rotates once the
// cluster-wide count reaches the limit.
TEST_F(TransitCountingTest, RestartContinuesAboveTheStoredMark) {
  {
    TransitEngine first(Limits(6, 2));
    store::Response r;
    ASSERT_TRUE(first.Execute(KeyOp(false, "k"), active_, &r).ok());
    EXPECT_EQ(Mark(1), 2u);  // created with its first block
    EXPECT_EQ(EncryptN(first, active_, 4), (V{1, 1, 1, 1}));
    EXPECT_EQ(Mark(1), 4u);
  }
  // The process restarts: new barrier, new engine, same storage.
  std::unique_ptr<Barrier> barrier = MakeBarrier(backend_.get());
  ASSERT_TRUE(barrier->Unseal(share_).ok());
  EngineCall call = active_;
  call.barrier = barrier.get();
  TransitEngine second(Limits(6, 2));
  // 4 + 2 = 6 under version 1, then version 2.
  EXPECT_EQ(EncryptN(second, call, 3), (V{1, 1, 2}));
  EXPECT_EQ(Mark(1), 6u);
  EXPECT_EQ(Mark(2), 2u);
  EXPECT_EQ(Stored().latest_version(), 2u);
}

// A crash loses at most the unused rest of one block, and never
// under-counts: after each crash the next engine reserves exactly one
// block above the mark the crashed one stored.
TEST_F(TransitCountingTest, CrashLosesAtMostOneBlock) {
  TransitOptions limits = Limits(1000, 10);
  {
    TransitEngine engine(limits);
    store::Response r;
    ASSERT_TRUE(engine.Execute(KeyOp(false, "k"), active_, &r).ok());
  }
  uint64_t made = 0;
  for (int crash = 0; crash < 5; ++crash) {
    const uint64_t before = Mark(1);
    TransitEngine engine(limits);  // each one "crashes" at scope end
    const int n = 1 + crash * 3;   // 1, 4, 7, 10, 13 encryptions
    EXPECT_EQ(EncryptN(engine, active_, n), V(n, 1u));
    made += n;
    const uint64_t after = Mark(1);
    EXPECT_GE(after, made) << "the stored count under-counts";
    // One block per 10 encryptions made, at most one more skipped.
    EXPECT_LE(after - before, ((n + 9) / 10) * 10u) << "crash " << crash;
    EXPECT_GE(after - before, static_cast<uint64_t>(n));
  }
}

// At the limit the key rotates by itself; ciphertexts name the new
// version, and old ciphertexts still decrypt. Rewrap counts too.
TEST_F(TransitCountingTest, RotatesAtTheLimit) {
  TransitEngine engine(Limits(3, 100));  // the block is capped at 3
  store::Response r;
  ASSERT_TRUE(engine.Execute(KeyOp(false, "k"), active_, &r).ok());
  EXPECT_EQ(Mark(1), 3u);
  std::vector<std::string> cts;
  r.Clear();
  ASSERT_TRUE(engine
                  .Execute(BatchOp(0, "k", {"a", "b", "c", "d", "e", "f", "g"}),
                           active_, &r)
                  .ok());
  V versions;
  for (const auto& item : r.transit_batch().items()) {
    EXPECT_EQ(item.code(), 0) << item.error();
    versions.push_back(item.key_version());
    cts.push_back(item.ciphertext());
  }
  EXPECT_EQ(versions, (V{1, 1, 1, 2, 2, 2, 3}));
  EXPECT_THAT(cts[3], StartsWith("strongbox:v2:"));
  EXPECT_THAT(cts[6], StartsWith("strongbox:v3:"));
  EXPECT_EQ(Stored().latest_version(), 3u);
  EXPECT_EQ(Mark(1), 3u);
  EXPECT_EQ(Mark(2), 3u);
  EXPECT_EQ(Mark(3), 3u);  // rotated with its first block stored

  // Two rewraps: the third version's block has two left.
  r.Clear();
  ASSERT_TRUE(
      engine.Execute(BatchOp(2, "k", {cts[0], cts[1], cts[2]}), active_, &r)
          .ok());
  versions.clear();
  for (const auto& item : r.transit_batch().items()) {
    EXPECT_EQ(item.code(), 0) << item.error();
    versions.push_back(item.key_version());
  }
  EXPECT_EQ(versions, (V{3, 3, 4}));

  // Every old ciphertext still opens.
  r.Clear();
  ASSERT_TRUE(engine.Execute(BatchOp(1, "k", cts), active_, &r).ok());
  const char* want[] = {"a", "b", "c", "d", "e", "f", "g"};
  for (int i = 0; i < 7; ++i) {
    EXPECT_EQ(r.transit_batch().items(i).code(), 0) << i;
    EXPECT_EQ(r.transit_batch().items(i).plaintext(), want[i]) << i;
  }
}

// Rotation impossible (here: switched off): a clear FAILED_PRECONDITION,
// nothing sealed past the limit; a manual rotation starts a new count.
TEST_F(TransitCountingTest, RefusesAtTheLimitWhenRotationIsOff) {
  TransitOptions o = Limits(2, 2);
  o.rotate_at_limit = false;
  TransitEngine engine(o);
  store::Response r;
  ASSERT_TRUE(engine.Execute(KeyOp(false, "k"), active_, &r).ok());
  EXPECT_EQ(EncryptN(engine, active_, 2), (V{1, 1}));
  r.Clear();
  absl::Status s = engine.Execute(BatchOp(0, "k", {"x"}), active_, &r);
  EXPECT_EQ(s.code(), Code::kFailedPrecondition);
  EXPECT_THAT(s.message(),
              HasSubstr("version 1 reached its limit of 2 encryptions; "
                        "rotate the key"));
  EXPECT_FALSE(r.has_transit_batch());
  EXPECT_EQ(Stored().latest_version(), 1u);
  r.Clear();
  ASSERT_TRUE(engine.Execute(KeyOp(true, "k"), active_, &r).ok());
  EXPECT_EQ(EncryptN(engine, active_, 2), (V{2, 2}));
}

// A record stored before counting existed has no mark: its count is
// unknown, so it counts as used up and the first encryption rotates.
TEST_F(TransitCountingTest, RecordWithoutACountRotatesFirst) {
  TransitEngine engine(Limits(1000, 10));
  store::Response r;
  ASSERT_TRUE(engine.Execute(KeyOp(false, "k"), active_, &r).ok());
  std::vector<std::string> old_cts;
  EXPECT_EQ(EncryptN(engine, active_, 1, &old_cts), (V{1}));
  // Rewrite the record as an old build stored it (no reserved_encryptions).
  {
    auto entry = barrier_->Get("transit/keys/k");
    ASSERT_TRUE(entry.ok());
    store::TransitKeyRecord record;
    ASSERT_TRUE(record.ParseFromString(entry->value));
    WipeString(entry->value);
    for (auto& v : *record.mutable_versions()) v.clear_reserved_encryptions();
    std::string bytes = record.SerializeAsString();
    for (auto& v : *record.mutable_versions()) WipeString(*v.mutable_key());
    ASSERT_TRUE(barrier_->Put("transit/keys/k", bytes, grant_->fence()).ok());
    WipeString(bytes);
  }
  TransitEngine upgraded(Limits(1000, 10));
  EXPECT_EQ(EncryptN(upgraded, active_, 2), (V{2, 2}));
  EXPECT_FALSE(Stored().versions(0).has_reserved_encryptions());
  EXPECT_EQ(Mark(2), 10u);
  r.Clear();
  ASSERT_TRUE(upgraded.Execute(BatchOp(1, "k", old_cts), active_, &r).ok());
  EXPECT_EQ(r.transit_batch().items(0).plaintext(), "p0");
  // Without automatic rotation it is refused, naming why.
  TransitOptions o = Limits(1000, 10);
  o.rotate_at_limit = false;
  {
    auto entry = barrier_->Get("transit/keys/k");
    ASSERT_TRUE(entry.ok());
    store::TransitKeyRecord record;
    ASSERT_TRUE(record.ParseFromString(entry->value));
    WipeString(entry->value);
    record.mutable_versions(1)->clear_reserved_encryptions();
    std::string bytes = record.SerializeAsString();
    for (auto& v : *record.mutable_versions()) WipeString(*v.mutable_key());
    ASSERT_TRUE(barrier_->Put("transit/keys/k", bytes, grant_->fence()).ok());
    WipeString(bytes);
  }
  TransitEngine strict(o);
  r.Clear();
  absl::Status s = strict.Execute(BatchOp(0, "k", {"x"}), active_, &r);
  EXPECT_EQ(s.code(), Code::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("has no stored encryption count"));
}

// A node that cannot write (a standby: no fence) never encrypts, and
// changes nothing.
TEST_F(TransitCountingTest, StandbyWithoutAReservationRefuses) {
  TransitEngine active(Limits(1000, 10));
  store::Response r;
  ASSERT_TRUE(active.Execute(KeyOp(false, "k"), active_, &r).ok());
  const uint64_t version = RecordVersion();
  std::unique_ptr<Barrier> barrier = MakeBarrier(backend_.get());
  ASSERT_TRUE(barrier->Unseal(share_).ok());
  EngineCall standby;
  standby.barrier = barrier.get();
  standby.clock = &clock_;
  TransitEngine engine(Limits(1000, 10));
  for (int op : {0, 2}) {
    r.Clear();
    std::vector<std::string> cts;
    EXPECT_EQ(EncryptN(active, active_, 1, &cts), (V{1}));
    absl::Status s = engine.Execute(
        BatchOp(op, "k", {op == 0 ? std::string("x") : cts[0]}), standby, &r);
    EXPECT_EQ(s.code(), Code::kUnavailable) << op;
    EXPECT_THAT(s.message(), HasSubstr("encrypt on the active node"));
    EXPECT_FALSE(r.has_transit_batch());
    // Decrypt is served.
    r.Clear();
    ASSERT_TRUE(engine.Execute(BatchOp(1, "k", cts), standby, &r).ok());
    EXPECT_EQ(r.transit_batch().items(0).plaintext(), "p0");
  }
  EXPECT_EQ(RecordVersion(), version) << "the standby wrote";
}

// A deposed active cannot reserve: its reservation write carries a stale
// fence and is refused by the backend (nothing stored, nothing sealed). It
// seals only inside the block it stored while it led.
TEST_F(TransitCountingTest, DeposedActiveReservationRefusedByFence) {
  TransitEngine engine(Limits(1000, 3));
  store::Response r;
  ASSERT_TRUE(engine.Execute(KeyOp(false, "k"), active_, &r).ok());
  EXPECT_EQ(EncryptN(engine, active_, 1), (V{1}));
  ASSERT_TRUE(backend_->ha()->BreakLease(grant_->fence()).ok());
  AcquireOptions acquire;
  acquire.holder = "node-b";
  acquire.ttl = absl::Hours(1);
  auto grant_b = backend_->ha()->Acquire(acquire);
  ASSERT_TRUE(grant_b.ok());
  const uint64_t version = RecordVersion();
  // The rest of its stored block (2 of 3)...
  EXPECT_EQ(EncryptN(engine, active_, 2), (V{1, 1}));
  // ...then the next block's write is refused.
  r.Clear();
  absl::Status s = engine.Execute(BatchOp(0, "k", {"x"}), active_, &r);
  EXPECT_EQ(s.code(), Code::kFailedPrecondition) << s;
  EXPECT_TRUE(IsStaleFence(s)) << s;
  EXPECT_FALSE(r.has_transit_batch());
  EXPECT_EQ(RecordVersion(), version);
  EXPECT_EQ(Mark(1), 3u);
  // The successor continues above the deposed node's mark.
  EngineCall b = active_;
  b.write_fence = b.active_fence = (*grant_b)->fence();
  TransitEngine successor(Limits(1000, 3));
  EXPECT_EQ(EncryptN(successor, b, 1), (V{1}));
  EXPECT_EQ(Mark(1), 6u);
}

// A backend failure, or an unknown outcome, while storing a reservation:
// UNAVAILABLE, and nothing is sealed (no ciphertext in the response, even
// for items before the one that needed the block).
TEST_F(TransitCountingTest, ReservationFailureIsUnavailableAndSealsNothing) {
  TransitEngine engine(Limits(1000, 2));
  store::Response r;
  ASSERT_TRUE(engine.Execute(KeyOp(false, "k"), active_, &r).ok());
  EXPECT_EQ(EncryptN(engine, active_, 1), (V{1}));  // one of 2 left
  const uint64_t version = RecordVersion();

  backend_->FailNext(1, absl::UnavailableError("backend down"),
                     FaultInjectingBackend::kCommit);
  r.Clear();
  absl::Status s = engine.Execute(BatchOp(0, "k", {"a", "b"}), active_, &r);
  EXPECT_EQ(s.code(), Code::kUnavailable);
  EXPECT_THAT(s.message(), HasSubstr("could not reserve encryptions"));
  EXPECT_THAT(s.message(), HasSubstr("nothing was sealed"));
  EXPECT_FALSE(r.has_transit_batch());
  EXPECT_EQ(RecordVersion(), version);
  EXPECT_EQ(Mark(1), 2u);

  // The backend read fails.
  backend_->FailNext(1, absl::UnavailableError("backend down"),
                     FaultInjectingBackend::kGet);
  r.Clear();
  s = engine.Execute(BatchOp(0, "k", {"c"}), active_, &r);
  EXPECT_EQ(s.code(), Code::kUnavailable);
  EXPECT_FALSE(r.has_transit_batch());

  // Unknown outcome: the write applied, its answer was lost. The block is
  // not used (a stored block only skips encryptions).
  backend_->Clear();
  backend_->LoseNextCommitAcks(1);
  r.Clear();
  s = engine.Execute(BatchOp(0, "k", {"d"}), active_, &r);
  EXPECT_EQ(s.code(), Code::kUnavailable);
  EXPECT_THAT(s.message(), HasSubstr("could not reserve encryptions"));
  EXPECT_FALSE(r.has_transit_batch());
  EXPECT_EQ(Mark(1), 4u);
  backend_->Clear();
  EXPECT_EQ(EncryptN(engine, active_, 1), (V{1}));
  EXPECT_EQ(Mark(1), 6u) << "an unconfirmed block was reused";
}

// Many threads encrypting on the active while blocks run out and the key
// rotates: no version ever seals more values than its stored mark, and
// every ciphertext opens. Run under TSan by tools/test.
TEST_F(TransitCountingTest, ConcurrentEncryptionsStayWithinTheStoredMarks) {
  ConcurrentBatches(40, 3, 60, 12);  // 480 / 40
}

// The same with blocks of 14,000: claims are taken three at a time and kept
// as per-CPU credits (VersionUsage::Claim), and no block is a multiple of
// three.
TEST_F(TransitCountingTest,
       ConcurrentBatchesWithBatchedClaimsStayWithinTheMarks) {
  ConcurrentBatches(20000, 14000, 3000, 2);
}

void TransitCountingTest::ConcurrentBatches(uint64_t max, uint64_t block,
                                            int per_thread,
                                            uint32_t min_latest) {
  TransitEngine engine(Limits(max, block));
  store::Response r;
  ASSERT_TRUE(engine.Execute(KeyOp(false, "k"), active_, &r).ok());
  constexpr int kThreads = 4;
  const int kPerThread = per_thread;
  Mutex mu;
  std::map<uint32_t, int> per_version;  // guarded by mu
  std::vector<std::string> cts;         // guarded by mu
  std::atomic<int> failures{0};
  std::atomic<int> retried{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        store::Response out;
        // Two items per request: a batch may cross a block or a rotation.
        // UNAVAILABLE means "retry" (DESIGN's status codes): with blocks of
        // 3 and four threads, a request can lose its claim rounds to the
        // others; a client retries it, and so does this one.
        absl::Status s;
        for (int round = 0; round < 50; ++round) {
          out.Clear();
          s = engine.Execute(BatchOp(0, "k", {absl::StrCat(t, "-", i), "y"}),
                             active_, &out);
          if (s.code() != absl::StatusCode::kUnavailable) break;
          ++retried;
        }
        if (!s.ok()) {
          ++failures;
          ADD_FAILURE() << s;
          continue;
        }
        MutexLock lock(&mu);
        for (const auto& item : out.transit_batch().items()) {
          if (item.code() != 0) {
            ++failures;
            continue;
          }
          ++per_version[item.key_version()];
          cts.push_back(item.ciphertext());
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  RecordProperty("retried_unavailable", retried.load());
  MutexLock lock(&mu);
  const int total = CountWithinMarks(per_version, max);
  store::TransitKeyRecord record = Stored();
  EXPECT_EQ(total, kThreads * kPerThread * 2);
  EXPECT_GE(record.latest_version(), min_latest);
  // Every ciphertext opens.
  for (size_t i = 0; i < cts.size(); i += 50) {
    std::vector<std::string> chunk(cts.begin() + i,
                                   cts.begin() + std::min(cts.size(), i + 50));
    store::Response out;
    ASSERT_TRUE(engine.Execute(BatchOp(1, "k", chunk), active_, &out).ok());
    for (const auto& item : out.transit_batch().items()) {
      EXPECT_EQ(item.code(), 0) << item.error();
    }
  }
}

// ExecuteOne (SecretStore's direct path for one item) serves a trusted key
// and a claim from the reserved block without a counted reference to the
// key; a used-up block, a rotation and a refusal go through the same
// path as a batch. It counts exactly as batches do.

// The key version a ciphertext names ("strongbox:v<N>:..."), 0 if none.
uint32_t VersionOf(absl::string_view ciphertext) {
  constexpr absl::string_view kPrefix = "strongbox:v";
  if (!absl::ConsumePrefix(&ciphertext, kPrefix)) return 0;
  uint32_t version = 0;
  const size_t colon = ciphertext.find(':');
  if (colon == absl::string_view::npos ||
      !absl::SimpleAtoi(ciphertext.substr(0, colon), &version)) {
    return 0;
  }
  return version;
}

// One item through ExecuteOne: the ciphertext's version (0 on failure;
// *status gets the request's or the item's failure).
uint32_t EncryptOne(TransitEngine& engine, const EngineCall& call,
                    absl::string_view plaintext, std::string* ciphertext,
                    absl::Status* status) {
  absl::Status item;
  *status = engine.ExecuteOne(store::Request::kTransitEncrypt, "k", plaintext,
                              "", call, ciphertext, &item);
  if (status->ok()) *status = item;
  return status->ok() ? VersionOf(*ciphertext) : 0;
}

TEST_F(TransitCountingTest, SingleItemCallsRotateAtTheLimitAsBatchesDo) {
  TransitEngine engine(Limits(3, 100));  // the block is capped at 3
  store::Response r;
  ASSERT_TRUE(engine.Execute(KeyOp(false, "k"), active_, &r).ok());
  std::vector<std::string> cts;
  V versions;
  const uint64_t served_before =
      transit::TransitKeyCache::ServedOnThisThreadForTesting();
  for (const char* p : {"a", "b", "c", "d", "e", "f", "g"}) {
    std::string ct;
    absl::Status s;
    versions.push_back(EncryptOne(engine, active_, p, &ct, &s));
    EXPECT_TRUE(s.ok()) << s;
    cts.push_back(ct);
  }
  EXPECT_EQ(versions, (V{1, 1, 1, 2, 2, 2, 3}));
  EXPECT_EQ(Mark(1), 3u);
  EXPECT_EQ(Mark(2), 3u);
  EXPECT_EQ(Mark(3), 3u);
  // The uncounted path served the calls with a claim left in a trusted
  // entry: at least the second and third of each version's three.
  EXPECT_GE(
      transit::TransitKeyCache::ServedOnThisThreadForTesting() - served_before,
      4u);
  // An input above the uncounted path's bound takes the counted one, and
  // counts the same (the third version's block has two left).
  const uint64_t served_small =
      transit::TransitKeyCache::ServedOnThisThreadForTesting();
  std::string big_ct;
  absl::Status big;
  EXPECT_EQ(EncryptOne(engine, active_, std::string(5000, 'x'), &big_ct, &big),
            3u);
  EXPECT_TRUE(big.ok()) << big;
  EXPECT_EQ(transit::TransitKeyCache::ServedOnThisThreadForTesting(),
            served_small);
  std::string big_plain;
  absl::Status big_item;
  ASSERT_TRUE(engine
                  .ExecuteOne(store::Request::kTransitDecrypt, "k", big_ct, "",
                              active_, &big_plain, &big_item)
                  .ok());
  EXPECT_TRUE(big_item.ok()) << big_item;
  EXPECT_EQ(big_plain, std::string(5000, 'x'));
  EXPECT_EQ(transit::TransitKeyCache::ServedOnThisThreadForTesting(),
            served_small);
  const char* want[] = {"a", "b", "c", "d", "e", "f", "g"};
  for (int i = 0; i < 7; ++i) {
    std::string plain;
    absl::Status item;
    ASSERT_TRUE(engine
                    .ExecuteOne(store::Request::kTransitDecrypt, "k", cts[i],
                                "", active_, &plain, &item)
                    .ok());
    EXPECT_TRUE(item.ok()) << item;
    EXPECT_EQ(plain, want[i]);
  }
  // A tampered ciphertext is the item's failure, with nothing handed out.
  std::string bad = cts[0];
  bad.back() = bad.back() == 'A' ? 'B' : 'A';
  std::string plain = "left over";
  absl::Status item;
  ASSERT_TRUE(engine
                  .ExecuteOne(store::Request::kTransitDecrypt, "k", bad, "",
                              active_, &plain, &item)
                  .ok());
  EXPECT_EQ(item.code(), Code::kInvalidArgument) << item;
  EXPECT_TRUE(plain.empty());
}

TEST_F(TransitCountingTest, SingleItemCallsRefuseAtTheLimitAsBatchesDo) {
  TransitOptions o = Limits(2, 2);
  o.rotate_at_limit = false;
  TransitEngine engine(o);
  store::Response r;
  ASSERT_TRUE(engine.Execute(KeyOp(false, "k"), active_, &r).ok());
  std::string ct;
  absl::Status s;
  EXPECT_EQ(EncryptOne(engine, active_, "x", &ct, &s), 1u);
  EXPECT_EQ(EncryptOne(engine, active_, "y", &ct, &s), 1u);
  EXPECT_EQ(EncryptOne(engine, active_, "z", &ct, &s), 0u);
  EXPECT_EQ(s.code(), Code::kFailedPrecondition);
  EXPECT_THAT(s.message(),
              HasSubstr("version 1 reached its limit of 2 encryptions; "
                        "rotate the key"));
  EXPECT_TRUE(ct.empty());
  EXPECT_EQ(Stored().latest_version(), 1u);
}

// One-item encrypts from `threads` threads, `per_thread` each (UNAVAILABLE
// retried, as a host would); returns the count per key version.
std::map<uint32_t, int> EncryptConcurrently(TransitEngine& engine,
                                            const EngineCall& call, int threads,
                                            int per_thread) {
  Mutex mu;
  std::map<uint32_t, int> per_version;  // guarded by mu
  std::vector<std::thread> running;
  for (int t = 0; t < threads; ++t) {
    running.emplace_back([&, t] {
      for (int i = 0; i < per_thread; ++i) {
        std::string ct;
        absl::Status s;
        uint32_t version = 0;
        // UNAVAILABLE means "retry" (see the batch test above).
        for (int round = 0; round < 50; ++round) {
          version = EncryptOne(engine, call, absl::StrCat(t, "-", i), &ct, &s);
          if (s.code() != Code::kUnavailable) break;
        }
        if (version == 0) {
          ADD_FAILURE() << s;
          continue;
        }
        MutexLock lock(&mu);
        ++per_version[version];
      }
    });
  }
  for (auto& t : running) t.join();
  MutexLock lock(&mu);
  return per_version;
}

void TransitCountingTest::ConcurrentOneItemCalls(uint64_t max, uint64_t block,
                                                 int per_thread,
                                                 uint32_t min_latest) {
  TransitEngine engine(Limits(max, block));
  store::Response r;
  ASSERT_TRUE(engine.Execute(KeyOp(false, "k"), active_, &r).ok());
  const std::map<uint32_t, int> per_version =
      EncryptConcurrently(engine, active_, 4, per_thread);
  const int total = CountWithinMarks(per_version, max);
  EXPECT_EQ(total, 4 * per_thread);
  EXPECT_GE(Stored().latest_version(), min_latest);
}

TEST_F(TransitCountingTest, ConcurrentSingleItemCallsStayWithinTheMarks) {
  ConcurrentOneItemCalls(40, 3, 120, 12);  // 480 / 40
}

// Blocks of 14,000: claims are taken three at a time and kept as per-CPU
// credits (VersionUsage::Claim), and no block is a multiple of three.
// Every encryption is still within its version's stored mark, across
// rotations.
TEST_F(TransitCountingTest, BatchedClaimsStayWithinTheMarks) {
  ConcurrentOneItemCalls(20000, 14000, 6000, 2);
}

// Claims in batches, on one CPU: exactly the block, never more, and a new
// block adopted as Reserve adopts it (`used` raised first) is claimed in
// full too.
TEST(VersionUsageTest, BatchedClaimsOnOneCpuMakeExactlyTheBlock) {
  PinnedToThisCpu pin;
  if (!pin.pinned()) GTEST_SKIP() << "cannot pin this thread to one CPU";
  for (const uint64_t batch : {1, 2, 64, 1000, 5000}) {
    transit::VersionUsage usage;
    usage.reserved.store(1000);
    int claims = 0;
    while (usage.Claim(batch)) ++claims;
    EXPECT_EQ(claims, 1000) << batch;
    EXPECT_EQ(usage.used.load(), 1000u) << batch;
    usage.used.store(3000);
    usage.reserved.store(3500);
    claims = 0;
    while (usage.Claim(batch)) ++claims;
    EXPECT_EQ(claims, 500) << batch;
  }
}

// Claims from four threads while blocks of 250 (not a multiple of the
// batch) are adopted as Reserve adopts them: `used` never passes the
// block's end, and the claims made are at most the last block's end.
TEST(VersionUsageTest, ConcurrentBatchedClaimsStayWithinTheBlocks) {
  constexpr uint64_t kBlock = 250;
  transit::VersionUsage usage;
  usage.reserved.store(kBlock);
  std::atomic<int> claims{0};
  std::atomic<bool> overrun{false};
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      while (!stop.load()) {
        if (usage.Claim(16)) ++claims;
        if (usage.used.load() > usage.reserved.load()) overrun = true;
      }
    });
  }
  // Each block is adopted once the last is (nearly) used up: what is left
  // sits in credits, which the threads spend as they run on each CPU.
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  uint64_t end = kBlock;
  for (int b = 0; b < 20 && absl::Now() < deadline; ++b) {
    while (usage.used.load() < end && absl::Now() < deadline) {
      std::this_thread::yield();
    }
    usage.used.store(end);
    usage.reserved.store(end + kBlock);
    end += kBlock;
  }
  while (usage.used.load() < end && absl::Now() < deadline) {
    std::this_thread::yield();
  }
  stop.store(true);
  for (auto& t : threads) t.join();
  ASSERT_LT(absl::Now(), deadline) << "claims stopped short of the blocks";
  EXPECT_FALSE(overrun.load());
  EXPECT_EQ(usage.used.load(), end);
  EXPECT_LE(claims.load(), static_cast<int>(end));
}

// A new record of the same latest version (a config write) keeps the
// version's usage: the block reserved at create still serves, and no
// second block is stored.
TEST_F(TransitCountingTest, NewRecordsOfTheLatestVersionKeepItsBlock) {
  TransitEngine engine(Limits(1000, 100));
  store::Response r;
  ASSERT_TRUE(engine.Execute(KeyOp(false, "k"), active_, &r).ok());
  EXPECT_EQ(EncryptN(engine, active_, 1), (V{1}));
  for (const bool allowed : {true, false}) {
    store::Request config;
    config.mutable_transit_config_key()->set_name("k");
    config.mutable_transit_config_key()->set_deletion_allowed(allowed);
    ASSERT_TRUE(engine.Execute(config, active_, &r).ok());
  }
  EXPECT_EQ(EncryptN(engine, active_, 10), V(10, 1));
  EXPECT_EQ(Mark(1), 100u);
}

}  // namespace
}  // namespace strongbox
