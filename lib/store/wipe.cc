#include "lib/store/wipe.h"

#include <algorithm>
#include <limits>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/node_hash_map.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/generated_message_util.h"
#include "google/protobuf/map_field.h"
#include "google/protobuf/unknown_field_set.h"
#include "lib/crypto/secure_memory.h"
#include "lib/store/kv_records.pb.h"
#include "strongbox/barrier.h"
#include "strongbox/requests.pb.h"

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
  if (!s->empty()) crypto::Cleanse(&(*s)[0], s->size());
  s->resize(size);
}

WipedBatch::~WipedBatch() {
  if (sealed_) return;
  for (WriteOp& op : ops_) WipeBuffer(&op.value);
}

void WipedBatch::Reserve() {
  if (ops_.size() < ops_.capacity()) return;
  absl::InlinedVector<WriteOp, 4> grown;
  grown.reserve(2 * ops_.capacity());
  for (WriteOp& o : ops_) grown.push_back(std::move(o));
  for (WriteOp& o : ops_) WipeBuffer(&o.value);
  ops_.swap(grown);
}

void WipedBatch::Add(WriteOp op) {
  Reserve();
  ops_.push_back(std::move(op));
  WipeBuffer(&op.value);
}

WriteOp& WipedBatch::Emplace() {
  Reserve();
  return ops_.emplace_back();
}

namespace {

// How to wipe one message type: the fields that can hold bytes (strings,
// maps with string or message values, message fields, whose types may hold
// strings or unknown fields), with the plan of each message field's type.
// Oneof members are looked at only when set. Built once per type and
// thread; plans point at each other (types may recurse).
struct WipePlan {
  struct Field {
    const FieldDescriptor* field;
    const WipePlan* message = nullptr;  // message fields and map values
    bool plain_default = false;         // default is the shared empty string
  };
  std::vector<Field> fields;
  std::vector<const google::protobuf::OneofDescriptor*> oneofs;
  // Oneof members, by field index.
  absl::flat_hash_map<int, Field> oneof_members;
};

using PlanCache =
    absl::node_hash_map<const google::protobuf::Descriptor*, WipePlan>;

const WipePlan& PlanFor(const google::protobuf::Descriptor* d,
                        PlanCache& cache) {
  auto [it, inserted] = cache.try_emplace(d);
  WipePlan& plan = it->second;
  if (!inserted) return plan;
  for (int k = 0; k < d->field_count(); ++k) {
    const FieldDescriptor* f = d->field(k);
    WipePlan::Field field{f};
    if (f->is_map()) {
      const FieldDescriptor* value = f->message_type()->map_value();
      if (value->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
        field.message = &PlanFor(f->message_type(), cache);
      } else if (value->cpp_type() != FieldDescriptor::CPPTYPE_STRING) {
        continue;
      }
    } else if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      field.message = &PlanFor(f->message_type(), cache);
    } else if (f->cpp_type() == FieldDescriptor::CPPTYPE_STRING) {
      field.plain_default = !f->has_default_value();
    } else {
      continue;
    }
    if (const auto* oneof = f->real_containing_oneof()) {
      if (std::find(plan.oneofs.begin(), plan.oneofs.end(), oneof) ==
          plan.oneofs.end()) {
        plan.oneofs.push_back(oneof);
      }
      plan.oneof_members.emplace(f->index(), field);
    } else {
      plan.fields.push_back(field);
    }
  }
  return plan;
}

const WipePlan& PlanFor(const google::protobuf::Descriptor* d) {
  thread_local PlanCache cache;
  return PlanFor(d, cache);
}

void WipeWithPlan(Message* message, const WipePlan& plan);

