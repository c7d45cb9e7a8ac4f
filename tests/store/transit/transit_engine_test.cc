#include "lib/store/transit_engine.h"

#include <atomic>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/store/transit_records.pb.h"
#include "lib/util/mutex.h"
#include "strongbox/barrier.h"
#include "strongbox/in_memory_backend.h"
#include "strongbox/secret_bytes.h"
#include "strongbox/testing/fake_clock.h"
#include "strongbox/testing/fault_injecting_backend.h"

namespace strongbox {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::StartsWith;
using Code = absl::StatusCode;

int C(Code code) { return static_cast<int>(code); }

std::unique_ptr<Barrier> MakeBarrier(Backend* backend) {
  BarrierOptions options;
  options.backend = backend;
  auto barrier = Barrier::Create(options);
  EXPECT_TRUE(barrier.ok()) << barrier.status();
  return *std::move(barrier);
}

store::Request KeyOp(int which, absl::string_view name) {
  store::Request r;
  store::TransitKeyRequest* k = nullptr;
  switch (which) {
    case 0:
      k = r.mutable_transit_create_key();
      break;
    case 1:
      k = r.mutable_transit_rotate_key();
      break;
    case 2:
      k = r.mutable_transit_read_key();
      break;
    default:
      k = r.mutable_transit_delete_key();
      break;
  }
  k->set_name(std::string(name));
  return r;
}

struct Item {
  std::string data;  // plaintext (encrypt) or ciphertext (decrypt, rewrap)
  std::string context;
};

// Two nodes over one backend: "active" holds a real lease grant and writes
// under its fence; "standby" is a second barrier and engine with no fence.
class TransitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    InMemoryBackendOptions options;
    options.clock = &clock_;
    shared_ = NewInMemoryBackend(options);
    backend_ = std::make_unique<FaultInjectingBackend>(shared_.get(), &clock_);
    barrier_a_ = MakeBarrier(backend_.get());
    barrier_b_ = MakeBarrier(backend_.get());
    auto shares = barrier_a_->Initialize(1, 1);
    ASSERT_TRUE(shares.ok()) << shares.status();
    ASSERT_TRUE(barrier_a_->Unseal((*shares)[0]).ok());
    ASSERT_TRUE(barrier_b_->Unseal((*shares)[0]).ok());
    WipeString((*shares)[0]);

    AcquireOptions acquire;
    acquire.holder = "node-a";
    acquire.ttl = absl::Hours(1);
    auto grant = backend_->ha()->Acquire(acquire);
    ASSERT_TRUE(grant.ok()) << grant.status();
    grant_ = *std::move(grant);

    active_.barrier = barrier_a_.get();
    active_.write_fence = grant_->fence();
    active_.active_fence = grant_->fence();
    active_.clock = &clock_;
    standby_.barrier = barrier_b_.get();
    standby_.clock = &clock_;
  }

  void TearDown() override { ScanForKeyBytes(); }

  absl::Status Run(TransitEngine& engine, const EngineCall& call,
                   const store::Request& request, store::Response* response) {
    absl::Status s = engine.Execute(request, call, response);
    MutexLock lock(&seen_mu_);
    seen_.push_back(response->SerializeAsString());
    seen_.push_back(std::string(s.message()));
    return s;
  }
  absl::Status RunA(const store::Request& r, store::Response* out = nullptr) {
    store::Response local;
    return Run(active_engine_, active_, r, out ? out : &local);
  }

  absl::Status Create(absl::string_view name, store::Response* out = nullptr) {
    return RunA(KeyOp(0, name), out);
  }
  absl::Status Rotate(absl::string_view name, store::Response* out = nullptr) {
    return RunA(KeyOp(1, name), out);
  }
  absl::Status Delete(absl::string_view name, store::Response* out = nullptr) {
    return RunA(KeyOp(3, name), out);
  }
  absl::StatusOr<store::TransitKeyInfo> Read(TransitEngine& engine,
                                             const EngineCall& call,
                                             absl::string_view name) {
    store::Response response;
    absl::Status s = Run(engine, call, KeyOp(2, name), &response);
    if (!s.ok()) return s;
    return response.transit_key();
  }
  absl::StatusOr<store::TransitKeyInfo> ReadA(absl::string_view name) {
    return Read(active_engine_, active_, name);
  }
  absl::Status Config(absl::string_view name, uint32_t min_dec,
                      uint32_t min_enc, int deletion_allowed = -1,
                      store::Response* out = nullptr) {
    store::Request r;
    auto* c = r.mutable_transit_config_key();
    c->set_name(std::string(name));
    c->set_min_decryption_version(min_dec);
    c->set_min_encryption_version(min_enc);
    if (deletion_allowed >= 0) c->set_deletion_allowed(deletion_allowed == 1);
    return RunA(r, out);
  }

  // op: 0 encrypt, 1 decrypt, 2 rewrap.
  absl::StatusOr<std::vector<store::TransitResultItem>> Batch(
      TransitEngine& engine, const EngineCall& call, int op,
      absl::string_view name, const std::vector<Item>& items) {
    store::Request r;
    store::TransitBatchRequest* b = op == 0   ? r.mutable_transit_encrypt()
                                    : op == 1 ? r.mutable_transit_decrypt()
                                              : r.mutable_transit_rewrap();
    b->set_name(std::string(name));
    for (const Item& item : items) {
      store::TransitItem* i = b->add_items();
      if (op == 0) {
        i->set_plaintext(item.data);
      } else {
        i->set_ciphertext(item.data);
      }
      i->set_context(item.context);
    }
    store::Response response;
    absl::Status s = Run(engine, call, r, &response);
    if (!s.ok()) return s;
    EXPECT_EQ(response.transit_batch().items_size(),
              static_cast<int>(items.size()));
    return std::vector<store::TransitResultItem>(
        response.transit_batch().items().begin(),
        response.transit_batch().items().end());
  }

  // One item through the active (or standby) engine; returns the item.
  store::TransitResultItem One(int op, absl::string_view name,
                               absl::string_view data,
                               absl::string_view context = "",
                               bool standby = false) {
    auto out = Batch(standby ? standby_engine_ : active_engine_,
                     standby ? standby_ : active_, op, name,
                     {Item{std::string(data), std::string(context)}});
    EXPECT_TRUE(out.ok()) << out.status();
    if (!out.ok() || out->empty()) return store::TransitResultItem();
    return (*out)[0];
  }
  std::string Encrypt(absl::string_view name, absl::string_view plaintext,
                      absl::string_view context = "", bool standby = false) {
    store::TransitResultItem item = One(0, name, plaintext, context, standby);
    EXPECT_EQ(item.code(), 0) << item.error();
    return item.ciphertext();
  }

  // Every key's bytes, read straight from storage.
  std::vector<std::string> AllKeyBytes() {
    std::vector<std::string> keys;
    auto names = barrier_a_->List("transit/keys/");
    if (!names.ok()) return keys;
    for (const std::string& name : *names) {
      auto entry = barrier_a_->Get(absl::StrCat("transit/keys/", name));
      if (!entry.ok()) continue;
      store::TransitKeyRecord record;
      EXPECT_TRUE(record.ParseFromString(entry->value));
      for (const auto& v : record.versions()) keys.push_back(v.key());
    }
    return keys;
  }
  void ScanForKeyBytes() {
    if (barrier_a_ == nullptr || barrier_a_->sealed()) return;
    for (const std::string& key : AllKeyBytes()) {
      ASSERT_EQ(key.size(), 32u);
      const std::string b64 = absl::Base64Escape(key);
      const std::string hex = absl::BytesToHexString(key);
      MutexLock lock(&seen_mu_);
      for (const std::string& s : seen_) {
        ASSERT_FALSE(absl::StrContains(s, key)) << "key bytes leaked";
        ASSERT_FALSE(absl::StrContains(s, b64.substr(0, 40)));
        ASSERT_FALSE(absl::StrContains(s, hex));
      }
    }
  }

  FakeClock clock_;
  std::unique_ptr<Backend> shared_;
  std::unique_ptr<FaultInjectingBackend> backend_;
  std::unique_ptr<Barrier> barrier_a_;
  std::unique_ptr<Barrier> barrier_b_;
  std::unique_ptr<LeadershipGrant> grant_;
  EngineCall active_;
  EngineCall standby_;
  TransitEngine active_engine_;
  TransitEngine standby_engine_;
  Mutex seen_mu_;
  std::vector<std::string> seen_  // every response and message
      ABSL_GUARDED_BY(seen_mu_);
};

