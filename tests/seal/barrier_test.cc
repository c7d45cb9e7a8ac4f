#include "strongbox/barrier.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/crypto/aead.h"
#include "lib/crypto/secure_memory.h"
#include "lib/seal/barrier_impl.h"
#include "strongbox/in_memory_backend.h"
#include "strongbox/secret_bytes.h"
#include "strongbox/testing/fake_clock.h"
#include "strongbox/testing/fault_injecting_backend.h"
#include "strongbox/testing/secret_bytes_wipe_observer.h"
#include "strongbox/testing/status_matchers.h"

namespace strongbox {
namespace {

using ::strongbox_testing::IsOkAndHolds;
using ::strongbox_testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using Code = absl::StatusCode;

// The in-memory backend without its HA capability. On a backend with HA the
// barrier refuses unfenced writes (HaBackendRequiresAFence below), so tests
// that are not about fencing use this one and write without a fence.
class NoHaBackend : public BackendWrapper {
 public:
  explicit NoHaBackend(std::unique_ptr<Backend> target)
      : BackendWrapper(target.get()), owned_(std::move(target)) {}
  HaBackend* ha() override { return nullptr; }

 private:
  std::unique_ptr<Backend> owned_;
};

std::unique_ptr<Backend> NewTestBackend() {
  return std::make_unique<NoHaBackend>(NewInMemoryBackend());
}

std::unique_ptr<Barrier> MakeBarrier(Backend* backend) {
  BarrierOptions options;
  options.backend = backend;
  auto barrier = Barrier::Create(options);
  EXPECT_OK(barrier);
  return *std::move(barrier);
}

// Every status message seen by the test, to check none leaks secrets.
class BarrierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    backend_ = NewTestBackend();
    barrier_ = MakeBarrier(backend_.get());
  }

  std::vector<std::string> InitAndUnseal(Barrier* barrier, int shares = 5,
                                         int threshold = 3) {
    auto out = barrier->Initialize(shares, threshold);
    EXPECT_OK(out);
    if (!out.ok()) return {};
    EXPECT_TRUE(barrier->sealed());
    Unseal(barrier, *out, threshold);
    return *out;
  }

  void Unseal(Barrier* barrier, const std::vector<std::string>& shares,
              int threshold) {
    for (int i = 0; i < threshold; ++i) {
      auto status = barrier->Unseal(shares[i]);
      ASSERT_OK(status);
      if (i + 1 < threshold) {
        EXPECT_TRUE(status->sealed);
        EXPECT_EQ(status->progress, i + 1);
      } else {
        EXPECT_FALSE(status->sealed);
        EXPECT_EQ(status->progress, 0);
      }
    }
    EXPECT_FALSE(barrier->sealed());
  }

  std::unique_ptr<Backend> backend_;
  std::unique_ptr<Barrier> barrier_;
};

// ---------------------------------------------------------------- create

// The barrier reads the wall time only through BarrierOptions::clock: the
// creation dates stored with the key terms are the fake clock's.
TEST(BarrierClockTest, KeyTermDatesComeFromTheInjectedClock) {
  const absl::Time start = absl::FromUnixSeconds(946684800);  // 2000-01-01
  FakeClock clock(start);
  std::unique_ptr<Backend> backend = NewTestBackend();
  BarrierOptions options;
  options.backend = backend.get();
  options.clock = &clock;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Barrier> barrier,
                       Barrier::Create(options));
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> shares,
                       barrier->Initialize(1, 1));
  ASSERT_OK(barrier->Unseal(shares[0]));
  clock.Advance(absl::Hours(1));
  ASSERT_OK_AND_ASSIGN(uint32_t term, barrier->Rotate());
  EXPECT_EQ(term, 2u);
  std::vector<std::pair<uint32_t, int64_t>> dates =
      BarrierTestPeer::impl(*barrier)->TermCreationForTesting();
  std::sort(dates.begin(), dates.end());
  EXPECT_THAT(dates,
              ElementsAre(std::make_pair(1u, absl::ToUnixMicros(start)),
                          std::make_pair(
                              2u, absl::ToUnixMicros(start + absl::Hours(1)))));
}

TEST(BarrierCreateTest, ValidatesOptions) {
  EXPECT_THAT(Barrier::Create(BarrierOptions{}),
              StatusIs(Code::kInvalidArgument));
  auto backend = NewInMemoryBackend();
  for (const char* prefix : {"", "core", "/core/", "a//b/"}) {
    BarrierOptions options;
    options.backend = backend.get();
    options.core_prefix = prefix;
    EXPECT_THAT(Barrier::Create(options), StatusIs(Code::kInvalidArgument))
        << prefix;
  }
  BarrierOptions options;
  options.backend = backend.get();
  options.core_prefix = "sys/seal/";
  auto barrier = Barrier::Create(options);
  ASSERT_OK(barrier);
  EXPECT_TRUE((*barrier)->sealed());
  EXPECT_EQ((*barrier)->backend(), backend.get());
}

// ------------------------------------------------------------ initialize

TEST_F(BarrierTest, StatusBeforeInitialize) {
  auto status = barrier_->Status();
  ASSERT_OK(status);
  EXPECT_FALSE(status->initialized);
  EXPECT_TRUE(status->sealed);
  EXPECT_THAT(barrier_->Unseal(std::string(33, 'x')),
              StatusIs(Code::kFailedPrecondition));
  EXPECT_THAT(barrier_->Get("a"), StatusIs(Code::kFailedPrecondition));
}

TEST_F(BarrierTest, InitializeLeavesSealedAndReturnsShares) {
  auto shares = barrier_->Initialize(5, 3);
  ASSERT_OK(shares);
  ASSERT_EQ(shares->size(), 5u);
  for (const std::string& s : *shares) EXPECT_EQ(s.size(), 33u);
  EXPECT_TRUE(barrier_->sealed());
  auto status = barrier_->Status();
  ASSERT_OK(status);
  EXPECT_TRUE(status->initialized);
  EXPECT_TRUE(status->sealed);
  EXPECT_EQ(status->shares, 5);
  EXPECT_EQ(status->threshold, 3);
  EXPECT_EQ(status->progress, 0);
  EXPECT_EQ(status->term, 0u);
  // Stored records live under core/ and contain no share bytes.
  auto children = backend_->List("core/");
  ASSERT_OK(children);
  EXPECT_THAT(*children, ElementsAre("keyring", "root-key", "seal-config"));
  for (const std::string& child : *children) {
    auto e = backend_->Get("core/" + child);
    ASSERT_OK(e);
    for (const std::string& s : *shares) {
      EXPECT_EQ(e->value.find(s), std::string::npos);
    }
  }
}

TEST_F(BarrierTest, SecondInitializeFails) {
  ASSERT_OK(barrier_->Initialize(3, 2));
  EXPECT_THAT(barrier_->Initialize(3, 2), StatusIs(Code::kFailedPrecondition));
  auto other = MakeBarrier(backend_.get());
  EXPECT_THAT(other->Initialize(1, 1), StatusIs(Code::kFailedPrecondition));
}

TEST_F(BarrierTest, InitializeValidatesParameters) {
  for (auto [n, t] : std::vector<std::pair<int, int>>{
           {0, 0}, {3, 1}, {2, 3}, {256, 2}, {-1, 1}, {1, 2}, {5, 0}}) {
    EXPECT_THAT(barrier_->Initialize(n, t), StatusIs(Code::kInvalidArgument))
        << n << "/" << t;
  }
  auto status = barrier_->Status();
  ASSERT_OK(status);
  EXPECT_FALSE(status->initialized);
}

TEST_F(BarrierTest, SingleShareIsTheKeyItself) {
  auto shares = barrier_->Initialize(1, 1);
  ASSERT_OK(shares);
  ASSERT_EQ(shares->size(), 1u);
  EXPECT_EQ((*shares)[0].size(), 32u);
  EXPECT_THAT(barrier_->Unseal((*shares)[0] + "x"),
              StatusIs(Code::kInvalidArgument));
  auto status = barrier_->Unseal((*shares)[0]);
  ASSERT_OK(status);
  EXPECT_FALSE(status->sealed);
  EXPECT_EQ(status->term, 1u);
  ASSERT_OK(barrier_->Put("k", "v"));
  barrier_->Seal();
  std::string wrong = (*shares)[0];
  wrong[5] ^= 1;
  EXPECT_THAT(barrier_->Unseal(wrong), StatusIs(Code::kInvalidArgument));
  EXPECT_TRUE(barrier_->sealed());
}

// --------------------------------------------------------------- unseal

TEST_F(BarrierTest, UnsealProgressAndData) {
  auto shares = barrier_->Initialize(5, 3);
  ASSERT_OK(shares);
  EXPECT_THAT(barrier_->Put("a", "1"), StatusIs(Code::kFailedPrecondition));
  Unseal(barrier_.get(), {(*shares)[4], (*shares)[1], (*shares)[2]}, 3);
  auto status = barrier_->Status();
  ASSERT_OK(status);
  EXPECT_FALSE(status->sealed);
  EXPECT_EQ(status->term, 1u);
  auto rev = barrier_->Put("app/db", "hunter2");
  ASSERT_OK(rev);
  auto entry = barrier_->Get("app/db");
  ASSERT_OK(entry);
  EXPECT_EQ(entry->value, "hunter2");
  EXPECT_EQ(entry->version, *rev);
  // Stored bytes are ciphertext: header, no plaintext.
  auto raw = backend_->Get("app/db");
  ASSERT_OK(raw);
  EXPECT_EQ(raw->value.size(), 4 + 1 + 12 + 7 + 16u);
  EXPECT_EQ(raw->value.substr(0, 5), std::string("\0\0\0\x01\x01", 5));
  EXPECT_EQ(raw->value.find("hunter2"), std::string::npos);
  // Unseal when already unsealed is a no-op.
  auto again = barrier_->Unseal((*shares)[0]);
  ASSERT_OK(again);
  EXPECT_FALSE(again->sealed);
}

