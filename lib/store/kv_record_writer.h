// Writes the KV engine's stored records (lib/store/kv_records.proto)
// straight to their wire form, the counterpart of kv_record_reader.h:
//   - a secret's fields as a map<string, bytes> field, from whatever map
//     holds them (a request's, or a host's std::map on the direct path),
//     so no copy of the secret is built as a protobuf map only to be
//     serialized;
//   - a KvMetadataRecord without current data (the "head" a put writes
//     before the fields), byte for byte what protobuf's serializer writes
//     (fields in number order, defaults left out), without its reflection
//     or a size pass over sub-messages. A record holding fields protobuf
//     kept as unknown (written by a newer node) is not written here
//     (HasUnknownFields): the caller serializes it with protobuf, which
//     keeps them.
// kv_record_writer_test and fuzz/records_fuzzer hold both to protobuf.
// Stateless, thread-safe. Internal to strongbox.
#ifndef STRONGBOX_LIB_STORE_KV_RECORD_WRITER_H_
#define STRONGBOX_LIB_STORE_KV_RECORD_WRITER_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "google/protobuf/io/coded_stream.h"
#include "lib/store/kv_records.pb.h"

namespace strongbox {
namespace kv_wire {

inline size_t VarintSize(uint64_t v) {
  return google::protobuf::io::CodedOutputStream::VarintSize64(v);
}

inline char* PutVarint(uint64_t v, char* p) {
  return reinterpret_cast<char*>(
      google::protobuf::io::CodedOutputStream::WriteVarint64ToArray(
          v, reinterpret_cast<uint8_t*>(p)));
}

inline size_t EntrySize(const std::string& name, const std::string& value) {
  return 1 + VarintSize(name.size()) + name.size() + 1 +
         VarintSize(value.size()) + value.size();
}

// Bytes AppendFields adds for `fields` (a map of names to values).
template <typename Fields>
size_t FieldsSize(const Fields& fields) {
  size_t n = 0;
  for (const auto& [name, value] : fields) {
    const size_t entry = EntrySize(name, value);
    n += 1 + VarintSize(entry) + entry;
  }
  return n;
}

// Writes `fields` as map field `field` (< 16) at `p`: one length-delimited
// entry {1: name, 2: value} per field, what protobuf writes for a map (any
// protobuf reads it as the map). Returns the end.
template <typename Fields>
char* AppendFields(uint32_t field, const Fields& fields, char* p) {
  static_assert(store::KvMetadataRecord::kCurrentDataFieldNumber < 16 &&
                    store::KvDataRecord::kDataFieldNumber < 16,
                "a one-byte tag");
  const char tag = static_cast<char>((field << 3) | 2);
  for (const auto& [name, value] : fields) {
    *p++ = tag;
    p = PutVarint(EntrySize(name, value), p);
    *p++ = '\x0a';  // 1: name
    p = PutVarint(name.size(), p);
    std::memcpy(p, name.data(), name.size());
    p += name.size();
    *p++ = '\x12';  // 2: value
    p = PutVarint(value.size(), p);
    std::memcpy(p, value.data(), value.size());
    p += value.size();
  }
  return p;
}

// True if `record`, or a kept version in it, holds fields protobuf kept as
// unknown. Uses reflection: ask once per parsed record, not per write.
bool HasUnknownFields(const store::KvMetadataRecord& record);

// The size of `record`'s wire form. `record` has no current data and no
// unknown fields.
size_t MetadataHeadSize(const store::KvMetadataRecord& record);

// At least MetadataHeadSize(record), in constant time: room to write the
// head into when the exact size is not needed first.
size_t MetadataHeadMaxSize(const store::KvMetadataRecord& record);

// Writes `record`'s wire form at `p`, which has room for
// MetadataHeadMaxSize bytes; returns the end (the form is MetadataHeadSize
// bytes). The same conditions.
char* WriteMetadataHead(const store::KvMetadataRecord& record, char* p);

}  // namespace kv_wire
}  // namespace strongbox

#endif  // STRONGBOX_LIB_STORE_KV_RECORD_WRITER_H_