// ------------------------------------------------------------- key writes

TEST_F(TransitTest, CreateReadRotate) {
  store::Response created;
  ASSERT_TRUE(Create("orders", &created).ok());
  EXPECT_GT(created.index(), 0u);
  EXPECT_EQ(created.transit_key().name(), "orders");
  EXPECT_EQ(created.transit_key().latest_version(), 1u);
  EXPECT_EQ(created.transit_key().min_decryption_version(), 1u);
  EXPECT_EQ(created.transit_key().min_encryption_version(), 0u);
  EXPECT_FALSE(created.transit_key().deletion_allowed());
  EXPECT_EQ(created.transit_key().version_created_unix_micros().at(1),
            absl::ToUnixMicros(clock_.Now()));

  // Creating an existing key is a no-op (as in Vault).
  store::Response again;
  ASSERT_TRUE(Create("orders", &again).ok());
  EXPECT_EQ(again.index(), created.index());
  EXPECT_EQ(again.transit_key().latest_version(), 1u);
  auto raw = shared_->Get("transit/keys/orders");
  ASSERT_TRUE(raw.ok());
  EXPECT_EQ(raw->version, created.index());

  store::Response rotated;
  ASSERT_TRUE(Rotate("orders", &rotated).ok());
  EXPECT_GT(rotated.index(), created.index());
  EXPECT_EQ(rotated.transit_key().latest_version(), 2u);

  auto info = ReadA("orders");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->latest_version(), 2u);
  EXPECT_EQ(info->version_created_unix_micros_size(), 2);
  auto standby_info = Read(standby_engine_, standby_, "orders");
  ASSERT_TRUE(standby_info.ok()) << standby_info.status();
  EXPECT_EQ(standby_info->latest_version(), 2u);
}

TEST_F(TransitTest, RecordIsSealedByTheBarrier) {
  ASSERT_TRUE(Create("sealed").ok());
  auto raw = shared_->Get("transit/keys/sealed");
  ASSERT_TRUE(raw.ok());
  store::TransitKeyRecord record;
  auto plain = barrier_a_->Get("transit/keys/sealed");
  ASSERT_TRUE(plain.ok());
  ASSERT_TRUE(record.ParseFromString(plain->value));
  EXPECT_FALSE(absl::StrContains(raw->value, record.versions(0).key()));
  EXPECT_FALSE(absl::StrContains(raw->value, "sealed"));
}

TEST_F(TransitTest, NameRules) {
  const std::string max(128, 'k');
  for (const std::string& good :
       {std::string("a"), std::string("A-z_0.9-x"), std::string("..."), max}) {
    EXPECT_TRUE(Create(good).ok()) << good;
  }
  for (const std::string& bad :
       {std::string(""), std::string("a/b"), std::string("."),
        std::string(".."), std::string(129, 'k'), std::string("a b"),
        std::string("k\xc3\xa9y"), std::string("a\0b", 3),
        std::string("a:b")}) {
    absl::Status s = Create(bad);
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << bad;
    EXPECT_THAT(s.message(), HasSubstr("[A-Za-z0-9_.-]"));
    EXPECT_EQ(ReadA(bad).status().code(), Code::kInvalidArgument);
    auto enc = Batch(active_engine_, active_, 0, bad, {Item{"x", ""}});
    EXPECT_EQ(enc.status().code(), Code::kInvalidArgument);
  }
  auto listed = barrier_a_->List("transit/keys/");
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->size(), 4u);
}