void WipeField(Message* message, const Reflection* r,
               const WipePlan::Field& field) {
  const FieldDescriptor* f = field.field;
  if (f->is_map()) {
    if (SecretFields* map = SecretMapOf(message)) {
      for (auto& [name, value] : *map) WipeInPlace(value);
    } else if (r->FieldSize(*message, f) > 0) {
      // Another message's map: only its reflection view is reachable.
      for (int i = 0; i < r->FieldSize(*message, f); ++i) {
        WipeMessage(r->MutableRepeatedMessage(message, f, i));
      }
    }
  } else if (field.message != nullptr) {
    if (f->is_repeated()) {
      for (int i = 0; i < r->FieldSize(*message, f); ++i) {
        WipeWithPlan(r->MutableRepeatedMessage(message, f, i), *field.message);
      }
    } else if (r->HasField(*message, f)) {
      WipeWithPlan(r->MutableMessage(message, f), *field.message);
    }
  } else {
    std::string scratch;
    if (f->is_repeated()) {
      for (int i = 0; i < r->FieldSize(*message, f); ++i) {
        WipeInPlace(r->GetRepeatedStringReference(*message, f, i, &scratch));
      }
    } else {
      const std::string& s = r->GetStringReference(*message, f, &scratch);
      // Never the shared default instance's string.
      const std::string* shared_default =
          field.plain_default
              ? &google::protobuf::internal::GetEmptyStringAlreadyInited()
              : &r->GetStringReference(
                    *google::protobuf::MessageFactory::generated_factory()
                         ->GetPrototype(message->GetDescriptor()),
                    f, &scratch);
      if (&s != shared_default) WipeInPlace(s);
    }
    WipeInPlace(scratch);
  }
}

void WipeWithPlan(Message* message, const WipePlan& plan) {
  const Reflection* r = message->GetReflection();
  // Every such field, not only the set ones: a string moved out of a
  // message (empty now) still holds its old bytes in its inline buffer.
  for (const WipePlan::Field& field : plan.fields) {
    WipeField(message, r, field);
  }
  for (const auto* oneof : plan.oneofs) {
    const FieldDescriptor* set = r->GetOneofFieldDescriptor(*message, oneof);
    if (set == nullptr) continue;
    auto member = plan.oneof_members.find(set->index());
    if (member != plan.oneof_members.end()) {
      WipeField(message, r, member->second);
    }
  }
  if (!r->GetUnknownFields(*message).empty()) {
    WipeUnknown(r->MutableUnknownFields(message));
  }
}

// ---- The store's own messages, without reflection (it costs about 1 us
// a request). They wipe every bytes field and map value, where secrets
// live, and any unknown fields; the strings they skip are paths, names and
// messages. wipe_test checks that every bytes field of these types is
// covered, so a new one cannot be forgotten.

bool IsShared(const std::string& s) {
  return &s == &google::protobuf::internal::GetEmptyStringAlreadyInited();
}

void WipeValue(const std::string& s) {
  if (!IsShared(s)) WipeInPlace(s);
}

// The reflection of M looked up once: GetReflection() runs protobuf's
// descriptor-assignment check on every call, on every request's hot path.
// (A pointer into protobuf's own immutable tables, not state of ours.)
template <typename M>
void WipeUnknownOf(M* m) {
  static const Reflection* const r = M::GetReflection();
  if (!r->GetUnknownFields(*m).empty()) {
    WipeUnknown(r->MutableUnknownFields(m));
  }
}

void WipeFieldsOf(SecretFields* fields) {
  for (auto& [name, value] : *fields) WipeInPlace(value);
}

void WipeTypedImpl(store::TransitItem* m) {
  WipeValue(m->plaintext());
  WipeValue(m->ciphertext());
  WipeValue(m->context());
  WipeUnknownOf(m);
}

void WipeTypedImpl(store::TransitResultItem* m) {
  WipeValue(m->plaintext());
  WipeValue(m->ciphertext());
  WipeUnknownOf(m);
}

void WipeTypedImpl(store::KvSecret* m) {
  WipeFieldsOf(m->mutable_data());
  WipeUnknownOf(m);
}

void WipeTypedImpl(store::Request* m) {
  const store::TransitBatchRequest* batch = nullptr;
  switch (m->op_case()) {
    case store::Request::kKvPut:
      WipeFieldsOf(m->mutable_kv_put()->mutable_data());
      WipeUnknownOf(m->mutable_kv_put());
      break;
    case store::Request::kTransitEncrypt:
      batch = &m->transit_encrypt();
      break;
    case store::Request::kTransitDecrypt:
      batch = &m->transit_decrypt();
      break;
    case store::Request::kTransitRewrap:
      batch = &m->transit_rewrap();
      break;
    default:
      // No bytes fields; unknown fields by reflection (rare).
      if (m->op_case() != store::Request::OP_NOT_SET) {
        const FieldDescriptor* f = m->GetReflection()->GetOneofFieldDescriptor(
            *m, m->GetDescriptor()->oneof_decl(0));
        Message* op = m->GetReflection()->MutableMessage(m, f);
        if (!op->GetReflection()->GetUnknownFields(*op).empty()) {
          WipeUnknown(op->GetReflection()->MutableUnknownFields(op));
        }
      }
      break;
  }
  if (batch != nullptr) {
    auto* items =
        const_cast<store::TransitBatchRequest*>(batch)->mutable_items();
    for (store::TransitItem& item : *items) WipeTypedImpl(&item);
    WipeUnknownOf(const_cast<store::TransitBatchRequest*>(batch));
  }
  WipeUnknownOf(m);
}

