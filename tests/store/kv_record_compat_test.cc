// KV records as stored before the read path parsed them without a map
// (KvMetadataRecordEntries / KvDataRecordEntries, lib/store/kv_records.proto)
// still read, and the views agree with the records on the wire.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "lib/store/kv_records.pb.h"
#include "strongbox/secret_store.h"
#include "strongbox/testing/status_matchers.h"
#include "tests/ha/cluster.h"

namespace strongbox {
namespace {

using testing_cluster::Cluster;
using testing_cluster::ClusterOptions;

// The plaintext of kv/meta/golden as the map-based KvMetadataRecord writer
// serialized it (deterministic: map keys sorted): created 1000, updated
// 2000, current version 2, versions 1 (created 1000) and 2 (created 2000),
// current data {"user": "admin", "value": "s3cret"}.
const char kGoldenMeta[] =
    "\x08\xe8\x07\x10\xd0\x0f\x18\x02\x32\x05\x08\x01\x10\xe8\x07\x32\x05\x08"
    "\x02\x10\xd0\x0f\x3a\x0d\x0a\x04\x75\x73\x65\x72\x12\x05\x61\x64\x6d\x69"
    "\x6e\x3a\x0f\x0a\x05\x76\x61\x6c\x75\x65\x12\x06\x73\x33\x63\x72\x65\x74";
// kv/data/golden/1: {"value": "old"}.
const char kGoldenData1[] =
    "\x0a\x0c\x0a\x05\x76\x61\x6c\x75\x65\x12\x03\x6f\x6c\x64";

std::string GoldenMeta() { return std::string(kGoldenMeta, 54); }
std::string GoldenData1() { return std::string(kGoldenData1, 14); }

std::map<std::string, std::string> AsMap(const store::KvSecret& s) {
  return std::map<std::string, std::string>(s.data().begin(), s.data().end());
}

TEST(KvRecordCompatTest, GoldenBytesAreWhatTheMapRecordWrites) {
  store::KvMetadataRecord meta;
  meta.set_created_unix_micros(1000);
  meta.set_updated_unix_micros(2000);
  meta.set_current_version(2);
  auto* v1 = meta.add_versions();
  v1->set_version(1);
  v1->set_created_unix_micros(1000);
  auto* v2 = meta.add_versions();
  v2->set_version(2);
  v2->set_created_unix_micros(2000);
  (*meta.mutable_current_data())["value"] = "s3cret";
  (*meta.mutable_current_data())["user"] = "admin";
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream out(&bytes);
    google::protobuf::io::CodedOutputStream coded(&out);
    coded.SetSerializationDeterministic(true);
    ASSERT_TRUE(meta.SerializeToCodedStream(&coded));
  }
  EXPECT_EQ(bytes, GoldenMeta());