TEST_F(TransitTest, MissingKeyIsNotFound) {
  EXPECT_EQ(ReadA("nope").status().code(), Code::kNotFound);
  EXPECT_EQ(Rotate("nope").code(), Code::kNotFound);
  EXPECT_EQ(Config("nope", 1, 0).code(), Code::kNotFound);
  EXPECT_EQ(Delete("nope").code(), Code::kNotFound);
  for (int op = 0; op < 3; ++op) {
    auto out = Batch(active_engine_, active_, op, "nope", {Item{"x", ""}});
    EXPECT_EQ(out.status().code(), Code::kNotFound);
    EXPECT_THAT(out.status().message(), HasSubstr("\"nope\" does not exist"));
    // A standby decrypts; it refuses to encrypt before reading anything.
    out = Batch(standby_engine_, standby_, op, "nope", {Item{"x", ""}});
    EXPECT_EQ(out.status().code(),
              op == 1 ? Code::kNotFound : Code::kUnavailable);
  }
  auto raw = shared_->Get("transit/keys/nope");
  EXPECT_EQ(raw.status().code(), Code::kNotFound);
}

TEST_F(TransitTest, ConfigRules) {
  ASSERT_TRUE(Create("k").ok());
  ASSERT_TRUE(Rotate("k").ok());
  ASSERT_TRUE(Rotate("k").ok());  // latest 3
  auto before = shared_->Get("transit/keys/k");
  ASSERT_TRUE(before.ok());

  absl::Status s = Config("k", 4, 0);
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_EQ(s.message(),
            "min_decryption_version 4 is above the key's latest version 3");
  s = Config("k", 0, 4);
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_EQ(s.message(),
            "min_encryption_version 4 is above the key's latest version 3");
  s = Config("k", 2, 1);
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_EQ(s.message(),
            "min_encryption_version 1 is below min_decryption_version 2");
  // Nothing was applied.
  auto after = shared_->Get("transit/keys/k");
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->version, before->version);

  store::Response r;
  ASSERT_TRUE(Config("k", 2, 0, -1, &r).ok());
  EXPECT_GT(r.index(), before->version);
  EXPECT_EQ(r.transit_key().min_decryption_version(), 2u);
  ASSERT_TRUE(Config("k", 0, 3).ok());
  // Raising min_decryption above a set min_encryption is refused.
  ASSERT_TRUE(Rotate("k").ok());  // latest 4
  s = Config("k", 4, 0);
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_EQ(s.message(),
            "min_encryption_version 3 is below min_decryption_version 4");
  ASSERT_TRUE(Config("k", 3, 0).ok());
  // Lowering it again is allowed (versions are never trimmed), as in Vault.
  ASSERT_TRUE(Config("k", 1, 0).ok());
  auto info = ReadA("k");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->min_decryption_version(), 1u);
  EXPECT_EQ(info->min_encryption_version(), 3u);
  EXPECT_EQ(info->latest_version(), 4u);

  // A config that changes nothing writes nothing.
  auto unchanged_before = shared_->Get("transit/keys/k");
  store::Response same;
  ASSERT_TRUE(Config("k", 1, 3, 0, &same).ok());
  EXPECT_EQ(same.index(), unchanged_before->version);
  EXPECT_EQ(shared_->Get("transit/keys/k")->version, unchanged_before->version);
}

TEST_F(TransitTest, DeleteOnlyWhenAllowed) {
  ASSERT_TRUE(Create("d").ok());
  const std::string old_ct = Encrypt("d", "hello");
  absl::Status s = Delete("d");
  EXPECT_EQ(s.code(), Code::kFailedPrecondition);
  EXPECT_EQ(s.message(), "deletion is not allowed for this key");
  EXPECT_TRUE(ReadA("d").ok());

  ASSERT_TRUE(Config("d", 0, 0, 1).ok());
  EXPECT_TRUE(ReadA("d")->deletion_allowed());
  EXPECT_EQ(One(1, "d", old_ct, "", /*standby=*/true).code(), 0);
  store::Response deleted;
  ASSERT_TRUE(Delete("d", &deleted).ok());
  EXPECT_GT(deleted.index(), 0u);
  EXPECT_EQ(ReadA("d").status().code(), Code::kNotFound);
  EXPECT_EQ(Read(standby_engine_, standby_, "d").status().code(),
            Code::kNotFound);
  EXPECT_EQ(
      Batch(active_engine_, active_, 0, "d", {Item{"x", ""}}).status().code(),
      Code::kNotFound);
  EXPECT_EQ(Delete("d").code(), Code::kNotFound);

  // A new key of the same name does not open the old key's ciphertexts.
  ASSERT_TRUE(Create("d").ok());
  store::TransitResultItem item = One(1, "d", old_ct);
  EXPECT_EQ(item.code(), C(Code::kInvalidArgument));
  EXPECT_EQ(item.plaintext(), "");
  item = One(1, "d", old_ct, "", /*standby=*/true);
  EXPECT_EQ(item.code(), C(Code::kInvalidArgument));
}

// A config from a node before proto3 `optional` (strongbox/requests.proto)
// carries only the legacy flag: deletion_allowed = false is not on the
// wire, yet the flag still means "set it".
TEST_F(TransitTest, DeletionAllowedFromNodesBeforeOptional) {
  ASSERT_TRUE(Create("l").ok());
  ASSERT_TRUE(Config("l", 0, 0, 1).ok());
  ASSERT_TRUE(ReadA("l")->deletion_allowed());
  store::Request r;
  auto* c = r.mutable_transit_config_key();
  c->set_name("l");
  c->set_legacy_set_deletion_allowed(true);
  ASSERT_FALSE(c->has_deletion_allowed());
  ASSERT_TRUE(RunA(r).ok());
  EXPECT_FALSE(ReadA("l")->deletion_allowed());
  // Neither field: unchanged.
  ASSERT_TRUE(Config("l", 0, 0, 1).ok());
  ASSERT_TRUE(Config("l", 0, 0).ok());
  EXPECT_TRUE(ReadA("l")->deletion_allowed());
}

// ------------------------------------------------------------- data path