TEST_F(BarrierTest, EveryThresholdSubsetUnseals) {
  auto shares = barrier_->Initialize(4, 2);
  ASSERT_OK(shares);
  for (int i = 0; i < 4; ++i) {
    for (int j = 0; j < 4; ++j) {
      if (i == j) continue;
      barrier_->Seal();
      Unseal(barrier_.get(), {(*shares)[i], (*shares)[j]}, 2);
    }
  }
}

TEST_F(BarrierTest, DuplicateSharesAreIgnored) {
  auto shares = barrier_->Initialize(5, 3);
  ASSERT_OK(shares);
  for (int i = 0; i < 3; ++i) {
    auto s = barrier_->Unseal((*shares)[0]);
    ASSERT_OK(s);
    EXPECT_EQ(s->progress, 1);
    EXPECT_TRUE(s->sealed);
  }
  ASSERT_OK(barrier_->Unseal((*shares)[1]));
  auto s = barrier_->Unseal((*shares)[2]);
  ASSERT_OK(s);
  EXPECT_FALSE(s->sealed);
}

TEST_F(BarrierTest, ThresholdMinusOneStaysSealed) {
  auto shares = barrier_->Initialize(5, 3);
  ASSERT_OK(shares);
  ASSERT_OK(barrier_->Unseal((*shares)[0]));
  auto s = barrier_->Unseal((*shares)[1]);
  ASSERT_OK(s);
  EXPECT_TRUE(s->sealed);
  EXPECT_EQ(s->progress, 2);
  EXPECT_TRUE(barrier_->sealed());
  EXPECT_THAT(barrier_->Get("x"), StatusIs(Code::kFailedPrecondition));
  auto status = barrier_->Status();
  ASSERT_OK(status);
  EXPECT_EQ(status->progress, 2);
}

TEST_F(BarrierTest, ResetUnsealProgress) {
  auto shares = barrier_->Initialize(5, 3);
  ASSERT_OK(shares);
  ASSERT_OK(barrier_->Unseal((*shares)[0]));
  ASSERT_OK(barrier_->Unseal((*shares)[1]));
  barrier_->ResetUnsealProgress();
  auto status = barrier_->Status();
  ASSERT_OK(status);
  EXPECT_EQ(status->progress, 0);
  auto s = barrier_->Unseal((*shares)[2]);
  ASSERT_OK(s);
  EXPECT_EQ(s->progress, 1);
  EXPECT_TRUE(s->sealed);
}

TEST_F(BarrierTest, MalformedSharesAreRefusedWithoutLosingProgress) {
  auto shares = barrier_->Initialize(5, 3);
  ASSERT_OK(shares);
  ASSERT_OK(barrier_->Unseal((*shares)[0]));
  EXPECT_THAT(barrier_->Unseal(""), StatusIs(Code::kInvalidArgument));
  EXPECT_THAT(barrier_->Unseal((*shares)[1].substr(1)),
              StatusIs(Code::kInvalidArgument));
  EXPECT_THAT(barrier_->Unseal((*shares)[1] + "x"),
              StatusIs(Code::kInvalidArgument));
  std::string same_x = (*shares)[1];
  same_x.back() = (*shares)[0].back();
  EXPECT_THAT(barrier_->Unseal(same_x), StatusIs(Code::kInvalidArgument));
  auto status = barrier_->Status();
  ASSERT_OK(status);
  EXPECT_EQ(status->progress, 1);
  ASSERT_OK(barrier_->Unseal((*shares)[1]));
  auto s = barrier_->Unseal((*shares)[2]);
  ASSERT_OK(s);
  EXPECT_FALSE(s->sealed);
}

// A share claiming x = 0 would alone decide the combined unseal key; it is
// refused when presented (progress kept) and by Rekey.
TEST_F(BarrierTest, ShareWithXZeroIsRefused) {
  auto shares = barrier_->Initialize(5, 3);
  ASSERT_OK(shares);
  ASSERT_OK(barrier_->Unseal((*shares)[0]));
  ASSERT_OK(barrier_->Unseal((*shares)[1]));
  std::string x_zero = (*shares)[2];
  x_zero.back() = '\0';
  auto s = barrier_->Unseal(x_zero);
  EXPECT_THAT(s, StatusIs(Code::kInvalidArgument));
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("x coordinate 0"));
  EXPECT_TRUE(barrier_->sealed());
  EXPECT_EQ(barrier_->Status()->progress, 2);
  EXPECT_THAT(barrier_->Rekey({(*shares)[0], (*shares)[1], x_zero}, 3, 2),
              StatusIs(Code::kInvalidArgument));
  ASSERT_FALSE(barrier_->Unseal((*shares)[2])->sealed);
}

TEST_F(BarrierTest, WrongSharesFailResetAndStaySealed) {
  auto shares = barrier_->Initialize(5, 3);
  ASSERT_OK(shares);
  std::string tampered = (*shares)[2];
  tampered[0] ^= 0x80;
  ASSERT_OK(barrier_->Unseal((*shares)[0]));
  ASSERT_OK(barrier_->Unseal((*shares)[1]));
  auto s = barrier_->Unseal(tampered);
  EXPECT_THAT(s, StatusIs(Code::kInvalidArgument));
  EXPECT_THAT(std::string(s.status().message()),
              HasSubstr("does not open the root key"));
  EXPECT_TRUE(barrier_->sealed());
  auto status = barrier_->Status();
  ASSERT_OK(status);
  EXPECT_EQ(status->progress, 0);
  // The right shares still work afterwards.
  Unseal(barrier_.get(), *shares, 3);
}

TEST_F(BarrierTest, SharesFromAnotherInitializationFail) {
  auto shares = barrier_->Initialize(3, 2);
  ASSERT_OK(shares);
  auto other_backend = NewTestBackend();
  auto other = MakeBarrier(other_backend.get());
  auto foreign = other->Initialize(3, 2);
  ASSERT_OK(foreign);
  ASSERT_OK(barrier_->Unseal((*foreign)[0]));
  EXPECT_THAT(barrier_->Unseal((*foreign)[1]),
              StatusIs(Code::kInvalidArgument));
  EXPECT_TRUE(barrier_->sealed());
  // Mixed: one ours, one theirs.
  ASSERT_OK(barrier_->Unseal((*shares)[0]));
  EXPECT_THAT(barrier_->Unseal((*foreign)[1]),
              StatusIs(Code::kInvalidArgument));
  EXPECT_TRUE(barrier_->sealed());
}

// ------------------------------------------------------------------ seal

TEST_F(BarrierTest, SealedOperationsAreRefused) {
  InitAndUnseal(barrier_.get());
  ASSERT_OK(barrier_->Put("a/b", "v"));
  barrier_->Seal();
  barrier_->Seal();  // idempotent
  EXPECT_TRUE(barrier_->sealed());
  EXPECT_THAT(barrier_->Get("a/b"), StatusIs(Code::kFailedPrecondition));
  EXPECT_THAT(barrier_->Put("a/b", "w"), StatusIs(Code::kFailedPrecondition));
  EXPECT_THAT(barrier_->Delete("a/b"), StatusIs(Code::kFailedPrecondition));
  EXPECT_THAT(barrier_->List("a/"), StatusIs(Code::kFailedPrecondition));
  EXPECT_THAT(barrier_->Commit({WriteOp::Put("a/c", "v")}),
              StatusIs(Code::kFailedPrecondition));
  EXPECT_THAT(barrier_->Rotate(), StatusIs(Code::kFailedPrecondition));
  EXPECT_EQ(barrier_->ReloadKeyring().code(), Code::kFailedPrecondition);
  auto status = barrier_->Status();
  ASSERT_OK(status);
  EXPECT_TRUE(status->sealed);
  EXPECT_EQ(status->term, 0u);
  // Nothing was written while sealed.
  auto raw = backend_->Get("a/c");
  EXPECT_THAT(raw, StatusIs(Code::kNotFound));
}

TEST_F(BarrierTest, SealWipesUnsealProgress) {
  auto shares = barrier_->Initialize(5, 3);
  ASSERT_OK(shares);
  ASSERT_OK(barrier_->Unseal((*shares)[0]));
  barrier_->Seal();
  auto status = barrier_->Status();
  ASSERT_OK(status);
  EXPECT_EQ(status->progress, 0);
}

struct WipeLog {
  std::vector<std::pair<const void*, size_t>> wiped;
  bool all_zero = true;
};

void RecordWipe(const uint8_t* data, size_t size, void* arg) {
  auto* log = static_cast<WipeLog*>(arg);
  log->wiped.emplace_back(data, size);
  for (size_t i = 0; i < size; ++i) {
    if (data[i] != 0) log->all_zero = false;
  }
}

