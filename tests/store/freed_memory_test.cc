// Invariant D5 for the data path: no secret is left in freed memory.
//
// This binary replaces the global operator new / delete (every form) and,
// while a phase runs, scans each block handed back for a marker that only
// the secrets of the test carry. A hit is a copy of a secret that some code
// freed without wiping it. The phases drive SecretStore the way a host does
// (convenience API, Handle, HandleSerialized, a perf standby forwarding to
// the active), over the in-memory backend, which stores only ciphertext.
//
// The scanner is tests/store/freed_scanner.h: its own binary, not under
// ASan or TSan. STRONGBOX_FREED_TRACE=1 prints a stack for every hit.
#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "strongbox/requests.pb.h"
#include "strongbox/secret_bytes.h"
#include "strongbox/secret_store.h"
#include "tests/ha/cluster.h"
#include "tests/store/freed_scanner.h"
#include "tests/store/loopback_forwarder.h"

namespace strongbox {
namespace {

using ::strongbox::testing_cluster::Cluster;
using ::strongbox::testing_cluster::ClusterOptions;

using Scan = ::strongbox::testing_freed::FreedScan;
using ::strongbox::testing_freed::kMarker;

// A secret value: `prefix`, the marker, padding (long values live on the
// heap, short ones inline in std::string).
std::string Secret(absl::string_view prefix, size_t padding) {
  return absl::StrCat(prefix, kMarker, std::string(padding, 'x'));
}

class FreedMemoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ClusterOptions o;
    o.mode = StandbyMode::kPerfStandby;
    cluster_ = std::make_unique<Cluster>(o);
    cluster_->Initialize();
    cluster_->UnsealAll();
    cluster_->Run(absl::Seconds(1));
    for (int i = 0; i < 3; ++i) {
      SecretStore::Options so;
      so.coordinator = cluster_->nodes[i].get();
      so.forwarder = &forwarder_;
      so.clock = &cluster_->clock;
      so.max_index_wait = absl::Milliseconds(20);
      stores_.push_back(*SecretStore::Create(so));
      forwarder_.stores[Cluster::Address(i)] = stores_.back().get();
    }
    const int a = cluster_->Active();
    active_ = stores_[a].get();
    standby_ = stores_[(a + 1) % 3].get();
    fields_ = {{"long", Secret("pw-", 40)}, {"short", Secret("", 0)}};
  }

  void TearDown() override {
    for (auto& [name, value] : fields_) WipeString(value);
  }

  std::unique_ptr<Cluster> cluster_;
  testing_store::LoopbackForwarder forwarder_;
  std::vector<std::unique_ptr<SecretStore>> stores_;
  SecretStore* active_ = nullptr;
  SecretStore* standby_ = nullptr;
  std::map<std::string, std::string> fields_;
};

TEST_F(FreedMemoryTest, ScannerSeesAnUnwipedCopy) {
  // The scanner itself: a plain copy freed without wiping is found.
  Scan scan;
  { std::string copy = fields_["long"]; }
  EXPECT_GE(scan.hits(), 1);
}

TEST_F(FreedMemoryTest, KvPutOfANewPath) {
  Scan scan;
  ASSERT_TRUE(active_->KvPut("app/db", fields_).ok());
  EXPECT_EQ(scan.hits(), 0);
}

TEST_F(FreedMemoryTest, KvOverwriteAndRead) {
  ASSERT_TRUE(active_->KvPut("app/db", fields_).ok());
  Scan scan;
  ASSERT_TRUE(active_->KvPut("app/db", fields_).ok());
  EXPECT_EQ(scan.Take(), 0) << "overwrite";
  {
    absl::StatusOr<store::KvSecret> got = active_->KvGet("app/db");
    ASSERT_TRUE(got.ok());
    EXPECT_EQ(got->data().at("long"), fields_["long"]);
    WipeMessage(&*got);
  }
  {
    absl::StatusOr<store::KvSecret> old = active_->KvGet("app/db", 1);
    ASSERT_TRUE(old.ok());
    WipeMessage(&*old);
  }
  EXPECT_EQ(scan.Take(), 0) << "read";
  // Refused writes: a check-and-set mismatch, a field name that is not
  // UTF-8 (the request is built, then refused).
  EXPECT_EQ(active_->KvPut("app/db", fields_, 1).status().code(),
            absl::StatusCode::kAborted);
  std::map<std::string, std::string> bad = fields_;
  bad["\xff"] = fields_["long"];
  EXPECT_EQ(active_->KvPut("app/db", bad).status().code(),
            absl::StatusCode::kInvalidArgument);
  for (auto& [name, value] : bad) WipeString(value);
  EXPECT_EQ(scan.Take(), 0) << "refused writes";
}