TEST_F(TransitTest, RoundTrip) {
  ASSERT_TRUE(Create("rt").ok());
  std::string big(1 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 7);
  for (const std::string& pt :
       {std::string(), std::string("a"), std::string("ab"), std::string("abc"),
        std::string(64, 'x'), std::string("nul\0inside", 10), big}) {
    const std::string ct = Encrypt("rt", pt);
    EXPECT_THAT(ct, StartsWith("strongbox:v1:"));
    if (pt.size() < 100) {
      EXPECT_THAT(ct, MatchesRegex("strongbox:v1:[A-Za-z0-9+/]+=*"));
    }
    // The base64 part is standard and canonical: nonce || ct || tag.
    std::string raw;
    ASSERT_TRUE(absl::Base64Unescape(ct.substr(13), &raw));
    EXPECT_EQ(raw.size(), 12 + pt.size() + 16);
    EXPECT_EQ(absl::Base64Escape(raw), ct.substr(13));
    for (bool standby : {false, true}) {
      store::TransitResultItem item = One(1, "rt", ct, "", standby);
      EXPECT_EQ(item.code(), 0) << item.error();
      EXPECT_EQ(item.key_version(), 1u);
      EXPECT_TRUE(item.plaintext() == pt);
    }
  }
  // Two encryptions of one plaintext differ (fresh nonces).
  EXPECT_NE(Encrypt("rt", "same"), Encrypt("rt", "same"));
  // Above the plaintext limit: that item only.
  auto out = Batch(active_engine_, active_, 0, "rt",
                   {Item{std::string((1 << 20) + 1, 'x'), ""}, Item{"ok", ""}});
  ASSERT_TRUE(out.ok());
  EXPECT_EQ((*out)[0].code(), C(Code::kInvalidArgument));
  EXPECT_EQ((*out)[0].ciphertext(), "");
  EXPECT_EQ((*out)[1].code(), 0);
}

TEST_F(TransitTest, ContextIsBound) {
  ASSERT_TRUE(Create("ctx").ok());
  const std::string with = Encrypt("ctx", "secret", "tenant-1");
  const std::string without = Encrypt("ctx", "secret");
  struct Case {
    const std::string* ct;
    std::string context;
    bool ok;
  } cases[] = {
      {&with, "tenant-1", true}, {&with, "tenant-2", false},
      {&with, "", false},        {&with, std::string("tenant-1\0", 9), false},
      {&without, "", true},      {&without, "tenant-1", false}};
  for (const Case& c : cases) {
    store::TransitResultItem item = One(1, "ctx", *c.ct, c.context);
    if (c.ok) {
      EXPECT_EQ(item.code(), 0);
      EXPECT_EQ(item.plaintext(), "secret");
    } else {
      EXPECT_EQ(item.code(), C(Code::kInvalidArgument)) << c.context;
      EXPECT_EQ(item.error(),
                "ciphertext does not authenticate under this key and context");
      EXPECT_EQ(item.plaintext(), "");
    }
  }
}

TEST_F(TransitTest, CiphertextMovedToAnotherKeyFails) {
  ASSERT_TRUE(Create("one").ok());
  ASSERT_TRUE(Create("two").ok());
  const std::string ct = Encrypt("one", "payload");
  store::TransitResultItem item = One(1, "two", ct);
  EXPECT_EQ(item.code(), C(Code::kInvalidArgument));
  EXPECT_EQ(item.plaintext(), "");
  // Relabelled as another version of the same key: fails too.
  ASSERT_TRUE(Rotate("one").ok());
  std::string relabelled = ct;
  relabelled.replace(0, 13, "strongbox:v2:");
  item = One(1, "one", relabelled);
  EXPECT_EQ(item.code(), C(Code::kInvalidArgument));
  EXPECT_EQ(item.plaintext(), "");
}

TEST_F(TransitTest, TamperingFailsCleanly) {
  ASSERT_TRUE(Create("t").ok());
  const std::string ct = Encrypt("t", "attack at dawn", "ctx");
  std::vector<Item> items;
  // Every character replaced by another (base64 and prefix alike).
  for (size_t i = 0; i < ct.size(); ++i) {
    for (char c : {'A', 'z', '+', '0', '=', ':', '!'}) {
      if (ct[i] == c) continue;
      std::string t = ct;
      t[i] = c;
      items.push_back(Item{t, "ctx"});
    }
  }
  // Every truncation and one extension.
  for (size_t n = 0; n < ct.size(); ++n) {
    items.push_back(Item{ct.substr(0, n), "ctx"});
  }
  items.push_back(Item{ct + "AAAA", "ctx"});
  for (size_t begin = 0; begin < items.size(); begin += 900) {
    std::vector<Item> chunk(
        items.begin() + begin,
        items.begin() + std::min(items.size(), begin + 900));
    auto out = Batch(active_engine_, active_, 1, "t", chunk);
    ASSERT_TRUE(out.ok()) << out.status();
    for (size_t i = 0; i < chunk.size(); ++i) {
      const auto& r = (*out)[i];
      EXPECT_TRUE(r.code() == C(Code::kInvalidArgument) ||
                  r.code() == C(Code::kNotFound))
          << chunk[i].data << " -> " << r.code() << " " << r.error();
      EXPECT_EQ(r.plaintext(), "");
    }
  }
  // Every bit of nonce, ciphertext and tag flipped (canonical encoding).
  std::string raw;
  ASSERT_TRUE(absl::Base64Unescape(ct.substr(13), &raw));
  items.clear();
  for (size_t i = 0; i < raw.size() * 8; ++i) {
    std::string t = raw;
    t[i / 8] ^= static_cast<char>(1 << (i % 8));
    items.push_back(Item{"strongbox:v1:" + absl::Base64Escape(t), "ctx"});
  }
  auto out = Batch(active_engine_, active_, 1, "t", items);
  ASSERT_TRUE(out.ok());
  for (const auto& r : *out) {
    EXPECT_EQ(r.code(), C(Code::kInvalidArgument));
    EXPECT_EQ(r.error(),
              "ciphertext does not authenticate under this key and context");
    EXPECT_EQ(r.plaintext(), "");
  }
  EXPECT_EQ(One(1, "t", ct, "ctx").plaintext(), "attack at dawn");
}