TEST_F(BarrierTest, KeyBytesDoNotSurviveSeal) {
  auto shares = InitAndUnseal(barrier_.get());
  ASSERT_OK(barrier_->Rotate());
  ASSERT_OK(barrier_->Unseal(shares[0]));  // no-op: already unsealed
  Barrier::Impl* impl = BarrierTestPeer::impl(*barrier_);
  const auto buffers = impl->KeyBuffersForTesting();
  // Root key + 2 terms x (key, the AEAD key's own buffers: BoringSSL's
  // context; none under OpenSSL, which allocates and wipes its own).
  std::vector<std::pair<const void*, size_t>> aead_buffers;
  (*crypto::Aes256GcmKey::Create(std::string(32, 'k')))
      ->AppendSecretBuffers(&aead_buffers);
  ASSERT_EQ(buffers.size(), 3u + 2u * aead_buffers.size());
  for (const auto& [data, size] : buffers) {
    bool nonzero = false;
    for (size_t i = 0; i < size; ++i) {
      nonzero |= static_cast<const uint8_t*>(data)[i] != 0;
    }
    EXPECT_TRUE(nonzero) << "a live key buffer should hold key bytes";
  }
  WipeLog log;
  SetSecretBytesWipeObserverForTesting(&RecordWipe, &log);
  crypto::SetCleanseObserverForTesting(&RecordWipe, &log);
  barrier_->Seal();
  crypto::SetCleanseObserverForTesting(nullptr, nullptr);
  SetSecretBytesWipeObserverForTesting(nullptr, nullptr);
  EXPECT_TRUE(log.all_zero);
  for (const auto& [data, size] : buffers) {
    bool found = false;
    for (const auto& [wdata, wsize] : log.wiped) {
      if (wdata == data && wsize >= size) found = true;
    }
    EXPECT_TRUE(found) << "a key buffer was freed without being wiped";
  }
  EXPECT_TRUE(impl->KeyBuffersForTesting().empty());
}

TEST_F(BarrierTest, PresentedSharesAreWipedOnReset) {
  auto shares = barrier_->Initialize(5, 3);
  ASSERT_OK(shares);
  ASSERT_OK(barrier_->Unseal((*shares)[0]));
  const auto buffers = BarrierTestPeer::impl(*barrier_)->KeyBuffersForTesting();
  ASSERT_EQ(buffers.size(), 1u);
  WipeLog log;
  SetSecretBytesWipeObserverForTesting(&RecordWipe, &log);
  barrier_->ResetUnsealProgress();
  SetSecretBytesWipeObserverForTesting(nullptr, nullptr);
  EXPECT_TRUE(log.all_zero);
  ASSERT_FALSE(log.wiped.empty());
  EXPECT_EQ(log.wiped[0].first, buffers[0].first);
}

// ---------------------------------------------------------------- tamper

TEST_F(BarrierTest, TamperedCiphertextIsDataLoss) {
  InitAndUnseal(barrier_.get());
  ASSERT_OK(barrier_->Put("app/secret", "the value"));
  const std::string good = backend_->Get("app/secret")->value;
  for (size_t bit = 0; bit < good.size() * 8; ++bit) {
    std::string bad = good;
    bad[bit / 8] ^= static_cast<char>(1 << (bit % 8));
    ASSERT_OK(backend_->Put("app/secret", bad));
    auto got = barrier_->Get("app/secret");
    EXPECT_THAT(got, StatusIs(Code::kDataLoss)) << "bit " << bit;
  }
  for (size_t len = 0; len < good.size(); ++len) {
    ASSERT_OK(backend_->Put("app/secret", good.substr(0, len)));
    EXPECT_THAT(barrier_->Get("app/secret"), StatusIs(Code::kDataLoss))
        << "len " << len;
  }
  ASSERT_OK(backend_->Put("app/secret", good + "x"));
  EXPECT_THAT(barrier_->Get("app/secret"), StatusIs(Code::kDataLoss));
  // Moved to another path.
  ASSERT_OK(backend_->Put("app/other", good));
  EXPECT_THAT(barrier_->Get("app/other"), StatusIs(Code::kDataLoss));
  // Intact again: opens.
  ASSERT_OK(backend_->Put("app/secret", good));
  auto entry = barrier_->Get("app/secret");
  ASSERT_OK(entry);
  EXPECT_EQ(entry->value, "the value");
}

// Get opens in the backend's buffer (OpenValueInPlace): the same plaintext
// as a copying open, and on any failure nothing is left in the buffer.
TEST_F(BarrierTest, InPlaceOpenMatchesCopyingOpenAndEmptiesOnFailure) {
  InitAndUnseal(barrier_.get());
  Barrier::Impl* impl = BarrierTestPeer::impl(*barrier_);
  for (size_t n : {0u, 1u, 15u, 16u, 17u, 64u, 1024u}) {
    const std::string plain(n, 'q');
    ASSERT_OK_AND_ASSIGN(std::string stored, impl->SealValue("p/x", plain));
    std::string value = stored;
    ASSERT_OK(impl->OpenValueInPlace("p/x", &value));
    EXPECT_EQ(value, plain) << n;
    EXPECT_THAT(impl->OpenValue("p/x", stored), IsOkAndHolds(plain)) << n;
    std::string bad = stored;
    bad.back() ^= 1;
    EXPECT_THAT(impl->OpenValueInPlace("p/x", &bad), StatusIs(Code::kDataLoss));
    EXPECT_EQ(bad, "") << n;
    std::string moved = stored;
    EXPECT_THAT(impl->OpenValueInPlace("p/y", &moved),
                StatusIs(Code::kDataLoss));
    EXPECT_EQ(moved, "") << n;
    std::string truncated = stored.substr(0, seal::kValueOverhead - 1);
    EXPECT_THAT(impl->OpenValueInPlace("p/x", &truncated),
                StatusIs(Code::kDataLoss));
    EXPECT_EQ(truncated, "") << n;
  }
}

// GetInPlace opens where the backend put the value, into a buffer the
// reader reuses: the same plaintext as Get for every size (a longer value
// before a shorter one and back), a newer term followed once, Wipe()
// leaving no plaintext, and every failure leaving none either: tampered,
// moved, truncated, missing, sealed, a reserved path.
TEST_F(BarrierTest, GetInPlaceMatchesGetInAReusedBufferAndFailsEmpty) {
  auto shares = InitAndUnseal(barrier_.get());
  const std::vector<size_t> sizes = {0, 1, 17, 1024, 5000, 3, 1 << 16, 2};
  for (size_t n : sizes) {
    ASSERT_OK(barrier_->Put(absl::StrCat("p/", n), std::string(n, 'q')));
  }
  OpenedValue opened;
  for (size_t n : sizes) {
    const std::string path = absl::StrCat("p/", n);
    ASSERT_OK(barrier_->GetInPlace(path, &opened));
    ASSERT_OK_AND_ASSIGN(Entry got, barrier_->Get(path));
    EXPECT_EQ(opened.plaintext(), got.value) << n;
    EXPECT_EQ(opened.stored.version, got.version) << n;
    opened.Wipe();
    EXPECT_EQ(opened.plaintext(), "");
    if (n >= 8) {
      EXPECT_EQ(opened.stored.value.find("qqqqqqqq"), std::string::npos)
          << "plaintext left after Wipe, " << n;
    }
  }
  // (Each starts from a buffer holding plaintext, not wiped: the next
  // read wipes it.)
  auto failed_empty = [&](absl::string_view path, Code code) {
    ASSERT_OK(barrier_->GetInPlace("p/1024", &opened));
    EXPECT_THAT(barrier_->GetInPlace(path, &opened), StatusIs(code)) << path;
    EXPECT_EQ(opened.plaintext(), "") << path;
    EXPECT_EQ(opened.stored.value.find("qqqqqqqq"), std::string::npos) << path;
  };
  const std::string good = backend_->Get("p/1024")->value;
  std::string bad = good;
  bad[good.size() / 2] ^= 1;
  ASSERT_OK(backend_->Put("t/tampered", bad));
  ASSERT_OK(backend_->Put("t/moved", good));
  ASSERT_OK(backend_->Put("t/truncated", good.substr(0, 20)));
  failed_empty("t/tampered", Code::kDataLoss);
  failed_empty("t/moved", Code::kDataLoss);
  failed_empty("t/truncated", Code::kDataLoss);
  failed_empty("t/missing", Code::kNotFound);
  failed_empty("core/keyring", Code::kInvalidArgument);
  failed_empty("a//b", Code::kInvalidArgument);
  // A second barrier meets a newer term in place and follows it.
  auto standby = MakeBarrier(backend_.get());
  Unseal(standby.get(), shares, 3);
  ASSERT_OK(barrier_->Rotate());
  ASSERT_OK(barrier_->Put("after", "rotated"));
  OpenedValue on_standby;
  ASSERT_OK(standby->GetInPlace("after", &on_standby));
  EXPECT_EQ(on_standby.plaintext(), "rotated");
  on_standby.Wipe();
  barrier_->Seal();
  EXPECT_THAT(barrier_->GetInPlace("p/1", &opened),
              StatusIs(Code::kFailedPrecondition));
  EXPECT_EQ(opened.plaintext(), "");
}

TEST_F(BarrierTest, EmptyAndLargeValues) {
  InitAndUnseal(barrier_.get());
  ASSERT_OK(barrier_->Put("empty", ""));
  auto e = barrier_->Get("empty");
  ASSERT_OK(e);
  EXPECT_EQ(e->value, "");
  std::string big(1 << 20, 'z');
  ASSERT_OK(barrier_->Put("big", big));
  e = barrier_->Get("big");
  ASSERT_OK(e);
  EXPECT_EQ(e->value, big);
  EXPECT_THAT(barrier_->Get("missing"), StatusIs(Code::kNotFound));
}

TEST_F(BarrierTest, UnknownTermIsDataLossAfterOneReload) {
  InitAndUnseal(barrier_.get());
  ASSERT_OK(barrier_->Put("x", "v"));
  std::string stored = backend_->Get("x")->value;
  stored[3] = 9;  // term 9, which no keyring has
  ASSERT_OK(backend_->Put("x", stored));
  auto got = barrier_->Get("x");
  EXPECT_THAT(got, StatusIs(Code::kDataLoss));
  EXPECT_THAT(std::string(got.status().message()), HasSubstr("term"));
  stored[3] = 0;  // term 0
  ASSERT_OK(backend_->Put("x", stored));
  EXPECT_THAT(barrier_->Get("x"), StatusIs(Code::kDataLoss));
}

