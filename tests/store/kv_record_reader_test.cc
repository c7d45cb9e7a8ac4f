// KvMetadataReader and ReadKvDataRecord (lib/store/kv_record_reader.h)
// against the generated parser they replace on the read path: on every
// input, they accept exactly what protobuf accepts and read the same
// current version, kept versions and fields. Hand-built wire forms cover
// what a writer may legally do (any field order, repeated scalars, unknown
// fields of every wire type, groups, padded varints, map entries with a
// field missing, repeated or out of order) and what protobuf refuses; a
// mutation loop covers the rest.
#include "lib/store/kv_record_reader.h"

#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "google/protobuf/stubs/logging.h"
#include "gtest/gtest.h"
#include "lib/store/kv_records.pb.h"

namespace strongbox {
namespace {

using store::KvDataRecord;
using store::KvMetadataRecord;

std::map<std::string, std::string> Copied(const KvFieldsView& view) {
  KvFieldMap map;
  view.CopyTo(&map);
  return std::map<std::string, std::string>(map.begin(), map.end());
}

std::map<std::string, std::string> Sorted(const KvFieldMap& map) {
  return std::map<std::string, std::string>(map.begin(), map.end());
}

// True if the reader and protobuf agree on `wire`: both refuse it, or both
// accept it and read the same. `why` says where they differ.
bool AgreeOnMetadata(const std::string& wire, std::string* why) {
  KvMetadataRecord record;
  const bool parsed = record.ParseFromString(wire);
  KvMetadataReader reader;
  const bool read = reader.Parse(wire);
  if (parsed != read) {
    *why = absl::StrCat("protobuf ", parsed ? "accepts" : "refuses",
                        ", the reader ", read ? "accepts" : "refuses");
    return false;
  }
  if (!parsed) return true;
  if (reader.current_version() != record.current_version()) {
    *why = "current_version differs";
    return false;
  }
  if (reader.versions().size() != static_cast<size_t>(record.versions_size())) {
    *why = "number of versions differs";
    return false;
  }
  for (int i = 0; i < record.versions_size(); ++i) {
    const auto& want = record.versions(i);
    const KvVersionFields& got = reader.versions()[i];
    if (got.version != want.version() ||
        got.created_unix_micros != want.created_unix_micros() ||
        got.deletion_unix_micros != want.deletion_unix_micros() ||
        got.destroyed != want.destroyed()) {
      *why = absl::StrCat("version ", i, " differs");
      return false;
    }
  }
  if (Copied(reader.current_data()) != Sorted(record.current_data())) {
    *why = "current data differs";
    return false;
  }
  return true;
}

bool AgreeOnData(const std::string& wire, std::string* why) {
  KvDataRecord record;
  const bool parsed = record.ParseFromString(wire);
  KvFieldsView view;
  const bool read = ReadKvDataRecord(wire, &view);
  if (parsed != read) {
    *why = absl::StrCat("protobuf ", parsed ? "accepts" : "refuses",
                        ", the reader ", read ? "accepts" : "refuses");
    return false;
  }
  if (parsed && Copied(view) != Sorted(record.data())) {
    *why = "data differs";
    return false;
  }
  return true;
}

// ---- wire building

std::string Varint(uint64_t v, size_t pad_to = 0) {
  std::string out;
  do {
    uint8_t byte = v & 0x7f;
    v >>= 7;
    if (v != 0 || out.size() + 1 < pad_to) byte |= 0x80;
    out.push_back(static_cast<char>(byte));
  } while (v != 0 || out.size() < pad_to);
  return out;
}

std::string Tag(uint32_t field, uint32_t wire_type) {
  return Varint((field << 3) | wire_type);
}

std::string VarintField(uint32_t field, uint64_t v) {
  return Tag(field, 0) + Varint(v);
}

std::string Bytes(uint32_t field, const std::string& bytes) {
  return Tag(field, 2) + Varint(bytes.size()) + bytes;
}

std::string Entry(const std::string& name, const std::string& value) {
  return Bytes(1, name) + Bytes(2, value);
}

std::string Version(uint64_t version, int64_t created, int64_t deleted = 0,
                    bool destroyed = false) {
  return VarintField(1, version) + VarintField(2, created) +
         VarintField(3, static_cast<uint64_t>(deleted)) +
         VarintField(4, destroyed);
}

// A small record with two versions and two fields.
std::string Base() {
  return VarintField(1, 1000) + VarintField(2, 2000) + VarintField(3, 2) +
         Bytes(6, Version(1, 1000)) + Bytes(6, Version(2, 2000)) +
         Bytes(7, Entry("user", "admin")) + Bytes(7, Entry("value", "s3cret"));
}

class KvRecordReaderTest : public ::testing::Test {
 protected:
  // protobuf logs each name it refuses as invalid UTF-8.
  google::protobuf::LogSilencer silence_;
};

TEST_F(KvRecordReaderTest, ReadsWhatTheGeneratedWriterWrites) {
  std::mt19937_64 rng(7);
  for (int round = 0; round < 300; ++round) {
    KvMetadataRecord record;
    record.set_created_unix_micros(static_cast<int64_t>(rng()));
    record.set_updated_unix_micros(-static_cast<int64_t>(rng() % 1000));
    record.set_current_version(rng() % 3 == 0 ? 0 : rng());
    record.set_max_versions(static_cast<uint32_t>(rng()));
    record.set_cas_required(rng() % 2);
    const int versions = static_cast<int>(rng() % 12);
    for (int i = 0; i < versions; ++i) {
      auto* v = record.add_versions();
      v->set_version(rng() % 20);
      v->set_created_unix_micros(static_cast<int64_t>(rng()));
      v->set_deletion_unix_micros(rng() % 2 ? 0 : -1);
      v->set_destroyed(rng() % 2);
    }
    const int fields = static_cast<int>(rng() % 6);
    for (int i = 0; i < fields; ++i) {
      std::string value(rng() % 3000, '\0');
      for (char& c : value) c = static_cast<char>(rng());
      (*record.mutable_current_data())[absl::StrCat(i == 0 ? "" : "f\xc3\xa9",
                                                    i)] = value;
    }
    std::string why;
    EXPECT_TRUE(AgreeOnMetadata(record.SerializeAsString(), &why))
        << "round " << round << ": " << why;
    KvDataRecord data;
    *data.mutable_data() = record.current_data();
    EXPECT_TRUE(AgreeOnData(data.SerializeAsString(), &why))
        << "round " << round << ": " << why;
  }
}

TEST_F(KvRecordReaderTest, ReadsWhatAnyWriterMayLegallyWrite) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"empty record", ""},
      {"base", Base()},
      {"fields in reverse order",
       Bytes(7, Entry("value", "s3cret")) + Bytes(6, Version(2, 2000)) +
           VarintField(3, 2) + Bytes(6, Version(1, 1000))},
      {"a scalar repeated: the last wins",
       VarintField(3, 9) + Base() + VarintField(3, 1)},
      {"a version's scalar repeated",
       VarintField(3, 1) + Bytes(6, Version(1, 5) + VarintField(1, 3))},
      {"a name twice: the last value wins",
       Base() + Bytes(7, Entry("user", "root"))},
      {"value before name", Bytes(7, Bytes(2, "v") + Bytes(1, "n"))},
      {"an entry with no name", Bytes(7, Bytes(2, "v"))},
      {"an entry with no value", Bytes(7, Bytes(1, "n"))},
      {"an empty entry", Bytes(7, "")},
      {"an entry's name twice", Bytes(7, Bytes(1, "a") + Entry("b", "v"))},
      {"an entry's value twice", Bytes(7, Entry("a", "v") + Bytes(2, "w"))},
      {"unknown fields of every wire type",
       Tag(99, 0) + Varint(5) + Tag(98, 1) + std::string(8, 'x') +
           Bytes(97, "xyz") + Tag(96, 5) + std::string(4, 'y') + Base()},
      {"an unknown group with a nested group",
       Tag(50, 3) + VarintField(1, 1) + Tag(51, 3) + Bytes(2, "g") +
           Tag(51, 4) + Tag(50, 4) + Base()},
      {"an empty unknown group", Tag(50, 3) + Tag(50, 4) + Base()},
      {"unknown fields inside a version and an entry",
       VarintField(3, 1) +
           Bytes(6, Version(1, 5) + Tag(9, 3) + Tag(9, 4) + Bytes(8, "z")) +
           Bytes(7, Entry("n", "v") + Tag(7, 5) + std::string(4, 'q'))},
      {"a known field with the wrong wire type is unknown",
       Tag(3, 2) + Varint(1) + "x" + Tag(6, 0) + Varint(4) + Tag(7, 5) +
           std::string(4, 'z') + Base()},
      {"a known entry field with the wrong wire type",
       Bytes(7, Tag(1, 0) + Varint(3) + Entry("n", "v"))},
      {"padded varints and tags",
       Varint((3 << 3) | 0, 5) + Varint(2, 10) + Tag(7, 2) + Varint(5, 5) +
           Entry("a", "")},
      {"negative micros as 10-byte varints",
       VarintField(3, 1) + Bytes(6, Version(1, -5, -7, true))},
      {"a destroyed value of 2 is true",
       VarintField(3, 1) + Bytes(6, VarintField(1, 1) + VarintField(4, 2))},
      {"a tag's fifth byte beyond 32 bits wraps",
       std::string("\x98\x80\x80\x80\x70", 5) + Varint(4)},
      {"a 10-byte varint's last bits beyond 64 are dropped",
       Tag(3, 0) + std::string("\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f", 10)},
      {"groups nested to the limit",
       [] {
         std::string s;
         for (int i = 0; i < 100; ++i) s += Tag(60, 3);
         for (int i = 0; i < 100; ++i) s += Tag(60, 4);
         return s;
       }()},
      {"a four-byte UTF-8 name", Bytes(7, Entry("\xf0\x9f\x94\x91", "k"))},
  };
  for (const auto& [name, wire] : cases) {
    KvMetadataReader reader;
    EXPECT_TRUE(reader.Parse(wire)) << name;
    std::string why;
    EXPECT_TRUE(AgreeOnMetadata(wire, &why)) << name << ": " << why;
    // The same bytes as a data record: field 7 and the rest are unknown.
    EXPECT_TRUE(AgreeOnData(wire, &why)) << name << " (data): " << why;
  }
  std::string why;
  EXPECT_TRUE(
      AgreeOnData(Bytes(1, Entry("a", "b")) + Bytes(1, Entry("a", "c")), &why))
      << why;
}

