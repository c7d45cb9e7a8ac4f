// Reads what a KV read needs straight from the wire form of a stored
// KvMetadataRecord or KvDataRecord (lib/store/kv_records.proto), without
// building the record: the current version, the kept versions' metadata,
// and the secret's fields, copied once, into the caller's map. A read
// through the generated parser built the whole record (a map node and two
// strings per field, a message per kept version) only to move the map out
// and free the rest; about a fifth of a KvGet.
//
// Accepts exactly what protobuf's parser accepts for these two messages
// (any field order, repeated scalars last-wins, unknown fields skipped,
// groups included, a map entry's fields in any order or missing, strict
// UTF-8 in field names); fuzz/records_fuzzer and kv_record_reader_test
// hold it to that against the generated parser. Writes go through the
// generated messages (or kv_engine.cc's map writer) as before.
//
// A reader borrows the wire bytes, which must outlive it. Not thread-safe;
// one per read. Internal to strongbox.
#ifndef STRONGBOX_LIB_STORE_KV_RECORD_READER_H_
#define STRONGBOX_LIB_STORE_KV_RECORD_READER_H_

#include <cstdint>
#include <string>
#include <utility>

#include "absl/container/inlined_vector.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/map.h"

namespace strongbox {

// A KvVersionRecord's fields.
struct KvVersionFields {
  uint64_t version = 0;
  int64_t created_unix_micros = 0;
  int64_t deletion_unix_micros = 0;
  bool destroyed = false;
};

// A secret's fields, as the records and a KvSecret hold them.
using KvFieldMap = google::protobuf::Map<std::string, std::string>;

// One stored map<string, bytes> field: its entries' names and values, as
// views into the wire bytes, in wire order (a later entry with the same
// name replaces an earlier one, as in protobuf).
class KvFieldsView {
 public:
  size_t entries() const { return entries_.size(); }
  // Adds every entry to *fields (each value copied once; a value it
  // replaces is wiped first).
  void CopyTo(KvFieldMap* fields) const;

 private:
  friend class KvRecordParser;
  absl::InlinedVector<std::pair<absl::string_view, absl::string_view>, 4>
      entries_;
};

// A KvMetadataRecord's wire form, read for one version.
class KvMetadataReader {
 public:
  // Reads `wire`; false if protobuf would not parse it as a
  // KvMetadataRecord (nothing else is then meaningful).
  bool Parse(absl::string_view wire);
  // The reader keeps views into `wire`: a temporary would be gone.
  bool Parse(std::string&& wire) = delete;

  uint64_t current_version() const { return current_version_; }
  // The first kept version numbered `version`, or nullptr.
  const KvVersionFields* FindVersion(uint64_t version) const;
  const absl::InlinedVector<KvVersionFields, 10>& versions() const {
    return versions_;
  }
  // The current version's fields.
  const KvFieldsView& current_data() const { return current_data_; }

 private:
  uint64_t current_version_ = 0;
  // Ten inline: a secret keeps ten versions by default, and an eleventh
  // here is an allocation per read.
  absl::InlinedVector<KvVersionFields, 10> versions_;
  KvFieldsView current_data_;
};

// Reads a KvDataRecord's fields from `wire` into *data; false if protobuf
// would not parse it.
bool ReadKvDataRecord(absl::string_view wire, KvFieldsView* data);
bool ReadKvDataRecord(std::string&& wire, KvFieldsView* data) = delete;

}  // namespace strongbox

#endif  // STRONGBOX_LIB_STORE_KV_RECORD_READER_H_