TEST_F(BarrierTest, TamperedRecordsAreDataLoss) {
  auto shares = InitAndUnseal(barrier_.get());
  barrier_->Seal();
  std::string keyring = backend_->Get("core/keyring")->value;
  std::string bad = keyring;
  bad[bad.size() - 1] ^= 1;
  ASSERT_OK(backend_->Put("core/keyring", bad));
  ASSERT_OK(barrier_->Unseal(shares[0]));
  ASSERT_OK(barrier_->Unseal(shares[1]));
  EXPECT_THAT(barrier_->Unseal(shares[2]), StatusIs(Code::kDataLoss));
  EXPECT_TRUE(barrier_->sealed());
  ASSERT_OK(backend_->Put("core/keyring", keyring));
  ASSERT_OK(backend_->Put("core/seal-config", "\xff\xff"));
  EXPECT_THAT(barrier_->Unseal(shares[0]), StatusIs(Code::kDataLoss));
  EXPECT_THAT(barrier_->Status(), StatusIs(Code::kDataLoss));
}

// --------------------------------------------------------- reserved paths

TEST_F(BarrierTest, CorePrefixIsReserved) {
  InitAndUnseal(barrier_.get());
  EXPECT_THAT(barrier_->Put("core/keyring", "x"),
              StatusIs(Code::kInvalidArgument));
  EXPECT_THAT(barrier_->Get("core/keyring"), StatusIs(Code::kInvalidArgument));
  EXPECT_THAT(barrier_->Delete("core/root-key"),
              StatusIs(Code::kInvalidArgument));
  EXPECT_THAT(barrier_->List("core/"), StatusIs(Code::kInvalidArgument));
  EXPECT_THAT(barrier_->Commit({WriteOp::Put("a", "1"),
                                WriteOp::Delete("core/seal-config")}),
              StatusIs(Code::kInvalidArgument));
  EXPECT_THAT(backend_->Get("a"), StatusIs(Code::kNotFound));
  ASSERT_OK(barrier_->Put("corex", "1"));
  ASSERT_OK(barrier_->Put("app/x", "1"));
  auto root = barrier_->List("");
  ASSERT_OK(root);
  EXPECT_THAT(*root, ElementsAre("app/", "corex"));
}

TEST(BarrierNestedPrefixTest, ListHidesNestedCoreFolder) {
  auto backend = NewTestBackend();
  BarrierOptions options;
  options.backend = backend.get();
  options.core_prefix = "sys/core/";
  auto barrier = *Barrier::Create(options);
  auto shares = barrier->Initialize(1, 1);
  ASSERT_OK(shares);
  ASSERT_OK(barrier->Unseal((*shares)[0]));
  ASSERT_OK(barrier->Put("sys/policy", "p"));
  auto sys = barrier->List("sys/");
  ASSERT_OK(sys);
  EXPECT_THAT(*sys, ElementsAre("policy"));
  auto root = barrier->List("");
  ASSERT_OK(root);
  EXPECT_THAT(*root, ElementsAre("sys/"));
  EXPECT_THAT(barrier->Get("sys/core/keyring"),
              StatusIs(Code::kInvalidArgument));
}

// ---------------------------------------------------------------- commit

TEST_F(BarrierTest, CommitSealsPutsAndPassesPreconditions) {
  InitAndUnseal(barrier_.get());
  auto rev = barrier_->Commit({WriteOp::Put("a", "1").IfAbsent(),
                               WriteOp::Put("b", "2"), WriteOp::Put("c", "4")});
  ASSERT_OK(rev);
  EXPECT_EQ(barrier_->Get("a")->value, "1");
  EXPECT_EQ(barrier_->Get("b")->value, "2");
  EXPECT_EQ(backend_->Get("a")->value.size(), seal::kValueOverhead + 1);
  EXPECT_THAT(barrier_->Commit({WriteOp::Put("a", "x").IfAbsent()}),
              StatusIs(Code::kAborted));
  auto rev2 = barrier_->Commit({WriteOp::Put("a", "3").IfVersion(*rev),
                                WriteOp::Delete("b"),
                                WriteOp::Check("c").IfVersion(*rev)});
  ASSERT_OK(rev2);
  EXPECT_EQ(barrier_->Get("a")->value, "3");
  EXPECT_THAT(barrier_->Get("b"), StatusIs(Code::kNotFound));
  EXPECT_THAT(barrier_->Delete("a"), StatusIs(absl::StatusCode::kOk));
  EXPECT_THAT(barrier_->Get("a"), StatusIs(Code::kNotFound));
}

// ----------------------------------------------------------------- rekey

TEST_F(BarrierTest, RekeyThenOldSharesFail) {
  auto old_shares = InitAndUnseal(barrier_.get(), 5, 3);
  ASSERT_OK(barrier_->Put("keep", "me"));
  EXPECT_THAT(barrier_->Rekey({old_shares[0], old_shares[1]}, 3, 2),
              StatusIs(Code::kInvalidArgument));
  auto new_shares =
      barrier_->Rekey({old_shares[3], old_shares[1], old_shares[4]}, 3, 2);
  ASSERT_OK(new_shares);
  ASSERT_EQ(new_shares->size(), 3u);
  EXPECT_FALSE(barrier_->sealed());  // rekey keeps the seal state
  // Pending: the old config and shares still hold.
  auto status = barrier_->Status();
  ASSERT_OK(status);
  EXPECT_EQ(status->shares, 5);
  EXPECT_EQ(status->threshold, 3);
  EXPECT_TRUE(status->rekey_pending);
  EXPECT_EQ(status->rekey_shares, 3);
  EXPECT_EQ(status->rekey_threshold, 2);
  // Fewer than the new threshold, or old shares, do not complete it.
  EXPECT_THAT(barrier_->CompleteRekey({(*new_shares)[0]}),
              StatusIs(Code::kInvalidArgument));
  EXPECT_THAT(barrier_->CompleteRekey({old_shares[0], old_shares[1]}),
              StatusIs(Code::kInvalidArgument));
  ASSERT_OK(barrier_->CompleteRekey({(*new_shares)[2], (*new_shares)[0]}));
  status = barrier_->Status();
  ASSERT_OK(status);
  EXPECT_EQ(status->shares, 3);
  EXPECT_EQ(status->threshold, 2);
  EXPECT_FALSE(status->rekey_pending);
  EXPECT_FALSE(barrier_->sealed());
  barrier_->Seal();
  // Old shares: a threshold (now 2) of them no longer opens the root key.
  ASSERT_OK(barrier_->Unseal(old_shares[0]));
  EXPECT_THAT(barrier_->Unseal(old_shares[1]),
              StatusIs(Code::kInvalidArgument));
  EXPECT_TRUE(barrier_->sealed());
  EXPECT_THAT(barrier_->Rekey(old_shares, 3, 2),
              StatusIs(Code::kInvalidArgument));
  Unseal(barrier_.get(), *new_shares, 2);
  EXPECT_EQ(barrier_->Get("keep")->value, "me");  // no data rewritten
}

TEST_F(BarrierTest, RekeyValidatesAndRefusesWrongShares) {
  auto shares = barrier_->Initialize(3, 2);
  ASSERT_OK(shares);
  EXPECT_THAT(barrier_->Rekey(*shares, 2, 3), StatusIs(Code::kInvalidArgument));
  EXPECT_THAT(barrier_->Rekey(*shares, 0, 0), StatusIs(Code::kInvalidArgument));
  std::string wrong = (*shares)[0];
  wrong[0] ^= 1;
  EXPECT_THAT(barrier_->Rekey({wrong, (*shares)[1]}, 3, 2),
              StatusIs(Code::kInvalidArgument));
  EXPECT_THAT(barrier_->Rekey({"short", (*shares)[1]}, 3, 2),
              StatusIs(Code::kInvalidArgument));
  auto fresh = NewTestBackend();
  auto uninit = MakeBarrier(fresh.get());
  EXPECT_THAT(uninit->Rekey(*shares, 3, 2),
              StatusIs(Code::kFailedPrecondition));
  // To a single key and back.
  auto single = barrier_->Rekey(*shares, 1, 1);
  ASSERT_OK(single);
  ASSERT_EQ(single->size(), 1u);
  EXPECT_EQ((*single)[0].size(), 32u);
  ASSERT_OK(barrier_->CompleteRekey(*single));
  auto back = barrier_->Rekey(*single, 4, 3);
  ASSERT_OK(back);
  ASSERT_OK(barrier_->CompleteRekey(*back));
  Unseal(barrier_.get(), *back, 3);
}

TEST_F(BarrierTest, RekeyDiscardsUnsealProgress) {
  auto shares = barrier_->Initialize(3, 2);
  ASSERT_OK(shares);
  ASSERT_OK(barrier_->Unseal((*shares)[0]));
  auto fresh = barrier_->Rekey(*shares, 3, 2);
  ASSERT_OK(fresh);
  EXPECT_EQ(barrier_->Status()->progress, 1);  // pending: old key still on
  ASSERT_OK(barrier_->CompleteRekey(*fresh));
  EXPECT_EQ(barrier_->Status()->progress, 0);
}

TEST_F(BarrierTest, CancelAndReplacePendingRekey) {
  auto shares = InitAndUnseal(barrier_.get(), 3, 2);
  ASSERT_OK(barrier_->Put("keep", "me"));
  // Nothing pending: refused, not OK (a lost CompleteRekey may have applied).
  EXPECT_THAT(barrier_->CancelRekey(), StatusIs(Code::kFailedPrecondition));
  auto first = barrier_->Rekey(shares, 3, 2);
  ASSERT_OK(first);
  auto second = barrier_->Rekey(shares, 4, 3);  // replaces the first
  ASSERT_OK(second);
  EXPECT_EQ(barrier_->Status()->rekey_shares, 4);
  EXPECT_THAT(barrier_->CompleteRekey(*first),
              StatusIs(Code::kInvalidArgument));
  ASSERT_OK(barrier_->CancelRekey());
  EXPECT_FALSE(barrier_->Status()->rekey_pending);
  EXPECT_THAT(barrier_->CompleteRekey(*second),
              StatusIs(Code::kFailedPrecondition));
  // The current shares never stopped working.
  barrier_->Seal();
  Unseal(barrier_.get(), shares, 2);
  EXPECT_EQ(barrier_->Get("keep")->value, "me");
}