TEST_F(KvRecordReaderTest, RefusesWhatProtobufRefuses) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"a name that is not UTF-8", Bytes(7, Entry("\xc3\x28", "v"))},
      {"an overlong UTF-8 name", Bytes(7, Entry("\xc0\xaf", "v"))},
      {"a UTF-16 surrogate in a name", Bytes(7, Entry("\xed\xa0\x80", "v"))},
      {"a name beyond U+10FFFF", Bytes(7, Entry("\xf4\x90\x80\x80", "v"))},
      {"a bad name after a good one",
       Bytes(7, Bytes(1, "\xff") + Entry("ok", "v"))},
      {"field number 0", Tag(0, 0) + Varint(1)},
      {"field number 0 with wire type 2", Tag(0, 2) + Varint(0)},
      {"wire type 6", Tag(5, 6)},
      {"wire type 7", Tag(5, 7)},
      {"an end-group that closes nothing", Base() + Tag(50, 4)},
      {"an end-group inside a version", Bytes(6, Tag(3, 4))},
      {"an end-group inside an entry", Bytes(7, Tag(3, 4))},
      {"a group closed by another number", Tag(50, 3) + Tag(51, 4)},
      {"a group never closed", Tag(50, 3) + VarintField(1, 1)},
      {"a group closed outside its entry", Bytes(7, Tag(50, 3)) + Tag(50, 4)},
      {"an 11-byte varint",
       Tag(3, 0) +
           std::string("\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11)},
      {"a 6-byte tag", std::string("\x98\x80\x80\x80\x80\x00", 6)},
      {"a length past the end", Tag(7, 2) + Varint(50) + "short"},
      {"a 6-byte length",
       Tag(97, 2) + std::string("\x80\x80\x80\x80\x80\x00", 6)},
      {"fixed64 cut short", Tag(98, 1) + "1234567"},
      {"fixed32 cut short", Tag(96, 5) + "123"},
      {"groups nested one past the limit",
       [] {
         std::string s;
         for (int i = 0; i < 101; ++i) s += Tag(60, 3);
         for (int i = 0; i < 101; ++i) s += Tag(60, 4);
         return s;
       }()},
      {"a version cut short", Tag(6, 2) + Varint(2) + Tag(1, 0)},
      {"a varint cut short", Tag(3, 0) + "\x80"},
  };
  for (const auto& [name, wire] : cases) {
    KvMetadataReader reader;
    EXPECT_FALSE(reader.Parse(wire)) << name;
    std::string why;
    EXPECT_TRUE(AgreeOnMetadata(wire, &why)) << name << ": " << why;
    EXPECT_TRUE(AgreeOnData(wire, &why)) << name << " (data): " << why;
  }
  // Every proper prefix of a record that ends inside a field.
  const std::string base = Base();
  for (size_t n = 0; n < base.size(); ++n) {
    std::string why;
    EXPECT_TRUE(AgreeOnMetadata(base.substr(0, n), &why)) << n << ": " << why;
    EXPECT_TRUE(AgreeOnData(base.substr(0, n), &why)) << n << ": " << why;
  }
}

