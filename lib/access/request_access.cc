#include "lib/access/request_access.h"

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace strongbox::access {
namespace {

using audit::AuditField;
using store::Request;

struct Row {
  Request::OpCase op;
  Capability capability;
  absl::string_view prefix;  // before the request's path or key name
  absl::string_view suffix;  // after it
};

// The table of the file comment (kv_put's cas = 0 case is handled in code).
constexpr Row kRows[] = {
    {Request::kKvPut, Capability::kUpdate, "", ""},
    {Request::kKvGet, Capability::kRead, "", ""},
    {Request::kKvDelete, Capability::kDelete, "", ""},
    {Request::kKvUndelete, Capability::kUpdate, "undelete/", ""},
    {Request::kKvDestroy, Capability::kUpdate, "destroy/", ""},
    {Request::kKvMetadataGet, Capability::kRead, "metadata/", ""},
    {Request::kKvMetadataPut, Capability::kUpdate, "metadata/", ""},
    {Request::kKvDeleteAll, Capability::kDelete, "metadata/", ""},
    {Request::kKvList, Capability::kList, "metadata/", ""},
    {Request::kTransitCreateKey, Capability::kCreate, "transit/keys/", ""},
    {Request::kTransitReadKey, Capability::kRead, "transit/keys/", ""},
    {Request::kTransitDeleteKey, Capability::kDelete, "transit/keys/", ""},
    {Request::kTransitRotateKey, Capability::kUpdate, "transit/keys/",
     "/rotate"},
    {Request::kTransitConfigKey, Capability::kUpdate, "transit/keys/",
     "/config"},
    {Request::kTransitEncrypt, Capability::kUpdate, "transit/encrypt/", ""},
    {Request::kTransitDecrypt, Capability::kUpdate, "transit/decrypt/", ""},
    {Request::kTransitRewrap, Capability::kUpdate, "transit/rewrap/", ""},
    {Request::kPolicyPut, Capability::kSudo, kSysPolicyPrefix, ""},
    {Request::kPolicyGet, Capability::kSudo, kSysPolicyPrefix, ""},
    {Request::kPolicyList, Capability::kSudo, kSysPolicyPrefix, ""},
    {Request::kPolicyDelete, Capability::kSudo, kSysPolicyPrefix, ""},
};

// First segments a KV path may not start with: they are the policy paths
// of other operations (see the header).
constexpr absl::string_view kReservedKvFolders[] = {
    "metadata/", "undelete/", "destroy/", "transit/", "sys/",
};

// The path or key name the request names.
absl::string_view Subject(const Request& r) {
  switch (r.op_case()) {
    case Request::kKvPut:
      return r.kv_put().path();
    case Request::kKvGet:
      return r.kv_get().path();
    case Request::kKvDelete:
      return r.kv_delete().path();
    case Request::kKvUndelete:
      return r.kv_undelete().path();
    case Request::kKvDestroy:
      return r.kv_destroy().path();
    case Request::kKvMetadataGet:
      return r.kv_metadata_get().path();
    case Request::kKvMetadataPut:
      return r.kv_metadata_put().path();
    case Request::kKvDeleteAll:
      return r.kv_delete_all().path();
    case Request::kKvList:
      return r.kv_list().prefix();
    case Request::kTransitCreateKey:
      return r.transit_create_key().name();
    case Request::kTransitRotateKey:
      return r.transit_rotate_key().name();
    case Request::kTransitReadKey:
      return r.transit_read_key().name();
    case Request::kTransitConfigKey:
      return r.transit_config_key().name();
    case Request::kTransitDeleteKey:
      return r.transit_delete_key().name();
    case Request::kTransitEncrypt:
      return r.transit_encrypt().name();
    case Request::kTransitDecrypt:
      return r.transit_decrypt().name();
    case Request::kTransitRewrap:
      return r.transit_rewrap().name();
    case Request::kPolicyPut:
      return r.policy_put().name();
    case Request::kPolicyGet:
      return r.policy_get().name();
    case Request::kPolicyDelete:
      return r.policy_delete().name();
    case Request::kPolicyList:
    case Request::OP_NOT_SET:
      break;
  }
  return "";
}

void AddItems(const store::TransitBatchRequest& batch,
              std::vector<AuditField>* fields) {
  for (int i = 0; i < batch.items_size(); ++i) {
    const store::TransitItem& item = batch.items(i);
    if (!item.plaintext().empty()) {
      fields->push_back(
          {absl::StrCat("items.", i, ".plaintext"), item.plaintext(), true});
    }
    if (!item.ciphertext().empty()) {
      fields->push_back(
          {absl::StrCat("items.", i, ".ciphertext"), item.ciphertext(), true});
    }
    if (!item.context().empty()) {
      fields->push_back(
          {absl::StrCat("items.", i, ".context"), item.context(), true});
    }
  }
}

}  // namespace

absl::StatusOr<Access> RequiredAccess(Request::OpCase op,
                                      absl::string_view subject,
                                      bool create_only) {
  for (const Row& row : kRows) {
    if (row.op != op) continue;
    Access a;
    a.capability = row.capability;
    if (op == Request::kKvPut && create_only) {
      a.capability = Capability::kCreate;  // only if absent
    }
    a.path = absl::StrCat(row.prefix, subject, row.suffix);
    return a;
  }
  return absl::InvalidArgumentError("request names no operation");
}

absl::StatusOr<Access> RequiredAccess(const Request& request) {
  return RequiredAccess(request.op_case(), Subject(request),
                        request.has_kv_put() && request.kv_put().has_cas() &&
                            request.kv_put().cas() == 0);
}

bool NamesOperation(const Request& request) {
  for (const Row& row : kRows) {
    if (row.op == request.op_case()) return true;
  }
  return false;
}

absl::Status CheckKvPathOutsideReserved(Request::OpCase op,
                                        absl::string_view path) {
  switch (op) {
    case Request::kKvPut:
    case Request::kKvGet:
    case Request::kKvDelete:
    case Request::kKvUndelete:
    case Request::kKvDestroy:
    case Request::kKvMetadataGet:
    case Request::kKvMetadataPut:
    case Request::kKvDeleteAll:
      break;
    default:
      return absl::OkStatus();
  }
  for (absl::string_view folder : kReservedKvFolders) {
    if (absl::StartsWith(path, folder)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "KV paths under \"", folder,
          "\" are reserved: their policy path is another operation's"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckKvPathOutsideReserved(const Request& request) {
  return CheckKvPathOutsideReserved(request.op_case(), Subject(request));
}

void AuditFieldsOf(const Request& r, std::vector<AuditField>* fields) {
  switch (r.op_case()) {
    case Request::kKvPut:
      for (const auto& [name, value] : r.kv_put().data()) {
        fields->push_back({absl::StrCat("data.", name), value, true});
      }
      break;
    case Request::kTransitEncrypt:
      AddItems(r.transit_encrypt(), fields);
      break;
    case Request::kTransitDecrypt:
      AddItems(r.transit_decrypt(), fields);
      break;
    case Request::kTransitRewrap:
      AddItems(r.transit_rewrap(), fields);
      break;
    default:
      break;
  }
}

void AuditFieldsOf(const store::Response& r, std::vector<AuditField>* fields) {
  if (r.has_kv_secret()) {
    for (const auto& [name, value] : r.kv_secret().data()) {
      fields->push_back({absl::StrCat("data.", name), value, true});
    }
  }
  if (r.has_transit_batch()) {
    for (int i = 0; i < r.transit_batch().items_size(); ++i) {
      const store::TransitResultItem& item = r.transit_batch().items(i);
      if (!item.plaintext().empty()) {
        fields->push_back(
            {absl::StrCat("items.", i, ".plaintext"), item.plaintext(), true});
      }
      if (!item.ciphertext().empty()) {
        fields->push_back({absl::StrCat("items.", i, ".ciphertext"),
                           item.ciphertext(), true});
      }
    }
  }
}

}  // namespace strongbox::access