  store::KvDataRecord data;
  (*data.mutable_data())["value"] = "old";
  EXPECT_EQ(data.SerializeAsString(), GoldenData1());
}

TEST(KvRecordCompatTest, ViewsParseTheRecordsAndBack) {
  store::KvMetadataRecordEntries view;
  ASSERT_TRUE(view.ParseFromString(GoldenMeta()));
  EXPECT_EQ(view.created_unix_micros(), 1000);
  EXPECT_EQ(view.updated_unix_micros(), 2000);
  EXPECT_EQ(view.current_version(), 2u);
  ASSERT_EQ(view.versions_size(), 2);
  EXPECT_EQ(view.versions(1).version(), 2u);
  ASSERT_EQ(view.current_data_size(), 2);
  EXPECT_EQ(view.current_data(0).key(), "user");
  EXPECT_EQ(view.current_data(0).value(), "admin");
  EXPECT_EQ(view.current_data(1).key(), "value");
  EXPECT_EQ(view.current_data(1).value(), "s3cret");

  // And the other way: what a view writes, the map record reads.
  store::KvMetadataRecord back;
  ASSERT_TRUE(back.ParseFromString(view.SerializeAsString()));
  EXPECT_EQ(back.current_version(), 2u);
  EXPECT_EQ(back.current_data().at("value"), "s3cret");
  EXPECT_EQ(back.current_data().at("user"), "admin");

  store::KvDataRecordEntries data;
  ASSERT_TRUE(data.ParseFromString(GoldenData1()));
  ASSERT_EQ(data.data_size(), 1);
  EXPECT_EQ(data.data(0).key(), "value");
  EXPECT_EQ(data.data(0).value(), "old");
}

TEST(KvRecordCompatTest, ARepeatedNameKeepsTheLastValueAsAMapParseDoes) {
  store::KvMetadataRecordEntries view;
  view.set_current_version(1);
  view.add_versions()->set_version(1);
  auto* a = view.add_current_data();
  a->set_key("k");
  a->set_value("first");
  auto* b = view.add_current_data();
  b->set_key("k");
  b->set_value("second");
  store::KvMetadataRecord as_map;
  ASSERT_TRUE(as_map.ParseFromString(view.SerializeAsString()));
  EXPECT_EQ(as_map.current_data().at("k"), "second");
}

class KvRecordCompatStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ClusterOptions o;
    o.mode = StandbyMode::kPerfStandby;
    cluster_ = std::make_unique<Cluster>(o);
    cluster_->Initialize();
    cluster_->UnsealAll();
    cluster_->Run(absl::Seconds(1));
    active_ = cluster_->Active();
    ASSERT_GE(active_, 0);
    SecretStore::Options so;
    so.coordinator = cluster_->nodes[active_].get();
    so.clock = &cluster_->clock;
    store_ = *SecretStore::Create(so);
  }

  // Stores `plaintext` at `path` through the active's barrier, as the old
  // engine did.
  void PutRecord(const std::string& path, const std::string& plaintext) {
    HaCoordinator* node = cluster_->nodes[active_].get();
    absl::StatusOr<FenceToken> fence = node->WriteFence();
    ASSERT_TRUE(fence.ok()) << fence.status();
    ASSERT_TRUE(node->barrier()->Put(path, plaintext, *fence).ok());
  }

  std::unique_ptr<Cluster> cluster_;
  std::unique_ptr<SecretStore> store_;
  int active_ = -1;
};

TEST_F(KvRecordCompatStoreTest, RecordsWrittenByTheOldEngineStillRead) {
  PutRecord("kv/meta/golden", GoldenMeta());
  PutRecord("kv/data/golden/1", GoldenData1());

  absl::StatusOr<store::KvSecret> latest = store_->KvGet("golden");
  ASSERT_TRUE(latest.ok()) << latest.status();
  EXPECT_EQ(latest->metadata().version(), 2u);
  EXPECT_EQ(latest->metadata().created_unix_micros(), 2000);
  EXPECT_EQ(AsMap(*latest), (std::map<std::string, std::string>{
                                {"user", "admin"}, {"value", "s3cret"}}));

  absl::StatusOr<store::KvSecret> first = store_->KvGet("golden", 1);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(AsMap(*first),
            (std::map<std::string, std::string>{{"value", "old"}}));

  // The writer reads it too, and what it writes reads back.
  ASSERT_TRUE(store_->KvPut("golden", {{"value", "new"}}).ok());
  absl::StatusOr<store::KvSecret> third = store_->KvGet("golden");
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ(third->metadata().version(), 3u);
  EXPECT_EQ(AsMap(*third),
            (std::map<std::string, std::string>{{"value", "new"}}));
  absl::StatusOr<store::KvMetadata> meta = store_->KvMetadata("golden");
  ASSERT_TRUE(meta.ok()) << meta.status();
  EXPECT_EQ(meta->versions_size(), 3);
}

TEST_F(KvRecordCompatStoreTest, KvGetKeepsTheLastOfARepeatedName) {
  store::KvMetadataRecordEntries view;
  view.set_current_version(1);
  view.add_versions()->set_version(1);
  for (const char* value : {"first", "second"}) {
    store::KvFieldEntry* e = view.add_current_data();
    e->set_key("k");
    e->set_value(value);
  }
  PutRecord("kv/meta/dup", view.SerializeAsString());
  absl::StatusOr<store::KvSecret> got = store_->KvGet("dup");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(AsMap(*got), (std::map<std::string, std::string>{{"k", "second"}}));
}

}  // namespace
}  // namespace strongbox