TEST_F(KvRecordReaderTest, AgreesWithProtobufOnMutatedRecords) {
  std::mt19937_64 rng(11);
  const std::vector<std::string> seeds = {
      Base(),
      Bytes(1, Entry("a", "b")) + Bytes(1, Entry("c", "d")),
      Tag(50, 3) + VarintField(1, 1) + Tag(50, 4) + Base(),
      VarintField(3, 1) + Bytes(6, Version(1, -5, -7, true)),
  };
  // Bytes that are often tags, varint continuations and group markers.
  const std::string interesting = std::string(
      "\x00\x08\x0a\x12\x18\x1a\x32"
      "\x3a\x80\xff\x7f\x03\x04\x05"
      "\x06\x07\x0b\x0c",
      18);
  int accepted = 0;
  for (int round = 0; round < 40000; ++round) {
    std::string wire = seeds[rng() % seeds.size()];
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      const size_t at = wire.empty() ? 0 : rng() % (wire.size() + 1);
      const char byte = rng() % 2 ? interesting[rng() % interesting.size()]
                                  : static_cast<char>(rng());
      switch (rng() % 4) {
        case 0:
          if (at < wire.size()) wire[at] = byte;
          break;
        case 1:
          wire.insert(wire.begin() + at, byte);
          break;
        case 2:
          if (at < wire.size()) wire.erase(at, 1);
          break;
        default:
          wire.resize(at);
      }
    }
    std::string why;
    ASSERT_TRUE(AgreeOnMetadata(wire, &why))
        << "round " << round << ": " << why;
    ASSERT_TRUE(AgreeOnData(wire, &why)) << "round " << round << ": " << why;
    KvMetadataRecord record;
    accepted += record.ParseFromString(wire) ? 1 : 0;
  }
  // The loop must try both sides of the line, not only refusals.
  EXPECT_GT(accepted, 4000);
  EXPECT_LT(accepted, 36000);
}