TEST_F(TransitTest, MalformedCiphertexts) {
  ASSERT_TRUE(Create("m").ok());
  const std::string ct = Encrypt("m", "x");
  const std::string body = ct.substr(13);
  struct Case {
    std::string text;
    Code code;
    std::string message;
  } cases[] = {
      {"", Code::kInvalidArgument, "ciphertext is empty"},
      {"strongbox:v0:" + body, Code::kInvalidArgument, "decimal number"},
      {"vault:v1:" + body, Code::kInvalidArgument, "does not start with"},
      {"Strongbox:v1:" + body, Code::kInvalidArgument, "does not start with"},
      {"strongbox:v01:" + body, Code::kInvalidArgument, "decimal number"},
      {"strongbox:v-1:" + body, Code::kInvalidArgument, "decimal number"},
      {"strongbox:v+1:" + body, Code::kInvalidArgument, "decimal number"},
      {"strongbox:v 1:" + body, Code::kInvalidArgument, "decimal number"},
      {"strongbox:v:" + body, Code::kInvalidArgument, "decimal number"},
      {"strongbox:v4294967296:" + body, Code::kInvalidArgument,
       "decimal number"},
      {"strongbox:v99999999999999999999999:" + body, Code::kInvalidArgument,
       "decimal number"},
      {"strongbox:v1", Code::kInvalidArgument, "lacks the ':'"},
      {"strongbox:v1:", Code::kInvalidArgument, "too short"},
      {"strongbox:v1:AAAA", Code::kInvalidArgument, "too short"},
      {"strongbox:v1:" + body + "=", Code::kInvalidArgument, "base64"},
      {"strongbox:v1:" + body.substr(0, body.size() - 1),
       Code::kInvalidArgument, "base64"},
      {"strongbox:v1:not base64 at all!", Code::kInvalidArgument, "base64"},
      {"strongbox:v1:" + body.substr(0, 4) + "\n" + body.substr(4),
       Code::kInvalidArgument, "base64"},
      {"strongbox:v1:" + absl::WebSafeBase64Escape(std::string(40, '\xff')),
       Code::kInvalidArgument, "base64"},
      {"strongbox:v1:" + body + std::string(1, '\0'), Code::kInvalidArgument,
       "base64"},
      {"strongbox:v2:" + body, Code::kNotFound, "does not exist"},
      {"strongbox:v4294967295:" + body, Code::kNotFound, "does not exist"},
  };
  std::vector<Item> items;
  for (const Case& c : cases) items.push_back(Item{c.text, ""});
  items.push_back(Item{ct, ""});
  for (bool standby : {false, true}) {
    auto out = Batch(standby ? standby_engine_ : active_engine_,
                     standby ? standby_ : active_, 1, "m", items);
    ASSERT_TRUE(out.ok()) << out.status();
    for (size_t i = 0; i < std::size(cases); ++i) {
      EXPECT_EQ((*out)[i].code(), C(cases[i].code)) << cases[i].text;
      EXPECT_THAT((*out)[i].error(), HasSubstr(cases[i].message))
          << cases[i].text;
      EXPECT_EQ((*out)[i].plaintext(), "");
    }
    EXPECT_EQ(out->back().code(), 0);
    EXPECT_EQ(out->back().plaintext(), "x");
  }
  // A non-canonical padding tail (unused bits set) is refused.
  std::string raw;
  ASSERT_TRUE(absl::Base64Unescape(body, &raw));
  ASSERT_EQ(body.back(), '=');  // 29 raw bytes: "xx==" tail
  std::string tweaked = body;
  const size_t last = tweaked.find('=') - 1;
  tweaked[last] = tweaked[last] == 'A' ? 'B' : 'A' + 1;
  auto item = One(1, "m", "strongbox:v1:" + tweaked);
  EXPECT_EQ(item.code(), C(Code::kInvalidArgument));
}

TEST_F(TransitTest, RewrapToLatest) {
  ASSERT_TRUE(Create("rw").ok());
  const std::string v1 = Encrypt("rw", "data", "c");
  ASSERT_TRUE(Rotate("rw").ok());
  // Rewrap encrypts: only a node that can store reservations does it.
  auto refused = Batch(standby_engine_, standby_, 2, "rw", {Item{v1, "c"}});
  EXPECT_EQ(refused.status().code(), Code::kUnavailable);
  EXPECT_THAT(refused.status().message(), HasSubstr("encrypt on the active"));
  for (int round = 0; round < 2; ++round) {
    auto out = Batch(active_engine_, active_, 2, "rw",
                     {Item{v1, "c"}, Item{v1, "wrong"}, Item{"junk", "c"}});
    ASSERT_TRUE(out.ok());
    EXPECT_EQ((*out)[0].code(), 0) << (*out)[0].error();
    EXPECT_EQ((*out)[0].key_version(), 2u);
    EXPECT_THAT((*out)[0].ciphertext(), StartsWith("strongbox:v2:"));
    EXPECT_EQ((*out)[0].plaintext(), "");  // plaintext never leaves
    EXPECT_EQ((*out)[1].code(), C(Code::kInvalidArgument));
    EXPECT_EQ((*out)[1].ciphertext(), "");
    EXPECT_EQ((*out)[2].code(), C(Code::kInvalidArgument));
    store::TransitResultItem back = One(1, "rw", (*out)[0].ciphertext(), "c");
    EXPECT_EQ(back.code(), 0);
    EXPECT_EQ(back.plaintext(), "data");
    EXPECT_EQ(back.key_version(), 2u);
  }
}

TEST_F(TransitTest, MinDecryptionVersionEnforced) {
  ASSERT_TRUE(Create("md").ok());
  const std::string v1 = Encrypt("md", "old");
  ASSERT_TRUE(Rotate("md").ok());
  const std::string v2 = Encrypt("md", "new");
  EXPECT_THAT(v2, StartsWith("strongbox:v2:"));
  ASSERT_TRUE(Config("md", 2, 0).ok());
  store::TransitResultItem item = One(1, "md", v1);
  EXPECT_EQ(item.code(), C(Code::kPermissionDenied));
  EXPECT_EQ(item.error(),
            "key version 1 is below the key's minimum decryption version 2");
  EXPECT_EQ(item.plaintext(), "");
  // Rewrap refuses it too.
  item = One(2, "md", v1);
  EXPECT_EQ(item.code(), C(Code::kPermissionDenied));
  EXPECT_EQ(item.ciphertext(), "");
  EXPECT_EQ(One(1, "md", v2).plaintext(), "new");
  ASSERT_TRUE(Config("md", 1, 0).ok());
  EXPECT_EQ(One(1, "md", v1).plaintext(), "old");
}