// ---------------------------------------------------------------- rotate

TEST_F(BarrierTest, RotateThenMixedTermsOpen) {
  auto shares = InitAndUnseal(barrier_.get());
  ASSERT_OK(barrier_->Put("old", "term one"));
  auto term = barrier_->Rotate();
  ASSERT_OK(term);
  EXPECT_EQ(*term, 2u);
  EXPECT_EQ(barrier_->Status()->term, 2u);
  ASSERT_OK(barrier_->Put("new", "term two"));
  EXPECT_EQ(backend_->Get("old")->value[3], 1);
  EXPECT_EQ(backend_->Get("new")->value[3], 2);
  EXPECT_EQ(barrier_->Get("old")->value, "term one");
  EXPECT_EQ(barrier_->Get("new")->value, "term two");
  EXPECT_EQ(*barrier_->Rotate(), 3u);
  ASSERT_OK(barrier_->Put("newest", "term three"));
  // Survives seal + unseal (the keyring is stored).
  barrier_->Seal();
  Unseal(barrier_.get(), shares, 3);
  EXPECT_EQ(barrier_->Status()->term, 3u);
  EXPECT_EQ(barrier_->Get("old")->value, "term one");
  EXPECT_EQ(barrier_->Get("new")->value, "term two");
  EXPECT_EQ(barrier_->Get("newest")->value, "term three");
}

TEST_F(BarrierTest, SecondBarrierFollowsRotation) {
  auto shares = InitAndUnseal(barrier_.get());
  auto standby = MakeBarrier(backend_.get());
  Unseal(standby.get(), shares, 3);
  ASSERT_OK(barrier_->Put("before", "1"));
  ASSERT_OK(barrier_->Rotate());
  ASSERT_OK(barrier_->Put("after", "2"));
  EXPECT_EQ(standby->Status()->term, 1u);
  // Meeting term 2 makes the standby reload its keyring.
  auto got = standby->Get("after");
  ASSERT_OK(got);
  EXPECT_EQ(got->value, "2");
  EXPECT_EQ(standby->Status()->term, 2u);
  EXPECT_EQ(standby->Get("before")->value, "1");
  // A rotation on a stale keyring is refused (the active rotated first).
  ASSERT_OK(barrier_->Rotate());
  EXPECT_THAT(standby->Rotate(), StatusIs(Code::kAborted));
  ASSERT_OK(standby->ReloadKeyring());
  EXPECT_EQ(standby->Status()->term, 3u);
  auto t = standby->Rotate();
  ASSERT_OK(t);
  EXPECT_EQ(*t, 4u);
  ASSERT_OK(standby->Put("from-standby", "4"));
  EXPECT_EQ(barrier_->Get("from-standby")->value, "4");
}

// ------------------------------------------------- encryption counting

std::unique_ptr<Barrier> MakeCountingBarrier(Backend* backend) {
  BarrierOptions options;
  options.backend = backend;
  options.max_encryptions_per_term = 5;
  options.encryption_reservation = 2;
  auto barrier = Barrier::Create(options);
  EXPECT_OK(barrier);
  return *std::move(barrier);
}

uint8_t StoredTerm(Backend* backend, const std::string& path) {
  return static_cast<uint8_t>(backend->Get(path)->value[3]);
}

// Issue 9 item 13: at max_encryptions_per_term the barrier rotates by
// itself before sealing the next value (GCM's random-nonce limit).
TEST_F(BarrierTest, EncryptionLimitRotatesTheTerm) {
  auto barrier = MakeCountingBarrier(backend_.get());
  auto shares = barrier->Initialize(1, 1);
  ASSERT_OK(shares);
  ASSERT_OK(barrier->Unseal((*shares)[0]));
  for (int i = 0; i < 5; ++i) {
    ASSERT_OK(barrier->Put(absl::StrCat("k", i), "v"));
    EXPECT_EQ(StoredTerm(backend_.get(), absl::StrCat("k", i)), 1) << i;
  }
  ASSERT_OK(barrier->Put("k5", "v"));
  EXPECT_EQ(StoredTerm(backend_.get(), "k5"), 2);
  EXPECT_EQ(barrier->Status()->term, 2u);
  // A batch counts each value it seals.
  ASSERT_OK(barrier->Commit({WriteOp::Put("b0", "v"), WriteOp::Put("b1", "v"),
                             WriteOp::Put("b2", "v"), WriteOp::Put("b3", "v"),
                             WriteOp::Put("b4", "v")}));
  EXPECT_EQ(StoredTerm(backend_.get(), "b3"), 2);
  EXPECT_EQ(StoredTerm(backend_.get(), "b4"), 3);
  for (const char* k : {"k0", "k5", "b0", "b4"}) {
    EXPECT_EQ(barrier->Get(k)->value, "v") << k;
  }
  // A manual Rotate starts a fresh count.
  ASSERT_OK(barrier->Rotate());
  for (int i = 0; i < 5; ++i) ASSERT_OK(barrier->Put("m", "v"));
  EXPECT_EQ(StoredTerm(backend_.get(), "m"), 4);
  ASSERT_OK(barrier->Put("m", "v"));
  EXPECT_EQ(StoredTerm(backend_.get(), "m"), 5);
}

// Puts for CommitInPlace: each value with room for the seal's overhead.
std::vector<WriteOp> RoomyPuts(const std::vector<std::string>& keys,
                               const std::string& value) {
  std::vector<WriteOp> ops;
  for (const std::string& key : keys) {
    WriteOp op = WriteOp::Put(key, value);
    op.value.reserve(value.size() + Barrier::kSealOverhead);
    ops.push_back(std::move(op));
  }
  return ops;
}

// CommitInPlace seals each value in its own buffer (what the backend
// stores is what the op now holds) and counts each value it seals, as
// Commit does: the batch crosses the limit mid-way and rotates.
TEST_F(BarrierTest, CommitInPlaceSealsInTheBuffersAndCountsEachValue) {
  auto barrier = MakeCountingBarrier(backend_.get());
  auto shares = barrier->Initialize(1, 1);
  ASSERT_OK(shares);
  ASSERT_OK(barrier->Unseal((*shares)[0]));
  for (int i = 0; i < 3; ++i)
    ASSERT_OK(barrier->Put(absl::StrCat("k", i), "v"));
  const std::string value(300, 's');
  std::vector<WriteOp> ops = RoomyPuts({"b0", "b1", "b2", "b3"}, value);
  ops.push_back(WriteOp::Delete("k0"));
  std::vector<const char*> buffers;
  for (const WriteOp& op : ops) buffers.push_back(op.value.data());
  ASSERT_OK(barrier->CommitInPlace(absl::MakeSpan(ops)));
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(ops[i].value.data(), buffers[i]) << "no reallocation, op " << i;
    EXPECT_EQ(ops[i].value.size(), value.size() + Barrier::kSealOverhead);
    EXPECT_EQ(ops[i].value, backend_->Get(ops[i].key)->value) << i;
    EXPECT_EQ(ops[i].value.find(value.substr(0, 16)), std::string::npos)
        << "no plaintext left in op " << i;
    EXPECT_EQ(barrier->Get(ops[i].key)->value, value) << i;
  }
  EXPECT_EQ(StoredTerm(backend_.get(), "b1"), 1);  // the 5th encryption
  EXPECT_EQ(StoredTerm(backend_.get(), "b2"), 2);  // over the limit
  EXPECT_EQ(StoredTerm(backend_.get(), "b3"), 2);
  EXPECT_THAT(backend_->Get("k0"), StatusIs(Code::kNotFound));
  // A value without room is moved to a larger buffer and sealed there.
  std::vector<WriteOp> tight = {WriteOp::Put("t", "tight")};
  tight[0].value.shrink_to_fit();
  ASSERT_OK(barrier->CommitInPlace(absl::MakeSpan(tight)));
  EXPECT_EQ(tight[0].value, backend_->Get("t")->value);
  EXPECT_EQ(barrier->Get("t")->value, "tight");
}

TEST_F(BarrierTest, CommitInPlaceRefusesWhatCommitRefuses) {
  std::vector<WriteOp> sealed_ops = RoomyPuts({"a"}, "v");
  EXPECT_THAT(barrier_->CommitInPlace(absl::MakeSpan(sealed_ops)),
              StatusIs(Code::kFailedPrecondition));
  InitAndUnseal(barrier_.get());
  // A reserved path refuses the whole batch: nothing is written.
  std::vector<WriteOp> ops = RoomyPuts({"a", "core/keyring"}, "v");
  EXPECT_THAT(barrier_->CommitInPlace(absl::MakeSpan(ops)),
              StatusIs(Code::kInvalidArgument));
  EXPECT_THAT(backend_->Get("a"), StatusIs(Code::kNotFound));
  EXPECT_EQ(ops[0].value, "v") << "a refused batch comes back as given";
  // A precondition passes through.
  std::vector<WriteOp> cas = RoomyPuts({"a"}, "v");
  cas[0].IfVersion(99);
  EXPECT_THAT(barrier_->CommitInPlace(absl::MakeSpan(cas)),
              StatusIs(Code::kAborted));
}