TEST_F(FreedMemoryTest, KvDestroyDeleteAndPrune) {
  ASSERT_TRUE(active_->KvPut("app/db", fields_).ok());
  ASSERT_TRUE(active_->KvPut("app/db", fields_).ok());
  ASSERT_TRUE(active_->KvPut("app/db", fields_).ok());
  Scan scan;
  ASSERT_TRUE(active_->KvDestroy("app/db", {1, 3}).ok());
  EXPECT_EQ(scan.Take(), 0) << "destroy";
  ASSERT_TRUE(active_->KvDelete("app/db").ok());
  ASSERT_TRUE(active_->KvUndelete("app/db", {2}).ok());
  ASSERT_TRUE(active_->KvSetMetadata("app/db", 1, false).ok());
  ASSERT_TRUE(active_->KvPut("app/db", fields_).ok());
  ASSERT_TRUE(active_->KvDeleteAll("app/db").ok());
  EXPECT_EQ(scan.Take(), 0) << "delete, metadata, prune";
}

TEST_F(FreedMemoryTest, TransitEncryptDecrypt) {
  ASSERT_TRUE(active_->TransitCreateKey("k").ok());
  Scan scan;
  absl::StatusOr<std::string> ct =
      active_->TransitEncrypt("k", fields_["long"]);
  ASSERT_TRUE(ct.ok());
  absl::StatusOr<std::string> pt = active_->TransitDecrypt("k", *ct);
  ASSERT_TRUE(pt.ok());
  EXPECT_EQ(*pt, fields_["long"]);
  WipeString(*pt);
  absl::StatusOr<std::string> rewrapped = active_->TransitRewrap("k", *ct);
  ASSERT_TRUE(rewrapped.ok());
  EXPECT_EQ(scan.Take(), 0) << "on the active";
  // The standby serves both too (perf standby: a read).
  absl::StatusOr<std::string> ct2 =
      standby_->TransitEncrypt("k", fields_["short"]);
  ASSERT_TRUE(ct2.ok());
  absl::StatusOr<std::string> pt2 = standby_->TransitDecrypt("k", *ct2);
  ASSERT_TRUE(pt2.ok());
  WipeString(*pt2);
  EXPECT_EQ(scan.Take(), 0) << "on the perf standby";
}

TEST_F(FreedMemoryTest, ForwardedWritesAndSerializedRequests) {
  Scan scan;
  // A perf standby forwards the write to the active through the host's
  // transport (serialize, HandleSerialized on the active, parse back).
  ASSERT_TRUE(standby_->KvPut("fwd/a", fields_).ok());
  ASSERT_TRUE(standby_->KvPut("fwd/a", fields_).ok());
  EXPECT_EQ(scan.Take(), 0) << "forwarded put";
  {
    absl::StatusOr<store::KvSecret> got = standby_->KvGet("fwd/a");
    ASSERT_TRUE(got.ok());
    WipeMessage(&*got);
  }
  EXPECT_EQ(scan.Take(), 0) << "read on the standby";

  // Bytes a host received from a peer, handled directly.
  SecretBytes bytes;
  {
    store::Request r;
    r.mutable_kv_put()->set_path("fwd/b");
    for (const auto& [k, v] : fields_)
      (*r.mutable_kv_put()->mutable_data())[k] = v;
    bytes = SerializeToSecretBytes(r);
    WipeMessage(&r);
  }
  std::string answer = active_->HandleSerialized(bytes.view());
  store::Response response;
  ASSERT_TRUE(response.ParseFromString(answer));
  EXPECT_EQ(response.code(), 0) << response.error();
  WipeString(answer);
  {
    store::Request r;
    r.mutable_kv_get()->set_path("fwd/b");
    SecretBytes get = SerializeToSecretBytes(r);
    std::string got = active_->HandleSerialized(get.view());
    store::Response parsed;
    ASSERT_TRUE(parsed.ParseFromString(got));
    EXPECT_EQ(parsed.kv_secret().data().at("long"), fields_["long"]);
    WipeMessage(&parsed);
    WipeString(got);
  }
  EXPECT_EQ(scan.Take(), 0) << "HandleSerialized";
}

}  // namespace
}  // namespace strongbox
