// WipeMessage (lib/store/wipe.h): the fast paths for the store's own
// messages wipe every bytes field and map value — filled through
// reflection, so a field added to the protos later is covered by this test
// without editing it — and the reflective path wipes every string.
#include "lib/store/wipe.h"

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "lib/store/kv_records.pb.h"
#include "strongbox/requests.pb.h"

namespace strongbox {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

constexpr absl::string_view kMarker = "wipe-me-marker";

std::string Value(int n) {
  return absl::StrCat(kMarker, "-", n, std::string(40, 'v'));
}

// Sets every string field, map and message field of `m` (one oneof member:
// `variant`-th of each oneof, -1 for the first), recursively.
void Fill(Message* m, int variant, int depth = 0) {
  if (depth > 4) return;
  const Reflection* r = m->GetReflection();
  const google::protobuf::Descriptor* d = m->GetDescriptor();
  int n = 0;
  for (int k = 0; k < d->field_count(); ++k) {
    const FieldDescriptor* f = d->field(k);
    if (const auto* oneof = f->real_containing_oneof()) {
      const int want = variant < 0 ? 0 : variant;
      if (f->index_in_oneof() != want % oneof->field_count()) continue;
    }
    if (f->is_map()) {
      Message* entry = r->AddMessage(m, f);
      const FieldDescriptor* key = f->message_type()->map_key();
      const FieldDescriptor* value = f->message_type()->map_value();
      if (key->cpp_type() == FieldDescriptor::CPPTYPE_STRING) {
        entry->GetReflection()->SetString(entry, key, "field");
      }
      if (value->cpp_type() == FieldDescriptor::CPPTYPE_STRING) {
        entry->GetReflection()->SetString(entry, value, Value(++n));
      }
    } else if (f->cpp_type() == FieldDescriptor::CPPTYPE_STRING) {
      if (f->is_repeated()) {
        r->AddString(m, f, Value(++n));
      } else {
        r->SetString(m, f, Value(++n));
      }
    } else if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      Fill(f->is_repeated() ? r->AddMessage(m, f) : r->MutableMessage(m, f), -1,
           depth + 1);
    }
  }
}

// Paths of the fields of `m` still holding the marker: every bytes field
// and map value (`all_strings`: every string field too).
void Leftovers(const Message& m, bool all_strings, const std::string& at,
               std::vector<std::string>* out) {
  const Reflection* r = m.GetReflection();
  std::vector<const FieldDescriptor*> fields;
  r->ListFields(m, &fields);
  for (const FieldDescriptor* f : fields) {
    const std::string path = absl::StrCat(at, ".", f->name());
    if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      if (f->is_repeated()) {
        for (int i = 0; i < r->FieldSize(m, f); ++i) {
          // A map entry's value counts as a bytes field.
          Leftovers(r->GetRepeatedMessage(m, f, i), all_strings || f->is_map(),
                    path, out);
        }
      } else {
        Leftovers(r->GetMessage(m, f), all_strings, path, out);
      }
    } else if (f->cpp_type() == FieldDescriptor::CPPTYPE_STRING &&
               (all_strings || f->type() == FieldDescriptor::TYPE_BYTES)) {
      const int count = f->is_repeated() ? r->FieldSize(m, f) : 1;
      for (int i = 0; i < count; ++i) {
        const std::string v = f->is_repeated() ? r->GetRepeatedString(m, f, i)
                                               : r->GetString(m, f);
        if (absl::StrContains(v, kMarker)) out->push_back(path);
      }
    }
  }
}

template <typename M>
void ExpectFastPathWipes() {
  const google::protobuf::Descriptor* d = M::descriptor();
  const int variants =
      d->oneof_decl_count() > 0 ? d->oneof_decl(0)->field_count() : 1;
  for (int v = 0; v < variants; ++v) {
    M m;
    Fill(&m, v);
    std::vector<std::string> before;
    Leftovers(m, false, d->name(), &before);
    WipeMessage(&m);  // the typed overload
    std::vector<std::string> after;
    Leftovers(m, false, d->name(), &after);
    EXPECT_TRUE(after.empty())
        << d->name() << " variant " << v << ": " << after.front();

    // The same through a Message* (what a host calls).
    M again;
    Fill(&again, v);
    WipeMessage(static_cast<Message*>(&again));
    after.clear();
    Leftovers(again, false, d->name(), &after);
    EXPECT_TRUE(after.empty()) << d->name() << " variant " << v;
  }
}

TEST(WipeTest, FastPathsWipeEveryBytesFieldAndMapValue) {
  ExpectFastPathWipes<store::Request>();
  ExpectFastPathWipes<store::Response>();
  ExpectFastPathWipes<store::KvSecret>();
  ExpectFastPathWipes<store::KvMetadataRecord>();
  ExpectFastPathWipes<store::KvDataRecord>();
}

TEST(WipeTest, TheFillerReachesBytesFields) {
  // The test above is only as good as Fill(): it does set bytes fields.
  for (const char* op : {"transit_encrypt", "kv_put"}) {
    store::Request r;
    Fill(&r,
         store::Request::descriptor()->FindFieldByName(op)->index_in_oneof());
    std::vector<std::string> found;
    Leftovers(r, false, "Request", &found);
    EXPECT_FALSE(found.empty()) << op;
  }
}

TEST(WipeTest, ReflectionWipesEveryString) {
  const int variants =
      store::Request::descriptor()->oneof_decl(0)->field_count();
  for (int v = 0; v < variants; ++v) {
    store::Request m;
    Fill(&m, v);
    WipeMessageByReflection(&m);
    std::vector<std::string> after;
    Leftovers(m, true, "Request", &after);
    EXPECT_TRUE(after.empty()) << v << ": " << after.front();
  }
  store::TransitKeyInfo info;
  Fill(&info, -1);
  WipeMessage(&info);  // no fast path: reflection
  std::vector<std::string> after;
  Leftovers(info, true, "TransitKeyInfo", &after);
  EXPECT_TRUE(after.empty());
}

TEST(WipeTest, MovedOutStringsAreWipedInPlace) {
  // A short value moved out of a message leaves its bytes in the inline
  // buffer of the (now empty) string; the wipe reaches it.
  store::Response r;
  store::TransitResultItem* item = r.mutable_transit_batch()->add_items();
  item->set_plaintext("short-secret");
  const std::string& field = item->plaintext();
  const char* inline_buffer = field.data();
  std::string out = std::move(*item->mutable_plaintext());
  ASSERT_EQ(field.data(), inline_buffer);
  WipeMessage(&r);
  EXPECT_EQ(std::string(inline_buffer, 12), std::string(12, '\0'));
  WipeString(out);
}

}  // namespace
}  // namespace strongbox
