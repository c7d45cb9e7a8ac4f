// The KV engine's records on the wire: records as the map-based writer
// stored them (golden bytes) still read, and what KvPut now writes (the
// request's fields put on the wire directly, lib/store/kv_engine.cc) is
// what the map-based records of older nodes read.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "google/protobuf/unknown_field_set.h"
#include "gtest/gtest.h"
#include "lib/store/kv_records.pb.h"
#include "strongbox/barrier.h"
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

// What the engine writes (the request's fields put on the wire directly),
// the map-based records of older nodes read.
TEST_F(KvRecordCompatStoreTest, WhatThePutWritesTheMapRecordsRead) {
  const std::map<std::string, std::string> v1 = {
      {"user", "admin"}, {"value", std::string(300, 'x')}, {"", ""}};
  const std::map<std::string, std::string> v2 = {{"value", "second"}};
  ASSERT_TRUE(store_->KvPut("written", v1).ok());
  ASSERT_TRUE(store_->KvPut("written", v2).ok());
  Barrier* barrier = cluster_->nodes[active_]->barrier();

  absl::StatusOr<Entry> meta = barrier->Get("kv/meta/written");
  ASSERT_TRUE(meta.ok()) << meta.status();
  store::KvMetadataRecord record;
  ASSERT_TRUE(record.ParseFromString(meta->value));
  EXPECT_EQ(record.current_version(), 2u);
  ASSERT_EQ(record.versions_size(), 2);
  const std::map<std::string, std::string> current(
      record.current_data().begin(), record.current_data().end());
  EXPECT_EQ(current, v2);

  for (uint64_t version : {1, 2}) {
    absl::StatusOr<Entry> data =
        barrier->Get(absl::StrCat("kv/data/written/", version));
    ASSERT_TRUE(data.ok()) << data.status();
    store::KvDataRecord d;
    ASSERT_TRUE(d.ParseFromString(data->value));
    const std::map<std::string, std::string> fields(d.data().begin(),
                                                    d.data().end());
    EXPECT_EQ(fields, version == 1 ? v1 : v2);
  }
}

// Fields a newer node added to the metadata (unknown here) survive this
// node's puts, from storage and from its write cache: such a record is
// written by protobuf, which keeps them, not by the hand writer.
TEST_F(KvRecordCompatStoreTest, PutsKeepFieldsOfANewerNode) {
  // The golden record with field 99 (varint 7) at the top and field 98
  // (bytes "ab") inside the second version.
  const std::string newer_version =
      std::string("\x32\x0a\x08\x02\x10\xd0\x0f\x92\x06\x02\x61\x62", 12);
  std::string meta = GoldenMeta();
  const std::string v2 = std::string("\x32\x05\x08\x02\x10\xd0\x0f", 7);
  const size_t at = meta.find(v2);
  ASSERT_NE(at, std::string::npos);
  meta.replace(at, v2.size(), newer_version);
  meta += std::string("\x98\x06\x07", 3);
  PutRecord("kv/meta/golden", meta);

  Barrier* barrier = cluster_->nodes[active_]->barrier();
  for (const char* value : {"third", "fourth"}) {  // storage, then cache
    absl::StatusOr<KvWriteResult> put =
        store_->KvPut("golden", {{"value", value}});
    ASSERT_TRUE(put.ok()) << put.status();
    absl::StatusOr<Entry> stored = barrier->Get("kv/meta/golden");
    ASSERT_TRUE(stored.ok()) << stored.status();
    store::KvMetadataRecord record;
    ASSERT_TRUE(record.ParseFromString(stored->value));
    const auto& top = record.GetReflection()->GetUnknownFields(record);
    ASSERT_EQ(top.field_count(), 1) << value;
    EXPECT_EQ(top.field(0).number(), 99);
    EXPECT_EQ(top.field(0).varint(), 7u);
    ASSERT_GE(record.versions_size(), 2);
    const auto& second = record.versions(1).GetReflection()->GetUnknownFields(
        record.versions(1));
    ASSERT_EQ(second.field_count(), 1) << value;
    EXPECT_EQ(second.field(0).number(), 98);
    EXPECT_EQ(second.field(0).length_delimited(), "ab");
  }
  absl::StatusOr<store::KvSecret> latest = store_->KvGet("golden");
  ASSERT_TRUE(latest.ok()) << latest.status();
  EXPECT_EQ(AsMap(*latest),
            (std::map<std::string, std::string>{{"value", "fourth"}}));
}

}  // namespace
}  // namespace strongbox
