#include "lib/store/wipe.h"

#include <openssl/mem.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/map_field.h"
#include "google/protobuf/unknown_field_set.h"
#include "lib/store/kv_records.pb.h"
#include "lib/store/requests.pb.h"

namespace strongbox {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;
using google::protobuf::UnknownFieldSet;

// Overwrites the whole buffer, past size() up to capacity(): a string that
// shrank keeps its old bytes there.
// Strings reached through reflection are const; their messages are not.
void WipeInPlace(const std::string& s) {
  WipeBuffer(const_cast<std::string*>(&s));
}

void WipeUnknown(UnknownFieldSet* fields) {
  for (int i = 0; i < fields->field_count(); ++i) {
    google::protobuf::UnknownField* f = fields->mutable_field(i);
    if (f->type() == google::protobuf::UnknownField::TYPE_LENGTH_DELIMITED) {
      WipeInPlace(*f->mutable_length_delimited());
    } else if (f->type() == google::protobuf::UnknownField::TYPE_GROUP) {
      WipeUnknown(f->mutable_group());
    }
  }
}

// Reflection cannot reach a map's own storage (MapBegin is private; the
// repeated view is a copy), so the store's secret maps are named here.
// Every map<string, bytes> in lib/store's protos must be listed.
SecretFields* SecretMapOf(Message* m) {
  const google::protobuf::Descriptor* d = m->GetDescriptor();
  if (d == store::KvPutRequest::descriptor()) {
    return static_cast<store::KvPutRequest*>(m)->mutable_data();
  }
  if (d == store::KvSecret::descriptor()) {
    return static_cast<store::KvSecret*>(m)->mutable_data();
  }
  if (d == store::KvMetadataRecord::descriptor()) {
    return static_cast<store::KvMetadataRecord*>(m)->mutable_current_data();
  }
  if (d == store::KvDataRecord::descriptor()) {
    return static_cast<store::KvDataRecord*>(m)->mutable_data();
  }
  return nullptr;
}

}  // namespace

void WipeBuffer(std::string* s) {
  const size_t size = s->size();
  s->resize(s->capacity());
  if (!s->empty()) OPENSSL_cleanse(&(*s)[0], s->size());
  s->resize(size);
}

WipedBatch::~WipedBatch() {
  for (WriteOp& op : ops_) WipeBuffer(&op.value);
}

void WipedBatch::Add(WriteOp op) {
  if (ops_.size() == ops_.capacity()) {
    std::vector<WriteOp> grown;
    grown.reserve(std::max<size_t>(4, 2 * ops_.capacity()));
    for (WriteOp& o : ops_) grown.push_back(std::move(o));
    for (WriteOp& o : ops_) WipeBuffer(&o.value);
    ops_.swap(grown);
  }
  ops_.push_back(std::move(op));
  WipeBuffer(&op.value);
}

namespace {

// The fields of a message type that can hold bytes: strings, maps with
// string or message values, and message fields (their types may hold
// strings, or unknown fields). Worked out once per type and thread.
const std::vector<const FieldDescriptor*>& FieldsToWipe(
    const google::protobuf::Descriptor* d) {
  thread_local absl::flat_hash_map<const google::protobuf::Descriptor*,
                                   std::vector<const FieldDescriptor*>>
      cache;
  auto [it, inserted] = cache.try_emplace(d);
  if (inserted) {
    for (int k = 0; k < d->field_count(); ++k) {
      const FieldDescriptor* f = d->field(k);
      const FieldDescriptor::CppType type =
          f->is_map() ? f->message_type()->map_value()->cpp_type()
                      : f->cpp_type();
      if (type == FieldDescriptor::CPPTYPE_STRING ||
          type == FieldDescriptor::CPPTYPE_MESSAGE) {
        it->second.push_back(f);
      }
    }
  }
  return it->second;
}

}  // namespace

void WipeMessage(Message* message) {
  if (message == nullptr) return;
  const Reflection* r = message->GetReflection();
  const google::protobuf::Descriptor* d = message->GetDescriptor();
  const Message* prototype = nullptr;
  std::string scratch;
  // Every such field, not only the set ones: a string moved out of a
  // message (empty now) still holds its old bytes in its inline buffer.
  for (const FieldDescriptor* f : FieldsToWipe(d)) {
    if (f->is_map()) {
      if (SecretFields* map = SecretMapOf(message)) {
        for (auto& [name, value] : *map) WipeInPlace(value);
      } else if (r->FieldSize(*message, f) > 0) {
        // Another message's map: only its reflection view is reachable.
        for (int i = 0; i < r->FieldSize(*message, f); ++i) {
          WipeMessage(r->MutableRepeatedMessage(message, f, i));
        }
      }
    } else if (f->cpp_type() == FieldDescriptor::CPPTYPE_STRING) {
      if (f->is_repeated()) {
        for (int i = 0; i < r->FieldSize(*message, f); ++i) {
          WipeInPlace(r->GetRepeatedStringReference(*message, f, i, &scratch));
        }
      } else {
        if (prototype == nullptr) {
          prototype = google::protobuf::MessageFactory::generated_factory()
                          ->GetPrototype(d);
        }
        const std::string& s = r->GetStringReference(*message, f, &scratch);
        // Never the shared default instance's empty string.
        if (prototype == nullptr ||
            &s != &r->GetStringReference(*prototype, f, &scratch)) {
          WipeInPlace(s);
        }
      }
    } else if (f->is_repeated()) {
      for (int i = 0; i < r->FieldSize(*message, f); ++i) {
        WipeMessage(r->MutableRepeatedMessage(message, f, i));
      }
    } else if (r->HasField(*message, f)) {
      WipeMessage(r->MutableMessage(message, f));
    }
  }
  WipeInPlace(scratch);
  if (!r->GetUnknownFields(*message).empty()) {
    WipeUnknown(r->MutableUnknownFields(message));
  }
}

bool SerializeInto(const Message& message, std::string* out) {
  const size_t size = message.ByteSizeLong();
  if (size > static_cast<size_t>(std::numeric_limits<int>::max())) {
    return false;
  }
  WipeString(*out);
  out->resize(size);
  message.SerializeWithCachedSizesToArray(
      reinterpret_cast<uint8_t*>(out->data()));
  return true;
}

SecretBytes SerializeToSecretBytes(const Message& message) {
  const size_t size = message.ByteSizeLong();
  if (size > static_cast<size_t>(std::numeric_limits<int>::max())) {
    return SecretBytes();
  }
  SecretBytes out(size);
  message.SerializeWithCachedSizesToArray(out.data());
  return out;
}

WriteOp PutMessage(absl::string_view key, const Message& message) {
  WriteOp op;
  op.kind = WriteOp::Kind::kPut;
  op.key = std::string(key);
  SerializeInto(message, &op.value);
  return op;
}

void AssignFields(const SecretFields& from, SecretFields* to) {
  ClearFields(to);
  *to = from;
}

void ClearFields(SecretFields* fields) {
  for (auto& [name, value] : *fields) WipeInPlace(value);
  fields->clear();
}

}  // namespace strongbox