TEST_F(TransitTest, MixedBatch) {
  ASSERT_TRUE(Create("mix").ok());
  const std::string a = Encrypt("mix", "a");
  const std::string b = Encrypt("mix", "b", "ctx");
  auto out = Batch(active_engine_, active_, 1, "mix",
                   {Item{a, ""}, Item{"bad", ""}, Item{b, "ctx"},
                    Item{b, "nope"}, Item{"strongbox:v7:" + a.substr(13), ""}});
  ASSERT_TRUE(out.ok());
  EXPECT_EQ((*out)[0].code(), 0);
  EXPECT_EQ((*out)[0].plaintext(), "a");
  EXPECT_EQ((*out)[1].code(), C(Code::kInvalidArgument));
  EXPECT_EQ((*out)[2].code(), 0);
  EXPECT_EQ((*out)[2].plaintext(), "b");
  EXPECT_EQ((*out)[3].code(), C(Code::kInvalidArgument));
  EXPECT_EQ((*out)[4].code(), C(Code::kNotFound));
}

// Encryption counting and automatic rotation (issue 9 item 13): see
// transit_counting_test.cc.

TEST(TransitLimitsTest, BatchLimits) {
  auto backend = NewInMemoryBackend();
  auto barrier = MakeBarrier(backend.get());
  auto shares = barrier->Initialize(1, 1);
  ASSERT_TRUE(shares.ok());
  ASSERT_TRUE(barrier->Unseal((*shares)[0]).ok());
  TransitOptions options;
  options.max_batch_items = 3;
  options.max_name_bytes = 8;
  options.max_plaintext_bytes = 10;
  TransitEngine engine(options);
  // The in-memory backend has HA: the barrier takes writes with a fence.
  AcquireOptions acquire;
  acquire.holder = "node-a";
  auto grant = backend->ha()->Acquire(acquire);
  ASSERT_TRUE(grant.ok()) << grant.status();
  EngineCall call;
  call.barrier = barrier.get();
  call.write_fence = call.active_fence = (*grant)->fence();
  store::Response response;
  EXPECT_TRUE(engine.Execute(KeyOp(0, "eight888"), call, &response).ok());
  EXPECT_EQ(engine.Execute(KeyOp(0, "nine99999"), call, &response).code(),
            Code::kInvalidArgument);
  store::Request r;
  r.mutable_transit_encrypt()->set_name("eight888");
  response.Clear();
  absl::Status s = engine.Execute(r, call, &response);
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_EQ(s.message(), "batch has no items");
  for (int i = 0; i < 4; ++i) {
    r.mutable_transit_encrypt()->add_items()->set_plaintext("0123456789");
  }
  s = engine.Execute(r, call, &response);
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_EQ(s.message(), "batch has 4 items; the limit is 3");
  EXPECT_FALSE(response.has_transit_batch());
  r.mutable_transit_encrypt()->mutable_items()->RemoveLast();
  r.mutable_transit_encrypt()->mutable_items(1)->set_plaintext("0123456789A");
  response.Clear();
  ASSERT_TRUE(engine.Execute(r, call, &response).ok());
  EXPECT_EQ(response.transit_batch().items(0).code(), 0);
  EXPECT_EQ(response.transit_batch().items(1).code(),
            C(Code::kInvalidArgument));
  EXPECT_EQ(response.transit_batch().items(1).error(),
            "plaintext is larger than the limit of 10 bytes");
  // Not a transit request.
  store::Request kv;
  kv.mutable_kv_get()->set_path("a");
  EXPECT_EQ(engine.Execute(kv, call, &response).code(), Code::kInvalidArgument);
  // A sealed barrier.
  barrier->Seal();
  EXPECT_EQ(engine.Execute(KeyOp(2, "eight888"), call, &response).code(),
            Code::kFailedPrecondition);
}

// ------------------------------------------------------------- consistency

TEST_F(TransitTest, StandbyFollowsRotation) {
  ASSERT_TRUE(Create("f").ok());
  EXPECT_EQ(One(1, "f", Encrypt("f", "one"), "", true).plaintext(), "one");
  ASSERT_TRUE(Rotate("f").ok());
  // Next call on the standby sees the new version...
  EXPECT_EQ(Read(standby_engine_, standby_, "f")->latest_version(), 2u);
  // ...and decrypts the active's newest ciphertexts.
  ASSERT_TRUE(Rotate("f").ok());
  const std::string v3 = Encrypt("f", "three");
  EXPECT_THAT(v3, StartsWith("strongbox:v3:"));
  store::TransitResultItem item = One(1, "f", v3, "", /*standby=*/true);
  EXPECT_EQ(item.code(), 0) << item.error();
  EXPECT_EQ(item.plaintext(), "three");
  EXPECT_EQ(Read(standby_engine_, standby_, "f")->latest_version(), 3u);
}

TEST_F(TransitTest, StandbyHonoursRaisedMinimums) {
  ASSERT_TRUE(Create("h").ok());
  const std::string v1 = Encrypt("h", "one");
  ASSERT_TRUE(Rotate("h").ok());
  ASSERT_TRUE(Rotate("h").ok());
  EXPECT_EQ(One(1, "h", v1, "", true).plaintext(), "one");  // cached at v3
  ASSERT_TRUE(Config("h", 2, 3).ok());
  store::TransitResultItem item = One(1, "h", v1, "", true);
  EXPECT_EQ(item.code(), C(Code::kPermissionDenied));
  auto info = Read(standby_engine_, standby_, "h");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->min_decryption_version(), 2u);
  EXPECT_EQ(info->min_encryption_version(), 3u);
  item = One(1, "h", Encrypt("h", "p"), "", true);
  EXPECT_EQ(item.key_version(), 3u);
  EXPECT_EQ(item.plaintext(), "p");
}

