#include "lib/store/kv_record_writer.h"

#include "absl/base/attributes.h"
#include "google/protobuf/unknown_field_set.h"

namespace strongbox {
namespace kv_wire {
namespace {

using store::KvMetadataRecord;
using store::KvVersionRecord;

bool NoUnknownFields(const google::protobuf::Message& message) {
  return message.GetReflection()->GetUnknownFields(message).empty();
}

// A varint field's size with its one-byte tag, 0 for the default (proto3
// leaves defaults out).
size_t VarintFieldSize(uint64_t v) { return v == 0 ? 0 : 1 + VarintSize(v); }

ABSL_ATTRIBUTE_ALWAYS_INLINE inline char* PutVarintField(uint32_t field,
                                                         uint64_t v, char* p) {
  if (v == 0) return p;
  *p++ = static_cast<char>(field << 3);
  return PutVarint(v, p);
}

size_t VersionSize(const KvVersionRecord& v) {
  return VarintFieldSize(v.version()) +
         VarintFieldSize(static_cast<uint64_t>(v.created_unix_micros())) +
         VarintFieldSize(static_cast<uint64_t>(v.deletion_unix_micros())) +
         VarintFieldSize(v.destroyed() ? 1 : 0);
}

}  // namespace

bool HasUnknownFields(const KvMetadataRecord& record) {
  if (!NoUnknownFields(record)) return true;
  for (const KvVersionRecord& v : record.versions()) {
    if (!NoUnknownFields(v)) return true;
  }
  return false;
}

size_t MetadataHeadSize(const KvMetadataRecord& record) {
  size_t n =
      VarintFieldSize(static_cast<uint64_t>(record.created_unix_micros())) +
      VarintFieldSize(static_cast<uint64_t>(record.updated_unix_micros())) +
      VarintFieldSize(record.current_version()) +
      VarintFieldSize(record.max_versions()) +
      VarintFieldSize(record.cas_required() ? 1 : 0);
  for (const KvVersionRecord& v : record.versions()) {
    n += 2 + VersionSize(v);  // tag, one-byte size (WriteMetadataHead)
  }
  return n;
}

size_t MetadataHeadMaxSize(const KvMetadataRecord& record) {
  constexpr size_t kVarintField = 1 + 10;  // one-byte tag, longest varint
  return 5 * kVarintField +
         static_cast<size_t>(record.versions_size()) * (2 + 4 * kVarintField);
}

char* WriteMetadataHead(const KvMetadataRecord& record, char* p) {
  static_assert(KvMetadataRecord::kCreatedUnixMicrosFieldNumber == 1 &&
                    KvMetadataRecord::kUpdatedUnixMicrosFieldNumber == 2 &&
                    KvMetadataRecord::kCurrentVersionFieldNumber == 3 &&
                    KvMetadataRecord::kMaxVersionsFieldNumber == 4 &&
                    KvMetadataRecord::kCasRequiredFieldNumber == 5 &&
                    KvMetadataRecord::kVersionsFieldNumber == 6 &&
                    KvVersionRecord::kVersionFieldNumber == 1 &&
                    KvVersionRecord::kCreatedUnixMicrosFieldNumber == 2 &&
                    KvVersionRecord::kDeletionUnixMicrosFieldNumber == 3 &&
                    KvVersionRecord::kDestroyedFieldNumber == 4,
                "the field numbers written below");
  p = PutVarintField(1, static_cast<uint64_t>(record.created_unix_micros()), p);
  p = PutVarintField(2, static_cast<uint64_t>(record.updated_unix_micros()), p);
  p = PutVarintField(3, record.current_version(), p);
  p = PutVarintField(4, record.max_versions(), p);
  p = PutVarintField(5, record.cas_required() ? 1 : 0, p);
  for (const KvVersionRecord& v : record.versions()) {
    // A version is at most 4 * (1 + 10) bytes: its size is one byte,
    // written once the fields are.
    static_assert(4 * (1 + 10) < 0x80, "a one-byte size");
    *p++ = static_cast<char>((6 << 3) | 2);
    char* const size = p++;
    p = PutVarintField(1, v.version(), p);
    p = PutVarintField(2, static_cast<uint64_t>(v.created_unix_micros()), p);
    p = PutVarintField(3, static_cast<uint64_t>(v.deletion_unix_micros()), p);
    p = PutVarintField(4, v.destroyed() ? 1 : 0, p);
    *size = static_cast<char>(p - size - 1);
  }
  return p;
}

}  // namespace kv_wire
}  // namespace strongbox