// The count is stored (in reserved blocks), so a restart does not reset it:
// a new barrier continues from the stored reservation, never below.
TEST_F(BarrierTest, EncryptionCountSurvivesRestart) {
  auto first = MakeCountingBarrier(backend_.get());
  auto shares = first->Initialize(1, 1);
  ASSERT_OK(shares);
  ASSERT_OK(first->Unseal((*shares)[0]));
  for (int i = 0; i < 3; ++i) ASSERT_OK(first->Put(absl::StrCat("a", i), "v"));
  first.reset();  // 3 used, 4 reserved in storage

  auto second = MakeCountingBarrier(backend_.get());
  ASSERT_OK(second->Unseal((*shares)[0]));
  ASSERT_OK(second->Put("b0", "v"));  // the 5th: still term 1
  EXPECT_EQ(StoredTerm(backend_.get(), "b0"), 1);
  ASSERT_OK(second->Put("b1", "v"));  // over the limit: term 2
  EXPECT_EQ(StoredTerm(backend_.get(), "b1"), 2);
  EXPECT_EQ(second->Get("a0")->value, "v");
}

// The reservation write carries the writer's fence: a deposed writer's
// Put is refused rather than sealing past the stored count.
TEST_F(BarrierTest, EncryptionReservationIsFenced) {
  backend_ = NewInMemoryBackend();
  auto barrier = MakeCountingBarrier(backend_.get());
  auto shares = barrier->Initialize(1, 1);
  ASSERT_OK(shares);
  ASSERT_OK(barrier->Unseal((*shares)[0]));
  AcquireOptions acquire;
  acquire.holder = "node-a";
  auto grant = backend_->ha()->Acquire(acquire);
  ASSERT_OK(grant);
  const FenceToken fence = (*grant)->fence();
  ASSERT_OK(barrier->Put("a", "1", fence));
  ASSERT_OK(barrier->Put("a", "2", fence));  // uses the block of 2
  ASSERT_OK((*grant)->Release());
  auto put = barrier->Put("a", "3", fence);  // needs a new block
  EXPECT_THAT(put, StatusIs(Code::kFailedPrecondition));
  EXPECT_TRUE(IsStaleFence(put.status()));
  EXPECT_EQ(barrier->Get("a")->value, "2");
}

// ------------------------------------------------------- backend faults

// Fails exactly the fail_at-th Get (counting from 1) with UNAVAILABLE.
class FailGetAt : public BackendWrapper {
 public:
  using BackendWrapper::BackendWrapper;
  absl::StatusOr<Entry> Get(absl::string_view key) override {
    if (++gets == fail_at) return absl::UnavailableError("injected");
    return BackendWrapper::Get(key);
  }
  int gets = 0;
  int fail_at = -1;
};

class BarrierFaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    target_ = NewTestBackend();
    faults_ = std::make_unique<FaultInjectingBackend>(target_.get());
    barrier_ = MakeBarrier(faults_.get());
  }
  std::unique_ptr<Backend> target_;
  std::unique_ptr<FaultInjectingBackend> faults_;
  std::unique_ptr<Barrier> barrier_;
};

TEST_F(BarrierFaultTest, FailedInitializeCommitCanBeRetried) {
  faults_->FailNext(1, absl::UnavailableError("injected"),
                    FaultInjectingBackend::kCommit);
  EXPECT_THAT(barrier_->Initialize(3, 2), StatusIs(Code::kUnavailable));
  EXPECT_FALSE(barrier_->Status()->initialized);
  EXPECT_THAT(target_->Get("core/root-key"), StatusIs(Code::kNotFound));
  auto shares = barrier_->Initialize(3, 2);
  ASSERT_OK(shares);
  ASSERT_OK(barrier_->Unseal((*shares)[0]));
  ASSERT_FALSE(barrier_->Unseal((*shares)[1])->sealed);
}

TEST_F(BarrierFaultTest, FailedReadBeforeInitializeCanBeRetried) {
  faults_->FailNext(1, absl::UnavailableError("injected"),
                    FaultInjectingBackend::kGet);
  EXPECT_THAT(barrier_->Initialize(3, 2), StatusIs(Code::kUnavailable));
  ASSERT_OK(barrier_->Initialize(3, 2));
}

TEST_F(BarrierFaultTest, LostInitializeAckStillReturnsWorkingShares) {
  faults_->LoseNextCommitAcks(1);
  auto shares = barrier_->Initialize(3, 2);
  ASSERT_OK(shares);  // confirmed by reading the root key record back
  ASSERT_OK(barrier_->Unseal((*shares)[2]));
  EXPECT_FALSE(barrier_->Unseal((*shares)[0])->sealed);
}

TEST_F(BarrierFaultTest, LostAckAndFailedProbeSaysOutcomeUnknown) {
  // Commit applied, its acknowledgement lost, and the read-back fails too:
  // the barrier cannot know, and says so (the shares are not returned).
  faults_->LoseNextCommitAcks(1);
  FailGetAt probe(faults_.get());
  probe.fail_at = 4;  // 3 existence checks, then the probe
  auto barrier = MakeBarrier(&probe);
  auto result = barrier->Initialize(3, 2);
  EXPECT_THAT(result, StatusIs(Code::kUnavailable));
  EXPECT_THAT(std::string(result.status().message()),
              HasSubstr("could not be confirmed"));
}

// Issue 9 item 11 (Initialize): after an unknown outcome the records are
// stored under shares nobody got. A retry on the same barrier replaces
// exactly that attempt; anyone else still sees "already initialized".
TEST_F(BarrierFaultTest, InitializeAfterUnknownOutcomeCanBeRetried) {
  faults_->LoseNextCommitAcks(1);
  FailGetAt probe(faults_.get());
  probe.fail_at = 4;  // 3 existence checks, then the probe
  auto barrier = MakeBarrier(&probe);
  auto lost = barrier->Initialize(3, 2);
  EXPECT_THAT(lost, StatusIs(Code::kUnavailable));
  EXPECT_THAT(std::string(lost.status().message()),
              HasSubstr("call Initialize on this barrier again"));
  EXPECT_TRUE(barrier->Status()->initialized);  // it did apply
  // Somebody else's Initialize never replaces it.
  EXPECT_THAT(barrier_->Initialize(3, 2), StatusIs(Code::kFailedPrecondition));
  auto shares = barrier->Initialize(3, 2);
  ASSERT_OK(shares);
  ASSERT_OK(barrier->Unseal((*shares)[1]));
  EXPECT_FALSE(barrier->Unseal((*shares)[2])->sealed);
  // Done: no further replacement, by anyone.
  EXPECT_THAT(barrier->Initialize(3, 2), StatusIs(Code::kFailedPrecondition));
  EXPECT_THAT(barrier_->Initialize(3, 2), StatusIs(Code::kFailedPrecondition));
}

// Issue 9 item 11: a rekey whose commit applied but whose acknowledgement
// and read-back were lost must lose nothing. Phase one (Rekey) only stores
// a pending record, so the old shares keep opening the root key; phase two
// (CompleteRekey) is retried with the new shares until it answers.
TEST_F(BarrierFaultTest, RekeyWithLostAckAndFailedProbeLosesNothing) {
  auto old_shares = barrier_->Initialize(3, 2);
  ASSERT_OK(old_shares);
  ASSERT_OK(barrier_->Unseal((*old_shares)[0]));
  ASSERT_OK(barrier_->Unseal((*old_shares)[1]));
  ASSERT_OK(barrier_->Put("secret", "kept"));
  FailGetAt probe(faults_.get());
  auto barrier = MakeBarrier(&probe);

  // Rekey: config, root key, pending reads; the commit; the probe fails.
  faults_->LoseNextCommitAcks(1);
  probe.fail_at = probe.gets + 4;
  auto lost = barrier->Rekey(*old_shares, 3, 2);
  EXPECT_THAT(lost, StatusIs(Code::kUnavailable));
  EXPECT_TRUE(barrier->Status()->rekey_pending);  // it did apply
  // The old shares still open the root key and the data.
  barrier_->Seal();
  ASSERT_OK(barrier_->Unseal((*old_shares)[2]));
  ASSERT_FALSE(barrier_->Unseal((*old_shares)[0])->sealed);
  EXPECT_EQ(barrier_->Get("secret")->value, "kept");

  // Retry; then lose CompleteRekey's answer too (config, root key,
  // keyring, pending reads; the commit; the probe fails).
  auto fresh = barrier->Rekey(*old_shares, 3, 2);
  ASSERT_OK(fresh);
  faults_->LoseNextCommitAcks(1);
  probe.fail_at = probe.gets + 5;
  const std::vector<std::string> two = {(*fresh)[0], (*fresh)[2]};
  absl::Status unknown = barrier->CompleteRekey(two);
  EXPECT_THAT(unknown, StatusIs(Code::kUnavailable));
  EXPECT_THAT(std::string(unknown.message()),
              HasSubstr("call CompleteRekey again"));
  // The caller still holds the new shares: asking again settles it.
  ASSERT_OK(barrier->CompleteRekey(two));
  EXPECT_FALSE(barrier->Status()->rekey_pending);
  barrier_->Seal();
  ASSERT_OK(barrier_->Unseal((*old_shares)[0]));
  EXPECT_THAT(barrier_->Unseal((*old_shares)[1]),
              StatusIs(Code::kInvalidArgument));
  ASSERT_OK(barrier_->Unseal((*fresh)[1]));
  ASSERT_FALSE(barrier_->Unseal((*fresh)[2])->sealed);
  EXPECT_EQ(barrier_->Get("secret")->value, "kept");
}

