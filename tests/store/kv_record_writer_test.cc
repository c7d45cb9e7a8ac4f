// kv_record_writer.h against protobuf's serializer: the metadata head is
// byte for byte what protobuf writes for the same record, a secret's
// fields are what protobuf writes for the same map (deterministically,
// names in order), and records with fields protobuf kept as unknown are
// recognized, so the engine leaves them to protobuf.
#include "lib/store/kv_record_writer.h"

#include <cstdint>
#include <limits>
#include <map>
#include <random>
#include <string>

#include "absl/strings/escaping.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "gtest/gtest.h"
#include "lib/store/kv_records.pb.h"

namespace strongbox {
namespace {

using store::KvDataRecord;
using store::KvMetadataRecord;

std::string ByHand(const KvMetadataRecord& record) {
  const size_t room = kv_wire::MetadataHeadMaxSize(record);
  const size_t size = kv_wire::MetadataHeadSize(record);
  EXPECT_GE(room, size);
  std::string out(room, '\0');
  char* end = kv_wire::WriteMetadataHead(record, out.data());
  EXPECT_EQ(end, out.data() + size) << "the size and the bytes agree";
  out.resize(end - out.data());
  return out;
}

std::string Deterministic(const google::protobuf::Message& message) {
  std::string bytes;
  google::protobuf::io::StringOutputStream out(&bytes);
  google::protobuf::io::CodedOutputStream coded(&out);
  coded.SetSerializationDeterministic(true);
  message.SerializeToCodedStream(&coded);
  coded.Trim();
  return bytes;
}

TEST(KvRecordWriterTest, MetadataHeadIsWhatProtobufWrites) {
  std::mt19937_64 rng(3);
  auto value = [&rng]() -> uint64_t {
    switch (rng() % 5) {
      case 0:
        return 0;
      case 1:
        return rng() % 128;
      case 2:
        return std::numeric_limits<uint64_t>::max() - rng() % 3;
      default:
        return rng() >> (rng() % 64);
    }
  };
  for (int round = 0; round < 2000; ++round) {
    KvMetadataRecord record;
    record.set_created_unix_micros(static_cast<int64_t>(value()));
    record.set_updated_unix_micros(static_cast<int64_t>(value()));
    record.set_current_version(value());
    record.set_max_versions(static_cast<uint32_t>(value()));
    record.set_cas_required(rng() % 2);
    const int versions = static_cast<int>(rng() % 14);
    for (int i = 0; i < versions; ++i) {
      auto* v = record.add_versions();
      v->set_version(value());
      v->set_created_unix_micros(static_cast<int64_t>(value()));
      v->set_deletion_unix_micros(static_cast<int64_t>(value()));
      v->set_destroyed(rng() % 2);
    }
    ASSERT_FALSE(kv_wire::HasUnknownFields(record));
    ASSERT_EQ(ByHand(record), record.SerializeAsString())
        << "round " << round << ": " << record.ShortDebugString();
  }
  EXPECT_EQ(ByHand(KvMetadataRecord()), "");
}

TEST(KvRecordWriterTest, FieldsAreWhatProtobufWritesForTheMap) {
  std::mt19937_64 rng(5);
  for (int round = 0; round < 300; ++round) {
    std::map<std::string, std::string> fields;
    const int n = static_cast<int>(rng() % 5);
    for (int i = 0; i < n; ++i) {
      std::string value(rng() % 2 ? rng() % 20 : rng() % 70000, '\0');
      for (char& c : value) c = static_cast<char>(rng());
      fields[std::string(rng() % 200, static_cast<char>('a' + i))] = value;
    }
    std::string bytes(kv_wire::FieldsSize(fields), '\0');
    char* end = kv_wire::AppendFields(KvDataRecord::kDataFieldNumber, fields,
                                      bytes.data());
    ASSERT_EQ(end, bytes.data() + bytes.size());
    KvDataRecord record;
    for (const auto& [name, v] : fields) (*record.mutable_data())[name] = v;
    ASSERT_EQ(bytes, Deterministic(record)) << "round " << round;
  }
}

// The hand writer writes the fields these messages have today. A field
// added to either would be dropped by every put until the writer learns
// it: this fails first.
TEST(KvRecordWriterTest, WritesEveryFieldTheMessagesHave) {
  EXPECT_EQ(KvMetadataRecord::descriptor()->field_count(), 7)
      << "a field was added: teach kv_record_writer.cc to write it";
  EXPECT_EQ(store::KvVersionRecord::descriptor()->field_count(), 4)
      << "a field was added: teach kv_record_writer.cc to write it";
}

TEST(KvRecordWriterTest, UnknownFieldsAreFoundInTheRecordAndInAVersion) {
  KvMetadataRecord clean;
  clean.set_current_version(1);
  clean.add_versions()->set_version(1);
  EXPECT_FALSE(kv_wire::HasUnknownFields(clean));

  // Field 99 (varint 7) at the top, and inside the one version.
  KvMetadataRecord top;
  ASSERT_TRUE(top.ParseFromString(clean.SerializeAsString() +
                                  std::string("\x98\x06\x07", 3)));
  EXPECT_TRUE(kv_wire::HasUnknownFields(top));

  KvMetadataRecord nested;
  ASSERT_TRUE(
      nested.ParseFromString(std::string("\x18\x01\x32\x05\x08\x01"
                                         "\x98\x06\x07",
                                         9)));
  ASSERT_EQ(nested.versions_size(), 1);
  EXPECT_TRUE(kv_wire::HasUnknownFields(nested));
}

}  // namespace
}  // namespace strongbox