void WipeTypedImpl(store::Response* m) {
  switch (m->result_case()) {
    case store::Response::kKvSecret:
      WipeTypedImpl(m->mutable_kv_secret());
      break;
    case store::Response::kTransitBatch:
      for (store::TransitResultItem& item :
           *m->mutable_transit_batch()->mutable_items()) {
        WipeTypedImpl(&item);
      }
      WipeUnknownOf(m->mutable_transit_batch());
      break;
    case store::Response::kKvWrite:
      // Numbers only: nothing to wipe but what did not parse. (Every put
      // answers one; the reflective path below cost a descriptor lookup.)
      WipeUnknownOf(m->mutable_kv_write());
      break;
    default:
      if (m->result_case() != store::Response::RESULT_NOT_SET) {
        const FieldDescriptor* f = m->GetReflection()->GetOneofFieldDescriptor(
            *m, m->GetDescriptor()->FindOneofByName("result"));
        WipeWithPlan(m->GetReflection()->MutableMessage(m, f),
                     PlanFor(f->message_type()));
      }
      break;
  }
  WipeUnknownOf(m);
}

void WipeTypedImpl(store::KvMetadataRecord* m) {
  WipeFieldsOf(m->mutable_current_data());
  for (store::KvVersionRecord& v : *m->mutable_versions()) WipeUnknownOf(&v);
  WipeUnknownOf(m);
}

void WipeTypedImpl(store::KvDataRecord* m) {
  WipeFieldsOf(m->mutable_data());
  WipeUnknownOf(m);
}

}  // namespace

void WipeMessage(Message* message) {
  if (message == nullptr) return;
  const google::protobuf::Descriptor* d = message->GetDescriptor();
  static const google::protobuf::Descriptor* const kRequest =
      store::Request::descriptor();
  static const google::protobuf::Descriptor* const kResponse =
      store::Response::descriptor();
  static const google::protobuf::Descriptor* const kMeta =
      store::KvMetadataRecord::descriptor();
  static const google::protobuf::Descriptor* const kData =
      store::KvDataRecord::descriptor();
  static const google::protobuf::Descriptor* const kSecret =
      store::KvSecret::descriptor();
  if (d == kRequest)
    return WipeTypedImpl(static_cast<store::Request*>(message));
  if (d == kResponse)
    return WipeTypedImpl(static_cast<store::Response*>(message));
  if (d == kMeta) {
    return WipeTypedImpl(static_cast<store::KvMetadataRecord*>(message));
  }
  if (d == kData)
    return WipeTypedImpl(static_cast<store::KvDataRecord*>(message));
  if (d == kSecret)
    return WipeTypedImpl(static_cast<store::KvSecret*>(message));
  WipeWithPlan(message, PlanFor(d));
}

void WipeMessage(store::Request* m) { WipeTypedImpl(m); }
void WipeMessage(store::Response* m) { WipeTypedImpl(m); }
void WipeMessage(store::KvSecret* m) { WipeTypedImpl(m); }
void WipeMessage(store::KvMetadataRecord* m) { WipeTypedImpl(m); }
void WipeMessage(store::KvDataRecord* m) { WipeTypedImpl(m); }

void WipeMessageByReflection(Message* message) {
  if (message == nullptr) return;
  WipeWithPlan(message, PlanFor(message->GetDescriptor()));
}

bool SerializeInto(const Message& message, std::string* out) {
  const size_t size = message.ByteSizeLong();
  if (size > static_cast<size_t>(std::numeric_limits<int>::max())) {
    return false;
  }
  WipeString(*out);
  // Room for the barrier to seal it in place (Barrier::CommitInPlace).
  out->reserve(size + Barrier::kSealOverhead);
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