// Review D7: CompleteRekey applied but its answer was lost. CancelRekey
// must not answer OK (an operator would discard the new shares, the only
// ones that open the root key now); it says no rekey is pending and how to
// check, and the new shares still unseal.
TEST_F(BarrierFaultTest, CancelRekeyAfterLostCompleteRekeyIsRefused) {
  auto old_shares = barrier_->Initialize(3, 2);
  ASSERT_OK(old_shares);
  ASSERT_OK(barrier_->Unseal((*old_shares)[0]));
  ASSERT_OK(barrier_->Unseal((*old_shares)[1]));
  ASSERT_OK(barrier_->Put("secret", "kept"));
  FailGetAt probe(faults_.get());
  auto barrier = MakeBarrier(&probe);
  auto fresh = barrier->Rekey(*old_shares, 3, 2);
  ASSERT_OK(fresh);
  // CompleteRekey: config, root key, keyring, pending reads; the commit
  // applies, its answer is lost, the probe fails.
  faults_->LoseNextCommitAcks(1);
  probe.fail_at = probe.gets + 5;
  const std::vector<std::string> two = {(*fresh)[0], (*fresh)[1]};
  EXPECT_THAT(barrier->CompleteRekey(two), StatusIs(Code::kUnavailable));
  EXPECT_FALSE(barrier->Status()->rekey_pending);  // it did apply
  absl::Status cancel = barrier->CancelRekey();
  EXPECT_THAT(cancel, StatusIs(Code::kFailedPrecondition));
  EXPECT_THAT(std::string(cancel.message()), HasSubstr("no rekey is pending"));
  EXPECT_THAT(std::string(cancel.message()), HasSubstr("CompleteRekey"));
  // The new shares are the ones that open the root key now.
  ASSERT_OK(barrier->CompleteRekey(two));
  barrier_->Seal();
  ASSERT_OK(barrier_->Unseal((*fresh)[2]));
  ASSERT_FALSE(barrier_->Unseal((*fresh)[1])->sealed);
  EXPECT_EQ(barrier_->Get("secret")->value, "kept");
}

// Review item 2: a reservation that fails before the data write is
// UNAVAILABLE and says so. ABORTED would read as the caller's own
// check-and-set failing (the KV engine's read-modify-write loop retries on
// it), and "could not be confirmed" would speak of a write never tried.
class ReservationFaultTest : public BarrierFaultTest {
 protected:
  void SetUp() override {
    BarrierFaultTest::SetUp();
    barrier_ = MakeCountingBarrier(faults_.get());
    auto shares = barrier_->Initialize(1, 1);
    ASSERT_OK(shares);
    ASSERT_OK(barrier_->Unseal((*shares)[0]));
    ASSERT_OK(barrier_->Put("a", "1"));
    ASSERT_OK(barrier_->Put("a", "2"));  // the block of 2 is used up
  }
};

TEST_F(ReservationFaultTest, KeyringConflictIsUnavailableNotAborted) {
  // Every reservation attempt meets a changed keyring.
  faults_->FailNext(3, absl::AbortedError("injected"),
                    FaultInjectingBackend::kCommit);
  auto put = barrier_->Put("b", "3");
  EXPECT_THAT(put, StatusIs(Code::kUnavailable));
  EXPECT_THAT(std::string(put.status().message()),
              HasSubstr("could not reserve encryptions"));
  EXPECT_THAT(std::string(put.status().message()),
              HasSubstr("the data write was not attempted"));
  EXPECT_THAT(target_->Get("b"), StatusIs(Code::kNotFound));
  auto batch = barrier_->Commit({WriteOp::Put("b", "3").IfAbsent()});
  ASSERT_OK(batch);  // the faults are used up
  EXPECT_EQ(barrier_->Get("b")->value, "3");
}

TEST_F(ReservationFaultTest, InPlaceKeyringConflictIsUnavailable) {
  faults_->FailNext(3, absl::AbortedError("injected"),
                    FaultInjectingBackend::kCommit);
  std::vector<WriteOp> ops = RoomyPuts({"b", "c"}, "3");
  auto put = barrier_->CommitInPlace(absl::MakeSpan(ops));
  EXPECT_THAT(put, StatusIs(Code::kUnavailable));
  EXPECT_THAT(std::string(put.status().message()),
              HasSubstr("could not reserve encryptions"));
  EXPECT_THAT(target_->Get("b"), StatusIs(Code::kNotFound));
  EXPECT_THAT(target_->Get("c"), StatusIs(Code::kNotFound));
  std::vector<WriteOp> again = RoomyPuts({"b", "c"}, "3");
  ASSERT_OK(barrier_->CommitInPlace(absl::MakeSpan(again)));
  EXPECT_EQ(barrier_->Get("c")->value, "3");
}

TEST_F(ReservationFaultTest, UnknownReservationOutcomeIsNotADataWrite) {
  // The reservation commit applies, its answer is lost, the read-back fails.
  faults_->LoseNextCommitAcks(1);
  faults_->FailNext(1, absl::UnavailableError("injected"),
                    FaultInjectingBackend::kGet);
  auto put = barrier_->Commit({WriteOp::Put("b", "3").IfAbsent()});
  EXPECT_THAT(put, StatusIs(Code::kUnavailable));
  const std::string message(put.status().message());
  EXPECT_THAT(message, HasSubstr("could not reserve encryptions"));
  EXPECT_THAT(message, HasSubstr("the data write was not attempted"));
  EXPECT_THAT(message, Not(HasSubstr("could not be confirmed")));
  EXPECT_THAT(target_->Get("b"), StatusIs(Code::kNotFound));
  ASSERT_OK(barrier_->Put("b", "4"));  // follows the stored reservation
  EXPECT_EQ(barrier_->Get("b")->value, "4");
}

// Issue 9 item 12: an operation hung in backend I/O holds no key copy, so
// a Seal() meanwhile leaves none behind, and the operation, resumed,
// installs nothing. Every SecretBytes freed after Seal() returned is a key
// copy that outlived it.
struct WipeCounter {
  std::atomic<bool> counting{false};
  std::atomic<int> after_seal{0};
};

void CountWipe(const uint8_t*, size_t, void* arg) {
  auto* counter = static_cast<WipeCounter*>(arg);
  if (counter->counting.load()) ++counter->after_seal;
}

class SealDuringHungIoTest : public BarrierFaultTest {
 protected:
  void SetUp() override {
    BarrierFaultTest::SetUp();
    auto shares = barrier_->Initialize(1, 1);
    ASSERT_OK(shares);
    shares_ = *shares;
    ASSERT_OK(barrier_->Unseal(shares_[0]));
    SetSecretBytesWipeObserverForTesting(&CountWipe, &wipes_);
  }
  void TearDown() override {
    SetSecretBytesWipeObserverForTesting(nullptr, nullptr);
  }
  // Runs `op` in a thread, blocks it in the backend calls `ops`, seals,
  // then lets it finish.
  absl::Status SealWhileBlocked(uint32_t ops,
                                std::function<absl::Status()> op) {
    faults_->Block(ops);
    absl::Status result;
    std::thread t([&] { result = op(); });
    while (faults_->blocked_calls() == 0) std::this_thread::yield();
    barrier_->Seal();
    EXPECT_TRUE(
        BarrierTestPeer::impl(*barrier_)->KeyBuffersForTesting().empty());
    wipes_.counting.store(true);
    faults_->Unblock();
    t.join();
    wipes_.counting.store(false);
    return result;
  }
  std::vector<std::string> shares_;
  WipeCounter wipes_;
};

TEST_F(SealDuringHungIoTest, RotateKeepsNoKeyCopyAcrossIo) {
  absl::Status rotated = SealWhileBlocked(FaultInjectingBackend::kCommit, [&] {
    return barrier_->Rotate().status();
  });
  EXPECT_EQ(wipes_.after_seal.load(), 0);
  EXPECT_THAT(rotated,
              StatusIs(Code::kFailedPrecondition));  // refused after seal
  EXPECT_TRUE(barrier_->sealed());
  // The new term was stored and is loaded at the next unseal.
  ASSERT_OK(barrier_->Unseal(shares_[0]));
  EXPECT_EQ(barrier_->Status()->term, 2u);
}

TEST_F(SealDuringHungIoTest, KeyringReloadKeepsNoKeyCopyAcrossIo) {
  absl::Status reloaded = SealWhileBlocked(
      FaultInjectingBackend::kGet, [&] { return barrier_->ReloadKeyring(); });
  EXPECT_EQ(wipes_.after_seal.load(), 0);
  EXPECT_THAT(reloaded, StatusIs(Code::kFailedPrecondition));
  EXPECT_TRUE(barrier_->sealed());
}

TEST_F(BarrierFaultTest, BackendErrorDuringUnsealResetsProgress) {
  auto shares = barrier_->Initialize(3, 2);
  ASSERT_OK(shares);
  FailGetAt flaky(faults_.get());
  auto barrier = MakeBarrier(&flaky);
  ASSERT_OK(barrier->Unseal((*shares)[0]));
  // The threshold share: config read succeeds, the root key read fails.
  flaky.fail_at = flaky.gets + 2;
  EXPECT_THAT(barrier->Unseal((*shares)[1]), StatusIs(Code::kUnavailable));
  EXPECT_TRUE(barrier->sealed());
  EXPECT_EQ(barrier->Status()->progress, 0);
  // The keyring read fails: same.
  ASSERT_OK(barrier->Unseal((*shares)[0]));
  flaky.fail_at = flaky.gets + 3;
  EXPECT_THAT(barrier->Unseal((*shares)[1]), StatusIs(Code::kUnavailable));
  EXPECT_TRUE(barrier->sealed());
  EXPECT_EQ(barrier->Status()->progress, 0);
  // Retry from scratch works.
  ASSERT_OK(barrier_->Unseal((*shares)[1]));
  EXPECT_FALSE(barrier_->Unseal((*shares)[0])->sealed);
}