TEST_F(TransitTest, ActiveTrustsItsCacheStandbyRevalidates) {
  ASSERT_TRUE(Create("c").ok());
  // The active wrote the key (and its first block of encryptions) under
  // its fence: no storage read needed.
  backend_->FailNext(1, absl::UnavailableError("down"),
                     FaultInjectingBackend::kGet);
  store::TransitResultItem first = One(0, "c", "x");
  EXPECT_EQ(first.code(), 0);
  EXPECT_EQ(backend_->injected_failures(), 0);
  // The standby reads storage on every call: the failure surfaces.
  backend_->Clear();
  backend_->FailNext(1, absl::UnavailableError("backend down"),
                     FaultInjectingBackend::kGet);
  auto out =
      Batch(standby_engine_, standby_, 1, "c", {Item{first.ciphertext(), ""}});
  EXPECT_EQ(out.status().code(), Code::kUnavailable);
  EXPECT_EQ(backend_->injected_failures(), 1);
  // The same engine under a new fence (a later term) re-validates too.
  backend_->Clear();
  EngineCall later = active_;
  later.active_fence = active_.active_fence + 1;
  later.write_fence = later.active_fence;
  backend_->FailNext(1, absl::UnavailableError("backend down"),
                     FaultInjectingBackend::kGet);
  out = Batch(active_engine_, later, 0, "c", {Item{"x", ""}});
  EXPECT_EQ(out.status().code(), Code::kUnavailable);
  backend_->Clear();
  // A standby that has loaded a key, then is promoted, trusts it once
  // re-validated under its fence.
  EngineCall promoted = standby_;
  promoted.active_fence = 99;
  EXPECT_EQ(
      Batch(standby_engine_, promoted, 1, "c", {Item{first.ciphertext(), ""}})
          .status()
          .code(),
      Code::kOk);
  backend_->FailNext(1, absl::UnavailableError("down"),
                     FaultInjectingBackend::kGet);
  EXPECT_EQ(
      Batch(standby_engine_, promoted, 1, "c", {Item{first.ciphertext(), ""}})
          .status()
          .code(),
      Code::kOk);
  backend_->Clear();
}

TEST_F(TransitTest, DeposedActiveRevalidates) {
  ASSERT_TRUE(Create("dp").ok());
  EXPECT_THAT(Encrypt("dp", "x"), StartsWith("strongbox:v1:"));
  // Node B takes over and rotates with its own engine.
  ASSERT_TRUE(backend_->ha()->BreakLease(grant_->fence()).ok());
  AcquireOptions acquire;
  acquire.holder = "node-b";
  acquire.ttl = absl::Hours(1);
  auto grant_b = backend_->ha()->Acquire(acquire);
  ASSERT_TRUE(grant_b.ok());
  EngineCall b = standby_;
  b.write_fence = b.active_fence = (*grant_b)->fence();
  store::Response r;
  ASSERT_TRUE(Run(standby_engine_, b, KeyOp(1, "dp"), &r).ok());
  // Node A, now a standby, sees it on its next call.
  EngineCall a_standby = active_;
  a_standby.write_fence = a_standby.active_fence = kNoFence;
  auto v2 = Batch(standby_engine_, b, 0, "dp", {Item{"x", ""}});
  ASSERT_TRUE(v2.ok()) << v2.status();
  auto out = Batch(active_engine_, a_standby, 1, "dp",
                   {Item{(*v2)[0].ciphertext(), ""}});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ((*out)[0].code(), 0) << (*out)[0].error();
  EXPECT_EQ((*out)[0].key_version(), 2u);
}

TEST_F(TransitTest, StaleFenceWriteRefused) {
  ASSERT_TRUE(Create("sf").ok());
  ASSERT_TRUE(Config("sf", 0, 0, 1).ok());
  auto before = shared_->Get("transit/keys/sf");
  ASSERT_TRUE(before.ok());
  ASSERT_TRUE(backend_->ha()->BreakLease(grant_->fence()).ok());
  AcquireOptions acquire;
  acquire.holder = "node-b";
  acquire.ttl = absl::Hours(1);
  auto grant_b = backend_->ha()->Acquire(acquire);
  ASSERT_TRUE(grant_b.ok());

  EXPECT_EQ(Rotate("sf").code(), Code::kFailedPrecondition);
  EXPECT_EQ(Config("sf", 0, 1).code(), Code::kFailedPrecondition);
  EXPECT_EQ(Delete("sf").code(), Code::kFailedPrecondition);
  EXPECT_EQ(Create("other").code(), Code::kFailedPrecondition);
  auto after = shared_->Get("transit/keys/sf");
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->version, before->version);
  EXPECT_EQ(shared_->Get("transit/keys/other").status().code(),
            Code::kNotFound);
  auto info = Read(standby_engine_, standby_, "sf");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->latest_version(), 1u);
  EXPECT_EQ(info->min_encryption_version(), 0u);
  // The old active still encrypts with the (unchanged) latest version.
  EXPECT_THAT(Encrypt("sf", "x"), StartsWith("strongbox:v1:"));
}