TEST_F(KvRecordReaderTest, CopyToReplacesAFieldTheMapAlreadyHas) {
  // The view borrows the wire bytes: they must outlive it.
  const std::string wire = Bytes(1, Entry("a", "new"));
  KvFieldsView view;
  ASSERT_TRUE(ReadKvDataRecord(wire, &view));
  KvFieldMap map;
  map["a"] = "old";
  map["b"] = "kept";
  view.CopyTo(&map);
  EXPECT_EQ(Sorted(map),
            (std::map<std::string, std::string>{{"a", "new"}, {"b", "kept"}}));
}

TEST_F(KvRecordReaderTest, FindVersionFindsTheFirstOfThatNumber) {
  KvMetadataReader reader;
  const std::string wire = Bytes(6, Version(3, 1)) + Bytes(6, Version(3, 2)) +
                           Bytes(6, Version(4, 3));
  ASSERT_TRUE(reader.Parse(wire));
  ASSERT_NE(reader.FindVersion(3), nullptr);
  EXPECT_EQ(reader.FindVersion(3)->created_unix_micros, 1);
  EXPECT_EQ(reader.FindVersion(4)->created_unix_micros, 3);
  EXPECT_EQ(reader.FindVersion(5), nullptr);
}

// A version's fields may repeat (the last wins) and come in any order,
// with unknown fields between, and the record's own varints (created,
// updated: passed over, not decoded) may be up to ten bytes long: read
// as the generated parser reads them.
TEST_F(KvRecordReaderTest, VersionsAndSkippedFieldsReadAsProtobufReadsThem) {
  KvMetadataRecord record;
  auto* v = record.add_versions();
  v->set_created_unix_micros(7);
  v->set_version(9);
  v->set_destroyed(true);
  record.set_created_unix_micros(-1);  // a ten-byte varint
  record.set_updated_unix_micros(1);
  std::string wire = record.SerializeAsString();
  // A second version: created_unix_micros 5, version 1, an unknown varint
  // field (99), then version 2, which wins.
  const std::string inner = std::string("\x10\x05\x08\x01") + "\x98\x06\x2a" +
                            std::string("\x08\x02");
  wire += '\x32';  // field 6, length-delimited
  wire += static_cast<char>(inner.size());
  wire += inner;
  std::string why;
  EXPECT_TRUE(AgreeOnMetadata(wire, &why)) << why;
  KvMetadataReader reader;
  ASSERT_TRUE(reader.Parse(wire));
  EXPECT_EQ(reader.FindVersion(1), nullptr);
  ASSERT_NE(reader.FindVersion(2), nullptr);
  EXPECT_EQ(reader.FindVersion(2)->created_unix_micros, 5);
  ASSERT_NE(reader.FindVersion(9), nullptr);
  EXPECT_TRUE(reader.FindVersion(9)->destroyed);
  // An eleven-byte varint where created_unix_micros is: both refuse.
  std::string overlong = std::string("\x08") + std::string(10, '\xff') + "\x01";
  EXPECT_TRUE(AgreeOnMetadata(overlong, &why)) << why;
  KvMetadataReader fresh;
  EXPECT_FALSE(fresh.Parse(overlong));
  // max_versions as a ten-byte varint whose last byte has high bits set
  // (both accept it), and cas_required cut off after two bytes (both
  // refuse it).
  const std::string high_bits =
      std::string("\x20") + std::string(9, '\xff') + "\x7f";
  EXPECT_TRUE(AgreeOnMetadata(high_bits, &why)) << why;
  KvMetadataReader third;
  EXPECT_TRUE(third.Parse(high_bits));
  const std::string cut = std::string("\x18\x01\x28\x80\x80");
  EXPECT_TRUE(AgreeOnMetadata(cut, &why)) << why;
  KvMetadataReader fourth;
  EXPECT_FALSE(fourth.Parse(cut));
}

}  // namespace
}  // namespace strongbox