TEST_F(BarrierFaultTest, RotateCommitFailureKeepsTerm) {
  auto shares = barrier_->Initialize(1, 1);
  ASSERT_OK(shares);
  ASSERT_OK(barrier_->Unseal((*shares)[0]));
  faults_->FailNext(1, absl::UnavailableError("injected"),
                    FaultInjectingBackend::kCommit);
  EXPECT_THAT(barrier_->Rotate(), StatusIs(Code::kUnavailable));
  EXPECT_EQ(barrier_->Status()->term, 1u);
  faults_->LoseNextCommitAcks(1);
  auto term = barrier_->Rotate();
  ASSERT_OK(term);
  EXPECT_EQ(*term, 2u);
  ASSERT_OK(barrier_->Put("x", "y"));
  EXPECT_EQ(barrier_->Get("x")->value, "y");
}

TEST_F(BarrierFaultTest, BackendErrorsPassThroughTheDataPath) {
  auto shares = barrier_->Initialize(1, 1);
  ASSERT_OK(shares);
  ASSERT_OK(barrier_->Unseal((*shares)[0]));
  faults_->FailNext(1, absl::UnavailableError("injected"),
                    FaultInjectingBackend::kCommit);
  EXPECT_THAT(barrier_->Put("x", "y"), StatusIs(Code::kUnavailable));
  faults_->FailNext(1, absl::UnavailableError("injected"),
                    FaultInjectingBackend::kGet);
  EXPECT_THAT(barrier_->Get("x"), StatusIs(Code::kUnavailable));
  faults_->FailNext(1, absl::UnavailableError("injected"),
                    FaultInjectingBackend::kList);
  EXPECT_THAT(barrier_->List(""), StatusIs(Code::kUnavailable));
}

// ---------------------------------------------------------------- fences

TEST_F(BarrierTest, FencedWritesAreRefusedWhenStale) {
  backend_ = NewInMemoryBackend();
  barrier_ = MakeBarrier(backend_.get());
  HaBackend* ha = backend_->ha();
  ASSERT_NE(ha, nullptr);
  AcquireOptions acquire;
  acquire.holder = "node-a";
  auto grant = ha->Acquire(acquire);
  ASSERT_OK(grant);
  const FenceToken fence = (*grant)->fence();
  const FenceToken stale = fence + 1000;
  EXPECT_THAT(barrier_->Initialize(3, 2, stale),
              StatusIs(Code::kFailedPrecondition));
  EXPECT_FALSE(barrier_->Status()->initialized);
  auto shares = barrier_->Initialize(3, 2, fence);
  ASSERT_OK(shares);
  Unseal(barrier_.get(), *shares, 2);
  ASSERT_OK(barrier_->Put("a", "1", fence));
  EXPECT_THAT(barrier_->Put("a", "2", stale),
              StatusIs(Code::kFailedPrecondition));
  EXPECT_THAT(barrier_->Delete("a", stale),
              StatusIs(Code::kFailedPrecondition));
  EXPECT_THAT(barrier_->Commit({WriteOp::Put("a", "3")}, stale),
              StatusIs(Code::kFailedPrecondition));
  EXPECT_THAT(barrier_->Rotate(stale), StatusIs(Code::kFailedPrecondition));
  EXPECT_THAT(barrier_->Rekey(*shares, 3, 2, stale),
              StatusIs(Code::kFailedPrecondition));
  EXPECT_EQ(barrier_->Get("a")->value, "1");
  EXPECT_EQ(barrier_->Status()->term, 1u);
  ASSERT_OK(barrier_->Rotate(fence));
  ASSERT_OK((*grant)->Release());
  EXPECT_THAT(barrier_->Put("a", "4", fence),
              StatusIs(Code::kFailedPrecondition));
  EXPECT_EQ(barrier_->Get("a")->value, "1");
}

// On a backend with HA, a write without a fence is misuse (a node that is
// not the leader could overwrite the leader's data): refused, nothing
// written. Initialize is the one exception (it runs before any leader).
TEST_F(BarrierTest, HaBackendRequiresAFence) {
  backend_ = NewInMemoryBackend();
  barrier_ = MakeBarrier(backend_.get());
  auto shares = barrier_->Initialize(3, 2);  // unfenced: allowed
  ASSERT_OK(shares);
  Unseal(barrier_.get(), *shares, 2);
  AcquireOptions acquire;
  acquire.holder = "node-a";
  auto grant = backend_->ha()->Acquire(acquire);
  ASSERT_OK(grant);
  const FenceToken fence = (*grant)->fence();
  ASSERT_OK(barrier_->Put("a", "1", fence));
  auto put = barrier_->Put("a", "2");
  EXPECT_THAT(put, StatusIs(Code::kFailedPrecondition));
  EXPECT_THAT(std::string(put.status().message()), HasSubstr("fence"));
  EXPECT_FALSE(IsStaleFence(put.status()));
  EXPECT_THAT(barrier_->Delete("a"), StatusIs(Code::kFailedPrecondition));
  EXPECT_THAT(barrier_->Commit({WriteOp::Put("a", "3")}),
              StatusIs(Code::kFailedPrecondition));
  EXPECT_THAT(barrier_->Commit({WriteOp::Delete("a")}),
              StatusIs(Code::kFailedPrecondition));
  EXPECT_THAT(barrier_->Rotate(), StatusIs(Code::kFailedPrecondition));
  EXPECT_THAT(barrier_->Rekey(*shares, 3, 2),
              StatusIs(Code::kFailedPrecondition));
  EXPECT_EQ(barrier_->Get("a")->value, "1");
  EXPECT_EQ(barrier_->Status()->term, 1u);
  auto rev = backend_->Revision();
  ASSERT_OK(rev);
  EXPECT_THAT(barrier_->Put("b", "x"), StatusIs(Code::kFailedPrecondition));
  EXPECT_EQ(*backend_->Revision(), *rev);  // nothing written
}

// ------------------------------------------------- no secrets in messages

TEST_F(BarrierTest, NoKeyOrShareBytesInAnyStatusMessage) {
  std::vector<absl::Status> seen;
  auto record = [&](const absl::Status& s) {
    if (!s.ok()) seen.push_back(s);
  };
  auto shares = barrier_->Initialize(5, 3);
  ASSERT_OK(shares);
  record(barrier_->Initialize(5, 3).status());
  std::string bad = (*shares)[0];
  bad[0] ^= 1;
  record(barrier_->Unseal((*shares)[1]).status());
  record(barrier_->Unseal((*shares)[2]).status());
  record(barrier_->Unseal(bad).status());
  record(barrier_->Unseal((*shares)[1] + "zz").status());
  record(barrier_->Rekey({bad, (*shares)[1], (*shares)[2]}, 3, 2).status());
  record(
      barrier_->Rekey({(*shares)[1], (*shares)[1].substr(2)}, 3, 2).status());
  Unseal(barrier_.get(), *shares, 3);
  std::vector<std::string> secrets = *shares;
  for (const auto& [data, size] :
       BarrierTestPeer::impl(*barrier_)->KeyBuffersForTesting()) {
    secrets.emplace_back(static_cast<const char*>(data),
                         std::min<size_t>(size, 32));
  }
  ASSERT_OK(barrier_->Put("p", "plaintext-secret"));
  std::string stored = backend_->Get("p")->value;
  stored[20] ^= 1;
  ASSERT_OK(backend_->Put("p", stored));
  record(barrier_->Get("p").status());
  record(barrier_->Get("core/keyring").status());
  ASSERT_GE(seen.size(), 7u);
  for (const absl::Status& s : seen) {
    const std::string message(s.message());
    for (const std::string& secret : secrets) {
      for (size_t n : {size_t{8}, secret.size()}) {
        const std::string part = secret.substr(0, n);
        EXPECT_THAT(message, Not(HasSubstr(part)));
        EXPECT_THAT(message, Not(HasSubstr(absl::BytesToHexString(part))));
        EXPECT_THAT(message, Not(HasSubstr(absl::Base64Escape(part))));
      }
    }
    EXPECT_THAT(message, Not(HasSubstr("plaintext-secret")));
  }
}

// ----------------------------------------------------------- concurrency

TEST_F(BarrierTest, ConcurrentReadsWritesRotationsAndSeals) {
  auto shares = InitAndUnseal(barrier_.get(), 3, 2);
  auto standby = MakeBarrier(backend_.get());
  Unseal(standby.get(), shares, 2);
  for (int i = 0; i < 8; ++i) {
    ASSERT_OK(barrier_->Put(absl::StrCat("k", i), absl::StrCat("v", i)));
  }
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&, t] {
      int i = t;
      while (!stop.load()) {
        const std::string key = absl::StrCat("k", i++ % 8);
        Barrier* b = (i % 2) ? barrier_.get() : standby.get();
        auto got = b->Get(key);
        if (got.ok()) {
          if (got->value != "v" + key.substr(1)) ++bad;
        } else if (got.status().code() != Code::kFailedPrecondition) {
          ++bad;
        }
        auto put = barrier_->Put(key, "v" + key.substr(1));
        if (!put.ok() && put.status().code() != Code::kFailedPrecondition) {
          ++bad;
        }
      }
    });
  }
  threads.emplace_back([&] {
    for (int i = 0; i < 20; ++i) {
      auto r = barrier_->Rotate();
      if (!r.ok() && r.status().code() != Code::kFailedPrecondition) ++bad;
    }
  });
  threads.emplace_back([&] {
    for (int i = 0; i < 10; ++i) {
      standby->Seal();
      for (int j = 0; j < 2; ++j) {
        auto s = standby->Unseal(shares[j]);
        if (!s.ok() && s.status().code() != Code::kAborted) ++bad;
      }
    }
  });
  threads[3].join();
  threads[4].join();
  stop.store(true);
  for (int t = 0; t < 3; ++t) threads[t].join();
  EXPECT_EQ(bad.load(), 0);
  standby->Seal();
  Unseal(standby.get(), shares, 2);
  EXPECT_EQ(standby->Get("k3")->value, "v3");
}

}  // namespace
}  // namespace strongbox
