#include "strongbox/barrier.h"

#include <algorithm>
#include <atomic>
#include <cstring>
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
#include "strongbox/testing/fault_injecting_backend.h"

namespace strongbox {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using Code = absl::StatusCode;

absl::StatusCode CodeOf(const absl::Status& s) { return s.code(); }
template <typename T>
absl::StatusCode CodeOf(const absl::StatusOr<T>& s) {
  return s.status().code();
}
#define EXPECT_CODE(expr, want) EXPECT_EQ(CodeOf(expr), want)
#define ASSERT_OK(expr) ASSERT_TRUE((expr).ok()) << (expr).status()

std::unique_ptr<Barrier> MakeBarrier(Backend* backend) {
  BarrierOptions options;
  options.backend = backend;
  auto barrier = Barrier::Create(options);
  EXPECT_TRUE(barrier.ok()) << barrier.status();
  return *std::move(barrier);
}

// Every status message seen by the test, to check none leaks secrets.
class BarrierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    backend_ = NewInMemoryBackend();
    barrier_ = MakeBarrier(backend_.get());
  }

  std::vector<std::string> InitAndUnseal(Barrier* barrier, int shares = 5,
                                         int threshold = 3) {
    auto out = barrier->Initialize(shares, threshold);
    EXPECT_TRUE(out.ok()) << out.status();
    if (!out.ok()) return {};
    EXPECT_TRUE(barrier->sealed());
    Unseal(barrier, *out, threshold);
    return *out;
  }

  void Unseal(Barrier* barrier, const std::vector<std::string>& shares,
              int threshold) {
    for (int i = 0; i < threshold; ++i) {
      auto status = barrier->Unseal(shares[i]);
      ASSERT_TRUE(status.ok()) << status.status();
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

TEST(BarrierCreateTest, ValidatesOptions) {
  EXPECT_CODE(Barrier::Create(BarrierOptions{}), Code::kInvalidArgument);
  auto backend = NewInMemoryBackend();
  for (const char* prefix : {"", "core", "/core/", "a//b/"}) {
    BarrierOptions options;
    options.backend = backend.get();
    options.core_prefix = prefix;
    EXPECT_CODE(Barrier::Create(options), Code::kInvalidArgument) << prefix;
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
  EXPECT_CODE(barrier_->Unseal(std::string(33, 'x')),
              Code::kFailedPrecondition);
  EXPECT_CODE(barrier_->Get("a"), Code::kFailedPrecondition);
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
  EXPECT_CODE(barrier_->Initialize(3, 2), Code::kFailedPrecondition);
  auto other = MakeBarrier(backend_.get());
  EXPECT_CODE(other->Initialize(1, 1), Code::kFailedPrecondition);
}

TEST_F(BarrierTest, InitializeValidatesParameters) {
  for (auto [n, t] : std::vector<std::pair<int, int>>{
           {0, 0}, {3, 1}, {2, 3}, {256, 2}, {-1, 1}, {1, 2}, {5, 0}}) {
    EXPECT_CODE(barrier_->Initialize(n, t), Code::kInvalidArgument)
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
  EXPECT_CODE(barrier_->Unseal((*shares)[0] + "x"), Code::kInvalidArgument);
  auto status = barrier_->Unseal((*shares)[0]);
  ASSERT_OK(status);
  EXPECT_FALSE(status->sealed);
  EXPECT_EQ(status->term, 1u);
  ASSERT_OK(barrier_->Put("k", "v"));
  barrier_->Seal();
  std::string wrong = (*shares)[0];
  wrong[5] ^= 1;
  EXPECT_CODE(barrier_->Unseal(wrong), Code::kInvalidArgument);
  EXPECT_TRUE(barrier_->sealed());
}

// --------------------------------------------------------------- unseal

TEST_F(BarrierTest, UnsealProgressAndData) {
  auto shares = barrier_->Initialize(5, 3);
  ASSERT_OK(shares);
  EXPECT_CODE(barrier_->Put("a", "1"), Code::kFailedPrecondition);
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
  EXPECT_CODE(barrier_->Get("x"), Code::kFailedPrecondition);
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
  EXPECT_CODE(barrier_->Unseal(""), Code::kInvalidArgument);
  EXPECT_CODE(barrier_->Unseal((*shares)[1].substr(1)), Code::kInvalidArgument);
  EXPECT_CODE(barrier_->Unseal((*shares)[1] + "x"), Code::kInvalidArgument);
  std::string same_x = (*shares)[1];
  same_x.back() = (*shares)[0].back();
  EXPECT_CODE(barrier_->Unseal(same_x), Code::kInvalidArgument);
  auto status = barrier_->Status();
  ASSERT_OK(status);
  EXPECT_EQ(status->progress, 1);
  ASSERT_OK(barrier_->Unseal((*shares)[1]));
  auto s = barrier_->Unseal((*shares)[2]);
  ASSERT_OK(s);
  EXPECT_FALSE(s->sealed);
}

TEST_F(BarrierTest, WrongSharesFailResetAndStaySealed) {
  auto shares = barrier_->Initialize(5, 3);
  ASSERT_OK(shares);
  std::string tampered = (*shares)[2];
  tampered[0] ^= 0x80;
  ASSERT_OK(barrier_->Unseal((*shares)[0]));
  ASSERT_OK(barrier_->Unseal((*shares)[1]));
  auto s = barrier_->Unseal(tampered);
  EXPECT_CODE(s, Code::kInvalidArgument);
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
  auto other_backend = NewInMemoryBackend();
  auto other = MakeBarrier(other_backend.get());
  auto foreign = other->Initialize(3, 2);
  ASSERT_OK(foreign);
  ASSERT_OK(barrier_->Unseal((*foreign)[0]));
  EXPECT_CODE(barrier_->Unseal((*foreign)[1]), Code::kInvalidArgument);
  EXPECT_TRUE(barrier_->sealed());
  // Mixed: one ours, one theirs.
  ASSERT_OK(barrier_->Unseal((*shares)[0]));
  EXPECT_CODE(barrier_->Unseal((*foreign)[1]), Code::kInvalidArgument);
  EXPECT_TRUE(barrier_->sealed());
}

// ------------------------------------------------------------------ seal

TEST_F(BarrierTest, SealedOperationsAreRefused) {
  InitAndUnseal(barrier_.get());
  ASSERT_OK(barrier_->Put("a/b", "v"));
  barrier_->Seal();
  barrier_->Seal();  // idempotent
  EXPECT_TRUE(barrier_->sealed());
  EXPECT_CODE(barrier_->Get("a/b"), Code::kFailedPrecondition);
  EXPECT_CODE(barrier_->Put("a/b", "w"), Code::kFailedPrecondition);
  EXPECT_CODE(barrier_->Delete("a/b"), Code::kFailedPrecondition);
  EXPECT_CODE(barrier_->List("a/"), Code::kFailedPrecondition);
  EXPECT_CODE(barrier_->Commit({WriteOp::Put("a/c", "v")}),
              Code::kFailedPrecondition);
  EXPECT_CODE(barrier_->Rotate(), Code::kFailedPrecondition);
  EXPECT_EQ(barrier_->ReloadKeyring().code(), Code::kFailedPrecondition);
  auto status = barrier_->Status();
  ASSERT_OK(status);
  EXPECT_TRUE(status->sealed);
  EXPECT_EQ(status->term, 0u);
  // Nothing was written while sealed.
  auto raw = backend_->Get("a/c");
  EXPECT_CODE(raw, Code::kNotFound);
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
  SecretBytes::SetWipeObserverForTesting(&RecordWipe, &log);
  crypto::SetCleanseObserverForTesting(&RecordWipe, &log);
  barrier_->Seal();
  crypto::SetCleanseObserverForTesting(nullptr, nullptr);
  SecretBytes::SetWipeObserverForTesting(nullptr, nullptr);
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
  SecretBytes::SetWipeObserverForTesting(&RecordWipe, &log);
  barrier_->ResetUnsealProgress();
  SecretBytes::SetWipeObserverForTesting(nullptr, nullptr);
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
    EXPECT_CODE(got, Code::kDataLoss) << "bit " << bit;
  }
  for (size_t len = 0; len < good.size(); ++len) {
    ASSERT_OK(backend_->Put("app/secret", good.substr(0, len)));
    EXPECT_CODE(barrier_->Get("app/secret"), Code::kDataLoss) << "len " << len;
  }
  ASSERT_OK(backend_->Put("app/secret", good + "x"));
  EXPECT_CODE(barrier_->Get("app/secret"), Code::kDataLoss);
  // Moved to another path.
  ASSERT_OK(backend_->Put("app/other", good));
  EXPECT_CODE(barrier_->Get("app/other"), Code::kDataLoss);
  // Intact again: opens.
  ASSERT_OK(backend_->Put("app/secret", good));
  auto entry = barrier_->Get("app/secret");
  ASSERT_OK(entry);
  EXPECT_EQ(entry->value, "the value");
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
  EXPECT_CODE(barrier_->Get("missing"), Code::kNotFound);
}

TEST_F(BarrierTest, UnknownTermIsDataLossAfterOneReload) {
  InitAndUnseal(barrier_.get());
  ASSERT_OK(barrier_->Put("x", "v"));
  std::string stored = backend_->Get("x")->value;
  stored[3] = 9;  // term 9, which no keyring has
  ASSERT_OK(backend_->Put("x", stored));
  auto got = barrier_->Get("x");
  EXPECT_CODE(got, Code::kDataLoss);
  EXPECT_THAT(std::string(got.status().message()), HasSubstr("term"));
  stored[3] = 0;  // term 0
  ASSERT_OK(backend_->Put("x", stored));
  EXPECT_CODE(barrier_->Get("x"), Code::kDataLoss);
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
  EXPECT_CODE(barrier_->Unseal(shares[2]), Code::kDataLoss);
  EXPECT_TRUE(barrier_->sealed());
  ASSERT_OK(backend_->Put("core/keyring", keyring));
  ASSERT_OK(backend_->Put("core/seal-config", "\xff\xff"));
  EXPECT_CODE(barrier_->Unseal(shares[0]), Code::kDataLoss);
  EXPECT_CODE(barrier_->Status(), Code::kDataLoss);
}

// --------------------------------------------------------- reserved paths

TEST_F(BarrierTest, CorePrefixIsReserved) {
  InitAndUnseal(barrier_.get());
  EXPECT_CODE(barrier_->Put("core/keyring", "x"), Code::kInvalidArgument);
  EXPECT_CODE(barrier_->Get("core/keyring"), Code::kInvalidArgument);
  EXPECT_CODE(barrier_->Delete("core/root-key"), Code::kInvalidArgument);
  EXPECT_CODE(barrier_->List("core/"), Code::kInvalidArgument);
  EXPECT_CODE(barrier_->Commit({WriteOp::Put("a", "1"),
                                WriteOp::Delete("core/seal-config")}),
              Code::kInvalidArgument);
  EXPECT_CODE(backend_->Get("a"), Code::kNotFound);
  ASSERT_OK(barrier_->Put("corex", "1"));
  ASSERT_OK(barrier_->Put("app/x", "1"));
  auto root = barrier_->List("");
  ASSERT_OK(root);
  EXPECT_THAT(*root, ElementsAre("app/", "corex"));
}

TEST(BarrierNestedPrefixTest, ListHidesNestedCoreFolder) {
  auto backend = NewInMemoryBackend();
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
  EXPECT_CODE(barrier->Get("sys/core/keyring"), Code::kInvalidArgument);
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
  EXPECT_CODE(barrier_->Commit({WriteOp::Put("a", "x").IfAbsent()}),
              Code::kAborted);
  auto rev2 = barrier_->Commit({WriteOp::Put("a", "3").IfVersion(*rev),
                                WriteOp::Delete("b"),
                                WriteOp::Check("c").IfVersion(*rev)});
  ASSERT_OK(rev2);
  EXPECT_EQ(barrier_->Get("a")->value, "3");
  EXPECT_CODE(barrier_->Get("b"), Code::kNotFound);
  EXPECT_CODE(barrier_->Delete("a"), absl::StatusCode::kOk);
  EXPECT_CODE(barrier_->Get("a"), Code::kNotFound);
}

// ----------------------------------------------------------------- rekey

TEST_F(BarrierTest, RekeyThenOldSharesFail) {
  auto old_shares = InitAndUnseal(barrier_.get(), 5, 3);
  ASSERT_OK(barrier_->Put("keep", "me"));
  EXPECT_CODE(barrier_->Rekey({old_shares[0], old_shares[1]}, 3, 2),
              Code::kInvalidArgument);
  auto new_shares =
      barrier_->Rekey({old_shares[3], old_shares[1], old_shares[4]}, 3, 2);
  ASSERT_OK(new_shares);
  ASSERT_EQ(new_shares->size(), 3u);
  EXPECT_FALSE(barrier_->sealed());  // rekey keeps the seal state
  auto status = barrier_->Status();
  ASSERT_OK(status);
  EXPECT_EQ(status->shares, 3);
  EXPECT_EQ(status->threshold, 2);
  barrier_->Seal();
  // Old shares: a threshold (now 2) of them no longer opens the root key.
  ASSERT_OK(barrier_->Unseal(old_shares[0]));
  EXPECT_CODE(barrier_->Unseal(old_shares[1]), Code::kInvalidArgument);
  EXPECT_TRUE(barrier_->sealed());
  EXPECT_CODE(barrier_->Rekey(old_shares, 3, 2), Code::kInvalidArgument);
  Unseal(barrier_.get(), *new_shares, 2);
  EXPECT_EQ(barrier_->Get("keep")->value, "me");  // no data rewritten
}

TEST_F(BarrierTest, RekeyValidatesAndRefusesWrongShares) {
  auto shares = barrier_->Initialize(3, 2);
  ASSERT_OK(shares);
  EXPECT_CODE(barrier_->Rekey(*shares, 2, 3), Code::kInvalidArgument);
  EXPECT_CODE(barrier_->Rekey(*shares, 0, 0), Code::kInvalidArgument);
  std::string wrong = (*shares)[0];
  wrong[0] ^= 1;
  EXPECT_CODE(barrier_->Rekey({wrong, (*shares)[1]}, 3, 2),
              Code::kInvalidArgument);
  EXPECT_CODE(barrier_->Rekey({"short", (*shares)[1]}, 3, 2),
              Code::kInvalidArgument);
  auto fresh = NewInMemoryBackend();
  auto uninit = MakeBarrier(fresh.get());
  EXPECT_CODE(uninit->Rekey(*shares, 3, 2), Code::kFailedPrecondition);
  // To a single key and back.
  auto single = barrier_->Rekey(*shares, 1, 1);
  ASSERT_OK(single);
  ASSERT_EQ(single->size(), 1u);
  EXPECT_EQ((*single)[0].size(), 32u);
  auto back = barrier_->Rekey(*single, 4, 3);
  ASSERT_OK(back);
  Unseal(barrier_.get(), *back, 3);
}

TEST_F(BarrierTest, RekeyDiscardsUnsealProgress) {
  auto shares = barrier_->Initialize(3, 2);
  ASSERT_OK(shares);
  ASSERT_OK(barrier_->Unseal((*shares)[0]));
  ASSERT_OK(barrier_->Rekey(*shares, 3, 2));
  EXPECT_EQ(barrier_->Status()->progress, 0);
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
  EXPECT_CODE(standby->Rotate(), Code::kAborted);
  ASSERT_TRUE(standby->ReloadKeyring().ok());
  EXPECT_EQ(standby->Status()->term, 3u);
  auto t = standby->Rotate();
  ASSERT_OK(t);
  EXPECT_EQ(*t, 4u);
  ASSERT_OK(standby->Put("from-standby", "4"));
  EXPECT_EQ(barrier_->Get("from-standby")->value, "4");
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
    target_ = NewInMemoryBackend();
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
  EXPECT_CODE(barrier_->Initialize(3, 2), Code::kUnavailable);
  EXPECT_FALSE(barrier_->Status()->initialized);
  EXPECT_CODE(target_->Get("core/root-key"), Code::kNotFound);
  auto shares = barrier_->Initialize(3, 2);
  ASSERT_OK(shares);
  ASSERT_OK(barrier_->Unseal((*shares)[0]));
  ASSERT_FALSE(barrier_->Unseal((*shares)[1])->sealed);
}

TEST_F(BarrierFaultTest, FailedReadBeforeInitializeCanBeRetried) {
  faults_->FailNext(1, absl::UnavailableError("injected"),
                    FaultInjectingBackend::kGet);
  EXPECT_CODE(barrier_->Initialize(3, 2), Code::kUnavailable);
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
  EXPECT_CODE(result, Code::kUnavailable);
  EXPECT_THAT(std::string(result.status().message()),
              HasSubstr("could not be confirmed"));
}

TEST_F(BarrierFaultTest, BackendErrorDuringUnsealResetsProgress) {
  auto shares = barrier_->Initialize(3, 2);
  ASSERT_OK(shares);
  FailGetAt flaky(faults_.get());
  auto barrier = MakeBarrier(&flaky);
  ASSERT_OK(barrier->Unseal((*shares)[0]));
  // The threshold share: config read succeeds, the root key read fails.
  flaky.fail_at = flaky.gets + 2;
  EXPECT_CODE(barrier->Unseal((*shares)[1]), Code::kUnavailable);
  EXPECT_TRUE(barrier->sealed());
  EXPECT_EQ(barrier->Status()->progress, 0);
  // The keyring read fails: same.
  ASSERT_OK(barrier->Unseal((*shares)[0]));
  flaky.fail_at = flaky.gets + 3;
  EXPECT_CODE(barrier->Unseal((*shares)[1]), Code::kUnavailable);
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
  EXPECT_CODE(barrier_->Rotate(), Code::kUnavailable);
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
  EXPECT_CODE(barrier_->Put("x", "y"), Code::kUnavailable);
  faults_->FailNext(1, absl::UnavailableError("injected"),
                    FaultInjectingBackend::kGet);
  EXPECT_CODE(barrier_->Get("x"), Code::kUnavailable);
  faults_->FailNext(1, absl::UnavailableError("injected"),
                    FaultInjectingBackend::kList);
  EXPECT_CODE(barrier_->List(""), Code::kUnavailable);
}

// ---------------------------------------------------------------- fences

TEST_F(BarrierTest, FencedWritesAreRefusedWhenStale) {
  HaBackend* ha = backend_->ha();
  ASSERT_NE(ha, nullptr);
  AcquireOptions acquire;
  acquire.holder = "node-a";
  auto grant = ha->Acquire(acquire);
  ASSERT_OK(grant);
  const FenceToken fence = (*grant)->fence();
  const FenceToken stale = fence + 1000;
  EXPECT_CODE(barrier_->Initialize(3, 2, stale), Code::kFailedPrecondition);
  EXPECT_FALSE(barrier_->Status()->initialized);
  auto shares = barrier_->Initialize(3, 2, fence);
  ASSERT_OK(shares);
  Unseal(barrier_.get(), *shares, 2);
  ASSERT_OK(barrier_->Put("a", "1", fence));
  EXPECT_CODE(barrier_->Put("a", "2", stale), Code::kFailedPrecondition);
  EXPECT_CODE(barrier_->Delete("a", stale), Code::kFailedPrecondition);
  EXPECT_CODE(barrier_->Commit({WriteOp::Put("a", "3")}, stale),
              Code::kFailedPrecondition);
  EXPECT_CODE(barrier_->Rotate(stale), Code::kFailedPrecondition);
  EXPECT_CODE(barrier_->Rekey(*shares, 3, 2, stale), Code::kFailedPrecondition);
  EXPECT_EQ(barrier_->Get("a")->value, "1");
  EXPECT_EQ(barrier_->Status()->term, 1u);
  ASSERT_OK(barrier_->Rotate(fence));
  ASSERT_TRUE((*grant)->Release().ok());
  EXPECT_CODE(barrier_->Put("a", "4", fence), Code::kFailedPrecondition);
  EXPECT_EQ(barrier_->Get("a")->value, "1");
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
