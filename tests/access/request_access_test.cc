// The operation table's capability and policy path per request, the audit
// fields a request and a response expose (secrets marked), and the gate:
// policy check, audit before execution, response entry after.
#include "lib/access/request_access.h"

#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/access/request_gate.h"
#include "lib/audit/audit_dispatcher.h"
#include "lib/policy/policy.h"
#include "strongbox/audit_sink.h"
#include "strongbox/call_context.h"
#include "strongbox/requests.pb.h"
#include "strongbox/testing/status_matchers.h"

namespace strongbox::access {
namespace {

using store::Request;
using ::strongbox_testing::IsOk;
using ::strongbox_testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kSecret[] = "PLAINTEXT-never-in-the-log";

struct Row {
  const char* what;
  Request request;
  Capability capability;
  const char* path;
};

std::vector<Row> Rows() {
  std::vector<Row> rows;
  auto add = [&](const char* what, Capability c, const char* path, auto fill) {
    Row r{what, Request(), c, path};
    fill(&r.request);
    rows.push_back(std::move(r));
  };
  add("kv_put without cas needs update", Capability::kUpdate, "app/db",
      [](Request* r) { r->mutable_kv_put()->set_path("app/db"); });
  add("kv_put with cas 0 (only if absent) needs create", Capability::kCreate,
      "app/db", [](Request* r) {
        r->mutable_kv_put()->set_path("app/db");
        r->mutable_kv_put()->set_cas(0);
      });
  add("kv_put with cas > 0 needs update", Capability::kUpdate, "app/db",
      [](Request* r) {
        r->mutable_kv_put()->set_path("app/db");
        r->mutable_kv_put()->set_cas(3);
      });
  add("kv_get reads data", Capability::kRead, "app/db",
      [](Request* r) { r->mutable_kv_get()->set_path("app/db"); });
  add("kv_delete deletes data", Capability::kDelete, "app/db",
      [](Request* r) { r->mutable_kv_delete()->set_path("app/db"); });
  add("kv_undelete", Capability::kUpdate, "undelete/app/db",
      [](Request* r) { r->mutable_kv_undelete()->set_path("app/db"); });
  add("kv_destroy", Capability::kUpdate, "destroy/app/db",
      [](Request* r) { r->mutable_kv_destroy()->set_path("app/db"); });
  add("kv_metadata_get reads metadata", Capability::kRead, "metadata/app/db",
      [](Request* r) { r->mutable_kv_metadata_get()->set_path("app/db"); });
  add("kv_metadata_put", Capability::kUpdate, "metadata/app/db",
      [](Request* r) { r->mutable_kv_metadata_put()->set_path("app/db"); });
  add("kv_delete_all deletes metadata", Capability::kDelete, "metadata/app/db",
      [](Request* r) { r->mutable_kv_delete_all()->set_path("app/db"); });
  add("kv_list lists metadata", Capability::kList, "metadata/app/",
      [](Request* r) { r->mutable_kv_list()->set_prefix("app/"); });
  add("transit_create_key", Capability::kCreate, "transit/keys/k",
      [](Request* r) { r->mutable_transit_create_key()->set_name("k"); });
  add("transit_read_key", Capability::kRead, "transit/keys/k",
      [](Request* r) { r->mutable_transit_read_key()->set_name("k"); });
  add("transit_delete_key", Capability::kDelete, "transit/keys/k",
      [](Request* r) { r->mutable_transit_delete_key()->set_name("k"); });
  add("transit_rotate_key", Capability::kUpdate, "transit/keys/k/rotate",
      [](Request* r) { r->mutable_transit_rotate_key()->set_name("k"); });
  add("transit_config_key", Capability::kUpdate, "transit/keys/k/config",
      [](Request* r) { r->mutable_transit_config_key()->set_name("k"); });
  add("transit_encrypt", Capability::kUpdate, "transit/encrypt/k",
      [](Request* r) { r->mutable_transit_encrypt()->set_name("k"); });
  add("transit_decrypt", Capability::kUpdate, "transit/decrypt/k",
      [](Request* r) { r->mutable_transit_decrypt()->set_name("k"); });
  add("transit_rewrap", Capability::kUpdate, "transit/rewrap/k",
      [](Request* r) { r->mutable_transit_rewrap()->set_name("k"); });
  return rows;
}

TEST(RequestAccessTest, Table) {
  for (const Row& row : Rows()) {
    SCOPED_TRACE(row.what);
    absl::StatusOr<Access> a = RequiredAccess(row.request);
    ASSERT_THAT(a.status(), IsOk());
    EXPECT_EQ(a->capability, row.capability);
    EXPECT_EQ(a->path, row.path);
  }
  EXPECT_THAT(RequiredAccess(Request()).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(RequestAccessTest, EveryOperationHasARow) {
  const auto* oneof = Request::descriptor()->FindOneofByName("op");
  for (int i = 0; i < oneof->field_count(); ++i) {
    Request each;
    each.GetReflection()->MutableMessage(&each, oneof->field(i));
    EXPECT_TRUE(RequiredAccess(each).ok()) << oneof->field(i)->name();
    EXPECT_TRUE(NamesOperation(each)) << oneof->field(i)->name();
  }
  EXPECT_FALSE(NamesOperation(Request()));
}

TEST(RequestAccessTest, SecretValuesAreMarkedSecret) {
  Request put;
  (*put.mutable_kv_put()->mutable_data())["pw"] = kSecret;
  Request enc;
  store::TransitItem* item = enc.mutable_transit_encrypt()->add_items();
  item->set_plaintext(kSecret);
  item->set_context(kSecret);
  Request dec;
  dec.mutable_transit_decrypt()->add_items()->set_ciphertext(kSecret);
  store::Response got;
  (*got.mutable_kv_secret()->mutable_data())["pw"] = kSecret;
  store::Response batch;
  batch.mutable_transit_batch()->add_items()->set_plaintext(kSecret);
  batch.mutable_transit_batch()->add_items()->set_ciphertext(kSecret);

  std::vector<audit::AuditField> fields;
  AuditFieldsOf(put, &fields);
  AuditFieldsOf(enc, &fields);
  AuditFieldsOf(dec, &fields);
  AuditFieldsOf(got, &fields);
  AuditFieldsOf(batch, &fields);
  ASSERT_EQ(fields.size(), 7u);
  for (const audit::AuditField& f : fields) {
    EXPECT_EQ(f.value, kSecret) << f.name;
    EXPECT_TRUE(f.secret) << f.name;
  }
}

// ---- the gate

class RecordingSink : public AuditSink {
 public:
  explicit RecordingSink(std::vector<AuditEntry>* out, bool fail = false)
      : out_(out), fail_(fail) {}
  absl::Status Write(const AuditEntry& e) override {
    if (fail_) return absl::UnavailableError("disk full");
    out_->push_back(e);  // one sink thread: no lock needed
    return absl::OkStatus();
  }

 private:
  std::vector<AuditEntry>* out_;
  const bool fail_;
};

class GateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<policy::Policy> p = policy::ParsePolicy(
        "app-read", R"({"path":{"app/*":{"capabilities":["read"]},
                       "metadata/app/*":{"capabilities":["list"]}}})");
    ASSERT_THAT(p.status(), IsOk());
    policies_.Put(*std::move(p));
  }

  RequestGate Gate(audit::AuditDispatcher* audit) {
    RequestGate::Options o;
    o.policies = &policies_;
    o.audit = audit;
    return RequestGate(o);
  }

  InMemoryPolicySource policies_;
};

Request Get(const char* path) {
  Request r;
  r.mutable_kv_get()->set_path(path);
  return r;
}

TEST_F(GateTest, PoliciesDecide) {
  RequestGate gate = Gate(nullptr);
  const CallContext reader = CallContext::As("alice", {"app-read"});
  const CallContext nobody = CallContext::As("bob", {"unknown-policy"});
  RequestGate::Admission adm;
  EXPECT_THAT(gate.Admit(&reader, Get("app/db"), kNoFence, &adm), IsOk());
  EXPECT_THAT(gate.Admit(&reader, Get("other/db"), kNoFence, &adm),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("\"read\" on \"other/db\"")));
  Request list;
  list.mutable_kv_list()->set_prefix("app/");
  EXPECT_THAT(gate.Admit(&reader, list, kNoFence, &adm), IsOk());
  Request meta;
  meta.mutable_kv_metadata_get()->set_path("app/db");
  EXPECT_THAT(gate.Admit(&reader, meta, kNoFence, &adm),
              StatusIs(absl::StatusCode::kPermissionDenied));
  Request put;
  put.mutable_kv_put()->set_path("app/db");
  EXPECT_THAT(gate.Admit(&reader, put, kNoFence, &adm),
              StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(gate.Admit(&nobody, Get("app/db"), kNoFence, &adm),
              StatusIs(absl::StatusCode::kPermissionDenied));
  const CallContext root = CallContext::Root();
  EXPECT_THAT(gate.Admit(&root, put, kNoFence, &adm), IsOk());
  // No caller: refused once a policy exists, allowed before.
  EXPECT_THAT(
      gate.Admit(nullptr, Get("app/db"), kNoFence, &adm),
      StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("no caller")));
  policies_.Delete("app-read");
  EXPECT_THAT(gate.Admit(nullptr, Get("app/db"), kNoFence, &adm), IsOk());
  // A policy change takes effect at once (the compiled cache is dropped).
  EXPECT_THAT(gate.Admit(&reader, Get("app/db"), kNoFence, &adm),
              StatusIs(absl::StatusCode::kPermissionDenied));
}

// The gate builds the policy path only when a check or the audit reads
// it; a request with no operation is refused on every one of those paths.
TEST_F(GateTest, RequestWithoutOperationIsRefusedOnEveryPath) {
  const CallContext reader = CallContext::As("alice", {"app-read"});
  const CallContext root = CallContext::Root();
  RequestGate::Options unchecked;
  unchecked.policies = &policies_;
  unchecked.check_policies = false;
  RequestGate::Admission adm;
  for (RequestGate gate : {Gate(nullptr), RequestGate(unchecked)}) {
    for (const CallContext* caller :
         {&reader, &root, static_cast<const CallContext*>(nullptr)}) {
      EXPECT_THAT(gate.Admit(caller, Request(), kNoFence, &adm),
                  StatusIs(absl::StatusCode::kInvalidArgument,
                           HasSubstr("no operation")));
    }
  }
}

TEST_F(GateTest, AuditsRequestsResponsesAndRefusals) {
  std::vector<AuditEntry> entries;
  {
    audit::AuditDispatcher d({});
    audit::AuditDispatcher::SinkOptions so;
    so.name = "rec";
    so.sink = std::make_unique<RecordingSink>(&entries);
    ASSERT_THAT(d.AddSink(std::move(so)), IsOk());
    RequestGate gate = Gate(&d);
    const CallContext reader = CallContext::As("alice", {"app-read"});
    RequestGate::Admission adm;
    Request get = Get("app/db");
    ASSERT_THAT(gate.Admit(&reader, get, kNoFence, &adm), IsOk());
    store::Response resp;
    (*resp.mutable_kv_secret()->mutable_data())["pw"] = kSecret;
    resp.set_index(9);
    gate.Complete(&reader, get, adm, resp);
    EXPECT_THAT(gate.Admit(&reader, Get("other/x"), kNoFence, &adm),
                StatusIs(absl::StatusCode::kPermissionDenied));
  }
  ASSERT_EQ(entries.size(), 4u);
  EXPECT_EQ(entries[0].kind, AuditEntry::Kind::kRequest);
  EXPECT_EQ(entries[0].caller, "alice");
  EXPECT_EQ(entries[0].operation, "kv_get");
  EXPECT_EQ(entries[0].path, "app/db");
  EXPECT_EQ(entries[1].kind, AuditEntry::Kind::kResponse);
  EXPECT_EQ(entries[1].id, entries[0].id);
  EXPECT_EQ(entries[1].index, 9u);
  ASSERT_EQ(entries[1].fields.size(), 1u);
  EXPECT_THAT(entries[1].fields[0].second, HasSubstr("hmac-sha256:"));
  EXPECT_EQ(entries[3].code, absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(entries[3].path, "other/x");
  for (const AuditEntry& e : entries) {
    EXPECT_THAT(e.ToJsonLine(), Not(HasSubstr(kSecret)));
  }
}

TEST_F(GateTest, FailingSinkRefusesAnAllowedRequest) {
  std::vector<AuditEntry> entries;
  audit::AuditDispatcher d({});
  audit::AuditDispatcher::SinkOptions so;
  so.name = "full";
  so.sink = std::make_unique<RecordingSink>(&entries, /*fail=*/true);
  ASSERT_THAT(d.AddSink(std::move(so)), IsOk());
  RequestGate gate = Gate(&d);
  const CallContext root = CallContext::Root();
  RequestGate::Admission adm;
  EXPECT_THAT(gate.Admit(&root, Get("app/db"), kNoFence, &adm),
              StatusIs(absl::StatusCode::kUnavailable));
}

TEST_F(GateTest, FileSinkHoldsNoPlaintext) {
  const std::string path =
      absl::StrCat(getenv("TEST_TMPDIR"), "/gate-audit.log");
  {
    FileAuditSinkOptions fo;
    fo.path = path;
    absl::StatusOr<std::unique_ptr<AuditSink>> file = NewFileAuditSink(fo);
    ASSERT_THAT(file.status(), IsOk());
    audit::AuditDispatcher d({});
    audit::AuditDispatcher::SinkOptions so;
    so.name = "file";
    so.sink = *std::move(file);
    ASSERT_THAT(d.AddSink(std::move(so)), IsOk());
    RequestGate gate = Gate(&d);
    const CallContext root = CallContext::Root("ops");
    RequestGate::Admission adm;
    Request put;
    put.mutable_kv_put()->set_path("app/db");
    (*put.mutable_kv_put()->mutable_data())["pw"] = kSecret;
    ASSERT_THAT(gate.Admit(&root, put, kNoFence, &adm), IsOk());
    gate.Complete(&root, put, adm, store::Response());
    Request enc;
    enc.mutable_transit_encrypt()->set_name("k");
    enc.mutable_transit_encrypt()->add_items()->set_plaintext(kSecret);
    ASSERT_THAT(gate.Admit(&root, enc, kNoFence, &adm), IsOk());
    store::Response out;
    out.mutable_transit_batch()->add_items()->set_ciphertext(
        "strongbox:v1:c2VjcmV0");
    gate.Complete(&root, enc, adm, out);
  }
  std::ifstream in(path);
  const std::string text(std::istreambuf_iterator<char>(in), {});
  EXPECT_THAT(text, Not(HasSubstr(kSecret)));
  EXPECT_THAT(text, Not(HasSubstr("c2VjcmV0")));
  EXPECT_THAT(text, HasSubstr("\"data.pw\":\"hmac-sha256:"));
  EXPECT_THAT(text, HasSubstr("\"items.0.plaintext\":\"hmac-sha256:"));
}

}  // namespace
}  // namespace strongbox::access