TEST_F(TransitTest, BackendErrorsSurfaceWithNoPartialState) {
  // Create: the commit fails -> UNAVAILABLE, nothing stored.
  backend_->FailNext(1, absl::UnavailableError("backend down"),
                     FaultInjectingBackend::kCommit);
  absl::Status s = Create("u");
  EXPECT_EQ(s.code(), Code::kUnavailable);
  EXPECT_EQ(shared_->Get("transit/keys/u").status().code(), Code::kNotFound);
  backend_->Clear();
  ASSERT_TRUE(Create("u").ok());
  const uint64_t version = shared_->Get("transit/keys/u")->version;

  // Rotate: the read fails, then the commit fails.
  backend_->FailNext(1, absl::UnavailableError("backend down"),
                     FaultInjectingBackend::kGet);
  EXPECT_EQ(Rotate("u").code(), Code::kUnavailable);
  backend_->FailNext(1, absl::UnavailableError("backend down"),
                     FaultInjectingBackend::kCommit);
  EXPECT_EQ(Rotate("u").code(), Code::kUnavailable);
  EXPECT_EQ(shared_->Get("transit/keys/u")->version, version);
  EXPECT_THAT(Encrypt("u", "x"), StartsWith("strongbox:v1:"));
  backend_->Clear();

  // A lost acknowledgement: applied but reported failed. The active
  // forgets its cached record, so it does not keep encrypting with v1.
  backend_->LoseNextCommitAcks(1);
  EXPECT_EQ(Rotate("u").code(), Code::kUnavailable);
  EXPECT_GT(shared_->Get("transit/keys/u")->version, version);
  EXPECT_THAT(Encrypt("u", "x"), StartsWith("strongbox:v2:"));

  // Reads on a standby.
  backend_->FailNext(1, absl::UnavailableError("backend down"),
                     FaultInjectingBackend::kGet);
  auto out = Batch(standby_engine_, standby_, 1, "u", {Item{"x", ""}});
  EXPECT_EQ(out.status().code(), Code::kUnavailable);
  EXPECT_THAT(out.status().message(), HasSubstr("backend down"));
  backend_->Clear();
  EXPECT_EQ(One(1, "u", Encrypt("u", "x"), "", true).key_version(), 2u);
}

TEST_F(TransitTest, ConcurrentWritersLoseNoRotation) {
  ASSERT_TRUE(Create("race").ok());
  // Two engines rotating one key at once under the same fence: each
  // rotation either lands or reports ABORTED (after internal retries);
  // none is lost or applied twice.
  EngineCall b = standby_;
  b.write_fence = active_.write_fence;
  std::atomic<int> applied{0};
  auto rotate = [&](TransitEngine* engine, const EngineCall* call) {
    for (int i = 0; i < 20; ++i) {
      store::Response r;
      absl::Status s = engine->Execute(KeyOp(1, "race"), *call, &r);
      EXPECT_TRUE(s.ok() || s.code() == Code::kAborted) << s;
      if (s.ok()) ++applied;
    }
  };
  std::thread t1(rotate, &active_engine_, &active_);
  std::thread t2(rotate, &standby_engine_, &b);
  t1.join();
  t2.join();
  EXPECT_GT(applied.load(), 20);
  auto info = Read(standby_engine_, standby_, "race");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->latest_version(), 1u + applied.load());
  // The active's trusted entry may be behind (the other engine wrote under
  // its fence, which a real cluster never does); a fresh call re-reads.
  active_engine_.ClearCache();
  EXPECT_EQ(Read(active_engine_, active_, "race")->latest_version(),
            info->latest_version());
}

TEST_F(TransitTest, ClearCache) {
  ASSERT_TRUE(Create("cc").ok());
  const std::string ct = Encrypt("cc", "v");
  active_engine_.ClearCache();
  standby_engine_.ClearCache();
  EXPECT_EQ(One(1, "cc", ct).plaintext(), "v");
  EXPECT_EQ(One(1, "cc", ct, "", true).plaintext(), "v");
  // After ClearCache the active re-reads storage once before trusting.
  active_engine_.ClearCache();
  backend_->FailNext(1, absl::UnavailableError("down"),
                     FaultInjectingBackend::kGet);
  EXPECT_EQ(
      Batch(active_engine_, active_, 0, "cc", {Item{"x", ""}}).status().code(),
      Code::kUnavailable);
}

TEST_F(TransitTest, ConcurrentStandbyTrafficDuringRotations) {
  ASSERT_TRUE(Create("hot").ok());
  std::atomic<bool> stop{false};
  std::atomic<int> errors{0};
  std::atomic<uint32_t> highest_seen{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      uint32_t last = 0;
      for (int i = 0; !stop.load() || i < 20; ++i) {
        const std::string pt = absl::StrCat("t", t, "-", i);
        // Encrypt on the active (it alone holds reservations) while it
        // rotates; decrypt on the standby.
        auto enc = Batch(active_engine_, active_, 0, "hot",
                         {Item{pt, "c"}, Item{pt, ""}});
        if (!enc.ok() || (*enc)[0].code() != 0) {
          ++errors;
          continue;
        }
        const uint32_t v = (*enc)[0].key_version();
        if (v < last) ++errors;  // never goes back to an older version
        last = v;
        uint32_t h = highest_seen.load();
        while (v > h && !highest_seen.compare_exchange_weak(h, v)) {
        }
        auto dec = Batch(standby_engine_, standby_, 1, "hot",
                         {Item{(*enc)[0].ciphertext(), "c"},
                          Item{(*enc)[1].ciphertext(), ""}});
        if (!dec.ok() || (*dec)[0].plaintext() != pt ||
            (*dec)[1].plaintext() != pt) {
          ++errors;
        }
      }
    });
  }
  for (int r = 0; r < 10; ++r) {
    store::Response response;
    ASSERT_TRUE(
        active_engine_.Execute(KeyOp(1, "hot"), active_, &response).ok());
    // The active's newest ciphertext opens on the standby at once.
    store::Request enc;
    auto* item = enc.mutable_transit_encrypt();
    item->set_name("hot");
    item->add_items()->set_plaintext("fresh");
    store::Response out;
    ASSERT_TRUE(active_engine_.Execute(enc, active_, &out).ok());
    store::Request dec;
    dec.mutable_transit_decrypt()->set_name("hot");
    dec.mutable_transit_decrypt()->add_items()->set_ciphertext(
        out.transit_batch().items(0).ciphertext());
    store::Response back;
    ASSERT_TRUE(standby_engine_.Execute(dec, standby_, &back).ok());
    EXPECT_EQ(back.transit_batch().items(0).plaintext(), "fresh");
  }
  stop = true;
  for (auto& t : threads) t.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_LE(highest_seen.load(), 11u);
  EXPECT_THAT(Encrypt("hot", "x"), StartsWith("strongbox:v11:"));
}

}  // namespace
}  // namespace strongbox
